"""Point samplers along rays, chosen by ``sampler.type`` (``stratified``).

A sampler maps a :class:`l3d.rays.RayBundle` of R rays to the same rays with S sample distances
(``bundle.lengths`` (R, S)).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from l3d.rays import RayBundle, ray_sphere_bounds, stratified_lengths

from .occupancy import OccupancyGrid

__all__ = ["SAMPLERS", "build_sampler", "StratifiedSampler"]


class StratifiedSampler(nn.Module):
    """``n_pts_per_ray`` samples between ``min_depth`` and ``max_depth``.

    Args:
        n_pts_per_ray: S.
        min_depth, max_depth: sampling range along the unit rays.
        perturb: jitter each sample inside its bin while training (``model.train()``); evaluation
            and the references always use the deterministic ``linspace(min_depth, max_depth, S)``.
        bound_radius: optional radius of a sphere around the origin that bounds the scene: rays
            are then sampled only where they cross it (intersected with [min_depth, max_depth]),
            which puts every sample where the scene can be, and rays that miss it are skipped
            (rendered empty). None keeps the plain range.
        occupancy: optional settings of an :class:`~a3_volume_surface.occupancy.OccupancyGrid`
            over ``[-bound_radius, bound_radius]^3`` (needs ``bound_radius``): samples are then
            spread only over the occupied span of each ray and empty rays are skipped.
    """

    def __init__(self, n_pts_per_ray: int = 64, min_depth: float = 0.0, max_depth: float = 5.0,
                 perturb: bool = False, bound_radius: Optional[float] = None,
                 occupancy: Optional[Mapping[str, Any]] = None):
        super().__init__()
        if n_pts_per_ray < 1:
            raise ValueError(f"sampler.n_pts_per_ray must be >= 1, got {n_pts_per_ray}")
        if not max_depth > min_depth:
            raise ValueError(f"sampler.max_depth ({max_depth}) must exceed min_depth ({min_depth})")
        self.n_pts_per_ray = int(n_pts_per_ray)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.perturb = bool(perturb)
        self.bound_radius = None if bound_radius is None else float(bound_radius)
        self.occupancy: Optional[OccupancyGrid] = None
        if occupancy and occupancy.get("enabled", True):
            if self.bound_radius is None:
                raise ValueError("sampler.occupancy needs sampler.bound_radius (the grid covers that cube)")
            opts = {k: v for k, v in occupancy.items() if k != "enabled"}
            try:
                self.occupancy = OccupancyGrid(self.bound_radius, **opts)
            except TypeError as e:
                raise ValueError(f"bad keys for sampler.occupancy: {e}") from None

    def bounds(self, bundle: RayBundle):
        """Per-ray (near, far, active): floats and None, or (R,) tensors with ``bound_radius``."""
        if self.bound_radius is None:
            return self.min_depth, self.max_depth, None
        near, far, hit = ray_sphere_bounds(bundle.origins, bundle.directions, self.bound_radius)
        near = near.clamp(self.min_depth, self.max_depth)
        far = torch.maximum(far.clamp(self.min_depth, self.max_depth), near + 1e-4)
        active = hit & (far > near + 2e-4)
        if self.occupancy is not None:
            near, far, occ = self.occupancy.ray_bounds(bundle.origins, bundle.directions, near, far)
            active = active & occ
        return near, far, active

    def sample(self, bundle: RayBundle) -> Tuple[RayBundle, Optional[torch.Tensor]]:
        """The rays with their samples, and an (R,) mask of the rays worth evaluating (None: all)."""
        near, far, active = self.bounds(bundle)
        lengths = stratified_lengths(
            bundle.shape, self.n_pts_per_ray, near, far, perturb=self.perturb and self.training,
            device=bundle.device, dtype=bundle.origins.dtype,
        )
        return bundle.with_lengths(lengths), active

    def forward(self, bundle: RayBundle) -> RayBundle:
        return self.sample(bundle)[0]

    def after_step(self, density_fn) -> None:
        """Call once per training step: refreshes the occupancy grid when it is due."""
        if self.occupancy is not None:
            self.occupancy.step(density_fn)


SAMPLERS: Dict[str, type] = {"stratified": StratifiedSampler}


def build_sampler(cfg: Mapping[str, Any]) -> nn.Module:
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    if kind not in SAMPLERS:
        raise ValueError(f"unknown sampler.type {kind!r}; expected one of {sorted(SAMPLERS)}")
    try:
        return SAMPLERS[kind](**cfg)
    except TypeError as e:
        raise ValueError(f"bad keys for sampler.type {kind!r}: {e}") from None
