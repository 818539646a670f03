"""Gaussian rasteriser: the course's unit-test fixtures, the W = R / R^T question, the dense
reference against a per-pixel loop, tiled against dense, batching invariance and gradients."""

import math

import pytest
import torch

from a4_gaussians_diffusion.gaussians.model import Gaussians
from a4_gaussians_diffusion.gaussians.rasterize import (
    RasterSettings, bin_gaussians, composite_dense, composite_tiled, covariance_2d, covariance_3d,
    gaussian_power, means_2d, project_gaussians, quaternion_to_matrix, rasterize_gaussians)
from l3d.cameras import PerspectiveCameras, look_at_view_transform


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ---------------------------------------------------------------------------------------------
# the course's fixtures (spec a4 Q1)
# ---------------------------------------------------------------------------------------------
QUATS = [[.3243, -.3977, .7983, -.3153], [.5657, .2395, -.5910, .5228], [.2598, -.7521, -.3487, .4951],
         [.3730, .7351, -.5261, .2089], [.4079, .4792, .0567, .7751]]
MEANS_24 = [[.4123, -.0350, 1.0627], [.1975, -.5187, -.0357], [.2168, -1.2460, .7319], [.4533, .5670, -.3811],
            [-1.1483, -2.0718, -.7977]]
SCALES_24 = [[.1642, 2.4228, -.0908], [.9635, 1.1696, .3278], [-.6131, 1.0911, -.9228], [-.1720, -.5747, -.6813],
             [.1222, 1.7187, -1.5246]]
COV2D_EXPECTED = [(2618.8611, 5941.3306, 14066.5830), (1762.7010, 1096.4006, 1337.9269), (2478.8181, 339.9595, 992.3395),
                  (1645.8475, -170.6580, 233.4286), (623.9609, -285.9298, 4030.9944)]
MEANS_3 = [[1.0226, 1.3136, -1.1826], [-.7536, -.5747, -.5632], [-.4628, -.9475, .4862], [-.2915, 3.0803, .1183],
           [-.9359, 1.7944, -.5683]]
PIXELS_3 = [(162.1082, 32.8420), (79.8977, 54.3685), (36.6533, 84.5473), (48.8203, -124.4747), (81.9282, -53.6132)]
POWER_4 = [[-3.9607, -4.2238, -4.4959], [-3.0004, -3.0066, -3.0140], [-7.3205, -7.3244, -7.3288],
           [-12.1272, -12.0402, -11.9539], [-7.3011, -7.1561, -7.0127]]


def fixture_camera(dtype=torch.float32):
    """look_at(dist 6, elev 45, azim 75), screen focal 320 px, principal point (64, 64), 128 x 128."""
    R, T = look_at_view_transform(6.0, 45.0, 75.0, dtype=dtype)
    return PerspectiveCameras(focal_length=320.0, principal_point=((64.0, 64.0),), R=R, T=T, in_ndc=False,
                              image_size=(128, 128), dtype=dtype)


def fixture_cov2d(view_rotation, dtype=torch.float32):
    # the fixture's scales are the activated standard deviations (passed in directly)
    cov3d = covariance_3d(torch.tensor(SCALES_24, dtype=dtype), torch.tensor(QUATS, dtype=dtype))
    return covariance_2d(torch.tensor(MEANS_24, dtype=dtype), cov3d, fixture_camera(dtype), 128, view_rotation)


def test_fixture_1_isotropic_covariance():
    scales = torch.tensor([1.0057, .5317, 1.2069, 2.0091, -1.0004])
    cov = covariance_3d(scales, torch.tensor(QUATS))  # quaternions are ignored for isotropic scales
    diag = torch.diagonal(cov, dim1=1, dim2=2)
    expected = torch.tensor([1.0114, .2827, 1.4566, 4.0365, 1.0008])
    torch.testing.assert_close(diag, expected[:, None].expand(5, 3), atol=1e-3, rtol=0)
    off = cov - torch.diag_embed(diag)
    assert off.abs().max() == 0


def test_fixture_2_cov2d_needs_the_course_rotation():
    got = fixture_cov2d("course")
    triple = torch.stack([got[:, 0, 0], got[:, 0, 1], got[:, 1, 1]], -1)
    torch.testing.assert_close(triple, torch.tensor(COV2D_EXPECTED), rtol=1e-4, atol=0)
    torch.testing.assert_close(got[:, 1, 0], got[:, 0, 1])
    # the physically correct rotation gives other numbers for these anisotropic Gaussians
    correct = fixture_cov2d("correct")
    assert (correct - got).abs().amax() > 100


