"""End-to-end runs of the Gaussian CLIs at --quick size on a tiny rendered scene."""

import csv
import json

import imageio.v3 as iio
from PIL import Image
import numpy as np
import pytest
import torch

from a4_gaussians_diffusion.captions import banner_height
from a4_gaussians_diffusion.gaussians import render as render_cli
from a4_gaussians_diffusion.gaussians import train as train_cli
from a4_gaussians_diffusion.gaussians.data import BuiltinSceneConfig, load_scene, make_builtin_scene
from a4_gaussians_diffusion.gaussians.losses import evaluate_images
from a4_gaussians_diffusion.gaussians.ply import load_gaussians_ply, save_gaussians_ply
from a4_gaussians_diffusion.gaussians.rasterize import RasterSettings
from a4_gaussians_diffusion.gaussians.standin import surface_gaussians
from l3d.cli import run_cli
from l3d.errors import NonFiniteError


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    cfg = BuiltinSceneConfig(num_views=10, image_size=(24, 32), num_points=600, focal_ndc=2.0)
    return make_builtin_scene(tmp_path_factory.mktemp("scene") / "cow", cfg, force_synthetic=True)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_quick_writes_everything_and_reports_true_metrics(scene_dir, tmp_path):
    out = tmp_path / "run"
    train_cli.main(["--data_path", str(scene_dir), "--quick", "--num_itrs", "20", "--viz_every", "5",
                    "--output_dir", str(out), "--device", "cpu"])
    m = json.loads((out / "metrics.json").read_text())
    assert m["iterations"] == 20 and m["num_gaussians"] == 600
    assert m["test_views"] == [1, 3, 5, 6, 8]
    for name in ("q1_training_progress.gif", "q1_training_final_renders.gif", "gaussians.ply", "losses.png",
                 "losses.csv", "command.txt", "q1_training_progress.png"):
        assert (out / name).is_file(), name
    bh = banner_height()
    prog = iio.imread(out / "q1_training_progress.gif", index=None)
    assert prog.shape[:3] == (5, bh + 48, 128)  # steps 0, 5, 10, 15, 19: 4 views, prediction over truth, label above
    final = iio.imread(out / "q1_training_final_renders.gif", index=None)
    assert final.shape[:3] == (5, bh + 48, 32)
    assert (prog[:, :bh] > 200).all(-1).mean() > 0.6  # the label's banner: a white strip with dark text
    # the reported numbers are those of the saved model on the test views (scikit-image)
    scene = load_scene(scene_dir)
    g = load_gaussians_ply(out / "gaussians.ply")
    with torch.no_grad():
        preds = [g.render(scene.cameras[i], RasterSettings((24, 32))).image.clamp(0, 1) for i in scene.test_idx]
    ref = evaluate_images(preds, [scene.images[i] for i in scene.test_idx])
    assert m["psnr"] == pytest.approx(ref["psnr"], abs=1e-3) and m["ssim"] == pytest.approx(ref["ssim"], abs=1e-4)
    assert 10 < m["psnr"] < 60 and 0 < m["ssim"] <= 1
    assert m["background"] == [1.0, 1.0, 1.0] and m["data"].startswith("stand-in: ")  # the built-in scene's own
    assert m["checks"]["test_psnr"]["value"] == m["psnr"] and m["checks"]["test_psnr"]["min"] == 25.0
    assert m["checks"]["test_ssim"]["value"] == m["ssim"]
    rows = read_rows(out / "losses.csv")
    losses = [float(r["loss"]) for r in rows]
    assert len(losses) == 20 and np.mean(losses[-5:]) < np.mean(losses[:5])  # random colours get fitted


