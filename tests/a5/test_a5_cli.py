"""End-to-end runs of the Assignment 5 command lines on tiny procedural data (CPU, single thread)."""

import csv
import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from a5_pointnet import eval_cls, eval_seg, robustness, train
from a5_pointnet.targets import ROBUSTNESS_CHECKS
from l3d.cli import run_cli
from l3d.run import LOSS_LOG

VIS = ["--num_frames", "3", "--image_size", "48"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("a5cache"))


def data_flags(cache, task):
    sizes = {"cls": ("150", "60"), "seg": ("96", "24")}[task]
    return ["--data", "synthetic", "--cache_dir", cache, "--num_train", sizes[0], "--num_test", sizes[1]]


def _train(out, cache, task, *extra):
    argv = ["--task", task, "--quick", "--output_dir", str(out), "--batch_size", "16", "--num_points", "256",
            "--eval_points", "256", "--final_points", "10000", "--bn_batches", "3", *data_flags(cache, task), *extra]
    assert train.main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("cls")
    return out, _train(out, cache, "cls", "--num_epochs", "3", "--width", "0.25", "--save_every", "2")


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("seg")
    return out, _train(out, cache, "seg", "--num_epochs", "4", "--width", "0.25", "--batch_size", "8")


def test_train_cls_files_log_and_accuracy_far_above_chance(cls_run):
    out, m = cls_run
    ck = out / "checkpoints"
    for name in ("best.pt", "last.pt", "ckpt_1.pt", "best.json"):  # --save_every 2: epoch index 1
        assert (ck / name).is_file(), name
    rows = list(csv.DictReader(open(out / LOSS_LOG)))
    assert [int(r["step"]) for r in rows] == [0, 1, 2]
    assert all(0 <= float(r["acc/test"]) <= 1 for r in rows)
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert (out / "curves.png").stat().st_size > 1000 and (out / "command.txt").is_file()
    assert m["test_accuracy"] >= 0.8, m  # chance: 0.33, majority class 0.4
    assert m["final_points"] == 10000 and m["num_test"] == 60 and m["epochs_trained"] == 3
    assert m["bbox_baseline_accuracy"] < m["test_accuracy"] - 0.15
    chk = m["checks"]["test_accuracy"]
    assert chk["value"] == m["test_accuracy"] and chk["min"] == 0.90 and chk["pass"] is (m["test_accuracy"] >= 0.90)
    assert m["data"] == "stand-in: procedural chairs, vases and lamps (course point clouds not in the data root)"
    assert m["data_source"] == "synthetic"
    best = torch.load(ck / "best.pt", weights_only=True)
    assert {"model", "optimizer", "config", "step"} <= set(best)  # the shared checkpoint schema
    assert best["config"]["arch"] == "pointnet" and best["data"]["source"] == "synthetic"
    assert m["best_epoch"] == best["step"]


def test_train_seg_accuracy_far_above_chance(seg_run):
    out, m = seg_run
    assert m["test_accuracy"] >= 0.6, m  # majority part (seat) ~0.35
    assert (out / "checkpoints" / "best.pt").is_file()


def test_eval_cls_reproduces_the_accuracy_and_writes_gifs(cls_run, tmp_path):
    run_dir, m = cls_run
    out = tmp_path / "ev"
    argv = ["--load_checkpoint", str(run_dir), "--output_dir", str(out), "--num_points", "10000", "--i", "3", *VIS]
    out.mkdir()
    (out / "failure_stale.gif").write_bytes(b"GIF89a")  # a previous run's picture
    assert eval_cls.main(argv) == 0
    assert not (out / "failure_stale.gif").exists()
    e = json.loads((out / "metrics.json").read_text())
    assert e["test_accuracy"] == pytest.approx(m["test_accuracy"], abs=1e-12)  # all points: same predictions
    cm = np.array(e["confusion_matrix"])
    assert cm.sum() == 60 and np.trace(cm) == round(e["test_accuracy"] * 60)
    assert e["checks"]["test_accuracy"]["value"] == e["test_accuracy"] and e["checks"]["test_accuracy"]["min"] == 0.90
    assert e["data"].startswith("stand-in: procedural chairs, vases and lamps")
    frames = iio.imread(out / "object_3.gif", index=None)
    assert frames.shape[0] == 3 and frames.shape[2] == 48 and frames.shape[1] > 48  # caption banner above the render
    assert (out / "object_3.png").is_file() and any(out.glob("correct_*.gif"))
    md = (out / "results.md").read_text()
    assert "Bounding-box baseline" in md
    assert len([line for line in md.splitlines() if line.startswith("| chair |")]) == 2  # class table, confusion


