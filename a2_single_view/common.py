"""Flags, data plumbing and visualisations shared by the Assignment 2 scripts."""

from __future__ import annotations

import argparse
import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from l3d.checks import data_label
from l3d.errors import user_error
from l3d.ops import sample_points_from_meshes
from l3d.structures import Meshes
from l3d.viz import apply_colormap, render_mesh_turntable, render_points_turntable, with_vertex_colors

from .data import CLASS_SETS, PRESETS, SYNSETS, DataChoice, choose_data
from .voxelize import grid_to_mesh

PRED_COLOUR = (0.45, 0.6, 1.0)
POINT_COLOUR = (0.15, 0.35, 0.9)
GT_COLOUR = (0.75, 0.75, 0.75)


# ----------------------------------------------------------------------------------------------
# flags
# ----------------------------------------------------------------------------------------------
def add_data_flags(ap) -> None:
    """``--data --data_path --split_file --data_preset --classes --data_seed`` (the quick preset of a
    script sets ``data_preset`` to "quick")."""
    g = ap.add_argument_group("data")
    g.add_argument("--data", choices=["auto", "real", "synthetic"], default="auto",
                   help="auto: the real R2N2 set when its split file exists, else the procedural stand-in")
    ap.add_flag("data_path", aliases=("--data_root",),
                help="data set root in the R2N2 layout ('synthetic': the procedural stand-in; default: $L3D_DATA/a2 "
                     "for real data, output/.cache/a2_synthetic for the stand-in, generated there on first use)")
    g.add_argument("--split_file", default=None,
                   help="split JSON {split: {synset: {model_id: [views]}}} (default: <root>/split_r2n2.json, "
                        "or the stand-in preset's split file)")
    g.add_argument("--data_preset", "--preset", dest="data_preset", choices=sorted(PRESETS), default="standard",
                   help="size of the procedural stand-in (--quick: quick)")
    g.add_argument("--classes", default="chair",
                   help="'chair', '3c' (chair, car, airplane) or a comma-separated list of class names/synsets")
    g.add_argument("--data_seed", type=int, default=0, help="seed of the procedural stand-in")


def class_names(spec: str) -> tuple:
    if spec in CLASS_SETS:
        return CLASS_SETS[spec]
    names = tuple(s.strip() for s in spec.split(",") if s.strip())
    bad = [n for n in names if n not in SYNSETS and n not in SYNSETS.values()]
    if not names or bad:
        raise user_error("--classes", f"'chair', '3c' or class names among {sorted(SYNSETS)}", repr(spec))
    return names


def resolve_data(args: argparse.Namespace) -> DataChoice:
    """Apply the data flags: sets ``args.class_names`` and returns the data choice."""
    args.class_names = class_names(args.classes)
    data, root = args.data, args.data_path
    if root == "synthetic":
        data, root = "synthetic", None
    return choose_data(data, root, args.split_file, args.data_preset, args.data_seed)


def given_or(args: argparse.Namespace, values: dict) -> None:
    """Set ``args.<key> = value`` for every key the user did not give on the command line (a
    preset that depends on another flag, e.g. the per-type quick sizes of ``--type``)."""
    for k, v in values.items():
        if k not in args.given:
            setattr(args, k, v)


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
GT_POINT_COLOUR = (0.35, 0.35, 0.35)
TITLE_SIZE = 11  # font size (pixels) of the panel titles


def data_text(choice: DataChoice) -> str:
    """The ``"data"`` string of metrics.json: the real split, or what the stand-in is."""
    if choice.synthetic:
        return data_label(standin="procedural chairs (cars, airplanes) rendered by l3d (R2N2 not in the data root)")
    return data_label(course_file=f"a2/{choice.split_file.name}")


def view_azimuth(R: torch.Tensor, T: torch.Tensor) -> float:
    """Look-at azimuth (degrees, l3d convention) of the camera R (3, 3), T (3,): turntables start
    at the input view."""
    c = -(T[None] @ R.transpose(-1, -2))[0]  # (3,) camera centre
    return math.degrees(math.atan2(float(c[0]), float(c[2])))


