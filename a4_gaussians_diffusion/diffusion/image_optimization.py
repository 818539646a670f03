"""Q2.1 SDS image optimisation: optimise a latent image so that it matches a text prompt.

    python -m a4_gaussians_diffusion.diffusion.image_optimization --prompt "a hamburger" --sds_guidance 1
    python -m a4_gaussians_diffusion.diffusion.image_optimization --prompt "a standing corgi dog" --sds_guidance 0

The latent (1, 4, 64, 64) starts as standard normal noise and is the only parameter; each
iteration adds noise at a random timestep, asks the UNet for the noise (with classifier-free
guidance when ``--sds_guidance 1``, else the conditional prediction alone) and steps AdamW along
the SDS gradient (lr 0.1, cosine schedule with 100 warm-up steps, 2000 iterations). Writes
``iters/iter_XXXX.png`` (the decoded latent every ``--save_every`` iterations), ``final.png``,
``progress.png`` (the saved iterations side by side, each labelled above), ``losses.csv`` /
``losses.png``, a checkpoint and ``metrics.json`` into
``<output_dir>/<prompt>_<guidance|no_guidance><postfix>/``.

The check in metrics.json: minus the SDS gradient points from the latent toward the UNet's
denoised estimate of that step's noisy latent (:class:`.common.StepAlignment`); the cosine
between the latent's total displacement and the sum of those directions over the run
(``latents_follow_sds``) is near 1 when the optimisation follows the score, 0 or below when the
gradient does not reach the latent or has the wrong sign. The per-step cosines are in
``losses.csv`` (``align``). --quick runs 30 iterations (a tiny pipeline run takes seconds).
"""

from __future__ import annotations

import math

import torch

from l3d.checks import check
from l3d.cli import report, run_cli, script_parser
from l3d.media import save_image
from l3d.run import CheckpointManager, LossLog, check_finite
from l3d.train import choose_device, graceful_interrupt, progress, seed_everything

from ..captions import with_banner
from .common import StepAlignment, StepTimer, add_sds_flags, check_iterations, cosine, load_guidance, memory_metrics, \
    pipeline_label, prompt_embeddings, rss_mb, run_data_label, run_folder, save_args, write_tiny_note

