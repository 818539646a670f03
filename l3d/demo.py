"""Run every assignment's quick demo, then build the gallery and check every part (``make demo``).

    python -m l3d.demo [--jobs 2] [--only a3_volume_surface,a5_pointnet] [--no_fetch] [--no_check]

1. ``python -m l3d.data fetch``: the public course files that are missing (one line when offline);
2. ``python -m <assignment>.demo`` for every ``a*_*/demo.py``, ``--jobs`` at a time, longest first,
   each in its own process with one compute thread (``OMP_NUM_THREADS=1``) so the numbers are the
   same on every machine and two jobs share two cores without fighting; each writes its log to
   ``output/logs/<assignment>.log`` (the last lines are printed if it fails);
3. ``python -m l3d.report`` (the gallery, ``output/index.html``) and ``python -m l3d.report --check``
   (exit status 1 when any part fails or is missing).
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# rough single-thread cost of each demo (seconds), to start the longest first
EXPECTED_S = {"a2_single_view": 380, "a3_volume_surface": 260, "a4_gaussians_diffusion": 95,
              "a5_pointnet": 92, "a1_rendering": 30}

from .cli import ScriptParser, positive_int


def _demos() -> list[str]:
    found = sorted(p.parent.name for p in REPO.glob("a*_*/demo.py"))
    return sorted(found, key=lambda n: -EXPECTED_S.get(n, 100))


def _run(name: str, log_dir: Path, threads: int) -> tuple[str, int, float, Path]:
    log = log_dir / f"{name}.log"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    t = time.perf_counter()
    with open(log, "w", encoding="utf-8") as f:
        rc = subprocess.call([sys.executable, "-m", f"{name}.demo"], cwd=REPO, env=env, stdout=f,
                             stderr=subprocess.STDOUT)
    return name, rc, time.perf_counter() - t, log


def _tail(path: Path, n: int = 25) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join("    " + ln for ln in lines[-n:])


def main(argv=None) -> int:
    ap = ScriptParser(prog="python -m l3d.demo", description=__doc__)
    ap.add_argument("--jobs", type=positive_int, default=2, help="demos run at the same time (each with --threads threads)")
    ap.add_argument("--threads", type=positive_int, default=1, help="compute threads per demo (1: the same numbers everywhere)")
    ap.add_argument("--only", default="", help="comma-separated assignment packages to run (default: all)")
    ap.add_argument("--output_dir", default="output", help="where the demos write (their default) and the logs go")
    ap.add_argument("--no_fetch", action="store_true", help="do not try to download the public course files first")
    ap.add_argument("--no_check", action="store_true", help="build the gallery but do not run the check")
    args = ap.parse_args(argv)
    if args.jobs < 1 or args.threads < 1:
        ap.error("--jobs and --threads must be at least 1")
    names = _demos()
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            ap.error(f"--only: no demo for {', '.join(unknown)} (known: {', '.join(sorted(names))})")
        names = [n for n in names if n in wanted]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    t0 = time.perf_counter()
    if not args.no_fetch:
        subprocess.call([sys.executable, "-m", "l3d.data", "fetch"], cwd=REPO, env=env)
    log_dir = Path(args.output_dir) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"running {len(names)} demos, {args.jobs} at a time ({args.threads} thread each); logs in {log_dir}/",
          flush=True)
    failed = []
    with cf.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(_run, n, log_dir, args.threads) for n in names]
        for fut in cf.as_completed(futures):
            name, rc, dt, log = fut.result()
            print(f"  {name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {dt:.0f} s", flush=True)
            if rc != 0:
                failed.append(name)
                print(_tail(log), flush=True)
    print(f"demos done in {time.perf_counter() - t0:.0f} s", flush=True)
    rc = subprocess.call([sys.executable, "-m", "l3d.report", "--output_dir", args.output_dir], cwd=REPO, env=env)
    if rc != 0:
        return rc
    print(f"open {Path(args.output_dir) / 'index.html'} for the gallery", flush=True)
    if failed:
        print(f"error: {len(failed)} demo(s) failed: {', '.join(failed)} (see {log_dir}/)", file=sys.stderr)
        return 1
    if args.no_check:
        return 0
    cmd = [sys.executable, "-m", "l3d.report", "--check", "--output_dir", args.output_dir]
    if args.only:
        prefixes = {n: f"A{n[1]}" for n in names}
        return max(subprocess.call(cmd + ["--only", p], cwd=REPO, env=env) for p in prefixes.values())
    return subprocess.call(cmd, cwd=REPO, env=env)


if __name__ == "__main__":
    sys.exit(main())
