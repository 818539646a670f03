"""Mesh and point-cloud files: OBJ/MTL and PLY (images and videos are in :mod:`l3d.media`, run files
such as metrics.json in :mod:`l3d.run`).

Meshes
------
:func:`load_obj` is our own vectorised OBJ parser. It keeps the file's vertex list as it is (the
cow has V = 2930 positions and T = 3225 separate UV coordinates, like PyTorch3D's loader), whereas
trimesh would split vertices at UV seams and change vertex counts and vertex normals. Faces come
back 0-based, polygons fan-triangulated ``(0, i, i + 1)``. Normals (``vn``) are checked and kept in
:class:`ObjData` but not put on the mesh: vertex normals are always recomputed from the faces
(:meth:`l3d.structures.Meshes.verts_normals_packed`). Malformed lines are rejected as PyTorch3D
rejects them (a ``vt`` with fewer than 2 numbers, a ``vn`` with fewer than 3, a face mixing the
corner forms ``v``, ``v/vt``, ``v//vn``, ``v/vt/vn``, a corner with four fields), but with the file
and line number in one :class:`~l3d.errors.UserError` line.

Materials follow PyTorch3D's texture atlas: a face whose material has a ``map_Kd`` image shows the
image, a face whose material has only a diffuse colour ``Kd`` shows that colour, any other face is
white. :func:`load_mesh` reads any mesh file by its extension (glTF/GLB, OFF and STL through trimesh).

Writers create the parent folders and write atomically (:func:`l3d.run.atomic_path`): an
interrupted run leaves the old file or the new one, never half a file. Readers turn a file that is
not what it should be (empty, binary, non-finite or out-of-range numbers) into a one-line
:class:`~l3d.errors.UserError` that names it.
"""

from __future__ import annotations

import operator
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .errors import UserError, user_error
from .media import load_image, save_image, to_uint8
from .run import atomic_path, atomic_write
from .structures import Meshes, TexturesUV, TexturesVertex
from .validate import check_shape

PathLike = Union[str, os.PathLike]
ArrayLike = Union[np.ndarray, torch.Tensor]

