"""Fitting Gaussians to a multi-view scene: optimiser, schedules, densification, evaluation.

The defaults are the course's Q1.2 settings: isotropic Gaussians initialised from the scene's
points, L1 loss, 1000 iterations of Adam (one random training view per iteration) with
per-parameter learning rates (opacities 0.001, scales 0.001, colours 0.02, means 0.0002).
The "harder scene" options add a random init, a learning-rate schedule, an SSIM term,
anisotropic Gaussians and densification / pruning (a :class:`~.strategy.DensifyStrategy`
whose hooks run around the backward pass; its state is checkpointed).

A run's folder is a :class:`l3d.run.RunDir`: locked against a second run, and a fresh run into
a folder with results writes into a pending folder until its first good checkpoint, so a run
that fails early (a diverging learning rate, a damaged input) leaves the previous results as
they were. Every step's loss goes through :func:`l3d.run.check_finite` and the parameters
through :func:`l3d.run.check_finite_params` (before every checkpoint and the .ply too): a
diverging run stops with one line naming the step and the parameter group. ``--resume``
continues from the newest intact checkpoint, bit for bit as the uninterrupted run, and refuses
a checkpoint of another model configuration (:func:`l3d.run.check_same_config`).

Several processes (``torchrun``, :mod:`l3d.distributed`): every step draws ``batch_size`` training
views (the global batch; the loss is their mean) and each rank renders its share of them (views
rank, rank + N, ...). One all-reduce per step sums the parameters' gradients together with this
step's densification statistics (screen-space gradient norms and counts of every rank's views),
so every rank takes the same Adam step, densifies, splits and prunes the same Gaussians (the split
generator is seeded alike) and holds the same model; the Gaussian count is compared across ranks
after every densification. Rank 0 alone writes (checkpoints, logs, progress frames, the final
evaluation); a checkpoint resumes on any number of processes.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch

from l3d import distributed
from l3d.errors import NonFiniteError, UserError, user_error
from l3d.ops import knn_points
from l3d.media import save_gif_with_png
from l3d.run import LOSS_LOG, LOSS_PLOT, CheckpointManager, LossLog, RunDir, check_finite, check_finite_params, \
    check_same_config
from l3d.train import graceful_interrupt, progress, seed_everything

from ..captions import with_banner
from .data import Scene
from .losses import evaluate_images, l1, ssim
from .model import Gaussians
from .ply import save_gaussians_ply
from .sh import rgb_to_sh_dc
from .rasterize import RasterSettings
from .strategy import DensifySettings, DensifyStats, DensifyStrategy, densify_and_prune, replace_rows, \
    reset_opacities  # noqa: F401  (re-exported: the densification helpers lived here)


@dataclass
class TrainConfig:
    """Every setting of a training run (saved in each checkpoint)."""

    steps: int = 1000
    batch_size: int = 1  # training views per step (the global batch across processes)
    init: str = "points"  # points | random
    num_random: int = 10000
    anisotropic: bool = False
    sh: bool = False
    sh_degree: int = 3
    lr_means: float = 0.0002
    lr_scales: float = 0.001
    lr_opacities: float = 0.001
    lr_colours: float = 0.02
    lr_quats: float = 0.001
    lr_sh: float = 0.01
    lr_schedule: str = "none"  # none | exp | cosine
    lr_final_ratio: float = 0.1
    ssim_weight: float = 0.0
    densify: bool = False
    densify_from: int = 100
    densify_until: int = -1  # -1: half of the steps
    densify_every: int = 100
    densify_grad: float = 0.0002
    percent_dense: float = 0.01
    prune_opacity: float = 0.005
    max_gaussians: int = 50000
    opacity_reset_every: int = 0  # 0: never
    gaussians_per_splat: int = -1
    rasterizer: str = "tiled"
    tile_size: int = 4
    pixel_offset: float = 0.5
    view_rotation: str = "correct"
    viz_every: int = 50
    save_every: int = 200
    seed: int = 0
    background: Optional[Tuple[float, float, float]] = None  # None: the scene's own (course: black)


#: The settings a checkpoint must share with the run that resumes it (the model's layout).
MODEL_KEYS = ("anisotropic", "sh", "sh_degree")

PARAM_LR = {"means": "lr_means", "log_scales": "lr_scales", "opacity_logits": "lr_opacities",
            "colours": "lr_colours", "quats": "lr_quats", "sh": "lr_sh"}


# ---------------------------------------------------------------------------------------------
# model and optimiser
# ---------------------------------------------------------------------------------------------
def init_gaussians(cfg: TrainConfig, scene: Scene, device) -> Gaussians:
    """Gaussians from the scene's points (``init="points"``) or random (``init="random"``)."""
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    if cfg.init == "points":
        if scene.points is None:
            raise UserError(f"{scene.path} has no points (points/points_N.npy, or a COLMAP model's points3D); "
                            f"use --init random")
        g = Gaussians.from_points(scene.points.cpu(), isotropic=not cfg.anisotropic, with_sh=cfg.sh,
                                  generator=gen, sh_degree=cfg.sh_degree)
        if scene.normalization is not None:
            # sparse SfM points: the course's rule (mean squared distance to 50 neighbours) makes
            # isolated points huge, splats that cover whole views; cap it at 3DGS's initial scale,
            # the root mean squared distance to the 3 nearest points
            with torch.no_grad():
                pts = scene.points.cpu()[None].to(g.log_scales.dtype)
                d2 = knn_points(pts, pts, K=min(4, len(scene.points))).dists[0, :, 1:].mean(-1)  # (P,) without itself
                cap = (0.5 * torch.log(d2.clamp(min=1e-12)))[:, None]
                g.log_scales.copy_(torch.minimum(g.log_scales, cap))
        if scene.point_colors is not None:  # COLMAP points carry their colours: start from them
            with torch.no_grad():
                g.colours.copy_(scene.point_colors.cpu().to(g.colours.dtype))
                if g.sh is not None:
                    g.sh[:, :3] = rgb_to_sh_dc(g.colours)
    elif cfg.init == "random":
        g = Gaussians.random(cfg.num_random, isotropic=not cfg.anisotropic, with_sh=cfg.sh, generator=gen,
                             sh_degree=cfg.sh_degree)
    else:
        raise UserError(f"--init must be 'points' or 'random', got {cfg.init!r}")
    return g.to(device)


