"""Forecasting memorization: does "memorized by a first model" predict "memorized by a second"?

Biderman et al. 2023 ("Emergent and Predictable Memorization in Large Language Models"): the
first model (a smaller one, or an earlier checkpoint) is the PREDICTOR, the second the TRUTH::

    TP = memorized by both, FP = first only, FN = second only, TN = neither
    precision = TP / (TP + FP)   of the sequences the FIRST memorized, the fraction the second did
    recall    = TP / (TP + FN)   of the sequences the SECOND memorized, the fraction the first did
    predicted_positive_rate = (TP + FP) / n,  base_rate = (TP + FN) / n (a random predictor's precision)

Pythia's analysis code calls sklearn's ``confusion_matrix(prediction, truth)`` (sklearn's order is
``(truth, prediction)``), so its "TPR" is really precision; here both ratios are written out from
the four counts. Swapping ``first`` and ``second`` swaps precision and recall. The paper's
finding: high precision, low recall.

Only sequences in BOTH tables are compared and, with ``seen_first`` / ``seen_second``, only those
both models had been trained on. Copies of one sequence (equal prompt + truth tokens) count once
(:data:`audit.aggregate.RATES_COUNT`). Intervals are Wilson (:func:`audit.stats.wilson_interval`);
an undefined ratio is ``None`` with ``*_n`` 0 and interval (0.0, 1.0).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dedup import io
from dedup.shards import InputError, id_strings

from .aggregate import RATES_COUNT, sequence_keys
from .layout import (CHECKPOINT_DIR, ORDER_FILE, PER_SEQUENCE, TRAIN_CONFIG, checkpoint_step, read_instances,
                     read_per_sequence, refuse_damaged, refuse_other_bos, refuse_unfinished, training_run,
                     training_run_digest)
from .sampling import document_name
from .stats import as_bools, wilson_interval

__all__ = ["forecast", "forecast_audits"]


def _bool_column(df: pd.DataFrame, column: str, table: str) -> np.ndarray:
    """A boolean (n,) array from a bool or 0/1 column without missing values, else ValueError."""
    if column not in df.columns:
        raise ValueError(f"{table} table has no column {column!r} (columns: {list(df.columns)})")
    if df[column].isna().any():
        raise ValueError(f"{table} table column {column!r} has missing values")
    a = df[column].to_numpy()
    if a.dtype == object and all(isinstance(v, (bool, np.bool_)) for v in a):
        a = a.astype(bool)
    return as_bools(a, f"{table} table column {column!r}", "boolean or 0/1")


def _keyed(df: pd.DataFrame, keys: list[str], flag: str, seen: str | None, table: str,
           distinct: str | None = None) -> pd.DataFrame:
    """``df`` reduced to key columns (+ ``distinct``) + flag, filtered to seen rows."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{table} must be a pandas DataFrame, got {type(df).__name__}")
    if missing := [k for k in keys if k not in df.columns]:
        raise ValueError(f"{table} table has no key column {missing[0]!r} (columns: {list(df.columns)})")
    if df[keys].isna().any().any():
        raise ValueError(f"{table} table has missing keys")
    if df.duplicated(subset=keys).any():
        raise ValueError(f"{table} table has duplicate keys in {keys}")
    out = df[keys + ([distinct] if distinct else [])].copy()
    out["_flag"] = _bool_column(df, flag, table)
    if seen is not None:
        out = out[_bool_column(df, seen, table)]
    return out


