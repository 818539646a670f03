"""The gallery of every part's outputs (``output/index.html``) and the ``--check`` of their numbers.

``python -m l3d.report [--output_dir output]`` writes ``<output_dir>/index.html``: one
self-contained page (inline CSS, relative links, no network; JavaScript only for the small 3-D
previews, inline) with one card per part
of the course, in the course's order (the parts are listed by each assignment's ``parts.py``, see
:mod:`l3d.checks`). A card is titled by its question ("A1 1.2 Dolly zoom") and shows:

* the part's chosen pictures (GIF / PNG / JPG / WebM video), small renders scaled up with
  nearest-neighbour sampling to at least 256 px, beside the course's reference image when the data
  root has one (copied into ``output/.gallery/references``);
* a pass/fail badge and the table of its checks (value against threshold); failing and missing
  parts have a red badge and border; a run on a built-in stand-in is labelled as such;
* its command (``command.txt``), and collapsed: every number of its ``metrics.json`` (nested keys
  flattened, floats to 4 significant digits), its Markdown notes, further images, file links;
* when the part wrote 3-D files (a mesh, point cloud or Gaussians: .ply .obj .glb .npz .npy), the
  command that opens them in the 3-D viewer (``python -m l3d.view <folder>``) and, for a mesh or
  point cloud (Gaussians read better in their renders), a small preview of the main one: a few
  thousand coloured points inlined in the page (no network), drawn on a canvas by a few lines of
  plain JavaScript; drag to turn it.

TensorBoard logs (``tensorboard/`` folders) and checkpoints are not gallery material: the former
are skipped, the latter listed as files.

Folders that belong to no part (benchmarks, quality runs) are listed, collapsed, under "Other
outputs". MP4 (H.264) files are links only: browsers such as Chromium play WebM/VP9, which the
scripts write beside them.

``python -m l3d.report --check [--only A3]`` prints every part's checks against their thresholds
and exits 1 when any part fails or has not been run (``make demo`` ends with it).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fnmatch
import html
import json
import math
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .checks import Part, PartStatus, load_parts, part_status
from .cli import ScriptParser
from .run import atomic_write

__all__ = ["Group", "collect", "render_gallery", "write_gallery", "check_outputs", "format_value", "flatten_metrics", "markdown_to_html", "main"]

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg"}
VIDEO_EXTS = {".mp4", ".webm"}
INDEX_NAME = "index.html"
SKIP_DIRS = {"__pycache__", "tensorboard"}  # TensorBoard's event files: `tensorboard --logdir`, not the page
VIEW_EXTS = (".ply", ".obj", ".glb", ".gltf", ".npz", ".npy")  # files `python -m l3d.view` shows in 3-D
PREVIEW_POINTS = 4000  # points of an embedded 3-D preview (about 48 KB of the page each)
PREVIEW_PX = 256


@dataclass
class Group:
    """The files of one folder under the output directory.

    All paths are POSIX paths relative to the output directory (what the page links to).
    """

    assignment: str  # top-level folder under output/ ("" for files directly in output/)
    part: str  # sub-folder path below the assignment ("" for files directly in the assignment folder)
    images: list[str] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)  # flattened: dotted key -> value
    markdown: list[tuple[str, str]] = field(default_factory=list)  # (path, text)
    command: str | None = None
    command_file: str | None = None  # path of command.txt when the command came from it
    metric_files: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # problems met while reading (bad JSON, ...)

    @property
    def n_files(self) -> int:
        """Number of files of this folder shown or linked on the page."""
        return (len(self.images) + len(self.videos) + len(self.metric_files) + len(self.markdown)
                + len(self.others) + (self.command_file is not None))


# --------------------------------------------------------------------------------------------
# Reading the tree
# --------------------------------------------------------------------------------------------
def _natural_key(name: str):
    """Sort ``frame_2`` before ``frame_10``."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", name)]


