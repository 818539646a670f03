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
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, Mapping, Optional, Sequence, Tuple

from .errors import UserError, os_error_line
from .run import command_line, peak_memory, set_tensorboard, write_command, write_metrics


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults after every flag and keeps the description's line breaks."""

    def _get_help_string(self, action):
        # no "(default: None)" / "(default: False)" noise on optional paths and switches
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS \
                or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


# --------------------------------------------------------------------------------------------
# value types: bad values are caught by argparse with the flag's name in the message
# --------------------------------------------------------------------------------------------
def _number(kind, lo, lo_open, name):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name}, found {text!r}") from None
        if kind is float and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"expected {name}, found {text!r}")
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise argparse.ArgumentTypeError(f"expected {name}, found {text}")
        return v

    parse.__name__ = name.replace(" ", "_")
    return parse


positive_int = _number(int, 0, True, "a positive integer")
nonneg_int = _number(int, 0, False, "an integer >= 0")
positive_float = _number(float, 0.0, True, "a positive number")
nonneg_float = _number(float, 0.0, False, "a number >= 0")
finite_float = _number(float, None, False, "a finite number")


# --------------------------------------------------------------------------------------------
# one flag vocabulary
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Flag:
    """One idea's flag: its name, value type, help, and the older or course names it also accepts."""

    name: str
    type: Optional[Callable[[str], Any]] = None
    help: str = ""
    aliases: Tuple[str, ...] = ()
    action: Optional[str] = None


#: The flags every script spells the same way (README: "Flag glossary"). Course names that the
#: course's own instructions use stay accepted as aliases.
VOCABULARY: Dict[str, Flag] = {f.name.lstrip("-"): f for f in (
    Flag("--steps", positive_int, "optimisation steps (iterations)", ("--num_itrs", "--max_iter", "--iterations")),
    Flag("--num_epochs", positive_int, "passes over the training set"),
    Flag("--batch_size", positive_int, "samples per optimisation step"),
    Flag("--lr", positive_float, "learning rate"),
    Flag("--save_every", nonneg_int, "steps between checkpoints (0: only at the end and on Ctrl-C)",
         ("--save_freq", "--ckpt_every")),
    Flag("--resume", None, "continue from the newest intact checkpoint in the output folder", action="store_true"),
    Flag("--load_checkpoint", None, "checkpoint file, or the run folder whose checkpoints/ to read"),
    Flag("--num_points", positive_int, "points per cloud", ("--n_points",)),
    Flag("--image_size", positive_int, "image side in pixels"),
    Flag("--num_frames", positive_int, "frames of the turntable / animation"),
    Flag("--fps", positive_float, "frames per second of the GIF or video"),
    Flag("--data_path", None, "input data (file or folder); 'synthetic' forces the built-in stand-in"),
    Flag("--index", nonneg_int, "index of the object to visualise", ("--i",)),
    Flag("--export_mesh", None, "also write mesh.ply and mesh.obj of the field's level set (marching cubes)",
         action="store_true"),
    Flag("--mesh_resolution", positive_int, "grid samples per axis of the exported mesh's field"),
    Flag("--mesh_level", finite_float, "iso-value of the exported mesh (SDF: 0; NeRF density: e.g. 10 or 50)"),
    Flag("--no_tensorboard", None, "do not write TensorBoard logs of the losses (<output_dir>/tensorboard/; "
         "the CSV and PNG curves are written either way; scripts that log no losses ignore it)", action="store_true"),
    Flag("--tensorboard_image_every", nonneg_int, "steps between the fixed validation image in TensorBoard "
         "(<output_dir>/tensorboard/, tab IMAGES; the last step always logs one; 0: the last step only)"),
)}


class ScriptParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that knows the shared vocabulary and applies presets.

    ``add_flag("steps", default=1000)`` adds ``--steps`` with its type, help and aliases from
    :data:`VOCABULARY` (``help=`` refines the help). ``presets={"quick": {"steps": 200}}`` makes
    ``--quick`` (or ``--preset quick``) set ``steps`` to 200 *unless the user gave --steps*, so
    ``--quick --steps 50`` runs 50 steps. The dests the user gave are in ``args.given``.
    """

    def __init__(self, *args, presets: Optional[Mapping[str, Mapping[str, Any]]] = None, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)  # no silent prefix matches: every flag is spelt out
        super().__init__(*args, **kwargs)
        self.presets = {k: dict(v) for k, v in (presets or {}).items()}

    def add_flag(self, key: str, default: Any = None, help: Optional[str] = None, aliases: Sequence[str] = (),
                 **kwargs) -> argparse.Action:
        """Add the shared flag ``--<key>``; ``aliases`` adds a script's own older spellings (for
        example the course's ``--data_dir``) to the shared ones."""
        spec = VOCABULARY[key]
        if spec.action:
            kwargs.setdefault("action", spec.action)
        elif spec.type is not None:
            kwargs.setdefault("type", spec.type)
        names = [spec.name, *spec.aliases, *[a for a in aliases if a not in spec.aliases]]
        return self.add_argument(*names, dest=key, default=default, help=help or spec.help, **kwargs)

    def given_dests(self, argv: Sequence[str]) -> set:
        """The dests of the options that appear in ``argv`` (``--flag value`` or ``--flag=value``)."""
        given = set()
        for tok in argv:
            if tok == "--":
                break
            if tok.startswith("-"):
                action = self._option_string_actions.get(tok.split("=", 1)[0])
                if action is not None:
                    given.add(action.dest)
        return given

    def parse_args(self, args: Optional[Sequence[str]] = None, namespace=None):  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        ns = super().parse_args(argv, namespace)
        given = self.given_dests(argv)
        active = []
        if getattr(ns, "quick", False):
            active.append("quick")
        if getattr(ns, "preset", None):
            active.append(ns.preset)
        for name in active:
            for dest, value in self.presets.get(name, {}).items():
                if dest not in given:
                    setattr(ns, dest, value)
        ns.given = given
        if hasattr(ns, "no_tensorboard"):  # every LossLog this script opens follows the flag
            set_tensorboard(False if ns.no_tensorboard else None)
        return ns


