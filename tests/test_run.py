"""l3d.run: atomic writes, the locked run folder that never loses the previous results early,
finite-only checkpoints with fallback on resume, the finite-state guards."""

import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from l3d.errors import NonFiniteError, RunLockedError, UserError
from l3d.run import (LOSS_LOG, CheckpointManager, LossLog, RunDir, atomic_path, atomic_write, check_finite,
                     check_finite_params, check_same_config, clean_stale_temps, load_checkpoint, save_checkpoint)

REPO = Path(__file__).resolve().parents[1]


def test_atomic_write_long_names_and_umask(tmp_path):
    name = "x" * 250 + ".png"  # 254 characters: the temporary name must still fit in 255
    old = os.umask(0o027)
    try:
        p = atomic_write(tmp_path / name, b"abc")
    finally:
        os.umask(old)
    assert p.read_bytes() == b"abc"
    assert stat.S_IMODE(p.stat().st_mode) == 0o640  # the user's umask, not mkstemp's 0600
    assert [q.name for q in tmp_path.iterdir()] == [name]
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "y.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert [q.name for q in tmp_path.iterdir()] == [name]  # no temp file, no target


def test_clean_stale_temps(tmp_path):
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / ".a.png.tmp-abc123.png", tmp_path / "sub" / ".ckpt_3.pt.tmp-zz.pt"]
    for p in stale:
        p.write_bytes(b"")  # what a SIGKILL during a save leaves
    keep = [tmp_path / "a.png", tmp_path / ".lock", tmp_path / "notes.tmp"]
    for p in keep:
        p.write_bytes(b"x")
    assert sorted(clean_stale_temps(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


HOLD = textwrap.dedent("""
    import sys, time
    from l3d.run import OutputLock
    with OutputLock(sys.argv[1], command="python -m a5_pointnet.train --task cls"):
        print("locked", flush=True)
        time.sleep(30)
""")


def test_output_lock_names_the_other_run(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "out")], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError) as ei:
            RunDir(tmp_path / "out").open()
        msg = str(ei.value)
        assert f"pid {proc.pid}" in msg and "python -m a5_pointnet.train --task cls" in msg and "\n" not in msg
    finally:
        proc.kill()
        proc.wait()
    with RunDir(tmp_path / "out") as run:  # the kernel released the killed holder's lock
        assert run.committed
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="expected a folder, found a file"):
        RunDir(tmp_path / "file")


def _previous_run(out: Path) -> None:
    (out / "checkpoints").mkdir(parents=True)
    save_checkpoint(out / "checkpoints" / "ckpt_99.pt", {"model": {"w": torch.ones(2)}, "step": 99})
    (out / "metrics.json").write_text('{"acc": 0.9}')
    (out / LOSS_LOG).write_text("step,loss\n0,1.0\n")