def forecast(first: pd.DataFrame, second: pd.DataFrame, key: str | Sequence[str] = "seq_key", flag: str = "extractable",
             seen_first: str | None = None, seen_second: str | None = None, *, distinct: str | None = None,
             confidence: float = 0.95) -> dict:
    """Precision and recall of "memorized by ``first``" as a predictor of "memorized by
    ``second``". ``key``: one or more columns, unique and non-missing within each table;
    ``seen_first`` / ``seen_second``: boolean columns, the model was trained on the sequence;
    ``flag``: the boolean (or 0/1) memorized column; ``distinct``: a column of the first table
    whose equal values are one sequence (the first matched row of each counts).

    Returns a flat dict: ``n`` and the counts ``tp``, ``fp``, ``fn``, ``tn`` (over distinct
    sequences with ``distinct``); ``precision`` and ``recall`` (float or None), each with
    ``_lower``, ``_upper`` and ``_n`` (denominator); ``predicted_positive_rate`` and
    ``base_rate`` with ``_lower``, ``_upper``; ``n_first``, ``n_second`` (input rows),
    ``n_seen_first``, ``n_seen_second`` (after the ``seen_*`` filters), ``n_unmatched_first``,
    ``n_unmatched_second`` (seen rows without a partner). TypeError: an input is not a
    DataFrame; ValueError: a missing column, duplicated or missing keys, a flag/seen column not
    boolean or with missing values.

    Example:
        >>> import pandas as pd
        >>> a = pd.DataFrame({"seq_key": [1, 2, 3, 4], "extractable": [True, True, False, False]})
        >>> b = pd.DataFrame({"seq_key": [1, 2, 3, 4], "extractable": [True, False, True, False]})
        >>> r = forecast(a, b)
        >>> (r["tp"], r["fp"], r["fn"], r["tn"], r["precision"], r["recall"])
        (1, 1, 1, 1, 0.5, 0.5)
    """
    if not (keys := [key] if isinstance(key, str) else list(key)):
        raise ValueError("key must name at least one column")
    a = _keyed(first, keys, flag, seen_first, "first", distinct)
    b = _keyed(second, keys, flag, seen_second, "second")
    merged = a.merge(b, on=keys, how="inner", suffixes=("_first", "_second"))
    n_matched = len(merged)
    if distinct:
        merged = merged.drop_duplicates(subset=[distinct])
    pred, truth = merged["_flag_first"].to_numpy(dtype=bool), merged["_flag_second"].to_numpy(dtype=bool)
    n = int(pred.shape[0])
    tp, fp, fn, tn = (int(np.sum(p & t)) for p, t in ((pred, truth), (pred, ~truth), (~pred, truth), (~pred, ~truth)))

    out: dict = {"n": n, "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    for name, k, d in (("precision", tp, tp + fp), ("recall", tp, tp + fn), ("predicted_positive_rate", tp + fp, n),
                       ("base_rate", tp + fn, n)):
        out[name] = k / d if d else None
        out[f"{name}_lower"], out[f"{name}_upper"] = wilson_interval(k, d, confidence)
        if name in ("precision", "recall"):
            out[f"{name}_n"] = d
    out.update(n_first=int(len(first)), n_second=int(len(second)), n_seen_first=len(a), n_seen_second=len(b),
               n_unmatched_first=len(a) - n_matched, n_unmatched_second=len(b) - n_matched)
    return out


def _training_step(audit_dir: Path) -> tuple[int | None, Path | None]:
    """(step, order.parquet) of the model an audit audited, when it is a checkpoint
    (``RUN/checkpoints/step-NNNNNNN``) or the final model (``RUN/model``) of a ``memdedup
    train`` run that holds ``order.parquet``; (None, None) otherwise."""
    manifest = io.read_manifest(audit_dir)  # (a finished audit's: read_per_sequence checked)
    refuse_damaged(io.manifest_path(audit_dir), manifest, {"model": "", "training_run": {"sha256": ""}})
    run = training_run(manifest["model"]) if manifest.get("model") else None
    if run is None:
        return None, None
    recorded = (manifest.get("training_run") or {}).get("sha256")  # None: an audit older than the record
    if recorded is not None and recorded != training_run_digest(run):
        raise InputError(audit_dir, f"audits a model of {run} as it was before it was trained again (its "
                                    f"{TRAIN_CONFIG} differs: another config or corpus); audit the new run's "
                                    "model again")
    model = Path(manifest["model"])
    if model.parent.name == CHECKPOINT_DIR:
        try:
            return checkpoint_step(model), run / ORDER_FILE
        except ValueError:
            return None, None
    return int(pc.max(read_instances(run / ORDER_FILE, ("step",))["step"]).as_py()), run / ORDER_FILE


