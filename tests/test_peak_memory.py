"""Every trainer's metrics.json carries the process's peak memory (l3d.cli.report -> l3d.run.peak_memory)."""

import json

import numpy as np

from l3d.cli import report
from l3d.run import _rss_mb, peak_memory


def test_peak_rss_follows_a_large_allocation(tmp_path):
    before = peak_memory()["peak_cpu_rss_mib"]
    block = np.ones(300 * 2 ** 20 // 8)  # 300 MiB, touched page by page
    assert block.sum() == block.size
    now = _rss_mb()
    after = peak_memory()["peak_cpu_rss_mib"]
    del block
    # the high-water mark moved past the resident size with the block in it, and stays there after it is freed
    assert after >= now - 1 and after >= before and after >= 300
    assert peak_memory()["peak_cpu_rss_mib"] >= after
    report(tmp_path, {"loss": 0.5})
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["loss"] == 0.5 and written["peak_cpu_rss_mib"] >= after
    assert ("peak_cuda_allocated_mib" in written) == ("peak_cuda_allocated_mib" in peak_memory())
