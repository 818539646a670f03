"""Multi-resolution hash encoding (Instant-NGP, Müller et al. 2022) in plain PyTorch.

    enc = HashEncoding(n_levels=16, n_features=2, log2_table_size=17, base_resolution=16,
                       max_resolution=512, bound=1.5)
    feats = enc(points)          # (P, 3) in [-bound, bound]^3 -> (P, n_levels * n_features)

Level ``l`` is a grid of resolution ``N_l = floor(N_min b^l)`` with ``b = (N_max / N_min)^(1 / (L - 1))``
over the cube ``[-bound, bound]^3``, whose ``(N_l + 1)^3`` vertices each own an F-vector of a
table of T entries: directly (``i + j (N_l + 1) + k (N_l + 1)^2``) where the level fits in T, through
the spatial hash ``(i * 1) xor (j * 2654435761) xor (k * 805459861) mod T`` where it does not. A point's
feature on a level is the trilinear interpolation of its cell's 8 corner vectors. All levels are
evaluated at once: one index computation over a (P, L, 2, 2, 2) corner block and one gather from a
single (L T, F) table; the interpolation weights are differentiable in the point, so the gradient
of anything computed from the features with respect to the input exists (the eikonal term of a
hash-encoded SDF).
"""

from __future__ import annotations

import math
from typing import List

import torch
import torch.nn as nn

__all__ = ["HashEncoding", "PRIMES", "level_resolutions"]

PRIMES = (1, 2654435761, 805459861)


class _Gather(torch.autograd.Function):
    """``table[idx]`` for a (N, F) table and (M,) indices, with a backward that is one flat
    ``scatter_add_`` (several times quicker on the CPU than the index_add_ / sort of
    ``index_select`` and ``embedding``). Its backward is built from differentiable ops, so it also
    works inside a graph made with ``create_graph=True``."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(idx)
        ctx.table_shape = table.shape
        return table.index_select(0, idx)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (idx,) = ctx.saved_tensors
        n, f = ctx.table_shape
        flat = (idx.long()[:, None] * f + torch.arange(f, device=idx.device)).reshape(-1)
        g = torch.zeros(n * f, device=grad.device, dtype=grad.dtype).scatter_add(0, flat, grad.reshape(-1))
        return g.view(n, f), None


def level_resolutions(n_levels: int, base_resolution: int, max_resolution: int) -> List[int]:
    """``N_l = floor(N_min b^l)``, ``b = exp((ln N_max - ln N_min) / (L - 1))`` (N_min alone for L = 1)."""
    if n_levels == 1:
        return [int(base_resolution)]
    b = math.exp((math.log(max_resolution) - math.log(base_resolution)) / (n_levels - 1))
    return [int(math.floor(base_resolution * b ** lvl + 1e-6)) for lvl in range(n_levels)]


class HashEncoding(nn.Module):
    """See the module docstring.

    Args:
        n_levels: L.  n_features: F per entry.  log2_table_size: T = 2^this entries per level.
        base_resolution, max_resolution: N_min and N_max.
        bound: the encoded cube is ``[-bound, bound]^3`` (points outside are clamped onto it).
        init_scale: tables start uniform in ``[-init_scale, init_scale]``.
    """

    def __init__(self, n_levels: int = 16, n_features: int = 2, log2_table_size: int = 17,
                 base_resolution: int = 16, max_resolution: int = 512, bound: float = 1.5,
                 init_scale: float = 1e-4):
        super().__init__()
        if n_levels < 1 or n_features < 1 or not 4 <= log2_table_size <= 26:
            raise ValueError("hash encoding: n_levels and n_features must be >= 1, log2_table_size in [4, 26]")
        if not 1 <= base_resolution <= max_resolution:
            raise ValueError(f"hash encoding: need 1 <= base_resolution ({base_resolution}) <= max_resolution "
                             f"({max_resolution})")
        if bound <= 0:
            raise ValueError("hash encoding: bound must be positive")
        self.n_levels, self.n_features = int(n_levels), int(n_features)
        self.table_size = 1 << int(log2_table_size)
        self.bound = float(bound)
        res = level_resolutions(self.n_levels, int(base_resolution), int(max_resolution))
        self.resolutions = res
        t = self.table_size
        dense = [(r + 1) ** 3 <= t for r in res]  # resolutions grow, so the dense levels come first
        self.n_dense = sum(dense)
        # per level: resolution, the strides of dense indexing, and the level's table offset
        self.register_buffer("res", torch.tensor(res, dtype=torch.float32), persistent=False)
        self.register_buffer("strides", torch.tensor([[1, r + 1, (r + 1) ** 2] for r in res], dtype=torch.int32),
                             persistent=False)
        self.register_buffer("offsets", torch.arange(self.n_levels, dtype=torch.int32) * t, persistent=False)
        signed = [p if p < 2 ** 31 else p - 2 ** 32 for p in PRIMES]  # the same bits as uint32
        self.register_buffer("primes", torch.tensor(signed, dtype=torch.int32), persistent=False)
        self.table = nn.Parameter(torch.empty(self.n_levels * t, self.n_features).uniform_(-init_scale, init_scale))

    @property
    def output_dim(self) -> int:
        return self.n_levels * self.n_features

    def corner_indices(self, cell: torch.Tensor) -> torch.Tensor:
        """(P, L, 3) integer lower-corner coordinates -> (P, L, 2, 2, 2) int32 rows of ``self.table``
        (axis order of the three 2s: x, y, z offsets). Int32 arithmetic: the hash products wrap
        modulo 2^32 as Instant-NGP's uint32 ones do, and only their low bits are kept."""
        nd = self.n_dense
        c = torch.stack([cell, cell + 1], -2)  # (P, L, 2, 3): lower and upper vertex per axis
        parts = []
        if nd:  # dense levels: sum of coordinate * stride
            dn = c[:, :nd] * self.strides[:nd, None]
            parts.append(dn[..., 0, None, None] + dn[..., 1][..., None, :, None] + dn[..., 2][..., None, None, :])
        if nd < self.n_levels:  # hashed levels: xor of coordinate * prime, low bits
            hs = c[:, nd:] * self.primes
            h = hs[..., 0, None, None] ^ hs[..., 1][..., None, :, None] ^ hs[..., 2][..., None, None, :]
            parts.append(h & (self.table_size - 1))
        idx = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
        return idx + self.offsets[:, None, None, None]

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) -> (..., L F) features (level-major: level 0's F values first)."""
        shape = points.shape[:-1]
        x = points.reshape(-1, 3)
        u = ((x + self.bound) / (2 * self.bound)).clamp(0.0, 1.0)  # (P, 3) in the unit cube
        pos = u[:, None, :] * self.res[:, None]  # (P, L, 3) in grid units of each level
        cell = torch.minimum(pos.detach().floor(), self.res[:, None] - 1)  # u = 1 falls into the last cell
        f = pos - cell  # (P, L, 3) in [0, 1]
        w = torch.stack([1 - f, f], -2)  # (P, L, 2, 3)
        wts = w[..., 0, None, None] * w[..., 1][..., None, :, None] * w[..., 2][..., None, None, :]  # (P, L, 2, 2, 2)
        idx = self.corner_indices(cell.to(torch.int32))
        vals = _Gather.apply(self.table, idx.reshape(-1)).view(*idx.shape, self.n_features)
        out = (vals * wts[..., None]).sum((2, 3, 4))  # (P, L, F)
        return out.reshape(*shape, self.output_dim)
