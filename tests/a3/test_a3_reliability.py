"""Nothing lost, nothing silent: the failures A3's entry points used to have, each reproduced.

Every run here goes through the entry point (``main(argv)``, Hydra's compose API; or ``main()``
with ``sys.argv``, the Hydra command line) and is small: the box fit at 32 x 32 for a few epochs,
the point-cloud SDF for two, inputs that are rejected before anything trains."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from a3_volume_surface import demo, surface_rendering_main, volume_rendering_main

BOX = ("--config-name=train_box", "quick=true", "device=cpu", "gif.n_poses=3")
POINTS = ("--config-name=points_surface", "quick=true", "device=cpu", "gif.n_poses=3", "geometry.grid_size=24",
          "training.pretrain_iters=5", "training.num_epochs=2")


def call(main, argv, capsys):
    """(exit status, stdout, stderr lines) of an in-process run."""
    code = 0
    try:
        main(list(argv))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    cap = capsys.readouterr()
    return code, cap.out, [line for line in cap.err.splitlines() if line.strip()]


def one_error(err):
    """The stderr of a user error: notices may come first, then exactly one ``error:`` line, no traceback."""
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1 and not any("Traceback" in line for line in err), err
    return errors[0]


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    (root / "a3").mkdir(parents=True)
    monkeypatch.setenv("L3D_DATA", str(root))
    return root


@pytest.fixture(scope="module")
def box_run(tmp_path_factory):
    """A finished 3-epoch box fit with a checkpoint after every epoch (``quick=true`` with the
    epochs given on the command line: the command line wins over the quick preset)."""
    out = tmp_path_factory.mktemp("box") / "run"
    volume_rendering_main.main([*BOX, f"output_dir={out}", "training.num_epochs=3", "training.checkpoint_interval=1"])
    return out


def test_quick_keeps_the_keys_given_on_the_command_line(box_run):
    m = json.loads((box_run / "metrics.json").read_text())
    assert m["epochs"] == 3 and m["start_epoch"] == 0  # quick alone would run 60
    cfg = (box_run / "config.yaml").read_text()
    assert "num_epochs: 3" in cfg and "lr: 0.01" in cfg  # the quick lr, the given epochs
    assert "sys.argv =" not in Path(demo.__file__).read_text()


def test_diverging_fit_stops_naming_the_step_and_keeps_the_folder(box_run, capsys):
    """train_box with training.lr=1e6 used to report sides (6e6, -6e6, 6e6) and exit 0, and a
    failed fresh run overwrote config.yaml and the images of the folder."""
    before = snapshot(box_run)
    code, _, err = call(volume_rendering_main.main, [*BOX, f"output_dir={box_run}", "training.lr=1e6"], capsys)
    line = one_error(err)
    assert code == 2 and "implicit_function.sdf.side_lengths" in line and "epoch 0" in line, line
    assert snapshot(box_run) == before  # config.yaml, images, metrics, checkpoints untouched
    assert not list(box_run.glob(".pending-*"))


def test_resume_never_uses_a_non_finite_checkpoint(box_run, tmp_path, capsys):
    """The NaN guard used to leave last.pt pointing at a checkpoint with non-finite weights, and
    training.resume=true resumed them."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(box_run, out)
    ck = out / "checkpoints"
    # a diverging resumed run stops at its first bad epoch; last.pt stays the good epoch 2
    code, _, err = call(volume_rendering_main.main, [*BOX, f"output_dir={out}", "training.resume=true",
                                                     "training.num_epochs=6", "training.lr=1e6"], capsys)
    assert code == 2 and "epoch 3" in one_error(err)
    last = torch.load(ck / "last.pt", weights_only=True)
    assert last["step"] == 2 and all(torch.isfinite(v).all() for v in last["model"].values())
    # a non-finite checkpoint written by older code, newest and pointed at by last.pt: skipped
    bad = dict(last, step=9)
    bad["model"] = {k: torch.full_like(v, float("nan")) for k, v in last["model"].items()}
    torch.save(bad, ck / "ckpt_9.pt")
    shutil.copy(ck / "ckpt_9.pt", ck / "last.pt")
    code, out_text, err = call(volume_rendering_main.main, [*BOX, f"output_dir={out}", "training.resume=true",
                                                            "training.num_epochs=4"], capsys)
    assert code == 0, err
    assert any("skipping" in line and "non-finite" in line for line in err), err
    m = json.loads((out / "metrics.json").read_text())
    assert m["start_epoch"] == 3 and m["epochs"] == 4 and m["checks"]["sides_error"]["value"] < 1.0


def test_second_run_into_a_folder_in_use_stops(box_run, capsys):
    from l3d.run import OutputLock

    before = snapshot(box_run)
    with OutputLock(box_run, "python -m other_run"):
        code, _, err = call(volume_rendering_main.main, [*BOX, f"output_dir={box_run}"], capsys)
    line = one_error(err)
    assert code == 2 and "in use" in line and "other_run" in line, line
    assert snapshot(box_run) == before


