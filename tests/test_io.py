"""Tests of l3d.io: OBJ/MTL/PLY reading and writing, images, GIF/MP4, metrics.json, command.txt."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageSequence

from l3d import io as l3dio
from l3d.errors import UserError
from l3d.io import load_obj, load_ply_mesh, load_ply_points, read_obj, save_obj, save_ply
from l3d.media import (_font, label_image, load_image, save_gif, save_gif_with_png, save_image, save_mp4,
    to_uint8)
from l3d.run import atomic_path, command_line, read_metrics, write_command, write_metrics



# ----------------------------------------------------------------------------------------------
# slow, obvious references
# ----------------------------------------------------------------------------------------------
def reference_parse_obj(text: str):
    """Line-by-line OBJ reader: (verts (V,3), faces (F,3), uvs (T,2), faces_uvs (F,3) with -1)."""
    verts, uvs, faces, fuvs = [], [], [], []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            verts.append([float(x) for x in parts[1:4]])
        elif parts[0] == "vt":
            uvs.append([float(parts[1]), float(parts[2]) if len(parts) > 2 else 0.0])
        elif parts[0] == "f":
            corners = []
            for c in parts[1:]:
                fields = c.split("/")
                vi = int(fields[0])
                vi = vi - 1 if vi > 0 else len(verts) + vi
                ti = -1
                if len(fields) > 1 and fields[1]:
                    t = int(fields[1])
                    ti = t - 1 if t > 0 else len(uvs) + t
                corners.append((vi, ti))
            for i in range(1, len(corners) - 1):
                tri = [corners[0], corners[i], corners[i + 1]]
                faces.append([c[0] for c in tri])
                fuvs.append([c[1] for c in tri])
    return (np.array(verts, np.float32).reshape(-1, 3), np.array(faces, np.int64).reshape(-1, 3),
            np.array(uvs, np.float32).reshape(-1, 2), np.array(fuvs, np.int64).reshape(-1, 3))


def random_obj_text(rng: np.random.Generator) -> str:
    """An OBJ with interleaved v/vt/f lines, polygons of 3-6 corners, all corner forms,
    positive and negative indices, comments, blank lines, tabs, vn/g/s lines and CRLF endings."""
    lines, nv, nt = [], 0, 0
    for _ in range(120):
        r = rng.random()
        if r < 0.3 or nv < 6:
            lines.append("v " + " ".join(f"{x:.6f}" for x in rng.normal(size=3)))
            nv += 1
        elif r < 0.45 or nt < 6:
            lines.append(f"vt\t{rng.random():.5f} {rng.random():.5f}")
            nt += 1
        elif r < 0.5:
            lines.append(rng.choice(["# a comment", "", "vn 0 0 1", "g part", "s off", "   "]))
        else:
            k = int(rng.integers(3, 7))
            vids = rng.choice(nv, size=k, replace=False)
            tids = rng.integers(0, nt, size=k)
            form = int(rng.integers(0, 4))
            corners = []
            for vi, ti in zip(vids, tids):
                v = str(vi + 1) if rng.random() < 0.5 else str(vi - nv)
                t = str(ti + 1) if rng.random() < 0.5 else str(ti - nt)
                corners.append([v, f"{v}/{t}", f"{v}/{t}/1", f"{v}//1"][form])
            lines.append("f " + " ".join(corners) + ("  # trailing comment" if rng.random() < 0.2 else ""))
    return "\r\n".join(lines) if rng.random() < 0.5 else "\n".join(lines) + "\n"


def sample_uv(maps: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup with the TexturesUV convention (v flipped, align_corners=True): (K, 3)."""
    grid = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2], -1)[None, None]  # (1, 1, K, 2)
    out = F.grid_sample(maps.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, :, 0].T


def no_temp_files(folder: Path):
    return [p.name for p in folder.rglob("*") if ".tmp" in p.name or p.name.endswith(".part")]


