"""File input/output: OBJ/MTL and PLY meshes, images, GIF/MP4, metrics.json and command.txt.

Meshes
------
:func:`load_obj` is our own vectorised OBJ parser. It keeps the file's vertex list as it is (the
cow has V = 2930 positions and T = 3225 separate UV coordinates, like PyTorch3D's loader), whereas
trimesh would split vertices at UV seams and change vertex counts and vertex normals. Faces come
back 0-based, polygons fan-triangulated ``(0, i, i + 1)``. Normals (``vn``) are not read: vertex
normals are always recomputed from the faces (:meth:`l3d.structures.Meshes.verts_normals_packed`).

Writers
-------
Every writer creates the parent folders and writes atomically: the data go to a hidden temporary
file in the destination folder (``.<name>.<random>.tmp<suffix>``) which is then renamed over the
target with :func:`os.replace`, so an interrupted run leaves either the old file or the new one,
never half a file. :func:`atomic_path` exposes the mechanism for other writers.

Images are ``(H, W, C)`` arrays or tensors, ``C`` = 3 (RGB) or 4 (RGBA), float in [0, 1] or uint8;
frame stacks (GIF/MP4) are ``(N, H, W, C)`` (N frames) or lists of N frames.
"""

from __future__ import annotations

import contextlib
import json
import math
import operator
import os
import shlex
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .structures import Meshes, TexturesUV, TexturesVertex
from .validate import check_shape

PathLike = Union[str, os.PathLike]
_UMASK = os.umask(0)  # read once at import (os.umask can only be read by setting it)
os.umask(_UMASK)
ArrayLike = Union[np.ndarray, torch.Tensor]

__all__ = [
    "atomic_path", "ObjData", "MtlMaterial", "read_obj", "read_mtl", "load_obj", "save_obj",
    "load_ply_mesh", "load_ply_points", "save_ply", "to_uint8", "save_image", "load_image",
    "save_gif", "save_mp4", "save_gif_with_png", "label_image", "write_metrics", "read_metrics",
    "command_line", "write_command", "wrap_uvs",
]


# ----------------------------------------------------------------------------------------------
# atomic writes
# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    The parent folder is created. The temporary name keeps the target's suffix (some writers
    pick the format from it). If the body raises, the temporary file is removed and the
    target is left untouched. The final file gets the usual ``0o666 & ~umask`` permissions.

    Example::

        with atomic_path("out/a.png") as tmp:
            Image.fromarray(img).save(tmp, format="PNG")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------
def _to_numpy(x: Any) -> np.ndarray:
    if torch.is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _take(seq: Sequence, idx: np.ndarray) -> List:
    """``[seq[i] for i in idx]`` done by ``operator.itemgetter`` (C speed)."""
    if len(idx) == 0:
        return []
    if len(idx) == 1:
        return [seq[int(idx[0])]]
    return list(operator.itemgetter(*idx.tolist())(seq))


