"""F1 evaluation of single-view reconstructions (the course's recipe).

For every test example: ``n_points`` (1000) points are taken from the prediction and from the
ground-truth mesh; Euclidean 1-NN distances are computed both ways; for each threshold t in
0.01 .. 0.05 ``precision = 100 mean(pred->gt < t)``, ``recall = 100 mean(gt->pred < t)``,
``F1 = 2 P R / (P + R + 1e-8)``.

Where the prediction's points come from:
  vox / implicit: an occupancy grid -> marching cubes at 0.5 -> points sampled on that surface,
      mapped to the mesh frame (:func:`a2_single_view.voxelize.grid_to_mesh`); both the predicted
      and the ground-truth points are then centred on their means. An empty surface (nothing
      above 0.5) scores precision = recall = F1 = 0 (the empty-prediction guard).
  point: the predicted points themselves (all of them).
  mesh: points sampled on the predicted mesh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from l3d.ops import knn_points, sample_points_from_meshes
from l3d.structures import Meshes
from l3d.validate import check_shape

from .voxelize import grid_to_mesh

THRESHOLDS = (0.01, 0.02, 0.03, 0.04, 0.05)


@dataclass(frozen=True)
class F1Result:
    """Per-example scores: precision, recall, f1 are (N, T) in percent for T thresholds."""

    thresholds: tuple
    precision: torch.Tensor
    recall: torch.Tensor
    f1: torch.Tensor


def f1_scores(pred: torch.Tensor, gt: torch.Tensor, thresholds: Sequence[float] = THRESHOLDS,
              valid: Optional[torch.Tensor] = None) -> F1Result:
    """Precision / recall / F1 of point sets at distance thresholds.

    Args:
        pred: (N, P, 3) predicted points.
        gt: (N, G, 3) ground-truth points.
        thresholds: T distances.
        valid: optional (N,) bool; False marks an empty prediction, which scores 0.
    Returns:
        :class:`F1Result` with (N, T) tensors.
    """
    check_shape(pred, ("N", "P", 3), "pred")
    check_shape(gt, (pred.shape[0], "G", 3), "gt")
    th = torch.as_tensor(list(thresholds), dtype=pred.dtype, device=pred.device)  # (T,)
    with torch.no_grad():
        d_pg = knn_points(pred, gt, K=1).dists[..., 0].clamp(min=0).sqrt()  # (N, P)
        d_gp = knn_points(gt, pred, K=1).dists[..., 0].clamp(min=0).sqrt()  # (N, G)
    precision = 100.0 * (d_pg[:, :, None] < th).to(pred.dtype).mean(1)  # (N, T)
    recall = 100.0 * (d_gp[:, :, None] < th).to(pred.dtype).mean(1)
    f1 = 2.0 * precision * recall / (precision + recall + 1e-8)
    if valid is not None:
        keep = valid.to(pred.device)[:, None].to(pred.dtype)
        precision, recall, f1 = precision * keep, recall * keep, f1 * keep
    return F1Result(tuple(float(t) for t in thresholds), precision, recall, f1)


def point_error(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(N, P) Euclidean distance from every predicted point to its nearest ground-truth point."""
    check_shape(pred, ("N", "P", 3), "pred")
    with torch.no_grad():
        return knn_points(pred, gt, K=1).dists[..., 0].clamp(min=0).sqrt()


def grid_points(grids: torch.Tensor, n_points: int, iso: float = 0.5,
                generator: Optional[torch.Generator] = None):
    """Points on the iso-surfaces of a batch of [Z, Y, X] grids, in the mesh frame (not centred).

    Args:
        grids: (N, D, D, D) or (N, 1, D, D, D) occupancy probabilities.
    Returns:
        points (N, n_points, 3) (zeros for an empty grid) and valid (N,) bool.
    """
    if grids.dim() == 5:
        grids = grids[:, 0]
    check_shape(grids, ("N", "D", "D", "D"), "grids")
    pts, valid = [], []
    for g in grids:  # marching cubes runs per grid (PyMCubes)
        v, f = grid_to_mesh(g.detach().float(), iso)
        ok = f.shape[0] > 0
        if ok:
            mesh = Meshes([v], [f])
            ok = bool(mesh.faces_areas_packed().sum() > 0)
        if ok:
            pts.append(sample_points_from_meshes(mesh, n_points, generator=generator)[0])
        else:
            pts.append(torch.zeros(n_points, 3, device=grids.device))
        valid.append(ok)
    return torch.stack(pts).to(grids.device), torch.tensor(valid, device=grids.device)


def evaluate_batch(kind: str, pred, gt_meshes: Meshes, n_points: int = 1000,
                   thresholds: Sequence[float] = THRESHOLDS,
                   generator: Optional[torch.Generator] = None) -> F1Result:
    """F1 of a batch of predictions against ground-truth meshes.

    Args:
        kind: "vox" / "implicit" (pred: (N, 1, D, D, D) or (N, D, D, D) occupancy probabilities),
            "point" (pred: (N, P, 3) points), "mesh" (pred: a :class:`Meshes` of N meshes).
        gt_meshes: the N ground-truth meshes.
        n_points: points sampled on the ground truth (and on predicted surfaces).
    """
    gt = sample_points_from_meshes(gt_meshes, n_points, generator=generator)  # (N, n, 3)
    valid = None
    if kind in ("vox", "implicit"):
        pts, valid = grid_points(pred, n_points, generator=generator)
        pts = pts - pts.mean(1, keepdim=True)
        gt = gt - gt.mean(1, keepdim=True)
    elif kind == "point":
        pts = pred
    elif kind == "mesh":
        pts = sample_points_from_meshes(pred, n_points, generator=generator)
    else:
        raise ValueError(f"kind must be 'vox', 'implicit', 'point' or 'mesh', got {kind!r}")
    return f1_scores(pts.to(gt.dtype), gt, thresholds, valid)
