"""Part-segmentation mIoU against examples worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from a5_pointnet.metrics import (class_miou, instance_miou, part_mask, predict_in_category, restrict_to_category,
                                 seg_miou, shape_ious)

# two categories: 0 with parts {0, 1}, 1 with parts {2, 3, 4}
PARTS = [[0, 1], [2, 3, 4]]
GT = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0], [2, 2, 3, 3]])
PRED = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 0], [2, 4, 3, 3]])
CATS = torch.tensor([0, 0, 1])
# shape 0: part 0 = 1/2, part 1 = 2/3 -> 7/12; shape 1: part 0 = 1, part 1 absent from both = 1 -> 1;
# shape 2: part 2 = 1/2, part 3 = 1, part 4 (predicted once, never true) = 0 -> 1/2
SHAPE_IOU = [7 / 12, 1.0, 0.5]


def test_shape_instance_and_class_miou_by_hand():
    ious = shape_ious(PRED, GT, CATS, PARTS)
    assert ious.tolist() == pytest.approx(SHAPE_IOU, abs=1e-12)
    assert instance_miou(ious) == pytest.approx(25 / 36, abs=1e-12)  # (7/12 + 1 + 1/2) / 3
    assert class_miou(ious, CATS) == pytest.approx(31 / 48, abs=1e-12)  # ((7/12 + 1) / 2 + 1/2) / 2
    out = seg_miou(PRED, GT, CATS, PARTS, names=("Chair", "Lamp"))
    assert out["instance_miou"] == pytest.approx(25 / 36) and out["class_miou"] == pytest.approx(31 / 48)
    assert out["miou_Chair"] == pytest.approx(19 / 24) and out["miou_Lamp"] == pytest.approx(0.5)


def test_only_the_category_parts_count_and_empty_categories_are_skipped():
    # a prediction of another category's part hurts the true part's IoU but is not a part of its own
    pred = torch.tensor([[0, 0, 1, 3]])  # part 3 belongs to category 1
    gt = torch.tensor([[0, 0, 1, 1]])
    assert shape_ious(pred, gt, torch.tensor([0]), PARTS).item() == pytest.approx((1.0 + 0.5) / 2)
    # the same shape scored as if every part counted: parts 2 and 4 absent from both (1 each), part 3 = 0
    assert shape_ious(pred, gt, torch.tensor([0]), [[0, 1, 2, 3, 4]]).item() == pytest.approx((1 + 0.5 + 1 + 0 + 1) / 5)
    # class mIoU averages only the categories that have shapes (category 1 has none here)
    ious = torch.tensor([0.2, 0.6])
    assert class_miou(ious, torch.tensor([0, 0]), num_categories=2) == pytest.approx(0.4)
    assert math.isnan(instance_miou(torch.zeros(0)))
    with pytest.raises(ValueError, match="categories"):
        shape_ious(PRED, GT, CATS[:2], PARTS)


def test_prediction_is_restricted_to_the_category():
    mask = part_mask(PARTS)
    assert mask.tolist() == [[True, True, False, False, False], [False, False, True, True, True]]
    logits = torch.tensor([[[0.1, 0.2, 0.0, 5.0, 0.0]], [[0.1, 0.2, 0.0, 5.0, 0.0]]])  # (2, 1, 5): part 3 wins overall
    got = restrict_to_category(logits, torch.tensor([0, 1]), mask)
    assert got.tolist() == [[1], [3]]  # category 0 may only say 0 or 1; category 1 keeps its 3

    class Fixed(torch.nn.Module):  # a "model" returning the logits above for any 2-cloud input
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, pts):
            return logits[: pts.shape[0]].expand(pts.shape[0], pts.shape[1], 5) + self.w

    pts = torch.zeros(2, 3, 3)
    pred = predict_in_category(Fixed(), pts, torch.tensor([0, 1]), PARTS, batch_size=1)
    assert pred.tolist() == [[1, 1, 1], [3, 3, 3]]
