"""MinHash kernels: permutation updates, documents from Arrow buffers, token sets, band keys.

The schemes' maths, their bit-exactness with datasketch and pure-Python references are in
:mod:`dedup.minhash`. Per scheme code:

* ``SCHEME_FAST`` (0): ``x = fmix32(dedup.minhash.fast_hash32(token))`` (:func:`finish_fast` of
  :func:`fast_poly`), then :func:`minhash_affine32`. Word n-gram polynomials roll over the word
  hashes: O(words) hashing instead of O(n * bytes).
* ``SCHEME_AFFINE32`` (1): ``x = fmix32(sha1_32(token))``, then :func:`minhash_affine32`.
* ``SCHEME_LEGACY`` (2): ``x = sha1_32(token)``, then :func:`update_legacy`.
* ``SCHEME_FSS`` (3): :func:`fss_sketch` of the :func:`fast_poly` values; 2K round seeds in ``a64``.

All signatures are produced as uint32 (every scheme's values fit in 32 bits).
"""

import numba
import numpy as np

from .hashing import _read64le, fmix32, fmix64, sha1_32, xxh64
from .text import _room, canonicalize_chars, canonicalize_words

from . import SCHEME_AFFINE32, SCHEME_FAST, SCHEME_FSS, SCHEME_LEGACY  # noqa: F401  (re-exported)

_MERSENNE = np.uint64((1 << 61) - 1)
_LOW32 = np.uint64(0xFFFFFFFF)
_EMPTY = np.uint32(0xFFFFFFFF)
_M = np.uint64(0x9E3779B97F4A7C15)
_SPACE = np.uint8(32)


_K1 = np.uint64(0x87C37B91114253D5)
_K2 = np.uint64(0x4CF5AD432745937F)


@numba.njit(cache=True, nogil=True, inline="always")
def _low_bytes_mask(nbytes):
    """Mask of the low ``nbytes`` (0..8) bytes; two half shifts avoid a 64-bit shift."""
    half = np.uint64(4 * nbytes)
    return ((np.uint64(1) << half) << half) - np.uint64(1)


@numba.njit(cache=True, nogil=True, inline="always")
def part_hash(buf, start, end):
    """The fast scheme's 64-bit hash of ``buf[start:end]`` (:func:`dedup.minhash.part_hash`).
    Up to 16 bytes it reads 16 bytes from ``start`` whatever the length (callers pad their
    buffers by 16 bytes) and masks, so word lengths cause no branch mispredictions."""
    ln = end - start
    if ln > 16:
        return xxh64(buf, start, end, np.uint64(0))
    s = np.uint64(start)  # unsigned: one 8-byte load each (see hashing._read64le)
    lo = _read64le(buf, s) & _low_bytes_mask(min(ln, 8))
    hi = _read64le(buf, s + np.uint64(8)) & _low_bytes_mask(max(ln - 8, 0))
    h = hi * _K2
    h = (h << np.uint64(31)) | (h >> np.uint64(33))
    return fmix64((lo * _K1) ^ h ^ np.uint64(ln))


@numba.njit(cache=True, nogil=True, inline="always")
def finish_fast(acc):
    """The fast scheme's permutation input from its polynomial accumulator."""
    return np.uint64(fmix32(np.uint32(fmix64(acc) & _LOW32)))


@numba.njit(cache=True, nogil=True)
def fast_poly(buf, start, end):
    """sum_i part_hash(p_i) * M^(k-1-i) mod 2^64 over the parts of buf[start:end] split on
    b" " (``buf`` readable 16 bytes past ``end``)."""
    acc = np.uint64(0)
    part = start
    for pos in range(start, end):
        if buf[pos] == _SPACE:
            acc = acc * _M + part_hash(buf, part, pos)
            part = pos + 1
    return acc * _M + part_hash(buf, part, end)


@numba.njit(cache=True, nogil=True, inline="always")
def token_hash(buf, start, end, scheme):
    """The scheme's input hash of ``buf[start:end]`` (uint8 array), as uint64: 32 bits,
    except for the FSS scheme (the 64-bit polynomial :func:`fast_poly`)."""
    if scheme == SCHEME_FAST:
        return finish_fast(fast_poly(buf, start, end))
    if scheme == SCHEME_FSS:
        return fast_poly(buf, start, end)
    h = sha1_32(buf, start, end)
    if scheme == SCHEME_AFFINE32:
        return np.uint64(fmix32(h))
    return np.uint64(h)


