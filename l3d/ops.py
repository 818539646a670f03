"""Geometry ops: nearest neighbours, chamfer distance, surface sampling, Laplacian smoothing,
the ico-sphere and a marching-cubes wrapper.

Everything follows PyTorch3D's conventions (``spec/conventions.md`` of the course material):
knn returns *squared* distances, the chamfer distance is the sum of the two mean squared
nearest-neighbour distances, surface sampling is area weighted with the barycentrics
``w0 = 1 - sqrt(u)``, ``w1 = sqrt(u) (1 - v)``, ``w2 = sqrt(u) v``.

Dimension letters are those of :mod:`l3d` (N batch, P points, V vertices, F faces, K neighbours,
S samples, D coordinates). Ragged batches of point sets are padded tensors plus ``lengths``.
Every op takes its device and dtype from its inputs and runs unchanged on CUDA; the only
CPU-bound parts are the optional SciPy KD-tree search (CPU tensors only) and PyMCubes.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .structures import Meshes, Pointclouds, packed_to_padded
from .validate import check_shape

__all__ = [
    "KNN",
    "knn_points",
    "knn_gather",
    "chamfer_distance",
    "sample_points_from_meshes",
    "uniform_laplacian",
    "mesh_laplacian_smoothing",
    "ico_sphere",
    "marching_cubes",
    "flip_faces",
]

KnnBackend = Literal["auto", "brute", "kdtree"]

# bytes of the (rows x P2) distance block the brute-force search materialises at once
_BRUTE_CHUNK_BYTES = 256 * 2**20
# "auto" uses the KD-tree on CPU when N * P1 * P2 reaches this many point pairs (and D is small)
_KDTREE_MIN_PAIRS = 2**21
_KDTREE_MAX_DIM = 8
_KDTREE_WORKERS = -1  # query threads: all cores
_KDTREE_LEAFSIZE = 32  # a little faster than SciPy's default 16 for k = 1 queries in 3-D


# ----------------------------------------------------------------------------------------------
# nearest neighbours
# ----------------------------------------------------------------------------------------------
class KNN(NamedTuple):
    """Result of :func:`knn_points`.

    Attributes:
        dists: (N, P1, K) float, squared Euclidean distance from ``p1[n, i]`` to its k-th
            nearest neighbour in ``p2[n]``, ascending in k; differentiable w.r.t. p1 and p2.
            0 where ``idx`` is -1.
        idx: (N, P1, K) long, index into ``p2[n]`` (0 <= idx < lengths2[n]) of that neighbour;
            -1 where there is none (k >= lengths2[n], or i >= lengths1[n]).
        knn: (N, P1, K, D) the neighbours' coordinates (``knn_gather(p2, idx)``, 0 where idx is
            -1) when ``return_nn=True``, else None.
    """

    dists: torch.Tensor
    idx: torch.Tensor
    knn: Optional[torch.Tensor]


def _lengths_or_full(lengths: Optional[torch.Tensor], n: int, p: int, device, name: str) -> torch.Tensor:
    """(N,) long lengths, ``p`` for every item when None; validated against the padded size."""
    if lengths is None:
        return torch.full((n,), p, dtype=torch.long, device=device)
    check_shape(lengths, (n,), name)
    lengths = lengths.to(device=device, dtype=torch.long)
    if n and (int(lengths.min()) < 0 or int(lengths.max()) > p):
        raise ValueError(f"{name} must lie in [0, {p}], got min {int(lengths.min())}, max {int(lengths.max())}")
    return lengths


def _check_pair(p1: torch.Tensor, p2: torch.Tensor, name1: str, name2: str) -> None:
    if p1.device != p2.device:
        raise ValueError(f"{name1} and {name2} must be on the same device, got {p1.device} and {p2.device}")
    if not p1.is_floating_point() or p1.dtype != p2.dtype:
        raise ValueError(f"{name1} and {name2} must share a floating dtype, got {p1.dtype} and {p2.dtype}")


def knn_gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Gather neighbour features by index.

    Args:
        x: (N, P2, D) float tensor, per-item point features (usually coordinates).
        idx: (N, P1, K) long tensor of indices into ``x[n]``, as returned by :func:`knn_points`;
            entries of -1 mean "no neighbour".

    Returns:
        (N, P1, K, D) tensor with ``out[n, i, k] = x[n, idx[n, i, k]]``, and 0 where
        ``idx[n, i, k] == -1``. Differentiable w.r.t. ``x``.
    """
    check_shape(x, ("N", "P2", "D"), "x")
    check_shape(idx, (x.shape[0], "P1", "K"), "idx")
    n, p1, k = idx.shape
    d = x.shape[2]
    valid = idx >= 0  # (N, P1, K)
    flat = idx.clamp(min=0).reshape(n, p1 * k, 1).expand(n, p1 * k, d)
    if x.shape[1] == 0:  # nothing to gather from: every index must be -1
        return x.new_zeros((n, p1, k, d))
    out = torch.gather(x, 1, flat).reshape(n, p1, k, d)
    return out * valid[..., None].to(out.dtype)


