"""Tests of l3d.ops against slow, obvious references and analytic values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from l3d.ops import (
    KNN,
    _choose_backend,
    chamfer_distance,
    flip_faces,
    ico_sphere,
    knn_gather,
    knn_points,
    marching_cubes,
    mesh_laplacian_smoothing,
    sample_points_from_meshes,
    uniform_laplacian,
)
from l3d.structures import Meshes, Pointclouds

BACKENDS = ["brute", "kdtree"]


# ----------------------------------------------------------------------------------------------
# slow references
# ----------------------------------------------------------------------------------------------
def ref_knn(p1, p2, l1, l2, K):
    """Double loop over query and reference points: (dists, idx) as nested lists, -1 / 0 padding."""
    p1, p2 = p1.double().numpy(), p2.double().numpy()
    n, P1 = p1.shape[:2]
    dists = np.zeros((n, P1, K))
    idx = -np.ones((n, P1, K), dtype=np.int64)
    for b in range(n):
        for i in range(int(l1[b])):
            cand = []
            for j in range(int(l2[b])):
                cand.append((float(((p1[b, i] - p2[b, j]) ** 2).sum()), j))
            cand.sort()
            for k, (d, j) in enumerate(cand[:K]):
                dists[b, i, k] = d
                idx[b, i, k] = j
    return dists, idx


def ref_chamfer(x, y, lx, ly, point_reduction="mean", batch_reduction="mean"):
    x, y = x.double().numpy(), y.double().numpy()
    per = []
    for b in range(x.shape[0]):
        xb, yb = x[b, : lx[b]], y[b, : ly[b]]
        d = ((xb[:, None, :] - yb[None, :, :]) ** 2).sum(-1)  # (Lx, Ly)
        if point_reduction == "mean":
            per.append(d.min(1).mean() + d.min(0).mean())
        else:
            per.append(d.min(1).sum() + d.min(0).sum())
    per = np.array(per)
    if batch_reduction == "mean":
        return per.mean()
    if batch_reduction == "sum":
        return per.sum()
    return per


def ref_laplacian_loss(verts_list, faces_list):
    """PyTorch3D's uniform loss with a dense V x V matrix per mesh, built with loops."""
    total = 0.0
    for v, f in zip(verts_list, faces_list):
        v = v.detach().double().numpy()
        nv = len(v)
        adj = np.zeros((nv, nv))
        for tri in f.tolist():
            for a, b in ((0, 1), (1, 2), (2, 0)):
                adj[tri[a], tri[b]] = adj[tri[b], tri[a]] = 1.0
        deg = adj.sum(1)
        L = np.where(deg[:, None] > 0, adj / np.maximum(deg, 1)[:, None], 0.0) - np.eye(nv)
        total += np.linalg.norm(L @ v, axis=1).mean()
    return total / len(verts_list)


def grid_mesh(n=6, noise=0.0, seed=0):
    """A planar n x n vertex grid in z = 0, each square split by a diagonal."""
    g = torch.Generator().manual_seed(seed)
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    verts = torch.stack([ii.flatten().double(), jj.flatten().double(), torch.zeros(n * n, dtype=torch.float64)], 1)
    verts = verts + noise * torch.randn(verts.shape, generator=g, dtype=torch.float64)
    a = (ii[:-1, :-1] * n + jj[:-1, :-1]).flatten()
    b, c, d = a + n, a + 1, a + n + 1
    faces = torch.cat([torch.stack([a, b, c], 1), torch.stack([c, b, d], 1)], 0)
    return verts, faces


def random_padded(n, p, d, lengths, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, d, generator=g, dtype=dtype)
    for b, length in enumerate(lengths):
        x[b, length:] = 1e3  # garbage in the padding
    return x