@numba.njit(cache=True, nogil=True, inline="always")
def update_affine32(sig, a32, b32, x):
    """sig[k] = min(sig[k], (a_k * x + b_k) mod 2^32) for all k (uint32 arrays)."""
    x32 = np.uint32(x)
    for k in range(sig.shape[0]):
        v = np.uint32(a32[k] * x32 + b32[k])
        if v < sig[k]:
            sig[k] = v


@numba.njit(cache=True, nogil=True)
def minhash_affine32(hashes, count, a32, b32, sig):
    """sig[k] = min over j < count of (a_k * hashes[j] + b_k) mod 2^32 (uint32 arrays).

    Permutations 8 at a time, their running minima in registers, let LLVM keep the inner loop
    in vector registers: ~14 G updates/s on one core here, ~9 G for :func:`update_affine32`'s."""
    K = sig.shape[0]
    k0 = 0
    while k0 + 8 <= K:
        m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = _EMPTY
        a0, a1, a2, a3 = a32[k0], a32[k0 + 1], a32[k0 + 2], a32[k0 + 3]
        a4, a5, a6, a7 = a32[k0 + 4], a32[k0 + 5], a32[k0 + 6], a32[k0 + 7]
        b0, b1, b2, b3 = b32[k0], b32[k0 + 1], b32[k0 + 2], b32[k0 + 3]
        b4, b5, b6, b7 = b32[k0 + 4], b32[k0 + 5], b32[k0 + 6], b32[k0 + 7]
        for j in range(count):
            x = hashes[j]
            m0 = min(m0, np.uint32(a0 * x + b0))
            m1 = min(m1, np.uint32(a1 * x + b1))
            m2 = min(m2, np.uint32(a2 * x + b2))
            m3 = min(m3, np.uint32(a3 * x + b3))
            m4 = min(m4, np.uint32(a4 * x + b4))
            m5 = min(m5, np.uint32(a5 * x + b5))
            m6 = min(m6, np.uint32(a6 * x + b6))
            m7 = min(m7, np.uint32(a7 * x + b7))
        sig[k0], sig[k0 + 1], sig[k0 + 2], sig[k0 + 3] = m0, m1, m2, m3
        sig[k0 + 4], sig[k0 + 5], sig[k0 + 6], sig[k0 + 7] = m4, m5, m6, m7
        k0 += 8
    for k in range(k0, K):
        m = _EMPTY
        for j in range(count):
            m = min(m, np.uint32(a32[k] * hashes[j] + b32[k]))
        sig[k] = m


@numba.njit(cache=True, nogil=True)
def fss_value_bits(K):
    """Bits of an FSS signature entry left for the hash value: 32 minus the bits of the
    largest round number, 2K - 1 (24 for K = 128)."""
    r = 0
    while (1 << r) < 2 * K:
        r += 1
    return 32 - r


@numba.njit(cache=True, nogil=True, inline="always")
def fss_fold(x):
    """The fss scheme's 32-bit token key from the 64-bit polynomial: ``low32(x ^ (x >> 32))``."""
    return np.uint32((x ^ (x >> np.uint64(32))) & _LOW32)


@numba.njit(cache=True, nogil=True)
def fss_sketch(hashes, count, seeds, sig, x32, h32):
    """Fast Similarity Sketching (:mod:`dedup.minhash`) of the set {hashes[0..count-1]} (uint64
    token polynomials; repeats allowed) into ``sig`` (uint32, K); an empty set leaves 0xFFFFFFFF
    everywhere. ``seeds``: uint64 (2K,), ``s_i`` its low 32 bits; ``x32``, ``h32``: uint32 scratch
    of at least ``count`` entries. Token key ``x = fss_fold(hash)``; round i < K puts each token in
    bin ``(h * K) >> 32`` of ``h = fmix32(x ^ s_i)`` (its top log2 K bits when K is a power of two,
    then disjoint from the value bits), round K + b in bin b; value ``i * 2^v + (h mod 2^v)`` in
    round i, v = :func:`fss_value_bits` (K).

    A round first hashes every token into ``h32`` (32-bit lanes: the loop vectorises), then
    updates the bins with a branch-free ``min`` (a branch on it mispredicts: a bin's first
    tokens often lower it).
    """
    K = sig.shape[0]
    for k in range(K):
        sig[k] = _EMPTY
    if count == 0:
        return
    vbits = np.uint32(fss_value_bits(K))
    vmask = np.uint32((1 << fss_value_bits(K)) - 1)
    kk = np.uint64(K)
    log2k = 0
    while (1 << log2k) < K:
        log2k += 1
    pow2 = (1 << log2k) == K and log2k > 0
    shift = np.uint32(32 - log2k) if pow2 else np.uint32(31)
    for j in range(count):
        x32[j] = fss_fold(hashes[j])
    for r in range(K):
        s = np.uint32(seeds[r] & _LOW32)
        hi = np.uint32(r << fss_value_bits(K))
        for j in range(count):
            h32[j] = fmix32(x32[j] ^ s)
        if pow2:  # (h * 2^k) >> 32 = h >> (32 - k): a shift
            for j in range(count):
                h = h32[j]
                b = h >> shift
                sig[b] = min(sig[b], np.uint32(hi | (h & vmask)))
        else:
            for j in range(count):
                h = h32[j]
                b = (np.uint64(h) * kk) >> np.uint64(32)
                sig[b] = min(sig[b], np.uint32(hi | (h & vmask)))
        empty = 0  # a key of round < K never reaches 0xFFFFFFFF; no early exit: the count vectorises
        for k in range(K):
            empty += sig[k] == _EMPTY
        if empty == 0:
            return
    for b in range(K):
        if sig[b] == _EMPTY:
            s = np.uint32(seeds[K + b] & _LOW32)
            m = vmask
            for j in range(count):
                m = min(m, np.uint32(fmix32(x32[j] ^ s) & vmask))
            sig[b] = np.uint32((np.uint32(K + b) << vbits) | m)


