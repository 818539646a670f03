"""The A4 Q2 sweep (every prompt, every variant, one command) through the tiny random checkpoint,
and the precision / memory flags of the three SDS scripts."""

import json
from pathlib import Path

import pytest
import torch

from a4_gaussians_diffusion.diffusion import image_optimization, sweep
from a4_gaussians_diffusion.diffusion.sds import StableDiffusion
from a4_gaussians_diffusion.diffusion.tiny import build_tiny_pipeline
from l3d.cli import run_cli
from l3d.errors import UserError
from l3d.media import load_image

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SMALL_YAML = """
image:
  prompts:
    - {prompt: "a hamburger", source: course}
    - {prompt: "a red sports car", source: project}
  args: ["--steps", "2", "--snapshot_every", "1"]
mesh:
  prompts:
    - {prompt: "a cow with tiger stripes", source: project}
    - {prompt: "a zebra-striped cow", source: project}
  args: ["--steps", "1", "--num_frames", "2", "--image_size", "32", "--probe_every", "100"]
nerf:
  prompts:
    - {prompt: "a standing corgi dog", source: course}
    - {prompt: "a hamburger", source: course}
  args: ["--steps", "2", "--num_frames", "2", "--render_height", "8", "--render_width", "8", "--n_samples", "4",
         "--n_importance", "0", "--probe_every", "100"]
"""


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_sd_sweep"))


def test_sweep_runs_every_prompt_and_variant_then_skips_them(tmp_path, monkeypatch):
    cfg = tmp_path / "prompts.yaml"
    cfg.write_text(SMALL_YAML)
    out = tmp_path / "sweep"
    argv = ["--config", str(cfg), "--model", "tiny", "--quick", "--device", "cpu", "--output_dir", str(out)]
    assert sweep.main(argv) == 0
    expected = {  # run folder -> files the part writes
        "image/a_hamburger_guidance": ["final.png"], "image/a_hamburger_no_guidance": ["final.png"],
        "image/a_red_sports_car_guidance": ["final.png"], "image/a_red_sports_car_no_guidance": ["final.png"],
        "mesh/a_cow_with_tiger_stripes": ["initial_mesh.png", "final_mesh.png", "final_mesh.gif"],
        "mesh/a_zebra-striped_cow": ["initial_mesh.png", "final_mesh.png", "final_mesh.gif"],
        "nerf/a_standing_corgi_dog": ["rgb.png", "depth.png", "videos/rgb.mp4"],
        "nerf/a_standing_corgi_dog_view_dep": ["rgb.png", "depth.png", "videos/rgb.mp4"],
        "nerf/a_hamburger": ["rgb.png", "depth.png", "videos/depth.mp4"],
        "nerf/a_hamburger_view_dep": ["rgb.png", "depth.png", "videos/depth.mp4"],
    }
    for folder, files in expected.items():
        for name in files + ["metrics.json", "command.txt"]:
            assert (out / folder / name).is_file(), f"{folder}/{name}"
        m = json.loads((out / folder / "metrics.json").read_text())
        assert m["pipeline"] == "tiny-random" and m["stopped_at_step"] is None
        assert m["peak_memory_mb"] > 0 and m["peak_memory_kind"] == "process_peak_rss" and m["time_per_iter_s"] > 0
        assert m["memory_options"] == {"dtype": "float32", "attention_slicing": False, "vae_slicing": False,
                                       "vae_tiling": False, "cpu_offload": "none"}
    # each run's command.txt reproduces it alone, with the YAML's flags after the sweep's
    cmd = (out / "image/a_red_sports_car_no_guidance/command.txt").read_text()
    assert "a4_gaussians_diffusion.diffusion.image_optimization" in cmd and "--sds_guidance 0" in cmd
    assert cmd.index("--quick") < cmd.index("--steps 2")
    assert json.loads((out / "image/a_hamburger_guidance/metrics.json").read_text())["iterations"] == 2
    # the summary lists every run once, with its numbers and where it came from
    table = [ln for ln in (out / "results.md").read_text().splitlines() if ln.startswith("| ") and "---" not in ln]
    runs = [ln.split(" | ") for ln in table[1:]]
    assert len(runs) == 10 and all(r[4] == "done" for r in runs)
    assert {(r[0].lstrip("| "), r[1], r[3]) for r in runs} == {
        ("image", p, v) for p in ("a hamburger", "a red sports car") for v in ("guidance", "no guidance")} | {
        ("mesh", p, "texture") for p in ("a cow with tiger stripes", "a zebra-striped cow")} | {
        ("nerf", p, v) for p in ("a standing corgi dog", "a hamburger") for v in ("plain text", "view-dependent text")}
    assert {r[2] for r in runs if r[1] == "a hamburger"} == {"course"} and runs[2][2] == "project"
    for r in runs:
        assert float(r[6]) > 0 and float(r[7]) > 0 and float(r[8]) > 0 and float(r[9]) > 0  # wall, s/iter, loss, MiB
    # one grid per part: a row per prompt (banner + 192 px cells, 4 px gaps), a column per variant
    for part, ncol in (("image", 2), ("mesh", 2), ("nerf", 2)):
        grid = load_image(out / f"{part}_grid.png")
        assert grid.shape[0] > 2 * 192 and float(grid.std()) > 0.01, part
    nerf_grid = load_image(out / "nerf_grid.png")
    assert nerf_grid.shape[0] > 2 * 2 * 192  # RGB over depth in each cell
    m = json.loads((out / "metrics.json").read_text())
    assert m["runs"] == 10 and m["runs_done"] == 10 and m["runs_failed"] == 0

    # a second sweep skips every finished run; --only reruns nothing else; a changed flag reruns that part
    calls = []
    real = sweep.run_one
    monkeypatch.setattr(sweep, "run_one", lambda run, resume: calls.append(run.key) or real(run, resume))
    assert sweep.main(argv) == 0 and calls == []
    assert json.loads((out / "metrics.json").read_text())["runs_skipped"] == 10
    # a run marked stopped (Ctrl-C) continues from its checkpoint
    state = json.loads((out / "sweep_state.json").read_text())
    state["image | a hamburger | guidance"]["status"] = "stopped"
    (out / "sweep_state.json").write_text(json.dumps(state))
    resumed = []
    monkeypatch.setattr(sweep, "run_one", lambda run, resume: resumed.append((run.key, resume)) or real(run, resume))
    assert sweep.main(argv) == 0 and resumed == [("image | a hamburger | guidance", True)]
    assert "--resume" in (out / "image/a_hamburger_guidance/command.txt").read_text()
    # --only with a changed flag: that part's runs again (stand-in runs that reuse the folders), nothing else
    folders = {k: Path(v["folder"]) for k, v in json.loads((out / "sweep_state.json").read_text()).items()}
    monkeypatch.setattr(sweep, "run_one", lambda run, resume: calls.append(run.key) or (folders[run.key], 0.1))
    assert sweep.main(argv + ["--only", "mesh", "--seed", "1"]) == 0
    assert calls == ["mesh | a cow with tiger stripes | texture", "mesh | a zebra-striped cow | texture"]
    table = (out / "results.md").read_text()
    assert "| image |" not in table and table.count("| mesh |") == 2 and table.count("| done |") == 2


