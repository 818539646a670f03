"""See a mesh, point cloud, Gaussians, scene or run folder in 3D, in the browser (viser).

    python -m l3d.view PATH [--port 0] [--host 127.0.0.1]

PATH is any file or folder the project writes or reads:

* a mesh: .obj (with its MTL texture), .ply with faces (vertex colours), .glb/.gltf, .off, .stl
  (read by :func:`l3d.io.load_mesh`);
* a point cloud: a .ply without faces, a .npy of shape (N, 3) or (N, 6) (xyz + rgb), or a .npz
  with the points under ``points``/``verts``/``xyz``/``pts`` (or its first (N, 3) array) and,
  when present, colours (``colors``/``rgb``), part labels (``pred``, ``labels``, ``gt``, ``seg``:
  one layer per labelling, in the segmentation colours of A5) or values (``values``, ``sdf``,
  ``density``, ``occupancy``: a colour map);
* a voxel grid or sampled implicit field: a .npy/.npz 3-D array (an occupancy, density or SDF grid),
  shown as its level set (``--level``; marching cubes of :func:`l3d.ops.marching_cubes`);
* 3D Gaussians: a 3DGS .ply (``gaussians.ply`` of the A4 trainer), drawn as splats;
* a multi-view scene: a NeRF-synthetic / instant-ngp or COLMAP folder (:func:`l3d.scenes.read_scene`)
  or the A4 course format: every camera as a frustum with its image, and the scene's points;
* a run folder: everything of the above that it holds (mesh.ply, gaussians.ply, point clouds),
  each as a layer that the panel's scene tree shows and hides.

The viewer listens on 127.0.0.1 (``--host 0.0.0.0`` to reach it from elsewhere) on ``--port``
(0, the default: a free port), prints its URL, and runs until Ctrl-C.

For training, :class:`TrainingViewer` shows the training cameras and, while a browser is
connected, a low-resolution render from the camera the user moves, drawn in the training loop at
most every few seconds and never more than a fifth of the time (the A4 trainer's ``--viewer``).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .cli import ScriptParser, finite_float, nonneg_int, positive_float, positive_int, run_cli
from .errors import UserError, user_error

MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".off", ".stl")
CLOUD_SUFFIXES = (".npy", ".npz")
POINT_KEYS = ("points", "verts", "xyz", "pts", "positions", "point_cloud")
COLOR_KEYS = ("colors", "colours", "rgb", "point_colors")
LABEL_KEYS = ("pred", "preds", "labels", "label", "gt", "seg", "segmentation")
VALUE_KEYS = ("values", "value", "sdf", "density", "occupancy", "scalars")
GRID_KEYS = ("grid", "voxels", "volume", "occupancy", "sdf", "density")
SKIP_FOLDERS = ("checkpoints", "tensorboard")
DEFAULT_COLOR = (90, 160, 230)


@dataclass
class Layer:
    """One thing to show: ``kind`` is mesh, points, gaussians or cameras; ``data`` its arrays."""

    name: str
    kind: str
    data: Dict[str, Any]
    note: str = ""
    visible: bool = True


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
def _ply_header(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(65536)
    if not head.startswith(b"ply"):
        raise user_error(path, "a PLY file", "a file that does not start with 'ply'")
    end = head.find(b"end_header")
    if end < 0:
        raise user_error(path, "a PLY header ending in end_header", "none in the first 64 KiB")
    return head[:end].decode("ascii", "replace")


def ply_kind(path: Path) -> str:
    """``"gaussians"`` (a 3DGS .ply), ``"mesh"`` (faces) or ``"points"``, from the header."""
    header = _ply_header(path)
    props = {line.split()[-1] for line in header.splitlines() if line.startswith("property")}
    if {"f_dc_0", "opacity", "scale_0"} <= props:
        return "gaussians"
    for line in header.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "element" and parts[1] == "face" and int(parts[2]) > 0:
            return "mesh"
    return "points"


def _u8(colors: Any) -> np.ndarray:
    c = np.asarray(colors, dtype=np.float32)
    if c.size and c.max() > 1.0 + 1e-6:
        c = c / 255.0
    return (np.clip(c, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def label_colors(labels: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 colours of integer part labels: A5's segmentation colours (those of its GIFs)."""
    import torch

    try:
        from a5_pointnet.common import seg_colors

        rgb = seg_colors(torch.as_tensor(np.asarray(labels)).long()).numpy()
    except ImportError:  # the viewer without the A5 package: a matplotlib palette
        from matplotlib import colormaps

        rgb = colormaps["tab10"](np.asarray(labels).astype(int) % 10)[:, :3]
    return _u8(rgb)


