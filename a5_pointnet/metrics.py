"""Part-segmentation scores as the ShapeNet-part benchmark reports them.

* **shape IoU**: for one shape, the mean over the parts of *its category* of
  ``|pred == k and gt == k| / |pred == k or gt == k|``, where a part that neither the prediction
  nor the ground truth contains counts as IoU 1 (the convention of PointNet and its successors).
* **instance mIoU**: the mean shape IoU over all shapes.
* **class mIoU**: the mean over categories (those with at least one shape) of the category's
  mean shape IoU.

With the category of every shape known, the prediction is restricted to that category's parts
(:func:`restrict_to_category`, :func:`predict_in_category`): the arg-max runs over those parts
only. For data of one kind of object (the course's chairs) there is one category holding every
part, and the scores are the same formulas.

Everything is vectorised over shapes and points (``bincount`` over (shape, part) pairs).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch

__all__ = ["part_mask", "restrict_to_category", "predict_in_category", "shape_ious", "instance_miou",
           "class_miou", "seg_miou"]


def part_mask(category_parts: Sequence[Sequence[int]], num_parts: Optional[int] = None) -> torch.Tensor:
    """(C, K) bool: ``mask[c, k]`` when part ``k`` belongs to category ``c``."""
    k = num_parts if num_parts is not None else 1 + max((max(p) for p in category_parts if len(p)), default=-1)
    mask = torch.zeros(len(category_parts), k, dtype=torch.bool)
    for c, parts in enumerate(category_parts):  # a few categories: a loop over the table, not over points
        mask[c, torch.as_tensor(list(parts), dtype=torch.long)] = True
    return mask


def restrict_to_category(logits: torch.Tensor, categories: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, P) part ids: the arg-max of ``logits`` (N, P, K) over the parts of each shape's category."""
    allowed = mask.to(logits.device)[categories.to(logits.device)]  # (N, K)
    return logits.masked_fill(~allowed[:, None, :], float("-inf")).argmax(-1)


@torch.no_grad()
def predict_in_category(model: torch.nn.Module, points: torch.Tensor, categories: torch.Tensor,
                        category_parts: Sequence[Sequence[int]], batch_size: int = 16,
                        device: Optional[torch.device] = None) -> torch.Tensor:
    """(N, P) part ids on the CPU of a segmentation model, each shape's arg-max restricted to the
    parts of its category (``categories`` (N,), ``category_parts`` as :func:`part_mask` takes)."""
    model.eval()
    device = device or next(model.parameters()).device
    mask = None
    outs = []
    for s in range(0, points.shape[0], batch_size):
        logits = model(points[s:s + batch_size].to(device, torch.float32))
        if mask is None:
            mask = part_mask(category_parts, logits.shape[-1])
        outs.append(restrict_to_category(logits, categories[s:s + batch_size], mask).cpu())
    return torch.cat(outs) if outs else torch.zeros(0, points.shape[1] if points.dim() > 1 else 0, dtype=torch.long)


def shape_ious(pred: torch.Tensor, gt: torch.Tensor, categories: torch.Tensor,
               category_parts: Sequence[Sequence[int]]) -> torch.Tensor:
    """(N,) float64 IoU of every shape: mean over its category's parts; a part absent from both
    prediction and ground truth counts 1.

    Args:
        pred, gt: (N, P) integer part ids.
        categories: (N,) category of every shape.
        category_parts: the part ids of every category.
    """
    pred, gt, categories = torch.as_tensor(pred).long(), torch.as_tensor(gt).long(), torch.as_tensor(categories).long()
    if pred.shape != gt.shape or pred.dim() != 2 or categories.shape != pred.shape[:1]:
        raise ValueError(f"pred and gt must be (N, P) and categories (N,), got {tuple(pred.shape)}, "
                         f"{tuple(gt.shape)}, {tuple(categories.shape)}")
    n = pred.shape[0]
    k = max(int(pred.max()) + 1 if pred.numel() else 0, int(gt.max()) + 1 if gt.numel() else 0,
            1 + max((max(p) for p in category_parts if len(p)), default=-1))
    mask = part_mask(category_parts, k)[categories].double()  # (N, K) the parts that count
    shape = torch.arange(n)[:, None].expand_as(pred)
    count = lambda idx: torch.bincount((shape * k + idx).reshape(-1), minlength=n * k).reshape(n, k).double()  # noqa: E731
    inter = torch.bincount((shape * k + gt)[pred == gt], minlength=n * k).reshape(n, k).double()
    union = count(pred) + count(gt) - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return (iou * mask).sum(1) / mask.sum(1).clamp(min=1)


def instance_miou(ious: torch.Tensor) -> float:
    """Mean shape IoU over all shapes."""
    return float(ious.double().mean()) if ious.numel() else float("nan")


def class_miou(ious: torch.Tensor, categories: torch.Tensor, num_categories: Optional[int] = None) -> float:
    """Mean over categories with shapes of the category's mean shape IoU."""
    categories = torch.as_tensor(categories).long()
    c = num_categories if num_categories is not None else (int(categories.max()) + 1 if categories.numel() else 0)
    sums = torch.zeros(c, dtype=torch.float64).index_add_(0, categories, ious.double())
    counts = torch.bincount(categories, minlength=c).double()
    present = counts > 0
    return float((sums[present] / counts[present]).mean()) if present.any() else float("nan")


def seg_miou(pred: torch.Tensor, gt: torch.Tensor, categories: torch.Tensor,
             category_parts: Sequence[Sequence[int]], names: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """``{"instance_miou", "class_miou", "miou_<category>"...}`` (categories with shapes only) for
    metrics.json; ``names`` names the categories (default ``category_<c>``)."""
    categories = torch.as_tensor(categories).long()
    ious = shape_ious(pred, gt, categories, category_parts)
    out = {"instance_miou": instance_miou(ious), "class_miou": class_miou(ious, categories, len(category_parts))}
    for c in range(len(category_parts)):
        m = categories == c
        if m.any():
            out[f"miou_{names[c] if names is not None else f'category_{c}'}"] = float(ious[m].mean())
    return out
