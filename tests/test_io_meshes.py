"""Mesh input: OBJ materials as PyTorch3D reads them, malformed OBJ lines, and glTF / GLB / OFF /
STL through :func:`l3d.io.load_mesh`, checked by rendering through the rasteriser."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from l3d.cameras import FoVPerspectiveCameras, look_at_view_transform
from l3d.errors import UserError
from l3d.io import load_mesh, load_obj, read_mtl, read_obj
from l3d.raster import rasterize_meshes
from l3d.shading import render_mesh
from l3d.structures import TexturesUV, TexturesVertex, interpolate_face_attributes

pytestmark = pytest.mark.usefixtures("one_thread")


def strip_obj(n_quads: int) -> str:
    """``v`` and ``vt`` lines of ``n_quads`` unit quads side by side along x in the plane z = 0
    (x in [-n/2, n/2]); quad q has vertices 4q + 1 .. 4q + 4 and uvs 1 .. 4 (faces are the caller's)."""
    lines = []
    for q in range(n_quads):
        x0 = q - n_quads / 2
        lines += [f"v {x0} -0.5 0", f"v {x0 + 1} -0.5 0", f"v {x0 + 1} 0.5 0", f"v {x0} 0.5 0"]
    lines += ["vt 0.1 0.1", "vt 0.9 0.1", "vt 0.9 0.9", "vt 0.1 0.9"]
    return "\n".join(lines) + "\n"


def render_unlit(mesh, size=64, dist=2.0, fov=60.0):
    cam = FoVPerspectiveCameras(fov=fov, R=torch.eye(3)[None], T=torch.tensor([[0.0, 0.0, dist]]))
    frags = rasterize_meshes(mesh, cam, size)
    img = render_mesh(mesh, cam, size, shader="unlit", background=(0.0, 0.0, 0.0))[0]
    return img, frags


# ----------------------------------------------------------------------------------------------
# OBJ materials
# ----------------------------------------------------------------------------------------------
def test_kd_only_material_becomes_its_colour(tmp_path):
    (tmp_path / "m.mtl").write_text("newmtl red\nKa 0 0 0\nKd 0.8 0.1 0.2\nKs 0 0 0\n")
    (tmp_path / "a.obj").write_text("mtllib m.mtl\n" + strip_obj(1) + "usemtl red\nf 1 2 3 4\n")
    mesh = load_obj(tmp_path / "a.obj")
    assert isinstance(mesh.textures, TexturesUV)  # not dropped
    img, frags = render_unlit(mesh)
    hit = frags.mask[0]
    assert hit.sum() > 500
    np.testing.assert_allclose(img[hit][:, :3].numpy(), np.tile([0.8, 0.1, 0.2], (int(hit.sum()), 1)), atol=1e-6)


def test_single_material_without_usemtl_applies_to_all_faces(tmp_path):
    rng = np.random.default_rng(3)
    colour = rng.integers(0, 256, 3, dtype=np.uint8)
    Image.fromarray(np.broadcast_to(colour, (5, 6, 3)).copy()).save(tmp_path / "t.png")
    (tmp_path / "m.mtl").write_text("newmtl only\nKd 1 1 1\nmap_Kd t.png\n")
    (tmp_path / "a.obj").write_text("mtllib m.mtl\n" + strip_obj(2) + "f 1/1 2/2 3/3 4/4\nf 5/1 6/2 7/3 8/4\n")
    assert read_obj(tmp_path / "a.obj").material_names == []  # no usemtl in the file ...
    mesh = load_obj(tmp_path / "a.obj")  # ... but the one material is every face's
    img, frags = render_unlit(mesh, dist=2.5, fov=70.0)
    hit = frags.mask[0]
    assert set(frags.pix_to_face[0][hit].unique().tolist()) == {0, 1, 2, 3}
    np.testing.assert_allclose(img[hit][:, :3].numpy(), np.tile(colour / 255.0, (int(hit.sum()), 1)), atol=1e-6)
    # two materials and no usemtl: which one would be ambiguous, so no texture (as PyTorch3D)
    (tmp_path / "m.mtl").write_text("newmtl a\nKd 1 0 0\nnewmtl b\nKd 0 1 0\n")
    assert load_obj(tmp_path / "a.obj").textures is None


def test_usemtl_without_mtllib_warns_and_loads_untextured(tmp_path):
    (tmp_path / "lonely.obj").write_text(strip_obj(1) + "usemtl skin\nf 1/1 2/2 3/3 4/4\n")
    with pytest.warns(UserWarning, match=r"lonely\.obj: 'usemtl skin' but no 'mtllib'"):
        mesh = load_obj(tmp_path / "lonely.obj")
    assert mesh.textures is None and mesh.faces_packed().shape == (2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # load_textures=False reads no materials and says nothing
        assert load_obj(tmp_path / "lonely.obj", load_textures=False).textures is None


def test_several_materials_images_and_colours_render_per_face(tmp_path):
    """Four quads: an image material, two Kd-only materials, a material the MTL does not define
    (white, as PyTorch3D's atlas); each quad renders in its own colour."""
    rng = np.random.default_rng(4)
    c_img = rng.integers(0, 256, 3, dtype=np.uint8)
    Image.fromarray(np.broadcast_to(c_img, (4, 4, 3)).copy()).save(tmp_path / "img.png")
    (tmp_path / "m.mtl").write_text(
        "newmtl textured\nKd 0.5 0.5 0.5\nmap_Kd img.png\n"
        "newmtl green\nKd 0.1 0.7 0.2\n"
        "newmtl blue\nKd 0.05 0.1 0.9\n"
    )
    (tmp_path / "a.obj").write_text(
        "mtllib m.mtl\n" + strip_obj(4)
        + "usemtl green\nf 1/1 2/2 3/3 4/4\nusemtl textured\nf 5/1 6/2 7/3 8/4\n"
        + "usemtl unknown\nf 9/1 10/2 11/3 12/4\nusemtl blue\nf 13/1 14/2 15/3 16/4\n"
    )
    mesh = load_obj(tmp_path / "a.obj")
    img, frags = render_unlit(mesh, size=96, dist=3.0, fov=80.0)
    want = torch.tensor([[0.1, 0.7, 0.2], (c_img / 255.0).tolist(), [1.0, 1.0, 1.0], [0.05, 0.1, 0.9]])
    hit = frags.mask[0]
    quad = frags.pix_to_face[0][hit] // 2  # (Q,) which quad each covered pixel shows
    assert set(quad.tolist()) == {0, 1, 2, 3}
    np.testing.assert_allclose(img[hit][:, :3].numpy(), want[quad].numpy(), atol=1e-6)


def test_mtl_with_a_bad_kd_names_file_and_line(tmp_path):
    (tmp_path / "m.mtl").write_text("newmtl a\nKd 0.1 0.2\n")
    with pytest.raises(UserError, match=r"m\.mtl:2: expected 'Kd r g b' with three finite numbers"):
        read_mtl(tmp_path / "m.mtl")


# ----------------------------------------------------------------------------------------------
# malformed OBJ lines: rejected as PyTorch3D rejects them, with file and line
# ----------------------------------------------------------------------------------------------
HEAD = "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nvn 0 0 1\n"  # 7 lines


@pytest.mark.parametrize("body, line, message", [
    ("vt 0.5\n", 8, r"'vt' needs at least 2 numbers"),
    ("vn 0 1\n", 8, r"'vn' needs at least 3 numbers"),
    ("f 1 2/2 3/3\n", 8, r"face 'f 1 2/2 3/3' mixes corner forms"),  # v with v/vt
    ("f 1/1/1 2//1 3//1\n", 8, r"mixes corner forms"),  # v/vt/vn with v//vn
    ("f 1//1 2 3\n", 8, r"mixes corner forms"),  # v//vn with v
    ("f 1/1 2/2 3/3\nf 1/1 2/2/1 3/3\n", 9, r"mixes corner forms"),  # v/vt with v/vt/vn, 2nd face
    ("f 1/1/1/1 2/2/1/1 3/3/1/1\n", 8, r"face corner '1/1/1/1' has more than 3 fields"),
    ("f 1/1/1 2/2/1 3/2/1/4\n", 8, r"'3/2/1/4' has more than 3 fields"),
])
def test_malformed_lines_are_rejected_with_file_and_line(tmp_path, body, line, message):
    p = tmp_path / "bad.obj"
    p.write_text(HEAD + body)
    with pytest.raises(UserError, match=rf"bad\.obj:{line}: .*{message}"):
        read_obj(p)


def test_consistent_corner_forms_are_accepted(tmp_path):
    p = tmp_path / "ok.obj"
    p.write_text(HEAD + "f 1 2 3\nf 1/1 2/2 3/3\nf 1//1 2//1 3//1\nf 1/1/1 2/2/1 3/3/1\nvn 0 1 0\n")
    obj = read_obj(p)
    np.testing.assert_array_equal(obj.faces, [[0, 1, 2]] * 4)
    np.testing.assert_array_equal(obj.faces_uvs, [[-1, -1, -1], [0, 1, 2], [-1, -1, -1], [0, 1, 2]])
    np.testing.assert_array_equal(obj.normals, [[0, 0, 1], [0, 1, 0]])


# ----------------------------------------------------------------------------------------------
# glTF / GLB / OFF / STL through trimesh
# ----------------------------------------------------------------------------------------------
BLOCK = 8  # texture block size in texels


def textured_box_glb(path: Path):
    """A unit cube with its own corners per face (24 vertices), each face mapped into the interior
    of its own block of a 2 x 3 block texture; returns (block colours (6, 3) uint8, face block (12,))."""
    import trimesh

    rng = np.random.default_rng(7)
    colours = rng.integers(0, 256, (6, 3), dtype=np.uint8)
    tex = np.zeros((2 * BLOCK, 3 * BLOCK, 3), np.uint8)
    for b in range(6):  # six blocks (test set-up, not library code)
        r, c = divmod(b, 3)
        tex[r * BLOCK:(r + 1) * BLOCK, c * BLOCK:(c + 1) * BLOCK] = colours[b]
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    normals = box.face_normals  # (12, 3) two triangles per side
    side = np.argmax(np.abs(normals), 1) * 2 + (normals.max(1) > 0.5)  # (12,) 0..5
    verts = box.vertices[box.faces].reshape(-1, 3)  # (36, 3)
    faces = np.arange(36).reshape(-1, 3)
    # uv: the corner's position within its side, squeezed into the block's central half
    axes = np.array([[1, 2], [1, 2], [0, 2], [0, 2], [0, 1], [0, 1]])[np.repeat(side, 3)]  # (36, 2)
    local = np.take_along_axis(verts, axes, 1) + 0.5  # (36, 2) in [0, 1]
    block = np.repeat(side, 3)
    r, c = block // 3, block % 3
    px = c * BLOCK + BLOCK / 4 + local[:, 0] * BLOCK / 2  # texel x (columns), continuous
    py = r * BLOCK + BLOCK / 4 + local[:, 1] * BLOCK / 2  # texel y from the top
    # uv convention of OBJ / trimesh: (0, 0) is the bottom-left, align_corners=True texel centres
    uv = np.stack([px / (tex.shape[1] - 1), 1 - py / (tex.shape[0] - 1)], 1)
    mat = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(tex))
    mesh = trimesh.Trimesh(verts, faces, visual=trimesh.visual.TextureVisuals(uv=uv, material=mat), process=False)
    mesh.export(path)
    return colours, side


def corner_camera(dist=3.0):
    R, T = look_at_view_transform(dist, 30.0, 40.0)
    return FoVPerspectiveCameras(fov=50.0, R=R, T=T)


def test_glb_textured_box_renders_its_texture(tmp_path):
    colours, side = textured_box_glb(tmp_path / "box.glb")
    mesh = load_mesh(tmp_path / "box.glb")
    assert isinstance(mesh.textures, TexturesUV) and mesh.faces_packed().shape == (12, 3)
    cam = corner_camera()
    frags = rasterize_meshes(mesh, cam, 64)
    img = render_mesh(mesh, cam, 64, shader="unlit")[0, ..., :3]
    hit = frags.mask[0]
    face = frags.pix_to_face[0][hit]
    assert len(set(side[face.numpy()].tolist())) == 3  # three sides in view
    want = torch.from_numpy(colours[side[face.numpy()]] / 255.0).float()
    # every covered pixel shows its side's block colour (uvs stay inside the blocks: exact)
    np.testing.assert_allclose(img[hit].numpy(), want.numpy(), atol=2e-6)
    # the same scene as text glTF with its buffers in separate files renders the same image
    import trimesh

    (tmp_path / "gltf").mkdir()
    for name, data in trimesh.load(tmp_path / "box.glb").export(file_type="gltf").items():
        (tmp_path / "gltf" / name).write_bytes(data)
    again = load_mesh(tmp_path / "gltf" / "model.gltf")
    torch.testing.assert_close(render_mesh(again, cam, 64, shader="unlit")[0, ..., :3], img, atol=1e-6, rtol=0)


def test_glb_vertex_colours_render_interpolated(tmp_path):
    import trimesh

    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    rgba = np.random.default_rng(8).integers(0, 256, (8, 4), dtype=np.uint8)
    rgba[:, 3] = 255
    trimesh.Trimesh(box.vertices, box.faces, vertex_colors=rgba, process=False).export(tmp_path / "vc.glb")
    mesh = load_mesh(tmp_path / "vc.glb")
    assert isinstance(mesh.textures, TexturesVertex)
    np.testing.assert_allclose(mesh.verts_packed().numpy(), box.vertices, atol=1e-7)
    cols = torch.from_numpy(rgba[:, :3] / 255.0).float()
    np.testing.assert_allclose(mesh.textures.verts_features_packed().numpy(), cols.numpy(), atol=1e-7)
    cam = corner_camera()
    frags = rasterize_meshes(mesh, cam, 48)
    img = render_mesh(mesh, cam, 48, shader="unlit")[0, ..., :3]
    want = interpolate_face_attributes(frags.pix_to_face[0], frags.bary_coords[0], cols[mesh.faces_packed()])
    hit = frags.mask[0]
    assert hit.sum() > 300
    np.testing.assert_allclose(img[hit].numpy(), want[hit].numpy(), atol=1e-6)


def test_load_mesh_dispatches_on_extension(tmp_path):
    import trimesh

    box = trimesh.creation.box(extents=(2.0, 2.0, 2.0))
    for suffix in (".off", ".stl", ".ply", ".obj"):
        box.export(tmp_path / f"b{suffix}")
        m = load_mesh(tmp_path / f"b{suffix}")
        assert float(m.faces_areas_packed().sum()) == pytest.approx(24.0, rel=1e-6), suffix
    # a glTF scene node transform places the mesh
    scene = trimesh.Scene()
    scene.add_geometry(box, transform=trimesh.transformations.translation_matrix([5.0, 0.0, 0.0]))
    scene.export(tmp_path / "moved.glb")
    m = load_mesh(tmp_path / "moved.glb")
    assert float(m.verts_packed()[:, 0].mean()) == pytest.approx(5.0, abs=1e-6)
    # errors: one line naming the file
    with pytest.raises(UserError, match=r"b\.xyz: expected a mesh file ending in \.obj"):
        load_mesh(tmp_path / "b.xyz")
    (tmp_path / "junk.glb").write_bytes(b"glTF\x02\x00\x00\x00garbage")
    with pytest.raises(UserError, match=r"junk\.glb: expected a GLB mesh file"):
        load_mesh(tmp_path / "junk.glb")
    with pytest.raises(FileNotFoundError):
        load_mesh(tmp_path / "missing.stl")
