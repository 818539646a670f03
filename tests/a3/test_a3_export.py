"""a3_volume_surface.export: meshes of a trained run's SDF and density from its checkpoint alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from a3_volume_surface import export
from a3_volume_surface.losses import pretrain_sphere
from a3_volume_surface.model import Model
from l3d.errors import UserError
from l3d.run import save_checkpoint

trimesh = pytest.importorskip("trimesh")
RADIUS = 0.8
ALPHA = 10.0

SURFACE_CFG = {
    "type": "train_images", "part": "part_7",
    "implicit_function": {"type": "neural_surface", "n_harmonic_functions_xyz": 2, "n_layers_distance": 3,
                          "n_hidden_neurons_distance": 32, "n_layers_color": 1, "n_hidden_neurons_color": 16},
    "renderer": {"type": "volume_sdf", "density": "volsdf", "alpha": ALPHA, "beta": 0.05},
    "sampler": {"type": "stratified", "n_pts_per_ray": 32, "min_depth": 1.0, "max_depth": 6.0, "bound_radius": 1.25},
    "geometry": {"scale": 1.25, "grid_size": 32, "thresh": 0.0},
}
NERF_CFG = {
    "type": "train_nerf", "part": "part_3",
    "implicit_function": {"type": "nerf", "n_harmonic_functions_xyz": 2, "n_hidden_neurons_xyz": 16,
                          "n_hidden_neurons_dir": 8, "n_layers_xyz": 2, "append_xyz": []},
    "renderer": {"type": "volume"},
    "sampler": {"type": "stratified", "n_pts_per_ray": 8, "min_depth": 2.0, "max_depth": 6.0},
    "gif": {"radius": 4.0, "n_poses": 4},
}


@pytest.fixture(scope="module")
def sdf_run(tmp_path_factory):
    """A run folder whose checkpoint holds a small neural SDF fitted to a sphere of RADIUS."""
    torch.manual_seed(0)
    model = Model(SURFACE_CFG)
    g = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is ~30x faster than two on a busy machine
    try:
        loss = pretrain_sphere(model.implicit_fn, 200, 256, 5e-3, [[-1.25] * 3, [1.25] * 3], RADIUS, g)
    finally:
        torch.set_num_threads(threads)
    assert loss < 1e-3
    run = tmp_path_factory.mktemp("a3_run")
    save_checkpoint(run / "checkpoints" / "ckpt_0.pt", {"model": model.state_dict(), "config": SURFACE_CFG, "step": 0})
    from omegaconf import OmegaConf

    (run / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(SURFACE_CFG)))  # as a run writes it
    return run, model


def test_sdf_export_from_checkpoint(sdf_run, capsys):
    run, model = sdf_run
    metrics = export.main(["--load_checkpoint", str(run), "--mesh_resolution", "40", "--device", "cpu"])
    assert metrics["field"] == "sdf" and metrics["level"] == 0.0 and metrics["bound"] == 1.25
    assert metrics["bound_from"] == "geometry.scale"
    ply = trimesh.load(run / "mesh.ply", process=False)
    obj = trimesh.load(run / "mesh.obj", process=False, force="mesh")
    assert len(ply.vertices) == len(obj.vertices) == metrics["vertices"] > 500
    assert len(ply.faces) == len(obj.faces) == metrics["faces"]
    v = torch.as_tensor(np.asarray(ply.vertices), dtype=torch.float32)
    # on the network's own zero level set (marching cubes interpolates linearly inside a voxel) ...
    with torch.no_grad():
        d = model.implicit_fn.get_distance(v)
    voxel = 2.5 / 39
    assert float(d.abs().max()) < 0.2 * voxel
    # ... which is the sphere it was fitted to, wound outwards (positive volume)
    assert abs(float(v.norm(dim=-1).mean()) - RADIUS) < 0.02
    assert ply.volume == pytest.approx(4 / 3 * np.pi * RADIUS ** 3, rel=0.06)
    cols = np.asarray(ply.visual.vertex_colors)[:, :3].astype(float) / 255
    with torch.no_grad():
        expected = model.implicit_fn.get_color(v).numpy()
    assert np.abs(cols - expected).max() <= 1 / 255 + 1e-6
    saved = json.loads((run / "metrics.json").read_text())["mesh_export"]
    assert saved["faces"] == metrics["faces"] and saved["files"]["mesh.ply"] == (run / "mesh.ply").stat().st_size
    assert "wrote" in capsys.readouterr().out


def test_density_export_of_an_sdf_model_has_inside_above(sdf_run, tmp_path):
    run, model = sdf_run
    ckpt = run / "checkpoints" / "ckpt_0.pt"
    # VolSDF density alpha Psi(-d) is alpha / 2 exactly on the zero level set
    m = export.main(["--load_checkpoint", str(ckpt), "--field", "density", "--mesh_level", str(ALPHA / 2),
                     "--mesh_resolution", "40", "--output_dir", str(tmp_path), "--device", "cpu", "--no_color"])
    assert m["field"] == "density"
    mesh = trimesh.load(tmp_path / "mesh.ply", process=False)
    assert mesh.volume > 0  # outward normals with the density's inside-above sign
    assert abs(float(np.linalg.norm(mesh.vertices, axis=1).mean()) - RADIUS) < 0.02
    assert "red" not in (tmp_path / "mesh.ply").read_bytes()[:400].decode("latin-1")


def test_nerf_checkpoint_exports_density_and_refuses_sdf(tmp_path):
    torch.manual_seed(0)
    model = Model(NERF_CFG)
    run = tmp_path / "nerf_run"
    save_checkpoint(run / "checkpoints" / "last.pt", {"model": model.state_dict(), "config": NERF_CFG, "step": 0})
    field, values, color = export.field_functions(model)
    assert field == "density" and color is not None
    pts = torch.rand(10, 3)
    with torch.no_grad():
        torch.testing.assert_close(values(pts), model.implicit_fn.density(pts))
        assert color(pts).shape == (10, 3)
    assert export.default_bound(NERF_CFG) == (2.0, "gif.radius - sampler.min_depth")
    with pytest.raises(UserError, match="--field"):
        export.main(["--load_checkpoint", str(run), "--field", "sdf"])
    # a level above every density on the grid: one line with the field's range, nothing written
    with pytest.raises(UserError, match=r"does not cross the box.*ranges over"):
        export.main(["--load_checkpoint", str(run), "--mesh_level", "1e6", "--mesh_resolution", "8"])
    assert not (run / "mesh.ply").exists()


def test_not_an_a3_run_is_one_line(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        export.main(["--load_checkpoint", str(tmp_path / "missing")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no checkpoint"):
        export.main(["--load_checkpoint", str(tmp_path / "empty")])
    save_checkpoint(tmp_path / "other.pt", {"weights": torch.zeros(2)})
    with pytest.raises(UserError, match="A3 training run"):
        export.main(["--load_checkpoint", str(tmp_path / "other.pt")])


def test_render_path_orbits_a_trained_run(sdf_run, tmp_path):
    import imageio.v3 as iio

    from l3d.render_path import main

    run, _ = sdf_run
    out = tmp_path / "orbit"
    m = main(["--scene", str(run), "--num_frames", "3", "--image_size", "16", "--radius", "3",
              "--focal_length", "1.5", "--output_dir", str(out), "--device", "cpu"])
    assert m["frames"] == 3 and m["data"].startswith("A3 part_7")
    frames = iio.imread(out / "orbit.gif")[..., :3].astype(float)
    assert frames.shape[1:] == (16, 16, 3)
    # the sphere of radius 0.8 seen from 3 units with focal 1.5 covers about pi (0.4 * 8)^2 / 256 of the image
    lit = (frames.sum(-1) > 30).mean(axis=(1, 2))
    assert bool((lit > 0.15).all()) and bool((lit < 0.7).all())
