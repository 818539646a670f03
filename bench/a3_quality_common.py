"""Helpers of the Assignment 3 quality runs (not a benchmark itself): run an entry point in-process
with overrides and read back its metrics."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)
os.environ.setdefault("MPLBACKEND", "Agg")

QUALITY_DIR = ROOT / "output" / "a3_volume_surface" / "quality"


def run(module: str, config: str, out: Path, *overrides: str) -> dict:
    """``python -m a3_volume_surface.<module> --config-name=<config> output_dir=<out> <overrides>``
    run in this process; returns its metrics.json (plus the wall time of the whole run)."""
    import importlib

    mod = importlib.import_module(f"a3_volume_surface.{module}")
    argv = [f"python -m a3_volume_surface.{module}", f"--config-name={config}", f"output_dir={out}", *overrides]
    print("$ " + " ".join(argv), flush=True)
    old = sys.argv
    sys.argv = argv
    t = time.perf_counter()
    try:
        mod.main()
    finally:
        sys.argv = old
    m = json.loads((Path(out) / "metrics.json").read_text())
    m["run_wall_s"] = time.perf_counter() - t
    return m


def load_note() -> str:
    """One line on the machine load, for the reports (2-core shared machine)."""
    try:
        la = os.getloadavg()
        return f"load average {la[0]:.1f} / {la[1]:.1f} / {la[2]:.1f} (1/5/15 min) on {os.cpu_count()} CPUs"
    except OSError:  # pragma: no cover
        return "load average unavailable"


def fmt(x, nd=2):
    return "n/a" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))
