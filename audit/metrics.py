"""Memorization and membership-inference metrics: pure numpy on :mod:`audit.lm`'s per-token arrays.

For sequences of L tokens, per-token arrays have T = L - 1 columns; column t predicts token t+1 from tokens 0..t
(``audit.lm.TokenStats``). SIGN CONVENTION: every ``score_*`` is HIGHER = MORE LIKELY A MEMBER (MIMIR, over all T
positions; an informative score has AUC > 0.5 in :mod:`audit.stats`); :func:`loss` is a quantity, not a score.
Units: nats per token; zlib lengths in bytes.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from .stats import as_int

#: zlib level of :func:`score_zlib`: 9 (MIMIR uses the default, 6); summary.json's ``zlib_level``.
ZLIB_LEVEL = 9

__all__ = ["extraction", "pythia_score", "loss", "score_loss", "score_zlib", "score_min_k", "score_min_k_plus_plus",
           "score_reference"]


def float_array(x, name: str, ndim: int) -> np.ndarray:
    """``x`` as a numeric float64 ``ndim``-D array without NaN, else ValueError naming ``name``."""
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
    m = max(1, math.floor(k * x.shape[1] + 1e-9))
    return np.partition(x, m - 1, axis=1)[:, :m].mean(axis=1)


def extraction(greedy_match: np.ndarray, prompt_len: int, cont_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact C-extractability and the greedy-reproduced prefix length, from one teacher-forced pass.

    A sequence is C-extractable with a P-token prompt when greedy decoding from tokens [0, P) reproduces tokens
    [P, P+C) (Carlini et al. 2022, "Quantifying memorization"; Biderman et al. 2023, Pythia): iff every continuation
    arg-max equals the true token. ``greedy_match``: bool (n, L-1), column t True when token t+1's arg-max is right
    (columns P-1..P+C-2 used). Returns ``(exact, leading)``: bool (n,), and int64 (n,) in [0, C], consecutive matches
    from column P-1. ValueError: not a 2-D boolean array, P < 1, C < 1, or P + C > L.

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
    """Pythia memorization score (Biderman et al. 2023): the fraction of the C greedy-generated tokens
    equal to the true ones, position by position (1.0 = C-extractable). ``generated``, ``truth``: int (n, C);
    ValueError when not 2-D, of other shapes, or C == 0. Returns float64 (n,).

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
    """Mean negative log-likelihood per token, -(1/T) sum_t log p(x_{t+1} | x_<=t) (lower = more likely a member;
    MIMIR "loss", Yeom et al. 2018). ``logprob``: float (n, T), nats, as in every score (ValueError when not 2-D with
    T >= 1, or NaN). Returns float64 (n,), nats per token."""
    return -_per_token(logprob, "logprob").mean(axis=1)


def score_loss(logprob: np.ndarray) -> np.ndarray:
    """LOSS attack score = -:func:`loss` (higher = more likely a member), nats per token."""
    return -loss(logprob)


def score_zlib(logprob: np.ndarray, text_bytes: list[bytes]) -> np.ndarray:
    """zlib-ratio score = -loss / zlib length (Carlini et al. 2021, the zlib entropy ratio; MIMIR ``zlib``):
    bytes of ``zlib.compress(text, 9)``. ``text_bytes``: n texts, bytes or str (UTF-8; TypeError otherwise). Returns
    float64 (n,), nats per token per compressed byte."""
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
    """Min-K% Prob (Shi et al. 2024): the mean of the lowest m = max(1, floor(k * T)) token
    log-probabilities (floor with a 1e-9 tolerance); ``k`` in (0, 1] (ValueError outside). float64 (n,), nats per token.

    >>> score_min_k([[-0.1, -3.0, -0.2, -1.0, -0.5]], k=0.4).tolist()
    [-2.0]
    """
    k = _check_k(k)
    return _lowest_mean(_per_token(logprob, "logprob"), k)


def score_min_k_plus_plus(logprob: np.ndarray, mu: np.ndarray, sigma: np.ndarray, k: float = 0.2) -> np.ndarray:
    """Min-K%++ (Zhang et al. 2024): z = (log p(x_{t+1}) - mu_t) / sigma_t (0 where sigma_t == 0),
    mu_t and sigma_t of log p(v) under the predicted distribution at t; the mean of the lowest m as in
    :func:`score_min_k`. ``mu``, ``sigma``: float (n, T), nats, sigma >= 0 (ValueError: shapes, sigma < 0, NaN, k).
    float64 (n,), in standard deviations."""
    k = _check_k(k)
    lp, m_, s_ = _per_token(logprob, "logprob"), _per_token(mu, "mu"), _per_token(sigma, "sigma")
    same_shape(lp, m_, "logprob", "mu")
    same_shape(lp, s_, "logprob", "sigma")
    if (s_ < 0).any():
        raise ValueError("sigma must be >= 0")
    return _lowest_mean(np.where(s_ > 0, (lp - m_) / np.where(s_ > 0, s_, 1.0), 0.0), k)


def score_reference(logprob: np.ndarray, ref_logprob: np.ndarray) -> np.ndarray:
    """Reference-model score = loss(reference) - loss(target) (Carlini et al. 2021; MIMIR ``ref``):
    ``ref_logprob`` (n, T) of a model of the same tokenizer that has not seen the data. float64 (n,), nats per token."""
    lp, ref = _per_token(logprob, "logprob"), _per_token(ref_logprob, "ref_logprob")
    same_shape(lp, ref, "logprob", "ref_logprob")
    return loss(ref) - loss(lp)
