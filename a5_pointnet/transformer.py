"""Transformers on point clouds (Q4): global self-attention over every point, and local
vector attention over k-nearest neighbourhoods (in the spirit of Point Transformer, Zhao et al. 2021).

Dimension letters as in :mod:`a5_pointnet`: B clouds, P points, M tokens of a level, K neighbours,
C channels, H attention heads. Every model returns **log-probabilities** (``log_softmax`` over the
classes), as the course's Transformer does; ``train`` applies ``F.cross_entropy`` to every model's
output, which on log-probabilities equals the negative log-likelihood (``log_softmax`` of a
log-probability vector is itself), and ``argmax`` picks the same label as on logits.

Global Transformer (``arch="transformer"``)
    Each point's xyz goes through a linear embedding, plus a second linear layer of xyz as its
    position encoding (the sum of two linear maps of the same xyz is itself one linear map; it is
    kept as two layers to match the course's model). The (B, P, C) tokens pass ``depth`` pre-norm
    Transformer encoder layers (multi-head self-attention over all P points, then a 2C feed-forward
    layer, each with a residual connection) and a final layer norm.

    - cls: max pool over the points -> FC layers with batch norm, ReLU and dropout -> (B, 3).
    - seg: the per-point features -> 1D convolutions (batch norm, ReLU, dropout) -> (B, P, 6).

    No positional order exists between points, so the model is invariant (cls) / equivariant (seg)
    to their order. **Memory:** self-attention's score matrix has B H P^2 entries (1.6 GB of
    float32 for one cloud of 10000 points and 4 heads, per layer). :func:`chunked_attention`
    calls ``torch.nn.functional.scaled_dot_product_attention`` on blocks of queries sized so that
    a block's scores never exceed :data:`ATTN_BUDGET` entries (16 MiB of float32), whichever
    kernel the backend picks (a fused flash / memory-efficient kernel never forms the block at
    all; the plain math kernel forms at most that much). Without gradients (evaluation) the
    attention's memory is therefore bounded at any number of points; under autograd the math
    kernel keeps every block's probabilities for the backward pass (B H P^2 in all), so training
    runs on subsets of a few hundred to a few thousand points per cloud.

Local Transformer (``arch="point_transformer"``)
    1. Tokens: farthest-point sampling (:func:`a5_pointnet.pointops.farthest_point_sample`) picks
       ``sa_points[0]`` points of the cloud (the token budget), embedded by a per-point MLP of xyz.
    2. Point Transformer blocks at every level: for token i with its K nearest tokens j (itself
       included), vector attention
       ``y_i = sum_j softmax_j(gamma(q_i - k_j + delta_ij) / sqrt(C)) * (v_j + delta_ij)``
       with ``delta_ij = theta(p_i - p_j)`` an MLP of the relative position and ``gamma`` an MLP,
       the softmax taken over the K neighbours separately for every channel. A token sees nothing
       outside its K neighbours (the test checks that moving a far point leaves it unchanged).
    3. Transition down between levels: farthest-point sampling to ``sa_points[l]`` tokens, each
       gathers its K nearest tokens of the finer level (relative xyz + features), a shared MLP
       and a max pool (as PointNet++'s set abstraction, with kNN instead of a ball).
    4. cls: max pool of the coarsest level -> the same FC head as above. seg: feature propagation
       (three-nearest-neighbour interpolation + skip features + MLP, PointNet++'s
       :class:`~a5_pointnet.models.FeaturePropagation`) back through the levels and onto every
       input point, whose own skip feature is a per-point MLP of its xyz; then 1D convolutions.

    Every level has a fixed number of tokens whatever the input size, so neighbourhoods span the
    same extent at 512 training points and 10000 test points (kNN among all 10000 raw points would
    shrink them by a factor of four). Farthest-point sampling starts at the point farthest from the
    cloud's centroid, so the sampled set does not depend on the order of the points and the
    model is invariant / equivariant to it. **Memory** is linear in P: the only per-point work at
    10000 points is the farthest-point sampling buffers, the three-nearest-neighbour search
    (k-d tree on CPU, chunked search elsewhere) and the per-point MLPs; the neighbour attention
    processes its queries in blocks bounded by :data:`ATTN_BUDGET` entries as well.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from l3d.ops import knn_points
from l3d.validate import check_shape

from .models import FeaturePropagation, _c
from .pointops import farthest_point_sample, gather_points, group_points

__all__ = ["ATTN_BUDGET", "embedding_width", "chunked_attention", "TransformerCls", "TransformerSeg", "PointTransformerLayer",
           "PointTransformerCls", "PointTransformerSeg", "centroid_fps"]

#: at most this many attention scores (or neighbour-attention entries) exist at once per block of queries
ATTN_BUDGET = 1 << 22


def embedding_width(width: float) -> int:
    """Token width C of the global Transformer at channel multiplier ``width`` (128 at 1.0)."""
    return _c(128, width)


# ----------------------------------------------------------------------------------------------
# global self-attention
# ----------------------------------------------------------------------------------------------
def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, budget: int = ATTN_BUDGET) -> torch.Tensor:
    """Softmax attention ``softmax(q k^T / sqrt(D)) v`` computed over blocks of queries.

    Args:
        q: (B, H, P, D) queries; k, v: (B, H, S, D) keys and values.
        budget: at most this many scores per block: a block holds ``max(1, budget // (B H S))``
            queries. The result does not depend on it (each query's softmax runs over all keys).
    Returns:
        (B, H, P, D), as ``scaled_dot_product_attention(q, k, v)``.
    """
    B, H, P, _ = q.shape
    block = max(1, budget // max(1, B * H * k.shape[2]))
    if block >= P:
        return F.scaled_dot_product_attention(q, k, v)
    return torch.cat([F.scaled_dot_product_attention(q[:, :, s:s + block], k, v) for s in range(0, P, block)], 2)


class EncoderLayer(nn.Module):
    """Pre-norm Transformer encoder layer: ``x + MHA(LN(x))``, then ``x + FFN(LN(x))``.

    The same function as ``nn.TransformerEncoderLayer(norm_first=True, dropout=0)``; written out so
    that the attention runs through :func:`chunked_attention`."""

    def __init__(self, dim: int, heads: int, ffn: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"the embedding width {dim} must be a multiple of the {heads} heads")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim))
        self.budget = ATTN_BUDGET

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, P, C = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, P, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, P, D) each
        a = chunked_attention(q, k, v, self.budget).transpose(1, 2).reshape(B, P, C)
        x = x + self.proj(a)
        return x + self.ffn(self.norm2(x))


class GlobalEncoder(nn.Module):
    """(B, P, 3) points -> (B, P, C) per-point features after ``depth`` encoder layers."""

    def __init__(self, dim: int, depth: int, heads: int):
        super().__init__()
        self.embed = nn.Linear(3, dim)
        self.position = nn.Linear(3, dim)
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, 2 * dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.dim = dim

    def set_budget(self, budget: int) -> None:
        for layer in self.layers:
            layer.budget = budget

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        x = self.embed(points) + self.position(points)  # (B, P, C)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


def _cls_head(in_dim: int, width: float, num_classes: int, dropout: float) -> nn.Sequential:
    """FC in_dim -> 256w -> 128w -> classes, batch norm and ReLU, dropout before the last layer."""
    h1, h2 = _c(256, width), _c(128, width)
    return nn.Sequential(nn.Linear(in_dim, h1, bias=False), nn.BatchNorm1d(h1), nn.ReLU(inplace=True),
                         nn.Linear(h1, h2, bias=False), nn.BatchNorm1d(h2), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(h2, num_classes))


def _seg_head(in_dim: int, width: float, num_classes: int, dropout: float) -> nn.Sequential:
    """1D convolutions on (B, in_dim, P): -> 256w -> 128w -> classes per point."""
    h1, h2 = _c(256, width), _c(128, width)
    return nn.Sequential(nn.Conv1d(in_dim, h1, 1, bias=False), nn.BatchNorm1d(h1), nn.ReLU(inplace=True),
                         nn.Conv1d(h1, h2, 1, bias=False), nn.BatchNorm1d(h2), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Conv1d(h2, num_classes, 1))


class TransformerCls(nn.Module):
    """Global Transformer classifier: (B, P, 3) -> (B, C) log-probabilities."""

    def __init__(self, num_classes: int = 3, width: float = 1.0, dropout: float = 0.3, depth: int = 4, heads: int = 4):
        super().__init__()
        self.encoder = GlobalEncoder(embedding_width(width), depth, heads)
        self.head = _cls_head(self.encoder.dim, width, num_classes, dropout)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        check_shape(points, ("B", "P", 3), "points")
        x = self.encoder(points).amax(1)  # (B, C)
        return F.log_softmax(self.head(x), -1)


class TransformerSeg(nn.Module):
    """Global Transformer part segmentation: (B, P, 3) -> (B, P, C) log-probabilities."""

    def __init__(self, num_classes: int = 6, width: float = 1.0, dropout: float = 0.3, depth: int = 4, heads: int = 4):
        super().__init__()
        self.encoder = GlobalEncoder(embedding_width(width), depth, heads)
        self.head = _seg_head(self.encoder.dim, width, num_classes, dropout)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        check_shape(points, ("B", "P", 3), "points")
        x = self.encoder(points).transpose(1, 2)  # (B, C, P)
        return F.log_softmax(self.head(x).transpose(1, 2), -1)  # (B, P, classes)


# ----------------------------------------------------------------------------------------------
# local vector attention (Point Transformer)
# ----------------------------------------------------------------------------------------------
def centroid_fps(xyz: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Farthest-point sampling started at each cloud's point farthest from its centroid.

    Args:
        xyz: (B, P, 3) points; num_samples: M <= P.
    Returns:
        (B, M) long indices. The picked *set* (and its order) does not depend on the order of the
        points, unlike a start at index 0 (ties in distance aside).
    """
    start = (xyz - xyz.mean(1, keepdim=True)).square().sum(-1).argmax(-1)  # (B,)
    return farthest_point_sample(xyz, num_samples, start=start)


def _neighbours(xyz: torch.Tensor, queries: torch.Tensor, k: int) -> torch.Tensor:
    """(B, M, K) indices of the K nearest points of ``xyz`` (B, P, 3) to every query (B, M, 3)."""
    return knn_points(queries.detach(), xyz.detach(), K=min(k, xyz.shape[1])).idx


class PointTransformerLayer(nn.Module):
    """Vector self-attention of every point over its K nearest points (itself included).

    ``y_i = sum_j softmax_j(gamma(q_i - k_j + delta_ij) / sqrt(C)) * (v_j + delta_ij)``,
    ``delta_ij = theta(p_i - p_j)``; ``theta`` and ``gamma`` are two-layer MLPs; the softmax runs
    over the K neighbours j of i for every channel separately.
    """

    def __init__(self, dim: int, neighbors: int):
        super().__init__()
        self.k = neighbors
        self.qkv = nn.Linear(dim, 3 * dim)
        self.theta = nn.Sequential(nn.Linear(3, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))
        self.gamma = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))
        self.scale = 1.0 / math.sqrt(dim)
        self.budget = ATTN_BUDGET

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        """xyz (B, M, 3), feats (B, M, C), idx (B, M, K) neighbours (default: the K nearest) -> (B, M, C)."""
        B, M, C = feats.shape
        if idx is None:
            idx = _neighbours(xyz, xyz, self.k)
        K = idx.shape[-1]
        q, k, v = self.qkv(feats).chunk(3, -1)  # (B, M, C) each
        block = max(1, self.budget // max(1, B * K * C))
        out = []
        for s in range(0, M, block):  # blocks of queries: at most `budget` (B, m, K, C) entries each
            nb = idx[:, s:s + block]  # (B, m, K)
            delta = self.theta(xyz[:, s:s + block, None] - gather_points(xyz, nb))  # (B, m, K, C)
            logits = self.gamma(q[:, s:s + block, None] - gather_points(k, nb) + delta)  # (B, m, K, C)
            w = torch.softmax(logits * self.scale, dim=2)
            out.append((w * (gather_points(v, nb) + delta)).sum(2))  # (B, m, C)
        return torch.cat(out, 1)


class PointTransformerBlock(nn.Module):
    """Residual block: ``x + W_out PTL(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, neighbors: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = PointTransformerLayer(dim, neighbors)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        x = feats + self.proj(self.attn(xyz, self.norm1(feats), idx))
        return x + self.mlp(self.norm2(x))


class TransitionDown(nn.Module):
    """Farthest-point sample M tokens, gather each one's K nearest finer tokens, MLP + max pool."""

    def __init__(self, num_points: int, neighbors: int, in_dim: int, out_dim: int):
        super().__init__()
        self.num_points, self.k = num_points, neighbors
        self.mlp = nn.Sequential(nn.Conv2d(in_dim + 3, out_dim, 1, bias=False), nn.BatchNorm2d(out_dim),
                                 nn.ReLU(inplace=True))

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """xyz (B, P, 3), feats (B, P, C) -> centres (B, M, 3), features (B, M, C')."""
        centers = gather_points(xyz, centroid_fps(xyz, min(self.num_points, xyz.shape[1])))  # (B, M, 3)
        idx = _neighbours(xyz, centers, self.k)  # (B, M, K)
        grouped = group_points(xyz, centers, feats, idx)  # (B, M, K, 3 + C)
        return centers, self.mlp(grouped.permute(0, 3, 1, 2)).amax(-1).transpose(1, 2)


class LocalEncoder(nn.Module):
    """Tokens by farthest-point sampling, then per level: [transition down], Point Transformer block.

    Returns per level the token positions (B, M_l, 3) and features (B, M_l, C_l)."""

    def __init__(self, tokens: Sequence[int], neighbors: int, width: float):
        super().__init__()
        self.tokens = tuple(tokens)
        self.dims = [_c(64 * 2 ** i, width) for i in range(len(tokens))]
        d0 = self.dims[0]
        self.embed = nn.Sequential(nn.Linear(3, d0), nn.ReLU(inplace=True), nn.Linear(d0, d0))
        self.down = nn.ModuleList(TransitionDown(m, neighbors, a, b)
                                  for m, a, b in zip(self.tokens[1:], self.dims[:-1], self.dims[1:]))
        self.blocks = nn.ModuleList(PointTransformerBlock(d, neighbors) for d in self.dims)
        self.k = neighbors

    def set_budget(self, budget: int) -> None:
        for block in self.blocks:
            block.attn.budget = budget

    def forward(self, points: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        xyz = gather_points(points, centroid_fps(points, min(self.tokens[0], points.shape[1])))  # (B, M0, 3)
        f = self.embed(xyz)
        xyzs, feats = [], []
        for level, block in enumerate(self.blocks):
            if level > 0:
                xyz, f = self.down[level - 1](xyz, f)
            f = block(xyz, f, _neighbours(xyz, xyz, self.k))
            xyzs.append(xyz)
            feats.append(f)
        return xyzs, feats


class PointTransformerCls(nn.Module):
    """Local Transformer classifier: (B, P, 3) -> (B, C) log-probabilities."""

    def __init__(self, num_classes: int = 3, width: float = 1.0, dropout: float = 0.3,
                 tokens: Sequence[int] = (512, 128, 32), neighbors: int = 16):
        super().__init__()
        self.encoder = LocalEncoder(tokens, neighbors, width)
        self.head = _cls_head(self.encoder.dims[-1], width, num_classes, dropout)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        check_shape(points, ("B", "P", 3), "points")
        _, feats = self.encoder(points)
        return F.log_softmax(self.head(feats[-1].amax(1)), -1)  # (B, C)


class PointTransformerSeg(nn.Module):
    """Local Transformer part segmentation: (B, P, 3) -> (B, P, C) log-probabilities."""

    def __init__(self, num_classes: int = 6, width: float = 1.0, dropout: float = 0.3,
                 tokens: Sequence[int] = (512, 128, 32), neighbors: int = 16):
        super().__init__()
        self.encoder = LocalEncoder(tokens, neighbors, width)
        dims = self.encoder.dims
        self.up = nn.ModuleList(FeaturePropagation(dims[i + 1] + dims[i], [dims[i]]) for i in range(len(dims) - 1))
        skip = _c(64, width)
        self.point_embed = nn.Sequential(nn.Conv1d(3, skip, 1, bias=False), nn.BatchNorm1d(skip), nn.ReLU(inplace=True))
        self.to_points = FeaturePropagation(dims[0] + skip, [dims[0]])
        self.head = _seg_head(dims[0], width, num_classes, dropout)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        check_shape(points, ("B", "P", 3), "points")
        xyzs, feats = self.encoder(points)
        x = feats[-1]
        for i in range(len(self.up) - 1, -1, -1):  # coarsest -> level 0 tokens
            x = self.up[i](xyzs[i], xyzs[i + 1], x, feats[i])
        skip = self.point_embed(points.transpose(1, 2)).transpose(1, 2)  # (B, P, C0)
        x = self.to_points(points, xyzs[0], x, skip)  # (B, P, C0)
        return F.log_softmax(self.head(x.transpose(1, 2)).transpose(1, 2), -1)  # (B, P, classes)
