"""Robustness of the trained models (Q3): accuracy under rotation of the input and with fewer points.

    python -m a5_pointnet.robustness --task both --axis x
    python -m a5_pointnet.robustness --task cls --cls_checkpoint output/a5_pointnet/cls_pointnet2 \
        --output_dir output/a5_pointnet/robustness_pointnet2

Two sweeps per task, on the test split, with the models trained on upright, unrotated clouds:

* rotation: every test cloud rotated by each of --angles degrees about the world --axis through
  the origin (x tilts the y-up objects forwards), --rotation_points points per cloud;
* number of points: random subsets of --num_points_list points per cloud, unrotated.

Writes into --output_dir: ``robustness.md`` (one table per sweep, one row per setting, cls and
seg side by side), ``robustness.png`` (accuracy against angle and against the number of points),
``metrics.json`` (every accuracy, and the checks of :mod:`a5_pointnet.targets` that
``python -m l3d.report --check`` reads: the 0-degree accuracy reaches the Q1/Q2 threshold, the
accuracy falls under large rotations and never rises much above the upright one, and the
number-of-points sweep stays above a floor), and example GIFs of object --index (--i): rotated by each of
--example_angles and with the fewest points (cls: caption truth/prediction; seg: ground truth |
prediction).

Beside the overall accuracies, every setting gets its breakdown: the classifier's accuracy per class
(``per_class[setting][class]`` in ``metrics.json``, with the class counts in ``class_counts``, and a
table in ``robustness.md``) and the segmentation accuracy of every test object
(``seg_per_object[setting]``, the example objects' values tabulated). ``seg_examples.png`` is a grid
of front views: one row per setting of --grid_angles and --grid_points (those in the sweeps), ground
truth and prediction of each --grid_objects test object side by side, each prediction labelled with
its accuracy in a banner above it. Settings are named ``rot_<angle>`` and ``points_<n>``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from l3d.cli import finite_float, positive_int, report, run_cli, script_parser
from l3d.run import atomic_write
from l3d.train import choose_device

from .common import (CLS_COLOR, VIS_QUICK, add_vis_flags, check_index, check_vis, clear_metrics, clear_pictures,
                     data_for_eval, load_test, load_trained, predict, random_subsets, retain_freed_memory,
                     rotate_points, save_turntable_gif, seg_colors, seg_legend, take_subsets)
from .data import add_data_flags
from .targets import robustness_checks


def build_parser() -> argparse.ArgumentParser:
    ap = script_parser(__doc__, "a5_pointnet/robustness", presets={"quick": {**VIS_QUICK, "num_objects": 100}})
    ap.add_argument("--task", choices=["cls", "seg", "both"], default="both", help="which models to test")
    ap.add_argument("--cls_checkpoint", default="output/a5_pointnet/cls", help="classifier checkpoint or training folder")
    ap.add_argument("--seg_checkpoint", default="output/a5_pointnet/seg", help="segmentation checkpoint or training folder")
    ap.add_argument("--axis", choices=["x", "y", "z"], default="x", help="rotation axis (y is up)")
    ap.add_argument("--angles", type=finite_float, nargs="+", default=[0, 10, 20, 30, 60, 90], help="rotation angles in degrees")
    ap.add_argument("--num_points_list", type=positive_int, nargs="+", default=[10000, 5000, 1000, 500, 100],
                    help="points per cloud for the second sweep")
    ap.add_argument("--rotation_points", type=positive_int, default=10000, help="points per cloud in the rotation sweep")
    ap.add_argument("--num_objects", type=positive_int, default=None,
                    help="use the first N test objects (default all; --quick: 100)")
    ap.add_flag("batch_size", default=8, help="objects per forward pass")
    ap.add_flag("index", default=0, help="test object shown in the example GIFs (course spelling: --i)")
    ap.add_argument("--example_angles", type=finite_float, nargs="*", default=[30, 90],
                    help="rotations shown in example GIFs (the fewest-points example is always written)")
    ap.add_argument("--grid_objects", type=int, nargs="+", default=None,
                    help="test objects shown in seg_examples.png (default: --index and the next one)")
    ap.add_argument("--grid_angles", type=finite_float, nargs="*", default=[0, 30, 90],
                    help="rotations (of --angles) that get a row in seg_examples.png")
    ap.add_argument("--grid_points", type=positive_int, nargs="*", default=[1000, 100],
                    help="points per cloud (of --num_points_list) that get a row in seg_examples.png")
    add_vis_flags(ap)
    add_data_flags(ap, sizes_from_checkpoint=True)
    return ap


def accuracy(model, x: torch.Tensor, y: torch.Tensor, num_points: int, angle: float, axis: str, seed: int,
             batch_size: int, device) -> tuple:
    """(accuracy, points used (N, n, 3), labels (N,) or (N, n), predictions) for one setting."""
    idx = random_subsets(x.shape[0], x.shape[1], num_points, seed)
    pts = take_subsets(x, idx)
    if angle:
        pts = rotate_points(pts, angle, axis)
    gt = y if y.dim() == 1 else take_subsets(y, idx)
    pred = predict(model, pts, batch_size, device)
    return float((pred == gt).double().mean()), pts, gt, pred


def per_class_accuracy(pred: torch.Tensor, gt: torch.Tensor, num_classes: int) -> tuple:
    """(accuracy per class (C,) float64, NaN for a class without test objects; objects per class (C,))."""
    counts = torch.bincount(gt.reshape(-1), minlength=num_classes)
    correct = torch.bincount(gt.reshape(-1)[(pred == gt).reshape(-1)], minlength=num_classes)
    acc = torch.where(counts > 0, correct.double() / counts.clamp(min=1), torch.full((num_classes,), float("nan"),
                                                                                    dtype=torch.float64))
    return acc, counts


def per_object_accuracy(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(N,) fraction of correctly labelled points of every cloud, from (N, P) part labels."""
    return (pred == gt).double().mean(1)


