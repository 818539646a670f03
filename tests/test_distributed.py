"""Data-parallel training under torchrun (2 CPU processes, gloo) against the same run in one process.

Each two-process run goes through ``python -m torch.distributed.run --nproc_per_node=2`` in a
subprocess, as a user starts it. The one-process reference runs in this process with the same
global batch. Both runs see the same global batches and batch norm is synchronised across the
ranks (l3d.distributed.CPUSyncBatchNorm), dropout is 0: the runs differ only by float32 rounding
(a batch split in two sums in another order), measured at 1e-7 relative on both loss curves. The
tests allow 1e-4: room for other machines' summation orders, while batch norm left unsynchronised
(each rank normalising with its half batch's statistics) or a wrongly scaled gradient moves the
loss by 1e-3 or more in the first steps.
"""

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from l3d import distributed
from l3d.errors import UserError
from l3d.run import LossLog, load_checkpoint, nonfinite_tensors, read_metrics

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 150


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(module: str, argv, cwd: Path, nproc: int = 2, env_extra=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != distributed.KILL_ENV}
    env.update({"PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", distributed.TIMEOUT_ENV: "30",
                **(env_extra or {})})
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_port",
           str(free_port()), "-m", module, *map(str, argv)]
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def files(folder: Path) -> set:
    """Relative paths of the files a run wrote (the lock file's content aside, nothing hidden but it)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def assert_curves_close(one: Path, two: Path, column: str, rtol: float) -> list:
    a, b = LossLog(one / "losses.csv").rows(), LossLog(two / "losses.csv").rows()
    assert [r["step"] for r in a] == [r["step"] for r in b] and a
    for ra, rb in zip(a, b):
        assert math.isclose(ra[column], rb[column], rel_tol=rtol), (ra["step"], ra[column], rb[column])
    return a


# ----------------------------------------------------------------------------------------------
# the core, without processes
# ----------------------------------------------------------------------------------------------
def test_one_process_is_plain():
    d = distributed.Dist()
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    assert d.wrap(model) is model and d.is_main and not d.enabled
    assert d.shard([1, 2, 3]) == [1, 2, 3] and d.sum([1.5, 2]) == [1.5, 2.0] and d.any(True)
    loss = torch.tensor(2.0)
    assert d.scale_loss(loss, 3, 3) is loss


def test_rank_split_and_loss_scale():
    d = distributed.Dist(rank=1, world_size=2)
    assert d.shard(list(range(7))) == [1, 3, 5] and not d.is_main
    # 3 of 7 samples: (3 / 7) * 2 ranks, so that the ranks' average is the mean over all 7
    assert float(d.scale_loss(torch.tensor(1.0), 3, 7)) == pytest.approx(6 / 7)
    with pytest.raises(UserError, match="--batch_size 1: expected at least one sample per process"):
        d.check_batch(1)


def test_other_ranks_write_nothing(tmp_path):
    d = distributed.Dist(rank=1, world_size=2)
    with d.run_dir(tmp_path / "out", fresh=True) as run:
        ckpts = d.checkpoints(run.path("checkpoints"), every=1, mode="max", run=run)
        ckpts.save(0, {"model": {"w": torch.ones(2)}}, metric=0.5)
        assert ckpts.best_metric == 0.5 and not ckpts.is_better(0.4)  # the same decisions as rank 0
        log = d.loss_log(run, run.path("losses.csv"), append=False)
        log.append(0, {"loss": 1.0})
        log.plot(run.path("curves.png"))
    assert not (tmp_path / "out").exists()


def test_cpu_sync_batchnorm_is_plain_batchnorm_in_one_process():
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm1d(4)
    sync = distributed.convert_sync_batchnorm(torch.nn.Sequential(bn), torch.device("cpu"))[0]
    assert isinstance(sync, distributed.CPUSyncBatchNorm) and sync.weight is bn.weight
    assert list(sync.state_dict()) == list(torch.nn.BatchNorm1d(4).state_dict())  # checkpoints load either way


def _sync_bn_worker(rank: int, init_file: str, queue) -> None:
    """Rank ``rank`` of 2: synchronised batch norm on its rows of a global batch (float32), and the
    plain batch norm of the whole batch in float64 as the reference."""
    import torch.distributed as tdist

    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        g = torch.Generator().manual_seed(0)
        x = 100.0 + 0.5 * torch.randn(7, 3, 5, generator=g)  # a large mean: E[x^2] - mean^2 would lose digits
        coef = torch.randn(7, 3, 5, generator=g)
        ref = torch.nn.BatchNorm1d(3).double()
        with torch.no_grad():
            ref.weight.copy_(torch.tensor([1.0, 2.0, -1.0]))
        sync = distributed.convert_sync_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm1d(3)), torch.device("cpu"))[0]
        sync.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ref.state_dict().items()})
        xd = x.double().requires_grad_(True)
        yref = ref(xd)
        (yref * coef.double()).sum().backward()
        rows = slice(rank, None, 2)  # rows 0, 2, 4, 6 on rank 0 and 1, 3, 5 on rank 1: unequal shares
        xl = x[rows].clone().requires_grad_(True)
        y = sync(xl)
        (y * coef[rows]).sum().backward()
        wgrad = sync.weight.grad.clone()
        tdist.all_reduce(wgrad)
        queue.put((rank, float((y.double() - yref.detach()[rows]).abs().max()),
                   float((xl.grad.double() - xd.grad[rows]).abs().max() / xd.grad.abs().max()),
                   float((wgrad.double() - ref.weight.grad).abs().max() / ref.weight.grad.abs().max()),
                   float((sync.running_var.double() - ref.running_var).abs().max())))
    finally:
        tdist.destroy_process_group()


def test_cpu_sync_batchnorm_matches_the_global_batch(tmp_path):
    """Values and gradients of two ranks' synchronised batch norm equal the whole batch's (float64
    reference), running statistics included, with a mean 200 times the spread."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_sync_bn_worker, args=(r, str(tmp_path / "init"), queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    for rank, dy, dx, dw, dvar in results:
        # float32 on inputs near 100: the normalised values carry about 1e-7 * 100 / 0.5 = 2e-5 of rounding
        assert dy < 1e-4 and dx < 1e-4 and dw < 1e-4 and dvar < 1e-4, (rank, dy, dx, dw, dvar)


