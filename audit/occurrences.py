"""How often each audited token window occurs in the tokenized corpus (issue #12, section 2).

Definition (Carlini et al. 2022, "Quantifying memorization"; Kandpal et al. 2022, "Deduplicating
training data mitigates privacy risks"; Lee et al. 2021's suffix-array ``count-occurrences``):
the number of times the exact P + C token window occurs in the training data, at any offset of
any document (overlapping occurrences count; a window in shared boilerplate counts every copy).

Method: one streaming pass. Each corpus document's token ids get a polynomial rolling hash of
every window of W = P + C tokens (mod 2^64, vectorised: prefix sums of x_j B^j, then the window
sum times B^-i; B odd, so invertible mod 2^64); the hashes are looked up in a sorted array of
the sampled windows' hashes, and every hit is verified token by token, so a hash collision
never counts. Memory follows the sample (its hashes) and one batch of documents, not the
corpus. Throughput: ``bench/occurrence_bench.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

_B = 0x9E3779B97F4A7C15  # odd: invertible mod 2^64
_B_INV = pow(_B, -1, 1 << 64)
_pow_cache: dict[str, np.ndarray] = {}


def _powers(n: int, base: int, key: str) -> np.ndarray:
    """base^j mod 2^64 for j < n (uint64, cached and grown by doubling)."""
    have = _pow_cache.get(key)
    if have is None or have.size < n:
        size = max(n, 2 * (have.size if have is not None else 1024))
        p = np.full(size, base, dtype=np.uint64)
        p[0] = 1
        with np.errstate(over="ignore"):
            have = np.cumprod(p, dtype=np.uint64)
        _pow_cache[key] = have
    return have[:n]


def window_hashes(tokens, W: int) -> np.ndarray:
    """uint64 (n - W + 1,): hash of every window tokens[i : i + W] (empty if n < W);
    h = sum_t (x_{i+t} + 1) B^t mod 2^64."""
    x = np.asarray(tokens, dtype=np.int64).astype(np.uint64) + np.uint64(1)
    n = x.size
    if n < W:
        return np.zeros(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        pre = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum(x * _powers(n, _B, "b"), dtype=np.uint64, out=pre[1:])
        return (pre[W:] - pre[:-W]) * _powers(n - W + 1, _B_INV, "inv")


def count_occurrences(windows: np.ndarray, documents: Iterable[list[int] | np.ndarray]) -> np.ndarray:
    """int64 (m,): occurrences of each row of ``windows`` (m, W) in ``documents`` (token id
    lists, streamed), every offset, hash hits verified token by token."""
    windows = np.asarray(windows, dtype=np.int64)
    m, W = windows.shape
    counts = np.zeros(m, dtype=np.int64)
    if m == 0:
        return counts
    wh = np.array([window_hashes(w, W)[0] for w in windows], dtype=np.uint64)
    keys = np.unique(wh)
    by_hash: dict[int, list[int]] = {}
    for i, h in enumerate(wh.tolist()):
        by_hash.setdefault(h, []).append(i)
    for doc in documents:
        d = np.asarray(doc, dtype=np.int64)
        h = window_hashes(d, W)
        if h.size == 0:
            continue
        for pos in np.flatnonzero(np.isin(h, keys, assume_unique=False)).tolist():
            seg = d[pos : pos + W]
            for i in by_hash[int(h[pos])]:
                if np.array_equal(seg, windows[i]):
                    counts[i] += 1
    return counts


def corpus_documents(shards, encode: Callable[[list[str]], list[list[int]]], text_column: str, id_column,
                     batch_rows: int = 8192):
    """Token ids of every corpus document, in canonical order, tokenized in batches (the fast
    tokenizer's batch call), streamed."""
    from dedup.shards import ShardReader

    for shard in shards:
        reader = ShardReader(shard, text_column, id_column, False, batch_rows)
        for batch in reader.batches():
            yield from encode([t or "" for t in reader.text(batch).to_pylist()])


__all__ = ["window_hashes", "count_occurrences", "corpus_documents"]
