"""l3d.rays and l3d.fields: pixel convention, rays, sampling, volume rendering, embeddings."""

import math

import pytest
import torch

from l3d.cameras import PerspectiveCameras, look_at_view_transform, ndc_pixel_centers
from l3d.fields import HarmonicEmbedding, MLPWithInputSkips, linear_flops
from l3d.rays import (
    RayBundle, chunked, composite, image_rays, importance_lengths, ndc_grid, random_pixels,
    ray_sphere_bounds, rays_from_ndc, render_volume, sample_deltas, sample_pdf, stratified_lengths,
    volume_weights,
)


def test_ndc_grid_convention():
    g = ndc_grid((4, 6))  # H = 4, W = 6
    assert g.shape == (24, 2)
    # row-major over (row, column): pixel (j=1, i=2) is entry 1 * 6 + 2
    assert g[8].tolist() == pytest.approx([-((2 + 0.5) / 6 * 2 - 1), -((1 + 0.5) / 4 * 2 - 1)])
    assert g[0].tolist() == pytest.approx([1 - 1 / 6, 1 - 1 / 4])  # top-left is +x, +y
    # square images agree with the core's pixel centres
    assert torch.allclose(ndc_grid(5), ndc_pixel_centers(5).reshape(-1, 2), atol=1e-7)
    xy, idx = random_pixels((4, 6), 10, torch.Generator().manual_seed(0))
    assert len(set(idx.tolist())) == 10 and torch.equal(xy, g[idx])


def test_rays_identity_camera():
    R, T = look_at_view_transform(eye=((0.0, 0.0, -3.0),))
    cam = PerspectiveCameras(focal_length=2.0, R=R, T=T)
    b = rays_from_ndc(cam, torch.tensor([[0.0, 0.0], [1.0, 0.5]]))
    assert b.shape == (1, 2)
    assert torch.allclose(b.origins, torch.tensor([0.0, 0.0, -3.0]).expand(1, 2, 3))
    assert torch.allclose(b.directions[0, 0], torch.tensor([0.0, 0.0, 1.0]))
    # NDC (1, 0.5) at depth 1 is view (0.5, 0.25, 1): +X view is +X world for R = I
    assert torch.allclose(b.directions[0, 1], torch.nn.functional.normalize(torch.tensor([0.5, 0.25, 1.0]), dim=0), atol=1e-6)
    # image rays: every ray passes through its pixel when projected back
    b = image_rays(cam, (3, 5))
    p = b.origins + 2.5 * b.directions
    assert torch.allclose(cam.transform_points_ndc(p[0])[0, :, :2], ndc_grid((3, 5)), atol=1e-5)
    assert torch.allclose(b.directions.norm(dim=-1), torch.ones(1, 15))


def test_bundle_points_and_indexing():
    o = torch.zeros(4, 3)
    d = torch.tensor([[0.0, 0.0, 1.0]]).expand(4, 3)
    b = RayBundle(o, d).with_lengths(stratified_lengths((4,), 5, 1.0, 2.0))
    assert b.points.shape == (4, 5, 3) and b.points[0, -1, 2] == 2.0
    assert b[1:3].lengths.shape == (2, 5) and len(b[1:3]) == 2
    with pytest.raises(ValueError, match="lengths"):
        RayBundle(o, d, torch.zeros(3, 5))


def test_stratified_lengths():
    t = stratified_lengths((2,), 64, 0.0, 5.0)
    assert torch.allclose(t[0], torch.linspace(0, 5, 64))
    g = torch.Generator().manual_seed(0)
    tp = stratified_lengths((1000,), 8, 2.0, 6.0, perturb=True, generator=g)
    assert (tp >= 2).all() and (tp <= 6).all() and (tp.diff(dim=-1) >= 0).all()
    # jittered samples average to the bin centres
    edges = torch.linspace(2, 6, 8)
    mids = torch.cat([edges[:1], 0.5 * (edges[1:] + edges[:-1]), edges[-1:]])
    assert torch.allclose(tp.mean(0), 0.5 * (mids[1:] + mids[:-1]), atol=0.02)
    near = torch.tensor([1.0, 2.0])
    t = stratified_lengths((2,), 3, near, near + 1)
    assert torch.allclose(t, torch.tensor([[1.0, 1.5, 2.0], [2.0, 2.5, 3.0]]))


def _weights_loop(density, lengths):
    """Slow reference of the volume rendering weights, one ray and sample at a time."""
    out = torch.zeros_like(density)
    for r in range(density.shape[0]):
        trans = 1.0
        for i in range(density.shape[1]):
            delta = (lengths[r, i + 1] - lengths[r, i]).item() if i + 1 < density.shape[1] else 1e10
            a = 1 - math.exp(-density[r, i].item() * delta)
            out[r, i] = trans * a
            trans *= math.exp(-density[r, i].item() * delta)
    return out


