"""l3d.scenes: NeRF-synthetic / instant-ngp folders and COLMAP models read into one Scene.

Fixtures are made here: l3d's textured object rendered from 20 views, written as a
NeRF-synthetic folder (RGBA PNGs with transparent background, OpenGL camera-to-world matrices,
camera_angle_x) and as COLMAP text and binary models (pycolmap, from the known cameras). The
loaded cameras must project the object's vertices to the pixels the renderer's cameras did,
and pycolmap's own projection must agree.
"""

import json
import math

import numpy as np
import pytest
import torch

from l3d.errors import UserError
from l3d.cameras import cameras_from_opencv_projection as cameras_from_opencv, opencv_from_cameras
from l3d.scenes import (Normalization, detect_format, fit_normalization,
                        read_blender, read_colmap, read_scene, render_object_views, write_blender, write_colmap)

H, W = 72, 96
N = 20
SPLIT = {"train": list(range(0, 14)), "val": [14, 15], "test": [16, 17, 18, 19]}


@pytest.fixture(scope="module")
def views(one_thread):
    return render_object_views(N, (H, W))


@pytest.fixture(scope="module")
def blender_dir(views, tmp_path_factory):
    root = tmp_path_factory.mktemp("blender")
    write_blender(root, views.rgba[..., :3], views.cameras, SPLIT, alpha=views.rgba[..., 3])
    return root


def _names():
    return [f"view_{i:03d}.png" for i in range(N)]


@pytest.fixture(scope="module")
def colmap_dirs(views, tmp_path_factory):
    from l3d.media import save_image

    out = {}
    pts = views.verts[::7]
    for kind in ("text", "binary"):
        root = tmp_path_factory.mktemp(f"colmap_{kind}")
        (root / "images").mkdir()
        for i, name in enumerate(_names()):
            save_image(root / "images" / name, views.rgba[i, ..., :3])
        write_colmap(root / "sparse" / "0", views.cameras, (H, W), _names(), pts, torch.rand(len(pts), 3),
                     binary=kind == "binary")
        out[kind] = root
    return out


def _pixels(cams, points, hw=(H, W)):
    return cams.transform_points_screen(points.to(cams.dtype), hw)[..., :2]


def test_opencv_round_trip_and_axes(views):
    R, t, K = opencv_from_cameras(views.cameras, (H, W))
    back = cameras_from_opencv(R, t, K, (H, W))
    assert torch.allclose(back.R, views.cameras.R, atol=1e-6) and torch.allclose(back.T, views.cameras.T, atol=1e-6)
    assert torch.allclose(back.focal_length, views.cameras.focal_length, atol=1e-6)
    # the OpenCV projection u = fx x/z + cx of the same points gives the renderer's pixels
    X = views.verts[::50]
    xc = X @ R[0].T + t[0]  # (P, 3) OpenCV camera coordinates
    uv = torch.stack([K[0, 0, 0] * xc[:, 0] / xc[:, 2] + K[0, 0, 2], K[0, 1, 1] * xc[:, 1] / xc[:, 2] + K[0, 1, 2]], -1)
    assert (uv - _pixels(views.cameras[0], X)[0]).abs().max() < 1e-3


