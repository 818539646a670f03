"""Procedural chairs, vases and lamps as surface point clouds, with per-point part labels.

The stand-in for the course's ShapeNet-derived point clouds. Every shape is a set of parts, each
part an analytic surface:

* a **box** (centre, half extents, rotation): six rectangles;
* a **revolved profile** (origin, rotation, a polyline of ``K`` knots ``(r, y)`` in the local
  (radius, height) plane, an elliptic x/z scale): a surface of revolution about the local y axis.
  A polyline covers disks (``(0, y) -> (R, y)``), cylinders, cones, frusta, spheres and vase
  profiles alike; unused trailing knots repeat the last one (zero-length segments, zero area).

Points are drawn area-weighted: per shape, a part is drawn with probability proportional to its
area times a random per-part density factor (so sampling density varies between parts), then a
point uniformly on that part (a face of the box by area, then uniform on it; a segment of the
profile by its lateral area ``pi (r_a + r_b) |segment|``, then the height along the segment by the
inverse CDF of the linear density ``r_a + (r_b - r_a) s``, then a uniform angle). Everything is
vectorised over all shapes and points; the builders are vectorised over the shapes of a class
(a Python loop runs only over a fixed, small list of part slots, each slot on or off per shape).

Shapes are y-up, standing on the floor, chairs facing -z. After sampling, every shape is scaled
anisotropically so that its bounding box matches target extents drawn from class distributions
that overlap on purpose (chairs, vases and lamps share sizes and proportions), then centred on
its bounding-box centre, and jittered by a small per-shape Gaussian noise. A classifier that
sees only the bounding box therefore does poorly (see :mod:`a5_pointnet.baseline`).

Chair part labels (:data:`CHAIR_PARTS`): 0 seat, 1 back, 2 legs (legs, swivel column, solid
block base), 3 arms (armrests, their supports, side panels), 4 base (stretchers between legs,
star-base spokes and casters, sled runners), 5 headrest.

Class labels (:data:`CLASS_NAMES`, as in the course): 0 chair, 1 vase, 2 lamp.

Deterministic by seed: the same ``(seed, task, split)`` gives the same arrays on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch

__all__ = [
    "CLASS_NAMES", "CHAIR_PARTS", "GENERATOR_VERSION", "PartTable", "sample_parts",
    "build_chairs", "build_vases", "build_lamps", "generate_class", "generate_split",
]

CLASS_NAMES = ("chair", "vase", "lamp")
CHAIR_PARTS = ("seat", "back", "legs", "arms", "base", "headrest")
#: bump when the generator changes, so cached data sets are regenerated
GENERATOR_VERSION = 2
#: knots per revolved profile
K_KNOTS = 16
#: class shares of the classification split (chair, vase, lamp)
CLASS_SHARES = (0.4, 0.3, 0.3)
#: target bounding-box extents per class: (height range, width range, depth/width ratio range);
#: they overlap on purpose so that the bounding box alone is a weak cue
TARGET_EXTENTS = {
    "chair": ((1.0, 1.8), (0.7, 1.25), (0.8, 1.3)),
    "vase": ((0.9, 1.9), (0.6, 1.2), (0.75, 1.1)),
    "lamp": ((1.0, 1.9), (0.6, 1.3), (0.7, 1.3)),
}
_CHUNK = 128  # shapes generated at once (bounds memory; the seed of a chunk depends on its index)


# ----------------------------------------------------------------------------------------------
# part table and the area-weighted sampler
# ----------------------------------------------------------------------------------------------
@dataclass
class PartTable:
    """Analytic parts of S shapes (padded slots; a slot with weight 0 is absent).

    Attributes:
        box_center: (S, B, 3) box centres.
        box_half: (S, B, 3) half extents along the box's local axes.
        box_rot: (S, B, 3, 3) local-to-world rotations (``world = rot @ local + center``).
        box_label: (S, B) long part labels.
        box_weight: (S, B) density factor per box (0 = slot unused).
        rev_origin: (S, Q, 3) origins of the revolved parts.
        rev_rot: (S, Q, 3, 3) local-to-world rotations; the local y axis is the axis of revolution.
        rev_profile: (S, Q, K, 2) polyline knots ``(r, y)``, r >= 0.
        rev_scale: (S, Q, 2) x and z scale of the local cross-section (1, 1 = circular).
        rev_label: (S, Q) long part labels.
        rev_weight: (S, Q) density factor per revolved part (0 = slot unused).
    """

    box_center: torch.Tensor
    box_half: torch.Tensor
    box_rot: torch.Tensor
    box_label: torch.Tensor
    box_weight: torch.Tensor
    rev_origin: torch.Tensor
    rev_rot: torch.Tensor
    rev_profile: torch.Tensor
    rev_scale: torch.Tensor
    rev_label: torch.Tensor
    rev_weight: torch.Tensor

    def areas(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Surface areas: boxes (S, B) and revolved parts (S, Q) (ellipses approximated by the
        mean of the two scales)."""
        h = self.box_half
        box = 8.0 * (h[..., 0] * h[..., 1] + h[..., 1] * h[..., 2] + h[..., 0] * h[..., 2])
        return box, self._segment_areas().sum(-1)

    def _segment_areas(self) -> torch.Tensor:
        prof = self.rev_profile  # (S, Q, K, 2)
        seg = prof[..., 1:, :] - prof[..., :-1, :]  # (S, Q, K-1, 2)
        length = seg.norm(dim=-1)
        mean_r = 0.5 * (prof[..., 1:, 0] + prof[..., :-1, 0])
        ell = 0.5 * (self.rev_scale[..., 0] + self.rev_scale[..., 1])  # (S, Q)
        return 2.0 * math.pi * mean_r * length * ell[..., None]  # (S, Q, K-1)


