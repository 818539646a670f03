"""Static HTML gallery of everything the scripts wrote under ``output/``.

``python -m l3d.report [--output_dir output] [--title ...]`` writes ``<output_dir>/index.html``:
one self-contained page (inline CSS, relative links, no network, no JavaScript) showing, per
assignment (top-level folder, e.g. ``a1_rendering``) and per part (sub-folder; files directly in the
assignment folder form their own group):

* every image (PNG / JPG / GIF / WebP / SVG) as ``<img>`` and every video (MP4 / WebM) as
  ``<video controls>``;
* the numbers of the folder's ``metrics.json`` (and any other ``*metrics*.json``) as a table, nested
  dicts flattened to dotted keys, lists shortened, floats to 4 significant digits;
* its ``*.md`` files rendered as minimal Markdown (headings, lists, code, tables as HTML tables);
* the command that produced the folder, from ``command.txt`` or else the ``command`` key of
  ``metrics.json``;
* links to any other files (CSV logs, meshes, checkpoints).

Library use: :func:`collect` returns the groups, :func:`render` turns them into HTML and
:func:`write_gallery` writes the page atomically.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import html
import json
import math
import os
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["Group", "collect", "render", "write_gallery", "format_value", "flatten_metrics", "markdown_to_html", "main"]

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg"}
VIDEO_EXTS = {".mp4", ".webm"}
INDEX_NAME = "index.html"


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
        dirnames[:] = sorted((d for d in dirnames if not d.startswith(".") and d != "__pycache__"), key=_natural_key)
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
:root { --fg:#1d232a; --muted:#5b6570; --bg:#f6f7f9; --card:#fff; --line:#dde1e6; --accent:#2f6fb3; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); background:var(--bg); }
header { padding:20px 28px 12px; background:var(--card); border-bottom:1px solid var(--line); }
header h1 { margin:0 0 4px; font-size:24px; }
header p { margin:2px 0; color:var(--muted); }
nav ul { list-style:none; padding:0; margin:8px 0 0; display:flex; flex-wrap:wrap; gap:6px 14px; }
nav a { color:var(--accent); text-decoration:none; }
main { padding:12px 28px 40px; }
section > h2 { margin:26px 0 8px; font-size:21px; border-bottom:2px solid var(--line); padding-bottom:4px; }
article { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 16px; margin:12px 0; }
article h3 { margin:0 0 8px; font-size:17px; }
.cmd { margin:6px 0 10px; }
.cmd pre, .md pre { margin:2px 0; padding:8px 10px; background:#f0f2f5; border-radius:6px; overflow-x:auto; white-space:pre-wrap; word-break:break-all; }
.label { font-size:12px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); }
.media { display:grid; grid-template-columns:repeat(auto-fill,minmax(240px,1fr)); gap:12px; margin:8px 0; }
figure { margin:0; text-align:center; }
figure img, figure video { max-width:100%; max-height:420px; height:auto; border:1px solid var(--line); border-radius:4px; background:#fff; }
figcaption { font-size:12px; color:var(--muted); word-break:break-all; }
table { border-collapse:collapse; margin:8px 0; font-size:14px; }
th, td { border:1px solid var(--line); padding:3px 9px; text-align:left; vertical-align:top; }
th { background:#f0f2f5; }
td.num { font-family:ui-monospace,SFMono-Regular,Menlo,monospace; }
.md { margin:8px 0; }
.notes { color:#a33; }
details { margin-top:8px; color:var(--muted); }
details a { color:var(--accent); }
.empty { color:var(--muted); font-style:italic; }
"""


def _href(rel: str) -> str:
    """Attribute-safe relative URL of a file (percent-encoded, then HTML-escaped)."""
    return html.escape(quote(rel, safe="/"), quote=True)


def _anchor(*parts: str, prefix: str = "g-") -> str:
    """An ``id`` for a section (``s-``) or group (``g-``) made of the folder names."""
    text = "--".join(p for p in parts if p) or "top-level"
    return prefix + re.sub(r"[^A-Za-z0-9_-]+", "-", text)


