"""Fitting Gaussians to a multi-view scene: optimiser, schedules, densification, evaluation.

The defaults are the course's Q1.2 settings: isotropic Gaussians initialised from the scene's
points, L1 loss, 1000 iterations of Adam (one random training view per iteration) with
per-parameter learning rates (opacities 0.001, scales 0.001, colours 0.02, means 0.0002).
The "harder scene" options add a random init, a learning-rate schedule, an SSIM term,
anisotropic Gaussians and densification / pruning.

Densification (3DGS's recipe, simplified): over each interval the screen-space gradient norm of
every Gaussian's 2-D mean is averaged over the views that saw it; Gaussians whose average
exceeds ``densify_grad`` are cloned (when small: largest scale below ``percent_dense`` of the
scene extent) or split in two (when larger: new means sampled from the Gaussian, scales / 1.6).
Gaussians with opacity below ``prune_opacity`` or larger than a tenth of the scene extent are
pruned. With ``opacity_reset_every`` the opacities are periodically clamped to 0.01 (3DGS's
reset), so the next pruning removes the Gaussians the images do not support (floaters). Adam's moments follow the surviving
rows; new rows start at zero.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

from l3d.media import save_gif_with_png
from l3d.errors import UserError
from l3d.run import CheckpointManager, LossLog, check_finite
from l3d.train import graceful_interrupt, progress, seed_everything

from ..captions import with_banner
from .data import Scene
from .losses import evaluate_images, l1, ssim
from .model import Gaussians
from .ply import save_gaussians_ply
from .rasterize import RasterSettings


@dataclass
class TrainConfig:
    """Every setting of a training run (saved in each checkpoint)."""

    num_itrs: int = 1000
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
    densify_until: int = -1  # -1: half of num_itrs
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
    ckpt_every: int = 200
    seed: int = 0
    background: Optional[Tuple[float, float, float]] = None  # None: the scene's own (course: black)


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
            raise UserError(f"{scene.path} has no points/points_N.npy; use --init random")
        g = Gaussians.from_points(scene.points.cpu(), isotropic=not cfg.anisotropic, with_sh=cfg.sh,
                                  generator=gen, sh_degree=cfg.sh_degree)
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
    t = min(max(step / max(cfg.num_itrs - 1, 1), 0.0), 1.0)
    r = cfg.lr_final_ratio
    if cfg.lr_schedule == "none":
        return 1.0
    if cfg.lr_schedule == "exp":
        return r ** t
    if cfg.lr_schedule == "cosine":
        return r + (1 - r) * 0.5 * (1 + math.cos(math.pi * t))
    raise UserError(f"--lr_schedule must be none, exp or cosine, got {cfg.lr_schedule!r}")


def _replace_rows(opt: torch.optim.Adam, g: Gaussians, keep: torch.Tensor, extra: Dict[str, torch.Tensor]) -> None:
    """Keep rows ``keep`` of every parameter and append ``extra[name]`` rows; Adam's moments
    follow the kept rows and start at zero for the new ones."""
    new_params = {}
    for name, p in g.params().items():
        rows = p.detach()[keep]
        if name in extra:
            rows = torch.cat([rows, extra[name].to(rows.dtype)], 0)
        new_params[name] = rows
    old = {gr["name"]: gr["params"][0] for gr in opt.param_groups}
    states = {name: opt.state.pop(p, None) for name, p in old.items()}
    g.replace_params(new_params)
    for gr in opt.param_groups:
        name = gr["name"]
        newp = getattr(g, name)
        gr["params"] = [newp]
        st = states.get(name)
        if st:
            n_new = newp.shape[0] - keep.numel()
            for k in ("exp_avg", "exp_avg_sq"):
                kept = st[k][keep]
                st[k] = torch.cat([kept, kept.new_zeros((n_new,) + kept.shape[1:])], 0)
            opt.state[newp] = st


# ---------------------------------------------------------------------------------------------
# densification
# ---------------------------------------------------------------------------------------------
@dataclass
class DensifyStats:
    """Running screen-space gradient statistics per Gaussian (reset after each densification)."""

    grad_sum: torch.Tensor
    count: torch.Tensor

    @classmethod
    def zeros(cls, n: int, device) -> "DensifyStats":
        return cls(torch.zeros(n, device=device), torch.zeros(n, device=device))

    def add(self, index: torch.Tensor, means2d_grad: Optional[torch.Tensor], image_size: Tuple[int, int]) -> None:
        """Accumulate ``|dL/d mean2d|`` with the gradient w.r.t. NDC-like coordinates
        (pixels / (size / 2), as 3DGS measures it, so its threshold 0.0002 carries over)."""
        if means2d_grad is None:
            return
        h, w = image_size
        to_ndc = torch.tensor([0.5 * w, 0.5 * h], device=means2d_grad.device, dtype=means2d_grad.dtype)
        self.grad_sum.index_add_(0, index, (means2d_grad * to_ndc).norm(dim=-1))
        self.count.index_add_(0, index, torch.ones_like(index, dtype=self.count.dtype))


def densify_and_prune(g: Gaussians, opt: torch.optim.Adam, stats: DensifyStats, cfg: TrainConfig,
                      scene_extent: float, generator: torch.Generator) -> Dict[str, int]:
    """One densification step (module docstring). Returns counts of cloned / split / pruned."""
    with torch.no_grad():
        n = g.num_gaussians
        avg = stats.grad_sum / stats.count.clamp(min=1)
        big_grad = avg > cfg.densify_grad
        max_scale = g.scales.amax(-1)
        small = max_scale <= cfg.percent_dense * scene_extent
        room = max(cfg.max_gaussians - n, 0)
        clone = torch.nonzero(big_grad & small).flatten()
        split = torch.nonzero(big_grad & ~small).flatten()
        # respect the budget: the largest gradients first
        if clone.numel() + split.numel() > room:
            cand = torch.cat([clone, split])
            top = cand[torch.argsort(avg[cand], descending=True)[:room]]
            is_top = torch.zeros(n, dtype=torch.bool, device=avg.device)
            is_top[top] = True
            clone, split = clone[is_top[clone]], split[is_top[split]]
        extra: Dict[str, torch.Tensor] = {}
        params = g.params()
        # clones: identical copies (the optimiser moves them apart)
        for name, p in params.items():
            extra[name] = p.detach()[clone]
        # splits: two samples from the Gaussian replace it, scales / 1.6
        if split.numel():
            s = g.scales[split].expand(-1, 3)  # (S, 3)
            rot = _rotations(g, split)  # (S, 3, 3)
            for _ in range(2):
                z = torch.randn(split.numel(), 3, generator=generator).to(s.device) * s
                new_means = g.means.detach()[split] + (rot @ z[..., None])[..., 0]
                for name, p in params.items():
                    rows = p.detach()[split]
                    if name == "means":
                        rows = new_means
                    elif name == "log_scales":
                        rows = rows - math.log(1.6)
                    extra[name] = torch.cat([extra[name], rows], 0)
        keep = torch.ones(n, dtype=torch.bool, device=avg.device)
        keep[split] = False
        # prune transparent Gaussians and ones grown larger than a tenth of the scene
        low = (g.opacities < cfg.prune_opacity) | (max_scale > 0.1 * scene_extent)
        keep &= ~low
        n_pruned = int((~keep).sum()) - split.numel()
        # new rows are never pruned in the same step (they were just created)
        _replace_rows(opt, g, torch.nonzero(keep).flatten(), extra)
    return {"cloned": int(clone.numel()), "split": int(split.numel()), "pruned": n_pruned,
            "num_gaussians": g.num_gaussians}


def reset_opacities(g: Gaussians, opt: torch.optim.Adam, value: float = 0.01) -> None:
    """3DGS's opacity reset: clamp every opacity to at most ``value`` and clear Adam's moments
    of the opacity logits, so Gaussians that the images do not need fall below the pruning
    threshold before the next densification."""
    with torch.no_grad():
        g.opacity_logits.clamp_(max=math.log(value / (1 - value)))
    for gr in opt.param_groups:
        if gr["name"] == "opacity_logits":
            st = opt.state.get(gr["params"][0])
            if st:
                st["exp_avg"].zero_()
                st["exp_avg_sq"].zero_()


def _rotations(g: Gaussians, idx: torch.Tensor) -> torch.Tensor:
    from .rasterize import quaternion_to_matrix

    if g.isotropic:
        return torch.eye(3, device=g.means.device).expand(idx.numel(), 3, 3)
    return quaternion_to_matrix(g.quaternions.detach()[idx])


def scene_extent(scene: Scene) -> float:
    """Radius of the camera centres around their mean (3DGS's scene scale)."""
    c = scene.cameras.get_camera_center()
    return float((c - c.mean(0)).norm(dim=-1).max()) * 1.1


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


def train(cfg: TrainConfig, scene: Scene, out_dir: Path, device, resume: bool = False,
          log: Callable[[str], None] = print) -> TrainResult:
    """Fit Gaussians to ``scene`` and write the outputs of the module docstring into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    scene = scene.to(device)
    if cfg.densify_until < 0:
        cfg.densify_until = cfg.num_itrs // 2
    ckpts = CheckpointManager(out_dir / "checkpoints", every=cfg.ckpt_every, keep_last=2)
    g = init_gaussians(cfg, scene, device)
    opt = make_optimizer(g, cfg)
    start, frames = 0, []
    train_time = 0.0
    loss_log = LossLog(out_dir / "losses.csv", append=resume)
    if resume:
        state = ckpts.resume(map_location=device)
        if state is None:
            log(f"--resume: no checkpoint in {ckpts.directory}; starting from scratch")
        else:
            g = Gaussians.from_state(state["model"], device)
            opt = make_optimizer(g, cfg)
            opt.load_state_dict(state["optim"])
            start = int(state["step"]) + 1
            train_time = float(state.get("train_time_s", 0.0))
            frames = [f for f in state.get("progress_frames", [])]
            loss_log.rewind(int(state["step"]))
            log(f"resumed from step {state['step']} ({g.num_gaussians} Gaussians)")
    settings = raster_settings(cfg, scene)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    extent = scene_extent(scene)
    stats = DensifyStats.zeros(g.num_gaussians, device)
    viz_views = [scene.train_idx[i] for i in torch.linspace(0, len(scene.train_idx) - 1, 4).round().long().tolist()]
    viz_gt = scene.images[viz_views]

    def state_fn(step):
        return lambda: {"model": g.state(), "optim": opt.state_dict(), "config": asdict(cfg), "step": step,
                        "train_time_s": train_time, "progress_frames": frames}

    step = start - 1
    with graceful_interrupt() as stop:
        for step in progress(range(start, cfg.num_itrs), "train"):
            t0 = time.perf_counter()
            # the view of this step depends only on (seed, step): resuming repeats nothing
            view_gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            view = scene.train_idx[int(torch.randint(len(scene.train_idx), (1,), generator=view_gen))]
            f = lr_factor(cfg, step)
            for gr in opt.param_groups:
                gr["lr"] = gr["base_lr"] * f
            out = g.render(scene.cameras[view], settings, cfg.sh)
            if cfg.densify:
                out.means2d.retain_grad()
            gt = scene.images[view]
            loss_l1 = l1(out.image, gt)
            loss = loss_l1
            scalars = {"loss": loss_l1.detach()}
            if cfg.ssim_weight > 0:
                loss_ssim = 1 - ssim(out.image, gt)
                loss = (1 - cfg.ssim_weight) * loss_l1 + cfg.ssim_weight * loss_ssim
                scalars["loss_ssim"] = loss_ssim.detach()
            check_finite(loss, step)
            opt.zero_grad(set_to_none=True)
            if loss.requires_grad:  # False only when no Gaussian is in front of the camera
                loss.backward()
            if cfg.densify and step < cfg.densify_until:
                stats.add(out.index, out.means2d.grad, scene.image_size)
            opt.step()
            if cfg.densify and cfg.densify_from <= step < cfg.densify_until and (step + 1) % cfg.densify_every == 0:
                info = densify_and_prune(g, opt, stats, cfg, extent, gen)
                stats = DensifyStats.zeros(g.num_gaussians, device)
                log(f"step {step}: densify {info}")
            if cfg.densify and cfg.opacity_reset_every > 0 and step < cfg.densify_until \
                    and (step + 1) % cfg.opacity_reset_every == 0:
                reset_opacities(g, opt)
                log(f"step {step}: opacities reset to at most 0.01")
            train_time += time.perf_counter() - t0
            scalars["num_gaussians"] = g.num_gaussians
            loss_log.append(step, scalars)
            if step % cfg.viz_every == 0 or step == cfg.num_itrs - 1:
                pred = render_views(g, scene, viz_views, settings, cfg.sh)
                frames.append((prediction_over_truth(pred, viz_gt, f"iteration {step}: renders above ground truth") * 255).round().byte().cpu())
            ckpts.maybe_save(step, state_fn(step), force=stop.requested or step == cfg.num_itrs - 1)
            if stop.requested:
                log(f"interrupted: checkpoint saved at step {step}; continue with --resume")
                break
    written: List[Path] = []
    loss_png = loss_log.plot(out_dir / "loss.png", title="Gaussian training")
    written.append(loss_png)
    if frames:
        written += list(save_gif_with_png(out_dir / "q1_training_progress.gif", torch.stack(frames), fps=5, which="first"))
    # evaluation on the held-out views
    preds = render_views(g, scene, scene.test_idx, settings, cfg.sh)
    gts = scene.images[scene.test_idx]
    metrics = evaluate_images(list(preds), list(gts))
    final = torch.stack([prediction_over_truth(p[None], t[None], f"view {i}: {v:.1f} dB") for i, p, t, v in
                         zip(scene.test_idx, preds, gts, metrics["psnr_per_view"])])
    written += list(save_gif_with_png(out_dir / "q1_training_final_renders.gif", final, fps=2))
    bg = scene_background(cfg, scene)
    info = {"background": bg, "up": scene.up, "data": scene.data}
    written.append(save_gaussians_ply(out_dir / "gaussians.ply", g, scene_info=info))
    metrics.update({
        "iterations": step + 1, "num_gaussians": g.num_gaussians, "train_time_s": train_time,
        "time_per_itr_s": train_time / max(step + 1, 1), "test_views": scene.test_idx,
        "image_size": list(scene.image_size), "scene": str(scene.path), "background": list(bg),
        "scene_background": list(scene.background), "data": scene.data,
    })
    return TrainResult(g, metrics, written)
