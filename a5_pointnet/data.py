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

The public releases people already have are read too (:mod:`a5_pointnet.datasets`): ModelNet40
as ``modelnet40_ply_hdf5_2048/`` or ``modelnet40_normal_resampled/`` (also its ModelNet10 lists)
for ``cls``, ShapeNet-part as ``shapenetcore_partanno_segmentation_benchmark_v0_normal/`` or
``hdf5_data/`` for ``seg`` (and ``cls`` by category). ``--data_path <folder>`` finds the layout;
the release is converted once into this same layout under
``<cache>/a5_datasets/<layout>_<key>/<task>_p<points>_<pick>_<train>-<test>_s<seed>/`` with a
``dataset.json`` that holds the class names and the class / part counts taken from the files
(:attr:`DataSpec.num_classes`, :attr:`DataSpec.num_parts`), and every script loads it through
:func:`load_split` as it loads the course's files.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from l3d.checks import data_label
from l3d.cli import ScriptParser, positive_int
from l3d.data import data_root
from l3d.errors import user_error
from l3d.run import atomic_path

from .datasets import LAYOUT_HELP, RELEASE_HELP, VIEW_META, describe, find_release, write_view
from .synthetic import CHAIR_PARTS, CLASS_NAMES, GENERATOR_VERSION, generate_split

