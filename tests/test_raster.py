"""The vectorised rasterisers against slow, obvious references (per pixel, per primitive loops)."""

import math

import numpy as np
import pytest
import torch

from l3d.cameras import FoVPerspectiveCameras, PerspectiveCameras, look_at_view_transform, ndc_pixel_centers
from l3d.raster import rasterize_meshes, rasterize_points
from l3d.structures import Meshes, Pointclouds


# ---------------------------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------------------------
def reference_rasterize_mesh(verts, faces, cam, size, z_clip):
    """Ray cast every pixel centre against every face in view space (float64).

    The nearest intersection with depth >= z_clip wins (ties: lower face index). Clipping at
    z_clip is thereby exact: the part of a face behind the plane is never hit.
    """
    R, T = cam.R[0].double(), cam.T[0].double()
    f, p = cam.focal_length[0].double(), cam.principal_point[0].double()
    v = (verts.double() @ R + T).numpy()
    grid = ndc_pixel_centers(size, dtype=torch.float64).numpy()
    h, w = grid.shape[:2]
    p2f = -np.ones((h, w), dtype=np.int64)
    zbuf = -np.ones((h, w))
    bary = np.zeros((h, w, 3))
    for j in range(h):
        for i in range(w):
            d = np.array([(grid[j, i, 0] - p[0].item()) / f[0].item(), (grid[j, i, 1] - p[1].item()) / f[1].item(), 1.0])
            best = np.inf
            for k, (a, b, c) in enumerate(faces.tolist()):
                A = np.stack([v[a] - v[c], v[b] - v[c], -d], 1)
                if abs(np.linalg.det(A)) < 1e-12:
                    continue
                l0, l1, t = np.linalg.solve(A, -v[c])  # l0 va + l1 vb + (1-l0-l1) vc = t d
                l2 = 1 - l0 - l1
                if min(l0, l1, l2) < -1e-9 or t < z_clip:
                    continue
                if t < best - 1e-9:
                    best = t
                    p2f[j, i], zbuf[j, i], bary[j, i] = k, t, (l0, l1, l2)
    return p2f, zbuf, bary


def random_mesh(gen, n_faces, spread=0.8):
    verts = (torch.rand(n_faces * 3, 3, generator=gen) * 2 - 1) * spread
    centres = (torch.rand(n_faces, 3, generator=gen) * 2 - 1) * spread
    verts = centres.repeat_interleave(3, 0) + (verts - verts.mean(0)) * 0.6
    faces = torch.arange(n_faces * 3).view(n_faces, 3)
    return verts, faces


def compare(frags, ref, n):
    p2f, zbuf, bary = ref
    got = frags.pix_to_face[n].numpy()
    agree = got == p2f
    # only pixel centres lying on a shared edge (a barycentric ~0 and equal depth) may differ
    on_edge = (bary.min(-1) < 1e-5) & (np.abs(frags.zbuf[n].numpy() - zbuf) < 1e-4)
    assert (agree | on_edge).all(), np.argwhere(~(agree | on_edge))
    assert agree.mean() > 0.98
    both = agree & (p2f >= 0)
    assert np.abs(frags.zbuf[n].numpy()[both] - zbuf[both]).max() < 1e-4
    assert np.abs(frags.bary_coords[n].numpy()[both] - bary[both]).max() < 1e-4
    assert (frags.zbuf[n].numpy()[p2f < 0] == -1).all() or agree.mean() < 1


@pytest.mark.parametrize("seed,n_faces,size", [(0, 6, 16), (1, 12, (12, 20)), (2, 20, (18, 10))])
def test_mesh_raster_matches_reference(seed, n_faces, size):
    gen = torch.Generator().manual_seed(seed)
    verts, faces = random_mesh(gen, n_faces)
    R, T = look_at_view_transform(2.5, 20.0 * seed, 30.0 * seed)
    cam = FoVPerspectiveCameras(fov=55.0, R=R, T=T)
    frags = rasterize_meshes(Meshes([verts], [faces]), cam, size)
    compare(frags, reference_rasterize_mesh(verts, faces, cam, size, 0.5), 0)


