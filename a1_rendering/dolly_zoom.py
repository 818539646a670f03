"""1.2 dolly zoom: the field of view widens from 5 to 120 degrees while the camera moves in,
``distance = k / tan(fov / 2)`` from the subject, so the subject keeps its on-screen size while
the floor behind and below it stretches. Each frame carries its "fov: xx.xx" label in red in a
strip above the picture (never over the scene).

The distance is measured to the subject's focus depth ``--focus_z`` (world z of the plane that
keeps its size exactly). ``auto`` searches the depth at which the cow's silhouette keeps its area
best over the zoom (the cow is deep: with the distance measured to the origin its head, 0.7 in
front of it, grows the silhouette by 15 % at 120 degrees); ``--focus_z 0`` is the course's setting
and reproduces its reference GIF.

Checks (metrics.json): the subject's on-screen size (square root of its silhouette area) over
the frames, the floor's growth, the GIF's frames and seconds read back from the file, and with
the course's cow_on_plane.obj the course's setting against reference/dolly.gif.

    python -m a1_rendering.dolly_zoom --num_frames 100 --duration 30 --output_file output/a1_rendering/dolly.gif
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from a1_rendering.common import add_banner, add_mesh_flags, course_file, load_mesh_labelled, need_frames, \
    own_colors, report_checks, small_faces
from a1_rendering.measure import gif_timing, subject_size
from l3d.cameras import FoVPerspectiveCameras
from l3d.checks import check
from l3d.cli import finite_float, output_path, positive_float, run_cli, script_parser
from l3d.errors import user_error
from l3d.media import save_gif_with_png
from l3d.raster import rasterize_meshes
from l3d.shading import PointLights, shade_fragments
from l3d.structures import Meshes
from l3d.train import choose_device

REFERENCE = "a1/reference/dolly.gif"


@dataclass
class Dolly:
    """Frames of a dolly zoom and what was measured on them.

    frames: (T, h + H, W, 3) labelled frames (label strip on top); fovs, dists: (T,) degrees and
    camera distances to the focus plane; pix_to_face: (T, H, W) the face seen at every pixel of
    the picture (-1: background); subject_size: (T,) square root of the subject's pixel area
    (None without a subject mask).
    """

    frames: torch.Tensor
    fovs: torch.Tensor
    dists: torch.Tensor
    focus_z: float
    pix_to_face: torch.Tensor
    subject_size: Optional[torch.Tensor] = None

    def size_of(self, faces: torch.Tensor) -> torch.Tensor:
        """(T,) square root of the pixel area showing the faces marked in ``faces`` (F,) bool."""
        return subject_size(self.pix_to_face.long(), faces)


def dolly_cameras(fovs: torch.Tensor, k: float, focus_z: float = 0.0, height: float = 0.0) -> FoVPerspectiveCameras:
    """Cameras at ``(0, height, focus_z - d)`` looking along +z with ``d = k / tan(fov / 2)``:
    the plane z = focus_z shows ``2 k`` units across at every fov."""
    dists = k / torch.tan(torch.deg2rad(fovs) / 2)
    n = len(fovs)
    R = torch.eye(3, dtype=fovs.dtype, device=fovs.device).expand(n, 3, 3)
    T = torch.stack([torch.zeros_like(dists), torch.full_like(dists, -height), dists - focus_z], -1)
    # the floor reaches under the camera at wide angles: a near plane of 0.1 (clipping at 0.05)
    # keeps it in view down to the bottom edge, as in the course's reference GIF
    return FoVPerspectiveCameras(znear=0.1, fov=fovs, R=R, T=T)


def _subject_sizes(mesh: Meshes, subject: torch.Tensor, fovs: torch.Tensor, k: float, focus_z: float, height: float,
                   image_size: int) -> torch.Tensor:
    with torch.no_grad():
        frags = rasterize_meshes(mesh, dolly_cameras(fovs, k, focus_z, height), image_size)
    return subject_size(frags.pix_to_face, subject)


def auto_focus_z(mesh: Meshes, subject: torch.Tensor, k: float, fov_start: float, fov_end: float,
                 height: float = 0.0, image_size: int = 96, probes: int = 6, iters: int = 14) -> float:
    """The focus depth that keeps the subject's on-screen size most constant: golden-section
    search over the subject's depth range for the smallest largest/smallest ratio of its
    silhouette size at ``probes`` fovs from ``fov_start`` to ``fov_end``. (Too far forward and
    the subject shrinks as the camera comes in, too far back and its front grows.)"""
    v = mesh.verts_packed()
    z = v[mesh.faces_packed()[subject].flatten(), 2]
    lo, hi = float(z.min()), float(z.max())
    fovs = torch.linspace(fov_start, fov_end, probes, dtype=v.dtype, device=v.device)

    def spread(z0):
        s = _subject_sizes(mesh, subject, fovs, k, z0, height, image_size)
        return float(s.max() / s.min().clamp(min=1))

    g = (5 ** 0.5 - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = spread(a), spread(b)
    for _ in range(iters):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = spread(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = spread(b)
    return 0.5 * (lo + hi)


def dolly_frames(mesh: Meshes, num_frames: int, image_size: int, k: float = 2.5, fov_start: float = 5.0,
                 fov_end: float = 120.0, height: float = 0.0, batch_size: int = 8,
                 light_location=(0.0, 0.0, -3.0), background=(1.0, 1.0, 1.0), shader: str = "phong",
                 frame_indices: Optional[Sequence[int]] = None, focus_z: float = 0.0,
                 subject: Optional[torch.Tensor] = None, label: bool = True, label_color=(255, 0, 0)) -> Dolly:
    """Render a dolly zoom: ``fov = linspace(fov_start, fov_end, num_frames)``, camera distance
    ``k / tan(fov / 2)`` from the plane z = ``focus_z``.

    ``frame_indices`` renders only those frames; ``subject`` (F,) bool marks the faces whose
    on-screen size is measured; ``label`` adds the "fov: xx.xx" strip above each frame.
    """
    device, dtype = mesh.device, mesh.verts_packed().dtype
    fovs = torch.linspace(fov_start, fov_end, num_frames, dtype=dtype, device=device)
    if frame_indices is not None:
        fovs = fovs[list(frame_indices)]
    cams = dolly_cameras(fovs, k, focus_z, height)
    dists = k / torch.tan(torch.deg2rad(fovs) / 2)
    lights = PointLights(location=(tuple(light_location),))
    imgs, p2f = [], []
    with torch.no_grad():
        for s in range(0, len(fovs), batch_size):
            c = cams[s:s + batch_size]
            frags = rasterize_meshes(mesh, c, image_size)
            imgs.append(shade_fragments(mesh, frags, c, lights, background=background, shader=shader)[..., :3])
            p2f.append(frags.pix_to_face.to(torch.int32))
    imgs, p2f = torch.cat(imgs).clamp(0, 1), torch.cat(p2f)
    frames = add_banner(imgs, [f"fov: {f:.2f}" for f in fovs.tolist()], color=label_color,
                        background=background) if label else imgs
    out = Dolly(frames, fovs, dists, focus_z, p2f)
    if subject is not None:
        out.subject_size = out.size_of(subject)
    return out


def reference_error(mesh: Meshes, ref_path, frames=(0, 50, 99)) -> float:
    """Mean absolute error per pixel (channel mean) of the course's setting (100 frames, 256 px,
    k = 2.5, distance to z = 0) against the course's GIF, below its label (rows >= 40)."""
    from PIL import Image

    ours = dolly_frames(mesh, 100, 256, frame_indices=list(frames), label=False).frames.numpy()
    errs = []
    with Image.open(ref_path) as gif:
        for o, i in zip(ours, frames):
            gif.seek(i)
            ref = np.asarray(gif.convert("RGB"), dtype=np.float64) / 255.0
            errs.append(np.abs(o[40:] - ref[40:]).mean())
    return float(np.mean(errs))


