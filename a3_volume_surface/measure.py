"""Measurements behind the pass/fail checks of Assignment 3 (``metrics.json["checks"]``).

Each one measures what a part produced against something computed another way:

* :func:`ray_box_hits`: the exact entry distance of rays into an axis-aligned box (slab test),
  to judge the volume-rendered box of part 1;
* :func:`dense_march`: the first zero crossing of an SDF along each ray found by fixed small
  steps and bisection (no sphere tracing), to judge the sphere tracer of parts 5 and 8.1;
* :func:`iou`, :func:`psnr_images`: masks and images against each other;
* :func:`gif_timing` / :func:`motion_ratio` / :func:`turntable_checks`: a written turntable GIF
  read back (frames, seconds per turn) and whether it reads as turning;
* :func:`reference_image` / :func:`reference_frame`, :func:`mean_abs_levels`: the course's
  reference images, compared in 8-bit levels;
* :func:`longest_side`: the size an object's chamfer distance is measured against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from l3d.media import gif_timing, motion_ratio

__all__ = ["ray_box_hits", "dense_march", "iou", "psnr_images", "gif_timing", "motion_ratio", "turntable_checks",
           "reference_path", "reference_image", "reference_frame", "mean_abs_levels", "longest_side", "to_levels"]


# ----------------------------------------------------------------------------------------------
# analytic and brute-force ray intersections
# ----------------------------------------------------------------------------------------------
def ray_box_hits(origins: torch.Tensor, directions: torch.Tensor, center: Sequence[float],
                 side_lengths: Sequence[float]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Entry distance of rays into the box ``|p - center| <= side / 2`` (slab test).

    Args:
        origins, directions: (R, 3), directions of unit length.
    Returns:
        t (R,) the distance to the entry point (0 for rays starting inside), hit (R,) bool.
    """
    c = torch.as_tensor(center, dtype=origins.dtype, device=origins.device)
    half = torch.as_tensor(side_lengths, dtype=origins.dtype, device=origins.device) / 2
    d = torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    t1 = (c - half - origins) / d
    t2 = (c + half - origins) / d
    t_near = torch.minimum(t1, t2).amax(-1)
    t_far = torch.maximum(t1, t2).amin(-1)
    hit = (t_far >= t_near) & (t_far > 0)
    return t_near.clamp(min=0), hit


@torch.no_grad()
def dense_march(distance_fn: Callable[[torch.Tensor], torch.Tensor], origins: torch.Tensor,
                directions: torch.Tensor, near: float, far: float, step: float = 0.01,
                bound_radius: Optional[float] = None, bisections: int = 20,
                chunk: int = 2048) -> Tuple[torch.Tensor, torch.Tensor]:
    """First crossing of ``distance_fn`` from positive to non-positive along each ray, by equal
    steps of at most ``step`` over ``[near, far]`` and ``bisections`` halvings of the step that
    brackets it. Independent of sphere tracing (it never steps by the distance itself); a
    feature thinner than ``step`` can be stepped over.

    Args:
        bound_radius: when given, only the part of each ray inside the sphere of this radius
            around the origin is marched (the scene must lie inside it); rays that miss it miss.
    Returns:
        t (R,) (``far`` for misses) and hit (R,) bool.
    """
    from l3d.rays import ray_sphere_bounds

    r = len(origins)
    lo_all = torch.full((r,), float(near), device=origins.device, dtype=origins.dtype)
    hi_all = torch.full((r,), float(far), device=origins.device, dtype=origins.dtype)
    inside = torch.ones(r, dtype=torch.bool, device=origins.device)
    if bound_radius is not None:
        b_near, b_far, b_hit = ray_sphere_bounds(origins, directions, float(bound_radius))
        lo_all = torch.maximum(lo_all, b_near)
        hi_all = torch.minimum(hi_all, b_far)
        inside = b_hit & (hi_all > lo_all)
    t_out = torch.full((r,), float(far), device=origins.device, dtype=origins.dtype)
    hit_out = torch.zeros(r, dtype=torch.bool, device=origins.device)
    todo = torch.nonzero(inside).squeeze(1)
    if len(todo) == 0:
        return t_out, hit_out
    n_steps = max(1, int(np.ceil(float((hi_all[todo] - lo_all[todo]).max()) / step)))
    u = torch.linspace(0.0, 1.0, n_steps + 1, device=origins.device, dtype=origins.dtype)
    for s in range(0, len(todo), chunk):  # chunks of rays bound the (rays x steps) evaluations
        ids = todo[s:s + chunk]
        o, d, a, b = origins[ids], directions[ids], lo_all[ids], hi_all[ids]
        ts = a[:, None] + (b - a)[:, None] * u  # (r, n + 1)
        f = distance_fn(o[:, None] + ts[..., None] * d[:, None]).reshape(len(ids), -1)
        crossing = (f[:, :-1] > 0) & (f[:, 1:] <= 0)
        hit = crossing.any(-1)
        k = crossing.float().argmax(-1, keepdim=True)  # first bracketing step
        lo, hi = ts.gather(1, k)[:, 0], ts.gather(1, k + 1)[:, 0]
        for _ in range(int(bisections)):
            mid = 0.5 * (lo + hi)
            solid = distance_fn(o + mid[:, None] * d).reshape(-1) <= 0
            hi = torch.where(solid, mid, hi)
            lo = torch.where(solid, lo, mid)
        t_out[ids] = torch.where(hit, 0.5 * (lo + hi), t_out[ids])
        hit_out[ids] = hit
    return t_out, hit_out


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Intersection over union of two boolean masks of the same shape."""
    union = (a | b).sum().item()
    return float((a & b).sum().item() / union) if union else 1.0


def psnr_images(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR (dB) of images in [0, 1]."""
    mse = torch.mean((pred.float().clamp(0, 1) - target.float().clamp(0, 1)) ** 2).item()
    return float("inf") if mse == 0 else float(-10.0 * np.log10(mse))


