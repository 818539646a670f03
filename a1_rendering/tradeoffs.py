"""5 discussion, measured: meshes versus point clouds for the same surface (a torus).

For meshes of several resolutions (marching cubes at 32^3 .. 128^3) and point clouds of several
densities (parametric 50^2 .. 300^2 samples), the script measures
  * time per rendered frame (median of several warm frames),
  * peak memory of rendering one frame (resident-set growth in a fresh process),
  * the size of the representation itself,
  * quality: the fraction of the true silhouette that the render covers (holes show as < 1); the
    true silhouette is that of a fine triangulation of the torus' parametric grid (256^2 quads),
    independent of both representations,
and writes a markdown table, a plot and metrics.json. The conclusions in the table's notes are
computed from the numbers, not typed in.

Checks (metrics.json): every mesh covers the true silhouette (no holes), and the sparsest point
cloud leaves holes the meshes do not (the coverage gap the table reports). The peak memory of
all rows is measured in one fresh process, after one warm-up render of every row.

    python -m a1_rendering.tradeoffs --image_size 256
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import torch

from a1_rendering.common import int_at_least, report_checks
from l3d.checks import check
from l3d.cli import run_cli, script_parser
from l3d.run import atomic_path, atomic_write


def _peak_rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _build(kind: str, param: int):
    from a1_rendering.torus_render import implicit_mesh, parametric_points
    from l3d.viz import normalized_xyz_colors

    if kind == "mesh":
        mesh = implicit_mesh("torus", param, 1.1 * 1.4)
        return mesh, int(mesh.num_verts_per_mesh()[0]) * 3 * 4 * 2 + int(mesh.num_faces_per_mesh()[0]) * 3 * 8
    pts = parametric_points("torus", param)
    return (pts, normalized_xyz_colors(pts)), pts.numel() * 4 * 2


def _render(kind: str, obj, image_size: int):
    from l3d.cameras import FoVPerspectiveCameras, look_at_view_transform
    from l3d.shading import PointLights, render_mesh, render_points
    from l3d.structures import Pointclouds

    R, T = look_at_view_transform(4.2, 30.0, 20.0)
    cam = FoVPerspectiveCameras(R=R, T=T)
    with torch.no_grad():
        if kind == "mesh":
            return render_mesh(obj, cam, image_size, lights=PointLights(location=cam.get_camera_center()))[0]
        return render_points(Pointclouds([obj[0]], [obj[1]]), cam, image_size, radius=0.01)[0]


def _memory_child(jobs, image_size: int, q) -> None:
    """Runs in a fresh process: resident memory growth while rendering one frame, per job."""
    import gc

    torch.set_num_threads(1)
    for kind, param in jobs:  # warm-up: every code path loaded once before anything is measured
        _render(kind, _build(kind, param)[0], image_size)
    gc.collect()
    out = []
    for kind, param in jobs:
        obj, _ = _build(kind, param)
        gc.collect()
        try:  # reset the peak so it only covers the frame (Linux >= 4.0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        before = _rss_kb()
        img = _render(kind, obj, image_size)
        out.append(max(0, _peak_rss_kb() - before))
        del obj, img
    q.put(out)


def peak_memory_kb(jobs, image_size: int):
    """[peak resident growth (KB) of rendering one frame] for every (kind, param) job, measured
    one after the other in one fresh process whose allocator hands every block of >= 64 KB
    straight back to the system, so its peak resident set follows the peak of live tensors."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    saved = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    try:
        p = ctx.Process(target=_memory_child, args=(list(jobs), image_size, q))
        p.start()
    finally:
        if saved is None:
            os.environ.pop("MALLOC_MMAP_THRESHOLD_")
        else:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = saved
    out = q.get(timeout=600)
    p.join()
    return out


