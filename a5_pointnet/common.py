"""Pieces shared by the Assignment 5 scripts: checkpoint loading, point subsets, batched
prediction, metrics, rotations and the course's turntable GIFs.

Visualisation follows the course: 30 views at azimuth ``180 - 12 i`` degrees, elevation 0,
distance 3, FoV 60 degrees, 256 x 256 pixels, point radius 0.01, 15 fps; segmentation colours
0 white, 1 magenta, 2 cyan, 3 yellow, 4 blue, 5 red. The course draws on a white background,
which hides the white part 0; the scripts default to a dark grey background (``--background``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from l3d.cameras import rotation_about_axis, turntable_cameras
from l3d.cli import HelpFormatter
from l3d.io import label_image, save_gif_with_png, to_uint8
from l3d.shading import render_points
from l3d.structures import Pointclouds
from l3d.train import UserError, load_checkpoint
from l3d.validate import check_shape

from .data import DataSpec, load_split, resolve_data
from .models import ModelConfig, model_from_checkpoint
from .synthetic import CHAIR_PARTS, CLASS_NAMES

__all__ = [
    "tidy_parser", "clear_metrics", "SEG_COLORS", "CLS_COLOR", "add_vis_flags", "resolve_checkpoint", "load_trained",
    "data_for_eval",
    "random_subsets", "take_subsets", "predict", "rotate_points", "confusion_matrix", "part_iou",
    "render_turntable", "save_turntable_gif",
]

SEG_COLORS = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0],
                           [1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
CLS_COLOR = (0.7, 0.7, 1.0)


class _HelpFormatter(HelpFormatter):
    """l3d's formatter, without "(default: None)" after flags whose help explains their default."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def clear_metrics(output_dir) -> None:
    """Remove a previous run's metrics.json (l3d.cli.report merges into it; stale keys would stay)."""
    p = Path(output_dir) / "metrics.json"
    if p.is_file():
        p.unlink()


def tidy_parser(ap: argparse.ArgumentParser, quick_help: Optional[str] = None) -> argparse.ArgumentParser:
    """Use the formatter above; optionally reword --quick's help."""
    ap.formatter_class = _HelpFormatter
    if quick_help:
        for a in ap._actions:
            if a.dest == "quick":
                a.help = quick_help
    return ap


# ----------------------------------------------------------------------------------------------
# checkpoints and data
# ----------------------------------------------------------------------------------------------
def resolve_checkpoint(path: str) -> Path:
    """A checkpoint file from ``path``: a .pt file, or a training output folder (its
    ``checkpoints/best.pt``, else ``checkpoints/last.pt``), or a checkpoints folder."""
    p = Path(path)
    if p.is_file():
        return p
    for cand in (p / "checkpoints" / "best.pt", p / "checkpoints" / "last.pt", p / "best.pt", p / "last.pt"):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"no checkpoint at {p} (expected a .pt file or a training folder with "
                            "checkpoints/best.pt); train one with `python -m a5_pointnet.train`")


def load_trained(path: str, device: torch.device, task: Optional[str] = None) -> Tuple[torch.nn.Module, ModelConfig, dict]:
    """(model in eval mode, its config, the checkpoint dict) from a checkpoint path or folder."""
    ckpt = resolve_checkpoint(path)
    state = load_checkpoint(ckpt, map_location="cpu")
    try:
        model, cfg = model_from_checkpoint(state, device)
    except (KeyError, RuntimeError, TypeError) as exc:
        raise UserError(f"{ckpt}: cannot rebuild the model ({' '.join(str(exc).split())[:200]})") from exc
    if task is not None and cfg.task != task:
        raise UserError(f"{ckpt} is a {cfg.task} model, but this script needs a {task} model")
    state["_path"] = str(ckpt)
    return model, cfg, state


