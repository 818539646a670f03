"""Geometry of implicit surfaces: marching cubes meshes, turntable renders, chamfer to a true mesh.

Marching cubes (spec): the distance is sampled on a ``(grid_size + 1)^3`` grid over
``[-scale, scale]^3``; vertices map back as ``(v / grid_size - 0.5) 2 scale``; meshes are
Phong-rendered with colour (0.7, 0.7, 1), a point light at (0, 0, -3) and a white background.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch

from l3d.cameras import PerspectiveCameras
from l3d.ops import chamfer_distance, marching_cubes, sample_points_from_meshes
from l3d.shading import PointLights, render_mesh, render_points
from l3d.structures import Meshes, Pointclouds, TexturesVertex

__all__ = ["implicit_to_mesh", "render_geometry", "render_point_cloud", "mesh_chamfer", "MESH_COLOR"]

MESH_COLOR = (0.7, 0.7, 1.0)


@torch.no_grad()
def implicit_to_mesh(distance_fn: Callable[[torch.Tensor], torch.Tensor], scale: float = 3.0, grid_size: int = 128,
                     thresh: float = 0.0, chunk_size: int = 262144, device="cpu") -> Optional[Meshes]:
    """Marching-cubes mesh of ``distance_fn = thresh`` (solid where the distance is below).

    Args:
        distance_fn: points (P, 3) -> distances (P,).
    Returns:
        A :class:`Meshes` with vertex colours :data:`MESH_COLOR`, or None when the level set
        does not cross the grid.
    """
    axis = torch.linspace(-scale, scale, grid_size + 1, device=device)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)  # ((G+1)^3, 3)
    sdf = torch.cat([distance_fn(grid[s:s + chunk_size]).reshape(-1) for s in range(0, len(grid), chunk_size)])
    verts, faces = marching_cubes(sdf.view(grid_size + 1, grid_size + 1, grid_size + 1).cpu(), thresh, inside="below")
    if len(faces) == 0:
        return None
    verts = (verts / grid_size - 0.5) * 2 * scale
    verts, faces = verts.to(device), faces.to(device)
    colors = torch.tensor(MESH_COLOR, device=device).expand_as(verts)
    return Meshes([verts], [faces], TexturesVertex([colors]))


@torch.no_grad()
def render_geometry(mesh: Optional[Meshes], cameras: PerspectiveCameras, image_hw: Tuple[int, int],
                    batch_size: int = 4) -> torch.Tensor:
    """(C, H, W, 3) Phong renders of ``mesh`` (light at (0, 0, -3), white background); a blank
    white frame for every camera when the mesh is None."""
    h, w = image_hw
    if mesh is None:
        return torch.ones(len(cameras), h, w, 3, device=cameras.device)
    lights = PointLights(location=((0.0, 0.0, -3.0),))
    img = render_mesh(mesh, cameras, (h, w), lights=lights, background=(1.0, 1.0, 1.0), batch_size=batch_size)
    return img[..., :3].clamp(0, 1)


@torch.no_grad()
def render_point_cloud(points: torch.Tensor, cameras: PerspectiveCameras, image_hw: Tuple[int, int],
                       radius: float = 0.01) -> torch.Tensor:
    """(C, H, W, 3) renders of points (P, 3) in :data:`MESH_COLOR` on black."""
    cols = torch.tensor(MESH_COLOR, device=points.device).expand_as(points)
    img = render_points(Pointclouds([points], [cols]), cameras, image_hw, radius=radius, background=(0.0, 0.0, 0.0),
                        batch_size=4)
    return img[..., :3].clamp(0, 1)


def mesh_chamfer(pred: Optional[Meshes], true_points: torch.Tensor, n_samples: int = 20000,
                 seed: int = 0) -> Dict[str, float]:
    """Distances between a predicted mesh and a reference point set (P, 3).

    ``n_samples`` points are drawn on ``pred`` (area-weighted). Returns ``chamfer_l2`` (sum of the
    mean squared nearest-neighbour distances both ways, l3d's convention), ``chamfer_l1``
    (mean of the two mean distances) and the one-sided means ``pred_to_true`` / ``true_to_pred``.
    """
    if pred is None:
        return {"chamfer_l2": float("inf"), "chamfer_l1": float("inf"), "pred_to_true": float("inf"),
                "true_to_pred": float("inf")}
    from l3d.ops import knn_points

    g = torch.Generator(device=pred.device).manual_seed(seed)
    p = sample_points_from_meshes(pred, n_samples, generator=g)  # (1, S, 3)
    t = true_points.to(p)[None]
    cd = chamfer_distance(p, t)
    cd = cd[0] if isinstance(cd, tuple) else cd
    d_pt = knn_points(p, t, K=1).dists[0, :, 0].sqrt().mean().item()
    d_tp = knn_points(t, p, K=1).dists[0, :, 0].sqrt().mean().item()
    return {"chamfer_l2": float(cd), "chamfer_l1": 0.5 * (d_pt + d_tp), "pred_to_true": d_pt, "true_to_pred": d_tp}
