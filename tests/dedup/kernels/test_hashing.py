"""Bit-exactness tests for ``dedup._kernels.hashing``.

References: ``xxhash`` (C XXH64), ``hashlib.sha1`` / datasketch's
``sha1_hash32``, datasketch's ``_fmix`` and pure-Python MurmurHash3 /
SplitMix64 implementations.  The first call of each kernel JIT-compiles (or
loads the on-disk cache), hence ``deadline=None``.
"""

import hashlib
import struct

import numba
import numpy as np
import pytest
import xxhash
from datasketch.hashfunc import sha1_hash32
from datasketch.minhash import _fmix
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup._kernels.hashing import fmix32, fmix64, sha1_32, xxh64

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1

SETTINGS = settings(deadline=None, max_examples=300)
seeds = st.integers(min_value=0, max_value=M64)


def _u8(b: bytes, pad_left: int = 0, pad_right: int = 0) -> np.ndarray:
    """``b`` embedded in a uint8 array with junk bytes on both sides."""
    arr = np.full(pad_left + len(b) + pad_right, 0xA5, dtype=np.uint8)
    arr[pad_left : pad_left + len(b)] = np.frombuffer(b, dtype=np.uint8)
    return arr


@pytest.fixture(scope="module")
def rand_bytes() -> np.ndarray:
    return np.random.default_rng(20240917).integers(0, 256, size=8192, dtype=np.uint8)


# ----------------------------------------------------------------- xxh64


@SETTINGS
@given(data=st.binary(max_size=3000), seed=seeds, pad_left=st.integers(0, 17), pad_right=st.integers(0, 9))
def test_xxh64_matches_xxhash(data, seed, pad_left, pad_right):
    arr = _u8(data, pad_left, pad_right)
    got = xxh64(arr, pad_left, pad_left + len(data), np.uint64(seed))
    assert got == xxhash.xxh64_intdigest(data, seed)


@pytest.mark.parametrize("start", [0, 1, 3, 5, 7, 13])
def test_xxh64_every_length_at_offset(rand_bytes, start):
    for n in range(201):
        ref_bytes = bytes(rand_bytes[start : start + n])
        for seed in (0, 1, 0x9E3779B97F4A7C15, M64):
            assert xxh64(rand_bytes, start, start + n, np.uint64(seed)) == xxhash.xxh64_intdigest(ref_bytes, seed), (n, seed)


@pytest.mark.parametrize("n", [255, 256, 257, 1000, 1023, 1024, 1025, 4095, 4096, 4099, 8000])
def test_xxh64_long(rand_bytes, n):
    start = 3
    ref = xxhash.xxh64_intdigest(bytes(rand_bytes[start : start + n]), 12345)
    assert xxh64(rand_bytes, start, start + n, np.uint64(12345)) == ref


def test_xxh64_seed_as_small_python_int(rand_bytes):
    # A Python int seed < 2**63 types as int64 and is cast to uint64 inside.
    # (Seeds >= 2**63 must be passed as np.uint64: Numba's dispatcher would
    # try to squeeze them into an already-compiled int64 overload.)
    for seed in (0, 7, 2**63 - 1):
        assert xxh64(rand_bytes, 2, 50, seed) == xxhash.xxh64_intdigest(bytes(rand_bytes[2:50]), seed)


# ---------------------------------------------------------------- sha1_32


def _sha1_32_ref(b: bytes) -> int:
    return struct.unpack("<I", hashlib.sha1(b).digest()[:4])[0]


@SETTINGS
@given(data=st.binary(max_size=2000), pad_left=st.integers(0, 17), pad_right=st.integers(0, 9))
def test_sha1_32_matches_hashlib(data, pad_left, pad_right):
    arr = _u8(data, pad_left, pad_right)
    got = sha1_32(arr, pad_left, pad_left + len(data))
    assert got == _sha1_32_ref(data)
    assert got == sha1_hash32(data)


@pytest.mark.parametrize("start", [0, 1, 3, 6])
def test_sha1_32_every_length(rand_bytes, start):
    for n in range(301):
        b = bytes(rand_bytes[start : start + n])
        assert sha1_32(rand_bytes, start, start + n) == _sha1_32_ref(b), n


@pytest.mark.parametrize("n", [55, 56, 63, 64, 119, 120, 127, 128, 1000, 4096, 8000])
def test_sha1_32_padding_boundaries(rand_bytes, n):
    start = 1
    assert sha1_32(rand_bytes, start, start + n) == sha1_hash32(bytes(rand_bytes[start : start + n]))


def test_sha1_32_known_vectors():
    # FIPS 180-4 example "abc": digest a9993e36...
    assert sha1_32(_u8(b"abc"), 0, 3) == 0x363E99A9
    # Empty message: da39a3ee...
    assert sha1_32(_u8(b""), 0, 0) == 0xEEA339DA


# ----------------------------------------------------- fmix32 / fmix64


def _fmix64_ref(x: int) -> int:
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & M64
    x ^= x >> 33
    return x


def _fmix32_ref(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & M32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & M32
    x ^= x >> 16
    return x


@SETTINGS
@given(x=st.integers(0, M32))
def test_fmix32_matches_datasketch(x):
    expected = int(_fmix(np.array([x], dtype=np.uint32), 32)[0])
    assert fmix32(np.uint32(x)) == expected
    assert expected == _fmix32_ref(x)


def test_fmix32_edge_values():
    xs = np.array([0, 1, 2, 0x7FFFFFFF, 0x80000000, M32, 0xDEADBEEF], dtype=np.uint32)
    expected = _fmix(xs, 32)
    for x, e in zip(xs, expected):
        assert fmix32(x) == int(e)
    assert fmix32(np.uint32(0)) == 0


@SETTINGS
@given(x=st.integers(0, M64))
def test_fmix64_matches_reference(x):
    assert fmix64(np.uint64(x)) == _fmix64_ref(x)


def test_fmix64_matches_datasketch():
    xs = np.array([0, 1, 2**32, 2**63, M64, 0x0123456789ABCDEF], dtype=np.uint64)
    for x, e in zip(xs, _fmix(xs, 64)):
        assert fmix64(x) == int(e)


# ------------------------------------------------- njit callability / dtypes


@numba.njit
def _all_from_njit(data, seed):
    return (
        xxh64(data, 1, data.size, seed),
        sha1_32(data, 1, data.size),
        fmix32(np.uint32(12345)),
        fmix64(seed),
    )


def test_callable_from_njit_and_return_types(rand_bytes):
    data = rand_bytes[:100].copy()
    seed = np.uint64(0xFEEDFACECAFEBEEF)
    got = _all_from_njit(data, seed)
    assert got == (
        xxhash.xxh64_intdigest(bytes(data[1:]), int(seed)),
        _sha1_32_ref(bytes(data[1:])),
        _fmix32_ref(12345),
        _fmix64_ref(int(seed)),
    )
    ret = _all_from_njit.nopython_signatures[0].return_type
    assert tuple(ret.types) == (
        numba.uint64,
        numba.uint32,
        numba.uint32,
        numba.uint64,
    )
