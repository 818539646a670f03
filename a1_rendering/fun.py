"""6 do something fun: a procedural cottage scene (house, roof, chimney, door, windows, trees,
path and lawn) built from primitive meshes, shown as a 360-degree turntable (``--function full``)
or a dolly zoom (``--function dolly``).

    python -m a1_rendering.fun --function full --output_file output/a1_rendering/fun/cottage_360.gif
"""

from __future__ import annotations

import math

import torch

from a1_rendering.dolly_zoom import dolly_frames
from l3d.cli import output_path, report, script_parser
from l3d.io import save_gif_with_png
from l3d.structures import Meshes, TexturesVertex, join_meshes_as_scene
from l3d.train import choose_device, run_cli
from l3d.viz import render_mesh_turntable


def _mesh(verts, faces, color) -> Meshes:
    v = torch.as_tensor(verts, dtype=torch.float32)
    c = torch.tensor(color, dtype=torch.float32).expand_as(v)
    return Meshes([v], [torch.as_tensor(faces)], TexturesVertex([c]))


def box(lo, hi, color) -> Meshes:
    """Axis-aligned box from corner ``lo`` to ``hi`` (8 vertices, 12 outward triangles)."""
    lo, hi = torch.tensor(lo, dtype=torch.float32), torch.tensor(hi, dtype=torch.float32)
    bits = torch.tensor([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=torch.float32)
    v = lo + bits * (hi - lo)
    f = [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
         [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
    return _mesh(v, f, color)


def roof(x0, x1, z0, z1, y0, y1, color) -> Meshes:
    """A gable roof: a triangular prism along x, ridge at height y1 over z = (z0 + z1) / 2."""
    zm = (z0 + z1) / 2
    v = [[x0, y0, z0], [x0, y0, z1], [x0, y1, zm], [x1, y0, z0], [x1, y0, z1], [x1, y1, zm]]
    f = [[0, 2, 1], [3, 4, 5], [0, 3, 5], [0, 5, 2], [1, 2, 5], [1, 5, 4], [0, 1, 4], [0, 4, 3]]
    return _mesh(v, f, color)


def cone(cx, cz, y0, radius, height, color, n=24, top_radius=0.0) -> Meshes:
    """A (truncated) cone or cylinder around the vertical axis through (cx, cz), capped."""
    a = torch.linspace(0, 2 * math.pi, n + 1)[:-1]
    ring0 = torch.stack([cx + radius * a.cos(), torch.full_like(a, y0), cz + radius * a.sin()], -1)
    ring1 = torch.stack([cx + top_radius * a.cos(), torch.full_like(a, y0 + height), cz + top_radius * a.sin()], -1)
    centres = torch.tensor([[cx, y0, cz], [cx, y0 + height, cz]])
    v = torch.cat([ring0, ring1, centres])
    i = torch.arange(n)
    j = (i + 1) % n
    side = torch.cat([torch.stack([i, n + i, n + j], -1), torch.stack([i, n + j, j], -1)])
    caps = torch.cat([torch.stack([torch.full_like(i, 2 * n), i, j], -1),
                      torch.stack([torch.full_like(i, 2 * n + 1), n + j, n + i], -1)])
    return _mesh(v, torch.cat([side, caps]), color)


def cottage_scene(device="cpu") -> Meshes:
    """The whole scene as one vertex-coloured mesh (y up, door facing -z, about 6 units wide)."""
    wall, roof_red, wood, glass = (0.93, 0.87, 0.72), (0.72, 0.18, 0.15), (0.45, 0.28, 0.14), (0.55, 0.75, 0.95)
    parts = [
        box((-3.0, -0.75, -3.0), (3.0, -0.7, 3.0), (0.35, 0.62, 0.3)),  # lawn
        box((-1.0, -0.7, -0.8), (1.0, 0.5, 0.8), wall),  # house body
        roof(-1.15, 1.15, -1.0, 1.0, 0.5, 1.3, roof_red),
        box((0.45, 0.7, 0.1), (0.7, 1.5, 0.35), (0.5, 0.5, 0.52)),  # chimney
        box((-0.2, -0.7, -0.83), (0.2, 0.1, -0.8), wood),  # door
        box((-0.8, -0.15, -0.83), (-0.45, 0.2, -0.8), glass),  # windows
        box((0.45, -0.15, -0.83), (0.8, 0.2, -0.8), glass),
        box((-0.25, -0.7, -3.0), (0.25, -0.68, -0.8), (0.72, 0.7, 0.66)),  # path
    ]
    for x, z, s in [(-2.0, -1.6, 1.0), (2.1, -1.2, 0.8), (-2.2, 1.5, 1.2), (1.8, 1.9, 0.9)]:
        parts.append(cone(x, z, -0.7, 0.1 * s, 0.5 * s, wood, n=12, top_radius=0.1 * s))  # trunk
        parts.append(cone(x, z, -0.7 + 0.4 * s, 0.5 * s, 1.3 * s, (0.12, 0.45, 0.2), n=16))  # crown
    return join_meshes_as_scene(parts).to(device)


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/fun", output_file="cottage_<function>.gif")
    ap.add_argument("--function", choices=["full", "dolly"], default="full",
                    help="full: 360-degree turntable; dolly: dolly zoom towards the door")
    ap.add_argument("--num_frames", type=int, default=60, help="frames in the GIF")
    ap.add_argument("--fps", type=float, default=15, help="GIF frame rate")
    ap.add_argument("--image_size", type=int, default=256, help="frame size in pixels")
    args = ap.parse_args(argv)
    if args.quick:
        args.num_frames, args.image_size = min(args.num_frames, 6), min(args.image_size, 96)
    if args.num_frames < 2:
        raise ValueError("--num_frames must be at least 2")
    scene = cottage_scene(choose_device(args.device))
    if args.function == "full":
        frames = render_mesh_turntable(scene, args.num_frames, dist=8.0, elev=25.0, image_size=args.image_size,
                                       background=(0.75, 0.87, 1.0), shader="flat")
    else:
        frames, _, _ = dolly_frames(scene, args.num_frames, args.image_size, k=2.4, fov_start=10.0, fov_end=110.0,
                                    light_location=(2.0, 6.0, -10.0), background=(0.75, 0.87, 1.0), shader="flat")
    gif, png = save_gif_with_png(output_path(args, f"cottage_{args.function}.gif"), frames, fps=args.fps)
    nv, nf = int(scene.num_verts_per_mesh()[0]), int(scene.num_faces_per_mesh()[0])
    report(args.output_dir, {"scene_vertices": nv, "scene_faces": nf}, [gif, png])


if __name__ == "__main__":
    run_cli(main)
