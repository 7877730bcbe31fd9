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
            cp = np.int64(b0)
            ln = 1
        else:
            cp, ln = _utf8_char(data, pos, end)
        if table[cp]:
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
            if ln == 1:
                canon[n] = b0
            else:
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
def _sketch_one(data, start, end, table, ngram, char_unit, scheme, a32, b32, a64, b64, sig, exact_row):
    size = end - start
    canon = np.empty(max(size, 1), dtype=np.uint8)
    word_starts = np.empty(size // 2 + 1, dtype=np.int64)
    word_ends = np.empty(size // 2 + 1, dtype=np.int64)
    char_starts = np.empty(size + 1 if char_unit else 1, dtype=np.int64)
    n, n_words, n_chars = canonicalize(data, start, end, table, canon, word_starts, word_ends, char_starts, char_unit)
    exact_row[0] = xxh64(canon, 0, n, np.uint64(0))
    exact_row[1] = xxh64(canon, 0, n, np.uint64(1))
    sig[:] = _EMPTY
    if n == 0:
        return 0
    units = n_chars if char_unit else n_words
    count = 1 if units < ngram else units - ngram + 1
    hashes = np.empty(count, dtype=np.uint64)
    if units < ngram:
        hashes[0] = token_hash(canon, 0, n, scheme)
    else:
        for j in range(count):
            if char_unit:
                hashes[j] = token_hash(canon, char_starts[j], char_starts[j + ngram], scheme)
            else:
                hashes[j] = token_hash(canon, word_starts[j], word_ends[j + ngram - 1], scheme)
    if scheme == SCHEME_LEGACY:
        for j in range(count):
            update_legacy(sig, a64, b64, hashes[j])
    else:
        for j in range(count):
            update_affine32(sig, a32, b32, hashes[j])
    return count


@numba.njit(cache=True, nogil=True, parallel=True)
def sketch_documents(data, offsets, valid, table, ngram, char_unit, scheme, a32, b32, a64, b64, sigs, exact, n_shingles):
    """MinHash signatures and exact keys of every document of an Arrow string array.

    Args:
        data: uint8, the array's UTF-8 value buffer (already NFKC + lowercased).
        offsets: int64 (n + 1,), document i is ``data[offsets[i]:offsets[i+1]]``.
        valid: bool (n,), False for null documents (their outputs are left as for empty).
        table: uint8 (0x110000,), word-character table.
        ngram, char_unit: shingle length and unit (words if char_unit is False).
        scheme, a32, b32, a64, b64: the MinHash scheme and its permutation parameters.
        sigs: uint32 (n, K) out; exact: uint64 (n, 2) out; n_shingles: int64 (n,) out.
    """
    for i in numba.prange(sigs.shape[0]):
        if valid[i]:
            n_shingles[i] = _sketch_one(
                data, offsets[i], offsets[i + 1], table, ngram, char_unit, scheme, a32, b32, a64, b64, sigs[i], exact[i]
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
