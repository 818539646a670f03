"""Shared plumbing of the two Hydra entry points: config preparation (quick variants), the epoch
loop with checkpoints / resume / Ctrl-C / NaN guard / loss curves, GIF writing, pixel lookup,
PSNR and the one-line error wrapper.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from l3d.media import save_gif_with_png
from l3d.run import CheckpointManager, LossLog, check_finite, command_line, write_command, write_metrics
from l3d.train import choose_device, graceful_interrupt, progress, seed_everything

from .model import to_container

__all__ = ["prepare", "train_loop", "save_gif", "psnr", "sample_images_at_xy", "lookup_pixels", "wh_to_hw",
           "finish", "comparison_panel"]

GIF_MS = 100  # spec convention 8: 100 ms per frame
_ENTRY = {"module": None}  # the entry point module of this run, for command.txt


def wh_to_hw(image_size: Sequence[int]) -> tuple:
    """Config ``image_size`` is [W, H] (spec convention 1); l3d wants (H, W)."""
    if len(image_size) != 2 or min(int(v) for v in image_size) < 1:
        raise ValueError(f"data.image_size must be [W, H] with positive entries, got {list(image_size)}")
    return int(image_size[1]), int(image_size[0])


def prepare(cfg, module: Optional[str] = None) -> tuple:
    """Apply the ``quick`` variant, seed, choose the device, create the output folder.

    ``quick=true`` applies every ``quick_overrides`` entry (dotted key -> value) of the config
    before anything else; explicit command-line overrides of the same keys are kept.
    ``module`` names the entry point (``python -m <module>`` goes to command.txt).
    Returns (plain config dict, device, output folder Path).
    """
    from omegaconf import OmegaConf

    _ENTRY["module"] = module

    if cfg.get("quick", False):
        cli = _cli_keys()
        for key, value in (cfg.get("quick_overrides") or {}).items():
            if key not in cli:
                OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    plain = to_container(cfg)
    seed_everything(int(plain.get("seed", 0)))
    device = choose_device(plain.get("device", "auto"))
    out = Path(plain["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(plain)))
    return plain, device, out


def _cli_keys() -> set:
    """Keys set on the command line (``a.b=1`` / ``+a.b=1``), so quick variants do not override them."""
    keys = set()
    for arg in sys.argv[1:]:
        if "=" in arg and not arg.startswith("-"):
            keys.add(arg.split("=", 1)[0].lstrip("+~"))
    return keys


def finish(out: Path, metrics: Mapping[str, Any], written: Sequence[Any]) -> None:
    """Write metrics.json (merged) and command.txt, print the numbers and the files written."""
    write_metrics(out, dict(metrics))
    write_command(out, command_line(module=_ENTRY["module"]))
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
    """GIF (uint8 by truncation, 100 ms per frame) plus a PNG of its first frame; returns both paths."""
    gif, png = save_gif_with_png(path, frames.detach().cpu().clamp(0, 1), duration_ms=GIF_MS, truncate=True,
                                 which="first")
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
            raise ValueError(f"pixel_lookup 'exact' needs the images' own resolution ({h} x {w}); "
                             f"use 'bilinear' or 'grid_sample' for a grid of {grid.shape[0]} pixels")
        return images.reshape(n, h * w, c)
    if mode not in LOOKUPS:
        raise ValueError(f"training.pixel_lookup must be one of {', '.join(LOOKUPS)}, got {mode!r}")
    return sample_images_at_xy(images, grid.expand(n, -1, -1), align_corners=mode == "grid_sample")


def train_loop(
    out: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Optional[Any],
    tcfg: Mapping[str, Any],
    config: Mapping[str, Any],
    epoch_fn: Callable[[int], Dict[str, float]],
    after_epoch: Optional[Callable[[int], None]] = None,
    desc: str = "train",
    device: Optional[torch.device] = None,
) -> Dict[str, Any]:
    """Run epochs ``start .. tcfg.num_epochs - 1`` of ``epoch_fn(epoch) -> {name: mean value}``.

    Checkpoints (``<out>/checkpoints``) every ``checkpoint_interval`` epochs, at the last epoch and
    on Ctrl-C hold the model, optimizer, scheduler, epoch and config. With ``resume`` the latest
    checkpoint is loaded and training continues at the next epoch; its loss log is rewound to the
    same epoch. Losses go to ``losses.csv`` and ``losses.png``.

    ``tcfg.time_budget_s`` (optional) ends training after the first epoch that finishes past that
    many seconds of wall time (with a checkpoint), for time-boxed runs.

    Returns:
        {"start_epoch", "end_epoch" (last epoch done + 1), "interrupted", "out_of_time", "time_s",
        "cpu_time_s" (process CPU time, all threads), "last": scalars}.
    """
    n_epochs = int(tcfg["num_epochs"])
    every = int(tcfg.get("checkpoint_interval", 0) or 0)
    ckpts = CheckpointManager(out / "checkpoints", every=every, keep_last=2)
    resume = bool(tcfg.get("resume", False))
    log = LossLog(out / "losses.csv", append=resume)
    start = 0
    if resume:
        state = ckpts.resume(map_location=device or "cpu")
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and state.get("scheduler") is not None:
                scheduler.load_state_dict(state["scheduler"])
            start = int(state["step"]) + 1
            log.rewind(int(state["step"]))
            print(f"resumed from {ckpts.last_path} at epoch {start}")

    def snapshot():
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": None if scheduler is None else scheduler.state_dict(), "config": dict(config)}

    last: Dict[str, float] = {}
    interrupted = out_of_time = False
    budget = tcfg.get("time_budget_s")
    end = start
    t0, c0 = time.perf_counter(), time.process_time()
    model.train()
    with graceful_interrupt() as stop:
        for epoch in progress(range(start, n_epochs), desc):
            last = epoch_fn(epoch)
            for k, v in last.items():
                check_finite(v, epoch, k)
            if scheduler is not None:
                scheduler.step()
            log.append(epoch, last)
            end = epoch + 1
            out_of_time = budget is not None and time.perf_counter() - t0 > float(budget)
            ckpts.maybe_save(epoch, snapshot, force=stop.requested or out_of_time or epoch == n_epochs - 1)
            if after_epoch is not None:
                after_epoch(epoch)
            if stop.requested:
                interrupted = True
                print(f"stopped after epoch {epoch}; checkpoint saved to {ckpts.last_path}")
                break
            if out_of_time:
                print(f"time budget of {float(budget):g} s reached after epoch {epoch}; checkpoint saved")
                break
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    if log.rows():
        log.plot(out / "losses.png")
    return {"start_epoch": start, "end_epoch": end, "interrupted": interrupted, "out_of_time": out_of_time,
            "time_s": elapsed, "cpu_time_s": cpu, "last": last}
