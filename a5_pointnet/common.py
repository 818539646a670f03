"""Pieces shared by the Assignment 5 scripts: checkpoint loading, point subsets, batched
prediction, metrics, rotations and the course's turntable GIFs.

Visualisation follows the course: 30 views at azimuth ``180 - 12 i`` degrees, elevation 0,
distance 3, FoV 60 degrees, 256 x 256 pixels, point radius 0.01, 15 fps; segmentation colours
0 white, 1 magenta, 2 cyan, 3 yellow, 4 blue, 5 red. The course draws on a white background,
which hides the white part 0; the scripts default to a dark grey background (``--background``).
Captions sit in a banner above each rendering (never over the object, wrapped instead of cut
off); clouds of fewer than 10000 points are drawn with proportionally larger points
(:func:`point_radius`) so that a 100-point cloud stays visible.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import re
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from l3d.cameras import rotation_about_axis, turntable_cameras
from l3d.cli import ScriptParser, positive_float
from l3d.media import save_gif_with_png, to_uint8
from l3d.shading import render_points
from l3d.structures import Pointclouds
from l3d.errors import UserError, user_error
from l3d.run import load_checkpoint, nonfinite_tensors
from l3d.validate import check_shape

from .data import RELEASE_SOURCES, DataSpec, load_split, resolve_data
from .models import ModelConfig, model_from_checkpoint
from .synthetic import CHAIR_PARTS, CLASS_NAMES

__all__ = [
    "retain_freed_memory", "clear_metrics", "clear_pictures", "SEG_COLORS", "CLS_COLOR",
    "add_vis_flags", "VIS_QUICK", "check_vis", "check_index", "resolve_checkpoint", "load_trained",
    "data_for_eval",
    "random_subsets", "take_subsets", "predict", "rotate_points", "confusion_matrix", "part_iou",
    "render_turntable", "save_turntable_gif", "gif_frame_ms", "caption_banner", "legend_strip", "point_radius", "seg_legend",
]

SEG_COLORS = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0],
                           [1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
CLS_COLOR = (0.7, 0.7, 1.0)


def retain_freed_memory() -> bool:
    """Let this process keep the memory it frees (glibc ``mallopt``), instead of handing every
    large block back to the operating system.

    A PointNet forward pass on 10000 points allocates activations of hundreds of megabytes and
    frees them again; by default glibc serves each such block with a fresh ``mmap`` and returns it
    afterwards, so every pass page-faults all of it back in. On a CPU that costs as much system
    time as the arithmetic itself (measured: 3 s of system time per 2.6 s of compute for 90
    clouds). Raising the mmap and trim thresholds keeps the blocks in the heap for the next pass;
    peak memory is unchanged. A no-op (returns False) where glibc is not the C library.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameter numbers
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, (1 << 31) - 1))
    except (OSError, AttributeError):
        return False


def clear_metrics(output_dir) -> None:
    """Remove a previous run's metrics.json (l3d.cli.report merges into it; stale keys would stay)."""
    p = Path(output_dir) / "metrics.json"
    if p.is_file():
        p.unlink()


def clear_pictures(output_dir, prefixes: Sequence[str]) -> None:
    """Remove a previous run's ``<prefix>*.gif`` / ``.png`` from ``output_dir``: which cases get a
    picture depends on the run (e.g. ``failure_<class>.gif`` only for classes with a failure), so
    stale ones would otherwise be shown beside the new run's."""
    out = Path(output_dir)
    if not out.is_dir():
        return
    for prefix in prefixes:
        for ext in ("gif", "png"):
            for f in out.glob(f"{prefix}*.{ext}"):
                f.unlink()


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
    raise user_error(f"--load_checkpoint {p}", "a .pt file or a training folder with checkpoints/best.pt",
                     "no checkpoint there" if p.exists() else "nothing there",
                     "train one with `python -m a5_pointnet.train`")


