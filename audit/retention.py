"""Recognition, recall and retention of trained-on sequences (Orhan 2024).

Orhan (2024, "Recognition, recall, and retention of few-shot memories in large language models")
trains a model on new items, keeps training on other data, and re-probes at log-spaced steps:
:func:`recognition` against foils (unseen items of the same kind), :func:`recall` by greedy
completion of an item's first part, and :func:`retention_curve` over the steps since training.
Losses are per-item mean token negative log-likelihoods in nats (any monotone loss works: only
the order within a pair matters).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .metrics import same_shape, float_array
from .stats import wilson_bounds

__all__ = ["recognition", "recall", "retention_curve", "sign_test_p_value", "scramble_foils", "substitute_foils"]

#: metric columns :func:`retention_curve` aggregates by default, when present
DEFAULT_METRICS = ("recognition", "recognition_scrambled", "recognition_substituted", "exact_recall", "token_recall")
#: identifier columns never treated as metrics
_ID_COLUMNS = {"treatment_step", "step", "steps_since", "cohort", "n"}


def scramble_foils(items: np.ndarray, seed: int = 0) -> np.ndarray:
    """Hard foils that need no model (Orhan 2024): each item's tokens in a random order, so
    recognising the seen item over its scramble tests the sequence, not its vocabulary. Every
    row is reordered (an identity permutation is redrawn; rows of one repeated token cannot
    change). Seeded."""
    x = np.asarray(items)
    rng = np.random.default_rng(seed)
    out = x.copy()
    for i in range(x.shape[0]):
        while np.unique(x[i]).size > 1 and (out[i] == x[i]).all():
            out[i] = x[i][rng.permutation(x.shape[1])]
    return out


def substitute_foils(items: np.ndarray, vocab_size: int, fraction: float = 0.25, seed: int = 0,
                     exclude=()) -> np.ndarray:
    """Hard foils (Orhan 2024): the item with ``round(fraction * length)`` positions replaced by
    other tokens drawn uniformly from the vocabulary (never the original token, never one in
    ``exclude``, e.g. special tokens). Seeded."""
    x = np.asarray(items)
    rng = np.random.default_rng(seed)
    n_sub = int(round(fraction * x.shape[1]))
    allowed = np.setdiff1d(np.arange(vocab_size), np.asarray(list(exclude), dtype=np.int64))
    out = x.copy()
    for i in range(x.shape[0]):
        for j in rng.choice(x.shape[1], size=n_sub, replace=False):
            t = x[i, j]
            while t == x[i, j]:
                t = allowed[rng.integers(allowed.size)]
            out[i, j] = t
    return out


def sign_test_p_value(k: int, n: int) -> float:
    """Exact two-sided binomial (sign) test of k successes in n trials against p = 0.5:
    p = min(1, 2 * P[X <= min(k, n - k)]), X ~ Binomial(n, 1/2), summed exactly in integers
    (comb(n, i + 1) = comb(n, i) (n - i) / (i + 1)). n == 0 gives 1.0."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    term = total = 1
    for i in range(min(k, n - k)):
        term = term * (n - i) // (i + 1)
        total += term
    return min(1.0, 2 * total / (1 << n))


