"""Flags, loaders, stand-in scenes, frame labels and check bookkeeping shared by the Assignment 1 scripts."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

import torch

from l3d.checks import data_label
from l3d.cli import VOCABULARY, ScriptParser, finite_float, report
from l3d.data import data_root, load_mesh_or_standin
from l3d.errors import user_error
from l3d.io import load_obj
from l3d.media import label_image
from l3d.run import read_metrics
from l3d.structures import Meshes, TexturesUV, TexturesVertex, join_meshes_as_scene

MESH_COLOR = (0.7, 0.7, 1.0)  # the course's default mesh colour

# Turntables: at least 36 frames and 2 s per turn by default; the quick preset keeps 24 frames at
# 10 fps (a turn still lasts >= 2 s) and small frames. Flags the user gives win over a preset.
TURNTABLE_QUICK = {"num_frames": 24, "fps": 10.0, "image_size": 128}

COURSE_MESH_FLAGS = ("--cow_path",)  # the course's starter code names its mesh flag so

SYNTHETIC = "synthetic"  # the --data_path value that forces the built-in stand-in

# what the built-in stand-ins are, for metrics.json and messages
STANDIN_COW = "procedural cow-like mesh (a textured egg with four legs built by l3d)"
STANDINS = {
    "a1/cow.obj": STANDIN_COW,
    "a1/cow_on_plane.obj": "procedural cow-like mesh (a textured egg with four legs built by l3d) on a checkerboard floor",
    "a1/cow_with_axis.obj": "procedural cow-like mesh (an egg with four legs built by l3d, flat colour) with red X, "
                            "green Y and blue Z axis arrows",
}


def standin_label(rel: str, reason: str = "") -> str:
    """``"stand-in: <what it is> (<reason>)"`` for the stand-in of the course file ``rel``."""
    reason = reason or f"the course's {rel} is not in the data root"
    return data_label(standin=f"{STANDINS.get(rel, STANDIN_COW)}; {reason}")


def add_mesh_flags(ap: ScriptParser, default_rel: str = "a1/cow.obj") -> None:
    """``--data_path`` (alias ``--cow_path``, the course's flag): the OBJ to render, or
    ``synthetic`` for the built-in stand-in; default: ``$L3D_DATA/<default_rel>``, or the stand-in
    when that is absent."""
    spec = VOCABULARY["data_path"]
    ap.add_argument(spec.name, *spec.aliases, *COURSE_MESH_FLAGS, dest="data_path", default=None,
                    help=f"OBJ file to render, or '{SYNTHETIC}' for the built-in stand-in (default: "
                         f"$L3D_DATA/{default_rel}, or the stand-in when that is absent)")
    ap.set_defaults(_mesh_rel=default_rel)


def add_turntable_flags(ap: ScriptParser, num_frames: int = 36, fps: float = 15.0, image_size: int = 256,
                        frames_help: str = "frames in the turntable") -> None:
    """``--num_frames``, ``--fps`` and ``--image_size`` of a GIF, with the shared value types."""
    ap.add_flag("num_frames", default=num_frames, help=frames_help)
    ap.add_flag("fps", default=fps, help="GIF frame rate (frame duration 1000/fps ms)")
    ap.add_flag("image_size", default=image_size, help="frame size in pixels")


# ----------------------------------------------------------------------------------------------
# value types for the flags of this package (argparse names the flag when a value is rejected)
# ----------------------------------------------------------------------------------------------
def unit_float(text: str) -> float:
    """A number in [0, 1] (a colour channel)."""
    v = finite_float(text)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], found {text}")
    return v


def int_at_least(lo: int):
    """A value type: an integer >= ``lo``."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, found {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, found {text}")
        return v

    parse.__name__ = f"int_at_least_{lo}"
    return parse


def need_frames(args: argparse.Namespace, at_least: int) -> None:
    """``--num_frames`` below what the script needs (a zoom needs two ends): one-line error."""
    if args.num_frames < at_least:
        raise user_error("--num_frames", f"at least {at_least}", args.num_frames)


def course_file(rel: str) -> Optional[Path]:
    """``<data root>/<rel>`` if it exists."""
    p = data_root() / rel
    return p if p.is_file() else None


def _standin(rel: str, device) -> Meshes:
    cow = load_mesh_or_standin(rel, device=device, force_synthetic=True)
    if rel == "a1/cow_on_plane.obj":
        return standin_on_floor(cow)
    if rel == "a1/cow_with_axis.obj":
        return standin_with_axes(cow)
    return cow


