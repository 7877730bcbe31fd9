"""Exposure of planted canaries (Carlini, Liu, Erlingsson, Kos & Song 2019, "The Secret Sharer").

A canary ``s`` is drawn from a random space ``R`` (:mod:`audit.canaries`: ``canary_words``
words drawn i.i.d. uniformly from :func:`dedup.synthetic.vocabulary`, ``|R| = V ** canary_words``).
Ranking R by the model's log-perplexity ``Px(r) = -log2 Pr_model(r)`` (rank 1 = most likely)::

    exposure(s) = log2 |R| - log2 rank(s)          (0 .. log2 |R|; ~1 unmemorised)

When R is too large to enumerate, Carlini et al. estimate ``exposure ~= -log2 Pr_{r in R}[Px(r)
<= Px(s)]`` (:func:`exposure_sampled`), as their reference code does (tensorflow_privacy,
``privacy_tests/secret_sharer/exposures.py``): by the canary's rank among sampled candidates
(``compute_exposure_interpolation``) or, with too few candidates as likely, by the lower tail
of a skew-normal fitted by maximum likelihood (``compute_exposure_extrapolation``; scipy's
``logcdf`` here, finite where their ``cdf`` underflows).
"""

from __future__ import annotations

import math
import numpy as np

__all__ = ["exposure_from_rank", "exposure_exact", "exposure_sampled", "random_space_log2",
           "canary_exposure", "exposure_by_copies"]


def exposure_from_rank(rank: int, log2_space: float) -> float:
    """``log2 |R| - log2 rank`` (rank 1 = the most likely candidate)."""
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    return float(log2_space - math.log2(rank))


def exposure_exact(canary_score: float, space_scores) -> float:
    """Exposure against a fully enumerated space (``space_scores``: the log-perplexity of every
    candidate of R, the canary's included or not). Ties count against the canary (rank = 1 +
    the number of OTHER candidates with a score <= the canary's), the conservative choice."""
    s = np.asarray(space_scores, dtype=np.float64)
    absent = 0 if np.any(s == canary_score) else 1  # the canary, when not among the scores
    return exposure_from_rank(int(np.sum(s <= canary_score)) + absent, math.log2(s.size + absent))


def exposure_sampled(canary_score: float, sample_scores, log2_space: float, *, min_tail: int = 10) -> dict:
    """Exposure estimated from candidates sampled uniformly from R (Carlini et al. 2019, sec. 4).

    ``sample_scores``: log-perplexities of ``n`` sampled candidates. Returns ``{"exposure",
    "method" ("empirical" or "skew-normal fit"), "tail" (samples scoring <= the canary), "n"}``.
    Empirical: ``log2 n - log2(tail + 1)`` (ties count against the canary, as the ``<=`` above; the
    reference code ranks tied samples after it); with fewer than ``min_tail`` such samples,
    ``-log2 F(canary)``, ``F`` the fitted skew-normal's CDF. Capped at ``log2_space``.
    """
    s = np.asarray(sample_scores, dtype=np.float64)
    if s.ndim != 1 or s.size < 2 or not np.isfinite(s).all():
        raise ValueError("sample_scores must be a 1-D array of >= 2 finite log-perplexities")
    n = int(s.size)
    tail = int(np.sum(s <= canary_score))
    if tail >= min_tail:
        e, method = exposure_from_rank(tail + 1, math.log2(n)), "empirical"
    else:
        from scipy.stats import skewnorm

        if np.ptp(s) == 0:  # no spread to fit: the canary is below all candidates or ties them
            e = log2_space if canary_score < s[0] else 0.0
        else:
            e = -float(skewnorm.logcdf(canary_score, *skewnorm.fit(s))) / math.log(2)
        method = "skew-normal fit"
    return {"exposure": float(min(max(e, 0.0), log2_space)), "method": method, "tail": tail, "n": n}


def random_space_log2(canary_words: int, vocabulary_size: int) -> float:
    """log2 |R| of :mod:`audit.canaries`' random space: ``canary_words * log2 V``."""
    return float(canary_words * math.log2(vocabulary_size))


