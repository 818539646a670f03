"""Render a camera path through a trained A3 run (NeRF, VolSDF, NeuS, neural SDF) to GIF and WebM.

    python -m a3_volume_surface.render_path --scene output/a3_volume_surface/part_3 --path spiral
    python -m a3_volume_surface.render_path --scene output/a3_volume_surface/part_7 --path interp --keys 0 25 50

The model is rebuilt from the run's newest intact checkpoint (or the checkpoint file given) and
its config; orbit defaults come from the run's turntable (gif.radius, gif.up, gif.focal_length)
and its image size from data.image_size. Spiral and interp use the run's training cameras, loaded
as in training (an image-trained run: parts 3, 4, 7, 8.2, 8.3). Flags and outputs as
``python -m l3d.render_path`` (this module is its A3 scene loader).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from l3d.cli import run_cli
from l3d.render_path import PathScene, build_parser, run

SCENE_KINDS = "an A3 run folder or checkpoint (python -m a3_volume_surface.*_rendering_main)"


def _config_of(path: Path) -> Mapping[str, Any]:
    folder = path if path.is_dir() else (path.parent.parent if path.parent.name == "checkpoints" else path.parent)
    cfg = folder / "config.yaml"
    if not cfg.is_file():
        return {}
    try:
        from omegaconf import OmegaConf

        return OmegaConf.to_container(OmegaConf.load(cfg))
    except Exception:  # not our config: not our scene
        return {}


def claims(scene: str) -> bool:
    """An A3 run folder (checkpoints/ and a config.yaml with an implicit_function) or a .pt of one."""
    p = Path(scene)
    if p.is_dir() and not (p / "checkpoints").is_dir():
        return False
    if p.is_file() and p.suffix != ".pt":
        return False
    return "implicit_function" in _config_of(p)


def _training_cameras(cfg: Mapping[str, Any]):
    from .volume_runs import load_scene as load_views, train_views

    if cfg.get("type") not in ("train_nerf", "train_images"):
        return None
    _, cams = train_views(load_views(cfg), (cfg.get("data") or {}).get("max_train_views"))
    return cams


def load_scene(scene: str, device: torch.device, args: Any) -> PathScene:
    from .common import wh_to_hw
    from .export import load_run
    from .model import render_images

    model, cfg, _ = load_run(scene, device)
    gif = cfg.get("gif") or {}
    data = cfg.get("data") or {}
    cams = _training_cameras(cfg) if getattr(args, "path", "orbit") != "orbit" else None
    return PathScene(
        render=lambda c, hw: render_images(model, c.to(device), hw)["color"],
        label=f"A3 {cfg.get('part', cfg.get('type'))} run {scene}",
        up=tuple(gif.get("up", (0.0, 1.0, 0.0))), radius=float(gif.get("radius", 4.0)),
        focal_length=float(gif.get("focal_length", 1.0)),
        image_size=wh_to_hw(data["image_size"]) if data.get("image_size") else (128, 128),
        training_cameras=cams,
        missing_views=f"a {cfg.get('type')} run has no training views" if cams is None else "",
    )


def main(argv=None):
    return run(build_parser(__doc__, "a3_volume_surface/render_path").parse_args(argv), load_scene)


if __name__ == "__main__":
    run_cli(main)
