"""Q1: fit a voxel grid, a point cloud or a mesh directly to one target shape by gradient descent.

    python -m a2_single_view.fit_data --type vox|point|mesh [--max_iter 10000]

Target: the first training sample. Adam (lr 4e-4) optimises
  vox   -- a random 32^3 grid of logits, loss = BCE against the target voxels;
  point -- randn(1, 5000, 3) points, loss = chamfer to 5000 points sampled once on the target mesh;
  mesh  -- per-vertex offsets of ico_sphere(4), loss = w_chamfer * chamfer (5000 points sampled
           on both meshes every step) + w_smooth * uniform Laplacian smoothing.
Writes to --output_dir (default output/a2_single_view/fit_<type>): fit_<type>.gif (+ .png):
the optimised shape beside the ground truth, turning; loss_<type>.png and losses.csv;
metrics.json with the final loss, the chamfer distance to the target (point, mesh) and the
voxel IoU at 0.5 (vox).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from l3d.cli import report, script_parser
from l3d.io import save_gif_with_png
from l3d.ops import ico_sphere, sample_points_from_meshes
from l3d.structures import Meshes
from l3d.train import LossLog, check_finite, choose_device, graceful_interrupt, progress, run_cli, seed_everything

from .common import add_data_flags, labelled, render_gt, render_kind, resolve_data, view_azimuth
from .data import R2N2
from .losses import chamfer_loss, smoothness_loss, voxel_loss


def voxel_iou(pred_prob: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> float:
    """Intersection over union of ``pred_prob > threshold`` and ``target > 0.5`` (any equal shapes)."""
    p, t = pred_prob > threshold, target > 0.5
    union = (p | t).sum()
    return float((p & t).sum()) / max(float(union), 1.0)


def main(argv=None):
    ap = script_parser(__doc__, "a2_single_view/fit_<type>")
    ap.add_argument("--type", choices=["vox", "point", "mesh"], default="vox", help="what to fit")
    ap.add_argument("--max_iter", type=int, default=10000, help="optimisation steps")
    ap.add_argument("--lr", type=float, default=4e-4, help="Adam learning rate")
    ap.add_argument("--n_points", type=int, default=5000, help="points of the cloud / sampled per mesh")
    ap.add_argument("--w_chamfer", type=float, default=1.0, help="weight of the chamfer loss (mesh)")
    ap.add_argument("--w_smooth", type=float, default=0.1, help="weight of the Laplacian smoothing loss (mesh)")
    ap.add_argument("--log_freq", type=int, default=50, help="loss log row every this many steps")
    ap.add_argument("--num_frames", type=int, default=24, help="frames of the GIF")
    ap.add_argument("--image_size", type=int, default=192, help="size of each half of the GIF")
    add_data_flags(ap)
    args = ap.parse_args(argv)
    if args.output_dir == "output/a2_single_view/fit_<type>":
        args.output_dir = f"output/a2_single_view/fit_{args.type}"
    if args.quick:
        args.max_iter, args.n_points = min(args.max_iter, 40), min(args.n_points, 500)
        args.num_frames, args.image_size, args.log_freq = min(args.num_frames, 4), min(args.image_size, 96), 5
    if args.max_iter < 1 or args.n_points < 1 or args.log_freq < 1:
        raise ValueError("--max_iter, --n_points and --log_freq must be at least 1")
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
    with graceful_interrupt() as stop:
        for step in progress(range(args.max_iter), f"fit {args.type}"):
            terms = loss_fn()
            check_finite(terms["loss"], step)
            optim.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optim.step()
            last = {k: float(v.detach()) for k, v in terms.items()}
            if step % args.log_freq == 0 or step == args.max_iter - 1:
                log.append(step, last)
            if stop.requested:
                break
    elapsed = time.perf_counter() - t0
    metrics = {"type": args.type, "steps": step + 1, "final_loss": last["loss"], "fit_time_s": elapsed,
               "target": f"{sample['synset']}/{sample['model_id']}"}
    with torch.no_grad():
        kw = dict(num_frames=args.num_frames, image_size=args.image_size, azim=view_azimuth(sample["R"], sample["T"]))
        if args.type == "vox":
            prob = torch.sigmoid(param)[0, 0]
            metrics["iou"] = voxel_iou(prob, target[0, 0])
            left, right = render_kind("vox", prob, **kw), render_kind("vox", target[0, 0], **kw)
        elif args.type == "point":
            metrics["chamfer"] = float(chamfer_loss(param, target))
            left, right = render_kind("point", param[0], **kw), render_kind("point", target[0], **kw)
        else:
            mesh = sphere.offset_verts(param)
            g = torch.Generator(device=device).manual_seed(args.seed + 1)
            n_eval = max(args.n_points, 10000)
            metrics["chamfer"] = float(chamfer_loss(sample_points_from_meshes(mesh, n_eval, generator=g),
                                                    sample_points_from_meshes(gt_mesh, n_eval, generator=g)))
            metrics["final_smooth"] = last.get("smooth")
            left = render_kind("mesh", (mesh.verts_packed(), mesh.faces_packed()), **kw)
            right = render_gt(verts, faces, **kw)
    frames = torch.cat([labelled(left, f"optimised {args.type}"), labelled(right, "ground truth")], dim=2)
    written = list(save_gif_with_png(out / f"fit_{args.type}.gif", frames, fps=8))
    written.append(log.plot(out / f"loss_{args.type}.png", title=f"fit {args.type}"))
    report(out, metrics, written)
    return metrics


if __name__ == "__main__":
    run_cli(main)