def flatten_metrics(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts (and lists of dicts) into ``{"a.b.c": value}``. Lists of numbers and
    other leaves are kept as values."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        if not obj and prefix:
            out[prefix] = {}
        for k, v in obj.items():
            out.update(flatten_metrics(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        for i, v in enumerate(obj):
            out.update(flatten_metrics(v, f"{prefix}.{i}" if prefix else str(i)))
    else:
        out[prefix or "value"] = obj
    return out


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _fmt_number(x: int | float) -> str:
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"


def _flat_numbers(x: Any) -> list | None:
    """All numbers of a (nested) list of numbers, or ``None`` when it holds anything else."""
    if _is_number(x):
        return [x]
    if isinstance(x, list):
        out = []
        for item in x:
            sub = _flat_numbers(item)
            if sub is None:
                return None
            out.extend(sub)
        return out
    return None


def _shape(x: Any) -> tuple[int, ...]:
    shape = []
    while isinstance(x, list):
        shape.append(len(x))
        x = x[0] if x else None
    return tuple(shape)


def format_value(v: Any) -> str:
    """A metric value as short text: floats to 4 significant digits, long lists summarised."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if _is_number(v):
        return _fmt_number(v)
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        nums = _flat_numbers(v)
        if nums is not None and nums:
            if len(nums) <= 10:
                def nested(x):
                    return _fmt_number(x) if _is_number(x) else "[" + ", ".join(nested(i) for i in x) + "]"

                return nested(v)
            finite = [float(n) for n in nums if math.isfinite(n)]
            shape = _shape(v)
            head = ", ".join(_fmt_number(n) for n in nums[:4])
            tail = ", ".join(_fmt_number(n) for n in nums[-2:])
            desc = f"n={len(nums)}" if len(shape) == 1 else "shape=" + "x".join(map(str, shape))
            stats = ""
            if finite:
                stats = (f", min={_fmt_number(min(finite))}, mean={_fmt_number(sum(finite) / len(finite))}"
                         f", max={_fmt_number(max(finite))}")
            return f"[{head}, …, {tail}] ({desc}{stats})"
        if not v:
            return "[]"
        text = ", ".join(format_value(i) for i in v)
        return "[" + (text if len(text) <= 200 else text[:197] + "…") + "]"
    if isinstance(v, dict):
        return "{}" if not v else json.dumps(v)
    return str(v)


def _read_metrics(path: Path, group: Group, rel: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        group.notes.append(f"{rel}: unreadable JSON ({' '.join(str(exc).split())})")
        return {}
    if not isinstance(data, dict):
        data = {"value": data}
    return data


def collect(output_dir: str | os.PathLike) -> list[Group]:
    """Walk ``output_dir`` and return one :class:`Group` per folder that holds files, ordered by
    assignment, then part (the assignment's own files first). Hidden files and folders (temp files
    of atomic writes) and the gallery itself are skipped."""
    root = Path(output_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"output directory not found: {root} (run a script or `make demo` first)")
    groups: list[Group] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted((d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS), key=_natural_key)
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix()
        parts = [] if rel_dir == "." else rel_dir.split("/")
        names = sorted((f for f in filenames if not f.startswith(".")), key=_natural_key)
        if not parts:
            names = [n for n in names if n != INDEX_NAME]
        names = [n for n in names if (here / n).is_file()]
        if not names:
            continue
        g = Group(assignment=parts[0] if parts else "", part="/".join(parts[1:]))
        raw_metrics: dict[str, Any] = {}
        for name in names:
            rel = name if not parts else f"{rel_dir}/{name}"
            ext = Path(name).suffix.lower()
            if ext in IMAGE_EXTS:
                g.images.append(rel)
            elif ext in VIDEO_EXTS:
                g.videos.append(rel)
            elif ext == ".json" and (name == "metrics.json" or "metrics" in name.lower()):
                g.metric_files.append(rel)
                data = _read_metrics(here / name, g, rel)
                if name == "metrics.json":
                    raw_metrics = {**data, **raw_metrics}
                else:
                    raw_metrics[Path(name).stem] = data
            elif ext == ".md":
                try:
                    g.markdown.append((rel, (here / name).read_text(encoding="utf-8", errors="replace")))
                except OSError as exc:
                    g.notes.append(f"{rel}: unreadable ({exc})")
            elif name == "command.txt":
                try:
                    g.command = (here / name).read_text(encoding="utf-8", errors="replace").strip()
                    g.command_file = rel
                except OSError as exc:
                    g.notes.append(f"{rel}: unreadable ({exc})")
            else:
                g.others.append(rel)
        cmd = raw_metrics.pop("command", None)
        if g.command is None and cmd is not None:
            g.command = shlex.join(map(str, cmd)) if isinstance(cmd, list) else str(cmd)
        g.metrics = flatten_metrics(raw_metrics) if raw_metrics else {}
        groups.append(g)
    groups.sort(key=lambda g: (g.assignment != "", _natural_key(g.assignment), g.part != "", _natural_key(g.part)))
    return groups


# --------------------------------------------------------------------------------------------
# Minimal Markdown
# --------------------------------------------------------------------------------------------
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_LIST_ITEM = re.compile(r"^\s*([-*+]|\d+[.)])\s+(.*)$")
_LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]+)\)")


def _split_row(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    cells = re.split(r"(?<!\\)\|", s)
    return [c.strip().replace("\\|", "|") for c in cells]


def _resolve_link(url: str, base: str) -> str:
    """Rewrite a link relative to the Markdown file into one relative to the output folder."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", url) or url.startswith(("/", "#")):
        return url
    joined = os.path.normpath(os.path.join(base, url)).replace(os.sep, "/") if base else url
    return quote(joined, safe="/#?=&%")


def _inline(text: str, base: str = "") -> str:
    """Escape ``text`` and apply inline Markdown: `code`, **bold**, *italic*, links, images."""
    pieces = re.split(r"(`[^`]+`)", text)
    out = []
    for piece in pieces:
        if len(piece) >= 2 and piece.startswith("`") and piece.endswith("`"):
            out.append(f"<code>{html.escape(piece[1:-1])}</code>")
            continue
        chunks = []
        pos = 0
        for m in _LINK.finditer(piece):
            chunks.append(_emphasis(html.escape(piece[pos:m.start()])))
            label, url = m.group(1), _resolve_link(m.group(2), base)
            if m.group(0).startswith("!"):
                chunks.append(f'<img src="{html.escape(url)}" alt="{html.escape(label)}" loading="eager">')
            else:
                chunks.append(f'<a href="{html.escape(url)}">{_emphasis(html.escape(label))}</a>')
            pos = m.end()
        chunks.append(_emphasis(html.escape(piece[pos:])))
        out.append("".join(chunks))
    return "".join(out)


def _emphasis(escaped: str) -> str:
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", escaped)


def markdown_to_html(text: str, base: str = "") -> str:
    """Render a small Markdown subset: ATX headings, paragraphs, ``-``/``1.`` lists, fenced code,
    pipe tables (with alignment) and inline code / emphasis / links. Everything else is escaped
    text. ``base`` is the Markdown file's folder relative to the page, for relative links."""
    lines = text.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    para: list[str] = []
    i = 0

    def flush_para():
        if para:
            out.append("<p>" + _inline(" ".join(s.strip() for s in para), base) + "</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```") or stripped.startswith("~~~"):
            flush_para()
            fence = stripped[:3]
            body = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                body.append(lines[i])
                i += 1
            out.append("<pre><code>" + html.escape("\n".join(body)) + "</code></pre>")
            i += 1
            continue
        if not stripped:
            flush_para()
            i += 1
            continue
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", stripped)
        if m:
            flush_para()
            level = min(len(m.group(1)) + 3, 6)  # page uses h1-h3; document headings start at h4
            out.append(f"<h{level}>{_inline(m.group(2), base)}</h{level}>")
            i += 1
            continue
        if "|" in stripped and i + 1 < len(lines) and _TABLE_SEP.match(lines[i + 1]) and "-" in lines[i + 1]:
            flush_para()
            header = _split_row(stripped)
            aligns = []
            for spec in _split_row(lines[i + 1]):
                spec = spec.strip()
                aligns.append("center" if spec.startswith(":") and spec.endswith(":")
                              else "right" if spec.endswith(":") else "left" if spec.startswith(":") else "")
            i += 2
            rows = []
            while i < len(lines) and lines[i].strip() and "|" in lines[i]:
                rows.append(_split_row(lines[i]))
                i += 1

            def cell(tag, j, content):
                a = aligns[j] if j < len(aligns) else ""
                style = f' style="text-align:{a}"' if a else ""
                return f"<{tag}{style}>{_inline(content, base)}</{tag}>"

            head = "".join(cell("th", j, c) for j, c in enumerate(header))
            body = "".join(
                "<tr>" + "".join(cell("td", j, r[j] if j < len(r) else "") for j in range(len(header))) + "</tr>"
                for r in rows
            )
            out.append(f'<table class="md-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
            continue
        if _LIST_ITEM.match(line):
            flush_para()
            ordered = bool(re.match(r"^\s*\d", line))
            items = []
            while i < len(lines) and (m := _LIST_ITEM.match(lines[i])):
                items.append("<li>" + _inline(m.group(2), base) + "</li>")
                i += 1
            tag = "ol" if ordered else "ul"
            out.append(f"<{tag}>{''.join(items)}</{tag}>")
            continue
        para.append(line)
        i += 1
    flush_para()
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------
_CSS = """
:root { --fg:#1d232a; --muted:#5b6570; --bg:#f6f7f9; --card:#fff; --line:#dde1e6; --accent:#2f6fb3;
        --ok:#1e7b3c; --bad:#c0392b; --warn:#a75a00; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); background:var(--bg); }
header.page { padding:16px 24px 10px; background:var(--card); border-bottom:1px solid var(--line); }
header.page h1 { margin:0 0 4px; font-size:22px; }
header.page p { margin:2px 0; color:var(--muted); }
.summary b.ok { color:var(--ok); } .summary b.bad { color:var(--bad); }
nav ul { list-style:none; padding:0; margin:6px 0 0; display:flex; flex-wrap:wrap; gap:4px 14px; }
nav a { color:var(--accent); text-decoration:none; }
main { padding:6px 24px 30px; }
section > h2 { margin:18px 0 6px; font-size:19px; border-bottom:2px solid var(--line); padding-bottom:3px; }
.cards { display:grid; grid-template-columns:repeat(auto-fill,minmax(380px,1fr)); gap:12px; }
article { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px 14px; min-width:0; }
article.fail, article.missing { border:2px solid var(--bad); }
article h3 { margin:0 0 4px; font-size:16px; display:flex; gap:8px; align-items:baseline; flex-wrap:wrap; }
article h3 .key { color:var(--muted); font-weight:600; }
.badge { font-size:11px; font-weight:700; text-transform:uppercase; letter-spacing:.05em; padding:1px 7px;
         border-radius:9px; color:#fff; background:var(--ok); }
.badge.fail, .badge.missing { background:var(--bad); }
.data { font-size:12px; margin:0 0 4px; color:var(--muted); overflow-wrap:anywhere; }
.data.standin { color:var(--warn); font-weight:600; }
.media { display:flex; gap:10px; overflow-x:auto; margin:6px 0; align-items:flex-start; }
.media.wrap { flex-wrap:wrap; overflow-x:visible; }
figure { margin:0; text-align:center; flex:none; max-width:100%; }
figure img, figure video { display:block; max-width:100%; height:auto; border:1px solid var(--line); border-radius:3px; background:#fff; }
figure img.pixel { image-rendering:pixelated; }
figure.ref img { border-color:#b59b3a; }
figcaption { font-size:11px; color:var(--muted); max-width:300px; margin:auto; word-break:break-all; }
figure.ref figcaption { color:#8a6d0b; }
canvas.l3d-3d { display:block; border:1px solid var(--line); border-radius:3px; background:#fff; cursor:grab; touch-action:none; }
table { border-collapse:collapse; margin:4px 0; font-size:13px; max-width:100%; }
th, td { border:1px solid var(--line); padding:2px 7px; text-align:left; vertical-align:top; overflow-wrap:anywhere; }
th { background:#f0f2f5; }
td.num { font-family:ui-monospace,SFMono-Regular,Menlo,monospace; }
td.pass { color:var(--ok); font-weight:600; } td.fail, td.missing { color:var(--bad); font-weight:700; }
.cmd { margin:4px 0; }
.cmd code, .md pre { display:block; margin:2px 0; padding:5px 8px; background:#f0f2f5; border-radius:5px;
                     white-space:pre-wrap; word-break:break-all; font-size:12px; }
.label { font-size:11px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); }
details { margin-top:4px; color:var(--muted); }
.more { display:flex; flex-wrap:wrap; gap:0 14px; align-items:flex-start; }
.more > details[open] { flex-basis:100%; }
details > summary { cursor:pointer; font-size:12px; }
details a { color:var(--accent); }
.md { margin:6px 0; color:var(--fg); }
.notes { color:var(--bad); margin:4px 0; overflow-wrap:anywhere; }
table.checks td, table.checks thead th { white-space:nowrap; }
.empty { color:var(--muted); font-style:italic; }
"""

MIN_DISPLAY_PX = 256  # small renders are scaled up (nearest neighbour) to at least this size
MAX_DISPLAY_HEIGHT = 320  # and larger ones shrink to at most this height
MAX_MEDIA = 4  # files shown on a card; the rest are in its collapsed "more" section


def _href(rel: str) -> str:
    """Attribute-safe relative URL of a file (percent-encoded, then HTML-escaped)."""
    return html.escape(quote(rel, safe="/"), quote=True)


def _anchor(*parts: str, prefix: str = "g-") -> str:
    """An ``id`` for a section (``s-``), group (``g-``) or part card (``p-``)."""
    text = "--".join(p for p in parts if p) or "top-level"
    return prefix + re.sub(r"[^A-Za-z0-9_-]+", "-", text)


def _image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the image header (Pillow reads no pixels), None if unreadable."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.size
    except Exception:  # an unreadable image still gets its <img> tag (the browser shows it broken)
        return None


def _figure(root: Path, rel: str, caption: str, cls: str = "") -> str:
    """``<figure>`` for an image or a browser-playable video (WebM), scaled up when small."""
    ext = Path(rel).suffix.lower()
    cap = f"<figcaption>{html.escape(caption)}</figcaption>"
    klass = f' class="{cls}"' if cls else ""
    if ext in VIDEO_EXTS:
        return (f'<figure{klass}><video src="{_href(rel)}" autoplay loop muted playsinline controls '
                f'width="{MIN_DISPLAY_PX}"></video>{cap}</figure>')
    attrs, img_cls = "", ""
    size = _image_size(root / rel) if ext != ".svg" else None
    if size:
        w, h = size
        s = math.ceil(MIN_DISPLAY_PX / max(w, h)) if max(w, h) < MIN_DISPLAY_PX else 1
        if h * s > MAX_DISPLAY_HEIGHT:  # tall renders shrink to the card's media row
            s = MAX_DISPLAY_HEIGHT / h
        attrs = f' width="{round(w * s)}" height="{round(h * s)}"'
        img_cls = ' class="pixel"' if s > 1 else ""
    return (f'<figure{klass}><a href="{_href(rel)}"><img src="{_href(rel)}"{img_cls}{attrs} alt="{html.escape(caption)}"'
            f' loading="eager"></a>{cap}</figure>')


def _without_png_twins(images: list[str]) -> tuple[list[str], list[str]]:
    """Split images into (shown, twins): a PNG whose GIF of the same name exists is a still of it."""
    gifs = {i[: -len(".gif")] for i in images if i.lower().endswith(".gif")}
    twins = [i for i in images if i.lower().endswith(".png") and i[: -len(".png")] in gifs]
    return [i for i in images if i not in twins], twins


def _playable(videos: list[str]) -> tuple[list[str], list[str]]:
    """(WebM shown in the page, MP4 and others as downloads): Chromium plays no H.264 without codecs."""
    return [v for v in videos if v.lower().endswith(".webm")], [v for v in videos if not v.lower().endswith(".webm")]


def _metrics_table(g: Group) -> str:
    rows = "".join(
        f'<tr><th scope="row">{html.escape(k)}</th><td class="num">{html.escape(format_value(v))}</td></tr>'
        for k, v in g.metrics.items()
    )
    return f'<table class="metrics"><tbody>{rows}</tbody></table>'


def _group_html(g: Group, root: Path) -> str:
    """An output folder that belongs to no part (shown under "Other outputs")."""
    title = "/".join(p for p in (g.assignment, g.part) if p) or "top level"
    out = [f'<article id="{_anchor(g.assignment, g.part)}"><h3>{html.escape(title)}</h3>']
    if g.command:
        out.append(f'<div class="cmd"><span class="label">command</span><code>{html.escape(g.command)}</code></div>')
    viewer_cmd, _ = _viewer_html("/".join(p for p in (g.assignment, g.part) if p), g.others, root, preview=False)
    out.extend([viewer_cmd] if viewer_cmd else [])
    shown, twins = _without_png_twins(g.images)
    webm, downloads = _playable(g.videos)
    if shown or webm:
        out.append('<div class="media wrap">')
        out.extend(_figure(root, rel, rel.rsplit("/", 1)[-1]) for rel in shown + webm)
        out.append("</div>")
    if g.metrics:
        src = ", ".join(html.escape(m.rsplit("/", 1)[-1]) for m in g.metric_files)
        out.append(f'<span class="label">numbers ({src})</span>{_metrics_table(g)}')
    for rel, text in g.markdown:
        base = rel.rsplit("/", 1)[0] if "/" in rel else ""
        out.append(f'<div class="md"><span class="label"><a href="{_href(rel)}">{html.escape(rel.rsplit("/", 1)[-1])}'
                   f"</a></span>{markdown_to_html(text, base)}</div>")
    if g.notes:
        out.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in g.notes) + "</ul>")
    files = twins + downloads + g.others
    if files:
        links = "".join(f'<li><a href="{_href(r)}">{html.escape(r.rsplit("/", 1)[-1])}</a></li>' for r in files)
        out.append(f"<details><summary>other files ({len(files)})</summary><ul>{links}</ul></details>")
    out.append("</article>")
    return "\n".join(out)


def _in_folder(rel: str, folder: str) -> bool:
    return rel == folder or rel.startswith(folder + "/")


def _pick_media(part: Part, files: list[str]) -> tuple[list[str], list[str]]:
    """(shown, rest) among the images/WebMs under the part's folder: ``part.media`` patterns first
    (in their order), else the folder's own files; at most :data:`MAX_MEDIA` shown."""
    if part.media:
        shown: list[str] = []
        for pattern in part.media:
            hits = [f for f in files if fnmatch.fnmatch(f[len(part.folder) + 1:], pattern)]
            shown.extend(sorted((h for h in hits if h not in shown), key=_natural_key))
    else:
        shown = [f for f in files if "/" not in f[len(part.folder) + 1:]]
    shown = shown[:MAX_MEDIA]
    return shown, [f for f in files if f not in shown]


def _references(part: Part, root: Path, data_root: Path | None) -> list[str]:
    """Copy the part's course reference images that exist under the data root into
    ``<root>/.gallery/references`` (the page stays self-contained); their page-relative paths."""
    if data_root is None:
        return []
    out = []
    for ref in part.references:
        src = data_root / ref
        if not src.is_file():
            continue
        dst = root / ".gallery" / "references" / ref
        if not dst.exists() or dst.stat().st_size != src.stat().st_size:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        out.append(dst.relative_to(root).as_posix())
    return out


MAX_CHECK_ROWS = 3  # checks listed on a card; more go into a collapsed table (failing ones first)


def _checks_html(st: PartStatus) -> tuple[str, list[str]]:
    """The part's checks against their thresholds: failing/missing rows first, at most
    :data:`MAX_CHECK_ROWS` visible; (that table, collapsed sections with all of them and with
    what each number is)."""
    whats = dict(st.whats)

    def table(rows):
        body = "".join(
            f'<tr><th scope="row" title="{html.escape(whats.get(name, ""))}">{html.escape(name)}</th>'
            f'<td class="num">{html.escape(value)}</td><td class="num">{html.escape(thr)}</td>'
            f'<td class="{res}">{res}</td></tr>' for name, value, thr, res in rows)
        return (f'<table class="checks"><thead><tr><th>check</th><th>value</th><th>threshold</th><th></th></tr>'
                f"</thead><tbody>{body}</tbody></table>")

    rows = sorted(st.rows, key=lambda r: r[3] == "pass")  # stable: failing first, then the part's order
    n_ok = sum(r[3] == "pass" for r in rows)
    extras = []
    if len(rows) > MAX_CHECK_ROWS:
        extras.append(f"<details><summary>all {len(rows)} checks ({n_ok} pass)</summary>{table(st.rows)}</details>")
    described = [(n, whats[n]) for n, *_ in st.rows if whats.get(n)]
    if described:
        extras.append("<details><summary>what the checks measure</summary><ul>"
                      + "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(w)}</li>" for n, w in described)
                      + "</ul></details>")
    return table(rows[:MAX_CHECK_ROWS]), extras


