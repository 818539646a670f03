"""The 3D viewer (``python -m l3d.view``) and the training viewer, loaded in headless Chromium."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("viser")

from l3d.errors import UserError  # noqa: E402
from l3d.io import save_ply  # noqa: E402
from l3d.view import TrainingViewer, layers_for, opencv_pose_to_camera, ply_kind  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _sphere_grid(n=24, r=0.6):
    ax = np.linspace(-1, 1, n)
    x, y, z = np.meshgrid(ax, ax, ax, indexing="ij")
    return np.sqrt(x ** 2 + y ** 2 + z ** 2) - r  # an SDF


def _icosphere_ply(path, color=(255, 0, 255)):
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    cols = np.tile(np.array(color, dtype=np.float32) / 255.0, (len(m.vertices), 1))
    save_ply(path, m.vertices.astype(np.float32), m.faces, colors=cols)
    return m


# ----------------------------------------------------------------------------------------------
# reading (no browser)
# ----------------------------------------------------------------------------------------------
def test_mesh_points_grid_gaussians_and_run_folder(tmp_path):
    m = _icosphere_ply(tmp_path / "mesh.ply")
    assert ply_kind(tmp_path / "mesh.ply") == "mesh"
    (layer,) = layers_for(tmp_path / "mesh.ply")
    assert layer.kind == "mesh" and layer.data["faces"].shape == m.faces.shape
    assert (layer.data["vertex_colors"] == [255, 0, 255]).all()

    # a segmentation output: points with predicted and true labels
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(500, 3)).astype(np.float32)
    gt = (pts[:, 1] > 0).astype(np.int64)
    pred = gt.copy()
    pred[:50] = 1 - pred[:50]
    np.savez(tmp_path / "seg.npz", points=pts, pred=pred, gt=gt)
    layers = layers_for(tmp_path / "seg.npz")
    assert [la.name for la in layers] == ["seg.npz:pred", "seg.npz:gt"]
    assert "90.0 % equal to the truth" in layers[0].note
    cols = layers[1].data["colors"]
    assert len({tuple(c) for c in cols[gt == 0]}) == 1 and len({tuple(c) for c in cols[gt == 1]}) == 1
    assert tuple(cols[gt == 0][0]) != tuple(cols[gt == 1][0])

    # a grid: its level set is the sphere of radius 0.6 (in the grid's [-1, 1] frame)
    np.save(tmp_path / "sdf.npy", _sphere_grid())
    (g,) = layers_for(tmp_path / "sdf.npy")
    radius = np.linalg.norm(g.data["vertices"], axis=1)
    assert g.kind == "mesh" and abs(radius.mean() - 0.6) < 0.02 and radius.std() < 0.02

    # 3DGS .ply
    from a4_gaussians_diffusion.gaussians.model import Gaussians
    from a4_gaussians_diffusion.gaussians.ply import save_gaussians_ply

    gs = Gaussians.random(64, generator=torch.Generator().manual_seed(0))
    save_gaussians_ply(tmp_path / "run" / "gaussians.ply", gs)
    assert ply_kind(tmp_path / "run" / "gaussians.ply") == "gaussians"
    (splats,) = layers_for(tmp_path / "run" / "gaussians.ply")
    assert splats.data["centers"] == pytest.approx(gs.means.detach().numpy(), abs=1e-6)
    cov = splats.data["covariances"]
    assert cov.shape == (64, 3, 3) and np.allclose(cov, np.transpose(cov, (0, 2, 1)))

    # a run folder: every viewable file, checkpoints and TensorBoard logs skipped
    (tmp_path / "run" / "checkpoints").mkdir()
    np.save(tmp_path / "run" / "checkpoints" / "ignored.npy", pts)
    _icosphere_ply(tmp_path / "run" / "mesh.ply")
    names = [la.name for la in layers_for(tmp_path / "run")]
    assert names == ["gaussians.ply", "mesh.ply"]


def test_bad_paths_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="nothing at that path"):
        layers_for(tmp_path / "missing.ply")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="notes.txt"):
        layers_for(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="none of them"):
        layers_for(tmp_path / "empty")
    out = subprocess.run([sys.executable, "-m", "l3d.view", str(tmp_path / "missing.obj")], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.obj'}: expected a file or folder to "
                                               f"view, found nothing at that path"]


def test_viewer_camera_matches_the_pose():
    """A viser (OpenCV) camera at (0, 0, 3) looking at the origin sees the origin at the image centre."""
    import viser.transforms as vtf

    # camera-to-world columns: x right = +X, y down = -Y, z forward = -Z of the world
    c2w = np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]])
    cam = opencv_pose_to_camera(vtf.SO3.from_matrix(c2w).wxyz, (0, 0, 3), np.deg2rad(60), (40, 80))
    pts = torch.tensor([[[0.0, 0, 0], [0.0, -0.5, 0], [0.5, 0, 0]]])
    px = cam.transform_points_screen(pts, image_size=(40, 80))[0]
    f = 20 / np.tan(np.deg2rad(30))  # focal length in pixels of a 60 degree vertical FoV, 40 px high
    assert px[0, :2].tolist() == pytest.approx([40.0, 20.0], abs=1e-4)
    assert px[1, :2].tolist() == pytest.approx([40.0, 20.0 + f * 0.5 / 3], abs=1e-3)  # below the centre
    assert px[2, :2].tolist() == pytest.approx([40.0 + f * 0.5 / 3, 20.0], abs=1e-3)  # right of it


# ----------------------------------------------------------------------------------------------
# in the browser
# ----------------------------------------------------------------------------------------------
def _browser():
    from l3d.browser import BrowserUnavailable, headless_chromium

    try:
        return headless_chromium()
    except BrowserUnavailable as exc:  # pragma: no cover - raised on enter
        pytest.skip(str(exc))


def _screenshot(driver, path):
    driver.save_screenshot(str(path))
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _magenta(img):
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return (r > 120) & (b > 120) & (g < 0.6 * np.minimum(r, b))


def _chromium_or_skip():
    from l3d.browser import CHROMEDRIVER, CHROMIUM

    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip(f"no Chromium here ({CHROMIUM}, {CHROMEDRIVER})")


def test_view_command_shows_the_mesh_in_chromium(tmp_path):
    _chromium_or_skip()
    from l3d.browser import headless_chromium

    _icosphere_ply(tmp_path / "mesh.ply")
    proc = subprocess.Popen([sys.executable, "-m", "l3d.view", str(tmp_path / "mesh.ply"), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        url, lines = None, []
        deadline = time.time() + 60
        while url is None and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"viewer: (http://127\.0\.0\.1:\d+/)", line)
            url = found.group(1) if found else None
        assert url, "".join(lines)
        # keep reading what the server prints: a full pipe would block its next write (and its exit)
        drain = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        drain.start()
        with headless_chromium() as driver:
            driver.get(url)
            seen = 0
            for _ in range(40):  # up to 20 s for the client to load and draw
                time.sleep(0.5)
                seen = int(_magenta(_screenshot(driver, tmp_path / "shot.png")).sum())
                if seen > 2000:
                    break
        assert seen > 2000, f"the mesh is not on screen ({seen} magenta pixels)"
        proc.send_signal(signal.SIGINT)  # Ctrl-C stops it cleanly
        assert proc.wait(timeout=20) == 0, "".join(lines)[-3000:]
        drain.join(5)
        assert "stopped" in "".join(lines), "".join(lines)[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_training_viewer_renders_for_a_connected_browser_only(tmp_path):
    _chromium_or_skip()
    from l3d.browser import headless_chromium
    from l3d.cameras import look_at_view_transform, PerspectiveCameras

    R, T = look_at_view_transform(dist=3.0, elev=0.0, azim=torch.linspace(0, 300, 6))
    cams = PerspectiveCameras(R=R, T=T, focal_length=2.0)
    images = torch.rand(6, 32, 32, 3)
    calls = []

    def render(camera, hw):  # a magenta frame the size asked for
        calls.append(tuple(hw))
        time.sleep(0.05)
        img = torch.zeros(*hw, 3)
        img[..., 0] = img[..., 2] = 1.0
        return img

    viewer = TrainingViewer(cams, images, every_s=0.2, budget=0.1, max_side=64, log=lambda s: None)
    try:
        assert not viewer.update(0, render) and not calls  # nobody is watching: no render
        with headless_chromium() as driver:
            driver.get(viewer.url)
            deadline = time.time() + 30
            while not viewer.connected and time.time() < deadline:
                time.sleep(0.1)
            assert viewer.connected
            time.sleep(1.0)  # the client reports its camera
            rendered = [viewer.update(step, render) for step in range(1, 40) if not time.sleep(0.02)]
            # renders of 50 ms within a 10 % budget: at most one per 0.5 s of the ~1.8 s loop
            assert 1 <= sum(rendered) <= 5, rendered
            assert max(h for h, _ in calls) <= 64 and max(w for _, w in calls) <= 64
            seen = 0
            for _ in range(30):
                time.sleep(0.3)
                seen = int(_magenta(_screenshot(driver, tmp_path / "train.png")).sum())
                if seen > 20000:
                    break
            assert seen > 20000, f"the render is not the background ({seen} magenta pixels)"
    finally:
        viewer.close()

