"""Assignment 1: the measurements behind the checks pass on the working method and fail on a broken one."""

import math

import pytest
import torch

from l3d.data import data_root, procedural_textured_mesh

pytestmark = pytest.mark.usefixtures("one_thread")

HAVE_COURSE = (data_root() / "a1" / "cow_on_plane.obj").exists()


@pytest.fixture(scope="module")
def cow_on_floor():
    from a1_rendering.common import standin_on_floor

    return standin_on_floor(procedural_textured_mesh())


# ----------------------------------------------------------------------------------------------
# dolly zoom
# ----------------------------------------------------------------------------------------------
def _variation(size):
    return float(size.max() / size.min() - 1)


def test_dolly_keeps_the_subject_size_and_labels_outside(cow_on_floor):
    from a1_rendering.common import small_faces
    from a1_rendering.dolly_zoom import auto_focus_z, dolly_cameras, dolly_frames
    from a1_rendering.measure import subject_size
    from l3d.raster import rasterize_meshes

    mesh = cow_on_floor
    subject = small_faces(mesh)
    assert int((~subject).sum()) == 2  # the floor quad, nothing of the cow
    focus = auto_focus_z(mesh, subject, 2.5, 5.0, 120.0, image_size=64, iters=10)
    d = dolly_frames(mesh, 12, 96, focus_z=focus, subject=subject)
    assert _variation(d.subject_size) < 0.05  # measured 0.02
    floor = d.size_of(~subject)
    assert (floor[-1] / floor[0]) ** 2 > 3  # the floor stretches (measured ~80)
    # the distance measured to the origin instead of the subject: its front grows, > 5 %
    assert _variation(dolly_frames(mesh, 12, 96, focus_z=0.0, subject=subject).subject_size) > 0.08
    # a zoom without the dolly (camera stays at the first distance): the cow grows many times
    fovs = torch.linspace(5.0, 120.0, 6)
    cams = dolly_cameras(fovs, 2.5, focus)
    cams.T[:] = cams.T[:1]
    zoom = subject_size(rasterize_meshes(mesh, cams, 96).pix_to_face, subject)
    assert _variation(zoom) > 5
    # labels sit in a strip above the picture: the picture below is the unlabelled render
    plain = dolly_frames(mesh, 12, 96, focus_z=focus, label=False).frames
    strip = d.frames.shape[1] - 96
    assert strip >= 14 and torch.equal(d.frames[:, strip:], plain)
    red = (d.frames[:, :strip, :, 0] > 0.8) & (d.frames[:, :strip, :, 1] < 0.5)
    assert bool(red.flatten(1).any(1).all())  # every frame carries its label


def test_cottage_dolly_keeps_the_house_size():
    from a1_rendering.dolly_zoom import auto_focus_z, dolly_frames
    from a1_rendering.fun import cottage_scene

    scene, masks = cottage_scene(with_masks=True, meadow=True)
    house = masks["house"]
    kw = dict(k=2.4, fov_start=10.0, fov_end=110.0, subject=house, shader="flat", label=False)
    focus = auto_focus_z(scene, house, 2.4, 10.0, 110.0, image_size=64, iters=10)
    d = dolly_frames(scene, 8, 96, focus_z=focus, **kw)
    assert _variation(d.subject_size) < 0.05
    path = d.size_of(masks["path"])
    assert (path[-1] / path[0]) ** 2 > 5  # the path towards the camera stretches
    # the previous setting (distance to the origin, behind the house's front): the house doubled
    assert _variation(dolly_frames(scene, 8, 96, focus_z=0.0, **kw).subject_size) > 0.5


@pytest.mark.skipif(not HAVE_COURSE, reason="course data not found under $L3D_DATA")
def test_course_dolly_subject_size_within_five_percent():
    from a1_rendering.common import small_faces
    from a1_rendering.dolly_zoom import auto_focus_z, dolly_frames
    from l3d.io import load_obj

    mesh = load_obj(data_root() / "a1" / "cow_on_plane.obj")
    subject = small_faces(mesh)
    assert int((~subject).sum()) == 12  # the slab's faces
    focus = auto_focus_z(mesh, subject, 2.5, 5.0, 120.0)
    assert -0.3 < focus < -0.1  # between the head (-0.67) and the origin
    assert _variation(dolly_frames(mesh, 12, 128, focus_z=focus, subject=subject).subject_size) < 0.04  # 0.028
    # the course's own reference setting varies by about 15 %
    assert _variation(dolly_frames(mesh, 12, 128, focus_z=0.0, subject=subject).subject_size) > 0.1