def load_trained(path: str, device: torch.device, task: Optional[str] = None) -> Tuple[torch.nn.Module, ModelConfig, dict]:
    """(model in eval mode, its config, the checkpoint dict) from a checkpoint path or folder.

    Raises:
        UserError: no checkpoint there, or one that is damaged, holds non-finite weights, is not a
            model of this assignment, or is a model of the other task."""
    ckpt = resolve_checkpoint(path)
    state = load_checkpoint(ckpt, map_location="cpu")
    if "model" not in state or not isinstance(state.get("config", state.get("model_config")), dict):
        raise user_error(ckpt, "an Assignment 5 checkpoint (entries 'model' and 'config')",
                         f"entries {sorted(map(str, state))[:6]}")
    bad = nonfinite_tensors(state["model"])
    if bad:
        raise user_error(ckpt, "finite weights", f"{bad[0][1]} non-finite values in {bad[0][0]}",
                         "use an earlier checkpoint of the run")
    try:
        model, cfg = model_from_checkpoint(state, device)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:  # what the file holds cannot build a model
        raise UserError(f"{ckpt}: cannot rebuild the model ({' '.join(str(exc).split())[:200]})") from exc
    if task is not None and cfg.task != task:
        raise UserError(f"{ckpt} is a {cfg.task} model, but this script needs a {task} model")
    state["_path"] = str(ckpt)
    return model, cfg, state


def _reconvert_release(saved: dict, task: str) -> DataSpec:
    """The same view of a public release as a checkpoint was trained on, converted again from the
    release's folder (``saved["origin"]``) with the settings its cache folder's name records."""
    root, origin = Path(saved["root"]), saved.get("origin")
    if not origin or not Path(origin).is_dir():
        raise user_error(root, f"the converted {saved['source']} data the checkpoint was trained on, or the release "
                         f"folder it came from ({origin})", "neither is there",
                         "pass --data_path <the release's folder> (and --data)")
    m = re.fullmatch(r"(cls|seg)_p(\d+|all)_(\w+?)_(\d+|all)-(\d+|all)_s(-?\d+)(_normals)?", root.name)
    if m is None:
        raise user_error(root, "a converted release folder (<task>_p<points>_<pick>_<train>-<test>_s<seed>)",
                         "another name", "pass --data_path <the release's folder> (and --data)")
    opt = lambda v: None if v == "all" else int(v)  # noqa: E731
    spec = resolve_data(task, saved["source"], origin, str(root.parents[2]), opt(m[4]), opt(m[5]), int(m[6]),
                        cloud_points=opt(m[2]), point_pick=m[3], normals=bool(m[7]))
    if spec.class_names and saved.get("class_names") and tuple(spec.class_names) != tuple(saved["class_names"]):
        raise user_error(origin, f"the release the checkpoint was trained on ({len(saved['class_names'])} classes)",
                         f"other classes now ({len(spec.class_names)})")
    return spec


def data_for_eval(args: argparse.Namespace, task: str, state: Optional[dict]) -> DataSpec:
    """The data an evaluation uses: the checkpoint's training data when no data flag is given
    (its folder when it still exists; the procedural set is regenerated from its seed and sizes
    otherwise), else what the flags say."""
    saved = (state or {}).get("data") or {}
    flags = (args.data, args.data_path, args.num_train, args.num_test, args.data_seed)
    if saved and all(f is None for f in flags):
        root = Path(saved["root"])
        if all((root / task / f"{k}_{s}.npy").is_file() for k in ("data", "label") for s in ("train", "test")):
            return DataSpec(**{k: tuple(v) if k == "class_names" and v else v for k, v in saved.items()})
        if saved.get("source") == "course":
            return resolve_data(task, "course", saved["root"])
        if saved.get("source") in RELEASE_SOURCES:  # its converted copy is gone: convert the release again
            return _reconvert_release(saved, task)
        return resolve_data(task, "synthetic", None, args.cache_dir, saved.get("num_train"), saved.get("num_test"),
                            saved.get("seed"), num_points=saved.get("num_points") or 10000)
    synth = saved.get("source") == "synthetic"
    pick = lambda flag, key: flag if flag is not None else (saved.get(key) if synth else None)  # noqa: E731
    return resolve_data(task, args.data or "auto", args.data_path, args.cache_dir, pick(args.num_train, "num_train"),
                        pick(args.num_test, "num_test"), pick(args.data_seed, "seed"), quick=args.quick)


