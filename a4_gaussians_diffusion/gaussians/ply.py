"""Read and write Gaussians as a 3DGS .ply (the layout of the original implementation).

One ``vertex`` element with float32 properties, in this order::

    x, y, z                 means
    f_dc_0 .. f_dc_2        SH DC coefficients (r, g, b)
    f_rest_0 .. f_rest_44   SH coefficients 1..15, channel-major as 3DGS writes them:
                            f_rest_{c * 15 + (k - 1)} is coefficient k of channel c
    opacity                 opacity logit (pre-sigmoid)
    scale_0 .. scale_2      log-scales (an isotropic model writes its one log-scale three times)
    rot_0 .. rot_3          quaternion, real part first (w, x, y, z), not normalised

Two header comments record what the properties cannot: ``gaussians isotropic=0|1`` and
``gaussians sh_degree=d``; Gaussians trained on a scene also carry ``scene background=r,g,b``
and ``scene up=x,y,z`` (the background they were trained against and the world's up vector)
and ``scene data=...`` (what the scene was, e.g. a stand-in),
which the turntable renderer uses unless told otherwise (:func:`read_scene_info`). Other
readers ignore comments.

Reading refuses, with one line naming the file, what would render as a blank or garbled image:
a file that is not a readable PLY, lacks 3DGS properties, holds no Gaussians, or holds NaN/inf
values; writing refuses non-finite Gaussians (the trainer checks its parameters first).

Reading accepts extra properties (3DGS files carry ``nx, ny, nz``) and files with fewer
``f_rest`` coefficients (lower SH degree; missing ones are zero). The model's SH tensor is
coefficient-major (see :mod:`.sh`); this module does the transposition.

Colours: Gaussians read from a .ply get ``sh`` (the file's coefficients, exactly) and
``colours = C0 * f_dc + 0.5`` (the degree-0 colour). Writing uses ``sh`` when the model has it,
else ``f_dc = (colours - 0.5) / C0`` with zero ``f_rest``. So a model with SH round-trips
bit-exactly, and any model round-trips exactly from its first write on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import torch

from l3d.errors import user_error
from l3d.run import atomic_path, nonfinite_tensors

from .model import Gaussians
from .sh import NUM_COEFFS, SH_DIM, rgb_to_sh_dc, sh_dc_to_rgb

PathLike = Union[str, os.PathLike]
N_REST = 3 * (NUM_COEFFS - 1)  # 45
ISO_COMMENT = "gaussians isotropic="
DEGREE_COMMENT = "gaussians sh_degree="
SCENE_COMMENT = "scene "  # "scene background=0,0,0", "scene up=0,-1,0"
SCENE_KEYS = ("background", "up")

PROPERTY_NAMES = (
    ["x", "y", "z"]
    + [f"f_dc_{i}" for i in range(3)]
    + [f"f_rest_{i}" for i in range(N_REST)]
    + ["opacity"]
    + [f"scale_{i}" for i in range(3)]
    + [f"rot_{i}" for i in range(4)]
)


def gaussians_to_array(g: Gaussians) -> np.ndarray:
    """A structured float32 array (N,) with the fields of :data:`PROPERTY_NAMES`."""
    n = g.num_gaussians
    with torch.no_grad():
        if g.sh is not None:
            sh = g.sh.detach().float().cpu().view(n, NUM_COEFFS, 3)
        else:
            sh = torch.zeros(n, NUM_COEFFS, 3)
            sh[:, 0] = rgb_to_sh_dc(g.colours.detach().float().cpu())
        dc = sh[:, 0]  # (N, 3)
        rest = sh[:, 1:].transpose(1, 2).reshape(n, N_REST)  # channel-major
        log_s = g.log_scales.detach().float().cpu().expand(n, 3)
        cols = torch.cat([g.means.detach().float().cpu(), dc, rest, g.opacity_logits.detach().float().cpu()[:, None],
                          log_s, g.quats.detach().float().cpu()], 1).numpy()
    data = np.empty(n, dtype=[(name, "<f4") for name in PROPERTY_NAMES])
    for i, name in enumerate(PROPERTY_NAMES):
        data[name] = cols[:, i]
    return data


def save_gaussians_ply(path: PathLike, g: Gaussians, scene_info: Optional[Dict[str, Sequence[float]]] = None) -> Path:
    """Write ``g`` as a binary little-endian 3DGS .ply (atomic).

    Args:
        scene_info: optional ``{"background": (r, g, b), "up": (x, y, z), "data": "..."}`` of
            the scene the Gaussians were trained on, kept as header comments.
    """
    from plyfile import PlyData, PlyElement

    bad = nonfinite_tensors(g.params())
    if bad:  # callers check first (l3d.run.check_finite_params); a NaN .ply renders blank
        raise ValueError(f"not writing {path}: {bad[0][0]} has {bad[0][1]} non-finite values")
    el = PlyElement.describe(gaussians_to_array(g), "vertex")
    comments = [f"{ISO_COMMENT}{int(g.isotropic)}", f"{DEGREE_COMMENT}{g.sh_degree}"]
    for key, value in (scene_info or {}).items():
        if key == "data":  # one line of text: what the Gaussians were trained on
            text = " ".join(str(value).split())
            if text:
                comments.append(f"{SCENE_COMMENT}data={text.encode('ascii', 'replace').decode('ascii')}")
            continue
        if key not in SCENE_KEYS:
            raise ValueError(f"scene_info keys are {', '.join(SCENE_KEYS + ('data',))}; got {key!r}")
        vals = [float(v) for v in value]
        if len(vals) != 3:
            raise ValueError(f"scene_info[{key!r}] must hold 3 numbers, got {value!r}")
        comments.append(f"{SCENE_COMMENT}{key}=" + ",".join(f"{v:.9g}" for v in vals))
    with atomic_path(path) as tmp:
        PlyData([el], text=False, comments=comments).write(str(tmp))
    return Path(path)


def load_gaussians_ply(path: PathLike, isotropic: Optional[bool] = None, device="cpu",
                       sh_degree: Optional[int] = None) -> Gaussians:
    """Read a 3DGS .ply.

    Args:
        isotropic: None = as recorded in the header comment written by
            :func:`save_gaussians_ply`, else isotropic exactly when every row's three
            log-scales are equal; True keeps ``scale_0``; False keeps all three.
        sh_degree: SH degree used when rendering with SH; default as recorded in the header,
            else from the number of ``f_rest`` coefficients in the file (0, 9, 24 or 45 ->
            degree 0, 1, 2, 3).
    Raises:
        UserError: naming the file: missing, not a PLY, without the 3DGS properties, without
            Gaussians, with NaN/inf values, or with an unreadable header comment.
    """
    from plyfile import PlyData

    path = Path(path)
    expected = "a 3DGS .ply (a vertex element with x, y, z, f_dc_*, opacity, scale_*, rot_*)"
    if not path.is_file():
        raise user_error(path, expected, "no such file")
    try:
        ply = PlyData.read(str(path))
    except Exception as exc:  # plyfile raises a few different types for corrupt files
        raise user_error(path, expected, f"a file that is not a readable PLY ({exc})") from None
    if "vertex" not in [e.name for e in ply.elements]:
        raise user_error(path, expected, "no vertex element")
    v = ply["vertex"]
    names = set(v.data.dtype.names)
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"] + [f"scale_{i}" for i in range(3)] + \
        [f"rot_{i}" for i in range(4)]
    missing = [r for r in required if r not in names]
    if missing:
        raise user_error(path, expected, f"missing properties {', '.join(missing)}")
    if len(v.data) == 0:
        raise user_error(path, "at least one Gaussian", "0 vertices")
    col = lambda k: torch.from_numpy(np.asarray(v[k], dtype=np.float32).copy())  # noqa: E731
    n = len(v.data)
    rest_names = sorted((k for k in names if k.startswith("f_rest_")), key=lambda k: int(k.split("_")[-1]))
    n_rest = len(rest_names)
    if n_rest % 3 or (n_rest // 3 + 1) not in (1, 4, 9, 16):
        raise user_error(path, "0, 9, 24 or 45 f_rest properties (SH degree 0 to 3)", n_rest)
    per_ch = n_rest // 3
    sh = torch.zeros(n, NUM_COEFFS, 3)
    sh[:, 0] = torch.stack([col(f"f_dc_{i}") for i in range(3)], -1)
    if per_ch:
        rest = torch.stack([col(k) for k in rest_names], -1).view(n, 3, per_ch)  # channel-major
        sh[:, 1:1 + per_ch] = rest.transpose(1, 2)
    log_s = torch.stack([col(f"scale_{i}") for i in range(3)], -1)
    recorded = {c.split("=")[0] + "=": c.split("=", 1)[1] for c in ply.comments if "=" in c}
    if isotropic is None and ISO_COMMENT in recorded:
        isotropic = recorded[ISO_COMMENT].strip() == "1"
    if sh_degree is None and DEGREE_COMMENT in recorded:
        text = recorded[DEGREE_COMMENT].strip()
        if text not in ("0", "1", "2", "3"):
            raise user_error(path, f"'comment {DEGREE_COMMENT}<0..3>' in the header", repr(text))
        sh_degree = int(text)
    if isotropic is None:
        isotropic = bool((log_s == log_s[:, :1]).all())
    log_scales = log_s[:, :1].clone() if isotropic else log_s
    quats = torch.stack([col(f"rot_{i}") for i in range(4)], -1)
    means = torch.stack([col("x"), col("y"), col("z")], -1)
    degree = sh_degree if sh_degree is not None else {1: 0, 4: 1, 9: 2, 16: 3}[per_ch + 1]
    sh = sh.reshape(n, SH_DIM)
    columns = {"x, y, z": means, "f_dc_*, f_rest_*": sh, "opacity": col("opacity"), "scale_*": log_s, "rot_*": quats}
    bad = {k: int((~torch.isfinite(t)).sum()) for k, t in columns.items()}
    bad = {k: c for k, c in bad.items() if c}
    if bad:
        found = ", ".join(f"{c} in {k}" for k, c in bad.items())
        raise user_error(path, "finite values", f"NaN or inf values ({found})")
    zero_rot = int((quats.norm(dim=-1) == 0).sum())
    if zero_rot and not isotropic:  # an anisotropic Gaussian needs a rotation
        raise user_error(path, "non-zero rotations rot_*", f"{zero_rot} zero quaternions")
    g = Gaussians(means, log_scales, quats, col("opacity"), sh_dc_to_rgb(sh[:, :3]), sh, degree)
    return g.to(device)


def read_scene_info(path: PathLike) -> Dict[str, Any]:
    """``{"background": (r, g, b), "up": (x, y, z), "data": str}`` recorded in a .ply's header by
    :func:`save_gaussians_ply` (only the keys present; {} for other files, e.g. 3DGS's own)."""
    comments = []
    with open(path, "rb") as f:  # the header alone (ASCII lines up to end_header)
        for _ in range(10000):
            line = f.readline()
            if not line or line.strip() == b"end_header":
                break
            text = line.decode("ascii", errors="replace").strip()
            if text.startswith("comment "):
                comments.append(text[len("comment "):])
    out: Dict[str, Any] = {}
    for c in comments:
        if not c.startswith(SCENE_COMMENT) or "=" not in c:
            continue
        key, value = c[len(SCENE_COMMENT):].split("=", 1)
        if key.strip() == "data":
            out["data"] = value.strip()
        elif key.strip() in SCENE_KEYS:
            try:
                vals = tuple(float(v) for v in value.split(","))
            except ValueError:
                continue
            if len(vals) == 3:
                out[key.strip()] = vals
    return out
