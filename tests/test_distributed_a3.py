"""A3 NeRF and VolSDF training under torchrun (2 CPU processes, gloo) against the same run in one process.

Each two-process run goes through ``python -m torch.distributed.run --nproc_per_node=2``, as a
user starts it; the one-process reference runs in this process. Both draw the same global ray
batches (255 rays: unequal shares of 128 and 127 rays, and 51 + 50 eikonal points, so a wrongly
weighted loss would show) and the sampler's jitter is off (``sampler.perturb=false``; with it on
each rank jitters its own rays), so the runs differ only by float32 rounding. Measured: NeRF
losses within 7e-8 relative, VolSDF losses within 1.6e-6 (its inter term is ~1e-18 and carries
the largest relative rounding), final weights within 3e-7 while the last epoch moved them by
6e-3, test PSNR equal. The tests allow 1e-5 relative on the losses, 1e-5 on the weights and
1e-3 dB: room for other machines' summation orders, while a change as small as training on the
scene's 8-bit PNG cache instead of its float renders moves the first epoch's loss by 3e-4.
"""

import json
import math
import shutil
from pathlib import Path

import pytest

from l3d import distributed
from l3d.run import LossLog, load_checkpoint, nonfinite_tensors
from test_distributed import assert_curves_close, files, torchrun

RTOL = 1e-5
SCENE = {"image_size": 32, "n_train": 20, "n_val": 2, "n_test": 2, "supersample": 2}


@pytest.fixture(scope="module")
def scene_cache(tmp_path_factory):
    """The built-in scene rendered once and cached (the runs read the same 8-bit images)."""
    from a3_volume_surface.data import load_nerf_scene

    cache = tmp_path_factory.mktemp("a3_dist_scene")
    s = SCENE["image_size"]
    load_nerf_scene("lego", (s, s), "builtin", str(cache), quiet=True, n_train=SCENE["n_train"],
                    n_val=SCENE["n_val"], n_test=SCENE["n_test"], supersample=SCENE["supersample"])
    return cache


def common(cache: Path, epochs: int):
    s = SCENE["image_size"]
    return ["quick=true", "device=cpu", "data.source=builtin", f"data.cache_dir={cache}", f"data.image_size=[{s},{s}]",
            f"data.n_train_views={SCENE['n_train']}", f"data.n_val_views={SCENE['n_val']}",
            f"data.n_test_views={SCENE['n_test']}", f"data.supersample={SCENE['supersample']}",
            f"training.num_epochs={epochs}", "training.steps_per_epoch=3", "training.batch_size=255",
            "training.checkpoint_interval=1", "sampler.perturb=false", "gif.n_poses=2", "tensorboard=false"]


def nerf_flags(cache: Path, epochs: int = 3):
    return ["--config-name=nerf_lego", *common(cache, epochs), "sampler.n_pts_per_ray=24"]


def volsdf_flags(cache: Path, epochs: int = 2):
    return ["--config-name=volsdf_surface", *common(cache, epochs), "training.eikonal_points=101",
            "training.pretrain_iters=5", "sampler.n_pts_per_ray=24", "geometry.grid_size=20"]


def metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


@pytest.fixture(scope="module")
def nerf_one(scene_cache, tmp_path_factory):
    """The one-process NeRF reference run (3 epochs of 3 steps)."""
    from a3_volume_surface import volume_rendering_main

    out = tmp_path_factory.mktemp("a3_dist") / "one"
    volume_rendering_main.main(nerf_flags(scene_cache) + [f"output_dir={out}"])
    return out


def test_nerf_two_processes_follow_one_and_only_rank_0_writes(tmp_path, scene_cache, nerf_one, one_thread):
    two = tmp_path / "two"
    res = torchrun("a3_volume_surface.volume_rendering_main", nerf_flags(scene_cache) + [f"output_dir={two}"],
                   tmp_path / "cwd")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = assert_curves_close(nerf_one, two, "loss", RTOL)
    assert len(rows) == 3
    # the weights agree, and they moved far more in the last epoch than they differ
    last = [load_checkpoint(f / "checkpoints" / "last.pt")["model"] for f in (nerf_one, two)]
    before = load_checkpoint(two / "checkpoints" / "ckpt_1.pt")["model"]
    assert last[0].keys() == last[1].keys() == before.keys()  # the plain model's keys
    diff = max(float((last[0][k] - last[1][k]).abs().max()) for k in before if before[k].is_floating_point())
    moved = max(float((last[1][k] - before[k]).abs().max()) for k in before if before[k].is_floating_point())
    assert diff < 1e-5 and moved > 1e-3, (diff, moved)
    m1, m2 = metrics(nerf_one), metrics(two)
    assert m1["processes"] == 1 and m2["processes"] == 2 and m2["steps"] == m1["steps"] == 9
    assert abs(m2["test_psnr"] - m1["test_psnr"]) < 1e-3 and m2["test_psnr"] > 8
    assert math.isclose(m2["final_train_loss"], m1["final_train_loss"], rel_tol=RTOL)
    # rank 0 alone wrote: the same files as one process, nothing in the other rank's working folder
    assert files(two) == files(nerf_one) and not any((tmp_path / "cwd").iterdir())
    assert res.stdout.count("test_psnr: ") == 1  # one rank prints the metrics


