"""Camera paths for fly-through videos: orbits, spirals around training cameras, and
interpolation between training views. Each returns a batch of C :class:`~l3d.cameras.PerspectiveCameras`
(conventions: :mod:`l3d.cameras`; NDC intrinsics).

    cams = orbit(60, center=(0, 0, 0), radius=4.0, elevation=20.0, up=(0, 0, 1), focal_length=2.0)
    cams = spiral(train_cams, 90)            # LLFF / nerfstudio style, around the mean training pose
    cams = interpolate_views(train_cams, 60, indices=[0, 10, 20])   # slerp rotations, spline centres

* :func:`orbit` - C cameras on the circle of ``radius`` around ``center`` at ``elevation`` degrees
  above the plane perpendicular to ``up``, all looking at ``center``; azimuth from ``azim_start``
  up to (not including) ``azim_start + 360``, so a looping video does not repeat a frame.
* :func:`spiral` - the average training pose (mean centre; mean forward and up directions made
  orthonormal) carries an ellipse-and-bob path: ``centre + rx cos(t) x + ry sin(t) y + rz sin(z_rate t) z``
  over ``rotations`` turns; every camera looks at the focus point, by default the point nearest
  to all training optical axes (least squares), where the training cameras look. The radii default to
  the 90th percentile of the training centres' offsets in the average frame (LLFF's rule).
* :func:`interpolate_views` - through chosen training cameras in order: rotations by spherical
  linear interpolation of their quaternions (scipy ``Slerp``), centres by a natural cubic spline
  (``"spline"``, three or more keys), piecewise linearly, or ``"spherical"``ly about the point the
  keys look at (for object-centric captures), focal length and principal point linearly. The path starts exactly at the first key camera and ends exactly at the last.
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .cameras import PerspectiveCameras, look_at_view_transform

__all__ = ["orbit", "spiral", "interpolate_views", "average_pose", "focus_point", "camera_quaternions", "PATHS"]

Vec3 = Union[Sequence[float], torch.Tensor]
#: The path names :mod:`l3d.render_path` accepts.
PATHS = ("orbit", "spiral", "interp")


def _perpendicular_basis(up: torch.Tensor):
    """Two unit vectors (3,) spanning the plane perpendicular to the unit vector ``up``."""
    axis = torch.eye(3, dtype=up.dtype, device=up.device)[int(up.abs().argmin())]
    e1 = F.normalize(torch.cross(up, axis, dim=0), dim=0)
    e2 = torch.cross(up, e1, dim=0)
    return e1, e2


def _cameras(eyes: torch.Tensor, at: torch.Tensor, up: torch.Tensor, focal_length, principal_point) -> PerspectiveCameras:
    R, T = look_at_view_transform(eye=eyes, at=at.expand_as(eyes), up=up.expand_as(eyes), device=eyes.device,
                                  dtype=eyes.dtype)
    return PerspectiveCameras(focal_length=focal_length, principal_point=principal_point, R=R, T=T)


def orbit(
    num_frames: int,
    center: Vec3 = (0.0, 0.0, 0.0),
    radius: float = 3.0,
    elevation: float = 0.0,
    up: Vec3 = (0.0, 1.0, 0.0),
    azim_start: float = 0.0,
    focal_length: Union[float, torch.Tensor] = 1.0,
    principal_point: Vec3 = ((0.0, 0.0),),
    device="cpu",
    dtype=torch.float32,
) -> PerspectiveCameras:
    """C = ``num_frames`` cameras circling ``center`` (see the module docstring).

    Args:
        center: (3,) point looked at; radius: distance of every camera from it.
        elevation: degrees above the plane perpendicular to ``up`` (negative: below).
        up: (3,) world up (need not be unit length); the camera's up is its projection.
        focal_length, principal_point: NDC intrinsics of every camera.
    Returns:
        PerspectiveCameras with C cameras, each at distance ``radius`` from ``center`` looking at it.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}")
    c = torch.as_tensor(center, dtype=torch.float64, device=device).reshape(3)
    u = F.normalize(torch.as_tensor(up, dtype=torch.float64, device=device).reshape(3), dim=0)
    e1, e2 = _perpendicular_basis(u)
    az = torch.deg2rad(azim_start + 360.0 * torch.arange(num_frames, dtype=torch.float64, device=device) / num_frames)
    el = math.radians(float(elevation))
    ring = torch.cos(az)[:, None] * e1 + torch.sin(az)[:, None] * e2  # (C, 3)
    eyes = c + radius * (math.cos(el) * ring + math.sin(el) * u)  # (C, 3)
    cams = _cameras(eyes, c, u, torch.as_tensor(focal_length, dtype=torch.float64), principal_point)
    return cams.to(device=device, dtype=dtype)