# ----------------------------------------------------------------------------------------------
# OBJ parsing
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_read_obj_matches_reference_parser(tmp_path, seed):
    text = random_obj_text(np.random.default_rng(seed))
    p = tmp_path / "r.obj"
    p.write_bytes(text.encode())
    obj = read_obj(p)
    v, f, uv, fuv = reference_parse_obj(text)
    assert len(f) > 20
    np.testing.assert_array_equal(obj.verts, v)
    np.testing.assert_array_equal(obj.faces, f)
    np.testing.assert_array_equal(obj.verts_uvs, uv)
    np.testing.assert_array_equal(obj.faces_uvs, fuv)


def test_obj_hand_written_forms(tmp_path):
    p = tmp_path / "a.obj"
    p.write_text(
        "# square, pentagon and relative indices\n"
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0 1.0\nv 0.5 2 0\n"
        "vt 0 0\nvt 1 0\nvt 1 1\n"
        "vn 0 0 1\n"
        "f 1/1/1 2/2/1 3/3/1 4/1/1\n"  # quad v/vt/vn -> (0,1,2), (0,2,3)
        "f -5//1 -4//1 -3//1 -1//1 -2//1\n"  # pentagon v//vn with negative indices
        "\tf 1 2 5 # plain\n"
    )
    obj = read_obj(p)
    assert obj.verts.shape == (5, 3)
    np.testing.assert_array_equal(
        obj.faces, [[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 2, 4], [0, 4, 3], [0, 1, 4]]
    )
    np.testing.assert_array_equal(obj.faces_uvs[:2], [[0, 1, 2], [0, 2, 0]])
    assert (obj.faces_uvs[2:] == -1).all()
    m = load_obj(p)
    assert m.textures is None
    assert m.verts_packed().dtype == torch.float32 and m.faces_packed().dtype == torch.int64


