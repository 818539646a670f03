"""Reading and writing binvox voxel files (the format of R2N2's ``model.binvox``).

A binvox file is an ASCII header followed by run-length encoded voxels::

    #binvox 1
    dim 32 32 32
    translate tx ty tz
    scale s
    data
    <bytes: (value, count) pairs, value 0 or 1, count 1..255>

The runs cover the ``s^3`` voxels in the order ``x`` slowest, then ``z``, then ``y`` fastest:
linear index ``i`` is voxel ``x = i // s^2``, ``z = (i % s^2) // s``, ``y = i % s``. Voxel
``(x, y, z)`` covers the world box starting at ``translate + (x, y, z) / s * scale`` (binvox's own
convention; R2N2 loaders ignore it and align the voxel coordinates to the mesh bounding box
instead, see :func:`a2_single_view.voxelize.align_bbox`).

Decoding and encoding are vectorised with numpy (``repeat`` / run boundaries), no loop over runs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Sequence, Tuple, Union

import numpy as np
import torch

from l3d.errors import user_error
from l3d.run import atomic_path

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class Binvox:
    """A decoded binvox file.

    Attributes:
        occupancy: (D, D, D) bool numpy array indexed ``[x, y, z]``.
        translate: (3,) float, world position of the grid's corner.
        scale: float, world length of the whole grid along each axis.
    """

    occupancy: np.ndarray
    translate: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0

    @property
    def dim(self) -> int:
        return int(self.occupancy.shape[0])


class _Bad(Exception):
    """What is wrong with a binvox file (turned into a UserError naming the file)."""


MAX_DIM = 1024  # a larger grid is not a voxel file this code can hold in memory


def _read_header(f: BinaryIO) -> Tuple[Tuple[int, int, int], Tuple[float, ...], float]:
    first = f.readline(64).strip()
    if not first.startswith(b"#binvox"):
        raise _Bad(f"first line {first[:20]!r}")
    dims, translate, scale = None, (0.0, 0.0, 0.0), 1.0
    for _ in range(64):  # a header has a handful of lines
        line = f.readline(256)
        if not line:
            raise _Bad("a header that ends before its 'data' line")
        parts = line.strip().split()
        if not parts:
            continue
        key = parts[0]
        if key == b"data":
            break
        try:
            if key == b"dim":
                dims = tuple(int(x) for x in parts[1:4])
            elif key == b"translate":
                translate = tuple(float(x) for x in parts[1:4])
            elif key == b"scale":
                scale = float(parts[1])
        except (ValueError, IndexError):
            raise _Bad(f"the header line {line.strip()[:40]!r}") from None
    else:
        raise _Bad("a header without a 'data' line")
    if dims is None or len(dims) != 3:
        raise _Bad("a header without a 'dim D D D' line")
    if not all(math.isfinite(v) for v in (*translate, scale)):
        raise _Bad("a non-finite translate or scale")
    return dims, translate, scale  # type: ignore[return-value]


def read_binvox(path_or_file: Union[PathLike, BinaryIO]) -> Binvox:
    """Decode a binvox file into a dense ``[x, y, z]`` occupancy grid.

    Raises:
        UserError: naming the file: not a binvox file, non-cubic grid, or run lengths that do not
            add up to D^3 (a truncated file).
    """
    if hasattr(path_or_file, "read"):
        name = getattr(path_or_file, "name", "<binvox data>")
        try:
            return _read_binvox(path_or_file)  # type: ignore[arg-type]
        except _Bad as e:
            raise user_error(name, "a binvox file", str(e)) from None
    with open(path_or_file, "rb") as f:
        try:
            return _read_binvox(f)
        except _Bad as e:
            raise user_error(path_or_file, "a binvox file", str(e)) from None


def _read_binvox(f: BinaryIO) -> Binvox:
    dims, translate, scale = _read_header(f)
    if len(set(dims)) != 1 or not 0 < dims[0] <= MAX_DIM:
        raise _Bad(f"dim {' '.join(map(str, dims))} (only cubic grids up to {MAX_DIM}^3 are read)")
    s = dims[0]
    raw = np.frombuffer(f.read(), dtype=np.uint8)
    if raw.size % 2:
        raw = raw[:-1]  # a stray trailing byte (newline) is ignored
    values, counts = raw[0::2], raw[1::2].astype(np.int64)
    if int(counts.sum()) != s ** 3:
        raise _Bad(f"runs that cover {int(counts.sum())} voxels, not {s}^3 = {s ** 3}")
    flat = np.repeat(values > 0, counts)  # (s^3,) in x, z, y order
    occ = flat.reshape(s, s, s).transpose(0, 2, 1)  # [x, z, y] -> [x, y, z]
    return Binvox(np.ascontiguousarray(occ), tuple(translate), float(scale))


def binvox_coords(vox: Binvox) -> torch.Tensor:
    """(P, 3) float32 index coordinates ``(x, y, z)`` of the filled voxels, in file order
    (linear index ascending: x slowest, then z, then y)."""
    s = vox.dim
    flat = vox.occupancy.transpose(0, 2, 1).reshape(-1)  # x, z, y order
    i = np.nonzero(flat)[0]
    x, z, y = i // (s * s), (i % (s * s)) // s, i % s
    return torch.from_numpy(np.stack([x, y, z], 1).astype(np.float32))


def encode_runs(flat: np.ndarray) -> bytes:
    """Run-length encode a flat bool/0-1 array as binvox (value, count) byte pairs, count <= 255."""
    flat = np.asarray(flat).astype(np.uint8).reshape(-1)
    if flat.size == 0:
        return b""
    starts = np.concatenate([[0], np.nonzero(np.diff(flat))[0] + 1])  # (R,)
    lengths = np.diff(np.concatenate([starts, [flat.size]]))  # (R,)
    values = flat[starts]
    pieces = (lengths + 254) // 255  # runs longer than 255 are split
    rv = np.repeat(values, pieces)
    rc = np.full(int(pieces.sum()), 255, dtype=np.int64)
    last = np.cumsum(pieces) - 1  # index of the final piece of each run
    rc[last] = lengths - 255 * (pieces - 1)
    return np.stack([rv, rc.astype(np.uint8)], 1).astype(np.uint8).tobytes()


def write_binvox(path: PathLike, occupancy: Union[np.ndarray, torch.Tensor],
                 translate: Sequence[float] = (0.0, 0.0, 0.0), scale: float = 1.0) -> Path:
    """Write a dense ``[x, y, z]`` occupancy grid (D, D, D) as a binvox file (atomically)."""
    occ = occupancy.detach().cpu().numpy() if torch.is_tensor(occupancy) else np.asarray(occupancy)
    if occ.ndim != 3 or len(set(occ.shape)) != 1:
        raise ValueError(f"occupancy must have shape (D, D, D), got {tuple(occ.shape)}")
    s = occ.shape[0]
    header = (f"#binvox 1\ndim {s} {s} {s}\ntranslate {translate[0]:.9g} {translate[1]:.9g} {translate[2]:.9g}\n"
              f"scale {scale:.9g}\ndata\n").encode()
    body = encode_runs(occ.astype(bool).transpose(0, 2, 1).reshape(-1))  # x, z, y order
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(header + body)
    return path
