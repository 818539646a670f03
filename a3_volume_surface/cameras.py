"""Camera sets of the assignment: surround (turntable) cameras and look-at cameras from eyes.

Conventions: :mod:`l3d.cameras` (PyTorch3D's). Surround cameras (spec convention 6):
``theta = linspace(0, 2 pi, n + 1)[:-1]``; y-up: ``eye = (cos(theta + pi/2) r, 0, -sin(theta + pi/2) r)``;
z-up: ``eye = (cos(theta + pi/2) r, sin(theta + pi/2) r, 2)``; all look at the origin with
principal point (0, 0) and an NDC focal length.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from l3d.cameras import PerspectiveCameras, look_at_view_transform

__all__ = ["surround_cameras", "look_at_cameras"]


def surround_cameras(radius: float, n_poses: int = 20, up: Sequence[float] = (0.0, 1.0, 0.0),
                     focal_length: float = 1.0, device="cpu") -> PerspectiveCameras:
    """C = ``n_poses`` cameras on a circle around the origin (see the module docstring).

    ``up`` with a non-zero y component gives the y-up circle, otherwise the z-up one (eye height 2).
    """
    if n_poses < 1:
        raise ValueError(f"n_poses must be >= 1, got {n_poses}")
    theta = torch.linspace(0, 2 * math.pi, n_poses + 1, dtype=torch.float64)[:-1] + math.pi / 2
    c, s = torch.cos(theta) * radius, torch.sin(theta) * radius
    if abs(float(up[1])) > 0:
        eyes = torch.stack([c, torch.zeros_like(c), -s], -1)
    else:
        eyes = torch.stack([c, s, torch.full_like(c, 2.0)], -1)
    return look_at_cameras(eyes.float(), focal_length, up=up, device=device)


def look_at_cameras(eyes, focal_length: float = 1.0, at: Sequence[float] = (0.0, 0.0, 0.0),
                    up: Sequence[float] = (0.0, 1.0, 0.0), device="cpu") -> PerspectiveCameras:
    """Cameras at ``eyes`` (C, 3) looking at ``at``, NDC focal length, principal point (0, 0)."""
    eyes = torch.as_tensor(eyes, dtype=torch.float32)
    R, T = look_at_view_transform(eye=eyes, at=(tuple(float(v) for v in at),), up=(tuple(float(v) for v in up),))
    return PerspectiveCameras(focal_length=float(focal_length), R=R, T=T).to(device)
