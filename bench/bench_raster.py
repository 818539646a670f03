"""Mesh rendering speed: l3d rasteriser + Phong + UV texture vs an Embree ray cast, same run.

    python bench/bench_raster.py [--size 512] [--repeats 5] [--frames 100]

1. The textured cow at 512x512 (rasterise, Phong shading, bilinear UV texture) against an Embree
   ray cast of the same view (trimesh + embreex: first hit of one ray per pixel, no shading).
2. The 100-frame 512x512 360-degree turntable GIF of the cow, rendered and written end to end
   (render and GIF encoding timed separately).
Both with this tree's renderer and with the baseline commit's (l3d/raster.py and l3d/shading.py
read from git; --no_baseline skips it), in the same run, with the peak memory of each phase and
the machine load. Prints the times and ratios and writes them to output/bench/raster.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as every l3d entry point (l3d/__init__.py); before torch loads
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_speed_common import BASELINE_COMMIT, PeakMemory, baseline_module, load_avg  # noqa: E402

from l3d.cameras import FoVPerspectiveCameras, ndc_pixel_centers, turntable_cameras  # noqa: E402
from l3d.data import load_mesh_or_standin  # noqa: E402
from l3d.media import save_gif  # noqa: E402
from l3d.shading import PointLights, render_mesh  # noqa: E402


def best_of(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), float(np.median(times))


def embree_ray_cast(mesh, cam, size):
    import trimesh
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    tm = trimesh.Trimesh(mesh.verts_packed().numpy(), mesh.faces_packed().numpy(), process=False)
    caster = RayMeshIntersector(tm)
    grid = ndc_pixel_centers(size).reshape(-1, 2)
    f = cam.focal_length[0]
    d_view = torch.cat([grid / f, torch.ones(len(grid), 1)], 1)  # ray directions in view space
    dirs = (d_view @ cam.R[0].T).numpy().astype(np.float64)  # to world (row vectors)
    origins = np.repeat(cam.get_camera_center().numpy().astype(np.float64), len(dirs), 0)

    def cast():
        return caster.intersects_first(origins, dirs)

    return cast


def baseline_render_mesh():
    """``render_mesh`` of the baseline commit (its rasteriser and shading), or None without git."""
    raster = baseline_module("l3d/raster.py", "_baseline_raster", package="l3d")
    if raster is None:
        return None
    shading = baseline_module("l3d/shading.py", "_baseline_shading", package="l3d",
                              replace={"from .raster import": "from ._baseline_raster import"})
    return shading.render_mesh


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512, help="image size in pixels")
    ap.add_argument("--repeats", type=int, default=7, help="timed repetitions (best and median reported)")
    ap.add_argument("--frames", type=int, default=100, help="turntable frames")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--no_baseline", action="store_true", help="time this tree's renderer only")
    ap.add_argument("--output", default="output/bench/raster.json", help="where to write the numbers")
    ap.add_argument("--device", default="cpu", help="cpu or cuda: where l3d renders (Embree always runs on the CPU)")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    cpu_mesh = load_mesh_or_standin("a1/cow.obj")
    mesh = cpu_mesh.to(dev)
    cam = FoVPerspectiveCameras(R=torch.eye(3)[None], T=torch.tensor([[0.0, 0.0, 3.0]])).to(dev)
    lights = PointLights(location=((0.0, 0.0, -3.0),))
    renderers = {"new": render_mesh}
    old = None if args.no_baseline else baseline_render_mesh()
    if old is not None:
        renderers["baseline"] = old
    print(f"baseline: l3d/raster.py + l3d/shading.py of commit {BASELINE_COMMIT}; {args.threads} thread(s); "
          f"device {args.device}; load {load_avg()}")

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def one_frame(fn):
        img = fn(mesh, cam, args.size, lights=lights)
        sync()
        return img

    cast = embree_ray_cast(cpu_mesh, cam.to("cpu"), args.size)
    res = {"image_size": args.size, "threads": args.threads, "device": args.device, "baseline_commit": BASELINE_COMMIT,
           "load_start": load_avg()}
    # interleave the three so that they see the same load
    times = {name: [] for name in list(renderers) + ["embree"]}
    mems = {name: PeakMemory(dev) for name in renderers}
    for name, fn in renderers.items():
        one_frame(fn)  # warm-up
    cast()
    for _ in range(args.repeats):
        for name, fn in renderers.items():
            with mems[name]:
                t = time.perf_counter()
                one_frame(fn)
                times[name].append(time.perf_counter() - t)
        t = time.perf_counter()
        cast()
        times["embree"].append(time.perf_counter() - t)
    hits = cast() >= 0
    mask = one_frame(render_mesh)[0, ..., 3].reshape(-1).cpu().numpy() > 0
    agree = float((hits == mask).mean())
    if "baseline" in renderers:
        res["max_abs_diff_vs_baseline"] = float((one_frame(render_mesh) - one_frame(renderers["baseline"])).abs().max())
    best = {k: min(v) for k, v in times.items()}
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"cow {args.size}x{args.size}, raster + Phong + UV (best / median of {args.repeats}, load {load_avg()}):")
    for name in renderers:
        print(f"  l3d {name:8s}: {best[name] * 1e3:6.1f} / {med[name] * 1e3:6.1f} ms; ratio Embree / l3d "
              f"{best['embree'] / best[name]:.2f} (best), {med['embree'] / med[name]:.2f} (median); {mems[name].text()}")
        res[name] = {"render_ms": best[name] * 1e3, "render_median_ms": med[name] * 1e3,
                     "ratio_embree_over_l3d": best["embree"] / best[name],
                     "ratio_embree_over_l3d_median": med["embree"] / med[name], **mems[name].as_dict()}
    print(f"  Embree ray cast: {best['embree'] * 1e3:6.1f} / {med['embree'] * 1e3:6.1f} ms; silhouette agreement "
          f"{agree:.4f}" + (f"; max |new - baseline| {res['max_abs_diff_vs_baseline']:.1e}" if old else ""))
    res.update({"embree_raycast_ms": best["embree"] * 1e3, "embree_raycast_median_ms": med["embree"] * 1e3,
                "silhouette_agreement": agree})

    out_gif = Path("output/bench/turntable_bench.gif")
    cams = turntable_cameras(args.frames, dist=3.0).to(dev)
    res["turntable_frames"] = args.frames
    for name, fn in renderers.items():
        with PeakMemory(dev) as mem:
            t = time.perf_counter()
            frames = fn(mesh, cams, args.size, lights=PointLights(location=cams.get_camera_center()), batch_size=10)
            frames = frames[..., :3].cpu()
            t_render = time.perf_counter() - t
            save_gif(out_gif, frames, fps=15)
            total = time.perf_counter() - t
        print(f"{args.frames}-frame {args.size}x{args.size} turntable GIF, l3d {name}: {total:.2f} s "
              f"(render {t_render:.2f} s, GIF {total - t_render:.2f} s; load {load_avg()}); {mem.text()}")
        res[name].update({"turntable_gif_s": total, "turntable_render_s": t_render,
                          "turntable_encode_s": total - t_render, "turntable_peak": mem.as_dict()})
    res["load_end"] = load_avg()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(res, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
