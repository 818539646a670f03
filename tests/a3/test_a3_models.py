"""Assignment 3 components: SDFs, densities, sphere tracing, losses, NeRF and neural SDF models,
registries, hierarchical rendering."""

import math

import numpy as np
import pytest
import torch

from a3_volume_surface.implicit import (
    NeuralRadianceField, NeuralSurface, build_implicit, laplace_opacity_neg_log_transmittance,
)
from a3_volume_surface.losses import eikonal_loss, inter_loss, pretrain_sphere, random_points, sphere_loss
from a3_volume_surface.model import Model, render_images
from a3_volume_surface.renderers import build_renderer, neus_density, sphere_trace, volsdf_density
from a3_volume_surface.samplers import build_sampler
from a3_volume_surface.sdf import BoxSDF, SphereSDF, TorusSDF, build_sdf
from l3d.rays import RayBundle, importance_lengths, stratified_lengths


def _torus_root(o, d, R0, r1):
    """Smallest positive root of the ray-torus quartic (numpy), the analytic intersection."""
    # |p|^2 + R0^2 - r1^2)^2 = 4 R0^2 (px^2 + py^2) with p = o + t d, |d| = 1
    od, oo = float(o @ d), float(o @ o)
    k = oo + R0 * R0 - r1 * r1
    a4, a3 = 1.0, 4 * od
    a2 = 2 * k + 4 * od * od - 4 * R0 * R0 * (d[0] ** 2 + d[1] ** 2)
    a1 = 4 * od * k - 8 * R0 * R0 * (o[0] * d[0] + o[1] * d[1])
    a0 = k * k - 4 * R0 * R0 * (o[0] ** 2 + o[1] ** 2)
    roots = np.roots([a4, a3, a2, a1, a0])
    real = roots[np.abs(roots.imag) < 1e-7].real
    real = real[real > 0]
    return real.min() if len(real) else None


def test_sphere_tracing_hits_analytic_torus():
    torus = TorusSDF(radii=[1.0, 0.25])
    g = torch.Generator().manual_seed(0)
    o = torch.tensor([0.3, -0.4, 2.5]).expand(400, 3).double()
    target = torch.cat([torch.rand(400, 2, generator=g) * 2.6 - 1.3, torch.zeros(400, 1)], -1).double()
    d = torch.nn.functional.normalize(target - o, dim=-1)
    pts, mask, t = sphere_trace(torus.double(), o, d, 0.0, 5.0, 64, 1e-5)
    assert mask.float().mean() > 0.2  # a good share of the rays hit the ring
    # every hit lies on the analytic surface: |(|p.xy| - R0, p.z)| = r1
    p = pts[mask]
    q = torch.stack([p[:, :2].norm(dim=-1) - 1.0, p[:, 2]], -1)
    assert (q.norm(dim=-1) - 0.25).abs().max() < 1e-4
    # and at the first intersection along the ray (the quartic's smallest positive root)
    for i in torch.nonzero(mask)[:, 0][:40].tolist():
        root = _torus_root(o[i].numpy(), d[i].numpy(), 1.0, 0.25)
        assert root is not None and abs(root - t[i].item()) < 1e-4
    # rays reported as misses have no intersection before far (up to grazing rays within 1e-3)
    for i in torch.nonzero(~mask)[:, 0][:40].tolist():
        root = _torus_root(o[i].numpy(), d[i].numpy(), 1.0, 0.25)
        if root is not None and root < 5.0:
            ts = torch.linspace(0, 5, 20001, dtype=torch.float64)
            assert torus(o[i] + ts[:, None] * d[i]).min().item() > -1e-3  # only grazes the surface


