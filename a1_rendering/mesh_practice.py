"""2 mesh practice: build a tetrahedron (4 vertices, 4 faces) or a cube (8 vertices, 12 triangles)
by hand and render a 360-degree GIF; prints the vertex and face counts.

    python -m a1_rendering.mesh_practice --shape cube --output_file output/a1_rendering/cube.gif
"""

from __future__ import annotations

import torch

from a1_rendering.common import MESH_COLOR
from l3d.cli import output_path, report, script_parser
from l3d.io import save_gif_with_png
from l3d.structures import Meshes
from l3d.train import choose_device, run_cli
from l3d.viz import render_mesh_turntable, with_vertex_colors


def tetrahedron(device="cpu") -> Meshes:
    """A regular tetrahedron centred at the origin, outward winding."""
    v = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]], device=device) * 0.6
    f = torch.tensor([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]], device=device)
    return Meshes([v], [f])


def cube(device="cpu") -> Meshes:
    """An axis-aligned cube of side 1.2 centred at the origin: 8 vertices, 12 triangles."""
    v = torch.tensor([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)], device=device) * 0.6
    # vertex index = 4 * (x > 0) + 2 * (y > 0) + (z > 0); two triangles per side, outward
    f = torch.tensor([
        [0, 1, 3], [0, 3, 2],  # x = -1
        [4, 6, 7], [4, 7, 5],  # x = +1
        [0, 4, 5], [0, 5, 1],  # y = -1
        [2, 3, 7], [2, 7, 6],  # y = +1
        [0, 2, 6], [0, 6, 4],  # z = -1
        [1, 5, 7], [1, 7, 3],  # z = +1
    ], device=device)
    return Meshes([v], [f])


SHAPES = {"tetrahedron": tetrahedron, "cube": cube}


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/mesh_practice", output_file="<shape>.gif")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tetrahedron", help="which solid to build")
    ap.add_argument("--num_frames", type=int, default=36, help="frames in the turntable")
    ap.add_argument("--fps", type=float, default=15, help="GIF frame rate")
    ap.add_argument("--image_size", type=int, default=256, help="frame size in pixels")
    ap.add_argument("--elev", type=float, default=20.0, help="camera elevation in degrees")
    args = ap.parse_args(argv)
    if args.quick:
        args.num_frames, args.image_size = min(args.num_frames, 8), min(args.image_size, 96)
    mesh = SHAPES[args.shape](choose_device(args.device))
    nv, nf = int(mesh.num_verts_per_mesh()[0]), int(mesh.num_faces_per_mesh()[0])
    print(f"{args.shape}: {nv} vertices, {nf} faces")
    frames = render_mesh_turntable(with_vertex_colors(mesh, MESH_COLOR), args.num_frames, 3.0, args.elev,
                                   image_size=args.image_size, shader="flat")
    gif, png = save_gif_with_png(output_path(args, f"{args.shape}.gif"), frames, fps=args.fps)
    report(args.output_dir, {args.shape: {"num_vertices": nv, "num_faces": nf}}, [gif, png])


if __name__ == "__main__":
    run_cli(main)
