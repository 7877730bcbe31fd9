"""Memorization and membership-inference metrics: pure numpy on per-token arrays.

Nothing here touches a model: the inputs are the numpy arrays that :mod:`audit.lm` returns from
one teacher-forced forward pass (``TokenStats``) or from greedy generation. Only numpy and the
standard library are used (no torch, sklearn or scipy).

Position convention (as in ``audit.lm.TokenStats``): for sequences of L tokens, per-token arrays
have T = L - 1 columns, and column t describes the prediction of token t+1 from tokens 0..t.

Membership-inference scores (MIMIR conventions: computed over all T predicted positions)
    SIGN CONVENTION: every ``score_*`` function returns a score where HIGHER = MORE LIKELY A
    MEMBER (of the target model's training data); :func:`loss` is a quantity, not a score. Pass
    the ``score_*`` values and boolean labels (True = member) straight to :mod:`audit.stats`
    (ROC, PR, intervals, buckets): an informative score gives AUC > 0.5.

Units: log-probabilities and losses are natural logarithms (nats, per token); zlib lengths are bytes.
"""

from __future__ import annotations

import zlib

import numpy as np

from .stats import as_int

#: zlib level of :func:`score_zlib`: 9 (MIMIR uses the default, 6); summary.json's ``zlib_level``.
ZLIB_LEVEL = 9

__all__ = ["extraction", "pythia_score", "loss", "score_loss", "score_zlib", "score_min_k", "score_min_k_plus_plus",
           "score_reference"]


def float_array(x, name: str, ndim: int) -> np.ndarray:
    """``x`` as a float64 array of ``ndim`` dimensions, numeric and free of NaN (ValueError
    naming ``name`` otherwise)."""
    a = np.asarray(x)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {'(n,)' if ndim == 1 else '(n, T)'}, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN")
    return a


def _per_token(x, name: str) -> np.ndarray:
    a = float_array(x, name, 2)
    if a.shape[1] < 1:
        raise ValueError(f"{name} must have at least one predicted position (T >= 1), got shape {a.shape}")
    return a


def same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """ValueError naming both arrays unless they have one shape."""
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}")


def _check_k(k: float) -> float:
    k = float(k)
    if not (0.0 < k <= 1.0):
        raise ValueError(f"k must be in (0, 1], got {k}")
    return k


def _lowest_mean(x: np.ndarray, k: float) -> np.ndarray:
    """Mean of the lowest m values of each row of x (n, T), m as in :func:`score_min_k`."""
    m = max(1, int(x.shape[1] * k))
    return np.partition(x, m - 1, axis=1)[:, :m].mean(axis=1)


