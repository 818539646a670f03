"""TensorBoard logs of :class:`l3d.run.LossLog`, read back with TensorBoard's own reader (and the A4
Gaussian trainer's use of them and of the live viewer hook)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from l3d import run as runmod
from l3d.cli import script_parser
from l3d.run import LOSS_LOG, TENSORBOARD_DIR, LossLog, RunDir

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _read(folder: Path):
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def _scalars(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _f32(x):
    return float(np.float32(x))


@pytest.fixture(autouse=True)
def _default_tensorboard():
    runmod.set_tensorboard(None)
    yield
    runmod.set_tensorboard(None)


def test_scalars_read_back_equal_what_the_log_got(tmp_path, monkeypatch):
    monkeypatch.delenv("L3D_TENSORBOARD", raising=False)
    rng = np.random.default_rng(0)
    values = rng.uniform(0.01, 3.0, size=12)
    log = LossLog(tmp_path / LOSS_LOG)
    for i, v in enumerate(values):
        log.append(i, {"loss": float(v), "loss/rgb": float(v) / 2, "num_gaussians": 100 + i, "note": "text"})
    log.close()
    acc = _read(tmp_path / TENSORBOARD_DIR)
    tags = set(acc.Tags()["scalars"])
    assert {"loss", "loss/rgb", "num_gaussians", "system/step_time_s", "system/cpu_rss_mb"} <= tags
    assert "note" not in tags  # text cells stay in the CSV only
    assert _scalars(acc, "loss") == [(i, _f32(v)) for i, v in enumerate(values)]
    assert _scalars(acc, "loss/rgb") == [(i, _f32(v / 2)) for i, v in enumerate(values)]
    assert _scalars(acc, "num_gaussians") == [(i, 100.0 + i) for i in range(12)]
    # the CSV holds the same numbers
    assert [r["loss"] for r in log.rows()] == pytest.approx(values, rel=1e-12)
    times = [v for _, v in _scalars(acc, "system/step_time_s")]
    assert len(times) == 11 and all(0 <= t < 5 for t in times)
    rss = [v for _, v in _scalars(acc, "system/cpu_rss_mb")]
    assert all(10 < r < 1e6 for r in rss)  # this process holds at least numpy: tens of MiB


def test_resume_rewinds_with_purge_step(tmp_path):
    log = LossLog(tmp_path / LOSS_LOG, tensorboard=True)
    for i in range(10):
        log.append(i, {"loss": 10.0 + i})
    log.close()
    # a resumed run from the checkpoint of step 4 re-runs steps 5.. with other values
    log2 = LossLog(tmp_path / LOSS_LOG, append=True, tensorboard=True)
    log2.rewind(4)
    for i in range(5, 8):
        log2.append(i, {"loss": 100.0 + i})
    log2.close()
    acc = _read(tmp_path / TENSORBOARD_DIR)
    want = [(i, 10.0 + i) for i in range(5)] + [(i, 100.0 + i) for i in range(5, 8)]
    assert _scalars(acc, "loss") == want
    assert [(r["step"], r["loss"]) for r in log2.rows()] == want
    # a fresh log starts a fresh TensorBoard folder too
    log3 = LossLog(tmp_path / LOSS_LOG, append=False, tensorboard=True)
    assert not (tmp_path / TENSORBOARD_DIR).exists()
    log3.append(0, {"loss": 1.5})
    log3.close()
    assert _scalars(_read(tmp_path / TENSORBOARD_DIR), "loss") == [(0, 1.5)]


def test_run_dir_commit_moves_event_files_whole(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("previous results")
    with RunDir(out, fresh=True) as run:
        log = run.track(LossLog(run.path(LOSS_LOG), tensorboard=True))
        log.append(0, {"loss": 3.0})
        log.append(1, {"loss": 2.0})
        assert not (out / TENSORBOARD_DIR).exists()  # still pending
        run.commit()
        log.append(2, {"loss": 1.0})
        log.image(2, "val/view0", np.linspace(0, 1, 8 * 6 * 3).reshape(8, 6, 3))
    assert not list(out.glob(".pending-*"))
    acc = _read(out / TENSORBOARD_DIR)
    assert _scalars(acc, "loss") == [(0, 3.0), (1, 2.0), (2, 1.0)]
    img = acc.Images("val/view0")
    assert [(e.step, e.width, e.height) for e in img] == [(2, 6, 8)]
    assert (out / ".previous" / "old.txt").read_text() == "previous results"


def test_failed_fresh_run_leaves_no_event_files(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("previous results")
    with pytest.raises(RuntimeError):
        with RunDir(out, fresh=True) as run:
            log = run.track(LossLog(run.path(LOSS_LOG), tensorboard=True))
            log.append(0, {"loss": 3.0})
            raise RuntimeError("diverged")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["old.txt"]
    assert not list(out.glob(".pending-*"))


def test_no_tensorboard_flag_and_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("L3D_TENSORBOARD", raising=False)
    ap = script_parser("doc", "x")
    assert "--no_tensorboard" in ap.format_help()
    ap.parse_args(["--no_tensorboard"])
    log = LossLog(tmp_path / "a" / LOSS_LOG)
    log.append(0, {"loss": 1.0})
    log.close()
    assert (tmp_path / "a" / LOSS_LOG).is_file() and not (tmp_path / "a" / TENSORBOARD_DIR).exists()
    ap.parse_args([])  # a later script without the flag logs again
    log = LossLog(tmp_path / "b" / LOSS_LOG)
    log.append(0, {"loss": 1.0})
    log.close()
    assert (tmp_path / "b" / TENSORBOARD_DIR).is_dir()
    monkeypatch.setenv("L3D_TENSORBOARD", "0")
    ap.parse_args([])
    log = LossLog(tmp_path / "c" / LOSS_LOG)
    log.append(0, {"loss": 1.0})
    assert not (tmp_path / "c" / TENSORBOARD_DIR).exists()


def test_run_module_imports_neither_torch_nor_tensorboard():
    code = "import sys, l3d.run; print(sorted(m for m in ('torch', 'tensorboard') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]"


def test_two_runs_write_the_same_file_names(tmp_path):
    """Event files are numbered, not named by time, host and pid: runs that log alike look alike."""
    names = []
    for run in ("one", "two"):
        log = LossLog(tmp_path / run / LOSS_LOG, tensorboard=True)
        log.append(0, {"loss": 1.0})
        log.rewind(0)
        log.append(1, {"loss": 0.5})
        log.close()
        names.append(sorted(p.name for p in (tmp_path / run / TENSORBOARD_DIR).iterdir()))
    assert names[0] == names[1] == ["events.out.tfevents.0000000001.l3d", "events.out.tfevents.0000000002.l3d"]
    assert _scalars(_read(tmp_path / "one" / TENSORBOARD_DIR), "loss") == [(0, 1.0), (1, 0.5)]


def test_gaussian_trainer_calls_the_viewer_and_logs_a_validation_image(tmp_path):
    """The A4 trainer offers the viewer every step, the viewer's render has the size asked for and
    matches the trainer's own render of that camera, and TensorBoard gets the validation view."""
    import torch

    from a4_gaussians_diffusion.gaussians.data import BuiltinSceneConfig, load_scene, make_builtin_scene
    from a4_gaussians_diffusion.gaussians.trainer import TrainConfig, raster_settings, train

    scene = load_scene(make_builtin_scene(tmp_path / "cow", BuiltinSceneConfig(
        num_views=8, image_size=(16, 20), num_points=200, focal_ndc=2.0), force_synthetic=True))

    class Recorder:  # a TrainingViewer stand-in that renders the first training camera at 12x10
        def __init__(self):
            self.steps, self.images = [], []

        def update(self, step, render_fn, scalars=None):
            self.steps.append(step)
            if step == 3:
                self.images.append(render_fn(scene.cameras[scene.train_idx[0]], (12, 10)))
            return step == 3

    rec = Recorder()
    cfg = TrainConfig(steps=4, viz_every=2, save_every=0)
    result = train(cfg, scene, tmp_path / "run", "cpu", log=lambda s: None, viewer=rec)
    assert rec.steps == [0, 1, 2, 3]
    (img,) = rec.images
    assert tuple(img.shape) == (12, 10, 3) and 0 <= float(img.min()) and float(img.max()) <= 1
    import dataclasses

    settings = dataclasses.replace(raster_settings(cfg, scene), image_size=(12, 10))
    with torch.no_grad():
        ref = result.model.render(scene.cameras[scene.train_idx[0]], settings).image.clamp(0, 1)
    assert torch.allclose(img, ref, atol=1e-6)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    (tag,) = acc.Tags()["images"]
    assert [(e.step, e.width, e.height) for e in acc.Images(tag)] == [(0, 40, 16), (2, 40, 16), (3, 40, 16)]
    assert [e.step for e in acc.Scalars("loss")] == [0, 1, 2, 3]
