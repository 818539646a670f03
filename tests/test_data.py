"""Tests of l3d.data: data root, registry, downloads (against a loopback HTTP server), CLI,
and the procedural stand-in mesh."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from l3d.errors import UserError
from l3d import data as l3ddata
from l3d.data import (
    DATASETS, DataFile, Dataset, DownloadError, data_root, download, get_path, load_mesh_or_standin,
    procedural_textured_mesh,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = os.environ.get("L3D_DATA")


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def temp_files(folder: Path):
    return [p.name for p in folder.rglob("*") if p.name.startswith(".")]


# ----------------------------------------------------------------------------------------------
# loopback HTTP server
# ----------------------------------------------------------------------------------------------
class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        self.requests.append(self.path)
        if self.path.endswith("/truncated.bin"):  # promises 1000 bytes, sends 10, hangs up
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """(base_url, served folder, list of requested paths)."""
    served = tmp_path / "served"
    served.mkdir()
    requests: list = []
    handler = functools.partial(type("H", (_Handler,), {"requests": requests}), directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served, requests
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def fake_dataset(monkeypatch, server):
    """A registered dataset 't' whose files are served by the loopback server."""
    base, served, requests = server
    (served / "t").mkdir()
    files = {"t/a.bin": os.urandom(5000), "t/sub/b.txt": b"hello\n", "t/nosum.dat": b"x" * 10}
    for rel, content in files.items():
        (served / rel).parent.mkdir(parents=True, exist_ok=True)
        (served / rel).write_bytes(content)
    ds = Dataset("t", "test", (
        DataFile("t/a.bin", base + "/t/a.bin", sha(files["t/a.bin"])),
        DataFile("t/sub/b.txt", base + "/t/sub/b.txt", sha(files["t/sub/b.txt"])),
        DataFile("t/nosum.dat", base + "/t/nosum.dat", None),
    ))
    monkeypatch.setitem(DATASETS, "t", ds)
    return ds, files, base, served, requests


# ----------------------------------------------------------------------------------------------
# root, registry, get_path
# ----------------------------------------------------------------------------------------------
def test_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("L3D_DATA", str(tmp_path))
    assert data_root() == tmp_path
    monkeypatch.delenv("L3D_DATA")
    assert data_root() == REPO / "data"


def test_registry_lists_course_files():
    a1 = {f.relpath for f in DATASETS["a1"].files}
    for n in ["cow.obj", "cow.mtl", "cow_texture.png", "cow_on_plane.obj", "cow_on_plane.mtl",
              "cow_on_plane.png", "cow_with_axis.obj", "cow_with_axis.mtl", "cow_with_axis.png",
              "joint_mesh.obj", "joint_mesh.mtl", "joint_mesh.png", "rgbd_data.pkl"]:
        assert f"a1/{n}" in a1
    a3 = {f.relpath for f in DATASETS["a3"].files}
    assert {f"a3/box_{i}.npy" for i in range(4)} | {"a3/bunny_pointcloud.npz"} <= a3
    for ds in DATASETS.values():
        for f in ds.files:
            assert f.url is None or f.url.startswith("https://raw.githubusercontent.com/learning3d/")
            assert f.sha256 is None or len(f.sha256) == 64


def test_recorded_checksums_match_the_shared_copy():
    if not SHARED or not (Path(SHARED) / "a1" / "cow.obj").exists():
        pytest.skip("L3D_DATA does not point to the course data copy")
    checked = 0
    for ds in DATASETS.values():
        for f in ds.files:
            p = Path(SHARED) / f.relpath
            if p.exists():
                assert f.sha256 == l3ddata.sha256_of(p), f.relpath
                checked += 1
    assert checked >= 20


def test_get_path(monkeypatch, tmp_path):
    monkeypatch.setenv("L3D_DATA", str(tmp_path))
    (tmp_path / "a1").mkdir()
    (tmp_path / "a1" / "cow.obj").write_text("v 0 0 0\n")
    assert get_path("a1/cow.obj") == tmp_path / "a1" / "cow.obj"
    assert get_path("a1/cow.mtl", required=False) is None
    with pytest.raises(UserError) as e:
        get_path("a1/cow.mtl")
    msg = str(e.value)
    assert str(tmp_path / "a1" / "cow.mtl") in msg and "python -m l3d.data download a1" in msg
    with pytest.raises(UserError, match="not part of any registered dataset"):
        get_path("zz/unknown.bin")


# ----------------------------------------------------------------------------------------------
# downloads
# ----------------------------------------------------------------------------------------------
def test_download_verifies_and_skips_present_files(fake_dataset, tmp_path, capsys):
    ds, files, base, served, requests = fake_dataset
    root = tmp_path / "root"
    got = download("t", root=root)
    assert got == [root / f.relpath for f in ds.files]
    for rel, content in files.items():
        assert (root / rel).read_bytes() == content
    out = capsys.readouterr().out
    assert "t/a.bin: downloaded 4.9 KiB, sha256 ok" in out
    assert "t/nosum.dat: downloaded 0.0 KiB, no checksum recorded, skipped verification" in out
    assert len(requests) == 3 and temp_files(root) == []
    # present with the right checksum: nothing fetched
    download("t", root=root)
    assert len(requests) == 3
    assert "t/a.bin: present, sha256 ok" in capsys.readouterr().out
    # a damaged local copy is fetched again; --force fetches everything
    (root / "t/a.bin").write_bytes(b"damaged")
    download("t", root=root, quiet=True)
    assert (root / "t/a.bin").read_bytes() == files["t/a.bin"] and len(requests) == 4
    download("t", root=root, force=True, quiet=True)
    assert len(requests) == 7


def test_download_base_url_override(fake_dataset, tmp_path, server):
    ds, files, base, served, requests = fake_dataset
    mirror = served / "mirror"
    for rel, content in files.items():
        (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        (mirror / rel).write_bytes(content)
    download("t", root=tmp_path / "r", base_url=base + "/mirror/", quiet=True)
    assert sorted(requests) == sorted(f"/mirror/{r}" for r in files)


def test_download_rejects_corrupted_file(fake_dataset, tmp_path):
    ds, files, base, served, requests = fake_dataset
    (served / "t/a.bin").write_bytes(b"corrupted on the server")
    root = tmp_path / "root"
    with pytest.raises(DownloadError) as e:
        download("t", root=root, quiet=True)
    msg = str(e.value)
    assert "\n" not in msg and base + "/t/a.bin" in msg and "checksum mismatch" in msg
    assert "stand-ins" in msg
    assert not (root / "t/a.bin").exists()  # nothing at the target
    assert (root / "t/sub/b.txt").read_bytes() == files["t/sub/b.txt"]  # the others finished
    assert temp_files(root) == []


def test_download_http_errors(fake_dataset, tmp_path, monkeypatch):
    ds, files, base, served, requests = fake_dataset
    missing = DataFile("t/missing.bin", base + "/t/missing.bin", "0" * 64)
    monkeypatch.setitem(DATASETS, "t404", Dataset("t404", "", (missing,)))
    with pytest.raises(DownloadError, match=r"/t/missing.bin: HTTP 404"):
        download("t404", root=tmp_path, quiet=True)
    opt = DataFile("t/missing.bin", base + "/t/missing.bin", "0" * 64, optional=True)
    monkeypatch.setitem(DATASETS, "topt", Dataset("topt", "", (opt, ds.files[1])))
    assert download("topt", root=tmp_path, quiet=True) == [tmp_path / "t/sub/b.txt"]


def test_download_truncated_transfer_leaves_nothing(fake_dataset, tmp_path, monkeypatch):
    ds, files, base, served, requests = fake_dataset
    f = DataFile("t/truncated.bin", base + "/t/truncated.bin", None)
    monkeypatch.setitem(DATASETS, "ttr", Dataset("ttr", "", (f,)))
    with pytest.raises(DownloadError, match="truncated.bin: transfer ended after 10 of 1000 bytes") as e:
        download("ttr", root=tmp_path / "r", quiet=True)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "r/t/truncated.bin").exists() and temp_files(tmp_path / "r") == []


def test_download_unreachable_is_one_line(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setitem(DATASETS, "tu", Dataset("tu", "", (DataFile("t/x.bin", url + "/t/x.bin", None),)))
    with pytest.raises(DownloadError) as e:
        download("tu", root=tmp_path, quiet=True, timeout=5)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"cannot download {url}/t/x.bin: ")
    assert "refused" in msg.lower() and "procedural stand-ins" in msg
    assert not (tmp_path / "t/x.bin").exists() and temp_files(tmp_path) == []
    with pytest.raises(UserError, match="unknown dataset 'nope'"):
        download("nope")


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def run_cli(*args, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "l3d.data", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)


def test_cli_list_and_failing_download(tmp_path):
    (tmp_path / "a1").mkdir()
    (tmp_path / "a1" / "cow.obj").write_text("v 0 0 0\n")
    r = run_cli("list", env_extra={"L3D_DATA": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert f"data root: {tmp_path} ($L3D_DATA)" in r.stdout
    assert "a1: 1/13 files present" in r.stdout
    assert "  present                a1/cow.obj" in r.stdout and "missing                a1/cow.mtl" in r.stdout
    r = run_cli("download", "a1", "--root", str(tmp_path / "r"), "--base-url",
                f"http://127.0.0.1:{closed_port()}", "--timeout", "5")
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot download http://127.0.0.1:")
    assert "Traceback" not in r.stderr
    r = run_cli("download", "nope")
    assert r.returncode == 2 and r.stderr.strip().startswith("error: unknown dataset 'nope'; known: a1, a1_reference, a2, a3, a3_nerf, a3_reference, a4, a5")
    r = run_cli("download", "--help")
    assert r.returncode == 0 and "--base-url" in r.stdout and "--force" in r.stdout and "--root" in r.stdout


def test_cli_fetch_offline_is_one_line_and_succeeds(tmp_path):
    """`make demo` starts with `fetch`: offline it says so in one line, writes nothing, exits 0."""
    r = run_cli("fetch", "--root", str(tmp_path / "r"), "--base-url", f"http://127.0.0.1:{closed_port()}",
                "--timeout", "5")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("offline (cannot reach 127.0.0.1:"), r.stdout
    assert "0 course files already in" in lines[0]
    assert not any(p.is_file() for p in (tmp_path / "r").rglob("*"))


def test_cli_fetch_from_mirror_skips_what_is_present(tmp_path):
    """`fetch a3 a3_reference` from a loopback mirror of the course copy: verified files land; a second
    fetch downloads nothing (present and verified)."""
    if not SHARED or not (Path(SHARED) / "a3" / "bunny_pointcloud.npz").exists():
        pytest.skip("L3D_DATA does not point to the course data copy")
    handler = functools.partial(type("H", (_Handler,), {"requests": []}), directory=SHARED)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        r = run_cli("fetch", "a3", "a3_reference", "--root", str(tmp_path), "--base-url", base)
        n_first = len(handler.func.requests)
        r2 = run_cli("fetch", "a3", "a3_reference", "--root", str(tmp_path), "--base-url", base)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert r.returncode == 0 and r2.returncode == 0, r.stderr + r2.stderr
    assert f"a3: 9/9 files in {tmp_path}" in r.stdout and f"a3_reference: 13/13 files in {tmp_path}" in r.stdout
    assert (tmp_path / "a3" / "reference" / "depth.png").read_bytes() == (Path(SHARED) / "a3/reference/depth.png").read_bytes()
    assert n_first >= 22 and len(handler.func.requests) == n_first  # nothing fetched the second time


def test_cli_download_from_mirror_of_the_shared_copy(tmp_path):
    """`download a3` against a loopback mirror of the real files: verified with the real checksums."""
    if not SHARED or not (Path(SHARED) / "a3" / "bunny_pointcloud.npz").exists():
        pytest.skip("L3D_DATA does not point to the course data copy")
    handler = functools.partial(type("H", (_Handler,), {"requests": []}), directory=SHARED)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        r = run_cli("download", "a3", "--root", str(tmp_path), "--base-url",
                    f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("sha256 ok") == len(DATASETS["a3"].files)
    for f in DATASETS["a3"].files:
        assert (tmp_path / f.relpath).read_bytes() == (Path(SHARED) / f.relpath).read_bytes()


# ----------------------------------------------------------------------------------------------
# procedural stand-in
# ----------------------------------------------------------------------------------------------
def test_procedural_mesh_is_closed_manifold_with_outward_normals():
    m = procedural_textured_mesh()
    v, f = m.verts_packed().double(), m.faces_packed()
    assert v.shape == (3122, 3) and f.shape == (6240, 3)
    # fits in [-1, 1]^3 with the cow's proportions, head towards -z and raised
    assert v.abs().max() < 1.0
    front = v[v[:, 2].argmin()]
    assert front[2] < -0.8 and front[1] > 0 and abs(front[0]) < 0.05
    # closed 2-manifold, consistently oriented: every directed edge once, its reverse once
    e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    directed = {tuple(x) for x in e.tolist()}
    assert len(directed) == len(e)
    assert all((b, a) in directed for a, b in directed)
    undirected = {tuple(sorted(x)) for x in e.tolist()}
    assert len(v) - len(undirected) + len(f) == 2  # Euler characteristic of a sphere
    # outward: positive enclosed volume (divergence theorem), and normals at extreme points point out
    fv = v[f]
    volume = (fv[:, 0] * torch.cross(fv[:, 1], fv[:, 2], dim=-1)).sum() / 6
    assert volume > 0.5
    vn = m.verts_normals_packed().double()
    for axis in range(3):
        assert vn[v[:, axis].argmax(), axis] > 0.9 and vn[v[:, axis].argmin(), axis] < -0.9
    # every face seen from the centre is counter-clockwise (the surface is star-shaped)
    assert (torch.linalg.det(fv) > 0).all()


def test_procedural_mesh_uvs_and_texture():
    m = procedural_textured_mesh()
    t = m.textures
    uv = t.verts_uvs_list()[0]
    assert uv.min() >= 0 and uv.max() <= 1
    assert t.maps.shape == (1, 512, 512, 3) and t.maps.min() >= 0 and t.maps.max() <= 1
    assert t.maps.std() > 0.05  # a pattern, not a flat colour
    fuv = t.faces_verts_uvs_packed().double()  # (F, 3, 2)
    # a proper parameterisation: no face spans the seam, no face is flipped in uv space
    assert (fuv[..., 0].amax(1) - fuv[..., 0].amin(1)).max() <= 1 / 80 + 1e-6
    d1, d2 = fuv[:, 1] - fuv[:, 0], fuv[:, 2] - fuv[:, 0]
    area = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    assert (area > 0).all() or (area < 0).all()
    # deterministic
    m2 = procedural_textured_mesh()
    assert torch.equal(m2.verts_packed(), m.verts_packed()) and torch.equal(m2.textures.maps, t.maps)


def test_load_mesh_or_standin(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("L3D_DATA", str(tmp_path))
    m = load_mesh_or_standin()
    err = capsys.readouterr().err
    assert err == (f"{tmp_path / 'a1' / 'cow.obj'} not found; using the built-in procedural mesh "
                   "(run `python -m l3d.data download a1` for the real one)\n")
    assert m.verts_packed().shape == (3122, 3)
    m = load_mesh_or_standin(force_synthetic=True)
    assert capsys.readouterr().err == "" and m.verts_packed().shape == (3122, 3)
    if SHARED and (Path(SHARED) / "a1" / "cow.obj").exists():
        monkeypatch.setenv("L3D_DATA", SHARED)
        m = load_mesh_or_standin()
        assert capsys.readouterr().err == "" and m.verts_packed().shape == (2930, 3)
