"""Labels in a banner above a picture, never over its content.

    frame = with_banner(image, "itr 120")          # (H + b, W, 3), the text in the strip above
    row = with_banners([pred, truth], ["prediction", "ground truth"])  # side by side, each labelled

The banner is a white strip with dark text (Pillow's default font, 12 pixels by default); the
text is clipped to the picture's width by shortening it with an ellipsis, never drawn beyond.
Works on float images in [0, 1] and uint8 images, as tensors or arrays, and keeps the type.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from l3d.media import label_image

BANNER_BG = (1.0, 1.0, 1.0)
BANNER_FG = (20, 20, 20)


def _text_width(text: str, size: float) -> int:
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed size
        font = ImageFont.load_default()
    box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    return int(box[2] - box[0])


def fit_text(text: str, width: int, size: float = 12) -> str:
    """``text``, shortened with "..." until it fits in ``width`` pixels (2 px margins)."""
    if _text_width(text, size) <= width - 4:
        return text
    while text and _text_width(text + "...", size) > width - 4:
        text = text[:-1]
    return text + "..." if text else ""


def banner_height(size: float = 12) -> int:
    """Pixel height of a banner for text of ``size`` pixels."""
    return int(round(size * 1.4)) + 2


def with_banner(img: Any, text: str, size: float = 12, bg=BANNER_BG, fg=BANNER_FG) -> Any:
    """(H, W, C) image -> (H + banner, W, C): ``text`` in a strip above the picture."""
    is_tensor = torch.is_tensor(img)
    arr = img.detach().cpu().numpy() if is_tensor else np.asarray(img)
    h, w = arr.shape[:2]
    bh = banner_height(size)
    strip = np.empty((bh, w, arr.shape[2]), dtype=arr.dtype)
    fill = np.asarray(bg, dtype=np.float64)
    if arr.dtype == np.uint8:
        fill = np.rint(fill * 255)
    strip[...] = fill[: arr.shape[2]] if arr.shape[2] <= 3 else np.concatenate([fill, [fill.max()]])
    strip = label_image(strip, fit_text(text, w, size), xy=(2, 1), color=fg, size=size)
    out = np.concatenate([strip.astype(arr.dtype), arr], 0)
    if is_tensor:
        return torch.from_numpy(np.ascontiguousarray(out)).to(img.device)
    return out


def with_banners(images: Sequence[Any], texts: Sequence[str], size: float = 12, axis: int = 1) -> Any:
    """Label every image with its banner and join them along ``axis`` (1: side by side)."""
    if len(images) != len(texts):
        raise ValueError(f"{len(images)} images but {len(texts)} labels")
    labelled = [with_banner(im, t, size) for im, t in zip(images, texts)]
    if torch.is_tensor(labelled[0]):
        return torch.cat(labelled, axis)
    return np.concatenate(labelled, axis)


def turntable_frame_ms(num_frames: int, fps: float, min_turn_s: float = 2.0) -> int:
    """Per-frame duration (ms) of a turntable GIF: ``1000 / fps``, lengthened so that one turn of
    ``num_frames`` lasts at least ``min_turn_s``, in whole 10 ms (GIF stores hundredths of a
    second, so 12 fps, 83.3 ms, would be stored as 80 ms and 24 frames would last 1.92 s)."""
    ms = max(1000.0 / fps, 1000.0 * min_turn_s / max(num_frames, 1))
    return int(-(-ms // 10) * 10)  # rounded up to 10 ms
