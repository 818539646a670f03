"""6 do something fun: a procedural cottage scene (house, roof, chimney, door, windows, trees,
path and lawn) built from primitive meshes, shown as a 360-degree turntable (``--function full``)
or a dolly zoom (``--function dolly``): the field of view widens while the camera comes in so the
house keeps its size on screen (its focus depth found as in 1.2) and the trees and lawn around it
spread out; the "fov" label sits in a strip above the picture.

Checks (metrics.json, prefixed ``full_`` / ``dolly_``): the turntable's checks (silhouettes
against projected surface samples, motion, frames and seconds per turn read back), and for the
dolly the house's on-screen size over the frames (constant within 5 %), the growth of the
garden path in front of it (the dolly effect), and the GIF's frames and seconds.

    python -m a1_rendering.fun --function full --output_file output/a1_rendering/fun/cottage_360.gif
"""

from __future__ import annotations

import math

import torch

from a1_rendering.common import TURNTABLE_QUICK, add_turntable_flags, need_frames, render_turntable, report_checks, \
    turntable_checks
from a1_rendering.dolly_zoom import auto_focus_z, dolly_frames
from a1_rendering.measure import gif_timing
from l3d.checks import check
from l3d.cli import output_path, run_cli, script_parser
from l3d.media import save_gif_with_png
from l3d.structures import Meshes, TexturesVertex, join_meshes_as_scene
from l3d.train import choose_device


def _mesh(verts, faces, color) -> Meshes:
    v = torch.as_tensor(verts, dtype=torch.float32)
    c = torch.tensor(color, dtype=torch.float32).expand_as(v)
    return Meshes([v], [torch.as_tensor(faces)], TexturesVertex([c]))


