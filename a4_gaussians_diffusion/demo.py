"""Quick version of every part of assignment 4 (`python -m a4_gaussians_diffusion.demo`).

Runs the Gaussian-splatting tour (:mod:`a4_gaussians_diffusion.gaussians.demo`) and, when the
score-distillation package provides one, :mod:`a4_gaussians_diffusion.diffusion.demo`. Outputs
go under output/a4_gaussians_diffusion/.
"""

from __future__ import annotations

import importlib
import importlib.util


def main(argv=None) -> None:
    from a4_gaussians_diffusion.gaussians import demo as gaussians_demo

    gaussians_demo.main([])
    if importlib.util.find_spec("a4_gaussians_diffusion.diffusion") is not None and \
            importlib.util.find_spec("a4_gaussians_diffusion.diffusion.demo") is not None:
        importlib.import_module("a4_gaussians_diffusion.diffusion.demo").main()


if __name__ == "__main__":
    main()