def test_mesh_raster_batches_and_broadcasting():
    gen = torch.Generator().manual_seed(3)
    meshes = [random_mesh(gen, k) for k in (5, 9)]
    R, T = look_at_view_transform(2.5, [10.0, -25.0], [40.0, 200.0])
    cams = FoVPerspectiveCameras(fov=60.0, R=R, T=T)
    batch = Meshes([m[0] for m in meshes], [m[1] for m in meshes])
    frags = rasterize_meshes(batch, cams, 14)
    assert frags.pix_to_face.shape == (2, 14, 14)
    offset = [0, 5]
    for n in range(2):
        p2f, z, b = reference_rasterize_mesh(*meshes[n], cams[n], 14, 0.5)
        compare(frags, (np.where(p2f >= 0, p2f + offset[n], -1), z, b), n)
    # one mesh, two cameras: the mesh is broadcast and face ids index its packed faces
    frags = rasterize_meshes(Meshes([meshes[1][0]], [meshes[1][1]]), cams, 14)
    for n in range(2):
        compare(frags, reference_rasterize_mesh(*meshes[1], cams[n], 14, 0.5), n)
    # a mesh batch seen by one camera
    frags = rasterize_meshes(batch, cams[0], 14)
    p2f, z, b = reference_rasterize_mesh(*meshes[1], cams[0], 14, 0.5)
    compare(frags, (np.where(p2f >= 0, p2f + 5, -1), z, b), 1)


