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
