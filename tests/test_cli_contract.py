"""Every entry point answers ``--help`` and speaks the shared flag vocabulary (README: "Flag glossary").

The entry points are found, not listed: every module of the packages with a ``__main__`` block.
Each one's ``--help`` runs in this process (one torch import for all of them) and its flags are
checked against :data:`l3d.cli.VOCABULARY`:

- an idea with a shared name is spelt that way (``--steps``, not ``--iters``; ``--save_every``, not
  ``--ckpt_every``; ``--num_points``, not ``--n_points``; ``--data_path``, not ``--data_root``), the
  course's spellings only as aliases of the shared flag;
- no one-letter long flags (``--h``, ``--r``) except the course's ``--i`` (alias of ``--index``);
- every flag explains itself (help text), and prefixes of flags are not accepted silently;
- the shared flags keep their shared meaning (``--quick`` is a switch, ``--seed`` an integer, ...).

The Hydra apps of A3 are checked through Hydra's own ``--help`` and their config schema.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import runpy
import sys
from pathlib import Path

import pytest

from l3d.cli import VOCABULARY

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["l3d", "a1_rendering", "a2_single_view", "a3_volume_surface", "a4_gaussians_diffusion", "a5_pointnet"]
HYDRA_APPS = {"a3_volume_surface.volume_rendering_main", "a3_volume_surface.surface_rendering_main"}

# the old spellings of shared ideas; each may appear only as an alias of the shared flag
RETIRED = {
    "--iters": "steps", "--iterations": "steps", "--max_iter": "steps", "--num_itrs": "steps", "--n_iters": "steps",
    "--num_iters": "steps", "--epochs": "num_epochs", "--save_freq": "save_every", "--ckpt_every": "save_every",
    "--checkpoint_every": "save_every", "--n_points": "num_points", "--npoints": "num_points",
    "--data_root": "data_path", "--data_dir": "data_path", "--cow_path": "data_path", "--i": "index",
    "--img_size": "image_size", "--res": "image_size", "--n_frames": "num_frames", "--frames": "num_frames",
    "--out": "output_dir", "--out_dir": "output_dir", "--output": "output_dir", "--bs": "batch_size",
    "--learning_rate": "lr", "--load": "load_checkpoint", "--ckpt": "load_checkpoint",
}


def _entry_points() -> list[str]:
    found = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            if re.search(r"^if __name__ == .__main__.:", text, re.M):
                found.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


ENTRY_POINTS = _entry_points()
# runpy warns that the module was already imported (by its package or an earlier --help): harmless here
pytestmark = pytest.mark.filterwarnings("ignore:.*found in sys.modules after import of package:RuntimeWarning")
ARGPARSE_ENTRY_POINTS = [m for m in ENTRY_POINTS if m not in HYDRA_APPS]


def test_entry_points_are_found():
    assert len(ENTRY_POINTS) >= 43, ENTRY_POINTS
    assert HYDRA_APPS <= set(ENTRY_POINTS)


class _Captured(Exception):
    pass


def _parsers_of(module: str, argv: list[str]) -> tuple[str, list[argparse.ArgumentParser], int]:
    """Run ``python -m module *argv`` in this process; returns its stdout, every ArgumentParser
    that parsed arguments, and the exit status."""
    seen: list[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.parse_known_args

    def spy(self, args=None, namespace=None):
        seen.append(self)
        return original(self, args, namespace)

    out = io.StringIO()
    code = 0
    saved_argv = sys.argv
    sys.argv = [module] + argv
    argparse.ArgumentParser.parse_known_args = spy
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            runpy.run_module(module, run_name="__main__", alter_sys=False)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        argparse.ArgumentParser.parse_known_args = original
        sys.argv = saved_argv
    return out.getvalue(), seen, code


@pytest.mark.parametrize("module", ARGPARSE_ENTRY_POINTS)
def test_help_and_vocabulary(module):
    text, parsers, code = _parsers_of(module, ["--help"])
    assert code == 0, f"{module} --help exited {code}"
    assert "usage:" in text and len(text.splitlines()) >= 3, f"{module} --help printed too little:\n{text}"
    assert parsers, f"{module} parsed no arguments"
    problems = []
    for ap in parsers:
        if ap.allow_abbrev:
            problems.append(f"{ap.prog}: accepts abbreviations of its flags (allow_abbrev=False)")
        for action in ap._actions:
            longs = [s for s in action.option_strings if s.startswith("--")]
            if not longs or isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            primary = longs[0]
            if not (action.help or "").strip():
                problems.append(f"{primary}: no help text")
            for s in longs:
                if len(s) == 3 and s != "--i":
                    problems.append(f"{s}: a one-letter long flag")
            if primary in RETIRED:
                problems.append(f"{primary}: the shared name is --{RETIRED[primary]}")
            for s in longs[1:]:
                if s in RETIRED and RETIRED[s] != action.dest:
                    problems.append(f"{s}: an alias of {primary}, but it means --{RETIRED[s]}")
            key = primary[2:]
            if key in VOCABULARY:
                shared = VOCABULARY[key]
                if action.dest != key:
                    problems.append(f"{primary}: dest {action.dest!r}, expected {key!r}")
                if shared.type is not None and action.type is not shared.type and action.choices is None:
                    problems.append(f"{primary}: value type {getattr(action.type, '__name__', action.type)}, "
                                    f"expected the shared {shared.type.__name__}")
        names = {s for a in ap._actions for s in a.option_strings}
        if "--quick" in names:
            quick = ap._option_string_actions["--quick"]
            if quick.nargs != 0:
                problems.append("--quick takes a value; it is a switch")
        if "--seed" in names and ap._option_string_actions["--seed"].type is not int:
            problems.append("--seed is not an integer flag")
    assert not problems, f"{module}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("module", sorted(HYDRA_APPS))
def test_hydra_apps_help(module):
    text, _, code = _parsers_of(module, ["--help"])
    assert code == 0 and "training" in text, f"{module} --help:\n{text}"
