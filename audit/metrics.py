"""Memorization and membership-inference metrics: pure numpy on per-token arrays.

Nothing here touches a model: the inputs are the numpy arrays that :mod:`audit.lm` returns from
one teacher-forced forward pass (``TokenStats``) or from greedy generation. Only numpy and the
standard library are used (no torch, sklearn or scipy).

Position convention (as in ``audit.lm.TokenStats``): for sequences of L tokens, per-token arrays
have T = L - 1 columns, and column t describes the prediction of token t+1 from tokens 0..t.

Extractable memorization
    :func:`extraction` (exact C-extractable, Carlini et al. 2022; Biderman et al. 2023, and the
    number of leading tokens greedy decoding reproduces) and :func:`pythia_score` (the fraction
    of generated continuation tokens equal to the true ones, Biderman et al. 2023).

Membership-inference scores (MIMIR conventions: computed over all T predicted positions)
    SIGN CONVENTION: every ``score_*`` function returns a score where HIGHER = MORE LIKELY A
    MEMBER (of the target model's training data). :func:`loss` is a quantity, not a score (lower
    loss = more likely a member); ``score_loss = -loss``. Pass the ``score_*`` values and boolean
    labels (True = member) straight to :func:`roc_auc` and friends: an informative score gives
    AUC > 0.5.

Evaluation
    :func:`roc_auc` (Mann-Whitney U, ties count 1/2), :func:`roc_curve`, :func:`tpr_at_fpr`,
    :func:`pr_auc` (average precision), :func:`bootstrap_auc`, :func:`wilson_interval`, and
    rates per duplicate-count bucket (:func:`duplicate_bucket`, :func:`rate_by_group`).

Units: log-probabilities and losses are natural logarithms (nats, per token); zlib lengths are
bytes; rates, AUCs and intervals are fractions in [0, 1].
"""

from __future__ import annotations

import math
import zlib
from statistics import NormalDist

import numpy as np

#: zlib compression level of :func:`score_zlib`: 9, the maximum (MIMIR calls ``zlib.compress``
#: with the default level, 6); reported in summary.json's membership section as ``zlib_level``.
ZLIB_LEVEL = 9

__all__ = [
    "extraction",
    "pythia_score",
    "loss",
    "score_loss",
    "score_zlib",
    "score_min_k",
    "score_min_k_plus_plus",
    "score_reference",
    "roc_auc",
    "roc_curve",
    "tpr_at_fpr",
    "resolvable",
    "pr_auc",
    "bootstrap_auc",
    "wilson_interval",
    "duplicate_bucket",
    "bucket_order",
    "rate_by_group",
]


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _as_int(value, name: str) -> int:
    """An integer argument (Python or numpy int, not bool), else TypeError."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        return int(value.__index__())
    except AttributeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def float_array(x, name: str, ndim: int) -> np.ndarray:
    """``x`` as a float64 array of ``ndim`` dimensions, numeric and free of NaN (ValueError
    naming ``name`` otherwise)."""
    a = np.asarray(x)
    if a.ndim != ndim:
        shape = "(n,)" if ndim == 1 else "(n, T)"
        raise ValueError(f"{name} must be {ndim}-D {shape}, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN")
    return a


def _per_token(x, name: str) -> np.ndarray:
    """A float64 (n, T) per-token array with T >= 1 and no NaN."""
    a = float_array(x, name, 2)
    if a.shape[1] < 1:
        raise ValueError(f"{name} must have at least one predicted position (T >= 1), got shape {a.shape}")
    return a


def _same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}")


def _check_k(k: float) -> float:
    k = float(k)
    if not (0.0 < k <= 1.0):
        raise ValueError(f"k must be in (0, 1], got {k}")
    return k


def _min_k_count(T: int, k: float) -> int:
    """m = max(1, floor(k * T)), with a 1e-9 tolerance for float error (0.29 * 100 -> 29)."""
    return max(1, math.floor(k * T + 1e-9))


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
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D (n,), got shape {y.shape}")
    if y.shape != s.shape:
        raise ValueError(f"scores and labels must have the same length, got {s.shape[0]} and {y.shape[0]}")
    if y.dtype != np.bool_:
        if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)) or not np.isin(
            y, (0, 1)
        ).all():
            raise ValueError("labels must be boolean (True = member) or 0/1")
        y = y.astype(bool)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ValueError(
            f"labels need both classes (members and non-members), got {n_pos} members of {y.size}"
        )
    return s, y


def _grouped_counts(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct score, in DESCENDING score order: (number of positives, number of negatives)."""
    _, inverse = np.unique(s, return_inverse=True)
    inverse = inverse.reshape(-1)
    n_distinct = int(inverse.max()) + 1
    pos = np.bincount(inverse, weights=y.astype(np.float64), minlength=n_distinct)
    neg = np.bincount(inverse, weights=(~y).astype(np.float64), minlength=n_distinct)
    return pos[::-1], neg[::-1]


