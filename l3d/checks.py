"""Pass/fail numbers of every part, and the list of parts the gallery and ``--check`` expect.

Every part of every assignment proves that it worked with at least one number held against a
threshold. A script records it in its ``metrics.json`` under ``"checks"``::

    from l3d.checks import check
    report(out, {"test_psnr": psnr, "data": data_label,
                 "checks": {"test_psnr": check(psnr, min=24.0, what="mean PSNR of 3 held-out views (dB)")}})

which writes ``{"value": 25.1, "min": 24.0, "pass": true, "what": "..."}``. ``"data"`` says what
the run was made from: ``"course: a1/cow.obj"`` for the course's files, ``"stand-in: <what it is>"``
for a built-in substitute (the gallery labels such cards).

Each assignment package lists its parts in a torch-free ``parts.py`` (``PARTS = [Part(...)]``):
the question, its title, the output folder, the command, the checks it must carry and the
course's reference images. :func:`load_parts` discovers them; ``python -m l3d.report --check``
reads every part's ``metrics.json`` and fails when a check fails or is missing.

This module imports nothing heavy (no torch), so the gallery builds in a fraction of a second.
"""

from __future__ import annotations

import importlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["check", "check_passed", "Part", "PartStatus", "load_parts", "part_status", "STANDIN_PREFIX",
           "COURSE_PREFIX", "data_label"]

STANDIN_PREFIX = "stand-in: "
COURSE_PREFIX = "course: "
REPO_ROOT = Path(__file__).resolve().parent.parent


def _as_float(value: Any) -> float:
    """Numbers, numpy/torch scalars and the strings ``"nan"``/``"inf"`` of metrics.json as a float."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool):
        return float(value)
    return float(value)


def check(value: Any, min: Optional[float] = None, max: Optional[float] = None, what: str = "") -> Dict[str, Any]:
    """One pass/fail number for ``metrics.json["checks"]``.

    Args:
        value: the measured number (float, int, bool, 0-d tensor / numpy scalar).
        min: the value must be >= min (None: no lower bound).
        max: the value must be <= max (None: no upper bound).
        what: a few words saying what the number is and in which unit.
    Returns:
        ``{"value", "min"/"max", "pass", "what"}``; a non-finite value never passes.
    """
    if min is None and max is None:
        raise ValueError("check needs a threshold: min, max or both")
    v = _as_float(value)
    ok = math.isfinite(v) and (min is None or v >= min) and (max is None or v <= max)
    out: Dict[str, Any] = {"value": v if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))}
    if min is not None:
        out["min"] = float(min)
    if max is not None:
        out["max"] = float(max)
    out["pass"] = bool(ok)
    if what:
        out["what"] = what
    return out


def check_passed(entry: Any) -> bool:
    """Re-evaluate a ``checks`` entry read back from metrics.json (its ``pass`` flag is not trusted)."""
    if not isinstance(entry, dict) or "value" not in entry or ("min" not in entry and "max" not in entry):
        return False
    try:
        v = _as_float(entry["value"])
    except (TypeError, ValueError):
        return False
    if not math.isfinite(v):
        return False
    if entry.get("min") is not None and not v >= float(entry["min"]):
        return False
    if entry.get("max") is not None and not v <= float(entry["max"]):
        return False
    return True


def data_label(course_file: Optional[str] = None, standin: Optional[str] = None) -> str:
    """``"course: a1/cow.obj"`` or ``"stand-in: procedural cow-like mesh"`` for metrics.json."""
    if (course_file is None) == (standin is None):
        raise ValueError("give exactly one of course_file and standin")
    return COURSE_PREFIX + course_file if course_file is not None else STANDIN_PREFIX + standin


@dataclass(frozen=True)
class Part:
    """One question of an assignment as the gallery shows it.

    Attributes:
        key: the question's number as the course writes it, with the assignment ("A1 1.2").
        title: what the question is ("Dolly zoom").
        folder: the output folder, relative to ``output/`` ("a1_rendering/dolly_zoom").
        command: the command that makes this folder at the demo's size.
        checks: names of the entries of ``metrics.json["checks"]`` that must be present and pass.
        references: the course's reference images, relative to the data root ("a1/reference/dolly.gif").
        media: the files to show first (names inside ``folder``, glob patterns allowed); the
            folder's other images are listed as extra downloads. Empty: every image.
        metrics_file: the JSON file (inside ``folder``) holding the checks.
    """

    key: str
    title: str
    folder: str
    command: str = ""
    checks: Tuple[str, ...] = ()
    references: Tuple[str, ...] = ()
    media: Tuple[str, ...] = ()
    metrics_file: str = "metrics.json"

    @property
    def order(self) -> Tuple:
        """Sort key: assignment number, then the question's numbers ("A3 8.2" -> (3, 8, 2))."""
        nums = [int(n) for n in re.findall(r"\d+", self.key)]
        return tuple(nums)


