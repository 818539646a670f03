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
from .synthetic import CLASS_NAMES
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
    t0 = time.perf_counter()
    for task in tasks:
        model, cfg, state = load_trained(args.cls_checkpoint if task == "cls" else args.seg_checkpoint, device, task=task)
        spec = data_for_eval(args, task, state)
        x, y = load_test(spec, task, args.num_objects)
        check_index(args.index, len(x))
        res = {"model": cfg.arch, "num_objects": len(x), "rotation": [], "num_points": []}
        labels.append((spec.source, spec.label(task)))
        examples = {}
        for angle in args.angles:
            acc, pts, gt, pred = accuracy(model, x, y, args.rotation_points, angle, args.axis, args.seed,
                                          args.batch_size, device)
            res["rotation"].append({"angle": angle, "accuracy": acc})
            metrics[f"{task}_rot_{angle:g}"] = acc
            if angle in args.example_angles:
                examples[f"{task}_rot{angle:g}"] = (pts[args.index], gt[args.index], pred[args.index],
                                                    f"rotated {angle:g} deg about {args.axis}")
        for n in args.num_points_list:
            acc, pts, gt, pred = accuracy(model, x, y, n, 0.0, args.axis, args.seed, args.batch_size, device)
            res["num_points"].append({"num_points": min(n, x.shape[1]), "accuracy": acc})
            metrics[f"{task}_points_{n}"] = acc
            if n == min(args.num_points_list):
                examples[f"{task}_points{n}"] = (pts[args.index], gt[args.index], pred[args.index], f"{pts.shape[1]} points")
        results[task] = res
        pictures += [(task, name, ex, spec.source) for name, ex in examples.items()]
    clear_pictures(out, tuple(f"{t}_{kind}" for t in ("cls", "seg") for kind in ("rot", "points")))
    for task, name, (pts, gt, pred, what), source in pictures:
        if task == "cls":
            color = torch.tensor(CLS_COLOR).expand(pts.shape[0], 3)
            text = f"{what}\ntruth: {CLASS_NAMES[int(gt)]}, predicted: {CLASS_NAMES[int(pred)]}"
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
    out.mkdir(parents=True, exist_ok=True)
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
