"""Nothing lost, nothing silent: the Gaussian scripts under bad input and faults.

Each test reproduces a failure of the earlier scripts: a diverging run that wrote a NaN .ply
and exited 0; a NaN or empty .ply rendered as a blank GIF; two runs mixing their files in one
folder; a truncated JPEG or a resume into another model ending in a traceback; densification
inline in the loop (its statistics lost on resume); --quick implemented by scanning argv.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from a4_gaussians_diffusion.gaussians import render as render_cli
from a4_gaussians_diffusion.gaussians import train as train_cli
from a4_gaussians_diffusion.gaussians.data import BuiltinSceneConfig, load_scene, make_builtin_scene
from a4_gaussians_diffusion.gaussians.model import Gaussians
from a4_gaussians_diffusion.gaussians.ply import PROPERTY_NAMES, load_gaussians_ply, save_gaussians_ply
from a4_gaussians_diffusion.gaussians.strategy import DensifySettings, DensifyStrategy
from l3d.cli import run_cli
from l3d.errors import UserError
from l3d.run import RunDir, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--quick", "--viz_every", "100", "--device", "cpu"]
BIG_LR = [f"--lr_{n}" for n in ("means", "scales", "opacities", "colours")]


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    cfg = BuiltinSceneConfig(num_views=8, image_size=(16, 20), num_points=200, focal_ndc=2.0)
    return make_builtin_scene(tmp_path_factory.mktemp("scene") / "cow", cfg, force_synthetic=True)


def one_line_error(capsys, main, argv):
    """Run ``main`` as an entry point; returns the single stderr line of its exit-2 error."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run_cli(main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


# ---------------------------------------------------------------------------------------------
# 1. a diverging run: exit 2, one line with the step and the parameter group; old results kept
# ---------------------------------------------------------------------------------------------
def test_diverging_learning_rates_stop_and_keep_the_previous_results(scene_dir, tmp_path, capsys):
    out = tmp_path / "run"
    train_cli.main(["--data_path", str(scene_dir), "--steps", "4", "--output_dir", str(out), *TINY])
    before = snapshot(out)
    assert {"gaussians.ply", "metrics.json", "checkpoints/last.pt"} <= set(before)
    big = [a for flag in BIG_LR for a in (flag, "1e6")]
    line = one_line_error(capsys, train_cli.main, ["--data_path", str(scene_dir), "--steps", "40",
                                                   "--output_dir", str(out), *TINY, *big])
    assert "non-finite values at step" in line and "(--lr_" in line and " 1e+06)" in line, line
    assert line.split("parameter ")[1].split()[0] in ("means", "log_scales", "opacity_logits", "colours"), line
    assert snapshot(out) == before  # the previous run's files, byte for byte
    assert not list(out.glob(".pending-*"))


def test_a_loss_above_1e12_stops_the_run(scene_dir, tmp_path, capsys, monkeypatch):
    from a4_gaussians_diffusion.gaussians import trainer

    real_l1, calls = trainer.l1, []

    def exploding(pred, target):
        calls.append(1)
        return real_l1(pred, target) * (6.6e28 if len(calls) == 3 else 1.0)

    monkeypatch.setattr(trainer, "l1", exploding)
    out = tmp_path / "run"
    line = one_line_error(capsys, train_cli.main, ["--data_path", str(scene_dir), "--steps", "5",
                                                   "--output_dir", str(out), *TINY])
    assert "loss became" in line and "at step 2" in line and "diverged" in line, line
    assert not (out / "gaussians.ply").exists() and not list(out.glob("*.pt"))