def average_pose(cameras: PerspectiveCameras):
    """(centre (3,), axes (3, 3)) of the mean of C cameras: the mean camera centre, and columns
    x, y, z of a rotation whose z is the mean viewing direction and y the mean up direction made
    orthogonal to it (x = y cross z, as in :mod:`l3d.cameras`)."""
    R = cameras.R.double()  # (C, 3, 3) columns: camera x, y, z in world space
    centre = cameras.get_camera_center().double().mean(0)
    z = F.normalize(R[:, :, 2].mean(0), dim=0)
    y = F.normalize(R[:, :, 1].mean(0) - (R[:, :, 1].mean(0) @ z) * z, dim=0)
    x = torch.cross(y, z, dim=0)
    return centre, torch.stack([x, y, z], -1)


def focus_point(cameras: PerspectiveCameras) -> torch.Tensor:
    """(3,) the point with the least summed squared distance to the C optical axes (the point the
    cameras look at; C >= 2 with non-parallel axes), float64."""
    o = cameras.get_camera_center().double()  # (C, 3)
    d = F.normalize(cameras.R[:, :, 2].double(), dim=-1)  # (C, 3) viewing directions
    proj = torch.eye(3, dtype=torch.float64, device=o.device) - d[:, :, None] * d[:, None, :]  # (C, 3, 3)
    a = proj.sum(0)
    b = (proj @ o[:, :, None]).sum(0)[:, 0]
    if float(torch.linalg.matrix_rank(a)) < 3:
        raise ValueError("the cameras' optical axes are parallel; give the focus point")
    return torch.linalg.solve(a, b)


def spiral(
    cameras: PerspectiveCameras,
    num_frames: int,
    rotations: float = 2.0,
    radii: Optional[Vec3] = None,
    z_rate: float = 0.5,
    focus: Optional[Vec3] = None,
    percentile: float = 90.0,
    up: Optional[Vec3] = None,
) -> PerspectiveCameras:
    """A spiral of ``num_frames`` cameras around the average of the training ``cameras``.

    Args:
        cameras: the C >= 2 training cameras (their first camera's intrinsics are used).
        rotations: turns of the path; z_rate: bobs along the mean viewing axis per turn.
        radii: (3,) half-axes along the average pose's x, y, z; default: the ``percentile`` of the
            absolute offsets of the training centres from their mean, in the average frame.
        focus: (3,) point every camera looks at; default :func:`focus_point` of the cameras.
        up: (3,) world up of the path's cameras (keeps the horizon level when the scene's up is
            known, e.g. for captures all around an object); default the average pose's y axis.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if len(cameras) < 2:
        raise ValueError(f"a spiral needs at least 2 training cameras, got {len(cameras)}")
    centre, axes = average_pose(cameras)
    if radii is None:
        local = (cameras.get_camera_center().double() - centre) @ axes  # (C, 3) offsets in the average frame
        rad = torch.quantile(local.abs(), percentile / 100.0, dim=0)
    else:
        rad = torch.as_tensor(radii, dtype=torch.float64, device=centre.device).reshape(3)
    at = focus_point(cameras) if focus is None else torch.as_tensor(focus, dtype=torch.float64).reshape(3)
    t = 2 * math.pi * rotations * torch.arange(num_frames, dtype=torch.float64, device=centre.device) / num_frames
    local_path = torch.stack([rad[0] * torch.cos(t), rad[1] * torch.sin(t), rad[2] * torch.sin(z_rate * t)], -1)
    eyes = centre + local_path @ axes.T  # (C, 3)
    up_t = axes[:, 1] if up is None else F.normalize(torch.as_tensor(up, dtype=torch.float64).reshape(3), dim=0)
    cams = _cameras(eyes, at.to(eyes), up_t.to(eyes), cameras.focal_length[:1].double(),
                    cameras.principal_point[:1].double())
    return cams.to(device=cameras.device, dtype=cameras.dtype)


def camera_quaternions(cameras: PerspectiveCameras) -> torch.Tensor:
    """(C, 4) unit quaternions (w, x, y, z) of the cameras' rotations R, float64."""
    from scipy.spatial.transform import Rotation

    xyzw = Rotation.from_matrix(cameras.R.detach().double().cpu().numpy()).as_quat()
    return torch.from_numpy(np.roll(xyzw, 1, axis=-1))


