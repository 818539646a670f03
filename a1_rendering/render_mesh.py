"""0.1 baseline: render the cow with R = I, T = (0, 0, 3) (camera at (0, 0, -3)), FoV 60,
a point light at (0, 0, -3), flat mesh colour (0.7, 0.7, 1) and Phong shading.

Checks (metrics.json): the rendered silhouette against surface samples (4 per pixel) projected
by the same camera (their outlines agree within a pixel), and, with the course's cow.obj, the
render against the course's reference/cow_render.jpg (mean absolute error per pixel at 256 x 256).

    python -m a1_rendering.render_mesh --image_size 512 --output_file output/a1_rendering/cow_render.png

(``--output_path`` and ``--cow_path``, the course's names, are accepted for ``--output_file`` and
``--data_path``.)
"""

from __future__ import annotations

import time

import numpy as np
import torch

from a1_rendering.common import MESH_COLOR, add_mesh_flags, course_file, load_mesh_labelled, report_checks, unit_float
from a1_rendering.measure import sample_silhouette, silhouette_match
from l3d.cameras import FoVPerspectiveCameras
from l3d.checks import check
from l3d.errors import user_error
from l3d.cli import output_path, run_cli, script_parser
from l3d.media import load_image, save_image
from l3d.shading import PointLights, render_mesh
from l3d.train import choose_device
from l3d.viz import with_vertex_colors

REFERENCE = "a1/reference/cow_render.jpg"


def baseline_camera(device="cpu") -> FoVPerspectiveCameras:
    return FoVPerspectiveCameras(R=torch.eye(3, device=device)[None], T=torch.tensor([[0.0, 0.0, 3.0]], device=device))


def render_baseline(mesh, image_size: int, color=MESH_COLOR, textured: bool = False, rgba: bool = False) -> torch.Tensor:
    """(H, W, 3) render of the 0.1 setting ((H, W, 4) with the coverage as alpha if ``rgba``)."""
    lights = PointLights(location=((0.0, 0.0, -3.0),))
    if not textured:
        mesh = with_vertex_colors(mesh, color)
    with torch.no_grad():
        out = render_mesh(mesh, baseline_camera(mesh.device), image_size, lights=lights)[0].clamp(0, 1)
    return out if rgba else out[..., :3]


def reference_error(img: torch.Tensor, ref_path) -> float:
    """Mean absolute error per pixel (channel mean, [0, 1] scale) between a render and a reference image."""
    ref = load_image(ref_path)[..., :3].numpy().astype(np.float64)
    return float(np.abs(img.cpu().numpy().astype(np.float64) - ref).mean())


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/render_mesh", presets={"quick": {"image_size": 128}})
    add_mesh_flags(ap)
    ap.add_argument("--output_file", "--output_path", dest="output_file", default=None,
                    help="PNG to write (default: <output_dir>/cow_render.png)")
    ap.add_flag("image_size", default=256, help="output size in pixels (square)")
    ap.add_argument("--color", type=unit_float, nargs=3, default=list(MESH_COLOR), metavar=("R", "G", "B"),
                    help="mesh colour (each channel in [0, 1])")
    ap.add_argument("--textured", action="store_true", help="use the mesh's own UV texture instead of --color")
    args = ap.parse_args(argv)
    device = choose_device(args.device)
    mesh, data, course = load_mesh_labelled(args, device)
    if args.textured and mesh.textures is None:
        raise user_error(args.data_path or data, "a textured mesh for --textured (an MTL with a map_Kd image)",
                         "no texture")
    t = time.perf_counter()
    img = render_baseline(mesh, args.image_size, args.color, args.textured, rgba=True)
    elapsed = time.perf_counter() - t
    out = save_image(output_path(args, "cow_render.png"), img[..., :3])

    samples = sample_silhouette(mesh, baseline_camera(device), args.image_size, seed=args.seed)[0]
    match = float(silhouette_match(img[..., 3] > 0.5, samples))
    checks = {"silhouette_match": check(match, min=0.95, what="share of outline pixels within 1 pixel of the "
                                        "other outline: rendered silhouette vs surface samples projected by the same camera")}
    metrics = {"render_time_s": elapsed, "image_size": args.image_size, "data": data}
    ref = course_file(REFERENCE)
    if course and ref is not None and not args.textured and list(args.color) == list(MESH_COLOR):
        img256 = img[..., :3] if args.image_size == 256 else render_baseline(mesh, 256)
        checks["reference_mae"] = check(reference_error(img256, ref), max=0.005,
                                        what=f"mean absolute error per pixel of the 256 x 256 render vs {REFERENCE}")
    report_checks(args.output_dir, metrics, [out], checks)


if __name__ == "__main__":
    run_cli(main)