def test_no_non_finite_gaussians_reach_a_ply(tmp_path):
    g = Gaussians.random(20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        g.means[3, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        save_gaussians_ply(tmp_path / "g.ply", g)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# 2. a .ply with NaN values or no Gaussians is refused, naming the file
# ---------------------------------------------------------------------------------------------
def write_raw_ply(path, n, nan_rows=()):
    from plyfile import PlyData, PlyElement

    data = np.zeros(n, dtype=[(k, "f4") for k in PROPERTY_NAMES])
    data["rot_0"] = 1.0
    for r in nan_rows:
        data["x"][r] = np.nan
    PlyData([PlyElement.describe(data, "vertex")]).write(str(path))
    return path


def test_render_refuses_nan_and_empty_plys(tmp_path, capsys):
    for name, n, nan_rows, found in (("nan.ply", 50, (4, 9), "NaN or inf values (2 in x, y, z)"),
                                     ("empty.ply", 0, (), "found 0 vertices")):
        ply = write_raw_ply(tmp_path / name, n, nan_rows)
        out = tmp_path / f"out_{name}"
        line = one_line_error(capsys, render_cli.main, ["--data_path", str(ply), "--quick", "--output_dir", str(out)])
        assert str(ply) in line and found in line, line
        assert not list(out.glob("*.gif"))


# ---------------------------------------------------------------------------------------------
# 3. one run per folder
# ---------------------------------------------------------------------------------------------
def test_a_second_run_into_a_busy_folder_stops_with_one_line(scene_dir, tmp_path, capsys):
    out = tmp_path / "run"
    with RunDir(out, command="python -m a4_gaussians_diffusion.gaussians.train (the first run)"):
        line = one_line_error(capsys, train_cli.main, ["--data_path", str(scene_dir), "--steps", "2",
                                                       "--output_dir", str(out), *TINY])
        assert f"{out} is in use by pid" in line and "the first run" in line, line
        line = one_line_error(capsys, render_cli.main, ["--data_path", "synthetic", "--quick", "--output_dir", str(out)])
        assert "is in use" in line
    assert not [p for p in out.iterdir() if p.name != ".lock"]  # neither run wrote anything


# ---------------------------------------------------------------------------------------------
# 4. damaged inputs and a resume into another model: one line
# ---------------------------------------------------------------------------------------------
def test_a_truncated_jpeg_and_a_damaged_pose_are_named(scene_dir, tmp_path, capsys):
    scene = tmp_path / "scene"
    shutil.copytree(scene_dir, scene)
    jpg = scene / "imgs" / "frame000003.jpg"
    jpg.write_bytes(jpg.read_bytes()[:200])
    line = one_line_error(capsys, train_cli.main, ["--data_path", str(scene), "--output_dir", str(tmp_path / "o"), *TINY])
    assert str(jpg) in line and "truncated" in line, line
    shutil.copy(scene_dir / "imgs" / jpg.name, jpg)
    pose = scene / "poses" / "frame000005.npy"
    pose.write_bytes(b"not an array")
    with pytest.raises(UserError, match=f"{pose}: expected 16 numbers .* found an unreadable file"):
        load_scene(scene)
    np.save(pose, np.full(16, np.nan))
    with pytest.raises(UserError, match="found NaN or inf values"):
        load_scene(scene)
    np.save(pose, np.zeros(12))
    with pytest.raises(UserError, match="found 12 numbers"):
        load_scene(scene)


def test_resuming_into_another_model_configuration_is_refused(scene_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--data_path", str(scene_dir), "--output_dir", str(out), *TINY]
    train_cli.main(args + ["--steps", "2"])
    line = one_line_error(capsys, train_cli.main, args + ["--steps", "4", "--resume", "--sh"])
    assert "cannot resume with a different configuration" in line and "sh: False in the checkpoint, True now" in line
    assert json.loads((out / "metrics.json").read_text())["iterations"] == 2


# ---------------------------------------------------------------------------------------------
# 5. densification as a strategy: its state is checkpointed, so a resumed run is bit-identical
# ---------------------------------------------------------------------------------------------
def test_resume_with_densification_is_bit_identical(scene_dir, tmp_path):
    common = ["--data_path", str(scene_dir), *TINY, "--harder", "--num_random", "150", "--lr_schedule", "none",
              "--densify_grad", "0", "--densify_from", "1", "--densify_every", "3", "--densify_until", "9"]
    train_cli.main(common + ["--steps", "10", "--output_dir", str(tmp_path / "straight")])
    train_cli.main(common + ["--steps", "5", "--output_dir", str(tmp_path / "split")])
    state = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    n = state["model"]["params"]["means"].shape[0]
    assert n > 150 and state["strategy"]["count"].shape == (n,) and state["strategy"]["count"].sum() > 0
    assert set(state) >= {"model", "optimizer", "config", "step", "strategy"}
    train_cli.main(common + ["--steps", "10", "--output_dir", str(tmp_path / "split"), "--resume"])
    a, b = (load_gaussians_ply(tmp_path / d / "gaussians.ply") for d in ("straight", "split"))
    assert a.num_gaussians == b.num_gaussians
    for k, v in a.params().items():
        assert torch.equal(v, b.params()[k]), k
    assert (tmp_path / "straight" / "losses.csv").read_text() == (tmp_path / "split" / "losses.csv").read_text()


def test_strategy_hooks():
    g = Gaussians.random(30, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam([{"params": [p], "name": k} for k, p in g.params().items()])
    from a4_gaussians_diffusion.gaussians.render import turntable_cameras
    from a4_gaussians_diffusion.gaussians.rasterize import RasterSettings

    cam = turntable_cameras(1, 24, dist=1.5)
    off = DensifyStrategy(DensifySettings(enabled=False), 1.0, 30, (24, 24))
    on = DensifyStrategy(DensifySettings(enabled=True, start=0, stop=10, every=2, grad_threshold=0.0), 1.0, 30, (24, 24))
    for step, strategy in enumerate((off, on, on)):
        out = g.render(cam, RasterSettings(24))
        strategy.step_pre_backward(out, step)
        out.image.sum().backward()
        assert out.means2d.retains_grad == (strategy is on)
        lines = strategy.step_post_backward(g, opt, out, step)
        assert (lines != []) == (step == 1), lines  # (step + 1) % every == 0
    assert off.stats.count.sum() == 0 and g.num_gaussians > 30
    assert on.stats.count.shape == (g.num_gaussians,)  # reset after densifying, one row per Gaussian


# ---------------------------------------------------------------------------------------------
# 6. one --quick mechanism: presets, flags the user gives win; --help runs nothing
# ---------------------------------------------------------------------------------------------
def test_quick_presets_yield_to_given_flags():
    rp = render_cli.build_parser()
    a = rp.parse_args(["--quick"])
    assert (a.image_size, a.num_frames) == (96, 24)
    a = rp.parse_args(["--quick", "--image_size", "300", "--num_views", "8"])  # the old name is an alias
    assert (a.image_size, a.num_frames) == (300, 8)
    tp = train_cli.build_parser()
    cfg = train_cli.config_from_args(tp.parse_args(["--quick"]))
    assert (cfg.steps, cfg.save_every, cfg.viz_every, cfg.init, cfg.densify) == (250, 0, 25, "points", False)
    cfg = train_cli.config_from_args(tp.parse_args(["--quick", "--harder"]))
    assert (cfg.steps, cfg.init, cfg.num_random, cfg.densify_from, cfg.densify_until) == (250, "random", 2000, 50, 150)
    cfg = train_cli.config_from_args(tp.parse_args(["--quick", "--harder", "--num_itrs", "30", "--num_random", "700",
                                                    "--ckpt_every", "10", "--lr_means", "0.001"]))
    assert (cfg.steps, cfg.num_random, cfg.save_every, cfg.lr_means, cfg.anisotropic) == (30, 700, 10, 0.001, True)
    assert train_cli.config_from_args(tp.parse_args(["--preset", "harder"])).densify


@pytest.mark.parametrize("flags", [["--steps", "0"], ["--ssim_weight", "2"], ["--tile_size", "0"],
                                   ["--gaussians_per_splat", "0"], ["--lr_means", "nan"]])
def test_bad_flag_values_are_named_by_argparse(flags, capsys):
    with pytest.raises(SystemExit) as e:
        train_cli.build_parser().parse_args(flags)
    assert e.value.code == 2 and flags[0] in capsys.readouterr().err


def test_bad_background_is_named(capsys):
    line = one_line_error(capsys, train_cli.main, ["--background", "grey", "--data_path", "synthetic"])
    assert line.startswith("error: --background: expected black, white or r,g,b")


@pytest.mark.parametrize("module", ["a4_gaussians_diffusion.demo", "a4_gaussians_diffusion.gaussians.demo"])
def test_demo_help_runs_nothing(module, tmp_path):
    r = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and r.stdout.startswith("usage:") and "--output_root" in r.stdout, r.stderr
    assert not list(tmp_path.iterdir())  # nothing written
