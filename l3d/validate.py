"""Input validation for public entry points: one helper, one clear ``ValueError``."""

from __future__ import annotations

from typing import Sequence, Union

import torch

Dim = Union[int, str, None]


def check_shape(x: torch.Tensor, shape: Sequence[Dim], name: str) -> torch.Tensor:
    """Check that ``x`` is a tensor whose shape matches ``shape``.

    Args:
        x: the tensor to check.
        shape: expected shape; each entry is an int (exact size), a letter such as ``"N"``
            (any size, only used in the message) or ``None`` (any size). A leading ``"..."``
            allows any number of leading batch dimensions.
        name: the argument's name, used in the error message.

    Returns:
        ``x`` unchanged, so the call can be used inline.

    Raises:
        ValueError: naming the expected and the actual shape.
    """
    if not torch.is_tensor(x):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    spec = list(shape)
    ellipsis = bool(spec) and spec[0] == "..."
    if ellipsis:
        spec = spec[1:]
    actual = tuple(x.shape)
    ok = len(actual) >= len(spec) if ellipsis else len(actual) == len(spec)
    if ok:
        tail = actual[len(actual) - len(spec):] if spec else ()
        ok = all(not isinstance(s, int) or s == a for s, a in zip(spec, tail))
    if not ok:
        want = "(" + ", ".join(str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {actual}")
    return x
