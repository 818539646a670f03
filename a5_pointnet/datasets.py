"""Readers of the public point-cloud releases that PointNet-style papers train on.

Four layouts, each as its authors distribute it (the folder names are the archives' own):

``modelnet40_ply_hdf5_2048/`` (ModelNet40 as PointNet uses it)
    ``ply_data_train0.h5`` ... and ``ply_data_test0.h5`` ..., each with the datasets ``data``
    (N, 2048, 3) float32, ``label`` (N, 1) uint8 and optionally ``normal`` (N, 2048, 3);
    ``train_files.txt`` / ``test_files.txt`` list the .h5 files (one path a line, written relative
    to the authors' repository, so only the file name is relied on); ``shape_names.txt`` holds
    the class names, one a line, label ``k`` being line ``k``.
``modelnet40_normal_resampled/`` (ModelNet40 / ModelNet10 as PointNet++ uses it)
    one folder per class with ``<class>_0001.txt`` ...: 10000 lines ``x,y,z,nx,ny,nz``;
    ``modelnet40_shape_names.txt`` (class names, one a line), ``modelnet40_train.txt`` /
    ``modelnet40_test.txt`` (shape ids such as ``night_stand_0001``: the class is the id without
    its trailing ``_<number>``); the same three files named ``modelnet10_*`` select ModelNet10.
``shapenetcore_partanno_segmentation_benchmark_v0_normal/`` (ShapeNet-part, PointNet++'s copy)
    one folder per synset (``02691156/`` ...) of ``<token>.txt`` files, a line per point
    ``x y z nx ny nz part`` (the part a global id, 0..49 in the full set, as a float);
    ``synsetoffset2category.txt`` (lines ``Airplane<TAB>02691156``: category ``k`` is line ``k``);
    ``train_test_split/shuffled_{train,val,test}_file_list.json`` (JSON lists of
    ``shape_data/<synset>/<token>``).
``hdf5_data/`` (ShapeNet-part as PointNet uses it)
    ``ply_data_{train,val,test}<k>.h5`` with ``data`` (N, 2048, 3), ``label`` (N, 1) (the
    category) and ``pid`` (N, 2048) (global part ids); ``{train,val,test}_hdf5_file_list.txt``
    list them; ``all_object_categories.txt`` (lines ``Airplane 02691156``) names the categories,
    and ``overallid_to_catid_partid.json`` (entry ``i`` = ``[synset, part within category]`` of
    global part ``i``) tells which parts belong to which category.

Class and part counts come from these files: the number of names listed, and for the parts of a
category the release's table when it has one, else the part ids that its shapes carry. Part ids
are made contiguous over the categories present (the full set keeps its 0..49).

Every split is read into one :class:`Split` (all clouds one after another plus offsets, so clouds
of different sizes need no padding). The text layouts are parsed once (``numpy.loadtxt`` per file)
and cached as .npy files under ``<cache>/a5_datasets/parsed/``; :func:`write_view` then writes the
course's .npy layout (``<task>/{data,label}_{train,test}.npy``) that every A5 script reads.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from l3d.errors import user_error
from l3d.run import atomic_folder, atomic_write
from l3d.train import progress

__all__ = [
    "LAYOUTS", "RELEASE_FOLDERS", "Release", "Split", "find_release", "read_split", "pick_points",
    "write_view", "VIEW_META", "LAYOUT_HELP", "RELEASE_HELP", "category_parts_of", "describe",
]

#: the layouts :func:`find_release` recognises, and what ``--data`` calls them
LAYOUTS = ("modelnet40_h5", "modelnet40_txt", "modelnet10_txt", "shapenet_part_txt", "shapenet_part_h5")
#: the folder names of the archives, looked for inside the folder given
RELEASE_FOLDERS = ("modelnet40_ply_hdf5_2048", "modelnet40_normal_resampled",
                   "shapenetcore_partanno_segmentation_benchmark_v0_normal", "hdf5_data")
#: the file each converted folder carries beside ``<task>/``: what it was made from, names and counts
VIEW_META = "dataset.json"
#: what each release folder holds (its telling files), for error messages
RELEASE_HELP = {
    "modelnet40_h5": "modelnet40_ply_hdf5_2048 (shape_names.txt, train_files.txt, ply_data_*.h5)",
    "modelnet40_txt": "modelnet40_normal_resampled (modelnet40_shape_names.txt, modelnet40_train.txt, "
                      "<class>/<class>_0001.txt)",
    "modelnet10_txt": "modelnet40_normal_resampled with ModelNet10's lists (modelnet10_shape_names.txt, "
                      "modelnet10_train.txt)",
    "shapenet_part": "ShapeNet-part as shapenetcore_partanno_segmentation_benchmark_v0_normal "
                     "(synsetoffset2category.txt, train_test_split/) or hdf5_data (all_object_categories.txt, "
                     "train_hdf5_file_list.txt)",
}
LAYOUT_HELP = "; ".join(v for k, v in RELEASE_HELP.items() if k != "modelnet10_txt")
#: bump when the parse cache's contents change
PARSE_VERSION = 1
#: points per cloud of the view when the clouds of a release differ in size (as many as PointNet's HDF5 copies)
RAGGED_POINTS = 2048

_TITLES = {
    "modelnet40_h5": "ModelNet40 (modelnet40_ply_hdf5_2048)",
    "modelnet40_txt": "ModelNet40 (modelnet40_normal_resampled)",
    "modelnet10_txt": "ModelNet10 (modelnet40_normal_resampled)",
    "shapenet_part_txt": "ShapeNet-part (shapenetcore_partanno_segmentation_benchmark_v0_normal)",
    "shapenet_part_h5": "ShapeNet-part (hdf5_data)",
}


@dataclass
class Split:
    """One split of a release.

    Attributes:
        points: (T, 3) float32, the clouds one after another.
        offsets: (N + 1,) int64; cloud ``i`` is ``points[offsets[i]:offsets[i + 1]]``.
        labels: (N,) int64 class (ModelNet) or category (ShapeNet-part) index.
        normals: (T, 3) float32 or None.
        parts: (T,) int64 part ids as the release numbers them, or None (ModelNet).
    """

    points: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    normals: Optional[np.ndarray] = None
    parts: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def fixed(cls, points: np.ndarray, labels: np.ndarray, normals: Optional[np.ndarray] = None,
              parts: Optional[np.ndarray] = None) -> "Split":
        """From (N, P, 3) arrays (the HDF5 releases)."""
        n, p = points.shape[:2]
        flat = lambda a: None if a is None else a.reshape(n * p, *a.shape[2:])  # noqa: E731
        return cls(flat(points), np.arange(n + 1, dtype=np.int64) * p, labels, flat(normals), flat(parts))

    @classmethod
    def concat(cls, splits: Sequence["Split"]) -> "Split":
        if len(splits) == 1:
            return splits[0]
        starts = np.cumsum([0] + [len(s.points) for s in splits[:-1]])
        offsets = np.concatenate([[0]] + [s.offsets[1:] + o for s, o in zip(splits, starts)])
        cat = lambda name: (None if any(getattr(s, name) is None for s in splits)  # noqa: E731
                            else np.concatenate([getattr(s, name) for s in splits]))
        return cls(np.concatenate([s.points for s in splits]), offsets.astype(np.int64),
                   np.concatenate([s.labels for s in splits]), cat("normals"), cat("parts"))


@dataclass
class Release:
    """A release folder found on disk.

    Attributes:
        layout: one of :data:`LAYOUTS`.
        folder: the folder holding the release's files.
        class_names: class (ModelNet) or category (ShapeNet-part) names, label ``k`` = name ``k``.
        part_table: ShapeNet-part HDF5 only: the category index of every global part id (from
            ``overallid_to_catid_partid.json``), or None when the release has no such table.
    """

    layout: str
    folder: Path
    class_names: Tuple[str, ...]
    part_table: Optional[np.ndarray] = None

    @property
    def title(self) -> str:
        return _TITLES[self.layout]

    @property
    def has_parts(self) -> bool:
        return self.layout.startswith("shapenet_part")

    @property
    def splits(self) -> Tuple[str, ...]:
        return ("train", "val", "test") if self.has_parts else ("train", "test")


# ----------------------------------------------------------------------------------------------
# finding a release
# ----------------------------------------------------------------------------------------------
def _layouts_in(d: Path) -> List[str]:
    found = []
    if (d / "shape_names.txt").is_file() and ((d / "train_files.txt").is_file() or any(d.glob("ply_data_train*.h5"))):
        found.append("modelnet40_h5")
    for which in ("modelnet40", "modelnet10"):
        if (d / f"{which}_shape_names.txt").is_file() and (d / f"{which}_train.txt").is_file():
            found.append(f"{which}_txt")
    if (d / "synsetoffset2category.txt").is_file() and (d / "train_test_split").is_dir():
        found.append("shapenet_part_txt")
    if (d / "all_object_categories.txt").is_file() or (d / "train_hdf5_file_list.txt").is_file():
        found.append("shapenet_part_h5")
    return found


def find_release(folder: str | Path, want: Optional[str] = None) -> Optional[Release]:
    """The release in ``folder`` (or in one of its sub-folders named as the archives name them).

    ``want``: a layout of :data:`LAYOUTS`, ``"shapenet_part"`` (either ShapeNet-part layout) or
    None (the first found). Returns None when nothing matches; a release whose name files are
    unreadable is a :class:`UserError`.
    """
    folder = Path(folder)
    for d in [folder] + [folder / name for name in RELEASE_FOLDERS if (folder / name).is_dir()]:
        for layout in _layouts_in(d):
            if want is None or layout == want or (want == "shapenet_part" and layout.startswith("shapenet_part")):
                return _open(layout, d)
    return None


def _lines(path: Path) -> List[str]:
    if not path.is_file():
        raise user_error(path, "a list file of the release", "no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise user_error(path, "a readable text file", type(exc).__name__) from exc
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _name_pairs(path: Path) -> List[Tuple[str, str]]:
    """``Name synset`` lines (tab or space separated)."""
    pairs = []
    for k, ln in enumerate(_lines(path)):
        fields = ln.split()
        if len(fields) != 2:
            raise user_error(path, "lines '<Category> <synset id>'", f"line {k + 1}: {ln[:60]!r}")
        pairs.append((fields[0], fields[1]))
    if not pairs:
        raise user_error(path, "at least one category", "an empty file")
    return pairs


def _open(layout: str, d: Path) -> Release:
    if layout == "modelnet40_h5":
        names = _lines(d / "shape_names.txt")
    elif layout.endswith("_txt") and layout.startswith("modelnet"):
        names = _lines(d / f"{layout[:-4]}_shape_names.txt")
    elif layout == "shapenet_part_txt":
        names = [n for n, _ in _name_pairs(d / "synsetoffset2category.txt")]
    else:
        cats = _name_pairs(d / "all_object_categories.txt")
        names = [n for n, _ in cats]
        table = None
        tpath = d / "overallid_to_catid_partid.json"
        if tpath.is_file():
            synset_index = {s: k for k, (_, s) in enumerate(cats)}
            entries = _json(tpath)
            if not isinstance(entries, list) or not all(isinstance(e, list) and len(e) == 2 for e in entries):
                raise user_error(tpath, "a JSON list of [synset, part] pairs", f"{str(entries)[:60]}")
            unknown = [e[0] for e in entries if e[0] not in synset_index]
            if unknown:
                raise user_error(tpath, "synsets listed in all_object_categories.txt", f"{unknown[0]!r}")
            table = np.array([synset_index[e[0]] for e in entries], dtype=np.int64)
        if not names:
            raise user_error(d / "all_object_categories.txt", "at least one category", "none")
        return Release(layout, d, tuple(names), table)
    if not names:
        raise user_error(d, "class names in the release's name file", "an empty list")
    return Release(layout, d, tuple(names))


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise user_error(path, "a JSON file", f"unreadable JSON ({' '.join(str(exc).split())[:80]})") from exc


# ----------------------------------------------------------------------------------------------
# reading splits
# ----------------------------------------------------------------------------------------------
def _listed_file(listing: Path, entry: str) -> Path:
    """A file named in a list file: as written (relative to the list's folder), else by its name
    in that folder (the ModelNet40 lists carry the authors' ``data/...`` prefix)."""
    base = listing.parent
    for cand in (Path(entry), base / entry, base / Path(entry).name):
        if cand.is_file():
            return cand
    raise user_error(listing, f"files that exist; it lists {entry}", f"no {Path(entry).name} in {base}")


def _h5_files(release: Release, split: str) -> List[Path]:
    d = release.folder
    listing = d / (f"{split}_files.txt" if release.layout == "modelnet40_h5" else f"{split}_hdf5_file_list.txt")
    if listing.is_file():
        files = [_listed_file(listing, e) for e in _lines(listing)]
    else:  # no list file: the .h5 files of the split, in the order of their number
        files = sorted(d.glob(f"ply_data_{split}*.h5"), key=lambda p: [int(t) if t.isdigit() else t
                                                                         for t in re.split(r"(\d+)", p.name)])
    if not files:
        raise user_error(listing, f"the {split} split's .h5 files", f"neither the list file nor ply_data_{split}*.h5")
    return files


def _read_h5(path: Path, want_parts: bool):
    import h5py

    try:
        with h5py.File(path, "r") as f:
            keys = set(f.keys())
            need = {"data", "label"} | ({"pid"} if want_parts else set())
            if not need <= keys:
                raise user_error(path, f"HDF5 datasets {sorted(need)}", f"datasets {sorted(keys)}")
            data = np.asarray(f["data"][...])
            label = np.asarray(f["label"][...])
            normal = np.asarray(f["normal"][...]) if "normal" in keys else None
            pid = np.asarray(f["pid"][...]) if want_parts else None
    except OSError as exc:
        raise user_error(path, "a readable HDF5 file", f"a damaged file ({' '.join(str(exc).split())[:100]})") from exc
    if data.ndim != 3 or data.shape[2] != 3 or data.shape[0] == 0 or data.shape[1] == 0:
        raise user_error(path, "'data' of shape (N, P, 3) with N, P >= 1", f"shape {data.shape}")
    if label.size != data.shape[0]:
        raise user_error(path, f"'label' with one entry per cloud ({data.shape[0]})", f"shape {label.shape}")
    if normal is not None and normal.shape != data.shape:
        normal = None  # a normal set of another shape is not this release's: points only
    if pid is not None and pid.shape != data.shape[:2]:
        raise user_error(path, f"'pid' of shape {data.shape[:2]} (a part per point)", f"shape {pid.shape}")
    return data, label.reshape(-1), normal, pid


def _check_points(path, points: np.ndarray) -> None:
    if not np.isfinite(points).all():
        raise user_error(path, "finite coordinates", "NaN or infinity")


def _check_labels(path, labels: np.ndarray, n: int, what: str) -> np.ndarray:
    if labels.dtype.kind == "f":
        if not (np.isfinite(labels) & (labels == np.round(labels))).all():
            raise user_error(path, f"whole-number {what}", "fractions")
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        raise user_error(path, f"{what} in 0..{n - 1}", f"{labels.min():g}..{labels.max():g}")
    return labels.astype(np.int64)


def _read_h5_split(release: Release, split: str) -> Split:
    parts = []
    for path in _h5_files(release, split):
        data, label, normal, pid = _read_h5(path, release.has_parts)
        _check_points(path, data)
        label = _check_labels(path, label, len(release.class_names), "labels")
        if pid is not None:
            top = len(release.part_table) if release.part_table is not None else np.iinfo(np.int64).max
            pid = _check_labels(path, pid, top, "part ids")
        parts.append(Split.fixed(data.astype(np.float32), label,
                                 None if normal is None else normal.astype(np.float32), pid))
    return Split.concat(parts)


def _text_entries(release: Release, split: str) -> Tuple[Path, List[Tuple[Path, int]]]:
    """(list file, [(cloud file, label)]) of a text release's split."""
    d = release.folder
    if release.layout.startswith("modelnet"):
        listing = d / f"{release.layout[:-4]}_{split}.txt"
        index = {n: k for k, n in enumerate(release.class_names)}
        out = []
        for shape_id in _lines(listing):
            cls = shape_id.rsplit("_", 1)[0]
            if cls not in index:
                raise user_error(listing, "shape ids '<class>_<number>' of the listed classes", f"{shape_id!r}")
            out.append((d / cls / f"{shape_id}.txt", index[cls]))
        return listing, out
    listing = d / "train_test_split" / f"shuffled_{split}_file_list.json"
    if not listing.is_file():
        raise user_error(listing, f"the {split} split's file list", "no such file")
    entries = _json(listing)
    if not isinstance(entries, list):
        raise user_error(listing, "a JSON list of shape_data/<synset>/<token>", type(entries).__name__)
    synsets = {s: k for k, (_, s) in enumerate(_name_pairs(d / "synsetoffset2category.txt"))}
    out, skipped = [], 0
    for e in entries:
        bits = str(e).split("/")
        if len(bits) < 2:
            raise user_error(listing, "entries shape_data/<synset>/<token>", f"{str(e)[:60]!r}")
        if bits[-2] not in synsets:
            skipped += 1  # a category left out of synsetoffset2category.txt: a subset on purpose
            continue
        out.append((d / bits[-2] / f"{bits[-1]}.txt", synsets[bits[-2]]))
    if skipped:
        print(f"note: {listing.name}: {skipped} shapes of categories not in synsetoffset2category.txt left out",
              file=sys.stderr)
    return listing, out


def _parse_text_split(release: Release, split: str, quiet: bool) -> Split:
    listing, entries = _text_entries(release, split)
    if not entries:
        raise user_error(listing, "at least one shape", "none")
    shapenet = release.has_parts
    arrays = []
    for path, _ in progress(entries, f"parsing {release.layout} {split}", disable=True if quiet else None):
        if not path.is_file():
            raise user_error(listing, f"files that exist; it lists {path.stem}", f"no {path}")
        try:
            a = np.loadtxt(path, dtype=np.float32, delimiter=None if shapenet else ",", ndmin=2)
        except ValueError as exc:
            raise user_error(path, "numbers, " + ("'x y z nx ny nz part'" if shapenet else "'x,y,z,nx,ny,nz'")
                             + " per line", f"unparsable text ({' '.join(str(exc).split())[:80]})") from exc
        cols = 7 if shapenet else 6
        if a.shape[0] == 0 or a.shape[1] not in ((7,) if shapenet else (3, 6)):
            raise user_error(path, f"{cols} numbers per line" + ("" if shapenet else " (or 3)"), f"shape {a.shape}")
        if not np.isfinite(a).all():
            raise user_error(path, "finite numbers", "NaN or infinity")
        arrays.append(a)
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    allp = np.concatenate(arrays)
    del arrays
    labels = np.array([lab for _, lab in entries], dtype=np.int64)
    parts = None
    if shapenet:
        parts = _check_labels(listing, allp[:, 6], np.iinfo(np.int64).max, "part ids (7th column)")
    return Split(allp[:, :3].astype(np.float32), np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), labels,
                 allp[:, 3:6].astype(np.float32) if allp.shape[1] >= 6 else None, parts)


def _cache_key(release: Release, split: str) -> str:
    listing, entries = _text_entries(release, split)
    h = hashlib.sha256()
    h.update(f"v{PARSE_VERSION}|{release.layout}|{release.folder.resolve()}|{split}|{len(entries)}".encode())
    st = listing.stat()
    h.update(f"|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


_SPLIT_FIELDS = ("points", "offsets", "labels", "normals", "parts")


def read_split(release: Release, split: str, cache_dir: Optional[str | Path] = None, quiet: bool = False) -> Split:
    """One split (``train``, ``test``, ShapeNet-part also ``val``) of a release.

    Text layouts are parsed once and cached under ``<cache_dir>/a5_datasets/parsed/`` (keyed by
    the folder, the split and its list file's size and time); HDF5 files are read directly.
    """
    if split not in release.splits:
        raise ValueError(f"{release.layout} has the splits {release.splits}, not {split!r}")
    if release.layout.endswith("_h5"):
        return _read_h5_split(release, split)
    if cache_dir is None:
        return _parse_text_split(release, split, quiet)
    folder = Path(cache_dir) / "a5_datasets" / "parsed" / f"{release.layout}_{split}_{_cache_key(release, split)}"
    if (folder / "done.json").is_file():
        return Split(*[np.load(folder / f"{k}.npy", mmap_mode="r") if (folder / f"{k}.npy").is_file() else None
                       for k in _SPLIT_FIELDS])  # mapped: only what the view takes is read
    t = time.perf_counter()
    sp = _parse_text_split(release, split, quiet)
    with atomic_folder(folder) as tmp:
        for k in _SPLIT_FIELDS:
            if getattr(sp, k) is not None:
                np.save(tmp / f"{k}.npy", getattr(sp, k))
        atomic_write(tmp / "done.json", json.dumps({"source": str(release.folder), "split": split}))
    if not quiet:
        print(f"parsed {len(sp)} {release.layout} {split} clouds in {time.perf_counter() - t:.1f} s -> {folder}",
              file=sys.stderr)
    return sp


# ----------------------------------------------------------------------------------------------
# the course layout
# ----------------------------------------------------------------------------------------------
def pick_points(offsets: np.ndarray, count: int, how: str = "first", seed: int = 0) -> np.ndarray:
    """(N, count) indices into the concatenated points: ``count`` points of every cloud.

    ``how="first"``: the first ``count`` points (as the releases' own loaders take them);
    ``"random"``: a seeded random subset. A cloud with fewer points repeats them (cycling through
    the same order), so every point is used before any is used twice.
    """
    if how not in ("first", "random"):
        raise ValueError(f"how must be 'first' or 'random', got {how!r}")
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    if count < 1 or (lengths < 1).any():
        raise ValueError("count and every cloud's length must be positive")
    total = int(offsets[-1])
    if how == "first":
        order = np.arange(total)
    else:  # a random order within each cloud: sort by (cloud, random key)
        cloud = np.repeat(np.arange(len(lengths)), lengths)
        order = np.lexsort((np.random.default_rng(seed).random(total), cloud))
    j = np.arange(count)[None, :] % lengths[:, None]
    return order[offsets[:-1, None] + j]


def category_parts_of(release: Release, splits: Sequence[Split]) -> List[np.ndarray]:
    """The global part ids of every category: the release's table when it has one, else the ids
    its shapes carry (over all ``splits``)."""
    c = len(release.class_names)
    if release.part_table is not None:
        return [np.flatnonzero(release.part_table == k) for k in range(c)]
    cat = np.concatenate([np.repeat(s.labels, s.lengths) for s in splits])
    part = np.concatenate([s.parts for s in splits])
    top = int(part.max()) + 1
    seen = np.zeros((c, top), dtype=bool)
    seen[cat, part] = True
    return [np.flatnonzero(row) for row in seen]


def write_view(release: Release, task: str, folder: Path, cache_dir: Optional[str | Path] = None,
               cloud_points: Optional[int] = None, how: str = "first", seed: int = 0,
               num_train: Optional[int] = None, num_test: Optional[int] = None, normals: bool = False,
               quiet: bool = False) -> dict:
    """Write ``folder/<task>/{data,label}_{train,test}.npy`` (the course layout) from a release,
    plus :data:`VIEW_META`; returns that metadata.

    ``train`` is the release's train split (with ``val`` for ShapeNet-part, as its benchmarks
    train on train + val); ``num_train`` / ``num_test`` keep a seeded random subset of that many
    shapes; ``cloud_points`` points per cloud (None: all of them when every cloud has the same
    number, else :data:`RAGGED_POINTS`), the first ones or a random subset (``how``). For
    ``seg``, labels are part ids made contiguous over the categories present, and
    ``seg/category_{split}.npy`` holds every shape's category; ``normals`` adds
    ``<task>/normal_{split}.npy`` when the release has normals.

    Raises:
        UserError: ``task="seg"`` for a release without part labels, or a bad file of the release.
    """
    if task == "seg" and not release.has_parts:
        raise user_error(f"--task seg with {release.title}", "a data set with part labels (ShapeNet-part)",
                         "object classes only", "use --task cls")
    t0 = time.perf_counter()
    raw = {s: read_split(release, s, cache_dir, quiet) for s in release.splits}
    use = {"train": Split.concat([raw[s] for s in release.splits if s != "test"]), "test": raw["test"]}
    meta = {"layout": release.layout, "title": release.title, "origin": str(release.folder), "task": task,
            "num_classes": len(release.class_names), "class_names": list(release.class_names),
            "train_from": "+".join(s for s in release.splits if s != "test"), "how": how}
    lut = None
    if release.has_parts:
        cparts = category_parts_of(release, list(raw.values()))
        global_ids = np.unique(np.concatenate(cparts)) if any(len(p) for p in cparts) else np.zeros(0, np.int64)
        lut = np.full(int(global_ids.max()) + 1 if len(global_ids) else 1, -1, dtype=np.int64)
        lut[global_ids] = np.arange(len(global_ids))
        allowed = np.zeros((len(cparts), len(global_ids)), dtype=bool)
        for k, p in enumerate(cparts):
            allowed[k, lut[p]] = True
        for s, sp in raw.items():  # every point's part must belong to its shape's category
            cat = np.repeat(sp.labels, sp.lengths)
            ok = (sp.parts < len(lut)) & (lut[np.minimum(sp.parts, len(lut) - 1)] >= 0)
            ok[ok] = allowed[cat[ok], lut[sp.parts[ok]]]
            if not ok.all():
                i = int(np.flatnonzero(~ok)[0])
                raise user_error(f"{release.folder} ({s} split)", "part ids of the shape's own category",
                                 f"part {int(sp.parts[i])} in a {release.class_names[cat[i]]} shape")
        meta.update(num_parts=int(len(global_ids)), part_ids=global_ids.tolist(),
                    category_parts=[lut[p].tolist() for p in cparts])
    lengths = np.concatenate([use["train"].lengths, use["test"].lengths])
    if cloud_points is None:
        cloud_points = int(lengths[0]) if (lengths == lengths[0]).all() else RAGGED_POINTS
    meta.update(points_per_cloud=int(cloud_points), shortest_cloud=int(lengths.min()))
    rng = np.random.default_rng(seed)
    with atomic_folder(folder) as tmp:
        (tmp / task).mkdir()
        for k, (split, limit) in enumerate((("train", num_train), ("test", num_test))):
            sp = use[split]
            keep = np.arange(len(sp))
            if limit is not None and limit < len(sp):
                keep = np.sort(rng.choice(len(sp), size=limit, replace=False))
            idx = _pick_kept(sp, keep, cloud_points, how, seed + 1 + k)  # (n, cloud_points)
            np.save(tmp / task / f"data_{split}.npy", sp.points[idx])
            if task == "cls":
                np.save(tmp / task / f"label_{split}.npy", sp.labels[keep])
            else:
                np.save(tmp / task / f"label_{split}.npy", lut[sp.parts[idx]])
                np.save(tmp / task / f"category_{split}.npy", sp.labels[keep])
            if normals and sp.normals is not None:
                np.save(tmp / task / f"normal_{split}.npy", sp.normals[idx])
            meta[f"num_{split}"] = int(len(keep))
        meta["normals"] = bool(normals and use["test"].normals is not None)
        meta["convert_s"] = round(time.perf_counter() - t0, 3)
        atomic_write(tmp / VIEW_META, json.dumps(meta, indent=1))
    return meta


def _pick_kept(sp: Split, keep: np.ndarray, count: int, how: str, seed: int) -> np.ndarray:
    """:func:`pick_points` over the kept clouds of ``sp`` only, as indices into ``sp.points``."""
    lengths = sp.lengths[keep]
    local = pick_points(np.concatenate([[0], np.cumsum(lengths)]), count, how, seed)  # into the kept clouds
    owner = np.repeat(np.arange(len(keep)), count).reshape(len(keep), count)
    start_local = np.concatenate([[0], np.cumsum(lengths)])[:-1]
    return sp.offsets[keep][owner] + (local - start_local[owner])


def describe(meta: Dict) -> str:
    """One line for metrics.json: what the converted data are and where they came from."""
    counts = f"{meta['num_classes']} classes"
    if "num_parts" in meta:
        counts = f"{meta['num_classes']} categories, {meta['num_parts']} parts"
    return f"{meta['title']} from {meta['origin']} ({counts}, {meta['points_per_cloud']} points per cloud)"
