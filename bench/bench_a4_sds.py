"""Benchmark: peak memory and time per iteration of every SDS command with the tiny random pipeline on CPU.

    python bench/bench_a4_sds.py [--threads 1] [--skip-course]

Real Stable Diffusion weights cannot be downloaded in the development / CI environment, so every
number here comes from the **tiny randomly initialised checkpoint**
(``a4_gaussians_diffusion/diffusion/tiny.py``: 64 x 64 images, 16 x 16 latents) run on the CPU.
They measure the cost of this repository's code path (rendering, VAE encoding, SDS, optimiser,
bookkeeping), not what Stable Diffusion 2.1 costs on a GPU.

Each command runs in a fresh process (``python -m ...``) so that its peak resident set size
(``ru_maxrss``) is its own; the scripts write ``peak_rss_mb``, ``rss_before_loop_mb`` (after
imports, model loading and the first renders) and ``time_per_iter_s`` (mean wall time of the
optimisation steps after the first one, saving excluded) into their metrics.json.

Reference measured in the same run: one bare SDS step (VAE encode of a 64 x 64 image, guided UNet
call, surrogate backward) of the same checkpoint, in its own fresh process; the table's ratio is
each command's time per iteration divided by that step's time.

Writes output/bench/a4_sds.json and the markdown table output/bench/a4_sds.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PKG = "a4_gaussians_diffusion.diffusion"

#: (name, module, settings text, extra args). Quick runs use --quick sizes; "course" rows keep the
#: course's render and model sizes (NeRF 64 x 64 with 64 + 32 samples per ray, MLP width 64; colour
#: field width 128) with the tiny diffusion model.
COMMANDS = [
    ("image, guidance 1", "image_optimization", "--quick, 12 iterations",
     ["--quick", "--sds_guidance", "1", "--steps", "12", "--snapshot_every", "100"]),
    ("image, guidance 0", "image_optimization", "--quick, 12 iterations",
     ["--quick", "--sds_guidance", "0", "--steps", "12", "--snapshot_every", "100"]),
    ("mesh texture", "mesh_optimization", "--quick (render 64 px, field width 32), 8 iterations",
     ["--quick", "--steps", "8", "--snapshot_every", "100"]),
    ("NeRF", "nerf_optimization", "--quick (render 16 x 16, 16 + 8 samples), 8 iterations",
     ["--quick", "--steps", "8", "--snapshot_every", "100", "--eval_every", "100"]),
    ("NeRF, view-dependent text", "nerf_optimization", "--quick, 8 iterations",
     ["--quick", "--steps", "8", "--view_dep_text", "1", "--snapshot_every", "100", "--eval_every", "100"]),
]
COURSE = [
    ("mesh texture", "mesh_optimization", "course field (width 128), render 64 px, 6 iterations",
     ["--steps", "6", "--snapshot_every", "100", "--num_frames", "4", "--image_size", "64"]),
    ("NeRF", "nerf_optimization", "course render (64 x 64, 64 + 32 samples, width 64), 5 iterations",
     ["--steps", "5", "--snapshot_every", "100", "--eval_every", "100", "--num_frames", "2", "--video_size", "32",
      "--latent_iter_ratio", "0.2"]),
]

REFERENCE = r"""
import json, sys, time, resource, torch
from a4_gaussians_diffusion.diffusion.sds import StableDiffusion
sd = StableDiffusion.from_pretrained(sys.argv[1], "cpu")
c, u = sd.text_embeddings("a hamburger"), sd.text_embeddings("")
img = torch.rand(1, 3, sd.image_size, sd.image_size, requires_grad=True)
times = []
for i in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    res = sd.sds_loss(sd.encode_images(img), c, u, 100.0)
    res.loss.backward()
    times.append(time.perf_counter() - t0)
