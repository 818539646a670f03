"""5.1 point clouds from RGB-D images: unproject the masked pixels of two views of an object to
world space and render three 360-degree GIFs: the cloud of image 1, of image 2, and their union.

Uses the course's ``a1/rgbd_data.pkl`` (a CO3D plant) when present, else a stand-in: two RGB-D
views of the cow (or of the procedural cow-like mesh) rendered by l3d. The CO3D frame renders
upside down, so its turntable is rolled 180 degrees about the view axis (``--flip``).

Checks (metrics.json): every point projected back by its own camera lands on the pixel it came
from (error in pixels), the two clouds agree (points of each cloud seen by the other camera lie
on or behind the surface that camera saw, never in the free space in front of it), and the GIFs
read as motion with >= 2 s per turn.

    python -m a1_rendering.pcl_render --num_frames 36 --image_size 256
"""

from __future__ import annotations

import torch

from pathlib import Path

from a1_rendering.common import SYNTHETIC, TURNTABLE_QUICK, add_turntable_flags, report_checks
from a1_rendering.measure import gif_timing, motion_ratio
from a1_rendering.rgbd import COURSE_RGBD, load_rgbd_pair
from l3d.cameras import FoVPerspectiveCameras, look_at_view_transform, ndc_pixel_centers, rotation_about_axis, \
    unproject_depth_image
from l3d.checks import check, data_label
from l3d.cli import positive_float, run_cli, script_parser
from l3d.data import data_root
from l3d.media import save_gif_with_png
from l3d.shading import render_points
from l3d.structures import Pointclouds
from l3d.train import choose_device


def _grid(data: dict) -> str:
    return "linspace" if data["source"] == "course" else "centers"


def rgbd_clouds(data: dict):
    """{"cloud1", "cloud2", "union"} -> (points (P, 3), colours (P, 3))."""
    clouds = {}
    for i in (1, 2):
        clouds[f"cloud{i}"] = unproject_depth_image(data[f"rgb{i}"], data[f"mask{i}"], data[f"depth{i}"],
                                                    data[f"cameras{i}"], grid=_grid(data))
    clouds["union"] = tuple(torch.cat([clouds["cloud1"][k], clouds["cloud2"][k]]) for k in (0, 1))
    return clouds


def _pixel_ndc(data: dict, i: int) -> torch.Tensor:
    """(P, 2) NDC of the masked pixels of image i, in the order unproject_depth_image keeps them."""
    depth = data[f"depth{i}"]
    h, w = depth.shape
    if _grid(data) == "centers":
        xy = ndc_pixel_centers((h, w), device=depth.device, dtype=depth.dtype)
    else:
        xs = torch.linspace(1, -1, w, device=depth.device, dtype=depth.dtype)
        ys = torch.linspace(1, -1, h, device=depth.device, dtype=depth.dtype)
        xy = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)
    return xy[data[f"mask{i}"] > 0.5]


def reprojection_error_px(data: dict, clouds: dict) -> float:
    """Largest distance in pixels between a point projected by its own camera and its pixel."""
    worst = 0.0
    for i in (1, 2):
        pts = clouds[f"cloud{i}"][0]
        ndc = data[f"cameras{i}"].transform_points_ndc(pts)[0, :, :2]
        s = min(data[f"depth{i}"].shape) / 2.0
        worst = max(worst, float((ndc - _pixel_ndc(data, i)).norm(dim=-1).max()) * s)
    return worst


