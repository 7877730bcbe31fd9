"""Kernel dispatch: the ahead-of-time build (:mod:`dedup._kernels.aot`) when present and current, else Numba's JIT
(``MEMDEDUP_JIT=1`` forces it), both running the same ``@numba.njit`` code (:mod:`dedup._kernels`). Multi-threaded
sketching always uses the JIT's ``prange`` version (the AOT build is serial).

Example:
    >>> import numpy as np
    >>> backend() in ("aot", "jit")
    True
    >>> popcount(np.array([0b1011, 1 << 63], dtype=np.uint64))  # bits set, whichever build runs
    4
"""

from __future__ import annotations

import functools
import importlib
import numbers
import os
import threading
import warnings
from types import ModuleType

import numpy as np

from ._kernels import PARALLEL_MIN_BYTES, SKETCH_CHUNK

#: Held by a parallel kernel call: Numba's own workqueue threading layer (no OpenMP or TBB) ends the process when
#: two threads run parallel kernels at once.
_PARALLEL = threading.Lock()


@functools.lru_cache(maxsize=1)
def aot() -> ModuleType | None:
    """The compiled extension, or None if absent, stale, or disabled."""
    if os.environ.get("MEMDEDUP_JIT"):
        return None
    from ._kernels import aot as build
    from ._kernels.sources import source_hash

    if not build.STAMP.exists():
        return None
    if build.STAMP.read_text().strip() != source_hash():
        warnings.warn("memdedup: the compiled kernels are older than their sources; using the JIT "
                      "(rebuild with `python -m dedup._kernels.aot`)", RuntimeWarning, stacklevel=2)
        return None
    try:
        return importlib.import_module("dedup._kernels._compiled")
    except ImportError:
        return None


def _jit(name: str) -> ModuleType:
    return importlib.import_module(f"dedup._kernels.{name}")


def backend() -> str:
    """``"aot"`` or ``"jit"``: what serial kernels run on in this process."""
    return "aot" if aot() is not None else "jit"


def use_threads(threads: int | None) -> int | None:
    """``threads`` checked (None: the calling thread's Numba count, all cores unless set; else a positive int, or
    ValueError) and capped at ``NUMBA_NUM_THREADS``: the count :func:`sketch_documents` runs on."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise ValueError(f"threads must be None or a positive integer, got {threads!r}")
    if threads == 1:
        return 1
    import numba

    return min(int(threads), numba.config.NUMBA_NUM_THREADS)


def sketch_documents(data, offsets, valid, table, bits, cf_bit, map_cps, map_off, map_blob, ngram, char_unit, scheme,
                     a32, b32, a64, b64, sigs, exact, n_shingles, threads: int | None = 1) -> None:
    """Sketch every document (:func:`dedup._kernels.minhash.sketch_range`): serially for ``threads`` 1 or a batch of
    under :data:`~dedup._kernels.PARALLEL_MIN_BYTES` of text (OpenMP's idle threads spin after each parallel call:
    many small files cost 5x the CPU), else on Numba's parallel kernel with that many threads, set for this call only
    (Numba's count is per calling thread and would outlast it; None: the thread's current count), in chunks of at
    most :data:`~dedup._kernels.SKETCH_CHUNK` documents and at most ``n / threads`` (``prange`` gives each thread
    one contiguous block of chunks: a few long documents, such as books, are split evenly over the threads, not
    given to one). Chunks do not change the result. Parallel calls from several threads take turns."""
    args = (data, offsets, valid, table, int(bits), int(cf_bit), map_cps, map_off, map_blob, int(ngram),
            bool(char_unit), int(scheme), a32, b32, a64, b64, sigs, exact, n_shingles)
    threads, n = use_threads(threads), sigs.shape[0]
    if threads == 1 or n < 2 or int(offsets[-1] - offsets[0]) < PARALLEL_MIN_BYTES:
        (aot() or _jit("minhash")).sketch_range(*args, 0, n)
        return
    import numba

    before = numba.get_num_threads()
    chunk = min(SKETCH_CHUNK, -(-n // (threads or before)))
    numba.set_num_threads(threads or before)
    try:
        with _PARALLEL:
            _jit("minhash").sketch_documents(*args, chunk)
    finally:
        numba.set_num_threads(before)


def _dispatch(module: str, name: str):
    def call(*args):
        return getattr(aot() or _jit(module), name)(*args)

    call.__name__ = name
    call.__doc__ = f"Dispatch to ``dedup._kernels.{module}.{name}`` (AOT when available)."
    return call


band_keys = _dispatch("minhash", "band_keys")
token_set_signatures = _dispatch("minhash", "token_set_signatures")
test_and_set_many = _dispatch("bloom", "test_and_set_many")
contains_many = _dispatch("bloom", "contains_many")
popcount = _dispatch("bloom", "popcount")
parts_of_many = _dispatch("bloom", "parts_of_many")


def line_depths(raw: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """int64 (n,): how deep each line ``raw[starts[i]:ends[i]]`` (uint8 JSON text) nests, an object or array one
    level, brackets inside strings not counted (:func:`dedup._kernels.jsonl.line_depths`).

    >>> line = b'{"a": [[1]], "b": "]]{{\\"["}'
    >>> line_depths(np.frombuffer(line, np.uint8), np.array([0]), np.array([len(line)])).tolist()
    [3]
    """
    out = np.zeros(len(starts), np.int64)
    (aot() or _jit("jsonl")).line_depths(raw, np.ascontiguousarray(starts, np.int64),
                                         np.ascontiguousarray(ends, np.int64), out)
    return out
