"""Small helpers shared by every training / optimisation script in the repository.

A training script reads like this::

    def main(argv=None):
        args = parser.parse_args(argv)
        device = choose_device(args.device)
        seed_everything(args.seed)
        ckpts = CheckpointManager(out / "checkpoints", every=args.ckpt_every, keep_last=3)
        log = LossLog(out / "losses.csv", append=args.resume)
        start = 0
        if args.resume and (state := ckpts.resume()) is not None:
            model.load_state_dict(state["model"]); optim.load_state_dict(state["optim"])
            start = state["step"] + 1
            log.rewind(state["step"])
        with graceful_interrupt() as stop:
            for step in progress(range(start, args.iters), "train"):
                with autocast_context(device, args.amp):
                    loss = ...
                check_finite(loss, step)
                ...
                log.append(step, {"loss": loss})
                ckpts.maybe_save(step, lambda: {"model": model.state_dict(), ...},
                                 force=stop.requested or step == args.iters - 1)
                if stop.requested:
                    break
        log.plot(out / "losses.png")

    if __name__ == "__main__":
        run_cli(main)

Public API
----------
choose_device, seed_everything, autocast_context
save_checkpoint, load_checkpoint, find_latest_checkpoint, CheckpointManager
check_finite, NonFiniteLossError, LossLog, progress, graceful_interrupt
run_cli, UserError, USER_ERRORS
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping

import numpy as np
import torch

from .data import DownloadError

__all__ = [
    "UserError",
    "NonFiniteLossError",
    "USER_ERRORS",
    "choose_device",
    "seed_everything",
    "autocast_context",
    "save_checkpoint",
    "load_checkpoint",
    "find_latest_checkpoint",
    "CheckpointManager",
    "check_finite",
    "LossLog",
    "progress",
    "graceful_interrupt",
    "GracefulInterrupt",
    "run_cli",
]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
class UserError(Exception):
    """An error caused by the user's input or environment (bad flag value, missing data, offline
    download, ...). :func:`run_cli` prints its message as one line instead of a traceback.
    Subclass it for domain errors that should be reported the same way."""


class NonFiniteLossError(UserError):
    """The training loss became NaN or +-inf. ``step`` and ``value`` say where and what."""

    def __init__(self, message: str, step: int | None = None, value: float | None = None):
        super().__init__(message)
        self.step = step
        self.value = value


#: Exception types that :func:`run_cli` reports as a one-line ``error: ...`` with exit code 2.
#: Anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    NonFiniteLossError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    ValueError,
    DownloadError,
)


# --------------------------------------------------------------------------------------------
# Device, seeding, precision
# --------------------------------------------------------------------------------------------
def choose_device(name: str | torch.device = "auto") -> torch.device:
    """Turn a ``--device`` flag into a ``torch.device``.

    Args:
        name: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:<i>"``.

    Raises:
        ValueError: for an unknown name, or CUDA requested on a machine without a usable GPU.
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
            raise ValueError(
                f"--device {name} requested but CUDA is not available on this machine "
                "(use --device cpu or --device auto)"
            )
        index = int(key.split(":")[1]) if ":" in key else None
        if index is not None and index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {name} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return torch.device(key)
    raise ValueError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:<index>")


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


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------
def _atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` through a temp file in the same folder, then ``os.replace`` it into place,
    so readers see either the old file or the complete new one, never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Atomically save ``state`` (a dict of tensors, state dicts, numbers, strings, config dicts)
    with ``torch.save``. A crash or exception mid-write leaves any previous file intact."""
    path = Path(path)
    _atomic_write(path, lambda f: torch.save(dict(state), f))
    return path


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device | None = "cpu",
    weights_only: bool = True,
) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Args:
        map_location: where tensors go (default CPU; pass the training device to load directly).
        weights_only: torch's safe unpickler (tensors, containers, numbers, strings only). Set to
            ``False`` only for trusted files that hold other Python objects.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a readable checkpoint (truncated, corrupt, not a dict).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as exc:  # torch raises RuntimeError / UnpicklingError / EOFError ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot read checkpoint {path}: {first}") from exc
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


_CKPT_RE = re.compile(r"^ckpt_(\d+)\.pt$")


def _checkpoint_files(directory: Path) -> list[tuple[int, int, Path]]:
    """``(mtime_ns, step, path)`` for every ``ckpt_<step>.pt`` in ``directory``, oldest first."""
    found = []
    if directory.is_dir():
        for p in directory.iterdir():
            m = _CKPT_RE.match(p.name)
            if m and p.is_file():
                found.append((p.stat().st_mtime_ns, int(m.group(1)), p))
    return sorted(found)


def find_latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The most recently written checkpoint in ``directory`` (``last.pt`` or ``ckpt_<step>.pt``),
    or ``None`` when there is none. Recency is the modification time, ties going to the higher
    step, so a crash between writing ``ckpt_<step>.pt`` and updating ``last.pt`` loses nothing."""
    directory = Path(directory)
    candidates = _checkpoint_files(directory)
    last = directory / "last.pt"
    if last.is_file():
        candidates.append((last.stat().st_mtime_ns, -1, last))
    if not candidates:
        return None
    return max(candidates, key=lambda c: (c[0], c[1]))[2]


def _link_or_copy(src: Path, dst: Path) -> None:
    """Atomically make ``dst`` hold the content of ``src`` (hard link when the file system allows,
    else a copy), via a temp name in ``dst``'s folder and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class CheckpointManager:
    """Periodic checkpoints with resume and an optional best-by-metric copy.

    Each save writes ``<dir>/ckpt_<step>.pt`` and points ``<dir>/last.pt`` at it; when a metric is
    given and improves, ``<dir>/best.pt`` too (its step and metric are kept in ``best.json``, so a
    resumed run keeps comparing against the right value). Only the ``keep_last`` most recent
    ``ckpt_*.pt`` files are kept; ``last.pt`` and ``best.pt`` are never pruned. The saved dict is
    ``state`` plus ``"step"`` (and ``"metric"`` when given).

    Args:
        directory: folder for the checkpoints (created on first save).
        every: :meth:`due` is true every ``every`` steps (``step % every == every - 1``, so with
            0-based steps the 100th step saves when ``every=100``). ``0`` disables periodic saves.
        keep_last: number of ``ckpt_*.pt`` files to keep; ``None`` keeps all.
        mode: ``"min"`` (e.g. a loss) or ``"max"`` (e.g. PSNR, accuracy) for ``best.pt``.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        every: int = 1000,
        keep_last: int | None = 3,
        mode: Literal["min", "max"] = "min",
    ):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if every < 0:
            raise ValueError(f"every must be >= 0, got {every}")
        if keep_last is not None and keep_last < 1:
            raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
        self.directory = Path(directory)
        self.every = int(every)
        self.keep_last = keep_last
        self.mode = mode
        self.best_metric: float | None = None
        self.best_step: int | None = None
        best_json = self.directory / "best.json"
        if best_json.is_file() and (self.directory / "best.pt").is_file():
            try:
                info = json.loads(best_json.read_text())
                if info.get("mode") == mode:
                    self.best_metric = float(info["metric"])
                    self.best_step = int(info["step"])
            except (ValueError, KeyError, TypeError):
                pass  # unreadable sidecar: the next metric starts a new best

    @property
    def last_path(self) -> Path:
        return self.directory / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"

    def due(self, step: int) -> bool:
        """Whether a periodic save is due after ``step`` (0-based)."""
        return self.every > 0 and (step + 1) % self.every == 0

    def is_better(self, metric: float) -> bool:
        """Whether ``metric`` beats the best seen so far (NaN never does)."""
        if not math.isfinite(metric):
            return False
        if self.best_metric is None:
            return True
        return metric < self.best_metric if self.mode == "min" else metric > self.best_metric

    def save(self, step: int, state: Mapping[str, Any], metric: float | None = None) -> Path:
        """Save ``state`` as the checkpoint of ``step``; returns the ``ckpt_<step>.pt`` path."""
        step = int(step)
        full = dict(state)
        full["step"] = step
        if metric is not None:
            metric = float(metric)
            full["metric"] = metric
        path = save_checkpoint(self.directory / f"ckpt_{step}.pt", full)
        _link_or_copy(path, self.last_path)
        if metric is not None and self.is_better(metric):
            _link_or_copy(path, self.best_path)
            self.best_metric, self.best_step = metric, step
            info = {"step": step, "metric": metric, "mode": self.mode}
            _atomic_write(self.directory / "best.json", lambda f: json.dump(info, f), mode="w")
        self._prune()
        return path

    def maybe_save(
        self,
        step: int,
        state: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
        metric: float | None = None,
        force: bool = False,
    ) -> Path | None:
        """Save when :meth:`due` (or ``force``, e.g. on Ctrl-C or the last step). ``state`` may be a
        callable so the state dict is only built when a save happens."""
        if not (force or self.due(step)):
            return None
        return self.save(step, state() if callable(state) else state, metric)

    def resume(self, map_location: str | torch.device | None = "cpu") -> dict | None:
        """The most recent saved state (a dict with ``"step"``), or ``None`` when none exists."""
        path = find_latest_checkpoint(self.directory)
        return None if path is None else load_checkpoint(path, map_location=map_location)

    def _prune(self) -> None:
        if self.keep_last is None:
            return
        for _, _, path in _checkpoint_files(self.directory)[: -self.keep_last]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


# --------------------------------------------------------------------------------------------
# Loss guard and log
# --------------------------------------------------------------------------------------------
def check_finite(loss: torch.Tensor | float, step: int, name: str = "loss") -> None:
    """Raise :class:`NonFiniteLossError` when ``loss`` (a tensor of any shape, or a number) holds
    NaN or +-inf. On CUDA this synchronises; call it once per step on the scalar loss."""
    if isinstance(loss, torch.Tensor):
        t = loss.detach()
        finite = torch.isfinite(t)
        if bool(finite.all()):
            return
        value = float(t.reshape(-1)[~finite.reshape(-1)][0])
    else:
        value = float(loss)
        if math.isfinite(value):
            return
    raise NonFiniteLossError(f"{name} became {value} at step {step}", step=step, value=value)


def _scalar(v: Any) -> float | str:
    if isinstance(v, torch.Tensor):
        return float(v.detach().float().mean()) if v.numel() != 1 else float(v.detach())
    if isinstance(v, (int, float, np.number, bool)):
        return float(v)
    return str(v)


class LossLog:
    """Append-only CSV of per-step scalars: ``step,<name1>,<name2>,...``.

    The header comes from the first row written; each row is flushed to disk as it is written, so
    a crashed run keeps its log. A new instance on an existing file appends (resume); a row with a
    name the header lacks rewrites the file once with the wider header. ``append=False`` starts
    a fresh file.
    """

    def __init__(self, path_csv: str | os.PathLike, append: bool = True):
        self.path = Path(path_csv)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not append and self.path.exists():
            self.path.unlink()
        self.columns: list[str] | None = None
        if self.path.is_file() and self.path.stat().st_size > 0:
            with open(self.path, newline="") as f:
                header = next(csv.reader(f), None)
            if header:
                self.columns = header

    def append(self, step: int, scalars: Mapping[str, Any]) -> None:
        """Write one row. Values may be floats, ints or (scalar) tensors."""
        row = {"step": int(step), **{k: _scalar(v) for k, v in scalars.items()}}
        if self.columns is None:
            self.columns = list(row)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        elif any(k not in self.columns for k in row):
            self._rewrite(self.columns + [k for k in row if k not in self.columns], self.rows())
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns, restval="").writerow(row)

    def rows(self) -> list[dict[str, float]]:
        """Every row in the file, numbers as floats (``step`` as int); empty cells are omitted."""
        if not self.path.is_file():
            return []
        out = []
        with open(self.path, newline="") as f:
            for raw in csv.DictReader(f):
                row: dict[str, Any] = {}
                for k, v in raw.items():
                    if k is None or v in (None, ""):
                        continue
                    try:
                        row[k] = float(v)
                    except ValueError:
                        row[k] = v
                if "step" in row:
                    row["step"] = int(row["step"])
                    out.append(row)
        return out

    def rewind(self, step: int) -> None:
        """Drop rows logged after ``step`` (call after resuming from the checkpoint of ``step``,
        so steps re-run after the checkpoint are not logged twice)."""
        if self.columns is None:
            return
        kept = [r for r in self.rows() if r["step"] <= step]
        self._rewrite(self.columns, kept)

    def _rewrite(self, columns: list[str], rows: list[dict]) -> None:
        def write(f):
            w = csv.DictWriter(f, fieldnames=columns, restval="")
            w.writeheader()
            for r in rows:
                w.writerow({k: v for k, v in r.items() if k in columns})

        _atomic_write(self.path, write, mode="w")
        self.columns = columns

    def plot(
        self,
        path_png: str | os.PathLike,
        groups: Iterable[Iterable[str]] | None = None,
        logy: bool | Literal["auto"] = "auto",
        title: str | None = None,
        xlabel: str = "step",
    ) -> Path:
        """Write a loss-curve PNG (matplotlib, no display needed).

        Args:
            groups: names drawn together in one subplot each. Default: names sharing a prefix
                before ``/`` (``loss/rgb``, ``loss/depth``) share a subplot; any other name gets
                its own.
            logy: log-scale y axis: ``True``, ``False`` or ``"auto"`` (per subplot, when every
                value is positive and they span more than two decades).
            xlabel: label of the x axis (the logged ``step`` column: a step, an epoch, ...).
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        rows = self.rows()
        names = [c for c in (self.columns or []) if c != "step"]
        numeric = [n for n in names if any(isinstance(r.get(n), float) for r in rows)]
        if groups is None:
            by_key: dict[str, list[str]] = {}
            for n in numeric:
                by_key.setdefault(n.split("/")[0] if "/" in n else n, []).append(n)
            panels = list(by_key.values())
        else:
            panels = [[n for n in g if n in numeric] for g in groups]
            panels = [p for p in panels if p]
        if not panels:
            panels = [[]]
        fig = Figure(figsize=(5.0 * min(len(panels), 3), 3.2 * math.ceil(len(panels) / 3)), dpi=100)
        FigureCanvasAgg(fig)
        ncols = min(len(panels), 3)
        nrows = math.ceil(len(panels) / ncols)
        for i, panel in enumerate(panels):
            ax = fig.add_subplot(nrows, ncols, i + 1)
            values_all = []
            for n in panel:
                pts = [(r["step"], r[n]) for r in rows if isinstance(r.get(n), float) and math.isfinite(r[n])]
                if not pts:
                    continue
                xs, ys = zip(*pts)
                values_all.extend(ys)
                ax.plot(xs, ys, label=n, linewidth=1.2)
            positive = bool(values_all) and min(values_all) > 0
            use_log = logy is True or (
                logy == "auto" and positive and max(values_all) / min(values_all) > 100
            )
            if use_log and positive:
                ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.grid(True, alpha=0.3)
            if len(panel) > 1:
                ax.legend(fontsize=8)
                prefixes = {n.split("/")[0] for n in panel if "/" in n}
                if len(prefixes) == 1 and all("/" in n for n in panel):
                    ax.set_title(prefixes.pop(), fontsize=10)
            elif panel:
                ax.set_title(panel[0], fontsize=10)
            else:
                ax.set_title("no data", fontsize=10)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        path = Path(path_png)
        _atomic_write(path, lambda f: fig.savefig(f, format="png"))
        return path


# --------------------------------------------------------------------------------------------
# Progress bar and Ctrl-C
# --------------------------------------------------------------------------------------------
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
    """Context manager: the first Ctrl-C only sets :attr:`requested`; a second one raises
    ``KeyboardInterrupt``. The previous signal handlers are restored on exit. Outside the main
    thread (where Python cannot install handlers) it does nothing and ``requested`` stays False."""

    def __init__(self, signals: Iterable[int] = (signal.SIGINT,), message: bool = True):
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
            print(
                "\ninterrupt received: finishing this step and saving a checkpoint "
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


# --------------------------------------------------------------------------------------------
# CLI wrapper
# --------------------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        msg = f"{exc.strerror}: {exc.filename}"
    else:
        msg = str(exc)
    msg = " ".join(msg.split())
    return msg or type(exc).__name__


def run_cli(main: Callable[..., Any], argv: list[str] | None = None) -> Any:
    """Run a script's ``main`` so that expected user errors end it with one line, not a traceback.

    ``main(argv)`` is called when ``argv`` is given, else ``main()`` (argparse then reads
    ``sys.argv``; Hydra entry points take no arguments). An exception in :data:`USER_ERRORS`
    prints ``error: <message>`` to stderr and exits with status 2; Ctrl-C exits with 130.
    Setting the environment variable ``L3D_DEBUG=1`` re-raises with the full traceback.
    An ``int`` returned by ``main`` becomes the exit status; anything else is returned.
    """
    debug = os.environ.get("L3D_DEBUG", "") not in ("", "0")
    try:
        result = main() if argv is None else main(argv)
    except USER_ERRORS as exc:
        if debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    if isinstance(result, int) and not isinstance(result, bool):
        sys.exit(result)
    return result
