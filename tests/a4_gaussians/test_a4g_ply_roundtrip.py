"""3DGS .ply round trip: a file in the original implementation's layout (degree-3 SH, normals,
extra properties), written by plyfile, reads back exactly and re-writes to the same values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from a4_gaussians_diffusion.gaussians.ply import load_gaussians_ply, save_gaussians_ply

plyfile = pytest.importorskip("plyfile")

N = 257
# the property order of 3DGS's save_ply: positions, normals, DC, rest (channel-major), opacity, scales, rotation
STANDARD = (["x", "y", "z", "nx", "ny", "nz"] + [f"f_dc_{i}" for i in range(3)] + [f"f_rest_{i}" for i in range(45)]
            + ["opacity"] + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)])
GAUSSIAN_PROPS = [p for p in STANDARD if p not in ("nx", "ny", "nz")]


def standard_3dgs_ply(path, n=N, seed=0):
    """Random Gaussians written as 3DGS writes them, plus two properties no 3DGS reader knows."""
    rng = np.random.default_rng(seed)
    fields = [(name, "f4") for name in STANDARD] + [("semantic_id", "i4"), ("confidence", "f8")]
    data = np.empty(n, dtype=fields)
    for name in STANDARD:
        data[name] = rng.normal(size=n).astype(np.float32)
    data["nx"], data["ny"], data["nz"] = 0.0, 0.0, 0.0  # 3DGS writes zero normals
    data["semantic_id"] = rng.integers(0, 100, n)
    data["confidence"] = rng.random(n)
    plyfile.PlyData([plyfile.PlyElement.describe(data, "vertex")], text=False).write(str(path))
    return data


def test_standard_3dgs_file_reads_back_exactly(tmp_path):
    data = standard_3dgs_ply(tmp_path / "in.ply")
    g = load_gaussians_ply(tmp_path / "in.ply")
    col = lambda *names: torch.from_numpy(np.stack([data[k] for k in names], -1))  # noqa: E731
    assert g.num_gaussians == N and not g.isotropic and g.sh_degree == 3
    assert torch.equal(g.means.detach(), col("x", "y", "z"))
    assert torch.equal(g.log_scales.detach(), col("scale_0", "scale_1", "scale_2"))
    assert torch.equal(g.quats.detach(), col("rot_0", "rot_1", "rot_2", "rot_3"))  # stored as written, w first
    assert torch.equal(g.opacity_logits.detach(), torch.from_numpy(data["opacity"].copy()))
    sh = g.sh.detach().view(N, 16, 3)  # coefficient-major: sh[:, k, c]
    assert torch.equal(sh[:, 0], col("f_dc_0", "f_dc_1", "f_dc_2"))
    for c in range(3):  # f_rest_{c * 15 + (k - 1)} is coefficient k of channel c (3DGS's channel-major order)
        for k in (1, 2, 8, 15):
            assert torch.equal(sh[:, k, c], torch.from_numpy(data[f"f_rest_{c * 15 + k - 1}"].copy()))


def test_rewrite_keeps_every_gaussian_value_and_opens_elsewhere(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    data = standard_3dgs_ply(tmp_path / "in.ply")
    g = load_gaussians_ply(tmp_path / "in.ply")
    out = save_gaussians_ply(tmp_path / "out.ply", g)
    back = plyfile.PlyData.read(str(out))["vertex"].data
    for name in GAUSSIAN_PROPS:  # bit-exact, in the standard property names
        assert np.array_equal(back[name], data[name]), name
    assert list(back.dtype.names) == GAUSSIAN_PROPS  # the standard order (normals and unknown extras dropped)
    again = load_gaussians_ply(out)
    for a, b in zip(g.params().values(), again.params().values()):
        assert torch.equal(a.detach(), b.detach())
    pc = trimesh.load(out)  # other tools see a point cloud with the Gaussians' centres
    assert isinstance(pc, trimesh.PointCloud) and len(pc.vertices) == N
    np.testing.assert_array_equal(np.asarray(pc.vertices, dtype=np.float32), np.stack([data[k] for k in "xyz"], -1))


@pytest.mark.parametrize("degree", [0, 1, 2])
def test_lower_degree_files_pad_the_missing_coefficients_with_zeros(tmp_path, degree):
    per_ch = (degree + 1) ** 2 - 1
    names = ["x", "y", "z"] + [f"f_dc_{i}" for i in range(3)] + [f"f_rest_{i}" for i in range(3 * per_ch)] + \
        ["opacity"] + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    rng = np.random.default_rng(degree)
    data = np.empty(16, dtype=[(n, "f4") for n in names])
    for n in names:
        data[n] = rng.normal(size=16).astype(np.float32)
    plyfile.PlyData([plyfile.PlyElement.describe(data, "vertex")]).write(str(tmp_path / "low.ply"))
    g = load_gaussians_ply(tmp_path / "low.ply")
    assert g.sh_degree == degree
    sh = g.sh.detach().view(16, 16, 3)
    for c in range(3):
        for k in range(1, per_ch + 1):
            assert torch.equal(sh[:, k, c], torch.from_numpy(data[f"f_rest_{c * per_ch + k - 1}"].copy()))
    assert bool((sh[:, per_ch + 1:] == 0).all())
