"""Bit-exact hash kernels for Numba ``nopython`` code.

This is the lowest layer of ``dedup``: it imports only :mod:`numpy` and
:mod:`numba` (and may use :mod:`math`).  Every public function is compiled
with ``@numba.njit(cache=True, nogil=True)``; they are callable from Python
for testing, but are meant to be called from other ``njit`` code inside hot
loops over millions of short byte slices, so none of them allocates except
:func:`sha1_32` (one 80-word scratch array per call).

Kernels: ``xxh64`` (XXH64), ``sha1_32`` (the first 32 bits of SHA-1, as datasketch's
``sha1_hash32``), ``fmix32`` and ``fmix64`` (the MurmurHash3 finalisers).

Conventions
-----------
All arithmetic is modulo 2**64 (or 2**32) on explicitly unsigned operands.
In Numba, mixing ``uint64`` with a signed integer (including a bare Python
int literal) promotes to ``float64``, and ``uint32 op uint32`` promotes to
``uint64``; hence every constant here is an ``np.uint64``/``np.uint32``
global and 32-bit results are truncated back with ``np.uint32(...)``.
``start``/``end`` are element indices (``0 <= start <= end <= len``); they
are not bounds-checked.
"""

import numba
import numpy as np

__all__ = ["xxh64", "sha1_32", "fmix32", "fmix64"]

_JIT = dict(cache=True, nogil=True)
_JIT_INLINE = dict(cache=True, nogil=True, inline="always")

# --------------------------------------------------------------------------
# XXH64 constants (spec section "XXH64 algorithm description").
# --------------------------------------------------------------------------
_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_P5 = np.uint64(0x27D4EB2F165667C5)

_U64_0 = np.uint64(0)
_U64_1 = np.uint64(1)
_U64_2 = np.uint64(2)
_U64_3 = np.uint64(3)
_U64_4 = np.uint64(4)
_U64_5 = np.uint64(5)
_U64_6 = np.uint64(6)
_U64_7 = np.uint64(7)
_U64_8 = np.uint64(8)
_U64_11 = np.uint64(11)
_U64_12 = np.uint64(12)
_U64_16 = np.uint64(16)
_U64_18 = np.uint64(18)
_U64_23 = np.uint64(23)
_U64_24 = np.uint64(24)
_U64_27 = np.uint64(27)
_U64_29 = np.uint64(29)
_U64_31 = np.uint64(31)
_U64_32 = np.uint64(32)
_U64_33 = np.uint64(33)
_U64_40 = np.uint64(40)
_U64_48 = np.uint64(48)
_U64_56 = np.uint64(56)
_U64_64 = np.uint64(64)


@numba.njit(**_JIT_INLINE)
def _rotl64(x, r):
    """Rotate uint64 ``x`` left by ``r`` (uint64, 0 < r < 64) bits."""
    return (x << r) | (x >> (_U64_64 - r))


@numba.njit(**_JIT_INLINE)
def _read64le(d, i):
    """Little-endian uint64 from bytes ``d[i:i+8]`` (uint8 array).

    ``i`` must be a uint64: Numba skips the negative-index wraparound
    ``select`` for unsigned indices, which is what lets LLVM's load combiner
    fuse this shift/or tree of byte loads into one unaligned 8-byte load.
    """
    return (
        np.uint64(d[i])
        | (np.uint64(d[i + _U64_1]) << _U64_8)
        | (np.uint64(d[i + _U64_2]) << _U64_16)
        | (np.uint64(d[i + _U64_3]) << _U64_24)
        | (np.uint64(d[i + _U64_4]) << _U64_32)
        | (np.uint64(d[i + _U64_5]) << _U64_40)
        | (np.uint64(d[i + _U64_6]) << _U64_48)
        | (np.uint64(d[i + _U64_7]) << _U64_56)
    )


@numba.njit(**_JIT_INLINE)
def _read32le(d, i):
    """Little-endian uint32 (as uint64) from ``d[i:i+4]``; ``i`` uint64."""
    return (
        np.uint64(d[i])
        | (np.uint64(d[i + _U64_1]) << _U64_8)
        | (np.uint64(d[i + _U64_2]) << _U64_16)
        | (np.uint64(d[i + _U64_3]) << _U64_24)
    )