def test_blender_folder_matches_the_renders(views, blender_dir):
    meta = json.loads((blender_dir / "transforms_train.json").read_text())
    assert "camera_angle_x" in meta and not meta["frames"][0]["file_path"].endswith(".png")
    sc = read_blender(blender_dir, normalize="none")
    assert sc.images.shape == (N, H, W, 3) and sc.split == SPLIT and sc.format == "blender"
    # the loaded cameras put every vertex on the pixel the renderer's camera did (sub-pixel)
    order = torch.as_tensor(SPLIT["train"] + SPLIT["val"] + SPLIT["test"])
    err = (_pixels(sc.cameras, views.verts) - _pixels(views.cameras[order], views.verts)).abs().max()
    assert err < 1e-3, err
    # independent reference: the OpenGL formula straight from the JSON (x right, y up, looks down -z)
    fr = meta["frames"][3]
    c2w = np.asarray(fr["transform_matrix"])
    f = 0.5 * W / math.tan(meta["camera_angle_x"] / 2)
    Xc = (np.linalg.inv(c2w) @ np.c_[views.verts.numpy(), np.ones(len(views.verts))].T).T[:, :3]
    u = W / 2 + f * Xc[:, 0] / -Xc[:, 2]
    v = H / 2 - f * Xc[:, 1] / -Xc[:, 2]
    got = _pixels(sc.cameras[3], views.verts)[0].double().numpy()
    assert np.abs(got - np.stack([u, v], -1)).max() < 1e-3
    # RGBA composited on white by default, on black when asked; the magenta under alpha 0 never shows
    a = views.rgba[order, ..., 3:]
    want_white = views.rgba[order, ..., :3] * a + (1 - a)
    assert (sc.images - want_white).abs().max() < 1.5 / 255
    assert sc.background == (1.0, 1.0, 1.0) and torch.equal(sc.alpha > 0.5, a[..., 0] > 0.5)
    black = read_blender(blender_dir, background="black", normalize="none")
    assert (black.images - views.rgba[order, ..., :3] * a).abs().max() < 1.5 / 255
    corner = sc.images[:, 0, 0]  # background pixels
    assert torch.allclose(corner, torch.ones_like(corner)) and black.images[:, 0, 0].max() == 0


def test_blender_normalised_scene_reprojects_and_maps_back(views, blender_dir):
    sc = read_blender(blender_dir)  # auto: cameras around the look-at point at a mean distance of 4
    norm = sc.normalization
    assert norm.mode == "cameras"
    d = sc.cameras.get_camera_center().norm(dim=-1)
    assert abs(float(d.mean()) - 4.0) < 1e-3, d.mean()  # the renders' cameras all look at the origin
    assert np.allclose(norm.center, 0, atol=1e-4) and abs(norm.scale - 4.0 / 2.7) < 1e-4
    order = torch.as_tensor(SPLIT["train"] + SPLIT["val"] + SPLIT["test"])
    err = (_pixels(sc.cameras, norm.apply(views.verts)) - _pixels(views.cameras[order], views.verts)).abs().max()
    assert err < 1e-3, err
    assert torch.allclose(norm.invert(norm.apply(views.verts)), views.verts, atol=1e-5)
    # Blender's world is z-up: rotating it onto +y turns the object's z axis into y
    rot = read_blender(blender_dir, up=(0.0, 1.0, 0.0)).normalization
    assert np.allclose(np.asarray([0.0, 0.0, 1.0]) @ np.asarray(rot.rotation), [0, 1, 0], atol=1e-6)


def test_blender_resize_and_per_frame_intrinsics(views, blender_dir, tmp_path):
    small = read_blender(blender_dir, normalize="none", image_size=(36, 48))
    full = read_blender(blender_dir, normalize="none")
    # pixel coordinates scale with the image (pixel edges to edges)
    assert (_pixels(small.cameras, views.verts, (36, 48)) * 2 - _pixels(full.cameras, views.verts)).abs().max() < 1e-3
    # instant-ngp style: one transforms.json, fl_x/cx/cy/w/h, a per-frame override, paths with extension
    meta = json.loads((blender_dir / "transforms_train.json").read_text())
    f = 0.5 * W / math.tan(meta["camera_angle_x"] / 2)
    frames = [dict(fr, file_path=str(blender_dir / fr["file_path"]) + ".png") for fr in meta["frames"]]
    frames[2]["fl_x"] = frames[2]["fl_y"] = 2 * f
    (tmp_path / "transforms.json").write_text(json.dumps(
        {"fl_x": f, "fl_y": f, "cx": W / 2, "cy": H / 2, "w": W, "h": H, "frames": frames}))
    ngp = read_scene(tmp_path, normalize="none")
    assert ngp.format == "blender" and len(ngp.split["test"]) == 2  # frames 0 and 8 held out
    assert torch.allclose(ngp.cameras.focal_length[0], full.cameras.focal_length[0], atol=1e-5)
    assert torch.allclose(ngp.cameras.focal_length[2], 2 * full.cameras.focal_length[2], atol=1e-5)
    # instant-ngp's scale / offset define the box: the default ones keep NeRF-synthetic coordinates
    (tmp_path / "transforms.json").write_text(json.dumps({"camera_angle_x": meta["camera_angle_x"], "scale": 0.5,
                                                         "offset": [0.5, 0.25, 0.5], "frames": frames[:3]}))
    n = read_scene(tmp_path).normalization
    assert n.mode == "ngp" and abs(n.scale - 1.5) < 1e-9 and np.allclose(n.center, [0, 0.5, 0])


