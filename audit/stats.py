"""Evaluation statistics of the audit: ROC/PR of membership scores, bootstrap and Wilson
intervals, occurrence buckets. Pure numpy and the standard library.

Scores follow :mod:`audit.metrics`' sign convention (higher = more likely a member); labels are
bool (True = member; 0/1 accepted). Rates, AUCs and intervals are fractions in [0, 1].
"""

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
    """Per distinct score (validated by :func:`_scores_labels`), DESCENDING: (positives, negatives)."""
    s, y = _scores_labels(scores, labels)
    distinct, inverse = np.unique(s, return_inverse=True)
    pos = np.bincount(inverse, weights=y.astype(np.float64), minlength=distinct.size)
    neg = np.bincount(inverse, weights=(~y).astype(np.float64), minlength=distinct.size)
    return pos[::-1], neg[::-1]


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve, as the Mann-Whitney U statistic.

    AUC = P(score of a random member > score of a random non-member), ties counted 1/2; equal to
    the trapezoidal area under :func:`roc_curve`. 0.5 = chance, 1.0 = members all score higher.
    ``scores``: float (n,), no NaN (+-inf allowed); ``labels``: bool (n,). ValueError: shapes
    differ, NaN scores, or a class is empty.

    Example (2 members x 2 non-members = 4 pairs: 3 won, 1 tied):
        >>> roc_auc([0.9, 0.5, 0.5, 0.1], [True, True, False, False])
        0.875
    """
    pos, neg = _grouped_counts(scores, labels)
    tp_before = np.concatenate(([0.0], np.cumsum(pos)[:-1]))  # members with a strictly higher score
    return float(np.sum(neg * (tp_before + 0.5 * pos))) / (float(pos.sum()) * float(neg.sum()))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve with a threshold at every distinct score.

    A sequence is predicted a member when its score >= the threshold. Points run from the
    threshold above every score, (0, 0), through each distinct score in decreasing order, to the
    lowest score, (1, 1): ``(fpr, tpr)``, float64 arrays of length (distinct scores + 1), both
    non-decreasing. ValueError: as :func:`roc_auc`.
    """
    pos, neg = _grouped_counts(scores, labels)
    tpr = np.concatenate(([0.0], np.cumsum(pos))) / float(pos.sum())
    fpr = np.concatenate(([0.0], np.cumsum(neg))) / float(neg.sum())
    return fpr, tpr


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float) -> float:
    """True-positive rate at a low false-positive rate, with a STRICT bound (MIMIR, LiRA).

    Returns the LARGEST TPR over the thresholds of :func:`roc_curve` whose FPR < ``fpr``
    strictly (no interpolation), as MIMIR's ``tpr[np.where(fpr < x)[0][-1]]`` and Carlini et al.
    (2022, "Membership inference attacks from first principles", LiRA); MIMIR reads it on sklearn's
    ``roc_curve``, which drops collinear points and so at tied scores can give less. The all-negative
    threshold (FPR 0, TPR 0) always qualifies.
    With fewer than 1/``fpr`` non-members the only FPR below the bound is 0: the value is then
    "TPR at zero false positives", and :func:`resolvable` is False (the audit reports null).
    ``fpr``: a fraction in (0, 1] (0.01 = 1%); ValueError outside it, or as :func:`roc_auc`.

    Example (the best non-member outscores one member: below FPR 1/3 only one member is flagged):
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
    """Whether a TPR at FPR ``fpr`` can be resolved: at least 1/``fpr`` non-members (a relative
    1e-9 tolerance for float error: 1000 non-members resolve 0.1%).

    >>> resolvable(101, 0.001), resolvable(1000, 0.001), resolvable(100, 0.01)
    (False, True, True)
    """
    return int(n_non_members) * float(fpr) >= 1.0 - 1e-9


def pr_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve, as average precision (step-wise, no interpolation).

    AP = sum over thresholds (every distinct score, decreasing) of (R_i - R_{i-1}) * P_i, where
    R_i and P_i are the recall and precision when predicting a member for score >= threshold i
    (the definition of sklearn's ``average_precision_score``), in (0, 1]. Chance level is the
    member fraction. ValueError: as :func:`roc_auc`.
    """
    pos, neg = _grouped_counts(scores, labels)
    tp = np.cumsum(pos)
    return float(np.sum(pos / float(pos.sum()) * (tp / (tp + np.cumsum(neg)))))


def concatenated_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """int64: the ranges ``[starts[k], starts[k] + lengths[k])``, one after another.

    >>> concatenated_ranges(np.array([5, 0, 9]), np.array([2, 0, 3])).tolist()
    [5, 6, 9, 10, 11]
    """
    return np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())