@numba.njit(**_JIT_INLINE)
def _xxh64_round(acc, lane):
    """XXH64 accumulator round: ``rotl(acc + lane*P2, 31) * P1`` (uint64)."""
    acc = acc + lane * _P2
    acc = _rotl64(acc, _U64_31)
    return acc * _P1


@numba.njit(**_JIT_INLINE)
def _xxh64_merge(h, v):
    """XXH64 accumulator merge into the running hash ``h`` (uint64)."""
    h = h ^ _xxh64_round(_U64_0, v)
    return h * _P1 + _P4


@numba.njit(**_JIT_INLINE)
def _xxh64_converge(v1, v2, v3, v4):
    """Fold the four stripe accumulators into one uint64 (inputs >= 32 B)."""
    h = _rotl64(v1, _U64_1) + _rotl64(v2, _U64_7) + _rotl64(v3, _U64_12) + _rotl64(v4, _U64_18)
    h = _xxh64_merge(h, v1)
    h = _xxh64_merge(h, v2)
    h = _xxh64_merge(h, v3)
    h = _xxh64_merge(h, v4)
    return h


@numba.njit(**_JIT_INLINE)
def _xxh64_avalanche(h):
    """XXH64 final avalanche (uint64 -> uint64)."""
    h = h ^ (h >> _U64_33)
    h = h * _P2
    h = h ^ (h >> _U64_29)
    h = h * _P3
    return h ^ (h >> _U64_32)


@numba.njit(**_JIT_INLINE)
def _xxh64_lane8(h, lane):
    """Consume one 8-byte tail lane (uint64) into ``h``."""
    h = h ^ _xxh64_round(_U64_0, lane)
    return _rotl64(h, _U64_27) * _P1 + _P4


@numba.njit(**_JIT_INLINE)
def _xxh64_lane4(h, word):
    """Consume one 4-byte tail word (uint32 value held in a uint64)."""
    h = h ^ (word * _P1)
    return _rotl64(h, _U64_23) * _P2 + _P3


@numba.njit(**_JIT_INLINE)
def xxh64(data, start, end, seed):
    """XXH64 (Yann Collet, XXH64 specification,
    https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md) of ``data[start:end]`` (1-D
    uint8, C-contiguous for speed) as uint64: four 64-bit accumulators over 32-byte stripes for
    inputs of at least 32 bytes, then 8-, 4- and 1-byte tail steps and a final avalanche.
    Bit-exact with ``xxhash.xxh64_intdigest(bytes(data[start:end]), seed)``. ``seed`` is cast to
    uint64 (signed values wrap); from Python pass ``np.uint64``: a Python int >= 2**63 cannot
    be dispatched to an already-compiled int64 overload.
    """
    seed = np.uint64(seed)
    # All index arithmetic is uint64 (see _read64le).
    p = np.uint64(start)
    e = np.uint64(end)
    n = e - p
    if n >= _U64_32:
        v1 = seed + _P1 + _P2
        v2 = seed + _P2
        v3 = seed
        v4 = seed - _P1
        limit = e - _U64_32
        while p <= limit:
            v1 = _xxh64_round(v1, _read64le(data, p))
            v2 = _xxh64_round(v2, _read64le(data, p + _U64_8))
            v3 = _xxh64_round(v3, _read64le(data, p + _U64_16))
            v4 = _xxh64_round(v4, _read64le(data, p + _U64_24))
            p += _U64_32
        h = _xxh64_converge(v1, v2, v3, v4)
    else:
        h = seed + _P5
    h = h + n
    while p + _U64_8 <= e:
        h = _xxh64_lane8(h, _read64le(data, p))
        p += _U64_8
    if p + _U64_4 <= e:
        h = _xxh64_lane4(h, _read32le(data, p))
        p += _U64_4
    while p < e:
        h = h ^ (np.uint64(data[p]) * _P5)
        h = _rotl64(h, _U64_11) * _P1
        p += _U64_1
    return _xxh64_avalanche(h)


