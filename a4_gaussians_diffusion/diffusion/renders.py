"""Procedural renders with captions: the training data of the small prior and of the judge.

Each picture is one object rendered by :func:`l3d.shading.render_mesh` (Phong shading, a point
light near the camera, white background): a shape (cube, sphere, cone, torus and, when the course
files are present, the course cow) in one of five colours, seen from the front, the side or the
back, named by a caption such as ``"a red cube, side view"`` (the view phrases are exactly those
that :func:`.views.view_prompts` appends for view-dependent prompting) or, for a share of the
pictures, without the view (``"a red cube"``).

Views follow :mod:`.views`: the object's front faces +Z, the camera's azimuth 0 is on +Z (front),
|azimuth| in 40..140 degrees is a side view and |azimuth| >= 155 a back view (the margins around
:func:`.views.view_index`'s 30 / 150 boundaries keep the classes apart). So that the view shows
in every shape, the procedural shapes carry a dark "nose" (a small sphere) on their front; the
cow's head is its front (the mesh is turned by 180 degrees about Y, since its head faces -Z).
Elevation U(0, 30) degrees, distance U(3, 3.5), vertical FoV U(16, 24) degrees (the DreamFusion
cameras of :class:`.views.CameraSampler` at their default radius), the colour's brightness
jittered by U(0.85, 1.1).

Pictures are rendered at twice ``size`` and averaged 2 x 2 down (anti-aliasing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from l3d.cameras import FoVPerspectiveCameras, look_at_view_transform
from l3d.shading import Materials, PointLights, render_mesh
from l3d.structures import Meshes, TexturesVertex

from .views import VIEW_NAMES

__all__ = ["SHAPES", "COLOURS", "VIEWS", "COW_FILE", "Shape", "available_shapes", "caption", "parse_caption",
           "RenderSet", "render_set", "view_azimuths", "colour_of", "object_chromaticity",
           "palette_chromaticity", "object_shown"]

#: Shapes (the cow only when its course file is present), colours (RGB in [0, 1]) and views.
SHAPES = ("cube", "sphere", "cone", "torus", "cow")
COLOURS: Dict[str, Tuple[float, float, float]] = {
    "red": (0.85, 0.08, 0.08), "green": (0.1, 0.65, 0.12), "blue": (0.1, 0.2, 0.9),
    "yellow": (0.95, 0.85, 0.1), "purple": (0.55, 0.12, 0.75)}
VIEWS = tuple(VIEW_NAMES)
COW_FILE = "a1/cow.obj"
NOSE_RGB = (0.12, 0.12, 0.12)


@dataclass
class Shape:
    """A mesh in world units (about the unit ball's half) with a per-vertex flag of its nose."""

    verts: torch.Tensor  # (V, 3) float32
    faces: torch.Tensor  # (F, 3) long
    nose: torch.Tensor  # (V,) bool: vertices painted NOSE_RGB


def _trimesh_shape(name: str):
    import trimesh

    if name == "cube":
        return trimesh.creation.box(extents=(0.75, 0.75, 0.75)), 0.375
    if name == "sphere":
        return trimesh.creation.icosphere(subdivisions=2, radius=0.48), 0.48
    if name == "cone":  # axis along +Y, base at y = -0.45
        m = trimesh.creation.cone(radius=0.45, height=0.95, sections=24)
        m.apply_transform(trimesh.transformations.rotation_matrix(-math.pi / 2, (1, 0, 0)))
        m.apply_translation((0, -0.45, 0))
        return m, 0.24  # the cone's radius at y = 0 (mid height) where the nose sits
    if name == "torus":  # lying flat (axis +Y), a ring around the origin
        m = trimesh.creation.torus(major_radius=0.36, minor_radius=0.14, major_sections=24, minor_sections=12)
        m.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 2, (1, 0, 0)))
        return m, 0.5
    raise ValueError(f"unknown shape {name!r}")


def _procedural(name: str) -> Shape:
    import trimesh

    body, front = _trimesh_shape(name)
    nose = trimesh.creation.icosphere(subdivisions=1, radius=0.13)
    nose.apply_translation((0.0, 0.0, front + 0.06))
    v = np.concatenate([body.vertices, nose.vertices]).astype(np.float32)
    f = np.concatenate([body.faces, nose.faces + len(body.vertices)])
    flag = np.zeros(len(v), bool)
    flag[len(body.vertices):] = True
    return Shape(torch.from_numpy(v), torch.from_numpy(f).long(), torch.from_numpy(flag))