# ----------------------------------------------------------------------------------------------
# silhouettes, motion, GIF timing
# ----------------------------------------------------------------------------------------------
def test_silhouette_match_needs_the_right_camera():
    from a1_rendering.measure import sample_silhouette, silhouette_match
    from a1_rendering.render_mesh import baseline_camera, render_baseline
    from l3d.cameras import FoVPerspectiveCameras

    mesh = procedural_textured_mesh()
    mask = render_baseline(mesh, 96, rgba=True)[..., 3] > 0.5
    good = silhouette_match(mask, sample_silhouette(mesh, baseline_camera(), 96, 50_000)[0])
    assert good > 0.99
    for R, T in ((torch.eye(3), (0.1, 0.0, 3.0)),  # shifted by 0.1 (3 pixels)
                 (torch.diag(torch.tensor([1.0, -1.0, -1.0])), (0.0, 0.0, 3.0)),  # upside down, from behind
                 (torch.eye(3), (0.0, 0.0, 3.4))):  # further away
        wrong = FoVPerspectiveCameras(R=R[None], T=torch.tensor([T]))
        assert silhouette_match(mask, sample_silhouette(mesh, wrong, 96, 50_000)[0]) < 0.95


def test_motion_ratio_tells_turning_from_strobing():
    from a1_rendering.common import render_turntable
    from a1_rendering.measure import motion_ratio
    from a1_rendering.mesh_practice import cube
    from l3d.viz import with_vertex_colors

    c = with_vertex_colors(cube(), (0.7, 0.7, 1.0))
    strobe, _ = render_turntable(c, 8, 3.0, 20.0, image_size=48, shader="flat")  # 45-degree steps
    assert motion_ratio(strobe[..., :3]) < 0.1
    turning, _ = render_turntable(c, 25, 3.0, 20.0, image_size=48, shader="flat")
    assert motion_ratio(turning[..., :3]) > 1.3
    assert motion_ratio(turning[:1, ..., :3].expand(5, -1, -1, -1)) == 0.0  # frozen


def test_gif_timing_reads_what_a_viewer_plays(tmp_path):
    from a1_rendering.measure import gif_timing
    from l3d.media import save_gif

    frames = torch.rand(24, 8, 8, 3)
    assert gif_timing(save_gif(tmp_path / "a.gif", frames, fps=10)) == {"frames": 24.0, "seconds": 2.4}
    frozen = save_gif(tmp_path / "b.gif", frames[:1].expand(24, -1, -1, -1), fps=10)
    assert gif_timing(frozen)["frames"] == 1.0


def test_turntable_checks_pass_and_catch_short_gifs(tmp_path):
    from a1_rendering.common import render_turntable, turntable_checks
    from l3d.checks import check_passed
    from l3d.media import save_gif

    mesh = procedural_textured_mesh()
    frames, cams = render_turntable(mesh, 24, 3.0, image_size=64)
    gif = save_gif(tmp_path / "t.gif", frames[..., :3], fps=10)
    checks = turntable_checks(mesh, frames, cams, gif, width_ratio=1.3, samples=30_000)
    assert all(check_passed(c) for c in checks.values()), checks
    fast = save_gif(tmp_path / "f.gif", frames[..., :3], fps=15)  # 1.6 s per turn
    assert not check_passed(turntable_checks(mesh, frames, cams, fast, samples=30_000)["turn_seconds"])


# ----------------------------------------------------------------------------------------------
# mesh practice, re-texturing, camera transforms
# ----------------------------------------------------------------------------------------------
def test_shape_checks_catch_broken_meshes():
    from a1_rendering.mesh_practice import cube, shape_checks, tetrahedron
    from l3d.checks import check_passed
    from l3d.structures import Meshes

    for name, make in (("tetrahedron", tetrahedron), ("cube", cube)):
        m = make()
        assert all(check_passed(c) for c in shape_checks(name, m).values())
        inside_out = Meshes(m.verts_list(), [m.faces_packed()[:, [0, 2, 1]]])
        assert not check_passed(shape_checks(name, inside_out)[f"{name}_volume_error"])
        holed = Meshes(m.verts_list(), [m.faces_packed()[1:]])
        c = shape_checks(name, holed)
        assert not check_passed(c[f"{name}_euler"]) and not check_passed(c[f"{name}_closed_edges"])


