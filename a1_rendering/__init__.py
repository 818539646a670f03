"""Assignment 1: rendering basics (cameras, meshes, point clouds) with the l3d core."""

import l3d  # noqa: F401,E402  (first: l3d sets the CPU threads' wait policy before torch loads)
