"""l3d.export: meshes of implicit fields against analytic spheres, and files that trimesh opens."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from l3d.cli import ScriptParser
from l3d.errors import UserError
from l3d.export import add_mesh_flags, evaluate_grid, export_mesh, extract_mesh, save_mesh, save_point_cloud


def sphere_sdf(center, radius):
    c = torch.tensor(center, dtype=torch.float32)
    return lambda p: (p - c.to(p)).norm(dim=-1) - radius


def mesh_area(verts: torch.Tensor, faces: torch.Tensor) -> float:
    tri = verts[faces].double()  # (F, 3, 3)
    return float(0.5 * torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1).norm(dim=-1).sum())


def outward_fraction(verts, faces, center) -> float:
    tri = verts[faces].double()
    n = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    out = tri.mean(1) - torch.tensor(center, dtype=torch.float64)
    return float(((n * out).sum(-1) > 0).double().mean())


def test_evaluate_grid_matches_direct_evaluation_and_chunks():
    f = lambda p: p[:, 0] + 10 * p[:, 1] + 100 * p[:, 2]  # noqa: E731
    bbox = ((-1.0, 0.0, 2.0), (1.0, 3.0, 4.0))
    vol = evaluate_grid(f, bbox, (5, 4, 3), chunk=7, show_progress=False)  # chunk does not divide 60
    xs, ys, zs = (torch.linspace(a, b, n) for a, b, n in zip(bbox[0], bbox[1], (5, 4, 3)))
    ref = xs[:, None, None] + 10 * ys[None, :, None] + 100 * zs[None, None, :]
    assert vol.shape == (5, 4, 3)
    torch.testing.assert_close(vol, ref, rtol=0, atol=1e-4)
    calls = []
    evaluate_grid(lambda p: calls.append(len(p)) or p[:, 0], 1.0, 10, chunk=64, show_progress=False)
    assert max(calls) == 64 and sum(calls) == 1000


def test_sdf_sphere_radius_area_and_outward_normals():
    r, c, res = 0.6, (0.1, -0.2, 0.05), 64
    bbox = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
    mesh = extract_mesh(sphere_sdf(c, r), bbox, res, level=0.0, chunk=5000, show_progress=False)
    voxel = 2.0 / (res - 1)
    assert mesh.voxel_size == pytest.approx((voxel,) * 3)
    dist = (mesh.verts - torch.tensor(c)).norm(dim=-1)
    assert len(mesh.faces) > 1000
    assert float((dist - r).abs().max()) < voxel  # every vertex within a voxel of the true sphere
    area = mesh_area(mesh.verts, mesh.faces)
    assert abs(area / (4 * math.pi * r * r) - 1) < 0.03
    assert outward_fraction(mesh.verts, mesh.faces, c) == 1.0
    # a world-space bbox that is not a cube centred at the origin maps back correctly too
    shifted = extract_mesh(sphere_sdf(c, r), ((-0.6, -0.9, -0.7), (0.8, 0.5, 0.75)), (50, 60, 55),
                           show_progress=False)
    d2 = (shifted.verts - torch.tensor(c)).norm(dim=-1)
    assert float((d2 - r).abs().max()) < max(shifted.voxel_size)


def test_density_level_inside_above():
    # a radial density that is 100 at the centre and falls linearly: the level-50 set is the sphere of radius 0.5
    dens = lambda p: 100.0 * (1.0 - p.norm(dim=-1))  # noqa: E731
    mesh = extract_mesh(dens, 1.0, 48, level=50.0, inside="above", show_progress=False)
    dist = mesh.verts.norm(dim=-1)
    assert float((dist - 0.5).abs().max()) < 2.0 / 47
    assert outward_fraction(mesh.verts, mesh.faces, (0, 0, 0)) == 1.0
    # the same field with the SDF sign convention winds every face inwards
    wrong = extract_mesh(dens, 1.0, 48, level=50.0, inside="below", show_progress=False)
    assert outward_fraction(wrong.verts, wrong.faces, (0, 0, 0)) == 0.0
    assert abs(mesh_area(mesh.verts, mesh.faces) / (math.pi) - 1) < 0.03


def test_written_ply_and_obj_open_in_trimesh(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    r = 0.5
    colour = lambda p: (p * 0.5 + 0.5).clamp(0, 1)  # noqa: E731
    mesh, written = export_mesh(sphere_sdf((0, 0, 0), r), tmp_path / "run", 1.0, 40, color_fn=colour)
    assert [p.name for p in written] == ["mesh.ply", "mesh.obj"]
    for p in written:
        tm = trimesh.load(p, process=False, force="mesh")
        assert len(tm.vertices) == len(mesh.verts) and len(tm.faces) == len(mesh.faces)
        np.testing.assert_allclose(tm.vertices, mesh.verts.numpy(), atol=1e-6)
        np.testing.assert_array_equal(tm.faces, mesh.faces.numpy())
        assert tm.is_watertight
        assert tm.volume == pytest.approx(4 / 3 * math.pi * r ** 3, rel=0.03)  # positive: outward winding
    ply = trimesh.load(written[0], process=False)
    cols = np.asarray(ply.visual.vertex_colors)[:, :3]
    expected = np.round(colour(mesh.verts).numpy() * 255)
    assert np.abs(cols.astype(float) - expected).max() <= 1


def test_point_cloud_ply(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    g = torch.Generator().manual_seed(0)
    pts, cols = torch.randn(500, 3, generator=g), torch.rand(500, 3, generator=g)
    p = save_point_cloud(tmp_path / "points.ply", pts, cols)
    pc = trimesh.load(p)
    assert isinstance(pc, trimesh.PointCloud)
    np.testing.assert_allclose(pc.vertices, pts.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="ply"):
        save_point_cloud(tmp_path / "points.obj", pts)
    with pytest.raises(ValueError, match="ply or .obj"):
        save_mesh(tmp_path / "mesh.stl", extract_mesh(sphere_sdf((0, 0, 0), 0.5), 1.0, 8, show_progress=False))


def test_empty_level_set_and_bad_field_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match=r"does not cross the box.*\[0\.5"):
        export_mesh(lambda p: p.norm(dim=-1) + 0.5, tmp_path, 1.0, 9)  # the grid holds the origin
    assert not any(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(UserError, match="NaN"):
        extract_mesh(lambda p: torch.full((len(p),), float("nan")), 1.0, 8, show_progress=False)
    with pytest.raises(ValueError, match="one value per point"):
        extract_mesh(lambda p: p, 1.0, 8, show_progress=False)
    with pytest.raises(ValueError, match="lo < hi"):
        extract_mesh(sphere_sdf((0, 0, 0), 0.5), ((0, 0, 0), (1, -1, 1)), 8)


def test_mesh_flags_use_the_shared_vocabulary():
    ap = ScriptParser(prog="x")
    add_mesh_flags(ap, default_level=10.0)
    args = ap.parse_args(["--export_mesh", "--mesh_resolution", "32"])
    assert args.export_mesh and args.mesh_resolution == 32 and args.mesh_level == 10.0
    with pytest.raises(SystemExit):
        ap.parse_args(["--mesh_level", "nan"])
