"""Q2.6: interpreting a trained model -- per-point errors and a gallery of failure cases.

    python -m a2_single_view.interpret --type point [--load_checkpoint PATH] [--count 3] [--n_failures 6]

1. Per-point error: for --count test images, points of the prediction (the predicted points;
   points sampled on a predicted mesh or voxel/implicit surface) coloured by their distance to
   the nearest point of the ground truth (5000 samples): blue = 0, red >= --vmax (colormap
   'jet'). error_<k>.gif (+ .png): input | coloured prediction | ground-truth points, turning.
2. Failure cases: the whole test split is scored (F1@0.05); failures.png shows the
   --n_failures lowest-scoring images (input | prediction | ground truth, with their F1 in a
   strip above each row) and, for contrast, the best one.
3. What the errors say: over every test image, the mean per-point error against the F1@0.05 of
   the image (rank correlation: the error maps explain the scores), and where on the shapes the
   errors are: the rank correlation of each point's error with its height (chair legs and back
   tops against the seat) and with its distance from the shape's centre.
Writes to --output_dir (default output/a2_single_view/interpret_<type>) with metrics.json (the
correlations, the mean error of every test image, the failures' ids and F1) and its check: the
mean per-point error of an image and its F1@0.05 are anti-correlated (Spearman <= -0.5).
"""

from __future__ import annotations

from pathlib import Path

import torch

from l3d.checks import check
from l3d.cli import nonneg_int, positive_float, positive_int, report, run_cli, script_parser
from l3d.errors import user_error
from l3d.media import save_gif_with_png, save_image
from l3d.ops import sample_points_from_meshes
from l3d.train import choose_device

from .common import (add_data_flags, comparison, data_text, error_colours, gif_fps, gt_as_kind, gt_meshes, text_strip,
                     titled, to_device, view_azimuth)
from .data import collate
from .eval_model import default_checkpoint, eval_dataset, load_model, predict, run_eval
from .evaluate import grid_points, point_error
from .models import KINDS

MAX_ERROR_F1_CORRELATION = -0.5
QUICK = {"num_frames": 24, "image_size": 128, "count": 2, "n_failures": 4, "data_preset": "quick"}


def prediction_points(kind: str, pred, n_points: int, generator=None) -> torch.Tensor:
    """(B, P, 3) points of a prediction in the frame it is scored in (vox/implicit: centred)."""
    if kind == "point":
        return pred
    if kind == "mesh":
        return sample_points_from_meshes(pred, n_points, generator=generator)
    pts, _ = grid_points(pred, n_points, generator=generator)
    return pts - pts.mean(1, keepdim=True)


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two (N,) tensors (ties broken by order; N >= 2)."""
    ra = torch.argsort(torch.argsort(a.double())).double()
    rb = torch.argsort(torch.argsort(b.double())).double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp(min=1e-12))


@torch.no_grad()
def point_errors(model, ds, device, n_points: int, seed: int, batch_size: int = 16):
    """Per test image: the prediction's points (frame of scoring), their errors, the ground-truth
    points and the centre used (vox/implicit: both centred). Lists of (P, 3), (P,), (G, 3), (3,)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate)
    pts_l, err_l, gt_l, ctr_l = [], [], [], []
    for batch in loader:
        batch = to_device(batch, device)
        pred = predict(model, batch)
        pts = prediction_points(model.kind, pred, n_points, gen)  # (B, P, 3)
        gt = sample_points_from_meshes(gt_meshes(batch), 5000, generator=gen)
        # vox / implicit are scored with both point sets centred: show them that way
        centre = gt.mean(1, keepdim=True) if model.kind in ("vox", "implicit") else torch.zeros_like(gt[:, :1])
        gt = gt - centre
        err = point_error(pts, gt)  # (B, P)
        pts_l.extend(pts.cpu())
        err_l.extend(err.cpu())
        gt_l.extend(gt.cpu())
        ctr_l.extend(centre[:, 0].cpu())
    return pts_l, err_l, gt_l, ctr_l


