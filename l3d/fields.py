"""Neural field components shared by the NeRF / SDF models: positional encoding and MLPs.

* :class:`HarmonicEmbedding` - ``[sin(x f_k), cos(x f_k), x]`` with ``f_k = omega0 2^k`` (no pi),
  for k = 0 .. n - 1. An input of D channels becomes ``2 n D + D`` channels (``6 n + 3`` for
  points). Within the sin (and the cos) block, channel ``d * n + k`` holds coordinate d at
  frequency k (PyTorch3D's layout, so weights trained with it transfer).
* :class:`MLPWithInputSkips` - Linear + ReLU layers whose input is concatenated again (a "skip")
  before the listed layers, as in NeRF.
* :func:`linear_flops` - the multiply-add count of the linear layers of a module, for benchmarks.

Shapes: ``...`` is any batch shape (rays, samples); the last dimension holds the channels.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["HarmonicEmbedding", "MLPWithInputSkips", "linear_flops"]


class HarmonicEmbedding(nn.Module):
    """Positional encoding ``[sin(x f), cos(x f), x]`` of the last dimension of its input.

    Args:
        n_harmonic_functions: n, the number of frequencies.
        omega0: base frequency; the frequencies are ``omega0 * 2^k`` (``logspace=True``) or
            ``linspace(omega0, omega0 * 2^(n-1), n)``.
        include_input: append ``x`` itself (default True).
    """

    def __init__(self, n_harmonic_functions: int = 6, omega0: float = 1.0, logspace: bool = True,
                 include_input: bool = True):
        super().__init__()
        if n_harmonic_functions < 0:
            raise ValueError(f"n_harmonic_functions must be >= 0, got {n_harmonic_functions}")
        n = int(n_harmonic_functions)
        if logspace:
            freqs = omega0 * 2.0 ** torch.arange(n, dtype=torch.float32)
        else:
            freqs = torch.linspace(omega0, omega0 * 2.0 ** max(n - 1, 0), n)
        self.register_buffer("frequencies", freqs, persistent=False)
        self.n_harmonic_functions = n
        self.include_input = include_input

    def output_dim(self, input_dim: int = 3) -> int:
        """Channels produced for ``input_dim`` input channels."""
        return input_dim * (2 * self.n_harmonic_functions + int(self.include_input))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., D) -> (..., D (2 n + 1)) (or (..., 2 n D) without the input)."""
        emb = (x[..., None] * self.frequencies.to(x.dtype)).flatten(-2)  # (..., D n)
        parts = [emb.sin(), emb.cos()] + ([x] if self.include_input else [])
        return torch.cat(parts, -1)


class MLPWithInputSkips(nn.Module):
    """``n_layers`` Linear + ReLU layers; before each layer listed in ``input_skips`` the skip
    input ``z`` is concatenated to the hidden features (layer 0 takes ``x`` alone).

    Args:
        n_layers: number of layers (>= 1).
        input_dim: channels of x; hidden_dim: channels of every layer's output;
        skip_dim: channels of z; input_skips: indices of the layers that also see z.
        last_activation: apply the ReLU after the last layer too (default True, NeRF's trunk).
    Weights of layer i with a skip have shape (hidden_dim, hidden_dim + skip_dim): the hidden
    features come first, then z.
    """

    def __init__(self, n_layers: int, input_dim: int, hidden_dim: int, skip_dim: Optional[int] = None,
                 input_skips: Sequence[int] = (), last_activation: bool = True):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        skip_dim = input_dim if skip_dim is None else skip_dim
        skips = set(int(i) for i in input_skips)
        if any(i <= 0 or i >= n_layers for i in skips):
            raise ValueError(f"input_skips must lie in 1 .. n_layers - 1 = {n_layers - 1}, got {sorted(skips)}")
        self.layers = nn.ModuleList()
        for i in range(n_layers):
            d_in = input_dim if i == 0 else hidden_dim + (skip_dim if i in skips else 0)
            self.layers.append(nn.Linear(d_in, hidden_dim))
        self.input_skips = skips
        self.last_activation = last_activation
        self.hidden_dim = hidden_dim

    def forward(self, x: torch.Tensor, z: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (..., input_dim), z: (..., skip_dim) (default x) -> (..., hidden_dim)."""
        z = x if z is None else z
        y = x
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i in self.input_skips:
                y = torch.cat([y, z], -1)
            y = layer(y)
            if i < last or self.last_activation:
                y = F.relu(y)
        return y


def linear_flops(module: nn.Module, n_inputs: int, backward: bool = True,
                 no_input_grad: Iterable[nn.Linear] = ()) -> int:
    """Floating-point operations of the ``nn.Linear`` layers of ``module`` for ``n_inputs`` rows.

    Forward: ``2 n d_in d_out`` per layer. With ``backward``, another ``2 n d_in d_out`` for the
    weight gradient and another for the input gradient, except for the layers listed in
    ``no_input_grad`` (fed by inputs that need no gradient, e.g. a positional encoding).
    Elementwise work (activations, embeddings, compositing) is not counted.
    """
    skip = {id(m) for m in no_input_grad}
    total = 0
    for m in module.modules():
        if isinstance(m, nn.Linear):
            f = 2 * n_inputs * m.in_features * m.out_features
            total += f if not backward else (2 * f if id(m) in skip else 3 * f)
    return int(total)
