"""Assignment 3: neural volume and surface rendering (NeRF, sphere tracing, neural SDFs, VolSDF, NeuS)."""

import l3d  # noqa: F401  (first: l3d sets the CPU threads' wait policy before torch loads)
