"""Images and videos: PNG/JPEG, GIF (with a PNG twin), MP4 and WebM, captions drawn on images.

Images are ``(H, W, C)`` arrays or tensors, ``C`` = 1, 3 (RGB) or 4 (RGBA), float in [0, 1] or
uint8; frame stacks are ``(N, H, W, C)`` or lists of N frames. Every writer creates the parent
folders and writes atomically (:func:`l3d.run.atomic_path`). :func:`load_image` turns an unreadable
or truncated file into a one-line :class:`~l3d.errors.UserError` that names it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import numpy as np
import torch

from .errors import user_error
from .run import atomic_path

PathLike = Union[str, os.PathLike]

__all__ = ["to_uint8", "save_image", "load_image", "save_gif", "save_mp4", "save_webm",
           "save_gif_with_png", "label_image", "gif_timing", "motion_ratio"]


def _to_numpy(x: Any) -> np.ndarray:
    if torch.is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def to_uint8(img: Any, truncate: bool = False) -> np.ndarray:
    """Float image(s) in [0, 1] (tensor or array, any shape) -> uint8 array.

    Values are clipped to [0, 1] and scaled by 255, then rounded to the nearest integer
    (default) or, with ``truncate=True``, truncated like ``np.uint8(img * 255)`` (for references
    that were made that way). uint8 input is returned unchanged (as an array).
    """
    if torch.is_tensor(img) and img.is_floating_point():
        # torch's element-wise kernels use every intra-op thread (numpy's one): 2.07 -> 0.64 s on a
        # 100-frame 512x512 turntable; float64 and round-half-to-even, the numbers of the numpy path
        t = img.detach().to("cpu", torch.float64, copy=True)
        t = t.nan_to_num_(nan=0.0).clamp_(0.0, 1.0).mul_(255.0)
        return (t.floor_() if truncate else t.round_()).to(torch.uint8).numpy()
    a = _to_numpy(img)
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    a = np.clip(a.astype(np.float64), 0.0, 1.0) * 255.0
    return (np.floor(a) if truncate else np.rint(a)).astype(np.uint8)


def _drop_alpha(frames: np.ndarray) -> np.ndarray:
    """(..., H, W, 4) uint8 -> RGB composited over white; RGB and grey are returned unchanged."""
    if frames.ndim >= 3 and frames.shape[-1] == 4:
        a = frames[..., 3:].astype(np.float32) / 255.0
        rgb = frames[..., :3].astype(np.float32) * a + 255.0 * (1 - a)
        return np.rint(rgb).astype(np.uint8)
    if frames.ndim >= 3 and frames.shape[-1] == 1:
        return frames[..., 0]
    return frames


def save_image(path: PathLike, img: Any, truncate: bool = False) -> Path:
    """Write an (H, W, C) image (float in [0, 1] or uint8; C = 1, 3 or 4) with Pillow, atomically.

    The format follows the suffix (png, jpg, ...). Formats without alpha (JPEG) get RGBA
    composited over white.
    """
    from PIL import Image

    path = Path(path)
    a = to_uint8(img, truncate=truncate)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"img must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {tuple(a.shape)}")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format from the suffix of {path}")
    if fmt in ("JPEG", "BMP") and a.ndim == 3 and a.shape[-1] == 4:
        a = _drop_alpha(a)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(a)).save(tmp, format=fmt)
    return path


def load_image(path: PathLike) -> torch.Tensor:
    """Read an image as a float32 tensor (H, W, C) in [0, 1].

    C = 3 for RGB (palette and CMYK images are converted), 4 when the file has alpha, 1 for
    greyscale. 16-bit greyscale is scaled by 1/65535. For an animated file, the first frame.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return _image_to_tensor(im)
    except (UnidentifiedImageError, SyntaxError) as exc:
        raise user_error(path, "an image file Pillow can read", f"an unreadable file ({exc})") from None
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise user_error(path, "a complete image file", f"a damaged or truncated one ({exc})") from None


def _image_to_tensor(im) -> torch.Tensor:
    if True:
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            a = np.asarray(im, dtype=np.float32) / 65535.0
            return torch.from_numpy(np.ascontiguousarray(a))[..., None]
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif im.mode not in ("L", "RGB", "RGBA"):
            im = im.convert("RGBA" if "A" in im.mode else "RGB")
        a = np.asarray(im, dtype=np.float32) / 255.0
    if a.ndim == 2:
        a = a[..., None]
    return torch.from_numpy(np.ascontiguousarray(a))


def _frames_uint8(frames: Any, truncate: bool = False) -> np.ndarray:
    """A list / (N, H, W[, C]) stack of float or uint8 frames -> (N, H, W[, 3]) uint8."""
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("frames is empty")
        arr = np.stack([to_uint8(f, truncate=truncate) for f in frames])  # one per frame
    else:
        arr = to_uint8(frames, truncate=truncate)
    if arr.ndim not in (3, 4) or arr.shape[0] == 0:
        raise ValueError(f"frames must have shape (N, H, W, C) or (N, H, W) with N >= 1, got {tuple(arr.shape)}")
    if arr.ndim == 4 and arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"frames must have 1, 3 or 4 channels, got {arr.shape[-1]}")
    return _drop_alpha(arr)