def test_fixture_3_means_2d():
    cam = fixture_camera()
    got = means_2d(torch.tensor(MEANS_3), cam, 128)
    torch.testing.assert_close(got, torch.tensor(PIXELS_3), rtol=1e-4, atol=0)
    # the same as l3d's screen projection (pixel centres at i + 0.5)
    torch.testing.assert_close(got, cam.transform_points_screen(torch.tensor(MEANS_3), 128)[0, :, :2])


def test_fixture_4_power_at_integer_pixels():
    cam = fixture_camera()
    mu = means_2d(torch.tensor(MEANS_24), cam, 128)
    pixels = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])  # the course's integer coordinates
    power = gaussian_power(pixels, mu, fixture_cov2d("course"))
    torch.testing.assert_close(power, torch.tensor(POWER_4), rtol=1e-4, atol=0)
    # pixel centres (i + 0.5) are a different sample position
    centres = gaussian_power(pixels + 0.5, mu, fixture_cov2d("course"))
    assert (centres - torch.tensor(POWER_4)).abs().max() > 0.01


def test_correct_rotation_matches_monte_carlo_projection():
    """Project samples of anisotropic 3-D Gaussians through the camera: their 2-D covariance is
    J R^T Sigma R J^T (W = R^T), not the course's J R Sigma R^T J^T."""
    dt = torch.float64
    cam = fixture_camera(dt)
    gen = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.1, 0.2, -0.1], [-0.3, 0.1, 0.2], [0.2, -0.25, 0.0]], dtype=dt)
    scales = torch.tensor([[0.02, 0.005, 0.001], [0.001, 0.015, 0.006], [0.01, 0.002, 0.02]], dtype=dt)
    quats = torch.tensor(QUATS[:3], dtype=dt)
    cov3d = covariance_3d(scales, quats)
    n = 200_000
    for i in range(3):
        chol = torch.linalg.cholesky(cov3d[i] + 1e-12 * torch.eye(3, dtype=dt))
        x = means[i] + torch.randn(n, 3, generator=gen, dtype=dt) @ chol.T
        uv = cam.transform_points_screen(x, 128)[0, :, :2]
        sample_cov = torch.cov(uv.T)
        eye = 0.3 * torch.eye(2, dtype=dt)
        correct = covariance_2d(means[i:i + 1], cov3d[i:i + 1], cam, 128, "correct")[0] - eye
        course = covariance_2d(means[i:i + 1], cov3d[i:i + 1], cam, 128, "course")[0] - eye
        scale = sample_cov.abs().max()
        assert (correct - sample_cov).abs().max() < 0.02 * scale, (i, correct, sample_cov)
        assert (course - sample_cov).abs().max() > 0.2 * scale, (i, course, sample_cov)


def test_quaternion_matrix_is_a_rotation_and_scale_invariant():
    q = torch.tensor(QUATS, dtype=torch.float64)
    m = quaternion_to_matrix(q)
    torch.testing.assert_close(m @ m.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(5, 3, 3))
    torch.testing.assert_close(torch.linalg.det(m), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(quaternion_to_matrix(3.7 * q), m)
    # 90 degrees about z: (cos 45, 0, 0, sin 45) maps x to y
    r = quaternion_to_matrix(torch.tensor([[math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)]], dtype=torch.float64))
    torch.testing.assert_close(r[0] @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                               torch.tensor([0.0, 1.0, 0], dtype=torch.float64))


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------
def random_scene(n=300, anisotropic=True, seed=0, size=(36, 44), spread=0.0):
    gen = torch.Generator().manual_seed(seed)
    g = Gaussians.random(n, isotropic=not anisotropic, generator=gen)
    with torch.no_grad():
        g.log_scales.copy_(torch.rand(g.log_scales.shape, generator=gen) * 3 - 4.5 + spread)
        g.opacity_logits.copy_(torch.randn(n, generator=gen) * 3)
        g.quats.copy_(torch.randn(n, 4, generator=gen))
    h, w = size
    R, T = look_at_view_transform(2.0, 25.0, 40.0)
    f = 1.6 * max(h, w)  # the cluster of means covers about half of the image
    cam = PerspectiveCameras(focal_length=((f, 1.1 * f),), principal_point=((w / 2 + 1.5, h / 2 - 2.0),), R=R, T=T,
                             in_ndc=False, image_size=size)
    return g, cam


