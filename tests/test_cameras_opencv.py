"""Cameras from other conventions: OpenCV conversion both ways, orthographic cameras (projection,
unprojection, parallel rays, a ray-cast sphere), PyTorch3D's accepted input forms, look-at from
straight above / below, and the Gaussian rasteriser with off-centre principal points and a
per-camera near plane."""

import math

import numpy as np
import pytest
import torch

from a4_gaussians_diffusion.gaussians.rasterize import (
    RasterSettings, covariance_3d, project_gaussians, projection_jacobian, rasterize_gaussians)
from l3d.cameras import (
    FoVOrthographicCameras, FoVPerspectiveCameras, OrthographicCameras, PerspectiveCameras,
    cameras_from_opencv_projection, look_at_view_transform, opencv_from_cameras)
from l3d.ops import ico_sphere
from l3d.rays import image_rays, ray_sphere_bounds

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ---------------------------------------------------------------------------------------------
# OpenCV
# ---------------------------------------------------------------------------------------------
def _random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _random_opencv(rng, n, size):
    """n random OpenCV cameras (R, t, K) for images of ``size`` = (H, W), K off-centre, fx != fy."""
    h, w = size
    R = np.stack([_random_rotation(rng) for _ in range(n)])
    t = rng.normal(size=(n, 3)) + np.array([0.0, 0.0, 4.0])
    K = np.zeros((n, 3, 3))
    K[:, 0, 0] = rng.uniform(300, 600, n)
    K[:, 1, 1] = K[:, 0, 0] * rng.uniform(0.8, 1.25, n)  # fx != fy
    K[:, 0, 2] = w / 2 + rng.uniform(-60, 60, n)  # off-centre principal point
    K[:, 1, 2] = h / 2 + rng.uniform(-40, 40, n)
    K[:, 2, 2] = 1.0
    return R, t, K


def _points_in_front(rng, R, t, p):
    """(C, P, 3) world points that lie 2-6 units in front of each OpenCV camera."""
    cam = np.concatenate([rng.uniform(-1.5, 1.5, (len(R), p, 2)), rng.uniform(2, 6, (len(R), p, 1))], -1)
    return np.einsum("cji,cpj->cpi", R, cam - t[:, None])  # X = R^T (x_cam - t)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_opencv_cameras_project_like_K_R_t(dtype):
    rng = np.random.default_rng(0)
    size = (300, 420)  # non-square: H < W
    R, t, K = _random_opencv(rng, 4, size)
    X = _points_in_front(rng, R, t, 200)
    # plain OpenCV maths: x = K (R X + t), (u, v) = x[:2] / x[2]
    x = np.einsum("cij,cjk,cpk->cpi", K, R, X) + np.einsum("cij,cj->ci", K, t)[:, None]
    uv = x[..., :2] / x[..., 2:]
    cams = cameras_from_opencv_projection(torch.tensor(R, dtype=dtype), torch.tensor(t, dtype=dtype),
                                          torch.tensor(K, dtype=dtype), size)
    assert isinstance(cams, PerspectiveCameras) and len(cams) == 4 and cams.dtype == dtype
    ours = cams.transform_points_screen(torch.tensor(X, dtype=dtype), size)
    tol = 1e-4 if dtype == torch.float64 else 5e-3  # pixels (float32 carries ~7 digits of ~400 px)
    err = np.abs(ours[..., :2].double().numpy() - uv).max()
    assert err < tol, err
    # the carried depth is OpenCV's camera z
    z_cam = (np.einsum("cij,cpj->cpi", R, X) + t[:, None])[..., 2]
    assert np.abs(ours[..., 2].double().numpy() - z_cam).max() < 1e-5