# --------------------------------------------------------------------------------------------
# Extractable memorization
# --------------------------------------------------------------------------------------------


def extraction(greedy_match: np.ndarray, prompt_len: int, cont_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact C-extractability and the greedy-reproduced prefix length, from one forward pass.

    Definition (Carlini et al. 2022, "Quantifying memorization"; Biderman et al. 2023, Pythia):
    a sequence is C-extractable with a P-token prompt when greedy decoding from tokens [0, P)
    reproduces the true continuation tokens [P, P+C) exactly. Greedy decoding reproduces it iff,
    in a teacher-forced pass over prompt + true continuation, the arg-max prediction at every
    continuation position equals the true next token; the same pass gives the number of leading
    continuation tokens that greedy decoding reproduces (it agrees with the truth up to the first
    mismatch).

    Args:
        greedy_match: bool (n, L-1); column t is True when the arg-max prediction of token t+1
            (from tokens 0..t) equals the true token t+1. The continuation tokens P..P+C-1 are
            predicted at columns P-1..P+C-2. Columns after P+C-2 (if L > P+C) are ignored.
        prompt_len: P >= 1, the prompt length in tokens.
        cont_len: C >= 1, the continuation length in tokens; P + C <= L is required.

    Returns:
        ``(exact, leading)``: ``exact`` bool (n,), all C continuation predictions match (exact
        C-extractable); ``leading`` int64 (n,) in [0, C], the number of consecutive matches from
        column P-1 (the leading continuation tokens greedy decoding reproduces).

    Raises:
        ValueError: ``greedy_match`` is not a 2-D boolean array, P < 1, C < 1, or P + C > L.

    Example (P = 2, C = 3; the first sequence's continuation is reproduced, the second's
    only up to its second token):

        >>> exact, leading = extraction(np.array([[False, True, True, True],
        ...                                       [True, True, True, False]]), 2, 3)
        >>> exact.tolist(), leading.tolist()
        ([True, False], [3, 2])
    """
    P = _as_int(prompt_len, "prompt_len")
    C = _as_int(cont_len, "cont_len")
    g = np.asarray(greedy_match)
    if g.ndim != 2:
        raise ValueError(f"greedy_match must be 2-D (n, L-1), got shape {g.shape}")
    if g.dtype != np.bool_:
        raise ValueError(f"greedy_match must be boolean, got dtype {g.dtype}")
    if P < 1:
        raise ValueError(f"prompt_len must be >= 1, got {P}")
    if C < 1:
        raise ValueError(f"cont_len must be >= 1, got {C}")
    L = g.shape[1] + 1
    if P + C > L:
        raise ValueError(
            f"prompt_len + cont_len = {P} + {C} = {P + C} exceeds the sequence length L = {L} "
            f"(greedy_match has shape {g.shape}, i.e. L-1 = {L - 1} predicted positions)"
        )
    window = g[:, P - 1 : P + C - 1]  # (n, C): predictions of tokens P..P+C-1
    exact = window.all(axis=1)
    # Leading run: index of the first mismatch, or C when there is none.
    leading = np.where(exact, C, np.argmin(window, axis=1)).astype(np.int64)
    return exact, leading


def pythia_score(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Pythia memorization score: the fraction of generated continuation tokens that are correct.

    Definition (Biderman et al. 2023, "Emergent and predictable memorization"): greedy-decode C
    tokens after the prompt and compare them, position by position, with the true continuation;
    the score is (number of equal positions) / C, in steps of 1/C (1.0 = C-extractable).

    Args:
        generated: int (n, C), generated continuation token ids.
        truth: int (n, C), true continuation token ids; C >= 1.

    Returns:
        float64 (n,), the fraction of the C positions where ``generated == truth``.

    Raises:
        ValueError: the arrays are not 2-D, differ in shape, or C == 0.

    Example:
        >>> pythia_score([[5, 6, 7, 9]], [[5, 6, 8, 9]]).tolist()
        [0.75]
    """
    g = np.asarray(generated)
    t = np.asarray(truth)
    if g.ndim != 2 or t.ndim != 2:
        raise ValueError(f"generated and truth must be 2-D (n, C), got shapes {g.shape} and {t.shape}")
    _same_shape(g, t, "generated", "truth")
    if g.shape[1] < 1:
        raise ValueError(f"the continuation must have at least one token (C >= 1), got shape {g.shape}")
    return (g == t).mean(axis=1, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Membership-inference scores (higher = more likely a member)
# --------------------------------------------------------------------------------------------


def loss(logprob: np.ndarray) -> np.ndarray:
    """Mean negative log-likelihood per token (a LOSS: lower = more likely a member).

    Definition (MIMIR "loss" attack; Yeom et al. 2018): loss = -(1/T) sum_t log p(x_{t+1} | x_<=t)
    over all T = L-1 predicted positions of the sequence.

    Args:
        logprob: float (n, T), log-probability (nats) of each true next token.

    Returns:
        float64 (n,), nats per token.

    Raises:
        ValueError: ``logprob`` is not 2-D with T >= 1, or contains NaN.
    """
    lp = _per_token(logprob, "logprob")
    return -lp.mean(axis=1)


def score_loss(logprob: np.ndarray) -> np.ndarray:
    """LOSS attack score = -loss (higher = more likely a member).

    Args:
        logprob: float (n, T), log-probability (nats) of each true next token.

    Returns:
        float64 (n,), minus the mean per-token negative log-likelihood (nats per token).
    """
    return -loss(logprob)


def score_zlib(logprob: np.ndarray, text_bytes: list[bytes]) -> np.ndarray:
    """zlib-ratio score = -loss / zlib length (higher = more likely a member).

    Definition (Carlini et al. 2021, "Extracting training data from large language models", the
    zlib entropy ratio; MIMIR ``zlib``): the model's loss divided by the length in bytes of the
    sequence's text compressed with ``zlib.compress(text, 9)``, negated for our sign convention.
    Text that is merely repetitive (low loss but also compressible) is discounted.

    Args:
        logprob: float (n, T), log-probability (nats) of each true next token.
        text_bytes: n texts of the sequences, as bytes (``str`` is encoded as UTF-8).

    Returns:
        float64 (n,), nats per token per compressed byte (negated).

    Raises:
        ValueError: ``len(text_bytes) != n`` or the ``logprob`` checks of :func:`loss` fail.
        TypeError: an item is neither bytes-like nor str.
    """
    lo = loss(logprob)
    if len(text_bytes) != lo.shape[0]:
        raise ValueError(f"text_bytes has {len(text_bytes)} items but logprob has {lo.shape[0]} rows")
    lengths = np.empty(lo.shape[0], dtype=np.float64)
    for i, text in enumerate(text_bytes):
        if isinstance(text, str):
            text = text.encode("utf-8")
        elif not isinstance(text, (bytes, bytearray, memoryview)):
            raise TypeError(f"text_bytes[{i}] must be bytes or str, got {type(text).__name__}")
        lengths[i] = len(zlib.compress(bytes(text), ZLIB_LEVEL))  # >= 8 bytes even for empty input
    return -lo / lengths


def score_min_k(logprob: np.ndarray, k: float = 0.2) -> np.ndarray:
    """Min-K% Prob score (higher = more likely a member).

    Definition (Shi et al. 2024, "Detecting pretraining data from large language models"): the
    mean of the lowest m = max(1, floor(k * T)) token log-probabilities of the sequence (the
    floor is taken with a 1e-9 tolerance, so k = 0.29, T = 100 gives m = 29 despite float error).

    Args:
        logprob: float (n, T), log-probability (nats) of each true next token.
        k: fraction of tokens kept, in (0, 1] (default 0.2 = 20%).

    Returns:
        float64 (n,), nats per token.

    Raises:
        ValueError: k outside (0, 1] or the ``logprob`` checks of :func:`loss` fail.

    Example (T = 5, k = 0.4: the mean of the 2 lowest log-probabilities):
        >>> score_min_k([[-0.1, -3.0, -0.2, -1.0, -0.5]], k=0.4).tolist()
        [-2.0]
    """
    k = _check_k(k)
    lp = _per_token(logprob, "logprob")
    m = _min_k_count(lp.shape[1], k)
    lowest = np.partition(lp, m - 1, axis=1)[:, :m]
    return lowest.mean(axis=1)


def score_min_k_plus_plus(
    logprob: np.ndarray, mu: np.ndarray, sigma: np.ndarray, k: float = 0.2
) -> np.ndarray:
    """Min-K%++ score (higher = more likely a member).

    Definition (Zhang et al. 2024, "Min-K%++"): per token, z = (log p(x_{t+1}) - mu_t) / sigma_t,
    where mu_t and sigma_t are the mean and standard deviation of log p(v) for v drawn from the
    model's predicted distribution at position t (where sigma_t == 0, z = 0); the score is the
    mean of the lowest m = max(1, floor(k * T)) values of z (as in :func:`score_min_k`).

    Args:
        logprob: float (n, T), log-probability (nats) of each true next token.
        mu: float (n, T), E_{v~p_t}[log p_t(v)] (nats).
        sigma: float (n, T), the standard deviation of log p_t(v) under p_t (nats), >= 0.
        k: fraction of tokens kept, in (0, 1] (default 0.2).

    Returns:
        float64 (n,), dimensionless (standard deviations).

    Raises:
        ValueError: shapes differ, sigma < 0, NaN present, or k outside (0, 1].
    """
    k = _check_k(k)
    lp = _per_token(logprob, "logprob")
    m_ = _per_token(mu, "mu")
    s_ = _per_token(sigma, "sigma")
    _same_shape(lp, m_, "logprob", "mu")
    _same_shape(lp, s_, "logprob", "sigma")
    if (s_ < 0).any():
        raise ValueError("sigma must be >= 0")
    safe = np.where(s_ > 0, s_, 1.0)
    z = np.where(s_ > 0, (lp - m_) / safe, 0.0)
    m = _min_k_count(lp.shape[1], k)
    lowest = np.partition(z, m - 1, axis=1)[:, :m]
    return lowest.mean(axis=1)


def score_reference(logprob: np.ndarray, ref_logprob: np.ndarray) -> np.ndarray:
    """Reference-model score = loss(reference) - loss(target) (higher = more likely a member).

    Definition (Carlini et al. 2021, comparison to a reference model; MIMIR ``ref``): a member
    has a lower loss under the target model than under a reference model that shares the
    tokenizer but has not seen the data.

    Args:
        logprob: float (n, T), target-model log-probabilities of the true next tokens (nats).
        ref_logprob: float (n, T), reference-model log-probabilities of the same tokens.

    Returns:
        float64 (n,), nats per token.

    Raises:
        ValueError: shapes differ or the checks of :func:`loss` fail.
    """
    lp = _per_token(logprob, "logprob")
    ref = _per_token(ref_logprob, "ref_logprob")
    _same_shape(lp, ref, "logprob", "ref_logprob")
    return loss(ref) - loss(lp)


# --------------------------------------------------------------------------------------------
# Evaluation of scores against membership labels
# --------------------------------------------------------------------------------------------


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve, as the Mann-Whitney U statistic.

    AUC = P(score of a random member > score of a random non-member), ties counted 1/2; equal to
    the trapezoidal area under :func:`roc_curve`. 0.5 = chance, 1.0 = members all score higher.

    Args:
        scores: float (n,), higher = more likely a member; no NaN (+-inf allowed).
        labels: bool (n,), True = member (0/1 integers are accepted).

    Returns:
        The AUC in [0, 1].

    Raises:
        ValueError: shapes differ, NaN scores, or a class (members / non-members) is empty.

    Example (2 members x 2 non-members = 4 pairs: 3 won, 1 tied):
        >>> roc_auc([0.9, 0.5, 0.5, 0.1], [True, True, False, False])
        0.875
    """
    s, y = _scores_labels(scores, labels)
    pos, neg = _grouped_counts(s, y)
    tp_before = np.concatenate(([0.0], np.cumsum(pos)[:-1]))  # members with a strictly higher score
    wins = float(np.sum(neg * (tp_before + 0.5 * pos)))
    return wins / (float(y.sum()) * float((~y).sum()))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve with a threshold at every distinct score.

    A sequence is predicted a member when its score >= the threshold. Points run from the
    threshold above every score, (0, 0), through each distinct score in decreasing order, to the
    lowest score, (1, 1).

    Args:
        scores: float (n,), higher = more likely a member; no NaN.
        labels: bool (n,), True = member.

    Returns:
        ``(fpr, tpr)``: float64 arrays of length (number of distinct scores + 1), both
        non-decreasing, starting at 0.0 and ending at 1.0.

    Raises:
        ValueError: as :func:`roc_auc`.
    """
    s, y = _scores_labels(scores, labels)
    pos, neg = _grouped_counts(s, y)
    tpr = np.concatenate(([0.0], np.cumsum(pos))) / float(y.sum())
    fpr = np.concatenate(([0.0], np.cumsum(neg))) / float((~y).sum())
    return fpr, tpr


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float) -> float:
    """True-positive rate at a low false-positive rate, with a STRICT bound (MIMIR, LiRA).

    Returns the LARGEST TPR over the thresholds of :func:`roc_curve` (every distinct score, plus
    one above all scores) whose FPR < ``fpr`` strictly (no interpolation), as MIMIR's
    ``tpr[np.where(fpr < x)[0][-1]]`` and Carlini et al. (2022, "Membership inference attacks
    from first principles", LiRA). The all-negative threshold (FPR 0, TPR 0) always qualifies.
    With fewer than 1/``fpr`` non-members the only FPR below the bound is 0: the value is then
    "TPR at zero false positives", and :func:`resolvable` is False (the audit reports null).

    Args:
        scores: float (n,), higher = more likely a member; no NaN.
        labels: bool (n,), True = member.
        fpr: the FPR bound, a fraction in (0, 1] (0.01 = 1%).

    Returns:
        The TPR, a fraction in [0, 1].

    Raises:
        ValueError: ``fpr`` outside (0, 1], or as :func:`roc_auc`.

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
    (the definition of sklearn's ``average_precision_score``). Members count as positives.
    Chance level is the member fraction.

    Args:
        scores: float (n,), higher = more likely a member; no NaN.
        labels: bool (n,), True = member.

    Returns:
        The average precision in (0, 1].

    Raises:
        ValueError: as :func:`roc_auc` (both classes are required).
    """
    s, y = _scores_labels(scores, labels)
    pos, neg = _grouped_counts(s, y)
    tp = np.cumsum(pos)
    fp = np.cumsum(neg)
    precision = tp / (tp + fp)
    return float(np.sum(pos / float(y.sum()) * precision))


def bootstrap_auc(
    scores: np.ndarray, labels: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Bootstrap spread of the ROC-AUC.

    Resamples the (score, label) pairs with replacement: per replicate, indices
    ``rng.integers(0, n, size=n)`` from ``rng = np.random.default_rng(seed)``. Replicates with
    only one class are skipped (they still consume their draw). The AUC of each kept replicate is
    computed with :func:`roc_auc`.

    Args:
        scores: float (n,), higher = more likely a member; no NaN.
        labels: bool (n,), True = member.
        n_boot: number of replicates drawn, >= 1.
        seed: seed of the numpy Generator.

    Returns:
        ``{"std": ..., "lower": ..., "upper": ...}``: the standard deviation of the replicate AUCs
        (ddof=1; 0.0 with a single kept replicate) and the 95% percentile interval (2.5th and
        97.5th percentiles, numpy's linear interpolation).

    Raises:
        ValueError: n_boot < 1, every replicate had one class, or as :func:`roc_auc`.
    """
    s, y = _scores_labels(scores, labels)
    n_boot = _as_int(n_boot, "n_boot")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    n = s.shape[0]
    aucs = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)
        yb = y[idx]
        n_pos = int(yb.sum())
        if n_pos == 0 or n_pos == n:
            continue
        aucs.append(roc_auc(s[idx], yb))
    if not aucs:
        raise ValueError("every bootstrap replicate had a single class; use more data or more replicates")
    a = np.asarray(aucs)
    lower, upper = np.percentile(a, [2.5, 97.5])
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return {"std": std, "lower": float(lower), "upper": float(upper)}


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k / n.

    Definition (Wilson 1927): the set of p with |k/n - p| <= z * sqrt(p (1 - p) / n), where z is
    the two-sided normal quantile for ``confidence`` (1.95996 for 95%); closed form
    (p_hat + z^2/2n +- z sqrt(p_hat(1-p_hat)/n + z^2/4n^2)) / (1 + z^2/n). The lower bound is
    exactly 0.0 when k == 0 and the upper exactly 1.0 when k == n.

    Args:
        k: successes, 0 <= k <= n.
        n: trials, >= 0; n == 0 gives the uninformative (0.0, 1.0).
        confidence: in (0, 1).

    Returns:
        ``(lower, upper)``, fractions in [0, 1].

    Raises:
        ValueError: k or n out of range, or confidence outside (0, 1).
        TypeError: k or n not integers.

    Example:
        >>> [round(x, 4) for x in wilson_interval(3, 10)], wilson_interval(0, 5)[0], wilson_interval(0, 0)
        ([0.1078, 0.6032], 0.0, (0.0, 1.0))
    """
    k = _as_int(k, "k")
    n = _as_int(n, "n")
    confidence = float(confidence)
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n < 0 or not (0 <= k <= n):
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
    lower = 0.0 if successes <= 0 else max(0.0, centre - half)
    upper = 1.0 if successes >= n else min(1.0, centre + half)
    return lower, upper


# --------------------------------------------------------------------------------------------
# Duplicate-count buckets and rates per group
# --------------------------------------------------------------------------------------------


def duplicate_bucket(count: int) -> str:
    """Power-of-two bucket label of a duplicate count: 1, 2-3, 4-7, 8-15, 16-31, ...

    Bucket b holds counts in [2^b, 2^(b+1) - 1]; its label is ``"1"`` for b = 0, else
    ``"{2^b}-{2^(b+1)-1}"``. (Memorization grows roughly log-linearly in the duplicate count,
    Carlini et al. 2022; Kandpal et al. 2022.)

    Args:
        count: number of copies of a sequence in the training data, >= 1.

    Returns:
        The bucket label.

    Raises:
        ValueError: count < 1.
        TypeError: count is not an integer.

    Example:
        >>> [duplicate_bucket(c) for c in (1, 2, 3, 4, 100)]
        ['1', '2-3', '2-3', '4-7', '64-127']
    """
    c = _as_int(count, "count")
    if c < 1:
        raise ValueError(f"duplicate count must be >= 1, got {c}")
    b = c.bit_length() - 1
    lo, hi = 1 << b, (1 << (b + 1)) - 1
    return "1" if lo == hi else f"{lo}-{hi}"


def bucket_order(label: str) -> int:
    """Sort key of a :func:`duplicate_bucket` label: the bucket index b ("1" -> 0, "2-3" -> 1, ...).

    Raises:
        ValueError: ``label`` is not a label :func:`duplicate_bucket` produces.

    Example:
        >>> sorted(["4-7", "1", "64-127", "2-3"], key=bucket_order)
        ['1', '2-3', '4-7', '64-127']
    """
    if not isinstance(label, str):
        raise ValueError(f"not a duplicate bucket label: {label!r}")
    if label == "0":  # a given sequence that does not occur in the corpus
        return -1
    lo_text = label.split("-", 1)[0]
    if not lo_text.isdigit() or lo_text.startswith("0") or len(lo_text) > 30:
        raise ValueError(f"not a duplicate bucket label: {label!r}")
    lo = int(lo_text)
    if duplicate_bucket(lo) != label:
        raise ValueError(f"not a duplicate bucket label: {label!r}")
    return lo.bit_length() - 1


def rate_by_group(
    flags: np.ndarray, groups: list[str], order: list[str] | None = None, *, confidence: float = 0.95
) -> list[dict]:
    """Rate of a boolean flag per group, with Wilson intervals.

    Typical use: the exact-extractable rate per duplicate-count bucket
    (``groups = [duplicate_bucket(c) for c in counts]``).

    Args:
        flags: bool (n,) (0/1 accepted), e.g. :func:`extraction`'s ``exact``.
        groups: n group labels.
        order: the groups to report, in this order; a group listed here but absent from
            ``groups`` is reported with n = k = 0, rate NaN and interval (0.0, 1.0). When None:
            the groups present, sorted by :func:`bucket_order` if every label is a duplicate
            bucket label, else alphabetically.
        confidence: confidence of the Wilson intervals.

    Returns:
        One dict per group: ``{"group": str, "n": int, "k": int (flags set), "rate": k / n,
        "lower": float, "upper": float}`` (:func:`wilson_interval`).

    Raises:
        ValueError: lengths differ, flags not boolean, a present group missing from ``order``,
            or duplicates in ``order``.

    Example:
        >>> rows = rate_by_group([True, False, True, True], ["2-3", "1", "2-3", "1"])
        >>> [(r["group"], r["k"], r["n"], r["rate"]) for r in rows]
        [('1', 1, 2, 0.5), ('2-3', 2, 2, 1.0)]
    """
    f = np.asarray(flags)
    if f.ndim != 1:
        raise ValueError(f"flags must be 1-D (n,), got shape {f.shape}")
    if f.dtype != np.bool_:
        if not (np.issubdtype(f.dtype, np.integer) or np.issubdtype(f.dtype, np.floating)) or not np.isin(
            f, (0, 1)
        ).all():
            raise ValueError("flags must be boolean or 0/1")
        f = f.astype(bool)
    groups = list(groups)
    if len(groups) != f.shape[0]:
        raise ValueError(f"flags has {f.shape[0]} items but groups has {len(groups)}")
    n_by: dict[str, int] = {}
    k_by: dict[str, int] = {}
    for flag, g in zip(f.tolist(), groups):
        n_by[g] = n_by.get(g, 0) + 1
        k_by[g] = k_by.get(g, 0) + int(flag)
    if order is not None:
        order = list(order)
        if len(set(order)) != len(order):
            raise ValueError("order contains duplicates")
        missing = sorted(set(n_by) - set(order), key=str)
        if missing:
            raise ValueError(f"groups {missing} are not in order")
        keys = order
    else:
        try:
            keys = sorted(n_by, key=bucket_order)
        except ValueError:
            keys = sorted(n_by)
    rows = []
    for g in keys:
        n = n_by.get(g, 0)
        k = k_by.get(g, 0)
        lower, upper = wilson_interval(k, n, confidence)
        rows.append({"group": g, "n": n, "k": k, "rate": k / n if n else float("nan"), "lower": lower, "upper": upper})
    return rows
