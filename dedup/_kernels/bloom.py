"""Bloom filter kernels over a uint64 bit array.

A filter's k probe positions come from one 64-bit key by one of two rules (``rule``), which its
file's format version names (:mod:`dedup.bloom`); both start from ``h = fmix64(key ^ seed)``.

* ``INDEPENDENT`` (format version 3, every filter built now): with ``w_j = fmix64(h + j G)``
  (G = 0x9E3779B97F4A7C15), probes 2j and 2j + 1 are ``(hi32(w_j) m) >> 32`` and
  ``(lo32(w_j) m) >> 32`` (Lemire's multiply-shift range reduction of 32-bit hashes) while m <=
  2^26 (:data:`HALVES_MAX_BITS`: every default filter or part); a larger filter or part takes
  probe i = ``floor(fmix64(h + i G) m / 2^64)``. Probes are independent hashes, so the rate is
  (1 - e^{-kn/m})^k however small the target; no division.
* ``DOUBLE`` (format versions 1 and 2, kept to read and extend filters saved by earlier
  versions): enhanced double hashing (Dillinger & Manolios 2004) with ``h2 = fmix64(h ^ G)``:
  ``x = h mod m, y = h2 mod m``; probe x; for i = 1..k-1: ``x = (x + y) mod m; y = (y + i) mod m``;
  probe x. A key's whole probe set is fixed by the pair (x, y), so two keys share it with
  probability 1/m^2: a floor of about n/m^2 on the rate (n keys in m bits).

Cache partitions. A filter of ``parts`` > 1 is ``parts`` equal sub-filters of ``mp`` bits each
(bits ``[p mp, (p + 1) mp)``); key goes to part ``p = (hi32(fmix64(key ^ seed ^ G)) * parts) >> 32``
(hi32 = the top 32 bits) and probes only there, by the rule above with ``m = mp`` (with ``parts``
= 1: over the whole filter). Keys of different parts never share a bit, so a batch can be
processed part by part (a stable counting sort by part), each part's keys in their original
order: the verdicts are those of the sequential order, and each part (a few hundred KB) stays in
the core's cache while its keys are probed, where a filter of tens of MB or more would miss the
cache on nearly every probe.
"""

import numba
import numpy as np

from . import BLOOM_DOUBLE as DOUBLE, BLOOM_INDEPENDENT as INDEPENDENT
from .hashing import fmix64

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_ONE = np.uint64(1)
_SIX = np.uint64(6)
_MASK63 = np.uint64(63)
_LOW32 = np.uint64(0xFFFFFFFF)
_32 = np.uint64(32)
#: Largest m probed by 32-bit hashes: each bit then takes 2^32 / m >= 64 of their values, within
#: 1/64 of an even share (a relative ~1e-3 on the rate at k = 20); larger m take 64-bit hashes.
HALVES_MAX_BITS = np.uint64(1 << 26)


@numba.njit(cache=True, nogil=True, inline="always")
def _mulhi(a, b):
    """floor(a b / 2^64) of two uint64, from 32-bit halves."""
    a0, a1, b0, b1 = a & _LOW32, a >> _32, b & _LOW32, b >> _32
    mid = ((a0 * b0) >> _32) + (a1 * b0 & _LOW32) + a0 * b1
    return a1 * b1 + ((a1 * b0) >> _32) + (mid >> _32)


@numba.njit(cache=True, nogil=True, inline="always")
def _start(key, seed, m, rule):
    """(probe 0, y, h): y is the double-hashing step (DOUBLE) or the hash word of the probe
    pair (INDEPENDENT, m <= HALVES_MAX_BITS)."""
    h = fmix64(key ^ seed)
    if rule == INDEPENDENT:
        y = fmix64(h)
        return (_mulhi(y, m) if m > HALVES_MAX_BITS else ((y >> _32) * m) >> _32), y, h
    return h % m, fmix64(h ^ _GOLDEN) % m, h


@numba.njit(cache=True, nogil=True, inline="always")
def _step(x, y, h, i, m, rule):
    """(probe i, y) from probe i - 1 (x < m) and y."""
    if rule == INDEPENDENT:
        if m > HALVES_MAX_BITS:
            return _mulhi(fmix64(h + np.uint64(i) * _GOLDEN), m), y
        if i & 1:
            return ((y & _LOW32) * m) >> _32, y
        y = fmix64(h + np.uint64(i >> 1) * _GOLDEN)
        return ((y >> _32) * m) >> _32, y
    x += y
    if x >= m:
        x -= m
    y += np.uint64(i)
    while y >= m:
        y -= m
    return x, y


@numba.njit(cache=True, nogil=True)
def test_and_set(bits, m, k, seed, rule, key):
    """Insert ``key``; return True iff all its k bits were already set (seen before)."""
    x, y, h = _start(key, seed, m, rule)
    missing = np.uint64(0)
    for i in range(k):
        if i > 0:
            x, y = _step(x, y, h, i, m, rule)
        w = x >> _SIX
        bit = _ONE << (x & _MASK63)
        old = bits[w]
        bits[w] = old | bit  # unconditional: a branch on the bit mispredicts half the time
        missing |= bit & ~old
    return missing == 0


