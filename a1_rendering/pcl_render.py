"""5.1 point clouds from RGB-D images: unproject the masked pixels of two views of an object to
world space and render three 360-degree GIFs: the cloud of image 1, of image 2, and their union.

Uses the course's ``a1/rgbd_data.pkl`` (a CO3D plant) when present, else a synthetic RGB-D pair of
the cow rendered by l3d from two cameras. The CO3D frame renders upside down, so its turntable
is rolled 180 degrees about the view axis (``--flip``).

    python -m a1_rendering.pcl_render --num_frames 36 --image_size 256
"""

from __future__ import annotations

import torch

from l3d.cameras import FoVPerspectiveCameras, look_at_view_transform, rotation_about_axis, unproject_depth_image
from l3d.cli import report, script_parser
from l3d.data import load_rgbd_pair
from l3d.io import save_gif_with_png
from l3d.shading import render_points
from l3d.structures import Pointclouds
from l3d.train import choose_device, run_cli


def rgbd_clouds(data: dict):
    """{"cloud1", "cloud2", "union"} -> (points (P, 3), colours (P, 3))."""
    grid = "linspace" if data["source"] == "course" else "centers"
    clouds = {}
    for i in (1, 2):
        clouds[f"cloud{i}"] = unproject_depth_image(data[f"rgb{i}"], data[f"mask{i}"], data[f"depth{i}"],
                                                    data[f"cameras{i}"], grid=grid)
    clouds["union"] = tuple(torch.cat([clouds["cloud1"][k], clouds["cloud2"][k]]) for k in (0, 1))
    return clouds


def turntable(points, colors, num_frames, image_size, dist, flip: bool, radius=0.01, center=None):
    """(T, H, W, 3) frames circling the cloud's centre; ``flip`` rolls the camera 180 degrees."""
    center = points.mean(0) if center is None else center
    azim = torch.linspace(0, 360, num_frames + 1)[:-1]
    R, T = look_at_view_transform(dist, 0.0, azim, at=center[None].cpu(), device=points.device)
    if flip:  # roll about the view axis: view x, y -> -x, -y
        Rz = rotation_about_axis(180.0, "z", device=points.device)[0]
        R, T = R @ Rz, T @ Rz
    cams = FoVPerspectiveCameras(R=R, T=T)
    with torch.no_grad():
        frames = render_points(Pointclouds([points], [colors]), cams, image_size, radius=radius, batch_size=8)
    return frames[..., :3].clamp(0, 1)


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/pcl_render")
    ap.add_argument("--rgbd_path", default="a1/rgbd_data.pkl", help="pickle under the data root")
    ap.add_argument("--data", choices=["auto", "synthetic"], default="auto", help="synthetic forces the rendered stand-in")
    ap.add_argument("--num_frames", type=int, default=36, help="frames per GIF")
    ap.add_argument("--fps", type=float, default=15, help="GIF frame rate")
    ap.add_argument("--image_size", type=int, default=256, help="frame size in pixels")
    ap.add_argument("--dist", type=float, default=None, help="camera distance (default 6 for the course data, 3 synthetic)")
    ap.add_argument("--flip", choices=["auto", "yes", "no"], default="auto",
                    help="roll the view 180 degrees (auto: only for the course's CO3D data)")
    args = ap.parse_args(argv)
    if args.quick:
        args.num_frames, args.image_size = min(args.num_frames, 6), min(args.image_size, 96)
    data = load_rgbd_pair(args.rgbd_path, choose_device(args.device), force_synthetic=args.data == "synthetic")
    course = data["source"] == "course"
    flip = args.flip == "yes" or (args.flip == "auto" and course)
    dist = args.dist if args.dist is not None else (6.0 if course else 3.0)
    clouds = rgbd_clouds(data)
    center = clouds["union"][0].mean(0)
    written, counts = [], {}
    for name, (pts, rgb) in clouds.items():
        frames = turntable(pts, rgb, args.num_frames, args.image_size, dist, flip, center=center)
        written += save_gif_with_png(f"{args.output_dir}/{name}.gif", frames, fps=args.fps)
        counts[f"num_points_{name}"] = int(len(pts))
    report(args.output_dir, {"data": data["source"], **counts}, written)


if __name__ == "__main__":
    run_cli(main)
