"""7 sampling points on meshes: draw N points uniformly by area on the cow's surface
(faces by area, uniform barycentrics) and show each point cloud beside the mesh in a 360 GIF.

Checks (metrics.json), on the largest N: every sample lies on the mesh (exact point-to-triangle
distance), and the samples are spread by area: the faces are put in 10 groups by their area
and the samples counted per group (each sample on its nearest face) are tested against counts
proportional to each group's total area (Pearson chi-square p-value; sampling faces uniformly
instead would give p ~ 0 on the cow, whose faces differ in size); plus the GIFs' frames and
seconds per turn read back.

    python -m a1_rendering.sample_points --num_samples 10 100 1000 10000
"""

from __future__ import annotations

import time

import numpy as np
import torch

from a1_rendering.common import TURNTABLE_QUICK, add_mesh_flags, add_turntable_flags, load_mesh_labelled, \
    own_colors, report_checks
from a1_rendering.measure import chi_square_p_value, gif_timing, nearest_faces
from l3d.checks import check
from l3d.cli import positive_float, positive_int, run_cli, script_parser
from l3d.media import save_gif_with_png
from l3d.ops import sample_points_from_meshes
from l3d.structures import Meshes
from l3d.train import choose_device
from l3d.viz import normalized_xyz_colors, render_mesh_turntable, render_points_turntable, side_by_side


def area_groups(mesh: Meshes, groups: int = 10) -> torch.Tensor:
    """(F,) group index 0..groups-1 of every face: equal numbers of faces, sorted by area."""
    order = mesh.faces_areas_packed().argsort()
    g = torch.empty_like(order)
    g[order] = torch.arange(len(order), device=order.device) * groups // len(order)
    return g


def sampling_checks(mesh: Meshes, pts: torch.Tensor, groups: int = 10) -> dict:
    """Distance of the samples to the mesh and the area test (see the module docstring)."""
    dist, face = nearest_faces(pts, mesh)
    groups = min(groups, int(mesh.num_faces_per_mesh()[0]))  # a small mesh: one face per group
    g = area_groups(mesh, groups)
    areas = mesh.faces_areas_packed().double()
    observed = torch.bincount(g[face], minlength=groups).double().numpy()
    by_area = torch.zeros(groups, dtype=torch.float64).index_add_(0, g, areas).numpy()
    _, p_area = chi_square_p_value(observed, by_area / by_area.sum() * len(pts))
    _, p_uniform = chi_square_p_value(observed, np.full(groups, len(pts) / groups))
    diag = float((mesh.verts_packed().amax(0) - mesh.verts_packed().amin(0)).norm())
    return {
        "surface_distance": check(float(dist.max()) / diag, max=1e-5,
                                  what="largest distance of a sample to the mesh / the mesh's bounding-box diagonal"),
        "area_chi2_p": check(p_area, min=1e-3, what=f"p-value of the samples per face-area group ({groups} groups) vs "
                             f"counts proportional to area (p of face-uniform counts: {p_uniform:.2g})"),
    }


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/sample_points", presets={"quick": TURNTABLE_QUICK})
    add_mesh_flags(ap)
    ap.add_argument("--num_samples", type=positive_int, nargs="+", default=[10, 100, 1000, 10000],
                    help="point counts N")
    add_turntable_flags(ap, frames_help="frames per GIF")
    ap.add_argument("--radius", type=positive_float, default=None,
                    help="point radius in NDC units (default 0.015 at 256 px, scaled with --image_size)")
    args = ap.parse_args(argv)
    radius = args.radius if args.radius is not None else 0.015 * 256 / args.image_size
    device = choose_device(args.device)
    torch.manual_seed(args.seed)
    mesh, data, _ = load_mesh_labelled(args, device)
    mesh = own_colors(mesh, args)
    mesh_frames = render_mesh_turntable(mesh, args.num_frames, 3.0, image_size=args.image_size)
    written, times, timing = [], {}, []
    pts = None
    for n in sorted(args.num_samples):
        t = time.perf_counter()
        pts = sample_points_from_meshes(mesh, n)[0].detach()
        times[f"sample_time_s_{n}"] = time.perf_counter() - t
        frames = render_points_turntable(pts, normalized_xyz_colors(pts), args.num_frames, 3.0,
                                         image_size=args.image_size, radius=radius)
        gif, png = save_gif_with_png(f"{args.output_dir}/samples_{n}.gif", side_by_side(mesh_frames, frames),
                                     fps=args.fps, which="first")
        written += [gif, png]
        timing.append(gif_timing(gif))
    checks = sampling_checks(mesh.to("cpu"), pts.cpu())
    checks["frames_per_turn"] = check(min(t["frames"] for t in timing), min=24,
                                      what="fewest distinct frames of the GIFs (read back)")
    checks["turn_seconds"] = check(min(t["seconds"] for t in timing), min=2.0,
                                   what="shortest turn of the GIFs in seconds (read back)")
    report_checks(args.output_dir, {**times, "checked_num_samples": int(len(pts)), "data": data}, written, checks)


if __name__ == "__main__":
    run_cli(main)
