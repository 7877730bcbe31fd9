"""Forecasting (Biderman et al. 2023), recognition/recall/retention (Orhan 2024) and the plots.

Every expected number here is computed by hand in the comments.
"""

from __future__ import annotations

import io
import math
import struct

import numpy as np
import pandas as pd
import pytest

from audit import plots, stats
from audit.forecast import forecast
from audit.retention import recall, recognition, retention_curve, sign_test_p_value
from dedup.io import write_stage_manifest
from dedup.shards import InputError



# --------------------------------------------------------------------------------------------
# forecast
# --------------------------------------------------------------------------------------------

#   key     1  2  3  4  5  6  7  8
#   first   T  T  T  F  F  F  F  F
#   second  T  T  F  T  T  T  F  F
#   TP = {1, 2} = 2, FP = {3} = 1, FN = {4, 5, 6} = 3, TN = {7, 8} = 2
FIRST = [True, True, True, False, False, False, False, False]
SECOND = [True, True, False, True, True, True, False, False]


def _tables():
    a = pd.DataFrame({"seq_key": range(1, 9), "extractable": FIRST})
    b = pd.DataFrame({"seq_key": range(1, 9), "extractable": SECOND})
    return a, b


def test_forecast_hand_computed():
    a, b = _tables()
    r = forecast(a, b)
    assert (r["n"], r["tp"], r["fp"], r["fn"], r["tn"]) == (8, 2, 1, 3, 2)
    assert r["precision"] == pytest.approx(2 / 3)  # TP / (TP + FP)
    assert r["recall"] == pytest.approx(2 / 5)  # TP / (TP + FN)
    assert (r["precision_n"], r["recall_n"]) == (3, 5)
    assert r["predicted_positive_rate"] == pytest.approx(3 / 8)
    assert r["base_rate"] == pytest.approx(5 / 8)
    assert (r["precision_lower"], r["precision_upper"]) == pytest.approx(stats.wilson_interval(2, 3))
    assert (r["recall_lower"], r["recall_upper"]) == pytest.approx(stats.wilson_interval(2, 5))
    assert (r["predicted_positive_rate_lower"], r["predicted_positive_rate_upper"]) == pytest.approx(
        stats.wilson_interval(3, 8)
    )
    assert r["n_unmatched_first"] == r["n_unmatched_second"] == 0


def test_forecast_swapping_arguments_swaps_precision_and_recall():
    """The confusion-matrix trap: sklearn's confusion_matrix takes (truth, prediction); Pythia's
    code passed (prediction, truth), so its "TPR" was precision. Roles must be explicit here."""
    a, b = _tables()
    fwd, back = forecast(a, b), forecast(b, a)
    assert back["precision"] == pytest.approx(fwd["recall"]) == pytest.approx(2 / 5)
    assert back["recall"] == pytest.approx(fwd["precision"]) == pytest.approx(2 / 3)
    assert (back["fp"], back["fn"]) == (fwd["fn"], fwd["fp"]) == (3, 1)
    assert back["predicted_positive_rate"] == pytest.approx(fwd["base_rate"])
    # the quantity a (prediction, truth)-swapped confusion matrix would label "TPR" = TP / (TP + FN)
    # computed with the roles reversed, i.e. our precision, not our recall:
    tp, fn_swapped = fwd["tp"], fwd["fp"]
    assert tp / (tp + fn_swapped) == pytest.approx(fwd["precision"])
    assert tp / (tp + fn_swapped) != pytest.approx(fwd["recall"])


def test_forecast_aligns_by_key_not_row_order():
    a, b = _tables()
    b = b.iloc[::-1].reset_index(drop=True)
    r = forecast(a, b)
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (2, 1, 3, 2)


def test_forecast_seen_filters_and_unmatched_rows():
    a, b = _tables()
    # first has not seen key 6 (an earlier checkpoint); second has not seen key 1;
    # key 9 is only in first, key 10 only in second
    a = pd.concat([a, pd.DataFrame({"seq_key": [9], "extractable": [True]})], ignore_index=True)
    b = pd.concat([b, pd.DataFrame({"seq_key": [10], "extractable": [True]})], ignore_index=True)
    a["seen"] = a["seq_key"] != 6
    b["trained"] = b["seq_key"] != 1
    r = forecast(a, b, seen_first="seen", seen_second="trained")
    # compared: keys 2..5, 7, 8 -> TP {2}, FP {3}, FN {4, 5}, TN {7, 8}
    assert (r["n"], r["tp"], r["fp"], r["fn"], r["tn"]) == (6, 1, 1, 2, 2)
    assert r["precision"] == pytest.approx(1 / 2)
    assert r["recall"] == pytest.approx(1 / 3)
    assert (r["n_first"], r["n_second"], r["n_seen_first"], r["n_seen_second"]) == (9, 9, 8, 8)
    assert (r["n_unmatched_first"], r["n_unmatched_second"]) == (2, 2)  # first: 1, 9; second: 6, 10


