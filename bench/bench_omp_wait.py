"""How torch's CPU threads behave when the cores are busy with something else, and what
``OMP_WAIT_POLICY=PASSIVE`` (the default every l3d entry point sets; see l3d/threads.py) changes.

    python bench/bench_omp_wait.py [--threads 2] [--frames 40] [--repeats 5]

Each workload runs in a fresh child process (the OpenMP runtime reads the policy once, when torch
loads it) under four conditions: the OpenMP runtime's own default or PASSIVE, on quiet cores or
with one busy-looping Python process per core beside it (another program using the machine: a
second training run, a browser, a compiler). Workloads:

* ``raster``: one 512x512 frame of the cow (raster + Phong + UV), median of --repeats, ms;
* ``turntable``: a --frames-frame 512x512 turntable rendered and written as a GIF, s;
* ``pointnet``: one PointNet classification training step (32 clouds x 1024 points), median, ms.

With the runtime's default (spin-waiting at the end of every parallel region), a thread whose
partner was descheduled spins through its time slice, and a render made of hundreds of short
parallel operations waits a slice per operation. Writes output/bench/omp_wait.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("raster", "turntable", "pointnet")


def child(workload: str, threads: int, frames: int, repeats: int) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(threads)
    from l3d.cameras import FoVPerspectiveCameras, turntable_cameras
    from l3d.data import load_mesh_or_standin
    from l3d.media import save_gif
    from l3d.shading import PointLights, render_mesh

    if workload in ("raster", "turntable"):
        torch.set_grad_enabled(False)
        mesh = load_mesh_or_standin("a1/cow.obj")
        cam = FoVPerspectiveCameras(R=torch.eye(3)[None], T=torch.tensor([[0.0, 0.0, 3.0]]))
        lights = PointLights(location=((0.0, 0.0, -3.0),))
        render_mesh(mesh, cam, 512, lights=lights)  # warm-up
        if workload == "raster":
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                render_mesh(mesh, cam, 512, lights=lights)
                times.append(time.perf_counter() - t)
            return {"ms": 1e3 * statistics.median(times), "max_ms": 1e3 * max(times)}
        cams = turntable_cameras(frames, dist=3.0)
        t = time.perf_counter()
        out = render_mesh(mesh, cams, 512, lights=PointLights(location=cams.get_camera_center()), batch_size=10)
        t_render = time.perf_counter() - t
        save_gif(ROOT / "output" / "bench" / "omp_wait_turntable.gif", out[..., :3], fps=15)
        return {"s": time.perf_counter() - t, "render_s": t_render}
    from a5_pointnet.models import ModelConfig, build_model

    model = build_model(ModelConfig(task="cls", arch="pointnet", num_classes=3))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x, y = torch.randn(32, 1024, 3), torch.randint(0, 3, (32,))
    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        loss = torch.nn.functional.nll_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t)
    return {"ms": 1e3 * statistics.median(times), "max_ms": 1e3 * max(times)}


def busy_loops(n: int) -> list:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the measured process")
    ap.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="busy-looping processes of the loaded case")
    ap.add_argument("--frames", type=int, default=40, help="turntable frames")
    ap.add_argument("--repeats", type=int, default=5, help="timed repetitions (median reported)")
    ap.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    ap.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    ap.add_argument("--output", default="output/bench/omp_wait.json")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.threads, args.frames, args.repeats)))
        return
    (ROOT / "output" / "bench").mkdir(parents=True, exist_ok=True)
    res = {"threads": args.threads, "busy_processes": args.busy, "cpus": os.cpu_count(), "results": []}
    print(f"{args.threads} torch thread(s), {os.cpu_count()} CPUs; loaded = {args.busy} busy-looping processes beside it")
    print(f"{'workload':10s} {'cores':7s} {'runtime default':>16s} {'PASSIVE':>10s} {'default/PASSIVE':>16s}")
    for w in args.workloads:
        for loaded in (False, True):
            row = {"workload": w, "loaded": loaded}
            for policy in ("default", "PASSIVE"):
                env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME")}
                env["L3D_OMP_WAIT_POLICY"] = "default" if policy == "default" else "PASSIVE"
                if policy == "PASSIVE":
                    env["OMP_WAIT_POLICY"] = "PASSIVE"
                procs = busy_loops(args.busy) if loaded else []
                try:
                    time.sleep(0.5 if loaded else 0)
                    out = subprocess.run([sys.executable, __file__, "--child", w, "--threads", str(args.threads),
                                          "--frames", str(args.frames), "--repeats", str(args.repeats)],
                                         env=env, capture_output=True, text=True, check=True, cwd=ROOT)
                finally:
                    for p in procs:
                        p.kill()
                        p.wait()
                row[policy] = json.loads(out.stdout.strip().splitlines()[-1])
            key = "s" if w == "turntable" else "ms"
            a, b = row["default"][key], row["PASSIVE"][key]
            row["ratio_default_over_passive"] = a / b
            res["results"].append(row)
            unit = " s" if key == "s" else " ms"
            print(f"{w:10s} {'loaded' if loaded else 'quiet':7s} {a:14.3g}{unit} {b:8.3g}{unit} {a / b:16.2f}", flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(res, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