def test_eval_seg_reproduces_the_accuracy_and_uses_the_course_colours(seg_run, tmp_path):
    run_dir, m = seg_run
    out = tmp_path / "ev"
    assert eval_seg.main(["--load_checkpoint", str(run_dir / "checkpoints" / "best.pt"), "--output_dir", str(out),
                          "--num_points", "10000", "--num_cases", "1", *VIS, "--image_size", "96"]) == 0
    e = json.loads((out / "metrics.json").read_text())
    assert e["test_accuracy"] == pytest.approx(m["test_accuracy"], abs=1e-12)
    assert 0 <= e["mean_iou"] <= 1 and e["object_accuracy_min"] <= e["test_accuracy"]
    # one category (chairs): instance and class mIoU agree, and the category's own entry is the same number
    assert e["instance_miou"] == pytest.approx(e["class_miou"]) and 0.5 < e["instance_miou"] <= 1
    assert [k for k in e if k.startswith("miou_")] == ["miou_chair"] and e["miou_chair"] == pytest.approx(e["instance_miou"])
    assert e["checks"]["test_accuracy"]["value"] == e["test_accuracy"] and e["checks"]["test_accuracy"]["min"] == 0.80
    assert e["data"].startswith("stand-in: ")
    for name in ("gt_0", "pred_0", "good_0", "bad_0"):
        assert (out / f"{name}.gif").is_file() and (out / f"{name}.png").is_file()
    good = iio.imread(out / "good_0.gif", index=None)  # banner / gt | gap | prediction / colour key
    assert good.shape[0] == 3 and good.shape[2] == 2 * 96 + 3 and good.shape[1] > 96 + 20
    img = iio.imread(out / "gt_0.png")[..., :3].astype(int).reshape(-1, 3)
    for colour in ((255, 0, 255), (0, 255, 255), (255, 255, 255)):  # back, legs, seat
        assert (np.abs(img - colour).sum(1) < 60).sum() > 5, colour
    # object 0 as files other tools open: a .ply coloured by prediction, an .npz with both labellings
    import trimesh

    cloud = trimesh.load(out / "pred_0.ply", process=False)
    saved = np.load(out / "pred_0.npz")
    assert cloud.vertices.shape == saved["points"].shape == (10000, 3)
    assert np.allclose(cloud.vertices, saved["points"]) and saved["pred"].shape == saved["gt"].shape == (10000,)
    assert e["object_accuracy_min"] <= (saved["pred"] == saved["gt"]).mean() <= 1  # a trained model's labels
    from a5_pointnet.common import seg_colors
    import torch

    want = (seg_colors(torch.as_tensor(saved["pred"])).numpy() * 255).round()
    assert np.abs(cloud.colors[:, :3].astype(float) - want).max() <= 1