def test_forecast_audits_count_a_sequence_seen_when_its_own_tokens_were_trained(tmp_path):
    """Two audits of one run (a checkpoint at step 5, the final model): a sequence is "seen" by
    the earlier one when every instance holding its tokens was first trained by step 5. It was
    the document's first training step: document d's second instance (tokens 4-7), first
    trained at step 9, counted as seen at step 5, as did a sequence spanning both instances.
    Document e, held out (no instance in the order), is not seen."""
    import json

    from audit.forecast import forecast_audits
    from audit.layout import checkpoint_name

    run = tmp_path / "run"
    (run / "checkpoints" / checkpoint_name(5)).mkdir(parents=True)
    (run / "model").mkdir()
    # d: instances at tokens 0-3 (first trained at step 2) and 4-7 (step 9); f: one instance, step 3
    pd.DataFrame({"instance_id": [0, 1, 2, 0], "document_id": ["d", "d", "f", "d"], "token_offset": [0, 4, 0, 0],
                  "n_tokens": [4, 4, 4, 4], "step": [2, 9, 3, 12], "first_step": [2, 9, 3, 2]}
                 ).to_parquet(run / "order.parquet")
    seqs = {"doc_id": ["d", "d", "d", "f", "e"], "token_offset": [0, 4, 2, 0, 0],
            "prompt": [[1, 2]] * 5, "truth": [[3, 4]] * 5}  # 4 tokens each: 0-3, 4-7, 2-5, 0-3, 0-3
    for name, model, extractable in (("first", run / "checkpoints" / checkpoint_name(5), [True] * 5),
                                     ("second", run / "model", [True] * 5)):
        (tmp_path / name).mkdir()
        pd.DataFrame({**seqs, "prompt": [[1, 2], [5, 6], [3, 4], [7, 8], [9, 9]], "extractable": extractable}
                     ).to_parquet(tmp_path / name / "per_sequence.parquet")
        (tmp_path / name / "manifest.json").write_text(json.dumps({"stage": "audit", "model": str(model)}))
    r = forecast_audits(tmp_path / "first", tmp_path / "second")
    assert "step 5" in r["seen"], r["seen"]
    assert r["n_seen_first"] == 2 and r["n"] == 2, r  # d at 0 and f at 0; not d at 4 or 2 (step 9), not e


def test_forecast_audits_refuse_audits_under_other_bos_policies(tmp_path):
    """An audit with a BOS before each window (--bos auto, a Llama-family tokenizer) and one without
    (--bos never) hold the same tokens at the same documents and offsets, but extraction from other
    contexts: the forecast compared them as predictor and truth. Now refused naming the second audit
    and both policies; an audit recorded before --bos (none in its config) is compared as before."""
    import json

    from audit.forecast import forecast_audits

    for name, bos in (("a", "auto"), ("b", "never"), ("old", None)):
        (tmp_path / name).mkdir()
        pd.DataFrame({"doc_id": ["d1", "d2"], "token_offset": [0, 0], "prompt": [[1, 2], [3, 4]], "truth": [[5], [6]],
                      "extractable": [True, False]}).to_parquet(tmp_path / name / "per_sequence.parquet")
        config = {"prompt_len": 2, "cont_len": 1} | ({"bos": bos} if bos else {})
        (tmp_path / name / "summary.json").write_text(json.dumps({"config": config}))
        write_stage_manifest(tmp_path / name, "audit", {}, versions=False)
    with pytest.raises(InputError, match=r"BOS policy.*a: auto.*b: never") as e:
        forecast_audits(tmp_path / "a", tmp_path / "b")
    assert str(tmp_path / "b") in str(e.value)
    assert forecast_audits(tmp_path / "a", tmp_path / "old")["n"] == 2


