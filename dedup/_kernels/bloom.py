"""Bloom filter kernels over a uint64 bit array.

Probe positions come from one 64-bit key: ``h1 = fmix64(key ^ seed)``,
``h2 = fmix64(h1 ^ 0x9E3779B97F4A7C15)``, then enhanced double hashing (Dillinger &
Manolios 2004): ``x = h1 mod m, y = h2 mod m``; probe x; for i = 1..k-1:
``x = (x + y) mod m; y = (y + i) mod m``; probe x. Two divisions per key, not k.
"""

import numba
import numpy as np

from .hashing import fmix64

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_ONE = np.uint64(1)
_SIX = np.uint64(6)
_MASK63 = np.uint64(63)


@numba.njit(cache=True, nogil=True, inline="always")
def _start(key, seed, m):
    h1 = fmix64(key ^ seed)
    h2 = fmix64(h1 ^ _GOLDEN)
    return h1 % m, h2 % m


@numba.njit(cache=True, nogil=True, inline="always")
def _step(x, y, i, m):
    """Probe i from probe i-1: x = (x + y) mod m; y = (y + i) mod m (x, y < m)."""
    x += y
    if x >= m:
        x -= m
    y += np.uint64(i)
    while y >= m:
        y -= m
    return x, y


@numba.njit(cache=True, nogil=True)
def test_and_set(bits, m, k, seed, key):
    """Insert ``key``; return True iff all its k bits were already set (seen before)."""
    x, y = _start(key, seed, m)
    missing = np.uint64(0)
    for i in range(k):
        if i > 0:
            x, y = _step(x, y, i, m)
        w = x >> _SIX
        bit = _ONE << (x & _MASK63)
        old = bits[w]
        bits[w] = old | bit  # unconditional: a branch on the bit mispredicts half the time
        missing |= bit & ~old
    return missing == 0


@numba.njit(cache=True, nogil=True)
def contains(bits, m, k, seed, key):
    """True iff all k bits of ``key`` are set (no insertion)."""
    x, y = _start(key, seed, m)
    for i in range(k):
        if i > 0:
            x, y = _step(x, y, i, m)
        if bits[x >> _SIX] & (_ONE << (x & _MASK63)) == 0:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def test_and_set_many(bits, m, k, seed, keys, mask, seen):
    """In order, for each i with mask[i]: seen[i] = test_and_set(keys[i]); else seen[i] = False.

    Returns the number of keys inserted.
    """
    inserted = 0
    for i in range(keys.shape[0]):
        if mask[i]:
            seen[i] = test_and_set(bits, m, k, seed, keys[i])
            inserted += 1
        else:
            seen[i] = False
    return inserted


@numba.njit(cache=True, nogil=True)
def contains_many(bits, m, k, seed, keys, out):
    """out[i] = contains(keys[i])."""
    for i in range(keys.shape[0]):
        out[i] = contains(bits, m, k, seed, keys[i])


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
