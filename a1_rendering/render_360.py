"""1.1 360-degree render: a GIF of the camera circling the cow (look_at, elev fixed, azim 0..360).

    python -m a1_rendering.render_360 --num_frames 36 --fps 15 --output_file output/a1_rendering/cow_360.gif
"""

from __future__ import annotations

import time

from a1_rendering.common import add_mesh_flags, load_mesh
from l3d.cli import output_path, report, script_parser
from l3d.io import save_gif_with_png
from l3d.train import choose_device, run_cli
from l3d.viz import render_mesh_turntable, with_vertex_colors


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/render_360", output_file="cow_360.gif")
    add_mesh_flags(ap)
    ap.add_argument("--num_frames", type=int, default=36, help="frames in the turntable")
    ap.add_argument("--fps", type=float, default=15, help="GIF frame rate (frame duration 1000/fps ms)")
    ap.add_argument("--image_size", type=int, default=256, help="frame size in pixels")
    ap.add_argument("--dist", type=float, default=3.0, help="camera distance from the origin")
    ap.add_argument("--elev", type=float, default=0.0, help="camera elevation in degrees")
    ap.add_argument("--color", type=float, nargs=3, default=None, metavar=("R", "G", "B"),
                    help="flat mesh colour instead of the mesh's texture")
    args = ap.parse_args(argv)
    if args.quick:
        args.num_frames, args.image_size = min(args.num_frames, 8), min(args.image_size, 96)
    if args.num_frames < 1:
        raise ValueError("--num_frames must be at least 1")
    mesh = load_mesh(args, choose_device(args.device))
    if args.color is not None:
        mesh = with_vertex_colors(mesh, args.color)
    t = time.perf_counter()
    frames = render_mesh_turntable(mesh, args.num_frames, args.dist, args.elev, image_size=args.image_size)
    render_s = time.perf_counter() - t
    gif, png = save_gif_with_png(output_path(args, "cow_360.gif"), frames, fps=args.fps)
    report(args.output_dir, {"num_frames": args.num_frames, "image_size": args.image_size,
                             "render_time_per_frame_s": render_s / args.num_frames}, [gif, png])


if __name__ == "__main__":
    run_cli(main)
