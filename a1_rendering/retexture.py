"""3 re-texturing: colour the cow by a gradient along z, ``alpha = (z - zmin) / (zmax - zmin)``,
``colour = alpha * color2 + (1 - alpha) * color1``, and render a 360-degree GIF (plus a still
from the view of the course's reference image).

Checks (metrics.json): the colours at the front-most and back-most vertices against color1 and
color2, that every vertex colour sits on the color1 -> color2 line at its z (correlation), the
turntable's checks, and with the course's cow.obj a render in the reference's colours (blue to
red) against reference/cow_retextured.jpg.

    python -m a1_rendering.retexture --color1 0 1 1 --color2 1 1 0 --output_file output/a1_rendering/cow_retextured.gif
"""

from __future__ import annotations

import numpy as np
import torch

from a1_rendering.common import TURNTABLE_QUICK, add_mesh_flags, add_turntable_flags, course_file, \
    load_mesh_labelled, render_turntable, report_checks, turntable_checks, unit_float
from a1_rendering.render_mesh import reference_error
from l3d.checks import check
from l3d.cli import finite_float, output_path, run_cli, script_parser
from l3d.media import save_gif_with_png, save_image
from l3d.structures import Meshes
from l3d.train import choose_device
from l3d.viz import render_mesh_turntable, with_vertex_colors

REFERENCE = "a1/reference/cow_retextured.jpg"
REFERENCE_COLORS = ((0.0, 0.0, 1.0), (1.0, 0.0, 0.0))  # the reference image's color1, color2


def z_gradient_colors(verts: torch.Tensor, color1, color2) -> torch.Tensor:
    """(V, 3) vertex colours blending color1 (at min z) into color2 (at max z)."""
    z = verts[:, 2]
    alpha = ((z - z.min()) / (z.max() - z.min()).clamp(min=1e-12))[:, None]
    c1 = torch.as_tensor(color1, dtype=verts.dtype, device=verts.device)
    c2 = torch.as_tensor(color2, dtype=verts.dtype, device=verts.device)
    return alpha * c2 + (1 - alpha) * c1


def retexture(mesh: Meshes, color1, color2) -> Meshes:
    return with_vertex_colors(mesh, z_gradient_colors(mesh.verts_packed(), color1, color2))


def side_still(mesh: Meshes, image_size: int, azim: float = -108.0) -> torch.Tensor:
    """(H, W, 3) view of the reference image: head to the left, light at (0, 0, -3)."""
    return render_mesh_turntable(mesh, 1, 3.0, 0.0, image_size=image_size, azim_start=azim,
                                 light_location=((0.0, 0.0, -3.0),))[0]


def gradient_checks(mesh: Meshes, color1, color2) -> dict:
    """How the re-textured mesh's vertex colours follow z."""
    v = mesh.verts_packed()
    col = mesh.textures.verts_features_packed()
    c1, c2 = torch.tensor(color1, dtype=v.dtype), torch.tensor(color2, dtype=v.dtype)
    front, back = int(v[:, 2].argmin()), int(v[:, 2].argmax())
    # position of each colour along the colour1 -> colour2 line, against the vertex's z
    along = ((col - c1) @ (c2 - c1)) / (c2 - c1).dot(c2 - c1).clamp(min=1e-12)
    off_line = (col - (c1 + along[:, None] * (c2 - c1))).norm(dim=-1).max()
    corr = float(np.corrcoef(v[:, 2].numpy(), along.numpy())[0, 1]) if float((c2 - c1).abs().max()) > 0 else 0.0
    return {
        "front_color_error": check(float((col[front] - c1).abs().max()), max=0.01,
                                   what="largest channel error of the front-most (min z) vertex's colour vs color1"),
        "back_color_error": check(float((col[back] - c2).abs().max()), max=0.01,
                                  what="largest channel error of the back-most (max z) vertex's colour vs color2"),
        "gradient_correlation": check(corr if float(off_line) < 0.01 else 0.0, min=0.999,
                                      what="correlation of vertex z with the colour's position from color1 to color2 "
                                           "(0 if a colour leaves that line)"),
    }


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/retexture", output_file="cow_retextured.gif",
                       presets={"quick": TURNTABLE_QUICK})
    add_mesh_flags(ap)
    ap.add_argument("--color1", type=unit_float, nargs=3, default=[0.0, 1.0, 1.0], metavar=("R", "G", "B"),
                    help="colour at the front (smallest z), channels in [0, 1]")
    ap.add_argument("--color2", type=unit_float, nargs=3, default=[1.0, 1.0, 0.0], metavar=("R", "G", "B"),
                    help="colour at the back (largest z), channels in [0, 1]")
    add_turntable_flags(ap)
    ap.add_argument("--still_azim", type=finite_float, default=-108.0,
                    help="azimuth of the extra still image (the reference image's view)")
    args = ap.parse_args(argv)
    base, data, course = load_mesh_labelled(args, choose_device(args.device))
    mesh = retexture(base, args.color1, args.color2)
    frames, cams = render_turntable(mesh, args.num_frames, 3.0, 0.0, image_size=args.image_size)
    gif, png = save_gif_with_png(output_path(args, "cow_retextured.gif"), frames[..., :3], fps=args.fps)
    still = save_image(gif.with_name(gif.stem + "_side.png"), side_still(mesh, args.image_size, args.still_azim))
    checks = {**gradient_checks(mesh.to("cpu"), args.color1, args.color2),
              **turntable_checks(mesh, frames, cams, gif, seed=args.seed)}
    ref = course_file(REFERENCE)
    if course and ref is not None:
        img = side_still(retexture(base, *REFERENCE_COLORS), 256)
        checks["reference_mae"] = check(reference_error(img, ref), max=0.008,
                                        what=f"mean absolute error per pixel of the 256 x 256 still in the reference's "
                                             f"colours (blue to red) vs {REFERENCE}")
    report_checks(args.output_dir, {"color1": args.color1, "color2": args.color2, "data": data},
                  [gif, png, still], checks)


if __name__ == "__main__":
    run_cli(main)
