"""Train a small text-conditioned latent diffusion model from scratch on procedural renders.

    python -m a4_gaussians_diffusion.diffusion.train_prior                       # 800 + 4000 steps, about 20 minutes
    python -m a4_gaussians_diffusion.diffusion.train_prior --quick               # about two minutes (16 x 16)
    python -m a4_gaussians_diffusion.diffusion.image_optimization --model output/a4_gaussians_diffusion/prior/pipeline \\
        --prompt "a red cube"

Stable Diffusion's weights cannot be downloaded everywhere; this makes a prior that knows a small
world, so every score-distillation script can be run with a model whose answer can be checked. The
data are :mod:`.renders` pictures (cube, sphere, cone, torus and the course cow when present; red,
green, blue, yellow, purple; front / side / back views) with captions such as ``"a red cube, side
view"`` (``--view_caption_ratio`` of them name the view, the others only colour and shape), at
``--image_size`` (32) pixels.

Three parts, trained in turn (one step counter: VAE steps first, then diffusion steps):

* a small ``AutoencoderKL`` (``--vae_channels``; two down-samplings, 4 latent channels), trained
  on the pictures with an L1 + MSE reconstruction loss and a weak KL term (``--kl_weight``), half
  of each batch recoloured at random (``--vae_augment``, :func:`colour_augment`: greys, any hue,
  tinted backgrounds) so that the encoder, which DreamFusion and the mesh texture differentiate
  through, stays sensible for renders that are not yet pictures of the training set; its
  ``scaling_factor`` is set to 1 / (standard deviation of the training latents), so the scaled
  latents have unit variance, as Stable Diffusion's 0.18215 does for its own VAE;
* a ``CLIPTextModel`` (2 layers, width ``--text_width``) with a ``CLIPTokenizer`` whose merges are
  built here so that every caption word (and the course's view words) is one token;
* a ``UNet2DConditionModel`` (``--unet_channels``, cross-attention in every block) predicting the
  noise (epsilon) of Stable Diffusion's schedule (1000 steps, scaled-linear betas 0.00085 ..
  0.012), trained jointly with the text encoder; ``--caption_dropout`` of the captions are
  replaced by the empty prompt, so classifier-free guidance works. An EMA copy (``--ema_decay``)
  of both is what gets saved.

Time: on one CPU thread (a second one-thread process shared the two cores) the default run took
19.6 minutes (render 14 s, 800 VAE steps and 4000 diffusion steps at batch 32 in 1163 s, peak RSS
1.3 GB); its samples have the caption's colour in 97 % of ``samples.png`` by
:func:`.renders.colour_of` (guidance 5), and its view words work: a classifier trained apart
(:mod:`.judge`) calls 15 of 16 samples of "a blue cow, side view" side views and 16 of 16 of "...,
back view" back views. After 2000 diffusion steps the colours were there (0.94) but the view words
were ignored (the same pictures for every view word), which is why the default is 4000.
What made the difference against earlier, colourless priors: the VAE's own learning rate
(``--vae_lr``), the colour term (``--vae_colour_weight``), enough VAE steps (colours appear late
and suddenly), and the EMA's warm-up (a plain EMA at 0.999 over a few hundred steps keeps mostly
the initial weights).

Writes into ``--output_dir``: ``pipeline/`` (a diffusers checkpoint folder that every Q2 script
loads with ``--model <output_dir>/pipeline``: ``model_index.json``, ``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/`` and ``small_prior.json``, the marker that makes
every run with it say "made with the small prior trained here"), ``losses.csv`` /
``losses.png``, ``samples.png`` (DDIM samples with classifier-free guidance, one row per
caption, labelled), ``data_examples.png`` (training pictures), checkpoints (every
``--save_every`` steps, at the end and on Ctrl-C; ``--resume`` continues from the newest) and
``metrics.json`` (final losses, VAE reconstruction error on held-out pictures, times).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from l3d.checks import check
from l3d.cli import nonneg_float, positive_float, positive_int, report, run_cli, script_parser
from l3d.errors import user_error
from l3d.media import save_image
from l3d.run import LOSS_LOG, LOSS_PLOT, CheckpointManager, LossLog, RunDir, atomic_write, check_finite
from l3d.train import choose_device, graceful_interrupt, progress, seed_everything

from ..captions import with_banner
from .nerf import EMA
from .renders import COLOURS, VIEWS, available_shapes, caption, colour_of, parse_caption, render_set
from .tiny import _bytes_to_unicode

#: The marker file of a pipeline folder written here, and the label of every run made with it.
PRIOR_MARKER = "small_prior.json"
PRIOR_LABEL = "small-prior-trained-here"
#: Stable Diffusion's noise schedule (the prior uses the same one, so SDS sees the same t range).
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")

#: Least share of samples with their caption's colour (the default prior: 0.97; --quick without the
#: cow: 0.5 to 0.65; --quick with it: 0.49).
MIN_SAMPLE_COLOUR = 0.4

#: --quick: 16 x 16 pictures, about two minutes on one CPU thread. At the default seed, without the
#: cow, SDS with it gives the prompted colour (tests/a4_diffusion/test_a4d_prior_sds.py); other
#: seeds confuse some colours. Smaller VAEs (8 channels) or fewer VAE steps lose the colours.
QUICK = {"num_images": 384, "image_size": 16, "vae_steps": 800, "steps": 400, "vae_channels": 16,
         "unet_channels": 32, "text_width": 32, "batch_size": 16, "lr": 1e-3, "sample_steps": 20, "save_every": 100}


# -- tokenizer --------------------------------------------------------------------------------
def _bpe(word: str, ranks: Dict[Tuple[str, str], int]) -> List[str]:
    """CLIP's byte-pair encoding of one (lower-case, ASCII) word: symbols after the merges."""
    sym = list(word[:-1]) + [word[-1] + "</w>"]
    while len(sym) > 1:
        pairs = [(ranks.get((a, b), math.inf), i) for i, (a, b) in enumerate(zip(sym, sym[1:]))]
        rank, i = min(pairs)
        if rank == math.inf:
            break
        sym = sym[:i] + [sym[i] + sym[i + 1]] + sym[i + 2:]
    return sym