def test_volume_weights_against_loop():
    g = torch.Generator().manual_seed(1)
    lengths = torch.sort(torch.rand(6, 9, generator=g, dtype=torch.float64) * 4 + 1, -1).values
    density = torch.rand(6, 9, generator=g, dtype=torch.float64) * 3
    density[0] = 0
    w = volume_weights(density, sample_deltas(lengths))
    assert torch.allclose(w, _weights_loop(density, lengths), atol=1e-12)
    # constant density over [a, b] (last sample transparent): opacity 1 - exp(-sigma (b - a))
    t = torch.linspace(1, 3, 2001, dtype=torch.float64)[None]
    sigma = torch.full_like(t, 0.7)
    sigma[..., -1] = 0
    res = render_volume(sigma, torch.ones(1, 2001, 3, dtype=torch.float64), t)
    assert res.opacity.item() == pytest.approx(1 - math.exp(-0.7 * 2), abs=1e-9)
    # expected depth of a homogeneous slab: int t sigma e^{-sigma (t - a)} dt
    a, b, s = 1.0, 3.0, 0.7
    ref = (a + 1 / s) - (b + 1 / s) * math.exp(-s * (b - a))
    assert res.depth.item() == pytest.approx(ref, abs=2e-3)
    # an opaque sample (infinite density) stops the ray there
    d = torch.tensor([[0.0, float("inf"), 5.0]])
    w = volume_weights(d, sample_deltas(torch.tensor([[1.0, 2.0, 3.0]])))
    assert w.tolist() == [[0.0, 1.0, 0.0]]
    # white background fills the transparent part
    c = composite(torch.tensor([[0.25, 0.25]]), torch.zeros(1, 2, 3), background=1.0)
    assert torch.allclose(c, torch.full((1, 3), 0.5))


def test_sample_pdf_known_density():
    """Fine samples follow the coarse weights: the inverse CDF of a known piecewise-constant PDF."""
    bins = torch.linspace(0.0, 4.0, 5)[None]  # 4 bins of width 1
    weights = torch.tensor([[0.0, 3.0, 1.0, 0.0]])
    # deterministic quantiles u = linspace(0, 1, N): analytic inverse CDF
    u = torch.linspace(0, 1, 9)
    s = sample_pdf(bins, weights, 9, deterministic=True, eps=0.0)[0]
    ref = torch.where(u <= 0.75, 1 + u / 0.75, 2 + (u - 0.75) / 0.25)
    assert torch.allclose(s, ref, atol=1e-5)
    # random samples: 75 % in bin 1, 25 % in bin 2, none in the empty bins
    g = torch.Generator().manual_seed(0)
    s = sample_pdf(bins.expand(200, 5), weights.expand(200, 4), 100, generator=g, eps=0.0)
    frac1 = ((s >= 1) & (s < 2)).float().mean().item()
    frac2 = ((s >= 2) & (s <= 3)).float().mean().item()
    assert frac1 == pytest.approx(0.75, abs=0.01) and frac2 == pytest.approx(0.25, abs=0.01)
    assert frac1 + frac2 == pytest.approx(1.0, abs=1e-6)


def test_importance_lengths_concentrate_on_surface():
    """A coarse pass over a thin slab at t in [3.0, 3.2]: the fine samples land in the slab."""
    t = stratified_lengths((16,), 64, 2.0, 6.0)
    sigma = ((t > 3.0) & (t < 3.2)).double().float() * 50.0
    w = volume_weights(sigma, sample_deltas(t))
    fine = importance_lengths(t, w, 64, generator=torch.Generator().manual_seed(0), include_coarse=False)
    inside = ((fine > 2.95) & (fine < 3.25)).float().mean().item()
    assert inside > 0.95
    both = importance_lengths(t, w, 32, deterministic=True)
    assert both.shape == (16, 96) and (both.diff(dim=-1) >= 0).all()


def test_ray_sphere_bounds():
    o = torch.tensor([[0.0, 0.0, -4.0], [0.0, 3.0, -4.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    near, far, hit = ray_sphere_bounds(o, d, 1.5)
    assert near[0].item() == pytest.approx(2.5) and far[0].item() == pytest.approx(5.5)
    assert hit.tolist() == [True, False] and near[1] == far[1]


def test_chunked():
    x = torch.arange(10.0)
    out = chunked(lambda a: {"y": a * 2, "n": None}, 10, 3, x)
    assert torch.equal(out["y"], x * 2) and out["n"] is None


def test_harmonic_embedding_layout():
    e = HarmonicEmbedding(4)
    x = torch.tensor([[0.3, -1.2, 2.0]])
    y = e(x)
    assert y.shape == (1, 6 * 4 + 3) and e.output_dim(3) == 27
    f = torch.tensor([1.0, 2.0, 4.0, 8.0])
    emb = (x[0][:, None] * f).reshape(-1)  # coordinate-major
    assert torch.allclose(y[0], torch.cat([emb.sin(), emb.cos(), x[0]]))


def test_mlp_with_skips():
    m = MLPWithInputSkips(6, 39, 128, 39, [3])
    assert m.layers[3].in_features == 128 + 39 and m.layers[4].in_features == 128
    x = torch.randn(5, 39)
    y = m(x, x)
    assert y.shape == (5, 128) and (y >= 0).all()
    # the skip really feeds z in: changing z changes the output
    assert not torch.allclose(m(x, x), m(x, x + 1))
    n = 1000
    fwd = linear_flops(m, n, backward=False)
    assert fwd == 2 * n * (39 * 128 + 4 * 128 * 128 + (128 + 39) * 128)
    assert linear_flops(m, n, no_input_grad=[m.layers[0]]) == 3 * fwd - 2 * n * 39 * 128