#: what --quick changes in the evaluation scripts: the course's 30 views at 128 pixels
VIS_QUICK = {"image_size": 128}
#: smallest GIF frame side that still shows a cloud
MIN_IMAGE_SIZE = 8


def add_vis_flags(ap: ScriptParser) -> None:
    """Turntable flags with the course's defaults."""
    ap.add_flag("num_frames", default=30, help="views per GIF (azimuth 180 - 360 i / num_frames)")
    ap.add_flag("image_size", default=256, help="GIF frame size in pixels (at least 8)")
    ap.add_argument("--radius", type=positive_float, default=0.01,
                    help="point radius (NDC units) of a 10000-point cloud; sparser clouds are drawn with larger "
                         "points (x sqrt(10000 / points), at most x3)")
    ap.add_flag("fps", default=15.0, help="GIF frame rate (each frame lasts 1/fps rounded up to 10 ms, the GIF time unit)")
    ap.add_argument("--background", type=float, nargs=3, default=(0.25, 0.25, 0.25), metavar=("R", "G", "B"),
                    help="background colour in [0, 1] (the course used white, which hides part 0)")


def check_vis(args: argparse.Namespace) -> None:
    """The visualisation flags' values that their types cannot check."""
    if args.image_size < MIN_IMAGE_SIZE:
        raise user_error(f"--image_size {args.image_size}", f"at least {MIN_IMAGE_SIZE} pixels")
    if not all(0.0 <= c <= 1.0 for c in args.background):
        raise user_error(f"--background {' '.join(f'{c:g}' for c in args.background)}", "three numbers in [0, 1]")


def check_index(index: int, n: int) -> None:
    """``--index`` (``--i``) must name one of the ``n`` test objects."""
    if not 0 <= index < n:
        raise user_error(f"--index {index}", f"an object index in 0..{n - 1} (the test split has {n} objects)")


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
#: the point radius of --radius is meant for a cloud of this many points (the course's 10000);
#: sparser clouds are drawn with larger points, see :func:`point_radius`
DENSE_POINTS = 10000
#: at most this factor larger
MAX_RADIUS_SCALE = 3.0


def point_radius(radius: float, num_points: int) -> float:
    """Drawing radius of a cloud of ``num_points`` points: ``radius * sqrt(10000 / P)``, between
    ``radius`` and 3 ``radius``, so that a 100-point cloud is still visible (at the course's
    radius 0.01 its points are sub-pixel specks)."""
    return radius * min(MAX_RADIUS_SCALE, max(1.0, math.sqrt(DENSE_POINTS / max(1, num_points))))


@torch.no_grad()
def render_turntable(points: torch.Tensor, colors: torch.Tensor, args: argparse.Namespace) -> torch.Tensor:
    """(T, H, W, 3) frames of the course's turntable around one cloud.

    The course's compositor (PyTorch3D's) fills only pixels that no point touches with the
    background, so pixels covered by a point's faint rim come out dark (black specks over the
    shape); here the composited colour is laid over the background by its alpha instead
    (``rgb + (1 - alpha) background``), which is the same wherever a pixel is fully covered.

    Args:
        points: (P, 3) positions; colors: (P, 3) RGB in [0, 1].
        args: namespace with the flags of :func:`add_vis_flags`.
    """
    check_shape(points, ("P", 3), "points")
    check_shape(colors, (points.shape[0], 3), "colors")
    cams = turntable_cameras(args.num_frames, 3.0, 0.0, 60.0, 180.0, 180.0 - 360.0,
                             device=points.device, dtype=points.dtype)
    cloud = Pointclouds([points], [colors.to(points)])
    frames = render_points(cloud, cams, args.image_size, radius=point_radius(args.radius, points.shape[0]),
                           background=None, batch_size=8)  # (T, H, W, 4), colour premultiplied by alpha
    bg = torch.tensor(args.background, dtype=frames.dtype, device=frames.device)
    return (frames[..., :3] + (1 - frames[..., 3:]) * bg).clamp(0, 1)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed bitmap size
        return ImageFont.load_default()


