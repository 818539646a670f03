"""Q1.1: render 3-D Gaussians from a 3DGS .ply on the course's 32-view turntable.

    python -m a4_gaussians_diffusion.gaussians.render --data_path X.ply --gaussians_per_splat 1024
    python -m a4_gaussians_diffusion.gaussians.render --data_path X.ply --sh      # SH colours

Each frame is RGB | depth (jet over --depth_range, i.e. [5, 7] by default, of the opacity-
normalised depth, composited over white by the mask) | mask. Cameras (the course's): azimuth and
elevation both linspace(-180, 180, 32), distance 6, up (0, -1, 0) (3DGS files live in the
COLMAP frame, y down), screen focal 5 * size / 2 px, principal point at the image centre.
Without --data_path, <data root>/a4/chair.ply is used when present, else a procedural stand-in
(Gaussians on the cow's surface, in the same y-down frame). For a .ply written by
`a4_gaussians_diffusion.gaussians.train` on a y-up scene (the built-in cow) pass --up 0 1 0.

The default rasteriser is the tiled one; --rasterizer dense runs the course's formulation, where
--gaussians_per_splat sets how many Gaussians are splatted per batch (-1 = all at once).
"""

from __future__ import annotations

import sys
import time

import torch

from l3d.cameras import PerspectiveCameras, look_at_view_transform
from l3d.cli import output_path, report, script_parser
from l3d.data import data_root
from l3d.io import save_gif_with_png
from l3d.train import UserError, choose_device, progress, run_cli
from l3d.viz import apply_colormap

from .model import Gaussians
from .ply import load_gaussians_ply
from .rasterize import RasterSettings
from .standin import standin_gaussians

COURSE_PLY = "a4/chair.ply"


def turntable_cameras(num_views: int = 32, image_size: int = 256, dist: float = 6.0, up=(0.0, -1.0, 0.0),
                      device="cpu") -> PerspectiveCameras:
    """The course's turntable: azimuth = elevation = linspace(-180, 180, num_views), screen
    focal 5 * size / 2, principal point (size / 2, size / 2)."""
    ang = torch.linspace(-180.0, 180.0, num_views)
    R, T = look_at_view_transform(dist, ang, ang, up=(tuple(float(u) for u in up),), device=device)
    s = float(image_size)
    return PerspectiveCameras(focal_length=5.0 * s / 2.0, principal_point=((s / 2.0, s / 2.0),), R=R, T=T,
                              in_ndc=False, image_size=(image_size, image_size), device=device)


def frame_panels(image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor, depth_range=(5.0, 7.0)) -> torch.Tensor:
    """(H, 3W, 3) frame: RGB | depth (jet, normalised by the mask, over white) | mask."""
    m = mask.clamp(0, 1)[..., None]
    z = depth / mask.clamp(min=1e-6)
    jet = apply_colormap(z, "jet", depth_range[0], depth_range[1]).to(image.dtype)
    depth_rgb = jet * m + (1 - m)
    return torch.cat([image.clamp(0, 1), depth_rgb, m.expand(-1, -1, 3)], 1)


def load_gaussians(data_path, device, quick: bool = False) -> Gaussians:
    if data_path is None:
        course = data_root() / COURSE_PLY
        if course.is_file():
            return load_gaussians_ply(course, device=device)
        print(f"{course} not found; using the built-in procedural stand-in (Gaussians on the cow's surface)",
              file=sys.stderr)
        return standin_gaussians(4000 if quick else 20000, device=device)
    if data_path == "synthetic":
        return standin_gaussians(4000 if quick else 20000, device=device)
    return load_gaussians_ply(data_path, device=device)