def _brute_knn_idx(
    p1: torch.Tensor,
    p2: torch.Tensor,
    lengths1: torch.Tensor,
    lengths2: torch.Tensor,
    K: int,
    both_ways: bool = False,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Exact K nearest indices by chunked ``|a|^2 - 2 a.b + |b|^2`` + top-k, without grad.

    Returns ``(idx12, idx21)``: (N, P1, K) long indices into p2, -1 where k >= lengths2[n] or
    i >= lengths1[n]; and, when ``both_ways``, the (N, P2, K) indices of p2's neighbours in p1
    (a second pass: a column arg-min of the same blocks is several times slower on CPU), else
    None. The search runs in the inputs' dtype on their device, each item centred on the mean
    of its p2 points; in float32, distances that differ by less than about 1e-6 relative may be
    ordered either way.
    """
    previous = torch.get_float32_matmul_precision()
    if previous != "highest":  # TF32 matmuls (CUDA) would mis-rank near neighbours
        torch.set_float32_matmul_precision("highest")
    try:
        idx12 = _brute_one_way(p1, p2, lengths1, lengths2, K)
        return idx12, (_brute_one_way(p2, p1, lengths2, lengths1, K) if both_ways else None)
    finally:
        if previous != "highest":
            torch.set_float32_matmul_precision(previous)


def _brute_one_way(
    p1: torch.Tensor, p2: torch.Tensor, lengths1: torch.Tensor, lengths2: torch.Tensor, K: int
) -> torch.Tensor:
    n, p1n, d = p1.shape
    p2n = p2.shape[1]
    device = p1.device
    idx12 = torch.full((n, p1n, K), -1, dtype=torch.long, device=device)
    if p2n == 0 or p1n == 0 or n == 0:
        return idx12
    valid1 = torch.arange(p1n, device=device)[None, :] < lengths1[:, None]  # (N, P1)
    valid2 = torch.arange(p2n, device=device)[None, :] < lengths2[:, None]  # (N, P2)
    # centre every item on the mean of its valid p2 points: keeps the expansion accurate
    cnt = valid2.sum(1, keepdim=True).clamp(min=1).to(p2.dtype)  # (N, 1)
    centre = (p2 * valid2[..., None].to(p2.dtype)).sum(1) / cnt  # (N, D)
    a_all = p1 - centre[:, None]
    b_all = p2 - centre[:, None]
    a2_all = (a_all * a_all).sum(-1)  # (N, P1)
    b2_all = (b_all * b_all).sum(-1).masked_fill(~valid2, float("inf"))  # padded columns never win
    k_eff = min(K, p2n)

    # large blocks: on CPU the per-op overhead dominates below a few MB
    itemsize = max(p1.element_size(), 4)
    pairs_budget = max(1, _BRUTE_CHUNK_BYTES // (p2n * itemsize))  # (item, row) pairs per chunk
    if pairs_budget >= p1n:
        batch_chunk, row_chunk = max(1, pairs_budget // p1n), p1n
    else:
        batch_chunk, row_chunk = 1, pairs_budget
    for b0 in range(0, n, batch_chunk):
        b1 = min(n, b0 + batch_chunk)
        b = b_all[b0:b1]  # (n', P2, D)
        b2 = b2_all[b0:b1]  # (n', P2)
        for r0 in range(0, p1n, row_chunk):
            r1 = min(p1n, r0 + row_chunk)
            a = a_all[b0:b1, r0:r1]  # (n', r, D)
            dist = torch.baddbmm(b2[:, None, :], a, b.transpose(1, 2), alpha=-2.0)  # (n', r, P2)
            dist += a2_all[b0:b1, r0:r1, None]
            if k_eff == 1:  # argmin + gather: min(dim) with indices is far slower on small CPU blocks
                ik = dist.argmin(dim=-1, keepdim=True)  # (n', r, 1)
                dk = dist.gather(-1, ik)
            else:
                dk, ik = torch.topk(dist, k_eff, dim=-1, largest=False, sorted=True)  # (n', r, K)
            idx12[b0:b1, r0:r1, :k_eff] = ik.masked_fill(torch.isinf(dk), -1)
    kk = torch.arange(K, device=device)
    return idx12.masked_fill((kk[None, None, :] >= lengths2[:, None, None]) | ~valid1[..., None], -1)


def _kdtree_knn_idx(
    p1: torch.Tensor,
    p2: torch.Tensor,
    lengths1: torch.Tensor,
    lengths2: torch.Tensor,
    K: int,
    both_ways: bool = False,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Exact K nearest indices with SciPy cKDTrees spanning the whole batch.

    Item b's points (of both sets) are shifted by ``b * s`` along the first coordinate, with
    ``s`` larger than the item extent plus twice its diameter, so that any point of another item
    is farther than every point of the query's own item; queries are limited to one diameter
    (``distance_upper_bound``), which lets the tree discard the other items early. One tree over
    all valid p2 points is built and queried once (``workers=-1``: all cores), and the packed
    indices are mapped back to per-item indices. With ``both_ways`` a second tree, over p1, is
    built alongside (in a second thread) and p2 is queried against it. Returns ``(idx12 (N, P1, K), idx21 (N, P2, K) or
    None)``, long, -1 where there is no neighbour and for padded query rows.
    """
    from scipy.spatial import cKDTree

    n, p1n, d = p1.shape
    p2n = p2.shape[1]
    l1, l2 = lengths1.cpu(), lengths2.cpu()
    out12 = np.full((n, p1n, K), -1, dtype=np.int64)
    out21 = np.full((n, p2n, K), -1, dtype=np.int64) if both_ways else None

    def result():
        t12 = torch.from_numpy(out12).to(p1.device)
        return t12, (torch.from_numpy(out21).to(p1.device) if both_ways else None)

    if n == 0 or int(l1.sum()) == 0 or int(l2.sum()) == 0:
        return result()
    a_t, b_t = p1.detach().cpu(), p2.detach().cpu()  # (N, P1, D), (N, P2, D)
    valid1 = torch.arange(p1n)[None, :] < l1[:, None]  # (N, P1)
    valid2 = torch.arange(p2n)[None, :] < l2[:, None]  # (N, P2)
    full1, full2 = bool(valid1.all()), bool(valid2.all())

    def box(x, valid, full):  # per-item (min, max) over the valid points; +-inf for none
        if full:
            lo_, hi_ = torch.aminmax(x, dim=1)
        else:
            v = valid[..., None]
            lo_, hi_ = torch.where(v, x, math.inf).amin(1), torch.where(v, x, -math.inf).amax(1)
        return lo_.double(), hi_.double()

    (lo1, hi1), (lo2, hi2) = box(a_t, valid1, full1), box(b_t, valid2, full2)
    lo, hi = torch.minimum(lo1, lo2), torch.maximum(hi1, hi2)  # (N, D)
    lo = torch.where(torch.isfinite(lo), lo, 0.0)
    ext = float((torch.where(torch.isfinite(hi), hi, lo) - lo).max())  # largest extent of an item
    # no two points of one item are farther apart than the box diagonal; the search radius
    # ``bound`` covers that (plus rounding) and items are laid out farther apart than it, so a
    # query never reaches another item, and the tree prunes the other items at once
    bound = ext * math.sqrt(d) * (1.0 + 1e-6) + 1e-9 * max(ext, 1.0)
    step = 2.0 * (ext + bound) + 1.0
    shift = -lo  # every item starts at its own box corner ...
    shift[:, 0] += torch.arange(n, dtype=torch.float64) * step  # ... items laid out along axis 0
    shift_np = shift.numpy()[:, None, :]  # (N, 1, D)

    def flat(x, valid, full):  # float64 shifted valid points, item-major (numpy: one thread)
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        out = x.numpy().astype(np.float64)  # a copy
        out += shift_np
        return out.reshape(-1, d) if full else out[valid.numpy()]

    a_flat = flat(a_t, valid1, full1)  # (sum L1, D)
    b_flat = flat(b_t, valid2, full2)  # (sum L2, D)
    l1n, l2n = l1.numpy(), l2.numpy()

    def query(tree, q_flat, q_len, r_len, q_valid, out):
        """Query q against the tree of r; write per-item indices (or -1) into out."""
        _, j = tree.query(q_flat, k=K, workers=_KDTREE_WORKERS, distance_upper_bound=bound)
        j = np.asarray(j, dtype=np.int64).reshape(-1, K)  # (M, K), len(tree data) where none
        q_item = np.repeat(np.arange(n), q_len)  # (M,)
        r_first = np.cumsum(r_len) - r_len  # (N,)
        local = j - r_first[q_item][:, None]
        # beyond the search radius (k >= lengths) or, as a safety net, in another item: none
        ok = (local >= 0) & (local < r_len[q_item][:, None])
        local = np.where(ok, local, -1)
        if q_valid is None:
            out.reshape(-1, K)[:] = local
        else:
            out[q_valid.numpy()] = local

    jobs = [(b_flat, a_flat, l1n, l2n, None if full1 else valid1, out12)]
    if both_ways:
        jobs.append((a_flat, b_flat, l2n, l1n, None if full2 else valid2, out21))
        from concurrent.futures import ThreadPoolExecutor

        # the two trees are built side by side (SciPy releases the GIL while building)
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(cKDTree, job[0], leafsize=_KDTREE_LEAFSIZE) for job in jobs]
            trees = [f.result() for f in futures]
    else:
        trees = [cKDTree(jobs[0][0], leafsize=_KDTREE_LEAFSIZE)]
    for tree, (_, *rest) in zip(trees, jobs):
        query(tree, *rest)
    return result()