def data_for_eval(args: argparse.Namespace, task: str, state: Optional[dict]) -> DataSpec:
    """The data an evaluation uses: the checkpoint's training data when no data flag is given
    (its folder when it still exists; the procedural set is regenerated from its seed and sizes
    otherwise), else what the flags say."""
    saved = (state or {}).get("data") or {}
    flags = (args.data, args.data_dir, args.num_train, args.num_test, args.data_seed)
    if saved and all(f is None for f in flags):
        root = Path(saved["root"])
        if all((root / task / f"{k}_{s}.npy").is_file() for k in ("data", "label") for s in ("train", "test")):
            return DataSpec(**saved)
        if saved.get("source") == "course":
            return resolve_data(task, "course", saved["root"])
        return resolve_data(task, "synthetic", None, args.cache_dir, saved.get("num_train"), saved.get("num_test"),
                            saved.get("seed"), num_points=saved.get("num_points") or 10000)
    synth = saved.get("source") == "synthetic"
    pick = lambda flag, key: flag if flag is not None else (saved.get(key) if synth else None)  # noqa: E731
    return resolve_data(task, args.data or "auto", args.data_dir, args.cache_dir, pick(args.num_train, "num_train"),
                        pick(args.num_test, "num_test"), pick(args.data_seed, "seed"), quick=args.quick)


def add_vis_flags(ap: argparse.ArgumentParser) -> None:
    """Turntable flags with the course's defaults."""
    g = ap.add_argument_group("visualisation")
    g.add_argument("--num_frames", type=int, default=30, help="views per GIF (azimuth 180 - 360 i / num_frames)")
    g.add_argument("--image_size", type=int, default=256, help="GIF frame size in pixels")
    g.add_argument("--radius", type=float, default=0.01, help="point radius (world units)")
    g.add_argument("--fps", type=float, default=15, help="GIF frame rate")
    g.add_argument("--background", type=float, nargs=3, default=(0.25, 0.25, 0.25), metavar=("R", "G", "B"),
                   help="background colour (the course used white, which hides part 0)")


def apply_quick_vis(args: argparse.Namespace) -> None:
    """--quick: 10 views of 128 pixels (the course's 30 x 256 take ~20 s per GIF on two CPU cores)."""
    if args.quick:
        args.num_frames, args.image_size = min(args.num_frames, 10), min(args.image_size, 128)
    if args.num_frames < 1 or args.image_size < 8:
        raise ValueError("--num_frames must be >= 1 and --image_size >= 8")


# ----------------------------------------------------------------------------------------------
# subsets, prediction, rotation
# ----------------------------------------------------------------------------------------------
def random_subsets(num_clouds: int, num_points_in: int, num_points: Optional[int], seed: int) -> Optional[torch.Tensor]:
    """(N, n) long indices of a random subset of ``num_points`` of the ``num_points_in`` points of
    each cloud (different per cloud, deterministic by seed), or None for all points."""
    if num_points is None or num_points >= num_points_in:
        return None
    if num_points < 1:
        raise ValueError(f"the number of points must be >= 1, got {num_points}")
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(num_clouds, num_points, dtype=torch.long)
    for s in range(0, num_clouds, 256):  # chunks bound the (chunk, P) random keys
        e = min(num_clouds, s + 256)
        out[s:e] = torch.rand(e - s, num_points_in, generator=g).topk(num_points, dim=1).indices
    return out


def take_subsets(x: torch.Tensor, idx: Optional[torch.Tensor]) -> torch.Tensor:
    """``x`` (N, P, ...) restricted to ``idx`` (N, n) per cloud (``x`` itself when idx is None)."""
    if idx is None:
        return x
    tail = x.shape[2:]
    return x.gather(1, idx.view(*idx.shape, *([1] * len(tail))).expand(*idx.shape, *tail))


