"""A procedural stand-in for the course's pre-trained 3DGS .ply: Gaussians on the cow's surface.

Points are sampled uniformly by area on the cow mesh (or the procedural stand-in mesh when the
cow is missing), coloured by its texture, with isotropic scales of about half the point spacing
and opacity sigmoid(4). The SH coefficients add a soft sheen to the texture colour (the DC
term): seen at ``mu = -n.d`` (n the surface normal, d the viewing direction; 1 head-on, 0 at
grazing angles) a surface shows ``texture + sheen * (P2(mu) - 3/8 mu)``, with ``P2(mu) =
(3 mu^2 - 1) / 2`` (degree 2) and the degree-1 term ``-3/8 mu``: brighter head-on (+5/8 sheen),
darker at grazing angles (-1/2 sheen), and zero on average over what a camera sees (surfaces
weighted by their projected area, ``mu d mu`` on [0, 1]). So ``--sh`` visibly differs from the
plain colours, view by view, while the mean colour of a view stays that of the texture. The Gaussians are stored in the 3DGS/COLMAP
world frame (y down, the mesh rotated 180 degrees about x), like the course's file, so the
course's turntable (up = (0, -1, 0)) shows them upright.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from l3d.checks import data_label
from l3d.data import data_root, load_mesh_or_standin

from .model import Gaussians
from .sh import C1, C2, SH_DIM, rgb_to_sh_dc


def surface_gaussians(num: int = 20000, seed: int = 0, force_synthetic: bool = False,
                      sheen: float = 0.25, mesh=None) -> Gaussians:
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
    nx, ny, nz = normals.unbind(-1)

    def put(k: int, values: torch.Tensor) -> None:  # coefficient k of every channel: sh[:, 3k:3k+3]
        sh[:, 3 * k:3 * k + 3] = values[:, None]

    # degree 1, basis (-C1 y, C1 z, -C1 x): coefficients k1 (ny, -nz, nx) give -C1 k1 (n . d),
    # which is the wanted -3/8 sheen mu = 3/8 sheen (n . d)
    k1 = -0.375 * sheen / C1
    put(1, k1 * ny)
    put(2, -k1 * nz)
    put(3, k1 * nx)
    # degree 2: sheen * P2(n . d) = sheen * (3 (n . d)^2 - 1) / 2 as a traceless quadratic form in d
    a, b, c = (3 * nx ** 2 - 1) / 2, (3 * ny ** 2 - 1) / 2, (3 * nz ** 2 - 1) / 2
    put(4, sheen * 3 * nx * ny / C2[0])  # xy
    put(5, sheen * 3 * ny * nz / C2[1])  # yz
    put(6, sheen * (c / 2) / C2[2])  # 2 z^2 - x^2 - y^2
    put(7, sheen * 3 * nx * nz / C2[3])  # xz
    put(8, sheen * ((a - b) / 2) / C2[4])  # x^2 - y^2
    log_scales = torch.full((num, 1), math.log(0.6 * spacing))
    quats = torch.zeros(num, 4)
    quats[:, 0] = 1
    return Gaussians(points, log_scales, quats, torch.full((num,), 4.0), colours, sh, sh_degree=2)


def standin_gaussians(num: int = 20000, seed: int = 0, force_synthetic: bool = False,
                      device: Optional[torch.device] = None) -> Gaussians:
    g = surface_gaussians(num, seed, force_synthetic)
    return g.to(device) if device is not None else g


def standin_data_label(force_synthetic: bool = False) -> str:
    """``"data"`` of a render of :func:`standin_gaussians` (which mesh the Gaussians sit on)."""
    if force_synthetic or not (data_root() / "a1/cow.obj").exists():
        return data_label(standin="Gaussians on the procedural cow surface (the course's a4/chair.ply is not here)")
    return data_label(standin="Gaussians on the surface of the course's cow a1/cow.obj "
                              "(the course's a4/chair.ply is not here)")

