"""A tiny, randomly initialised Stable Diffusion checkpoint for tests, demos and benchmarks.

No weights can be downloaded in the development and CI environments, so every script here is
exercised end to end with a checkpoint folder built from configs: a small
``UNet2DConditionModel``, ``AutoencoderKL`` and ``CLIPTextModel`` with random weights, a
``DDIMScheduler`` with Stable Diffusion's noise schedule (1000 steps, scaled-linear betas
0.00085 .. 0.012) and a ``CLIPTokenizer`` whose ``vocab.json`` / ``merges.txt`` are written here
(the 256 byte symbols of byte-level BPE, the same with ``</w>``, a few merges and the two special
tokens). The folder has the layout of a diffusers checkpoint (``model_index.json``, ``unet/``,
``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``), so ``--model <folder>`` loads it
through exactly the code path of ``stabilityai/stable-diffusion-2-1-base``.

Its outputs are noise-like: it shows that the machinery works (shapes, gradients, files,
timings), not what Stable Diffusion would produce. Everything it writes is labelled
``"pipeline": "tiny-random"``.

    python -m a4_gaussians_diffusion.diffusion.tiny output/a4_gaussians_diffusion/tiny_sd
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple, Union

import torch

from l3d.cli import ScriptParser, run_cli
from l3d.errors import user_error

#: The marker written into the checkpoint folder and into every metrics.json made with it.
TINY_MARKER = "tiny_random_pipeline.json"
PIPELINE_LABEL = "tiny-random"

#: Latent side of the tiny UNet and the VAE's downsampling factor: images are 16 * 4 = 64 pixels.
TINY_LATENT_SIZE = 16
TINY_VAE_FACTOR = 4


def _bytes_to_unicode() -> Dict[int, str]:
    """GPT-2 / CLIP byte-level BPE alphabet: every byte maps to one printable unicode character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) \
        + list(range(ord("\xae"), ord("\xff") + 1))
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


#: Merges of the tiny BPE (each pair joins into one token); enough to make common words short.
_TINY_MERGES = ["a n", "t h", "th e</w>", "o r", "e r</w>", "i n", "in g</w>", "v i", "vi e", "vie w</w>",
                "f r", "fr o", "fro n", "fron t</w>", "s i", "si d", "sid e</w>", "b a", "ba c", "bac k</w>",
                "c o", "co w</w>", "d o", "do g</w>"]


def tiny_vocab() -> Tuple[Dict[str, int], List[str]]:
    """The tiny tokenizer's vocabulary (token -> id) and merges (``"a b"`` strings)."""
    alphabet = list(_bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet]
    for m in _TINY_MERGES:
        a, b = m.split(" ")
        if a + b not in tokens:
            tokens.append(a + b)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, list(_TINY_MERGES)


def build_tiny_pipeline(folder: Union[str, Path], seed: int = 0, max_length: int = 16) -> Path:
    """Write a randomly initialised tiny Stable Diffusion checkpoint folder.

    Args:
        folder: where to write it (created; existing files are overwritten).
        seed: seed of the random weights (the same seed gives the same checkpoint).
        max_length: the tokenizer's ``model_max_length`` and the text model's positions.
    Returns:
        The folder.
    """
    from .sds import _quiet_libraries

    _quiet_libraries()
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = tiny_vocab()
    hidden = 32
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        unet = UNet2DConditionModel(
            sample_size=TINY_LATENT_SIZE, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=hidden,
            attention_head_dim=4, norm_num_groups=8, use_linear_projection=True,
        )
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, sample_size=TINY_LATENT_SIZE * TINY_VAE_FACTOR,
            block_out_channels=(8, 16, 16), down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3, layers_per_block=1, norm_num_groups=4,
            scaling_factor=0.18215,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=hidden, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=max_length, projection_dim=hidden,
            bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        ))
    finally:
        torch.random.set_rng_state(state)
    scheduler = DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
    )
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    text_encoder.save_pretrained(folder / "text_encoder")
    scheduler.save_pretrained(folder / "scheduler")
    tok = folder / "tokenizer"
    tok.mkdir(exist_ok=True)
    (tok / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (tok / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (tok / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": max_length, "do_lower_case": True,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
    }))
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"], "safety_checker": [None, None],
        "feature_extractor": [None, None], "requires_safety_checker": False,
    }, indent=2))
    (folder / TINY_MARKER).write_text(json.dumps({
        "pipeline": PIPELINE_LABEL, "seed": seed,
        "note": "randomly initialised tiny Stable Diffusion for tests; its images are not meaningful",
    }, indent=2))
    return folder


def is_tiny(folder: Union[str, Path]) -> bool:
    """Whether ``folder`` is a checkpoint written by :func:`build_tiny_pipeline`."""
    return (Path(folder) / TINY_MARKER).is_file()


def main(argv=None) -> Path:
    ap = ScriptParser(description=__doc__)
    ap.add_argument("folder", help="where to write the tiny checkpoint")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = ap.parse_args(argv)
    if Path(args.folder).exists() and not Path(args.folder).is_dir():
        raise user_error(args.folder, "a folder (or a path to create one)", "a file")
    out = build_tiny_pipeline(args.folder, args.seed)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    run_cli(main)