def measure(kind: str, param: int, image_size: int, repeats: int = 5) -> dict:
    obj, data_bytes = _build(kind, param)
    img = _render(kind, obj, image_size)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        img = _render(kind, obj, image_size)
        times.append(time.perf_counter() - t)
    size = (int(obj.num_faces_per_mesh()[0]) if kind == "mesh" else len(obj[0]))
    return {"kind": kind, "param": param, "elements": size, "data_mb": data_bytes / 2**20,
            "ms_per_frame": 1e3 * sorted(times)[len(times) // 2], "alpha": img[..., 3]}


def true_silhouette(image_size: int, n: int = 256) -> torch.Tensor:
    """(H, W) bool silhouette of the torus from a fine triangulation of its parametric grid."""
    from a1_rendering.torus_render import parametric_points
    from l3d.structures import Meshes

    pts = parametric_points("torus", n + 1)  # angles 0..2 pi inclusive: the last row repeats the first
    idx = torch.arange((n + 1) * (n + 1)).view(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = torch.cat([torch.stack([a, b, c], -1).view(-1, 3), torch.stack([a, c, d], -1).view(-1, 3)])
    mesh = Meshes([pts], [faces])
    from l3d.cameras import FoVPerspectiveCameras, look_at_view_transform
    from l3d.raster import rasterize_meshes

    R, T = look_at_view_transform(4.2, 30.0, 20.0)
    with torch.no_grad():
        return rasterize_meshes(mesh, FoVPerspectiveCameras(R=R, T=T), image_size).pix_to_face[0] >= 0


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/tradeoffs",
                       presets={"quick": {"image_size": 128, "voxel_sizes": [24, 48], "samples": [40, 120]}})
    ap.add_flag("image_size", default=256, help="render size in pixels")
    ap.add_argument("--voxel_sizes", type=int_at_least(8), nargs="+", default=[32, 64, 128],
                    help="mesh resolutions (marching-cubes grid points per axis)")
    ap.add_argument("--samples", type=int_at_least(4), nargs="+", default=[50, 100, 300], help="points per angle")
    args = ap.parse_args(argv)
    import matplotlib.pyplot as plt

    jobs = [("mesh", v) for v in args.voxel_sizes] + [("points", s) for s in args.samples]
    rows = [measure(kind, param, args.image_size) for kind, param in jobs]
    for r, kb in zip(rows, peak_memory_kb(jobs, args.image_size)):
        r["peak_frame_mb"] = kb / 1024
    truth = true_silhouette(args.image_size)
    for r in rows:
        covered = (r.pop("alpha") > 0.5) & truth
        r["silhouette_coverage"] = float(covered.sum() / truth.sum())
    lines = ["| representation | resolution | faces / points | data (MB) | time per frame (ms) | "
             "peak memory per frame (MB) | silhouette coverage |", "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        res = f"{r['param']}^3 grid" if r["kind"] == "mesh" else f"{r['param']}^2 samples"
        lines.append(f"| {r['kind']} | {res} | {r['elements']} | {r['data_mb']:.3f} | {r['ms_per_frame']:.1f} | "
                     f"{r['peak_frame_mb']:.1f} | {r['silhouette_coverage']:.3f} |")
    meshes = [r for r in rows if r["kind"] == "mesh"]
    points = [r for r in rows if r["kind"] == "points"]
    dense = max(points, key=lambda r: r["elements"])
    sparse = min(points, key=lambda r: r["elements"])
    fine = max(meshes, key=lambda r: r["elements"])
    notes = [
        "",
        f"Measured at {args.image_size}x{args.image_size} on {torch.get_num_threads()} CPU threads "
        f"({'quick setting' if args.quick else 'full setting'}).",
        f"- Holes: the sparsest cloud ({sparse['elements']} points) covers {100 * sparse['silhouette_coverage']:.1f} % "
        f"of the silhouette, the densest ({dense['elements']}) {100 * dense['silhouette_coverage']:.1f} %; "
        f"a closed mesh has no holes at any resolution (coarsest: {100 * min(r['silhouette_coverage'] for r in meshes):.1f} %, "
        "the rest is the marching-cubes approximation of the outline).",
        f"- Speed: the finest mesh ({fine['elements']} faces) renders in {fine['ms_per_frame']:.1f} ms, the densest "
        f"cloud in {dense['ms_per_frame']:.1f} ms; point cost grows with the number of points times the splat area, "
        "mesh cost with the covered pixels plus the face count.",
        f"- Memory: a frame needs {fine['peak_frame_mb']:.1f} MB (finest mesh) vs {dense['peak_frame_mb']:.1f} MB "
        "(densest cloud) on top of the data.",
        "- Ease of use: points need no connectivity (any sampler or depth map gives them) but need a radius and "
        "many samples to look solid; meshes need faces (marching cubes, modelling) but shade smoothly with normals.",
    ]
    out = atomic_write(f"{args.output_dir}/tradeoffs.md",
                       "# Meshes vs point clouds (measured)\n\n" + "\n".join(lines + notes) + "\n")
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    for kind, mk in (("mesh", "o-"), ("points", "s-")):
        rs = [r for r in rows if r["kind"] == kind]
        ax[0].plot([r["elements"] for r in rs], [r["ms_per_frame"] for r in rs], mk, label=kind)
        ax[1].plot([r["elements"] for r in rs], [r["peak_frame_mb"] for r in rs], mk, label=kind)
    for a, t in zip(ax, ("time per frame (ms)", "peak memory per frame (MB)")):
        a.set_xscale("log"), a.set_xlabel("faces / points"), a.set_ylabel(t), a.legend(), a.grid(alpha=0.3)
    fig.tight_layout()
    plot = f"{args.output_dir}/tradeoffs.png"
    with atomic_path(plot) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    print("\n".join(lines + notes))
    mesh_cov = min(r["silhouette_coverage"] for r in meshes)
    checks = {
        "mesh_coverage": check(mesh_cov, min=0.95, what="lowest fraction of the true silhouette covered by a "
                               "marching-cubes mesh (closed: no holes)"),
        "coverage_gap": check(mesh_cov - sparse["silhouette_coverage"], min=0.2,
                              what=f"mesh coverage minus that of the sparsest point cloud ({sparse['elements']} points, "
                                   "radius 0.01): the holes a cloud leaves"),
    }
    report_checks(args.output_dir, {"rows": rows}, [out, plot], checks)


if __name__ == "__main__":
    run_cli(main)
