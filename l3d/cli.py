"""Small building blocks shared by every command-line script of the project.

A script reads like a recipe::

    def main(argv=None):
        args = script_parser(__doc__, "a1_rendering/render_360").parse_args(argv)
        device = choose_device(args.device)
        ...
        report(args.output_dir, {"time_s": t}, written=[gif_path])

    if __name__ == "__main__":
        run_cli(main)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from .io import write_command, write_metrics


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults after every flag and keeps the description's line breaks."""


def script_parser(doc: Optional[str], default_output: str, output_file: Optional[str] = None) -> argparse.ArgumentParser:
    """An argparse parser with the flags every script shares.

    Adds ``--device``, ``--quick``, ``--seed`` and ``--output_dir`` (default
    ``output/<default_output>``); with ``output_file`` also ``--output_file`` (a path; default
    inside the output folder).
    """
    ap = argparse.ArgumentParser(description=doc, formatter_class=HelpFormatter)
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:<i>")
    ap.add_argument("--quick", action="store_true", help="small sizes and few frames/iterations: runs in seconds on a CPU")
    ap.add_argument("--seed", type=int, default=0, help="random seed")
    ap.add_argument("--output_dir", default=f"output/{default_output}", help="folder for everything the script writes")
    if output_file is not None:
        ap.add_argument("--output_file", default=None,
                        help=f"output path (default: <output_dir>/{output_file})")
    return ap


def output_path(args: argparse.Namespace, default_name: str) -> Path:
    """``args.output_file`` if given, else ``<output_dir>/<default_name>``; parent folders created."""
    p = Path(args.output_file) if getattr(args, "output_file", None) else Path(args.output_dir) / default_name
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def report(output_dir: Any, metrics: Optional[Mapping[str, Any]] = None, written: Iterable[Any] = ()) -> None:
    """Write ``metrics.json`` (merged) and ``command.txt`` to the output folder and print a summary."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_command(out)
    if metrics:
        write_metrics(out, dict(metrics))
        for k, v in metrics.items():
            if isinstance(v, float):
                print(f"{k}: {v:.6g}")
            elif isinstance(v, (int, str)):
                print(f"{k}: {v}")
    for p in written:
        print(f"wrote {p}")
