"""Image -> 3D models: a ResNet-18 encoder and voxel / point / mesh / implicit decoders.

Shapes: B batch, D = 32 voxels per side, P points, V = 2562 vertices of ico_sphere(4), Q queries.

* :class:`Encoder` -- torchvision ResNet-18 without its final fc layer: (B, 137, 137, 3) images
  in [0, 1], ImageNet-normalised inside, -> (B, 512). ImageNet weights are read from the local
  torch hub cache (``<torch.hub.get_dir()>/checkpoints/resnet18-*.pth``) when present and never
  downloaded; otherwise the network is randomly initialised from a fixed seed (so that every
  process builds the same one and precomputed features stay valid), and one line says so.
Every decoder first normalises its (B, 512) input with a BatchNorm1d: ResNet features are
dominated by a per-dimension offset (with the randomly initialised encoder the spread across
images is about a tenth of it), and standardising them makes the decoders train far faster.

* :class:`VoxDecoder` -- Pix2Vox-F style: 512 -> (64, 2, 2, 2) -> 3-D transposed convolutions
  (kernel 4, stride 2, padding 1) with 128 -> 64 -> 32 -> 8 channels (BatchNorm, LeakyReLU) ->
  1x1x1 convolution -> (B, 1, 32, 32, 32) occupancy *logits* (probabilities = sigmoid).
* :class:`PointDecoder` -- 4 fully connected layers -> (B, P, 3).
* :class:`MeshDecoder` -- 4 fully connected layers -> (B, V, 3) offsets added to ico_sphere(4).
* :class:`ImplicitDecoder` -- (Q3.1) an occupancy network: image feature + Fourier features of a
  query point (voxel frame, [-0.5, 0.5]^3) -> occupancy logit; evaluated on the grid of cell
  centres it gives a (B, 1, 32, 32, 32) grid like the voxel decoder.
"""

from __future__ import annotations

import glob
import math
import os
import sys
from typing import Literal, Optional, Tuple

import torch
import torch.nn as nn

from l3d.ops import ico_sphere
from l3d.structures import Meshes
from l3d.validate import check_shape

from .voxelize import grid_query_points

Kind = Literal["vox", "point", "mesh", "implicit"]
KINDS = ("vox", "point", "mesh", "implicit")
FEAT_DIM = 512
# Occupancy decoders start from the prior log-odds of a voxel being filled (about 5 % of a chair's
# 32^3 grid; 7 % over the three procedural classes) instead of 0 (p = 0.5): Adam at lr 4e-4 moves
# the output bias by at most ~4e-4 per step, so from 0 it needs thousands of steps just to learn
# that most space is empty (measured: BCE still 0.41 after 700 steps, F1@0.05 38 vs 35 for the
# mean shape).
OCCUPANCY_PRIOR_LOGIT = math.log(0.05 / 0.95)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_INIT_SEED = 0


def imagenet_weights_path() -> Optional[str]:
    """The newest ``resnet18-*.pth`` in the local torch hub cache, or None."""
    found = sorted(glob.glob(os.path.join(torch.hub.get_dir(), "checkpoints", "resnet18-*.pth")))
    return found[-1] if found else None


