"""Assignment 5: the pass/fail checks of the demo, the parts list, and the turntable pictures."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from a5_pointnet import demo
from a5_pointnet.common import (caption_banner, gif_frame_ms, point_radius, render_turntable, save_turntable_gif,
                                seg_legend)
from a5_pointnet.targets import MIN_ACCURACY, ROBUSTNESS_CHECKS, accuracy_check, robustness_checks

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def sweep(rot, pts, task="cls"):
    angles = [0, 10, 20, 30, 60, 90]
    counts = [10000, 5000, 1000, 500, 100]
    return {task: {"rotation": [{"angle": a, "accuracy": v} for a, v in zip(angles, rot)],
                   "num_points": [{"num_points": n, "accuracy": v} for n, v in zip(counts, pts)]}}


def test_accuracy_check_thresholds():
    assert MIN_ACCURACY == {"cls": 0.90, "seg": 0.80}
    assert accuracy_check("cls", 0.95, 90, 10000)["pass"] and not accuracy_check("cls", 0.89, 90, 10000)["pass"]
    c = accuracy_check("seg", 0.81, 40, 10000, "pointnet2")
    assert c["pass"] and c["min"] == 0.80 and "PointNet++" in c["what"] and "10000 points" in c["what"]


def test_robustness_checks_pass_a_falling_sweep():
    c = robustness_checks(sweep([0.97, 0.95, 0.85, 0.7, 0.2, 0.4], [0.96, 0.97, 0.97, 0.96, 0.9]))
    assert set(c) == {"cls_upright_accuracy", "cls_rotation_drop", "cls_rotation_gain", "cls_points_floor"}
    assert all(v["pass"] for v in c.values()), c
    assert c["cls_rotation_drop"]["value"] == pytest.approx(0.97 - 0.3)
    assert c["cls_rotation_gain"]["value"] == pytest.approx(0.95 - 0.97)
    assert c["cls_points_floor"]["value"] == 0.9


def test_robustness_checks_fail_what_a_broken_sweep_gives():
    # the rotation never applied: flat sweep -> no drop
    flat = robustness_checks(sweep([0.97] * 6, [0.97] * 5))
    assert not flat["cls_rotation_drop"]["pass"] and flat["cls_rotation_gain"]["pass"]
    # a model at chance: the upright accuracy fails
    assert not robustness_checks(sweep([0.34] * 6, [0.34] * 5))["cls_upright_accuracy"]["pass"]
    # a rotated setting far better than the upright one (e.g. angles mixed up)
    assert not robustness_checks(sweep([0.5, 0.95, 0.8, 0.6, 0.2, 0.2], [0.9] * 5))["cls_rotation_gain"]["pass"]
    # collapsing with few points
    seg = robustness_checks(sweep([0.87, 0.8, 0.7, 0.6, 0.3, 0.2], [0.87, 0.87, 0.85, 0.8, 0.5], task="seg"))
    assert not seg["seg_points_floor"]["pass"] and seg["seg_upright_accuracy"]["pass"]


def test_robustness_checks_left_out_without_their_settings():
    res = {"cls": {"rotation": [{"angle": 10, "accuracy": 0.9}, {"angle": 30, "accuracy": 0.7}], "num_points": []}}
    assert robustness_checks(res) == {}  # no 0-degree baseline, no point sweep: nothing to judge
    res["cls"]["rotation"].insert(0, {"angle": 0, "accuracy": 0.95})
    assert set(robustness_checks(res)) == {"cls_upright_accuracy", "cls_rotation_gain"}  # no angle >= 60


def test_parts_list_is_torch_free_and_matches_the_demo():
    code = ("import sys; from l3d.checks import load_parts; ps = load_parts(['a5_pointnet']); "
            "print(sys.modules.get('torch') is None, [p.key for p in ps])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO), "PATH": ""}).stdout.strip()
    assert out == "True ['A5 1', 'A5 2', 'A5 3', 'A5 4']", out
    from a5_pointnet.parts import PARTS

    written = {flags[flags.index("--output_dir") + 1] for _, flags in demo.steps()}
    for p in PARTS:
        assert f"output/{p.folder}" in written and p.checks and 1 <= len(p.media) <= 4
        runs = p.command.split(" && ")
        assert runs[-1].startswith("python -m a5_pointnet.") and f"--output_dir output/{p.folder} " in runs[-1]
    robust = next(p for p in PARTS if p.key == "A5 3")
    assert robust.checks == ROBUSTNESS_CHECKS
    assert [r.split()[2] for r in robust.command.split(" && ")] == ["a5_pointnet.train", "a5_pointnet.train",
                                                                    "a5_pointnet.robustness"]


def test_demo_pictures_turn_slowly_enough(tmp_path):
    vis = dict(zip(demo.VIS[::2], demo.VIS[1::2]))
    frames, fps = int(vis["--num_frames"]), float(vis["--fps"])
    assert frames >= 24 and frames * gif_frame_ms(fps) >= 2000
    assert gif_frame_ms(15) == 70 and gif_frame_ms(10) == 100 and gif_frame_ms(12) == 90
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(500, 3, generator=g) - 0.5
    gif, _ = save_turntable_gif(tmp_path / "t.gif", [(pts, torch.ones(500, 3), "")], _vis(num_frames=4, image_size=32))
    durations = [iio.immeta(gif, index=i)["duration"] for i in range(4)]
    assert durations == [70] * 4, durations  # as written on disk: 30 such frames last 2.1 s


def _vis(**kw):
    return argparse.Namespace(**{"num_frames": 2, "image_size": 64, "radius": 0.01, "fps": 15,
                                 "background": (0.25, 0.25, 0.25), **kw})


def test_caption_banner_wraps_instead_of_cutting_off():
    one = caption_banner("ground truth", 160)
    long = caption_banner("rotated 90 deg about x\ntruth: chair, predicted: lamp and a much longer tail", 160)
    assert one.shape[1] == long.shape[1] == 160 and long.shape[0] > 2 * one.shape[0] - 8
    ink = (np.abs(long.astype(int) - long[0, 0].astype(int)).sum(-1) > 60)  # text pixels
    assert ink.any() and not ink[:, -3:].any() and not ink[:, :3].any()  # inside the strip, margins kept
    assert caption_banner("x", 160, min_lines=3).shape[0] > one.shape[0]


def test_gif_captions_sit_outside_the_rendering(tmp_path):
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(3000, 3, generator=g) - 0.5
    cols = torch.ones(3000, 3)
    args = _vis()
    render = (render_turntable(pts, cols, args).numpy() * 255).round().astype(np.uint8)  # (T, 64, 64, 3)
    gif, png = save_turntable_gif(tmp_path / "a.gif", [(pts, cols, "truth: chair, predicted: lamp"),
                                                       (pts, cols, "second panel")], args, legend=seg_legend("synthetic"))
    frames = iio.imread(gif, index=None)[..., :3]
    assert frames.shape[0] == 2 and frames.shape[2] == 2 * 64 + 3
    # find the rendering below the banner: the frame rows equal to the render, untouched by text
    first = iio.imread(png)[..., :3]
    top = next(r for r in range(first.shape[0] - 64) if np.abs(first[r:r + 64, :64].astype(int)
                                                                - render[0].astype(int)).max() <= 2)
    assert top > 8  # a banner above
    assert first.shape[0] > top + 64  # the colour key below
    assert np.abs(first[top:top + 64, 67:].astype(int) - render[0].astype(int)).max() <= 2


def test_points_are_laid_over_the_background_without_dark_specks():
    g = torch.Generator().manual_seed(1)
    pts = (torch.rand(4000, 3, generator=g) - 0.5) * 0.8
    img = render_turntable(pts, torch.ones(4000, 3), _vis(image_size=96))  # white points on 0.25 grey
    assert img.min() >= 0.25 - 1e-5  # over-compositing: never darker than the background
    assert (img > 0.9).float().mean() > 0.05  # and the cloud is there


def test_sparse_clouds_get_larger_points():
    assert point_radius(0.01, 10000) == 0.01 and point_radius(0.01, 50000) == 0.01
    assert point_radius(0.01, 2500) == pytest.approx(0.02) and point_radius(0.01, 100) == pytest.approx(0.03)


def test_seg_legend_names_the_course_colours():
    key = seg_legend("synthetic")
    assert [k[1] for k in key] == [(1.0, 1.0, 1.0), (1.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (0.0, 0.0, 1.0),
                                   (1.0, 0.0, 0.0)]
    assert key[0][0] == "0 seat" and seg_legend("course")[5][0] == "5 part 5"


def test_data_label_of_course_files(tmp_path, monkeypatch):
    from a5_pointnet.data import DataSpec

    monkeypatch.setenv("L3D_DATA", str(tmp_path))
    assert DataSpec("course", str(tmp_path / "a5")).label("seg") == "course: a5/seg/{data,label}_{train,test}.npy"
    assert DataSpec("synthetic", "x").label("cls").startswith("stand-in: procedural chairs, vases and lamps")
    assert json.dumps(DataSpec("synthetic", "x").label("cls"))  # a plain string for metrics.json
