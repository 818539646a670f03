"""Q2.3 / Q2.4.1 DreamFusion: optimise a NeRF from a text prompt with SDS (optionally view-dependent).

    python -m a4_gaussians_diffusion.diffusion.nerf_optimization --prompt "a standing corgi dog" \\
        --lambda_entropy 1e-3 --lambda_orient 1e-2 --latent_iter_ratio 0.2
    python -m a4_gaussians_diffusion.diffusion.nerf_optimization --prompt "a standing corgi dog" --view_dep_text 1
    python -m a4_gaussians_diffusion.diffusion.nerf_optimization --model output/a4_gaussians_diffusion/prior/pipeline \
        --preset small_prior --prompt "a green torus"      # the small prior trained here, about a minute on a CPU

``--preset small_prior`` (:data:`SMALL_PRIOR`) renders the field as that prior's pictures were made
(white background, light near the camera, its FoV and elevations), starts it see-through outside the
blob and steps at lr 3e-3; the defaults below are the course's, for Stable Diffusion.

Each iteration draws a random camera (radius U(3, 3.5), polar U(45, 105), azimuth U(-180, 180),
FoV U(10, 30) degrees), volume-renders the field at ``--render_height`` x ``--render_width`` (64 x 64)
with DreamFusion's
shading and computes the guided SDS loss of the render (upsampled to the model's 512 x 512 and
VAE-encoded) plus the regularisers:

    loss = SDS + lambda_entropy * min(1, 2 step / iters) * entropy(opacity) + lambda_orient * orientation

Shading schedule: for the first ``latent_iter_ratio * iters`` steps the field is rendered with
*normal* shading and the 4 channels (normal RGB, opacity), resized to the latent size and mapped
to [-1, 1], are used directly as the latent (the geometry warm-up of stable-dreamfusion /
Fantasia3D); then each step picks ``textureless`` shading with probability ``textureless_ratio``,
else ``lambertian`` with an ambient ratio U(min_ambient_ratio, 1), lit from a random direction near
the camera (``albedo`` only for the first ``albedo_iter_ratio * iters`` steps, if any). With
``--view_dep_text 1`` the text embedding is interpolated between "<prompt>, front / side / back
view" by the camera's azimuth (``--view_dep_mode select`` picks the nearest instead).

Field: :class:`a4_gaussians_diffusion.diffusion.nerf.DreamNeRF` (harmonic embedding + MLP, density
exp(h + blob), sigmoid albedo, normals from the density gradient) and a learned background of the
ray direction; Adam (lr 1e-3, betas 0.9/0.99; the course's Adan is not in PyTorch); an EMA copy of
the weights renders the videos. Writes ``videos/rgb.mp4`` and ``videos/depth.mp4`` (a 360-degree
orbit at polar 90, radius 3.2, FoV 20, at least 2 s per turn; also every ``--eval_every``
steps) with WebM (VP9) twins ``videos/rgb.webm`` / ``videos/depth.webm`` that every browser
plays, ``rgb.png`` / ``depth.png`` (a strip of orbit frames), ``iters/iter_XXXX.png`` (training
renders every ``--snapshot_every`` steps), ``losses.csv`` / ``losses.png``, checkpoints (every
``--save_every`` steps, at the end and on Ctrl-C / SIGTERM; ``--resume`` continues from the newest
intact one, with the same prompt, model and field) and ``metrics.json`` into
``<output_dir>/<prompt><_view_dep><postfix>/``, with ``--export_mesh`` also ``mesh.ply`` (albedo vertex
colours) and ``mesh.obj`` of the EMA field's density level set ``--mesh_level`` (default 10) on a
``--mesh_resolution`` grid over the scene's bounding cube (vertex / face counts in metrics.json) (locked while the run writes it; a fresh run
replaces the folder's results only once it has saved its first checkpoint).

Checks in metrics.json: ``sds_reaches_nerf``: every ``--probe_every`` iterations, with the
gradient of the SDS term alone, :func:`.common.gradient_check` moves the field (and the learned
background) a little along minus and plus that gradient, renders the step's view again with the
same ray samples (their distances fixed: the importance sampling itself is not differentiated),
encodes it the same way (normal-shading latent in the warm-up, else the same
VAE sample) and compares the change of the latent along the SDS direction with what the
back-propagated gradient predicts; the median ratio (over the probes whose predicted change the
latent's rounding can show) is 1 when the full SDS gradient flows through the encoder and the volume renderer into the field with the right sign (single steps
scatter by some 20 % around it: the exponential density makes the finite difference of the
float32 renders inexact). With ``--view_dep_text 1`` also ``view_text_changes_guidance``:
the relative difference between the guided noise predictions for the embeddings of the front
(azimuth 0) and back (180) views, at the same noisy latent (0 if the view prompts did not reach
the UNet). --quick runs 12 steps at 16 x 16 with a 24-frame video.

Several processes (``torchrun --nproc_per_node N -m a4_gaussians_diffusion.diffusion.nerf_optimization
...``, :mod:`l3d.distributed`): every rank starts from the same field, draws its own camera, shading,
light, timestep and noise (rank 0 as one process does), and the gradients are averaged over the
ranks before each Adam step, so a step uses N cameras (the effective batch grows with N; the curve
is not that of one process). The logged losses are the ranks' means; the gradient checks are rank
0's. Rank 0 alone writes (checkpoints, logs, renders, videos, mesh, metrics.json with
``"processes"``); a checkpoint resumes on any number of processes. TensorBoard (``tensorboard/``)
gets the losses and, every ``--snapshot_every`` steps, the EMA field rendered from the video orbit's
first (fixed) camera (``val/orbit_view``).
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F

from l3d import distributed
from l3d.checks import check
from l3d.cli import finite_float, nonneg_float, nonneg_int, positive_float, positive_int, report, run_cli, \
    script_parser
from l3d.errors import user_error
from l3d.export import add_mesh_flags, export_mesh
from l3d.media import save_image, save_mp4, save_webm
from l3d.run import LOSS_LOG, LOSS_PLOT, check_finite, check_finite_params
from l3d.train import graceful_interrupt, progress, seed_everything

from .common import StepAlignment, StepTimer, add_sds_flags, check_range, check_unit_interval, finish_note, \
    gradient_check, load_guidance, memory_metrics, model_id, pipeline_label, prompt_embeddings, resume_state, \
    rss_mb, run_data_label, run_folder, save_args, shared_flag, write_tiny_note
from .nerf import EMA, Background, DreamNeRF, NeRFConfig, config_dict, entropy_loss, render_nerf
from .train_prior import PRIOR_LABEL
from .views import CameraSampler, orbit_cameras, view_dependent_embedding

#: Check thresholds: the SDS gradient check (ratio, 1 = exact); relative front/back guidance difference.
MIN_GRAD_CHECK, MAX_GRAD_CHECK = 0.75, 1.25
MIN_VIEW_TEXT_EFFECT = 0.01
#: Default density level of ``--export_mesh``: the blob prior alone (log-density 5 at the centre,
#: radius 0.2) crosses it at r = 0.25, so even a short run has a surface to mesh.
MESH_LEVEL = 10.0


def choose_shading(step: int, iters: int, args, rng: random.Random):
    """(shading, ambient_ratio, as_latent) of this step (see the module docstring)."""
    if step < args.latent_iter_ratio * iters:
        return "normal", 1.0, True
    if step < args.albedo_iter_ratio * iters:
        return "albedo", 1.0, False
    if rng.random() < args.textureless_ratio:
        return "textureless", args.min_ambient_ratio + (1 - args.min_ambient_ratio) * rng.random(), False
    return "lambertian", args.min_ambient_ratio + (1 - args.min_ambient_ratio) * rng.random(), False


def render_orbit(model, background, args, device, n_frames: int, size: int, background_color=None):
    """(T, S, S, 3) RGB frames and (T, S, S) depths of the test orbit (albedo shading, no grad)."""
    cams = orbit_cameras(n_frames, args.default_radius, args.default_polar, args.default_fov, device=device)
    rgb, depth = [], []
    with torch.no_grad():
        for k in range(n_frames):  # one frame at a time bounds the memory
            r = render_nerf(model, cams.cameras[k:k + 1], size, "albedo", background=background,
                            background_color=background_color, chunk_rays=args.chunk_rays)
            rgb.append(r.image[0].clamp(0, 1).cpu())
            depth.append(r.depth[0].cpu())
    return torch.stack(rgb), torch.stack(depth)


def depth_frames(depth: torch.Tensor) -> torch.Tensor:
    """Greyscale (T, H, W, 3) frames of depths normalised by the video's own min / max."""
    lo, hi = float(depth.min()), float(depth.max())
    d = (depth - lo) / max(hi - lo, 1e-6)
    return d[..., None].expand(*d.shape, 3)