#: width in pixels of the setting labels left of the grid rows
GRID_LABEL_WIDTH = 96


def _setting_label(setting: str, axis: str) -> str:
    kind, value = setting.split("_", 1)
    return f"rotated {value} deg about {axis}" if kind == "rot" else f"{value} points"


def _seg_grid(path: Path, rows: List[tuple], objects: List[int], args: argparse.Namespace, source: str) -> Path:
    """seg_examples.png: per row (setting, points (K, n, 3), labels (K, n), predictions (K, n) of the
    K test objects ``objects``) the front view of ground truth and prediction of every object, captions in banners
    above the renderings, the setting in a margin on the left, the colour key below."""
    import numpy as np
    from PIL import Image

    from l3d.media import to_uint8
    from l3d.run import atomic_path

    from .common import PANEL_GAP, caption_banner, legend_strip, render_turntable

    view = argparse.Namespace(**{**vars(args), "num_frames": 1})  # the GIFs' first frame: the front view
    S = args.image_size
    size = max(10, round(S / 15))
    blocks = []
    for setting, pts, gt, pred in rows:
        panels = []
        for k, i in enumerate(objects):  # row k of pts / gt / pred is test object i
            acc_i = float((pred[k] == gt[k]).double().mean())
            for labels, text in ((gt[k], f"object {i}\nground truth"), (pred[k], f"prediction\n{acc_i:.1%} correct")):
                img = to_uint8(render_turntable(pts[k].float(), seg_colors(labels).float(), view))[0]
                banner = caption_banner(text, S, min_lines=2, font_size=size)
                panels.append(np.concatenate([banner, img], axis=0))
        h = max(p.shape[0] for p in panels)
        panels = [np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0)), constant_values=31) for p in panels]
        label = caption_banner(_setting_label(setting, args.axis), GRID_LABEL_WIDTH, font_size=size)
        label = np.pad(label[:h], ((0, max(0, h - label.shape[0])), (0, 0), (0, 0)), constant_values=31)
        gap = np.full((h, PANEL_GAP, 3), 200, dtype=np.uint8)
        blocks.append(np.concatenate([label] + [x for p in panels for x in (gap, p)], axis=1))
    width = blocks[0].shape[1]
    hgap = np.full((PANEL_GAP, width, 3), 200, dtype=np.uint8)
    key = legend_strip(seg_legend(source), width, font_size=size)
    grid = np.concatenate([x for b in blocks for x in (b, hgap)] + [key], axis=0)
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="png")
    return path


