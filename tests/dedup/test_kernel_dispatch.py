"""The ahead-of-time build and the JIT run the same kernels: identical outputs."""

import itertools

import numpy as np
import pyarrow as pa
import pytest

from dedup import kernels
from dedup._kernels import BLOOM_DOUBLE, BLOOM_INDEPENDENT
from dedup._kernels import aot as build
from dedup._kernels import bloom as jit_bloom
from dedup._kernels import minhash as jit_minhash
from dedup.minhash import get_scheme, permutations
from dedup.normalize import char_table, replacements
from dedup.sketch import string_buffers
from dedup.synthetic import generate_corpus

needs_aot = pytest.mark.skipif(kernels.aot() is None, reason="AOT kernels not built")


@pytest.fixture(scope="module")
def texts():
    t = generate_corpus(400, mean_bytes=500, seed=9).column("text").combine_chunks()
    return pa.concat_arrays([t, pa.array([None, "", "Ｆｕｌｌ ﬁ x", "a", "cafe\u0301\u0323"], pa.string())])


@needs_aot
@pytest.mark.parametrize("scheme", ["fast", "fss", "datasketch-affine32", "datasketch-legacy"])
@pytest.mark.parametrize("unit,ngram", [("word", 5), ("char", 4)])
def test_sketch_aot_equals_jit_serial_and_parallel(texts, scheme, unit, ngram):
    data, offsets, valid = string_buffers(texts)
    table = char_table()
    bits, cf_bit, cmap = replacements(True)
    code = get_scheme(scheme).code
    perms = permutations(scheme, 64, 1).args()
    outs = []
    for how in ("aot", "jit-serial", "jit-parallel"):
        n = len(valid)
        sigs, exact, nsh = np.empty((n, 64), np.uint32), np.empty((n, 2), np.uint64), np.empty(n, np.int64)
        args = (data, offsets, valid, table, bits, cf_bit, cmap.cps, cmap.off, cmap.blob, ngram, unit == "char", code,
                *perms, sigs, exact, nsh)
        if how == "aot":
            kernels.aot().sketch_range(*args, 0, n)
        elif how == "jit-serial":
            jit_minhash.sketch_range(*args, 0, n)
        else:
            jit_minhash.sketch_documents(*args, 7)  # chunks of 7: any size gives the same
        outs.append((sigs, exact, nsh))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_array_equal(a, b)
    assert {-1, 0} <= set(outs[0][2].tolist())  # some documents need utf8proc, some are empty


@needs_aot
def test_other_kernels_aot_equals_jit():
    sigs = np.random.default_rng(0).integers(0, 2**32, (50, 128), dtype=np.uint64).astype(np.uint32)
    for sum_key in (False, True):
        k1, k2 = np.empty((50, 9), np.uint64), np.empty((50, 9), np.uint64)
        kernels.aot().band_keys(sigs, 9, 13, sum_key, k1)
        jit_minhash.band_keys(sigs, 9, 13, sum_key, k2)
        np.testing.assert_array_equal(k1, k2)

    keys = np.arange(1000, dtype=np.uint64) * np.uint64(7919)
    mask = np.ones(1000, bool)
    bits1, bits2 = np.zeros(200, np.uint64), np.zeros(200, np.uint64)
    s1, s2 = np.empty(1000, bool), np.empty(1000, bool)
    for parts, rule in itertools.product((1, 4), (BLOOM_DOUBLE, BLOOM_INDEPENDENT)):  # four parts: 3200 bits each
        bits1[:], bits2[:] = 0, 0
        mp = np.uint64(12800 // parts)
        assert kernels.aot().test_and_set_many(bits1, mp, parts, 5, np.uint64(3), rule, keys, mask, s1) == 1000
        jit_bloom.test_and_set_many(bits2, mp, parts, 5, np.uint64(3), rule, keys, mask, s2)
        np.testing.assert_array_equal(bits1, bits2)
        np.testing.assert_array_equal(s1, s2)
        c1, c2 = np.empty(1000, bool), np.empty(1000, bool)
        kernels.aot().contains_many(bits1, mp, parts, 5, np.uint64(3), rule, keys + np.uint64(1), c1)
        jit_bloom.contains_many(bits2, mp, parts, 5, np.uint64(3), rule, keys + np.uint64(1), c2)
        np.testing.assert_array_equal(c1, c2)
    assert kernels.aot().popcount(bits1) == jit_bloom.popcount(bits2)
    p1, p2 = np.empty(1000, np.int32), np.empty(1000, np.int32)
    kernels.aot().parts_of_many(keys, np.uint64(3), 7, p1)
    jit_bloom.parts_of_many(keys, np.uint64(3), 7, p2)
    np.testing.assert_array_equal(p1, p2)
    assert p1.min() == 0 and p1.max() == 6


def test_stale_build_is_refused(monkeypatch, tmp_path):
    stamp = tmp_path / "stamp"
    stamp.write_text("0" * 64 + "\n")
    monkeypatch.setattr(build, "STAMP", stamp)
    kernels.aot.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="older than their sources"):
            assert kernels.aot() is None
        assert kernels.backend() == "jit"
        monkeypatch.setenv("MEMDEDUP_JIT", "1")
        kernels.aot.cache_clear()
        assert kernels.aot() is None
    finally:
        monkeypatch.undo()
        kernels.aot.cache_clear()


