"""Assignment 5 quality run: the --quick acceptance runs on the procedural data, with targets.

    python bench/quality_a5_pointnet.py [--skip_pointnet2] [--skip_robustness]

1. ``python -m a5_pointnet.train --task cls --quick``  -> test accuracy >= 0.95 (10000 points per cloud)
2. ``python -m a5_pointnet.train --task seg --quick``  -> test accuracy >= 0.85
3. the same with ``--model pointnet2`` (no target; reported)
4. ``python -m a5_pointnet.robustness --quick`` on the two PointNet models
Each run's wall time and CPU time are recorded next to the machine load. Writes
output/a5_pointnet/quality/metrics.json (and each run's own folder beside it); exits 1 when a
target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from a5_pointnet import robustness, train  # noqa: E402
from l3d.io import write_metrics  # noqa: E402

TARGETS = {"cls": 0.95, "seg": 0.85}


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn, argv):
    w, c = time.perf_counter(), _cpu_s()
    load = os.getloadavg()[0]
    assert fn(argv) == 0
    return {"wall_s": time.perf_counter() - w, "cpu_s": _cpu_s() - c, "load_at_start": load,
            "load_at_end": os.getloadavg()[0]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output_root", default="output/a5_pointnet/quality")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip_pointnet2", action="store_true")
    ap.add_argument("--skip_robustness", action="store_true")
    args = ap.parse_args(argv)
    root = Path(args.output_root)
    results, ok = {}, True
    runs = [("cls", "pointnet"), ("seg", "pointnet")]
    if not args.skip_pointnet2:
        runs += [("cls", "pointnet2"), ("seg", "pointnet2")]
    for task, arch in runs:
        name = f"{task}_{arch}"
        out = root / name
        timing = timed(train.main, ["--task", task, "--model", arch, "--quick", "--device", args.device,
                                    "--output_dir", str(out)])
        m = json.loads((out / "metrics.json").read_text())
        entry = {**timing, **{k: m[k] for k in ("test_accuracy", "epochs_trained", "best_epoch", "train_time_s",
                                                  "final_points", "train_points", "num_train", "num_test") if k in m}}
        for k in ("bbox_baseline_accuracy", "bbox_logreg_accuracy", "bbox_knn_accuracy"):
            if k in m:
                entry[k] = m[k]
        if arch == "pointnet":
            entry["target"] = TARGETS[task]
            entry["passed"] = m["test_accuracy"] >= TARGETS[task]
            ok &= entry["passed"]
        results[name] = entry
        print(f"{name}: test accuracy {m['test_accuracy']:.4f} in {timing['wall_s']:.0f} s wall, "
              f"{timing['cpu_s']:.0f} s CPU (load {timing['load_at_start']:.1f})", flush=True)
    if not args.skip_robustness:
        out = root / "robustness"
        timing = timed(robustness.main, ["--quick", "--device", args.device, "--cls_checkpoint", str(root / "cls_pointnet"),
                                         "--seg_checkpoint", str(root / "seg_pointnet"), "--output_dir", str(out)])
        m = json.loads((out / "metrics.json").read_text())
        results["robustness"] = {**timing, **{k: v for k, v in m.items() if k.startswith(("cls_", "seg_"))}}
    results["passed"] = bool(ok)
    write_metrics(root, results, merge=False)
    print(json.dumps(results, indent=1))
    print(f"wrote {root / 'metrics.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
