"""A short converged run of every part of Assignment 3, outputs under output/a3_volume_surface/.

    python -m a3_volume_surface.demo [--only part_1,part_5] [--list] [--device cpu]

Each part is its real entry point with ``quick=true`` (the config's quick_overrides): small
images (48 x 48 for the trained scenes), small networks and a few hundred seeded training steps,
so every trained part converges and shows the method working; each writes the number that proves
it, with its threshold, under ``"checks"`` in its metrics.json (``python -m l3d.report --check``).
The whole demo takes about 4 minutes of one CPU core, rendering the built-in scenes included.
bench/quality_a3_*.py make the full-size numbers.
"""

from __future__ import annotations

import sys
import time

# (output folder, module, config, extra overrides); the folder is the config's ``part``
PARTS = (
    ("part_1", "volume_rendering_main", "box", ()),
    ("part_2", "volume_rendering_main", "train_box", ()),
    ("part_3", "volume_rendering_main", "nerf_lego", ()),
    ("part_4_1", "volume_rendering_main", "nerf_materials", ()),
    ("part_4_2", "volume_rendering_main", "nerf_lego_hierarchical", ()),
    ("part_5", "surface_rendering_main", "torus_surface", ()),
    ("part_6", "surface_rendering_main", "points_surface", ()),
    ("part_7", "surface_rendering_main", "volsdf_surface", ()),
    ("part_8_1", "surface_rendering_main", "complex_scene", ()),
    ("part_8_2_volsdf", "surface_rendering_main", "volsdf_sparse", ()),
    ("part_8_2_nerf", "volume_rendering_main", "nerf_sparse", ()),
    ("part_8_3_s50", "surface_rendering_main", "neus_surface", ("renderer.s=50",)),
)
Q0 = ("q0_transmittance", "python -m a3_volume_surface.q0_transmittance")


def command(part: str) -> str:
    """The shell command of one demo part (as the demo runs it)."""
    if part == Q0[0]:
        return Q0[1]
    for name, module, config, extra in PARTS:
        if name == part:
            return " ".join([f"python -m a3_volume_surface.{module}", *part_argv(config, extra)])
    raise KeyError(part)


def part_argv(config: str, extra=(), device: str = "auto") -> list:
    """The arguments of one Hydra part: its config, the quick variant, the part's own overrides."""
    return [f"--config-name={config}", "quick=true", *extra] + ([f"device={device}"] if device != "auto" else [])


def run_part(module: str, config: str, extra, device: str = "auto") -> None:
    """Run one Hydra part in this process (its ``main(argv)``: Hydra's compose API, no sys.argv)."""
    import importlib

    importlib.import_module(f"a3_volume_surface.{module}").main(part_argv(config, extra, device))


def parser():
    from l3d.cli import ScriptParser

    ap = ScriptParser(description=__doc__)
    ap.add_argument("--only", default="",
                    help="comma-separated parts to run (default: all), e.g. part_1,q0_transmittance")
    ap.add_argument("--list", action="store_true", help="list the parts and their commands, then exit")
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:<i>")
    return ap


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    names = [Q0[0]] + [p[0] for p in PARTS]
    if args.list:
        for name in names:
            print(f"{name}: {command(name)}")
        return 0
    wanted = set(filter(None, args.only.split(","))) or set(names)
    unknown = sorted(wanted - set(names))
    if unknown:
        ap.error(f"--only: unknown part(s) {', '.join(unknown)} (known: {', '.join(names)})")
    t_all, c_all = time.perf_counter(), time.process_time()
    failed = []
    if Q0[0] in wanted:
        from .q0_transmittance import main as q0

        q0(["--device", args.device])
    for part, module, config, extra in PARTS:
        if part not in wanted:
            continue
        t, c = time.perf_counter(), time.process_time()
        print(f"== {part}: {command(part)}", flush=True)
        try:
            run_part(module, config, extra, args.device)
        except SystemExit as e:  # the entry points exit with a one-line error; the other parts still run
            if e.code not in (None, 0):
                failed.append(part)
        print(f"   {part} took {time.perf_counter() - t:.1f} s ({time.process_time() - c:.1f} s CPU)", flush=True)
    print(f"demo done in {time.perf_counter() - t_all:.1f} s ({time.process_time() - c_all:.1f} s CPU); "
          "outputs under output/a3_volume_surface/")
    if failed:
        print(f"error: {len(failed)} part(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from l3d.cli import run_cli

    run_cli(main)
