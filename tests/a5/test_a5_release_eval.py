"""Evaluating a model trained on a public release: the release's own class names and counts, and
the same data found again when its converted copy has been deleted."""

from __future__ import annotations

import json
import shutil

import pytest

from a5_pointnet import eval_cls, robustness
from l3d.errors import UserError
from test_a5_datasets import _train, write_modelnet_h5  # tests/a5 is on sys.path (pytest's rootdir insertion)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A PointNet trained on a ModelNet40-format HDF5 fixture that lists all 40 classes and uses 3."""
    tmp = tmp_path_factory.mktemp("release")
    write_modelnet_h5(tmp / "data", n_train=16, n_test=12, points=256, all_names=True)
    m, _ = _train(tmp, tmp / "data", "h5_40", epochs=5)
    return tmp, m


def _eval(tmp, out, *extra):
    assert eval_cls.main(["--load_checkpoint", str(tmp / "h5_40"), "--num_points", "256", "--num_frames", "4",
                          "--image_size", "32", "--output_dir", str(out), "--device", "cpu", *extra]) == 0
    return json.loads((out / "metrics.json").read_text()), (out / "results.md").read_text()


def test_eval_uses_the_release_class_names_and_finds_the_data_again(trained):
    tmp, train_metrics = trained
    m, md = _eval(tmp, tmp / "eval_1")
    assert m["data"].startswith("dataset: ModelNet40") and len(m["confusion_matrix"]) == 40
    assert sorted(k for k in m if k.startswith("accuracy_")) == ["accuracy_chair", "accuracy_lamp", "accuracy_vase"]
    assert "| chair |" in md and "of 40 classes that occur" in md and "| airplane |" not in md
    assert m["test_accuracy"] == pytest.approx(train_metrics["test_accuracy"], abs=0.1)
    # the converted copy is deleted: the checkpoint's release folder is converted again, the same view
    shutil.rmtree(tmp / "cache" / "a5_datasets")
    m2, _ = _eval(tmp, tmp / "eval_2")
    assert m2["data"] == m["data"] and m2["confusion_matrix"] == m["confusion_matrix"]
    assert m2["test_accuracy"] == m["test_accuracy"]
    assert (tmp / "cache" / "a5_datasets").is_dir()


def test_robustness_tables_the_release_classes(trained, tmp_path):
    tmp, _ = trained
    out = tmp_path / "robust"
    assert robustness.main(["--task", "cls", "--cls_checkpoint", str(tmp / "h5_40"), "--angles", "0", "90",
                            "--num_points_list", "64", "--rotation_points", "128", "--num_frames", "4",
                            "--image_size", "32", "--output_dir", str(out), "--device", "cpu"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["per_class"]["rot_0"]) == {"chair", "lamp", "vase"}  # not the 37 classes without test clouds
    assert m["class_counts"] == {"chair": 12, "vase": 12, "lamp": 12}


def test_deleted_release_and_cache_is_one_line(trained, tmp_path):
    tmp, _ = trained
    moved = tmp_path / "moved"
    shutil.move(tmp / "data", moved)
    shutil.rmtree(tmp / "cache" / "a5_datasets", ignore_errors=True)
    try:
        with pytest.raises(UserError) as e:
            _eval(tmp, tmp_path / "eval")
        assert "neither is there" in str(e.value) and "--data_path" in str(e.value)
    finally:
        shutil.move(moved, tmp / "data")
