"""Meshes and point clouds out of implicit fields, in files other tools open (.ply, .obj).

    mesh = extract_mesh(sdf_fn, bbox=((-1, -1, -1), (1, 1, 1)), resolution=256)          # SDF, level 0
    mesh = extract_mesh(density_fn, bbox, 256, level=10.0, inside="above")              # NeRF density
    export_mesh(sdf_fn, "output/run", bbox, 256, color_fn=colour_fn)  # -> run/mesh.ply, run/mesh.obj

The field is sampled on a regular grid of ``resolution`` points per axis spanning ``bbox``
(corners included), ``chunk`` points at a time, so only the (D0, D1, D2) volume of values is held,
never the grid of points or the network's activations for all of them. The level set goes through
:func:`l3d.ops.marching_cubes`; vertices are mapped back to world coordinates
(``lo + index * spacing``) and, with ``color_fn``, coloured by it. Faces are wound so their normals
``(v1 - v0) x (v2 - v0)`` point out of the solid: ``inside="below"`` for an SDF (negative inside),
``inside="above"`` for a density or occupancy (large inside).

Files go through :mod:`l3d.io` (``save_ply`` with optional uchar vertex colours, ``save_obj``
without colours); both are written atomically.

Adding ``--export_mesh`` to a script is two lines::

    add_mesh_flags(parser, default_level=0.0)                           # --export_mesh, --mesh_resolution, --mesh_level
    if args.export_mesh: export_mesh(field_fn, out_dir, bbox, args.mesh_resolution, args.mesh_level, inside="below")
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable, Literal, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .errors import UserError
from .io import save_obj, save_ply
from .ops import marching_cubes
from .validate import check_shape

__all__ = ["ExtractedMesh", "grid_axes", "evaluate_grid", "extract_mesh", "color_vertices", "save_mesh",
           "save_point_cloud", "export_mesh", "add_mesh_flags", "MESH_FORMATS"]

PathLike = Union[str, os.PathLike]
FieldFn = Callable[[torch.Tensor], torch.Tensor]
BBox = Union[float, Sequence[Sequence[float]], torch.Tensor]
#: The file formats :func:`save_mesh` writes (by suffix).
MESH_FORMATS = (".ply", ".obj")


class ExtractedMesh(NamedTuple):
    """A marching-cubes mesh of a field's level set, in world coordinates.

    Attributes:
        verts: (V, 3) float32 vertex positions in world space (CPU).
        faces: (F, 3) int64 vertex indices, wound outwards (see the module docstring).
        colors: (V, 3) float32 in [0, 1] from ``color_fn``, or None.
        field_range: (min, max) of the sampled field values (to choose a level when none crossed).
        voxel_size: (3,) grid spacing per axis (world units).
        grid_time_s: seconds spent evaluating the field; mc_time_s: in marching cubes.
    """

    verts: torch.Tensor
    faces: torch.Tensor
    colors: Optional[torch.Tensor]
    field_range: Tuple[float, float]
    voxel_size: Tuple[float, float, float]
    grid_time_s: float
    mc_time_s: float


def _bbox(bbox: BBox) -> Tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) float64 (3,) tensors of ``bbox``: a half-side r (the cube [-r, r]^3) or (2, 3) corners."""
    if isinstance(bbox, (int, float)):
        r = float(bbox)
        b = torch.tensor([[-r] * 3, [r] * 3], dtype=torch.float64)
    else:
        b = torch.as_tensor(np.asarray(bbox, dtype=np.float64) if not torch.is_tensor(bbox) else bbox,
                            dtype=torch.float64).cpu()
    check_shape(b, (2, 3), "bbox")
    if not bool(torch.isfinite(b).all()) or not bool((b[1] > b[0]).all()):
        raise ValueError(f"bbox must hold finite corners lo < hi on every axis, got {b.tolist()}")
    return b[0], b[1]


def _resolution(resolution: Union[int, Sequence[int]]) -> Tuple[int, int, int]:
    res = (int(resolution),) * 3 if isinstance(resolution, (int, np.integer)) else tuple(int(r) for r in resolution)
    if len(res) != 3 or min(res) < 2:
        raise ValueError(f"resolution must be an int or 3 ints, each >= 2, got {resolution!r}")
    return res  # type: ignore[return-value]