def sample_parts(table: PartTable, num_points: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sample ``num_points`` points per shape on the surfaces of a :class:`PartTable`.

    Args:
        table: parts of S shapes.
        num_points: P, points per shape.
        generator: torch generator (CPU) that makes the draw reproducible.
    Returns:
        points (S, P, 3) float and labels (S, P) long (the part label of each point's part).
    """
    dev, dt = table.box_center.device, table.box_center.dtype
    S, B = table.box_weight.shape
    Q = table.rev_weight.shape[1]
    box_area, rev_area = table.areas()
    weights = torch.cat([box_area * table.box_weight, rev_area * table.rev_weight], 1)  # (S, B+Q)
    if bool((weights.sum(1) <= 0).any()):
        raise ValueError("every shape needs at least one part with positive area")
    slot = torch.multinomial(weights, num_points, replacement=True, generator=generator)  # (S, P)
    shape_idx = torch.arange(S, device=dev)[:, None].expand(S, num_points)
    points = torch.empty(S, num_points, 3, device=dev, dtype=dt)
    labels = torch.empty(S, num_points, dtype=torch.long, device=dev)

    flat_slot = (shape_idx * (B + Q) + slot).reshape(-1)  # (S*P,) index into the (S*(B+Q)) slots
    is_box = (slot < B).reshape(-1)
    box_pts = torch.nonzero(is_box).flatten()  # (M,) flat point ids on boxes
    rev_pts = torch.nonzero(~is_box).flatten()
    points = points.reshape(-1, 3)
    labels = labels.reshape(-1)

    if box_pts.numel():
        s_i = torch.div(flat_slot[box_pts], B + Q, rounding_mode="floor")
        flat = s_i * B + (flat_slot[box_pts] - s_i * (B + Q))  # (M,) index into the (S*B) boxes
        half = table.box_half.reshape(-1, 3).index_select(0, flat)  # (M, 3)
        M = half.shape[0]
        face_area = torch.stack([half[:, 1] * half[:, 2], half[:, 0] * half[:, 2], half[:, 0] * half[:, 1]], -1)
        cdf = face_area.cumsum(-1)  # (M, 3)
        u = torch.rand(M, 1, generator=generator, device=dev, dtype=dt) * cdf[:, -1:]
        axis = (cdf < u).sum(-1).clamp(max=2)  # (M,) face pair drawn by area
        local = (torch.rand(M, 3, generator=generator, device=dev, dtype=dt) * 2 - 1) * half
        sign = torch.where(torch.rand(M, generator=generator, device=dev, dtype=dt) < 0.5, -1.0, 1.0).to(dt)
        onehot = torch.nn.functional.one_hot(axis, 3).to(torch.bool)
        local = torch.where(onehot, sign[:, None] * half, local)  # (M, 3) on the chosen face
        rot = table.box_rot.reshape(-1, 3, 3).index_select(0, flat)
        world = torch.einsum("mij,mj->mi", rot, local) + table.box_center.reshape(-1, 3).index_select(0, flat)
        points.index_copy_(0, box_pts, world)
        labels.index_copy_(0, box_pts, table.box_label.reshape(-1).index_select(0, flat))

    if rev_pts.numel():
        s_i = torch.div(flat_slot[rev_pts], B + Q, rounding_mode="floor")
        flat = s_i * Q + (flat_slot[rev_pts] - s_i * (B + Q) - B)  # (M,) index into the (S*Q) parts
        M = flat.shape[0]
        nseg = K_KNOTS - 1
        # segment by its area: one sorted table "part id + normalised CDF" (float64) for all parts
        seg_area = table._segment_areas().reshape(S * Q, nseg).double()
        cdf = seg_area.cumsum(-1)
        cdf = cdf / cdf[:, -1:].clamp(min=1e-300)
        keys = (torch.arange(S * Q, device=dev, dtype=torch.float64)[:, None] + cdf).reshape(-1)
        u = torch.rand(M, generator=generator, device=dev, dtype=torch.float64)
        seg = torch.searchsorted(keys, flat.double() + u) - flat * nseg  # (M,) count of cdf < u
        seg = seg.clamp(0, nseg - 1)
        knots = table.rev_profile.reshape(-1, 2)
        a = knots.index_select(0, flat * K_KNOTS + seg)  # (M, 2) start knot
        b = knots.index_select(0, flat * K_KNOTS + seg + 1)  # (M, 2) end knot
        ra, rb = a[:, 0], b[:, 0]
        v = torch.rand(M, generator=generator, device=dev, dtype=dt)
        # inverse CDF of the density r_a + (r_b - r_a) s on [0, 1], in its cancellation-free form
        s = v * (ra + rb) / (ra + torch.sqrt((ra * ra + (rb * rb - ra * ra) * v).clamp(min=0)) + 1e-12)
        s = s.clamp(0, 1)
        r = ra + (rb - ra) * s
        y = a[:, 1] + (b[:, 1] - a[:, 1]) * s
        theta = torch.rand(M, generator=generator, device=dev, dtype=dt) * (2 * math.pi)
        sc = table.rev_scale.reshape(-1, 2).index_select(0, flat)
        local = torch.stack([r * torch.cos(theta) * sc[:, 0], y, r * torch.sin(theta) * sc[:, 1]], -1)
        rot = table.rev_rot.reshape(-1, 3, 3).index_select(0, flat)
        world = torch.einsum("mij,mj->mi", rot, local) + table.rev_origin.reshape(-1, 3).index_select(0, flat)
        points.index_copy_(0, rev_pts, world)
        labels.index_copy_(0, rev_pts, table.rev_label.reshape(-1).index_select(0, flat))
    points = points.reshape(S, num_points, 3)
    labels = labels.reshape(S, num_points)
    return points, labels


# ----------------------------------------------------------------------------------------------
# vectorised builder helpers (numpy, over the n shapes of one class)
# ----------------------------------------------------------------------------------------------
def _eye(n: int) -> np.ndarray:
    return np.broadcast_to(np.eye(3), (n, 3, 3)).copy()


def rot_x(angle: np.ndarray) -> np.ndarray:
    """(n, 3, 3) rotations about +x by ``angle`` (n,) radians; positive tilts +y towards +z."""
    c, s = np.cos(angle), np.sin(angle)
    o, z = np.ones_like(angle), np.zeros_like(angle)
    return np.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(-1, 3, 3)


def frame_y_to(direction: np.ndarray) -> np.ndarray:
    """(n, 3, 3) rotations whose second column (the image of local +y) is ``direction`` (n, 3)."""
    d = direction / np.linalg.norm(direction, axis=-1, keepdims=True).clip(1e-12)
    helper = np.where(np.abs(d[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 0, 1.0]]))
    x = helper - (helper * d).sum(-1, keepdims=True) * d
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    z = np.cross(x, d)
    return np.stack([x, d, z], -1)


def _profile(knots: List[np.ndarray]) -> np.ndarray:
    """Stack knots [(n, 2), ...] into (n, K, 2), padding with the last knot."""
    pts = np.stack(knots, 1)
    pad = K_KNOTS - pts.shape[1]
    if pad < 0:
        raise ValueError(f"a profile has {pts.shape[1]} knots, more than {K_KNOTS}")
    return np.concatenate([pts, np.repeat(pts[:, -1:], pad, 1)], 1)


def sphere_profile(radius: np.ndarray, knots: int = 9) -> np.ndarray:
    """(n, K, 2) polyline of a sphere of ``radius`` (n,) centred on the local origin."""
    phi = np.linspace(0.0, math.pi, knots)
    return _profile([np.stack([radius * np.sin(p), -radius * np.cos(p)], -1) for p in phi])


class _Builder:
    """Collects part slots (each vectorised over n shapes) and turns them into a PartTable."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.n, self.rng = n, rng
        self.boxes: List[tuple] = []
        self.revs: List[tuple] = []

    def _vec(self, x, dim: Optional[int] = 3) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.broadcast_to(x, (self.n,) if dim is None else (self.n, dim)).copy()

    def _on(self, on) -> np.ndarray:
        return np.broadcast_to(np.asarray(on, dtype=bool), (self.n,)).copy()

    def box(self, center, half, label, on=True, rot=None) -> None:
        """A box slot: ``center`` (n, 3), ``half`` extents (n, 3), ``rot`` (n, 3, 3) or None."""
        half = np.abs(self._vec(half))
        self.boxes.append((self._vec(center), half, _eye(self.n) if rot is None else rot,
                           self._vec(label, None), self._on(on)))

    def revolve(self, origin, profile, label, on=True, rot=None, scale=(1.0, 1.0)) -> None:
        """A revolved slot: ``profile`` (n, K, 2) knots (r, y) about the local y axis."""
        self.revs.append((self._vec(origin), profile, _eye(self.n) if rot is None else rot,
                          self._vec(scale, 2), self._vec(label, None), self._on(on)))

    def cylinder(self, p0, p1, r0, r1=None, label=0, on=True, caps=True) -> None:
        """A (tapered) cylinder from ``p0`` to ``p1`` (n, 3) with radii ``r0``/``r1`` (n,)."""
        p0, p1 = self._vec(p0), self._vec(p1)
        r0 = self._vec(r0, None)
        r1 = r0 if r1 is None else self._vec(r1, None)
        length = np.linalg.norm(p1 - p0, axis=-1)
        z = np.zeros(self.n)
        knots = [np.stack([r0, z], -1), np.stack([r1, length], -1)]
        if caps:
            knots = [np.stack([z, z], -1)] + knots + [np.stack([z, length], -1)]
        self.revolve(p0, _profile(knots), label, on, rot=frame_y_to(p1 - p0 + 1e-9 * np.array([0, 1.0, 0])))

    def sphere(self, center, radius, label=0, on=True) -> None:
        self.revolve(center, sphere_profile(self._vec(radius, None)), label, on)

    def table(self, density_spread: float = 0.7) -> PartTable:
        """The PartTable of all slots; each used slot gets a density factor exp(U(-s, s))."""
        n, rng = self.n, self.rng
        t = lambda x, dtype=torch.float32: torch.as_tensor(np.ascontiguousarray(x), dtype=dtype)  # noqa: E731
        if not self.boxes:  # keep shapes valid: one unused dummy slot
            self.box(np.zeros(3), np.full(3, 1e-3), 0, on=False)
        if not self.revs:
            self.revolve(np.zeros(3), sphere_profile(np.full(n, 1e-3)), 0, on=False)
        bc, bh, br, bl, bo = (np.stack(v, 1) for v in zip(*self.boxes))
        ro, rp, rr, rs, rl, rn = (np.stack(v, 1) for v in zip(*self.revs))
        bw = bo * np.exp(rng.uniform(-density_spread, density_spread, bo.shape))
        rw = rn * np.exp(rng.uniform(-density_spread, density_spread, rn.shape))
        return PartTable(t(bc), t(bh), t(br), t(bl, torch.long), t(bw),
                         t(ro), t(rr), t(rp), t(rs), t(rl, torch.long), t(rw))


def _choice(rng: np.random.Generator, n: int, probs) -> np.ndarray:
    return rng.choice(len(probs), size=n, p=np.asarray(probs) / np.sum(probs))


# ----------------------------------------------------------------------------------------------
# chairs
# ----------------------------------------------------------------------------------------------
def build_chairs(n: int, rng: np.random.Generator) -> PartTable:
    """Parts of n random chairs (labels: :data:`CHAIR_PARTS`). Chairs face -z, the floor is y=0.

    Styles: legs (square legs, round splayed legs, swivel column with a star base and casters,
    sled with floor runners, solid block), backs (solid slab, vertical slats, horizontal rails,
    a slab on two posts above the seat), optional arms, stretchers and headrest, backs tilted.
    """
    b = _Builder(n, rng)
    U = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    z0 = np.zeros(n)
    W, D = U(0.38, 0.65), U(0.36, 0.62)  # seat width (x), depth (z)
    seat_top, seat_t = U(0.32, 0.55), U(0.03, 0.11)
    leg_style = _choice(rng, n, [0.3, 0.25, 0.2, 0.1, 0.15])  # square, round, swivel, sled, block
    back_style = _choice(rng, n, [0.35, 0.25, 0.2, 0.2])  # slab, vertical slats, rails, on posts
    back_h, back_t = U(0.3, 0.75), U(0.025, 0.07)
    tilt = U(0.0, 0.35)
    has_arms = rng.uniform(size=n) < np.where(leg_style == 4, 0.65, 0.35)
    has_stretch = (rng.uniform(size=n) < 0.5) & (leg_style <= 1)
    has_head = rng.uniform(size=n) < 0.22
    seat_bottom = seat_top - seat_t

    # 0 seat
    b.box(np.stack([z0, seat_top - seat_t / 2, z0], -1), np.stack([W / 2, seat_t / 2, D / 2], -1), 0)

    # 1 back (+ 5 headrest), built in a frame pivoting at the rear edge of the seat
    R = rot_x(tilt)
    pivot = np.stack([z0, seat_top, D / 2 - back_t / 2], -1)
    to_world = lambda local: pivot + np.einsum("nij,nj->ni", R, local)  # noqa: E731
    post_w, rail_h = U(0.03, 0.06), U(0.04, 0.1)
    gap = np.where(back_style == 3, U(0.06, 0.16), 0.0)  # slab on posts: a gap above the seat
    slab_w = np.where(back_style == 3, W * U(0.7, 0.95), W)
    b.box(to_world(np.stack([z0, gap + (back_h - gap) / 2, z0], -1)),
          np.stack([slab_w / 2, (back_h - gap) / 2, back_t / 2], -1), 1, back_style == 0, R)
    b.box(to_world(np.stack([z0, gap + (back_h - gap) / 2, z0], -1)),
          np.stack([slab_w / 2, (back_h - gap) / 2, back_t * 1.6 / 2], -1), 1, back_style == 3, R)
    framed = (back_style == 1) | (back_style == 2) | (back_style == 3)
    for sx in (-1.0, 1.0):  # side posts (style 3: short posts under the slab)
        ph = np.where(back_style == 3, gap + 0.05, back_h)
        px = np.where(back_style == 3, 0.3 * W, W / 2 - post_w / 2) * sx
        b.box(to_world(np.stack([px, ph / 2, z0], -1)), np.stack([post_w / 2, ph / 2, back_t / 2], -1), 1, framed, R)
    b.box(to_world(np.stack([z0, back_h - rail_h / 2, z0], -1)),
          np.stack([W / 2 - post_w, rail_h / 2, back_t / 2], -1), 1, back_style == 1, R)
    n_slats = rng.integers(2, 6, n)
    slat_w, slat_h = U(0.02, 0.06), back_h - rail_h
    inner = W - 2 * post_w
    for k in range(5):
        x = -W / 2 + post_w + (k + 1) * inner / (n_slats + 1)
        b.box(to_world(np.stack([x, slat_h / 2, z0], -1)), np.stack([slat_w / 2, slat_h / 2, back_t * 0.35], -1),
              1, (back_style == 1) & (k < n_slats), R)
    n_rails = rng.integers(2, 5, n)
    for k in range(4):
        y = back_h * (0.25 + 0.75 * k / np.maximum(n_rails - 1, 1)) - rail_h / 2
        b.box(to_world(np.stack([z0, y, z0], -1)), np.stack([inner / 2, rail_h / 2, back_t / 2], -1),
              1, (back_style == 2) & (k < n_rails), R)
    head_h, head_w, head_t = U(0.08, 0.16), W * U(0.45, 0.8), back_t * U(1.8, 3.0)
    b.box(to_world(np.stack([z0, back_h + head_h / 2, back_t * 0.3], -1)),
          np.stack([head_w / 2, head_h / 2, head_t / 2], -1), 5, has_head, R)

    # 2 legs and 4 base
    inset = U(0.0, 0.05)
    leg_w, leg_r = U(0.03, 0.06), U(0.014, 0.032)
    splay = np.where(leg_style == 1, U(0.0, 0.08), 0.0)
    taper = np.where(leg_style == 1, U(0.55, 1.0), 1.0)
    leg_top, leg_bot = {}, {}
    for sx in (-1.0, 1.0):
        for sz in (-1.0, 1.0):
            cx = sx * (W / 2 - inset - leg_w / 2)
            cz = sz * (D / 2 - inset - leg_w / 2)
            b.box(np.stack([cx, seat_bottom / 2, cz], -1), np.stack([leg_w / 2, seat_bottom / 2, leg_w / 2], -1),
                  2, leg_style == 0)
            top = np.stack([cx, seat_bottom, cz], -1)
            bot = np.stack([cx + sx * splay, z0, cz + sz * splay], -1)
            b.cylinder(bot, top, leg_r * taper, leg_r, 2, (leg_style == 1) | (leg_style == 3))
            leg_top[sx, sz], leg_bot[sx, sz] = top, bot
    # stretchers between legs at height h (sides always, front/back on a coin)
    h = U(0.12, 0.45)[:, None]
    at = {k: leg_bot[k] + (leg_top[k] - leg_bot[k]) * h for k in leg_top}
    st_r = U(0.008, 0.02)
    fb = rng.uniform(size=n) < 0.5
    for sx in (-1.0, 1.0):
        b.cylinder(at[sx, -1.0], at[sx, 1.0], st_r, label=4, on=has_stretch)
    for sz in (-1.0, 1.0):
        b.cylinder(at[-1.0, sz], at[1.0, sz], st_r, label=4, on=has_stretch & fb)
    # sled runners on the floor
    run_r, run_ext = U(0.01, 0.02), U(0.0, 0.08)
    for sx in (-1.0, 1.0):
        x = sx * (W / 2 - inset - leg_w / 2)
        b.cylinder(np.stack([x, run_r, -D / 2 - run_ext], -1), np.stack([x, run_r, D / 2 + run_ext], -1),
                   run_r, label=4, on=leg_style == 3)
    # swivel: column (legs), spokes and casters (base)
    caster_r = U(0.02, 0.035)
    hub_y = caster_r * 2 + U(0.02, 0.06)
    col_r = U(0.022, 0.045)
    swivel = leg_style == 2
    b.cylinder(np.stack([z0, hub_y, z0], -1), np.stack([z0, seat_bottom, z0], -1), col_r, label=2, on=swivel)
    b.box(np.stack([z0, seat_bottom - 0.015, z0], -1), np.stack([W * 0.18, 0.015 + z0, D * 0.18], -1), 2, swivel)
    n_spokes = rng.integers(4, 6, n)
    spoke_len = np.maximum(W, D) * U(0.45, 0.6)
    phase = U(0, 2 * math.pi)
    has_casters = rng.uniform(size=n) < 0.75
    spoke_r = U(0.012, 0.024)
    for k in range(5):
        phi = phase + 2 * math.pi * k / n_spokes
        end = np.stack([spoke_len * np.cos(phi), caster_r * 2, spoke_len * np.sin(phi)], -1)
        on = swivel & (k < n_spokes)
        b.cylinder(np.stack([z0, hub_y, z0], -1), end, spoke_r, label=4, on=on)
        b.sphere(end - np.stack([z0, caster_r, z0], -1), caster_r, 4, on & has_casters)
    # solid block
    shrink = U(0.85, 1.0)
    block = leg_style == 4
    b.box(np.stack([z0, seat_bottom / 2, z0], -1), np.stack([W / 2 * shrink, seat_bottom / 2, D / 2 * shrink], -1),
          2, block)

    # 3 arms: an armrest and a front support (or a full side panel on block chairs) per side
    arm_w, arm_t, arm_h = U(0.03, 0.08), U(0.025, 0.05), U(0.14, 0.3)
    arm_len = D * U(0.6, 1.0)
    zc = D / 2 - arm_len / 2
    sup_w = U(0.02, 0.05)
    for sx in (-1.0, 1.0):
        x = sx * (W / 2 + arm_w / 2)
        b.box(np.stack([x, seat_top + arm_h, zc], -1), np.stack([arm_w / 2, arm_t / 2, arm_len / 2], -1), 3, has_arms)
        post = np.stack([x, (seat_bottom + seat_top + arm_h) / 2, zc - arm_len / 2 + sup_w], -1)
        post_half = np.stack([sup_w / 2, (seat_top + arm_h - seat_bottom) / 2, sup_w / 2], -1)
        panel = np.stack([x, (seat_top + arm_h) / 2, z0], -1)
        panel_half = np.stack([arm_w / 2, (seat_top + arm_h) / 2, D / 2], -1)
        b.box(np.where(block[:, None], panel, post), np.where(block[:, None], panel_half, post_half), 3, has_arms)
    return b.table()


# ----------------------------------------------------------------------------------------------
# vases
# ----------------------------------------------------------------------------------------------
def _smooth_interp(t: np.ndarray, ct: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """Cosine interpolation of control radii ``cr`` (n, C) at heights ``ct`` (n, C) (increasing),
    evaluated at ``t`` (n, T); returns (n, T)."""
    seg = (t[:, :, None] >= ct[:, None, 1:-1]).sum(-1)  # (n, T) interval index
    t0 = np.take_along_axis(ct, seg, 1)
    t1 = np.take_along_axis(ct, seg + 1, 1)
    r0 = np.take_along_axis(cr, seg, 1)
    r1 = np.take_along_axis(cr, seg + 1, 1)
    tau = np.clip((t - t0) / np.maximum(t1 - t0, 1e-9), 0, 1)
    return r0 + (r1 - r0) * (1 - np.cos(math.pi * tau)) / 2


def build_vases(n: int, rng: np.random.Generator) -> PartTable:
    """Parts of n random vases: a revolved body (closed bottom, open top) with a smooth random
    profile (base, belly, shoulder, neck, lip), an optional inner wall, foot and two handles,
    and an elliptic cross-section. All parts get label 0 (vases are not segmented)."""
    b = _Builder(n, rng)
    U = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    z0 = np.zeros(n)
    H = U(0.6, 1.4)
    r_belly = U(0.2, 0.5)
    ct = np.stack([z0, U(0.15, 0.5), U(0.55, 0.75), U(0.78, 0.95), z0 + 1], -1)  # (n, 5)
    r_neck = r_belly * U(0.2, 0.9)
    cr = np.stack([r_belly * U(0.35, 1.0), r_belly, r_belly * U(0.6, 1.0), r_neck, r_neck * U(0.9, 1.7)], -1)
    cr[:, 2] = np.maximum(cr[:, 2], cr[:, 3])  # shoulder between belly and neck
    side_t = np.linspace(0.0, 1.0, 14)[None].repeat(n, 0)  # (n, 14)
    side_r = _smooth_interp(side_t, ct, cr)  # (n, 14)
    foot_on = rng.uniform(size=n) < 0.25
    foot_h = np.where(foot_on, U(0.04, 0.12), 0.0)
    body_h = H - foot_h
    knots = [np.stack([z0, z0], -1)] + [np.stack([side_r[:, j], side_t[:, j] * body_h], -1) for j in range(14)]
    scale = np.stack([np.ones(n), U(0.75, 1.0)], -1)
    origin = np.stack([z0, foot_h, z0], -1)
    b.revolve(origin, _profile(knots), 0, scale=scale)
    # inner wall: from the lip down to a little above the bottom
    wall = U(0.03, 0.08)
    inner_t = side_t[:, ::-1][:, :12]  # 1 .. ~0.15, top down
    inner_r = np.clip(_smooth_interp(inner_t, ct, cr) - wall[:, None], 0.0, None)
    inner_knots = [np.stack([side_r[:, -1], body_h], -1)] + [np.stack([inner_r[:, j], inner_t[:, j] * body_h], -1)
                                                            for j in range(12)]
    inner_knots.append(np.stack([z0, inner_t[:, -1] * body_h], -1))
    b.revolve(origin, _profile(inner_knots), 0, on=rng.uniform(size=n) < 0.4, scale=scale)
    # foot: a disk with a rim up to the body's base radius
    rf = side_r[:, 0] * U(1.0, 1.5)
    b.revolve(np.zeros((n, 3)), _profile([np.stack([z0, z0], -1), np.stack([rf, z0], -1), np.stack([rf, foot_h * 0.4], -1),
                                          np.stack([side_r[:, 0] * 0.6, foot_h], -1)]), 0, on=foot_on, scale=scale)
    # handles: arcs of 4 cylinders from the shoulder to the belly, on both sides of x
    handles = rng.uniform(size=n) < 0.3
    tu, tl = U(0.65, 0.9), U(0.3, 0.55)
    ru = _smooth_interp(tu[:, None], ct, cr)[:, 0]
    rl = _smooth_interp(tl[:, None], ct, cr)[:, 0]
    bulge, hr = U(0.06, 0.18), U(0.012, 0.025)
    us = np.linspace(0, 1, 5)
    for sx in (-1.0, 1.0):
        pts = [np.stack([sx * ((ru + (rl - ru) * u) * 0.95 + bulge * math.sin(math.pi * u)),
                         foot_h + (tu + (tl - tu) * u) * body_h, z0], -1) for u in us]
        for k in range(4):
            b.cylinder(pts[k], pts[k + 1], hr, label=0, on=handles, caps=False)
    return b.table(density_spread=0.4)


# ----------------------------------------------------------------------------------------------
# lamps
# ----------------------------------------------------------------------------------------------
def build_lamps(n: int, rng: np.random.Generator) -> PartTable:
    """Parts of n random lamps. Styles: table/floor lamp (base, column, shade), desk lamp with a
    two-segment arm and a cone shade, pendant (ceiling canopy, cord, shade), tripod floor lamp.
    Table lamps may stand on a vase-shaped body ("ginger jar"). Shades: open frustum (drum or
    cone), dome or globe; optional bulb and finial. Label 0."""
    b = _Builder(n, rng)
    U = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    z0 = np.zeros(n)
    style = _choice(rng, n, [0.4, 0.25, 0.15, 0.2])  # table/floor, arm, pendant, tripod
    H = U(0.8, 1.6)
    standing = style != 2
    # base: a revolved disk/dome (or a box) for table and arm lamps
    rb, hb = U(0.1, 0.28), U(0.02, 0.08)
    has_base = (style == 0) | (style == 1)
    box_base = rng.uniform(size=n) < 0.3
    base_prof = _profile([np.stack([z0, z0], -1), np.stack([rb, z0], -1), np.stack([rb, hb * 0.5], -1),
                          np.stack([rb * U(0.3, 0.9), hb], -1), np.stack([z0, hb], -1)])
    b.revolve(np.zeros((n, 3)), base_prof, 0, on=has_base & ~box_base)
    b.box(np.stack([z0, hb / 2, z0], -1), np.stack([rb, hb / 2, rb * U(0.7, 1.0)], -1), 0, has_base & box_base)
    # "ginger-jar" table lamps: a vase-shaped body as the base (the column starts on its top)
    jar = (style == 0) & (rng.uniform(size=n) < 0.35)
    jar_h, jar_r = H * U(0.3, 0.5), U(0.12, 0.3)
    ct = np.stack([z0, U(0.2, 0.5), U(0.6, 0.8), z0 + 1], -1)
    cr = np.stack([jar_r * U(0.4, 0.9), jar_r, jar_r * U(0.3, 0.7), jar_r * U(0.15, 0.3)], -1)
    jt = np.linspace(0.0, 1.0, 13)[None].repeat(n, 0)
    jr = _smooth_interp(jt, ct, cr)
    jar_knots = [np.stack([z0, z0], -1)] + [np.stack([jr[:, j], jt[:, j] * jar_h], -1) for j in range(13)]
    jar_knots.append(np.stack([z0, jar_h], -1))
    b.revolve(np.zeros((n, 3)), _profile(jar_knots), 0, on=jar)
    hb = np.where(jar, jar_h, hb)  # the column of a jar lamp starts on the jar

    # shade geometry (shared by styles 0, 2, 3): bottom radius, top radius, height
    shade_kind = _choice(rng, n, [0.45, 0.2, 0.2, 0.15])  # drum/cone frustum, dome, globe, flared
    sh = U(0.15, 0.4)
    sr_bot = U(0.15, 0.45)
    sr_top = sr_bot * np.where(shade_kind == 3, U(1.1, 1.6), U(0.4, 1.0))
    shade_bottom_y = np.where(style == 2, H * U(0.0, 0.2), H - sh)
    frustum = _profile([np.stack([sr_bot, z0], -1), np.stack([sr_top, sh], -1)])
    phi = np.linspace(0.0, math.pi / 2, 8)
    dome = _profile([np.stack([sr_bot * np.cos(p), sh * np.sin(p)], -1) for p in phi])
    globe_r = np.minimum(sr_bot, sh * 1.2)
    globe = sphere_profile(globe_r)
    shade_prof = np.where((shade_kind == 1)[:, None, None], dome, frustum)
    shade_prof = np.where((shade_kind == 2)[:, None, None], globe + np.array([0.0, 1.0]) * globe_r[:, None, None],
                          shade_prof)
    shaded = style != 1
    b.revolve(np.stack([z0, shade_bottom_y, z0], -1), shade_prof, 0, on=shaded,
              scale=np.stack([np.ones(n), U(0.8, 1.0)], -1))
    bulb_r = U(0.03, 0.07)
    b.sphere(np.stack([z0, shade_bottom_y + sh * 0.35, z0], -1), bulb_r, 0,
             shaded & (shade_kind != 2) & (rng.uniform(size=n) < 0.5))
    finial = (style == 0) & (shade_kind != 2) & (rng.uniform(size=n) < 0.35)
    b.sphere(np.stack([z0, shade_bottom_y + sh + 0.03, z0], -1), U(0.015, 0.03), 0, finial)

    # column of table/floor lamps (from the base to the shade's centre)
    col_r = U(0.01, 0.035)
    b.cylinder(np.stack([z0, hb, z0], -1), np.stack([z0, shade_bottom_y + sh * 0.5, z0], -1), col_r, label=0,
               on=style == 0)
    # pendant: cord from the ceiling canopy down to the shade top
    cord_r = U(0.006, 0.015)
    b.cylinder(np.stack([z0, shade_bottom_y + sh, z0], -1), np.stack([z0, H, z0], -1), cord_r, label=0, on=style == 2)
    can_r = U(0.06, 0.14)
    b.revolve(np.stack([z0, H, z0], -1), _profile([np.stack([z0, z0], -1), np.stack([can_r, z0], -1),
                                                   np.stack([can_r * 0.8, 0.04 + z0], -1)]), 0, on=style == 2)
    # tripod legs from just below the shade to the floor
    tri_r, tri_spread = U(0.01, 0.025), U(0.25, 0.5)
    tphase = U(0, 2 * math.pi)
    for k in range(3):
        a = tphase + 2 * math.pi * k / 3
        foot = np.stack([tri_spread * np.cos(a), z0, tri_spread * np.sin(a)], -1)
        b.cylinder(foot, np.stack([z0, shade_bottom_y + sh * 0.2, z0], -1), tri_r, label=0, on=style == 3)
    # desk lamp: two arm segments with joints and a cone shade pointing down and out
    arm = style == 1
    az = U(0, 2 * math.pi)
    dirx = np.stack([np.cos(az), z0, np.sin(az)], -1)
    up = np.array([0.0, 1.0, 0.0])
    l1, l2 = H * U(0.4, 0.55), H * U(0.35, 0.5)
    a1, a2 = U(-0.35, 0.2), U(0.6, 1.3)  # lean of the lower / upper arm from vertical
    j0 = np.stack([z0, hb, z0], -1)
    j1 = j0 + l1[:, None] * (np.cos(a1)[:, None] * up + np.sin(a1)[:, None] * dirx)
    j2 = j1 + l2[:, None] * (np.cos(a2)[:, None] * up + np.sin(a2)[:, None] * dirx)
    ar = U(0.01, 0.025)
    b.cylinder(j0, j1, ar, label=0, on=arm)
    b.cylinder(j1, j2, ar, label=0, on=arm)
    b.sphere(j1, ar * 1.8, 0, arm)
    beta = U(0.6, 1.3)  # shade axis: down and outwards
    axis = np.cos(beta)[:, None] * dirx - np.sin(beta)[:, None] * up
    cone_h, cone_r = U(0.12, 0.25), U(0.08, 0.2)
    cone = _profile([np.stack([z0, z0], -1), np.stack([cone_r * 0.3, z0], -1), np.stack([cone_r, cone_h], -1)])
    b.revolve(j2, cone, 0, on=arm, rot=frame_y_to(axis))
    return b.table(density_spread=0.4)


_BUILDERS = {"chair": build_chairs, "vase": build_vases, "lamp": build_lamps}


# ----------------------------------------------------------------------------------------------
# data sets
# ----------------------------------------------------------------------------------------------
def _normalise(points: torch.Tensor, cls: str, rng: np.random.Generator, generator: torch.Generator) -> torch.Tensor:
    """Scale every shape (S, P, 3) so its bounding box matches a target drawn from the class's
    :data:`TARGET_EXTENTS`, centre it, add per-shape Gaussian jitter."""
    S = points.shape[0]
    (h_lo, h_hi), (w_lo, w_hi), (d_lo, d_hi) = TARGET_EXTENTS[cls]
    height, width = rng.uniform(h_lo, h_hi, S), rng.uniform(w_lo, w_hi, S)
    target = np.stack([width, height, width * rng.uniform(d_lo, d_hi, S)], -1)
    target = torch.as_tensor(target, dtype=points.dtype)
    lo, hi = points.amin(1, keepdim=True), points.amax(1, keepdim=True)  # (S, 1, 3)
    centred = (points - (lo + hi) / 2) / (hi - lo).clamp(min=1e-6) * target[:, None]
    sigma = torch.as_tensor(rng.uniform(0.0, 0.008, S), dtype=points.dtype)[:, None, None]
    return centred + sigma * torch.randn(points.shape, generator=generator, dtype=points.dtype)


def generate_class(cls: str, num_shapes: int, num_points: int, seed: int, stream: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """``num_shapes`` shapes of one class as surface point clouds.

    Args:
        cls: "chair", "vase" or "lamp".
        num_shapes: S.
        num_points: P points per shape.
        seed, stream: the draw is a function of (seed, stream, class, chunk index) only.
    Returns:
        points (S, P, 3) float32 and part labels (S, P) int64 (all 0 except for chairs).
    """
    if cls not in _BUILDERS:
        raise ValueError(f"unknown class {cls!r}; known: {', '.join(_BUILDERS)}")
    ci = CLASS_NAMES.index(cls)
    pts_out, lab_out = [], []
    for chunk, start in enumerate(range(0, num_shapes, _CHUNK)):
        n = min(_CHUNK, num_shapes - start)
        rng = np.random.default_rng([seed, stream, ci, chunk])
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        table = _BUILDERS[cls](n, rng)
        pts, lab = sample_parts(table, num_points, gen)
        pts_out.append(_normalise(pts, cls, rng, gen).numpy().astype(np.float32))
        lab_out.append(lab.numpy())
    if not pts_out:
        return np.zeros((0, num_points, 3), np.float32), np.zeros((0, num_points), np.int64)
    return np.concatenate(pts_out), np.concatenate(lab_out)


def generate_split(task: str, split: str, num_shapes: int, num_points: int = 10000,
                   seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """One split in the course's layout.

    Args:
        task: "cls" (chairs, vases, lamps in :data:`CLASS_SHARES`, shuffled) or "seg" (chairs).
        split: "train" or "test" (independent draws: test shapes are never training shapes).
        num_shapes: N.
        num_points: P (the course uses 10000).
        seed: the base seed.
    Returns:
        data (N, P, 3) float32, and labels: (N,) int64 class ids for cls, (N, P) int64 part ids
        for seg.
    """
    if task not in ("cls", "seg") or split not in ("train", "test"):
        raise ValueError(f"task must be cls|seg and split train|test, got {task!r}, {split!r}")
    stream = {("cls", "train"): 1, ("cls", "test"): 2, ("seg", "train"): 3, ("seg", "test"): 4}[task, split]
    if task == "seg":
        return generate_class("chair", num_shapes, num_points, seed, stream)
    counts = np.floor(np.asarray(CLASS_SHARES) * num_shapes).astype(int)
    counts[0] += num_shapes - counts.sum()
    data, labels = [], []
    for ci, (cls, cnt) in enumerate(zip(CLASS_NAMES, counts)):
        pts, _ = generate_class(cls, int(cnt), num_points, seed, stream)
        data.append(pts)
        labels.append(np.full(int(cnt), ci, np.int64))
    data_all, labels_all = np.concatenate(data), np.concatenate(labels)
    order = np.random.default_rng([seed, stream, 99]).permutation(num_shapes)
    return data_all[order], labels_all[order]