def reference_render(g, cam, size, offset, background=(1.0, 1.0, 1.0)):
    """Steps 6-9 with Python loops over pixels and Gaussians (slow and obvious)."""
    settings = RasterSettings(size, pixel_offset=offset)
    proj = project_gaussians(g.means, g.covariance_3d(), g.opacities, g.colours, cam, settings)
    h, w = size
    mu, conic, op, feat = (t.detach().double() for t in (proj.means2d, proj.conic, proj.opacity, proj.features))
    image = torch.zeros(h, w, 3, dtype=torch.float64)
    depth = torch.zeros(h, w, dtype=torch.float64)
    mask = torch.zeros(h, w, dtype=torch.float64)
    for j in range(h):
        for i in range(w):
            x, y = i + offset, j + offset
            trans = 1.0
            for k in range(len(mu)):
                dx, dy = x - mu[k, 0].item(), y - mu[k, 1].item()
                a, b, c = conic[k].tolist()
                p = -0.5 * (a * dx * dx + 2 * b * dx * dy + c * dy * dy)
                alpha = min(op[k].item() * math.exp(p), 0.99)
                if p > 0 or alpha < 1 / 255:
                    alpha = 0.0
                t_used = trans if trans >= 1e-4 else 0.0
                image[j, i] += feat[k, :3] * alpha * t_used
                depth[j, i] += feat[k, 3] * alpha * t_used
                mask[j, i] += alpha * t_used
                trans *= 1 - alpha
    image = image + (1 - mask)[..., None] * torch.tensor(background, dtype=torch.float64)
    return image, depth, mask


