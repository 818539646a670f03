"""Gaussian model (init, activations), spherical harmonics, 3DGS PLY I/O, scenes, SSIM."""

import math

import numpy as np
import pytest
import torch

from a4_gaussians_diffusion.gaussians import sh as shmod
from a4_gaussians_diffusion.gaussians.data import (BuiltinSceneConfig, camera_to_pose, load_scene, make_builtin_scene,
                                                   pose_to_camera, poses_to_cameras, split_indices)
from a4_gaussians_diffusion.gaussians.losses import evaluate_images, ssim
from a4_gaussians_diffusion.gaussians.model import Gaussians
from a4_gaussians_diffusion.gaussians.ply import PROPERTY_NAMES, load_gaussians_ply, save_gaussians_ply
from l3d.cameras import PerspectiveCameras, look_at_view_transform
from l3d.errors import UserError


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------
def test_init_from_points_follows_the_course():
    gen = torch.Generator().manual_seed(0)
    pts = torch.rand(300, 3, generator=gen)
    g = Gaussians.from_points(pts, generator=torch.Generator().manual_seed(1))
    d2 = torch.cdist(pts.double(), pts.double()) ** 2
    expected = torch.log(d2.topk(50, largest=False).values.mean(1))  # self (0) included
    torch.testing.assert_close(g.log_scales[:, 0].double(), expected, rtol=1e-4, atol=1e-5)
    assert g.isotropic and g.log_scales.shape == (300, 1)
    assert torch.all(g.opacity_logits == 8.0)
    assert torch.all(g.quats == torch.tensor([1.0, 0, 0, 0]))
    assert 0 <= g.colours.min() and g.colours.max() < 1 and abs(g.colours.mean().item() - 0.5) < 0.05
    torch.testing.assert_close(g.opacities, torch.sigmoid(torch.tensor(8.0)).expand(300))
    a = Gaussians.from_points(pts, isotropic=False, with_sh=True)
    assert a.log_scales.shape == (300, 3) and a.sh.shape == (300, 48)
    torch.testing.assert_close(shmod.sh_dc_to_rgb(a.sh[:, :3]), a.colours)


def test_random_init_and_activations():
    g = Gaussians.random(5000, generator=torch.Generator().manual_seed(0))
    assert g.num_gaussians == 5000
    assert abs(g.means.std().item() - 0.2) < 0.01 and abs(g.means.mean().item()) < 0.01
    with torch.no_grad():
        g.quats.mul_(4.0)
    torch.testing.assert_close(g.quaternions.norm(dim=-1), torch.ones(5000))
    torch.testing.assert_close(g.scales, torch.exp(g.log_scales))


def test_state_round_trip():
    g = Gaussians.random(50, isotropic=False, with_sh=True, generator=torch.Generator().manual_seed(2))
    h = Gaussians.from_state(g.state())
    for k, v in g.params().items():
        assert torch.equal(v, getattr(h, k)), k
    assert h.config() == g.config()


# ---------------------------------------------------------------------------------------------
# spherical harmonics
# ---------------------------------------------------------------------------------------------
def test_sh_degree_0_and_1_and_clamp():
    gen = torch.Generator().manual_seed(0)
    sh = torch.randn(20, 48, generator=gen) * 0.3
    dirs = torch.nn.functional.normalize(torch.randn(20, 3, generator=gen), dim=-1)
    c0 = shmod.eval_sh(sh, dirs, 0)
    torch.testing.assert_close(c0, torch.clamp_min(shmod.C0 * sh[:, :3] + 0.5, 0))
    c1 = shmod.eval_sh(sh, dirs, 1)
    x, y, z = dirs.unbind(-1)
    k = sh.view(20, 16, 3)
    manual = shmod.C0 * k[:, 0] - shmod.C1 * y[:, None] * k[:, 1] + shmod.C1 * z[:, None] * k[:, 2] \
        - shmod.C1 * x[:, None] * k[:, 3] + 0.5
    torch.testing.assert_close(c1, manual.clamp(min=0))
    dark = torch.zeros(1, 48)
    dark[:, :3] = -5.0
    assert (shmod.eval_sh(dark, dirs[:1], 3) == 0).all()  # clamped at 0


def test_sh_basis_is_orthonormal_on_the_sphere():
    """Monte-Carlo: (4 pi / n) sum_k Y_i Y_j over uniform directions ~ identity (real SH, degree 3)."""
    gen = torch.Generator().manual_seed(0)
    d = torch.nn.functional.normalize(torch.randn(400_000, 3, generator=gen, dtype=torch.float64), dim=-1)
    y = shmod.sh_basis(d, 3)
    gram = 4 * math.pi * y.T @ y / len(d)
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=0.02, rtol=0)