def value_colors(values: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 viridis colours of values, scaled between their 1st and 99th percentiles."""
    from matplotlib import colormaps

    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    t = np.clip((np.nan_to_num(v) - lo) / max(hi - lo, 1e-12), 0, 1)
    return _u8(colormaps["viridis"](t)[:, :3])


def _decimate(n: int, limit: int, seed: int = 0) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def mesh_layer(path: Path, name: Optional[str] = None) -> Layer:
    """A mesh file as a layer: vertices, faces and colours (a UV texture or vertex colours)."""
    from .io import load_mesh
    from .structures import TexturesUV, TexturesVertex

    mesh = load_mesh(path)
    verts = mesh.verts_list()[0].detach().cpu().numpy().astype(np.float32)
    faces = mesh.faces_list()[0].detach().cpu().numpy().astype(np.int64)
    data: Dict[str, Any] = {"vertices": verts, "faces": faces}
    tex = mesh.textures
    if isinstance(tex, TexturesUV):
        # one vertex per face corner, so that seams keep their own UVs
        uvs = tex.verts_uvs_list()[0].detach().cpu().numpy()
        fuv = tex.faces_uvs_list()[0].detach().cpu().numpy()
        data = {"vertices": verts[faces].reshape(-1, 3), "faces": np.arange(3 * len(faces)).reshape(-1, 3),
                "uv": uvs[fuv].reshape(-1, 2), "texture": _u8(tex.maps[0].detach().cpu().numpy()[..., :3])}
    elif isinstance(tex, TexturesVertex):
        data["vertex_colors"] = _u8(tex.verts_features_packed().detach().cpu().numpy()[:, :3])
    note = f"{len(faces)} triangles" + (", textured" if "texture" in data else
                                        ", vertex colours" if "vertex_colors" in data else "")
    return Layer(name or path.name, "mesh", data, note)


def _points_from_ply(path: Path) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    from .io import load_ply_points

    pts, cols = load_ply_points(path)
    return pts.numpy().astype(np.float32), (None if cols is None else cols.numpy())


def _grid_layer(grid: np.ndarray, path: Path, level: Optional[float], name: str) -> Layer:
    from .ops import marching_cubes

    g = np.asarray(grid, dtype=np.float32)
    if level is None:  # a binary / occupancy grid: half way; an SDF (both signs): 0
        lo, hi = float(np.nanmin(g)), float(np.nanmax(g))
        level = 0.0 if lo < 0 < hi else 0.5 * (lo + hi)
    lo_g, hi_g = float(np.nanmin(g)), float(np.nanmax(g))
    if not lo_g < level < hi_g:
        raise user_error(path, f"a grid whose values cross the level {level:g} (--level)",
                         f"values from {lo_g:g} to {hi_g:g}")
    verts, faces = marching_cubes(g, isovalue=level)
    verts = verts.cpu().numpy().astype(np.float32)
    verts = verts / max(max(g.shape) - 1, 1) * 2.0 - 1.0  # the grid spans [-1, 1] along its longest side
    return Layer(name, "mesh", {"vertices": verts, "faces": faces.cpu().numpy().astype(np.int64)},
                 f"level set {level:g} of a {'x'.join(map(str, g.shape))} grid, {len(faces)} triangles")


def cloud_layers(path: Path, max_points: int = 300_000, level: Optional[float] = None) -> List[Layer]:
    """The layers of a .npy / .npz / point .ply: points (colours, labels, values) or a grid."""
    if path.suffix.lower() == ".ply":
        pts, cols = _points_from_ply(path)
        arrays: Dict[str, np.ndarray] = {"points": pts}
        if cols is not None:
            arrays["colors"] = cols
    else:
        try:
            loaded = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise user_error(path, "a NumPy .npy / .npz file", f"one that does not load ({exc})") from None
        arrays = {k: loaded[k] for k in loaded.files} if isinstance(loaded, np.lib.npyio.NpzFile) else {"points": loaded}
    # a 3-D grid
    grids = [k for k, a in arrays.items() if a.ndim == 3 and min(a.shape) > 2 and a.shape[-1] not in (3, 6)]
    grid_key = next((k for k in GRID_KEYS if k in grids), grids[0] if grids else None)
    pts_key = next((k for k in POINT_KEYS if k in arrays and arrays[k].ndim >= 2 and arrays[k].shape[-1] in (3, 6)),
                   next((k for k, a in arrays.items() if a.ndim == 2 and a.shape[-1] in (3, 6)), None))
    if pts_key is None and grid_key is not None:
        return [_grid_layer(arrays[grid_key], path, level, f"{path.name}:{grid_key}" if len(arrays) > 1 else path.name)]
    if pts_key is None:
        shapes = ", ".join(f"{k} {tuple(a.shape)}" for k, a in arrays.items())
        raise user_error(path, "points (N, 3) or (N, 6), or a 3-D grid", shapes or "no arrays")
    pts_all = np.asarray(arrays[pts_key], dtype=np.float32)
    if pts_all.ndim == 3:  # a batch of clouds (B, N, 3): the first one
        pts_all = pts_all[0]
    n = len(pts_all)
    keep = _decimate(n, max_points)
    pts = pts_all[keep, :3]
    if not np.isfinite(pts).all():
        raise user_error(path, "finite point positions", f"{int((~np.isfinite(pts).all(1)).sum())} points with nan/inf")
    note_n = f"{n} points" + (f" (showing {len(keep)})" if len(keep) < n else "")
    layers: List[Layer] = []

    def per_point(a: np.ndarray) -> Optional[np.ndarray]:
        a = np.asarray(a)
        if a.ndim >= 2 and a.shape[0] == 1 and a.shape[1] == n:  # (1, N, ...) batch of one
            a = a[0]
        return a[keep] if a.shape[:1] == (n,) else None

    labelled = [(k, per_point(arrays[k])) for k in LABEL_KEYS if k in arrays and k != pts_key]
    labelled = [(k, a) for k, a in labelled if a is not None and a.ndim == 1]
    for i, (k, lab) in enumerate(labelled):
        acc = ""
        if k in ("pred", "preds") and any(g in arrays for g in ("gt", "labels", "label")):
            truth = per_point(arrays[next(g for g in ("gt", "labels", "label") if g in arrays)])
            if truth is not None and truth.shape == lab.shape:
                acc = f", {100 * float((truth == lab).mean()):.1f} % equal to the truth"
        layers.append(Layer(f"{path.name}:{k}", "points", {"points": pts, "colors": label_colors(lab)},
                            f"{note_n} coloured by {k}{acc}", visible=i == 0))
    if layers:
        return layers
    colors = None
    if pts_all.shape[-1] == 6:
        colors = _u8(pts_all[keep, 3:6])
    for k in COLOR_KEYS:
        c = per_point(arrays[k]) if k in arrays else None
        if c is not None and c.ndim == 2 and c.shape[1] >= 3:
            colors = _u8(c[:, :3])
    note = note_n
    if colors is None:
        vk = next((k for k in VALUE_KEYS if k in arrays and per_point(arrays[k]) is not None), None)
        if vk is not None:
            colors, note = value_colors(per_point(arrays[vk]).reshape(len(keep), -1)[:, 0]), f"{note_n} coloured by {vk}"
    if colors is None:  # no colours: by height, so that the shape reads
        colors, note = value_colors(pts[:, 1]), f"{note_n} coloured by height"
    return [Layer(path.name, "points", {"points": pts, "colors": colors}, note)]


def gaussians_layer(path: Path, max_gaussians: int = 1_000_000) -> Layer:
    """A 3DGS .ply (A4's ``gaussians.ply``) as splats: centres, covariances, colours, opacities."""
    import torch

    from a4_gaussians_diffusion.gaussians.ply import load_gaussians_ply

    g = load_gaussians_ply(path)
    with torch.no_grad():
        keep = torch.as_tensor(_decimate(g.num_gaussians, max_gaussians))
        data = {"centers": g.means[keep].float().numpy(), "covariances": g.covariance_3d()[keep].float().numpy(),
                "rgbs": g.dc_colours()[keep].clamp(0, 1).float().numpy(),
                "opacities": g.opacities[keep].float().numpy()[:, None]}
    return Layer(path.name, "gaussians", data, f"{g.num_gaussians} Gaussians")


def cameras_layer(cameras: Any, images: Optional[Any], image_size: Sequence[int], name: str = "cameras",
                  max_cameras: int = 300, thumb: int = 96) -> Layer:
    """Frusta of l3d cameras: OpenCV poses (camera-to-world rotation, centre), vertical FoV, aspect,
    and a small thumbnail of each camera's image."""
    import torch

    from .cameras import opencv_from_cameras

    h, w = int(image_size[0]), int(image_size[1])
    with torch.no_grad():
        R, t, K = opencv_from_cameras(cameras, (h, w))
    R, t, K = R.double().cpu().numpy(), t.double().cpu().numpy(), K.double().cpu().numpy()
    keep = _decimate(len(R), max_cameras)
    c2w = np.transpose(R[keep], (0, 2, 1))
    centres = -np.einsum("bij,bj->bi", c2w, t[keep])
    fov = 2 * np.arctan(h / 2 / K[keep, 1, 1])
    data: Dict[str, Any] = {"c2w": c2w, "centres": centres, "fov": fov, "aspect": w / h}
    if images is not None:
        imgs = images[torch.as_tensor(keep)] if torch.is_tensor(images) else np.asarray(images)[keep]
        if torch.is_tensor(imgs):
            imgs = imgs.detach().float().cpu()
            s = max(1, round(max(h, w) / thumb))
            imgs = torch.nn.functional.avg_pool2d(imgs[..., :3].permute(0, 3, 1, 2), s, s).permute(0, 2, 3, 1).numpy()
        data["images"] = _u8(imgs)
    return Layer(name, "cameras", data, f"{len(R)} cameras" + (f" (showing {len(keep)})" if len(keep) < len(R) else ""))


def scene_layers(path: Path, max_points: int = 300_000) -> List[Layer]:
    """A multi-view scene folder: its cameras with their images, and its points."""
    from .scenes import detect_format, read_scene

    if detect_format(path) is not None:
        scene = read_scene(path)
        images, cameras, points, colors, size = scene.images, scene.cameras, scene.points, scene.point_colors, scene.image_size
    else:  # the A4 course format (imgs/, poses/, points/)
        from a4_gaussians_diffusion.gaussians.data import load_scene

        scene = load_scene(path)
        images, cameras, points, colors, size = scene.images, scene.cameras, scene.points, scene.point_colors, scene.image_size
    layers = [cameras_layer(cameras, images, size)]
    if points is not None and len(points):
        keep = _decimate(len(points), max_points)
        pts = points.detach().cpu().numpy()[keep].astype(np.float32)
        cols = _u8(colors.detach().cpu().numpy()[keep]) if colors is not None else value_colors(pts[:, 1])
        layers.append(Layer("points", "points", {"points": pts, "colors": cols}, f"{len(points)} scene points"))
    return layers


def _is_scene_folder(path: Path) -> bool:
    from .scenes import detect_format

    if detect_format(path) is not None:
        return True
    return (path / "poses").is_dir() and (path / "imgs").is_dir()  # the A4 course format


def file_layers(path: Path, max_points: int = 300_000, level: Optional[float] = None) -> List[Layer]:
    """The layers of one file (see the module docstring for the formats)."""
    suffix = path.suffix.lower()
    if suffix == ".ply":
        kind = ply_kind(path)
        if kind == "gaussians":
            return [gaussians_layer(path)]
        if kind == "mesh":
            return [mesh_layer(path)]
        return cloud_layers(path, max_points)
    if suffix in MESH_SUFFIXES:
        return [mesh_layer(path)]
    if suffix in CLOUD_SUFFIXES:
        return cloud_layers(path, max_points, level)
    raise user_error(path, "a mesh (.obj .ply .glb .gltf .off .stl), a point cloud or grid (.ply .npy .npz), "
                           "a 3DGS .ply, a scene folder or a run folder", f"a '{path.suffix or 'file without suffix'}' file")


def viewable_files(folder: Path, limit: int = 16) -> List[Path]:
    """The files of a run folder the viewer can show (meshes, .ply, .npy/.npz), largest folders
    skipped (checkpoints, TensorBoard logs, hidden and pending folders), at most ``limit``."""
    found = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).parts
        if any(part.startswith(".") or part in SKIP_FOLDERS for part in rel):
            continue
        if p.is_file() and p.suffix.lower() in (".ply",) + MESH_SUFFIXES + CLOUD_SUFFIXES and \
                not p.name.endswith(".mtl"):
            found.append(p)
    # meshes and Gaussians first, then the rest, in name order
    found.sort(key=lambda p: (p.suffix.lower() not in (".ply", ".obj", ".glb"), len(p.relative_to(folder).parts), str(p)))
    return found[:limit]


def layers_for(path: Any, max_points: int = 300_000, max_files: int = 16, level: Optional[float] = None) -> List[Layer]:
    """Everything to show for ``path`` (a file, a scene folder or a run folder).

    Raises:
        UserError: the path does not exist, is of an unknown kind, or holds nothing to show."""
    path = Path(path)
    if not path.exists():
        raise user_error(path, "a file or folder to view", "nothing at that path")
    if path.is_file():
        return file_layers(path, max_points, level)
    if _is_scene_folder(path):
        return scene_layers(path, max_points)
    files = viewable_files(path, max_files)
    if not files:
        raise user_error(path, "a scene folder or a run folder with meshes, point clouds or Gaussians (.ply .obj .glb "
                               ".npy .npz)", "none of them")
    layers: List[Layer] = []
    for i, f in enumerate(files):
        try:
            for layer in file_layers(f, max_points, level):
                layer.name = str(f.relative_to(path)) + (layer.name[len(f.name):] if layer.name.startswith(f.name) else "")
                layer.visible = layer.visible and not layers  # the first layer shows; the panel toggles the others
                layers.append(layer)
        except UserError as exc:  # one unreadable file does not hide the others
            print(f"note: skipping {exc}", file=sys.stderr)
    if not layers:
        raise user_error(path, "at least one readable mesh, point cloud or Gaussians file", "none")
    return layers


def preview_points(path: Any, max_points: int = 4000, seed: int = 0) -> Tuple[np.ndarray, np.ndarray, str]:
    """A small coloured point set of a mesh, point cloud or Gaussians file, for an embedded
    preview: (P, 3) float32 positions centred and scaled into the unit ball, (P, 3) uint8 colours,
    and the layer's note. Meshes are sampled uniformly over their area (colours from the texture
    or the vertex colours, else by height).

    Raises:
        UserError: as :func:`layers_for` (an unreadable file, nothing 3-D in it)."""
    layers = [la for la in layers_for(path, max_points=max_points) if la.kind in ("mesh", "points", "gaussians")]
    if not layers:
        raise user_error(path, "a mesh, point cloud or Gaussians", "only cameras")
    layer = layers[0]
    d = layer.data
    rng = np.random.default_rng(seed)
    if layer.kind == "mesh":
        v, f = d["vertices"].astype(np.float64), d["faces"]
        tri = v[f]  # (F, 3, 3)
        area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        face = rng.choice(len(f), max_points, p=area / area.sum()) if area.sum() > 0 else rng.integers(0, len(f), max_points)
        a, b = rng.random(max_points), rng.random(max_points)
        flip = a + b > 1
        a[flip], b[flip] = 1 - a[flip], 1 - b[flip]
        w = np.stack([1 - a - b, a, b], 1)[..., None]  # (P, 3, 1) barycentric weights
        pts = (tri[face] * w).sum(1)
        if "texture" in d:
            uv = (d["uv"][f[face]] * w).sum(1) % 1.0
            tex = d["texture"]
            th, tw = tex.shape[:2]
            cols = tex[((1 - uv[:, 1]) * (th - 1)).round().astype(int), (uv[:, 0] * (tw - 1)).round().astype(int)]
        elif "vertex_colors" in d:
            cols = _u8((d["vertex_colors"][f[face]].astype(np.float64) * w).sum(1) / 255.0)
        else:
            cols = value_colors(pts[:, 1])
    else:
        pts = d["points"] if layer.kind == "points" else d["centers"]
        cols = d["colors"] if layer.kind == "points" else _u8(d["rgbs"])
        keep = _decimate(len(pts), max_points, seed)
        pts, cols = np.asarray(pts, dtype=np.float64)[keep], np.asarray(cols)[keep]
    lo, hi = np.percentile(pts, 0.5, axis=0), np.percentile(pts, 99.5, axis=0)
    centre = (lo + hi) / 2
    radius = max(float(np.linalg.norm(pts - centre, axis=1).max()), 1e-9)
    return ((pts - centre) / radius).astype(np.float32), np.asarray(cols, dtype=np.uint8), layer.note


# ----------------------------------------------------------------------------------------------
# showing
# ----------------------------------------------------------------------------------------------
def _node(name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return "/" + safe


def _wxyz(rotation: np.ndarray) -> np.ndarray:
    import viser.transforms as vtf

    return vtf.SO3.from_matrix(rotation).wxyz


def add_layer(server: Any, layer: Layer, scale: float = 1.0) -> List[Any]:
    """Add ``layer`` to a viser server's scene; returns the scene handles."""
    d = layer.data
    name = _node(layer.name)
    handles: List[Any] = []
    if layer.kind == "mesh":
        if "texture" in d:
            import trimesh
            from PIL import Image

            tm = trimesh.Trimesh(d["vertices"], d["faces"], process=False,
                                 visual=trimesh.visual.TextureVisuals(uv=d["uv"], image=Image.fromarray(d["texture"])))
            handles.append(server.scene.add_mesh_trimesh(name, tm, visible=layer.visible))
        elif "vertex_colors" in d:
            import trimesh

            tm = trimesh.Trimesh(d["vertices"], d["faces"], vertex_colors=d["vertex_colors"], process=False)
            handles.append(server.scene.add_mesh_trimesh(name, tm, visible=layer.visible))
        else:
            handles.append(server.scene.add_mesh_simple(name, d["vertices"], d["faces"], color=DEFAULT_COLOR,
                                                        side="double", visible=layer.visible))
    elif layer.kind == "points":
        handles.append(server.scene.add_point_cloud(name, d["points"], d["colors"], point_size=0.008 * scale,
                                                    point_shape="circle", visible=layer.visible))
    elif layer.kind == "gaussians":
        handles.append(server.scene.add_gaussian_splats(name, d["centers"], d["covariances"], d["rgbs"],
                                                        d["opacities"], visible=layer.visible))
    elif layer.kind == "cameras":
        images = d.get("images")
        for i in range(len(d["c2w"])):
            handles.append(server.scene.add_camera_frustum(
                f"{name}/{i:04d}", fov=float(d["fov"][i]), aspect=float(d["aspect"]), scale=0.08 * scale,
                image=None if images is None else images[i], wxyz=_wxyz(d["c2w"][i]), position=d["centres"][i],
                color=(230, 120, 30), visible=layer.visible))
    else:
        raise ValueError(f"unknown layer kind {layer.kind!r}")
    return handles


def layer_extent(layers: Sequence[Layer]) -> Tuple[np.ndarray, float]:
    """Centre and radius of everything the layers hold (for the frustum size and the start view)."""
    pts = []
    for layer in layers:
        for key in ("vertices", "points", "centers", "centres"):
            if key in layer.data:
                pts.append(np.asarray(layer.data[key], dtype=np.float64).reshape(-1, 3))
    if not pts:
        return np.zeros(3), 1.0
    p = np.concatenate(pts)
    lo, hi = np.percentile(p, 1, axis=0), np.percentile(p, 99, axis=0)
    return (lo + hi) / 2, max(float(np.linalg.norm(hi - lo)) / 2, 1e-6)


def start_server(host: str = "127.0.0.1", port: int = 0, label: str = "l3d") -> Any:
    """A viser server on ``host:port`` (port 0: a free one), quiet (no banner)."""
    try:
        import viser
    except ImportError as exc:
        raise UserError(f"the viewer needs viser ({exc}); pip install -r requirements.txt") from None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # viser's banner: the caller prints the URL
            server = viser.ViserServer(host=host, port=int(port) if port else _free_port(host), label=label, verbose=False)
    except OSError as exc:
        raise UserError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    if port and server.get_port() != int(port):  # viser moves on to the next free port
        print(f"note: port {port} is in use; listening on {server.get_port()}", file=sys.stderr)
    return server


#: seconds ``python -m l3d.view`` waits for its web server to stop after Ctrl-C
STOP_TIMEOUT_S = 5.0


def stop_server(server: Any, timeout: Optional[float] = None) -> bool:
    """Stop a viser server quietly; with ``timeout``, wait at most that many seconds (closing a
    connection whose browser went away can wait for the websocket's close handshake). Returns
    whether it stopped."""
    import threading

    def stop() -> None:
        with contextlib.suppress(Exception):
            server.stop()

    with contextlib.redirect_stdout(io.StringIO()):
        if timeout is None:
            stop()
            return True
        worker = threading.Thread(target=stop, name="viser-stop", daemon=True)
        worker.start()
        worker.join(timeout)
        return not worker.is_alive()


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host if host not in ("", "0.0.0.0") else "127.0.0.1", 0))
        return int(s.getsockname()[1])


