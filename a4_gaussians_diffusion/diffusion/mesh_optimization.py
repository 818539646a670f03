"""Q2.2 SDS mesh texture: re-texture a fixed mesh (the cow) from a text prompt.

    python -m a4_gaussians_diffusion.diffusion.mesh_optimization --prompt "a zebra" --data_path data/a1/cow.obj

The texture is a colour field: an MLP on the harmonic embedding of each vertex position giving
that vertex's RGB (:class:`ColorField`). Each iteration draws a random camera (azimuth
U(-180, 180), elevation U(``--elev_range``), distance U(``--dist_range``), FoV 60) and a random
point light near it, renders the vertex-coloured mesh with the l3d Phong renderer at the
diffusion model's image size (512 for Stable Diffusion 2.1-base; gradients flow to the vertex
colours through the barycentric interpolation), encodes the render with the VAE and steps AdamW
(lr 5e-4, 2000 steps) along the guided SDS gradient. ``--view_dep_text 1`` conditions on
front / side / back prompts by the camera's azimuth.

Writes ``initial_mesh.gif`` / ``final_mesh.gif`` (360-degree turntables, with a PNG of the middle
frame each; at least 2 s per turn), ``initial_vs_final.gif`` (both side by side, labelled above),
``iters/iter_XXXX.png`` (the training view every ``--snapshot_every`` steps), ``losses.csv`` /
``losses.png``, checkpoints (every ``--save_every`` steps, at the end and on Ctrl-C / SIGTERM;
``--resume`` continues) and ``metrics.json`` into ``<output_dir>/<prompt><postfix>/`` (locked while
the run writes it; a fresh run replaces the folder's results only once it has saved its first
checkpoint).

Checks in metrics.json: ``texture_changed`` (mean absolute change of the vertex colours from
the initial field, 0..1) and ``sds_reaches_texture``: every ``--probe_every`` iterations, after
back-propagation, :func:`.common.gradient_check` moves the colour field a little along minus
and plus its gradient, renders and encodes the step's view again (same camera, light and VAE
sample) and compares the change of the latent along the SDS direction with what the
back-propagated gradient predicts; the mean ratio (over the probes whose predicted change the
latent's rounding can show: a saturated texture's gradient cannot be measured) is 1 when the full
SDS gradient flows through the VAE encoder and the renderer into the colour field with the right sign. --quick runs 20
steps at the tiny pipeline's size with a 10x larger learning rate (5e-3: as far as 2000
noise-like steps of 5e-4 would go) and 24-frame turntables.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from l3d.cameras import FoVPerspectiveCameras, look_at_view_transform
from l3d.checks import check, data_label
from l3d.cli import finite_float, positive_float, positive_int, report, run_cli, script_parser
from l3d.data import data_root, load_mesh_or_standin
from l3d.errors import user_error
from l3d.fields import HarmonicEmbedding, MLPWithInputSkips
from l3d.io import load_obj
from l3d.media import save_gif_with_png, save_image
from l3d.run import LOSS_LOG, LOSS_PLOT, CheckpointManager, LossLog, RunDir, check_finite, check_finite_params
from l3d.shading import PointLights, render_mesh
from l3d.structures import Meshes
from l3d.train import choose_device, graceful_interrupt, progress, seed_everything
from l3d.validate import check_shape
from l3d.viz import render_mesh_turntable, with_vertex_colors

from ..captions import turntable_frame_ms, with_banners
from .common import StepAlignment, StepTimer, add_sds_flags, check_range, finish_note, gradient_check, \
    load_guidance, memory_metrics, model_id, pipeline_label, prompt_embeddings, resume_state, rss_mb, \
    run_data_label, run_folder, save_args, shared_flag, write_tiny_note
from .views import view_dependent_embedding, wrap_azimuth

#: Check thresholds: mean vertex-colour change (0..1); the SDS gradient check (ratio, 1 = exact).
MIN_TEXTURE_CHANGE = 0.01
MIN_GRAD_CHECK, MAX_GRAD_CHECK = 0.9, 1.1


class ColorField(nn.Module):
    """Per-point RGB ``sigmoid(W MLP(gamma(x)))`` of 3-D points.

    Args:
        n_harmonic: frequencies of the positional encoding; hidden / n_layers: the MLP.
    """

    def __init__(self, n_harmonic: int = 4, hidden: int = 128, n_layers: int = 4):
        super().__init__()
        self.embed = HarmonicEmbedding(n_harmonic)
        self.mlp = MLPWithInputSkips(n_layers, self.embed.output_dim(3), hidden,
                                     input_skips=(n_layers // 2,) if n_layers > 2 else ())
        self.out = nn.Linear(hidden, 3)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """points (..., 3) -> colours (..., 3) in (0, 1)."""
        check_shape(points, ("...", 3), "points")
        return torch.sigmoid(self.out(self.mlp(self.embed(points))))


def random_mesh_views(batch: int, dist_range: Tuple[float, float], elev_range: Tuple[float, float],
                      generator: torch.Generator, device, fov: float = 60.0):
    """B random cameras looking at the origin and a point light near each.

    Returns:
        cameras (B), lights (locations (B, 3)), azimuths (B,) in degrees.
    """
    u = torch.rand(4, batch, generator=generator)
    dist = dist_range[0] + (dist_range[1] - dist_range[0]) * u[0]
    elev = elev_range[0] + (elev_range[1] - elev_range[0]) * u[1]
    azim = wrap_azimuth(-180.0 + 360.0 * u[2])
    R, T = look_at_view_transform(dist, elev, azim, device=device)
    cams = FoVPerspectiveCameras(fov=fov, R=R, T=T, device=device)
    centre = cams.get_camera_center()  # (B, 3)
    jitter = torch.randn(batch, 3, generator=generator).to(device)
    light = F.normalize(F.normalize(centre, dim=-1) + 0.5 * jitter, dim=-1) * centre.norm(dim=-1, keepdim=True)
    return cams, PointLights(location=light), azim.to(device)


def textured(mesh: Meshes, field: ColorField) -> Meshes:
    """The mesh with vertex colours from the field (differentiable w.r.t. the field)."""
    return with_vertex_colors(mesh, field(mesh.verts_packed()))


#: --quick: the tiny pipeline's size, a 10x larger learning rate, 24-frame turntables; flags you give win.
QUICK = {"steps": 20, "snapshot_every": 5, "probe_every": 1, "lr": 5e-3, "num_frames": 24, "image_size": 96,
         "hidden": 32}


def build_parser():
    ap = script_parser(__doc__, "a4_gaussians_diffusion/diffusion_mesh", presets={"quick": QUICK})
    add_sds_flags(ap)
    ap.set_defaults(prompt="a dotted black and white cow")
    shared_flag(ap, "data_path", "--mesh_path",
                help="OBJ mesh to texture (default: $L3D_DATA/a1/cow.obj, the course's cow; the built-in procedural "
                     "mesh when absent; 'synthetic' forces it)")
    ap.add_flag("steps", default=2000)
    ap.add_flag("lr", default=5e-4, help="AdamW learning rate")
    ap.add_flag("batch_size", default=1, help="random views per step")
    ap.add_argument("--dist_range", type=positive_float, nargs=2, default=(2.5, 3.0), metavar=("LOW", "HIGH"),
                    help="camera distance range")
    ap.add_argument("--elev_range", type=finite_float, nargs=2, default=(0.0, 30.0), metavar=("LOW", "HIGH"),
                    help="camera elevation range (degrees)")
    ap.add_argument("--view_dep_text", type=int, choices=[0, 1], default=0,
                    help="1: front/side/back prompts by azimuth (interpolated)")
    ap.add_argument("--view_dep_mode", choices=["interp", "select"], default="interp",
                    help="how view-dependent embeddings depend on the azimuth")
    ap.add_argument("--n_harmonic", type=positive_int, default=4, help="frequencies of the colour field's encoding")
    ap.add_argument("--hidden", type=positive_int, default=128, help="hidden width of the colour field")
    ap.add_argument("--snapshot_every", type=positive_int, default=100,
                    help="save the training view every this many steps (iters/iter_XXXX.png) and log the fixed "
                         "front view to TensorBoard (val/front_view)")
    shared_flag(ap, "num_frames", "--gif_frames", default=36, help="frames of the 360-degree GIFs")
    shared_flag(ap, "image_size", "--gif_size", default=256, help="side of the GIF frames in pixels")
    ap.add_flag("fps", default=15.0, help="GIF frame rate (capped at num_frames / 2: >= 2 s per turn)")
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_range(args, "dist_range", lo_min=0.0, open_low=True)
    check_range(args, "elev_range", lo_min=-90.0, hi_max=90.0)
    fps = min(args.fps, args.num_frames / 2.0)
    frame_ms = turntable_frame_ms(args.num_frames, fps)
    device = choose_device(args.device)
    seed_everything(args.seed)

    synthetic = args.data_path == "synthetic"
    if args.data_path and not synthetic:
        if not Path(args.data_path).is_file():
            raise user_error("--data_path", "an OBJ mesh file (or 'synthetic')", f"no file at {args.data_path}")
        mesh = load_obj(args.data_path, device=device)
        mesh_label = f"mesh: {args.data_path}"
    else:
        mesh = load_mesh_or_standin("a1/cow.obj", device, force_synthetic=synthetic)
        if not synthetic and (data_root() / "a1/cow.obj").exists():
            mesh_label = "mesh: " + data_label(course_file="a1/cow.obj")
        else:
            mesh_label = "mesh: procedural cow-like stand-in (the course's a1/cow.obj is not here)"
    sd = load_guidance(args, device)
    label = pipeline_label(sd, args.model)
    folder = run_folder(args)
    config = {"prompt": args.prompt, "negative_prompt": args.negative_prompt, "guidance_scale": args.guidance_scale,
              "model": model_id(sd, args.model), "view_dep_text": args.view_dep_text, "mesh": mesh_label,
              "num_verts": int(mesh.verts_packed().shape[0]), "n_harmonic": args.n_harmonic, "hidden": args.hidden}
    emb = prompt_embeddings(sd, args.prompt, args.negative_prompt, view_dependent=bool(args.view_dep_text))

    field = ColorField(args.n_harmonic, args.hidden).to(device)

    def vertex_colours() -> torch.Tensor:
        with torch.no_grad():
            return field(mesh.verts_packed()).detach().clone()

    colours0 = vertex_colours()  # the seeded initial field (the same when resuming)
    optim = torch.optim.AdamW(field.parameters(), lr=args.lr)
    with RunDir(folder, fresh=not args.resume) as run:  # locked; a failed fresh run keeps the old results
        ckpts = CheckpointManager(run.path("checkpoints"), every=args.save_every, keep_last=2, run=run)
        start = 0
        state = resume_state(ckpts, args, config, folder, device)
        if state is not None:
            field.load_state_dict(state["model"])
            optim.load_state_dict(state["optimizer"])
            start = int(state["step"]) + 1
            print(f"resumed from step {state['step']}")
        log = run.track(LossLog(run.path(LOSS_LOG), append=args.resume))
        if state is not None:
            log.rewind(state["step"])
        save_args(run.path(), args)

        def turntable(name: str):
            with torch.no_grad():
                frames = render_mesh_turntable(textured(mesh, field), args.num_frames, dist=2.4, elev=10.0,
                                               image_size=args.image_size)
            return list(save_gif_with_png(run.path(name), frames, duration_ms=frame_ms)), frames

        paths, initial_frames = turntable("initial_mesh.gif") if start == 0 else ([], None)
        grad_check = StepAlignment()  # collects the gradient checks of the probed steps
        # finite differences need float32: fp16 weights (CUDA's default) round the latent's change away
        can_probe = sd.dtype == torch.float32
        gen = torch.Generator().manual_seed(args.seed + start)
        timer = StepTimer(device)
        rss0 = rss_mb()
        loss_value, n_saved, stopped_at = float("nan"), 0, None
        with graceful_interrupt() as stop:
            for step in progress(range(start, args.steps), "SDS mesh"):
                cams, lights, azim = random_mesh_views(args.batch_size, tuple(args.dist_range),
                                                       tuple(args.elev_range), gen, device)
                probe = can_probe and (step % args.probe_every == 0 or step == args.steps - 1)
                step_check = float("nan")
                vae_seed = args.seed * 1_000_003 + step  # the VAE posterior sample of this step (replayed by the probe)

                def view_latent():  # this step's view and VAE sample at the current parameters
                    out = render_mesh(textured(mesh, field), cams, sd.image_size, lights=lights)
                    return sd.encode_images(out[..., :3].permute(0, 3, 1, 2),
                                            generator=torch.Generator(device=device).manual_seed(vae_seed))

                with timer:
                    optim.zero_grad(set_to_none=True)
                    rgba = render_mesh(textured(mesh, field), cams, sd.image_size, lights=lights)  # (B, H, W, 4)
                    images = rgba[..., :3].permute(0, 3, 1, 2)  # (B, 3, H, W)
                    latents = sd.encode_images(images, generator=torch.Generator(device=device).manual_seed(vae_seed))
                    cond = view_dependent_embedding(emb, azim, args.view_dep_mode) if args.view_dep_text \
                        else emb["default"]
                    res = sd.sds_loss(latents, cond, emb["uncond"], args.guidance_scale)
                    check_finite(res.loss, step, "SDS loss")
                    res.loss.backward()
                    if probe:
                        with timer.paused():
                            params = list(field.parameters())
                            step_check = grad_check.record(gradient_check(
                                params, [p.grad for p in params], view_latent, res.grad / latents.shape[0]))
                    optim.step()
                loss_value = float(res.loss.detach())
                log.append(step, {"loss/sds": loss_value, "t": int(res.t[0]), "azimuth": float(azim[0]),
                                  "grad_check": step_check})
                last = step == args.steps - 1
                if (step + 1) % args.snapshot_every == 0 or last:
                    save_image(run.path("iters", f"iter_{step + 1:04d}.png"), rgba[0, ..., :3].detach().clamp(0, 1))
                    n_saved += 1
                    if log.tensorboard:  # a fixed view (the turntable's first frame), unlike the random training views
                        with torch.no_grad():
                            front = render_mesh_turntable(textured(mesh, field), 1, dist=2.4, elev=10.0,
                                                          image_size=args.image_size)[0]
                        log.image(step, "val/front_view", front)
                if ckpts.due(step) or stop.requested or last:
                    check_finite_params(field, step)
                    ckpts.save(step, {"model": field.state_dict(), "optimizer": optim.state_dict(),
                                      "config": config})  # the first save commits the run
                if stop.requested:
                    stopped_at = step
                    break

        final_paths, final_frames = turntable("final_mesh.gif")
        paths += final_paths
        if initial_frames is not None:
            pairs = torch.stack([with_banners([a, b], ["initial", "final"])
                                 for a, b in zip(initial_frames, final_frames)])
            paths += list(save_gif_with_png(run.path("initial_vs_final.gif"), pairs, duration_ms=frame_ms))
        if log.rows():
            paths.append(log.plot(run.path(LOSS_PLOT)))
        note = write_tiny_note(run.path(), label)
        change = float((vertex_colours() - colours0).abs().mean())
        metrics = {
            "pipeline": label, "data": run_data_label(label, mesh_label), "prompt": args.prompt,
            "guidance_scale": args.guidance_scale, "lr": args.lr, "texture_change": change,
            "sds_gradient_check": grad_check.measured_mean if can_probe else None,
            "gradient_checks": grad_check.values,
            "view_dep_text": args.view_dep_text, "iterations": args.steps, **finish_note(stopped_at, args.steps),
            "final_sds_loss": loss_value if math.isfinite(loss_value) else None, **timer.metrics(),
            "render_size": sd.image_size, "num_verts": int(mesh.verts_packed().shape[0]),
            "num_faces": int(mesh.faces_packed().shape[0]), "device": str(device),
            "dtype": str(sd.dtype).replace("torch.", ""), **memory_metrics(device, rss0, sd),
            "checks": {
                "texture_changed": check(change, min=MIN_TEXTURE_CHANGE,
                                         what="mean |final - initial vertex colour| of the colour field (0..1)"),
            },
        }
        if can_probe:
            metrics["checks"]["sds_reaches_texture"] = check(
                grad_check.measured_mean, min=MIN_GRAD_CHECK, max=MAX_GRAD_CHECK,
                what=f"SDS gradient check, mean of the {len(grad_check.measured)} of {len(grad_check.values)} probed "
                     f"steps whose predicted change the latent's rounding can show: the change of the step's latent "
                     f"along the colour field's gradient over the change back-propagation predicts (1 = the full SDS "
                     f"gradient arrives)")
        else:
            metrics["gradient_check_note"] = "not measured with fp16 weights (use --precision fp32)"
        report(run.path(), metrics,
               paths + ([note] if note else []) + [f"{n_saved} training views in {run.path('iters')}"])
    return run.final()


if __name__ == "__main__":
    run_cli(main)