# ---------------------------------------------------------------------------------------------
# PLY
# ---------------------------------------------------------------------------------------------
def test_ply_layout_and_exact_round_trip(tmp_path):
    from plyfile import PlyData

    g = Gaussians.random(64, isotropic=False, with_sh=True, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        g.sh.copy_(torch.arange(64 * 48, dtype=torch.float32).view(64, 48) / 100)
        g.quats.mul_(2.5)
    p = save_gaussians_ply(tmp_path / "g.ply", g)
    ply = PlyData.read(str(p))
    assert [prop.name for prop in ply["vertex"].properties] == PROPERTY_NAMES
    v = ply["vertex"]
    # f_rest is channel-major: f_rest_{c * 15 + k - 1} holds coefficient k of channel c
    sh = g.sh.detach().view(64, 16, 3)
    for c in range(3):
        for k in range(1, 16):
            assert np.array_equal(np.asarray(v[f"f_rest_{c * 15 + k - 1}"]), sh[:, k, c].numpy())
    assert np.array_equal(np.asarray(v["rot_0"]), g.quats[:, 0].detach().numpy())  # w first, not normalised
    h = load_gaussians_ply(p)
    for k in ("means", "log_scales", "quats", "opacity_logits", "sh"):
        assert torch.equal(getattr(h, k), getattr(g, k)), k
    assert not h.isotropic and h.sh_degree == 3  # recorded in the header (the three scales are equal here)
    torch.testing.assert_close(h.colours, shmod.sh_dc_to_rgb(g.sh[:, :3]).detach())
    save_gaussians_ply(tmp_path / "h.ply", h)
    assert (tmp_path / "h.ply").read_bytes() == p.read_bytes()


def test_ply_isotropic_model_without_sh(tmp_path):
    g = Gaussians.random(40, generator=torch.Generator().manual_seed(4))
    h = load_gaussians_ply(save_gaussians_ply(tmp_path / "a.ply", g))
    assert h.isotropic and torch.equal(h.log_scales, g.log_scales) and torch.equal(h.means, g.means)
    assert load_gaussians_ply(tmp_path / "a.ply", isotropic=False).log_scales.shape == (40, 3)
    torch.testing.assert_close(h.colours, g.colours, atol=1e-6, rtol=0)  # through f_dc = (c - 0.5) / C0
    h2 = load_gaussians_ply(save_gaussians_ply(tmp_path / "b.ply", h))
    for k, v in h.params().items():
        assert torch.equal(v, getattr(h2, k)), k  # exact from the first write on


def test_ply_lower_degree_extra_properties_and_errors(tmp_path):
    from plyfile import PlyData, PlyElement

    n = 5
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(9)] + \
        ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    data = np.zeros(n, dtype=[(k, "f4") for k in names])
    for i, k in enumerate(names):
        data[k] = np.arange(n) + i
    PlyData([PlyElement.describe(data, "vertex")]).write(str(tmp_path / "d1.ply"))
    g = load_gaussians_ply(tmp_path / "d1.ply")  # no header comments: degree and isotropy from the data
    assert g.sh_degree == 1 and not g.isotropic
    sh = g.sh.view(n, 16, 3)
    assert torch.equal(sh[:, 1, 0], torch.as_tensor(data["f_rest_0"]))
    assert torch.equal(sh[:, 3, 2], torch.as_tensor(data["f_rest_8"]))
    assert torch.all(sh[:, 4:] == 0)
    bad = np.zeros(n, dtype=[(k, "f4") for k in ("x", "y", "z")])
    PlyData([PlyElement.describe(bad, "vertex")]).write(str(tmp_path / "bad.ply"))
    with pytest.raises(UserError, match="bad.ply: expected a 3DGS .ply .* found missing properties"):
        load_gaussians_ply(tmp_path / "bad.ply")
    with pytest.raises(UserError, match="none.ply: .* found no such file"):
        load_gaussians_ply(tmp_path / "none.ply")


# ---------------------------------------------------------------------------------------------
# scenes
# ---------------------------------------------------------------------------------------------
def test_pose_conversion_follows_the_spec():
    R, T = look_at_view_transform(4.0, 20.0, 50.0, dtype=torch.float64)
    pose = np.concatenate([R[0].numpy().reshape(9), T[0].numpy(), [1.8, 1.9], [0.1, -0.05]])
    h, w = 90, 160
    cam = pose_to_camera(pose, (h, w))
    s = 45.0
    torch.testing.assert_close(cam.focal_length_screen((h, w))[0], torch.tensor([1.8 * s, 1.9 * s]))
    torch.testing.assert_close(cam.principal_point_screen((h, w))[0], torch.tensor([w / 2 - 0.1 * s, h / 2 + 0.05 * s]))
    # the same camera in NDC projects identically (the spec's conversion is exact)
    ndc = PerspectiveCameras(focal_length=((1.8, 1.9),), principal_point=((0.1, -0.05),), R=R.float(), T=T.float())
    pts = torch.randn(20, 3) * 0.5
    torch.testing.assert_close(cam.transform_points_screen(pts, (h, w)), ndc.transform_points_screen(pts, (h, w)))
    back = camera_to_pose(poses_to_cameras(pose[None], (h, w)), (h, w))
    np.testing.assert_allclose(back[0], pose, atol=1e-6)