# ----------------------------------------------------------------------------------------------
# knn
# ----------------------------------------------------------------------------------------------
KNN_CASES = [
    # N, P1, P2, D, K, lengths1, lengths2
    (1, 1, 1, 3, 1, None, None),
    (1, 9, 14, 3, 1, None, None),
    (2, 17, 23, 3, 4, [17, 5], [23, 11]),
    (3, 40, 12, 2, 5, [40, 0, 33], [12, 3, 7]),
    (2, 30, 30, 5, 3, [30, 28], [2, 30]),
    (4, 25, 31, 3, 8, [25, 25, 1, 10], [31, 8, 31, 0]),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", KNN_CASES)
def test_knn_matches_double_loop(case, backend):
    n, P1, P2, D, K, l1, l2 = case
    l1 = torch.tensor(l1 if l1 is not None else [P1] * n)
    l2 = torch.tensor(l2 if l2 is not None else [P2] * n)
    p1 = random_padded(n, P1, D, l1.tolist(), seed=1)
    p2 = random_padded(n, P2, D, l2.tolist(), seed=2)
    out = knn_points(p1, p2, K=K, lengths1=l1, lengths2=l2, return_nn=True, backend=backend)
    assert isinstance(out, KNN)
    assert out.dists.shape == (n, P1, K) and out.idx.shape == (n, P1, K) and out.knn.shape == (n, P1, K, D)
    assert out.idx.dtype == torch.long and out.dists.dtype == torch.float64
    rd, ri = ref_knn(p1, p2, l1, l2, K)
    np.testing.assert_array_equal(out.idx.numpy(), ri)  # float64 random data: no ties
    np.testing.assert_allclose(out.dists.numpy(), rd, rtol=1e-10, atol=1e-12)
    # knn holds the neighbours' coordinates, 0 where there is none
    want = np.where(ri[..., None] >= 0, p2.numpy()[np.arange(n)[:, None, None], np.maximum(ri, 0)], 0.0)
    np.testing.assert_allclose(out.knn.numpy(), want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_never_returns_padding_even_when_closest(backend):
    # padded p2 rows sit exactly on the queries: they must still never be returned
    g = torch.Generator().manual_seed(3)
    p1 = torch.randn(2, 50, 3, generator=g)
    p2 = torch.randn(2, 60, 3, generator=g)
    p2[:, 10:] = p1[:, :50]
    l2 = torch.tensor([10, 4])
    out = knn_points(p1, p2, K=6, lengths2=l2, backend=backend)
    for b in range(2):
        valid = out.idx[b][:, : int(l2[b])]
        assert int(valid.min()) >= 0 and int(valid.max()) < int(l2[b])
        assert (out.idx[b][:, int(l2[b]):] == -1).all()
        assert (out.dists[b][:, int(l2[b]):] == 0).all()
        assert float(out.dists[b][:, : int(l2[b])].min()) > 1e-4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_knn_backends_agree_on_larger_problem(dtype):
    g = torch.Generator().manual_seed(4)
    n, P1, P2, K = 3, 1500, 2000, 3
    p1 = torch.randn(n, P1, 3, generator=g, dtype=dtype) * 5 + 100  # far from the origin
    p2 = torch.randn(n, P2, 3, generator=g, dtype=dtype) * 5 + 100
    l1, l2 = torch.tensor([1500, 700, 1]), torch.tensor([2000, 1999, 3])
    a = knn_points(p1, p2, K=K, lengths1=l1, lengths2=l2, backend="brute")
    b = knn_points(p1, p2, K=K, lengths1=l1, lengths2=l2, backend="kdtree")
    same = a.idx == b.idx
    # wherever they differ it must be a tie (equal exact distances)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(a.dists, b.dists, rtol=tol, atol=tol)
    assert same.float().mean() > 0.999
    assert (a.idx[1, 700:] == -1).all() and (b.idx[1, 700:] == -1).all()
    assert (b.idx[2, :1] >= 0).all() and (b.idx[2, 1:] == -1).all()
    # sorted ascending in k
    assert (a.dists[..., 1:] >= a.dists[..., :-1]).all()


def test_knn_auto_backend_choice():
    small = torch.zeros(1, 10, 3)
    big = torch.zeros(8, 2000, 3)
    assert _choose_backend(small, small, "auto") == "brute"
    assert _choose_backend(big, big, "auto") == "kdtree"
    assert _choose_backend(torch.zeros(8, 2000, 64), torch.zeros(8, 2000, 64), "auto") == "brute"
    # the auto choice gives the same answer as the reference on a "big" problem
    g = torch.Generator().manual_seed(5)
    p1 = torch.randn(8, 400, 3, generator=g, dtype=torch.float64)
    p2 = torch.randn(8, 700, 3, generator=g, dtype=torch.float64)
    assert _choose_backend(p1, p2, "auto") == "kdtree"
    d = ((p1[:, :, None] - p2[:, None]) ** 2).sum(-1)
    out = knn_points(p1, p2, K=2)
    ref_d, ref_i = d.topk(2, dim=-1, largest=False)
    assert torch.equal(out.idx, ref_i)
    assert torch.allclose(out.dists, ref_d)


@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_gradcheck(backend):
    g = torch.Generator().manual_seed(6)
    p1 = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    p2 = torch.randn(2, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    l2 = torch.tensor([6, 4])

    def f(a, b):
        return knn_points(a, b, K=3, lengths2=l2, backend=backend).dists

    assert torch.autograd.gradcheck(f, (p1, p2), eps=1e-6, atol=1e-7)
    # the gradient w.r.t. the query of its nearest squared distance is 2 (p - q)
    out = knn_points(p1, p2, K=1, backend=backend, return_nn=True)
    (gp1,) = torch.autograd.grad(out.dists.sum(), p1)
    assert torch.allclose(gp1, 2 * (p1 - out.knn[:, :, 0]))


def test_knn_gather():
    x = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    idx = torch.tensor([[[3, 0], [1, -1]], [[2, 2], [-1, -1]]])
    out = knn_gather(x, idx)
    assert out.shape == (2, 2, 2, 3)
    assert torch.equal(out[0, 0, 0], x[0, 3]) and torch.equal(out[0, 0, 1], x[0, 0])
    assert torch.equal(out[1, 0, 1], x[1, 2])
    assert (out[0, 1, 1] == 0).all() and (out[1, 1] == 0).all()


def test_knn_input_validation():
    with pytest.raises(ValueError, match="p2"):
        knn_points(torch.zeros(2, 5, 3), torch.zeros(2, 5, 2))
    with pytest.raises(ValueError, match="p2"):
        knn_points(torch.zeros(2, 5, 3), torch.zeros(3, 5, 3))
    with pytest.raises(ValueError, match="p1"):
        knn_points(torch.zeros(5, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="K"):
        knn_points(torch.zeros(1, 5, 3), torch.zeros(1, 5, 3), K=0)
    with pytest.raises(ValueError, match="K"):
        knn_points(torch.zeros(1, 5, 3), torch.zeros(1, 5, 3), torch.tensor([5]))
    with pytest.raises(ValueError, match="lengths2"):
        knn_points(torch.zeros(1, 5, 3), torch.zeros(1, 5, 3), lengths2=torch.tensor([6]))
    with pytest.raises(ValueError, match="backend"):
        knn_points(torch.zeros(1, 5, 3), torch.zeros(1, 5, 3), backend="faiss")


# ----------------------------------------------------------------------------------------------
# chamfer
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["auto"] + BACKENDS)
def test_chamfer_of_a_set_with_itself_is_zero(backend):
    x = torch.randn(3, 200, 3, generator=torch.Generator().manual_seed(7))
    assert float(chamfer_distance(x, x, backend=backend)) == 0.0
    # and a shifted copy: every NN distance is the shift (when the shift is tiny)
    x1 = torch.tensor([[[0.0, 0, 0], [10, 0, 0], [0, 10, 0]]], dtype=torch.float64)
    assert float(chamfer_distance(x1, x1 + torch.tensor([0.1, 0, 0], dtype=torch.float64))) == pytest.approx(
        2 * 0.01, rel=1e-12
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "reductions", [("mean", "mean"), ("sum", "mean"), ("mean", "sum"), ("sum", "sum"), ("mean", None)]
)
def test_chamfer_matches_numpy_reference(backend, reductions):
    pr, br = reductions
    lx, ly = [60, 13, 40], [50, 50, 7]
    x = random_padded(3, 60, 3, lx, seed=8)
    y = random_padded(3, 50, 3, ly, seed=9)
    got = chamfer_distance(
        x, y, x_lengths=torch.tensor(lx), y_lengths=torch.tensor(ly),
        point_reduction=pr, batch_reduction=br, backend=backend,
    )
    want = ref_chamfer(x, y, lx, ly, pr, br)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-10)
    # a Pointclouds batch gives the same number
    pcx = Pointclouds([x[b, : lx[b]] for b in range(3)])
    pcy = Pointclouds([y[b, : ly[b]] for b in range(3)])
    got_pc = chamfer_distance(pcx, pcy, point_reduction=pr, batch_reduction=br, backend=backend)
    np.testing.assert_allclose(got_pc.detach().numpy(), want, rtol=1e-10)


def test_chamfer_gradient_flows_and_is_right():
    g = torch.Generator().manual_seed(10)
    x = torch.randn(2, 7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 9, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: chamfer_distance(a, b), (x, y), eps=1e-6, atol=1e-7)
    loss = chamfer_distance(x, y)
    loss.backward()
    assert x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0
    # brute and kdtree give the same gradients on a bigger problem (float64: in float32 the
    # brute-force expansion may resolve near-ties within ~1e-6 relative differently)
    x2 = torch.randn(4, 1500, 3, generator=g, dtype=torch.float64)
    y2 = torch.randn(4, 1200, 3, generator=g, dtype=torch.float64)
    grads = []
    for backend in BACKENDS:
        a, b = x2.clone().requires_grad_(True), y2.clone().requires_grad_(True)
        chamfer_distance(a, b, backend=backend).backward()
        grads.append((a.grad, b.grad))
    assert grads[0][0].abs().max() > 1e-6
    assert torch.allclose(grads[0][0], grads[1][0], rtol=0, atol=1e-15)
    assert torch.allclose(grads[0][1], grads[1][1], rtol=0, atol=1e-15)


def test_chamfer_optimisation_moves_points_onto_target():
    g = torch.Generator().manual_seed(11)
    target = torch.randn(1, 100, 3, generator=g)
    src = (target + 0.3 * torch.randn(1, 100, 3, generator=g)).requires_grad_(True)
    start = float(chamfer_distance(src.detach(), target))
    for _ in range(30):  # plain gradient descent (torch.optim costs seconds to import)
        (grad,) = torch.autograd.grad(chamfer_distance(src, target), src)
        with torch.no_grad():
            src -= 10.0 * grad
    # chamfer has local minima (several points sharing one target), so not all the way to 0
    assert float(chamfer_distance(src.detach(), target)) < 0.2 * start


def test_chamfer_validation():
    with pytest.raises(ValueError, match="point_reduction"):
        chamfer_distance(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3), point_reduction="max")
    with pytest.raises(ValueError, match="batch_reduction"):
        chamfer_distance(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3), batch_reduction="max")
    with pytest.raises(ValueError, match="y"):
        chamfer_distance(torch.zeros(1, 3, 3), torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match="dtype"):
        chamfer_distance(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3, dtype=torch.float64))