@numba.njit(cache=True, nogil=True, inline="always")
def update_legacy(sig, a64, b64, x):
    """sig[k] = min(sig[k], ((a_k x + b_k) mod 2^64 mod (2^61-1)) & 0xFFFFFFFF)."""
    for k in range(sig.shape[0]):
        v = a64[k] * x + b64[k]
        # Mersenne fold: v mod (2^61 - 1) without a 64-bit division.
        v = (v & _MERSENNE) + (v >> np.uint64(61))
        if v >= _MERSENNE:
            v -= _MERSENNE
        v32 = np.uint32(v & _LOW32)
        if v32 < sig[k]:
            sig[k] = v32


@numba.njit(cache=True, nogil=True, inline="always")
def _update(sig, scheme, a32, b32, a64, b64, x):
    if scheme == SCHEME_LEGACY:
        update_legacy(sig, a64, b64, x)
    else:
        update_affine32(sig, a32, b32, x)


@numba.njit(cache=True, nogil=True)
def token_set_signatures(data, offsets, set_offsets, scheme, a32, b32, a64, b64, out):
    """Signatures of token sets into ``out`` (uint32 (n_sets, K); 0xFFFFFFFF where a set is empty).
    ``data``: uint8, all tokens' bytes concatenated; token t is ``data[offsets[t]:offsets[t+1]]``
    (int64 (n_tokens + 1,)); set i holds tokens ``set_offsets[i]..set_offsets[i+1]`` (int64
    (n_sets + 1,))."""
    if scheme == SCHEME_FSS:
        longest = 0
        for i in range(out.shape[0]):
            longest = max(longest, set_offsets[i + 1] - set_offsets[i])
        hashes = np.empty(longest, dtype=np.uint64)
        x32 = np.empty(longest, dtype=np.uint32)
        h32 = np.empty(longest, dtype=np.uint32)
        for i in range(out.shape[0]):
            count = 0
            for t in range(set_offsets[i], set_offsets[i + 1]):
                hashes[count] = token_hash(data, offsets[t], offsets[t + 1], scheme)
                count += 1
            fss_sketch(hashes, count, a64, out[i], x32, h32)
        return
    for i in range(out.shape[0]):
        sig = out[i]
        sig[:] = _EMPTY
        for t in range(set_offsets[i], set_offsets[i + 1]):
            _update(sig, scheme, a32, b32, a64, b64, token_hash(data, offsets[t], offsets[t + 1], scheme))


@numba.njit(cache=True, nogil=True)
def _word_shingle_polys(canon, n, n_words, ngram, word_starts, word_ends, word_hash, polys):
    """:func:`fast_poly` of each word n-gram of a canonical text (uint64, rolled over the
    word hashes); returns their count."""
    if n_words < ngram:
        polys[0] = fast_poly(canon, 0, n)
        return 1
    for k in range(n_words):
        word_hash[k] = part_hash(canon, word_starts[k], word_ends[k + 1])
    top_m = _M  # M^ngram: (acc - w * M^(n-1)) * M = acc * M - w * M^n, mod 2^64
    for _ in range(ngram - 1):
        top_m *= _M
    acc = np.uint64(0)
    for k in range(ngram):
        acc = acc * _M + word_hash[k]
    polys[0] = acc
    for j in range(1, n_words - ngram + 1):
        # One multiply-add on the loop-carried chain; the other multiply is off it.
        acc = acc * _M + (word_hash[j + ngram - 1] - word_hash[j - 1] * top_m)
        polys[j] = acc
    return n_words - ngram + 1