def _command_of(part: Part, groups: list[Group]) -> str:
    """The command behind the card: the lines of the folder's ``command.txt`` that run the part's
    own command (a folder shared by two parts keeps both), else the whole file, else the part's."""
    main_group = next((g for g in groups if "/".join(p for p in (g.assignment, g.part) if p) == part.folder), None)
    recorded = (main_group.command or "") if main_group else ""
    if part.command and recorded:
        try:
            want = set(shlex.split(part.command))
            mine = [ln for ln in recorded.splitlines() if want <= set(shlex.split(ln))]
        except ValueError:
            mine = []
        if mine:
            return "\n".join(mine)
    return recorded or part.command


def _preview_rank(rel: str) -> tuple:
    """Which 3-D file of a card to preview first: meshes, then other .ply, arrays."""
    name = rel.rsplit("/", 1)[-1].lower()
    order = ["mesh.ply", "mesh.obj"]
    if name in order:
        return (0, order.index(name), rel)
    ext = Path(name).suffix
    return (1 if ext in (".obj", ".glb", ".gltf") else 2 if name == "gaussians.ply" else 3 if ext == ".ply" else 4, 0, rel)


def preview_canvas(path: Path, caption: str) -> str | None:
    """A ``<figure>`` with a canvas holding an inlined 3-D preview of ``path`` (base64 of int16
    positions and uint8 colours), or None when the file cannot be previewed."""
    import base64

    from .errors import UserError

    try:
        from .view import preview_points

        pts, cols, note = preview_points(path, PREVIEW_POINTS)
    except (UserError, OSError, ValueError, ImportError, KeyError) as exc:
        print(f"note: no 3-D preview of {path}: {exc}", file=sys.stderr)
        return None
    import numpy as np

    q = np.clip(np.round(pts * 32767), -32767, 32767).astype("<i2")
    payload = base64.b64encode(q.tobytes() + cols.astype(np.uint8).tobytes()).decode("ascii")
    return (f'<figure class="view3d"><canvas class="l3d-3d" width="{PREVIEW_PX}" height="{PREVIEW_PX}" '
            f'data-pts="{payload}" title="drag to turn"></canvas>'
            f"<figcaption>{html.escape(caption)} ({html.escape(note)}; drag to turn)</figcaption></figure>")