def test_obj_materials_per_face_and_degenerate_files(tmp_path):
    p = tmp_path / "m.obj"
    p.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nf 1 2 3\nusemtl B\nf 1 2 3 4\nusemtl A\n"
                 "f 1 2 3\nusemtl B\nf 1 2 3\n")
    obj = read_obj(p)
    assert obj.material_names == ["B", "A"]
    np.testing.assert_array_equal(obj.face_material, [-1, 0, 0, 1, 0])  # the quad gives 2 faces
    p.write_text("# points only\nv 0 0 0\nv 1 2 3\n")
    assert read_obj(p).verts.shape == (2, 3)  # the parser reads what is there ...
    with pytest.raises(UserError, match=r"m.obj: expected a mesh with at least one face, found 2 vertices"):
        load_obj(p)  # ... but a mesh without faces would render a blank image
    p.write_text("")
    assert read_obj(p).verts.shape == (0, 3)
    with pytest.raises(UserError, match="found no vertices and no faces"):
        load_obj(p)
    p.write_text("v 0 0 0\nv 1 0 nan\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(UserError, match=r"m.obj:2: expected finite vertex coordinates, found nan or inf"):
        load_obj(p)
    p.write_bytes(b"\x00\x01\x02binary\x00")
    with pytest.raises(UserError, match="expected a text OBJ file, found binary data"):
        load_obj(p)


def test_obj_errors_name_the_problem(tmp_path):
    p = tmp_path / "bad.obj"
    p.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n")
    with pytest.raises(UserError, match=r"bad.obj:4: a face needs at least 3 corners"):
        read_obj(p)
    p.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n")
    with pytest.raises(UserError, match="refers to vertex 7, but there are 3"):
        read_obj(p)
    p.write_text("v 0 0\n")
    with pytest.raises(UserError, match="bad.obj:1: 'v' needs at least 3 numbers"):
        read_obj(p)
    p.write_text("v 0 0 zero\n")
    with pytest.raises(UserError, match="could not parse 'v'"):
        read_obj(p)


def _write_png(path: Path, img: np.ndarray):
    Image.fromarray(img).save(path)


def test_textured_obj_single_material_and_uv_wrap(tmp_path):
    rng = np.random.default_rng(0)
    tex = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    _write_png(tmp_path / "t.png", tex)
    (tmp_path / "m.mtl").write_text("newmtl skin\nKd 1 1 1\nmap_Kd t.png\n")
    (tmp_path / "a.obj").write_text(
        "mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\n"
        "vt 0.25 0.5\nvt 1.25 -0.5\nvt 1 1\nvt -2.75 3.0\n"
        "usemtl skin\nf 1/1 2/2 3/3\nf 2/4 4/3 3/2\nf 2 4 3\n"
    )
    m = load_obj(tmp_path / "a.obj")
    t = m.textures
    assert t.maps.shape == (1, 6, 8, 3)
    np.testing.assert_allclose(t.maps[0].numpy(), tex / 255.0, atol=1e-7)
    uvs = t.verts_uvs_list()[0].numpy()
    # wrap: 1.25 -> 0.25, -0.5 -> 0.5, -2.75 -> 0.25, 3.0 -> 0.0 ; in-range 1.0 stays 1.0
    np.testing.assert_allclose(uvs[:4], [[0.25, 0.5], [0.25, 0.5], [1.0, 1.0], [0.25, 0.0]], atol=1e-6)
    # the corners of a face without vt use (0, 0)
    fuv = t.faces_uvs_list()[0].numpy()
    np.testing.assert_allclose(uvs[fuv[2]], [[0.0, 0.0]] * 3)
    np.testing.assert_array_equal(fuv[:2], [[0, 1, 2], [3, 2, 1]])
    assert load_obj(tmp_path / "a.obj", load_textures=False).textures is None


def test_textured_obj_several_materials_become_an_atlas(tmp_path):
    rng = np.random.default_rng(1)
    img_a = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    img_b = rng.integers(0, 256, size=(7, 3, 3), dtype=np.uint8)
    _write_png(tmp_path / "a.png", img_a)
    _write_png(tmp_path / "b.png", img_b)
    (tmp_path / "m.mtl").write_text(
        "newmtl A\nmap_Kd a.png\n\nnewmtl B\nKd 0.1 0.2 0.3\nmap_Kd b.png\n\n"
        "newmtl plain\nKd 0.2 0.4 0.6\n\nnewmtl A2\nmap_Kd a.png\n"
    )
    uv = rng.random((12, 2))
    lines = ["mtllib m.mtl", "v 0 0 0", "v 1 0 0", "v 0 1 0"] + [f"vt {u:.6f} {v:.6f}" for u, v in uv]
    lines += ["usemtl A", "f 1/1 2/2 3/3", "usemtl B", "f 1/4 2/5 3/6", "f 1/1 2/2 3/3",
              "usemtl plain", "f 1/7 2/8 3/9", "usemtl A2", "f 1/10 2/11 3/12"]
    (tmp_path / "s.obj").write_text("\n".join(lines) + "\n")
    m = load_obj(tmp_path / "s.obj")
    t = m.textures
    maps = t.maps
    assert maps.shape == (1, 7, 5 + 3 + 3, 3)  # a, b and a 3x3 colour patch side by side
    new_uv = t.faces_verts_uvs_packed().reshape(-1, 2)  # (F*3, 2)
    got = sample_uv(maps, new_uv.float()).reshape(-1, 3, 3)
    fuv = np.array([[0, 1, 2], [3, 4, 5], [0, 1, 2], [6, 7, 8], [9, 10, 11]])
    uvt = torch.tensor(uv, dtype=torch.float32)
    ta = torch.tensor(img_a / 255.0, dtype=torch.float32)[None]
    tb = torch.tensor(img_b / 255.0, dtype=torch.float32)[None]
    want = [sample_uv(ta, uvt[fuv[0]]), sample_uv(tb, uvt[fuv[1]]), sample_uv(tb, uvt[fuv[2]]),
            torch.tensor([[0.2, 0.4, 0.6]] * 3), sample_uv(ta, uvt[fuv[4]])]
    for k in range(5):
        torch.testing.assert_close(got[k], want[k], atol=1e-5, rtol=0)


def test_obj_without_mtl_file_warns_and_has_no_texture(tmp_path):
    (tmp_path / "a.obj").write_text("mtllib nothere.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nusemtl x\nf 1/1 2/1 3/1\n")
    with pytest.warns(UserWarning, match="nothere.mtl"):
        m = load_obj(tmp_path / "a.obj")
    assert m.textures is None


COURSE = {  # name: (V, F, T, texture (H, W))
    "cow": (2930, 5856, 3225, (1024, 1024)),
    "cow_on_plane": (2938, 5868, 3233, (1024, 2048)),
    "cow_with_axis": (3230, 6432, 12, (10, 40)),
    "joint_mesh": (654, 1296, 9, (10, 30)),
}


def _course_file(name: str) -> Path:
    root = os.environ.get("L3D_DATA")
    p = Path(root) / "a1" / f"{name}.obj" if root else None
    if p is None or not p.exists():
        pytest.skip(f"course file a1/{name}.obj not available (set L3D_DATA to a data root that has it)")
    return p


@pytest.mark.parametrize("name", sorted(COURSE))
def test_course_obj_files(name):
    import trimesh

    p = _course_file(name)
    nv, nf, nt, (ht, wt) = COURSE[name]
    m = load_obj(p)
    assert tuple(m.verts_packed().shape) == (nv, 3)
    assert tuple(m.faces_packed().shape) == (nf, 3)
    assert tuple(m.textures.verts_uvs_list()[0].shape) == (nt, 2)
    assert tuple(m.textures.maps.shape) == (1, ht, wt, 3)
    # an independent reader (trimesh splits vertices at seams, but corner positions/uvs agree)
    tm = trimesh.load(p, process=False)
    np.testing.assert_allclose(m.faces_verts_packed().numpy(), tm.vertices[tm.faces], atol=1e-6)
    tuv = l3dio.wrap_uvs(np.asarray(tm.visual.uv, dtype=np.float32))
    np.testing.assert_allclose(m.textures.faces_verts_uvs_packed().numpy(), tuv[tm.faces], atol=1e-6)
    if name == "cow":
        bb = m.get_bounding_boxes()[0]
        np.testing.assert_allclose(bb.numpy(), [[-0.47, 0.47], [-0.74, 0.95], [-0.67, 1.05]], atol=0.01)


def test_cow_loads_fast():
    p = _course_file("cow")
    load_obj(p)  # warm up imports
    t0 = time.perf_counter()
    load_obj(p)
    dt = time.perf_counter() - t0
    assert dt < 0.5, f"loading cow.obj took {dt:.3f} s"


# ----------------------------------------------------------------------------------------------
# OBJ / PLY writing
# ----------------------------------------------------------------------------------------------
def test_save_obj_load_obj_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    verts = torch.randn(50, 3, generator=g)
    faces = torch.randint(0, 50, (80, 3), generator=g)
    uvs = torch.rand(40, 2, generator=g)
    fuv = torch.randint(0, 40, (80, 3), generator=g)
    tex = torch.rand(9, 13, 3, generator=g)
    out = save_obj(tmp_path / "sub" / "mesh.obj", verts, faces, uvs, fuv, tex)
    assert sorted(p.name for p in out.parent.iterdir()) == ["mesh.mtl", "mesh.obj", "mesh.png"]
    m = load_obj(out)
    assert torch.equal(m.verts_packed(), verts)  # 9 significant digits: float32 exact
    assert torch.equal(m.faces_packed(), faces)
    assert torch.equal(m.textures.verts_uvs_list()[0], uvs)
    assert torch.equal(m.textures.faces_uvs_list()[0], fuv)
    torch.testing.assert_close(m.textures.maps[0], torch.round(tex * 255) / 255, atol=1e-6, rtol=0)
    # geometry only
    out2 = save_obj(tmp_path / "plain.obj", verts.numpy(), faces.numpy())
    m2 = load_obj(out2)
    assert m2.textures is None and torch.equal(m2.verts_packed(), verts)
    with pytest.raises(ValueError, match=r"faces must have shape \(F, 3\)"):
        save_obj(tmp_path / "x.obj", verts, faces[:, :2])
    assert no_temp_files(tmp_path) == []


def test_ply_round_trip(tmp_path):
    g = torch.Generator().manual_seed(1)
    verts = torch.randn(30, 3, generator=g)
    faces = torch.randint(0, 30, (20, 3), generator=g)
    cols = torch.rand(30, 3, generator=g)
    save_ply(tmp_path / "m.ply", verts, faces, cols)
    m = load_ply_mesh(tmp_path / "m.ply")
    assert torch.equal(m.verts_packed(), verts)
    assert torch.equal(m.faces_packed(), faces)
    want = torch.tensor(to_uint8(cols), dtype=torch.float32) / 255
    torch.testing.assert_close(m.textures.verts_features_packed(), want)
    save_ply(tmp_path / "p.ply", verts, binary=False)
    pts, c = load_ply_points(tmp_path / "p.ply")
    assert torch.equal(pts, verts) and c is None
    with pytest.raises(UserError, match="has no faces"):
        load_ply_mesh(tmp_path / "p.ply")


def test_ply_polygons_are_fan_triangulated(tmp_path):
    (tmp_path / "q.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nproperty float y\nproperty float z\n"
        "element face 2\nproperty list uchar int vertex_indices\nend_header\n"
        "0 0 0\n1 0 0\n1 1 0\n0 1 0\n2 2 0\n4 0 1 2 3\n3 1 4 2\n"
    )
    m = load_ply_mesh(tmp_path / "q.ply")
    assert m.faces_packed().tolist() == [[0, 1, 2], [0, 2, 3], [1, 4, 2]]


# ----------------------------------------------------------------------------------------------
# images, GIF, MP4
# ----------------------------------------------------------------------------------------------
def test_to_uint8_rounding_and_truncation():
    x = np.random.default_rng(0).random((7, 5, 3)).astype(np.float32)
    x[0, 0] = [0.999, 0.5, -0.2]
    r, t = to_uint8(x), to_uint8(torch.from_numpy(x), truncate=True)
    np.testing.assert_array_equal(t, np.uint8(np.clip(x, 0, 1) * 255))  # the reference way
    assert np.abs(r.astype(np.float64) - np.clip(x, 0, 1) * 255).max() <= 0.5
    assert r[0, 0].tolist() == [255, 128, 0] and t[0, 0].tolist() == [254, 127, 0]
    u = np.arange(256, dtype=np.uint8)
    assert to_uint8(u) is u


def test_image_round_trip(tmp_path):
    img = np.random.default_rng(0).random((10, 12, 4)).astype(np.float32)
    save_image(tmp_path / "a" / "x.png", img)
    back = load_image(tmp_path / "a" / "x.png")
    assert back.shape == (10, 12, 4) and back.dtype == torch.float32
    np.testing.assert_array_equal((back.numpy() * 255).round().astype(np.uint8), to_uint8(img))
    # JPEG has no alpha: RGBA is composited over white
    rgba = np.zeros((8, 8, 4), np.float32)
    save_image(tmp_path / "y.jpg", rgba)
    assert load_image(tmp_path / "y.jpg").shape == (8, 8, 3)
    assert load_image(tmp_path / "y.jpg").min() > 0.97
    assert no_temp_files(tmp_path) == []


def _distinct_frames(t=6, h=16, w=20):
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):  # a moving bar: every frame differs from the previous one
        frames[i, :, 2 * i : 2 * i + 4] = (255, 0, 0)
        frames[i, i : i + 3] = (0, 0, 255)
    return frames


