"""Compile (or load) every Numba kernel and fill the start-up caches once: ``make`` runs ``python -m dedup.warmup``
after installing, so the first real run does not pay ~20 s of JIT compilation. Kernels are cached next to their
sources (``numba`` ``cache=True``), the rest in :func:`dedup.cache.cache_dir`.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa


def warm() -> float:
    """Run each kernel once with the argument types real runs use; return seconds taken.

    Example:
        >>> warm() > 0  # seconds; the first call in a fresh install compiles, later ones load
        True
    """
    from .config import DedupConfig
    from .index import LSHBloomIndex
    from .minhash import SCHEMES, minhash_signatures
    from .params import optimal_param, plan_index
    from .sketch import Sketcher

    t0 = time.perf_counter()
    texts = pa.array(["Warm-up text: ＦＵＬＬ width, café — naïve?", None, "", "a b c d e f g"])
    for scheme in SCHEMES:
        minhash_signatures([[b"a", b"b"]], num_perm=8, seed=1, scheme=scheme)
        for cfg in (DedupConfig(scheme=scheme, unit=u, band_key=b) for u in ("word", "char") for b in ("hash", "sum")):
            Sketcher(cfg, 9, 13)(texts)
    for threshold in (0.7, 0.8, 0.9):
        optimal_param(threshold, 128)
    Sketcher(DedupConfig(), 9, 13, threads=2)(texts)  # the JIT prange path (multi-threaded runs)
    plan = plan_index(0.8, 128, 1000)
    sk = Sketcher(DedupConfig(), plan.bands, plan.rows)(texts)
    index = LSHBloomIndex(plan)
    index.process(sk, np.arange(len(sk), dtype=np.int64))
    index.stats()
    index.filters[0].contains(np.zeros(1, dtype=np.uint64))
    return time.perf_counter() - t0


if __name__ == "__main__":
    print(f"memdedup: Numba kernels and start-up caches ready ({warm():.1f} s)")