def word_merges(words: Sequence[str]) -> List[str]:
    """BPE merges that make each of ``words`` a single token (each new merge ranks last, so it
    never changes how an earlier word is split)."""
    merges: List[str] = []
    ranks: Dict[Tuple[str, str], int] = {}
    for w in words:
        while True:
            sym = _bpe(w, ranks)
            if len(sym) == 1:
                break
            ranks[(sym[0], sym[1])] = len(merges)
            merges.append(f"{sym[0]} {sym[1]}")
    return merges


def caption_words(shapes: Sequence[str]) -> List[str]:
    return ["a", *shapes, *COLOURS, *VIEWS, "view"]


def save_tokenizer(folder: Path, words: Sequence[str], max_length: int = 16) -> Path:
    """A ``CLIPTokenizer`` folder (vocab.json, merges.txt, tokenizer_config.json) in which every
    one of ``words`` is one token; other text falls back to byte-level symbols."""
    alphabet = list(_bytes_to_unicode().values())
    merges = word_merges(words)
    tokens = alphabet + [c + "</w>" for c in alphabet]
    seen = set(tokens)
    for m in merges:
        t = m.replace(" ", "")
        if t not in seen:
            tokens.append(t)
            seen.add(t)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": max_length, "do_lower_case": True,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>"}))
    return folder


# -- models -----------------------------------------------------------------------------------
def build_models(args, vocab_size: int, bos: int, eos: int, max_length: int):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    latent = args.image_size // 4
    c = args.vae_channels
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=args.image_size,
                        block_out_channels=(c, 2 * c, 2 * c), down_block_types=("DownEncoderBlock2D",) * 3,
                        up_block_types=("UpDecoderBlock2D",) * 3, layers_per_block=1,
                        norm_num_groups=min(8, c), scaling_factor=1.0)
    u = args.unet_channels
    unet = UNet2DConditionModel(
        sample_size=latent, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(u, 2 * u),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=args.text_width,
        attention_head_dim=8, norm_num_groups=min(16, u), use_linear_projection=True)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=args.text_width, intermediate_size=2 * args.text_width,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=max_length,
        projection_dim=args.text_width, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos))
    return vae, unet, text


