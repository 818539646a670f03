"""Multi-view training scenes in the course's format, and the built-in rendered cow scene.

Format (the course's "truck" scene; every frame NNNNNN has one image and one pose)::

    <scene>/imgs/frameNNNNNN.jpg       RGB images, all of the same size (the course: 160 x 90),
                                       numbered from 1 (frame000001.jpg, ...) like the course's
    <scene>/poses/frameNNNNNN.npy      16 float64: R row-major (0..8, row-vector convention
                                       X_view = X_world @ R + T), T (9..11), NDC focal (12..13),
                                       NDC principal point (14..15)
    <scene>/points/points_N.npy        (N, 3) initial means (the course: points_10000.npy)
    <scene>/scene.json                 optional, not in the course's data: what the frames cannot
                                       say (``background`` RGB in [0, 1], world ``up``, ``data``)

NDC intrinsics -> screen (pixels): ``s = min(H, W) / 2``, ``f_px = f s``, principal point
``(W / 2 - p_x s, H / 2 - p_y s)``; the screen convention of :mod:`l3d.cameras`
(``u = p_x - f_x X / Z``). Test frames are ``linspace(0, N, 7).astype(int)[1:-1]`` (5 frames),
the rest are training frames.

Background. A scene's background is part of the scene: the renders are composited over it
when training and evaluating, or the Gaussians have to paint the background themselves (and
the held-out views are judged against a colour the model never draws). The course's truck is
on black and the course trains, visualises and evaluates with ``bg_colour=(0, 0, 0)``, so a
folder without ``scene.json`` is a course-format scene on black (:data:`COURSE_BACKGROUND`);
``scene.json`` records any other (the built-in scene is rendered on white). ``--background``
of the training script overrides it.

World frame. The course's scenes come from COLMAP: y points down (:data:`COURSE_UP`), and
``scene.json`` records another up vector (the built-in scene is y-up), so the turntable of a
trained model can stand the object upright.

Other formats. A NeRF-synthetic / instant-ngp folder (``transforms_{train,val,test}.json`` or
``transforms.json``) or a COLMAP scene (``sparse/0`` + ``images/``, e.g. made from photos by
``python -m l3d.prepare``) is read through :func:`l3d.scenes.read_scene` (:func:`load_scene`
tells the formats apart): cameras normalised around the origin at a mean distance of 4 (the
similarity is in ``Scene.normalization``), the format's own split (NeRF-synthetic: its test
json; COLMAP: every 8th image), RGBA composited on the format's background (NeRF-synthetic:
white; COLMAP: black), a near plane at depth 0.2 (:data:`OTHER_FORMAT_ZNEAR`), and for COLMAP
the sparse points with their colours (statistical outliers dropped,
:func:`l3d.scenes.outlier_mask`), which initialise the Gaussians' means and colours.

The built-in scene (:func:`make_builtin_scene`) renders the course cow (or the procedural
stand-in mesh when the cow is missing) with :func:`l3d.shading.render_mesh` from 100 cameras on
a spiral over the upper part of a sphere, at 128 x 128, on white, into exactly this format, with
10 000 surface points sampled on the mesh (:func:`l3d.ops.sample_points_from_meshes`) and a
``scene.json`` (background white, up +y, the data label). It is generated once into a cache
folder and reused.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from l3d.cameras import PerspectiveCameras, look_at_view_transform
from l3d.data import data_root, load_mesh_or_standin
from l3d.media import load_image
from l3d.checks import data_label
from l3d.errors import user_error
from l3d.run import atomic_folder
from l3d.scenes import parse_background  # noqa: F401  (--background, scene.json; part of this module's API)

PathLike = Union[str, os.PathLike]

#: Where the course's training scene is looked for (under the data root).
COURSE_SCENE = "a4/truck"
#: Where the built-in scene is cached (relative to the working directory).
BUILTIN_CACHE = Path("output") / ".cache" / "a4_gaussians"
#: Background of a course-format scene without ``scene.json``: the course's truck is on black.
COURSE_BACKGROUND: Tuple[float, float, float] = (0.0, 0.0, 0.0)
#: World up vector of a course-format scene (COLMAP: y down).
COURSE_UP: Tuple[float, float, float] = (0.0, -1.0, 0.0)
#: The metadata file of a scene folder (not part of the course's data).
SCENE_META = "scene.json"
_FRAME_RE = re.compile(r"^frame(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE)


@dataclass
class Scene:
    """A multi-view scene.

    Attributes:
        images: (V, H, W, 3) float32 images in [0, 1].
        cameras: V cameras with screen intrinsics (index one with ``cameras[i]``).
        points: (P, 3) initial points, or None.
        train_idx, test_idx: lists of frame indices.
        names: the V frame names (``frame000001``, ...).
        path: the scene folder.
        background: RGB in [0, 1] behind the object in the frames (the course's: black).
        up: the world's up vector (the course's: (0, -1, 0), COLMAP's y down).
        data: what the frames are, for metrics.json (``"course: a4/truck"``, ``"stand-in: ..."``).
        point_colors: (P, 3) colours of ``points`` in [0, 1] (COLMAP scenes), or None.
        normalization: for NeRF-synthetic / COLMAP scenes, the similarity from the file's frame
            (:meth:`l3d.scenes.Normalization.to_dict`).
    """

    images: torch.Tensor
    cameras: PerspectiveCameras
    points: Optional[torch.Tensor]
    train_idx: List[int]
    test_idx: List[int]
    names: List[str]
    path: Path
    background: Tuple[float, float, float] = COURSE_BACKGROUND
    up: Tuple[float, float, float] = COURSE_UP
    data: str = ""
    point_colors: Optional[torch.Tensor] = None  # (P, 3) in [0, 1] (COLMAP points), or None
    normalization: Optional[Dict[str, Any]] = None  # scenes of other formats: file frame -> this frame

    @property
    def image_size(self) -> Tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    def to(self, device) -> "Scene":
        return Scene(self.images.to(device), self.cameras.to(device),
                     None if self.points is None else self.points.to(device),
                     self.train_idx, self.test_idx, self.names, self.path, self.background, self.up, self.data,
                     None if self.point_colors is None else self.point_colors.to(device), self.normalization)


def split_indices(num_frames: int) -> Tuple[List[int], List[int]]:
    """(train, test) frame indices: test = ``linspace(0, N, 7).astype(int)[1:-1]``."""
    if num_frames < 7:
        raise ValueError(f"a scene needs at least 7 frames for the course's train/test split, got {num_frames}")
    test = [int(i) for i in np.linspace(0, num_frames, 7).astype(int)[1:-1]]
    train = [i for i in range(num_frames) if i not in set(test)]
    return train, test


def pose_to_camera(pose: np.ndarray, image_size: Tuple[int, int], device="cpu") -> PerspectiveCameras:
    """One camera with screen intrinsics from a 16-float pose of the course format."""
    p = np.asarray(pose, dtype=np.float64).reshape(-1)
    if p.shape != (16,):
        raise ValueError(f"a pose must hold 16 numbers, got {p.shape[0]}")
    return poses_to_cameras(p[None], image_size, device)


def poses_to_cameras(poses: np.ndarray, image_size: Tuple[int, int], device="cpu") -> PerspectiveCameras:
    """V cameras (screen intrinsics, float32) from (V, 16) poses of the course format."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] != 16:
        raise ValueError(f"poses must have shape (V, 16), got {poses.shape}")
    h, w = image_size
    s = min(h, w) / 2.0
    R = poses[:, :9].reshape(-1, 3, 3)
    T = poses[:, 9:12]
    f_px = poses[:, 12:14] * s
    pp = np.stack([w / 2.0 - poses[:, 14] * s, h / 2.0 - poses[:, 15] * s], -1)
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
    return PerspectiveCameras(focal_length=as_t(f_px), principal_point=as_t(pp), R=as_t(R), T=as_t(T),
                              in_ndc=False, image_size=(h, w))


def camera_to_pose(camera: PerspectiveCameras, image_size: Tuple[int, int]) -> np.ndarray:
    """(V, 16) float64 poses of the course format for V cameras (inverse of :func:`poses_to_cameras`)."""
    R = camera.R.detach().double().cpu().numpy().reshape(-1, 9)
    T = camera.T.detach().double().cpu().numpy()
    f = camera.focal_length.detach().double().cpu().numpy()
    p = camera.principal_point.detach().double().cpu().numpy()
    return np.concatenate([R, T, f, p], 1)


def read_scene_meta(folder: PathLike) -> Dict[str, Any]:
    """The scene folder's ``scene.json`` as a dict ({} when the folder has none: a course scene)."""
    p = Path(folder) / SCENE_META
    if not p.is_file():
        return {}
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise user_error(p, "readable JSON", f"an unreadable file ({exc})") from None
    if not isinstance(meta, dict):
        raise user_error(p, "a JSON object", f"a JSON {type(meta).__name__}")
    return meta


def scene_data_label(folder: PathLike, meta: Optional[Dict[str, Any]] = None) -> str:
    """What a scene folder is, for ``"data"`` in metrics.json: its ``scene.json`` says so for
    the built-in scene; the course's folder under the data root is ``course: a4/truck``."""
    meta = read_scene_meta(folder) if meta is None else meta
    if meta.get("data"):
        return str(meta["data"])
    try:
        if Path(folder).resolve() == (data_root() / COURSE_SCENE).resolve():
            return data_label(course_file=COURSE_SCENE)
    except OSError:
        pass
    return f"scene folder {Path(folder).as_posix()} (course format)"


def _points_file(folder: Path) -> Optional[Path]:
    if not folder.is_dir():
        return None
    files = sorted(folder.glob("points_*.npy"))
    if not files:
        return None
    preferred = folder / "points_10000.npy"
    return preferred if preferred.is_file() else files[-1]


def _load_npy(path: Path, expected: str) -> np.ndarray:
    """``np.load`` of a scene file; a damaged or foreign file is a :class:`UserError` naming it."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise user_error(path, expected, f"an unreadable file ({exc})") from None
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number):
        raise user_error(path, expected, f"a {type(arr).__name__} of {getattr(arr, 'dtype', '?')}")
    return arr


#: Smallest frame side: the SSIM window of the evaluation.
MIN_FRAME_SIDE = 7


#: Near plane of NeRF-synthetic / COLMAP scenes (cameras normalised to a mean distance of 4): the
#: rasteriser drops Gaussians nearer than this, as 3DGS culls at depth 0.2, so sparse points
#: beside a camera do not splat over its whole view.
OTHER_FORMAT_ZNEAR = 0.2


def load_other_format(path: PathLike, fmt: str, device="cpu", image_size: Optional[int] = None) -> Scene:
    """A NeRF-synthetic / instant-ngp folder or a COLMAP scene (module docstring) as a :class:`Scene`;
    ``image_size`` resamples the views so that their longer side has that many pixels."""
    from l3d.scenes import outlier_mask, read_scene

    sc = read_scene(path, fmt, normalize="auto", radius=4.0)
    if image_size is not None:
        h, w = sc.image_size
        k = image_size / max(h, w)
        sc = sc.resized((max(1, round(h * k)), max(1, round(w * k))))
    if min(sc.image_size) < MIN_FRAME_SIDE:
        raise user_error(path, f"frames of at least {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE} pixels (the SSIM window)",
                         f"{sc.image_size[1]}x{sc.image_size[0]}")
    if not sc.split["train"] or not sc.split["test"]:
        raise user_error(path, "a scene with training and test views", f"{len(sc.split['train'])} train, "
                         f"{len(sc.split['test'])} test")
    words = {"blender": "NeRF-synthetic / instant-ngp folder", "colmap": "COLMAP scene"}[sc.format]
    to = lambda t: None if t is None else t.to(device=device, dtype=torch.float32)  # noqa: E731
    if sc.points is not None:  # stray SfM points would start as huge Gaussians (their neighbours are far)
        keep = outlier_mask(sc.points)
        if not bool(keep.all()):
            print(f"{path}: {int((~keep).sum())} of {len(keep)} sparse points dropped as outliers "
                  f"(mean distance to their 8 nearest neighbours > mean + 3 std)", file=sys.stderr)
            sc = replace(sc, points=sc.points[keep], point_colors=sc.point_colors[keep])
    cams = sc.cameras.to(device)
    cams.znear = OTHER_FORMAT_ZNEAR  # real scenes have points next to (and behind) the cameras
    return Scene(sc.images.to(device), cams, to(sc.points), list(sc.split["train"]),
                 list(sc.split["test"]), list(sc.names), Path(path), tuple(sc.background), tuple(sc.up),
                 f"scene: {words} {Path(path).as_posix()}", to(sc.point_colors), sc.normalization.to_dict())


def load_scene(path: PathLike, device="cpu", image_size: Optional[int] = None) -> Scene:
    """Read a scene folder: the course format (module docstring), or a NeRF-synthetic /
    instant-ngp folder or COLMAP scene (:func:`load_other_format`, which ``image_size`` resizes).

    Raises:
        UserError: naming the file or folder: a missing folder, ``imgs`` or ``poses``, fewer
            than 7 frames, a frame without a pose, a damaged image or array, images of
            different sizes, malformed or non-finite poses and points, a bad ``scene.json``.
    """
    from l3d.scenes import detect_format

    root = Path(path)
    imgs_dir, poses_dir = root / "imgs", root / "poses"
    if not poses_dir.is_dir():
        fmt = detect_format(root)
        if fmt is not None:
            return load_other_format(root, fmt, device, image_size)
    for d in (root, imgs_dir, poses_dir):
        if not d.is_dir():
            raise user_error(d, f"a folder (a scene has imgs/, poses/ and points/ in {root})", "none")
    frames = sorted((p for p in imgs_dir.iterdir() if _FRAME_RE.match(p.name)), key=lambda p: p.name)
    if len(frames) < 7:
        raise user_error(imgs_dir, "at least 7 frameNNNNNN.jpg images (the course's train/test split)", len(frames))
    images, poses, names = [], [], []
    for f in frames:
        stem = f.stem
        pose_path = poses_dir / f"{stem}.npy"
        if not pose_path.is_file():
            raise user_error(pose_path, f"the pose of {f.name}", "no such file")
        img = load_image(f)  # UserError naming a damaged or truncated image
        if img.shape[-1] == 1:
            img = img.expand(-1, -1, 3)
        images.append(img[..., :3])
        pose = _load_npy(pose_path, "16 numbers (R, T, NDC focal, NDC principal point)")
        if pose.size != 16 or not np.isfinite(pose).all():
            found = f"{pose.size} numbers" if pose.size != 16 else "NaN or inf values"
            raise user_error(pose_path, "16 finite numbers (R, T, NDC focal, NDC principal point)", found)
        poses.append(pose.reshape(16).astype(np.float64))
        names.append(stem)
    sizes = {tuple(i.shape[:2]) for i in images}
    if len(sizes) != 1:
        raise user_error(imgs_dir, "frames of one size", " and ".join(f"{w}x{h}" for h, w in sorted(sizes)))
    h, w = sizes.pop()
    if min(h, w) < MIN_FRAME_SIDE:
        raise user_error(imgs_dir, f"frames of at least {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE} pixels (the SSIM window)",
                         f"{w}x{h}")
    cams = poses_to_cameras(np.stack(poses), (h, w), device)
    pts_file = _points_file(root / "points")
    points = None
    if pts_file is not None:
        arr = _load_npy(pts_file, "an (N, 3) array of points")
        if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] == 0:
            raise user_error(pts_file, "an (N, 3) array of points with N >= 1", f"shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise user_error(pts_file, "finite points", f"{int((~np.isfinite(arr)).sum())} NaN or inf values")
        points = torch.as_tensor(arr, dtype=torch.float32, device=device)
    train, test = split_indices(len(frames))
    meta_path = root / SCENE_META
    meta = read_scene_meta(root)
    background = parse_background(meta["background"], what=f"{meta_path} 'background'") \
        if "background" in meta else COURSE_BACKGROUND
    up = COURSE_UP
    if "up" in meta:
        try:
            up = tuple(float(u) for u in meta["up"])
        except (TypeError, ValueError):
            up = ()
        if len(up) != 3 or not all(np.isfinite(up)) or not any(up):
            raise user_error(meta_path, "'up': 3 finite numbers, not all zero", repr(meta["up"]))
    return Scene(torch.stack(images).to(device), cams, points, train, test, names, root, background, up,
                 scene_data_label(root, meta))


# ---------------------------------------------------------------------------------------------
# built-in scene
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuiltinSceneConfig:
    """How the built-in cow scene is rendered.

    Attributes:
        num_views: number of cameras (frames).
        image_size: (H, W).
        dist: camera distance from the cow's bounding-box centre.
        focal_ndc: NDC focal length (2.6: a 42 degree field of view across the shorter side).
        elev_range: elevations (degrees) of the first and last camera of the spiral.
        num_points: surface points written to ``points/points_<num_points>.npy``.
        light: world-space point-light position (fixed, so shading is view-consistent except
            for the small specular highlight).
        background: RGB behind the cow (recorded in ``scene.json``).
        seed: seed of the surface sampling.
    """

    num_views: int = 100
    image_size: Tuple[int, int] = (128, 128)
    dist: float = 3.5
    focal_ndc: float = 2.6
    elev_range: Tuple[float, float] = (-15.0, 65.0)
    num_points: int = 10000
    light: Tuple[float, float, float] = (1.5, 3.0, 2.0)
    background: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    seed: int = 0

    def folder_name(self, synthetic: bool) -> str:
        h, w = self.image_size
        return f"{'procedural' if synthetic else 'cow'}_{self.num_views}v_{w}x{h}"


def builtin_cameras(cfg: BuiltinSceneConfig, at: torch.Tensor) -> PerspectiveCameras:
    """The built-in scene's cameras: a golden-angle spiral of azimuths with linearly rising
    elevation, all looking at ``at`` (3,), NDC intrinsics (focal ``cfg.focal_ndc``, p = 0)."""
    n = cfg.num_views
    i = torch.arange(n, dtype=torch.float64)
    azim = (i * 137.50776405003785) % 360.0 - 180.0
    elev = cfg.elev_range[0] + (cfg.elev_range[1] - cfg.elev_range[0]) * i / max(n - 1, 1)
    R, T = look_at_view_transform(cfg.dist, elev, azim, at=at.double()[None], dtype=torch.float64)
    return PerspectiveCameras(focal_length=cfg.focal_ndc, principal_point=((0.0, 0.0),), R=R.float(), T=T.float())


def write_scene_folder(out_dir: PathLike, images: torch.Tensor, poses: np.ndarray, points: Optional[torch.Tensor],
                       meta: Optional[Dict[str, Any]] = None, quality: int = 95) -> Path:
    """Write a scene in the course's format (module docstring), atomically: into a temporary
    sibling folder, renamed into place when complete.

    Args:
        images: (V, H, W, 3) in [0, 1] -> ``imgs/frame000001.jpg`` ... (JPEG, ``quality``).
        poses: (V, 16) float64 poses of the course format -> ``poses/frame000001.npy`` ...
        points: (P, 3) -> ``points/points_<P>.npy`` (float32), or None.
        meta: written to ``scene.json`` when given (background, up, data, ...).
    Returns:
        ``out_dir``.
    """
    from PIL import Image

    out = Path(out_dir)
    if len(images) != len(poses):
        raise ValueError(f"{len(images)} images but {len(poses)} poses")
    with atomic_folder(out) as tmp:
        for sub in ("imgs", "poses", "points"):
            (tmp / sub).mkdir()
        rgb = (images[..., :3].detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        for k in range(len(rgb)):
            name = f"frame{k + 1:06d}"  # the course numbers its frames from 1
            Image.fromarray(rgb[k]).save(tmp / "imgs" / f"{name}.jpg", quality=quality)
            np.save(tmp / "poses" / f"{name}.npy", np.asarray(poses[k], dtype=np.float64))
        if points is not None:
            pts = points.detach().cpu().numpy().astype(np.float32)
            np.save(tmp / "points" / f"points_{len(pts)}.npy", pts)
        if meta is not None:
            (tmp / SCENE_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out


def builtin_data_label(synthetic: bool) -> str:
    """The ``"data"`` label of the built-in scene."""
    if synthetic:
        return data_label(standin="built-in scene of the procedural cow-like mesh rendered by l3d "
                                  "(the course's truck and a1/cow.obj are not here)")
    return data_label(standin="built-in cow scene rendered by l3d (the course's truck is not here)")


def make_builtin_scene(out_dir: PathLike, cfg: BuiltinSceneConfig = BuiltinSceneConfig(),
                       force_synthetic: bool = False) -> Path:
    """Render the cow into the course's scene format in ``out_dir`` (see
    :func:`write_scene_folder`), on ``cfg.background``, with a ``scene.json`` recording that
    background, the world's up (+y) and the data label. Returns ``out_dir``."""
    from l3d.ops import sample_points_from_meshes
    from l3d.shading import PointLights, render_mesh

    synthetic = force_synthetic or not (data_root() / "a1/cow.obj").exists()
    mesh = load_mesh_or_standin("a1/cow.obj", force_synthetic=synthetic)
    verts = mesh.verts_packed()
    at = (verts.amin(0) + verts.amax(0)) / 2
    cams = builtin_cameras(cfg, at)
    h, w = cfg.image_size
    with torch.no_grad():
        rgba = render_mesh(mesh, cams, (h, w), lights=PointLights(location=cfg.light), batch_size=10,
                           background=tuple(cfg.background))
        gen = torch.Generator().manual_seed(cfg.seed)
        points = sample_points_from_meshes(mesh, cfg.num_points, generator=gen)[0]
    meta = {"background": [float(c) for c in cfg.background], "up": [0.0, 1.0, 0.0],
            "data": builtin_data_label(synthetic),
            "description": f"{'procedural cow-like mesh' if synthetic else 'a1/cow.obj'} rendered by l3d from "
                           f"{cfg.num_views} cameras on a spiral (elevation {cfg.elev_range[0]:g} to "
                           f"{cfg.elev_range[1]:g} degrees, distance {cfg.dist:g}), {w}x{h}, point light at "
                           f"{list(cfg.light)}"}
    return write_scene_folder(out_dir, rgba[..., :3], camera_to_pose(cams, (h, w)), points, meta)