def _viewer_html(folder: str, files: list[str], root: Path, preview: bool) -> tuple[str, str]:
    """(the 3-D viewer command of a folder with 3-D files, with ``preview`` an embedded preview
    figure of its main one); empty strings when the folder has none."""
    three_d = sorted((f for f in files if Path(f).suffix.lower() in VIEW_EXTS and "/checkpoints/" not in f"/{f}"),
                     key=_preview_rank)
    if not three_d:
        return "", ""
    target = root / folder if folder else root
    cmd = (f'<div class="cmd"><span class="label">3-D viewer</span>'
           f'<code>{html.escape(shlex.join(["python", "-m", "l3d.view", str(target)]))}</code></div>')
    fig = None
    if preview:  # a mesh or point cloud; Gaussians read better in the trainer's renders
        from .view import ply_kind

        shapes = [f for f in three_d if not (f.lower().endswith(".ply") and _safe_ply_kind(ply_kind, root / f) == "gaussians")]
        fig = preview_canvas(root / shapes[0], shapes[0][len(folder) + 1:] if folder else shapes[0]) if shapes else None
    return cmd, fig or ""


def _safe_ply_kind(ply_kind, path: Path) -> str:
    from .errors import UserError

    try:
        return ply_kind(path)
    except (UserError, OSError, ValueError):
        return "unreadable"


