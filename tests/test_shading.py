"""Phong, Gouraud and flat shading, texture sampling, compositing and gradients of the renderers."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from l3d.cameras import FoVPerspectiveCameras, look_at_view_transform
from l3d.raster import PointFragments, rasterize_meshes
from l3d.shading import Materials, PointLights, alpha_composite, phong_shading, render_mesh, render_points
from l3d.structures import Meshes, Pointclouds, TexturesUV, TexturesVertex

pytestmark = pytest.mark.usefixtures("one_thread")


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


# ----------------------------------------------------------------------------------------------
# Phong, Gouraud and flat shading on a sphere
# ----------------------------------------------------------------------------------------------
def coloured_sphere(level, colours=None):
    from l3d.ops import ico_sphere

    s = ico_sphere(level)
    v, f = s.verts_packed(), s.faces_packed()
    colours = torch.full_like(v, 0.6) if colours is None else colours
    return Meshes([v], [f], TexturesVertex([colours]))


def hand_fragments(p2f, bary):
    """Fragments of one image of 1 x Q pixels showing the given faces at the given barycentrics."""
    from l3d.raster import Fragments

    q = len(p2f)
    return Fragments(p2f.view(1, 1, q), torch.ones(1, 1, q), bary.view(1, 1, q, 3))


def shade(mesh, frags, cam, lights, materials, shader):
    from l3d.shading import shade_fragments

    return shade_fragments(mesh, frags, cam, lights, materials, (0.0, 0.0, 0.0), shader)[0, 0, :, :3]


def test_gouraud_agrees_with_phong_at_vertices_and_misses_a_sharp_highlight_inside_a_face():
    gen = torch.Generator().manual_seed(0)
    mesh = coloured_sphere(2, torch.rand(162, 3, generator=gen) * 0.5 + 0.25)
    f = mesh.faces_packed()
    n_faces = len(f)
    # camera and light on the axis through the centroid of face 7: its centre is the highlight
    d = F.normalize(mesh.verts_packed()[f[7]].mean(0), dim=0)
    cam = FoVPerspectiveCameras(R=torch.eye(3)[None], T=(-3 * d)[None])  # centre = -R T = 3 d
    assert torch.allclose(cam.get_camera_center()[0], 3 * d, atol=1e-6)
    lights = PointLights(location=(3 * d)[None])
    mats = Materials(shininess=400.0)
    # at each corner (one-hot barycentrics) both shaders light the vertex with its vertex normal
    for k in range(3):
        bary = F.one_hot(torch.full((n_faces,), k), 3).float()
        frags = hand_fragments(torch.arange(n_faces), bary)
        torch.testing.assert_close(shade(mesh, frags, cam, lights, mats, "gouraud"),
                                   shade(mesh, frags, cam, lights, mats, "phong"), atol=1e-6, rtol=0)
    # at face 7's centroid, Phong shows the highlight (specular ~ 0.2 on top), Gouraud cannot:
    # its corners are ~0.15 rad off the mirror direction, where 0.2 cos(0.3)^400 < 1e-7
    frags = hand_fragments(torch.tensor([7]), torch.full((1, 3), 1 / 3))
    phong, gouraud = shade(mesh, frags, cam, lights, mats, "phong"), shade(mesh, frags, cam, lights, mats, "gouraud")
    assert torch.all(phong - gouraud > 0.15), (phong, gouraud)
    # Gouraud is PyTorch3D's: light every vertex, then interpolate the lit colours
    v, nrm, cols = mesh.verts_packed(), mesh.verts_normals_packed(), mesh.textures.verts_features_packed()
    lit = phong_shading(v, nrm, cols, (3 * d).expand_as(v), lights, mats)  # (V, 3) every vertex lit once
    p2f = torch.randint(0, n_faces, (300,), generator=gen)
    bary = torch.distributions.Dirichlet(torch.ones(3)).sample((300,))
    want = (bary[..., None] * lit[f[p2f]]).sum(1)
    torch.testing.assert_close(shade(mesh, hand_fragments(p2f, bary), cam, lights, mats, "gouraud"), want,
                               atol=1e-6, rtol=0)


def test_rendered_gouraud_stays_between_its_corner_colours_phong_does_not():
    mesh = coloured_sphere(2)
    cam = front_camera(3.0, fov=40.0)
    lights = PointLights(location=((0.7, 0.4, -3.0),))  # the highlight falls inside a face
    mats = Materials(shininess=200.0)
    frags = rasterize_meshes(mesh, cam, 96)
    hit = frags.mask[0]
    p2f = frags.pix_to_face[0][hit]
    v, nrm = mesh.verts_packed(), mesh.verts_normals_packed()
    lit = phong_shading(v, nrm, mesh.textures.verts_features_packed(), cam.get_camera_center().expand_as(v), lights, mats)
    corners = lit[mesh.faces_packed()[p2f]]  # (Q, 3 corners, 3)
    lo, hi = corners.min(1).values, corners.max(1).values
    imgs = {s: render_mesh(mesh, cam, 96, lights=lights, materials=mats, shader=s)[0, ..., :3][hit]
            for s in ("gouraud", "phong")}
    assert torch.all(imgs["gouraud"] >= lo - 1e-6) and torch.all(imgs["gouraud"] <= hi + 1e-6)
    above = (imgs["phong"] > hi + 0.02).any(-1)  # Phong's highlight peaks inside faces
    assert above.sum() > 10
    assert (imgs["phong"] - imgs["gouraud"]).abs().max() > 0.1


def test_flat_is_lit_once_per_face():
    mesh = coloured_sphere(2)
    cam = front_camera(3.0, fov=40.0)
    lights = PointLights(location=((0.5, 0.5, -2.2),))  # close: l and v change across every face
    frags = rasterize_meshes(mesh, cam, 128)
    hit = frags.mask[0]
    p2f = frags.pix_to_face[0][hit]
    n_faces = len(mesh.faces_packed())
    pix_per_face = torch.bincount(p2f, minlength=n_faces)
    assert (pix_per_face >= 20).sum() > 80

    def spread(img):  # (F, 3) max - min over the pixels of each face
        hi = torch.full((n_faces, 3), -1.0).scatter_reduce(0, p2f[:, None].expand(-1, 3), img, "amax")
        lo = torch.full((n_faces, 3), 2.0).scatter_reduce(0, p2f[:, None].expand(-1, 3), img, "amin")
        return (hi - lo)[pix_per_face >= 2]

    flat = render_mesh(mesh, cam, 128, lights=lights, shader="flat")[0, ..., :3][hit]
    phong = render_mesh(mesh, cam, 128, lights=lights, shader="phong")[0, ..., :3][hit]
    assert spread(flat).max() < 1e-6
    assert spread(phong).max() > 1e-2  # the same faces vary under per-pixel lighting


def test_each_shader_matches_the_analytic_lambertian_value():
    """Diffuse only (no ambient, no specular), albedo 0.6, a point light: at the pixel whose
    analytic n.l is nearest 0.5, Phong and Gouraud match the sphere's Lambertian value
    ``0.6 * max(0, n.l)`` (n the true sphere normal at the surface point) and flat matches the
    facet's (face normal, light direction from the face centroid)."""
    mesh = coloured_sphere(4)  # 5120 faces, edges ~0.07 rad
    cam = front_camera(3.0, fov=40.0)
    light = torch.tensor([2.0, 2.0, -3.0])
    lights = PointLights(location=light[None], ambient_color=(0.0, 0.0, 0.0), diffuse_color=(1.0, 1.0, 1.0),
                         specular_color=(0.0, 0.0, 0.0))
    frags = rasterize_meshes(mesh, cam, 128)
    hit = frags.mask[0].reshape(-1)
    p2f = frags.pix_to_face[0].reshape(-1)
    bary = frags.bary_coords[0].reshape(-1, 3)
    pts = (bary[:, :, None] * mesh.verts_packed()[mesh.faces_packed()[p2f.clamp(min=0)]]).sum(1)  # (HW, 3)
    cos = (F.normalize(pts, dim=-1) * F.normalize(light - pts, dim=-1)).sum(-1)
    pix = int(torch.argmin(torch.where(hit, (cos - 0.5).abs(), torch.tensor(9.0))))
    assert abs(float(cos[pix]) - 0.5) < 0.01
    smooth = 0.6 * float(cos[pix])
    face = int(p2f[pix])
    centroid = mesh.verts_packed()[mesh.faces_packed()[face]].mean(0)
    facet = 0.6 * float((mesh.faces_normals_packed()[face] * F.normalize(light - centroid, dim=0)).sum())
    from l3d.shading import shade_fragments

    got = {s: shade_fragments(mesh, frags, cam, lights, shader=s)[0, ..., :3].reshape(-1, 3)[pix]
           for s in ("phong", "gouraud", "flat")}
    # normal interpolation on a sphere errs by O(edge^2) ~ 1e-3 rad; Gouraud's interpolated cos likewise
    assert torch.allclose(got["phong"], torch.full((3,), smooth), atol=2e-3), (got["phong"], smooth)
    assert torch.allclose(got["gouraud"], torch.full((3,), smooth), atol=4e-3), (got["gouraud"], smooth)
    assert torch.allclose(got["flat"], torch.full((3,), facet), atol=1e-5), (got["flat"], facet)
    # the facet value differs from the smooth one by O(edge) (a face normal is off by up to ~0.04 rad)
    assert abs(facet - smooth) < 0.03