def load_parts(packages: Optional[Sequence[str]] = None, root: Path = REPO_ROOT) -> List[Part]:
    """Every ``Part`` of the ``<package>/parts.py`` modules under ``root`` (all ``a*_*`` packages
    by default), in the course's order."""
    if packages is None:
        packages = sorted(p.parent.name for p in root.glob("a*_*/parts.py"))
    parts: List[Part] = []
    for name in packages:
        mod = importlib.import_module(f"{name}.parts")
        parts.extend(mod.PARTS)
    return sorted(parts, key=lambda p: p.order)


@dataclass
class PartStatus:
    """What ``--check`` found for one part."""

    part: Part
    state: str  # "pass" | "fail" | "missing"
    rows: List[Tuple[str, str, str, str]] = field(default_factory=list)  # (check, value, threshold, state)
    whats: List[Tuple[str, str]] = field(default_factory=list)  # (check, what the number is)
    data: str = ""
    note: str = ""

    @property
    def standin(self) -> bool:
        return self.data.startswith(STANDIN_PREFIX)


def _fmt(v: Any) -> str:
    try:
        f = _as_float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return str(v)
    return f"{f:.4g}"


def threshold_text(entry: Dict[str, Any]) -> str:
    lo, hi = entry.get("min"), entry.get("max")
    if lo is not None and hi is not None:
        return f"{_fmt(lo)} .. {_fmt(hi)}"
    return f">= {_fmt(lo)}" if lo is not None else f"<= {_fmt(hi)}"


def part_status(part: Part, output_dir: Path) -> PartStatus:
    """Read ``<output_dir>/<part.folder>/<metrics_file>`` and judge every check the part requires."""
    path = Path(output_dir) / part.folder / part.metrics_file
    st = PartStatus(part, "missing")
    if not path.is_file():
        st.note = f"{path.as_posix()} not found (run the part's command)"
        st.rows = [(name, "-", "-", "missing") for name in part.checks]
        return st
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        st.state, st.note = "fail", f"{path.as_posix()}: unreadable ({' '.join(str(exc).split())})"
        return st
    checks = metrics.get("checks") if isinstance(metrics, dict) else None
    checks = checks if isinstance(checks, dict) else {}
    st.data = str(metrics.get("data", "")) if isinstance(metrics, dict) else ""
    names = list(part.checks) or list(checks)
    if not names:
        st.note = "no checks recorded"
        return st
    states = []
    for name in names:
        entry = checks.get(name)
        if entry is None:
            st.rows.append((name, "-", "-", "missing"))
            states.append("missing")
            continue
        ok = check_passed(entry)
        st.whats.append((name, str(entry.get("what", ""))) if isinstance(entry, dict) else (name, ""))
        st.rows.append((name, _fmt(entry.get("value")), threshold_text(entry), "pass" if ok else "fail"))
        states.append("pass" if ok else "fail")
    st.state = "fail" if "fail" in states else ("missing" if "missing" in states else "pass")
    return st
