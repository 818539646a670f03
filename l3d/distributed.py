"""Data-parallel training over several processes started by ``torchrun``, unchanged in one process.

A trainer reads the same with one process or many::

    with distributed.session(args.device) as dist:        # torchrun's RANK / WORLD_SIZE, else one process
        device = dist.device                              # cuda:<LOCAL_RANK> on a GPU machine
        with dist.main_first():                           # rank 0 prepares shared data, the others wait
            data = prepare(...)
        with dist.run_dir(out, fresh=not resume) as run:  # a RunDir on rank 0, a writer of nothing elsewhere
            ckpts = dist.checkpoints(run.path("checkpoints"), run=run)
            log = dist.loss_log(run, run.path(LOSS_LOG), append=resume)
            net = dist.wrap(model)                        # DistributedDataParallel + synced batch norm
            for batch in ...:
                local = dist.shard(batch)                 # rows rank, rank + N, ... of the global batch
                loss = dist.scale_loss(loss, len(local), len(batch))
                ...
                if dist.any(stop.requested): break        # every rank stops at the same step

* The process group uses ``nccl`` when the ranks run on GPUs and ``gloo`` on CPUs; its collective
  timeout is ``L3D_DIST_TIMEOUT`` seconds (default 600), so a rank that hangs does not block the
  job for torch's default half hour.
* :meth:`Dist.wrap` converts batch norm to a synchronised one (torch's ``SyncBatchNorm`` on GPUs;
  :class:`CPUSyncBatchNorm` here on CPUs, where torch's is not available), so the statistics are
  those of the global batch, as in one process, and wraps the model in
  ``DistributedDataParallel``; the checkpoint always holds the unwrapped model's ``state_dict``
  (the same keys), so any number of processes resumes it.
* Outputs are written by rank 0 only: :meth:`Dist.run_dir`, :meth:`Dist.checkpoints` and
  :meth:`Dist.loss_log` give the other ranks objects with the same methods that write nothing.
* A collective that fails because another rank died becomes :class:`PeerLostError` (one line
  naming this rank; torchrun's report names the rank that died), the job exits non-zero and the
  last checkpoint, written atomically by rank 0, stays usable with ``--resume``.
* Test hook: ``L3D_DIST_KILL=RANK:STEP`` makes that rank kill itself (SIGKILL) at that step of
  :meth:`Dist.fault_point`, to test what happens when a process dies.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

import torch
import torch.distributed as tdist
from torch import nn

from .errors import UserError
from .run import CheckpointManager, LossLog, RunDir
from .train import choose_device

__all__ = ["Dist", "session", "setup", "current", "is_main", "CPUSyncBatchNorm", "convert_sync_batchnorm",
           "PeerLostError", "ShardedBatchSampler", "TIMEOUT_ENV", "KILL_ENV"]

TIMEOUT_ENV = "L3D_DIST_TIMEOUT"  # seconds a collective may wait for the other ranks
KILL_ENV = "L3D_DIST_KILL"  # test hook "RANK:STEP"
DEFAULT_TIMEOUT_S = 600.0


class PeerLostError(UserError):
    """Another process of the distributed job died or stopped answering."""


# ----------------------------------------------------------------------------------------------
# synchronised batch norm on CPUs
# ----------------------------------------------------------------------------------------------
class _GatherRanks(torch.autograd.Function):
    """All-gather with a gradient: (K,) on every rank -> (world size, K), row r from rank r. Every
    rank's output holds this rank's row, so its gradient is the sum over ranks of that row's."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        rows = [torch.empty_like(x) for _ in range(tdist.get_world_size())]
        tdist.all_gather(rows, x.contiguous())
        return torch.stack(rows)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        g = g.contiguous().clone()
        tdist.all_reduce(g)
        return g[tdist.get_rank()]