def recognition(seen_loss: np.ndarray, foil_loss: np.ndarray, *, confidence: float = 0.95) -> dict:
    """Paired recognition accuracy: how often a seen item has lower loss than its foil.

    Pair i is won when ``seen_loss[i] < foil_loss[i]``, lost when greater, tied when equal::

        accuracy = (wins + ties / 2) / n          chance = 0.5

    ``seen_loss``, ``foil_loss``: (n,); ValueError when the shapes differ, not 1-D, empty, or
    with NaN. Returns ``{"n", "wins", "losses", "ties", "accuracy", "lower", "upper" (Wilson,
    successes = wins + ties/2), "chance": 0.5, "p_value", "mean_gap"}``: ``p_value`` is the
    exact two-sided sign test with ties split evenly (an odd tie to the smaller side);
    ``mean_gap`` = mean(foil_loss - seen_loss) (> 0 = seen items have lower loss).

    Example:
        >>> r = recognition([1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 3.0, 5.0])
        >>> (r["wins"], r["losses"], r["ties"], r["accuracy"])
        (2, 1, 1, 0.625)
    """
    s, f = float_array(seen_loss, "seen_loss", 1), float_array(foil_loss, "foil_loss", 1)
    same_shape(s, f, "seen_loss", "foil_loss")
    n = int(s.shape[0])
    if n == 0:
        raise ValueError("recognition needs at least one (seen, foil) pair")
    wins, losses = int(np.sum(s < f)), int(np.sum(s > f))
    ties = n - wins - losses
    successes = wins + ties / 2.0
    lower, upper = wilson_bounds(successes, n, confidence)
    w, l = wins + ties // 2, losses + ties // 2
    if ties % 2:
        w, l = (w + 1, l) if w <= l else (w, l + 1)
    with np.errstate(invalid="ignore"):
        gap = float(np.mean(f - s))  # inf - inf -> nan, left as is
    return {"n": n, "wins": wins, "losses": losses, "ties": ties, "accuracy": successes / n, "lower": lower,
            "upper": upper, "chance": 0.5, "p_value": sign_test_p_value(w, w + l), "mean_gap": gap}


def recall(generated: np.ndarray, truth: np.ndarray, *, confidence: float = 0.95) -> dict:
    """Cued recall scored on the CONTINUATION tokens (cue removed), position by position::

        exact recall = mean over items of [generated[i] == truth[i] at every position]
        token recall = mean over items of (matching positions / continuation length)

    Both are (n, C) integer token ids (ValueError: not 2-D, shapes differ, n == 0 or C == 0, or
    non-integer ids). Returns ``{"n", "length" (C), "exact_recall", "exact_k", "exact_lower",
    "exact_upper" (Wilson), "token_recall", "exact" (bool (n,)), "token_fraction" (float (n,))}``.

    Example:
        >>> r = recall([[1, 2, 3, 4], [1, 2, 0, 0]], [[1, 2, 3, 4], [1, 2, 3, 4]])
        >>> (r["exact_recall"], r["token_recall"])
        (0.5, 0.75)
    """
    g, t = np.asarray(generated), np.asarray(truth)
    for a, name in ((g, "generated"), (t, "truth")):
        if a.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n, continuation length), got shape {a.shape}")
        if not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
            raise ValueError(f"{name} must hold integer token ids, got dtype {a.dtype}")
    if g.shape != t.shape:
        raise ValueError(f"generated and truth must have the same shape (continuations only, cue excluded), "
                         f"got {g.shape} and {t.shape}")
    n, c = g.shape
    if n == 0 or c == 0:
        raise ValueError(f"recall needs at least one item and one continuation token, got shape {g.shape}")
    match = g == t
    exact, frac = match.all(axis=1), match.mean(axis=1)
    k = int(exact.sum())
    lower, upper = wilson_bounds(k, n, confidence)
    return {"n": int(n), "length": int(c), "exact_recall": k / n, "exact_k": k, "exact_lower": lower,
            "exact_upper": upper, "token_recall": float(frac.mean()), "exact": exact, "token_fraction": frac}