#: The previews' viewer: orthographic points, painter's order, drag to turn (no libraries).
_VIEW_JS = """
(function () {
  function bytes(b64) { var s = atob(b64), a = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) a[i] = s.charCodeAt(i); return a; }
  document.querySelectorAll('canvas.l3d-3d').forEach(function (cv) {
    var raw = bytes(cv.dataset.pts), n = raw.length / 9, dv = new DataView(raw.buffer);
    var P = new Float32Array(3 * n), fill = [], order = new Array(n), depth = new Float32Array(n);
    var X = new Float32Array(n), Y = new Float32Array(n);
    for (var i = 0; i < n; i++) {
      for (var k = 0; k < 3; k++) P[3 * i + k] = dv.getInt16(6 * i + 2 * k, true) / 32767;
      var c = 6 * n + 3 * i; fill.push('rgb(' + raw[c] + ',' + raw[c + 1] + ',' + raw[c + 2] + ')'); order[i] = i;
    }
    var g = cv.getContext('2d'), W = cv.width, H = cv.height, s = 0.46 * Math.min(W, H);
    var r = Math.max(2, W / 110), yaw = 0.6, pitch = 0.35, last = null;
    function draw() {
      var cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch);
      for (var i = 0; i < n; i++) {
        var x = P[3 * i], y = P[3 * i + 1], z = P[3 * i + 2];
        var x1 = cy * x + sy * z, z1 = -sy * x + cy * z;
        var y2 = cp * y - sp * z1, z2 = sp * y + cp * z1;
        X[i] = W / 2 + s * x1; Y[i] = H / 2 - s * y2; depth[i] = z2;
      }
      order.sort(function (a, b) { return depth[a] - depth[b]; });
      g.fillStyle = '#fff'; g.fillRect(0, 0, W, H);
      for (var j = 0; j < n; j++) { var p = order[j]; g.fillStyle = fill[p]; g.fillRect(X[p] - r / 2, Y[p] - r / 2, r, r); }
    }
    cv.addEventListener('pointerdown', function (e) { last = [e.clientX, e.clientY]; cv.setPointerCapture(e.pointerId); });
    cv.addEventListener('pointerup', function () { last = null; });
    cv.addEventListener('pointermove', function (e) {
      if (!last) return;
      yaw += 0.01 * (e.clientX - last[0]); pitch = Math.max(-1.5, Math.min(1.5, pitch + 0.01 * (e.clientY - last[1])));
      last = [e.clientX, e.clientY]; draw();
    });
    draw();
  });
})();
"""


