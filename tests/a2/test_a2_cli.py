"""End-to-end runs of every Assignment 2 command line at --quick size on the tiny procedural set."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch

from a2_single_view import eval_model, features, fit_data, interpret, study_classes, study_wsmooth, train_model
from a2_single_view.data import ensure_synthetic
from l3d.train import load_checkpoint, run_cli


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "a2_data"
    ensure_synthetic(root, "tiny", verbose=False)
    return ["--data", "synthetic", "--data_root", str(root), "--preset", "tiny", "--device", "cpu"]


def metrics(path):
    return json.loads((path / "metrics.json").read_text())


def loss_rows(path):
    with open(path / "losses.csv") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------------------------
# Q1 fitting
# ----------------------------------------------------------------------------------------------
def test_fit_vox_reaches_the_target(tmp_path, data):
    out = tmp_path / "fit_vox"
    m = fit_data.main(["--type", "vox", "--max_iter", "150", "--lr", "0.05", "--num_frames", "2", "--image_size", "64",
                       "--output_dir", str(out), *data])
    assert m["iou"] > 0.95 and m["steps"] == 150
    for name in ("fit_vox.gif", "fit_vox.png", "loss_vox.png", "losses.csv", "command.txt"):
        assert (out / name).is_file()
    assert metrics(out)["iou"] == pytest.approx(m["iou"])


def test_fit_point_reaches_the_target(tmp_path, data):
    out = tmp_path / "fit_point"
    m = fit_data.main(["--type", "point", "--max_iter", "300", "--lr", "0.02", "--n_points", "300",
                       "--num_frames", "2", "--image_size", "64", "--output_dir", str(out), *data])
    rows = loss_rows(out)
    # randn(300, 3) starts far from the chair; Adam brings every point onto it
    assert float(rows[0]["loss"]) > 1.0 and m["chamfer"] < 3e-3
    assert (out / "fit_point.gif").is_file()


def test_fit_mesh_quick(tmp_path, data):
    out = tmp_path / "fit_mesh"
    m = fit_data.main(["--type", "mesh", "--quick", "--output_dir", str(out), *data])
    rows = loss_rows(out)
    assert float(rows[-1]["chamfer"]) < float(rows[0]["chamfer"])  # the sphere moves towards the chair
    assert np.isfinite(m["chamfer"]) and m["final_smooth"] >= 0
    assert (out / "fit_mesh.gif").is_file() and (out / "loss_mesh.png").is_file()


# ----------------------------------------------------------------------------------------------
# Q2 train + eval, Q3.1 implicit
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    """One quick training run per type, on images through ResNet-18 (point: precomputed features)."""
    base = tmp_path_factory.mktemp("a2_train")
    runs = {}
    for kind in ("vox", "point", "mesh", "implicit"):
        out = base / f"train_{kind}"
        extra = ["--load_feat"] if kind == "point" else []
        runs[kind] = (out, train_model.main(["--type", kind, "--quick", "--output_dir", str(out), *extra, *data]))
    return runs


@pytest.mark.parametrize("kind", ["vox", "point", "mesh", "implicit"])
def test_train_writes_checkpoint_log_and_metrics(trained, kind):
    out, m = trained[kind]
    assert m["steps"] == 6 and np.isfinite(m["final_loss"])
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert {"step", "model", "optimizer", "config"} <= set(state) and state["step"] == 5
    assert state["config"]["type"] == kind
    assert (out / f"loss_{kind}.png").is_file()
    assert [int(r["step"]) for r in loss_rows(out)] == [0, 2, 4, 5]  # every --log_freq (2 at --quick) and the last
    assert metrics(out)["train_images"] == 16


def test_load_feat_writes_features(trained, data):
    root = data[data.index("--data_root") + 1]
    import glob

    files = glob.glob(f"{root}/r2n2/ShapeNetRendering/03001627/*train*/rendering/feats.npy")
    assert len(files) == 8
    arr = np.load(files[0])
    assert arr.shape == (24, 512) and np.isfinite(arr[:2]).all() and np.isnan(arr[2:]).all()
    info = json.loads(open(files[0].replace("feats.npy", "feats.json")).read())
    assert info["encoder"].startswith("resnet18-")
    assert trained["point"][1]["encoder"] == info["encoder"]


def test_resume_continues_from_the_last_step(tmp_path, data):
    out = tmp_path / "train_resume"
    train_model.main(["--type", "vox", "--quick", "--max_iter", "3", "--mean_shape", "--output_dir", str(out), *data])
    first = load_checkpoint(out / "checkpoints" / "last.pt")
    m = train_model.main(["--type", "vox", "--quick", "--max_iter", "5", "--mean_shape", "--resume",
                          "--output_dir", str(out), *data])
    assert first["step"] == 2 and m["steps"] == 5
    steps = [int(r["step"]) for r in loss_rows(out)]
    assert steps == sorted(set(steps)) and steps[-1] == 4
    second = load_checkpoint(out / "checkpoints" / "last.pt")
    assert second["step"] == 4 and not torch.equal(second["model"]["decoder.out.weight"], first["model"]["decoder.out.weight"])
    # --load_checkpoint continues from a given file too
    m2 = train_model.main(["--type", "vox", "--quick", "--max_iter", "6", "--mean_shape", "--load_checkpoint",
                           str(out / "checkpoints" / "last.pt"), "--output_dir", str(tmp_path / "other"), *data])
    assert m2["steps"] == 6 and [int(r["step"]) for r in loss_rows(tmp_path / "other")] == [5]


@pytest.mark.parametrize("kind", ["vox", "point", "mesh", "implicit"])
def test_eval_writes_curve_metrics_and_examples(tmp_path, trained, data, kind):
    out = tmp_path / f"eval_{kind}"
    m = eval_model.main(["--type", kind, "--quick", "--load_checkpoint", str(trained[kind][0] / "checkpoints" / "last.pt"),
                         "--output_dir", str(out), *data])
    assert m["examples"] == 4
    f1 = [m[f"f1@{t:.2f}"] for t in (0.01, 0.02, 0.03, 0.04, 0.05)]
    assert all(0 <= a <= b <= 100 for a, b in zip(f1, f1[1:]))  # F1 grows with the threshold
    for name in (f"eval_{kind}.png", "per_example.json", "example_0.gif", "example_0.png", "example_1.gif"):
        assert (out / name).is_file(), name
    per = json.loads((out / "per_example.json").read_text())
    assert len(per) == 4 and np.mean([p["f1"][-1] for p in per]) == pytest.approx(m["f1@0.05"], abs=0.01)
    assert metrics(out)["f1@0.05"] == pytest.approx(m["f1@0.05"])


def test_eval_rejects_wrong_checkpoint_with_one_line(tmp_path, trained, data, capsys):
    with pytest.raises(SystemExit) as e:
        run_cli(eval_model.main, ["--type", "mesh", "--load_checkpoint", str(trained["vox"][0] / "checkpoints" / "last.pt"),
                                  "--output_dir", str(tmp_path), *data])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a 'vox' model" in err[0]
    with pytest.raises(SystemExit):
        run_cli(eval_model.main, ["--type", "vox", "--load_checkpoint", str(tmp_path / "missing.pt"), *data])
    assert "checkpoint not found" in capsys.readouterr().err


def test_features_cli(tmp_path, data):
    import glob

    root = data[data.index("--data_root") + 1]
    for f in glob.glob(f"{root}/r2n2/ShapeNetRendering/*/*-val-*/rendering/feats.*"):
        os.remove(f)
    features.main(["--quick", "--splits", "val", "--output_dir", str(tmp_path), *data])
    assert metrics(tmp_path)["views_computed"]["val"] == 2  # one val chair, two views
    (path,) = glob.glob(f"{root}/r2n2/ShapeNetRendering/03001627/*-val-*/rendering/feats.npy")
    assert np.isfinite(np.load(path)[:2]).all()
    features.main(["--quick", "--splits", "val", "--output_dir", str(tmp_path), *data])
    assert metrics(tmp_path)["views_computed"]["val"] == 0  # nothing left to do


# ----------------------------------------------------------------------------------------------
# studies
# ----------------------------------------------------------------------------------------------
def test_study_wsmooth_quick(tmp_path, data):
    out = tmp_path / "wsmooth"
    res = study_wsmooth.main(["--quick", "--load_feat", "--w_smooth", "0.1", "10", "--output_dir", str(out), *data])
    assert set(res) == {"0.1", "10"}
    # a heavier smoothness weight gives a smoother mesh
    assert res["10"]["final_smooth"] < res["0.1"]["final_smooth"]
    table = (out / "table.md").read_text()
    assert "| 0.1 |" in table and "| 10 |" in table
    for name in ("f1_curves.png", "examples.gif", "examples.png"):
        assert (out / name).is_file()
    assert set(metrics(out)["f1@0.05_by_w_smooth"]) == {"0.1", "10"}


def test_interpret_quick(tmp_path, trained, data):
    out = tmp_path / "interp"
    m = interpret.main(["--type", "point", "--quick", "--load_checkpoint",
                        str(trained["point"][0] / "checkpoints" / "last.pt"), "--output_dir", str(out), *data])
    f = [x["f1@0.05"] for x in m["failures"]]
    assert f == sorted(f) and f[0] <= m["test_f1@0.05"] <= m["best"]["f1@0.05"]
    assert m["mean_point_error"] > 0
    for name in ("error_0.gif", "error_0.png", "failures.png"):
        assert (out / name).is_file()


def test_study_classes_quick(tmp_path, data):
    out = tmp_path / "classes"
    m = study_classes.main(["--type", "point", "--quick", "--load_feat", "--output_dir", str(out), *data])
    assert m["train_images"]["three_class"] == 2 * (8 + 3 + 3) and m["train_images"]["one_class"] == 16
    assert 0 <= m["one_class"]["f1@0.05"] <= 100 and 0 <= m["three_class"]["f1@0.05"] <= 100
    for name in ("table.md", "f1_curves.png", "examples.gif"):
        assert (out / name).is_file()
