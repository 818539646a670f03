"""Assignment 2 under bad input and faults: every failure is one line (exit status 2) that names the
flag or file, and a failed run never costs the results already in its output folder."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from a2_single_view import eval_model, fit_data, study_classes, study_wsmooth, train_model
from a2_single_view.data import SYNSETS, binvox_path, ensure_synthetic, obj_path, read_split, rendering_dir
from l3d.cli import run_cli
from l3d.run import OutputLock, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

# a small, quick model: the mean-shape voxel decoder (no encoder) at a quarter of its width
VOX = ["--type", "vox", "--mean_shape", "--vox_width", "0.25", "--batch_size", "4", "--log_freq", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "a2_data"
    split = ensure_synthetic(root, "tiny", verbose=False)
    return ["--data", "synthetic", "--data_path", str(root), "--data_preset", "tiny", "--device", "cpu"], root, split


def fails(main, argv, capsys):
    """Run an entry point as the command line does; its exit status and the lines it printed on stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run_cli(main, argv)
    return e.value.code, capsys.readouterr().err.strip().splitlines()


def one_error_line(err):
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def snapshot(out):
    """What a finished run leaves: its checkpoint (step and weights), metrics and loss log."""
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    return {"step": state["step"], "weights": state["model"]["decoder.out.weight"].clone(),
            "metrics": (out / "metrics.json").read_text(), "losses": (out / "losses.csv").read_text()}


@pytest.fixture
def trained(tmp_path, data):
    """A finished 3-step run in tmp_path/train and what it left there."""
    out = tmp_path / "train"
    train_model.main([*VOX, "--steps", "3", "--output_dir", str(out), *data[0]])
    return out, snapshot(out)


def test_diverging_run_keeps_the_previous_results(trained, data, capsys):
    """(a) A fresh run with an absurd learning rate into a folder holding a finished run: one line
    naming the step, exit 2, and the first run's checkpoint, metrics and loss log as they were."""
    out, before = trained
    code, err = fails(train_model.main, [*VOX, "--steps", "4", "--lr", "1e30", "--output_dir", str(out), *data[0]],
                      capsys)
    line = one_error_line(err)
    assert code == 2 and "at step" in line and "learning rate" in line
    after = snapshot(out)
    assert after["step"] == before["step"] == 2 and torch.equal(after["weights"], before["weights"])
    assert after["metrics"] == before["metrics"] and after["losses"] == before["losses"]
    assert not [p for p in out.iterdir() if p.name.startswith(".pending")]  # nothing left behind
    # the same for a fit
    fit_out = out.parent / "fit"
    fit_data.main(["--type", "point", "--steps", "3", "--num_points", "50", "--num_frames", "2", "--image_size", "32",
                   "--output_dir", str(fit_out), *data[0]])
    gif = (fit_out / "fit_point.gif").read_bytes()
    code, err = fails(fit_data.main, ["--type", "point", "--steps", "3", "--lr", "1e30", "--num_points", "50",
                                      "--output_dir", str(fit_out), *data[0]], capsys)
    assert code == 2 and "at step" in one_error_line(err)
    assert (fit_out / "fit_point.gif").read_bytes() == gif and load_checkpoint(fit_out / "checkpoints" / "last.pt")


@pytest.mark.parametrize("entry", ["train_model", "fit_data"])
def test_locked_folder_stops_a_second_run(tmp_path, data, capsys, entry):
    """(b) A second run into a folder another run holds stops at once, naming the holder."""
    out = tmp_path / "busy"
    main, argv = (train_model.main, [*VOX, "--steps", "2"]) if entry == "train_model" else \
        (fit_data.main, ["--type", "vox", "--steps", "2"])
    with OutputLock(out, command="python -m a2_single_view.train_model --type vox"):
        code, err = fails(main, [*argv, "--output_dir", str(out), *data[0]], capsys)
    line = one_error_line(err)
    assert code == 2 and f"pid {os.getpid()}" in line and "is in use" in line and "--type vox" in line
    assert not (out / "checkpoints").exists()


@pytest.mark.parametrize("change", [["--type", "point"], ["--vox_width", "0.5"], ["--load_feat"]])
def test_resume_with_another_model_is_one_line(trained, data, capsys, change):
    """(c) Resuming a run with another --type or model size cannot load its weights: one line
    naming the checkpoint folder and what differs, and the run is left as it was."""
    out, before = trained
    argv = [*VOX, "--steps", "5", "--resume", "--output_dir", str(out), *data[0]]
    if "--load_feat" in change:
        argv.remove("--mean_shape")
    code, err = fails(train_model.main, argv + change, capsys)
    line = one_error_line(err)  # (before any feature is computed or encoder loaded)
    assert code == 2 and "cannot resume with a different configuration" in line and str(out / "checkpoints") in line
    key = {"--type": "type", "--vox_width": "vox_width", "--load_feat": "load_feat"}[change[0]]
    assert f"{key}: " in line
    assert snapshot(out)["step"] == before["step"]


def test_resume_continues_and_course_flags_work(trained, data):
    """The course's bare --load_checkpoint resumes from the output folder, like --resume."""
    out, before = trained
    m = train_model.main([*VOX, "--max_iter", "5", "--load_checkpoint", "--output_dir", str(out), *data[0]])
    assert m["steps"] == 5 and load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 4


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_eval_of_a_damaged_checkpoint_is_one_line(trained, tmp_path, data, capsys, damage):
    """(d) A damaged checkpoint file: one line naming it."""
    out, _ = trained
    bad = tmp_path / "bad.pt"
    raw = (out / "checkpoints" / "last.pt").read_bytes()
    bad.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else b"\x00garbage" * 64)
    code, err = fails(eval_model.main, ["--type", "vox", "--load_checkpoint", str(bad), "--output_dir",
                                        str(tmp_path / "eval"), *data[0]], capsys)
    line = one_error_line(err)
    assert code == 2 and f"cannot read checkpoint {bad}" in line
    # a readable file that is no train_model checkpoint
    torch.save({"weights": torch.zeros(2)}, bad)
    code, err = fails(eval_model.main, ["--type", "vox", "--load_checkpoint", str(bad), *data[0]], capsys)
    assert code == 2 and f"{bad}: expected a train_model checkpoint" in one_error_line(err)