def test_resume_continues_where_the_checkpoint_left(scene_dir, tmp_path):
    out = tmp_path / "run"
    args = ["--data_path", str(scene_dir), "--quick", "--output_dir", str(out), "--ckpt_every", "5", "--viz_every", "100"]
    train_cli.main(args + ["--num_itrs", "10"])
    assert (out / "checkpoints" / "last.pt").is_file()
    first = load_gaussians_ply(out / "gaussians.ply")
    train_cli.main(args + ["--num_itrs", "16", "--resume"])
    m = json.loads((out / "metrics.json").read_text())
    assert m["iterations"] == 16
    steps = [int(r["step"]) for r in read_rows(out / "losses.csv")]
    assert steps == list(range(16))
    second = load_gaussians_ply(out / "gaussians.ply")
    assert not torch.equal(first.colours, second.colours)  # training went on


def test_harder_options_densify_and_train_sh(scene_dir, tmp_path):
    out = tmp_path / "run"
    train_cli.main(["--data_path", str(scene_dir), "--quick", "--harder", "--sh", "--num_random", "500",
                    "--densify_grad", "0", "--densify_every", "5", "--densify_from", "4", "--num_itrs", "12",
                    "--output_dir", str(out)])
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_gaussians"] > 500  # cloned / split
    g = load_gaussians_ply(out / "gaussians.ply")
    assert not g.isotropic and g.sh is not None and g.sh[:, 3:].abs().sum() > 0
    assert g.num_gaussians == m["num_gaussians"]