def _log_perplexity(lm, texts: list[str], batch_size: int, separator: bool = True) -> np.ndarray:
    """-log2 Pr_model(text) per text: sum over its tokens. ``separator``: the first one predicted from an
    end-of-text token placed before it (after the BOS of ``lm.prefix``, context only; rows padded with it and
    masked out of the sum), as a model trained on documents joined by that token saw it; else the text as
    ``memdedup train`` cuts instances, from the document's start: its first token is context only, unless a
    BOS of ``lm.prefix`` precedes it."""
    eos = lm.tokenizer.eos_token_id or 0
    ids = lm.encode(texts)
    lead = int(separator)
    L = max(len(t) for t in ids) + lead
    x = np.full((len(ids), L), eos, dtype=np.int64)
    mask = np.zeros((len(ids), L - 1 + lm.n_prefix), dtype=bool)  # the columns of lm.score: predicting x[1:]
    first = lm.n_prefix if separator else max(lm.n_prefix - 1, 0)  # the column predicting the first scored token
    for i, t in enumerate(ids):
        x[i, lead : len(t) + lead] = t
        mask[i, first : lm.n_prefix + len(t) - 1 + lead] = True
    stats = lm.score(x, batch_size)
    return -(np.where(mask, stats.logprob, 0.0).sum(axis=1)) / math.log(2)


def canary_exposure(lm, canaries: list[str], canary_words: int, *, n_samples: int = 1000, seed: int = 0,
                    batch_size: int = 32, vocabulary: list[str] | None = None, separator: bool = True,
                    context: int | None = None) -> list[dict]:
    """Exposure of each canary text under ``lm`` (an :class:`audit.lm.CausalLM`), against
    ``n_samples`` candidates drawn from R (``vocabulary`` None: the default one). Returns one
    :func:`exposure_sampled` dict per canary, with ``log_perplexity``, ``log2_space`` and
    ``words``: when the texts (after the leading end-of-text token of ``separator``, see
    :func:`_log_perplexity`) overflow the model's context (:meth:`audit.lm.CausalLM.beyond_context`) or
    ``context`` tokens (the length the model was trained on), those of the canaries' ``k``-word prefixes, the
    largest ``k`` that fits (``log2 |R| = k log2 V``). A model scored in a context it never trained in (an
    end-of-text token before a document it saw from its start, positions past its training length) shows
    little exposure of what it memorised.
    """
    if vocabulary is None:
        from dedup.synthetic import vocabulary as vocab

        vocabulary = vocab()
    draws = np.random.default_rng(seed).integers(0, len(vocabulary), size=(n_samples, canary_words))
    sample_words = [[vocabulary[i] for i in row] for row in draws.tolist()]
    canary_split = [c.split(" ") for c in canaries]

    def fits(j: int) -> bool:
        texts = [" ".join(w[:j]) for w in sample_words + canary_split]
        fed = int(separator) + max(len(t) for t in lm.encode(texts))  # the end-of-text token and the text
        return not lm.beyond_context(fed) and (context is None or fed <= context)
    k, hi = (canary_words, canary_words + 1) if fits(canary_words) else (1, canary_words)  # one word always fits
    while hi - k > 1:  # the largest fitting prefix, by bisection (token counts grow with words)
        mid = (k + hi) // 2
        k, hi = (mid, hi) if fits(mid) else (k, mid)
    log2_space = random_space_log2(k, len(vocabulary))
    sample_scores = _log_perplexity(lm, [" ".join(w[:k]) for w in sample_words], batch_size, separator)
    canary_scores = _log_perplexity(lm, [" ".join(w[:k]) for w in canary_split], batch_size, separator)
    return [{**exposure_sampled(float(c), sample_scores, log2_space), "log_perplexity": float(c),
             "log2_space": log2_space, "words": k} for c in canary_scores]


def exposure_by_copies(copies, exposures) -> list[dict]:
    """Mean, min and max exposure per number of planted copies, ascending copies."""
    copies = np.asarray(copies, dtype=np.int64)
    e = np.asarray(exposures, dtype=np.float64)
    groups = {int(c): e[copies == c] for c in np.unique(copies)}
    return [{"copies": c, "canaries": int(g.size), "mean_exposure": float(g.mean()), "min_exposure": float(g.min()),
             "max_exposure": float(g.max())} for c, g in groups.items()]
