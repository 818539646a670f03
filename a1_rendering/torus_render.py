"""5.2 / 5.3 parametric and implicit surfaces, rendered as 360-degree GIFs.

parametric: sample (theta, phi) on a num_samples x num_samples grid and render the point cloud.
implicit:   evaluate F(x, y, z) on a voxel grid, extract F = 0 with marching cubes, rescale the
            vertices back to world coordinates and render the mesh (light at (0, 0, -4)).
Colours are the normalised xyz of the points / vertices.

    python -m a1_rendering.torus_render --function parametric --shape torus --num_samples 100
    python -m a1_rendering.torus_render --function implicit --shape superquadric --eps1 0.3 --eps2 2.5
"""

from __future__ import annotations

import math
import time
from typing import Optional

import torch

from l3d.cli import output_path, report, script_parser
from l3d.io import save_gif_with_png
from l3d.ops import marching_cubes
from l3d.structures import Meshes, TexturesVertex
from l3d.train import choose_device, run_cli
from l3d.viz import normalized_xyz_colors, render_mesh_turntable, render_points_turntable

SHAPES = ("torus", "superquadric", "sphere")


def _spow(x: torch.Tensor, e: float) -> torch.Tensor:
    """Signed power sign(x) |x|^e (the superquadric's exponentiation)."""
    return torch.sign(x) * x.abs().pow(e)


def parametric_points(shape: str, n: int, R=1.0, r=0.4, eps1=0.5, eps2=0.5, abc=(1.0, 1.0, 1.0), device="cpu"):
    """(n * n, 3) points of the surface on an n x n grid of its two angles."""
    if shape == "torus":  # ring in the xy-plane, facing a camera on the z axis
        th, ph = torch.meshgrid(torch.linspace(0, 2 * math.pi, n, device=device),
                                torch.linspace(0, 2 * math.pi, n, device=device), indexing="ij")
        pts = [(R + r * th.cos()) * ph.cos(), (R + r * th.cos()) * ph.sin(), r * th.sin()]
    elif shape == "superquadric":
        eta, om = torch.meshgrid(torch.linspace(-math.pi / 2, math.pi / 2, n, device=device),
                                 torch.linspace(-math.pi, math.pi, n, device=device), indexing="ij")
        a, b, c = abc
        pts = [a * _spow(eta.cos(), eps1) * _spow(om.cos(), eps2), b * _spow(eta.cos(), eps1) * _spow(om.sin(), eps2),
               c * _spow(eta.sin(), eps1)]
    elif shape == "sphere":  # poles on the y axis
        th, ph = torch.meshgrid(torch.linspace(0, math.pi, n, device=device),
                                torch.linspace(0, 2 * math.pi, n, device=device), indexing="ij")
        pts = [th.sin() * ph.cos(), th.cos(), th.sin() * ph.sin()]
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    return torch.stack(pts, -1).reshape(-1, 3)


def implicit_field(shape: str, p: torch.Tensor, R=1.0, r=0.4, eps1=0.5, eps2=0.5, abc=(1.0, 1.0, 1.0)):
    """F(p) (negative inside, 0 on the surface) for points p (..., 3)."""
    x, y, z = p.unbind(-1)
    if shape == "torus":
        return (torch.sqrt(x**2 + y**2) - R) ** 2 + z**2 - r**2
    if shape == "superquadric":
        a, b, c = abc
        xy = (x / a).abs().pow(2 / eps2) + (y / b).abs().pow(2 / eps2)
        return xy.pow(eps2 / eps1) + (z / c).abs().pow(2 / eps1) - 1
    if shape == "sphere":
        return x**2 + y**2 + z**2 - 1
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def extent(shape: str, R=1.0, r=0.4, abc=(1.0, 1.0, 1.0)) -> float:
    return {"torus": R + r, "superquadric": max(abc), "sphere": 1.0}[shape]


