"""MinHash kernels: permutation updates, documents from Arrow buffers, token sets, band keys.

Schemes (integer codes, shared with :mod:`dedup.minhash`):

* ``SCHEME_FAST`` (0): token hash ``x = fmix32(low32(xxh64(token, seed=0)))``, then
  ``a_k * x + b_k mod 2^32`` with datasketch's affine32 parameters. Identical to
  ``datasketch.MinHash(scheme="affine32", hashfunc=lambda t: xxh64_intdigest(t) & 0xFFFFFFFF)``.
* ``SCHEME_AFFINE32`` (1): datasketch >= 2.0 default: ``x = fmix32(sha1_32(token))``, same
  permutation step.
* ``SCHEME_LEGACY`` (2): datasketch < 2.0: ``x = sha1_32(token)``;
  ``((a_k * x + b_k) mod 2^64) mod (2^61 - 1)``, then the low 32 bits.

All signatures are produced as uint32 (every scheme's values fit in 32 bits).
"""

import numba
import numpy as np

from .hashing import fmix32, sha1_32, xxh64, xxh64_u32

SCHEME_FAST = 0
SCHEME_AFFINE32 = 1
SCHEME_LEGACY = 2

_MERSENNE = np.uint64((1 << 61) - 1)
_LOW32 = np.uint64(0xFFFFFFFF)
_EMPTY = np.uint32(0xFFFFFFFF)


