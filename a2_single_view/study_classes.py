"""Q3.3: train on chairs only vs on three classes (chair, car, airplane); compare on chairs.

    python -m a2_single_view.study_classes --type point [--max_iter 10000] [--load_feat]

Trains two models with the same settings and number of steps -- one on the chair training set,
one on the chair + car + airplane training set -- and evaluates both on the chair test split.
Writes to --output_dir (default output/a2_single_view/study_classes_<type>): table.md (F1 at
every threshold), f1_curves.png, examples.gif/.png (input | one-class | three-class | ground
truth) and metrics.json; the runs' own outputs are in one_class/ and three_class/.
"""

from __future__ import annotations

from pathlib import Path

import torch

from l3d.cli import report, script_parser
from l3d.io import atomic_path, save_gif_with_png
from l3d.train import choose_device, run_cli

from . import eval_model, train_model
from .common import add_data_flags, labelled, render_gt, render_kind, still, to_device, view_azimuth
from .data import collate
from .evaluate import THRESHOLDS
from .models import KINDS
from .study_wsmooth import pass_through

DATA_KEYS = ("data", "data_root", "split_file", "preset", "data_seed", "device", "seed", "quick")


def main(argv=None):
    ap = script_parser(__doc__, "a2_single_view/study_classes_<type>")
    ap.add_argument("--type", choices=KINDS, default="point", help="model type of both runs")
    ap.add_argument("--max_iter", type=int, default=10000, help="training steps of each model")
    ap.add_argument("--batch_size", type=int, default=32, help="images per step")
    ap.add_argument("--lr", type=float, default=4e-4, help="Adam learning rate")
    ap.add_argument("--n_points", type=int, default=1000, help="points (point decoder) / chamfer samples")
    ap.add_argument("--load_feat", action="store_true", help="train on precomputed ResNet-18 features")
    ap.add_argument("--vis_count", type=int, default=3, help="chair test images shown in examples.gif")
    ap.add_argument("--num_frames", type=int, default=12, help="frames of examples.gif")
    ap.add_argument("--image_size", type=int, default=128, help="panel size of examples.gif")
    add_data_flags(ap)
    args = ap.parse_args(argv)
    if args.output_dir == "output/a2_single_view/study_classes_<type>":
        args.output_dir = f"output/a2_single_view/study_classes_{args.type}"
    if args.quick:
        args.vis_count, args.num_frames, args.image_size = min(args.vis_count, 1), min(args.num_frames, 3), 80
    out = Path(args.output_dir)
    common = pass_through(args, DATA_KEYS)
    train_flags = pass_through(args, ("max_iter", "batch_size", "lr", "n_points", "load_feat"))
    results = {}
    for name, classes in (("one_class", "chair"), ("three_class", "3c")):
        tm = train_model.main(["--type", args.type, "--classes", classes, "--output_dir", str(out / name / "train"),
                               *train_flags, *common])
        em = eval_model.run(["--type", args.type, "--load_checkpoint", tm["checkpoint"], "--classes", "chair",
                             "--output_dir", str(out / name / "eval"), "--vis_count", "0", *common])
        results[name] = {"train": tm, "eval": em}
    curves = {f"{n} ({'chair' if n == 'one_class' else 'chair+car+airplane'})": [r["eval"][f"f1@{t:.2f}"] for t in THRESHOLDS]
              for n, r in results.items()}
    written = [eval_model.plot_f1_curves(curves, out / "f1_curves.png", f"{args.type} on chairs: one vs three classes")]
    head = "| training set | train images | " + " | ".join(f"F1@{t:.2f}" for t in THRESHOLDS) + " |"
    rows = [f"| {n} | {r['train']['train_images']} | " + " | ".join(f"{r['eval'][f'f1@{t:.2f}']:.1f}" for t in THRESHOLDS) + " |"
            for n, r in results.items()]
    table = (f"# {args.type}: chairs only vs three classes, evaluated on the chair test split "
             f"({results['one_class']['eval']['examples']} images)\n\n{head}\n|" + "---|" * (len(THRESHOLDS) + 2) + "\n"
             + "\n".join(rows) + "\n")
    with atomic_path(out / "table.md") as tmp:
        Path(tmp).write_text(table)
    written.append(out / "table.md")
    device = choose_device(args.device)
    ds = results["one_class"]["eval"]["dataset"]
    strips = []
    n = min(args.vis_count, len(ds))
    for k in range(n):
        idx = int(k * len(ds) / max(n, 1))
        sample = ds[idx]
        kw = dict(num_frames=args.num_frames, image_size=args.image_size, azim=view_azimuth(sample["R"], sample["T"]))
        panels = [labelled(still(ds.image(idx), args.num_frames, args.image_size), "input")]
        for name, r in results.items():
            model = r["eval"]["model"]
            # each run's evaluation data set reads its own inputs (images or features)
            batch = to_device(collate([r["eval"]["dataset"][idx]]), device)
            pred = eval_model.predict(model, batch)
            p = (pred.verts_list()[0], pred.faces_list()[0]) if model.kind == "mesh" else pred[0]
            panels.append(labelled(render_kind(model.kind, p, **kw), name.replace("_", " ")))
        panels.append(labelled(render_gt(sample["verts"], sample["faces"], **kw), "ground truth"))
        strips.append(torch.cat(panels, dim=2))
    if strips:
        written.extend(save_gif_with_png(out / "examples.gif", torch.cat(strips, dim=1), fps=6))
    metrics = {n: {f"f1@{t:.2f}": r["eval"][f"f1@{t:.2f}"] for t in THRESHOLDS} for n, r in results.items()}
    metrics["train_images"] = {n: r["train"]["train_images"] for n, r in results.items()}
    report(out, metrics, written)
    print(table)
    return metrics


if __name__ == "__main__":
    run_cli(main)
