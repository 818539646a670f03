"""The whole A4 Q2 section in one command: every prompt of configs/a4/sds_prompts.yaml, every variant.

    python -m a4_gaussians_diffusion.diffusion.sweep                                   # Stable Diffusion 2.1-base
    python -m a4_gaussians_diffusion.diffusion.sweep --model /path/to/sd21base --fp16 --vae_tiling
    python -m a4_gaussians_diffusion.diffusion.sweep --only mesh                       # one part
    python -m a4_gaussians_diffusion.diffusion.sweep --model tiny --quick              # no weights: tiny random model

Parts and variants (the prompts and any extra flags per part come from ``--config``):

* ``image`` (Q2.1): :mod:`.image_optimization` for each prompt with and without guidance
  (``--sds_guidance 1`` / ``0``);
* ``mesh`` (Q2.2): :mod:`.mesh_optimization` for each prompt on the cow mesh;
* ``nerf`` (Q2.3, Q2.4.1): :mod:`.nerf_optimization` for each prompt without and with
  view-dependent text (``--view_dep_text 0`` / ``1``).

Every run is the part's own ``main`` called in this process with its flags (``command.txt`` in its
folder is the command that reproduces it alone), writing into ``<output_dir>/<part>/<run folder>``.
``sweep_state.json`` records each run's flags and status: a run that finished with the same flags
is skipped on the next sweep (``--rerun`` runs it again); a run that was stopped (Ctrl-C / SIGTERM
save its checkpoint and stop the sweep) continues from that checkpoint (``--resume``) on the next
sweep. A run that fails with an input error is reported in the table and the sweep goes on with
the next one (it starts afresh on the next sweep); the exit status is 1 when any run failed.

Summary, rewritten after every run: ``results.md`` (one table row per run: part, prompt and where it
comes from, variant, status, iterations, wall time, seconds per iteration, final SDS loss, peak
memory, output folder) and one labelled grid image per part: ``image_grid.png`` (a row per prompt:
final image with | without guidance), ``mesh_grid.png`` (a row per prompt: initial | final
texture, the turntables' middle frames), ``nerf_grid.png`` (a row per prompt: orbit frames, RGB
over depth, plain | view-dependent text).

Weights: ``--model`` works as in the three scripts (a diffusers folder or a hub id already in the
local Hugging Face cache; nothing is downloaded). Without them the sweep stops at once with one line
saying what to pass. ``--model tiny`` builds the tiny randomly initialised checkpoint of
:mod:`.tiny` in ``<output_dir>/.tiny_sd_checkpoint`` and runs everything through it: its pictures are
noise, it only shows the machinery works.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from l3d.cli import invoked_as, report, run_cli, script_parser
from l3d.errors import UserError, user_error
from l3d.run import atomic_write, read_metrics

from .sds import DEFAULT_MODEL, resolve_model

#: The prompt list shipped with the project (``--config`` default), relative to the repository root.
CONFIG_NAME = "configs/a4/sds_prompts.yaml"
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / CONFIG_NAME
PARTS = ("image", "mesh", "nerf")
SOURCES = ("course", "project")
MODULES = {p: f"a4_gaussians_diffusion.diffusion.{m}" for p, m in
           (("image", "image_optimization"), ("mesh", "mesh_optimization"), ("nerf", "nerf_optimization"))}
#: Per part: (variant name, its flags) in grid-column order.
VARIANTS: Dict[str, List[Tuple[str, List[str]]]] = {
    "image": [("guidance", ["--sds_guidance", "1"]), ("no guidance", ["--sds_guidance", "0"])],
    "mesh": [("texture", [])],
    "nerf": [("plain text", ["--view_dep_text", "0"]), ("view-dependent text", ["--view_dep_text", "1"])],
}
#: Flags of the sweep handed on to every run unchanged (name -> dest).
PASS_SWITCHES = ("quick", "fp16", "attention_slicing", "vae_slicing", "vae_tiling")
STATE_FILE = "sweep_state.json"
TINY = "tiny"
CELL = 192  # height of a grid cell in pixels (the image of the cell, without its banner)


# ----------------------------------------------------------------------------------------------
# the prompt file
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prompt:
    text: str
    source: str


@dataclass
class PartConfig:
    prompts: List[Prompt] = field(default_factory=list)
    args: List[str] = field(default_factory=list)


def load_prompt_config(path: Path) -> Dict[str, PartConfig]:
    """Read and check the prompt YAML; any problem is one :class:`UserError` line naming the file
    and the key (``image.prompts[2].source``)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise user_error("--config", "a YAML prompt file (e.g. configs/a4/sds_prompts.yaml)", f"no file at {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise user_error(path, "valid YAML", f"a syntax error{where}: {problem}") from None
    except UnicodeDecodeError:
        raise user_error(path, "a UTF-8 text file", "undecodable bytes") from None
    if not isinstance(data, dict):
        raise user_error(path, f"a mapping with the parts {', '.join(PARTS)}", type(data).__name__)
    unknown = sorted(set(map(str, data)) - set(PARTS))
    if unknown:
        raise user_error(path, f"only the parts {', '.join(PARTS)}", f"unknown key(s) {', '.join(unknown)}")
    if not data:
        raise user_error(path, f"at least one of the parts {', '.join(PARTS)}", "an empty mapping")
    out: Dict[str, PartConfig] = {}
    for part, body in data.items():
        if not isinstance(body, dict):
            raise user_error(f"{path}: {part}", "a mapping with 'prompts' (and optionally 'args')",
                             type(body).__name__)
        extra = sorted(set(map(str, body)) - {"prompts", "args"})
        if extra:
            raise user_error(f"{path}: {part}", "only the keys prompts, args", f"unknown key(s) {', '.join(extra)}")
        prompts = body.get("prompts")
        if not isinstance(prompts, list) or not prompts:
            raise user_error(f"{path}: {part}.prompts", "a non-empty list of {prompt: <text>, source: course|project}",
                             repr(prompts))
        cfg = PartConfig()
        seen = set()
        for i, item in enumerate(prompts):
            key = f"{path}: {part}.prompts[{i}]"
            if not isinstance(item, dict) or set(map(str, item)) - {"prompt", "source"}:
                raise user_error(key, "a mapping {prompt: <text>, source: course|project}", repr(item))
            text, source = item.get("prompt"), item.get("source")
            if not isinstance(text, str) or not text.strip():
                raise user_error(f"{key}.prompt", "a non-empty text", repr(text))
            if source not in SOURCES:
                raise user_error(f"{key}.source", " or ".join(SOURCES), repr(source))
            if text.strip() in seen:
                raise user_error(f"{key}.prompt", "each prompt once per part", f"{text!r} again")
            seen.add(text.strip())
            cfg.prompts.append(Prompt(text.strip(), source))
        args = body.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool)
                                                 for a in args):
            raise user_error(f"{path}: {part}.args", "a list of flags and values, e.g. [\"--steps\", \"500\"]",
                             repr(body.get("args")))
        cfg.args = [str(a) for a in args]
        bad = [a for a in cfg.args if a in ("--prompt", "--sds_guidance", "--view_dep_text", "--output_dir", "--model")]
        if bad:
            raise user_error(f"{path}: {part}.args", "flags other than those the sweep sets itself",
                             ", ".join(bad))
        out[part] = cfg
    return out