def test_opencv_round_trip_recovers_K_R_t():
    rng = np.random.default_rng(1)
    sizes = np.array([[300, 420], [480, 360], [256, 256]])  # one (H, W) per camera
    R, t, K = _random_opencv(rng, 3, (300, 420))
    args = [torch.tensor(a) for a in (R, t, K)]
    cams = cameras_from_opencv_projection(*args, torch.tensor(sizes))
    R2, t2, K2 = opencv_from_cameras(cams, torch.tensor(sizes))
    for a, b in zip((R2, t2, K2), args):
        assert (a - b).abs().max() < 1e-5
    # float32 keeps the relative precision of its format
    cams32 = cameras_from_opencv_projection(*(a.float() for a in args), torch.tensor(sizes))
    _, _, K32 = opencv_from_cameras(cams32, torch.tensor(sizes))
    assert ((K32.double() - args[2]).abs() / args[2].abs().clamp(min=1)).max() < 1e-6
    # and the other way: l3d cameras (FoV, NDC, screen intrinsics) -> OpenCV -> l3d project alike
    Rl, Tl = look_at_view_transform(3.0, [10.0, -20.0], [30.0, 200.0], dtype=torch.float64)
    for cam in (FoVPerspectiveCameras(fov=50.0, R=Rl, T=Tl),
                PerspectiveCameras(focal_length=((1.7, 2.2),), principal_point=((0.2, -0.1),), R=Rl, T=Tl),
                PerspectiveCameras(focal_length=300.0, principal_point=((70.0, 50.0),), R=Rl, T=Tl, in_ndc=False,
                                   image_size=(100, 140))):
        back = cameras_from_opencv_projection(*opencv_from_cameras(cam, (100, 140)), (100, 140))
        pts = torch.rand(2, 50, 3, dtype=torch.float64) - 0.5
        assert torch.allclose(back.transform_points_screen(pts, (100, 140)), cam.transform_points_screen(pts, (100, 140)),
                              atol=1e-8)


def test_opencv_conversion_by_hand():
    # K: fx 100, fy 120, (cx, cy) = (30, 20); image H 40 x W 80 -> s = 20 (half the shorter side)
    K = torch.tensor([[100.0, 0.0, 30.0], [0.0, 120.0, 20.0], [0.0, 0.0, 1.0]])
    cams = cameras_from_opencv_projection(torch.eye(3), torch.tensor([1.0, 2.0, 3.0]), K, (40, 80))
    assert torch.allclose(cams.focal_length, torch.tensor([[5.0, 6.0]]))  # f / s
    assert torch.allclose(cams.principal_point, torch.tensor([[0.5, 0.0]]))  # (W/2 - cx) / s, (H/2 - cy) / s
    assert torch.allclose(cams.R, torch.diag(torch.tensor([-1.0, -1.0, 1.0]))[None])  # x, y flip
    assert torch.allclose(cams.T, torch.tensor([[-1.0, -2.0, 3.0]]))
    # the OpenCV camera looks along +z from -t: its centre is (-1, -2, -3)
    assert torch.allclose(cams.get_camera_center(), torch.tensor([[-1.0, -2.0, -3.0]]))


