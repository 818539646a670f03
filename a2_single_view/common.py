"""Flags, data plumbing and visualisations shared by the Assignment 2 scripts."""

from __future__ import annotations

import argparse
import math
from typing import List, Optional

import torch
import torch.nn.functional as F

from l3d.io import label_image
from l3d.ops import sample_points_from_meshes
from l3d.structures import Meshes
from l3d.viz import apply_colormap, render_mesh_turntable, render_points_turntable, with_vertex_colors

from .data import CLASS_SETS, SYNSETS, DataChoice, choose_data
from .voxelize import grid_to_mesh

PRED_COLOUR = (0.45, 0.6, 1.0)
POINT_COLOUR = (0.15, 0.35, 0.9)
GT_COLOUR = (0.75, 0.75, 0.75)


# ----------------------------------------------------------------------------------------------
# flags
# ----------------------------------------------------------------------------------------------
def add_data_flags(ap: argparse.ArgumentParser) -> None:
    """``--data --data_root --split_file --preset --classes``."""
    g = ap.add_argument_group("data")
    g.add_argument("--data", choices=["auto", "real", "synthetic"], default="auto",
                   help="auto: the real R2N2 set when its split file exists, else the procedural stand-in")
    g.add_argument("--data_root", default=None,
                   help="data set root in the R2N2 layout (default: $L3D_DATA/a2 for real data, "
                        "output/.cache/a2_synthetic for the stand-in, generated there on first use)")
    g.add_argument("--split_file", default=None,
                   help="split JSON {split: {synset: {model_id: [views]}}} (default: <root>/split_r2n2.json, "
                        "or the stand-in preset's split file)")
    g.add_argument("--preset", choices=["tiny", "standard"], default=None,
                   help="size of the procedural stand-in (default: standard; tiny with --quick)")
    g.add_argument("--classes", default="chair",
                   help="'chair', '3c' (chair, car, airplane) or a comma-separated list of class names/synsets")
    g.add_argument("--data_seed", type=int, default=0, help="seed of the procedural stand-in")


def class_names(spec: str) -> tuple:
    if spec in CLASS_SETS:
        return CLASS_SETS[spec]
    names = tuple(s.strip() for s in spec.split(",") if s.strip())
    bad = [n for n in names if n not in SYNSETS and n not in SYNSETS.values()]
    if not names or bad:
        raise ValueError(f"--classes must be 'chair', '3c' or class names among {sorted(SYNSETS)}, got {spec!r}")
    return names


def resolve_data(args: argparse.Namespace) -> DataChoice:
    """Apply the data flags: sets ``args.class_names`` and returns the data choice."""
    args.class_names = class_names(args.classes)
    preset = args.preset or ("tiny" if args.quick else "standard")
    args.preset = preset
    return choose_data(args.data, args.data_root, args.split_file, preset, args.data_seed)


def to_device(batch: dict, device: torch.device) -> dict:
    """Move the tensors (and lists of tensors) of a collated batch to ``device``."""
    out = {}
    for k, v in batch.items():
        if torch.is_tensor(v):
            out[k] = v.to(device, non_blocking=True)
        elif isinstance(v, list) and v and torch.is_tensor(v[0]):
            out[k] = [t.to(device) for t in v]
        else:
            out[k] = v
    return out


def gt_meshes(batch: dict) -> Meshes:
    return Meshes(batch["verts"], batch["faces"])


