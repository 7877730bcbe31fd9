"""HTML pieces of the report pages: stylesheet, number formatting, cards, tables, figures as inline PNG data
URIs, the page frame. Cells and labels passed in are trusted HTML: escape text with :func:`esc` first.

>>> pct(0.125), pct(0.0004), integer(12345), ratio_text(0.25)
('12.5%', '0.04%', '12,345', '×0.25')
>>> table(["a", "n"], [["x", "1"]], num_cols=(1,))
'<div class="table-wrap"><table><thead><tr><th>a</th><th class="num">n</th></tr></thead><tbody><tr><td>x</td><td class="num">1</td></tr></tbody></table></div>'
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path

from dedup import io

from ..stats import finite

STATUS_TEXT = {"unique": "unique (no duplicate in the corpus)", "kept": "kept (has duplicates; this copy was kept)",
               "removed": "removed by dedup"}
SCORE_LABELS = {"min_k": "Min-K%", "min_k_plus_plus": "Min-K%++", "reference": "reference model"}


def score_label(name: str) -> str:
    """The display name of a membership score (column ``score_<name>``)."""
    return SCORE_LABELS.get(name, name)


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def esc(x) -> str:
    """HTML-escaped text; control characters (NUL, ESC: parse errors) and bidi embedding, override and isolate
    controls (an unclosed U+202E reverses the line) as U+FFFD."""
    return _CONTROL.sub("\ufffd", html.escape(str(x), quote=True))


def pct(x) -> str:
    """A fraction as a percentage: one decimal; two significant digits below 0.1%."""
    if not finite(x):
        return "–"
    v = 100.0 * float(x)
    return f"{v:.1f}%" if v == 0.0 or abs(v) >= 0.1 else f"{v:.2g}%"


def integer(x) -> str:
    return f"{int(x):,}" if finite(x) else "–"


def num(x, digits: int = 3) -> str:
    return f"{float(x):.{digits}f}" if finite(x) else "–"


def or_na(x, fmt=pct) -> str:
    """``fmt(x)``, or "n/a" for summary.json's null (unresolvable: TPR at FPR x below 1/x non-members,
    ROC-AUC of one class)."""
    return "n/a" if x is None else fmt(x)


def ci(r: dict, fmt=pct) -> str:
    return f"{fmt(r.get('lower'))} – {fmt(r.get('upper'))}"


def rate_cell(r: dict) -> str:
    """``12.5%`` with ``3 / 24`` and the interval underneath, for tables."""
    if not r or not r.get("n"):
        return '<span class="muted">no sequences</span>'
    return (f'<span class="strong">{pct(r["rate"])}</span> <span class="small">{integer(r["k"])}&thinsp;/&thinsp;'
            f'{integer(r["n"])}<br>95% CI {ci(r)}</span>')


def ratio_text(x) -> str:
    return "–" if not finite(x) else f"×{float(x):.2f}" if float(x) < 10 else f"×{float(x):.1f}"


CSS = """
:root { --fg: #1d2430; --muted: #5b6472; --line: #d9dee5; --bg-soft: #f5f7fa; --accent: #2f5d95;
        --ok: #1f7a3a; --ok-bg: #e3f3e7; --bad: #a3261c; --bad-bg: #fbe7e5; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; padding: 0 1rem 3rem; color: var(--fg); background: #fff;
       font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; }
header { border-bottom: 2px solid var(--accent); margin: 1.5rem 0 1rem; padding-bottom: .6rem; }
h1 { font-size: 1.7rem; margin: 0 0 .2rem; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 .6rem; padding-bottom: .2rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
p { margin: .4rem 0 .8rem; }
.meta { color: var(--muted); font-size: .88rem; margin: 0; overflow-wrap: anywhere; }
.muted { color: var(--muted); }
.small { font-size: .82rem; color: var(--muted); }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85em; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: .75rem; margin: 1rem 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: .7rem .9rem; background: var(--bg-soft); }
.card .label { font-size: .8rem; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 1.55rem; font-weight: 600; font-variant-numeric: tabular-nums; margin: .1rem 0; }
.card .sub { font-size: .82rem; color: var(--muted); }
figure { margin: 1rem 0 1.4rem; break-inside: avoid; page-break-inside: avoid; }
figure img { display: block; max-width: 100%; height: auto; margin: 0; border: 1px solid var(--line);
             border-radius: 4px; }
