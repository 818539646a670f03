"""python -m l3d.prepare: photos -> COLMAP scene, on rendered views of a textured object.

24 views of l3d's procedural object with a random-block texture on a textured floor (224 x 224,
cameras on a golden-angle spiral at distance 2.2) go through SIFT, exhaustive matching,
incremental mapping and undistortion. Most views must register, and after a similarity
alignment (Umeyama) the recovered camera centres must lie within 2 % of the camera distance of
the true ones. A folder whose photos cannot be matched must fail with one line and exit 2.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from l3d.media import save_image
from l3d.scenes import read_colmap, render_object_views

NUM_VIEWS, SIZE, DIST = 24, 224, 2.2


def umeyama(src: np.ndarray, dst: np.ndarray):
    """Similarity (s, R, t) minimising ||dst - (s R src + t)||^2 over point pairs (P, 3)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt))
    R = U @ D @ Vt
    s = np.trace(np.diag(S) @ D) / (a ** 2).sum(1).mean()
    return s, R, mu_d - s * R @ mu_s


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(10, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    s, R, t = umeyama(src, 2.5 * src @ q.T + [1, 2, 3])
    assert abs(s - 2.5) < 1e-9 and np.allclose(R, q) and np.allclose(t, [1, 2, 3])


@pytest.fixture(scope="module")
def photos(tmp_path_factory, one_thread):
    folder = tmp_path_factory.mktemp("photos")
    v = render_object_views(NUM_VIEWS, (SIZE, SIZE), focal_ndc=2.4, dist=DIST, elev_range=(10, 45),
                            texture="noise", ground=True)
    a = v.rgba[..., 3:]
    for i in range(NUM_VIEWS):
        save_image(folder / f"img_{i:03d}.png", v.rgba[i, ..., :3] * a[i] + (1 - a[i]))
    return folder, v.cameras


def test_prepare_recovers_the_cameras(photos, tmp_path):
    from l3d.prepare import main

    folder, cams = photos
    out = tmp_path / "scene"
    main(["--images", str(folder), "--output_dir", str(out), "--max_features", "1024", "--peak_threshold", "0.004",
          "--num_threads", "2"])
    m = json.loads((out / "metrics.json").read_text())
    assert m["registered"] >= 0.75 * NUM_VIEWS, m
    assert m["mean_reprojection_error_px"] < 1.0
    sc = read_colmap(out, normalize="none", undistort="reject")  # undistorted: a PINHOLE model
    idx = [int(n[4:7]) for n in sc.names]
    est = sc.cameras.get_camera_center().double().numpy()
    true = cams.get_camera_center()[idx].double().numpy()
    s, R, t = umeyama(est, true)
    err = np.linalg.norm(s * est @ R.T + t - true, axis=1)
    print(f"registered {m['registered']}/{NUM_VIEWS}, camera centre error max {err.max():.4f} mean {err.mean():.4f}")
    assert err.max() < 0.02 * DIST, err  # camera distance 2.2: within 4.4 cm
    # the recovered focal length (shared SIMPLE_RADIAL camera, then undistorted) is the true one
    f_true = float(cams.focal_length_screen((SIZE, SIZE))[0, 0])
    f_est = sc.cameras.focal_length_screen(sc.image_size)[:, 0]
    assert torch.allclose(f_est, torch.full_like(f_est, f_true), rtol=0.03), (f_est[0], f_true)
    assert sc.points is not None and len(sc.points) > 500


def test_prepare_fails_in_one_line_when_nothing_registers(tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(4):  # featureless grey photos: nothing to match
        save_image(folder / f"p{i}.png", torch.full((64, 64, 3), 0.5))
    r = subprocess.run([sys.executable, "-m", "l3d.prepare", "--images", str(folder), "--output_dir",
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: registration failed: 0 of 4 photos"), r.stderr[-500:]