# ----------------------------------------------------------------------------------------------
# surface sampling
# ----------------------------------------------------------------------------------------------
def unequal_triangles():
    """Three disjoint triangles (separated along x) with areas 1 : 9 : 30."""
    def tri(x0, s):  # right triangle with legs sqrt(2 a) scaled by s, area s^2 / 2
        return [[x0, 0.0, 0.0], [x0 + s, 0.0, 0.0], [x0, s, 0.0]]

    s = [math.sqrt(2.0), math.sqrt(18.0), math.sqrt(60.0)]
    verts = torch.tensor(tri(0.0, s[0]) + tri(10.0, s[1]) + tri(20.0, s[2]), dtype=torch.float64)
    # tilt the plane so the test exercises 3-D geometry
    rot = torch.tensor(
        [[1.0, 0.0, 0.0], [0.0, math.cos(0.7), -math.sin(0.7)], [0.0, math.sin(0.7), math.cos(0.7)]],
        dtype=torch.float64,
    )
    return verts @ rot.T, torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8]]), np.array([1.0, 9.0, 30.0])


def barycentric(p, a, b, c):
    """Barycentrics of points p (M, 3) in triangle (a, b, c), plus distance to the plane."""
    n = torch.cross(b - a, c - a, dim=-1)
    area2 = n.norm()
    n = n / area2
    dist = ((p - a) @ n).abs()
    wa = (torch.cross((c - b).expand_as(p), p - b, dim=-1) @ n) / area2
    wb = (torch.cross((a - c).expand_as(p), p - c, dim=-1) @ n) / area2
    return torch.stack([wa, wb, 1 - wa - wb], -1), dist


