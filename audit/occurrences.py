"""How often each audited token window occurs in the tokenized corpus (issue #12, section 2).

Definition (Carlini et al. 2022, "Quantifying memorization"; Kandpal et al. 2022, "Deduplicating
training data mitigates privacy risks"; Lee et al. 2021's suffix-array ``count-occurrences``):
the number of times the exact P + C token window occurs in the training data, at any offset of
any document (overlapping occurrences count; a window in shared boilerplate counts every copy).

Method: one streaming pass. Every window of W = P + C tokens gets a polynomial rolling hash
(mod 2^64: prefix sums of x_j B^j, times B^-i; B odd, so invertible), looked up in the sorted
hashes of the sampled windows; every hit is verified token by token, so a collision never
counts. Documents go in batches of ~1M tokens (windows straddling two documents masked out).
Memory follows the sample and one batch, not the corpus (``bench/occurrences_bench.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

_B = 0x9E3779B97F4A7C15  # odd: invertible mod 2^64
_B_INV = pow(_B, -1, 1 << 64)
_pow_cache: dict[int, np.ndarray] = {}


def _powers(n: int, base: int) -> np.ndarray:
    """base^j mod 2^64 for j < n (uint64, cached and grown by doubling)."""
    have = _pow_cache.get(base)
    if have is None or have.size < n:
        size = max(n, 2 * (have.size if have is not None else 1024))
        p = np.full(size, base, dtype=np.uint64)
        p[0] = 1
        with np.errstate(over="ignore"):
            have = np.cumprod(p, dtype=np.uint64)
        _pow_cache[base] = have
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
        np.cumsum(x * _powers(n, _B), dtype=np.uint64, out=pre[1:])
        return (pre[W:] - pre[:-W]) * _powers(n - W + 1, _B_INV)


def count_occurrences_reference(windows: np.ndarray, documents: Iterable[list[int] | np.ndarray]) -> np.ndarray:
    """int64 (m,): occurrences of each row of ``windows`` (m, W) in ``documents``, one document
    at a time (the plain definition, which :func:`count_occurrences` batches)."""
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
        for pos in np.flatnonzero(np.isin(h, keys)).tolist():
            seg = d[pos : pos + W]
            for i in by_hash[int(h[pos])]:
                if np.array_equal(seg, windows[i]):
                    counts[i] += 1
    return counts


#: Tokens per batch of :func:`count_occurrences` (documents are concatenated up to this size):
#: ~10 arrays of 8 bytes per token, so ~80 MiB of scratch at the default.
BATCH_TOKENS = 1 << 20
#: Hits verified at a time (scratch of VERIFY_CHUNK * W int64).
VERIFY_CHUNK = 1 << 15


def count_occurrences(windows: np.ndarray, documents: Iterable[list[int] | np.ndarray],
                      batch_tokens: int = BATCH_TOKENS) -> np.ndarray:
    """int64 (m,): occurrences of each row of ``windows`` (m, W) in ``documents`` (token id
    lists or arrays, streamed), by the module docstring's method in batches of about
    ``batch_tokens`` tokens; identical to :func:`count_occurrences_reference`."""
    windows = np.asarray(windows, dtype=np.int64)
    m, W = windows.shape
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    uniq, inverse = np.unique(windows, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    uh = np.array([window_hashes(w, W)[0] for w in uniq], dtype=np.uint64)
    order = np.argsort(uh, kind="stable")
    keys = uh[order]
    # distinct windows sharing a hash (a 64-bit collision inside the sample): verified one by one
    collide = set(keys[1:][keys[1:] == keys[:-1]].tolist())
    ucounts = np.zeros(len(uniq), dtype=np.int64)
    offsets = np.arange(W, dtype=np.int64)

    def flush(batch: list[np.ndarray]) -> None:
        lengths = np.array([d.size for d in batch], dtype=np.int64)
        x = np.concatenate(batch) if len(batch) > 1 else batch[0]
        h = window_hashes(x, W)  # documents of >= W tokens only: not empty
        # window i is inside one document iff its first and last token belong to the same one
        doc_of = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
        idx = np.searchsorted(keys, h)
        np.minimum(idx, keys.size - 1, out=idx)
        hit = np.flatnonzero((keys[idx] == h) & (doc_of[: h.size] == doc_of[W - 1 :]))
        for c0 in range(0, hit.size, VERIFY_CHUNK):  # bounded scratch: a window may occur in every position
            hc = hit[c0 : c0 + VERIFY_CHUNK]
            cand = order[idx[hc]]
            segs = x[hc[:, None] + offsets]
            ok = (segs == uniq[cand]).all(axis=1)
            np.add.at(ucounts, cand[ok], 1)
            if collide:
                for j in np.flatnonzero(~ok).tolist():
                    hv = int(h[hc[j]])
                    if hv in collide:
                        for u in np.flatnonzero(uh == hv).tolist():
                            if u != cand[j] and np.array_equal(segs[j], uniq[u]):
                                ucounts[u] += 1

    batch, size = [], 0
    for doc in documents:
        d = np.asarray(doc, dtype=np.int64)
        if d.size < W:
            continue
        batch.append(d)
        size += d.size
        if size >= batch_tokens:
            flush(batch)
            batch, size = [], 0
    if batch:
        flush(batch)
    return ucounts[inverse]


def corpus_documents(shards, encode: Callable[[list[str]], list[list[int]]], text_column: str, id_column):
    """Token ids of every corpus document, in canonical order, tokenized in batches (the fast
    tokenizer's batch call), streamed."""
    from .sampling import corpus_batches

    for _, _, reader, batch in corpus_batches(shards, text_column, id_column, batch_rows=8192):
        yield from encode([t or "" for t in reader.text(batch).to_pylist()])


__all__ = ["window_hashes", "count_occurrences", "count_occurrences_reference", "corpus_documents"]
