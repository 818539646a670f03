"""Data of Assignment 3: NeRF scenes (the course's .pth + stacked .png format, or a built-in scene
rendered with l3d in exactly that format), the training box renders and the bunny point cloud.

NeRF scene format (``<name>.pth`` + ``<name>.png``)::

    <name>.pth  {'cameras': {'R' (N, 3, 3), 'T' (N, 3), 'focal_length' (N, 2), 'principal_point' (N, 2)},
                 'split': [train_idx, val_idx, test_idx]}
    <name>.png  the N RGB images stacked vertically, /255; resized bilinearly to image_size on load

The real scenes (lego, materials) are public downloads (``python -m a3_volume_surface.data download``
or ``python -m l3d.data download a3_nerf``). When they are absent,
:func:`load_nerf_scene` renders a built-in scene into the same format (cached under
``output/.cache/a3_volume_surface/scenes`` by default) and says so in one line:

* ``cow`` (stands in for ``lego`` and any other name): l3d's UV-textured procedural cow
  (:func:`l3d.data.procedural_textured_mesh`) turned z-up, diffuse lighting from a fixed world
  light (view-independent appearance);
* ``glossy_spheres`` (stands in for ``materials``): six spheres of different colours and
  glossiness under a fixed light (Phong highlights that move with the view: the view-dependent
  scene of part 4.1).

A run says which one it used in ``metrics.json["data"]`` (:func:`scene_data_label`).

Scenes in other formats (``configs/a3/nerf_blender.yaml``, ``configs/a3/nerf_colmap.yaml``):
``data.format=blender|colmap`` with ``data.path=<scene folder>`` reads a NeRF-synthetic /
instant-ngp folder or a COLMAP scene through :func:`l3d.scenes.read_scene` (RGBA composited on
``data.background``), resized to ``data.image_size`` and normalised into the frame these configs
expect (``data.normalize``: by default cameras around the origin at a mean distance of 4, world
up turned onto +z, as the built-in scenes). The scene's format, normalisation (to map outputs
back to the file's frame) and background are in :attr:`NerfScene.scene_info`.

Cameras: 100 training views on a golden-angle spiral over the upper hemisphere (elevation 8 .. 72
degrees), 10 validation and 20 test views at other positions, all at distance 4 looking at the
origin, z up, NDC focal length 2 (spec convention 6 uses the same radius and focal length for
the GIFs). Images are rendered 3x supersampled (box filter) on a black background.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from l3d.cameras import PerspectiveCameras, as_hw
from l3d.data import data_root, get_path
from l3d.errors import UserError, user_error
from l3d.structures import Meshes, TexturesVertex, interpolate_face_attributes

from .cameras import look_at_cameras

__all__ = [
    "NerfScene", "load_nerf_scene", "read_nerf_files", "write_nerf_files", "builtin_scene",
    "builtin_scene_mesh", "scene_cameras", "load_box_images", "load_bunny", "BUILTIN_SCENES", "standin_kind",
    "scene_data_label", "box_data_label", "points_data_label", "load_scene_folder", "SCENE_FORMATS",
]

# the course's NeRF scenes are registered as dataset 'a3_nerf' in l3d.data; the built-in scene
# that stands in for each of them when its files are absent
BUILTIN_SCENES = ("cow", "glossy_spheres")
STANDIN_WORDS = {"cow": "cow", "glossy_spheres": "glossy-spheres"}


#: data.format values read through l3d.scenes
SCENE_FORMATS = ("blender", "colmap")


def load_scene_folder(path: Optional[str], fmt: str, image_size: Sequence[int], background: Optional[str] = None,
                      normalize: str = "auto") -> NerfScene:
    """A NeRF-synthetic / instant-ngp folder or COLMAP scene as a :class:`NerfScene` at
    ``image_size`` (H, W), normalised into this assignment's frame (cameras at a mean distance of
    4 around the origin, up +z). ``scene_info`` holds the format, the normalisation and the
    background."""
    from l3d.scenes import read_scene

    if path in (None, "", "???"):
        raise user_error("data.path", f"the folder of the {fmt} scene (data.format={fmt})", "none")
    if not Path(path).exists():
        raise user_error(f"data.path {path}", f"a {fmt} scene folder", "no such folder")
    sc = read_scene(path, fmt, background, normalize, radius=4.0, up=(0.0, 0.0, 1.0), image_size=tuple(image_size))
    split = (list(sc.split["train"]), list(sc.split["val"]), list(sc.split["test"]))
    if not split[0] or not split[2]:
        raise user_error(f"data.path {path}", "a scene with training and test views", f"{len(split[0])} train, "
                         f"{len(split[2])} test")
    out = NerfScene(sc.images, sc.cameras, split, f"{fmt}:{Path(path)}")
    out.scene_info = sc.info()
    out.normalization = sc.normalization
    return out


def standin_kind(name: str) -> str:
    """The built-in scene used for the course scene ``name`` (or the built-in scene ``name`` itself):
    ``glossy_spheres`` for ``materials``, the ``cow`` for anything else."""
    return "glossy_spheres" if name in ("materials", "glossy_spheres") else "cow"


def _course_rel(path: Path) -> str:
    """``a3/lego.pth`` for a file of the data root, else the path as given."""
    try:
        return Path(path).resolve().relative_to(data_root().resolve()).as_posix()
    except ValueError:
        return str(path)


def scene_data_label(source: str, name: str) -> str:
    """``metrics.json["data"]`` of a run on scene ``name`` loaded from ``source`` (a
    :attr:`NerfScene.source`): ``"course: a3/lego.pth"`` or ``"stand-in: built-in cow scene ..."``."""
    from l3d.checks import data_label

    if source.startswith("file:"):
        return data_label(course_file=_course_rel(Path(source[len("file:"):])))
    fmt = source.split(":", 1)[0]
    if fmt in SCENE_FORMATS:
        words = {"blender": "NeRF-synthetic / instant-ngp folder", "colmap": "COLMAP scene"}[fmt]
        return f"scene: {words} {source.split(':', 1)[1]}"
    kind = source.split(":", 1)[-1]
    files = f"{name}.pth/{name}.png"
    have = get_path(f"a3/{name}.pth", required=False) is not None
    why = (f"chosen with data.source=builtin over the course's {files}" if have
           else f"the course's {files} are not in the data root")
    return data_label(standin=f"built-in {STANDIN_WORDS.get(kind, kind)} scene rendered by l3d ({why})")


def box_data_label(from_files: bool) -> str:
    """``metrics.json["data"]`` of part 2."""
    from l3d.checks import data_label

    if from_files:
        return data_label(course_file="a3/box_{0..3}.npy")
    return data_label(standin="box renders made here by the Q1 pipeline (centre (0.25, 0.25, 0), sides "
                              "(2, 1.5, 1.5); the course's box_{0..3}.npy are not in the data root)")


def points_data_label(source: str) -> str:
    """``metrics.json["data"]`` of part 6 from :func:`load_bunny`'s source."""
    from l3d.checks import data_label

    if source.startswith("file:"):
        return data_label(course_file=_course_rel(Path(source[len("file:"):])))
    return data_label(standin="10000 points sampled on l3d's procedural cow mesh (the course's "
                              "bunny_pointcloud.npz is not in the data root)")