@numba.njit(cache=True, nogil=True)
def _word_shingle_hashes(canon, n, n_words, ngram, scheme, word_starts, word_ends, word_hash, hashes):
    """Token hashes of the word n-grams of a canonical text; returns their count."""
    if n_words < ngram:
        hashes[0] = np.uint32(token_hash(canon, 0, n, scheme))
        return 1
    count = n_words - ngram + 1
    if scheme != SCHEME_FAST:
        for j in range(count):
            hashes[j] = np.uint32(token_hash(canon, word_starts[j], word_ends[j + ngram], scheme))
        return count
    for k in range(n_words):
        word_hash[k] = part_hash(canon, word_starts[k], word_ends[k + 1])
    top_m = _M  # M^ngram (see _word_shingle_polys)
    for _ in range(ngram - 1):
        top_m *= _M
    acc = np.uint64(0)
    for k in range(ngram):
        acc = acc * _M + word_hash[k]
    hashes[0] = np.uint32(finish_fast(acc))
    for j in range(1, count):
        acc = acc * _M + (word_hash[j + ngram - 1] - word_hash[j - 1] * top_m)
        hashes[j] = np.uint32(finish_fast(acc))
    return count


@numba.njit(cache=True, nogil=True)
def _sketch_one(data, start, end, table, bits, cf_bit, map_cps, map_off, map_blob, ngram, char_unit, scheme,
                a32, b32, a64, b64, sig, exact_row, canon, word_starts, word_ends, char_starts, word_hash, hashes,
                hashes64, fss_h):
    """One document; returns its shingle count, or the canonicaliser's -1 (needs utf8proc:
    outputs left as for an empty document) or -2 (scratch too small: nothing written).
    ``fss_h``: uint32 scratch of the fss scheme (``hashes`` is its other one)."""
    if char_unit:
        n, units = canonicalize_chars(data, start, end, table, bits, cf_bit, map_cps, map_off, map_blob, canon,
                                      char_starts)
    else:
        n, units = canonicalize_words(data, start, end, table, bits, cf_bit, map_cps, map_off, map_blob, canon,
                                      word_starts, word_ends)
    if n == -2:
        return -2
    sig[:] = _EMPTY
    if n == -1:
        exact_row[0] = 0
        exact_row[1] = 0
        return -1
    exact_row[0] = xxh64(canon, 0, n, np.uint64(0))
    exact_row[1] = xxh64(canon, 0, n, np.uint64(1))
    if n == 0:
        return 0
    if char_unit:
        count = 1 if units < ngram else units - ngram + 1
        for j in range(count):
            s, e = (0, n) if units < ngram else (char_starts[j], char_starts[j + ngram])
            hashes64[j] = token_hash(canon, s, e, scheme)
            hashes[j] = np.uint32(hashes64[j])
    elif scheme == SCHEME_FSS:
        count = _word_shingle_polys(canon, n, units, ngram, word_starts, word_ends, word_hash, hashes64)
    else:
        count = _word_shingle_hashes(canon, n, units, ngram, scheme, word_starts, word_ends, word_hash, hashes)
        if scheme == SCHEME_LEGACY:
            for j in range(count):
                hashes64[j] = np.uint64(hashes[j])
    if scheme == SCHEME_LEGACY:
        for j in range(count):
            update_legacy(sig, a64, b64, hashes64[j])
    elif scheme == SCHEME_FSS:
        fss_sketch(hashes64, count, a64, sig, hashes, fss_h)
    else:
        minhash_affine32(hashes, count, a32, b32, sig)
    return count


