"""Q0: transmittance along a ray through piecewise-constant densities, computed (not typed in).

The ray of the assignment's figure leaves x through empty space (sigma = 0) to y1, then crosses
three slabs: y1 -> y2 (sigma 1, length 2), y2 -> y3 (sigma 0.5, length 1), y3 -> y4 (sigma 10, length 3).
``T(a, b) = exp(-integral_a^b sigma)``, i.e. the product of ``exp(-sigma_i l_i)`` over the slabs crossed.
Each value is also checked against l3d's discrete volume rendering with 20 000 samples per slab.

    python -m a3_volume_surface.q0_transmittance
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from l3d.cli import report, script_parser
from l3d.rays import volume_weights
from l3d.train import run_cli

# (start, end, sigma) of each segment; x at 0, y1 at 1 (the empty gap's length does not matter)
SEGMENTS = (("x", "y1", 0.0, 1.0), ("y1", "y2", 1.0, 2.0), ("y2", "y3", 0.5, 1.0), ("y3", "y4", 10.0, 3.0))
QUESTIONS = (("y1", "y2"), ("y2", "y4"), ("x", "y4"), ("x", "y3"))


def optical_depth(a: str, b: str) -> float:
    """Integral of sigma from point a to point b (the slabs between them)."""
    names = [s[0] for s in SEGMENTS] + [SEGMENTS[-1][1]]
    i, j = names.index(a), names.index(b)
    return sum(sigma * length for _, _, sigma, length in SEGMENTS[i:j])


def numeric_transmittance(a: str, b: str, per_slab: int = 20000) -> float:
    """The same transmittance from discrete volume rendering: an opaque sample placed at b
    receives weight ``T(a, b)`` (:func:`l3d.rays.volume_weights`)."""
    names = [s[0] for s in SEGMENTS] + [SEGMENTS[-1][1]]
    i, j = names.index(a), names.index(b)
    sig, lens = [], []
    for _, _, sigma, length in SEGMENTS[i:j]:
        sig.append(torch.full((per_slab,), sigma, dtype=torch.float64))
        lens.append(torch.full((per_slab,), length / per_slab, dtype=torch.float64))
    sigma = torch.cat(sig + [torch.tensor([math.inf], dtype=torch.float64)])  # opaque wall at b
    deltas = torch.cat(lens + [torch.ones(1, dtype=torch.float64)])
    return float(volume_weights(sigma[None], deltas[None])[0, -1])


def main(argv=None):
    ap = script_parser(__doc__, "a3_volume_surface/q0_transmittance")
    args = ap.parse_args(argv)
    lines = ["# Q0: transmittance", "", "| pair | optical depth | T | T (discrete check) |", "|---|---|---|---|"]
    exps, vals, checks = {}, {}, {}
    for a, b in QUESTIONS:
        tau = optical_depth(a, b)
        key = f"T({a},{b})"
        exps[key], vals[key] = tau, math.exp(-tau)
        checks[key] = numeric_transmittance(a, b)
        lines.append(f"| {key} | {tau:g} | e^-{tau:g} = {math.exp(-tau):.6g} | {checks[key]:.6g} |")
        print(f"{key} = e^-{tau:g} = {math.exp(-tau):.6g}")
    lines += ["", "Segments: " + ", ".join(f"{s}->{e}: sigma {sg:g}, length {ln:g}" for s, e, sg, ln in SEGMENTS)]
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "q0_transmittance.md"
    md.write_text("\n".join(lines) + "\n")
    report(out, {"exponents": exps, "values": vals, "discrete_check": checks}, [md])


if __name__ == "__main__":
    run_cli(main)
