"""Assignment 3 data: the NeRF scene format, the built-in scenes, the bunny, pixel lookups, Q0."""

import math
from pathlib import Path

import numpy as np
import pytest

from l3d.errors import UserError
import torch

from a3_volume_surface.cameras import surround_cameras
from a3_volume_surface.common import lookup_pixels
from a3_volume_surface.data import (
    builtin_scene, builtin_scene_mesh, load_bunny, load_nerf_scene, points_data_label, read_nerf_files, scene_cameras,
    scene_data_label, standin_kind, write_nerf_files,
)
from l3d.data import DATASETS
from l3d.rays import ndc_grid

ROOT = Path(__file__).resolve().parents[2]


def test_surround_cameras_follow_the_convention():
    cams = surround_cameras(3.0, 4, up=(0.0, 1.0, 0.0))
    c = cams.get_camera_center()
    assert torch.allclose(c[0], torch.tensor([0.0, 0.0, -3.0]), atol=1e-5)  # theta = 0: eye (0, 0, -3), R = I
    assert torch.allclose(cams.R[0], torch.eye(3), atol=1e-6)
    assert torch.allclose(c[1], torch.tensor([-3.0, 0.0, 0.0]), atol=1e-5)  # cos(pi/2 + pi/2) r, 0, -sin(pi) r
    z = surround_cameras(4.0, 4, up=(0.0, 0.0, 1.0), focal_length=2.0)
    cz = z.get_camera_center()
    assert torch.allclose(cz[0], torch.tensor([0.0, 4.0, 2.0]), atol=1e-5) and (cz[:, 2] == 2.0).all()
    assert torch.allclose(z.focal_length, torch.full((4, 2), 2.0))


def test_nerf_files_round_trip(tmp_path):
    cams, split = scene_cameras(4, 1, 2)
    imgs = torch.rand(7, 8, 8, 3)
    write_nerf_files(tmp_path / "s.pth", tmp_path / "s.png", imgs, cams, split)
    meta = torch.load(tmp_path / "s.pth", weights_only=True)
    assert set(meta["cameras"]) == {"R", "T", "focal_length", "principal_point"} and meta["split"] == [
        [0, 1, 2, 3], [4], [5, 6]]
    from PIL import Image

    assert Image.open(tmp_path / "s.png").size == (8, 56)  # stacked vertically
    scene = read_nerf_files(tmp_path / "s.pth", tmp_path / "s.png")
    assert torch.allclose(scene.images, imgs, atol=0.5 / 255 + 1e-6)
    assert torch.allclose(scene.cameras.R, cams.R) and scene.split == ([0, 1, 2, 3], [4], [5, 6])
    small = read_nerf_files(tmp_path / "s.pth", tmp_path / "s.png", (4, 4))
    assert small.images.shape == (7, 4, 4, 3)
    with pytest.raises(UserError, match="aspect ratio"):
        read_nerf_files(tmp_path / "s.pth", tmp_path / "s.png", (4, 8))
    torch.save({"cameras": {}}, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="a NeRF scene file"):
        read_nerf_files(tmp_path / "bad.pth", tmp_path / "s.png")


def test_builtin_scene_generator(tmp_path, monkeypatch):
    monkeypatch.setenv("L3D_DATA", str(tmp_path / "empty"))
    scene = load_nerf_scene("lego", (16, 16), cache_dir=str(tmp_path), n_train=100, n_val=2, n_test=3, supersample=1,
                            quiet=True)
    assert scene.source == "builtin:cow" and scene.images.shape == (105, 16, 16, 3)
    assert len(scene.split[0]) == 100 and scene.split[2] == [102, 103, 104]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["builtin_cow_16px_100-2-3_ss1.png", "builtin_cow_16px_100-2-3_ss1.pth"]
    assert scene_data_label(scene.source, "lego") == ("stand-in: built-in cow scene rendered by l3d (the course's "
                                                      "lego.pth/lego.png are not in the data root)")
    again = load_nerf_scene("lego", (16, 16), cache_dir=str(tmp_path), n_train=100, n_val=2, n_test=3, supersample=1)
    assert torch.allclose(again.images, scene.images, atol=1 / 255)  # read back from the cached files
    # cameras: distance 4, looking at the origin, z up, all above the ground plane
    c = scene.cameras.get_camera_center()
    assert torch.allclose(c.norm(dim=-1), torch.full((105,), 4.0), atol=1e-4) and (c[:, 2] > 0.4).all()
    # the object is in the middle of every view on a black background
    assert (scene.images[:, 0, 0] == 0).all() and (scene.images[:, 8, 8].sum(-1) > 0.1).all()