def grid_axes(bbox: BBox, resolution: Union[int, Sequence[int]]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lo (3,), spacing (3,), resolution (3,)) of the sampling grid, float64 / int64 on the CPU:
    sample (i, j, k) sits at ``lo + (i, j, k) * spacing`` and the last one at ``hi``."""
    lo, hi = _bbox(bbox)
    res = torch.tensor(_resolution(resolution), dtype=torch.int64)
    return lo, (hi - lo) / (res - 1).to(torch.float64), res


@torch.no_grad()
def evaluate_grid(field_fn: FieldFn, bbox: BBox, resolution: Union[int, Sequence[int]] = 128,
                  chunk: int = 65536, device: Union[str, torch.device, None] = None,
                  dtype: torch.dtype = torch.float32, show_progress: bool = True) -> torch.Tensor:
    """Sample ``field_fn`` on the regular grid over ``bbox``, ``chunk`` points at a time.

    Args:
        field_fn: points (P, 3) -> values (P,) or (P, 1) (called under ``torch.no_grad``).
        bbox: half-side r of the cube [-r, r]^3, or (2, 3) corners (lo, hi).
        resolution: samples per axis (int, or one per axis), corners included.
        chunk: points per call of ``field_fn`` (bounds its memory).
        device: where the points are made (the field's device); default CPU.
        dtype: dtype of the points given to ``field_fn``.
    Returns:
        (D0, D1, D2) float32 CPU tensor; ``volume[i, j, k]`` is the value at ``lo + (i, j, k) * spacing``.
    Raises:
        ValueError: the field returned the wrong number of values; UserError: non-finite values.
    """
    from .train import progress

    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    lo, step, res = grid_axes(bbox, resolution)
    d0, d1, d2 = (int(r) for r in res)
    n = d0 * d1 * d2
    device = torch.device("cpu") if device is None else torch.device(device)
    lo_d, step_d = lo.to(device, dtype), step.to(device, dtype)
    out = torch.empty(n, dtype=torch.float32)
    starts = range(0, n, chunk)
    for s in progress(starts, "field grid", disable=None if show_progress else True):
        idx = torch.arange(s, min(s + chunk, n), device=device)
        ijk = torch.stack([idx // (d1 * d2), (idx // d2) % d1, idx % d2], -1)  # (P, 3)
        pts = lo_d + ijk.to(dtype) * step_d  # (P, 3)
        val = field_fn(pts)
        if not torch.is_tensor(val) or val.numel() != len(pts):
            got = tuple(val.shape) if torch.is_tensor(val) else type(val).__name__
            raise ValueError(f"field_fn must return one value per point ({len(pts)}), got {got}")
        out[s:s + len(pts)] = val.reshape(-1).float().cpu()
    bad = ~torch.isfinite(out)
    if bool(bad.any()):
        raise UserError(f"the field has {int(bad.sum())} NaN/inf values on the {d0}x{d1}x{d2} grid; "
                        "the model diverged or the box reaches where it is undefined")
    return out.view(d0, d1, d2)


@torch.no_grad()
def color_vertices(color_fn: FieldFn, verts: torch.Tensor, chunk: int = 65536,
                   device: Union[str, torch.device, None] = None) -> torch.Tensor:
    """(V, 3) float32 CPU colours in [0, 1] of ``color_fn`` ((P, 3) -> (P, 3)) at ``verts`` (V, 3),
    ``chunk`` vertices at a time."""
    check_shape(verts, ("V", 3), "verts")
    device = torch.device("cpu") if device is None else torch.device(device)
    out = torch.empty(len(verts), 3, dtype=torch.float32)
    for s in range(0, len(verts), chunk):
        c = color_fn(verts[s:s + chunk].to(device))
        if not torch.is_tensor(c) or tuple(c.shape) != (min(chunk, len(verts) - s), 3):
            got = tuple(c.shape) if torch.is_tensor(c) else type(c).__name__
            raise ValueError(f"color_fn must return (P, 3) colours, got {got}")
        out[s:s + chunk] = c.float().cpu()
    return out.nan_to_num_(0.0).clamp_(0.0, 1.0)


def extract_mesh(
    field_fn: FieldFn,
    bbox: BBox = 1.0,
    resolution: Union[int, Sequence[int]] = 128,
    level: float = 0.0,
    chunk: int = 65536,
    inside: Literal["below", "above"] = "below",
    color_fn: Optional[FieldFn] = None,
    device: Union[str, torch.device, None] = None,
    show_progress: bool = True,
) -> ExtractedMesh:
    """The ``level`` set of an implicit field as a triangle mesh in world coordinates.

    Args:
        field_fn: points (P, 3) -> values (P,) (an SDF, a density, an occupancy probability).
        bbox: half-side r of the cube [-r, r]^3, or (2, 3) corners (lo, hi) of the region to mesh.
        resolution: grid samples per axis (int or 3 ints, corners included); the voxel size is
            ``(hi - lo) / (resolution - 1)``.
        level: the iso-value: 0 for an SDF; for a NeRF density a level such as 10 or 50.
        chunk: points per call of ``field_fn`` / ``color_fn``.
        inside: "below" (SDF: the solid is where the field is below ``level``) or "above"
            (density / occupancy); decides the winding, so normals point out of the solid.
        color_fn: optional points (P, 3) -> colours (P, 3) in [0, 1], evaluated at the vertices.
        device: the device the points are made on (that of the field's parameters).
    Returns:
        :class:`ExtractedMesh` (empty verts/faces when the level set does not cross the box).
    """
    if inside not in ("below", "above"):
        raise ValueError(f"inside must be 'below' or 'above', got {inside!r}")
    if not math.isfinite(float(level)):
        raise ValueError(f"level must be finite, got {level!r}")
    lo, step, _ = grid_axes(bbox, resolution)
    t0 = time.perf_counter()
    vol = evaluate_grid(field_fn, bbox, resolution, chunk, device, show_progress=show_progress)
    t1 = time.perf_counter()
    idx_verts, faces = marching_cubes(vol, float(level), inside=inside)  # (V, 3) grid-index coordinates
    t2 = time.perf_counter()
    verts = (lo + idx_verts.double() * step).float()  # (V, 3) world
    colors = None
    if color_fn is not None and len(verts):
        colors = color_vertices(color_fn, verts, chunk, device)
    return ExtractedMesh(verts, faces, colors, (float(vol.min()), float(vol.max())),
                         tuple(float(s) for s in step), t1 - t0, t2 - t1)  # type: ignore[arg-type]


def save_mesh(path: PathLike, mesh: ExtractedMesh, binary: bool = True) -> Path:
    """Write ``mesh`` by the suffix of ``path``: ``.ply`` (vertex colours as uchar when the mesh has
    them; binary unless ``binary=False``) or ``.obj`` (positions and faces)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        return save_ply(path, mesh.verts, mesh.faces, colors=mesh.colors, binary=binary)
    if suffix == ".obj":
        return save_obj(path, mesh.verts, mesh.faces)
    raise ValueError(f"mesh files are {' or '.join(MESH_FORMATS)}, got {path.name}")


def save_point_cloud(path: PathLike, points: torch.Tensor, colors: Optional[torch.Tensor] = None,
                     binary: bool = True) -> Path:
    """Write points (P, 3) (and optional (P, 3) colours in [0, 1]) as a .ply vertex list."""
    if Path(path).suffix.lower() != ".ply":
        raise ValueError(f"point clouds are written as .ply, got {Path(path).name}")
    return save_ply(path, points.detach().cpu(), None, None if colors is None else colors.detach().cpu(), binary)


def export_mesh(
    field_fn: FieldFn,
    output_dir: PathLike,
    bbox: BBox = 1.0,
    resolution: Union[int, Sequence[int]] = 128,
    level: float = 0.0,
    inside: Literal["below", "above"] = "below",
    color_fn: Optional[FieldFn] = None,
    chunk: int = 65536,
    device: Union[str, torch.device, None] = None,
    name: str = "mesh",
    formats: Sequence[str] = MESH_FORMATS,
) -> Tuple[ExtractedMesh, list]:
    """:func:`extract_mesh`, then ``<output_dir>/<name>.ply`` and ``.obj`` (or the given ``formats``).

    Returns:
        (the mesh, the paths written).
    Raises:
        UserError: the level set does not cross the box (the message gives the field's range on
            the grid, so the user can pick another level or box).
    """
    mesh = extract_mesh(field_fn, bbox, resolution, level, chunk, inside, color_fn, device)
    if len(mesh.faces) == 0:
        lo, hi = mesh.field_range
        raise UserError(f"--mesh_level {level:g}: the level set does not cross the box (the field ranges "
                        f"over [{lo:.4g}, {hi:.4g}] on the grid); choose a level inside that range or another box")
    out = Path(output_dir)
    written = [save_mesh(out / f"{name}{fmt}", mesh) for fmt in formats]
    return mesh, written


def add_mesh_flags(parser, default_level: float = 0.0, default_resolution: int = 256) -> None:
    """Add the shared ``--export_mesh``, ``--mesh_resolution`` and ``--mesh_level`` flags
    (:data:`l3d.cli.VOCABULARY`) to a :class:`l3d.cli.ScriptParser`."""
    parser.add_flag("export_mesh")
    parser.add_flag("mesh_resolution", default=default_resolution)
    parser.add_flag("mesh_level", default=default_level)
