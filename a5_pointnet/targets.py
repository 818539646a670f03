"""The numbers the Assignment 5 parts must reach, and the ``metrics.json["checks"]`` built from them.

Torch-free, so the gallery and the tests can read the thresholds without loading a model.

* Q1 classification: test accuracy >= :data:`MIN_ACCURACY` ``["cls"]`` (0.90) on held-out clouds.
* Q2 segmentation: per-point test accuracy >= ``MIN_ACCURACY["seg"]`` (0.80).
* Q3 robustness (per task, from the two sweeps of :mod:`a5_pointnet.robustness`):

  - ``<task>_upright_accuracy``: the sweep's 0-degree accuracy reaches the task's Q1/Q2 threshold
    (the sweep starts from a working model);
  - ``<task>_rotation_drop``: the 0-degree accuracy minus the mean accuracy at the angles of
    :data:`LARGE_ANGLE` degrees and more is at least :data:`MIN_ROTATION_DROP`: a PointNet
    trained on upright clouds is not rotation invariant, which is what the sweep exists to show
    (a rotation that is never applied, or a model that ignores the input, gives 0);
  - ``<task>_rotation_gain``: no rotated setting beats the upright one by more than
    :data:`MAX_ROTATION_GAIN` (the sweep falls, give or take noise);
  - ``<task>_points_floor``: the lowest accuracy of the number-of-points sweep stays above
    :data:`POINTS_FLOOR` (max pooling over points degrades gracefully when points are dropped).

* Q4 locality: PointNet++ classification accuracy >= ``MIN_ACCURACY["cls"]``.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

from l3d.checks import check

__all__ = ["MIN_ACCURACY", "LARGE_ANGLE", "MIN_ROTATION_DROP", "MAX_ROTATION_GAIN", "POINTS_FLOOR",
           "accuracy_check", "robustness_checks", "ROBUSTNESS_CHECKS"]

MIN_ACCURACY = {"cls": 0.90, "seg": 0.80}
LARGE_ANGLE = 60.0
MIN_ROTATION_DROP = 0.25
MAX_ROTATION_GAIN = 0.05
POINTS_FLOOR = {"cls": 0.85, "seg": 0.70}
#: the robustness checks of a run over both tasks (names in metrics.json["checks"])
ROBUSTNESS_CHECKS = tuple(f"{t}_{k}" for t in ("cls", "seg")
                          for k in ("upright_accuracy", "rotation_drop", "rotation_gain", "points_floor"))

_WHAT = {"cls": "classification accuracy (correct objects / objects)",
         "seg": "segmentation accuracy (correct points / points)"}


#: how checks and tables name each --model
MODEL_NAMES = {"pointnet": "PointNet", "pointnet2": "PointNet++", "transformer": "Transformer",
               "point_transformer": "local (kNN) Transformer"}


def accuracy_check(task: str, accuracy: float, num_objects: int, num_points: int, model: str = "pointnet") -> dict:
    """The Q1/Q2/Q4 check: test ``accuracy`` of ``task`` against :data:`MIN_ACCURACY`."""
    name = MODEL_NAMES.get(model, model)
    return check(accuracy, min=MIN_ACCURACY[task],
                 what=f"{name} {_WHAT[task]} of {num_objects} held-out clouds at {num_points} points each")


def robustness_checks(results: Mapping[str, Mapping[str, Sequence[Mapping[str, float]]]],
                      num_objects: Optional[Mapping[str, int]] = None) -> Dict[str, dict]:
    """The Q3 checks of the sweeps of each task in ``results``.

    Args:
        results: per task ("cls"/"seg"): ``{"rotation": [{"angle", "accuracy"}, ...],
            "num_points": [{"num_points", "accuracy"}, ...]}`` as :mod:`a5_pointnet.robustness`
            writes them.
        num_objects: per task, the number of test clouds (for the descriptions only).
    Returns:
        ``{name: check}``; a check whose settings are absent from the sweep (no 0-degree angle,
        no angle >= :data:`LARGE_ANGLE`, no number-of-points sweep) is left out, so ``--check``
        reports it missing instead of passing it.
    """
    out: Dict[str, dict] = {}
    for task, res in results.items():
        n = f" ({num_objects[task]} test clouds)" if num_objects and task in num_objects else ""
        rot = {float(r["angle"]): float(r["accuracy"]) for r in res.get("rotation", [])}
        if 0.0 in rot:
            up = rot[0.0]
            out[f"{task}_upright_accuracy"] = check(
                up, min=MIN_ACCURACY[task], what=f"{task} accuracy of the rotation sweep at 0 degrees{n}")
            large = [a for a in rot if abs(a) >= LARGE_ANGLE]
            if large:
                drop = up - sum(rot[a] for a in large) / len(large)
                out[f"{task}_rotation_drop"] = check(
                    drop, min=MIN_ROTATION_DROP,
                    what=f"{task} accuracy at 0 degrees minus its mean at {', '.join(f'{a:g}' for a in sorted(large))} "
                         "degrees (a model trained upright is not rotation invariant)")
            others = [a for a in rot if a != 0.0]
            if others:
                gain = max(rot[a] for a in others) - up
                out[f"{task}_rotation_gain"] = check(
                    gain, max=MAX_ROTATION_GAIN,
                    what=f"{task}: largest accuracy gain of a rotated setting over the upright one")
        pts = [(int(r["num_points"]), float(r["accuracy"])) for r in res.get("num_points", [])]
        if pts:
            fewest = min(p for p, _ in pts)
            out[f"{task}_points_floor"] = check(
                min(a for _, a in pts), min=POINTS_FLOOR[task],
                what=f"{task}: lowest accuracy of the number-of-points sweep ({fewest} to {max(p for p, _ in pts)} "
                     f"points per cloud){n}")
    return out