def extraction(greedy_match: np.ndarray, prompt_len: int, cont_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact C-extractability and the greedy-reproduced prefix length, from one forward pass.

    Definition (Carlini et al. 2022, "Quantifying memorization"; Biderman et al. 2023, Pythia):
    a sequence is C-extractable with a P-token prompt when greedy decoding from tokens [0, P)
    reproduces the true continuation tokens [P, P+C) exactly. Greedy decoding reproduces it iff,
    in a teacher-forced pass over prompt + true continuation, the arg-max prediction at every
    continuation position equals the true next token; the same pass gives the number of leading
    continuation tokens that greedy decoding reproduces (it agrees with the truth up to the first
    mismatch).

    ``greedy_match``: bool (n, L-1), column t True when the arg-max prediction of token t+1
    equals the true token t+1; the continuation tokens P..P+C-1 are predicted at columns
    P-1..P+C-2, later columns are ignored. Returns ``(exact, leading)``: ``exact`` bool (n,),
    all C continuation predictions match; ``leading`` int64 (n,) in [0, C], the consecutive
    matches from column P-1. ValueError: not a 2-D boolean array, P < 1, C < 1, or P + C > L.

    Example (P = 2, C = 3; the first sequence's continuation is reproduced, the second's
    only up to its second token):

        >>> exact, leading = extraction(np.array([[False, True, True, True],
        ...                                       [True, True, True, False]]), 2, 3)
        >>> exact.tolist(), leading.tolist()
        ([True, False], [3, 2])
    """
    P, C = as_int(prompt_len, "prompt_len"), as_int(cont_len, "cont_len")
    g = np.asarray(greedy_match)
    if g.ndim != 2:
        raise ValueError(f"greedy_match must be 2-D (n, L-1), got shape {g.shape}")
    if g.dtype != np.bool_:
        raise ValueError(f"greedy_match must be boolean, got dtype {g.dtype}")
    for name, v in (("prompt_len", P), ("cont_len", C)):
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    L = g.shape[1] + 1
    if P + C > L:
        raise ValueError(f"prompt_len + cont_len = {P} + {C} = {P + C} exceeds the sequence length L = {L} "
                         f"(greedy_match has shape {g.shape}, i.e. L-1 = {L - 1} predicted positions)")
    window = g[:, P - 1 : P + C - 1]  # (n, C): predictions of tokens P..P+C-1
    exact = window.all(axis=1)
    return exact, np.where(exact, C, np.argmin(window, axis=1)).astype(np.int64)


def pythia_score(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Pythia memorization score: the fraction of generated continuation tokens that are correct.

    Definition (Biderman et al. 2023, "Emergent and predictable memorization"): greedy-decode C
    tokens after the prompt and compare them, position by position, with the true continuation;
    the score is (number of equal positions) / C, in steps of 1/C (1.0 = C-extractable).
    ``generated``, ``truth``: int token ids (n, C); ValueError when not 2-D, of different
    shapes, or C == 0. Returns float64 (n,).

    Example:
        >>> pythia_score([[5, 6, 7, 9]], [[5, 6, 8, 9]]).tolist()
        [0.75]
    """
    g, t = np.asarray(generated), np.asarray(truth)
    if g.ndim != 2 or t.ndim != 2:
        raise ValueError(f"generated and truth must be 2-D (n, C), got shapes {g.shape} and {t.shape}")
    same_shape(g, t, "generated", "truth")
    if g.shape[1] < 1:
        raise ValueError(f"the continuation must have at least one token (C >= 1), got shape {g.shape}")
    return (g == t).mean(axis=1, dtype=np.float64)


def loss(logprob: np.ndarray) -> np.ndarray:
    """Mean negative log-likelihood per token (a LOSS: lower = more likely a member).

    Definition (MIMIR "loss" attack; Yeom et al. 2018): loss = -(1/T) sum_t log p(x_{t+1} | x_<=t)
    over all T = L-1 predicted positions of the sequence. ``logprob``: float (n, T), the
    log-probability (nats) of each true next token, as in every score below (ValueError when
    not 2-D with T >= 1, or with NaN). Returns float64 (n,), nats per token.
    """
    return -_per_token(logprob, "logprob").mean(axis=1)


def score_loss(logprob: np.ndarray) -> np.ndarray:
    """LOSS attack score = -:func:`loss` (higher = more likely a member), nats per token."""
    return -loss(logprob)


def score_zlib(logprob: np.ndarray, text_bytes: list[bytes]) -> np.ndarray:
    """zlib-ratio score = -loss / zlib length (higher = more likely a member).

    Definition (Carlini et al. 2021, "Extracting training data from large language models", the
    zlib entropy ratio; MIMIR ``zlib``): the model's loss divided by the length in bytes of the
    sequence's text compressed with ``zlib.compress(text, 9)``, negated for our sign convention.
    Text that is merely repetitive (low loss but also compressible) is discounted.
    ``text_bytes``: the n texts as bytes (``str`` is encoded as UTF-8; TypeError for anything
    else). Returns float64 (n,), nats per token per compressed byte (negated).
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
    mean of the lowest m = max(1, int(T * k)) token log-probabilities of the sequence: the
    references' ``int(len * k)`` (MIMIR, Min-K%++, Shi et al.), float product included (k = 0.7,
    T = 90 gives m = 62), and 1 where they average no token (NaN).
    ``k`` in (0, 1] (ValueError outside). Returns float64 (n,), nats per token.

    Example (T = 5, k = 0.4: the mean of the 2 lowest log-probabilities):
        >>> score_min_k([[-0.1, -3.0, -0.2, -1.0, -0.5]], k=0.4).tolist()
        [-2.0]
    """
    k = _check_k(k)
    return _lowest_mean(_per_token(logprob, "logprob"), k)


def score_min_k_plus_plus(logprob: np.ndarray, mu: np.ndarray, sigma: np.ndarray, k: float = 0.2) -> np.ndarray:
    """Min-K%++ score (higher = more likely a member).

    Definition (Zhang et al. 2024, "Min-K%++"): per token, z = (log p(x_{t+1}) - mu_t) / sigma_t,
    where mu_t and sigma_t are the mean and standard deviation of log p(v) for v drawn from the
    model's predicted distribution at position t (where sigma_t == 0, z = 0); the score is the
    mean of the lowest m = max(1, int(T * k)) values of z (as in :func:`score_min_k`).
    ``mu``, ``sigma``: float (n, T), in nats, sigma >= 0 (ValueError: shapes differ, sigma < 0,
    NaN, or k outside (0, 1]). Returns float64 (n,), dimensionless (standard deviations).
    """
    k = _check_k(k)
    lp, m_, s_ = _per_token(logprob, "logprob"), _per_token(mu, "mu"), _per_token(sigma, "sigma")
    same_shape(lp, m_, "logprob", "mu")
    same_shape(lp, s_, "logprob", "sigma")
    if (s_ < 0).any():
        raise ValueError("sigma must be >= 0")
    return _lowest_mean(np.where(s_ > 0, (lp - m_) / np.where(s_ > 0, s_, 1.0), 0.0), k)


def score_reference(logprob: np.ndarray, ref_logprob: np.ndarray) -> np.ndarray:
    """Reference-model score = loss(reference) - loss(target) (higher = more likely a member).

    Definition (MIMIR ``ref``, after Carlini et al. 2021, who rank by the ratio of log-perplexities): a member
    has a lower loss under the target model than under a reference model that shares the
    tokenizer but has not seen the data. ``ref_logprob``: the reference model's (n, T) for the
    same tokens (ValueError when the shapes differ). Returns float64 (n,), nats per token.
    """
    lp, ref = _per_token(logprob, "logprob"), _per_token(ref_logprob, "ref_logprob")
    same_shape(lp, ref, "logprob", "ref_logprob")
    return loss(ref) - loss(lp)
