"""Causal memorisation profiles by difference-in-differences (Lesci et al. 2024).

Lesci, Meister, Hofmann, Vlachos & Cotterell (2024), "Causal Estimation of Memorisation
Profiles": the memorisation of an instance is the causal effect of training on it on the
model's prediction of it, estimated per (treatment step, checkpoint) with the
difference-in-differences estimator of Callaway & Sant'Anna (2021).

Design
    * Outcome ``Y_c(x)``: a per-instance number at checkpoint ``c``; by default the mean
      per-token surprisal, so LOWER = better predicted.
    * Treatment: ``treatment_step``, the step at which the instance was FIRST trained on; one
      treatment per instance, so the panel must end before any second exposure
      (:func:`audit.checkpoints.run_profile` ends it at epoch 1 and leaves out instances
      trained twice before). Null/NaN = never trained (held-out data) = control.
    * Cohorts: cohort ``g`` = the first checkpoint with ``g >= s``; its base period is the last
      checkpoint before ``g``. Instances with ``s <= first checkpoint`` have no base period and
      are dropped (``attrs["n_dropped_no_base"]``); instances first trained AFTER the last
      checkpoint are never-treated controls, as in Callaway & Sant'Anna and the
      ``differences`` package (``attrs["n_treated_after_panel"]``). Controls are NEVER-treated
      instances only (not "not-yet-treated"): every cell has the same comparison group.
    * Estimate, for each cohort ``g`` and checkpoint ``c >= g``::

          effect(g, c) = -( mean_{cohort g}[Y_c - Y_base(g)] - mean_{never}[Y_c - Y_base(g)] )

      POSITIVE = memorised (lower surprisal than the counterfactual): minus the unconditional
      ATT(g, c) of Callaway & Sant'Anna with never-treated controls.
    * Uncertainty: a seeded bootstrap over INSTANCES, stratified (each replicate resamples every
      cohort and the control group separately; one joint draw shared by all cells). ``se`` =
      standard deviation of the draws (ddof=1), ``lower``/``upper`` = pointwise percentile
      interval at ``confidence``. Significance is read from the SIMULTANEOUS band
      ``band_lower``/``band_upper`` over all cells (max-t critical value from the same draws,
      as the ``differences`` package's multiplier bootstrap): family-wise rate ~``1 - confidence``.
    * Lead cells: pre-treatment checkpoints (``event_time <= -2``) against the same base
      period: the test of no anticipation and parallel trends, covered by the band.
    * Small cohorts: adjacent early cohorts are merged (:func:`merge_cohorts`).

Assumptions (not testable here): parallel trends between each cohort and the held-out data, no
anticipation, no interference (near-duplicates in the data break the last).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd

__all__ = ["did", "summarise", "significant", "merge_cohorts", "sample_per_cohort", "event_time_curve", "BootDraws",
           "PROFILE_COLUMNS"]

PROFILE_COLUMNS = ["treatment_step", "step", "event_time", "lag_steps", "effect", "se", "lower", "upper", "band_lower",
                   "band_upper", "significant", "n_treated", "n_control", "cohort_size"]
_SHOW = 5  # how many offending values an error message lists


def _require_columns(df, required: list[str], name: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    if missing := [c for c in required if c not in df.columns]:
        unknown = [c for c in df.columns if c not in required]
        raise ValueError(f"{name} is missing column(s) {missing} (required: {required}); got {list(df.columns)}"
                         + (f", of which {unknown} are not used" if unknown else ""))


def _py(v):
    """A numpy scalar as the Python scalar (for readable messages)."""
    return v.item() if isinstance(v, np.generic) else v


def _show(values) -> str:
    values = list(values)
    head = ", ".join(repr(_py(v)) for v in values[:_SHOW])
    return f"[{head}{', ...' if len(values) > _SHOW else ''}] ({len(values)} in all)"


def _check_confidence(confidence, profile: pd.DataFrame | None = None) -> float:
    """``confidence`` checked; None: the profile's ``attrs["confidence"]``, else 0.95."""
    confidence = float(profile.attrs.get("confidence", 0.95) if confidence is None else confidence)
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return confidence