def url_of(server: Any) -> str:
    host = server.get_host()
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{server.get_port()}/"


def show(path: Any, host: str = "127.0.0.1", port: int = 0, max_points: int = 300_000, max_files: int = 16,
         level: Optional[float] = None) -> Tuple[Any, List[Layer]]:
    """Start a viewer of ``path``; returns the (running) server and the layers it shows."""
    layers = layers_for(path, max_points=max_points, max_files=max_files, level=level)
    centre, radius = layer_extent(layers)
    server = start_server(host, port, label=f"l3d.view {Path(path).name}")
    for layer in layers:
        add_layer(server, layer, scale=radius)
    server.scene.set_up_direction("+y")
    eye = centre + radius * np.array([1.2, 0.9, 2.2])

    @server.on_client_connect
    def _(client):  # start every browser looking at the whole content
        client.camera.position = eye
        client.camera.look_at = centre

    lines = "\n".join(f"  {layer.name}: {layer.note}" for layer in layers)
    server.gui.add_markdown(f"**{Path(path).name}**\n\n" + "\n\n".join(f"{layer.name}: {layer.note}" for layer in layers))
    print(f"showing {path}:\n{lines}")
    return server, layers


# ----------------------------------------------------------------------------------------------
# the training hook
# ----------------------------------------------------------------------------------------------
def opencv_pose_to_camera(wxyz: Sequence[float], position: Sequence[float], fov_y: float, image_size: Sequence[int],
                          device: Any = "cpu") -> Any:
    """An l3d :class:`~l3d.cameras.PerspectiveCameras` for a viser camera (OpenCV axes:
    camera-to-world rotation ``wxyz``, centre ``position``, vertical FoV in radians) rendering
    images of ``image_size`` (H, W)."""
    import torch
    import viser.transforms as vtf

    from .cameras import cameras_from_opencv_projection

    h, w = int(image_size[0]), int(image_size[1])
    c2w = vtf.SO3(np.asarray(wxyz, dtype=np.float64)).as_matrix()
    R = c2w.T
    t = -R @ np.asarray(position, dtype=np.float64)
    f = (h / 2) / math.tan(fov_y / 2)
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float32)[None]  # noqa: E731
    return cameras_from_opencv_projection(as_t(R), as_t(t), as_t(K), (h, w)).to(device)


