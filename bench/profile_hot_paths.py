"""Where the time of the unmet speed goals goes: torch's profiler over each hot path, operator by
operator, and the share no operator accounts for (Python, dispatch, allocation).

    python bench/profile_hot_paths.py [--threads 2] [--top 12] [--only raster turntable gauss_step gauss_big]

* ``raster``: one 512x512 frame of the cow (raster + Phong + UV);
* ``turntable``: a 100-frame 512x512 turntable, rendered (batches of 10) then written as a GIF;
* ``gauss_step``: one Gaussian training iteration at 160x90 with 10,000 Gaussians (render, L1, backward, Adam);
* ``gauss_big``: one frame of 111,000 Gaussians at 648x420 (the cow filling about half of it).

Each path runs twice unprofiled (warm-up, then timed), then once under the profiler. Prints, per
path, the wall time, the operators with the most self CPU time, and the unaccounted share; writes
output/bench/profile_hot_paths.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as every l3d entry point; before torch loads
import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "a4_gaussians"))

from bench_speed_common import load_avg  # noqa: E402

PATHS = ("raster", "turntable", "gauss_step", "gauss_big")


def setup(name: str):
    """A zero-argument callable running one instance of the hot path."""
    from l3d.cameras import FoVPerspectiveCameras, PerspectiveCameras, look_at_view_transform, turntable_cameras
    from l3d.data import load_mesh_or_standin
    from l3d.media import save_gif
    from l3d.shading import PointLights, render_mesh

    if name in ("raster", "turntable"):
        mesh = load_mesh_or_standin("a1/cow.obj")
        if name == "raster":
            cam = FoVPerspectiveCameras(R=torch.eye(3)[None], T=torch.tensor([[0.0, 0.0, 3.0]]))
            lights = PointLights(location=((0.0, 0.0, -3.0),))

            def run():
                with torch.no_grad():
                    render_mesh(mesh, cam, 512, lights=lights)
            return run
        cams = turntable_cameras(100, dist=3.0)
        gif = Path(tempfile.mkdtemp()) / "turntable.gif"

        def run():
            with torch.no_grad():
                frames = render_mesh(mesh, cams, 512, lights=PointLights(location=cams.get_camera_center()),
                                     batch_size=10)
            with torch.profiler.record_function("save_gif (encode)"):
                save_gif(gif, frames[..., :3], fps=15)
        return run
    from a4_gaussians_diffusion.gaussians.rasterize import RasterSettings, rasterize_gaussians

    if name == "gauss_step":
        from bench_a4_speed import course_scene

        from a4_gaussians_diffusion.gaussians.data import load_scene
        from a4_gaussians_diffusion.gaussians.losses import l1
        from a4_gaussians_diffusion.gaussians.trainer import TrainConfig, init_gaussians, make_optimizer, raster_settings

        scene = load_scene(course_scene(Path(tempfile.mkdtemp()) / "course_scene"))
        cfg = TrainConfig()
        settings = raster_settings(cfg, scene)
        model = init_gaussians(cfg, scene, torch.device("cpu"))
        opt = make_optimizer(model, cfg)
        it = [0]

        def run():
            v = scene.train_idx[(it[0] * 7) % len(scene.train_idx)]
            it[0] += 1
            out = rasterize_gaussians(model.means, model.covariance_3d(), model.opacities, model.colours,
                                      scene.cameras[v], settings)
            loss = l1(out.image, scene.images[v])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return run
    from a4_gaussians_diffusion.gaussians.standin import surface_gaussians

    h, w = 420, 648
    g = surface_gaussians(111000)
    R, T = look_at_view_transform(2.0, 20.0, 150.0, up=((0.0, -1.0, 0.0),))
    f = 1.2 * h
    cam = PerspectiveCameras(focal_length=((f, f),), principal_point=((w / 2, h / 2),), R=R, T=T, in_ndc=False,
                             image_size=(h, w))
    settings = RasterSettings((h, w), background=(0.0, 0.0, 0.0))

    def run():
        with torch.no_grad():
            rasterize_gaussians(g.means, g.covariance_3d(), g.opacities, g.colours, cam, settings)
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--top", type=int, default=12, help="operators listed per path")
    ap.add_argument("--only", nargs="+", choices=PATHS, default=list(PATHS))
    ap.add_argument("--output", default="output/bench/profile_hot_paths.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = {"threads": args.threads, "load_start": load_avg(), "paths": {}}
    for name in args.only:
        run = setup(name)
        run()
        t = time.perf_counter()
        run()
        wall = time.perf_counter() - t
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t = time.perf_counter()
            run()
            prof_wall = time.perf_counter() - t
        events = [e for e in prof.key_averages() if not e.key.startswith("ProfilerStep")]
        total_self_s = sum(e.self_cpu_time_total for e in events) / 1e6
        top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.top]
        rows = [{"op": e.key, "calls": e.count, "self_s": e.self_cpu_time_total / 1e6,
                 "share_of_wall": e.self_cpu_time_total / 1e6 / prof_wall} for e in top]
        calls = sum(e.count for e in events)
        unaccounted = max(0.0, prof_wall - total_self_s)
        res["paths"][name] = {"wall_s": wall, "profiled_wall_s": prof_wall, "operator_calls": calls,
                              "operators_self_s": total_self_s, "unaccounted_s": unaccounted, "top": rows,
                              "load": load_avg()}
        print(f"\n{name}: {wall * 1e3:.1f} ms unprofiled ({prof_wall * 1e3:.1f} ms profiled, {calls} operator calls, "
              f"{unaccounted / prof_wall:.0%} outside operators; load {load_avg()})")
        for r in rows:
            print(f"  {r['self_s'] * 1e3:9.2f} ms {r['share_of_wall']:6.1%} {r['calls']:6d}x  {r['op']}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
