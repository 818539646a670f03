"""Benchmark: F1 evaluation of a batch of predictions against SciPy cKDTree queries.

    python bench/bench_a2_f1.py [--batch 32 --points 1000 --repeats 3]

Times, on the same point sets in the same run:
  ours       a2_single_view.evaluate.f1_scores (1-NN distances both ways with l3d.ops.knn_points,
             precision / recall / F1 at the five thresholds);
  reference  the obvious SciPy version: per item, a cKDTree on each set, queried with the other
             (workers=-1), then the same counting in numpy.
  vox path   for information: a2_single_view.evaluate.evaluate_batch("vox", ...) on 32^3 grids
             (marching cubes per grid, surface sampling, centring, F1).
Prints the best-of-``repeats`` times and the ratio reference / ours (> 1: ours is faster), checks
that both give the same F1, and writes everything to output/bench/a2_f1.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from a2_single_view.evaluate import THRESHOLDS, evaluate_batch, f1_scores  # noqa: E402
from l3d.ops import ico_sphere  # noqa: E402
from l3d.structures import Meshes  # noqa: E402


def reference_f1(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    th = np.asarray(THRESHOLDS)
    out = []
    for p, g in zip(pred, gt):
        d_pg, _ = cKDTree(g).query(p, k=1, workers=-1)
        d_gp, _ = cKDTree(p).query(g, k=1, workers=-1)
        prec = 100 * (d_pg[:, None] < th).mean(0)
        rec = 100 * (d_gp[:, None] < th).mean(0)
        out.append(2 * prec * rec / (prec + rec + 1e-8))
    return np.stack(out)


def best(fn, repeats):
    ts, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return min(ts), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output", default="output/bench/a2_f1.json")
    args = ap.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(args.batch, args.points, 3, generator=g) - 0.5
    pred = gt + 0.03 * torch.randn(args.batch, args.points, 3, generator=g)
    f1_scores(pred[:2], gt[:2])  # warm-up
    t_ours, r = best(lambda: f1_scores(pred, gt), args.repeats)
    t_ref, ref = best(lambda: reference_f1(pred.double().numpy(), gt.double().numpy()), args.repeats)
    diff = float(np.abs(r.f1.numpy() - ref).max())
    # the voxel path, for information
    s = ico_sphere(3)
    meshes = Meshes([0.3 * s.verts_packed()] * args.batch, [s.faces_packed()] * args.batch)
    grids = torch.zeros(args.batch, 1, 32, 32, 32)
    grids[:, :, 6:26, 6:26, 6:26] = 1.0
    t_vox, _ = best(lambda: evaluate_batch("vox", grids, meshes, args.points), max(1, args.repeats - 1))
    result = {"batch": args.batch, "points": args.points, "ours_s": t_ours, "reference_scipy_s": t_ref,
              "ratio_reference_over_ours": t_ref / t_ours, "max_f1_difference": diff, "vox_eval_path_s": t_vox,
              "torch_threads": torch.get_num_threads()}
    print(f"F1 of {args.batch} x {args.points} vs {args.points} points at {len(THRESHOLDS)} thresholds, best of {args.repeats}")
    print(f"  ours (l3d knn both ways): {t_ours * 1e3:.1f} ms")
    print(f"  reference (SciPy cKDTree x2 per item): {t_ref * 1e3:.1f} ms")
    print(f"  ratio reference / ours: {t_ref / t_ours:.2f}  (> 1 means ours is faster)")
    print(f"  vox evaluation path (marching cubes + sampling + F1) for the batch: {t_vox * 1e3:.0f} ms")
    print(f"  largest F1 difference: {diff:.2e}")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    if diff > 0.2:  # one point in 1000 may flip at a threshold in float32
        print("ERROR: ours and the reference disagree", file=sys.stderr)
        sys.exit(1)
    return result


if __name__ == "__main__":
    main()
