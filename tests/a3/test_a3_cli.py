"""End-to-end runs of every Assignment 3 config at its quick size (in-process Hydra calls), resume,
errors and --help."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from a3_volume_surface import surface_rendering_main, volume_rendering_main

ROOT = Path(__file__).resolve().parents[2]
VOLUME = ("box", "sphere", "train_box", "nerf_lego", "nerf_lego_highres", "nerf_lego_hierarchical", "nerf_materials",
          "nerf_materials_highres", "nerf_sparse")
SURFACE = ("torus_surface", "sphere_surface", "complex_scene", "points_surface", "volsdf_surface", "volsdf_sparse",
           "neus_surface")


@pytest.fixture(scope="module")
def scene_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("a3_scenes")


def run(config, out, *overrides, module=None):
    """Run ``--config-name=config quick=true output_dir=out`` in-process; return metrics.json."""
    module = module or (volume_rendering_main if config in VOLUME else surface_rendering_main)
    old = sys.argv
    sys.argv = ["prog", f"--config-name={config}", "quick=true", f"output_dir={out}", "device=cpu", *overrides]
    try:
        module.main()
    finally:
        sys.argv = old
    return json.loads((Path(out) / "metrics.json").read_text())


def test_every_config_is_covered():
    names = {p.stem for p in (ROOT / "configs" / "a3").glob("*.yaml")} - {"a3_common"}
    assert names == set(VOLUME) | set(SURFACE)


def test_box_and_sphere_render(tmp_path):
    m = run("box", tmp_path / "box")
    assert m["frames"] == 4 and m["image_size"] == [64, 64]
    for f in ("part_1.gif", "part_1.png", "grid.png", "rays.png", "sample_points.png", "depth.png", "command.txt"):
        assert (tmp_path / "box" / f).exists(), f
    assert "volume_rendering_main" in (tmp_path / "box" / "command.txt").read_text()
    m2 = run("sphere", tmp_path / "sphere", "visualize.enabled=false")
    assert (tmp_path / "sphere" / "part_1_sphere.gif").exists() and 0 < m2["mean_color"] < m["mean_color"] * 1.5


def test_train_box_recovers_the_box(tmp_path, capsys):
    m = run("train_box", tmp_path)
    center, sides = m["box_center"], m["box_side_lengths"]
    for got, want in zip(center + sides, [0.25, 0.25, 0.0, 2.0, 1.5, 1.5]):
        assert abs(got - want) < 0.02, (center, sides)
    out = capsys.readouterr().out
    assert "Box center: (0.25, 0.25, 0.00)" in out and "Box side lengths: (2.00, 1.50, 1.50)" in out
    for f in ("part_2.gif", "part_2_before_training.png", "part_2_after_training.png", "losses.png", "losses.csv"):
        assert (tmp_path / f).exists(), f


def test_nerf_trains_and_resumes_to_the_same_epoch(tmp_path, scene_cache):
    out = tmp_path / "nerf"
    m = run("nerf_lego", out, f"data.cache_dir={scene_cache}")
    assert m["epochs"] == 2 and m["start_epoch"] == 0 and m["steps"] == 6 and m["test_views"] == 3
    assert m["scene"].startswith(("builtin:", "file:")) and 3 < m["test_psnr"] < 60
    assert (out / "checkpoints" / "last.pt").exists() and (out / "part_3.gif").exists()
    # resume: continues at epoch 2 with the saved weights, optimizer and schedule
    m = run("nerf_lego", out, f"data.cache_dir={scene_cache}", "training.resume=true", "training.num_epochs=3")
    assert m["start_epoch"] == 2 and m["epochs"] == 3 and m["steps"] == 3
    rows = (out / "losses.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2"]
    # resuming a finished run trains nothing more
    m = run("nerf_lego", out, f"data.cache_dir={scene_cache}", "training.resume=true", "training.num_epochs=3")
    assert m["start_epoch"] == 3 and m["steps"] == 0


@pytest.mark.parametrize("config", ["nerf_lego_highres", "nerf_lego_hierarchical", "nerf_materials",
                                   "nerf_materials_highres", "nerf_sparse"])
def test_nerf_variants(tmp_path, scene_cache, config):
    m = run(config, tmp_path, f"data.cache_dir={scene_cache}", "training.num_epochs=1")
    gif = {"nerf_lego_highres": "part_3_highres", "nerf_lego_hierarchical": "part_4_2", "nerf_materials": "part_4_1",
           "nerf_materials_highres": "part_4_1_highres", "nerf_sparse": "part_8_2_nerf"}[config]
    assert (tmp_path / f"{gif}.gif").exists() and m["epochs"] == 1
    if config == "nerf_sparse":
        assert m["train_views"] == 12  # quick scene has 12 training views (< 20)
    if "materials" in config:
        assert "materials" in m["scene"] or m["scene"].startswith("file:")


@pytest.mark.parametrize("config,gif,prims", [("torus_surface", "part_5", 1), ("sphere_surface", "part_5_sphere", 1),
                                              ("complex_scene", "part_8_1", 25)])
def test_sphere_tracing_configs(tmp_path, config, gif, prims):
    m = run(config, tmp_path)
    assert (tmp_path / f"{gif}.gif").exists() and m["primitives"] == prims and m["primitives"] != 21
    assert 0.01 < m["hit_fraction"] < 0.6


def test_points_surface(tmp_path):
    m = run("points_surface", tmp_path)
    for f in ("part_6_input.gif", "part_6.gif", "losses.png"):
        assert (tmp_path / f).exists(), f
    assert m["n_points"] in (5000, 5000 // 1) and m["epochs"] == 6
    assert {"loss", "loss_point", "loss_inter", "loss_eikonal"} <= set(m)


@pytest.mark.parametrize("config,extra", [("volsdf_surface", []), ("volsdf_sparse", []),
                                          ("neus_surface", ["renderer.s=50"])])
def test_neural_surface_from_images(tmp_path, scene_cache, config, extra):
    m = run(config, tmp_path, f"data.cache_dir={scene_cache}", *extra)
    name = {"volsdf_surface": "part_7", "volsdf_sparse": "part_8_2_volsdf", "neus_surface": "part_8_3"}[config]
    for f in (f"{name}.gif", f"{name}_geometry.gif", f"{name}_test_views.png"):
        assert (tmp_path / f).exists(), f
    assert m["density"] == ("neus" if config == "neus_surface" else "volsdf")
    if config == "neus_surface":
        assert m["s"] == 50
    if m["scene"].startswith("builtin:"):
        assert "geometry_vs_true_mesh" in m


def test_user_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run("box", tmp_path, "type=bogus")
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: unknown type 'bogus' for volume_rendering_main; expected one of render, train, train_nerf"]
    with pytest.raises(SystemExit) as e:
        run("points_surface", tmp_path, f"data.point_cloud_path={tmp_path}/missing.npz")
    assert e.value.code == 2 and "missing.npz" in capsys.readouterr().err


def test_help_and_cfg_job():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "a3_volume_surface.volume_rendering_main", "--help"], cwd=ROOT,
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "quick=true" in r.stdout and "train_box" in r.stdout
    r = subprocess.run([sys.executable, "-m", "a3_volume_surface.surface_rendering_main", "--config-name=points_surface",
                        "--cfg", "job", "training.num_epochs=5"], cwd=ROOT, capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0 and "num_epochs: 5" in r.stdout and "type: neural_surface" in r.stdout
