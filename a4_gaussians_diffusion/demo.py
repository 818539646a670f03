"""Every part of assignment 4 at the demo's size (`python -m a4_gaussians_diffusion.demo`).

Runs :mod:`a4_gaussians_diffusion.gaussians.demo` (Q1) and :mod:`a4_gaussians_diffusion.diffusion.demo`
(Q2, through the tiny random diffusion pipeline): the steps listed in
:mod:`a4_gaussians_diffusion.parts`, whose metrics.json files carry the checks that
``python -m l3d.report --check`` holds them to. Outputs go under output/a4_gaussians_diffusion/.
Seeded: two runs write the same numbers. About 100 s of one CPU core, building the built-in
scene (output/.cache/a4_gaussians/) included.
"""

from __future__ import annotations

import time

from l3d.cli import ScriptParser, run_cli

from .parts import ROOT


def build_parser() -> ScriptParser:
    ap = ScriptParser(description=__doc__)
    ap.add_argument("--output_root", default=ROOT, help="assignment output folder")
    ap.add_argument("--device", default=None,
                    help="auto, cpu, cuda or cuda:<i> for every step (default: each demo's own: auto for Q1, cpu for Q2)")
    return ap


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)  # --help ends here, before torch is loaded
    from .diffusion import demo as diffusion_demo
    from .gaussians import demo as gaussians_demo

    device = [] if args.device is None else ["--device", args.device]
    t0 = time.perf_counter()
    gaussians_demo.main(["--output_root", args.output_root, *device])
    diffusion_demo.main(["--output_root", args.output_root, *device])
    print(f"assignment 4 demo done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    run_cli(main)