def test_opencv_conversion_rejects_what_it_cannot_represent():
    K = torch.tensor([[100.0, 2.0, 30.0], [0.0, 120.0, 20.0], [0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="skew"):
        cameras_from_opencv_projection(torch.eye(3), torch.zeros(3), K, (40, 80))
    with pytest.raises(ValueError, match="camera_matrix must have shape"):
        cameras_from_opencv_projection(torch.eye(3), torch.zeros(3), torch.eye(4), (40, 80))
    with pytest.raises(ValueError, match="perspective"):
        opencv_from_cameras(OrthographicCameras(), (40, 80))


# ---------------------------------------------------------------------------------------------
# orthographic cameras
# ---------------------------------------------------------------------------------------------
def test_orthographic_projection_is_analytic():
    gen = torch.Generator().manual_seed(2)
    R, T = look_at_view_transform(3.0, [20.0, -35.0], [10.0, 250.0])
    f = torch.tensor([[0.7, 0.9], [1.3, 1.1]])
    p = torch.tensor([[0.1, -0.2], [-0.3, 0.05]])
    cam = OrthographicCameras(focal_length=f, principal_point=p, R=R, T=T)
    assert not cam.is_perspective() and PerspectiveCameras().is_perspective()
    pts = torch.rand(2, 64, 3, generator=gen) * 2 - 1
    view = torch.matmul(pts, R) + T[:, None]
    ndc = cam.transform_points_ndc(pts)
    assert torch.allclose(ndc[..., :2], view[..., :2] * f[:, None] + p[:, None], atol=1e-6)
    assert torch.allclose(ndc[..., 2], view[..., 2], atol=1e-6)  # depth carried along
    # unprojection inverts it, in world and in view space
    assert torch.allclose(cam.unproject_points(ndc), pts, atol=1e-5)
    assert torch.allclose(cam.unproject_points(ndc, world_coordinates=False), view, atol=1e-5)
    # screen-space intrinsics: u = p_x - f_x X, v = p_y - f_y Y (pixels), non-square image
    scr = OrthographicCameras(focal_length=((40.0, 30.0),), principal_point=((70.0, 45.0),), R=R, T=T, in_ndc=False,
                              image_size=(100, 140))
    uv = scr.transform_points_screen(pts, (100, 140))
    assert torch.allclose(uv[..., 0], 70.0 - 40.0 * view[..., 0], atol=1e-4)
    assert torch.allclose(uv[..., 1], 45.0 - 30.0 * view[..., 1], atol=1e-4)
    # the camera "centre" is the origin of view space
    assert torch.allclose(cam.world_to_view(cam.get_camera_center()[:, None])[:, 0], torch.zeros(2, 3), atol=1e-5)
    # indexing and dtype moves keep the kind
    assert type(cam[1]) is OrthographicCameras and torch.allclose(cam[1].focal_length, f[1:])
    assert cam.to(dtype=torch.float64).principal_point.dtype == torch.float64


def test_fov_orthographic_maps_its_box_to_ndc():
    R, T = look_at_view_transform(4.0, 15.0, 60.0)
    cam = FoVOrthographicCameras(min_x=-0.5, max_x=1.5, min_y=-2.0, max_y=1.0, scale_xyz=((2.0, 0.5, 3.0),), R=R, T=T)
    # view points whose *scaled* x, y sit on the box corners land on the NDC corners
    corners = torch.tensor([[1.5 / 2.0, 1.0 / 0.5, 2.0], [-0.5 / 2.0, -2.0 / 0.5, 5.0], [0.5 / 2.0, -0.5 / 0.5, 3.0]])
    ndc = cam.view_to_ndc(corners[None])[0]
    assert torch.allclose(ndc[:, :2], torch.tensor([[1.0, 1.0], [-1.0, -1.0], [0.0, 0.0]]), atol=1e-6)
    assert torch.allclose(ndc[:, 2], corners[:, 2])
    # the PyTorch3D defaults: the box [-1, 1]^2 with unit scale, znear 1, zfar 100
    d = FoVOrthographicCameras()
    assert torch.allclose(d.focal_length, torch.ones(1, 2)) and torch.allclose(d.principal_point, torch.zeros(1, 2))
    assert d.znear == 1.0 and d.zfar == 100.0
    with pytest.raises(ValueError, match="max_x"):
        FoVOrthographicCameras(min_x=1.0, max_x=1.0)


def test_orthographic_rays_are_parallel_and_perspective_rays_unchanged():
    R, T = look_at_view_transform(3.0, 30.0, 45.0)
    ortho = OrthographicCameras(focal_length=0.5, principal_point=((0.1, 0.0),), R=R, T=T)
    rays = image_rays(ortho, 8)  # (1, 64)
    axis = R[0, :, 2]  # the view +Z axis in world space
    assert torch.allclose(rays.directions, axis.expand_as(rays.directions), atol=1e-6)
    # origins lie on the view plane Z = 0 and project back onto their own pixels
    assert torch.allclose(ortho.world_to_view(rays.origins)[..., 2], torch.zeros(1, 64), atol=1e-5)
    assert torch.allclose(ortho.transform_points_ndc(rays.origins)[..., :2], rays.xys, atol=1e-5)
    persp = PerspectiveCameras(focal_length=1.5, R=R, T=T)
    prays = image_rays(persp, 8)
    assert torch.allclose(prays.origins, persp.get_camera_center()[:, None].expand(1, 64, 3))
    end = prays.origins + prays.directions * 2.0
    assert torch.allclose(persp.transform_points_ndc(end)[..., :2], prays.xys, atol=1e-5)


@pytest.mark.parametrize("cam_kind", ["ndc", "fov"])
def test_ray_cast_unit_sphere_covers_pi_r2_pixels(cam_kind):
    # an orthographic camera whose image (S x S) spans [-2, 2]^2 in view units: 1 unit = S / 4 px
    S = 160
    R, T = look_at_view_transform(5.0, 35.0, 120.0)
    if cam_kind == "ndc":
        cam = OrthographicCameras(focal_length=0.5, R=R, T=T)
    else:
        cam = FoVOrthographicCameras(min_x=-2.0, max_x=2.0, min_y=-2.0, max_y=2.0, R=R, T=T)
    rays = image_rays(cam, S)
    _, _, hit = ray_sphere_bounds(rays.origins, rays.directions, 1.0)
    expected = math.pi * (S / 4.0) ** 2  # pi r^2 with r = 40 px
    assert abs(hit.sum().item() - expected) / expected < 0.01
    # it is a disc centred on the image: the mean hit pixel is the centre
    rows, cols = torch.nonzero(hit[0].view(S, S), as_tuple=True)
    assert abs(rows.float().mean().item() + 0.5 - S / 2) < 0.5 and abs(cols.float().mean().item() + 0.5 - S / 2) < 0.5
    # the mesh unit sphere projects to the same disc: farthest projected vertex at r = 40 px
    verts = ico_sphere(3).verts_packed()
    uv = cam.transform_points_screen(verts, S)[0, :, :2]
    radius = (uv - S / 2).norm(dim=-1)
    assert radius.max().item() == pytest.approx(S / 4, rel=1e-4)


def test_mesh_rasteriser_projects_orthographically():
    """An orthographic camera through rasterize_meshes: the unit sphere is a disc of pi r^2 pixels and the
    depth at the centre is the view-space distance to the front of the sphere (affine, not 1/z)."""
    from l3d.raster import rasterize_meshes
    S = 160
    R, T = look_at_view_transform(5.0, 35.0, 120.0)
    cam = OrthographicCameras(focal_length=0.5, R=R, T=T)
    frags = rasterize_meshes(ico_sphere(4), cam, S)
    covered = (frags.pix_to_face[0] >= 0).sum().item()
    expected = math.pi * (S / 4.0) ** 2
    assert abs(covered - expected) / expected < 0.01
    assert frags.zbuf[0, S // 2, S // 2].item() == pytest.approx(4.0, abs=0.01)


# ---------------------------------------------------------------------------------------------
# PyTorch3D's input forms
# ---------------------------------------------------------------------------------------------
def test_focal_length_and_principal_point_forms():
    R, T = look_at_view_transform(3.0, 0.0, [0.0, 90.0, 180.0])  # three cameras
    pts = torch.rand(3, 20, 3) - 0.5
    want = PerspectiveCameras(focal_length=torch.full((3, 2), 1.7), R=R, T=T).transform_points_ndc(pts)
    for f in (1.7, torch.tensor(1.7), torch.tensor([[1.7]]), torch.full((3, 1), 1.7), torch.full((3,), 1.7),
              torch.full((1, 2), 1.7)):
        cam = PerspectiveCameras(focal_length=f, R=R, T=T)
        assert cam.focal_length.shape == (3, 2)
        assert torch.allclose(cam.transform_points_ndc(pts), want)
    cam = PerspectiveCameras(focal_length=torch.tensor([[1.0], [2.0], [3.0]]), principal_point=torch.tensor(
        [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]), R=R, T=T)
    assert torch.allclose(cam.focal_length, torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]))
    assert torch.allclose(cam.principal_point[2], torch.tensor([0.5, 0.6]))
    for ortho_f in (0.5, torch.tensor([[0.5]]), torch.full((3, 1), 0.5)):
        assert OrthographicCameras(focal_length=ortho_f, R=R, T=T).focal_length.shape == (3, 2)
    with pytest.raises(ValueError, match="focal_length must have shape"):
        PerspectiveCameras(focal_length=torch.ones(3, 3))
    with pytest.raises(ValueError, match="disagree"):
        PerspectiveCameras(focal_length=torch.ones(2, 1), R=R, T=T)


# ---------------------------------------------------------------------------------------------
# look-at from straight above / below
# ---------------------------------------------------------------------------------------------
def _R(x, y, z):
    """R with columns x, y, z (the camera axes in world space)."""
    return torch.tensor([x, y, z], dtype=torch.float32).T


@pytest.mark.parametrize("elev,azim,expected", [
    # float32 cos(90 deg) = -4.4e-8 puts the camera just past the pole, on the -Z side for azim 0:
    # z = -Y, x follows up x z = (1, 0, 0) direction, y = z x x = +Z (the image's up is world +Z)
    (90.0, 0.0, _R((1, 0, 0), (0, 0, 1), (0, -1, 0))),
    # azim 90: the residual is along -X, so x = (0, 0, -1) and y = +X
    (90.0, 90.0, _R((0, 0, -1), (1, 0, 0), (0, -1, 0))),
    # straight below: z = +Y, x = +X, y = z x x = -Z
    (-90.0, 0.0, _R((1, 0, 0), (0, 0, -1), (0, 1, 0))),
])
def test_look_at_straight_above_and_below_keeps_pytorch3d_axes(elev, azim, expected):
    R, T = look_at_view_transform(2.0, elev, azim)
    assert torch.allclose(R[0], expected, atol=1e-5)
    assert torch.allclose(T[0], torch.tensor([0.0, 0.0, 2.0]), atol=1e-5)
    # the image is not rotated: it is the limit of cameras just past the pole (azim + 180)
    R_near, _ = look_at_view_transform(2.0, math.copysign(89.99, elev), azim + 180.0)
    assert (R_near[0] - R[0]).abs().max() < 1e-3


def test_look_at_exactly_on_the_up_axis():
    # eye given exactly on the up axis: up x z is exactly 0; the result is the same rotation as
    # the float32 elev = +-90, azim = 0 case above (PyTorch3D itself returns zero columns here)
    R, T = look_at_view_transform(eye=((0.0, 3.0, 0.0), (0.0, -3.0, 0.0)))
    assert torch.allclose(R[0], _R((1, 0, 0), (0, 0, 1), (0, -1, 0)), atol=1e-5)
    assert torch.allclose(R[1], _R((1, 0, 0), (0, 0, -1), (0, 1, 0)), atol=1e-5)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(R), torch.ones(2), atol=1e-6)
    # an up vector along X, camera on the X axis
    R, _ = look_at_view_transform(eye=((4.0, 0.0, 0.0),), up=((1.0, 0.0, 0.0),))
    assert torch.allclose(R[0] @ R[0].T, torch.eye(3), atol=1e-6) and torch.allclose(R[0][:, 2], torch.tensor(
        [-1.0, 0.0, 0.0]))


