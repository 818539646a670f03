"""Q3.3: train on chairs only vs on three classes (chair, car, airplane); compare per category.

    python -m a2_single_view.study_classes --type point [--steps 10000] [--load_feat] [--views_per_model 1]

Trains two models with the same settings and number of steps -- one on the chair training set,
one on the chair + car + airplane training set -- and evaluates both on the test split of every
class (F1 per category; --views_per_model 0: every view of every test model). With
``--init_from`` a trained checkpoint, both runs start from it (the demo: both fine-tune the
chair-only point model for 50 steps, one on chairs, one on the three classes). Writes to --output_dir (default output/a2_single_view/study_classes_<type>): table.md
(F1@0.05 per training set and test class), f1_curves.png (F1 against the threshold on chairs
and on cars + airplanes), examples.gif/.png (one test image per class: input | one-class model |
three-class model | ground truth) and metrics.json; the runs' own outputs are in one_class/ and
three_class/. The check: on the car and airplane test images, the three-class model's F1@0.05 is
at least 10 points above the one-class model's (the chair-only model has never seen a car or an
airplane). The folder is locked while the study runs and the previous study's results stay until
this one has finished; --resume continues both runs from their checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import torch

from l3d.checks import check
from l3d.cli import nonneg_int, report, run_cli, script_parser
from l3d.media import save_gif_with_png
from l3d.run import RunDir, atomic_path
from l3d.train import choose_device

from . import eval_model, train_model
from .common import (add_data_flags, frame_distance, gif_fps, gt_as_kind, kind_points, render_gt_kind, render_kind,
                     still, titled, to_device, view_azimuth)
from .data import CLASS_SETS, collate
from .evaluate import THRESHOLDS
from .models import KINDS
from .study_wsmooth import pass_through, stop_if_interrupted

DATA_KEYS = ("data", "data_path", "split_file", "data_preset", "data_seed", "device", "seed", "quick")
MIN_OTHER_CLASS_GAIN = 10.0
QUICK = {"num_frames": 24, "image_size": 96, "data_preset": "quick"}


def main(argv=None):
    ap = script_parser(__doc__, "a2_single_view/study_classes_<type>", presets={"quick": QUICK})
    ap.add_argument("--type", choices=KINDS, default="point", help="model type of both runs")
    ap.add_flag("steps", default=None, help="training steps of each model (default: train_model's)")
    ap.add_flag("batch_size", default=None, help="images per step (default: train_model's)")
    ap.add_flag("lr", default=None, help="Adam learning rate (default: train_model's)")
    ap.add_flag("num_points", default=1000, help="points (point decoder) / chamfer samples")
    ap.add_argument("--load_feat", action="store_true", help="train on precomputed ResNet-18 features")
    ap.add_argument("--init_from", default=None, help="start both runs from this checkpoint (train_model --init_from)")
    ap.add_flag("resume", help="continue both runs of the study from their newest intact checkpoints")
    ap.add_flag("save_every", default=None, help="steps between each run's checkpoints (default: train_model's)")
    ap.add_argument("--views_per_model", type=nonneg_int, default=1,
                    help="test views of each held-out model in the evaluation (0: all listed)")
    ap.add_flag("num_frames", default=36, help="frames of examples.gif, one turn (--quick 24)")
    ap.add_flag("image_size", default=128, help="panel size of examples.gif (--quick 96)")
    add_data_flags(ap)
    args = ap.parse_args(argv)
    if args.output_dir == "output/a2_single_view/study_classes_<type>":
        args.output_dir = f"output/a2_single_view/study_classes_{args.type}"
    with RunDir(args.output_dir, fresh=not args.resume) as run:  # locked; the old study stays until this one ends
        return study(args, run)


def study(args, run: RunDir) -> dict:
    out = run.path()
    common = pass_through(args, DATA_KEYS)
    train_flags = pass_through(args, ("steps", "batch_size", "lr", "num_points", "save_every", "load_feat", "init_from",
                                         "resume"))
    device = choose_device(args.device)
    results = {}
    for name, classes in (("one_class", "chair"), ("three_class", "3c")):
        tm = train_model.main(["--type", args.type, "--classes", classes, "--output_dir", str(out / name / "train"),
                               "--no-baseline", *train_flags, *common])
        stop_if_interrupted(tm, f"training of the {name.replace('_', '-')} model")
        evals = {}
        for test in ("chair", "car", "airplane"):
            evals[test] = eval_model.run(["--type", args.type, "--load_checkpoint", str(tm["checkpoint"]), "--classes", test,
                                          "--output_dir", str(out / name / f"eval_{test}"), "--vis_count", "0",
                                          "--baseline_checkpoint", "none",
                                          "--views_per_model", str(args.views_per_model), *common])
        results[name] = {"train": tm, "eval": evals}
    f1 = {n: {c: r["eval"][c]["f1@0.05"] for c in r["eval"]} for n, r in results.items()}
    n_img = {c: results["one_class"]["eval"][c]["examples"] for c in ("chair", "car", "airplane")}

    def others(name, t):  # F1 at threshold t over the car and airplane test images together
        e = results[name]["eval"]
        return (e["car"][f"f1@{t:.2f}"] * n_img["car"] + e["airplane"][f"f1@{t:.2f}"] * n_img["airplane"]) / max(
            n_img["car"] + n_img["airplane"], 1)

    curves = {}
    for name in results:
        curves[f"{name.replace('_', ' ')}, chairs"] = [results[name]["eval"]["chair"][f"f1@{t:.2f}"] for t in THRESHOLDS]
        curves[f"{name.replace('_', ' ')}, cars + airplanes"] = [others(name, t) for t in THRESHOLDS]
    written = [eval_model.plot_f1_curves(curves, out / "f1_curves.png",
                                         f"{args.type}: trained on chairs only vs chair + car + airplane")]
    gain_other = others("three_class", 0.05) - others("one_class", 0.05)
    gain_chair = f1["three_class"]["chair"] - f1["one_class"]["chair"]
    head = "| trained on | " + " | ".join(f"test {c} ({n_img[c]}) F1@0.05" for c in n_img) + " |"
    rows = [f"| {'chairs' if n == 'one_class' else 'chairs, cars, airplanes'} | "
            + " | ".join(f"{f1[n][c]:.1f}" for c in n_img) + " |" for n in results]
    table = (f"# {args.type}: one class vs three classes, F1@0.05 per test class\n\n{head}\n|" + "---|" * 4 + "\n"
             + "\n".join(rows) + f"\n\nThree classes minus one class: chairs {gain_chair:+.1f}, cars + airplanes "
             f"{gain_other:+.1f}.\n")
    with atomic_path(out / "table.md") as tmp:
        Path(tmp).write_text(table)
    written.append(out / "table.md")
    # one test image per class, predicted by both models
    strips = []
    models = {n: r["eval"]["chair"]["model"] for n, r in results.items()}
    for test in ("chair", "car", "airplane"):
        ds_of = {n: r["eval"][test]["dataset"] for n, r in results.items()}
        ds0 = ds_of["one_class"]
        if len(ds0) == 0:
            continue
        sample = ds0[0]
        preds = {}
        for n, model in models.items():
            pred = eval_model.predict(model, to_device(collate([ds_of[n][0]]), device))
            preds[n] = (pred.verts_list()[0].cpu(), pred.faces_list()[0].cpu()) if model.kind == "mesh" else pred[0].cpu()
        gt_kind = args.type
        gt = gt_as_kind(gt_kind, sample, n_points=args.num_points, generator=torch.Generator().manual_seed(args.seed))
        dist = frame_distance(*(kind_points(args.type, p) for p in preds.values()), kind_points(gt_kind, gt))
        kw = dict(num_frames=args.num_frames, image_size=args.image_size, azim=view_azimuth(sample["R"], sample["T"]),
                  dist=dist)
        panels = [titled(still(ds0.image(0), args.num_frames, args.image_size), f"input: {'an' if test[0] in 'aeiou' else 'a'} {test}")]
        panels += [titled(render_kind(args.type, p, **kw), n.replace("_", " ")) for n, p in preds.items()]
        panels.append(titled(render_gt_kind(gt_kind, gt, **kw), "ground truth"))
        strips.append(torch.cat(panels, dim=2))
    if strips:
        written.extend(save_gif_with_png(out / "examples.gif", torch.cat(strips, dim=1), fps=gif_fps(args.num_frames),
                                         which="first"))
    metrics = {n: {f"f1@0.05_{c}": v for c, v in f1[n].items()} for n in results}
    metrics.update({
        "test_images": n_img, "gain_cars_airplanes@0.05": gain_other, "gain_chairs@0.05": gain_chair,
        "init_from": args.init_from, "classes_of_three_class_run": list(CLASS_SETS["3c"]),
        "data": results["one_class"]["eval"]["chair"]["data"],
        "checks": {"three_class_gain_on_cars_airplanes": check(
            gain_other, min=MIN_OTHER_CLASS_GAIN,
            what=f"F1@0.05 on the {n_img['car'] + n_img['airplane']} car and airplane test images: three-class model "
                 f"({others('three_class', 0.05):.1f}) minus chair-only model ({others('one_class', 0.05):.1f})")},
    })
    report(out, metrics, written)
    print(table)
    return metrics


if __name__ == "__main__":
    run_cli(main)
