"""1.1 360-degree render: a GIF of the camera circling the cow (look_at, elev fixed, azim 0..360).

Checks (metrics.json): every frame's silhouette against surface samples projected by its camera,
the turn (widest / narrowest silhouette: the cow seen from the side and from the front), that
the GIF reads as motion, and its frames and seconds per turn read back from the file.

    python -m a1_rendering.render_360 --num_frames 36 --fps 15 --output_file output/a1_rendering/cow_360.gif
"""

from __future__ import annotations

import time

from a1_rendering.common import TURNTABLE_QUICK, add_mesh_flags, add_turntable_flags, load_mesh_labelled, own_colors, \
    render_turntable, report_checks, turntable_checks, unit_float
from l3d.cli import finite_float, output_path, positive_float, run_cli, script_parser
from l3d.media import save_gif_with_png
from l3d.train import choose_device
from l3d.viz import with_vertex_colors


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/render_360", output_file="cow_360.gif",
                       presets={"quick": TURNTABLE_QUICK})
    add_mesh_flags(ap)
    add_turntable_flags(ap)
    ap.add_argument("--dist", type=positive_float, default=3.0, help="camera distance from the origin")
    ap.add_argument("--elev", type=finite_float, default=0.0, help="camera elevation in degrees")
    ap.add_argument("--color", type=unit_float, nargs=3, default=None, metavar=("R", "G", "B"),
                    help="flat mesh colour (channels in [0, 1]) instead of the mesh's texture")
    args = ap.parse_args(argv)
    mesh, data, _ = load_mesh_labelled(args, choose_device(args.device))
    mesh = own_colors(mesh, args) if args.color is None else with_vertex_colors(mesh, args.color)
    t = time.perf_counter()
    frames, cams = render_turntable(mesh, args.num_frames, args.dist, args.elev, image_size=args.image_size)
    render_s = time.perf_counter() - t
    gif, png = save_gif_with_png(output_path(args, "cow_360.gif"), frames[..., :3], fps=args.fps)
    checks = turntable_checks(mesh, frames, cams, gif, seed=args.seed, width_ratio=1.3)
    report_checks(args.output_dir, {"num_frames": args.num_frames, "image_size": args.image_size, "data": data,
                                    "render_time_per_frame_s": render_s / args.num_frames}, [gif, png], checks)


if __name__ == "__main__":
    run_cli(main)