def test_sampling_is_uniform_by_area_and_on_the_faces():
    verts, faces, areas = unequal_triangles()
    mesh = Meshes([verts], [faces])
    S = 40000
    pts, nrm = sample_points_from_meshes(mesh, S, return_normals=True, generator=torch.Generator().manual_seed(0))
    assert pts.shape == (1, S, 3) and nrm.shape == (1, S, 3) and pts.dtype == torch.float64
    pts_flat = pts[0]
    face_of = torch.bucketize(pts_flat[:, 0].contiguous(), torch.tensor([5.0, 15.0], dtype=torch.float64))  # by x
    counts = torch.bincount(face_of, minlength=3).numpy()
    expected = S * areas / areas.sum()
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    np.testing.assert_allclose(counts / S, areas / areas.sum(), atol=0.01)
    for f in range(3):
        a, b, c = verts[faces[f]]
        w, dist = barycentric(pts_flat[face_of == f], a, b, c)
        assert float(dist.max()) < 1e-9  # on the plane of its face
        assert float(w.min()) > -1e-9 and float(w.max()) < 1 + 1e-9  # inside it
        # uniform inside the triangle: the 4 midpoint sub-triangles get 1/4 each (the central
        # one is where every barycentric is < 1/2)
        sub = torch.where(w.max(-1).values < 0.5, torch.full_like(w[:, 0], 3).long(), w.argmax(-1))
        cnt = torch.bincount(sub, minlength=4).numpy()
        assert stats.chisquare(cnt).pvalue > 1e-3
        # the mean of uniform samples is the centroid
        centroid = (a + b + c) / 3
        spread = float((a - centroid).norm())
        assert float((pts_flat[face_of == f].mean(0) - centroid).norm()) < 0.03 * spread
    # normals: the unit normal of the face each point lies on
    fn = torch.nn.functional.normalize(torch.cross(verts[1] - verts[0], verts[2] - verts[0], dim=-1), dim=0)
    assert torch.allclose(nrm[0], fn.expand(S, 3), atol=1e-12)