def retention_curve(rows: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Average retention metrics over cohorts by steps since treatment.

    Input rows are (cohort, checkpoint): ``treatment_step``, ``step`` and metric values. Rows with
    ``steps_since = step - treatment_step < 0`` are dropped; each metric is averaged over the rows
    of a ``steps_since``, NaN skipped. ``metrics`` None: those of :data:`DEFAULT_METRICS`
    present, else every numeric non-identifier column. ValueError: a step column missing, with
    missing values or not integers, or no metric column.

    Returns one row per ``steps_since`` (ascending): ``steps_since``, ``n_rows``, and per metric
    ``{metric}`` (NaN when no value) and ``{metric}_count`` (non-NaN rows). With an ``n`` column
    (items per cohort) the metrics are n-weighted pooled rates, with ``{metric}_n`` and a 95%
    Wilson interval ``{metric}_lower`` / ``{metric}_upper``.

    Example:
        >>> import pandas as pd
        >>> rows = pd.DataFrame({"treatment_step": [10, 10, 20, 20], "step": [10, 30, 20, 5],
        ...                      "recognition": [1.0, 0.75, 0.5, 0.5]})
        >>> retention_curve(rows)[["steps_since", "recognition", "recognition_count"]].values.tolist()
        [[0.0, 0.75, 2.0], [20.0, 0.75, 1.0]]
    """
    if not isinstance(rows, pd.DataFrame):
        raise TypeError(f"rows must be a pandas DataFrame, got {type(rows).__name__}")
    for col in ("treatment_step", "step"):
        if col not in rows.columns:
            raise ValueError(f"rows has no column {col!r} (columns: {list(rows.columns)})")
        if rows[col].isna().any():
            raise ValueError(f"column {col!r} has missing values")
        values = rows[col].to_numpy()
        if values.size and not np.issubdtype(values.dtype, np.integer) and not (
                np.issubdtype(values.dtype, np.floating) and np.all(values == np.round(values))):
            raise ValueError(f"column {col!r} must hold integer steps, got dtype {values.dtype}")
    if metrics is None:
        numeric, boolean = pd.api.types.is_numeric_dtype, pd.api.types.is_bool_dtype
        metrics = [m for m in DEFAULT_METRICS if m in rows.columns] or [
            c for c in rows.columns if c not in _ID_COLUMNS and numeric(rows[c]) and not boolean(rows[c])]
    else:
        metrics = list(metrics)
        if missing := [m for m in metrics if m not in rows.columns]:
            raise ValueError(f"rows has no metric columns {missing}")
    if not metrics:
        raise ValueError("no metric columns to aggregate")
    if bad := [m for m in metrics if m in _ID_COLUMNS]:
        raise ValueError(f"{bad} are identifier columns, not metrics")

    df = pd.DataFrame({"steps_since": (rows["step"].to_numpy() - rows["treatment_step"].to_numpy()).astype(np.int64)})
    weighted = "n" in rows.columns
    for m in [*metrics, *(["n"] if weighted else [])]:
        df[m] = pd.to_numeric(rows[m], errors="raise").astype(np.float64).to_numpy()
    df = df[df["steps_since"] >= 0]
    grouped = df.groupby("steps_since", sort=True)
    out = pd.DataFrame({"steps_since": np.array(sorted(df["steps_since"].unique()), dtype=np.int64)})
    out["n_rows"] = grouped.size().to_numpy(dtype=np.int64)  # groups in steps_since order, as out's rows
    for m in metrics:
        out[m] = grouped[m].mean().to_numpy(dtype=np.float64)
        out[f"{m}_count"] = grouped[m].count().to_numpy(dtype=np.int64)
        if weighted:
            ok = df[m].notna()
            k = (df[m].where(ok, 0.0) * df["n"].where(ok, 0.0)).groupby(df["steps_since"]).sum().to_numpy()
            n = df["n"].where(ok, 0.0).groupby(df["steps_since"]).sum().to_numpy()
            with np.errstate(invalid="ignore", divide="ignore"):
                out[m] = np.where(n > 0, k / np.where(n > 0, n, 1), np.nan)
            out[f"{m}_n"] = n.astype(np.int64)
            bounds = [wilson_bounds(float(kk), int(nn), 0.95) if nn > 0 else (np.nan, np.nan) for kk, nn in zip(k, n)]
            out[f"{m}_lower"], out[f"{m}_upper"] = [b[0] for b in bounds], [b[1] for b in bounds]
    return out
