"""Benchmark: one NeRF training step (1024 rays x 128 samples, the nerf_lego config's MLP) on CPU/GPU.

Prints the step time, the FLOPs of its linear layers (forward + backward, counted exactly per
layer with l3d.fields.linear_flops), the achieved FLOP/s, and that as a fraction of a plain
matmul's FLOP/s measured in the same run (the same (131072 x 128) @ (128 x 128) shape as the
MLP's hidden layers). Goal: >= 40 %. Writes output/bench/a3_nerf_step.json.

    python bench/bench_a3_nerf_step.py [--device cpu] [--rays 1024] [--samples 128] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from a3_volume_surface.model import Model  # noqa: E402
from l3d.fields import linear_flops  # noqa: E402
from l3d.rays import RayBundle  # noqa: E402
from l3d.train import choose_device  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device, repeats):
    fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rays", type=int, default=1024)
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--output", default=str(ROOT / "output/bench/a3_nerf_step.json"))
    args = ap.parse_args(argv)
    device = choose_device(args.device)
    cfg = OmegaConf.to_container(OmegaConf.merge(OmegaConf.load(ROOT / "configs/a3/nerf_lego.yaml")))
    cfg["sampler"]["n_pts_per_ray"] = args.samples
    model = Model(cfg).to(device).train()
    optim = torch.optim.Adam(model.parameters(), lr=5e-4)
    g = torch.Generator().manual_seed(0)
    o = torch.randn(args.rays, 3, generator=g)
    o = (o / o.norm(dim=-1, keepdim=True) * 4).to(device)
    d = F.normalize(-o + 0.3 * torch.randn(args.rays, 3, generator=g).to(device), dim=-1)
    bundle = RayBundle(o, d)
    target = torch.rand(args.rays, 3, generator=g).to(device)

    def step():
        out = model(bundle)
        loss = F.mse_loss(out["color"], target)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()

    t_step = timeit(step, device, args.repeats)
    n_pts = args.rays * args.samples
    fn = model.implicit_fn
    flops = linear_flops(fn, n_pts, backward=True, no_input_grad=[fn.mlp.layers[0]])
    # the direction term of the first colour layer is evaluated per ray, not per sample (not counted)
    a = torch.randn(n_pts, 128, device=device)
    w = torch.randn(128, 128, device=device)
    t_mm = timeit(lambda: a @ w, device, args.repeats)
    mm_flops = 2 * n_pts * 128 * 128
    achieved, peak = flops / t_step, mm_flops / t_mm
    res = {
        "device": str(device), "threads": torch.get_num_threads(), "rays": args.rays, "samples": args.samples,
        "step_time_s": t_step, "linear_gflop_per_step": flops / 1e9, "achieved_gflops": achieved / 1e9,
        "matmul_gflops": peak / 1e9, "fraction_of_matmul": achieved / peak,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""), "load_avg_1min": os.getloadavg()[0],
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(res, indent=2) + "\n")
    print(f"NeRF training step ({args.rays} rays x {args.samples} samples, {device}): {t_step * 1e3:.1f} ms, "
          f"{flops / 1e9:.1f} GFLOP in linear layers -> {achieved / 1e9:.1f} GFLOP/s")
    print(f"plain matmul ({n_pts} x 128 @ 128 x 128): {peak / 1e9:.1f} GFLOP/s")
    print(f"fraction of matmul FLOP/s: {achieved / peak:.1%} (goal >= 40 %)")
    print(f"wrote {args.output}")
    return res


if __name__ == "__main__":
    main()