def test_sweep_without_weights_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit) as exc:
        run_cli(sweep.main, ["--output_dir", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "hf download stabilityai/stable-diffusion-2-1-base" in err[0] and "--model tiny" in err[0]
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize("text, says", [
    ("image: [a, b", "valid YAML, found a syntax error at line"),
    ("- a hamburger\n", "a mapping with the parts image, mesh, nerf, found list"),
    ("images:\n  prompts: [{prompt: x, source: course}]\n", "unknown key(s) images"),
    ("image:\n  prompts: []\n", "image.prompts: expected a non-empty list"),
    ("image:\n  prompts: [{prompt: x, source: blog}]\n", "image.prompts[0].source: expected course or project"),
    ("mesh:\n  prompts: [{prompt: '  ', source: course}]\n", "mesh.prompts[0].prompt: expected a non-empty text"),
    ("nerf:\n  prompts: [{prompt: x, source: course}]\n  args: [--prompt, y]\n", "nerf.args: expected flags other"),
    ("nerf:\n  prompts: [{prompt: x, source: course}, {prompt: x, source: project}]\n", "each prompt once"),
])
def test_bad_prompt_file_is_one_clear_line(tmp_path, capsys, text, says):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(SystemExit) as exc:
        run_cli(sweep.main, ["--config", str(cfg), "--model", "tiny", "--output_dir", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {cfg}") and says in err[0], err
    assert not (tmp_path / "out").exists()  # nothing built or written before the config is checked


def test_shipped_prompt_file_lists_the_whole_section():
    cfg = sweep.load_prompt_config(sweep.DEFAULT_CONFIG)
    assert len(cfg["image"].prompts) == 4 and len(cfg["mesh"].prompts) == 3 and len(cfg["nerf"].prompts) >= 2
    course = {p.text for part in cfg.values() for p in part.prompts if p.source == "course"}
    assert course == {"a hamburger", "a standing corgi dog"}  # the only prompts the course's text names
    runs = sweep.plan_runs(cfg, None, ["--model", "m"], sweep.DEFAULT_CONFIG.parent)
    assert len(runs) == 4 * 2 + 3 + len(cfg["nerf"].prompts) * 2
    assert [r.argv[-2:] for r in runs if r.part == "nerf"][:2] == [["--view_dep_text", "0"], ["--view_dep_text", "1"]]


# ----------------------------------------------------------------------------------------------
# precision and memory flags
# ----------------------------------------------------------------------------------------------
def test_memory_flags_reach_the_modules(tiny_dir):
    plain = StableDiffusion.from_pretrained(tiny_dir, "cpu")
    low = StableDiffusion.from_pretrained(tiny_dir, "cpu", attention_slicing=True, vae_slicing=True,
                                          vae_tiling=True, cpu_offload="model")
    kinds = {type(p).__name__ for p in plain.unet.attn_processors.values()}
    assert kinds and "SlicedAttnProcessor" not in kinds
    assert {type(p).__name__ for p in low.unet.attn_processors.values()} == {"SlicedAttnProcessor"}
    assert not plain.vae.use_slicing and not plain.vae.use_tiling
    assert low.vae.use_slicing and low.vae.use_tiling
    assert low.vae.tile_sample_min_size == low.image_size // 2 == 32 and low.vae.tile_latent_min_size == 8
    assert type(low.unet._hf_hook).__name__ == "CpuOffload" and not hasattr(plain.unet, "_hf_hook")
    # tiled encoding really runs tile by tile, keeps the latent's shape and passes the gradient on
    calls = []
    real = low.vae._tiled_encode
    low.vae._tiled_encode = lambda x: calls.append(x.shape) or real(x)
    img = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    z = low.encode_images(img, sample=False)
    assert calls and z.shape == plain.encode_images(img, sample=False).shape == (2, 4, 16, 16)
    z.square().sum().backward()
    assert float(img.grad.abs().sum()) > 0
    # the UNet's output is the same with sliced attention and model offload
    x_t, t = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1)), torch.tensor([300])
    c, u = plain.text_embeddings("a hamburger"), plain.text_embeddings("")
    torch.testing.assert_close(low.predict_noise(x_t, t, c, u, 10.0), plain.predict_noise(x_t, t, c, u, 10.0),
                               rtol=1e-4, atol=1e-4)


def test_script_flags_are_recorded_and_fp16_on_cpu_is_refused(tiny_dir, tmp_path, capsys):
    out = image_optimization.main(["--quick", "--steps", "1", "--device", "cpu", "--model", str(tiny_dir),
                                   "--output_dir", str(tmp_path), "--attention_slicing", "--vae_tiling",
                                   "--cpu_offload"])
    m = json.loads((out / "metrics.json").read_text())
    assert m["memory_options"] == {"dtype": "float32", "attention_slicing": True, "vae_slicing": False,
                                   "vae_tiling": True, "cpu_offload": "sequential"}
    assert m["peak_memory_mb"] == m["peak_rss_mb"] > 0
    for flags in (["--fp16"], ["--precision", "fp16"]):
        with pytest.raises(SystemExit) as exc:
            run_cli(image_optimization.main, ["--quick", "--device", "cpu", "--model", str(tiny_dir),
                                              "--output_dir", str(tmp_path / "fp16"), *flags])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "needs a CUDA device" in err[0] and "drop --fp16" in err[0]
    assert not (tmp_path / "fp16").exists()
    with pytest.raises(UserError, match="needs a CUDA device"):  # the sweep says it once, before any run
        sweep.main(["--fp16", "--device", "cpu", "--model", "tiny", "--output_dir", str(tmp_path / "sw")])
    assert not (tmp_path / "sw").exists()
    with pytest.raises(UserError, match="not together with --precision fp32"):
        image_optimization.main(["--fp16", "--precision", "fp32", "--device", "cpu", "--model", str(tiny_dir),
                                 "--output_dir", str(tmp_path / "both")])


def test_a_stopped_run_stops_the_sweep_and_a_failed_one_does_not(tmp_path, monkeypatch):
    """Ctrl-C inside a run (its metrics say stopped_at_step) ends the sweep after that run; an input
    error in a run is listed as failed and the sweep goes on (exit status 1)."""
    cfg = tmp_path / "prompts.yaml"
    cfg.write_text("image:\n  prompts: [{prompt: a, source: course}, {prompt: b, source: project}]\n")
    monkeypatch.setattr(sweep, "_resolve_weights", lambda model, root: model)
    seen = []

    def fake(run, resume, stop_first=True):
        seen.append(run.key)
        folder = tmp_path / "out" / run.part / run.key.replace(" | ", "_").replace(" ", "_")
        folder.mkdir(parents=True)
        stopped = 3 if stop_first and len(seen) == 1 else None
        (folder / "metrics.json").write_text(json.dumps({"stopped_at_step": stopped, "iterations": 10}))
        return folder, 0.5

    monkeypatch.setattr(sweep, "run_one", fake)
    argv = ["--config", str(cfg), "--model", "m", "--output_dir", str(tmp_path / "out")]
    assert sweep.main(argv) == 0 and seen == ["image | a | guidance"]
    state = json.loads((tmp_path / "out" / "sweep_state.json").read_text())
    assert state["image | a | guidance"]["status"] == "stopped" and "image | a | no guidance" not in state

    def failing(run, resume):
        seen.append(run.key)
        raise UserError(f"bad thing in {run.prompt.text}")

    seen.clear()
    monkeypatch.setattr(sweep, "run_one", failing)
    assert sweep.main(argv + ["--rerun"]) == 1 and len(seen) == 4
    table = (tmp_path / "out" / "results.md").read_text()
    assert table.count("| failed: bad thing in") == 4
