"""Procedural chairs, cars and airplanes built from batched part primitives.

Every shape is a union of a handful of parts (boxes, cylinders, ellipsoids). A part is one row
of a :class:`Parts` table: kind, centre, half-extents, rotation and a colour slot. The mesh of a
whole shape is made in one batched step per primitive kind
(``template (1, Vt, 3) * half (n, 1, 3) @ R^T + centre``), so no code loops over vertices or
faces; the generators below only loop over the few parts of one shape while sampling its
parameters.

Frame of the meshes (the "mesh frame", PyTorch3D world): +y up, the object's front towards +z,
its left/right along x. Every shape is centred on its bounding-box centre and scaled so that the
bounding-box diagonal is 1 (the ShapeNet normalisation), so it fits in [-0.5, 0.5]^3.
Parts overlap a little where they meet; they are closed surfaces, so the union is solid where
any part is (see :mod:`a2_single_view.voxelize`, which uses winding numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

from l3d.ops import ico_sphere

KINDS = ("box", "cyl", "ell")
CLASSES = ("chair", "car", "airplane")


# ----------------------------------------------------------------------------------------------
# primitive templates (unit size: box [-1, 1]^3, cylinder radius 1 along y in [-1, 1], unit sphere)
# ----------------------------------------------------------------------------------------------
def _orient_outward(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Flip the faces of a convex template whose normal points towards its centre."""
    tri = verts[faces]  # (F, 3, 3)
    nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    inward = (nrm * tri.mean(1)).sum(1) < 0
    faces = faces.copy()
    faces[inward] = faces[inward][:, [0, 2, 1]]
    return faces


def _box_template() -> Tuple[np.ndarray, np.ndarray]:
    """24 vertices (4 per side, so that each side shades flat) and 12 triangles."""
    quad = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)  # (4, 2)
    verts, faces = [], []
    for axis in range(3):
        u, v = (axis + 1) % 3, (axis + 2) % 3
        for sign in (-1.0, 1.0):
            c = np.zeros((4, 3))
            c[:, axis] = sign
            c[:, u], c[:, v] = quad[:, 0], quad[:, 1]
            base = len(verts) * 4
            verts.append(c)
            faces.append(np.array([[0, 1, 2], [0, 2, 3]]) + base)
    verts_a, faces_a = np.concatenate(verts), np.concatenate(faces)
    return verts_a, _orient_outward(verts_a, faces_a)


def _cylinder_template(sides: int = 16) -> Tuple[np.ndarray, np.ndarray]:
    """Side rings (smooth) plus separate flat caps with a centre vertex each."""
    t = 2 * np.pi * np.arange(sides) / sides
    ring = np.stack([np.cos(t), np.zeros(sides), np.sin(t)], 1)  # (S, 3)
    bot, top = ring + [0, -1, 0], ring + [0, 1, 0]
    verts = np.concatenate([bot, top, bot, top, [[0, -1, 0], [0, 1, 0]]])  # (4S + 2, 3)
    j = np.arange(sides)
    jn = (j + 1) % sides
    side = np.concatenate([np.stack([j, jn, sides + j], 1), np.stack([jn, sides + jn, sides + j], 1)])
    cb, ct = 4 * sides, 4 * sides + 1
    cap_b = np.stack([np.full(sides, cb), 2 * sides + j, 2 * sides + jn], 1)
    cap_t = np.stack([np.full(sides, ct), 3 * sides + jn, 3 * sides + j], 1)
    faces = np.concatenate([side, cap_b, cap_t])
    return verts, _orient_outward(verts, faces)


def _ellipsoid_template(level: int = 2) -> Tuple[np.ndarray, np.ndarray]:
    s = ico_sphere(level)
    return s.verts_packed().double().numpy(), s.faces_packed().numpy()


_TEMPLATES: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}


def template(kind: str) -> Tuple[np.ndarray, np.ndarray]:
    """(Vt, 3) float64 vertices and (Ft, 3) int64 faces of a unit primitive (cached)."""
    if kind not in _TEMPLATES:
        make: Dict[str, Callable[[], Tuple[np.ndarray, np.ndarray]]] = {
            "box": _box_template, "cyl": _cylinder_template, "ell": _ellipsoid_template}
        if kind not in make:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        _TEMPLATES[kind] = make[kind]()
    return _TEMPLATES[kind]