def test_nerf_resumes_a_one_process_checkpoint_on_two(tmp_path, scene_cache, nerf_one):
    out = tmp_path / "resumed"
    shutil.copytree(nerf_one, out)
    first = LossLog(out / "losses.csv").rows()
    res = torchrun("a3_volume_surface.volume_rendering_main",
                   nerf_flags(scene_cache, epochs=5) + [f"output_dir={out}", "training.resume=true"], tmp_path / "cwd")
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("resumed from the checkpoint of epoch 2") == 1  # printed by rank 0 only
    m = metrics(out)
    assert m["start_epoch"] == 3 and m["epochs"] == 5 and m["steps"] == 6 and m["processes"] == 2
    rows = LossLog(out / "losses.csv").rows()
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4] and rows[:3] == first
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 4


def test_dead_rank_stops_the_job_and_one_process_resumes(tmp_path, scene_cache, one_thread):
    from a3_volume_surface import volume_rendering_main

    out = tmp_path / "run"
    flags = nerf_flags(scene_cache, epochs=4) + [f"output_dir={out}"]
    # rank 1 dies as epoch 2 starts, after the checkpoint of epoch 1
    res = torchrun("a3_volume_surface.volume_rendering_main", flags, tmp_path / "cwd",
                   env_extra={distributed.KILL_ENV: "1:2"})
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "rank 0 of 2: lost contact with another process of the job" in errors[0], errors
    assert "the last checkpoint is intact and --resume continues from it" in errors[0]
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["step"] == 1 and not nonfinite_tensors(state)
    assert [r["step"] for r in LossLog(out / "losses.csv").rows()] == [0, 1]
    volume_rendering_main.main(flags + ["training.resume=true"])  # one process continues the two's checkpoint
    m = metrics(out)
    assert m["start_epoch"] == 2 and m["epochs"] == 4 and m["processes"] == 1
    assert [r["step"] for r in LossLog(out / "losses.csv").rows()] == [0, 1, 2, 3]


def test_volsdf_two_processes_follow_one(tmp_path, scene_cache, one_thread):
    from a3_volume_surface import surface_rendering_main

    one, two = tmp_path / "one", tmp_path / "two"
    surface_rendering_main.main(volsdf_flags(scene_cache) + [f"output_dir={one}"])
    res = torchrun("a3_volume_surface.surface_rendering_main", volsdf_flags(scene_cache) + [f"output_dir={two}"],
                   tmp_path / "cwd")
    assert res.returncode == 0, res.stderr[-2000:]
    for column in ("loss", "loss/color", "loss/inter", "loss/eikonal"):  # colour rays 128 + 127, points 51 + 50
        assert_curves_close(one, two, column, RTOL)
    m1, m2 = metrics(one), metrics(two)
    assert abs(m2["test_psnr"] - m1["test_psnr"]) < 1e-3 and m2["processes"] == 2
    assert files(two) == files(one) and not any((tmp_path / "cwd").iterdir())


def test_other_modes_refuse_several_processes(tmp_path, monkeypatch, capsys):
    """Render and the box / point-cloud fits run in one process; under torchrun they stop with one line."""
    import contextlib

    from a3_volume_surface import volume_rendering_main

    @contextlib.contextmanager
    def two_processes(device="auto"):  # rank 0 of 2, without starting a process group
        yield distributed.Dist(rank=0, world_size=2)

    monkeypatch.setattr(distributed, "session", two_processes)
    out = tmp_path / "box"
    with pytest.raises(SystemExit) as exc:
        volume_rendering_main.main(["--config-name=train_box", "quick=true", "device=cpu", f"output_dir={out}"])
    assert exc.value.code == 2 and not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: type=train: runs in one process; under torchrun only train_nerf and train_images train "
                   "data-parallel (start it with python -m a3_volume_surface.volume_rendering_main)"]
