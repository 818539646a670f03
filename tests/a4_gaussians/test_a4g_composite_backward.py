"""The tiled compositor's hand-written backward pass against autograd: the same chunks
differentiated by autograd (composite_tiled_autograd) and the dense reference (composite_dense),
forward values and gradients, on random screen-space Gaussians, including saturated pixels
(transmittance below 1e-4) and lists longer than one chunk."""

import pytest
import torch

from a4_gaussians_diffusion.gaussians.rasterize import (
    T_MIN, Projected, bin_gaussians, composite_dense, composite_tiled, composite_tiled_autograd, invert_cov2d,
    pair_coefficients)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

H, W = 29, 35


def random_layer(m=500, seed=0, dtype=torch.float64, opacity=0.99):
    """Leaf tensors (means2d, cov2d, opacity, features) of m screen-space Gaussians over an H x W
    image, dense enough that many pixels saturate."""
    gen = torch.Generator().manual_seed(seed)
    mu = torch.rand(m, 2, generator=gen, dtype=dtype) * torch.tensor([W + 6.0, H + 6.0], dtype=dtype) - 3
    a = torch.randn(m, 2, 2, generator=gen, dtype=dtype) * 1.5
    cov = a @ a.transpose(1, 2) + 0.3 * torch.eye(2, dtype=dtype)
    op = torch.rand(m, generator=gen, dtype=dtype) * opacity
    feat = torch.rand(m, 4, generator=gen, dtype=dtype)
    return [t.requires_grad_() for t in (mu, cov, op, feat)]


def composite_and_grads(fn, leaves, chunk, tile_size=4, **kw):
    mu, cov, op, feat = leaves
    m = mu.shape[0]
    proj = Projected(torch.arange(m), mu, cov, invert_cov2d(cov), torch.arange(m, dtype=mu.dtype), op, feat)
    if fn is composite_dense:
        f, mask = fn(proj, (H, W), chunk, 0.5)
    else:
        f, mask = fn(proj, (H, W), tile_size, chunk, 0.5, **kw)
    gen = torch.Generator().manual_seed(7)
    gf = torch.rand(f.shape, generator=gen, dtype=f.dtype) - 0.3
    gm = torch.rand(mask.shape, generator=gen, dtype=f.dtype) - 0.5
    grads = torch.autograd.grad((f * gf).sum() + (mask * gm).sum(), leaves)
    return f.detach(), mask.detach(), grads


@pytest.mark.parametrize("chunk", [1, 8, 64])
def test_backward_equals_autograd_in_float64(chunk):
    leaves = random_layer()
    ref = composite_and_grads(composite_tiled_autograd, leaves, chunk)
    new = composite_and_grads(composite_tiled, leaves, chunk)
    assert float((1 - ref[1]).min()) < T_MIN  # some pixels are saturated: the threshold is exercised
    torch.testing.assert_close(new[0], ref[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(new[1], ref[1], atol=1e-12, rtol=0)
    for name, gn, gr in zip(("means2d", "cov2d", "opacity", "features"), new[2], ref[2]):
        assert gr.abs().max() > 0, name
        torch.testing.assert_close(gn, gr, atol=1e-10 * float(gr.abs().max()), rtol=0, msg=name)


def test_float32_matches_the_dense_reference_forward_and_backward():
    # both in float32: against float64 the gradients differ wherever rounding moves a pixel's
    # transmittance across the 1e-4 cut (a discontinuity of the definition, not an error)
    leaves = random_layer(seed=3, dtype=torch.float32, opacity=0.9)
    dense = composite_and_grads(composite_dense, leaves, -1)
    new = composite_and_grads(composite_tiled, leaves, 16)
    torch.testing.assert_close(new[0], dense[0], atol=2e-5, rtol=0)
    torch.testing.assert_close(new[1], dense[1], atol=2e-5, rtol=0)
    for name, gn, gd in zip(("means2d", "cov2d", "opacity", "features"), new[2], dense[2]):
        torch.testing.assert_close(gn, gd, atol=1e-5 * float(gd.abs().max()), rtol=0, msg=name)


@pytest.mark.parametrize("tile_size", [1, 5, 16])
def test_other_tile_sizes_match_dense(tile_size):
    leaves = random_layer(seed=tile_size, dtype=torch.float32, opacity=0.8)
    dense = composite_and_grads(composite_dense, leaves, 64)
    new = composite_and_grads(composite_tiled, leaves, 32, tile_size=tile_size)
    torch.testing.assert_close(new[0], dense[0], atol=2e-5, rtol=0)
    for gn, gd in zip(new[2], dense[2]):
        torch.testing.assert_close(gn, gd, atol=5e-4 * float(gd.abs().max()), rtol=0)


def test_pair_coefficients_give_the_power_plus_log_opacity():
    mu, cov, op, feat = (t.detach() for t in random_layer(m=40, seed=9))
    proj = Projected(torch.arange(40), mu, cov, invert_cov2d(cov), torch.arange(40, dtype=mu.dtype), op, feat)
    bins = bin_gaussians(proj, (H, W), 4, 0.5)
    coef = pair_coefficients(proj, bins, 4)  # (pairs, 6), quadratic in coordinates centred on the tile
    tile = torch.repeat_interleave(torch.arange(len(bins.counts)), bins.counts)
    centre = torch.stack([(tile % bins.tiles_x) * 4 + 2.0, (tile // bins.tiles_x) * 4 + 2.0], -1).double()
    gen = torch.Generator().manual_seed(2)
    p = torch.rand(len(tile), 2, generator=gen, dtype=torch.float64) * 4 - 2  # a point in each pair's tile
    x, y = p.unbind(-1)
    poly = (coef * torch.stack([x * x, x * y, y * y, x, y, torch.ones_like(x)], -1)).sum(-1)
    d = p + centre - mu[bins.gaussians]
    a, b, c = invert_cov2d(cov)[bins.gaussians].unbind(-1)
    power = -0.5 * (a * d[:, 0] ** 2 + c * d[:, 1] ** 2) - b * d[:, 0] * d[:, 1]
    torch.testing.assert_close(poly, power + torch.log(op[bins.gaussians]), atol=1e-9, rtol=0)
