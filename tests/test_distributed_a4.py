"""A4 under torchrun: Gaussian training data-parallel over the views of a step, and the DreamFusion
(SDS) NeRF with every process drawing its own cameras; 2 CPU processes (gloo) in a subprocess.

Gaussians: the one-process reference runs in this process with the same global batch (4 views per
step) and the same densification (every visible Gaussian cloned or split at steps 3 and 7: the
count goes 150 -> 300 -> 600). The two processes render two views each and sum their gradients and
densification statistics, so they differ from one process only by float32 rounding (per-view
gradients added in another order), which Adam carries along: measured on this machine, the
largest relative difference of the L1 / SSIM curves over 12 steps is 8e-6 and the test PSNR
differs by 1e-3 dB. The tests allow 1e-4 relative and 0.01 dB. A rank that stepped on its own two
views (gradients not all-reduced) would run another optimisation: one process with 2 views per
step instead of 4 leaves the 4-view curve by 3 % at step 1 and by 2 to 12 % at every later step.

DreamFusion: the ranks draw different cameras, shading and noise, so the effective batch is one
camera per process and the curve does not follow the one-process run (rank 0 draws as one process
does, the loss logged is the ranks' mean); the test checks that the job completes, that rank 0
alone writes, that the loss is finite, that a resumed job continues from the checkpoint and that
the TensorBoard event file holds the fixed-camera validation render.
"""

import json
import math
import shutil
from pathlib import Path

import pytest

from l3d import distributed
from l3d.run import LossLog, load_checkpoint, nonfinite_tensors, read_metrics

from test_distributed import assert_curves_close, files, torchrun

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

GAUSS = "a4_gaussians_diffusion.gaussians.train"


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    from a4_gaussians_diffusion.gaussians.data import BuiltinSceneConfig, make_builtin_scene

    cfg = BuiltinSceneConfig(num_views=8, image_size=(16, 20), num_points=200, focal_ndc=2.0)
    return make_builtin_scene(tmp_path_factory.mktemp("scene") / "cow", cfg, force_synthetic=True)


def gauss_flags(scene: Path, steps: int = 12):
    """12 steps of 4 views from 150 random anisotropic Gaussians; densification (threshold 0: every
    Gaussian a view saw) after steps 3 and 7; checkpoints after steps 3, 7 and 11."""
    return ["--data_path", str(scene), "--quick", "--harder", "--num_random", "150", "--lr_schedule", "none",
            "--densify_grad", "0", "--densify_from", "3", "--densify_every", "4", "--densify_until", "9",
            "--steps", str(steps), "--batch_size", "4", "--save_every", "4", "--viz_every", "100",
            "--min_psnr", "0", "--min_ssim", "0", "--device", "cpu", "--no_tensorboard"]


@pytest.fixture(scope="module")
def gauss_one(scene_dir, tmp_path_factory):
    """The one-process reference run (in this process)."""
    from a4_gaussians_diffusion.gaussians import train

    out = tmp_path_factory.mktemp("gauss") / "one"
    train.main(gauss_flags(scene_dir) + ["--output_dir", str(out)])
    return out


def test_gaussians_two_processes_follow_one(scene_dir, gauss_one, tmp_path):
    two = tmp_path / "two"
    res = torchrun(GAUSS, gauss_flags(scene_dir) + ["--output_dir", two], tmp_path / "cwd")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = assert_curves_close(gauss_one, two, "loss", 1e-4)
    assert_curves_close(gauss_one, two, "loss_ssim", 1e-4)
    assert len(rows) == 12 and rows[-1]["loss"] < 0.7 * rows[0]["loss"]  # it learns
    # densified twice, to the same counts in both runs
    assert [r["num_gaussians"] for r in rows] == [150] * 3 + [300] * 4 + [600] * 5
    assert [r["num_gaussians"] for r in LossLog(two / "losses.csv").rows()] == [r["num_gaussians"] for r in rows]
    m1, m2 = read_metrics(gauss_one), read_metrics(two)
    assert m2["num_gaussians"] == m1["num_gaussians"] == 600
    assert abs(m2["psnr"] - m1["psnr"]) < 0.01 and m2["psnr"] > 12.0
    assert (m1["processes"], m2["processes"], m2["batch_size"]) == (1, 2, 4) and m2["train_views_per_s"] > 0
    # rank 0 alone wrote: the same files as one process, nothing in the other rank's working folder
    assert files(two) == files(gauss_one) and not any((tmp_path / "cwd").iterdir())
    assert res.stdout.count("test PSNR") == 1  # one rank prints


def test_gaussians_dead_rank_stops_the_job_with_the_checkpoint_intact(scene_dir, tmp_path):
    out = tmp_path / "run"
    res = torchrun(GAUSS, gauss_flags(scene_dir) + ["--output_dir", out], tmp_path / "cwd",
                   env_extra={distributed.KILL_ENV: "1:9"})
    assert res.returncode != 0
    assert "rank 0 of 2: lost contact with another process of the job" in res.stderr
    assert "the last checkpoint is intact and --resume continues from it" in res.stderr
    state = load_checkpoint(out / "checkpoints" / "last.pt")  # written after step 7
    assert state["step"] == 7 and not nonfinite_tensors(state) and state["model"]["params"]["means"].shape[0] == 600
    assert not (out / "metrics.json").exists()


def test_gaussians_two_processes_resume_a_one_process_checkpoint(scene_dir, gauss_one, tmp_path):
    out = tmp_path / "resumed"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copy(gauss_one / "checkpoints" / "ckpt_7.pt", out / "checkpoints" / "last.pt")
    res = torchrun(GAUSS, gauss_flags(scene_dir) + ["--output_dir", out, "--resume"], tmp_path / "cwd")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resumed from step 7 (600 Gaussians)" in res.stdout
    rows = LossLog(out / "losses.csv").rows()
    assert [r["step"] for r in rows] == [8, 9, 10, 11]  # continues after the saved step
    ref = {r["step"]: r for r in LossLog(gauss_one / "losses.csv").rows()}
    for r in rows:  # and continues as the one-process run did
        assert math.isclose(r["loss"], ref[r["step"]]["loss"], rel_tol=1e-4), (r, ref[r["step"]])
    m = read_metrics(out)
    assert m["iterations"] == 12 and m["processes"] == 2
    assert abs(m["psnr"] - read_metrics(gauss_one)["psnr"]) < 0.01
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 11
