"""Q2.6: interpreting a trained model -- per-point errors and a gallery of failure cases.

    python -m a2_single_view.interpret --type point [--load_checkpoint PATH] [--count 3] [--n_failures 6]

1. Per-point error: for --count test images, points of the prediction (the predicted points;
   points sampled on a predicted mesh or voxel/implicit surface) coloured by their distance to
   the nearest point of the ground truth (5000 samples): blue = 0, red >= --vmax (colormap
   'jet'). error_<k>.gif (+ .png): input | coloured prediction | ground truth, turning.
2. Failure cases: the whole test split is scored (F1@0.05); failures.png shows the
   --n_failures lowest-scoring images (input | prediction | ground truth, with their F1) and,
   for contrast, the best one.
Writes to --output_dir (default output/a2_single_view/interpret_<type>) with metrics.json (mean
error of the coloured examples, the failures' ids and F1).
"""

from __future__ import annotations

from pathlib import Path

import torch

from l3d.cli import report, script_parser
from l3d.io import label_image, save_gif_with_png, save_image
from l3d.ops import sample_points_from_meshes
from l3d.train import choose_device, run_cli

from .common import (add_data_flags, error_colours, gt_meshes, grid_image, labelled, render_gt, render_kind, still,
                     to_device, view_azimuth)
from .data import collate
from .eval_model import default_checkpoint, eval_dataset, load_model, predict, run_eval
from .evaluate import grid_points, point_error
from .models import KINDS


def prediction_points(kind: str, pred, n_points: int, generator=None) -> torch.Tensor:
    """(B, P, 3) points of a prediction in the frame it is scored in (vox/implicit: centred)."""
    if kind == "point":
        return pred
    if kind == "mesh":
        return sample_points_from_meshes(pred, n_points, generator=generator)
    pts, _ = grid_points(pred, n_points, generator=generator)
    return pts - pts.mean(1, keepdim=True)


def main(argv=None):
    ap = script_parser(__doc__, "a2_single_view/interpret_<type>")
    ap.add_argument("--type", choices=KINDS, default="point", help="model type (must match the checkpoint)")
    ap.add_argument("--load_checkpoint", default=None,
                    help="checkpoint (default: output/a2_single_view/train_<type>/checkpoints/last.pt)")
    ap.add_argument("--count", type=int, default=3, help="test images with per-point error colouring")
    ap.add_argument("--n_failures", type=int, default=6, help="lowest-F1 test images in the gallery")
    ap.add_argument("--vmax", type=float, default=0.1, help="distance shown in full red")
    ap.add_argument("--n_points", type=int, default=1000, help="points per prediction and ground truth when scoring")
    ap.add_argument("--num_frames", type=int, default=24, help="frames of the error GIFs")
    ap.add_argument("--image_size", type=int, default=160, help="panel size")
    add_data_flags(ap)
    args = ap.parse_args(argv)
    if args.output_dir == "output/a2_single_view/interpret_<type>":
        args.output_dir = f"output/a2_single_view/interpret_{args.type}"
    if args.quick:
        args.count, args.n_failures = min(args.count, 1), min(args.n_failures, 2)
        args.num_frames, args.image_size, args.n_points = min(args.num_frames, 3), min(args.image_size, 96), 300
    device = choose_device(args.device)
    ckpt = args.load_checkpoint or default_checkpoint(args.type)
    if not Path(ckpt).is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt} (train first: python -m a2_single_view.train_model "
                                f"--type {args.type})")
    model, cfg = load_model(ckpt, device, args.type)
    ds, _ = eval_dataset(model, cfg, args, device, "test", 1)
    out = Path(args.output_dir)
    written, errors = [], []
    gen = torch.Generator(device=device).manual_seed(args.seed)
    # 1. per-point errors
    n = min(args.count, len(ds))
    for k in range(n):
        idx = int(k * len(ds) / max(n, 1))
        sample = ds[idx]
        batch = to_device(collate([sample]), device)
        with torch.no_grad():
            pred = predict(model, batch)
            pts = prediction_points(model.kind, pred, args.n_points, gen)  # (1, P, 3)
            gt = sample_points_from_meshes(gt_meshes(batch), 5000, generator=gen)
            # vox / implicit are scored with both point sets centred: show them that way
            centre = gt.mean(1, keepdim=True) if model.kind in ("vox", "implicit") else torch.zeros_like(gt[:, :1])
            gt = gt - centre
            d = point_error(pts, gt)[0]  # (P,)
        errors.append(float(d.mean()))
        kw = dict(num_frames=args.num_frames, image_size=args.image_size, azim=view_azimuth(sample["R"], sample["T"]))
        coloured = render_kind("point", pts[0], colors=error_colours(d, args.vmax), **kw)
        gt_frames = render_gt(sample["verts"] - centre[0, 0].cpu(), sample["faces"], **kw)
        frames = torch.cat([labelled(still(ds.image(idx), args.num_frames, args.image_size), "input"),
                            labelled(coloured, f"error (red >= {args.vmax:g})"), labelled(gt_frames, "ground truth")], 2)
        written.extend(save_gif_with_png(out / f"error_{k}.gif", frames, fps=8))
    # 2. failure cases
    res = run_eval(model, ds, device, args.n_points, 16, args.seed)
    f1 = res["f1"][:, -1]  # (N,) F1@0.05
    order = torch.argsort(f1)
    picks = [(int(i), "failure") for i in order[: min(args.n_failures, len(ds))]] + [(int(order[-1]), "best")]
    tiles = []
    s = args.image_size
    for idx, what in picks:
        sample = ds[idx]
        batch = to_device(collate([sample]), device)
        kw = dict(num_frames=1, image_size=s, azim=view_azimuth(sample["R"], sample["T"]))
        with torch.no_grad():
            pred = predict(model, batch)
        p = (pred.verts_list()[0], pred.faces_list()[0]) if model.kind == "mesh" else pred[0]
        row = [still(ds.image(idx), 1, s)[0], render_kind(model.kind, p, **kw)[0], render_gt(sample["verts"], sample["faces"], **kw)[0]]
        row[0] = label_image(row[0], f"{what}: F1 {float(f1[idx]):.1f}", (3, 2), (200, 0, 0) if what == "failure" else (0, 120, 0))
        tiles.extend(row)
    written.append(save_image(out / "failures.png", grid_image(tiles, 3)))
    ds_models = [ds.models[ds.items[i][0]] for i, _ in picks]
    metrics = {
        "type": model.kind, "checkpoint": str(ckpt), "mean_point_error": sum(errors) / max(len(errors), 1),
        "test_f1@0.05": float(f1.mean()),
        "failures": [{"model_id": m.model_id, "class": m.cls, "view": ds.items[i][1], "f1@0.05": float(f1[i])}
                     for (i, what), m in zip(picks, ds_models) if what == "failure"],
        "best": {"model_id": ds_models[-1].model_id, "f1@0.05": float(f1[picks[-1][0]])},
    }
    report(out, metrics, written)
    return metrics


if __name__ == "__main__":
    run_cli(main)