@pytest.mark.parametrize("kind", ["text", "binary"])
def test_colmap_model_matches_the_renders_and_pycolmap(views, colmap_dirs, kind):
    import pycolmap

    root = colmap_dirs[kind]
    assert detect_format(root) == "colmap"
    sc = read_colmap(root, normalize="none")
    assert sc.images.shape == (N, H, W, 3) and sc.names == _names()
    assert sc.split["test"] == [0, 8, 16] and len(sc.split["train"]) == N - 3
    err = (_pixels(sc.cameras, views.verts) - _pixels(views.cameras, views.verts)).abs().max()
    assert err < 1e-3, err
    # pycolmap's own projection of the same points (COLMAP pixel convention) agrees
    rec = pycolmap.Reconstruction(str(root / "sparse" / "0"))
    im = next(i for i in rec.images.values() if i.name == _names()[5])
    X = views.verts[::40].double().numpy()
    uv = np.stack([rec.cameras[im.camera_id].img_from_cam(im.cam_from_world() * x) for x in X])
    assert np.abs(uv - _pixels(sc.cameras[5], views.verts[::40])[0].double().numpy()).max() < 1e-3
    # points and colours come through; the normalised scene maps them consistently
    assert sc.points is not None and sc.points.shape == (len(views.verts[::7]), 3)
    assert torch.allclose(sc.points, views.verts[::7], atol=1e-5)
    assert sc.point_colors.min() >= 0 and sc.point_colors.max() <= 1
    nsc = read_colmap(root, normalize="points", up=(0.0, 0.0, 1.0))
    unrot = nsc.points.double().numpy() @ np.asarray(nsc.normalization.rotation).T  # the file's axes, scaled
    lo, hi = np.percentile(unrot, 2, axis=0), np.percentile(unrot, 98, axis=0)
    assert abs((hi - lo).max() / 2 - 1.5) < 1e-4 and np.abs(hi + lo).max() < 0.05  # the box of the points
    err = (_pixels(nsc.cameras, nsc.points) - _pixels(sc.cameras, sc.points)).abs().max()
    assert err < 1e-3
    # the object's up (+y of the renders) was found from the cameras and turned onto +z
    up_file = np.asarray([0.0, 1.0, 0.0]) @ np.asarray(nsc.normalization.rotation)
    assert up_file[2] > 0.95 and abs(float(nsc.up[2]) - 1) < 1e-6


def test_colmap_round_trip(views, colmap_dirs, tmp_path):
    sc = read_colmap(colmap_dirs["text"], normalize="none")
    write_colmap(tmp_path / "m", sc.cameras, sc.image_size, sc.names, sc.points, sc.point_colors, binary=True)
    (tmp_path / "images").symlink_to(colmap_dirs["text"] / "images")
    again = read_colmap(tmp_path / "m", image_dir=tmp_path / "images", normalize="none")
    assert torch.allclose(again.cameras.R, sc.cameras.R, atol=1e-6)
    assert torch.allclose(again.cameras.T, sc.cameras.T, atol=1e-5)
    assert torch.allclose(again.points, sc.points) and torch.allclose(again.point_colors, sc.point_colors)
    assert torch.equal(again.images, sc.images)


