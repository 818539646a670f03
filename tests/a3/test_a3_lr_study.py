"""Part 6 learning-rate study (a3_volume_surface.lr_study): three short runs, the plot, the table
and the check. Small settings (40 epochs, 512 points a step); measured on the bunny and the
stand-in: final losses about 0.08 / 0.04 / 0.03 for 1e-5 / 1e-4 / 1e-3, ratio 0.31-0.36."""

from __future__ import annotations

import json
import math

from a3_volume_surface import lr_study

SMALL = ["--quick", "--num_epochs", "40", "--override", "training.pretrain_iters=20", "training.batch_size=512",
         "gif.n_poses=3", "geometry.grid_size=24", "data.image_size=[32,32]"]


def test_lr_study_orders_the_rates(tmp_path):
    out = tmp_path / "study"
    m = lr_study.main(["--output_dir", str(out), "--lrs", "1e-3", "1e-5", "1e-4", *SMALL])
    for f in ("lr_comparison.png", "lr_comparison.md", "metrics.json", "lr_1e-05/losses.csv", "lr_0.001/part_6.gif"):
        assert (out / f).is_file(), f
    final = m["final_loss_by_lr"]
    assert list(final) == ["1e-05", "0.0001", "0.001"]
    assert final["0.001"] < final["0.0001"] < final["1e-05"]
    assert 0.05 < final["1e-05"] < 0.12 and final["0.001"] < 0.045
    check = m["checks"]["loss_ratio"]
    assert check["pass"] and check["value"] <= 0.45 and check["max"] == lr_study.MAX_LOSS_RATIO
    assert all(r["epochs"] == 40 for r in m["runs"].values())
    # the largest rate forms a surface close to the points
    assert math.isfinite(m["runs"]["0.001"]["chamfer_rel"]) and m["runs"]["0.001"]["chamfer_rel"] < 0.15
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["data"] == m["data"] and saved["data"].startswith(("course: a3/bunny", "stand-in:"))
    table = (out / "lr_comparison.md").read_text()
    assert "| 1e-05 |" in table and "| 0.001 |" in table and m["data"] in table


def test_lr_study_needs_two_rates(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit) as e:
        lr_study.run_cli(lr_study.main, ["--output_dir", str(tmp_path), "--lrs", "1e-3"])
    assert e.value.code == 2 and "--lrs" in capsys.readouterr().err
