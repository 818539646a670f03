"""The typed schema of the Assignment 3 configs (``configs/a3/*.yaml``), registered in Hydra's
ConfigStore as ``a3_schema`` and listed first in ``a3_common.yaml``'s defaults.

Every key any config uses is declared here with its type, so a misspelt key in a YAML file or on
the command line fails, and a value of the wrong type (``training.lr=abc``, ``quick=maybe``) is
rejected naming the key. Keys a config does not use stay unset (``???``) and are left out of the
plain dict the runs see (:func:`plain_config`). Value ranges (positive epochs, a positive
learning rate, ...) are checked by :func:`validate` once the ``quick`` variant is applied.
Torch-free: imported by the entry points before Hydra composes anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from omegaconf import MISSING

__all__ = ["A3Config", "SCHEMA_NAME", "register", "plain_config", "validate"]

SCHEMA_NAME = "a3_schema"


@dataclass
class Data:
    image_size: List[int] = MISSING  # [W, H]
    eyes: Any = MISSING
    focal_length: float = MISSING
    dataset_name: Optional[str] = MISSING
    source: str = MISSING
    cache_dir: Optional[str] = MISSING
    n_train_views: int = MISSING
    n_val_views: int = MISSING
    n_test_views: int = MISSING
    supersample: int = MISSING
    max_train_views: Optional[int] = MISSING
    point_cloud_path: Optional[str] = MISSING
    subsample: int = MISSING
    format: str = MISSING  # blender | colmap: a scene folder read through l3d.scenes
    path: Optional[str] = MISSING  # that folder
    background: Optional[str] = MISSING  # white | black | "r,g,b" (RGBA images are composited on it)
    normalize: str = MISSING  # auto | cameras | points | ngp | none


@dataclass
class Cameras:
    radius: float = MISSING
    n_poses: int = MISSING
    up: List[float] = MISSING
    focal_length: float = MISSING


@dataclass
class Visualize:
    enabled: bool = MISSING
    n_poses: Optional[int] = MISSING
    image_size: Optional[List[int]] = MISSING
    depth_camera: int = MISSING
    points_stride: int = MISSING
    reference_checks: bool = MISSING


@dataclass
class Geometry:
    scale: float = MISSING
    grid_size: int = MISSING
    thresh: float = MISSING


@dataclass
class Training:
    num_epochs: int = MISSING
    steps_per_epoch: Optional[int] = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    lr_scheduler_step_size: Optional[int] = MISSING
    lr_scheduler_gamma: float = MISSING
    lr_warmup_steps: Optional[int] = MISSING
    checkpoint_interval: Optional[int] = MISSING
    resume: bool = MISSING
    time_budget_s: Optional[float] = MISSING
    render_interval: Optional[int] = MISSING
    pixel_lookup: str = MISSING
    coarse_loss_weight: float = MISSING
    eval_views: Optional[int] = MISSING
    compile: bool = MISSING
    pretrain_iters: int = MISSING
    inter_weight: float = MISSING
    eikonal_weight: float = MISSING
    eikonal_points: Optional[int] = MISSING
    bounds: Any = MISSING  # [[xmin, ymin, zmin], [xmax, ymax, zmax]]
    table_lr: Optional[float] = MISSING  # hash tables' learning rate (null: training.lr)
    table_eps: float = MISSING  # hash tables' Adam eps


@dataclass
class Renderer:
    type: str = MISSING
    chunk_size: int = MISSING
    white_background: bool = MISSING
    n_pts_importance: int = MISSING
    density: str = MISSING
    alpha: float = MISSING
    beta: float = MISSING
    s: Any = MISSING  # a number; kept as written (the folder name part_8_3_s${renderer.s} uses it)
    density_scale: float = MISSING
    eps: float = MISSING
    near: float = MISSING
    far: float = MISSING
    max_iters: int = MISSING
    hit: str = MISSING
    light_dir: List[float] = MISSING
    shading: bool = MISSING
    ambient: float = MISSING


@dataclass
class Sampler:
    type: str = MISSING
    n_pts_per_ray: int = MISSING
    min_depth: float = MISSING
    max_depth: float = MISSING
    perturb: bool = MISSING
    bound_radius: Optional[float] = MISSING
    occupancy: Any = MISSING  # null or {resolution, update_every, warmup_steps}


@dataclass
class ImplicitFunction:
    type: str = MISSING
    sdf: Any = MISSING  # {type, ...}: its keys depend on the SDF type
    feature: Any = MISSING
    alpha: Any = MISSING  # a number or {val, opt}
    beta: Any = MISSING
    n_harmonic_functions_xyz: int = MISSING
    n_harmonic_functions_dir: int = MISSING
    n_hidden_neurons_xyz: int = MISSING
    n_hidden_neurons_dir: int = MISSING
    n_layers_xyz: int = MISSING
    append_xyz: List[int] = MISSING
    density_noise_std: float = MISSING
    density_bias_init: float = MISSING
    density_activation: str = MISSING
    use_view_dependence: bool = MISSING
    n_layers_distance: int = MISSING
    n_hidden_neurons_distance: int = MISSING
    append_distance: List[int] = MISSING
    n_layers_color: int = MISSING
    n_hidden_neurons_color: int = MISSING
    append_color: List[int] = MISSING
    # hash-grid fields (type ngp / ngp_surface)
    n_levels: int = MISSING
    n_features_per_level: int = MISSING
    log2_hashmap_size: int = MISSING
    base_resolution: int = MISSING
    max_resolution: int = MISSING
    bound: float = MISSING
    n_hidden_neurons: int = MISSING
    n_hidden_layers_density: int = MISSING
    n_hidden_layers_distance: int = MISSING
    n_hidden_layers_color: int = MISSING
    n_geo_features: int = MISSING


@dataclass
class A3Config:
    seed: int = 1
    device: str = "auto"
    quick: bool = False
    quick_overrides: Dict[str, Any] = field(default_factory=dict)
    part: str = "misc"
    output_dir: str = MISSING
    type: str = MISSING
    gif_name: str = MISSING
    check_bound_radius: Optional[float] = MISSING
    reference_checks: bool = MISSING
    data: Data = MISSING
    cameras: Cameras = MISSING
    gif: Cameras = MISSING
    visualize: Visualize = MISSING
    geometry: Geometry = MISSING
    training: Training = MISSING
    renderer: Renderer = MISSING
    sampler: Sampler = MISSING
    implicit_function: ImplicitFunction = MISSING
    export_mesh: bool = False  # after training: mesh.ply / mesh.obj of the surface (a3_volume_surface.export)
    mesh_resolution: int = 256
    mesh_level: Optional[float] = None  # null: 0 for an SDF, 10 for a density
    mesh_field: str = "auto"  # auto | sdf | density
    tensorboard: bool = True  # TensorBoard event files in <output_dir>/tensorboard/
    tensorboard_image_every: int = 10  # epochs between TensorBoard images of the first test view (0: none)
    viewer: bool = False  # a live web viewer of the training (l3d.view.TrainingViewer)
    viewer_port: int = 0  # 0: a free port
    viewer_host: str = "127.0.0.1"
    viewer_every: float = 1.0  # seconds between two viewer renders at most


def register() -> None:
    """Store the schema in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=A3Config)


