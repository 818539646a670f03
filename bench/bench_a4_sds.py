"""Benchmark: peak memory and time per iteration of every SDS command, and of each precision / memory flag set.

    python bench/bench_a4_sds.py [--threads 1] [--skip-course]            # tiny random pipeline, CPU
    python bench/bench_a4_sds.py --device cuda --model /path/to/sd21base --only-flags   # on a GPU, real weights

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

Flag sets (second table): each part (image, mesh texture, NeRF) runs a few steps with each set of
precision and memory flags (``--fp16``, ``--attention_slicing``, ``--vae_tiling``, ``--cpu_offload
model|sequential``) in a fresh process, and the table lists its ``peak_memory_mb`` (CUDA:
``torch.cuda.max_memory_allocated`` since the model was loaded; CPU: the process's peak RSS) and
``time_per_iter_s``. On CUDA the sets start from fp32 and fp16; on the CPU fp16 is refused by the
scripts, so the CPU sets are float32 only. With ``--model`` a real checkpoint (e.g.
stabilityai/stable-diffusion-2-1-base from the local cache) is measured instead of the tiny one.

Writes output/bench/a4_sds.json and the markdown tables output/bench/a4_sds.md.
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

#: Precision / memory flag sets of the second table: (name, flags, CUDA only).
FLAG_SETS = [
    ("fp32", [], False),
    ("fp32 + attention slicing", ["--attention_slicing"], False),
    ("fp32 + VAE tiling", ["--vae_tiling"], False),
    ("fp32 + sequential offload", ["--cpu_offload", "sequential"], False),
    ("fp16", ["--fp16"], True),
    ("fp16 + attention slicing", ["--fp16", "--attention_slicing"], True),
    ("fp16 + attention slicing + VAE tiling", ["--fp16", "--attention_slicing", "--vae_tiling"], True),
    ("fp16 + model offload", ["--fp16", "--cpu_offload", "model"], True),
    ("fp16 + attention slicing + VAE tiling + sequential offload",
     ["--fp16", "--attention_slicing", "--vae_tiling", "--cpu_offload", "sequential"], True),
]
#: (part, module, args) of the flag-set runs: --quick sizes (the diffusion model still sees its own
#: image size: the renders are resized to it before the VAE), no probes, no intermediate outputs.
FLAG_PARTS = [
    ("image", "image_optimization", ["--quick", "--snapshot_every", "1000"]),
    ("mesh texture", "mesh_optimization", ["--quick", "--snapshot_every", "1000", "--num_frames", "4",
                                           "--probe_every", "1000"]),
    ("NeRF", "nerf_optimization", ["--quick", "--snapshot_every", "1000", "--eval_every", "0", "--num_frames", "4",
                                   "--probe_every", "1000"]),
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


def flag_set_rows(model: str, device: str, steps: int, env: dict, tmp: Path) -> list:
    """Run every part with every flag set (fresh process each); one row per run."""
    rows = []
    for name, flags, cuda_only in FLAG_SETS:
        if cuda_only and device == "cpu":
            continue
        for part, module, extra in FLAG_PARTS:
            out_dir = tmp / f"flags_{len(rows)}"
            cmd = [sys.executable, "-m", f"{PKG}.{module}", "--device", device, "--model", model,
                   "--output_dir", str(out_dir), *extra, "--steps", str(steps), *flags]
            wall, _ = run(cmd, env, ROOT)
            folder = next(p.parent for p in out_dir.rglob("metrics.json"))
            m = json.loads((folder / "metrics.json").read_text())
            row = {"part": part, "flag_set": name, "flags": flags, "steps": steps,
                   "peak_memory_mb": m["peak_memory_mb"], "peak_memory_kind": m["peak_memory_kind"],
                   "time_per_iter_s": m["time_per_iter_s"], "memory_options": m.get("memory_options"),
                   "process_wall_s": wall, "pipeline": m["pipeline"], "device": m["device"]}
            rows.append(row)
            print(f"{part:13s} {name:58s} peak {row['peak_memory_mb']:8.0f} MiB  {row['time_per_iter_s']:.3f} s/iter")
    return rows


def flag_table(rows: list) -> list:
    """Markdown: a row per flag set, peak memory and s/iteration per part."""
    parts = [p for p, _, _ in FLAG_PARTS]
    lines = ["| flags | " + " | ".join(f"{p}: peak MiB | {p}: s / iter" for p in parts) + " |",
             "| --- |" + " --- | --- |" * len(parts)]
    for name in dict.fromkeys(r["flag_set"] for r in rows):
        cells = []
        for p in parts:
            r = next((r for r in rows if r["flag_set"] == name and r["part"] == p), None)
            cells += [f"{r['peak_memory_mb']:.0f}", f"{r['time_per_iter_s']:.3f}"] if r else ["-", "-"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of every run (OMP_NUM_THREADS)")
    ap.add_argument("--skip-course", action="store_true", help="only the --quick rows")
    ap.add_argument("--only-flags", action="store_true", help="only the flag-set table (no per-command rows)")
    ap.add_argument("--skip-flags", action="store_true", help="no flag-set table")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                    help="device of the flag-set runs (auto: CUDA when present); the per-command rows run on the CPU")
    ap.add_argument("--model", default="tiny",
                    help="checkpoint of the flag-set runs: 'tiny' (the tiny random one) or a diffusers folder / "
                         "hub id in the local cache")
    ap.add_argument("--flag-steps", type=int, default=6, help="steps of each flag-set run (the first is not timed)")
    ap.add_argument("--out", default=str(ROOT / "output" / "bench"), help="folder for a4_sds.json / a4_sds.md")
    args = ap.parse_args(argv)
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads), MPLBACKEND="Agg")
    if "L3D_DATA" not in env and (ROOT.parent / "shared" / "data").is_dir():
        env["L3D_DATA"] = str(ROOT.parent / "shared" / "data")
    load_before = os.getloadavg()
    rows, flag_rows, ref = [], [], None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from a4_gaussians_diffusion.diffusion.tiny import build_tiny_pipeline

        model = build_tiny_pipeline(tmp / "tiny_sd")
        if not args.only_flags:
            wall, out = run([sys.executable, "-c", REFERENCE, str(model), "8"], env, ROOT)
            ref = json.loads(out.strip().splitlines()[-1])
            print(f"reference: bare SDS step {ref['time_per_iter_s']:.3f} s, peak RSS {ref['peak_rss_mb']:.0f} MiB")
            todo = [("quick",) + c for c in COMMANDS] + ([] if args.skip_course else [("course",) + c for c in COURSE])
        else:
            todo = []
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
        if not args.skip_flags:
            flag_model = str(model) if args.model == "tiny" else args.model
            flag_rows = flag_set_rows(flag_model, device, args.flag_steps, env, tmp)
    load_after = os.getloadavg()
    result = {"pipeline": "tiny-random", "device": "cpu", "threads": args.threads,
              "torch_threads_env": "OMP_NUM_THREADS",
              "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in load_after],
              "reference_bare_sds_step": ref, "rows": rows,
              "flag_sets": {"device": device, "model": args.model,
                            "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None, "rows": flag_rows}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "a4_sds.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = []
    if rows:
        lines += [
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
            lines.append(f"| `{r['module'].split('.')[-1]}` {r['command']} | {r['settings']} | "
                         f"{r['time_per_iter_s']:.3f} | {r['first_iter_s']:.2f} | {r['peak_rss_mb']:.0f} | "
                         f"{r['rss_growth_in_loop_mb']:.0f} | {r['ratio_to_bare_sds_step']:.1f} |")
    if flag_rows:
        where = (f"CUDA ({result['flag_sets']['gpu']}): peak = torch.cuda.max_memory_allocated since the model was "
                 "loaded" if device == "cuda" else
                 f"CPU, {args.threads} thread(s): peak = the process's peak RSS (fp16 is refused on the CPU)")
        lines += (["", ""] if lines else []) + [
            "# Precision and memory flags: peak memory and time per iteration "
            f"({'tiny random pipeline' if args.model == 'tiny' else args.model})",
            "",
            f"{where}; {args.flag_steps} steps per run at --quick sizes, each in a fresh process; "
            f"load average {load_before[0]:.1f} before / {load_after[0]:.1f} after.",
            "",
            *flag_table(flag_rows),
        ]
    (out / "a4_sds.md").write_text("\n".join(lines) + "\n")
    print("\n".join(flag_table(flag_rows)) if flag_rows else "")
    print(f"wrote {out / 'a4_sds.json'}\nwrote {out / 'a4_sds.md'}")
    return result


if __name__ == "__main__":
    main()
