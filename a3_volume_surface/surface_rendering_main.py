"""Surface rendering (parts 5-8): sphere tracing, neural SDF from points, VolSDF / NeuS from images.

    python -m a3_volume_surface.surface_rendering_main --config-name=torus_surface     # part 5
    python -m a3_volume_surface.surface_rendering_main --config-name=points_surface    # part 6
    python -m a3_volume_surface.surface_rendering_main --config-name=volsdf_surface    # part 7
    python -m a3_volume_surface.surface_rendering_main --config-name=complex_scene     # part 8.1
    python -m a3_volume_surface.surface_rendering_main --config-name=volsdf_sparse     # part 8.2
    python -m a3_volume_surface.surface_rendering_main --config-name=neus_surface renderer.s=50   # part 8.3

Configs live in configs/a3/; any key can be overridden, ``quick=true`` applies the config's
``quick_overrides``. The top-level ``type`` picks the mode: render | train_points | train_images.

VolSDF / NeuS training (train_images) also runs data-parallel over the rays and eikonal points of
each batch on several processes or GPUs (rank 0 writes the same files as one process)::

    torchrun --nproc_per_node 2 -m a3_volume_surface.surface_rendering_main --config-name=volsdf_surface
"""

from __future__ import annotations

from .entry import hydra_app

main = hydra_app("torus_surface", "a3_volume_surface.surface_rendering_main", "surface")

if __name__ == "__main__":
    main()