def _card(part: Part, st: PartStatus, groups: list[Group], root: Path, refs: list[str]) -> str:
    state = st.state
    badge = {"pass": "pass", "fail": "fail", "missing": "missing"}[state]
    out = [f'<article class="{state}" id="{_anchor(part.key, part.folder.rsplit("/", 1)[-1], prefix="p-")}" '
           f'data-part="{html.escape(part.key + " " + part.title)}">',
           f'<h3><span class="key">{html.escape(part.key)}</span> {html.escape(part.title)}'
           f'<span class="badge {state}">{badge}</span></h3>']
    if st.data:
        cls = "data standin" if st.standin else "data"
        out.append(f'<p class="{cls}">{"" if st.standin else "data: "}{html.escape(st.data)}</p>')
    images = [i for g in groups for i in g.images]
    shown_imgs, twins = _without_png_twins(images)
    webm, downloads = _playable([v for g in groups for v in g.videos])
    media, rest = _pick_media(part, shown_imgs + webm)
    viewer_cmd, preview = _viewer_html(part.folder, [o for g in groups for o in g.others], root, preview=True)
    if media or refs or preview:
        out.append('<div class="media">')
        out.extend(_figure(root, rel, rel[len(part.folder) + 1:]) for rel in media)
        out.extend([preview] if preview else [])
        out.extend(_figure(root, rel, "course reference: " + rel.rsplit("/", 1)[-1], cls="ref") for rel in refs)
        out.append("</div>")
    elif state == "missing":
        out.append('<p class="empty">no outputs yet: run the command below</p>')
    more: list[str] = []  # collapsed sections, in one row under the card
    if st.rows:
        table, extras = _checks_html(st)
        out.append(table)
        more.extend(extras)
    if st.note:
        out.append(f'<p class="notes">{html.escape(st.note)}</p>')
    command = _command_of(part, groups)
    if command:
        out.append(f'<div class="cmd"><code>{html.escape(command)}</code></div>')
    out.extend([viewer_cmd] if viewer_cmd else [])
    numbers = [(g, g.metrics) for g in groups if g.metrics]
    if numbers:
        n = sum(len(m) for _, m in numbers)
        body = "".join(
            (f'<p class="label">{html.escape(g.part or g.assignment)}</p>' if len(numbers) > 1 else "") + _metrics_table(g)
            for g, _ in numbers)
        more.append(f"<details><summary>all numbers ({n})</summary>{body}</details>")
    docs = [(rel, text) for g in groups for rel, text in g.markdown]
    for rel, text in docs:
        base = rel.rsplit("/", 1)[0] if "/" in rel else ""
        more.append(f'<details><summary>{html.escape(rel[len(part.folder) + 1:])}</summary>'
                    f'<div class="md">{markdown_to_html(text, base)}</div></details>')
    if rest:
        more.append(f'<details><summary>more images ({len(rest)})</summary><div class="media wrap">'
                    + "".join(_figure(root, rel, rel[len(part.folder) + 1:]) for rel in rest) + "</div></details>")
    files = twins + downloads + [o for g in groups for o in g.others] + [m for g in groups for m in g.metric_files]
    if files:
        links = "".join(f'<li><a href="{_href(r)}">{html.escape(r[len(part.folder) + 1:])}</a></li>'
                        for r in sorted(files, key=_natural_key))
        more.append(f"<details><summary>files ({len(files)})</summary><ul>{links}</ul></details>")
    if more:
        out.append('<div class="more">' + "".join(more) + "</div>")
    notes = [n for g in groups for n in g.notes]
    if notes:
        out.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    out.append("</article>")
    return "\n".join(out)


