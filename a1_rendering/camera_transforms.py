"""4 camera transformations: R = R_rel @ R0, T = R_rel @ T0 + T_rel with R0 = I, T0 = (0, 0, 3),
rendered with cow_with_axis.obj (red X, green Y, blue Z arrows). One image per transform:

    none  R_rel = I,          T_rel = 0
    1     R_rel = Rz(-90),    T_rel = 0            (the camera rolls: the red X axis points up)
    2     R_rel = I,          T_rel = (0, 0, 2)    (the camera moves back)
    3     R_rel = I,          T_rel = (0.5, -0.5, 0)
    4     R_rel = Ry(90),     T_rel = (-3, 0, 3)   (the camera looks at the cow's side)

    python -m a1_rendering.camera_transforms --image_size 256
"""

from __future__ import annotations

import torch

from a1_rendering.common import add_mesh_flags, load_mesh
from l3d.cameras import FoVPerspectiveCameras, rotation_about_axis
from l3d.cli import report, script_parser
from l3d.io import save_image
from l3d.shading import PointLights, render_mesh
from l3d.train import choose_device, run_cli

# name -> (axis, angle in degrees, T_rel)
TRANSFORMS = {
    "none": ("z", 0.0, (0.0, 0.0, 0.0)),
    "1": ("z", -90.0, (0.0, 0.0, 0.0)),
    "2": ("z", 0.0, (0.0, 0.0, 2.0)),
    "3": ("z", 0.0, (0.5, -0.5, 0.0)),
    "4": ("y", 90.0, (-3.0, 0.0, 3.0)),
}


def transformed_camera(axis: str, angle: float, t_rel, device="cpu") -> FoVPerspectiveCameras:
    """The camera R = R_rel @ R0, T = R_rel @ T0 + T_rel with R0 = I, T0 = (0, 0, 3)."""
    R_rel = rotation_about_axis(angle, axis, device=device)[0]
    R0, T0 = torch.eye(3, device=device), torch.tensor([0.0, 0.0, 3.0], device=device)
    R = R_rel @ R0
    T = R_rel @ T0 + torch.tensor(t_rel, device=device)
    return FoVPerspectiveCameras(R=R[None], T=T[None])


def render_transforms(mesh, image_size: int) -> dict:
    """name -> (H, W, 3) render for every entry of :data:`TRANSFORMS`."""
    out = {}
    lights = PointLights(location=((0.0, 0.0, -3.0),))
    with torch.no_grad():
        for name, (axis, angle, t_rel) in TRANSFORMS.items():
            cam = transformed_camera(axis, angle, t_rel, mesh.device)
            out[name] = render_mesh(mesh, cam, image_size, lights=lights)[0, ..., :3].clamp(0, 1)
    return out


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/camera_transforms")
    add_mesh_flags(ap, "a1/cow_with_axis.obj", name="mesh_path")
    ap.add_argument("--image_size", type=int, default=256, help="image size in pixels")
    args = ap.parse_args(argv)
    if args.quick:
        args.image_size = min(args.image_size, 128)
    mesh = load_mesh(args, choose_device(args.device))
    written = []
    for name, img in render_transforms(mesh, args.image_size).items():
        written.append(save_image(f"{args.output_dir}/transform_{name}.png", img))
    report(args.output_dir, {"transforms": {k: {"axis": a, "angle_deg": g, "T_rel": list(t)}
                                            for k, (a, g, t) in TRANSFORMS.items()}}, written)


if __name__ == "__main__":
    run_cli(main)
