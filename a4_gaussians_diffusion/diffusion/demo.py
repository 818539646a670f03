"""Quick demo of Q2 (score distillation) with the tiny random Stable Diffusion checkpoint.

    python -m a4_gaussians_diffusion.diffusion.demo

Real Stable Diffusion weights cannot be downloaded here, so this builds the tiny randomly
initialised checkpoint of :mod:`a4_gaussians_diffusion.diffusion.tiny` (in a hidden folder of the
output tree) and runs every SDS script at ``--quick`` size through it: image optimisation with and
without guidance, mesh texturing, DreamFusion NeRF and view-dependent NeRF (the steps of
:func:`a4_gaussians_diffusion.parts.diffusion_steps`). Outputs go to
``output/a4_gaussians_diffusion/diffusion_<part>/``; every run folder holds ``TINY_PIPELINE.md``,
``"pipeline": "tiny-random"`` and a ``"data"`` label saying so in its metrics, because its
pictures are not meaningful images; its checks measure that the code path works.
"""

from __future__ import annotations

import sys
from pathlib import Path

from l3d.cli import ScriptParser, run_cli, run_steps

from ..parts import ROOT, diffusion_steps


def build_parser(output_root: str = ROOT) -> ScriptParser:
    ap = ScriptParser(description=__doc__)
    ap.add_argument("--output_root", default=output_root,
                    help="assignment output folder (each part writes diffusion_<part>/ below it)")
    ap.add_argument("--device", default="cpu", help="device of the runs: cpu, cuda, cuda:<i> or auto")
    return ap


def main(argv=None, output_root: str = ROOT) -> None:
    # None means "no flags" (not sys.argv): the assignment's demo calls main() from its own CLI
    args = build_parser(output_root).parse_args([] if argv is None else list(argv))
    import torch  # after the flags: --help answers at once

    from .tiny import build_tiny_pipeline

    root = Path(args.output_root)
    model = build_tiny_pipeline(root / ".tiny_sd_checkpoint")
    steps = diffusion_steps(str(root), str(model), args.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny models' tensors are so small that extra threads only add overhead
    try:
        run_steps(steps)
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