def test_analytic_sdfs():
    p = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    assert torch.allclose(SphereSDF(radius=1.0)(p), torch.tensor([-1.0, 1.0, 2.0]))
    assert torch.allclose(BoxSDF(side_lengths=[2.0, 2.0, 2.0])(p), torch.tensor([-1.0, 1.0, 2.0]))
    corner = torch.tensor([[2.0, 2.0, 1.0]])
    assert BoxSDF(side_lengths=[2.0, 2.0, 2.0])(corner).item() == pytest.approx(math.sqrt(2))
    assert torch.allclose(TorusSDF(radii=[1.0, 0.25])(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])),
                          torch.tensor([-0.25, 0.75]))
    scene = build_sdf({"type": "scene", "primitives": [
        {"type": "sphere", "center": [-2, 0, 0], "radius": 0.5, "color": [1, 0, 0]},
        {"type": "box", "center": [2, 0, 0], "side_lengths": [1, 1, 1], "color": [0, 0, 1]}]})
    q = torch.tensor([[-2.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    assert torch.allclose(scene(q), torch.tensor([-0.5, -0.5]))
    assert torch.equal(scene.color(q), torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]))
    with pytest.raises(ValueError, match="unknown sdf.type"):
        build_sdf({"type": "blob"})
    # trainable parameters from {val, opt}
    box = build_sdf({"type": "box", "center": {"val": [0, 0, 0], "opt": True}, "side_lengths": [1, 1, 1]})
    assert [n for n, _ in box.named_parameters()] == ["center"]


def test_eikonal_loss_of_exact_sdfs_is_zero():
    x = random_points(2000, [[-2, -2, -2], [2, 2, 2]], torch.Generator().manual_seed(0)).double()
    for sdf in (SphereSDF(radius=0.8), BoxSDF(side_lengths=[1.0, 0.6, 1.4]), TorusSDF(radii=[1.0, 0.3])):
        sdf = sdf.double()
        p = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(sdf(p).sum(), p)
        assert eikonal_loss(grad).item() < 1e-12
        # twice the distance is not an SDF: |grad| = 2 -> loss 1
        (grad2,) = torch.autograd.grad((2 * sdf(p)).sum(), p)
        assert eikonal_loss(grad2).item() == pytest.approx(1.0, abs=1e-9)
    d = torch.tensor([0.0, 1.0])
    assert inter_loss(d).item() == pytest.approx((1 + math.exp(-100)) / 2)


def test_laplace_opacity_is_stable():
    s = torch.linspace(-1.0, 1.0, 201, dtype=torch.float64, requires_grad=True)
    for alpha in (1.0, 0.5):
        a, b = torch.tensor(alpha, dtype=torch.float64), torch.tensor(0.05, dtype=torch.float64)
        nlt = laplace_opacity_neg_log_transmittance(s, a, b)
        op = torch.where(s > 0, 0.5 * alpha * torch.exp(-s / 0.05), alpha * (1 - 0.5 * torch.exp(s / 0.05)))
        naive = -torch.log(1 - op)
        finite = torch.isfinite(naive)
        assert torch.allclose(nlt[finite], naive[finite], rtol=1e-6, atol=1e-12)  # the naive form loses digits
        (g,) = torch.autograd.grad(nlt.sum(), s)
        assert torch.isfinite(nlt).all() and torch.isfinite(g).all()
    s32 = torch.tensor([-0.875], requires_grad=True)  # deep inside: float32 opacity rounds to 1
    v = laplace_opacity_neg_log_transmittance(s32, torch.tensor(1.0), torch.tensor(0.05))
    assert v.item() == pytest.approx(math.log(2) + 0.875 / 0.05, rel=1e-6)


def test_volsdf_and_neus_densities():
    d = torch.tensor([-1.0, 0.0, 1.0])
    assert torch.allclose(volsdf_density(d, 10.0, 0.1), 10 * torch.tensor([1 - 0.5 * math.exp(-10), 0.5, 0.5 * math.exp(-10)]))
    x = torch.linspace(-3, 3, 60001, dtype=torch.float64)
    for s in (10.0, 50.0):
        rho = neus_density(x, s)
        ref = s * torch.exp(-s * x) / (1 + torch.exp(-s * x)) ** 2
        assert torch.allclose(rho, ref, rtol=1e-9, atol=1e-12)
        assert torch.trapezoid(rho, x).item() == pytest.approx(1.0, abs=1e-6)  # logistic pdf integrates to 1
        assert rho.max().item() == pytest.approx(s / 4, rel=1e-6)


def test_registries_choose_classes():
    assert type(build_sampler({"type": "stratified"})).__name__ == "StratifiedSampler"
    for kind, cls in (("volume", "VolumeRenderer"), ("sphere_tracing", "SphereTracingRenderer"),
                      ("volume_sdf", "VolumeSDFRenderer")):
        assert type(build_renderer({"type": kind})).__name__ == cls
    assert isinstance(build_implicit({"type": "nerf"}), NeuralRadianceField)
    assert isinstance(build_implicit({"type": "neural_surface"}), NeuralSurface)
    with pytest.raises(ValueError, match="expected one of"):
        build_renderer({"type": "raymarch"})
    with pytest.raises(ValueError, match="bad keys"):
        build_implicit({"type": "nerf", "n_hidden": 3})
    with pytest.raises(ValueError, match="alpha"):
        build_implicit({"type": "sdf_volume", "sdf": {"type": "sphere"}, "alpha": 2.0})


def test_nerf_field_shapes_and_view_dependence():
    torch.manual_seed(0)
    o = torch.zeros(5, 3)
    d = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    b = RayBundle(o, d).with_lengths(stratified_lengths((5,), 7, 0.5, 2.0))
    for view in (False, True):
        f = NeuralRadianceField(n_hidden_neurons_xyz=32, n_hidden_neurons_dir=16, use_view_dependence=view)
        out = f(b)
        assert out["density"].shape == (5, 7) and out["feature"].shape == (5, 7, 3)
        assert (out["density"] >= 0).all() and ((out["feature"] > 0) & (out["feature"] < 1)).all()
        # the same points seen along opposite directions: colours differ only with view dependence
        b2 = RayBundle(b.points[:, 3] + d, -d).with_lengths(torch.ones(5, 1))
        b1 = RayBundle(b.points[:, 3] - d, d).with_lengths(torch.ones(5, 1))
        same = torch.allclose(f(b1)["feature"], f(b2)["feature"], atol=1e-6)
        assert same != view
        assert torch.allclose(f(b1)["density"], f(b2)["density"], atol=1e-5)
    # the per-ray direction term equals concatenating the direction to every sample
    f = NeuralRadianceField(n_hidden_neurons_xyz=32, n_hidden_neurons_dir=16, use_view_dependence=True)
    y = f.mlp(f.embed_xyz(b.points.reshape(-1, 3)))
    cat = torch.cat([f.feature_layer(y), f.embed_dir(d)[:, None].expand(5, 7, -1).reshape(35, -1)], -1)
    ref = torch.sigmoid(f.color_out(torch.relu(f.color_hidden(cat)))).view(5, 7, 3)
    assert torch.allclose(f(b)["feature"], ref, atol=1e-6)


def test_neural_surface_gradient_and_pretraining():
    torch.manual_seed(0)
    fn = NeuralSurface(n_harmonic_functions_xyz=2, n_hidden_neurons_distance=32, n_hidden_neurons_color=16)
    p = torch.randn(10, 3)
    d, g = fn.get_distance_and_gradient(p)
    eps = 1e-3
    fd = torch.stack([(fn.get_distance(p + eps * e) - fn.get_distance(p - eps * e)) / (2 * eps)
                      for e in torch.eye(3)], -1)
    assert torch.allclose(g, fd, atol=2e-3)
    bounds = [[-2, -2, -2], [2, 2, 2]]
    gen = torch.Generator().manual_seed(0)
    before = sphere_loss(q := random_points(2000, bounds, gen), fn.get_distance(q)).item()
    pretrain_sphere(fn, 60, 256, 3e-3, bounds, 1.0, gen)
    q = random_points(2000, bounds, gen)
    after = sphere_loss(q, fn.get_distance(q)).item()
    assert after < 0.05 * before and after < 0.06


def _box_volume_cfg(n_pts, n_imp):
    return {
        "implicit_function": {"type": "sdf_volume", "sdf": {"type": "box", "side_lengths": [1.6, 1.6, 1.6]},
                              "feature": {"rainbow": True}, "alpha": 1.0, "beta": 0.02},
        "sampler": {"type": "stratified", "n_pts_per_ray": n_pts, "min_depth": 1.0, "max_depth": 5.0},
        "renderer": {"type": "volume", "chunk_size": 1000, "n_pts_importance": n_imp},
    }


def test_hierarchical_renderer_matches_dense_sampling():
    """A sharp box (beta 0.02) seen by 16 coarse + 32 fine samples renders like 512 stratified ones,
    much better than 48 stratified ones; the fine samples sit on the surface."""
    from a3_volume_surface.cameras import look_at_cameras

    cam = look_at_cameras([[0.3, 0.4, -3.0]], 2.0)
    dense = render_images(Model(_box_volume_cfg(512, 0)), cam, (24, 24), keys=("color", "depth", "opacity"))
    hier = render_images(Model(_box_volume_cfg(16, 32)), cam, (24, 24), keys=("color", "depth"))
    flat = render_images(Model(_box_volume_cfg(48, 0)), cam, (24, 24), keys=("color", "depth"))
    err_h = (hier["color"] - dense["color"]).abs().mean().item()
    err_f = (flat["color"] - dense["color"]).abs().mean().item()
    assert err_h < 0.5 * err_f
    hit = dense["opacity"] > 0.99  # rays that cross the box (grazing rays can miss the coarse samples)
    assert hit.float().mean() > 0.1
    err_hd = (hier["depth"] - dense["depth"])[hit].abs().mean().item()
    assert err_hd < 0.05 and err_hd < 0.5 * (flat["depth"] - dense["depth"])[hit].abs().mean().item()
    # fine samples concentrate near the surface: draw them for a central ray
    m = Model(_box_volume_cfg(16, 32)).eval()
    b = RayBundle(torch.tensor([[0.0, 0.0, -3.0]]), torch.tensor([[0.0, 0.0, 1.0]]))
    bs = m.sampler(b)
    o = m.implicit_fn(bs)
    from l3d.rays import volume_weights, sample_deltas

    w = volume_weights(o["density"], sample_deltas(bs.lengths))
    fine = importance_lengths(bs.lengths, w, 32, deterministic=True, include_coarse=False)
    assert ((fine - 2.2).abs() < 0.3).float().mean() > 0.9  # the front face is at t = 2.2


def test_sphere_tracing_renderer_shading_and_background():
    cfg = {"implicit_function": {"type": "sdf_surface", "sdf": {"type": "sphere", "radius": 1.0},
                                 "feature": {"val": [0.5, 0.5, 0.5]}},
           "renderer": {"type": "sphere_tracing", "white_background": True, "shading": True,
                        "light_dir": [0.0, 0.0, -1.0], "ambient": 0.0}}
    from a3_volume_surface.cameras import look_at_cameras

    img = render_images(Model(cfg), look_at_cameras([[0.0, 0.0, -3.0]], 1.0), (9, 9), keys=("color", "mask"))
    assert img["mask"][0, 4, 4] and not img["mask"][0, 0, 0]
    assert torch.allclose(img["color"][0, 0, 0], torch.ones(3))  # white background
    assert img["color"][0, 4, 4, 0].item() == pytest.approx(0.5, abs=1e-3)  # normal faces the light


def test_occupancy_grid_skips_empty_space_without_changing_the_image():
    """A ball of density 20 (radius 0.5): after warm-up the grid marks only cells near the ball,
    rays are clipped to it or skipped, and the rendering is unchanged."""
    from a3_volume_surface.cameras import look_at_cameras
    from a3_volume_surface.occupancy import OccupancyGrid
    from l3d.rays import image_rays

    class Ball(torch.nn.Module):
        def density(self, p):
            return 20.0 * (p.norm(dim=-1) < 0.5).float()

        def forward(self, b):
            p = b.points
            return {"density": self.density(p), "feature": torch.sigmoid(p)}

    grid = OccupancyGrid(1.5, resolution=16, update_every=1, warmup_steps=1, threshold=0.01)
    ball = Ball()
    assert grid.occupied.all()
    torch.manual_seed(0)
    for _ in range(3):
        grid.step(ball.density)
    centers = (torch.stack(torch.meshgrid(*[torch.arange(16)] * 3, indexing="ij"), -1) + 0.5) / 16 * 3 - 1.5
    r = centers.norm(dim=-1)
    assert grid.occupied[r < 0.5 - 0.17].all() and not grid.occupied[r > 0.5 + 0.17].any()
    assert 0.01 < grid.occupancy_fraction < 0.1

    def model(occ):
        cfg = {"implicit_function": {"type": "nerf"}, "renderer": {"type": "volume", "chunk_size": 10 ** 6},
               "sampler": {"type": "stratified", "n_pts_per_ray": 256, "min_depth": 1.0, "max_depth": 5.0,
                           "bound_radius": 1.5, "occupancy": occ}}
        m = Model(cfg).eval()
        m.implicit_fn = ball
        return m

    with_grid = model({"resolution": 16, "update_every": 1, "warmup_steps": 1})
    with_grid.sampler.occupancy.load_state_dict(grid.state_dict())
    cam = look_at_cameras([[0.0, 0.0, -3.0]], 2.0)
    bundle = image_rays(cam, (20, 20)).reshape(-1)
    b, active = with_grid.sampler.sample(bundle)
    assert 0.05 < active.float().mean() < 0.5  # most rays skipped
    centre = b.lengths[210]  # a ray near the image centre: samples only around the ball (t in 2.5 .. 3.5)
    assert centre.min() > 2.2 and centre.max() < 3.8
    plain = model(None)(bundle)["color"]
    fast = with_grid(bundle)["color"]
    assert (fast - plain).abs().max() < 0.05  # finer samples inside the ball: small differences at its rim
    assert (fast - plain).abs().mean() < 2e-3


def test_nerf_density_options():
    torch.manual_seed(0)
    p = torch.randn(500, 3)
    relu = NeuralRadianceField(n_hidden_neurons_xyz=16, density_bias_init=-50.0)
    soft = NeuralRadianceField(n_hidden_neurons_xyz=16, density_bias_init=-3.0, density_activation="softplus")
    assert (relu.density(p) == 0).all()  # a very negative bias kills every ReLU density ...
    d = soft.density(p)
    assert (d > 0).all() and d.mean() < 0.2  # ... softplus starts almost empty but keeps a gradient
    with pytest.raises(ValueError, match="density_activation"):
        NeuralRadianceField(density_activation="exp")
