"""The static HTML report: sections of metrics tables and figures, one self-contained page that
opens from the file system (figures by relative path, no script, no server)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class PageSection:
    """One group of the page (a stage or a study cell)."""

    title: str
    anchor: str
    note: str = ""
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (caption, table)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (caption, path relative to the page)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
nav a { margin-right: 1em; }
section { border-top: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
caption { text-align: left; font-weight: bold; padding: 0.3em 0; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; }
figure img { max-width: 560px; width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.note { color: #555; }
"""


def _table(caption: str, frame: pd.DataFrame, table_id: str) -> str:
    body = frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, escape=True)
    # pandas writes <table class="dataframe">: give it an id and a caption
    return body.replace('<table class="dataframe">', f'<table class="metrics" id="{html.escape(table_id)}">'
                        f"<caption>{html.escape(caption)}</caption>", 1)  # fmt: skip


def render_report(title: str, subtitle: str, sections: list[PageSection]) -> str:
    """The whole page as a string: a table of contents, then each section's note, tables and figures."""
    nav = " ".join(f'<a href="#{html.escape(s.anchor)}">{html.escape(s.title)}</a>' for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p class='note'>{html.escape(subtitle)}</p><nav>{nav}</nav>",
    ]
    for s in sections:
        parts.append(f'<section id="{html.escape(s.anchor)}"><h2>{html.escape(s.title)}</h2>')
        if s.note:
            parts.append(f"<p class='note'>{html.escape(s.note)}</p>")
        for i, (caption, frame) in enumerate(s.tables):
            parts.append(_table(caption, frame, f"{s.anchor}-table-{i}"))
        for caption, path in s.figures:
            src = html.escape(path, quote=True)
            parts.append(
                f'<figure><a href="{src}"><img src="{src}" alt="{html.escape(caption, quote=True)}"></a>'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