def load_mesh_labelled(args: argparse.Namespace, device) -> Tuple[Meshes, str, bool]:
    """The mesh named by ``--data_path`` (see :func:`add_mesh_flags`), its ``"data"`` label for
    metrics.json, and whether it is the course's own file from the data root."""
    rel = args._mesh_rel
    path = args.data_path
    if path == SYNTHETIC:
        return _standin(rel, device), standin_label(rel, f"--data_path {SYNTHETIC}"), False
    if path is not None:
        p = Path(path).resolve()
        root = data_root().resolve()
        try:
            label = data_label(course_file=p.relative_to(root).as_posix())
        except ValueError:
            label = f"file: {path}"
        return _with_area(load_obj(path, device=device), path), label, label == data_label(course_file=rel)
    if course_file(rel) is None:
        print(f"{data_root() / rel} not found; using the built-in stand-in: {STANDINS.get(rel, STANDIN_COW)} "
              f"(run `python -m l3d.data download a1` for the real one)", file=sys.stderr)
        return _standin(rel, device), standin_label(rel), False
    return load_obj(course_file(rel), device=device), data_label(course_file=rel), True


def _with_area(mesh: Meshes, path) -> Meshes:
    """``mesh``, unless all its faces have zero area (nothing to render or sample)."""
    if not bool((mesh.faces_areas_packed() > 0).any()):
        raise user_error(path, "a mesh with a non-zero surface area",
                         f"{int(mesh.num_faces_per_mesh().sum())} faces, all of zero area")
    return mesh


def own_colors(mesh: Meshes, args: argparse.Namespace) -> Meshes:
    """The mesh as it is to be rendered in its own colours: an OBJ without a texture (no
    ``map_Kd`` image) gets the course's flat mesh colour, with a note on stderr."""
    if mesh.textures is not None:
        return mesh
    from l3d.viz import with_vertex_colors

    print(f"{args.data_path}: no texture (map_Kd image) in the OBJ; rendering it in the flat colour "
          f"{MESH_COLOR}", file=sys.stderr)
    return with_vertex_colors(mesh, MESH_COLOR)


def load_mesh(args: argparse.Namespace, device) -> Meshes:
    """The mesh named by the flags of :func:`add_mesh_flags` on ``device``."""
    return load_mesh_labelled(args, device)[0]


# ----------------------------------------------------------------------------------------------
# stand-in scenes
# ----------------------------------------------------------------------------------------------
def checker_image(size: int = 512, squares: int = 8, dark=(0.55, 0.06, 0.07), light=(0.62, 0.62, 0.62)) -> torch.Tensor:
    """(size, size, 3) checkerboard of dark red and grey squares (the course floor's colours)."""
    i = torch.arange(size) * squares // size
    parity = ((i[:, None] + i[None, :]) % 2).float()[..., None]
    return parity * torch.tensor(dark) + (1 - parity) * torch.tensor(light)


def standin_on_floor(cow: Meshes, half: float = 1.5, squares: int = 8) -> Meshes:
    """The UV-textured stand-in cow standing on a ``2 half`` wide checkerboard floor (one quad at
    the height of its feet), in one UV-textured mesh like the course's cow_on_plane.obj.

    The floor's texture is put beside the cow's in one map; the cow's UVs are squeezed into the
    left half, the floor's into the right half (texel centres, so no bleeding across)."""
    tex = cow.textures
    if not isinstance(tex, TexturesUV):
        raise ValueError("standin_on_floor expects a UV-textured mesh")
    v = cow.verts_packed()
    dev, dt = v.device, v.dtype
    cmap = tex.maps[0]
    hh, ww = cmap.shape[:2]
    floor_map = checker_image(hh, squares).to(dev, dt)
    maps = torch.cat([cmap, floor_map], 1)[None]  # (1, H, 2W, 3)
    w2 = 2 * ww - 1
    cow_uv = tex.verts_uvs_list()[0].clone()
    cow_uv[:, 0] = cow_uv[:, 0] * (ww - 1) / w2
    y = float(v[:, 1].min())
    fv = torch.tensor([[-half, y, -half], [half, y, -half], [half, y, half], [-half, y, half]], device=dev, dtype=dt)
    # counter-clockwise seen from above (+y): normals up
    ff = torch.tensor([[0, 2, 1], [0, 3, 2]], device=dev) + len(v)
    fuv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], device=dev, dtype=dt)
    fuv[:, 0] = (ww + fuv[:, 0] * (ww - 1)) / w2
    verts = torch.cat([v, fv])
    faces = torch.cat([cow.faces_packed(), ff])
    uvs = torch.cat([cow_uv, fuv])
    faces_uvs = torch.cat([tex.faces_uvs_list()[0], torch.tensor([[0, 2, 1], [0, 3, 2]], device=dev) + len(cow_uv)])
    return Meshes([verts], [faces], TexturesUV(maps, [faces_uvs], [uvs]))


