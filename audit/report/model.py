"""One audit's page, :func:`model_report`: headline numbers, extractable rate by duplicate count and by dedup
status, memorization score distribution, membership ROC curves, optionally the training run's memorization
profile, and the most memorized sequences; every number from the audit's ``summary.json``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dedup import io

from .. import aggregate, plots, stats
from ..layout import (EVENT_TIME_PNG, FORECAST_FILE, HEATMAP_PNG, PROFILE_FILE, PROFILE_OUTPUTS, RETENTION_FILE,
                      RETENTION_PNG, RETENTION_RUN_CURVE, SUMMARY, refuse_damaged, report_json)
from ..retention import retention_curve
from .audit_dir import Audit, load_audit
from .page import (STATUS_TEXT, card, ci, esc, figure_html, finite, integer, num, or_na, pct, rate_table, score_label,
                   table, write_page)

__all__ = ["model_report", "TOP_SEQUENCES"]

TOP_SEQUENCES = 20

Decode = Callable[[Sequence[int]], str]


def _tokens_html(ids: Sequence[int], decode: Decode | None) -> str:
    if ids and decode is not None:
        with contextlib.suppress(Exception):  # a decoder that cannot handle these ids: fall back to the ids
            return esc(decode(list(ids)))
    return esc(" ".join(str(t) for t in ids))


def _prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _split_html(ids: Sequence[int], n_match: int, decode: Decode | None, miss_class: str = "") -> str:
    """The first ``n_match`` tokens marked as matching, the rest (optionally) marked as differing."""
    n_match = max(0, min(int(n_match), len(ids)))
    head, tail = ids[:n_match], ids[n_match:]
    sep = " " if decode is None and head and tail else ""
    out = f'<mark class="match">{_tokens_html(head, decode)}</mark>' if head else ""
    if tail:
        t = _tokens_html(tail, decode)
        out += sep + (f'<mark class="{miss_class}">{t}</mark>' if miss_class else t)
    return out


def _top_sequences(audit: Audit, decode: Decode | None) -> tuple[str, int, int]:
    """The table of the :data:`TOP_SEQUENCES` most memorized DISTINCT sequences (copies once, with their
    count), its row count, and how many sampled sequences the rows stand for."""
    t = audit.table.copy()
    t["_loss"] = t["loss"] if "loss" in t.columns else np.nan
    t = t.sort_values(["leading_matched", "_loss"], ascending=[False, True], kind="stable", na_position="last")
    t["_key"] = aggregate.sequence_keys(t.get("prompt", [None] * len(t)), t.get("truth", [None] * len(t)))
    t["_copies"] = t.groupby("_key", sort=False)["_key"].transform("size")
    t = t.drop_duplicates("_key", keep="first").head(TOP_SEQUENCES)
    C = audit.cont_len
    has_gen = audit.has("generated")
    rows = []
    for rank, (_, r) in enumerate(t.iterrows(), 1):
        truth = aggregate.token_ids(r.get("truth"))
        lead = int(r["leading_matched"])
        dup = int(r["duplicate_count"]) if finite(r.get("duplicate_count")) else -1
        about = [f"{integer(dup)} cop{'y' if dup == 1 else 'ies'} in corpus" if dup >= 0 else "",
                 esc(r["dedup_status"]) if isinstance(r.get("dedup_status"), str) else ""]
        lines = [f'<span class="strong">{lead}</span>{"/" + str(C) if C else ""} matched'
                 + (" · <b>extractable</b>" if bool(r["extractable"]) else ""),
                 " · ".join(f"{name} {num(r[c], digits)}" for c, name, digits
                            in (("loss", "loss", 3), ("pythia_score", "Pythia", 2)) if finite(r.get(c))),
                 " · ".join(x for x in about if x),
                 f"×{int(r['_copies'])} in the sample" if int(r["_copies"]) > 1 else ""]
        src = [x for x in (f"<code>{esc(r['doc_id'])}</code>" if isinstance(r.get("doc_id"), str) else "",
                           f"<code>{esc(r['shard'])}</code>&nbsp;row&nbsp;{integer(r.get('row'))}"
                           if isinstance(r.get("shard"), str) else "",
                           f"offset {integer(r['token_offset'])}"
                           if finite(r.get("token_offset")) and int(r["token_offset"]) else "") if x]
        cells = [f"{rank}", "<br>".join(x for x in lines if x)
                 + (f'<div class="small">{"<br>".join(src)}</div>' if src else ""),
                 f'<div class="text">{_tokens_html(aggregate.token_ids(r.get("prompt")), decode)}</div>',
                 f'<div class="text">{_split_html(truth, lead, decode)}</div>']
        if has_gen:
            gen = aggregate.token_ids(r.get("generated"))
            cells.append(f'<div class="text">{_split_html(gen, _prefix_len(gen, truth), decode, "miss")}</div>'
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


def _headline_cards(a: Audit) -> str:
    h = a.headline()
    ex = h["extractable"]
    P, C = a.prompt_len, a.cont_len
    cards = [card("sequences", integer(h["sequences"]), f"{P} prompt + {C} continuation tokens" if P and C
                  else "audited"),
             card("extractable", pct(ex["rate"]), f"{integer(ex['k'])} of {integer(ex['n'])}; 95% CI {ci(ex)}"),
             card("mean leading tokens matched", num(h["mean_leading_matched"], 1)
                  + (f"<small>/{C}</small>" if C else ""), "tokens greedy decoding gets right before its first error")]
    if h["pythia_score_mean"] is not None:
        pm = h["pythia_memorized"]
        cards.append(card("Pythia memorization score", num(h["pythia_score_mean"], 3),
                           f"mean fraction of continuation tokens generated; {integer(pm['k'])} "
                           f"({pct(pm['rate'])}) score 1"))
    if h["membership_roc_auc"]:
        best = max(h["membership_roc_auc"].items(), key=lambda kv: kv[1])
        cards.append(card("best membership AUC", num(best[1], 3), f"{esc(best[0])} score; 0.5 = chance"))
    ret = a.summary.get("retention")
    if ret and finite(ret.get("documents_kept_fraction")):
        cards.append(card("documents kept by dedup", pct(ret["documents_kept_fraction"]),
                           f"{integer(ret.get('documents_kept'))} of {integer(ret.get('documents_total'))}"))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _membership_section(a: Audit) -> str:
    mem = a.summary.get("membership")
    if not mem:
        return ""
    y = a.table["member"].to_numpy(dtype=bool)
    curves, rows = [], []
    for name, m in mem["scores"].items():
        label = score_label(name)
        fpr, tpr = stats.roc_curve(a.table[f"score_{name}"].to_numpy(dtype=float), y)
        curves.append((label, fpr, tpr, m["roc_auc"]))
        rows.append([esc(label), num(m["roc_auc"]), ci(m["roc_auc_boot"], num) if m.get("roc_auc_boot") else "–",
                     num(m["pr_auc"]), or_na(m.get("tpr_at_1pct_fpr")), or_na(m.get("tpr_at_0.1pct_fpr"))])
    caption = ("How well each membership score separates sequences from training documents (members) from the "
               "others. Each curve sweeps a threshold over the score: a point is the fraction of members flagged "
               "against the fraction of non-members wrongly flagged. The dashed diagonal is guessing; curves toward "
               "the top-left corner mean the model's behaviour gives its training data away. The low-FPR end "
               "(left edge) matters most for real attacks.")
    return (f"<h2>Membership inference</h2><p>{integer(mem['members'])} members and {integer(mem['non_members'])} "
            "non-members. Higher score = more likely a member. TPR at x% FPR: the largest TPR with FPR strictly below "
            "x (MIMIR, LiRA); n/a with fewer than 1/x non-members. PR-AUC: average precision with "
            f"{esc(str(mem.get('pr_auc_positive_class', 'members')))} as the positive class; zlib score with "
            f"zlib level {esc(str(mem.get('zlib_level', 9)))}.</p>"
            + figure_html(plots.roc_curves(curves), "ROC curves of the membership scores", caption)
            + table(["score", "ROC-AUC", "95% CI (bootstrap)", "PR-AUC", "TPR at 1% FPR", "TPR at 0.1% FPR"], rows,
                     num_cols=(1, 2, 3, 4, 5))
            + _membership_by_bucket_html(a.summary.get("membership_by_duplicates")))


def _membership_by_bucket_html(rows: list[dict] | None) -> str:
    """Membership ROC-AUC per occurrence bucket (Kandpal et al. 2022: near chance on singletons)."""
    if not rows:
        return ""
    names = list(rows[0]["roc_auc"])
    body = [[esc(r["group"]), integer(r["n_members"]), integer(r["n_non_members"])]
            + [or_na(r["roc_auc"].get(n), num) for n in names] for r in rows]
    return ("<p>ROC-AUC per occurrence bucket, beside the pooled one above; n/a where a bucket holds members "
            "only or non-members only. Kandpal et al. (2022) find membership inference near chance on sequences "
            "that occur once.</p>"
            + table(["occurrences", "members", "non-members"] + [esc(score_label(n)) for n in names], body,
                    num_cols=tuple(range(1, 3 + len(names)))))


def _forecast_html(fc: dict) -> str:
    """Early-vs-final forecasting (``forecast.json``) in words, undefined ratios said as such."""
    def ratio(name: str, undefined: str) -> str:
        v = fc.get(name)
        if not finite(v):
            return f"undefined ({undefined})"
        lo, hi = fc.get(f"{name}_lower"), fc.get(f"{name}_upper")
        return pct(v) + (f" (95% CI {pct(lo)} – {pct(hi)})" if finite(lo) and finite(hi) else "")

    tp, fp, fn = (fc.get(k) for k in ("tp", "fp", "fn"))
    counts = (f" {integer(tp + fp)} were exactly recalled at the early checkpoint, {integer(tp + fn)} at the final one, "
              f"{integer(tp)} at both.") if all(finite(x) for x in (tp, fp, fn)) else ""
    return (f"<h3>Forecasting</h3><p>Does being memorized (exactly recalled) at an early checkpoint (step "
            f"{integer(fc.get('early_step'))}) predict being memorized at the final one (step {integer(fc.get('final_step'))})? "
            f"Over {integer(fc.get('n'))} instances seen by both:{counts}</p><ul>"
            f"<li>precision, recalled early &rarr; still recalled at the end: "
            f"{ratio('precision', 'nothing was recalled early')}</li>"
            f"<li>recall, recalled at the end &rarr; already recalled early: "
            f"{ratio('recall', 'nothing was recalled at the end')}</li></ul>")


def _profile_figure(profile_dir: Path, png: str | None, parquet: str | None = None, plot=None) -> bytes | None:
    """The profile's ``png``, else ``plot`` (frame -> PNG bytes) of its ``parquet``'s non-placebo rows;
    None when neither is there."""
    if png and (profile_dir / png).exists():
        return (profile_dir / png).read_bytes()
    if parquet and (profile_dir / parquet).exists():
        frame = pd.read_parquet(profile_dir / parquet)
        frame = frame[~frame["placebo"].astype(bool)] if "placebo" in frame.columns else frame
        return plot(frame) if len(frame) else None
    return None


#: The types of the sections of a profile's summary.json that the page reads (any may be absent or null).
PROFILE_SHAPE = {"memorisation": {"instantaneous": {}, "persistent": {"event_times": [0]}, "residual": {}},
                 "panel": {}, "band": {}, "cohorts": [{}], "event_time_curve": [{}], "forecast": {},
                 "retention_run": {"design": {}}}


def _profile_section(profile_dir: Path) -> str:
    parts = ["<h2>Memorization over training</h2>",
             f'<p class="meta">Profile directory: <code>{esc(profile_dir)}</code></p>']
    summ = io.json_or_empty(profile_dir / SUMMARY)
    refuse_damaged(profile_dir / SUMMARY, summ, PROFILE_SHAPE)
    mem, panel, rows = summ.get("memorisation") or {}, summ.get("panel") or {}, []
    end = f"at the end of epoch 1 (step {integer(panel.get('end_step'))})" if panel else "at the final checkpoint"
    lags = (mem.get("persistent") or {}).get("event_times") or []
    later = (f"event times {integer(lags[0])}–{integer(lags[-1])}" if len(lags) > 1
             else f"event time {integer(lags[0])}" if lags else "later checkpoints")
    for kind, what in (("instantaneous", "event time 0: the first checkpoint after a cohort was trained on"),
                       ("persistent", f"mean of the event-time curve over {later} (checkpoints since the cohort's "
                                      "first one)"),
                       ("residual", end)):
        if m := mem.get(kind):
            rows.append([kind, esc(what), num(m.get("effect")), ci(m, num), integer(m.get("n_cells"))])
    if rows:
        parts.append("<p>Memorization is the reduction in an instance's surprisal (nats per token) caused by training "
                     "on it, estimated by difference-in-differences against instances never trained on. As Lesci et al. "
                     "2024 (Causal Estimation of Memorisation Profiles) report it, each figure aggregates the cohorts "
                     "weighted by cohort size (the event aggregation of Callaway &amp; Sant'Anna, "
                     "<code>aggregate('event')</code> in the <code>differences</code> package): instantaneous is the "
                     "event-time curve at event time 0, persistent its mean over the later event times of epoch 1, "
                     "residual the cells at the end of epoch 1. Intervals: the same weighted sums in each bootstrap "
                     "draw over instances.</p>"
                     + table(["memorization", "when", "effect (nats)", "95% CI", "cells"], rows, num_cols=(2, 3, 4)))
    if panel:
        parts.append(f'<p class="note">One treatment per instance: the panel ends {esc(panel.get("ends", ""))} '
                     f'(step {integer(panel.get("end_step"))}), before any instance is trained a second time '
                     "(Lesci et al. 2024 keep epoch 1 only); later checkpoints are not in the profile.</p>")
    if band := summ.get("band"):
        parts.append(
            f"<p>Significance uses a simultaneous 95% band over all {integer(band.get('cells'))} cells (critical value "
            f"{num(band.get('critical_value'))} standard errors, the max-t band of Callaway &amp; Sant'Anna as in the "
            "<code>differences</code> package, here from the instance bootstrap's draws): the chance that any cell "
            f"without an effect is flagged is 5%. {integer(band.get('significant_cells'))} cells are significant. "
            "Lead cells (before treatment, negative event time) test no anticipation and parallel trends: "
            f"{integer(band.get('significant_lead_cells'))} of {integer(band.get('lead_cells'))} are significant "
            "(0 expected).</p>")
    if cohorts := summ.get("cohorts"):
        crow = [[integer(c.get("treatment_step")), integer(c.get("base_step")),
                 esc(", ".join(str(x) for x in c.get("member_cohorts", []))), integer(c.get("cohort_size"))]
                for c in cohorts]
        parts.append("<p>Cohorts: instances are sampled stratified by cohort (a fixed number per cohort, as Lesci et al. "
                     "sample 100 per cohort); adjacent early cohorts below the minimum size are merged and labelled by "
                     "the first checkpoint that has seen all of them.</p>"
                     + table(["cohort (step)", "base step", "merged checkpoint cohorts", "instances"], crow,
                             num_cols=(0, 1, 3)))
    if curve := summ.get("event_time_curve"):
        crow = [[integer(r.get("event_time")), num(r.get("lag_steps"), 1), num(r.get("effect")),
                 f"{num(r.get('band_lower'))} – {num(r.get('band_upper'))}", integer(r.get("n_cohorts")),
                 "yes" if r.get("significant") else "no"] for r in curve]
        parts.append("<p>Event-time curve (Lesci et al.'s persistent memorisation): at each event time, the cohorts' "
                     "effects averaged with weights proportional to cohort size, with the simultaneous band over event "
                     "times. Event time 0 is instantaneous memorisation; negative event times are the lead cells.</p>"
                     + table(["event time", "mean lag (steps)", "effect (nats)", "95% band", "cohorts", "significant"],
                             crow, num_cols=(0, 1, 2, 3, 4)))
        if et := _profile_figure(profile_dir, EVENT_TIME_PNG):
            parts.append(figure_html(et, "event-time curve", (
                "Event-time curve: memorisation against checkpoints since treatment (mean lag in optimizer steps "
                "below), cohort-size weighted, with its simultaneous 95% band; left of the vertical line: lead cells, "
                "which should cover 0.")))
    if finite(plac := summ.get("placebo_cells_covering_zero")):
        parts.append(f'<p class="note">Design check: {pct(plac)} of the placebo cohort\'s cells (held-out instances '
                     "given a pretend treatment step) have a simultaneous band covering 0; a sound design gives 100% "
                     "in 95% of runs.</p>")
    design = (summ.get("retention_run") or {}).get("design") or {}
    items = f"{design['items']} items" if design.get("items") else "its items"
    for png, parquet, plot, alt, caption in (
        (HEATMAP_PNG, PROFILE_FILE, plots.profile_heatmap, "memorization profile heatmap", (
            "Memorization profile: each row is a cohort of instances first trained on by that step, each column a "
            "checkpoint (row labels give the cohort size). Red cells: training on the cohort lowered its surprisal "
            "(memorized) relative to never-trained instances; grey cells: the simultaneous 95% band covers 0 (no "
            "evidence either way); cells left of the black line are lead cells (before treatment: they should be grey); "
            "blank: the base period.")),
        (RETENTION_PNG, RETENTION_FILE, lambda rt: plots.retention_curves(retention_curve(rt)), "retention curves", (
            "Retention: how well trained instances are still recognised (lower loss than a paired held-out foil; 0.5 = "
            "chance) and recalled (second half regenerated from the first, exactly or token by token) as training "
            "goes on, against steps since its cohort's checkpoint, the first at or after its training step (log "
            "axis).")),
        (None, RETENTION_RUN_CURVE, plots.retention_curves, "retention run forgetting curve", (
            f"Retention run (memdedup train --retention-items; Orhan 2024): {items} trained once, in one window, "
            "then training continued on other data only; recognition against held-out, scrambled and substituted "
            "foils and recall, with 95% Wilson intervals over the items, against steps since their exposure "
            "(log axis). Unlike the curves above, no later exposure of an item can lift it.")),
    ):
        if figure := _profile_figure(profile_dir, png, parquet, plot):
            parts.append(figure_html(figure, alt, caption))
    if fc := io.json_or_empty(profile_dir / FORECAST_FILE) if summ.get("forecast") is None else summ["forecast"]:
        parts.append(_forecast_html(fc))
    if len(parts) == 2:
        parts.append('<p class="muted">No profile outputs found in this directory.</p>')
    return "".join(parts)


def model_report(audit_dir: str | os.PathLike, out_html: str | os.PathLike,
                 profile_dir: str | os.PathLike | None = None, title: str | None = None,
                 decode: Decode | None = None) -> Path:
    """Write one self-contained HTML page (``out_html``, parent folders created) for one ``memdedup audit``
    output and copy its ``summary.json`` beside it as ``<stem>.summary.json``; return the page's path.
    ``profile_dir``: a ``memdedup profile`` output of the model's training run; ``title`` defaults to "Memorization
    audit: <audit directory name>"; ``decode``: token ids -> text, else ids are shown. ValueError: ``audit_dir`` not an
    audit output, ``profile_dir`` not a profile output."""
    a = load_audit(audit_dir)
    out = Path(out_html)
    title = title or f"Memorization audit: {a.path.name}"
    t, C = a.table, a.cont_len
    sections = [_headline_cards(a)]
    model = a.summary.get("model") or {}
    meta_rows = [["audit directory", f"<code>{esc(a.path)}</code>"]]
    if model.get("path"):
        meta_rows.append(["model", f"<code>{esc(model['path'])}</code>"])
    cfg = a.summary.get("config") or {}
    seqs = a.summary.get("sequences") or {}
    if seqs.get("file"):  # given, not sampled: the sampler's settings chose nothing
        meta_rows.append(["sequences", f"{integer(a.n)} given in <code>{esc(seqs['file'])}</code>"])
    if cfg:
        skip = ("n_sequences", "offset", "seed") if seqs.get("file") else ()
        shown = {k: cfg[k] for k in ("n_sequences", "prompt_len", "cont_len", "offset", "seed", "k", "generate")
                 if k in cfg and k not in skip}
        meta_rows.append(["configuration", esc(", ".join(f"{k}={v}" for k, v in shown.items()))])
    if skipped := [f"{integer(n)} {noun}{'s' if n != 1 else ''} {what}" for key, noun, what in (
            ("skipped_short", "document", "shorter than prompt + continuation"),
            ("skipped_missing", "given id", "not in the corpus")) if (n := int(seqs.get(key) or 0))]:
        meta_rows.append(["skipped", "; ".join(skipped)])
    if by_dup := a.by_duplicates():
        sections.append("<h2>Extractable rate by occurrences</h2>" + figure_html(
            plots.rate_by_duplicates(by_dup), "extractable rate by occurrences", (
                "Fraction of distinct sequences whose continuation greedy decoding reproduces exactly from the prompt, "
                "grouped by how many times the audited token window occurs in the corpus, at any offset of any "
                "document (Carlini et al. 2022; Kandpal et al. 2022). "
                "Buckets double in width (1, 2–3, 4–7, …), so the axis is logarithmic in the count; bars are Wilson 95% "
                "intervals and <i>n</i> is the number of distinct sequences per bucket. Memorization usually grows steeply "
                "with duplication. Counts are those of the audited corpus, whatever the model was trained on."))
            + rate_table(by_dup, "occurrences in corpus"))
    if a.has("pythia_score"):
        png = plots.histogram(t["pythia_score"].to_numpy(dtype=float), np.linspace(0, 1, 21),
                              "Pythia memorization score")
        cap = ("Distribution of the memorization score (Biderman et al. 2023): the fraction of the "
               f"{C or ''} continuation tokens that greedy generation from the prompt gets right, position by position. "
               "Score 1 = extractable. The y axis is logarithmic so that the few highly memorized sequences stay visible "
               "next to the many that are not.")
        sections.append("<h2>Memorization score</h2>" + figure_html(png, "histogram of Pythia scores", cap))
    else:
        hi = int(C if C else max(int(t["leading_matched"].max()) if a.n else 1, 1))
        png = plots.histogram(t["leading_matched"].to_numpy(dtype=float), np.arange(-0.5, hi + 1.5, 1.0),
                              "leading continuation tokens matched by greedy decoding", integer=True)
        cap = ("Distribution of how many leading tokens of the continuation greedy decoding reproduces before its first "
               f"mistake (0 to {C or 'C'}; {C or 'C'} = extractable). The y axis is logarithmic so that the few highly "
               "memorized sequences stay visible next to the many that are not.")
        sections.append("<h2>Leading tokens matched</h2>" + figure_html(png, "histogram of leading tokens matched", cap))
    sections.append(_membership_section(a))
    if by_status := a.by_status():
        png = plots.rate_points([("extractable rate", by_status)], "dedup status of the source document",
                                [r["group"] for r in by_status])
        sections.append("<h2>Extractable rate by dedup status</h2>" + figure_html(
            png, "extractable rate by dedup status", (
                "Extractable rate by what deduplication did with the sequence's source document: <b>unique</b>, no "
                "duplicate in the corpus; <b>kept</b>, it has duplicates and this copy is the one dedup kept; "
                "<b>removed</b>, dedup removed it as a duplicate of an earlier document. A model trained on the raw "
                "corpus memorizing mostly <i>kept</i> and <i>removed</i> documents is what deduplication targets."))
            + rate_table(by_status, "dedup status", label=lambda g: esc(STATUS_TEXT.get(g, g))))
    if profile_dir is not None:
        p = Path(profile_dir).resolve()
        if not p.is_dir():
            raise ValueError(f"{p}: profile directory does not exist")
        own = [f for f in PROFILE_OUTPUTS if f != SUMMARY]  # an audit has a summary.json too
        if not any((p / f).exists() for f in own):
            raise ValueError(f"{p}: not a 'memdedup profile' output (none of {', '.join(own)})")
        sections.append(_profile_section(p))
    how = ("decoded with the model's tokenizer" if decode is not None
           else "shown as token ids (pass a tokenizer to decode them: <code>memdedup report --model-dir</code>)")
    top_html, n_top, represented = _top_sequences(a, decode)
    sections.append(
        f"<h2>Most memorized sequences</h2><p>The {n_top} distinct sequences with the most leading continuation "
        f"tokens reproduced (ties broken by lower loss"
        + (f"; identical sequences, e.g. copies of one duplicated document, are shown once: these rows stand for "
           f"{integer(represented)} of the {integer(a.n)} sampled sequences" if represented > n_top else "")
        + f"); text {how}. "
        'In the true continuation, the tokens greedy <mark class="match">decoding reproduces</mark> are highlighted'
        + ('; in the generation, <mark class="miss">tokens after the first mistake</mark> are marked too'
           if a.has("generated") else "") + ".</p>" + top_html)
    sections.append("<h2>About this audit</h2>" + table(None, meta_rows, cls="kv"))
    subtitle = [f"{integer(a.n)} sequences from <code>{esc(a.path)}</code>"]
    if model.get("path") or model.get("name"):
        subtitle.append(f"model <code>{esc(model.get('path') or model.get('name'))}</code>")
    write_page(out, title, subtitle, "\n".join(s for s in sections if s))
    summary_out = report_json(out)
    if set(a.summary) <= set(io.json_or_empty(a.path / SUMMARY)):
        io.write_bytes_atomic(summary_out, (a.path / SUMMARY).read_bytes())
    else:  # sections the page derived from per_sequence.parquet: the JSON holds them too
        io.write_json_atomic(summary_out, {**a.summary, "headline": a.headline(),
                                           "note": "sections missing from the audit's summary.json derived from "
                                                   "per_sequence.parquet"})
    return out