def _order_instances(order: Path) -> tuple[pd.DataFrame, bool]:
    """One row per instance of a run's order.parquet (document_id, token_offset, n_tokens,
    first_step), and whether they are instances (else one pseudo-instance per document holding
    all its tokens). InputError naming the file: no document_id or first_step."""
    names = set(pq.read_schema(order).names)
    if missing := sorted({"document_id", "first_step"} - names):
        raise InputError(order, f"no column {', '.join(map(repr, missing))}: the forecast needs when each document "
                                "was trained")
    need = ["document_id", "token_offset", "n_tokens", "first_step"] if {"token_offset", "n_tokens"} <= names \
        else ["document_id", "first_step"]
    table = pq.read_table(order, columns=need)  # ids as the corpus's are read (a hand-made order's 7 -> '7')
    table = table.set_column(0, "document_id", id_strings(table.column("document_id"), order, "document_id"))
    if len(need) == 4:
        return table.to_pandas().groupby(need[:3], as_index=False)["first_step"].min(), True
    docs = table.to_pandas().groupby("document_id", as_index=False).min()
    return docs.assign(token_offset=0, n_tokens=np.iinfo(np.int64).max // 2), False


def _trained_by(t: pd.DataFrame, instances: pd.DataFrame, step: int) -> np.ndarray:
    """bool (rows of ``t``): every token of the sequence (``token_offset`` on, ``len(prompt) +
    len(truth)`` tokens; 1 without those columns) lies in an instance of its document
    (``doc_id``) first trained at or before ``step``. Instances cut a document's tokens apart, so
    the tokens are covered when the overlaps of such instances add up to the sequence's length."""
    length = (t["prompt"].map(len) + t["truth"].map(len)).to_numpy() if {"prompt", "truth"} <= set(t.columns) else 1
    start = t["token_offset"].to_numpy(dtype=np.int64)
    seq = pd.DataFrame({"document_id": t["doc_id"].astype(str).to_numpy(), "start": start, "end": start + length,
                        "i": np.arange(len(t))})
    m = seq.merge(instances[instances["first_step"] <= step], on="document_id")
    overlap = (np.minimum(m["end"], m["token_offset"] + m["n_tokens"]) - np.maximum(m["start"], m["token_offset"]))
    covered = overlap.clip(lower=0).groupby(m["i"]).sum().reindex(range(len(t)), fill_value=0).to_numpy()
    return covered >= seq["end"].to_numpy() - start


def forecast_audits(first: str | os.PathLike, second: str | os.PathLike) -> dict:
    """:func:`forecast` from two audit output directories (``memdedup forecast``): the first
    audit (an earlier checkpoint or a smaller model) predicts the second's extractable set.

    Sequences are matched on (``doc_id``, ``token_offset``; a null ``doc_id`` is ``shard:row``).
    "Seen": when both models are checkpoints (or the final model) of one ``memdedup train`` run,
    iff each token lies in an instance of its document first trained at or before the EARLIER
    model's step (:func:`_trained_by`, from ``order.parquet``; an order without
    ``token_offset``/``n_tokens``: the document's first step); otherwise iff its ``member``
    label says so (unknown counts as seen). The rule is returned as ``seen``. ValueError: not an audit output, or
    not a finished one (no manifest.json: :func:`audit.layout.finished_audit`). InputError: the same
    audit twice, two checkpoints of one run in the wrong order (the later first) or of one step, other ``--bos``
    policies (:func:`refuse_other_bos`), or no sequence of both audits that both models have seen (nothing to
    forecast)."""
    dirs, keys = (Path(first), Path(second)), ["doc_id", "token_offset"]
    tables = []
    for d in dirs:
        refuse_unfinished(d, "audit")
        f = d / PER_SEQUENCE  # sequences are matched on doc_id and token_offset and compared on extractable
        table = read_per_sequence(d, ("doc_id", "token_offset", "extractable"))
        tables.append(t := table.to_pandas())
        t["doc_id"] = id_strings(table["doc_id"], f, "doc_id").to_pylist()  # as corpus ids are read (7 -> '7')
        try:
            _bool_column(t, "extractable", "its")
        except ValueError:
            raise InputError(f, "column 'extractable' must be boolean or 0/1, without missing values") from None
        if {"doc_id", "shard", "row"} <= set(t.columns):  # no corpus ids: 'shard:row', as memdedup train names it
            t["doc_id"] = [document_name(*d) for d in zip(*(table[c].to_pylist() for c in ("doc_id", "shard", "row")))]
        if t[keys].isna().any().any():
            raise InputError(d, "sequences without a document (null doc_id or token_offset: an audit of --sequences "
                                "given by tokens) cannot be matched with another audit's")
        if (twice := t.duplicated(keys)).any():
            doc, off = t.loc[twice.idxmax(), keys]  # else the merge pairs them crosswise
            raise InputError(d, f"two of its sequences are at document {doc!r}, token offset {off} (an id on two "
                                "corpus rows, or a sequence given twice): sequences are matched on (doc_id, "
                                "token_offset), so these cannot be")
    if dirs[0].resolve() == dirs[1].resolve():
        raise InputError(dirs[1], "is the first audit again: a forecast predicts a later model's memorization from "
                                  "the audit of an earlier checkpoint")
    refuse_other_bos(dirs)
    distinct = None
    if all({"prompt", "truth"} <= set(t.columns) for t in tables):  # the same (doc_id, token_offset), other tokens?
        for t in tables:  # a sequence's tokens, the key of distinct sequences (aggregate.RATES_COUNT)
            t["_sequence"] = [repr(k) for k in sequence_keys(t["prompt"], t["truth"])]
        both = tables[0][keys + ["_sequence"]].merge(tables[1][keys + ["_sequence"]], on=keys)
        distinct = "_sequence"
        if (both["_sequence_x"] != both["_sequence_y"]).any():
            raise InputError(dirs[1], f"its sequences hold other tokens than {dirs[0]}'s at the same documents and "
                                      "offsets (other prompt/cont lengths or tokenizer): not comparable")
    (step_a, order_a), (step_b, order_b) = (_training_step(d) for d in dirs)
    if step_a is not None and step_b is not None and order_a.resolve() == order_b.resolve():
        if step_a >= step_b:
            when = f"after step {step_b} of {dirs[1]}" if step_a > step_b else f"the step {dirs[1]} audits too"
            raise InputError(dirs[0], f"audits the model at step {step_a}, {when}: the first audit is of the earlier "
                                      "checkpoint, which predicts the later")
        earlier = step_a
        order, by_instance = _order_instances(order_a)
        for t in tables:
            t["seen"] = _trained_by(t, order, earlier)
        rule = (f"every token trained at or before step {earlier} (the earlier checkpoint): the instances holding the "
                f"sequence, from {order_a}" if by_instance else f"trained at or before step {earlier} (the earlier "
                f"checkpoint): the document's first step, from {order_a} (it has no token_offset and n_tokens)")
    else:
        for t in tables:
            t["seen"] = t["member"].fillna(True).astype(bool) if "member" in t.columns else True
        rule = "member label (no common training run with order.parquet); unknown labels count as seen"
    out = forecast(tables[0], tables[1], key=keys, flag="extractable",
                   seen_first="seen", seen_second="seen", distinct=distinct)
    if out["n"] == 0:  # no precision or recall: nothing to forecast
        if not (shared := len(tables[0][keys].merge(tables[1][keys]))):
            raise InputError(dirs[1], f"none of its sequences is at a document and token offset of {dirs[0]}'s: "
                                      "nothing to forecast; audit both models on the same --sequences, or on the same "
                                      "corpus with the same --seed and sampling options")
        raise InputError(dirs[1], f"of the {shared} sequences it shares with {dirs[0]}, none is seen by both models "
                                  f"({rule}): nothing to forecast; audit a later checkpoint, or sequences both models "
                                  "were trained on")
    out["seen"] = rule
    out["counts"] = RATES_COUNT if distinct else "rows (an audit holds no prompt and truth tokens)"
    return out