# --------------------------------------------------------------------------
# SHA-1 (FIPS 180-4, section 6.1).
# --------------------------------------------------------------------------
_H0 = np.uint32(0x67452301)
_H1 = np.uint32(0xEFCDAB89)
_H2 = np.uint32(0x98BADCFE)
_H3 = np.uint32(0x10325476)
_H4 = np.uint32(0xC3D2E1F0)
_K0 = np.uint32(0x5A827999)
_K1 = np.uint32(0x6ED9EBA1)
_K2 = np.uint32(0x8F1BBCDC)
_K3 = np.uint32(0xCA62C1D6)
_U32_0 = np.uint32(0)
_U32_1 = np.uint32(1)
_U32_5 = np.uint32(5)
_U32_8 = np.uint32(8)
_U32_16 = np.uint32(16)
_U32_24 = np.uint32(24)
_U32_30 = np.uint32(30)
_U32_0x80 = np.uint32(0x80)


@numba.njit(**_JIT_INLINE)
def _rotl32(x, r):
    """Rotate uint32 ``x`` left by ``r`` (uint32, 0 < r < 32) bits.

    ``x << r`` is computed in uint64 (Numba's promotion of uint32 ops), so
    the bits shifted out land above bit 31 and are dropped by the final
    truncation to uint32."""
    return np.uint32((x << r) | (x >> (np.uint32(32) - r)))


@numba.njit(**_JIT_INLINE)
def _read32be(d, i):
    """Big-endian uint32 from bytes ``d[i:i+4]`` (uint8 array); ``i`` uint64."""
    return np.uint32(
        (np.uint32(d[i]) << _U32_24)
        | (np.uint32(d[i + _U64_1]) << _U32_16)
        | (np.uint32(d[i + _U64_2]) << _U32_8)
        | np.uint32(d[i + _U64_3])
    )


@numba.njit(**_JIT_INLINE)
def _sha1_step(a, b, c, d, e, f, k, wt):
    """One SHA-1 step (FIPS 180-4, 6.1.2 step 3): the new (a, b, c, d, e)."""
    return np.uint32(_rotl32(a, _U32_5) + f + e + k + wt), a, _rotl32(b, _U32_30), c, d


@numba.njit(**_JIT_INLINE)
def _sha1_compress(w, h0, h1, h2, h3, h4):
    """SHA-1 compression of one block.

    ``w`` is a uint32 array of >= 80 words whose first 16 hold the block's
    big-endian message words (words 16..79 are overwritten with the message
    schedule).  ``h0..h4`` are the uint32 chaining values; returns the
    updated 5-tuple of uint32.
    """
    for t in range(16, 80):
        w[t] = _rotl32(np.uint32(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]), _U32_1)
    a, b, c, d, e = h0, h1, h2, h3, h4
    for t in range(20):  # four rounds of 20 steps, each with its own f and K
        a, b, c, d, e = _sha1_step(a, b, c, d, e, np.uint32((b & c) | (~b & d)), _K0, w[t])
    for t in range(20, 40):
        a, b, c, d, e = _sha1_step(a, b, c, d, e, np.uint32(b ^ c ^ d), _K1, w[t])
    for t in range(40, 60):
        a, b, c, d, e = _sha1_step(a, b, c, d, e, np.uint32((b & c) | (b & d) | (c & d)), _K2, w[t])
    for t in range(60, 80):
        a, b, c, d, e = _sha1_step(a, b, c, d, e, np.uint32(b ^ c ^ d), _K3, w[t])
    return (
        np.uint32(h0 + a),
        np.uint32(h1 + b),
        np.uint32(h2 + c),
        np.uint32(h3 + d),
        np.uint32(h4 + e),
    )