def frame_distance(*point_sets: torch.Tensor, fov: float = 60.0, min_dist: float = 1.3) -> float:
    """Camera distance of a turntable (looking at the origin) that keeps every point of every
    set (P, 3) inside the view with a margin: at least ``min_dist`` (a unit-diagonal shape fills
    about two thirds of the frame), more for larger shapes, so the camera is never inside one."""
    r = max([float(p.detach().float().norm(dim=-1).max()) for p in point_sets if p.numel()] + [0.0])
    return max(min_dist, 1.15 * r / math.sin(math.radians(fov / 2)))


def kind_points(kind: str, pred) -> torch.Tensor:
    """(P, 3) points bounding one prediction as :func:`render_kind` shows it (for framing)."""
    if kind in ("vox", "implicit"):
        g = pred[0] if pred.dim() == 4 else pred
        idx = torch.nonzero(g.detach().float().cpu() > 0.5).float()  # (P, 3) [k, j, i]
        return (idx.flip(-1) + 0.5) / g.shape[-1] - 0.5
    if kind == "point":
        return pred.detach().float().cpu()
    return pred[0].detach().float().cpu()


def occupied(kind: str, pred) -> bool:
    """Whether a prediction has anything to draw (a grid with a cell above 0.5)."""
    return kind_points(kind, pred).shape[0] > 0


def render_kind(kind: str, pred, num_frames: int = 12, image_size: int = 160, azim: float = 0.0,
                colors: Optional[torch.Tensor] = None, dist: float = 1.3, elev: float = 25.0,
                colour=None) -> torch.Tensor:
    """(T, H, W, 3) turntable of one prediction (white frames when a grid is empty).

    Args:
        kind: "vox"/"implicit" (pred: (D, D, D) or (1, D, D, D) probabilities), "point" (pred:
            (P, 3)), "mesh" (pred: (V, 3) verts and (F, 3) faces as a tuple).
        colors: optional (P, 3) point colours.
        colour: one colour for the whole shape (default: the prediction colour).
    """
    kw = dict(num_frames=num_frames, dist=dist, elev=elev, image_size=image_size, azim_start=azim)
    if kind in ("vox", "implicit"):
        g = pred[0] if pred.dim() == 4 else pred
        v, f = grid_to_mesh(g.detach().float().cpu(), 0.5, half_cell=True)
        if f.shape[0] == 0:
            return torch.ones(num_frames, image_size, image_size, 3)
        return render_mesh_turntable(with_vertex_colors(Meshes([v], [f]), colour or PRED_COLOUR), **kw)
    if kind == "point":
        p = pred.detach().float().cpu()
        c = torch.tensor(colour or POINT_COLOUR).expand_as(p) if colors is None else colors.detach().float().cpu()
        return render_points_turntable(p, c, radius=0.02, **kw)
    if kind == "mesh":
        v, f = pred
        return render_mesh_turntable(with_vertex_colors(Meshes([v.detach().float().cpu()], [f.cpu()]),
                                                        colour or PRED_COLOUR), **kw)
    raise ValueError(f"unknown kind {kind!r}")


def render_gt(verts: torch.Tensor, faces: torch.Tensor, num_frames: int = 12, image_size: int = 160,
              azim: float = 0.0, dist: float = 1.3, elev: float = 25.0) -> torch.Tensor:
    """(T, H, W, 3) turntable of a ground-truth mesh (grey)."""
    mesh = with_vertex_colors(Meshes([verts.detach().float().cpu()], [faces.cpu()]), GT_COLOUR)
    return render_mesh_turntable(mesh, num_frames=num_frames, dist=dist, elev=elev, image_size=image_size,
                                 azim_start=azim)


def gt_as_kind(kind: str, sample: dict, n_points: int = 1000, generator: Optional[torch.Generator] = None):
    """The ground truth of a sample in the representation of a prediction of ``kind``: the voxel
    grid (vox, implicit; needs ``sample["voxels"]``), ``n_points`` points sampled on the mesh
    (point), the mesh (mesh)."""
    if kind in ("vox", "implicit"):
        return sample["voxels"][0]
    if kind == "point":
        mesh = Meshes([sample["verts"].float()], [sample["faces"]])
        return sample_points_from_meshes(mesh, n_points, generator=generator)[0]
    return sample["verts"], sample["faces"]


