"""Assignment 5 training throughput: point clouds per second at 10000 points per cloud, and the
model's achieved FLOP/s as a fraction of a plain float32 matmul's FLOP/s measured in the same run.

    python bench/bench_a5_throughput.py [--device cpu|cuda] [--batch_size 4] [--num_points 10000]

For each model (PointNet cls and seg, PointNet++ cls and seg, the papers' widths) one training step
(forward, cross-entropy, backward, Adam) is timed after a warm-up; its FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode`` (matmuls/convolutions: 2 per multiply-add; the
point ops of PointNet++ -- farthest-point sampling, ball query, top-k -- are not counted, so its
fraction understates the work done). Writes output/bench/a5_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from a5_pointnet.models import ModelConfig, build_model  # noqa: E402
from l3d.train import choose_device  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(device, n: int, reps: int) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2.0 * n ** 3 * reps / (time.perf_counter() - t)


def bench_model(task, arch, device, batch, points, reps):
    k = 3 if task == "cls" else 6
    torch.manual_seed(0)
    model = build_model(ModelConfig(task=task, arch=arch, num_classes=k)).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, points, 3, device=device) * 2 - 1
    y = torch.randint(0, k, (batch,) if task == "cls" else (batch, points), device=device)

    def step():
        loss = F.cross_entropy(model(x).reshape(-1, k), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        step()  # also the warm-up
    flops = float(counter.get_total_flops())
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        step()
    _sync(device)
    dt = (time.perf_counter() - t) / reps
    return {"task": task, "model": arch, "batch_size": batch, "num_points": points, "step_s": dt,
            "clouds_per_s": batch / dt, "gflop_per_step": flops / 1e9, "gflop_per_s": flops / dt / 1e9}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch_size", type=int, default=None, help="clouds per step (default: 4 on CPU, 32 on CUDA)")
    ap.add_argument("--num_points", type=int, default=10000)
    ap.add_argument("--reps", type=int, default=2, help="timed steps per model")
    ap.add_argument("--models", nargs="+", default=["cls:pointnet", "seg:pointnet", "cls:pointnet2", "seg:pointnet2"])
    ap.add_argument("--output", default="output/bench/a5_throughput.json")
    args = ap.parse_args(argv)
    device = choose_device(args.device)
    batch = args.batch_size or (32 if device.type == "cuda" else 4)
    mm_n = 4096 if device.type == "cuda" else 1024
    ref_before = matmul_flops(device, mm_n, 20 if device.type == "cuda" else 5)
    rows = []
    for spec in args.models:
        task, arch = spec.split(":")
        rows.append(bench_model(task, arch, device, batch, args.num_points, args.reps))
        r = rows[-1]
        print(f"{task:3s} {arch:9s}: {r['clouds_per_s']:8.2f} clouds/s at {args.num_points} points "
              f"({r['step_s']:.2f} s/step, {r['gflop_per_step']:.1f} GFLOP/step, {r['gflop_per_s']:.1f} GFLOP/s)",
              flush=True)
    ref_after = matmul_flops(device, mm_n, 20 if device.type == "cuda" else 5)
    ref = max(ref_before, ref_after)  # the matmul's best, measured before and after the models
    print(f"reference: float32 {mm_n}x{mm_n} matmul {ref / 1e9:.1f} GFLOP/s (before {ref_before / 1e9:.1f}, "
          f"after {ref_after / 1e9:.1f})")
    for r in rows:
        r["fraction_of_matmul"] = r["gflop_per_s"] * 1e9 / ref
        print(f"{r['task']:3s} {r['model']:9s}: {100 * r['fraction_of_matmul']:5.1f} % of the matmul's FLOP/s")
    res = {"device": str(device), "threads": torch.get_num_threads(), "matmul_gflop_per_s": ref / 1e9,
           "matmul_size": mm_n, "models": rows}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
