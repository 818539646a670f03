"""1.2 dolly zoom: the field of view widens from 5 to 120 degrees while the camera moves in,
``distance = k / tan(fov / 2)``, so the subject keeps its size and the background stretches.
Each frame is labelled "fov: xx.xx" in red at (20, 20).

    python -m a1_rendering.dolly_zoom --num_frames 100 --duration 30 --output_file output/a1_rendering/dolly.gif
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import torch

from a1_rendering.common import add_mesh_flags, load_mesh
from l3d.cameras import FoVPerspectiveCameras
from l3d.cli import output_path, report, script_parser
from l3d.io import label_image, save_gif_with_png
from l3d.shading import PointLights, render_mesh
from l3d.structures import Meshes
from l3d.train import choose_device, run_cli


def dolly_frames(mesh: Meshes, num_frames: int, image_size: int, k: float = 2.5, fov_start: float = 5.0,
                 fov_end: float = 120.0, height: float = 0.0, batch_size: int = 8,
                 light_location=(0.0, 0.0, -3.0), background=(1.0, 1.0, 1.0), shader: str = "phong",
                 frame_indices: Optional[Sequence[int]] = None):
    """(T, H, W, 3) labelled frames and the (T,) fovs and distances of a dolly zoom.

    The camera looks along +z from ``(0, height, -d)``; ``d = k / tan(fov / 2)`` keeps a plane at
    the origin ``2 k`` wide in view for every fov. ``frame_indices`` renders only those frames.
    """
    device, dtype = mesh.device, mesh.verts_packed().dtype
    fovs = torch.linspace(fov_start, fov_end, num_frames, dtype=dtype, device=device)
    if frame_indices is not None:
        fovs = fovs[list(frame_indices)]
        num_frames = len(fovs)
    dists = k / torch.tan(torch.deg2rad(fovs) / 2)
    R = torch.eye(3, dtype=dtype, device=device).expand(num_frames, 3, 3)
    T = torch.stack([torch.zeros_like(dists), -torch.full_like(dists, height), dists], -1)
    # the ground plane reaches under the camera at wide angles: a near plane of 0.1 (clipping at
    # 0.05) keeps it in view down to the bottom edge, as in the course's reference GIF
    cams = FoVPerspectiveCameras(znear=0.1, fov=fovs, R=R, T=T)
    lights = PointLights(location=(tuple(light_location),))
    with torch.no_grad():
        imgs = render_mesh(mesh, cams, image_size, lights=lights, background=background, shader=shader,
                           batch_size=batch_size)[..., :3].clamp(0, 1)
    frames = torch.stack([label_image(img, f"fov: {f:.2f}", xy=(20, 20), color=(255, 0, 0))
                          for img, f in zip(imgs, fovs.tolist())])
    return frames, fovs, dists


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/dolly_zoom", output_file="dolly.gif")
    add_mesh_flags(ap, "a1/cow_on_plane.obj", name="mesh_path")
    ap.add_argument("--num_frames", type=int, default=100, help="frames (fov = linspace(5, 120, num_frames))")
    ap.add_argument("--duration", type=float, default=30, help="frame duration in milliseconds")
    ap.add_argument("--image_size", type=int, default=256, help="frame size in pixels")
    ap.add_argument("--k", type=float, default=2.5,
                    help="half-width of the view at the subject: distance = k / tan(fov/2) (2.5 reproduces "
                         "the course's reference GIF)")
    args = ap.parse_args(argv)
    if args.quick:
        args.num_frames, args.image_size = min(args.num_frames, 6), min(args.image_size, 96)
    if args.num_frames < 2:
        raise ValueError("--num_frames must be at least 2")
    mesh = load_mesh(args, choose_device(args.device))
    t = time.perf_counter()
    frames, fovs, dists = dolly_frames(mesh, args.num_frames, args.image_size, args.k)
    elapsed = time.perf_counter() - t
    gif, png = save_gif_with_png(output_path(args, "dolly.gif"), frames, duration_ms=args.duration)
    report(args.output_dir, {"num_frames": args.num_frames, "fov_range": [float(fovs[0]), float(fovs[-1])],
                             "distance_range": [float(dists[0]), float(dists[-1])],
                             "render_time_per_frame_s": elapsed / args.num_frames}, [gif, png])


if __name__ == "__main__":
    run_cli(main)