ASSIGNMENT_TITLES = {
    "A1": "Assignment 1: rendering basics",
    "A2": "Assignment 2: single view to 3D",
    "A3": "Assignment 3: neural volume and surface rendering",
    "A4": "Assignment 4: Gaussian splatting and score distillation",
    "A5": "Assignment 5: point cloud classification and segmentation",
}


def render_gallery(output_dir: str | os.PathLike, parts: list[Part] | None = None, title: str = "learning-3D outputs",
                   data_root: Path | None = None, now: _dt.datetime | None = None) -> str:
    """The gallery page of ``output_dir`` as an HTML string: one card per part (in the course's
    order) with its pictures, the course's reference images, its checks against thresholds and its
    command; folders that belong to no part under a collapsed "Other outputs"."""
    root = Path(output_dir)
    parts = sorted(load_parts() if parts is None else parts, key=lambda p: p.order)
    groups = collect(root)
    now = now or _dt.datetime.now().astimezone()
    statuses = [part_status(p, root) for p in parts]
    used: set[int] = set()
    by_assignment: dict[str, list[str]] = {}
    for part, st in zip(parts, statuses):
        mine = [g for g in groups if _in_folder("/".join(x for x in (g.assignment, g.part) if x), part.folder)]
        # a folder nested in another part's folder belongs to the deeper part only
        mine = [g for g in mine if not any(
            q is not part and len(q.folder) > len(part.folder) and
            _in_folder("/".join(x for x in (g.assignment, g.part) if x), q.folder) for q in parts)]
        used.update(id(g) for g in mine)
        refs = _references(part, root, data_root)
        by_assignment.setdefault(part.key.split()[0], []).append(_card(part, st, mine, root, refs))
    counts = {s: sum(st.state == s for st in statuses) for s in ("pass", "fail", "missing")}
    n_standin = sum(st.standin for st in statuses)
    toc, body = [], []
    for a, cards in by_assignment.items():
        bad = sum(st.state != "pass" for p, st in zip(parts, statuses) if p.key.split()[0] == a)
        flag = f', <b class="bad">{bad} failing</b>' if bad else ""
        toc.append(f'<li><a href="#{_anchor(a, prefix="s-")}">{html.escape(ASSIGNMENT_TITLES.get(a, a))}</a>'
                   f" ({len(cards)} parts{flag})</li>")
        body.append(f'<section id="{_anchor(a, prefix="s-")}"><h2>{html.escape(ASSIGNMENT_TITLES.get(a, a))}</h2>'
                    f'<div class="cards">{"".join(cards)}</div></section>')
    others = [g for g in groups if id(g) not in used]
    if others:
        body.append(f'<section id="s-other"><h2>Other outputs</h2><details><summary>{len(others)} folders that '
                    f"belong to no part (benchmarks, quality runs, your own runs)</summary>"
                    + "".join(_group_html(g, root) for g in others) + "</details></section>")
    if not groups and not parts:
        body.append('<p class="empty">No outputs yet: run a script (or <code>make demo</code>) and regenerate.</p>')
    summary = (f'<b class="ok">{counts["pass"]} pass</b>, '
               f'<b class="{"bad" if counts["fail"] else "ok"}">{counts["fail"]} fail</b>, '
               f'<b class="{"bad" if counts["missing"] else "ok"}">{counts["missing"]} missing</b>')
    data_line = (f"{n_standin} of {len(parts)} parts ran on built-in stand-ins (labelled on their cards); "
                 f"course data root: <code>{html.escape(str(data_root))}</code>" if data_root is not None else "")
    n_files = sum(g.n_files for g in groups)
    script = f"<script>{_VIEW_JS}</script>\n" if any('class="l3d-3d"' in b for b in body) else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header class="page">
