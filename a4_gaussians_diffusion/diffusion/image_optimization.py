"""Q2.1 SDS image optimisation: optimise a latent image so that it matches a text prompt.

    python -m a4_gaussians_diffusion.diffusion.image_optimization --prompt "a hamburger" --sds_guidance 1
    python -m a4_gaussians_diffusion.diffusion.image_optimization --prompt "a standing corgi dog" --sds_guidance 0
    python -m a4_gaussians_diffusion.diffusion.image_optimization --prompt "a hamburger" --resume   # after Ctrl-C

The latent (1, 4, 64, 64) starts as standard normal noise and is the only parameter; each
iteration adds noise at a random timestep, asks the UNet for the noise (with classifier-free
guidance when ``--sds_guidance 1``, else the conditional prediction alone) and steps AdamW along
the SDS gradient (lr 0.1, cosine schedule with 100 warm-up steps, 2000 iterations). Writes
``iters/iter_XXXX.png`` (the decoded latent every ``--snapshot_every`` steps), ``final.png``,
``progress.png`` (the saved steps side by side, each labelled above, enlarged to at least 64
pixels), ``losses.csv`` / ``losses.png``, checkpoints (every ``--save_every`` steps, at the end, and on Ctrl-C / SIGTERM;
``--resume`` continues from the newest intact one) and ``metrics.json`` into
``<output_dir>/<prompt>_<guidance|no_guidance><postfix>/``. The folder is locked while the run
writes it; a fresh run into a folder that holds results replaces them only once it has saved its
first checkpoint, so a run that fails early (a NaN loss, a bad flag) leaves them as they were.

The check in metrics.json: minus the SDS gradient points from the latent toward the UNet's
denoised estimate of that step's noisy latent (:class:`.common.StepAlignment`); the cosine
between the latent's total displacement and the sum of those directions over the run
(``latents_follow_sds``) is near 1 when the optimisation follows the score, 0 or below when the
gradient does not reach the latent or has the wrong sign. The per-step cosines are in
``losses.csv`` (``align``). --quick runs 30 steps (a tiny pipeline run takes seconds).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from l3d.checks import check
from l3d.cli import nonneg_float, nonneg_int, positive_int, report, run_cli, script_parser
from l3d.media import save_image
from l3d.run import LOSS_LOG, LOSS_PLOT, CheckpointManager, LossLog, RunDir, check_finite, check_finite_params
from l3d.train import choose_device, graceful_interrupt, progress, seed_everything

from ..captions import with_banner
from .common import StepAlignment, StepTimer, add_sds_flags, cosine, finish_note, load_guidance, memory_metrics, \
    model_id, pipeline_label, prompt_embeddings, resume_state, rss_mb, run_data_label, run_folder, save_args, \
    write_tiny_note
from .renders import COLOURS, colour_of, parse_caption
from .train_prior import PRIOR_LABEL

#: Minimum cosine between the latent's displacement and the summed SDS directions.
MIN_FOLLOW = 0.5
#: Pictures in progress.png are enlarged by a whole factor to at least this many pixels a side
#: (the small prior's 16 x 16 pictures would leave no room for their labels).
MIN_PROGRESS_SIDE = 64
#: A latent value beyond this means the optimisation diverged (the VAE's latents are of order 1).
MAX_LATENT = 1e4


def prompted_colour_check(label: str, prompt: str, final: torch.Tensor) -> dict:
    """With the small prior and a prompt that names one of its colours: ``{"prompted_colour": ...}``,
    1 when the final picture (H, W, 3) has that colour by :func:`.renders.colour_of`; else ``{}``."""
    want = parse_caption(prompt)["colour"]
    if label != PRIOR_LABEL or want is None:
        return {}
    got = int(colour_of(final.permute(2, 0, 1)[None])[0])
    name = list(COLOURS)[got] if got >= 0 else "no object"
    return {"prompted_colour": check(float(name == want), min=1.0,
                                     what=f"1 when the final picture's object is {want} (found: {name}; "
                                          f"renders.colour_of, a fixed rule)")}


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` steps, then a half cosine from the base rate to 0 at ``total``
    (diffusers' ``get_cosine_schedule_with_warmup`` with 0.5 cycles)."""
    from diffusers.optimization import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=warmup, num_training_steps=max(total, 1))


#: --quick: a tiny pipeline run takes seconds; flags you give win.
QUICK = {"steps": 30, "snapshot_every": 10, "warmup": 3}