def _fan_triangulate(counts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Fan triangulation of polygons stored as consecutive corners.

    Args:
        counts: (L,) number of corners of each polygon (>= 3); corners of polygon l are the
            consecutive entries ``first[l] .. first[l] + counts[l] - 1`` of a flat corner list.
    Returns:
        tri: (F, 3) indices into the flat corner list, triangles ``(0, i, i + 1)`` of each polygon.
        poly: (F,) the polygon each triangle comes from.
    """
    counts = counts.astype(np.int64)
    first = np.cumsum(counts) - counts  # (L,)
    ntri = counts - 2
    poly = np.repeat(np.arange(len(counts)), ntri)  # (F,)
    k = np.arange(len(poly)) - np.repeat(np.cumsum(ntri) - ntri, ntri) + 1  # 1 .. n-2 per polygon
    base = first[poly]
    tri = np.stack([base, base + k, base + k + 1], axis=1)
    return tri, poly


# ----------------------------------------------------------------------------------------------
# OBJ / MTL
# ----------------------------------------------------------------------------------------------
_WS = np.array([32, 9, 10, 13, 11, 12], dtype=np.uint8)  # the bytes that bytes.split() splits on


@dataclass
class MtlMaterial:
    """One ``newmtl`` entry: diffuse colour ``Kd`` (3,) or None, and ``map_Kd`` image path or None."""

    name: str
    kd: Optional[Tuple[float, float, float]] = None
    map_kd: Optional[Path] = None


@dataclass
class ObjData:
    """What :func:`read_obj` found in an OBJ file (numpy arrays, 0-based indices).

    Attributes:
        verts: (V, 3) float32 vertex positions (``v`` lines; extra columns such as w or
            vertex colours are ignored).
        faces: (F, 3) int64 triangles (polygons fan-triangulated).
        verts_uvs: (T, 2) float32 ``vt`` coordinates as written (not wrapped), T may be 0.
        faces_uvs: (F, 3) int64 index into ``verts_uvs`` per corner, -1 where a corner has none.
        face_material: (F,) int64 index into ``material_names``, -1 before any ``usemtl``.
        material_names: the names used by ``usemtl``, in order of first use.
        mtllibs: the MTL files named by ``mtllib`` (resolved next to the OBJ file).
    """

    verts: np.ndarray
    faces: np.ndarray
    verts_uvs: np.ndarray
    faces_uvs: np.ndarray
    face_material: np.ndarray
    material_names: List[str] = field(default_factory=list)
    mtllibs: List[Path] = field(default_factory=list)


def _tokenize(raw: bytes) -> Tuple[List[bytes], np.ndarray]:
    """Split a text file into whitespace-separated tokens, dropping ``#`` comments.

    Returns:
        tokens: list of n tokens (bytes), in file order.
        tok_line: (n,) int64 line number (0-based) of each token.
    """
    b = np.frombuffer(raw, dtype=np.uint8).copy()  # (nbytes,)
    if b.size == 0:
        return [], np.zeros(0, dtype=np.int64)
    nl = b == 10
    line_of = np.cumsum(nl) - nl  # (nbytes,) line number; a '\n' belongs to the line it ends
    hashes = b == 35  # '#'
    if hashes.any():
        cs = np.cumsum(hashes)
        line_start = np.flatnonzero(np.r_[True, nl[:-1]])  # (lines,) first byte of each line
        before = (cs - hashes)[line_start]  # '#' count before each line
        in_comment = (cs - before[line_of]) > 0
        b[in_comment & ~nl] = 32  # blank from '#' to the end of its line
    ws = np.isin(b, _WS)
    starts = np.flatnonzero(~ws & np.r_[True, ws[:-1]])  # (n,) first byte of each token
    tokens = b.tobytes().split()
    assert len(tokens) == len(starts), (len(tokens), len(starts))
    return tokens, line_of[starts]


class _Lines:
    """Tokens grouped by line: keyword (first token) per line and data tokens per keyword."""

    def __init__(self, tokens: List[bytes], tok_line: np.ndarray):
        self.tokens = tokens
        self.tok_line = tok_line
        first = np.r_[True, tok_line[1:] != tok_line[:-1]] if len(tok_line) else np.zeros(0, bool)
        self.kw_tok = np.flatnonzero(first)  # (L,) token index of each non-empty line's keyword
        self.line_no = tok_line[self.kw_tok]  # (L,) file line number (0-based)
        self.keywords = np.array(_take(tokens, self.kw_tok) or [b""], dtype=bytes)[: len(self.kw_tok)]
        self.rank = np.cumsum(first) - 1  # (n,) which non-empty line each token is on
        self.is_data = ~first  # (n,)

    def data(self, keyword: bytes) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Data tokens of the lines starting with ``keyword``.

        Returns:
            tok: (k,) token indices, in file order.
            line: (k,) index of the token's line among the ``keyword`` lines.
            pos: (k,) position of the token within its line (0 = first after the keyword).
        """
        is_kw_line = self.keywords == keyword  # (L,)
        kw_rank = np.cumsum(is_kw_line) - 1  # (L,) index among keyword lines
        sel = self.is_data & is_kw_line[self.rank]
        tok = np.flatnonzero(sel)
        r = self.rank[tok]
        return tok, kw_rank[r], tok - self.kw_tok[r] - 1


def _parse_numbers(lines: _Lines, keyword: bytes, ncols: int, need: int, path: Path) -> np.ndarray:
    """(n_lines, ncols) float64 of the first ``ncols`` numbers of each ``keyword`` line (0-padded)."""
    n_lines = int((lines.keywords == keyword).sum())
    tok, line, pos = lines.data(keyword)
    counts = np.bincount(line, minlength=n_lines)
    if n_lines and counts.min() < need:
        bad = int(np.flatnonzero(lines.keywords == keyword)[np.argmin(counts)])
        raise ValueError(
            f"{path}:{int(lines.line_no[bad]) + 1}: '{keyword.decode()}' needs at least {need} numbers"
        )
    keep = pos < ncols
    out = np.zeros((n_lines, ncols), dtype=np.float64)
    try:
        vals = np.array(_take(lines.tokens, tok[keep]), dtype=bytes).astype(np.float64)
    except ValueError as e:
        raise ValueError(f"{path}: could not parse '{keyword.decode()}' numbers ({e})") from None
    out[line[keep], pos[keep]] = vals
    return out


def _resolve_index(idx: np.ndarray, count_before: np.ndarray, total: int, what: str, path: Path) -> np.ndarray:
    """OBJ 1-based / negative (relative) indices -> 0-based; 0 stays as -1 ("missing")."""
    out = np.where(idx > 0, idx - 1, np.where(idx < 0, count_before + idx, -1))
    given = idx != 0
    if given.any() and (out[given].min() < 0 or out[given].max() >= total):
        i = int(np.flatnonzero(given & ((out < 0) | (out >= total)))[0])
        raise ValueError(f"{path}: face refers to {what} {int(idx[i])}, but there are {total} {what}s")
    return out


def read_obj(path: PathLike) -> ObjData:
    """Parse an OBJ file (geometry, UVs, materials) into numpy arrays; see :class:`ObjData`.

    Understood: ``v`` (first 3 numbers), ``vt`` (first 2), ``f`` with corners ``v``, ``v/vt``,
    ``v/vt/vn``, ``v//vn`` (1-based or negative = relative to the last element defined so far),
    polygons fan-triangulated, ``usemtl`` and ``mtllib``. Ignored: ``vn``, ``vp``, ``l``, ``p``,
    ``o``, ``g``, ``s`` and anything unknown; ``#`` starts a comment; line continuation with a
    backslash is not supported. All parsing is vectorised over the file's bytes.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a malformed line (named with its line number) or an index out of range.
    """
    path = Path(path)
    raw = path.read_bytes()
    lines = _Lines(*_tokenize(raw))
    kws = lines.keywords

    verts = _parse_numbers(lines, b"v", 3, 3, path).astype(np.float32)  # (V, 3)
    verts_uvs = _parse_numbers(lines, b"vt", 2, 1, path).astype(np.float32)  # (T, 2)
    n_v, n_vt = len(verts), len(verts_uvs)

    # ---- faces
    is_f = kws == b"f"
    n_flines = int(is_f.sum())
    tok, fline, _ = lines.data(b"f")
    counts = np.bincount(fline, minlength=n_flines)  # corners per polygon
    if n_flines and counts.min() < 3:
        bad = int(np.flatnonzero(is_f)[np.argmin(counts)])
        raise ValueError(f"{path}:{int(lines.line_no[bad]) + 1}: a face needs at least 3 corners")
    vi = vti = np.zeros(0, dtype=np.int64)
    if len(tok):
        corners = np.array(_take(lines.tokens, tok), dtype=bytes)  # (corners,) like b"12/7/3"
        vi_s, _, rest = np.strings.partition(corners, b"/")
        vti_s, _, _ = np.strings.partition(rest, b"/")
        try:
            vi = vi_s.astype(np.int64)
            vti = np.where(vti_s == b"", b"0", vti_s).astype(np.int64)
        except ValueError:
            raise ValueError(f"{path}: could not parse face corners (expected v, v/vt, v/vt/vn or v//vn)") from None
    if len(vi) and (vi == 0).any():
        raise ValueError(f"{path}: face vertex index 0 (OBJ indices start at 1)")
    # elements defined before each face line, for negative (relative) indices
    line_of_f = np.flatnonzero(is_f)  # (n_flines,) index among non-empty lines
    nv_before = np.cumsum(kws == b"v")[line_of_f][fline]  # (corners,)
    nvt_before = np.cumsum(kws == b"vt")[line_of_f][fline]
    vi = _resolve_index(vi, nv_before, n_v, "vertex", path)
    vti = _resolve_index(vti, nvt_before, n_vt, "texture coordinate", path)

    tri, poly = _fan_triangulate(counts)
    faces = vi[tri]  # (F, 3)
    faces_uvs = vti[tri]  # (F, 3), -1 where missing

    # ---- materials: each face line uses the last 'usemtl' before it
    mtl_lines = np.flatnonzero(kws == b"usemtl")
    mtok, mline, mpos = lines.data(b"usemtl")
    names = np.zeros(len(mtl_lines), dtype=np.array(_take(lines.tokens, mtok) or [b""]).dtype)
    names[mline[mpos == 0]] = _take(lines.tokens, mtok[mpos == 0])  # (M,) name per usemtl line
    uniq, first_use, inv = np.unique(names, return_index=True, return_inverse=True)
    order = np.argsort(first_use)  # materials numbered in order of first use
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    name_id = rank[inv].astype(np.int64)  # (M,)
    material_names: List[str] = [uniq[i].decode("utf-8", "replace") for i in order.tolist()]
    active = np.searchsorted(mtl_lines, line_of_f, side="right") - 1  # (n_flines,)
    line_mat = np.where(active >= 0, name_id[np.maximum(active, 0)] if len(name_id) else -1, -1)
    face_material = line_mat[poly] if len(poly) else np.zeros(0, dtype=np.int64)

    ltok, _, _ = lines.data(b"mtllib")
    libs = [t.decode("utf-8", "replace") for t in _take(lines.tokens, ltok)]
    mtllibs = [path.parent / n for n in libs]
    if libs and not any(p.exists() for p in mtllibs) and (path.parent / " ".join(libs)).exists():
        mtllibs = [path.parent / " ".join(libs)]  # one file name containing spaces

    return ObjData(
        verts=verts, faces=faces.astype(np.int64), verts_uvs=verts_uvs,
        faces_uvs=faces_uvs.astype(np.int64), face_material=face_material.astype(np.int64),
        material_names=material_names, mtllibs=mtllibs,
    )


def read_mtl(path: PathLike) -> Dict[str, MtlMaterial]:
    """Parse an MTL file: ``newmtl``, ``Kd`` and ``map_Kd`` (image path resolved beside the file;
    options such as ``-s`` are skipped, the last token is the file name)."""
    path = Path(path)
    mats: Dict[str, MtlMaterial] = {}
    cur: Optional[MtlMaterial] = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():  # MTL files are tiny
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        key = parts[0]
        if key == "newmtl":
            cur = MtlMaterial(" ".join(parts[1:]))
            mats[cur.name] = cur
        elif cur is not None and key == "Kd" and len(parts) >= 4:
            cur.kd = (float(parts[1]), float(parts[2]), float(parts[3]))
        elif cur is not None and key == "map_Kd" and len(parts) >= 2:
            cur.map_kd = path.parent / parts[-1].replace("\\", "/")
    return mats


def _load_texture_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0  # (Ht, Wt, 3)


def wrap_uvs(uv: np.ndarray) -> np.ndarray:
    """UV wrap "repeat": coordinates outside [0, 1] keep only their fractional part
    ``x - floor(x)``; coordinates inside [0, 1] (1.0 included) are left as they are."""
    out = uv.copy()
    bad = (out < 0) | (out > 1)
    out[bad] = out[bad] - np.floor(out[bad])
    return out


def _build_texture(obj: ObjData, materials: Dict[str, MtlMaterial], path: Path):
    """TexturesUV arrays (maps (Ht, Wt, 3), faces_uvs (F, 3), verts_uvs (T', 2)) or None.

    Each distinct image is one slot of a side-by-side atlas; materials without an image (or
    faces without material) get a 3 x 3 patch of their ``Kd`` colour (white when none).
    Corners without a ``vt`` use uv (0, 0) of their slot (its bottom-left texel).
    """
    used = np.unique(obj.face_material)  # material ids used by faces (-1 = none)
    images: Dict[Path, int] = {}
    slot_imgs: List[np.ndarray] = []
    slot_of_mat = np.zeros(len(obj.material_names) + 1, dtype=np.int64)  # index m + 1 (-1 -> 0)
    is_solid: List[bool] = []
    solid_of_colour: Dict[Tuple[float, ...], int] = {}
    any_image = False
    for m in used.tolist():  # a handful of materials
        mat = materials.get(obj.material_names[m]) if m >= 0 else None
        img_path = mat.map_kd if mat is not None else None
        if img_path is not None and not img_path.exists():
            warnings.warn(f"{path}: texture image {img_path} not found; using the material colour")
            img_path = None
        if img_path is not None:
            any_image = True
            if img_path not in images:
                images[img_path] = len(slot_imgs)
                slot_imgs.append(_load_texture_image(img_path))
                is_solid.append(False)
            slot_of_mat[m + 1] = images[img_path]
        else:
            kd = tuple(mat.kd) if mat is not None and mat.kd is not None else (1.0, 1.0, 1.0)
            if kd not in solid_of_colour:
                solid_of_colour[kd] = len(slot_imgs)
                slot_imgs.append(np.broadcast_to(np.asarray(kd, np.float32), (3, 3, 3)).copy())
                is_solid.append(True)
            slot_of_mat[m + 1] = solid_of_colour[kd]
    if not any_image:
        return None

    uv_local = wrap_uvs(obj.verts_uvs) if len(obj.verts_uvs) else np.zeros((0, 2), np.float32)
    uv_local = np.concatenate([uv_local, np.zeros((1, 2), np.float32)], 0)  # last row: missing -> (0, 0)
    corner_uv = np.where(obj.faces_uvs >= 0, obj.faces_uvs, len(uv_local) - 1)  # (F, 3)
    corner_slot = np.broadcast_to(slot_of_mat[obj.face_material + 1][:, None], corner_uv.shape)

    if len(slot_imgs) == 1:
        # the common case: one image, uvs kept as they are (only a (0, 0) row added if needed)
        maps = slot_imgs[0]
        if (obj.faces_uvs >= 0).all():
            return maps, corner_uv, uv_local[:-1]
        return maps, corner_uv, uv_local

    # several slots: atlas side by side, top-aligned, white padding
    hs = np.array([im.shape[0] for im in slot_imgs])
    ws = np.array([im.shape[1] for im in slot_imgs])
    ox = np.cumsum(ws) - ws
    ht, wt = int(hs.max()), int(ws.sum())
    maps = np.ones((ht, wt, 3), dtype=np.float32)
    for im, x0 in zip(slot_imgs, ox.tolist()):  # one copy per slot
        maps[: im.shape[0], x0 : x0 + im.shape[1]] = im
    key = corner_uv.reshape(-1) * len(slot_imgs) + corner_slot.reshape(-1)
    uniq, inverse = np.unique(key, return_inverse=True)
    uv_i, slot = uniq // len(slot_imgs), uniq % len(slot_imgs)
    u, v = uv_local[uv_i, 0], uv_local[uv_i, 1]
    solid = np.asarray(is_solid)[slot]
    u = np.where(solid, 0.5, u)  # centre texel of a solid patch
    v = np.where(solid, 0.5, v)
    # align_corners=True sampling: u in [0, 1] spans the centres of the slot's first..last column
    x = ox[slot] + u * (ws[slot] - 1)
    y = (1 - v) * (hs[slot] - 1)  # row from the top
    new_uv = np.stack([x / max(wt - 1, 1), 1 - y / max(ht - 1, 1)], 1).astype(np.float32)
    return maps, inverse.reshape(-1, 3), new_uv


def load_obj(path: PathLike, device: Union[str, torch.device] = "cpu", load_textures: bool = True) -> Meshes:
    """Load an OBJ file as a :class:`~l3d.structures.Meshes` batch of one mesh.

    Args:
        path: the ``.obj`` file.
        device: where the tensors go.
        load_textures: read the MTL file and its ``map_Kd`` images.
    Returns:
        A Meshes with verts (V, 3) float32 exactly as listed by ``v`` lines and faces (F, 3)
        long, 0-based, polygons fan-triangulated. ``textures`` is a
        :class:`~l3d.structures.TexturesUV` with maps (1, Ht, Wt, 3) float32 in [0, 1],
        faces_uvs [(F, 3)] and verts_uvs [(T, 2)] when a material has a ``map_Kd`` image that
        exists, else None. UVs are wrapped ("repeat"): coordinates outside [0, 1] keep only
        their fractional part. When faces use several images, the images are placed side by
        side in one atlas and the uvs are remapped; faces whose material has no image get a
        small patch of its ``Kd`` colour (white if none); corners without a ``vt`` get uv (0, 0)
        of their image (its bottom-left texel).

    Example: the course cow gives V = 2930, F = 5856, T = 3225 and a 1024 x 1024 map.
    """
    path = Path(path)
    obj = read_obj(path)
    textures = None
    if load_textures and obj.material_names and len(obj.faces):
        materials: Dict[str, MtlMaterial] = {}
        for lib in obj.mtllibs:
            if lib.exists():
                materials.update(read_mtl(lib))
            else:
                warnings.warn(f"{path}: material library {lib} not found; loading without texture")
        tex = _build_texture(obj, materials, path)
        if tex is not None:
            maps, fuv, vuv = tex
            textures = TexturesUV(
                torch.from_numpy(np.ascontiguousarray(maps))[None].to(device),
                [torch.from_numpy(fuv.astype(np.int64)).to(device)],
                [torch.from_numpy(vuv.astype(np.float32)).to(device)],
            )
    verts = torch.from_numpy(obj.verts).to(device)
    faces = torch.from_numpy(obj.faces).to(device)
    return Meshes([verts], [faces], textures)


def _format_rows(prefix: str, arr: np.ndarray, fmt: str) -> str:
    """``prefix fmt fmt ...\\n`` for every row of a 2-D array, in one C-level formatting call."""
    n, k = arr.shape
    if n == 0:
        return ""
    return ((prefix + (" " + fmt) * k + "\n") * n) % tuple(arr.reshape(-1).tolist())


def save_obj(
    path: PathLike,
    verts: ArrayLike,
    faces: ArrayLike,
    verts_uvs: Optional[ArrayLike] = None,
    faces_uvs: Optional[ArrayLike] = None,
    texture_map: Optional[ArrayLike] = None,
) -> Path:
    """Write a triangle mesh as OBJ (plus ``<stem>.mtl`` and ``<stem>.png`` with a texture).

    Args:
        path: the ``.obj`` file to write (parent folders are created; every file is atomic).
        verts: (V, 3) float vertex positions.
        faces: (F, 3) int 0-based vertex indices.
        verts_uvs: optional (T, 2) UV coordinates.
        faces_uvs: optional (F, 3) int indices into ``verts_uvs`` (required with ``verts_uvs``).
        texture_map: optional (Ht, Wt, 3) image in [0, 1] (or uint8); needs the uvs.
    Returns:
        The OBJ path. Coordinates are written with 9 significant digits, so float32 values
        read back exactly.
    """
    path = Path(path)
    v = torch.as_tensor(_to_numpy(verts))
    f = torch.as_tensor(_to_numpy(faces))
    check_shape(v, ("V", 3), "verts")
    check_shape(f, ("F", 3), "faces")
    if f.numel() and (int(f.min()) < 0 or int(f.max()) >= len(v)):
        raise ValueError(f"faces index vertices outside [0, {len(v) - 1}]")
    uv = fuv = None
    if (verts_uvs is None) != (faces_uvs is None):
        raise ValueError("verts_uvs and faces_uvs must be given together")
    if verts_uvs is not None:
        uv = torch.as_tensor(_to_numpy(verts_uvs))
        fuv = torch.as_tensor(_to_numpy(faces_uvs))
        check_shape(uv, ("T", 2), "verts_uvs")
        check_shape(fuv, (len(f), 3), "faces_uvs")
        if fuv.numel() and (int(fuv.min()) < 0 or int(fuv.max()) >= len(uv)):
            raise ValueError(f"faces_uvs index uvs outside [0, {len(uv) - 1}]")
    if texture_map is not None and uv is None:
        raise ValueError("texture_map needs verts_uvs and faces_uvs")

    parts = []
    if texture_map is not None:
        tex = torch.as_tensor(_to_numpy(texture_map))
        check_shape(tex, ("Ht", "Wt", 3), "texture_map")
        png = path.with_suffix(".png")
        mtl = path.with_suffix(".mtl")
        save_image(png, tex)
        _atomic_write_bytes(
            mtl, f"newmtl material_0\nKd 1.0 1.0 1.0\nmap_Kd {png.name}\n".encode()
        )
        parts.append(f"mtllib {mtl.name}\n")
    parts.append(_format_rows("v", v.double().numpy(), "%.9g"))
    if uv is not None:
        parts.append(_format_rows("vt", uv.double().numpy(), "%.9g"))
    if texture_map is not None:
        parts.append("usemtl material_0\n")
    f1 = f.long().numpy() + 1
    if fuv is not None:
        both = np.stack([f1, fuv.long().numpy() + 1], axis=-1).reshape(len(f1), 6)
        parts.append(_format_face_pairs(both))
    else:
        parts.append(_format_rows("f", f1, "%d"))
    return _atomic_write_bytes(path, "".join(parts).encode())


def _format_face_pairs(both: np.ndarray) -> str:
    """``f a/b c/d e/f`` lines from (F, 6) = per corner (vertex, uv), both 1-based."""
    n = len(both)
    if n == 0:
        return ""
    return ("f %d/%d %d/%d %d/%d\n" * n) % tuple(both.reshape(-1).tolist())


# ----------------------------------------------------------------------------------------------
# PLY
# ----------------------------------------------------------------------------------------------
def _colors_from_ply(vert) -> Optional[np.ndarray]:
    names = vert.data.dtype.names or ()
    keys = [k for k in (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue"))
            if all(c in names for c in k)]
    if not keys:
        return None
    cols = np.stack([np.asarray(vert[c]) for c in keys[0]], axis=1)
    if np.issubdtype(cols.dtype, np.integer):
        return cols.astype(np.float32) / float(np.iinfo(cols.dtype).max)
    return cols.astype(np.float32)


def load_ply_points(path: PathLike, device: Union[str, torch.device] = "cpu") -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Read the vertices of a PLY file as a point cloud.

    Returns:
        points: (P, 3) float32.
        colors: (P, 3) float32 in [0, 1] from ``red/green/blue`` (uchar scaled by 1/255), or None.
    """
    from plyfile import PlyData

    ply = PlyData.read(str(path))
    vert = ply["vertex"]
    pts = np.stack([np.asarray(vert[c]) for c in ("x", "y", "z")], axis=1).astype(np.float32)
    cols = _colors_from_ply(vert)
    return (torch.from_numpy(pts).to(device),
            None if cols is None else torch.from_numpy(cols).to(device))


def load_ply_mesh(path: PathLike, device: Union[str, torch.device] = "cpu") -> Meshes:
    """Read a PLY mesh (polygons fan-triangulated) as a Meshes of one item.

    Vertex colours, when present, become a :class:`~l3d.structures.TexturesVertex` in [0, 1].

    Raises:
        ValueError: the file has no faces (use :func:`load_ply_points`).
    """
    from plyfile import PlyData

    ply = PlyData.read(str(path))
    names = [e.name for e in ply.elements]
    if "face" not in names or ply["face"].count == 0:
        raise ValueError(f"{path} has no faces; read it with load_ply_points")
    vert = ply["vertex"]
    verts = np.stack([np.asarray(vert[c]) for c in ("x", "y", "z")], axis=1).astype(np.float32)
    face = ply["face"]
    prop = "vertex_indices" if "vertex_indices" in face.data.dtype.names else "vertex_index"
    lists = face[prop]  # object array of per-face index arrays
    counts = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    if counts.min() < 3:
        raise ValueError(f"{path}: a face has fewer than 3 corners")
    flat = np.concatenate(list(lists)).astype(np.int64)
    tri, _ = _fan_triangulate(counts)
    faces = flat[tri]
    cols = _colors_from_ply(vert)
    tex = None if cols is None else TexturesVertex([torch.from_numpy(cols).to(device)])
    return Meshes([torch.from_numpy(verts).to(device)], [torch.from_numpy(faces).to(device)], tex)


def save_ply(
    path: PathLike,
    verts: ArrayLike,
    faces: Optional[ArrayLike] = None,
    colors: Optional[ArrayLike] = None,
    binary: bool = True,
) -> Path:
    """Write points or a triangle mesh as PLY (atomic).

    Args:
        verts: (V, 3) positions (written as float32).
        faces: optional (F, 3) int 0-based triangles.
        colors: optional (V, 3) per-vertex colours, float in [0, 1] (rounded to uchar) or uint8.
        binary: binary little-endian (default) or ASCII.
    """
    from plyfile import PlyData, PlyElement

    v = torch.as_tensor(_to_numpy(verts))
    check_shape(v, ("V", 3), "verts")
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    cols = None
    if colors is not None:
        c = torch.as_tensor(_to_numpy(colors))
        check_shape(c, (len(v), 3), "colors")
        cols = to_uint8(c)
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    data = np.empty(len(v), dtype=fields)
    vn = v.numpy()
    data["x"], data["y"], data["z"] = vn[:, 0], vn[:, 1], vn[:, 2]
    if cols is not None:
        data["red"], data["green"], data["blue"] = cols[:, 0], cols[:, 1], cols[:, 2]
    elements = [PlyElement.describe(data, "vertex")]
    if faces is not None:
        f = torch.as_tensor(_to_numpy(faces))
        check_shape(f, ("F", 3), "faces")
        fd = np.empty(len(f), dtype=[("vertex_indices", "i4", (3,))])
        fd["vertex_indices"] = f.numpy().astype(np.int32)
        elements.append(PlyElement.describe(fd, "face"))
    with atomic_path(path) as tmp:
        PlyData(elements, text=not binary).write(str(tmp))
    return Path(path)


# ----------------------------------------------------------------------------------------------
# images, GIF, MP4
# ----------------------------------------------------------------------------------------------
def to_uint8(img: Any, truncate: bool = False) -> np.ndarray:
    """Float image(s) in [0, 1] (tensor or array, any shape) -> uint8 array.

    Values are clipped to [0, 1] and scaled by 255, then rounded to the nearest integer
    (default) or, with ``truncate=True``, truncated like ``np.uint8(img * 255)`` (for references
    that were made that way). uint8 input is returned unchanged (as an array).
    """
    a = _to_numpy(img)
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    a = np.clip(a.astype(np.float64), 0.0, 1.0) * 255.0
    return (np.floor(a) if truncate else np.rint(a)).astype(np.uint8)


def _drop_alpha(frames: np.ndarray) -> np.ndarray:
    """(..., H, W, 4) uint8 -> RGB composited over white; RGB and grey are returned unchanged."""
    if frames.ndim >= 3 and frames.shape[-1] == 4:
        a = frames[..., 3:].astype(np.float32) / 255.0
        rgb = frames[..., :3].astype(np.float32) * a + 255.0 * (1 - a)
        return np.rint(rgb).astype(np.uint8)
    if frames.ndim >= 3 and frames.shape[-1] == 1:
        return frames[..., 0]
    return frames


def save_image(path: PathLike, img: Any, truncate: bool = False) -> Path:
    """Write an (H, W, C) image (float in [0, 1] or uint8; C = 1, 3 or 4) with Pillow, atomically.

    The format follows the suffix (png, jpg, ...). Formats without alpha (JPEG) get RGBA
    composited over white.
    """
    from PIL import Image

    path = Path(path)
    a = to_uint8(img, truncate=truncate)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"img must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {tuple(a.shape)}")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format from the suffix of {path}")
    if fmt in ("JPEG", "BMP") and a.ndim == 3 and a.shape[-1] == 4:
        a = _drop_alpha(a)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(a)).save(tmp, format=fmt)
    return path


def load_image(path: PathLike) -> torch.Tensor:
    """Read an image as a float32 tensor (H, W, C) in [0, 1].

    C = 3 for RGB (palette and CMYK images are converted), 4 when the file has alpha, 1 for
    greyscale. 16-bit greyscale is scaled by 1/65535. For an animated file, the first frame.
    """
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            a = np.asarray(im, dtype=np.float32) / 65535.0
            return torch.from_numpy(np.ascontiguousarray(a))[..., None]
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif im.mode not in ("L", "RGB", "RGBA"):
            im = im.convert("RGBA" if "A" in im.mode else "RGB")
        a = np.asarray(im, dtype=np.float32) / 255.0
    if a.ndim == 2:
        a = a[..., None]
    return torch.from_numpy(np.ascontiguousarray(a))


def _frames_uint8(frames: Any, truncate: bool = False) -> np.ndarray:
    """A list / (N, H, W[, C]) stack of float or uint8 frames -> (N, H, W[, 3]) uint8."""
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("frames is empty")
        arr = np.stack([to_uint8(f, truncate=truncate) for f in frames])  # one per frame
    else:
        arr = to_uint8(frames, truncate=truncate)
    if arr.ndim not in (3, 4) or arr.shape[0] == 0:
        raise ValueError(f"frames must have shape (N, H, W, C) or (N, H, W) with N >= 1, got {tuple(arr.shape)}")
    if arr.ndim == 4 and arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"frames must have 1, 3 or 4 channels, got {arr.shape[-1]}")
    return _drop_alpha(arr)


def save_gif(
    path: PathLike,
    frames: Any,
    fps: float = 15,
    duration_ms: Optional[float] = None,
    loop: int = 0,
    truncate: bool = False,
    palette: str = "global",
) -> Path:
    """Write an animated GIF, atomically.

    Args:
        frames: (N, H, W, C) or list of N (H, W, C) frames, float in [0, 1] or uint8.
            RGBA frames are composited over white (GIF has no partial transparency).
        fps: frames per second; each frame lasts ``1000 / fps`` ms.
        duration_ms: per-frame duration in ms, overrides ``fps``.
        loop: 0 = loop forever (the default), n = play n times.
        truncate: float -> uint8 by truncation instead of rounding (see :func:`to_uint8`).
        palette: "global" (default) quantises all frames to one shared 256-colour palette (about
            5x quicker than per-frame palettes for long turntables; mean error ~0.3/255 on
            renders); "per_frame" lets Pillow build an adaptive palette for every frame.

    GIF stores durations in 1/100 s: a duration is rounded up to the next 10 ms (15 fps = 66.7 ms
    is written as 70 ms), so an animation never plays faster than asked. Pillow merges consecutive *identical* frames into one frame with the summed
    duration, so a GIF of repeated frames reads back with fewer frames (same total time).
    """
    arr = _frames_uint8(frames, truncate)
    if duration_ms is None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        duration_ms = 1000.0 / fps
    # GIF stores whole hundredths of a second and Pillow truncates (66.7 ms -> 60 ms, so a 15 fps
    # turn of 30 frames would last 1.8 s instead of 2): round up to the next 10 ms
    duration_ms = 10.0 * math.ceil(float(duration_ms) / 10.0 - 1e-6)
    if palette == "per_frame":
        import imageio.v3 as iio

        with atomic_path(path) as tmp:
            iio.imwrite(tmp, arr, extension=".gif", plugin="pillow", duration=float(duration_ms), loop=int(loop))
        return Path(path)
    if palette != "global":
        raise ValueError(f"palette must be 'global' or 'per_frame', got {palette!r}")
    from PIL import Image

    # one palette for all frames: octree quantisation of a subsample of every frame, then each
    # frame mapped to its nearest palette colours by Pillow (no dithering)
    step = max(1, int(np.sqrt(arr.shape[0] * arr.shape[1] * arr.shape[2] / 2e5)))  # ~200k samples
    sample = np.ascontiguousarray(arr[:, ::step, ::step, :3].reshape(1, -1, 3))
    pal_img = Image.fromarray(sample).quantize(256, method=Image.Quantize.FASTOCTREE)
    images = [Image.fromarray(np.ascontiguousarray(f[..., :3])).quantize(palette=pal_img, dither=Image.Dither.NONE)
              for f in arr]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=float(duration_ms),
                       loop=int(loop), optimize=False)
    return Path(path)


def save_mp4(path: PathLike, frames: Any, fps: float = 15, quality: float = 8.0) -> Path:
    """Write an H.264 MP4 (yuv420p) with imageio-ffmpeg, atomically.

    Args:
        frames: (N, H, W, C) or list of N (H, W, C) frames, float in [0, 1] or uint8; RGBA is
            composited over white. Odd widths/heights are padded by one replicated row/column
            (the codec needs even sizes).
        fps: frames per second.
        quality: imageio-ffmpeg quality, 0 (worst) .. 10 (best).
    """
    import imageio_ffmpeg

    arr = _frames_uint8(frames)
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    _, h, w, _ = arr.shape
    arr = np.pad(arr, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    h, w = arr.shape[1:3]
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (w, h), fps=fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
            quality=quality, macro_block_size=1, ffmpeg_log_level="error",
            output_params=["-f", "mp4"],
        )
        writer.send(None)
        try:
            for frame in arr:  # frames are streamed to ffmpeg one by one
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()
    return Path(path)


def save_webm(path: PathLike, frames: Any, fps: float = 15, crf: int = 32) -> Path:
    """Write a WebM (VP9, yuv420p) with imageio-ffmpeg's bundled ffmpeg, atomically.

    WebM/VP9 plays in every browser, Chromium included (which does not play H.264 MP4s without
    proprietary codecs), so the gallery embeds these; :func:`save_mp4` stays for downloads.

    Args:
        frames: (N, H, W, C) or list of N (H, W, C) frames, float in [0, 1] or uint8; RGBA is
            composited over white; odd sizes are padded by one replicated row/column.
        fps: frames per second.
        crf: VP9 constant quality, 0 (lossless-like) .. 63 (worst).
    """
    import imageio_ffmpeg

    arr = _frames_uint8(frames)
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    _, h, w, _ = arr.shape
    arr = np.pad(arr, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    h, w = arr.shape[1:3]
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (w, h), fps=fps, codec="libvpx-vp9", pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
            quality=None, bitrate=None, macro_block_size=1, ffmpeg_log_level="error",
            output_params=["-crf", str(int(crf)), "-b:v", "0", "-deadline", "good", "-cpu-used", "4", "-f", "webm"],
        )
        writer.send(None)
        try:
            for frame in arr:
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()
    return Path(path)


def save_gif_with_png(path: PathLike, frames: Any, fps: float = 15, which: str = "middle", **kwargs) -> Tuple[Path, Path]:
    """:func:`save_gif` plus ``<stem>.png`` of one frame for quick viewing.

    Args:
        which: "middle" (frame N // 2) or "first".
    Returns:
        (gif path, png path).
    """
    arr = _frames_uint8(frames, kwargs.get("truncate", False))
    gif = save_gif(path, arr, fps=fps, **{k: v for k, v in kwargs.items() if k != "truncate"})
    idx = {"middle": len(arr) // 2, "first": 0}.get(which)
    if idx is None:
        raise ValueError(f"which must be 'middle' or 'first', got {which!r}")
    png = save_image(Path(path).with_suffix(".png"), arr[idx])
    return gif, png


def _font(size: Optional[float]):
    from PIL import ImageFont

    if size is not None:
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1
            pass
    return ImageFont.load_default()


def label_image(
    img: Any,
    text: str,
    xy: Tuple[float, float] = (20, 20),
    color: Tuple[int, int, int] = (255, 0, 0),
    size: Optional[float] = None,
) -> Any:
    """Draw ``text`` on an image (e.g. the "fov: xx.xx" labels of the dolly zoom).

    Args:
        img: (H, W, C) float in [0, 1] or uint8, tensor or array (C = 3 or 4).
        text: the label.
        xy: top-left corner of the text in pixels (x = column, y = row).
        color: RGB 0..255.
        size: font size in pixels for Pillow's default font (None: Pillow's default size).
    Returns:
        A new image of the same type, dtype and device; only pixels under the text change
        (the glyphs are alpha-blended; an alpha channel becomes opaque under the text).
    """
    from PIL import Image, ImageDraw

    h, w = img.shape[:2]
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).text(tuple(xy), text, fill=255, font=_font(size))
    m = np.asarray(mask, dtype=np.float32) / 255.0  # (H, W)
    is_uint8 = (img.dtype == torch.uint8) if torch.is_tensor(img) else (np.asarray(img).dtype == np.uint8)
    col = np.asarray(color, dtype=np.float32) / 255.0
    if torch.is_tensor(img):
        x = img.float() / 255.0 if is_uint8 else img
        mt = torch.as_tensor(m, device=x.device, dtype=x.dtype)[..., None]
        ct = torch.as_tensor(col, device=x.device, dtype=x.dtype)
        rgb = x[..., :3] * (1 - mt) + ct * mt
        out = torch.cat([rgb, torch.maximum(x[..., 3:], mt)], -1) if x.shape[-1] == 4 else rgb
        return (out * 255).round().to(torch.uint8) if is_uint8 else out
    x = np.asarray(img)
    xf = x.astype(np.float32) / 255.0 if is_uint8 else x
    mm = m[..., None].astype(xf.dtype)
    rgb = xf[..., :3] * (1 - mm) + col.astype(xf.dtype) * mm
    out = np.concatenate([rgb, np.maximum(xf[..., 3:], mm)], -1) if xf.shape[-1] == 4 else rgb
    return np.rint(out * 255).astype(np.uint8) if is_uint8 else out


# ----------------------------------------------------------------------------------------------
# metrics.json and command.txt
# ----------------------------------------------------------------------------------------------
def _metrics_path(path_or_dir: PathLike) -> Path:
    p = Path(path_or_dir)
    return p if p.suffix == ".json" else p / "metrics.json"


def _jsonable(x: Any) -> Any:
    """Tensors, numpy values, paths, tuples -> plain JSON values; non-finite floats -> strings
    ``"nan"``, ``"inf"``, ``"-inf"`` (strict JSON has no such numbers; ``float()`` reads them)."""
    if torch.is_tensor(x):
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
        data = _deep_merge(read_metrics(p), new) if merge else new
        _atomic_write_bytes(p, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())
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


def write_command(output_dir: PathLike, argv: Optional[Sequence[str]] = None, module: Optional[str] = None) -> Path:
    """Write ``<output_dir>/command.txt`` with :func:`command_line` (atomic); returns its path."""
    return _atomic_write_bytes(Path(output_dir) / "command.txt", (command_line(argv, module) + "\n").encode())
