"""Quick run of every part of Assignment 2 (single view to 3D) on the tiny procedural set.

    python -m a2_single_view.demo [--output_root output/a2_single_view]

Q1 fit_data (vox, point, mesh), Q2 train_model + eval_model (vox, point, mesh) and Q3.1 the
implicit decoder, Q2.5 the w_smooth sweep, Q2.6 per-point errors and failure cases, Q3.3 one vs
three classes -- each at --quick size (seconds each on a CPU; the numbers mean little at this
size: the quality runs are bench/quality_a2_*.py). Training uses precomputed ResNet-18
features (--load_feat), computed once for the tiny set.
"""

from __future__ import annotations

import argparse
import time

from l3d.train import run_cli

from . import eval_model, fit_data, interpret, study_classes, study_wsmooth, train_model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output_root", default="output/a2_single_view", help="folder of every part's outputs")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = ap.parse_args([] if argv is None else argv)
    root = args.output_root
    common = ["--quick", "--device", args.device]
    t0 = time.perf_counter()
    steps = []
    for kind in ("vox", "point", "mesh"):
        steps.append(("fit_data " + kind, fit_data.main, ["--type", kind, "--output_dir", f"{root}/fit_{kind}"]))
    for kind in ("vox", "point", "mesh", "implicit"):
        ck = f"{root}/train_{kind}"
        steps.append(("train_model " + kind, train_model.main,
                      ["--type", kind, "--load_feat", "--output_dir", ck]))
        steps.append(("eval_model " + kind, eval_model.main,
                      ["--type", kind, "--load_checkpoint", f"{ck}/checkpoints/last.pt", "--output_dir", f"{root}/eval_{kind}"]))
    steps.append(("study_wsmooth", study_wsmooth.main, ["--load_feat", "--output_dir", f"{root}/study_wsmooth"]))
    steps.append(("interpret point", interpret.main, ["--type", "point", "--load_checkpoint",
                                                      f"{root}/train_point/checkpoints/last.pt",
                                                      "--output_dir", f"{root}/interpret_point"]))
    steps.append(("study_classes point", study_classes.main, ["--type", "point", "--load_feat",
                                                              "--output_dir", f"{root}/study_classes_point"]))
    for name, fn, argv_ in steps:
        t = time.perf_counter()
        print(f"== a2_single_view {name}", flush=True)
        fn([*argv_, *common])
        print(f"   ({time.perf_counter() - t:.1f} s)", flush=True)
    print(f"a2_single_view demo done in {time.perf_counter() - t0:.0f} s; outputs under {root}/")
    return 0


if __name__ == "__main__":
    run_cli(main)