def _gif_info(path):
    with Image.open(path) as im:
        durs = [fr.info.get("duration") for fr in ImageSequence.Iterator(im)]
        return durs, im.info.get("loop"), im.n_frames


def test_gif_fps_durations_loop_and_pixels(tmp_path):
    frames = _distinct_frames()
    out = save_gif(tmp_path / "g" / "a.gif", frames.astype(np.float32) / 255, fps=10)
    durs, loop, n = _gif_info(out)
    assert n == 6 and durs == [100] * 6 and loop == 0
    import imageio.v3 as iio

    back = iio.imread(out, index=None)[..., :3]
    np.testing.assert_array_equal(back, frames)  # 3 colours: no palette error
    # 15 fps: 66.7 ms, stored in 1/100 s and rounded up (never faster than asked)
    save_gif(tmp_path / "b.gif", list(frames), fps=15)
    durs, _, n = _gif_info(tmp_path / "b.gif")
    assert n == 6 and durs == [70] * 6
    # explicit duration and a finite loop count
    save_gif(tmp_path / "c.gif", torch.from_numpy(frames), duration_ms=250, loop=3)
    durs, loop, _ = _gif_info(tmp_path / "c.gif")
    assert durs == [250] * 6 and loop == 3
    assert no_temp_files(tmp_path) == []


