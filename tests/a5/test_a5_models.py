"""PointNet / PointNet++ shapes, permutation invariance, and the point ops against slow references."""

import pytest
import torch

from a5_pointnet.models import ModelConfig, build_model
from a5_pointnet.pointops import ball_query, farthest_point_sample, gather_points, three_interpolate

SMALL = dict(width=0.25, sa_points=(32, 8), sa_samples=(8, 8), sa_radius=(0.3, 0.6))


@pytest.mark.parametrize("arch", ["pointnet", "pointnet2"])
@pytest.mark.parametrize("task,classes", [("cls", 3), ("seg", 6)])
def test_output_shapes(arch, task, classes):
    torch.manual_seed(0)
    model = build_model(ModelConfig(task=task, arch=arch, num_classes=classes, **SMALL)).eval()
    for B, P in ((2, 100), (3, 257)):
        out = model(torch.randn(B, P, 3))
        assert out.shape == ((B, classes) if task == "cls" else (B, P, classes))
        assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match=r"points must have shape \(B, P, 3\)"):
        model(torch.randn(2, 100, 2))


def test_pointnet_classifier_is_invariant_to_point_order():
    torch.manual_seed(1)
    model = build_model(ModelConfig(task="cls", arch="pointnet", num_classes=3, width=0.5)).eval()
    # give batch norm non-trivial statistics so the test is not about an identity
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 500, 3) * torch.tensor([0.5, 1.0, 0.7]))
    model.eval()
    x = torch.randn(4, 1000, 3)
    perm = torch.stack([torch.randperm(1000) for _ in range(4)])
    shuffled = torch.gather(x, 1, perm[..., None].expand(-1, -1, 3))
    with torch.no_grad():
        a, b = model(x), model(shuffled)
    assert a.abs().max() > 0.1
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # the logits do depend on the geometry
    with torch.no_grad():
        assert (model(x * 2.0) - a).abs().max() > 1e-3


def test_pointnet_segmentation_is_permutation_equivariant():
    torch.manual_seed(2)
    model = build_model(ModelConfig(task="seg", arch="pointnet", num_classes=6, width=0.5)).eval()
    x = torch.randn(2, 300, 3)
    perm = torch.randperm(300)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:, perm], model(x[:, perm]), atol=1e-5, rtol=0)


def _fps_reference(x, m):
    idx = [0]
    d = ((x - x[0]) ** 2).sum(-1)
    for _ in range(m - 1):
        j = int(d.argmax())
        idx.append(j)
        d = torch.minimum(d, ((x - x[j]) ** 2).sum(-1))
    return idx


def test_farthest_point_sampling_matches_reference():
    torch.manual_seed(3)
    x = torch.rand(3, 200, 3)
    idx = farthest_point_sample(x, 20)
    assert idx.shape == (3, 20)
    for b in range(3):
        assert idx[b].tolist() == _fps_reference(x[b], 20)
    # picks on a grid of well-separated clusters: one point per cluster first
    centers = torch.tensor([[0.0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]])
    pts = (centers[:, None] + 0.01 * torch.randn(4, 25, 3)).reshape(1, 100, 3)
    first4 = farthest_point_sample(pts, 4)[0] // 25
    assert sorted(first4.tolist()) == [0, 1, 2, 3]


def test_ball_query_returns_first_points_in_the_ball():
    torch.manual_seed(4)
    x = torch.rand(2, 300, 3)
    c = x[:, :10]
    r, K = 0.2, 12
    idx = ball_query(x, c, r, K)
    assert idx.shape == (2, 10, K)
    for b in range(2):
        for m in range(10):
            inside = torch.nonzero(((x[b] - c[b, m]) ** 2).sum(-1) <= r * r).flatten().tolist()
            want = inside[:K] + [inside[0]] * max(0, K - len(inside))
            assert idx[b, m].tolist() == want
    # a centre away from every point gets its nearest point
    far = torch.full((2, 1, 3), 5.0)
    near = ((x - far) ** 2).sum(-1).argmin(1)
    assert (ball_query(x, far, 0.1, 4)[:, 0] == near[:, None]).all()


def test_three_interpolate_matches_inverse_distance_weights():
    torch.manual_seed(5)
    dst, src = torch.rand(2, 50, 3), torch.rand(2, 9, 3)
    f = torch.randn(2, 9, 4)
    out = three_interpolate(dst, src, f)
    for b in range(2):
        for p in range(50):
            d = (src[b] - dst[b, p]).norm(dim=-1)
            dd, j = d.topk(3, largest=False)
            w = 1 / (dd + 1e-8)
            torch.testing.assert_close(out[b, p], (f[b, j] * (w / w.sum())[:, None]).sum(0), atol=1e-5, rtol=1e-4)
    # a dst point on a src point takes that point's features
    torch.testing.assert_close(three_interpolate(src, src, f), f, atol=1e-4, rtol=1e-4)
    assert torch.equal(gather_points(f, torch.tensor([[8, 0], [1, 1]])), torch.stack([f[0, [8, 0]], f[1, [1, 1]]]))


def test_segmentation_first_layer_equals_a_convolution_of_the_concatenation():
    torch.manual_seed(6)
    model = build_model(ModelConfig(task="seg", arch="pointnet", num_classes=6, width=0.25)).eval()
    x = torch.randn(2, 64, 3)
    with torch.no_grad():
        local, deep = model.encoder(x)
        cat = torch.cat([local, deep.amax(-1, keepdim=True).expand_as(deep)], 1)  # (B, 16 + 256, P)
        w = torch.cat([model.first_local.weight[:, :, 0], model.first_global.weight], 1)
        h = torch.relu(model.first_bn(torch.einsum("oc,bcp->bop", w, cat)))
        ref = model.out(model.point_mlp(h)).transpose(1, 2)
        torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=1e-5)
