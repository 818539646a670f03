"""Differentiable 3-D Gaussian rasterisation in pure PyTorch: projection, tiling, compositing.

Camera conventions: :mod:`l3d.cameras` (row vectors ``X_view = X_world @ R + T``, +X left, +Y up,
+Z forward; screen intrinsics ``u = p_x - f_x X / Z``, ``v = p_y - f_y Y / Z``, u right, v down).

Dimension letters: N Gaussians given, M Gaussians kept (in front of the camera), K Gaussians per
batch, F composited features, H, W image size, A active tiles, L Gaussians per tile list.

Pipeline (the course's recipe, spec a4 Q1):

1. depth = view-space z of each mean; Gaussians with z <= ``znear`` are dropped (the camera's
   ``znear`` unless ``RasterSettings.znear`` overrides it; 0 for a camera without one); the rest
   are sorted front to back (stable sort).
2. 3-D covariance (from the model): isotropic ``s^2 I``, anisotropic ``R(q) diag(s^2) R(q)^T``.
3. Jacobian of the projection at the view-space mean t, with ``t_x / t_z`` and ``t_y / t_z``
   clamped to the image's view frustum widened by 15 % of its width on each side: the image
   spans ``t_x / t_z`` in ``[(p_x - W) / f_x, p_x / f_x]`` (screen principal point p_x), so the
   clamp is ``(p_x - W / 2) / f_x +- 1.3 * 0.5 W / f_x`` (resp. H, f_y, p_y). For a centred
   principal point this is 3DGS's ``+-1.3 tan(fov / 2)``; off-centre (OpenCV) cameras keep it on
   the image, as gsplat does. ``J = [[f_x/t_z, 0, -f_x t_x/t_z^2], [0, f_y/t_z, -f_y t_y/t_z^2]]``
   (the sign of the screen axes does not matter: J and -J give the same covariance).
4. 2-D covariance ``J W Sigma W^T J^T + 0.3 I``, where W rotates world *column* vectors into view
   space. With the row-vector convention that is ``W = R^T`` (``view_rotation="correct"``, the
   default here, checked against a Monte-Carlo projection of 3-D samples in the tests). The
   course's code takes the stored matrix itself, ``W = R`` (``view_rotation="course"``); its unit
   test fixture needs that choice, and for isotropic Gaussians both agree. We default to the
   physically correct one so that anisotropic Gaussians (and 3DGS .ply files trained elsewhere)
   render where they are.
5. 2-D means ``(u, v)`` by the screen projection above (identical to
   ``camera.transform_points_screen``).
6. Power ``P = -1/2 (x - mu)^T Sigma^-1 (x - mu)`` at the pixel positions ``x = (i, j) +
   pixel_offset``. The course evaluates at integer coordinates (``pixel_offset = 0``), which
   puts each sample on the top-left *corner* of its pixel in this screen convention (pixel
   centres are at i + 0.5; the course's own means-2D fixture is reproduced exactly by that
   convention). The default here, ``pixel_offset = 0.5``, samples pixel centres, consistent with
   the mesh and point rasterisers of l3d; ``0.0`` reproduces the course's images.
7. ``alpha = min(opacity * exp(P), 0.99)``, 0 where P > 0 and where alpha < 1/255.
8. Transmittance = exclusive cumulative product of (1 - alpha) front to back, set to 0 where
   it falls below 1e-4.
9. ``image = sum c alpha T``; ``depth = sum z alpha T``; ``mask = sum alpha T``;
   ``final = image + (1 - mask) * background``.

Two implementations composite the same quantities:

* :func:`composite_dense` — the course's formulation: every Gaussian at every pixel, in batches
  of ``gaussians_per_splat`` Gaussians (-1 = all at once) chaining the transmittance. The
  reference implementation (tests, benchmark).
* :func:`composite_tiled` (default) — Gaussians are binned to square pixel tiles by their
  screen-space extent (pairs (Gaussian, tile) made with ``repeat_interleave`` and stably sorted
  by tile, which keeps each tile's list in depth order), then every tile composites only its
  own list, in padded chunks across all tiles at once, chaining the transmittance per tile;
  tiles whose transmittance has fallen below 1e-4 everywhere stop early. The extent is the
  axis-aligned box of the ellipse where alpha reaches 1/255: Mahalanobis radius
  ``sqrt(2 ln(255 opacity))`` (about 3 sigma: 3.0 at opacity 0.35, at most 3.33 at opacity 1)
  times ``sqrt(Sigma_xx)`` resp. ``sqrt(Sigma_yy)``. A fixed 3-sigma cut would drop alphas
  between 1/255 and ``opacity * exp(-4.5)``; this radius drops nothing that the 1/255 rule keeps,
  so the result equals the dense one up to float rounding. Fully differentiable with autograd.
  The default tile is 4 x 4 pixels, not 16 x 16: on the CPU the work is (pairs x pixels per
  tile), and trained Gaussians are a few pixels wide, so small tiles waste far fewer
  evaluations (measured on the cow scene: 4 x 4 is 2-5x faster than 16 x 16 for both small and
  40-pixel-wide Gaussians; see ``tile_size``).

Results do not depend on ``gaussians_per_splat`` / the chunk size beyond float error: the
threshold of step 8 is applied to the full (chained) transmittance, never to a partial product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple, Optional, Sequence, Tuple, Union

import torch

from l3d.cameras import PerspectiveCameras, Size, as_hw
from l3d.validate import check_shape

ViewRotation = Literal["correct", "course"]
Mode = Literal["tiled", "dense"]

ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
T_MIN = 1e-4
COV2D_DILATION = 0.3
JACOBIAN_CLAMP = 1.3


@dataclass(frozen=True)
class RasterSettings:
    """How to rasterise Gaussians.

    Attributes:
        image_size: (H, W) in pixels (an int means square).
        background: RGB background composited where the mask is below 1.
        mode: "tiled" (fast, default) or "dense" (every Gaussian at every pixel; reference).
        gaussians_per_splat: dense mode: Gaussians per batch (-1 = all at once).
        tile_size: tiled mode: tile edge in pixels.
        chunk: tiled mode: Gaussians per tile composited per step (memory vs. speed).
        pixel_offset: pixel (i, j) is sampled at (i + offset, j + offset); 0.5 = pixel centres
            (l3d's convention), 0.0 = the course's integer coordinates.
        view_rotation: "correct" (W = R^T) or "course" (W = R); see the module docstring.
        znear: Gaussians whose view-space depth is <= znear are dropped; None (default) takes the
            camera's ``znear`` (0 when the camera has none).
    """

    image_size: Size = 256
    background: Sequence[float] = (1.0, 1.0, 1.0)
    mode: Mode = "tiled"
    gaussians_per_splat: int = -1
    tile_size: int = 4
    chunk: int = 64
    pixel_offset: float = 0.5
    view_rotation: ViewRotation = "correct"
    znear: Optional[float] = None

    def __post_init__(self):
        as_hw(self.image_size)
        if self.mode not in ("tiled", "dense"):
            raise ValueError(f"mode must be 'tiled' or 'dense', got {self.mode!r}")
        if self.view_rotation not in ("correct", "course"):
            raise ValueError(f"view_rotation must be 'correct' or 'course', got {self.view_rotation!r}")
        if self.gaussians_per_splat == 0 or self.gaussians_per_splat < -1:
            raise ValueError(f"gaussians_per_splat must be -1 or positive, got {self.gaussians_per_splat}")
        if self.tile_size < 1 or self.chunk < 1:
            raise ValueError(f"tile_size and chunk must be positive, got {self.tile_size}, {self.chunk}")
        if len(tuple(self.background)) != 3:
            raise ValueError(f"background must be an RGB triple, got {self.background!r}")


class Projected(NamedTuple):
    """Gaussians in front of the camera, sorted front to back (M of them).

    Attributes:
        index: (M,) long, index of each kept Gaussian in the input (sorted by depth).
        means2d: (M, 2) screen positions (u right, v down, pixels).
        cov2d: (M, 2, 2) screen-space covariances (pixels^2, dilated by 0.3 I).
        conic: (M, 3) the inverse covariance as (a, b, c) = [[a, b], [b, c]].
        depth: (M,) view-space depth of the means (ascending).
        opacity: (M,) opacities in [0, 1].
        features: (M, F) composited features (colour channels, then depth).
    """

    index: torch.Tensor
    means2d: torch.Tensor
    cov2d: torch.Tensor
    conic: torch.Tensor
    depth: torch.Tensor
    opacity: torch.Tensor
    features: torch.Tensor


class GaussianRender(NamedTuple):
    """Output of :func:`rasterize_gaussians`.

    Attributes:
        image: (H, W, 3) colour composited over the background.
        depth: (H, W) ``sum z alpha T`` (not normalised by the mask).
        mask: (H, W) ``sum alpha T`` (accumulated opacity, in [0, 1]).
        means2d: (M, 2) screen means of the kept Gaussians (in depth order; call
            ``retain_grad()`` on it before backward to get the screen-space gradients that
            densification uses).
        index: (M,) their indices into the input Gaussians.
    """

    image: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor
    means2d: torch.Tensor
    index: torch.Tensor


# ---------------------------------------------------------------------------------------------
# geometry: covariances, Jacobian, projection
# ---------------------------------------------------------------------------------------------
def quaternion_to_matrix(quats: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) rotation matrices (column-vector form ``v' = M v``) of quaternions (N, 4),
    real part first (w, x, y, z). Uses ``two_s = 2 / |q|^2``, so q need not be normalised."""
    check_shape(quats, ("N", 4), "quats")
    w, x, y, z = quats.unbind(-1)
    two_s = 2.0 / (quats * quats).sum(-1)
    m = torch.stack(
        [
            1 - two_s * (y * y + z * z), two_s * (x * y - z * w), two_s * (x * z + y * w),
            two_s * (x * y + z * w), 1 - two_s * (x * x + z * z), two_s * (y * z - x * w),
            two_s * (x * z - y * w), two_s * (y * z + x * w), 1 - two_s * (x * x + y * y),
        ],
        -1,
    )
    return m.view(-1, 3, 3)


def covariance_3d(scales: torch.Tensor, quats: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(N, 3, 3) world-space covariances from *activated* scales.

    Args:
        scales: (N,) or (N, 1) isotropic standard deviations (-> ``s^2 I``), or (N, 3)
            per-axis standard deviations (-> ``R(q) diag(s^2) R(q)^T``).
        quats: (N, 4) quaternions (w, x, y, z); needed for (N, 3) scales, ignored otherwise.
    """
    if scales.dim() == 1:
        scales = scales[:, None]
    check_shape(scales, ("N", None), "scales")
    n = scales.shape[0]
    if scales.shape[1] == 1:
        eye = torch.eye(3, device=scales.device, dtype=scales.dtype)
        return (scales * scales)[:, :, None] * eye  # (N, 3, 3)
    check_shape(scales, (n, 3), "scales")
    if quats is None:
        raise ValueError("anisotropic scales (N, 3) need quats (N, 4)")
    check_shape(quats, (n, 4), "quats")
    rot = quaternion_to_matrix(quats)  # (N, 3, 3)
    rs = rot * (scales * scales)[:, None, :]  # R diag(s^2)
    return rs @ rot.transpose(1, 2)


def _camera_intrinsics(camera: PerspectiveCameras, image_size: Size) -> Tuple[torch.Tensor, torch.Tensor]:
    """(2,) focal lengths and (2,) principal point in pixels of a single camera."""
    if len(camera) != 1:
        raise ValueError(f"the Gaussian rasteriser renders one camera at a time, got {len(camera)}")
    if not camera.is_perspective():
        raise ValueError(f"the Gaussian rasteriser needs a perspective camera, got {type(camera).__name__}")
    return camera.focal_length_screen(image_size)[0], camera.principal_point_screen(image_size)[0]


def projection_jacobian(view: torch.Tensor, focal: torch.Tensor, image_size: Size,
                        principal_point: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(N, 2, 3) Jacobians of the perspective projection at view-space points ``view`` (N, 3).

    ``t_x / t_z`` and ``t_y / t_z`` are clamped first to ``(p_x - W / 2) / f_x +- 1.3 * 0.5 W / f_x``
    (``H``, ``f_y``, ``p_y``): the image's frustum widened by 15 % of its size on each side (3DGS's
    ``+-1.3 tan(fov / 2)`` when the principal point is centred). ``focal`` (2,) holds f_x, f_y and
    ``principal_point`` (2,) p_x, p_y in pixels (screen space, u right, v down); None means the
    image centre.
    """
    check_shape(view, ("N", 3), "view")
    h, w = as_hw(image_size)
    fx, fy = focal[0], focal[1]
    tz = view[:, 2]
    half_x = JACOBIAN_CLAMP * 0.5 * w / fx
    half_y = JACOBIAN_CLAMP * 0.5 * h / fy
    if principal_point is None:
        mid_x = mid_y = torch.zeros((), device=view.device, dtype=view.dtype)
    else:  # u = p_x - f_x X / Z: the image centre u = W / 2 sits at X / Z = (p_x - W / 2) / f_x
        mid_x = (principal_point[0] - 0.5 * w) / fx
        mid_y = (principal_point[1] - 0.5 * h) / fy
    tx = torch.maximum(torch.minimum(view[:, 0] / tz, mid_x + half_x), mid_x - half_x) * tz
    ty = torch.maximum(torch.minimum(view[:, 1] / tz, mid_y + half_y), mid_y - half_y) * tz
    zero = torch.zeros_like(tz)
    row0 = torch.stack([fx / tz, zero, -fx * tx / (tz * tz)], -1)
    row1 = torch.stack([zero, fy / tz, -fy * ty / (tz * tz)], -1)
    return torch.stack([row0, row1], 1)  # (N, 2, 3)


def covariance_2d(
    means: torch.Tensor,
    cov3d: torch.Tensor,
    camera: PerspectiveCameras,
    image_size: Size,
    view_rotation: ViewRotation = "correct",
) -> torch.Tensor:
    """(N, 2, 2) screen-space covariances ``J W Sigma W^T J^T + 0.3 I`` (pixels^2).

    Args:
        means: (N, 3) world-space means; cov3d: (N, 3, 3) world-space covariances.
        camera: one camera (screen intrinsics are derived for ``image_size``).
        view_rotation: "correct" (W = R^T, physically right) or "course" (W = R); see the
            module docstring.
    """
    check_shape(means, ("N", 3), "means")
    check_shape(cov3d, (means.shape[0], 3, 3), "cov3d")
    focal, pp = _camera_intrinsics(camera, image_size)
    view = camera.world_to_view(means)[0]
    return _cov2d_from_view(view, cov3d, camera.R[0], focal, pp, image_size, view_rotation)


def _cov2d_from_view(view, cov3d, R, focal, pp, image_size, view_rotation):
    if view_rotation not in ("correct", "course"):
        raise ValueError(f"view_rotation must be 'correct' or 'course', got {view_rotation!r}")
    J = projection_jacobian(view, focal.to(view.dtype), image_size, pp.to(view.dtype))  # (N, 2, 3)
    Wm = (R.transpose(0, 1) if view_rotation == "correct" else R).to(view.dtype)  # (3, 3)
    JW = J @ Wm  # (N, 2, 3)
    cov = JW @ cov3d @ JW.transpose(1, 2)  # (N, 2, 2)
    return cov + COV2D_DILATION * torch.eye(2, device=cov.device, dtype=cov.dtype)


def means_2d(means: torch.Tensor, camera: PerspectiveCameras, image_size: Size) -> torch.Tensor:
    """(N, 2) screen positions ``(p_x - f_x X/Z, p_y - f_y Y/Z)`` of world points (N, 3)."""
    check_shape(means, ("N", 3), "means")
    focal, pp = _camera_intrinsics(camera, image_size)
    return _project_view(camera.world_to_view(means)[0], focal, pp)


def _project_view(view, focal, pp):
    z = view[:, 2:3]
    return pp.to(view.dtype) - focal.to(view.dtype) * view[:, :2] / z


def invert_cov2d(cov2d: torch.Tensor) -> torch.Tensor:
    """(N, 3) conics (a, b, c) with ``[[a, b], [b, c]] = cov2d^-1`` for (N, 2, 2) covariances."""
    check_shape(cov2d, ("N", 2, 2), "cov2d")
    c00, c01, c11 = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
    det = c00 * c11 - c01 * c01
    return torch.stack([c11 / det, -c01 / det, c00 / det], -1)


def gaussian_power(points: torch.Tensor, means2d: torch.Tensor, cov2d: torch.Tensor) -> torch.Tensor:
    """(N, P) exponents ``P = -1/2 (x - mu)^T Sigma^-1 (x - mu)`` of N 2-D Gaussians at P points.

    Args:
        points: (P, 2) pixel positions (x right, y down); means2d: (N, 2); cov2d: (N, 2, 2).
    """
    check_shape(points, ("P", 2), "points")
    check_shape(means2d, ("N", 2), "means2d")
    check_shape(cov2d, (means2d.shape[0], 2, 2), "cov2d")
    return _power(points[None], means2d[:, None], invert_cov2d(cov2d)[:, None])


def _power(points, means, conic):
    """Broadcast ``-1/2 d^T C d`` with d = points - means (..., 2) and conic (..., 3)."""
    dx = points[..., 0] - means[..., 0]
    dy = points[..., 1] - means[..., 1]
    return -0.5 * (conic[..., 0] * dx * dx + conic[..., 2] * dy * dy) - conic[..., 1] * dx * dy


def _alpha(power: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
    """Steps 6-7: ``min(o exp(P), 0.99)``, 0 where P > 0 or alpha < 1/255."""
    alpha = torch.clamp_max(opacity * torch.exp(power), ALPHA_MAX)
    keep = (power <= 0) & (alpha >= ALPHA_MIN)
    return torch.where(keep, alpha, torch.zeros_like(alpha))


# ---------------------------------------------------------------------------------------------
# projection of a whole set
# ---------------------------------------------------------------------------------------------
def project_gaussians(
    means: torch.Tensor,
    cov3d: torch.Tensor,
    opacities: torch.Tensor,
    colours: torch.Tensor,
    camera: PerspectiveCameras,
    settings: RasterSettings,
) -> Projected:
    """Steps 1-5: keep the Gaussians in front of the camera, sort them front to back, project.

    Args:
        means: (N, 3) world means; cov3d: (N, 3, 3) world covariances; opacities: (N,) in [0, 1];
        colours: (N, C) colours (any C >= 1; usually 3).
        camera: one camera; settings: image size, view rotation, znear (None: the camera's).
    Returns:
        :class:`Projected` with features = [colours, depth] (M, C + 1).
    """
    check_shape(means, ("N", 3), "means")
    n = means.shape[0]
    check_shape(cov3d, (n, 3, 3), "cov3d")
    check_shape(opacities, (n,), "opacities")
    check_shape(colours, (n, None), "colours")
    focal, pp = _camera_intrinsics(camera, settings.image_size)
    cam = camera.to(dtype=means.dtype)
    view = cam.world_to_view(means)[0]  # (N, 3)
    depth = view[:, 2]
    znear = near_plane(camera, settings)
    with torch.no_grad():
        keep = torch.nonzero(depth > znear).flatten()
        order = torch.argsort(depth[keep], stable=True)
        index = keep[order]  # (M,)
    view = view.index_select(0, index)
    depth = view[:, 2]
    cov2d = _cov2d_from_view(view, cov3d.index_select(0, index), cam.R[0], focal, pp, settings.image_size,
                             settings.view_rotation)
    mu = _project_view(view, focal, pp)  # (M, 2)
    features = torch.cat([colours.index_select(0, index), depth[:, None]], -1)  # (M, C + 1)
    return Projected(index, mu, cov2d, invert_cov2d(cov2d), depth, opacities.index_select(0, index), features)


def near_plane(camera: PerspectiveCameras, settings: RasterSettings) -> float:
    """The depth at and below which Gaussians are dropped: ``settings.znear`` when given, else the
    camera's ``znear``, else 0."""
    if settings.znear is not None:
        return float(settings.znear)
    znear = getattr(camera, "znear", None)
    return 0.0 if znear is None else float(znear)


def _pixel_grid(h, w, offset, device, dtype):
    """(H * W, 2) sample positions (x, y) of all pixels, row-major."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype),
                            indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], -1) + offset


# ---------------------------------------------------------------------------------------------
# compositing: dense reference
# ---------------------------------------------------------------------------------------------
def composite_dense(proj: Projected, image_size: Size, gaussians_per_splat: int = -1,
                    pixel_offset: float = 0.5) -> Tuple[torch.Tensor, torch.Tensor]:
    """Steps 6-9 evaluating every Gaussian at every pixel (the course's formulation).

    Args:
        proj: the sorted, projected Gaussians (M of them).
        gaussians_per_splat: K Gaussians per batch (-1 = all M at once); the transmittance is
            chained across batches and thresholded only in full.
    Returns:
        features (H, W, F) = ``sum f alpha T`` and mask (H, W) = ``sum alpha T``.
    """
    h, w = as_hw(image_size)
    dev, dt = proj.means2d.device, proj.means2d.dtype
    m, f = proj.features.shape
    pix = _pixel_grid(h, w, pixel_offset, dev, dt)  # (H*W, 2)
    acc = torch.zeros(h * w, f, device=dev, dtype=dt)
    mask = torch.zeros(h * w, device=dev, dtype=dt)
    carry = torch.ones(h * w, device=dev, dtype=dt)  # transmittance before the batch
    k = m if gaussians_per_splat == -1 else gaussians_per_splat
    for s in range(0, m, max(k, 1)):
        sl = slice(s, min(m, s + k))
        power = _power(pix[None], proj.means2d[sl, None], proj.conic[sl, None])  # (K, H*W)
        alpha = _alpha(power, proj.opacity[sl, None])  # (K, H*W)
        one_minus = 1 - alpha
        incl = torch.cumprod(one_minus, 0)  # (K, H*W)
        excl = torch.cat([torch.ones_like(incl[:1]), incl[:-1]], 0)
        trans = carry * excl
        trans = torch.where(trans < T_MIN, torch.zeros_like(trans), trans)
        weight = alpha * trans  # (K, H*W)
        acc = acc + weight.transpose(0, 1) @ proj.features[sl]
        mask = mask + weight.sum(0)
        carry = carry * incl[-1]
    return acc.view(h, w, f), mask.view(h, w)


# ---------------------------------------------------------------------------------------------
# compositing: tiled
# ---------------------------------------------------------------------------------------------
class TileBins(NamedTuple):
    """Per-tile, depth-sorted lists of Gaussians, packed one tile after the other.

    Attributes:
        gaussians: (pairs,) long, indices into the projected Gaussians; tile t's list is
            ``gaussians[start[t] : start[t] + counts[t]]``, front to back.
        start: (n_tiles,) long offsets; counts: (n_tiles,) long list lengths.
        tiles_x, tiles_y: tiles per row / column (tiles are numbered row-major).
    """

    gaussians: torch.Tensor
    start: torch.Tensor
    counts: torch.Tensor
    tiles_x: int
    tiles_y: int


def gaussian_extent(proj: Projected) -> torch.Tensor:
    """(M, 2) half-widths in pixels (x, y) of the axis-aligned box outside of which a Gaussian's
    alpha is below 1/255: Mahalanobis radius ``sqrt(2 ln(255 o))`` times ``sqrt(Sigma_xx)``
    (resp. yy); negative where the opacity is below 1/255 (the Gaussian never shows)."""
    with torch.no_grad():
        r2 = 2 * torch.log(proj.opacity * 255.0)  # (M,)
        r = torch.sqrt(r2.clamp(min=0))
        # small safety margin for the float error of the conic vs. the covariance
        sx = r * torch.sqrt(proj.cov2d[:, 0, 0]) * (1 + 1e-3) + 0.05
        sy = r * torch.sqrt(proj.cov2d[:, 1, 1]) * (1 + 1e-3) + 0.05
        ext = torch.stack([sx, sy], -1)
        return torch.where((r2 >= 0)[:, None], ext, torch.full_like(ext, -1.0))


def bin_gaussians(proj: Projected, image_size: Size, tile_size: int = 4, pixel_offset: float = 0.5) -> TileBins:
    """Assign every Gaussian to the tiles its extent (see :func:`gaussian_extent`) overlaps.

    Pairs (gaussian, tile) are made with ``repeat_interleave`` and stably sorted by tile, which
    keeps each tile's list in depth order (the Gaussians are already sorted).
    """
    h, w = as_hw(image_size)
    tx, ty = math.ceil(w / tile_size), math.ceil(h / tile_size)
    dev = proj.means2d.device
    with torch.no_grad():
        mu = proj.means2d.detach()
        ext = gaussian_extent(proj)
        # pixel index range whose sample positions lie in [mu - ext, mu + ext]
        lo = torch.ceil(mu - ext - pixel_offset)  # (M, 2)
        hi = torch.floor(mu + ext - pixel_offset)
        size = torch.tensor([w - 1, h - 1], device=dev, dtype=mu.dtype)
        visible = (ext[:, 0] >= 0) & (hi >= 0).all(-1) & (lo <= size).all(-1) \
            & torch.isfinite(mu).all(-1) & torch.isfinite(ext).all(-1)
        lo = torch.minimum(torch.maximum(lo, torch.zeros_like(lo)), size)
        hi = torch.minimum(torch.maximum(hi, torch.zeros_like(hi)), size)
        visible = visible & (hi >= lo).all(-1)
        t_lo = torch.div(lo.long(), tile_size, rounding_mode="floor")  # (M, 2)
        t_hi = torch.div(hi.long(), tile_size, rounding_mode="floor")
        nx = (t_hi[:, 0] - t_lo[:, 0] + 1).clamp(min=0)
        ny = (t_hi[:, 1] - t_lo[:, 1] + 1).clamp(min=0)
        count = torch.where(visible, nx * ny, torch.zeros_like(nx))  # (M,)
        g = torch.repeat_interleave(torch.arange(len(count), device=dev), count)  # (pairs,)
        first = torch.cumsum(count, 0) - count
        local = torch.arange(len(g), device=dev) - first[g]  # index within the Gaussian's tile box
        nxg = nx[g]
        tile = (t_lo[g, 1] + local // nxg) * tx + (t_lo[g, 0] + local % nxg)  # (pairs,)
        tile, order = torch.sort(tile, stable=True)
        counts = torch.bincount(tile, minlength=tx * ty)  # (n_tiles,)
        start = torch.cumsum(counts, 0) - counts
    return TileBins(g[order], start, counts, tx, ty)


def composite_tiled_autograd(proj: Projected, image_size: Size, tile_size: int = 4, chunk: int = 64,
                             pixel_offset: float = 0.5, bins: Optional[TileBins] = None
                             ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Steps 6-9 per tile, differentiated by autograd: the reference of :func:`composite_tiled`
    (same chunks and thresholds; autograd keeps every chunk's intermediates for the backward).

    Every step composites the next ``chunk`` Gaussians of every tile that still has Gaussians
    left and is not yet opaque (transmittance >= 1e-4 at one of its pixels), as one padded
    (A, chunk, tile_size^2) batch.

    Returns:
        features (H, W, F) and mask (H, W).
    """
    h, w = as_hw(image_size)
    dev, dt = proj.means2d.device, proj.means2d.dtype
    f = proj.features.shape[1]
    if bins is None:
        bins = bin_gaussians(proj, (h, w), tile_size, pixel_offset)
    n_tiles = bins.tiles_x * bins.tiles_y
    tp = tile_size * tile_size
    # sample positions of every pixel of every tile (pixels beyond the image are cropped later)
    ly, lx = torch.meshgrid(torch.arange(tile_size, device=dev), torch.arange(tile_size, device=dev), indexing="ij")
    t_idx = torch.arange(n_tiles, device=dev)
    ox = (t_idx % bins.tiles_x) * tile_size
    oy = torch.div(t_idx, bins.tiles_x, rounding_mode="floor") * tile_size
    px = torch.stack([ox[:, None] + lx.reshape(1, -1), oy[:, None] + ly.reshape(1, -1)], -1)  # (n_tiles, tp, 2)
    pix = px.to(dt) + pixel_offset

    acc = torch.zeros(n_tiles, tp, f, device=dev, dtype=dt)
    mask = torch.zeros(n_tiles, tp, device=dev, dtype=dt)
    carry = torch.ones(n_tiles, tp, device=dev, dtype=dt)
    # gather sources; a dummy row at the end serves the -1 padding (opacity 0 -> alpha 0)
    mu_src = torch.cat([proj.means2d, proj.means2d.new_zeros(1, 2)], 0)
    conic_src = torch.cat([proj.conic, proj.conic.new_zeros(1, 3)], 0)
    op_src = torch.cat([proj.opacity, proj.opacity.new_zeros(1)], 0)
    feat_src = torch.cat([proj.features, proj.features.new_zeros(1, f)], 0)
    pad_row = proj.means2d.shape[0]
    counts, start, packed = bins.counts, bins.start, bins.gaussians
    L = int(counts.max()) if len(counts) else 0
    for s in range(0, L, chunk):
        with torch.no_grad():
            alive = (counts > s) & (carry.detach() >= T_MIN).any(-1)
            active = torch.nonzero(alive).flatten()  # (A,)
            if active.numel() == 0:
                break
            k = min(chunk, L - s)
            offs = s + torch.arange(k, device=dev)  # (k,)
            valid = offs[None] < counts[active, None]  # (A, k)
            pos = (start[active, None] + offs[None]).clamp(max=max(len(packed) - 1, 0))
            idx = torch.where(valid, packed[pos], torch.full_like(pos, pad_row))  # (A, k)
        a, k = idx.shape
        flat = idx.reshape(-1)
        mu = mu_src.index_select(0, flat).view(a, k, 1, 2)
        conic = conic_src.index_select(0, flat).view(a, k, 1, 3)
        op = op_src.index_select(0, flat).view(a, k, 1)
        feat = feat_src.index_select(0, flat).view(a, k, f)
        p = pix.index_select(0, active)[:, None]  # (A, 1, tp, 2)
        alpha = _alpha(_power(p, mu, conic), op)  # (A, k, tp)
        incl = torch.cumprod(1 - alpha, 1)  # (A, k, tp)
        excl = torch.cat([torch.ones_like(incl[:, :1]), incl[:, :-1]], 1)
        c = carry.index_select(0, active)  # (A, tp)
        trans = c[:, None] * excl
        trans = torch.where(trans < T_MIN, torch.zeros_like(trans), trans)
        weight = alpha * trans  # (A, k, tp)
        acc = acc.index_add(0, active, torch.einsum("akp,akf->apf", weight, feat))
        mask = mask.index_add(0, active, weight.sum(1))
        carry = carry.index_copy(0, active, c * incl[:, -1])
    # (n_tiles, tp, .) -> image
    acc = acc.view(bins.tiles_y, bins.tiles_x, tile_size, tile_size, f).permute(0, 2, 1, 3, 4)
    acc = acc.reshape(bins.tiles_y * tile_size, bins.tiles_x * tile_size, f)[:h, :w]
    mask = mask.view(bins.tiles_y, bins.tiles_x, tile_size, tile_size).permute(0, 2, 1, 3)
    mask = mask.reshape(bins.tiles_y * tile_size, bins.tiles_x * tile_size)[:h, :w]
    return acc, mask


def _tiles_to_image(x: torch.Tensor, bins: TileBins, tile_size: int, h: int, w: int) -> torch.Tensor:
    """(n_tiles, tp, ...) per-tile pixels -> (H, W, ...) image."""
    rest = x.shape[2:]
    x = x.reshape(bins.tiles_y, bins.tiles_x, tile_size, tile_size, *rest).transpose(1, 2)
    return x.reshape(bins.tiles_y * tile_size, bins.tiles_x * tile_size, *rest)[:h, :w]


def _chunk_pairs(bins: TileBins, active: torch.Tensor, s: int, k: int, pad: int) -> torch.Tensor:
    """(A, k) positions in ``bins.gaussians`` of list entries s .. s + k - 1 of the active tiles;
    ``pad`` past a list's end."""
    offs = s + torch.arange(k, device=active.device)
    pos = bins.start.index_select(0, active)[:, None] + offs[None]
    return torch.where(offs[None] < bins.counts.index_select(0, active)[:, None], pos, torch.full_like(pos, pad))


def _tile_monomials(tile_size: int, pixel_offset: float, device) -> torch.Tensor:
    """(6, tp) float64 monomials (x^2, xy, y^2, x, y, 1) of the sample positions inside a tile, in
    coordinates centred on the tile (row-major pixels)."""
    ly, lx = torch.meshgrid(torch.arange(tile_size, device=device, dtype=torch.float64),
                            torch.arange(tile_size, device=device, dtype=torch.float64), indexing="ij")
    x, y = lx.reshape(-1) + (pixel_offset - tile_size / 2), ly.reshape(-1) + (pixel_offset - tile_size / 2)
    return torch.stack([x * x, x * y, y * y, x, y, torch.ones_like(x)])


def pair_coefficients(proj: Projected, bins: TileBins, tile_size: int) -> torch.Tensor:
    """(pairs, 6) float64 coefficients of ``P + ln(opacity)`` as a quadratic in pixel coordinates
    centred on the tile, one row per (Gaussian, tile) pair of ``bins``: with the mean m relative to
    the tile's centre and
    the conic (a, b, c), ``P = -a x^2 / 2 - b x y - c y^2 / 2 + (a m_x + b m_y) x + (b m_x + c m_y) y
    - (a m_x^2 + 2 b m_x m_y + c m_y^2) / 2``, so a tile's alphas are one matrix product with
    :func:`_tile_monomials`. Differentiable (autograd) in the means, conics and opacities. Float64
    because the expanded quadratic cancels: ``a m_x^2`` and ``a x^2`` reach tens where P is near 0,
    so float32 would lose about 1e-5 of alpha (the result is rounded to float32 after the product)."""
    g = bins.gaussians
    tile = torch.repeat_interleave(torch.arange(len(bins.counts), device=g.device), bins.counts,
                                   output_size=len(g))
    origin = torch.stack([(tile % bins.tiles_x) * tile_size,
                          torch.div(tile, bins.tiles_x, rounding_mode="floor") * tile_size], -1)
    m = proj.means2d.index_select(0, g).double() - (origin.double() + tile_size / 2)
    a, b, c = proj.conic.index_select(0, g).double().unbind(-1)
    mx, my = m.unbind(-1)
    lin_x, lin_y = a * mx + b * my, b * mx + c * my
    const = -0.5 * (lin_x * mx + lin_y * my) + torch.log(proj.opacity.index_select(0, g).double())
    return torch.stack([-0.5 * a, -b, -0.5 * c, lin_x, lin_y, const], -1)


def _chunk_alpha(coef: torch.Tensor, mono: torch.Tensor, dtype) -> torch.Tensor:
    """Alphas (A, k, tp) in ``dtype`` of a chunk from its pair coefficients (A, k, 6) (steps 6-7)."""
    a, k = coef.shape[:2]
    raw = torch.exp(torch.mm(coef.view(-1, 6), mono).to(dtype)).view(a, k, -1)  # opacity * exp(P)
    return raw.clamp_(max=ALPHA_MAX).masked_fill_(raw < ALPHA_MIN, 0.0)


def _chunk_weights(alpha: torch.Tensor, carry: torch.Tensor):
    """Thresholded transmittance T and weights alpha T (A, k, tp) of a chunk, and the carry after it
    (A, tp), from the carry before it (A, tp)."""
    trans = torch.cumprod(torch.cat([carry[:, None], 1 - alpha], 1), 1)  # (A, k + 1, tp)
    carry_next = trans[:, -1]
    trans = trans[:, :-1]
    trans = trans.masked_fill(trans < T_MIN, 0.0)
    return trans, alpha * trans, carry_next


class _TiledComposite(torch.autograd.Function):
    """Steps 6-9 per tile with a hand-written backward pass.

    Inputs are the pair coefficients of :func:`pair_coefficients` (plus a padding row whose alpha
    is 0) and the per-Gaussian features (plus a padding row). The forward pass keeps only the
    outputs and, per chunk, which tiles were active and which pairs they held; the backward pass
    recomputes every chunk's alphas front to back and applies the compositing derivatives
    directly. With w_i = alpha_i T_i, g_i = dL/d(features) . f_i + dL/d(mask) at a pixel and
    S_i = sum_{j > i} w_j g_j (the pixel's total ``dL/dfeatures . features + dL/dmask mask``
    minus the running prefix), ``dL/dalpha_i = T_i g_i - S_i / (1 - alpha_i)`` and
    ``dL/dP_i = alpha_i dL/dalpha_i`` where the alpha is neither clamped nor cut. Thresholded
    transmittances (T < 1e-4) pass no gradient, as in :func:`composite_tiled_autograd`, whose
    gradients these equal up to float rounding.
    """

    @staticmethod
    def forward(ctx, coef, feat_src, bins, mono, chunk):
        dev, dt = coef.device, feat_src.dtype
        n_tiles, tp, f = len(bins.counts), mono.shape[1], feat_src.shape[1]
        pad = coef.shape[0] - 1
        pad_g = feat_src.shape[0] - 1
        gauss = torch.cat([bins.gaussians, bins.gaussians.new_full((1,), pad_g)])
        acc = torch.zeros(n_tiles, tp, f, device=dev, dtype=dt)
        mask = torch.zeros(n_tiles, tp, device=dev, dtype=dt)
        carry = torch.ones(n_tiles, tp, device=dev, dtype=dt)
        L = int(bins.counts.max()) if n_tiles else 0
        steps = []
        for s in range(0, L, chunk):
            alive = (bins.counts > s) & (carry >= T_MIN).any(-1)
            active = torch.nonzero(alive).flatten()
            if active.numel() == 0:
                break
            pos = _chunk_pairs(bins, active, s, min(chunk, L - s), pad)  # (A, k)
            a, k = pos.shape
            alpha = _chunk_alpha(coef.index_select(0, pos.view(-1)).view(a, k, 6), mono, dt)
            _, weight, c_next = _chunk_weights(alpha, carry.index_select(0, active))
            feat = feat_src.index_select(0, gauss.index_select(0, pos.view(-1))).view(a, k, f)
            acc.index_add_(0, active, torch.bmm(weight.transpose(1, 2), feat))
            mask.index_add_(0, active, weight.sum(1))
            carry.index_copy_(0, active, c_next)
            steps.append((active, pos))
        ctx.steps, ctx.gauss = steps, gauss
        ctx.save_for_backward(coef, feat_src, mono, acc, mask)
        return acc, mask

    @staticmethod
    def backward(ctx, grad_acc, grad_mask):
        coef, feat_src, mono, acc, mask = ctx.saved_tensors
        gauss = ctx.gauss
        dev, dt = coef.device, feat_src.dtype
        n_tiles, tp, f = acc.shape
        grad_acc = torch.zeros_like(acc) if grad_acc is None else grad_acc.contiguous()
        grad_mask = torch.zeros_like(mask) if grad_mask is None else grad_mask.contiguous()
        total = (grad_acc * acc).sum(-1) + grad_mask * mask  # (n_tiles, tp): sum_i w_i g_i per pixel
        done = torch.zeros(n_tiles, tp, device=dev, dtype=dt)  # its running prefix
        carry = torch.ones(n_tiles, tp, device=dev, dtype=dt)
        g_coef = torch.zeros_like(coef)
        g_feat = torch.zeros_like(feat_src)
        for active, pos in ctx.steps:
            a, k = pos.shape
            flat = pos.view(-1)
            alpha = _chunk_alpha(coef.index_select(0, flat).view(a, k, 6), mono, dt)
            trans, weight, c_next = _chunk_weights(alpha, carry.index_select(0, active))
            carry.index_copy_(0, active, c_next)
            g_idx = gauss.index_select(0, flat)
            feat = feat_src.index_select(0, g_idx).view(a, k, f)
            ga = grad_acc.index_select(0, active)  # (A, tp, F)
            g = torch.baddbmm(grad_mask.index_select(0, active)[:, None], feat, ga.transpose(1, 2))  # (A, k, tp)
            g_feat.index_add_(0, g_idx, torch.bmm(weight, ga).view(-1, f))
            wg = torch.cumsum(weight * g, 1)
            before = done.index_select(0, active)
            done.index_copy_(0, active, before + wg[:, -1])
            rest = wg.neg_().add_((total.index_select(0, active) - before)[:, None])  # S_i
            # dL/dP = alpha (T g - S / (1 - alpha)), 0 where the alpha is clamped at 0.99 or cut (alpha 0)
            d_power = (trans * g - rest / (1 - alpha)).mul_(alpha).masked_fill_(alpha >= ALPHA_MAX, 0.0)
            g_coef.index_copy_(0, flat, torch.mm(d_power.view(-1, tp).to(mono.dtype), mono.t()))  # each pair once
        g_coef[-1] = 0.0  # the padding row (may have been written several times)
        return g_coef, g_feat, None, None, None


def composite_tiled(proj: Projected, image_size: Size, tile_size: int = 4, chunk: int = 64,
                    pixel_offset: float = 0.5, bins: Optional[TileBins] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Steps 6-9 per tile: same outputs as :func:`composite_dense` (up to float rounding).

    Every step composites the next ``chunk`` Gaussians of every tile that still has Gaussians
    left and is not yet opaque (transmittance >= 1e-4 at one of its pixels), as one padded
    (A, chunk, tile_size^2) batch. Differentiable through :class:`_TiledComposite`, whose
    backward pass recomputes the chunks instead of keeping them (the same gradients as
    :func:`composite_tiled_autograd`, several times quicker and in far less memory).

    Returns:
        features (H, W, F) and mask (H, W).
    """
    h, w = as_hw(image_size)
    dev, dt = proj.means2d.device, proj.means2d.dtype
    if bins is None:
        bins = bin_gaussians(proj, (h, w), tile_size, pixel_offset)
    coef = pair_coefficients(proj, bins, tile_size)
    # padding rows: alpha exp(-1e30) = 0, features 0
    coef = torch.cat([coef, torch.tensor([[0, 0, 0, 0, 0, -1e30]], device=dev, dtype=coef.dtype)], 0)
    feats = torch.cat([proj.features, proj.features.new_zeros(1, proj.features.shape[1])], 0)
    mono = _tile_monomials(tile_size, pixel_offset, dev)
    acc, mask = _TiledComposite.apply(coef, feats, bins, mono, chunk)
    return _tiles_to_image(acc, bins, tile_size, h, w), _tiles_to_image(mask, bins, tile_size, h, w)


# ---------------------------------------------------------------------------------------------
# public entry point
# ---------------------------------------------------------------------------------------------
def rasterize_gaussians(
    means: torch.Tensor,
    cov3d: torch.Tensor,
    opacities: torch.Tensor,
    colours: torch.Tensor,
    camera: PerspectiveCameras,
    settings: Union[RasterSettings, None] = None,
) -> GaussianRender:
    """Render N 3-D Gaussians into one image (steps 1-9 of the module docstring).

    Args:
        means: (N, 3) world-space means.
        cov3d: (N, 3, 3) world-space covariances (see :func:`covariance_3d`).
        opacities: (N,) opacities in [0, 1] (after the sigmoid).
        colours: (N, 3) RGB colours (already evaluated for this camera when using SH).
        camera: one :class:`~l3d.cameras.PerspectiveCameras` (NDC or screen intrinsics).
        settings: :class:`RasterSettings` (image size, mode, background, ...).
    Returns:
        :class:`GaussianRender` with image (H, W, 3), depth (H, W), mask (H, W).
    """
    settings = settings or RasterSettings()
    check_shape(colours, (means.shape[0], 3), "colours")
    h, w = as_hw(settings.image_size)
    proj = project_gaussians(means, cov3d, opacities, colours, camera, settings)
    if settings.mode == "dense":
        feats, mask = composite_dense(proj, (h, w), settings.gaussians_per_splat, settings.pixel_offset)
    else:
        feats, mask = composite_tiled(proj, (h, w), settings.tile_size, settings.chunk, settings.pixel_offset)
    bg = torch.as_tensor(tuple(settings.background), device=means.device, dtype=feats.dtype)
    image = feats[..., :3] + (1 - mask)[..., None] * bg
    return GaussianRender(image, feats[..., 3], mask, proj.means2d, proj.index)