def test_materials_scene_is_view_dependent():
    """Glossy spheres (Phong highlights that move with the view) vs the diffuse lego stand-in."""
    mesh, mat = builtin_scene_mesh("materials")
    assert mat["specular"].max() > 0.5 and mat["specular"].min() == 0.0
    imgs, cams, _ = builtin_scene("materials", (32, 32), n_train=6, n_val=0, n_test=0, supersample=1)
    assert imgs.max() > 0.95  # highlights saturate
    _, lmat = builtin_scene_mesh("lego")
    assert float(lmat["specular"]) == 0.0  # the cow standing in for lego is diffuse (view-independent)
    assert builtin_scene_mesh("glossy_spheres")[0].verts_packed().shape == mesh.verts_packed().shape
    assert standin_kind("materials") == "glossy_spheres" and standin_kind("lego") == standin_kind("fern") == "cow"


def test_bunny_file_and_fallback(tmp_path, monkeypatch):
    p = tmp_path / "a3" / "bunny_pointcloud.npz"
    p.parent.mkdir()
    np.savez(p, verts=np.arange(30, dtype=np.float32).reshape(10, 3))
    monkeypatch.setenv("L3D_DATA", str(tmp_path))
    pts, src = load_bunny()
    assert pts.shape == (10, 3) and src.startswith("file:")
    assert points_data_label(src) == "course: a3/bunny_pointcloud.npz"
    monkeypatch.setenv("L3D_DATA", str(tmp_path / "none"))
    pts, src = load_bunny(quiet=True)
    assert pts.shape == (10000, 3) and src == "builtin:procedural_cow_points" and pts.abs().max() < 1.5
    assert points_data_label(src).startswith("stand-in: 10000 points sampled on l3d's procedural cow mesh")
    with pytest.raises(UserError, match="no such file"):
        load_bunny(str(tmp_path / "nope.npz"))


def test_nerf_datasets_registered():
    ds = DATASETS["a3_nerf"]
    rel = sorted(f.relpath for f in ds.files)
    assert rel == ["a3/lego.png", "a3/lego.pth", "a3/materials.png", "a3/materials.pth"]
    assert all(f.url.startswith("https://raw.githubusercontent.com/learning3d/assignment3/") for f in ds.files)
    assert all(f.sha256 is None and f.optional for f in ds.files)


def test_pixel_lookups():
    img = torch.rand(1, 8, 8, 3)
    grid = ndc_grid((8, 8))
    exact = lookup_pixels(img, grid, "exact")
    assert torch.allclose(lookup_pixels(img, grid, "bilinear"), exact, atol=1e-6)
    course = lookup_pixels(img, grid, "grid_sample")
    assert not torch.allclose(course, exact, atol=1e-3)  # the course's lookup interpolates
    # pixel (0, 0): NDC 1 - 1/8 -> align_corners position (1/16) * 7 = 0.4375 pixels from the corner centre
    a = 0.4375
    ref = (img[0, 0, 0] * (1 - a) ** 2 + img[0, 0, 1] * (1 - a) * a + img[0, 1, 0] * a * (1 - a) + img[0, 1, 1] * a * a)
    assert torch.allclose(course[0, 0], ref, atol=1e-6)
    with pytest.raises(UserError, match="own resolution"):
        lookup_pixels(img, ndc_grid((4, 4)), "exact")


def test_q0_transmittance_script(tmp_path, capsys):
    from a3_volume_surface.q0_transmittance import main

    main(["--output_dir", str(tmp_path)])
    out = capsys.readouterr().out
    import json

    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["exponents"] == {"T(y1,y2)": 2.0, "T(y2,y4)": 30.5, "T(x,y4)": 32.5, "T(x,y3)": 2.5}
    assert m["values"]["T(x,y4)"] == pytest.approx(math.exp(-32.5))
    assert "T(y2,y4) = e^-30.5" in out and (tmp_path / "q0_transmittance.md").exists()
    for k, v in m["values"].items():  # discrete volume rendering agrees
        assert m["discrete_check"][k] == pytest.approx(v, rel=1e-3)
    assert all(c["pass"] for c in m["checks"].values()) and set(m["checks"]) == {"discrete_vs_closed_form",
                                                                                 "exponents_vs_answer"}
    assert (tmp_path / "q0_transmittance.png").exists()
