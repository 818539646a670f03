"""RGB-D pairs of part 5.1: the course's ``rgbd_data.pkl`` (read without PyTorch3D) or a stand-in.

The pickle holds two views of a CO3D plant: ``rgb1/2`` (H, W, 3), ``mask1/2`` (H, W), ``depth1/2``
(H, W) and ``cameras1/2`` (PyTorch3D ``PerspectiveCameras`` in NDC). :func:`load_rgbd_pickle`
maps the cameras to :class:`l3d.cameras.PerspectiveCameras` and checks every array, so a damaged
or foreign file stops with one line naming the file and the key. :func:`synthetic_rgbd_pair`
renders the same layout from the cow (or the procedural stand-in) when the course file is absent.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import Optional, Union

import torch

from l3d.data import data_root, load_mesh_or_standin
from l3d.errors import user_error

PathLike = Union[str, os.PathLike]

COURSE_RGBD = "a1/rgbd_data.pkl"  # relative to the data root
SYNTHETIC = "synthetic"  # the --data_path value that forces the stand-in
KEYS = ("rgb1", "mask1", "depth1", "cameras1", "rgb2", "mask2", "depth2", "cameras2")


class _ForeignObject:
    """Stands in for any pickled PyTorch3D object: keeps its attributes, needs no PyTorch3D."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, tuple):  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.__dict__.update(state)


def _load_foreign_pickle(f):
    """Unpickle, mapping every ``pytorch3d.*`` class to :class:`_ForeignObject`."""

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if module.split(".")[0] == "pytorch3d":
                return _ForeignObject
            return super().find_class(module, name)

    return Unpickler(f).load()


def _camera_from_foreign(obj, device, where: str):
    """A :class:`l3d.cameras.PerspectiveCameras` from a pickled PyTorch3D camera (NDC intrinsics)."""
    from l3d.cameras import PerspectiveCameras

    d = dict(getattr(obj, "__dict__", {}) or {})
    params = {**d.get("_parameters", {}), **d.get("_buffers", {}), **d}
    missing = [k for k in ("R", "T", "focal_length", "principal_point") if k not in params]
    if missing:
        raise user_error(where, "a PyTorch3D camera with R, T, focal_length and principal_point",
                         f"{type(obj).__name__} without {', '.join(missing)}")
    try:
        R, T, f, p = (torch.as_tensor(params[k], dtype=torch.float32, device=device)
                      for k in ("R", "T", "focal_length", "principal_point"))
    except (TypeError, ValueError, RuntimeError) as err:
        raise user_error(where, "numeric camera parameters", f"{type(err).__name__}: {err}") from None
    for name, t, shape in (("R", R, (1, 3, 3)), ("T", T, (1, 3))):
        if tuple(t.shape) != shape:
            raise user_error(f"{where}.{name}", f"shape {shape}", tuple(t.shape))
    for name, t in (("R", R), ("T", T), ("focal_length", f), ("principal_point", p)):
        if not bool(torch.isfinite(t).all()):
            raise user_error(f"{where}.{name}", "finite values", "nan or inf")
    return PerspectiveCameras(focal_length=f, principal_point=p, R=R, T=T)