@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_dense_matches_per_pixel_reference(offset):
    g, cam = random_scene(n=25, size=(9, 11), spread=0.5)
    ref = reference_render(g, cam, (9, 11), offset)
    with torch.no_grad():
        out = g.render(cam, RasterSettings((9, 11), mode="dense", pixel_offset=offset))
    assert 0.3 < ref[2].mean() < 0.9 and ref[2].max() > 0.99  # partly covered, partly opaque
    torch.testing.assert_close(out.image.double(), ref[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.depth.double(), ref[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.mask.double(), ref[2], atol=1e-5, rtol=0)


def test_gaussians_per_splat_does_not_change_the_image():
    g, cam = random_scene(n=400, size=(24, 20), spread=-0.5)
    with torch.no_grad():
        outs = {k: g.render(cam, RasterSettings((24, 20), mode="dense", gaussians_per_splat=k)) for k in (-1, 1, 7, 1024)}
    ref = outs[-1]
    assert 0.3 < ref.mask.mean() < 0.9 and (ref.mask > 0.99).any()
    for k, o in outs.items():
        for name in ("image", "depth", "mask"):
            torch.testing.assert_close(getattr(o, name), getattr(ref, name), atol=1e-5, rtol=0, msg=f"K={k} {name}")


@pytest.mark.parametrize("tile_size,offset,size", [(16, 0.5, (37, 53)), (4, 0.5, (64, 48)), (5, 0.0, (33, 41)),
                                                   (1, 0.5, (20, 23))])
def test_tiled_matches_dense(tile_size, offset, size):
    g, cam = random_scene(n=600, size=size, seed=tile_size, spread=-0.5)
    with torch.no_grad():
        dense = g.render(cam, RasterSettings(size, mode="dense", pixel_offset=offset))
        tiled = g.render(cam, RasterSettings(size, mode="tiled", tile_size=tile_size, chunk=16, pixel_offset=offset))
    assert 0.3 < dense.mask.mean() < 0.9 and (dense.mask > 0.99).any()
    for name in ("image", "depth", "mask"):
        torch.testing.assert_close(getattr(tiled, name), getattr(dense, name), atol=1e-5, rtol=0, msg=name)


def test_tiles_cull_most_pairs_and_keep_every_visible_gaussian():
    g, cam = random_scene(n=600, size=(64, 64), seed=3)
    settings = RasterSettings((64, 64), tile_size=8)
    with torch.no_grad():
        proj = project_gaussians(g.means, g.covariance_3d(), g.opacities, g.colours, cam, settings)
        bins = bin_gaussians(proj, (64, 64), 8, 0.5)
        # every (Gaussian, pixel) with alpha >= 1/255 lies in a tile that lists the Gaussian
        ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
        pix = torch.stack([xs.flatten(), ys.flatten()], -1) + 0.5
        power = gaussian_power(pix, proj.means2d, proj.cov2d)  # (M, P)
        alpha = proj.opacity[:, None] * torch.exp(power)
        gi, pi = torch.nonzero(alpha >= 1 / 255, as_tuple=True)
        tile = (pi // 64 // 8) * bins.tiles_x + (pi % 64) // 8
        listed = set()
        for t in range(bins.tiles_x * bins.tiles_y):
            s, c = int(bins.start[t]), int(bins.counts[t])
            listed.update((int(x), t) for x in bins.gaussians[s:s + c])
        needed = set(zip(gi.tolist(), tile.tolist()))
        assert needed <= listed
        assert len(listed) < 0.25 * len(proj.index) * bins.tiles_x * bins.tiles_y  # real culling


def test_gaussians_behind_the_camera_are_dropped_and_sorted():
    g, cam = random_scene(n=50)
    with torch.no_grad():
        g.means[:10] = cam.get_camera_center()[0] * 1.5  # behind the camera (the camera looks at the origin)
        out = g.render(cam, RasterSettings((36, 44)))
        z = cam.world_to_view(g.means)[0, :, 2]
    assert set(out.index.tolist()) == set(torch.nonzero(z > 0).flatten().tolist())
    assert not set(range(10)) & set(out.index.tolist())
    assert torch.all(z[out.index][1:] >= z[out.index][:-1])


def test_pixel_centre_convention_puts_a_small_gaussian_on_its_projected_mean():
    """With pixel_offset 0.5 the mask's centroid (pixel i at i + 0.5) is the projected mean."""
    R, T = look_at_view_transform(3.0, 10.0, 20.0)
    cam = PerspectiveCameras(focal_length=90.0, principal_point=((32.0, 30.0),), R=R, T=T, in_ndc=False, image_size=(60, 64))
    mean = torch.tensor([[0.05, -0.03, 0.02]])
    cov = covariance_3d(torch.tensor([0.03]))
    for offset in (0.5, 0.0):
        out = rasterize_gaussians(mean, cov, torch.tensor([0.9]), torch.zeros(1, 3), cam,
                                  RasterSettings((60, 64), pixel_offset=offset))
        ys, xs = torch.meshgrid(torch.arange(60.0), torch.arange(64.0), indexing="ij")
        m = out.mask
        centroid = torch.stack([(m * (xs + 0.5)).sum() / m.sum(), (m * (ys + 0.5)).sum() / m.sum()])
        mu = cam.transform_points_screen(mean, (60, 64))[0, 0, :2]
        shift = 0.5 - offset  # sampling at i + offset shifts the image by (0.5 - offset) px
        torch.testing.assert_close(centroid, mu + shift, atol=0.02, rtol=0)


@pytest.mark.parametrize("anisotropic", [True, False])
def test_gradients_reach_every_parameter_and_match_dense(anisotropic):
    g, cam = random_scene(n=200, anisotropic=anisotropic, size=(30, 26), spread=-0.5)
    target = torch.rand(30, 26, 3, generator=torch.Generator().manual_seed(1))
    grads = {}
    for mode in ("dense", "tiled"):
        g.zero_grad()
        out = g.render(cam, RasterSettings((30, 26), mode=mode, chunk=8))
        loss = (out.image - target).abs().mean() + 0.1 * out.depth.mean()
        loss.backward()
        grads[mode] = {k: v.grad.clone() for k, v in g.params().items() if v.grad is not None}
    names = {"means", "log_scales", "colours", "opacity_logits"} | ({"quats"} if anisotropic else set())
    assert names <= set(grads["tiled"])
    for name in names:
        gt, gd = grads["tiled"][name], grads["dense"][name]
        assert torch.isfinite(gt).all() and gt.abs().sum() > 0, name
        torch.testing.assert_close(gt, gd, atol=1e-6 + 1e-4 * gd.abs().max().item(), rtol=1e-3, msg=name)
    if not anisotropic:
        assert "quats" not in grads["tiled"] or grads["tiled"]["quats"].abs().max() == 0


def test_composite_functions_agree_directly():
    g, cam = random_scene(n=300, size=(40, 40), seed=5)
    s = RasterSettings((40, 40))
    with torch.no_grad():
        proj = project_gaussians(g.means, g.covariance_3d(), g.opacities, g.colours, cam, s)
        fd, md = composite_dense(proj, (40, 40), 64, 0.5)
        for chunk in (1, 7, 32, 1024):  # the tiled rasteriser's batch size does not matter either
            ft, mt = composite_tiled(proj, (40, 40), 8, chunk, 0.5)
            torch.testing.assert_close(ft, fd, atol=1e-5, rtol=0)
            torch.testing.assert_close(mt, md, atol=1e-5, rtol=0)


def test_settings_validation():
    with pytest.raises(ValueError, match="mode"):
        RasterSettings(32, mode="fast")
    with pytest.raises(ValueError, match="view_rotation"):
        RasterSettings(32, view_rotation="R")
    with pytest.raises(ValueError, match="gaussians_per_splat"):
        RasterSettings(32, gaussians_per_splat=0)
    g, cam = random_scene(n=5)
    with pytest.raises(ValueError, match="colours"):
        rasterize_gaussians(g.means, g.covariance_3d(), g.opacities, torch.zeros(5, 4), cam, RasterSettings(32))
