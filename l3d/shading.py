"""Lights, materials, Phong / Gouraud / flat shading, point compositing and the two high-level
renderers.

The lighting model is PyTorch3D's (see spec conventions), in world space:
``colour = (ambient + diffuse * max(0, n.l)) * texel + specular`` where
``specular = ks * max(0, v.r) ** shininess`` only where ``n.l > 0`` and r is the reflection of the
light direction l about n. The three shaders differ in where it is evaluated, as PyTorch3D's
``HardPhongShader``, ``HardGouraudShader`` and ``HardFlatShader``:

* ``"phong"``: per pixel, at the interpolated surface point with interpolated vertex normals;
* ``"gouraud"``: per vertex, with the vertex normals, then the lit colours are interpolated
  with the barycentrics (highlights smaller than a face are missed or smeared);
* ``"flat"``: once per face, at its centroid with the face normal (constant over a face
  of constant colour);
* ``"unlit"``: the texture colour only.

Camera conventions: :mod:`l3d.cameras`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .cameras import PerspectiveCameras, Size, as_hw
from .raster import MAX_PAIRS, Fragments, PointFragments, rasterize_meshes, rasterize_points
from .structures import Meshes, Pointclouds, TexturesUV, TexturesVertex, gather_rows, interpolate_face_attributes

Colour = Union[float, Sequence[float], torch.Tensor]


def _colour(c: Colour, like: torch.Tensor, n: int = 1) -> torch.Tensor:
    """(n or B, 3) colour tensor on ``like``'s device and dtype."""
    t = torch.as_tensor(c, dtype=like.dtype, device=like.device)
    if t.dim() == 0:
        t = t.expand(3)
    if t.dim() == 1:
        t = t[None]
    return t


@dataclass
class PointLights:
    """Point lights, one per image or one shared (location (B, 3) or (3,)).

    Defaults are PyTorch3D's: ambient 0.5, diffuse 0.3, specular 0.2, location (0, 1, 0).
    """

    location: Colour = (0.0, 1.0, 0.0)
    ambient_color: Colour = (0.5, 0.5, 0.5)
    diffuse_color: Colour = (0.3, 0.3, 0.3)
    specular_color: Colour = (0.2, 0.2, 0.2)


@dataclass
class Materials:
    """Material reflectivities and shininess (PyTorch3D defaults: 1, 1, 1, 64)."""

    ambient_color: Colour = (1.0, 1.0, 1.0)
    diffuse_color: Colour = (1.0, 1.0, 1.0)
    specular_color: Colour = (1.0, 1.0, 1.0)
    shininess: float = 64.0