def main(argv=None):
    ap = script_parser(__doc__, "a4_gaussians_diffusion/gaussians/render", output_file="q1_render.gif")
    ap.add_argument("--data_path", default=None, help="3DGS .ply file ('synthetic' = the procedural stand-in)")
    ap.add_argument("--gaussians_per_splat", type=int, default=-1,
                    help="dense rasteriser: Gaussians splatted per batch (-1 = all); the image does not depend on it")
    ap.add_argument("--sh", action="store_true", help="colours from the spherical harmonics (view dependent)")
    ap.add_argument("--image_size", type=int, default=256, help="frame size in pixels (square)")
    ap.add_argument("--num_views", type=int, default=32, help="turntable frames")
    ap.add_argument("--dist", type=float, default=6.0, help="camera distance")
    ap.add_argument("--up", type=float, nargs=3, default=(0.0, -1.0, 0.0), metavar=("X", "Y", "Z"),
                    help="world up vector of the cameras")
    ap.add_argument("--depth_range", type=float, nargs=2, default=(5.0, 7.0), metavar=("NEAR", "FAR"),
                    help="depth mapped to the ends of the jet colormap")
    ap.add_argument("--background", type=float, nargs=3, default=(1.0, 1.0, 1.0), metavar=("R", "G", "B"),
                    help="background colour")
    ap.add_argument("--rasterizer", choices=["tiled", "dense"], default="tiled", help="tiled (fast) or dense (the course's)")
    ap.add_argument("--tile_size", type=int, default=4, help="tiled rasteriser: tile edge in pixels")
    ap.add_argument("--pixel_offset", type=float, default=0.5,
                    help="pixels sampled at (i + offset, j + offset): 0.5 = centres, 0 = the course's integer coordinates")
    ap.add_argument("--view_rotation", choices=["correct", "course"], default="correct",
                    help="W = R^T (correct) or W = R (the course's) in the 2-D covariance")
    ap.add_argument("--fps", type=float, default=15, help="GIF frame rate")
    ap.add_argument("--num_threads", type=int, default=0, help="CPU threads for PyTorch (0 = its default)")
    args = ap.parse_args(argv)
    if args.quick:
        args.image_size, args.num_views = min(args.image_size, 96), min(args.num_views, 8)
    if args.num_views < 1 or args.image_size < 8:
        raise UserError("--num_views must be >= 1 and --image_size >= 8")
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    device = choose_device(args.device)
    g = load_gaussians(args.data_path, device, args.quick)
    if args.sh and g.sh is None:
        raise UserError("--sh needs spherical harmonics, and these Gaussians have none")
    cams = turntable_cameras(args.num_views, args.image_size, args.dist, args.up, device)
    settings = RasterSettings(args.image_size, background=tuple(args.background), mode=args.rasterizer,
                              gaussians_per_splat=args.gaussians_per_splat, tile_size=args.tile_size,
                              pixel_offset=args.pixel_offset, view_rotation=args.view_rotation)
    frames = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in progress(range(len(cams)), "render"):
            out = g.render(cams[i], settings, use_sh=args.sh)
            frames.append(frame_panels(out.image, out.depth, out.mask, args.depth_range).cpu())
    secs = time.perf_counter() - t0
    default = "q1_render_sh.gif" if args.sh else "q1_render.gif"
    gif, png = save_gif_with_png(output_path(args, default), torch.stack(frames), fps=args.fps)
    print(f"{g.num_gaussians} Gaussians, {len(cams)} views of {args.image_size}x{args.image_size} "
          f"({'SH' if args.sh else 'plain'} colours, {args.rasterizer}): {secs / len(cams):.3f} s per frame")
    report(args.output_dir, {"sh" if args.sh else "rgb": {
        "num_gaussians": g.num_gaussians, "num_views": len(cams), "image_size": args.image_size,
        "use_sh": bool(args.sh), "rasterizer": args.rasterizer, "render_time_per_frame_s": secs / len(cams),
        "mean_mask_coverage": float(torch.stack([f[:, 2 * args.image_size:, 0] for f in frames]).mean()),
    }}, [gif, png])
    return None


if __name__ == "__main__":
    run_cli(main)