class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch across all ranks: each
    rank's per-channel count, mean and sum of squared deviations (two passes over its own rows) are
    gathered (one differentiable all-gather) and combined exactly (Chan et al.'s parallel variance),
    so no precision is lost to E[x^2] - mean^2 when the mean is large. Same parameters,
    buffers and state-dict keys as ``BatchNorm{1,2,3}d``; evaluation uses the running statistics,
    like every batch norm, and needs no other rank."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least a 2-D input (got {input.dim()}-D)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        shape = [1, c] + [1] * (x.dim() - 2)
        n_local = x.numel() // max(c, 1)
        if n_local:
            mean_local = x.mean(dims)
            m2_local = ((x - mean_local.view(shape)) ** 2).sum(dims)
        else:  # a rank without rows this step still takes part
            mean_local = m2_local = x.new_zeros(c) + 0.0 * x.sum()
        stats = torch.cat([mean_local, m2_local, x.new_full((1,), float(n_local))])
        stats = _GatherRanks.apply(stats)  # (ranks, 2C + 1); its backward sums the gradients over ranks
        counts = stats[:, -1:]
        n = counts.sum()
        mean = (stats[:, :c] * counts).sum(0) / n
        var = (stats[:, c:2 * c] + counts * (stats[:, :c] - mean) ** 2).sum(0) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                f = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * (n / (n - 1).clamp_min(1.0))
                self.running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
                self.running_var.mul_(1 - f).add_(unbiased, alpha=f)
        y = (x - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every batch norm of ``module`` made synchronised across ranks: torch's ``SyncBatchNorm`` on
    GPUs, :class:`CPUSyncBatchNorm` elsewhere (the same parameter and buffer objects)."""
    if torch.device(device).type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
        new = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        new_child = convert_sync_batchnorm(child, device)
        if new_child is not child:
            setattr(module, name, new_child)
    return module


# ----------------------------------------------------------------------------------------------
# rank-0-only outputs
# ----------------------------------------------------------------------------------------------
class _OtherRankRun:
    """What a rank other than 0 gets instead of a :class:`RunDir`: the same paths (to read a
    checkpoint to resume from), no lock, nothing written."""

    committed = True

    def __init__(self, root, **_: Any):
        self.root = self.work = Path(root)

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    final = path

    def track(self, obj: Any) -> Any:
        return obj

    def commit(self) -> None:
        pass

    def __enter__(self) -> "_OtherRankRun":
        return self

    def __exit__(self, *exc) -> None:
        pass


class _OtherRankCheckpoints(CheckpointManager):
    """A :class:`CheckpointManager` that reads (resume) but never writes: ``save`` only keeps the
    bookkeeping (best metric), so the decisions taken from it match rank 0's."""

    def save(self, step: int, state: Mapping[str, Any], metric: Optional[float] = None) -> Path:
        if metric is not None and self.is_better(float(metric)):
            self.best_metric, self.best_step = float(metric), int(step)
        return self.directory / f"ckpt_{int(step)}.pt"


class _NoLog:
    """A :class:`LossLog` stand-in that writes nothing (ranks other than 0)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.columns = None

    def append(self, step: int, scalars: Mapping[str, Any]) -> None:
        pass

    tensorboard = False

    def image_due(self, *_: Any, **__: Any) -> bool:
        return False

    def image(self, *_: Any, **__: Any) -> None:
        pass

    def rows(self) -> list:
        return []

    def rewind(self, step: int) -> None:
        pass

    def plot(self, path_png=None, **_: Any) -> Path:
        return Path(path_png) if path_png is not None else self.path


# ----------------------------------------------------------------------------------------------
# data: the global batch split across ranks
# ----------------------------------------------------------------------------------------------
class ShardedBatchSampler(torch.utils.data.Sampler):
    """Rows ``rank, rank + N, ...`` of every batch of ``batch_sampler``. Every rank draws the same
    global batches (the same seeded generator), so N processes see exactly the batches of one."""

    def __init__(self, batch_sampler, rank: int, world_size: int):
        self.batch_sampler, self.rank, self.world_size = batch_sampler, rank, world_size

    def __iter__(self):
        for batch in self.batch_sampler:
            yield list(batch)[self.rank::self.world_size]

    def __len__(self) -> int:
        return len(self.batch_sampler)


# ----------------------------------------------------------------------------------------------
# the process group
# ----------------------------------------------------------------------------------------------
def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name, "")
    try:
        return int(v) if v != "" else default
    except ValueError:
        raise UserError(f"environment variable {name}={v!r}: expected an integer") from None


def timeout_s() -> float:
    """The collective timeout: ``L3D_DIST_TIMEOUT`` seconds, default 600."""
    v = os.environ.get(TIMEOUT_ENV, "")
    try:
        t = float(v) if v else DEFAULT_TIMEOUT_S
    except ValueError:
        t = -1.0
    if not t > 0:
        raise UserError(f"environment variable {TIMEOUT_ENV}={v!r}: expected a number of seconds > 0")
    return t


class Dist:
    """This process's place in the job (rank, world size, device) and the collectives a trainer
    needs. With one process every collective returns its input and nothing is synchronised."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0,
                 device: torch.device = torch.device("cpu"), backend: Optional[str] = None):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.device, self.backend = torch.device(device), backend

    @property
    def enabled(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes outputs and prints summaries."""
        return self.rank == 0

    def __repr__(self) -> str:
        return f"Dist(rank={self.rank}, world_size={self.world_size}, device={self.device}, backend={self.backend})"

    # -- model
    def wrap(self, model: nn.Module, sync_batchnorm: bool = True, **ddp_kwargs: Any) -> nn.Module:
        """``DistributedDataParallel(model)`` (batch norm synchronised first) with several
        processes, ``model`` itself with one. The parameters stay those of ``model``: build the
        optimiser and save ``model.state_dict()`` from ``model`` (or :meth:`unwrap`)."""
        if not self.enabled:
            return model
        if sync_batchnorm:
            model = convert_sync_batchnorm(model, self.device)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, **ddp_kwargs)

    @staticmethod
    def unwrap(model: nn.Module) -> nn.Module:
        """The model inside a ``DistributedDataParallel`` wrapper (else the model)."""
        return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model

    def seed(self, seed: int) -> int:
        """A per-rank seed: ``seed`` on rank 0 (one process draws as before), different elsewhere."""
        return int(seed) + 104729 * self.rank

    # -- data
    def shard(self, x):
        """Rows ``rank, rank + N, ...`` of ``x`` (a tensor, a list, a range): this rank's part of a global batch."""
        return x[self.rank::self.world_size] if self.enabled else x

    def shard_batches(self, batch_sampler) -> torch.utils.data.Sampler:
        """A batch sampler yielding this rank's rows of every global batch of ``batch_sampler``."""
        return ShardedBatchSampler(batch_sampler, self.rank, self.world_size) if self.enabled else batch_sampler

    def check_batch(self, batch_size: int, flag: str = "--batch_size") -> None:
        """Refuse a global batch smaller than the number of processes (a rank would get nothing)."""
        if batch_size < self.world_size:
            raise UserError(f"{flag} {batch_size}: expected at least one sample per process "
                            f"({self.world_size} processes); the batch size is the global one")

    def scale_loss(self, loss: torch.Tensor, n_local: int, n_global: int) -> torch.Tensor:
        """A loss that is a mean over this rank's ``n_local`` samples, rescaled so that the
        gradient DistributedDataParallel averages over ranks is that of the mean over all
        ``n_global`` samples (exact when the ranks' shares differ too)."""
        if not self.enabled:
            return loss
        return loss * (n_local * self.world_size / max(n_global, 1))

    # -- collectives
    def _reduce(self, t: torch.Tensor, op=None) -> torch.Tensor:
        if not self.enabled:
            return t
        dev = self.device if self.backend == "nccl" else torch.device("cpu")
        t = t.to(dev)
        tdist.all_reduce(t, op=op or tdist.ReduceOp.SUM)
        return t.cpu()

    def sum(self, values: Sequence[float]) -> list:
        """Element-wise sum over ranks of a list of numbers (float64)."""
        t = self._reduce(torch.tensor([float(v) for v in values], dtype=torch.float64))
        return t.tolist()

    def average_gradients(self, params) -> None:
        """Replace every gradient of ``params`` by its mean over the ranks, without DDP (for
        trainers whose backward DDP cannot wrap: an inner ``autograd.grad``, parts unused in a step):
        one all-reduce per gradient dtype. With each rank's loss rescaled by :meth:`scale_loss`
        the mean is the gradient of the loss over the global batch. A parameter without a gradient
        on every rank keeps none (Adam then leaves it alone, as in one process); one with a gradient
        on some ranks gets the mean with zeros for the others. One process: nothing."""
        if not self.enabled:
            return
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        groups: Dict[torch.dtype, list] = {}
        for p in params:
            groups.setdefault(p.dtype, []).append(p)
        present: Dict[int, bool] = {}
        for i, (dtype, ps) in enumerate(groups.items()):  # the first group carries the has-a-gradient flags
            parts = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), dtype=dtype, device=p.device)
                     for p in ps]
            if i == 0:
                parts.append(torch.tensor([float(p.grad is not None) for p in params], dtype=dtype, device=ps[0].device))
            flat = torch.cat(parts)
            tdist.all_reduce(flat)
            n = sum(p.numel() for p in ps)
            if i == 0:
                present = {id(p): h > 0 for p, h in zip(params, flat[n:].tolist())}
            for p, g in zip(ps, (flat[:n] / self.world_size).split([p.numel() for p in ps])):
                if not present[id(p)]:
                    p.grad = None
                elif p.grad is None:
                    p.grad = g.view_as(p).clone()
                else:
                    p.grad.copy_(g.view_as(p))

    def weighted_mean(self, values: Mapping[str, float], weight: float) -> Dict[str, float]:
        """``sum_r w_r v_r / sum_r w_r`` of every value (e.g. losses that are means over the
        ``weight`` local samples): the value over the global batch."""
        keys = list(values)
        s = self.sum([values[k] * weight for k in keys] + [weight])
        return {k: s[i] / max(s[-1], 1e-300) for i, k in enumerate(keys)}

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any (e.g. a stop request seen by one rank)."""
        if not self.enabled:
            return bool(flag)
        return self._reduce(torch.tensor([1 if flag else 0], dtype=torch.int64), tdist.ReduceOp.MAX).item() > 0

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (any picklable object)."""
        if not self.enabled:
            return obj
        box = [obj]
        tdist.broadcast_object_list(box, src=0, device=self.device if self.backend == "nccl" else None)
        return box[0]

    def check_same(self, value: Any, what: str) -> Any:
        """``value`` when it is the same on every rank, else a :class:`UserError` naming ``what``."""
        if not self.enabled:
            return value
        values = [None] * self.world_size
        tdist.all_gather_object(values, value)
        if any(v != values[0] for v in values):
            raise UserError(f"{what} differs between the processes ({', '.join(f'rank {i}: {v!r}' for i, v in enumerate(values))})")
        return value

    def barrier(self) -> None:
        if self.enabled:
            if self.backend == "nccl":
                tdist.barrier(device_ids=[self.device.index])
            else:
                tdist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. generating or caching a data set); the others wait,
        then run it (and find the work done)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    # -- outputs (rank 0 only)
    def run_dir(self, root, fresh: bool = True, **kwargs: Any):
        """A :class:`~l3d.run.RunDir` on rank 0; elsewhere an object with the same paths that
        neither locks nor writes."""
        return RunDir(root, fresh=fresh, **kwargs) if self.is_main else _OtherRankRun(root, **kwargs)

    def checkpoints(self, directory, **kwargs: Any) -> CheckpointManager:
        """A :class:`~l3d.run.CheckpointManager` on rank 0; elsewhere one that reads but never writes."""
        return (CheckpointManager if self.is_main else _OtherRankCheckpoints)(directory, **kwargs)

    def loss_log(self, run, path, append: bool = True):
        """``run.track(LossLog(path))`` on rank 0; elsewhere a log that writes nothing."""
        return run.track(LossLog(path, append=append)) if self.is_main else _NoLog(path)

    # -- failures
    def fault_point(self, step: int) -> None:
        """Test hook: with ``L3D_DIST_KILL=RANK:STEP`` this rank kills itself at that step."""
        spec = os.environ.get(KILL_ENV, "")
        if not spec:
            return
        rank, _, at = spec.partition(":")
        if int(rank) == self.rank and int(at) == int(step):
            print(f"rank {self.rank}: {KILL_ENV} kills this process at step {step}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    def close(self, wait: bool = True) -> None:
        """Tear the process group down; ``wait``: first wait for every rank to get here (a rank
        that tears down while another still talks to it can abort in the backend)."""
        if self.enabled and tdist.is_initialized():
            with contextlib.suppress(Exception):
                if wait:
                    self.barrier()
                tdist.destroy_process_group()


_CURRENT: Optional[Dist] = None


def current() -> Dist:
    """The job's :class:`Dist` (a one-process one before :func:`setup`)."""
    return _CURRENT if _CURRENT is not None else Dist()


def is_main() -> bool:
    """Whether this process writes outputs (rank 0, or the only process)."""
    return current().is_main if _CURRENT is not None else _env_int("RANK", 0) == 0


def setup(device: str = "auto") -> Dist:
    """Join the job torchrun started (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` ...
    in the environment) or describe the single process. ``device``: the ``--device`` flag; with
    several processes on CUDA each takes ``cuda:<LOCAL_RANK>``. Idempotent."""
    global _CURRENT
    if _CURRENT is not None:
        return _CURRENT
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    dev = choose_device(device)
    if world <= 1:
        _CURRENT = Dist(device=dev)
        return _CURRENT
    if not tdist.is_available():
        raise UserError("this PyTorch build has no torch.distributed; run a single process")
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        if local >= count:
            raise UserError(f"LOCAL_RANK {local}: only {count} GPU(s) on this machine; start at most {count} "
                            f"processes per node (--nproc_per_node)")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend = "nccl"
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    else:
        backend = "gloo"
    timeout = datetime.timedelta(seconds=timeout_s())
    kwargs = {"device_id": dev} if backend == "nccl" else {}
    tdist.init_process_group(backend=backend, timeout=timeout, **kwargs)
    _CURRENT = Dist(rank=tdist.get_rank(), world_size=tdist.get_world_size(), local_rank=local, device=dev,
                    backend=backend)
    return _CURRENT


_COMM_WORDS = ("connection closed", "connection reset", "broken pipe", "timed out", "timeout", "gloo", "nccl",
               "socket", "peer")


def _comm_failure(exc: BaseException) -> bool:
    dist_error = getattr(tdist, "DistError", None)
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    return isinstance(exc, RuntimeError) and any(w in str(exc).lower() for w in _COMM_WORDS)


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[Dist]:
    """:func:`setup`, then the body; a collective that fails because another rank died or hung
    becomes :class:`PeerLostError` (one line), and the process group is torn down on the way out."""
    global _CURRENT
    d = setup(device)
    ok = False
    try:
        yield d
        ok = True
    except Exception as exc:
        if d.enabled and _comm_failure(exc) and not isinstance(exc, UserError):
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            first = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". ")[0][:160]  # no source location
            raise PeerLostError(
                f"rank {d.rank} of {d.world_size}: lost contact with another process of the job ({first}); "
                f"the job stops (the launcher names the process that failed); the last checkpoint is intact "
                f"and --resume continues from it") from exc
        raise
    finally:
        d.close(wait=ok)
        _CURRENT = None