# ---------------------------------------------------------------------------------------------
# Gaussian rasteriser: off-centre principal points and the camera's near plane
# ---------------------------------------------------------------------------------------------
def _gaussian_scene(n=160, seed=0):
    """Isotropic and anisotropic Gaussians around the origin (radius ~1), seen by a camera at (0, 0, -4)."""
    gen = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=gen) * 2 - 1) * torch.tensor([1.6, 0.6, 0.6])
    scales = torch.rand(n, 3, generator=gen) * 0.12 + 0.04
    quats = torch.randn(n, 4, generator=gen)
    opac = torch.rand(n, generator=gen) * 0.6 + 0.3
    colours = torch.rand(n, 3, generator=gen)
    return means, covariance_3d(scales, quats), opac, colours


def _cam(px, py, w, h, znear=None):
    R, T = look_at_view_transform(eye=((0.0, 0.0, -4.0),))
    return PerspectiveCameras(focal_length=60.0, principal_point=((px, py),), R=R, T=T, in_ndc=False,
                              image_size=(h, w), znear=znear)


def test_off_centre_render_is_the_centred_render_shifted():
    means, cov, opac, col = _gaussian_scene()
    h, w = 48, 64
    dx, dy = 7, -5  # principal point offset in pixels
    ref = rasterize_gaussians(means, cov, opac, col, _cam(w / 2, h / 2, w, h), RasterSettings((h, w)))
    off = rasterize_gaussians(means, cov, opac, col, _cam(w / 2 + dx, h / 2 + dy, w, h), RasterSettings((h, w)))
    # off[v, u] = ref[v - dy, u - dx]; compare away from the borders
    m = 8
    v0, v1 = m + max(dy, 0), h - m + min(dy, 0)  # rows of `off` whose source rows are inside `ref`
    u0, u1 = m + max(dx, 0), w - m + min(dx, 0)
    a = off.image[v0:v1, u0:u1]
    b = ref.image[v0 - dy:v1 - dy, u0 - dx:u1 - dx]
    assert a.shape == b.shape and a.shape[0] > 20
    assert (a - b).abs().max() < 1e-5
    assert (ref.mask > 0.5).float().mean() > 0.3  # the scene fills a good part of the image