@pytest.mark.parametrize("summary", ['{"config": [1]}', '[1]'])
def test_forecast_audits_name_a_damaged_summary(tmp_path, summary):
    """A summary.json whose config (or whole) is not an object: the forecast crashed with AttributeError ('list'
    object has no attribute 'get'), exit 1 and a traceback; the report named the file. Now named (a whole summary that is not an object was)."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        pd.DataFrame({"doc_id": ["d1"], "token_offset": [0], "extractable": [True]}).to_parquet(
            tmp_path / name / "per_sequence.parquet")
        write_stage_manifest(tmp_path / name, "audit", {}, versions=False)
    (tmp_path / "b" / "summary.json").write_text(summary)
    from audit.forecast import forecast_audits
    from dedup.io import StateError

    with pytest.raises((InputError, StateError), match="damaged") as e:  # both: exit 2, one line
        forecast_audits(tmp_path / "a", tmp_path / "b")
    assert str(tmp_path / "b" / "summary.json") in str(e.value)


def test_forecast_audits_refuse_a_killed_audit(tmp_path):
    """An audit killed after writing its new per_sequence.parquet (its earlier summary and manifest
    removed, its marker kept) was forecast from as if complete. Now refused naming it."""
    from audit.forecast import forecast_audits
    from dedup import io

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        pd.DataFrame({"doc_id": ["d1"], "token_offset": [0], "prompt": [[1, 2]], "truth": [[5]],
                      "extractable": [True]}).to_parquet(tmp_path / name / "per_sequence.parquet")
    write_stage_manifest(tmp_path / "a", "audit", {}, versions=False)  # b's removed as the audit starts
    (tmp_path / "b" / io.RUNNING_FILE).write_text("")
    with pytest.raises(ValueError, match=rf"{tmp_path / 'b'}: an unfinished memdedup audit"):
        forecast_audits(tmp_path / "a", tmp_path / "b")


def test_forecast_audits_read_integer_document_ids_of_an_order_as_the_corpus_ids(tmp_path):
    """A run laid out by hand (Pythia's documents are numbered) holds integer document_id in its
    order.parquet, while an audit's doc_id are the corpus ids as strings ('7'). The forecast's join
    failed: 'You are trying to merge on str and int64 columns for key document_id', naming no file
    (exit 2). The order's ids are now read as the corpus's are (Arrow's cast: 7 -> '7')."""
    import json

    from audit.forecast import forecast_audits
    from audit.layout import checkpoint_name

    run = tmp_path / "run"
    (run / "checkpoints" / checkpoint_name(5)).mkdir(parents=True)
    (run / "model").mkdir()
    pd.DataFrame({"instance_id": [0, 1, 2], "document_id": [7, 7, 8], "token_offset": [0, 4, 0],
                  "n_tokens": [4, 4, 4], "step": [2, 9, 3], "first_step": [2, 9, 3]}).to_parquet(run / "order.parquet")
    seqs = {"doc_id": ["7", "8", "9"], "token_offset": [0, 0, 0], "prompt": [[1, 2], [3, 4], [5, 6]],
            "truth": [[3, 4]] * 3, "extractable": [True, True, False]}
    for name, model in (("first", run / "checkpoints" / checkpoint_name(5)), ("second", run / "model")):
        (tmp_path / name).mkdir()
        pd.DataFrame(seqs).to_parquet(tmp_path / name / "per_sequence.parquet")
        (tmp_path / name / "manifest.json").write_text(json.dumps({"stage": "audit", "model": str(model)}))
    r = forecast_audits(tmp_path / "first", tmp_path / "second")
    assert r["n_seen_first"] == 2 and r["n"] == 2 and r["tp"] == 2, r  # '7' at 0-3 (step 2) and '8' (step 3)


def test_forecast_audits_name_a_document_id_two_sequences_share(tmp_path):
    """A corpus holding one id on two documents (rows 5 and 6 both 'd6'): an audit of it has two
    sequences at ('d6', 0), which the forecast cannot match. Refused as such, naming the
    directory and the id, not as "other tokens (other lengths or tokenizer)", even when an audit
    is compared with itself; a sequence given twice (same id, offset and tokens) too, naming the file."""
    from audit.forecast import forecast_audits

    d = tmp_path / "a"
    d.mkdir()
    pd.DataFrame({"doc_id": ["d5", "d6", "d6"], "shard": ["p"] * 3, "row": [4, 5, 6], "token_offset": [0, 0, 0],
                  "prompt": [[1, 2], [3, 4], [5, 6]], "truth": [[7], [8], [9]], "extractable": [True, False, True]}
                 ).to_parquet(d / "per_sequence.parquet")
    write_stage_manifest(d, "audit", {}, versions=False)
    with pytest.raises(InputError, match=r"'d6'.*twice|twice.*'d6'") as e:
        forecast_audits(d, d)
    assert str(d) in str(e.value) and "tokenizer" not in str(e.value)
    twice = tmp_path / "b"
    twice.mkdir()
    pd.DataFrame({"doc_id": ["d5", "d5"], "token_offset": [3, 3], "prompt": [[1, 2]] * 2, "truth": [[7]] * 2,
                  "extractable": [True, True]}).to_parquet(twice / "per_sequence.parquet")
    write_stage_manifest(twice, "audit", {}, versions=False)
    with pytest.raises(InputError, match="'d5'") as e:
        forecast_audits(twice, twice)
    assert str(twice) in str(e.value)


@pytest.mark.parametrize("drop, edit, needle", [
    ("token_offset", {}, "no column 'token_offset'"),
    ("doc_id", {}, "no column 'doc_id'"),
    ("extractable", {}, "no column 'extractable'"),
    (None, {"extractable": ["true", "false"]}, "'extractable' holds large_string, not booleans or integers"),
    (None, {"extractable": [2, 0]}, "'extractable' must be boolean or 0/1"),
])
def test_forecast_audits_name_the_table_that_lacks_a_column_it_needs(tmp_path, drop, edit, needle):
    """A per_sequence.parquet without token_offset (an older or hand-made table) gave a pandas
    KeyError traceback, exit 1; without extractable, or with one of strings, a ValueError naming
    'first table', not the file (found by the probe of audit/). InputError naming the file."""
    from audit.forecast import forecast_audits

    cols = {"doc_id": ["a", "b"], "token_offset": [0, 0], "prompt": [[1], [2]], "truth": [[3], [4]],
            "extractable": [True, False]}
    good, bad = tmp_path / "good", tmp_path / "bad"
    for d, c in ((good, cols), (bad, {k: v for k, v in {**cols, **edit}.items() if k != drop})):
        d.mkdir()
        pd.DataFrame(c).to_parquet(d / "per_sequence.parquet")
        write_stage_manifest(d, "audit", {}, versions=False)
    for pair in ((good, bad), (bad, good)):
        with pytest.raises(InputError, match=needle) as e:
            forecast_audits(*pair)
        assert str(bad / "per_sequence.parquet") in str(e.value)


def test_forecast_undefined_ratios_are_none_with_zero_count():
    a = pd.DataFrame({"seq_key": [1, 2, 3], "extractable": [False, False, False]})
    b = pd.DataFrame({"seq_key": [1, 2, 3], "extractable": [True, False, False]})
    r = forecast(a, b)
    assert r["precision"] is None and r["precision_n"] == 0
    assert (r["precision_lower"], r["precision_upper"]) == (0.0, 1.0)
    assert r["recall"] == 0.0 and r["recall_n"] == 1
    r = forecast(b, a)  # second memorized nothing: recall undefined
    assert r["recall"] is None and r["recall_n"] == 0 and r["precision"] == 0.0
    empty = forecast(a, pd.DataFrame({"seq_key": [7], "extractable": [True]}))
    assert empty["n"] == 0
    assert all(empty[k] is None for k in ("precision", "recall", "predicted_positive_rate", "base_rate"))


def test_forecast_multi_column_key_and_01_flags():
    a = pd.DataFrame({"shard": ["x", "x", "y"], "row": [0, 1, 0], "mem": [1, 0, 1]})
    b = pd.DataFrame({"shard": ["y", "x", "x"], "row": [0, 1, 0], "mem": [1, 1, 0]})
    r = forecast(a, b, key=["shard", "row"], flag="mem")
    # (x,0): 1 vs 0 -> FP; (x,1): 0 vs 1 -> FN; (y,0): 1 vs 1 -> TP
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (1, 1, 1, 0)


def test_forecast_rejects_bad_input():
    a, b = _tables()
    with pytest.raises(ValueError, match="duplicate keys"):
        forecast(pd.concat([a, a.iloc[:1]]), b)
    with pytest.raises(ValueError, match="no column 'nope'"):
        forecast(a, b, flag="nope")
    with pytest.raises(ValueError, match="no key column"):
        forecast(a, b, key="id")
    with pytest.raises(ValueError, match="missing values"):
        forecast(a.assign(extractable=[True, None] + FIRST[2:]), b)
    with pytest.raises(ValueError, match="boolean"):
        forecast(a.assign(extractable=[2] * 8), b)
    with pytest.raises(TypeError):
        forecast(a.to_dict(), b)


# --------------------------------------------------------------------------------------------
# recognition
# --------------------------------------------------------------------------------------------


def test_recognition_hand_computed_with_tie():
    # pairs: 1<2 win, 2>1 loss, 3=3 tie, 4<5 win -> (2 + 1/2) / 4 = 0.625
    r = recognition(np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 1.0, 3.0, 5.0]))
    assert (r["n"], r["wins"], r["losses"], r["ties"]) == (4, 2, 1, 1)
    assert r["accuracy"] == 0.625 and r["chance"] == 0.5
    # ties split: 2 + 0 vs 1 + 0, the odd tie joins the smaller side -> 2 vs 2 -> p = 1
    assert r["p_value"] == 1.0
    assert r["mean_gap"] == pytest.approx((1 - 1 + 0 + 1) / 4)
    lo, hi = r["lower"], r["upper"]
    assert lo < 0.625 < hi
    # Wilson interval at 2.5 successes of 4, closed form with z = 1.959964
    z = 1.959963984540054
    p, n = 0.625, 4
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (lo, hi) == pytest.approx((centre - half, centre + half))