def _spherical_centres(C: np.ndarray, focus: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(N, 3) centres at parameters t in [0, K - 1] between the K key centres C (K, 3): directions
    from ``focus`` slerped, distances interpolated linearly, segment by segment."""
    off = C - focus  # (K, 3)
    dist = np.linalg.norm(off, axis=-1)  # (K,)
    if float(dist.min()) <= 0:
        raise ValueError("a key camera sits on the focus point; use centers='spline' or 'linear'")
    u = off / dist[:, None]
    seg = np.clip(np.floor(t).astype(np.int64), 0, len(C) - 2)  # (N,)
    s = (t - seg)[:, None]  # (N, 1) position inside the segment
    a, b = u[seg], u[seg + 1]  # (N, 3)
    omega = np.arccos(np.clip((a * b).sum(-1, keepdims=True), -1.0, 1.0))  # (N, 1)
    small = omega < 1e-6
    sin_o = np.where(small, 1.0, np.sin(omega))
    wa = np.where(small, 1.0 - s, np.sin((1.0 - s) * omega) / sin_o)
    wb = np.where(small, s, np.sin(s * omega) / sin_o)
    r = (1.0 - s) * dist[seg][:, None] + s * dist[seg + 1][:, None]
    return focus + r * (wa * a + wb * b)


def _aim_between_keys(rot: np.ndarray, cen: np.ndarray, focus: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Turn each slerped rotation (N, 3, 3) so its viewing axis points from its centre at ``focus``,
    by the smallest rotation. When the keys themselves look at ``focus`` (within 1e-3 rad, as in an
    object-centric capture) every frame is turned fully; otherwise with weight ``sin(pi s)^2``
    (s: position in the key segment), none at the keys (they stay exact), all of it half-way,
    where slerp between far-apart views drifts most."""
    z = rot[:, :, 2]  # (N, 3) viewing axes
    target = focus - cen
    target = target / np.linalg.norm(target, axis=-1, keepdims=True)
    axis = np.cross(z, target)  # (N, 3)
    sin_a = np.linalg.norm(axis, axis=-1)
    full = np.arctan2(sin_a, (z * target).sum(-1))  # (N,)
    on_key = np.abs(t - np.round(t)) < 1e-9
    keys_aimed = not on_key.any() or float(full[on_key].max()) < 1e-3
    angle = full if keys_aimed else full * np.sin(np.pi * (t - np.floor(t))) ** 2
    k = axis / np.maximum(sin_a, 1e-12)[:, None]
    K = np.zeros((len(t), 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    K = K - K.transpose(0, 2, 1)  # (N, 3, 3) cross-product matrices
    sa, ca = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    Q = np.eye(3) + sa * K + (1 - ca) * (K @ K)  # Rodrigues
    return Q @ rot  # the columns (camera axes in world space) turned by Q


def interpolate_views(
    cameras: PerspectiveCameras,
    num_frames: int,
    indices: Optional[Sequence[int]] = None,
    centers: Literal["spline", "linear", "spherical"] = "spline",
    loop: bool = False,
) -> PerspectiveCameras:
    """``num_frames`` cameras through the key cameras ``cameras[indices]`` (all, in order, by default).

    Args:
        cameras: the training cameras; indices: which of them are keys, in path order (>= 2).
        centers: "spline" (natural cubic through the key centres; linear with 2 keys), "linear", or
            "spherical": around the point the key cameras look at (:func:`focus_point`), the direction
            of each centre from it by slerp and its distance linearly, so a path between views of
            an object-centric capture keeps its distance instead of cutting across towards the object;
            the slerped rotations are also turned (smallest rotation) to look at that point
            (see :func:`_aim_between_keys`).
        loop: return to the first key at the end (the last frame is then just before it, so the
            video loops without a repeated frame).
    Returns:
        PerspectiveCameras; without ``loop`` frame 0 is key 0 and the last frame the last key.
    """
    from scipy.interpolate import CubicSpline
    from scipy.spatial.transform import Rotation, Slerp

    idx = list(range(len(cameras))) if indices is None else [int(i) for i in indices]
    if len(idx) < 2:
        raise ValueError(f"interpolation needs at least 2 key cameras, got {len(idx)}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2, got {num_frames}")
    if min(idx) < -len(cameras) or max(idx) >= len(cameras):
        raise ValueError(f"key indices must lie in [0, {len(cameras) - 1}], got {idx}")
    keys = cameras[torch.tensor(idx, dtype=torch.long)]
    R = keys.R.detach().double().cpu().numpy()  # (K, 3, 3)
    C = keys.get_camera_center().detach().double().cpu().numpy()  # (K, 3)
    f = keys.focal_length.detach().double().cpu().numpy()
    p = keys.principal_point.detach().double().cpu().numpy()
    if loop:
        R, C, f, p = (np.concatenate([a, a[:1]], 0) for a in (R, C, f, p))
    k = len(R)
    key_t = np.arange(k, dtype=np.float64)
    t = (np.arange(num_frames) * (k - 1) / num_frames) if loop else np.linspace(0.0, k - 1, num_frames)
    rot = Slerp(key_t, Rotation.from_matrix(R))(t).as_matrix()  # (N, 3, 3)
    if centers == "spline" and k >= 3:
        cen = CubicSpline(key_t, C, axis=0, bc_type="periodic" if loop and k >= 4 else "natural")(t)
    elif centers in ("spline", "linear"):
        cen = np.stack([np.interp(t, key_t, C[:, j]) for j in range(3)], -1)
    elif centers == "spherical":
        focus = focus_point(keys).cpu().numpy()
        cen = _spherical_centres(C, focus, t)
        rot = _aim_between_keys(rot, cen, focus, t)
    else:
        raise ValueError(f"centers must be 'spline', 'linear' or 'spherical', got {centers!r}")
    foc = np.stack([np.interp(t, key_t, f[:, j]) for j in range(2)], -1)
    pp = np.stack([np.interp(t, key_t, p[:, j]) for j in range(2)], -1)
    Rt = torch.from_numpy(rot)
    Tt = -torch.einsum("nji,nj->ni", Rt, torch.from_numpy(cen))  # T = -C @ R (row vectors)
    cams = PerspectiveCameras(focal_length=torch.from_numpy(foc), principal_point=torch.from_numpy(pp), R=Rt, T=Tt)
    return cams.to(device=cameras.device, dtype=cameras.dtype)
