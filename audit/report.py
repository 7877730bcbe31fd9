"""Self-contained HTML reports of memorization audits.

- :func:`model_report`: one page for one audit (``memdedup audit`` output), optionally with the
  memorization profile of its training run (``memdedup profile`` output).
- :func:`comparison_report`: one page putting several audits side by side (e.g. a model trained
  on the raw corpus and one trained on the deduplicated corpus), optionally with dedup's
  retention accounting (``memdedup dedup`` output).

Every page is a single HTML file: inline CSS, plots embedded as base64 PNG data URIs, no
external assets and no JavaScript, readable on screens of any width and printable. Next to each
page a JSON file holds the numbers it shows, so nothing needs to be parsed out of HTML:

- ``model_report(audit, "out/raw.html")`` also writes ``out/raw.summary.json``, a copy of the
  audit's ``summary.json``;
- ``comparison_report(..., "out/comparison.html")`` also writes ``out/comparison.json``
  (``<stem>.json``: per-model headline numbers, the extractable rate per duplicate bucket with
  the ratio to the first model, and the dedup accounting).

Token ids are shown as numbers unless a ``decode`` callable (token ids -> text, e.g. a Hugging
Face tokenizer's ``decode``) is passed; this module never loads a tokenizer or a model itself.
Plots use matplotlib's Agg canvas (through :mod:`audit.plots` where a plot exists there).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter, PercentFormatter

from dedup import io as dio, layout

from . import metrics, plots

__all__ = ["model_report", "comparison_report", "load_audit", "TOP_SEQUENCES"]

PER_SEQUENCE = "per_sequence.parquet"
SUMMARY = "summary.json"
TOP_SEQUENCES = 20
DPI = 120
STATUS_ORDER = ("unique", "kept", "removed")
STATUS_TEXT = {
    "unique": "unique (no duplicate in the corpus)",
    "kept": "kept (has duplicates; this copy was kept)",
    "removed": "removed by dedup",
}
SCORE_LABELS = {
    "score_loss": "loss",
    "score_zlib": "zlib",
    "score_min_k": "Min-K%",
    "score_min_k_plus_plus": "Min-K%++",
    "score_reference": "reference model",
}

Decode = Callable[[Sequence[int]], str]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


class Audit:
    """One audit directory: its per-sequence table and its summary (``{}`` if absent)."""

    def __init__(self, path: Path, table: pd.DataFrame, summary: dict):
        self.path = path
        self.table = table
        self.summary = summary

    @property
    def n(self) -> int:
        return len(self.table)

    @property
    def cont_len(self) -> int | None:
        c = (self.summary.get("config") or {}).get("cont_len")
        if c is None and self.n and "truth" in self.table.columns:
            c = len(self.table["truth"].iloc[0])
        return int(c) if c is not None else None

    @property
    def prompt_len(self) -> int | None:
        p = (self.summary.get("config") or {}).get("prompt_len")
        if p is None and self.n and "prompt" in self.table.columns:
            p = len(self.table["prompt"].iloc[0])
        return int(p) if p is not None else None

    def has(self, column: str) -> bool:
        """The column exists and holds at least one non-null value."""
        return column in self.table.columns and bool(self.table[column].notna().any())

    def extractable(self) -> np.ndarray:
        return self.table["extractable"].fillna(False).to_numpy(dtype=bool)

    def overall(self) -> dict:
        return _rate(self.extractable())

    def by_duplicates(self) -> list[dict]:
        if not self.has("duplicate_bucket"):
            return []
        t = self.table[self.table["duplicate_bucket"].notna()]
        return metrics.rate_by_group(t["extractable"].fillna(False).to_numpy(dtype=bool),
                                     t["duplicate_bucket"].astype(str).tolist())

    def by_status(self) -> list[dict]:
        if not self.has("dedup_status"):
            return []
        t = self.table[self.table["dedup_status"].notna()]
        groups = t["dedup_status"].astype(str).tolist()
        order = list(STATUS_ORDER) + sorted(set(groups) - set(STATUS_ORDER))
        return metrics.rate_by_group(t["extractable"].fillna(False).to_numpy(dtype=bool), groups, order)

    def members(self) -> np.ndarray | None:
        """Membership labels when the ``member`` column is complete and holds both classes."""
        if "member" not in self.table.columns or self.table["member"].isna().any() or self.n == 0:
            return None
        y = self.table["member"].to_numpy(dtype=bool)
        return y if 0 < int(y.sum()) < y.size else None

    def score_columns(self) -> list[str]:
        cols = [c for c in self.table.columns if c.startswith("score_") and self.table[c].notna().all()]
        known = [c for c in SCORE_LABELS if c in cols]
        return known + [c for c in cols if c not in known]

    def headline(self) -> dict:
        """The numbers at the top of a page (also the per-model entry of comparison.json)."""
        out: dict = {"audit_dir": str(self.path), "sequences": self.n, "extractable": self.overall()}
        out["mean_leading_matched"] = float(self.table["leading_matched"].mean()) if self.n else None
        out["prompt_len"], out["cont_len"] = self.prompt_len, self.cont_len
        out["pythia_score_mean"] = float(self.table["pythia_score"].mean()) if self.has("pythia_score") else None
        out["pythia_memorized"] = (_rate(self.table["pythia_score"].to_numpy(dtype=float) == 1.0)
                                   if self.has("pythia_score") else None)
        y = self.members()
        aucs = {}
        if y is not None:
            for c in self.score_columns():
                aucs[_score_name(c)] = metrics.roc_auc(self.table[c].to_numpy(dtype=float), y)
        out["membership_roc_auc"] = aucs or None
        model = self.summary.get("model") or {}
        out["model"] = model.get("path") or model.get("name")
        return out


def load_audit(audit_dir: str | os.PathLike) -> Audit:
    """Read an audit directory (``per_sequence.parquet`` required, ``summary.json`` optional)."""
    path = Path(audit_dir).resolve()
    f = path / PER_SEQUENCE
    if not f.exists():
        raise ValueError(f"{path}: not an audit output (no {PER_SEQUENCE})")
    table = pq.read_table(f).to_pandas()
    for col in ("extractable", "leading_matched"):
        if col not in table.columns:
            raise ValueError(f"{f}: no column {col!r} (columns: {list(table.columns)})")
    summary = json.loads((path / SUMMARY).read_text(encoding="utf-8")) if (path / SUMMARY).exists() else {}
    return Audit(path, table, summary)


def _rate(flags: np.ndarray) -> dict:
    flags = np.asarray(flags, dtype=bool)
    k, n = int(flags.sum()), int(flags.size)
    lo, hi = metrics.wilson_interval(k, n)
    return {"n": n, "k": k, "rate": k / n if n else None, "lower": lo, "upper": hi}


def _score_name(column: str) -> str:
    return column[len("score_"):] if column.startswith("score_") else column


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def _esc(x) -> str:
    return html.escape(str(x), quote=True)


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float, np.integer, np.floating)) and math.isfinite(float(x))


def _pct(x) -> str:
    """A fraction as a percentage: one decimal; two significant digits below 0.1%."""
    if not _finite(x):
        return "–"
    v = 100.0 * float(x)
    if v == 0.0 or v >= 0.1 or v <= -0.1:
        return f"{v:.1f}%"
    return f"{v:.2g}%"


def _int(x) -> str:
    return f"{int(x):,}" if _finite(x) else "–"


def _num(x, digits: int = 3) -> str:
    return f"{float(x):.{digits}f}" if _finite(x) else "–"


def _ci(r: dict) -> str:
    return f"{_pct(r.get('lower'))} – {_pct(r.get('upper'))}"


def _rate_cell(r: dict) -> str:
    """``12.5%`` with ``3 / 24`` and the interval underneath, for tables."""
    if not r or not r.get("n"):
        return '<span class="muted">no sequences</span>'
    return (f'<span class="strong">{_pct(r["rate"])}</span> <span class="small">{_int(r["k"])}&thinsp;/&thinsp;'
            f'{_int(r["n"])}<br>95% CI {_ci(r)}</span>')


def _ratio_text(x) -> str:
    if not _finite(x):
        return "–"
    return f"×{float(x):.2f}" if float(x) < 10 else f"×{float(x):.1f}"


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _fig_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return _png_uri(buf.getvalue())


def _via_file(fn, *args, **kwargs) -> str:
    """Run an :mod:`audit.plots` function (which writes a PNG file) and return the PNG as a data URI."""
    with tempfile.TemporaryDirectory(prefix="memdedup-report-") as d:
        path = fn(*args, Path(d) / "plot.png", **kwargs)
        return _png_uri(Path(path).read_bytes())


def _histogram(values: np.ndarray, bins, xlabel: str, integer: bool = False) -> str:
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    ax.hist(values, bins=bins, color="#3b6ea8", edgecolor="white", linewidth=0.6)
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.7)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else ""))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("sequences (log scale)")
    if integer:
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, axis="y", which="major", alpha=0.3)
    return _fig_uri(fig)


def _roc_plot(audit: Audit, y: np.ndarray) -> str:
    fig = _figure(5.2, 4.6)
    ax = fig.add_subplot()
    for c in audit.score_columns():
        s = audit.table[c].to_numpy(dtype=float)
        fpr, tpr = metrics.roc_curve(s, y)
        auc = metrics.roc_auc(s, y)
        ax.plot(fpr, tpr, linewidth=1.6, drawstyle="steps-post",
                label=f"{SCORE_LABELS.get(c, _score_name(c))} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1.0, label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false-positive rate (non-members flagged)")
    ax.set_ylabel("true-positive rate (members flagged)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _fig_uri(fig)


def _rate_points(series: list[tuple[str, list[dict]]], xlabel: str, groups: list[str] | None = None) -> str:
    """Extractable rate per group with Wilson bars, one marker series per model (dodged)."""
    if groups is None:
        seen: list[str] = []
        for _, rows in series:
            seen += [r["group"] for r in rows if r["group"] not in seen]
        try:
            groups = sorted(seen, key=metrics.bucket_order)
        except ValueError:
            groups = seen
    x = np.arange(len(groups))
    fig = _figure(float(np.clip(2.8 + 0.8 * len(groups), 5.5, 11.0)), 4.2)
    ax = fig.add_subplot()
    m = len(series)
    step = min(0.12, 0.5 / max(m - 1, 1))  # horizontal dodge between models, so error bars stay apart
    markers = "osD^vP*X"
    for i, (label, rows) in enumerate(series):
        by = {r["group"]: r for r in rows}
        off = (i - (m - 1) / 2) * step
        xs, ys, lo, hi = [], [], [], []
        for j, g in enumerate(groups):
            r = by.get(g)
            if r is None or not r.get("n") or not _finite(r.get("rate")):
                continue
            xs.append(j + off)
            ys.append(float(r["rate"]))
            lo.append(max(float(r["rate"]) - float(r["lower"]), 0.0))
            hi.append(max(float(r["upper"]) - float(r["rate"]), 0.0))
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt=markers[i % len(markers)] + ("-" if m > 1 else ""),
                        capsize=3, markersize=5, linewidth=1.3, label=label)
    ax.set_xticks(x, groups)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylim(-0.02, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("extractable rate (95% CI)")
    ax.grid(True, axis="y", alpha=0.3)
    if m > 1:
        fig.legend(loc="outside upper center", ncols=min(m, 4), fontsize=9, frameon=False)
    return _fig_uri(fig)


# --------------------------------------------------------------------------------------------
# HTML building blocks
# --------------------------------------------------------------------------------------------

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


def _page(title: str, subtitle_lines: list[str], body: str) -> str:
    meta = "".join(f'<p class="meta">{line}</p>' for line in subtitle_lines)
    made = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<header><h1>{_esc(title)}</h1>{meta}</header>\n{body}\n"
        f"<footer>Generated by memdedup on {_esc(made)}. Self-contained page: no external resources.</footer>\n"
        "</main>\n</body>\n</html>\n"
    )


def _card(label: str, value: str, sub: str = "") -> str:
    return (f'<div class="card"><div class="label">{_esc(label)}</div><div class="value">{value}</div>'
            f'<div class="sub">{sub}</div></div>')


def _figure_html(uri: str, alt: str, caption: str) -> str:
    return f'<figure><img src="{uri}" alt="{_esc(alt)}"><figcaption>{caption}</figcaption></figure>'


def _table(head: list[str], rows: list[list[str]], num_cols: Sequence[int] = (), cls: str = "") -> str:
    """An HTML table; cells are trusted HTML (escape before), columns in ``num_cols`` right-aligned."""
    def cell(tag, j, v):
        return f'<{tag} class="num">{v}</{tag}>' if j in num_cols else f"<{tag}>{v}</{tag}>"

    thead = "<tr>" + "".join(cell("th", j, h) for j, h in enumerate(head)) + "</tr>"
    tbody = "".join("<tr>" + "".join(cell("td", j, v) for j, v in enumerate(r)) + "</tr>" for r in rows)
    c = f' class="{cls}"' if cls else ""
    return f'<div class="table-wrap"><table{c}><thead>{thead}</thead><tbody>{tbody}</tbody></table></div>'


def _rate_table(rows: list[dict], first_header: str, label=lambda g: _esc(g)) -> str:
    body = [[label(r["group"]), _int(r["n"]), _int(r["k"]), _pct(r["rate"]) if r["n"] else "–",
             _ci(r) if r["n"] else "–"] for r in rows]
    return _table([first_header, "sequences", "extractable", "rate", "95% CI"], body, num_cols=(1, 2, 3, 4))


# --------------------------------------------------------------------------------------------
# Token text
# --------------------------------------------------------------------------------------------


def _ids(x) -> list[int]:
    if x is None:
        return []
    if isinstance(x, float) and math.isnan(x):
        return []
    return [int(t) for t in x]


def _tokens_html(ids: list[int], decode: Decode | None) -> str:
    if not ids:
        return ""
    if decode is None:
        return _esc(" ".join(str(t) for t in ids))
    try:
        return _esc(decode(list(ids)))
    except Exception:  # a decoder that cannot handle these ids: fall back to the ids
        return _esc(" ".join(str(t) for t in ids))


def _split_html(ids: list[int], n_match: int, decode: Decode | None, miss_class: str = "") -> str:
    """The first ``n_match`` tokens marked as matching, the rest (optionally) marked as differing."""
    n_match = max(0, min(int(n_match), len(ids)))
    head, tail = ids[:n_match], ids[n_match:]
    sep = " " if decode is None and head and tail else ""
    out = f'<mark class="match">{_tokens_html(head, decode)}</mark>' if head else ""
    if tail:
        t = _tokens_html(tail, decode)
        out += sep + (f'<mark class="{miss_class}">{t}</mark>' if miss_class else t)
    return out


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _top_sequences(audit: Audit, decode: Decode | None, k: int = TOP_SEQUENCES) -> tuple[str, int, int]:
    """The table of the ``k`` most memorized DISTINCT sequences (identical prompt + continuation,
    e.g. copies of one duplicated document, are shown once with their count); also returns how
    many rows it has and how many sampled sequences they stand for."""
    t = audit.table.copy()
    t["_loss"] = t["loss"] if "loss" in t.columns else np.nan
    t = t.sort_values(["leading_matched", "_loss"], ascending=[False, True], kind="stable", na_position="last")
    keys = [tuple(_ids(p)) + (-1,) + tuple(_ids(c)) for p, c in zip(t.get("prompt", [None] * len(t)),
                                                                    t.get("truth", [None] * len(t)))]
    t["_key"] = keys
    t["_copies"] = t.groupby("_key", sort=False)["_key"].transform("size")
    t = t.drop_duplicates("_key", keep="first").head(k)
    C = audit.cont_len
    has_gen = audit.has("generated")
    rows = []
    for rank, (_, r) in enumerate(t.iterrows(), 1):
        truth = _ids(r.get("truth"))
        lead = int(r["leading_matched"])
        line1 = f'<span class="strong">{lead}</span>{"/" + str(C) if C else ""} matched'
        line1 += " · <b>extractable</b>" if bool(r["extractable"]) else ""
        line2 = []
        if "loss" in r and _finite(r["loss"]):
            line2.append(f"loss {_num(r['loss'])}")
        if "pythia_score" in r and _finite(r["pythia_score"]):
            line2.append(f"Pythia {_num(r['pythia_score'], 2)}")
        line3 = []
        if "duplicate_count" in r and _finite(r["duplicate_count"]) and int(r["duplicate_count"]) >= 0:
            c = int(r["duplicate_count"])
            line3.append(f"{_int(c)} cop{'y' if c == 1 else 'ies'} in corpus")
        if "dedup_status" in r and isinstance(r["dedup_status"], str):
            line3.append(_esc(r["dedup_status"]))
        lines = [line1, " · ".join(line2), " · ".join(line3)]
        if int(r["_copies"]) > 1:
            lines.append(f"×{int(r['_copies'])} in the sample")
        src = []
        if "doc_id" in r and isinstance(r["doc_id"], str):
            src.append(f"<code>{_esc(r['doc_id'])}</code>")
        if "shard" in r and isinstance(r["shard"], str):
            src.append(f"<code>{_esc(r['shard'])}</code>&nbsp;row&nbsp;{_int(r.get('row'))}")
        if "token_offset" in r and _finite(r["token_offset"]) and int(r["token_offset"]):
            src.append(f"offset {_int(r['token_offset'])}")
        cells = [f"{rank}", "<br>".join(x for x in lines if x)
                 + (f'<div class="small">{"<br>".join(src)}</div>' if src else ""),
                 f'<div class="text">{_tokens_html(_ids(r.get("prompt")), decode)}</div>',
                 f'<div class="text">{_split_html(truth, lead, decode)}</div>']
        if has_gen:
            gen = _ids(r.get("generated"))
            cells.append(f'<div class="text">{_split_html(gen, _common_prefix(gen, truth), decode, "miss")}</div>'
                         if gen else '<span class="muted">–</span>')
        rows.append(cells)
    head = ["#", "sequence", "prompt", "true continuation"] + (["greedy generation"] if has_gen else [])
    widths = ["3%", "19%", "26%", "26%", "26%"] if has_gen else ["4%", "20%", "38%", "38%"]
    cols = "".join(f'<col style="width:{w}">' for w in widths)
    thead = "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
    tbody = "".join("<tr>" + "".join(f'<td data-label="{h}">{c}</td>' for h, c in zip(head, cells)) + "</tr>"
                    for cells in rows)
    return (f'<div class="table-wrap"><table class="seqs"><colgroup>{cols}</colgroup><thead>{thead}</thead>'
            f"<tbody>{tbody}</tbody></table></div>", len(rows), int(t["_copies"].sum()))


# --------------------------------------------------------------------------------------------
# The model page
# --------------------------------------------------------------------------------------------


def _headline_cards(a: Audit) -> str:
    h = a.headline()
    ex = h["extractable"]
    P, C = a.prompt_len, a.cont_len
    cards = [
        _card("sequences", _int(h["sequences"]),
              f"{P} prompt + {C} continuation tokens" if P and C else "audited"),
        _card("extractable", _pct(ex["rate"]),
              f"{_int(ex['k'])} of {_int(ex['n'])}; 95% CI {_ci(ex)}"),
        _card("mean leading tokens matched", _num(h["mean_leading_matched"], 1) + (f"<small>/{C}</small>" if C else ""),
              "tokens greedy decoding gets right before its first error"),
    ]
    if h["pythia_score_mean"] is not None:
        pm = h["pythia_memorized"]
        cards.append(_card("Pythia memorization score", _num(h["pythia_score_mean"], 3),
                           f"mean fraction of continuation tokens generated; {_int(pm['k'])} "
                           f"({_pct(pm['rate'])}) score 1"))
    if h["membership_roc_auc"]:
        best = max(h["membership_roc_auc"].items(), key=lambda kv: kv[1])
        cards.append(_card("best membership AUC", _num(best[1], 3), f"{_esc(best[0])} score; 0.5 = chance"))
    ret = a.summary.get("retention")
    if ret and _finite(ret.get("documents_kept_fraction")):
        cards.append(_card("documents kept by dedup", _pct(ret["documents_kept_fraction"]),
                           f"{_int(ret.get('documents_kept'))} of {_int(ret.get('documents_total'))}"))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _membership_section(a: Audit) -> str:
    y = a.members()
    if y is None or not a.score_columns():
        return ""
    uri = _roc_plot(a, y)
    mem = (a.summary.get("membership") or {}).get("scores", {})
    rows = []
    for c in a.score_columns():
        s = a.table[c].to_numpy(dtype=float)
        name = _score_name(c)
        m = mem.get(name, {})
        boot = m.get("roc_auc_boot") or {}
        ci = f"{_num(boot.get('lower'))} – {_num(boot.get('upper'))}" if boot else "–"
        rows.append([_esc(SCORE_LABELS.get(c, name)), _num(metrics.roc_auc(s, y)), ci, _num(metrics.pr_auc(s, y)),
                     _pct(metrics.tpr_at_fpr(s, y, 0.01)), _pct(metrics.tpr_at_fpr(s, y, 0.001))])
    caption = ("How well each membership score separates sequences from training documents (members) from the "
               "others. Each curve sweeps a threshold over the score: a point is the fraction of members flagged "
               "against the fraction of non-members wrongly flagged. The dashed diagonal is guessing; curves toward "
               "the top-left corner mean the model's behaviour gives its training data away. The low-FPR end "
               "(left edge) matters most for real attacks.")
    return (f"<h2>Membership inference</h2><p>{_int(int(y.sum()))} members and {_int(int((~y).sum()))} non-members. "
            "Higher score = more likely a member.</p>"
            + _figure_html(uri, "ROC curves of the membership scores", caption)
            + _table(["score", "ROC-AUC", "95% CI (bootstrap)", "PR-AUC", "TPR at 1% FPR", "TPR at 0.1% FPR"], rows,
                     num_cols=(1, 2, 3, 4, 5)))


def _forecast_html(fc: dict) -> str:
    """Early-vs-final forecasting (``forecast.json``) in words, undefined ratios said as such."""
    def ratio(name: str, undefined: str) -> str:
        v = fc.get(name)
        if not _finite(v):
            return f"undefined ({undefined})"
        lo, hi = fc.get(f"{name}_lower"), fc.get(f"{name}_upper")
        return _pct(v) + (f" (95% CI {_pct(lo)} – {_pct(hi)})" if _finite(lo) and _finite(hi) else "")

    tp, fp, fn = (fc.get(k) for k in ("tp", "fp", "fn"))
    counts = ""
    if all(_finite(x) for x in (tp, fp, fn)):
        counts = (f" {_int(tp + fp)} were exactly recalled at the early checkpoint, {_int(tp + fn)} at the final one, "
                  f"{_int(tp)} at both.")
    return (f"<h3>Forecasting</h3><p>Does being memorized (exactly recalled) at an early checkpoint (step "
            f"{_int(fc.get('early_step'))}) predict being memorized at the final one (step {_int(fc.get('final_step'))})? "
            f"Over {_int(fc.get('n'))} instances seen by both:{counts}</p><ul>"
            f"<li>precision, recalled early &rarr; still recalled at the end: "
            f"{ratio('precision', 'nothing was recalled early')}</li>"
            f"<li>recall, recalled at the end &rarr; already recalled early: "
            f"{ratio('recall', 'nothing was recalled at the end')}</li></ul>")


def _profile_section(profile_dir: Path) -> str:
    parts = ["<h2>Memorization over training</h2>",
             f'<p class="meta">Profile directory: <code>{_esc(profile_dir)}</code></p>']
    summ_path = profile_dir / "summary.json"
    summ = json.loads(summ_path.read_text(encoding="utf-8")) if summ_path.exists() else {}
    mem = summ.get("memorisation") or {}
    rows = []
    for kind, what in (("instantaneous", "at the first checkpoint after an instance was trained on"),
                       ("persistent", "at later checkpoints, before the last"),
                       ("residual", "at the final checkpoint")):
        m = mem.get(kind) or {}
        if m:
            rows.append([kind, _esc(what), _num(m.get("effect")), f"{_num(m.get('lower'))} – {_num(m.get('upper'))}",
                         _int(m.get("n_cells"))])
    if rows:
        parts.append("<p>Memorization is the reduction in an instance's surprisal (nats per token) caused by training "
                     "on it, estimated by difference-in-differences against instances never trained on.</p>")
        parts.append(_table(["memorization", "when", "effect (nats)", "95% CI", "cells"], rows, num_cols=(2, 3, 4)))
    plac = summ.get("placebo_cells_covering_zero")
    if _finite(plac):
        parts.append(f'<p class="note">Design check: {_pct(plac)} of the placebo cohort\'s cells (held-out instances '
                     "given a pretend treatment step) have an interval covering 0; close to 95% is what a sound design "
                     "gives.</p>")

    heat = profile_dir / "profile_heatmap.png"
    uri = None
    if heat.exists():
        uri = _png_uri(heat.read_bytes())
    elif (profile_dir / "profile.parquet").exists():
        prof = pd.read_parquet(profile_dir / "profile.parquet")
        if "placebo" in prof.columns:
            prof = prof[~prof["placebo"].astype(bool)]
        if len(prof):
            uri = _via_file(plots.profile_heatmap, prof)
    if uri:
        parts.append(_figure_html(uri, "memorization profile heatmap", (
            "Memorization profile: each row is a cohort of instances first trained on at that step, each column a "
            "checkpoint. Red cells: training on the cohort lowered its surprisal (memorized) relative to never-trained "
            "instances; grey cells: the 95% interval covers 0 (no evidence either way); blank: before treatment.")))
    ret = profile_dir / "retention_curves.png"
    uri = None
    if ret.exists():
        uri = _png_uri(ret.read_bytes())
    elif (profile_dir / "retention.parquet").exists():
        from .retention import retention_curve

        rt = pd.read_parquet(profile_dir / "retention.parquet")
        if len(rt):
            uri = _via_file(plots.retention_curves, retention_curve(rt))
    if uri:
        parts.append(_figure_html(uri, "retention curves", (
            "Retention: how well trained instances are still recognised (lower loss than a paired held-out foil; 0.5 = "
            "chance) and recalled (second half regenerated from the first, exactly or token by token) as training "
            "goes on, against steps since the instance was trained on (log axis).")))
    fc = summ.get("forecast")
    if fc is None and (profile_dir / "forecast.json").exists():
        fc = json.loads((profile_dir / "forecast.json").read_text(encoding="utf-8"))
    if fc:
        parts.append(_forecast_html(fc))
    if len(parts) == 2:
        parts.append('<p class="muted">No profile outputs found in this directory.</p>')
    return "".join(parts)


def model_report(
    audit_dir: str | os.PathLike,
    out_html: str | os.PathLike,
    profile_dir: str | os.PathLike | None = None,
    title: str | None = None,
    decode: Decode | None = None,
) -> Path:
    """Write one self-contained HTML page for one audit; return its path.

    Args:
        audit_dir: a ``memdedup audit`` output (``per_sequence.parquet``, ``summary.json``).
        out_html: the page to write (parent folders are created). The audit's ``summary.json``
            is copied next to it as ``<stem>.summary.json`` (e.g. ``raw.html`` ->
            ``raw.summary.json``).
        profile_dir: a ``memdedup profile`` output of the model's training run: adds the
            memorization profile heatmap, retention curves and their summary.
        title: page title (default: "Memorization audit: <audit directory name>").
        decode: token ids -> text (e.g. a tokenizer's ``decode``) for the table of the most
            memorized sequences; without it token ids are shown.

    Raises:
        ValueError: ``audit_dir`` is not an audit output; ``profile_dir`` does not exist.
    """
    a = load_audit(audit_dir)
    out = Path(out_html)
    title = title or f"Memorization audit: {a.path.resolve().name}"
    t = a.table
    C = a.cont_len
    sections = [_headline_cards(a)]

    model = a.summary.get("model") or {}
    meta_rows = [["audit directory", f"<code>{_esc(a.path)}</code>"]]
    if model.get("path"):
        meta_rows.append(["model", f"<code>{_esc(model['path'])}</code>"])
    cfg = a.summary.get("config") or {}
    if cfg:
        shown = {k: cfg[k] for k in ("n_sequences", "prompt_len", "cont_len", "offset", "seed", "k", "generate")
                 if k in cfg}
        meta_rows.append(["configuration", _esc(", ".join(f"{k}={v}" for k, v in shown.items()))])
    seqs = a.summary.get("sequences") or {}
    if seqs.get("skipped_short"):
        n_skip = int(seqs["skipped_short"])
        meta_rows.append(["skipped", f"{_int(n_skip)} document{'s' if n_skip != 1 else ''} shorter than prompt + "
                                     "continuation"])

    # Extractable rate by duplicate count.
    by_dup = a.by_duplicates()
    if by_dup:
        uri = _via_file(plots.rate_by_duplicates, by_dup)
        sections.append("<h2>Extractable rate by duplicate count</h2>" + _figure_html(uri, "extractable rate by "
            "duplicate count", (
                "Fraction of sequences whose continuation greedy decoding reproduces exactly from the prompt, grouped "
                "by how many documents in the corpus duplicate the sequence's source document (itself included). "
                "Buckets double in width (1, 2–3, 4–7, …), so the axis is logarithmic in the count; bars are Wilson 95% "
                "intervals and <i>n</i> is the number of sequences per bucket. Memorization usually grows steeply "
                "with duplication. Counts are those of the audited corpus, whatever the model was trained on."))
            + _rate_table(by_dup, "copies in corpus"))

    # Score histogram.
    if a.has("pythia_score"):
        uri = _histogram(t["pythia_score"].to_numpy(dtype=float), np.linspace(0, 1, 21), "Pythia memorization score")
        cap = ("Distribution of the memorization score (Biderman et al. 2023): the fraction of the "
               f"{C or ''} continuation tokens that greedy generation from the prompt gets right, position by position. "
               "Score 1 = extractable. The y axis is logarithmic so that the few highly memorized sequences stay visible "
               "next to the many that are not.")
        sections.append("<h2>Memorization score</h2>" + _figure_html(uri, "histogram of Pythia scores", cap))
    else:
        hi = int(C if C else max(int(t["leading_matched"].max()) if a.n else 1, 1))
        uri = _histogram(t["leading_matched"].to_numpy(dtype=float), np.arange(-0.5, hi + 1.5, 1.0),
                         "leading continuation tokens matched by greedy decoding", integer=True)
        cap = ("Distribution of how many leading tokens of the continuation greedy decoding reproduces before its first "
               f"mistake (0 to {C or 'C'}; {C or 'C'} = extractable). The y axis is logarithmic so that the few highly "
               "memorized sequences stay visible next to the many that are not.")
        sections.append("<h2>Leading tokens matched</h2>" + _figure_html(uri, "histogram of leading tokens matched", cap))

    sections.append(_membership_section(a))

    by_status = a.by_status()
    if by_status:
        uri = _rate_points([("extractable rate", by_status)], "dedup status of the source document",
                           [r["group"] for r in by_status])
        sections.append("<h2>Extractable rate by dedup status</h2>" + _figure_html(uri, "extractable rate by dedup "
            "status", (
                "Extractable rate by what deduplication did with the sequence's source document: <b>unique</b>, no "
                "duplicate in the corpus; <b>kept</b>, it has duplicates and this copy is the one dedup kept; "
                "<b>removed</b>, dedup removed it as a duplicate of an earlier document. A model trained on the raw "
                "corpus memorizing mostly <i>kept</i> and <i>removed</i> documents is what deduplication targets."))
            + _rate_table(by_status, "dedup status", label=lambda g: _esc(STATUS_TEXT.get(g, g))))

    if profile_dir is not None:
        p = Path(profile_dir).resolve()
        if not p.is_dir():
            raise ValueError(f"{p}: profile directory does not exist")
        sections.append(_profile_section(p))

    how = ("decoded with the model's tokenizer" if decode is not None
           else "shown as token ids (pass a tokenizer to decode them: <code>memdedup report --model-dir</code>)")
    top_html, n_top, represented = _top_sequences(a, decode)
    sections.append(
        f"<h2>Most memorized sequences</h2><p>The {n_top} distinct sequences with the most leading continuation "
        f"tokens reproduced (ties broken by lower loss"
        + (f"; identical sequences, e.g. copies of one duplicated document, are shown once: these rows stand for "
           f"{_int(represented)} of the {_int(a.n)} sampled sequences" if represented > n_top else "")
        + f"); text {how}. "
        'In the true continuation, the tokens greedy <mark class="match">decoding reproduces</mark> are highlighted'
        + ('; in the generation, <mark class="miss">tokens after the first mistake</mark> are marked too'
           if a.has("generated") else "") + ".</p>" + top_html)
    sections.append("<h2>About this audit</h2>" + _table(["", ""], meta_rows, cls="kv").replace("<thead><tr><th></th>"
                                                                                               "<th></th></tr></thead>", ""))
    subtitle = [f"{_int(a.n)} sequences from <code>{_esc(a.path)}</code>"]
    if model.get("path") or model.get("name"):
        subtitle.append(f"model <code>{_esc(model.get('path') or model.get('name'))}</code>")
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_text(out, _page(title, subtitle, "\n".join(s for s in sections if s)))
    summary_out = out.with_name(out.stem + ".summary.json")
    if (a.path / SUMMARY).exists():
        _write_bytes(summary_out, (a.path / SUMMARY).read_bytes())
    else:
        dio.write_json_atomic(summary_out, {"headline": a.headline(), "note": "the audit had no summary.json"})
    return out


# --------------------------------------------------------------------------------------------
# The comparison page
# --------------------------------------------------------------------------------------------


def _dedup_accounting(dedup_dir: Path, first: Audit, first_label: str) -> dict:
    manifest = dio.read_manifest(dedup_dir)
    if manifest is None:
        raise ValueError(f"{dedup_dir}: not a completed dedup output (no manifest.json)")
    tot = manifest.get("totals") or {}
    removed_by = dict(tot.get("removed") or {})
    total, kept = tot.get("rows"), tot.get("kept")
    rem = pq.read_table(layout.removed_path(dedup_dir), columns=["shard", "row", "reason"]).to_pandas()
    reason_of = {(str(s), int(r)): str(c) for s, r, c in zip(rem["shard"], rem["row"], rem["reason"])}
    t = first.table
    ex = first.extractable()
    counts: dict[str, int] = {}
    n_from_removed = 0
    sampled_removed = 0
    if "shard" in t.columns and "row" in t.columns:
        for shard, row, flag in zip(t["shard"], t["row"], ex):
            if shard is None or row is None or (isinstance(row, float) and math.isnan(row)):
                continue
            reason = reason_of.get((str(shard), int(row)))
            if reason is None:
                continue
            sampled_removed += 1
            if flag:
                n_from_removed += 1
                counts[reason] = counts.get(reason, 0) + 1
    k = int(ex.sum())
    return {
        "dedup_dir": str(dedup_dir),
        "documents_total": total,
        "documents_kept": kept,
        "documents_kept_fraction": kept / total if total else None,
        "documents_removed": int(sum(removed_by.values())),
        "removed_by_reason": removed_by,
        "first_model": {
            "label": first_label,
            "sequences": first.n,
            "sequences_from_removed_documents": sampled_removed,
            "extractable": k,
            "extractable_from_removed_documents": n_from_removed,
            "extractable_from_removed_fraction": n_from_removed / k if k else None,
            "extractable_from_removed_by_reason": counts,
        },
    }


def comparison_report(
    audit_dirs: Sequence[str | os.PathLike],
    labels: Sequence[str],
    out_html: str | os.PathLike,
    dedup_dir: str | os.PathLike | None = None,
    title: str | None = None,
) -> Path:
    """Write one HTML page comparing several audits, and its numbers as JSON; return the page's path.

    The first audit is the baseline: per duplicate bucket, each other model's extractable rate is
    divided by the first's (``ratio_to_first = rate(model) / rate(first)``; below 1 = less
    memorization than the first). With ``dedup_dir`` (a ``memdedup dedup`` output), the page adds
    dedup's retention accounting (documents kept / total, removed by reason) and, joining the
    first audit's sequences (``shard``, ``row``) with ``removed.parquet``, how many of the
    sequences the first model memorized (extractable) came from documents dedup removed.

    ``<out_html stem>.json`` (``comparison.json`` for ``comparison.html``) holds::

        {"labels": [...],
         "models": [{"label", "audit_dir", "sequences", "extractable": {"n", "k", "rate", "lower", "upper"},
                     "mean_leading_matched", "pythia_score_mean", "membership_roc_auc", ...}, ...],
         "by_duplicates": [{"bucket", "models": {label: {"n", "k", "rate", "lower", "upper"}},
                            "ratio_to_first": {label: float | None}}, ...],
         "by_dedup_status": [... same shape, "status" instead of "bucket" ...],
         "dedup": null | {"documents_total", "documents_kept", "documents_kept_fraction", "documents_removed",
                          "removed_by_reason": {"exact", "near"},
                          "first_model": {"label", "sequences", "sequences_from_removed_documents", "extractable",
                                          "extractable_from_removed_documents", "extractable_from_removed_fraction",
                                          "extractable_from_removed_by_reason": {reason: count}}}}

    Raises:
        ValueError: fewer than one audit, labels not one per audit or not distinct, an input
            directory that is not an audit / dedup output.
    """
    audit_dirs = list(audit_dirs)
    labels = [str(x) for x in labels]
    if not audit_dirs:
        raise ValueError("comparison_report needs at least one audit directory")
    if len(labels) != len(audit_dirs):
        raise ValueError(f"{len(labels)} labels for {len(audit_dirs)} audits: give one label per audit")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct, got {labels}")
    audits = [load_audit(d) for d in audit_dirs]
    out = Path(out_html)
    first = labels[0]
    title = title or "Memorization comparison: " + " vs ".join(labels)

    heads = []
    for lab, a in zip(labels, audits):
        h = a.headline()
        heads.append({"label": lab, **h})

    def grouped(kind: str, key: str) -> list[dict]:
        per = {lab: {r["group"]: r for r in (a.by_duplicates() if kind == "dup" else a.by_status())}
               for lab, a in zip(labels, audits)}
        groups: list[str] = []
        for lab in labels:
            groups += [g for g in per[lab] if g not in groups]
        if kind == "dup":
            groups = sorted(groups, key=metrics.bucket_order)
        else:
            groups = [s for s in STATUS_ORDER if s in groups] + [g for g in groups if g not in STATUS_ORDER]
        rows = []
        for g in groups:
            models = {}
            for lab in labels:
                r = per[lab].get(g)
                models[lab] = ({k: r[k] for k in ("n", "k", "rate", "lower", "upper")} if r and r["n"] else
                               {"n": 0, "k": 0, "rate": None, "lower": 0.0, "upper": 1.0})
            base = models[first]["rate"]
            ratio = {}
            for lab in labels[1:]:
                r = models[lab]["rate"]
                ratio[lab] = r / base if (r is not None and base) else None
            rows.append({key: g, "models": models, "ratio_to_first": ratio})
        return rows

    by_dup = grouped("dup", "bucket")
    by_status = grouped("status", "status")
    acct = _dedup_accounting(Path(dedup_dir).resolve(), audits[0], first) if dedup_dir is not None else None
    data = {"labels": labels, "first": first, "models": heads, "by_duplicates": by_dup,
            "by_dedup_status": by_status, "dedup": acct,
            "ratio_definition": "rate(model) / rate(first model); null when either rate is undefined or the first is 0"}

    # ---- HTML
    sections = []
    rows = []
    any_pythia = any(h["pythia_score_mean"] is not None for h in heads)
    any_auc = any(h["membership_roc_auc"] for h in heads)
    for h in heads:
        ex = h["extractable"]
        r = [f'<b class="nowrap">{_esc(h["label"])}</b><br><span class="small">{_esc(h["audit_dir"])}</span>',
             _int(h["sequences"]),
             _int(ex["k"]), _pct(ex["rate"]), _ci(ex),
             _num(h["mean_leading_matched"], 2) + (f" / {h['cont_len']}" if h.get("cont_len") else "")]
        if any_pythia:
            r.append(_num(h["pythia_score_mean"]))
        if any_auc:
            aucs = h["membership_roc_auc"] or {}
            r.append("<br>".join(f"{_esc(SCORE_LABELS.get('score_' + k, k))} {v:.3f}" for k, v in aucs.items()) or "–")
        rows.append(r)
    head = ["model", "sequences", "extractable", "rate", "95% CI", "mean leading tokens matched"]
    head += ["Pythia score"] if any_pythia else []
    head += ["membership ROC-AUC"] if any_auc else []
    sections.append(f"<p>The first audit, <b>{_esc(first)}</b>, is the baseline: ratios divide each other model's "
                    "rate by its rate.</p>")
    sections.append("<h2>Headline numbers</h2>" + _table(head, rows, num_cols=(1, 2, 3, 4, 5, 6)) +
                    "<p class=\"small\">Extractable: greedy decoding from the prompt reproduces the whole continuation. "
                    "Intervals are Wilson 95% intervals. Models audited on different samples are comparable as rates, "
                    "not sequence by sequence.</p>")

    if by_dup:
        groups = [r["bucket"] for r in by_dup]
        series = [(lab, [{"group": r["bucket"], **r["models"][lab]} for r in by_dup]) for lab in labels]
        uri = _rate_points(series, "duplicate count bucket (copies of the source document in the corpus)", groups)
        tab_rows = []
        for r in by_dup:
            cells = [_esc(r["bucket"])] + [_rate_cell(r["models"][lab]) for lab in labels]
            cells += [_ratio_text(r["ratio_to_first"][lab]) for lab in labels[1:]]
            tab_rows.append(cells)
        head = ["copies"] + [_esc(lab) for lab in labels] + [f"{_esc(lab)} ÷ {_esc(first)}" for lab in labels[1:]]
        sections.append(
            "<h2>Extractable rate by duplicate count</h2>"
            + _figure_html(uri, "extractable rate by duplicate count, all models", (
                "Extractable rate per duplicate-count bucket, one series per model (markers slightly offset so the "
                "error bars do not overlap). Buckets double in width (1, 2–3, 4–7, …), so the axis is logarithmic in "
                "the count. The count is that of the audited corpus; a model trained on deduplicated data saw at most "
                "one copy of most of these documents, so its curve shows how much memorization the removed copies "
                "were responsible for."))
            + _table(head, tab_rows, num_cols=tuple(range(1, len(head))))
            + f"<p class=\"small\">Ratios: each model's rate divided by <b>{_esc(first)}</b>'s in the same bucket "
              "(×0.10 = a tenth of the rate; – where a rate is undefined or the first is 0).</p>")

    if any(len(r["models"]) and any(m["n"] for m in r["models"].values()) for r in by_status):
        tab_rows = []
        for r in by_status:
            cells = [_esc(STATUS_TEXT.get(r["status"], r["status"]))] + [_rate_cell(r["models"][lab]) for lab in labels]
            cells += [_ratio_text(r["ratio_to_first"][lab]) for lab in labels[1:]]
            tab_rows.append(cells)
        head = ["dedup status"] + [_esc(lab) for lab in labels] + [f"{_esc(lab)} ÷ {_esc(first)}" for lab in labels[1:]]
        sections.append("<h2>Extractable rate by dedup status</h2><p>Sequences grouped by what deduplication did with "
                        "their source document.</p>" + _table(head, tab_rows, num_cols=tuple(range(1, len(head)))))

    if acct is not None:
        fm = acct["first_model"]
        rb = acct["removed_by_reason"]
        rows = [["documents in the corpus", _int(acct["documents_total"]), ""],
                ["kept", _int(acct["documents_kept"]), _pct(acct["documents_kept_fraction"])]]
        for reason in sorted(rb):
            frac = rb[reason] / acct["documents_total"] if acct["documents_total"] else None
            rows.append([f"removed as {_esc(reason)} duplicates", _int(rb[reason]), _pct(frac)])
        reasons = ", ".join(f"{_int(v)} {_esc(k)}" for k, v in sorted(fm["extractable_from_removed_by_reason"].items()))
        sections.append(
            "<h2>What deduplication removed</h2>"
            f'<p class="meta">Dedup output: <code>{_esc(acct["dedup_dir"])}</code></p>'
            + _table(["", "documents", "share"], rows, num_cols=(1, 2))
            + '<div class="cards">'
            + _card(f"memorized by {first}", _int(fm["extractable"]), f"extractable sequences of {_int(fm['sequences'])}")
            + _card("…from documents dedup removed", _int(fm["extractable_from_removed_documents"]),
                    (f"{_pct(fm['extractable_from_removed_fraction'])} of them" if fm["extractable"] else "none memorized")
                    + (f" ({reasons})" if reasons else ""))
            + _card(f"{first}'s sequences from removed documents", _int(fm["sequences_from_removed_documents"]),
                    f"of {_int(fm['sequences'])} audited")
            + "</div>"
            + f"<p>Of the {_int(fm['extractable'])} sequences <b>{_esc(first)}</b> memorized, "
              f"{_int(fm['extractable_from_removed_documents'])} came from documents that deduplication removed (matched "
              "on shard and row): memorization that a model trained on the deduplicated corpus cannot get from those "
              "copies.</p>")

    subtitle = [f"{len(audits)} audits: " + ", ".join(f"<b>{_esc(lab)}</b> (<code>{_esc(a.path)}</code>)"
                                                      for lab, a in zip(labels, audits))]
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_text(out, _page(title, subtitle, "\n".join(sections)))
    dio.write_json_atomic(out.with_suffix(".json"), data)
    return out


# --------------------------------------------------------------------------------------------


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = dio.tmp_path(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)
