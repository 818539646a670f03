import math

import pytest
import torch

from l3d.cameras import (
    FoVPerspectiveCameras,
    PerspectiveCameras,
    look_at_view_transform,
    ndc_pixel_centers,
    rotation_about_axis,
    turntable_cameras,
)


def _look_at_by_formula(dist, elev, azim, at=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)):
    """The formulas of the conventions, written out with plain Python floats."""
    e, a = math.radians(elev), math.radians(azim)
    c = [dist * math.cos(e) * math.sin(a) + at[0], dist * math.sin(e) + at[1], dist * math.cos(e) * math.cos(a) + at[2]]

    def sub(p, q):
        return [p[i] - q[i] for i in range(3)]

    def cross(p, q):
        return [p[1] * q[2] - p[2] * q[1], p[2] * q[0] - p[0] * q[2], p[0] * q[1] - p[1] * q[0]]

    def norm(p):
        n = math.sqrt(sum(x * x for x in p))
        return [x / n for x in p]

    z = norm(sub(list(at), c))
    x = norm(cross(list(up), z))
    y = cross(z, x)
    R = [[x[i], y[i], z[i]] for i in range(3)]  # columns x, y, z
    T = [-sum(R[j][i] * c[j] for j in range(3)) for i in range(3)]
    return torch.tensor(R), torch.tensor(T), torch.tensor(c)


@pytest.mark.parametrize("dist,elev,azim", [(3, 0, 0), (2.7, 30, 45), (5, -20, 200), (1.5, 80, -90)])
def test_look_at_matches_conventions(dist, elev, azim):
    R, T = look_at_view_transform(dist, elev, azim)
    R_ref, T_ref, c = _look_at_by_formula(dist, elev, azim)
    assert torch.allclose(R[0], R_ref, atol=1e-6)
    assert torch.allclose(T[0], T_ref, atol=1e-5)
    cams = FoVPerspectiveCameras(R=R, T=T)
    assert torch.allclose(cams.get_camera_center()[0], c, atol=1e-5)
    # the point looked at is on the optical axis, in front of the camera
    v = cams.world_to_view(torch.zeros(1, 3))
    assert torch.allclose(v[0, 0, :2], torch.zeros(2), atol=1e-6) and v[0, 0, 2] == pytest.approx(dist, abs=1e-5)


def test_look_at_special_cases():
    # azim 0 puts the camera on +Z looking towards -Z: view +X is world -X
    R, T = look_at_view_transform(3.0, 0.0, 0.0)
    assert torch.allclose(R[0], torch.diag(torch.tensor([-1.0, 1.0, -1.0])), atol=1e-6)
    assert torch.allclose(T[0], torch.tensor([0.0, 0.0, 3.0]), atol=1e-6)
    # eye (0, 0, -3), up +Y gives R = I, T = (0, 0, 3) (the assignment's baseline camera)
    R, T = look_at_view_transform(eye=((0.0, 0.0, -3.0),))
    assert torch.allclose(R[0], torch.eye(3), atol=1e-6)
    assert torch.allclose(T[0], torch.tensor([0.0, 0.0, 3.0]), atol=1e-6)
    # looking straight down the up vector falls back to a valid rotation
    R, _ = look_at_view_transform(eye=((0.0, 3.0, 0.0),))
    assert torch.allclose(R[0] @ R[0].T, torch.eye(3), atol=1e-5)
    # batched: broadcast of a list of azimuths
    R, T = look_at_view_transform(2.0, 10.0, [0.0, 90.0, 180.0])
    assert R.shape == (3, 3, 3) and T.shape == (3, 3)


def _random_cameras(n, gen):
    R, T = look_at_view_transform(
        torch.rand(n, generator=gen) * 3 + 2, torch.rand(n, generator=gen) * 60 - 30, torch.rand(n, generator=gen) * 360
    )
    return R, T


