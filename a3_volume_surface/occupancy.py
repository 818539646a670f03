"""An occupancy grid for empty-space skipping (optional; off in the course configs).

A ``G^3`` boolean grid over the cube ``[-bound, bound]^3`` marks the cells where the field's
density is not negligible. It is refreshed during training every ``update_every`` steps from
the density at one random point per cell, smoothed by an exponential moving average
(``decay``), so cells can also become occupied again. A cell is occupied when the opacity of
crossing it, ``1 - exp(-density * cell_size)``, exceeds ``threshold``.

Rays use it through :meth:`OccupancyGrid.ray_bounds`: each ray is probed at ``march_samples``
points between its near and far bounds (grid lookups, no network evaluation), and its sampling
interval shrinks to the span from the first to the last occupied probe (padded by one probe);
rays that meet no occupied cell are skipped entirely (they render as empty).
Before ``warmup_steps`` updates the grid is all occupied, so nothing is skipped.
"""

from __future__ import annotations

from typing import Callable, Tuple

import torch
import torch.nn as nn

__all__ = ["OccupancyGrid"]


class OccupancyGrid(nn.Module):
    """See the module docstring.

    Args:
        bound: half size of the cube covered by the grid.
        resolution: G, cells per axis.
        threshold: opacity across one cell above which the cell is occupied.
        decay: EMA factor of the density estimates (per update).
        update_every: training steps between updates.
        warmup_steps: training steps before the grid starts skipping space.
        march_samples: probes per ray for :meth:`ray_bounds`.
    """

    def __init__(self, bound: float, resolution: int = 32, threshold: float = 0.01, decay: float = 0.9,
                 update_every: int = 16, warmup_steps: int = 200, march_samples: int = 128):
        super().__init__()
        self.bound, self.resolution = float(bound), int(resolution)
        self.threshold, self.decay = float(threshold), float(decay)
        self.update_every, self.warmup_steps = int(update_every), int(warmup_steps)
        self.march_samples = int(march_samples)
        g = self.resolution
        # EMA estimate per cell; -1 (no estimate yet) until the first update (finite, so checkpoints
        # taken before it pass the finite-parameter check)
        self.register_buffer("density", torch.full((g, g, g), -1.0))
        self.register_buffer("occupied", torch.ones(g, g, g, dtype=torch.bool))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def cell_size(self) -> float:
        return 2 * self.bound / self.resolution

    def cell_index(self, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(..., 3) points -> (...,) flat cell index (clamped into the grid) and (...,) inside-mask."""
        g = self.resolution
        u = (points + self.bound) / (2 * self.bound) * g  # (..., 3) in cell units
        inside = ((u >= 0) & (u < g)).all(-1)
        ijk = u.long().clamp(0, g - 1)
        return (ijk[..., 0] * g + ijk[..., 1]) * g + ijk[..., 2], inside

    def lookup(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) -> (...,) bool: the point lies in an occupied cell (False outside the grid)."""
        idx, inside = self.cell_index(points)
        return self.occupied.reshape(-1)[idx] & inside

    @torch.no_grad()
    def step(self, density_fn: Callable[[torch.Tensor], torch.Tensor], chunk: int = 65536) -> bool:
        """Count one training step; every ``update_every`` steps re-estimate the grid from
        ``density_fn(points (P, 3)) -> (P,)``. Returns whether an update happened."""
        self.steps += 1
        n = int(self.steps)
        if n % self.update_every:
            return False
        g = self.resolution
        ijk = torch.stack(torch.meshgrid(*[torch.arange(g, device=self.density.device)] * 3, indexing="ij"), -1)
        u = ijk.reshape(-1, 3) + torch.rand(g ** 3, 3, device=self.density.device)  # one random point per cell
        pts = u / g * (2 * self.bound) - self.bound
        sigma = torch.cat([density_fn(pts[s:s + chunk]).reshape(-1) for s in range(0, len(pts), chunk)])
        sigma = sigma.view(g, g, g).to(self.density.dtype)
        fresh = self.density < 0
        self.density = torch.where(fresh, sigma, torch.maximum(self.density * self.decay, sigma))
        if n >= self.warmup_steps:
            opacity = 1 - torch.exp(-self.density * self.cell_size)
            self.occupied = opacity > self.threshold
        return True

    @property
    def occupancy_fraction(self) -> float:
        return float(self.occupied.float().mean())

    def ray_bounds(self, origins: torch.Tensor, directions: torch.Tensor, near: torch.Tensor, far: torch.Tensor
                   ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Shrink per-ray [near, far] to the occupied span.

        Args:
            origins, directions: (R, 3); near, far: (R,).
        Returns:
            near (R,), far (R,), active (R,) bool (False: the ray meets no occupied cell).
        """
        m = self.march_samples
        u = torch.linspace(0.0, 1.0, m, device=origins.device, dtype=origins.dtype)
        t = near[:, None] + (far - near)[:, None] * u  # (R, M)
        occ = self.lookup(origins[:, None] + t[..., None] * directions[:, None])  # (R, M)
        active = occ.any(-1)
        first = occ.float().argmax(-1)
        last = m - 1 - occ.flip(-1).float().argmax(-1)
        lo = (first - 1).clamp(min=0)
        hi = (last + 1).clamp(max=m - 1)
        new_near = t.gather(-1, lo[:, None])[:, 0]
        new_far = t.gather(-1, hi[:, None])[:, 0]
        new_near = torch.where(active, new_near, near)
        new_far = torch.where(active, torch.maximum(new_far, new_near + 1e-4), far)
        return new_near, new_far, active
