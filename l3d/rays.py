"""Rays, samples along rays and volume rendering: the building blocks of NeRF-style renderers.

Camera conventions are those of :mod:`l3d.cameras`. This module adds what a ray-marching renderer
needs on top of them:

* :class:`RayBundle` - origins, unit directions, and (optionally) sample distances along each ray.
* :func:`ndc_grid`, :func:`random_pixels`, :func:`rays_from_ndc`, :func:`image_rays` - rays through
  pixel centres. **Pixel convention**: every image axis spans [-1, 1] in NDC independently, pixel
  centres at ``x_ndc = -((i + 0.5) / W * 2 - 1)``, ``y_ndc = -((j + 0.5) / H * 2 - 1)`` (column 0 is
  +x / left, row 0 is +y / top), rays flattened row-major over (row, column). For square images
  this is exactly :func:`l3d.cameras.ndc_pixel_centers`; for non-square images it is the
  convention of the course's NeRF assignment (the longer side is *not* stretched).
* A ray's origin is the camera centre (orthographic cameras: the pixel's point at view depth 0) and
  its direction ``normalize(unproject(x, y, depth 1) - origin)``,
  so sample "lengths" are distances along a unit ray and the rendered depth is the expected
  distance (not the view-space z).
* :func:`stratified_lengths` (optionally jittered), :func:`ray_sphere_bounds` (tight near/far),
  :func:`sample_pdf` and :func:`importance_lengths` (inverse-CDF hierarchical sampling).
* :func:`sample_deltas`, :func:`volume_weights`, :func:`composite`, :func:`composite_depth`,
  :func:`render_volume` - the volume rendering equation
  ``w_i = T_i (1 - exp(-sigma_i delta_i))``, ``T_i = exp(-sum_{j<i} sigma_j delta_j)`` with
  ``delta_i = t_{i+1} - t_i`` and a last delta of 1e10 (so a ray that reaches its last sample
  ends there), colour ``sum_i w_i c_i``, depth ``sum_i w_i t_i``, opacity ``sum_i w_i``.
* :func:`chunked` - apply a function to a long batch of rays chunk by chunk (bounded memory).

Dimension letters (see :mod:`l3d`): R rays (any leading batch shape ``...`` works where noted),
S samples per ray, C cameras, H/W image height/width, F feature channels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .cameras import CamerasBase, Size, as_hw
from .validate import check_shape

__all__ = [
    "RayBundle", "ndc_grid", "random_pixels", "rays_from_ndc", "image_rays", "stratified_lengths",
    "ray_sphere_bounds", "sample_deltas", "volume_weights", "composite", "composite_depth",
    "VolumeRender", "render_volume", "sample_pdf", "importance_lengths", "chunked", "LAST_DELTA",
]

#: The length given to the last sample of each ray in the volume rendering equation.
LAST_DELTA = 1e10

Scalar = Union[float, torch.Tensor]


# ----------------------------------------------------------------------------------------------
# the bundle
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RayBundle:
    """A batch of rays with optional samples along them.

    Attributes:
        origins: (..., 3) ray origins in world space.
        directions: (..., 3) unit ray directions.
        lengths: optional (..., S) distances of the samples along each ray (sorted ascending).
        xys: optional (..., 2) NDC pixel coordinates the rays go through.

    Indexing (``bundle[idx]``) indexes the leading batch dimensions of every field, so
    ``bundle[a:b]`` is a chunk of rays and ``bundle[mask]`` a subset.
    """

    origins: torch.Tensor
    directions: torch.Tensor
    lengths: Optional[torch.Tensor] = None
    xys: Optional[torch.Tensor] = None

    def __post_init__(self):
        check_shape(self.origins, ("...", 3), "origins")
        check_shape(self.directions, ("...", 3), "directions")
        if self.origins.shape != self.directions.shape:
            raise ValueError(f"origins {tuple(self.origins.shape)} and directions "
                             f"{tuple(self.directions.shape)} must have the same shape")
        batch = tuple(self.origins.shape[:-1])
        if self.lengths is not None and tuple(self.lengths.shape[:-1]) != batch:
            raise ValueError(f"lengths must have shape {batch + ('S',)}, got {tuple(self.lengths.shape)}")
        if self.xys is not None and tuple(self.xys.shape) != batch + (2,):
            raise ValueError(f"xys must have shape {batch + (2,)}, got {tuple(self.xys.shape)}")

    @property
    def shape(self) -> torch.Size:
        """The batch shape ``...`` (without the trailing 3)."""
        return self.origins.shape[:-1]

    def __len__(self) -> int:
        return self.origins.shape[0]

    @property
    def device(self) -> torch.device:
        return self.origins.device

    @property
    def n_samples(self) -> int:
        """S, the number of samples per ray (0 without samples)."""
        return 0 if self.lengths is None else self.lengths.shape[-1]

    @property
    def points(self) -> torch.Tensor:
        """(..., S, 3) sample positions ``origin + length * direction``."""
        if self.lengths is None:
            raise ValueError("this RayBundle has no samples; give it lengths first (with_lengths)")
        return self.origins[..., None, :] + self.lengths[..., :, None] * self.directions[..., None, :]

    def with_lengths(self, lengths: torch.Tensor) -> "RayBundle":
        """The same rays with samples at ``lengths`` (..., S)."""
        return replace(self, lengths=lengths)

    def __getitem__(self, idx: Any) -> "RayBundle":
        return RayBundle(
            self.origins[idx], self.directions[idx],
            None if self.lengths is None else self.lengths[idx],
            None if self.xys is None else self.xys[idx],
        )

    def reshape(self, *shape: int) -> "RayBundle":
        """Reshape the batch dimensions (e.g. ``bundle.reshape(-1)`` flattens to (R,))."""
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return RayBundle(
            self.origins.reshape(*shape, 3), self.directions.reshape(*shape, 3),
            None if self.lengths is None else self.lengths.reshape(*shape, self.lengths.shape[-1]),
            None if self.xys is None else self.xys.reshape(*shape, 2),
        )

    def to(self, device=None, dtype=None) -> "RayBundle":
        cv = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
        return RayBundle(cv(self.origins), cv(self.directions), cv(self.lengths), cv(self.xys))


# ----------------------------------------------------------------------------------------------
# rays from cameras
# ----------------------------------------------------------------------------------------------
def ndc_grid(image_size: Size, device=None, dtype=torch.float32) -> torch.Tensor:
    """(H * W, 2) NDC coordinates of every pixel centre, row-major over (row, column).

    Args:
        image_size: int or (H, W). (Configs of the NeRF assignment write [W, H]: swap them.)
    Each axis spans [-1, 1] on its own: ``x = -((i + 0.5) / W * 2 - 1)``, ``y = -((j + 0.5) / H * 2 - 1)``.
    """
    h, w = as_hw(image_size)
    x = -((torch.arange(w, device=device, dtype=dtype) + 0.5) / w * 2 - 1)  # (W,)
    y = -((torch.arange(h, device=device, dtype=dtype) + 0.5) / h * 2 - 1)  # (H,)
    yy, xx = torch.meshgrid(y, x, indexing="ij")  # (H, W) each
    return torch.stack([xx, yy], -1).reshape(-1, 2)


def random_pixels(
    image_size: Size, n: int, generator: Optional[torch.Generator] = None, device=None, dtype=torch.float32,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``n`` distinct random pixels of an image.

    Returns:
        xy: (n, 2) NDC pixel centres (as in :func:`ndc_grid`);
        index: (n,) long flat pixel indices ``row * W + column``.
    """
    h, w = as_hw(image_size)
    if not 0 < n <= h * w:
        raise ValueError(f"n must be in [1, H * W = {h * w}], got {n}")
    index = torch.randperm(h * w, generator=generator, device="cpu")[:n].to(device)
    return ndc_grid((h, w), device, dtype)[index], index


