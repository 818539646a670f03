"""Numbers that show a Gaussian render is right, for the ``checks`` of metrics.json.

* :func:`silhouette_agreement` compares a turntable's rendered masks with where the Gaussians'
  centres project: the opaque centres must land inside the rendered silhouette (``recall``),
  and the silhouette must not reach far beyond them (``precision``: the fraction of silhouette
  pixels within ``radius`` pixels of a projected centre). A render that is blank, shifted,
  mirrored, scaled or smeared fails one of the two.
* :func:`sh_vs_dc` compares spherical-harmonics colours with the view-independent (DC) ones on
  the same frames: they must differ (view dependence is there), but their mean colour must stay
  close (the SH evaluation neither washes the object out nor darkens it).
* :func:`paired_frames` compares SH and DC frames pair by pair (silhouette IoU: the same camera;
  colour difference), :func:`view_dependent_fraction` how much of the SH colour change moves
  with the view.
"""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F

from l3d.cameras import PerspectiveCameras

from .model import Gaussians
from .rasterize import means_2d
from .sh import eval_sh


def projected_centres(g: Gaussians, camera: PerspectiveCameras, image_size: int, min_opacity: float = 0.5) -> torch.Tensor:
    """(K, 2) long pixel indices (column, row) of the centres of the Gaussians with opacity >=
    ``min_opacity`` that lie in front of ``camera`` (one camera) and inside the square image."""
    with torch.no_grad():
        means = g.means.detach()
        z = camera.world_to_view(means)[0][:, 2]
        uv = means_2d(means, camera, image_size)  # pixel centres at i + 0.5
        ij = torch.floor(uv).long()
        keep = (g.opacities.detach() >= min_opacity) & (z > 0) & torch.isfinite(uv).all(-1) \
            & (ij >= 0).all(-1) & (ij < image_size).all(-1)
        return ij[keep]


def silhouette_agreement(g: Gaussians, cameras: PerspectiveCameras, masks: torch.Tensor, radius: int = 2,
                         min_opacity: float = 0.5) -> Dict[str, float]:
    """How well the rendered silhouettes match the projected centres, over V views.

    Args:
        cameras: V cameras (screen intrinsics, square images); masks: (V, S, S) rendered masks.
        radius: a silhouette pixel counts as explained when a projected centre lies within
            ``radius`` pixels (Chebyshev distance) of it.
    Returns:
        ``recall`` (fraction of the projected opaque centres on mask >= 0.5 pixels),
        ``precision`` (fraction of mask >= 0.5 pixels near a projected centre), both averaged
        over the views, and ``coverage`` (mean fraction of the frame inside the silhouette).
    """
    v, s = masks.shape[0], masks.shape[-1]
    recalls, precisions = [], []
    with torch.no_grad():
        for i in range(v):  # one view at a time: the work per view is vectorised
            sil = masks[i].to(g.means.device) >= 0.5
            ij = projected_centres(g, cameras[i], s, min_opacity)
            hit = torch.zeros(s, s, device=sil.device)
            if len(ij):
                hit[ij[:, 1], ij[:, 0]] = 1.0
                recalls.append(float(sil[ij[:, 1], ij[:, 0]].float().mean()))
            else:
                recalls.append(0.0)
            near = F.max_pool2d(hit[None, None], 2 * radius + 1, stride=1, padding=radius)[0, 0] > 0
            precisions.append(float(near[sil].float().mean()) if sil.any() else 0.0)
        coverage = float((masks >= 0.5).float().mean())
    return {"recall": sum(recalls) / v, "precision": sum(precisions) / v, "coverage": coverage}


def sh_vs_dc(sh_images: torch.Tensor, dc_images: torch.Tensor, masks: torch.Tensor) -> Dict[str, float]:
    """Compare (V, S, S, 3) SH and DC renders inside the (V, S, S) silhouettes (mask >= 0.5).

    Returns:
        ``mean_abs_difference`` (mean |SH - DC| per pixel and channel), ``mean_colour_gap``
        (|mean SH colour - mean DC colour|, the largest over the channels), ``mean_sh`` and
        ``mean_dc`` (mean colours, RGB).
    """
    sel = masks >= 0.5
    if not bool(sel.any()):
        nan = float("nan")
        return {"mean_abs_difference": nan, "mean_colour_gap": nan, "mean_sh": [nan] * 3, "mean_dc": [nan] * 3}
    a, b = sh_images[sel].float(), dc_images[sel].float()  # (P, 3)
    mean_sh, mean_dc = a.mean(0), b.mean(0)
    return {"mean_abs_difference": float((a - b).abs().mean()), "mean_colour_gap": float((mean_sh - mean_dc).abs().max()),
            "mean_sh": [float(x) for x in mean_sh], "mean_dc": [float(x) for x in mean_dc]}


def paired_frames(sh_images: torch.Tensor, dc_images: torch.Tensor, sh_masks: torch.Tensor,
                  dc_masks: torch.Tensor) -> Dict[str, list]:
    """Per frame of (V, S, S, 3) SH / DC renders and their (V, S, S) masks: ``silhouette_iou``
    (IoU of the two silhouettes, mask >= 0.5: 1 when both frames come from the same camera) and
    ``mean_abs_difference`` (mean |SH - DC| per pixel and channel inside the SH silhouette)."""
    a, b = sh_masks >= 0.5, dc_masks >= 0.5
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float().clamp(min=1)
    diff = (sh_images.float() - dc_images.float()).abs().mean(-1)  # (V, S, S)
    mad = (diff * a).flatten(1).sum(1) / a.flatten(1).sum(1).clamp(min=1)
    return {"silhouette_iou": [float(x) for x in inter / union], "mean_abs_difference": [float(x) for x in mad]}


def view_dependent_fraction(g: Gaussians, cameras: PerspectiveCameras) -> Dict[str, float]:
    """How much of the SH - DC colour change of the Gaussians varies with the view, over V cameras.

    With ``delta_v`` = SH colour seen from camera v minus the clamped DC colour (N, 3), the mean
    over the views is a per-Gaussian offset (view independent) and ``delta_v - mean`` the
    view-dependent part: returns ``mean_abs_delta`` and ``view_dependent_fraction`` =
    mean |delta_v - mean_v delta| / mean |delta_v| (0: SH only shift colours, 1: pure view
    dependence)."""
    with torch.no_grad():
        centres = cameras.get_camera_center().to(g.means.dtype)  # (V, 3)
        dirs = torch.nn.functional.normalize(g.means[None] - centres[:, None], dim=-1)  # (V, N, 3)
        v, n = dirs.shape[:2]
        cols = eval_sh(g.sh.detach().repeat(v, 1), dirs.reshape(v * n, 3), g.sh_degree).view(v, n, 3)
        delta = cols - g.dc_colours().detach().clamp_min(0)[None]
        varying = delta - delta.mean(0, keepdim=True)
        total = float(delta.abs().mean())
        return {"mean_abs_delta": total,
                "view_dependent_fraction": float(varying.abs().mean()) / total if total > 0 else 0.0}
