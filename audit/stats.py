"""Evaluation statistics of the audit, in numpy: ROC/PR of membership scores, bootstrap and Wilson intervals,
occurrence buckets. Scores: higher = more likely a member (:mod:`audit.metrics`); labels bool, True = member (0/1
accepted); rates, AUCs and intervals are fractions in [0, 1]."""

from __future__ import annotations

import math
from collections import Counter
from statistics import NormalDist

import numpy as np

__all__ = ["as_bools", "roc_auc", "roc_curve", "tpr_at_fpr", "resolvable", "pr_auc", "bootstrap_auc", "wilson_interval",
           "wilson_bounds", "duplicate_bucket", "bucket_order", "rate_by_group"]


def as_int(value, name: str) -> int:
    """An integer argument (Python or numpy int, not bool), else TypeError."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        return int(value.__index__())
    except AttributeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def finite(x) -> bool:
    """A finite int or float (numpy's too); False for None, NaN, infinities and anything else."""
    return isinstance(x, (int, float, np.integer, np.floating)) and math.isfinite(float(x))


def as_bools(x, name: str, expected: str) -> np.ndarray:
    """``x`` as a 1-D bool array; 0/1 integers or floats are accepted, anything else refused."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,), got shape {a.shape}")
    if a.dtype == np.bool_:
        return a
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)) or not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must be {expected}")
    return a.astype(bool)


def _scores_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 scores (n,) without NaN and bool labels (n,) with both classes present."""
    s = np.asarray(scores)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D (n,), got shape {s.shape}")
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise ValueError(f"scores must be numeric, got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    y = as_bools(labels, "labels", "boolean (True = member) or 0/1")
    if y.shape != s.shape:
        raise ValueError(f"scores and labels must have the same length, got {s.shape[0]} and {y.shape[0]}")
    if not 0 < (n_pos := int(y.sum())) < y.size:
        raise ValueError(f"labels need both classes (members and non-members), got {n_pos} members of {y.size}")
    return s, y


def _grouped_counts(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct score, DESCENDING: (positives, negatives)."""
    s, y = _scores_labels(scores, labels)
    distinct, inverse = np.unique(s, return_inverse=True)
    pos = np.bincount(inverse, weights=y.astype(np.float64), minlength=distinct.size)
    neg = np.bincount(inverse, weights=(~y).astype(np.float64), minlength=distinct.size)
    return pos[::-1], neg[::-1]


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney U statistic: P(member's score > non-member's), ties 1/2 (0.5 = chance).
    ``scores``: float (n,), no NaN; ``labels``: bool (n,). ValueError: shapes differ, NaN, or a class is empty.

    >>> roc_auc([0.9, 0.5, 0.5, 0.1], [True, True, False, False])
    0.875
    """
    pos, neg = _grouped_counts(scores, labels)
    tp_before = np.concatenate(([0.0], np.cumsum(pos)[:-1]))  # members with a strictly higher score
    return float(np.sum(neg * (tp_before + 0.5 * pos))) / (float(pos.sum()) * float(neg.sum()))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)``, float64, non-decreasing, from (0, 0) through a threshold at each distinct score (member
    when score >= it) to (1, 1). ValueError: as :func:`roc_auc`."""
    pos, neg = _grouped_counts(scores, labels)
    tpr = np.concatenate(([0.0], np.cumsum(pos))) / float(pos.sum())
    fpr = np.concatenate(([0.0], np.cumsum(neg))) / float(neg.sum())
    return fpr, tpr


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float) -> float:
    """TPR at FPR < ``fpr`` STRICTLY: the largest over :func:`roc_curve`'s points, no interpolation (MIMIR's
    ``tpr[np.where(fpr < x)[0][-1]]``; Carlini et al. 2022, LiRA; MIMIR's sklearn curve drops collinear points, so can
    give less at ties). With under 1/``fpr`` non-members it is TPR at zero false positives (:func:`resolvable` False).
    ``fpr`` in (0, 1]; ValueError outside it, or as :func:`roc_auc`.

    >>> s, y = [0.9, 0.8, 0.7, 0.2, 0.1], [True, False, True, False, False]
    >>> tpr_at_fpr(s, y, 0.1), tpr_at_fpr(s, y, 0.34), tpr_at_fpr(s, y, 1 / 3)
    (0.5, 1.0, 0.5)
    """
    bound = float(fpr)
    if not (0.0 < bound <= 1.0):
        raise ValueError(f"fpr must be in (0, 1], got {fpr}")
    fpr_pts, tpr_pts = roc_curve(scores, labels)
    return float(tpr_pts[fpr_pts < bound].max())


def resolvable(n_non_members: int, fpr: float) -> bool:
    """At least 1/``fpr`` non-members (relative tolerance 1e-9), so a TPR at that FPR can be resolved.

    >>> resolvable(101, 0.001), resolvable(1000, 0.001), resolvable(100, 0.01)
    (False, True, True)
    """
    return int(n_non_members) * float(fpr) >= 1.0 - 1e-9


def pr_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """PR-AUC as average precision (sklearn's ``average_precision_score``, step-wise): sum over thresholds of
    (R_i - R_{i-1}) * P_i, in (0, 1]; chance is the member fraction. ValueError: as :func:`roc_auc`."""
    pos, neg = _grouped_counts(scores, labels)
    tp = np.cumsum(pos)
    return float(np.sum(pos / float(pos.sum()) * (tp / (tp + np.cumsum(neg)))))


def bootstrap_auc(scores: np.ndarray, labels: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Bootstrap of the ROC-AUC: ``n_boot`` (>= 1) resamples ``rng.integers(0, n, size=n)``,
    ``rng = np.random.default_rng(seed)``, those of one class skipped. ``{"std" (ddof=1; 0.0 for one), "lower",
    "upper"}`` (95% percentile interval). ValueError: n_boot < 1, no two-class resample, or as :func:`roc_auc`."""
    s, y = _scores_labels(scores, labels)
    n_boot = as_int(n_boot, "n_boot")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    n = s.shape[0]
    draws = (rng.integers(0, n, size=n) for _ in range(n_boot))
    aucs = [roc_auc(s[idx], y[idx]) for idx in draws if 0 < int(y[idx].sum()) < n]
    if not aucs:
        raise ValueError("every bootstrap replicate had a single class; use more data or more replicates")
    a = np.asarray(aucs)
    lower, upper = np.percentile(a, [2.5, 97.5])
    return {"std": float(a.std(ddof=1)) if a.size > 1 else 0.0, "lower": float(lower), "upper": float(upper)}


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson (1927) score interval for k / n: (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n),
    z the two-sided normal quantile of ``confidence``; exactly 0.0 for k == 0, 1.0 for k == n, (0.0, 1.0) for n == 0.
    ValueError: not 0 <= k <= n, confidence outside (0, 1); TypeError: k or n not integers.

    >>> [round(x, 4) for x in wilson_interval(3, 10)], wilson_interval(0, 5)[0], wilson_interval(0, 0)
    ([0.1078, 0.6032], 0.0, (0.0, 1.0))
    """
    k, n = as_int(k, "k"), as_int(n, "n")
    confidence = float(confidence)
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    return wilson_bounds(k, n, confidence)


def wilson_bounds(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """:func:`wilson_interval`'s closed form, unchecked, for a possibly fractional count 0 <= successes <= n."""
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(max(p * (1.0 - p), 0.0) / n + z2 / (4.0 * n * n)) / denom
    return (0.0 if successes <= 0 else max(0.0, centre - half)), (1.0 if successes >= n else min(1.0, centre + half))


def duplicate_bucket(count: int) -> str:
    """Power-of-two bucket of a duplicate count: [2^b, 2^(b+1) - 1], labelled ``"1"`` or
    ``"{2^b}-{2^(b+1)-1}"`` (Carlini et al. 2022 use quarter-octaves; memorization grows about log-linearly in the
    count, Kandpal et al. 2022). ValueError: count < 1; TypeError: not an integer.

    >>> [duplicate_bucket(c) for c in (1, 2, 3, 4, 100)]
    ['1', '2-3', '2-3', '4-7', '64-127']
    """
    c = as_int(count, "count")
    if c < 1:
        raise ValueError(f"duplicate count must be >= 1, got {c}")
    b = c.bit_length() - 1
    return "1" if b == 0 else f"{1 << b}-{(1 << (b + 1)) - 1}"


def bucket_order(label: str) -> int:
    """Sort key of a :func:`duplicate_bucket` label, its b ("0", absent from the corpus: -1); ValueError
    for any other label.

    >>> sorted(["4-7", "1", "64-127", "2-3"], key=bucket_order)
    ['1', '2-3', '4-7', '64-127']
    """
    if not isinstance(label, str):
        raise ValueError(f"not a duplicate bucket label: {label!r}")
    if label == "0":
        return -1
    lo = label.split("-", 1)[0]
    if not lo.isdigit() or lo.startswith("0") or len(lo) > 30 or duplicate_bucket(int(lo)) != label:
        raise ValueError(f"not a duplicate bucket label: {label!r}")
    return int(lo).bit_length() - 1


def rate_by_group(flags: np.ndarray, groups: list[str], order: list[str] | None = None) -> list[dict]:
    """Rate of a boolean flag (n,) per group (n labels) with Wilson intervals: ``{"group", "n", "k",
    "rate", "lower", "upper"}`` per group of ``order`` (absent: n = k = 0, rate NaN, (0.0, 1.0)), else those present
    in :func:`bucket_order` or alphabetically. ValueError: lengths differ, flags not boolean, a group not in
    ``order``, or duplicates in it.

    >>> rows = rate_by_group([True, False, True, True], ["2-3", "1", "2-3", "1"])
    >>> [(r["group"], r["k"], r["n"], r["rate"]) for r in rows]
    [('1', 1, 2, 0.5), ('2-3', 2, 2, 1.0)]
    """
    f = as_bools(flags, "flags", "boolean or 0/1")
    groups = list(groups)
    if len(groups) != f.shape[0]:
        raise ValueError(f"flags has {f.shape[0]} items but groups has {len(groups)}")
    n_by = Counter(groups)
    k_by = Counter(g for flag, g in zip(f.tolist(), groups) if flag)
    if order is not None:
        keys = list(order)
        if len(set(keys)) != len(keys):
            raise ValueError("order contains duplicates")
        if missing := sorted(set(n_by) - set(keys), key=str):
            raise ValueError(f"groups {missing} are not in order")
    else:
        try:
            keys = sorted(n_by, key=bucket_order)
        except ValueError:
            keys = sorted(n_by)
    return [{"group": g, "n": n_by[g], "k": k_by[g], "rate": k_by[g] / n_by[g] if n_by[g] else float("nan"),
             **dict(zip(("lower", "upper"), wilson_interval(k_by[g], n_by[g])))} for g in keys]