def test_gradient_checks_follow_z():
    from a1_rendering.retexture import gradient_checks, retexture
    from l3d.checks import check_passed

    mesh = procedural_textured_mesh()
    c1, c2 = (0.0, 1.0, 1.0), (1.0, 1.0, 0.0)
    assert all(check_passed(c) for c in gradient_checks(retexture(mesh, c1, c2), c1, c2).values())
    swapped = gradient_checks(retexture(mesh, c2, c1), c1, c2)
    assert not any(check_passed(c) for c in swapped.values())


def test_camera_transform_poses_and_roll():
    from a1_rendering import camera_transforms as ct
    from a1_rendering.common import standin_with_axes
    from a1_rendering.measure import iou

    cams = ct.cameras()
    assert ct.pose_error(cams) < 1e-5
    # composing T without R_rel (T = T0 + T_rel) puts transform2's camera elsewhere
    bad = dict(cams)
    bad["2"] = ct.FoVPerspectiveCameras(R=cams["2"].R, T=torch.tensor([[-3.0, 0.0, 6.0]]))
    assert ct.pose_error(bad) > 1.0
    imgs = ct.render_transforms(standin_with_axes(procedural_textured_mesh()), 64, rgba=True)
    m0, m1 = imgs["_none"][..., 3] > 0.5, imgs["1"][..., 3] > 0.5
    assert iou(torch.rot90(m0, -1, (0, 1)), m1) > 0.97  # rolled clockwise
    assert iou(torch.rot90(m0, 1, (0, 1)), m1) < 0.7  # not counter-clockwise
    # the red X arrow points up in transform1: red pixels above the centre, none to the left
    img = imgs["1"][..., :3]
    red = (img[..., 0] > 0.5) & (img[..., 1] < 0.3) & (img[..., 2] < 0.3)
    rows, cols = torch.nonzero(red, as_tuple=True)
    assert len(rows) > 10 and float(rows.float().mean()) < 24 and abs(float(cols.float().mean()) - 32) < 4


# ----------------------------------------------------------------------------------------------
# RGB-D clouds
# ----------------------------------------------------------------------------------------------
def test_rgbd_checks_catch_wrong_grid_and_cameras():
    from a1_rendering.pcl_render import free_space_violations, reprojection_error_px, rgbd_clouds
    from a1_rendering.rgbd import synthetic_rgbd_pair
    from l3d.cameras import PerspectiveCameras, look_at_view_transform

    data = synthetic_rgbd_pair(image_size=64)
    clouds = rgbd_clouds(data)
    assert reprojection_error_px(data, clouds) < 0.01
    assert free_space_violations(data, clouds) < 0.02
    # unprojected at pixel centres but checked on the course's linspace grid: off by up to half a pixel
    as_course = {**data, "source": "course"}
    shifted = {**data, "source": "course"}
    assert reprojection_error_px(shifted, rgbd_clouds(data)) > 0.1  # the check allows 0.01
    assert reprojection_error_px(as_course, rgbd_clouds(as_course)) < 0.01
    # camera 2 placed 20 degrees off, or its depths 5 % short: cloud 2 lands in view 1's free space
    R, T = look_at_view_transform(3.0, 20.0, -30.0)
    turned = {**data, "cameras2": PerspectiveCameras(focal_length=2.0, R=R, T=T)}
    assert free_space_violations(turned, rgbd_clouds(turned)) > 0.05  # measured 0.08
    short = {**data, "depth2": data["depth2"] * 0.95}
    assert free_space_violations(short, rgbd_clouds(short)) > 0.1  # measured 0.24