__all__ = [
    "COURSE_FILES", "DataSpec", "add_data_flags", "resolve_data", "load_split", "synthetic_root",
    "NUM_CLASSES", "DEFAULT_SIZES", "QUICK_SIZES", "STANDIN_DESCRIPTION", "DATA_CHOICES", "RELEASE_SOURCES",
    "load_categories", "load_normals", "view_meta",
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

#: the public releases --data names (``shapenet_part``: either ShapeNet-part layout)
RELEASE_SOURCES = ("modelnet40_h5", "modelnet40_txt", "modelnet10_txt", "shapenet_part")
DATA_CHOICES = ("auto", "course", "synthetic") + RELEASE_SOURCES
#: what metrics.json's "data" starts with for a public release
RELEASE_PREFIX = "dataset: "


@dataclass(frozen=True)
class DataSpec:
    """Where a task's data comes from (saved in checkpoints so evaluation finds the same data).

    Attributes:
        source: "course" (the course's files), "synthetic" (the procedural stand-in) or the layout
            of a public release (:data:`a5_pointnet.datasets.LAYOUTS`).
        root: folder holding ``cls/`` and ``seg/`` in the course layout (for a release: its
            converted copy).
        num_train, num_test, num_points, seed: the procedural set's size and seed (None for course
            data); for a release the shapes and points per cloud kept and the subset's seed.
        origin: the release's own folder (None for course and procedural data).
        num_classes, num_parts: object classes (or ShapeNet-part categories) and parts, as the
            release's files give them (None: the course's 3 classes and 6 parts).
        class_names: the release's class / category names.
    """

    source: str
    root: str
    num_train: Optional[int] = None
    num_test: Optional[int] = None
    num_points: Optional[int] = None
    seed: Optional[int] = None
    origin: Optional[str] = None
    num_classes: Optional[int] = None
    num_parts: Optional[int] = None
    class_names: Optional[Tuple[str, ...]] = None

    def to_dict(self) -> dict:
        return asdict(self)

    def classes(self, task: str) -> int:
        """Outputs a model of ``task`` needs on these data: classes for cls, parts for seg."""
        own = self.num_classes if task == "cls" else self.num_parts
        return own if own is not None else NUM_CLASSES[task]

    def names(self, task: str = "cls") -> Tuple[str, ...]:
        """Class names (cls) or part names (seg; "part k" for a release, whose files name no parts)."""
        if task == "cls":
            return tuple(self.class_names) if self.class_names else CLASS_NAMES
        return CHAIR_PARTS if self.num_parts is None else tuple(f"part {k}" for k in range(self.num_parts))

    def label(self, task: str) -> str:
        """What the run was made from, for ``metrics.json["data"]``: ``"course: a5/<task>/..."``
        for the course's files, ``"stand-in: procedural chairs, vases and lamps (...)"`` otherwise."""
        if self.source == "synthetic":
            return data_label(standin=STANDIN_DESCRIPTION)
        meta = view_meta(self.root)
        if meta is not None:
            return RELEASE_PREFIX + describe(meta)
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
    ap.add_argument("--data", choices=list(DATA_CHOICES), default=None if ck else "auto",
                    help="course = the course's .npy files (error when absent); synthetic = the procedural "
                         "chairs/vases/lamps; modelnet40_h5 / modelnet40_txt / modelnet10_txt / shapenet_part = "
                         "that public release in --data_path; auto = whatever --data_path holds (course files or "
                         "a release), else the course files when present, else synthetic" + (d("") if ck else ""))
    # the shared --data_path, also under this script's earlier name --data_dir
    ap.add_argument("--data_path", "--data_dir", dest="data_path", default=None,
                    help="folder with cls/ and seg/ in the course layout, or a release folder: "
                         "modelnet40_ply_hdf5_2048, modelnet40_normal_resampled, "
                         "shapenetcore_partanno_segmentation_benchmark_v0_normal or ShapeNet-part's hdf5_data "
                         "(or the folder above one), converted once into --cache_dir; 'synthetic': the "
                         "procedural stand-in" + d("<data root>/a5"))
    ap.add_argument("--cache_dir", default="output/.cache",
                    help="where the procedural data set, and the parsed and converted releases, are written once "
                         "and reused")
    ap.add_argument("--num_train", type=positive_int, default=None, help="procedural training shapes (a "
                    "release: at most this many, a seeded random subset; default all)" + d(
        f"cls {DEFAULT_SIZES['cls'][0]}, seg {DEFAULT_SIZES['seg'][0]}; --quick: {QUICK_SIZES['cls'][0]}, "
        f"{QUICK_SIZES['seg'][0]}"))
    ap.add_argument("--num_test", type=positive_int, default=None, help="procedural test shapes (a "
                    "release: at most this many, a seeded random subset; default all)" + d(
        f"cls {DEFAULT_SIZES['cls'][1]}, seg {DEFAULT_SIZES['seg'][1]}; --quick: {QUICK_SIZES['cls'][1]}, "
        f"{QUICK_SIZES['seg'][1]}"))
    ap.add_argument("--data_seed", type=int, default=None, help="seed of the procedural data set (a release: "
                    "of its subsets)" + d("0"))


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
                 quick: bool = False, num_points: int = 10000, quiet: bool = False, cloud_points: Optional[int] = None,
                 point_pick: str = "first", normals: bool = False) -> DataSpec:
    """Pick the course files, a public release, or the (generated on demand) procedural set for ``task``.

    ``data_dir`` is the ``--data_path`` folder (``"synthetic"`` means ``data="synthetic"``). A
    folder given with ``data="auto"`` must hold the course files or a release (see
    :mod:`a5_pointnet.datasets`). A release is converted once into the course layout under
    ``cache_dir``, keeping ``num_train`` / ``num_test`` shapes (a seeded random subset; None: all)
    and ``cloud_points`` points per cloud (None: all when the clouds are the same size, else
    2048), the first ones or a random subset (``point_pick``), with the normals when ``normals``.
    ``num_points`` and ``quick`` size the procedural set only.

    Raises:
        UserError: ``data="course"`` and the files are missing; a folder that holds neither the
            course files nor a release (or not the release ``data`` names); a release file that is
            missing or unreadable; ``task="seg"`` on ModelNet.
        ValueError: unknown task or data source (the flags' choices exclude both).
    """
    if task not in NUM_CLASSES:
        raise ValueError(f"task must be cls or seg, got {task!r}")  # --task has these choices
    if data not in DATA_CHOICES:
        raise ValueError(f"data must be one of {DATA_CHOICES}, got {data!r}")  # --data has these choices
    if data_dir == "synthetic":
        if data != "auto" and data != "synthetic":
            raise user_error("--data_path synthetic", f"the folder of the {data} data when --data {data} is given")
        data, data_dir = "synthetic", None
    if data in RELEASE_SOURCES and not data_dir:
        raise user_error(f"--data {data}", "--data_path <the release's folder> as well")
    if data in RELEASE_SOURCES or (data == "auto" and data_dir):
        folder = Path(data_dir)
        if data == "auto" and _course_present(folder, task):
            return DataSpec("course", str(folder))
        if not folder.is_dir():
            raise user_error(f"--data_path {folder}", "a folder with the course files or a release", "no such folder")
        release = find_release(folder, None if data == "auto" else data)
        if release is not None:
            return _release_spec(release, task, cache_dir, num_train, num_test, 0 if seed is None else seed, quiet,
                                 cloud_points, point_pick, normals)
        if data != "auto":
            raise user_error(f"--data_path {folder}", f"the {data} release: {RELEASE_HELP[data]}", "none of its files")
        if not ((folder / "cls").is_dir() or (folder / "seg").is_dir()):
            raise user_error(f"--data_path {folder}", f"the course layout ({task}/{{data,label}}_{{train,test}}.npy) "
                             f"or a release: {LAYOUT_HELP}", "none of them")
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