def _first_train_chair(root, split):
    ref = read_split(split, "train", ("chair",))[0]
    assert ref.synset == SYNSETS["chair"]
    return ref


@pytest.mark.parametrize("damage", ["binvox_garbage", "binvox_truncated", "binvox_empty", "metadata", "obj",
                                    "split_file"])
def test_damaged_data_file_is_one_line_naming_it(tmp_path, data, capsys, damage):
    """(e) A truncated or garbage data file: one line naming the file (fit_data --type vox reads the
    first training chair's mesh, metadata and voxels)."""
    argv, root0, split0 = data
    root = tmp_path / "data"
    shutil.copytree(root0, root, ignore=shutil.ignore_patterns("feats.*"))
    split = root / split0.name
    ref = _first_train_chair(root, split)
    extra = []
    if damage.startswith("binvox"):
        path = binvox_path(root, ref.synset, ref.model_id)
        raw = path.read_bytes()
        if damage == "binvox_garbage":
            path.write_bytes(b"PK\x03\x04 not a voxel file")
            expect = "expected a binvox file, found first line"
        elif damage == "binvox_truncated":
            path.write_bytes(raw[: len(raw) // 2])
            expect = "expected a binvox file, found runs that cover"
        else:
            path.write_bytes(raw[: raw.index(b"data\n") + 5] + bytes([0, 255]) * 128 + bytes([0, 128]))
            expect = "expected a voxel grid with filled voxels, found an empty grid"
    elif damage == "metadata":
        path = rendering_dir(root, ref.synset, ref.model_id) / "rendering_metadata.txt"
        path.write_text("12.0 25.0 0 0.7 25\nnot numbers at all\n")
        expect = "expected lines of 5 numbers"
    elif damage == "obj":
        path = obj_path(root, ref.synset, ref.model_id)
        path.write_bytes(path.read_bytes()[:40])
        expect = ""
    else:
        path = tmp_path / "split.json"
        path.write_text(split.read_text()[:100])
        extra = ["--split_file", str(path)]
        expect = "expected JSON"
    argv = [a if a != str(root0) else str(root) for a in argv]
    code, err = fails(fit_data.main, ["--type", "vox", "--steps", "2", "--output_dir", str(tmp_path / "fit"),
                                      *argv, *extra], capsys)
    line = one_error_line(err)
    assert code == 2 and str(path) in line and expect in line


def test_bad_flag_values_name_the_flag(data, capsys, tmp_path):
    """Values that cannot work are refused before anything runs, naming the flag."""
    for argv, flag in ((["--steps", "0"], "--steps"), (["--lr", "nan"], "--lr"), (["--batch_size", "1"], "--batch_size"),
                       (["--classes", "teapot"], "--classes")):
        code, err = fails(train_model.main, [*VOX, *argv, "--output_dir", str(tmp_path / "x"), *data[0]], capsys)
        assert code == 2 and flag in err[-1], err


def test_quick_preset_gives_way_to_the_users_flags():
    """--quick sets the per-type sizes unless the flag is given (any spelling of it)."""
    args = train_model.finish_args(train_model.build_parser().parse_args(["--type", "mesh", "--quick", "--max_iter", "7"]))
    assert (args.steps, args.lr, args.ico_level, args.batch_size) == (7, 1e-3, 3, 8)
    assert args.schedule == "cosine" and args.data_preset == "quick" and args.baseline and args.baseline_steps == 200
    args = train_model.finish_args(train_model.build_parser().parse_args(["--quick", "--mean_shape", "--preset", "tiny"]))
    assert args.data_preset == "tiny" and not args.baseline and args.steps == 150
    args = train_model.finish_args(train_model.build_parser().parse_args(["--preset", "quick"]))
    assert args.steps == 10000 and args.schedule == "constant"  # the data preset is not the --quick preset
    args = eval_model.finish_args(eval_model.build_parser().parse_args(["--quick", "--n_points", "10", "--vis_count", "1"]))
    assert (args.num_points, args.vis_count, args.num_frames) == (10, 1, 24)


@pytest.mark.parametrize("study", [study_wsmooth, study_classes])
def test_study_stops_when_a_training_run_is_interrupted(tmp_path, monkeypatch, capsys, study):
    """A run stopped by Ctrl-C / SIGTERM returns with its checkpoint saved: the study must end
    there (exit status 130, --resume continues) instead of evaluating a half-trained model."""
    runs, evals = [], []
    monkeypatch.setattr(study.train_model, "main",
                        lambda argv: runs.append(argv) or {"interrupted": True, "checkpoint": str(tmp_path / "x.pt")})
    monkeypatch.setattr(study.eval_model, "run", lambda argv: evals.append(argv))
    argv = ["--steps", "3", "--output_dir", str(tmp_path / "study"), "--device", "cpu"]
    with pytest.raises(SystemExit) as e:
        run_cli(study.main, argv)
    assert e.value.code == 130 and len(runs) == 1 and evals == []
    assert "interrupted; --resume continues the study" in capsys.readouterr().err