def colour_augment(x: torch.Tensor, generator: torch.Generator, share: float) -> torch.Tensor:
    """A random ``share`` of the pictures ``x`` (B, 3, S, S) in [-1, 1] recoloured, the others as they were.

    The VAE's encoder is what score distillation differentiates through, at renders that are not
    yet pictures of the training set (a grey blob, a tinted fog, a dark side). Trained on the
    five-colour renders alone, it maps such pictures onto the nearest training colour (a grey disc
    came back brown-red), and its Jacobian there points nowhere useful (the SDS gradient of "a red
    cube" made a grey disc bluer). Recoloured pictures teach it the whole colour space: each is
    desaturated toward its grey by U(0, 1), its channels permuted, scaled per channel by
    U(0.4, 1.2), then mixed with a random colour by U(0, 0.6) (a tint of the background and a fog).
    """
    b = x.shape[0]
    rnd = lambda *shape: torch.rand(*shape, generator=generator).to(x.device)  # noqa: E731
    y = (x + 1) / 2
    y = y + rnd(b, 1, 1, 1) * (y.mean(1, keepdim=True) - y)
    perm = rnd(b, 3).argsort(1)
    y = torch.gather(y, 1, perm[:, :, None, None].expand_as(y))
    y = y * (0.4 + 0.8 * rnd(b, 3, 1, 1))
    y = (y + 0.6 * rnd(b, 1, 1, 1) * (rnd(b, 3, 1, 1) - y)).clamp(0, 1)
    return torch.where((rnd(b) < share)[:, None, None, None], y * 2 - 1, x)


def make_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                         prediction_type="epsilon")


@torch.no_grad()
def sample_images(unet, vae, text, tokenizer, captions: Sequence[str], scaling: float, steps: int = 30,
                  guidance: float = 5.0, seed: int = 0, device="cpu") -> torch.Tensor:
    """(B, 3, S, S) DDIM samples in [0, 1] for ``captions`` with classifier-free guidance."""
    sched = make_scheduler()
    sched.set_timesteps(steps)
    ids = tokenizer(list(captions) + [""], padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids.to(device)
    emb = text(ids)[0]
    cond, uncond = emb[:-1], emb[-1:].expand(len(captions), -1, -1)
    size = unet.config.sample_size
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(captions), 4, size, size, generator=gen).to(device)
    for t in sched.timesteps:
        tt = t.expand(2 * len(captions)).to(device)
        eps = unet(torch.cat([x, x]), tt, encoder_hidden_states=torch.cat([uncond, cond])).sample
        eu, ec = eps.chunk(2)
        x = sched.step(eu + guidance * (ec - eu), t, x).prev_sample
    return (vae.decode(x / scaling).sample / 2 + 0.5).clamp(0, 1)


def sample_grid(images: torch.Tensor, captions: Sequence[str], per_row: int, scale: int = 3) -> torch.Tensor:
    """(H, W, 3) grid: one row per caption (``per_row`` seeds), each row labelled above."""
    rows = []
    for k, cap in enumerate(captions):
        row = images[k * per_row:(k + 1) * per_row]  # (per_row, 3, S, S)
        row = F.interpolate(row, scale_factor=scale, mode="nearest")
        row = torch.cat(list(row.permute(0, 2, 3, 1)), 1)  # (S, per_row S, 3)
        rows.append(torch.as_tensor(with_banner(row, cap)))
    return torch.cat(rows, 0)