def _array(raw: dict, key: str, path: Path, device) -> torch.Tensor:
    try:
        return torch.as_tensor(raw[key], dtype=torch.float32, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise user_error(f"{path} [{key}]", "a numeric array", f"{type(raw[key]).__name__} ({err})") from None


def load_rgbd_pickle(path: PathLike, device="cpu") -> dict:
    """The course's ``rgbd_data.pkl`` without PyTorch3D installed.

    Returns a dict with ``rgb1/2`` (H, W, 3), ``mask1/2`` (H, W), ``depth1/2`` (H, W) float tensors
    and ``cameras1/2`` as :class:`l3d.cameras.PerspectiveCameras`, plus ``source = "course"``.
    Raises :class:`~l3d.errors.UserError` naming the file (and key) when the file is not such a
    pickle: damaged or truncated, a key missing, an array of the wrong shape or with NaN/inf.
    """
    path = Path(path)
    with open(path, "rb") as f:
        try:
            raw = _load_foreign_pickle(f)
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError,
                ValueError, UnicodeDecodeError) as err:
            raise user_error(path, "an RGB-D pickle like the course's rgbd_data.pkl",
                             f"a damaged or foreign file ({type(err).__name__}: {err})") from None
    if not isinstance(raw, dict):
        raise user_error(path, "a pickled dict with keys " + ", ".join(KEYS), type(raw).__name__)
    missing = [k for k in KEYS if k not in raw]
    if missing:
        raise user_error(path, "a pickled dict with keys " + ", ".join(KEYS), "no " + ", ".join(missing))
    out = {"source": "course"}
    for i in (1, 2):
        rgb, mask, depth = (_array(raw, f"{k}{i}", path, device) for k in ("rgb", "mask", "depth"))
        if depth.dim() != 2:
            raise user_error(f"{path} [depth{i}]", "an (H, W) depth map", f"shape {tuple(depth.shape)}")
        h, w = depth.shape
        if tuple(mask.shape) != (h, w):
            raise user_error(f"{path} [mask{i}]", f"shape ({h}, {w}) like depth{i}", f"shape {tuple(mask.shape)}")
        if tuple(rgb.shape) != (h, w, 3):
            raise user_error(f"{path} [rgb{i}]", f"shape ({h}, {w}, 3)", f"shape {tuple(rgb.shape)}")
        if not bool(torch.isfinite(mask).all()):
            raise user_error(f"{path} [mask{i}]", "finite values", "nan or inf")
        keep = mask > 0.5  # the pixels that are lifted to 3-D; the background may hold anything
        for key, t in ((f"depth{i}", depth), (f"rgb{i}", rgb)):
            if not bool(torch.isfinite(t[keep]).all()):
                raise user_error(f"{path} [{key}]", "finite values at the masked pixels", "nan or inf")
        out[f"rgb{i}"], out[f"mask{i}"], out[f"depth{i}"] = rgb, mask, depth
        out[f"cameras{i}"] = _camera_from_foreign(raw[f"cameras{i}"], device, f"{path} [cameras{i}]")
    return out


def synthetic_rgbd_pair(image_size: int = 256, device="cpu") -> dict:
    """Two RGB-D views of the cow (or the procedural mesh) rendered by l3d, in the pickle's layout.

    Cameras are NDC :class:`~l3d.cameras.PerspectiveCameras` (focal 2) at distance 3, azimuths 35
    and -50 degrees, elevation 20; depths are view-space Z, masks are the rendered coverage.
    ``source`` is ``"synthetic"`` and ``description`` says what was rendered (for labels).
    """
    from l3d.cameras import PerspectiveCameras, look_at_view_transform
    from l3d.raster import rasterize_meshes
    from l3d.shading import PointLights, shade_fragments

    course = (data_root() / "a1" / "cow.obj").exists()
    mesh = load_mesh_or_standin("a1/cow.obj", device=device, force_synthetic=not course)  # no second note
    what = "the course's cow.obj" if course else "a procedural cow-like mesh (a textured egg with four legs)"
    out = {"source": "synthetic",
           "description": f"two RGB-D views (azimuth 35 and -50 degrees, elevation 20) of {what} rendered by l3d"}
    for i, azim in ((1, 35.0), (2, -50.0)):
        R, T = look_at_view_transform(3.0, 20.0, azim, device=device)
        cam = PerspectiveCameras(focal_length=2.0, R=R, T=T)
        with torch.no_grad():
            frags = rasterize_meshes(mesh, cam, image_size)
            img = shade_fragments(mesh, frags, cam, PointLights(location=cam.get_camera_center()))
        out[f"rgb{i}"] = img[0, ..., :3].clamp(0, 1)
        out[f"mask{i}"] = img[0, ..., 3]
        out[f"depth{i}"] = frags.zbuf[0].clamp(min=0)
        out[f"cameras{i}"] = cam
    return out


def load_rgbd_pair(path: Optional[PathLike] = None, device="cpu") -> dict:
    """The RGB-D pair named by ``--data_path``.

    ``None``: the course's ``<data root>/a1/rgbd_data.pkl`` when present, else (one line on
    stderr) :func:`synthetic_rgbd_pair`; ``"synthetic"``: the stand-in; any other value: that
    pickle file, which must exist (no fallback)."""
    if path is not None and str(path) == SYNTHETIC:
        return synthetic_rgbd_pair(device=device)
    if path is not None:
        return load_rgbd_pickle(path, device)
    course = data_root() / COURSE_RGBD
    if not course.exists():
        print(f"{course} not found; using a stand-in: two RGB-D views of the cow (or of the procedural cow-like "
              f"mesh) rendered by l3d, not the course's CO3D plant (`python -m l3d.data download a1`)", file=sys.stderr)
        return synthetic_rgbd_pair(device=device)
    return load_rgbd_pickle(course, device)
