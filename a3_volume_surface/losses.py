"""Losses and point samplers of the neural SDF parts (6, 7, 8).

* point loss  ``mean |d(p)|`` on points of the surface;
* eikonal     ``mean (|grad d| - 1)^2``;
* inter       ``mean exp(-100 |d(x)|)`` on random points x in the bounds (keeps the zero level
  set from spreading away from the data);
* sphere      ``mean (d(x) - (|x| - r))^2``: pretraining towards a sphere of radius r.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

__all__ = ["eikonal_loss", "inter_loss", "point_loss", "sphere_loss", "random_points", "pretrain_sphere"]


def eikonal_loss(gradients: torch.Tensor) -> torch.Tensor:
    """gradients (..., 3) of the distance -> scalar ``mean (|g| - 1)^2``."""
    return ((gradients.norm(dim=-1) - 1.0) ** 2).mean()


def inter_loss(distances: torch.Tensor, k: float = 100.0) -> torch.Tensor:
    """distances (...,) at random points -> scalar ``mean exp(-k |d|)``."""
    return torch.exp(-k * distances.abs()).mean()


def point_loss(distances: torch.Tensor) -> torch.Tensor:
    """distances (...,) at surface points -> scalar ``mean |d|``."""
    return distances.abs().mean()


def sphere_loss(points: torch.Tensor, distances: torch.Tensor, radius: float = 1.0) -> torch.Tensor:
    """points (..., 3), distances (...,) -> scalar ``mean (d - (|p| - r))^2``."""
    return ((distances - (points.norm(dim=-1) - radius)) ** 2).mean()


def random_points(n: int, bounds: Sequence[Sequence[float]], generator: Optional[torch.Generator] = None,
                  device=None, dtype=torch.float32) -> torch.Tensor:
    """(n, 3) uniform points in the box ``bounds = [[xmin, ymin, zmin], [xmax, ymax, zmax]]``."""
    lo = torch.as_tensor(bounds[0], dtype=dtype)
    hi = torch.as_tensor(bounds[1], dtype=dtype)
    u = torch.rand(n, 3, generator=generator, dtype=dtype)
    return (lo + (hi - lo) * u).to(device)


def pretrain_sphere(implicit_fn, iters: int, batch_size: int, lr: float, bounds, radius: float = 1.0,
                    generator: Optional[torch.Generator] = None, device=None) -> float:
    """Fit the distance network to a sphere of ``radius`` for ``iters`` Adam steps; returns the last loss."""
    if iters <= 0:
        return float("nan")
    optim = torch.optim.Adam(implicit_fn.parameters(), lr=lr)
    loss = torch.zeros(())
    for _ in range(int(iters)):
        p = random_points(batch_size, bounds, generator, device)
        loss = sphere_loss(p, implicit_fn.get_distance(p), radius)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
    return float(loss.detach())
