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
import contextlib
import importlib
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Tuple

from .io import atomic_path, command_line, write_metrics


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


_INVOKED: Optional[Tuple[str, Sequence[str]]] = None  # set while a demo runs a script in-process


@contextlib.contextmanager
def invoked_as(module: str, argv: Sequence[str]) -> Iterator[None]:
    """Make :func:`report` record ``python -m <module> <argv>`` as the command (in-process runs)."""
    global _INVOKED
    saved, _INVOKED = _INVOKED, (module, list(argv))
    try:
        yield
    finally:
        _INVOKED = saved


def run_steps(steps: Sequence[Tuple[str, Sequence[str]]]) -> None:
    """Run ``module.main(argv)`` for every (module, argv) in order, in this process (a demo)."""
    for module, argv in steps:
        print(f"-- python -m {module} {' '.join(argv)}", flush=True)
        t = time.perf_counter()
        with invoked_as(module, argv):
            importlib.import_module(module).main(list(argv))
        print(f"   ({time.perf_counter() - t:.1f} s)", flush=True)


def report(output_dir: Any, metrics: Optional[Mapping[str, Any]] = None, written: Iterable[Any] = ()) -> None:
    """Write ``metrics.json`` (merged) and ``command.txt`` to the output folder and print a summary."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # command.txt keeps one line per distinct command that wrote into this folder
    line = command_line(["-"] + list(_INVOKED[1]), module=_INVOKED[0]) if _INVOKED else command_line()
    cmd_file = out / "command.txt"
    lines = cmd_file.read_text().splitlines() if cmd_file.exists() else []
    if line not in lines:
        with atomic_path(cmd_file) as tmp:
            Path(tmp).write_text("\n".join(lines + [line]) + "\n")
    if metrics:
        write_metrics(out, dict(metrics))
        for k, v in metrics.items():
            if isinstance(v, float):
                print(f"{k}: {v:.6g}")
            elif isinstance(v, (int, str)):
                print(f"{k}: {v}")
    for p in written:
        print(f"wrote {p}")
