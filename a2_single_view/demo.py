"""Quick run of every part of Assignment 2 (single view to 3D) on the quick procedural set.

    python -m a2_single_view.demo [--output_dir output/a2_single_view] [--device auto]

Q1 fit_data (vox, point, mesh); Q2 train_model + eval_model (vox, point, mesh) and Q3.1 the
implicit decoder, each trained beside its mean-shape baseline and evaluated against it on the
held-out test chairs; Q2.4 the F1 comparison of the four types; Q2.5 the w_smooth sweep; Q2.6
per-point errors and failure cases; Q3.3 one vs three classes (the two studies fine-tune the trained
Q2.3 / Q2.2 models for 50 steps per setting).
Every step runs at --quick size: short, seeded runs that converge, each writing the number that
proves it, with its threshold, to its metrics.json ("checks"). Training uses precomputed
ResNet-18 features (--load_feat), computed once for the quick set; the procedural data set is
generated on first use under output/.cache/a2_synthetic.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from l3d.cli import invoked_as, run_cli, script_parser

from . import compare, eval_model, fit_data, interpret, study_classes, study_wsmooth, train_model


def main(argv=None):
    ap = script_parser(__doc__, "a2_single_view")
    ap.add_argument("--output_root", default=None, help="the older name of --output_dir: folder of every part's outputs")
    args = ap.parse_args(argv)  # every part runs at --quick size, with or without --quick
    root = args.output_root or args.output_dir
    common = ["--quick", "--device", args.device, "--seed", str(args.seed)]
    t0 = time.perf_counter()
    steps = []
    for kind in ("vox", "point", "mesh"):
        steps.append(("fit_data " + kind, fit_data.main, ["--type", kind, "--output_dir", f"{root}/fit_{kind}"]))
    point_ckpt = f"{root}/train_point/checkpoints/last.pt"
    for kind in ("point", "mesh", "vox", "implicit"):
        ck = f"{root}/train_{kind}"
        # the mesh decoder starts from the point decoder's trained trunk (the same fully connected layers)
        init = ["--init_from", point_ckpt] if kind == "mesh" else []
        steps.append(("train_model " + kind, train_model.main,
                      ["--type", kind, "--load_feat", *init, "--output_dir", ck]))
        steps.append(("eval_model " + kind, eval_model.main,
                      ["--type", kind, "--load_checkpoint", f"{ck}/checkpoints/last.pt", "--output_dir", f"{root}/eval_{kind}"]))
    steps.append(("compare", compare.main, ["--eval_root", root, "--output_dir", f"{root}/compare"]))
    # the studies fine-tune the trained models for 50 steps per setting
    steps.append(("study_wsmooth", study_wsmooth.main, ["--load_feat", "--init_from", f"{root}/train_mesh/checkpoints/last.pt",
                                                        "--steps", "50", "--output_dir", f"{root}/study_wsmooth"]))
    steps.append(("interpret point", interpret.main, ["--type", "point", "--load_checkpoint", point_ckpt,
                                                      "--output_dir", f"{root}/interpret_point"]))
    steps.append(("study_classes point", study_classes.main, ["--type", "point", "--load_feat", "--init_from", point_ckpt,
                                                              "--steps", "50",
                                                              "--output_dir", f"{root}/study_classes_point"]))
    for name, fn, argv_ in steps:
        t, c = time.perf_counter(), time.process_time()
        print(f"== a2_single_view {name}", flush=True)
        with invoked_as(fn.__module__, [*argv_, *common]):  # command.txt records the part's own command
            fn([*argv_, *common])
        print(f"   ({time.perf_counter() - t:.1f} s, {time.process_time() - c:.1f} s CPU)", flush=True)
    # every part's checks in one list
    from .parts import PARTS

    failed = []
    for part in PARTS:
        path = Path(root) / part.folder.split("/", 1)[1] / "metrics.json"  # folders are relative to output/
        checks = json.loads(path.read_text()).get("checks", {}) if path.is_file() else {}
        for name in part.checks:
            c = checks.get(name)
            state = "missing" if c is None else ("pass" if c.get("pass") else "FAIL")
            if state != "pass":
                failed.append(f"{part.key} {name}")
            value = "-" if c is None else f"{c['value']:.4g}" if isinstance(c["value"], float) else c["value"]
            limit = "" if c is None else " ".join(f"{k} {c[k]:g}" for k in ("min", "max") if k in c)
            print(f"{part.key:8s} {name:36s} {value:>10} ({limit}) {state}")
    print(f"a2_single_view demo done in {time.perf_counter() - t0:.0f} s ({time.process_time():.0f} s CPU); "
          f"outputs under {root}/"
          + (f"; failing: {', '.join(failed)}" if failed else "; every check passes"))
    return 0


if __name__ == "__main__":
    run_cli(main)
