"""Quick run of every part of Assignment 3 (seconds each on a CPU), outputs under output/a3_volume_surface/.

    python -m a3_volume_surface.demo [--only part_1,part_5] [--list]

Each part is its real entry point with ``quick=true`` (the config's quick_overrides): small
images, few views and epochs, so the pictures show that everything runs, not trained quality
(bench/quality_a3_*.py make the full-quality numbers).
"""

from __future__ import annotations

import argparse
import sys
import time

# (part, module, config, extra overrides)
PARTS = (
    ("part_1", "volume_rendering_main", "box", []),
    ("part_2", "volume_rendering_main", "train_box", []),
    ("part_3", "volume_rendering_main", "nerf_lego", []),
    ("part_4_1", "volume_rendering_main", "nerf_materials", []),
    ("part_4_2", "volume_rendering_main", "nerf_lego_hierarchical", []),
    ("part_5", "surface_rendering_main", "torus_surface", []),
    ("part_6", "surface_rendering_main", "points_surface", []),
    ("part_7", "surface_rendering_main", "volsdf_surface", []),
    ("part_8_1", "surface_rendering_main", "complex_scene", []),
    ("part_8_2", "surface_rendering_main", "volsdf_sparse", []),
    ("part_8_3", "surface_rendering_main", "neus_surface", []),
)


def run_part(module: str, config: str, extra) -> None:
    import importlib

    mod = importlib.import_module(f"a3_volume_surface.{module}")
    old = sys.argv
    sys.argv = [f"python -m a3_volume_surface.{module}", f"--config-name={config}", "quick=true", *extra]
    try:
        mod.main()
    finally:
        sys.argv = old


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated parts to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the parts and their commands, then exit")
    args = ap.parse_args(argv)
    chosen = [p for p in PARTS if not args.only or p[0] in args.only.split(",")]
    if args.list:
        for part, module, config, extra in PARTS:
            print(f"{part}: python -m a3_volume_surface.{module} --config-name={config} quick=true {' '.join(extra)}")
        return 0
    t_all = time.perf_counter()
    for part, module, config, extra in chosen:
        t = time.perf_counter()
        print(f"== {part}: {config} (quick)", flush=True)
        run_part(module, config, extra)
        print(f"   {part} took {time.perf_counter() - t:.1f} s", flush=True)
    from .q0_transmittance import main as q0

    q0([])
    print(f"demo done in {time.perf_counter() - t_all:.1f} s; outputs under output/a3_volume_surface/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