def gt_points(batch: dict, n_points: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(B, n_points, 3) points sampled on the batch's ground-truth meshes."""
    return sample_points_from_meshes(gt_meshes(batch), n_points, generator=generator)


def occupancy_queries(voxels: torch.Tensor, n_queries: int, generator: Optional[torch.Generator] = None):
    """Training queries of the implicit decoder and their labels.

    Half of the queries are uniform in [-0.5, 0.5]^3 (voxel frame), half uniform inside cells on
    either side of the ground-truth surface (cells whose 3x3x3 neighbourhood holds both solid and
    empty cells). A query's label is the occupancy of the cell holding it.

    Args:
        voxels: (B, 1, D, D, D) [Z, Y, X] ground-truth grids.
    Returns:
        queries (B, Q, 3) and labels (B, Q) in {0, 1}.
    """
    b, _, d = voxels.shape[:3]
    dev, dt = voxels.device, voxels.dtype
    n_near = n_queries // 2
    uni = torch.rand(b, n_queries - n_near, 3, generator=generator, device=dev, dtype=dt) - 0.5
    v = voxels.to(dt)
    near_mask = (F.max_pool3d(v, 3, 1, 1) - (-F.max_pool3d(-v, 3, 1, 1))) > 0  # (B, 1, D, D, D)
    w = near_mask.reshape(b, -1).to(dt) + 1e-6  # every item has at least some weight
    cell = torch.multinomial(w, n_near, replacement=True, generator=generator)  # (B, n_near) flat k*D*D + j*D + i
    k, j, i = cell // (d * d), (cell // d) % d, cell % d
    jit = torch.rand(b, n_near, 3, generator=generator, device=dev, dtype=dt)
    near = (torch.stack([i, j, k], -1).to(dt) + jit) / d - 0.5  # (B, n_near, 3) x, y, z
    q = torch.cat([uni, near], 1)  # (B, Q, 3)
    idx = ((q + 0.5) * d).floor().long().clamp(0, d - 1)  # (B, Q, 3) cell (i, j, k)
    flat = (idx[..., 2] * d + idx[..., 1]) * d + idx[..., 0]
    labels = v.reshape(b, -1).gather(1, flat)
    return q, labels


# ----------------------------------------------------------------------------------------------
# visualisation
# ----------------------------------------------------------------------------------------------
def view_azimuth(R: torch.Tensor, T: torch.Tensor) -> float:
    """Look-at azimuth (degrees, l3d convention) of the camera R (3, 3), T (3,): turntables start
    at the input view."""
    c = -(T[None] @ R.transpose(-1, -2))[0]  # (3,) camera centre
    return math.degrees(math.atan2(float(c[0]), float(c[2])))


def render_kind(kind: str, pred, num_frames: int = 12, image_size: int = 160, azim: float = 0.0,
                colors: Optional[torch.Tensor] = None, dist: float = 1.3, elev: float = 25.0) -> torch.Tensor:
    """(T, H, W, 3) turntable of one prediction.

    Args:
        kind: "vox"/"implicit" (pred: (D, D, D) or (1, D, D, D) probabilities), "point" (pred:
            (P, 3)), "mesh" (pred: (V, 3) verts and (F, 3) faces as a tuple).
        colors: optional (P, 3) point colours.
    """
    kw = dict(num_frames=num_frames, dist=dist, elev=elev, image_size=image_size, azim_start=azim)
    if kind in ("vox", "implicit"):
        g = pred[0] if pred.dim() == 4 else pred
        v, f = grid_to_mesh(g.detach().float().cpu(), 0.5, half_cell=True)
        if f.shape[0] == 0:
            blank = torch.ones(num_frames, image_size, image_size, 3)
            return torch.stack([label_image(x, "empty prediction", (5, 5), (200, 0, 0)) for x in blank])
        return render_mesh_turntable(with_vertex_colors(Meshes([v], [f]), PRED_COLOUR), **kw)
    if kind == "point":
        p = pred.detach().float().cpu()
        c = torch.tensor(POINT_COLOUR).expand_as(p) if colors is None else colors.detach().float().cpu()
        return render_points_turntable(p, c, radius=0.02, **kw)
    if kind == "mesh":
        v, f = pred
        return render_mesh_turntable(with_vertex_colors(Meshes([v.detach().float().cpu()], [f.cpu()]), PRED_COLOUR), **kw)
    raise ValueError(f"unknown kind {kind!r}")


def render_gt(verts: torch.Tensor, faces: torch.Tensor, num_frames: int = 12, image_size: int = 160,
              azim: float = 0.0, dist: float = 1.3, elev: float = 25.0) -> torch.Tensor:
    """(T, H, W, 3) turntable of a ground-truth mesh (grey)."""
    mesh = with_vertex_colors(Meshes([verts.detach().float().cpu()], [faces.cpu()]), GT_COLOUR)
    return render_mesh_turntable(mesh, num_frames=num_frames, dist=dist, elev=elev, image_size=image_size,
                                 azim_start=azim)


def still(image: torch.Tensor, num_frames: int, size: int) -> torch.Tensor:
    """(T, size, size, 3): an (H, W, 3) image resized and repeated."""
    img = F.interpolate(image.permute(2, 0, 1)[None].float().cpu(), size=(size, size), mode="bilinear",
                        align_corners=False)[0].permute(1, 2, 0).clamp(0, 1)
    return img[None].expand(num_frames, -1, -1, -1)


def labelled(frames: torch.Tensor, text: str) -> torch.Tensor:
    """Frames (T, H, W, 3) with a small black label at the top left."""
    return torch.stack([label_image(f, text, (4, 2), (0, 0, 0)) for f in frames])


def triptych(image: torch.Tensor, pred_frames: torch.Tensor, gt_frames: torch.Tensor,
             pred_label: str = "prediction") -> torch.Tensor:
    """input image | predicted 3D | ground-truth mesh, as (T, H, 3W, 3) frames."""
    t, s = pred_frames.shape[0], pred_frames.shape[1]
    return torch.cat([labelled(still(image, t, s), "input"), labelled(pred_frames, pred_label),
                      labelled(gt_frames, "ground truth")], dim=2)


def error_colours(dist: torch.Tensor, vmax: Optional[float] = None) -> torch.Tensor:
    """(P, 3) colours of distances (P,): blue (small) -> red (large), matplotlib 'jet'."""
    return apply_colormap(dist, "jet", vmin=0.0, vmax=vmax)


def grid_image(images: List[torch.Tensor], cols: int) -> torch.Tensor:
    """Tile (H, W, 3) images (same size) into rows of ``cols``; missing cells are white."""
    h, w = images[0].shape[:2]
    rows = (len(images) + cols - 1) // cols
    canvas = torch.ones(rows * h, cols * w, 3)
    for n, img in enumerate(images):
        r, c = divmod(n, cols)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = img[..., :3].float().cpu()
    return canvas
