"""Implicit functions chosen by ``implicit_function.type``: sdf_volume, nerf, sdf_surface, neural_surface.

Volume functions (used by the volume renderers) take a :class:`l3d.rays.RayBundle` with samples
(R rays, S samples) and return ``{"density": (R, S), "feature": (R, S, 3)}``.
Surface functions give ``get_distance(points (..., 3)) -> (...,)`` and ``get_color(points) -> (..., 3)``
(and, for the neural one, gradients for the eikonal loss).

Layers and formulas follow the assignment's spec (see the module docstrings of
:mod:`l3d.fields` for the harmonic embedding and the MLP with input skips).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from l3d.fields import HarmonicEmbedding, MLPWithInputSkips
from l3d.rays import RayBundle, sample_deltas

from .hashgrid import HashEncoding
from .sdf import build_sdf, param

__all__ = ["IMPLICIT_FUNCTIONS", "build_implicit", "SDFVolume", "SDFSurface", "NeuralRadianceField",
           "NeuralSurface", "NGPRadianceField", "NGPSurface", "laplace_opacity_neg_log_transmittance"]


def _rainbow(points: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """(..., 3) ``clamp(|p - centre|, 0.02, 0.98)``: the course's rainbow colouring."""
    return torch.clamp((points - center.reshape(3)).abs(), 0.02, 0.98)