def _wrap(text: str, font, width: int) -> List[str]:
    """``text`` broken at its newlines, then greedily at spaces, into lines of at most ``width``
    pixels (a single word wider than that stays on its own line)."""
    lines: List[str] = []
    for para in text.split("\n"):
        cur = ""
        for word in para.split(" "):
            cand = word if not cur else f"{cur} {word}"
            if cur and font.getlength(cand) > width:
                lines.append(cur)
                cur = word
            else:
                cur = cand
        lines.append(cur)
    return lines


def caption_banner(text: str, width: int, color=(255, 255, 255), background=(0.12, 0.12, 0.12),
                   min_lines: int = 1, font_size: Optional[int] = None) -> np.ndarray:
    """(h, width, 3) uint8 strip with ``text`` in it, to stack above a rendering (labels never
    cover the object and are never cut off: long captions wrap onto more lines, and a word wider
    than the strip makes the font smaller).

    Args:
        text: the caption; ``\\n`` starts a new line.
        width: strip width in pixels.
        min_lines: height in lines at least (panels side by side get equal strips).
        font_size: pixels (default: width / 15, at least 10).
    """
    from PIL import Image, ImageDraw

    margin = 4
    size = font_size or max(10, round(width / 15))
    font = _font(size)
    while size > 7 and any(font.getlength(w) > width - 2 * margin for w in text.split()):
        size -= 1
        font = _font(size)
    lines = _wrap(text, font, width - 2 * margin)
    line_h = size + max(2, size // 4)
    h = max(len(lines), min_lines) * line_h + 2 * margin - max(2, size // 4) + 2
    bg = tuple(int(round(255 * c)) for c in background)
    img = Image.new("RGB", (width, h), bg)
    draw = ImageDraw.Draw(img)
    for k, line in enumerate(lines):
        draw.text((margin, margin + k * line_h), line, fill=tuple(color), font=font)
    return np.asarray(img, dtype=np.uint8)


def legend_strip(entries: Sequence[Tuple[str, Sequence[float]]], width: int, background=(0.12, 0.12, 0.12),
                 font_size: Optional[int] = None) -> np.ndarray:
    """(h, width, 3) uint8 colour key: a swatch and a name per entry, wrapped onto as many rows
    as the width needs.

    Args:
        entries: (name, RGB in [0, 1]) per colour.
    """
    from PIL import Image, ImageDraw

    margin = 4
    size = font_size or max(10, round(width / 15))
    font = _font(size)
    sw, gap = size - 2, size  # swatch side, space between entries
    widths = [sw + 4 + int(font.getlength(name)) for name, _ in entries]
    rows: List[List[int]] = [[]]
    x = margin
    for k, w in enumerate(widths):
        if rows[-1] and x + w > width - margin:
            rows.append([])
            x = margin
        rows[-1].append(k)
        x += w + gap
    line_h = size + 4
    h = len(rows) * line_h + 2 * margin - 2
    img = Image.new("RGB", (width, h), tuple(int(round(255 * c)) for c in background))
    draw = ImageDraw.Draw(img)
    for r, row in enumerate(rows):
        x, y = margin, margin + r * line_h
        for k in row:
            name, rgb = entries[k]
            draw.rectangle([x, y + 2, x + sw - 1, y + 1 + sw], fill=tuple(int(round(255 * c)) for c in rgb))
            draw.text((x + sw + 4, y), name, fill=(235, 235, 235), font=font)
            x += widths[k] + gap
    return np.asarray(img, dtype=np.uint8)


def gif_frame_ms(fps: float) -> int:
    """Frame time written to a GIF for ``fps``: 1000 / fps rounded *up* to whole centiseconds,
    the unit GIF stores (Pillow rounds 66.7 ms down to 60 ms, which would make the course's 30
    views at 15 fps a 1.8 s turn; 70 ms makes it 2.1 s)."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")  # --fps is a positive_float
    return 10 * math.ceil(100.0 / fps - 1e-9)


#: pixels between panels side by side
PANEL_GAP = 3


def save_turntable_gif(path: Path, panels: Sequence[Tuple[torch.Tensor, torch.Tensor, str]], args: argparse.Namespace,
                       text_color=(255, 255, 255), legend: Optional[Sequence[Tuple[str, Sequence[float]]]] = None
                       ) -> Tuple[Path, Path]:
    """A GIF (and a PNG of its first frame, the front view) of one or more clouds side by side,
    each with its caption in a banner above the rendering, and an optional colour key below.

    Args:
        panels: per panel (points (P, 3), colours (P, 3), caption ("" for none)).
        text_color: RGB 0..255 of the captions.
        legend: (name, RGB in [0, 1]) per colour for a key under the panels (None: no key).
    """
    video = turntable_panels(panels, args, text_color, legend)
    return save_gif_with_png(path, video, duration_ms=gif_frame_ms(args.fps), which="first")  # front view


def turntable_panels(panels: Sequence[Tuple[torch.Tensor, torch.Tensor, str]], args: argparse.Namespace,
                     text_color=(255, 255, 255), legend: Optional[Sequence[Tuple[str, Sequence[float]]]] = None
                     ) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of :func:`save_turntable_gif` (``args``: ``num_frames``,
    ``image_size``, ``radius``, ``background``)."""
    frames = [to_uint8(render_turntable(pts.float(), cols.float(), args)) for pts, cols, _ in panels]
    T, _, width = frames[0].shape[:3]
    if any(text for _, _, text in panels):
        strips = [caption_banner(text, width, text_color) for _, _, text in panels]  # (h_k, W, 3)
        h = max(st.shape[0] for st in strips)
        strips = [np.concatenate([st, np.broadcast_to(st[-1:], (h - st.shape[0], *st.shape[1:]))]) for st in strips]
        frames = [np.concatenate([np.broadcast_to(st, (T, *st.shape)), f], axis=1) for st, f in zip(strips, frames)]
    if len(frames) > 1:  # a light gap keeps the panels apart
        gap = np.full((T, frames[0].shape[1], PANEL_GAP, 3), 200, dtype=np.uint8)
        frames = [x for f in frames for x in (gap, f)][1:]
    video = np.concatenate(frames, axis=2)  # (T, H, W_total, 3)
    if legend:
        key = legend_strip(legend, video.shape[2], font_size=max(10, round(width / 15)))  # the captions' size
        video = np.concatenate([video, np.broadcast_to(key, (T, *key.shape))], axis=1)
    return video


def seg_colors(labels: torch.Tensor) -> torch.Tensor:
    """(P, 3) course colours of part labels (P,); past the course's six parts the colours repeat."""
    return SEG_COLORS[labels.long().cpu() % len(SEG_COLORS)]


def part_names() -> Tuple[str, ...]:
    return CHAIR_PARTS


def seg_legend(source: str) -> List[Tuple[str, Tuple[float, ...]]]:
    """Colour key of the segmentation GIFs: the procedural chairs' part names, or "part k" for
    other data (whose part names this code does not know)."""
    names = CHAIR_PARTS if source == "synthetic" else tuple(f"part {k}" for k in range(len(SEG_COLORS)))
    return [(f"{k} {name}", tuple(SEG_COLORS[k].tolist())) for k, name in enumerate(names)]


def class_names() -> Tuple[str, ...]:
    return CLASS_NAMES


def load_test(spec: DataSpec, task: str, limit: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Test clouds (N, P, 3) and labels of a data spec as CPU tensors (the first ``limit`` only)."""
    x, y = load_split(spec.root, task, "test")
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")  # --num_objects is a positive_int
        x, y = x[:limit], y[:limit]
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)
