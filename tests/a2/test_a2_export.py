"""eval_model --export_mesh: the predicted occupancy of the voxel and implicit decoders as a mesh,
in the data set's mesh frame (the same field the evaluation meshes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from a2_single_view import eval_model, train_model
from a2_single_view.data import R2N2, ensure_synthetic
from a2_single_view.voxelize import grid_query_points, to_voxel_frame

trimesh = pytest.importorskip("trimesh")
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "a2_export_data"
    ensure_synthetic(root, "tiny", verbose=False)
    return ["--data", "synthetic", "--data_path", str(root), "--data_preset", "tiny", "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    base = tmp_path_factory.mktemp("a2_export_train")
    ckpts = {}
    for kind in ("vox", "implicit", "point", "mesh"):
        out = base / f"train_{kind}"
        train_model.main(["--type", kind, "--steps", "30" if kind in ("vox", "implicit") else "2", "--ico_level", "3", "--batch_size", "4", "--log_freq", "10", "--vox_width",
                          "0.5", "--implicit_hidden", "64", "--n_queries", "256", "--output_dir", str(out), *data])
        ckpts[kind] = out / "checkpoints" / "last.pt"
    return ckpts


def _dataset(model, cfg, data):
    args = eval_model.finish_args(eval_model.build_parser().parse_args(["--type", model.kind, *data]))
    ds, _ = eval_model.eval_dataset(model, cfg, args, torch.device("cpu"), "test", 1, 2, return_voxels=True)
    return ds


@pytest.mark.parametrize("kind", ["vox", "implicit"])
def test_field_at_the_cell_centres_is_the_predicted_grid(trained, data, kind):
    """The exported field, read at the 32^3 cell centres (mapped into the mesh frame), is exactly
    the grid the evaluation meshes: the frame and the cell convention agree."""
    model, cfg = eval_model.load_model(trained[kind], torch.device("cpu"), kind)
    ds = _dataset(model, cfg, data)
    assert isinstance(ds, R2N2)
    from a2_single_view.data import collate

    grid = eval_model.predict(model, collate([ds[0]]))[0, 0]  # (D, D, D) [Z, Y, X] probabilities
    centres = to_voxel_frame(grid_query_points(grid.shape[0]).reshape(-1, 3))  # mesh frame
    field = eval_model.example_field(model, ds, 0, torch.device("cpu"))(centres).view(grid.shape)
    assert torch.allclose(field, grid, atol=2e-5), (field - grid).abs().max()
    assert float(grid.std()) > 1e-3  # a field that varies (the check is not about a constant)


def test_eval_export_mesh_writes_meshes_trimesh_opens(trained, data, tmp_path):
    model, cfg = eval_model.load_model(trained["implicit"], torch.device("cpu"), "implicit")
    ds = _dataset(model, cfg, data)
    values = eval_model.example_field(model, ds, 0, torch.device("cpu"))(
        torch.rand(4096, 3, generator=torch.Generator().manual_seed(0)) - 0.5)
    level = float(values.median())  # a level the (briefly trained) field crosses
    out = tmp_path / "eval"
    m = eval_model.main(["--type", "implicit", "--quick", "--vis_count", "1", "--max_examples", "2", "--baseline_checkpoint",
                         "none", "--load_checkpoint", str(trained["implicit"]), "--export_mesh", "--mesh_resolution",
                         "40", "--mesh_level", f"{level}", "--output_dir", str(out), *data])
    mesh = trimesh.load(out / "example_0_mesh.ply", process=False)
    assert len(mesh.faces) > 100 and (out / "example_0_mesh.obj").is_file()
    assert np.abs(mesh.vertices).max() <= 0.5 + 1e-6  # inside the unit cube of the data set's frame
    assert m["examples"] == 2


@pytest.mark.parametrize("kind", ["point", "mesh"])
def test_point_and_mesh_predictions_are_written_as_they_are(trained, data, tmp_path, kind):
    """--export_points writes the predicted cloud, --export_mesh the predicted (deformed sphere) mesh,
    exactly the prediction the evaluation scores."""
    from a2_single_view.data import collate

    out = tmp_path / kind
    eval_model.main(["--type", kind, "--quick", "--vis_count", "1", "--max_examples", "2", "--baseline_checkpoint", "none",
                     "--load_checkpoint", str(trained[kind]), "--export_points" if kind == "point" else "--export_mesh",
                     "--output_dir", str(out), *data])
    model, cfg = eval_model.load_model(trained[kind], torch.device("cpu"), kind)
    pred = eval_model.predict(model, collate([_dataset(model, cfg, data)[0]]))
    if kind == "point":
        cloud = trimesh.load(out / "example_0_points.ply", process=False)
        assert np.allclose(cloud.vertices, pred[0].detach().numpy(), atol=1e-6)
    else:
        mesh = trimesh.load(out / "example_0_mesh.ply", process=False)
        assert np.allclose(mesh.vertices, pred.verts_list()[0].detach().numpy(), atol=1e-6)
        assert np.array_equal(mesh.faces, pred.faces_list()[0].numpy()) and (out / "example_0_mesh.obj").is_file()


def test_export_flags_refuse_the_other_kinds(trained, data, tmp_path):
    from l3d.errors import UserError

    with pytest.raises(UserError, match="--export_mesh: .*--type point"):
        eval_model.main(["--type", "point", "--quick", "--vis_count", "1", "--max_examples", "1", "--baseline_checkpoint",
                         "none", "--load_checkpoint", str(trained["point"]), "--export_mesh", "--output_dir",
                         str(tmp_path), *data])
    with pytest.raises(UserError, match="--export_points: .*--type vox"):
        eval_model.main(["--type", "vox", "--quick", "--vis_count", "1", "--max_examples", "1", "--baseline_checkpoint",
                         "none", "--load_checkpoint", str(trained["vox"]), "--export_points", "--output_dir",
                         str(tmp_path), *data])
