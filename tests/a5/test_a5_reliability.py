"""Assignment 5 under bad input and faults: nothing lost, nothing silent, one flag vocabulary.

Each test reproduces one reported failure of the command lines (tiny procedural data, one thread).
"""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from a5_pointnet import demo, eval_cls, eval_seg, robustness, train
from l3d.cli import run_cli
from l3d.run import LOSS_LOG, OutputLock

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = ["--width", "0.25", "--num_points", "64", "--eval_points", "64", "--final_points", "200", "--bn_batches", "1",
        "--batch_size", "8", "--no-baseline"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("a5cache"))


def tiny_argv(out, cache, *extra, task="cls"):
    return ["--task", task, "--quick", "--output_dir", str(out), "--num_epochs", "1", *TINY, "--data", "synthetic",
            "--cache_dir", cache, "--num_train", "32", "--num_test", "8", *extra]


def fails(fn, argv, capsys):
    """Run an entry point that must stop on bad input: (exit status, its stderr lines)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run_cli(fn, argv)
    return e.value.code, capsys.readouterr().err.strip().splitlines()


def snapshot(folder: Path) -> dict:
    """Relative path -> bytes of every visible file under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


# ----------------------------------------------------------------------------------------------
# 1. a failed fresh run must not destroy the previous results
# ----------------------------------------------------------------------------------------------
def test_a_diverging_fresh_run_leaves_the_previous_results_untouched(cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(tiny_argv(out, cache)) == 0
    before = snapshot(out)
    assert {"checkpoints/best.pt", "checkpoints/last.pt", "metrics.json", LOSS_LOG} <= set(before), sorted(before)
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert {"model", "optimizer", "config", "step"} <= set(state)  # the shared checkpoint schema
    code, err = fails(train.main, tiny_argv(out, cache, "--lr", "1e30"), capsys)
    assert code == 2 and len(err) >= 1
    assert err[-1].startswith("error: ") and "at step" in err[-1], err
    assert snapshot(out) == before  # checkpoints, metrics.json and losses.csv as they were
    assert not list(out.glob(".pending-*"))


def test_non_finite_weights_are_named_before_a_checkpoint_is_written(cache, tmp_path, capsys, monkeypatch):
    def poison(model, batches):
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] = float("nan")

    monkeypatch.setattr(train, "recalibrate_batch_norm", poison)
    out = tmp_path / "run"
    code, err = fails(train.main, tiny_argv(out, cache), capsys)
    assert code == 2 and err[-1].startswith("error: parameter ") and "at step" in err[-1], err
    assert not (out / "checkpoints").exists() and not (out / "metrics.json").exists()


# ----------------------------------------------------------------------------------------------
# 2. bad inputs stop at the boundary with one line naming the file or flag
# ----------------------------------------------------------------------------------------------
def _course_folder(root: Path, task: str, data: np.ndarray, labels: np.ndarray) -> Path:
    (root / task).mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        np.save(root / task / f"data_{split}.npy", data)
        np.save(root / task / f"label_{split}.npy", labels)
    return root


@pytest.mark.parametrize("case", ["float_labels", "labels_out_of_range", "empty_clouds", "nan_points", "no_clouds",
                                  "flat_points"])
