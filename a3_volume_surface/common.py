"""Shared plumbing of the two Hydra entry points: the run (:func:`run_app`: quick variant, range
checks, a locked output folder that keeps the previous results until this run has a good state),
the epoch loop with checkpoints / resume / Ctrl-C and SIGTERM / NaN and divergence guards / loss
curves, GIF writing, pixel lookup and PSNR.

Under ``torchrun`` (several processes) the training modes ``train_nerf`` and ``train_images``
are data-parallel over rays: every rank draws the same global ray batch from the same seeded
generator and renders its rows of it (:func:`local_rows`), the gradients are averaged over the
ranks after each backward pass (:func:`average_gradients`), the epoch's losses are those of the
global batches, and rank 0 alone writes checkpoints, losses, TensorBoard, images and metrics.
Once training ends the process group is closed and rank 0 renders and writes the results alone.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set

import torch
import torch.nn.functional as F

from l3d import distributed
from l3d.errors import NonFiniteError, UserError, user_error
from l3d.media import save_gif_with_png
from l3d.run import (
    LOSS_LOG, LOSS_PLOT, CheckpointManager, LossLog, RunDir, atomic_write, check_finite, check_finite_params,
    check_same_config, command_line, find_latest_checkpoint, peak_memory, write_command, write_metrics,
)
from l3d.train import graceful_interrupt, progress, seed_everything

__all__ = ["run_app", "Job", "apply_quick", "train_loop", "save_gif", "psnr", "sample_images_at_xy", "lookup_pixels",
           "wh_to_hw", "finish", "comparison_panel", "model_signature", "local_rows", "average_gradients",
           "broadcast_state", "end_of_training", "PARALLEL_MODES"]

GIF_MS = 100  # spec convention 8: 100 ms per frame

# the modes of each entry point: config ``type`` -> (module, function)
MODES = {
    "volume": {"render": ("volume_runs", "run_render"), "train": ("volume_runs", "run_train_box"),
               "train_nerf": ("volume_runs", "run_train_nerf")},
    "surface": {"render": ("surface_runs", "run_render"), "train_points": ("surface_runs", "run_train_points"),
                "train_images": ("surface_runs", "run_train_images")},
}
PARALLEL_MODES = ("train_nerf", "train_images")  # the modes that run data-parallel under torchrun


def wh_to_hw(image_size: Sequence[int]) -> tuple:
    """Config ``image_size`` is [W, H] (spec convention 1); l3d wants (H, W)."""
    if len(image_size) != 2 or min(int(v) for v in image_size) < 1:
        raise user_error("data.image_size", "[W, H] with two positive integers", list(image_size))
    return int(image_size[1]), int(image_size[0])


class Job:
    """The output folder of one run, as the run functions see it.

    ``job / "part_1.gif"`` is where that file is written *now*: the hidden pending folder of a
    fresh run into a folder that holds earlier results (until the first good checkpoint, or the end
    of a run without checkpoints), the output folder itself after that (:class:`l3d.run.RunDir`).
    """

    def __init__(self, run: RunDir, config: Mapping[str, Any], module: str, command: str, resuming: bool):
        self.run = run
        self.config = config
        self.module = module
        self.command = command
        self.resuming = resuming  # training.resume and a checkpoint to resume from

    @property
    def root(self) -> Path:
        return self.run.root

    def __truediv__(self, name: str) -> Path:
        return self.run.path(name)

    def write_config(self) -> Path:
        """config.yaml (the composed config of this run) into the run's folder."""
        from omegaconf import OmegaConf

        if not distributed.is_main():  # rank 0 writes the run's files
            return self / "config.yaml"
        return atomic_write(self / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(dict(self.config))))

    def final(self, path: Any) -> Path:
        """Where ``path`` (written under the pending folder) lies once the run has committed."""
        p = Path(path)
        try:
            return self.run.root / p.relative_to(self.run.work)
        except ValueError:
            return p


