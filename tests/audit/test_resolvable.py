"""Reporting what can be resolved (issue #12, section 4): strict FPR bound for TPR at low FPR
(MIMIR, LiRA), null where fewer than 1/FPR non-members, PR-AUC's positive class and the zlib
level stated, and forecast's "seen" = trained at or before the earlier checkpoint's step."""

from __future__ import annotations

import json

import numpy as np
import pytest
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from audit import aggregate, stats
from dedup.io import write_stage_manifest


def test_tpr_at_fpr_uses_a_strict_bound():
    # 100 non-members, one of them above every member: FPR 1/100 = 0.01 exactly at the member
    # threshold. "FPR < 1%" admits only the FPR-0 threshold, where no member is flagged.
    neg = np.r_[np.arange(99.0), 1000.0]
    pos = np.full(10, 500.0)
    s, y = np.r_[pos, neg], np.r_[np.ones(10, bool), np.zeros(100, bool)]
    assert stats.tpr_at_fpr(s, y, 0.01) == 0.0
    assert stats.tpr_at_fpr(s, y, 0.0101) == 1.0


def test_tpr_at_low_fpr_is_null_below_one_over_fpr_non_members():
    rng = np.random.default_rng(0)
    for n_neg, resolvable in ((101, False), (999, False), (1000, True)):
        y = np.r_[np.ones(50, bool), np.zeros(n_neg, bool)]
        s = rng.normal(size=y.size) + y
        m = aggregate.membership({"loss": s}, y, None, 0)
        assert m["n_non_members"] == n_neg and m["n_members"] == 50
        row = m["scores"]["loss"]
        assert row["tpr_at_1pct_fpr"] is not None  # >= 100 non-members in every case
        assert (row["tpr_at_0.1pct_fpr"] is not None) == resolvable


def test_pr_auc_positive_class_and_zlib_level_are_stated():
    y = np.r_[np.ones(5, bool), np.zeros(5, bool)]
    m = aggregate.membership({"zlib": np.arange(10.0)}, y, None, 0)
    assert m["pr_auc_positive_class"] == "members"
    assert m["zlib_level"] == 9


def test_unresolved_tpr_is_shown_as_na():
    from audit.report.page import or_na

    assert or_na(None) == "n/a" and or_na(0.25) == "25.0%"


def _audit_dir(d, model_path, extractable):
    d.mkdir(parents=True)
    pq.write_table(pa.table({"doc_id": ["a", "b", "c"], "token_offset": [0, 0, 0], "extractable": extractable,
                             "member": [True, True, True]}), d / "per_sequence.parquet")
    (d / "manifest.json").write_text(json.dumps({"stage": "audit", "model": str(model_path)}))


def test_forecast_seen_means_trained_by_the_earlier_checkpoint(tmp_path):
    from audit.forecast import forecast_audits

    run = tmp_path / "run"
    (run / "checkpoints" / "step-0000200").mkdir(parents=True)
    (run / "model").mkdir()
    # a and c first trained at step 100, b at step 500 (after the early checkpoint)
    pd.DataFrame({"document_id": ["a", "b", "c", "a"], "step": [100, 500, 150, 600],
                  "first_step": [100, 500, 150, 100]}).to_parquet(run / "order.parquet")
    _audit_dir(tmp_path / "early", run / "checkpoints" / "step-0000200", [True, False, False])
    _audit_dir(tmp_path / "final", run / "model", [True, True, False])
    fc = forecast_audits(tmp_path / "early", tmp_path / "final")
    assert fc["n"] == 2 and fc["fn"] == 0 and fc["recall"] == 1.0  # b is not yet seen at step 200
    assert fc["seen"].startswith("trained at or before step 200")


def test_forecast_refuses_an_audit_compared_with_itself_or_with_one_of_the_same_step(tmp_path):
    """An audit forecast from itself (the same directory twice, or two audits of one checkpoint) ran with exit 0
    and precision and recall 1.0: nothing was predicted. Found by the audit probe."""
    from audit.forecast import forecast_audits
    from dedup.shards import InputError

    run = tmp_path / "run"
    (run / "checkpoints" / "step-0000200").mkdir(parents=True)
    pd.DataFrame({"document_id": ["a", "b", "c"], "step": [100, 500, 150], "first_step": [100, 500, 150]}
                 ).to_parquet(run / "order.parquet")
    for name in ("early", "again"):
        _audit_dir(tmp_path / name, run / "checkpoints" / "step-0000200", [True, False, False])
    with pytest.raises(InputError, match="the first audit again"):
        forecast_audits(tmp_path / "early", tmp_path / "early")
    with pytest.raises(InputError, match="at step 200, the step .*again audits too"):
        forecast_audits(tmp_path / "early", tmp_path / "again")