def _cow(path) -> Shape:
    from l3d.io import read_obj

    obj = read_obj(path)
    v = torch.as_tensor(np.asarray(obj.verts), dtype=torch.float32)
    f = torch.as_tensor(np.asarray(obj.faces), dtype=torch.long)
    v = v - (v.max(0).values + v.min(0).values) / 2
    v = v / float(v.norm(dim=1).max()) * 0.62
    v = v * torch.tensor([-1.0, 1.0, -1.0])  # 180 degrees about Y: the head to +Z (the front)
    return Shape(v, f, torch.zeros(len(v), dtype=torch.bool))


def available_shapes(with_cow: Optional[bool] = None) -> Tuple[str, ...]:
    """The shape names used: the four procedural ones, plus the cow when ``with_cow`` (default:
    when the course's cow.obj is present)."""
    if with_cow is None:
        from l3d.data import get_path

        with_cow = get_path(COW_FILE, required=False) is not None
    return SHAPES if with_cow else SHAPES[:4]


def load_shapes(names: Sequence[str]) -> Dict[str, Shape]:
    out = {}
    for n in names:
        if n == "cow":
            from l3d.data import get_path

            out[n] = _cow(get_path(COW_FILE))
        else:
            out[n] = _procedural(n)
    return out


def caption(shape: str, colour: str, view: Optional[str] = None) -> str:
    """``"a red cube, side view"`` (or ``"a red cube"`` without a view)."""
    base = f"a {colour} {shape}"
    return f"{base}, {view} view" if view else base


def parse_caption(text: str) -> Dict[str, Optional[str]]:
    """``{"shape", "colour", "view"}`` named by a prompt (None where it names none of ours)."""
    words = text.lower().replace(",", " ").split()
    pick = lambda names: next((w for w in words if w in names), None)  # noqa: E731
    view = next((v for v in VIEWS if f"{v} view" in " ".join(words)), None)
    return {"shape": pick(SHAPES), "colour": pick(tuple(COLOURS)), "view": view}