def apply_quick(cfg, given: Set[str]) -> None:
    """``quick=true``: apply every ``quick_overrides`` entry (dotted key -> value) to ``cfg`` except
    the keys given on the command line (``given``), so ``quick=true training.num_epochs=5`` runs 5
    epochs."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not cfg.get("quick", False):
        return
    for key, value in (cfg.get("quick_overrides") or {}).items():
        if key in given:
            continue
        try:
            OmegaConf.update(cfg, key, value, merge=False)
        except OmegaConfBaseException as exc:
            msg = str(getattr(exc, "msg", "") or exc).strip().splitlines()[0]
            raise user_error(f"quick_overrides.{key}", "a key and value the config schema accepts", msg) from None


def model_signature(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The config values that decide the model's parameters (a checkpoint only fits a model with
    the same ones)."""
    r = config.get("renderer") or {}
    return {"type": config.get("type"), "implicit_function": config.get("implicit_function"),
            "renderer.type": r.get("type"), "renderer.density": r.get("density"),
            "renderer.n_pts_importance": r.get("n_pts_importance")}


def run_app(cfg, given: Set[str], module: str, kind: str, argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """The task of an A3 entry point: apply the quick variant, check the values, then run the mode
    the config's ``type`` names in a locked :class:`l3d.run.RunDir` of ``output_dir``.

    ``given``: the keys set on the command line; ``argv``: the arguments of an in-process run (for
    command.txt; None: ``sys.argv``)."""
    import importlib

    from .schema import plain_config, validate

    apply_quick(cfg, given)
    plain = plain_config(cfg)
    validate(plain)
    modes = MODES[kind]
    mode = plain.get("type")
    if mode not in modes:
        raise user_error("type", f"one of {', '.join(modes)} for {module.rsplit('.', 1)[-1]}", repr(mode))
    seed_everything(int(plain.get("seed", 0)))  # the same on every rank: the same initial model
    out = Path(plain["output_dir"])
    if out.exists() and not out.is_dir():
        raise user_error("output_dir", "a folder", f"a file ({out})")
    tcfg = plain.get("training") or {}
    command = command_line(["-"] + list(argv), module=module) if argv is not None else command_line(module=module)
    fn = getattr(importlib.import_module(f"{__package__}.{modes[mode][0]}"), modes[mode][1])
    # one process, or one of torchrun's (gloo on CPUs, nccl on GPUs: cuda:<LOCAL_RANK> each)
    with distributed.session(plain.get("device", "auto")) as dist:
        if dist.enabled and mode not in PARALLEL_MODES:
            raise UserError(f"type={mode}: runs in one process; under torchrun only "
                            f"{' and '.join(PARALLEL_MODES)} train data-parallel (start it with python -m {module})")
        device = dist.device
        resuming = bool(tcfg.get("resume", False)) and find_latest_checkpoint(out / "checkpoints") is not None
        if dist.enabled:
            dist.check_same(resuming, f"whether {out / 'checkpoints'} holds a checkpoint to resume from")
        with dist.run_dir(out, fresh=not resuming, command=command) as run:  # rank 0 writes, the others read
            job = Job(run, plain, module, command, resuming)
            if not resuming:  # a resumed run writes it once the checkpoint is known to fit (train_loop)
                job.write_config()
            return fn(plain, device, job)


def finish(job: Job, metrics: Mapping[str, Any], written: Sequence[Any]) -> None:
    """Write metrics.json (merged) and command.txt, make the run's files the folder's results, print
    the numbers and the files written (rank 0; the other ranks write and print nothing)."""
    if not distributed.is_main():
        return
    metrics = {**metrics, **peak_memory()}  # this process's peak CPU RSS (and CUDA) so far
    write_metrics(job / "metrics.json", metrics)
    write_command(job / ".", job.command)
    written = [job.final(p) for p in written]
    job.run.commit()
    _print_metrics(metrics)
    for p in written:
        print(f"wrote {p}")


def _print_metrics(metrics: Mapping[str, Any], prefix: str = "") -> None:
    for k, v in metrics.items():
        if isinstance(v, Mapping):
            _print_metrics(v, f"{prefix}{k}.")
        elif isinstance(v, float):
            print(f"{prefix}{k}: {v:.6g}")
        elif isinstance(v, (int, str)) or (isinstance(v, (list, tuple)) and len(v) <= 8):
            print(f"{prefix}{k}: {v}")


def save_gif(path: Path, frames: torch.Tensor) -> list:
    """GIF (uint8 by truncation, 100 ms per frame) plus a PNG of its first frame; returns both paths.

    Raises:
        NonFiniteError: the frames hold NaN/inf (a diverged model renders nothing meaningful)."""
    frames = frames.detach()
    bad = ~torch.isfinite(frames)
    if bool(bad.any()):
        raise NonFiniteError(f"not writing {Path(path).name}: {int(bad.sum())} rendered values are NaN/inf; the "
                             f"model diverged (lower training.lr or check the inputs)", name=Path(path).name)
    gif, png = save_gif_with_png(path, frames.cpu().clamp(0, 1), duration_ms=GIF_MS, truncate=True, which="first")
    return [gif, png]


def comparison_panel(columns: Sequence[torch.Tensor], titles: Sequence[str], row_labels: Sequence[str] = (),
                     min_cell: int = 96, gap: int = 2):
    """(H, W, 3) uint8 grid of images with every label in a white margin (never over an image).

    Args:
        columns: one (N, h, w, 3) tensor in [0, 1] per column (e.g. predictions, ground truth);
            row i shows image i of every column.
        titles: one title per column, written in a banner above it.
        row_labels: up to one line per row ("view 3  27.1 dB"), written in a margin on the left.
        min_cell: images are enlarged by an integer factor (nearest neighbour, so every rendered
            pixel stays visible as a block) until they are at least this many pixels high.
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    n, h, w = columns[0].shape[:3]
    k = max(1, -(-int(min_cell) // h))
    cells = [(c.detach().cpu().clamp(0, 1).numpy() * 255).astype(np.uint8).repeat(k, 1).repeat(k, 2) for c in columns]
    try:
        font = ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    draw_probe = ImageDraw.Draw(Image.new("L", (1, 1)))

    def text_w(t: str) -> int:
        box = draw_probe.textbbox((0, 0), t, font=font)
        return box[2] - box[0]

    banner = 18
    left = (max(text_w(t) for t in row_labels) + 10) if row_labels else gap
    cw, ch = w * k, h * k
    width = left + len(cells) * (cw + gap)
    height = banner + n * (ch + gap)
    panel = Image.new("RGB", (width, height), (255, 255, 255))
    for j, col in enumerate(cells):
        x0 = left + j * (cw + gap)
        for i in range(n):
            panel.paste(Image.fromarray(col[i]), (x0, banner + i * (ch + gap)))
    draw = ImageDraw.Draw(panel)
    for j, t in enumerate(titles):
        x0 = left + j * (cw + gap)
        draw.text((x0 + max(0, (cw - text_w(t)) // 2), 3), t, fill=(0, 0, 0), font=font)
    for i, t in enumerate(row_labels):
        draw.text((4, banner + i * (ch + gap) + ch // 2 - 7), t, fill=(0, 0, 0), font=font)
    return np.asarray(panel)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio (dB) of images in [0, 1] over all pixels and channels."""
    mse = F.mse_loss(pred.float().clamp(0, 1), target.float()).item()
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def sample_images_at_xy(images: torch.Tensor, xy: torch.Tensor, align_corners: bool = True) -> torch.Tensor:
    """Bilinear lookup of image colours at NDC points (``grid_sample`` at ``-xy``).

    Args:
        images: (N, H, W, C); xy: (N, R, 2) NDC points (x left, y up).
        align_corners: True is the course's lookup (spec convention 9): the extreme pixel
            *centres* sit at +-1 while rays go through NDC +-(1 - 1/W), so the ground truth is the
            image magnified by W / (W - 1) (a box fitted to the 256 px renders comes out ~0.2 %
            larger). False samples at the true pixel centres (exact at the image's own resolution).
    Returns:
        (N, R, C).
    """
    grid = -xy[:, :, None, :]  # (N, R, 1, 2): grid_sample's x is right, y is down
    out = F.grid_sample(images.permute(0, 3, 1, 2), grid.to(images.dtype), mode="bilinear",
                        align_corners=align_corners)
    return out[..., 0].permute(0, 2, 1)


LOOKUPS = ("grid_sample", "bilinear", "exact")


def lookup_pixels(images: torch.Tensor, grid: torch.Tensor, mode: str) -> torch.Tensor:
    """Ground-truth colours (N, R, C) of images (N, H, W, C) at the NDC pixel grid (R, 2).

    ``mode``: "grid_sample" (the course's align_corners=True lookup), "bilinear" (pixel-centre
    aligned bilinear, for a grid of another resolution), "exact" (the pixels themselves; the grid
    must be the images' own pixel grid).
    """
    n, h, w, c = images.shape
    if mode == "exact":
        if grid.shape[0] != h * w:
            raise user_error("training.pixel_lookup", f"'bilinear' or 'grid_sample' for a grid of {grid.shape[0]} pixels "
                         f"('exact' needs the images' own resolution, {h} x {w})", "'exact'")
        return images.reshape(n, h * w, c)
    if mode not in LOOKUPS:
        raise user_error("training.pixel_lookup", f"one of {', '.join(LOOKUPS)}", repr(mode))
    return sample_images_at_xy(images, grid.expand(n, -1, -1), align_corners=mode == "grid_sample")


class LiveMonitor:
    """What a training run shows while it trains, from the config's top-level keys:

    * ``viewer: true`` (``viewer_port``, ``viewer_host``, ``viewer_every``): a web viewer
      (:class:`l3d.view.TrainingViewer`) with the training cameras and, while a browser is
      connected, a render from the browser's camera after each epoch (throttled to a fifth of the
      training time);
    * ``tensorboard_image_every`` (epochs; 0: never): the first held-out view beside its ground
      truth as a TensorBoard image.
    """

    def __init__(self, cfg: Mapping[str, Any], model, render_fn: Callable, train_cams, train_images,
                 val_cam=None, val_image=None):
        self.model, self.render_fn = model, render_fn
        self.val_cam, self.val_image = val_cam, val_image
        self.image_every = int(cfg.get("tensorboard_image_every", 0) or 0)
        self.viewer = None
        if cfg.get("viewer", False):
            from l3d.view import TrainingViewer

            self.viewer = TrainingViewer(train_cams.to("cpu"), train_images.cpu(), port=int(cfg.get("viewer_port", 0)),
                                         host=str(cfg.get("viewer_host", "127.0.0.1")),
                                         every_s=float(cfg.get("viewer_every", 1.0)), label=str(cfg.get("part", "A3")))

    def _render(self, cams, hw) -> torch.Tensor:
        was = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                return self.render_fn(cams, hw)[0].clamp(0, 1)
        finally:
            self.model.train(was)

    def epoch(self, epoch: int, scalars: Mapping[str, float], log: LossLog) -> None:
        if self.viewer is not None:
            device = next(self.model.parameters()).device
            self.viewer.update(epoch, lambda cam, hw: self._render(cam.to(device), hw), dict(scalars))
        if self.val_cam is not None and self.image_every > 0 and (epoch + 1) % self.image_every == 0:
            pred = self._render(self.val_cam, self.val_image.shape[:2]).cpu()
            log.image(epoch, "val/test_view_0", torch.cat([pred, self.val_image.cpu().to(pred)], 1))

    def close(self) -> Dict[str, Any]:
        """Stops the viewer; returns its counts for metrics.json."""
        if self.viewer is None:
            return {}
        self.viewer.close()
        return {"viewer": {"renders": self.viewer.renders, "render_time_s": self.viewer.render_time}}


# ----------------------------------------------------------------------------------------------
# data parallelism over rays (no-ops in one process)
# ----------------------------------------------------------------------------------------------
def local_rows(n_global: int, device, what: str = "training.batch_size") -> torch.Tensor:
    """Indices ``rank, rank + N, ...`` of a global batch of ``n_global`` rows: this rank's share
    (all of them in one process). Refuses a batch with fewer rows than processes."""
    dist = distributed.current()
    dist.check_batch(int(n_global), what)
    return dist.shard(torch.arange(int(n_global), device=device))


def average_gradients(model: torch.nn.Module) -> None:
    """Every gradient of ``model`` replaced by its mean over the ranks
    (:meth:`l3d.distributed.Dist.average_gradients`); nothing in one process."""
    distributed.current().average_gradients(model.parameters())


def broadcast_state(module: torch.nn.Module, buffers_only: bool = False) -> None:
    """Rank 0's parameters and buffers (or only its buffers) on every rank."""
    dist = distributed.current()
    if not dist.enabled:
        return
    import torch.distributed as tdist

    tensors = list(module.buffers()) if buffers_only else [*module.parameters(), *module.buffers()]
    with torch.no_grad():
        for t in tensors:
            if dist.backend == "nccl" or t.device.type == "cpu":
                tdist.broadcast(t.data, 0)
            else:
                c = t.data.cpu()
                tdist.broadcast(c, 0)
                t.data.copy_(c)


def end_of_training() -> bool:
    """Called by every rank after :func:`train_loop`: closes the process group (the ranks are done
    talking to each other) and returns whether this process renders and writes the results
    (rank 0, or the only process)."""
    dist = distributed.current()
    if dist.enabled:
        dist.close(wait=True)
    return dist.is_main


def train_loop(
    out: Job,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Optional[Any],
    tcfg: Mapping[str, Any],
    config: Mapping[str, Any],
    epoch_fn: Callable[[int], Dict[str, float]],
    after_epoch: Optional[Callable[[int], None]] = None,
    desc: str = "train",
    device: Optional[torch.device] = None,
    guard: Optional[Callable[[int], None]] = None,
    monitor: Optional["LiveMonitor"] = None,
) -> Dict[str, Any]:
    """Run epochs ``start .. tcfg.num_epochs - 1`` of ``epoch_fn(epoch) -> {name: mean value}``.

    Checkpoints (``checkpoints/`` of the run) every ``checkpoint_interval`` epochs, at the last
    epoch and on Ctrl-C / SIGTERM hold the model, optimizer, scheduler, epoch and config; the first
    one makes the run's files the folder's results. With ``resume`` the newest intact, finite
    checkpoint is loaded (a damaged or non-finite one is skipped with a notice; one of a different
    model config is refused) and training continues at the next epoch; the loss log is rewound to
    the same epoch. Losses go to ``losses.csv`` and ``losses.png``.

    After every epoch the losses and every parameter must be finite (and the losses below 1e12),
    and ``guard(epoch)`` (optional) may reject absurd parameter values: the run stops with one line
    naming the epoch and the value, and no checkpoint of the bad state is written.

    ``tcfg.time_budget_s`` (optional) ends training after the first epoch that finishes past that
    many seconds of wall time (with a checkpoint), for time-boxed runs.

    ``monitor`` (a :class:`LiveMonitor`) sees every epoch: the live viewer's render and the
    TensorBoard validation image. The config's ``tensorboard: false`` turns TensorBoard off.

    Under torchrun every rank runs the loop (``epoch_fn`` averages the gradients, see
    :func:`average_gradients`); the ranks start from rank 0's parameters, resume from the same
    checkpoint and stop after the same epoch (Ctrl-C or the time budget on any rank); rank 0
    writes the checkpoints and the loss log. ``L3D_DIST_KILL=RANK:EPOCH`` kills that rank as that
    epoch starts (a test hook).

    Returns:
        {"start_epoch", "end_epoch" (last epoch done + 1), "interrupted", "out_of_time", "time_s",
        "cpu_time_s" (process CPU time, all threads), "last": scalars, "processes"}.
    """
    dist = distributed.current()
    n_epochs = int(tcfg["num_epochs"])
    every = int(tcfg.get("checkpoint_interval", 0) or 0)
    run = out.run
    ckpts = dist.checkpoints(out / "checkpoints", every=every, keep_last=2, run=run)
    resume = out.resuming
    if dist.is_main:
        log = run.track(LossLog(out / LOSS_LOG, append=resume, tensorboard=config.get("tensorboard")))
    else:
        log = dist.loss_log(run, out / LOSS_LOG, append=resume)
    start = 0
    say = print if dist.is_main else (lambda *a, **k: None)
    if bool(tcfg.get("resume", False)) and not resume:
        say(f"training.resume: no checkpoint in {out.root / 'checkpoints'}; starting from epoch 0")
    if resume:
        state = ckpts.resume(map_location=device or "cpu")
        if state is not None:
            saved = state.get("config") or {}
            check_same_config(model_signature(saved), model_signature(config), ckpts.directory)
            try:
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                if scheduler is not None and state.get("scheduler") is not None:
                    scheduler.load_state_dict(state["scheduler"])
            except (RuntimeError, ValueError, KeyError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise user_error(ckpts.directory, "a checkpoint of this model configuration",
                                 f"one that does not fit ({first[:200]})",
                                 hint="use the same settings or a new output_dir") from None
            old_lr = (saved.get("training") or {}).get("lr")
            new_lr = float(tcfg["lr"])
            if old_lr is not None and float(old_lr) != new_lr:  # the command line's rate wins, schedule kept
                for g in optimizer.param_groups:
                    g["lr"] *= new_lr / float(old_lr)
                    g["initial_lr"] = new_lr
                if scheduler is not None and hasattr(scheduler, "base_lrs"):
                    scheduler.base_lrs = [new_lr for _ in scheduler.base_lrs]
                say(f"training.lr is {new_lr:g} now, {float(old_lr):g} in the checkpoint; using {new_lr:g}")
            start = int(state["step"]) + 1
            log.rewind(int(state["step"]))
            say(f"resumed from the checkpoint of epoch {int(state['step'])} in {ckpts.directory}; "
                  f"continuing at epoch {start}")
        out.write_config()
    if dist.enabled:
        dist.check_same(start, "the epoch to resume from")
        broadcast_state(model)  # every rank starts from rank 0's weights
        # the samplers' jitter (global generator) differs between the ranks; the rays do not
        torch.manual_seed(dist.seed(int(config.get("seed", 0)) + 1 + start))

    def snapshot():
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": None if scheduler is None else scheduler.state_dict(), "config": dict(config)}

    last: Dict[str, float] = {}
    interrupted = out_of_time = False
    budget = tcfg.get("time_budget_s")
    end = start
    t0, c0 = time.perf_counter(), time.process_time()
    model.train()
    with graceful_interrupt(message=dist.is_main) as stop:
        for epoch in progress(range(start, n_epochs), desc, disable=None if dist.is_main else True):
            dist.fault_point(epoch)
            last = epoch_fn(epoch)
            for k, v in last.items():
                check_finite(v, epoch, k)
            check_finite_params(model, epoch)
            if guard is not None:
                guard(epoch)
            if scheduler is not None:
                scheduler.step()
            log.append(epoch, last)
            if monitor is not None:
                monitor.epoch(epoch, last, log)
            end = epoch + 1
            out_of_time = budget is not None and time.perf_counter() - t0 > float(budget)
            requested = stop.requested
            if dist.enabled:  # every rank stops after the same epoch
                flags = dist.sum([requested, out_of_time])
                requested, out_of_time = flags[0] > 0, flags[1] > 0
            ckpts.maybe_save(epoch, snapshot, force=requested or out_of_time or epoch == n_epochs - 1)
            if after_epoch is not None and dist.is_main:
                after_epoch(epoch)
            if requested:
                interrupted = True
                say(f"stopped after epoch {epoch}; checkpoint saved to {ckpts.last_path}")
                break
            if out_of_time:
                say(f"time budget of {float(budget):g} s reached after epoch {epoch}; checkpoint saved")
                break
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    if log.rows():
        log.plot(out / LOSS_PLOT)
    return {"start_epoch": start, "end_epoch": end, "interrupted": interrupted, "out_of_time": out_of_time,
            "time_s": elapsed, "cpu_time_s": cpu, "last": last, "processes": dist.world_size}