def test_robustness_tables_and_accuracy_falls_with_rotation(cls_run, seg_run, tmp_path):
    out = tmp_path / "rob"
    argv = ["--cls_checkpoint", str(cls_run[0]), "--seg_checkpoint", str(seg_run[0]), "--output_dir", str(out),
            "--num_objects", "24", "--rotation_points", "2000", *VIS]
    assert robustness.main(argv) == 0
    md = (out / "robustness.md").read_text()
    def numeric_first_cell(line):
        try:
            float(line.strip("|").split("|")[0])
            return True
        except ValueError:
            return False

    rows = [line for line in md.splitlines() if line.startswith("| ") and numeric_first_cell(line)]
    assert len(rows) == 6 + 5  # the overall tables: one row per rotation and per point count
    m = json.loads((out / "metrics.json").read_text())
    for task in ("cls", "seg"):
        rot = [r["accuracy"] for r in m["results"][task]["rotation"]]
        print(task, "accuracy by rotation", rot)
        assert [r["angle"] for r in m["results"][task]["rotation"]] == [0, 10, 20, 30, 60, 90]
        assert rot[0] > rot[-1] + 0.2, (task, rot)
        assert rot[0] >= rot[3] - 0.02 and rot[3] >= rot[-1] - 0.02, (task, rot)  # 0 >= 30 >= 90 degrees
        assert [r["num_points"] for r in m["results"][task]["num_points"]] == [10000, 5000, 1000, 500, 100]
    checks = m["checks"]
    assert set(checks) == set(ROBUSTNESS_CHECKS)
    for task in ("cls", "seg"):
        rot = {r["angle"]: r["accuracy"] for r in m["results"][task]["rotation"]}
        assert checks[f"{task}_upright_accuracy"]["value"] == rot[0]
        assert checks[f"{task}_rotation_drop"]["value"] == pytest.approx(rot[0] - (rot[60] + rot[90]) / 2)
        assert checks[f"{task}_rotation_drop"]["pass"], checks  # the models are not rotation invariant
        assert checks[f"{task}_points_floor"]["value"] == min(r["accuracy"] for r in m["results"][task]["num_points"])
    assert m["data"].startswith("stand-in: ")
    assert (out / "robustness.png").stat().st_size > 1000
    for name in ("cls_rot30", "cls_rot90", "cls_points100", "seg_rot90", "seg_points100"):
        assert (out / f"{name}.gif").is_file(), name


@pytest.mark.parametrize("task", ["cls", "seg"])
def test_pointnet2_trains_and_evaluates_end_to_end(task, cache, tmp_path):
    out = tmp_path / "pn2"
    m = _train(out, cache, task, "--model", "pointnet2", "--num_epochs", "1", "--width", "0.25",
               "--sa_points", "64", "16", "--sa_samples", "16", "16", "--final_points", "1000")
    assert m["model"] == "pointnet2" and 0 <= m["test_accuracy"] <= 1
    ev = tmp_path / "ev"
    mod = eval_cls if task == "cls" else eval_seg
    extra = ["--no-baseline"] if task == "cls" else ["--num_cases", "1"]
    assert mod.main(["--load_checkpoint", str(out), "--output_dir", str(ev), "--num_points", "1000", "--num_objects", "8",
                     *VIS, *extra]) == 0
    e = json.loads((ev / "metrics.json").read_text())
    assert e["model"] == "pointnet2" and e["num_objects"] == 8 and 0 <= e["test_accuracy"] <= 1


def test_resume_continues_with_the_next_epoch(cache, tmp_path, capsys):
    out = tmp_path / "r"
    common = ["--width", "0.25", "--num_points", "128", "--eval_points", "128", "--final_points", "500",
              "--save_every", "1", "--num_train", "32", "--num_test", "8"]
    _train(out, cache, "cls", "--num_epochs", "1", *common)
    _train(out, cache, "cls", "--num_epochs", "2", "--resume", *common)
    assert "resuming after epoch 1" in capsys.readouterr().err
    rows = list(csv.DictReader(open(out / LOSS_LOG)))
    assert [int(r["step"]) for r in rows] == [0, 1]
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=False)["step"] == 1
    # a different model cannot resume this run: one error line, exit status 2
    with pytest.raises(SystemExit) as e:
        run_cli(train.main, ["--task", "cls", "--quick", "--output_dir", str(out), "--resume", "--num_epochs", "3",
                             *data_flags(cache, "cls"), *common[:1], "0.5", *common[2:]])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "different configuration" in err and "width" in err and "\n" not in err


