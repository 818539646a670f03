"""The Transformers of Q4: outputs, order invariance, locality of the kNN attention, bounded memory
at 10000 points, and a short training on the procedural stand-in (CPU, one thread)."""

import csv
import json

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode

from a5_pointnet import train
from a5_pointnet.models import ModelConfig, build_model
from a5_pointnet.transformer import PointTransformerLayer, chunked_attention
from l3d.run import LOSS_LOG

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SMALL = {"transformer": dict(width=0.25, depth=2, heads=2),
         "point_transformer": dict(width=0.25, sa_points=(64, 16, 4), neighbors=8)}
ARCHS = tuple(SMALL)


def _model(arch, task, seed=0, **extra):
    torch.manual_seed(seed)
    cfg = ModelConfig(task=task, arch=arch, num_classes=3 if task == "cls" else 6, **{**SMALL[arch], **extra})
    model = build_model(cfg)
    model.train()
    with torch.no_grad():  # non-trivial batch-norm statistics, so that eval mode is not an identity
        for _ in range(3):
            model(torch.randn(4, 200, 3) * torch.tensor([0.5, 1.0, 0.7]))
    return model.eval()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("task", ["cls", "seg"])
def test_shapes_and_log_probabilities(arch, task):
    model = _model(arch, task)
    k = 3 if task == "cls" else 6
    with torch.no_grad():
        for B, P in ((2, 100), (3, 257)):
            out = model(torch.randn(B, P, 3))
            assert out.shape == ((B, k) if task == "cls" else (B, P, k))
            assert (out <= 0).all()
            torch.testing.assert_close(out.exp().sum(-1), torch.ones(out.shape[:-1]), atol=1e-5, rtol=0)
            assert out.std(-1).max() > 1e-3  # not uniform
    with pytest.raises(ValueError, match=r"points must have shape \(B, P, 3\)"):
        model(torch.randn(2, 100, 2))


@pytest.mark.parametrize("arch", ARCHS)
def test_classifier_invariant_and_segmenter_equivariant_to_point_order(arch):
    x = torch.randn(2, 300, 3) * torch.tensor([0.5, 1.0, 0.7])
    perm = torch.randperm(300)
    cls, seg = _model(arch, "cls", 1), _model(arch, "seg", 2)
    with torch.no_grad():
        a, b = cls(x), cls(x[:, perm])
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        assert (cls(x * 1.5) - a).abs().max() > 1e-3  # the output does depend on the geometry
        torch.testing.assert_close(seg(x)[:, perm], seg(x[:, perm]), atol=1e-5, rtol=0)


def test_local_attention_sees_only_the_k_nearest_points():
    torch.manual_seed(3)
    layer = PointTransformerLayer(dim=16, neighbors=8).eval()
    xyz, feats = torch.rand(1, 200, 3), torch.randn(1, 200, 16)
    i = 0
    d = (xyz[0] - xyz[0, i]).norm(dim=-1)
    order = d.argsort()
    near, far = order[1], order[-1]  # a neighbour of point i, and the point farthest from it
    with torch.no_grad():
        base = layer(xyz, feats)
        xyz2, feats2 = xyz.clone(), feats.clone()
        xyz2[0, far] += (xyz[0, far] - xyz[0, i]) * 0.5  # moved further away, with new features
        feats2[0, far] = torch.randn(16) * 5
        moved = layer(xyz2, feats2)
        torch.testing.assert_close(moved[0, i], base[0, i], atol=0, rtol=0)  # point i cannot see it
        assert (moved[0, far] - base[0, far]).abs().max() > 1e-3  # the far point itself changes
        feats3 = feats.clone()
        feats3[0, near] += 1.0
        assert (layer(xyz, feats3)[0, i] - base[0, i]).abs().max() > 1e-4  # a neighbour does matter


def test_chunked_attention_equals_unchunked():
    torch.manual_seed(4)
    q, k, v = torch.randn(2, 3, 70, 8), torch.randn(2, 3, 90, 8), torch.randn(2, 3, 90, 8)
    ref = torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, -1) @ v
    for budget in (1, 2 * 3 * 90 * 7, 1 << 30):  # one query per block, 7 per block, all at once
        torch.testing.assert_close(chunked_attention(q, k, v, budget), ref, atol=1e-5, rtol=1e-5)
    layer = PointTransformerLayer(dim=16, neighbors=6).eval()
    xyz, feats = torch.rand(2, 50, 3), torch.randn(2, 50, 16)
    with torch.no_grad():
        whole = layer(xyz, feats)
        layer.budget = 2 * 6 * 16 * 7  # blocks of 7 queries
        torch.testing.assert_close(layer(xyz, feats), whole, atol=1e-6, rtol=1e-6)


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an operation returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if torch.is_tensor(t):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("arch", ARCHS)
def test_no_points_by_points_tensor_at_10000_points(arch):
    P = 10000
    model = _model(arch, "seg", **({"depth": 1} if arch == "transformer" else {}))
    x = torch.rand(1, P, 3) * 2 - 1
    # PyTorch's plain attention kernel forms the scores (its fused CPU kernel would not): the query
    # blocks are what bounds them here
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), _LargestTensor() as probe:
        out = model(x)
    assert out.shape == (1, P, 6) and torch.isfinite(out).all()
    # the attention budget (4M scores) is far below one P x P score matrix per head (1e8)
    assert probe.largest <= 1 << 22, probe.largest
    assert probe.largest < P * P // 10


def test_the_probe_sees_a_full_score_matrix_without_the_blocks():
    P = 3000
    model = _model("transformer", "cls", depth=1)
    model.encoder.set_budget(1 << 62)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), _LargestTensor() as probe:
        model(torch.rand(1, P, 3))
    assert probe.largest >= 2 * P * P  # two heads of P x P scores


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("a5cache")  # the procedural clouds, generated once for both runs


def _train(out, cache, model, *extra):
    argv = ["--task", "cls", "--model", model, "--quick", "--output_dir", str(out), "--batch_size", "16",
            "--num_points", "128", "--eval_points", "256", "--final_points", "1000", "--bn_batches", "2",
            "--data", "synthetic", "--cache_dir", str(cache), "--num_train", "150", "--num_test", "60",
            "--no-baseline", *extra]
    assert train.main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("arch,extra", [
    ("transformer", ["--width", "0.25", "--depth", "2", "--lr", "0.002"]),
    ("point_transformer", ["--width", "0.25", "--sa_points", "64", "16", "--neighbors", "8", "--lr", "0.002"]),
])
def test_short_training_is_far_above_chance_and_resumes(tmp_path, cache, arch, extra):
    m = _train(tmp_path / "run", cache, arch, "--num_epochs", "3", *extra)
    assert m["model"] == arch and m["num_test"] == 60
    assert m["test_accuracy"] >= 0.75, m["test_accuracy"]  # 3 classes: chance is 1/3
    rows = list(csv.DictReader(open(tmp_path / "run" / LOSS_LOG)))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    # resume: one more epoch continues the log from the checkpoint
    _train(tmp_path / "run", cache, arch, "--num_epochs", "4", "--resume", *extra)
    rows = list(csv.DictReader(open(tmp_path / "run" / LOSS_LOG)))
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]
