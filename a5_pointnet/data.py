"""Point-cloud data of Assignment 5: the course's .npy files, or the procedural stand-in in the same layout.

Layout (the course's, under a root folder)::

    cls/data_train.npy   (N, 10000, 3) float   cls/label_train.npy   (N,) int, 0 chair, 1 vase, 2 lamp
    cls/data_test.npy                          cls/label_test.npy
    seg/data_train.npy   (N, 10000, 3) float   seg/label_train.npy   (N, 10000) int, part 0..5
    seg/data_test.npy                          seg/label_test.npy

The course files live under ``<data root>/a5/`` (dataset ``a5`` of :mod:`l3d.data`; the course
distributes them from a shared drive, so no URL or checksum is recorded). When they are absent,
:func:`resolve_data` generates the procedural chairs/vases/lamps of :mod:`a5_pointnet.synthetic`
once, writes them in this same layout under a cache folder
(``<cache>/a5_synthetic/v<version>_s<seed>_p<points>_<task>-<train>-<test>/``), and every script
loads them through the same :func:`load_split` as the real files.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from l3d.checks import data_label
from l3d.cli import ScriptParser, positive_int
from l3d.data import data_root
from l3d.errors import user_error
from l3d.run import atomic_path

from .synthetic import CHAIR_PARTS, CLASS_NAMES, GENERATOR_VERSION, generate_split

__all__ = [
    "COURSE_FILES", "DataSpec", "add_data_flags", "resolve_data", "load_split", "synthetic_root",
    "NUM_CLASSES", "DEFAULT_SIZES", "QUICK_SIZES", "STANDIN_DESCRIPTION",
]

NUM_CLASSES = {"cls": len(CLASS_NAMES), "seg": len(CHAIR_PARTS)}
COURSE_FILES = tuple(f"{task}/{kind}_{split}.npy" for task in ("cls", "seg")
                     for kind in ("data", "label") for split in ("train", "test"))
#: procedural data set sizes (train, test) per task: full runs and --quick runs
DEFAULT_SIZES = {"cls": (2400, 600), "seg": (1600, 400)}
QUICK_SIZES = {"cls": (900, 300), "seg": (600, 200)}
#: what metrics.json says (after "stand-in: ") when the procedural set replaces the course's files
STANDIN_DESCRIPTION = "procedural chairs, vases and lamps (course point clouds not in the data root)"

# the course files are registered as the dataset "a5" in l3d.data


@dataclass(frozen=True)
class DataSpec:
    """Where a task's data comes from (saved in checkpoints so evaluation finds the same data).

    Attributes:
        source: "course" (the course's files) or "synthetic" (the procedural stand-in).
        root: folder holding ``cls/`` and ``seg/`` in the course layout.
        num_train, num_test, num_points, seed: the procedural set's size and seed (None for course data).
    """

    source: str
    root: str
    num_train: Optional[int] = None
    num_test: Optional[int] = None
    num_points: Optional[int] = None
    seed: Optional[int] = None

    def to_dict(self) -> dict:
        return asdict(self)

    def label(self, task: str) -> str:
        """What the run was made from, for ``metrics.json["data"]``: ``"course: a5/<task>/..."``
        for the course's files, ``"stand-in: procedural chairs, vases and lamps (...)"`` otherwise."""
        if self.source == "synthetic":
            return data_label(standin=STANDIN_DESCRIPTION)
        root = Path(self.root)
        try:  # relative to the data root when the files live there, as the course's layout names them
            where = (root.resolve().relative_to(data_root().resolve())).as_posix()
        except ValueError:
            where = root.as_posix()
        return data_label(course_file=f"{where}/{task}/{{data,label}}_{{train,test}}.npy")


def add_data_flags(ap: ScriptParser, sizes_from_checkpoint: bool = False) -> None:
    """``--data``, ``--data_path`` (course spelling ``--data_dir``), ``--cache_dir``, ``--num_train``,
    ``--num_test``, ``--data_seed``.

    With ``sizes_from_checkpoint`` (evaluation scripts) the flags default to the data the
    checkpoint was trained on."""
    ck = sizes_from_checkpoint
    d = lambda own: " (default: what the checkpoint was trained on)" if ck else f" (default: {own})"  # noqa: E731
    ap.add_argument("--data", choices=["auto", "course", "synthetic"], default=None if ck else "auto",
                    help="course = the course's .npy files (error when absent); synthetic = the procedural "
                         "chairs/vases/lamps; auto = course files when present, else synthetic" + (d("") if ck else ""))
    # the shared --data_path, also under this script's earlier name --data_dir
    ap.add_argument("--data_path", "--data_dir", dest="data_path", default=None,
                    help="folder with cls/ and seg/ in the course layout ('synthetic': the procedural stand-in)"
                         + d("<data root>/a5"))
    ap.add_argument("--cache_dir", default="output/.cache",
                    help="where the procedural data set is written once and reused")
    ap.add_argument("--num_train", type=positive_int, default=None, help="procedural training shapes" + d(
        f"cls {DEFAULT_SIZES['cls'][0]}, seg {DEFAULT_SIZES['seg'][0]}; --quick: {QUICK_SIZES['cls'][0]}, "
        f"{QUICK_SIZES['seg'][0]}"))
    ap.add_argument("--num_test", type=positive_int, default=None, help="procedural test shapes" + d(
        f"cls {DEFAULT_SIZES['cls'][1]}, seg {DEFAULT_SIZES['seg'][1]}; --quick: {QUICK_SIZES['cls'][1]}, "
        f"{QUICK_SIZES['seg'][1]}"))
    ap.add_argument("--data_seed", type=int, default=None, help="seed of the procedural data set" + d("0"))


def _course_present(root: Path, task: str) -> bool:
    return all((root / task / f"{kind}_{split}.npy").is_file() for kind in ("data", "label") for split in ("train", "test"))


def synthetic_root(cache_dir: str | Path, task: str, num_train: int, num_test: int, num_points: int = 10000,
                   seed: int = 0, quiet: bool = False) -> Path:
    """Folder holding ``<task>/{data,label}_{train,test}.npy`` of the procedural set, generated
    (atomically, one file at a time) when missing; returns the folder that contains ``<task>/``."""
    if min(num_train, num_test) < 1 or num_points < 1:
        raise ValueError(f"procedural data sizes must be positive, got train {num_train}, test {num_test}, "
                         f"points {num_points}")
    root = Path(cache_dir) / "a5_synthetic" / f"v{GENERATOR_VERSION}_s{seed}_p{num_points}_{task}-{num_train}-{num_test}"
    for split, n in (("train", num_train), ("test", num_test)):
        data_p, label_p = root / task / f"data_{split}.npy", root / task / f"label_{split}.npy"
        if data_p.is_file() and label_p.is_file():
            continue
        t = time.perf_counter()
        data, labels = generate_split(task, split, n, num_points, seed)
        for path, arr in ((label_p, labels), (data_p, data)):
            with atomic_path(path) as tmp:
                np.save(tmp, arr)
        if not quiet:
            print(f"generated {n} procedural {task} {split} shapes in {time.perf_counter() - t:.1f} s -> {root / task}",
                  file=sys.stderr)
    return root


def resolve_data(task: str, data: str = "auto", data_dir: Optional[str] = None, cache_dir: str = "output/.cache",
                 num_train: Optional[int] = None, num_test: Optional[int] = None, seed: Optional[int] = None,
                 quick: bool = False, num_points: int = 10000, quiet: bool = False) -> DataSpec:
    """Pick the course files or the (generated on demand) procedural set for ``task``.

    ``data_dir`` is the ``--data_path`` folder (``"synthetic"`` means ``data="synthetic"``).

    Raises:
        UserError: ``data="course"`` and the files are missing.
        ValueError: unknown task or data source (the flags' choices exclude both).
    """
    if task not in NUM_CLASSES:
        raise ValueError(f"task must be cls or seg, got {task!r}")  # --task has these choices
    if data not in ("auto", "course", "synthetic"):
        raise ValueError(f"data must be auto, course or synthetic, got {data!r}")  # --data has these choices
    if data_dir == "synthetic":
        if data == "course":
            raise user_error("--data_path synthetic", "a folder with the course files when --data course is given")
        data, data_dir = "synthetic", None
    course_root = Path(data_dir) if data_dir else data_root() / "a5"
    if data != "synthetic":
        if _course_present(course_root, task):
            return DataSpec("course", str(course_root))
        if data == "course":
            raise user_error(f"--data_path {course_root}",
                             f"the course files {task}/{{data,label}}_{{train,test}}.npy",
                             "course data not found there", "copy the course files there, or use --data synthetic")
        if not quiet:
            print(f"note: {course_root / task} has no course files; using the procedural chairs/vases/lamps "
                  "(--data synthetic)", file=sys.stderr)
    sizes = QUICK_SIZES[task] if quick else DEFAULT_SIZES[task]
    n_train = sizes[0] if num_train is None else num_train
    n_test = sizes[1] if num_test is None else num_test
    seed = 0 if seed is None else seed
    root = synthetic_root(cache_dir, task, n_train, n_test, num_points, seed, quiet=quiet)
    return DataSpec("synthetic", str(root), n_train, n_test, num_points, seed)


def _load_array(path: Path) -> np.ndarray:
    """``np.load`` of one course file; a missing, damaged or pickled file is a :class:`UserError`."""
    if not path.is_file():
        raise user_error(path, "a .npy file in the course layout", "no such file")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        first = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise user_error(path, "a readable .npy array", f"a damaged file ({first})") from exc
    if not isinstance(arr, np.ndarray):
        raise user_error(path, "one .npy array", f"a {type(arr).__name__}")
    return arr


def load_split(root: str | Path, task: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(data (N, P, 3) float32, labels int64)`` of one split; labels (N,) for cls, (N, P) for seg.

    Everything read is checked here, where it enters: at least one cloud of at least one point,
    finite real coordinates, integer labels (whole-number floats are accepted as the integers
    they hold) in ``0..classes-1``.

    Raises:
        UserError: naming the file, what was expected and what was found.
    """
    root = Path(root)
    data_p, label_p = root / task / f"data_{split}.npy", root / task / f"label_{split}.npy"
    data = _load_array(data_p)
    labels = _load_array(label_p)
    if data.ndim != 3 or data.shape[2] != 3:
        raise user_error(data_p, "an (N, P, 3) array of point clouds", f"shape {data.shape}")
    if data.dtype.kind not in "fiu":
        raise user_error(data_p, "real point coordinates", f"dtype {data.dtype}")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise user_error(data_p, "at least one cloud of at least one point", f"shape {data.shape}")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        bad = np.argwhere(~np.isfinite(data))[0]
        raise user_error(data_p, "finite coordinates", f"{data[tuple(bad)]} at cloud {bad[0]}, point {bad[1]}")
    want = (data.shape[0],) if task == "cls" else data.shape[:2]
    if labels.shape != want:
        raise user_error(label_p, f"an array of shape {want} (one label per {'cloud' if task == 'cls' else 'point'})",
                         f"shape {labels.shape}")
    if labels.dtype.kind == "f":
        whole = np.isfinite(labels) & (labels == np.round(labels))
        if not whole.all():
            raise user_error(label_p, "integer labels", f"{labels[~whole].flat[0].item()!r} ({labels.dtype})")
    elif labels.dtype.kind not in "iu":
        raise user_error(label_p, "integer labels", f"dtype {labels.dtype}")
    hi = NUM_CLASSES[task] - 1
    if labels.min() < 0 or labels.max() > hi:
        raise user_error(label_p, f"labels in 0..{hi}", f"{labels.min():g}..{labels.max():g}")
    return np.ascontiguousarray(data, dtype=np.float32), labels.astype(np.int64)  # writable (np.load reads into memory)