@numba.njit(cache=True, nogil=True)
def _max_growth(map_cps, map_off):
    """The most bytes a replacement writes per byte of the code point it replaces."""
    grow = 1
    for j in range(map_cps.shape[0]):
        cp = map_cps[j]
        if cp >= 0x110000:
            break  # composition pairs (sorted last) never grow the text
        ln = 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4
        grow = max(grow, (map_off[j + 1] - map_off[j] + ln - 1) // ln)
    return grow



@numba.njit(cache=True, nogil=True)
def sketch_range(data, offsets, valid, table, bits, cf_bit, map_cps, map_off, map_blob, ngram, char_unit, scheme,
                 a32, b32, a64, b64, sigs, exact, n_shingles, lo, hi):
    """MinHash signatures and exact keys of documents lo..hi-1 of an Arrow string array.

    ``data``: uint8, the array's UTF-8 value buffer, as read; ``offsets``: int64 (n + 1,), document
    i is ``data[offsets[i]:offsets[i+1]]``; ``valid``: bool (n,), False for null documents (outputs
    as for empty). ``table`` (uint8 (TABLE_SIZE,), :func:`dedup.normalize.char_table`), ``bits``,
    ``cf_bit``, ``map_cps``, ``map_off``, ``map_blob``: the per-code-point part of step 1
    (:mod:`dedup._kernels.text`). Shingles are ``ngram`` words, or characters if ``char_unit``.
    Out: ``sigs`` uint32 (n, K), ``exact`` uint64 (n, 2), ``n_shingles`` int64 (n,): the shingle
    count, or -1 for a document that needs utf8proc (its signature and exact key are to be
    recomputed from Arrow's normalisation with ``bits = 0``).

    Scratch space is allocated once, sized for the longest of these documents, and grown for a
    document whose replacements need more room (rare: e.g. a ligature).
    """
    longest = 1
    for i in range(lo, hi):
        longest = max(longest, offsets[i + 1] - offsets[i])
    room = np.int64(_room(longest))  # the canonical text may be longer than the input (text._room)
    grown = False
    while True:
        canon = np.zeros(room + 17, dtype=np.uint8)  # +16: part_hash reads 16 bytes
        word_starts = np.empty(room // 2 + 2, dtype=np.int64)
        word_ends = np.empty(room // 2 + 2, dtype=np.int64)
        word_hash = np.empty(room // 2 + 2, dtype=np.uint64)
        char_starts = np.empty(room + 1 if char_unit else 1, dtype=np.int64)
        hashes = np.empty(room + 1, dtype=np.uint32)
        hashes64 = np.empty(room + 1 if scheme == SCHEME_LEGACY or scheme == SCHEME_FSS or char_unit else 1,
                            dtype=np.uint64)
        fss_h = np.empty(room + 1 if scheme == SCHEME_FSS else 1, dtype=np.uint32)
        i = lo
        while i < hi:
            if valid[i]:
                c = _sketch_one(
                    data, offsets[i], offsets[i + 1], table, bits, cf_bit, map_cps, map_off, map_blob, ngram,
                    char_unit, scheme, a32, b32, a64, b64, sigs[i], exact[i], canon, word_starts, word_ends,
                    char_starts, word_hash, hashes, hashes64, fss_h,
                )
                if c == -2:
                    break
                n_shingles[i] = c
            else:
                sigs[i, :] = _EMPTY
                exact[i, 0] = 0
                exact[i, 1] = 0
                n_shingles[i] = 0
            i += 1
        if i == hi:
            return
        if grown:  # cannot happen: room covers the largest replacement of every byte
            raise ValueError("sketch_range: scratch space miscomputed")
        room = np.int64(_room(longest * _max_growth(map_cps, map_off))) + 2
        lo = i
        grown = True


@numba.njit(cache=True, nogil=True, parallel=True)
def sketch_documents(data, offsets, valid, table, bits, cf_bit, map_cps, map_off, map_blob, ngram, char_unit,
                     scheme, a32, b32, a64, b64, sigs, exact, n_shingles, chunk):
    """:func:`sketch_range` over all documents, in parallel over chunks of ``chunk`` documents."""
    n = sigs.shape[0]
    n_chunks = (n + chunk - 1) // chunk
    for c in numba.prange(n_chunks):
        lo = c * chunk
        sketch_range(data, offsets, valid, table, bits, cf_bit, map_cps, map_off, map_blob, ngram, char_unit,
                     scheme, a32, b32, a64, b64, sigs, exact, n_shingles, lo, min(n, lo + chunk))


@numba.njit(cache=True, nogil=True)
def band_keys(sigs, bands, rows, sum_key, out):
    """64-bit key of each band of each signature.

    Default: ``xxh64`` of the band's r values as little-endian uint32 bytes, seeded with
    the band index. ``sum_key``: the reference LSHBloom's key, the sum of the band's values
    mod 2^61 - 1 (weak: kept only for cross-checks). out: uint64 (n, bands).
    """
    data = sigs.reshape(-1).view(np.uint8)  # the values' little-endian bytes, row after row
    for i in range(sigs.shape[0]):
        row = sigs[i]
        for j in range(bands):
            if sum_key:
                acc = np.uint64(0)
                for t in range(j * rows, (j + 1) * rows):
                    acc += np.uint64(row[t])
                out[i, j] = acc % _MERSENNE
            else:
                start = 4 * (i * sigs.shape[1] + j * rows)
                out[i, j] = xxh64(data, start, start + 4 * rows, np.uint64(j))
