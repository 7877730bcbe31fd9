"""Duplicate indexes: LSHBloom (ours) here, and the baselines of :mod:`dedup.baselines`, behind one interface.

Semantics of every backend, documents taken in canonical order (input files sorted by path, rows in file order):

* *exact*: an earlier document had the same canonical text (128-bit key).
* *near*: not exact, and for some band j this document's band key equals an earlier document's; ``band`` is
  the first such j.
* Every document is inserted, duplicate or not, so each band's answer depends only on that band's keys:
  bands are independent (any order, in parallel, on different machines). (The reference LSHBloom inserts only
  kept documents, which couples bands through the verdicts.)
* Null texts are never inserted nor removed; documents without shingles (empty canonical text) take part in
  the exact check only.

LSHBloom answers "seen before" from one Bloom filter per band, so it errs only by false positives, at the rate
planned in :class:`dedup.params.IndexPlan`. An *exact* verdict also requires a collision in every band, so a
false positive of the exact-key filter alone cannot label a document exact, except one without shingles (no
bands): it is removed if that filter errs for it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .bloom import BloomFilter
from .params import IndexPlan, bloom_size, whole_index_fp
from .sketch import Sketches

KEEP, EXACT, NEAR = 0, 1, 2
#: Label of each reason code, indexable by the code (removed.parquet's ``reason``).
REASON_LABELS = ["keep", "exact", "near"]


@dataclass
class Verdicts:
    """Per-document decisions for one batch: ``reason`` int8 (n,), KEEP / EXACT / NEAR; ``band`` int16 (n,), first
    colliding band for NEAR, else -1; ``duplicate_of`` int64 (n,), global number (position in canonical order)
    of an earlier document it duplicates, or -1 where the index cannot know."""

    reason: np.ndarray
    band: np.ndarray
    duplicate_of: np.ndarray

    def counts(self) -> dict[str, int]:
        """Documents ``kept``, and removed as ``exact`` and as ``near`` duplicates."""
        return {k: int((self.reason == code).sum()) for k, code in (("kept", KEEP), ("exact", EXACT), ("near", NEAR))}


class DuplicateIndex(Protocol):
    """What the dedup engine needs from an index backend."""

    name: str

    def process(self, sketches: Sketches, doc_numbers: np.ndarray) -> Verdicts:
        """Decide and insert a batch of documents, in order."""
        ...

    def nbytes(self) -> dict[str, int]:
        """Memory held by the index, by part (``bands``, ``exact``)."""
        ...

    def predicted_fp(self) -> float:
        """Predicted probability that the next unrelated document is flagged."""
        ...


def combine(valid: np.ndarray, has_shingles: np.ndarray, band_seen: np.ndarray, exact_seen: np.ndarray) -> Verdicts:
    """The module docstring's verdict rule from "seen before" answers: ``band_seen`` (bool (n, b): band j's key
    of document i was seen before) and ``exact_seen`` (bool (n,)), for documents ``valid`` (False: a null text)
    and ``has_shingles`` (False: an empty canonical text)."""
    is_exact = valid & exact_seen & (band_seen.all(axis=1) | ~has_shingles)
    is_near = ~is_exact & band_seen.any(axis=1)
    reason = np.where(is_exact, EXACT, np.where(is_near, NEAR, KEEP)).astype(np.int8)
    band = np.where(is_near, np.argmax(band_seen, axis=1), -1).astype(np.int16)
    return Verdicts(reason, band, np.full(valid.shape[0], -1, dtype=np.int64))


def decide(sketches: Sketches, band_filters: list, exact_filter, map_fn: Callable = map) -> Verdicts:
    """Insert a batch into per-band filters and an exact-key filter (``add(keys, mask)`` returning "seen before":
    :class:`BloomFilter` or :class:`dedup.scalable.FilterStack`) and :func:`combine` their answers. ``map_fn``
    runs the independent bands (a pool's map)."""
    has_sh = sketches.n_shingles > 0
    seen = np.zeros((len(sketches), len(band_filters)), dtype=np.bool_)

    def run_band(j: int) -> None:
        seen[:, j] = band_filters[j].add(sketches.band_keys[:, j], has_sh)

    list(map_fn(run_band, range(len(band_filters))))
    return combine(sketches.valid, has_sh, seen, exact_filter.add(sketches.exact[:, 0], sketches.valid))


class LSHBloomIndex:
    """One Bloom filter per band plus an exact-key filter (Khan et al. 2024, with a proper
    64-bit band key and insert-every-document semantics); ``threads`` work on the
    independent bands (1: serial). Filters of the same seed and sizes can be OR-merged.
    """

    name = "lshbloom"

    def __init__(self, plan: IndexPlan, exact_fp: float = 1e-6, seed: int = 0, threads: int = 1):
        self.plan = plan
        self.filters = [BloomFilter(plan.band_bits, plan.band_k, seed) for _ in range(plan.bands)]
        self.exact_filter = BloomFilter(*bloom_size(plan.capacity, exact_fp), seed)
        self.threads = max(1, int(threads))
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def process(self, sketches: Sketches, doc_numbers: np.ndarray) -> Verdicts:
        return decide(sketches, self.filters, self.exact_filter, self._pool.map if self._pool is not None else map)

    def nbytes(self) -> dict[str, int]:
        return {"bands": sum(f.nbytes for f in self.filters), "exact": self.exact_filter.nbytes}

    def predicted_fp(self) -> float:
        """From each band filter's fill (as the staged engine reports it)."""
        return whole_index_fp([f.estimated_fp() for f in self.filters])

    def stats(self) -> dict:
        return {"band_fill_ratio": [round(f.fill_ratio(), 6) for f in self.filters],
                "band_estimated_fp": [f.estimated_fp() for f in self.filters],
                "exact_fill_ratio": round(self.exact_filter.fill_ratio(), 6)}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


def make_index(backend: str, plan: IndexPlan, *, scheme: str, num_perm: int, seed: int, exact_fp: float,
               threads: int = 1):
    """Build the named backend: ``lshbloom``, or a baseline (``lsh``, ``pybloom``) from :mod:`dedup.baselines`,
    imported only when asked for. ValueError: an unknown backend, or a baseline whose package is missing.

    >>> from dedup.params import plan_index
    >>> plan = plan_index(0.8, 128, 1000, 1e-5)
    >>> make_index("lshbloom", plan, scheme="fast", num_perm=128, seed=1, exact_fp=1e-6).name
    'lshbloom'
    """
    if backend == "lshbloom":
        return LSHBloomIndex(plan, exact_fp=exact_fp, threads=threads)
    if backend in ("lsh", "pybloom"):  # kept for benchmarks and cross-checks (an optional extra)
        from . import baselines

        if backend == "lsh":
            return baselines.DatasketchLSHIndex(plan, scheme=scheme, num_perm=num_perm, seed=seed)
        return baselines.PybloomIndex(plan, exact_fp=exact_fp)
    raise ValueError(f"unknown index backend {backend!r}; choose lshbloom, lsh or pybloom")
