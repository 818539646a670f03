"""Procedural chairs/vases/lamps: area-weighted sampling, determinism, part geometry, data layout."""

import math

import numpy as np
import pytest
import torch

from a5_pointnet.baseline import bbox_features, fit_bbox_baseline
from a5_pointnet.data import load_split, resolve_data, synthetic_root
from l3d.errors import UserError
from a5_pointnet.synthetic import (CHAIR_PARTS, GENERATOR_VERSION, K_KNOTS, PartTable, generate_class, generate_split,
                                   sample_parts)


def _table(boxes=(), revs=()):
    """A one-shape PartTable from lists of (center, half, label) and (profile knots, label)."""
    eye = torch.eye(3)
    nb, nq = max(len(boxes), 1), max(len(revs), 1)
    t = PartTable(torch.zeros(1, nb, 3), torch.full((1, nb, 3), 1e-3), eye.expand(1, nb, 3, 3).clone(),
                  torch.zeros(1, nb, dtype=torch.long), torch.zeros(1, nb),
                  torch.zeros(1, nq, 3), eye.expand(1, nq, 3, 3).clone(), torch.zeros(1, nq, K_KNOTS, 2),
                  torch.ones(1, nq, 2), torch.zeros(1, nq, dtype=torch.long), torch.zeros(1, nq))
    for j, (c, h, lab) in enumerate(boxes):
        t.box_center[0, j], t.box_half[0, j] = torch.tensor(c), torch.tensor(h)
        t.box_label[0, j], t.box_weight[0, j] = lab, 1
    for j, (knots, lab) in enumerate(revs):
        k = torch.tensor(knots, dtype=torch.float32)
        t.rev_profile[0, j] = torch.cat([k, k[-1:].expand(K_KNOTS - len(k), 2)])
        t.rev_label[0, j], t.rev_weight[0, j] = lab, 1
    return t


def test_box_sampling_is_area_weighted_and_on_the_surface():
    h = (0.5, 1.0, 2.0)
    pts, lab = sample_parts(_table(boxes=[((1.0, 2.0, 3.0), h, 4)]), 60000, torch.Generator().manual_seed(0))
    local = (pts[0] - torch.tensor([1.0, 2.0, 3.0])).abs()
    on_face = (local - torch.tensor(h)).abs() < 1e-5  # (P, 3): which face pair each point lies on
    assert bool((on_face.sum(1) >= 1).all()) and bool((local <= torch.tensor(h) + 1e-5).all())
    areas = torch.tensor([h[1] * h[2], h[0] * h[2], h[0] * h[1]])
    frac = on_face.float().mean(0)
    torch.testing.assert_close(frac, areas / areas.sum(), atol=0.01, rtol=0)
    assert bool((lab == 4).all())


def test_capped_cylinder_and_cone_sampling_follow_the_area():
    r, hgt = 0.5, 2.0
    cyl = [(0, 0), (r, 0), (r, hgt), (0, hgt)]  # bottom cap, side, top cap
    pts, _ = sample_parts(_table(revs=[(cyl, 1)]), 80000, torch.Generator().manual_seed(1))
    p = pts[0]
    rad = p[:, [0, 2]].norm(dim=1)
    side = (rad - r).abs() < 1e-4
    lateral, caps = 2 * math.pi * r * hgt, 2 * math.pi * r * r
    assert abs(float(side.float().mean()) - lateral / (lateral + caps)) < 0.01
    # on a cap the radius has density 2 rho / r^2 (uniform on the disk): mean radius 2r/3
    cap = ~side
    assert abs(float(rad[cap].mean()) - 2 * r / 3) < 0.01
    # a cone from its apex: the height of a uniform point has density ~ y, mean 2h/3
    cone = [(0, 0), (1.0, 1.0)]
    pts, _ = sample_parts(_table(revs=[(cone, 0)]), 50000, torch.Generator().manual_seed(2))
    assert abs(float(pts[0, :, 1].mean()) - 2 / 3) < 0.01
    torch.testing.assert_close(pts[0, :, [0, 2]].norm(dim=1), pts[0, :, 1], atol=1e-5, rtol=0)


def test_generation_is_deterministic_and_splits_differ():
    a, la = generate_split("seg", "train", 6, 500, seed=3)
    b, lb = generate_split("seg", "train", 6, 500, seed=3)
    c, _ = generate_split("seg", "test", 6, 500, seed=3)
    assert a.shape == (6, 500, 3) and a.dtype == np.float32 and la.shape == (6, 500) and la.dtype == np.int64
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert np.abs(a - c).max() > 0.1
    x, y = generate_split("cls", "train", 20, 300, seed=0)
    assert x.shape == (20, 300, 3) and y.shape == (20,) and set(np.unique(y)) == {0, 1, 2}
    assert np.bincount(y).tolist() == [8, 6, 6]  # CLASS_SHARES 0.4 / 0.3 / 0.3


