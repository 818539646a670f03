"""The parts of Assignment 1 as the gallery and ``python -m l3d.report --check`` see them.

Torch-free. Every part's checks are recorded by its script in ``metrics.json``; the golden
checks against the course's reference images (``reference_mae``) are written, and required
here, only when the course's mesh and its reference are in the data root (``$L3D_DATA``).
"""

from __future__ import annotations

from l3d.checks import Part
from l3d.data import data_root

REF = "a1/reference/"
TURNTABLE = ("silhouette_match", "motion_ratio", "frames_per_turn", "turn_seconds")
SIMPLE_TURN = ("motion_ratio", "frames_per_turn", "turn_seconds")


def _course(*rel: str) -> bool:
    root = data_root()
    return all((root / r).is_file() for r in rel)


def _golden(*rel: str) -> tuple:
    return ("reference_mae",) if _course(*rel) else ()


def _prefixed(prefix: str, names) -> tuple:
    return tuple(prefix + n for n in names)


_SHAPE = ("num_vertices", "num_faces", "euler", "closed_edges", "volume_error") + TURNTABLE
_TRANSFORM_REFS = tuple(f"{REF}transform{n}.jpg" for n in ("_none", "1", "2", "3", "4"))

PARTS = [
    Part("A1 0.1", "Rendering your first mesh", "a1_rendering/render_mesh",
         command="python -m a1_rendering.render_mesh --quick",
         checks=("silhouette_match",) + _golden("a1/cow.obj", REF + "cow_render.jpg"),
         references=(REF + "cow_render.jpg",), media=("cow_render.png",)),
    Part("A1 1.1", "360-degree renders", "a1_rendering/render_360",
         command="python -m a1_rendering.render_360 --quick",
         checks=TURNTABLE + ("turn_width_ratio",), media=("cow_360.gif",)),
    Part("A1 1.2", "Dolly zoom", "a1_rendering/dolly_zoom",
         command="python -m a1_rendering.dolly_zoom --quick",
         checks=("subject_size_variation", "floor_growth", "frames", "seconds")
         + _golden("a1/cow_on_plane.obj", REF + "dolly.gif"),
         references=(REF + "dolly.gif",), media=("dolly.gif",)),
    Part("A1 2.1", "Constructing a tetrahedron", "a1_rendering/mesh_practice",
         command="python -m a1_rendering.mesh_practice --quick --shape tetrahedron",
         checks=_prefixed("tetrahedron_", _SHAPE), media=("tetrahedron.gif",)),
    Part("A1 2.2", "Constructing a cube", "a1_rendering/mesh_practice",
         command="python -m a1_rendering.mesh_practice --quick --shape cube",
         checks=_prefixed("cube_", _SHAPE), media=("cube.gif",)),
    Part("A1 3", "Re-texturing a mesh", "a1_rendering/retexture",
         command="python -m a1_rendering.retexture --quick",
         checks=("front_color_error", "back_color_error", "gradient_correlation") + TURNTABLE
         + _golden("a1/cow.obj", REF + "cow_retextured.jpg"),
         references=(REF + "cow_retextured.jpg",), media=("cow_retextured.gif", "cow_retextured_side.png")),
    Part("A1 4", "Camera transformations", "a1_rendering/camera_transforms",
         command="python -m a1_rendering.camera_transforms --quick",
         checks=("pose_error", "roll_iou", "silhouette_match") + _golden("a1/cow_with_axis.obj", *_TRANSFORM_REFS),
         references=_TRANSFORM_REFS, media=("transforms.png",)),
    Part("A1 5", "Meshes vs point clouds: the trade-offs, measured", "a1_rendering/tradeoffs",
         command="python -m a1_rendering.tradeoffs --quick",
         checks=("mesh_coverage", "coverage_gap"), media=("tradeoffs.png", "tradeoffs.md")),
    Part("A1 5.1", "Rendering point clouds from RGB-D images", "a1_rendering/pcl_render",
         command="python -m a1_rendering.pcl_render --quick",
         checks=("reprojection_error_px", "free_space_violations") + SIMPLE_TURN,
         media=("cloud1.gif", "cloud2.gif", "union.gif")),
    Part("A1 5.2", "Parametric functions", "a1_rendering/torus_render",
         command="python -m a1_rendering.torus_render --quick --function parametric --shape torus && "
                 "python -m a1_rendering.torus_render --quick --function parametric --shape superquadric",
         checks=_prefixed("parametric_torus_", ("surface_distance", "hole_background", "ring_coverage") + SIMPLE_TURN)
         + _prefixed("parametric_superquadric_", ("implicit_residual",) + SIMPLE_TURN),
         references=(REF + "sphere_100.jpg", REF + "sphere_1000.jpg"),
         media=("parametric_torus.gif", "parametric_superquadric.gif")),
    Part("A1 5.3", "Implicit surfaces", "a1_rendering/torus_render",
         command="python -m a1_rendering.torus_render --quick --function implicit --shape torus && "
                 "python -m a1_rendering.torus_render --quick --function implicit --shape superquadric",
         checks=_prefixed("implicit_torus_", ("surface_distance", "euler", "volume_error", "area_error",
                                              "hole_background", "ring_coverage") + SIMPLE_TURN)
         + _prefixed("implicit_superquadric_", ("implicit_residual", "euler", "volume_error") + SIMPLE_TURN),
         references=(REF + "sphere_mesh.jpg",), media=("implicit_torus.gif", "implicit_superquadric.gif")),
    Part("A1 6", "Do something fun: a cottage turntable and dolly zoom", "a1_rendering/fun",
         command="python -m a1_rendering.fun --quick --function full && "
                 "python -m a1_rendering.fun --quick --function dolly",
         checks=_prefixed("full_", TURNTABLE)
         + _prefixed("dolly_", ("subject_size_variation", "path_growth", "frames", "seconds")),
         media=("cottage_full.gif", "cottage_dolly.gif")),
    Part("A1 7", "Sampling points on meshes", "a1_rendering/sample_points",
         command="python -m a1_rendering.sample_points --quick",
         checks=("surface_distance", "area_chi2_p", "frames_per_turn", "turn_seconds"),
         media=("samples_100.gif", "samples_1000.gif", "samples_10000.gif")),
]