def test_far_off_centre_camera_is_a_crop_of_a_wide_centred_render():
    # an OpenCV-style crop: the principal point lies right of the image (u = 96 of a 64-px image);
    # the image is columns 0..63 of a centred 192-px render. The Jacobian clamp must follow the
    # principal point: centred on the optical axis, it would flatten every Gaussian past
    # u = 96 - 1.3 * 32 of the crop, i.e. most of the image.
    means, cov, opac, col = _gaussian_scene(seed=1)
    means = means + torch.tensor([4.3, 0.0, 0.0])  # view X = world X here: the crop sees X in [2.1, 6.4]
    h, w = 48, 64
    wide = rasterize_gaussians(means, cov, opac, col, _cam(96.0, h / 2, 192, h), RasterSettings((h, 192)))
    crop = rasterize_gaussians(means, cov, opac, col, _cam(96.0, h / 2, w, h), RasterSettings((h, w)))
    m = 10
    diff = (crop.image[m:h - m, m:w - m] - wide.image[m:h - m, m:w - m]).abs().max()
    assert diff < 1e-5, diff
    assert (crop.mask[m:h - m, m:w - m] > 0.5).float().mean() > 0.2  # there is something to compare
    # the clamp range itself: (p_x - W / 2) / f_x +- 1.3 * 0.5 W / f_x
    view = torch.tensor([[100.0, 0.0, 1.0], [-100.0, 0.0, 1.0]])
    J = projection_jacobian(view, torch.tensor([60.0, 60.0]), (h, w), torch.tensor([96.0, h / 2]))
    tx = -J[:, 0, 2] / 60.0  # J[0, 2] = -f t_x / t_z^2 with t_z = 1
    assert torch.allclose(tx, torch.tensor([(96 - 32 + 1.3 * 32) / 60.0, (96 - 32 - 1.3 * 32) / 60.0]))
    Jc = projection_jacobian(view, torch.tensor([60.0, 60.0]), (h, w))  # no principal point: centred
    assert torch.allclose(-Jc[:, 0, 2] / 60.0, torch.tensor([1.3 * 32 / 60.0, -1.3 * 32 / 60.0]))


