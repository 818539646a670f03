"""The R2N2 / ShapeNet single-view data set: layout, loader, and the procedural stand-in.

Layout of a data set root (the real one is ``<data root>/a2``; the stand-in is generated into
``output/.cache/a2_synthetic``, never into the data root, which may hold read-only course files)::

    r2n2/ShapeNetRendering/<synset>/<model>/rendering/{00..23}.png   137 x 137 RGBA renders
    r2n2/ShapeNetRendering/<synset>/<model>/rendering/rendering_metadata.txt
                                   24 lines "azim elev yaw dist_ratio fov" (one per view)
    r2n2/ShapeNetRendering/<synset>/<model>/rendering/feats.npy   optional (24, 512) ResNet-18
                                   features per view (NaN rows: not computed)
    r2n2/ShapeNetVoxels/<synset>/<model>/model.binvox               solid voxels
    shapenet/<synset>/<model>/model.obj                             the mesh
    split_<name>.json             {split: {synset: {model_id: [view indices]}}}

A sample (:class:`R2N2`) is one (model, view): ``verts`` (V, 3), ``faces`` (F, 3), ``images``
(137, 137, 3) in [0, 1] (alpha dropped), ``R`` (3, 3), ``T`` (3,), ``K`` (4, 4) (the PyTorch3D
camera of the view: ``X_view = X_world @ R + T``), ``voxels`` (1, 32, 32, 32) (binvox coordinates
aligned to the mesh bounding box, voxelised into [-0.5, 0.5]^3 with layout [Z, Y, X], see
:mod:`a2_single_view.voxelize`), and ``feats`` (512,) when asked for.

Cameras from the metadata follow R2N2's Blender setup: the camera sits at distance
``dist_ratio * 1.75`` with the given azimuth and elevation (degrees), Blender's y-up to z-up
turn of the OBJ is folded in, and ShapeNet's frame is turned into PyTorch3D's by flipping x
and z; K is Blender's projection matrix (focal 2.1875, i.e. a 49.1-degree field of view).

The stand-in (:func:`ensure_synthetic`) writes procedural chairs, cars and airplanes
(:mod:`a2_single_view.shapes`) in exactly this layout, deterministically by seed, once per
model (files are written atomically; a later call only adds what is missing), so the same
loader reads both.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from l3d.data import data_root
from l3d.io import load_obj, save_obj
from l3d.media import load_image, save_image
from l3d.errors import UserError, user_error
from l3d.run import atomic_path

from .binvox import read_binvox, binvox_coords, write_binvox
from .voxelize import align_bbox, coords_to_grid, coverage_pool, to_voxel_frame

SYNSETS: Dict[str, str] = {"chair": "03001627", "car": "02958343", "airplane": "02691156"}
CLASS_OF: Dict[str, str] = {v: k for k, v in SYNSETS.items()}
CLASS_SETS: Dict[str, Tuple[str, ...]] = {"chair": ("chair",), "3c": ("chair", "car", "airplane")}
SPLITS = ("train", "val", "test")
IMAGE_SIZE = 137
VOXEL_SIZE = 32
NUM_VIEWS = 24
SUPERSAMPLE = 4  # binvox cells of the stand-in: solid when >= 1/4 of 4^3 samples are inside
MAX_CAMERA_DISTANCE = 1.75
BLENDER_FOCAL = 2.1875
BLENDER_K = torch.tensor([
    [BLENDER_FOCAL, 0.0, 0.0, 0.0],
    [0.0, BLENDER_FOCAL, 0.0, 0.0],
    [0.0, 0.0, -1.002002, -0.2002002],
    [0.0, 0.0, 1.0, 0.0],
])
BLENDER_FOV = 2.0 * math.degrees(math.atan(1.0 / BLENDER_FOCAL))


# ----------------------------------------------------------------------------------------------
# cameras
# ----------------------------------------------------------------------------------------------
def r2n2_cameras(azim: torch.Tensor, elev: torch.Tensor, dist_ratio: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """PyTorch3D R, T of R2N2 views.

    Args:
        azim, elev: (V,) degrees; dist_ratio: (V,) camera distance / 1.75.
    Returns:
        R (V, 3, 3), T (V, 3) with ``X_view = X_world @ R + T`` (mesh frame, +y up).
    """
    az, el = torch.deg2rad(-azim.double()), torch.deg2rad(-elev.double())
    d = dist_ratio.double() * MAX_CAMERA_DISTANCE
    ca, sa, ce, se = torch.cos(az), torch.sin(az), torch.cos(el), torch.sin(el)
    z = torch.zeros_like(az)
    # world -> object rotation (azimuth about z, then elevation), Blender's z-up frame
    r_wo = torch.stack([ca * ce, sa * ce, -se, -sa, ca, z, ca * se, sa * se, ce], -1).reshape(-1, 3, 3)
    r_oc = r_wo.new_tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # object -> camera axes
    r_wc = r_oc @ r_wo  # (V, 3, 3) column-vector world -> camera
    t_wc = -(r_oc @ torch.stack([d, z, z], -1)[..., None])[..., 0]  # (V, 3): camera at (d, 0, 0)
    y_up_to_z_up = r_wo.new_tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    r_wc = r_wc @ y_up_to_z_up  # the OBJ's y-up frame turned into Blender's z-up one
    flip = r_wo.new_tensor([-1.0, 1.0, -1.0])  # ShapeNet/Blender camera -> PyTorch3D (x, z flipped)
    R = r_wc.transpose(1, 2) * flip  # row-vector convention
    T = t_wc * flip
    return R.float(), T.float()


def read_metadata(path: Path) -> np.ndarray:
    """(V, 5) float array of a ``rendering_metadata.txt`` (azim, elev, yaw, dist_ratio, fov)."""
    expected = "lines of 5 numbers 'azim elev yaw dist_ratio fov'"
    try:
        rows = [line.split() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise user_error(path, expected, "binary data") from None
    try:
        arr = np.asarray(rows, dtype=np.float64)
    except ValueError:
        bad = next((r for r in rows if len(r) != len(rows[0]) or not all(_is_number(x) for x in r)), rows[0])
        raise user_error(path, expected, f"the line {' '.join(bad)[:60]!r}") from None
    if arr.ndim != 2 or arr.shape[1] < 4:
        raise user_error(path, expected, "no lines" if arr.size == 0 else f"{arr.shape[1]} numbers a line")
    if not np.isfinite(arr).all():
        raise user_error(path, expected, "non-finite values")
    return arr


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------------------------
# paths and splits
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRef:
    synset: str
    model_id: str
    views: Tuple[int, ...]

    @property
    def cls(self) -> str:
        return CLASS_OF.get(self.synset, self.synset)


def rendering_dir(root: Path, synset: str, model_id: str) -> Path:
    return Path(root) / "r2n2" / "ShapeNetRendering" / synset / model_id / "rendering"


def binvox_path(root: Path, synset: str, model_id: str) -> Path:
    return Path(root) / "r2n2" / "ShapeNetVoxels" / synset / model_id / "model.binvox"


def obj_path(root: Path, synset: str, model_id: str) -> Path:
    return Path(root) / "shapenet" / synset / model_id / "model.obj"


def read_split(split_file: Path, split: str, classes: Sequence[str]) -> List[ModelRef]:
    """The models (with their view indices) of one split, restricted to ``classes``."""
    table = read_split_table(split_file)
    if split not in table:
        raise EmptySplit(f"{split_file}: expected a split {split!r}, found only {sorted(table)}")
    wanted = [SYNSETS.get(c, c) for c in classes]
    refs = []
    for synset in wanted:
        for model_id, views in sorted(table[split].get(synset, {}).items()):
            refs.append(ModelRef(synset, model_id, tuple(views)))
    if not refs:
        raise EmptySplit(f"{split_file}: expected models of classes {list(classes)} in split {split!r}, found none")
    return refs


class EmptySplit(UserError):
    """A split file that is valid but lists no model of the asked split or classes."""


SPLIT_SHAPE = "JSON {split: {synset: {model_id: [view indices]}}}"


def read_split_table(split_file: Path) -> Dict[str, Dict[str, Dict[str, List[int]]]]:
    """The content of a split file, checked: ``{split: {synset: {model_id: [view indices >= 0]}}}``."""
    split_file = Path(split_file)
    if not split_file.is_file():
        raise user_error(split_file, "a split file (" + SPLIT_SHAPE + ")", "no such file")
    try:
        table = json.loads(split_file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise user_error(split_file, SPLIT_SHAPE, "binary data") from None
    except json.JSONDecodeError as e:
        raise user_error(split_file, SPLIT_SHAPE, f"invalid JSON ({e.msg}, line {e.lineno})") from None
    ok = isinstance(table, dict) and all(
        isinstance(models, dict) and all(
            isinstance(m, dict) and all(
                isinstance(views, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                for v in views)
                for views in m.values())
            for m in models.values())
        for models in table.values())
    if not ok:
        raise user_error(split_file, SPLIT_SHAPE, f"a {type(table).__name__} of another shape")
    return table


# ----------------------------------------------------------------------------------------------
# the data set
# ----------------------------------------------------------------------------------------------
def load_voxels(path: Path, verts: torch.Tensor, size: int = VOXEL_SIZE) -> torch.Tensor:
    """(1, D, D, D) [Z, Y, X] grid of a binvox file aligned to the mesh vertices (V, 3)."""
    coords = binvox_coords(read_binvox(path))  # (P, 3) index coordinates (x, y, z)
    if coords.shape[0] == 0:
        raise user_error(path, "a voxel grid with filled voxels", "an empty grid")
    return coords_to_grid(align_bbox(coords, verts), size)[None]


class R2N2(torch.utils.data.Dataset):
    """(model, view) samples of an R2N2-layout data set (see the module docstring).

    Args:
        root: the data set root.
        split_file: the split JSON.
        split: "train", "val" or "test".
        classes: class names ("chair", "car", "airplane") or synset ids.
        views_per_model: use only the first k listed views of every model (None: all).
        return_voxels: load the voxel grid.
        inputs: "images" (the 137 x 137 renders), "feats" (rows of ``feats.npy``) or "none".
        cache_models: how many models' meshes and voxels to keep in memory.
    """

    def __init__(self, root: Path, split_file: Path, split: str = "train", classes: Sequence[str] = ("chair",),
                 views_per_model: Optional[int] = None, return_voxels: bool = True, inputs: str = "images",
                 cache_models: int = 4096):
        if inputs not in ("images", "feats", "none"):
            raise ValueError(f"inputs must be images, feats or none, got {inputs!r}")
        self.root = Path(root)
        self.split = split
        self.models = read_split(split_file, split, classes)
        if views_per_model is not None:
            self.models = [ModelRef(m.synset, m.model_id, m.views[:views_per_model]) for m in self.models]
        self.items = [(i, v) for i, m in enumerate(self.models) for v in m.views]  # (model, view)
        self.return_voxels = return_voxels
        self.inputs = inputs
        self.synsets = sorted({m.synset for m in self.models})
        self._model = functools.lru_cache(maxsize=cache_models)(self._load_model)
        self._feats: Dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _load_model(self, i: int) -> dict:
        m = self.models[i]
        path = obj_path(self.root, m.synset, m.model_id)
        mesh = load_obj(path, load_textures=False)
        verts, faces = mesh.verts_packed(), mesh.faces_packed()
        if faces.shape[0] == 0:
            raise user_error(path, "a mesh with faces", "no faces")
        out = {"verts": verts, "faces": faces}
        meta_path = rendering_dir(self.root, m.synset, m.model_id) / "rendering_metadata.txt"
        meta = read_metadata(meta_path)
        if m.views and meta.shape[0] <= max(m.views):
            raise user_error(meta_path, f"a line for each view up to {max(m.views)} (the split lists it)",
                             f"{meta.shape[0]} lines")
        meta_t = torch.from_numpy(meta)
        out["R"], out["T"] = r2n2_cameras(meta_t[:, 0], meta_t[:, 1], meta_t[:, 3])
        if self.return_voxels:
            out["voxels"] = load_voxels(binvox_path(self.root, m.synset, m.model_id), verts)
        return out

    def features(self, i: int) -> np.ndarray:
        """(views, 512) features of model i (``feats.npy``); raises when missing."""
        if i not in self._feats:
            m = self.models[i]
            path = rendering_dir(self.root, m.synset, m.model_id) / "feats.npy"
            if not path.is_file():
                raise user_error(path, "precomputed features", "no such file",
                                 "run `python -m a2_single_view.features` first")
            arr = load_features(path)
            if arr is None:
                raise user_error(path, f"a (views, {FEATURE_DIM}) float array (numpy .npy)", "a damaged file",
                                 "delete it and run `python -m a2_single_view.features`")
            self._feats[i] = arr
        return self._feats[i]

    def __getitem__(self, idx: int) -> dict:
        i, view = self.items[idx]
        m = self.models[i]
        model = self._model(i)
        sample = {
            "verts": model["verts"], "faces": model["faces"],
            "R": model["R"][view], "T": model["T"][view], "K": BLENDER_K.clone(),
            "synset": m.synset, "model_id": m.model_id, "view": view, "index": idx,
        }
        if self.return_voxels:
            sample["voxels"] = model["voxels"]
        if self.inputs == "feats":
            feats = self.features(i)
            if view >= len(feats) or not np.isfinite(feats[view]).all():
                raise user_error(rendering_dir(self.root, m.synset, m.model_id) / "feats.npy",
                                 f"finite features of view {view}", "none (NaN)",
                                 "run `python -m a2_single_view.features`")
            sample["feats"] = torch.from_numpy(np.asarray(feats[view], dtype=np.float32))
        elif self.inputs == "images":
            sample["images"] = self.image(idx)
        return sample

    def image(self, idx: int) -> torch.Tensor:
        """(137, 137, 3) input image of item idx (also when the data set returns features)."""
        i, view = self.items[idx]
        m = self.models[i]
        img = load_image(rendering_dir(self.root, m.synset, m.model_id) / f"{view:02d}.png")
        if img.shape[-1] == 1:
            img = img.expand(-1, -1, 3)
        return img[..., :3].contiguous()


def collate(samples: List[dict]) -> dict:
    """Stack tensors of equal shape; meshes stay lists (``verts``, ``faces``); strings -> lists."""
    out = {}
    for k in samples[0]:
        vals = [s[k] for s in samples]
        if k in ("verts", "faces") or not torch.is_tensor(vals[0]):
            out[k] = vals
        else:
            out[k] = torch.stack(vals)
    return out


# ----------------------------------------------------------------------------------------------
# choosing the data
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """Sizes of a procedural stand-in: models per class and split, views per model."""

    name: str
    counts: Dict[str, Tuple[int, int, int]]  # class -> (train, val, test)
    views: int


PRESETS: Dict[str, Preset] = {
    # tests and quick runs: seconds to generate
    "tiny": Preset("tiny", {"chair": (8, 1, 4), "car": (3, 0, 1), "airplane": (3, 0, 1)}, views=2),
    # --quick runs and the demo: enough distinct shapes for a model to generalise to held-out
    # ones, small enough to generate and encode in seconds
    "quick": Preset("quick", {"chair": (384, 0, 48), "car": (24, 0, 8), "airplane": (24, 0, 8)}, views=1),
    # quality runs and the defaults of full-size runs
    "standard": Preset("standard", {"chair": (480, 40, 100), "car": (160, 0, 50), "airplane": (160, 0, 50)}, views=6),
}


def synthetic_root() -> Path:
    """``output/.cache/a2_synthetic``, where the stand-in is generated and cached (as the other
    assignments cache theirs: generated data stays out of the data root)."""
    return Path("output") / ".cache" / "a2_synthetic"


def real_root() -> Path:
    return data_root() / "a2"


@dataclass(frozen=True)
class DataChoice:
    root: Path
    split_file: Path
    synthetic: bool


def choose_data(data: str = "auto", data_root_dir: Optional[str] = None, split_file: Optional[str] = None,
                preset: str = "standard", seed: int = 0, verbose: bool = True) -> DataChoice:
    """Resolve the ``--data``/``--data_root``/``--split_file``/``--preset`` flags.

    ``auto``: the real set when its split file exists (``--split_file``, default
    ``<root>/split_r2n2.json`` with root ``--data_root`` or ``<data root>/a2``), else the
    procedural stand-in (one line on stderr says so). ``synthetic``: the stand-in, generated on
    first use under ``--data_root`` or ``output/.cache/a2_synthetic`` (the latter when the former
    is not writable). ``real``: the real set or an error.
    """
    if data not in ("auto", "real", "synthetic"):
        raise user_error("--data", "auto, real or synthetic", repr(data))
    if data != "synthetic":
        root = Path(data_root_dir) if data_root_dir else real_root()
        split = Path(split_file) if split_file else root / "split_r2n2.json"
        if split.is_file():
            return DataChoice(root, split, False)
        if data == "real":
            raise user_error(split, "the R2N2 split file", "no such file", "see the data layout in a2_single_view/data.py")
        if verbose:
            print(f"{split} not found; using the built-in procedural chairs/cars/airplanes "
                  f"(preset {preset!r})", file=sys.stderr)
    root = Path(data_root_dir) if data_root_dir else synthetic_root()
    if not writable(root) and not (root / f"split_{preset}_v{GENERATOR_VERSION}s{seed}.json").is_file():
        fallback = Path("output") / ".cache" / "a2_synthetic"
        if verbose:
            print(f"{root} is not writable; caching the procedural data in {fallback}", file=sys.stderr)
        root = fallback
    split = ensure_synthetic(root, preset, seed, verbose=verbose)
    return DataChoice(root, Path(split_file) if split_file else split, True)


# ----------------------------------------------------------------------------------------------
# the procedural stand-in
# ----------------------------------------------------------------------------------------------
GENERATOR_VERSION = 2  # bump when the procedural shapes or renders change: new model ids, new cache entries


def _model_id(split: str, index: int, seed: int) -> str:
    return f"v{GENERATOR_VERSION}s{seed}-{split}-{index:05d}"


def _model_rng(seed: int, cls: str, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, list(SYNSETS).index(cls), SPLITS.index(split), index])


def _view_metadata(rng: np.random.Generator) -> np.ndarray:
    """(24, 5) R2N2-like views: azimuth U[0, 360), elevation U[20, 35], yaw 0,
    distance ratio U[0.65, 0.85], fov 25."""
    n = NUM_VIEWS
    return np.stack([rng.uniform(0, 360, n), rng.uniform(20, 35, n), np.zeros(n),
                     rng.uniform(0.65, 0.85, n), np.full(n, 25.0)], 1)


def _model_complete(root: Path, synset: str, model_id: str, views: Sequence[int]) -> bool:
    rd = rendering_dir(root, synset, model_id)
    return (obj_path(root, synset, model_id).is_file() and binvox_path(root, synset, model_id).is_file()
            and (rd / "rendering_metadata.txt").is_file() and all((rd / f"{v:02d}.png").is_file() for v in views))


def _write_geometry(root: Path, cls: str, model_id: str, rng: np.random.Generator) -> dict:
    """Make one shape, write its OBJ, binvox and metadata; return what rendering needs."""
    from .shapes import make_shape, occupancy_grid, random_palette, turned_parts

    synset = SYNSETS[cls]
    parts, mesh = make_shape(cls, rng)
    palette = random_palette(rng)
    meta = _view_metadata(rng)
    verts = torch.from_numpy(mesh.verts)
    faces = torch.from_numpy(mesh.faces)
    op = obj_path(root, synset, model_id)
    if not op.is_file():
        save_obj(op, verts, faces)
    bp = binvox_path(root, synset, model_id)
    if not bp.is_file():
        # binvox in the voxel frame (mesh turned 180 degrees about y), a cube around the shape
        vv = to_voxel_frame(verts.double())
        lo, hi = vv.amin(0), vv.amax(0)
        side = float((hi - lo).max()) * 1.02
        corner = (lo + hi) / 2 - side / 2
        # the voxel frame is the mesh frame turned about y: test the parts turned back
        fine = occupancy_grid(turned_parts(parts), VOXEL_SIZE * SUPERSAMPLE, corner.numpy(), side)
        occ = coverage_pool(torch.from_numpy(fine), SUPERSAMPLE)
        write_binvox(bp, occ, corner.tolist(), side)
    rd = rendering_dir(root, synset, model_id)
    mp = rd / "rendering_metadata.txt"
    if not mp.is_file():
        rd.mkdir(parents=True, exist_ok=True)
        with atomic_path(mp) as tmp:
            Path(tmp).write_text("".join(f"{a:.6f} {e:.6f} {y:g} {d:.6f} {f:g}\n" for a, e, y, d, f in meta))
    colours = torch.from_numpy(palette[np.minimum(mesh.slots, len(palette) - 1)])
    return {"verts": verts, "faces": faces, "colours": colours, "meta": meta, "dir": rd}


def render_views(models: List[dict], views: Sequence[int], batch_size: int = 48) -> List[torch.Tensor]:
    """RGBA renders (len(views), 137, 137, 4) of each model, all models batched together."""
    from l3d.cameras import FoVPerspectiveCameras
    from l3d.shading import PointLights, render_mesh
    from l3d.structures import Meshes, TexturesVertex

    vl, fl, cl, Rs, Ts = [], [], [], [], []
    for m in models:
        meta = torch.from_numpy(m["meta"][list(views)])
        R, T = r2n2_cameras(meta[:, 0], meta[:, 1], meta[:, 3])
        for k in range(len(views)):
            vl.append(m["verts"])
            fl.append(m["faces"])
            cl.append(m["colours"])
        Rs.append(R)
        Ts.append(T)
    meshes = Meshes(vl, fl, TexturesVertex(cl))
    cams = FoVPerspectiveCameras(fov=BLENDER_FOV, R=torch.cat(Rs), T=torch.cat(Ts))
    centre = cams.get_camera_center()  # (N, 3)
    light = centre + torch.tensor([0.0, 1.0, 0.0]) * centre.norm(dim=1, keepdim=True)  # above the camera
    with torch.no_grad():
        img = render_mesh(meshes, cams, IMAGE_SIZE, lights=PointLights(location=light, ambient_color=(0.5,) * 3,
                          diffuse_color=(0.5,) * 3, specular_color=(0.15,) * 3), background=(1.0, 1.0, 1.0),
                          batch_size=batch_size)
    return list(img.split(len(views)))


def ensure_synthetic(root: Path, preset: str = "standard", seed: int = 0, verbose: bool = True,
                     chunk: int = 16) -> Path:
    """Generate what is missing of a procedural preset under ``root``; return its split file.

    Models are deterministic functions of (seed, class, split, index), so presets share models
    (the tiny preset's models are the first ones of the standard preset) and a rerun writes
    nothing new.
    """
    if preset not in PRESETS:
        raise user_error("--data_preset", f"one of {sorted(PRESETS)}", repr(preset))
    p = PRESETS[preset]
    root = Path(root)
    views = list(range(p.views))
    table: Dict[str, Dict[str, Dict[str, List[int]]]] = {s: {} for s in SPLITS}
    todo = []
    for cls, counts in p.counts.items():
        synset = SYNSETS[cls]
        for split, n in zip(SPLITS, counts):
            for index in range(n):
                mid = _model_id(split, index, seed)
                table[split].setdefault(synset, {})[mid] = views
                if not _model_complete(root, synset, mid, views):
                    todo.append((cls, split, index, mid))
    split_file = root / f"split_{preset}_v{GENERATOR_VERSION}s{seed}.json"
    if todo:
        from l3d.train import progress

        if verbose:
            print(f"generating {len(todo)} procedural models ({p.views} views each) into {root} (once)",
                  file=sys.stderr)
        bar = progress(len(todo), "procedural models")
        for s in range(0, len(todo), chunk):
            batch = [_write_geometry(root, cls, mid, _model_rng(seed, cls, split, index))
                     for cls, split, index, mid in todo[s:s + chunk]]
            for m, imgs in zip(batch, render_views(batch, views)):
                for v, img in zip(views, imgs):
                    path = m["dir"] / f"{v:02d}.png"
                    if not path.is_file():
                        save_image(path, img)
            bar.update(len(batch))
        bar.close()
    if not split_file.is_file() or _read_json_or_none(split_file) != table:  # (re)written when damaged
        root.mkdir(parents=True, exist_ok=True)
        with atomic_path(split_file) as tmp:
            Path(tmp).write_text(json.dumps(table, indent=1))
    return split_file


def feats_path(root: Path, ref: ModelRef) -> Path:
    return rendering_dir(root, ref.synset, ref.model_id) / "feats.npy"


def writable(path: Path) -> bool:
    """Whether files can be created in ``path`` (or its nearest existing parent)."""
    p = Path(path)
    while not p.exists():
        p = p.parent
    return os.access(p, os.W_OK)


FEATURE_DIM = 512  # ResNet-18 features per view


def load_features(path: Path) -> Optional[np.ndarray]:
    """The (views, 512) float array of a ``feats.npy``, or None when the file is damaged (not a
    numpy array of that shape)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[1] != FEATURE_DIM or arr.dtype.kind != "f":
        return None
    return arr


def _read_json_or_none(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None
