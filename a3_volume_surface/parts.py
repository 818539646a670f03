"""The questions of Assignment 3 as the gallery and ``python -m l3d.report --check`` see them.

Torch-free. The commands are the demo's (:func:`a3_volume_surface.demo.command`). Every part's
checks are written by its run into ``metrics.json``; the golden checks against the course's
reference images are written, and required here, only when those references are in the data
root (``$L3D_DATA``), and the VolSDF/NeuS parts compare their geometry with the true mesh only on
the built-in scene (on the course's lego they must produce a non-empty surface instead).
"""

from __future__ import annotations

from l3d.checks import Part
from l3d.data import data_root

from .demo import command

_ROOT = "a3_volume_surface"
REF = "a3/reference/"
TURN = ("frames_per_turn", "turn_seconds", "motion_ratio")
TRACING = ("hit_precision", "silhouette_iou", "depth_error", "psnr_vs_dense_march")


def _have(rel: str) -> bool:
    return (data_root() / rel).is_file()


def _golden(names) -> tuple:
    """Check names whose reference file (``(check, file in a3/reference)``) is in the data root."""
    return tuple(check for check, ref in names if _have(REF + ref))


def _prefixed(prefix: str, names) -> tuple:
    return tuple(prefix + n for n in names)


def _nerf_part(key: str, title: str, folder: str, gif: str) -> Part:
    return Part(key, title, f"{_ROOT}/{folder}", command=command(folder), checks=("test_psnr",) + TURN,
                media=(f"{gif}.gif", f"{gif}_test_views.png"))


def _surface_part(key: str, title: str, folder: str, gif: str, references=()) -> Part:
    geometry = "geometry_faces" if _have("a3/lego.pth") else "geometry_chamfer"
    return Part(key, title, f"{_ROOT}/{folder}", command=command(folder),
                checks=("test_psnr", geometry) + TURN + _prefixed("geometry_", TURN), references=references,
                media=(f"{gif}.gif", f"{gif}_geometry.gif", f"{gif}_test_views.png"))


PARTS = [
    Part("A3 0", "Transmittance calculation", f"{_ROOT}/q0_transmittance", command=command("q0_transmittance"),
         checks=("discrete_vs_closed_form", "exponents_vs_answer"),
         media=("q0_transmittance.png", "q0_transmittance.md")),
    Part("A3 1", "Differentiable volume rendering", f"{_ROOT}/part_1", command=command("part_1"),
         checks=("silhouette_recall", "silhouette_precision", "depth_error") + TURN
         + _golden((("reference_grid_png", "grid.png"), ("reference_rays_png", "rays.png"),
                    ("reference_depth_png", "depth.png"), ("reference_gif_frames", "part_1.gif"))),
         references=tuple(REF + n for n in ("part_1.gif", "grid.png", "rays.png", "sample_points.png", "depth.png")),
         media=("part_1.gif", "depth.png", "rays.png", "sample_points.png")),
    Part("A3 2", "Optimizing a basic implicit volume", f"{_ROOT}/part_2", command=command("part_2"),
         checks=("center_error", "sides_error") + TURN, references=(REF + "part_2.gif",),
         media=("part_2.gif", "part_2_before_training.png", "part_2_after_training.png")),
    _nerf_part("A3 3", "Optimizing a neural radiance field (NeRF)", "part_3", "part_3"),
    _nerf_part("A3 4.1", "View dependence", "part_4_1", "part_4_1"),
    _nerf_part("A3 4.2", "Coarse/fine sampling", "part_4_2", "part_4_2"),
    Part("A3 5", "Sphere tracing", f"{_ROOT}/part_5", command=command("part_5"),
         checks=TRACING + TURN + _golden((("reference_silhouette_pixels", "part_5.gif"),)),
         references=(REF + "part_5.gif",), media=("part_5.gif",)),
    Part("A3 6", "Optimizing a neural SDF from a point cloud", f"{_ROOT}/part_6", command=command("part_6"),
         checks=("chamfer",) + TURN + _prefixed("input_", TURN),
         references=(REF + "part_6_input.gif", REF + "part_6.gif"), media=("part_6_input.gif", "part_6.gif")),
    _surface_part("A3 7", "VolSDF: SDF to density", "part_7", "part_7",
                  references=(REF + "part_7.gif", REF + "part_7_geometry.gif")),
    Part("A3 8.1", "Rendering a large scene with sphere tracing", f"{_ROOT}/part_8_1", command=command("part_8_1"),
         checks=TRACING + ("primitives",) + TURN, media=("part_8_1.gif",)),
    _surface_part("A3 8.2", "Fewer training views: VolSDF", "part_8_2_volsdf", "part_8_2_volsdf"),
    _nerf_part("A3 8.2", "Fewer training views: NeRF", "part_8_2_nerf", "part_8_2_nerf"),
    _surface_part("A3 8.3", "Alternate SDF to density: NeuS' logistic density (s = 50)", "part_8_3_s50", "part_8_3"),
]