def test_split_indices():
    train, test = split_indices(100)
    assert test == [16, 33, 50, 66, 83]
    assert len(train) == 95 and not set(train) & set(test)
    with pytest.raises(ValueError):
        split_indices(5)


def test_builtin_scene_format_and_loader(tmp_path):
    cfg = BuiltinSceneConfig(num_views=8, image_size=(24, 40), num_points=300)
    root = make_builtin_scene(tmp_path / "scene", cfg, force_synthetic=True)
    names = sorted(p.name for p in (root / "imgs").iterdir())
    assert names[0] == "frame000001.jpg" and names[-1] == "frame000008.jpg"  # numbered from 1, like the course
    pose = np.load(root / "poses" / "frame000004.npy")
    assert pose.shape == (16,) and pose.dtype == np.float64
    np.testing.assert_allclose(pose[12:14], cfg.focal_ndc)
    scene = load_scene(root)
    assert scene.images.shape == (8, 24, 40, 3) and scene.points.shape == (300, 3)
    assert scene.test_idx == [1, 2, 4, 5, 6] and scene.train_idx == [0, 3, 7]
    # the built-in scene is rendered on white and says so (a folder without scene.json is a course scene: black)
    assert scene.background == (1.0, 1.0, 1.0) and scene.up == (0.0, 1.0, 0.0)
    assert scene.data.startswith("stand-in: ") and "procedural" in scene.data
    corners = scene.images[:, [0, 0, -1, -1], [0, -1, 0, -1]]  # (V, 4, 3): background pixels
    assert float(corners.min()) > 0.97
    # the object sits in the middle of every view, points project inside the frames
    uv = scene.cameras.transform_points_screen(scene.points, (24, 40))
    assert (uv[..., 0] > 0).all() and (uv[..., 0] < 40).all() and (uv[..., 1] > 0).all() and (uv[..., 1] < 24).all()
    assert (scene.images.min(-1).values < 0.95).float().mean() > 0.05  # not all background
    with pytest.raises(UserError, match="missing: expected a folder"):
        load_scene(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------
# SSIM
# ---------------------------------------------------------------------------------------------
def test_ssim_matches_scikit_image_and_is_differentiable():
    from skimage.metrics import structural_similarity

    gen = torch.Generator().manual_seed(0)
    a = torch.rand(20, 23, 3, generator=gen, dtype=torch.float64)
    b = (a + 0.2 * torch.randn(20, 23, 3, generator=gen, dtype=torch.float64)).clamp(0, 1)
    ref = structural_similarity(b.numpy(), a.numpy(), win_size=7, data_range=1.0, channel_axis=-1)
    x = a.clone().requires_grad_(True)
    val = ssim(x, b)
    assert abs(val.item() - ref) < 1e-6
    val.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    m = evaluate_images([a, b], [a, a])
    assert m["psnr_per_view"][0] == float("inf") or m["psnr_per_view"][0] > 100
    assert abs(m["ssim_per_view"][1] - ref) < 1e-9 and m["ssim_per_view"][0] == pytest.approx(1.0)


def test_parse_background_and_scene_meta(tmp_path):
    from a4_gaussians_diffusion.gaussians.data import parse_background, read_scene_meta

    assert parse_background("black") == (0.0, 0.0, 0.0) and parse_background("White") == (1.0, 1.0, 1.0)
    assert parse_background("0.5,0.25,1") == (0.5, 0.25, 1.0) and parse_background(["0", "0.5", "1"]) == (0, 0.5, 1)
    assert parse_background(None) is None
    for bad in ("grey", "1,1", "0,0,2", ["1", "x", "0"]):
        with pytest.raises(UserError, match="--background: expected black, white or r,g,b"):
            parse_background(bad)
    assert read_scene_meta(tmp_path) == {}
    (tmp_path / "scene.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="scene.json: expected a JSON object, found a JSON list"):
        read_scene_meta(tmp_path)


def test_ply_keeps_the_scene_background_and_up(tmp_path):
    from a4_gaussians_diffusion.gaussians.ply import read_scene_info

    g = Gaussians.random(50, generator=torch.Generator().manual_seed(0))
    p = save_gaussians_ply(tmp_path / "g.ply", g, scene_info={"background": (0, 0, 0), "up": (0, -1, 0)})
    assert read_scene_info(p) == {"background": (0.0, 0.0, 0.0), "up": (0.0, -1.0, 0.0)}
    assert read_scene_info(save_gaussians_ply(tmp_path / "plain.ply", g)) == {}
    back = load_gaussians_ply(p)  # the comments do not disturb reading
    assert torch.equal(back.means, g.means.detach())
    with pytest.raises(ValueError):
        save_gaussians_ply(tmp_path / "bad.ply", g, scene_info={"colour": (1, 1, 1)})