def view_azimuths(view: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(N,) azimuths in degrees for view indices (N,) (0 front, 1 side, 2 back; see the module doc)."""
    n = len(view)
    u = torch.rand(n, generator=generator)
    sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    front = (u * 2 - 1) * 25.0
    side = sign * (40.0 + 100.0 * u)
    back = 180.0 + (u * 2 - 1) * 25.0
    return torch.where(view == 0, front, torch.where(view == 1, side, back))


@dataclass
class RenderSet:
    """Pictures and their labels (indices into ``shapes`` / COLOURS / VIEWS)."""

    images: torch.Tensor  # (N, S, S, 3) uint8
    shape: torch.Tensor  # (N,) long
    colour: torch.Tensor
    view: torch.Tensor
    azimuth: torch.Tensor  # (N,) degrees
    shapes: Tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)

    def captions(self, with_view: torch.Tensor) -> List[str]:
        """One caption per picture, naming the view where ``with_view`` (N,) bool is True."""
        cols = list(COLOURS)
        return [caption(self.shapes[s], cols[c], VIEWS[v] if w else None)
                for s, c, v, w in zip(self.shape.tolist(), self.colour.tolist(), self.view.tolist(),
                                      with_view.tolist())]

    def float_images(self) -> torch.Tensor:
        """(N, 3, S, S) float32 in [0, 1]."""
        return self.images.permute(0, 3, 1, 2).float() / 255.0


def render_set(n: int, seed: int, size: int = 32, shapes: Optional[Sequence[str]] = None, batch: int = 64,
               show_progress: bool = True) -> RenderSet:
    """``n`` random pictures (uniform shape, colour and view), reproducible from ``seed``."""
    from l3d.train import progress

    shapes = tuple(shapes or available_shapes())
    meshes = load_shapes(shapes)
    gen = torch.Generator().manual_seed(seed)
    shape_i = torch.randint(len(shapes), (n,), generator=gen)
    colour_i = torch.randint(len(COLOURS), (n,), generator=gen)
    view_i = torch.randint(len(VIEWS), (n,), generator=gen)
    azim = view_azimuths(view_i, gen)
    elev = torch.rand(n, generator=gen) * 30.0
    dist = 3.0 + 0.5 * torch.rand(n, generator=gen)
    fov = 16.0 + 8.0 * torch.rand(n, generator=gen)
    bright = 0.85 + 0.25 * torch.rand(n, generator=gen)
    palette = torch.tensor(list(COLOURS.values()))
    out = torch.empty(n, size, size, 3, dtype=torch.uint8)
    for s in progress(range(0, n, batch), "renders", disable=None if show_progress else True):
        idx = torch.arange(s, min(n, s + batch))
        vs, fs, cs = [], [], []
        for i in idx.tolist():  # one mesh per picture (a batch of meshes, rendered at once below)
            m = meshes[shapes[int(shape_i[i])]]
            rgb = (palette[colour_i[i]] * bright[i]).clamp(0, 1)
            col = torch.where(m.nose[:, None], torch.tensor(NOSE_RGB), rgb.expand(len(m.verts), 3))
            vs.append(m.verts), fs.append(m.faces), cs.append(col)
        R, T = look_at_view_transform(dist[idx], elev[idx], azim[idx])
        cams = FoVPerspectiveCameras(fov=fov[idx], R=R, T=T)
        centres = cams.get_camera_center()
        light = centres + torch.tensor([0.0, 2.0, 0.0]) + torch.randn(len(idx), 3, generator=gen) * 0.7
        lights = PointLights(location=light, ambient_color=(0.45,) * 3, diffuse_color=(0.5,) * 3,
                             specular_color=(0.1,) * 3)
        img = render_mesh(Meshes(vs, fs, TexturesVertex(cs)), cams, 2 * size, lights=lights,
                          materials=Materials(shininess=16.0))[..., :3].clamp(0, 1)
        img = F.avg_pool2d(img.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
        out[idx] = (img * 255).round().to(torch.uint8)
    return RenderSet(out, shape_i, colour_i, view_i, azim, shapes)


def object_chromaticity(images: torch.Tensor):
    """Mean chromaticity (rgb / sum, which shading scales away) of each picture's object pixels,
    (B, 3), and the share of the picture they cover, (B,). ``images`` (B, 3, H, W) in [0, 1].

    A fixed rule, not a trained model: object pixels are those with a channel well below the white
    background (min < 0.6) that are not the dark nose (max > 0.2).
    """
    x = images.float().clamp(0, 1)
    lo, hi = x.amin(1), x.amax(1)  # (B, H, W)
    obj = ((lo < 0.6) & (hi > 0.2)).float()
    count = obj.flatten(1).sum(1)
    mean = (x * obj[:, None]).flatten(2).sum(2) / count.clamp(min=1)[:, None]  # (B, 3)
    return mean / mean.sum(1, keepdim=True).clamp(min=1e-6), count / obj[0].numel()


def palette_chromaticity() -> torch.Tensor:
    """(len(COLOURS), 3) chromaticities of the palette, in COLOURS order."""
    palette = torch.tensor(list(COLOURS.values()))
    return palette / palette.sum(1, keepdim=True)


def colour_of(images: torch.Tensor, min_object: float = 0.02) -> torch.Tensor:
    """(B,) index into COLOURS of each picture's object colour (the palette colour nearest to its
    :func:`object_chromaticity`), or -1 where the object covers under ``min_object`` of the picture."""
    chroma, cover = object_chromaticity(images)
    best = torch.cdist(chroma, palette_chromaticity()).argmin(1)
    return torch.where(cover >= min_object, best, torch.full_like(best, -1))


def object_shown(images: torch.Tensor, min_object: float = 0.02, min_border_background: float = 0.03) -> List[str]:
    """Per picture: ``"yes"``, ``"empty"`` (object pixels, as in :func:`object_chromaticity`, cover
    under ``min_object``) or ``"fills the frame"`` (under ``min_border_background`` of the 2-pixel
    border is near-white background). Every training render shows its object with background
    around it (the smallest border share in 1000 renders: 0.067); a collapsed score-distillation
    run gives the other two, which a classifier would still name as some shape."""
    x = images.float().clamp(0, 1)
    _, cover = object_chromaticity(x)
    h, w = x.shape[-2:]
    border = torch.ones(h, w, dtype=torch.bool, device=x.device)
    border[2:h - 2, 2:w - 2] = False
    background = ((x.amin(1) > 0.8) & border).flatten(1).sum(1) / border.sum()
    return ["empty" if c < min_object else "fills the frame" if b < min_border_background else "yes"
            for c, b in zip(cover.tolist(), background.tolist())]