<h1>{html.escape(title)}</h1>
<p class="summary">{len(parts)} parts: {summary}. Each card shows the part's outputs, the course's reference
where one exists, and the numbers that prove it worked against their thresholds
(<code>python -m l3d.report --check</code>).</p>
<p>{data_line}</p>
<p>Generated {html.escape(now.strftime("%Y-%m-%d %H:%M:%S %Z").strip())} from <code>{html.escape(root.name or str(root))}</code>:
<span class="count">{n_files} files</span> in {len(groups)} folders.</p>
<nav><ul>{"".join(toc)}</ul></nav>
</header>
<main>
{chr(10).join(body)}
</main>
{script}</body>
</html>
"""


def write_gallery(output_dir: str | os.PathLike = "output", title: str = "learning-3D outputs",
                  parts: list[Part] | None = None, data_root: Path | None = None) -> Path:
    """Collect ``output_dir`` and write ``<output_dir>/index.html`` atomically; returns its path."""
    root = Path(output_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"output directory not found: {root} (run a script or `make demo` first)")
    page = render_gallery(root, parts, title=title, data_root=data_root)
    path = root / INDEX_NAME
    atomic_write(path, page)
    return path


def check_outputs(output_dir: str | os.PathLike = "output", parts: list[Part] | None = None,
                  only: str = "") -> tuple[str, int]:
    """The ``--check`` table of every part (or those whose key starts with ``only``) and the exit
    status: 0 when every part's checks are present and pass, 1 otherwise."""
    root = Path(output_dir)
    parts = sorted(load_parts() if parts is None else parts, key=lambda p: p.order)
    parts = [p for p in parts if p.key.startswith(only)] if only else parts
    if not parts:
        return (f"no parts match {only!r}" if only else "no parts listed (no <assignment>/parts.py found)"), 1
    rows = [("part", "title", "check", "value", "threshold", "result", "data")]
    statuses = [part_status(p, root) for p in parts]
    for p, st in zip(parts, statuses):
        data = st.data.split(":", 1)[0] if st.data else ""
        if not st.rows:
            rows.append((p.key, p.title, "-", "-", "-", st.state.upper() if st.state != "pass" else "pass", data))
        for i, (name, value, thr, res) in enumerate(st.rows):
            rows.append((p.key if i == 0 else "", p.title if i == 0 else "", name, value, thr,
                         res.upper() if res != "pass" else res, data if i == 0 else ""))
    widths = [min(max(len(r[c]) for r in rows), 34) for c in range(len(rows[0]))]
    lines = ["  ".join(cell[:34].ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    counts = {s: sum(st.state == s for st in statuses) for s in ("pass", "fail", "missing")}
    notes = [f"{p.key}: {st.note}" for p, st in zip(parts, statuses) if st.note and st.state != "pass"]
    lines += [""] + notes + [f"{len(parts)} parts: {counts['pass']} pass, {counts['fail']} fail, "
                             f"{counts['missing']} missing"]
    return "\n".join(lines), 0 if counts["pass"] == len(parts) else 1


def main(argv: list[str] | None = None) -> Path | int:
    parser = ScriptParser(
        prog="python -m l3d.report",
        description="Write <output_dir>/index.html, the gallery of every part's outputs, numbers and checks; "
        "with --check, print every part's checks against their thresholds instead and exit 1 if any part "
        "fails or has not been run.",
    )
    parser.add_argument("--output_dir", default="output", help="folder the scripts wrote to (default: output)")
    parser.add_argument("--title", default="learning-3D outputs", help="page title")
    parser.add_argument("--check", action="store_true",
                        help="print the pass/fail table of every part and exit non-zero if any fails or is missing")
    parser.add_argument("--only", default="", metavar="PREFIX",
                        help="with --check: only the parts whose key starts with PREFIX (e.g. A3, 'A2 1.')")
    args = parser.parse_args(argv)
    if args.check:
        text, rc = check_outputs(args.output_dir, only=args.only)
        print(text)
        return rc
    path = write_gallery(args.output_dir, title=args.title, data_root=_data_root())
    print(path)
    return path


def _data_root() -> Path:
    from .data import data_root  # torch is imported lazily there

    return data_root()


if __name__ == "__main__":
    # Kept free of torch (l3d.train imports it) so the gallery builds in a fraction of a second.
    try:
        result = main()
    except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(2)
    sys.exit(result if isinstance(result, int) else 0)