def _choose_backend(p1: torch.Tensor, p2: torch.Tensor, backend: str) -> str:
    if backend not in ("auto", "brute", "kdtree"):
        raise ValueError(f"backend must be 'auto', 'brute' or 'kdtree', got {backend!r}")
    if backend == "kdtree" and p1.device.type != "cpu":
        raise ValueError(f"backend='kdtree' needs CPU tensors, got device {p1.device}")
    if backend != "auto":
        return backend
    n, p1n, d = p1.shape
    big = n * p1n * p2.shape[1] >= _KDTREE_MIN_PAIRS
    return "kdtree" if p1.device.type == "cpu" and d <= _KDTREE_MAX_DIM and big else "brute"


def knn_points(
    p1: torch.Tensor,
    p2: torch.Tensor,
    K: int = 1,
    lengths1: Optional[torch.Tensor] = None,
    lengths2: Optional[torch.Tensor] = None,
    return_nn: bool = False,
    backend: KnnBackend = "auto",
) -> KNN:
    """K nearest neighbours in ``p2`` of every point of ``p1``, item by item of a batch.

    The neighbour indices are found without autograd; the distances are then recomputed from
    the gathered points, so ``dists`` is differentiable w.r.t. both ``p1`` and ``p2`` (the
    gradient of a nearest-neighbour distance with the neighbour held fixed).

    Args:
        p1: (N, P1, D) float tensor, a batch of query point sets (padded).
        p2: (N, P2, D) float tensor, a batch of reference point sets (padded), same device/dtype.
        K: number of neighbours per query point (>= 1). Pass ``lengths1``/``lengths2`` by
            keyword (PyTorch3D puts them before ``K``).
        lengths1: optional (N,) long tensor, number of valid points of each ``p1[n]``
            (default: all P1). Rows ``i >= lengths1[n]`` are padding: their ``idx`` is -1 and
            their ``dists`` 0.
        lengths2: optional (N,) long tensor, number of valid points of each ``p2[n]``
            (default: all P2). Points ``j >= lengths2[n]`` are never returned as neighbours;
            where ``K > lengths2[n]`` the slots ``k >= lengths2[n]`` get ``idx`` -1, ``dists`` 0.
        return_nn: also return the neighbours' coordinates.
        backend: "brute" = exact chunked matrix search (any device; memory bounded to about
            256 MB per chunk); "kdtree" = one SciPy ``cKDTree`` over the whole batch
            (items shifted apart), queried with ``workers=-1`` (CPU tensors only); "auto" =
            kdtree on CPU for D <= 8 and N * P1 * P2 >= 2^21 pairs, else brute.

    Returns:
        :class:`KNN` ``(dists (N, P1, K), idx (N, P1, K) long, knn (N, P1, K, D) or None)``,
        neighbours sorted by increasing distance. Exact ties may be broken differently by the
        two backends, and in float32 the brute-force search may order distances that differ by
        less than about 1e-6 (relative) either way.
    """
    check_shape(p1, ("N", "P1", "D"), "p1")
    check_shape(p2, (p1.shape[0], "P2", p1.shape[2]), "p2")
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError(f"K must be a positive int (pass lengths1/lengths2 by keyword), got {K!r}")
    _check_pair(p1, p2, "p1", "p2")
    K = int(K)
    n, p1n, _ = p1.shape
    l1 = _lengths_or_full(lengths1, n, p1n, p1.device, "lengths1")
    l2 = _lengths_or_full(lengths2, n, p2.shape[1], p1.device, "lengths2")

    with torch.no_grad():
        search = _kdtree_knn_idx if _choose_backend(p1, p2, backend) == "kdtree" else _brute_knn_idx
        idx, _ = search(p1.detach(), p2.detach(), l1, l2, K)
    dists, nn = _dists_from_idx(p1, p2, idx)
    return KNN(dists=dists, idx=idx, knn=nn if return_nn else None)