__all__ = ["ObjData", "MtlMaterial", "read_obj", "read_mtl", "load_obj", "save_obj", "load_mesh",
           "load_ply_mesh", "load_ply_points", "save_ply", "wrap_uvs", "MESH_SUFFIXES"]


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
        normals: (N, 3) float32 ``vn`` vectors as written (not used for shading).
    """

    verts: np.ndarray
    faces: np.ndarray
    verts_uvs: np.ndarray
    faces_uvs: np.ndarray
    face_material: np.ndarray
    material_names: List[str] = field(default_factory=list)
    mtllibs: List[Path] = field(default_factory=list)
    normals: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))


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
    if n_lines == 0:
        return np.zeros((0, ncols), dtype=np.float64)
    tok, line, pos = lines.data(keyword)
    counts = np.bincount(line, minlength=n_lines)
    if n_lines and counts.min() < need:
        bad = int(np.flatnonzero(lines.keywords == keyword)[np.argmin(counts)])
        raise UserError(
            f"{path}:{int(lines.line_no[bad]) + 1}: '{keyword.decode()}' needs at least {need} numbers"
        )
    keep = pos < ncols
    out = np.zeros((n_lines, ncols), dtype=np.float64)
    try:
        vals = np.array(_take(lines.tokens, tok[keep]), dtype=bytes).astype(np.float64)
    except ValueError as e:
        raise UserError(f"{path}: could not parse '{keyword.decode()}' numbers ({e})") from None
    out[line[keep], pos[keep]] = vals
    return out


def _resolve_index(idx: np.ndarray, count_before: np.ndarray, total: int, what: str, path: Path) -> np.ndarray:
    """OBJ 1-based / negative (relative) indices -> 0-based; 0 stays as -1 ("missing")."""
    out = np.where(idx > 0, idx - 1, np.where(idx < 0, count_before + idx, -1))
    given = idx != 0
    if given.any() and (out[given].min() < 0 or out[given].max() >= total):
        i = int(np.flatnonzero(given & ((out < 0) | (out >= total)))[0])
        raise UserError(f"{path}: face refers to {what} {int(idx[i])}, but there are {total} {what}s")
    return out


def read_obj(path: PathLike) -> ObjData:
    """Parse an OBJ file (geometry, UVs, materials) into numpy arrays; see :class:`ObjData`.

    Understood: ``v`` (first 3 numbers), ``vt`` (first 2), ``vn`` (first 3), ``f`` with corners
    ``v``, ``v/vt``, ``v/vt/vn``, ``v//vn`` (1-based or negative = relative to the last element
    defined so far; normal indices are not checked), polygons fan-triangulated, ``usemtl`` and
    ``mtllib``. Ignored: ``vp``, ``l``, ``p``, ``o``, ``g``, ``s`` and anything unknown; ``#``
    starts a comment; line continuation with a backslash is not supported. All parsing is
    vectorised over the file's bytes.

    Raises:
        FileNotFoundError: the file does not exist.
        UserError: ``path:line: ...`` for binary content, a ``v``/``vn`` with fewer than 3
            numbers, a ``vt`` with fewer than 2, a face with fewer than 3 corners, a face whose
            corners mix the forms ``v``, ``v/vt``, ``v//vn``, ``v/vt/vn`` (as PyTorch3D, which
            calls it "vertex properties are inconsistent"), a corner with more than three
            fields (``1/2/3/4``), a non-finite vertex or an index out of range.
    """
    path = Path(path)
    raw = path.read_bytes()
    if b"\0" in raw[:65536]:
        raise user_error(path, "a text OBJ file", "binary data (NUL bytes)")
    lines = _Lines(*_tokenize(raw))
    kws = lines.keywords

    verts = _parse_numbers(lines, b"v", 3, 3, path).astype(np.float32)  # (V, 3)
    if not np.isfinite(verts).all():
        bad = int(np.flatnonzero(~np.isfinite(verts).all(axis=1))[0])
        line = int(lines.line_no[np.flatnonzero(kws == b"v")[bad]]) + 1
        raise user_error(f"{path}:{line}", "finite vertex coordinates", "nan or inf")
    verts_uvs = _parse_numbers(lines, b"vt", 2, 2, path).astype(np.float32)  # (T, 2)
    normals = _parse_numbers(lines, b"vn", 3, 3, path).astype(np.float32)  # (N, 3)
    n_v, n_vt = len(verts), len(verts_uvs)

    # ---- faces
    is_f = kws == b"f"
    n_flines = int(is_f.sum())
    tok, fline, _ = lines.data(b"f")
    counts = np.bincount(fline, minlength=n_flines)  # corners per polygon
    if n_flines and counts.min() < 3:
        bad = int(np.flatnonzero(is_f)[np.argmin(counts)])
        raise UserError(f"{path}:{int(lines.line_no[bad]) + 1}: a face needs at least 3 corners")
    vi = vti = np.zeros(0, dtype=np.int64)
    if len(tok):
        corners = np.array(_take(lines.tokens, tok), dtype=bytes)  # (corners,) like b"12/7/3"
        fields = np.strings.count(corners, b"/") + 1  # (corners,)
        if fields.max() > 3:
            bad = int(np.argmax(fields > 3))
            raise UserError(f"{path}:{int(lines.tok_line[tok[bad]]) + 1}: face corner "
                            f"'{corners[bad].decode('utf-8', 'replace')}' has more than 3 fields (v/vt/vn)")
        vi_s, _, rest = np.strings.partition(corners, b"/")
        vti_s, _, vni_s = np.strings.partition(rest, b"/")
        # corner form: 0 = v, 1 = v/vt, 2 = v//vn, 3 = v/vt/vn; one form per face
        form = (vti_s != b"").astype(np.int8) + 2 * (vni_s != b"").astype(np.int8)  # (corners,)
        first = np.cumsum(counts) - counts  # (n_flines,) first corner of each face line
        mixed = np.minimum.reduceat(form, first) != np.maximum.reduceat(form, first)  # (n_flines,)
        if mixed.any():
            bad = int(np.argmax(mixed))
            line = int(lines.line_no[np.flatnonzero(is_f)[bad]]) + 1
            text = b" ".join(corners[first[bad]: first[bad] + counts[bad]]).decode("utf-8", "replace")
            raise UserError(f"{path}:{line}: face 'f {text}' mixes corner forms; every corner of a face "
                            "must be written the same way (v, v/vt, v//vn or v/vt/vn)")
        try:
            vi = vi_s.astype(np.int64)
            vti = np.where(vti_s == b"", b"0", vti_s).astype(np.int64)
        except ValueError:
            raise UserError(f"{path}: could not parse face corners (expected v, v/vt, v/vt/vn or v//vn)") from None
    if len(vi) and (vi == 0).any():
        raise UserError(f"{path}: face vertex index 0 (OBJ indices start at 1)")
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
        material_names=material_names, mtllibs=mtllibs, normals=normals,
    )


def read_mtl(path: PathLike) -> Dict[str, MtlMaterial]:
    """Parse an MTL file: ``newmtl``, ``Kd`` and ``map_Kd`` (image path resolved beside the file;
    options such as ``-s`` are skipped, the last token is the file name)."""
    path = Path(path)
    mats: Dict[str, MtlMaterial] = {}
    cur: Optional[MtlMaterial] = None
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for no, line in enumerate(lines, 1):  # MTL files are tiny
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        key = parts[0]
        if key == "newmtl":
            cur = MtlMaterial(" ".join(parts[1:]))
            mats[cur.name] = cur
        elif cur is not None and key == "Kd":
            try:
                kd = tuple(float(x) for x in parts[1:4])
            except ValueError:
                kd = ()
            if len(kd) != 3 or not np.isfinite(kd).all():
                raise user_error(f"{path}:{no}", "'Kd r g b' with three finite numbers", repr(line.strip()))
            cur.kd = kd  # type: ignore[assignment]
        elif cur is not None and key == "map_Kd" and len(parts) >= 2:
            cur.map_kd = path.parent / parts[-1].replace("\\", "/")
    return mats


def _load_texture_image(path: Path) -> np.ndarray:
    img = load_image(path).numpy()  # (Ht, Wt, C), a damaged file is a UserError naming it
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])  # (Ht, Wt, 3)


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
    faces without material) get a 3 x 3 patch of their ``Kd`` colour (white when none), as in
    PyTorch3D's texture atlas, where a face starts white, takes its material's ``Kd`` and then
    its image. None when no face's material has an image or a ``Kd`` (nothing to show).
    Corners without a ``vt`` use uv (0, 0) of their slot (its bottom-left texel).
    """
    used = np.unique(obj.face_material)  # material ids used by faces (-1 = none)
    images: Dict[Path, int] = {}
    slot_imgs: List[np.ndarray] = []
    slot_of_mat = np.zeros(len(obj.material_names) + 1, dtype=np.int64)  # index m + 1 (-1 -> 0)
    is_solid: List[bool] = []
    solid_of_colour: Dict[Tuple[float, ...], int] = {}
    any_image = any_colour = False
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
            any_colour |= mat is not None and mat.kd is not None
            kd = tuple(mat.kd) if mat is not None and mat.kd is not None else (1.0, 1.0, 1.0)
            if kd not in solid_of_colour:
                solid_of_colour[kd] = len(slot_imgs)
                slot_imgs.append(np.broadcast_to(np.asarray(kd, np.float32), (3, 3, 3)).copy())
                is_solid.append(True)
            slot_of_mat[m + 1] = solid_of_colour[kd]
    if not (any_image or any_colour):
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
        faces_uvs [(F, 3)] and verts_uvs [(T, 2)] when a used material has a ``map_Kd`` image
        that exists or a diffuse colour ``Kd``, else None. UVs are wrapped ("repeat"):
        coordinates outside [0, 1] keep only their fractional part. When faces use several
        images or colours, each is placed side by side in one atlas and the uvs are remapped;
        faces whose material has no image get a small patch of its ``Kd`` colour (white if
        none), so a Kd-only material renders in its colour; corners without a ``vt`` get uv
        (0, 0) of their image (its bottom-left texel).

    Materials: as PyTorch3D, ``usemtl`` selects the material of the faces that follow, and
    ``usemtl`` without ``mtllib`` (or with a missing MTL file or image) warns, naming the file,
    and loads without that texture. Beyond PyTorch3D, an MTL file that defines exactly one
    material while the OBJ has no ``usemtl`` at all gives that material to every face (a
    common export), instead of ignoring it.

    Example: the course cow gives V = 2930, F = 5856, T = 3225 and a 1024 x 1024 map.
    """
    path = Path(path)
    obj = read_obj(path)
    if len(obj.faces) == 0:
        raise user_error(path, "a mesh with at least one face",
                         f"{len(obj.verts)} vertices and no 'f' lines" if len(obj.verts) else "no vertices and no faces")
    textures = None
    if load_textures and (obj.material_names or obj.mtllibs):
        if obj.material_names and not obj.mtllibs:
            warnings.warn(f"{path}: 'usemtl {obj.material_names[0]}' but no 'mtllib' names a material "
                          "file; loading without texture")
        materials: Dict[str, MtlMaterial] = {}
        for lib in obj.mtllibs:
            if lib.exists():
                materials.update(read_mtl(lib))
            else:
                warnings.warn(f"{path}: material library {lib} not found; loading without texture")
        if not obj.material_names and len(materials) == 1:
            # one material and no 'usemtl': it is the material of every face
            obj.material_names = list(materials)
            obj.face_material = np.zeros(len(obj.faces), dtype=np.int64)
        tex = _build_texture(obj, materials, path) if obj.material_names else None
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
        atomic_write(
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
    return atomic_write(path, "".join(parts).encode())


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


def _read_ply(path: PathLike):
    """plyfile's ``PlyData`` of ``path``; a file plyfile cannot parse is a UserError naming it."""
    from plyfile import PlyData, PlyParseError

    try:
        ply = PlyData.read(str(path))
    except (PlyParseError, ValueError, EOFError, IndexError) as exc:
        raise user_error(path, "a PLY file", f"a file that does not parse ({exc})") from None
    if "vertex" not in [e.name for e in ply.elements]:
        raise user_error(path, "a PLY file with a 'vertex' element", "none")
    return ply