def test_gaussians_in_front_of_the_camera_znear_are_culled():
    means, cov, opac, col = _gaussian_scene(seed=2)
    size = (48, 64)
    cam_far = _cam(32.0, 24.0, 64, 48, znear=4.0)  # depth of the means: 4 + z, z in [-0.6, 0.6]
    depth = cam_far.world_to_view(means)[0, :, 2]
    keep = depth > 4.0
    assert 0.2 < keep.float().mean() < 0.8
    out = rasterize_gaussians(means, cov, opac, col, cam_far, RasterSettings(size))
    assert set(out.index.tolist()) == set(torch.nonzero(keep).flatten().tolist())
    only = rasterize_gaussians(means[keep], cov[keep], opac[keep], col[keep], _cam(32.0, 24.0, 64, 48), RasterSettings(size))
    assert (out.image - only.image).abs().max() < 1e-6
    # no znear on the camera: nothing is culled; an explicit setting overrides the camera
    assert len(rasterize_gaussians(means, cov, opac, col, _cam(32.0, 24.0, 64, 48), RasterSettings(size)).index) == len(means)
    over = project_gaussians(means, cov, opac, col, cam_far, RasterSettings(size, znear=0.0))
    assert len(over.index) == len(means)
    with pytest.raises(ValueError, match="perspective"):
        rasterize_gaussians(means, cov, opac, col, OrthographicCameras(), RasterSettings(size))