def _wide_panel(panel: pd.DataFrame):
    """(instance ids, sorted checkpoints, Y (n_instances, n_checkpoints)) with full validation."""
    _require_columns(panel, ["instance_id", "step", "outcome"], "panel")
    if len(panel) == 0:
        raise ValueError("panel is empty")
    try:
        steps = pd.to_numeric(panel["step"]).to_numpy()  # a numeric column as it is
    except (TypeError, ValueError):
        raise ValueError(f"panel['step'] must be integer checkpoint steps, got dtype {panel['step'].dtype}") from None
    if not np.issubdtype(steps.dtype, np.integer):
        steps = steps.astype(np.float64)
        if not np.isfinite(steps).all() or (steps != np.round(steps)).any():
            raise ValueError("panel['step'] must be integer checkpoint steps (no NaN, no fractions)")
    steps = steps.astype(np.int64)
    try:
        y = panel["outcome"].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"panel['outcome'] must be numeric, got dtype {panel['outcome'].dtype}") from None
    if (bad := ~np.isfinite(y)).any():
        rows = [tuple(map(_py, r)) for r in panel.loc[bad, ["instance_id", "step"]].itertuples(index=False, name=None)]
        raise ValueError(f"panel['outcome'] has {int(bad.sum())} NaN/infinite value(s) at (instance_id, step) {_show(rows)}")
    if panel["instance_id"].isna().any():
        raise ValueError("panel['instance_id'] contains nulls")

    inst_code, ids = pd.factorize(panel["instance_id"], sort=True)
    checkpoints, step_code = np.unique(steps, return_inverse=True)
    if checkpoints.size < 2:
        raise ValueError(f"need at least 2 checkpoints (a base period and a treated one), got {checkpoints.tolist()}")
    n, C = len(ids), checkpoints.size

    flat = inst_code.astype(np.int64) * C + step_code
    counts = np.bincount(flat, minlength=n * C)

    def cells(mask: np.ndarray) -> str:
        k = np.flatnonzero(mask)
        pairs = [(_py(ids[j // C]), int(checkpoints[j % C])) for j in k[:_SHOW]]
        return f"{pairs}{' ...' if k.size > _SHOW else ''} ({k.size} in all"

    if (counts > 1).any():
        raise ValueError(f"panel has duplicate (instance_id, step) rows: {cells(counts > 1)})")
    if (counts == 0).any():
        raise ValueError("every instance must be observed at every checkpoint; missing (instance_id, step): "
                         f"{cells(counts == 0)}; checkpoints {checkpoints.tolist()})")
    Y = np.empty(n * C, dtype=np.float64)
    Y[flat] = y
    return ids, checkpoints, Y.reshape(n, C)


def _treatment_steps(treatments: pd.DataFrame, ids: pd.Index) -> np.ndarray:
    """float64 treatment step per panel instance (NaN = never treated), with validation."""
    _require_columns(treatments, ["instance_id", "treatment_step"], "treatments")
    tid = treatments["instance_id"]
    if tid.isna().any():
        raise ValueError("treatments['instance_id'] contains nulls")
    if len(dup := tid[tid.duplicated()].unique()):
        raise ValueError(f"treatments lists instance_id(s) more than once (first exposure only: one row each): {_show(dup)}")
    if len(absent := ids[~ids.isin(tid)]):
        raise ValueError(f"instance(s) of the panel are absent from treatments: {_show(absent)}")
    if len(extra := tid[~tid.isin(ids)]):
        raise ValueError(f"treatments lists instance(s) absent from the panel: {_show(extra)}")
    try:
        ts = pd.to_numeric(treatments["treatment_step"]).astype("float64")
    except (TypeError, ValueError):
        raise ValueError("treatments['treatment_step'] must be numeric steps or null, got dtype "
                         f"{treatments['treatment_step'].dtype}") from None
    if np.isinf(ts.to_numpy()).any():
        raise ValueError("treatments['treatment_step'] must be finite or null (null = never trained)")
    return pd.Series(ts.to_numpy(), index=pd.Index(tid)).reindex(ids).to_numpy()


class BootDraws(np.ndarray):
    """Read-only ``(n_boot, n_cells)`` float array of bootstrap draws, as kept in ``attrs``.

    pandas compares attrs in ``pd.concat`` (a plain array's ``==`` has no truth value) and
    deep-copies them nearly everywhere; so ``==`` / ``!=`` compare WHOLE arrays and return a
    bool, ``copy.deepcopy`` shares the buffer, and indexing or arithmetic give plain ndarrays.
    """

    def __new__(cls, draws):
        obj = np.array(draws, dtype=np.float64).view(cls)  # own copy
        obj.flags.writeable = False
        return obj

    def __eq__(self, other):
        return self is other or (isinstance(other, np.ndarray)
                                 and bool(np.array_equal(np.asarray(self), np.asarray(other))))

    def __ne__(self, other):
        return not self.__eq__(other)

    def __deepcopy__(self, memo=None):
        return self

    __copy__ = __deepcopy__

    def __getitem__(self, key):
        return np.asarray(self).__getitem__(key)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = lambda x: np.asarray(x) if isinstance(x, BootDraws) else x
        if "out" in kwargs:
            kwargs["out"] = tuple(plain(o) for o in kwargs["out"])
        return getattr(ufunc, method)(*(plain(x) for x in inputs), **kwargs)


_SUBSCRIPTS = {(1, 1): "j,j->", (1, 2): "j,jk->k", (2, 1): "ij,j->i", (2, 2): "ij,jk->ik"}


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` (1-D or 2-D) by einsum, not BLAS: summed in one order whatever the thread count."""
    return np.einsum(_SUBSCRIPTS[a.ndim, b.ndim], a, b)


def _max_t(draws: np.ndarray, effect: np.ndarray, se: np.ndarray, confidence: float) -> float:
    """Critical value of the simultaneous band: the ``confidence`` quantile over draws of
    ``max_j |draw_j - effect_j| / se_j`` over the cells with a positive finite se (NaN if none)."""
    ok = np.isfinite(se) & (se > 0)
    if not ok.any():
        return float("nan")
    t = np.max(np.abs(draws[:, ok] - effect[ok]) / se[ok], axis=1)
    return float(np.quantile(t, confidence, method="inverted_cdf"))


def _band(effect: np.ndarray, se: np.ndarray, crit: float):
    """``(lower, upper, significant)`` of the band ``effect +- crit * se``; NaN where se is 0 or NaN."""
    ok = np.isfinite(se) & (se > 0)
    lower, upper = np.where(ok, effect - crit * se, np.nan), np.where(ok, effect + crit * se, np.nan)
    with np.errstate(invalid="ignore"):
        return lower, upper, (lower > 0) | (upper < 0)


def merge_cohorts(sizes: dict, min_cohort_size: int) -> list[list]:
    """Groups of adjacent cohorts, each of at least ``min_cohort_size`` instances.

    ``sizes``: cohort key (sortable) -> instances. From the earliest cohort, adjacent cohorts
    are pooled until the pool reaches the minimum; a last pool still below it joins the group
    before it, or, with none, is dropped.

    >>> merge_cohorts({1: 2, 2: 3, 3: 6, 4: 20}, 10)
    [[1, 2, 3], [4]]
    """
    min_cohort_size = max(1, int(min_cohort_size))
    groups, pool, n = [], [], 0
    for k in sorted(sizes):
        pool.append(k)
        n += int(sizes[k])
        if n >= min_cohort_size:
            groups.append(pool)
            pool, n = [], 0
    if pool and groups:
        groups[-1].extend(pool)
    return groups


def _cohort_index(ts: np.ndarray, checkpoints: np.ndarray) -> np.ndarray:
    """Checkpoint index of each instance's cohort (first checkpoint >= its step); -1 = never."""
    never = np.isnan(ts)
    return np.where(never, -1, np.searchsorted(checkpoints, np.where(never, 0, ts), side="left"))


def sample_per_cohort(treatment_steps: pd.Series, checkpoints, n_per_cohort: int, min_cohort_size: int = 1,
                      seed: int = 0) -> np.ndarray:
    """Stratified sample of treated instances: at most ``n_per_cohort`` per cohort, as Lesci et
    al. (2024) sample a fixed number per cohort. Cohorts are :func:`did`'s (merged below
    ``min_cohort_size``). Returns the sampled index labels of ``treatment_steps`` in their
    original order (seeded)."""
    checkpoints = np.asarray(sorted(int(c) for c in checkpoints))
    ts = pd.to_numeric(treatment_steps).astype("float64").to_numpy()
    kidx = _cohort_index(ts, checkpoints)
    ok = (kidx >= 1) & (kidx < checkpoints.size)
    ks, counts = np.unique(kidx[ok], return_counts=True)
    rng = np.random.default_rng(seed)
    keep = np.zeros(ts.size, dtype=bool)
    for group in merge_cohorts(dict(zip(ks.tolist(), counts.tolist())), min_cohort_size):
        members = np.flatnonzero(ok & np.isin(kidx, group))
        keep[members[np.sort(rng.permutation(members.size)[: int(n_per_cohort)])]] = True
    return treatment_steps.index.to_numpy()[keep]


def did(panel: pd.DataFrame, treatments: pd.DataFrame, n_boot: int = 200, seed: int = 0, confidence: float = 0.95,
        *, min_cohort_size: int = 10, leads: bool = True) -> pd.DataFrame:
    """Difference-in-differences memorisation profile, one row per (cohort, checkpoint).

    * ``panel``: columns ``instance_id``, ``step`` (integer checkpoint step), ``outcome``
      (float); every instance at every checkpoint, once.
    * ``treatments``: columns ``instance_id``, ``treatment_step``; one row per panel instance.
    * ``n_boot``: bootstrap replicates, seeded by ``seed`` (``numpy.random.default_rng``); 0 = point estimates only
      (``se``, ``lower``, ``upper`` and the band NaN), 1 gives intervals but a NaN ``se`` and band.
    * ``min_cohort_size``: 1-3 instances give a cohort (almost) no treated-side variance. A
      merged cohort is labelled by its LAST checkpoint; its base period is the checkpoint
      before its FIRST member's cohort; the partially treated checkpoints between are no cells.
    * ``leads``: also return the lead cells, against the same ("universal") base period.

    Columns: ``treatment_step`` (cohort g: first checkpoint that has seen all its instances),
    ``step`` (checkpoint c), ``event_time`` (index of c minus index of g; negative = lead),
    ``lag_steps`` (c minus the cohort's mean training step), ``effect``, ``se``, ``lower``,
    ``upper``, ``band_lower``, ``band_upper`` (``effect_j +- crit * se_j`` over ALL cells; NaN
    where se is 0 or NaN), ``significant`` (the band excludes 0), ``n_treated`` (=
    ``cohort_size``), ``n_control``, ``cohort_size``; sorted by (treatment_step, step).

    ``attrs``: ``confidence``, ``n_boot``, ``seed``, ``checkpoints`` (tuple), ``base_steps``
    ({g: base checkpoint}), ``cohorts`` ({g: [member cohort steps]}), ``critical_value``,
    ``min_cohort_size``, ``n_dropped_no_base``, ``n_dropped_small``, ``n_treated_after_panel``;
    with ``n_boot > 0`` also ``boot_effects`` (:class:`BootDraws`, (n_boot, rows), columns in
    row order) and ``boot_cells`` (the (treatment_step, step) of each column), for
    :func:`summarise`. pandas drops attrs in some operations and ``to_parquet`` writes none;
    :func:`summarise` then falls back to independent cohorts.

    ValueError: missing/duplicate (instance, checkpoint) cells, missing columns, instances in
    only one of ``panel`` and ``treatments``, non-finite outcomes, fewer than two checkpoints,
    or no never-treated instance.

    Example: instance 0 is trained on at step 2 and its surprisal falls from 3 to 2 nats; the
    never-trained instances 1 and 2 stay at 3 (and 4): 1 nat of memorisation.

    >>> panel = pd.DataFrame({"instance_id": [0, 0, 1, 1, 2, 2], "step": [1, 2] * 3,
    ...                       "outcome": [3.0, 2.0, 3.0, 3.0, 4.0, 4.0]})
    >>> treatments = pd.DataFrame({"instance_id": [0, 1, 2], "treatment_step": [2, None, None]})
    >>> p = did(panel, treatments, n_boot=0, min_cohort_size=1)
    >>> p[["treatment_step", "step", "event_time", "effect", "n_control"]].to_dict("records")
    [{'treatment_step': 2, 'step': 2, 'event_time': 0, 'effect': 1.0, 'n_control': 2}]
    """
    if isinstance(n_boot, (bool, np.bool_)) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    n_boot = int(n_boot)
    confidence = _check_confidence(confidence)
    ids, checkpoints, Y = _wide_panel(panel)
    ts = _treatment_steps(treatments, ids)
    C = checkpoints.size

    never = np.isnan(ts)
    kidx = _cohort_index(ts, checkpoints)
    after_panel = ~never & (kidx >= C)  # first trained on after the last checkpoint: untreated here
    no_base = ~never & (kidx == 0)  # cohort = first checkpoint: no base period, dropped
    control = never | after_panel
    n_control = int(control.sum())
    if n_control == 0:
        raise ValueError("no never-treated instances (treatment_step null): the control group is empty")

    treated = ~control & ~no_base
    ks, counts = np.unique(kidx[treated], return_counts=True)
    groups = merge_cohorts(dict(zip(ks.tolist(), counts.tolist())), min_cohort_size)
    in_group = np.isin(kidx, [k for grp in groups for k in grp]) & treated
    rng = np.random.default_rng(seed)

    def boot_means(Ys: np.ndarray) -> np.ndarray:
        """(n_boot, C) means of bootstrap resamples of the rows of Ys."""
        m = Ys.shape[0]
        w = rng.multinomial(m, np.full(m, 1.0 / m), size=n_boot).astype(np.float64)
        return _dot(w, Ys) / m

    mean_c = Y[control].mean(axis=0)
    boot_c = boot_means(Y[control]) if n_boot else None

    parts, boot_parts = [], []  # boot_parts: (n_boot, cells of the cohort) draws, in the order of `parts`
    base_steps, members_of = {}, {}
    for grp in groups:
        k, b = grp[-1], grp[0] - 1  # b, the base: the last checkpoint before any member was trained on
        mask = np.isin(kidx, grp) & treated
        Yt = Y[mask]
        cols = np.array((list(range(b)) if leads else []) + list(range(k, C)), dtype=np.int64)
        mean_t = Yt.mean(axis=0)
        # -( [mean_t(c) - mean_t(base)] - [mean_c(c) - mean_c(base)] )
        eff = -((mean_t[cols] - mean_t[b]) - (mean_c[cols] - mean_c[b]))
        n_cells = cols.size
        se = lower = upper = np.full(n_cells, np.nan)
        if n_boot:
            bt = boot_means(Yt)
            beff = -((bt[:, cols] - bt[:, [b]]) - (boot_c[:, cols] - boot_c[:, [b]]))
            if n_boot > 1:
                se = beff.std(axis=0, ddof=1)
            lower, upper = np.quantile(beff, [(1 - confidence) / 2, 1 - (1 - confidence) / 2], axis=0)
            boot_parts.append(beff)
        g = int(checkpoints[k])
        base_steps[g] = int(checkpoints[b])
        members_of[g] = [int(checkpoints[j]) for j in grp]
        size = np.full(n_cells, Yt.shape[0], dtype=np.int64)
        parts.append(pd.DataFrame({
            "treatment_step": np.full(n_cells, g, dtype=np.int64), "step": checkpoints[cols].astype(np.int64),
            "event_time": (cols - k).astype(np.int64),
            "lag_steps": checkpoints[cols].astype(np.float64) - float(ts[mask].mean()),
            "effect": eff, "se": se, "lower": lower, "upper": upper, "n_treated": size,
            "n_control": np.full(n_cells, n_control, dtype=np.int64), "cohort_size": size,
        }))
    # sorted by (treatment_step, step): the groups ascend, and so do the columns of each
    ints = ("treatment_step", "step", "event_time", "n_treated", "n_control", "cohort_size")
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({
        c: pd.Series(dtype="int64" if c in ints else "bool" if c == "significant" else "float64")
        for c in PROFILE_COLUMNS})

    # Simultaneous band (the differences package's multiplier-bootstrap critical value).
    crit, draws = float("nan"), None
    effect, se = out["effect"].to_numpy(), out["se"].to_numpy()
    if n_boot:
        draws = np.concatenate(boot_parts, axis=1) if boot_parts else np.empty((n_boot, 0))
        crit = _max_t(draws, effect, se, confidence)
    out["band_lower"], out["band_upper"], out["significant"] = _band(effect, se, crit)
    out = out[PROFILE_COLUMNS]
    out.attrs.update(
        confidence=confidence, n_boot=n_boot, seed=seed, checkpoints=tuple(int(c) for c in checkpoints),
        base_steps=base_steps, cohorts=members_of, critical_value=crit, min_cohort_size=int(min_cohort_size),
        n_dropped_no_base=int(no_base.sum()), n_dropped_small=int((treated & ~in_group).sum()),
        n_treated_after_panel=int(after_panel.sum()),
    )
    if n_boot:
        out.attrs["boot_effects"] = BootDraws(draws)
        out.attrs["boot_cells"] = [(int(g), int(c)) for g, c in zip(out["treatment_step"], out["step"])]
    return out


def significant(profile: pd.DataFrame) -> pd.Series:
    """Boolean Series (index of ``profile``): the simultaneous band [``band_lower``,
    ``band_upper``] excludes 0 when the profile has it (did()'s output), else the interval
    [``lower``, ``upper``] does (hand-built frames); NaN bounds: False."""
    cols = ["band_lower", "band_upper"] if {"band_lower", "band_upper"} <= set(profile.columns) else ["lower", "upper"]
    _require_columns(profile, cols, "profile")
    lower, upper = (profile[c].astype("float64") for c in cols)
    return ((lower > 0) | (upper < 0)).rename("significant")


def event_time_curve(profile: pd.DataFrame, *, confidence: float | None = None) -> pd.DataFrame:
    """Persistent memorisation as Lesci et al. report it: the event-time curve.

    For each event time e (checkpoints since the cohort's first checkpoint; leads e < 0 kept as
    the pre-trend check), the effects of the cohorts observed at e averaged with cohort-size
    weights (Callaway & Sant'Anna's "dynamic" aggregation). With did()'s draws the same mean is
    taken in each draw: ``se`` and a simultaneous band (max-t); without them ``se`` treats
    cohorts as independent and the band is the pointwise normal interval. Cohort shares are
    fixed, not estimated (Lesci et al. sample a fixed number per cohort), so the se leaves out
    the shares' noise that ``differences``' ``aggregate('event')`` adds (ours 0.93-1.02 of
    theirs). Event time counts checkpoints, not steps: on log-spaced grids ``lag_steps`` gives
    the cohorts' weighted mean lag in optimizer steps.

    Columns: ``event_time``, ``lag_steps``, ``effect``, ``se``, ``band_lower``, ``band_upper``,
    ``significant``, ``n_cohorts``, ``n_instances``; attrs ``critical_value``.
    """
    _require_columns(profile, ["treatment_step", "step", "event_time", "effect", "se", "cohort_size"], "profile")
    confidence = _check_confidence(confidence, profile)
    p = profile.reset_index(drop=True)
    draws = _joint_draws(p)
    events = np.array(sorted(p["event_time"].unique()), dtype=np.int64)
    W = np.zeros((len(p), events.size))
    e, size = p["event_time"].to_numpy(), p["cohort_size"].to_numpy(dtype=np.float64)
    for j, ev in enumerate(events):
        W[:, j] = _share(size, e == ev)
    eff = _dot(p["effect"].to_numpy(), W)
    lag = _dot(p["lag_steps"].to_numpy(), W) if "lag_steps" in p.columns else np.full(events.size, np.nan)
    if draws is not None:
        bd = _dot(draws, W)
        se = bd.std(axis=0, ddof=1)
        crit = _max_t(bd, eff, se, confidence)
    else:
        se = np.sqrt(_dot(p["se"].to_numpy() ** 2, W**2))
        crit = NormalDist().inv_cdf(0.5 + confidence / 2)
    lo, hi, sig = _band(eff, se, crit)
    out = pd.DataFrame({
        "event_time": events, "lag_steps": lag, "effect": eff, "se": se, "band_lower": lo, "band_upper": hi,
        "significant": sig, "n_cohorts": (W > 0).sum(axis=0).astype(np.int64),
        "n_instances": np.array([int(size[e == ev].sum()) for ev in events], dtype=np.int64),
    })
    out.attrs["critical_value"] = crit
    return out


def _joint_draws(profile: pd.DataFrame):
    """The did() bootstrap draws as an ``(n_boot, len(profile))`` array, columns in the
    profile's row order, or None when they cannot be trusted to match the rows (conditions:
    :func:`summarise`, "joint bootstrap"; each cell once)."""
    draws, cells = profile.attrs.get("boot_effects"), profile.attrs.get("boot_cells")
    if draws is None or cells is None:
        return None
    try:
        draws = np.asarray(draws, dtype=np.float64)
        col = {(int(g), int(c)): j for j, (g, c) in enumerate(cells)}
        rows = [(int(g), int(c)) for g, c in zip(profile["treatment_step"], profile["step"])]
    except (TypeError, ValueError):
        return None
    if (draws.ndim != 2 or draws.shape[0] < 2 or not draws.shape[1] == len(col) == len(rows) == len(cells)
            or set(rows) != set(col)):
        return None
    return draws[:, [col[r] for r in rows]]


def _combine(cells: pd.DataFrame, w: np.ndarray, draws: np.ndarray | None, confidence: float) -> dict:
    """Weighted effect ``sum_j w_j effect_j`` over the cells, with its se and interval by the
    joint bootstrap (``draws``: (n_boot, len(cells))) or, ``draws`` None, with independent
    cohorts: se = sqrt( sum_g (sum_{cells j of cohort g} w_j se_j)^2 ) (see :func:`summarise`)."""
    effect = float(_dot(cells["effect"].to_numpy(dtype=np.float64), w)) if len(cells) else float("nan")
    se = lower = upper = float("nan")
    if len(cells) and draws is not None:
        boot = _dot(draws, w)
        se = float(boot.std(ddof=1))
        lower, upper = (float(x) for x in np.quantile(boot, [(1 - confidence) / 2, 1 - (1 - confidence) / 2]))
    elif len(cells):
        per_cohort = (cells["se"].astype("float64") * w).groupby(cells["treatment_step"].to_numpy()).sum(min_count=1)
        se = float(math.sqrt(float((per_cohort**2).sum()))) if per_cohort.notna().all() else float("nan")
        z = NormalDist().inv_cdf(0.5 + confidence / 2)
        lower, upper = effect - z * se, effect + z * se
    return {"effect": effect, "se": se, "lower": lower, "upper": upper, "n_cells": len(cells),
            "cells": [(int(g), int(c)) for g, c in zip(cells["treatment_step"], cells["step"])],
            "weights": [float(x) for x in w], "method": "independent cohorts" if draws is None else "joint bootstrap"}


def _share(size: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Cohort-share weights: ``size / size[m].sum()`` on the rows of mask ``m``, 0 elsewhere."""
    w = np.zeros(size.size)
    w[m] = size[m] / size[m].sum()  # no row: an empty assignment
    return w


def summarise(profile: pd.DataFrame, final_step: int | None = None, *, confidence: float | None = None) -> dict:
    """Instantaneous, persistent and residual memorisation of a :func:`did` profile, as Lesci
    et al. report them.

    Each is a weighted sum of post-treatment cells (never leads) with the cohort-share weights of
    :func:`event_time_curve` (``differences``' ``ATTgt.aggregate('event')``, equal to 1e-14 on
    a regular grid). With ``theta(e)`` that curve:

    * ``instantaneous`` = ``theta(0)``: the cells with ``step == treatment_step``;
    * ``persistent``: the mean of ``theta(e)`` over the event times ``e = 1 .. E`` present up to
      ``final_step``, each weighted equally (``aggregate('event', overall=True)`` without lag 0);
      late event times come from early cohorts only, and cells at ``final_step`` with ``e >= 1``
      count in both persistent and residual;
    * ``residual``: the cells at ``final_step`` (default: ``attrs["checkpoints"][-1]``, else the
      largest ``step``), cohort-share weighted.

    Cells after ``final_step`` are left out. Without an ``event_time`` column event times come
    from the checkpoint grid (``attrs["checkpoints"]``, else the frame's steps); without
    ``cohort_size`` every cohort weighs the same.

    Each maps to ``{"effect", "se", "lower", "upper", "n_cells", "cells", "weights", "method"}``
    (persistent also ``"event_times"``), the interval at ``confidence`` (default:
    ``attrs["confidence"]``, else 0.95), the weights summing to 1. ``method``:

    * ``"joint bootstrap"`` (whenever possible): the weighted sum in each of did()'s draws
      (``attrs["boot_effects"]``); ``se`` = their standard deviation (ddof=1), percentile
      interval; every covariance counts. Needs >= 2 draws and the rows to be exactly
      ``attrs["boot_cells"]`` (any order).
    * ``"independent cohorts"`` (no usable draws: ``n_boot=0``, hand-built frame, attrs lost or
      rows filtered): cohorts independent, cells of ONE cohort perfectly correlated (a
      Cauchy-Schwarz bound), normal interval. In simulation its residual intervals undercover
      (86% for nominal 95%: all residual cells share the controls' final outcome) when the
      control group is not much larger than the cohorts.

    Empty categories give NaN. The dict also holds ``final_step``, ``confidence`` and
    ``weighting`` (a sentence saying the above).
    """
    _require_columns(profile, ["treatment_step", "step", "effect", "se"], "profile")
    confidence = _check_confidence(confidence, profile)
    if final_step is None:
        cps = profile.attrs.get("checkpoints")
        final_step = int(cps[-1]) if cps else int(profile["step"].max()) if len(profile) else None
    draws = _joint_draws(profile)
    p = profile.reset_index(drop=True).sort_values(["treatment_step", "step"])
    order = p.index.to_numpy()  # row positions in `profile` = columns of `draws`
    c = p["step"].to_numpy()
    if "event_time" in p.columns:
        e = p["event_time"].to_numpy(dtype=np.int64)
    else:  # the index of step minus that of treatment_step in the checkpoint grid
        grid = p.attrs.get("checkpoints") or sorted(set(p["step"].astype(int)) | set(p["treatment_step"].astype(int)))
        grid = np.asarray(sorted(int(x) for x in grid))
        e = np.searchsorted(grid, c) - np.searchsorted(grid, p["treatment_step"].to_numpy())
    last = final_step if final_step is not None else math.inf  # None only for an empty profile
    size = (p["cohort_size"].to_numpy(dtype=np.float64) if "cohort_size" in p.columns
            else np.ones(len(p), dtype=np.float64))
    inside = (e >= 0) & (c <= last)
    lags = sorted(int(x) for x in np.unique(e[inside & (e >= 1)]))
    weights = {
        "instantaneous": _share(size, inside & (e == 0)),
        "persistent": (sum(_share(size, inside & (e == k)) for k in lags) / len(lags)) if lags else np.zeros(len(p)),
        "residual": _share(size, inside & (c == last)),
    }
    out = {key: _combine(p[w > 0], w[w > 0], None if draws is None else draws[:, order[w > 0]], confidence)
           for key, w in weights.items()}
    out["persistent"]["event_times"] = lags
    out.update(final_step=final_step, confidence=confidence,
               weighting="cohort-size weighted event-time aggregation (Lesci et al. 2024; differences "
                         "aggregate('event')): instantaneous = lag 0, persistent = mean over lags >= 1 up to the "
                         "final step, residual = cells at the final step")
    return out