def test_fresh_run_that_fails_early_leaves_previous_results(tmp_path):
    out = tmp_path / "out"
    _previous_run(out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(NonFiniteError):
        with RunDir(out, fresh=True) as run:
            assert not run.committed and run.path("x").parent.name.startswith(".pending-")
            log = run.track(LossLog(run.path(LOSS_LOG), append=False))
            log.append(0, {"loss": 2.0})
            ckpts = CheckpointManager(run.path("checkpoints"), every=1, run=run)
            ckpts.save(0, {"model": {"w": torch.tensor([float("nan"), 1.0])}})  # diverged before the first save
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert after == before  # nothing of the previous run lost or changed
    assert not list(out.glob(".pending-*"))


def test_fresh_run_commits_at_first_good_checkpoint(tmp_path):
    out = tmp_path / "out"
    _previous_run(out)
    with RunDir(out, fresh=True) as run:
        log = run.track(LossLog(run.path(LOSS_LOG), append=False))
        log.append(0, {"loss": 2.0})
        ckpts = CheckpointManager(run.path("checkpoints"), every=1, run=run)
        ckpts.save(0, {"model": {"w": torch.zeros(2)}})
        assert run.committed and ckpts.directory == out / "checkpoints" and log.path == out / LOSS_LOG
        log.append(1, {"loss": 1.0})  # keeps writing in place
        with pytest.raises(NonFiniteError):
            ckpts.save(1, {"model": {"w": torch.tensor([float("inf"), 0.0])}})
    assert [r["loss"] for r in LossLog(out / LOSS_LOG).rows()] == [2.0, 1.0]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["ckpt_0.pt", "last.pt"]
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 0  # last.pt advanced only to finite states
    assert (out / ".previous" / "metrics.json").read_text() == '{"acc": 0.9}'  # the old run, one step away
    assert not (out / "metrics.json").exists()


def test_resume_falls_back_to_newest_intact_checkpoint(tmp_path, capsys):
    d = tmp_path / "ck"
    m = CheckpointManager(d, every=1, keep_last=None)
    for s in range(3):
        m.save(s, {"model": {"w": torch.full((2,), float(s))}})
        time.sleep(0.01)
    (d / "ckpt_2.pt").write_bytes(b"truncated")  # newest: damaged
    os.utime(d / "ckpt_2.pt")
    torch.save({"model": {"w": torch.tensor([float("nan")])}, "step": 3}, d / "ckpt_3.pt")  # newer: NaN
    (d / "last.pt").unlink()
    state = m.resume()
    assert state["step"] == 1 and float(state["model"]["w"][0]) == 1.0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("note: skipping") and "ckpt_3.pt" in err[0] and "non-finite" in err[0]
    assert "ckpt_2.pt" in err[1] and err[-1].startswith("note: using") and "step 1" in err[-1]
    for p in d.glob("ckpt_*.pt"):
        p.write_bytes(b"junk")
    with pytest.raises(UserError, match="no usable checkpoint"):
        m.resume()
    assert CheckpointManager(tmp_path / "none").resume() is None


def test_finite_guards_name_the_step_and_tensor():
    with pytest.raises(NonFiniteError, match=r"^loss became nan at step 17;"):
        check_finite(torch.tensor(float("nan")), 17)
    with pytest.raises(NonFiniteError, match=r"loss became 6.6e\+28 \(above 1e\+12: the run diverged\) at step 4"):
        check_finite(6.6e28, 4)
    check_finite(torch.tensor(3.0), 0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    check_finite_params(net, 0)
    with torch.no_grad():
        net[1].weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match=r"parameter 1.weight has 1 non-finite values at step 5") as ei:
        check_finite_params(net, 5)
    assert ei.value.name == "1.weight" and ei.value.step == 5
    with pytest.raises(NonFiniteError, match=r"parameter means has 3"):
        check_finite_params({"means": torch.full((3,), float("nan")), "scales": torch.ones(3)}, 2)


def test_check_same_config():
    check_same_config({"width": 64, "task": "cls"}, {"width": 64, "task": "cls"}, "ck")
    with pytest.raises(UserError, match=r"ck: cannot resume with a different configuration \(width: 64 in the "
                                        r"checkpoint, 128 now\)"):
        check_same_config({"width": 64, "task": "cls"}, {"width": 128, "task": "cls"}, "ck")


def test_long_file_names_and_full_disk_are_one_line(tmp_path, capsys, monkeypatch):
    """A 238-255 character name used to fail because the temporary name added 18 characters; a
    name over the limit, or a full disk, is one line naming the file (exit 2), not a traceback."""
    import errno

    from l3d.cli import run_cli
    from l3d.run import atomic_write

    for n in (238, 250, 255):
        name = "n" * (n - 4) + ".png"
        assert atomic_write(tmp_path / name, b"data").read_bytes() == b"data"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left
    monkeypatch.delenv("L3D_DEBUG", raising=False)
    with pytest.raises(SystemExit) as ei:
        run_cli(lambda argv: atomic_write(tmp_path / ("x" * 300 + ".png"), b"data"), [])
    err = capsys.readouterr().err
    assert ei.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: File name too long: xxx") and "(304 characters; the limit is 255)" in err

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "metrics.json"))

    with pytest.raises(SystemExit) as ei:
        run_cli(full, [])
    assert ei.value.code == 2
    assert capsys.readouterr().err == f"error: No space left on device: {tmp_path / 'metrics.json'}\n"


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from l3d.run import atomic_write
    def slow(f):
        f.write(b"half")
        f.flush()
        print("writing", flush=True)
        time.sleep(30)
    atomic_write(sys.argv[1], slow)
""")


def test_sigkill_during_a_save_leaves_the_old_file_and_the_next_run_cleans_up(tmp_path):
    """A writer killed by SIGKILL mid-save leaves the previous file intact and a temp file behind;
    the next run into the folder removes the temp file."""
    target = tmp_path / "metrics.json"
    target.write_text('{"good": 1}')
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout.readline().strip() == b"writing"
        child.kill()
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    assert target.read_text() == '{"good": 1}'
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".metrics.json.tmp-")]
    assert len(leftovers) == 1
    with RunDir(tmp_path, fresh=False):
        pass
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert target.read_text() == '{"good": 1}'
