"""Batched meshes and point clouds, with vertex-colour and UV textures.

A batch of N meshes (or point clouds) of different sizes is stored *packed*: all vertices of all
meshes concatenated, ``(sum V_i, 3)``, faces indexing into that packed vertex list, and the
per-item sizes. Padded views ``(N, max V_i, ...)`` are derived on demand, padded with 0 for
float data and -1 for face indices. Nothing here loops over vertices or faces; the only Python
loops are over the N items when the user hands in lists.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .validate import check_shape

TensorOrList = Union[torch.Tensor, Sequence[torch.Tensor]]


# ----------------------------------------------------------------------------------------------
# packing helpers
# ----------------------------------------------------------------------------------------------
def _to_list(x: TensorOrList, name: str, width: int, pad_value: float = 0) -> List[torch.Tensor]:
    """A list of (L_i, width) tensors from a list or from a padded (N, L, width) tensor.

    A padded tensor is taken whole (no rows are trimmed) unless ``pad_value == -1``, in which
    case rows whose entries are all -1 (face padding) are dropped.
    """
    if torch.is_tensor(x):
        check_shape(x, ("N", None, width), name)
        if pad_value == -1:
            return [xi[(xi != -1).any(dim=-1)] for xi in x]
        return list(x.unbind(0))
    items = list(x)
    if not items:
        raise ValueError(f"{name} must hold at least one item")
    for i, xi in enumerate(items):
        check_shape(xi, (None, width), f"{name}[{i}]")
    return items


def gather_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[idx]`` for a long index tensor of any shape, via ``index_select``.

    Equivalent to advanced indexing along the first dimension but several times faster on CPU
    (and differentiable w.r.t. ``x`` all the same). Returns ``idx.shape + x.shape[1:]``.
    """
    return x.index_select(0, idx.reshape(-1)).view(*idx.shape, *x.shape[1:])


def packed_to_padded(x: torch.Tensor, lengths: torch.Tensor, pad_value: float = 0) -> torch.Tensor:
    """Scatter a packed ``(sum L_i, ...)`` tensor into a padded ``(N, max L_i, ...)`` tensor."""
    n = lengths.shape[0]
    lmax = int(lengths.max()) if n else 0
    out = x.new_full((n, lmax) + tuple(x.shape[1:]), pad_value)
    item = torch.repeat_interleave(torch.arange(n, device=x.device), lengths)  # (sum L,)
    first = torch.cumsum(lengths, 0) - lengths
    pos = torch.arange(x.shape[0], device=x.device) - first[item]
    out[item, pos] = x
    return out


