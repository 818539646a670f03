"""Volume rendering (parts 1-4): render an SDF volume, fit a box, train NeRF.

    python -m a3_volume_surface.volume_rendering_main --config-name=box          # part 1
    python -m a3_volume_surface.volume_rendering_main --config-name=train_box    # part 2
    python -m a3_volume_surface.volume_rendering_main --config-name=nerf_lego    # part 3
    python -m a3_volume_surface.volume_rendering_main --config-name=nerf_materials   # part 4.1
    python -m a3_volume_surface.volume_rendering_main --config-name=nerf_lego_hierarchical   # part 4.2

Configs live in configs/a3/; any key can be overridden (``training.num_epochs=5``), ``quick=true``
applies the config's ``quick_overrides`` (seconds on a CPU), ``--cfg job`` prints the composed
config (typed: a misspelt key or a value of the wrong type stops with one line naming
the key). The top-level ``type`` picks the mode: render | train | train_nerf.

NeRF training also runs data-parallel over the rays of each batch on several processes or GPUs
(``training.batch_size`` stays the global batch; rank 0 writes the same files as one process)::

    torchrun --nproc_per_node 2 -m a3_volume_surface.volume_rendering_main --config-name=nerf_lego
"""

from __future__ import annotations

from .entry import hydra_app

main = hydra_app("box", "a3_volume_surface.volume_rendering_main", "volume")

if __name__ == "__main__":
    main()
