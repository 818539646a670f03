"""Phong shading, texture sampling, compositing and gradients of the renderers."""

import math

import numpy as np
import pytest
import torch

from l3d.cameras import FoVPerspectiveCameras, look_at_view_transform
from l3d.raster import PointFragments, rasterize_meshes
from l3d.shading import Materials, PointLights, alpha_composite, phong_shading, render_mesh, render_points
from l3d.structures import Meshes, Pointclouds, TexturesUV, TexturesVertex


def quad(z=0.0, size=1.0):
    """A square in the plane Z = z (world), facing -z, two triangles, UVs covering [0, 1]^2."""
    v = torch.tensor([[-size, -size, z], [size, -size, z], [size, size, z], [-size, size, z]])
    f = torch.tensor([[0, 2, 1], [0, 3, 2]])  # (v1 - v0) x (v2 - v0) points to -z
    uv = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # +x is image-left
    return v, f, uv


def front_camera(dist=2.0, fov=60.0):
    """Camera at (0, 0, -dist) looking along +z (R = I)."""
    return FoVPerspectiveCameras(fov=fov, R=torch.eye(3)[None], T=torch.tensor([[0.0, 0.0, dist]]))


def test_phong_matches_formula():
    p = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.2, 0.1]])
    n = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.6, -0.8]])
    tex = torch.tensor([[0.7, 0.7, 1.0], [0.2, 0.5, 0.9]])
    eye = torch.tensor([[0.0, 0.0, -3.0]]).expand(2, 3)
    lights = PointLights(location=((1.0, 1.0, -2.0),))
    out = phong_shading(p, n, tex, eye, lights, Materials())
    for i in range(2):
        l_dir = np.array([1.0, 1.0, -2.0]) - p[i].numpy()
        l_dir /= np.linalg.norm(l_dir)
        v_dir = eye[i].numpy() - p[i].numpy()
        v_dir /= np.linalg.norm(v_dir)
        nn = n[i].numpy() / np.linalg.norm(n[i].numpy())
        cos = nn @ l_dir
        r = -l_dir + 2 * cos * nn
        spec = 0.2 * max(0.0, v_dir @ r) ** 64 if cos > 0 else 0.0
        expect = (0.5 + 0.3 * max(cos, 0.0)) * tex[i].numpy() + spec
        assert np.allclose(out[i].numpy(), expect, atol=1e-6)
    # light behind the surface: ambient only, no specular
    back = phong_shading(p[:1], n[:1], tex[:1], eye[:1], PointLights(location=((0.0, 0.0, 5.0),)), Materials())
    assert torch.allclose(back, 0.5 * tex[:1], atol=1e-6)


def test_render_mesh_flat_quad_colour_and_background():
    v, f, _ = quad(0.0, 0.5)
    mesh = Meshes([v], [f], TexturesVertex([torch.full((4, 3), 0.5)]))
    img = render_mesh(mesh, front_camera(), 16, lights=PointLights(location=((0.0, 0.0, -2.0),)),
                      background=(0.0, 1.0, 0.0))
    assert img.shape == (1, 16, 16, 4)
    # centre pixel: normal faces the light and the eye -> ambient + diffuse ~ 0.8 of 0.5, plus spec
    centre = img[0, 8, 8, :3]
    assert torch.all(centre > 0.39) and torch.all(centre < 0.65)
    corner = img[0, 0, 0]
    assert torch.allclose(corner, torch.tensor([0.0, 1.0, 0.0, 0.0]))


def test_uv_texture_sampling_orientation():
    """v is flipped (uv (0, 0) is the image's bottom-left) and u runs along the image's columns."""
    v, f, uv = quad(0.0, 1.0)
    tex = torch.zeros(1, 2, 2, 3)
    tex[0, 0, 0] = torch.tensor([1.0, 0.0, 0.0])  # top-left texel: red
    tex[0, 0, 1] = torch.tensor([0.0, 1.0, 0.0])  # top-right: green
    tex[0, 1, 0] = torch.tensor([0.0, 0.0, 1.0])  # bottom-left: blue
    tex[0, 1, 1] = torch.tensor([1.0, 1.0, 1.0])  # bottom-right: white
    mesh = Meshes([v], [f], TexturesUV(tex, [f], [uv]))
    img = render_mesh(mesh, front_camera(1.0, fov=120.0), 32, shader="unlit")[0, ..., :3]
    # vertex 3 (-1, 1) is at the image's top-right (view +x is left), uv (1, 1) = top-right texel
    assert torch.allclose(img[8, 24], torch.tensor([0.0, 1.0, 0.0]), atol=0.3)
    assert img[8, 24, 1] > 0.6 and img[24, 8, 2] > 0.6 and img[8, 8, 0] > 0.6 and img[24, 24].min() > 0.6


