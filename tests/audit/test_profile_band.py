"""audit.profile: simultaneous band, lead cells, cohort sizes (issue #13, section 2).

Synthetic panels only (numpy). Tolerances
    Family-wise rate: on a null panel the simultaneous 95% band flags at least one cell with
    probability <= ~0.05 (bootstrap approximation). Over N independent seeded panels the number
    of panels with a flag is then Binomial(N, 0.05) at most; the test allows its 0.999 quantile.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from audit.profile import did, merge_cohorts, sample_per_cohort, significant, summarise

NEW_COLUMNS = ["event_time", "band_lower", "band_upper", "significant", "cohort_size"]


def null_panel(seed, n_control=150, per_cohort=(40,), steps=np.arange(0, 61, 10), pretrend=None, sigma=0.5):
    """Parallel trends, no effect. per_cohort[i] instances are trained in (steps[i], steps[i+1]]
    (cycled over the cohorts). pretrend: (cohort step, slope per checkpoint) added to that cohort
    BEFORE its base period (a violation of parallel trends)."""
    rng = np.random.default_rng(seed)
    ts = [np.full(n_control, np.nan)]
    for i, g in enumerate(steps[1:]):
        m = per_cohort[i % len(per_cohort)]
        ts.append(rng.integers(g - 9, g + 1, m).astype(float))
    ts = np.concatenate(ts)
    n = ts.size
    g = np.where(np.isnan(ts), np.nan, np.ceil(ts / 10) * 10)
    y = rng.normal(0, 1, n)[:, None] + (5.0 - np.log1p(steps / 10))[None, :] + rng.normal(0, sigma, (n, steps.size))
    if pretrend is not None:
        gp, slope = pretrend
        k = np.arange(steps.size)
        kb = list(steps).index(gp) - 1
        y[g == gp] += slope * np.minimum(k - kb, 0)[None, :]  # zero from the base period on
    panel = pd.DataFrame({"instance_id": np.repeat(np.arange(n), steps.size), "step": np.tile(steps, n),
                          "outcome": y.ravel()})
    return panel, pd.DataFrame({"instance_id": np.arange(n), "treatment_step": ts})


def test_new_columns_event_time_and_lead_cells():
    panel, tr = null_panel(0)
    p = did(panel, tr, n_boot=200, seed=1)
    for c in NEW_COLUMNS:
        assert c in p.columns
    cps = list(p.attrs["checkpoints"])
    ev = [cps.index(c) - cps.index(g) for g, c in zip(p["treatment_step"], p["step"])]
    assert p["event_time"].tolist() == ev
    leads = p[p["event_time"] < 0]
    # universal base period: event time -1 is the base itself (identically 0), not a cell
    assert len(leads) and (leads["event_time"] <= -2).all()
    assert sorted(leads.loc[leads["treatment_step"] == 60, "event_time"]) == [-6, -5, -4, -3, -2]
    assert (p["cohort_size"] == p["n_treated"]).all() and (p["cohort_size"] == 40).all()
    # the band is wider than the pointwise interval and contains the estimate
    assert (p["band_lower"] <= p["effect"]).all() and (p["effect"] <= p["band_upper"]).all()
    assert ((p["band_upper"] - p["band_lower"]) >= (p["upper"] - p["lower"]) - 1e-12).all()
    assert p.attrs["critical_value"] > 1.96
    assert (p["significant"] == ((p["band_lower"] > 0) | (p["band_upper"] < 0))).all()
    assert (significant(p) == p["significant"]).all()
    # the summaries use post-treatment cells only
    s = summarise(p)
    assert all(c >= g for key in ("instantaneous", "persistent", "residual") for g, c in s[key]["cells"])


def test_band_critical_value_is_the_max_t_quantile():
    panel, tr = null_panel(3)
    p = did(panel, tr, n_boot=300, seed=2)
    d = np.asarray(p.attrs["boot_effects"])
    t = np.max(np.abs(d - p["effect"].to_numpy()) / p["se"].to_numpy(), axis=1)
    crit = np.quantile(t, 0.95, method="inverted_cdf")
    assert p.attrs["critical_value"] == pytest.approx(crit)
    np.testing.assert_allclose(p["band_upper"], p["effect"] + crit * p["se"])


def test_planted_pretrend_is_flagged():
    panel, tr = null_panel(5, per_cohort=(60,), pretrend=(50, 0.5))
    p = did(panel, tr, n_boot=400, seed=0)
    lead50 = p[(p["treatment_step"] == 50) & (p["event_time"] < 0)]
    assert lead50["significant"].any(), lead50
    others = p[p["treatment_step"] != 50]
    assert not others["significant"].any()


def test_null_panels_family_wise_rate_within_the_level():
    n_panels = 120
    flagged = 0
    for seed in range(n_panels):
        panel, tr = null_panel(100 + seed, n_control=80, per_cohort=(30,), steps=np.arange(0, 51, 10))
        flagged += bool(did(panel, tr, n_boot=199, seed=seed)["significant"].any())
    assert flagged <= binom.ppf(0.999, n_panels, 0.05), flagged


def test_cohorts_of_one_to_three_instances_no_longer_flag_most_cells():
    rates = []
    for seed in range(10):
        panel, tr = null_panel(200 + seed, n_control=200, per_cohort=(1, 2, 3), steps=np.arange(0, 121, 10))
        p = did(panel, tr, n_boot=199, seed=seed)
        assert (p["cohort_size"] >= 10).all()
        rates.append(p["significant"].mean())
    assert np.mean(rates) < 0.05, rates


def test_merge_cohorts_adjacent_early_first():
    assert merge_cohorts({1: 2, 2: 3, 3: 6, 4: 20, 5: 30}, 10) == [[1, 2, 3], [4], [5]]
    # the last pool (2 and 3: 7 < 10) joins the group before it, not a group of its own below the minimum
    assert merge_cohorts({1: 20, 2: 3, 3: 4}, 10) == [[1, 2, 3]]
    assert merge_cohorts({1: 4}, 10) == []
    assert merge_cohorts({1: 4, 2: 5}, 1) == [[1], [2]]


def test_merged_cohort_label_base_and_lag():
    panel, tr = null_panel(7, per_cohort=(4, 4, 40, 40, 40, 40))
    p = did(panel, tr, n_boot=50, seed=0, min_cohort_size=8)
    # cohorts 10 and 20 (4 each) merge: labelled by the later one, base = checkpoint before the first
    assert p.attrs["base_steps"][20] == 0 and 10 not in p.attrs["base_steps"]
    assert (p.loc[p["treatment_step"] == 20, "cohort_size"] == 8).all()
    assert p.loc[p["treatment_step"] == 20, "event_time"].min() == 0  # no partially treated cell
    assert "lag_steps" in p.columns


def test_sample_per_cohort_is_stratified():
    rng = np.random.default_rng(0)
    ts = pd.Series(np.concatenate([rng.integers(1, 11, 3), rng.integers(11, 21, 500), rng.integers(21, 31, 80)]).astype(float))
    keep = sample_per_cohort(ts, [0, 10, 20, 30], n_per_cohort=50, min_cohort_size=10, seed=1)
    g = np.ceil(ts[keep] / 10)
    counts = g.value_counts().sort_index()
    # cohort 1 (3) merges with cohort 2: at most 50 from the merged cohort; 50 from cohort 3
    assert counts.get(3.0) == 50 and counts.get(1.0, 0) + counts.get(2.0, 0) == 50
    assert list(keep) == sorted(keep)
    assert (sample_per_cohort(ts, [0, 10, 20, 30], 50, 10, seed=1) == keep).all()


def test_event_time_curve_weighted_by_cohort_size_with_band():
    from audit.profile import event_time_curve

    panel, tr = null_panel(11, per_cohort=(10, 30, 60), steps=np.arange(0, 61, 10))
    p = did(panel, tr, n_boot=300, seed=0)
    curve = event_time_curve(p)
    for _, row in curve.iterrows():
        cells = p[p["event_time"] == row["event_time"]]
        w = cells["cohort_size"] / cells["cohort_size"].sum()
        assert row["effect"] == pytest.approx(float((w * cells["effect"]).sum()), abs=1e-12)
        assert row["lag_steps"] == pytest.approx(float((w * cells["lag_steps"]).sum()), abs=1e-9)
        assert row["n_cohorts"] == len(cells) and row["n_instances"] == cells["cohort_size"].sum()
    d = np.asarray(p.attrs["boot_effects"])
    e0 = (p["event_time"] == 0).to_numpy()
    w0 = p.loc[e0, "cohort_size"].to_numpy() / p.loc[e0, "cohort_size"].sum()
    se0 = (d[:, e0] @ w0).std(ddof=1)
    row0 = curve[curve["event_time"] == 0].iloc[0]
    assert row0["se"] == pytest.approx(se0, rel=1e-9)
    assert row0["band_lower"] < row0["effect"] < row0["band_upper"]
    assert curve.attrs["critical_value"] > 1.96
    assert (curve["event_time"] < 0).any() and not curve["significant"].any()  # null panel


def test_event_time_curve_recovers_a_planted_effect():
    from audit.profile import event_time_curve

    panel, tr = null_panel(12, per_cohort=(20, 80), steps=np.arange(0, 61, 10))
    g = np.ceil(tr.set_index("instance_id")["treatment_step"] / 10) * 10
    ev = (panel["step"].to_numpy() - panel["instance_id"].map(g).to_numpy()) / 10
    # 1 nat at event time 0, 0.5 at 1 for cohort sizes 20 and 80 alike
    panel["outcome"] -= np.where(ev == 0, 1.0, np.where(ev == 1, 0.5, 0.0))
    curve = event_time_curve(did(panel, tr, n_boot=300, seed=0)).set_index("event_time")
    assert curve.loc[0, "band_lower"] <= 1.0 <= curve.loc[0, "band_upper"] and curve.loc[0, "significant"]
    assert curve.loc[1, "band_lower"] <= 0.5 <= curve.loc[1, "band_upper"] and curve.loc[1, "significant"]
