"""Vectorised z-buffer rasterisation of meshes and points (camera conventions: l3d.cameras).

Both rasterisers work the same way: every primitive (triangle or point splat) is paired with the
pixels of its screen bounding box, all pairs of all images are tested at once with tensor ops,
and a per-pixel ``scatter_reduce`` (meshes) or one sort (points) keeps the nearest primitives.
Pairs are processed in bounded chunks, so memory stays flat for large images or batches.

Selection runs without autograd; the winning primitives' barycentrics, depths and distances are
then recomputed with autograd, so gradients reach vertex positions, vertex attributes and
textures (through the barycentric interpolation) and point positions (through the distances).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import torch

from .cameras import PerspectiveCameras, Size, as_hw, ndc_pixel_centers
from .structures import Meshes, Pointclouds, gather_rows

# Upper bound on (primitive, pixel) pairs processed at once (about 40 bytes each per temporary).
MAX_PAIRS = 1 << 22


@dataclass(frozen=True)
class Fragments:
    """Result of :func:`rasterize_meshes` (one face per pixel).

    Attributes:
        pix_to_face: (N, H, W) long index into ``meshes.faces_packed()`` of the nearest face,
            -1 where no face covers the pixel centre.
        zbuf: (N, H, W) view-space depth Z of that face at the pixel centre, -1 for background.
        bary_coords: (N, H, W, 3) perspective-correct barycentric coordinates of the pixel
            centre in that face (0 for background).
        hit_pixels: optional (Q,) ascending flat indices of the covered pixels (what
            :meth:`hits` returns; the rasteriser fills it so that shading skips a full-image scan).
    """

    pix_to_face: torch.Tensor
    zbuf: torch.Tensor
    bary_coords: torch.Tensor
    hit_pixels: Optional[torch.Tensor] = field(default=None, compare=False, repr=False)

    @property
    def mask(self) -> torch.Tensor:
        """(N, H, W) bool, True where a face was hit."""
        return self.pix_to_face >= 0

    def hits(self) -> torch.Tensor:
        """(Q,) ascending flat indices (into N * H * W) of the covered pixels."""
        if self.hit_pixels is not None:
            return self.hit_pixels
        return torch.nonzero(self.pix_to_face.reshape(-1) >= 0).squeeze(1)


@dataclass(frozen=True)
class PointFragments:
    """Result of :func:`rasterize_points`.

    Attributes:
        idx: (N, H, W, K) long index into ``pointclouds.points_packed()`` of the K nearest points
            (by view depth) whose splat covers the pixel centre, -1 padding.
        zbuf: (N, H, W, K) their view depth, -1 padding.
        dists: (N, H, W, K) squared NDC distance from the pixel centre to the projected point,
            -1 padding.
    """

    idx: torch.Tensor
    zbuf: torch.Tensor
    dists: torch.Tensor


# ----------------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------------
def _broadcast_batch(n_items: int, n_cams: int) -> Tuple[int, torch.Tensor]:
    """Number of images and which item each image shows (a batch of 1 is broadcast)."""
    if n_items == n_cams or n_items == 1 or n_cams == 1:
        n = max(n_items, n_cams)
        item = torch.arange(n) if n_items == n else torch.zeros(n, dtype=torch.long)
        return n, item
    raise ValueError(f"cannot pair {n_items} meshes/point clouds with {n_cams} cameras")


def _cam_index(cameras: PerspectiveCameras, n: int) -> torch.Tensor:
    return torch.arange(n) if len(cameras) == n else torch.zeros(n, dtype=torch.long)


def _ndc_to_pix(xy: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """NDC (x, y) -> continuous (col, row) with pixel centres at integers."""
    s = min(h, w) / 2.0
    return torch.stack([w / 2.0 - s * xy[..., 0] - 0.5, h / 2.0 - s * xy[..., 1] - 0.5], dim=-1)


def _bbox_pairs(lo: torch.Tensor, hi: torch.Tensor, h: int, w: int, max_pairs: int):
    """Enumerate (primitive, pixel) pairs of integer pixel bounding boxes, in chunks.

    Args:
        lo, hi: (M, 2) continuous (col, row) box corners; pixels with lo <= centre <= hi count.
    Yields:
        (prim (Q,), col (Q,), row (Q,)) long tensors, Q <= max_pairs (except a single primitive
        bigger than that, which forms its own chunk). A box with a NaN corner covers no pixel
        (NaN has no integer value: cast, it would index outside the image).
    """
    bad = torch.isnan(lo).any(1) | torch.isnan(hi).any(1)
    if bool(bad.any()):
        lo, hi = lo.masked_fill(bad[:, None], float("inf")), hi.masked_fill(bad[:, None], float("-inf"))
    c0 = torch.ceil(lo[:, 0]).clamp(0, w).long()
    r0 = torch.ceil(lo[:, 1]).clamp(0, h).long()
    c1 = torch.floor(hi[:, 0]).clamp(-1, w - 1).long()
    r1 = torch.floor(hi[:, 1]).clamp(-1, h - 1).long()
    bw = (c1 - c0 + 1).clamp(min=0)
    bh = (r1 - r0 + 1).clamp(min=0)
    count = bw * bh  # (M,)
    keep = torch.nonzero(count > 0).squeeze(1)
    if keep.numel() == 0:
        return
    count_k = count[keep]
    cum = torch.cumsum(count_k, 0)
    # chunk boundaries: cut the primitive list where the running pair count passes max_pairs
    chunk_id = torch.div(cum - 1, max_pairs, rounding_mode="floor")
    bounds = torch.searchsorted(chunk_id, torch.unique(chunk_id), right=True).tolist()
    start = 0
    for end in bounds:
        sel = keep[start:end]
        cnt = count_k[start:end]
        total = int(cnt.sum())
        # per-pair values by repeat_interleave of per-primitive values (sequential, no gathers)
        first = torch.cumsum(cnt, 0) - cnt
        k = torch.arange(total, device=lo.device) - torch.repeat_interleave(first, cnt, output_size=total)
        bw_p = torch.repeat_interleave(bw.index_select(0, sel), cnt, output_size=total)
        prim = torch.repeat_interleave(sel, cnt, output_size=total)
        q = torch.div(k, bw_p, rounding_mode="floor")
        col = torch.repeat_interleave(c0.index_select(0, sel), cnt, output_size=total) + (k - q * bw_p)
        row = torch.repeat_interleave(r0.index_select(0, sel), cnt, output_size=total) + q
        yield prim, col, row
        start = end


# ----------------------------------------------------------------------------------------------
# meshes
# ----------------------------------------------------------------------------------------------
def _clip_faces(fv: torch.Tensor, z_clip: float):
    """Clip view-space triangles against the plane Z = z_clip.

    Args:
        fv: (M, 3, 3) view-space corners.
    Returns:
        tri (M', 3, 3) triangles in front of the plane, src (M',) index of the source triangle and
        bary_map (M', 3, 3): row i gives corner i of the new triangle as barycentric weights of
        the source triangle's corners (identity for unclipped triangles).
    """
    behind = fv[..., 2] < z_clip  # (M, 3)
    nb = behind.sum(1)
    eye = torch.eye(3, device=fv.device, dtype=fv.dtype)
    keep0 = torch.nonzero(nb == 0).squeeze(1)
    tris, srcs, maps = [fv[keep0]], [keep0], [eye.expand(len(keep0), 3, 3)]

    def edge_point(a_idx, b_idx, z):
        """Weights (K, 3) of the point where the edge a->b crosses z_clip."""
        za = z.gather(1, a_idx[:, None])[:, 0]
        zb = z.gather(1, b_idx[:, None])[:, 0]
        t = (z_clip - za) / (zb - za)
        wts = torch.zeros(len(a_idx), 3, device=fv.device, dtype=fv.dtype)
        wts.scatter_(1, a_idx[:, None], (1 - t)[:, None])
        wts.scatter_add_(1, b_idx[:, None], t[:, None])
        return wts

    # two corners behind: one smaller triangle (front corner a, then the two edge points)
    two = torch.nonzero(nb == 2).squeeze(1)
    if len(two):
        z = fv[two, :, 2]
        a = (~behind[two]).long().argmax(1)
        b, c = (a + 1) % 3, (a + 2) % 3
        wa = eye[a]
        m2 = torch.stack([wa, edge_point(a, b, z), edge_point(a, c, z)], 1)  # (K, 3, 3)
        tris.append(m2 @ fv[two])
        srcs.append(two)
        maps.append(m2)
    # one corner behind: a quad (a, b, p_bc, p_ac) split into two triangles
    one = torch.nonzero(nb == 1).squeeze(1)
    if len(one):
        z = fv[one, :, 2]
        c = behind[one].long().argmax(1)
        a, b = (c + 1) % 3, (c + 2) % 3
        wa, wb = eye[a], eye[b]
        wbc, wac = edge_point(b, c, z), edge_point(a, c, z)
        m1 = torch.stack([wa, wb, wbc], 1)
        m2 = torch.stack([wa, wbc, wac], 1)
        tris += [m1 @ fv[one], m2 @ fv[one]]
        srcs += [one, one]
        maps += [m1, m2]
    tri, src, bary_map = torch.cat(tris), torch.cat(srcs), torch.cat(maps)
    order = torch.argsort(src, stable=True)  # keep source order so depth ties go to the lower face
    return tri[order], src[order], bary_map[order]


def _float_key(z: torch.Tensor) -> torch.Tensor:
    """Order-preserving int64 key of non-negative float depths (their float32 bit pattern)."""
    return z.float().contiguous().view(torch.int32).long()


def _bary_2d(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Barycentrics of 2-D points p (..., 2) in triangles v (..., 3, 2); degenerate -> inf."""
    v0, v1, v2 = v[..., 0, :], v[..., 1, :], v[..., 2, :]
    e1, e2, d = v1 - v0, v2 - v0, p - v0
    area = e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]
    w1 = (d[..., 0] * e2[..., 1] - d[..., 1] * e2[..., 0]) / area
    w2 = (e1[..., 0] * d[..., 1] - e1[..., 1] * d[..., 0]) / area
    return torch.stack([1 - w1 - w2, w1, w2], dim=-1)


