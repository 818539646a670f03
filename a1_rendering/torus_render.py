"""5.2 / 5.3 parametric and implicit surfaces, rendered as 360-degree GIFs.

parametric: sample (theta, phi) on a num_samples x num_samples grid and render the point cloud.
implicit:   evaluate F(x, y, z) on a voxel grid, extract F = 0 with marching cubes, rescale the
            vertices back to world coordinates and render the mesh (light at (0, 0, -4)).
Colours are the normalised xyz of the points / vertices. The first frame looks along the
torus' axis, so its hole shows.

Checks (metrics.json, names prefixed with ``<function>_<shape>_``): the points (parametric) or
the marching-cubes vertices (implicit) against the analytic surface (the torus' exact signed
distance, the superquadric's implicit function), the torus' hole (background at the centre of
the first frame, the ring around it drawn), for meshes the Euler characteristic (0 for the torus,
2 for the superquadric) and the area / volume against the analytic values, and the turntable's
motion, frames and seconds per turn read back from the GIF.

    python -m a1_rendering.torus_render --function parametric --shape torus --num_samples 100
    python -m a1_rendering.torus_render --function implicit --shape torus --ring_radius 1 --tube_radius 0.3
    python -m a1_rendering.torus_render --function implicit --shape superquadric --eps1 0.3 --eps2 2.5
"""

from __future__ import annotations

import math
import time
from typing import Optional

import torch

from a1_rendering.common import TURNTABLE_QUICK, add_turntable_flags, int_at_least, render_turntable, report_checks, \
    unit_float
from a1_rendering.measure import euler_characteristic, gif_timing, motion_ratio, signed_volume, superquadric_volume, \
    surface_area, torus_sdf
from l3d.cameras import turntable_cameras
from l3d.checks import check
from l3d.cli import output_path, positive_float, run_cli, script_parser
from l3d.errors import user_error
from l3d.media import save_gif_with_png
from l3d.ops import marching_cubes
from l3d.shading import render_points
from l3d.structures import Meshes, Pointclouds, TexturesVertex
from l3d.train import choose_device
from l3d.viz import normalized_xyz_colors

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
    if len(faces) == 0:  # a grid too coarse for a thin shape: the user's --voxel_size
        raise user_error(f"--voxel_size {voxel_size}", f"a grid fine enough to find the {shape}'s surface",
                         f"no surface crossing over [-{bound:.3g}, {bound:.3g}]^3")
    div = voxel_size - 1 if index_divisor is None else index_divisor
    verts = verts.to(device) / div * (2 * bound) - bound  # index -> world
    return Meshes([verts], [faces.to(device)], TexturesVertex([normalized_xyz_colors(verts)]))


def points_turntable(pts: torch.Tensor, num_frames: int, dist: float, image_size: int, background,
                     radius: float = 0.01, azim_start: float = 180.0) -> torch.Tensor:
    """(T, H, W, 4) RGBA frames (alpha = coverage) of a point cloud coloured by normalised xyz."""
    cams = turntable_cameras(num_frames, dist, 0.0, 60.0, azim_start, azim_start + 360.0, device=pts.device)
    with torch.no_grad():
        frames = render_points(Pointclouds([pts], [normalized_xyz_colors(pts)]), cams, image_size, radius=radius,
                               background=background, batch_size=8)
    return frames.clamp(0, 1)


def hole_checks(first: torch.Tensor, dist: float, R: float, r: float, fov: float = 60.0) -> dict:
    """The torus seen along its axis (the first frame): the disc of half the hole's radius at the
    image centre is background, and the ring's annulus is drawn. ``first``: (H, W, 4) RGBA."""
    h, w = first.shape[:2]
    ndc = torch.stack(torch.meshgrid(torch.linspace(1 - 1 / w, -1 + 1 / w, w), torch.linspace(1 - 1 / h, -1 + 1 / h, h),
                                     indexing="xy"), -1)  # pixel centres
    rad = ndc.norm(dim=-1) * dist * math.tan(math.radians(fov) / 2)  # radius in the plane z = 0 (world units)
    alpha = first[..., 3].cpu() > 0.5
    hole = rad < 0.5 * (R - r)
    ring = (rad > R - 0.5 * r) & (rad < R + 0.5 * r)
    return {
        "hole_background": check(float((~alpha[hole]).float().mean()), min=0.99,
                                 what="fraction of background pixels within half the hole's radius of the centre, "
                                      "first frame (seen along the axis)"),
        "ring_coverage": check(float(alpha[ring].float().mean()), min=0.3,
                               what="fraction of drawn pixels on the middle of the ring, first frame"),
    }


