"""The measurements behind Assignment 3's pass/fail checks: each agrees with a known answer and
fails on a broken method (wrong box, strobing or short turntable, a tracer that misses)."""

import math

import numpy as np
import pytest
import torch

from a3_volume_surface.cameras import surround_cameras
from a3_volume_surface.common import comparison_panel, save_gif
from a3_volume_surface.measure import dense_march, motion_ratio, ray_box_hits, turntable_checks
from a3_volume_surface.renderers import _composite, sphere_trace
from a3_volume_surface.sdf import build_sdf
from l3d.rays import image_rays

pytestmark = pytest.mark.usefixtures("one_thread")


def _rays(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    o = torch.tensor([0.0, 0.0, -3.0]).expand(n, 3).clone()
    d = torch.nn.functional.normalize(torch.cat([torch.rand(n, 2, generator=g) - 0.5, torch.ones(n, 1)], -1), dim=-1)
    return o.double(), d.double()


def test_ray_box_hits_slab_test():
    o = torch.tensor([[0.0, 0.0, -3.0], [0.0, 0.0, -3.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    t, hit = ray_box_hits(o, d, (0.0, 0.0, 0.5), (2.0, 2.0, 2.0))
    assert hit.tolist() == [True, False, True]
    assert t[0].item() == pytest.approx(2.5) and t[2].item() == 0.0  # entry; a ray starting inside


def test_dense_march_finds_the_sphere():
    o, d = _rays()
    fn = lambda p: p.norm(dim=-1) - 1.0  # noqa: E731
    t, hit = dense_march(fn, o, d, 0.0, 6.0, step=0.01)
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - 1.0)
    exact = -b - disc.clamp(min=0).sqrt()
    assert torch.equal(hit, disc > 0)
    assert (t[hit] - exact[hit]).abs().max() < 1e-5
    t2, hit2 = dense_march(fn, o, d, 0.0, 6.0, step=0.01, bound_radius=1.2)  # only inside a bounding sphere
    assert torch.equal(hit2, hit) and (t2[hit] - exact[hit]).abs().max() < 1e-5


def _full_sphere_trace(fn, o, d, near, far, iters, eps):
    """The textbook loop: every ray steps ``iters`` times (the reference for the compacted tracer)."""
    t = torch.full(o.shape[:-1], float(near), dtype=o.dtype)
    active = torch.ones_like(t, dtype=torch.bool)
    for _ in range(iters):
        t = torch.where(active, t + fn(o + t[..., None] * d), t)
        active = active & (t < far)
        t = torch.where(active, t, torch.clamp(t, max=far))
    pts = o + t[..., None] * d
    return (t < far) & (fn(pts).abs() < eps), t


def test_compacted_sphere_tracing_matches_the_full_loop():
    torus = build_sdf({"type": "torus", "center": [0.0, 0.0, 0.0], "radii": [1.0, 0.25]})
    cam = surround_cameras(3.0, 20, up=(0.0, 0.0, 1.0))[3]
    rays = image_rays(cam, (48, 48)).reshape(-1)
    o, d = rays.origins.double(), rays.directions.double()
    fn = lambda p: torus(p).double()  # noqa: E731
    ref_mask, ref_t = _full_sphere_trace(fn, o, d, 0.0, 5.0, 64, 1e-5)
    _, mask, t = sphere_trace(fn, o, d, 0.0, 5.0, 64, 1e-5)
    assert int(ref_mask.sum()) > 100 and torch.equal(mask, ref_mask)
    assert (t[mask] - ref_t[mask]).abs().max() < 64 * 1e-5


def test_bounded_volume_rendering_has_no_backdrop_wall():
    """Inside a bounding sphere the last sample stands for its own interval: a faint fog stays
    faint (the spec's 1e10 last interval makes it an opaque wall)."""
    lengths = torch.linspace(2.0, 5.0, 31)[None]
    density = torch.full((1, 31), 0.1)
    colour = torch.ones(1, 31, 3)
    wall = _composite(density, colour, lengths, None, bounded=False)
    fog = _composite(density, colour, lengths, None, bounded=True)
    assert wall.opacity.item() == pytest.approx(1.0)
    assert fog.opacity.item() == pytest.approx(1 - math.exp(-0.1 * 3.1), rel=1e-5)


def _volume_box_cfg(sides):
    from omegaconf import OmegaConf

    from a3_volume_surface.entry import CONFIG_DIR
    from a3_volume_surface.model import to_container

    cfg = to_container(OmegaConf.load(f"{CONFIG_DIR}/box.yaml"))
    cfg["implicit_function"]["sdf"]["side_lengths"] = {"val": list(sides), "opt": False}
    return cfg


@pytest.mark.parametrize("rendered,fails", [((1.75,) * 3, None), ((1.5,) * 3, "silhouette_recall"),
                                            ((2.0,) * 3, "silhouette_precision")])
def test_part_1_checks_fail_on_a_wrong_box(rendered, fails):
    """The volume render of a box of ``rendered`` sides, judged as the config's 1.75 box."""
    from a3_volume_surface.model import Model, render_images
    from a3_volume_surface.volume_runs import analytic_volume_checks

    cfg = _volume_box_cfg((1.75,) * 3)
    model = Model(_volume_box_cfg(rendered))
    cam = surround_cameras(**{**cfg["cameras"], "n_poses": 20})[2]
    res = render_images(model, cam, (64, 64), keys=("depth", "opacity"))
    checks = analytic_volume_checks(cfg, cam, (64, 64), res)
    failed = {k for k, v in checks.items() if not v["pass"]}
    if fails is None:
        assert not failed and checks["depth_error"]["value"] < 0.078, checks
    else:
        assert fails in failed, checks


def test_turntable_checks_tell_turning_from_strobing_and_short(tmp_path):
    theta = torch.arange(24) * (2 * math.pi / 24)  # a blob going round in 24 steps
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    cx, cy = 7.5 + 5 * torch.cos(theta), 7.5 + 5 * torch.sin(theta)
    blob = torch.exp(-((xx - cx[:, None, None]) ** 2 + (yy - cy[:, None, None]) ** 2) / 4.0)
    frames = blob[..., None].expand(-1, -1, -1, 3).contiguous()
    gif = save_gif(tmp_path / "turn.gif", frames)[0]
    ok = turntable_checks(frames, gif)
    assert all(c["pass"] for c in ok.values()) and ok["turn_seconds"]["value"] == pytest.approx(2.4)
    strobe = frames[[0, 12] * 12]
    assert motion_ratio(strobe) < 0.1 and motion_ratio(frames[:1].expand(5, -1, -1, -1)) == 0.0
    short = save_gif(tmp_path / "short.gif", frames[::3])[0]  # 8 frames: 0.8 s per turn
    bad = turntable_checks(frames[::3], short)
    assert not bad["frames_per_turn"]["pass"] and not bad["turn_seconds"]["pass"]


def test_comparison_panel_keeps_labels_off_the_images():
    pred = torch.rand(2, 8, 8, 3)
    gt = torch.rand(2, 8, 8, 3)
    panel = comparison_panel([pred, gt], ("prediction", "ground truth"), ["view 0  20.1 dB", "view 1  19.0 dB"],
                             min_cell=32)
    k, banner, gap = 4, 18, 2
    left = panel.shape[1] - 2 * (8 * k + gap)
    for j, col in enumerate((pred, gt)):
        for i in range(2):
            y0, x0 = banner + i * (8 * k + gap), left + j * (8 * k + gap)
            cell = panel[y0:y0 + 8 * k, x0:x0 + 8 * k].astype(np.int64)
            want = (col[i].numpy() * 255).astype(np.uint8).repeat(k, 0).repeat(k, 1).astype(np.int64)
            assert np.array_equal(cell, want)  # every rendered pixel untouched by the labels
    assert (panel[:banner] < 128).any() and (panel[banner:, :left] < 128).any()  # the labels are in the margins
