"""Measurements behind the pass/fail checks of Assignment 1.

Each function measures one property of what a part renders, independently of the code path
that rendered it where it can (surface samples projected with the same camera instead of the
rasteriser, GIF files read back from disk, analytic values of the shapes):

* :func:`sample_silhouette` / :func:`silhouette_match`: the rasterised silhouette against many
  surface samples projected by the camera;
* :func:`motion_ratio`: does a turntable read as motion (frame i + 2 further from frame i than
  frame i + 1), not as two poses strobing;
* :func:`gif_timing`: frames and seconds of a written GIF, as a viewer plays it;
* :func:`subject_size`: a subject's on-screen size (square root of its silhouette area);
* :func:`point_triangle_distance` / :func:`nearest_faces`: exact distances of points to a mesh;
* :func:`euler_characteristic`, :func:`signed_volume`, :func:`edge_face_counts`: mesh topology.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import torch

from l3d.media import gif_timing, motion_ratio  # re-exported: part of this module's measures
from l3d.cameras import PerspectiveCameras, Size, as_hw
from l3d.ops import knn_points, sample_points_from_meshes
from l3d.structures import Meshes


# ----------------------------------------------------------------------------------------------
# silhouettes
# ----------------------------------------------------------------------------------------------
def sample_silhouette(mesh: Meshes, cameras: PerspectiveCameras, image_size: Size,
                      num_samples: Optional[int] = None, seed: int = 0) -> torch.Tensor:
    """(C, H, W) bool: pixels hit by at least one of ``num_samples`` area-uniform surface samples
    projected with each camera (points in front of the camera only).

    Independent of the rasteriser: it only uses the camera's projection. A pixel whose centre the
    rasteriser covers is hit by samples; pixels only grazed at the outline (or by a part thinner
    than a pixel) may be hit too, so compare with :func:`silhouette_match` (1-pixel tolerance).
    Single pixels missed between samples are filled (7 or 8 of their 8 neighbours hit); use enough
    samples that no larger gaps are left: the default is 4 per pixel of the image (at least 50k).
    """
    h, w = as_hw(image_size)
    num_samples = num_samples if num_samples is not None else max(50_000, 4 * h * w)
    gen = torch.Generator(device=mesh.device).manual_seed(seed)
    pts = sample_points_from_meshes(mesh, num_samples, generator=gen)[0].detach()
    mask = torch.zeros(len(cameras) * h * w, dtype=torch.bool, device=pts.device)
    for s in range(0, len(cameras), 8):  # a few cameras at a time: (8, P, 3) projections
        scr = cameras[s:s + 8].transform_points_screen(pts, (h, w))
        col, row = scr[..., 0].floor().long(), scr[..., 1].floor().long()
        ok = (scr[..., 2] > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        cam = torch.arange(s, s + len(scr), device=pts.device)[:, None].expand_as(col)
        mask[((cam * h + row) * w + col)[ok]] = True
    # fill pinholes between samples (sparse where the surface is seen at a grazing angle): a
    # pixel with at least 7 of its 8 neighbours hit; a one-pixel gap between two parts (6) stays
    m = mask.view(len(cameras), 1, h, w).float()
    ring = torch.ones(1, 1, 3, 3, dtype=m.dtype, device=m.device)
    ring[0, 0, 1, 1] = 0
    hits = torch.nn.functional.conv2d(m, ring, padding=1)
    return ((m > 0.5) | (hits > 6.5))[:, 0]


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of boolean masks over the last two dimensions: (...,)."""
    inter = (a & b).flatten(-2).sum(-1).float()
    union = (a | b).flatten(-2).sum(-1).float().clamp(min=1)
    return inter / union


def dilate(mask: torch.Tensor, pixels: int = 1) -> torch.Tensor:
    """Boolean (..., H, W) masks grown by ``pixels`` in every direction (square neighbourhood)."""
    shape = mask.shape
    m = mask.reshape(-1, 1, *shape[-2:]).float()
    m = torch.nn.functional.max_pool2d(m, 2 * pixels + 1, stride=1, padding=pixels)
    return m.reshape(shape) > 0.5


def outline(mask: torch.Tensor) -> torch.Tensor:
    """The boundary pixels of boolean (..., H, W) masks (in the mask, next to a pixel that is not)."""
    return mask & ~(~dilate(~mask, 1))  # mask minus its erosion


def silhouette_match(a: torch.Tensor, b: torch.Tensor, tolerance: int = 1) -> torch.Tensor:
    """(...,) agreement of the outlines of two boolean (..., H, W) silhouettes up to
    ``tolerance`` pixels: the share of outline pixels of each that lie within ``tolerance`` of
    the other's outline (an F-score of the boundaries). 1 when the outlines coincide up to a
    pixel (sampled differently, thin parts); lower when the silhouettes are shifted, scaled or
    turned against each other, even when one lies inside the other."""
    oa, ob = outline(a), outline(b)
    hit_a = (oa & dilate(ob, tolerance)).flatten(-2).sum(-1).float()
    hit_b = (ob & dilate(oa, tolerance)).flatten(-2).sum(-1).float()
    total = (oa.flatten(-2).sum(-1) + ob.flatten(-2).sum(-1)).float().clamp(min=1)
    return (hit_a + hit_b) / total


def silhouette_widths(mask: torch.Tensor) -> torch.Tensor:
    """(N,) width in pixels (first to last covered column) of (N, H, W) silhouettes; 0 if empty."""
    cols = mask.any(-2)  # (N, W)
    idx = torch.arange(cols.shape[-1], device=mask.device)
    last = torch.where(cols, idx, -1).amax(-1)
    first = torch.where(cols, idx, cols.shape[-1]).amin(-1)
    return (last - first + 1).clamp(min=0).float()


