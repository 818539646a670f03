"""Quick run of every Assignment 1 part (small images, few frames), about 30 s on one CPU core:

    python -m a1_rendering.demo

Runs each script below with --quick into its folder under output/a1_rendering/ (each writes a
metrics.json with its checks); `python -m l3d.report --check --only A1` then checks them all.
"""

from l3d.cli import ScriptParser, run_cli, run_steps

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
    steps = "\n".join(f"    python -m {m} {' '.join(a)}" for m, a in STEPS)
    ap = ScriptParser(prog="python -m a1_rendering.demo", description=__doc__ + "\nsteps:\n" + steps)
    ap.add_argument("--list", action="store_true", help="print the steps' commands and exit without running them")
    args = ap.parse_args(argv)
    if args.list:
        print(steps)
        return 0
    run_steps(STEPS)
    return 0


if __name__ == "__main__":
    run_cli(main)
