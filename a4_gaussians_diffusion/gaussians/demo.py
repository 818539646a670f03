"""Quick tour of Q1 (Gaussian splatting): train on the built-in cow scene for a few hundred
iterations, render the trained model on the course's turntable, and render the procedural
stand-in .ply with spherical-harmonics colours.

    python -m a4_gaussians_diffusion.gaussians.demo [--output_dir output/a4_gaussians_diffusion/gaussians]

Takes about a minute on two CPU cores (single-threaded PyTorch: the rasteriser runs many small
ops, which threads do not speed up on a small or busy machine).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from . import render, train


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output_dir", default="output/a4_gaussians_diffusion/gaussians", help="where the parts write")
    ap.add_argument("--num_itrs", type=int, default=200, help="training iterations of the demo run")
    args = ap.parse_args(argv)
    out = Path(args.output_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        print("== Q1.2 train on the built-in cow scene")
        train.main(["--data_path", "synthetic", "--num_itrs", str(args.num_itrs), "--viz_every", "20",
                    "--ckpt_every", "0", "--output_dir", str(out / "train")])
        print("== Q1.1 turntable of the trained Gaussians (y-up scene)")
        render.main(["--data_path", str(out / "train" / "gaussians.ply"), "--up", "0", "1", "0", "--image_size", "128",
                     "--output_dir", str(out / "render_trained")])
        print("== Q1.1 turntable of the procedural stand-in .ply, spherical-harmonics colours")
        render.main(["--data_path", "synthetic", "--sh", "--image_size", "128", "--output_dir", str(out / "render")])
    finally:
        torch.set_num_threads(threads)
    print(f"gaussians demo done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
