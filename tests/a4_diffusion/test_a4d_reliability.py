"""Nothing lost, nothing silent: the SDS trainers under bad input, divergence, a busy output folder,
a mismatched --resume and SIGTERM (tiny random pipeline, a few steps each)."""

import os
import shutil
import signal

import pytest
import torch

from a4_gaussians_diffusion.diffusion import image_optimization, mesh_optimization, nerf_optimization
from a4_gaussians_diffusion.diffusion.tiny import build_tiny_pipeline
from l3d.cli import run_cli
from l3d.run import LOSS_LOG, OutputLock, read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_sd_reliability"))


def common(tiny_dir, out):
    return ["--quick", "--device", "cpu", "--model", str(tiny_dir), "--output_dir", str(out)]


def fails_in_one_line(capsys, main, argv):
    """Run ``main`` as the command line does; returns its one error line (exit status 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def snapshot(folder):
    """{relative path: bytes} of every file of a run folder (the lock file aside)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_diverging_run_leaves_the_previous_results_untouched(tiny_dir, tmp_path, capsys):
    out = image_optimization.main(["--steps", "3", *common(tiny_dir, tmp_path)])
    before = snapshot(out)
    assert "checkpoints/last.pt" in before and "metrics.json" in before and "final.png" in before
    # a learning rate that throws the latent to 1e30 in one step: stopped at that step, nothing replaced
    line = fails_in_one_line(capsys, image_optimization.main,
                             ["--steps", "3", "--warmup", "0", "--lr", "1e30", *common(tiny_dir, tmp_path)])
    assert "at step 0" in line and "diverged" in line
    assert snapshot(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith((".pending", ".previous"))]
    # the nerf and the mesh trainers stop the same way (NaN loss), naming the step
    for main, extra in ((nerf_optimization.main, []),
                        (mesh_optimization.main, ["--data_path", "synthetic", "--num_frames", "2", "--image_size", "16"])):
        line = fails_in_one_line(capsys, main, ["--steps", "3", "--lr", "1e30", *extra, *common(tiny_dir, tmp_path)])
        assert "became nan at step" in line
    for name in ("a_standing_corgi_dog", "a_dotted_black_and_white_cow"):  # no NaN state was saved
        assert not (tmp_path / name / "checkpoints" / "last.pt").exists()


def test_a_folder_in_use_is_one_line_naming_the_holder(tiny_dir, tmp_path, capsys):
    folder = tmp_path / "a_hamburger_guidance"
    with OutputLock(folder, command="python -m another.run"):
        line = fails_in_one_line(capsys, image_optimization.main, ["--steps", "2", *common(tiny_dir, tmp_path)])
    assert f"pid {os.getpid()}" in line and "python -m another.run" in line and "--output_dir" in line
    assert [p.name for p in folder.iterdir()] == [".lock"]  # nothing written into the other run's folder


def test_resume_with_different_settings_is_one_line(tiny_dir, tmp_path, capsys):
    mesh = ["--data_path", "synthetic", "--num_frames", "2", "--image_size", "16", *common(tiny_dir, tmp_path)]
    out = mesh_optimization.main(["--steps", "2", *mesh])
    before = snapshot(out)
    # a colour field of another width cannot take these weights (before: a size-mismatch traceback)
    line = fails_in_one_line(capsys, mesh_optimization.main, ["--steps", "3", "--resume", "--hidden", "16", *mesh])
    assert "cannot resume with a different configuration" in line and "hidden: 32 in the checkpoint, 16 now" in line
    assert snapshot(out) == before
    # the same for the image trainer with another negative prompt
    image_optimization.main(["--steps", "2", *common(tiny_dir, tmp_path)])
    line = fails_in_one_line(capsys, image_optimization.main,
                             ["--steps", "3", "--resume", "--negative_prompt", "blurry", *common(tiny_dir, tmp_path)])
    assert "negative_prompt: '' in the checkpoint, 'blurry' now" in line


def test_sigterm_saves_a_checkpoint_and_resume_continues(tiny_dir, tmp_path, monkeypatch):
    real, sent = image_optimization.check_finite, []

    def terminate_at_step_2(value, step, *args, **kwargs):
        if step == 2 and not sent:
            sent.append(step)
            os.kill(os.getpid(), signal.SIGTERM)  # what `kill` and job schedulers send
        return real(value, step, *args, **kwargs)

    monkeypatch.setattr(image_optimization, "check_finite", terminate_at_step_2)
    argv = ["--steps", "6", *common(tiny_dir, tmp_path)]
    out = image_optimization.main(argv)
    assert sent == [2]
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 2
    assert read_metrics(out)["stopped_at_step"] == 2
    monkeypatch.setattr(image_optimization, "check_finite", real)
    image_optimization.main(argv + ["--resume"])
    steps = [int(line.split(",")[0]) for line in (out / LOSS_LOG).read_text().splitlines()[1:]]
    assert steps == [0, 1, 2, 3, 4, 5]
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 5
    assert read_metrics(out)["stopped_at_step"] is None


