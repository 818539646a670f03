"""Q2.5: hyper-parameter study -- the weight of the Laplacian smoothing loss of the mesh decoder.

    python -m a2_single_view.study_wsmooth [--w_smooth 0.001 0.01 0.1 1 10] [--max_iter 10000] [--load_feat]

Trains one mesh model per weight (train_model --type mesh --w_smooth w, otherwise the same
settings), evaluates each on the test split (eval_model), and writes to --output_dir (default
output/a2_single_view/study_wsmooth): table.md (F1@0.05, final chamfer and smoothness losses per
weight), f1_curves.png (F1 against the threshold, one line per weight), examples.gif/.png (the
same test images: input | one mesh per weight | ground truth) and metrics.json; each run's own
outputs are in w_<weight>/ below it.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import torch

from l3d.cli import report, script_parser
from l3d.io import atomic_path, save_gif_with_png
from l3d.train import choose_device, run_cli

from . import eval_model, train_model
from .common import add_data_flags, labelled, render_gt, render_kind, still, to_device, view_azimuth
from .data import collate
from .evaluate import THRESHOLDS


def pass_through(args, keys) -> List[str]:
    """The flags of ``keys`` as an argv list (for the train/eval entry points)."""
    argv = []
    for k in keys:
        v = getattr(args, k)
        if isinstance(v, bool):
            argv += [f"--{k}"] if v else []
        elif v is not None:
            argv += [f"--{k}", str(v)]
    return argv


DATA_KEYS = ("data", "data_root", "split_file", "preset", "classes", "data_seed", "device", "seed", "quick")


def main(argv=None):
    ap = script_parser(__doc__, "a2_single_view/study_wsmooth")
    ap.add_argument("--w_smooth", type=float, nargs="+", default=[0.001, 0.01, 0.1, 1.0, 10.0], help="weights to try")
    ap.add_argument("--max_iter", type=int, default=10000, help="training steps of each model")
    ap.add_argument("--batch_size", type=int, default=32, help="images per step")
    ap.add_argument("--lr", type=float, default=4e-4, help="Adam learning rate")
    ap.add_argument("--load_feat", action="store_true", help="train on precomputed ResNet-18 features")
    ap.add_argument("--vis_count", type=int, default=3, help="test images shown in examples.gif")
    ap.add_argument("--num_frames", type=int, default=12, help="frames of examples.gif")
    ap.add_argument("--image_size", type=int, default=128, help="panel size of examples.gif")
    add_data_flags(ap)
    args = ap.parse_args(argv)
    if args.quick:
        args.vis_count, args.num_frames, args.image_size = min(args.vis_count, 1), min(args.num_frames, 3), 80
    out = Path(args.output_dir)
    common = pass_through(args, DATA_KEYS)
    rows, curves, models, per_w = [], {}, {}, {}
    ds = None
    for w in args.w_smooth:
        run = out / f"w_{w:g}"
        tm = train_model.main(["--type", "mesh", "--w_smooth", str(w), "--output_dir", str(run / "train"),
                               *pass_through(args, ("max_iter", "batch_size", "lr", "load_feat")), *common])
        em = eval_model.run(["--type", "mesh", "--load_checkpoint", tm["checkpoint"], "--output_dir", str(run / "eval"),
                              "--vis_count", "0", *common])
        curves[f"w_smooth={w:g}"] = [em[f"f1@{t:.2f}"] for t in THRESHOLDS]
        per_w[f"{w:g}"] = {"f1@0.05": em["f1@0.05"], "final_chamfer": tm.get("final_chamfer"),
                          "final_smooth": tm.get("final_smooth")}
        rows.append(f"| {w:g} | {em['f1@0.05']:.1f} | {tm.get('final_chamfer', float('nan')):.5f} | "
                    f"{tm.get('final_smooth', float('nan')):.4f} |")
        models[w] = em["model"]
        ds = em["dataset"]
    written = [eval_model.plot_f1_curves(curves, out / "f1_curves.png", "mesh: F1 vs threshold per w_smooth")]
    table = ("# Mesh decoder: smoothness weight\n\n| w_smooth | F1@0.05 | final chamfer (train) | final smoothness (train) |\n"
             "|---|---|---|---|\n" + "\n".join(rows) + "\n")
    with atomic_path(out / "table.md") as tmp:
        Path(tmp).write_text(table)
    written.append(out / "table.md")
    # the same test images reconstructed with every weight
    device = choose_device(args.device)
    strips = []
    n = min(args.vis_count, len(ds))
    for k in range(n):
        idx = int(k * len(ds) / max(n, 1))
        sample = ds[idx]
        batch = to_device(collate([sample]), device)
        kw = dict(num_frames=args.num_frames, image_size=args.image_size, azim=view_azimuth(sample["R"], sample["T"]))
        panels = [labelled(still(ds.image(idx), args.num_frames, args.image_size), "input")]
        for w, model in models.items():
            m = eval_model.predict(model, batch)
            panels.append(labelled(render_kind("mesh", (m.verts_list()[0], m.faces_list()[0]), **kw), f"w={w:g}"))
        panels.append(labelled(render_gt(sample["verts"], sample["faces"], **kw), "ground truth"))
        strips.append(torch.cat(panels, dim=2))
    if strips:
        written.extend(save_gif_with_png(out / "examples.gif", torch.cat(strips, dim=1), fps=6))
    report(out, {"f1@0.05_by_w_smooth": {k: v["f1@0.05"] for k, v in per_w.items()}, "runs": per_w}, written)
    print(table)
    return per_w


if __name__ == "__main__":
    run_cli(main)
