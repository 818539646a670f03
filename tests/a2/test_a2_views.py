"""The comparison images of Q1 and Q2 show the ground truth in the prediction's representation:
the voxel grid beside predicted voxels, points sampled on the mesh beside predicted points, the
mesh beside a predicted mesh. Each ground-truth panel is compared with an independent render of
the ground truth of that representation, and told apart from a render of the other ones."""

from __future__ import annotations

import pytest
import torch

from a2_single_view import eval_model, fit_data
from a2_single_view.common import GT_COLOUR, GT_POINT_COLOUR, frame_distance, kind_points, view_azimuth
from a2_single_view.data import R2N2, ensure_synthetic
from a2_single_view.voxelize import grid_to_mesh
from l3d.ops import ico_sphere, sample_points_from_meshes
from l3d.structures import Meshes
from l3d.viz import render_mesh_turntable, render_points_turntable, with_vertex_colors

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
SIZE, FRAMES, TITLE = 64, 2, 16  # panel size, turntable frames, title strip height


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "a2_data"
    split = ensure_synthetic(root, "tiny", verbose=False)
    return root, split


def turntable_kw(azim, dist):
    return dict(num_frames=FRAMES, image_size=SIZE, azim_start=azim, dist=dist, elev=25.0)


def render_grid(grid, **kw):  # the grey surface of a voxel grid's cells
    v, f = grid_to_mesh(grid.float(), 0.5, half_cell=True)
    return render_mesh_turntable(with_vertex_colors(Meshes([v], [f]), GT_COLOUR), **kw)


def render_mesh(verts, faces, **kw):
    return render_mesh_turntable(with_vertex_colors(Meshes([verts.float()], [faces]), GT_COLOUR), **kw)


def render_cloud(points, **kw):
    return render_points_turntable(points, torch.tensor(GT_POINT_COLOUR).expand_as(points), radius=0.02, **kw)


class FakeModel:
    def __init__(self, kind):
        self.kind = kind


def fake_prediction(kind):
    """A prediction unlike the ground truth (a box, a ball of points, a small sphere)."""
    if kind == "vox":
        g = torch.zeros(1, 1, 32, 32, 32)
        g[..., 10:22, 8:24, 12:20] = 0.9
        return g
    if kind == "point":
        return 0.25 * torch.randn(1, 700, 3, generator=torch.Generator().manual_seed(1))
    s = ico_sphere(2)
    return Meshes([0.3 * s.verts_packed()], [s.faces_packed()])


@pytest.mark.parametrize("kind", ["vox", "point", "mesh"])
def test_eval_examples_show_the_ground_truth_of_the_predicted_kind(tiny, monkeypatch, kind):
    root, split = tiny
    ds = R2N2(root, split, "test", ("chair",), views_per_model=1, return_voxels=True)
    pred = fake_prediction(kind)
    monkeypatch.setattr(eval_model, "predict", lambda model, batch: pred)
    frames = eval_model.example_frames(FakeModel(kind), ds, 0, "cpu", num_frames=FRAMES, image_size=SIZE, seed=3)
    assert frames.shape == (FRAMES, TITLE + SIZE, 3 * SIZE, 3)  # input | prediction | ground truth
    gt_panel = frames[:, TITLE:, 2 * SIZE:]
    s = ds[0]
    azim = view_azimuth(s["R"], s["T"])
    gt_points = sample_points_from_meshes(Meshes([s["verts"]], [s["faces"]]), 700,
                                          generator=torch.Generator().manual_seed(3))[0]
    gt_of = {"vox": s["voxels"][0], "point": gt_points, "mesh": (s["verts"], s["faces"])}
    p = pred[0] if kind != "mesh" else (pred.verts_packed(), pred.faces_packed())
    kw = turntable_kw(azim, frame_distance(kind_points(kind, p), kind_points(kind, gt_of[kind])))
    renders = {"vox": render_grid(s["voxels"][0], **kw), "point": render_cloud(gt_points, **kw),
               "mesh": render_mesh(s["verts"], s["faces"], **kw)}
    diff = {k: float((gt_panel - r).abs().mean()) for k, r in renders.items()}
    assert diff[kind] < 1e-4, diff  # the render of the ground truth of this kind ...
    others = [d for k, d in diff.items() if k != kind]
    assert min(others) > 20 * max(diff[kind], 1e-4), diff  # ... and not of another kind
    assert float((gt_panel < 0.9).float().mean()) > 0.02  # something is drawn


@pytest.mark.parametrize("kind", ["vox", "point", "mesh"])
def test_fit_gif_compares_with_the_target_of_the_fitted_kind(tmp_path, tiny, monkeypatch, kind):
    """fit_data's GIF: the target voxel grid, the target points, the target mesh."""
    root, split = tiny
    seen = {}
    real = fit_data.comparison

    def spy(k, pred, gt, **kw):
        seen.update(kind=k, pred=pred, gt=gt)
        return real(k, pred, gt, **{**kw, "num_frames": FRAMES, "image_size": SIZE})

    monkeypatch.setattr(fit_data, "comparison", spy)
    fit_data.main(["--type", kind, "--steps", "2", "--num_points", "300", "--num_frames", "2", "--image_size", "64",
                   "--output_dir", str(tmp_path / kind), "--data", "synthetic", "--data_path", str(root),
                   "--data_preset", "tiny", "--device", "cpu"])
    s = R2N2(root, split, "train", ("chair",), return_voxels=True, inputs="none")[0]
    assert seen["kind"] == kind
    if kind == "vox":
        assert torch.equal(seen["gt"], s["voxels"][0]) and seen["pred"].shape == (32, 32, 32)
    elif kind == "point":
        want = sample_points_from_meshes(Meshes([s["verts"]], [s["faces"]]), 300,
                                         generator=torch.Generator().manual_seed(0))[0]
        assert seen["gt"].shape == (300, 3) and torch.allclose(seen["gt"], want)
    else:
        assert torch.equal(seen["gt"][0], s["verts"]) and torch.equal(seen["gt"][1], s["faces"])
