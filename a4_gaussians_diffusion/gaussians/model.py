"""The Gaussian scene model: parameters, activations, initialisation and rendering.

Parameters (N Gaussians; spec a4 Q1):

==================  ============  ===================================================
``means``           (N, 3)        world-space centres
``log_scales``      (N, 1) / (N, 3)  isotropic / anisotropic, activation ``exp``
``quats``           (N, 4)        (w, x, y, z), activation L2 normalisation
``opacity_logits``  (N,)          activation ``sigmoid``
``colours``         (N, 3)        RGB, no activation (used without SH)
``sh``              (N, 48)       optional SH coefficients (layout in :mod:`.sh`)
==================  ============  ===================================================

Initialisation: from a 3DGS .ply (:mod:`.ply`); from points (opacity logit 8, colours U[0, 1),
identity quaternion, log-scale = log of the mean squared distance to the 50 nearest neighbours,
the point itself included); random (means ``randn * 0.2``, then as from points).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import nn

from l3d.cameras import PerspectiveCameras
from l3d.ops import knn_points
from l3d.validate import check_shape

from .rasterize import GaussianRender, RasterSettings, covariance_3d, rasterize_gaussians
from .sh import SH_DIM, eval_sh, rgb_to_sh_dc, sh_dc_to_rgb

PARAM_NAMES = ("means", "log_scales", "quats", "opacity_logits", "colours", "sh")


class Gaussians(nn.Module):
    """N 3-D Gaussians with the parameters of the module docstring.

    Args:
        means: (N, 3); log_scales: (N, 1) or (N, 3); quats: (N, 4); opacity_logits: (N,);
        colours: (N, 3); sh: optional (N, 48).
        sh_degree: degree (0..3) used when rendering with SH colours.
    """

    def __init__(self, means, log_scales, quats, opacity_logits, colours, sh=None, sh_degree: int = 3):
        super().__init__()
        check_shape(means, ("N", 3), "means")
        n = means.shape[0]
        check_shape(log_scales, (n, None), "log_scales")
        if log_scales.shape[1] not in (1, 3):
            raise ValueError(f"log_scales must have shape (N, 1) or (N, 3), got {tuple(log_scales.shape)}")
        check_shape(quats, (n, 4), "quats")
        check_shape(opacity_logits, (n,), "opacity_logits")
        check_shape(colours, (n, 3), "colours")
        if sh is not None:
            check_shape(sh, (n, SH_DIM), "sh")
        if sh_degree not in (0, 1, 2, 3):
            raise ValueError(f"sh_degree must be 0..3, got {sh_degree}")
        self.means = nn.Parameter(means.detach().clone())
        self.log_scales = nn.Parameter(log_scales.detach().clone())
        self.quats = nn.Parameter(quats.detach().clone())
        self.opacity_logits = nn.Parameter(opacity_logits.detach().clone())
        self.colours = nn.Parameter(colours.detach().clone())
        self.sh = None if sh is None else nn.Parameter(sh.detach().clone())
        self.sh_degree = sh_degree

    # ---- construction
    @classmethod
    def from_points(cls, points: torch.Tensor, isotropic: bool = True, with_sh: bool = False,
                    generator: Optional[torch.Generator] = None, sh_degree: int = 3) -> "Gaussians":
        """Gaussians centred on points (P, 3), initialised as in the module docstring."""
        check_shape(points, ("P", 3), "points")
        p = points.shape[0]
        dev, dt = points.device, points.dtype
        k = min(50, p)
        knn = knn_points(points[None].detach(), points[None].detach(), K=k)  # dists include the point itself (0)
        mean_sq = knn.dists[0].mean(-1).clamp(min=1e-12)  # (P,)
        log_s = torch.log(mean_sq)[:, None]
        log_scales = log_s if isotropic else log_s.expand(p, 3).clone()
        quats = torch.zeros(p, 4, device=dev, dtype=dt)
        quats[:, 0] = 1.0
        opacity_logits = torch.full((p,), 8.0, device=dev, dtype=dt)
        colours = torch.rand(p, 3, generator=generator, device=dev, dtype=dt)
        sh = None
        if with_sh:
            sh = torch.zeros(p, SH_DIM, device=dev, dtype=dt)
            sh[:, :3] = rgb_to_sh_dc(colours)
        return cls(points, log_scales, quats, opacity_logits, colours, sh, sh_degree)

    @classmethod
    def random(cls, num: int = 10000, isotropic: bool = True, with_sh: bool = False,
               generator: Optional[torch.Generator] = None, device="cpu", dtype=torch.float32,
               sh_degree: int = 3) -> "Gaussians":
        """``num`` Gaussians with means ``randn * 0.2``, otherwise as :meth:`from_points`."""
        if num < 1:
            raise ValueError(f"num must be positive, got {num}")
        means = torch.randn(num, 3, generator=generator, device=device, dtype=dtype) * 0.2
        return cls.from_points(means, isotropic, with_sh, generator, sh_degree)

    # ---- activations
    @property
    def num_gaussians(self) -> int:
        return self.means.shape[0]

    @property
    def isotropic(self) -> bool:
        return self.log_scales.shape[1] == 1

    @property
    def scales(self) -> torch.Tensor:
        """(N, 1) or (N, 3) standard deviations ``exp(log_scales)``."""
        return torch.exp(self.log_scales)

    @property
    def quaternions(self) -> torch.Tensor:
        """(N, 4) unit quaternions."""
        return torch.nn.functional.normalize(self.quats, dim=-1)

    @property
    def opacities(self) -> torch.Tensor:
        """(N,) ``sigmoid(opacity_logits)``."""
        return torch.sigmoid(self.opacity_logits)

    def covariance_3d(self) -> torch.Tensor:
        """(N, 3, 3) world-space covariances."""
        return covariance_3d(self.scales, None if self.isotropic else self.quaternions)

    def colours_for(self, camera: PerspectiveCameras, use_sh: bool = False) -> torch.Tensor:
        """(N, 3) colours seen from ``camera`` (one camera): SH evaluated along
        ``normalize(mean - camera centre)``, or the plain colours."""
        if not use_sh:
            return self.colours
        if self.sh is None:
            raise ValueError("these Gaussians have no spherical harmonics (load a 3DGS .ply or train with --sh)")
        centre = camera.get_camera_center()[0].to(self.means.dtype)
        dirs = torch.nn.functional.normalize(self.means - centre, dim=-1)
        return eval_sh(self.sh, dirs, self.sh_degree)

    def render(self, camera: PerspectiveCameras, settings: RasterSettings, use_sh: bool = False) -> GaussianRender:
        """Render into one camera (see :func:`~.rasterize.rasterize_gaussians`)."""
        return rasterize_gaussians(self.means, self.covariance_3d(), self.opacities,
                                   self.colours_for(camera, use_sh), camera, settings)

    # ---- conversion and (de)serialisation
    def enable_sh(self) -> None:
        """Add SH coefficients whose DC term reproduces the current colours (rest zero)."""
        if self.sh is None:
            sh = torch.zeros(self.num_gaussians, SH_DIM, device=self.means.device, dtype=self.means.dtype)
            sh[:, :3] = rgb_to_sh_dc(self.colours.detach())
            self.sh = nn.Parameter(sh)

    def to_anisotropic(self) -> None:
        """Turn isotropic scales into three equal per-axis scales (same covariances)."""
        if self.isotropic:
            self.log_scales = nn.Parameter(self.log_scales.detach().expand(-1, 3).clone())

    def params(self) -> Dict[str, torch.Tensor]:
        """The parameter tensors by name (``sh`` only when present)."""
        out = {k: getattr(self, k) for k in PARAM_NAMES if getattr(self, k) is not None}
        return out

    def config(self) -> Dict[str, Any]:
        return {"num_gaussians": self.num_gaussians, "isotropic": self.isotropic,
                "with_sh": self.sh is not None, "sh_degree": self.sh_degree}

    def state(self) -> Dict[str, Any]:
        """A checkpointable dict: the config and every parameter (detached, on the CPU)."""
        return {"config": self.config(), "params": {k: v.detach().cpu() for k, v in self.params().items()}}

    @classmethod
    def from_state(cls, state: Dict[str, Any], device="cpu") -> "Gaussians":
        """Rebuild Gaussians from :meth:`state` alone."""
        p = {k: v.to(device) for k, v in state["params"].items()}
        return cls(p["means"], p["log_scales"], p["quats"], p["opacity_logits"], p["colours"], p.get("sh"),
                   int(state["config"].get("sh_degree", 3)))

    def replace_params(self, new: Dict[str, torch.Tensor]) -> None:
        """Swap every parameter for a new tensor (e.g. after densification), same names."""
        for k, v in new.items():
            setattr(self, k, nn.Parameter(v.detach().clone()))

    def dc_colours(self) -> torch.Tensor:
        """(N, 3) view-independent colours: the SH DC colour when SH are present, else ``colours``."""
        return sh_dc_to_rgb(self.sh[:, :3]) if self.sh is not None else self.colours
