"""Several audits side by side, :func:`comparison_report`: every rate from the audits' ``summary.json``; only the
first model's sequences are joined with the dedup output's removed rows (:mod:`audit.aggregate`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from dedup import io
from dedup import layout as dedup_layout

from .. import aggregate, plots, stats
from ..layout import STATUS_ORDER, refuse_other_bos, report_json
from .audit_dir import Audit, load_audit
from .page import (STATUS_TEXT, card, ci, esc, figure_html, integer, num, or_na, pct, rate_cell, ratio_text,
                   score_label, table, write_page)

__all__ = ["comparison_report"]


def _dedup_accounting(dedup_dir: Path, first: Audit, first_label: str) -> dict:
    """comparison.json's ``dedup`` (:func:`audit.aggregate.removed_accounting`). ValueError: a
    sequence's (shard, row) is not among the dedup output's inputs, or an input's size is not that of the audit's
    corpus file of its name (its manifest's ``corpus_bytes``)."""
    manifest = io.completed_manifest(dedup_dir, "dedup")
    rem = dedup_layout.read_removed(dedup_dir, ["shard", "row", "reason"])
    reason_of = {(str(s), int(r)): str(c) for s, r, c in zip(rem["shard"], rem["row"], rem["reason"])}
    t = first.table
    shard, row = (t["shard"].tolist(), t["row"].tolist()) if {"shard", "row"} <= set(t.columns) else ([], [])
    rows_of = dedup_layout.input_rows(manifest, dedup_dir)  # a dedup output of this corpus?
    for s, r in zip(shard, row):
        if rows_of and s is not None and r is not None and r >= 0 and not r < rows_of.get(s, 0):
            raise ValueError(f"{dedup_dir}: not the dedup output of {first.path}'s corpus: none of its inputs is a "
                             f"shard {s!r} with a row {r}")
    read = io.json_or_empty(io.manifest_path(first.path)).get("corpus_bytes")  # the sizes of the files it read
    for name, size in read.items() if isinstance(read, dict) else ():
        if why := dedup_layout.other_bytes(manifest, name, size, "the audit's"):
            raise ValueError(f"{dedup_dir}: not the dedup output of {first.path}'s corpus: {why}")
    extractable = t["extractable"].fillna(False).to_numpy(dtype=bool)
    keys = aggregate.sequence_keys(t["prompt"], t["truth"]) if {"prompt", "truth"} <= set(t.columns) else None
    return {"dedup_dir": str(dedup_dir),
            **aggregate.removed_accounting(manifest, reason_of, shard, row, extractable, first_label, keys)}


def _membership_by_duplicates(labels: Sequence[str], audits: Sequence[Audit]) -> list[dict]:
    """comparison.json's ``membership_by_duplicates``: pooled ROC-AUC (bucket ``all``), then per
    occurrence bucket any model has sequences in (Kandpal et al. 2022); None where undefined; empty without labels."""
    pooled: dict[str, dict | None] = {}
    buckets: dict[str, dict[str, dict]] = {}
    for lab, a in zip(labels, audits):
        mem = a.summary.get("membership")
        pooled[lab] = None if not mem else {"n_members": int(mem.get("n_members", mem.get("members", 0))),
                       "n_non_members": int(mem.get("n_non_members", mem.get("non_members", 0))),
                       "roc_auc": {name: m["roc_auc"] for name, m in mem["scores"].items()}}
        for g in [str(r["group"]) for r in a.by_duplicates() if r.get("n")]:
            buckets.setdefault(g, {})
        for r in (a.summary.get("membership_by_duplicates") or []) if mem else []:
            buckets.setdefault(str(r["group"]), {})[lab] = {
                "n_members": int(r["n_members"]), "n_non_members": int(r["n_non_members"]),
                "roc_auc": dict(r["roc_auc"])}
    if not any(pooled.values()):
        return []
    return [{"bucket": "all", "models": pooled}] + [
        {"bucket": g, "models": {lab: buckets[g].get(lab) for lab in labels}}
        for g in sorted(buckets, key=stats.bucket_order)]


def _auc_cell(entry: dict | None) -> str:
    """One model's ROC-AUC per score in one bucket (n/a where undefined), with its class counts."""
    if entry is None:
        return '<span class="muted">n/a</span>'
    lines = [f"{esc(score_label(k))} {or_na(v, num)}" for k, v in entry["roc_auc"].items()]
    return ("<br>".join(lines) + f'<br><span class="small">{integer(entry["n_members"])} members, '
            f'{integer(entry["n_non_members"])} non-members</span>')


def _rate_table(rows: list[dict], key: str, first_header: str, labels: Sequence[str], label=esc) -> str:
    """Rate rows of :func:`audit.aggregate.compare_groups`: a column per model, then each one's ratio to the first."""
    head = [first_header] + [esc(lab) for lab in labels] + [f"{esc(lab)} ÷ {esc(labels[0])}" for lab in labels[1:]]
    body = [[label(r[key])] + [rate_cell(r["models"][lab]) for lab in labels]
            + [ratio_text(r["ratio_to_first"][lab]) for lab in labels[1:]] for r in rows]
    return table(head, body, num_cols=tuple(range(1, len(head))))


#: Settings under which audits stay comparable but whose difference the page says (:func:`_differences`).
DIFFERENCES = {
    "corpus": "audited on other corpora: each model's rates are of other sequences, with occurrences counted in its "
              "own corpus, so a ratio mixes the corpora's difference with the models'",
    "offset": "sequences start at document starts in one audit and at random offsets in another: other populations "
              "of sequences (starts, with their boilerplate, are memorized more)",
    "per_bucket": "sampled with other --per-bucket caps: a pooled rate weights the occurrence buckets as its sample "
                  "does, so compare the rates by occurrence bucket",
    "k": "Min-K% and Min-K%++ are taken over another fraction k of the tokens: other scores, whose ROC-AUCs are not "
         "comparable between these audits (the other scores' are)",
    "reference_model": "the reference score subtracts another reference model's loss: its ROC-AUCs are not "
                       "comparable between these audits",
    "dedup_dir": "audited with other --dedup-dir outputs (none: without one): the rates by dedup status (unique, "
                 "kept, removed) split the sequences by other dedup runs",
    "report --dedup-dir": "the report's dedup output is not the one an audit was made with: its accounting (documents "
                          "kept, memorized sequences from removed documents) is of another dedup run than the rates by "
                          "dedup status",
}


def _audited_dedup_dir(a: Audit, unrecorded: object = None) -> object:
    """The --dedup-dir an audit recorded (resolved; None: audited without one), else ``unrecorded``."""
    return io.json_or_empty(io.manifest_path(a.path)).get("dedup_dir", unrecorded)


def _corpus(a: Audit) -> str | None:
    """The corpus an audit read, as compared: the number and total size of its files when read (its manifest's
    ``corpus_bytes``) and the text column; None where not recorded."""
    files = io.json_or_empty(io.manifest_path(a.path)).get("corpus_bytes")
    if not isinstance(files, dict) or not all(isinstance(v, int) for v in files.values()):
        return None
    n = len(files)
    column = (a.summary.get("config") or {}).get("text_column", "text")
    return f"{n} file{'s' * (n != 1)}, {sum(files.values()):,} bytes, text column {column!r}"


def _differences(audits: Sequence[Audit], labels: Sequence[str]) -> list[dict]:
    """What makes audits comparable, in one place. ValueError: other prompt or continuation lengths, other ``--bos``
    policies (other measures: their ratio is no effect of the models). Returned, for the page and
    comparison.json's ``differences``: each setting of :data:`DIFFERENCES` whose recorded values differ, as
    ``{"setting", "values": {label: value}, "meaning"}`` (a setting an audit does not record is not compared; the
    Min-K% ``k`` and the reference model only where an audit has membership scores)."""
    if len(set(lengths := [(a.prompt_len, a.cont_len) for a in audits])) > 1:  # another P or C: another measure
        raise ValueError("a comparison needs audits of the same prompt and continuation lengths (rates of other "
                         "lengths are other measures): "
                         + ", ".join(f"{lab}: {p} + {c}" for lab, (p, c) in zip(labels, lengths)))
    configs = [a.summary.get("config") or {} for a in audits]
    refuse_other_bos([a.path for a in audits], labels)
    unrecorded = object()
    scored = any(a.summary.get("membership") for a in audits)
    values = {"corpus": [_corpus(a) or unrecorded for a in audits],
              **{key: [c.get(key, unrecorded) for c in configs] for key in ("offset", "per_bucket")},
              "k": [c.get("k", unrecorded) if scored else unrecorded for c in configs],
              "reference_model": [a.summary.get("reference_model") or unrecorded if scored else unrecorded
                                  for a in audits],
              "dedup_dir": [_audited_dedup_dir(a, unrecorded) for a in audits]}
    return [{"setting": key, "values": dict(zip(labels, v)), "meaning": DIFFERENCES[key]} for key, v in values.items()
            if unrecorded not in v and len(set(map(repr, v))) > 1]


def comparison_report(audit_dirs: Sequence[str | os.PathLike], labels: Sequence[str], out_html: str | os.PathLike,
                      dedup_dir: str | os.PathLike | None = None, title: str | None = None,
                      exposure: Mapping[str, dict] | None = None) -> Path:
    """Write one HTML page comparing several audits, and its numbers as JSON; return the page's path.

    The first audit is the baseline: ``ratio_to_first = rate(model) / rate(first)`` per bucket (below 1: less
    memorization). With ``dedup_dir`` (a ``memdedup dedup`` output): dedup's accounting and how many of the first
    model's extractable (distinct) sequences came from documents it removed, joined on (``shard``, ``row``) with
    ``removed.parquet``. ``<out_html stem>.json``::

        {"labels": [...],
         "models": [{"label", "audit_dir", "sequences", "extractable": {"n", "k", "rate", "lower", "upper"},
                     "mean_leading_matched", "pythia_score_mean", "membership_roc_auc", ...}, ...],
         "by_duplicates": [{"bucket", "models": {label: {"n", "k", "rate", "lower", "upper"}},
                            "ratio_to_first": {label: float | None}}, ...],
         "membership_by_duplicates": [{"bucket": "all" | bucket,
                                       "models": {label: null | {"n_members", "n_non_members",
                                                                 "roc_auc": {score: float | null}}}}, ...],
         "by_dedup_status": [... same shape, "status" instead of "bucket" ...],
         "dedup": null | {"documents_total", "documents_kept", "documents_kept_fraction", "documents_removed",
                          "removed_by_reason": {"exact", "near"},
                          "first_model": {"label", "sequences", "sequences_located",
                                          "sequences_from_removed_documents", "extractable",
                                          "extractable_from_removed_documents", "extractable_from_removed_fraction",
                                          "extractable_from_removed_by_reason": {reason: count}}},
         "differences": [{"setting", "values": {label: value}, "meaning"}, ...]}

    ``differences``: the settings that differ between the audits but leave them comparable (:func:`_differences`),
    also said above everything else on the page.

    ``exposure``: ``checks.json``'s ``exposure_by_copies`` (``{model: {"samples", "log2_space", "words", "by_copies":
    [{"copies", "canaries", "mean_exposure", "min_exposure", "max_exposure"}, ...]}}``, bits, Carlini et al. 2019),
    shown by planted copies and kept in the JSON. ValueError: no audit, labels not one per audit or not distinct, an
    input not an audit / dedup output, audits of different prompt or continuation lengths or BOS policies.
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
    differences = _differences(audits, labels)
    out, first = Path(out_html), labels[0]
    title = title or "Memorization comparison: " + " vs ".join(labels)
    heads = [{"label": lab, **a.headline()} for lab, a in zip(labels, audits)]

    by_dup = aggregate.compare_groups({lab: a.by_duplicates() for lab, a in zip(labels, audits)}, "bucket", None)
    by_status = aggregate.compare_groups({lab: a.by_status() for lab, a in zip(labels, audits)}, "status", STATUS_ORDER)
    mem_by_dup = _membership_by_duplicates(labels, audits)
    acct = _dedup_accounting(Path(dedup_dir).resolve(), audits[0], first) if dedup_dir is not None else None
    audited = {lab: _audited_dedup_dir(a) for lab, a in zip(labels, audits)}
    if acct and any(isinstance(d, str) and Path(d).resolve() != Path(acct["dedup_dir"]) for d in audited.values()):
        differences.append({"setting": "report --dedup-dir", "values": {"this report": acct["dedup_dir"], **audited},
                            "meaning": DIFFERENCES["report --dedup-dir"]})
    data = {"labels": labels, "first": first, "models": heads, "by_duplicates": by_dup,
            "membership_by_duplicates": mem_by_dup, "by_dedup_status": by_status, "dedup": acct,
            "ratio_definition": aggregate.RATIO_DEFINITION, "differences": differences}
    if exposure:
        data["exposure_by_copies"] = dict(exposure)

    rows = []
    any_pythia = any(h["pythia_score_mean"] is not None for h in heads)
    any_auc = any(h["membership_roc_auc"] for h in heads)
    for h in heads:
        ex = h["extractable"]
        r = [f'<b class="nowrap">{esc(h["label"])}</b><br><span class="small">{esc(h["audit_dir"])}</span>',
             integer(h["sequences"]), integer(ex["k"]), pct(ex["rate"]), ci(ex),
             num(h["mean_leading_matched"], 2) + (f" / {h['cont_len']}" if h.get("cont_len") else "")]
        if any_pythia:
            r.append(num(h["pythia_score_mean"]))
        if any_auc:
            aucs = h["membership_roc_auc"] or {}
            r.append("<br>".join(f"{esc(score_label(k))} {v:.3f}" for k, v in aucs.items()) or "–")
        rows.append(r)
    head = ["model", "sequences", "extractable", "rate", "95% CI", "mean leading tokens matched"]
    head += ["Pythia score"] if any_pythia else []
    head += ["membership ROC-AUC"] if any_auc else []
    sections = [f"<p>The first audit, <b>{esc(first)}</b>, is the baseline: ratios divide each other model's rate by "
                "its rate.</p>",
                "<h2>Headline numbers</h2>" + table(head, rows, num_cols=(1, 2, 3, 4, 5, 6)) +
                "<p class=\"small\">Extractable: greedy decoding from the prompt reproduces the whole continuation. "
                "Intervals are Wilson 95% intervals. Models audited on different samples are comparable as rates, "
                "not sequence by sequence.</p>"]
    sections[:0] = [f'<p class="note"><b>Settings differ between these audits: {esc(d["setting"])}</b> ('
                    + "; ".join(f"{esc(lab)}: {esc('none' if v is None else v)}" for lab, v in d["values"].items())
                    + f"): {esc(d['meaning'])}.</p>" for d in differences]  # above all else

    if by_dup:
        series = [(lab, [{"group": r["bucket"], **r["models"][lab]} for r in by_dup]) for lab in labels]
        png = plots.rate_points(series, "occurrences of the audited token window in the corpus (bucket)",
                                [r["bucket"] for r in by_dup])
        sections.append(
            "<h2>Extractable rate by occurrences</h2>"
            + figure_html(png, "extractable rate by occurrences, all models", (
                "Extractable rate per occurrence bucket, one series per model (markers slightly offset so the "
                "error bars do not overlap): occurrences = how many times the audited prompt + continuation token "
                "window occurs in the corpus, at any offset of any document (Carlini et al. 2022; Kandpal et al. "
                "2022). Rates count distinct sequences. Buckets double in width (1, 2–3, 4–7, …), so the axis is "
                "logarithmic in the count. The count is that of the audited corpus; a model trained on deduplicated data saw at most "
                "one copy of most of these documents, so its curve shows how much memorization the removed copies "
                "were responsible for."))
            + _rate_table(by_dup, "bucket", "occurrences", labels)
            + f"<p class=\"small\">Ratios: each model's rate divided by <b>{esc(first)}</b>'s in the same bucket "
              "(×0.10 = a tenth of the rate; – where a rate is undefined or the first is 0).</p>")

    if mem_by_dup:
        tab_rows = [["all (pooled)" if r["bucket"] == "all" else esc(r["bucket"])]
                    + [_auc_cell(r["models"][lab]) for lab in labels] for r in mem_by_dup]
        sections.append(
            "<h2>Membership inference by occurrences</h2>"
            "<p>Membership ROC-AUC of each score, pooled over all sequences and per occurrence bucket (Kandpal et al. "
            "2022 find membership inference near chance on sequences that occur once and far better on duplicated "
            "ones). Members are sequences whose document, or an exact or near duplicate of it, was trained on. "
            "Higher score = more likely a member; 0.5 is chance. n/a: the bucket holds members only or non-members "
            "only, the model has no sequence in it, or the audit has no membership labels.</p>"
            + table(["occurrences"] + [esc(lab) for lab in labels], tab_rows, num_cols=tuple(range(1, len(labels) + 1))))

    if any(m["n"] for r in by_status for m in r["models"].values()):
        sections.append("<h2>Extractable rate by dedup status</h2><p>Sequences grouped by what deduplication did with "
                        "their source document.</p>"
                        + _rate_table(by_status, "status", "dedup status", labels,
                                      lambda g: esc(STATUS_TEXT.get(g, g))))

    if acct is not None:
        fm, rb = acct["first_model"], acct["removed_by_reason"]
        rows = [["documents in the corpus", integer(acct["documents_total"]), ""],
                ["kept", integer(acct["documents_kept"]), pct(acct["documents_kept_fraction"])]] + [
            [f"removed as {esc(reason)} duplicates", integer(rb[reason]),
             pct(rb[reason] / acct["documents_total"] if acct["documents_total"] else None)] for reason in sorted(rb)]
        reasons = ", ".join(f"{integer(v)} {esc(k)}" for k, v in sorted(fm["extractable_from_removed_by_reason"].items()))
        sections.append(
            "<h2>What deduplication removed</h2>"
            f'<p class="meta">Dedup output: <code>{esc(acct["dedup_dir"])}</code></p>'
            + table(["", "documents", "share"], rows, num_cols=(1, 2))
            + '<div class="cards">'
            + card(f"memorized by {first}", integer(fm["extractable"]),
                   f"extractable, of {integer(fm['sequences'])} distinct sequences")
            + card("…from documents dedup removed", integer(fm["extractable_from_removed_documents"]),
                    (f"{pct(fm['extractable_from_removed_fraction'])} of them" if fm["extractable"] else "none memorized")
                    + (f" ({reasons})" if reasons else ""))
            + card(f"{first}'s sequences from removed documents", integer(fm["sequences_from_removed_documents"]),
                    f"of {integer(fm['sequences'])} distinct sequences audited")
            + "</div>"
            + f"<p>Of the {integer(fm['extractable'])} sequences <b>{esc(first)}</b> memorized, "
              f"{integer(fm['extractable_from_removed_documents'])} came from documents that deduplication removed (matched "
              "on shard and row): memorization that a model trained on the deduplicated corpus cannot get from those "
              "copies.</p>")

    if exposure:
        sections.append(_exposure_section(exposure, labels))

    subtitle = [f"{len(audits)} audits: " + ", ".join(f"<b>{esc(lab)}</b> (<code>{esc(a.path)}</code>)"
                                                      for lab, a in zip(labels, audits))]
    write_page(out, title, subtitle, "\n".join(sections))
    io.write_json_atomic(report_json(out, comparison=True), data)
    return out


def _exposure_section(exposure: Mapping[str, dict], labels: Sequence[str]) -> str:
    """Canary exposure (bits) by planted copies, a column per model (the labels' first, in order)."""
    def cell(r: dict | None) -> str:
        return (f"{num(r.get('mean_exposure'), 2)} <span class=\"small\">({num(r.get('min_exposure'), 1)} – "
                f"{num(r.get('max_exposure'), 1)}; {integer(r.get('canaries'))} canaries)</span>" if r else "–")

    models = [m for m in labels if m in exposure] + [m for m in exposure if m not in labels]
    ok = [m for m in models if isinstance(exposure[m], dict) and exposure[m].get("by_copies")]
    failed = [m for m in models if m not in ok]
    by = {m: {int(r["copies"]): r for r in exposure[m]["by_copies"]} for m in ok}
    copies = sorted({c for m in ok for c in by[m]})
    spaces = sorted({(float(exposure[m].get("log2_space", float("nan"))), exposure[m].get("samples"),
                      exposure[m].get("words")) for m in ok}, key=str)
    space_text = "; ".join(f"log2|R| = {num(ls, 1)} bits (the first {integer(w)} words of each canary), estimated from "
                           f"{integer(n)} sampled candidates" for ls, n, w in spaces)
    text = ("<h2>Canary exposure by planted copies</h2>"
            "<p>Exposure (Carlini et al. 2019, <i>The Secret Sharer</i>) of the random canaries planted in the corpus: "
            "exposure = log2|R| &minus; log2 rank of the canary among all candidates of its random space R, ranked by "
            "the model's likelihood; in bits. A canary the model has not memorized ranks mid-space (exposure about 1); "
            "one it prefers to every other candidate has the maximum, log2|R|. Where |R| is too large to enumerate the "
            "rank is estimated from sampled candidates, extrapolating a fitted distribution into the tail, as Carlini "
            "et al. do. Exposure rises with the number of copies long before greedy decoding extracts the canary "
            f"whole, so it shows memorization that the extractable rate misses. {esc(space_text)}.</p>")
    if ok:
        text += table(["planted copies"] + [f"{esc(m)}: mean exposure (min – max)" for m in ok],
                      [[integer(c)] + [cell(by[m].get(c)) for m in ok] for c in copies],
                      num_cols=tuple(range(len(ok) + 1)))
    if failed:
        text += "<p class=\"small\">No exposure for " + ", ".join(
            f"<b>{esc(m)}</b>" + (f" ({esc(exposure[m].get('error'))})" if isinstance(exposure[m], dict)
                                  and exposure[m].get("error") else "") for m in failed) + ".</p>"
    return text