def test_bad_course_files_are_one_line_errors(case, tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(4, 50, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 0], np.int64)
    bad = "label_train.npy"
    if case == "float_labels":
        labels = np.array([0.0, 1.5, 2.0, 0.0])
        want = "integer"
    elif case == "labels_out_of_range":
        labels = np.array([0, 1, 3, 0])
        want = "0..2"
    elif case == "empty_clouds":
        data, bad, want = np.zeros((4, 0, 3), np.float32), "data_train.npy", "at least one point"
    elif case == "nan_points":
        data[1, 7, 2] = np.nan
        bad, want = "data_train.npy", "finite"
    elif case == "no_clouds":
        data, labels, bad, want = np.zeros((0, 50, 3), np.float32), np.zeros(0, np.int64), "data_train.npy", "at least one"
    else:
        data, bad, want = data[..., :2], "data_train.npy", "(N, P, 3)"
    root = _course_folder(tmp_path / "a5", "cls", data, labels)
    code, err = fails(train.main, ["--task", "cls", "--data", "course", "--data_path", str(root), "--output_dir",
                                   str(tmp_path / "out"), *TINY], capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: ") and bad in err[0] and want in err[0], err
    assert not (tmp_path / "out" / "checkpoints").exists()


@pytest.mark.parametrize("flag,value", [("--batch_size", "0"), ("--num_points", "0"), ("--num_epochs", "-1"),
                                        ("--lr", "nan"), ("--save_every", "-2")])
def test_bad_flag_values_name_the_flag(flag, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run_cli(train.main, ["--task", "cls", "--output_dir", str(tmp_path), flag, value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert re.search(rf"error: argument {flag}(/--\w+)*: expected", err) and "Traceback" not in err, err
    assert not any(tmp_path.iterdir())


def test_bad_model_settings_are_one_line_errors(tmp_path, capsys):
    for extra, want in ((["--model", "pointnet2", "--sa_points", "64"], "--sa_points"),
                        (["--dropout", "1.5"], "--dropout")):
        code, err = fails(train.main, ["--task", "cls", "--output_dir", str(tmp_path), *extra], capsys)
        assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {want}"), err


# ----------------------------------------------------------------------------------------------
# 3. two runs into one output folder
# ----------------------------------------------------------------------------------------------
def test_a_second_run_into_a_busy_folder_stops(cache, tmp_path, capsys):
    out = tmp_path / "run"
    with OutputLock(out, command="python -m a5_pointnet.train --task cls (the first run)"):
        code, err = fails(train.main, tiny_argv(out, cache), capsys)
    assert code == 2 and len(err) == 1 and "in use" in err[0] and "the first run" in err[0], err
    assert not (out / "checkpoints").exists() and not (out / "metrics.json").exists()


# ----------------------------------------------------------------------------------------------
# 4. one --quick mechanism and the shared flag names
# ----------------------------------------------------------------------------------------------
def test_quick_presets_leave_the_flags_the_user_gave():
    a = train.parse_args(["--task", "cls", "--quick", "--num_epochs", "7"])
    assert a.num_epochs == 7 and a.num_points == 512 and a.width == 0.5 and a.batch_size == 32
    a = train.parse_args(["--task", "seg", "--quick", "--n_points", "100", "--batch_size", "4"])
    assert a.num_epochs == 6 and a.batch_size == 4 and a.num_points == 100
    a = train.parse_args(["--task", "cls", "--model", "pointnet2", "--quick", "--sa_samples", "8", "8"])
    assert a.sa_points == [128, 32] and a.sa_samples == [8, 8]
    a = train.parse_args(["--task", "seg"])
    assert a.num_epochs == 250 and a.num_points == 10000 and a.width == 1.0 and a.save_every == 10
    assert a.output_dir == "output/a5_pointnet/seg"
    for mod in (eval_cls, eval_seg, robustness):
        ap = mod.build_parser()
        a = ap.parse_args(["--quick", "--i", "3", "--data_dir", "somewhere"])
        assert a.index == 3 and a.data_path == "somewhere" and a.image_size == 128
        assert ap.parse_args(["--quick", "--image_size", "200"]).image_size == 200
    assert robustness.build_parser().parse_args(["--quick"]).num_objects == 100


def test_demo_help_runs_nothing():
    code = ("import sys\nfrom a5_pointnet import demo\ntry:\n    demo.main(['--help'])\nexcept SystemExit as e:\n"
            "    print('exit', e.code, 'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "usage:" in res.stdout and res.stdout.strip().endswith("exit 0 False"), res.stdout + res.stderr


# ----------------------------------------------------------------------------------------------
# 5. resume into another model, damaged checkpoints
# ----------------------------------------------------------------------------------------------
def test_resume_checks_the_config_and_skips_damaged_checkpoints(cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(tiny_argv(out, cache, "--num_epochs", "2", "--save_every", "1")) == 0
    ck = out / "checkpoints"
    # another task or width cannot resume this run
    for extra in (["--width", "0.5"], ["--task", "seg"]):
        argv = tiny_argv(out, cache, "--num_epochs", "3", "--resume", *extra)
        if extra[0] == "--task":
            argv = argv[2:]  # the later --task wins
        code, err = fails(train.main, argv, capsys)
        assert code == 2 and len(err) == 1 and "different configuration" in err[0], err
    # the newest checkpoints are damaged: resume falls back to the newest intact one, with a notice
    for name in ("last.pt", "ckpt_1.pt"):
        (ck / name).unlink()
        (ck / name).write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert train.main(tiny_argv(out, cache, "--num_epochs", "2", "--resume")) == 0
    err = capsys.readouterr().err
    assert "skipping" in err and "ckpt_0.pt" in err and "resuming after epoch 1" in err, err
    assert torch.load(ck / "last.pt", weights_only=True)["step"] == 1
    # evaluating a damaged or non-finite checkpoint: one line naming the file
    (ck / "best.pt").unlink()
    (ck / "best.pt").write_bytes(b"\x00" * 64)
    code, err = fails(eval_cls.main, ["--load_checkpoint", str(out), "--output_dir", str(tmp_path / "ev")], capsys)
    assert code == 2 and len(err) == 1 and "best.pt" in err[0], err
    state = torch.load(ck / "last.pt", weights_only=True)
    next(iter(state["model"].values())).view(-1)[0] = float("inf")
    torch.save(state, tmp_path / "inf.pt")
    code, err = fails(eval_cls.main, ["--load_checkpoint", str(tmp_path / "inf.pt"), "--output_dir",
                                      str(tmp_path / "ev")], capsys)
    assert code == 2 and len(err) == 1 and "inf.pt" in err[0] and "non-finite" in err[0], err
