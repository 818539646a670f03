"""Render a camera path through 3D Gaussians (a 3DGS .ply) to GIF and WebM.

    python -m a4_gaussians_diffusion.gaussians.render_path --scene gaussians.ply --path orbit
    python -m a4_gaussians_diffusion.gaussians.render_path --scene gaussians.ply --views <scene folder> --path interp

The Gaussians are read and rendered as ``a4_gaussians_diffusion.gaussians.render`` does
(background and up vector from the .ply's header when it records them, else white and (0, -1, 0));
the orbit is centred on the median of the Gaussians' centres at the course's distance 6 with its
focal length (5 in NDC). Spiral and interp need the training cameras: --views names the scene
folder (course format) the Gaussians were trained on. Flags and outputs as
``python -m l3d.render_path`` (this module is its A4 scene loader).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from l3d.cli import run_cli
from l3d.render_path import PathScene, build_parser, run

SCENE_KINDS = "an A4 3DGS .ply"
ORBIT_DISTANCE = 6.0  # the course's turntable
ORBIT_FOCAL = 5.0  # NDC: the course's screen focal 5 * size / 2


def claims(scene: str) -> bool:
    return Path(scene).suffix.lower() == ".ply"


def load_scene(scene: str, device: torch.device, args: Any) -> PathScene:
    from .data import load_scene as load_views
    from .rasterize import RasterSettings
    from .render import DEFAULT_BACKGROUND, DEFAULT_UP, load_gaussians, render_frames

    g, info, data = load_gaussians(scene, device)
    background = tuple(info.get("background", DEFAULT_BACKGROUND))
    cams, size, missing = None, (256, 256), "a .ply holds no cameras; give --views <the scene folder it was trained on>"
    if getattr(args, "views", None):
        views = load_views(args.views, device)
        cams, size = views.cameras[torch.tensor(views.train_idx)], views.image_size

    def render(c, hw):
        return render_frames(g, c.to(device), RasterSettings(hw, background=background), use_sh=g.sh is not None,
                             label="splat")[0]

    return PathScene(render=render, label=data, center=tuple(g.means.detach().median(0).values.tolist()),
                     up=tuple(info.get("up", DEFAULT_UP)), radius=ORBIT_DISTANCE, focal_length=ORBIT_FOCAL,
                     image_size=size, training_cameras=cams, missing_views=missing,
                     extra={"gaussians": g.num_gaussians})


def main(argv=None):
    return run(build_parser(__doc__, "a4_gaussians_diffusion/gaussians/render_path").parse_args(argv), load_scene)


if __name__ == "__main__":
    run_cli(main)