# ----------------------------------------------------------------------------------------------
# part tables and meshes
# ----------------------------------------------------------------------------------------------
def rot_x(deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


@dataclass
class Parts:
    """A growing table of parts; ``add`` appends one row (column-vector rotation ``x' = R x``)."""

    kind: List[str] = field(default_factory=list)
    centre: List[np.ndarray] = field(default_factory=list)
    half: List[np.ndarray] = field(default_factory=list)
    rot: List[np.ndarray] = field(default_factory=list)
    slot: List[int] = field(default_factory=list)

    def add(self, kind: str, centre, half, rot=None, slot: int = 0) -> "Parts":
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind.append(kind)
        self.centre.append(np.asarray(centre, dtype=np.float64))
        self.half.append(np.asarray(half, dtype=np.float64))
        self.rot.append(np.eye(3) if rot is None else np.asarray(rot, dtype=np.float64))
        self.slot.append(int(slot))
        return self

    def mirrored_x(self, start: int = 0) -> "Parts":
        """Append the mirror image (x -> -x) of parts ``start..`` (for left/right pairs)."""
        flip = np.diag([-1.0, 1.0, 1.0])
        for i in range(start, len(self.kind)):
            self.add(self.kind[i], self.centre[i] * [-1, 1, 1], self.half[i], flip @ self.rot[i] @ flip, self.slot[i])
        return self

    def __len__(self) -> int:
        return len(self.kind)


@dataclass
class ShapeMesh:
    """A shape's triangle mesh (numpy): verts (V, 3) float32, faces (F, 3) int64, per-vertex
    colour slot (V,) int64 (which palette entry colours the vertex)."""

    verts: np.ndarray
    faces: np.ndarray
    slots: np.ndarray


def _arrays(parts: Parts):
    return (np.array(parts.kind), np.stack(parts.centre), np.stack(parts.half), np.stack(parts.rot),
            np.array(parts.slot))


def coarse_verts(parts: Parts) -> np.ndarray:
    """(sum Vt, 3) vertices of the unsubdivided primitives, one batched transform per kind."""
    kinds, centre, half, rot, _ = _arrays(parts)
    out = []
    for kind in KINDS:
        sel = np.nonzero(kinds == kind)[0]
        if len(sel):
            tv, _ = template(kind)
            v = np.einsum("nvj,nij->nvi", tv[None] * half[sel][:, None], rot[sel]) + centre[sel][:, None]
            out.append(v.reshape(-1, 3))
    return np.concatenate(out)


def normalise_parts(parts: Parts) -> Parts:
    """The same parts with the shape's bounding box centred on the origin and a diagonal of 1
    (the ShapeNet normalisation)."""
    v = coarse_verts(parts)
    lo, hi = v.min(0), v.max(0)
    s = 1.0 / float(np.linalg.norm(hi - lo))
    mid = (lo + hi) / 2
    out = Parts()
    for k, c, h, r, sl in zip(parts.kind, parts.centre, parts.half, parts.rot, parts.slot):
        out.add(k, (c - mid) * s, h * s, r, sl)
    return out


def local_coords(parts: Parts, points: np.ndarray) -> np.ndarray:
    """(P, n_parts, 3) coordinates of points in every part's unit frame: R^T (p - c) / half."""
    _, centre, half, rot, _ = _arrays(parts)
    rel = points[:, None, :] - centre[None]  # (P, n, 3)
    return np.einsum("pnj,nji->pni", rel, rot) / half[None]


def inside_parts(parts: Parts, points: np.ndarray, shrink: float = 0.0) -> np.ndarray:
    """(P, n_parts) bool: point strictly inside each part's solid (box, cylinder, ellipsoid),
    after moving every part's surface inwards by ``shrink`` (world units)."""
    kinds, _, half, _, _ = _arrays(parts)
    loc = local_coords(parts, points)  # (P, n, 3)
    lim = np.maximum(1.0 - shrink / half, 0.0)  # (n, 3) shrunken unit extents
    a = np.abs(loc) / np.maximum(lim, 1e-12)[None]
    box = a.max(-1) < 1
    cyl = (a[..., 0] ** 2 + a[..., 2] ** 2 < 1) & (a[..., 1] < 1)
    ell = (a ** 2).sum(-1) < 1
    return np.where(kinds[None] == "box", box, np.where(kinds[None] == "cyl", cyl, ell))


def occupancy(parts: Parts, points: np.ndarray) -> np.ndarray:
    """(P,) bool: inside the union of the parts (exact for the analytic solids)."""
    return inside_parts(parts, points).any(1)


def turned_parts(parts: Parts) -> Parts:
    """The parts turned 180 degrees about y (the voxel frame of :mod:`a2_single_view.voxelize`)."""
    turn = np.diag([-1.0, 1.0, -1.0])
    out = Parts()
    for k, c, h, r, sl in zip(parts.kind, parts.centre, parts.half, parts.rot, parts.slot):
        out.add(k, turn @ c, h, turn @ r, sl)
    return out


def occupancy_grid(parts: Parts, res: int, lo: np.ndarray, size: float) -> np.ndarray:
    """(res, res, res) bool: cell centres of a cube grid (indexed [i, j, k] along x, y, z, corner
    ``lo``, side ``size``) inside the union of the parts.

    Each part is tested only on the cells of its own bounding box (float32, vectorised), so the
    cost follows the parts' volume rather than res^3 x parts.
    """
    kinds, centre, half, rot, _ = _arrays(parts)
    h = size / res
    occ = np.zeros((res, res, res), dtype=bool)
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    for i in range(len(parts)):  # a handful of parts; each test below is vectorised
        ext = np.abs(corners * half[i]) @ np.abs(rot[i]).T  # (8, 3) bound of the rotated box
        bmin = centre[i] - ext.max(0)
        bmax = centre[i] + ext.max(0)
        i0 = np.clip(np.floor((bmin - lo) / h - 0.5).astype(int), 0, res)
        i1 = np.clip(np.ceil((bmax - lo) / h - 0.5).astype(int) + 1, 0, res)
        if np.any(i1 <= i0):
            continue
        axes = [(np.arange(i0[a], i1[a]) + 0.5) * h + lo[a] for a in range(3)]
        if kinds[i] != "ell" and np.array_equal(np.abs(rot[i]), np.eye(3)):
            # axis-aligned box or upright cylinder (rotation diagonal, entries +-1): the test
            # separates into per-axis tests, the same float32 numbers without the 3-D grid
            c32, h32 = centre[i].astype(np.float32), half[i].astype(np.float32)
            a1 = [np.abs((axes[k].astype(np.float32) - c32[k]) / h32[k]) for k in range(3)]
            if kinds[i] == "box":
                inside = (a1[0] < 1)[:, None, None] & (a1[1] < 1)[None, :, None] & (a1[2] < 1)[None, None, :]
            else:
                inside = ((a1[0] ** 2)[:, None, None] + (a1[2] ** 2)[None, None, :] < 1) & (a1[1] < 1)[None, :, None]
            occ[i0[0]:i1[0], i0[1]:i1[1], i0[2]:i1[2]] |= inside
            continue
        g = np.stack(np.meshgrid(*axes, indexing="ij"), -1).astype(np.float32)  # (nx, ny, nz, 3)
        loc = ((g - centre[i].astype(np.float32)) @ rot[i].astype(np.float32)) / half[i].astype(np.float32)
        a = np.abs(loc)
        if kinds[i] == "box":
            inside = a.max(-1) < 1
        elif kinds[i] == "cyl":
            inside = (a[..., 0] ** 2 + a[..., 2] ** 2 < 1) & (a[..., 1] < 1)
        else:
            inside = (a ** 2).sum(-1) < 1
        occ[i0[0]:i1[0], i0[1]:i1[1], i0[2]:i1[2]] |= inside
    return occ


def _grid_quads(nu: int, nv: int) -> Tuple[np.ndarray, np.ndarray]:
    """Vertices (nu+1)(nv+1) of a grid over [-1, 1]^2 and its 2 nu nv triangles."""
    u, v = np.meshgrid(np.linspace(-1, 1, nu + 1), np.linspace(-1, 1, nv + 1), indexing="ij")
    idx = np.arange((nu + 1) * (nv + 1)).reshape(nu + 1, nv + 1)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    tris = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return np.stack([u.ravel(), v.ravel()], 1), tris


def _part_mesh(kind: str, half: np.ndarray, cell: float) -> Tuple[np.ndarray, np.ndarray]:
    """Unit-frame vertices and faces of one primitive, subdivided so that edges are at most
    about ``cell`` world units long (given its half-extents), wound outwards."""
    n = lambda length: max(1, int(math.ceil(length / cell)))  # noqa: E731
    if kind == "box":
        vs, fs, base = [], [], 0
        for axis in range(3):
            u, v = (axis + 1) % 3, (axis + 2) % 3
            uv, tri = _grid_quads(n(2 * half[u]), n(2 * half[v]))
            for sign in (-1.0, 1.0):
                c = np.zeros((len(uv), 3))
                c[:, axis], c[:, u], c[:, v] = sign, uv[:, 0], uv[:, 1]
                t = tri if sign > 0 else tri[:, [0, 2, 1]]  # (e_u x e_v) = e_axis
                vs.append(c)
                fs.append(t + base)
                base += len(c)
        return np.concatenate(vs), np.concatenate(fs)
    if kind == "cyl":
        r = max(half[0], half[2])
        sides = max(12, min(32, n(2 * np.pi * r)))
        rings, bands = n(r), n(2 * half[1])
        t = 2 * np.pi * np.arange(sides) / sides
        ct, st = np.cos(t), np.sin(t)
        ys = np.linspace(-1, 1, bands + 1)
        side_v = np.stack([np.tile(ct, bands + 1), np.repeat(ys, sides), np.tile(st, bands + 1)], 1)
        j = np.arange(sides)
        jn = (j + 1) % sides
        row = (np.arange(bands) * sides)[:, None]
        side_f = np.concatenate([np.stack([row + j, row + jn, row + sides + j], -1).reshape(-1, 3),
                                 np.stack([row + jn, row + sides + jn, row + sides + j], -1).reshape(-1, 3)])
        vs, fs, base = [side_v], [side_f], len(side_v)
        rad = np.arange(1, rings + 1) / rings  # ring radii (the outermost is the rim)
        for y in (-1.0, 1.0):
            cap_v = np.concatenate([[[0.0, y, 0.0]], np.stack([np.tile(ct, rings) * np.repeat(rad, sides), np.full(sides * rings, y),
                                                                  np.tile(st, rings) * np.repeat(rad, sides)], 1)])
            centre = np.stack([np.zeros(sides, dtype=int), 1 + j, 1 + jn], 1)
            k = 1 + (np.arange(rings - 1) * sides)[:, None]
            ring_f = np.concatenate([np.stack([k + j, k + sides + j, k + sides + jn], -1).reshape(-1, 3),
                                     np.stack([k + j, k + sides + jn, k + jn], -1).reshape(-1, 3)]) if rings > 1 else np.zeros((0, 3), int)
            f = np.concatenate([centre, ring_f])
            vs.append(cap_v)
            fs.append(f + base)
            base += len(cap_v)
        verts, faces = np.concatenate(vs), np.concatenate(fs)
    else:
        level = 2 if max(half) < 4 * cell else 3
        s = ico_sphere(level)
        verts, faces = s.verts_packed().double().numpy(), s.faces_packed().numpy()
    # orient every face outwards (convex solids: the normal points away from the centre)
    tri = verts[faces] * half
    nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    inward = (nrm * tri.mean(1)).sum(1) < 0
    faces = faces.copy()
    faces[inward] = faces[inward][:, [0, 2, 1]]
    return verts, faces


def parts_to_mesh(parts: Parts, cell: float = 0.05, drop_internal: bool = True) -> ShapeMesh:
    """The surface of the union of the parts as one triangle mesh.

    Each part is meshed with edges of about ``cell`` (the loop runs over the few parts of one
    shape; everything inside is vectorised), then triangles whose centroid lies inside another
    part are dropped, so the mesh has (almost) no internal surfaces where parts overlap.
    """
    kinds, centre, half, rot, slot = _arrays(parts)
    vs, fs, owner, vslot, base = [], [], [], [], 0
    for i in range(len(parts)):
        lv, lf = _part_mesh(kinds[i], half[i], cell)
        vs.append((lv * half[i]) @ rot[i].T + centre[i])
        fs.append(lf + base)
        owner.append(np.full(len(lf), i))
        vslot.append(np.full(len(lv), slot[i]))
        base += len(lv)
    verts, faces, owner = np.concatenate(vs), np.concatenate(fs), np.concatenate(owner)
    if drop_internal and len(parts) > 1:
        cen = verts[faces].mean(1)  # (F, 3)
        ins = inside_parts(parts, cen, shrink=1e-4)  # (F, n_parts)
        ins[np.arange(len(faces)), owner] = False  # a face is never inside its own part
        faces = faces[~ins.any(1)]
    return ShapeMesh(verts.astype(np.float32), faces.astype(np.int64), np.concatenate(vslot))


# ----------------------------------------------------------------------------------------------
# generators (sizes in arbitrary units before normalisation; the floor is y = 0)
# ----------------------------------------------------------------------------------------------
CHAIR_STYLES = ("side", "armchair", "office", "stool", "bar_stool", "bench", "sofa", "lounge")
_STYLE_P = (0.22, 0.14, 0.13, 0.08, 0.08, 0.1, 0.12, 0.13)


def _legs(p: Parts, rng: np.random.Generator, kind: str, w: float, d: float, top: float, leg: float) -> None:
    """Legs under a seat whose underside is at height ``top``: four posts (square or round,
    maybe splayed, maybe with stretchers), a pedestal (disc or five-foot star base), sled
    runners, or two solid side panels. Slot 1 (frame)."""
    ly = top / 2 + 0.005  # half-height; legs reach a little into the seat
    inset = rng.uniform(0.0, 0.05)
    if kind in ("square", "round"):
        splay = rng.uniform(0, 8) if rng.random() < 0.3 else 0.0
        for sx in (-1, 1):
            for sz in (-1, 1):
                c = (sx * (w / 2 - leg / 2 - inset), ly, sz * (d / 2 - leg / 2 - inset))
                r = rot_z(-sx * splay) @ rot_x(sz * splay)
                p.add("box" if kind == "square" else "cyl", c, (leg / 2, ly, leg / 2), r, slot=1)
        if rng.random() < 0.35:  # stretchers
            sy = rng.uniform(0.2, 0.45) * top
            for sx in (-1, 1):
                p.add("box", (sx * (w / 2 - leg / 2 - inset), sy, 0), (leg / 3, leg / 3, d / 2 - inset), slot=1)
    elif kind == "pedestal":
        p.add("cyl", (0, ly, 0), (leg, ly, leg), slot=1)
        base_r = rng.uniform(0.18, 0.3)
        if rng.random() < 0.4:
            p.add("cyl", (0, 0.015, 0), (base_r, 0.015, base_r), slot=1)
        else:  # a star base of five feet
            for k in range(5):
                r = rot_y(72.0 * k + rng.uniform(-5, 5))
                p.add("box", r @ np.array([base_r / 2, 0.02, 0]), (base_r / 2, 0.02, leg * 0.6), r, slot=1)
    elif kind == "sled":
        for sx in (-1, 1):
            x = sx * (w / 2 - leg / 2 - inset)
            p.add("box", (x, leg / 2, 0), (leg / 2, leg / 2, d / 2), slot=1)
            for sz in (-1, 1):
                p.add("box", (x, ly, sz * (d / 2 - leg)), (leg / 2, ly, leg / 2), slot=1)
    else:  # panels
        pw = rng.uniform(0.03, 0.08)
        for sx in (-1, 1):
            p.add("box", (sx * (w / 2 - pw / 2), ly, 0), (pw / 2, ly, d / 2 * rng.uniform(0.85, 1.0)), slot=1)


def _back(p: Parts, rng: np.random.Generator, w: float, d: float, h: float, hb: float, tilt: float,
          leg: float, thick: Tuple[float, float] = (0.025, 0.07)) -> None:
    """A back of height ``hb`` standing on the rear edge (-z) of a seat whose top is at ``h``,
    tilted backwards by ``tilt`` degrees: solid, slats, or a frame with a cushion."""
    bt = rng.uniform(*thick)
    pivot = np.array([0.0, h, -d / 2 + bt / 2])
    r = rot_x(-tilt)

    def part(kind, c, half, slot):
        p.add(kind, pivot + r @ np.asarray(c, dtype=np.float64), half, r, slot)

    bw = w * rng.uniform(0.8, 1.0)
    style = rng.choice(["solid", "slats", "frame"], p=[0.5, 0.3, 0.2]) if bt < 0.08 else "solid"
    if style == "solid":
        part("box", (0, hb / 2 - 0.005, 0), (bw / 2, hb / 2, bt / 2), 0)
        return
    post = max(leg * 0.8, 0.025)
    for sx in (-1, 1):
        part("box", (sx * (bw / 2 - post / 2), hb / 2 - 0.005, 0), (post / 2, hb / 2, bt / 2), 1)
    rail = rng.uniform(0.04, 0.1)
    part("box", (0, hb - rail / 2, 0), (bw / 2, rail / 2, bt / 2), 1)
    if style == "slats":
        n = int(rng.integers(2, 6))
        xs = np.linspace(-(bw / 2 - post), bw / 2 - post, n + 2)[1:-1]
        sw = min(rng.uniform(0.02, 0.05), (bw - 2 * post) / (n + 1) * 0.8)
        for x in xs:
            part("box", (x, (hb - rail) / 2, 0), (sw / 2, (hb - rail) / 2, bt / 3), 1)
    else:
        part("box", (0, hb * 0.5, 0), (bw / 2 - post, hb * 0.3, bt / 3), 0)


def chair_parts(rng: np.random.Generator) -> Parts:
    """A chair of one of :data:`CHAIR_STYLES`: side chairs and armchairs on four posts, sleds or
    panels; office chairs on a pedestal; low stools and bar stools without a back; benches;
    sofas (a thick block with solid arms); reclined lounge chairs. Proportions vary widely within
    each style. Colour slots: 0 seat/back/cushions, 1 frame."""
    p = Parts()
    style = rng.choice(CHAIR_STYLES, p=_STYLE_P)
    leg = rng.uniform(0.025, 0.06)
    t = rng.uniform(0.03, 0.09)
    if style == "sofa":
        w, d, h = rng.uniform(0.9, 1.8), rng.uniform(0.55, 0.85), rng.uniform(0.32, 0.45)
        foot = rng.uniform(0.0, 0.1)  # short feet, or the block on the floor
        p.add("box", (0, (h + foot) / 2, 0), (w / 2, (h - foot) / 2, d / 2), slot=0)
        if foot > 0.02:
            _legs(p, rng, "square", w, d, foot, rng.uniform(0.04, 0.07))
        _back(p, rng, w, d, h, rng.uniform(0.25, 0.45), rng.uniform(0, 12), leg, thick=(0.1, 0.22))
        aw, ah = rng.uniform(0.08, 0.2), rng.uniform(0.12, 0.28)
        for sx in (-1, 1):
            p.add("box", (sx * (w / 2 - aw / 2), (h + ah + foot) / 2, 0), (aw / 2, (h + ah - foot) / 2, d / 2), slot=0)
        return p
    if style == "lounge":
        w, d, h = rng.uniform(0.6, 0.95), rng.uniform(0.6, 0.9), rng.uniform(0.2, 0.35)
    elif style == "bench":
        w, d, h = rng.uniform(0.9, 1.6), rng.uniform(0.3, 0.5), rng.uniform(0.38, 0.5)
    elif style == "stool":
        w = rng.uniform(0.3, 0.45)
        d, h = w * rng.uniform(0.8, 1.2), rng.uniform(0.3, 0.5)
    elif style == "bar_stool":
        w = rng.uniform(0.3, 0.42)
        d, h = w * rng.uniform(0.8, 1.2), rng.uniform(0.65, 0.85)
    elif style == "office":
        w, d, h = rng.uniform(0.45, 0.6), rng.uniform(0.45, 0.6), rng.uniform(0.42, 0.55)
    else:  # side, armchair
        w, d, h = rng.uniform(0.4, 0.62), rng.uniform(0.38, 0.6), rng.uniform(0.4, 0.52)
    if style in ("stool", "bar_stool") and rng.random() < 0.5:
        p.add("cyl", (0, h - t / 2, 0), (w / 2, t / 2, w / 2), slot=0)  # a round seat
    else:
        p.add("box", (0, h - t / 2, 0), (w / 2, t / 2, d / 2), slot=0)
    if style == "office":
        legs = "pedestal"
    elif style == "lounge":
        legs = rng.choice(["square", "round", "sled", "panels"], p=[0.3, 0.2, 0.25, 0.25])
    elif style in ("stool", "bar_stool"):
        legs = rng.choice(["square", "round", "pedestal"], p=[0.35, 0.4, 0.25])
    elif style == "bench":
        legs = rng.choice(["square", "panels", "sled"], p=[0.5, 0.3, 0.2])
    else:
        legs = rng.choice(["square", "round", "sled", "panels"], p=[0.45, 0.3, 0.15, 0.1])
    _legs(p, rng, legs, w, d, h - t, leg)
    if style == "bar_stool" and legs != "pedestal":  # a foot ring
        p.add("box", (0, h * 0.35, d / 2 - leg), (w / 2 - leg, leg / 3, leg / 3), slot=1)
    if style in ("stool", "bar_stool", "bench") and rng.random() < (0.8 if style != "bench" else 0.5):
        return p  # no back
    if style == "lounge":
        hb, tilt = rng.uniform(0.45, 0.75), rng.uniform(15, 35)
    elif style == "office":
        hb, tilt = rng.uniform(0.4, 0.8), rng.uniform(0, 15)
    elif style in ("stool", "bar_stool"):
        hb, tilt = rng.uniform(0.12, 0.3), rng.uniform(0, 10)
    else:
        hb, tilt = rng.uniform(0.28, 0.65), rng.uniform(0, 16)
    _back(p, rng, w, d, h, hb, tilt, leg)
    if style in ("armchair", "lounge", "office") and rng.random() < (0.9 if style == "armchair" else 0.4):
        ah = rng.uniform(0.15, 0.26)
        aw = rng.uniform(0.03, 0.1)
        start = len(p)
        x = w / 2 - aw / 2
        if rng.random() < 0.35 and style != "office":  # solid arm panels down to the seat
            p.add("box", (x, h + ah / 2 - 0.01, 0), (aw / 2, ah / 2, d / 2 * 0.9), slot=0)
        else:
            p.add("box", (x, h + ah, 0), (aw / 2, 0.02, d / 2 * 0.9), slot=1)
            p.add("box", (x, h + ah / 2, d / 2 * 0.7), (min(aw, 0.05) / 2.5, ah / 2, min(aw, 0.05) / 2.5), slot=1)
        p.mirrored_x(start)
    return p


def car_parts(rng: np.random.Generator) -> Parts:
    """A car: lower body, cabin (sedan, hatchback, van or pickup), four wheels, optional
    spoiler. Slots: 0 body, 1 wheels/trim, 2 windows."""
    p = Parts()
    length, width = rng.uniform(0.9, 1.15), rng.uniform(0.38, 0.5)
    clear, bh = rng.uniform(0.06, 0.12), rng.uniform(0.14, 0.24)
    p.add("box", (0, clear + bh / 2, 0), (width / 2, bh / 2, length / 2), slot=0)
    style = rng.choice(["sedan", "hatch", "van", "pickup"], p=[0.4, 0.25, 0.15, 0.2])
    ch = rng.uniform(0.11, 0.2)
    if style == "sedan":
        cl, cz = length * rng.uniform(0.45, 0.6), rng.uniform(-0.08, 0.02)
    elif style == "hatch":
        cl = length * rng.uniform(0.5, 0.65)
        cz = -(length - cl) / 2 + 0.02
    elif style == "van":
        cl, cz, ch = length * rng.uniform(0.75, 0.9), -0.02, ch * 1.4
    else:
        cl = length * rng.uniform(0.3, 0.4)
        cz = length / 2 - cl / 2 - length * rng.uniform(0.15, 0.25)
    cw = width * rng.uniform(0.85, 0.95)
    p.add("box", (0, clear + bh + ch / 2 - 0.005, cz), (cw / 2, ch / 2, cl / 2), slot=2)
    p.add("box", (0, clear + bh + ch - 0.01, cz), (cw / 2 * 0.98, 0.012, cl / 2 * 0.9), slot=0)  # roof
    wr = rng.uniform(0.07, 0.11)
    ww = rng.uniform(0.04, 0.07)
    wz = length / 2 - wr - rng.uniform(0.03, 0.1)
    for sz in (-1, 1):
        for sx in (-1, 1):
            p.add("cyl", (sx * (width / 2 - ww / 2 + 0.01), wr, sz * wz), (wr, ww / 2, wr), rot_z(90), slot=1)
    if rng.random() < 0.3:  # spoiler
        y = clear + bh + 0.05
        p.add("box", (0, y, -length / 2 + 0.04), (width / 2 * 0.9, 0.01, 0.04), slot=1)
        for sx in (-1, 1):
            p.add("box", (sx * width / 3, clear + bh + 0.02, -length / 2 + 0.04), (0.01, 0.03, 0.015), slot=1)
    return p


def airplane_parts(rng: np.random.Generator) -> Parts:
    """An airplane: fuselage (ellipsoid or cylinder with a nose), swept wings, tail fin and
    stabilisers, optional engines. Slots: 0 fuselage, 1 wings, 2 engines."""
    p = Parts()
    length, radius = rng.uniform(0.9, 1.15), rng.uniform(0.045, 0.08)
    if rng.random() < 0.5:
        p.add("ell", (0, 0, 0), (radius, radius, length / 2), slot=0)
    else:
        body = length * 0.8
        p.add("cyl", (0, 0, -length * 0.05), (radius, body / 2, radius), rot_x(90), slot=0)
        p.add("ell", (0, 0, body / 2 - length * 0.05), (radius, radius, length * 0.12), slot=0)
    span = rng.uniform(0.7, 1.1)
    chord, thick = rng.uniform(0.1, 0.22), rng.uniform(0.012, 0.025)
    sweep = rng.uniform(0, 35)
    wz, wy = rng.uniform(-0.08, 0.1), rng.uniform(-0.6, 0.3) * radius
    dihedral = rng.uniform(-3, 6)
    start = len(p)
    r = rot_z(dihedral) @ rot_y(-sweep)
    half_span = span / 4
    p.add("box", np.array([0, wy, wz]) + r @ np.array([half_span, 0, 0]), (half_span, thick / 2, chord / 2), r, slot=1)
    engines = int(rng.choice([0, 1, 2], p=[0.35, 0.45, 0.2]))
    for k in range(engines):
        ex = span / 2 * (0.35 + 0.3 * k)
        c = np.array([0, wy, wz]) + r @ np.array([ex, 0, 0]) + [0, -0.04, 0.04]
        p.add("cyl", c, (0.03, 0.07, 0.03), rot_x(90), slot=2)
    # tail: horizontal stabilisers
    tspan, tchord = span * rng.uniform(0.25, 0.4), chord * rng.uniform(0.5, 0.8)
    tz = -length / 2 + tchord / 2 + 0.02
    rt = rot_y(-sweep)
    p.add("box", np.array([0, 0, tz]) + rt @ np.array([tspan / 4, 0, 0]), (tspan / 4, thick / 2, tchord / 2), rt, slot=1)
    p.mirrored_x(start)
    fin_h = rng.uniform(0.1, 0.2)
    p.add("box", (0, radius * 0.5 + fin_h / 2, tz - 0.01), (thick / 2, fin_h / 2, tchord / 2), rot_x(-rng.uniform(10, 35)), slot=1)
    return p


GENERATORS: Dict[str, Callable[[np.random.Generator], Parts]] = {
    "chair": chair_parts, "car": car_parts, "airplane": airplane_parts}


def make_parts(cls: str, rng: np.random.Generator) -> Parts:
    """The normalised parts of a random shape of class ``cls`` ("chair", "car" or "airplane")."""
    if cls not in GENERATORS:
        raise ValueError(f"class must be one of {CLASSES}, got {cls!r}")
    return normalise_parts(GENERATORS[cls](rng))


def make_shape(cls: str, rng: np.random.Generator, cell: float = 0.05) -> Tuple[Parts, ShapeMesh]:
    """A random shape of class ``cls``: its normalised parts and their union's mesh."""
    parts = make_parts(cls, rng)
    return parts, parts_to_mesh(parts, cell)


def random_palette(rng: np.random.Generator, n: int = 3) -> np.ndarray:
    """(n, 3) RGB colours in [0, 1]: a random hue for slot 0, related darker/lighter ones after."""
    import colorsys

    h = rng.random()
    out = []
    for k in range(n):
        hk = (h + (0.0 if k == 0 else rng.uniform(-0.15, 0.15) + (0.5 if rng.random() < 0.3 else 0.0))) % 1.0
        s = rng.uniform(0.35, 0.9) if k == 0 else rng.uniform(0.1, 0.7)
        v = rng.uniform(0.5, 0.95) if k == 0 else rng.uniform(0.2, 0.8)
        out.append(colorsys.hsv_to_rgb(hk, s, v))
    return np.asarray(out, dtype=np.float32)


def shape_tensors(mesh: ShapeMesh, palette: np.ndarray, device="cpu") -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """verts (V, 3) float32, faces (F, 3) long and vertex colours (V, 3) as tensors."""
    v = torch.from_numpy(mesh.verts).to(device)
    f = torch.from_numpy(mesh.faces).to(device)
    c = torch.from_numpy(palette[np.minimum(mesh.slots, len(palette) - 1)]).to(device)
    return v, f, c
