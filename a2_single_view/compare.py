"""Q2.4: quantitative comparison of the image -> 3D types (F1 against the threshold).

    python -m a2_single_view.compare [--eval_root output/a2_single_view] [--types vox point mesh implicit]

Reads the metrics.json that eval_model wrote for every type (eval_<type>/ under --eval_root)
and puts them side by side: compare_f1.png (mean F1 against the threshold, each type with its
mean-shape baseline dashed in the same colour), table.md (F1 per threshold, baseline F1@0.05,
margin, test images, training steps) and metrics.json. The check: every type's F1@0.05 is at
least 10 points above its own mean-shape baseline (the smallest margin of the types); a type
without an evaluation, or evaluated without its baseline, fails it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from l3d.checks import check
from l3d.cli import report, run_cli, script_parser
from l3d.errors import user_error
from l3d.run import atomic_path

from .eval_model import MIN_MARGIN, plot_f1_curves
from .evaluate import THRESHOLDS
from .models import KINDS

NAMES = {"vox": "voxels (2.1)", "point": "points (2.2)", "mesh": "mesh (2.3)", "implicit": "implicit (3.1)"}


NEEDED = tuple(f"f1@{t:.2f}" for t in THRESHOLDS) + ("examples",)


def read_eval(path: Path) -> dict:
    """The metrics.json of an eval_model run, checked for what the comparison reads."""
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise user_error(path, "the JSON eval_model writes", f"a damaged file ({type(e).__name__})") from None
    if not isinstance(m, dict):
        raise user_error(path, "a JSON object", type(m).__name__)
    missing = [k for k in NEEDED if not isinstance(m.get(k), (int, float))]
    if missing:
        raise user_error(path, "the numbers eval_model writes", f"no {', '.join(missing[:3])}",
                         "run eval_model again")
    return m


def main(argv=None):
    ap = script_parser(__doc__, "a2_single_view/compare")
    ap.add_argument("--eval_root", default="output/a2_single_view", help="folder holding eval_<type>/metrics.json")
    ap.add_argument("--types", nargs="+", choices=KINDS, default=list(KINDS), help="types to compare")
    args = ap.parse_args(argv)
    root = Path(args.eval_root)
    found, missing = {}, []
    for kind in args.types:
        path = root / f"eval_{kind}" / "metrics.json"
        if not path.is_file():
            missing.append(kind)
            continue
        found[kind] = read_eval(path)
    if not found:
        raise user_error("--eval_root", f"eval_<type>/metrics.json of {', '.join(args.types)} under {root}", "none",
                         "run eval_model first")
    curves, dashed, rows, margins = {}, [], [], {}
    for kind, m in found.items():
        curves[NAMES[kind]] = [m[f"f1@{t:.2f}"] for t in THRESHOLDS]
        if "baseline_f1@0.05" in m:
            name = f"{kind} mean shape"
            curves[name] = [m.get(f"baseline_f1@{t:.2f}", float("nan")) for t in THRESHOLDS]
            dashed.append(name)
            margins[kind] = m["margin_f1@0.05"]
        rows.append(f"| {NAMES[kind]} | " + " | ".join(f"{m[f'f1@{t:.2f}']:.1f}" for t in THRESHOLDS)
                    + f" | {m.get('baseline_f1@0.05', float('nan')):.1f} | {m.get('margin_f1@0.05', float('nan')):+.1f} | "
                    f"{m['examples']} | {m.get('train_steps_of_checkpoint', '-')} | {m.get('empty_predictions', 0)} |")
    written = [plot_f1_curves(curves, Path(args.output_dir) / "compare_f1.png",
                              "F1 vs threshold of every type (dashed: its mean-shape baseline)", dashed=dashed)]
    head = ("| type | " + " | ".join(f"F1@{t:.2f}" for t in THRESHOLDS)
            + " | mean shape F1@0.05 | margin | test images | training steps | empty predictions |")
    table = ("# Image to 3D: F1 of every type on the held-out test images\n\n" + head + "\n|"
             + "---|" * (len(THRESHOLDS) + 6) + "\n" + "\n".join(rows) + "\n")
    if missing:
        table += f"\nNot evaluated: {', '.join(missing)}.\n"
    out = Path(args.output_dir)
    with atomic_path(out / "table.md") as tmp:
        Path(tmp).write_text(table)
    written.append(out / "table.md")
    lacking = [k for k in args.types if k not in margins]
    worst = min(margins.values()) if margins and not lacking else -math.inf
    data = next((m["data"] for m in found.values() if "data" in m), None)
    metrics = {"types": list(found), "margins@0.05": margins, "missing": lacking,
               **{f"f1@0.05_{k}": m["f1@0.05"] for k, m in found.items()},
               **({"data": data} if data else {}),
               "checks": {"smallest_margin_over_mean_shape": check(
                   worst, min=MIN_MARGIN,
                   what="the smallest, over " + ", ".join(args.types) + ", of F1@0.05 minus the type's mean-shape "
                        "baseline F1@0.05 (same test images)" + (f"; no baseline for {', '.join(lacking)}" if lacking else ""))}}
    report(out, metrics, written)
    print(table)
    return metrics


if __name__ == "__main__":
    run_cli(main)
