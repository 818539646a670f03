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
def test_write_gallery_contents(tmp_path, capsys):
    expected = make_tree(tmp_path)
    path = report.main(["--output_dir", str(tmp_path), "--title", "Test <gallery>"])
    assert path == tmp_path / "index.html"
    assert capsys.readouterr().out.strip() == str(path)
    page = path.read_text(encoding="utf-8")
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert srcs == [html.escape(quote(p, safe="/")) for p in expected["images"]]
    # file name escaped in text and encoded in URLs; no raw markup from names or markdown
    assert "turn table &amp; &lt;x&gt;.gif" in page and WEIRD not in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<title>Test &lt;gallery&gt;</title>" in page
    # numbers to 4 significant digits, with dotted keys
    for key, value in [("psnr", "31.23"), ("loss.final", "0.001235"), ("loss.init", "2"),
                       ("per_class", "[0.9, 0.85, 0.7]"), ("f1.0.05", "81.23")]:
        assert re.search(rf'<th scope="row">{re.escape(key)}</th><td class="num">{re.escape(value)}</td>', page), key
    assert "31.234567" not in page
    # commands
    assert "python -m a1_rendering.cow --quick" in page
    assert "python -m a2_single_view.fit --type vox --max_iter 5" in page
    assert "ignored: command.txt wins" not in page
    # markdown table as an HTML table
    assert '<td style="text-align:left">vox</td><td style="text-align:right">81.2</td>' in page
    assert '<video controls preload="metadata" src="a2_single_view/vox/clip.mp4">' in page
    assert 'href="bench/results.csv"' in page
    # header: generation time and file count (5 images, 1 video, 2 metrics, 1 md, 1 command.txt, 1 csv)
    assert re.search(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", page)
    assert '<span class="count">11 files</span> (5 images, 1 videos, 2 metrics files' in page
    # self-contained: no network URLs, no external stylesheets or scripts
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<link" not in page and "<script" not in page
    # the sections come in order and every group has an anchor
    order = [page.index(f'id="{a}"') for a in ("s-a1_rendering", "s-a2_single_view", "s-bench")]
    assert order == sorted(order)
    assert not list(tmp_path.glob(".index.html*"))  # atomic write left no temp file


def test_empty_gallery_and_cli_error(tmp_path):
    page = report.write_gallery(tmp_path).read_text()
    assert "No outputs yet" in page and '<span class="count">0 files</span>' in page
    # regenerating does not list the gallery itself
    assert report.collect(tmp_path) == []
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "l3d.report", "--output_dir", str(tmp_path / "missing")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: output directory not found")


# ------------------------------------------------------------------------------------ browser
CHROMIUM = os.environ.get("L3D_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("L3D_CHROMEDRIVER", "/usr/bin/chromedriver")
SKIP_MSG = (
    "chromium + chromium-driver not installed; run `make chromium` (Debian: "
    "`apt-get install -y chromium chromium-driver`) to enable the gallery browser test"
)

BROKEN_JS = """
return Array.from(document.images).map(function (img) {
  return [img.getAttribute('src'), img.complete && img.naturalWidth > 0];
});
"""


@pytest.fixture(scope="module")
def browser():
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip(SKIP_MSG)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -r requirements.txt)")
    old = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never try to download a driver
    profile = tempfile.mkdtemp(prefix="l3d-chromium-")
    opts = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-quic", f"--user-data-dir={profile}", "--window-size=1200,900"):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
        driver.set_page_load_timeout(15)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        if old is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = old


def _image_status(driver, page: Path) -> dict:
    driver.get(page.resolve().as_uri())
    deadline = time.time() + 10
    while time.time() < deadline:  # the load event already waited for eager images; be safe
        if driver.execute_script("return Array.from(document.images).every(i => i.complete);"):
            break
        time.sleep(0.05)
    return {src: ok for src, ok in driver.execute_script(BROKEN_JS)}


def test_gallery_images_load_in_browser(tmp_path, browser):
    good = tmp_path / "good"
    expected = make_tree(good)
    status = _image_status(browser, report.write_gallery(good))
    assert len(status) == len(expected["images"])
    broken = [src for src, ok in status.items() if not ok]
    assert broken == [], f"images that did not load: {broken}"
    assert browser.title == "learning-3D outputs"

    # the same check must catch a broken image: a .png that is not an image, plus a vanished file
    bad = tmp_path / "bad"
    make_tree(bad)
    (bad / "a1_rendering" / "cow" / "cow_render.png").write_bytes(b"not a png at all")
    page = report.write_gallery(bad)
    (bad / "a2_single_view" / "vox" / "eval" / "frame_2.png").unlink()
    status = _image_status(browser, page)
    broken = sorted(src for src, ok in status.items() if not ok)
    assert broken == ["a1_rendering/cow/cow_render.png", "a2_single_view/vox/eval/frame_2.png"]
