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