def main(argv=None):
    ap = script_parser(__doc__, "a2_single_view/interpret_<type>", presets={"quick": QUICK})
    ap.add_argument("--type", choices=KINDS, default="point", help="model type (must match the checkpoint)")
    ap.add_flag("load_checkpoint", nargs="?", const=True,
                help="checkpoint (default, or given alone: output/a2_single_view/train_<type>/checkpoints/last.pt)")
    ap.add_argument("--count", type=nonneg_int, default=3, help="test images with per-point error colouring (--quick 2)")
    ap.add_argument("--n_failures", type=positive_int, default=6,
                    help="lowest-F1 test images in the gallery (--quick 4)")
    ap.add_argument("--vmax", type=positive_float, default=0.1, help="distance shown in full red")
    ap.add_flag("num_points", default=1000, help="points per prediction and ground truth when scoring")
    ap.add_flag("num_frames", default=36, help="frames of the error GIFs, one turn (--quick 24)")
    ap.add_flag("image_size", default=160, help="panel size (--quick 128)")
    add_data_flags(ap)
    args = ap.parse_args(argv)
    if args.output_dir == "output/a2_single_view/interpret_<type>":
        args.output_dir = f"output/a2_single_view/interpret_{args.type}"
    device = choose_device(args.device)
    ckpt = args.load_checkpoint if isinstance(args.load_checkpoint, str) else default_checkpoint(args.type)
    if not Path(ckpt).is_file():
        raise user_error("--load_checkpoint", "a checkpoint file", f"no file {ckpt}",
                         f"train first: python -m a2_single_view.train_model --type {args.type}")
    args.load_checkpoint = str(ckpt)
    model, cfg = load_model(ckpt, device, args.type)
    ds, choice = eval_dataset(model, cfg, args, device, "test", 1, return_voxels=args.type in ("vox", "implicit"))
    if len(ds) < 3:
        raise user_error(choice.split_file, "at least 3 test images of --classes " + args.classes, len(ds))
    out = Path(args.output_dir)
    written = []
    pts_l, err_l, gt_l, ctr_l = point_errors(model, ds, device, args.num_points, args.seed)
    res = run_eval(model, ds, device, args.num_points, 16, args.seed)
    f1 = res["f1"][:, -1]  # (N,) F1@0.05
    mean_err = torch.stack([e.mean() if e.numel() else torch.tensor(float("nan")) for e in err_l])  # (N,)
    ok = torch.isfinite(mean_err)
    rho_f1 = spearman(mean_err[ok], f1[ok])
    # where the errors are: every point of every prediction, its error against its height and its
    # distance from the centre of its prediction
    allp = torch.cat([p for p, e in zip(pts_l, err_l) if e.numel()])
    alle = torch.cat([e for e in err_l if e.numel()])
    cen = torch.cat([p - p.mean(0) for p, e in zip(pts_l, err_l) if e.numel()])
    rho_height = spearman(alle, allp[:, 1])
    rho_radius = spearman(alle, cen.norm(dim=-1))
    # 1. per-point errors of a few test images
    n = min(args.count, len(ds))
    for k in range(n):
        idx = int(k * len(ds) / max(n, 1))
        sample = ds[idx]
        frames = comparison("point", pts_l[idx], gt_l[idx][: args.num_points], ds.image(idx), num_frames=args.num_frames,
                            image_size=args.image_size, azim=view_azimuth(sample["R"], sample["T"]),
                            pred_title=f"error: blue 0, red {args.vmax:g}", gt_title="ground truth points",
                            colors=error_colours(err_l[idx], args.vmax))
        written.extend(save_gif_with_png(out / f"error_{k}.gif", frames, fps=gif_fps(args.num_frames), which="first"))
    # 2. failure cases: the lowest F1 first, the best last
    order = torch.argsort(f1)
    picks = [(int(i), "failure") for i in order[: min(args.n_failures, len(ds) - 1)]] + [(int(order[-1]), "best")]
    s = args.image_size
    rows = []
    header = torch.cat([text_strip(s, t, 18) for t in ("input image", f"{model.kind} prediction", "ground truth")], 1)
    rows.append(header)
    for rank, (idx, what) in enumerate(picks):
        sample = ds[idx]
        batch = to_device(collate([sample]), device)
        with torch.no_grad():
            pred = predict(model, batch)
        p = (pred.verts_list()[0].cpu(), pred.faces_list()[0].cpu()) if model.kind == "mesh" else pred[0].cpu()
        gt = gt_as_kind(model.kind, sample, n_points=args.num_points, generator=torch.Generator().manual_seed(args.seed))
        row = comparison(model.kind, p, gt, ds.image(idx), num_frames=1, image_size=s,
                         azim=view_azimuth(sample["R"], sample["T"]), pred_title="", gt_title="")[0, 16:]
        m = ds.models[ds.items[idx][0]]
        label = (f"failure {rank + 1}: F1@0.05={float(f1[idx]):.1f}, mean error={float(mean_err[idx]):.3f}"
                 if what == "failure" else f"best: F1@0.05={float(f1[idx]):.1f}, mean error={float(mean_err[idx]):.3f}")
        colour = (190, 0, 0) if what == "failure" else (0, 120, 0)
        rows.append(titled(row[None], f"{label} ({m.cls})", color=colour, height=18)[0])
    written.append(save_image(out / "failures.png", torch.cat(rows, 0)))
    metrics = {
        "type": model.kind, "checkpoint": str(ckpt), "examples": len(ds), "test_f1@0.05": float(f1.mean()),
        "mean_point_error": float(mean_err[ok].mean()),
        "spearman_error_vs_f1": rho_f1, "spearman_point_error_vs_height": rho_height,
        "spearman_point_error_vs_distance_from_centre": rho_radius,
        "per_example": [{"model_id": ds.models[i].model_id, "mean_error": float(mean_err[n_]), "f1@0.05": float(f1[n_])}
                        for n_, (i, _) in enumerate(ds.items)],
        "failures": [{"model_id": ds.models[ds.items[i][0]].model_id, "class": ds.models[ds.items[i][0]].cls,
                      "view": ds.items[i][1], "f1@0.05": float(f1[i])} for i, what in picks if what == "failure"],
        "best": {"model_id": ds.models[ds.items[picks[-1][0]][0]].model_id, "f1@0.05": float(f1[picks[-1][0]])},
        "data": data_text(choice),
        "checks": {"error_explains_f1": check(
            rho_f1, max=MAX_ERROR_F1_CORRELATION,
            what=f"Spearman correlation, over the {int(ok.sum())} test images, of the mean per-point error of the "
                 "coloured predictions and the image's F1@0.05 (large errors where the score is low)")},
    }
    report(out, metrics, written)
    return metrics


if __name__ == "__main__":
    run_cli(main)
