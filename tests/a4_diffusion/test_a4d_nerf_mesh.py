"""DreamFusion NeRF --export_mesh: a quick run writes a mesh of its density that trimesh opens."""

import json

import pytest
import trimesh

from a4_gaussians_diffusion.diffusion import nerf_optimization
from a4_gaussians_diffusion.diffusion.tiny import build_tiny_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_quick_dreamfusion_exports_a_mesh(tmp_path):
    tiny = build_tiny_pipeline(tmp_path / "tiny")
    out = nerf_optimization.main(["--quick", "--device", "cpu", "--model", str(tiny), "--output_dir",
                                  str(tmp_path / "runs"), "--iters", "2", "--export_mesh",
                                  "--mesh_resolution", "40"])
    mesh = trimesh.load(out / "mesh.ply", force="mesh")
    m = json.loads((out / "metrics.json").read_text())
    assert len(mesh.faces) > 0 and m["mesh"]["faces"] == len(mesh.faces)
    assert m["mesh"]["vertices"] == len(mesh.vertices) and m["mesh"]["level"] == nerf_optimization.MESH_LEVEL
    # the field is kept inside the unit ball: every vertex lies in it (bound 1)
    assert float((mesh.vertices ** 2).sum(1).max()) <= 1.0 + 1e-3
    # the surface of the density level set is closed around the blob (a watertight mesh)
    assert mesh.is_watertight and mesh.volume > 0
    assert (out / "mesh.obj").is_file()


def test_unreachable_mesh_level_is_one_line_error(tmp_path, capsys):
    from l3d.cli import run_cli

    tiny = build_tiny_pipeline(tmp_path / "tiny")
    with pytest.raises(SystemExit) as e:
        run_cli(nerf_optimization.main, ["--quick", "--device", "cpu", "--model", str(tiny), "--output_dir",
                                         str(tmp_path / "runs"), "--iters", "1", "--export_mesh",
                                         "--mesh_resolution", "16", "--mesh_level", "1e9"])
    assert e.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and "--mesh_level" in err[-1]
