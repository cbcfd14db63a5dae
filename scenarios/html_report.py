"""The report as one HTML page: ``render_html(report)`` for a :class:`ollama_locust.reports.Report`.

The markdown that ``reports.write_report`` wrote (the step table, the conclusion, the per-class and error
tables, the plots) becomes HTML through markdown-it-py (CommonMark plus tables); every image the markdown
references from the run folder is embedded as a ``data:`` URI, so the one file is the whole story, offline.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import os

from markdown_it import MarkdownIt

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 1200px; margin: 24px auto; padding: 0 16px; color: #222; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 12px 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f5f5f5; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; height: auto; }
code { background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
@media (prefers-color-scheme: dark) { body { background: #121212; color: #ddd; } th { background: #222; }
  th, td { border-color: #333; } code { background: #222; } }
"""


def _embed(token, run_dir: str) -> None:
    src = token.attrGet("src") or ""
    if "://" in src or src.startswith("data:"):
        return
    path = os.path.normpath(os.path.join(run_dir, src))
    if os.path.dirname(path) != os.path.normpath(run_dir) or not os.path.isfile(path):
        return  # only the run folder's own files
    kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
    with open(path, "rb") as handle:
        token.attrSet("src", f"data:{kind};base64,{base64.b64encode(handle.read()).decode('ascii')}")


def markdown_html(markdown: str, run_dir: str) -> str:
    """The body HTML of ``markdown``; images in ``run_dir`` embedded. Raw HTML in the markdown is escaped."""
    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = parser.parse(markdown)
    for token in tokens:
        for child in token.children or ():
            if child.type == "image":
                _embed(child, run_dir)
    return parser.renderer.render(tokens, parser.options, {})


def render_html(report) -> str:
    """One self-contained HTML page of ``report`` (``Report.markdown``, images from ``Report.run_dir``)."""
    title = html.escape(f"ollama-locust results: {os.path.basename(os.path.normpath(report.run_dir))}")
    body = markdown_html(report.markdown, report.run_dir)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n")