figcaption { font-size: .9rem; color: var(--muted); margin-top: .5rem; max-width: 80ch; }
.table-wrap { overflow-x: auto; margin: .6rem 0 1.2rem; }
table { border-collapse: collapse; font-size: .9rem; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: .35rem .6rem; text-align: left; vertical-align: top; }
th { background: var(--bg-soft); font-weight: 600; }
td { overflow-wrap: anywhere; }  /* a long id or unbroken text stays in its column */
td.num, th.num { text-align: right; white-space: nowrap; }
.strong { font-weight: 600; }
.nowrap { white-space: nowrap; }
tr { break-inside: avoid; page-break-inside: avoid; }
.seqs { width: 100%; table-layout: fixed; }
.seqs td { font-size: .82rem; }
.seqs .text { white-space: pre-wrap; overflow-wrap: anywhere; font-family: ui-monospace, SFMono-Regular, Menlo,
              Consolas, monospace; font-size: .78rem; line-height: 1.35; }
.seqs .stats { white-space: nowrap; }
mark.match { background: var(--ok-bg); color: var(--ok); padding: 0; }
mark.miss { background: var(--bad-bg); color: var(--bad); padding: 0; }
.note { border-left: 3px solid var(--accent); background: var(--bg-soft); padding: .5rem .8rem; margin: .8rem 0;
        font-size: .92rem; }
.kv td:first-child { color: var(--muted); }
footer { margin-top: 3rem; font-size: .8rem; color: var(--muted); border-top: 1px solid var(--line);
         padding-top: .6rem; }
@media (max-width: 700px) {
  body { font-size: 14px; padding: 0 .6rem 2rem; }
  h1 { font-size: 1.35rem; }
  /* the sequence table as one block per sequence, each cell under its column name */
  .seqs, .seqs tbody, .seqs tr, .seqs td { display: block; width: 100%; }
  .seqs thead, .seqs colgroup { display: none; }
  .seqs tr { border-bottom: 2px solid var(--line); padding: .4rem 0; }
  .seqs td { border: 0; padding: .15rem 0; }
  .seqs td::before { content: attr(data-label); display: block; font-size: .75rem; color: var(--muted);
                     text-transform: uppercase; letter-spacing: .04em; }
  .seqs td:first-child { font-weight: 600; }
  .seqs td:first-child::before { content: "#"; display: inline; font-size: inherit; color: inherit; }
}
@media print {
  body { font-size: 10.5pt; padding: 0; }
  main { max-width: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  .card { background: none; }
  .table-wrap { overflow: visible; }
  figure img { max-height: 42vh; width: auto; }
  a { color: inherit; text-decoration: none; }
}
"""


def write_page(path: Path, title: str, subtitle_lines: list[str], body: str) -> None:
    """Write the page around ``body`` atomically (parent folders created)."""
    meta = "".join(f'<p class="meta">{line}</p>' for line in subtitle_lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    io.write_text_atomic(path, (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<header><h1>{esc(title)}</h1>{meta}</header>\n{body}\n"
        f"<footer>Generated by memdedup {esc(io.dist_version('memdedup'))} (the same inputs give the same page, byte "
        "for byte). Self-contained page: no external resources.</footer>\n"
        "</main>\n</body>\n</html>\n"
    ))


def card(label: str, value: str, sub: str = "") -> str:
    return (f'<div class="card"><div class="label">{esc(label)}</div><div class="value">{value}</div>'
            f'<div class="sub">{sub}</div></div>')


def figure_html(png: bytes, alt: str, caption: str) -> str:
    """A figure of PNG bytes, inline as a ``data:`` URI."""
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f'<figure><img src="{uri}" alt="{esc(alt)}"><figcaption>{caption}</figcaption></figure>'


def table(head: list[str] | None, rows: list[list[str]], num_cols: Sequence[int] = (), cls: str = "") -> str:
    """An HTML table of trusted cells, ``num_cols`` right-aligned; ``head`` None: no header row."""
    def cell(tag, j, v):
        return f'<{tag} class="num">{v}</{tag}>' if j in num_cols else f"<{tag}>{v}</{tag}>"

    thead = "<thead><tr>" + "".join(cell("th", j, h) for j, h in enumerate(head)) + "</tr></thead>" if head else ""
    tbody = "".join("<tr>" + "".join(cell("td", j, v) for j, v in enumerate(r)) + "</tr>" for r in rows)
    c = f' class="{cls}"' if cls else ""
    return f'<div class="table-wrap"><table{c}>{thead}<tbody>{tbody}</tbody></table></div>'


def rate_table(rows: list[dict], first_header: str, label=esc) -> str:
    body = [[label(r["group"]), integer(r["n"]), integer(r["k"]), pct(r["rate"]) if r["n"] else "–",
             ci(r) if r["n"] else "–"] for r in rows]
    return table([first_header, "sequences", "extractable", "rate", "95% CI"], body, num_cols=(1, 2, 3, 4))
