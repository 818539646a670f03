"""4 camera transformations: R = R_rel @ R0, T = R_rel @ T0 + T_rel with R0 = I, T0 = (0, 0, 3),
rendered with cow_with_axis.obj (red X, green Y, blue Z arrows). One image per transform, named
like the course's reference image it reproduces (reference/transform<name>.jpg), and all five
side by side in transforms.png:

    file                 R_rel       T_rel            what the camera does        spec item
    transform_none.png   I           0                looks at the cow's front    -
    transform1.png       Rz(-90)     0                rolls: the red X axis up    (1)
    transform2.png       Ry(90)      (-3, 0, 3)       looks at the cow's side     (4)
    transform3.png       I           (0, 0, 2)        moves back                  (2)
    transform4.png       I           (0.5, -0.5, 0)   shifts (the cow moves left and down)  (3)

(The spec lists the four transforms in a different order from the course's file numbers; the
last column is the spec's number.)

Checks (metrics.json): each camera's centre, viewing direction and up vector against the ones
the transform implies (worked out by hand below), the roll of transform 1 (its silhouette is the
untransformed one turned 90 degrees clockwise), every silhouette against projected surface
samples, and with the course's cow_with_axis.obj every image against its reference.

    python -m a1_rendering.camera_transforms --image_size 256
"""

from __future__ import annotations

import numpy as np
import torch

from a1_rendering.common import add_banner, add_mesh_flags, course_file, load_mesh_labelled, own_colors, report_checks
from a1_rendering.measure import iou, sample_silhouette, silhouette_match
from l3d.cameras import FoVPerspectiveCameras, rotation_about_axis
from l3d.checks import check
from l3d.cli import run_cli, script_parser
from l3d.media import load_image, save_image
from l3d.shading import PointLights, render_mesh
from l3d.train import choose_device

# name -> (axis, angle in degrees, T_rel, spec item)
TRANSFORMS = {
    "_none": ("z", 0.0, (0.0, 0.0, 0.0), None),
    "1": ("z", -90.0, (0.0, 0.0, 0.0), 1),
    "2": ("y", 90.0, (-3.0, 0.0, 3.0), 4),
    "3": ("z", 0.0, (0.0, 0.0, 2.0), 2),
    "4": ("z", 0.0, (0.5, -0.5, 0.0), 3),
}

