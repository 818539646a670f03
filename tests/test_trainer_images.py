"""The fixed validation image every trainer logs to TensorBoard (tab IMAGES), read back with
TensorBoard's own reader: the steps it was logged at and that it shows something (not one flat colour)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from l3d import run as runmod

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(autouse=True)
def _tensorboard_on(monkeypatch):
    monkeypatch.delenv("L3D_TENSORBOARD", raising=False)
    runmod.set_tensorboard(None)
    yield
    runmod.set_tensorboard(None)


def images(run: Path, tag: str):
    """{step: (H, W, 3) uint8} of ``tag`` in ``run/tensorboard``."""
    from PIL import Image
    import io

    acc = event_accumulator.EventAccumulator(str(run / runmod.TENSORBOARD_DIR), size_guidance={"images": 0})
    acc.Reload()
    assert tag in acc.Tags()["images"], acc.Tags()["images"]
    return {e.step: np.asarray(Image.open(io.BytesIO(e.encoded_image_string)).convert("RGB")) for e in acc.Images(tag)}


def shows_something(img: np.ndarray, min_std: float = 8.0) -> bool:
    return img.ndim == 3 and min(img.shape[:2]) >= 16 and float(img.astype(float).std()) > min_std


def test_a2_train_model_logs_prediction_beside_truth(tmp_path):
    from a2_single_view import train_model
    from a2_single_view.data import ensure_synthetic

    root = tmp_path / "data"
    ensure_synthetic(root, "tiny", verbose=False)
    out = tmp_path / "train"
    train_model.main(["--type", "vox", "--mean_shape", "--vox_width", "0.25", "--batch_size", "4", "--log_freq", "1",
                      "--steps", "5", "--tensorboard_image_every", "2", "--data", "synthetic", "--data_path", str(root),
                      "--data_preset", "tiny", "--device", "cpu", "--output_dir", str(out)])
    got = images(out, "val/train_image_0")
    assert sorted(got) == [0, 2, 4]
    img = got[4]
    # three panels side by side (input image | prediction | ground truth), each with its title strip
    assert img.shape[1] == 3 * 96 and img.shape[0] > 96 and shows_something(img)


def test_a2_fit_data_logs_the_fit_beside_its_target(tmp_path):
    from a2_single_view import fit_data
    from a2_single_view.data import ensure_synthetic

    root = tmp_path / "data"
    ensure_synthetic(root, "tiny", verbose=False)
    out = tmp_path / "fit"
    m = fit_data.main(["--type", "point", "--quick", "--steps", "60", "--num_points", "300", "--num_frames", "2",
                       "--image_size", "48", "--tensorboard_image_every", "25", "--data", "synthetic", "--data_path",
                       str(root), "--data_preset", "tiny", "--device", "cpu", "--output_dir", str(out)])
    got = images(out, "val/fit_and_target")
    assert sorted(got) == [0, 25, 50, 59] and all(shows_something(im) for im in got.values())
    # the points move onto the target: the prediction panel (left half) changes between the first and last image
    first, last = (got[s][:, : got[s].shape[1] // 2].astype(float) for s in (0, 59))
    rows = runmod.LossLog(out / runmod.LOSS_LOG).rows()
    assert np.abs(first - last).mean() > 1.0 and m["final_loss"] < 0.5 * rows[0]["loss"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from a4_gaussians_diffusion.diffusion.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_sd_images"))


def test_a4_sds_image_and_mesh_log_their_views(tiny_dir, tmp_path):
    from a4_gaussians_diffusion.diffusion import image_optimization, mesh_optimization

    common = ["--quick", "--device", "cpu", "--model", str(tiny_dir)]
    out = Path(image_optimization.main(["--steps", "4", "--snapshot_every", "2", *common,
                                        "--output_dir", str(tmp_path / "image")]))
    got = images(out, "val/decoded_image")
    assert sorted(got) == [1, 3]  # the steps whose decoded image is saved in iters/ (iter_0002, iter_0004)
    assert all(im.shape[:2] == got[1].shape[:2] and im.shape[0] >= 16 for im in got.values())
    out = Path(mesh_optimization.main(["--steps", "2", "--snapshot_every", "1", "--data_path", "synthetic",
                                       "--num_frames", "2", "--image_size", "32", *common,
                                       "--output_dir", str(tmp_path / "mesh")]))
    got = images(out, "val/front_view")
    assert sorted(got) == [0, 1] and all(im.shape[:2] == (32, 32) and shows_something(im) for im in got.values())


@pytest.mark.parametrize("task", ["cls", "seg"])
def test_a5_train_logs_test_cloud_0(tmp_path, task):
    from a5_pointnet import train

    out = tmp_path / task
    assert train.main(["--task", task, "--quick", "--batch_size", "16", "--num_points", "128", "--eval_points", "256",
                       "--final_points", "256", "--width", "0.25", "--num_train", "48", "--num_test", "8", "--data",
                       "synthetic", "--cache_dir", str(tmp_path / "cache"), "--num_epochs", "3", "--device", "cpu",
                       "--no-baseline", "--tensorboard_image_every", "2", "--output_dir", str(out)]) == 0
    got = images(out, "val/test_cloud_0")
    assert sorted(got) == [0, 2] and all(shows_something(im) for im in got.values())
    img = got[2]
    if task == "seg":  # two panels (truth | prediction) with a gap between them
        assert img.shape[1] > 2 * 160
    else:  # one panel, the cloud green (right) or red (wrong): one of the two dominates its points
        assert img.shape[1] == 160
        px = img.reshape(-1, 3).astype(int)
        green = ((px[:, 1] > 150) & (px[:, 0] < 120)).sum()
        red = ((px[:, 0] > 180) & (px[:, 1] < 120)).sum()
        assert max(green, red) > 200 and min(green, red) < 0.05 * max(green, red)


def test_a4_train_prior_logs_its_samples_and_reconstructions(tmp_path):
    from a4_gaussians_diffusion.diffusion import train_prior

    out = tmp_path / "prior"
    train_prior.main(["--quick", "--device", "cpu", "--no_cow", "--output_dir", str(out), "--num_images", "48",
                      "--vae_steps", "4", "--steps", "4", "--sample_steps", "2"])
    samples = images(out, "val/samples")
    assert sorted(samples) == [7] and shows_something(samples[7])  # 4 VAE + 4 diffusion steps: the last is 7
    pairs = images(out, "val/vae_heldout_and_reconstruction")[7]
    h, w = pairs.shape[:2]
    assert h * 4 == w and shows_something(pairs)  # 8 held-out images (S x S) over their reconstructions: 2S x 8S