def test_mesh_raster_clips_at_half_znear():
    # a large quad seen from close up, tilted so that part of it lies behind z = znear / 2
    verts = torch.tensor([[-2.0, -2.0, -1.0], [2.0, -2.0, -1.0], [2.0, 2.0, 3.0], [-2.0, 2.0, 3.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    R, T = look_at_view_transform(eye=((0.0, 0.0, -0.8),), at=((0.0, 0.0, 1.0),))
    for znear in (1.0, 0.4):
        cam = FoVPerspectiveCameras(znear=znear, fov=90.0, R=R, T=T)
        frags = rasterize_meshes(Meshes([verts], [faces]), cam, 20)
        ref = reference_rasterize_mesh(verts, faces, cam, 20, znear / 2)
        assert (ref[0] < 0).any() and (ref[0] >= 0).any()  # the clip plane cuts the image
        compare(frags, ref, 0)
    # a triangle with two corners behind the plane
    verts = torch.tensor([[0.0, 0.5, 2.0], [-1.0, -0.5, -1.0], [1.0, -0.5, -1.0]])
    cam = FoVPerspectiveCameras(znear=1.0, fov=100.0, R=torch.eye(3)[None], T=torch.zeros(1, 3))
    frags = rasterize_meshes(Meshes([verts], [torch.tensor([[0, 1, 2]])]), cam, 16)
    ref = reference_rasterize_mesh(verts, torch.tensor([[0, 1, 2]]), cam, 16, 0.5)
    assert (ref[0] >= 0).sum() > 10
    compare(frags, ref, 0)


def test_mesh_raster_ndc_camera_with_principal_point():
    gen = torch.Generator().manual_seed(4)
    verts, faces = random_mesh(gen, 10)
    R, T = look_at_view_transform(3.0, 15.0, 75.0)
    cam = PerspectiveCameras(focal_length=((1.8, 2.1),), principal_point=((0.1, -0.2),), R=R, T=T)
    frags = rasterize_meshes(Meshes([verts], [faces]), cam, (10, 16))
    compare(frags, reference_rasterize_mesh(verts, faces, cam, (10, 16), 1e-5), 0)


def test_mesh_raster_small_chunks_give_same_result():
    gen = torch.Generator().manual_seed(5)
    verts, faces = random_mesh(gen, 40)
    R, T = look_at_view_transform(2.5, 0.0, 0.0)
    cam = FoVPerspectiveCameras(R=R, T=T)
    a = rasterize_meshes(Meshes([verts], [faces]), cam, 32)
    b = rasterize_meshes(Meshes([verts], [faces]), cam, 32, max_pairs=97)
    assert torch.equal(a.pix_to_face, b.pix_to_face)
    assert torch.allclose(a.bary_coords, b.bary_coords)


def uv_sphere(n=96):
    th = torch.linspace(0, math.pi, n + 1, dtype=torch.float64)
    ph = torch.linspace(0, 2 * math.pi, 2 * n + 1, dtype=torch.float64)[:-1]
    t, p = torch.meshgrid(th, ph, indexing="ij")
    v = torch.stack([t.sin() * p.cos(), t.cos(), t.sin() * p.sin()], -1).reshape(-1, 3)
    m = 2 * n
    i, j = torch.arange(n)[:, None], torch.arange(m)[None]
    a, b, c, d = i * m + j, i * m + (j + 1) % m, (i + 1) * m + j, (i + 1) * m + (j + 1) % m
    f = torch.cat([torch.stack([a, c, b], -1).reshape(-1, 3), torch.stack([b, c, d], -1).reshape(-1, 3)])
    return v, f


@pytest.mark.parametrize("dist,fov", [(3.0, 60.0), (2.2, 75.0)])
def test_sphere_silhouette_area_is_analytic(dist, fov):
    v, f = uv_sphere(160)
    # circumscribe the polygonal sphere so its silhouette matches the analytic sphere closely
    v = v.float()
    R, T = look_at_view_transform(dist, 20.0, 30.0)
    cam = FoVPerspectiveCameras(fov=fov, R=R, T=T)
    size = 256
    frags = rasterize_meshes(Meshes([v], [f]), cam, size)
    # the silhouette of a unit sphere at distance d is a disc of angular radius asin(1/d)
    r_pix = math.tan(math.asin(1 / dist)) / math.tan(math.radians(fov / 2)) * size / 2
    analytic = math.pi * r_pix**2
    assert abs(frags.mask.sum().item() / analytic - 1) < 0.01
    # depth at the image centre is the distance to the near surface
    assert frags.zbuf[0, size // 2, size // 2].item() == pytest.approx(dist - 1, abs=2e-3)


# ---------------------------------------------------------------------------------------------
# points
# ---------------------------------------------------------------------------------------------
def reference_rasterize_points(pts, cam, size, radius, K):
    ndc = cam.to(dtype=torch.float64).transform_points_ndc(pts.double())[0].numpy()
    grid = ndc_pixel_centers(size, dtype=torch.float64).numpy()
    h, w = grid.shape[:2]
    idx = -np.ones((h, w, K), dtype=np.int64)
    dists = -np.ones((h, w, K))
    for j in range(h):
        for i in range(w):
            cand = []
            for k, (x, y, z) in enumerate(ndc):
                d2 = (grid[j, i, 0] - x) ** 2 + (grid[j, i, 1] - y) ** 2
                if z >= 0 and d2 < radius**2:
                    cand.append((z, k, d2))
            cand.sort()
            for r, (z, k, d2) in enumerate(cand[:K]):
                idx[j, i, r], dists[j, i, r] = k, d2
    return idx, dists


@pytest.mark.parametrize("size,K", [(16, 3), ((12, 18), 8)])
def test_point_raster_matches_reference(size, K):
    gen = torch.Generator().manual_seed(7)
    pts = torch.rand(60, 3, generator=gen) * 2 - 1
    R, T = look_at_view_transform(2.0, 10.0, 20.0)
    cam = FoVPerspectiveCameras(R=R, T=T)
    frags = rasterize_points(Pointclouds([pts]), cam, size, radius=0.2, points_per_pixel=K)
    idx, dists = reference_rasterize_points(pts, cam, size, 0.2, K)
    assert np.array_equal(frags.idx[0].numpy(), idx)
    assert np.abs(frags.dists[0].numpy() - dists).max() < 1e-5


def test_point_raster_batch_skips_points_behind():
    gen = torch.Generator().manual_seed(8)
    a, b = torch.rand(30, 3, generator=gen) * 2 - 1, torch.rand(45, 3, generator=gen) * 2 - 1
    R, T = look_at_view_transform(0.5, 0.0, [0.0, 180.0])  # the camera sits inside the clouds
    cams = FoVPerspectiveCameras(R=R, T=T)
    frags = rasterize_points(Pointclouds([a, b]), cams, 12, radius=0.3, points_per_pixel=4)
    for n, (pts, off) in enumerate([(a, 0), (b, 30)]):
        idx, _ = reference_rasterize_points(pts, cams[n], 12, 0.3, 4)
        assert np.array_equal(frags.idx[n].numpy(), np.where(idx >= 0, idx + off, -1))


def test_non_finite_points_and_vertices_cover_no_pixel():
    """A NaN or infinite point (a diverged prediction drawn for a log) is skipped, not cast to an
    index outside the image; the finite ones render as without it."""
    from l3d.cameras import FoVPerspectiveCameras
    from l3d.raster import rasterize_points
    from l3d.structures import Pointclouds

    cam = FoVPerspectiveCameras(R=torch.eye(3)[None], T=torch.tensor([[0.0, 0.0, 3.0]]))
    good = torch.tensor([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1]])
    bad = torch.tensor([[float("nan"), 0.0, 0.0], [0.0, float("inf"), 0.0], [1e30, -1e30, 0.0],
                        [0.0, 0.0, float("nan")]])
    ref = rasterize_points(Pointclouds([good]), cam, 48, radius=0.05)
    got = rasterize_points(Pointclouds([torch.cat([good, bad])]), cam, 48, radius=0.05)
    assert int((ref.idx >= 0).sum()) > 0
    assert torch.equal(got.idx, ref.idx) and torch.equal(got.zbuf, ref.zbuf)