def rays_from_ndc(cameras: CamerasBase, xy: torch.Tensor) -> RayBundle:
    """Rays through NDC points: from ``unproject(xy, depth 0)`` towards ``unproject(xy, depth 1)``.

    For perspective cameras the origin is the camera centre; for orthographic ones it is the
    pixel's point on the view plane Z = 0 and every ray runs along the view +Z axis (parallel).

    Args:
        cameras: C cameras (perspective or orthographic).
        xy: (R, 2) NDC points shared by every camera, or (C, R, 2) per camera.
    Returns:
        A :class:`RayBundle` of shape (C, R): origins, unit directions
        ``normalize(unproject(xy, depth 1) - origin)`` and ``xys`` the NDC points.
    """
    if xy.dim() == 2:
        check_shape(xy, ("R", 2), "xy")
        xy = xy[None].expand(len(cameras), -1, -1)
    check_shape(xy, (len(cameras), "R", 2), "xy")
    xy = xy.to(cameras.dtype)
    xyd = torch.cat([xy, torch.ones_like(xy[..., :1])], -1)  # (C, R, 3) depth 1
    world = cameras.unproject_points(xyd, world_coordinates=True)  # (C, R, 3)
    if cameras.is_perspective():
        origins = cameras.get_camera_center()[:, None].expand_as(world)  # (C, R, 3)
    else:
        origins = cameras.unproject_points(xyd * xyd.new_tensor([1.0, 1.0, 0.0]))  # (C, R, 3) depth 0
    directions = F.normalize(world - origins, dim=-1)
    return RayBundle(origins.contiguous(), directions, None, xy)


