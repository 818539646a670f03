"""The DreamFusion NeRF: shapes, depth bounds, normals, shading and the regularisers."""

import math

import pytest
import torch
import torch.nn.functional as F

from a4_gaussians_diffusion.diffusion.nerf import (EMA, Background, DreamNeRF, NeRFConfig, entropy_loss,
                                                   orientation_loss, render_nerf, shade)
from a4_gaussians_diffusion.diffusion.views import CameraSampler, orbit_cameras


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def blob_only(cfg=None):
    """A field whose learned part is zero: log-density = blob(x) + 0, albedo 0.5."""
    torch.manual_seed(0)
    m = DreamNeRF(cfg or NeRFConfig(n_samples=24, n_importance=8, hidden=16))
    with torch.no_grad():
        m.head.weight.zero_()
        m.head.bias.zero_()
    return m


def test_render_shapes_and_depth_within_near_far():
    torch.manual_seed(1)
    m = DreamNeRF(NeRFConfig(n_samples=16, n_importance=8, hidden=16))
    cams = orbit_cameras(3)
    with torch.no_grad():
        r = render_nerf(m, cams.cameras, (12, 10), "albedo", background=Background())
    assert r.image.shape == (3, 12, 10, 3) and r.depth.shape == r.opacity.shape == r.near.shape == (3, 12, 10)
    assert float(r.image.min()) >= 0 and float(r.image.max()) <= 1
    assert float(r.opacity.min()) >= 0 and float(r.opacity.max()) <= 1 + 1e-5
    # depth is sum_i w_i t_i with near <= t_i <= far and sum_i w_i = opacity
    assert bool((r.depth >= r.near * r.opacity - 1e-4).all()) and bool((r.depth <= r.far * r.opacity + 1e-4).all())
    # rays through the centre pass through the origin: they enter the unit ball at 3.2 - 1, leave at 3.2 + 1
    centre = r.near[:, 5:7, 4:6]
    assert float(centre.min()) == pytest.approx(2.2, abs=0.02) and float(r.far[:, 5:7, 4:6].max()) == pytest.approx(4.2, abs=0.02)
    hit = r.opacity > 0.99
    d = r.depth[hit] / r.opacity[hit]
    assert hit.any() and float(d.min()) >= 2.2 - 1e-3 and float(d.max()) <= 4.2 + 1e-3


def solid_blob(n_samples=64, n_importance=32):
    """The blob prior alone, with the learned log-density shifted to -5: an opaque ball in clear air."""
    m = blob_only(NeRFConfig(n_samples=n_samples, n_importance=n_importance, hidden=16, blob_density=10.0,
                             blob_radius=0.3))
    with torch.no_grad():
        m.head.bias[0] = -5.0
    return m


def test_render_matches_dense_quadrature_of_the_volume_rendering_equation():
    m = solid_blob()
    cams = orbit_cameras(1)  # camera at (0, 0, 3.2) looking down -Z
    with torch.no_grad():
        r = render_nerf(m, cams.cameras, 21, "albedo", background_color=torch.zeros(3))
        # reference: the central ray, 200k samples between where it enters and leaves the unit ball
        t = torch.linspace(2.2, 4.2, 200001, dtype=torch.float64)
        pts = torch.stack([torch.zeros_like(t), torch.zeros_like(t), 3.2 - t], -1).float()
        sigma = m.density(pts).double()
        tau = sigma * (t[1] - t[0])
        trans = torch.exp(-(torch.cumsum(tau, 0) - tau))
        w = trans * (1 - torch.exp(-tau))
        depth_ref, opacity_ref = float((w * t).sum()), float(w.sum())
    assert opacity_ref > 0.999 and float(r.opacity[0, 10, 10]) == pytest.approx(opacity_ref, abs=1e-3)
    assert float(r.depth[0, 10, 10]) == pytest.approx(depth_ref, abs=0.02)
    assert 3.2 - 0.5 < depth_ref < 3.2 - 0.2  # the surface is inside the blob
    assert float(r.opacity[0, 0, 0]) < 0.05  # the corner ray misses the ball's dense part
    torch.testing.assert_close(r.image[0, 10, 10], torch.full((3,), 0.5), atol=0.01, rtol=0)  # sigmoid(0)


def test_normals_point_out_of_the_blob():
    m = blob_only()
    x = F.normalize(torch.randn(50, 3), dim=-1) * 0.3
    _, _, n = m(x, with_normals=True)
    torch.testing.assert_close(n, F.normalize(x, dim=-1), atol=1e-5, rtol=1e-5)
    # outside the bound the density is zero
    assert float(m.density(torch.tensor([[0.0, 0.0, 1.01]])).detach()) == 0.0