def test_gif_rgba_over_white_and_identical_frames_merge(tmp_path):
    rgba = np.zeros((3, 8, 8, 4), np.float32)
    rgba[:, :4, :, :] = (0, 1, 0, 1)  # opaque green top half, transparent bottom half
    rgba[1, 0, 0] = (1, 0, 0, 1)
    rgba[2, 0, 0] = (0, 0, 1, 1)
    save_gif(tmp_path / "a.gif", rgba, fps=10)
    import imageio.v3 as iio

    back = iio.imread(tmp_path / "a.gif", index=None)[..., :3]
    assert (back[:, 4:] == 255).all() and (back[:, 1:4] == (0, 255, 0)).all()
    # documented Pillow behaviour: identical consecutive frames become one, durations summed
    same = np.repeat(_distinct_frames(1), 3, axis=0)
    save_gif(tmp_path / "s.gif", same, fps=10)
    durs, _, n = _gif_info(tmp_path / "s.gif")
    assert n == 1 and durs == [300]


def test_gif_with_png(tmp_path):
    frames = _distinct_frames(5)
    gif, png = save_gif_with_png(tmp_path / "turn.gif", frames, fps=10)
    assert png == tmp_path / "turn.png"
    np.testing.assert_array_equal(np.asarray(Image.open(png)), frames[2])
    assert _gif_info(gif)[2] == 5


