"""Q1 (Gaussian splatting) at the demo's size: the steps of :func:`a4_gaussians_diffusion.parts.gaussian_steps`.

    python -m a4_gaussians_diffusion.gaussians.demo [--output_root output/a4_gaussians_diffusion] [--device cpu]

Trains on the course's truck scene when it is under the data root, else on the built-in cow
scene (250 iterations: test PSNR 26.8 dB against the 25 dB minimum), renders the trained
Gaussians and the pre-trained .ply (the course's chair, else Gaussians on the cow's surface)
on the turntable, plain and with spherical harmonics next to the DC colours, and trains the
harder setting (250 iterations from 2000 random Gaussians). About a minute of one CPU core;
PyTorch runs single-threaded (the rasteriser runs many small ops, which threads do not speed up).
"""

from __future__ import annotations

import time

from l3d.cli import ScriptParser, run_cli, run_steps

from ..parts import ROOT, gaussian_steps


def build_parser() -> ScriptParser:
    ap = ScriptParser(description=__doc__)
    ap.add_argument("--output_root", default=ROOT, help="assignment output folder (the parts write below it)")
    ap.add_argument("--device", default=None,
                    help="auto, cpu, cuda or cuda:<i> for every step (default: each script's own, auto)")
    return ap


def main(argv=None) -> None:
    # None means "no flags" (not sys.argv): the assignment's demo calls main() from its own CLI
    args = build_parser().parse_args([] if argv is None else list(argv))
    import torch  # after parsing: --help answers without loading torch

    steps = gaussian_steps(args.output_root)
    if args.device is not None:
        steps = [(module, [*argv_, "--device", args.device]) for module, argv_ in steps]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        run_steps(steps)
    finally:
        torch.set_num_threads(threads)
    print(f"gaussians demo done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    import sys

    run_cli(main, sys.argv[1:])
