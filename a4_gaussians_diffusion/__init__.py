"""Assignment 4: 3D Gaussian splatting in pure PyTorch (``gaussians/``) and score distillation
(``diffusion/``)."""

import l3d  # noqa: F401,E402  (first: l3d sets the CPU threads' wait policy before torch loads)
