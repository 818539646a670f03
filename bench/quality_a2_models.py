"""Quality run (Assignment 2, Q2): image -> voxels / points / mesh on the procedural chairs.

    python bench/quality_a2_models.py [--types vox point mesh] [--threads 2] [--steps vox=700 ...]

For every type, on the "standard" procedural preset (480 training chairs x 6 views, 100 test
chairs x 6 views, generated once under output/.cache/a2_synthetic):
  model     train_model --type T --load_feat (ResNet-18 features precomputed once; ImageNet weights
            when the local torch cache has them, else the fixed random initialisation) for the
            steps and batch size of SETTINGS, Adam lr 4e-4, then eval_model on all 600 test views;
  baseline  the constant mean-shape predictor: the same decoder trained with a constant input
            (train_model --mean_shape) for the same steps, evaluated the same way.
Target: model F1@0.05 >= baseline F1@0.05 + 10. Each model's training + evaluation is timed
(budget 15 min on a CPU). Numbers go to output/a2_single_view/quality_models/metrics.json and
table.md; each run's outputs (loss curves, F1 curves, example GIFs) to subfolders there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from a2_single_view import eval_model, train_model  # noqa: E402
from l3d.cli import report  # noqa: E402
from l3d.io import atomic_path  # noqa: E402

# steps and batch size per type: each model trains and evaluates in under 15 minutes on a 2-core CPU
SETTINGS = {
    "vox": {"steps": 1500, "batch_size": 8},
    "point": {"steps": 1000, "batch_size": 32},
    "mesh": {"steps": 1000, "batch_size": 32},
}
TARGET_MARGIN = 10.0
BUDGET_S = 15 * 60


def run_one(kind: str, name: str, out: Path, steps: int, batch: int, extra, common) -> dict:
    t = time.perf_counter()
    tm = train_model.main(["--type", kind, "--max_iter", str(steps), "--batch_size", str(batch),
                           "--save_freq", str(steps), "--output_dir", str(out / f"{kind}_{name}" / "train"), *extra, *common])
    em = eval_model.main(["--type", kind, "--load_checkpoint", tm["checkpoint"], "--views_per_model", "0",
                          "--vis_count", "3", "--output_dir", str(out / f"{kind}_{name}" / "eval"), *common])
    return {"f1@0.05": em["f1@0.05"], "f1": [em[f"f1@{x:.2f}"] for x in (0.01, 0.02, 0.03, 0.04, 0.05)],
            "final_loss": tm["final_loss"], "steps": steps, "batch_size": batch, "time_s": time.perf_counter() - t,
            "train_s": tm["train_time_s"], "examples": em["examples"], "encoder": tm["encoder"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--steps", nargs="*", default=[], help="overrides, e.g. vox=500 point=800")
    ap.add_argument("--output_dir", default="output/a2_single_view/quality_models")
    ap.add_argument("--summary_only", action="store_true",
                    help="train nothing: rebuild table.md from metrics.json (with --merge: after adding those results)")
    ap.add_argument("--merge", nargs="*", default=[],
                    help="with --summary_only: output folders of other invocations whose results replace these")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = {k: dict(v) for k, v in SETTINGS.items()}
    for s in args.steps:
        k, v = s.split("=")
        settings[k]["steps"] = int(v)
    out = Path(args.output_dir)
    common = ["--data", "synthetic", "--preset", "standard", "--device", "cpu"]
    results = {}
    for src in args.merge:  # results of invocations that wrote elsewhere (--output_dir)
        results.update(json.loads((Path(src) / "metrics.json").read_text())["results"])
    for kind in [] if args.summary_only else args.types:
        st = settings[kind]
        model = run_one(kind, "model", out, st["steps"], st["batch_size"], ["--load_feat"], common)
        base = run_one(kind, "mean_shape", out, st["steps"], st["batch_size"], ["--mean_shape"], common)
        margin = model["f1@0.05"] - base["f1@0.05"]
        results[kind] = {"model": model, "mean_shape": base, "margin": margin, "target_met": margin >= TARGET_MARGIN,
                         "within_budget": model["time_s"] <= BUDGET_S}
        print(f"{kind}: F1@0.05 model {model['f1@0.05']:.1f} vs mean shape {base['f1@0.05']:.1f} "
              f"(margin {margin:+.1f}, target +{TARGET_MARGIN:g}); model train+eval {model['time_s'] / 60:.1f} min", flush=True)
    prev = out / "metrics.json"
    if prev.exists():  # keep the types of earlier invocations (--types runs a subset)
        try:
            results = {**json.loads(prev.read_text()).get("results", {}), **results}
            args.threads = json.loads(prev.read_text()).get("threads", args.threads)
        except (ValueError, OSError):
            pass
    results = {k: results[k] for k in SETTINGS if k in results}
    rows = [f"| {k} | {r['model']['steps']} x {r['model']['batch_size']} | {r['model']['f1@0.05']:.1f} | "
            f"{r['mean_shape']['f1@0.05']:.1f} | {r['margin']:+.1f} | {r['model']['time_s'] / 60:.1f} |"
            for k, r in results.items()]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if args.summary_only and prev.exists():  # the load of the training runs, not of this rebuild
        load = json.loads(prev.read_text()).get("load_average_end", load)
    table = ("# Image -> 3D on the procedural chairs (test: all views of 100 chairs)\n\n"
             "| type | steps x batch | F1@0.05 model | F1@0.05 mean shape | margin | model train+eval (min) |\n"
             "|---|---|---|---|---|---|\n" + "\n".join(rows) +
             f"\n\nResNet-18 features precomputed once (--load_feat); encoder: "
             f"{next(iter(results.values()))['model']['encoder'] if results else '-'}; torch threads {args.threads}; "
             f"load average at the end {load:.1f}.\n")
    with atomic_path(out / "table.md") as tmp:
        Path(tmp).write_text(table)
    report(out, {"results": results, "threads": args.threads, "load_average_end": load}, [out / "table.md"])
    print(table)
    return 0 if all(r["target_met"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
