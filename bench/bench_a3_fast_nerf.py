"""Benchmark: test PSNR against wall time of the MLP NeRF (nerf_lego.yaml) and the hash-grid NeRF
(nerf_lego_fast.yaml) on the same scene at 128 x 128, trained back to back in one process.

The scene is the built-in cow stand-in (the course's lego is not needed, and not used even when
present: both runs must see the same images). Both models train with random 1024-ray batches from
all training views; every checkpoint time (training wall time only; evaluation is paused out)
renders ``--eval-views`` held-out test views and records their mean PSNR. The MLP uses the
nerf_lego config's network with the same bounded sampling (radius 1.5) and sample count as the fast
config, and a learning rate suited to a short run (``--mlp-lr``, 1000-step warm-up shortened to 100).

Prints the PSNR the MLP reaches within ``--mlp-budget`` seconds, the time the fast config needs to
reach it (goal <= 60 s), and the PSNR gap at equal time (goal >= 2 dB), with the machine load.
Writes output/bench/a3_fast_nerf.png (PSNR against time) and output/bench/a3_fast_nerf.json.

    nice -n 10 python bench/bench_a3_fast_nerf.py [--mlp-budget 600] [--fast-budget 300] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from a3_volume_surface.data import load_nerf_scene  # noqa: E402
from a3_volume_surface.model import Model, render_images  # noqa: E402
from a3_volume_surface.common import psnr  # noqa: E402
from a3_volume_surface.volume_runs import RayBatcher  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def config(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "a3" / f"{name}.yaml"), resolve=False)


def train_timed(cfg: dict, scene, budget: float, checkpoints, lr: float, table_lr, warmup: int,
                n_eval: int, seed: int = 0, label: str = "") -> dict:
    """Train for ``budget`` seconds of wall time; returns {"t": [...], "psnr": [...], "steps": [...]}."""
    torch.manual_seed(seed)
    images, cams = scene.subset("train")
    test_images, test_cams = scene.subset("test")
    test_images, test_cams = test_images[:n_eval], test_cams[:n_eval]
    model = Model(cfg).train()
    optim = torch.optim.Adam(model.param_groups(lr, table_lr, float(cfg["training"].get("table_eps", 1e-15))), lr=lr)
    base = [g["lr"] for g in optim.param_groups]
    batcher = RayBatcher(images, cams, "exact", seed)
    bs = int(cfg["training"]["batch_size"])
    hist = {"t": [0.0], "psnr": [], "steps": [0]}

    def evaluate():
        pred = render_images(model, test_cams, test_images.shape[1:3])["color"]
        return float(np.mean([psnr(p, g) for p, g in zip(pred, test_images)]))

    hist["psnr"].append(evaluate())
    pending = sorted(c for c in checkpoints if c <= budget)
    t_train, step = 0.0, 0
    while pending:
        t0 = time.perf_counter()
        if warmup > 0 and step <= warmup:
            for g, b in zip(optim.param_groups, base):
                g["lr"] = b * min(1.0, (step + 1) / warmup)
        bundle, rgb = batcher(bs)
        loss = F.mse_loss(model(bundle)["color"], rgb)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        model.after_step()
        step += 1
        t_train += time.perf_counter() - t0
        if t_train >= pending[0]:
            pending.pop(0)
            hist["t"].append(t_train)
            hist["steps"].append(step)
            hist["psnr"].append(evaluate())
            print(f"{label}: {t_train:7.1f} s, {step:6d} steps, test PSNR {hist['psnr'][-1]:.2f} dB, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    return hist


def time_to_reach(hist: dict, target: float):
    """First wall time (linear interpolation between checkpoints) at which the PSNR reaches ``target``."""
    t, p = hist["t"], hist["psnr"]
    for i in range(1, len(p)):
        if p[i] >= target:
            if p[i - 1] >= target:
                return t[i - 1]
            return t[i - 1] + (target - p[i - 1]) / (p[i] - p[i - 1]) * (t[i] - t[i - 1])
    return None


def psnr_at(hist: dict, when: float) -> float:
    """The PSNR of the last checkpoint at or before ``when`` (what a run stopped then would show)."""
    return max(p for t, p in zip(hist["t"], hist["psnr"]) if t <= when + 1e-9)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mlp-budget", type=float, default=600.0, help="training seconds of the MLP NeRF")
    ap.add_argument("--fast-budget", type=float, default=300.0, help="training seconds of the hash-grid NeRF")
    ap.add_argument("--mlp-lr", type=float, default=2e-3, help="MLP learning rate (short run)")
    ap.add_argument("--eval-views", type=int, default=3, help="held-out views rendered at each checkpoint")
    ap.add_argument("--size", type=int, default=128, help="image width = height")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--output", default=str(ROOT / "output" / "bench" / "a3_fast_nerf"),
                    help="output path without extension (.png and .json are written)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    scene = load_nerf_scene("lego", (args.size, args.size), source="builtin",
                            cache_dir=str(ROOT / "output/.cache/a3_volume_surface/scenes"), quiet=True)
    ticks = [10, 20, 30, 45, 60, 90, 120, 180, 300, 450, 600, 900, 1200]
    mlp = config("nerf_lego")
    mlp["sampler"].update(bound_radius=1.5, n_pts_per_ray=64)
    fast = config("nerf_lego_fast")
    fast.pop("defaults", None)
    mlp.pop("defaults", None)
    load0 = os.getloadavg()
    print(f"scene {scene.source} at {args.size}x{args.size}, {args.threads} threads, load {load0[0]:.1f}", flush=True)
    h_mlp = train_timed(mlp, scene, args.mlp_budget, ticks + [args.mlp_budget], args.mlp_lr, None, 100,
                        args.eval_views, label="MLP ")
    h_fast = train_timed(fast, scene, args.fast_budget, ticks + [args.fast_budget], float(fast["training"]["lr"]),
                         fast["training"].get("table_lr"), int(fast["training"]["lr_warmup_steps"]),
                         args.eval_views, label="hash")
    load1 = os.getloadavg()
    target = h_mlp["psnr"][-1]
    reach = time_to_reach(h_fast, target)
    equal = min(h_mlp["t"][-1], h_fast["t"][-1])
    gap = psnr_at(h_fast, equal) - psnr_at(h_mlp, equal)
    mlp_steps_s = h_mlp["steps"][-1] / h_mlp["t"][-1]
    fast_steps_s = h_fast["steps"][-1] / h_fast["t"][-1]
    res = {"scene": scene.source, "size": args.size, "threads": args.threads, "load_before": load0,
           "load_after": load1, "mlp": h_mlp, "fast": h_fast, "mlp_psnr_at_budget": target,
           "fast_time_to_mlp_psnr_s": reach, "equal_time_s": equal, "psnr_gap_at_equal_time_db": gap,
           "mlp_steps_per_s": mlp_steps_s, "fast_steps_per_s": fast_steps_s,
           "speedup": None if reach is None else h_mlp["t"][-1] / reach}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(h_mlp["t"][1:], h_mlp["psnr"][1:], "o-", label="MLP NeRF (nerf_lego)")
    ax.plot(h_fast["t"][1:], h_fast["psnr"][1:], "s-", label="hash grid (nerf_lego_fast)")
    ax.axhline(target, color="gray", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("training wall time (s, log scale)")
    ax.set_ylabel(f"test PSNR (dB, {args.eval_views} views)")
    ax.set_title(f"{scene.source} {args.size}x{args.size}, CPU {args.threads} threads, "
                 f"load {load0[0]:.1f}-{load1[0]:.1f}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    print(f"MLP: {target:.2f} dB after {h_mlp['t'][-1]:.0f} s ({h_mlp['steps'][-1]} steps, {mlp_steps_s:.2f} steps/s)")
    print(f"hash grid: {h_fast['psnr'][-1]:.2f} dB after {h_fast['t'][-1]:.0f} s ({h_fast['steps'][-1]} steps, "
          f"{fast_steps_s:.2f} steps/s)")
    print("hash grid reaches the MLP's final PSNR after "
          + ("(not reached)" if reach is None else f"{reach:.0f} s ({h_mlp['t'][-1] / reach:.1f}x sooner)")
          + " (goal <= 60 s)")
    print(f"PSNR gap at equal time ({equal:.0f} s): {gap:+.2f} dB (goal >= 2 dB)")
    print(f"load average {load0[0]:.1f} before, {load1[0]:.1f} after (1 min) on {os.cpu_count()} CPUs")
    print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.json')}")
    return res


if __name__ == "__main__":
    main()