@pytest.mark.parametrize("main, argv, flag", [
    (image_optimization.main, ["--t_range", "0.5", "0.2"], "--t_range"),
    (nerf_optimization.main, ["--ema_decay", "1"], "--ema_decay"),
    (nerf_optimization.main, ["--n_samples", "2"], "--n_samples"),
    (nerf_optimization.main, ["--latent_iter_ratio", "1.5"], "--latent_iter_ratio"),
    (nerf_optimization.main, ["--fov_range", "10", "180"], "--fov_range"),
    (mesh_optimization.main, ["--dist_range", "3", "2"], "--dist_range"),
    (mesh_optimization.main, ["--data_path", "no_such_mesh.obj"], "--data_path"),
])
def test_bad_flags_are_one_line_naming_the_flag(main, argv, flag, tmp_path, capsys):
    # checked before the model loads (before: ValueError tracebacks)
    line = fails_in_one_line(capsys, main, [*argv, "--model", str(tmp_path / "unused"), "--output_dir", str(tmp_path)])
    assert line.startswith(f"error: {flag}: expected")
    assert not any(tmp_path.iterdir())


def test_damaged_model_folder_is_one_line(tiny_dir, tmp_path, capsys):
    bad = tmp_path / "bad_sd"
    shutil.copytree(tiny_dir, bad)
    weights = next((bad / "unet").glob("diffusion_pytorch_model.*"))
    weights.write_bytes(weights.read_bytes()[:1000])  # a truncated download
    line = fails_in_one_line(capsys, image_optimization.main, ["--quick", "--model", str(bad), "--output_dir",
                                                               str(tmp_path / "out")])
    assert "cannot load unet/" in line
    shutil.rmtree(bad)
    shutil.copytree(tiny_dir, bad)
    config = bad / "scheduler" / "scheduler_config.json"
    config.write_text(config.read_text().replace('"epsilon"', '"velocity"'))
    line = fails_in_one_line(capsys, image_optimization.main, ["--quick", "--model", str(bad), "--output_dir",
                                                               str(tmp_path / "out")])
    assert "scheduler_config.json: expected prediction_type" in line and "'velocity'" in line
    assert not (tmp_path / "out").exists()


def test_gradient_check_tells_a_vanished_gradient_from_a_broken_one():
    import math

    from a4_gaussians_diffusion.diffusion.common import gradient_check

    w = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.5]))
    a = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    g_lat = torch.tensor([0.7, -0.4])

    def value(fn):
        z = fn()
        (grad,) = torch.autograd.grad((z * g_lat).sum(), [w])
        return gradient_check([w], [grad], fn, g_lat)

    assert value(lambda: torch.sigmoid(a @ w)) == pytest.approx(1.0, abs=1e-3)  # the true gradient arrives
    # a nearly vanished gradient (as of a texture saturated at 0 or 1): the latent's change is below
    # float32 rounding of the latent, so the finite difference is exactly 0; the probe says "cannot
    # measure" (NaN), not "no gradient" (0)
    assert math.isnan(value(lambda: 1.0 + 1e-9 * (a @ w)))
    # a gradient of normal size that the latent does not follow is still caught
    wrong = gradient_check([w], [torch.ones(3)], lambda: torch.zeros(2), g_lat)
    assert wrong == 0.0


def test_gradient_check_stays_exact_where_a_sigmoid_saturates():
    """The probe's step is sized by the norm of all the parameters, but when the gradient sits on
    a few of them (the last layer of a texture MLP pushed into its sigmoid's saturation) that step
    moves those few far enough to bend the curve: a single central difference reads 1.31 here (and
    read 2.2 to 2.9 on a healthy mesh-texture run, failing its check). Halving the step and
    extrapolating gives the true 1."""
    import math

    from a4_gaussians_diffusion.diffusion.common import gradient_check

    for v in (2.0, 4.0, 6.0):
        a = torch.nn.Parameter(torch.full((1000,), 100.0))  # large parameters the latent ignores
        b = torch.nn.Parameter(torch.full((8,), v))  # the sigmoid's input: the gradient sits here
        g_lat = torch.linspace(0.5, 1.5, 8)
        latent = lambda: torch.sigmoid(b + 0.0 * a.sum())  # noqa: E731
        grads = torch.autograd.grad((latent() * g_lat).sum(), [a, b])
        got = gradient_check([a, b], list(grads), latent, g_lat)
        assert got == pytest.approx(1.0, abs=0.01)
        assert torch.equal(b.detach(), torch.full((8,), v)) and torch.equal(a.detach(), torch.full((1000,), 100.0))
        if v == 6.0:  # what the single step alone measures
            g2 = float(grads[1].pow(2).sum())
            step = 1e-3 * math.sqrt(float(a.detach().pow(2).sum() + b.detach().pow(2).sum()) / g2)
            with torch.no_grad():
                one = float((g_lat * (torch.sigmoid(b + grads[1] * step) - torch.sigmoid(b - grads[1] * step))).sum())
            assert one / (2 * step * g2) > 1.2