def trainable(g: Gaussians, cfg: TrainConfig) -> List[str]:
    """Names of the parameters that are optimised."""
    names = ["means", "log_scales", "opacity_logits", "sh" if cfg.sh else "colours"]
    if not g.isotropic:
        names.append("quats")
    return names


def make_optimizer(g: Gaussians, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam with one parameter group (and learning rate) per parameter tensor."""
    groups = [{"params": [getattr(g, n)], "lr": getattr(cfg, PARAM_LR[n]), "name": n, "base_lr": getattr(cfg, PARAM_LR[n])}
              for n in trainable(g, cfg)]
    return torch.optim.Adam(groups, eps=1e-15)


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Multiplier of every base learning rate at ``step`` (0-based)."""
    t = min(max(step / max(cfg.steps - 1, 1), 0.0), 1.0)
    r = cfg.lr_final_ratio
    if cfg.lr_schedule == "none":
        return 1.0
    if cfg.lr_schedule == "exp":
        return r ** t
    if cfg.lr_schedule == "cosine":
        return r + (1 - r) * 0.5 * (1 + math.cos(math.pi * t))
    raise UserError(f"--lr_schedule must be none, exp or cosine, got {cfg.lr_schedule!r}")


def scene_extent(scene: Scene) -> float:
    """Radius of the camera centres around their mean (3DGS's scene scale)."""
    c = scene.cameras.get_camera_center()
    return float((c - c.mean(0)).norm(dim=-1).max()) * 1.1


def densify_settings(cfg: TrainConfig) -> DensifySettings:
    """The strategy's settings of a run (``densify_until`` -1: half of the steps)."""
    until = cfg.densify_until if cfg.densify_until >= 0 else cfg.steps // 2
    return DensifySettings(enabled=cfg.densify, start=cfg.densify_from, stop=until, every=cfg.densify_every,
                           grad_threshold=cfg.densify_grad, percent_dense=cfg.percent_dense,
                           prune_opacity=cfg.prune_opacity, max_gaussians=cfg.max_gaussians,
                           opacity_reset_every=cfg.opacity_reset_every)


# ---------------------------------------------------------------------------------------------
# rendering helpers
# ---------------------------------------------------------------------------------------------
def scene_background(cfg: TrainConfig, scene: Scene) -> Tuple[float, float, float]:
    """The background of training and evaluation: ``cfg.background`` when set, else the scene's."""
    bg = cfg.background if cfg.background is not None else scene.background
    return tuple(float(c) for c in bg)  # type: ignore[return-value]


def raster_settings(cfg: TrainConfig, scene: Scene, background=None) -> RasterSettings:
    """Raster settings of a run; the background is ``background`` when given, else
    :func:`scene_background` (a scene's background belongs to the scene)."""
    bg = tuple(background) if background is not None else scene_background(cfg, scene)
    return RasterSettings(scene.image_size, background=bg, mode=cfg.rasterizer,
                          gaussians_per_splat=cfg.gaussians_per_splat, tile_size=cfg.tile_size,
                          pixel_offset=cfg.pixel_offset, view_rotation=cfg.view_rotation)


def render_views(g: Gaussians, scene: Scene, views: List[int], settings: RasterSettings, use_sh: bool) -> torch.Tensor:
    """(V, H, W, 3) renders (no grad) of the given frames, clamped to [0, 1]."""
    with torch.no_grad():
        return torch.stack([g.render(scene.cameras[i], settings, use_sh).image.clamp(0, 1) for i in views])


def prediction_over_truth(pred: torch.Tensor, gt: torch.Tensor, label: Optional[str] = None) -> torch.Tensor:
    """(2H [+ banner], V*W, 3) frame: the V predictions in the top row, their ground truth
    below, and ``label`` in a banner above (never over the pictures)."""
    top = torch.cat(list(pred), 1)
    frame = torch.cat([top, torch.cat(list(gt), 1)], 0)
    if label:
        frame = with_banner(frame, label)
    return frame


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    model: Gaussians
    metrics: Dict[str, object]
    written: List[Path] = field(default_factory=list)


def check_params(g: Gaussians, opt: torch.optim.Adam, step: int) -> None:
    """Stop with one line when a parameter group holds NaN/inf after ``step``: the group, the
    number of bad values, the step and the group's learning-rate flag. One device sync."""
    params = g.params()
    if bool(torch.stack([torch.isfinite(p.detach()).all() for p in params.values()]).all()):
        return
    try:
        check_finite_params(params, step)
    except NonFiniteError as exc:
        lrs = {gr["name"]: gr["lr"] for gr in opt.param_groups}
        flag = PARAM_LR.get(str(exc.name), "")
        hint = f" (--{flag} {lrs[exc.name]:g})" if flag and exc.name in lrs else ""
        raise NonFiniteError(f"{exc}{hint}", step=step, name=exc.name) from None


@dataclass
class TrainResult:
    model: Gaussians
    metrics: Dict[str, object]
    written: List[Path] = field(default_factory=list)


class _Nothing:
    """A render whose statistics were already counted (:func:`batch_statistics`): the strategy's
    post-backward hook then only decides (densify, prune, reset)."""

    index = None
    grad = None
    means2d = None


_COUNTED = _Nothing()
_COUNTED.means2d = _Nothing()


def batch_statistics(strategy: DensifyStrategy, outs, step: int, batch: int, n: int,
                     device) -> Optional[DensifyStats]:
    """This rank's densification statistics of one step: per rendered view the norm of its 2-D
    means' gradient (scaled by ``batch``: the loss is the mean over the batch, the recipe's
    threshold is per view) and a count of one; None when the strategy is not collecting."""
    if not strategy.collecting(step):
        return None
    stats = DensifyStats.zeros(n, device)
    for out in outs:
        grad = out.means2d.grad
        stats.add(out.index, None if grad is None else (grad * batch if batch > 1 else grad), strategy.image_size)
    return stats


def all_reduce_step(dist: distributed.Dist, g: Gaussians, opt: torch.optim.Adam,
                    stats: Optional[DensifyStats]) -> Optional[DensifyStats]:
    """With several processes: sum the parameters' gradients and ``stats`` over the ranks in one
    all-reduce (a parameter without a gradient on every rank keeps none, as in one process);
    returns the summed statistics. One process: ``stats`` unchanged, nothing touched."""
    if not dist.enabled:
        return stats
    import torch.distributed as tdist

    params = [gr["params"][0] for gr in opt.param_groups]
    parts = [p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in params]
    parts.append(torch.tensor([float(p.grad is not None) for p in params], device=g.means.device,
                              dtype=g.means.dtype))
    if stats is not None:
        parts += [stats.grad_sum.to(g.means.dtype), stats.count.to(g.means.dtype)]
    flat = torch.cat(parts)
    tdist.all_reduce(flat)
    at = 0
    for p in params:
        p.grad = flat[at:at + p.numel()].view_as(p).clone()
        at += p.numel()
    has = flat[at:at + len(params)]
    at += len(params)
    for p, h in zip(params, has.tolist()):
        if h == 0:
            p.grad = None
    if stats is None:
        return None
    n = stats.grad_sum.numel()
    return DensifyStats(flat[at:at + n].to(stats.grad_sum.dtype), flat[at + n:at + 2 * n].to(stats.count.dtype))


def train(cfg: TrainConfig, scene: Scene, out: Union[Path, str, RunDir], device, resume: bool = False,
          log: Callable[[str], None] = print, viewer=None) -> TrainResult:
    """Fit Gaussians to ``scene`` and write the outputs of the module docstring.

    ``out`` is the output folder, or a :class:`~l3d.run.RunDir` the caller holds open (so that
    it can write its own files, e.g. metrics.json, before the folder is unlocked); a folder is
    opened as ``RunDir(out, fresh=not resume)`` for the duration of the run. ``viewer``: an
    :class:`l3d.view.TrainingViewer`, given the chance to render the model from the browser's
    camera after every step (it decides when, within its time budget).
    """
    if isinstance(out, (str, Path)):
        with distributed.current().run_dir(out, fresh=not resume) as run:
            return train(cfg, scene, run, device, resume, log, viewer)
    run = out
    dist = distributed.current()  # one process unless started by torchrun (l3d.distributed.session)
    dist.check_batch(cfg.batch_size)
    seed_everything(cfg.seed)
    scene = scene.to(device)
    ckpts = dist.checkpoints(run.path("checkpoints"), every=cfg.save_every, keep_last=2, run=run)
    g = init_gaussians(cfg, scene, device)
    opt = make_optimizer(g, cfg)
    strategy = DensifyStrategy(densify_settings(cfg), scene_extent(scene), g.num_gaussians, scene.image_size,
                               device, seed=cfg.seed + 1)
    start, frames = 0, []
    train_time = 0.0
    loss_log = dist.loss_log(run, run.path(LOSS_LOG), append=resume)
    if resume:
        state = ckpts.resume(map_location=device)
        if state is None:
            log(f"--resume: no checkpoint in {ckpts.directory}; starting from scratch")
        else:
            missing = [k for k in ("model", "optimizer", "config", "step") if k not in state]
            if missing:
                raise user_error(ckpts.directory, "checkpoints of this trainer (model, optimizer, config, step)",
                                 f"one without {', '.join(missing)}", "train into a new --output_dir")
            check_same_config(state["config"], asdict(cfg), ckpts.directory, MODEL_KEYS)
            g = Gaussians.from_state(state["model"], device)
            opt = make_optimizer(g, cfg)
            opt.load_state_dict(state["optimizer"])
            if "strategy" in state:
                strategy.load_state_dict(state["strategy"], g.num_gaussians)
            else:
                strategy.stats = DensifyStats.zeros(g.num_gaussians, device)
            start = int(state["step"]) + 1
            train_time = float(state.get("train_time_s", 0.0))
            frames = [f for f in state.get("progress_frames", [])]
            loss_log.rewind(int(state["step"]))
            if dist.is_main:
                log(f"resumed from step {state['step']} ({g.num_gaussians} Gaussians)")
    if dist.enabled:  # every rank continues from the same checkpoint
        dist.check_same((start, g.num_gaussians), "the step and Gaussian count to resume from")
    settings = raster_settings(cfg, scene)
    viz_views = [scene.train_idx[i] for i in torch.linspace(0, len(scene.train_idx) - 1, 4).round().long().tolist()]
    viz_gt = scene.images[viz_views]
    val_view = (scene.test_idx or scene.train_idx)[0]  # TensorBoard's fixed validation view

    def view_render(camera, hw):  # the live viewer's render from the browser's camera
        return g.render(camera.to(device), dataclasses.replace(settings, image_size=tuple(hw)), cfg.sh).image.clamp(0, 1)

    def state_fn(step):
        return lambda: {"model": g.state(), "optimizer": opt.state_dict(), "config": asdict(cfg), "step": step,
                        "strategy": strategy.state_dict(), "train_time_s": train_time, "progress_frames": frames}

    step = start - 1
    batch = cfg.batch_size
    time_at_start = train_time
    with graceful_interrupt(message=dist.is_main) as stop:
        for step in progress(range(start, cfg.steps), "train", disable=None if dist.is_main else True):
            t0 = time.perf_counter()
            dist.fault_point(step)
            # the views of this step depend only on (seed, step): resuming repeats nothing, and
            # every rank draws the same global batch
            view_gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            views = [scene.train_idx[int(i)] for i in torch.randint(len(scene.train_idx), (batch,), generator=view_gen)]
            mine = dist.shard(views)
            f = lr_factor(cfg, step)
            for gr in opt.param_groups:
                gr["lr"] = gr["base_lr"] * f
            opt.zero_grad(set_to_none=True)
            outs, sums = [], [0.0, 0.0]  # this rank's views: the sums of their L1 and 1 - SSIM
            for view in mine:  # one backward per view: only one view's graph is alive at a time
                out = g.render(scene.cameras[view], settings, cfg.sh)
                strategy.step_pre_backward(out, step)
                gt = scene.images[view]
                loss_l1 = l1(out.image, gt)
                loss = loss_l1
                sums[0] += float(loss_l1.detach())
                if cfg.ssim_weight > 0:
                    loss_ssim = 1 - ssim(out.image, gt)
                    loss = (1 - cfg.ssim_weight) * loss_l1 + cfg.ssim_weight * loss_ssim
                    sums[1] += float(loss_ssim.detach())
                check_finite(loss, step)
                if loss.requires_grad:  # False only when no Gaussian is in front of the camera
                    (loss / batch if batch > 1 else loss).backward()  # the mean over the global batch
                outs.append(out)
            collected = batch_statistics(strategy, outs, step, batch, g.num_gaussians, device)
            collected = all_reduce_step(dist, g, opt, collected)
            if collected is not None:
                strategy.stats.grad_sum += collected.grad_sum
                strategy.stats.count += collected.count
            opt.step()
            check_params(g, opt, step)
            actions = strategy.step_post_backward(g, opt, _COUNTED, step)  # the statistics are counted above
            for line in actions if dist.is_main else []:
                log(line)
            if dist.enabled and actions:  # the ranks densified alike: a guard against diverging models
                dist.check_same(g.num_gaussians, f"the Gaussian count after step {step}")
            # the global batch's mean losses, and whether any rank was asked to stop
            l1_sum, ssim_sum, asked = dist.sum([sums[0], sums[1], float(stop.requested)])
            stopping = asked > 0
            scalars = {"loss": l1_sum / batch}
            if cfg.ssim_weight > 0:
                scalars["loss_ssim"] = ssim_sum / batch
            if viewer is not None:  # inside the timed part: its cost shows in train_time_s
                with torch.no_grad():
                    viewer.update(step, view_render, {"loss": scalars["loss"]})
            train_time += time.perf_counter() - t0
            scalars["num_gaussians"] = g.num_gaussians
            loss_log.append(step, scalars)
            if dist.is_main and (step % cfg.viz_every == 0 or step == cfg.steps - 1):
                pred = render_views(g, scene, viz_views, settings, cfg.sh)
                frames.append((prediction_over_truth(pred, viz_gt, f"iteration {step}: renders above ground truth") * 255).round().byte().cpu())
                if getattr(loss_log, "tensorboard", False):
                    val = render_views(g, scene, [val_view], settings, cfg.sh)[0]
                    loss_log.image(step, f"val/view_{val_view}_render_and_truth", torch.cat([val, scene.images[val_view]], 1))
            force = stopping or step == cfg.steps - 1
            if force or ckpts.due(step):
                check_finite_params(g.params(), step)
                ckpts.save(step, state_fn(step)())  # rank 0 writes; the other ranks' managers do not
            if stopping:
                if dist.is_main:
                    log(f"interrupted: checkpoint saved at step {step}; continue with --resume")
                break
    check_finite_params(g.params(), step)  # nothing non-finite reaches the .ply
    n_steps = step + 1 - start
    speed = {"processes": dist.world_size, "batch_size": batch,
             "train_views_per_s": n_steps * batch / max(train_time - time_at_start, 1e-9)}
    if not dist.is_main:  # rank 0 evaluates and writes the outputs
        return TrainResult(g, {"iterations": step + 1, "num_gaussians": g.num_gaussians, **speed}, [])
    written: List[Path] = []
    written.append(loss_log.plot(run.path(LOSS_PLOT), title="Gaussian training"))
    if frames:
        written += list(save_gif_with_png(run.path("q1_training_progress.gif"), torch.stack(frames), fps=5, which="first"))
    # evaluation on the held-out views
    preds = render_views(g, scene, scene.test_idx, settings, cfg.sh)
    gts = scene.images[scene.test_idx]
    metrics = evaluate_images(list(preds), list(gts))
    final = torch.stack([prediction_over_truth(p[None], t[None], f"view {i}: {v:.1f} dB") for i, p, t, v in
                         zip(scene.test_idx, preds, gts, metrics["psnr_per_view"])])
    written += list(save_gif_with_png(run.path("q1_training_final_renders.gif"), final, fps=2))
    bg = scene_background(cfg, scene)
    info = {"background": bg, "up": scene.up, "data": scene.data}
    written.append(save_gaussians_ply(run.path("gaussians.ply"), g, scene_info=info))
    metrics.update({
        "iterations": step + 1, "num_gaussians": g.num_gaussians, "train_time_s": train_time,
        "time_per_itr_s": train_time / max(step + 1, 1), "test_views": scene.test_idx,
        "image_size": list(scene.image_size), "scene": str(scene.path), "background": list(bg),
        "scene_background": list(scene.background), "data": scene.data, **speed,
    })
    if scene.normalization is not None:  # a NeRF-synthetic / COLMAP scene: how to map back to its frame
        metrics["scene_normalization"] = scene.normalization
    return TrainResult(g, metrics, written)