def _dists_from_idx(p1: torch.Tensor, p2: torch.Tensor, idx: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Differentiable squared distances (N, P1, K) to the gathered neighbours (N, P1, K, D)."""
    n, p1n, k = idx.shape
    d = p2.shape[2]
    if idx.numel() and p2.shape[1] and bool(idx.min() >= 0):  # common case: no padding, fewer ops
        nn = torch.gather(p2, 1, idx.reshape(n, p1n * k, 1).expand(n, p1n * k, d)).reshape(n, p1n, k, d)
        diff = p1[:, :, None, :] - nn
        return (diff * diff).sum(-1), nn
    nn = knn_gather(p2, idx)  # (N, P1, K, D), 0 where idx == -1
    diff = p1[:, :, None, :] - nn
    dists = (diff * diff).sum(-1) * (idx >= 0).to(p1.dtype)  # (N, P1, K)
    return dists, nn


# ----------------------------------------------------------------------------------------------
# chamfer distance
# ----------------------------------------------------------------------------------------------
def _as_padded(
    x: Union[torch.Tensor, Pointclouds], lengths: Optional[torch.Tensor], name: str
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    if isinstance(x, Pointclouds):
        if lengths is not None:
            raise ValueError(f"{name}_lengths must be None when {name} is a Pointclouds")
        return x.points_padded(), x.num_points_per_cloud()
    check_shape(x, ("N", "P", "D"), name)
    return x, lengths


def chamfer_distance(
    x: Union[torch.Tensor, Pointclouds],
    y: Union[torch.Tensor, Pointclouds],
    x_lengths: Optional[torch.Tensor] = None,
    y_lengths: Optional[torch.Tensor] = None,
    point_reduction: Literal["mean", "sum"] = "mean",
    batch_reduction: Optional[Literal["mean", "sum"]] = "mean",
    backend: KnnBackend = "auto",
) -> torch.Tensor:
    """Symmetric chamfer distance between two batches of point sets (squared distances).

    For item n, with ``d(p, S) = min_{q in S} ||p - q||^2``::

        cham[n] = mean_{i < x_lengths[n]} d(x[n, i], y[n]) + mean_{j < y_lengths[n]} d(y[n, j], x[n])

    ("sum" point reduction: sums instead of the two means). The result is then averaged over
    the batch (``batch_reduction="mean"``: ``sum_n cham[n] / N``), summed ("sum") or returned
    per item (None). Items with no valid point contribute 0 for that direction.

    Args:
        x: (N, P1, D) float tensor (D usually 3) or a :class:`Pointclouds`.
        y: (N, P2, D) float tensor or a :class:`Pointclouds`, same N, D, device and dtype.
        x_lengths: optional (N,) long, valid points of each ``x[n]`` (tensor input only).
        y_lengths: optional (N,) long, valid points of each ``y[n]`` (tensor input only).
        point_reduction: "mean" or "sum" over the points of each item and direction.
        batch_reduction: "mean", "sum" or None over the batch.
        backend: nearest-neighbour backend, see :func:`knn_points`.

    Returns:
        a scalar tensor (or (N,) for ``batch_reduction=None``), differentiable w.r.t. x and y.
    """
    x, x_lengths = _as_padded(x, x_lengths, "x")
    y, y_lengths = _as_padded(y, y_lengths, "y")
    check_shape(y, (x.shape[0], "P2", x.shape[2]), "y")
    _check_pair(x, y, "x", "y")
    if point_reduction not in ("mean", "sum"):
        raise ValueError(f"point_reduction must be 'mean' or 'sum', got {point_reduction!r}")
    if batch_reduction not in ("mean", "sum", None):
        raise ValueError(f"batch_reduction must be 'mean', 'sum' or None, got {batch_reduction!r}")
    n = x.shape[0]
    lx = _lengths_or_full(x_lengths, n, x.shape[1], x.device, "x_lengths")
    ly = _lengths_or_full(y_lengths, n, y.shape[1], x.device, "y_lengths")

    # both directions from one call: the two KD-trees are built side by side
    with torch.no_grad():
        search = _kdtree_knn_idx if _choose_backend(x, y, backend) == "kdtree" else _brute_knn_idx
        idx_xy, idx_yx = search(x.detach(), y.detach(), lx, ly, 1, both_ways=True)
    d_xy = _dists_from_idx(x, y, idx_xy)[0][..., 0]  # (N, P1)
    d_yx = _dists_from_idx(y, x, idx_yx)[0][..., 0]  # (N, P2)
    # padded rows already hold 0
    cham_x = d_xy.sum(1)  # (N,)
    cham_y = d_yx.sum(1)  # (N,)
    if point_reduction == "mean":
        cham_x = cham_x / lx.clamp(min=1).to(x.dtype)
        cham_y = cham_y / ly.clamp(min=1).to(x.dtype)
    cham = cham_x + cham_y  # (N,)
    if batch_reduction == "mean":
        return cham.sum() / max(n, 1)
    if batch_reduction == "sum":
        return cham.sum()
    return cham


# ----------------------------------------------------------------------------------------------
# surface sampling
# ----------------------------------------------------------------------------------------------
def sample_points_from_meshes(
    meshes: Meshes,
    num_samples: int = 10000,
    return_normals: bool = False,
    generator: Optional[torch.Generator] = None,
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Sample points uniformly by area on the surface of every mesh of a batch.

    Faces are drawn with probability proportional to their area (``torch.multinomial`` with
    replacement, all meshes at once on a padded (N, max F_i) area table), and a point inside
    each drawn face with the barycentrics ``w0 = 1 - sqrt(u)``, ``w1 = sqrt(u) (1 - v)``,
    ``w2 = sqrt(u) v`` for ``u, v ~ U[0, 1)`` (uniform on the triangle).

    Args:
        meshes: a :class:`Meshes` batch of N meshes.
        num_samples: S, points per mesh.
        return_normals: also return the unit normal of the face each point lies on.
        generator: optional ``torch.Generator`` (on the meshes' device) for reproducible draws.

    Returns:
        points: (N, S, 3) sampled points, differentiable w.r.t. ``meshes.verts_packed()``;
        normals: (N, S, 3) unit face normals ``(v1 - v0) x (v2 - v0)`` (only if
        ``return_normals``).

    Raises:
        ValueError: if a mesh has no faces or zero total area.
    """
    if not isinstance(meshes, Meshes):
        raise ValueError(f"meshes must be a Meshes, got {type(meshes).__name__}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    verts = meshes.verts_packed()  # (sum V, 3)
    faces = meshes.faces_packed()  # (sum F, 3)
    n = len(meshes)
    num_faces = meshes.num_faces_per_mesh()  # (N,)
    with torch.no_grad():
        areas = meshes.faces_areas_packed()  # (sum F,)
        areas_padded = packed_to_padded(areas, num_faces)  # (N, max F), 0 padded
        if areas_padded.shape[1] == 0:
            raise ValueError("cannot sample points from meshes without faces")
        totals = areas_padded.sum(1)  # (N,)
        bad = ~(totals > 0)
        if bool(bad.any()):
            which = torch.nonzero(bad).flatten().tolist()
            raise ValueError(f"cannot sample points from meshes with zero total area: items {which}")
        local = torch.multinomial(
            areas_padded.float() if areas_padded.dtype == torch.float16 else areas_padded,
            int(num_samples), replacement=True, generator=generator,
        )  # (N, S) face index within each mesh
        face_idx = local + meshes.mesh_to_faces_packed_first_idx()[:, None]  # (N, S) packed
        uv = torch.rand((2, n, int(num_samples)), generator=generator, device=verts.device, dtype=verts.dtype)
    su = uv[0].sqrt()  # (N, S)
    w = torch.stack([1.0 - su, su * (1.0 - uv[1]), su * uv[1]], dim=-1)  # (N, S, 3)
    fv = verts[faces[face_idx]]  # (N, S, 3 corners, 3)
    points = (w[..., None] * fv).sum(-2)  # (N, S, 3)
    if not return_normals:
        return points
    nrm = torch.cross(fv[:, :, 1] - fv[:, :, 0], fv[:, :, 2] - fv[:, :, 0], dim=-1)
    return points, F.normalize(nrm, dim=-1, eps=1e-12)


# ----------------------------------------------------------------------------------------------
# Laplacian smoothing
# ----------------------------------------------------------------------------------------------
def uniform_laplacian(verts: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Uniform (umbrella) Laplacian of every vertex: mean of its neighbours minus itself.

    Equals ``L @ verts`` for PyTorch3D's ``L[i, i] = -1``, ``L[i, j] = 1 / deg(i)`` for an
    edge (i, j); an isolated vertex (degree 0) gets ``-v``.

    Args:
        verts: (V, D) float tensor of vertex positions (packed).
        edges: (E, 2) long tensor of undirected edges, each listed once.

    Returns:
        (V, D) tensor ``mean_{j in N(i)} v_j - v_i``, differentiable w.r.t. ``verts``.
    """
    check_shape(verts, ("V", "D"), "verts")
    check_shape(edges, ("E", 2), "edges")
    e0, e1 = edges[:, 0], edges[:, 1]
    src = torch.cat([e0, e1])  # (2E,) vertex receiving
    dst = torch.cat([e1, e0])  # (2E,) its neighbour
    nsum = torch.zeros_like(verts).index_add(0, src, verts[dst])  # (V, D)
    deg = torch.zeros(verts.shape[0], dtype=verts.dtype, device=verts.device)
    deg = deg.index_add(0, src, torch.ones_like(src, dtype=verts.dtype))  # (V,)
    inv = torch.where(deg > 0, 1.0 / deg.clamp(min=1), torch.zeros_like(deg))
    return nsum * inv[:, None] - verts


def mesh_laplacian_smoothing(meshes: Meshes, method: Literal["uniform"] = "uniform") -> torch.Tensor:
    """Uniform Laplacian smoothing loss of a batch of meshes (PyTorch3D's "uniform" method).

    ``loss = (1 / N) sum_n (1 / V_n) sum_{i in mesh n} || mean_{j in N(i)} v_j - v_i ||``:
    the norm of each vertex's umbrella vector, averaged per mesh, then over the batch.

    Args:
        meshes: a :class:`Meshes` batch of N meshes (edges from :meth:`Meshes.edges_packed`).
        method: only "uniform" is implemented.

    Returns:
        scalar tensor, differentiable w.r.t. ``meshes.verts_packed()``; 0 for an empty batch.
    """
    if not isinstance(meshes, Meshes):
        raise ValueError(f"meshes must be a Meshes, got {type(meshes).__name__}")
    if method != "uniform":
        raise ValueError(f"method must be 'uniform', got {method!r}")
    verts = meshes.verts_packed()  # (sum V, 3)
    n = len(meshes)
    if n == 0 or verts.shape[0] == 0:
        return verts.sum() * 0.0
    lap = uniform_laplacian(verts, meshes.edges_packed())  # (sum V, 3)
    nv = meshes.num_verts_per_mesh()
    weights = 1.0 / nv[meshes.verts_packed_to_mesh_idx()].to(verts.dtype)  # (sum V,)
    return (lap.norm(dim=1) * weights).sum() / n


# ----------------------------------------------------------------------------------------------
# ico-sphere
# ----------------------------------------------------------------------------------------------
def _subdivide(verts: torch.Tensor, faces: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Split every triangle into 4 through its unique edge midpoints (winding kept)."""
    v_count = verts.shape[0]
    f = faces
    # the three edges of each face, in order (0,1), (1,2), (2,0)
    e = torch.stack([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], dim=1)  # (F, 3, 2)
    e_sorted, _ = e.reshape(-1, 2).sort(dim=1)  # (3F, 2)
    uniq, inv = torch.unique(e_sorted, dim=0, return_inverse=True)  # (E, 2), (3F,)
    mids = 0.5 * (verts[uniq[:, 0]] + verts[uniq[:, 1]])  # (E, 3)
    m = (inv + v_count).reshape(-1, 3)  # (F, 3) midpoint index of edges 01, 12, 20
    a, b, c = f.unbind(1)
    ab, bc, ca = m.unbind(1)
    new_faces = torch.cat(
        [
            torch.stack([a, ab, ca], 1),
            torch.stack([b, bc, ab], 1),
            torch.stack([c, ca, bc], 1),
            torch.stack([ab, bc, ca], 1),
        ],
        dim=0,
    )  # (4F, 3)
    return torch.cat([verts, mids], 0), new_faces


def ico_sphere(level: int = 0, device: Union[str, torch.device, None] = None) -> Meshes:
    """A unit-sphere triangle mesh made by subdividing an icosahedron ``level`` times.

    Level 0 is the 12-vertex, 20-face icosahedron; each level splits every triangle into four
    through its edge midpoints and pushes all vertices back onto the unit sphere, so level L has
    ``10 * 4^L + 2`` vertices and ``20 * 4^L`` faces (level 4: 2562 and 5120). Faces wind
    counter-clockwise seen from outside: ``(v1 - v0) x (v2 - v0)`` points away from the centre.

    Args:
        level: number of subdivisions (>= 0).
        device: device of the returned mesh (default CPU); vertices are float32.

    Returns:
        a :class:`Meshes` holding one mesh.
    """
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 0:
        raise ValueError(f"level must be a non-negative int, got {level!r}")
    device = torch.device("cpu") if device is None else torch.device(device)
    phi = (1.0 + math.sqrt(5.0)) / 2.0
    verts = torch.tensor(
        [
            [-1, phi, 0], [1, phi, 0], [-1, -phi, 0], [1, -phi, 0],
            [0, -1, phi], [0, 1, phi], [0, -1, -phi], [0, 1, -phi],
            [phi, 0, -1], [phi, 0, 1], [-phi, 0, -1], [-phi, 0, 1],
        ],
        dtype=torch.float64,
        device=device,
    )
    faces = torch.tensor(
        [
            [0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11],
            [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8],
            [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
            [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1],
        ],
        dtype=torch.long,
        device=device,
    )
    verts = F.normalize(verts, dim=1)
    for _ in range(int(level)):
        verts, faces = _subdivide(verts, faces)
        verts = F.normalize(verts, dim=1)
    return Meshes([verts.to(torch.float32)], [faces])


# ----------------------------------------------------------------------------------------------
# marching cubes
# ----------------------------------------------------------------------------------------------
def flip_faces(faces: torch.Tensor) -> torch.Tensor:
    """Reverse the winding of triangles (swap corners 1 and 2), flipping their normals.

    Args:
        faces: (F, 3) long tensor of vertex indices.

    Returns:
        (F, 3) long tensor ``faces[:, [0, 2, 1]]``.
    """
    check_shape(faces, ("F", 3), "faces")
    return faces[:, [0, 2, 1]]


def _weld(verts: np.ndarray, faces: np.ndarray, tol: float) -> Tuple[np.ndarray, np.ndarray]:
    """Merge vertices that coincide (same position rounded to ``tol``), drop the faces that
    become degenerate (a repeated corner, or zero area) and the vertices no face uses any more.

    Vertices keep the order of their first appearance; faces keep their winding.

    Args:
        verts: (V, 3) float positions; faces: (F, 3) int vertex indices.
        tol: the rounding step (positions within about ``tol`` of each other merge).
    Returns:
        verts: (V', 3), faces: (F', 3) int64.
    """
    if len(verts) == 0:
        return verts, faces
    key = np.round(verts.astype(np.float64) / tol).astype(np.int64)  # (V, 3) quantised positions
    _, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)  # groups in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    new_id = rank[inv.reshape(-1)]  # (V,) welded index of every vertex
    verts = verts[first[order]]
    faces = new_id[faces]  # (F, 3)
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    faces = faces[(a != b) & (b != c) & (a != c)]
    fv = verts[faces].astype(np.float64)  # (F', 3 corners, 3)
    twice_area = np.linalg.norm(np.cross(fv[:, 1] - fv[:, 0], fv[:, 2] - fv[:, 0]), axis=-1)
    faces = faces[twice_area > tol * tol]
    used = np.zeros(len(verts), dtype=bool)
    used[faces.reshape(-1)] = True
    remap = np.cumsum(used) - 1
    return verts[used], remap[faces].astype(np.int64)


def marching_cubes(
    volume: Union[torch.Tensor, np.ndarray],
    isovalue: float = 0.0,
    smooth: bool = False,
    inside: Optional[Literal["below", "above"]] = None,
    weld: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Triangle mesh of the ``isovalue`` level set of a scalar volume, through PyMCubes.

    Where the level hits grid samples exactly (an integer-valued field with an integer level, a
    binary grid, an exact distance field), PyMCubes emits one vertex per cube edge that ends at
    the sample, so several vertices coincide and the triangles between them have zero area.
    With ``weld=True`` (default) coincident vertices are merged (positions equal to 1e-6 of a
    voxel), faces left with a repeated corner or zero area are dropped, and the winding is
    kept: a closed level set gives a closed, edge-manifold mesh (every edge shared by exactly
    two faces) without duplicate vertices.

    Winding: with ``inside=None`` the faces keep PyMCubes' winding, whose normals
    ``(v1 - v0) x (v2 - v0)`` point towards *decreasing* field values. That is outward for an
    occupancy or density (large inside) and inward for an SDF (negative inside). Pass
    ``inside="below"`` (SDF: the solid is where the field is below the isovalue) or
    ``inside="above"`` (occupancy / density) to get outward-pointing normals either way; or
    flip afterwards with :func:`flip_faces`.

    Args:
        volume: (D0, D1, D2) float tensor or ndarray of field samples on a regular grid.
        isovalue: the level to extract.
        smooth: binarise the volume at the isovalue (``volume > isovalue``) and extract the
            zero level of ``mcubes.smooth`` of that mask instead (smooth surfaces from voxel
            grids); the smoothed field grows with the volume, so the winding rules hold.
        inside: None (PyMCubes' winding, see above), "below" or "above".
        weld: merge coincident vertices and drop degenerate faces (False: PyMCubes' raw output).

    Returns:
        verts: (V, 3) float32 tensor, positions in index coordinates of the volume axes, in the
            volume's axis order (``verts[:, 0]`` runs along axis 0, from 0 to D0 - 1);
        faces: (F, 3) long tensor of vertex indices.
        Both are empty ((0, 3)) when the level set does not cross the volume; they live on the
        volume's device (CPU for an ndarray).
    """
    import mcubes

    device = volume.device if torch.is_tensor(volume) else torch.device("cpu")
    if torch.is_tensor(volume):
        check_shape(volume, ("D0", "D1", "D2"), "volume")
        vol = volume.detach().to("cpu", torch.float64).numpy()
    else:
        vol = np.asarray(volume, dtype=np.float64)
        if vol.ndim != 3:
            raise ValueError(f"volume must have shape (D0, D1, D2), got {tuple(vol.shape)}")
    if inside not in (None, "below", "above"):
        raise ValueError(f"inside must be None, 'below' or 'above', got {inside!r}")
    if not np.isfinite(float(isovalue)):
        raise ValueError(f"isovalue must be finite, got {isovalue!r}")
    vol = np.ascontiguousarray(vol)
    if smooth:
        # the smoothed field is positive inside the binary solid, zero on its surface,
        # so "decreasing" stays "away from volume > isovalue"
        vol = mcubes.smooth(vol > isovalue)
        level = 0.0
    else:
        level = float(isovalue)
    v, f = mcubes.marching_cubes(vol, level)
    v = np.asarray(v, dtype=np.float32).reshape(-1, 3)  # weld what is returned (float32)
    f = np.asarray(f, dtype=np.int64).reshape(-1, 3)
    if weld:
        v, f = _weld(v, f, 1e-6)
    verts = torch.as_tensor(v, device=device)
    faces = torch.as_tensor(f, device=device)
    if inside == "below":
        faces = flip_faces(faces)
    return verts, faces
