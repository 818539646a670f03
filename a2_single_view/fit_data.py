"""Q1: fit a voxel grid, a point cloud or a mesh directly to one target shape by gradient descent.

    python -m a2_single_view.fit_data --type vox|point|mesh [--max_iter 10000]

Target: the first training sample. Adam optimises
  vox   -- a random 32^3 grid of logits, loss = BCE against the target voxels;
  point -- randn(1, n_points, 3) points, loss = chamfer to n_points sampled once on the target mesh;
  mesh  -- per-vertex offsets of ico_sphere(4), loss = w_chamfer * chamfer (n_points sampled
           on both meshes every step) + w_smooth * uniform Laplacian smoothing.
The defaults are the course's (lr 4e-4, 5000 points, 10000 steps, constant learning rate).
--quick fits in a few hundred steps instead: a larger learning rate (vox 0.1, point 0.05, mesh
0.02) that decays to zero along a cosine, 1000 points (point) / 2000 points per mesh (mesh).

Writes to --output_dir (default output/a2_single_view/fit_<type>): fit_<type>.gif (+ .png):
the optimised shape beside the ground truth in the same representation (the target voxels,
the target points, the target mesh), turning from the input view; loss_<type>.png and
losses.csv; metrics.json with the final loss, the chamfer distance to the target (point: to
the target points; mesh: 10000 points sampled on each mesh) or the voxel IoU at 0.5 (vox), and
its check (vox IoU >= 0.9, point chamfer <= 1e-3, mesh chamfer <= 5e-3).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from l3d.checks import check
from l3d.cli import report, run_cli, script_parser
from l3d.media import save_gif_with_png
from l3d.ops import ico_sphere, sample_points_from_meshes
from l3d.structures import Meshes
from l3d.run import LossLog, check_finite
from l3d.train import choose_device, graceful_interrupt, progress, seed_everything

from .common import add_data_flags, comparison, data_text, gif_fps, resolve_data, view_azimuth
from .data import R2N2
from .losses import chamfer_loss, smoothness_loss, voxel_loss

# --quick: steps, learning rate and points of each type (cosine decay to zero)
QUICK = {"vox": {"max_iter": 150, "lr": 0.1, "n_points": 1000},
         "point": {"max_iter": 300, "lr": 0.05, "n_points": 1000},
         "mesh": {"max_iter": 300, "lr": 0.02, "n_points": 2000}}
# what each fit must reach (the thresholds)
THRESHOLDS = {"vox": ("iou", "min", 0.9, "voxel IoU at 0.5 of the fitted grid and the target"),
              "point": ("chamfer", "max", 1e-3, "chamfer distance (squared, both ways) of the fitted points "
                                                "and the target points"),
              "mesh": ("chamfer", "max", 5e-3, "chamfer distance (squared, both ways) of 10000 points on the "
                                               "fitted mesh and on the target mesh")}


def voxel_iou(pred_prob: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> float:
    """Intersection over union of ``pred_prob > threshold`` and ``target > 0.5`` (any equal shapes)."""
    p, t = pred_prob > threshold, target > 0.5
    union = (p | t).sum()
    return float((p & t).sum()) / max(float(union), 1.0)


def fit_check(kind: str, metrics: dict) -> dict:
    key, side, limit, what = THRESHOLDS[kind]
    return {key: check(metrics[key], **{side: limit}, what=what)}


def main(argv=None):
    ap = script_parser(__doc__, "a2_single_view/fit_<type>")
    ap.add_argument("--type", choices=["vox", "point", "mesh"], default="vox", help="what to fit")
    ap.add_argument("--max_iter", type=int, default=None, help="optimisation steps (default 10000; --quick: 150-300)")
    ap.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 4e-4; --quick: per type)")
    ap.add_argument("--schedule", choices=["constant", "cosine"], default=None,
                    help="learning rate schedule (default constant; --quick: cosine decay to zero)")
    ap.add_argument("--n_points", type=int, default=None,
                    help="points of the cloud / sampled per mesh (default 5000; --quick: 1000, mesh 2000)")
    ap.add_argument("--w_chamfer", type=float, default=1.0, help="weight of the chamfer loss (mesh)")
    ap.add_argument("--w_smooth", type=float, default=0.1, help="weight of the Laplacian smoothing loss (mesh)")
    ap.add_argument("--log_freq", type=int, default=None, help="loss log row every this many steps (default 50; --quick 5)")
    ap.add_argument("--num_frames", type=int, default=None, help="frames of the GIF, one full turn (default 36; --quick 24)")
    ap.add_argument("--image_size", type=int, default=None, help="size of each panel of the GIF (default 192; --quick 128)")
    add_data_flags(ap)
    args = ap.parse_args(argv)
    if args.output_dir == "output/a2_single_view/fit_<type>":
        args.output_dir = f"output/a2_single_view/fit_{args.type}"
    q = QUICK[args.type] if args.quick else {}
    defaults = {"max_iter": q.get("max_iter", 10000), "lr": q.get("lr", 4e-4), "n_points": q.get("n_points", 5000),
                "schedule": "cosine" if args.quick else "constant", "log_freq": 5 if args.quick else 50,
                "num_frames": 24 if args.quick else 36, "image_size": 128 if args.quick else 192}
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.max_iter < 1 or args.n_points < 1 or args.log_freq < 1 or args.num_frames < 1:
        raise ValueError("--max_iter, --n_points, --log_freq and --num_frames must be at least 1")
    if args.lr <= 0:
        raise ValueError(f"--lr must be positive, got {args.lr}")
    device = choose_device(args.device)
    seed_everything(args.seed)
    choice = resolve_data(args)
    ds = R2N2(choice.root, choice.split_file, "train", args.class_names, return_voxels=args.type == "vox",
              inputs="none")
    sample = ds[0]
    verts, faces = sample["verts"].to(device), sample["faces"].to(device)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    gt_mesh = Meshes([verts], [faces])
    if args.type == "vox":
        target = sample["voxels"][None].to(device)  # (1, 1, 32, 32, 32)
        param = torch.rand(target.shape, generator=gen, device=device).requires_grad_(True)  # logits
    elif args.type == "point":
        target = sample_points_from_meshes(gt_mesh, args.n_points, generator=gen)  # (1, n, 3)
        param = torch.randn(1, args.n_points, 3, generator=gen, device=device).requires_grad_(True)
    else:
        sphere = ico_sphere(4, device)
        param = torch.zeros_like(sphere.verts_packed()).requires_grad_(True)  # (V, 3) offsets
    optim = torch.optim.Adam([param], lr=args.lr)
    if args.schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, args.max_iter) / args.max_iter)))
    else:
        sched = None
    out = Path(args.output_dir)
    log = LossLog(out / "losses.csv", append=False)

    def loss_fn():
        if args.type == "vox":
            return {"loss": voxel_loss(param, target)}
        if args.type == "point":
            return {"loss": chamfer_loss(param, target)}
        mesh = sphere.offset_verts(param)
        src = sample_points_from_meshes(mesh, args.n_points, generator=gen)
        tgt = sample_points_from_meshes(gt_mesh, args.n_points, generator=gen)
        lc, ls = chamfer_loss(src, tgt), smoothness_loss(mesh)
        return {"loss": args.w_chamfer * lc + args.w_smooth * ls, "chamfer": lc, "smooth": ls}

    t0 = time.perf_counter()
    last = {}
    step = -1
    with graceful_interrupt() as stop:
        for step in progress(range(args.max_iter), f"fit {args.type}"):
            terms = loss_fn()
            check_finite(terms["loss"], step)
            optim.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optim.step()
            if sched is not None:
                sched.step()
            last = {k: float(v.detach()) for k, v in terms.items()}
            if step % args.log_freq == 0 or step == args.max_iter - 1:
                log.append(step, last)
            if stop.requested:
                break
    elapsed = time.perf_counter() - t0
    metrics = {"type": args.type, "steps": step + 1, "lr": args.lr, "schedule": args.schedule, "n_points": args.n_points,
               "final_loss": last["loss"], "fit_time_s": elapsed, "target": f"{sample['synset']}/{sample['model_id']}",
               "data": data_text(choice)}
    with torch.no_grad():
        kw = dict(num_frames=args.num_frames, image_size=args.image_size, azim=view_azimuth(sample["R"], sample["T"]))
        if args.type == "vox":
            prob = torch.sigmoid(param)[0, 0]
            metrics["iou"] = voxel_iou(prob, target[0, 0])
            frames = comparison("vox", prob.cpu(), target[0, 0].cpu(), pred_title="optimised voxels",
                                gt_title="target voxels", **kw)
        elif args.type == "point":
            metrics["chamfer"] = float(chamfer_loss(param, target))
            frames = comparison("point", param[0].cpu(), target[0].cpu(), pred_title="optimised points",
                                gt_title="target points", **kw)
        else:
            mesh = sphere.offset_verts(param)
            g = torch.Generator(device=device).manual_seed(args.seed + 1)
            n_eval = max(args.n_points, 10000)
            metrics["chamfer"] = float(chamfer_loss(sample_points_from_meshes(mesh, n_eval, generator=g),
                                                    sample_points_from_meshes(gt_mesh, n_eval, generator=g)))
            metrics["final_smooth"] = last.get("smooth")
            frames = comparison("mesh", (mesh.verts_packed().cpu(), mesh.faces_packed().cpu()),
                                (verts.cpu(), faces.cpu()), pred_title="optimised mesh", gt_title="target mesh", **kw)
    metrics["checks"] = fit_check(args.type, metrics)
    written = list(save_gif_with_png(out / f"fit_{args.type}.gif", frames, fps=gif_fps(args.num_frames), which="first"))
    written.append(log.plot(out / f"loss_{args.type}.png", title=f"fit {args.type}"))
    report(out, metrics, written)
    return metrics


if __name__ == "__main__":
    run_cli(main)
