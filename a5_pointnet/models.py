"""PointNet and PointNet++ for classification and part segmentation.

* PointNet (Qi et al. 2017) as in the course: a shared per-point MLP 3-64-64-64-128-1024 (1x1
  convolutions, batch norm, ReLU), a max pool into a global feature, and
  - cls: FC 512-256-C with batch norm, ReLU and dropout -> (B, C) logits;
  - seg: each point's 64-d local feature concatenated with the 1024-d global feature, then a
    per-point MLP 1088-512-256-128-C -> (B, P, C) logits.
  No input/feature transform networks (the course's simplified model). Max pooling and per-point
  layers make the classifier invariant to the order of the points.
* PointNet++ (Qi et al. 2017b, single-scale grouping): set abstraction levels that pick centroids
  by farthest-point sampling, gather a ball of neighbours around each, and run a mini-PointNet on
  the neighbours' relative positions (+ features); a final level groups everything. Segmentation
  adds feature propagation levels (three-nearest-neighbour interpolation + per-point MLP) back to
  every input point. This is the model with locality of Q4.
* Transformers (Q4, :mod:`a5_pointnet.transformer`): ``transformer`` = global self-attention over
  every point (the course's model), ``point_transformer`` = vector attention over k-nearest
  neighbourhoods with relative-position encodings, farthest-point downsampling and feature
  propagation (Point Transformer). Both return log-probabilities; PointNet and PointNet++ return
  logits; ``train``'s cross-entropy and every ``argmax`` treat the two alike.

Build models with :func:`build_model` from a :class:`ModelConfig` (saved in every checkpoint).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import List, Literal, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from l3d.validate import check_shape

from .pointops import ball_query, farthest_point_sample, gather_points, group_points, three_interpolate

__all__ = ["ModelConfig", "build_model", "PointNetCls", "PointNetSeg", "PointNet2Cls", "PointNet2Seg",
           "ARCHS", "model_from_checkpoint"]

ARCHS = ("pointnet", "pointnet2", "transformer", "point_transformer")


@dataclass
class ModelConfig:
    """What :func:`build_model` builds.

    Attributes:
        task: "cls" (one label per cloud) or "seg" (one label per point).
        arch: "pointnet", "pointnet2" (PointNet++, the model with locality), "transformer" (global
            self-attention) or "point_transformer" (local vector attention over kNN).
        num_classes: 3 for the course's cls, 6 for seg.
        width: channel multiplier (1.0 = the papers' widths; smaller for CPU runs).
        dropout: dropout probability before the last layer(s).
        sa_points: PointNet++ centroids per set abstraction level (the last level groups all);
            for point_transformer the tokens per level (the first: the farthest-point sampled
            token budget of the input cloud).
        sa_radius: ball radii per level (in the data's units; the clouds span about 1-2).
        sa_samples: neighbours per ball per level.
        depth: transformer encoder layers (transformer only).
        heads: attention heads (transformer only).
        neighbors: K of the k-nearest-neighbour attention and downsampling (point_transformer only).
    """

    task: Literal["cls", "seg"] = "cls"
    arch: Literal["pointnet", "pointnet2", "transformer", "point_transformer"] = "pointnet"
    num_classes: int = 3
    width: float = 1.0
    dropout: float = 0.3
    sa_points: Tuple[int, ...] = (512, 128)
    sa_radius: Tuple[float, ...] = (0.2, 0.4)
    sa_samples: Tuple[int, ...] = (32, 64)
    depth: int = 4
    heads: int = 4
    neighbors: int = 16

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("sa_points", "sa_radius", "sa_samples"):
            d[k] = list(d[k])
        return d

    @staticmethod
    def from_dict(d: dict) -> "ModelConfig":
        d = dict(d)
        for k in ("sa_points", "sa_radius", "sa_samples"):
            if k in d:
                d[k] = tuple(d[k])
        return ModelConfig(**d)


def _c(n: int, width: float) -> int:
    return max(8, int(round(n * width)))


def _mlp1d(channels: Sequence[int]) -> nn.Sequential:
    """Per-point layers on (B, C, P): 1x1 conv + batch norm + ReLU for every step."""
    layers: List[nn.Module] = []
    for a, b in zip(channels[:-1], channels[1:]):
        layers += [nn.Conv1d(a, b, 1, bias=False), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _mlp2d(channels: Sequence[int]) -> nn.Sequential:
    """Per-neighbour layers on (B, C, M, K)."""
    layers: List[nn.Module] = []
    for a, b in zip(channels[:-1], channels[1:]):
        layers += [nn.Conv2d(a, b, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _head(channels: Sequence[int], num_classes: int, dropout: float) -> nn.Sequential:
    """FC layers with batch norm, ReLU; dropout before the output layer."""
    layers: List[nn.Module] = []
    for a, b in zip(channels[:-1], channels[1:]):
        layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
    layers += [nn.Dropout(dropout), nn.Linear(channels[-1], num_classes)]
    return nn.Sequential(*layers)


def _check_points(points: torch.Tensor) -> None:
    check_shape(points, ("B", "P", 3), "points")


# ----------------------------------------------------------------------------------------------
# PointNet
# ----------------------------------------------------------------------------------------------
class PointNetEncoder(nn.Module):
    """Shared per-point MLP: returns local (B, 64w, P) and per-point (B, 1024w, P) features."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        c = [_c(n, width) for n in (64, 64, 64, 128, 1024)]
        self.local = _mlp1d([3, c[0], c[1]])
        self.deep = _mlp1d([c[1], c[2], c[3], c[4]])
        self.local_dim, self.global_dim = c[1], c[4]

    def forward(self, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = points.transpose(1, 2)  # (B, 3, P)
        local = self.local(x)  # (B, 64, P)
        return local, self.deep(local)  # (B, 1024, P)


class PointNetCls(nn.Module):
    """(B, P, 3) points -> (B, C) class logits."""

    def __init__(self, num_classes: int = 3, width: float = 1.0, dropout: float = 0.3):
        super().__init__()
        self.encoder = PointNetEncoder(width)
        self.head = _head([self.encoder.global_dim, _c(512, width), _c(256, width)], num_classes, dropout)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        _check_points(points)
        _, deep = self.encoder(points)
        return self.head(deep.amax(-1))  # (B, C)


class PointNetSeg(nn.Module):
    """(B, P, 3) points -> (B, P, C) per-point part logits.

    The first layer of the per-point MLP acts on the concatenation [local (64) ; global (1024)];
    it is computed as ``W_local @ local + W_global @ global`` with the global term evaluated once
    per cloud instead of once per point (the same function, a third of the multiply-adds).
    """

    def __init__(self, num_classes: int = 6, width: float = 1.0, dropout: float = 0.3):
        super().__init__()
        self.encoder = PointNetEncoder(width)
        e = self.encoder
        c1 = _c(512, width)
        self.first_local = nn.Conv1d(e.local_dim, c1, 1, bias=False)
        self.first_global = nn.Linear(e.global_dim, c1, bias=False)
        self.first_bn = nn.BatchNorm1d(c1)
        self.point_mlp = _mlp1d([c1, _c(256, width), _c(128, width)])
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Conv1d(_c(128, width), num_classes, 1)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        _check_points(points)
        local, deep = self.encoder(points)  # (B, 64, P), (B, 1024, P)
        glob = deep.amax(-1)  # (B, 1024)
        x = self.first_local(local) + self.first_global(glob)[:, :, None]  # (B, 512, P)
        x = self.point_mlp(torch.relu(self.first_bn(x)))  # (B, 128, P)
        return self.out(self.dropout(x)).transpose(1, 2)  # (B, P, C)


# ----------------------------------------------------------------------------------------------
# PointNet++
# ----------------------------------------------------------------------------------------------
class SetAbstraction(nn.Module):
    """One set abstraction level: sample M centroids, group K neighbours in a ball, mini-PointNet.

    ``num_points=None`` groups the whole cloud into one centroid at the origin (the last level).
    """

    def __init__(self, num_points: Optional[int], radius: float, num_samples: int, in_dim: int, mlp: Sequence[int]):
        super().__init__()
        self.num_points, self.radius, self.num_samples = num_points, radius, num_samples
        self.mlp = _mlp2d([in_dim + 3, *mlp])
        self.out_dim = mlp[-1]

    def forward(self, xyz: torch.Tensor, feats: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """xyz (B, P, 3), feats (B, P, C) or None -> centroids (B, M, 3), features (B, M, C')."""
        B, P, _ = xyz.shape
        if self.num_points is None:
            centers = xyz.new_zeros(B, 1, 3)
            grouped = xyz[:, None] if feats is None else torch.cat([xyz, feats], -1)[:, None]  # (B, 1, P, 3+C)
        else:
            m = min(self.num_points, P)
            centers = gather_points(xyz, farthest_point_sample(xyz, m))  # (B, M, 3)
            idx = ball_query(xyz, centers, self.radius, self.num_samples)  # (B, M, K)
            grouped = group_points(xyz, centers, feats, idx, scale=self.radius)  # (B, M, K, 3+C)
        x = self.mlp(grouped.permute(0, 3, 1, 2))  # (B, C', M, K)
        return centers, x.amax(-1).transpose(1, 2)  # (B, M, C')


class FeaturePropagation(nn.Module):
    """Interpolate coarse features onto finer points, concatenate their skip features, MLP."""

    def __init__(self, in_dim: int, mlp: Sequence[int]):
        super().__init__()
        self.mlp = _mlp1d([in_dim, *mlp])
        self.out_dim = mlp[-1]

    def forward(self, xyz: torch.Tensor, coarse_xyz: torch.Tensor, coarse_feats: torch.Tensor,
                skip: Optional[torch.Tensor]) -> torch.Tensor:
        """xyz (B, P, 3), coarse (B, M, 3) + (B, M, C), skip (B, P, C2) -> (B, P, C')."""
        x = three_interpolate(xyz, coarse_xyz, coarse_feats)  # (B, P, C)
        if skip is not None:
            x = torch.cat([skip, x], -1)
        return self.mlp(x.transpose(1, 2)).transpose(1, 2)


def _sa_levels(cfg: ModelConfig) -> nn.ModuleList:
    w = cfg.width
    mlps = [[_c(64, w), _c(64, w), _c(128, w)], [_c(128, w), _c(128, w), _c(256, w)]]
    levels, in_dim = [], 0
    for i, (m, r, k) in enumerate(zip(cfg.sa_points, cfg.sa_radius, cfg.sa_samples)):
        mlp = mlps[min(i, 1)]
        levels.append(SetAbstraction(m, r, k, in_dim, mlp))
        in_dim = mlp[-1]
    levels.append(SetAbstraction(None, 1.0, 0, in_dim, [_c(256, w), _c(512, w), _c(1024, w)]))
    return nn.ModuleList(levels)


class PointNet2Cls(nn.Module):
    """PointNet++ (SSG) classifier: (B, P, 3) -> (B, C) logits."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.sa = _sa_levels(cfg)
        w = cfg.width
        self.head = _head([self.sa[-1].out_dim, _c(512, w), _c(256, w)], cfg.num_classes, cfg.dropout)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        _check_points(points)
        xyz, feats = points, None
        for level in self.sa:
            xyz, feats = level(xyz, feats)
        return self.head(feats[:, 0])  # (B, C)


class PointNet2Seg(nn.Module):
    """PointNet++ (SSG) part segmentation: (B, P, 3) -> (B, P, C) logits."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.sa = _sa_levels(cfg)
        w = cfg.width
        dims = [3] + [level.out_dim for level in self.sa]  # point features at each level (xyz at level 0)
        fp, coarse = [], dims[-1]
        last = len(self.sa) - 1
        for lvl in range(last, -1, -1):  # propagate from the coarsest level back to the points
            if lvl == 0:
                mlp = [_c(128, w)] * 3
            elif lvl == last:
                mlp = [_c(256, w)] * 2
            else:
                mlp = [_c(256, w), _c(128, w)]
            fp.append(FeaturePropagation(coarse + dims[lvl], mlp))
            coarse = mlp[-1]
        self.fp = nn.ModuleList(fp)
        self.out = nn.Sequential(nn.Conv1d(coarse, _c(128, w), 1, bias=False), nn.BatchNorm1d(_c(128, w)),
                                 nn.ReLU(inplace=True), nn.Dropout(cfg.dropout), nn.Conv1d(_c(128, w), cfg.num_classes, 1))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        _check_points(points)
        xyzs, feats = [points], [points]  # level 0 features: the coordinates
        xyz, f = points, None
        for level in self.sa:
            xyz, f = level(xyz, f)
            xyzs.append(xyz)
            feats.append(f)
        x = feats[-1]
        for i, fp in enumerate(self.fp):
            lvl = len(self.sa) - 1 - i  # target level
            x = fp(xyzs[lvl], xyzs[lvl + 1], x, feats[lvl])
        return self.out(x.transpose(1, 2)).transpose(1, 2)  # (B, P, C)


# ----------------------------------------------------------------------------------------------
def build_model(cfg: ModelConfig) -> nn.Module:
    """The model that ``cfg`` describes (randomly initialised)."""
    if cfg.task not in ("cls", "seg"):
        raise ValueError(f"task must be cls or seg, got {cfg.task!r}")
    if cfg.arch == "pointnet":
        cls = PointNetCls if cfg.task == "cls" else PointNetSeg
        return cls(cfg.num_classes, cfg.width, cfg.dropout)
    if cfg.arch == "pointnet2":
        if not (len(cfg.sa_points) == len(cfg.sa_radius) == len(cfg.sa_samples)):
            raise ValueError("sa_points, sa_radius and sa_samples must have the same length")
        return PointNet2Cls(cfg) if cfg.task == "cls" else PointNet2Seg(cfg)
    from .transformer import PointTransformerCls, PointTransformerSeg, TransformerCls, TransformerSeg

    if cfg.arch == "transformer":
        cls = TransformerCls if cfg.task == "cls" else TransformerSeg
        return cls(cfg.num_classes, cfg.width, cfg.dropout, depth=cfg.depth, heads=cfg.heads)
    if cfg.arch == "point_transformer":
        cls = PointTransformerCls if cfg.task == "cls" else PointTransformerSeg
        return cls(cfg.num_classes, cfg.width, cfg.dropout, tokens=cfg.sa_points, neighbors=cfg.neighbors)
    raise ValueError(f"unknown model {cfg.arch!r}; known: {', '.join(ARCHS)}")


def model_from_checkpoint(state: dict, device: torch.device | str = "cpu") -> Tuple[nn.Module, ModelConfig]:
    """Rebuild the model saved in a checkpoint dict (``config``: the :class:`ModelConfig` as a dict,
    ``model``: the weights; checkpoints written before the shared schema call the config
    ``model_config``), in eval mode. The caller has checked that both entries are there."""
    config = state.get("config", state.get("model_config"))
    if config is None or "model" not in state:
        raise ValueError("not an Assignment 5 checkpoint (no config/model entries)")
    cfg = ModelConfig.from_dict(config)
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), cfg