@dataclass
class NerfScene:
    """A multi-view scene.

    Attributes:
        images: (N, H, W, 3) float in [0, 1].
        cameras: N cameras (NDC intrinsics).
        split: (train, val, test) lists of view indices.
        source: "file:<path>", "builtin:<kind>" (``cow`` or ``glossy_spheres``), or
            "blender:<path>" / "colmap:<path>" (:func:`load_scene_folder`).
    """

    images: torch.Tensor
    cameras: PerspectiveCameras
    split: Tuple[List[int], List[int], List[int]]
    source: str
    scene_info: Optional[Dict] = None  # scenes of other formats: format, normalisation, background
    normalization: Any = None  # their l3d.scenes.Normalization (file frame -> scene frame)

    def subset(self, which: str) -> Tuple[torch.Tensor, PerspectiveCameras]:
        idx = {"train": 0, "val": 1, "test": 2}[which]
        ids = torch.as_tensor(self.split[idx], dtype=torch.long)
        return self.images[ids], self.cameras[ids]


# ----------------------------------------------------------------------------------------------
# the file format
# ----------------------------------------------------------------------------------------------
def read_nerf_files(pth: Path, png: Path, image_size: Optional[Sequence[int]] = None) -> NerfScene:
    """Read ``<name>.pth`` / ``<name>.png``; ``image_size`` (H, W) resizes bilinearly (isotropic only)."""
    from PIL import Image

    expected = "a NeRF scene file (cameras R, T, focal_length, principal_point and a 3-way split)"
    try:
        meta = torch.load(pth, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as e:  # torch raises RuntimeError / UnpicklingError / EOFError on damaged files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise user_error(pth, expected, f"an unreadable file ({first[:160]})") from None
    try:
        cams = meta["cameras"]
        R, T = torch.as_tensor(cams["R"]).float(), torch.as_tensor(cams["T"]).float()
        f, p = torch.as_tensor(cams["focal_length"]).float(), torch.as_tensor(cams["principal_point"]).float()
        split = tuple([int(i) for i in torch.as_tensor(s).reshape(-1).tolist()] for s in meta["split"])
    except (KeyError, TypeError, RuntimeError, ValueError, IndexError) as e:
        raise user_error(pth, expected, f"a file without them ({type(e).__name__}: {e})") from None
    if len(split) != 3:
        raise user_error(pth, "a split of 3 index lists (train, val, test)", f"{len(split)} lists")
    n = R.shape[0] if R.dim() else 0
    shapes = {"R": (tuple(R.shape), (n, 3, 3)), "T": (tuple(T.shape), (n, 3)), "focal_length": (tuple(f.shape), (n, 2)),
              "principal_point": (tuple(p.shape), (n, 2))}
    for key, (got, want) in shapes.items():
        if n == 0 or got != want:
            raise user_error(f"{pth} cameras.{key}", f"shape {want if n else '(N, ...) with N > 0'}", got)
    if any(i < 0 or i >= n for ids in split for i in ids):
        raise user_error(pth, f"split indices in 0..{n - 1} (the {n} cameras)", "indices outside that range")
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the stacked image is large on purpose
    try:
        with Image.open(png) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or not an image (PIL raises OSError subclasses)
        raise user_error(png, "a complete PNG of the stacked views", f"a damaged or truncated file ({exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old
    if arr.shape[0] % n:
        raise user_error(png, f"a height that is a multiple of the {n} cameras of {pth.name}", arr.shape[0])
    images = torch.from_numpy(arr).reshape(n, arr.shape[0] // n, arr.shape[1], 3)
    if image_size is not None:
        h, w = as_hw(tuple(image_size))
        sy, sx = h / images.shape[1], w / images.shape[2]
        if abs(sy - sx) > 1e-3:
            raise user_error("data.image_size", f"the aspect ratio of the views of {png.name} "
                             f"({images.shape[2]} x {images.shape[1]}, W x H)", f"[{w}, {h}]")
        if (h, w) != tuple(images.shape[1:3]):
            images = F.interpolate(images.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                   align_corners=False).permute(0, 2, 3, 1).contiguous()
    cameras = PerspectiveCameras(focal_length=f, principal_point=p, R=R, T=T)
    return NerfScene(images.clamp(0, 1), cameras, split, f"file:{pth}")


def write_nerf_files(pth: Path, png: Path, images: torch.Tensor, cameras: PerspectiveCameras,
                     split: Sequence[Sequence[int]]) -> None:
    """Write a scene in the course format (atomically): images (N, H, W, 3) in [0, 1]."""
    from l3d.media import save_image
    from l3d.run import save_checkpoint

    n, h, w, _ = images.shape
    meta = {
        "cameras": {"R": cameras.R.detach().cpu().clone(), "T": cameras.T.detach().cpu().clone(),
                    "focal_length": cameras.focal_length.detach().cpu().clone(),
                    "principal_point": cameras.principal_point.detach().cpu().clone()},
        "split": [list(map(int, s)) for s in split],
    }
    save_image(png, images.reshape(n * h, w, 3).clamp(0, 1))
    save_checkpoint(pth, meta)


# ----------------------------------------------------------------------------------------------
# the built-in scenes
# ----------------------------------------------------------------------------------------------
def scene_cameras(n_train: int = 100, n_val: int = 10, n_test: int = 20, radius: float = 4.0,
                  focal_length: float = 2.0) -> Tuple[PerspectiveCameras, Tuple[List[int], List[int], List[int]]]:
    """Cameras of the built-in scenes (see the module docstring) and their split."""
    def spiral(n: int, offset: float) -> torch.Tensor:
        k = torch.arange(n, dtype=torch.float64)
        golden = math.pi * (3 - math.sqrt(5))
        elev = torch.deg2rad(8 + 64 * ((k + 0.5 + offset) / n % 1.0))  # elevation band
        azim = k * golden + offset * 2 * math.pi
        return torch.stack([radius * torch.cos(elev) * torch.cos(azim), radius * torch.cos(elev) * torch.sin(azim),
                            radius * torch.sin(elev)], -1)

    eyes = torch.cat([spiral(n_train, 0.0), spiral(n_val, 0.37), spiral(n_test, 0.71)], 0)
    cams = look_at_cameras(eyes.float(), focal_length, up=(0.0, 0.0, 1.0))
    ids = list(range(n_train + n_val + n_test))
    return cams, (ids[:n_train], ids[n_train:n_train + n_val], ids[n_train + n_val:])


def _cow_standin() -> Tuple[Meshes, Dict[str, torch.Tensor]]:
    """The textured object, z-up, and its material (diffuse only)."""
    from l3d.data import procedural_textured_mesh

    mesh = procedural_textured_mesh()
    v = mesh.verts_packed()
    v = 1.25 * torch.stack([v[:, 0], -v[:, 2], v[:, 1]], -1)  # y-up -> z-up (rotation about x by +90 degrees)
    mesh = Meshes([v], mesh.faces_list(), mesh.textures)
    mat = {"specular": torch.tensor(0.0), "shininess": torch.tensor(1.0)}
    return mesh, mat


def _materials_spheres() -> Tuple[Meshes, Dict[str, torch.Tensor]]:
    """Five spheres (different colours, increasingly glossy) around a sixth, larger one."""
    from l3d.ops import ico_sphere

    base = ico_sphere(3)
    sv, sf = base.verts_packed(), base.faces_packed()
    specs = [  # centre, radius, colour, specular, shininess
        ((0.0, 0.0, 0.05), 0.55, (0.85, 0.85, 0.88), 0.9, 64.0),
        ((1.0, 0.0, -0.15), 0.35, (0.85, 0.15, 0.12), 0.0, 1.0),
        ((0.31, 0.95, -0.15), 0.35, (0.15, 0.7, 0.2), 0.25, 8.0),
        ((-0.81, 0.59, -0.15), 0.35, (0.15, 0.3, 0.85), 0.5, 16.0),
        ((-0.81, -0.59, -0.15), 0.35, (0.9, 0.7, 0.15), 0.8, 32.0),
        ((0.31, -0.95, -0.15), 0.35, (0.6, 0.2, 0.7), 1.0, 128.0),
    ]
    verts, faces, colors, spec, shin = [], [], [], [], []
    offset = 0
    for c, r, col, ks, sh in specs:
        verts.append(sv * r + torch.tensor(c))
        faces.append(sf + offset)
        offset += len(sv)
        colors.append(torch.tensor(col).expand(len(sv), 3))
        spec.append(torch.full((len(sv),), ks))
        shin.append(torch.full((len(sv),), sh))
    mesh = Meshes([torch.cat(verts)], [torch.cat(faces)], TexturesVertex([torch.cat(colors)]))
    return mesh, {"specular": torch.cat(spec), "shininess": torch.cat(shin)}


def builtin_scene_mesh(name: str) -> Tuple[Meshes, Dict[str, torch.Tensor]]:
    """The true geometry (and per-vertex specular / shininess) of a built-in scene (by its kind,
    or by the course scene it stands in for, see :func:`standin_kind`)."""
    return _materials_spheres() if standin_kind(name) == "glossy_spheres" else _cow_standin()


def _shade(mesh: Meshes, mat: Dict[str, torch.Tensor], cameras: PerspectiveCameras, size: int,
           light: Sequence[float], batch: int = 10) -> torch.Tensor:
    """(C, size, size, 3) Phong renders on black with per-vertex specular/shininess."""
    from l3d.raster import rasterize_meshes
    from l3d.shading import Materials, PointLights, phong_shading

    lights = PointLights(location=tuple(light), ambient_color=(0.4, 0.4, 0.4), diffuse_color=(0.6, 0.6, 0.6),
                         specular_color=(1.0, 1.0, 1.0))
    faces = mesh.faces_packed()
    verts = mesh.verts_packed()
    corner_normals = mesh.verts_normals_packed()[faces]  # (F, 3, 3)

    def per_vertex(x, p2f, bary):
        x = x.expand(len(verts)) if x.dim() == 0 else x
        return interpolate_face_attributes(p2f, bary, x[faces][..., None])  # (Q, 1)

    out = []
    for s in range(0, len(cameras), batch):  # a few views at a time bounds memory
        cam = cameras[s:s + batch]
        frags = rasterize_meshes(mesh, cam, (size, size))
        fg = torch.nonzero(frags.mask.reshape(-1)).squeeze(1)  # (Q,) covered pixels
        p2f = frags.pix_to_face.reshape(-1)[fg]
        bary = frags.bary_coords.reshape(-1, 3)[fg]
        texels = mesh.textures.sample(mesh, p2f, bary)  # (Q, 3)
        pts = interpolate_face_attributes(p2f, bary, verts[faces])
        nrm = interpolate_face_attributes(p2f, bary, corner_normals)
        materials = Materials(specular_color=per_vertex(mat["specular"], p2f, bary).expand(-1, 3),
                              shininess=per_vertex(mat["shininess"], p2f, bary))
        centre = cam.get_camera_center()[torch.div(fg, size * size, rounding_mode="floor")]  # (Q, 3)
        col = phong_shading(pts, nrm, texels, centre, lights, materials)
        img = torch.zeros(len(cam) * size * size, 3)
        img[fg] = col.clamp(0, 1)
        out.append(img.view(len(cam), size, size, 3))
    return torch.cat(out)


def builtin_scene(name: str, image_size: Sequence[int], n_train: int = 100, n_val: int = 10, n_test: int = 20,
                  supersample: int = 3) -> Tuple[torch.Tensor, PerspectiveCameras, Tuple[List[int], ...]]:
    """Render the built-in scene ``name`` (a kind or a course scene name, see :func:`standin_kind`).

    Returns images (N, H, W, 3), cameras and the (train, val, test) split.
    """
    h, w = as_hw(tuple(image_size))
    if h != w:
        raise user_error("data.image_size", "a square [W, H] for the built-in scenes", f"[{w}, {h}]")
    cams, split = scene_cameras(n_train, n_val, n_test)
    mesh, mat = builtin_scene_mesh(name)
    light = (2.0, -3.0, 5.0)
    with torch.no_grad():
        big = _shade(mesh, mat, cams, h * supersample, light)  # (N, sH, sW, 3)
    imgs = F.avg_pool2d(big.permute(0, 3, 1, 2), supersample).permute(0, 2, 3, 1).contiguous()
    return imgs.clamp(0, 1), cams, split


def load_nerf_scene(name: str, image_size: Sequence[int], source: str = "auto",
                    cache_dir: Optional[str] = "output/.cache/a3_volume_surface/scenes", quiet: bool = False,
                    n_train: int = 100, n_val: int = 10, n_test: int = 20, supersample: int = 3) -> NerfScene:
    """A NeRF scene at ``image_size`` (H, W).

    Args:
        name: scene name (files ``<data root>/a3/<name>.pth`` and ``.png``).
        source: "auto" (the files when present, else the built-in scene), "file" (files required),
            or "builtin" (a scene of another format: :func:`load_scene_folder`).
        cache_dir: where built-in scenes are written (in the same format) and re-read; None
            renders them afresh each time.
        n_train, n_val, n_test, supersample: views and antialiasing of the built-in scene.
    """
    if source not in ("auto", "file", "builtin"):
        raise user_error("data.source", "auto, file or builtin", repr(source))
    h, w = as_hw(tuple(image_size))
    if source != "builtin":
        try:
            pth = get_path(f"a3/{name}.pth", required=source == "file")
            png = get_path(f"a3/{name}.png", required=source == "file")
        except UserError as exc:  # data.source=file and the course's files are not there
            raise user_error("data.source=file", f"a3/{name}.pth and a3/{name}.png in the data root", str(exc)) from None
        if pth is not None and png is not None:
            return read_nerf_files(pth, png, (h, w))
        if not quiet:
            print(f"{data_root() / 'a3' / (name + '.pth')} not found; using the built-in "
                  f"{STANDIN_WORDS[standin_kind(name)]} scene rendered by l3d instead "
                  f"(the course's files: `python -m a3_volume_surface.data download a3_nerf`)", file=sys.stderr)
    kind = standin_kind(name)
    if cache_dir is not None:
        base = Path(cache_dir) / f"builtin_{kind}_{h}px_{n_train}-{n_val}-{n_test}_ss{supersample}"
        pth, png = base.with_suffix(".pth"), base.with_suffix(".png")
        if pth.exists() and png.exists():
            scene = read_nerf_files(pth, png, (h, w))
            scene.source = f"builtin:{kind}"
            return scene
    images, cams, split = builtin_scene(kind, (h, w), n_train, n_val, n_test, supersample)
    if cache_dir is not None:
        write_nerf_files(pth, png, images, cams, split)
    return NerfScene(images, cams, split, f"builtin:{kind}")


# ----------------------------------------------------------------------------------------------
# box renders and the bunny
# ----------------------------------------------------------------------------------------------
def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (ValueError, OSError, EOFError) as exc:  # truncated, not a .npy, or an object array
        raise user_error(path, "a complete .npy array file", f"an unreadable one ({exc})") from None


def load_box_images(n: int = 4) -> Optional[torch.Tensor]:
    """(n, H, W, 3) ``box_i.npy`` renders (the course's are 256 x 256), or None when they are absent.

    Raises:
        UserError: a file is damaged, not an (H, W, 3) float image in [0, 1], or of another size
            than the others."""
    paths = [get_path(f"a3/box_{i}.npy", required=False) for i in range(n)]
    if any(p is None for p in paths):
        return None
    arrays = []
    for p in paths:
        a = _load_npy(p)
        if a.ndim != 3 or a.shape[-1] != 3 or min(a.shape[:2]) < 2 or not np.issubdtype(a.dtype, np.number):
            raise user_error(p, "an (H, W, 3) numeric image such as (256, 256, 3)", f"{a.dtype} {a.shape}")
        if arrays and a.shape != arrays[0].shape:
            raise user_error(p, f"the shape of {paths[0].name}, {arrays[0].shape}", a.shape)
        a = a.astype(np.float32)
        if not np.isfinite(a).all() or a.min() < -1e-3 or a.max() > 1 + 1e-3:
            raise user_error(p, "finite colours in [0, 1]",
                             f"values in [{np.nanmin(a):.3g}, {np.nanmax(a):.3g}] (NaN/inf: {int((~np.isfinite(a)).sum())})")
        arrays.append(a)
    return torch.stack([torch.from_numpy(a) for a in arrays])


def load_bunny(path: Optional[str] = None, quiet: bool = False) -> Tuple[torch.Tensor, str]:
    """(P, 3) bunny point cloud (``verts`` of ``a3/bunny_pointcloud.npz``) and its source.

    Without the file: 10000 points sampled on the built-in procedural object (one line on stderr).

    Raises:
        UserError: the file is missing (when given), damaged, has no ``verts``, or ``verts`` is not
            a non-empty, finite (N, 3) array (nothing is reshaped).
    """
    import zipfile

    p = Path(path) if path else get_path("a3/bunny_pointcloud.npz", required=False)
    if p is not None:
        if not p.is_file():
            raise user_error(f"data.point_cloud_path {p}", "an .npz file with a 'verts' array",
                             "a folder" if p.is_dir() else "no such file")
        try:
            with np.load(p, allow_pickle=False) as z:
                if "verts" not in z:
                    raise user_error(p, "an array named 'verts'", f"the arrays {sorted(z.keys())}")
                verts = np.asarray(z["verts"])
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
            raise user_error(p, "a complete .npz file", f"a damaged or truncated one ({type(exc).__name__}: "
                                                        f"{str(exc)[:120]})") from None
        if verts.ndim != 2 or verts.shape[1] != 3 or not np.issubdtype(verts.dtype, np.number):
            raise user_error(f"{p} 'verts'", "an (N, 3) array of points", f"{verts.dtype} {verts.shape}")
        if len(verts) == 0:
            raise user_error(f"{p} 'verts'", "a non-empty (N, 3) point cloud", "(0, 3): no points")
        verts = verts.astype(np.float32)
        if not np.isfinite(verts).all():
            raise user_error(f"{p} 'verts'", "finite coordinates", f"{int((~np.isfinite(verts)).any(1).sum())} points "
                                                                  "with NaN/inf")
        return torch.from_numpy(verts), f"file:{p}"
    if not quiet:
        print(f"{data_root() / 'a3' / 'bunny_pointcloud.npz'} not found; using points sampled on the built-in "
              f"procedural object (`python -m l3d.data download a3` for the bunny)", file=sys.stderr)
    from l3d.data import procedural_textured_mesh
    from l3d.ops import sample_points_from_meshes

    pts = sample_points_from_meshes(procedural_textured_mesh(), 10000, generator=torch.Generator().manual_seed(0))
    pts = pts.reshape(-1, 3) * 0.8
    return pts, "builtin:procedural_cow_points"


def main(argv=None) -> int:
    """``python -m a3_volume_surface.data list|download ...``: l3d.data's CLI with the NeRF scenes registered."""
    from l3d.data import main as l3d_main

    return l3d_main(argv)


if __name__ == "__main__":
    from l3d.cli import run_cli

    run_cli(main)