@pytest.mark.parametrize("shader", ["gouraud", "flat"])
def test_batched_cameras_and_lights_match_one_image_at_a_time(shader):
    mesh = coloured_sphere(2)
    R, T = look_at_view_transform(3.0, torch.tensor([0.0, 30.0, -20.0]), torch.tensor([0.0, 60.0, 200.0]))
    cams = FoVPerspectiveCameras(fov=40.0, R=R, T=T)
    locs = torch.tensor([[0.0, 0.0, -3.0], [2.0, 1.0, 1.0], [-1.0, 2.0, -2.0]])
    mats = Materials(shininess=30.0)
    batch = render_mesh(mesh, cams, 32, lights=PointLights(location=locs), materials=mats, shader=shader)
    for i in range(3):
        one = render_mesh(mesh, cams[i], 32, lights=PointLights(location=locs[i:i + 1]), materials=mats, shader=shader)
        torch.testing.assert_close(batch[i:i + 1], one, atol=1e-6, rtol=0)
    assert (batch[0] - batch[1]).abs().max() > 0.1


def test_gouraud_with_a_uv_texture_and_shader_names():
    """A constant UV texture shades exactly as the same constant vertex colours; unknown names fail."""
    mesh = coloured_sphere(1)
    v, f = mesh.verts_packed(), mesh.faces_packed()
    uv_mesh = Meshes([v], [f], TexturesUV(torch.full((1, 4, 4, 3), 0.6), [f], [torch.rand(len(v), 2)]))
    cam = front_camera(3.0, fov=40.0)
    a = render_mesh(mesh, cam, 48, shader="gouraud")
    b = render_mesh(uv_mesh, cam, 48, shader="gouraud")
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="unknown shader 'toon'; expected one of phong, gouraud, flat, unlit"):
        render_mesh(mesh, cam, 8, shader="toon")


