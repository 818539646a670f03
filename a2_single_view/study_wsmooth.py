"""Q2.5: hyper-parameter study -- the weight of the Laplacian smoothing loss of the mesh decoder.

    python -m a2_single_view.study_wsmooth [--w_smooth 0.001 0.01 0.1 1 10] [--steps 10000] [--load_feat]
        [--views_per_model 1]

Trains one mesh model per weight (train_model --type mesh --w_smooth w, otherwise the same
settings: train_model's defaults, or its --quick ones), evaluates each on the test split
(eval_model; --views_per_model 0: every view of every test model), and measures on the test
predictions what the weight is for: the uniform Laplacian smoothness of the predicted meshes
(mean over the test images of each mesh's mean |mean of the neighbours - vertex|). With
``--init_from`` a trained mesh checkpoint, every run starts from that model: a fine-tuning sweep
(what the demo does, 50 steps per weight).

Writes to --output_dir (default output/a2_single_view/study_wsmooth): table.md (F1@0.05, test
smoothness, final training chamfer and smoothness losses per weight), f1_curves.png (F1 against
the threshold, one line per weight), examples.gif/.png (the same test images: input | one mesh
per weight | ground truth) and metrics.json; each run's own outputs are in w_<weight>/ below it.
The check: the test meshes of the largest weight are at least twice as smooth as those of the
smallest (smoothness ratio <= 0.5). --quick: the weights 0.1 and 10. The folder is locked while
the study runs and the previous study's results stay until this one has finished; --resume
continues every run from its checkpoints.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import torch

from l3d.checks import check
from l3d.cli import nonneg_float, nonneg_int, report, run_cli, script_parser
from l3d.errors import user_error
from l3d.media import save_gif_with_png
from l3d.run import RunDir, atomic_path
from l3d.train import choose_device

from . import eval_model, train_model
from .common import (add_data_flags, frame_distance, gif_fps, render_gt, render_kind, still, titled, to_device,
                     view_azimuth)
from .data import collate
from .evaluate import THRESHOLDS
from .losses import smoothness_loss

MAX_SMOOTHNESS_RATIO = 0.5
QUICK = {"w_smooth": [0.1, 10.0], "vis_count": 2, "num_frames": 24, "image_size": 96, "data_preset": "quick"}


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


def stop_if_interrupted(train_metrics: dict, what: str) -> None:
    """End the study (exit status 130) when one of its training runs was stopped by Ctrl-C or
    SIGTERM: its checkpoint is saved, and evaluating a half-trained model would fill the table
    with a wrong number."""
    if train_metrics.get("interrupted"):
        print(f"{what} interrupted; --resume continues the study", file=sys.stderr, flush=True)
        raise KeyboardInterrupt


DATA_KEYS = ("data", "data_path", "split_file", "data_preset", "classes", "data_seed", "device", "seed", "quick")


@torch.no_grad()
def test_smoothness(model, ds, device, batch_size: int = 16) -> float:
    """Mean uniform-Laplacian smoothness of the model's meshes over the data set's images."""
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate)
    total, n = 0.0, 0
    for batch in loader:
        meshes = eval_model.predict(model, to_device(batch, device))
        total += float(smoothness_loss(meshes)) * len(meshes)
        n += len(meshes)
    return total / max(n, 1)


def main(argv=None):
    ap = script_parser(__doc__, "a2_single_view/study_wsmooth", presets={"quick": QUICK})
    ap.add_argument("--w_smooth", type=nonneg_float, nargs="+", default=[0.001, 0.01, 0.1, 1.0, 10.0],
                    help="weights to try (--quick 0.1 10)")
    ap.add_flag("steps", default=None, help="training steps of each model (default: train_model's)")
    ap.add_flag("batch_size", default=None, help="images per step (default: train_model's)")
    ap.add_flag("lr", default=None, help="Adam learning rate (default: train_model's)")
    ap.add_flag("resume", help="continue every run of the study from its newest intact checkpoint")
    ap.add_flag("save_every", default=None, help="steps between each run's checkpoints (default: train_model's)")
    ap.add_argument("--views_per_model", type=nonneg_int, default=1,
                    help="test views of each held-out model in the evaluation (0: all listed)")
    ap.add_argument("--load_feat", action="store_true", help="train on precomputed ResNet-18 features")
    ap.add_argument("--init_from", default=None,
                    help="start every run's decoder from this checkpoint (train_model --init_from): a trained mesh "
                         "model makes the sweep a fine-tuning study, the point decoder gives every run its trunk")
    ap.add_argument("--vis_count", type=nonneg_int, default=3, help="test images shown in examples.gif (--quick 2)")
    ap.add_flag("num_frames", default=36, help="frames of examples.gif, one turn (--quick 24)")
    ap.add_flag("image_size", default=128, help="panel size of examples.gif (--quick 96)")
    add_data_flags(ap)
    args = ap.parse_args(argv)
    if len(set(args.w_smooth)) < 2:
        raise user_error("--w_smooth", "at least two different weights to compare", " ".join(map(str, args.w_smooth)))
    with RunDir(args.output_dir, fresh=not args.resume) as run:  # locked; the old study stays until this one ends
        return study(args, run)


def study(args, run: RunDir) -> dict:
    out = run.path()
    common = pass_through(args, DATA_KEYS)
    device = choose_device(args.device)
    rows, curves, models, per_w = [], {}, {}, {}
    ds = None
    train_flags = pass_through(args, ("steps", "batch_size", "lr", "save_every", "load_feat", "init_from", "resume"))
    for w in args.w_smooth:
        run = out / f"w_{w:g}"
        tm = train_model.main(["--type", "mesh", "--w_smooth", str(w), "--output_dir", str(run / "train"),
                               "--no-baseline", *train_flags, *common])
        stop_if_interrupted(tm, f"training of w_smooth={w:g}")
        em = eval_model.run(["--type", "mesh", "--load_checkpoint", tm["checkpoint"], "--output_dir", str(run / "eval"),
                              "--vis_count", "0", "--baseline_checkpoint", "none",
                              "--views_per_model", str(args.views_per_model), *common])
        ds = em["dataset"]
        smooth = test_smoothness(em["model"], ds, device)
        curves[f"w_smooth={w:g}"] = [em[f"f1@{t:.2f}"] for t in THRESHOLDS]
        per_w[f"{w:g}"] = {"f1@0.05": em["f1@0.05"], "test_smoothness": smooth,
                          "final_chamfer": tm.get("final_chamfer"), "final_smooth": tm.get("final_smooth")}
        rows.append(f"| {w:g} | {em['f1@0.05']:.1f} | {smooth:.4f} | {tm.get('final_chamfer', float('nan')):.5f} | "
                    f"{tm.get('final_smooth', float('nan')):.4f} |")
        models[w] = em["model"]
    written = [eval_model.plot_f1_curves(curves, out / "f1_curves.png",
                                         f"mesh: F1 on {len(ds)} test images per w_smooth")]
    w_lo, w_hi = min(args.w_smooth), max(args.w_smooth)
    s_lo, s_hi = per_w[f"{w_lo:g}"]["test_smoothness"], per_w[f"{w_hi:g}"]["test_smoothness"]
    ratio = s_hi / max(s_lo, 1e-12)
    table = ("# Mesh decoder: smoothness weight\n\n"
             "| w_smooth | F1@0.05 (test) | Laplacian smoothness (test meshes) | final chamfer (train) | "
             "final smoothness (train) |\n|---|---|---|---|---|\n" + "\n".join(rows) +
             f"\n\nSmoothness of the test meshes at w_smooth={w_hi:g} over w_smooth={w_lo:g}: {ratio:.3f} "
             f"({len(ds)} test images; lower is smoother).\n")
    with atomic_path(out / "table.md") as tmp:
        Path(tmp).write_text(table)
    written.append(out / "table.md")
    # the same test images reconstructed with every weight
    strips = []
    n = min(args.vis_count, len(ds))
    for k in range(n):
        idx = int(k * len(ds) / max(n, 1))
        sample = ds[idx]
        batch = to_device(collate([sample]), device)
        preds = {}
        for w, model in models.items():
            m = eval_model.predict(model, batch)
            preds[w] = (m.verts_list()[0].cpu(), m.faces_list()[0].cpu())
        # one camera distance for the whole row, so that the meshes compare at the same scale
        dist = frame_distance(sample["verts"], *(v for v, _ in preds.values()))
        kw = dict(num_frames=args.num_frames, image_size=args.image_size, azim=view_azimuth(sample["R"], sample["T"]),
                  dist=dist)
        panels = [titled(still(ds.image(idx), args.num_frames, args.image_size), "input image")]
        panels += [titled(render_kind("mesh", p, **kw), f"w_smooth={w:g}") for w, p in preds.items()]
        panels.append(titled(render_gt(sample["verts"], sample["faces"], **kw), "ground truth"))
        strips.append(torch.cat(panels, dim=2))
    if strips:
        written.extend(save_gif_with_png(out / "examples.gif", torch.cat(strips, dim=1), fps=gif_fps(args.num_frames),
                                         which="first"))
    metrics = {
        "f1@0.05_by_w_smooth": {k: v["f1@0.05"] for k, v in per_w.items()},
        "test_smoothness_by_w_smooth": {k: v["test_smoothness"] for k, v in per_w.items()},
        "runs": per_w, "data": em["data"],
        "checks": {"smoothness_ratio": check(
            ratio, max=MAX_SMOOTHNESS_RATIO,
            what=f"Laplacian smoothness of the predicted test meshes at w_smooth={w_hi:g} divided by that at "
                 f"w_smooth={w_lo:g} (mean over {len(ds)} test images; heavier smoothing, smoother meshes)")},
    }
    report(out, metrics, written)
    print(table)
    return per_w


if __name__ == "__main__":
    run_cli(main)
