"""Assignment 1 under bad input: every failure is one line naming the file or flag, exit status 2,
and nothing is written (no blank render from an empty mesh)."""

import importlib
import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from l3d.cli import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
MESH_SCRIPTS = ["render_mesh", "render_360", "dolly_zoom", "retexture", "camera_transforms", "sample_points"]


def _fail(module, argv, capsys):
    """Run ``python -m a1_rendering.<module> *argv`` in this process; it must stop with a
    SystemExit. Returns (exit status, stderr)."""
    main = importlib.import_module(f"a1_rendering.{module}").main
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
    return exc.value.code, capsys.readouterr().err


def _one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _textured_obj(folder: Path, truncate: bool) -> Path:
    """A textured tetrahedron (OBJ + MTL + PNG); ``truncate`` cuts the PNG in half."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / "tex.png")
    if truncate:
        data = (folder / "tex.png").read_bytes()
        (folder / "tex.png").write_bytes(data[: len(data) // 2])
    (folder / "m.mtl").write_text("newmtl m\nKd 1 1 1\nmap_Kd tex.png\n")
    (folder / "m.obj").write_text(
        "mtllib m.mtl\nusemtl m\n"
        "v 0.6 0.6 0.6\nv 0.6 -0.6 -0.6\nv -0.6 0.6 -0.6\nv -0.6 -0.6 0.6\n"
        "vt 0 0\nvt 1 0\nvt 0 1\nvt 1 1\n"
        "f 1/1 2/2 3/3\nf 1/1 4/4 2/2\nf 1/1 3/3 4/4\nf 2/2 4/4 3/3\n")
    return folder / "m.obj"


@pytest.fixture(scope="module")
def bad_meshes(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.obj").write_text("")
    (d / "binary.obj").write_bytes(bytes(range(256)) * 8)
    (d / "nan.obj").write_text("v 0 0 0\nv 1 nan 0\nv 0 1 0\nf 1 2 3\n")
    (d / "flat.obj").write_text("v 0 0 0\nv 1 1 1\nv 2 2 2\nf 1 2 3\n")  # one face of zero area
    return {"empty": d / "empty.obj", "binary": d / "binary.obj", "nan": d / "nan.obj", "zero_area": d / "flat.obj",
            "truncated_texture": _textured_obj(d / "trunc", truncate=True)}


# ----------------------------------------------------------------------------------------------
# 1, 2: bad meshes and damaged textures
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["empty", "binary", "nan", "zero_area", "truncated_texture"])
@pytest.mark.parametrize("module", MESH_SCRIPTS)
def test_bad_mesh_is_one_line_and_writes_nothing(module, kind, bad_meshes, tmp_path, capsys):
    """Used to render a blank image (empty, binary, NaN OBJ) or end in a traceback (texture)."""
    path = bad_meshes[kind]
    out = tmp_path / "out"
    code, err = _fail(module, ["--quick", "--data_path", str(path), "--output_dir", str(out)], capsys)
    line = _one_line(err)
    assert code == 2
    bad_file = path.parent / "tex.png" if kind == "truncated_texture" else path
    assert str(bad_file) in line, line
    assert not out.exists() or not any(out.iterdir()), sorted(out.iterdir())


def test_bad_texture_from_the_command_line(bad_meshes, tmp_path):
    """The drill as a user runs it (a PNG cut in half used to end in a traceback): exit status 2
    and one line naming the PNG."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    obj = bad_meshes["truncated_texture"]
    r = subprocess.run([sys.executable, "-m", "a1_rendering.render_360", "--quick", "--cow_path", str(obj),
                        "--output_dir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and str(obj.parent / "tex.png") in r.stderr, r.stderr


def test_intact_texture_still_loads(tmp_path):
    """The same OBJ with its whole PNG renders with its texture (the check above is not a blanket refusal)."""
    from a1_rendering.render_mesh import render_baseline
    from l3d.io import load_obj

    mesh = load_obj(_textured_obj(tmp_path, truncate=False))
    img = render_baseline(mesh, 32, textured=True)
    assert mesh.textures is not None and float(img.std()) > 0.02


def test_untextured_obj_renders_in_the_mesh_colour(tmp_path, capsys):
    """An OBJ without a texture used to stop with 'meshes have no textures' (a traceback) in
    every script that renders the mesh's own colours; --textured asks for a texture: one line."""
    obj = tmp_path / "plain.obj"
    obj.write_text("v 0.6 0.6 0.6\nv 0.6 -0.6 -0.6\nv -0.6 0.6 -0.6\nv -0.6 -0.6 0.6\n"
                   "f 1 2 3\nf 1 4 2\nf 1 3 4\nf 2 4 3\n")
    from a1_rendering import camera_transforms

    camera_transforms.main(["--data_path", str(obj), "--image_size", "32", "--output_dir", str(tmp_path / "ct")])
    assert "no texture" in capsys.readouterr().err
    img = np.asarray(Image.open(tmp_path / "ct" / "transform_none.png"), dtype=np.float64)[..., :3]
    drawn = img[img.min(-1) < 250]  # not the white background
    assert len(drawn) > 20 and np.allclose(drawn[:, 2] * 0.7, drawn[:, 0], atol=3)  # shades of (0.7, 0.7, 1)
    code, err = _fail("render_mesh", ["--data_path", str(obj), "--textured", "--output_dir", str(tmp_path / "rm")],
                      capsys)
    assert code == 2 and "--textured" in _one_line(err) and str(obj) in err


def test_area_test_on_a_mesh_with_few_faces():
    """Fewer faces than area groups used to give p = nan (empty groups), a failing check."""
    from a1_rendering.mesh_practice import tetrahedron
    from a1_rendering.sample_points import sampling_checks
    from l3d.ops import sample_points_from_meshes

    mesh = tetrahedron()
    torch.manual_seed(0)
    checks = sampling_checks(mesh, sample_points_from_meshes(mesh, 200)[0])
    assert checks["area_chi2_p"]["pass"], checks["area_chi2_p"]


def test_dolly_zoom_needs_a_subject(tmp_path, capsys):
    """One big triangle has no subject to keep in focus: one line, not an IndexError."""
    obj = tmp_path / "tri.obj"
    obj.write_text("v -1 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    code, err = _fail("dolly_zoom", ["--quick", "--data_path", str(obj), "--output_dir", str(tmp_path / "o")], capsys)
    assert code == 2 and str(obj) in _one_line(err)


# ----------------------------------------------------------------------------------------------
# 3, 4: flags -- descriptive names, values checked by argparse (naming the flag) or one line
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module,argv,flag", [
    ("render_360", ["--num_frames", "0"], "--num_frames"),
    ("render_360", ["--fps", "-1"], "--fps"),
    ("render_mesh", ["--image_size", "0"], "--image_size"),
    ("render_mesh", ["--color", "2", "0", "0"], "--color"),
    ("retexture", ["--color1", "0", "nan", "0"], "--color1"),
    ("torus_render", ["--tube_radius", "-0.4"], "--tube_radius"),
    ("torus_render", ["--num_samples", "1"], "--num_samples"),
    ("torus_render", ["--voxel_size", "2"], "--voxel_size"),
    ("torus_render", ["--eps1", "0"], "--eps1"),
    ("dolly_zoom", ["--focus_half_width", "0"], "--focus_half_width"),
    ("dolly_zoom", ["--focus_z", "front"], "--focus_z"),
    ("sample_points", ["--num_samples", "10", "0"], "--num_samples"),
    ("tradeoffs", ["--voxel_sizes", "3"], "--voxel_sizes"),
    ("pcl_render", ["--dist", "-3"], "--dist"),
])
def test_bad_flag_values_name_the_flag(module, argv, flag, tmp_path, capsys):
    """Used to raise ValueError (a traceback) or run with the value."""
    code, err = _fail(module, argv + ["--output_dir", str(tmp_path)], capsys)
    assert code == 2
    assert f"argument {flag}" in err.strip().splitlines()[-1], err
    assert "Traceback" not in err


@pytest.mark.parametrize("module,argv,flag", [
    ("dolly_zoom", ["--num_frames", "1"], "--num_frames"),
    ("fun", ["--num_frames", "1"], "--num_frames"),
    ("torus_render", ["--ring_radius", "0.3", "--tube_radius", "0.4"], "--tube_radius"),
    ("torus_render", ["--function", "implicit", "--tube_radius", "0.01", "--voxel_size", "4"], "--voxel_size"),
])
def test_flag_combinations_are_one_line(module, argv, flag, tmp_path, capsys):
    code, err = _fail(module, argv + ["--output_dir", str(tmp_path)], capsys)
    assert code == 2 and flag in _one_line(err)


@pytest.mark.parametrize("module,old", [("torus_render", "--r"), ("torus_render", "--R"), ("dolly_zoom", "--k"),
                                        ("pcl_render", "--rgbd_path"), ("dolly_zoom", "--mesh_path"),
                                        ("render_mesh", "--data")])
def test_retired_flags_are_gone(module, old, tmp_path, capsys):
    """One-letter and package-private spellings are not accepted (nor as abbreviations)."""
    code, err = _fail(module, [old, "1", "--output_dir", str(tmp_path)], capsys)
    assert code == 2 and "unrecognized arguments" in err


def test_course_flag_names_stay_aliases():
    from a1_rendering import render_mesh

    seen = {}

    def stop(args, device):
        seen.update(vars(args))
        raise SystemExit(0)

    orig = render_mesh.load_mesh_labelled
    render_mesh.load_mesh_labelled = stop
    try:
        with pytest.raises(SystemExit):
            render_mesh.main(["--cow_path", "x.obj", "--output_path", "y.png", "--quick", "--image_size", "64"])
    finally:
        render_mesh.load_mesh_labelled = orig
    assert seen["data_path"] == "x.obj" and seen["output_file"] == "y.png"
    assert seen["image_size"] == 64  # the quick preset does not override a flag the user gave


def test_quick_preset_keeps_the_flags_given(tmp_path):
    """--quick --num_frames 27: 27 frames (the old min() clamp of --quick gave 25)."""
    from a1_rendering import mesh_practice

    mesh_practice.main(["--quick", "--num_frames", "27", "--image_size", "40", "--output_dir", str(tmp_path)])
    with Image.open(tmp_path / "tetrahedron.gif") as gif:
        assert gif.n_frames == 27 and gif.size == (40, 40)


# ----------------------------------------------------------------------------------------------
# 5: the demo's --help
# ----------------------------------------------------------------------------------------------
def test_demo_help_runs_nothing(monkeypatch, capsys):
    """`python -m a1_rendering.demo --help` used to run the whole demo."""
    from a1_rendering import demo

    def boom(steps):
        raise AssertionError("--help ran the demo")

    monkeypatch.setattr(demo, "run_steps", boom)
    with pytest.raises(SystemExit) as exc:
        demo.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out and "a1_rendering.tradeoffs --quick" in out
    assert demo.main(["--list"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == len(demo.STEPS)


# ----------------------------------------------------------------------------------------------
# RGB-D pickles (part 5.1)
# ----------------------------------------------------------------------------------------------
def _fake_pytorch3d(monkeypatch):
    """A stand-in ``pytorch3d.renderer.cameras.PerspectiveCameras`` class so a pickle can name it."""
    known = sys.modules.get("pytorch3d.renderer.cameras")
    if known is not None and getattr(known, "fake", False):
        return known.PerspectiveCameras
    mod = types.ModuleType("pytorch3d.renderer.cameras")
    mod.fake = True

    class PerspectiveCameras:
        def __init__(self, **params):
            self.__dict__.update(params)

    PerspectiveCameras.__module__ = mod.__name__
    PerspectiveCameras.__qualname__ = "PerspectiveCameras"
    mod.PerspectiveCameras = PerspectiveCameras
    for name in ("pytorch3d", "pytorch3d.renderer", "pytorch3d.renderer.cameras"):
        monkeypatch.setitem(sys.modules, name, mod if name.endswith("cameras") else types.ModuleType(name))
    return PerspectiveCameras


@pytest.fixture(scope="module")
def pair():
    from a1_rendering.rgbd import synthetic_rgbd_pair

    return synthetic_rgbd_pair(image_size=24)


def _course_like(pair, monkeypatch, **changes):
    """The pair in the course pickle's layout: numpy arrays, PyTorch3D-named cameras."""
    cls = _fake_pytorch3d(monkeypatch)
    raw = {}
    for i in (1, 2):
        for k in ("rgb", "mask", "depth"):
            raw[f"{k}{i}"] = pair[f"{k}{i}"].numpy()
        cam = pair[f"cameras{i}"]
        raw[f"cameras{i}"] = cls(R=cam.R.clone(), T=cam.T.clone(), focal_length=cam.focal_length.clone(),
                                 principal_point=cam.principal_point.clone())
    raw.update(changes)
    for k, v in changes.items():
        if v is None:
            del raw[k]
    return pickle.dumps(raw)


def test_rgbd_pickle_round_trip(pair, monkeypatch, tmp_path):
    from a1_rendering.rgbd import load_rgbd_pickle

    p = tmp_path / "rgbd.pkl"
    p.write_bytes(_course_like(pair, monkeypatch))
    for name in ("pytorch3d", "pytorch3d.renderer", "pytorch3d.renderer.cameras"):
        monkeypatch.delitem(sys.modules, name)  # reading needs no PyTorch3D
    data = load_rgbd_pickle(p)
    assert data["source"] == "course"
    for k in ("rgb1", "mask2", "depth1"):
        assert torch.equal(data[k], pair[k])
    assert torch.allclose(data["cameras2"].get_camera_center(), pair["cameras2"].get_camera_center())


@pytest.mark.parametrize("damage,named", [
    ("truncated", "damaged or foreign file"),
    ("not a pickle", "damaged or foreign file"),
    ("list", "found list"),
    ("no depth2", "no depth2"),
    ("rgb1 grey", "[rgb1]"),
    ("mask2 transposed", "[mask2]"),
    ("nan depth1", "[depth1]"),
    ("camera without R", "[cameras1]"),
])
def test_damaged_rgbd_pickle_is_one_line(damage, named, pair, monkeypatch, tmp_path, capsys):
    p = tmp_path / "rgbd.pkl"
    h = w = 24
    nan_depth = pair["depth1"].numpy().copy()
    nan_depth[pair["mask1"].numpy() > 0.5] = np.nan
    changes = {"no depth2": {"depth2": None}, "rgb1 grey": {"rgb1": np.zeros((h, w))},
               "mask2 transposed": {"mask2": np.zeros((w, h + 1))}, "nan depth1": {"depth1": nan_depth}}
    if damage == "truncated":
        data = _course_like(pair, monkeypatch)
        p.write_bytes(data[: len(data) // 2])
    elif damage == "not a pickle":
        p.write_text("rgb1,mask1\n1,2\n")
    elif damage == "list":
        p.write_bytes(pickle.dumps([1, 2, 3]))
    elif damage == "camera without R":
        cls = _fake_pytorch3d(monkeypatch)
        p.write_bytes(_course_like(pair, monkeypatch, cameras1=cls(T=np.zeros((1, 3)))))
    else:
        p.write_bytes(_course_like(pair, monkeypatch, **changes[damage]))
    code, err = _fail("pcl_render", ["--quick", "--data_path", str(p), "--output_dir", str(tmp_path / "o")], capsys)
    line = _one_line(err)
    assert code == 2 and str(p) in line and named in line, line
    assert not (tmp_path / "o").exists()


def test_missing_rgbd_file_is_one_line(tmp_path, capsys):
    """A --data_path that does not exist is an error, not a silent fallback to the stand-in."""
    p = tmp_path / "nope.pkl"
    code, err = _fail("pcl_render", ["--quick", "--data_path", str(p), "--output_dir", str(tmp_path / "o")], capsys)
    assert code == 2 and str(p) in _one_line(err)