def implicit_mesh(shape: str, voxel_size: int = 64, bound: float = 1.1, device="cpu",
                  index_divisor: Optional[float] = None, **params) -> Meshes:
    """Marching-cubes mesh of F = 0 on a voxel_size^3 grid over [-bound, bound]^3, xyz colours.

    Grid index i maps back to ``i / index_divisor * 2 bound - bound``; the exact divisor is
    ``voxel_size - 1`` (the default). The course's starter divided by ``voxel_size``, which
    shrinks the shape by (N - 1) / N; its reference images are reproduced with that value.
    """
    t = torch.linspace(-bound, bound, voxel_size, device=device)
    grid = torch.stack(torch.meshgrid(t, t, t, indexing="ij"), -1)  # (D, D, D, 3) with axis i -> x
    verts, faces = marching_cubes(implicit_field(shape, grid, **params), 0.0, inside="below")
    if len(faces) == 0:
        raise ValueError(f"the {shape} does not cross the grid over [-{bound}, {bound}]^3")
    div = voxel_size - 1 if index_divisor is None else index_divisor
    verts = verts.to(device) / div * (2 * bound) - bound  # index -> world
    return Meshes([verts], [faces.to(device)], TexturesVertex([normalized_xyz_colors(verts)]))


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/torus_render", output_file="<function>_<shape>.gif")
    ap.add_argument("--function", choices=["parametric", "implicit"], default="parametric", help="representation")
    ap.add_argument("--shape", choices=SHAPES, default="torus", help="surface to render")
    ap.add_argument("--num_samples", type=int, default=100, help="parametric: samples per angle")
    ap.add_argument("--voxel_size", type=int, default=64, help="implicit: grid resolution per axis")
    ap.add_argument("--R", type=float, default=1.0, help="torus: distance from the centre to the tube's centre")
    ap.add_argument("--r", type=float, default=0.4, help="torus: tube radius")
    ap.add_argument("--eps1", type=float, default=0.5, help="superquadric: north-south exponent")
    ap.add_argument("--eps2", type=float, default=0.5, help="superquadric: east-west exponent")
    ap.add_argument("--abc", type=float, nargs=3, default=[1.0, 1.0, 1.0], metavar=("A", "B", "C"),
                    help="superquadric: radii along x, y, z")
    ap.add_argument("--num_frames", type=int, default=36, help="frames in the turntable")
    ap.add_argument("--fps", type=float, default=15, help="GIF frame rate")
    ap.add_argument("--image_size", type=int, default=256, help="frame size in pixels")
    ap.add_argument("--dist", type=float, default=None,
                    help="camera distance (default 3 x the shape's radius, at least 3)")
    ap.add_argument("--background", type=float, nargs=3, default=[1.0, 1.0, 1.0], metavar=("R", "G", "B"),
                    help="background colour (the course's sphere references use black for points)")
    args = ap.parse_args(argv)
    if args.quick:
        args.num_frames, args.image_size = min(args.num_frames, 6), min(args.image_size, 96)
        args.num_samples, args.voxel_size = min(args.num_samples, 40), min(args.voxel_size, 32)
    if args.num_samples < 2 or args.voxel_size < 4:
        raise ValueError("--num_samples must be >= 2 and --voxel_size >= 4")
    if args.r <= 0 or args.eps1 <= 0 or args.eps2 <= 0 or min(args.abc) <= 0:
        raise ValueError("radii and exponents must be positive")
    device = choose_device(args.device)
    params = dict(R=args.R, r=args.r, eps1=args.eps1, eps2=args.eps2, abc=tuple(args.abc))
    dist = args.dist if args.dist is not None else 3.0 * max(1.0, extent(args.shape, args.R, args.r, tuple(args.abc)))
    t = time.perf_counter()
    if args.function == "parametric":
        pts = parametric_points(args.shape, args.num_samples, device=device, **params)
        frames = render_points_turntable(pts, normalized_xyz_colors(pts), args.num_frames, dist, azim_start=180.0,
                                         image_size=args.image_size, background=args.background)
        sizes = {"num_points": int(len(pts))}
    else:
        bound = 1.1 * extent(args.shape, args.R, args.r, tuple(args.abc))
        mesh = implicit_mesh(args.shape, args.voxel_size, bound, device=device, **params)
        frames = render_mesh_turntable(mesh, args.num_frames, dist, image_size=args.image_size,
                                       light_location=((0.0, 0.0, -4.0),), azim_start=180.0,
                                       background=args.background)
        sizes = {"num_vertices": int(mesh.num_verts_per_mesh()[0]), "num_faces": int(mesh.num_faces_per_mesh()[0])}
    elapsed = time.perf_counter() - t
    gif, png = save_gif_with_png(output_path(args, f"{args.function}_{args.shape}.gif"), frames, fps=args.fps,
                                 which="first")
    report(args.output_dir, {f"{args.function}_{args.shape}": {**sizes, "time_s": elapsed}}, [gif, png])


if __name__ == "__main__":
    run_cli(main)