def test_mp4_frame_count(tmp_path):
    import imageio_ffmpeg

    frames = np.zeros((12, 33, 35, 3), np.float32)  # odd sizes are padded
    frames[..., 0] = np.linspace(0, 1, 12)[:, None, None]
    out = save_mp4(tmp_path / "v" / "a.mp4", frames, fps=12)
    n, secs = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert n == 12 and abs(secs - 1.0) < 0.1
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = reader.__next__()
    assert tuple(meta["size"]) == (36, 34)
    last = np.frombuffer(list(reader)[-1], np.uint8).reshape(34, 36, 3)
    assert abs(int(last[10, 10, 0]) - 255) < 12 and last[10, 10, 1] < 12
    assert no_temp_files(tmp_path) == []


def test_label_image_changes_only_the_text_box():
    from PIL import ImageDraw

    img = np.full((64, 96, 3), 0.5, np.float32)
    out = label_image(img, "fov: 42.00", xy=(20, 20))
    changed = np.abs(out - img).max(-1) > 0
    box = ImageDraw.Draw(Image.new("L", (96, 64))).textbbox((20, 20), "fov: 42.00", font=_font(None))
    rows, cols = np.nonzero(changed)
    assert changed.sum() > 20
    assert rows.min() >= box[1] and rows.max() < box[3] and cols.min() >= box[0] and cols.max() < box[2]
    # changed pixels move towards red
    assert (out[changed][:, 0] >= 0.5).all() and (out[changed][:, 1] <= 0.5).all()
    # uint8 and tensor inputs keep their type; fully covered pixels are exactly the colour
    u8 = label_image(np.zeros((40, 120, 3), np.uint8), "HH", size=24)
    assert u8.dtype == np.uint8 and (u8.reshape(-1, 3) == (255, 0, 0)).all(-1).any()
    t = label_image(torch.zeros(40, 120, 4), "HH", size=24, color=(0, 255, 0))
    assert torch.is_tensor(t) and t.shape == (40, 120, 4) and t[..., 1].max() == 1 and t[..., 3].max() == 1


