"""Assignment 4 Q1 quality run: 1000 iterations of the course's default training on the
built-in cow scene, on the CPU, against the targets of the issue.

    python bench/quality_a4_gaussians.py [--harder] [--threads 1]

1. ``python -m a4_gaussians_diffusion.gaussians.train --data_path synthetic --num_itrs 1000``
   (isotropic, init from points, L1, the course's learning rates)
   -> mean test PSNR >= 25 dB in <= 15 minutes of training; SSIM reported.
2. with --harder also the harder-scene preset (random init of 10k Gaussians, anisotropic,
   SSIM term, exponential learning-rate decay, densify/prune with opacity resets); reported,
   no target.
Writes output/a4_gaussians_diffusion/gaussians/quality/metrics.json (each run's outputs in a
folder beside it) with wall and CPU times and the machine load; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from a4_gaussians_diffusion.gaussians import train  # noqa: E402
from l3d.io import write_metrics  # noqa: E402

TARGET_PSNR = 25.0
TIME_LIMIT_S = 15 * 60


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(argv, out_dir: Path):
    load0 = os.getloadavg()[0]
    w, c = time.perf_counter(), _cpu_s()
    train.main(argv + ["--output_dir", str(out_dir)])
    m = json.loads((out_dir / "metrics.json").read_text())
    return {"psnr": m["psnr"], "ssim": m["ssim"], "num_gaussians": m["num_gaussians"],
            "train_time_s": m["train_time_s"], "wall_s": time.perf_counter() - w, "cpu_s": _cpu_s() - c,
            "load_avg_start": load0, "load_avg_end": os.getloadavg()[0], "command": " ".join(argv)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--harder", action="store_true", help="also run the harder-scene preset")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    ap.add_argument("--output_dir", default="output/a4_gaussians_diffusion/gaussians/quality")
    args = ap.parse_args(argv)
    out = Path(args.output_dir)
    base = ["--data_path", "synthetic", "--num_itrs", "1000", "--device", "cpu", "--num_threads", str(args.threads)]
    results = {"default": run(base, out / "default")}
    d = results["default"]
    d["target_psnr"], d["time_limit_s"] = TARGET_PSNR, TIME_LIMIT_S
    d["passed"] = bool(d["psnr"] >= TARGET_PSNR and d["train_time_s"] <= TIME_LIMIT_S)
    if args.harder:
        results["harder"] = run(base + ["--harder"], out / "harder")
    write_metrics(out, results)
    for name, r in results.items():
        print(f"{name}: PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f}, {r['num_gaussians']} Gaussians, "
              f"training {r['train_time_s']:.0f} s (wall {r['wall_s']:.0f} s, CPU {r['cpu_s']:.0f} s, "
              f"load {r['load_avg_start']:.1f} -> {r['load_avg_end']:.1f})")
    print(f"target PSNR >= {TARGET_PSNR} dB in <= {TIME_LIMIT_S} s: {'PASS' if d['passed'] else 'FAIL'}")
    return 0 if d["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
