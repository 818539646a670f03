"""Data root, dataset registry, checksummed downloads and built-in procedural stand-ins.

Files live under the data root (``$L3D_DATA`` if set, else ``<repo>/data``), laid out per
assignment: ``a1/cow.obj``, ``a3/box_0.npy``, ... :data:`DATASETS` lists every file with its public
URL and (where known) its SHA-256. Scripts ask :func:`get_path` for a file, or use a loader such as
:func:`load_mesh_or_standin` that falls back to a deterministic procedural stand-in (with a one-line
note on stderr) when the real file is missing, so everything runs offline.

Command line::

    python -m l3d.data list [--root DIR] [--verify]
    python -m l3d.data download NAME|all [--root DIR] [--force] [--base-url URL] [--timeout S]

Downloads write to a temporary file in the target folder, verify the checksum and only then rename
the file into place, so a failed or interrupted download never leaves a partial file behind.
This module imports torch lazily: ``list`` and ``download`` work without loading it.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.client
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Union

from .errors import UserError
from .run import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    from .structures import Meshes

PathLike = Union[str, os.PathLike]

__all__ = [
    "DataFile", "Dataset", "DATASETS", "DownloadError", "register_dataset", "data_root",
    "dataset_of", "get_path", "sha256_of", "download", "procedural_textured_mesh",
    "load_mesh_or_standin", "main",
]

STANDIN_NOTE = "the scripts use their built-in procedural stand-ins meanwhile"


# ----------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataFile:
    """One file of a dataset.

    Attributes:
        relpath: path under the data root, POSIX style (``a1/cow.obj``).
        url: public URL, or None when the file is not published.
        sha256: expected SHA-256 (hex) or None when no checksum is recorded (then the download is
            not verified, and says so).
        optional: when the server answers HTTP 404 the file is reported as unavailable and
            skipped instead of failing the download.
    """

    relpath: str
    url: Optional[str]
    sha256: Optional[str] = None
    optional: bool = False


@dataclass(frozen=True)
class Dataset:
    """A named group of files (usually one assignment's data)."""

    name: str
    description: str
    files: Tuple[DataFile, ...]


DATASETS: Dict[str, Dataset] = {}


def register_dataset(dataset: Dataset) -> Dataset:
    """Add (or replace) a dataset in :data:`DATASETS`; returns it."""
    DATASETS[dataset.name] = dataset
    return dataset


# Public course repositories (GitHub organisation ``learning3d``), branch ``main``, ``data/`` folder.
_A1_URL = "https://raw.githubusercontent.com/learning3d/assignment1/main/data/"
_A3_URL = "https://raw.githubusercontent.com/learning3d/assignment3/main/data/"

# SHA-256 of the copies in the project's shared data folder (the public course files).
_A1 = {
    "cow.obj": "62337f06b4aa4f2eaa95f854553a02039d853365a78b0a581c26ece5691a6d99",
    "cow.mtl": "ce6398d52486f81f2c329b1683ad4fedce970471aa36e589e05c5177432db6cb",
    "cow_texture.png": "cddabbae52a666173e7953e238b88340d285044dc20b36f8ed3f1a41db534fa5",
    "cow_on_plane.obj": "b9df05d2fb3334519d53d892b95a6697f7be848a948fed34fe3dc5d67b3f88af",
    "cow_on_plane.mtl": "830c9d082cfe6a3b463a32dfb7a01a106f1e37e8e0b7a91aa35e0d33563f8cf8",
    "cow_on_plane.png": "e9ff471766e75d525ecb4773858e0238a0de93357b331ba151dcd9a23bc6b518",
    "cow_with_axis.obj": "9d1820d86a1e50c155398d3ec8a748eeab4a29a13710e54db7f9f87fe3770d98",
    "cow_with_axis.mtl": "9ac1ceda106a7871bf6734dd59fd2dc5411b587224529f69bcb7b544e4a7459b",
    "cow_with_axis.png": "d106d5706cd919bcda7acf8ce068cc4114026b7d214d07fa46bd16fbc54c13c9",
    "joint_mesh.obj": "de02fe709fa77b1b1698fa1464509fbcd6f6bf12c74346b98d7c7d6514c03df2",
    "joint_mesh.mtl": "0bf19a7c550fe5ab63efba2e0569b1704efd3c02bfc7dfb5192088d43977124f",
    "joint_mesh.png": "979df7207384b6ab82e3c15a13ea3ad02ca0255bfee61033c7da9d4bd9a4884d",
    "rgbd_data.pkl": None,  # not in the shared copy: no checksum recorded
}
_A3 = {
    "box_0.npy": "08011c219c845e84345e3a5ec669f3597820f8c088e933f623b987b6ba73a344",
    "box_1.npy": "a063cedc247bae7b3f034e1aa5c679dd8f383c099b9a11032528c5337d739fba",
    "box_2.npy": "eda39fddc4d3abfe1ac0c51254260e22d8108f09be50758119f6e3a34809ddf8",
    "box_3.npy": "9894aae2dc9d8b1186e92b36a0a44d670572ea37cab954fc571b72bcc810c427",
    "box_0.png": "4ffabcbead39e64910752bd4fdf7750a239241c713858e67ac36b0fb9a046efc",
    "box_1.png": "c2f900d77696073aaa521d5dbe78efec5d82aa85f12b02cfde970ed844de9e26",
    "box_2.png": "bfa1eadb245b139e044c7bb5695dfe39932fcb6e5915075675a4ed65b2314a2a",
    "box_3.png": "0ecd2b83c217171eaa14011c7eaa3f3c4945d0f26dfc5518cf3cb5da5dc07461",
    "bunny_pointcloud.npz": "b793f58d72907356afdfedcb77351b1f6685bb1c0c67ed48d0980a672dfde242",
}

register_dataset(Dataset(
    "a1",
    "Assignment 1 (rendering basics): the cow mesh and its variants with textures, a joint "
    "mesh, and two RGB-D views of a CO3D plant.",
    tuple(DataFile(f"a1/{n}", _A1_URL + n, s) for n, s in _A1.items()),
))
register_dataset(Dataset(
    "a3",
    "Assignment 3 (volume and surface rendering): four box renders (box_i.npy golden float "
    "renders, box_i.png previews) and the bunny point cloud.",
    tuple(
        # the .npy box renders are not listed in the course repository's data/ folder as far as
        # we could check: optional, a 404 is reported and skipped
        DataFile(f"a3/{n}", _A3_URL + n, s, optional=n.endswith(".npy"))
        for n, s in _A3.items()
    ),
))
# The course's reference renders (shown beside our outputs in the gallery, used by golden tests):
# A1 from the assignment's README images, A3 from its ta_images/ folder.
_A1_REF_URL = "https://raw.githubusercontent.com/learning3d/assignment1/main/images/"
_A3_REF_URL = "https://raw.githubusercontent.com/learning3d/assignment3/main/ta_images/"
_A1_REF = {
    "cow_mesh_axis.png": "b13e04a258a0affa8a2edb3699973040893bbd559cd1273e0469a559febb5e3a",
    "cow_render.jpg": "b02526b038bcd71caf5c020ceed65c9a76b099883c7253e3522180c61f9965e0",
    "cow_retextured.jpg": "adac48cebc4cac656f33e898d78e282ade83d28123e0953c2f3660af81cdabb7",
    "dolly.gif": "2ea8a4a333d5f3cc883fe7a0410d50b4982db2fd1cfd5435e0a4703a1340136e",
    "sphere_100.jpg": "d4905d5301be3f840b65ee4a6206fa077c9c9fcbfe88dd55bb421ae0594e5c6a",
    "sphere_1000.jpg": "01d3853395c53d6923b5ee481f17aba085e8d0b5fa2cc23aba94a90f487bf1db",
    "sphere_mesh.jpg": "3df20e39b917d530c08618b5595e5dba4881baa68e857d8ff95fa1afcf133c4e",
    "transform1.jpg": "284713922a013d5278cb0c22cbed0891f3bd3019c5853b2471d79a1ecea21f30",
    "transform2.jpg": "06ee894277a205c3488f76596a27c17fba03f7a611348106620d6650302d5f4c",
    "transform3.jpg": "2f96e4b95c904859a9d017b60da740c0ac6a7a1bbdc7c57657ceb2c5bc35dc9b",
    "transform4.jpg": "ad58797972cded489523d6528e06e07a86fdaddddd001f343ec33c48323d48ba",
    "transform_none.jpg": "bca74ebb1991a11fd2e7e6b02705182fed6cb76dd137c451d7cc4c4f17bcdf38",
}
_A3_REF = {
    "color.png": "a0f7901a272651d42289e05578717e1c6df1c70c4c9c069d27dab78c7344ff5b",
    "depth.png": "3b811902f339002c7f48ec8aca8e5b360a81e1d5a3dc694a557671eaa3335abf",
    "grid.png": "f0afd4079f23d00ca85808208263746e2b4b175acbdb25d50852b30270b5283c",
    "part_1.gif": "6208785e9219c58d976f12a355c1fab28f3f1d3230657018853acd4e09a3be42",
    "part_2.gif": "8294dfaa7df035cb42c19c3387389d3c57fe7cfea6c4bf1ff51a2bcb0fbd22cf",
    "part_5.gif": "3aa976a28474a5ced2073e97f06fc983888f82ca87a063b109cb43234e66246f",
    "part_6.gif": "8c8aeb30cc30760e976d79ad7906f1db7648ba1cc24ac13fcfd464670dacf5a6",
    "part_6_input.gif": "26faee6cc64b81a08b556370ccee6932b4767fce2d3a7316fb4a8ddd715309b8",
    "part_7.gif": "e7259d74a14234481ef78ce2c4ec27e4bc655bfad8b8a2b1898ec209193e1399",
    "part_7_geometry.gif": "07d0e35220dae7d1a6a7d423ac2e55bd95088395256e37752b441047893a7c5c",
    "rays.png": "347dc93e2f33d88a3d06686d972c1e948b7a3ddf8b09f8163f3d9f0c6482da51",
    "sample_points.png": "1973b2e6b2224106148eaf9dc9e532b8aa26a95ec4e576e68f86f57f84b3ab90",
    "transmittance.png": "cf291e15ece08447b13246eeb20c75f973236434b3ce1f8a13b1eb3e1e18e6af",
}
register_dataset(Dataset(
    "a1_reference",
    "Assignment 1 reference renders of the course (cow render, retexture, transforms, dolly zoom, "
    "spheres), shown beside the outputs in the gallery.",
    tuple(DataFile(f"a1/reference/{n}", _A1_REF_URL + n, s, optional=True) for n, s in _A1_REF.items()),
))
register_dataset(Dataset(
    "a3_reference",
    "Assignment 3 reference renders of the course (grid, rays, sample points, depth, part GIFs).",
    tuple(DataFile(f"a3/reference/{n}", _A3_REF_URL + n, s, optional=True) for n, s in _A3_REF.items()),
))
register_dataset(Dataset(
    "a3_nerf",
    "Assignment 3 NeRF scenes (lego, materials: <name>.pth cameras + split, <name>.png stacked "
    "images). Without them the scripts render a built-in scene in the same format.",
    tuple(DataFile(f"a3/{n}", _A3_URL + n, None, optional=True)
          for n in ("lego.pth", "lego.png", "materials.pth", "materials.png")),
))
register_dataset(Dataset(
    "a2",
    "Assignment 2 (single view to 3D): the R2N2 renderings and voxels and the ShapeNet meshes "
    "(several GB, licence-gated: no public URL). Put them under <data root>/a2 in the layout of "
    "a2_single_view/data.py with its split file; without them the scripts use a procedural stand-in.",
    (DataFile("a2/split_r2n2.json", None, None),),
))
register_dataset(Dataset(
    "a4",
    "Assignment 4 Q1 (Gaussian splatting): a pre-trained 3DGS chair (.ply) and the truck training "
    "scene (imgs/, poses/, points/). Distributed by the course from a shared drive (no public URL "
    "recorded): copy them to <data root>/a4/ by hand; without them built-in scenes are used.",
    (DataFile("a4/chair.ply", None, None), DataFile("a4/truck/points/points_10000.npy", None, None)),
))
register_dataset(Dataset(
    "a5",
    "Assignment 5 (PointNet): ShapeNet-derived point clouds, 10000 points each; cls: chairs, vases, "
    "lamps; seg: chairs with 6 part labels. Distributed by the course from a shared drive (no "
    "public URL recorded): copy the files to <data root>/a5/ by hand.",
    tuple(DataFile(f"a5/{task}/{kind}_{split}.npy", None, None) for task in ("cls", "seg")
          for kind in ("data", "label") for split in ("train", "test")),
))


def data_root() -> Path:
    """``$L3D_DATA`` if set (and not empty), else ``<repo>/data``."""
    env = os.environ.get("L3D_DATA")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent / "data"


def dataset_of(relpath: str) -> Optional[str]:
    """Name of the registered dataset that contains ``relpath`` (or None)."""
    rel = Path(relpath).as_posix()
    for ds in DATASETS.values():
        if any(f.relpath == rel for f in ds.files):
            return ds.name
    return None


def _download_hint(relpath: str) -> str:
    name = dataset_of(relpath)
    if name is None:
        return f"it is not part of any registered dataset (see `python -m l3d.data list`)"
    return f"run `python -m l3d.data download {name}`"


def get_path(relpath: str, required: bool = True) -> Optional[Path]:
    """The file ``<data root>/<relpath>``.

    Returns:
        The path when the file exists; None when it does not and ``required`` is False.
    Raises:
        UserError: missing and required; the message names the path and the download command.
    """
    p = data_root() / relpath
    if p.exists():
        return p
    if not required:
        return None
    raise UserError(f"{p} not found; {_download_hint(relpath)}")


# ----------------------------------------------------------------------------------------------
# downloads
# ----------------------------------------------------------------------------------------------
class DownloadError(UserError):
    """A download failed; ``str(err)`` is one line saying which URL failed and why.

    ``offline_url`` is the URL that could not be reached when the failure was the network itself
    (no route, no DNS, time-out), else None.
    """

    def __init__(self, message: str, offline_url: Optional[str] = None):
        super().__init__(message)
        self.offline_url = offline_url


class _ChecksumError(Exception):
    pass


def sha256_of(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _one_line(x: object) -> str:
    return " ".join(str(x).split())


def _fetch(url: str, target: Path, sha256: Optional[str], timeout: float) -> Tuple[int, str]:
    """Stream ``url`` into a temporary file beside ``target``, verify, then rename it into place.

    Returns (bytes, sha256 hex). Raises urllib/socket errors, or _ChecksumError (nothing written).
    """
    h = hashlib.sha256()
    size = 0
    with atomic_path(target) as tmp:  # removed again if anything below fails
        req = urllib.request.Request(url, headers={"User-Agent": "l3d-data"})
        with open(tmp, "wb") as out, urllib.request.urlopen(req, timeout=timeout) as resp:
            expected = resp.headers.get("Content-Length")
            for block in iter(lambda: resp.read(1 << 16), b""):
                out.write(block)
                h.update(block)
                size += len(block)
            # urllib's chunked read returns b"" at a premature end without raising: check the length
            if expected is not None and expected.isdigit() and size != int(expected):
                raise ConnectionError(f"transfer ended after {size} of {expected} bytes")
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise _ChecksumError(f"checksum mismatch (expected sha256 {sha256[:12]}..., got {digest[:12]}...)")
    return size, digest


def download(
    name: str,
    root: Optional[PathLike] = None,
    base_url: Optional[str] = None,
    force: bool = False,
    timeout: float = 30.0,
    quiet: bool = False,
) -> List[Path]:
    """Download the files of dataset ``name`` into the data root.

    Args:
        name: a key of :data:`DATASETS`.
        root: target data root (default :func:`data_root`); files go to ``root/<relpath>``.
        base_url: fetch ``<base_url>/<relpath>`` instead of each file's URL (a mirror of a data
            root, or a test server).
        force: download again even when a file is present with the right checksum.
        timeout: seconds per network operation.
        quiet: print nothing (else one line per file on stdout).
    Returns:
        The paths of the files now present (downloaded or already there).
    Raises:
        DownloadError: one line naming the URL that failed and why. Unreachable servers stop at
            once; HTTP errors and checksum mismatches let the other files finish first. A file
            whose checksum does not match is not written.
        ValueError: unknown dataset name.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    ds = DATASETS[name]
    root = Path(root) if root is not None else data_root()
    say = (lambda s: None) if quiet else (lambda s: print(s, flush=True))
    done: List[Path] = []
    failures: List[str] = []
    for f in ds.files:
        target = root / f.relpath
        url = f"{base_url.rstrip('/')}/{f.relpath}" if base_url else f.url
        if target.exists() and not force:
            if f.sha256 is None:
                say(f"{f.relpath}: present (no checksum recorded, skipped verification)")
                done.append(target)
                continue
            if sha256_of(target) == f.sha256:
                say(f"{f.relpath}: present, sha256 ok")
                done.append(target)
                continue
            say(f"{f.relpath}: present but its checksum differs; downloading it again")
        if url is None:
            say(f"{f.relpath}: no public URL recorded; skipped")
            continue
        try:
            size, _ = _fetch(url, target, f.sha256, timeout)
        except urllib.error.HTTPError as e:
            if f.optional and e.code == 404:
                say(f"{f.relpath}: not published at {url} (HTTP 404); skipped")
            else:
                failures.append(f"{url}: HTTP {e.code} {_one_line(e.reason)}")
            continue
        except _ChecksumError as e:
            failures.append(f"{url}: {e}; nothing written to {target}")
            continue
        except (urllib.error.URLError, http.client.HTTPException, socket.timeout, TimeoutError,
                ConnectionError) as e:
            reason = e.reason if isinstance(e, urllib.error.URLError) else e
            raise DownloadError(
                f"cannot download {url}: {_one_line(reason) or type(reason).__name__} "
                f"(offline or server unreachable); {STANDIN_NOTE}", offline_url=url,
            ) from None
        except OSError as e:  # disk errors at the target
            raise DownloadError(f"cannot write {target} (from {url}): {_one_line(e)}") from None
        check = "sha256 ok" if f.sha256 else "no checksum recorded, skipped verification"
        say(f"{f.relpath}: downloaded {size / 1024:.1f} KiB, {check}")
        done.append(target)
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise DownloadError(f"download of {name!r} failed: {failures[0]}{more}; {STANDIN_NOTE}")
    return done


# ----------------------------------------------------------------------------------------------
# procedural stand-ins
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _standin_arrays(n_lat: int = 40, n_lon: int = 80, tex_size: int = 512):
    """numpy arrays of the procedural textured mesh (see :func:`procedural_textured_mesh`)."""
    import numpy as np

    # ---- a UV sphere: poles on +-y, n_lat - 1 rings of n_lon vertices
    theta = np.pi * np.arange(1, n_lat) / n_lat  # (n_lat-1,) polar angle from +y
    phi = 2 * np.pi * np.arange(n_lon) / n_lon  # (n_lon,) longitude, 0 at -z (the front)
    st, ct = np.sin(theta)[:, None], np.cos(theta)[:, None]
    ring_dirs = np.stack(
        [st * np.sin(phi)[None], ct * np.ones_like(phi)[None], -st * np.cos(phi)[None]], -1
    ).reshape(-1, 3)  # ((n_lat-1) n_lon, 3)
    dirs = np.concatenate([[[0.0, 1.0, 0.0]], ring_dirs, [[0.0, -1.0, 0.0]]], 0)  # (V, 3) unit

    # ---- a star-shaped radius: ellipsoidal body + head (front, -z, raised) + four stubby legs.
    # Positions are R(d) d with R > 0, so the surface is embedded and keeps the sphere's winding.
    a, b, c = 0.42, 0.42, 0.78
    r = 1.0 / np.sqrt((dirs[:, 0] / a) ** 2 + (dirs[:, 1] / b) ** 2 + (dirs[:, 2] / c) ** 2)

    def bump(axis, height, sigma):
        ax = np.asarray(axis, dtype=np.float64)
        ax = ax / np.linalg.norm(ax)
        ang = np.arccos(np.clip(dirs @ ax, -1.0, 1.0))
        return height * np.exp(-0.5 * (ang / sigma) ** 2)

    r = r + bump((0.0, 0.45, -1.0), 0.26, 0.28)  # head
    for sx in (-1.0, 1.0):
        for sz in (-1.0, 1.0):
            r = r + bump((0.45 * sx, -1.0, 0.6 * sz), 0.34, 0.2)  # legs
    r = r + bump((0.0, 0.25, 1.0), 0.1, 0.12)  # tail stub at the back
    verts = (dirs * r[:, None]).astype(np.float32)  # (V, 3)

    # ---- faces (outward winding: (v1 - v0) x (v2 - v0) points away from the centre)
    top, bottom = 0, len(dirs) - 1
    ring = 1 + np.arange((n_lat - 1) * n_lon).reshape(n_lat - 1, n_lon)  # vertex ids
    j = np.arange(n_lon)
    jn = (j + 1) % n_lon
    cap_top = np.stack([np.full(n_lon, top), ring[0, jn], ring[0, j]], 1)
    cap_bot = np.stack([np.full(n_lon, bottom), ring[-1, j], ring[-1, jn]], 1)
    up, lo = ring[:-1], ring[1:]  # (n_lat-2, n_lon)
    quad_a = np.stack([up[:, j], up[:, jn], lo[:, j]], -1).reshape(-1, 3)
    quad_b = np.stack([up[:, jn], lo[:, jn], lo[:, j]], -1).reshape(-1, 3)
    faces = np.concatenate([cap_top, quad_a, quad_b, cap_bot], 0).astype(np.int64)

    # ---- uvs: an (n_lat + 1) x (n_lon + 1) grid (seam column duplicated), u = longitude, v = 1 at the top
    uu, vv = np.meshgrid(np.arange(n_lon + 1) / n_lon, 1.0 - np.arange(n_lat + 1) / n_lat)
    verts_uvs = np.stack([uu, vv], -1).reshape(-1, 2).astype(np.float32)  # (T, 2)
    uvid = np.arange((n_lat + 1) * (n_lon + 1)).reshape(n_lat + 1, n_lon + 1)
    j1 = j + 1  # seam: the uv of column n_lon is u = 1
    fu_top = np.stack([uvid[0, j], uvid[1, j1], uvid[1, j]], 1)
    fu_bot = np.stack([uvid[-1, j], uvid[-2, j], uvid[-2, j1]], 1)
    uup, ulo = uvid[1:-2], uvid[2:-1]
    fu_a = np.stack([uup[:, j], uup[:, j1], ulo[:, j]], -1).reshape(-1, 3)
    fu_b = np.stack([uup[:, j1], ulo[:, j1], ulo[:, j]], -1).reshape(-1, 3)
    faces_uvs = np.concatenate([fu_top, fu_a, fu_b, fu_bot], 0).astype(np.int64)

    # ---- texture: cream hide with dark patches, a faint checker and a pink muzzle at the front
    hh = tex_size
    tu, tv = np.meshgrid(np.linspace(0.0, 1.0, hh), 1.0 - np.linspace(0.0, 1.0, hh))  # (H, W)
    rng = np.random.default_rng(7)
    centres = rng.uniform([0.15, 0.3], [0.85, 0.8], size=(10, 2))  # (K, 2) uv of patch centres
    radii = rng.uniform(0.025, 0.05, size=10)
    du = np.abs(tu[None] - centres[:, 0, None, None])
    du = np.minimum(du, 1.0 - du)  # periodic in u
    dv = tv[None] - centres[:, 1, None, None]
    field = np.exp(-(du ** 2 + (0.5 * dv) ** 2) / (2 * radii[:, None, None] ** 2)).sum(0)  # (H, W)
    patch = np.clip((field - 0.5) * 8.0, 0.0, 1.0)[..., None]
    hide = np.array([0.95, 0.91, 0.82])
    dark = np.array([0.22, 0.16, 0.12])
    img = hide * (1 - patch) + dark * patch
    checker = ((np.floor(tu * 16) + np.floor(tv * 8)) % 2)[..., None]
    img = img * (0.94 + 0.06 * checker)
    # muzzle: around longitude 0 (front, -z), latitude of the head
    dmu = np.minimum(tu, 1.0 - tu)
    muzzle = np.exp(-((dmu / 0.05) ** 2 + ((tv - 0.57) / 0.06) ** 2))[..., None]
    img = img * (1 - muzzle) + np.array([0.93, 0.62, 0.62]) * muzzle
    tex = np.clip(img, 0.0, 1.0).astype(np.float32)  # (H, W, 3)
    return verts, faces, verts_uvs, faces_uvs, tex


def procedural_textured_mesh(device="cpu") -> "Meshes":
    """The stand-in for the course cow: a closed, friendly four-legged blob with a UV texture.

    A deformed UV sphere (40 latitude bands x 80 longitudes: V = 3122, F = 6240, T = 3321 uvs)
    that fits in [-1, 1]^3, +y up, head towards -z (like the cow), outward (counter-clockwise
    seen from outside) winding, every edge shared by exactly two faces. The texture is a
    deterministic 512 x 512 RGB image in [0, 1]: cream hide, dark patches, a faint checker and
    a pink muzzle at the front. Returns a Meshes of one item with :class:`TexturesUV`.
    """
    import torch

    from .structures import Meshes, TexturesUV

    verts, faces, verts_uvs, faces_uvs, tex = _standin_arrays()
    # torch.tensor copies: the cached arrays are never shared with the caller
    return Meshes(
        [torch.tensor(verts, device=device)],
        [torch.tensor(faces, device=device)],
        TexturesUV(
            torch.tensor(tex, device=device)[None],
            [torch.tensor(faces_uvs, device=device)],
            [torch.tensor(verts_uvs, device=device)],
        ),
    )


def load_mesh_or_standin(relpath: str = "a1/cow.obj", device="cpu", force_synthetic: bool = False) -> "Meshes":
    """Load ``<data root>/<relpath>`` with :func:`l3d.io.load_obj`, or the procedural stand-in.

    When the file is missing, one line goes to stderr::

        <path> not found; using the built-in procedural mesh (run `python -m l3d.data download a1` for the real one)

    ``force_synthetic=True`` returns the stand-in silently (the scripts' ``--data_path synthetic``).
    """
    if force_synthetic:
        return procedural_textured_mesh(device)
    path = data_root() / relpath
    if not path.exists():
        name = dataset_of(relpath) or Path(relpath).parts[0]
        print(
            f"{path} not found; using the built-in procedural mesh "
            f"(run `python -m l3d.data download {name}` for the real one)",
            file=sys.stderr,
        )
        return procedural_textured_mesh(device)
    from .io import load_obj

    return load_obj(path, device=device)


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def _cmd_list(args) -> int:
    root = Path(args.root) if args.root else data_root()
    origin = "--root" if args.root else ("$L3D_DATA" if os.environ.get("L3D_DATA") else "default")
    print(f"data root: {root} ({origin})")
    for ds in DATASETS.values():
        present = [(root / f.relpath).exists() for f in ds.files]
        print(f"\n{ds.name}: {sum(present)}/{len(ds.files)} files present - {ds.description}")
        for f, ok in zip(ds.files, present):
            state = "present" if ok else "missing"
            if ok and args.verify:
                if f.sha256 is None:
                    state = "present (no checksum)"
                elif sha256_of(root / f.relpath) == f.sha256:
                    state = "ok"
                else:
                    state = "BAD CHECKSUM"
            print(f"  {state:<22} {f.relpath}")
    print("\nfetch with: python -m l3d.data download <name>")
    return 0


# what `make demo` fetches: every dataset with public URLs
FETCH_DEFAULT = ("a1", "a1_reference", "a3", "a3_reference", "a3_nerf")


def fetch(names: Sequence[str] = FETCH_DEFAULT, root: Optional[PathLike] = None, timeout: float = 10.0,
          base_url: Optional[str] = None) -> int:
    """Best-effort download of ``names`` into the data root (what ``make demo`` runs first).

    Files already present with the right checksum are kept. Prints one line per dataset (how many
    files are present) and, when the network or the data root cannot be used, one line saying so;
    never fails: returns the number of datasets that could not be completed.
    """
    root = Path(root) if root is not None else data_root()
    incomplete = 0
    for i, name in enumerate(names):
        ds = DATASETS[name]
        try:
            download(name, root=root, timeout=timeout, quiet=True, base_url=base_url)
        except DownloadError as e:
            if e.offline_url is not None:  # one line for the whole fetch, then go on without network
                have = sum((root / f.relpath).exists() for n in names for f in DATASETS[n].files)
                host = urllib.parse.urlsplit(e.offline_url).netloc
                print(f"offline (cannot reach {host}): fetched nothing; {have} course files already in {root}, "
                      f"stand-ins for the rest", flush=True)
                return len(names) - i
            incomplete += 1
            present = sum((root / f.relpath).exists() for f in ds.files)
            print(f"{name}: {present}/{len(ds.files)} files in {root}; incomplete: {e}", flush=True)
            continue
        present = sum((root / f.relpath).exists() for f in ds.files)
        print(f"{name}: {present}/{len(ds.files)} files in {root}", flush=True)
    return incomplete


def _cmd_fetch(args) -> int:
    fetch(args.names or FETCH_DEFAULT, root=args.root, timeout=args.timeout, base_url=args.base_url)
    return 0


def _cmd_download(args) -> int:
    names = sorted(DATASETS) if args.name == "all" else [args.name]
    for n in names:
        download(n, root=args.root, base_url=args.base_url, force=args.force, timeout=args.timeout)
    return 0


def _parser() -> argparse.ArgumentParser:
    from .cli import ScriptParser

    p = ScriptParser(
        prog="python -m l3d.data",
        epilog=(
            "examples:\n"
            "  python -m l3d.data list --verify\n"
            "  python -m l3d.data download a1\n"
            "  python -m l3d.data fetch          # what make demo runs: best effort, never fails\n"
            "  python -m l3d.data download all --root /data/l3d\n"
            "  python -m l3d.data download a3 --base-url http://mirror.example/l3d   # <BASE_URL>/a3/...\n"
            "errors (offline, HTTP error, checksum mismatch) print one line and exit with status 1."
        ),
        description=(
            "List and download the public course data (SHA-256 verified, written atomically).\n"
            "Files go under the data root: $L3D_DATA if set, else <repo>/data (or --root).\n"
            "Every script also runs without these files, using built-in procedural stand-ins."
        ),
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{list,download,fetch}")
    pl = sub.add_parser("list", help="show datasets, their files and which are present")
    pl.add_argument("--data_path", "--root", dest="root", help="data root to inspect (default: $L3D_DATA or <repo>/data)")
    pl.add_argument("--verify", action="store_true", help="also check the SHA-256 of present files")
    pl.set_defaults(func=_cmd_list)
    pd = sub.add_parser(
        "download",
        help="fetch a dataset (verified against recorded SHA-256 checksums, written atomically)",
        description="Fetch a dataset's files; present files with the right checksum are skipped.",
    )
    pd.add_argument("name", help=f"dataset name ({', '.join(sorted(DATASETS))}) or 'all'")
    pd.add_argument("--data_path", "--root", dest="root", help="target data root (default: $L3D_DATA or <repo>/data)")
    pd.add_argument("--force", action="store_true", help="download again even if present and valid")
    pd.add_argument("--base_url", "--base-url", dest="base_url",
                    help="fetch <BASE_URL>/<relpath> instead of the recorded URLs (a mirror)")
    pd.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds (default 30)")
    pd.set_defaults(func=_cmd_download)
    pf = sub.add_parser(
        "fetch",
        help="best effort: download what is missing of the public datasets, never fail (make demo)",
        description="Download the missing files of the datasets with public URLs (default: "
        + ", ".join(FETCH_DEFAULT) + "). One line per dataset; offline or a read-only data root is "
        "reported in one line and the exit status stays 0 (the scripts fall back to stand-ins).",
    )
    pf.add_argument("names", nargs="*", help="datasets to fetch (default: all with public URLs)")
    pf.add_argument("--data_path", "--root", dest="root", help="target data root (default: $L3D_DATA or <repo>/data)")
    pf.add_argument("--timeout", type=float, default=10.0, help="network timeout in seconds (default 10)")
    pf.add_argument("--base_url", "--base-url", dest="base_url",
                    help="fetch <BASE_URL>/<relpath> instead of the recorded URLs (a mirror)")
    pf.set_defaults(func=_cmd_fetch)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m l3d.data``; returns the exit status (user errors: one line, 2)."""
    args = _parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    from .cli import run_cli

    run_cli(main)
