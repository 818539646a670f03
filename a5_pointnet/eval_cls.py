"""Evaluate a trained classifier: test accuracy, confusion matrix, the bounding-box baseline, and
turntable GIFs of object --index (--i) and of a correct and a failed prediction per class.

    python -m a5_pointnet.eval_cls --load_checkpoint output/a5_pointnet/cls --num_points 10000 --i 0

Accuracy = correctly classified test objects / test objects, each object seen through a random
subset of --num_points of its points. Writes into --output_dir: ``metrics.json`` (test_accuracy,
per-class accuracy, confusion matrix, the bounding-box baseline's accuracy, and the check
``test_accuracy >= 0.90`` that ``python -m l3d.report --check`` reads), ``results.md`` (the
tables), ``object_<i>.gif`` and ``correct_<class>.gif`` / ``failure_<class>.gif`` (caption: ground
truth and prediction; a PNG of the first frame, the front view, beside each GIF). Class names and
counts come from the data (the course's chair / vase / lamp, or a release's 10 or 40 classes).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from l3d.cli import positive_int, report, run_cli, script_parser
from l3d.run import atomic_write
from l3d.train import choose_device

from .baseline import fit_bbox_baseline
from .common import (CLS_COLOR, VIS_QUICK, add_vis_flags, check_index, check_vis, clear_metrics, clear_pictures,
                     confusion_matrix, data_for_eval, load_test, load_trained, predict, random_subsets,
                     retain_freed_memory, save_turntable_gif, take_subsets)
from .data import add_data_flags, load_split
from .targets import accuracy_check


def build_parser():
    ap = script_parser(__doc__, "a5_pointnet/eval_cls", presets={"quick": VIS_QUICK})
    ap.add_flag("load_checkpoint", default="output/a5_pointnet/cls",
                    help="a checkpoint .pt, or a training folder (uses its checkpoints/best.pt)")
    ap.add_flag("num_points", default=10000, help="random points per object used for the prediction")
    ap.add_flag("index", default=0, help="index of the test object to visualise (course spelling: --i)")
    ap.add_argument("--num_objects", type=positive_int, default=None, help="evaluate only the first N test objects (default all)")
    ap.add_flag("batch_size", default=16, help="objects per forward pass")
    ap.add_argument("--class_gifs", type=positive_int, default=10,
                    help="correct / failure GIFs for at most this many classes (those with the most test objects; "
                         "a 40-class release would otherwise write 80)")
    ap.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                    help="also fit and score the bounding-box baseline (needs the training split)")
    add_vis_flags(ap)
    add_data_flags(ap, sizes_from_checkpoint=True)
    return ap


def _caption(names, gt: int, pred: int) -> str:
    return f"truth: {names[gt]}, predicted: {names[pred]}"


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_vis(args)
    retain_freed_memory()
    device = choose_device(args.device)
    model, cfg, state = load_trained(args.load_checkpoint, device, task="cls")
    spec = data_for_eval(args, "cls", state)
    x, y = load_test(spec, "cls", args.num_objects)
    n = len(x)
    check_index(args.index, n)
    idx = random_subsets(n, x.shape[1], args.num_points, args.seed)
    pts = take_subsets(x, idx)
    t0 = time.perf_counter()
    pred = predict(model, pts, args.batch_size, device)
    eval_s = time.perf_counter() - t0
    correct = pred == y
    names = spec.names("cls")  # the data set's own classes (the course's 3, or a release's 10 / 40)
    cm = confusion_matrix(pred, y, len(names))
    present = [c for c in range(len(names)) if bool((y == c).any())]  # classes with test objects
    acc = float(correct.double().mean())
    metrics = {"test_accuracy": acc, "num_objects": n, "num_points": pts.shape[1],
               "model": cfg.arch, "checkpoint": state["_path"], "data": spec.label("cls"), "data_source": spec.source,
               "eval_time_s": eval_s, "confusion_matrix": cm.tolist(),
               "checks": {"test_accuracy": accuracy_check("cls", acc, n, pts.shape[1], cfg.arch)}}
    for c in present:
        metrics[f"accuracy_{names[c]}"] = float(correct[y == c].double().mean())
    if args.baseline:
        tx, ty = load_split(spec.root, "cls", "train")
        metrics.update(fit_bbox_baseline(tx, ty, x.numpy(), y.numpy(), num_classes=len(names)))

    out = Path(args.output_dir)
    written = []
    clear_pictures(out, ("object_", "correct_", "failure_"))
    color = torch.tensor(CLS_COLOR).expand(pts.shape[1], 3)
    caption = _caption(names, int(y[args.index]), int(pred[args.index]))
    written += save_turntable_gif(out / f"object_{args.index}.gif", [(pts[args.index], color, caption)], args)
    lines = ["# Classification", "",
             f"Test accuracy **{metrics['test_accuracy']:.4f}** on {n} objects, {pts.shape[1]} points each "
             f"({cfg.arch}; data: {metrics['data']}).", ""]
    if args.baseline:
        lines += [f"Bounding-box baseline (extents and proportions only): logistic regression "
                  f"{metrics['bbox_logreg_accuracy']:.4f}, 15-NN {metrics['bbox_knn_accuracy']:.4f}.", ""]
    lines += ["| class | objects | accuracy | correct example | failure example (predicted) |", "|---|---|---|---|---|"]
    with_gifs = set(sorted(present, key=lambda c: -int((y == c).sum()))[:args.class_gifs])
    for c in present:
        name = names[c]
        members = torch.nonzero(y == c).flatten()
        ok = members[correct[members]]
        bad = members[~correct[members]]
        cells = [name, str(len(members)), f"{metrics[f'accuracy_{name}']:.4f}"]
        for kind, group in (("correct", ok), ("failure", bad)):
            if len(group) == 0:
                cells.append("none")
                continue
            j = int(group[0])
            if c in with_gifs:
                written += save_turntable_gif(out / f"{kind}_{name}.gif", [(pts[j], color, _caption(names, c, int(pred[j])))],
                                              args, text_color=(120, 255, 120) if kind == "correct" else (255, 110, 110))
            cells.append(f"object {j}" + ("" if kind == "correct" else f" ({names[int(pred[j])]})"))
        lines.append("| " + " | ".join(cells) + " |")
    shown = sorted(set(present) | {int(p) for p in pred.unique()})  # rows and columns that are not all zero
    lines += ["", "Confusion matrix (rows: ground truth, columns: prediction"
              + ("" if len(shown) == len(names) else f"; the {len(shown)} of {len(names)} classes that occur") + "):", "",
              "| | " + " | ".join(names[c] for c in shown) + " |", "|---" * (len(shown) + 1) + "|"]
    lines += ["| " + names[r] + " | " + " | ".join(str(int(cm[r, c])) for c in shown) + " |" for r in shown]
    md = out / "results.md"
    atomic_write(md, "\n".join(lines) + "\n")
    clear_metrics(out)
    report(out, metrics, [md] + written)
    return 0


if __name__ == "__main__":
    run_cli(main)