def script_parser(doc: Optional[str], default_output: str, output_file: Optional[str] = None,
                  presets: Optional[Mapping[str, Mapping[str, Any]]] = None) -> ScriptParser:
    """A :class:`ScriptParser` with the flags every script shares.

    Adds ``--device``, ``--quick``, ``--seed``, ``--output_dir`` (default
    ``output/<default_output>``) and ``--no_tensorboard`` (parsing it turns off the TensorBoard
    files of every :class:`~l3d.run.LossLog` the script then opens: one switch for every trainer);
    with ``output_file`` also ``--output_file`` (a path; default inside the output folder); with
    more presets than ``quick``, ``--preset NAME``.
    """
    ap = ScriptParser(description=doc, presets=presets)
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:<i>")
    quick = presets.get("quick") if presets else None
    quick_help = "the quick preset: a short run that still converges (small sizes, few steps)"
    if quick:
        quick_help += ": " + ", ".join(f"--{k} {v}" for k, v in quick.items() if not isinstance(v, bool))
    ap.add_argument("--quick", action="store_true", help=quick_help + "; flags you give win")
    others = sorted(set(presets or {}) - {"quick"})
    if others:
        def flag(k, v):
            return f"--{k} {' '.join(map(str, v)) if isinstance(v, (tuple, list)) else v}"

        listed = "; ".join(f"{name}: " + ", ".join(flag(k, v) for k, v in presets[name].items()
                                                   if not isinstance(v, bool)) for name in others)
        ap.add_argument("--preset", choices=others, default=None,
                        help=f"a named preset ({listed}); flags you give win")
    ap.add_argument("--seed", type=int, default=0, help="random seed")
    ap.add_argument("--output_dir", default=f"output/{default_output}", help="folder for everything the script writes")
    if output_file is not None:
        ap.add_argument("--output_file", default=None, help=f"output path (default: <output_dir>/{output_file})")
    ap.add_flag("no_tensorboard", default=False)
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


def current_command() -> str:
    """The command line of the script now running (the demo's in-process runs included)."""
    return command_line(["-"] + list(_INVOKED[1]), module=_INVOKED[0]) if _INVOKED else command_line()


def report(output_dir: Any, metrics: Optional[Mapping[str, Any]] = None, written: Iterable[Any] = ()) -> None:
    """Write ``metrics.json`` (merged) and ``command.txt`` to the output folder and print a summary.
    The metrics get the process's peak memory (:func:`~l3d.run.peak_memory`: CPU RSS, CUDA)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_command(out, current_command())
    if metrics:
        metrics = {**metrics, **peak_memory()}
        write_metrics(out, metrics)
        for k, v in metrics.items():
            if isinstance(v, float):
                print(f"{k}: {v:.6g}")
            elif isinstance(v, (int, str)):
                print(f"{k}: {v}")
    for p in written:
        print(f"wrote {p}")


# ----------------------------------------------------------------------------------------------
# the entry point: user errors in one line, bugs with their traceback
# ----------------------------------------------------------------------------------------------
def error_line(exc: BaseException) -> Optional[str]:
    """The one line to print for an error the user can fix, or None for a bug.

    User errors are :class:`~l3d.errors.UserError` (bad file, flag, config value, a run that
    diverged, an output folder in use) and the environment's ``OSError`` s a user acts on (full
    disk, permissions, a missing file, a name too long). Everything else, ``ValueError`` included,
    is a bug in this code and keeps its traceback."""
    if isinstance(exc, UserError):
        return " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError):
        return os_error_line(exc)
    return None


def guarded(main: Callable[..., Any], *args: Any) -> Any:
    """Call ``main(*args)``; a user error prints ``error: <one line>`` and exits with status 2,
    Ctrl-C exits with 130. ``L3D_DEBUG=1`` re-raises with the full traceback."""
    debug = os.environ.get("L3D_DEBUG", "") not in ("", "0")
    try:
        return main(*args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    except Exception as exc:
        line = None if debug else error_line(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr, flush=True)
        sys.exit(2)


def run_cli(main: Callable[..., Any], argv: Optional[Sequence[str]] = None) -> Any:
    """Run a script's ``main`` as an entry point (see :func:`guarded`).

    ``main(argv)`` is called when ``argv`` is given, else ``main()`` (argparse then reads
    ``sys.argv``). An ``int`` returned by ``main`` becomes the exit status; anything else is
    returned."""
    result = guarded(main) if argv is None else guarded(main, list(argv))
    if isinstance(result, int) and not isinstance(result, bool):
        sys.exit(result)
    return result
