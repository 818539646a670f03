"""Tests for l3d.run, l3d.cli and l3d.train: checkpoints, resume, NaN guard, loss log, CLI errors, Ctrl-C handling."""

import csv
import os
import random
import signal
import time

import numpy as np
import pytest
import torch
from PIL import Image

import l3d.cli as cli
import l3d.errors as errors
import l3d.run as run
import l3d.train as tr


def _state(scale: float) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "model": {"w": scale * torch.randn(4, 3, generator=g), "b": torch.full((3,), scale)},
        "optim": {"lr": 1e-3 * scale, "betas": [0.9, 0.999]},
        "config": {"name": "tiny", "layers": 2},
    }


def _assert_state_equal(a: dict, b: dict) -> None:
    assert torch.equal(a["model"]["w"], b["model"]["w"])
    assert torch.equal(a["model"]["b"], b["model"]["b"])
    assert a["optim"] == b["optim"]
    assert a["config"] == b["config"]


# ---------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "model.pt"
    run.save_checkpoint(path, _state(2.0))
    loaded = run.load_checkpoint(path)
    _assert_state_equal(loaded, _state(2.0))
    assert loaded["model"]["w"].device.type == "cpu"
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]
    # overwrite in place
    run.save_checkpoint(path, _state(3.0))
    _assert_state_equal(run.load_checkpoint(path), _state(3.0))
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]


def test_failing_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    run.save_checkpoint(path, _state(1.0))
    before = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        f.write(b"half a checkpoint")  # partial bytes, then the "disk fills up"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        run.save_checkpoint(path, _state(5.0))
    monkeypatch.undo()
    assert path.read_bytes() == before
    _assert_state_equal(run.load_checkpoint(path), _state(1.0))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(errors.UserError, match="checkpoint not found"):
        run.load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(errors.UserError, match="cannot read checkpoint"):
        run.load_checkpoint(bad)


def test_checkpoint_manager_best_last_keep_and_resume(tmp_path):
    ckdir = tmp_path / "ck"
    metrics = [5.0, 4.0, 3.0, 6.0, 7.0, 2.5, 8.0, 9.0, 1.5, 10.0]  # metric at each step
    mgr = run.CheckpointManager(ckdir, every=2, keep_last=2, mode="min")
    assert mgr.resume() is None
    saved = []
    for step, m in enumerate(metrics):
        out = mgr.maybe_save(step, lambda: _state(float(step)), metric=m)
        if out is not None:
            saved.append(step)
    assert saved == [1, 3, 5, 7, 9]  # every 2nd step, 0-based
    # reference best over the saved steps only: steps 1,3,5,7,9 -> metrics 4,6,2.5,9,10 -> step 5
    ref_best = min(saved, key=lambda s: metrics[s])
    assert ref_best == 5
    names = sorted(p.name for p in ckdir.iterdir())
    assert names == ["best.json", "best.pt", "ckpt_7.pt", "ckpt_9.pt", "last.pt"]
    best = run.load_checkpoint(ckdir / "best.pt")
    assert best["step"] == 5 and best["metric"] == 2.5
    _assert_state_equal(best, _state(5.0))
    last = run.load_checkpoint(ckdir / "last.pt")
    assert last["step"] == 9
    _assert_state_equal(last, _state(9.0))

    # a new manager (resumed run) keeps the best metric and resumes from the latest step
    mgr2 = run.CheckpointManager(ckdir, every=2, keep_last=2, mode="min")
    assert (mgr2.best_metric, mgr2.best_step) == (2.5, 5)
    state = mgr2.resume()
    assert state["step"] == 9
    _assert_state_equal(state, _state(9.0))
    mgr2.save(10, _state(10.0), metric=3.0)  # worse than 2.5: best.pt unchanged
    assert run.load_checkpoint(ckdir / "best.pt")["step"] == 5
    mgr2.maybe_save(11, _state(11.0), metric=2.0, force=True)  # Ctrl-C save at a non-due step
    assert mgr2.resume()["step"] == 11
    assert run.load_checkpoint(ckdir / "best.pt")["step"] == 11
    assert sorted(p.name for p in ckdir.glob("ckpt_*.pt")) == ["ckpt_10.pt", "ckpt_11.pt"]
    assert not list(ckdir.glob(".*"))  # no temp files


def test_checkpoint_manager_max_mode_and_nan_metric(tmp_path):
    mgr = run.CheckpointManager(tmp_path, every=1, keep_last=None, mode="max")
    for step, m in enumerate([10.0, 12.0, float("nan"), 11.0]):
        mgr.save(step, {"x": torch.tensor(step)}, metric=m)
    assert run.load_checkpoint(tmp_path / "best.pt")["step"] == 1
    assert len(list(tmp_path.glob("ckpt_*.pt"))) == 4  # keep_last=None keeps all
    with pytest.raises(ValueError, match="mode"):
        run.CheckpointManager(tmp_path, mode="median")


