"""Analytic signed distance functions: sphere, box, torus, capsule, cylinder, plane and scenes of them.

Every SDF is an ``nn.Module`` mapping points (..., 3) to signed distances (...,) (negative
inside). Parameters given as ``{val: [...], opt: true}`` in a config become trainable
``nn.Parameter`` s (``opt: false`` or a plain list: fixed buffers). ``SDF_TYPES`` maps the config
``sdf.type`` to the class; :func:`build_sdf` builds one from a config mapping.

Formulas (``c`` the centre, ``p' = p - c``):
* sphere ``|p'| - r``;
* box (half size ``h = side / 2``): ``q = |p'| - h``, ``|max(q, 0)| + min(max_i q_i, 0)``;
* torus (ring in the xy-plane): ``q = (|p'.xy| - R0, p'.z)``, ``|q| - r1``;
* capsule between a and b of radius r; vertical (z) cylinder of radius r and half height h;
* scene: the minimum over its primitives (each with its own colour; see :class:`SceneSDF`).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence

import torch
import torch.nn as nn

from l3d.validate import check_shape

__all__ = ["SDF_TYPES", "build_sdf", "param", "SphereSDF", "BoxSDF", "TorusSDF", "CapsuleSDF",
           "CylinderSDF", "PlaneSDF", "SceneSDF"]


def param(module: nn.Module, name: str, spec: Any, default: Any = None) -> torch.Tensor:
    """Register ``name`` on ``module`` from a config value.

    ``spec`` is a number / list (a fixed buffer) or a mapping ``{val: ..., opt: bool}`` (a trainable
    parameter when ``opt`` is true). Vectors are stored with a leading batch dimension of 1
    (shape (1, D)), as the course code does, so printed values read ``(x, y, z)``.
    """
    if spec is None:
        spec = default
    opt = False
    if isinstance(spec, Mapping):
        opt = bool(spec.get("opt", False))
        spec = spec["val"]
    t = torch.as_tensor(spec if not hasattr(spec, "__iter__") else list(spec), dtype=torch.float32)
    if t.dim() == 1:
        t = t[None]
    if opt:
        module.register_parameter(name, nn.Parameter(t.clone()))
    else:
        module.register_buffer(name, t.clone())
    return getattr(module, name)


class SphereSDF(nn.Module):
    """Sphere of ``radius`` around ``center``."""

    def __init__(self, center=(0.0, 0.0, 0.0), radius=1.0):
        super().__init__()
        param(self, "center", center)
        param(self, "radius", radius)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """points (..., 3) -> (...,)."""
        return (points - self.center.view(3)).norm(dim=-1) - self.radius.view(())


class BoxSDF(nn.Module):
    """Axis-aligned box with ``side_lengths`` (3,) around ``center``."""

    def __init__(self, center=(0.0, 0.0, 0.0), side_lengths=(1.0, 1.0, 1.0)):
        super().__init__()
        param(self, "center", center)
        param(self, "side_lengths", side_lengths)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        q = (points - self.center.view(3)).abs() - self.side_lengths.view(3) / 2.0  # (..., 3)
        outside = q.clamp(min=0).norm(dim=-1)
        inside = q.max(dim=-1).values.clamp(max=0)
        return outside + inside


class TorusSDF(nn.Module):
    """Torus around ``center``, ring in the xy-plane: ``radii = (R0 ring, r1 tube)``."""

    def __init__(self, center=(0.0, 0.0, 0.0), radii=(1.0, 0.25)):
        super().__init__()
        param(self, "center", center)
        param(self, "radii", radii)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        p = points - self.center.view(3)
        r = self.radii.view(2)
        q = torch.stack([p[..., :2].norm(dim=-1) - r[0], p[..., 2]], -1)
        return q.norm(dim=-1) - r[1]


class CapsuleSDF(nn.Module):
    """Capsule: points within ``radius`` of the segment a-b."""

    def __init__(self, a=(0.0, 0.0, 0.0), b=(0.0, 0.0, 1.0), radius=0.1):
        super().__init__()
        param(self, "a", a)
        param(self, "b", b)
        param(self, "radius", radius)

    @property
    def center(self) -> torch.Tensor:
        return 0.5 * (self.a + self.b)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        a, b = self.a.view(3), self.b.view(3)
        pa, ba = points - a, b - a
        h = ((pa * ba).sum(-1) / (ba * ba).sum()).clamp(0, 1)
        return (pa - h[..., None] * ba).norm(dim=-1) - self.radius.view(())


class CylinderSDF(nn.Module):
    """Capped cylinder along z: ``radius`` and ``half_height`` around ``center``."""

    def __init__(self, center=(0.0, 0.0, 0.0), radius=0.5, half_height=0.5):
        super().__init__()
        param(self, "center", center)
        param(self, "radius", radius)
        param(self, "half_height", half_height)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        p = points - self.center.view(3)
        d = torch.stack([p[..., :2].norm(dim=-1) - self.radius.view(()), p[..., 2].abs() - self.half_height.view(())], -1)
        return d.max(dim=-1).values.clamp(max=0) + d.clamp(min=0).norm(dim=-1)


class PlaneSDF(nn.Module):
    """Half-space below the plane through ``center`` with unit ``normal`` (solid on the -normal side)."""

    def __init__(self, center=(0.0, 0.0, 0.0), normal=(0.0, 0.0, 1.0)):
        super().__init__()
        param(self, "center", center)
        param(self, "normal", normal)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        n = self.normal.view(3) / self.normal.norm()
        return ((points - self.center.view(3)) * n).sum(-1)


class SceneSDF(nn.Module):
    """Union (minimum) of primitives, each with a colour.

    Args:
        primitives: a list of mappings ``{type: sphere|box|torus|capsule|cylinder|plane, color: [r, g, b],
            <the primitive's parameters>}``.
    ``forward`` gives the union's distance; :meth:`color` the colour of the nearest primitive.
    """

    def __init__(self, primitives: Sequence[Mapping[str, Any]] = ()):
        super().__init__()
        if len(primitives) == 0:
            raise ValueError("a scene SDF needs at least one primitive")
        self.parts = nn.ModuleList()
        colors = []
        for i, spec in enumerate(primitives):
            spec = dict(spec)
            colors.append(list(spec.pop("color", (0.8, 0.8, 0.8))))
            kind = spec.pop("type", None)
            if kind not in PRIMITIVES:
                raise ValueError(f"scene primitive {i}: unknown type {kind!r}; expected one of {sorted(PRIMITIVES)}")
            self.parts.append(PRIMITIVES[kind](**spec))
        self.register_buffer("colors", torch.tensor(colors, dtype=torch.float32))  # (K, 3)
        self.register_buffer("center", torch.zeros(1, 3))

    def distances(self, points: torch.Tensor) -> torch.Tensor:
        """(..., K) distance to every primitive."""
        return torch.stack([part(points) for part in self.parts], -1)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.distances(points).min(dim=-1).values

    def color(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) colour of the primitive nearest to each point."""
        return self.colors[self.distances(points).argmin(dim=-1)]


PRIMITIVES: Dict[str, type] = {
    "sphere": SphereSDF, "box": BoxSDF, "torus": TorusSDF, "capsule": CapsuleSDF,
    "cylinder": CylinderSDF, "plane": PlaneSDF,
}
SDF_TYPES: Dict[str, type] = {**PRIMITIVES, "scene": SceneSDF}


def build_sdf(cfg: Mapping[str, Any]) -> nn.Module:
    """An SDF from a config mapping ``{type: ..., <parameters>}`` (see :data:`SDF_TYPES`)."""
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    if kind not in SDF_TYPES:
        raise ValueError(f"unknown sdf.type {kind!r}; expected one of {sorted(SDF_TYPES)}")
    try:
        return SDF_TYPES[kind](**cfg)
    except TypeError as e:
        raise ValueError(f"bad parameters for sdf.type {kind!r}: {e}") from None


def sdf_points_check(points: torch.Tensor) -> torch.Tensor:
    """Validate an SDF query: (..., 3)."""
    return check_shape(points, ("...", 3), "points")