def test_recognition_sign_test_p_values():
    # all 10 won: p = 2 * P[X <= 0] = 2 / 2^10
    r = recognition(np.zeros(10), np.ones(10))
    assert r["accuracy"] == 1.0 and r["p_value"] == pytest.approx(2 / 1024)
    assert r["upper"] == 1.0 and r["lower"] == pytest.approx(stats.wilson_interval(10, 10)[0])
    # 5 wins, 1 loss: p = 2 * (C(6,0) + C(6,1)) / 2^6 = 14 / 64
    r = recognition(np.array([0, 0, 0, 0, 0, 1.0]), np.array([1, 1, 1, 1, 1, 0.0]))
    assert r["accuracy"] == pytest.approx(5 / 6)
    assert r["p_value"] == pytest.approx(14 / 64)
    # 4 wins, 0 losses, 2 ties -> split 5 vs 1 -> same p = 14 / 64; accuracy = 5/6
    r = recognition(np.array([0, 0, 0, 0, 1, 1.0]), np.array([1, 1, 1, 1, 1, 1.0]))
    assert (r["wins"], r["ties"]) == (4, 2)
    assert r["accuracy"] == pytest.approx(5 / 6) and r["p_value"] == pytest.approx(14 / 64)
    # loss of a seen item HIGHER than its foil everywhere: accuracy 0, same p as all won
    r = recognition(np.ones(10), np.zeros(10))
    assert r["accuracy"] == 0.0 and r["p_value"] == pytest.approx(2 / 1024) and r["lower"] == 0.0


