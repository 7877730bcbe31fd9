"""An audit output directory as the report pages read it: the per-sequence table (figures, the table of sequences)
and ``summary.json`` (every number; sections it lacks derived from ``per_sequence.parquet`` by
:func:`audit.aggregate.summarise`, as the audit does, without bootstrap intervals)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from dedup import io
from dedup.shards import InputError

from .. import aggregate
from ..layout import PER_SEQUENCE, SUMMARY, read_per_sequence, refuse_damaged


class Audit:
    """One audit directory: its per-sequence table and its summary, completed as above."""

    def __init__(self, path: Path, table: pd.DataFrame, summary: dict):
        self.path = path
        self.table = table
        self.summary = summary

    @property
    def n(self) -> int:
        return len(self.table)

    def _length(self, key: str, column: str) -> int | None:
        """The config's ``key``, else the length of the first row's ``column``."""
        v = (self.summary.get("config") or {}).get(key)
        if v is None and self.n and column in self.table.columns:
            v = len(self.table[column].iloc[0])
        return int(v) if v is not None else None

    cont_len = property(lambda self: self._length("cont_len", "truth"))
    prompt_len = property(lambda self: self._length("prompt_len", "prompt"))

    def has(self, column: str) -> bool:
        """The column exists and holds at least one non-null value."""
        return column in self.table.columns and bool(self.table[column].notna().any())

    def by_duplicates(self) -> list[dict]:
        return self.summary.get("extractable_by_duplicates") or []

    def by_status(self) -> list[dict]:
        return self.summary.get("extractable_by_dedup_status") or []

    def headline(self) -> dict:
        """The numbers at the top of a page (also comparison.json's per-model entry): the extractable rate, mean
        leading tokens matched, Pythia's mean score and memorized rate (None without generation), membership ROC-AUC per
        score (None without labels), the model."""
        s = self.summary
        py, mem, model = s.get("pythia_score"), s.get("membership"), s.get("model") or {}
        return {"audit_dir": str(self.path), "sequences": self.n, "extractable": s["extractable"],
                "mean_leading_matched": s.get("mean_leading_matched"), "prompt_len": self.prompt_len,
                "cont_len": self.cont_len, "pythia_score_mean": py["mean"] if py else None,
                "pythia_memorized": py["memorized"] if py else None,
                "membership_roc_auc": {name: m["roc_auc"] for name, m in mem["scores"].items()} if mem else None,
                "model": model.get("path") or model.get("name")}


def load_audit(audit_dir: str | os.PathLike) -> Audit:
    """Read a finished audit directory (``per_sequence.parquet`` and ``manifest.json`` required:
    :func:`audit.layout.finished_audit`; ``summary.json`` optional)."""
    path = Path(audit_dir).resolve()
    table = read_per_sequence(path, ("extractable", "leading_matched"))
    f = path / PER_SEQUENCE
    summary = io.json_or_empty(path / SUMMARY)
    derived = aggregate.summarise(table, n_boot=None, seed=0)
    shapes = {**derived, "model": {"path": "", "name": ""}, "config": {"prompt_len": 0, "cont_len": 0},
              "sequences": {}, "retention": {}}
    refuse_damaged(path / SUMMARY, summary, shapes)
    if isinstance(mem := summary.get("membership"), dict):  # the page draws its ROC curves from these columns
        need = ["member", *(f"score_{name}" for name in mem.get("scores") or {})]
        if missing := [c for c in need if c not in table.column_names]:
            raise InputError(f, f"no column {', '.join(map(repr, missing))}, which the membership section of "
                                f"{SUMMARY} reads (a summary of another audit?)")
    return Audit(path, table.to_pandas(), _filled(summary, derived))


def _filled(summary: dict, derived: dict) -> dict:
    """``summary`` with what it lacks or holds as null, at any depth, taken from ``derived`` (from the same table,
    as the audit computes it): a damaged ``"extractable": null`` or ``{}`` is read as no section, not a
    traceback."""
    out = dict(derived)
    for k, v in summary.items():
        out[k] = _filled(v, derived[k]) if isinstance(v, dict) and isinstance(derived.get(k), dict) else (
            derived.get(k) if v is None else v)
    return out


__all__ = ["Audit", "load_audit"]