def focus_depth(text: str):
    """The value type of ``--focus_z``: ``auto`` or a finite number."""
    return "auto" if text == "auto" else finite_float(text)


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/dolly_zoom", output_file="dolly.gif",
                       presets={"quick": {"num_frames": 24, "image_size": 128, "duration": 100.0}})
    add_mesh_flags(ap, "a1/cow_on_plane.obj")
    ap.add_flag("num_frames", default=100, help="frames (fov = linspace(5, 120, num_frames)); at least 2")
    ap.add_argument("--duration", type=positive_float, default=30, help="frame duration in milliseconds")
    ap.add_flag("image_size", default=256, help="frame size in pixels (plus the label strip)")
    ap.add_argument("--focus_half_width", type=positive_float, default=2.5,
                    help="half-width k of the view at the focus plane: distance = k / tan(fov/2) (2.5 is the "
                         "course's framing)")
    ap.add_argument("--focus_z", type=focus_depth, default="auto",
                    help="world z of the plane that keeps its size: a number, or auto (the subject's silhouette "
                         "keeps its area; 0 reproduces the course's reference GIF)")
    args = ap.parse_args(argv)
    need_frames(args, 2)
    mesh, data, course = load_mesh_labelled(args, choose_device(args.device))
    subject = small_faces(mesh)  # the cow: everything but the floor slab
    if not bool(subject.any()):
        raise user_error(args.data_path or "--data_path", "a subject to keep in focus (faces smaller than a quarter "
                         "of the scene's size)", f"only {len(subject)} large faces")
    mesh = own_colors(mesh, args)
    k = args.focus_half_width
    t = time.perf_counter()
    focus = auto_focus_z(mesh, subject, k, 5.0, 120.0) if args.focus_z == "auto" else args.focus_z
    d = dolly_frames(mesh, args.num_frames, args.image_size, k, focus_z=focus, subject=subject)
    elapsed = time.perf_counter() - t
    gif, png = save_gif_with_png(output_path(args, "dolly.gif"), d.frames, duration_ms=args.duration)
    size, floor = d.subject_size, d.size_of(~subject)
    timing = gif_timing(gif)
    checks = {
        "subject_size_variation": check(float(size.max() / size.min() - 1), max=0.05,
                                        what="largest / smallest on-screen size of the cow over the frames, minus 1 "
                                             "(size: square root of its silhouette area)"),
        "floor_growth": check(float((floor[-1] / floor[0]) ** 2), min=3.0,
                              what="floor area on screen in the widest frame / in the narrowest (the dolly effect)"),
        "frames": check(timing["frames"], min=24, what="distinct frames in the GIF (read back)"),
        "seconds": check(timing["seconds"], min=2.0, what="length of the GIF in seconds (read back)"),
    }
    ref = course_file(REFERENCE)
    if course and ref is not None:
        checks["reference_mae"] = check(reference_error(mesh, ref), max=0.006,
                                        what=f"mean absolute error per pixel of frames 0, 50, 99 at the course's "
                                             f"setting (distance to z = 0) vs {REFERENCE}")
    metrics = {"num_frames": args.num_frames, "focus_z": focus, "fov_range": [float(d.fovs[0]), float(d.fovs[-1])],
               "distance_range": [float(d.dists[0]), float(d.dists[-1])], "subject_size_px": size.tolist(),
               "render_time_per_frame_s": elapsed / args.num_frames, "data": data}
    report_checks(args.output_dir, metrics, [gif, png], checks)


if __name__ == "__main__":
    run_cli(main)