def test_sign_test_matches_direct_binomial_sum():
    for n in range(0, 25):
        for k in range(n + 1):
            m = min(k, n - k)
            direct = min(1.0, 2 * sum(math.comb(n, i) for i in range(m + 1)) / 2**n)
            assert sign_test_p_value(k, n) == pytest.approx(direct, rel=1e-12, abs=0)
    assert 0.0 < sign_test_p_value(10_400, 20_001) < 1e-6  # large n stays exact and fast
    with pytest.raises(ValueError):
        sign_test_p_value(3, 2)


def test_wilson_bounds_for_split_ties():
    """Integers: the same as wilson_interval. Half-integers (ties split): the interval is the set
    of p with |s/n - p| <= z sqrt(p(1-p)/n), found here by bisection on each side."""
    for k, n in [(0, 5), (3, 7), (7, 7), (1, 1)]:
        assert stats.wilson_bounds(k, n) == pytest.approx(stats.wilson_interval(k, n))
    z = 1.959963984540054
    for s, n in [(2.5, 7), (0.5, 3), (9.5, 10), (50.5, 101)]:
        inside = lambda p: abs(s / n - p) <= z * (p * (1 - p) / n) ** 0.5  # noqa: E731
        lo_a, lo_b = 0.0, s / n
        hi_a, hi_b = s / n, 1.0
        for _ in range(200):
            m = (lo_a + lo_b) / 2
            lo_a, lo_b = (lo_a, m) if inside(m) else (m, lo_b)
            m = (hi_a + hi_b) / 2
            hi_a, hi_b = (m, hi_b) if inside(m) else (hi_a, m)
        lo, hi = stats.wilson_bounds(s, n)
        assert lo == pytest.approx(lo_b, abs=1e-9) and hi == pytest.approx(hi_a, abs=1e-9)


def test_recognition_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        recognition(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="same shape"):
        recognition(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        recognition(np.array([1.0, np.nan]), np.zeros(2))


# --------------------------------------------------------------------------------------------
# recall
# --------------------------------------------------------------------------------------------


def test_recall_hand_computed():
    truth = np.array([[1, 2, 3, 4]] * 4)
    gen = np.array([[1, 2, 3, 4], [1, 2, 0, 0], [9, 9, 9, 9], [2, 3, 4, 1]])
    r = recall(gen, truth)
    # exact: only item 0 -> 1/4; tokens: 4/4, 2/4, 0, 0 (a shifted copy scores 0 position by position)
    assert r["exact_recall"] == 0.25 and r["exact_k"] == 1
    assert r["token_recall"] == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    assert r["exact"].tolist() == [True, False, False, False]
    assert r["token_fraction"].tolist() == [1.0, 0.5, 0.0, 0.0]
    assert (r["exact_lower"], r["exact_upper"]) == pytest.approx(stats.wilson_interval(1, 4))
    assert (r["n"], r["length"]) == (4, 4)


def test_recall_rejects_cue_included_or_empty():
    with pytest.raises(ValueError, match="cue excluded"):
        recall(np.zeros((2, 6), int), np.zeros((2, 4), int))
    with pytest.raises(ValueError, match="at least one"):
        recall(np.zeros((0, 4), int), np.zeros((0, 4), int))
    with pytest.raises(ValueError, match="2-D"):
        recall(np.zeros(4, int), np.zeros(4, int))
    with pytest.raises(ValueError, match="integer"):
        recall(np.zeros((2, 4)), np.zeros((2, 4)))


# --------------------------------------------------------------------------------------------
# retention_curve
# --------------------------------------------------------------------------------------------


def _retention_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cohort": ["B", "A", "A", "A", "A", "B", "B"],
            "treatment_step": [20, 10, 10, 10, 10, 20, 20],
            "step": [30, 5, 10, 12, 20, 20, 22],
            "recognition": [0.5, 0.5, 0.9, 0.8, 0.7, 0.7, 0.6],
            "exact_recall": [0.25, 0.0, 1.0, 0.5, 0.25, 0.75, np.nan],
        }
    )