@numba.njit(cache=True, nogil=True)
def contains(bits, m, k, seed, rule, key):
    """True iff all k bits of ``key`` are set (no insertion)."""
    x, y, h = _start(key, seed, m, rule)
    for i in range(k):
        if i > 0:
            x, y = _step(x, y, h, i, m, rule)
        if bits[x >> _SIX] & (_ONE << (x & _MASK63)) == 0:
            return False
    return True


@numba.njit(cache=True, nogil=True, inline="always")
def part_of(key, seed, parts):
    """The part (0 .. parts-1) that holds ``key`` (see the module docstring)."""
    h = fmix64(key ^ seed ^ _GOLDEN)
    return np.int64(((h >> np.uint64(32)) * np.uint64(parts)) >> np.uint64(32))


@numba.njit(cache=True, nogil=True)
def parts_of_many(keys, seed, parts, out):
    """out[i] = part_of(keys[i]) (int32): which part holds each key."""
    for i in range(keys.shape[0]):
        out[i] = part_of(keys[i], seed, parts)


@numba.njit(cache=True, nogil=True)
def _by_part(keys, seed, parts):
    """Stable counting sort of ``keys`` by part: (sorted keys, their original indices, the
    start of each part in them, length parts + 1)."""
    n = keys.shape[0]
    part = np.empty(n, dtype=np.int32)
    starts = np.zeros(parts + 1, dtype=np.int64)
    for i in range(n):
        p = part_of(keys[i], seed, parts)
        part[i] = p
        starts[p + 1] += 1
    for p in range(parts):
        starts[p + 1] += starts[p]
    fill = starts[:parts].copy()
    order = np.empty(n, dtype=np.int32)  # BloomFilter passes fewer than 2^31 keys
    sorted_keys = np.empty(n, dtype=np.uint64)
    for i in range(n):
        j = fill[part[i]]
        order[j] = i
        sorted_keys[j] = keys[i]
        fill[part[i]] += 1
    return sorted_keys, order, starts


#: A batch of fewer keys than this many per part is probed key by key: sorting it would cost
#: a pass over every part (~12 us per call at 1,361 parts) for too few probes to gain.
SORT_MIN_KEYS_PER_PART = 8


@numba.njit(cache=True, nogil=True)
def test_and_set_many(bits, mp, parts, k, seed, rule, keys, mask, seen):
    """For each i with mask[i], in order within its part: seen[i] = test_and_set(keys[i]) in part
    ``part_of(keys[i])`` (``mp`` bits each); else seen[i] = False. ``keys``: fewer than 2^31.
    Returns the number of keys inserted."""
    inserted = 0
    words = mp // np.uint64(64)
    if parts == 1 or keys.shape[0] < SORT_MIN_KEYS_PER_PART * parts:
        for i in range(keys.shape[0]):
            if mask[i]:
                p = part_of(keys[i], seed, parts) if parts > 1 else 0
                seen[i] = test_and_set(bits[p * words:(p + 1) * words], mp, k, seed, rule, keys[i])
                inserted += 1
            else:
                seen[i] = False
        return inserted
    sorted_keys, order, starts = _by_part(keys, seed, parts)
    for p in range(parts):
        sub = bits[p * words:(p + 1) * words]
        for j in range(starts[p], starts[p + 1]):
            i = order[j]
            if mask[i]:
                seen[i] = test_and_set(sub, mp, k, seed, rule, sorted_keys[j])
                inserted += 1
            else:
                seen[i] = False
    return inserted


@numba.njit(cache=True, nogil=True)
def contains_many(bits, mp, parts, k, seed, rule, keys, out):
    """out[i] = contains(keys[i]) in part ``part_of(keys[i])`` (``mp`` bits each);
    ``keys``: fewer than 2^31."""
    words = mp // np.uint64(64)
    if parts == 1 or keys.shape[0] < SORT_MIN_KEYS_PER_PART * parts:
        for i in range(keys.shape[0]):
            p = part_of(keys[i], seed, parts) if parts > 1 else 0
            out[i] = contains(bits[p * words:(p + 1) * words], mp, k, seed, rule, keys[i])
        return
    sorted_keys, order, starts = _by_part(keys, seed, parts)
    for p in range(parts):
        sub = bits[p * words:(p + 1) * words]
        for j in range(starts[p], starts[p + 1]):
            out[order[j]] = contains(sub, mp, k, seed, rule, sorted_keys[j])


@numba.njit(cache=True, nogil=True)
def popcount(bits):
    """Number of set bits in a uint64 array."""
    total = 0
    for w in bits:
        x = w
        x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
        x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
        x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
        total += np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))
    return total