# ----------------------------------------------------------------------------------------------
# A5: PointNet classification, data-parallel over clouds
# ----------------------------------------------------------------------------------------------
def a5_flags(tmp_path: Path, epochs: int = 2):
    return ["--task", "cls", "--quick", "--batch_size", "16", "--num_points", "128", "--eval_points", "128",
            "--final_points", "500", "--width", "0.25", "--num_train", "64", "--num_test", "16", "--data", "synthetic",
            "--cache_dir", str(tmp_path / "cache"), "--num_epochs", str(epochs), "--dropout", "0", "--save_every", "1",
            "--device", "cpu", "--no-baseline", "--no_tensorboard"]


def test_a5_two_processes_follow_one(tmp_path, one_thread):
    from a5_pointnet import train

    one, two = tmp_path / "one", tmp_path / "two"
    assert train.main(a5_flags(tmp_path) + ["--output_dir", str(one)]) == 0
    res = torchrun("a5_pointnet.train", a5_flags(tmp_path) + ["--output_dir", two], tmp_path / "cwd")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = assert_curves_close(one, two, "train_loss", 1e-4)
    assert len(rows) == 2 and rows[-1]["train_loss"] < rows[0]["train_loss"]  # it learns
    b = LossLog(two / "losses.csv").rows()
    assert [r["acc/test"] for r in rows] == [r["acc/test"] for r in b]  # test counts summed over the ranks
    m1, m2 = read_metrics(one), read_metrics(two)
    assert m2["test_accuracy"] == m1["test_accuracy"] and m2["processes"] == 2 and m1["processes"] == 1
    assert m2["test_accuracy_chair"] == m1["test_accuracy_chair"]
    # rank 0 alone wrote: the same files as one process, and the other rank left nothing anywhere
    assert files(two) == files(one) and not any((tmp_path / "cwd").iterdir())
    state = load_checkpoint(two / "checkpoints" / "last.pt")
    assert not any(k.startswith("module.") for k in state["model"])  # the unwrapped model's weights
    assert res.stdout.count("epoch 1:") == 1  # one rank prints