def build_resnet18(pretrained: str = "auto", verbose: bool = True) -> Tuple[nn.Module, str]:
    """torchvision ResNet-18 with its fc layer replaced by the identity, and a tag naming its weights.

    Args:
        pretrained: "auto" (ImageNet weights from the local cache when present, else random),
            "imagenet" (required: error when absent) or "random".
    Returns:
        (module mapping (B, 3, H, W) normalised images to (B, 512), tag) with tag
        ``"resnet18-imagenet"`` or ``"resnet18-random-seed0"``.
    """
    import torchvision

    if pretrained not in ("auto", "imagenet", "random"):
        raise ValueError(f"pretrained must be auto, imagenet or random, got {pretrained!r}")
    path = imagenet_weights_path() if pretrained != "random" else None
    if pretrained == "imagenet" and path is None:
        raise FileNotFoundError(f"no resnet18-*.pth in {os.path.join(torch.hub.get_dir(), 'checkpoints')}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        net = torchvision.models.resnet18(weights=None)
    if path is not None:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        tag = "resnet18-imagenet"
        if verbose:
            print(f"ResNet-18: ImageNet weights from {path}", file=sys.stderr)
    else:
        tag = f"resnet18-random-seed{RANDOM_INIT_SEED}"
        if verbose and pretrained == "auto":
            print("ResNet-18: no ImageNet weights in the local torch cache "
                  f"({os.path.join(torch.hub.get_dir(), 'checkpoints')}/resnet18-*.pth); random initialisation",
                  file=sys.stderr)
    net.fc = nn.Identity()
    return net, tag


class Encoder(nn.Module):
    """(B, H, W, 3) RGB images in [0, 1] -> (B, 512) ResNet-18 features (see module docstring)."""

    def __init__(self, pretrained: str = "auto", verbose: bool = True):
        super().__init__()
        self.net, self.tag = build_resnet18(pretrained, verbose)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_shape(images, ("B", "H", "W", 3), "images")
        x = (images.permute(0, 3, 1, 2) - self.mean) / self.std  # (B, 3, H, W)
        return self.net(x)  # (B, 512)


def _mlp(sizes, act=nn.ReLU) -> nn.Sequential:
    """BatchNorm1d over the input features, then Linear + act layers (no act after the last)."""
    layers: list = [nn.BatchNorm1d(sizes[0])]
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


class VoxDecoder(nn.Module):
    """(B, 512) -> (B, 1, 32, 32, 32) occupancy logits (layout [Z, Y, X])."""

    def __init__(self, feat_dim: int = FEAT_DIM):
        super().__init__()
        self.fc = nn.Sequential(nn.BatchNorm1d(feat_dim), nn.Linear(feat_dim, 64 * 8), nn.LeakyReLU(0.2))

        def up(cin, cout):
            return nn.Sequential(nn.ConvTranspose3d(cin, cout, kernel_size=4, stride=2, padding=1),
                                 nn.BatchNorm3d(cout), nn.LeakyReLU(0.2))

        self.layers = nn.Sequential(up(64, 128), up(128, 64), up(64, 32), up(32, 8))  # 2 -> 4 -> 8 -> 16 -> 32
        self.out = nn.Conv3d(8, 1, kernel_size=1)
        nn.init.constant_(self.out.bias, OCCUPANCY_PRIOR_LOGIT)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        check_shape(feats, ("B", None), "feats")
        x = self.fc(feats).view(-1, 64, 2, 2, 2)
        return self.out(self.layers(x))  # (B, 1, 32, 32, 32)


class PointDecoder(nn.Module):
    """(B, 512) -> (B, P, 3) points (4 fully connected layers)."""

    def __init__(self, n_points: int = 1000, feat_dim: int = FEAT_DIM, hidden: int = 1024):
        super().__init__()
        self.n_points = int(n_points)
        self.mlp = _mlp([feat_dim, hidden, hidden, 2 * hidden, self.n_points * 3])

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.mlp(feats).view(-1, self.n_points, 3)


class MeshDecoder(nn.Module):
    """(B, 512) -> per-vertex offsets (B, V, 3) of ico_sphere(level); :meth:`meshes` builds the result."""

    def __init__(self, level: int = 4, feat_dim: int = FEAT_DIM, hidden: int = 1024):
        super().__init__()
        sphere = ico_sphere(level)
        self.register_buffer("sphere_verts", sphere.verts_packed().clone())  # (V, 3)
        self.register_buffer("sphere_faces", sphere.faces_packed().clone())  # (F, 3)
        v = self.sphere_verts.shape[0]
        self.mlp = _mlp([feat_dim, hidden, hidden, 2 * hidden, v * 3])
        with torch.no_grad():  # start close to the sphere
            self.mlp[-1].weight.mul_(0.1)
            self.mlp[-1].bias.zero_()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.sphere_verts + self.mlp(feats).view(feats.shape[0], -1, 3)  # (B, V, 3) vertices

    def meshes(self, verts: torch.Tensor) -> Meshes:
        """A Meshes batch from predicted vertices (B, V, 3) and the sphere's faces."""
        return Meshes(verts, self.sphere_faces[None].expand(verts.shape[0], -1, -1))


class ImplicitDecoder(nn.Module):
    """Occupancy network: (B, 512) features and (B, Q, 3) voxel-frame queries -> (B, Q) logits."""

    def __init__(self, feat_dim: int = FEAT_DIM, hidden: int = 256, n_freq: int = 6, grid: int = 32):
        super().__init__()
        self.n_freq, self.grid = n_freq, grid
        self.register_buffer("freqs", (2.0 ** torch.arange(n_freq)) * math.pi)
        pe = 3 + 6 * n_freq
        self.feat = nn.Sequential(nn.BatchNorm1d(feat_dim), nn.Linear(feat_dim, hidden))
        self.inp = nn.Linear(pe, hidden)
        self.blocks = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(3)])
        self.out = nn.Linear(hidden, 1)
        nn.init.constant_(self.out.bias, OCCUPANCY_PRIOR_LOGIT)
        self.act = nn.ReLU()

    def encode(self, xyz: torch.Tensor) -> torch.Tensor:
        """(..., 3) -> (..., 3 + 6 n_freq) Fourier features ``[x, sin(2^k pi x), cos(2^k pi x)]``."""
        a = xyz[..., None] * self.freqs  # (..., 3, n_freq)
        return torch.cat([xyz, a.sin().flatten(-2), a.cos().flatten(-2)], -1)

    def forward(self, feats: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        check_shape(queries, (feats.shape[0], "Q", 3), "queries")
        h = self.act(self.inp(self.encode(queries)) + self.feat(feats)[:, None])  # (B, Q, hidden)
        for blk in self.blocks:
            h = self.act(blk(h)) + h
        return self.out(h)[..., 0]  # (B, Q)

    def grid_logits(self, feats: torch.Tensor, size: Optional[int] = None, chunk: int = 8192) -> torch.Tensor:
        """(B, 1, D, D, D) logits at the cell centres of the [Z, Y, X] grid."""
        d = size or self.grid
        q = grid_query_points(d, device=feats.device, dtype=feats.dtype).reshape(1, -1, 3)
        q = q.expand(feats.shape[0], -1, -1)
        out = torch.cat([self(feats, q[:, s:s + chunk]) for s in range(0, q.shape[1], chunk)], 1)
        return out.view(-1, 1, d, d, d)


class SingleViewTo3D(nn.Module):
    """Encoder (unless features are given precomputed) + one decoder.

    Args:
        kind: "vox", "point", "mesh" or "implicit".
        n_points: points of the point decoder.
        use_encoder: False when training on precomputed features (``--load_feat``) or with a
            constant input (the mean-shape baseline).
        pretrained: ResNet-18 weights, see :func:`build_resnet18`.
    """

    def __init__(self, kind: Kind, n_points: int = 1000, use_encoder: bool = True, pretrained: str = "auto",
                 ico_level: int = 4, verbose: bool = True):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"type must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.encoder = Encoder(pretrained, verbose) if use_encoder else None
        if kind == "vox":
            self.decoder: nn.Module = VoxDecoder()
        elif kind == "point":
            self.decoder = PointDecoder(n_points)
        elif kind == "mesh":
            self.decoder = MeshDecoder(ico_level)
        else:
            self.decoder = ImplicitDecoder()

    def features(self, images: Optional[torch.Tensor] = None, feats: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, 512) from images (through the encoder) or precomputed features."""
        if feats is not None:
            return feats
        if self.encoder is None or images is None:
            raise ValueError("this model has no encoder: pass precomputed features")
        return self.encoder(images)

    def forward(self, images: Optional[torch.Tensor] = None, feats: Optional[torch.Tensor] = None,
                queries: Optional[torch.Tensor] = None) -> torch.Tensor:
        """vox: (B, 1, 32, 32, 32) logits; point: (B, P, 3); mesh: (B, V, 3) vertices;
        implicit: (B, Q) logits at ``queries`` (B, Q, 3), or the (B, 1, 32, 32, 32) grid of
        logits when ``queries`` is None."""
        f = self.features(images, feats)
        if self.kind == "implicit":
            return self.decoder.grid_logits(f) if queries is None else self.decoder(f, queries)
        return self.decoder(f)
