"""2 mesh practice: build a tetrahedron (4 vertices, 4 faces) or a cube (8 vertices, 12 triangles)
by hand and render a 360-degree GIF; prints the vertex and face counts.

The turntable uses an odd number of frames (45 by default, 25 with --quick), so the steps
(8 and 14.4 degrees) never line up with the cube's 90-degree or the tetrahedron's 180-degree
symmetry about the vertical axis: the shape is seen turning, not flipping between two poses.

Checks (metrics.json, names prefixed with the shape): vertex and face counts, the Euler
characteristic V - E + F = 2, every edge shared by exactly two faces, the enclosed volume (with
outward winding) against the analytic one, and the turntable's checks (silhouette against
projected surface samples, motion, frames and seconds per turn read back from the GIF).

    python -m a1_rendering.mesh_practice --shape cube --output_file output/a1_rendering/cube.gif
"""

from __future__ import annotations

import torch

from a1_rendering.common import MESH_COLOR, add_turntable_flags, render_turntable, report_checks, turntable_checks
from a1_rendering.measure import edge_face_counts, euler_characteristic, signed_volume
from l3d.checks import check
from l3d.cli import finite_float, output_path, run_cli, script_parser
from l3d.media import save_gif_with_png
from l3d.structures import Meshes
from l3d.train import choose_device
from l3d.viz import with_vertex_colors


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
# (vertices, faces, enclosed volume): the regular tetrahedron with corners 0.6 (+-1, +-1, +-1)
# has edge 0.6 * 2 sqrt(2) and volume 8/3 0.6^3; the cube has side 1.2
EXPECTED = {"tetrahedron": (4, 4, 8.0 / 3.0 * 0.6 ** 3), "cube": (8, 12, 1.2 ** 3)}


def shape_checks(shape: str, mesh: Meshes) -> dict:
    """Counts, Euler characteristic, closedness and volume of a built shape."""
    nv, nf, vol = EXPECTED[shape]
    shared = edge_face_counts(mesh)
    return {
        f"{shape}_num_vertices": check(int(mesh.num_verts_per_mesh()[0]), min=nv, max=nv, what="vertices"),
        f"{shape}_num_faces": check(int(mesh.num_faces_per_mesh()[0]), min=nf, max=nf, what="triangles"),
        f"{shape}_euler": check(euler_characteristic(mesh), min=2, max=2, what="V - E + F (2 for a closed genus-0 surface)"),
        f"{shape}_closed_edges": check(float((shared == 2).float().mean()), min=1.0,
                                       what="fraction of edges shared by exactly two faces"),
        f"{shape}_volume_error": check(abs(signed_volume(mesh) / vol - 1), max=1e-4,
                                       what="relative error of the enclosed volume (outward winding) vs the analytic one"),
    }


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/mesh_practice", output_file="<shape>.gif",
                       presets={"quick": {"num_frames": 25, "fps": 10.0, "image_size": 128}})
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tetrahedron", help="which solid to build")
    add_turntable_flags(ap, num_frames=45,
                        frames_help="frames in the turntable (odd, so the steps do not match the shapes' symmetry)")
    ap.add_argument("--elev", type=finite_float, default=20.0, help="camera elevation in degrees")
    args = ap.parse_args(argv)
    mesh = SHAPES[args.shape](choose_device(args.device))
    nv, nf = int(mesh.num_verts_per_mesh()[0]), int(mesh.num_faces_per_mesh()[0])
    print(f"{args.shape}: {nv} vertices, {nf} faces")
    coloured = with_vertex_colors(mesh, MESH_COLOR)
    frames, cams = render_turntable(coloured, args.num_frames, 3.0, args.elev, image_size=args.image_size, shader="flat")
    gif, png = save_gif_with_png(output_path(args, f"{args.shape}.gif"), frames[..., :3], fps=args.fps)
    checks = {**shape_checks(args.shape, mesh),
              **turntable_checks(coloured, frames, cams, gif, prefix=f"{args.shape}_", seed=args.seed)}
    report_checks(args.output_dir, {args.shape: {"num_vertices": nv, "num_faces": nf}}, [gif, png], checks,
                  own=f"{args.shape}_")


if __name__ == "__main__":
    run_cli(main)