def test_sampling_batch_and_generator():
    v1, f1 = ico_sphere(1).verts_packed(), ico_sphere(1).faces_packed()
    v2, f2, _ = unequal_triangles()
    meshes = Meshes([v1.double(), v2 + 100.0], [f1, f2])
    g = torch.Generator().manual_seed(3)
    pts = sample_points_from_meshes(meshes, 500, generator=g)
    assert pts.shape == (2, 500, 3)
    r = pts[0].norm(dim=-1)  # inside the unit sphere, outside the ico's insphere
    assert float(r.max()) <= 1 + 1e-9 and float(r.min()) > 0.79
    assert float(pts[1, :, 0].min()) > 99.0  # item 1 samples only its own mesh
    again = sample_points_from_meshes(meshes, 500, generator=torch.Generator().manual_seed(3))
    assert torch.equal(pts, again)


def test_sampled_points_are_differentiable():
    verts, faces, _ = unequal_triangles()
    verts = verts.clone().requires_grad_(True)
    S = 1000
    pts = sample_points_from_meshes(Meshes([verts], [faces]), S, generator=torch.Generator().manual_seed(1))
    pts.sum().backward()
    # d sum(points) / d v = sum of that vertex's barycentric weights, same for x, y, z;
    # the weights of every sample add up to 1
    assert torch.allclose(verts.grad.sum(0), torch.full((3,), float(S), dtype=torch.float64))
    assert torch.allclose(verts.grad[:, 0], verts.grad[:, 1]) and (verts.grad > 0).all()
    # translating the mesh translates every sample: gradient of a sample's x w.r.t. a translation is 1
    shift = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    pts = sample_points_from_meshes(Meshes([verts.detach() + shift], [faces]), 10)
    (g,) = torch.autograd.grad(pts[0, :, 0].sum(), shift)
    assert torch.allclose(g, torch.tensor([10.0, 0.0, 0.0], dtype=torch.float64))


def test_sampling_zero_area_raises():
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]])  # collinear: zero area
    ok = ico_sphere(0)
    with pytest.raises(ValueError, match="zero total area"):
        sample_points_from_meshes(Meshes([ok.verts_packed(), verts], [ok.faces_packed(), torch.tensor([[0, 1, 2]])]))
    with pytest.raises(ValueError, match="num_samples"):
        sample_points_from_meshes(ok, 0)