def _with_radial(src, root, k):
    import shutil

    import pycolmap

    shutil.copytree(src / "images", root / "images")
    rec = pycolmap.Reconstruction(str(src / "sparse" / "0"))
    for cam in rec.cameras.values():
        fx, fy, cx, cy = cam.params
        cam.model = pycolmap.CameraModelId.SIMPLE_RADIAL
        cam.params = [fx, cx, cy, k]
    (root / "sparse" / "0").mkdir(parents=True)
    rec.write_text(str(root / "sparse" / "0"))
    return rec


def test_distorted_colmap_is_rejected_or_undistorted(views, colmap_dirs, tmp_path):
    import pycolmap

    src = colmap_dirs["text"]
    # a distortion-free SIMPLE_RADIAL (k = 0) is a pinhole camera: read as it is
    _with_radial(src, tmp_path / "k0", 0.0)
    k0 = read_colmap(tmp_path / "k0", undistort="reject", normalize="none")
    assert (_pixels(k0.cameras, views.verts) - _pixels(views.cameras, views.verts)).abs().max() < 1e-3
    # k = 0.05: refused with one line, or undistorted through pycolmap into <scene>/undistorted
    rec = _with_radial(src, tmp_path / "k5", 0.05)
    with pytest.raises(UserError, match="SIMPLE_RADIAL.*undistort"):
        read_colmap(tmp_path / "k5", undistort="reject")
    und = read_colmap(tmp_path / "k5", normalize="none")
    model = pycolmap.Reconstruction(str(tmp_path / "k5" / "undistorted" / "sparse"))
    assert {c.model.name for c in model.cameras.values()} == {"PINHOLE"}
    # an undistorted pixel u' shows what the distorted image shows at distort(u'): pushing our
    # projection through pycolmap's undistorted and distorted cameras lands on pycolmap's own
    # projection of the point in the distorted image
    i = 5
    im = next(m for m in rec.images.values() if m.name == und.names[i])
    uim = next(m for m in model.images.values() if m.name == und.names[i])
    X = views.verts[::40]
    ours = _pixels(und.cameras[i], X, und.image_size)[0].double().numpy()
    cam_d, cam_u = rec.cameras[im.camera_id], model.cameras[uim.camera_id]
    back = np.stack([cam_d.img_from_cam(np.r_[cam_u.cam_from_img(u), 1.0]) for u in ours])
    direct = np.stack([cam_d.img_from_cam(im.cam_from_world() * x) for x in X.double().numpy()])
    assert np.abs(back - direct).max() < 1e-3


def test_bad_input_is_one_line(tmp_path, blender_dir):
    with pytest.raises(UserError, match="NeRF-synthetic.*COLMAP"):
        read_scene(tmp_path)
    (tmp_path / "transforms.json").write_text("{not json")
    with pytest.raises(UserError, match="readable JSON"):
        read_scene(tmp_path)
    meta = json.loads((blender_dir / "transforms_train.json").read_text())
    meta["frames"] = [dict(meta["frames"][0], file_path="./nowhere/r_0")]
    (tmp_path / "transforms.json").write_text(json.dumps(dict(meta, k1=0.1)))
    with pytest.raises(UserError, match="nowhere"):
        read_scene(tmp_path)
    meta["frames"] = [dict(meta["frames"][0], file_path=str(blender_dir / "train" / "r_0"))]
    (tmp_path / "transforms.json").write_text(json.dumps(dict(meta, k1=0.1)))
    with pytest.raises(UserError, match="distortion"):
        read_scene(tmp_path)
    with pytest.raises(UserError, match="normalize"):
        fit_normalization(read_scene(blender_dir, normalize="none").cameras, mode="bogus")