# ----------------------------------------------------------------------------------------------
# runs
# ----------------------------------------------------------------------------------------------
@dataclass
class Run:
    part: str
    prompt: Prompt
    variant: str
    argv: List[str]

    @property
    def key(self) -> str:
        return f"{self.part} | {self.prompt.text} | {self.variant}"


def plan_runs(config: Dict[str, PartConfig], only: Optional[str], common: Sequence[str], root: Path) -> List[Run]:
    """Every (part, prompt, variant) of the config, in order, with its full argv."""
    runs = []
    for part in PARTS:
        if part not in config or (only and part != only):
            continue
        for prompt in config[part].prompts:
            for variant, flags in VARIANTS[part]:
                argv = [*common, "--output_dir", str(root / part), *config[part].args, "--prompt", prompt.text, *flags]
                runs.append(Run(part, prompt, variant, argv))
    return runs


def read_state(root: Path) -> Dict[str, Any]:
    path = root / STATE_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        print(f"note: {path} is damaged; every run is treated as not done", file=sys.stderr, flush=True)
        return {}
    return data if isinstance(data, dict) else {}


def write_state(root: Path, state: Dict[str, Any]) -> None:
    atomic_write(root / STATE_FILE, json.dumps(state, indent=2) + "\n")


def finished(entry: Optional[dict], run: Run) -> bool:
    """Whether ``entry`` (from the state file) is a finished run with ``run``'s flags whose
    metrics.json is still there."""
    if not entry or entry.get("status") != "done" or entry.get("argv") != run.argv:
        return False
    folder = entry.get("folder")
    return bool(folder) and (Path(folder) / "metrics.json").is_file()