@numba.njit(cache=True, nogil=True, inline="always")
def token_hash(buf, start, end, scheme):
    """The scheme's 32-bit input hash of ``buf[start:end]`` (uint8 array), as uint64."""
    if scheme == SCHEME_FAST:
        return np.uint64(fmix32(np.uint32(xxh64(buf, start, end, np.uint64(0)) & _LOW32)))
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

    Permutations are taken 8 at a time with their running minima held in registers, which
    lets LLVM keep the inner loop in vector registers (~14 G updates/s on one core here,
    against ~9 G for the shingle-outer loop of :func:`update_affine32`).
    """
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
    """Signatures of token sets given as flat buffers.

    Args:
        data: uint8, all tokens' bytes concatenated.
        offsets: int64 (n_tokens + 1,), token t is ``data[offsets[t]:offsets[t+1]]``.
        set_offsets: int64 (n_sets + 1,), set i holds tokens ``set_offsets[i]..set_offsets[i+1]``.
        out: uint32 (n_sets, K), filled in place (0xFFFFFFFF where a set is empty).
    """
    for i in range(out.shape[0]):
        sig = out[i]
        sig[:] = _EMPTY
        for t in range(set_offsets[i], set_offsets[i + 1]):
            _update(sig, scheme, a32, b32, a64, b64, token_hash(data, offsets[t], offsets[t + 1], scheme))


@numba.njit(cache=True, nogil=True, inline="always")
def _utf8_char(data, pos, end):
    """(code point, byte length) at data[pos]; malformed bytes decode as U+FFFD, length 1."""
    b0 = np.int64(data[pos])
    if b0 < 0x80:
        return b0, 1
    if b0 >= 0xC2 and b0 < 0xE0 and pos + 1 < end:
        return ((b0 & 0x1F) << 6) | (np.int64(data[pos + 1]) & 0x3F), 2
    if b0 >= 0xE0 and b0 < 0xF0 and pos + 2 < end:
        return ((b0 & 0x0F) << 12) | ((np.int64(data[pos + 1]) & 0x3F) << 6) | (np.int64(data[pos + 2]) & 0x3F), 3
    if b0 >= 0xF0 and b0 < 0xF5 and pos + 3 < end:
        cp = (
            ((b0 & 0x07) << 18)
            | ((np.int64(data[pos + 1]) & 0x3F) << 12)
            | ((np.int64(data[pos + 2]) & 0x3F) << 6)
            | (np.int64(data[pos + 3]) & 0x3F)
        )
        if cp < 0x110000:
            return cp, 4
    return np.int64(0xFFFD), 1


@numba.njit(cache=True, nogil=True)
def canonicalize(data, start, end, table, canon, word_starts, word_ends, char_starts, track_chars):
    """Write the canonical text of ``data[start:end]`` into ``canon`` (see dedup.normalize).

    Returns (canonical byte length, number of words, number of code points). Word w
    spans ``canon[word_starts[w]:word_ends[w]]``. With ``track_chars``, code point c of the
    canonical text starts at ``char_starts[c]`` (and ``char_starts[n_chars]`` is the end);
    otherwise the code point count is 0 and ``char_starts`` is untouched. Output arrays must
    hold at least ``end - start`` entries (``// 2 + 1`` for the word arrays, +1 for chars).
    """
    n = 0
    n_words = 0
    n_chars = 0
    in_word = False
    pos = start
    while pos < end:
        b0 = data[pos]
        if b0 < 0x80:
            # ASCII fast path: the table's low 7 bits of bytes < 0x80 hold the lowercased
            # byte for word characters (see dedup.normalize.prepass), 0 for separators.
            low = table[0x110000 + b0]
            if low == 0:
                if in_word:
                    word_ends[n_words - 1] = n
                    in_word = False
                pos += 1
                continue
            if not in_word:
                if n_words > 0:
                    if track_chars:
                        char_starts[n_chars] = n
                        n_chars += 1
                    canon[n] = 32
                    n += 1
                word_starts[n_words] = n
                n_words += 1
                in_word = True
            if track_chars:
                char_starts[n_chars] = n
                n_chars += 1
            canon[n] = low
            n += 1
            pos += 1
            continue
        cp, ln = _utf8_char(data, pos, end)
        if table[cp] & 1:
            if not in_word:
                if n_words > 0:
                    if track_chars:
                        char_starts[n_chars] = n
                        n_chars += 1
                    canon[n] = 32
                    n += 1
                word_starts[n_words] = n
                n_words += 1
                in_word = True
            if track_chars:
                char_starts[n_chars] = n
                n_chars += 1
            for j in range(ln):
                canon[n + j] = data[pos + j]
            n += ln
        elif in_word:
            word_ends[n_words - 1] = n
            in_word = False
        pos += ln
    if in_word:
        word_ends[n_words - 1] = n
    if track_chars:
        char_starts[n_chars] = n
    return n, n_words, n_chars


@numba.njit(cache=True, nogil=True)
def needs_prepass(data, offsets, valid, table, bits, out):
    """out[i] = document i holds a code point whose ``table`` flags intersect ``bits``."""
    for i in range(out.shape[0]):
        out[i] = False
        if not valid[i]:
            continue
        pos = offsets[i]
        end = offsets[i + 1]
        while pos < end:
            if data[pos] < 0x80:
                pos += 1
                continue
            cp, ln = _utf8_char(data, pos, end)
            if table[cp] & bits:
                out[i] = True
                break
            pos += ln


@numba.njit(cache=True, nogil=True)
def _sketch_one(data, start, end, table, ngram, char_unit, scheme, a32, b32, a64, b64, sig, exact_row,
                canon, word_starts, word_ends, char_starts, hashes):
    """One document; the scratch arrays must hold its byte length (see canonicalize)."""
    n, n_words, n_chars = canonicalize(data, start, end, table, canon, word_starts, word_ends, char_starts, char_unit)
    exact_row[0] = xxh64(canon, 0, n, np.uint64(0))
    exact_row[1] = xxh64(canon, 0, n, np.uint64(1))
    sig[:] = _EMPTY
    if n == 0:
        return 0
    units = n_chars if char_unit else n_words
    count = 1 if units < ngram else units - ngram + 1
    for j in range(count):
        if units < ngram:
            s, e = 0, n
        elif char_unit:
            s, e = char_starts[j], char_starts[j + ngram]
        else:
            s, e = word_starts[j], word_ends[j + ngram - 1]
        h = token_hash(canon, s, e, scheme)
        if scheme == SCHEME_LEGACY:
            update_legacy(sig, a64, b64, h)
        else:
            hashes[j] = np.uint32(h)
    if scheme != SCHEME_LEGACY:
        minhash_affine32(hashes, count, a32, b32, sig)
    return count


_CHUNK = 256


@numba.njit(cache=True, nogil=True, parallel=True)
def sketch_documents(data, offsets, valid, table, ngram, char_unit, scheme, a32, b32, a64, b64, sigs, exact, n_shingles):
    """MinHash signatures and exact keys of every document of an Arrow string array.

    Documents are processed in chunks of 256 (in parallel over chunks); each chunk
    allocates its scratch space once, sized for its longest document.

    Args:
        data: uint8, the array's UTF-8 value buffer after dedup.normalize.prepass
            (ASCII letters are lowercased here).
        offsets: int64 (n + 1,), document i is ``data[offsets[i]:offsets[i+1]]``.
        valid: bool (n,), False for null documents (their outputs are left as for empty).
        table: uint8 (0x110000 + 128,), code point flags (bit 0: word character), then
            the ASCII lowercase map (dedup.normalize.char_table).
        ngram, char_unit: shingle length and unit (words if char_unit is False).
        scheme, a32, b32, a64, b64: the MinHash scheme and its permutation parameters.
        sigs: uint32 (n, K) out; exact: uint64 (n, 2) out; n_shingles: int64 (n,) out.
    """
    n = sigs.shape[0]
    n_chunks = (n + _CHUNK - 1) // _CHUNK
    for c in numba.prange(n_chunks):
        lo = c * _CHUNK
        hi = min(n, lo + _CHUNK)
        longest = 1
        for i in range(lo, hi):
            longest = max(longest, offsets[i + 1] - offsets[i])
        canon = np.empty(longest, dtype=np.uint8)
        word_starts = np.empty(longest // 2 + 1, dtype=np.int64)
        word_ends = np.empty(longest // 2 + 1, dtype=np.int64)
        char_starts = np.empty(longest + 1 if char_unit else 1, dtype=np.int64)
        hashes = np.empty(longest + 1, dtype=np.uint32)
        for i in range(lo, hi):
            if valid[i]:
                n_shingles[i] = _sketch_one(
                    data, offsets[i], offsets[i + 1], table, ngram, char_unit, scheme, a32, b32, a64, b64,
                    sigs[i], exact[i], canon, word_starts, word_ends, char_starts, hashes,
                )
            else:
                sigs[i, :] = _EMPTY
                exact[i, 0] = 0
                exact[i, 1] = 0
                n_shingles[i] = 0


@numba.njit(cache=True, nogil=True)
def band_keys(sigs, bands, rows, sum_key, out):
    """64-bit key of each band of each signature.

    Default: ``xxh64`` of the band's r values as little-endian uint32 bytes, seeded with
    the band index. ``sum_key``: the reference LSHBloom's key, the sum of the band's values
    mod 2^61 - 1 (weak: kept only for cross-checks). out: uint64 (n, bands).
    """
    for i in range(sigs.shape[0]):
        row = sigs[i]
        for j in range(bands):
            if sum_key:
                acc = np.uint64(0)
                for t in range(j * rows, (j + 1) * rows):
                    acc += np.uint64(row[t])
                out[i, j] = acc % _MERSENNE
            else:
                out[i, j] = xxh64_u32(row, j * rows, (j + 1) * rows, np.uint64(j))
