"""0.1 baseline: render the cow with R = I, T = (0, 0, 3) (camera at (0, 0, -3)), FoV 60,
a point light at (0, 0, -3), flat mesh colour (0.7, 0.7, 1) and Phong shading.

    python -m a1_rendering.render_mesh --image_size 512 --output_path output/a1_rendering/cow_render.png
"""

from __future__ import annotations

import time

import torch

from a1_rendering.common import MESH_COLOR, add_mesh_flags, load_mesh
from l3d.cameras import FoVPerspectiveCameras
from l3d.cli import report, script_parser
from l3d.io import save_image
from l3d.shading import PointLights, render_mesh
from l3d.train import choose_device, run_cli
from l3d.viz import with_vertex_colors


def render_baseline(mesh, image_size: int, color=MESH_COLOR, textured: bool = False) -> torch.Tensor:
    """(H, W, 3) render of the 0.1 setting."""
    device = mesh.device
    cam = FoVPerspectiveCameras(R=torch.eye(3, device=device)[None], T=torch.tensor([[0.0, 0.0, 3.0]], device=device))
    lights = PointLights(location=((0.0, 0.0, -3.0),))
    if not textured:
        mesh = with_vertex_colors(mesh, color)
    with torch.no_grad():
        return render_mesh(mesh, cam, image_size, lights=lights)[0, ..., :3].clamp(0, 1)


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/render_mesh")
    add_mesh_flags(ap)
    ap.add_argument("--output_path", default=None, help="PNG to write (default: <output_dir>/cow_render.png)")
    ap.add_argument("--image_size", type=int, default=256, help="output size in pixels (square)")
    ap.add_argument("--color", type=float, nargs=3, default=list(MESH_COLOR), metavar=("R", "G", "B"), help="mesh colour")
    ap.add_argument("--textured", action="store_true", help="use the mesh's own UV texture instead of --color")
    args = ap.parse_args(argv)
    if args.quick:
        args.image_size = min(args.image_size, 128)
    device = choose_device(args.device)
    mesh = load_mesh(args, device)
    t = time.perf_counter()
    img = render_baseline(mesh, args.image_size, args.color, args.textured)
    elapsed = time.perf_counter() - t
    out = args.output_path or f"{args.output_dir}/cow_render.png"
    save_image(out, img)
    report(args.output_dir, {"render_time_s": elapsed, "image_size": args.image_size}, [out])


if __name__ == "__main__":
    run_cli(main)