def phong_shading(
    points: torch.Tensor,
    normals: torch.Tensor,
    texels: torch.Tensor,
    camera_center: torch.Tensor,
    lights: PointLights,
    materials: Materials,
    light_location: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Phong colour of surface points.

    Args:
        points: (Q, 3) world positions; normals: (Q, 3) (normalised here); texels: (Q, C) base
            colour; camera_center: (Q, 3) eye position per point.
        light_location: (Q, 3) per-point light position (defaults to ``lights.location``).
    Returns:
        (Q, C) colours.
    """
    lit, specular = apply_lighting(points, normals, camera_center, lights, materials, light_location)
    return lit * texels + specular


def apply_lighting(
    points: torch.Tensor,
    normals: torch.Tensor,
    camera_center: torch.Tensor,
    lights: PointLights,
    materials: Materials,
    light_location: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The two terms of the lighting model at surface points (any leading shape ``...``).

    Args:
        points: (..., 3) world positions; normals: (..., 3) (normalised here);
            camera_center: (..., 3) eye position per point.
        light_location: (..., 3) light position per point (defaults to ``lights.location``).
    Returns:
        lit: (..., 3) ``ambient + diffuse * max(0, n.l)``, the factor of the texel colour;
        specular: (..., 3) the specular colour added on top.
    """
    loc = _colour(lights.location, points) if light_location is None else light_location
    n = F.normalize(normals, dim=-1, eps=1e-6)
    l = F.normalize(loc - points, dim=-1, eps=1e-6)  # noqa: E741
    v = F.normalize(camera_center - points, dim=-1, eps=1e-6)
    cos = (n * l).sum(-1, keepdim=True)
    ambient = _colour(materials.ambient_color, points) * _colour(lights.ambient_color, points)
    diffuse = _colour(materials.diffuse_color, points) * _colour(lights.diffuse_color, points) * cos.clamp(min=0)
    r = -l + 2 * cos * n
    spec_angle = (v * r).sum(-1, keepdim=True).clamp(min=0) * (cos > 0)
    specular = (
        _colour(materials.specular_color, points) * _colour(lights.specular_color, points)
        * spec_angle.pow(materials.shininess)
    )
    return ambient + diffuse, specular


def gouraud_shading(
    meshes: Meshes,
    pix_to_face: torch.Tensor,
    bary: torch.Tensor,
    camera_center: torch.Tensor,
    lights: PointLights,
    materials: Materials,
    light_location: Optional[torch.Tensor] = None,
    texels: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Gouraud colour of surface points: lighting at the three corners of each point's face,
    with the vertex normals, interpolated with the barycentrics.

    Evaluating the corners per point (rather than once per vertex) gives the same numbers and
    lets every image have its own camera and light. With :class:`TexturesVertex` the corner
    colours are lit and then interpolated, as PyTorch3D's ``gouraud_shading``; with
    :class:`TexturesUV` (which PyTorch3D's Gouraud shader does not take) the interpolated
    lighting terms multiply the texel sampled at the point: ``lerp(lit) * texel + lerp(specular)``.

    Args:
        meshes: the meshes (vertex normals from :meth:`Meshes.verts_normals_packed`).
        pix_to_face: (Q,) long packed face index of each point (all >= 0).
        bary: (Q, 3) barycentric coordinates of each point in its face.
        camera_center: (Q, 3) eye position per point; light_location: (Q, 3) or None.
        texels: (Q, C) texture colour at the points; needed for TexturesUV, ignored otherwise.
    Returns:
        (Q, C) colours.
    """
    faces = gather_rows(meshes.faces_packed(), pix_to_face)  # (Q, 3)
    pts = gather_rows(meshes.verts_packed(), faces)  # (Q, 3 corners, 3)
    nrm = gather_rows(meshes.verts_normals_packed(), faces)  # (Q, 3, 3)
    cam = camera_center[:, None].expand_as(pts)
    loc = None if light_location is None else light_location[:, None].expand_as(pts)
    lit, spec = apply_lighting(pts, nrm, cam, lights, materials, loc)  # (Q, 3, 3) each
    w = bary[..., None]  # (Q, 3, 1)
    if isinstance(meshes.textures, TexturesVertex):
        corner_colours = gather_rows(meshes.textures.verts_features_packed(), faces)  # (Q, 3, C)
        return (w * (lit * corner_colours + spec)).sum(1)
    if texels is None:
        raise ValueError("gouraud_shading needs texels for a TexturesUV")
    return (w * lit).sum(1) * texels + (w * spec).sum(1)


def _per_image(x: Colour, like: torch.Tensor, n: int) -> torch.Tensor:
    t = _colour(x, like)
    return t.expand(n, -1) if t.shape[0] == 1 else t


ShaderName = Literal["phong", "gouraud", "flat", "unlit"]
SHADERS = ("phong", "gouraud", "flat", "unlit")


def shade_fragments(
    meshes: Meshes,
    frags: Fragments,
    cameras: PerspectiveCameras,
    lights: Optional[PointLights] = None,
    materials: Optional[Materials] = None,
    background: Colour = (1.0, 1.0, 1.0),
    shader: ShaderName = "phong",
) -> torch.Tensor:
    """Colour rasterised fragments; returns (N, H, W, C + 1) with alpha = 1 where a face was hit.

    ``shader``: "phong" (lit per pixel, interpolated vertex normals), "gouraud" (lit per vertex,
    colours interpolated), "flat" (lit once per face, at its centroid with the face normal) or
    "unlit" (texture colour only); see the module docstring. Only covered pixels are shaded.
    """
    if shader not in SHADERS:
        raise ValueError(f"unknown shader {shader!r}; expected one of {', '.join(SHADERS)}")
    if meshes.textures is None:
        raise ValueError("meshes have no textures; give them TexturesVertex or TexturesUV")
    lights = lights if lights is not None else PointLights()
    materials = materials if materials is not None else Materials()
    n, h, w = frags.pix_to_face.shape
    fg = frags.hits()  # (Q,) covered pixels
    p2f = frags.pix_to_face.reshape(-1).index_select(0, fg)
    bary = gather_rows(frags.bary_coords.reshape(-1, 3), fg)
    texels = meshes.textures.sample(meshes, p2f, bary)  # (Q, C)
    if shader == "unlit":
        colours = texels
    else:
        img = torch.div(fg, h * w, rounding_mode="floor")  # (Q,) image of each covered pixel
        cam_idx = img if len(cameras) == n else torch.zeros_like(img)
        centers = gather_rows(cameras.get_camera_center(), cam_idx)  # (Q, 3)
        loc = gather_rows(_per_image(lights.location, texels, n), img)  # (Q, 3)
        if shader == "gouraud":
            colours = gouraud_shading(meshes, p2f, bary, centers, lights, materials, loc, texels)
        else:
            if shader == "phong":
                pts = interpolate_face_attributes(p2f, bary, meshes.faces_verts_packed())
                nrm = interpolate_face_attributes(
                    p2f, bary, gather_rows(meshes.verts_normals_packed(), meshes.faces_packed()))
            else:  # flat: the face's centroid and normal, so the lighting is constant per face
                pts = gather_rows(meshes.faces_verts_packed().mean(1), p2f)
                nrm = gather_rows(meshes.faces_normals_packed(), p2f)
            colours = phong_shading(pts, nrm, texels, centers, lights, materials, light_location=loc)
    c = colours.shape[-1]
    bg = _per_image(background, colours, n)  # (N, C)
    # one fresh (N, H, W, C + 1) buffer: background and alpha 0, then the covered pixels in place
    out = torch.cat([bg, bg.new_zeros(n, 1)], -1)[:, None, None, :].expand(n, h, w, c + 1).contiguous()
    out = out.view(-1, c + 1)
    out.index_copy_(0, fg, torch.cat([colours, colours.new_ones(len(fg), 1)], -1))
    return out.view(n, h, w, c + 1)


def render_mesh(
    meshes: Meshes,
    cameras: PerspectiveCameras,
    image_size: Size = 256,
    lights: Optional[PointLights] = None,
    materials: Optional[Materials] = None,
    background: Colour = (1.0, 1.0, 1.0),
    shader: ShaderName = "phong",
    batch_size: Optional[int] = None,
    z_clip: Optional[float] = None,
    max_pairs: int = MAX_PAIRS,
) -> torch.Tensor:
    """Rasterise and shade meshes; returns RGBA images (N, H, W, C + 1) in [0, 1] (for RGB textures).

    Args:
        meshes: N meshes (or 1, broadcast over the cameras).
        cameras: C cameras (or 1).
        image_size: int or (H, W).
        lights: defaults to :class:`PointLights` (location per image allowed: (N, 3)).
        batch_size: render at most this many images at a time (bounds memory for long turntables).
    """
    h, w = as_hw(image_size)
    n = max(len(meshes), len(cameras))
    if batch_size is None or batch_size >= n:
        frags = rasterize_meshes(meshes, cameras, (h, w), z_clip=z_clip, max_pairs=max_pairs)
        return shade_fragments(meshes, frags, cameras, lights, materials, background, shader)
    outs = []
    for s in range(0, n, batch_size):
        sl = slice(s, min(n, s + batch_size))
        m = meshes if len(meshes) == 1 else _slice_meshes(meshes, sl)
        c = cameras if len(cameras) == 1 else cameras[sl]
        lt = _slice_lights(lights, sl, n)
        bg = background
        if torch.is_tensor(bg) and bg.dim() == 2 and bg.shape[0] == n:
            bg = bg[sl]
        outs.append(render_mesh(m, c, (h, w), lt, materials, bg, shader, None, z_clip, max_pairs))
    return torch.cat(outs, 0)


def _slice_meshes(meshes: Meshes, sl: slice) -> Meshes:
    idx = range(*sl.indices(len(meshes)))
    vl, fl = meshes.verts_list(), meshes.faces_list()
    tex = meshes.textures
    if tex is not None:
        if isinstance(tex, TexturesVertex):
            feats = tex._split()
            tex = TexturesVertex([feats[i] for i in idx])
        elif isinstance(tex, TexturesUV):
            tex = TexturesUV(tex.maps[sl], [tex.faces_uvs_list()[i] for i in idx], [tex.verts_uvs_list()[i] for i in idx])
    return Meshes([vl[i] for i in idx], [fl[i] for i in idx], tex)


def _slice_lights(lights: Optional[PointLights], sl: slice, n: int) -> Optional[PointLights]:
    if lights is None:
        return None
    loc = torch.as_tensor(lights.location)
    if loc.dim() == 2 and loc.shape[0] == n and n > 1:
        return PointLights(loc[sl], lights.ambient_color, lights.diffuse_color, lights.specular_color)
    return lights


# ----------------------------------------------------------------------------------------------
# points
# ----------------------------------------------------------------------------------------------
def alpha_composite(
    frags: PointFragments, features: torch.Tensor, radius: float, background: Optional[Colour] = (1.0, 1.0, 1.0)
) -> torch.Tensor:
    """Front-to-back alpha compositing of the K points per pixel.

    ``w_k = 1 - d_k^2 / r^2``; ``colour = sum_k w_k prod_{j<k} (1 - w_j) f_k``; pixels with no point
    get ``background`` (None leaves them 0).

    Args:
        frags: :class:`PointFragments` (N, H, W, K).
        features: (P, C) packed per-point features.
    Returns:
        (N, H, W, C + 1): composited features and alpha ``1 - prod_k (1 - w_k)``.
    """
    valid = frags.idx >= 0
    wgt = torch.where(valid, 1 - frags.dists / (radius * radius), torch.zeros_like(frags.dists))
    wgt = wgt.clamp(0, 1)
    trans = torch.cumprod(torch.cat([torch.ones_like(wgt[..., :1]), 1 - wgt[..., :-1]], -1), -1)
    f = features[frags.idx.clamp(min=0)]  # (N, H, W, K, C)
    colour = ((wgt * trans)[..., None] * f).sum(-2)
    alpha = 1 - torch.prod(1 - wgt, dim=-1, keepdim=True)
    if background is not None:
        empty = ~valid[..., 0:1]
        bg = _colour(background, colour).view(1, 1, 1, -1)
        colour = torch.where(empty, bg.expand_as(colour), colour)
    return torch.cat([colour, alpha], -1)


def render_points(
    pointclouds: Pointclouds,
    cameras: PerspectiveCameras,
    image_size: Size = 256,
    radius: float = 0.01,
    points_per_pixel: int = 8,
    background: Optional[Colour] = (1.0, 1.0, 1.0),
    batch_size: Optional[int] = None,
) -> torch.Tensor:
    """Rasterise and alpha-composite point clouds; returns (N, H, W, C + 1) (features + alpha).

    Points without features are drawn white.
    """
    feats = pointclouds.features_packed()
    if feats is None:
        feats = torch.ones_like(pointclouds.points_packed())
    n = max(len(pointclouds), len(cameras))
    if batch_size is not None and batch_size < n:
        outs = []
        for s in range(0, n, batch_size):
            sl = slice(s, min(n, s + batch_size))
            pc = pointclouds if len(pointclouds) == 1 else _slice_points(pointclouds, sl)
            cam = cameras if len(cameras) == 1 else cameras[sl]
            outs.append(render_points(pc, cam, image_size, radius, points_per_pixel, background))
        return torch.cat(outs, 0)
    frags = rasterize_points(pointclouds, cameras, image_size, radius, points_per_pixel)
    return alpha_composite(frags, feats, radius, background)


def _slice_points(pc: Pointclouds, sl: slice) -> Pointclouds:
    idx = range(*sl.indices(len(pc)))
    pl, fl = pc.points_list(), pc.features_list()
    return Pointclouds([pl[i] for i in idx], None if fl is None else [fl[i] for i in idx])


__all__ = [
    "PointLights", "Materials", "phong_shading", "apply_lighting", "gouraud_shading", "shade_fragments",
    "render_mesh", "SHADERS",
    "alpha_composite", "render_points",
]
