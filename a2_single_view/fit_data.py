"""Q1: fit a voxel grid, a point cloud or a mesh directly to one target shape by gradient descent.

    python -m a2_single_view.fit_data --type vox|point|mesh [--steps 10000]

Target: the first training sample. Adam optimises
  vox   -- a random 32^3 grid of logits, loss = BCE against the target voxels;
  point -- randn(1, num_points, 3) points, loss = chamfer to num_points sampled once on the target mesh;
  mesh  -- per-vertex offsets of ico_sphere(4), loss = w_chamfer * chamfer (num_points sampled
           on both meshes every step) + w_smooth * uniform Laplacian smoothing.
The defaults are the course's (lr 4e-4, 5000 points, 10000 steps, constant learning rate).
--quick fits in a few hundred steps instead: a larger learning rate (vox 0.1, point 0.05, mesh
0.02) that decays to zero along a cosine, 1000 points (point) / 2000 points per mesh (mesh).

Writes to --output_dir (default output/a2_single_view/fit_<type>): fit_<type>.gif (+ .png):
the optimised shape beside the ground truth in the same representation (the target voxels,
the target points, the target mesh), turning from the input view; loss_<type>.png and
losses.csv; metrics.json with the final loss, the chamfer distance to the target (point: to
the target points; mesh: 10000 points sampled on each mesh) or the voxel IoU at 0.5 (vox), and
its check (vox IoU >= 0.9, point chamfer <= 1e-3, mesh chamfer <= 5e-3). The fitted shape is
saved in checkpoints/ (at the end, on Ctrl-C or SIGTERM, and every --save_every steps) and
--resume continues from it; a fit whose loss diverges stops with one line and leaves the
folder's previous results as they were.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

from l3d.checks import check
from l3d.cli import nonneg_float, positive_int, report, run_cli, script_parser
from l3d.errors import user_error
from l3d.media import save_gif_with_png
from l3d.ops import ico_sphere, sample_points_from_meshes
from l3d.structures import Meshes
from l3d.run import (LOSS_LOG, LOSS_PLOT, CheckpointManager, LossLog, RunDir, check_finite, check_finite_params,
                     check_same_config)
from l3d.train import choose_device, graceful_interrupt, progress, seed_everything

from .common import add_data_flags, given_or, comparison, data_text, gif_fps, resolve_data, view_azimuth
from .data import R2N2
from .losses import chamfer_loss, smoothness_loss, voxel_loss

# --quick: steps, learning rate and points of each type (cosine decay to zero)
QUICK = {"vox": {"steps": 150, "lr": 0.1, "num_points": 1000},
         "point": {"steps": 300, "lr": 0.05, "num_points": 1000},
         "mesh": {"steps": 300, "lr": 0.02, "num_points": 2000}}
QUICK_ALL = {"schedule": "cosine", "log_freq": 5, "num_frames": 24, "image_size": 128, "data_preset": "quick"}
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


def build_parser():
    ap = script_parser(__doc__, "a2_single_view/fit_<type>", presets={"quick": QUICK_ALL})
    ap.add_argument("--type", choices=["vox", "point", "mesh"], default="vox", help="what to fit")
    ap.add_flag("steps", default=10000, help="optimisation steps (--quick: 150-300)")
    ap.add_flag("lr", default=4e-4, help="Adam learning rate (--quick: per type)")
    ap.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                    help="learning rate schedule (--quick: cosine decay to zero)")
    ap.add_flag("num_points", default=5000, help="points of the cloud / sampled per mesh (--quick: 1000, mesh 2000)")
    ap.add_argument("--w_chamfer", type=nonneg_float, default=1.0, help="weight of the chamfer loss (mesh)")
    ap.add_argument("--w_smooth", type=nonneg_float, default=0.1, help="weight of the Laplacian smoothing loss (mesh)")
    ap.add_argument("--log_freq", type=positive_int, default=50, help="loss log row every this many steps (--quick 5)")
    ap.add_flag("tensorboard_image_every", default=500,
                help="steps between TensorBoard's image of the shape beside its target (0: the last step only)")
    ap.add_flag("save_every", default=0)
    ap.add_flag("resume")
    ap.add_flag("num_frames", default=36, help="frames of the GIF, one full turn (--quick 24)")
    ap.add_flag("image_size", default=192, help="size of each panel of the GIF (--quick 128)")
    add_data_flags(ap)
    return ap


def lr_factor(args, step: int) -> float:
    """The learning rate of a step over --lr: 1, or a cosine from 1 to 0 over --steps."""
    if args.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(step, args.steps) / args.steps))
    return 1.0


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.output_dir == "output/a2_single_view/fit_<type>":
        args.output_dir = f"output/a2_single_view/fit_{args.type}"
    if args.quick:
        given_or(args, QUICK[args.type])
    device = choose_device(args.device)
    seed_everything(args.seed)
    choice = resolve_data(args)
    with RunDir(args.output_dir, fresh=not args.resume) as run:  # locked; a failed fresh run keeps the old results
        return fit(args, device, choice, run)


def fit(args, device, choice, run: RunDir) -> dict:
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
        target = sample_points_from_meshes(gt_mesh, args.num_points, generator=gen)  # (1, n, 3)
        param = torch.randn(1, args.num_points, 3, generator=gen, device=device).requires_grad_(True)
    else:
        sphere = ico_sphere(4, device)
        param = torch.zeros_like(sphere.verts_packed()).requires_grad_(True)  # (V, 3) offsets
    optim = torch.optim.Adam([param], lr=args.lr)
    cfg = {"type": args.type, "num_points": args.num_points, "target": f"{sample['synset']}/{sample['model_id']}",
           "lr": args.lr, "schedule": args.schedule, "steps": args.steps}
    ckpts = CheckpointManager(run.path("checkpoints"), every=args.save_every, keep_last=2, run=run)
    start = 0
    state = ckpts.resume(map_location=device) if args.resume else None
    if args.resume and state is None:
        print(f"note: no checkpoint in {run.path('checkpoints')}; starting from step 0", file=sys.stderr)
    if state is not None:
        where = run.path("checkpoints")
        missing = [k for k in ("model", "optimizer", "config", "step") if k not in state]
        if missing:
            raise user_error(where, "a fit_data checkpoint (model, optimizer, config, step)", f"no {', '.join(missing)}")
        keys = ("type", "target") + (("num_points",) if args.type == "point" else ())
        check_same_config(state["config"], cfg, where, keys)
        saved = state["model"].get("param")
        if saved is None or saved.shape != param.shape:
            raise user_error(where, f"a fitted {args.type} of shape {tuple(param.shape)}",
                             "none" if saved is None else f"shape {tuple(saved.shape)}")
        with torch.no_grad():
            param.copy_(saved.to(device))
        optim.load_state_dict(state["optimizer"])
        start = int(state["step"]) + 1
    log = run.track(LossLog(run.path(LOSS_LOG), append=state is not None))
    if state is not None:
        log.rewind(start - 1)

    def loss_fn():
        if args.type == "vox":
            return {"loss": voxel_loss(param, target)}
        if args.type == "point":
            return {"loss": chamfer_loss(param, target)}
        mesh = sphere.offset_verts(param)
        src = sample_points_from_meshes(mesh, args.num_points, generator=gen)
        tgt = sample_points_from_meshes(gt_mesh, args.num_points, generator=gen)
        lc, ls = chamfer_loss(src, tgt), smoothness_loss(mesh)
        return {"loss": args.w_chamfer * lc + args.w_smooth * ls, "chamfer": lc, "smooth": ls}

    azim = view_azimuth(sample["R"], sample["T"])

    @torch.no_grad()
    def panels(num_frames: int, image_size: int) -> torch.Tensor:
        """The optimised shape beside the target, in the same representation, turning from the input view."""
        kw = dict(num_frames=num_frames, image_size=image_size, azim=azim)
        if args.type == "vox":
            return comparison("vox", torch.sigmoid(param)[0, 0].cpu(), target[0, 0].cpu(), pred_title="optimised voxels",
                              gt_title="target voxels", **kw)
        if args.type == "point":
            return comparison("point", param[0].cpu(), target[0].cpu(), pred_title="optimised points",
                              gt_title="target points", **kw)
        mesh = sphere.offset_verts(param)
        return comparison("mesh", (mesh.verts_packed().cpu(), mesh.faces_packed().cpu()), (verts.cpu(), faces.cpu()),
                          pred_title="optimised mesh", gt_title="target mesh", **kw)

    t0 = time.perf_counter()
    last = {}
    step = start - 1
    with graceful_interrupt() as stop:  # Ctrl-C / SIGTERM: finish the step, save, stop
        for step in progress(range(start, args.steps), f"fit {args.type}"):
            for group in optim.param_groups:
                group["lr"] = args.lr * lr_factor(args, step)
            terms = loss_fn()
            check_finite(terms["loss"], step)
            optim.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optim.step()
            last = {k: float(v.detach()) for k, v in terms.items()}
            if step % args.log_freq == 0 or step == args.steps - 1:
                log.append(step, last)
            if log.image_due(step, args.tensorboard_image_every, args.steps, stop.requested):
                log.image(step, "val/fit_and_target", panels(1, 96)[0])
            if ckpts.due(step) or stop.requested or step == args.steps - 1:
                check_finite_params({"param": param}, step)
                ckpts.save(step, {"model": {"param": param.detach()}, "optimizer": optim.state_dict(), "config": cfg})
            if stop.requested:
                break
    elapsed = time.perf_counter() - t0
    if not last:  # a resumed run that had already finished: the loss of the saved state
        with torch.no_grad():
            last = {k: float(v) for k, v in loss_fn().items()}
    metrics = {"type": args.type, "steps": step + 1, "lr": args.lr, "schedule": args.schedule,
               "num_points": args.num_points, "final_loss": last["loss"], "fit_time_s": elapsed,
               "target": cfg["target"], "data": data_text(choice), "interrupted": bool(stop.requested)}
    out = run.path()
    with torch.no_grad():
        if args.type == "vox":
            metrics["iou"] = voxel_iou(torch.sigmoid(param)[0, 0], target[0, 0])
        elif args.type == "point":
            metrics["chamfer"] = float(chamfer_loss(param, target))
        else:
            mesh = sphere.offset_verts(param)
            g = torch.Generator(device=device).manual_seed(args.seed + 1)
            n_eval = max(args.num_points, 10000)
            metrics["chamfer"] = float(chamfer_loss(sample_points_from_meshes(mesh, n_eval, generator=g),
                                                    sample_points_from_meshes(gt_mesh, n_eval, generator=g)))
            metrics["final_smooth"] = last.get("smooth")
    frames = panels(args.num_frames, args.image_size)
    metrics["checks"] = fit_check(args.type, metrics)
    written = list(save_gif_with_png(out / f"fit_{args.type}.gif", frames, fps=gif_fps(args.num_frames), which="first"))
    if log.rows():
        written.append(log.plot(out / LOSS_PLOT, title=f"fit {args.type}"))
    report(out, metrics, written)
    return metrics


if __name__ == "__main__":
    run_cli(main)
