"""End-to-end runs of every SDS script at --quick size through the tiny random checkpoint."""

import csv
import json

import pytest
import torch

from a4_gaussians_diffusion.diffusion import image_optimization, mesh_optimization, nerf_optimization
from a4_gaussians_diffusion.diffusion.sds import StableDiffusion
from a4_gaussians_diffusion.diffusion.tiny import build_tiny_pipeline
from l3d.media import load_image
from l3d.cli import run_cli


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_sd_cli"))


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def metrics(folder):
    return json.loads((folder / "metrics.json").read_text())


def common(tiny_dir, out):
    return ["--quick", "--device", "cpu", "--model", str(tiny_dir), "--output_dir", str(out)]


def test_image_optimization(tiny_dir, tmp_path):
    out = image_optimization.main(["--prompt", "a hamburger", "--sds_guidance", "1", "--steps", "3",
                                   "--snapshot_every", "2", *common(tiny_dir, tmp_path)])
    assert out == tmp_path / "a_hamburger_guidance"
    for name in ("final.png", "progress.png", "losses.png", "losses.csv", "TINY_PIPELINE.md", "command.txt",
                 "iters/iter_0002.png", "iters/iter_0003.png", "checkpoints/last.pt"):
        assert (out / name).is_file(), name
    m = metrics(out)
    assert m["pipeline"] == "tiny-random" and m["iterations"] == 3 and m["sds_guidance"] == 1
    assert m["data"].startswith("stand-in: tiny random diffusion pipeline")
    # the latent moved along the SDS directions (toward the UNet's denoised estimates)
    assert m["checks"]["latents_follow_sds"]["pass"] and m["latents_follow_sds"] > 0.5
    assert m["image_size"] == 64 and m["guidance_scale"] == 100
    assert m["final_sds_loss"] > 0 and m["time_per_iter_s"] > 0 and m["peak_rss_mb"] >= m["rss_before_loop_mb"] > 0
    log = rows(out / "losses.csv")
    assert [int(r["step"]) for r in log] == [0, 1, 2] and all(20 <= float(r["t"]) <= 980 for r in log)
    assert float(log[-1]["loss/sds"]) == pytest.approx(m["final_sds_loss"], rel=1e-5)
    # final.png is the decoded final latent of the checkpoint; the latent moved away from its noise init
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    init = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    assert state["step"] == 2 and float((state["model"]["latents"] - init).abs().max()) > 0.05
    sd = StableDiffusion.from_pretrained(tiny_dir, "cpu")
    decoded = sd.decode_latents(state["model"]["latents"])[0].permute(1, 2, 0)
    assert float((load_image(out / "final.png")[..., :3] - decoded).abs().max()) < 1.5 / 255
    # without guidance: its own folder, no guidance scale
    out0 = image_optimization.main(["--prompt", "a hamburger", "--sds_guidance", "0", "--iterations", "1",
                                    *common(tiny_dir, tmp_path)])
    assert out0 == tmp_path / "a_hamburger_no_guidance" and metrics(out0)["guidance_scale"] is None


def test_mesh_optimization(tiny_dir, tmp_path):
    out = mesh_optimization.main(["--prompt", "a zebra", "--iterations", "2", "--view_dep_text", "1", "--lr", "0.01",
                                  *common(tiny_dir, tmp_path)])
    for name in ("initial_mesh.gif", "initial_mesh.png", "final_mesh.gif", "final_mesh.png", "losses.csv",
                 "iters/iter_0002.png", "TINY_PIPELINE.md", "checkpoints/last.pt"):
        assert (out / name).is_file(), name
    m = metrics(out)
    assert m["pipeline"] == "tiny-random" and m["iterations"] == 2 and m["render_size"] == 64
    # the full SDS gradient reaches the colour field through the VAE encoder and the renderer
    assert m["checks"]["sds_reaches_texture"]["pass"] and abs(m["sds_gradient_check"] - 1) < 0.05
    assert len(m["gradient_checks"]) == 2 and m["texture_change"] > 0
    assert "a1/cow.obj" in m["data"] or "procedural" in m["data"]
    assert m["num_faces"] > 0 and m["final_sds_loss"] > 0
    log = rows(out / "losses.csv")
    assert len(log) == 2 and all(-180 <= float(r["azimuth"]) < 180 for r in log)
    # the colour field was trained: the turntables differ; the rendered cow is not the white background
    a = load_image(out / "initial_mesh.png")[..., :3]
    b = load_image(out / "final_mesh.png")[..., :3]
    assert float((a - b).abs().max()) > 3 / 255
    assert float((a < 0.9).any(-1).float().mean()) > 0.05