def builtin_scene_path(cfg: BuiltinSceneConfig = BuiltinSceneConfig(), force_synthetic: bool = False,
                       cache_dir: PathLike = BUILTIN_CACHE) -> Path:
    """The cached built-in scene folder, rendered on first use (and again when the cached copy
    predates its ``scene.json``)."""
    synthetic = force_synthetic or not (data_root() / "a1/cow.obj").exists()
    path = Path(cache_dir) / cfg.folder_name(synthetic)
    if not (path / "poses").is_dir() or not (path / SCENE_META).is_file():
        print(f"rendering the built-in scene into {path} (once)", file=sys.stderr)
        make_builtin_scene(path, cfg, force_synthetic=synthetic)
    return path


def resolve_scene_path(data_path: Optional[str], cfg: BuiltinSceneConfig = BuiltinSceneConfig(),
                       cache_dir: PathLike = BUILTIN_CACHE) -> Path:
    """``--data_path`` -> a scene folder.

    * ``synthetic`` (or ``builtin``): the built-in cow scene;
    * None: the course scene ``<data root>/a4/truck`` when present, else (with a one-line note)
      the built-in scene;
    * anything else: that folder (it must exist): a course-format scene, a NeRF-synthetic /
      instant-ngp folder or a COLMAP scene.
    """
    if data_path in ("synthetic", "builtin"):
        return builtin_scene_path(cfg, cache_dir=cache_dir)
    if data_path is None:
        course = data_root() / COURSE_SCENE
        if (course / "poses").is_dir():
            return course
        print(f"{course} not found; using the built-in rendered cow scene", file=sys.stderr)
        return builtin_scene_path(cfg, cache_dir=cache_dir)
    p = Path(data_path)
    if not p.is_dir():
        raise user_error(f"--data_path {p}", "a scene folder (imgs/ + poses/, transforms*.json, or a COLMAP "
                                             "sparse/0 + images/) or 'synthetic'", "no such folder")
    return p