def plain_config(cfg: Any) -> Any:
    """A plain dict/list copy of a composed config, interpolations resolved and unset (``???``)
    keys left out."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        return {k: plain_config(cfg[k]) for k in cfg.keys() if not OmegaConf.is_missing(cfg, k)}
    if isinstance(cfg, ListConfig):
        return [plain_config(v) for v in cfg]
    return cfg


# ----------------------------------------------------------------------------------------------
# value ranges
# ----------------------------------------------------------------------------------------------
def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _pos(x) -> bool:
    return _num(x) and x > 0


def _nonneg(x) -> bool:
    return _num(x) and x >= 0


def _opt(pred: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda x: x is None or pred(x)


def _wh(x) -> bool:
    return isinstance(x, list) and len(x) == 2 and all(isinstance(v, int) and v > 0 for v in x)


def _bounds(x) -> bool:
    return (isinstance(x, list) and len(x) == 2 and all(isinstance(r, list) and len(r) == 3 and all(_num(v) for v in r)
                                                        for r in x) and all(a < b for a, b in zip(x[0], x[1])))


# key -> (test, what is expected); checked only where the config has the key
RANGES: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "training.num_epochs": (_pos, "a positive integer"),
    "training.steps_per_epoch": (_opt(_pos), "null or a positive integer"),
    "training.batch_size": (_pos, "a positive integer"),
    "training.lr": (_pos, "a positive, finite learning rate"),
    "training.lr_scheduler_step_size": (_opt(_pos), "null or a positive integer"),
    "training.lr_scheduler_gamma": (_pos, "a positive number"),
    "training.lr_warmup_steps": (_opt(_nonneg), "null or an integer >= 0"),
    "training.checkpoint_interval": (_opt(_nonneg), "null or an integer >= 0"),
    "training.time_budget_s": (_opt(_pos), "null or a positive number of seconds"),
    "training.render_interval": (_opt(_nonneg), "null or an integer >= 0"),
    "training.pretrain_iters": (_nonneg, "an integer >= 0"),
    "training.inter_weight": (_nonneg, "a number >= 0"),
    "training.eikonal_weight": (_nonneg, "a number >= 0"),
    "training.coarse_loss_weight": (_nonneg, "a number >= 0"),
    "training.eikonal_points": (_opt(_pos), "null or a positive integer"),
    "training.bounds": (_bounds, "[[xmin, ymin, zmin], [xmax, ymax, zmax]] with min < max"),
    "training.pixel_lookup": (lambda x: x in ("grid_sample", "bilinear", "exact"), "grid_sample, bilinear or exact"),
    "data.image_size": (_wh, "[W, H] with two positive integers"),
    "data.n_train_views": (_pos, "a positive integer"),
    "data.n_val_views": (_nonneg, "an integer >= 0"),
    "data.n_test_views": (_pos, "a positive integer"),
    "data.supersample": (_pos, "a positive integer"),
    "data.max_train_views": (_opt(_pos), "null or a positive integer"),
    "data.subsample": (_pos, "a positive integer"),
    "data.source": (lambda x: x in ("auto", "file", "builtin"), "auto, file or builtin"),
    "mesh_resolution": (lambda x: _pos(x) and x >= 2, "an integer of at least 2"),
    "mesh_level": (_opt(_num), "null or a number"),
    "tensorboard_image_every": (_nonneg, "a non-negative integer (0: no images)"),
    "viewer_port": (lambda x: isinstance(x, int) and 0 <= x < 65536, "a port number (0: a free one)"),
    "viewer_every": (_pos, "a positive number of seconds"),
    "mesh_field": (lambda x: x in ("auto", "sdf", "density"), "auto, sdf or density"),
    "data.format": (lambda x: x in ("blender", "colmap"), "blender or colmap"),
    "data.normalize": (lambda x: x in ("auto", "cameras", "points", "ngp", "none"), "auto, cameras, points, ngp or none"),
    "cameras.n_poses": (_pos, "a positive integer"),
    "cameras.radius": (_pos, "a positive number"),
    "gif.n_poses": (_pos, "a positive integer"),
    "gif.radius": (_pos, "a positive number"),
    "visualize.image_size": (_opt(_wh), "[W, H] with two positive integers"),
    "geometry.grid_size": (lambda x: _num(x) and x >= 2, "an integer >= 2"),
    "geometry.scale": (_pos, "a positive number"),
    "sampler.n_pts_per_ray": (_pos, "a positive integer"),
    "renderer.chunk_size": (_pos, "a positive integer"),
    "renderer.n_pts_importance": (_nonneg, "an integer >= 0"),
    "renderer.max_iters": (_pos, "a positive integer"),
    "renderer.s": (_pos, "a positive number"),
    "renderer.alpha": (_pos, "a positive number"),
    "renderer.beta": (_pos, "a positive number"),
    "training.table_lr": (_opt(_pos), "null or a positive, finite learning rate"),
    "training.table_eps": (_pos, "a positive number"),
    "implicit_function.n_levels": (lambda x: _pos(x) and x <= 32, "an integer in [1, 32]"),
    "implicit_function.n_features_per_level": (lambda x: _pos(x) and x <= 8, "an integer in [1, 8]"),
    "implicit_function.log2_hashmap_size": (lambda x: _num(x) and 4 <= x <= 26, "an integer in [4, 26]"),
    "implicit_function.base_resolution": (_pos, "a positive integer"),
    "implicit_function.max_resolution": (_pos, "a positive integer (at least base_resolution)"),
    "implicit_function.bound": (_pos, "a positive number (half size of the encoded cube)"),
    "implicit_function.n_hidden_neurons": (_pos, "a positive integer"),
    "implicit_function.n_hidden_layers_density": (_nonneg, "an integer >= 0"),
    "implicit_function.n_hidden_layers_distance": (_nonneg, "an integer >= 0"),
    "implicit_function.n_hidden_layers_color": (_nonneg, "an integer >= 0"),
    "implicit_function.n_geo_features": (_pos, "a positive integer"),
}


def _get(cfg: Mapping[str, Any], dotted: str):
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node


def validate(cfg: Mapping[str, Any], where: str = "") -> None:
    """Raise :class:`~l3d.errors.UserError` naming the first key whose value is out of range."""
    from l3d.errors import user_error

    for key, (ok, expected) in RANGES.items():
        value = _get(cfg, key)
        if value is MISSING or ok(value):
            continue
        raise user_error(key, expected, repr(value), hint=where)
    sampler = cfg.get("sampler") or {}
    if "min_depth" in sampler and "max_depth" in sampler and not sampler["min_depth"] < sampler["max_depth"]:
        raise user_error("sampler.max_depth", f"more than sampler.min_depth ({sampler['min_depth']})",
                         sampler["max_depth"], hint=where)
    fn = cfg.get("implicit_function") or {}
    if "base_resolution" in fn and "max_resolution" in fn and not fn["base_resolution"] <= fn["max_resolution"]:
        raise user_error("implicit_function.max_resolution",
                         f"at least implicit_function.base_resolution ({fn['base_resolution']})",
                         fn["max_resolution"], hint=where)
