"""The training loop's helpers: device choice, seeding, mixed precision, progress bars, and
signals that stop a run cleanly.

A training script reads like this (run files come from :mod:`l3d.run`, errors from
:mod:`l3d.errors`, the entry point from :mod:`l3d.cli`)::

    def main(argv=None):
        args = parser.parse_args(argv)
        device = choose_device(args.device)
        seed_everything(args.seed)
        with RunDir(args.output_dir, fresh=not args.resume) as run:   # locked; keeps the old results
            ckpts = CheckpointManager(run.path("checkpoints"), every=args.save_every, run=run)
            log = run.track(LossLog(run.path(LOSS_LOG), append=args.resume))
            start = 0
            if args.resume and (state := ckpts.resume()) is not None:   # newest intact checkpoint
                model.load_state_dict(state["model"]); optim.load_state_dict(state["optimizer"])
                start = state["step"] + 1
                log.rewind(state["step"])
            with graceful_interrupt() as stop:                          # Ctrl-C / SIGTERM
                for step in progress(range(start, args.steps), "train"):
                    with autocast_context(device, args.amp):
                        loss = ...
                    check_finite(loss, step)                            # NaN, inf, absurd values
                    ...
                    log.append(step, {"loss": loss})
                    if ckpts.due(step) or stop.requested or step == args.steps - 1:
                        check_finite_params(model, step)                # the weights too
                        ckpts.save(step, {"model": model.state_dict(), ...})  # commits the run
                    if stop.requested:
                        break

    if __name__ == "__main__":
        run_cli(main)
"""

from __future__ import annotations

import contextlib
import random
import re
import signal
import sys
import threading
from typing import Any, Iterable

import numpy as np
import torch

from .errors import UserError

__all__ = ["choose_device", "seed_everything", "autocast_context", "progress", "graceful_interrupt",
           "GracefulInterrupt"]


def choose_device(name: str | torch.device = "auto") -> torch.device:
    """Turn a ``--device`` flag into a ``torch.device``.

    Args:
        name: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:<i>"``.

    Raises:
        UserError: for an unknown name, or CUDA requested on a machine without a usable GPU.
    """
    if isinstance(name, torch.device):
        name = str(name)
    key = str(name).strip().lower()
    if key == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if key == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", key):
        if not torch.cuda.is_available():
            raise UserError(
                f"--device {name} requested but CUDA is not available on this machine "
                "(use --device cpu or --device auto)"
            )
        index = int(key.split(":")[1]) if ":" in key else None
        if index is not None and index >= torch.cuda.device_count():
            raise UserError(
                f"--device {name} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return torch.device(key)
    raise UserError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:<index>")


def seed_everything(seed: int) -> int:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device).

    Returns the seed, so a script can record it in its metrics.
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds all CUDA devices
    return seed


def autocast_context(
    device: str | torch.device, enabled: bool = True, dtype: torch.dtype | None = None
) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass: ``torch.autocast`` on CUDA, a no-op elsewhere.

    Args:
        device: the device the model runs on.
        enabled: ``False`` gives a no-op context (full precision).
        dtype: ``torch.bfloat16`` or ``torch.float16``; default bf16 where the GPU supports it,
            else fp16 (fp16 training also needs a ``torch.amp.GradScaler``).
    """
    device = torch.device(device)
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    if dtype is None:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def progress(iterable_or_total: Iterable | int, desc: str | None = None, disable: bool | None = None, **kwargs):
    """A tqdm bar over an iterable, or over ``range(n)`` when given an int.

    ``disable=None`` (tqdm's convention) hides the bar when stderr is not a terminal, so logs
    and CI output stay clean; ``False`` forces it on. Extra keyword arguments go to tqdm.
    """
    from tqdm.auto import tqdm

    it = range(iterable_or_total) if isinstance(iterable_or_total, int) else iterable_or_total
    kwargs.setdefault("mininterval", 1.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(it, desc=desc, disable=disable, **kwargs)


class GracefulInterrupt:
    """Context manager: the first Ctrl-C or SIGTERM (what ``kill`` and job schedulers send) only sets
    :attr:`requested`, so the loop finishes its step and saves; a second one raises
    ``KeyboardInterrupt``. The previous signal handlers are restored on exit. Outside the main
    thread (where Python cannot install handlers) it does nothing and ``requested`` stays False."""

    def __init__(self, signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM), message: bool = True):
        self.signals = tuple(signals)
        self.message = message
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        if self.requested:
            self._restore()
            raise KeyboardInterrupt
        self.requested = True
        if self.message:
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            print(
                f"\n{name} received: finishing this step and saving a checkpoint "
                "(press Ctrl-C again to abort at once)",
                file=sys.stderr,
                flush=True,
            )

    def _restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __enter__(self) -> "GracefulInterrupt":
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> bool:
        self._restore()
        return False


def graceful_interrupt(**kwargs) -> GracefulInterrupt:
    """``with graceful_interrupt() as stop: ... if stop.requested: save; break``."""
    return GracefulInterrupt(**kwargs)
