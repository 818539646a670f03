"""The questions of Assignment 5 as the gallery and ``python -m l3d.report --check`` see them.

Torch-free: the commands come from the demo's list of runs (:func:`a5_pointnet.demo.steps`), the
check names from :mod:`a5_pointnet.targets`. The course's point clouds are not in the data root,
so there are no reference images; every folder says which data it used in ``metrics.json["data"]``.
"""

from __future__ import annotations

from l3d.checks import Part

from .demo import commands_for
from .targets import ROBUSTNESS_CHECKS

_ROOT = "a5_pointnet"
_CLS_MEDIA = ("correct_chair.gif", "correct_vase.gif", "correct_lamp.gif", "failure_*.gif")

PARTS = [
    Part("A5 1", "Classification model (PointNet)", f"{_ROOT}/eval_cls", command=commands_for("eval_cls"),
         checks=("test_accuracy",), media=_CLS_MEDIA),
    Part("A5 2", "Segmentation model (PointNet)", f"{_ROOT}/eval_seg", command=commands_for("eval_seg"),
         checks=("test_accuracy",), media=("gt_0.gif", "pred_0.gif", "good_0.gif", "bad_0.gif")),
    Part("A5 3", "Robustness: rotated inputs and fewer points", f"{_ROOT}/robustness",
         command=commands_for("robustness"), checks=ROBUSTNESS_CHECKS,
         media=("robustness.png", "cls_rot90.gif", "seg_rot90.gif", "seg_points100.gif")),
    Part("A5 4", "Locality: PointNet++ classification", f"{_ROOT}/eval_cls_pointnet2",
         command=commands_for("eval_cls_pointnet2"), checks=("test_accuracy",), media=_CLS_MEDIA),
]