def sample_captions(shapes: Sequence[str]) -> List[str]:
    cols = list(COLOURS)
    out = [caption(s, cols[i % len(cols)]) for i, s in enumerate(shapes)]
    out += [caption(shapes[0], c) for c in cols[1:]]
    out += [caption(shapes[-1], cols[0], v) for v in VIEWS]
    return out


# -- the script -------------------------------------------------------------------------------
def build_parser():
    ap = script_parser(__doc__, "a4_gaussians_diffusion/prior", presets={"quick": QUICK})
    d = ap.add_argument_group("data")
    d.add_argument("--num_images", type=positive_int, default=4000, help="procedural training pictures")
    ap.add_flag("image_size", default=32, help="side of the pictures in pixels (a multiple of 8)")
    d.add_argument("--view_caption_ratio", type=nonneg_float, default=0.7,
                   help="share of captions that name the view (the others: colour and shape only)")
    d.add_argument("--no_cow", action="store_true", help="leave the course cow out even when its file is present")
    m = ap.add_argument_group("model sizes")
    m.add_argument("--vae_channels", type=positive_int, default=16, help="channels of the VAE's first block")
    m.add_argument("--unet_channels", type=positive_int, default=32, help="channels of the UNet's first block")
    m.add_argument("--text_width", type=positive_int, default=32, help="width of the text encoder")
    t = ap.add_argument_group("training")
    t.add_argument("--vae_steps", type=positive_int, default=800,
                   help="VAE training steps (before the diffusion steps)")
    ap.add_flag("steps", default=4000, help="diffusion (UNet + text encoder) training steps (view words are "
                "learnt last: after 2000 steps they were still ignored)")
    ap.add_flag("batch_size", default=32)
    ap.add_flag("lr", default=1e-3, help="AdamW learning rate of the diffusion stage")
    t.add_argument("--vae_lr", type=positive_float, default=1e-3, help="AdamW learning rate of the VAE stage")
    t.add_argument("--vae_colour_weight", type=nonneg_float, default=2.0,
                   help="weight of an MSE between the 4 x 4 average-pooled picture and its reconstruction "
                        "(an extra weight on colour over detail)")
    t.add_argument("--vae_augment", type=nonneg_float, default=0.5,
                   help="share of each VAE batch recoloured at random (any colour, grey, tinted backgrounds), so "
                        "that the encoder score distillation differentiates through is sensible beyond the five "
                        "training colours (0: the renders only)")
    t.add_argument("--kl_weight", type=nonneg_float, default=1e-6, help="weight of the VAE's KL term")
    t.add_argument("--caption_dropout", type=nonneg_float, default=0.1,
                   help="share of captions replaced by the empty prompt (for classifier-free guidance)")
    t.add_argument("--ema_decay", type=nonneg_float, default=0.999,
                   help="EMA of the diffusion weights that is saved (with a warm-up: the n-th update uses "
                        "min(decay, (1 + n) / (10 + n)))")
    ap.add_flag("save_every", default=500)
    ap.add_flag("resume")
    t.add_argument("--threads", type=positive_int, default=1,
                   help="CPU threads (torch.set_num_threads; on a shared machine 1 is much faster than 2)")
    s = ap.add_argument_group("samples")
    s.add_argument("--sample_steps", type=positive_int, default=30, help="DDIM steps of the sample grid")
    s.add_argument("--sample_guidance", type=positive_float, default=5.0, help="guidance scale of the sample grid")
    return ap