def save_gif(
    path: PathLike,
    frames: Any,
    fps: float = 15,
    duration_ms: Optional[float] = None,
    loop: int = 0,
    truncate: bool = False,
    palette: str = "global",
) -> Path:
    """Write an animated GIF, atomically.

    Args:
        frames: (N, H, W, C) or list of N (H, W, C) frames, float in [0, 1] or uint8.
            RGBA frames are composited over white (GIF has no partial transparency).
        fps: frames per second; each frame lasts ``1000 / fps`` ms.
        duration_ms: per-frame duration in ms, overrides ``fps``.
        loop: 0 = loop forever (the default), n = play n times.
        truncate: float -> uint8 by truncation instead of rounding (see :func:`to_uint8`).
        palette: "global" (default) quantises all frames to one shared 256-colour palette (about
            5x quicker than per-frame palettes for long turntables; mean error ~0.3/255 on
            renders); "per_frame" lets Pillow build an adaptive palette for every frame.

    GIF stores durations in 1/100 s: a duration is rounded up to the next 10 ms (15 fps = 66.7 ms
    is written as 70 ms), so an animation never plays faster than asked. Pillow merges consecutive *identical* frames into one frame with the summed
    duration, so a GIF of repeated frames reads back with fewer frames (same total time).
    """
    arr = _frames_uint8(frames, truncate)
    if duration_ms is None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        duration_ms = 1000.0 / fps
    # GIF stores whole hundredths of a second and Pillow truncates (66.7 ms -> 60 ms, so a 15 fps
    # turn of 30 frames would last 1.8 s instead of 2): round up to the next 10 ms
    duration_ms = 10.0 * math.ceil(float(duration_ms) / 10.0 - 1e-6)
    if palette == "per_frame":
        import imageio.v3 as iio

        with atomic_path(path) as tmp:
            iio.imwrite(tmp, arr, extension=".gif", plugin="pillow", duration=float(duration_ms), loop=int(loop))
        return Path(path)
    if palette != "global":
        raise ValueError(f"palette must be 'global' or 'per_frame', got {palette!r}")
    from PIL import Image

    # one palette for all frames: octree quantisation of a subsample of every frame, then each
    # frame mapped to its nearest palette colours by Pillow (no dithering)
    step = max(1, int(np.sqrt(arr.shape[0] * arr.shape[1] * arr.shape[2] / 2e5)))  # ~200k samples
    sample = np.ascontiguousarray(arr[:, ::step, ::step, :3].reshape(1, -1, 3))
    pal_img = Image.fromarray(sample).quantize(256, method=Image.Quantize.FASTOCTREE)
    images = [Image.fromarray(np.ascontiguousarray(f[..., :3])).quantize(palette=pal_img, dither=Image.Dither.NONE)
              for f in arr]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=float(duration_ms),
                       loop=int(loop), optimize=False)
    return Path(path)