def test_normalization_cameras_identity():
    n = Normalization()
    x = torch.randn(5, 3)
    assert torch.equal(n.apply(x), x)


def _run_a3(config, out, *overrides, surface=False):
    from a3_volume_surface import surface_rendering_main, volume_rendering_main

    import sys

    old = sys.argv
    sys.argv = ["prog", f"--config-name={config}", "quick=true", f"output_dir={out}", "device=cpu", *overrides]
    try:
        (surface_rendering_main if surface else volume_rendering_main).main()
    finally:
        sys.argv = old
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("fmt", ["blender", "colmap"])
def test_a3_nerf_configs_read_the_scene(fmt, blender_dir, colmap_dirs, tmp_path):
    from a3_volume_surface.volume_runs import load_scene

    path = blender_dir if fmt == "blender" else colmap_dirs["binary"]
    # what the config hands the loader: data.format / data.path / data.background / data.normalize
    sc = load_scene({"data": {"format": fmt, "path": str(path), "image_size": [32, 24], "background": "white",
                              "normalize": "auto"}})
    assert sc.images.shape[1:] == (24, 32, 3) and sc.source == f"{fmt}:{path}"
    assert abs(float(sc.cameras.get_camera_center().norm(dim=-1).mean()) - 4.0) < 1e-3
    want = (SPLIT["train"], SPLIT["val"], SPLIT["test"]) if fmt == "blender" else None
    assert want is None or sc.split == want
    m = _run_a3(f"nerf_{fmt}", tmp_path / "run", f"data.path={path}", "data.image_size=[32,24]",
                "training.num_epochs=1", "training.steps_per_epoch=3", "gif.n_poses=2")
    assert m["data"].startswith("scene: ") and str(path) in m["data"] and m["image_size"] == [32, 24]
    assert m["train_views"] == len(sc.split[0]) and m["test_views"] == len(sc.split[2])
    assert np.isfinite(m["test_psnr"])


def test_a3_volsdf_on_a_scene_folder_exports_in_both_frames(blender_dir, tmp_path):
    """The README's VolSDF config on a NeRF-synthetic folder, with export_mesh=true: mesh.ply in
    the normalised frame the model trained in, mesh_file_frame.ply the same mesh in the file's frame."""
    import trimesh

    from l3d.scenes import Normalization

    out = tmp_path / "volsdf"
    m = _run_a3("volsdf_blender", out, f"data.path={blender_dir}", "data.image_size=[32,24]", "training.num_epochs=1", "training.steps_per_epoch=3",
                "gif.n_poses=2", "data.n_test_views=2", "export_mesh=true", "mesh_resolution=24", surface=True)
    assert m["data"].startswith("scene: NeRF-synthetic") and m["scene_info"]["format"] == "blender"
    norm = m["scene_info"]["normalization"]
    assert norm["mode"] != "none" and m["mesh_export"]["file_frame"] == norm
    scene = trimesh.load(out / "mesh.ply", process=False)
    file_frame = trimesh.load(out / "mesh_file_frame.ply", process=False)
    assert len(scene.faces) == len(file_frame.faces) > 100 and (out / "mesh_file_frame.obj").is_file()
    n = Normalization(tuple(norm["center"]), norm["scale"], tuple(map(tuple, norm["rotation"])), norm["mode"])
    back = n.apply(torch.as_tensor(file_frame.vertices, dtype=torch.float64))
    assert torch.allclose(back, torch.as_tensor(scene.vertices, dtype=torch.float64), atol=1e-5)


def test_a3_config_without_path_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _run_a3("nerf_blender", tmp_path / "run")
    assert e.value.code == 2
    assert "data.path: expected the folder of the blender scene" in capsys.readouterr().err


