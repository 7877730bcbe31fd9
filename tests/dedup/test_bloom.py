"""Bloom filter: no false negatives, false-positive rate as predicted, persistence, union."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup.bloom import HEADER_SIZE, BloomFilter

keys = st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=300, unique=True)


@settings(deadline=None, max_examples=100)
@given(ks=keys, m=st.integers(64, 5000), k=st.integers(1, 12), seed=st.integers(0, 2**64 - 1))
def test_no_false_negatives(ks, m, k, seed):
    f = BloomFilter(m, k, seed)
    arr = np.array(ks, dtype=np.uint64)
    f.add(arr)
    assert f.contains(arr).all()
    assert f.add(arr).all()  # every key is now "seen before"


@pytest.mark.parametrize("target", [1e-2, 1e-3])
def test_false_positive_rate_within_3_sigma(target):
    """Measured rate over Q fresh keys vs (1 - e^{-kn/m})^k, sigma = sqrt(p(1-p)/Q)."""
    rng = np.random.default_rng(7)
    n, queries = 50_000, 2_000_000
    f = BloomFilter.for_capacity(n, target, seed=11)
    inserted = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2)  # even keys
    f.add(inserted)
    fresh = rng.integers(0, 2**63, queries, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd keys
    measured = f.contains(fresh).mean()
    predicted = f.predicted_fp(n)
    sigma = math.sqrt(predicted * (1 - predicted) / queries)
    assert abs(measured - predicted) <= 3 * sigma, (measured, predicted, sigma)
    assert f.estimated_fp() == pytest.approx(predicted, rel=0.05)
    assert f.estimated_cardinality() == pytest.approx(n, rel=0.02)


def test_add_reports_seen_in_order_and_mask():
    f = BloomFilter(1 << 16, 7)
    seen = f.add(np.array([5, 6, 5, 7], dtype=np.uint64), mask=np.array([True, True, True, False]))
    assert seen.tolist() == [False, False, True, False]
    assert f.count == 3
    assert not f.contains(np.array([7], dtype=np.uint64))[0]


def test_save_load_roundtrip_and_mmap(tmp_path):
    f = BloomFilter(10_000, 5, seed=99)
    ks = np.arange(1000, dtype=np.uint64)
    f.add(ks)
    p = f.save(tmp_path / "f.bloom")
    assert p.stat().st_size == HEADER_SIZE + f.m // 8
    for mmap in (True, False):
        g = BloomFilter.load(p, mmap=mmap)
        assert (g.m, g.k, g.seed, g.count) == (f.m, f.k, f.seed, f.count)
        assert g.contains(ks).all()
        np.testing.assert_array_equal(np.asarray(g.bits), f.bits)
    g = BloomFilter.load(p, mmap=True)  # copy-on-write: adding does not touch the file
    g.add(np.arange(5000, 6000, dtype=np.uint64))
    assert BloomFilter.load(p).count == 1000
    w = BloomFilter.load(p, mmap=True, writable=True)
    w.add(np.array([123456789], dtype=np.uint64))
    w.bits.flush()
    assert BloomFilter.load(p).contains(np.array([123456789], dtype=np.uint64))[0]


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.bloom"
    bad.write_bytes(b"not a bloom filter at all" * 4)
    with pytest.raises(ValueError, match="bad magic"):
        BloomFilter.load(bad)
    f = BloomFilter(1024, 3)
    p = f.save(tmp_path / "t.bloom")
    data = p.read_bytes()
    (tmp_path / "trunc.bloom").write_bytes(data[:-8])
    with pytest.raises(ValueError, match="truncated"):
        BloomFilter.load(tmp_path / "trunc.bloom")
    (tmp_path / "v9.bloom").write_bytes(data[:8] + (9).to_bytes(4, "little") + data[12:])
    with pytest.raises(ValueError, match="version 9"):
        BloomFilter.load(tmp_path / "v9.bloom")
    with pytest.raises(ValueError, match="cannot read"):
        BloomFilter.load(tmp_path / "missing.bloom")


def test_union_equals_inserting_both():
    a, b, both = (BloomFilter(20_000, 6, seed=3) for _ in range(3))
    ka = np.arange(0, 1500, dtype=np.uint64)
    kb = np.arange(1000, 3000, dtype=np.uint64)
    a.add(ka)
    b.add(kb)
    both.add(ka)
    both.add(kb)
    a.union_inplace(b)
    np.testing.assert_array_equal(a.bits, both.bits)
    with pytest.raises(ValueError, match="different"):
        a.union_inplace(BloomFilter(20_000, 6, seed=4))