def _group_html(g: Group) -> str:
    title = g.part or ("files" if g.assignment else "top level")
    out = [f'<article id="{_anchor(g.assignment, g.part)}"><h3>{html.escape(title)}</h3>']
    if g.command:
        out.append(
            f'<div class="cmd"><span class="label">command</span><pre><code>{html.escape(g.command)}</code></pre></div>'
        )
    if g.images or g.videos:
        out.append('<div class="media">')
        for rel in g.images:
            name = html.escape(rel.rsplit("/", 1)[-1])
            out.append(
                f'<figure><a href="{_href(rel)}"><img src="{_href(rel)}" alt="{name}" loading="eager"></a>'
                f"<figcaption>{name}</figcaption></figure>"
            )
        for rel in g.videos:
            name = html.escape(rel.rsplit("/", 1)[-1])
            out.append(
                f'<figure><video controls preload="metadata" src="{_href(rel)}"></video>'
                f'<figcaption><a href="{_href(rel)}">{name}</a></figcaption></figure>'
            )
        out.append("</div>")
    if g.metrics:
        rows = "".join(
            f'<tr><th scope="row">{html.escape(k)}</th><td class="num">{html.escape(format_value(v))}</td></tr>'
            for k, v in g.metrics.items()
        )
        src = ", ".join(html.escape(m.rsplit("/", 1)[-1]) for m in g.metric_files)
        out.append(f'<span class="label">numbers ({src})</span><table class="metrics"><tbody>{rows}</tbody></table>')
    for rel, text in g.markdown:
        base = rel.rsplit("/", 1)[0] if "/" in rel else ""
        out.append(
            f'<div class="md"><span class="label"><a href="{_href(rel)}">'
            f'{html.escape(rel.rsplit("/", 1)[-1])}</a></span>'
            f"{markdown_to_html(text, base)}</div>"
        )
    if g.notes:
        out.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in g.notes) + "</ul>")
    if g.others:
        links = "".join(f'<li><a href="{_href(r)}">{html.escape(r.rsplit("/", 1)[-1])}</a></li>' for r in g.others)
        out.append(f"<details><summary>other files ({len(g.others)})</summary><ul>{links}</ul></details>")
    out.append("</article>")
    return "\n".join(out)


def render(groups: list[Group], title: str = "learning-3D outputs", source: str = "output",
           now: _dt.datetime | None = None) -> str:
    """The gallery page for ``groups`` as an HTML string."""
    now = now or _dt.datetime.now().astimezone()
    n_img = sum(len(g.images) for g in groups)
    n_vid = sum(len(g.videos) for g in groups)
    n_met = sum(len(g.metric_files) for g in groups)
    n_md = sum(len(g.markdown) for g in groups)
    n_files = sum(g.n_files for g in groups)
    assignments: dict[str, list[Group]] = {}
    for g in groups:
        assignments.setdefault(g.assignment, []).append(g)
    toc = "".join(
        f'<li><a href="#{_anchor(a, prefix="s-")}">{html.escape(a or "top level")}</a> ({len(gs)})</li>'
        for a, gs in assignments.items()
    )
    body = []
    for a, gs in assignments.items():
        body.append(f'<section id="{_anchor(a, prefix="s-")}"><h2>{html.escape(a or "top level")}</h2>')
        body.extend(_group_html(g) for g in gs)
        body.append("</section>")
    if not groups:
        body.append('<p class="empty">No outputs yet: run a script (or <code>make demo</code>) and regenerate.</p>')
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>{html.escape(title)}</h1>
<p>Generated {html.escape(now.strftime("%Y-%m-%d %H:%M:%S %Z").strip())} from <code>{html.escape(source)}</code>:
<span class="count">{n_files} files</span> ({n_img} images, {n_vid} videos, {n_met} metrics files,
{n_md} documents) in {len(groups)} groups.</p>
<nav><ul>{toc}</ul></nav>
</header>
<main>
{chr(10).join(body)}
</main>
</body>
</html>
"""


def write_gallery(output_dir: str | os.PathLike = "output", title: str = "learning-3D outputs") -> Path:
    """Collect ``output_dir`` and write ``<output_dir>/index.html`` atomically; returns its path."""
    root = Path(output_dir)
    page = render(collect(root), title=title, source=root.name or str(root))
    path = root / INDEX_NAME
    fd, tmp = tempfile.mkstemp(dir=root, prefix=f".{INDEX_NAME}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m l3d.report",
        description="Write <output_dir>/index.html, a static gallery of every image, video and number "
        "under output_dir.",
    )
    parser.add_argument("--output_dir", default="output", help="folder the scripts wrote to (default: output)")
    parser.add_argument("--title", default="learning-3D outputs", help="page title")
    args = parser.parse_args(argv)
    path = write_gallery(args.output_dir, title=args.title)
    print(path)
    return path


if __name__ == "__main__":
    # Kept free of torch (l3d.train imports it) so the gallery builds in a fraction of a second.
    try:
        main()
    except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(2)