def _colored(verts, faces, color) -> Meshes:
    v = torch.as_tensor(verts, dtype=torch.float32)
    return Meshes([v], [torch.as_tensor(faces)], TexturesVertex([torch.tensor(color, dtype=torch.float32).expand_as(v)]))


def arrow(axis: int, length: float = 1.26, radius: float = 0.035, head: float = 0.15, color=(1.0, 0.0, 0.0),
          n: int = 12) -> Meshes:
    """A closed arrow from the origin along +axis (0 = x, 1 = y, 2 = z): a shaft and a cone tip."""
    a = torch.linspace(0, 2 * math.pi, n + 1)[:-1]
    ring = torch.stack([a.cos(), a.sin()], -1)  # (n, 2) in the plane across the axis
    shaft_len = length - head

    def lift(r, t):  # points on a ring of radius r at height t along the axis
        p = torch.zeros(n, 3)
        others = [i for i in range(3) if i != axis]
        p[:, others[0]], p[:, others[1]] = r * ring[:, 0], r * ring[:, 1]
        p[:, axis] = t
        return p

    tip = torch.zeros(1, 3)
    tip[0, axis] = length
    base = torch.zeros(1, 3)
    verts = torch.cat([lift(radius, 0.0), lift(radius, shaft_len), lift(2.5 * radius, shaft_len), tip, base])
    i = torch.arange(n)
    j = (i + 1) % n
    faces = torch.cat([
        torch.stack([i, j, n + j], -1), torch.stack([i, n + j, n + i], -1),  # shaft
        torch.stack([n + i, n + j, 2 * n + j], -1), torch.stack([n + i, 2 * n + j, 2 * n + i], -1),  # collar
        torch.stack([2 * n + i, 2 * n + j, torch.full_like(i, 3 * n)], -1),  # cone
        torch.stack([torch.full_like(i, 3 * n + 1), j, i], -1),  # bottom cap
    ])
    # the faces above are outward for a ring turning counter-clockwise about +axis; the ring
    # runs in the (y, z), (x, z), (x, y) plane for axis x, y, z, and x -> z turns clockwise about +y
    if axis == 1:
        faces = faces[:, [0, 2, 1]]
    return _colored(verts, faces, color)


def standin_with_axes(cow: Meshes, color=(0.6, 0.6, 0.85)) -> Meshes:
    """The stand-in cow in one flat colour with red X, green Y and blue Z arrows from the origin
    (like the course's cow_with_axis.obj)."""
    v = cow.verts_packed()
    body = Meshes([v], [cow.faces_packed()], TexturesVertex([torch.tensor(color, dtype=v.dtype, device=v.device).expand_as(v)]))
    arrows = [arrow(k, color=c).to(v.device) for k, c in enumerate(((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)))]
    return join_meshes_as_scene([body] + arrows)


def small_faces(mesh: Meshes, fraction: float = 0.25) -> torch.Tensor:
    """(F,) bool: faces whose longest edge is below ``fraction`` of the scene's bounding-box
    diagonal, i.e. everything but a floor slab or ground quad spanning the scene."""
    fv = mesh.faces_verts_packed()
    edges = (fv - fv.roll(1, 1)).norm(dim=-1).amax(1)
    v = mesh.verts_packed()
    return edges < fraction * float((v.amax(0) - v.amin(0)).norm())


# ----------------------------------------------------------------------------------------------
# labels outside the picture
# ----------------------------------------------------------------------------------------------
def add_banner(frames: torch.Tensor, texts: Sequence[str], color=(255, 0, 0), background=(1.0, 1.0, 1.0),
               height: Optional[int] = None) -> torch.Tensor:
    """(T, H + h, W, 3): a label strip of height h above each frame with its text, so that labels
    never cover the rendered scene."""
    t, hgt, wid, _ = frames.shape
    h = height if height is not None else max(14, round(0.1 * wid))
    strip = torch.tensor(background, dtype=frames.dtype, device=frames.device).expand(t, h, wid, 3)
    font = 0.75 * h
    labelled = torch.stack([label_image(s, txt, xy=(round(0.06 * wid), round(0.1 * h)), color=color, size=font)
                            for s, txt in zip(strip, texts)])
    return torch.cat([labelled, frames[..., :3]], 1)


