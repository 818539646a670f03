"""l3d.camera_paths: orbits look at their centre from their radius, spirals circle the training
cameras' mean pose and look at their focus, interpolation passes through its key cameras."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from l3d.camera_paths import average_pose, camera_quaternions, focus_point, interpolate_views, orbit, spiral
from l3d.cameras import PerspectiveCameras, look_at_view_transform


def look_error(cams: PerspectiveCameras, target: torch.Tensor) -> torch.Tensor:
    """(C,) distance in NDC of ``target``'s projection from the principal point (0 when looked at)."""
    ndc = cams.transform_points_ndc(target.reshape(1, 3).to(cams.dtype))[:, 0]  # (C, 3)
    return (ndc[:, :2] - cams.principal_point).norm(dim=-1)


def assert_rotations(R: torch.Tensor, atol=1e-5):
    eye = torch.eye(3, dtype=R.dtype).expand_as(R)
    torch.testing.assert_close(R.transpose(1, 2) @ R, eye, atol=atol, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(len(R), dtype=R.dtype), atol=atol, rtol=0)


@pytest.mark.parametrize("up", [(0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0), (1.0, 1.0, 0.5)])
def test_orbit_looks_at_centre_from_radius(up):
    c = torch.tensor([0.3, -0.2, 1.0])
    cams = orbit(24, center=c, radius=2.5, elevation=30.0, up=up, focal_length=1.7)
    assert len(cams) == 24 and cams.dtype == torch.float32
    centres = cams.get_camera_center()
    torch.testing.assert_close((centres - c).norm(dim=-1), torch.full((24,), 2.5), atol=1e-5, rtol=0)
    assert float(look_error(cams, c).max()) < 1e-5
    assert_rotations(cams.R)
    u = torch.nn.functional.normalize(torch.tensor(up), dim=0)
    # elevation: the height above the centre along up is r sin(30 deg), the same for every camera
    torch.testing.assert_close((centres - c) @ u, torch.full((24,), 2.5 * math.sin(math.radians(30))),
                               atol=1e-5, rtol=0)
    # the camera's up (view +Y) leans towards the world's up: the horizon stays level
    assert bool((cams.R[:, :, 1] @ u > 0).all())
    # evenly spaced, one full turn without repeating the first frame
    ring = (centres - c) - ((centres - c) @ u)[:, None] * u
    ang = torch.atan2(torch.cross(ring[:-1], ring[1:], dim=-1) @ u, (ring[:-1] * ring[1:]).sum(-1))
    torch.testing.assert_close(ang, torch.full((23,), 2 * math.pi / 24), atol=1e-5, rtol=0)
    assert cams.focal_length[0].tolist() == pytest.approx([1.7, 1.7])


def training_cameras(n=12, dist=4.0, at=(0.2, 0.1, -0.3)):
    """Cameras spread over an arc, all looking at ``at`` (a forward-facing capture)."""
    azim = torch.linspace(-40, 40, n)
    elev = 10 * torch.sin(torch.linspace(0, 3, n))
    R, T = look_at_view_transform(dist, elev, azim, at=(at,))
    return PerspectiveCameras(focal_length=1.5, principal_point=((0.05, -0.02),), R=R, T=T)


def test_spiral_circles_the_mean_pose_and_looks_at_the_focus():
    train = training_cameras()
    at = torch.tensor([0.2, 0.1, -0.3])
    torch.testing.assert_close(focus_point(train).float(), at, atol=1e-4, rtol=0)
    cams = spiral(train, 40, rotations=2.0)
    assert len(cams) == 40
    assert float(look_error(cams, at).max()) < 1e-4
    assert_rotations(cams.R)
    centre, axes = average_pose(train)
    assert_rotations(axes[None])
    local = (cams.get_camera_center().double() - centre) @ axes
    train_local = (train.get_camera_center().double() - centre) @ axes
    rad = torch.quantile(train_local.abs(), 0.9, dim=0)
    # an ellipse of the training spread in the mean camera plane (x, y), bobbing along z
    assert float(local[:, 0].abs().max()) == pytest.approx(float(rad[0]), rel=1e-3)
    assert float(local[:, 1].abs().max()) == pytest.approx(float(rad[1]), rel=0.02)
    assert bool((local.abs() <= rad + 1e-6).all())
    torch.testing.assert_close(local.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-6, rtol=0)
    assert cams.principal_point[0].tolist() == pytest.approx([0.05, -0.02])
    # with the world's up given, every camera's x axis is horizontal (a level horizon)
    level = spiral(train, 40, up=(0.0, 1.0, 0.0))
    assert float(level.R[:, 1, 0].abs().max()) < 1e-5
    assert float(look_error(level, at).max()) < 1e-4