@torch.no_grad()
def predict(model: torch.nn.Module, points: torch.Tensor, batch_size: int = 16,
            device: Optional[torch.device] = None) -> torch.Tensor:
    """Predicted labels of a trained model, batch by batch.

    Args:
        model: a cls or seg model (eval mode is set here).
        points: (N, P, 3) float clouds (CPU or device).
        batch_size: clouds per forward pass.
    Returns:
        (N,) long class ids (cls) or (N, P) long part ids (seg), on the CPU.
    """
    check_shape(points, ("N", "P", 3), "points")
    model.eval()
    device = device or next(model.parameters()).device
    outs = []
    for s in range(0, points.shape[0], batch_size):
        logits = model(points[s:s + batch_size].to(device, torch.float32))
        outs.append(logits.argmax(-1).cpu())
    if not outs:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat(outs)


def rotate_points(points: torch.Tensor, angle_deg: float, axis: str = "x") -> torch.Tensor:
    """``points`` (..., 3) rotated by ``angle_deg`` about the world ``axis`` through the origin."""
    m = rotation_about_axis(float(angle_deg), axis, dtype=points.dtype, device=points.device)[0]  # (3, 3)
    return points @ m.T


def confusion_matrix(pred: torch.Tensor, gt: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) counts, rows = ground truth, columns = prediction."""
    idx = gt.reshape(-1) * num_classes + pred.reshape(-1)
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def part_iou(pred: torch.Tensor, gt: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C,) intersection over union of every part over all points (NaN for a part absent from both)."""
    cm = confusion_matrix(pred, gt, num_classes).double()
    inter = cm.diag()
    union = cm.sum(0) + cm.sum(1) - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(inter, float("nan")))


# ----------------------------------------------------------------------------------------------
# turntable GIFs
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def render_turntable(points: torch.Tensor, colors: torch.Tensor, args: argparse.Namespace) -> torch.Tensor:
    """(T, H, W, 3) frames of the course's turntable around one cloud.

    Args:
        points: (P, 3) positions; colors: (P, 3) RGB in [0, 1].
        args: namespace with the flags of :func:`add_vis_flags`.
    """
    check_shape(points, ("P", 3), "points")
    check_shape(colors, (points.shape[0], 3), "colors")
    cams = turntable_cameras(args.num_frames, 3.0, 0.0, 60.0, 180.0, 180.0 - 360.0,
                             device=points.device, dtype=points.dtype)
    cloud = Pointclouds([points], [colors.to(points)])
    frames = render_points(cloud, cams, args.image_size, radius=args.radius, background=tuple(args.background),
                           batch_size=8)
    return frames[..., :3].clamp(0, 1)


def _caption(frames: np.ndarray, text: str, color=(255, 255, 255)) -> np.ndarray:
    size = max(10, frames.shape[1] // 16)
    return np.stack([label_image(f, text, xy=(4, 3), color=color, size=size) for f in frames])


def save_turntable_gif(path: Path, panels: Sequence[Tuple[torch.Tensor, torch.Tensor, str]], args: argparse.Namespace,
                       text_color=(255, 255, 255)) -> Tuple[Path, Path]:
    """A GIF (and a PNG of its first frame, the front view) of one or more clouds side by side.

    Args:
        panels: per panel (points (P, 3), colours (P, 3), caption drawn in the top-left corner).
    """
    frames = []
    for pts, cols, text in panels:
        f = to_uint8(render_turntable(pts.float(), cols.float(), args))
        frames.append(_caption(f, text, text_color) if text else f)
    return save_gif_with_png(path, np.concatenate(frames, axis=2), fps=args.fps, which="first")  # front view


def seg_colors(labels: torch.Tensor) -> torch.Tensor:
    """(P, 3) course colours of part labels (P,)."""
    return SEG_COLORS[labels.long().cpu()]


def part_names() -> Tuple[str, ...]:
    return CHAIR_PARTS


def class_names() -> Tuple[str, ...]:
    return CLASS_NAMES


def load_test(spec: DataSpec, task: str, limit: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Test clouds (N, P, 3) and labels of a data spec as CPU tensors (the first ``limit`` only)."""
    x, y = load_split(spec.root, task, "test")
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--num_objects must be >= 1, got {limit}")
        x, y = x[:limit], y[:limit]
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)