def test_bad_inputs_are_one_line_errors(cls_run, tmp_path, capsys):
    cases = [
        (eval_cls.main, ["--load_checkpoint", str(tmp_path / "none"), "--output_dir", str(tmp_path)],
         "--load_checkpoint " + str(tmp_path / "none") + ": expected a .pt file"),
        (eval_seg.main, ["--load_checkpoint", str(cls_run[0]), "--output_dir", str(tmp_path)], "is a cls model"),
        (eval_cls.main, ["--load_checkpoint", str(cls_run[0]), "--output_dir", str(tmp_path), "--i", "999"],
         "--index 999: expected an object index in 0..59"),
    ]
    for fn, argv, msg in cases:  # (bad flag values: test_a5_reliability)
        with pytest.raises(SystemExit) as e:
            run_cli(fn, argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and msg in err and "\n" not in err, err


def test_ctrl_c_saves_a_checkpoint_and_resume_goes_on(cache, tmp_path, monkeypatch, capsys):
    class Requested:
        requested = True

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    out = tmp_path / "int"
    common = ["--width", "0.25", "--num_points", "128", "--eval_points", "128", "--final_points", "500",
              "--num_train", "32", "--num_test", "8"]
    with monkeypatch.context() as mp:
        mp.setattr(train, "graceful_interrupt", lambda **kw: Requested())
        _train(out, cache, "cls", "--num_epochs", "3", *common)  # stops after the first batch
    assert "interrupted: saved" in capsys.readouterr().err
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert state["step"] == 0 and state["partial_epoch"] is True
    _train(out, cache, "cls", "--num_epochs", "2", "--resume", *common)
    assert [int(r["step"]) for r in csv.DictReader(open(out / LOSS_LOG))] == [1]


def test_non_finite_loss_stops_with_the_step(cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train.F, "cross_entropy", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(SystemExit) as e:
        run_cli(train.main, ["--task", "cls", "--quick", "--output_dir", str(tmp_path), "--num_epochs", "1",
                             "--width", "0.25", "--num_points", "64", "--num_train", "32", "--num_test", "8",
                             "--data", "synthetic", "--cache_dir", cache])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: training loss (epoch 0) became nan at step 0;"), err


def test_robustness_per_class_and_per_object_recombine_and_the_seg_grid(cls_run, seg_run, tmp_path):
    from a5_pointnet.common import PANEL_GAP
    from a5_pointnet.robustness import GRID_LABEL_WIDTH
    from a5_pointnet.synthetic import CLASS_NAMES

    out = tmp_path / "rob"
    argv = ["--cls_checkpoint", str(cls_run[0]), "--seg_checkpoint", str(seg_run[0]), "--output_dir", str(out),
            "--num_objects", "24", "--rotation_points", "500", "--example_angles", "--num_frames", "1",
            "--image_size", "48", "--grid_objects", "3", "5", "--grid_angles", "0", "90", "--grid_points", "100"]
    assert robustness.main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    settings = [f"rot_{a}" for a in (0, 10, 20, 30, 60, 90)] + [f"points_{n}" for n in (10000, 5000, 1000, 500, 100)]
    assert list(m["per_class"]) == settings and list(m["seg_per_object"]) == settings
    counts = m["class_counts"]
    assert list(counts) == list(CLASS_NAMES) and sum(counts.values()) == 24 and min(counts.values()) > 0
    for st in settings:
        recombined = sum(m["per_class"][st][c] * counts[c] for c in CLASS_NAMES) / 24
        assert recombined == pytest.approx(m[f"cls_{st}"], abs=1e-12), st
        assert all(0.0 <= m["per_class"][st][c] <= 1.0 for c in CLASS_NAMES)
        per_object = m["seg_per_object"][st]  # equal points per cloud: their mean is the overall accuracy
        assert len(per_object) == 24 and np.mean(per_object) == pytest.approx(m[f"seg_{st}"], abs=1e-12), st
    assert m["per_class"]["rot_0"] != m["per_class"]["rot_90"]
    grid = m["seg_examples"]
    assert grid["rows"] == ["rot_0", "rot_90", "points_100"] and grid["objects"] == [3, 5]
    assert grid["columns"] == ["object 3 ground truth", "object 3 prediction", "object 5 ground truth",
                               "object 5 prediction"]
    for st in grid["rows"]:
        assert grid["accuracy"][st] == {"3": m["seg_per_object"][st][3], "5": m["seg_per_object"][st][5]}
    img = iio.imread(out / "seg_examples.png")
    assert img.shape[1] == GRID_LABEL_WIDTH + 4 * (PANEL_GAP + 48)  # label margin, then 4 panels per row
    assert img.shape[0] > 3 * 48
    md = (out / "robustness.md").read_text()
    assert "| setting | chair | vase | lamp | all |" in md and "| setting | object 3 | object 5 | all |" in md
    row = next(line for line in md.splitlines() if line.startswith("| 100 points |") and line.count("|") == 6)
    assert row.split("|")[2].strip() == f"{m['per_class']['points_100']['chair']:.4f}"