# ----------------------------------------------------------------------------------------------
# checks in metrics.json
# ----------------------------------------------------------------------------------------------
def report_checks(output_dir, metrics: Mapping, written: Iterable, checks: Dict[str, dict],
                  own: Optional[str] = None) -> None:
    """``report`` with ``metrics["checks"] = checks``, printing each check.

    ``own``: when several commands write into one folder (the tetrahedron and the cube, the
    parametric and implicit surfaces), each owns the checks whose names start with ``own``; the
    checks of the others already in metrics.json are kept, this command's are replaced."""
    merged = dict(checks)
    if own is not None:
        old = read_metrics(output_dir).get("checks", {})
        merged = {**{k: v for k, v in old.items() if not k.startswith(own)}, **checks}
    for name, c in checks.items():
        lim = " ".join(f"{k} {c[k]:.4g}" for k in ("min", "max") if k in c)
        v = c["value"]
        print(f"check {name}: {v:.4g} ({lim}) {'pass' if c['pass'] else 'FAIL'}" if isinstance(v, (int, float))
              else f"check {name}: {v} ({lim}) FAIL")
    report(output_dir, {**metrics, "checks": merged}, written)


# ----------------------------------------------------------------------------------------------
# turntables with their checks
# ----------------------------------------------------------------------------------------------
def render_turntable(mesh: Meshes, num_frames: int, dist: float, elev: float = 0.0, image_size: int = 256,
                     light_location=None, azim_start: float = 0.0, background=(1.0, 1.0, 1.0),
                     shader: str = "phong", fov: float = 60.0):
    """(T, H, W, 4) RGBA frames (alpha = coverage) of a 360-degree turntable and its cameras.

    Same cameras and lights as :func:`l3d.viz.render_mesh_turntable` (a light at every camera
    unless ``light_location`` is given)."""
    from l3d.cameras import turntable_cameras
    from l3d.shading import PointLights, render_mesh
    from l3d.viz import light_at_cameras

    v = mesh.verts_packed()
    cams = turntable_cameras(num_frames, dist, elev, fov, azim_start, azim_start + 360.0, device=v.device, dtype=v.dtype)
    lights = light_at_cameras(cams) if light_location is None else PointLights(location=light_location)
    with torch.no_grad():
        frames = render_mesh(mesh, cams, image_size, lights=lights, background=background, shader=shader,
                             batch_size=8).clamp(0, 1)
    return frames, cams


def turntable_checks(mesh: Meshes, frames: torch.Tensor, cams, gif, prefix: str = "", seed: int = 0,
                     width_ratio: Optional[float] = None, samples: Optional[int] = None) -> Dict[str, dict]:
    """The checks every mesh turntable carries (names prefixed with ``prefix``):

    * ``silhouette_match``: the lowest agreement over the frames of the outlines (within a
      pixel, :func:`a1_rendering.measure.silhouette_match`) of the rendered silhouette and of
      surface samples projected by that frame's camera (the frames show the cameras' views);
    * ``motion_ratio``: :func:`a1_rendering.measure.motion_ratio` of the frames (> 1: reads as
      turning; a shape strobing between two poses gives ~0);
    * ``frames_per_turn`` and ``turn_seconds``: read back from the written GIF;
    * ``turn_width_ratio`` (when ``width_ratio`` is given, its minimum): widest over narrowest
      silhouette over the turn (an elongated object seen from the side and from the front).
    """
    from l3d.checks import check

    from a1_rendering.measure import gif_timing, motion_ratio, sample_silhouette, silhouette_match, silhouette_widths

    mask = frames[..., 3] > 0.5
    match = silhouette_match(mask, sample_silhouette(mesh, cams, frames.shape[1:3], samples, seed))
    timing = gif_timing(gif)
    out = {
        "silhouette_match": check(float(match.min()), min=0.95, what="lowest share over the frames of outline pixels "
                                  "within 1 pixel of the other outline: rendered silhouette vs surface samples projected by "
                                  "the frame's camera"),
        "motion_ratio": check(motion_ratio(frames[..., :3]), min=1.1, what="mean change over two frames / over one "
                              "frame (about 2 for a smooth turn, about 0 for a shape strobing between two poses)"),
        "frames_per_turn": check(timing["frames"], min=24, what="distinct frames in the GIF (read back)"),
        "turn_seconds": check(timing["seconds"], min=2.0, what="seconds per full turn of the GIF (read back)"),
    }
    if width_ratio is not None:
        w = silhouette_widths(mask)
        out["turn_width_ratio"] = check(float(w.max() / w.min().clamp(min=1)), min=width_ratio,
                                        what="widest / narrowest silhouette over the turn (side vs front view)")
    return {prefix + k: v for k, v in out.items()}