@pytest.mark.parametrize("override,key", [("training.lr=abc", "training.lr"), ("quick=maybe", "quick"),
                                          ("training.num_epochs=-3", "training.num_epochs"),
                                          ("training.lr=0", "training.lr"), ("training.num_epoch=3", "training.num_epoch"),
                                          ("data.image_size=[32]", "data.image_size")])
def test_bad_config_values_name_the_key(tmp_path, capsys, override, key):
    code, _, err = call(volume_rendering_main.main, [*BOX, f"output_dir={tmp_path / 'x'}", override], capsys)
    line = one_error(err)
    assert code == 2 and line.startswith(f"error: {key}:"), line
    assert not (tmp_path / "x").exists()


def test_hydra_command_line_errors_are_one_line(tmp_path, capsys, monkeypatch):
    """Through Hydra's own command line (sys.argv): a wrong type, and an output_dir that is a file
    (Hydra used to fail creating its run folder there, with a traceback)."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for extra, key in ((f"output_dir={afile}", "output_dir"), ("training.lr=abc", "training.lr")):
        monkeypatch.setattr(sys, "argv", ["prog", *BOX, f"output_dir={afile}", extra])
        code, _, err = call(lambda _argv: volume_rendering_main.main(), [], capsys)
        assert code == 2 and one_error(err).startswith(f"error: {key}:"), err
    assert afile.read_text() == "not a folder"


def _npz(path, verts):
    np.savez(path, verts=np.asarray(verts, dtype=np.float32))
    return path


@pytest.mark.parametrize("case", ["shape", "empty", "truncated", "no_verts"])
def test_bad_point_clouds_are_rejected(tmp_path, capsys, case):
    """A (300, 2) 'verts' used to be reshaped to (200, 3) and trained on; an empty cloud ended in
    'loss became nan'."""
    p = tmp_path / "bunny.npz"
    if case == "shape":
        _npz(p, np.random.rand(300, 2))
    elif case == "empty":
        _npz(p, np.zeros((0, 3)))
    elif case == "truncated":
        _npz(p, np.random.rand(300, 3))
        p.write_bytes(p.read_bytes()[:200])
    else:
        np.savez(p, points=np.random.rand(10, 3))
    code, _, err = call(surface_rendering_main.main, [*POINTS, f"output_dir={tmp_path / 'o'}",
                                                      f"data.point_cloud_path={p}"], capsys)
    line = one_error(err)
    assert code == 2 and "bunny.npz" in line, line
    want = {"shape": ["(N, 3)", "(300, 2)"], "empty": ["non-empty"], "truncated": ["truncated"], "no_verts": ["verts"]}
    assert all(w in line for w in want[case]), line


def test_bad_box_renders_are_rejected(data_root, tmp_path, capsys):
    for i in range(4):
        np.save(data_root / "a3" / f"box_{i}.npy", np.zeros((8, 8, 3), np.float32))
    np.save(data_root / "a3" / "box_1.npy", np.zeros((8, 8), np.float32))
    code, _, err = call(volume_rendering_main.main, [*BOX, f"output_dir={tmp_path / 'o'}"], capsys)
    line = one_error(err)
    assert code == 2 and "box_1.npy" in line and "(H, W, 3)" in line and "(8, 8)" in line, line
    (data_root / "a3" / "box_1.npy").write_bytes((data_root / "a3" / "box_0.npy").read_bytes()[:100])
    code, _, err = call(volume_rendering_main.main, [*BOX, f"output_dir={tmp_path / 'o'}"], capsys)
    assert code == 2 and "box_1.npy" in one_error(err)


def test_truncated_scene_png_is_rejected(data_root, tmp_path, capsys):
    from a3_volume_surface.data import scene_cameras, write_nerf_files

    cams, split = scene_cameras(4, 1, 2)
    write_nerf_files(data_root / "a3" / "lego.pth", data_root / "a3" / "lego.png", torch.rand(7, 16, 16, 3), cams, split)
    png = data_root / "a3" / "lego.png"
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    code, _, err = call(volume_rendering_main.main, ["--config-name=nerf_lego", "quick=true", "device=cpu",
                                                     "data.source=file", f"output_dir={tmp_path / 'o'}"], capsys)
    line = one_error(err)
    assert code == 2 and "lego.png" in line and "truncated" in line, line


def test_resume_with_another_model_config_is_refused(tmp_path, capsys):
    out = tmp_path / "p"
    code, _, err = call(surface_rendering_main.main, [*POINTS, f"output_dir={out}"], capsys)
    assert code == 0, err
    before = snapshot(out)
    code, _, err = call(surface_rendering_main.main, [*POINTS, f"output_dir={out}", "training.resume=true",
                                                      "training.num_epochs=3",
                                                      "implicit_function.n_hidden_neurons_distance=32"], capsys)
    line = one_error(err)
    assert code == 2 and "different configuration" in line and "implicit_function" in line, line
    assert snapshot(out) == before


def test_demo_help_runs_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = call(demo.main, ["--help"], capsys)
    assert code == 0 and "usage:" in out and "--only" in out and "==" not in out
    assert not (tmp_path / "output").exists()
