"""Volume rendering (parts 1-4): render an SDF volume, fit a box, train NeRF.

    python -m a3_volume_surface.volume_rendering_main --config-name=box          # part 1
    python -m a3_volume_surface.volume_rendering_main --config-name=train_box    # part 2
    python -m a3_volume_surface.volume_rendering_main --config-name=nerf_lego    # part 3
    python -m a3_volume_surface.volume_rendering_main --config-name=nerf_materials   # part 4.1
    python -m a3_volume_surface.volume_rendering_main --config-name=nerf_lego_hierarchical   # part 4.2

Configs live in configs/a3/; any key can be overridden (``training.num_epochs=5``), ``quick=true``
applies the config's ``quick_overrides`` (seconds on a CPU), ``--cfg job`` prints the composed
config. The top-level ``type`` picks the mode: render | train | train_nerf.
"""

from __future__ import annotations

import hydra

from .entry import CONFIG_DIR, hydra_task

MODES = ("render", "train", "train_nerf")


@hydra.main(config_path=CONFIG_DIR, config_name="box", version_base=None)
@hydra_task
def main(cfg):
    from .common import prepare

    plain, device, out = prepare(cfg, "a3_volume_surface.volume_rendering_main")
    mode = plain.get("type")
    from . import volume_runs

    if mode == "render":
        return volume_runs.run_render(plain, device, out)
    if mode == "train":
        return volume_runs.run_train_box(plain, device, out)
    if mode == "train_nerf":
        return volume_runs.run_train_nerf(plain, device, out)
    raise ValueError(f"unknown type {mode!r} for volume_rendering_main; expected one of {', '.join(MODES)}")


if __name__ == "__main__":
    main()
