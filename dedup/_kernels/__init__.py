"""Numba kernels: compiled inner loops over numpy arrays (no I/O, no Python objects).

Call them through :mod:`dedup.kernels`, which picks the ahead-of-time build or the JIT.
Importing this package does not import Numba, so the scheme codes below are free.

Numba's on-disk cache checks only the file that defines a function, not the files of the
functions it inlines, so an edit to ``text.py`` would leave ``minhash.py``'s cached machine
code stale. On import we therefore compare a hash of all kernel sources with the one
recorded beside the cache and clear the cache when they differ.
"""

from pathlib import Path as _Path

SCHEME_FAST = 0
SCHEME_AFFINE32 = 1
SCHEME_LEGACY = 2
SCHEME_FSS = 3

#: The most documents per task of the parallel sketch kernel (:func:`dedup._kernels.minhash.sketch_documents`).
SKETCH_CHUNK = 256
#: Text bytes below which a batch is sketched serially (:func:`dedup.kernels.sketch_documents`): ~10 ms of work.
PARALLEL_MIN_BYTES = 1 << 20

# Bloom probe rules (:mod:`dedup._kernels.bloom`).
BLOOM_DOUBLE = 0  #: enhanced double hashing (Bloom format versions 1 and 2)
BLOOM_INDEPENDENT = 1  #: k hashes (Bloom format version 3)

# Layout of :func:`dedup.normalize.char_table`, the per-code-point table the text kernels read.
WORD = 1  #: general category L*, M* or N*
NFKC_UNSTABLE = 2  #: NFKC may change a text containing it (quick-check No or Maybe)
LOWER_CHANGES = 4  #: non-ASCII, and Arrow's utf8_lower maps it to something else
CONTEXT_FREE = 8  #: flagged, and lower(NFKC(text)) maps it alone, whatever surrounds it
MARK = 16  #: a combining mark (or composing starter) NFKC keeps unless it reorders or composes
SECOND = 32  #: MARK, and the second half of a canonical composition pair
SOLO = 64  #: WORD, and a word by itself: Han, kana, Thai, Lao, Khmer, Myanmar (:data:`dedup.normalize.SOLO_RANGES`)
ASCII_MAP = 0x110000  #: table[ASCII_MAP + b]: lowercased ASCII byte b, 0 for separators
TCCC = ASCII_MAP + 128  #: table[TCCC + cp]: combining class of the last code point of NFKD(cp)
TABLE_SIZE = TCCC + 0x110000
#: Composition pair keys: ``(first + 1) << PAIR_SHIFT | second`` (:class:`dedup.normalize.CharMap`)
PAIR_SHIFT = 21


def _invalidate_stale_jit_cache() -> None:
    from .sources import source_hash

    cache = _Path(__file__).resolve().parent / "__pycache__"
    stamp = cache / "kernels.sha256"
    current = source_hash()
    try:
        if stamp.read_text().strip() == current:
            return
    except OSError:
        pass
    try:
        cache.mkdir(exist_ok=True)
        for p in cache.glob("*.nb[ic]"):
            p.unlink(missing_ok=True)
        stamp.write_text(current + "\n")
    except OSError:
        pass  # read-only install: nothing cached here to go stale


_invalidate_stale_jit_cache()
