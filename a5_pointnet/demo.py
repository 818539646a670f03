"""Quick tour of Assignment 5 on the procedural data (about 1.5 minutes of one CPU core,
generating the data included):

1. train a PointNet classifier and a part-segmentation PointNet (small data, few epochs, 256-512
   training points per cloud; the test accuracy in their metrics.json uses 2000 points per cloud),
2. evaluate both at the course's 10000 points per cloud (accuracies, bounding-box baseline,
   turntable GIFs of correct and failed cases): checks cls >= 0.90, seg >= 0.80,
3. the robustness sweeps (rotation, number of points) on part of the test split: checks that the
   upright accuracy holds, that accuracy falls under large rotations, and that few points suffice,
4. train and evaluate PointNet++ (the model with locality) for classification at 10000 points:
   check >= 0.90.

    python -m a5_pointnet.demo

Every run is seeded (data, initialisation, batches, point subsets), so two runs give the same
numbers on the same machine. Writes
output/a5_pointnet/{cls,seg,eval_cls,eval_seg,robustness,cls_pointnet2,eval_cls_pointnet2}/, each
with a metrics.json holding its "checks" and "data"; prints every check at the end. The longer
--quick acceptance runs are ``python -m a5_pointnet.train --task cls --quick`` (and seg), or
``make quality``.

This module imports torch only inside :func:`main`: :mod:`a5_pointnet.parts` reads its steps.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import List, Tuple

from l3d.checks import check_passed
from l3d.cli import ScriptParser

OUT = "output/a5_pointnet"
#: the course's 30 views at 15 fps (2 s per turn), at 144 pixels
VIS = ["--num_frames", "30", "--fps", "15", "--image_size", "144"]
#: procedural data set sizes (train, test) of the demo
CLS_DATA = ["--data", "synthetic", "--num_train", "480", "--num_test", "90"]
SEG_DATA = ["--data", "synthetic", "--num_train", "240", "--num_test", "40"]
#: training: final test accuracy of the best checkpoint at 2000 points, no periodic checkpoints
FINAL = ["--final_points", "2000", "--bn_batches", "4", "--save_every", "0"]


def steps(root: str = OUT) -> List[Tuple[str, List[str]]]:
    """(module of a5_pointnet, its flags) of every run of the demo, in order; each writes the
    folder after its ``--output_dir``."""
    return [
        ("train", ["--task", "cls", "--output_dir", f"{root}/cls", "--quick", "--num_epochs", "2",
                   "--num_points", "512", "--eval_points", "512", *FINAL, *CLS_DATA]),
        ("train", ["--task", "seg", "--output_dir", f"{root}/seg", "--quick", "--num_epochs", "8", "--batch_size", "8",
                   "--lr", "0.002", "--num_points", "256", "--eval_points", "512", *FINAL, *SEG_DATA]),
        ("eval_cls", ["--load_checkpoint", f"{root}/cls", "--output_dir", f"{root}/eval_cls", "--batch_size", "4",
                      *VIS]),
        ("eval_seg", ["--load_checkpoint", f"{root}/seg", "--output_dir", f"{root}/eval_seg", "--batch_size", "4",
                      "--num_cases", "1", *VIS]),
        ("robustness", ["--cls_checkpoint", f"{root}/cls", "--seg_checkpoint", f"{root}/seg", "--output_dir",
                        f"{root}/robustness", "--num_objects", "40", "--rotation_points", "1000",
                        "--example_angles", "90", *VIS]),
        ("train", ["--task", "cls", "--model", "pointnet2", "--output_dir", f"{root}/cls_pointnet2", "--quick",
                   "--num_epochs", "2", "--num_points", "512", "--eval_points", "512", "--no-baseline", *FINAL,
                   *CLS_DATA]),
        ("eval_cls", ["--load_checkpoint", f"{root}/cls_pointnet2", "--output_dir", f"{root}/eval_cls_pointnet2",
                      "--no-baseline", *VIS]),
    ]


def _output_dir(flags: List[str]) -> str:
    return flags[flags.index("--output_dir") + 1]


def commands_for(folder: str, root: str = OUT) -> str:
    """The shell commands of the demo that make ``<root>/<folder>``: its own run, preceded by the
    runs that write the checkpoints it reads (``python -m a5_pointnet.<module> ...`` joined by
    ``&&``)."""
    runs = steps(root)
    target = f"{root}/{folder}"
    index = next(i for i, (_, f) in enumerate(runs) if _output_dir(f) == target)
    _, flags = runs[index]
    needs = {flags[i + 1] for i, f in enumerate(flags) if f in ("--load_checkpoint", "--cls_checkpoint",
                                                                   "--seg_checkpoint")}
    chosen = [r for r in runs[:index] if _output_dir(r[1]) in needs] + [runs[index]]
    return " && ".join(f"python -m a5_pointnet.{mod} {' '.join(fl)}" for mod, fl in chosen)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def build_parser() -> ScriptParser:
    ap = ScriptParser(description=__doc__)
    ap.add_argument("--output_root", default=OUT, help="parent folder of the parts' output folders")
    ap.add_argument("--cache_dir", default="output/.cache", help="where the procedural data are generated once")
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:<i>")
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)  # --help ends here, before torch is loaded
    from . import eval_cls, eval_seg, robustness, train
    from .common import retain_freed_memory

    retain_freed_memory()
    t0, c0 = time.perf_counter(), _cpu_s()
    mains = {"train": train.main, "eval_cls": eval_cls.main, "eval_seg": eval_seg.main, "robustness": robustness.main}
    folders = []
    for mod, flags in steps(args.output_root):
        flags = [*flags, "--device", args.device, "--cache_dir", args.cache_dir]
        print(f"== a5_pointnet.{mod} {' '.join(flags)}", flush=True)
        w, c = time.perf_counter(), _cpu_s()
        assert mains[mod](flags) in (0, None)
        folders.append(_output_dir(flags))
        print(f"   ({_cpu_s() - c:.1f} s CPU, {time.perf_counter() - w:.1f} s wall)", flush=True)

    failed = []
    print("checks:")
    for folder in folders:
        checks = json.loads((Path(folder) / "metrics.json").read_text()).get("checks", {})
        for name, entry in checks.items():
            ok = check_passed(entry)
            bound = f">= {entry['min']:g}" if "min" in entry else f"<= {entry['max']:g}"
            print(f"  {'pass' if ok else 'FAIL'}  {Path(folder).name}/{name} = {entry['value']:.4f} ({bound})")
            if not ok:
                failed.append(f"{Path(folder).name}/{name}")
    print(f"a5_pointnet demo done in {_cpu_s() - c0:.0f} s CPU ({time.perf_counter() - t0:.0f} s wall); "
          f"outputs under {args.output_root}/" + (f"; FAILED checks: {', '.join(failed)}" if failed
                                                   else "; every check passed"))
    return 0


if __name__ == "__main__":
    from l3d.cli import run_cli

    run_cli(main)
