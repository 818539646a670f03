"""Real spherical harmonics up to degree 3, with the constants and sign conventions of 3DGS.

Layout of the (N, 48) coefficient tensor: coefficient-major, ``[DC r, g, b, then coefficients
1..15, each r, g, b]``, i.e. ``sh.view(N, 16, 3)[:, k]`` is the RGB triple of basis function k
(k = l^2 + l + m in the usual order). Colour for a viewing direction d (unit vector from the
camera centre to the Gaussian's mean) is ``max(sum_k sh_k Y_k(d) + 0.5, 0)``.
"""

from __future__ import annotations

import torch

from l3d.validate import check_shape

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
      -0.4570457994644658, 1.445305721320277, -0.5900435899266435)

NUM_COEFFS = 16  # degree 3: (3 + 1)^2 basis functions
SH_DIM = 3 * NUM_COEFFS  # 48


def num_coeffs(degree: int) -> int:
    """(degree + 1)^2 basis functions for a degree in 0..3."""
    if degree not in (0, 1, 2, 3):
        raise ValueError(f"SH degree must be 0, 1, 2 or 3, got {degree}")
    return (degree + 1) ** 2


def sh_basis(dirs: torch.Tensor, degree: int = 3) -> torch.Tensor:
    """(..., (degree + 1)^2) values of the real SH basis at unit directions ``dirs`` (..., 3)."""
    check_shape(dirs, ("...", 3), "dirs")
    n = num_coeffs(degree)
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, C0)]
    if degree >= 1:
        out += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [C2[0] * xy, C2[1] * yz, C2[2] * (2 * zz - xx - yy), C2[3] * xz, C2[4] * (xx - yy)]
    if degree >= 3:
        out += [
            C3[0] * y * (3 * xx - yy),
            C3[1] * xy * z,
            C3[2] * y * (4 * zz - xx - yy),
            C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            C3[4] * x * (4 * zz - xx - yy),
            C3[5] * z * (xx - yy),
            C3[6] * x * (xx - 3 * yy),
        ]
    basis = torch.stack(out, -1)
    assert basis.shape[-1] == n, basis.shape
    return basis


def eval_sh(sh: torch.Tensor, dirs: torch.Tensor, degree: int = 3) -> torch.Tensor:
    """Colours (N, 3) = ``max(SH(dirs) + 0.5, 0)``.

    Args:
        sh: (N, 48) coefficients (layout in the module docstring); only the first
            (degree + 1)^2 triples are used.
        dirs: (N, 3) unit viewing directions (camera centre -> Gaussian).
        degree: 0..3.
    """
    check_shape(sh, ("N", SH_DIM), "sh")
    check_shape(dirs, (sh.shape[0], 3), "dirs")
    n = num_coeffs(degree)
    coeffs = sh.view(-1, NUM_COEFFS, 3)[:, :n]  # (N, n, 3)
    basis = sh_basis(dirs.to(sh.dtype), degree)  # (N, n)
    return torch.clamp_min(torch.einsum("nk,nkc->nc", basis, coeffs) + 0.5, 0.0)


def rgb_to_sh_dc(rgb: torch.Tensor) -> torch.Tensor:
    """DC coefficients (N, 3) whose degree-0 colour is ``rgb`` (N, 3): ``(rgb - 0.5) / C0``."""
    return (rgb - 0.5) / C0


def sh_dc_to_rgb(dc: torch.Tensor) -> torch.Tensor:
    """Degree-0 colour (N, 3) of DC coefficients: ``C0 dc + 0.5`` (no clamping)."""
    return dc * C0 + 0.5
