"""Densification as a strategy object with hooks around the backward pass.

The training loop knows nothing about densification; it calls two hooks of a
:class:`DensifyStrategy` on every step (the split gsplat's ``DefaultStrategy`` makes)::

    out = g.render(camera, settings)
    strategy.step_pre_backward(out, step)        # keep the 2-D means' gradients
    loss.backward()
    opt.step()
    strategy.step_post_backward(g, opt, out, step)   # statistics; clone / split / prune; opacity reset

Its state (the running gradient statistics and the random generator of the splits) goes into
every checkpoint (:meth:`DensifyStrategy.state_dict`), so a resumed run densifies exactly as
the uninterrupted one would.

The recipe (3DGS's, simplified): over each interval the screen-space gradient norm of every
Gaussian's 2-D mean is averaged over the views that saw it; Gaussians whose average exceeds
``densify_grad`` are cloned (when small: largest scale below ``percent_dense`` of the scene
extent) or split in two (when larger: new means sampled from the Gaussian, scales / 1.6).
Gaussians with opacity below ``prune_opacity`` or larger than a tenth of the scene extent are
pruned. With ``opacity_reset_every`` the opacities are periodically clamped to 0.01 (3DGS's
reset), so the next pruning removes the Gaussians the images do not support (floaters). Adam's
moments follow the surviving rows; new rows start at zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from .model import Gaussians
from .rasterize import GaussianRender


@dataclass
class DensifyStats:
    """Running screen-space gradient statistics per Gaussian (reset after each densification)."""

    grad_sum: torch.Tensor
    count: torch.Tensor

    @classmethod
    def zeros(cls, n: int, device) -> "DensifyStats":
        return cls(torch.zeros(n, device=device), torch.zeros(n, device=device))

    def add(self, index: torch.Tensor, means2d_grad: Optional[torch.Tensor], image_size: Tuple[int, int]) -> None:
        """Accumulate ``|dL/d mean2d|`` with the gradient w.r.t. NDC-like coordinates
        (pixels / (size / 2), as 3DGS measures it, so its threshold 0.0002 carries over)."""
        if means2d_grad is None:
            return
        h, w = image_size
        to_ndc = torch.tensor([0.5 * w, 0.5 * h], device=means2d_grad.device, dtype=means2d_grad.dtype)
        self.grad_sum.index_add_(0, index, (means2d_grad * to_ndc).norm(dim=-1))
        self.count.index_add_(0, index, torch.ones_like(index, dtype=self.count.dtype))


@dataclass(frozen=True)
class DensifySettings:
    """When and how the strategy densifies (the ``densify_*`` options of a training run)."""

    enabled: bool = False
    start: int = 100  # first step (0-based) that may densify
    stop: int = 500  # no statistics, densification or opacity reset from this step on
    every: int = 100
    grad_threshold: float = 0.0002
    percent_dense: float = 0.01
    prune_opacity: float = 0.005
    max_gaussians: int = 50000
    opacity_reset_every: int = 0  # 0: never


def replace_rows(opt: torch.optim.Adam, g: Gaussians, keep: torch.Tensor, extra: Dict[str, torch.Tensor]) -> None:
    """Keep rows ``keep`` of every parameter and append ``extra[name]`` rows; Adam's moments
    follow the kept rows and start at zero for the new ones."""
    new_params = {}
    for name, p in g.params().items():
        rows = p.detach()[keep]
        if name in extra:
            rows = torch.cat([rows, extra[name].to(rows.dtype)], 0)
        new_params[name] = rows
    old = {gr["name"]: gr["params"][0] for gr in opt.param_groups}
    states = {name: opt.state.pop(p, None) for name, p in old.items()}
    g.replace_params(new_params)
    for gr in opt.param_groups:
        name = gr["name"]
        newp = getattr(g, name)
        gr["params"] = [newp]
        st = states.get(name)
        if st:
            n_new = newp.shape[0] - keep.numel()
            for k in ("exp_avg", "exp_avg_sq"):
                kept = st[k][keep]
                st[k] = torch.cat([kept, kept.new_zeros((n_new,) + kept.shape[1:])], 0)
            opt.state[newp] = st


def _rotations(g: Gaussians, idx: torch.Tensor) -> torch.Tensor:
    from .rasterize import quaternion_to_matrix

    if g.isotropic:
        return torch.eye(3, device=g.means.device).expand(idx.numel(), 3, 3)
    return quaternion_to_matrix(g.quaternions.detach()[idx])


def densify_and_prune(g: Gaussians, opt: torch.optim.Adam, stats: DensifyStats, settings: DensifySettings,
                      scene_extent: float, generator: torch.Generator) -> Dict[str, int]:
    """One densification step (module docstring). Returns counts of cloned / split / pruned."""
    with torch.no_grad():
        n = g.num_gaussians
        avg = stats.grad_sum / stats.count.clamp(min=1)
        big_grad = avg > settings.grad_threshold
        max_scale = g.scales.amax(-1)
        small = max_scale <= settings.percent_dense * scene_extent
        room = max(settings.max_gaussians - n, 0)
        clone = torch.nonzero(big_grad & small).flatten()
        split = torch.nonzero(big_grad & ~small).flatten()
        # respect the budget: the largest gradients first
        if clone.numel() + split.numel() > room:
            cand = torch.cat([clone, split])
            top = cand[torch.argsort(avg[cand], descending=True)[:room]]
            is_top = torch.zeros(n, dtype=torch.bool, device=avg.device)
            is_top[top] = True
            clone, split = clone[is_top[clone]], split[is_top[split]]
        extra: Dict[str, torch.Tensor] = {}
        params = g.params()
        # clones: identical copies (the optimiser moves them apart)
        for name, p in params.items():
            extra[name] = p.detach()[clone]
        # splits: two samples from the Gaussian replace it, scales / 1.6
        if split.numel():
            s = g.scales[split].expand(-1, 3)  # (S, 3)
            rot = _rotations(g, split)  # (S, 3, 3)
            for _ in range(2):
                z = torch.randn(split.numel(), 3, generator=generator).to(s.device) * s
                new_means = g.means.detach()[split] + (rot @ z[..., None])[..., 0]
                for name, p in params.items():
                    rows = p.detach()[split]
                    if name == "means":
                        rows = new_means
                    elif name == "log_scales":
                        rows = rows - math.log(1.6)
                    extra[name] = torch.cat([extra[name], rows], 0)
        keep = torch.ones(n, dtype=torch.bool, device=avg.device)
        keep[split] = False
        # prune transparent Gaussians and ones grown larger than a tenth of the scene
        low = (g.opacities < settings.prune_opacity) | (max_scale > 0.1 * scene_extent)
        keep &= ~low
        n_pruned = int((~keep).sum()) - split.numel()
        # new rows are never pruned in the same step (they were just created)
        replace_rows(opt, g, torch.nonzero(keep).flatten(), extra)
    return {"cloned": int(clone.numel()), "split": int(split.numel()), "pruned": n_pruned,
            "num_gaussians": g.num_gaussians}


def reset_opacities(g: Gaussians, opt: torch.optim.Adam, value: float = 0.01) -> None:
    """3DGS's opacity reset: clamp every opacity to at most ``value`` and clear Adam's moments
    of the opacity logits, so Gaussians that the images do not need fall below the pruning
    threshold before the next densification."""
    with torch.no_grad():
        g.opacity_logits.clamp_(max=math.log(value / (1 - value)))
    for gr in opt.param_groups:
        if gr["name"] == "opacity_logits":
            st = opt.state.get(gr["params"][0])
            if st:
                st["exp_avg"].zero_()
                st["exp_avg_sq"].zero_()


class DensifyStrategy:
    """Clone / split / prune Gaussians from the gradients of their 2-D means (module docstring).

    Args:
        settings: when and how to densify; with ``settings.enabled`` False both hooks do nothing.
        scene_extent: the scene's scale (clone vs split, pruning of oversized Gaussians).
        num_gaussians: the Gaussians at the start (the statistics hold one row each).
        image_size: (H, W) of the training views (the gradients are measured in NDC-like units).
        seed: seed of the generator that samples the split Gaussians.
    """

    def __init__(self, settings: DensifySettings, scene_extent: float, num_gaussians: int,
                 image_size: Tuple[int, int], device: Any = "cpu", seed: int = 0):
        self.settings = settings
        self.scene_extent = float(scene_extent)
        self.image_size = image_size
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)
        self.stats = DensifyStats.zeros(num_gaussians, device)

    def collecting(self, step: int) -> bool:
        """Whether ``step`` contributes gradient statistics."""
        return self.settings.enabled and step < self.settings.stop

    def step_pre_backward(self, out: GaussianRender, step: int) -> None:
        """Before ``loss.backward()``: keep the gradient of the render's 2-D means."""
        if self.collecting(step) and out.means2d.requires_grad:
            out.means2d.retain_grad()

    def step_post_backward(self, g: Gaussians, opt: torch.optim.Adam, out: GaussianRender, step: int) -> List[str]:
        """After ``loss.backward()`` and the optimiser step: accumulate the statistics, then
        densify and reset opacities when due. Returns one log line per action taken."""
        s = self.settings
        if not s.enabled:
            return []
        messages = []
        if step < s.stop:
            self.stats.add(out.index, out.means2d.grad, self.image_size)
        if s.start <= step < s.stop and (step + 1) % s.every == 0:
            info = densify_and_prune(g, opt, self.stats, s, self.scene_extent, self.generator)
            self.stats = DensifyStats.zeros(g.num_gaussians, self.device)
            messages.append(f"step {step}: densify {info}")
        if s.opacity_reset_every > 0 and step < s.stop and (step + 1) % s.opacity_reset_every == 0:
            reset_opacities(g, opt)
            messages.append(f"step {step}: opacities reset to at most 0.01")
        return messages

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """What a checkpoint keeps: the statistics and the split generator's state."""
        return {"grad_sum": self.stats.grad_sum.detach().cpu(), "count": self.stats.count.detach().cpu(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor], num_gaussians: int) -> None:
        """Restore :meth:`state_dict`; ``num_gaussians`` is the restored model's size."""
        grad_sum, count = state["grad_sum"], state["count"]
        if grad_sum.shape != (num_gaussians,) or count.shape != (num_gaussians,):
            raise ValueError(f"densification statistics of {tuple(grad_sum.shape)} rows for {num_gaussians} Gaussians")
        self.stats = DensifyStats(grad_sum.to(self.device).clone(), count.to(self.device).clone())
        self.generator.set_state(state["generator"].cpu())
