"""audit.profile.summarise: memorisation summaries as Lesci et al. (2024) report them (issue #13, §3).

Instantaneous = the event-time curve at lag 0, persistent = the event-time curve averaged over
the positive lags of the panel (epoch 1), residual = the cells at the panel's last checkpoint;
each aggregates cohorts with cohort-size weights (Callaway & Sant'Anna's dynamic aggregation,
``differences``' ``aggregate('event')``), not an unweighted mean over cells. The panels have
cohorts of very different sizes and effects, so the two means differ by far more than noise.

Tolerances: point estimates are linear combinations of the cells, compared to 1e-12; the
``differences`` cross-check to 1e-8 (its regression estimator equals the 2x2 DiD); planted
truths must lie in the 99.9% interval (a miss has probability ~0.001 per summary).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from audit.profile import did, event_time_curve, summarise

STEPS = np.arange(0, 61, 10)  # checkpoints 0, 10, ..., 60: cohorts 10..60
SIZES = {10: 300, 20: 20, 30: 20, 40: 20, 50: 20, 60: 20}  # one large cohort, five small ones
BIG = 2.0  # planted memorisation (nats) of the large cohort at every checkpoint after training; 0 elsewhere


def uneven_panel(seed: int, n_control: int = 200):
    """Parallel trends; cohort 10 (300 instances) memorises BIG nats for good, the others nothing."""
    rng = np.random.default_rng(seed)
    ts = np.concatenate([np.full(n_control, np.nan)] + [rng.integers(g - 9, g + 1, m).astype(float)
                                                         for g, m in SIZES.items()])
    n = ts.size
    g = np.where(np.isnan(ts), np.nan, np.ceil(ts / 10) * 10)
    y = rng.normal(0, 1, n)[:, None] + (5.0 - np.log1p(STEPS / 10))[None, :] + rng.normal(0, 0.5, (n, STEPS.size))
    y[g == 10] -= BIG * (STEPS[None, :] >= 10)
    panel = pd.DataFrame({"instance_id": np.repeat(np.arange(n), STEPS.size), "step": np.tile(STEPS, n),
                          "outcome": y.ravel()})
    return panel, pd.DataFrame({"instance_id": np.arange(n), "treatment_step": ts})


def truth_at(e: int) -> float:
    """Planted event-time curve at lag e >= 0: cohort-size weighted over the cohorts observed at e."""
    cohorts = [g for g in SIZES if g + 10 * e <= STEPS[-1]]
    return sum(SIZES[g] * (BIG if g == 10 else 0.0) for g in cohorts) / sum(SIZES[g] for g in cohorts)


@pytest.fixture(scope="module")
def uneven():
    panel, tr = uneven_panel(0)
    return panel, tr, did(panel, tr, n_boot=400, seed=1)


def test_summaries_are_cohort_size_weighted_event_time_aggregates(uneven):
    *_, p = uneven
    s = summarise(p, confidence=0.999)
    post = p[p["event_time"] >= 0]
    curve = event_time_curve(p).set_index("event_time")
    lags = [e for e in curve.index if e >= 1]
    assert lags == [1, 2, 3, 4, 5]
    # instantaneous = the curve at lag 0; persistent = mean of the curve over positive lags
    assert s["instantaneous"]["effect"] == pytest.approx(curve.loc[0, "effect"], abs=1e-12)
    assert s["persistent"]["effect"] == pytest.approx(curve.loc[lags, "effect"].mean(), abs=1e-12)
    assert s["persistent"]["event_times"] == lags
    # residual = the cells at the last checkpoint (end of epoch 1), cohort-size weighted
    last = post[post["step"] == 60]
    assert s["residual"]["effect"] == pytest.approx(np.average(last["effect"], weights=last["cohort_size"]), abs=1e-12)
    # not the unweighted mean over cells that the summary used to report (~0.8 vs ~1.8 nats here)
    old = post[(post["step"] > post["treatment_step"]) & (post["step"] < 60)]["effect"].mean()
    assert abs(s["persistent"]["effect"] - old) > 0.5
    # the planted weighted truths lie in the (99.9%) intervals
    truths = {"instantaneous": truth_at(0), "persistent": np.mean([truth_at(e) for e in lags]),
              "residual": np.average([BIG if g == 10 else 0.0 for g in SIZES], weights=list(SIZES.values()))}
    for key, truth in truths.items():
        assert s[key]["method"] == "joint bootstrap"
        assert s[key]["lower"] <= truth <= s[key]["upper"], (key, truth, s[key])
        w = np.array(s[key]["weights"])
        assert len(w) == len(s[key]["cells"]) == s[key]["n_cells"] and w.sum() == pytest.approx(1.0, abs=1e-12)
    assert abs(s["persistent"]["effect"] - truths["persistent"]) < 0.2


def test_interval_is_the_weighted_mean_in_each_stored_draw(uneven):
    *_, p = uneven
    s = summarise(p)
    draws = np.asarray(p.attrs["boot_effects"])
    col = {cell: j for j, cell in enumerate(p.attrs["boot_cells"])}
    for key in ("instantaneous", "persistent", "residual"):
        idx = [col[tuple(c)] for c in s[key]["cells"]]
        boot = draws[:, idx] @ np.array(s[key]["weights"])
        assert s[key]["se"] == pytest.approx(boot.std(ddof=1), rel=1e-9)
        lo, hi = np.quantile(boot, [0.025, 0.975])
        assert s[key]["lower"] == pytest.approx(lo, rel=1e-9) and s[key]["upper"] == pytest.approx(hi, rel=1e-9)


def test_persistent_matches_the_differences_event_aggregation():
    """-ATT of ``differences.ATTgt(...).aggregate('event')`` at each positive relative period,
    averaged over those periods (its ``overall=True`` also averages lag 0 in)."""
    differences = pytest.importorskip("differences")
    panel, tr = uneven_panel(2)
    p = did(panel, tr, n_boot=0)
    s = summarise(p)
    g = np.ceil(tr.set_index("instance_id")["treatment_step"] / 10) * 10
    data = panel.assign(cohort=panel["instance_id"].map(g)).set_index(["instance_id", "step"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        att = differences.ATTgt(data=data, cohort_column="cohort", base_period="universal")
        att.fit(formula="outcome", est_method="reg", control_group="never_treated", progress_bar=False)
        ev = att.aggregate("event")
    ev.columns = [c[-1] for c in ev.columns]
    theirs = -ev["ATT"]
    assert s["instantaneous"]["effect"] == pytest.approx(theirs.loc[0], abs=1e-8)
    assert s["persistent"]["effect"] == pytest.approx(theirs[theirs.index > 0].mean(), abs=1e-8)
    assert s["persistent"]["method"] == "independent cohorts"  # no draws: the fallback se


def test_hand_built_profile_without_event_time_or_cohort_size():
    """Event time from the checkpoint grid (sorted steps), equal weights when cohort sizes are absent."""
    cells = [(10, 10, 1.0, 0.1), (10, 20, 0.5, 0.2), (10, 30, 0.3, 0.3), (20, 20, 0.8, 0.2), (20, 30, 0.2, 0.4)]
    p = pd.DataFrame(cells, columns=["treatment_step", "step", "effect", "se"])
    s = summarise(p)
    # lags 1: (10,20), (20,30) -> 0.35; lag 2: (10,30) -> 0.3; persistent = 0.325
    assert s["persistent"]["effect"] == pytest.approx(0.325)
    assert sorted(map(tuple, s["persistent"]["cells"])) == [(10, 20), (10, 30), (20, 30)]
    p["cohort_size"] = [30, 30, 30, 10, 10]
    s = summarise(p)
    assert s["persistent"]["effect"] == pytest.approx((0.75 * 0.5 + 0.25 * 0.2 + 0.3) / 2)
    assert s["instantaneous"]["effect"] == pytest.approx(0.75 * 1.0 + 0.25 * 0.8)
