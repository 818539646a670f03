"""The model (sampler + implicit function + renderer, each chosen by its config ``type``) and
whole-image rendering.

    model = Model(cfg)                       # cfg.sampler / cfg.implicit_function / cfg.renderer
    out = model(bundle)                      # bundle: RayBundle of R rays -> {"color": (R, 3), ...}
    frames = render_images(model, cameras, (H, W))   # (C, H, W, 3)
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence

import torch
import torch.nn as nn

from l3d.cameras import PerspectiveCameras, as_hw
from l3d.rays import RayBundle, image_rays

from .implicit import build_implicit
from .renderers import build_renderer
from .samplers import build_sampler

__all__ = ["Model", "render_images", "to_container"]


def to_container(cfg: Any) -> Any:
    """A plain dict/list copy of an OmegaConf node (or of a plain mapping), interpolations resolved."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(cfg, (DictConfig, ListConfig)):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(cfg, Mapping):
        return {k: to_container(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_container(v) for v in cfg]
    return cfg


class Model(nn.Module):
    """``renderer(sampler, implicit_fn, bundle)`` with the three parts built from the config."""

    def __init__(self, cfg: Mapping[str, Any]):
        super().__init__()
        cfg = to_container(cfg)
        self.implicit_fn = build_implicit(cfg["implicit_function"])
        self.sampler = build_sampler(cfg.get("sampler") or {"type": "stratified"})
        self.renderer = build_renderer(cfg["renderer"])

    def forward(self, bundle: RayBundle) -> Dict[str, torch.Tensor]:
        """bundle of R rays -> dict of per-ray outputs (see :mod:`a3_volume_surface.renderers`)."""
        return self.renderer(self.sampler, self.implicit_fn, bundle)

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """(P, 3) -> (P,) volume density of the field (NeRF density, or the renderer's SDF-to-density)."""
        if hasattr(self.implicit_fn, "density"):
            return self.implicit_fn.density(points)
        if hasattr(self.renderer, "sdf_to_density"):
            return self.renderer.sdf_to_density(self.implicit_fn.get_distance(points))
        raise ValueError("this model has no volume density")

    def param_groups(self, lr: float, table_lr: Any = None, table_eps: float = 1e-15) -> list:
        """Adam parameter groups: the implicit function's hash tables (``table_parameters()``, when
        it has them) with ``table_lr`` (None: ``lr``) and Adam ``eps=table_eps`` (Instant-NGP:
        1e-15, so rarely touched entries still move), everything else with ``lr``."""
        tables = list(getattr(self.implicit_fn, "table_parameters", lambda: [])())
        if not tables:
            return [{"params": list(self.parameters()), "lr": float(lr)}]
        ids = {id(p) for p in tables}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return [{"params": rest, "lr": float(lr)},
                {"params": tables, "lr": float(lr if table_lr is None else table_lr), "eps": float(table_eps)}]

    def after_step(self) -> None:
        """Per-training-step upkeep (the sampler's occupancy grid, when it has one)."""
        if hasattr(self.sampler, "after_step"):
            self.sampler.after_step(self.density)


@torch.no_grad()
def render_images(model: nn.Module, cameras: PerspectiveCameras, image_size: Sequence[int],
                  keys: Sequence[str] = ("color",)) -> Dict[str, torch.Tensor]:
    """Render every camera's full image.

    Args:
        cameras: C cameras; image_size: (H, W).
        keys: outputs to keep (``color`` -> (C, H, W, 3), ``depth`` -> (C, H, W), ...).
    Returns:
        dict key -> (C, H, W, ...) tensors on the model's device.
    """
    h, w = as_hw(tuple(image_size))
    was_training = model.training
    model.eval()
    out: Dict[str, list] = {k: [] for k in keys}
    try:
        for i in range(len(cameras)):  # one image at a time; the renderer chunks its rays
            bundle = image_rays(cameras[i], (h, w)).reshape(-1)
            res = model(bundle)
            for k in keys:
                v = res[k]
                out[k].append(v.reshape(h, w, *v.shape[1:]))
    finally:
        model.train(was_training)
    return {k: torch.stack(v) for k, v in out.items()}