def build_parser():
    ap = script_parser(__doc__, "a4_gaussians_diffusion/diffusion_image", presets={"quick": QUICK})
    add_sds_flags(ap)
    ap.add_argument("--sds_guidance", type=int, choices=[0, 1], default=1,
                    help="1: classifier-free guidance with the negative prompt; 0: conditional noise prediction only")
    ap.add_flag("steps", default=2000)
    ap.add_flag("lr", default=0.1, help="AdamW learning rate")
    ap.add_argument("--weight_decay", type=nonneg_float, default=0.0, help="AdamW weight decay")
    ap.add_argument("--warmup", type=nonneg_int, default=100, help="linear warm-up steps of the cosine schedule")
    ap.add_argument("--snapshot_every", type=positive_int, default=100,
                    help="decode and save the image every this many steps (iters/iter_XXXX.png; also in TensorBoard, "
                         "val/decoded_image)")
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    device = choose_device(args.device)
    seed_everything(args.seed)

    sd = load_guidance(args, device)
    label = pipeline_label(sd, args.model)
    folder = run_folder(args, "_guidance" if args.sds_guidance else "_no_guidance")
    config = {"prompt": args.prompt, "negative_prompt": args.negative_prompt, "sds_guidance": args.sds_guidance,
              "guidance_scale": args.guidance_scale, "model": model_id(sd, args.model),
              "latent_shape": [sd.latent_channels, sd.latent_size, sd.latent_size]}
    emb = prompt_embeddings(sd, args.prompt, args.negative_prompt)
    uncond = emb["uncond"] if args.sds_guidance else None

    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    init = torch.randn(1, sd.latent_channels, sd.latent_size, sd.latent_size, generator=gen)
    latents = torch.nn.Parameter(init.to(device))
    optim = torch.optim.AdamW([latents], lr=args.lr, weight_decay=args.weight_decay)
    sched = cosine_with_warmup(optim, args.warmup, args.steps)
    with RunDir(folder, fresh=not args.resume) as run:  # locked; a failed fresh run keeps the old results
        ckpts = CheckpointManager(run.path("checkpoints"), every=args.save_every, keep_last=2, run=run)
        start = 0
        z0 = latents.detach().clone()
        sds_dir = torch.zeros_like(z0)  # sum of -grad: the directions toward the denoised estimates
        state = resume_state(ckpts, args, config, folder, device)
        if state is not None:
            latents.data.copy_(state["model"]["latents"].to(device))
            optim.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            z0, sds_dir = state["z0"].to(device), state["sds_dir"].to(device)
            start = int(state["step"]) + 1
            print(f"resumed from step {state['step']}")
        log = run.track(LossLog(run.path(LOSS_LOG), append=args.resume))
        if state is not None:
            log.rewind(state["step"])
        save_args(run.path(), args)
        align = StepAlignment()

        def checkpoint():
            return {"model": {"latents": latents.detach().cpu()}, "optimizer": optim.state_dict(),
                    "scheduler": sched.state_dict(), "config": config, "z0": z0.cpu(), "sds_dir": sds_dir.cpu()}

        n_written, snapshots = 0, []
        timer = StepTimer(device)
        rss0 = rss_mb()
        loss_value, stopped_at = float("nan"), None
        with graceful_interrupt() as stop:
            for step in progress(range(start, args.steps), "SDS image"):
                before = latents.detach().clone()
                with timer:
                    optim.zero_grad(set_to_none=True)
                    res = sd.sds_loss(latents, emb["default"], uncond, args.guidance_scale)
                    check_finite(res.loss, step, "SDS loss")
                    res.loss.backward()
                    optim.step()
                    sched.step()
                    # the surrogate loss is |grad|^2 / 2 whatever the latent: a diverged latent shows in
                    # its own size (Stable Diffusion's latents are of order 1)
                    check_finite(latents.detach().abs().amax(), step, "the latent's largest value", limit=MAX_LATENT)
                loss_value = float(res.loss.detach())
                sds_dir -= res.grad.to(sds_dir.dtype)
                step_cos = align.add(before, latents.detach(), res.grad) if step > 0 or args.warmup == 0 \
                    else float("nan")
                log.append(step, {"loss/sds": loss_value, "t": int(res.t[0]), "lr": sched.get_last_lr()[0],
                                  "align": step_cos})
                last = step == args.steps - 1
                if (step + 1) % args.snapshot_every == 0 or last:
                    check_finite_params({"latents": latents}, step)
                    img = sd.decode_latents(latents.detach())[0].permute(1, 2, 0).cpu()  # (H, W, 3)
                    save_image(run.path("iters", f"iter_{step + 1:04d}.png"), img)
                    n_written += 1
                    log.image(step, "val/decoded_image", img)
                    k = -(-MIN_PROGRESS_SIDE // img.shape[0])  # small priors' pictures enlarged, pixels kept
                    big = img.repeat_interleave(k, 0).repeat_interleave(k, 1)
                    snapshots.append(with_banner(big.numpy(), f"step {step + 1}"))
                if ckpts.due(step) or stop.requested or last:
                    check_finite_params({"latents": latents}, step)
                    ckpts.save(step, checkpoint())  # the first save commits the run
                if stop.requested:
                    stopped_at = step
                    break

        final = sd.decode_latents(latents.detach())[0].permute(1, 2, 0).cpu()
        paths = [save_image(run.path("final.png"), final)]
        if snapshots:
            keep = snapshots if len(snapshots) <= 10 else [snapshots[i] for i in
                                                            np.linspace(0, len(snapshots) - 1, 10).round().astype(int)]
            paths.append(save_image(run.path("progress.png"), np.concatenate(keep, 1)))
        if log.rows():
            paths.append(log.plot(run.path(LOSS_PLOT)))
        note = write_tiny_note(run.path(), label)
        follow = cosine(latents.detach() - z0, sds_dir)
        colour_check = prompted_colour_check(label, args.prompt, final)
        metrics = {
            "pipeline": label, "data": run_data_label(label), "prompt": args.prompt,
            "negative_prompt": args.negative_prompt,
            "latents_follow_sds": follow, "mean_step_alignment": align.mean,
            "latent_displacement": float((latents.detach() - z0).norm()),
            "sds_guidance": args.sds_guidance, "guidance_scale": args.guidance_scale if args.sds_guidance else None,
            "iterations": args.steps, **finish_note(stopped_at, args.steps),
            "final_sds_loss": loss_value if math.isfinite(loss_value) else None,
            **timer.metrics(), "image_size": sd.image_size, "latent_size": sd.latent_size,
            "device": str(device), "dtype": str(sd.dtype).replace("torch.", ""), **memory_metrics(device, rss0, sd),
            "checks": {"latents_follow_sds": check(
                follow, min=MIN_FOLLOW, what="cosine between the latent's total displacement and the summed SDS "
                                             "directions (toward the UNet's denoised estimates)"),
                       **colour_check},
        }
        report(run.path(), metrics, paths + ([note] if note else []) + [f"{n_written} images in {run.path('iters')}"])
    return run.final()


if __name__ == "__main__":
    run_cli(main)