def test_interpolation_hits_its_keys_and_stays_a_rotation():
    train = training_cameras(n=6)
    train = PerspectiveCameras(focal_length=torch.linspace(1.0, 2.0, 6), R=train.R, T=train.T)
    cams = interpolate_views(train, 31, indices=[0, 5])
    torch.testing.assert_close(cams.R[0], train.R[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(cams.T[0], train.T[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(cams.R[-1], train.R[5], atol=1e-6, rtol=0)
    torch.testing.assert_close(cams.T[-1], train.T[5], atol=1e-5, rtol=0)
    assert cams.focal_length[:, 0].tolist() == pytest.approx(torch.linspace(1.0, 2.0, 31).tolist(), abs=1e-6)
    q = camera_quaternions(cams)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(31, dtype=torch.float64), atol=1e-9, rtol=0)
    assert_rotations(cams.R)
    # slerp: constant angular speed between the two keys
    qn = q * torch.sign((q * q[:1]).sum(-1, keepdim=True))
    steps = 2 * torch.acos((qn[1:] * qn[:-1]).sum(-1).clamp(max=1.0))
    assert float(steps.max() - steps.min()) < 1e-5 and float(steps.sum()) > 0.1
    # two keys: the centres move on the straight line between them, at constant speed
    c = cams.get_camera_center().double()
    c0, c1 = train.get_camera_center().double()[[0, 5]]
    t = torch.linspace(0, 1, 31, dtype=torch.float64)[:, None]
    torch.testing.assert_close(c, c0 + t * (c1 - c0), atol=1e-5, rtol=0)


def test_spline_through_several_keys_and_loop():
    train = training_cameras(n=8)
    cams = interpolate_views(train, 22, indices=[0, 3, 5, 7], centers="spline")
    centres = cams.get_camera_center()
    key_c = train.get_camera_center()
    for frame, key in ((0, 0), (7, 3), (14, 5), (21, 7)):  # t = frame * 3 / 21 hits every key exactly
        torch.testing.assert_close(centres[frame], key_c[key], atol=1e-5, rtol=0)
        torch.testing.assert_close(cams.R[frame], train.R[key], atol=1e-5, rtol=0)
    looped = interpolate_views(train, 20, indices=[0, 4, 7], loop=True)
    assert len(looped) == 20
    torch.testing.assert_close(looped.R[0], train.R[0], atol=1e-6, rtol=0)
    assert float((looped.get_camera_center()[-1] - key_c[0]).norm()) < float((key_c[7] - key_c[0]).norm())


def test_spherical_centres_keep_their_distance_from_the_focus():
    at = torch.tensor([0.2, 0.1, -0.3])
    R, T = look_at_view_transform(torch.tensor([3.0, 5.0, 4.0]), torch.tensor([0.0, 30.0, -10.0]),
                                  torch.tensor([0.0, 120.0, 250.0]), at=(at.tolist(),))
    keys = PerspectiveCameras(focal_length=1.5, R=R, T=T)
    cams = interpolate_views(keys, 41, centers="spherical")
    d = (cams.get_camera_center().double() - at.double()).norm(dim=-1)
    t = torch.linspace(0, 2, 41, dtype=torch.float64)
    expected = torch.where(t <= 1, 3 + 2 * t, 5 - (t - 1))  # linear in each segment
    torch.testing.assert_close(d, expected, atol=1e-4, rtol=0)
    for frame, key in ((0, 0), (20, 1), (40, 2)):
        torch.testing.assert_close(cams.get_camera_center()[frame], keys.get_camera_center()[key], atol=1e-4, rtol=0)
    # between the keys the slerped rotations are re-aimed: every frame looks at the focus
    assert float(look_error(cams, at).max()) < 1e-4
    assert_rotations(cams.R)
    lin = interpolate_views(keys, 41, centers="linear")  # the chord cuts towards the object
    d_lin = (lin.get_camera_center().double() - at.double()).norm(dim=-1)
    assert float(d_lin[30]) < float(expected[30]) - 0.3


def test_bad_arguments():
    with pytest.raises(ValueError, match="radius"):
        orbit(4, radius=0.0)
    with pytest.raises(ValueError, match="at least 2 key"):
        interpolate_views(training_cameras(), 10, indices=[3])
    with pytest.raises(ValueError, match=r"\[0, 11\]"):
        interpolate_views(training_cameras(), 10, indices=[0, 12])


# ----------------------------------------------------------------------------------------------
# rendering a path through a scene (l3d.render_path with the A4 .ply loader)
# ----------------------------------------------------------------------------------------------
def tiny_gaussians_ply(path):
    """Two clusters of Gaussians, red on +x and blue on -x, written as a 3DGS .ply."""
    from a4_gaussians_diffusion.gaussians.model import Gaussians
    from a4_gaussians_diffusion.gaussians.ply import save_gaussians_ply

    g = torch.Generator().manual_seed(0)
    n = 40
    means = torch.randn(n, 3, generator=g) * 0.1
    means[: n // 2, 0] += 0.5
    means[n // 2:, 0] -= 0.5
    colours = torch.tensor([[1.0, 0.0, 0.0]]).repeat(n, 1)
    colours[n // 2:] = torch.tensor([0.0, 0.0, 1.0])
    gs = Gaussians(means, torch.full((n, 1), math.log(0.12)), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                   torch.full((n,), 3.0), colours)
    return save_gaussians_ply(path, gs, scene_info={"background": (1.0, 1.0, 1.0), "up": (0.0, -1.0, 0.0)})


def test_render_path_of_a_gaussian_ply_writes_gif_and_webm(tmp_path):
    import imageio.v3 as iio

    from l3d.errors import UserError
    from l3d.media import gif_timing
    from l3d.render_path import main

    ply = tiny_gaussians_ply(tmp_path / "tiny.ply")
    out = tmp_path / "out"
    m = main(["--scene", str(ply), "--path", "orbit", "--num_frames", "6", "--image_size", "32", "--fps", "3",
              "--elevation", "10", "--output_dir", str(out), "--device", "cpu"])
    assert m["frames"] == 6 and m["gaussians"] == 40
    assert gif_timing(out / "orbit.gif") == {"frames": 6.0, "seconds": pytest.approx(2.0, abs=0.1)}
    frames = iio.imread(out / "orbit.gif")[..., :3].astype(float) / 255  # (6, 32, 32, 3)
    assert frames.shape == (6, 32, 32, 3)
    covered = (np.abs(frames - 1.0).sum(-1) > 0.3).mean(axis=(1, 2))  # not the white background
    assert bool((covered > 0.03).all()) and bool((covered < 0.9).all())
    red = (frames[..., 0] - frames[..., 2] > 0.3).mean(axis=(1, 2))
    blue = (frames[..., 2] - frames[..., 0] > 0.3).mean(axis=(1, 2))
    assert float(red.max()) > 0.01 and float(blue.max()) > 0.01
    # the orbit turns around the scene: the red cluster's image side changes with the azimuth
    red_x = [(np.nonzero(f[..., 0] - f[..., 2] > 0.3)[1].mean() if (f[..., 0] - f[..., 2] > 0.3).any() else 16)
             for f in frames]
    assert max(red_x) - min(red_x) > 6
    video = iio.imread(out / "orbit.webm", plugin="pyav") if _has_pyav() else None
    assert (out / "orbit.webm").stat().st_size > 100 and (video is None or len(video) == 6)
    assert json_metrics(out)["path"] == "orbit"
    with pytest.raises(UserError, match="--views"):
        main(["--scene", str(ply), "--path", "spiral", "--output_dir", str(out), "--device", "cpu"])


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def json_metrics(folder):
    import json

    return json.loads((folder / "metrics.json").read_text())


def test_render_path_refuses_unknown_scenes(tmp_path):
    from l3d.errors import UserError
    from l3d.render_path import main

    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="--scene"):
        main(["--scene", str(tmp_path / "notes.txt"), "--output_dir", str(tmp_path / "o")])