def image_rays(cameras: CamerasBase, image_size: Size) -> RayBundle:
    """(C, H * W) rays through every pixel centre of each camera (row-major, see :func:`ndc_grid`)."""
    return rays_from_ndc(cameras, ndc_grid(image_size, cameras.device, cameras.dtype))


# ----------------------------------------------------------------------------------------------
# samples along rays
# ----------------------------------------------------------------------------------------------
def stratified_lengths(
    shape: Sequence[int],
    n_samples: int,
    near: Scalar,
    far: Scalar,
    perturb: bool = False,
    generator: Optional[torch.Generator] = None,
    device=None,
    dtype=torch.float32,
) -> torch.Tensor:
    """(*shape, S) sample distances between ``near`` and ``far``.

    Args:
        shape: batch shape ``...`` of the rays (e.g. ``(R,)``).
        n_samples: S >= 1.
        near, far: floats or tensors broadcastable to ``shape`` (per-ray bounds).
        perturb: False gives ``linspace(near, far, S)`` (deterministic, the bin edges); True draws
            one uniform sample inside each of the S bins between consecutive midpoints of that
            linspace (NeRF's stratified jitter; the first and last bins are half-open at near/far).
        generator: random generator for the jitter (its device must match ``device``).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    shape = tuple(shape)
    u = torch.linspace(0.0, 1.0, n_samples, device=device, dtype=dtype)  # (S,)
    near_t = torch.as_tensor(near, device=device, dtype=dtype)
    far_t = torch.as_tensor(far, device=device, dtype=dtype)
    near_t = near_t.expand(shape) if near_t.dim() == 0 else near_t
    far_t = far_t.expand(shape) if far_t.dim() == 0 else far_t
    t = near_t[..., None] + (far_t - near_t)[..., None] * u  # (*shape, S)
    t = t.expand(*shape, n_samples)
    if perturb and n_samples > 1:
        mids = 0.5 * (t[..., 1:] + t[..., :-1])
        lower = torch.cat([t[..., :1], mids], -1)
        upper = torch.cat([mids, t[..., -1:]], -1)
        r = torch.rand(t.shape, generator=generator, device=device, dtype=dtype)
        t = lower + (upper - lower) * r
    return t.contiguous()


def ray_sphere_bounds(
    origins: torch.Tensor, directions: torch.Tensor, radius: float, centre: Sequence[float] = (0.0, 0.0, 0.0),
    min_near: float = 0.0,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where unit rays enter and leave a sphere: tight sampling bounds around a bounded scene.

    Args:
        origins, directions: (..., 3); directions of unit length.
        radius: sphere radius; centre: (3,).
        min_near: the entry distance is clamped to at least this value.
    Returns:
        near (...,), far (...,) and hit (...,) bool. Rays that miss get ``near = far`` at the
        point of closest approach (their samples collapse onto one point).
    """
    c = torch.as_tensor(centre, device=origins.device, dtype=origins.dtype)
    oc = origins - c
    b = (oc * directions).sum(-1)  # (...,) projection of the centre offset on the ray
    disc = b * b - ((oc * oc).sum(-1) - radius * radius)
    hit = disc > 0
    root = disc.clamp(min=0).sqrt()
    near = (-b - root).clamp(min=min_near)
    far = (-b + root).clamp(min=min_near)
    far = torch.maximum(far, near)
    return near, far, hit