def rasterize_meshes(
    meshes: Meshes,
    cameras: PerspectiveCameras,
    image_size: Size,
    z_clip: Optional[float] = None,
    max_pairs: int = MAX_PAIRS,
) -> Fragments:
    """Hard z-buffer rasterisation: the nearest face (by view depth) at every pixel centre.

    No back-face culling, no blur. Triangles are clipped against the plane ``Z = z_clip``
    (default ``cameras.znear / 2`` as in PyTorch3D, or 1e-5 for cameras without a near plane);
    there is no far clipping. Ties in depth go to the lower face index.

    Args:
        meshes: N meshes; cameras: C cameras. N == C, or either is 1 and is broadcast.
        image_size: int or (H, W).
    Returns:
        :class:`Fragments` of shape (max(N, C), H, W).
    """
    h, w = as_hw(image_size)
    n, item = _broadcast_batch(len(meshes), len(cameras))
    cam = _cam_index(cameras, n).to(cameras.device)
    item = item.to(meshes.device)
    if z_clip is None:
        z_clip = cameras.znear / 2 if getattr(cameras, "znear", None) else 1e-5
    persp = cameras.is_perspective()
    verts, faces = meshes.verts_packed(), meshes.faces_packed()
    nf = meshes.num_faces_per_mesh()[item]  # faces per image
    f_first = meshes.mesh_to_faces_packed_first_idx()[item]
    img_of = torch.repeat_interleave(torch.arange(n, device=verts.device), nf)  # (M,)
    face_of = f_first[img_of] + torch.arange(len(img_of), device=verts.device) - (torch.cumsum(nf, 0) - nf)[img_of]

    # ---- selection (no autograd)
    with torch.no_grad():
        R = cameras.R.index_select(0, cam).index_select(0, img_of)  # (M, 3, 3)
        T = cameras.T.index_select(0, cam).index_select(0, img_of)  # (M, 3)
        fv = torch.bmm(gather_rows(verts, gather_rows(faces, face_of)), R) + T[:, None]  # (M, 3, 3) view
        tri, src, maps = _clip_faces(fv, z_clip)
        t_img = img_of.index_select(0, src)
        fl = cameras.focal_length.index_select(0, cam).index_select(0, t_img)[:, None]
        pp = cameras.principal_point.index_select(0, cam).index_select(0, t_img)[:, None]
        z = tri[..., 2]  # (M', 3)
        pix = _ndc_to_pix((tri[..., :2] / z[..., None] if persp else tri[..., :2]) * fl + pp, h, w)  # (M', 3, 2)
        # pixel-space barycentric planes: bary_k = A[k, 0] col + A[k, 1] row + A[k, 2]
        x, y = pix[..., 0], pix[..., 1]
        area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
        ok = area.abs() > 1e-12
        i1, i2 = [1, 2, 0], [2, 0, 1]
        A = torch.stack([y[:, i1] - y[:, i2], x[:, i2] - x[:, i1], x[:, i1] * y[:, i2] - x[:, i2] * y[:, i1]], -1)
        A = A / torch.where(ok, area, torch.ones_like(area))[:, None, None]  # (M', 3 corners, 3)
        A_col, A_row, A_one = (A[..., j].contiguous() for j in range(3))  # (M', 3) each, contiguous
        inv_z = 1.0 / z
        big = torch.iinfo(torch.int64).max
        best = torch.full((n * h * w,), big, dtype=torch.int64, device=verts.device)
        lo, hi = pix.amin(1), pix.amax(1)
        lo[~ok] = float("inf")  # degenerate triangles produce no pairs
        for prim, col, row in _bbox_pairs(lo, hi, h, w, max_pairs):
            # (A0 col + A1 row) + A2, in that order (pixel centres on an edge stay on the same side)
            b = A_col.index_select(0, prim) * col[:, None].to(A.dtype) \
                + A_row.index_select(0, prim) * row[:, None].to(A.dtype) + A_one.index_select(0, prim)  # (Q, 3)
            inside = torch.nonzero(b.amin(1) >= 0).squeeze(1)
            prim, b = prim.index_select(0, inside), b.index_select(0, inside)
            pix_id = t_img.index_select(0, prim) * (h * w) + row.index_select(0, inside) * w + col.index_select(0, inside)
            if persp:
                zp = 1.0 / (b * inv_z.index_select(0, prim)).sum(1)  # perspective-correct depth
            else:
                zp = (b * z.index_select(0, prim)).sum(1)  # orthographic: depth is affine in screen space
            best.scatter_reduce_(0, pix_id, (_float_key(zp) << 32) | prim, reduce="amin")
        hit_pix = torch.nonzero(best != big).squeeze(1)
        win = best.index_select(0, hit_pix) & 0xFFFFFFFF  # winning clipped-triangle index

    # ---- recompute the winners' barycentrics with autograd
    win_face = face_of.index_select(0, src.index_select(0, win))
    win_img = torch.div(hit_pix, h * w, rounding_mode="floor")
    wcam = cam.index_select(0, win_img)
    R, T = cameras.R.index_select(0, wcam), cameras.T.index_select(0, wcam)
    fv = torch.bmm(gather_rows(verts, gather_rows(faces, win_face)), R) + T[:, None]  # (Q, 3, 3)
    win_maps = maps.index_select(0, win)
    tv = torch.bmm(win_maps, fv)  # corners of the (possibly clipped) winning triangles
    ndc = (tv[..., :2] / tv[..., 2:3] if persp else tv[..., :2]) * cameras.focal_length.index_select(0, wcam)[:, None] \
        + cameras.principal_point.index_select(0, wcam)[:, None]  # (Q, 3, 2)
    grid = ndc_pixel_centers((h, w), device=verts.device, dtype=verts.dtype).reshape(-1, 2)
    b2 = _bary_2d(grid.index_select(0, hit_pix % (h * w)), ndc)  # screen-space barycentrics (Q, 3)
    if persp:
        bz = b2 / tv[..., 2]
        zq = 1.0 / bz.sum(1)
        bary_new = bz * zq[:, None]  # perspective-correct in the clipped triangle
    else:
        bary_new, zq = b2, (b2 * tv[..., 2]).sum(1)
    bary = torch.bmm(bary_new[:, None, :], win_maps)[:, 0]  # weights of the face's corners

    # fresh buffers filled in place (autograd records the copies into them)
    pix_to_face = torch.full((n * h * w,), -1, dtype=torch.long, device=verts.device).index_copy_(0, hit_pix, win_face)
    zbuf = torch.full((n * h * w,), -1.0, dtype=verts.dtype, device=verts.device).index_copy_(0, hit_pix, zq)
    bary_out = torch.zeros(n * h * w, 3, dtype=verts.dtype, device=verts.device).index_copy_(0, hit_pix, bary)
    return Fragments(pix_to_face.view(n, h, w), zbuf.view(n, h, w), bary_out.view(n, h, w, 3), hit_pix)