def _plot(results: Dict[str, dict], args: argparse.Namespace, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from l3d.run import atomic_path

    fig = Figure(figsize=(10, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ax1.set_title(f"rotated inputs ({args.rotation_points} points per cloud)")
    ax2.set_title("fewer points per cloud (no rotation)")
    for task, res in results.items():
        rot = res["rotation"]
        name = {"cls": "classification", "seg": "segmentation"}[task] + f" ({res['model']})"
        ax1.plot([r["angle"] for r in rot], [r["accuracy"] for r in rot], "o-", label=name)
        pts = res["num_points"]
        ax2.plot([r["num_points"] for r in pts], [r["accuracy"] for r in pts], "o-", label=name)
    ax1.set_xlabel(f"rotation about {args.axis} (degrees)")
    ax2.set_xlabel("points per cloud")
    ax2.set_xscale("log")
    for ax in (ax1, ax2):
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1.04)
        ax.grid(True, alpha=0.3)
    handles, labels = ax1.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)  # below the plots, off the data
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def main(argv: Optional[List[str]] = None):
    args = build_parser().parse_args(argv)
    check_vis(args)
    retain_freed_memory()
    device = choose_device(args.device)
    tasks = ["cls", "seg"] if args.task == "both" else [args.task]
    out = Path(args.output_dir)
    results: Dict[str, dict] = {}
    metrics: Dict[str, object] = {"axis": args.axis}
    written: List[Path] = []
    labels: List[tuple] = []  # (source, metrics.json "data" label) per task
    pictures: List[tuple] = []  # (task, name, (points, labels, predictions, caption), data source), written at the end
    per_class: Dict[str, Dict[str, Optional[float]]] = {}  # cls: setting -> class -> accuracy
    class_counts: Dict[str, int] = {}  # cls: test objects per class
    seg_per_object: Dict[str, List[float]] = {}  # seg: setting -> accuracy of every test object
    grid_rows: Dict[str, tuple] = {}  # seg: setting -> (points, labels, predictions) of the grid objects
    grid_objects: List[int] = []
    seg_source = "synthetic"
    cls_names: tuple = ()  # the classification data's own class names (spec.names)
    t0 = time.perf_counter()
    for task in tasks:
        model, cfg, state = load_trained(args.cls_checkpoint if task == "cls" else args.seg_checkpoint, device, task=task)
        spec = data_for_eval(args, task, state)
        x, y = load_test(spec, task, args.num_objects)
        check_index(args.index, len(x))
        res = {"model": cfg.arch, "num_objects": len(x), "rotation": [], "num_points": []}
        labels.append((spec.source, spec.label(task)))
        examples = {}
        if task == "seg":
            grid_objects = (args.grid_objects if args.grid_objects is not None
                            else [args.index] + ([args.index + 1] if args.index + 1 < len(x) else []))
            for i in grid_objects:
                check_index(i, len(x))
            grid_objects = list(dict.fromkeys(grid_objects))
            seg_source = spec.source
        else:
            cls_names = spec.names("cls")

        def breakdown(setting, pts, gt, pred):
            """the per-class (cls) or per-object (seg) accuracies of one setting, and its grid row"""
            if task == "cls":
                acc_c, counts = per_class_accuracy(pred, gt, len(cls_names))
                # classes with test objects only (a 40-class release's subset may lack some)
                per_class[setting] = {c: float(a) for c, a, k in zip(cls_names, acc_c.tolist(), counts.tolist()) if k > 0}
                class_counts.update({c: int(k) for c, k in zip(cls_names, counts.tolist()) if k > 0})
            else:
                seg_per_object[setting] = per_object_accuracy(pred, gt).tolist()
                grid_row = (setting in [f"rot_{a:g}" for a in args.grid_angles]
                            or setting in [f"points_{n}" for n in args.grid_points])
                if grid_row:
                    keep = torch.tensor(grid_objects)
                    grid_rows[setting] = (pts[keep], gt[keep], pred[keep])

        for angle in args.angles:
            acc, pts, gt, pred = accuracy(model, x, y, args.rotation_points, angle, args.axis, args.seed,
                                          args.batch_size, device)
            res["rotation"].append({"angle": angle, "accuracy": acc})
            metrics[f"{task}_rot_{angle:g}"] = acc
            breakdown(f"rot_{angle:g}", pts, gt, pred)
            if angle in args.example_angles:
                examples[f"{task}_rot{angle:g}"] = (pts[args.index], gt[args.index], pred[args.index],
                                                    f"rotated {angle:g} deg about {args.axis}")
        for n in args.num_points_list:
            acc, pts, gt, pred = accuracy(model, x, y, n, 0.0, args.axis, args.seed, args.batch_size, device)
            res["num_points"].append({"num_points": min(n, x.shape[1]), "accuracy": acc})
            metrics[f"{task}_points_{n}"] = acc
            breakdown(f"points_{n}", pts, gt, pred)
            if n == min(args.num_points_list):
                examples[f"{task}_points{n}"] = (pts[args.index], gt[args.index], pred[args.index], f"{pts.shape[1]} points")
        results[task] = res
        pictures += [(task, name, ex, spec.source) for name, ex in examples.items()]
    clear_pictures(out, tuple(f"{t}_{kind}" for t in ("cls", "seg") for kind in ("rot", "points")) + ("seg_examples",))
    for task, name, (pts, gt, pred, what), source in pictures:
        if task == "cls":
            color = torch.tensor(CLS_COLOR).expand(pts.shape[0], 3)
            text = f"{what}\ntruth: {cls_names[int(gt)]}, predicted: {cls_names[int(pred)]}"
            written += save_turntable_gif(out / f"{name}.gif", [(pts, color, text)], args,
                                          text_color=(120, 255, 120) if int(gt) == int(pred) else (255, 110, 110))
        else:
            acc_i = float((pred == gt).double().mean())
            panels = [(pts, seg_colors(gt), f"{what}\nground truth"),
                      (pts, seg_colors(pred), f"{what}\nprediction ({acc_i:.1%} correct)")]
            written += save_turntable_gif(out / f"{name}.gif", panels, args, legend=seg_legend(source))
    metrics["time_s"] = time.perf_counter() - t0

    lines = ["# Robustness", "",
             f"Models trained on upright clouds; test clouds rotated about the {args.axis} axis "
             f"({args.rotation_points} points), or subsampled (no rotation). "
             + ", ".join(f"{t}: {results[t]['model']}, {results[t]['num_objects']} test objects" for t in tasks) + ".", "",
             f"Data: {'; '.join(dict.fromkeys(lab for _, lab in labels))}.", "",
             "| rotation (deg) | " + " | ".join(f"{t} accuracy" for t in tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for k, angle in enumerate(args.angles):
        lines.append(f"| {angle:g} | " + " | ".join(f"{results[t]['rotation'][k]['accuracy']:.4f}" for t in tasks) + " |")
    lines += ["", "| points per cloud | " + " | ".join(f"{t} accuracy" for t in tasks) + " |",
              "|---" * (len(tasks) + 1) + "|"]
    for k, n in enumerate(args.num_points_list):
        lines.append(f"| {n} | " + " | ".join(f"{results[t]['num_points'][k]['accuracy']:.4f}" for t in tasks) + " |")
    settings = [f"rot_{a:g}" for a in args.angles] + [f"points_{n}" for n in args.num_points_list]
    if per_class:
        lines += ["", "Classification accuracy per class (test objects per class: "
                  + ", ".join(f"{c} {n}" for c, n in class_counts.items()) + "):", "",
                  "| setting | " + " | ".join(class_counts) + " | all |", "|---" * (len(class_counts) + 2) + "|"]
        for st in dict.fromkeys(settings):
            overall = metrics[f"cls_{st}"]
            lines.append(f"| {_setting_label(st, args.axis)} | "
                         + " | ".join(f"{per_class[st][c]:.4f}" for c in class_counts)
                         + f" | {overall:.4f} |")
    if seg_per_object:
        lines += ["", "Segmentation accuracy of the example objects (seg_examples.png) and over all test objects:", "",
                  "| setting | " + " | ".join(f"object {i}" for i in grid_objects) + " | all |",
                  "|---" * (len(grid_objects) + 2) + "|"]
        for st in dict.fromkeys(settings):
            lines.append(f"| {_setting_label(st, args.axis)} | "
                         + " | ".join(f"{seg_per_object[st][i]:.4f}" for i in grid_objects)
                         + f" | {metrics[f'seg_{st}']:.4f} |")
    out.mkdir(parents=True, exist_ok=True)
    if grid_rows:
        rows = [(st, *grid_rows[st]) for st in dict.fromkeys(settings) if st in grid_rows]
        written.append(_seg_grid(out / "seg_examples.png", rows, grid_objects, args, seg_source))
        metrics["seg_examples"] = {
            "rows": [st for st, *_ in rows], "objects": grid_objects,
            "columns": [f"object {i} {what}" for i in grid_objects for what in ("ground truth", "prediction")],
            "accuracy": {st: {str(i): seg_per_object[st][i] for i in grid_objects} for st, *_ in rows}}
    if per_class:
        metrics["per_class"] = per_class
        metrics["class_counts"] = class_counts
    if seg_per_object:
        metrics["seg_per_object"] = seg_per_object
    md = out / "robustness.md"
    atomic_write(md, "\n".join(lines) + "\n")
    png = _plot(results, args, out / "robustness.png")
    metrics["results"] = results
    standin = [lab for src, lab in labels if src != "course"]
    metrics["data"] = standin[0] if standin else "; ".join(dict.fromkeys(lab for _, lab in labels))
    metrics["checks"] = robustness_checks({t: results[t] for t in tasks},
                                          {t: results[t]["num_objects"] for t in tasks})
    clear_metrics(out)
    report(out, metrics, [md, png] + written)
    return 0


if __name__ == "__main__":
    run_cli(main)