def test_forecast_refuses_a_later_checkpoint_given_first(tmp_path, capsys):
    """The first audit predicts the second: an earlier checkpoint predicts a later one. Given in
    the other order (the final model first), forecast ran with exit 0 and reported precision and
    recall of the final model "predicting" its own past. Two audits of one training run now have
    to come in step order; the error names the directory given first and both steps."""
    from audit.forecast import forecast_audits
    from dedup.shards import InputError
    from pipelines.cli import main

    run = tmp_path / "run"
    (run / "checkpoints" / "step-0000200").mkdir(parents=True)
    (run / "model").mkdir()
    pd.DataFrame({"document_id": ["a", "b", "c"], "step": [100, 500, 150], "first_step": [100, 500, 150]}
                 ).to_parquet(run / "order.parquet")
    _audit_dir(tmp_path / "early", run / "checkpoints" / "step-0000200", [True, False, False])
    _audit_dir(tmp_path / "final", run / "model", [True, True, False])
    with pytest.raises(InputError, match="step 500.*after step 200") as e:
        forecast_audits(tmp_path / "final", tmp_path / "early")
    assert e.value.path == str(tmp_path / "final")
    assert main(["forecast", str(tmp_path / "final"), str(tmp_path / "early")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "final") in err[0], err
    assert forecast_audits(tmp_path / "early", tmp_path / "final")["n"] == 2


def test_forecast_names_what_it_cannot_match(tmp_path, capsys):
    """An audit of --sequences given by tokens alone has no doc_id: forecast failed with 'first
    table has missing keys', naming neither directory nor cause. Two audits of different
    documents gave n = 0, a note and exit 0: a forecast over no shared sequence has no precision
    or recall, so it is refused (exit 2, one line naming both audits and what to do), as is one
    whose shared sequences neither model counts as seen."""
    from audit.forecast import forecast_audits
    from dedup.shards import InputError
    from pipelines.cli import main

    _audit_dir(tmp_path / "a", tmp_path / "m1", [True, False, False])
    _audit_dir(tmp_path / "b", tmp_path / "m2", [True, True, False])
    pq.write_table(pa.table({"doc_id": ["x", "y", "z"], "token_offset": [0, 0, 0], "extractable": [True] * 3}),
                   tmp_path / "b" / "per_sequence.parquet")  # other documents
    assert main(["forecast", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "fc.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "a") in err[0] and str(tmp_path / "b") in err[0], err
    assert "nothing to forecast" in err[0] and "--sequences" in err[0] and "--seed" in err[0], err
    assert not (tmp_path / "fc.json").exists()
    pq.write_table(pa.table({"doc_id": ["a", "b"], "token_offset": [0, 0], "extractable": [True, False],
                             "member": [False, False]}), tmp_path / "b" / "per_sequence.parquet")
    with pytest.raises(InputError, match="2 sequences.*none.*seen"):  # shared, but held out: nothing to forecast
        forecast_audits(tmp_path / "a", tmp_path / "b")
    pq.write_table(pa.table({"doc_id": pa.array([None, None], pa.string()), "token_offset": [None, None],
                             "extractable": [True, False]}), tmp_path / "b" / "per_sequence.parquet")
    assert main(["forecast", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "b") in err[0] and "doc_id" in err[0], err


def test_forecast_counts_distinct_sequences(tmp_path):
    """Forecast counts distinct sequences (equal prompt + truth count once), as the audit's rates
    do: a canary planted many times is sampled from several of its documents, and its copies are
    one sequence, not independent trials. Before: rows were counted, so three sampled copies of
    one extractable canary beside two unextracted sequences made base_rate 3/5 for 1/3."""
    from audit.forecast import forecast_audits

    def audit(d, extractable):
        d.mkdir()
        pq.write_table(pa.table({
            "doc_id": ["c1", "c2", "c3", "u1", "u2"], "token_offset": [0] * 5, "extractable": extractable,
            "prompt": [[1, 2]] * 3 + [[3, 4], [5, 6]], "truth": [[7, 8]] * 3 + [[9, 9], [8, 8]]}),
            d / "per_sequence.parquet")
        write_stage_manifest(d, "audit", {}, versions=False)

    audit(tmp_path / "a", [True, True, True, False, True])
    audit(tmp_path / "b", [True, True, True, False, False])
    fc = forecast_audits(tmp_path / "a", tmp_path / "b")
    assert (fc["n"], fc["tp"], fc["fp"], fc["fn"], fc["tn"]) == (3, 1, 1, 0, 1)
    assert fc["base_rate"] == pytest.approx(1 / 3) and fc["precision"] == pytest.approx(0.5)
    assert fc["counts"].startswith("distinct sequences")


def test_forecast_matches_audits_of_a_corpus_without_ids_by_shard_and_row(tmp_path):
    """A corpus without an id column: the audit's doc_id is null, but shard and row locate each
    sequence's document, and memdedup train names such a document 'shard:row' in order.parquet.
    Before: forecast refused two sampled checkpoint audits as 'sequences without a document (...
    an audit of --sequences given by tokens)'."""
    from audit.forecast import forecast_audits

    run = tmp_path / "run"
    (run / "checkpoints" / "step-0000200").mkdir(parents=True)
    (run / "model").mkdir()
    pd.DataFrame({"document_id": ["a.parquet:0", "a.parquet:1", "a.parquet:2"], "step": [100, 500, 150],
                  "first_step": [100, 500, 150]}).to_parquet(run / "order.parquet")
    for name, model, extractable in (("early", run / "checkpoints" / "step-0000200", [True, False, False]),
                                     ("final", run / "model", [True, True, False])):
        (tmp_path / name).mkdir()
        pq.write_table(pa.table({"doc_id": pa.array([None] * 3, pa.string()), "shard": ["a.parquet"] * 3,
                                 "row": [0, 1, 2], "token_offset": [0, 0, 0], "extractable": extractable}),
                       tmp_path / name / "per_sequence.parquet")
        (tmp_path / name / "manifest.json").write_text(json.dumps({"stage": "audit", "model": str(model)}))
    fc = forecast_audits(tmp_path / "early", tmp_path / "final")
    assert (fc["n"], fc["tp"], fc["fn"], fc["tn"]) == (2, 1, 0, 1)  # row 1 is first trained after step 200