def test_orientation_loss_zero_facing_camera_positive_facing_away():
    torch.manual_seed(2)
    d = F.normalize(torch.randn(7, 3), dim=-1)  # (R, 3) ray directions
    w = torch.rand(7, 5)
    facing = -d[:, None, :].expand(7, 5, 3)
    assert float(orientation_loss(w, facing, d)) == 0.0
    # tangent normals (n . d = 0) cost nothing either
    tangent = F.normalize(torch.cross(d, torch.randn(7, 3), dim=-1), dim=-1)[:, None, :].expand(7, 5, 3)
    assert float(orientation_loss(w, tangent, d)) == pytest.approx(0.0, abs=1e-10)
    away = d[:, None, :].expand(7, 5, 3)
    torch.testing.assert_close(orientation_loss(w, away, d), w.sum(-1).mean())  # (n . d)^2 = 1
    # wired through the renderer: the visible (front) side of a solid ball has outward normals that
    # face the camera (almost no penalty); the same field with flipped normals is penalised
    class Flipped(DreamNeRF):
        def forward(self, x, with_normals=False, create_graph=None):
            sigma, albedo, n = super().forward(x, with_normals, create_graph)
            return sigma, albedo, None if n is None else -n

    m = solid_blob(24, 8)
    flipped = Flipped(m.cfg)
    flipped.load_state_dict(m.state_dict())
    cams = orbit_cameras(2)
    black = torch.zeros(3)
    r = render_nerf(m, cams.cameras, 8, "normal", background_color=black, need_orient=True)
    r_flip = render_nerf(flipped, cams.cameras, 8, "normal", background_color=black, need_orient=True)
    o, o_flip = float(r.orient.detach()), float(r_flip.orient.detach())
    assert o_flip > 0.05 and o < 0.15 * o_flip
    # same weights, colours (1 - n) / 2 instead of (1 + n) / 2: image' = opacity - image
    torch.testing.assert_close(r_flip.image, r.opacity[..., None] - r.image, atol=1e-5, rtol=1e-5)


def test_orientation_loss_reaches_the_geometry():
    torch.manual_seed(3)
    m = DreamNeRF(NeRFConfig(n_samples=8, n_importance=0, hidden=16))
    cams = CameraSampler().sample(1, torch.Generator().manual_seed(0))
    r = render_nerf(m, cams.cameras, 6, "albedo", need_orient=True, perturb=True)
    r.orient.backward()
    assert m.head.weight.grad is not None and float(m.head.weight.grad[0].abs().sum()) > 0
    assert float(m.head.weight.grad[1:].abs().sum()) == 0  # albedo does not affect orientation


def test_entropy_loss_values():
    assert float(entropy_loss(torch.full((4,), 0.5))) == pytest.approx(1.0)
    assert float(entropy_loss(torch.tensor([0.0, 1.0]))) < 3e-4
    o = torch.tensor([0.2, 0.9])
    want = float(sum(-(p * math.log2(p) + (1 - p) * math.log2(1 - p)) for p in (0.2, 0.9)) / 2)
    assert float(entropy_loss(o)) == pytest.approx(want, rel=1e-5)


def test_shading_formulas():
    albedo = torch.tensor([[0.2, 0.4, 0.8]])
    n = torch.tensor([[0.0, 0.0, 1.0]])
    l = F.normalize(torch.tensor([[0.0, 1.0, 1.0]]), dim=-1)
    lam = 0.3 + 0.7 * (1 / math.sqrt(2))
    torch.testing.assert_close(shade(albedo, n, "lambertian", l, 0.3), albedo * lam)
    torch.testing.assert_close(shade(albedo, n, "textureless", l, 0.3), torch.full((1, 3), lam))
    torch.testing.assert_close(shade(albedo, n, "normal"), torch.tensor([[0.5, 0.5, 1.0]]))
    assert shade(albedo, None, "albedo") is albedo
    torch.testing.assert_close(shade(albedo, -n, "lambertian", l, 0.3), albedo * 0.3)  # back-lit: ambient only
    with pytest.raises(ValueError):
        shade(albedo, None, "lambertian", l)


def test_ema():
    m = torch.nn.Linear(2, 2)
    ema = EMA(m, 0.5)
    w0 = m.weight.detach().clone()
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m)
    torch.testing.assert_close(ema.module().weight, w0 + 0.5)
    with pytest.raises(ValueError):
        EMA(m, 1.0)


def test_density_bias_clears_the_fog_an_untrained_field_starts_with():
    """With the learned log-density at 0 (an untrained MLP is near it), density exp(0) = 1 fills
    the unit ball: a ray that misses the blob is still mostly opaque. ``density_bias`` -4 makes the
    field start as the blob in clear air, and leaves the blob's centre opaque."""
    cams = orbit_cameras(1)
    opacity = {}
    for bias in (0.0, -4.0):
        m = blob_only(NeRFConfig(n_samples=64, n_importance=0, hidden=16, density_bias=bias))
        with torch.no_grad():
            opacity[bias] = render_nerf(m, cams.cameras, 21, "albedo", background_color=torch.zeros(3)).opacity[0]
    edge = opacity[0.0][10, 1], opacity[-4.0][10, 1]  # a ray 0.5 from the centre: outside the blob (radius 0.2)
    # without the bias: 1 - exp(-chord) with the chord through the unit ball of about 1.7
    assert float(edge[0]) > 0.75 and float(edge[1]) < 0.05
    assert float(opacity[-4.0][10, 10]) > 0.5  # the blob's centre: log-density 5 - 4 = 1 over its width