@numba.njit(**_JIT)
def sha1_32(data, start, end):
    """The first four bytes of SHA-1 (FIPS 180-4: 5.1.1 padding, a 0x80 byte, zeros, then the
    message length in bits as a big-endian 64-bit integer, to a multiple of 64 bytes; 6.1.2
    compression over 64-byte blocks) of ``data[start:end]`` (1-D uint8), read as a little-endian
    uint32: exactly ``datasketch.hashfunc.sha1_hash32``, ``struct.unpack('<I',
    hashlib.sha1(b).digest()[:4])[0]``. Allocates one 80-word scratch array per call.
    """
    w = np.empty(80, dtype=np.uint32)
    h0 = _H0
    h1 = _H1
    h2 = _H2
    h3 = _H3
    h4 = _H4
    # uint64 byte indices (no wraparound checks; see _read64le).
    p = np.uint64(start)
    e = np.uint64(end)
    n = e - p
    # Full 64-byte blocks straight from the input.
    while p + _U64_64 <= e:
        for t in range(16):
            w[t] = _read32be(data, p + np.uint64(4 * t))
        h0, h1, h2, h3, h4 = _sha1_compress(w, h0, h1, h2, h3, h4)
        p += _U64_64
    # Final 1 or 2 padded blocks.
    r = np.int64(e - p)  # 0..63 remaining bytes
    for t in range(16):
        w[t] = _U32_0
    for j in range(r):
        sh = np.uint32(_U32_24 - (np.uint32(j & 3) << np.uint32(3)))
        w[j >> 2] = np.uint32(w[j >> 2] | (np.uint32(data[p + np.uint64(j)]) << sh))
    sh = np.uint32(_U32_24 - (np.uint32(r & 3) << np.uint32(3)))
    w[r >> 2] = np.uint32(w[r >> 2] | (_U32_0x80 << sh))
    if r >= 56:
        h0, h1, h2, h3, h4 = _sha1_compress(w, h0, h1, h2, h3, h4)
        for t in range(16):
            w[t] = _U32_0
    bitlen = n << _U64_3
    w[14] = np.uint32(bitlen >> _U64_32)
    w[15] = np.uint32(bitlen & np.uint64(0xFFFFFFFF))
    h0, h1, h2, h3, h4 = _sha1_compress(w, h0, h1, h2, h3, h4)
    # Digest bytes 0..3 are h0 big-endian; reinterpret them little-endian.
    return np.uint32(
        ((h0 >> _U32_24) & np.uint32(0xFF))
        | (((h0 >> _U32_16) & np.uint32(0xFF)) << _U32_8)
        | (((h0 >> _U32_8) & np.uint32(0xFF)) << _U32_16)
        | ((h0 & np.uint32(0xFF)) << _U32_24)
    )


# --------------------------------------------------------------------------
# MurmurHash3 finalisers.
# --------------------------------------------------------------------------
_FM32_M1 = np.uint32(0x85EBCA6B)
_FM32_M2 = np.uint32(0xC2B2AE35)
_FM32_S1 = np.uint32(16)
_FM32_S2 = np.uint32(13)
_FM64_M1 = np.uint64(0xFF51AFD7ED558CCD)
_FM64_M2 = np.uint64(0xC4CEB9FE1A85EC53)


@numba.njit(**_JIT_INLINE)
def fmix32(x):
    """MurmurHash3's 32-bit finaliser (Austin Appleby): a bijection on uint32 (other integer
    types are truncated to 32 bits), equal to ``datasketch.minhash._fmix(np.array([x], np.uint32),
    32)[0]``."""
    x = np.uint32(x)
    x = np.uint32(x ^ (x >> _FM32_S1))
    x = np.uint32(x * _FM32_M1)
    x = np.uint32(x ^ (x >> _FM32_S2))
    x = np.uint32(x * _FM32_M2)
    return np.uint32(x ^ (x >> _FM32_S1))


@numba.njit(**_JIT_INLINE)
def fmix64(x):
    """MurmurHash3's 64-bit finaliser (Austin Appleby): a bijection on uint64."""
    x = np.uint64(x)
    x = x ^ (x >> _U64_33)
    x = x * _FM64_M1
    x = x ^ (x >> _U64_33)
    x = x * _FM64_M2
    return x ^ (x >> _U64_33)