# ----------------------------------------------------------------------------------------------
# Laplacian smoothing
# ----------------------------------------------------------------------------------------------
def test_laplacian_planar_grid_interior_is_zero():
    n = 7
    verts, faces = grid_mesh(n)
    mesh = Meshes([verts], [faces])
    lap = uniform_laplacian(mesh.verts_packed(), mesh.edges_packed()).reshape(n, n, 3)
    assert lap[1:-1, 1:-1].abs().max() < 1e-12  # every interior vertex is the mean of its 6 neighbours
    assert lap[0].abs().max() > 0.1  # the border is not
    loss = mesh_laplacian_smoothing(mesh)
    np.testing.assert_allclose(float(loss), ref_laplacian_loss([verts], [faces]), rtol=1e-12)


def test_laplacian_hand_computed_triangle():
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2]])
    # v0: mean(v1, v2) - v0 = (.5, .5, 0); v1: mean(v0, v2) - v1 = (-1, .5, 0); v2 likewise
    want = (math.sqrt(0.5) + 2 * math.sqrt(1.25)) / 3
    assert float(mesh_laplacian_smoothing(Meshes([verts], [faces]))) == pytest.approx(want, rel=1e-12)


def test_laplacian_matches_dense_reference_on_a_batch():
    s = ico_sphere(1)
    g = torch.Generator().manual_seed(12)
    v1 = s.verts_packed().double() + 0.1 * torch.randn(42, 3, generator=g, dtype=torch.float64)
    v2, f2 = grid_mesh(5, noise=0.2, seed=3)
    v3 = torch.cat([v2[:10], torch.tensor([[3.0, 4.0, 0.0]], dtype=torch.float64)])  # isolated vertex 10
    f3 = f2[(f2 < 10).all(1)]
    vl, fl = [v1, v2, v3], [s.faces_packed(), f2, f3]
    vl = [v.clone().requires_grad_(True) for v in vl]
    loss = mesh_laplacian_smoothing(Meshes(vl, fl))
    np.testing.assert_allclose(float(loss.detach()), ref_laplacian_loss(vl, fl), rtol=1e-12)
    loss.backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in vl)
    with pytest.raises(ValueError, match="method"):
        mesh_laplacian_smoothing(Meshes(vl, fl), method="cot")


# ----------------------------------------------------------------------------------------------
# ico_sphere
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", range(5))
def test_ico_sphere(level):
    mesh = ico_sphere(level)
    v, f = mesh.verts_packed(), mesh.faces_packed()
    assert len(mesh) == 1 and v.dtype == torch.float32 and f.dtype == torch.long
    assert v.shape == (10 * 4**level + 2, 3) and f.shape == (20 * 4**level, 3)
    if level == 4:
        assert v.shape[0] == 2562 and f.shape[0] == 5120
    assert torch.allclose(v.norm(dim=-1), torch.ones(len(v)), atol=1e-6)
    fv = v[f].double()
    n = torch.cross(fv[:, 1] - fv[:, 0], fv[:, 2] - fv[:, 0], dim=-1)
    assert ((n * fv.mean(1)).sum(-1) > 0).all()  # outward
    # closed, consistently oriented 2-manifold: every directed edge once, its reverse once
    directed = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert len(torch.unique(directed, dim=0)) == len(directed)
    undirected, counts = torch.unique(directed.sort(1).values, dim=0, return_counts=True)
    assert (counts == 2).all()
    assert len(v) - len(undirected) + len(f) == 2  # Euler characteristic of a sphere
    # no duplicated vertices, and the area converges to 4 pi
    assert torch.cdist(v, v).add(torch.eye(len(v)) * 10).min() > 0.5 / 2**level
    if level == 4:
        assert 0.5 * float(n.norm(dim=-1).sum()) == pytest.approx(4 * math.pi, rel=0.01)


def test_ico_sphere_is_a_regular_icosahedron_at_level_0():
    v = ico_sphere(0).verts_packed().double()
    d = torch.cdist(v, v)
    edge = 4 / math.sqrt(10 + 2 * math.sqrt(5))  # edge of the icosahedron inscribed in the unit sphere
    assert ((d - edge).abs() < 1e-6).sum(1).eq(5).all()  # every vertex has 5 neighbours at one edge length