def bootstrap_auc(scores: np.ndarray, labels: np.ndarray, n_boot: int = 1000, seed: int = 0,
                  clusters: list | None = None) -> dict[str, float]:
    """Bootstrap spread of the ROC-AUC over ``n_boot`` (>= 1) replicates.

    Resamples the (score, label) pairs with replacement: per replicate, indices
    ``rng.integers(0, n, size=n)`` from ``rng = np.random.default_rng(seed)``. ``clusters``: a
    hashable key per pair (copies of one sequence: not independent trials); then the m distinct
    keys, in order of first appearance, are resampled, ``rng.integers(0, m, size=m)``, each drawn
    with all its pairs (a cluster bootstrap; singletons give the draws above). Replicates with
    only one class are skipped (they still consume their draw). Returns ``{"std", "lower",
    "upper"}``: the standard deviation of the kept replicates' AUCs (ddof=1; 0.0 with a single
    one) and the 95% percentile interval (numpy's linear interpolation). ValueError: n_boot < 1,
    every replicate had one class, or as :func:`roc_auc`.
    """
    s, y = _scores_labels(scores, labels)
    n_boot = as_int(n_boot, "n_boot")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    n = s.shape[0]
    if clusters is None:
        draws = (rng.integers(0, n, size=n) for _ in range(n_boot))
    else:
        if len(clusters) != n:
            raise ValueError(f"clusters has {len(clusters)} keys but scores has {n}")
        first: dict = {}
        code = np.array([first.setdefault(k, len(first)) for k in clusters], dtype=np.int64)
        rows, sizes = np.argsort(code, kind="stable"), np.bincount(code)
        starts = np.cumsum(sizes) - sizes

        draws = (rows[concatenated_ranges(starts[c], sizes[c])]  # the rows of clusters c
                 for c in (rng.integers(0, sizes.size, size=sizes.size) for _ in range(n_boot)))
    aucs = [roc_auc(s[idx], y[idx]) for idx in draws if 0 < int(y[idx].sum()) < idx.size]
    if not aucs:
        raise ValueError("every bootstrap replicate had a single class; use more data or more replicates")
    a = np.asarray(aucs)
    lower, upper = np.percentile(a, [2.5, 97.5])
    return {"std": float(a.std(ddof=1)) if a.size > 1 else 0.0, "lower": float(lower), "upper": float(upper)}


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k / n.

    Definition (Wilson 1927): the set of p with |k/n - p| <= z * sqrt(p (1 - p) / n), where z is
    the two-sided normal quantile for ``confidence`` (1.95996 for 95%); closed form
    (p_hat + z^2/2n +- z sqrt(p_hat(1-p_hat)/n + z^2/4n^2)) / (1 + z^2/n). The lower bound is
    exactly 0.0 when k == 0 and the upper exactly 1.0 when k == n; n == 0 gives the
    uninformative (0.0, 1.0). ValueError: not 0 <= k <= n, or confidence outside (0, 1);
    TypeError: k or n not integers.

    Example:
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
    """The Wilson closed form of :func:`wilson_interval` for an already-checked, possibly
    fractional success count (e.g. ties split half and half), 0 <= successes <= n."""
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
    """Power-of-two bucket label of a duplicate count: 1, 2-3, 4-7, 8-15, ...

    Bucket b holds counts in [2^b, 2^(b+1) - 1]; its label is ``"1"`` for b = 0, else
    ``"{2^b}-{2^(b+1)-1}"``. (Carlini et al. 2022 sample from quarter-octaves [2^(n/4),
    2^((n+1)/4)); octaves hold 4x as many sequences at audit sample sizes. Memorization grows
    roughly log-linearly in the duplicate count: Carlini et al. 2022; Kandpal et al. 2022.)
    ValueError: count < 1; TypeError: not an integer.

    Example:
        >>> [duplicate_bucket(c) for c in (1, 2, 3, 4, 100)]
        ['1', '2-3', '2-3', '4-7', '64-127']
    """
    c = as_int(count, "count")
    if c < 1:
        raise ValueError(f"duplicate count must be >= 1, got {c}")
    b = c.bit_length() - 1
    return "1" if b == 0 else f"{1 << b}-{(1 << (b + 1)) - 1}"


def bucket_order(label: str) -> int:
    """Sort key of a :func:`duplicate_bucket` label: the bucket index b ("1" -> 0, "2-3" -> 1, ...;
    "0", a given sequence absent from the corpus, -> -1). ValueError for any other label.

    Example:
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
    """Rate of a boolean flag (n,) per group (n labels), with Wilson intervals: one dict per
    group, ``{"group", "n", "k" (flags set), "rate": k / n, "lower", "upper"}``; e.g. the
    extractable rate per duplicate bucket (``groups = [duplicate_bucket(c) for c in counts]``).

    ``order``: the groups to report, in this order; a group listed here but absent from
    ``groups`` is reported with n = k = 0, rate NaN and interval (0.0, 1.0). None: the groups
    present, in :func:`bucket_order` if every label is a duplicate bucket label, else
    alphabetically. ValueError: lengths differ, flags not boolean, a present group missing
    from ``order``, or duplicates in ``order``.

    Example:
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