# ----------------------------------------------------------------------------------------------
# parametric and implicit surfaces
# ----------------------------------------------------------------------------------------------
def test_torus_checks():
    from a1_rendering.common import render_turntable
    from a1_rendering.torus_render import hole_checks, implicit_mesh, surface_checks
    from l3d.checks import check_passed

    mesh = implicit_mesh("torus", 40, 1.54)
    v = mesh.verts_packed().double()
    c = surface_checks("implicit", "torus", v, mesh, 3.08 / 39, 1.0, 0.4, 0.5, 0.5, (1, 1, 1))
    assert all(check_passed(x) for x in c.values()), c
    assert c["euler"]["value"] == 0
    # the course starter's index mapping (divide by N, not N - 1) shrinks the torus by 39/40
    small = implicit_mesh("torus", 40, 1.54, index_divisor=40)
    c = surface_checks("implicit", "torus", small.verts_packed().double(), small, 3.08 / 39, 1.0, 0.4, 0.5, 0.5,
                       (1, 1, 1))
    assert not check_passed(c["area_error"]) and not check_passed(c["surface_distance"])
    frames, _ = render_turntable(mesh, 1, 4.2, image_size=64, azim_start=180.0)
    assert all(check_passed(x) for x in hole_checks(frames[0], 4.2, 1.0, 0.4).values())
    # a torus with no hole left (tube as wide as the ring) fails the hole check
    fat = implicit_mesh("torus", 40, 2.2, R=1.0, r=1.0)
    frames, _ = render_turntable(fat, 1, 4.2, image_size=64, azim_start=180.0)
    assert not check_passed(hole_checks(frames[0], 4.2, 1.0, 0.4)["hole_background"])


def test_superquadric_volume_is_analytic():
    from a1_rendering.measure import signed_volume, superquadric_volume
    from a1_rendering.torus_render import implicit_mesh

    assert superquadric_volume(1, 1, 1, 1, 1) == pytest.approx(4 * math.pi / 3)
    m = implicit_mesh("superquadric", 48, 1.1, eps1=0.5, eps2=0.5)
    assert signed_volume(m) == pytest.approx(superquadric_volume(1, 1, 1, 0.5, 0.5), rel=0.02)


# ----------------------------------------------------------------------------------------------
# area-weighted sampling
# ----------------------------------------------------------------------------------------------
def test_sampling_checks_reject_face_uniform_and_off_surface_points():
    from a1_rendering.sample_points import sampling_checks
    from l3d.checks import check_passed
    from l3d.ops import sample_points_from_meshes

    mesh = procedural_textured_mesh()
    gen = torch.Generator().manual_seed(0)
    pts = sample_points_from_meshes(mesh, 5000, generator=gen)[0]
    good = sampling_checks(mesh, pts)
    assert all(check_passed(c) for c in good.values()), good
    # faces drawn uniformly (not by area), points uniform inside them
    fv = mesh.faces_verts_packed()
    f = torch.randint(len(fv), (5000,), generator=gen)
    u, v = torch.rand(2, 5000, generator=gen)
    su = u.sqrt()
    w = torch.stack([1 - su, su * (1 - v), su * v], -1)
    uniform = (w[..., None] * fv[f]).sum(1)
    assert not check_passed(sampling_checks(mesh, uniform)["area_chi2_p"])
    noisy = pts + 0.01 * torch.randn(pts.shape, generator=gen)
    assert not check_passed(sampling_checks(mesh, noisy)["surface_distance"])


def test_point_triangle_distance_matches_brute_force():
    from a1_rendering.measure import point_triangle_distance

    gen = torch.Generator().manual_seed(1)
    tri = torch.rand(200, 3, 3, generator=gen, dtype=torch.float64)
    p = torch.rand(200, 3, generator=gen, dtype=torch.float64) * 2 - 0.5
    # brute force: the minimum over a dense barycentric grid
    n = 120
    i, j = torch.meshgrid(torch.arange(n + 1), torch.arange(n + 1), indexing="ij")
    keep = (i + j) <= n
    b = torch.stack([i[keep], j[keep]], -1).double() / n
    w = torch.cat([1 - b.sum(-1, keepdim=True), b], -1)  # (K, 3)
    pts = torch.einsum("kc,tcd->tkd", w, tri)
    brute = (pts - p[:, None]).norm(dim=-1).min(1).values
    exact = point_triangle_distance(p, tri)
    assert torch.all(exact <= brute + 1e-9) and torch.allclose(exact, brute, atol=0.01)


def test_parts_list_is_torch_free_and_complete():
    import subprocess
    import sys

    code = ("import sys, a1_rendering.parts as p; assert 'torch' not in sys.modules; "
            "print(' '.join(sorted({x.key.split()[1] for x in p.PARTS})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1])).stdout.split()
    assert out == sorted(["0.1", "1.1", "1.2", "2.1", "2.2", "3", "4", "5", "5.1", "5.2", "5.3", "6", "7"])
    from a1_rendering.parts import PARTS

    for part in PARTS:
        assert part.checks and 1 <= len(part.media) <= 4 and part.command.startswith("python -m a1_rendering.")
        for ref in part.references:
            assert ref.startswith("a1/reference/")
