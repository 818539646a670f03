"""Run plumbing: how every script writes its outputs without ever losing the last good state.

One module for what every training or rendering run needs around its maths:

* :func:`atomic_path` / :func:`atomic_write`: a file is written to a hidden temporary name beside
  it and renamed into place, so readers see the old file or the complete new one; files get the
  user's umask; :func:`clean_stale_temps` removes what a killed writer left behind.
* :class:`RunDir`: the output folder of one run. It is locked (a second run into the same folder
  stops with one line naming the first), and a *fresh* run into a folder that holds a previous
  run's results writes into a hidden pending folder until its first good checkpoint
  (:meth:`RunDir.commit`), so a run that fails early leaves the previous results as they were.
* checkpoints: :func:`save_checkpoint` / :func:`load_checkpoint` and :class:`CheckpointManager`
  (periodic ``ckpt_<step>.pt``, ``last.pt``, ``best.pt``). A state with a NaN/inf tensor is never
  written; resuming falls back to the newest checkpoint that reads back intact and finite, with a
  one-line notice. The schema is ``{"model", "optimizer", "config", "step", ...}``.
* :func:`check_finite` (loss) and :func:`check_finite_params` (every parameter): training stops
  with :class:`~l3d.errors.NonFiniteError` naming the step and the tensor.
* :class:`LossLog`: ``losses.csv`` and its plot ``losses.png``, and the same scalars (plus the
  time per step and the memory in use) as TensorBoard event files in ``tensorboard/`` beside the
  CSV (``tensorboard --logdir <run folder>``); :func:`set_tensorboard` / ``--no_tensorboard`` /
  ``L3D_TENSORBOARD=0`` turn them off.
* ``metrics.json`` (:func:`write_metrics`, :func:`read_metrics`) and ``command.txt``
  (:func:`write_command`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Literal, Mapping, Optional, Sequence, Union

import numpy as np

from .errors import NonFiniteError, RunLockedError, UserError

PathLike = Union[str, os.PathLike]

__all__ = [
    "atomic_path", "atomic_write", "clean_stale_temps", "RunDir", "OutputLock",
    "save_checkpoint", "load_checkpoint", "find_latest_checkpoint", "CheckpointManager", "check_same_config",
    "check_finite", "check_finite_params", "LossLog", "LOSS_LOG", "LOSS_PLOT", "TENSORBOARD_DIR", "set_tensorboard",
    "tensorboard_enabled",
    "write_metrics", "read_metrics", "command_line", "write_command", "peak_memory",
]

LOSS_LOG = "losses.csv"  # the loss log of every trainer
LOSS_PLOT = "losses.png"  # and its plot
TENSORBOARD_DIR = "tensorboard"  # TensorBoard event files of a LossLog, beside its CSV
TEMP_MARK = ".tmp-"  # every temporary file of this module is ".<name>.tmp-<random><suffix>"
MAX_LOSS = 1e12  # a loss above this is not a loss any more: stop as for NaN


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------------------------
# atomic writes
# ----------------------------------------------------------------------------------------------
def _temp_name(path: Path) -> str:
    # the target's name is cut so that the temporary name stays under the 255-byte limit of
    # most file systems even when the target's name is near it
    stem = path.name[:200]
    return f".{stem}{TEMP_MARK}"


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    The parent folder is created. The temporary name keeps the target's suffix (some writers pick
    the format from it). If the body raises, the temporary file is removed and the target is left
    untouched. The final file gets the usual ``0o666 & ~umask`` permissions.

    Example::

        with atomic_path("out/a.png") as tmp:
            Image.fromarray(img).save(tmp, format="PNG")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_name(path), suffix=path.suffix[:16])
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def atomic_write(path: PathLike, data: Union[bytes, str, Callable[[Any], None]], mode: str = "wb") -> Path:
    """Write ``data`` (bytes, text, or a function that writes to an open file) to ``path``
    atomically and durably (flushed and fsynced before the rename). Returns ``path``."""
    path = Path(path)
    if isinstance(data, str):
        data, mode = data.encode("utf-8"), "wb"
    with atomic_path(path) as tmp:
        with open(tmp, mode if callable(data) else "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return path


def clean_stale_temps(folder: PathLike) -> List[Path]:
    """Remove the temporary files (``.<name>.tmp-*``) that a killed writer left under ``folder``.

    Only call it for a folder no other process is writing to (a locked :class:`RunDir`)."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.rglob(f".*{TEMP_MARK}*"):
        if p.is_file():
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_folder(path: PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` (a folder) as a
    whole. On an exception the temporary folder is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_name(path)))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_name(path)))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------------------------
# metrics.json and command.txt
# ----------------------------------------------------------------------------------------------
def _metrics_path(path_or_dir: PathLike) -> Path:
    p = Path(path_or_dir)
    return p if p.suffix == ".json" else p / "metrics.json"


def _jsonable(x: Any) -> Any:
    """Tensors, numpy values, paths, tuples -> plain JSON values; non-finite floats -> strings
    ``"nan"``, ``"inf"``, ``"-inf"`` (strict JSON has no such numbers; ``float()`` reads them)."""
    torch = sys.modules.get("torch")  # a tensor implies torch is loaded; never import it here
    if torch is not None and torch.is_tensor(x):
        x = x.detach().cpu()
        return _jsonable(x.item() if x.ndim == 0 else x.tolist())
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else ("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        return [_jsonable(v) for v in x]
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    raise TypeError(f"cannot write a {type(x).__name__} to metrics.json")


# keys whose value a new write replaces as a whole (a run's pass/fail checks never mix with a
# previous run's)
_REPLACED_KEYS = ("checks",)


def _deep_merge(old: Dict[str, Any], new: Mapping[str, Any], top: bool = True) -> Dict[str, Any]:
    out = dict(old)
    for k, v in new.items():
        if top and k in _REPLACED_KEYS:
            out[k] = v
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v, top=False)
        else:
            out[k] = v
    return out


@contextlib.contextmanager
def _dir_lock(folder: Path):
    """Exclusive advisory lock on a folder (POSIX flock; a no-op where unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_metrics(path_or_dir: PathLike) -> Dict[str, Any]:
    """The content of ``metrics.json`` (a folder or the file itself); ``{}`` when it does not exist."""
    p = _metrics_path(path_or_dir)
    if not p.exists():
        return {}
    return json.loads(p.read_text(encoding="utf-8"))


def write_metrics(path_or_dir: PathLike, metrics: Mapping[str, Any], merge: bool = True) -> Dict[str, Any]:
    """Write (merge into) ``metrics.json`` atomically.

    Args:
        path_or_dir: the output folder (``metrics.json`` inside it) or a ``.json`` file path.
        metrics: names -> numbers, strings, lists, nested dicts; tensors and numpy values are
            converted (0-d -> number, n-d -> nested lists), non-finite floats -> "nan"/"inf".
        merge: keep keys already in the file (nested dicts are merged key by key); new values win.
            ``"checks"`` (the pass/fail numbers, :mod:`l3d.checks`) is replaced as a whole.
    Returns:
        The dictionary now in the file. Concurrent writers in the same folder are serialised with
        a folder lock (POSIX), so merges from parallel runs are not lost.
    """
    p = _metrics_path(path_or_dir)
    p.parent.mkdir(parents=True, exist_ok=True)
    new = _jsonable(dict(metrics))
    with _dir_lock(p.parent):
        try:
            old = read_metrics(p) if merge else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            old = {}  # a damaged file from an earlier run is replaced, not merged
        data = _deep_merge(old, new) if merge else new
        atomic_write(p, json.dumps(data, indent=2, sort_keys=False) + "\n")
    return data


def command_line(argv: Optional[Sequence[str]] = None, module: Optional[str] = None) -> str:
    """The shell command that started this process, as ``python -m <module> args...`` when it was
    run as a module (else ``python <script> args...``), quoted for a POSIX shell.

    Args:
        argv: defaults to ``sys.argv``.
        module: defaults to the ``__main__`` module's spec name (``pkg.__main__`` -> ``pkg``).
    """
    argv = list(sys.argv if argv is None else argv)
    if module is None:
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name:
            module = spec.name[: -len(".__main__")] if spec.name.endswith(".__main__") else spec.name
    if module:
        parts = ["python", "-m", module] + argv[1:]
    else:
        script = argv[0] if argv else ""
        with contextlib.suppress(ValueError):
            rel = os.path.relpath(script)
            script = rel if not rel.startswith("..") else script
        parts = ["python", script] + argv[1:]
    return shlex.join(parts)


def write_command(output_dir: PathLike, line: Optional[str] = None) -> Path:
    """Add ``line`` (default: :func:`command_line`) to ``<output_dir>/command.txt``, which keeps one
    line per distinct command that wrote into the folder; atomic. Returns its path."""
    line = command_line() if line is None else line
    path = Path(output_dir) / "command.txt"
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []
    if line not in lines:
        atomic_write(path, "\n".join(lines + [line]) + "\n")
    return path


# ----------------------------------------------------------------------------------------------
# the output folder of a run
# ----------------------------------------------------------------------------------------------
LOCK_NAME = ".lock"


class OutputLock:
    """An exclusive lock on an output folder (``<folder>/.lock``, POSIX ``flock``).

    The lock file holds the owner's pid, start time and command, so a second run is told who
    holds it. The kernel releases the lock when the owner dies, even by SIGKILL."""

    def __init__(self, folder: PathLike, command: Optional[str] = None, flag: str = "--output_dir"):
        self.folder = Path(folder)
        self.command = command or command_line()
        self.flag = flag  # how the user names the folder in messages (Hydra apps: "output_dir=")
        self._fd: Optional[int] = None

    def acquire(self) -> "OutputLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no locking
            return self
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(f"{self.flag} {self.folder}: expected a folder, found a file")
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 4096).decode("utf-8", "replace").strip().splitlines()
            finally:
                os.close(fd)
            who = holder[0] if holder else "another process"
            what = f" ({holder[1]})" if len(holder) > 1 else ""
            raise RunLockedError(f"{self.folder} is in use by {who}{what}; wait for it to finish or choose "
                                 f"another {self.flag.rstrip('=')}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n{self.command}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


PENDING_PREFIX = ".pending-"
PREVIOUS_NAME = ".previous"


class RunDir:
    """The output folder of one run: locked, and never losing the previous run's results early.

    ``RunDir(root, fresh=True)`` for a new run: when ``root`` already holds results (visible
    files), everything the run writes goes to a hidden ``root/.pending-<pid>/`` until
    :meth:`commit` (the first good checkpoint of a trainer, or the end of a run that has none).
    Commit moves the previous results to ``root/.previous/`` (replacing an older one) and the
    pending files into ``root``; from then on the run writes into ``root`` itself. A run that fails
    before committing removes its pending folder and leaves ``root`` as it was.
    ``fresh=False`` (resume) writes into ``root`` directly.

    Paths: :meth:`path` is where to write *now*; objects that keep a path (a :class:`LossLog`, a
    :class:`CheckpointManager`) are given one with :meth:`track` so commit moves them along.

    Use as a context manager::

        with RunDir(out, fresh=not args.resume) as run:
            ckpts = CheckpointManager(run.path("checkpoints"), run=run)
            log = run.track(LossLog(run.path(LOSS_LOG)))
            ...                                   # the first ckpts.save() commits
        # leaving the block: commit if the run succeeded and has not yet, else drop pending files
    """

    def __init__(self, root: PathLike, fresh: bool = True, command: Optional[str] = None, lock: bool = True,
                 flag: str = "--output_dir"):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"{flag} {self.root}: expected a folder, found a file")
        self.command = command or command_line()
        self._lock = OutputLock(self.root, self.command, flag=flag) if lock else None
        self.fresh = fresh
        self.committed = True
        self.work = self.root
        self._tracked: List[Any] = []
        self._entered = False

    # -- lifecycle
    def open(self) -> "RunDir":
        self.root.mkdir(parents=True, exist_ok=True)
        if self._lock is not None:
            self._lock.acquire()
        clean_stale_temps(self.root)
        for p in self.root.glob(PENDING_PREFIX + "*"):  # a killed run's pending files
            shutil.rmtree(p, ignore_errors=True)
        if self.fresh and self.previous_results():
            self.work = self.root / f"{PENDING_PREFIX}{os.getpid()}"
            self.work.mkdir()
            self.committed = False
        self._entered = True
        return self

    def previous_results(self) -> List[Path]:
        """The visible entries of ``root`` (what a fresh run would replace)."""
        return sorted(p for p in self.root.iterdir() if not p.name.startswith("."))

    def path(self, *parts: str) -> Path:
        """Where the run writes ``parts`` now (pending folder before commit, ``root`` after)."""
        return self.work.joinpath(*parts)

    def final(self, *parts: str) -> Path:
        """Where ``parts`` ends up once the run has committed."""
        return self.root.joinpath(*parts)

    def track(self, obj: Any) -> Any:
        """Keep ``obj.path`` / ``obj.directory`` pointing at the run's files across :meth:`commit`."""
        self._tracked.append(obj)
        return obj

    def commit(self) -> None:
        """Make the run's files the folder's results (idempotent). See the class docstring."""
        if self.committed:
            return
        for obj in self._tracked:  # writers that append by path (TensorBoard) reopen after the move
            release = getattr(obj, "release_files", None)
            if callable(release):
                release()
        previous = self.root / PREVIOUS_NAME
        shutil.rmtree(previous, ignore_errors=True)
        old = self.previous_results()
        if old:
            previous.mkdir()
            for p in old:
                os.replace(p, previous / p.name)
        for p in list(self.work.iterdir()):
            os.replace(p, self.root / p.name)
        pending = self.work
        self.work, self.committed = self.root, True
        for obj in self._tracked:
            for attr in ("path", "directory"):
                value = getattr(obj, attr, None)
                if isinstance(value, Path) and _is_within(value, pending):
                    setattr(obj, attr, self.root / value.relative_to(pending))
        with contextlib.suppress(OSError):
            pending.rmdir()

    def close(self, success: bool) -> None:
        """End the run: commit when it succeeded, else drop its uncommitted files; unlock."""
        for obj in self._tracked:  # flush and close what tracked logs hold open
            release = getattr(obj, "release_files", None)
            if callable(release):
                with contextlib.suppress(Exception):
                    release()
        try:
            if not self.committed:
                if success:
                    self.commit()
                else:
                    shutil.rmtree(self.work, ignore_errors=True)
                    self.work, self.committed = self.root, True
        finally:
            if self._lock is not None:
                self._lock.release()

    def __enter__(self) -> "RunDir":
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        # Ctrl-C after a checkpoint counts as success: the checkpoint is a good state
        self.close(success=exc_type is None)


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------------------------
# finite-state guards
# ----------------------------------------------------------------------------------------------
def check_finite(loss: Union[torch.Tensor, float], step: int, name: str = "loss", limit: float = MAX_LOSS) -> None:
    """Raise :class:`NonFiniteError` when ``loss`` (a tensor of any shape, or a number) holds NaN,
    +-inf, or a magnitude above ``limit`` (a diverged run). On CUDA this synchronises; call it once
    per step on the scalar loss."""
    import torch

    if isinstance(loss, torch.Tensor):
        t = loss.detach()
        bad = ~torch.isfinite(t) | (t.abs() > limit)
        if not bool(bad.any()):
            return
        value = float(t.reshape(-1)[bad.reshape(-1)][0])
    else:
        value = float(loss)
        if math.isfinite(value) and abs(value) <= limit:
            return
    what = f"{value}" if not math.isfinite(value) else f"{value:.3g} (above {limit:.0e}: the run diverged)"
    raise NonFiniteError(f"{name} became {what} at step {step}; lower the learning rate or check the inputs",
                         step=step, name=name, value=value)


def _named_tensors(obj: Any, prefix: str = "") -> Iterator[tuple]:
    """(name, tensor) of a module's parameters, a state dict, or nested dicts/lists of tensors."""
    import torch

    if isinstance(obj, torch.nn.Module):
        for n, p in obj.named_parameters():
            yield (f"{prefix}{n}", p)
    elif torch.is_tensor(obj):
        yield (prefix.rstrip(".") or "tensor", obj)
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _named_tensors(v, f"{prefix}{k}.")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _named_tensors(v, f"{prefix}{i}.")


def nonfinite_tensors(obj: Any) -> List[tuple]:
    """``[(name, number of non-finite values)]`` of every floating tensor in ``obj`` that has any."""
    import torch

    bad = []
    for name, t in _named_tensors(obj):
        if t.is_floating_point() or t.is_complex():
            n = int((~torch.isfinite(t.detach())).sum())
            if n:
                bad.append((name, n))
    return bad


def check_finite_params(params: Any, step: int) -> None:
    """Raise :class:`NonFiniteError` naming the step and the first parameter with NaN/inf values.

    ``params``: a module, a state dict, or a dict of named tensors / parameter groups."""
    bad = nonfinite_tensors(params)
    if bad:
        name, n = bad[0]
        more = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
        raise NonFiniteError(f"parameter {name} has {n} non-finite values at step {step}{more}; lower the "
                             f"learning rate or check the inputs", step=step, name=name)


# ----------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------
def save_checkpoint(path: PathLike, state: Mapping[str, Any]) -> Path:
    """Atomically save ``state`` (a dict of tensors, state dicts, numbers, strings, config dicts)
    with ``torch.save``. A crash or exception mid-write leaves any previous file intact.

    Raises:
        NonFiniteError: when a floating tensor in ``state`` holds NaN/inf (nothing is written).
    """
    import torch

    bad = nonfinite_tensors(dict(state))
    if bad:
        name, n = bad[0]
        step = state.get("step")
        raise NonFiniteError(f"not saving {Path(path).name}: {name} has {n} non-finite values"
                             + (f" at step {step}" if step is not None else ""), step=step, name=name)
    return atomic_write(path, lambda f: torch.save(dict(state), f))


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device, None] = "cpu",
                    weights_only: bool = True) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Args:
        map_location: where tensors go (default CPU; pass the training device to load directly).
        weights_only: torch's safe unpickler (tensors, containers, numbers, strings only).

    Raises:
        UserError: no file at ``path``, or not a readable checkpoint (truncated, corrupt, not a dict).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as exc:  # torch raises RuntimeError / UnpicklingError / EOFError ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read checkpoint {path}: {first}") from exc
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {path}: expected a dict, found a {type(state).__name__}")
    return state


def _ckpt_step(p: Path) -> Optional[int]:
    name = p.name
    if name.startswith("ckpt_") and name.endswith(".pt") and name[5:-3].isdigit():
        return int(name[5:-3])
    return None


def _checkpoint_files(directory: Path) -> List[tuple]:
    """``(mtime_ns, step, path)`` for every ``ckpt_<step>.pt`` in ``directory``, oldest first."""
    found = []
    if directory.is_dir():
        for p in directory.iterdir():
            step = _ckpt_step(p)
            if step is not None and p.is_file():
                found.append((p.stat().st_mtime_ns, step, p))
    return sorted(found)


def _candidates(directory: Path) -> List[Path]:
    """Checkpoints in ``directory``, newest first (``last.pt`` first among equals)."""
    found = _checkpoint_files(directory)
    last = directory / "last.pt"
    if last.is_file():
        found.append((last.stat().st_mtime_ns, -1, last))
    return [p for _, _, p in sorted(found, key=lambda c: (c[0], c[1]), reverse=True)]


def find_latest_checkpoint(directory: PathLike) -> Optional[Path]:
    """The most recently written checkpoint in ``directory`` (``last.pt`` or ``ckpt_<step>.pt``),
    or ``None`` when there is none (recency by modification time, ties to the higher step)."""
    c = _candidates(Path(directory))
    return c[0] if c else None


def load_latest_intact(directory: PathLike, map_location: Union[str, torch.device, None] = "cpu",
                       notice: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)
                       ) -> Optional[dict]:
    """The newest checkpoint in ``directory`` that reads back and holds only finite tensors; each
    one skipped is reported by ``notice`` in one line. None when there is no checkpoint at all.

    Raises:
        UserError: checkpoints exist but none is usable."""
    tried = []
    for path in _candidates(Path(directory)):
        try:
            state = load_checkpoint(path, map_location=map_location)
        except UserError as exc:
            tried.append(path.name)
            notice(f"note: skipping {path}: {exc}")
            continue
        bad = nonfinite_tensors(state)
        if bad:
            tried.append(path.name)
            notice(f"note: skipping {path}: {bad[0][0]} has {bad[0][1]} non-finite values")
            continue
        if tried:
            notice(f"note: using {path} (step {state.get('step', '?')}), the newest intact checkpoint")
        return state
    if tried:
        raise UserError(f"{directory}: no usable checkpoint ({', '.join(tried)} are damaged or non-finite)")
    return None


def check_same_config(saved: Mapping[str, Any], current: Mapping[str, Any], where: PathLike, keys: Iterable[str] = ()) -> None:
    """Raise :class:`UserError` when a checkpoint's ``config`` differs from this run's in ``keys``
    (all keys of ``current`` when empty): resuming into a different model cannot work."""
    keys = list(keys) or list(current)
    diff = [(k, saved.get(k), current.get(k)) for k in keys if saved.get(k) != current.get(k)]
    if diff:
        text = ", ".join(f"{k}: {a!r} in the checkpoint, {b!r} now" for k, a, b in diff[:4])
        raise UserError(f"{where}: cannot resume with a different configuration ({text}); use the same settings "
                        f"or a new --output_dir")


class CheckpointManager:
    """Periodic checkpoints with resume and an optional best-by-metric copy.

    Each save writes ``<dir>/ckpt_<step>.pt`` and points ``<dir>/last.pt`` at it; when a metric is
    given and improves, ``<dir>/best.pt`` too (its step and metric are kept in ``best.json``, so a
    resumed run keeps comparing against the right value). Only the ``keep_last`` most recent
    ``ckpt_*.pt`` files are kept; ``last.pt`` and ``best.pt`` are never pruned. The saved dict is
    ``state`` plus ``"step"`` (and ``"metric"`` when given). A state with non-finite tensors is
    refused (:class:`NonFiniteError`) and ``last.pt`` keeps pointing at the last good one.
    With ``run`` (a :class:`RunDir`), the first successful save commits the run.

    Args:
        directory: folder for the checkpoints (created on first save).
        every: :meth:`due` is true every ``every`` steps (``step % every == every - 1``, so with
            0-based steps the 100th step saves when ``every=100``). ``0`` disables periodic saves.
        keep_last: number of ``ckpt_*.pt`` files to keep; ``None`` keeps all.
        mode: ``"min"`` (e.g. a loss) or ``"max"`` (e.g. PSNR, accuracy) for ``best.pt``.
    """

    def __init__(self, directory: PathLike, every: int = 1000, keep_last: Optional[int] = 3,
                 mode: Literal["min", "max"] = "min", run: Optional[RunDir] = None):
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
        self.run = run
        if run is not None:
            run.track(self)
        self.best_metric: Optional[float] = None
        self.best_step: Optional[int] = None
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

    def save(self, step: int, state: Mapping[str, Any], metric: Optional[float] = None) -> Path:
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
            atomic_write(self.directory / "best.json", json.dumps(info))
        self._prune()
        if self.run is not None and not self.run.committed:
            self.run.commit()
            path = self.directory / path.name
        return path

    def maybe_save(self, step: int, state: Union[Mapping[str, Any], Callable[[], Mapping[str, Any]]],
                   metric: Optional[float] = None, force: bool = False) -> Optional[Path]:
        """Save when :meth:`due` (or ``force``, e.g. on Ctrl-C or the last step). ``state`` may be a
        callable so the state dict is only built when a save happens."""
        if not (force or self.due(step)):
            return None
        return self.save(step, state() if callable(state) else state, metric)

    def resume(self, map_location: Union[str, torch.device, None] = "cpu") -> Optional[dict]:
        """The newest intact, finite saved state (a dict with ``"step"``), or ``None`` when there is
        no checkpoint; damaged or non-finite ones are skipped with a one-line notice."""
        return load_latest_intact(self.directory, map_location=map_location)

    def _prune(self) -> None:
        if self.keep_last is None:
            return
        for _, _, path in _checkpoint_files(self.directory)[: -self.keep_last]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _link_or_copy(src: Path, dst: Path) -> None:
    """Atomically make ``dst`` hold the content of ``src`` (hard link when the file system allows,
    else a copy), via a temp name in ``dst``'s folder and ``os.replace``."""
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)


# ----------------------------------------------------------------------------------------------
# loss log
# ----------------------------------------------------------------------------------------------
def _scalar(v: Any) -> Union[float, str]:
    import torch

    if isinstance(v, torch.Tensor):
        return float(v.detach().float().mean()) if v.numel() != 1 else float(v.detach())
    if isinstance(v, (int, float, np.number, bool)):
        return float(v)
    return str(v)


_TENSORBOARD: Optional[bool] = None  # set by set_tensorboard(); None: the environment decides


def set_tensorboard(enabled: Optional[bool]) -> None:
    """Whether new :class:`LossLog` s write TensorBoard event files (``None``: back to the default,
    on unless the environment variable ``L3D_TENSORBOARD`` is ``0``/``false``/``off``). Scripts
    call it through ``--no_tensorboard`` (:mod:`l3d.cli`)."""
    global _TENSORBOARD
    _TENSORBOARD = None if enabled is None else bool(enabled)


def tensorboard_enabled() -> bool:
    """The default of :class:`LossLog`'s ``tensorboard`` argument (see :func:`set_tensorboard`)."""
    if _TENSORBOARD is not None:
        return _TENSORBOARD
    return os.environ.get("L3D_TENSORBOARD", "1").strip().lower() not in ("0", "false", "no", "off")


def _rss_mb() -> Optional[float]:
    """Resident memory of this process in MiB (Linux ``/proc``; else the peak from ``resource``)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError, IndexError, AttributeError):
        try:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10)
        except (ImportError, OSError):
            return None


def peak_memory() -> Dict[str, float]:
    """This process's peak memory so far, in MiB, for a run's ``metrics.json``:
    ``peak_cpu_rss_mib`` (the kernel's high-water mark of resident memory, ``ru_maxrss``) and,
    where CUDA is in use, ``peak_cuda_allocated_mib`` / ``peak_cuda_reserved_mib`` (the caching
    allocator's peaks over every device). A process that ran several parts reports the largest."""
    out: Dict[str, float] = {}
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        out["peak_cpu_rss_mib"] = round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)
    except (ImportError, OSError):
        rss = _rss_mb()
        if rss is not None:
            out["peak_cpu_rss_mib"] = round(rss, 1)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        n = torch.cuda.device_count()
        out["peak_cuda_allocated_mib"] = round(max(torch.cuda.max_memory_allocated(d) for d in range(n)) / 2 ** 20, 1)
        out["peak_cuda_reserved_mib"] = round(max(torch.cuda.max_memory_reserved(d) for d in range(n)) / 2 ** 20, 1)
    return out


def _close_writer(writer: Any) -> None:
    with contextlib.suppress(Exception):
        writer.close()


EVENTS_PREFIX = "events.out.tfevents."


class _EventFile:
    """One TensorBoard event file, written synchronously through tensorboard's record format.

    Named ``events.out.tfevents.<n>.l3d`` with ``n`` one more than the highest already in the
    folder (zero-padded, so TensorBoard's name order is the order of writing), so two runs that
    log the same things write the same file names (TensorBoard's own writers put the time, host
    and pid in the name). Each record is flushed as it is written."""

    def __init__(self, folder: Path, purge_step: Optional[int] = None):
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        folder.mkdir(parents=True, exist_ok=True)
        seqs = [int(p.name[len(EVENTS_PREFIX):].split(".")[0]) for p in folder.glob(EVENTS_PREFIX + "*")
                if p.name[len(EVENTS_PREFIX):].split(".")[0].isdigit()]
        self.path = folder / f"{EVENTS_PREFIX}{max(seqs, default=0) + 1:010d}.l3d"
        self._pb = event_pb2
        self._file = open(self.path, "ab")
        self._records = RecordWriter(self._file)
        self._event(file_version="brain.Event:2")
        if purge_step is not None:  # hides the events of steps >= purge_step in the earlier files
            self._event(step=int(purge_step), session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START))

    def _event(self, **fields: Any) -> None:
        self._records.write(self._pb.Event(wall_time=time.time(), **fields).SerializeToString())

    def add(self, step: int, scalars: Mapping[str, float] = (), images: Mapping[str, np.ndarray] = ()) -> None:
        """One event of ``step`` with the scalars and (H, W, 3) uint8 images given."""
        from tensorboard.compat.proto import summary_pb2

        values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in dict(scalars).items()]
        for tag, img in dict(images).items():
            import io

            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            values.append(summary_pb2.Summary.Value(tag=tag, image=summary_pb2.Summary.Image(
                height=int(img.shape[0]), width=int(img.shape[1]), colorspace=3, encoded_image_string=buf.getvalue())))
        if values:
            self._event(step=int(step), summary=summary_pb2.Summary(value=values))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _image_hwc(image: Any) -> np.ndarray:
    """An (H, W, 3) uint8 array from an (H, W), (H, W, C) or (C, H, W) image, float in [0, 1] or uint8."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.is_tensor(image):
        image = image.detach().cpu().float().numpy() if image.is_floating_point() else image.detach().cpu().numpy()
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise ValueError(f"expected an (H, W), (H, W, C) or (C, H, W) image, got shape {a.shape}")
    if a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    a = a[..., :3]
    if a.dtype != np.uint8:
        a = (np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a)


class LossLog:
    """Append-only CSV of per-step scalars: ``step,<name1>,<name2>,...`` (:data:`LOSS_LOG`), and the
    same scalars as TensorBoard event files in ``tensorboard/`` beside the CSV.

    The header comes from the first row written; each row is flushed to disk as it is written, so
    a crashed run keeps its log. A new instance on an existing file appends (resume); a row with a
    name the header lacks rewrites the file once with the wider header. ``append=False`` starts
    a fresh file (and removes the old ``tensorboard/`` folder).

    TensorBoard (``tensorboard=None``: :func:`tensorboard_enabled`, on by default): every row's
    numbers under their own names, plus ``system/step_time_s`` (wall seconds per step between two
    rows), ``system/cpu_rss_mb`` and, where CUDA is in use, ``system/cuda_peak_mb``; and the images
    given to :meth:`image`. The event file is opened on the first row (tensorboard is imported
    only then), every row is flushed to it as it is written, and it is closed when the run's folder
    commits or closes (:meth:`release_files`, which a :class:`RunDir` calls on the logs it tracks;
    the next row opens a new file in the committed folder). Files are named
    ``events.out.tfevents.<n>.l3d`` (n counting up), so two runs that log the same steps write the
    same names. :meth:`rewind` makes the next file start by purging the steps after the checkpoint
    (TensorBoard's ``purge_step``), so a resumed run's curves do not show the re-run steps twice.
    Without the tensorboard package the CSV is still written and a one-line note says why the
    event files are missing.
    """

    def __init__(self, path_csv: PathLike, append: bool = True, tensorboard: Optional[bool] = None):
        self.path = Path(path_csv)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tensorboard = tensorboard_enabled() if tensorboard is None else bool(tensorboard)
        self._writer: Any = None
        self._finalizer: Any = None
        self._purge_step: Optional[int] = None
        self._last: Optional[tuple] = None  # (step, perf_counter) of the previous row
        if not append and self.path.exists():
            self.path.unlink()
        if not append and self.tensorboard_dir.is_dir():
            shutil.rmtree(self.tensorboard_dir, ignore_errors=True)
        self.columns: Optional[List[str]] = None
        if self.path.is_file() and self.path.stat().st_size > 0:
            with open(self.path, newline="") as f:
                header = next(csv.reader(f), None)
            if header:
                self.columns = header

    @property
    def tensorboard_dir(self) -> Path:
        """The folder of the TensorBoard event files (``tensorboard/`` beside the CSV)."""
        return self.path.parent / TENSORBOARD_DIR

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
        if self.tensorboard:
            self._tb_row(row)

    # -- TensorBoard
    def _tb(self) -> Any:
        """The open event file (created on first use), or None when TensorBoard is off/missing."""
        if self._writer is not None or not self.tensorboard:
            return self._writer
        try:
            self._writer = _EventFile(self.tensorboard_dir, self._purge_step)
        except ImportError as exc:
            print(f"note: no TensorBoard logs ({exc}); losses go to {self.path.name} only", file=sys.stderr)
            self.tensorboard = False
            return None
        self._finalizer = weakref.finalize(self, _close_writer, self._writer)
        self._purge_step = None
        return self._writer

    def _tb_row(self, row: Mapping[str, Any]) -> None:
        w = self._tb()
        if w is None:
            return
        step = row["step"]
        values = {k: v for k, v in row.items() if k != "step" and isinstance(v, float)}
        now = time.perf_counter()
        if self._last is not None and step > self._last[0]:
            values["system/step_time_s"] = (now - self._last[1]) / (step - self._last[0])
        self._last = (step, now)
        rss = _rss_mb()
        if rss is not None:
            values["system/cpu_rss_mb"] = rss
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            values["system/cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
        w.add(step, values)
        w.flush()

    def image(self, step: int, tag: str, image: Any) -> None:
        """Log an image to TensorBoard under ``tag`` (e.g. a fixed validation view every N steps):
        (H, W), (H, W, C) or (C, H, W), float in [0, 1] or uint8, numpy or torch. A no-op when
        TensorBoard is off."""
        w = self._tb() if self.tensorboard else None
        if w is not None:
            w.add(int(step), images={tag: _image_hwc(image)})
            w.flush()

    def image_due(self, step: int, every: int, steps: int, stopping: bool = False) -> bool:
        """Whether ``step`` of a run of ``steps`` logs its validation image: TensorBoard is on and
        the step is a multiple of ``every`` (0: none in between), the last step, or the step the
        run stops at (``stopping``). Callers render the image only when this is true."""
        return self.tensorboard and (stopping or step >= steps - 1 or (every > 0 and step % every == 0))

    def flush(self) -> None:
        """Write what the TensorBoard writer holds to its event file."""
        if self._writer is not None:
            self._writer.flush()

    def release_files(self) -> None:
        """Flush and close the TensorBoard writer (the next row opens a new event file, wherever
        :attr:`path` then points)."""
        if self._writer is not None:
            if self._finalizer is not None:
                self._finalizer.detach()
            _close_writer(self._writer)
            self._writer = self._finalizer = None

    close = release_files

    def rows(self) -> List[Dict[str, Any]]:
        """Every row in the file, numbers as floats (``step`` as int); empty cells are omitted."""
        if not self.path.is_file():
            return []
        out = []
        with open(self.path, newline="") as f:
            for raw in csv.DictReader(f):
                row: Dict[str, Any] = {}
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
        so steps re-run after the checkpoint are not logged twice). TensorBoard: the next event
        file starts with ``purge_step = step + 1``, which hides the old events after ``step``."""
        self.release_files()
        self._purge_step, self._last = int(step) + 1, None
        if self.columns is None:
            return
        kept = [r for r in self.rows() if r["step"] <= step]
        self._rewrite(self.columns, kept)

    def _rewrite(self, columns: List[str], rows: List[dict]) -> None:
        def write(f):
            w = csv.DictWriter(f, fieldnames=columns, restval="")
            w.writeheader()
            for r in rows:
                w.writerow({k: v for k, v in r.items() if k in columns})

        atomic_write(self.path, write, mode="w")
        self.columns = columns

    def plot(self, path_png: Optional[PathLike] = None, groups: Optional[Iterable[Iterable[str]]] = None,
             logy: Union[bool, Literal["auto"]] = "auto", title: Optional[str] = None, xlabel: str = "step") -> Path:
        """Write a loss-curve PNG (matplotlib, no display needed); default :data:`LOSS_PLOT` beside
        the CSV.

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
            by_key: Dict[str, List[str]] = {}
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
            values_all: List[float] = []
            for n in panel:
                pts = [(r["step"], r[n]) for r in rows if isinstance(r.get(n), float) and math.isfinite(r[n])]
                if not pts:
                    continue
                xs, ys = zip(*pts)
                values_all.extend(ys)
                ax.plot(xs, ys, label=n, linewidth=1.2)
            positive = bool(values_all) and min(values_all) > 0
            use_log = logy is True or (logy == "auto" and positive and max(values_all) / min(values_all) > 100)
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
        path = Path(path_png) if path_png is not None else self.path.with_name(LOSS_PLOT)
        atomic_write(path, lambda f: fig.savefig(f, format="png"))
        return path