def test_a4_gaussians_read_both_formats(blender_dir, colmap_dirs, tmp_path):
    from a4_gaussians_diffusion.gaussians import train as a4_train
    from a4_gaussians_diffusion.gaussians.data import load_scene
    from a4_gaussians_diffusion.gaussians.sh import rgb_to_sh_dc
    from a4_gaussians_diffusion.gaussians.trainer import TrainConfig, init_gaussians

    col = load_scene(colmap_dirs["binary"])
    assert col.data.startswith("scene: COLMAP scene") and col.test_idx == [0, 8, 16] and len(col.train_idx) == N - 3
    n_pts = len(range(0, 3122, 7))  # stray points (none here, but a few of the densest-spread vertices) dropped
    assert col.points.shape == col.point_colors.shape and 0.97 * n_pts <= len(col.points) <= n_pts
    g = init_gaussians(TrainConfig(), col, "cpu")  # COLMAP points start the Gaussians: positions and colours
    assert torch.equal(g.means.detach(), col.points) and torch.allclose(g.colours.detach(), col.point_colors)
    # sparse points: the course's initial scale (mean squared distance to 50 neighbours), capped at
    # 3DGS's (the root of the mean squared distance to the 3 nearest points)
    sq = torch.cdist(col.points, col.points).pow(2).sort(dim=1).values
    course, cap = torch.log(sq[:, :50].mean(1)), 0.5 * torch.log(sq[:, 1:4].mean(1))
    assert torch.allclose(g.log_scales.detach()[:, 0], torch.minimum(course, cap), atol=1e-4)
    g_sh = init_gaussians(TrainConfig(sh=True), col, "cpu")
    assert torch.allclose(g_sh.sh.detach()[:, :3], rgb_to_sh_dc(col.point_colors), atol=1e-6)
    bl = load_scene(blender_dir, image_size=48)
    assert bl.image_size == (36, 48) and bl.background == (1.0, 1.0, 1.0) and bl.points is None
    assert bl.test_idx == SPLIT["test"] and bl.train_idx == SPLIT["train"]
    out = tmp_path / "a4"
    a4_train.main(["--data_path", str(colmap_dirs["text"]), "--steps", "3", "--output_dir", str(out),
                   "--save_every", "0", "--viz_every", "2", "--device", "cpu"])
    m = json.loads((out / "metrics.json").read_text())
    assert m["iterations"] == 3 and m["data"].startswith("scene: COLMAP") and m["scene_normalization"]["mode"] == "cameras"
    assert m["num_gaussians"] == len(col.points) and np.isfinite(m["psnr"])


def test_outlier_mask_drops_stray_points():
    from l3d.scenes import outlier_mask

    gen = torch.Generator().manual_seed(0)
    pts = torch.cat([torch.rand(500, 3, generator=gen), torch.tensor([[30.0, 0.0, 0.0], [0.5, -40.0, 0.5]])])
    keep = outlier_mask(pts)
    assert not keep[-2:].any() and keep[:-2].float().mean() > 0.97


def test_rendered_scene_agrees_across_formats(tmp_path):
    from l3d.scenes import write_rendered_scene

    paths = write_rendered_scene(tmp_path, num_views=14, image_size=32, num_test=3, num_points=200)
    bl = read_scene(paths["blender"], normalize="none")
    co = read_scene(paths["colmap"], normalize="none")
    order = bl.split["train"] + bl.split["val"] + bl.split["test"]  # blender frames in split order, colmap by name
    assert [co.names[i] for i in order] == [f"view_{i:03d}.png" for i in range(14)] and len(bl.split["test"]) == 3
    X = co.points
    err = (_pixels(bl.cameras, X, (32, 32)) - _pixels(co.cameras[torch.as_tensor(order)], X, (32, 32))).abs().max()
    assert err < 1e-3, err
    # the same pixels: RGBA on white (blender) and the white-composited images (colmap)
    assert (bl.images - co.images[torch.as_tensor(order)]).abs().max() < 1.5 / 255
    # written z-up like NeRF-synthetic: the cameras' mean up vector is +z
    assert float(bl.cameras.R[:, 2, 1].mean()) > 0.8