def test_nerf_optimization_and_resume(tiny_dir, tmp_path):
    import imageio_ffmpeg

    args = ["--prompt", "a standing corgi dog", "--view_dep_text", "1", *common(tiny_dir, tmp_path)]
    out = nerf_optimization.main(args + ["--iters", "3"])
    assert out == tmp_path / "a_standing_corgi_dog_view_dep"
    for name in ("videos/rgb.mp4", "videos/depth.mp4", "rgb.png", "depth.png", "losses.png", "TINY_PIPELINE.md",
                 "checkpoints/last.pt", "iters/iter_0003_lambertian.png"):
        assert (out / name).is_file(), name
    n, secs = imageio_ffmpeg.count_frames_and_secs(str(out / "videos" / "rgb.mp4"))
    assert n == 24 and secs >= 2.0  # --quick: 24 frames, at least 2 s per turn
    for name in ("rgb.webm", "depth.webm"):  # the browsers' twins of the MP4s
        assert (out / "videos" / name).stat().st_size > 0
    meta = next(imageio_ffmpeg.read_frames(str(out / "videos" / "depth.mp4")))
    assert tuple(meta["size"]) == (32, 32)
    m = metrics(out)
    assert m["pipeline"] == "tiny-random" and m["view_dep_text"] == 1 and m["render_size"] == [16, 16]
    assert len(m["gradient_checks"]) == 3 and 0.3 < m["sds_gradient_check"] < 2  # median of 3 probed steps
    assert m["checks"]["view_text_changes_guidance"]["pass"] and m["view_text_effect"] > 0.01
    lo, hi = m["video_depth_range"]
    assert 0 <= lo <= hi <= 3.2 + 1.0  # expected ray distance never exceeds the far bound
    log = rows(out / "losses.csv")
    # latent_iter_ratio 0.2 of 3 iterations: step 0 is the normal-shaded latent warm-up
    assert [r["shading"] for r in log][0] == "normal" and all(r["shading"] in ("lambertian", "textureless")
                                                              for r in log[1:])
    for r in log:
        total = float(r["loss/sds"]) + 1e-2 * float(r["loss/orient"]) \
            + 1e-3 * min(1.0, 2 * int(r["step"]) / 3) * float(r["loss/entropy"])
        assert float(r["loss/total"]) == pytest.approx(total, rel=1e-4)
    # --resume continues after the last checkpoint
    out2 = nerf_optimization.main(args + ["--iters", "4", "--resume"])
    assert out2 == out
    log = rows(out / "losses.csv")
    assert [int(r["step"]) for r in log] == [0, 1, 2, 3]
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 3
    assert metrics(out)["iterations"] == 4


def test_checks_fail_when_the_sds_gradient_has_the_wrong_sign(tiny_dir, tmp_path, monkeypatch):
    from a4_gaussians_diffusion.diffusion import sds

    real = sds.sds_surrogate
    monkeypatch.setattr(sds, "sds_surrogate", lambda latents, grad: -real(latents, grad))
    out = image_optimization.main(["--iterations", "3", *common(tiny_dir, tmp_path)])
    m = metrics(out)
    assert m["latents_follow_sds"] < -0.5 and not m["checks"]["latents_follow_sds"]["pass"]
    out = mesh_optimization.main(["--iterations", "1", "--gif_frames", "2", *common(tiny_dir, tmp_path)])
    m = metrics(out)
    assert m["sds_gradient_check"] == pytest.approx(-1, abs=0.05) and not m["checks"]["sds_reaches_texture"]["pass"]


def test_missing_model_is_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit) as exc:
        run_cli(image_optimization.main, ["--model", "someone/not-cached-model", "--quick",
                                          "--output_dir", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "hf download someone/not-cached-model" in err[0]
    assert not any(tmp_path.iterdir())  # nothing written for a run that could not start
    with pytest.raises(SystemExit) as exc:
        run_cli(nerf_optimization.main, ["--model", str(tmp_path / "no_such_folder"), "--quick",
                                         "--output_dir", str(tmp_path)])
    assert exc.value.code == 2 and "not found" in capsys.readouterr().err


@pytest.mark.parametrize("mod", [image_optimization, mesh_optimization, nerf_optimization])
def test_help_documents_the_flags(mod, capsys):
    with pytest.raises(SystemExit) as exc:
        mod.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--prompt", "--model", "--guidance_scale", "--precision", "--cpu_offload", "--attention_slicing",
                 "--quick", "--resume"):
        assert flag in text


def test_demo_plans_every_part_with_the_tiny_checkpoint(tmp_path, monkeypatch):
    """The demo (run in full by `make demo`) builds the tiny checkpoint and runs every CLI at --quick
    through it, then trains the quick small prior and runs image SDS and DreamFusion with it."""
    from a4_gaussians_diffusion.diffusion import demo
    from a4_gaussians_diffusion.diffusion.tiny import is_tiny

    planned = []
    monkeypatch.setattr(demo, "run_steps", lambda steps: planned.extend(steps))
    demo.main(["--output_root", str(tmp_path)])
    modules = [m.split(".")[-1] for m, _ in planned]
    assert modules == ["image_optimization", "image_optimization", "mesh_optimization", "nerf_optimization",
                       "nerf_optimization", "train_prior", "image_optimization", "nerf_optimization"]
    tiny, prior = planned[:5], planned[5:]
    for _, argv in tiny:
        assert "--quick" in argv and is_tiny(argv[argv.index("--model") + 1])
        assert argv[argv.index("--output_dir") + 1].startswith(str(tmp_path / "diffusion_"))
    prior_dir = prior[0][1][prior[0][1].index("--output_dir") + 1]
    assert "--quick" in prior[0][1] and prior_dir.startswith(str(tmp_path / "small_prior"))
    for _, argv in prior[1:]:  # both load the pipeline the first step writes
        assert argv[argv.index("--model") + 1] == f"{prior_dir}/pipeline"
    assert "small_prior" in prior[2][1]  # DreamFusion with the prior's preset
    planned = tiny
    assert ["--view_dep_text", "1"] == planned[-1][1][2:4] and planned[1][1][3] == "0"
