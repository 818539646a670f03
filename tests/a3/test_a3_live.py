"""A3 training as it runs: TensorBoard scalars and the validation image, and the live viewer's
render from a browser camera (the same picture the model renders for that camera)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from a3_volume_surface import volume_rendering_main

pytest.importorskip("viser")
pytest.importorskip("tensorboard")
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _run(out: Path, *overrides):
    old = sys.argv
    sys.argv = ["prog", "--config-name=nerf_lego", "quick=true", f"output_dir={out}", "device=cpu",
                "data.source=builtin", f"data.cache_dir={out.parent / 'scenes'}", "training.num_epochs=2",
                "training.steps_per_epoch=3", "gif.n_poses=2", "data.n_test_views=2", *overrides]
    try:
        volume_rendering_main.main()
    finally:
        sys.argv = old
    return json.loads((out / "metrics.json").read_text())


def test_tensorboard_scalars_and_validation_image(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "nerf"
    _run(out, "tensorboard_image_every=1", "viewer=true")
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    rows = [r for r in (out / "losses.csv").read_text().splitlines()[1:]]
    losses = [e.value for e in acc.Scalars("loss")]
    assert len(losses) == len(rows) == 2
    assert np.allclose(losses, [float(r.split(",")[1]) for r in rows], rtol=1e-6)
    images = acc.Images("val/test_view_0")
    assert [im.step for im in images] == [0, 1] and images[0].width == 2 * images[0].height  # prediction | truth
    m = json.loads((out / "metrics.json").read_text())
    assert m["viewer"]["renders"] == 0  # no browser connected: the viewer never rendered


def test_tensorboard_false_writes_no_events(tmp_path):
    out = tmp_path / "nerf"
    _run(out, "tensorboard=false")
    assert (out / "losses.csv").is_file() and not (out / "tensorboard").exists()


def test_viewer_render_is_the_model_render_of_that_camera():
    """A browser camera placed exactly at a training camera renders what render_images renders there."""
    import viser.transforms as vtf

    from a3_volume_surface.cameras import look_at_cameras
    from a3_volume_surface.common import LiveMonitor
    from a3_volume_surface.model import Model, render_images
    from l3d.cameras import opencv_from_cameras
    from l3d.view import opencv_pose_to_camera

    torch.manual_seed(0)
    cfg = {"implicit_function": {"type": "nerf", "n_harmonic_functions_xyz": 2, "n_hidden_neurons_xyz": 16,
                                 "n_hidden_neurons_dir": 8, "n_layers_xyz": 2, "append_xyz": []},
           "renderer": {"type": "volume", "chunk_size": 4096}, "sampler": {"type": "stratified", "n_pts_per_ray": 16,
                                                                          "min_depth": 2.0, "max_depth": 6.0}}
    model = Model(cfg).eval()
    hw = (24, 32)
    cam = look_at_cameras(torch.tensor([[3.0, 1.0, 2.0]]), up=(0.0, 0.0, 1.0), focal_length=1.5)
    R, t, K = opencv_from_cameras(cam, torch.tensor([hw]))
    c2w = R[0].T.double().numpy()
    centre = (-R[0].T @ t[0]).double().numpy()
    fov_y = 2 * math.atan((hw[0] / 2) / float(K[0, 1, 1]))
    browser = opencv_pose_to_camera(vtf.SO3.from_matrix(c2w).wxyz, centre, fov_y, hw)
    monitor = LiveMonitor({}, model, lambda c, size: render_images(model, c, size)["color"], cam, None)
    got = monitor._render(browser, hw)
    want = render_images(model, cam, hw)["color"][0].clamp(0, 1)
    assert got.shape == (*hw, 3) and float(want.std()) > 1e-3
    assert torch.allclose(got, want, atol=2e-3), (got - want).abs().max()