#: Minimum cosine between the latent's displacement and the summed SDS directions.
MIN_FOLLOW = 0.5


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` steps, then a half cosine from the base rate to 0 at ``total``
    (diffusers' ``get_cosine_schedule_with_warmup`` with 0.5 cycles)."""
    from diffusers.optimization import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=warmup, num_training_steps=max(total, 1))


def main(argv=None):
    ap = script_parser(__doc__, "a4_gaussians_diffusion/diffusion_image")
    add_sds_flags(ap)
    ap.add_argument("--sds_guidance", type=int, choices=[0, 1], default=1,
                    help="1: classifier-free guidance with the negative prompt; 0: conditional noise prediction only")
    ap.add_argument("--iterations", type=int, default=2000, help="optimisation steps")
    ap.add_argument("--lr", type=float, default=0.1, help="AdamW learning rate")
    ap.add_argument("--weight_decay", type=float, default=0.0, help="AdamW weight decay")
    ap.add_argument("--warmup", type=int, default=100, help="linear warm-up steps of the cosine schedule")
    ap.add_argument("--save_every", type=int, default=100, help="decode and save the image every this many iterations")
    args = ap.parse_args(argv)
    if args.quick:
        args.iterations, args.save_every, args.warmup = min(args.iterations, 30), min(args.save_every, 10), min(args.warmup, 3)
    check_iterations(args.iterations)
    if args.save_every < 1:
        raise ValueError("--save_every must be at least 1")
    device = choose_device(args.device)
    seed_everything(args.seed)

    sd = load_guidance(args, device)
    label = pipeline_label(sd, args.model)
    out = run_folder(args, "_guidance" if args.sds_guidance else "_no_guidance")
    save_args(out, args)
    emb = prompt_embeddings(sd, args.prompt, args.negative_prompt)
    uncond = emb["uncond"] if args.sds_guidance else None

    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    init = torch.randn(1, sd.latent_channels, sd.latent_size, sd.latent_size, generator=gen)
    latents = torch.nn.Parameter(init.to(device))
    optim = torch.optim.AdamW([latents], lr=args.lr, weight_decay=args.weight_decay)
    sched = cosine_with_warmup(optim, args.warmup, args.iterations)
    ckpts = CheckpointManager(out / "checkpoints", every=args.ckpt_every, keep_last=2)
    log = LossLog(out / "losses.csv", append=args.resume)
    start = 0
    z0 = latents.detach().clone()
    sds_dir = torch.zeros_like(z0)  # sum of -grad: the directions toward the denoised estimates
    if args.resume and (state := ckpts.resume()) is not None:
        latents.data.copy_(state["latents"].to(device))
        optim.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        if "sds_dir" in state:
            z0, sds_dir = state["z0"].to(device), state["sds_dir"].to(device)
        start = int(state["step"]) + 1
        log.rewind(state["step"])
        print(f"resumed from step {state['step']}")
    align = StepAlignment()

    written, snapshots = [], []
    timer = StepTimer(device)
    rss0 = rss_mb()
    loss_value = float("nan")
    (out / "iters").mkdir(exist_ok=True)
    with graceful_interrupt() as stop:
        for step in progress(range(start, args.iterations), "SDS image"):
            before = latents.detach().clone()
            with timer:
                optim.zero_grad(set_to_none=True)
                res = sd.sds_loss(latents, emb["default"], uncond, args.guidance_scale)
                check_finite(res.loss, step, "SDS loss")
                res.loss.backward()
                optim.step()
                sched.step()
            loss_value = float(res.loss.detach())
            sds_dir -= res.grad.to(sds_dir.dtype)
            step_cos = align.add(before, latents.detach(), res.grad) if step > 0 or args.warmup == 0 else float("nan")
            log.append(step, {"loss/sds": loss_value, "t": int(res.t[0]), "lr": sched.get_last_lr()[0], "align": step_cos})
            last = step == args.iterations - 1
            if (step + 1) % args.save_every == 0 or last:
                img = sd.decode_latents(latents.detach())[0].permute(1, 2, 0).cpu()  # (H, W, 3)
                written.append(save_image(out / "iters" / f"iter_{step + 1:04d}.png", img))
                snapshots.append(with_banner(img.numpy(), f"step {step + 1}"))
            ckpts.maybe_save(step, lambda: {"latents": latents.detach().cpu(), "optim": optim.state_dict(),
                                            "sched": sched.state_dict(), "args": vars(args),
                                            "z0": z0.cpu(), "sds_dir": sds_dir.cpu()},
                             force=stop.requested or last)
            if stop.requested:
                break

    final = sd.decode_latents(latents.detach())[0].permute(1, 2, 0).cpu()
    paths = [save_image(out / "final.png", final)]
    if snapshots:
        import numpy as np

        keep = snapshots if len(snapshots) <= 10 else [snapshots[i] for i in
                                                        np.linspace(0, len(snapshots) - 1, 10).round().astype(int)]
        paths.append(save_image(out / "progress.png", np.concatenate(keep, 1)))
    if log.rows():
        paths.append(log.plot(out / "losses.png"))
    note = write_tiny_note(out, label)
    follow = cosine(latents.detach() - z0, sds_dir)
    metrics = {
        "pipeline": label, "data": run_data_label(label), "prompt": args.prompt, "negative_prompt": args.negative_prompt,
        "latents_follow_sds": follow, "mean_step_alignment": align.mean,
        "latent_displacement": float((latents.detach() - z0).norm()),
        "sds_guidance": args.sds_guidance, "guidance_scale": args.guidance_scale if args.sds_guidance else None,
        "iterations": args.iterations, "final_sds_loss": loss_value if math.isfinite(loss_value) else None,
        **timer.metrics(), "image_size": sd.image_size, "latent_size": sd.latent_size,
        "device": str(device), "dtype": str(sd.dtype).replace("torch.", ""), **memory_metrics(device, rss0),
        "checks": {"latents_follow_sds": check(
            follow, min=MIN_FOLLOW, what="cosine between the latent's total displacement and the summed SDS "
                                         "directions (toward the UNet's denoised estimates)")},
    }
    report(out, metrics, paths + ([note] if note else []) + [f"{len(written)} images in {out / 'iters'}"])
    return out


if __name__ == "__main__":
    run_cli(main)
