"""Assembling the report: one self-contained HTML page (inline PNGs as data URIs, inline CSS,
no script, no network)."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from dataclasses import dataclass, field

from diffaug_genomics.report.figures import Figure

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0;
       color: #222; background: #fafafa; }
main { max-width: 1180px; margin: 0 auto; padding: 16px 24px 48px; background: #fff; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 2em; }
.status { padding: 8px 12px; border-radius: 4px; background: #eef5ee; }
.status.unfinished { background: #fff4e0; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { display: block; max-width: 100%; height: auto; margin: 8px 0; }
ul.verdicts li { margin: 4px 0; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 0.8em; }
.note { color: #666; font-size: 0.9em; }
pre.pair { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.8em;
           line-height: 1.35; margin: 6px 0 14px; background: #fbfbfb; }
pre.pair b { color: #c0392b; background: #fdecea; font-weight: bold; }
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def img(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    return (f'<img src="data:image/png;base64,{data}" width="{fig.width}" '
            f'height="{fig.height}" alt="{esc(fig.alt)}" data-file="{esc(fig.name)}">')


def table(header: Iterable[str] | None, rows: Iterable[Iterable[object]],
          numeric: Iterable[int] = ()) -> str:
    """An HTML table (no header row when ``header`` is None)."""
    num = set(numeric)
    head = "" if header is None else "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + \
        "</tr>"
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{esc(c)}</td>' if i in num else f"<td>{esc(c)}</td>"
                         for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


@dataclass
class Page:
    title: str
    sections: list[tuple[str, str, str]] = field(default_factory=list)
    """(anchor, heading, HTML body)."""

    def add(self, anchor: str, heading: str, body: str) -> None:
        self.sections.append((anchor, heading, body))

    def render(self, intro: str = "") -> str:
        toc = " · ".join(f'<a href="#{a}">{esc(h)}</a>' for a, h, _ in self.sections)
        parts = [f'<section id="{a}"><h2>{esc(h)}</h2>\n{b}\n</section>'
                 for a, h, b in self.sections]
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                f"<title>{esc(self.title)}</title>\n"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                f"<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
                f"<h1>{esc(self.title)}</h1>\n{intro}\n<p class=\"note\">{toc}</p>\n"
                + "\n".join(parts) + "\n</main>\n</body>\n</html>\n")