def test_retention_curve_hand_computed():
    out = retention_curve(_retention_rows())
    # A: steps_since 0, 2, 10 (step 5 is before treatment: dropped); B: 0, 2, 10
    assert out["steps_since"].tolist() == [0, 2, 10]
    assert out["n_rows"].tolist() == [2, 2, 2]
    assert out["recognition"].tolist() == pytest.approx([(0.9 + 0.7) / 2, (0.8 + 0.6) / 2, (0.7 + 0.5) / 2])
    assert out["recognition_count"].tolist() == [2, 2, 2]
    assert out["exact_recall"].tolist() == pytest.approx([(1.0 + 0.75) / 2, 0.5, (0.25 + 0.25) / 2])
    assert out["exact_recall_count"].tolist() == [2, 1, 2]  # the NaN is skipped
    assert "cohort" not in out.columns and "token_recall" not in out.columns


def test_retention_curve_metric_selection_and_errors():
    rows = _retention_rows().drop(columns=["recognition", "exact_recall"]).assign(gap=[1.0, 9, 2, 3, 4, 5, 6])
    out = retention_curve(rows)  # no default metric present: numeric non-id columns
    assert list(out.columns) == ["steps_since", "n_rows", "gap", "gap_count"]
    assert out["gap"].tolist() == pytest.approx([3.5, 4.5, 2.5])  # (2+5)/2, (3+6)/2, (4+1)/2
    out = retention_curve(_retention_rows(), metrics=["exact_recall"])
    assert "recognition" not in out.columns
    with pytest.raises(ValueError, match="treatment_step"):
        retention_curve(_retention_rows().drop(columns="treatment_step"))
    with pytest.raises(ValueError, match="no metric columns"):
        retention_curve(_retention_rows(), metrics=["token_recall"])
    with pytest.raises(ValueError, match="no metric"):
        retention_curve(_retention_rows()[["treatment_step", "step", "cohort"]])
    empty = retention_curve(_retention_rows().iloc[:0])
    assert len(empty) == 0 and "recognition" in empty.columns


# --------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(data: bytes, min_px: int = 300, max_px: int = 2500) -> np.ndarray:
    assert isinstance(data, bytes)
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert min_px <= width <= max_px and min_px <= height <= max_px, (width, height)
    import matplotlib.image

    img = matplotlib.image.imread(io.BytesIO(data))
    assert img.shape[:2] == (height, width)
    assert len(data) > 5_000
    return img


def _profile(treatments=(1, 2, 4), steps=(0, 1, 2, 4, 8)) -> pd.DataFrame:
    rows = []
    for g in treatments:
        for s in steps:
            e = 0.0 if s < g else 0.5 / (1 + s - g)
            rows.append({"treatment_step": g, "step": s, "effect": e, "lower": e - 0.1, "upper": e + 0.1})
    return pd.DataFrame(rows)


def _grey_pixels(img: np.ndarray) -> int:
    grey = np.array([0xC8, 0xC8, 0xC8]) / 255
    return int(np.sum(np.all(np.abs(img[..., :3] - grey) < 0.01, axis=-1)))


def test_profile_heatmap_png_greys_insignificant_cells():
    df = _profile()
    with_grey = _grey_pixels(_check_png(plots.profile_heatmap(df, title="profile")))
    # make every cell significant: grey only remains in the small legend swatch
    df_sig = df.assign(lower=df["effect"] + 0.01, upper=df["effect"] + 0.2)
    without = _grey_pixels(_check_png(plots.profile_heatmap(df_sig)))
    assert with_grey > 2_000 and without < 1_000 and with_grey > 5 * without


def test_profile_heatmap_nans_big_and_errors():
    df = _profile()
    df.loc[3, "effect"] = np.nan
    df.loc[6, ["lower", "upper"]] = np.nan
    _check_png(plots.profile_heatmap(df))
    _check_png(plots.profile_heatmap(df.assign(effect=np.nan)))
    _check_png(plots.profile_heatmap(_profile().iloc[[-1]]))
    big = _profile(treatments=range(50, 1500, 50), steps=range(0, 1500, 50))
    _check_png(plots.profile_heatmap(big), max_px=2000)
    with pytest.raises(ValueError, match="empty"):
        plots.profile_heatmap(df.iloc[:0])
    with pytest.raises(ValueError, match="no columns"):
        plots.profile_heatmap(df.drop(columns="upper"))
    with pytest.raises(ValueError, match="duplicated"):
        plots.profile_heatmap(pd.concat([df, df.iloc[:1]]))


