"""Tests for l3d.report: the static HTML gallery of output/ (content checks + a headless browser)."""

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image

from l3d import report
from l3d.checks import Part, check

REPO = Path(__file__).resolve().parents[1]
WEIRD = "turn table & <x>.gif"  # a file name that needs HTML escaping and URL encoding


def _gif(path: Path, n: int = 4, size=(32, 24)) -> None:
    frames = [Image.new("RGB", size, (40 * i, 200 - 40 * i, 90)) for i in range(n)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=80, loop=0)


def make_tree(root: Path) -> dict:
    """A small fake output/ tree; returns what the gallery must show."""
    cow = root / "a1_rendering" / "cow"
    vox = root / "a2_single_view" / "vox"
    ev = vox / "eval"
    for d in (cow, ev, root / "bench"):
        d.mkdir(parents=True)
    Image.new("RGB", (64, 48), (200, 30, 30)).save(cow / "cow_render.png")
    _gif(cow / WEIRD)
    Image.new("RGB", (20, 20), (0, 0, 255)).save(root / "a1_rendering" / "overview.jpg")
    Image.new("L", (16, 16), 128).save(ev / "frame_10.png")
    Image.new("L", (16, 16), 64).save(ev / "frame_2.png")
    (vox / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")  # only its <video> tag is checked
    json.dump(
        {
            "psnr": 31.234567,
            "loss": {"final": 0.00123456, "init": 2},
            "per_class": [0.9, 0.85, 0.7],
            "curve": list(range(100)),
            "command": ["python", "-m", "a1_rendering.cow", "--quick"],
        },
        open(cow / "metrics.json", "w"),
    )
    (vox / "command.txt").write_text("python -m a2_single_view.fit --type vox --max_iter 5\n")
    json.dump({"f1": {"0.05": 81.23456}, "command": "ignored: command.txt wins"}, open(vox / "metrics.json", "w"))
    (ev / "results.md").write_text(
        "# Results\n\nF1 of each **model** at `0.05`:\n\n"
        "| model | F1@0.05 |\n|:---|---:|\n| vox | 81.2 |\n| point | 90.5 |\n\n- one <script>x</script>\n- two\n"
    )
    (root / "bench" / "results.csv").write_text("a,b\n1,2\n")
    (root / "bench" / ".index.tmp").write_text("hidden temp file")
    images = [
        "a1_rendering/overview.jpg",
        "a1_rendering/cow/cow_render.png",
        f"a1_rendering/cow/{WEIRD}",
        "a2_single_view/vox/eval/frame_2.png",
        "a2_single_view/vox/eval/frame_10.png",
    ]
    return {"images": images}


# ------------------------------------------------------------------------------------ collect
def test_collect_groups_parts_and_numbers(tmp_path):
    make_tree(tmp_path)
    groups = report.collect(tmp_path)
    assert [(g.assignment, g.part) for g in groups] == [
        ("a1_rendering", ""),
        ("a1_rendering", "cow"),
        ("a2_single_view", "vox"),
        ("a2_single_view", "vox/eval"),
        ("bench", ""),
    ]
    top, cow, vox, ev, bench = groups
    assert top.images == ["a1_rendering/overview.jpg"]
    assert cow.images == ["a1_rendering/cow/cow_render.png", f"a1_rendering/cow/{WEIRD}"]
    assert ev.images == ["a2_single_view/vox/eval/frame_2.png", "a2_single_view/vox/eval/frame_10.png"]
    assert vox.videos == ["a2_single_view/vox/clip.mp4"]
    assert cow.metrics == {
        "psnr": 31.234567,
        "loss.final": 0.00123456,
        "loss.init": 2,
        "per_class": [0.9, 0.85, 0.7],
        "curve": list(range(100)),
    }
    assert cow.command == "python -m a1_rendering.cow --quick"  # from metrics.json
    assert vox.command == "python -m a2_single_view.fit --type vox --max_iter 5"  # command.txt wins
    assert vox.metrics == {"f1.0.05": 81.23456}
    assert [m for m, _ in ev.markdown] == ["a2_single_view/vox/eval/results.md"]
    assert bench.others == ["bench/results.csv"]  # hidden temp file skipped
    with pytest.raises(FileNotFoundError, match="output directory not found"):
        report.collect(tmp_path / "missing")


def test_format_value_and_flatten():
    assert report.format_value(31.234567) == "31.23"
    assert report.format_value(0.00123456) == "0.001235"
    assert report.format_value(123456.7) == "1.235e+05"
    assert report.format_value(7) == "7"
    assert report.format_value(True) == "true"
    assert report.format_value(float("nan")) == "nan"
    assert report.format_value([0.5, 1 / 3]) == "[0.5, 0.3333]"
    assert report.format_value([[1, 2], [3, 4]]) == "[[1, 2], [3, 4]]"
    long = report.format_value([float(i) for i in range(100)])
    assert long == "[0, 1, 2, 3, …, 98, 99] (n=100, min=0, mean=49.5, max=99)"
    assert "shape=20x5" in report.format_value([[0.0] * 5] * 20)
    assert report.flatten_metrics({"a": {"b": {"c": 1}}, "l": [{"x": 2}, {"x": 3}], "v": [1, 2]}) == {
        "a.b.c": 1, "l.0.x": 2, "l.1.x": 3, "v": [1, 2]
    }


def test_markdown_table_and_escaping():
    out = report.markdown_to_html("| a | b |\n|:-:|--:|\n| <i>1</i> | 2 |\n\nText with <b>tag</b> & `x<y`.")
    assert '<th style="text-align:center">a</th>' in out
    assert '<td style="text-align:right">2</td>' in out
    assert "&lt;i&gt;1&lt;/i&gt;" in out and "<i>" not in out
    assert "&lt;b&gt;tag&lt;/b&gt; &amp; <code>x&lt;y</code>" in out
    code = report.markdown_to_html("```\n<raw> & code\n```")
    assert code == "<pre><code>&lt;raw&gt; &amp; code</code></pre>"
    link = report.markdown_to_html("see ![plot](plot.png)", base="a3/nerf")
    assert '<img src="a3/nerf/plot.png" alt="plot"' in link


# ------------------------------------------------------------------------------------ gallery
def _png(path: Path, size=(64, 48), colour=(200, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _metrics(folder: Path, **kw) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(kw))


PARTS = [
    # listed out of order on purpose: the page and the check sort by the question's numbers
    Part("A2 1.1", "Fit a voxel grid", "a2_single_view/fit_vox", command="python -m a2_single_view.fit_data --type vox",
         checks=("iou",)),
    Part("A1 1.2", "Dolly zoom", "a1_rendering/dolly_zoom", command="python -m a1_rendering.dolly_zoom --quick",
         checks=("size_variation",), references=("a1/reference/dolly.gif",), media=("dolly.gif",)),
    Part("A1 0.1", "Baseline render", "a1_rendering/render_mesh", checks=("mae",)),
    Part("A1 10", "A question not run", "a1_rendering/never", checks=("x",)),
]


def make_part_tree(root: Path, data: Path) -> None:
    """Outputs of the PARTS above: one passing on course data, one passing on a stand-in with a
    GIF + its PNG still, one failing, one missing; plus a folder of no part."""
    dz = root / "a1_rendering" / "dolly_zoom"
    dz.mkdir(parents=True)
    _gif(dz / "dolly.gif", n=4, size=(48, 32))
    _png(dz / "dolly.png", (48, 32))
    (dz / "dolly.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (dz / "command.txt").write_text("python -m a1_rendering.dolly_zoom --quick --seed 3\n")
    _metrics(dz, data="stand-in: procedural cow-like mesh <egg>", frames=24,
             checks={"size_variation": check(0.021, max=0.05, what="relative change of the cow's height")})
    rm = root / "a1_rendering" / "render_mesh"
    _png(rm / "cow_render.png", (512, 512))
    _png(rm / "extra.png", (16, 16))
    _metrics(rm, data="course: a1/cow.obj", checks={"mae": {"value": 0.2, "max": 0.01, "pass": True}})  # stale flag
    fv = root / "a2_single_view" / "fit_vox"
    _png(fv / "sub" / "deep.png", (300, 200))
    (fv / "notes.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n")
    _metrics(fv, data="stand-in: procedural chairs", checks={"iou": check(0.95, min=0.9)}, loss={"final": 0.0123456})
    _png(root / "bench" / "plot.png", (100, 80))
    (root / "bench" / "results.csv").write_text("a,b\n1,2\n")
    (data / "a1" / "reference").mkdir(parents=True)
    _gif(data / "a1" / "reference" / "dolly.gif")


def test_check_outputs_table_and_status(tmp_path):
    make_part_tree(tmp_path / "out", tmp_path / "data")
    text, rc = report.check_outputs(tmp_path / "out", parts=PARTS)
    assert rc == 1
    lines = text.splitlines()
    table = lines[1:lines.index("")]
    keys = [ln.split()[0] for ln in table if ln[:2] in ("A1", "A2")]
    assert keys == ["A1", "A1", "A1", "A2"]  # 0.1, 1.2, 10, then A2: the course's order, not the list's
    mae = next(ln for ln in lines if ln.startswith("A1 0.1"))
    assert "FAIL" in mae and "<= 0.01" in mae and "course" in mae  # the stored "pass": true is not trusted
    dz = next(ln for ln in lines if ln.startswith("A1 1.2"))
    assert "pass" in dz and "0.021" in dz and "stand-in" in dz
    assert "MISSING" in next(ln for ln in lines if ln.startswith("A1 10"))
    assert lines[-1] == "4 parts: 2 pass, 1 fail, 1 missing"
    # only the passing ones: exit 0
    text, rc = report.check_outputs(tmp_path / "out", parts=[PARTS[0], PARTS[1]])
    assert rc == 0 and text.splitlines()[-1] == "2 parts: 2 pass, 0 fail, 0 missing"
    # a NaN value, a missing check name and a corrupt file all fail
    _metrics(tmp_path / "out" / "a2_single_view" / "fit_vox", checks={"iou": check(float("nan"), min=0.9)})
    assert report.check_outputs(tmp_path / "out", parts=[PARTS[0]])[1] == 1
    _metrics(tmp_path / "out" / "a2_single_view" / "fit_vox", checks={"other": check(1.0, min=0.9)})
    text, rc = report.check_outputs(tmp_path / "out", parts=[PARTS[0]])
    assert rc == 1 and "MISSING" in text
    (tmp_path / "out" / "a2_single_view" / "fit_vox" / "metrics.json").write_text("{not json")
    text, rc = report.check_outputs(tmp_path / "out", parts=[PARTS[0]])
    assert rc == 1 and "unreadable" in text
    assert report.check_outputs(tmp_path / "out", parts=PARTS, only="A3")[1] == 1


def test_write_gallery_cards(tmp_path):
    out, data = tmp_path / "out", tmp_path / "data"
    make_part_tree(out, data)
    page = report.write_gallery(out, title="Test <gallery>", parts=PARTS, data_root=data).read_text(encoding="utf-8")
    # cards titled by question, in the course's order, with their state
    titles = re.findall(r'<span class="key">([^<]+)</span> ([^<]+)<span class="badge (\w+)">', page)
    assert titles == [("A1 0.1", "Baseline render", "fail"), ("A1 1.2", "Dolly zoom", "pass"),
                      ("A1 10", "A question not run", "missing"), ("A2 1.1", "Fit a voxel grid", "pass")]
    assert '<article class="fail" id="p-A1-0-1--render_mesh" data-part="A1 0.1 Baseline render">' in page
    assert '<article class="missing"' in page
    # the stand-in is labelled (escaped), the course data named
    assert '<p class="data standin">stand-in: procedural cow-like mesh &lt;egg&gt;</p>' in page
    assert '<p class="data">data: course: a1/cow.obj</p>' in page
    # checks against thresholds, and what the number is
    assert re.search(r'<th scope="row" title="[^"]*">size_variation</th><td class="num">0.021</td>'
                     r'<td class="num">&lt;= 0.05</td><td class="pass">pass</td>', page)
    assert "<li><b>size_variation</b>: relative change of the cow&#x27;s height</li>" in page
    # media: the GIF, not its PNG still; small images scaled up (nearest neighbour) to >= 256 px
    srcs = re.findall(r'<img src="([^"]+)"( class="pixel")? width="(\d+)" height="(\d+)"', page)
    shown = {s: (bool(c), int(w), int(h)) for s, c, w, h in srcs}
    assert shown["a1_rendering/dolly_zoom/dolly.gif"] == (True, 288, 192)  # 48x32 x6
    assert "a1_rendering/dolly_zoom/dolly.png" not in shown and 'href="a1_rendering/dolly_zoom/dolly.png"' in page
    assert shown["a1_rendering/render_mesh/cow_render.png"] == (False, 320, 320)  # large ones shrink to the row
    assert shown[".gallery/references/a1/reference/dolly.gif"][1] >= 256  # the course reference, copied
    assert (out / ".gallery" / "references" / "a1" / "reference" / "dolly.gif").is_file()
    assert "course reference: dolly.gif" in page
    # MP4 (H.264) only as a link, never a <video>
    assert "<video" not in page and 'href="a1_rendering/dolly_zoom/dolly.mp4"' in page
    # nested folder images of a part go to its collapsed "more images"
    assert "<summary>more images (1)</summary>" in page and "a2_single_view/fit_vox/sub/deep.png" in page
    # numbers and notes collapsed; commands (command.txt wins over the part's default)
    assert "<summary>all numbers (" in page and '<th scope="row">loss.final</th><td class="num">0.01235</td>' in page
    assert "python -m a1_rendering.dolly_zoom --quick --seed 3" in page
    assert "python -m a2_single_view.fit_data --type vox" in page
    assert "<summary>notes.md</summary>" in page
    # folders of no part: collapsed at the end
    assert page.index('id="s-other"') > page.index('id="p-A2-1-1--fit_vox"') and 'href="bench/results.csv"' in page
    assert "<title>Test &lt;gallery&gt;</title>" in page
    assert "4 parts: <b class=\"ok\">2 pass</b>" in page
    # self-contained: no network URLs, no external stylesheets or scripts; atomic write
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<link" not in page and "<script" not in page
    assert not list(out.glob(".index.html*"))


def test_empty_gallery_and_cli_error(tmp_path):
    page = report.write_gallery(tmp_path, parts=[]).read_text()
    assert "No outputs yet" in page and '<span class="count">0 files</span>' in page
    assert report.collect(tmp_path) == []  # regenerating does not list the gallery itself
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "l3d.report", "--output_dir", str(tmp_path / "missing")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: output directory not found")


def test_long_check_tables_collapse_with_failures_first(tmp_path):
    checks = {f"c{i}": check(i, max=7) for i in range(10)}  # c8, c9 fail
    _metrics(tmp_path / "a" / "x", checks=checks)
    part = Part("A9 1", "Many checks", "a/x", checks=tuple(checks))
    page = report.render_gallery(tmp_path, parts=[part])
    visible = page[:page.index("<details><summary>all 10 checks (8 pass)</summary>")]
    assert re.findall(r'title="">(c\d)</th>', visible) == ["c8", "c9", "c0"]
    assert '<span class="badge fail">' in page


def test_check_cli(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "l3d.report", "--check", "--output_dir", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    # the repository's own parts, none run in an empty folder: every part missing, exit 1
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].endswith(" missing") and " 0 pass" in proc.stdout
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------ browser
@pytest.fixture(scope="module")
def browser():
    from l3d.browser import BrowserUnavailable, headless_chromium

    try:
        with headless_chromium() as driver:
            yield driver
    except BrowserUnavailable as exc:
        pytest.skip(str(exc))


def test_gallery_in_browser(tmp_path, browser):
    """The page loads in Chromium, every image decodes, a WebM plays, failing cards are found; the
    same inspection catches a broken image and a broken video."""
    from l3d.browser import inspect_page
    from l3d.media import save_webm

    out, data = tmp_path / "good", tmp_path / "data"
    make_part_tree(out, data)
    frames = [[[[i / 12, 0.5, 1 - i / 12]] * 64] * 48 for i in range(12)]
    save_webm(out / "a1_rendering" / "dolly_zoom" / "dolly.webm", frames, fps=12)
    parts = [Part(p.key, p.title, p.folder, p.command, p.checks, p.references, ("dolly.gif", "dolly.webm"))
             if p.key == "A1 1.2" else p for p in PARTS]
    rep = inspect_page(browser, report.write_gallery(out, parts=parts, data_root=data))
    assert rep.title == "learning-3D outputs"
    assert rep.n_images == 6 and rep.broken_images == [], rep  # 3 renders, 1 nested, 1 reference, 1 other
    assert rep.n_videos == 1 and rep.broken_videos == []
    assert sorted(rep.failing_cards) == ["A1 0.1 Baseline render (fail)", "A1 10 A question not run (missing)"]
    assert 0 < rep.height < 15000
    assert rep.problems(15000) == [f"failing card: {c}" for c in rep.failing_cards]

    # a .png that is not an image, a vanished file and a WebM that is not a video are all caught
    (out / "a1_rendering" / "render_mesh" / "cow_render.png").write_bytes(b"not a png at all")
    (out / "a1_rendering" / "dolly_zoom" / "dolly.webm").write_bytes(b"not a webm")
    page = report.write_gallery(out, parts=parts, data_root=data)
    (out / "a2_single_view" / "fit_vox" / "sub" / "deep.png").unlink()
    rep = inspect_page(browser, page, timeout=20)
    assert sorted(rep.broken_images) == ["a1_rendering/render_mesh/cow_render.png", "a2_single_view/fit_vox/sub/deep.png"]
    assert rep.broken_videos == ["a1_rendering/dolly_zoom/dolly.webm"]


def test_3d_preview_and_viewer_command(tmp_path, browser):
    """A part with a mesh gets the viewer command and a small inlined 3-D preview that draws in
    Chromium; TensorBoard folders stay off the page."""
    import base64

    import numpy as np
    import trimesh

    from l3d.io import save_ply

    out = tmp_path / "out"
    folder = out / "a3_volume_surface" / "part_7"
    m = trimesh.creation.icosphere(subdivisions=2)
    save_ply(folder / "mesh.ply", m.vertices.astype(np.float32), m.faces,
             colors=np.tile(np.array([[1.0, 0.0, 1.0]], dtype=np.float32), (len(m.vertices), 1)))
    (folder / "tensorboard").mkdir()
    (folder / "tensorboard" / "events.out.tfevents.1.host").write_bytes(b"\x00" * 16)
    _metrics(folder, checks={"chamfer": check(0.01, max=0.05)})
    part = Part("A3 7", "Sphere tracing", "a3_volume_surface/part_7", checks=("chamfer",))
    page_path = report.write_gallery(out, parts=[part])
    page = page_path.read_text(encoding="utf-8")
    assert f"python -m l3d.view {folder}" in page
    assert "tensorboard" not in page
    (payload,) = re.findall(r'data-pts="([^"]+)"', page)
    raw = base64.b64decode(payload)
    assert len(raw) == 9 * report.PREVIEW_POINTS and len(payload) < 200_000
    cols = np.frombuffer(raw[6 * report.PREVIEW_POINTS:], dtype=np.uint8).reshape(-1, 3)
    assert (cols == [255, 0, 255]).all()  # the vertex colours
    pts = np.frombuffer(raw[:6 * report.PREVIEW_POINTS], dtype="<i2").reshape(-1, 3) / 32767
    radius = np.linalg.norm(pts, axis=1)  # points on the sphere's surface, scaled into the unit ball
    assert radius.min() > 0.85 and radius.max() <= 1.0 + 1e-4  # int16 rounding
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script src" not in page
    # the page passes the gallery's own browser check, and the preview draws: magenta pixels
    from l3d.browser import inspect_page

    assert inspect_page(browser, page_path).problems(15000) == []
    shot = tmp_path / "shot.png"
    browser.execute_script("document.querySelector('canvas.l3d-3d').scrollIntoView()")
    time.sleep(0.3)
    browser.save_screenshot(str(shot))
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    magenta = (img[..., 0] > 150) & (img[..., 2] > 150) & (img[..., 1] < 100)
    assert magenta.sum() > 3000, magenta.sum()


def test_gaussians_get_the_viewer_command_but_no_preview(tmp_path):
    import torch

    from a4_gaussians_diffusion.gaussians.model import Gaussians
    from a4_gaussians_diffusion.gaussians.ply import save_gaussians_ply

    out = tmp_path / "out"
    folder = out / "a4_gaussians_diffusion" / "gaussians" / "train"
    save_gaussians_ply(folder / "gaussians.ply", Gaussians.random(32, generator=torch.Generator().manual_seed(0)))
    _metrics(folder, checks={"test_psnr": check(27.0, min=25)})
    page = report.render_gallery(out, parts=[Part("A4 1.2", "Train", "a4_gaussians_diffusion/gaussians/train",
                                                  checks=("test_psnr",))])
    assert f"python -m l3d.view {folder}" in page
    assert "<canvas" not in page and "<script" not in page