def check_flags(args) -> None:
    if args.image_size % 8:
        raise user_error("--image_size", "a multiple of 8", args.image_size)
    for name in ("view_caption_ratio", "caption_dropout", "vae_augment"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise user_error(f"--{name}", "a number in [0, 1]", f"{getattr(args, name):g}")
    if not args.ema_decay < 1.0:
        raise user_error("--ema_decay", "a number in [0, 1)", f"{args.ema_decay:g}")


def is_prior(folder) -> bool:
    """Whether ``folder`` is a pipeline written by this script."""
    return folder is not None and (Path(folder) / PRIOR_MARKER).is_file()


def main(argv=None) -> Path:
    args = build_parser().parse_args(argv)
    check_flags(args)
    torch.set_num_threads(args.threads)
    device = choose_device(args.device)
    seed_everything(args.seed)
    from transformers import CLIPTokenizer

    shapes = available_shapes(False if args.no_cow else None)
    out = Path(args.output_dir)
    config = {k: getattr(args, k) for k in ("num_images", "image_size", "view_caption_ratio", "vae_channels",
                                            "unet_channels", "text_width", "vae_steps", "vae_augment", "seed")}
    config["shapes"] = list(shapes)
    t_start = time.perf_counter()
    data = render_set(args.num_images, args.seed, args.image_size, shapes)
    held = render_set(max(64, args.num_images // 20), args.seed + 10_000, args.image_size, shapes,
                      show_progress=False)
    render_s = time.perf_counter() - t_start
    images = data.float_images().to(device) * 2 - 1  # (N, 3, S, S) in [-1, 1]
    n = len(images)

    with RunDir(out, fresh=not args.resume) as run:
        tok_dir = save_tokenizer(run.path("pipeline", "tokenizer"), caption_words(shapes))
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir, local_files_only=True)
        vocab = tokenizer.get_vocab()
        vae, unet, text = build_models(args, len(vocab), vocab["<|startoftext|>"], vocab["<|endoftext|>"],
                                       tokenizer.model_max_length)
        vae, unet, text = vae.to(device), unet.to(device), text.to(device)
        opt_vae = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr)
        diff_params = list(unet.parameters()) + list(text.parameters())
        opt_diff = torch.optim.AdamW(diff_params, lr=args.lr, weight_decay=1e-4)
        ema_unet, ema_text = EMA(unet, args.ema_decay, warmup=True), EMA(text, args.ema_decay, warmup=True)
        scaling = None
        ckpts = CheckpointManager(run.path("checkpoints"), every=args.save_every, keep_last=2, run=run)
        start = 0
        if args.resume:
            state = ckpts.resume(map_location=device)
            if state is not None:
                if state.get("config") != config:
                    raise user_error(run.path("checkpoints"), f"checkpoints made with the same settings {config}",
                                     f"{state.get('config')}", "start a fresh run or choose another --output_dir")
                vae.load_state_dict(state["vae"]), unet.load_state_dict(state["unet"])
                text.load_state_dict(state["text"]), opt_vae.load_state_dict(state["opt_vae"])
                opt_diff.load_state_dict(state["opt_diff"])
                ema_unet.load_state_dict(state["ema_unet"]), ema_text.load_state_dict(state["ema_text"])
                scaling = state["scaling"]
                start = int(state["step"]) + 1
                ema_unet.num_updates = ema_text.num_updates = max(0, start - args.vae_steps)
                print(f"resumed from step {state['step']}")
        log = run.track(LossLog(run.path(LOSS_LOG), append=args.resume))
        if start:
            log.rewind(start - 1)
        total = args.vae_steps + args.steps
        gen = torch.Generator().manual_seed(args.seed * 7919 + start)
        sched = make_scheduler()
        abar = sched.alphas_cumprod.to(device)
        ids_all = None
        lat_mean = lat_std = None

        def prepare_latents():
            nonlocal scaling, lat_mean, lat_std, ids_all
            vae.eval()
            with torch.no_grad():
                dists = [vae.encode(images[s:s + 256]).latent_dist for s in range(0, n, 256)]
                lat_mean = torch.cat([d.mean for d in dists])
                lat_std = torch.cat([d.std for d in dists])
            if scaling is None:
                scaling = float(1.0 / lat_mean.std())
            all_caps = data.captions(torch.ones(n, dtype=torch.bool)), data.captions(torch.zeros(n, dtype=torch.bool))
            ids_all = [tokenizer(c, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                                 return_tensors="pt").input_ids.to(device) for c in all_caps]

        empty_ids = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length,
                              return_tensors="pt").input_ids.to(device)

        def checkpoint():
            return {"vae": vae.state_dict(), "unet": unet.state_dict(), "text": text.state_dict(),
                    "opt_vae": opt_vae.state_dict(), "opt_diff": opt_diff.state_dict(),
                    "ema_unet": ema_unet.state_dict(), "ema_text": ema_text.state_dict(), "scaling": scaling,
                    "config": config}

        t_loop = time.perf_counter()
        stopped_at = None
        with graceful_interrupt() as stop:
            for step in progress(range(start, total), "prior"):
                idx = torch.randint(n, (args.batch_size,), generator=gen).to(device)
                if step < args.vae_steps:
                    vae.train()
                    x = colour_augment(images[idx], gen, args.vae_augment)
                    post = vae.encode(x).latent_dist
                    rec = vae.decode(post.sample()).sample
                    l_rec = F.l1_loss(rec, x) + F.mse_loss(rec, x)
                    kl = post.kl().mean() / (4 * (args.image_size // 4) ** 2)
                    l_col = F.mse_loss(F.avg_pool2d(rec, 4), F.avg_pool2d(x, 4))
                    loss = l_rec + args.vae_colour_weight * l_col + args.kl_weight * kl
                    check_finite(loss, step)
                    opt_vae.zero_grad(set_to_none=True)
                    loss.backward()
                    opt_vae.step()
                    log.append(step, {"vae/recon": float(l_rec.detach()), "vae/colour": float(l_col.detach()),
                                      "vae/kl": float(kl.detach())})
                else:
                    if lat_mean is None:
                        prepare_latents()
                    unet.train(), text.train()
                    z = (lat_mean[idx] + lat_std[idx] * torch.randn(lat_mean[idx].shape, generator=gen).to(device)) \
                        * scaling
                    with_view = torch.rand(args.batch_size, generator=gen).to(device) < args.view_caption_ratio
                    ids = torch.where(with_view[:, None], ids_all[0][idx], ids_all[1][idx])
                    drop = torch.rand(args.batch_size, generator=gen).to(device) < args.caption_dropout
                    ids = torch.where(drop[:, None], empty_ids.expand_as(ids), ids)
                    t = torch.randint(0, SCHEDULE["num_train_timesteps"], (args.batch_size,), generator=gen).to(device)
                    noise = torch.randn(z.shape, generator=gen).to(device)
                    a = abar[t].view(-1, 1, 1, 1)
                    x_t = a.sqrt() * z + (1 - a).sqrt() * noise
                    pred = unet(x_t, t, encoder_hidden_states=text(ids)[0]).sample
                    loss = F.mse_loss(pred, noise)
                    check_finite(loss, step)
                    opt_diff.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(diff_params, 1.0)
                    opt_diff.step()
                    ema_unet.update(unet), ema_text.update(text)
                    log.append(step, {"diffusion/eps_mse": float(loss.detach())})
                last = step == total - 1
                if ckpts.due(step) or stop.requested or last:
                    ckpts.save(step, checkpoint())
                if stop.requested:
                    stopped_at = step
                    break
        train_s = time.perf_counter() - t_loop
        if lat_mean is None:
            prepare_latents()
        # -- the pipeline folder (EMA weights) ---------------------------------------------------
        vae.eval()
        vae.register_to_config(scaling_factor=scaling)
        unet_s, text_s = ema_unet.module(), ema_text.module()
        pipe = run.path("pipeline")
        vae.save_pretrained(pipe / "vae")
        unet_s.save_pretrained(pipe / "unet")
        text_s.save_pretrained(pipe / "text_encoder")
        make_scheduler().save_pretrained(pipe / "scheduler")
        atomic_write(pipe / "model_index.json", json.dumps({
            "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
            "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
            "scheduler": ["diffusers", "DDIMScheduler"], "safety_checker": [None, None],
            "feature_extractor": [None, None], "requires_safety_checker": False}, indent=2))
        atomic_write(pipe / PRIOR_MARKER, json.dumps({
            "pipeline": PRIOR_LABEL, "shapes": list(shapes), "colours": list(COLOURS), "views": list(VIEWS),
            "image_size": args.image_size, "caption_example": caption(shapes[0], "red", "side"),
            "trained_steps": (stopped_at + 1) if stopped_at is not None else total, "config": config,
            "note": "small latent diffusion model trained from scratch on procedural renders; not Stable Diffusion"},
            indent=2))
        # -- pictures and metrics ------------------------------------------------------------------
        files = [pipe]
        ex = data.images[:32].float().div(255)  # (32, S, S, 3)
        S = args.image_size
        files.append(save_image(run.path("data_examples.png"),
                                ex.reshape(4, 8, S, S, 3).permute(0, 2, 1, 3, 4).reshape(4 * S, 8 * S, 3)))
        caps = sample_captions(shapes)
        per_row = 6
        with torch.no_grad():
            rep = [c for c in caps for _ in range(per_row)]
            samples = sample_images(unet_s, vae, text_s, tokenizer, rep, scaling, args.sample_steps,
                                    args.sample_guidance, args.seed, device).cpu()
            hx = held.float_images().to(device) * 2 - 1
            recon = vae.decode(vae.encode(hx).latent_dist.mean).sample
            vae_l1 = float((recon - hx).abs().mean() / 2)  # in [0, 1] image units
        want = torch.tensor([list(COLOURS).index(parse_caption(c)["colour"]) for c in rep])
        sample_colour = float((colour_of(samples) == want).float().mean())
        grid = sample_grid(samples, caps, per_row)
        files.append(save_image(run.path("samples.png"), grid))
        last_step = stopped_at if stopped_at is not None else total - 1
        log.image(last_step, "val/samples", grid)  # TensorBoard: the trained prior's samples, one caption per row
        pair = torch.cat([hx[:8], recon[:8].clamp(-1, 1)], 2).add(1).div(2)  # (8, 3, 2S, S): held-out over its VAE reconstruction
        log.image(last_step, "val/vae_heldout_and_reconstruction", pair.permute(1, 2, 0, 3).reshape(3, 2 * S, -1))
        if log.rows():
            files.append(log.plot(run.path(LOSS_PLOT),
                                  groups=[["vae/recon", "vae/colour"], ["vae/kl"], ["diffusion/eps_mse"]]))
        rows = log.rows()
        last_eps = [float(r["diffusion/eps_mse"]) for r in rows[-200:] if r.get("diffusion/eps_mse") not in (None, "")]
        metrics = {"pipeline": PRIOR_LABEL, "data": "procedural renders made here (l3d rasteriser)" +
                   ("; cow: course file a1/cow.obj" if "cow" in shapes else ""),
                   "shapes": list(shapes), "colours": list(COLOURS), "views": list(VIEWS),
                   "num_images": n, "image_size": S, "latent_shape": [4, S // 4, S // 4],
                   "scaling_factor": scaling, "vae_heldout_l1": vae_l1,
                   "sample_colour_accuracy": sample_colour, "sample_guidance": args.sample_guidance,
                   "final_eps_mse_last200": sum(last_eps) / len(last_eps) if last_eps else None,
                   "vae_steps": args.vae_steps, "diffusion_steps": args.steps, "batch_size": args.batch_size,
                   "stopped_at_step": stopped_at, "render_s": round(render_s, 1), "train_s": round(train_s, 1),
                   "threads": args.threads, "device": str(device),
                   "params": {"vae": sum(p.numel() for p in vae.parameters()),
                              "unet": sum(p.numel() for p in unet.parameters()),
                              "text_encoder": sum(p.numel() for p in text.parameters())},
                   "checks": {"samples_have_prompted_colour": check(
                       sample_colour, min=MIN_SAMPLE_COLOUR,
                       what=f"share of the {len(rep)} pictures of samples.png whose object has the colour its "
                            f"caption names (renders.colour_of, a fixed rule; chance {1 / len(COLOURS):.1f})")}}
        report(run.path(), metrics, files)
    return out / "pipeline"


if __name__ == "__main__":
    run_cli(main)
