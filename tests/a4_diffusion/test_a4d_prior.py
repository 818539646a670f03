"""The small prior trained here: a short training run, reloaded through the SDS loader with its own
sizes and labels; resume and bad input of train_prior."""

import csv
import json

import pytest
import torch

from a4_gaussians_diffusion.diffusion import image_optimization, train_prior
from a4_gaussians_diffusion.diffusion.common import PRIOR_DATA, pipeline_label, run_data_label
from a4_gaussians_diffusion.diffusion.renders import COLOURS, caption, parse_caption
from a4_gaussians_diffusion.diffusion.sds import StableDiffusion
from l3d.cli import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = ["--quick", "--device", "cpu", "--no_cow", "--no_tensorboard"]


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    out = tmp_path_factory.mktemp("prior")
    return train_prior.main(TINY + ["--output_dir", str(out), "--num_images", "48", "--vae_steps", "4",
                                    "--steps", "4", "--sample_steps", "2"])


def test_word_tokenizer_makes_each_caption_word_one_token(prior):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(prior / "tokenizer", local_files_only=True)
    ids = tok("a purple torus, back view").input_ids
    assert len(ids) == 2 + 6  # bos, a, purple, torus, ",", back, view, eos
    assert len(set(ids[1:-1])) == 6
    assert parse_caption(caption("torus", "purple", "back")) == {"shape": "torus", "colour": "purple", "view": "back"}


def test_prior_reloads_through_the_sds_loader_with_its_own_sizes(prior, tmp_path):
    sd = StableDiffusion.from_pretrained(prior, "cpu", "fp32")
    assert pipeline_label(sd, str(prior)) == train_prior.PRIOR_LABEL
    assert run_data_label(pipeline_label(sd, str(prior))) == PRIOR_DATA
    # latent size, channels, resolution and scaling factor come from the folder's configs
    assert (sd.latent_channels, sd.latent_size, sd.image_size) == (4, 4, 16)  # --quick: 16 x 16 pictures
    marker = json.loads((prior / train_prior.PRIOR_MARKER).read_text())
    assert sd.scaling_factor == pytest.approx(json.loads((prior / "vae" / "config.json").read_text())["scaling_factor"])
    assert marker["shapes"] == ["cube", "sphere", "cone", "torus"]  # --no_cow
    # the Q2 image script runs with it and labels its outputs
    out = image_optimization.main(["--model", str(prior), "--prompt", "a red cube", "--steps", "3", "--warmup", "1",
                                   "--snapshot_every", "3", "--device", "cpu", "--guidance_scale", "7.5",
                                   "--output_dir", str(tmp_path), "--no_tensorboard"])
    m = json.loads((out / "metrics.json").read_text())
    assert m["pipeline"] == train_prior.PRIOR_LABEL and "made with the small prior trained here" in m["data"]
    assert (out / "SMALL_PRIOR.md").is_file() and not (out / "TINY_PIPELINE.md").exists()


def test_train_prior_resumes_where_it_stopped(tmp_path):
    args = TINY + ["--output_dir", str(tmp_path), "--num_images", "64", "--vae_steps", "3", "--sample_steps", "2",
                   "--save_every", "2"]
    train_prior.main(args + ["--steps", "3"])
    train_prior.main(args + ["--steps", "5", "--resume"])
    with open(tmp_path / "losses.csv", newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == list(range(8))  # 3 VAE + 5 diffusion steps, none repeated
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"] == 7
    marker = json.loads((tmp_path / "pipeline" / train_prior.PRIOR_MARKER).read_text())
    assert marker["trained_steps"] == 8 and marker["colours"] == list(COLOURS)
    # a resume with other model sizes is refused
    with pytest.raises(Exception, match="same settings"):
        train_prior.main(args + ["--steps", "6", "--resume", "--unet_channels", "8"])


def test_bad_image_size_is_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run_cli(train_prior.main, TINY + ["--output_dir", str(tmp_path), "--image_size", "30"])
    assert e.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--image_size" in err[0]


def test_colour_augment_recolours_the_chosen_share_only():
    from a4_gaussians_diffusion.diffusion.renders import render_set

    x = render_set(64, seed=3, size=16, shapes=("cube", "sphere"), show_progress=False).float_images() * 2 - 1
    same = train_prior.colour_augment(x, torch.Generator().manual_seed(0), 0.0)
    assert torch.equal(same, x)
    y = train_prior.colour_augment(x, torch.Generator().manual_seed(0), 0.5)
    changed = (y - x).flatten(1).abs().amax(1) > 1e-6
    assert 16 <= int(changed.sum()) <= 48 and float(y.min()) >= -1 and float(y.max()) <= 1
    assert torch.equal(y, train_prior.colour_augment(x, torch.Generator().manual_seed(0), 0.5))  # reproducible
    # the renders have five saturated colours on a white background; recoloured pictures reach
    # tinted backgrounds and grey objects
    corner = ((x[:, :, 0, 0] + 1) / 2).amin(1)  # darkest channel of the top-left pixel
    corner_y = ((y[changed][:, :, 0, 0] + 1) / 2).amin(1)
    assert float((corner > 0.9).float().mean()) > 0.9 and float((corner_y < 0.9).float().mean()) > 0.3

    def greyish_object_pixels(im):  # object pixels (a channel well below white) whose channels nearly agree
        v = (im + 1) / 2
        return int(((v.amin(1) < 0.6) & (v.amax(1) - v.amin(1) < 0.08)).sum())

    assert greyish_object_pixels(y[changed]) > 2 * greyish_object_pixels(x[changed])  # 498 against 160 (the noses)
