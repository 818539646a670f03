"""Shared pieces of the speed benchmarks: the machine load, peak memory of a phase, and the
previous implementation of a module read from git (so that old and new run in the same process).

Not a benchmark itself: imported by bench_raster.py and bench_a4_speed.py.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
#: The commit whose renderer and Gaussian rasteriser the speed benchmarks compare against.
BASELINE_COMMIT = "c9c946c"


def load_avg() -> str:
    """The 1, 5 and 15 minute load averages as text (what `uptime` prints)."""
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Peak CPU RSS (sampled every 2 ms by a thread) and CUDA peak allocation within a ``with``.

    Attributes after the block: ``rss_mib`` (peak RSS), ``rss_delta_mib`` (peak minus the RSS at
    entry), ``cuda_mib`` (peak CUDA allocation, None without CUDA).
    """

    def __init__(self, device: Optional[torch.device] = None):
        self.device = device
        self.rss_mib = self.rss_delta_mib = 0.0
        self.cuda_mib = None

    def __enter__(self):
        self._start = _rss_bytes()
        self._peak = self._start
        self._stop = threading.Event()

        def sample():
            while not self._stop.is_set():
                self._peak = max(self._peak, _rss_bytes())
                time.sleep(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes())
        self.rss_mib = self._peak / 2 ** 20
        self.rss_delta_mib = (self._peak - self._start) / 2 ** 20
        if self.device is not None and self.device.type == "cuda":
            self.cuda_mib = torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        return False

    def text(self) -> str:
        s = f"peak RSS {self.rss_mib:.0f} MiB (+{self.rss_delta_mib:.0f})"
        return s + (f", CUDA peak {self.cuda_mib:.0f} MiB" if self.cuda_mib is not None else "")

    def as_dict(self) -> dict:
        return {"peak_rss_mib": self.rss_mib, "peak_rss_delta_mib": self.rss_delta_mib, "cuda_peak_mib": self.cuda_mib}


def baseline_module(rel_path: str, name: str, package: Optional[str] = None,
                    replace: Optional[dict] = None) -> Optional[types.ModuleType]:
    """The file ``rel_path`` as of :data:`BASELINE_COMMIT`, imported as module ``name`` (inside
    ``package`` for relative imports; ``replace`` rewrites source text first, e.g. to point a
    relative import at another baseline module). None when git or the commit is not available."""
    try:
        src = subprocess.run(["git", "show", f"{BASELINE_COMMIT}:{rel_path}"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for old, new in (replace or {}).items():
        src = src.replace(old, new)
    full = f"{package}.{name}" if package else name
    spec = importlib.util.spec_from_loader(full, loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__file__ = str(ROOT / rel_path)
    if package:
        mod.__package__ = package
    sys.modules[full] = mod
    exec(compile(src, f"{BASELINE_COMMIT}:{rel_path}", "exec"), mod.__dict__)
    return mod