class TrainingViewer:
    """A live view of a training run in the browser.

    Shows the training cameras as frusta (with their images) and, while a browser is connected,
    a render of the model from the browser's camera as the scene's background. Rendering happens
    in the training thread, in :meth:`update`, which the loop calls every step: it returns at
    once (a dictionary lookup) unless a client is connected and the last render is at least
    ``every_s`` seconds old *and* the renders took at most ``budget`` of the wall time since the
    previous one (so training keeps at least ``1 - budget`` of its speed, 80 % by default, however
    slow a render is; the first render, which carries one-off set-up work, aside). Renders are at
    most ``max_side`` pixels on their longer side (the browser scales them up). A browser starts
    just behind the first training camera, looking where it looks.

    Example::

        viewer = TrainingViewer(scene.cameras, scene.images, port=args.viewer_port)
        for step in ...:
            ...
            viewer.update(step, lambda cam, hw: model.render(cam, hw), {"loss": float(loss)})
        viewer.close()
    """

    def __init__(self, cameras: Any = None, images: Any = None, image_size: Optional[Sequence[int]] = None,
                 host: str = "127.0.0.1", port: int = 0, every_s: float = 1.0, budget: float = 0.2,
                 max_side: int = 160, label: str = "training", log: Callable[[str], None] = print):
        self.server = start_server(host, port, label=label)
        self.every_s, self.budget, self.max_side = float(every_s), float(budget), int(max_side)
        self.renders = 0
        self.render_time = 0.0
        self._next = 0.0
        self.server.scene.set_up_direction("+y")
        if cameras is not None:
            size = image_size if image_size is not None else tuple(images.shape[1:3])
            layer = cameras_layer(cameras, images, size, name="training_cameras")
            centre, radius = layer_extent([layer])
            add_layer(self.server, layer, scale=radius * 0.4)
            d = layer.data
            c2w, cam0, fov = d["c2w"][0], d["centres"][0], float(d["fov"][0])
            dist = float(np.linalg.norm(cam0 - centre))
            target = cam0 + c2w[:, 2] * dist
            eye = cam0 - c2w[:, 2] * 0.25 * dist  # a little behind it, so that its own frustum is in view

            @self.server.on_client_connect
            def _(client):  # a browser starts behind the first training camera, looking where it looks
                client.camera.up_direction = -c2w[:, 1]
                client.camera.position = eye
                client.camera.look_at = target
                client.camera.fov = fov
        self._status = self.server.gui.add_markdown("waiting for the first step")
        self.url = url_of(self.server)
        log(f"viewer: {self.url} (renders while a browser is connected, at most every {self.every_s:g} s)")

    @property
    def connected(self) -> int:
        return len(self.server.get_clients())

    def update(self, step: int, render_fn: Callable[[Any, Tuple[int, int]], Any],
               scalars: Optional[Dict[str, float]] = None, force: bool = False) -> bool:
        """Draw a render for every connected browser when due; returns whether it rendered.

        ``render_fn(camera, (H, W))`` returns an (H, W, 3) image in [0, 1] (tensor or array)."""
        clients = self.server.get_clients()
        now = time.perf_counter()
        if not clients or (now < self._next and not force):
            return False
        t0 = now
        for client in list(clients.values()):
            cam = client.camera
            aspect = float(cam.aspect) if cam.aspect else 1.0
            w = self.max_side if aspect >= 1 else max(8, round(self.max_side * aspect))
            h = max(8, round(w / aspect))
            camera = opencv_pose_to_camera(cam.wxyz, cam.position, float(cam.fov), (h, w))
            img = render_fn(camera, (h, w))
            if hasattr(img, "detach"):
                img = img.detach().float().cpu().numpy()
            client.scene.set_background_image(_u8(np.asarray(img)[..., :3]), format="jpeg", jpeg_quality=85)
        cost = time.perf_counter() - t0
        self.renders += 1
        self.render_time += cost
        # next render: after every_s, and late enough that renders stay within the budget (the
        # first render, slow with one-off set-up work, does not set the pace)
        self._next = t0 + (self.every_s if self.renders == 1 else max(self.every_s, cost / max(self.budget, 1e-3)))
        text = f"step {step}" + "".join(f", {k} {float(v):.4g}" for k, v in (scalars or {}).items())
        self._status.content = text + f" (render {1000 * cost:.0f} ms)"
        return True

    def close(self) -> None:
        stop_server(self.server)

    def __enter__(self) -> "TrainingViewer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def build_parser() -> ScriptParser:
    ap = ScriptParser(prog="python -m l3d.view", description=__doc__)
    ap.add_argument("path", help="a mesh, point cloud, grid, 3DGS .ply, scene folder or run folder")
    ap.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (0.0.0.0: every interface, reachable from other machines)")
    ap.add_argument("--port", type=nonneg_int, default=0,
                    help="port to listen on (0: a free one; a port in use moves on to the next free one, with a note)")
    ap.add_argument("--max_points", type=positive_int, default=300_000,
                    help="points per cloud sent to the browser (larger clouds are subsampled)")
    ap.add_argument("--max_files", type=positive_int, default=16, help="a run folder: at most this many files")
    ap.add_argument("--level", type=finite_float, default=None,
                    help="a 3-D grid: iso-value of the surface (default 0 for an SDF, else half way)")
    ap.add_argument("--seconds", type=positive_float, default=None,
                    help="stop after this many seconds (default: run until Ctrl-C)")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    # Ctrl-C stops the server even when the shell that started it ignores SIGINT (a background job
    # of a script: its children inherit the ignored signal); SIGTERM stops it the same way
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    server, _ = show(args.path, args.host, args.port, args.max_points, args.max_files, args.level)
    print(f"viewer: {url_of(server)}  (Ctrl-C stops it)", flush=True)
    try:
        deadline = None if args.seconds is None else time.time() + args.seconds
        while deadline is None or time.time() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    except BaseException:
        stop_server(server, timeout=STOP_TIMEOUT_S)
        raise
    if not stop_server(server, timeout=STOP_TIMEOUT_S):
        # the server's threads still wait on a connection: leave without them (nothing is left to write)
        print(f"note: the web server did not stop within {STOP_TIMEOUT_S:g} s; leaving it", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    run_cli(main)
