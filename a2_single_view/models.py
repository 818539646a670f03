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
* :class:`ImplicitDecoder` -- (Q3.1) an occupancy network: the image feature becomes a coarse 8^3
  grid of local codes; a query point (voxel frame, [-0.5, 0.5]^3) reads its code trilinearly and
  an MLP maps it with the point's Fourier features to an occupancy logit; evaluated on the grid
  of cell centres it gives a (B, 1, 32, 32, 32) grid like the voxel decoder.
"""

from __future__ import annotations

import glob
import math
import os
import sys
from typing import Literal, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from l3d.errors import user_error
from l3d.ops import ico_sphere, uniform_laplacian
from l3d.run import load_checkpoint
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


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel where this PyTorch has one for the device (several times faster
    on a CPU for the multi-million-parameter decoders), else the default implementation. Both
    compute the same update."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


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
        raise user_error("--pretrained imagenet", "ImageNet ResNet-18 weights (resnet18-*.pth) in "
                         f"{os.path.join(torch.hub.get_dir(), 'checkpoints')}", "none",
                         "use --pretrained auto or random")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        net = torchvision.models.resnet18(weights=None)
    if path is not None:
        state = load_checkpoint(path, map_location="cpu")  # UserError naming a damaged file
        try:
            net.load_state_dict(state)
        except RuntimeError:
            raise user_error(path, "ResNet-18 weights", "a state dict of another network") from None
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
    """(B, 512) -> (B, 1, 32, 32, 32) occupancy logits (layout [Z, Y, X]).

    ``width`` scales every channel count (1: 64 -> 128 -> 64 -> 32 -> 8; 0.5 halves them, for
    about a quarter of the compute)."""

    def __init__(self, feat_dim: int = FEAT_DIM, width: float = 1.0):
        super().__init__()
        c = [max(1, round(n * width)) for n in (64, 128, 64, 32, 8)]
        self.c0 = c[0]
        self.fc = nn.Sequential(nn.BatchNorm1d(feat_dim), nn.Linear(feat_dim, c[0] * 8), nn.LeakyReLU(0.2))

        def up(cin, cout):
            return nn.Sequential(nn.ConvTranspose3d(cin, cout, kernel_size=4, stride=2, padding=1),
                                 nn.BatchNorm3d(cout), nn.LeakyReLU(0.2))

        self.layers = nn.Sequential(*(up(a, b) for a, b in zip(c[:-1], c[1:])))  # 2 -> 4 -> 8 -> 16 -> 32
        self.out = nn.Conv3d(c[-1], 1, kernel_size=1)
        nn.init.constant_(self.out.bias, OCCUPANCY_PRIOR_LOGIT)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        check_shape(feats, ("B", None), "feats")
        x = self.fc(feats).view(-1, self.c0, 2, 2, 2)
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
        # the sphere's unique edges, computed once (the topology never changes)
        self.register_buffer("sphere_edges", sphere.edges_packed().clone(), persistent=False)  # (E, 2)
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

    def smoothness(self, verts: torch.Tensor) -> torch.Tensor:
        """Uniform Laplacian smoothing loss of the meshes with vertices (B, V, 3): the value of
        ``l3d.ops.mesh_laplacian_smoothing(self.meshes(verts))`` from the cached sphere edges."""
        b, v = verts.shape[:2]
        edges = (self.sphere_edges[None] + v * torch.arange(b, device=verts.device)[:, None, None]).reshape(-1, 2)
        lap = uniform_laplacian(verts.reshape(-1, 3), edges)  # (B V, 3)
        return lap.norm(dim=1).view(b, v).mean(1).mean()


class ImplicitDecoder(nn.Module):
    """Occupancy network: (B, 512) features and (B, Q, 3) voxel-frame queries -> (B, Q) logits.

    The image feature becomes a coarse 3-D feature grid (fully connected to 4^3 cells, then one
    transposed 3-D convolution to 8^3 cells of ``latent`` channels); a query reads the grid
    trilinearly at its position, and a small MLP maps that local code with the Fourier features
    of the position to the occupancy logit. Conditioning every query on a code of its own
    neighbourhood (rather than one global vector) is what lets the network learn from a few
    hundred images; evaluation costs one small MLP per query.
    """

    def __init__(self, feat_dim: int = FEAT_DIM, hidden: int = 256, n_freq: int = 6, grid: int = 32,
                 latent: int = 32):
        super().__init__()
        self.n_freq, self.grid, self.latent = n_freq, grid, latent
        self.register_buffer("freqs", (2.0 ** torch.arange(n_freq)) * math.pi)
        pe = 3 + 6 * n_freq
        c0 = 2 * latent
        self.c0 = c0
        self.feat = nn.Sequential(nn.BatchNorm1d(feat_dim), nn.Linear(feat_dim, c0 * 64), nn.LeakyReLU(0.2))
        self.up = nn.Sequential(nn.ConvTranspose3d(c0, latent, kernel_size=4, stride=2, padding=1),
                                nn.BatchNorm3d(latent), nn.LeakyReLU(0.2))  # 4^3 -> 8^3
        self.mlp = nn.Sequential(nn.Linear(latent + pe, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))
        nn.init.constant_(self.mlp[-1].bias, OCCUPANCY_PRIOR_LOGIT)

    def encode(self, xyz: torch.Tensor) -> torch.Tensor:
        """(..., 3) -> (..., 3 + 6 n_freq) Fourier features ``[x, sin(2^k pi x), cos(2^k pi x)]``."""
        a = xyz[..., None] * self.freqs  # (..., 3, n_freq)
        return torch.cat([xyz, a.sin().flatten(-2), a.cos().flatten(-2)], -1)

    def codes(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, latent, 8, 8, 8) feature grid of the images, layout [Z, Y, X] like the voxels."""
        check_shape(feats, ("B", None), "feats")
        return self.up(self.feat(feats).view(-1, self.c0, 4, 4, 4))

    def query(self, codes: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """(B, Q) logits at voxel-frame queries (B, Q, 3) in [-0.5, 0.5]^3 from :meth:`codes`."""
        b, q = queries.shape[:2]
        # grid_sample's (x, y, z) in [-1, 1] address the last three dims (X, Y, Z) of the grid
        loc = F.grid_sample(codes, (2.0 * queries).view(b, q, 1, 1, 3), mode="bilinear", padding_mode="border",
                            align_corners=False)  # (B, latent, Q, 1, 1)
        h = torch.cat([loc.view(b, self.latent, q).transpose(1, 2), self.encode(queries)], -1)  # (B, Q, latent + pe)
        return self.mlp(h)[..., 0]

    def forward(self, feats: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        check_shape(queries, (feats.shape[0], "Q", 3), "queries")
        return self.query(self.codes(feats), queries)

    def grid_logits(self, feats: torch.Tensor, size: Optional[int] = None, chunk: int = 8192) -> torch.Tensor:
        """(B, 1, D, D, D) logits at the cell centres of the [Z, Y, X] grid."""
        d = size or self.grid
        q = grid_query_points(d, device=feats.device, dtype=feats.dtype).reshape(1, -1, 3)
        q = q.expand(feats.shape[0], -1, -1)
        codes = self.codes(feats)
        out = torch.cat([self.query(codes, q[:, s:s + chunk]) for s in range(0, q.shape[1], chunk)], 1)
        return out.view(-1, 1, d, d, d)


class SingleViewTo3D(nn.Module):
    """Encoder (unless features are given precomputed) + one decoder.

    Args:
        kind: "vox", "point", "mesh" or "implicit".
        n_points: points of the point decoder.
        use_encoder: False when training on precomputed features (``--load_feat``) or with a
            constant input (the mean-shape baseline).
        pretrained: ResNet-18 weights, see :func:`build_resnet18`.
        ico_level: subdivisions of the mesh decoder's ico-sphere (4: 2562 vertices, the course's).
        vox_width: channel multiplier of the voxel decoder (1: the course's 128-64-32-8).
        implicit_hidden: width of the implicit decoder's MLP.
    """

    def __init__(self, kind: Kind, n_points: int = 1000, use_encoder: bool = True, pretrained: str = "auto",
                 ico_level: int = 4, verbose: bool = True, vox_width: float = 1.0, implicit_hidden: int = 256):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"type must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.encoder = Encoder(pretrained, verbose) if use_encoder else None
        if kind == "vox":
            self.decoder: nn.Module = VoxDecoder(width=vox_width)
        elif kind == "point":
            self.decoder = PointDecoder(n_points)
        elif kind == "mesh":
            self.decoder = MeshDecoder(ico_level)
        else:
            self.decoder = ImplicitDecoder(hidden=implicit_hidden)

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
