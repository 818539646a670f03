"""Quick demo of Q2 (score distillation) with the tiny random Stable Diffusion checkpoint.

    python -m a4_gaussians_diffusion.diffusion.demo

Real Stable Diffusion weights cannot be downloaded here, so this builds the tiny randomly
initialised checkpoint of :mod:`a4_gaussians_diffusion.diffusion.tiny` (in a hidden folder of the
output tree) and runs every SDS script at ``--quick`` size through it: image optimisation with and
without guidance, mesh texturing, DreamFusion NeRF and view-dependent NeRF. Outputs go to
``output/a4_gaussians_diffusion/diffusion_<part>/``; every run folder holds ``TINY_PIPELINE.md``
and ``"pipeline": "tiny-random"`` in its metrics, because its pictures are not meaningful images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from l3d.cli import run_steps

from .tiny import build_tiny_pipeline

PKG = "a4_gaussians_diffusion.diffusion"


def main(argv=None, output_root: str = "output/a4_gaussians_diffusion") -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output_root", default=output_root, help="assignment output folder")
    ap.add_argument("--device", default="cpu", help="device for the runs")
    # None means "no flags" (not sys.argv): the assignment's demo calls main() from its own CLI
    args = ap.parse_args([] if argv is None else list(argv))
    root = Path(args.output_root)
    model = build_tiny_pipeline(root / ".tiny_sd_checkpoint")
    common = ["--quick", "--model", str(model), "--device", args.device]
    steps = [
        (f"{PKG}.image_optimization", ["--prompt", "a hamburger", "--sds_guidance", "1", *common,
                                       "--output_dir", str(root / "diffusion_image")]),
        (f"{PKG}.image_optimization", ["--prompt", "a hamburger", "--sds_guidance", "0", *common,
                                       "--output_dir", str(root / "diffusion_image")]),
        (f"{PKG}.mesh_optimization", ["--prompt", "a dotted black and white cow", *common,
                                      "--output_dir", str(root / "diffusion_mesh")]),
        (f"{PKG}.nerf_optimization", ["--prompt", "a standing corgi dog", *common,
                                      "--output_dir", str(root / "diffusion_nerf")]),
        (f"{PKG}.nerf_optimization", ["--prompt", "a standing corgi dog", "--view_dep_text", "1", *common,
                                      "--output_dir", str(root / "diffusion_nerf")]),
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny models' tensors are so small that extra threads only add overhead
    try:
        run_steps(steps)
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main(sys.argv[1:])
