"""Quick tour of Assignment 5 on the procedural data (a few minutes of CPU at most):

1. train a PointNet classifier and a part-segmentation PointNet (small data, few epochs; the
   test accuracy in their metrics.json uses 2000 points per cloud),
2. evaluate both at the course's 10000 points per cloud (accuracies, bounding-box baseline,
   turntable GIFs of correct and failed cases),
3. the robustness sweeps (rotation, number of points) on part of the test split,
4. train and evaluate PointNet++ (the model with locality) for classification.

    python -m a5_pointnet.demo

Writes output/a5_pointnet/{cls,seg,eval_cls,eval_seg,robustness,cls_pointnet2,eval_cls_pointnet2}/.
For the accuracy targets run ``python -m a5_pointnet.train --task cls --quick`` (and seg), or
``make quality``.
"""

from __future__ import annotations

import argparse
import time

from l3d.train import run_cli

from . import eval_cls, eval_seg, robustness, train

OUT = "output/a5_pointnet"
VIS = ["--num_frames", "10", "--image_size", "128"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output_root", default=OUT, help="parent folder of the parts' output folders")
    ap.add_argument("--cache_dir", default="output/.cache", help="where the procedural data are generated once")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = ap.parse_args(argv)
    root, dev = args.output_root, ["--device", args.device, "--cache_dir", args.cache_dir]
    t0 = time.perf_counter()

    def step(name, fn, flags):
        print(f"== a5_pointnet.{name} {' '.join(flags)}", flush=True)
        assert fn(flags) in (0, None)

    data_cls = ["--data", "synthetic", "--num_train", "240", "--num_test", "60"]
    data_seg = ["--data", "synthetic", "--num_train", "120", "--num_test", "30"]
    fast = ["--quick", "--num_points", "512", "--eval_points", "512", "--final_points", "2000", "--bn_batches", "4"]
    step("train", train.main, ["--task", "cls", "--output_dir", f"{root}/cls", "--num_epochs", "2", *fast, *data_cls, *dev])
    step("train", train.main, ["--task", "seg", "--output_dir", f"{root}/seg", "--num_epochs", "3", "--batch_size", "8",
                               *fast, *data_seg, *dev])
    step("eval_cls", eval_cls.main, ["--load_checkpoint", f"{root}/cls", "--output_dir", f"{root}/eval_cls", *VIS, *dev])
    step("eval_seg", eval_seg.main, ["--load_checkpoint", f"{root}/seg", "--output_dir", f"{root}/eval_seg",
                                     "--num_cases", "1", *VIS, *dev])
    step("robustness", robustness.main, ["--cls_checkpoint", f"{root}/cls", "--seg_checkpoint", f"{root}/seg",
                                         "--output_dir", f"{root}/robustness", "--num_objects", "20",
                                         "--rotation_points", "1000", "--example_angles", "90", *VIS, *dev])
    step("train", train.main, ["--task", "cls", "--model", "pointnet2", "--output_dir", f"{root}/cls_pointnet2",
                               "--num_epochs", "1", *fast, *data_cls, *dev])
    step("eval_cls", eval_cls.main, ["--load_checkpoint", f"{root}/cls_pointnet2", "--output_dir",
                                     f"{root}/eval_cls_pointnet2", "--num_points", "2000", "--no-baseline", *VIS, *dev])
    print(f"a5_pointnet demo done in {time.perf_counter() - t0:.0f} s; outputs under {root}/")
    return 0


if __name__ == "__main__":
    run_cli(main)
