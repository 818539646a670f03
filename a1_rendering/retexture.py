"""3 re-texturing: colour the cow by a gradient along z, ``alpha = (z - zmin) / (zmax - zmin)``,
``colour = alpha * color2 + (1 - alpha) * color1``, and render a 360-degree GIF.

    python -m a1_rendering.retexture --color1 0 1 1 --color2 1 1 0 --output_file output/a1_rendering/cow_retextured.gif
"""

from __future__ import annotations

import torch

from a1_rendering.common import add_mesh_flags, load_mesh
from l3d.cli import output_path, report, script_parser
from l3d.io import save_gif_with_png, save_image
from l3d.structures import Meshes
from l3d.train import choose_device, run_cli
from l3d.viz import render_mesh_turntable, with_vertex_colors


def z_gradient_colors(verts: torch.Tensor, color1, color2) -> torch.Tensor:
    """(V, 3) vertex colours blending color1 (at min z) into color2 (at max z)."""
    z = verts[:, 2]
    alpha = ((z - z.min()) / (z.max() - z.min()).clamp(min=1e-12))[:, None]
    c1 = torch.as_tensor(color1, dtype=verts.dtype, device=verts.device)
    c2 = torch.as_tensor(color2, dtype=verts.dtype, device=verts.device)
    return alpha * c2 + (1 - alpha) * c1


def retexture(mesh: Meshes, color1, color2) -> Meshes:
    return with_vertex_colors(mesh, z_gradient_colors(mesh.verts_packed(), color1, color2))


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/retexture", output_file="cow_retextured.gif")
    add_mesh_flags(ap)
    ap.add_argument("--color1", type=float, nargs=3, default=[0.0, 1.0, 1.0], metavar=("R", "G", "B"),
                    help="colour at the front (smallest z)")
    ap.add_argument("--color2", type=float, nargs=3, default=[1.0, 1.0, 0.0], metavar=("R", "G", "B"),
                    help="colour at the back (largest z)")
    ap.add_argument("--num_frames", type=int, default=36, help="frames in the turntable")
    ap.add_argument("--fps", type=float, default=15, help="GIF frame rate")
    ap.add_argument("--image_size", type=int, default=256, help="frame size in pixels")
    ap.add_argument("--still_azim", type=float, default=-108.0,
                    help="azimuth of the extra still image (the reference image's view)")
    args = ap.parse_args(argv)
    if args.quick:
        args.num_frames, args.image_size = min(args.num_frames, 8), min(args.image_size, 96)
    for c in (args.color1, args.color2):
        if not all(0.0 <= v <= 1.0 for v in c):
            raise ValueError(f"colours must be in [0, 1], got {c}")
    mesh = retexture(load_mesh(args, choose_device(args.device)), args.color1, args.color2)
    frames = render_mesh_turntable(mesh, args.num_frames, 3.0, 0.0, image_size=args.image_size)
    gif, png = save_gif_with_png(output_path(args, "cow_retextured.gif"), frames, fps=args.fps)
    # a still from the view of the course's reference image (head to the left, light at (0, 0, -3))
    side = render_mesh_turntable(mesh, 1, 3.0, 0.0, image_size=args.image_size, azim_start=args.still_azim,
                                 light_location=((0.0, 0.0, -3.0),))[0]
    still = save_image(gif.with_name(gif.stem + "_side.png"), side)
    report(args.output_dir, {"color1": args.color1, "color2": args.color2}, [gif, png, still])


if __name__ == "__main__":
    run_cli(main)
