"""Mesh rendering speed: l3d rasteriser + Phong + UV texture vs an Embree ray cast, same run.

    python bench/bench_raster.py [--size 512] [--repeats 5] [--frames 100]

1. The textured cow at 512x512 (rasterise, Phong shading, bilinear UV texture) against an Embree
   ray cast of the same view (trimesh + embreex: first hit of one ray per pixel, no shading).
2. The 100-frame 512x512 360-degree turntable GIF of the cow, rendered and written end to end.
Prints the times and ratios and writes them to output/bench/raster.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from l3d.cameras import FoVPerspectiveCameras, ndc_pixel_centers, turntable_cameras  # noqa: E402
from l3d.data import load_mesh_or_standin  # noqa: E402
from l3d.io import save_gif  # noqa: E402
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512, help="image size in pixels")
    ap.add_argument("--repeats", type=int, default=5, help="timed repetitions (best and median reported)")
    ap.add_argument("--frames", type=int, default=100, help="turntable frames")
    ap.add_argument("--output", default="output/bench/raster.json", help="where to write the numbers")
    ap.add_argument("--device", default="cpu", help="cpu or cuda: where l3d renders (Embree always runs on the CPU)")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    dev = torch.device(args.device)
    cpu_mesh = load_mesh_or_standin("a1/cow.obj")
    mesh = cpu_mesh.to(dev)
    cam = FoVPerspectiveCameras(R=torch.eye(3)[None], T=torch.tensor([[0.0, 0.0, 3.0]])).to(dev)
    lights = PointLights(location=((0.0, 0.0, -3.0),))

    def ours_render():
        img = render_mesh(mesh, cam, args.size, lights=lights)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return img

    ours = best_of(ours_render, args.repeats)
    cast = embree_ray_cast(cpu_mesh, cam.to("cpu"), args.size)
    ref = best_of(cast, args.repeats)
    # check both see the same silhouette
    hits = cast() >= 0
    mask = ours_render()[0, ..., 3].reshape(-1).cpu().numpy() > 0
    agree = float((hits == mask).mean())
    print(f"cow {args.size}x{args.size}: l3d raster+Phong+UV {ours[0]*1e3:.1f} ms (median {ours[1]*1e3:.1f}), "
          f"Embree ray cast {ref[0]*1e3:.1f} ms (median {ref[1]*1e3:.1f}); "
          f"ratio embree/l3d = {ref[0]/ours[0]:.2f} (>= 1 means l3d is no slower); silhouette agreement {agree:.4f}")

    out_gif = Path("output/bench/turntable_bench.gif")
    cams = turntable_cameras(args.frames, dist=3.0).to(dev)

    def turntable():
        light_loc = cams.get_camera_center()  # light at the camera
        frames = render_mesh(mesh, cams, args.size, lights=PointLights(location=light_loc), batch_size=10)
        save_gif(out_gif, frames[..., :3].cpu(), fps=15)

    t = time.perf_counter()
    turntable()
    gif_s = time.perf_counter() - t
    print(f"{args.frames}-frame {args.size}x{args.size} turntable GIF (render + write): {gif_s:.2f} s "
          f"(goal < 5 s; ratio goal/actual = {5.0/gif_s:.2f}) on {args.device}, {torch.get_num_threads()} threads")
    res = {
        "image_size": args.size,
        "l3d_render_ms": ours[0] * 1e3, "l3d_render_median_ms": ours[1] * 1e3,
        "embree_raycast_ms": ref[0] * 1e3, "embree_raycast_median_ms": ref[1] * 1e3,
        "ratio_embree_over_l3d": ref[0] / ours[0], "silhouette_agreement": agree,
        "turntable_frames": args.frames, "turntable_gif_s": gif_s, "threads": torch.get_num_threads(),
        "device": args.device,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(res, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