def _ply_xyz(vert, path: PathLike) -> np.ndarray:
    """(V, 3) float32 of a PLY vertex element, checked to be finite."""
    names = vert.data.dtype.names or ()
    missing = [c for c in ("x", "y", "z") if c not in names]
    if missing:
        raise user_error(path, "vertex properties x, y, z", f"no {', '.join(missing)}")
    xyz = np.stack([np.asarray(vert[c]) for c in ("x", "y", "z")], axis=1).astype(np.float32)
    if not np.isfinite(xyz).all():
        n = int((~np.isfinite(xyz).all(axis=1)).sum())
        raise user_error(path, "finite vertex positions", f"{n} vertices with nan or inf")
    return xyz


def load_ply_points(path: PathLike, device: Union[str, torch.device] = "cpu") -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Read the vertices of a PLY file as a point cloud.

    Returns:
        points: (P, 3) float32.
        colors: (P, 3) float32 in [0, 1] from ``red/green/blue`` (uchar scaled by 1/255), or None.
    """
    ply = _read_ply(path)
    vert = ply["vertex"]
    pts = _ply_xyz(vert, path)
    cols = _colors_from_ply(vert)
    return (torch.from_numpy(pts).to(device),
            None if cols is None else torch.from_numpy(cols).to(device))


def load_ply_mesh(path: PathLike, device: Union[str, torch.device] = "cpu") -> Meshes:
    """Read a PLY mesh (polygons fan-triangulated) as a Meshes of one item.

    Vertex colours, when present, become a :class:`~l3d.structures.TexturesVertex` in [0, 1].

    Raises:
        UserError: the file has no faces (use :func:`load_ply_points`) or non-finite vertices.
    """
    ply = _read_ply(path)
    names = [e.name for e in ply.elements]
    if "face" not in names or ply["face"].count == 0:
        raise UserError(f"{path} has no faces; read it with load_ply_points")
    vert = ply["vertex"]
    verts = _ply_xyz(vert, path)
    face = ply["face"]
    prop = "vertex_indices" if "vertex_indices" in face.data.dtype.names else "vertex_index"
    lists = face[prop]  # object array of per-face index arrays
    counts = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    if counts.min() < 3:
        raise UserError(f"{path}: a face has fewer than 3 corners")
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
# any mesh file: OBJ and PLY by our readers, glTF / GLB / OFF / STL through trimesh
# ----------------------------------------------------------------------------------------------
MESH_SUFFIXES = (".obj", ".ply", ".glb", ".gltf", ".off", ".stl")


def _trimesh_textures(tm, device: Union[str, torch.device]):
    """(verts (V, 3), faces (F, 3), textures or None) numpy / Textures of one ``trimesh.Trimesh``.

    Texture visuals with UVs become a TexturesUV of the material's base colour image (PBR
    ``baseColorTexture`` times ``baseColorFactor``, or a simple material's ``image`` times its
    ``diffuse``); a material without an image becomes a TexturesVertex of its constant colour.
    Vertex colours become a TexturesVertex; face colours are given to split copies of each face's
    corners (a TexturesVertex constant over every face). Alpha is dropped.
    """
    from trimesh.visual.material import PBRMaterial

    verts = np.asarray(tm.vertices, dtype=np.float32)
    faces = np.asarray(tm.faces, dtype=np.int64)
    visual = tm.visual
    kind = getattr(visual, "kind", None)

    def constant(rgb: np.ndarray):
        cols = np.broadcast_to(rgb.astype(np.float32), verts.shape).copy()
        return TexturesVertex([torch.from_numpy(cols).to(device)])

    if kind == "texture":
        mat = visual.material
        if isinstance(mat, PBRMaterial):
            image, factor = mat.baseColorTexture, mat.baseColorFactor
        else:
            image, factor = getattr(mat, "image", None), getattr(mat, "diffuse", None)
        factor = (np.ones(3, np.float32) if factor is None
                  else np.asarray(factor, np.float64).reshape(-1)[:3])
        if factor.max() > 1.0:  # trimesh keeps factors as uint8 0..255
            factor = factor / 255.0
        uv = getattr(visual, "uv", None)
        if image is None or uv is None or len(uv) != len(verts):
            return verts, faces, constant(factor)
        img = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 * factor.astype(np.float32)  # (Ht, Wt, 3)
        uv = wrap_uvs(np.asarray(uv, dtype=np.float32))  # glTF samplers repeat by default
        tex = TexturesUV(torch.from_numpy(np.ascontiguousarray(img))[None].to(device),
                         [torch.from_numpy(faces).to(device)], [torch.from_numpy(uv).to(device)])
        return verts, faces, tex
    if kind == "vertex":
        cols = np.asarray(visual.vertex_colors, dtype=np.float32)[:, :3] / 255.0  # (V, 3)
        return verts, faces, TexturesVertex([torch.from_numpy(cols).to(device)])
    if kind == "face":
        fc = np.asarray(visual.face_colors, dtype=np.float32)[:, :3] / 255.0  # (F, 3)
        split = verts[faces].reshape(-1, 3)  # (3F, 3): each face gets its own corners
        cols = np.repeat(fc, 3, axis=0)
        return split, np.arange(len(split), dtype=np.int64).reshape(-1, 3), TexturesVertex(
            [torch.from_numpy(cols).to(device)])
    return verts, faces, None


def load_mesh(path: PathLike, device: Union[str, torch.device] = "cpu", load_textures: bool = True) -> Meshes:
    """Load a mesh file as a :class:`~l3d.structures.Meshes` of one item, by its extension.

    ``.obj`` goes to :func:`load_obj` (UV texture from the MTL), ``.ply`` to
    :func:`load_ply_mesh` (vertex colours); ``.glb``, ``.gltf``, ``.off`` and ``.stl`` are read
    by trimesh (``process=False``: vertices are kept as stored, not merged). A glTF scene's
    meshes are placed by their node transforms and joined into one mesh. Colour comes back as a
    :class:`~l3d.structures.TexturesUV` when the file has a base-colour texture and UVs (the
    image multiplied by the base-colour factor), else a :class:`~l3d.structures.TexturesVertex`
    for vertex colours, face colours or a plain base-colour factor, else None.

    Args:
        path: the mesh file; one of :data:`MESH_SUFFIXES`.
        device: where the tensors go.
        load_textures: read colours and textures (False: textures is None).
    Raises:
        FileNotFoundError: the file does not exist.
        UserError: an unknown extension, a file that does not parse, a mesh without faces or
            with non-finite vertices (one line naming the file).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise user_error(path, "a mesh file ending in " + ", ".join(MESH_SUFFIXES), f"'{path.suffix}'")
    if suffix == ".obj":
        return load_obj(path, device, load_textures)
    if suffix == ".ply":
        mesh = load_ply_mesh(path, device)
        return mesh if load_textures else Meshes(mesh.verts_list(), mesh.faces_list())
    if not path.exists():
        raise FileNotFoundError(path)
    import trimesh

    try:
        tm = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # trimesh raises many kinds (ValueError, KeyError, struct.error, ...)
        raise user_error(path, f"a {suffix[1:].upper()} mesh file", f"a file that does not parse ({exc})") from None
    if not isinstance(tm, trimesh.Trimesh) or len(tm.faces) == 0:
        raise user_error(path, "a mesh with at least one triangle", "no faces")
    verts, faces, tex = _trimesh_textures(tm, device)
    if not np.isfinite(verts).all():
        raise user_error(path, "finite vertex positions", f"{int((~np.isfinite(verts).all(1)).sum())} vertices with nan or inf")
    return Meshes([torch.from_numpy(verts).to(device)], [torch.from_numpy(faces).to(device)],
                  tex if load_textures else None)