def free_space_violations(data: dict, clouds: dict, rel_tol: float = 0.02) -> float:
    """Fraction of the points of each cloud that camera j (the other one) sees in free space.

    A point projected into image j at depth z is consistent when some pixel within one pixel of
    its projection saw the surface at depth <= z (1 + rel_tol) (the point is on or behind what
    camera j saw); it is a violation when every such pixel saw background or a surface behind it.
    Points outside image j are not counted.
    """
    bad, total = 0, 0
    for i, j in ((1, 2), (2, 1)):
        pts = clouds[f"cloud{i}"][0]
        cam, depth, mask = data[f"cameras{j}"], data[f"depth{j}"], data[f"mask{j}"] > 0.5
        h, w = depth.shape
        scr = cam.transform_points_screen(pts, (h, w))[0]
        if _grid(data) == "linspace":  # the pickle's pixels sit on linspace(1, -1, S), not at centres
            ndc = cam.transform_points_ndc(pts)[0]
            scr = torch.stack([(1 - ndc[:, 0]) / 2 * (w - 1) + 0.5, (1 - ndc[:, 1]) / 2 * (h - 1) + 0.5, ndc[:, 2]], -1)
        col, row = scr[:, 0].floor().long(), scr[:, 1].floor().long()
        inside = (col >= 0) & (col < w) & (row >= 0) & (row < h) & (scr[:, 2] > 0)
        near = torch.where(mask, depth, torch.full_like(depth, float("inf")))
        near = -torch.nn.functional.max_pool2d(-near[None, None], 3, stride=1, padding=1)[0, 0]  # min over 3x3
        z = scr[inside, 2]
        seen = near[row[inside], col[inside]]
        bad += int((seen > z * (1 + rel_tol)).sum())
        total += int(inside.sum())
    return bad / max(total, 1)


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
    ap = script_parser(__doc__, "a1_rendering/pcl_render", presets={"quick": TURNTABLE_QUICK})
    ap.add_flag("data_path", default=None,
                help=f"RGB-D pickle like the course's rgbd_data.pkl, or '{SYNTHETIC}' for the rendered stand-in "
                     f"(default: $L3D_DATA/{COURSE_RGBD}, or the stand-in when that is absent)")
    add_turntable_flags(ap, frames_help="frames per GIF")
    ap.add_argument("--dist", type=positive_float, default=None,
                    help="camera distance (default 6 for the course data, 3 synthetic)")
    ap.add_argument("--flip", choices=["auto", "yes", "no"], default="auto",
                    help="roll the view 180 degrees (auto: only for the course's CO3D data)")
    args = ap.parse_args(argv)
    data = load_rgbd_pair(args.data_path, choose_device(args.device))
    course = data["source"] == "course"
    if course:
        path = Path(args.data_path or data_root() / COURSE_RGBD).resolve()
        try:
            label = data_label(course_file=path.relative_to(data_root().resolve()).as_posix())
        except ValueError:
            label = f"file: {args.data_path}"
    else:
        why = f"--data_path {SYNTHETIC}" if args.data_path == SYNTHETIC else \
            f"the course's {COURSE_RGBD} (a CO3D plant) is not in the data root"
        label = data_label(standin=f"{data.get('description', 'two RGB-D views rendered by l3d')}; {why}")
    flip = args.flip == "yes" or (args.flip == "auto" and course)
    dist = args.dist if args.dist is not None else (6.0 if course else 3.0)
    clouds = rgbd_clouds(data)
    center = clouds["union"][0].mean(0)
    written, counts, motion, timing = [], {}, [], []
    for name, (pts, rgb) in clouds.items():
        frames = turntable(pts, rgb, args.num_frames, args.image_size, dist, flip, center=center)
        gif, png = save_gif_with_png(f"{args.output_dir}/{name}.gif", frames, fps=args.fps)
        written += [gif, png]
        counts[f"num_points_{name}"] = int(len(pts))
        motion.append(motion_ratio(frames))
        timing.append(gif_timing(gif))
    checks = {
        "reprojection_error_px": check(reprojection_error_px(data, clouds), max=0.01,
                                       what="largest distance (pixels) between a point projected by its own camera "
                                            "and the pixel it was unprojected from"),
        "free_space_violations": check(free_space_violations(data, clouds), max=0.02,
                                       what="fraction of each cloud's points that the other camera sees in free space "
                                            "(in front of the surface it saw, beyond 1 px and 2 % depth tolerance)"),
        "motion_ratio": check(min(motion), min=1.1, what="lowest over the three GIFs of mean change over two frames "
                                                          "/ over one frame (turning, not strobing)"),
        "turn_seconds": check(min(t["seconds"] for t in timing), min=2.0,
                              what="shortest turn of the three GIFs in seconds (read back)"),
        "frames_per_turn": check(min(t["frames"] for t in timing), min=24,
                                 what="fewest distinct frames of the three GIFs (read back)"),
    }
    report_checks(args.output_dir, {"data": label, "source": data["source"], **counts}, written, checks)


if __name__ == "__main__":
    run_cli(main)
