"""7 sampling points on meshes: draw N points uniformly by area on the cow's surface
(faces by area, uniform barycentrics) and show each point cloud beside the mesh in a 360 GIF.

    python -m a1_rendering.sample_points --num_samples 10 100 1000 10000
"""

from __future__ import annotations

import time

import torch

from a1_rendering.common import add_mesh_flags, load_mesh
from l3d.cli import report, script_parser
from l3d.io import save_gif_with_png
from l3d.ops import sample_points_from_meshes
from l3d.train import choose_device, run_cli
from l3d.viz import normalized_xyz_colors, render_mesh_turntable, render_points_turntable, side_by_side


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/sample_points")
    add_mesh_flags(ap)
    ap.add_argument("--num_samples", type=int, nargs="+", default=[10, 100, 1000, 10000], help="point counts N")
    ap.add_argument("--num_frames", type=int, default=36, help="frames per GIF")
    ap.add_argument("--fps", type=float, default=15, help="GIF frame rate")
    ap.add_argument("--image_size", type=int, default=256, help="size of each panel in pixels")
    ap.add_argument("--radius", type=float, default=0.015, help="point radius in NDC units")
    args = ap.parse_args(argv)
    if args.quick:
        args.num_frames, args.image_size = min(args.num_frames, 6), min(args.image_size, 96)
    if min(args.num_samples) < 1:
        raise ValueError("--num_samples must be positive")
    device = choose_device(args.device)
    torch.manual_seed(args.seed)
    mesh = load_mesh(args, device)
    mesh_frames = render_mesh_turntable(mesh, args.num_frames, 3.0, image_size=args.image_size)
    written, times = [], {}
    for n in args.num_samples:
        t = time.perf_counter()
        pts = sample_points_from_meshes(mesh, n)[0].detach()
        times[f"sample_time_s_{n}"] = time.perf_counter() - t
        frames = render_points_turntable(pts, normalized_xyz_colors(pts), args.num_frames, 3.0,
                                         image_size=args.image_size, radius=args.radius)
        written += save_gif_with_png(f"{args.output_dir}/samples_{n}.gif", side_by_side(mesh_frames, frames),
                                     fps=args.fps, which="first")
    report(args.output_dir, times, written)


if __name__ == "__main__":
    run_cli(main)