# ----------------------------------------------------------------------------------------------
# turntable GIFs
# ----------------------------------------------------------------------------------------------
def turntable_checks(frames: torch.Tensor, gif_path, prefix: str = "") -> Dict[str, dict]:
    """``frames_per_turn`` (>= 24), ``turn_seconds`` (>= 2) read back from the GIF and
    ``motion_ratio`` (>= 1.1) of the frames, names prefixed with ``prefix``."""
    from l3d.checks import check

    t = gif_timing(gif_path)
    return {
        f"{prefix}frames_per_turn": check(t["frames"], min=24, what="distinct frames of the turntable GIF (read back)"),
        f"{prefix}turn_seconds": check(t["seconds"], min=2.0, what="seconds per full turn of the GIF (read back)"),
        f"{prefix}motion_ratio": check(motion_ratio(frames[..., :3].detach().cpu()), min=1.1,
                                       what="mean change over two frames / over one frame (about 2 for a smooth "
                                            "turn, about 0 for a shape strobing between two poses)"),
    }


# ----------------------------------------------------------------------------------------------
# the course's reference images
# ----------------------------------------------------------------------------------------------
def reference_path(name: str) -> Optional[Path]:
    """``<data root>/a3/reference/<name>`` when it exists, else None."""
    from l3d.data import data_root

    p = data_root() / "a3" / "reference" / name
    return p if p.is_file() else None


def reference_image(name: str) -> Optional[np.ndarray]:
    """(H, W, 3) float64 levels 0..255 of a reference PNG (alpha dropped), or None."""
    p = reference_path(name)
    if p is None:
        return None
    from PIL import Image

    with Image.open(p) as im:
        return np.asarray(im.convert("RGB")).astype(np.float64)


def reference_frame(name: str, index: int) -> Optional[np.ndarray]:
    """(H, W, 3) float64 levels of frame ``index`` of a reference GIF, or None."""
    p = reference_path(name)
    if p is None:
        return None
    from PIL import Image

    with Image.open(p) as im:
        im.seek(int(index))
        return np.asarray(im.convert("RGB")).astype(np.float64)


def to_levels(img) -> np.ndarray:
    """(H, W, C) float image in [0, 1] (tensor or array) -> float64 8-bit levels by truncation
    (spec convention 8), alpha dropped; uint8 input is taken as levels."""
    a = img.detach().cpu().numpy() if torch.is_tensor(img) else np.asarray(img)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).astype(np.uint8)
    return a[..., :3].astype(np.float64)


def mean_abs_levels(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two images in 8-bit levels (inf when the shapes differ)."""
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).mean())


def longest_side(points: torch.Tensor) -> float:
    """Longest side of the axis-aligned bounding box of points (P, 3): the object size that
    chamfer distances are divided by."""
    ext = points.amax(0) - points.amin(0)
    return float(ext.max())