def laplace_opacity_neg_log_transmittance(sdf: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``-log(1 - opacity)`` of the Laplace-CDF opacity, computed without overflow.

    ``opacity = alpha 0.5 e^{-s/beta}`` for s > 0, ``alpha (1 - 0.5 e^{s/beta})`` for s <= 0
    (0 < alpha <= 1). Deep inside with alpha = 1 the opacity rounds to 1 in float32; here
    ``1 - opacity = (1 - alpha) + 0.5 alpha e^{s/beta}`` is evaluated in log space, so the value
    stays finite and its gradient is defined.
    """
    out_part = torch.log1p(-0.5 * alpha * torch.exp(-sdf.clamp(min=0) / beta))  # s > 0
    log_half_alpha = torch.log(0.5 * alpha)
    inner = log_half_alpha + sdf.clamp(max=0) / beta  # log(0.5 alpha e^{s/beta})
    if float(alpha) >= 1.0:
        in_part = inner
    else:
        in_part = torch.logaddexp(torch.log1p(-alpha) * torch.ones_like(inner), inner)
    return -torch.where(sdf > 0, out_part, in_part)


class SDFVolume(nn.Module):
    """An analytic SDF turned into a volume: Laplace-CDF opacity, rainbow or constant colour.

    Config keys: ``sdf`` (see :func:`a3_volume_surface.sdf.build_sdf`), ``feature {rainbow, val, opt}``,
    ``alpha {val, opt}`` (opacity scale, in (0, 1]), ``beta {val, opt}`` (falloff).
    Density of a sample is ``-log(1 - opacity) / delta`` with the sample's spacing delta, so that
    ``1 - exp(-density delta)`` is exactly the opacity.
    """

    kind = "volume"

    def __init__(self, sdf: Mapping[str, Any], feature: Optional[Mapping[str, Any]] = None,
                 alpha: Any = 1.0, beta: Any = 0.05):
        super().__init__()
        self.sdf = build_sdf(sdf)
        feature = dict(feature or {})
        self.rainbow = bool(feature.get("rainbow", False))
        param(self, "feature", {"val": feature.get("val", [1.0, 1.0, 1.0]), "opt": feature.get("opt", False)})
        param(self, "alpha", alpha)
        param(self, "beta", beta)
        a = float(self.alpha.detach().reshape(-1)[0])
        if not 0.0 < a <= 1.0:
            raise ValueError(f"sdf_volume: alpha scales an opacity and must lie in (0, 1], got {a}")
        if float(self.beta.detach().reshape(-1)[0]) <= 0:
            raise ValueError("sdf_volume: beta must be positive")

    def forward(self, bundle: RayBundle) -> Dict[str, torch.Tensor]:
        pts = bundle.points  # (R, S, 3)
        deltas = sample_deltas(bundle.lengths)  # (R, S)
        s = self.sdf(pts)
        nlt = laplace_opacity_neg_log_transmittance(s, self.alpha.reshape(()), self.beta.reshape(()))
        center = getattr(self.sdf, "center", torch.zeros(3, device=pts.device))
        base = _rainbow(pts, center) if self.rainbow else torch.ones_like(pts)
        return {"density": nlt / deltas, "feature": base * self.feature.reshape(3)}


class SDFSurface(nn.Module):
    """An analytic SDF as a surface (sphere tracing): distance, and colour at surface points.

    Colour: rainbow ``clamp(|p - centre|)`` times ``feature``, or for a ``scene`` SDF the colour of
    the nearest primitive, or ``feature`` alone.
    """

    kind = "surface"

    def __init__(self, sdf: Mapping[str, Any], feature: Optional[Mapping[str, Any]] = None):
        super().__init__()
        self.sdf = build_sdf(sdf)
        feature = dict(feature or {})
        self.rainbow = bool(feature.get("rainbow", False))
        param(self, "feature", {"val": feature.get("val", [1.0, 1.0, 1.0]), "opt": feature.get("opt", False)})

    def get_distance(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) -> (...,) signed distances."""
        return self.sdf(points)

    def get_color(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) -> (..., 3) colours."""
        if self.rainbow:
            base = _rainbow(points, self.sdf.center)
        elif hasattr(self.sdf, "color"):
            base = self.sdf.color(points)
        else:
            base = torch.ones_like(points)
        return base * self.feature.reshape(3)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.get_distance(points)


class NeuralRadianceField(nn.Module):
    """NeRF: harmonic embedding -> MLP with skips -> density (ReLU) and colour (sigmoid).

    Colour branch: ``Linear(H, H)`` feature, then (with view dependence) concatenated with the
    embedded ray direction, ``Linear(-> n_hidden_neurons_dir) + ReLU``, ``Linear(-> 3) + sigmoid``.
    Without view dependence the direction is not used (the second layer sees the feature alone).

    The direction term of the first colour layer is evaluated once per ray and broadcast over
    its S samples (mathematically the same layer as concatenating the direction to every sample).
    ``density_noise_std`` adds Gaussian noise to the raw density in training (NeRF's regulariser).
    ``density_bias_init`` sets the density head's initial bias: 0.1 (default) starts with a faint
    fog everywhere; a negative value starts from an almost empty volume (with the ReLU it can leave
    the density dead, without gradient). ``density_activation: softplus`` (instead of the course's
    ReLU) keeps a gradient everywhere.
    """

    kind = "volume"

    def __init__(self, n_harmonic_functions_xyz: int = 6, n_harmonic_functions_dir: int = 2,
                 n_hidden_neurons_xyz: int = 128, n_hidden_neurons_dir: int = 64, n_layers_xyz: int = 6,
                 append_xyz: Sequence[int] = (3,), use_view_dependence: bool = False,
                 density_noise_std: float = 0.0, density_bias_init: float = 0.1,
                 density_activation: str = "relu"):
        super().__init__()
        self.embed_xyz = HarmonicEmbedding(n_harmonic_functions_xyz)
        self.embed_dir = HarmonicEmbedding(n_harmonic_functions_dir)
        d_xyz = self.embed_xyz.output_dim(3)
        d_dir = self.embed_dir.output_dim(3) if use_view_dependence else 0
        h = n_hidden_neurons_xyz
        self.mlp = MLPWithInputSkips(n_layers_xyz, d_xyz, h, d_xyz, list(append_xyz))
        self.density_head = nn.Linear(h, 1)
        self.feature_layer = nn.Linear(h, h)
        self.color_hidden = nn.Linear(h + d_dir, n_hidden_neurons_dir)
        self.color_out = nn.Linear(n_hidden_neurons_dir, 3)
        if density_activation not in ("relu", "softplus"):
            raise ValueError(f"density_activation must be 'relu' or 'softplus', got {density_activation!r}")
        self.density_activation = F.relu if density_activation == "relu" else F.softplus
        self.use_view_dependence = bool(use_view_dependence)
        self.density_noise_std = float(density_noise_std)
        self.hidden = h
        # the initial density level: a small positive bias keeps it from dying under the ReLU; a
        # negative one starts from a nearly empty volume (see the density_bias_init config key)
        nn.init.constant_(self.density_head.bias, float(density_bias_init))

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """(P, 3) -> (P,) densities alone (no colour branch; for occupancy grids)."""
        x = self.embed_xyz(points)
        return self.density_activation(self.density_head(self.mlp(x, x))[..., 0])

    def forward(self, bundle: RayBundle) -> Dict[str, torch.Tensor]:
        pts = bundle.points  # (R, S, 3)
        r, s = pts.shape[:2]
        x = self.embed_xyz(pts.reshape(-1, 3))  # (R S, D)
        y = self.mlp(x, x)  # (R S, H)
        raw = self.density_head(y)[..., 0]
        if self.training and self.density_noise_std > 0:
            raw = raw + torch.randn_like(raw) * self.density_noise_std
        density = self.density_activation(raw).view(r, s)
        feat = self.feature_layer(y)  # (R S, H)
        w = self.color_hidden.weight  # (Hd, H + Ddir)
        hid = F.linear(feat, w[:, : self.hidden], self.color_hidden.bias).view(r, s, -1)  # (R, S, Hd)
        if self.use_view_dependence:
            d = self.embed_dir(bundle.directions)  # (R, Ddir) once per ray
            hid = hid + F.linear(d, w[:, self.hidden:])[:, None]
        color = torch.sigmoid(self.color_out(F.relu(hid)))  # (R, S, 3)
        return {"density": density, "feature": color}


class NeuralSurface(nn.Module):
    """Neural SDF: harmonic embedding -> distance MLP (signed output, no activation) and colour MLP.

    Distance: ``MLPWithInputSkips(n_layers_distance)`` then ``Linear(H -> 1)``.
    Colour: the distance trunk's features -> ``MLPWithInputSkips(n_layers_color)`` ->
    ``Linear(-> 3) + sigmoid``. The distance gradient comes from autograd.
    """

    kind = "surface"

    def __init__(self, n_harmonic_functions_xyz: int = 4, n_layers_distance: int = 6,
                 n_hidden_neurons_distance: int = 128, append_distance: Sequence[int] = (),
                 n_layers_color: int = 2, n_hidden_neurons_color: int = 128, append_color: Sequence[int] = ()):
        super().__init__()
        self.embed = HarmonicEmbedding(n_harmonic_functions_xyz)
        d = self.embed.output_dim(3)
        h = n_hidden_neurons_distance
        self.distance_mlp = MLPWithInputSkips(n_layers_distance, d, h, d, list(append_distance))
        self.distance_head = nn.Linear(h, 1)
        self.color_mlp = MLPWithInputSkips(n_layers_color, h, n_hidden_neurons_color, h, list(append_color))
        self.color_head = nn.Linear(n_hidden_neurons_color, 3)

    def _trunk(self, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.embed(points)
        y = self.distance_mlp(x, x)
        return self.distance_head(y)[..., 0], y

    def get_distance(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) -> (...,)."""
        return self._trunk(points)[0]

    def get_color(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) -> (..., 3) in [0, 1]."""
        return self.get_distance_color(points)[1]

    def get_distance_color(self, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Both at once: (...,) distances and (..., 3) colours."""
        d, y = self._trunk(points)
        return d, torch.sigmoid(self.color_head(self.color_mlp(y, y)))

    def get_distance_and_gradient(self, points: torch.Tensor, create_graph: bool = True
                                  ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(...,) distances and (..., 3) gradients d(distance)/d(point) (differentiable when
        ``create_graph``, for the eikonal loss)."""
        with torch.enable_grad():
            p = points if points.requires_grad else points.detach().requires_grad_(True)
            d = self.get_distance(p)
            (g,) = torch.autograd.grad(d.sum(), p, create_graph=create_graph)
        return d, g

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.get_distance(points)


class _TruncExp(torch.autograd.Function):
    """``exp(x)`` whose backward clamps x at 15 (Instant-NGP's density activation: no overflowing
    gradients from a single large raw value)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15))


def _mlp(d_in: int, hidden: int, n_hidden: int, d_out: int) -> nn.Sequential:
    """``n_hidden`` ReLU layers of width ``hidden``, then a linear output layer."""
    layers: list = []
    for _ in range(int(n_hidden)):
        layers += [nn.Linear(d_in, hidden), nn.ReLU()]
        d_in = hidden
    return nn.Sequential(*layers, nn.Linear(d_in, d_out))


def _hash_kwargs(n_levels, n_features_per_level, log2_hashmap_size, base_resolution, max_resolution, bound):
    return dict(n_levels=int(n_levels), n_features=int(n_features_per_level),
                log2_table_size=int(log2_hashmap_size), base_resolution=int(base_resolution),
                max_resolution=int(max_resolution), bound=float(bound))


class NGPRadianceField(nn.Module):
    """Instant-NGP's radiance field: a multi-resolution hash encoding
    (:class:`a3_volume_surface.hashgrid.HashEncoding` over ``[-bound, bound]^3``), a density MLP
    (``n_hidden_layers_density`` hidden layers of ``n_hidden_neurons``) whose first output is the raw
    density (``exp`` activation, see :class:`_TruncExp`) and the others ``n_geo_features`` geometric
    features, and a colour MLP (``n_hidden_layers_color`` hidden layers) from those features (plus the
    harmonic-embedded view direction with ``use_view_dependence``) to a sigmoid RGB.

    ``table_parameters()`` are the hash tables (their own learning rate and Adam eps, see
    :meth:`a3_volume_surface.model.Model.param_groups`).
    """

    kind = "volume"

    def __init__(self, n_levels: int = 16, n_features_per_level: int = 2, log2_hashmap_size: int = 17,
                 base_resolution: int = 16, max_resolution: int = 512, bound: float = 1.5,
                 n_hidden_neurons: int = 64, n_hidden_layers_density: int = 1, n_hidden_layers_color: int = 2,
                 n_geo_features: int = 15, use_view_dependence: bool = False, n_harmonic_functions_dir: int = 4,
                 density_bias_init: float = 0.0):
        super().__init__()
        self.encoding = HashEncoding(**_hash_kwargs(n_levels, n_features_per_level, log2_hashmap_size,
                                                    base_resolution, max_resolution, bound))
        self.density_net = _mlp(self.encoding.output_dim, n_hidden_neurons, n_hidden_layers_density,
                                1 + int(n_geo_features))
        nn.init.constant_(self.density_net[-1].bias[:1], float(density_bias_init))
        self.use_view_dependence = bool(use_view_dependence)
        self.embed_dir = HarmonicEmbedding(n_harmonic_functions_dir)
        d_dir = self.embed_dir.output_dim(3) if self.use_view_dependence else 0
        self.color_net = _mlp(int(n_geo_features) + d_dir, n_hidden_neurons, n_hidden_layers_color, 3)

    def table_parameters(self):
        return [self.encoding.table]

    def _trunk(self, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.density_net(self.encoding(points))
        return _TruncExp.apply(h[..., 0]), h[..., 1:]

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """(P, 3) -> (P,) densities alone (for the occupancy grid)."""
        return self._trunk(points)[0]

    def forward(self, bundle: RayBundle) -> Dict[str, torch.Tensor]:
        pts = bundle.points  # (R, S, 3)
        r, s = pts.shape[:2]
        sigma, geo = self._trunk(pts.reshape(-1, 3))
        if self.use_view_dependence:
            d = self.embed_dir(bundle.directions)  # (R, Ddir)
            geo = torch.cat([geo.view(r, s, -1), d[:, None].expand(r, s, d.shape[-1])], -1).reshape(r * s, -1)
        color = torch.sigmoid(self.color_net(geo))
        return {"density": sigma.view(r, s), "feature": color.view(r, s, 3)}


class NGPSurface(nn.Module):
    """A hash-encoded neural SDF (for VolSDF / NeuS): ``[xyz, hash features]`` -> distance MLP
    (``n_hidden_layers_distance`` hidden layers) -> signed distance and ``n_geo_features`` features
    -> colour MLP -> sigmoid RGB. The input point itself is part of the distance MLP's input, so
    the sphere pre-training can be fitted by the MLP alone with the tables near zero, and the
    tables add the detail. Gradients (eikonal term, normals) come from autograd through the
    trilinear weights.
    """

    kind = "surface"

    def __init__(self, n_levels: int = 16, n_features_per_level: int = 2, log2_hashmap_size: int = 17,
                 base_resolution: int = 16, max_resolution: int = 512, bound: float = 1.5,
                 n_hidden_neurons: int = 64, n_hidden_layers_distance: int = 1, n_hidden_layers_color: int = 2,
                 n_geo_features: int = 15):
        super().__init__()
        self.encoding = HashEncoding(**_hash_kwargs(n_levels, n_features_per_level, log2_hashmap_size,
                                                    base_resolution, max_resolution, bound))
        self.distance_net = _mlp(3 + self.encoding.output_dim, n_hidden_neurons, n_hidden_layers_distance,
                                 1 + int(n_geo_features))
        self.color_net = _mlp(int(n_geo_features), n_hidden_neurons, n_hidden_layers_color, 3)

    def table_parameters(self):
        return [self.encoding.table]

    def _trunk(self, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        shape = points.shape[:-1]
        p = points.reshape(-1, 3)
        h = self.distance_net(torch.cat([p, self.encoding(p)], -1))
        return h[:, 0].reshape(shape), h[:, 1:].reshape(*shape, -1)

    def get_distance(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) -> (...,)."""
        return self._trunk(points)[0]

    def get_color(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) -> (..., 3) in [0, 1]."""
        return self.get_distance_color(points)[1]

    def get_distance_color(self, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        d, geo = self._trunk(points)
        return d, torch.sigmoid(self.color_net(geo))

    get_distance_and_gradient = NeuralSurface.get_distance_and_gradient

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.get_distance(points)


IMPLICIT_FUNCTIONS: Dict[str, type] = {
    "sdf_volume": SDFVolume,
    "nerf": NeuralRadianceField,
    "sdf_surface": SDFSurface,
    "neural_surface": NeuralSurface,
    "ngp": NGPRadianceField,
    "ngp_surface": NGPSurface,
}


def build_implicit(cfg: Mapping[str, Any]) -> nn.Module:
    """The implicit function named by ``cfg["type"]`` with the other keys as arguments."""
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    if kind not in IMPLICIT_FUNCTIONS:
        raise ValueError(f"unknown implicit_function.type {kind!r}; expected one of {sorted(IMPLICIT_FUNCTIONS)}")
    try:
        return IMPLICIT_FUNCTIONS[kind](**cfg)
    except TypeError as e:
        raise ValueError(f"bad keys for implicit_function.type {kind!r}: {e}") from None
