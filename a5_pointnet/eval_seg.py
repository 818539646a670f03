"""Evaluate a trained part-segmentation model: per-point test accuracy, per-part accuracy and IoU,
and turntable GIFs of ground truth and prediction (the course's segmentation colours).

    python -m a5_pointnet.eval_seg --load_checkpoint output/a5_pointnet/seg --num_points 10000 --i 0

Accuracy = correctly labelled points / points over the test split, each object seen through a
random subset of --num_points of its points. Writes into --output_dir: ``metrics.json`` (with the
check ``test_accuracy >= 0.80`` that ``python -m l3d.report --check`` reads),
``results.md``, ``gt_<i>.gif`` and ``pred_<i>.gif`` (object --index, course spelling --i), and for the --num_cases best and
worst objects ``good_<k>.gif`` / ``bad_<k>.gif`` (ground truth | prediction side by side, with the
object's accuracy), ``pred_<i>.ply`` (object --index coloured by its predicted parts) and
``pred_<i>.npz`` (its ``points``, ``pred`` and ``gt``, for ``python -m l3d.view``). Colours: 0 seat white, 1 back magenta, 2 legs cyan, 3 arms yellow, 4 base
blue, 5 headrest red (for the course's data the part names may differ; the colours do not).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from l3d.cli import nonneg_int, positive_int, report, run_cli, script_parser
from l3d.export import save_point_cloud
from l3d.run import atomic_path, atomic_write
from l3d.train import choose_device

from .common import (VIS_QUICK, add_vis_flags, check_index, check_vis, clear_metrics, clear_pictures, data_for_eval,
                     load_test, load_trained, part_iou, random_subsets, retain_freed_memory,
                     save_turntable_gif, seg_colors, seg_legend, take_subsets)
from .data import add_data_flags, load_categories
from .metrics import predict_in_category, seg_miou
from .targets import accuracy_check


def build_parser():
    ap = script_parser(__doc__, "a5_pointnet/eval_seg", presets={"quick": VIS_QUICK})
    ap.add_flag("load_checkpoint", default="output/a5_pointnet/seg",
                    help="a checkpoint .pt, or a training folder (uses its checkpoints/best.pt)")
    ap.add_flag("num_points", default=10000, help="random points per object used for the prediction")
    ap.add_flag("index", default=0, help="index of the test object to visualise (course spelling: --i)")
    ap.add_argument("--num_cases", type=nonneg_int, default=2, help="best and worst objects to visualise (each)")
    ap.add_argument("--num_objects", type=positive_int, default=None, help="evaluate only the first N test objects (default all)")
    ap.add_flag("batch_size", default=8, help="objects per forward pass")
    add_vis_flags(ap)
    add_data_flags(ap, sizes_from_checkpoint=True)
    return ap


def export_labelled_cloud(stem: Path, points: torch.Tensor, pred: torch.Tensor, gt: torch.Tensor) -> list:
    """``<stem>.ply`` (points coloured by predicted part, for any point-cloud tool) and ``<stem>.npz``
    (``points``, ``pred``, ``gt``: what ``python -m l3d.view`` colours by prediction or truth)."""
    ply = save_point_cloud(stem.with_suffix(".ply"), points, seg_colors(pred))
    with atomic_path(stem.with_suffix(".npz")) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, points=points.cpu().numpy().astype(np.float32), pred=pred.cpu().numpy().astype(np.int64),
                     gt=gt.cpu().numpy().astype(np.int64))
    return [ply, stem.with_suffix(".npz")]


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_vis(args)
    retain_freed_memory()
    device = choose_device(args.device)
    model, cfg, state = load_trained(args.load_checkpoint, device, task="seg")
    spec = data_for_eval(args, "seg", state)
    x, y = load_test(spec, "seg", args.num_objects)
    n = len(x)
    check_index(args.index, n)
    idx = random_subsets(n, x.shape[1], args.num_points, args.seed)
    pts, gt = take_subsets(x, idx), take_subsets(y, idx)
    t0 = time.perf_counter()
    cats, cat_parts, cat_names = load_categories(spec.root, "test", n)  # one category for the course's chairs
    cats = torch.from_numpy(cats)
    pred = predict_in_category(model, pts, cats, cat_parts, args.batch_size, device)  # (N, P), within each category
    eval_s = time.perf_counter() - t0
    correct = pred == gt
    per_object = correct.double().mean(1)  # (N,)
    iou = part_iou(pred, gt, cfg.num_classes)
    part_labels = spec.names("seg")
    acc = float(correct.double().mean())
    metrics = {"test_accuracy": acc, "num_objects": n, "num_points": pts.shape[1],
               "model": cfg.arch, "checkpoint": state["_path"], "data": spec.label("seg"), "data_source": spec.source,
               "eval_time_s": eval_s, "checks": {"test_accuracy": accuracy_check("seg", acc, n, pts.shape[1], cfg.arch)},
               "object_accuracy_min": float(per_object.min()), "object_accuracy_median": float(per_object.median()),
               "mean_iou": float(iou[~iou.isnan()].mean()) if (~iou.isnan()).any() else float("nan")}
    metrics.update(seg_miou(pred, gt, cats, cat_parts, cat_names))  # instance / class mIoU as the benchmarks report
    for c, name in enumerate(part_labels):
        m = gt == c
        metrics[f"accuracy_{name}"] = float(correct[m].double().mean()) if m.any() else float("nan")
        metrics[f"iou_{name}"] = float(iou[c])

    out = Path(args.output_dir)
    written = []
    clear_pictures(out, ("gt_", "pred_", "good_", "bad_"))
    key = seg_legend(spec.source)
    written += save_turntable_gif(out / f"gt_{args.index}.gif", [(pts[args.index], seg_colors(gt[args.index]), "ground truth")], args,
                                  legend=key)
    written += save_turntable_gif(out / f"pred_{args.index}.gif", [(pts[args.index], seg_colors(pred[args.index]),
                                                                f"prediction ({per_object[args.index]:.1%} correct)")],
                                  args, legend=key)
    written += export_labelled_cloud(out / f"pred_{args.index}", pts[args.index], pred[args.index], gt[args.index])
    order = torch.argsort(per_object, descending=True)
    k = min(args.num_cases, n)
    cases = [("good", int(j)) for j in order[:k]] + [("bad", int(j)) for j in order.flip(0)[:k]]
    lines = ["# Part segmentation", "",
             f"Test accuracy **{metrics['test_accuracy']:.4f}** (correct points / points) on {n} objects, "
             f"{pts.shape[1]} points each ({cfg.arch}; data: {metrics['data']}); mean IoU {metrics['mean_iou']:.4f}; "
             f"instance mIoU {metrics['instance_miou']:.4f}, class mIoU {metrics['class_miou']:.4f}.", "",
             "| part (colour) | points | accuracy | IoU |", "|---|---|---|---|"]
    colours = ("white", "magenta", "cyan", "yellow", "blue", "red")
    for c, name in enumerate(part_labels):
        cnt = int((gt == c).sum())
        acc, pi = metrics[f"accuracy_{name}"], metrics[f"iou_{name}"]
        fmt = lambda v: "-" if math.isnan(v) else f"{v:.4f}"  # noqa: E731
        lines.append(f"| {c} {name} ({colours[c % len(colours)]}) | {cnt} | {fmt(acc)} | {fmt(pi)} |")
    lines += ["", "| case | object | accuracy |", "|---|---|---|"]
    counters = {"good": 0, "bad": 0}
    for kind, j in cases:
        name = f"{kind}_{counters[kind]}"
        counters[kind] += 1
        panels = [(pts[j], seg_colors(gt[j]), "ground truth"),
                  (pts[j], seg_colors(pred[j]), f"prediction ({per_object[j]:.1%} correct)")]
        written += save_turntable_gif(out / f"{name}.gif", panels, args, legend=key)
        lines.append(f"| {name} | {j} | {per_object[j]:.4f} |")
    md = out / "results.md"
    atomic_write(md, "\n".join(lines) + "\n")
    clear_metrics(out)
    report(out, metrics, [md] + written)
    return 0


if __name__ == "__main__":
    run_cli(main)