def subject_size(pix_to_face: torch.Tensor, subject_faces: torch.Tensor) -> torch.Tensor:
    """(N,) on-screen size of a subject: sqrt of the number of pixels showing one of its faces.

    Args:
        pix_to_face: (N, H, W) packed face index per pixel (-1 background), as rasterised.
        subject_faces: (F,) bool, True for the faces of the subject.
    """
    hit = (pix_to_face >= 0) & subject_faces[pix_to_face.clamp(min=0)]
    return hit.flatten(1).sum(1).float().sqrt()


# ----------------------------------------------------------------------------------------------
# animations
# ----------------------------------------------------------------------------------------------
# ----------------------------------------------------------------------------------------------
# distances to a mesh
# ----------------------------------------------------------------------------------------------
def _segment_distance(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    ab = b - a
    t = ((p - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp(min=1e-20)
    return (p - (a + t.clamp(0, 1)[..., None] * ab)).norm(dim=-1)


def point_triangle_distance(p: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Exact Euclidean distance from points (..., 3) to triangles (..., 3 corners, 3).

    Inside the triangle's prism the distance is the one to its plane; elsewhere the closest point
    lies on one of the three edges.
    """
    a, b, c = tri.unbind(-2)
    n = torch.cross(b - a, c - a, dim=-1)
    nn = n.norm(dim=-1, keepdim=True).clamp(min=1e-20)
    n = n / nn
    plane = ((p - a) * n).sum(-1)
    q = p - plane[..., None] * n  # projection onto the plane
    # inside test: q on the inner side of all three edges
    s0 = (torch.cross(b - a, q - a, dim=-1) * n).sum(-1)
    s1 = (torch.cross(c - b, q - b, dim=-1) * n).sum(-1)
    s2 = (torch.cross(a - c, q - c, dim=-1) * n).sum(-1)
    inside = (s0 >= 0) & (s1 >= 0) & (s2 >= 0)
    edge = torch.minimum(torch.minimum(_segment_distance(p, a, b), _segment_distance(p, b, c)),
                         _segment_distance(p, c, a))
    return torch.where(inside, plane.abs(), edge)


def nearest_faces(points: torch.Tensor, mesh: Meshes, candidates: int = 24) -> Tuple[torch.Tensor, torch.Tensor]:
    """(P,) distance of each point to the mesh and (P,) index of the face that attains it.

    Exact among the ``candidates`` faces whose centroids are nearest to the point (enough for the
    points near the surface this is used for: samples, marching-cubes vertices).
    """
    fv = mesh.faces_verts_packed()  # (F, 3, 3)
    cent = fv.mean(1)
    k = min(candidates, len(cent))
    idx = knn_points(points[None], cent[None], K=k).idx[0]  # (P, K)
    d = point_triangle_distance(points[:, None], fv[idx])  # (P, K)
    best = d.argmin(1)
    return d.gather(1, best[:, None])[:, 0], idx.gather(1, best[:, None])[:, 0]


# ----------------------------------------------------------------------------------------------
# topology and volume
# ----------------------------------------------------------------------------------------------
def edge_face_counts(mesh: Meshes) -> torch.Tensor:
    """(E,) number of faces sharing each undirected edge (2 everywhere for a closed manifold)."""
    f = mesh.faces_packed()
    e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]).sort(1).values
    key = e[:, 0] * (int(e.max()) + 1) + e[:, 1]
    return torch.unique(key, return_counts=True)[1]


def euler_characteristic(mesh: Meshes) -> int:
    """V - E + F of the first mesh (2 for a closed surface of genus 0, 0 for a torus)."""
    return int(mesh.num_verts_per_mesh()[0]) - len(edge_face_counts(mesh)) + int(mesh.num_faces_per_mesh()[0])


def signed_volume(mesh: Meshes) -> float:
    """Enclosed volume by the divergence theorem; positive for outward-facing (CCW) triangles."""
    fv = mesh.faces_verts_packed().double()
    return float((torch.cross(fv[:, 0], fv[:, 1], dim=-1) * fv[:, 2]).sum() / 6.0)


def surface_area(mesh: Meshes) -> float:
    return float(mesh.faces_areas_packed().double().sum())


def chi_square_p_value(observed: np.ndarray, expected: np.ndarray) -> Tuple[float, float]:
    """Pearson's chi-square statistic and its p-value (dof = bins - 1) over the bins that expect
    something; with fewer than two such bins there is nothing to test (p = 1)."""
    from scipy.stats import chi2

    used = expected > 0
    if int(used.sum()) < 2:
        return 0.0, 1.0
    o, e = observed[used], expected[used]
    stat = float((((o - e) ** 2) / e).sum())
    return stat, float(chi2.sf(stat, len(o) - 1))


def torus_sdf(p: torch.Tensor, R: float, r: float) -> torch.Tensor:
    """Signed distance to a torus around the z axis (tube radius r at distance R)."""
    ring = torch.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2) - R
    return torch.sqrt(ring ** 2 + p[..., 2] ** 2) - r


def superquadric_volume(a: float, b: float, c: float, eps1: float, eps2: float) -> float:
    """Analytic volume 2 abc eps1 eps2 B(eps1/2 + 1, eps1) B(eps2/2, eps2/2)."""
    def beta(x, y):
        return math.exp(math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y))

    return 2 * a * b * c * eps1 * eps2 * beta(eps1 / 2 + 1, eps1) * beta(eps2 / 2, eps2 / 2)