def surface_checks(function: str, shape: str, pts: torch.Tensor, mesh: Optional[Meshes], voxel: float,
                   R: float, r: float, eps1: float, eps2: float, abc) -> dict:
    """How the points / mesh agree with the analytic surface."""
    out = {}
    if shape in ("torus", "sphere"):
        d = torus_sdf(pts, R, r) if shape == "torus" else pts.norm(dim=-1) - 1.0
        tol = 1e-4 if function == "parametric" else 0.1 * voxel
        out["surface_distance"] = check(float(d.abs().max()), max=tol,
                                        what="largest |exact signed distance| of the " +
                                             ("points" if function == "parametric" else "marching-cubes vertices") +
                                             " to the analytic surface (world units)")
    else:
        tol = 1e-4 if function == "parametric" else 0.1
        out["implicit_residual"] = check(float(implicit_field(shape, pts, R, r, eps1, eps2, abc).abs().max()), max=tol,
                                         what="largest |F| of the " + ("points" if function == "parametric" else
                                                                       "marching-cubes vertices") + " (F = 0 on the surface)")
    if mesh is not None:
        if shape == "torus":
            area, vol = 4 * math.pi ** 2 * R * r, 2 * math.pi ** 2 * R * r ** 2
        elif shape == "sphere":
            area, vol = 4 * math.pi, 4 * math.pi / 3
        else:
            area, vol = None, superquadric_volume(*abc, eps1, eps2)
        genus0 = shape != "torus"
        out["euler"] = check(euler_characteristic(mesh), min=2 if genus0 else 0, max=2 if genus0 else 0,
                             what="V - E + F of the mesh (" + ("2: a closed surface without holes" if genus0 else
                                                               "0: a closed surface with one hole") + ")")
        out["volume_error"] = check(abs(signed_volume(mesh) / vol - 1), max=0.03,
                                    what="relative error of the mesh's enclosed volume vs the analytic one")
        if area is not None:
            out["area_error"] = check(abs(surface_area(mesh) / area - 1), max=0.03,
                                      what="relative error of the mesh's area vs the analytic one (4 pi^2 R r)")
    return out


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/torus_render", output_file="<function>_<shape>.gif",
                       presets={"quick": {**TURNTABLE_QUICK, "voxel_size": 40}})
    ap.add_argument("--function", choices=["parametric", "implicit"], default="parametric", help="representation")
    ap.add_argument("--shape", choices=SHAPES, default="torus", help="surface to render")
    ap.add_argument("--num_samples", type=int_at_least(2), default=100, help="parametric: samples per angle")
    ap.add_argument("--voxel_size", type=int_at_least(4), default=64, help="implicit: grid resolution per axis")
    ap.add_argument("--ring_radius", type=positive_float, default=1.0,
                    help="torus: radius R of the circle through the tube's centre (from the torus' centre)")
    ap.add_argument("--tube_radius", type=positive_float, default=0.4, help="torus: radius r of the tube")
    ap.add_argument("--eps1", type=positive_float, default=0.5, help="superquadric: north-south exponent")
    ap.add_argument("--eps2", type=positive_float, default=0.5, help="superquadric: east-west exponent")
    ap.add_argument("--abc", type=positive_float, nargs=3, default=[1.0, 1.0, 1.0], metavar=("A", "B", "C"),
                    help="superquadric: radii along x, y, z")
    add_turntable_flags(ap)
    ap.add_argument("--dist", type=positive_float, default=None,
                    help="camera distance (default 3 x the shape's radius, at least 3)")
    ap.add_argument("--background", type=unit_float, nargs=3, default=[1.0, 1.0, 1.0], metavar=("R", "G", "B"),
                    help="background colour, channels in [0, 1] (the course's sphere references use black for points)")
    ap.add_argument("--radius", type=positive_float, default=None,
                    help="parametric: point radius in NDC units (default 0.01 at 256 px, scaled with --image_size "
                         "so the points keep their size in pixels)")
    args = ap.parse_args(argv)
    R, r = args.ring_radius, args.tube_radius
    if args.shape == "torus" and r >= R:  # a spindle torus: no hole, and the distance used by the checks is wrong
        raise user_error("--tube_radius", f"less than --ring_radius ({R:g}) for a ring torus", f"{r:g}")
    device = choose_device(args.device)
    params = dict(R=R, r=r, eps1=args.eps1, eps2=args.eps2, abc=tuple(args.abc))
    dist = args.dist if args.dist is not None else 3.0 * max(1.0, extent(args.shape, R, r, tuple(args.abc)))
    t = time.perf_counter()
    mesh, voxel = None, 0.0
    if args.function == "parametric":
        pts = parametric_points(args.shape, args.num_samples, device=device, **params)
        radius = args.radius if args.radius is not None else 0.01 * 256 / args.image_size
        frames = points_turntable(pts, args.num_frames, dist, args.image_size, args.background, radius)
        sizes = {"num_points": int(len(pts))}
    else:
        bound = 1.1 * extent(args.shape, R, r, tuple(args.abc))
        voxel = 2 * bound / (args.voxel_size - 1)
        mesh = implicit_mesh(args.shape, args.voxel_size, bound, device=device, **params)
        pts = mesh.verts_packed()
        frames, _ = render_turntable(mesh, args.num_frames, dist, image_size=args.image_size,
                                     light_location=((0.0, 0.0, -4.0),), azim_start=180.0, background=args.background)
        sizes = {"num_vertices": int(mesh.num_verts_per_mesh()[0]), "num_faces": int(mesh.num_faces_per_mesh()[0])}
    elapsed = time.perf_counter() - t
    gif, png = save_gif_with_png(output_path(args, f"{args.function}_{args.shape}.gif"), frames[..., :3], fps=args.fps,
                                 which="first")
    checks = surface_checks(args.function, args.shape, pts.cpu().double(), None if mesh is None else mesh.to("cpu"),
                            voxel, R, r, args.eps1, args.eps2, tuple(args.abc))
    if args.shape == "torus":
        checks.update(hole_checks(frames[0], dist, R, r))
    timing = gif_timing(gif)
    checks.update({
        "motion_ratio": check(motion_ratio(frames[..., :3]), min=1.1, what="mean change over two frames / over one "
                              "frame (turning, not strobing)"),
        "frames_per_turn": check(timing["frames"], min=24, what="distinct frames in the GIF (read back)"),
        "turn_seconds": check(timing["seconds"], min=2.0, what="seconds per full turn of the GIF (read back)"),
    })
    prefix = f"{args.function}_{args.shape}_"
    report_checks(args.output_dir, {f"{args.function}_{args.shape}": {**sizes, "time_s": elapsed}}, [gif, png],
                  {prefix + k: v for k, v in checks.items()}, own=prefix)


if __name__ == "__main__":
    run_cli(main)