# ----------------------------------------------------------------------------------------------
# atomic writes, metrics.json, command.txt
# ----------------------------------------------------------------------------------------------
def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert no_temp_files(tmp_path) == []
    # a writer that fails inside the library call
    with pytest.raises(ValueError):
        save_gif(tmp_path / "a.gif", np.zeros((2, 4, 4, 5), np.uint8))
    assert not (tmp_path / "a.gif").exists() and no_temp_files(tmp_path) == []


def test_metrics_merge(tmp_path):
    d = tmp_path / "out"
    write_metrics(d, {"loss": 1.5, "nested": {"a": 1}, "name": "x"})
    merged = write_metrics(d, {
        "psnr": torch.tensor(31.25), "nested": {"b": np.float32(2.5)}, "arr": np.arange(3),
        "t": torch.tensor([[1, 2]]), "bad": float("nan"), "inf": float("inf"), "path": Path("a/b"),
    })
    want = {"loss": 1.5, "nested": {"a": 1, "b": 2.5}, "name": "x", "psnr": 31.25, "arr": [0, 1, 2],
            "t": [[1, 2]], "bad": "nan", "inf": "inf", "path": "a/b"}
    assert merged == want
    text = (d / "metrics.json").read_text()

    def no_constants(c):
        raise AssertionError(f"non-standard JSON constant {c}")

    assert json.loads(text, parse_constant=no_constants) == want
    assert read_metrics(d) == want == read_metrics(d / "metrics.json")
    assert write_metrics(d, {"only": 1}, merge=False) == {"only": 1} == read_metrics(d)
    assert read_metrics(tmp_path / "nothing") == {}
    assert no_temp_files(tmp_path) == []


def test_command_line_reconstruction(tmp_path, monkeypatch):
    assert command_line(["/x/render.py", "--fps", "10", "a b"], module="a1_rendering.render") == \
        "python -m a1_rendering.render --fps 10 'a b'"
    assert command_line(["scripts/run.py", "-q"], module="") == "python scripts/run.py -q"
    # detection from the __main__ module, as under `python -m mypkg.tool` / `python -m mypkg`
    import types

    for spec_name, want in [("mypkg.tool", "python -m mypkg.tool"), ("mypkg.__main__", "python -m mypkg")]:
        fake = types.ModuleType("__main__")
        fake.__spec__ = types.SimpleNamespace(name=spec_name)
        monkeypatch.setitem(sys.modules, "__main__", fake)
        monkeypatch.setattr(sys, "argv", ["/abs/path/mypkg/tool.py", "--out", str(tmp_path / "o"), "--n", "3"])
        path = write_command(tmp_path / spec_name)
        assert path == tmp_path / spec_name / "command.txt"
        assert path.read_text() == f"{want} --out {tmp_path / 'o'} --n 3\n"
    # one line per distinct command that wrote into the folder
    p = write_command(tmp_path / "w", command_line(["x.py"], module="pkg"))
    write_command(tmp_path / "w", command_line(["x.py", "--resume"], module="pkg"))
    write_command(tmp_path / "w", command_line(["x.py"], module="pkg"))
    assert p.read_text() == "python -m pkg\npython -m pkg --resume\n"


