"""Gaussian rasteriser speed: tiled against dense (the course's formulation) in the same run,
and the time of one training iteration.

    python bench/bench_a4_gaussians.py [--num 10000] [--size 256] [--repeats 3] [--threads 1]

1. Render 10k Gaussians (the procedural stand-in: isotropic Gaussians on the cow's surface,
   seen from the course's turntable camera) at 256 x 256 with the tiled rasteriser and with the
   dense one (every Gaussian at every pixel, batches of --gaussians_per_splat). Checks that the
   images agree and prints both times (wall clock and CPU time of this process) and the ratio.
2. One training iteration (render, L1 loss, backward, Adam step) on the built-in cow scene
   (128 x 128, 10k Gaussians from its points), averaged over --train_iters iterations.
Writes the numbers to output/bench/a4_gaussians.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from a4_gaussians_diffusion.gaussians.rasterize import RasterSettings  # noqa: E402
from a4_gaussians_diffusion.gaussians.render import turntable_cameras  # noqa: E402
from a4_gaussians_diffusion.gaussians.standin import surface_gaussians  # noqa: E402


def timed(fn, repeats):
    """(best wall s, best CPU s, result) over ``repeats`` runs after one warm-up."""
    out = fn()
    best_w = best_c = float("inf")
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best_w, best_c = min(best_w, time.perf_counter() - w), min(best_c, time.process_time() - c)
    return best_w, best_c, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num", type=int, default=10000, help="Gaussians")
    ap.add_argument("--size", type=int, default=256, help="image size")
    ap.add_argument("--repeats", type=int, default=3, help="timed repetitions of the tiled render (best reported)")
    ap.add_argument("--gaussians_per_splat", type=int, default=512, help="dense rasteriser batch")
    ap.add_argument("--tile_size", type=int, default=4, help="tiled rasteriser tile edge")
    ap.add_argument("--train_iters", type=int, default=10, help="timed training iterations")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    ap.add_argument("--output", default="output/bench/a4_gaussians.json", help="where to write the numbers")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    g = surface_gaussians(args.num).to(dev)
    cam = turntable_cameras(32, args.size)[16].to(dev)
    tiled_s = RasterSettings(args.size, tile_size=args.tile_size)
    dense_s = RasterSettings(args.size, mode="dense", gaussians_per_splat=args.gaussians_per_splat)
    with torch.no_grad():
        tw, tc, tiled = timed(lambda: (g.render(cam, tiled_s), sync())[0], args.repeats)
        dw, dc, dense = timed(lambda: (g.render(cam, dense_s), sync())[0], 1)
    err = float((tiled.image - dense.image).abs().max())
    coverage = float(dense.mask.mean())
    print(f"render {args.num} Gaussians at {args.size}x{args.size} (coverage {coverage:.2f}, load {load:.1f}, "
          f"{args.threads} thread(s)):")
    print(f"  tiled ({args.tile_size}x{args.tile_size} tiles): {tw:.3f} s wall, {tc:.3f} s CPU")
    print(f"  dense (batches of {args.gaussians_per_splat}): {dw:.3f} s wall, {dc:.3f} s CPU")
    print(f"  speed-up {dw / tw:.1f}x wall, {dc / tc:.1f}x CPU; max |tiled - dense| = {err:.2e}")

    # one training iteration on the built-in scene
    from a4_gaussians_diffusion.gaussians.data import builtin_scene_path, load_scene
    from a4_gaussians_diffusion.gaussians.trainer import TrainConfig, init_gaussians, make_optimizer, raster_settings
    from a4_gaussians_diffusion.gaussians.losses import l1

    scene = load_scene(builtin_scene_path())
    cfg = TrainConfig()
    scene = scene.to(dev)
    model = init_gaussians(cfg, scene, dev)
    opt = make_optimizer(model, cfg)
    settings = raster_settings(cfg, scene)

    def step(i=[0]):  # noqa: B006 (a counter)
        v = scene.train_idx[(i[0] * 37) % len(scene.train_idx)]
        i[0] += 1
        out = model.render(scene.cameras[v], settings)
        loss = l1(out.image, scene.images[v])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()

    step()
    w, c = time.perf_counter(), time.process_time()
    for _ in range(args.train_iters):
        step()
    it_w, it_c = (time.perf_counter() - w) / args.train_iters, (time.process_time() - c) / args.train_iters
    print(f"training iteration (128x128, {model.num_gaussians} Gaussians): {it_w:.3f} s wall, {it_c:.3f} s CPU "
          f"-> 1000 iterations ~ {1000 * it_w / 60:.1f} min")
    result = {
        "num_gaussians": args.num, "image_size": args.size, "threads": args.threads, "load_avg_1min": load,
        "tiled_s": tw, "tiled_cpu_s": tc, "dense_s": dw, "dense_cpu_s": dc, "speedup_wall": dw / tw,
        "speedup_cpu": dc / tc, "max_abs_diff": err, "coverage": coverage, "tile_size": args.tile_size,
        "gaussians_per_splat": args.gaussians_per_splat, "device": args.device, "train_iter_s": it_w, "train_iter_cpu_s": it_c,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
