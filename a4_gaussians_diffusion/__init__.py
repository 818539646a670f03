"""Assignment 4: 3D Gaussian splatting in pure PyTorch (``gaussians/``) and score distillation
(``diffusion/``)."""
