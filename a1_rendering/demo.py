"""Quick run of every Assignment 1 part (small images, few frames): `python -m a1_rendering.demo`."""

from l3d.cli import run_steps

Q = ["--quick"]
STEPS = [
    ("a1_rendering.render_mesh", Q),
    ("a1_rendering.render_360", Q),
    ("a1_rendering.dolly_zoom", Q),
    ("a1_rendering.mesh_practice", Q + ["--shape", "tetrahedron"]),
    ("a1_rendering.mesh_practice", Q + ["--shape", "cube"]),
    ("a1_rendering.retexture", Q),
    ("a1_rendering.camera_transforms", Q),
    ("a1_rendering.pcl_render", Q),
    ("a1_rendering.torus_render", Q + ["--function", "parametric", "--shape", "torus"]),
    ("a1_rendering.torus_render", Q + ["--function", "parametric", "--shape", "superquadric"]),
    ("a1_rendering.torus_render", Q + ["--function", "implicit", "--shape", "torus"]),
    ("a1_rendering.torus_render", Q + ["--function", "implicit", "--shape", "superquadric"]),
    ("a1_rendering.fun", Q + ["--function", "full"]),
    ("a1_rendering.fun", Q + ["--function", "dolly"]),
    ("a1_rendering.sample_points", Q),
    ("a1_rendering.tradeoffs", Q),
]


def main(argv=None):
    run_steps(STEPS)


if __name__ == "__main__":
    main()
