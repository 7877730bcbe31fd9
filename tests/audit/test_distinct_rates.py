"""Rates count distinct sequences, not rows (issue #12, section 2), and membership AUC per
occurrence bucket (Kandpal et al. 2022)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from audit import aggregate, stats


def _table():
    # bucket 64-127: 4 distinct sequences, 64 copies each, all extractable (the canary case);
    # bucket 1: 20 distinct sequences, 5 extractable
    prompts, truths, ex, bucket, status = [], [], [], [], []
    for s in range(4):
        for _ in range(64):
            prompts.append([s, 1]); truths.append([s, 2]); ex.append(True); bucket.append("64-127")
            status.append("removed" if _ else "kept")
    for s in range(20):
        prompts.append([100 + s, 1]); truths.append([0, 0]); ex.append(s < 5); bucket.append("1"); status.append("unique")
    n = len(ex)
    return pa.table({"prompt": prompts, "truth": truths, "extractable": ex, "leading_matched": [0] * n,
                     "duplicate_bucket": bucket, "dedup_status": status})


def test_rates_and_intervals_count_distinct_sequences():
    s = aggregate.summarise(_table(), n_boot=None, seed=0)
    rows = {r["group"]: r for r in s["extractable_by_duplicates"]}
    assert (rows["64-127"]["n"], rows["64-127"]["k"]) == (4, 4)
    lo, hi = stats.wilson_interval(4, 4)
    assert abs(rows["64-127"]["lower"] - lo) < 1e-12 and 0.50 < lo < 0.52 and hi == 1.0
    assert (rows["1"]["n"], rows["1"]["k"]) == (20, 5)
    assert (s["extractable"]["n"], s["extractable"]["k"]) == (24, 9)
    st = {r["group"]: r for r in s["extractable_by_dedup_status"]}
    assert st["removed"]["n"] == 4 and st["kept"]["n"] == 4 and st["unique"]["n"] == 20
    assert "distinct" in s["rates_count"]


def test_means_count_distinct_sequences_as_the_rates_do():
    """mean_leading_matched and the mean Pythia score weigh each distinct sequence once, like the
    rates beside them: 64 copies of a fully extracted canary do not outweigh 20 other sequences."""
    t = _table()
    lead = [32 if e else 0 for e in t.column("extractable").to_pylist()]
    t = t.set_column(t.schema.get_field_index("leading_matched"), "leading_matched", pa.array(lead))
    t = t.append_column("pythia_score", pa.array([x / 32 for x in lead], type=pa.float64()))
    s = aggregate.summarise(t, n_boot=None, seed=0)
    assert s["mean_leading_matched"] == 32 * 9 / 24 and s["pythia_score"]["mean"] == 9 / 24


def _pairwise_auc(pos, neg) -> float:
    """P(member score > non-member score) + 1/2 P(tie), over every pair (Mann-Whitney U / n1 n0)."""
    return sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))


def test_membership_auc_per_occurrence_bucket():
    """Each bucket's AUC is the pairwise AUC of that bucket's own rows (to rounding), and the
    planted design shows in it: in bucket 1 the score carries no information (true AUC 1/2),
    in 8-15 members score 3 sd higher (true AUC Phi(3 / sqrt 2)); each within 4 of its
    Hanley-McNeil (1982) standard errors, Var = (A(1-A) + (n1-1)(Q1-A^2) + (n0-1)(Q2-A^2)) / (n1 n0),
    Q1 = A / (2 - A), Q2 = 2 A^2 / (1 + A) (exact for A = 1/2: (n1 + n0 + 1) / (12 n1 n0))."""
    import math

    from scipy.stats import norm

    rng = np.random.default_rng(0)
    n = 400
    bucket = np.where(np.arange(n) < 200, "1", "8-15")
    member = rng.random(n) < 0.5
    # informative only on the duplicated bucket
    score = rng.normal(size=n) + np.where(bucket == "8-15", 3.0 * member, 0.0)
    t = pa.table({"prompt": [[i] for i in range(n)], "truth": [[0]] * n, "extractable": [False] * n,
                  "leading_matched": [0] * n, "duplicate_bucket": bucket.tolist(), "member": member.tolist(),
                  "score_loss": score})
    s = aggregate.summarise(t, n_boot=None, seed=0)
    by = {r["group"]: r for r in s["membership_by_duplicates"]}
    assert list(by) == ["1", "8-15"]
    for g, truth in (("1", 0.5), ("8-15", float(norm.cdf(3.0 / math.sqrt(2))))):
        m = bucket == g
        n1, n0 = int(member[m].sum()), int((~member[m]).sum())
        assert (by[g]["n_members"], by[g]["n_non_members"]) == (n1, n0)
        auc = by[g]["roc_auc"]["loss"]
        assert auc == pytest.approx(_pairwise_auc(score[m & member], score[m & ~member]), abs=1e-12), g
        q1, q2 = truth / (2 - truth), 2 * truth**2 / (1 + truth)
        se = math.sqrt((truth * (1 - truth) + (n1 - 1) * (q1 - truth**2) + (n0 - 1) * (q2 - truth**2)) / (n1 * n0))
        assert abs(auc - truth) <= 4 * se, (g, auc, truth, se)


def test_summarise_reads_membership_scores_only_for_the_membership_section():
    """A section list without membership (what a report derives for an older summary.json)
    never converts the score columns, as before the aggregation was shared."""
    import pyarrow as pa

    from audit.aggregate import summarise

    t = pa.table({"extractable": [True, False], "leading_matched": [3, 1], "member": [True, False],
                  "score_odd": ["not", "numbers"]})
    assert summarise(t, None, 0, sections=("extractable",))["extractable"]["k"] == 1


def test_the_audit_summary_line_says_its_rate_is_over_distinct_sequences(capsys):
    """'312 sequences: 3 extractable (1.7%)' read as 3 of 312 when the rate is 3 of 178 distinct."""
    from pathlib import Path

    from pipelines.cli import _print_audit

    _print_audit(aggregate.summarise(_table(), n_boot=None, seed=0) | {"sequences": {"n": 276}}, Path("out"))
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("276 sequences, 24 distinct: 9 extractable (37.5% of the distinct"), first


def _copies_table():
    """4 member windows sampled 64 times each (canaries: identical rows, identical scores) among 30 distinct member
    and 30 distinct non-member windows sampled once."""
    rng = np.random.default_rng(5)
    prompts, member, score = [], [], []
    for s in range(4):
        x = float(rng.normal(1.0))
        prompts += [[s]] * 64; member += [True] * 64; score += [x] * 64
    for s in range(60):
        prompts.append([100 + s]); member.append(s < 30); score.append(float(rng.normal(0.5 if s < 30 else 0.0)))
    n = len(member)
    return pa.table({"prompt": prompts, "truth": [[0]] * n, "extractable": [False] * n, "leading_matched": [0] * n,
                     "member": member, "score_loss": score})


def test_the_membership_auc_interval_resamples_distinct_sequences():
    """Copies of one window are not independent trials (Carlini et al. 2022): the ROC-AUC's bootstrap resamples
    distinct sequences (prompt + truth), each drawn with all its copies (a cluster bootstrap); the AUC itself stays
    over every row. Recomputed here: clusters in first-appearance order, ``rng.integers(0, m, size=m)`` per
    replicate, the rank-sum AUC, one-class replicates skipped. Before: the rows were resampled one by one, as if
    the 64 copies were 64 trials (std 0.060 here; 0.103 by clusters)."""
    from scipy.stats import rankdata

    t = _copies_table()
    s = aggregate.summarise(t, n_boot=300, seed=0)["membership"]["scores"]["loss"]
    y = np.array(t.column("member").to_pylist())
    x = np.array(t.column("score_loss").to_pylist())
    keys = aggregate.sequence_keys(t.column("prompt").to_pylist(), t.column("truth").to_pylist())
    first: dict = {}
    code = np.array([first.setdefault(k, len(first)) for k in keys])
    rows_of = [np.flatnonzero(code == c) for c in range(len(first))]
    rng = np.random.default_rng(0)
    aucs = []
    for _ in range(300):
        rows = np.concatenate([rows_of[c] for c in rng.integers(0, len(first), size=len(first))])
        yb, xb = y[rows], x[rows]
        n1 = int(yb.sum())
        if 0 < n1 < yb.size:
            aucs.append((rankdata(xb)[yb].sum() - n1 * (n1 + 1) / 2) / (n1 * (yb.size - n1)))
    boot = s["roc_auc_boot"]
    assert boot["std"] == pytest.approx(np.std(aucs, ddof=1), abs=1e-12)
    assert (boot["lower"], boot["upper"]) == pytest.approx(tuple(np.percentile(aucs, [2.5, 97.5])), abs=1e-12)
    assert s["roc_auc"] == pytest.approx(stats.roc_auc(x, y), abs=1e-15)  # the point estimate: every row
