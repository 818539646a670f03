"""Assignment 2: single-view to 3D (voxels, point clouds, meshes, an implicit decoder)."""

import l3d  # noqa: F401  (first: l3d sets the CPU threads' wait policy before torch loads)
