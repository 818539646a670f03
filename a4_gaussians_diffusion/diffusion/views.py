"""Camera sampling and view-dependent text conditioning for score distillation.

Angles follow DreamFusion / stable-dreamfusion, mapped onto :mod:`l3d.cameras`: the polar angle
``theta`` is measured from +Y (the up axis), so the elevation is ``90 - theta``; the azimuth
``phi`` is l3d's ``azim`` (0 puts the camera on +Z, which is the object's *front*). Every
azimuth is wrapped into [-180, 180).

View-dependent prompts (DreamFusion sec. 3.2): ``"<prompt>, front view"``, ``"..., side view"``,
``"..., back view"``.

* ``select``: front for ``|phi| < 30``, side for ``30 <= |phi| < 150``, back for ``|phi| >= 150``.
* ``interp``: ``r = 1 - |phi| / 90`` mixes front and side for ``|phi| <= 90``
  (``r front + (1 - r) side``); beyond, ``r = 2 - |phi| / 90`` mixes side and back
  (``r side + (1 - r) back``). So 0 is pure front, +-90 pure side, 180 pure back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Literal, Optional, Sequence, Tuple

import torch

from l3d.cameras import FoVPerspectiveCameras, look_at_view_transform

__all__ = [
    "VIEW_NAMES", "view_prompts", "wrap_azimuth", "view_index", "view_weights", "view_dependent_embedding",
    "CameraSampler", "CameraBatch", "orbit_cameras",
]

VIEW_NAMES = ("front", "side", "back")
ViewMode = Literal["select", "interp"]


def view_prompts(prompt: str) -> Dict[str, str]:
    """``{"front": "<prompt>, front view", "side": ..., "back": ...}``."""
    return {v: f"{prompt}, {v} view" for v in VIEW_NAMES}


def wrap_azimuth(azimuth: torch.Tensor) -> torch.Tensor:
    """Azimuths (degrees, any shape) wrapped into [-180, 180)."""
    return torch.remainder(azimuth + 180.0, 360.0) - 180.0


def view_index(azimuth: torch.Tensor, front: float = 30.0, back: float = 150.0) -> torch.Tensor:
    """(B,) long view per azimuth (degrees): 0 front (``|phi| < front``), 1 side, 2 back (``|phi| >= back``)."""
    a = wrap_azimuth(torch.as_tensor(azimuth, dtype=torch.float32)).abs()
    idx = torch.ones_like(a, dtype=torch.long)
    idx = torch.where(a < front, torch.zeros_like(idx), idx)
    return torch.where(a >= back, torch.full_like(idx, 2), idx)


def view_weights(azimuth: torch.Tensor, mode: ViewMode = "interp") -> torch.Tensor:
    """(B, 3) weights of the (front, side, back) embeddings for azimuths (B,) in degrees.

    Each row sums to 1: one-hot for ``select``; for ``interp`` the piecewise-linear mix of the
    module docstring.
    """
    a = wrap_azimuth(torch.as_tensor(azimuth, dtype=torch.float32)).abs().reshape(-1)  # (B,) in [0, 180]
    if mode == "select":
        return torch.nn.functional.one_hot(view_index(a), 3).to(a.dtype)
    if mode != "interp":
        raise ValueError(f"mode must be 'select' or 'interp', got {mode!r}")
    r_fs = (1 - a / 90).clamp(0, 1)  # front weight on [0, 90]
    r_sb = (2 - a / 90).clamp(0, 1)  # side weight on [90, 180]
    near_front = a <= 90
    w_front = torch.where(near_front, r_fs, torch.zeros_like(a))
    w_side = torch.where(near_front, 1 - r_fs, r_sb)
    w_back = torch.where(near_front, torch.zeros_like(a), 1 - r_sb)
    return torch.stack([w_front, w_side, w_back], -1)


def view_dependent_embedding(embeddings: Dict[str, torch.Tensor], azimuth: torch.Tensor,
                             mode: ViewMode = "interp") -> torch.Tensor:
    """(B, L, D) text embeddings for cameras at azimuths (B,) (degrees).

    Args:
        embeddings: ``"front"``, ``"side"``, ``"back"`` -> (1, L, D) embeddings of the view prompts.
        mode: ``select`` (nearest range) or ``interp`` (see the module docstring).
    """
    stack = torch.cat([embeddings[v] for v in VIEW_NAMES], 0)  # (3, L, D)
    w = view_weights(azimuth, mode).to(stack.device, stack.dtype)  # (B, 3)
    return torch.einsum("bv,vld->bld", w, stack)


# ----------------------------------------------------------------------------------------------
# cameras
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CameraBatch:
    """Sampled cameras and the angles they were built from (all (B,), degrees / world units)."""

    cameras: FoVPerspectiveCameras
    radius: torch.Tensor
    polar: torch.Tensor
    azimuth: torch.Tensor
    fov: torch.Tensor

    @property
    def centers(self) -> torch.Tensor:
        """(B, 3) camera centres in world space."""
        return self.cameras.get_camera_center()


def _cameras(radius, polar, azimuth, fov, device, dtype) -> FoVPerspectiveCameras:
    R, T = look_at_view_transform(radius, 90.0 - polar, azimuth, device=device, dtype=dtype)
    return FoVPerspectiveCameras(fov=fov, R=R, T=T, znear=0.01, device=device, dtype=dtype)


@dataclass
class CameraSampler:
    """Uniform random cameras looking at the origin (DreamFusion's training distribution).

    Defaults are the course's: radius U(3, 3.5), polar U(45, 105) degrees (elevation -15 .. 45),
    azimuth U(-180, 180), vertical field of view U(10, 30) degrees.
    """

    radius_range: Tuple[float, float] = (3.0, 3.5)
    polar_range: Tuple[float, float] = (45.0, 105.0)
    azimuth_range: Tuple[float, float] = (-180.0, 180.0)
    fov_range: Tuple[float, float] = (10.0, 30.0)

    def __post_init__(self):
        for name in ("radius_range", "polar_range", "azimuth_range", "fov_range"):
            lo, hi = getattr(self, name)
            if hi < lo:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {(lo, hi)}")
        if self.radius_range[0] <= 0 or not 0 < self.fov_range[0] <= self.fov_range[1] < 180:
            raise ValueError("radius must be positive and the field of view in (0, 180) degrees")

    def sample(self, batch: int = 1, generator: Optional[torch.Generator] = None, device=None,
               dtype=torch.float32) -> CameraBatch:
        """B random cameras (drawn on the CPU with ``generator``, then moved to ``device``)."""
        u = torch.rand(4, batch, generator=generator, dtype=torch.float64)

        def lerp(rng, x):
            return (rng[0] + (rng[1] - rng[0]) * x).to(dtype)

        radius, polar = lerp(self.radius_range, u[0]), lerp(self.polar_range, u[1])
        azimuth, fov = wrap_azimuth(lerp(self.azimuth_range, u[2])), lerp(self.fov_range, u[3])
        radius, polar, azimuth, fov = (x.to(device) for x in (radius, polar, azimuth, fov))
        return CameraBatch(_cameras(radius, polar, azimuth, fov, device, dtype), radius, polar, azimuth, fov)


def orbit_cameras(n: int, radius: float = 3.2, polar: float = 90.0, fov: float = 20.0,
                  device=None, dtype=torch.float32, start: float = 0.0) -> CameraBatch:
    """n cameras on a 360-degree orbit (azimuth ``start + 360 k / n``), for the turntable videos.

    Defaults are the course's test views: radius 3.2, polar 90 (elevation 0), fov 20.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    azimuth = wrap_azimuth(start + torch.arange(n, dtype=dtype) * (360.0 / n)).to(device)
    full = lambda v: torch.full((n,), float(v), dtype=dtype, device=device)  # noqa: E731
    r, p, f = full(radius), full(polar), full(fov)
    return CameraBatch(_cameras(r, p, azimuth, f, device, dtype), r, p, azimuth, f)


def stack_view_embeddings(embeddings: Dict[str, torch.Tensor], names: Sequence[str] = VIEW_NAMES) -> torch.Tensor:
    """(3, L, D) embeddings of the view prompts in ``names`` order."""
    return torch.cat([embeddings[v] for v in names], 0)