def test_training_stops_on_a_non_finite_loss(scene_dir, tmp_path, monkeypatch):
    from a4_gaussians_diffusion.gaussians import trainer

    real_l1 = trainer.l1
    calls = []

    def l1_nan_at_step_3(pred, target):
        calls.append(1)
        return real_l1(pred, target) * (float("nan") if len(calls) == 4 else 1.0)

    monkeypatch.setattr(trainer, "l1", l1_nan_at_step_3)
    with pytest.raises(NonFiniteError, match="at step 3"):
        train_cli.main(["--data_path", str(scene_dir), "--quick", "--output_dir", str(tmp_path / "nan")])


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run_cli(train_cli.main, ["--data_path", str(tmp_path / "nowhere"), "--quick"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "nowhere" in err[0]
    with pytest.raises(SystemExit) as e:
        run_cli(render_cli.main, ["--data_path", str(tmp_path / "missing.ply"), "--quick"])
    assert e.value.code == 2


def test_render_turntable_quick(tmp_path):
    g = surface_gaussians(3000, force_synthetic=True)
    ply = save_gaussians_ply(tmp_path / "g.ply", g)
    out, out_sh = tmp_path / "render", tmp_path / "render_sh"
    render_cli.main(["--data_path", str(ply), "--quick", "--output_dir", str(out)])
    render_cli.main(["--data_path", str(ply), "--quick", "--sh", "--output_dir", str(out_sh)])
    # the course's dense formulation with batches of 256 Gaussians gives the same frames
    render_cli.main(["--data_path", str(ply), "--quick", "--rasterizer", "dense", "--gaussians_per_splat", "256",
                     "--num_views", "8", "--image_size", "40", "--output_dir", str(tmp_path / "dense")])
    render_cli.main(["--data_path", str(ply), "--quick", "--num_views", "8", "--image_size", "40",
                     "--output_dir", str(tmp_path / "tiled")])
    dense = iio.imread(tmp_path / "dense" / "q1_render.gif", index=None)
    tiled = iio.imread(tmp_path / "tiled" / "q1_render.gif", index=None)
    assert dense.shape == (8, 40, 120, 3) and np.abs(dense.astype(int) - tiled.astype(int)).max() <= 1
    frames = iio.imread(out / "q1_render.gif", index=None)
    frames_sh = iio.imread(out_sh / "q1_render_sh.gif", index=None)
    assert frames.shape[:3] == (24, 96, 288) and frames_sh.shape == frames.shape  # --quick: 24 views
    m, m_sh = (json.loads((d / "metrics.json").read_text()) for d in (out, out_sh))
    assert m["num_views"] == 24 and m_sh["use_sh"] is True
    # 24 frames of 90 ms (12 fps, rounded up to the GIF's 10 ms steps): at least 2 s a turn, as stored
    assert m["frame_ms"] == 90 and m["seconds_per_turn"] >= 2.0
    with Image.open(out / "q1_render.gif") as im:
        assert im.info["duration"] * im.n_frames >= 2000
    assert m["background"] == [1.0, 1.0, 1.0] and m["up"] == [0.0, -1.0, 0.0]  # a .ply without scene info
    for name in ("centres_in_silhouette", "silhouette_near_centres"):
        assert m["checks"][name]["pass"] and m["checks"][name]["value"] > 0.95, (name, m["checks"][name])
    for name in ("sh_differs_from_dc", "sh_mean_colour_gap"):
        assert m_sh["checks"][name]["pass"], (name, m_sh["checks"][name])
    assert m_sh["sh_vs_dc"]["mean_abs_difference"] > 0.03 and m_sh["sh_vs_dc"]["mean_colour_gap"] < 0.03
    assert iio.imread(out_sh / "q1_render_sh_vs_dc.gif", index=None).shape[:3] == (24, banner_height() + 96, 192)
    # the object is in view, the mask panel is white on black, SH colours differ from plain ones
    mask = frames[..., 192:, 0].astype(float) / 255
    assert 0.05 < mask.mean() < 0.6
    assert np.abs(frames_sh[..., :96, :].astype(int) - frames[..., :96, :].astype(int)).mean() > 0.5
    # frame 3 (azimuth = elevation = -135 deg): the RGB panel equals a direct render
    cams = render_cli.turntable_cameras(24, 96)
    with torch.no_grad():
        direct = load_gaussians_ply(ply).render(cams[3], RasterSettings(96)).image
    assert np.abs(frames[3, :, :96].astype(float) / 255 - direct.numpy()).mean() < 0.03


def test_render_uses_the_background_and_up_the_ply_was_trained_with(tmp_path):
    g = surface_gaussians(1500, force_synthetic=True)
    ply = save_gaussians_ply(tmp_path / "g.ply", g, scene_info={"background": (0, 0, 0), "up": (0, -1, 0)})
    out = tmp_path / "r"
    render_cli.main(["--data_path", str(ply), "--quick", "--num_views", "4", "--image_size", "32",
                     "--output_dir", str(out)])
    m = json.loads((out / "metrics.json").read_text())
    assert m["background"] == [0.0, 0.0, 0.0]
    frames = iio.imread(out / "q1_render.gif", index=None)
    assert frames[:, 0, 0, :].max() < 10  # corners of the RGB panel: black
    render_cli.main(["--data_path", str(ply), "--quick", "--num_views", "4", "--image_size", "32",
                     "--background", "white", "--output_dir", str(out)])
    assert json.loads((out / "metrics.json").read_text())["background"] == [1.0, 1.0, 1.0]


def test_silhouette_and_sh_measures_fail_when_the_render_is_wrong():
    from a4_gaussians_diffusion.gaussians.measures import sh_vs_dc, silhouette_agreement

    g = surface_gaussians(3000, force_synthetic=True)
    cams = render_cli.turntable_cameras(4, 64)
    with torch.no_grad():
        outs = [g.render(cams[i], RasterSettings(64)) for i in range(4)]
    masks = torch.stack([o.mask for o in outs])
    good = silhouette_agreement(g, cams, masks)
    assert good["recall"] > 0.97 and good["precision"] > 0.95
    shifted = silhouette_agreement(g, cams, torch.roll(masks, 6, dims=2))  # 6 px to the right
    assert shifted["recall"] < 0.9
    smeared = silhouette_agreement(g, cams, torch.nn.functional.max_pool2d(masks[:, None], 9, 1, 4)[:, 0])
    assert smeared["precision"] < 0.85
    assert silhouette_agreement(g, cams, torch.zeros_like(masks))["recall"] == 0
    images = torch.stack([o.image for o in outs])
    same = sh_vs_dc(images, images, masks)
    assert same["mean_abs_difference"] == 0 and same["mean_colour_gap"] == 0
    washed = sh_vs_dc((images + 0.3).clamp(0, 1), images, masks)
    assert washed["mean_colour_gap"] > 0.1
