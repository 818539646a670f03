"""The DreamFusion-style NeRF of Q2.3: density + albedo field, background, shaded volume rendering.

Built from the NeRF pieces of the shared core (:mod:`l3d.fields`: ``HarmonicEmbedding``,
``MLPWithInputSkips``; :mod:`l3d.rays`: rays through pixels, stratified and importance sampling,
volume-rendering weights and compositing).

Field (:class:`DreamNeRF`), for points x in a ball of radius ``bound`` (density 0 outside):

    h = MLP(gamma(x))                     (4 channels)
    sigma(x) = exp(h_0 + blob(x)),        blob(x) = blob_density * exp(-|x|^2 / (2 blob_radius^2))
    albedo(x) = sigmoid(h_1..3)
    n(x) = -grad sigma / |grad sigma|     (computed as -grad (h_0 + blob): the same direction)

The blob is DreamFusion's density prior: at initialisation the scene is a fuzzy ball at the
origin, so the first renders already have an object to shade. Background: an MLP of the ray
direction (:class:`Background`), as in DreamFusion.

Shading (per sample, then composited; ``l`` the unit light direction, ``a`` the ambient ratio):

* ``albedo``: ``c = albedo``;
* ``lambertian``: ``c = albedo (a + (1 - a) max(0, n . l))``;
* ``textureless``: ``c = (a + (1 - a) max(0, n . l))`` in every channel (white albedo);
* ``normal``: ``c = (n + 1) / 2``.

Regularisers (DreamFusion appendix A.2):

* :func:`entropy_loss` of each pixel's opacity ``o``: ``-(o log2 o + (1 - o) log2 (1 - o))``, mean
  over pixels (pushes pixels to fully opaque or fully transparent);
* :func:`orientation_loss`: ``sum_i sg[w_i] max(0, n_i . d)^2`` per ray (d the ray direction, from
  the camera into the scene), mean over rays: zero where the normals face the camera, positive
  where visible normals face away.

Rays: sample distances lie between where each ray enters and leaves the ball of radius ``bound``
(:func:`l3d.rays.ray_sphere_bounds`); the last sample of a ray gets the mean sample spacing as its
length (not 1e10), so an empty ray stays transparent and shows the background. Depth is the
expected distance ``sum_i w_i t_i`` (0 contribution from the background).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Literal, NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from l3d.cameras import PerspectiveCameras, Size, as_hw
from l3d.fields import HarmonicEmbedding, MLPWithInputSkips
from l3d.rays import composite, composite_depth, image_rays, importance_lengths, ray_sphere_bounds, \
    stratified_lengths, volume_weights
from l3d.validate import check_shape

__all__ = [
    "Shading", "SHADINGS", "NeRFConfig", "DreamNeRF", "Background", "NeRFRender", "render_nerf", "entropy_loss",
    "orientation_loss", "shade", "EMA",
]

Shading = Literal["albedo", "lambertian", "textureless", "normal"]
SHADINGS = ("albedo", "lambertian", "textureless", "normal")


@dataclass
class NeRFConfig:
    """Sizes of the field and of the ray sampling (defaults: the course's 64 + 32 samples per ray).

    Attributes:
        n_harmonic: frequencies of the point encoding; hidden / n_layers: the MLP trunk.
        blob_density, blob_radius: the density prior (course: 5 and 0.2).
        density_bias: added to the log-density everywhere (0 in the course: the untrained MLP's
            log-density of about 0 then fills the whole ball with a fog of density about 1).
        bound: radius of the ball holding the scene.
        bg_harmonic, bg_hidden: the background MLP on ray directions.
        n_samples: stratified samples per ray; n_importance: extra samples drawn from the coarse
            weights (0 disables the second pass).
    """

    n_harmonic: int = 6
    hidden: int = 64
    n_layers: int = 3
    blob_density: float = 5.0
    blob_radius: float = 0.2
    density_bias: float = 0.0
    bound: float = 1.0
    bg_harmonic: int = 4
    bg_hidden: int = 32
    n_samples: int = 64
    n_importance: int = 32


class DreamNeRF(nn.Module):
    """Density and albedo field (see the module docstring). ``cfg`` is kept for checkpoints."""

    def __init__(self, cfg: Optional[NeRFConfig] = None):
        super().__init__()
        self.cfg = cfg = cfg or NeRFConfig()
        self.embed = HarmonicEmbedding(cfg.n_harmonic)
        self.trunk = MLPWithInputSkips(cfg.n_layers, self.embed.output_dim(3), cfg.hidden)
        self.head = nn.Linear(cfg.hidden, 4)

    def blob(self, x: torch.Tensor) -> torch.Tensor:
        """(...,) density prior in log space for points (..., 3)."""
        r2 = (x * x).sum(-1)
        return self.cfg.blob_density * torch.exp(-r2 / (2 * self.cfg.blob_radius ** 2)) + self.cfg.density_bias

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """(..., 4): log-density (prior included) and albedo logits of points (..., 3)."""
        h = self.head(self.trunk(self.embed(x)))
        return torch.cat([h[..., :1] + self.blob(x)[..., None], h[..., 1:]], -1)

    def _density(self, log_sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        inside = (x * x).sum(-1) <= self.cfg.bound ** 2
        return torch.where(inside, torch.exp(log_sigma.clamp(-15.0, 15.0)), torch.zeros_like(log_sigma))

    def forward(self, x: torch.Tensor, with_normals: bool = False, create_graph: Optional[bool] = None):
        """Density (...,), albedo (..., 3) and, with ``with_normals``, unit normals (..., 3).

        Normals are ``-grad`` of the log-density; ``create_graph`` (default: whether gradients
        are enabled) keeps them differentiable for the orientation loss and shading.
        """
        check_shape(x, ("...", 3), "x")
        if not with_normals:
            h = self.raw(x)
            return self._density(h[..., 0], x), torch.sigmoid(h[..., 1:]), None
        create = torch.is_grad_enabled() if create_graph is None else create_graph
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            h = self.raw(xg)
            (grad,) = torch.autograd.grad(h[..., 0].sum(), xg, create_graph=create)
        if not create:
            h = h.detach()
        normals = F.normalize(-grad, dim=-1, eps=1e-12)
        return self._density(h[..., 0], x), torch.sigmoid(h[..., 1:]), normals

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """(...,) density at points (..., 3)."""
        return self.forward(x)[0]


class Background(nn.Module):
    """RGB background ``sigmoid(MLP(gamma(d)))`` of unit ray directions d (..., 3)."""

    def __init__(self, n_harmonic: int = 4, hidden: int = 32):
        super().__init__()
        self.embed = HarmonicEmbedding(n_harmonic)
        self.mlp = nn.Sequential(nn.Linear(self.embed.output_dim(3), hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def forward(self, directions: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(self.embed(directions)))


def shade(albedo: torch.Tensor, normals: Optional[torch.Tensor], shading: Shading,
          light_dir: Optional[torch.Tensor] = None, ambient_ratio: float | torch.Tensor = 1.0) -> torch.Tensor:
    """(..., 3) colours of samples.

    Args:
        albedo: (..., 3); normals: (..., 3) unit normals (not needed for ``albedo``).
        light_dir: unit light directions broadcastable to (..., 3) (lambertian / textureless).
        ambient_ratio: scalar or broadcastable to (...,).
    """
    if shading == "albedo":
        return albedo
    if normals is None:
        raise ValueError(f"shading {shading!r} needs normals")
    if shading == "normal":
        return (normals + 1) / 2
    if light_dir is None:
        raise ValueError(f"shading {shading!r} needs a light direction")
    a = torch.as_tensor(ambient_ratio, dtype=albedo.dtype, device=albedo.device)
    lambert = a + (1 - a) * (normals * light_dir).sum(-1).clamp(min=0)  # (...,)
    if shading == "textureless":
        return lambert[..., None].expand_as(albedo)
    if shading == "lambertian":
        return albedo * lambert[..., None]
    raise ValueError(f"unknown shading {shading!r}; expected one of {SHADINGS}")


def entropy_loss(opacity: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean binary entropy (bits) of pixel opacities (any shape), clamped to [eps, 1 - eps]."""
    o = opacity.clamp(eps, 1 - eps)
    return (-(o * torch.log2(o) + (1 - o) * torch.log2(1 - o))).mean()


def orientation_loss(weights: torch.Tensor, normals: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Mean over rays of ``sum_i sg[w_i] max(0, n_i . d)^2``.

    Args:
        weights: (..., S) rendering weights (detached here); normals: (..., S, 3) unit normals;
        directions: (..., 3) unit ray directions (camera -> scene).
    """
    check_shape(normals, tuple(weights.shape) + (3,), "normals")
    facing_away = (normals * directions[..., None, :]).sum(-1).clamp(min=0)  # (..., S)
    return (weights.detach() * facing_away ** 2).sum(-1).mean()


class NeRFRender(NamedTuple):
    """Output of :func:`render_nerf` for N cameras and H x W pixels.

    image (N, H, W, 3) in [0, 1] (with background); depth (N, H, W) expected distance;
    opacity (N, H, W); orient (scalar orientation loss, 0 without normals); near / far (N, H, W)
    the sampling bounds of every ray; lengths (N, H, W, S') the distances of its samples.
    """

    image: torch.Tensor
    depth: torch.Tensor
    opacity: torch.Tensor
    orient: torch.Tensor
    near: torch.Tensor
    far: torch.Tensor
    lengths: Optional[torch.Tensor] = None  # (N, H, W, S') the sample distances along every ray


def render_nerf(
    model: DreamNeRF,
    cameras: PerspectiveCameras,
    image_size: Size,
    shading: Shading = "albedo",
    background: Optional[nn.Module] = None,
    background_color: Optional[torch.Tensor] = None,
    light_dir: Optional[torch.Tensor] = None,
    ambient_ratio: float = 1.0,
    perturb: bool = False,
    generator: Optional[torch.Generator] = None,
    need_orient: bool = False,
    chunk_rays: Optional[int] = None,
    lengths: Optional[torch.Tensor] = None,
) -> NeRFRender:
    """Volume-render N views of the field.

    Args:
        model: the field; cameras: N cameras; image_size: int or (H, W).
        shading: see :func:`shade`.
        background: module mapping ray directions (..., 3) to colours, or None for
            ``background_color`` (a (3,) colour; default white).
        light_dir: (N, 3) unit light directions (lambertian / textureless).
        perturb: jitter the stratified samples (training); generator: for the jitter and the
            importance samples (on the cameras' device).
        need_orient: compute normals (if the shading does not already) and the orientation loss.
        chunk_rays: render at most this many rays at a time (only without gradients: videos).
        lengths: (N, H, W, S') sample distances to use instead of sampling (e.g. ``.lengths`` of
            an earlier render: the same samples after the field changed).
    """
    h, w = as_hw(image_size)
    cfg = model.cfg
    rays = image_rays(cameras, (h, w))  # (N, R)
    n = len(cameras)
    device, dtype = rays.origins.device, rays.origins.dtype
    if light_dir is not None:
        check_shape(light_dir, (n, 3), "light_dir")
    with_normals = shading != "albedo" or need_orient
    if chunk_rays is not None and torch.is_grad_enabled():
        raise ValueError("chunk_rays is only for rendering without gradients")
    step = chunk_rays or rays.origins.shape[1]
    if lengths is not None:
        check_shape(lengths, (n, h, w, None), "lengths")
        lengths = lengths.reshape(n, h * w, -1)
    parts = []
    for s in range(0, rays.origins.shape[1], step):
        sub = rays[:, s:s + step]
        parts.append(_render_rays(model, sub.origins, sub.directions, cfg, shading, with_normals, background,
                                  background_color, light_dir, ambient_ratio, perturb, generator,
                                  None if lengths is None else lengths[:, s:s + step]))
    cat = lambda i: torch.cat([p[i] for p in parts], 1).reshape(n, h, w, *parts[0][i].shape[2:])  # noqa: E731
    orient = torch.stack([p[3] * p[0].shape[1] for p in parts]).sum() / rays.origins.shape[1]
    return NeRFRender(cat(0), cat(1), cat(2), orient, cat(4), cat(5), cat(6))


def _render_rays(model, origins, directions, cfg, shading, with_normals, background, background_color,
                 light_dir, ambient_ratio, perturb, generator, fixed_lengths=None):
    """Render rays (N, R): returns image (N, R, 3), depth, opacity (N, R), orient (), near, far
    (N, R), lengths (N, R, S'); ``fixed_lengths`` replaces the sampling."""
    near, far, _ = ray_sphere_bounds(origins, directions, cfg.bound, min_near=0.01)  # (N, R)
    S = cfg.n_samples
    last = ((far - near) / S)[..., None]  # (N, R, 1) length given to the final sample
    if fixed_lengths is not None:
        lengths = fixed_lengths.to(origins.dtype)
    else:
        lengths = stratified_lengths(near.shape, S, near, far, perturb=perturb, generator=generator,
                                     device=origins.device, dtype=origins.dtype)
    if fixed_lengths is None and cfg.n_importance > 0 and S >= 3:
        with torch.no_grad():
            pts = origins[..., None, :] + lengths[..., None] * directions[..., None, :]  # (N, R, S, 3)
            sigma = model.density(pts)
            wts = volume_weights(sigma, torch.cat([lengths[..., 1:] - lengths[..., :-1], last], -1))
            lengths = importance_lengths(lengths, wts, cfg.n_importance, deterministic=not perturb,
                                         generator=generator)  # (N, R, S + N_imp)
    pts = origins[..., None, :] + lengths[..., None] * directions[..., None, :]
    sigma, albedo, normals = model(pts, with_normals=with_normals)
    deltas = torch.cat([lengths[..., 1:] - lengths[..., :-1], last.expand_as(lengths[..., :1])], -1)
    weights = volume_weights(sigma, deltas)  # (N, R, S')
    ldir = None if light_dir is None else light_dir[:, None, None, :]
    colours = shade(albedo, normals, shading, ldir, ambient_ratio)  # (N, R, S', 3)
    if background is not None:
        bg = background(directions)  # (N, R, 3)
    else:
        bg = torch.ones(3, device=origins.device, dtype=origins.dtype) if background_color is None \
            else torch.as_tensor(background_color, device=origins.device, dtype=origins.dtype)
    image = composite(weights, colours, bg)
    depth = composite_depth(weights, lengths)
    opacity = weights.sum(-1)
    orient = orientation_loss(weights, normals, directions) if normals is not None \
        else torch.zeros((), device=origins.device, dtype=origins.dtype)
    return image, depth, opacity, orient, near, far, lengths.detach()


class EMA:
    """Exponential moving average of a module's parameters (``p_ema <- d p_ema + (1 - d) p``).

    :meth:`module` returns the averaged copy (used for the turntable videos, as in
    stable-dreamfusion); ``decay = 0`` makes it follow the live weights exactly.

    With ``warmup`` the n-th update uses ``min(decay, (1 + n) / (10 + n))``, so a short run is
    not dominated by the initial weights (at decay 0.999 a plain average of 400 updates would still
    be 67 % initialisation); ``num_updates`` counts the updates (restore it when resuming).
    """

    def __init__(self, module: nn.Module, decay: float = 0.95, warmup: bool = False):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        d = self.current_decay()
        self.num_updates += 1
        for e, p in zip(self.shadow.parameters(), module.parameters()):
            e.lerp_(p.detach(), 1.0 - d)

    def module(self) -> nn.Module:
        return self.shadow

    def state_dict(self) -> dict:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.shadow.load_state_dict(state)


def config_dict(cfg: NeRFConfig) -> dict:
    """The config as a plain dict (stored in checkpoints)."""
    return asdict(cfg)