# ----------------------------------------------------------------------------------------------
# marching cubes
# ----------------------------------------------------------------------------------------------
def sphere_sdf(n=40, r=12.0, centre=(19.3, 20.1, 18.7)):
    g = torch.arange(n, dtype=torch.float64)
    X, Y, Z = torch.meshgrid(g, g, g, indexing="ij")
    c = torch.tensor(centre, dtype=torch.float64)
    return ((X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2).sqrt() - r, c, r


def outward_fraction(verts, faces, centre):
    fv = verts[faces].double()
    n = torch.cross(fv[:, 1] - fv[:, 0], fv[:, 2] - fv[:, 0], dim=-1)
    area = 0.5 * n.norm(dim=-1)  # (F,); degenerate (zero-area) faces carry no weight
    outward = ((n * (fv.mean(1) - centre)).sum(-1) > 0).double()
    return float((outward * area).sum() / area.sum()), float(area.sum())


def test_marching_cubes_sphere_sdf():
    sdf, c, r = sphere_sdf()
    verts, faces = marching_cubes(sdf, 0.0)
    assert verts.dtype == torch.float32 and faces.dtype == torch.long and verts.shape[1] == 3
    radius = (verts.double() - c).norm(dim=-1)
    assert float((radius - r).abs().max()) < 0.05  # on the sphere within grid tolerance
    frac, area = outward_fraction(verts, faces, c)
    assert area == pytest.approx(4 * math.pi * r * r, rel=0.02)
    # documented winding: normals point towards decreasing values: inward for an SDF
    assert frac == 0.0
    assert outward_fraction(*marching_cubes(sdf, 0.0, inside="below"), c)[0] == 1.0
    assert outward_fraction(verts, flip_faces(faces), c)[0] == 1.0
    # an occupancy-like field (positive inside): PyMCubes' winding is already outward
    assert outward_fraction(*marching_cubes(-sdf, 0.0), c)[0] == 1.0
    assert outward_fraction(*marching_cubes(-sdf.numpy(), 0.0, inside="above"), c)[0] == 1.0
    # a non-zero isovalue: the sphere of radius r + 2
    v2, _ = marching_cubes(sdf, 2.0)
    assert float(((v2.double() - c).norm(dim=-1) - (r + 2)).abs().max()) < 0.05


def test_marching_cubes_axis_order_and_smooth():
    g = torch.arange(40, dtype=torch.float64)
    X, Y, Z = torch.meshgrid(g, g, g, indexing="ij")
    # an ellipsoid twice as long along axis 0: vertices must follow the volume's axis order
    f = ((X - 20) / 16) ** 2 + ((Y - 20) / 8) ** 2 + ((Z - 20) / 8) ** 2 - 1
    v, _ = marching_cubes(f, 0.0)
    ext = (v.max(0).values - v.min(0).values).double()
    assert torch.allclose(ext, torch.tensor([32.0, 16.0, 16.0], dtype=torch.float64), atol=0.2)
    # a binary occupancy grid, smoothed: close to the sphere, normals outward with inside="above"
    # (the smoothed surface has some zero-area faces, hence the area-weighted fraction)
    sdf, c, r = sphere_sdf(n=24, r=8.0, centre=(11.6, 12.2, 11.3))
    occ = (sdf < 0).float()
    vs, fs = marching_cubes(occ, 0.5, smooth=True, inside="above")
    radius = (vs.double() - c).norm(dim=-1)
    assert float((radius - r).abs().max()) < 1.0
    frac, area = outward_fraction(vs, fs, c)
    assert frac == 1.0 and area == pytest.approx(4 * math.pi * r * r, rel=0.05)


def test_marching_cubes_empty_and_validation():
    v, f = marching_cubes(torch.ones(6, 6, 6), 0.0)
    assert v.shape == (0, 3) and f.shape == (0, 3) and v.dtype == torch.float32 and f.dtype == torch.long
    with pytest.raises(ValueError, match="volume"):
        marching_cubes(torch.ones(6, 6), 0.0)
    with pytest.raises(ValueError, match="inside"):
        marching_cubes(torch.ones(6, 6, 6), 0.0, inside="left")


def test_edges_packed_match_unique_rows_across_a_batch():
    """edges_packed (1-D key) gives exactly torch.unique(rows) of the sorted face edges, batch included."""
    s, t = ico_sphere(2), ico_sphere(1)
    m = Meshes([s.verts_packed(), t.verts_packed(), s.verts_packed()], [s.faces_packed(), t.faces_packed(), s.faces_packed()])
    f = m.faces_packed()
    e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], 0).sort(dim=1)[0]
    ref = torch.unique(e, dim=0)
    assert torch.equal(m.edges_packed(), ref)
    assert len(ref) == 2 * 480 + 120  # E = 3F/2 per closed triangle mesh (320 and 80 faces)