def sample_deltas(lengths: torch.Tensor, last: float = LAST_DELTA) -> torch.Tensor:
    """(..., S) ``t_{i+1} - t_i`` with ``last`` appended for the final sample."""
    return torch.cat([lengths[..., 1:] - lengths[..., :-1], torch.full_like(lengths[..., :1], last)], -1)


def volume_weights(density: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """(..., S) rendering weights ``w_i = T_i (1 - exp(-sigma_i delta_i))``.

    Args:
        density: (..., S) non-negative densities sigma (may be +inf: an opaque sample).
        deltas: (..., S) sample spacings (see :func:`sample_deltas`).
    ``T_i = exp(-sum_{j<i} sigma_j delta_j)`` is computed as an exclusive cumulative sum in log
    space, which is differentiable and free of the underflow of long products.
    """
    if density.shape != deltas.shape:
        raise ValueError(f"density {tuple(density.shape)} and deltas {tuple(deltas.shape)} must match")
    tau = density * deltas  # (..., S) optical thickness of each interval
    alpha = -torch.expm1(-tau)  # 1 - exp(-tau), accurate for small tau
    acc = torch.cumsum(tau, -1)
    trans = torch.exp(-torch.cat([torch.zeros_like(acc[..., :1]), acc[..., :-1]], -1))  # (..., S)
    return trans * alpha


def composite(weights: torch.Tensor, values: torch.Tensor, background: Optional[Any] = None) -> torch.Tensor:
    """(..., F) ``sum_i w_i v_i`` (+ ``(1 - sum_i w_i) background`` when a background is given).

    Args:
        weights: (..., S); values: (..., S, F); background: None (black), a float, an (F,) colour
            or a (..., F) tensor.
    """
    out = (weights[..., None] * values).sum(-2)
    if background is not None:
        bg = torch.as_tensor(background, device=out.device, dtype=out.dtype)
        out = out + (1 - weights.sum(-1, keepdim=True)) * bg
    return out


def composite_depth(weights: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(...,) expected distance ``sum_i w_i t_i`` (not normalised by the opacity)."""
    return (weights * lengths).sum(-1)


class VolumeRender(NamedTuple):
    """Output of :func:`render_volume`: features (..., F), depth (...,), opacity (...,), weights (..., S)."""

    features: torch.Tensor
    depth: torch.Tensor
    opacity: torch.Tensor
    weights: torch.Tensor


def render_volume(
    density: torch.Tensor, features: torch.Tensor, lengths: torch.Tensor, background: Optional[Any] = None,
    last_delta: float = LAST_DELTA,
) -> VolumeRender:
    """Volume-render samples along rays.

    Args:
        density: (..., S) densities; features: (..., S, F) colours or other features;
        lengths: (..., S) sample distances along unit rays.
        background: optional colour composited behind (see :func:`composite`).
    """
    check_shape(features, tuple(density.shape) + (None,), "features")
    w = volume_weights(density, sample_deltas(lengths, last_delta))
    return VolumeRender(composite(w, features, background), composite_depth(w, lengths), w.sum(-1), w)


# ----------------------------------------------------------------------------------------------
# hierarchical (importance) sampling
# ----------------------------------------------------------------------------------------------
def sample_pdf(
    bins: torch.Tensor,
    weights: torch.Tensor,
    n_samples: int,
    deterministic: bool = False,
    generator: Optional[torch.Generator] = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Inverse-CDF sampling of a piecewise-constant PDF along each ray.

    Args:
        bins: (..., B + 1) sorted bin edges.
        weights: (..., B) non-negative bin weights (need not be normalised; ``eps`` is added so an
            all-zero ray falls back to uniform sampling).
        n_samples: number of samples N to draw per ray.
        deterministic: use evenly spaced quantiles ``linspace(0, 1, N)`` instead of uniform
            random ones.
    Returns:
        (..., N) samples; inside bin k they are spread uniformly, and the expected number that
        falls in bin k is proportional to its weight.
    """
    check_shape(bins, tuple(weights.shape[:-1]) + (weights.shape[-1] + 1,), "bins")
    w = weights.detach() + eps
    pdf = w / w.sum(-1, keepdim=True)
    cdf = torch.cumsum(pdf, -1)
    cdf = torch.cat([torch.zeros_like(cdf[..., :1]), cdf], -1)  # (..., B + 1), 0 .. 1
    cdf[..., -1] = 1.0
    shape = tuple(cdf.shape[:-1]) + (n_samples,)
    if deterministic:
        u = torch.linspace(0.0, 1.0, n_samples, device=bins.device, dtype=bins.dtype).expand(shape)
    else:
        u = torch.rand(shape, generator=generator, device=bins.device, dtype=bins.dtype)
    u = u.contiguous()
    n_bins = cdf.shape[-1] - 1
    # cdf[idx - 1] <= u < cdf[idx]; u = 1 lands in the last bin with mass (frac 0 at its end)
    idx = torch.searchsorted(cdf.contiguous(), u, right=True).clamp(1, n_bins)  # (..., N)
    lo, hi = idx - 1, idx
    cdf_lo, cdf_hi = cdf.gather(-1, lo), cdf.gather(-1, hi)
    bin_lo, bin_hi = bins.detach().gather(-1, lo), bins.detach().gather(-1, hi)
    denom = cdf_hi - cdf_lo
    frac = torch.where(denom > 1e-12, (u - cdf_lo) / denom.clamp(min=1e-12), torch.zeros_like(u))
    return bin_lo + frac * (bin_hi - bin_lo)


def importance_lengths(
    lengths: torch.Tensor,
    weights: torch.Tensor,
    n_importance: int,
    deterministic: bool = False,
    generator: Optional[torch.Generator] = None,
    include_coarse: bool = True,
) -> torch.Tensor:
    """NeRF's fine samples: draw ``n_importance`` distances from the coarse weights.

    Args:
        lengths: (..., S) coarse sample distances; weights: (..., S) their rendering weights.
        include_coarse: return the union of coarse and fine samples, sorted ((..., S + N));
            otherwise only the fine samples, sorted ((..., N)).
    The bins are the midpoints between coarse samples (the first and last weights, which have
    no bin on both sides, are dropped), as in the NeRF paper's code. No gradient flows into
    the sample positions.
    """
    if lengths.shape != weights.shape:
        raise ValueError(f"lengths {tuple(lengths.shape)} and weights {tuple(weights.shape)} must match")
    if lengths.shape[-1] < 3:
        raise ValueError("importance sampling needs at least 3 coarse samples per ray")
    mids = 0.5 * (lengths[..., 1:] + lengths[..., :-1])  # (..., S - 1) bin edges
    fine = sample_pdf(mids, weights[..., 1:-1], n_importance, deterministic, generator)
    out = torch.cat([lengths.detach(), fine], -1) if include_coarse else fine
    return torch.sort(out, -1).values


# ----------------------------------------------------------------------------------------------
# chunked evaluation
# ----------------------------------------------------------------------------------------------
def chunked(fn: Callable[..., Any], n: int, chunk_size: int, *args: Any) -> Any:
    """Evaluate ``fn(*[a[s:e] for a in args])`` over chunks of the first dimension and concatenate.

    Args:
        fn: returns a tensor, or a dict / tuple of tensors (each concatenated along dim 0;
            None values stay None).
        n: size of the first dimension of every argument.
        chunk_size: rows per call.
        args: tensors or :class:`RayBundle` objects with first dimension n.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    outs = [fn(*[a[s:s + chunk_size] for a in args]) for s in range(0, n, chunk_size)]
    first = outs[0]
    if torch.is_tensor(first):
        return torch.cat(outs, 0)
    if isinstance(first, dict):
        return {k: (None if first[k] is None else torch.cat([o[k] for o in outs], 0)) for k in first}
    if isinstance(first, tuple):
        cat = [None if first[i] is None else torch.cat([o[i] for o in outs], 0) for i in range(len(first))]
        return type(first)(*cat) if hasattr(first, "_fields") else tuple(cat)
    raise TypeError(f"chunked: fn must return a tensor, dict or tuple, got {type(first).__name__}")


ChunkOutput = Dict[str, torch.Tensor]
