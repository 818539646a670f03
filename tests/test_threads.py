"""``import l3d`` (which every assignment package does first) makes torch's idle CPU threads sleep
instead of spin, unless the user chose an OpenMP wait policy (bench/bench_omp_wait.py measures why)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = "import {mod}, os, sys; print(os.environ.get('OMP_WAIT_POLICY', '-'), 'torch' in sys.modules)"


def policy(mod: str, **env) -> list:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "L3D_OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", PROBE.format(mod=mod)], env={**base, **env, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return out.stdout.split()


@pytest.mark.parametrize("mod", ["l3d", "a1_rendering", "a2_single_view", "a3_volume_surface",
                                 "a4_gaussians_diffusion", "a5_pointnet"])
def test_every_package_sets_passive_before_torch_loads(mod):
    got = policy(mod)
    assert got[0] == "PASSIVE"
    if mod == "l3d":
        assert got[1] == "False"  # set before torch is imported: OpenMP reads it when torch loads


def test_the_users_choice_wins():
    assert policy("l3d", OMP_WAIT_POLICY="ACTIVE")[0] == "ACTIVE"
    assert policy("l3d", L3D_OMP_WAIT_POLICY="default")[0] == "-"
