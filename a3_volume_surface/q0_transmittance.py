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

from l3d.cli import report, run_cli, script_parser
from l3d.errors import user_error
from l3d.run import atomic_path, atomic_write
from l3d.rays import volume_weights

# (start, end, sigma) of each segment; x at 0, y1 at 1 (the empty gap's length does not matter)
SEGMENTS = (("x", "y1", 0.0, 1.0), ("y1", "y2", 1.0, 2.0), ("y2", "y3", 0.5, 1.0), ("y3", "y4", 10.0, 3.0))
QUESTIONS = (("y1", "y2"), ("y2", "y4"), ("x", "y4"), ("x", "y3"))
# the closed forms of the written answer, T = e^-k (the assignment's worked solution)
ANSWER_EXPONENTS = {"T(y1,y2)": 2.0, "T(y2,y4)": 30.5, "T(x,y4)": 32.5, "T(x,y3)": 2.5}


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


def transmittance_plot(path: Path, exponents) -> Path:
    """T(x, s) along the figure's ray (log scale), the slabs shaded by their density, and the four
    answers marked; every label sits in the margin above or beside the curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    edges = np.cumsum([0.0] + [seg[3] for seg in SEGMENTS])  # x, y1, y2, y3, y4
    names = [seg[0] for seg in SEGMENTS] + [SEGMENTS[-1][1]]
    s = np.linspace(0, edges[-1], 2000)
    tau = np.zeros_like(s)
    for (_, _, sigma, _), a, b in zip(SEGMENTS, edges[:-1], edges[1:]):
        tau += sigma * np.clip(s - a, 0, b - a)
    fig, ax = plt.subplots(figsize=(7.2, 3.4), dpi=110)
    for (_, _, sigma, _), a, b in zip(SEGMENTS, edges[:-1], edges[1:]):
        ax.axvspan(a, b, color="tab:orange", alpha=min(0.5, 0.05 + 0.045 * sigma), lw=0)
        ax.text(0.5 * (a + b), 1.02, f"sigma={sigma:g}", transform=ax.get_xaxis_transform(), ha="center",
                va="bottom", fontsize=8)
    ax.semilogy(s, np.exp(-tau), color="black", lw=1.5, label="T(x, s) = exp(-integral of sigma)")
    ax.set_xticks(edges, names)
    ax.set_xlim(0, edges[-1])
    ax.set_ylim(1e-16, 3)
    ax.set_ylabel("transmittance from x")
    ax.grid(True, which="major", axis="y", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    text = "\n".join(f"{k} = e^-{v:g}\n    = {math.exp(-v):.4g}" for k, v in exponents.items())
    ax.text(1.02, 0.5, text, transform=ax.transAxes, ha="left", va="center", fontsize=8, family="monospace")
    fig.subplots_adjust(left=0.1, right=0.72, top=0.86, bottom=0.12)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def main(argv=None):
    from l3d.checks import check

    from .targets import Q0_MAX_REL_ERROR

    ap = script_parser(__doc__, "a3_volume_surface/q0_transmittance")
    args = ap.parse_args(argv)
    lines = ["# Q0: transmittance", "", "| pair | optical depth | T | T (discrete check) |", "|---|---|---|---|"]
    exps, vals, discrete = {}, {}, {}
    for a, b in QUESTIONS:
        tau = optical_depth(a, b)
        key = f"T({a},{b})"
        exps[key], vals[key] = tau, math.exp(-tau)
        discrete[key] = numeric_transmittance(a, b)
        lines.append(f"| {key} | {tau:g} | e^-{tau:g} = {math.exp(-tau):.6g} | {discrete[key]:.6g} |")
        print(f"{key} = e^-{tau:g} = {math.exp(-tau):.6g}")
    lines += ["", "Segments: " + ", ".join(f"{s}->{e}: sigma {sg:g}, length {ln:g}" for s, e, sg, ln in SEGMENTS)]
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise user_error(f"--output_dir {out}", "a folder", "a file")
    md = atomic_write(out / "q0_transmittance.md", "\n".join(lines) + "\n")
    with atomic_path(out / "q0_transmittance.png") as tmp:
        transmittance_plot(tmp, exps)
    png = out / "q0_transmittance.png"
    rel = max(abs(discrete[k] - vals[k]) / vals[k] for k in vals)
    checks = {
        "discrete_vs_closed_form": check(rel, max=Q0_MAX_REL_ERROR,
                                         what="largest relative difference of the four transmittances: discrete "
                                              "volume rendering (20000 samples per slab) vs exp(-sum sigma_i l_i)"),
        "exponents_vs_answer": check(max(abs(exps[k] - v) for k, v in ANSWER_EXPONENTS.items()), max=1e-9,
                                     what="largest |optical depth - k| over the four pairs, against the closed "
                                          "forms T = e^-2, e^-30.5, e^-32.5, e^-2.5"),
    }
    report(out, {"exponents": exps, "values": vals, "discrete_check": discrete, "checks": checks}, [md, png])


if __name__ == "__main__":
    run_cli(main)