def padded_to_packed(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Gather the first ``lengths[i]`` rows of each item of a padded tensor into a packed one."""
    n, lmax = x.shape[:2]
    mask = torch.arange(lmax, device=x.device)[None, :] < lengths[:, None]  # (N, Lmax)
    return x[mask]


# ----------------------------------------------------------------------------------------------
# textures
# ----------------------------------------------------------------------------------------------
class TexturesVertex:
    """Per-vertex features (usually RGB in [0, 1]) interpolated with barycentrics.

    Args:
        verts_features: list of (V_i, C) tensors or a padded (N, V, C) tensor.
    """

    def __init__(self, verts_features: TensorOrList):
        items = _to_list(verts_features, "verts_features", None)  # type: ignore[arg-type]
        self._packed = torch.cat(items, 0)  # (sum V, C)
        self._lengths = torch.tensor([len(t) for t in items], device=self._packed.device)

    def verts_features_packed(self) -> torch.Tensor:
        return self._packed

    def verts_features_padded(self) -> torch.Tensor:
        return packed_to_padded(self._packed, self._lengths)

    def faces_features_packed(self, meshes: "Meshes") -> torch.Tensor:
        """(F, 3, C): the features of the three corners of every packed face."""
        return gather_rows(self._packed, meshes.faces_packed())

    def sample(self, meshes: "Meshes", pix_to_face: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
        """Interpolate vertex features at surface points.

        Args:
            pix_to_face: (...) long packed face index (e.g. per pixel), -1 for none.
            bary: (..., 3) barycentrics in that face.
        Returns:
            (..., C) features, 0 where ``pix_to_face`` is -1.
        """
        return interpolate_face_attributes(pix_to_face, bary, self.faces_features_packed(meshes))

    def extend(self, n: int) -> "TexturesVertex":
        return TexturesVertex([t for t in self._split() for _ in range(n)])

    def _split(self) -> List[torch.Tensor]:
        return list(torch.split(self._packed, self._lengths.tolist()))

    def to(self, device) -> "TexturesVertex":
        return TexturesVertex([t.to(device) for t in self._split()])

    def __getitem__(self, i: int) -> "TexturesVertex":
        return TexturesVertex([self._split()[i]])


class TexturesUV:
    """An image texture per mesh, addressed by per-corner UV coordinates.

    UV (0, 0) is the bottom-left of the image (v is flipped when sampling), sampling is bilinear
    with ``align_corners=True`` and border padding; coordinates outside [0, 1] are expected to
    have been wrapped at load time (``repeat``), as :func:`l3d.io.load_obj` does.

    Args:
        maps: (N, Ht, Wt, C) texture images in [0, 1].
        faces_uvs: list of (F_i, 3) long tensors or padded (N, F, 3): per face corner, an index
            into that mesh's ``verts_uvs``.
        verts_uvs: list of (T_i, 2) tensors or padded (N, T, 2) UV coordinates.
    """

    def __init__(self, maps: torch.Tensor, faces_uvs: TensorOrList, verts_uvs: TensorOrList):
        check_shape(maps, ("N", None, None, None), "maps")
        self.maps = maps
        self._faces = _to_list(faces_uvs, "faces_uvs", 3, pad_value=-1)
        self._uvs = _to_list(verts_uvs, "verts_uvs", 2)
        if not (len(self._faces) == len(self._uvs) == maps.shape[0]):
            raise ValueError(
                f"maps, faces_uvs and verts_uvs must have the same batch size, got "
                f"{maps.shape[0]}, {len(self._faces)}, {len(self._uvs)}"
            )
        t_len = torch.tensor([len(u) for u in self._uvs], device=maps.device)
        offsets = torch.cumsum(t_len, 0) - t_len
        self._faces_uvs_packed = torch.cat([f + o for f, o in zip(self._faces, offsets)], 0)
        self._verts_uvs_packed = torch.cat(self._uvs, 0)

    def faces_uvs_list(self) -> List[torch.Tensor]:
        return self._faces

    def verts_uvs_list(self) -> List[torch.Tensor]:
        return self._uvs

    def faces_verts_uvs_packed(self) -> torch.Tensor:
        """(F, 3, 2): UV coordinates of the three corners of every packed face."""
        return gather_rows(self._verts_uvs_packed, self._faces_uvs_packed)

    def sample(self, meshes: "Meshes", pix_to_face: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
        """Bilinearly sample each face's texture image at surface points.

        Args:
            pix_to_face: (...) long packed face index (e.g. per pixel), -1 for none.
            bary: (..., 3) barycentrics in that face.
        Returns:
            (..., C) texels (differentiable w.r.t. ``maps``), 0 where ``pix_to_face`` is -1.
        """
        valid = pix_to_face >= 0
        uv = interpolate_face_attributes(pix_to_face, bary, self.faces_verts_uvs_packed())  # (..., 2)
        if self.maps.shape[0] == 1:
            mesh_idx = torch.zeros_like(pix_to_face)
        else:
            mesh_idx = gather_rows(meshes.faces_packed_to_mesh_idx(), pix_to_face.clamp(min=0))
        _, ht, wt, _ = self.maps.shape
        # align_corners=True: u = 0 / 1 are the centres of the first / last texel column;
        # v is flipped (v = 0 is the bottom row); border padding
        x = (uv[..., 0] * (wt - 1)).clamp(0, wt - 1)
        y = ((1 - uv[..., 1]) * (ht - 1)).clamp(0, ht - 1)
        x0 = x.detach().floor().long().clamp(max=wt - 2) if wt > 1 else torch.zeros_like(x, dtype=torch.long)
        y0 = y.detach().floor().long().clamp(max=ht - 2) if ht > 1 else torch.zeros_like(y, dtype=torch.long)
        fx, fy = (x - x0)[..., None], (y - y0)[..., None]
        x1, y1 = (x0 + 1).clamp(max=wt - 1), (y0 + 1).clamp(max=ht - 1)
        flat = self.maps.reshape(-1, self.maps.shape[-1])  # (N * Ht * Wt, C)
        row0, row1 = (mesh_idx * ht + y0) * wt, (mesh_idx * ht + y1) * wt
        top = gather_rows(flat, row0 + x0) * (1 - fx) + gather_rows(flat, row0 + x1) * fx
        bot = gather_rows(flat, row1 + x0) * (1 - fx) + gather_rows(flat, row1 + x1) * fx
        out = top * (1 - fy) + bot * fy
        return out * valid[..., None].to(out.dtype)

    def extend(self, n: int) -> "TexturesUV":
        idx = torch.arange(len(self._faces)).repeat_interleave(n)
        return TexturesUV(
            self.maps[idx.to(self.maps.device)],
            [self._faces[i] for i in idx.tolist()],
            [self._uvs[i] for i in idx.tolist()],
        )

    def to(self, device) -> "TexturesUV":
        return TexturesUV(
            self.maps.to(device), [f.to(device) for f in self._faces], [u.to(device) for u in self._uvs]
        )

    def __getitem__(self, i: int) -> "TexturesUV":
        return TexturesUV(self.maps[i : i + 1], [self._faces[i]], [self._uvs[i]])


Textures = Union[TexturesVertex, TexturesUV]


def interpolate_face_attributes(
    pix_to_face: torch.Tensor, bary: torch.Tensor, face_attrs: torch.Tensor
) -> torch.Tensor:
    """Barycentric interpolation of per-face-corner attributes at pixels.

    Args:
        pix_to_face: (..., ) long packed face index per pixel, -1 where no face.
        bary: (..., 3) barycentric coordinates.
        face_attrs: (F, 3, D) attribute of each corner of each face.
    Returns:
        (..., D) interpolated attributes, 0 where ``pix_to_face`` is -1.
    """
    valid = pix_to_face >= 0
    corners = gather_rows(face_attrs, pix_to_face.clamp(min=0))  # (..., 3, D)
    out = (bary[..., None] * corners).sum(dim=-2)
    return out * valid[..., None].to(out.dtype)


# ----------------------------------------------------------------------------------------------
# meshes
# ----------------------------------------------------------------------------------------------
class Meshes:
    """A batch of N triangle meshes.

    Args:
        verts: list of (V_i, 3) float tensors, or a padded (N, V, 3) tensor (all rows used).
        faces: list of (F_i, 3) long tensors indexing the item's own vertices (0-based), or a
            padded (N, F, 3) tensor where padding rows are all -1.
        textures: optional :class:`TexturesVertex` or :class:`TexturesUV` with the same N.
    """

    def __init__(self, verts: TensorOrList, faces: TensorOrList, textures: Optional[Textures] = None):
        vl = _to_list(verts, "verts", 3)
        fl = _to_list(faces, "faces", 3, pad_value=-1)
        if len(vl) != len(fl):
            raise ValueError(f"verts and faces must have the same batch size, got {len(vl)} and {len(fl)}")
        device = vl[0].device
        self._num_verts = torch.tensor([len(v) for v in vl], device=device, dtype=torch.long)
        self._num_faces = torch.tensor([len(f) for f in fl], device=device, dtype=torch.long)
        for i, (v, f) in enumerate(zip(vl, fl)):
            if f.numel() and (int(f.max()) >= len(v) or int(f.min()) < 0):
                raise ValueError(
                    f"faces[{i}] index vertices outside [0, {len(v) - 1}] "
                    f"(min {int(f.min())}, max {int(f.max())})"
                )
        self._verts_packed = torch.cat(vl, 0)
        voff = torch.cumsum(self._num_verts, 0) - self._num_verts
        self._faces_packed = torch.cat([f.long() + o for f, o in zip(fl, voff)], 0)
        self.textures = textures
        self._cache: dict = {}

    # ---- sizes and indices
    def __len__(self) -> int:
        return int(self._num_verts.shape[0])

    @property
    def device(self) -> torch.device:
        return self._verts_packed.device

    def num_verts_per_mesh(self) -> torch.Tensor:
        return self._num_verts

    def num_faces_per_mesh(self) -> torch.Tensor:
        return self._num_faces

    def mesh_to_verts_packed_first_idx(self) -> torch.Tensor:
        return torch.cumsum(self._num_verts, 0) - self._num_verts

    def mesh_to_faces_packed_first_idx(self) -> torch.Tensor:
        return torch.cumsum(self._num_faces, 0) - self._num_faces

    def verts_packed_to_mesh_idx(self) -> torch.Tensor:
        return torch.repeat_interleave(torch.arange(len(self), device=self.device), self._num_verts)

    def faces_packed_to_mesh_idx(self) -> torch.Tensor:
        return torch.repeat_interleave(torch.arange(len(self), device=self.device), self._num_faces)

    def image_to_mesh_idx(self, n_images: int) -> torch.Tensor:
        """Which mesh each of ``n_images`` renders shows (a batch of 1 is broadcast)."""
        if len(self) == 1:
            return torch.zeros(n_images, dtype=torch.long, device=self.device)
        if len(self) != n_images:
            raise ValueError(f"{len(self)} meshes cannot be rendered into {n_images} images")
        return torch.arange(n_images, device=self.device)

    # ---- geometry
    def verts_packed(self) -> torch.Tensor:
        """(sum V_i, 3) all vertices."""
        return self._verts_packed

    def faces_packed(self) -> torch.Tensor:
        """(sum F_i, 3) long, indices into :meth:`verts_packed`."""
        return self._faces_packed

    def verts_list(self) -> List[torch.Tensor]:
        return list(torch.split(self._verts_packed, self._num_verts.tolist()))

    def faces_list(self) -> List[torch.Tensor]:
        off = self.mesh_to_verts_packed_first_idx()
        fl = torch.split(self._faces_packed, self._num_faces.tolist())
        return [f - o for f, o in zip(fl, off)]

    def verts_padded(self) -> torch.Tensor:
        """(N, max V_i, 3), zero padded."""
        return packed_to_padded(self._verts_packed, self._num_verts)

    def faces_padded(self) -> torch.Tensor:
        """(N, max F_i, 3), per-mesh vertex indices, padded with -1."""
        local = self._faces_packed - self.mesh_to_verts_packed_first_idx()[self.faces_packed_to_mesh_idx()][:, None]
        return packed_to_padded(local, self._num_faces, pad_value=-1)

    def faces_verts_packed(self) -> torch.Tensor:
        """(F, 3, 3): the three corner positions of every packed face."""
        return gather_rows(self._verts_packed, self._faces_packed)

    def faces_normals_packed(self, normalize: bool = True) -> torch.Tensor:
        """(F, 3) face normals ``(v1 - v0) x (v2 - v0)``; unnormalised they are 2 x area x n."""
        fv = self.faces_verts_packed()
        n = torch.cross(fv[:, 1] - fv[:, 0], fv[:, 2] - fv[:, 0], dim=-1)
        return F.normalize(n, dim=-1, eps=1e-12) if normalize else n

    def faces_areas_packed(self) -> torch.Tensor:
        """(F,) triangle areas."""
        return 0.5 * self.faces_normals_packed(normalize=False).norm(dim=-1)

    def verts_normals_packed(self) -> torch.Tensor:
        """(sum V_i, 3) vertex normals: normalised sum of area-weighted normals of adjacent faces."""
        fn = self.faces_normals_packed(normalize=False)  # (F, 3), length = 2 x area
        acc = torch.zeros_like(self._verts_packed)
        acc = acc.index_add(0, self._faces_packed.reshape(-1), fn.repeat_interleave(3, dim=0))
        return F.normalize(acc, dim=-1, eps=1e-6)

    def verts_normals_padded(self) -> torch.Tensor:
        return packed_to_padded(self.verts_normals_packed(), self._num_verts)

    def edges_packed(self) -> torch.Tensor:
        """(E, 2) long unique undirected edges (sorted pairs) of the packed mesh."""
        f = self._faces_packed
        e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], 0)
        e, _ = e.sort(dim=1)
        # unique rows through a 1-D key (a * V + b sorts like the rows): many times faster than
        # torch.unique(dim=0), which mattered in training loops that rebuild meshes every step
        nv = max(int(self._verts_packed.shape[0]), 1)
        key = torch.unique(e[:, 0] * nv + e[:, 1])
        return torch.stack([torch.div(key, nv, rounding_mode="floor"), key % nv], dim=1)

    def get_bounding_boxes(self) -> torch.Tensor:
        """(N, 3, 2) per-mesh [min, max] along x, y, z."""
        v = self.verts_padded()
        valid = (torch.arange(v.shape[1], device=v.device)[None] < self._num_verts[:, None])[..., None]
        lo = torch.where(valid, v, torch.full_like(v, float("inf"))).amin(1)
        hi = torch.where(valid, v, torch.full_like(v, float("-inf"))).amax(1)
        return torch.stack([lo, hi], dim=-1)

    # ---- derived meshes
    def update_padded(self, new_verts_padded: torch.Tensor) -> "Meshes":
        """A mesh with the same faces and textures and new (N, V, 3) vertex positions."""
        check_shape(new_verts_padded, (len(self), None, 3), "new_verts_padded")
        return self.with_verts_packed(padded_to_packed(new_verts_padded, self._num_verts))

    def offset_verts(self, offsets_packed: torch.Tensor) -> "Meshes":
        """A mesh whose packed vertices are moved by ``offsets_packed`` (sum V_i, 3)."""
        check_shape(offsets_packed, (self._verts_packed.shape[0], 3), "offsets_packed")
        return self.with_verts_packed(self._verts_packed + offsets_packed)

    def with_verts_packed(self, verts_packed: torch.Tensor) -> "Meshes":
        out = Meshes.__new__(Meshes)
        out._num_verts, out._num_faces = self._num_verts, self._num_faces
        out._verts_packed, out._faces_packed = verts_packed, self._faces_packed
        out.textures, out._cache = self.textures, {}
        return out

    def extend(self, n: int) -> "Meshes":
        """Each mesh repeated ``n`` times (mesh i becomes items i*n .. i*n+n-1)."""
        vl, fl = self.verts_list(), self.faces_list()
        tex = self.textures.extend(n) if self.textures is not None else None
        return Meshes([v for v in vl for _ in range(n)], [f for f in fl for _ in range(n)], tex)

    def __getitem__(self, i: int) -> "Meshes":
        tex = self.textures[i] if self.textures is not None else None
        return Meshes([self.verts_list()[i]], [self.faces_list()[i]], tex)

    def to(self, device) -> "Meshes":
        tex = self.textures.to(device) if self.textures is not None else None
        return Meshes([v.to(device) for v in self.verts_list()], [f.to(device) for f in self.faces_list()], tex)

    def detach(self) -> "Meshes":
        return self.with_verts_packed(self._verts_packed.detach())

    def clone(self) -> "Meshes":
        return self.with_verts_packed(self._verts_packed.clone())


def join_meshes_as_scene(meshes: Sequence[Meshes]) -> Meshes:
    """One mesh made of all meshes of the list (first items of each batch), with vertex textures.

    All inputs must carry :class:`TexturesVertex` (or none, then white is used).
    """
    verts, faces, cols = [], [], []
    offset = 0
    for m in meshes:
        v, f = m.verts_packed(), m.faces_packed()
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
        if isinstance(m.textures, TexturesVertex):
            cols.append(m.textures.verts_features_packed())
        elif m.textures is None:
            cols.append(torch.ones_like(v))
        else:
            raise ValueError("join_meshes_as_scene supports vertex-colour textures only")
    return Meshes([torch.cat(verts)], [torch.cat(faces)], TexturesVertex([torch.cat(cols)]))


# ----------------------------------------------------------------------------------------------
# point clouds
# ----------------------------------------------------------------------------------------------
class Pointclouds:
    """A batch of N point clouds with optional per-point features (e.g. RGB).

    Args:
        points: list of (P_i, 3) tensors or a padded (N, P, 3) tensor (all rows used).
        features: optional list of (P_i, C) tensors or (N, P, C) tensor.
    """

    def __init__(self, points: TensorOrList, features: Optional[TensorOrList] = None):
        pl = _to_list(points, "points", 3)
        self._lengths = torch.tensor([len(p) for p in pl], device=pl[0].device, dtype=torch.long)
        self._points_packed = torch.cat(pl, 0)
        self._features_packed = None
        if features is not None:
            fl = _to_list(features, "features", None)  # type: ignore[arg-type]
            if [len(f) for f in fl] != [len(p) for p in pl]:
                raise ValueError("features must have one row per point of each cloud")
            self._features_packed = torch.cat(fl, 0)

    def __len__(self) -> int:
        return int(self._lengths.shape[0])

    @property
    def device(self) -> torch.device:
        return self._points_packed.device

    def num_points_per_cloud(self) -> torch.Tensor:
        return self._lengths

    def points_packed(self) -> torch.Tensor:
        return self._points_packed

    def features_packed(self) -> Optional[torch.Tensor]:
        return self._features_packed

    def packed_to_cloud_idx(self) -> torch.Tensor:
        return torch.repeat_interleave(torch.arange(len(self), device=self.device), self._lengths)

    def cloud_to_packed_first_idx(self) -> torch.Tensor:
        return torch.cumsum(self._lengths, 0) - self._lengths

    def points_padded(self) -> torch.Tensor:
        return packed_to_padded(self._points_packed, self._lengths)

    def features_padded(self) -> Optional[torch.Tensor]:
        if self._features_packed is None:
            return None
        return packed_to_padded(self._features_packed, self._lengths)

    def points_list(self) -> List[torch.Tensor]:
        return list(torch.split(self._points_packed, self._lengths.tolist()))

    def features_list(self) -> Optional[List[torch.Tensor]]:
        if self._features_packed is None:
            return None
        return list(torch.split(self._features_packed, self._lengths.tolist()))

    def extend(self, n: int) -> "Pointclouds":
        pl, fl = self.points_list(), self.features_list()
        return Pointclouds(
            [p for p in pl for _ in range(n)], None if fl is None else [f for f in fl for _ in range(n)]
        )

    def to(self, device) -> "Pointclouds":
        fl = self.features_list()
        return Pointclouds([p.to(device) for p in self.points_list()],
                           None if fl is None else [f.to(device) for f in fl])

    def __getitem__(self, i: int) -> "Pointclouds":
        fl = self.features_list()
        return Pointclouds([self.points_list()[i]], None if fl is None else [fl[i]])