def _fingerprint(folder: Path) -> str:
    """A key of a release folder's state: its path and the names, sizes and times of its own files
    (name and list files, .h5 files) and of its ``train_test_split/`` lists."""
    h = hashlib.sha256(str(folder.resolve()).encode())
    for d in (folder, folder / "train_test_split"):
        if d.is_dir():
            for p in sorted(q for q in d.iterdir() if q.is_file()):
                st = p.stat()
                h.update(f"|{p.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def view_meta(root: str | Path) -> Optional[dict]:
    """The ``dataset.json`` of a converted release folder, or None (course and procedural data)."""
    p = Path(root) / VIEW_META
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise user_error(p, "the JSON written with the converted data", type(exc).__name__) from exc


def _release_spec(release, task: str, cache_dir: str, num_train: Optional[int], num_test: Optional[int], seed: int,
                  quiet: bool, cloud_points: Optional[int], point_pick: str, normals: bool) -> DataSpec:
    """Convert ``release`` into the course layout once (reused while the release's files are unchanged)."""
    sub = (f"{task}_p{cloud_points or 'all'}_{point_pick}_{num_train or 'all'}-{num_test or 'all'}_s{seed}"
           + ("_normals" if normals else ""))
    root = Path(cache_dir) / "a5_datasets" / f"{release.layout}_{_fingerprint(release.folder)}" / sub
    meta = view_meta(root) if _course_present(root, task) else None
    if meta is None:
        meta = write_view(release, task, root, cache_dir, cloud_points, point_pick, seed, num_train, num_test,
                          normals, quiet)
        if not quiet:
            print(f"converted {release.title} ({meta['num_train']} train, {meta['num_test']} test clouds) in "
                  f"{meta['convert_s']:.1f} s -> {root}", file=sys.stderr)
    return DataSpec(release.layout, str(root), meta["num_train"], meta["num_test"], meta["points_per_cloud"], seed,
                    origin=str(release.folder), num_classes=meta["num_classes"], num_parts=meta.get("num_parts"),
                    class_names=tuple(meta["class_names"]))


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
    meta = view_meta(root)
    own = None if meta is None else (meta.get("num_classes") if task == "cls" else meta.get("num_parts"))
    hi = (NUM_CLASSES[task] if own is None else own) - 1
    if labels.min() < 0 or labels.max() > hi:
        raise user_error(label_p, f"labels in 0..{hi}", f"{labels.min():g}..{labels.max():g}")
    return np.ascontiguousarray(data, dtype=np.float32), labels.astype(np.int64)  # writable (np.load reads into memory)


def load_categories(root: str | Path, split: str, limit: Optional[int] = None
                    ) -> Tuple[np.ndarray, List[List[int]], Tuple[str, ...]]:
    """``(category (N,) int64, parts of every category, category names)`` of a seg split (its
    first ``limit`` shapes; None: all).

    For ShapeNet-part, the category of every shape and the (contiguous) part ids of every
    category, as written with the converted data; for the course's and the procedural data (one
    kind of object, the chairs), category 0 for every shape and all parts in it.
    """
    meta = view_meta(root)
    if meta is None or "category_parts" not in meta:
        n = len(_load_array(Path(root) / "seg" / f"label_{split}.npy"))
        n = n if limit is None else min(n, limit)
        return np.zeros(n, dtype=np.int64), [list(range(NUM_CLASSES["seg"]))], ("chair",)
    path = Path(root) / "seg" / f"category_{split}.npy"
    cats = _load_array(path).astype(np.int64)
    if cats.ndim != 1 or (cats.size and (cats.min() < 0 or cats.max() >= len(meta["category_parts"]))):
        raise user_error(path, f"category ids 0..{len(meta['category_parts']) - 1}, one per shape",
                         f"shape {cats.shape}")
    return cats[:limit], [list(p) for p in meta["category_parts"]], tuple(meta["class_names"])


def load_normals(root: str | Path, task: str, split: str) -> Optional[np.ndarray]:
    """(N, P, 3) float32 normals of a converted release written with ``normals=True``, else None."""
    p = Path(root) / task / f"normal_{split}.npy"
    return np.ascontiguousarray(_load_array(p), dtype=np.float32) if p.is_file() else None
