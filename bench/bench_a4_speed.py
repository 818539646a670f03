"""Gaussian rasteriser speed: this tree against the baseline commit's rasteriser, in one run.

    python bench/bench_a4_speed.py [--threads 2] [--train_iters 20] [--num_big 111000] [--psnr]

1. Training iteration (render, L1 loss, backward, Adam step) at the course's scene size:
   160 x 90 frames of a course-format scene (black background, the cow rendered by l3d, 10 000
   surface points -> 10 000 isotropic Gaussians), the baseline and the new rasteriser stepping
   alternately from the same initial Gaussians; medians of wall and CPU time per iteration, and
   the largest gradient difference of the first step.
2. One frame of --num_big Gaussians (a synthetic layout: Gaussians on the cow's surface, the cow
   filling about half of the frame) at 648 x 420, baseline against new (best of --repeats): without
   gradients (with the image difference), then with the backward pass of a loss on image and depth.
3. With --psnr: 1000 training iterations (the training CLI's defaults) on the same scene with the
   new rasteriser, the test PSNR (and with --psnr_baseline the same run with the baseline).
Every phase prints its peak memory (CPU RSS, CUDA peak allocation on a GPU) and the machine load.
Writes the numbers to --output (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as every l3d entry point (l3d/__init__.py); before torch loads
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "a4_gaussians"))

from bench_speed_common import BASELINE_COMMIT, PeakMemory, baseline_module, load_avg  # noqa: E402

from a4_gaussians_diffusion.gaussians import rasterize as new_rast  # noqa: E402
from a4_gaussians_diffusion.gaussians.rasterize import RasterSettings  # noqa: E402
from l3d.cameras import PerspectiveCameras, look_at_view_transform  # noqa: E402


def course_scene(folder: Path, h: int = 90, w: int = 160) -> Path:
    """A course-format scene (the fixture of the course-format tests) at h x w."""
    import test_a4g_course_format as fixture

    fixture.H, fixture.W = h, w
    fixture.write_course_scene(folder)
    return folder


def render_with(rast, model, cam, settings):
    return rast.rasterize_gaussians(model.means, model.covariance_3d(), model.opacities, model.colours, cam, settings)


def train_phase(args, dev, old_rast, sync):
    from a4_gaussians_diffusion.gaussians.data import load_scene
    from a4_gaussians_diffusion.gaussians.losses import l1
    from a4_gaussians_diffusion.gaussians.trainer import TrainConfig, init_gaussians, make_optimizer, raster_settings

    folder = course_scene(Path(tempfile.mkdtemp()) / "course_scene")
    scene = load_scene(folder).to(dev)
    cfg = TrainConfig()
    settings = raster_settings(cfg, scene)
    runs = {}
    for name, rast in (("baseline", old_rast), ("new", new_rast)):
        if rast is None:
            continue
        model = init_gaussians(cfg, scene, dev)
        runs[name] = {"rast": rast, "model": model, "opt": make_optimizer(model, cfg), "wall": [], "cpu": []}

    # gradients of the first step agree
    grads = {}
    for name, r in runs.items():
        v = scene.train_idx[0]
        out = render_with(r["rast"], r["model"], scene.cameras[v], settings)
        l1(out.image, scene.images[v]).backward()
        grads[name] = {k: p.grad.clone() for k, p in r["model"].params().items() if p.grad is not None}
        r["opt"].zero_grad(set_to_none=True)
    grad_diff = None
    if len(grads) == 2:
        grad_diff = max(float((grads["new"][k] - grads["baseline"][k]).abs().max() / grads["baseline"][k].abs().max())
                        for k in grads["new"])

    def step(r, i):
        v = scene.train_idx[(i * 7) % len(scene.train_idx)]
        out = render_with(r["rast"], r["model"], scene.cameras[v], settings)
        loss = l1(out.image, scene.images[v])
        r["opt"].zero_grad(set_to_none=True)
        loss.backward()
        r["opt"].step()
        sync()

    mems = {name: PeakMemory(dev) for name in runs}
    for i in range(args.train_iters + 2):
        for name, r in runs.items():  # alternate: both see the same load
            with mems[name]:
                w, c = time.perf_counter(), time.process_time()
                step(r, i)
                w, c = time.perf_counter() - w, time.process_time() - c
            if i >= 2:  # two warm-up iterations
                r["wall"].append(w)
                r["cpu"].append(c)
    res = {"image_size": [90, 160], "num_gaussians": runs["new"]["model"].num_gaussians,
           "first_step_max_rel_grad_diff": grad_diff}
    for name, r in runs.items():
        res[name] = {"iter_wall_s": statistics.median(r["wall"]), "iter_cpu_s": statistics.median(r["cpu"]),
                     **mems[name].as_dict()}
    print(f"training iteration, 160x90, {res['num_gaussians']} Gaussians, {torch.get_num_threads()} thread(s), "
          f"load {load_avg()}:")
    for name in runs:
        print(f"  {name:8s}: {res[name]['iter_wall_s'] * 1e3:7.1f} ms wall, {res[name]['iter_cpu_s'] * 1e3:7.1f} ms CPU "
              f"(median of {args.train_iters}); {mems[name].text()}")
    if "baseline" in runs:
        res["speedup_wall"] = res["baseline"]["iter_wall_s"] / res["new"]["iter_wall_s"]
        res["speedup_cpu"] = res["baseline"]["iter_cpu_s"] / res["new"]["iter_cpu_s"]
        print(f"  speed-up {res['speedup_wall']:.2f}x wall, {res['speedup_cpu']:.2f}x CPU; first-step gradients: "
              f"largest difference {grad_diff:.1e} of the largest gradient")
    return res


def big_phase(args, dev, old_rast, sync):
    from a4_gaussians_diffusion.gaussians.standin import surface_gaussians

    h, w = 420, 648
    g = surface_gaussians(args.num_big).to(dev)
    R, T = look_at_view_transform(2.0, 20.0, 150.0, up=((0.0, -1.0, 0.0),))  # the cow fills about half the frame
    f = 1.2 * h
    cam = PerspectiveCameras(focal_length=((f, f),), principal_point=((w / 2, h / 2),), R=R, T=T, in_ndc=False,
                             image_size=(h, w)).to(dev)
    settings = RasterSettings((h, w), background=(0.0, 0.0, 0.0))
    res = {"image_size": [h, w], "num_gaussians": args.num_big}
    outs = {}
    with torch.no_grad():
        for name, rast in (("baseline", old_rast), ("new", new_rast)):
            if rast is None:
                continue
            render_with(rast, g, cam, settings)  # warm-up
            walls, cpus = [], []
            with PeakMemory(dev) as mem:
                for _ in range(args.repeats):
                    t, c = time.perf_counter(), time.process_time()
                    outs[name] = render_with(rast, g, cam, settings)
                    sync()
                    walls.append(time.perf_counter() - t)
                    cpus.append(time.process_time() - c)
            res[name] = {"frame_wall_s": min(walls), "frame_cpu_s": min(cpus), **mem.as_dict()}
        proj = new_rast.project_gaussians(g.means, g.covariance_3d(), g.opacities, g.colours, cam, settings)
        bins = new_rast.bin_gaussians(proj, (h, w), settings.tile_size, settings.pixel_offset)
    # the same frame with gradients (render + backward of a loss on image and depth)
    for name, rast in (("baseline", old_rast), ("new", new_rast)):
        if rast is None:
            continue
        walls, cpus = [], []
        with PeakMemory(dev) as mem:
            for _ in range(args.repeats):
                g.zero_grad(set_to_none=True)
                t, c = time.perf_counter(), time.process_time()
                out = render_with(rast, g, cam, settings)
                (out.image.sum() + out.depth.mean()).backward()
                sync()
                walls.append(time.perf_counter() - t)
                cpus.append(time.process_time() - c)
        res[name].update({"grad_wall_s": min(walls), "grad_cpu_s": min(cpus),
                          "grad_peak_rss_delta_mib": mem.rss_delta_mib, "grad_cuda_peak_mib": mem.cuda_mib})
    res["pairs"] = int(len(bins.gaussians))
    res["coverage"] = float(outs["new"].mask.mean())
    print(f"one frame, {args.num_big} Gaussians at {w}x{h} ({res['pairs']} Gaussian-tile pairs, coverage "
          f"{res['coverage']:.2f}), {torch.get_num_threads()} thread(s), load {load_avg()}:")
    for name in outs:
        print(f"  {name:8s}: {res[name]['frame_wall_s']:.3f} s wall, {res[name]['frame_cpu_s']:.3f} s CPU "
              f"(best of {args.repeats}); peak RSS {res[name]['peak_rss_mib']:.0f} MiB; with backward "
              f"{res[name]['grad_wall_s']:.3f} s wall, {res[name]['grad_cpu_s']:.3f} s CPU, peak RSS "
              f"+{res[name]['grad_peak_rss_delta_mib']:.0f} MiB"
              + (f", CUDA peak {res[name]['grad_cuda_peak_mib']:.0f} MiB" if res[name]["grad_cuda_peak_mib"] else ""))
    if "baseline" in outs:
        res["max_abs_image_diff"] = float((outs["new"].image - outs["baseline"].image).abs().max())
        res["speedup_wall"] = res["baseline"]["frame_wall_s"] / res["new"]["frame_wall_s"]
        print(f"  speed-up {res['speedup_wall']:.2f}x wall; max |new - baseline| = {res['max_abs_image_diff']:.1e}")
    return res


def psnr_phase(args, old_rast):
    from a4_gaussians_diffusion.gaussians import model as model_mod
    from a4_gaussians_diffusion.gaussians import train as train_cli

    folder = course_scene(Path(tempfile.mkdtemp()) / "course_scene")
    res = {}
    variants = [("new", new_rast)] + ([("baseline", old_rast)] if args.psnr_baseline and old_rast else [])
    for name, rast in variants:
        out = Path(tempfile.mkdtemp()) / name
        saved = model_mod.rasterize_gaussians
        model_mod.rasterize_gaussians = rast.rasterize_gaussians
        try:
            with PeakMemory() as mem:
                t = time.perf_counter()
                train_cli.main(["--data_path", str(folder), "--num_itrs", "1000", "--viz_every", "100000",
                                "--ckpt_every", "0", "--output_dir", str(out), "--device", "cpu"])
                secs = time.perf_counter() - t
        finally:
            model_mod.rasterize_gaussians = saved
        m = json.loads((out / "metrics.json").read_text())
        res[name] = {"psnr": m["psnr"], "train_s": secs, **mem.as_dict()}
        print(f"1000 iterations, 160x90 course-format scene ({name}): test PSNR {m['psnr']:.2f} dB in {secs:.1f} s, "
              f"load {load_avg()}; {mem.text()}")
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--train_iters", type=int, default=20, help="timed training iterations per rasteriser")
    ap.add_argument("--num_big", type=int, default=111000, help="Gaussians of the large frame")
    ap.add_argument("--repeats", type=int, default=3, help="timed renders of the large frame (best reported)")
    ap.add_argument("--psnr", action="store_true", help="also train 1000 iterations and report the test PSNR")
    ap.add_argument("--psnr_baseline", action="store_true", help="with --psnr: the same run with the baseline too")
    ap.add_argument("--no_baseline", action="store_true", help="time the new rasteriser only")
    ap.add_argument("--skip", nargs="*", default=[], choices=["train", "big"], help="phases to leave out")
    ap.add_argument("--output", default="output/bench/a4_speed.json", help="where to write the numbers")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    torch.set_num_threads(args.threads)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    old_rast = None
    if not args.no_baseline:
        old_rast = baseline_module("a4_gaussians_diffusion/gaussians/rasterize.py", "_baseline_gauss_rasterize")
        if old_rast is None:
            print(f"baseline {BASELINE_COMMIT} not available (no git); timing the new rasteriser only")
    print(f"baseline: rasteriser of commit {BASELINE_COMMIT}; device {args.device}; load {load_avg()}")
    res = {"threads": args.threads, "device": args.device, "baseline_commit": BASELINE_COMMIT, "load_start": load_avg()}
    if "train" not in args.skip:
        res["train"] = train_phase(args, dev, old_rast, sync)
    if "big" not in args.skip:
        res["big"] = big_phase(args, dev, old_rast, sync)
    if args.psnr:
        res["psnr"] = psnr_phase(args, old_rast)
    res["load_end"] = load_avg()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