def test_a5_dead_rank_stops_the_job_and_a_resumed_run_continues(tmp_path):
    out = tmp_path / "run"
    flags = a5_flags(tmp_path, epochs=3) + ["--output_dir", out]
    # 4 steps per epoch: rank 1 dies in the second epoch, after the checkpoint of epoch 0
    res = torchrun("a5_pointnet.train", flags, tmp_path / "cwd", env_extra={distributed.KILL_ENV: "1:5"})
    assert res.returncode != 0
    assert "rank 0 of 2: lost contact with another process of the job" in res.stderr
    assert "the last checkpoint is intact and --resume continues from it" in res.stderr
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["step"] == 0 and not nonfinite_tensors(state)
    assert [r["step"] for r in LossLog(out / "losses.csv").rows()] == [0]
    first = LossLog(out / "losses.csv").rows()[0]
    res = torchrun("a5_pointnet.train", flags + ["--resume"], tmp_path / "cwd")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming after epoch 1" in res.stderr
    rows = LossLog(out / "losses.csv").rows()
    assert [r["step"] for r in rows] == [0, 1, 2] and rows[0] == first
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 2


# ----------------------------------------------------------------------------------------------
# A2: the voxel decoder on precomputed features, data-parallel over the images of a batch
# ----------------------------------------------------------------------------------------------
def a2_flags(tmp_path: Path, steps: int = 6):
    return ["--type", "vox", "--steps", str(steps), "--batch_size", "8", "--log_freq", "1", "--save_every", "3",
            "--vox_width", "0.25", "--load_feat", "--lr", "1e-3", "--data", "synthetic", "--data_path",
            str(tmp_path / "data"), "--data_preset", "tiny", "--device", "cpu", "--no_tensorboard"]


def test_a2_two_processes_follow_one(tmp_path, one_thread):
    from a2_single_view import train_model

    one, two = tmp_path / "one", tmp_path / "two"
    m1 = train_model.main(a2_flags(tmp_path) + ["--output_dir", str(one)])  # also computes the features
    res = torchrun("a2_single_view.train_model", a2_flags(tmp_path) + ["--output_dir", two], tmp_path / "cwd")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = assert_curves_close(one, two, "loss", 1e-4)
    assert len(rows) == 6
    m2 = read_metrics(two)
    assert math.isclose(m2["final_loss"], m1["final_loss"], rel_tol=1e-4) and m2["processes"] == 2
    assert files(two) == files(one) and not any((tmp_path / "cwd").iterdir())


def test_a2_dead_rank_stops_the_job_and_resumes_on_any_number_of_processes(tmp_path, one_thread):
    from a2_single_view import train_model

    out = tmp_path / "run"
    train_model.main(a2_flags(tmp_path, steps=1) + ["--output_dir", str(tmp_path / "prep")])  # data and features
    flags = a2_flags(tmp_path, steps=8) + ["--output_dir", out]
    res = torchrun("a2_single_view.train_model", flags, tmp_path / "cwd", env_extra={distributed.KILL_ENV: "1:4"})
    assert res.returncode != 0 and "lost contact with another process of the job" in res.stderr
    state = load_checkpoint(out / "checkpoints" / "last.pt")  # the checkpoint after step 2 (--save_every 3)
    assert state["step"] == 2 and not nonfinite_tensors(state)
    # one process resumes the two processes' checkpoint ...
    solo = tmp_path / "solo"
    (solo / "checkpoints").mkdir(parents=True)
    (solo / "checkpoints" / "last.pt").write_bytes((out / "checkpoints" / "last.pt").read_bytes())
    m = train_model.main(a2_flags(tmp_path, steps=5) + ["--output_dir", str(solo), "--resume"])
    assert m["steps"] == 5 and m["time_per_step_s"] > 0
    # ... and so do two
    res = torchrun("a2_single_view.train_model", flags + ["--resume"], tmp_path / "cwd")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = LossLog(out / "losses.csv").rows()
    assert [r["step"] for r in rows] == list(range(8))  # the steps after the checkpoint logged once
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 7
    assert read_metrics(out)["steps"] == 8
