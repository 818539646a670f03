"""Losses of Assignment 2: voxel BCE, chamfer, Laplacian smoothing.

* :func:`voxel_loss` -- binary cross-entropy between predicted occupancies and the 0/1 target.
  The voxel decoder outputs *logits*, so the default is ``from_logits=True``
  (``binary_cross_entropy_with_logits``, numerically stable); pass probabilities with
  ``from_logits=False``. Both give the same value for ``p = sigmoid(logit)``. Evaluation
  thresholds the probability at 0.5, i.e. the logit at 0.
* :func:`chamfer_loss` -- sum of the mean squared nearest-neighbour distances both ways,
  averaged over the batch (l3d.ops.chamfer_distance; knn returns squared distances).
* :func:`smoothness_loss` -- uniform Laplacian smoothing (l3d.ops.mesh_laplacian_smoothing):
  per vertex ``|| mean(neighbours) - v ||``, averaged per mesh, then over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from l3d.ops import chamfer_distance, mesh_laplacian_smoothing
from l3d.structures import Meshes
from l3d.validate import check_shape


def voxel_loss(pred: torch.Tensor, target: torch.Tensor, from_logits: bool = True) -> torch.Tensor:
    """Mean binary cross-entropy over all voxels.

    Args:
        pred: (B, 1, D, D, D) (or any shape) logits, or probabilities in [0, 1] with
            ``from_logits=False``.
        target: same shape, 0/1 occupancies.
    Returns:
        scalar tensor.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    target = target.to(pred.dtype)
    if from_logits:
        return F.binary_cross_entropy_with_logits(pred, target)
    return F.binary_cross_entropy(pred.clamp(1e-7, 1 - 1e-7), target)


def chamfer_loss(src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """Chamfer distance of point sets src (B, N, 3) and tgt (B, M, 3): ``mean_i min_j |s_i - t_j|^2
    + mean_j min_i |t_j - s_i|^2``, averaged over the batch (scalar, differentiable w.r.t. both)."""
    check_shape(src, ("B", "N", 3), "src")
    check_shape(tgt, (src.shape[0], "M", 3), "tgt")
    return chamfer_distance(src, tgt)


def smoothness_loss(meshes: Meshes) -> torch.Tensor:
    """Uniform Laplacian smoothing loss of a batch of meshes (scalar)."""
    return mesh_laplacian_smoothing(meshes, method="uniform")
