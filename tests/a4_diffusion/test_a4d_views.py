"""View-dependent text conditioning and camera sampling of the SDS scripts."""


import pytest
import torch

from a4_gaussians_diffusion.diffusion.views import (CameraSampler, orbit_cameras, view_dependent_embedding,
                                                    view_index, view_prompts, view_weights, wrap_azimuth)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_view_prompts():
    assert view_prompts("a corgi") == {"front": "a corgi, front view", "side": "a corgi, side view",
                                       "back": "a corgi, back view"}


def test_wrap_azimuth():
    a = torch.tensor([0.0, 180.0, -180.0, 190.0, -190.0, 360.0, 540.0])
    torch.testing.assert_close(wrap_azimuth(a), torch.tensor([0.0, -180.0, -180.0, -170.0, 170.0, 0.0, -180.0]))


def test_select_follows_the_angle_ranges():
    """front |az| < 30, side 30 <= |az| < 150, back |az| >= 150 (both signs, wrapped)."""
    az = torch.tensor([0.0, 29.9, -29.9, 30.0, -30.0, 90.0, -120.0, 149.9, 150.0, -150.0, 180.0, 200.0, 330.0, 345.0])
    want = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 1, 0])  # 200 -> -160 back; 330 -> -30 side; 345 -> -15
    assert torch.equal(view_index(az), want)
    w = view_weights(az, "select")
    assert torch.equal(w.argmax(-1), want) and torch.equal(w.sum(-1), torch.ones(len(az)))


def test_interpolation_by_azimuth():
    """r = 1 - |az|/90 between front and side; r = 2 - |az|/90 between side and back."""
    az = torch.tensor([0.0, 45.0, -45.0, 60.0, 90.0, -90.0, 135.0, 160.0, 180.0, -180.0])
    w = view_weights(az, "interp")
    r = 1 - 60 / 90
    want = torch.tensor([[1, 0, 0], [0.5, 0.5, 0], [0.5, 0.5, 0], [r, 1 - r, 0], [0, 1, 0], [0, 1, 0],
                         [0, 0.5, 0.5], [0, 2 - 160 / 90, 160 / 90 - 1], [0, 0, 1], [0, 0, 1]], dtype=torch.float32)
    torch.testing.assert_close(w, want)
    # continuous in the azimuth, rows sum to one
    fine = torch.linspace(-180, 180, 3601)
    wf = view_weights(fine, "interp")
    torch.testing.assert_close(wf.sum(-1), torch.ones(len(fine)))
    assert float((wf[1:] - wf[:-1]).abs().max()) < 0.0012
    with pytest.raises(ValueError):
        view_weights(az, "nearest")


def test_view_dependent_embedding_mixes_the_view_embeddings():
    torch.manual_seed(0)
    emb = {k: torch.randn(1, 5, 8) for k in ("front", "side", "back", "default", "uncond")}
    az = torch.tensor([0.0, 60.0, 120.0, 170.0])
    out = view_dependent_embedding(emb, az, "interp")
    assert out.shape == (4, 5, 8)
    r = 1 - 60 / 90
    torch.testing.assert_close(out[0], emb["front"][0])
    torch.testing.assert_close(out[1], r * emb["front"][0] + (1 - r) * emb["side"][0])
    r2 = 2 - 120 / 90
    torch.testing.assert_close(out[2], r2 * emb["side"][0] + (1 - r2) * emb["back"][0])
    sel = view_dependent_embedding(emb, az, "select")
    for i, name in enumerate(["front", "side", "side", "back"]):
        torch.testing.assert_close(sel[i], emb[name][0])


def test_camera_sampler_ranges_and_geometry():
    s = CameraSampler()
    b = s.sample(2000, torch.Generator().manual_seed(0))
    assert float(b.radius.min()) >= 3.0 and float(b.radius.max()) <= 3.5
    assert float(b.polar.min()) >= 45 and float(b.polar.max()) <= 105
    assert float(b.azimuth.min()) >= -180 and float(b.azimuth.max()) < 180
    assert float(b.fov.min()) >= 10 and float(b.fov.max()) <= 30
    assert float(b.azimuth.min()) < -170 and float(b.azimuth.max()) > 170  # the whole circle is covered
    c = b.centers
    torch.testing.assert_close(c.norm(dim=-1), b.radius, rtol=1e-5, atol=1e-5)
    # polar angle measured from +Y, azimuth 0 on +Z: C = r (sin p sin a, cos p, sin p cos a)
    p, a = torch.deg2rad(b.polar), torch.deg2rad(b.azimuth)
    want = b.radius[:, None] * torch.stack([p.sin() * a.sin(), p.cos(), p.sin() * a.cos()], -1)
    torch.testing.assert_close(c, want, rtol=1e-4, atol=1e-4)
    # every camera looks at the origin: the origin projects to the image centre
    ndc = b.cameras.transform_points_ndc(torch.zeros(len(b.radius), 1, 3))
    assert float(ndc[..., :2].abs().max()) < 1e-4
    with pytest.raises(ValueError):
        CameraSampler(radius_range=(3.5, 3.0))


def test_orbit_cameras():
    o = orbit_cameras(8)
    torch.testing.assert_close(o.azimuth, torch.tensor([0.0, 45, 90, 135, -180, -135, -90, -45]))
    torch.testing.assert_close(o.centers[:, 1], torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(o.centers.norm(dim=-1), torch.full((8,), 3.2))
    assert torch.allclose(o.cameras.fov, torch.full((8,), 20.0))