def test_gif_global_palette_is_accurate(tmp_path):
    """The shared-palette fast path is about as accurate as Pillow's per-frame palettes."""
    from PIL import Image

    from l3d.media import save_gif

    y, x = np.mgrid[0:64, 0:64] / 63.0
    # a shaded, slowly changing object on a white background (render-like content)
    shade = np.clip(1 - ((x - 0.5) ** 2 + (y - 0.5) ** 2) * 3, 0, 1)
    frames = np.stack([np.where((shade > 0.2)[..., None], shade[..., None] * np.array([0.7, 0.7 - t / 40, 1.0]), 1.0)
                       for t in range(10)])
    errs = {}
    for mode in ("global", "per_frame"):
        p = save_gif(tmp_path / f"{mode}.gif", frames, fps=10, palette=mode)
        g = Image.open(p)
        assert g.n_frames == 10
        dec = []
        for i in range(g.n_frames):
            g.seek(i)
            dec.append(np.asarray(g.convert("RGB"), dtype=np.float64))
        errs[mode] = np.abs(np.stack(dec) - np.round(frames * 255)).mean()
    # ~1000 distinct colours over the clip share 256 palette entries: about 1 % error; each frame alone has
    # fewer than 256 colours, so per-frame palettes are exact here
    assert errs["global"] < 3.0 and errs["per_frame"] < 0.5, errs
    with pytest.raises(ValueError, match="palette"):
        save_gif(tmp_path / "x.gif", frames, palette="nope")


def test_damaged_inputs_are_user_errors_naming_the_file(tmp_path):
    """A truncated PNG (as a texture or an image) and a PLY with NaN positions are one-line user
    errors that name the file, not tracebacks or blank renders."""
    img = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    good = tmp_path / "t.png"
    Image.fromarray(img).save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError, match=r"cut.png: expected a complete image file, found a damaged or truncated"):
        load_image(cut)
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(UserError, match=r"junk.png: expected an image file Pillow can read"):
        load_image(tmp_path / "junk.png")
    # the same damage in an OBJ's texture
    (tmp_path / "m.mtl").write_text("newmtl skin\nmap_Kd cut.png\n")
    (tmp_path / "a.obj").write_text("mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\n"
                                    "usemtl skin\nf 1/1 2/2 3/3\n")
    with pytest.raises(UserError, match="cut.png"):
        load_obj(tmp_path / "a.obj")
    verts = torch.tensor([[0.0, 0, 0], [float("nan"), 0, 0], [0, 1, 0]])
    save_ply(tmp_path / "n.ply", verts, faces=torch.tensor([[0, 1, 2]]))
    with pytest.raises(UserError, match=r"n.ply: expected finite vertex positions, found 1 vertices with nan"):
        load_ply_mesh(tmp_path / "n.ply")
    with pytest.raises(UserError, match=r"n.ply: expected finite vertex positions"):
        load_ply_points(tmp_path / "n.ply")
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nend_header\n1\n")
    with pytest.raises(UserError, match="bad.ply: expected a PLY file"):
        load_ply_points(tmp_path / "bad.ply")


def test_to_uint8_of_a_tensor_equals_the_numpy_path():
    """Tensors convert in torch (all threads), arrays in numpy: the same bytes, near-ties and the
    ends included (clipping, NaN -> 0)."""
    import numpy as np
    import torch

    from l3d.media import to_uint8

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 17, 19, 3, generator=g) * 1.2 - 0.1
    x[0, 0, 0] = torch.tensor([0.5 / 255, 1.5 / 255, 2.5 / 255])  # (nearly) ties: both paths see the same float32
    x[0, 0, 1] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    for truncate in (False, True):
        a = to_uint8(x, truncate=truncate)
        with np.errstate(invalid="ignore"):
            b = to_uint8(np.nan_to_num(x.numpy(), nan=0.0), truncate=truncate)
        assert a.dtype == np.uint8 and np.array_equal(a, b)
    assert to_uint8(x)[0, 0, 1].tolist() == [0, 255, 0]
