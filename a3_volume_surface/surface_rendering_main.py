"""Surface rendering (parts 5-8): sphere tracing, neural SDF from points, VolSDF / NeuS from images.

    python -m a3_volume_surface.surface_rendering_main --config-name=torus_surface     # part 5
    python -m a3_volume_surface.surface_rendering_main --config-name=points_surface    # part 6
    python -m a3_volume_surface.surface_rendering_main --config-name=volsdf_surface    # part 7
    python -m a3_volume_surface.surface_rendering_main --config-name=complex_scene     # part 8.1
    python -m a3_volume_surface.surface_rendering_main --config-name=volsdf_sparse     # part 8.2
    python -m a3_volume_surface.surface_rendering_main --config-name=neus_surface renderer.s=50   # part 8.3

Configs live in configs/a3/; any key can be overridden, ``quick=true`` applies the config's
``quick_overrides``. The top-level ``type`` picks the mode: render | train_points | train_images.
"""

from __future__ import annotations

import hydra

from .entry import CONFIG_DIR, hydra_task

MODES = ("render", "train_points", "train_images")


@hydra.main(config_path=CONFIG_DIR, config_name="torus_surface", version_base=None)
@hydra_task
def main(cfg):
    from .common import prepare

    plain, device, out = prepare(cfg, "a3_volume_surface.surface_rendering_main")
    mode = plain.get("type")
    from . import surface_runs

    if mode == "render":
        return surface_runs.run_render(plain, device, out)
    if mode == "train_points":
        return surface_runs.run_train_points(plain, device, out)
    if mode == "train_images":
        return surface_runs.run_train_images(plain, device, out)
    raise ValueError(f"unknown type {mode!r} for surface_rendering_main; expected one of {', '.join(MODES)}")


if __name__ == "__main__":
    main()