def test_project_unproject_round_trip():
    gen = torch.Generator().manual_seed(0)
    R, T = _random_cameras(4, gen)
    cams = [
        FoVPerspectiveCameras(fov=torch.tensor([40.0, 60.0, 75.0, 90.0]), R=R, T=T),
        PerspectiveCameras(focal_length=torch.rand(4, 2, generator=gen) + 1, principal_point=torch.rand(4, 2, generator=gen) * 0.2, R=R, T=T),
        PerspectiveCameras(focal_length=300.0, principal_point=((70.0, 50.0),), R=R, T=T, in_ndc=False, image_size=(100, 140)),
    ]
    pts = torch.rand(4, 500, 3, generator=gen) * 2 - 1
    for cam in cams:
        ndc = cam.transform_points_ndc(pts)
        back = cam.unproject_points(ndc)
        assert (back - pts).abs().max() < 1e-5
        view = cam.unproject_points(ndc, world_coordinates=False)
        assert torch.allclose(view, cam.world_to_view(pts), atol=1e-5)


def test_projection_formulas():
    gen = torch.Generator().manual_seed(1)
    R, T = _random_cameras(2, gen)
    pts = torch.rand(2, 50, 3, generator=gen) - 0.5
    view = torch.matmul(pts, R) + T[:, None]
    X, Y, Z = view.unbind(-1)
    fov = FoVPerspectiveCameras(fov=50.0, R=R, T=T)
    ndc = fov.transform_points_ndc(pts)
    t = math.tan(math.radians(25))
    assert torch.allclose(ndc[..., 0], X / (Z * t), atol=1e-5)
    assert torch.allclose(ndc[..., 1], Y / (Z * t), atol=1e-5)
    assert torch.allclose(ndc[..., 2], Z, atol=1e-6)
    # screen-space intrinsics: u = p_x - f_x X / Z, v = p_y - f_y Y / Z (pixels)
    scr = PerspectiveCameras(focal_length=((320.0, 300.0),), principal_point=((64.0, 60.0),), R=R, T=T,
                             in_ndc=False, image_size=(128, 128))
    uv = scr.transform_points_screen(pts, (128, 128))
    assert torch.allclose(uv[..., 0], 64.0 - 320.0 * X / Z, atol=1e-3)
    assert torch.allclose(uv[..., 1], 60.0 - 300.0 * Y / Z, atol=1e-3)
    assert torch.allclose(scr.focal_length_screen((128, 128))[0], torch.tensor([320.0, 300.0]))
    assert torch.allclose(scr.principal_point_screen((128, 128))[0], torch.tensor([64.0, 60.0]))


def test_pixel_centres():
    g = ndc_pixel_centers(4)
    assert torch.allclose(g[0, :, 0], torch.tensor([0.75, 0.25, -0.25, -0.75]))  # column i -> x
    assert torch.allclose(g[:, 0, 1], torch.tensor([0.75, 0.25, -0.25, -0.75]))  # row j -> y
    g = ndc_pixel_centers((2, 4))  # wide image: the short side (H) spans [-1, 1]
    assert torch.allclose(g[0, :, 0], torch.tensor([1.5, 0.5, -0.5, -1.5]))
    assert torch.allclose(g[:, 0, 1], torch.tensor([0.5, -0.5]))


def test_turntable_and_rotations():
    cams = turntable_cameras(8, dist=2.0, elev=10.0)
    c = cams.get_camera_center()
    assert len(cams) == 8
    assert torch.allclose(c.norm(dim=-1), torch.full((8,), 2.0), atol=1e-5)
    assert not torch.allclose(c[0], c[-1])  # the end azimuth is excluded
    Rz = rotation_about_axis(90.0, "z")[0]
    assert torch.allclose(Rz @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    with pytest.raises(ValueError, match="axis"):
        rotation_about_axis(10.0, "w")


def test_bad_shapes_raise_value_errors():
    with pytest.raises(ValueError, match=r"R must have shape"):
        PerspectiveCameras(R=torch.eye(4)[None])
    with pytest.raises(ValueError, match="image_size"):
        PerspectiveCameras(focal_length=100.0, in_ndc=False)
    cams = FoVPerspectiveCameras(R=torch.eye(3)[None].repeat(2, 1, 1), T=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="batch 1 or 2"):
        cams.world_to_view(torch.zeros(3, 5, 3))