def test_shading_uses_the_rasterisers_hit_list_or_finds_it_itself():
    """Fragments from the rasteriser carry their covered pixels; hand-made fragments (without
    the list) shade the same, and the list is the covered pixels in order."""
    from dataclasses import replace

    from l3d.shading import shade_fragments

    gen = torch.Generator().manual_seed(3)
    verts = torch.rand(30, 3, generator=gen) - 0.5
    faces = torch.randint(0, 30, (20, 3), generator=gen)
    mesh = Meshes([verts], [faces], TexturesVertex([torch.rand(30, 3, generator=gen)]))
    R, T = look_at_view_transform(2.0, 10.0, 30.0)
    cams = FoVPerspectiveCameras(R=R.expand(2, 3, 3), T=T.expand(2, 3))
    frags = rasterize_meshes(mesh, cams, (24, 20))
    covered = torch.nonzero(frags.pix_to_face.reshape(-1) >= 0).squeeze(1)
    assert 0 < len(covered) < frags.pix_to_face.numel()
    assert torch.equal(frags.hits(), covered)
    plain = replace(frags, hit_pixels=None)
    assert torch.equal(plain.hits(), covered)
    a = shade_fragments(mesh, frags, cams, background=(0.2, 0.3, 0.4))
    b = shade_fragments(mesh, plain, cams, background=(0.2, 0.3, 0.4))
    assert torch.equal(a, b)
    assert torch.equal(a[..., 3] > 0, frags.mask) and torch.all(a[~frags.mask][:, :3] == torch.tensor([0.2, 0.3, 0.4]))