def resumable(entry: Optional[dict], run: Run) -> bool:
    """Whether ``entry`` is a stopped run with ``run``'s flags that left a checkpoint."""
    if not entry or entry.get("status") != "stopped" or entry.get("argv") != run.argv:
        return False
    folder = entry.get("folder")
    return bool(folder) and any((Path(folder) / "checkpoints").glob("*.pt"))


def run_one(run: Run, resume: bool) -> Tuple[Path, float]:
    """Call the part's ``main`` with the run's flags; returns (run folder, wall seconds)."""
    import importlib

    module = MODULES[run.part]
    argv = run.argv + (["--resume"] if resume else [])
    print(f"-- python -m {module} {' '.join(_quote(a) for a in argv)}", flush=True)
    t0 = time.perf_counter()
    with invoked_as(module, argv):
        folder = importlib.import_module(module).main(list(argv))
    return Path(folder), time.perf_counter() - t0


def _quote(a: str) -> str:
    return f'"{a}"' if (" " in a or not a) else a


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover
        pass


# ----------------------------------------------------------------------------------------------
# summary
# ----------------------------------------------------------------------------------------------
def _fmt(v: Any, spec: str = ".4g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


def final_loss(m: Dict[str, Any]) -> Optional[float]:
    """The final SDS loss of any part's metrics.json (NeRF: its SDS term)."""
    for k in ("final_sds_loss", "final_sds"):
        if m.get(k) is not None:
            return float(m[k])
    return None


def summary_rows(runs: Sequence[Run], state: Dict[str, Any]) -> List[Dict[str, Any]]:
    rows = []
    for run in runs:
        e = state.get(run.key, {})
        folder = Path(e["folder"]) if e.get("folder") else None
        m = read_metrics(folder) if folder is not None and (folder / "metrics.json").is_file() else {}
        rows.append({"part": run.part, "prompt": run.prompt.text, "source": run.prompt.source,
                     "variant": run.variant, "status": e.get("status", "not run"), "error": e.get("error"),
                     "iterations": m.get("iterations"), "wall_s": e.get("wall_s"),
                     "time_per_iter_s": m.get("time_per_iter_s"), "final_sds_loss": final_loss(m),
                     "peak_memory_mb": m.get("peak_memory_mb", m.get("peak_rss_mb")),
                     "peak_memory_kind": m.get("peak_memory_kind", "process_peak_rss" if m else None),
                     "pipeline": m.get("pipeline"), "folder": str(folder) if folder else None,
                     "checks_pass": all(c.get("pass", False) for c in m.get("checks", {}).values())
                     if m.get("checks") else None})
    return rows


def write_results_md(root: Path, rows: Sequence[Dict[str, Any]], model: str, grids: Sequence[Path]) -> Path:
    tiny = any(r["pipeline"] == "tiny-random" for r in rows)
    kinds = {r["peak_memory_kind"] for r in rows if r["peak_memory_kind"]}
    lines = ["# A4 Q2 score distillation: sweep results", "",
             f"Model: `{model}`." + (" **Tiny random pipeline: the pictures are noise; they show that every run "
                                     "works, not what Stable Diffusion makes.**" if tiny else ""),
             "Prompt sources: *course* = named in the course's text; *project* = chosen by this project "
             "(the write-up's full prompt list is not available).",
             "Peak memory: " + ("; ".join(sorted(
                 {"cuda_max_memory_allocated": "CUDA memory allocated by tensors (torch.cuda.max_memory_allocated, "
                                               "reset when the run loads its model)",
                  "process_peak_rss": "the process's peak resident set size (CPU; it never goes down, so in one "
                                      "sweep process a run shows the peak of every run before it too)"}[k]
                 for k in kinds)) or "-") + ".",
             "", "| part | prompt | source | variant | status | iterations | wall (s) | s / iteration | "
                 "final SDS loss | peak memory (MiB) | checks | output folder |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        status = r["status"] + (f": {r['error']}" if r.get("error") else "")
        checks = "-" if r["checks_pass"] is None else ("pass" if r["checks_pass"] else "FAIL")
        folder = Path(r["folder"]).relative_to(root).as_posix() if r["folder"] and _inside(r["folder"], root) \
            else (r["folder"] or "-")
        lines.append(f"| {r['part']} | {r['prompt']} | {r['source']} | {r['variant']} | {status.replace('|', '/')} | "
                     f"{_fmt(r['iterations'], 'd')} | {_fmt(r['wall_s'], '.1f')} | "
                     f"{_fmt(r['time_per_iter_s'], '.4f')} | "
                     f"{_fmt(r['final_sds_loss'])} | {_fmt(r['peak_memory_mb'], '.0f')} | {checks} | `{folder}` |")
    if grids:
        lines += ["", "Grids: " + ", ".join(f"`{g.name}`" for g in grids) + "."]
    return atomic_write(root / "results.md", "\n".join(lines) + "\n")


def _inside(path: str, root: Path) -> bool:
    try:
        Path(path).relative_to(root)
        return True
    except ValueError:
        return False


def _cell(images: Sequence[Optional[Path]], label: str):
    """(h, w, 3) float array: the images stacked vertically at height CELL each (a grey square
    for a missing one), with ``label`` in a banner above."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from l3d.media import load_image

    from ..captions import with_banner

    parts = []
    missing = False
    for p in images:
        if p is None or not Path(p).is_file():
            parts.append(torch.full((CELL, CELL, 3), 0.6))
            missing = True
            continue
        img = load_image(p)[..., :3]
        if img.shape[-1] == 1:
            img = img.expand(-1, -1, 3)
        h, w = img.shape[:2]
        w2 = max(1, round(w * CELL / h))
        img = F.interpolate(img.permute(2, 0, 1)[None], (CELL, w2), mode="bilinear", align_corners=False,
                            antialias=True)[0].permute(1, 2, 0).clamp(0, 1)
        parts.append(img)
    width = max(p.shape[1] for p in parts)
    parts = [F.pad(p.permute(2, 0, 1), (0, width - p.shape[1]), value=1.0).permute(1, 2, 0) for p in parts]
    return with_banner(np.ascontiguousarray(torch.cat(parts, 0).numpy()), label + (" (missing)" if missing else ""))


def write_grid(root: Path, part: str, runs: Sequence[Run], state: Dict[str, Any]) -> Optional[Path]:
    """``<part>_grid.png``: a row per prompt, a column per variant (mesh: initial | final)."""
    import numpy as np

    from l3d.media import save_image

    prompts = list(dict.fromkeys(r.prompt.text for r in runs if r.part == part))
    if not prompts:
        return None
    rows = []
    for text in prompts:
        cells = []
        for run in (r for r in runs if r.part == part and r.prompt.text == text):
            folder = state.get(run.key, {}).get("folder")
            f = Path(folder) if folder else None
            if part == "image":
                cells.append(_cell([f / "final.png" if f else None], f"{text} | {run.variant}"))
            elif part == "mesh":
                cells.append(_cell([f / "initial_mesh.png" if f else None], f"{text} | initial"))
                cells.append(_cell([f / "final_mesh.png" if f else None], f"{text} | final"))
            else:
                cells.append(_cell([f / "rgb.png" if f else None, f / "depth.png" if f else None],
                                   f"{text} | {run.variant}: RGB over depth"))
        rows.append(cells)
    ncol = max(len(r) for r in rows)
    widths = [max(r[c].shape[1] for r in rows if c < len(r)) for c in range(ncol)]
    height = max(c.shape[0] for r in rows for c in r)
    gap = 4
    out_rows = []
    for r in rows:
        padded = []
        for c in range(ncol):
            cell = r[c] if c < len(r) else np.ones((height, widths[c], 3), np.float32)
            canvas = np.ones((height, widths[c], 3), np.float32)
            canvas[: cell.shape[0], : cell.shape[1]] = cell
            padded += [canvas, np.ones((height, gap, 3), np.float32)]
        out_rows += [np.concatenate(padded[:-1], 1), np.ones((gap, sum(widths) + gap * (ncol - 1), 3), np.float32)]
    return save_image(root / f"{part}_grid.png", np.concatenate(out_rows[:-1], 0))


def write_summary(root: Path, runs: Sequence[Run], state: Dict[str, Any], model: str) -> Tuple[Path, List[Path]]:
    grids = [g for g in (write_grid(root, p, runs, state) for p in PARTS) if g is not None]
    rows = summary_rows(runs, state)
    return write_results_md(root, rows, model, grids), grids


# ----------------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------------
def build_parser():
    ap = script_parser(__doc__, "a4_gaussians_diffusion/diffusion_sweep")
    ap._option_string_actions["--quick"].help = ("handed to every run: each script's quick preset (small sizes, "
                                                 "few steps); the prompt file's args win")
    ap.add_argument("--config", default=CONFIG_NAME,
                    help="YAML prompt file: per part (image, mesh, nerf) its prompts with their source and extra "
                         "flags")
    ap.add_argument("--only", choices=PARTS, default=None, help="run one part only")
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help="Stable Diffusion checkpoint: a diffusers folder or a hub id in the local Hugging Face cache "
                         "(never downloaded); 'tiny': the tiny random test checkpoint (noise pictures)")
    ap.add_argument("--rerun", action="store_true", help="run again the runs that already finished")
    ap.add_argument("--dry_run", action="store_true", help="print the runs and their commands, run nothing")
    g = ap.add_argument_group("precision and memory (handed to every run; see the three scripts' --help)")
    g.add_argument("--fp16", action="store_true", help="half-precision weights (CUDA only)")
    g.add_argument("--attention_slicing", action="store_true", help="the UNet's attention in slices")
    g.add_argument("--vae_slicing", action="store_true", help="the VAE one image of a batch at a time")
    g.add_argument("--vae_tiling", action="store_true", help="the VAE in overlapping tiles")
    g.add_argument("--cpu_offload", nargs="?", const="sequential", default="none",
                   choices=["none", "model", "sequential"],
                   help="weights kept in CPU memory (the flag alone: sequential)")
    return ap


def _resolve_weights(model: str, root: Path) -> str:
    """The ``--model`` value to hand to every run: the tiny checkpoint's folder for ``tiny``; else
    the value itself once its weights are found (a one-line UserError otherwise)."""
    if model == TINY:
        from .tiny import build_tiny_pipeline, is_tiny

        folder = root / ".tiny_sd_checkpoint"
        if not is_tiny(folder):  # (creates the output folder too)
            build_tiny_pipeline(folder)
        return str(folder.resolve())
    try:
        resolve_model(model)
    except UserError as exc:
        raise UserError(f"{exc}; or pass --model {TINY} to run the sweep through the tiny random test "
                        f"pipeline (noise pictures)") from None
    return model


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    config_path = Path(args.config)
    if args.config == CONFIG_NAME and not config_path.is_file():
        config_path = DEFAULT_CONFIG  # run from another folder: the file shipped with the project
    config = load_prompt_config(config_path)
    if args.only and args.only not in config:
        raise user_error("--only", f"a part that {config_path} lists ({', '.join(config)})", args.only)
    if args.fp16:  # every run would refuse it: say so once, before anything is built
        from l3d.train import choose_device

        from .sds import choose_dtype

        choose_dtype(choose_device(args.device), "fp16")
    root = Path(args.output_dir)
    if args.dry_run:
        model = args.model
    else:
        model = _resolve_weights(args.model, root)
        root.mkdir(parents=True, exist_ok=True)
    common = ["--model", model, "--device", args.device, "--seed", str(args.seed)]
    common += [f"--{k}" for k in PASS_SWITCHES if getattr(args, k)]
    if args.cpu_offload != "none":
        common += ["--cpu_offload", args.cpu_offload]
    runs = plan_runs(config, args.only, common, root)
    if args.dry_run:
        for run in runs:
            print(f"{run.key}: python -m {MODULES[run.part]} {' '.join(_quote(a) for a in run.argv)}")
        return 0

    state = read_state(root)
    counts = {"ran": 0, "skipped": 0, "failed": 0}
    stopped = False
    for k, run in enumerate(runs):
        entry = state.get(run.key)
        if not args.rerun and finished(entry, run):
            print(f"[{k + 1}/{len(runs)}] {run.key}: finished before, skipped ({entry['folder']})", flush=True)
            counts["skipped"] += 1
            continue
        resume = not args.rerun and resumable(entry, run)
        print(f"[{k + 1}/{len(runs)}] {run.key}" + (" (resuming)" if resume else ""), flush=True)
        state[run.key] = {"argv": run.argv, "status": "started", "folder": (entry or {}).get("folder")
                          if resume else None, "part": run.part, "prompt": run.prompt.text, "variant": run.variant}
        write_state(root, state)
        try:
            folder, wall = run_one(run, resume)
        except UserError as exc:
            line = " ".join(str(exc).split())
            print(f"error: {run.key}: {line}", file=sys.stderr, flush=True)
            state[run.key].update(status="failed", error=line)
            counts["failed"] += 1
        else:
            m = read_metrics(folder)
            done = m.get("stopped_at_step") is None
            state[run.key].update(status="done" if done else "stopped", folder=str(folder), error=None,
                                  wall_s=round(wall + (entry or {}).get("wall_s", 0.0) * resume, 2))
            counts["ran"] += 1
            stopped = not done
        write_state(root, state)
        _free_memory()
        write_summary(root, runs, state, model)
        if stopped:
            print("the sweep stopped with this run; rerun the same command to continue", file=sys.stderr, flush=True)
            break

    results, grids = write_summary(root, runs, state, model)
    rows = summary_rows(runs, state)
    report(root, {"model": model, "config": str(config_path), "only": args.only, "runs": len(runs),
                  "runs_done": sum(r["status"] == "done" for r in rows), "runs_ran_now": counts["ran"],
                  "runs_skipped": counts["skipped"], "runs_failed": counts["failed"],
                  "pipeline": "tiny-random" if args.model == TINY else str(args.model), "table": rows},
           [results, *grids])
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    run_cli(main)
