"""Flags and value types shared by the Gaussian scripts (training and turntable rendering).

The shared ideas (``--steps``, ``--save_every``, ``--data_path``, ``--image_size``,
``--num_frames``, ``--fps`` ...) come from :data:`l3d.cli.VOCABULARY`; this module holds what
only these scripts have: the rasteriser's flags and the value types their checks need, so a bad
value stops argparse with the flag's name before anything runs.
"""

from __future__ import annotations

import argparse

from l3d.cli import ScriptParser, finite_float, nonneg_int, positive_int


def unit_float(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    v = finite_float(text)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], found {text}")
    return v


def minus_one_or_positive(text: str) -> int:
    """argparse type: -1 (automatic) or a positive integer."""
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v != -1 and v < 1:
        raise argparse.ArgumentTypeError(f"expected -1 or a positive integer, found {text!r}")
    return v


def minus_one_or_nonneg(text: str) -> int:
    """argparse type: -1 (automatic) or an integer >= 0."""
    try:
        v = int(text)
    except ValueError:
        v = -2
    if v < -1:
        raise argparse.ArgumentTypeError(f"expected -1 or an integer >= 0, found {text!r}")
    return v


def add_raster_flags(ap: ScriptParser, gaussians_per_splat: int = -1, tile_size: int = 4, pixel_offset: float = 0.5,
                     view_rotation: str = "correct") -> None:
    """The rasteriser's flags, shared by the training and the rendering script."""
    ap.add_argument("--rasterizer", choices=["tiled", "dense"], default="tiled",
                    help="tiled (fast) or dense (the course's formulation)")
    ap.add_argument("--gaussians_per_splat", type=minus_one_or_positive, default=gaussians_per_splat,
                    help="dense rasteriser: Gaussians splatted per batch (-1 = all); the image does not depend on it")
    ap.add_argument("--tile_size", type=positive_int, default=tile_size, help="tiled rasteriser: tile edge in pixels")
    ap.add_argument("--pixel_offset", type=finite_float, default=pixel_offset,
                    help="pixels are sampled at (i + offset, j + offset): 0.5 = centres, 0 = the course's integer coordinates")
    ap.add_argument("--view_rotation", choices=["correct", "course"], default=view_rotation,
                    help="W = R^T (correct) or W = R (the course's) in the 2-D covariance")
    ap.add_argument("--num_threads", type=nonneg_int, default=0,
                    help="CPU threads for PyTorch (0 = its default); 1 is fastest on a busy machine")
