"""A4 under torchrun: Gaussian training data-parallel over the views of a step, and the DreamFusion
(SDS) NeRF with every process drawing its own cameras; 2 CPU processes (gloo) in a subprocess.

Gaussians: the one-process reference runs in this process with the same global batch (4 views per
step) and the same densification after steps 3 and 7 (the Gaussians whose mean screen-space
gradient over the views that saw them exceeds 1e-4 are cloned or split: 150 -> 233 -> 376). The
two processes render two views each and sum their gradients and densification statistics, so they
differ from one process only by float32 rounding (per-view gradients added in another order),
which Adam carries along: measured on this machine, the largest relative difference over 12 steps
is 2.3e-7 on the L1 curve and 1.8e-6 on the 1 - SSIM curve, and the test PSNR differs by 1e-4 dB;
with the densification threshold at 0 instead (every Gaussian a view saw) 4e-6, 1.8e-5 and 4e-4 dB.
The tests allow 1e-4 relative on both curves and 0.01 dB. A rank that stepped on its own two views
(gradients and statistics not summed) would run another optimisation: one process with 2 views per
step instead of 4 leaves the 4-view L1 curve by 0.16 to 13 % at every step after the first, and
its second densification keeps 371 Gaussians instead of 376.

DreamFusion: the ranks draw different cameras, shading and noise, so the effective batch is one
camera per process and the curve does not follow the one-process run (rank 0 draws as one process
does, the loss logged is the ranks' mean); the test checks that the job completes, that rank 0
alone writes, that the loss is finite, that the TensorBoard event file holds the fixed-camera
validation render and that one process resumes the two processes' checkpoint (the Gaussian tests
resume the other way round).
"""

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
    """12 steps of 4 views from 150 random anisotropic Gaussians; densification after steps 3 and 7;
    checkpoints after steps 3, 7 and 11."""
    return ["--data_path", str(scene), "--quick", "--harder", "--num_random", "150", "--lr_schedule", "none",
            "--densify_grad", "0.0001", "--densify_from", "3", "--densify_every", "4", "--densify_until", "9",
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
    assert len(rows) == 12 and rows[-1]["loss"] < 0.8 * rows[0]["loss"]  # it learns
    # densified twice, to the same counts in both runs
    assert [r["num_gaussians"] for r in rows] == [150] * 3 + [233] * 4 + [376] * 5
    assert [r["num_gaussians"] for r in LossLog(two / "losses.csv").rows()] == [r["num_gaussians"] for r in rows]
    m1, m2 = read_metrics(gauss_one), read_metrics(two)
    assert m2["num_gaussians"] == m1["num_gaussians"] == 376
    assert abs(m2["psnr"] - m1["psnr"]) < 0.01 and m2["psnr"] > 12.0
    assert (m1["processes"], m2["processes"], m2["batch_size"]) == (1, 2, 4) and m2["train_views_per_s"] > 0
    # rank 0 alone wrote: the same files as one process, nothing in the other rank's working folder
    assert files(two) == files(gauss_one) and not any((tmp_path / "cwd").iterdir())
    assert res.stdout.count("test PSNR") == 1  # one rank prints


def test_gaussians_two_processes_resume_a_one_process_checkpoint_and_a_dead_rank_stops_them(
        scene_dir, gauss_one, tmp_path):
    from a4_gaussians_diffusion.gaussians import train

    out = tmp_path / "resumed"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copy(gauss_one / "checkpoints" / "ckpt_7.pt", out / "checkpoints" / "last.pt")
    ref = {r["step"]: r for r in LossLog(gauss_one / "losses.csv").rows()}
    # two processes resume the one-process checkpoint after step 7; rank 1 dies at step 9
    res = torchrun(GAUSS, gauss_flags(scene_dir) + ["--output_dir", out, "--resume"], tmp_path / "cwd",
                   env_extra={distributed.KILL_ENV: "1:9"})
    assert res.returncode != 0
    assert "resumed from step 7 (376 Gaussians)" in res.stdout
    assert "rank 0 of 2: lost contact with another process of the job" in res.stderr
    assert "the last checkpoint is intact and --resume continues from it" in res.stderr
    rows = LossLog(out / "losses.csv").rows()
    assert [r["step"] for r in rows] == [8]  # continued after the saved step, as one process did
    assert math.isclose(rows[0]["loss"], ref[8]["loss"], rel_tol=1e-4), (rows[0], ref[8])
    state = load_checkpoint(out / "checkpoints" / "last.pt")  # still the one after step 7, whole
    assert state["step"] == 7 and not nonfinite_tensors(state) and state["model"]["params"]["means"].shape[0] == 376
    assert not (out / "metrics.json").exists() and not any((tmp_path / "cwd").iterdir())
    # one process finishes the job from that checkpoint, as the uninterrupted run did
    train.main(gauss_flags(scene_dir) + ["--output_dir", str(out), "--resume"])
    rows = LossLog(out / "losses.csv").rows()
    assert [r["step"] for r in rows] == [8, 9, 10, 11]
    for r in rows:
        assert math.isclose(r["loss"], ref[r["step"]]["loss"], rel_tol=1e-4), (r, ref[r["step"]])
    m = read_metrics(out)
    assert (m["iterations"], m["num_gaussians"]) == (12, 376)
    assert abs(m["psnr"] - read_metrics(gauss_one)["psnr"]) < 0.01
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 11


# ----------------------------------------------------------------------------------------------
# DreamFusion: SDS on a NeRF with the tiny random pipeline, every rank drawing its own cameras
# ----------------------------------------------------------------------------------------------
NERF = "a4_gaussians_diffusion.diffusion.nerf_optimization"


def nerf_flags(tiny: Path, out: Path, steps: int):
    return ["--quick", "--device", "cpu", "--model", str(tiny), "--output_dir", str(out), "--iters", str(steps),
            "--save_every", "2", "--snapshot_every", "2", "--video_frames", "4", "--video_size", "16",
            "--probe_every", "1000"]


def test_dreamfusion_two_processes_write_once_and_resume(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from a4_gaussians_diffusion.diffusion import nerf_optimization
    from a4_gaussians_diffusion.diffusion.tiny import build_tiny_pipeline

    tiny = build_tiny_pipeline(tmp_path / "tiny")
    runs = tmp_path / "runs"
    res = torchrun(NERF, nerf_flags(tiny, runs, 3), tmp_path / "cwd")
    assert res.returncode == 0, res.stderr[-2000:]
    out = runs / "a_standing_corgi_dog"
    rows = LossLog(out / "losses.csv").rows()
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(math.isfinite(r[k]) for r in rows for k in ("loss/total", "loss/sds", "loss/entropy", "loss/orient"))
    m = read_metrics(out)
    assert (m["processes"], m["cameras_per_step"], m["iterations"]) == (2, 2, 3) and math.isfinite(m["final_total"])
    # rank 0 alone wrote: the one-process file set, each file reported once, nothing in the other rank's folder
    expected = {".lock", "TINY_PIPELINE.md", "args.json", "command.txt", "metrics.json", "losses.csv", "losses.png",
                "rgb.png", "depth.png", "checkpoints/ckpt_1.pt", "checkpoints/ckpt_2.pt", "checkpoints/last.pt",
                "iters/iter_0002_lambertian.png", "iters/iter_0003_lambertian.png",
                "tensorboard/events.out.tfevents.0000000001.l3d",
                *(f"videos/{k}.{e}" for k in ("rgb", "depth") for e in ("mp4", "webm"))}
    assert files(out) == expected and not any((tmp_path / "cwd").iterdir())
    assert res.stdout.count("pipeline: tiny-random") == 1 and res.stdout.count("videos/rgb.mp4\n") == 1
    # the fixed-camera validation render at the snapshot steps (after steps 1 and 2), video-sized
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    images = acc.Images("val/orbit_view")
    assert [e.step for e in images] == [1, 2] and (images[0].width, images[0].height) == (16, 16)
    assert len(acc.Scalars("loss/total")) == 3
    # one process resumes the two processes' checkpoint (after step 2) and continues with step 3
    first = rows
    capsys.readouterr()
    assert nerf_optimization.main(nerf_flags(tiny, runs, 5) + ["--resume"]) == out
    assert "resumed from step 2" in capsys.readouterr().out
    rows = LossLog(out / "losses.csv").rows()
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["loss/total"] for r in rows[:3]] == [r["loss/total"] for r in first]  # the logged steps kept
    assert all(math.isfinite(r["loss/total"]) for r in rows)
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["step"] == 4 and not nonfinite_tensors(state)
    m = read_metrics(out)
    assert (m["iterations"], m["processes"]) == (5, 1)