def test_retention_curves_png():
    curve = retention_curve(_retention_rows())
    _check_png(plots.retention_curves(curve, title="retention"))
    curve = pd.DataFrame(
        {
            "steps_since": [0, 1, 3, 10, 100],
            "recognition": [1.0, 0.9, np.nan, 0.8, 0.7],
            "exact_recall": [np.nan] * 5,  # all NaN: skipped
            "token_recall": [1.0, 0.5, 0.4, 0.3, 0.2],
            "token_recall_lower": [0.9, 0.4, 0.3, 0.2, 0.1],
            "token_recall_upper": [1.0, 0.6, 0.5, 0.4, 0.3],
        }
    )
    _check_png(plots.retention_curves(curve))
    with pytest.raises(ValueError, match="empty"):
        plots.retention_curves(curve.iloc[:0])
    with pytest.raises(ValueError, match="none of the metric"):
        plots.retention_curves(curve, metrics=["recall_at_k"])
    with pytest.raises(ValueError, match="nothing to plot"):
        plots.retention_curves(curve, metrics=["exact_recall"])


def test_rate_by_duplicates_png():
    flags = np.array([False] * 50 + [True] * 3 + [False] * 20 + [True] * 10 + [True] * 9 + [False])
    groups = ["1"] * 53 + ["2-3"] * 30 + ["8-15"] * 10
    rows = stats.rate_by_group(flags, groups, order=["1", "2-3", "4-7", "8-15"])
    assert math.isnan(rows[2]["rate"])  # empty bucket 4-7
    _check_png(plots.rate_by_duplicates(rows[::-1], title="dups"))
    none_rate = [{"group": "1", "n": 0, "k": 0, "rate": None, "lower": 0.0, "upper": 1.0}]
    _check_png(plots.rate_by_duplicates(none_rate))
    other = [dict(r, group=g) for r, g in zip(rows, ["unique", "kept", "removed", "x"])]
    _check_png(plots.rate_by_duplicates(other))
    with pytest.raises(ValueError, match="empty"):
        plots.rate_by_duplicates([])
    with pytest.raises(ValueError, match="lacks keys"):
        plots.rate_by_duplicates([{"group": "1", "n": 3}])


def test_new_audit_modules_load_no_torch_and_no_pyplot(loads_none):
    loads_none("import audit.forecast, audit.retention, audit.plots", ("torch", "transformers", "matplotlib.pyplot"))


# --------------------------------------------------------------------------------------------
# Hard foils and curve intervals (issue #13, section 4)
# --------------------------------------------------------------------------------------------


def test_hard_foils_keep_the_items_tokens_or_most_of_them():
    from audit.retention import scramble_foils, substitute_foils

    rng = np.random.default_rng(0)
    items = rng.integers(1, 500, size=(50, 32))
    s = scramble_foils(items, seed=1)
    assert s.shape == items.shape and (np.sort(s, axis=1) == np.sort(items, axis=1)).all()
    assert (s != items).any(axis=1).all()  # every row reordered
    assert (scramble_foils(items, seed=1) == s).all()
    sub = substitute_foils(items, vocab_size=500, fraction=0.25, seed=2, exclude=(0,))
    changed = (sub != items).sum(axis=1)
    assert (changed == 8).all() and not (sub == 0).any()


def test_retention_curve_has_intervals_from_pooled_counts():
    rows = pd.DataFrame({"treatment_step": [10, 20, 10], "step": [10, 20, 30], "n": [40, 60, 40],
                         "recognition": [0.75, 0.5, 0.6], "exact_recall": [0.5, 0.25, 0.0]})
    c = retention_curve(rows)
    lag0 = c[c["steps_since"] == 0].iloc[0]
    # pooled over the two cohorts at lag 0: (30 + 30) / 100
    assert lag0["recognition"] == pytest.approx(0.6) and lag0["recognition_n"] == 100
    from audit.stats import wilson_bounds

    lo, hi = wilson_bounds(60, 100, 0.95)
    assert lag0["recognition_lower"] == pytest.approx(lo) and lag0["recognition_upper"] == pytest.approx(hi)


# --------------------------------------------------------------------------------------------
# an output that cannot be written is named (a full disk, a missing directory)
# --------------------------------------------------------------------------------------------

