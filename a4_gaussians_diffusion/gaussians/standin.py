"""A procedural stand-in for the course's pre-trained 3DGS .ply: Gaussians on the cow's surface.

Points are sampled uniformly by area on the cow mesh (or the procedural stand-in mesh when the
cow is missing), coloured by its texture, with isotropic scales of about half the point spacing
and opacity sigmoid(4). The SH coefficients hold the texture colour in the DC term plus a small
degree-1 term that brightens a surface seen head-on (along its normal), so rendering with
``--sh`` visibly differs from the plain colours. The Gaussians are stored in the 3DGS/COLMAP
world frame (y down, the mesh rotated 180 degrees about x), like the course's file, so the
course's turntable (up = (0, -1, 0)) shows them upright.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from l3d.data import load_mesh_or_standin

from .model import Gaussians
from .sh import C1, SH_DIM, rgb_to_sh_dc


def surface_gaussians(num: int = 20000, seed: int = 0, force_synthetic: bool = False,
                      sheen: float = 0.15, mesh=None) -> Gaussians:
    """``num`` Gaussians on the cow's surface (module docstring)."""
    if mesh is None:
        mesh = load_mesh_or_standin("a1/cow.obj", force_synthetic=force_synthetic)
    gen = torch.Generator().manual_seed(seed)
    verts, faces = mesh.verts_packed(), mesh.faces_packed()
    with torch.no_grad():
        areas = mesh.faces_areas_packed()
        face = torch.multinomial(areas, num, replacement=True, generator=gen)  # (P,)
        u, v = torch.rand(num, generator=gen), torch.rand(num, generator=gen)
        su = u.sqrt()
        bary = torch.stack([1 - su, su * (1 - v), su * v], -1)  # (P, 3)
        tri = verts[faces[face]]  # (P, 3, 3)
        points = (bary[..., None] * tri).sum(1)
        normals = torch.nn.functional.normalize(mesh.faces_normals_packed()[face], dim=-1)
        tex = mesh.textures
        if tex is not None:
            colours = tex.sample(mesh, face, bary).clamp(0, 1)
        else:
            colours = torch.full((num, 3), 0.7)
    spacing = math.sqrt(float(areas.sum()) / num)
    flip = torch.tensor([1.0, -1.0, -1.0])  # 180 degrees about x: the 3DGS (y down) frame
    points, normals = points * flip, normals * flip
    sh = torch.zeros(num, SH_DIM)
    sh[:, :3] = rgb_to_sh_dc(colours)
    # degree-1 basis (-C1 y, C1 z, -C1 x) at d = view direction; add -sheen * (n . d)
    k = sheen / C1
    sh[:, 3:6] = (k * normals[:, 1])[:, None]
    sh[:, 6:9] = (-k * normals[:, 2])[:, None]
    sh[:, 9:12] = (k * normals[:, 0])[:, None]
    log_scales = torch.full((num, 1), math.log(0.6 * spacing))
    quats = torch.zeros(num, 4)
    quats[:, 0] = 1
    return Gaussians(points, log_scales, quats, torch.full((num,), 4.0), colours, sh, sh_degree=1)


def standin_gaussians(num: int = 20000, seed: int = 0, force_synthetic: bool = False,
                      device: Optional[torch.device] = None) -> Gaussians:
    g = surface_gaussians(num, seed, force_synthetic)
    return g.to(device) if device is not None else g