def _encode_video(path: PathLike, frames: Any, fps: float, **writer_kwargs) -> Path:
    """Stream ``frames`` through imageio-ffmpeg's bundled ffmpeg into ``path``, atomically. Grey
    frames become RGB, odd sizes are padded by one replicated row/column (yuv420p needs even sizes)."""
    import imageio_ffmpeg

    arr = _frames_uint8(frames)
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    _, h, w, _ = arr.shape
    arr = np.pad(arr, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    h, w = arr.shape[1:3]
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(str(tmp), (w, h), fps=fps, pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
                                             macro_block_size=1, ffmpeg_log_level="error", **writer_kwargs)
        writer.send(None)
        try:
            for frame in arr:  # frames are streamed to ffmpeg one by one
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()
    return Path(path)


def save_mp4(path: PathLike, frames: Any, fps: float = 15, quality: float = 8.0) -> Path:
    """Write an H.264 MP4 (yuv420p) with imageio-ffmpeg, atomically.

    Args:
        frames: (N, H, W, C) or list of N (H, W, C) frames, float in [0, 1] or uint8; RGBA is
            composited over white. Odd widths/heights are padded by one replicated row/column
            (the codec needs even sizes).
        fps: frames per second.
        quality: imageio-ffmpeg quality, 0 (worst) .. 10 (best).
    """
    return _encode_video(path, frames, fps, codec="libx264", quality=quality, output_params=["-f", "mp4"])


def save_webm(path: PathLike, frames: Any, fps: float = 15, crf: int = 32) -> Path:
    """Write a WebM (VP9, yuv420p) with imageio-ffmpeg's bundled ffmpeg, atomically.

    WebM/VP9 plays in every browser, Chromium included (which does not play H.264 MP4s without
    proprietary codecs), so the gallery embeds these; :func:`save_mp4` stays for downloads.

    Args:
        frames: (N, H, W, C) or list of N (H, W, C) frames, float in [0, 1] or uint8; RGBA is
            composited over white; odd sizes are padded by one replicated row/column.
        fps: frames per second.
        crf: VP9 constant quality, 0 (lossless-like) .. 63 (worst).
    """
    return _encode_video(path, frames, fps, codec="libvpx-vp9", quality=None, bitrate=None,
                         output_params=["-crf", str(int(crf)), "-b:v", "0", "-deadline", "good", "-cpu-used", "4",
                                        "-f", "webm"])


def save_gif_with_png(path: PathLike, frames: Any, fps: float = 15, which: str = "middle", **kwargs) -> Tuple[Path, Path]:
    """:func:`save_gif` plus ``<stem>.png`` of one frame for quick viewing.

    Args:
        which: "middle" (frame N // 2) or "first".
    Returns:
        (gif path, png path).
    """
    arr = _frames_uint8(frames, kwargs.get("truncate", False))
    gif = save_gif(path, arr, fps=fps, **{k: v for k, v in kwargs.items() if k != "truncate"})
    idx = {"middle": len(arr) // 2, "first": 0}.get(which)
    if idx is None:
        raise ValueError(f"which must be 'middle' or 'first', got {which!r}")
    png = save_image(Path(path).with_suffix(".png"), arr[idx])
    return gif, png


def _font(size: Optional[float]):
    from PIL import ImageFont

    if size is not None:
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1
            pass
    return ImageFont.load_default()


def label_image(
    img: Any,
    text: str,
    xy: Tuple[float, float] = (20, 20),
    color: Tuple[int, int, int] = (255, 0, 0),
    size: Optional[float] = None,
) -> Any:
    """Draw ``text`` on an image (e.g. the "fov: xx.xx" labels of the dolly zoom).

    Args:
        img: (H, W, C) float in [0, 1] or uint8, tensor or array (C = 3 or 4).
        text: the label.
        xy: top-left corner of the text in pixels (x = column, y = row).
        color: RGB 0..255.
        size: font size in pixels for Pillow's default font (None: Pillow's default size).
    Returns:
        A new image of the same type, dtype and device; only pixels under the text change
        (the glyphs are alpha-blended; an alpha channel becomes opaque under the text).
    """
    from PIL import Image, ImageDraw

    h, w = img.shape[:2]
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).text(tuple(xy), text, fill=255, font=_font(size))
    m = np.asarray(mask, dtype=np.float32) / 255.0  # (H, W)
    is_uint8 = (img.dtype == torch.uint8) if torch.is_tensor(img) else (np.asarray(img).dtype == np.uint8)
    col = np.asarray(color, dtype=np.float32) / 255.0
    if torch.is_tensor(img):
        x = img.float() / 255.0 if is_uint8 else img
        mt = torch.as_tensor(m, device=x.device, dtype=x.dtype)[..., None]
        ct = torch.as_tensor(col, device=x.device, dtype=x.dtype)
        rgb = x[..., :3] * (1 - mt) + ct * mt
        out = torch.cat([rgb, torch.maximum(x[..., 3:], mt)], -1) if x.shape[-1] == 4 else rgb
        return (out * 255).round().to(torch.uint8) if is_uint8 else out
    x = np.asarray(img)
    xf = x.astype(np.float32) / 255.0 if is_uint8 else x
    mm = m[..., None].astype(xf.dtype)
    rgb = xf[..., :3] * (1 - mm) + col.astype(xf.dtype) * mm
    out = np.concatenate([rgb, np.maximum(xf[..., 3:], mm)], -1) if xf.shape[-1] == 4 else rgb
    return np.rint(out * 255).astype(np.uint8) if is_uint8 else out


# ----------------------------------------------------------------------------------------------
# what a viewer sees of an animation
# ----------------------------------------------------------------------------------------------
def gif_timing(path: PathLike) -> dict:
    """``{"frames", "seconds"}`` of a GIF as a viewer plays it (the writer merges identical
    consecutive frames, so a frozen animation reads back as few frames)."""
    from PIL import Image

    with Image.open(Path(path)) as im:
        n = getattr(im, "n_frames", 1)
        total = 0.0
        for i in range(n):
            im.seek(i)
            total += float(im.info.get("duration", 0))
    return {"frames": float(n), "seconds": total / 1000.0}


def motion_ratio(frames: torch.Tensor) -> float:
    """``mean |f[i+2] - f[i]| / mean |f[i+1] - f[i]|`` over a looping (T, H, W, C) sequence.

    A turntable that turns by small steps gives > 1 (about 2: two steps move further than one);
    one that alternates between two poses (a cube in 45-degree steps) gives about 0; a frozen one
    has no motion at all (returns 0).
    """
    f = frames.float()
    d1 = (torch.roll(f, -1, 0) - f).abs().mean()
    d2 = (torch.roll(f, -2, 0) - f).abs().mean()
    return float(d2 / d1) if float(d1) > 0 else 0.0