# ----------------------------------------------------------------------------------------------
# points
# ----------------------------------------------------------------------------------------------
def rasterize_points(
    pointclouds: Pointclouds,
    cameras: PerspectiveCameras,
    image_size: Size,
    radius: float = 0.01,
    points_per_pixel: int = 8,
    max_pairs: int = MAX_PAIRS,
) -> PointFragments:
    """The K nearest points (by view depth) whose disc of ``radius`` (NDC) covers each pixel centre.

    Points with negative view depth are skipped.

    Args:
        pointclouds: N clouds; cameras: C cameras (N == C or either is 1).
        image_size: int or (H, W); radius: splat radius in NDC units; points_per_pixel: K.
    Returns:
        :class:`PointFragments` of shape (max(N, C), H, W, K).
    """
    h, w = as_hw(image_size)
    K = points_per_pixel
    n, item = _broadcast_batch(len(pointclouds), len(cameras))
    cam = _cam_index(cameras, n).to(cameras.device)
    item = item.to(pointclouds.device)
    pts = pointclouds.points_packed()
    npts = pointclouds.num_points_per_cloud()[item]
    first = pointclouds.cloud_to_packed_first_idx()[item]
    img_of = torch.repeat_interleave(torch.arange(n, device=pts.device), npts)  # (M,)
    pt_of = first[img_of] + torch.arange(len(img_of), device=pts.device) - (torch.cumsum(npts, 0) - npts)[img_of]
    s = min(h, w) / 2.0
    with torch.no_grad():
        R, T = cameras.R[cam][img_of], cameras.T[cam][img_of]
        pv = torch.einsum("mi,mij->mj", pts[pt_of], R) + T  # (M, 3) view space
        z = pv[:, 2]
        xy = pv[:, :2] / z[:, None] if cameras.is_perspective() else pv[:, :2]
        ndc = xy * cameras.focal_length[cam][img_of] + cameras.principal_point[cam][img_of]
        pix = _ndc_to_pix(ndc, h, w)
        rp = radius * s
        lo, hi = pix - rp, pix + rp
        lo[~(z >= 0)] = float("inf")  # behind the camera (or NaN): no pairs
        grid = ndc_pixel_centers((h, w), device=pts.device, dtype=pts.dtype).reshape(-1, 2)
        keys, sel = [], []
        for prim, col, row in _bbox_pairs(lo, hi, h, w, max_pairs):
            pix_id = img_of[prim] * (h * w) + row * w + col
            d2 = ((grid[row * w + col] - ndc[prim]) ** 2).sum(1)
            inside = d2 < radius * radius
            keys.append((pix_id[inside] << 32) | _float_key(z[prim[inside]]))
            sel.append(prim[inside])
        idx = torch.full((n * h * w, K), -1, dtype=torch.long, device=pts.device)
        if keys:
            key = torch.cat(keys)
            prim = torch.cat(sel)
            key, order = torch.sort(key)
            prim = prim[order]
            pix_id = key >> 32
            # rank of each pair within its pixel (pairs of a pixel are contiguous after the sort)
            starts = torch.ones_like(pix_id, dtype=torch.bool)
            starts[1:] = pix_id[1:] != pix_id[:-1]
            start_pos = torch.cummax(torch.where(starts, torch.arange(len(key), device=key.device), 0), 0).values
            rank = torch.arange(len(key), device=key.device) - start_pos
            keep = rank < K
            idx[pix_id[keep], rank[keep]] = prim[keep]
    valid = idx >= 0
    prim = idx[valid]  # index into the per-image point list
    gp = pt_of[prim]
    im = img_of[prim]
    pv = torch.einsum("mi,mij->mj", pts[gp], cameras.R[cam][im]) + cameras.T[cam][im]
    xy = pv[:, :2] / pv[:, 2:3] if cameras.is_perspective() else pv[:, :2]
    ndc = xy * cameras.focal_length[cam][im] + cameras.principal_point[cam][im]
    grid = ndc_pixel_centers((h, w), device=pts.device, dtype=pts.dtype).reshape(-1, 2)
    pix_flat = torch.nonzero(valid)[:, 0] % (h * w)
    d2 = ((grid[pix_flat] - ndc) ** 2).sum(1)
    out_idx = torch.full_like(idx, -1)
    out_idx[valid] = gp
    zbuf = torch.full(idx.shape, -1.0, dtype=pts.dtype, device=pts.device).index_put((valid,), pv[:, 2])
    dists = torch.full(idx.shape, -1.0, dtype=pts.dtype, device=pts.device).index_put((valid,), d2)
    shape = (n, h, w, K)
    return PointFragments(out_idx.view(shape), zbuf.view(shape), dists.view(shape))
