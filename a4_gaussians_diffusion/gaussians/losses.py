"""Image losses and metrics for Gaussian training.

:func:`ssim` is a differentiable SSIM that reproduces scikit-image's
``structural_similarity(win_size=7, data_range=1, channel_axis=-1)`` (uniform 7 x 7 window,
sample covariances with the N / (N - 1) correction, K1 = 0.01, K2 = 0.03, mean over the
windows that fit inside the image, then over channels), so the training loss and the reported
metric measure the same thing. :func:`evaluate_images` computes the reported numbers with
scikit-image itself.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from l3d.validate import check_shape


def box_filter(t: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over every k x k window that fits inside (N, C, H, W) images -> (N, C, H-k+1, W-k+1).

    Differences of cumulative sums along each axis: the same numbers as ``avg_pool2d(t, k,
    stride=1)`` (to float rounding) at a cost independent of k (7x quicker for the 7 x 7 SSIM
    window on a CPU, forward and backward).
    """
    c = F.pad(torch.cumsum(t, -1), (1, 0))
    t = (c[..., k:] - c[..., :-k]) / k
    c = F.pad(torch.cumsum(t, -2), (0, 0, 1, 0))
    return (c[..., k:, :] - c[..., :-k, :]) / k


def ssim(pred: torch.Tensor, target: torch.Tensor, win_size: int = 7, data_range: float = 1.0,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean SSIM of two images (H, W, C) or batches (N, H, W, C) (differentiable, a scalar).

    Raises:
        ValueError: shapes differ or the image is smaller than the window.
    """
    check_shape(pred, ("...", None, None, None), "pred")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    x = (pred if pred.dim() == 4 else pred[None]).permute(0, 3, 1, 2)  # (N, C, H, W)
    y = (target if target.dim() == 4 else target[None]).permute(0, 3, 1, 2).to(x.dtype)
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"images of size {tuple(x.shape[-2:])} are smaller than the SSIM window {win_size}")
    np_ = win_size * win_size
    cov_norm = np_ / (np_ - 1.0)
    c = x.shape[1]
    # the five local means in one pass of the box filter (valid windows only)
    means = box_filter(torch.cat([x, y, x * x, y * y, x * y], 1), win_size)
    ux, uy, uxx, uyy, uxy = means.split(c, 1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean()


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    return (pred - target).abs().mean()


def evaluate_images(preds: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> Dict[str, object]:
    """PSNR and SSIM (scikit-image; 7 x 7 window, data range 1) of image pairs (H, W, 3) in [0, 1].

    Returns:
        ``{"psnr": mean, "ssim": mean, "psnr_per_view": [...], "ssim_per_view": [...]}``.
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    psnrs, ssims = [], []
    for p, t in zip(preds, targets):
        a = p.detach().double().clamp(0, 1).cpu().numpy()
        b = t.detach().double().clamp(0, 1).cpu().numpy()
        with np.errstate(divide="ignore"):  # identical images: PSNR = inf
            psnrs.append(float(peak_signal_noise_ratio(b, a, data_range=1.0)))
        ssims.append(float(structural_similarity(b, a, win_size=7, data_range=1.0, channel_axis=-1)))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)),
            "psnr_per_view": psnrs, "ssim_per_view": ssims}