def view_text_effect(sd, emb, args, device, seed: int = 0) -> float:
    """Relative difference of the guided noise predictions for the front- and back-view
    embeddings (:func:`view_dependent_embedding` at azimuths 0 and 180) at one noisy latent."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(1, sd.latent_channels, sd.latent_size, sd.latent_size, generator=gen).to(device)
    noise = torch.randn(z.shape, generator=gen).to(device)
    t = torch.tensor([(sd.t_min + sd.t_max) // 2], device=device)
    with torch.no_grad():
        x_t = sd.scheduler.add_noise(z, noise, t)
        eps = [sd.predict_noise(x_t, t, view_dependent_embedding(emb, torch.tensor([az], device=device),
                                                                  args.view_dep_mode), emb["uncond"],
                                args.guidance_scale) for az in (0.0, 180.0)]
    return float((eps[0] - eps[1]).norm() / eps[0].norm().clamp(min=1e-12))


#: --quick: 12 steps at 16 x 16, 16 + 8 samples per ray, a 24-frame video; flags you give win.
QUICK = {"steps": 12, "render_height": 16, "render_width": 16, "n_samples": 16, "n_importance": 8, "hidden": 32,
         "num_frames": 24, "eval_every": 0, "snapshot_every": 5, "video_size": 32, "probe_every": 1}


#: --preset small_prior: the settings under which DreamFusion with the small prior of
#: :mod:`.train_prior` makes the prompted object. That prior only knows objects lit from near the
#: camera on a white background, seen at its renders' FoV (16..24 degrees) and elevation (0..30), so
#: the NeRF is rendered the same way (no textureless or dark shading, no normal-map latent warm-up,
#: a white background); the field starts see-through outside the blob (``--density_bias``) and
#: takes smaller steps: at lr 1e-2, or with the course's shading and cameras, the density filled
#: the frame or vanished (RESULTS.md). With ``--view_dep_text 1`` the view prompts are selected,
#: not mixed: mixed ones left a cow the same column from every side, selected ones made its side
#: views side views (with ``--steps 600 --lr 5e-3``; RESULTS.md).
SMALL_PRIOR = {"steps": 200, "render_height": 32, "render_width": 32, "n_samples": 32, "n_importance": 16,
               "guidance_scale": 7.5, "lr": 3e-3, "background": "white", "latent_iter_ratio": 0.0,
               "textureless_ratio": 0.0, "min_ambient_ratio": 0.6, "fov_range": (16.0, 24.0),
               "polar_range": (60.0, 90.0), "density_bias": -4.0, "probe_every": 50, "view_dep_mode": "select"}


def build_parser():
    ap = script_parser(__doc__, "a4_gaussians_diffusion/diffusion_nerf",
                       presets={"quick": QUICK, "small_prior": SMALL_PRIOR})
    add_sds_flags(ap, save_every=1000)
    ap.set_defaults(prompt="a standing corgi dog")
    g = ap.add_argument_group("training")
    shared_flag(g, "steps", "--iters", default=10000)
    shared_flag(g, "lr", default=1e-3, help="Adam learning rate")
    g.add_argument("--render_height", type=positive_int, default=64, help="height of the training renders in pixels")
    g.add_argument("--render_width", type=positive_int, default=64, help="width of the training renders in pixels")
    g.add_argument("--lambda_entropy", type=nonneg_float, default=1e-3, help="weight of the opacity entropy loss")
    g.add_argument("--lambda_orient", type=nonneg_float, default=1e-2, help="weight of the orientation loss")
    g.add_argument("--latent_iter_ratio", type=nonneg_float, default=0.2,
                   help="fraction of the steps with normal shading used directly as the latent (warm-up)")
    g.add_argument("--albedo_iter_ratio", type=nonneg_float, default=0.0, help="fraction of the steps with albedo shading")
    g.add_argument("--min_ambient_ratio", type=nonneg_float, default=0.1, help="lowest ambient ratio of lambertian shading")
    g.add_argument("--textureless_ratio", type=nonneg_float, default=0.2, help="probability of textureless shading")
    g.add_argument("--ema_decay", type=nonneg_float, default=0.95,
                   help="EMA of the weights used for the videos, in [0, 1) (0: off)")
    g.add_argument("--view_dep_text", type=int, choices=[0, 1], default=0,
                   help="1: front/side/back view prompts chosen by the camera azimuth")
    g.add_argument("--view_dep_mode", choices=["interp", "select"], default="interp",
                   help="interp: r = 1 - |az|/90 mixes front/side (side/back beyond 90); select: front |az|<30, "
                        "side 30..150, back beyond")
    c = ap.add_argument_group("cameras")
    c.add_argument("--radius_range", type=positive_float, nargs=2, default=(3.0, 3.5), metavar=("LOW", "HIGH"),
                   help="training camera distance")
    c.add_argument("--polar_range", type=finite_float, nargs=2, default=(45.0, 105.0), metavar=("LOW", "HIGH"),
                   help="training polar angle (deg from +Y)")
    c.add_argument("--azimuth_range", type=finite_float, nargs=2, default=(-180.0, 180.0), metavar=("LOW", "HIGH"),
                   help="training azimuth (deg)")
    c.add_argument("--fov_range", type=positive_float, nargs=2, default=(10.0, 30.0), metavar=("LOW", "HIGH"),
                   help="training vertical FoV (deg, below 180)")
    c.add_argument("--default_radius", type=positive_float, default=3.2, help="distance of the video orbit")
    c.add_argument("--default_polar", type=finite_float, default=90.0, help="polar angle of the video orbit")
    c.add_argument("--default_fov", type=positive_float, default=20.0, help="FoV of the video orbit (deg, below 180)")
    m = ap.add_argument_group("field and sampling")
    m.add_argument("--n_harmonic", type=positive_int, default=6, help="frequencies of the point encoding")
    m.add_argument("--hidden", type=positive_int, default=64, help="hidden width of the MLP")
    m.add_argument("--n_layers", type=positive_int, default=3, help="layers of the MLP")
    m.add_argument("--blob_density", type=finite_float, default=5.0, help="peak log-density of the blob prior")
    m.add_argument("--blob_radius", type=positive_float, default=0.2, help="radius of the blob prior")
    m.add_argument("--density_bias", type=finite_float, default=0.0,
                   help="added to the log-density everywhere (negative: the untrained field starts see-through "
                        "outside the blob instead of a fog of density about 1)")
    m.add_argument("--bound", type=positive_float, default=1.0, help="radius of the ball holding the scene")
    m.add_argument("--n_samples", type=positive_int, default=64, help="stratified samples per ray (at least 3)")
    m.add_argument("--n_importance", type=nonneg_int, default=32, help="importance samples per ray (0: none)")
    m.add_argument("--background", choices=["learned", "white", "black"], default="learned",
                   help="learned: an MLP of the ray direction (DreamFusion); else a fixed colour")
    o = ap.add_argument_group("outputs")
    o.add_argument("--eval_every", type=nonneg_int, default=2000,
                   help="write orbit videos every this many steps (0: only the final ones)")
    o.add_argument("--snapshot_every", type=positive_int, default=100,
                   help="save the training render every this many steps (iters/iter_XXXX_<shading>.png) and log "
                        "the EMA field from the video orbit's first camera to TensorBoard (val/orbit_view)")
    shared_flag(o, "num_frames", "--video_frames", default=100, help="frames of the orbit videos")
    o.add_argument("--video_size", type=positive_int, default=None,
                   help="side of the orbit videos in pixels (default: --render_height)")
    shared_flag(o, "fps", default=25.0, help="video frame rate (capped at num_frames / 2: >= 2 s per turn)")
    o.add_argument("--chunk_rays", type=positive_int, default=4096, help="rays per chunk when rendering videos")
    add_mesh_flags(ap, default_level=MESH_LEVEL, default_resolution=128)
    return ap


def check_flags(args) -> None:
    """The checks that the flags' value types cannot make alone (UserError naming the flag)."""
    if args.n_samples < 3:
        raise user_error("--n_samples", "at least 3 samples per ray", args.n_samples)
    check_unit_interval(args, "latent_iter_ratio", "albedo_iter_ratio", "min_ambient_ratio", "textureless_ratio")
    if not args.ema_decay < 1.0:
        raise user_error("--ema_decay", "a number in [0, 1)", f"{args.ema_decay:g}")
    check_range(args, "radius_range", lo_min=0.0, open_low=True)
    check_range(args, "polar_range", lo_min=0.0, hi_max=180.0)
    check_range(args, "azimuth_range")
    check_range(args, "fov_range", lo_min=0.0, hi_max=180.0, open_low=True, open_high=True)
    if not args.default_fov < 180.0:
        raise user_error("--default_fov", "a field of view below 180 degrees", f"{args.default_fov:g}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_flags(args)
    with distributed.session(args.device) as dist:  # one process, or one of torchrun's
        return _main(args, dist)


def _main(args, dist: distributed.Dist):
    fps = min(args.fps, args.num_frames / 2.0)
    video_size = args.video_size or args.render_height
    device = dist.device
    seed_everything(args.seed)
    main_rank = dist.is_main

    sd = load_guidance(args, device)
    label = pipeline_label(sd, args.model)
    if label == PRIOR_LABEL and args.preset != "small_prior" and main_rank:
        print("note: this is the small prior trained here; --preset small_prior sets the cameras, shading, "
              "background and lr under which it makes objects (without it the density tends to fill the frame "
              "or vanish)")
    folder = run_folder(args, "_view_dep" if args.view_dep_text else "")
    emb = prompt_embeddings(sd, args.prompt, args.negative_prompt, view_dependent=bool(args.view_dep_text))

    cfg = NeRFConfig(args.n_harmonic, args.hidden, args.n_layers, args.blob_density, args.blob_radius,
                     density_bias=args.density_bias, bound=args.bound, n_samples=args.n_samples,
                     n_importance=args.n_importance)
    config = {"prompt": args.prompt, "negative_prompt": args.negative_prompt, "guidance_scale": args.guidance_scale,
              "model": model_id(sd, args.model), "view_dep_text": args.view_dep_text, "background": args.background,
              **config_dict(cfg)}
    model = DreamNeRF(cfg).to(device)
    background = Background().to(device) if args.background == "learned" else None
    bg_color = None if background is not None else torch.full((3,), 1.0 if args.background == "white" else 0.0,
                                                               device=device)
    params = list(model.parameters()) + (list(background.parameters()) if background is not None else [])
    optim = torch.optim.Adam(params, lr=args.lr, betas=(0.9, 0.99), eps=1e-15)
    ema = EMA(model, args.ema_decay)
    ema_bg = EMA(background, args.ema_decay) if background is not None else None
    sampler = CameraSampler(tuple(args.radius_range), tuple(args.polar_range), tuple(args.azimuth_range),
                            tuple(args.fov_range))
    seed = dist.seed(args.seed)  # every rank starts from the same field and draws its own cameras and noise
    if dist.rank:
        seed_everything(seed)  # the SDS timesteps and noise (rank 0 draws as one process does)
    # rank 0 locks the folder (a failed fresh run keeps the old results); the other ranks write nothing
    with dist.run_dir(folder, fresh=not args.resume) as run:
        ckpts = dist.checkpoints(run.path("checkpoints"), every=args.save_every, keep_last=2, run=run)
        start = 0
        state = resume_state(ckpts, args, config, folder, device)
        if state is not None:
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
            if background is not None:
                background.load_state_dict(state["background"])
                ema_bg.load_state_dict(state["ema_background"])
            optim.load_state_dict(state["optimizer"])
            start = int(state["step"]) + 1
            if main_rank:
                print(f"resumed from step {state['step']}")
        if dist.enabled:  # every rank continues from the same checkpoint
            dist.check_same(start, "the step to resume from")
        log = dist.loss_log(run, run.path(LOSS_LOG), append=args.resume)
        if state is not None:
            log.rewind(state["step"])
        if main_rank:
            save_args(run.path(), args)

        cam_gen = torch.Generator().manual_seed(seed * 1000003 + start)
        ray_gen = torch.Generator(device=device).manual_seed(seed + start)
        rng = random.Random(seed * 7919 + start)
        timer = StepTimer(device)
        rss0 = rss_mb()
        last_losses: dict = {}
        n_saved, stopped_at = 0, None

        grad_check = StepAlignment()  # collects the gradient checks of the probed steps
        # finite differences need float32: fp16 weights (CUDA's default) round the latent's change away
        can_probe = sd.dtype == torch.float32

        def write_videos(tag: str, webm: bool = False):
            rgb, depth = render_orbit(ema.module(), ema_bg.module() if ema_bg else background, args, device,
                                      args.num_frames, video_size, bg_color)
            files = [save_mp4(run.path("videos", f"rgb{tag}.mp4"), rgb, fps=fps),
                     save_mp4(run.path("videos", f"depth{tag}.mp4"), depth_frames(depth), fps=fps)]
            if webm:  # browsers without H.264 (Chromium) play these
                files += [save_webm(run.path("videos", f"rgb{tag}.webm"), rgb, fps=fps),
                          save_webm(run.path("videos", f"depth{tag}.webm"), depth_frames(depth), fps=fps)]
            return files, rgb, depth

        def encode(r, as_latent: bool, vae_seed: int):
            """The step's latent of a render: the normal-shading latent in the warm-up, else a VAE
            posterior sample drawn with ``vae_seed``."""
            image = r.image.permute(0, 3, 1, 2)  # (1, 3, h, w)
            if as_latent:
                four = torch.cat([image, r.opacity[:, None]], 1)  # (1, 4, h, w)
                return F.interpolate(four, (sd.latent_size, sd.latent_size), mode="bilinear",
                                     align_corners=False) * 2 - 1
            return sd.encode_images(image, generator=torch.Generator(device=device).manual_seed(vae_seed))

        def checkpoint():
            return {"model": model.state_dict(), "optimizer": optim.state_dict(), "config": config,
                    "ema": ema.state_dict(),
                    "background": background.state_dict() if background is not None else None,
                    "ema_background": ema_bg.state_dict() if ema_bg is not None else None}

        val_cam = orbit_cameras(1, args.default_radius, args.default_polar, args.default_fov, device=device).cameras

        def log_val_image(step: int) -> None:  # the EMA field from a fixed camera: comparable between steps
            if getattr(log, "tensorboard", False):
                with torch.no_grad():
                    r = render_nerf(ema.module(), val_cam, video_size, "albedo",
                                    background=ema_bg.module() if ema_bg else background, background_color=bg_color,
                                    chunk_rays=args.chunk_rays)
                log.image(step, "val/orbit_view", r.image[0].clamp(0, 1))

        stopping = False
        with graceful_interrupt(message=main_rank) as stop:
            for step in progress(range(start, args.steps), "DreamFusion", disable=None if main_rank else True):
                dist.fault_point(step)
                cams = sampler.sample(1, cam_gen, device)
                shading, ambient, as_latent = choose_shading(step, args.steps, args, rng)
                centre = cams.centers  # (1, 3)
                light = F.normalize(centre + torch.randn(1, 3, generator=cam_gen).to(device), dim=-1)
                probe = can_probe and (step % args.probe_every == 0 or step == args.steps - 1)

                def render_step(generator, need_orient, lengths=None):
                    return render_nerf(model, cams.cameras, (args.render_height, args.render_width), shading,
                                       background=None if as_latent else background,
                                       background_color=torch.zeros(3, device=device) if as_latent else bg_color,
                                       light_dir=light, ambient_ratio=ambient, perturb=True, generator=generator,
                                       need_orient=need_orient, lengths=lengths)

                step_check = float("nan")
                vae_seed = seed * 1_000_003 + step

                def view_latent():  # this step's view with the same ray samples and VAE sample
                    return encode(render_step(None, False, lengths=r.lengths), as_latent, vae_seed)

                with timer:
                    optim.zero_grad(set_to_none=True)
                    r = render_step(ray_gen, args.lambda_orient > 0)
                    latents = encode(r, as_latent, vae_seed)
                    cond = view_dependent_embedding(emb, cams.azimuth, args.view_dep_mode) if args.view_dep_text \
                        else emb["default"]
                    res = sd.sds_loss(latents, cond, emb["uncond"], args.guidance_scale)
                    ent = entropy_loss(r.opacity)
                    lam_ent = args.lambda_entropy * min(1.0, 2.0 * step / args.steps)
                    loss = res.loss + lam_ent * ent + args.lambda_orient * r.orient
                    check_finite(loss, step)
                    sds_grads = None
                    if probe:  # the gradient of the SDS term alone (the regularisers have their own)
                        with timer.paused():
                            sds_grads = torch.autograd.grad(res.loss, params, retain_graph=True, allow_unused=True)
                    loss.backward()
                    if probe:
                        with timer.paused():
                            step_check = grad_check.record(gradient_check(params, sds_grads, view_latent, res.grad))
                    dist.average_gradients(params)  # N processes: a step over N cameras
                    optim.step()
                    ema.update(model)
                    if ema_bg is not None:
                        ema_bg.update(background)
                last_losses = {"loss/total": float(loss.detach()), "loss/sds": float(res.loss.detach()),
                               "loss/entropy": float(ent.detach()), "loss/orient": float(r.orient.detach())}
                # the ranks' mean losses, and whether any rank was asked to stop (one collective)
                sums = dist.sum(list(last_losses.values()) + [float(stop.requested)])
                last_losses = {k: v / dist.world_size for k, v in zip(last_losses, sums)}
                stopping = sums[-1] > 0
                log.append(step, {**last_losses, "t": int(res.t[0]), "azimuth": float(cams.azimuth[0]),
                                  "shading": shading, "grad_check": step_check})
                last = step == args.steps - 1
                if main_rank and ((step + 1) % args.snapshot_every == 0 or last or stopping):
                    if (step + 1) % args.snapshot_every == 0 or last:
                        save_image(run.path("iters", f"iter_{step + 1:04d}_{shading}.png"),
                                   r.image[0].detach().clamp(0, 1))
                        n_saved += 1
                    log_val_image(step)
                if ckpts.due(step) or stopping or last:
                    check_finite_params({"model": model, "background": background}, step)
                    ckpts.save(step, checkpoint())  # the first save commits the run (rank 0 writes)
                if main_rank and args.eval_every and (step + 1) % args.eval_every == 0 and not last and not stopping:
                    write_videos(f"_{step + 1:05d}")
                if stopping:
                    stopped_at = step
                    break

        if not main_rank:  # rank 0 writes the videos, the mesh and the metrics
            return None

        files, rgb, depth = write_videos("", webm=True)
        idx = np.linspace(0, len(rgb) - 1, min(len(rgb), 8)).round().astype(int)
        files.append(save_image(run.path("rgb.png"), torch.cat(list(rgb[idx]), 1)))
        files.append(save_image(run.path("depth.png"), torch.cat(list(depth_frames(depth)[idx]), 1)))
        if log.rows():
            files.append(log.plot(run.path(LOSS_PLOT),
                                  groups=[["loss/total", "loss/sds"], ["loss/entropy"], ["loss/orient"]]))
        mesh_metrics = {}
        if args.export_mesh:  # the EMA field (the one the videos show): density level set, albedo colours
            field = ema.module()
            with torch.no_grad():
                mesh, written = export_mesh(field.density, run.path(), args.bound, args.mesh_resolution,
                                            args.mesh_level, inside="above", color_fn=lambda x: field(x)[1],
                                            chunk=args.chunk_rays * 16, device=device)
            files += written
            mesh_metrics = {"mesh": {"vertices": int(len(mesh.verts)), "faces": int(len(mesh.faces)),
                                     "level": args.mesh_level, "resolution": args.mesh_resolution,
                                     "field_range": list(mesh.field_range)}}
        note = write_tiny_note(run.path(), label)
        final = {k.replace("loss/", "final_"): v for k, v in last_losses.items()}
        checks = {}
        if can_probe:
            checks["sds_reaches_nerf"] = check(
                grad_check.measured_median, min=MIN_GRAD_CHECK, max=MAX_GRAD_CHECK,
                what=f"SDS gradient check, median of the {len(grad_check.measured)} of {len(grad_check.values)} "
                     f"probed steps whose predicted change the latent's rounding can show: the change of the step's "
                     f"latent along the field's SDS gradient over the change back-propagation predicts (1 = the full "
                     f"SDS gradient arrives)")
        view_effect = None
        if args.view_dep_text:
            view_effect = view_text_effect(sd, emb, args, device)
            checks["view_text_changes_guidance"] = check(
                view_effect, min=MIN_VIEW_TEXT_EFFECT,
                what="|eps_hat(front view) - eps_hat(back view)| / |eps_hat(front view)| at one noisy latent")
        metrics = {
            "pipeline": label, "data": run_data_label(label), "prompt": args.prompt,
            "view_dep_text": args.view_dep_text,
            "sds_gradient_check": grad_check.measured_median if can_probe else None,
            "gradient_checks": grad_check.values,
            "view_text_effect": view_effect, "fps": fps,
            "view_dep_mode": args.view_dep_mode if args.view_dep_text else None, "guidance_scale": args.guidance_scale,
            "iterations": args.steps, **finish_note(stopped_at, args.steps),
            "lambda_entropy": args.lambda_entropy, "lambda_orient": args.lambda_orient,
            "latent_iter_ratio": args.latent_iter_ratio, "render_size": [args.render_height, args.render_width],
            "samples_per_ray": args.n_samples + args.n_importance,
            **{k: (v if math.isfinite(v) else None) for k, v in final.items()},
            **timer.metrics(), "video_frames": args.num_frames, "video_size": video_size,
            "video_depth_range": [float(depth.min()), float(depth.max())],
            "device": str(device), "dtype": str(sd.dtype).replace("torch.", ""), **memory_metrics(device, rss0, sd),
            "processes": dist.world_size, "cameras_per_step": dist.world_size,
            **mesh_metrics, "checks": checks,
        }
        if not can_probe:
            metrics["gradient_check_note"] = "not measured with fp16 weights (use --precision fp32)"
        report(run.path(), metrics,
               files + ([note] if note else []) + [f"{n_saved} training renders in {run.path('iters')}"])
    return run.final()


if __name__ == "__main__":
    run_cli(main)