def render_gt_kind(kind: str, gt, **kw) -> torch.Tensor:
    """(T, H, W, 3) turntable of a ground truth from :func:`gt_as_kind` (grey)."""
    if kind == "mesh":
        return render_gt(gt[0], gt[1], **kw)
    return render_kind(kind, gt, colour=GT_POINT_COLOUR if kind == "point" else GT_COLOUR, **kw)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def text_strip(width: int, text: str, height: int = 16, color=(0, 0, 0), background=(1.0, 1.0, 1.0),
               size: int = TITLE_SIZE) -> torch.Tensor:
    """(height, width, 3) strip with ``text`` centred in it; the font shrinks (down to 7 px) and
    then the text is shortened with "..." so that it is never cut off at the edges."""
    from PIL import Image, ImageDraw

    bg = tuple(int(round(255 * c)) for c in background)
    font = _font(size)
    while size > 7 and font.getlength(text) > width - 4:
        size -= 1
        font = _font(size)
    while len(text) > 1 and font.getlength(text) > width - 4:
        text = text[:-2].rstrip() + "…"
    img = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    draw.text(((width - (x1 - x0)) / 2 - x0, (height - (y1 - y0)) / 2 - y0), text, fill=tuple(color), font=font)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)


def titled(frames: torch.Tensor, text: str, color=(0, 0, 0), height: int = 16) -> torch.Tensor:
    """(T, height + H, W, 3): a white title strip above the frames (T, H, W, 3), so that titles
    never cover what is drawn."""
    strip = text_strip(frames.shape[2], text, height, color)
    return torch.cat([strip[None].expand(frames.shape[0], -1, -1, -1), frames[..., :3].float().cpu()], dim=1)


def still(image: torch.Tensor, num_frames: int, size: int) -> torch.Tensor:
    """(T, size, size, 3): an (H, W, 3) image resized and repeated."""
    img = F.interpolate(image.permute(2, 0, 1)[None].float().cpu(), size=(size, size), mode="bilinear",
                        align_corners=False)[0].permute(1, 2, 0).clamp(0, 1)
    return img[None].expand(num_frames, -1, -1, -1)


def gif_fps(num_frames: int, seconds_per_turn: float = 3.0) -> float:
    """Frames per second of a turntable GIF so that one full turn lasts ``seconds_per_turn``."""
    return max(1.0, num_frames / seconds_per_turn)


def comparison(kind: str, pred, gt, image: Optional[torch.Tensor] = None, num_frames: int = 24,
               image_size: int = 128, azim: float = 0.0, pred_title: str = "prediction",
               gt_title: str = "ground truth", colors: Optional[torch.Tensor] = None,
               centre: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(T, 16 + S, n S, 3): [input image |] prediction | ground truth (in the prediction's
    representation), turning together from the input view, each panel titled above.

    Both 3-D panels use one camera distance that keeps both shapes in view.
    """
    pts = [kind_points(kind, pred), kind_points(kind, gt)]
    kw = dict(num_frames=num_frames, image_size=image_size, azim=azim, dist=frame_distance(*pts))
    if not occupied(kind, pred):
        pred_title = f"{pred_title}: empty"
    panels = []
    if image is not None:
        panels.append(titled(still(image, num_frames, image_size), "input image"))
    panels.append(titled(render_kind(kind, pred, colors=colors, **kw), pred_title))
    panels.append(titled(render_gt_kind(kind, gt, **kw), gt_title))
    return torch.cat(panels, dim=2)


def error_colours(dist: torch.Tensor, vmax: Optional[float] = None) -> torch.Tensor:
    """(P, 3) colours of distances (P,): blue (small) -> red (large), matplotlib 'jet'."""
    return apply_colormap(dist, "jet", vmin=0.0, vmax=vmax)