def test_chair_parts_sit_where_chair_parts_sit():
    pts, lab = generate_class("chair", 64, 4000, seed=1)
    assert set(np.unique(lab)) == set(range(len(CHAIR_PARTS)))
    y, z = pts[..., 1], pts[..., 2]
    for i in range(len(pts)):
        lb = lab[i]
        seat_y = y[i][lb == 0].mean()
        assert y[i][lb == 2].mean() < seat_y  # legs below the seat
        assert y[i][lb == 1].mean() > seat_y  # back above it
        assert z[i][lb == 1].mean() > z[i][lb == 0].mean()  # back behind it (chairs face -z)
        if (lb == 5).any():
            assert y[i][lb == 5].mean() > y[i][lb == 1].mean()  # headrest on top of the back
    # centred bounding boxes of the target sizes
    ext = pts.max(1) - pts.min(1)
    np.testing.assert_allclose((pts.max(1) + pts.min(1)) / 2, 0, atol=0.05)
    assert ext[:, 1].min() > 0.95 and ext[:, 1].max() < 1.9


def test_bounding_box_baseline_is_weak_on_the_procedural_data():
    xa, ya = generate_split("cls", "train", 240, 400, seed=0)
    xb, yb = generate_split("cls", "test", 120, 400, seed=0)
    f = bbox_features(xa)
    assert f.shape == (240, 7)
    np.testing.assert_allclose(np.exp(f[:, :3]), xa.max(1) - xa.min(1), rtol=1e-6)
    res = fit_bbox_baseline(xa, ya, xb, yb)
    assert 0.4 <= res["bbox_baseline_accuracy"] <= 0.7, res  # above the 40 % majority, far below PointNet
    # the same classifier separates classes whose boxes differ: scale the lamps' heights up
    xa2, xb2 = xa.copy(), xb.copy()
    xa2[ya == 2, :, 1] *= 3
    xb2[yb == 2, :, 1] *= 3
    assert fit_bbox_baseline(xa2, ya, xb2, yb)["bbox_logreg_accuracy"] > res["bbox_logreg_accuracy"] + 0.15


def test_cache_layout_and_loader_checks(tmp_path, capsys):
    spec = resolve_data("cls", "synthetic", cache_dir=tmp_path, num_train=5, num_test=4, num_points=300, seed=1)
    root = spec.root
    folder = tmp_path / "a5_synthetic" / f"v{GENERATOR_VERSION}_s1_p300_cls-5-4"
    assert root == str(folder)
    for kind in ("data", "label"):
        for split in ("train", "test"):
            assert (folder / "cls" / f"{kind}_{split}.npy").is_file()
    x, y = load_split(root, "cls", "test")
    assert x.shape == (4, 300, 3) and y.shape == (4,)
    mtime = (folder / "cls" / "data_test.npy").stat().st_mtime_ns
    assert synthetic_root(tmp_path, "cls", 5, 4, 300, 1) == synthetic_root(tmp_path, "cls", 5, 4, 300, 1)
    assert (folder / "cls" / "data_test.npy").stat().st_mtime_ns == mtime  # reused, not regenerated
    # the course layout is validated
    bad = tmp_path / "bad"
    (bad / "seg").mkdir(parents=True)
    np.save(bad / "seg" / "data_test.npy", np.zeros((2, 10, 3), np.float32))
    np.save(bad / "seg" / "label_test.npy", np.zeros((2, 9), np.int64))
    with pytest.raises(UserError, match=r"label_test.npy: expected an array of shape \(2, 10\)"):
        load_split(bad, "seg", "test")
    np.save(bad / "seg" / "label_test.npy", np.full((2, 10), 6, np.int64))
    with pytest.raises(UserError, match="labels in 0..5"):
        load_split(bad, "seg", "test")
    with pytest.raises(UserError, match="course data not found"):
        resolve_data("seg", "course", data_dir=str(tmp_path / "nowhere"))
    # course files present: auto picks them, in the same layout
    for split in ("train", "test"):
        np.save(bad / "seg" / f"data_{split}.npy", np.zeros((2, 10, 3), np.float32))
        np.save(bad / "seg" / f"label_{split}.npy", np.ones((2, 10), np.int64))
    spec = resolve_data("seg", "auto", data_dir=str(bad))
    assert spec.source == "course" and load_split(spec.root, "seg", "train")[1].sum() == 20


def test_dataset_a5_is_registered():
    from l3d.data import DATASETS, dataset_of

    assert dataset_of("a5/cls/data_train.npy") == "a5" and dataset_of("a5/seg/label_test.npy") == "a5"
    assert len(DATASETS["a5"].files) == 8