def test_gradients_reach_vertex_colours_and_uv_texture():
    v, f, uv = quad(0.0, 0.5)
    colours = torch.rand(4, 3, dtype=torch.float64, requires_grad=True)
    cam = front_camera().to(dtype=torch.float64)
    mesh = Meshes([v.double()], [f], TexturesVertex([colours]))
    img = render_mesh(mesh, cam, 12, lights=PointLights(location=((0.0, 0.0, -2.0),)))
    w = torch.rand_like(img[..., :3])
    (img[..., :3] * w).sum().backward()
    g = colours.grad.clone()
    assert g.abs().sum() > 0
    # the image is linear in the colours: the gradient equals a finite difference exactly
    eps = 1e-3
    for i, c in [(0, 0), (2, 1), (3, 2)]:
        bumped = colours.detach().clone()
        bumped[i, c] += eps
        img2 = render_mesh(Meshes([v.double()], [f], TexturesVertex([bumped])), cam, 12,
                           lights=PointLights(location=((0.0, 0.0, -2.0),)))
        fd = ((img2[..., :3] - img[..., :3].detach()) * w).sum() / eps
        assert float(fd) == pytest.approx(float(g[i, c]), rel=1e-6, abs=1e-9)
    # UV texture maps
    maps = torch.rand(1, 8, 8, 3, dtype=torch.float64, requires_grad=True)
    mesh = Meshes([v.double()], [f], TexturesUV(maps, [f], [uv.double()]))
    img = render_mesh(mesh, cam, 12, shader="unlit")
    img[..., :3].sum().backward()
    assert maps.grad.abs().sum() > 0
    # every visible pixel spreads weight 1 over its texels: the total gradient is the pixel count
    assert float(maps.grad.sum()) == pytest.approx(3 * float(img[..., 3].detach().sum()), rel=1e-9)


def test_gradients_reach_vertex_positions():
    v, f, _ = quad(0.0, 0.5)
    verts = v.double().clone().requires_grad_(True)
    mesh = Meshes([verts], [f], TexturesVertex([torch.ones(4, 3, dtype=torch.float64)]))
    cam = front_camera().to(dtype=torch.float64)
    frags = rasterize_meshes(mesh, cam, 10)
    (frags.zbuf.clamp(min=0)).sum().backward()  # depth at covered pixels depends on the corners
    assert verts.grad[:, 2].abs().sum() > 0


def test_alpha_composite_formula():
    idx = torch.tensor([[[[0, 1, -1]], [[-1, -1, -1]]]])  # (1, 2, 1, 3): one pixel with 2 points, one empty
    d = torch.tensor([[[[0.25, 0.5, -1.0]], [[-1.0, -1.0, -1.0]]]]) * 0.01**2
    frags = PointFragments(idx, torch.ones_like(d), d)
    feats = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    out = alpha_composite(frags, feats, 0.01, background=(0.2, 0.3, 0.4))
    w0, w1 = 0.75, 0.5
    assert torch.allclose(out[0, 0, 0, :3], torch.tensor([w0, (1 - w0) * w1, 0.0]))
    assert out[0, 0, 0, 3] == pytest.approx(1 - (1 - w0) * (1 - w1))
    assert torch.allclose(out[0, 1, 0], torch.tensor([0.2, 0.3, 0.4, 0.0]))


def test_render_points_is_differentiable_in_features_and_positions():
    gen = torch.Generator().manual_seed(0)
    pts = (torch.rand(200, 3, generator=gen) - 0.5).requires_grad_(True)
    feats = torch.rand(200, 3, generator=gen).requires_grad_(True)
    R, T = look_at_view_transform(2.0, 0.0, 0.0)
    img = render_points(Pointclouds([pts], [feats]), FoVPerspectiveCameras(R=R, T=T), 32, radius=0.05)
    img[..., :3].sum().backward()
    assert feats.grad.abs().sum() > 0 and pts.grad.abs().sum() > 0


def test_sphere_points_cover_disc():
    """A dense point sphere rendered with points covers the analytic disc."""
    n = 200
    th, ph = torch.meshgrid(torch.linspace(0, math.pi, n), torch.linspace(0, 2 * math.pi, 2 * n), indexing="ij")
    pts = torch.stack([th.sin() * ph.cos(), th.cos(), th.sin() * ph.sin()], -1).reshape(-1, 3)
    R, T = look_at_view_transform(3.0, 0.0, 0.0)
    img = render_points(Pointclouds([pts]), FoVPerspectiveCameras(R=R, T=T), 128, radius=0.02, background=(0, 0, 0))
    covered = (img[0, ..., 3] > 0).sum().item()
    # the silhouette disc grows by the splat radius (0.02 NDC = 1.28 px)
    r_pix = math.tan(math.asin(1 / 3)) / math.tan(math.radians(30)) * 64 + 0.02 * 64
    assert covered / (math.pi * r_pix**2) == pytest.approx(1.0, abs=0.02)