def test_forecast_out_in_a_missing_directory_names_the_file_not_its_temporary(tmp_path, capsys):
    """``memdedup forecast A B --out missing/x.json``: exit 2 naming missing/x.json. Before: the
    line named the hidden temporary '.x.json.tmp-<pid>-<hex>' (found by a probe)."""
    from pipelines.cli import main

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        pd.DataFrame({"doc_id": ["d1"], "token_offset": [0], "extractable": [True]}).to_parquet(
            tmp_path / name / "per_sequence.parquet")
        write_stage_manifest(tmp_path / name, "audit", {}, versions=False)
    out = tmp_path / "missing" / "x.json"
    assert main(["forecast", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"memdedup forecast: error: {out}: No such file or directory"], err


@pytest.mark.parametrize("writer", ["json", "parquet"])
def test_a_full_disk_names_the_output_being_written(tmp_path, monkeypatch, writer):
    """A full disk while an audit-side stage writes its outputs (summary.json, per_sequence.parquet,
    PNGs): the error names the file, as the command line's one line shows it. Before: Python's and
    Arrow's write errors name no file ('memdedup audit: error: Error writing bytes to file. Detail:
    [errno 28] No space left on device'; profile, report: 'No space left on device'), found on a
    small tmpfs."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    from dedup import io as dio

    final = tmp_path / ("s.json" if writer == "json" else "t.parquet")
    if writer == "json":
        monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device")))
        with pytest.raises(OSError) as e:
            dio.write_json_atomic(final, {"a": 1})
    else:
        def full(table, where, **kw):
            raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")
        monkeypatch.setattr(pq, "write_table", full)
        with pytest.raises(OSError) as e:
            dio.write_atomic(final, lambda tmp: pq.write_table(pa.table({"x": [1]}), tmp))
    assert e.value.filename == str(final) and "No space left on device" in e.value.strerror, (e.value.filename,
                                                                                             e.value.strerror)
    assert list(tmp_path.iterdir()) == []


def test_forecast_audits_refuse_an_audit_of_a_run_trained_again_since(tmp_path):
    """Two audits of one run's checkpoint and final model, then `train --replace` with another
    seed at the same path: forecast counted 'seen' from the new run's order.parquet against
    extractable flags of the old run's models (38 seen, then 54, exit 0: found by the audit-side
    probe). An audit records the run it audited (the digest of train_config.json: config and
    corpus; the trainer is deterministic), and the forecast refuses an audit of another run."""
    import json

    from audit.forecast import forecast_audits
    from audit.layout import checkpoint_name, training_run_digest
    from dedup.shards import InputError

    run = tmp_path / "run"
    (run / "checkpoints" / checkpoint_name(5)).mkdir(parents=True)
    (run / "model").mkdir()
    pd.DataFrame({"document_id": ["d", "f"], "token_offset": [0, 0], "n_tokens": [4, 4], "step": [2, 9],
                  "first_step": [2, 9]}).to_parquet(run / "order.parquet")
    (run / "train_config.json").write_text(json.dumps({"config": {"seed": 0}, "corpus_sha256": "c"}))
    digest = training_run_digest(run)
    for name, model in (("first", run / "checkpoints" / checkpoint_name(5)), ("second", run / "model")):
        (tmp_path / name).mkdir()
        pd.DataFrame({"doc_id": ["d", "f"], "token_offset": [0, 0], "extractable": [True, False]}
                     ).to_parquet(tmp_path / name / "per_sequence.parquet")
        (tmp_path / name / "manifest.json").write_text(json.dumps(
            {"stage": "audit", "model": str(model), "training_run": {"path": str(run), "sha256": digest}}))
    assert forecast_audits(tmp_path / "first", tmp_path / "second")["n"] == 1  # f: trained at step 9, after 5
    (run / "train_config.json").write_text(json.dumps({"config": {"seed": 1}, "corpus_sha256": "c"}))
    assert training_run_digest(run) != digest
    with pytest.raises(InputError, match=r"first: audits .*run.* as it was before it was trained again"):
        forecast_audits(tmp_path / "first", tmp_path / "second")


@pytest.mark.parametrize("target", ["run/order.parquet", "run/forecast.json", "run/model/fc.json"])
def test_forecast_out_in_the_training_run_it_reads_is_refused(tmp_path, capsys, target):
    """Audits of two checkpoints of one run: the forecast reads the run's order.parquet ("seen"). `--out
    run/order.parquet` replaced that file with the forecast's JSON, exit 0 (found by the audit-side CLI probe):
    the run could not be profiled or forecast again. An --out inside the run is refused (exit 2, one line), as one
    inside an audit is, and nothing is written."""
    import json

    from audit.layout import checkpoint_name
    from pipelines.cli import main

    run = tmp_path / "run"
    (run / "checkpoints" / checkpoint_name(5)).mkdir(parents=True)
    (run / "model").mkdir()
    pd.DataFrame({"document_id": ["d", "f"], "token_offset": [0, 0], "n_tokens": [4, 4], "step": [2, 9],
                  "first_step": [2, 3]}).to_parquet(run / "order.parquet")
    before = (run / "order.parquet").read_bytes()
    for name, model in (("first", run / "checkpoints" / checkpoint_name(5)), ("second", run / "model")):
        (tmp_path / name).mkdir()
        pd.DataFrame({"doc_id": ["d", "f"], "token_offset": [0, 0], "extractable": [True, False]}
                     ).to_parquet(tmp_path / name / "per_sequence.parquet")
        (tmp_path / name / "manifest.json").write_text(json.dumps({"stage": "audit", "model": str(model)}))
    out = tmp_path / target
    assert main(["forecast", str(tmp_path / "first"), str(tmp_path / "second"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(run) in err[0] and "Traceback" not in err[0], err
    assert (run / "order.parquet").read_bytes() == before
    assert target == "run/order.parquet" or not out.exists()