# name -> (camera centre, viewing direction, image-up direction) in world coordinates, by hand:
# C = -T R^T; the view axes are the columns of R (x left, y up, z forward). Rz(-90) maps the
# view's up to world +x; Ry(90) turns the view axis to world +x and T = Ry(90) (0, 0, 3) +
# (-3, 0, 3) = (0, 0, 3) puts the camera at -T R^T = (-3, 0, 0); the T_rel-only transforms keep
# R = I and move the centre to -(T0 + T_rel).
EXPECTED_POSES = {
    "_none": ((0.0, 0.0, -3.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
    "1": ((0.0, 0.0, -3.0), (0.0, 0.0, 1.0), (1.0, 0.0, 0.0)),
    "2": ((-3.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "3": ((0.0, 0.0, -5.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
    "4": ((-0.5, 0.5, -3.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
}


def image_name(name: str) -> str:
    return f"transform{name}"


def transformed_camera(axis: str, angle: float, t_rel, device="cpu") -> FoVPerspectiveCameras:
    """The camera R = R_rel @ R0, T = R_rel @ T0 + T_rel with R0 = I, T0 = (0, 0, 3)."""
    R_rel = rotation_about_axis(angle, axis, device=device)[0]
    R0, T0 = torch.eye(3, device=device), torch.tensor([0.0, 0.0, 3.0], device=device)
    R = R_rel @ R0
    T = R_rel @ T0 + torch.tensor(t_rel, device=device)
    return FoVPerspectiveCameras(R=R[None], T=T[None])


def cameras(device="cpu") -> dict:
    return {name: transformed_camera(a, g, t, device) for name, (a, g, t, _) in TRANSFORMS.items()}


def render_transforms(mesh, image_size: int, rgba: bool = False) -> dict:
    """name -> (H, W, 3) render (RGBA with ``rgba``) for every entry of :data:`TRANSFORMS`."""
    out = {}
    lights = PointLights(location=((0.0, 0.0, -3.0),))
    with torch.no_grad():
        for name, cam in cameras(mesh.device).items():
            img = render_mesh(mesh, cam, image_size, lights=lights)[0].clamp(0, 1)
            out[name] = img if rgba else img[..., :3]
    return out


def pose_error(cams: dict) -> float:
    """Largest distance over the transforms between the camera's centre, viewing direction and
    up vector and the expected ones (sum of the three distances)."""
    worst = 0.0
    for name, cam in cams.items():
        c, fwd, up = (torch.tensor(x) for x in EXPECTED_POSES[name])
        R = cam.R[0].cpu()
        err = (cam.get_camera_center()[0].cpu() - c).norm() + (R[:, 2] - fwd).norm() + (R[:, 1] - up).norm()
        worst = max(worst, float(err))
    return worst


def reference_errors(imgs: dict, size: int = 256) -> dict:
    """name -> mean absolute error per pixel vs the course's reference/transform<name>.jpg
    (8-pixel border left out: the references carry a black frame)."""
    out = {}
    for name, img in imgs.items():
        ref = course_file(f"a1/reference/{image_name(name)}.jpg")
        if ref is not None:
            r = load_image(ref)[..., :3].numpy().astype(np.float64)
            out[name] = float(np.abs(img.cpu().numpy()[8:-8, 8:-8] - r[8:-8, 8:-8]).mean())
    return out


def contact_sheet(imgs: dict) -> torch.Tensor:
    """(h + H, 5 W + gaps, 3): the five images side by side, each named in a strip above it."""
    tiles = []
    for name, img in imgs.items():
        tile = add_banner(img[None, ..., :3].cpu(), [image_name(name)], color=(0, 0, 0))[0]
        tiles += [tile, torch.full((tile.shape[0], 3, 3), 0.6)]
    return torch.cat(tiles[:-1], 1)


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/camera_transforms", presets={"quick": {"image_size": 128}})
    add_mesh_flags(ap, "a1/cow_with_axis.obj")
    ap.add_flag("image_size", default=256, help="image size in pixels")
    args = ap.parse_args(argv)
    device = choose_device(args.device)
    mesh, data, course = load_mesh_labelled(args, device)
    mesh = own_colors(mesh, args)
    imgs = render_transforms(mesh, args.image_size, rgba=True)
    written = [save_image(f"{args.output_dir}/{image_name(name)}.png", img[..., :3]) for name, img in imgs.items()]
    written.append(save_image(f"{args.output_dir}/transforms.png", contact_sheet(imgs)))

    cams = cameras(device)
    masks = {k: v[..., 3] > 0.5 for k, v in imgs.items()}
    matches = [float(silhouette_match(masks[k], sample_silhouette(mesh, cams[k], args.image_size, seed=args.seed)[0]))
               for k in imgs]
    # a roll of the camera by -90 degrees about its axis turns the picture 90 degrees clockwise
    roll = float(iou(torch.rot90(masks["_none"], -1, (0, 1)), masks["1"]))
    checks = {
        "pose_error": check(pose_error(cams), max=1e-4, what="largest error over the five cameras of centre + viewing "
                            "direction + up vector vs those the transforms imply (world units)"),
        "roll_iou": check(roll, min=0.97, what="IoU of transform1's silhouette and the untransformed one turned 90 "
                          "degrees clockwise"),
        "silhouette_match": check(min(matches), min=0.95, what="lowest share over the five images of outline pixels "
                                  "within 1 pixel of the other outline: rendered silhouette vs surface samples projected by "
                                  "the same camera"),
    }
    if course:
        imgs256 = imgs if args.image_size == 256 else render_transforms(mesh, 256)
        errs = reference_errors({k: v[..., :3] for k, v in imgs256.items()})
        if len(errs) == len(TRANSFORMS):
            checks["reference_mae"] = check(max(errs.values()), max=0.006,
                                            what="largest mean absolute error per pixel of the five 256 x 256 images "
                                                 "vs reference/transform{_none,1,2,3,4}.jpg")
    transforms = {image_name(k) + ".png": {"axis": a, "angle_deg": g, "T_rel": list(t), "spec_item": s}
                  for k, (a, g, t, s) in TRANSFORMS.items()}
    report_checks(args.output_dir, {"transforms": transforms, "data": data}, written, checks)


if __name__ == "__main__":
    run_cli(main)