def test_every_kernel_source_is_in_the_hash_that_dates_the_build():
    """The compiled kernels are current only while no file they are built from changed. The
    scheme and Bloom probe-rule codes live in dedup/_kernels/__init__.py, which the hash left
    out: an edit there left a stale build in use."""
    from dedup._kernels.sources import HERE, SOURCES

    assert sorted(SOURCES) == sorted(p.name for p in HERE.glob("*.py"))


def test_sketch_documents_checks_and_caps_its_thread_count():
    """The public dispatcher checks ``threads`` itself and caps it at NUMBA_NUM_THREADS (kernels.use_threads), as
    its docstring says: a shrink left that to its one caller, so 0 ran silently and a count above the cap raised
    Numba's own error."""
    texts = pa.array(["one two three four five six", "seven eight nine ten eleven twelve"])
    data, offsets, valid = string_buffers(texts)
    bits, cf_bit, cmap = replacements(True)
    outs = []
    for threads in (1, None, 10**6):
        sigs, exact, nsh = np.empty((2, 16), np.uint32), np.empty((2, 2), np.uint64), np.empty(2, np.int64)
        kernels.sketch_documents(data, offsets, valid, char_table(), bits, cf_bit, cmap.cps, cmap.off, cmap.blob, 5,
                                 False, get_scheme("fast").code, *permutations("fast", 16, 1).args(), sigs, exact,
                                 nsh, threads=threads)
        outs.append(sigs)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    with pytest.raises(ValueError, match="threads must be None or a positive integer, got 0"):
        kernels.sketch_documents(data, offsets, valid, char_table(), bits, cf_bit, cmap.cps, cmap.off, cmap.blob, 5,
                                 False, get_scheme("fast").code, *permutations("fast", 16, 1).args(), sigs, exact,
                                 nsh, threads=0)


def test_parallel_sketching_is_for_batches_with_the_work_for_it(monkeypatch):
    """A batch under PARALLEL_MIN_BYTES of text is sketched serially: OpenMP's idle threads spin after every
    parallel call, so 2000 JSONL files of 5 rows took 24 s of CPU, not 6. A batch of a few long documents (books:
    a JSONL piece of 32 MiB holds ~80) is split evenly over the threads (prange gives each thread one block of
    chunks): before, chunks of 256 documents gave it all to one thread. Signatures are the serial kernel's."""
    import numba

    from dedup._kernels import PARALLEL_MIN_BYTES

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("NUMBA_NUM_THREADS is 1: every batch is sketched serially")

    calls = []
    real = jit_minhash.sketch_documents
    monkeypatch.setattr(jit_minhash, "sketch_documents", lambda *a: calls.append((a[-2].shape[0], a[-1])) or real(*a))
    bits, cf_bit, cmap = replacements(True)
    words = [f"w{i}" for i in range(3000)]
    rng = np.random.default_rng(3)
    book = PARALLEL_MIN_BYTES // 4  # 6 documents: over the threshold together
    for docs in ([" ".join(rng.choice(words, 60)) for _ in range(5)],
                 [" ".join(rng.choice(words, 60)) for _ in range(300)],
                 [" ".join(rng.choice(words, book // 5)) for _ in range(6)]):
        data, offsets, valid = string_buffers(pa.array(docs))
        n, sigs = len(docs), {}
        for threads in (1, 2):
            s, exact, nsh = np.empty((n, 16), np.uint32), np.empty((n, 2), np.uint64), np.empty(n, np.int64)
            kernels.sketch_documents(data, offsets, valid, char_table(), bits, cf_bit, cmap.cps, cmap.off, cmap.blob,
                                     5, False, get_scheme("fast").code, *permutations("fast", 16, 1).args(), s, exact,
                                     nsh, threads=threads)
            sigs[threads] = s
        np.testing.assert_array_equal(sigs[1], sigs[2])
    assert calls == [(6, 3)]  # only the long documents, 3 a thread


def test_parallel_sketching_from_several_threads_at_once_with_numbas_workqueue_layer():
    """Two Deduplicators (or runs) sketching in parallel from two Python threads: under Numba's workqueue
    threading layer (Numba's own, where neither OpenMP nor TBB is installed: macOS without libomp) the process
    was terminated ('Concurrent access has been detected'). Parallel calls now take turns."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("NUMBA_NUM_THREADS is 1: every batch is sketched serially")
    script = """
import threading, numpy as np, pyarrow as pa
from dedup import Deduplicator
rng = np.random.default_rng(1)
words = np.array([f"w{i}" for i in range(3000)])
texts = pa.array([" ".join(rng.choice(words, 300)) for _ in range(1500)])  # 3 MiB: the parallel kernel's work
want = Deduplicator().add(texts)
got = []
def run():
    d = Deduplicator(threads=2)
    got.append(np.concatenate([d.add(texts.slice(i, 750)) for i in range(0, 1500, 750)]))
threads = [threading.Thread(target=run) for _ in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
assert len(got) == 3 and all((g == want).all() for g in got)
print("ok")
"""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue",
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=root)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
