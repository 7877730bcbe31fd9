"""Ahead-of-time build of the serial kernels (``python -m dedup._kernels.aot``).

This script compiles the serial entry points of this package's ``@numba.njit`` kernels with
:mod:`numba.pycc` into the extension module ``dedup/_kernels/_compiled*.so``, next to a stamp
file holding the SHA-256 of the kernel sources. :mod:`dedup.kernels` loads the extension only
when the stamp matches the sources; it needs neither Numba nor JIT compilation at run time,
which saves ~0.5 s of start-up per process (import + target initialisation) and the ~20 s
first compilation.

``make`` runs this after installing, on the machine that will run it (the code is
compiled for this CPU, like the JIT's). It needs a C compiler (gcc).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .sources import HERE, source_hash

MODULE = "_compiled"
STAMP = HERE / f"{MODULE}.sha256"


def _signatures():
    from numba import types as t

    def arr(dtype, ndim=1, readonly=False):
        return t.Array(dtype, ndim, "C", readonly=readonly)

    u1, u4, u8, i8, b1 = t.uint8, t.uint32, t.uint64, t.int64, t.boolean
    ro_u1 = arr(u1, readonly=True)
    ro_i8 = arr(i8, readonly=True)
    return {
        "sketch_range": t.void(
            ro_u1, ro_i8, arr(b1, readonly=True), ro_u1, i8, i8, ro_i8, ro_i8, ro_u1, i8, b1, i8,
            arr(u4, readonly=True), arr(u4, readonly=True),
            arr(u8, readonly=True), arr(u8, readonly=True), arr(u4, 2), arr(u8, 2), arr(i8), i8, i8,
        ),
        "band_keys": t.void(arr(u4, 2), i8, i8, b1, arr(u8, 2)),
        "token_set_signatures": t.void(
            ro_u1, arr(i8), arr(i8), i8, arr(u4, readonly=True), arr(u4, readonly=True),
            arr(u8, readonly=True), arr(u8, readonly=True), arr(u4, 2),
        ),
        "test_and_set_many": i8(arr(u8), u8, i8, i8, u8, i8, arr(u8), arr(b1), arr(b1)),
        "contains_many": t.void(arr(u8), u8, i8, i8, u8, i8, arr(u8), arr(b1)),
        "popcount": i8(arr(u8)),
        "parts_of_many": t.void(arr(u8), u8, i8, arr(t.int32)),
        "line_depths": t.void(ro_u1, ro_i8, ro_i8, arr(i8)),
    }


def build(verbose: bool = False) -> Path:
    """Compile the extension into this package directory and write its stamp."""
    from numba.pycc import CC

    from . import bloom, jsonl, minhash

    impls = {
        "sketch_range": minhash.sketch_range,
        "band_keys": minhash.band_keys,
        "token_set_signatures": minhash.token_set_signatures,
        "test_and_set_many": bloom.test_and_set_many,
        "contains_many": bloom.contains_many,
        "popcount": bloom.popcount,
        "parts_of_many": bloom.parts_of_many,
        "line_depths": jsonl.line_depths,
    }
    cc = CC(MODULE)
    cc.output_dir = str(HERE)
    cc.target_cpu = "host"
    cc.verbose = verbose
    for name, sig in _signatures().items():
        cc.export(name, sig)(impls[name].py_func)
    STAMP.unlink(missing_ok=True)
    cc.compile()
    STAMP.write_text(source_hash() + "\n")
    return HERE


if __name__ == "__main__":
    import time

    t0 = time.perf_counter()
    build(verbose="-v" in sys.argv)
    print(f"memdedup: compiled kernels into {HERE} ({time.perf_counter() - t0:.1f} s)")
