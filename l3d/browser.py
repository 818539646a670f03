"""Load the gallery in headless Chromium and check what a person would see.

``python -m l3d.browser [output/index.html] [--max_height 15000]`` opens the page in headless
Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by selenium; ``make chromium``
installs them), waits for it, and checks that every image decodes, every video can play, no card
is failing and the page is not taller than ``--max_height`` CSS pixels at a 1280 px wide window.
It prints one line per problem and exits 1 if there is any (2 when no browser is available).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List

from .cli import ScriptParser, positive_float

CHROMIUM = os.environ.get("L3D_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("L3D_CHROMEDRIVER", "/usr/bin/chromedriver")
WINDOW = (1280, 900)


class BrowserUnavailable(RuntimeError):
    """No Chromium / ChromeDriver / selenium here; the message says how to get them."""


@contextlib.contextmanager
def headless_chromium(window=WINDOW) -> Iterator["object"]:
    """A selenium WebDriver of headless Chromium with no network side traffic, closed on exit."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        raise BrowserUnavailable("chromium + chromium-driver not installed; run `make chromium` "
                                 "(Debian: `apt-get install -y chromium chromium-driver`)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        raise BrowserUnavailable("selenium is not installed (pip install -r requirements.txt)") from exc
    old = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never try to download a driver
    profile = tempfile.mkdtemp(prefix="l3d-chromium-")
    opts = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-quic", "--autoplay-policy=no-user-gesture-required",
                f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}"):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        if old is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = old


_STATE_JS = """
const imgs = Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.complete && i.naturalWidth > 0]);
const vids = Array.from(document.querySelectorAll('video')).map(v => [v.getAttribute('src'), v.readyState, v.videoWidth, v.error ? v.error.code : 0]);
const failing = Array.from(document.querySelectorAll('article.fail, article.missing')).map(
  a => (a.dataset.part || a.id) + ' (' + a.className + ')');
const d = document.documentElement;
const wide = Array.from(document.querySelectorAll('article')).filter(a => a.scrollWidth > a.clientWidth + 1).map(
  a => (a.dataset.part || a.id));
return {imgs: imgs, vids: vids, failing: failing, height: d.scrollHeight, title: document.title,
        overflow: d.scrollWidth - d.clientWidth, wide: wide};
"""


@dataclass
class PageReport:
    """What the browser saw."""

    title: str = ""
    height: int = 0
    n_images: int = 0
    n_videos: int = 0
    broken_images: List[str] = field(default_factory=list)
    broken_videos: List[str] = field(default_factory=list)
    failing_cards: List[str] = field(default_factory=list)
    overflow_px: int = 0  # how far the page scrolls sideways (0: it fits the window)
    wide_cards: List[str] = field(default_factory=list)  # cards whose content sticks out of them

    def problems(self, max_height: float | None = None) -> List[str]:
        out = [f"image does not decode: {s}" for s in self.broken_images]
        out += [f"video does not play: {s}" for s in self.broken_videos]
        out += [f"failing card: {c}" for c in self.failing_cards]
        out += [f"content sticks out of card: {c}" for c in self.wide_cards]
        if self.overflow_px > 0:
            out.append(f"page scrolls sideways by {self.overflow_px} px")
        if max_height is not None and self.height > max_height:
            out.append(f"page is {self.height} px tall (limit {max_height:.0f})")
        return out


def inspect_page(driver, page: Path, timeout: float = 60.0) -> PageReport:
    """Open ``page`` and wait until every image and video has loaded or failed (up to ``timeout`` s)."""
    driver.get(Path(page).resolve().as_uri())
    deadline = time.time() + timeout
    while True:
        state = driver.execute_script(_STATE_JS)
        done_imgs = all(c for _, c, _ in state["imgs"])
        done_vids = all(rs >= 2 or err for _, rs, _, err in state["vids"])
        if (done_imgs and done_vids) or time.time() > deadline:
            break
        time.sleep(0.1)
    return PageReport(
        title=state["title"], height=int(state["height"]), n_images=len(state["imgs"]), n_videos=len(state["vids"]),
        broken_images=[s for s, _, ok in state["imgs"] if not ok],
        broken_videos=[s for s, rs, w, err in state["vids"] if err or rs < 2 or not w],
        failing_cards=list(state["failing"]), overflow_px=int(state["overflow"]), wide_cards=list(state["wide"]),
    )


def main(argv=None) -> int:
    ap = ScriptParser(prog="python -m l3d.browser", description=__doc__)
    ap.add_argument("page", nargs="?", default="output/index.html", help="the gallery page (default: output/index.html)")
    ap.add_argument("--max_height", type=positive_float, default=15000, help="tallest acceptable page, CSS pixels at 1280 px wide")
    args = ap.parse_args(argv)
    page = Path(args.page)
    if not page.is_file():
        print(f"error: {page} not found (run `make demo` or `python -m l3d.report` first)", file=sys.stderr)
        return 2
    try:
        with headless_chromium() as driver:
            rep = inspect_page(driver, page)
    except BrowserUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problems = rep.problems(args.max_height)
    for p in problems:
        print(p)
    print(f"{page}: {rep.n_images} images, {rep.n_videos} videos, {rep.height} px tall, "
          f"{len(rep.failing_cards)} failing cards: {'OK' if not problems else f'{len(problems)} problems'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
