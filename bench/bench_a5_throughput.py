"""Assignment 5 training throughput: point clouds per second at 10000 points per cloud, and the
model's achieved FLOP/s as a fraction of a plain float32 matmul's FLOP/s measured in the same run.

    python bench/bench_a5_throughput.py [--device cpu|cuda] [--batch_size 4] [--num_points 10000]
    python bench/bench_a5_throughput.py --peak_memory [--quick_models] [--models cls:transformer ...]

For each model (PointNet cls and seg, PointNet++ cls and seg, the papers' widths) one training step
(forward, cross-entropy, backward, Adam) is timed after a warm-up; its FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode`` (matmuls/convolutions: 2 per multiply-add; the
point ops of PointNet++ -- farthest-point sampling, ball query, top-k -- are not counted, so its
fraction understates the work done). Writes output/bench/a5_throughput.json.

``--peak_memory``: instead, the peak memory of one evaluation forward pass (eval mode, no
gradients) of one cloud of --num_points points per model, each in a fresh child process: on the
CPU the process's peak resident set size during the pass minus its resident size just before
(Linux: the peak, ``VmHWM``, is reset through ``/proc/self/clear_refs`` before the pass; it sees
torch's allocations, unlike ``tracemalloc``; elsewhere the growth of ``getrusage`` maxrss); on CUDA
``torch.cuda.max_memory_allocated`` above the memory held before the pass. The CPU child pins
glibc's mmap threshold at 1 MiB (``mallopt``), so that every large tensor is mapped and unmapped
on its own: with glibc's default sliding threshold, freed blocks of the Transformer's repeated
16 MiB attention blocks stayed resident without being reused (1.5 GB instead of tens of MiB at
10000 points), which measures the allocator rather than the model. ``--quick_models``
builds the models of the ``--quick`` presets of ``a5_pointnet.train`` (half width) instead of the
papers' widths. For the global Transformer it is also measured with the query blocks of its
attention disabled (``transformer_unbounded``), and with PyTorch's plain "math" attention kernel,
which forms the score matrix, with and without the blocks (``transformer_math``,
``transformer_math_unbounded``; the fused kernel that PyTorch picks on a CPU never forms it).
Writes output/bench/a5_peak_memory.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
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


def model_config(task: str, arch: str, quick: bool) -> ModelConfig:
    """The model of ``train --task task --model arch`` (with ``--quick`` when ``quick``)."""
    from a5_pointnet.train import build_parser

    k = 3 if task == "cls" else 6
    args = build_parser(task, arch).parse_args(["--task", task, "--model", arch] + (["--quick"] if quick else []))
    return ModelConfig(task=task, arch=arch, num_classes=k, width=args.width, sa_points=tuple(args.sa_points),
                       sa_samples=tuple(args.sa_samples), sa_radius=tuple(args.sa_radius), depth=args.depth,
                       heads=args.heads, neighbors=args.neighbors)


def _proc_status(key: str) -> int:
    """A memory line of /proc/self/status in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak_rss() -> int:
    """Reset the peak resident set size where Linux allows it; return the baseline to subtract."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset VmHWM to the current VmRSS
        return _proc_status("VmRSS")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _peak_rss() -> int:
    try:
        return _proc_status("VmHWM")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _pin_mmap_threshold(nbytes: int = 1 << 20) -> bool:
    """glibc: serve every allocation of ``nbytes`` or more by its own mmap (see the module doc)."""
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, nbytes))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def forward_peak(spec: str, device_name: str, points: int, quick: bool) -> dict:
    """Child process: peak memory of one no-grad forward pass of one cloud (see the module doc)."""
    pinned = _pin_mmap_threshold()
    task, arch = spec.split(":")
    unbounded, math_kernel = arch.endswith("_unbounded"), "_math" in arch
    if arch.startswith("transformer_"):
        arch = "transformer"
    device = choose_device(device_name)
    torch.manual_seed(0)
    model = build_model(model_config(task, arch, quick)).to(device).eval()
    if unbounded:
        model.encoder.set_budget(1 << 62)
    x = torch.rand(1, points, 3, device=device) * 2 - 1
    with torch.no_grad():
        model(x[:, :64])  # warm-up on a few points: lazy initialisation is not the pass's memory
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    rss0 = _reset_peak_rss()
    t = time.perf_counter()
    kernel = sdpa_kernel(SDPBackend.MATH) if math_kernel else contextlib.nullcontext()
    with torch.no_grad(), kernel:
        model(x)
    _sync(device)
    dt = time.perf_counter() - t
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - before
    else:
        peak = _peak_rss() - rss0
    return {"task": task, "model": spec.split(":")[1], "num_points": points, "device": str(device),
            "peak_bytes": int(peak), "forward_s": dt, "parameters": sum(p.numel() for p in model.parameters()),
            "quick_models": quick, "mmap_threshold_pinned": pinned}


def peak_memory(args) -> int:
    rows = []
    for spec in args.models:
        cmd = [sys.executable, __file__, "--forward_child", spec, "--device", args.device,
               "--num_points", str(args.num_points)] + (["--quick_models"] if args.quick_models else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{r['task']:3s} {r['model']:21s}: peak {r['peak_bytes'] / 2**20:8.1f} MiB for one forward pass at "
              f"{r['num_points']} points ({r['forward_s']:.2f} s, {r['device']})", flush=True)
    out = Path(args.output if args.output != DEFAULT_OUTPUT else "output/bench/a5_peak_memory.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": torch.get_num_threads(), "models": rows}, indent=2))
    print(f"wrote {out}")
    return 0


DEFAULT_OUTPUT = "output/bench/a5_throughput.json"
ALL_MODELS = ["cls:pointnet", "seg:pointnet", "cls:pointnet2", "seg:pointnet2", "cls:transformer", "seg:transformer",
              "cls:point_transformer", "seg:point_transformer"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch_size", type=int, default=None, help="clouds per step (default: 4 on CPU, 32 on CUDA)")
    ap.add_argument("--num_points", type=int, default=10000)
    ap.add_argument("--reps", type=int, default=2, help="timed steps per model")
    ap.add_argument("--models", nargs="+", default=None,
                    help="task:model pairs (default: PointNet and PointNet++; --peak_memory: all four models and "
                         "the cls Transformer's variants transformer_unbounded, _math, _math_unbounded)")
    ap.add_argument("--output", default=DEFAULT_OUTPUT)
    ap.add_argument("--peak_memory", action="store_true", help="measure the peak memory of one forward pass instead")
    ap.add_argument("--quick_models", action="store_true", help="--peak_memory: the --quick presets' models")
    ap.add_argument("--forward_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.forward_child:
        print(json.dumps(forward_peak(args.forward_child, args.device, args.num_points, args.quick_models)))
        return 0
    if args.peak_memory:
        args.models = args.models or [*ALL_MODELS, *(f"cls:transformer_{v}" for v in ("unbounded", "math",
                                                                                     "math_unbounded"))]
        return peak_memory(args)
    args.models = args.models or ALL_MODELS[:4]
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
