"""Assignment 1: rendering basics (cameras, meshes, point clouds) with the l3d core."""