rest = times[1:] or times
print(json.dumps({"time_per_iter_s": sum(rest) / len(rest), "first_iter_s": times[0],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(cmd, env, cwd):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0, proc.stdout


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of every run (OMP_NUM_THREADS)")
    ap.add_argument("--skip-course", action="store_true", help="only the --quick rows")
    ap.add_argument("--out", default=str(ROOT / "output" / "bench"), help="folder for a4_sds.json / a4_sds.md")
    args = ap.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads), MPLBACKEND="Agg")
    if "L3D_DATA" not in env and (ROOT.parent / "shared" / "data").is_dir():
        env["L3D_DATA"] = str(ROOT.parent / "shared" / "data")
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from a4_gaussians_diffusion.diffusion.tiny import build_tiny_pipeline

        model = build_tiny_pipeline(tmp / "tiny_sd")
        wall, out = run([sys.executable, "-c", REFERENCE, str(model), "8"], env, ROOT)
        ref = json.loads(out.strip().splitlines()[-1])
        print(f"reference: bare SDS step {ref['time_per_iter_s']:.3f} s, peak RSS {ref['peak_rss_mb']:.0f} MiB")
        todo = [("quick",) + c for c in COMMANDS] + ([] if args.skip_course else [("course",) + c for c in COURSE])
        for k, (kind, name, module, settings, extra) in enumerate(todo):
            out_dir = tmp / f"run{k}"
            cmd = [sys.executable, "-m", f"{PKG}.{module}", "--device", "cpu", "--model", str(model),
                   "--output_dir", str(out_dir), *extra]
            wall, _ = run(cmd, env, ROOT)
            folder = next(p.parent for p in out_dir.rglob("metrics.json"))
            m = json.loads((folder / "metrics.json").read_text())
            row = {"command": name, "module": f"{PKG}.{module}", "kind": kind, "settings": settings,
                   "args": extra, "time_per_iter_s": m["time_per_iter_s"], "first_iter_s": m["first_iter_s"],
                   "timed_iters": m["timed_iters"], "peak_rss_mb": m["peak_rss_mb"],
                   "rss_growth_in_loop_mb": round(max(m["peak_rss_mb"] - m["rss_before_loop_mb"], 0.0), 1),
                   "ratio_to_bare_sds_step": m["time_per_iter_s"] / ref["time_per_iter_s"], "process_wall_s": wall,
                   "pipeline": m["pipeline"]}
            rows.append(row)
            print(f"{name:28s} [{kind}] {row['time_per_iter_s']:.3f} s/iter  peak RSS {row['peak_rss_mb']:.0f} MiB "
                  f"(+{row['rss_growth_in_loop_mb']:.0f} in loop)  x{row['ratio_to_bare_sds_step']:.1f} of bare SDS")
    load_after = os.getloadavg()
    result = {"pipeline": "tiny-random", "device": "cpu", "threads": args.threads, "torch_threads_env": "OMP_NUM_THREADS",
              "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in load_after],
              "reference_bare_sds_step": ref, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "a4_sds.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# SDS commands: memory and time per iteration (tiny random pipeline, CPU)",
        "",
        "Measured with the **tiny randomly initialised Stable Diffusion checkpoint** "
        "(`a4_gaussians_diffusion/diffusion/tiny.py`, 64 x 64 images, 16 x 16 latents), not Stable Diffusion 2.1: "
        "real weights cannot be downloaded in this environment. "
        f"CPU, {args.threads} thread(s), load average {load_before[0]:.1f} before / {load_after[0]:.1f} after "
        f"on {os.cpu_count()} cores. Each command ran in a fresh process; peak RSS is the whole process "
        "(Python, torch, diffusers, model); growth is the peak minus the RSS just before the optimisation loop. "
        f"Bare SDS step (VAE encode + guided UNet + backward) of the same model: "
        f"{ref['time_per_iter_s']:.3f} s, peak RSS {ref['peak_rss_mb']:.0f} MiB.",
        "",
        "| command | settings | time / iteration (s) | first iteration (s) | peak RSS (MiB) "
        "| RSS growth in loop (MiB) | x bare SDS step |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| `{r['module'].split('.')[-1]}` {r['command']} | {r['settings']} | {r['time_per_iter_s']:.3f} | "
                     f"{r['first_iter_s']:.2f} | {r['peak_rss_mb']:.0f} | {r['rss_growth_in_loop_mb']:.0f} | "
                     f"{r['ratio_to_bare_sds_step']:.1f} |")
    (out / "a4_sds.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'a4_sds.json'}\nwrote {out / 'a4_sds.md'}")
    return result


if __name__ == "__main__":
    main()
