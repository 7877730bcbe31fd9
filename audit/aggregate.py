"""Every rate and summary of an audit, computed once from its per-sequence table: :func:`summarise` gives
``summary.json``'s sections for the audit (:mod:`audit.run`) and the report pages alike; the comparison page's
numbers are computed here too.

Rates are ``{"n", "k", "rate", "lower", "upper"}`` (Wilson 95% intervals, fractions) over DISTINCT sequences (equal
prompt + truth count once, once per group in a breakdown: Carlini et al. 2022 sample distinct sequences); a table
without ``prompt``/``truth`` counts rows.

>>> import pyarrow as pa
>>> t = pa.table({"extractable": [True, False, True, True], "leading_matched": [32, 3, 32, 32],
...               "duplicate_bucket": ["4-7", "1", "4-7", "2-3"]})
>>> s = summarise(t, n_boot=None, seed=0)
>>> s["extractable"]["k"], s["extractable"]["rate"], s["mean_leading_matched"]
(3, 0.75, 24.75)
>>> [(r["group"], r["k"], r["n"]) for r in s["extractable_by_duplicates"]]
[('1', 0, 1), ('2-3', 1, 1), ('4-7', 2, 2)]
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence

import numpy as np
import pyarrow as pa

from . import metrics, stats
from .layout import SCORES, STATUS_ORDER

#: summary.json sections :func:`summarise` computes, in the order the audit writes them.
SECTIONS = ("extractable", "mean_leading_matched", "pythia_score", "extractable_by_duplicates",
            "extractable_by_dedup_status", "membership", "membership_by_duplicates")
RATIO_DEFINITION = "rate(model) / rate(first model); null when either rate is undefined or the first is 0"
RATES_COUNT = "distinct sequences (equal prompt + truth tokens count once, once per group in a breakdown)"


def rate(flags) -> dict:
    """The rate of a boolean flag with its Wilson 95% interval.

    >>> rate([True, False, False, False])["rate"], rate([])["rate"]
    (0.25, None)
    """
    flags = np.asarray(flags, dtype=bool)
    k, n = int(flags.sum()), int(flags.size)
    lo, hi = stats.wilson_interval(k, n)
    return {"n": n, "k": k, "rate": k / n if n else None, "lower": lo, "upper": hi}


def _column(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    """A column holding at least one value, else None."""
    if name not in table.column_names:
        return None
    col = table.column(name)
    return col if col.null_count < len(col) else None


def _flags(table: pa.Table, name: str) -> np.ndarray:
    """A boolean column as bool (n,), nulls as False."""
    return np.array([bool(v) for v in table.column(name).to_pylist()], dtype=bool)


def token_ids(x) -> tuple[int, ...]:
    """A token id sequence as a tuple of ints; () for None (or pandas' NaN)."""
    return () if x is None or (isinstance(x, float) and math.isnan(x)) else tuple(int(t) for t in x)


def sequence_keys(prompts, truths) -> list:
    """A hashable key per sequence, equal for equal prompt + truth tokens (None or NaN: none).

    >>> sequence_keys([[1, 2], [1, 2], None], [[3], [3], float("nan")])
    [((1, 2), (3,)), ((1, 2), (3,)), ((), ())]
    """
    return [(token_ids(p), token_ids(t)) for p, t in zip(prompts, truths)]


def _sequence_keys(table: pa.Table) -> list | None:
    """:func:`sequence_keys` of a table's rows, None without ``prompt`` and ``truth`` columns."""
    if {"prompt", "truth"} <= set(table.column_names):
        return sequence_keys(table.column("prompt").to_pylist(), table.column("truth").to_pylist())
    return None


def _first_rows(keys: list | None, groups: list | None, n: int) -> np.ndarray:
    """bool (n,): the first row of each distinct (sequence, group); every row without keys."""
    if keys is None:
        return np.ones(n, dtype=bool)
    first: dict = {}  # (sequence, group) -> its first row
    pairs = zip(keys, [None] * len(keys) if groups is None else groups)
    return np.array([first.setdefault(kk, i) == i for i, kk in enumerate(pairs)], dtype=bool)


def distinct_rows(table: pa.Table) -> np.ndarray:
    """bool (n,): the first row of each distinct sequence; every row without ``prompt``/``truth``."""
    return _first_rows(_sequence_keys(table), None, table.num_rows)


def _group_rates(table: pa.Table, column: str, order: Sequence[str] | None) -> list[dict] | None:
    """Extractable rate per value of ``column`` where set, distinct per group; None if never set."""
    col = _column(table, column)
    if col is None:
        return None
    values = col.to_pylist()
    first = _first_rows(_sequence_keys(table), [None if v is None else str(v) for v in values], table.num_rows)
    keep = np.array([v is not None for v in values], dtype=bool) & first
    groups = [str(v) for v, k in zip(values, keep) if k]
    if order is not None:
        order = list(order) + sorted(set(groups) - set(order))
    return stats.rate_by_group(_flags(table, "extractable")[keep], groups, order)


def _membership_by_bucket(table: pa.Table, labelled) -> list[dict] | None:
    """:func:`summarise`'s ``membership_by_duplicates``; None without buckets or labelled scores."""
    col = _column(table, "duplicate_bucket")
    if col is None or labelled is None:
        return None
    y, scores = labelled
    b = np.array([str(v) for v in col.to_pylist()], dtype=object)
    out = []
    for g in sorted(set(b.tolist()), key=stats.bucket_order):
        m = b == g
        n_pos, n_neg = int(y[m].sum()), int((~y[m]).sum())
        out.append({"group": g, "n_members": n_pos, "n_non_members": n_neg, "roc_auc": {
            name: stats.roc_auc(s[m], y[m]) if n_pos and n_neg else None for name, s in scores.items()}})
    return out


def score_columns(table_columns: Sequence[str], complete: Collection[str]) -> list[str]:
    """The ``score_*`` columns set in every row (``complete``): :data:`audit.layout.SCORES` first, in order.

    >>> score_columns(["loss", "score_zlib", "score_x", "score_loss"], {"score_zlib", "score_x", "score_loss"})
    ['score_loss', 'score_zlib', 'score_x']
    """
    cols = [c for c in table_columns if c.startswith("score_") and c in complete]
    known = [f"score_{s}" for s in SCORES if f"score_{s}" in cols]
    return known + [c for c in cols if c not in known]


def membership(scores: dict[str, np.ndarray], member: np.ndarray, n_boot: int | None, seed: int,
               keys: list | None = None) -> dict:
    """ROC-AUC (bootstrap interval unless ``n_boot`` is None), PR-AUC and TPR at 1% and 0.1% FPR (null
    unless :func:`audit.stats.resolvable`) of each score against labels of both classes. README's "Membership scores":
    MIMIR, Duan et al. 2024; LiRA; PR-AUC with MEMBERS as the positive class (MIMIR's: non-members). ``keys``
    (:func:`sequence_keys`): the bootstrap resamples distinct sequences with their copies (None: rows)."""
    y = np.asarray(member, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    out = {}
    for name, s in scores.items():
        boot = None if n_boot is None else stats.bootstrap_auc(s, y, n_boot=n_boot, seed=seed, clusters=keys)
        out[name] = {"roc_auc": stats.roc_auc(s, y), "roc_auc_boot": boot, "pr_auc": stats.pr_auc(s, y)}
        for key, x in (("1pct", 0.01), ("0.1pct", 0.001)):  # TPR at FPR below 1% and 0.1%
            out[name][f"tpr_at_{key}_fpr"] = stats.tpr_at_fpr(s, y, x) if stats.resolvable(n_neg, x) else None
    return {"members": n_pos, "non_members": n_neg, "n_members": n_pos, "n_non_members": n_neg, "scores": out,
            "convention": "higher score = more likely a member", "tpr_at_fpr_rule": "largest TPR with FPR < x "
            "(strict); null when n_non_members < 1/x", "pr_auc_positive_class": "members",
            "zlib_level": metrics.ZLIB_LEVEL}


def _labelled_scores(table: pa.Table) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Complete labels of both classes and the complete scores by name; None when either is missing."""
    if "member" not in table.column_names or table.column("member").null_count:
        return None
    y = table.column("member").to_numpy(zero_copy_only=False).astype(bool)
    if not 0 < int(y.sum()) < y.size:
        return None
    cols = score_columns(table.column_names, {c for c in table.column_names if table.column(c).null_count == 0})
    scores = {c[len("score_"):]: table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in cols}
    return (y, scores) if scores else None


def summarise(table: pa.Table, n_boot: int | None, seed: int, sections: Collection[str] = SECTIONS) -> dict:
    """``summary.json``'s per-sequence sections (those in ``sections`` that apply, in :data:`SECTIONS` order)
    from per_sequence.parquet; ``n_boot``: bootstrap resamples of the ROC-AUC interval (None: null).

    ``extractable`` (a rate), ``mean_leading_matched``; ``pythia_score`` ``{"mean", "memorized": rate of score 1}``
    with generation; ``extractable_by_duplicates`` / ``_by_dedup_status`` (:func:`audit.stats.rate_by_group` rows)
    with buckets / a dedup output; with complete labels of both classes ``membership`` (:func:`membership`:
    ``{"members", "non_members", "scores": {name: {"roc_auc", "roc_auc_boot", "pr_auc", "tpr_at_1pct_fpr",
    "tpr_at_0.1pct_fpr"}}, "convention", "tpr_at_fpr_rule"}``) and ``membership_by_duplicates`` ``[{"group",
    "n_members", "n_non_members", "roc_auc": {name: float | null}}]`` (null where a bucket holds one class; Kandpal et
    al. 2022: near chance on singletons).
    """
    out: dict = {}
    n = table.num_rows
    keys = _sequence_keys(table)
    first = _first_rows(keys, None, n)
    if "extractable" in sections:
        out["rates_count"] = RATES_COUNT if keys is not None else "rows"
        out["extractable"] = rate(_flags(table, "extractable")[first])
    if "mean_leading_matched" in sections:
        lead = table.column("leading_matched").to_numpy(zero_copy_only=False)
        out["mean_leading_matched"] = float(np.mean(lead[first])) if n else None
    if "pythia_score" in sections and _column(table, "pythia_score") is not None:
        py = table.column("pythia_score").to_numpy(zero_copy_only=False).astype(np.float64)[first]
        out["pythia_score"] = {"mean": float(np.mean(py)), "memorized": rate(py == 1.0)}
    labelled = _labelled_scores(table) if {"membership", "membership_by_duplicates"} & set(sections) else None
    for key, compute in (
        ("extractable_by_duplicates", lambda: _group_rates(table, "duplicate_bucket", None)),
        ("extractable_by_dedup_status", lambda: _group_rates(table, "dedup_status", STATUS_ORDER)),
        ("membership", lambda: labelled and membership(labelled[1], labelled[0], n_boot, seed, keys)),
        ("membership_by_duplicates", lambda: _membership_by_bucket(table, labelled)),
    ):
        if key in sections and (value := compute()):
            out[key] = value
    return out


def dedup_retention(dedup_manifest: dict, tokens: dict | None = None) -> dict:
    """summary.json's ``retention``: documents dedup kept (from its manifest), and tokens
    (``{"tokens_total", "tokens_kept", "tokens_kept_fraction"}``) when counted."""
    t = dedup_manifest["totals"]
    return {"documents_total": t["rows"], "documents_kept": t["kept"],
            "documents_kept_fraction": t["kept"] / max(t["rows"], 1), "removed": t["removed"], **(tokens or {})}


def compare_groups(per_model: dict[str, list[dict]], key: str, order: Sequence[str] | None) -> list[dict]:
    """Rate rows of several models (label -> rows, first model first) side by side: per group,
    ``{key: group, "models": {label: rate}, "ratio_to_first": {label: rate / first's, None when undefined}}``, a missing
    group as ``{"n": 0, "k": 0, "rate": None, "lower": 0.0, "upper": 1.0}``; ``order``: groups first, None: buckets.

    >>> rows = compare_groups({"raw": [{"group": "1", "n": 4, "k": 2, "rate": 0.5, "lower": 0.1, "upper": 0.9}],
    ...                        "dedup": [{"group": "1", "n": 4, "k": 1, "rate": 0.25, "lower": 0.0, "upper": 0.7}]},
    ...                       "bucket", None)
    >>> rows[0]["bucket"], rows[0]["ratio_to_first"]
    ('1', {'dedup': 0.5})
    """
    labels = list(per_model)
    per = {lab: {r["group"]: r for r in rows} for lab, rows in per_model.items()}
    groups = list(dict.fromkeys(g for rows in per.values() for g in rows))  # in order of first appearance
    groups = (sorted(groups, key=stats.bucket_order) if order is None
              else [s for s in order if s in groups] + [g for g in groups if g not in order])
    out = []
    for g in groups:
        models = {lab: {k: r[k] for k in ("n", "k", "rate", "lower", "upper")} if (r := per[lab].get(g)) and r["n"]
                  else {"n": 0, "k": 0, "rate": None, "lower": 0.0, "upper": 1.0} for lab in labels}
        base = models[labels[0]]["rate"]
        out.append({key: g, "models": models, "ratio_to_first": {
            lab: models[lab]["rate"] / base if (models[lab]["rate"] is not None and base) else None
            for lab in labels[1:]}})
    return out


def removed_accounting(dedup_manifest: dict, reason_of: dict[tuple[str, int], str], shard: list, row: list,
                       extractable: np.ndarray, label: str, keys: list | None = None) -> dict:
    """comparison.json's ``dedup``: what dedup removed (its manifest's ``totals``) and how much of
    one model's memorization came from it. ``reason_of``: (shard, row) -> reason of every removed row; ``shard``,
    ``row``, ``extractable``: per sequence row; ``keys`` (:func:`sequence_keys`): count distinct sequences (None: rows).
    A sequence is from removed documents when every located row of it is (a copy from a kept document is still in the
    deduplicated corpus), under its first located row's reason; without a located row (row -1) those counts are None."""
    tot = dedup_manifest.get("totals") or {}
    removed_by = dict(tot.get("removed") or {})
    total, kept = tot.get("rows"), tot.get("kept")
    ex = np.asarray(extractable, dtype=bool)
    keys = list(range(ex.size)) if keys is None else keys
    if len(shard) == 0:  # no shard and row columns: every row unlocated
        shard = row = [None] * ex.size
    flag_of: dict = {}  # sequence -> extractable (of its first row)
    located: set = set()
    in_kept: set = set()  # sequences with a located row of a kept document
    reason_of_seq: dict = {}  # sequence -> reason of its first row from a removed document
    for key, s, r, flag in zip(keys, shard, row, ex):
        flag_of.setdefault(key, bool(flag))
        if s is None or r is None or (isinstance(r, float) and math.isnan(r)) or r < 0:  # -1: no row known
            continue
        located.add(key)
        if (reason := reason_of.get((str(s), int(r)))) is None:
            in_kept.add(key)
        else:
            reason_of_seq.setdefault(key, reason)
    reason_of_seq = {key: reason for key, reason in reason_of_seq.items() if key not in in_kept}
    counts = dict(Counter(reason for key, reason in reason_of_seq.items() if flag_of[key]))
    n_from_removed = sum(counts.values())
    k = sum(flag_of.values())
    return {"documents_total": total, "documents_kept": kept,
            "documents_kept_fraction": kept / total if total else None,
            "documents_removed": int(sum(removed_by.values())), "removed_by_reason": removed_by,
            "first_model": {
                "label": label, "sequences": len(flag_of), "sequences_located": len(located),
                "sequences_from_removed_documents": len(reason_of_seq) if located else None,
                "extractable": k, "extractable_from_removed_documents": n_from_removed if located else None,
                "extractable_from_removed_fraction": n_from_removed / k if k and located else None,
                "extractable_from_removed_by_reason": counts}}


__all__ = ["SECTIONS", "rate", "distinct_rows", "token_ids", "sequence_keys", "summarise", "membership",
           "score_columns", "dedup_retention", "compare_groups", "removed_accounting"]