def test_find_latest_checkpoint_prefers_newest_file(tmp_path):
    assert run.find_latest_checkpoint(tmp_path) is None
    assert run.find_latest_checkpoint(tmp_path / "nope") is None
    run.save_checkpoint(tmp_path / "last.pt", {"step": 4})
    run.save_checkpoint(tmp_path / "ckpt_4.pt", {"step": 4})
    run.save_checkpoint(tmp_path / "ckpt_5.pt", {"step": 5})
    # a crash after writing ckpt_5 but before updating last.pt: last.pt is older
    t = time.time()
    os.utime(tmp_path / "last.pt", (t - 20, t - 20))
    os.utime(tmp_path / "ckpt_4.pt", (t - 20, t - 20))
    os.utime(tmp_path / "ckpt_5.pt", (t - 10, t - 10))
    assert run.find_latest_checkpoint(tmp_path).name == "ckpt_5.pt"
    os.utime(tmp_path / "last.pt", (t, t))
    assert run.find_latest_checkpoint(tmp_path).name == "last.pt"


# ---------------------------------------------------------------------------------- NaN guard
def test_check_finite_names_the_step():
    run.check_finite(torch.tensor(1.5), 3)
    run.check_finite(0.25, 3)
    with pytest.raises(errors.NonFiniteError, match=r"^loss became nan at step 17;") as ei:
        run.check_finite(torch.tensor(float("nan")), 17)
    assert ei.value.step == 17
    with pytest.raises(errors.NonFiniteError, match=r"loss became inf at step 4"):
        run.check_finite(torch.tensor([1.0, float("inf"), 2.0]), 4)
    with pytest.raises(errors.NonFiniteError, match=r"loss became -inf at step 0"):
        run.check_finite(float("-inf"), 0)
    assert issubclass(errors.NonFiniteError, errors.UserError)


# ---------------------------------------------------------------------------------- loss log
def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_loss_log_appends_across_instances_and_plots(tmp_path):
    path = tmp_path / "logs" / "losses.csv"
    log = run.LossLog(path)
    log.append(0, {"loss": torch.tensor(1.0), "psnr": 10})
    log.append(1, {"loss": 0.5, "psnr": 12.5})
    # flushed per row: readable while the log object is alive
    assert _read_csv(path) == [["step", "loss", "psnr"], ["0", "1.0", "10.0"], ["1", "0.5", "12.5"]]
    log2 = run.LossLog(path)  # resumed run
    log2.append(2, {"loss": 0.25, "psnr": 14.0})
    rows = _read_csv(path)
    assert rows[0] == ["step", "loss", "psnr"] and len(rows) == 4
    assert rows[3] == ["2", "0.25", "14.0"]
    assert [r["step"] for r in log2.rows()] == [0, 1, 2]

    # a new scalar widens the header; earlier rows keep empty cells for it
    log2.append(3, {"loss": 0.125, "psnr": 15.0, "loss/aux": 0.01})
    rows = _read_csv(path)
    assert rows[0] == ["step", "loss", "psnr", "loss/aux"]
    assert rows[1] == ["0", "1.0", "10.0", ""] and rows[4] == ["3", "0.125", "15.0", "0.01"]

    # rewind after resuming from the checkpoint of step 1
    log2.rewind(1)
    assert [r["step"] for r in run.LossLog(path).rows()] == [0, 1]

    # append=False starts over
    log3 = run.LossLog(path, append=False)
    log3.append(0, {"a": 1})
    assert _read_csv(path) == [["step", "a"], ["0", "1.0"]]

    # plot: a valid, non-blank PNG
    for step in range(1, 50):
        log3.append(step, {"a": 1.0 / (step + 1) ** 2})
    png = log3.plot(tmp_path / "plots" / "losses.png")
    assert png.is_file() and png.stat().st_size > 1000
    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        arr = np.asarray(im.convert("L"))
    assert arr.shape[0] > 100 and arr.shape[1] > 100
    assert arr.std() > 5  # something is drawn
    assert not list((tmp_path / "plots").glob(".*"))


def test_loss_log_plot_groups_and_log_scale(tmp_path):
    log = run.LossLog(tmp_path / "l.csv")
    for s in range(20):
        log.append(s, {"loss/rgb": 10.0 ** (-s / 5), "loss/depth": 0.5, "psnr": 20.0 + s})
    png = log.plot(tmp_path / "a.png")  # default grouping: loss/* together, psnr alone -> 2 panels
    png2 = log.plot(tmp_path / "b.png", groups=[["loss/rgb"], ["loss/depth"], ["psnr"]], logy=False)
    with Image.open(png) as a, Image.open(png2) as b:
        assert a.size[0] < b.size[0]  # 2 panels side by side vs 3