def box(lo, hi, color) -> Meshes:
    """Axis-aligned box from corner ``lo`` to ``hi`` (8 vertices, 12 outward triangles)."""
    lo, hi = torch.tensor(lo, dtype=torch.float32), torch.tensor(hi, dtype=torch.float32)
    bits = torch.tensor([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=torch.float32)
    v = lo + bits * (hi - lo)
    f = [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
         [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
    return _mesh(v, f, color)


def roof(x0, x1, z0, z1, y0, y1, color) -> Meshes:
    """A gable roof: a triangular prism along x, ridge at height y1 over z = (z0 + z1) / 2."""
    zm = (z0 + z1) / 2
    v = [[x0, y0, z0], [x0, y0, z1], [x0, y1, zm], [x1, y0, z0], [x1, y0, z1], [x1, y1, zm]]
    f = [[0, 2, 1], [3, 4, 5], [0, 3, 5], [0, 5, 2], [1, 2, 5], [1, 5, 4], [0, 1, 4], [0, 4, 3]]
    return _mesh(v, f, color)


def cone(cx, cz, y0, radius, height, color, n=24, top_radius=0.0) -> Meshes:
    """A (truncated) cone or cylinder around the vertical axis through (cx, cz), capped."""
    a = torch.linspace(0, 2 * math.pi, n + 1)[:-1]
    ring0 = torch.stack([cx + radius * a.cos(), torch.full_like(a, y0), cz + radius * a.sin()], -1)
    ring1 = torch.stack([cx + top_radius * a.cos(), torch.full_like(a, y0 + height), cz + top_radius * a.sin()], -1)
    centres = torch.tensor([[cx, y0, cz], [cx, y0 + height, cz]])
    v = torch.cat([ring0, ring1, centres])
    i = torch.arange(n)
    j = (i + 1) % n
    side = torch.cat([torch.stack([i, n + i, n + j], -1), torch.stack([i, n + j, j], -1)])
    caps = torch.cat([torch.stack([torch.full_like(i, 2 * n), i, j], -1),
                      torch.stack([torch.full_like(i, 2 * n + 1), n + j, n + i], -1)])
    return _mesh(v, torch.cat([side, caps]), color)


def cottage_parts():
    """[(name, mesh)] of the scene: the house (body, roof, chimney, door, windows) first."""
    wall, roof_red, wood, glass = (0.93, 0.87, 0.72), (0.72, 0.18, 0.15), (0.45, 0.28, 0.14), (0.55, 0.75, 0.95)
    parts = [
        ("house", box((-1.0, -0.7, -0.8), (1.0, 0.5, 0.8), wall)),  # body
        ("house", roof(-1.15, 1.15, -1.0, 1.0, 0.5, 1.3, roof_red)),
        ("house", box((0.45, 0.7, 0.1), (0.7, 1.5, 0.35), (0.5, 0.5, 0.52))),  # chimney
        ("house", box((-0.2, -0.7, -0.83), (0.2, 0.1, -0.8), wood)),  # door
        ("house", box((-0.8, -0.15, -0.83), (-0.45, 0.2, -0.8), glass)),  # windows
        ("house", box((0.45, -0.15, -0.83), (0.8, 0.2, -0.8), glass)),
        ("lawn", box((-3.0, -0.75, -3.0), (3.0, -0.7, 3.0), (0.35, 0.62, 0.3))),
        ("path", box((-0.25, -0.7, -3.0), (0.25, -0.68, -0.8), (0.72, 0.7, 0.66))),
    ]
    for x, z, sc in [(-2.0, -1.6, 1.0), (2.1, -1.2, 0.8), (-2.2, 1.5, 1.2), (1.8, 1.9, 0.9)]:
        parts.append(("tree", cone(x, z, -0.7, 0.1 * sc, 0.5 * sc, wood, n=12, top_radius=0.1 * sc)))  # trunk
        parts.append(("tree", cone(x, z, -0.7 + 0.4 * sc, 0.5 * sc, 1.3 * sc, (0.12, 0.45, 0.2), n=16)))  # crown
    return parts


def cottage_scene(device="cpu", with_masks: bool = False, meadow: bool = False):
    """The whole scene as one vertex-coloured mesh (y up, door facing -z, about 6 units wide);
    with ``with_masks`` also {part name: (F,) bool mask of its faces} ("house", "lawn", "path",
    "tree" and "meadow"). ``meadow`` lays the
    garden on a 100-unit field reaching the horizon (for the dolly zoom's narrow, distant views)."""
    parts = cottage_parts()
    if meadow:
        parts.append(("meadow", box((-50.0, -0.8, -50.0), (50.0, -0.76, 50.0), (0.45, 0.68, 0.36))))
    scene = join_meshes_as_scene([m for _, m in parts]).to(device)
    if not with_masks:
        return scene
    names = [name for name, m in parts for _ in range(int(m.num_faces_per_mesh()[0]))]
    return scene, {n: torch.tensor([x == n for x in names], device=device) for n in set(names)}


def main(argv=None):
    ap = script_parser(__doc__, "a1_rendering/fun", output_file="cottage_<function>.gif",
                       presets={"quick": TURNTABLE_QUICK})
    ap.add_argument("--function", choices=["full", "dolly"], default="full",
                    help="full: 360-degree turntable; dolly: dolly zoom towards the door")
    add_turntable_flags(ap, num_frames=60, frames_help="frames in the GIF (at least 2)")
    args = ap.parse_args(argv)
    need_frames(args, 2)
    scene, masks = cottage_scene(choose_device(args.device), with_masks=True, meadow=args.function == "dolly")
    house = masks["house"]
    sky = (0.75, 0.87, 1.0)
    gif_path = output_path(args, f"cottage_{args.function}.gif")
    if args.function == "full":
        frames, cams = render_turntable(scene, args.num_frames, 8.0, 25.0, image_size=args.image_size, background=sky,
                                        shader="flat")
        gif, png = save_gif_with_png(gif_path, frames[..., :3], fps=args.fps)
        checks = turntable_checks(scene, frames, cams, gif, seed=args.seed)
        extra = {}
    else:
        k, fov0, fov1 = 2.4, 10.0, 110.0
        focus = auto_focus_z(scene, house, k, fov0, fov1)
        d = dolly_frames(scene, args.num_frames, args.image_size, k=k, fov_start=fov0, fov_end=fov1, focus_z=focus,
                         light_location=(2.0, 6.0, -10.0), background=sky, shader="flat", subject=house)
        gif, png = save_gif_with_png(gif_path, d.frames, fps=args.fps)
        size, path, timing = d.subject_size, d.size_of(masks["path"]), gif_timing(gif)
        checks = {
            "subject_size_variation": check(float(size.max() / size.min() - 1), max=0.05,
                                            what="largest / smallest on-screen size of the house over the frames, "
                                                 "minus 1 (size: square root of its silhouette area)"),
            "path_growth": check(float((path[-1] / path[0].clamp(min=1)) ** 2), min=5.0,
                                 what="on-screen area of the garden path (coming towards the camera) in the widest frame "
                                      "/ the narrowest (the dolly effect)"),
            "frames": check(timing["frames"], min=24, what="distinct frames in the GIF (read back)"),
            "seconds": check(timing["seconds"], min=2.0, what="length of the GIF in seconds (read back)"),
        }
        extra = {"dolly_focus_z": focus, "dolly_house_size_px": size.tolist()}
    nv, nf = int(scene.num_verts_per_mesh()[0]), int(scene.num_faces_per_mesh()[0])
    prefix = f"{args.function}_"
    report_checks(args.output_dir, {"scene_vertices": nv, "scene_faces": nf, **extra}, [gif, png],
                  {prefix + k: v for k, v in checks.items()}, own=prefix)


if __name__ == "__main__":
    run_cli(main)