# ---------------------------------------------------------------------------------- CLI errors
def test_run_cli_user_error_is_one_line_exit_2(capsys, monkeypatch):
    monkeypatch.delenv("L3D_DEBUG", raising=False)

    def main(argv):
        raise errors.UserError("bad value for --res: -3\n(expected a positive int)")

    with pytest.raises(SystemExit) as ei:
        cli.run_cli(main, ["--res", "-3"])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: bad value for --res: -3 (expected a positive int)\n"

    def missing():
        open("/nonexistent-dir-l3d/x.obj")

    with pytest.raises(SystemExit) as ei:
        cli.run_cli(missing)
    assert ei.value.code == 2
    assert capsys.readouterr().err == "error: No such file or directory: /nonexistent-dir-l3d/x.obj\n"

    with pytest.raises(SystemExit) as ei:
        cli.run_cli(lambda a: (_ for _ in ()).throw(errors.UserError("offline: cannot download cow")), [])
    assert ei.value.code == 2 and capsys.readouterr().err == "error: offline: cannot download cow\n"


def test_run_cli_bugs_keep_traceback_and_debug_reraises(monkeypatch):
    def bug(argv):
        raise RuntimeError("a real bug")

    with pytest.raises(RuntimeError, match="a real bug"):
        cli.run_cli(bug, [])
    # a ValueError from a shape check is a bug, not a user error: it keeps its traceback
    with pytest.raises(ValueError, match="shape"):
        cli.run_cli(lambda a: (_ for _ in ()).throw(ValueError("bad shape (3, 2)")), [])
    monkeypatch.setenv("L3D_DEBUG", "1")
    with pytest.raises(ValueError, match="boom"):
        cli.run_cli(lambda a: (_ for _ in ()).throw(ValueError("boom")), [])


def test_run_cli_return_values():
    assert cli.run_cli(lambda argv: {"psnr": 30.0}, []) == {"psnr": 30.0}
    with pytest.raises(SystemExit) as ei:
        cli.run_cli(lambda argv: 3, [])
    assert ei.value.code == 3


# ---------------------------------------------------------------------------------- Ctrl-C
def _wait_for(cond, timeout=2.0):
    t0 = time.time()
    while not cond() and time.time() - t0 < timeout:
        time.sleep(0.005)
    return cond()


def test_graceful_interrupt_flag_then_keyboard_interrupt(capsys):
    before = signal.getsignal(signal.SIGINT)
    with tr.graceful_interrupt() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGINT)
        assert _wait_for(lambda: stop.requested)
        assert "Ctrl-C received" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            _wait_for(lambda: False, timeout=1.0)
    assert signal.getsignal(signal.SIGINT) is before



def test_sigterm_stops_the_loop_like_ctrl_c(capsys):
    """SIGTERM (what kill and batch schedulers send) only asks the loop to save and stop."""
    before = signal.getsignal(signal.SIGTERM)
    with tr.graceful_interrupt() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert _wait_for(lambda: stop.requested)
        assert "SIGTERM received: finishing this step and saving a checkpoint" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before


# ---------------------------------------------------------------------------------- misc
def test_choose_device():
    assert tr.choose_device("cpu") == torch.device("cpu")
    assert tr.choose_device(" CPU ") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert tr.choose_device("auto").type == expected
    assert tr.choose_device().type == expected
    with pytest.raises(errors.UserError, match="unknown device"):
        tr.choose_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(errors.UserError, match="CUDA is not available"):
            tr.choose_device("cuda")


def test_seed_everything_reproducible():
    def draw():
        return random.random(), float(np.random.rand()), torch.rand(3).tolist()

    tr.seed_everything(123)
    a = draw()
    tr.seed_everything(123)
    assert draw() == a
    tr.seed_everything(124)
    assert draw() != a


def test_autocast_context_cpu_is_full_precision():
    x = torch.randn(4, 4)
    with tr.autocast_context("cpu", enabled=True):
        assert (x @ x).dtype == torch.float32
    with tr.autocast_context(torch.device("cpu"), enabled=False):
        assert (x @ x).dtype == torch.float32
    if torch.cuda.is_available():
        with tr.autocast_context("cuda", enabled=True, dtype=torch.float16):
            y = x.cuda() @ x.cuda()
        assert y.dtype == torch.float16


def test_progress_wraps_iterables_and_totals():
    assert list(tr.progress(3, "t", disable=True)) == [0, 1, 2]
    assert list(tr.progress(["a", "b"], disable=True)) == ["a", "b"]
