"""Duplicate indexes: LSHBloom (ours) and the two baselines, behind one interface.

Semantics shared by every backend (canonical order = input files sorted by path, rows in
file order; every document is processed in that order):

* *exact*: an earlier document had the same canonical text (128-bit key).
* *near*: not exact, and for some band j the band key of this document equals the band
  key of an earlier document. ``band`` is the first such j.
* Every document is inserted, duplicate or not. Each band's answer then depends only on
  that band's keys, so bands are independent: they can be processed in any order, in
  parallel, or on different machines, and the verdicts do not change. (The reference
  LSHBloom inserts only kept documents, which couples bands through the verdicts.)
* Null texts are never inserted and never removed. Documents without shingles (empty
  canonical text) take part in the exact check only.

The LSHBloom index answers "seen before" from one Bloom filter per band, so it errs only by
false positives, at the rate planned in :class:`dedup.params.IndexPlan`. An *exact* verdict
also requires a collision in every band (an exact duplicate collides everywhere), so a
false positive of the exact-key filter alone cannot label a document exact.
"""

from __future__ import annotations

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
    """Per-document decisions for one batch.

    Attributes:
        reason: int8 (n,), KEEP / EXACT / NEAR.
        band: int16 (n,), first colliding band for NEAR, else -1.
        duplicate_of: int64 (n,), global number (position in canonical order) of an
            earlier document it duplicates, or -1 where the index cannot know.
    """

    reason: np.ndarray
    band: np.ndarray
    duplicate_of: np.ndarray


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


def _first_band(seen: np.ndarray) -> np.ndarray:
    any_hit = seen.any(axis=1)
    return np.where(any_hit, np.argmax(seen, axis=1), -1).astype(np.int16)


def combine(valid: np.ndarray, has_shingles: np.ndarray, band_seen: np.ndarray, exact_seen: np.ndarray) -> Verdicts:
    """The verdict rule, from per-band and exact-key "seen before" answers.

    Args:
        valid: bool (n,), False for null texts (never removed).
        has_shingles: bool (n,), False for empty canonical texts (exact check only).
        band_seen: bool (n, b), band j's key of document i was seen from an earlier document.
        exact_seen: bool (n,), the exact key was seen from an earlier document.

    Exact requires the exact key and (for documents with shingles) every band to collide;
    near requires some band; ``band`` is the first colliding band of a near duplicate.
    """
    is_exact = valid & exact_seen & (band_seen.all(axis=1) | ~has_shingles)
    is_near = ~is_exact & band_seen.any(axis=1)
    reason = np.where(is_exact, EXACT, np.where(is_near, NEAR, KEEP)).astype(np.int8)
    band = np.where(is_near, _first_band(band_seen), -1).astype(np.int16)
    return Verdicts(reason, band, np.full(valid.shape[0], -1, dtype=np.int64))


class LSHBloomIndex:
    """One Bloom filter per band plus an exact-key filter (Khan et al. 2024, with a proper
    64-bit band key and insert-every-document semantics).

    Args:
        plan: banding and per-band filter sizes.
        exact_fp: false-positive rate of the exact-key filter.
        seed: Bloom seed (filters of the same seed and sizes can be OR-merged).
        threads: threads for the per-band work (bands are independent); 1 = serial.
    """

    name = "lshbloom"

    def __init__(self, plan: IndexPlan, exact_fp: float = 1e-6, seed: int = 0, threads: int = 1):
        self.plan = plan
        self.filters = [BloomFilter(plan.band_bits, plan.band_k, seed) for _ in range(plan.bands)]
        m, k = bloom_size(plan.capacity, exact_fp)
        self.exact_filter = BloomFilter(m, k, seed)
        self.threads = max(1, int(threads))
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def process(self, sketches: Sketches, doc_numbers: np.ndarray) -> Verdicts:
        n = len(sketches)
        valid = sketches.valid
        has_sh = sketches.n_shingles > 0
        seen = np.zeros((n, self.plan.bands), dtype=np.bool_)
        keys = sketches.band_keys

        def run_band(j: int) -> None:
            seen[:, j] = self.filters[j].add(keys[:, j], has_sh)

        if self._pool is not None:
            list(self._pool.map(run_band, range(self.plan.bands)))
        else:
            for j in range(self.plan.bands):
                run_band(j)
        exact_seen = self.exact_filter.add(sketches.exact[:, 0], valid)
        return combine(valid, has_sh, seen, exact_seen)

    def nbytes(self) -> dict[str, int]:
        return {"bands": sum(f.nbytes for f in self.filters), "exact": self.exact_filter.nbytes}

    def predicted_fp(self) -> float:
        """From each band filter's fill (as the staged engine reports it)."""
        return whole_index_fp([f.estimated_fp() for f in self.filters])

    def stats(self) -> dict:
        return {
            "band_fill_ratio": [round(f.fill_ratio(), 6) for f in self.filters],
            "band_estimated_fp": [f.estimated_fp() for f in self.filters],
            "exact_fill_ratio": round(self.exact_filter.fill_ratio(), 6),
        }

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


class DatasketchLSHIndex:
    """Baseline: datasketch ``MinHashLSH`` bucket tables (exact band matches, no false
    positives) and a dict of exact keys. Knows which earlier document collided, so it
    fills ``duplicate_of`` (the earliest colliding document). Memory grows with every
    signature stored, which is what LSHBloom avoids."""

    name = "lsh"

    def __init__(self, plan: IndexPlan, scheme: str, num_perm: int, seed: int):
        from datasketch import MinHashLSH

        from .minhash import get_scheme

        self.plan = plan
        self._ds_scheme = get_scheme(scheme).datasketch_scheme
        self._num_perm = num_perm
        self._seed = seed
        self.lsh = MinHashLSH(num_perm=num_perm, params=(plan.bands, plan.rows))
        self.exact: dict[bytes, int] = {}

    def process(self, sketches: Sketches, doc_numbers: np.ndarray) -> Verdicts:
        from datasketch import LeanMinHash

        n = len(sketches)
        reason = np.zeros(n, dtype=np.int8)
        band = np.full(n, -1, dtype=np.int16)
        dup = np.full(n, -1, dtype=np.int64)
        dtype = np.uint64 if self._ds_scheme == "legacy" else np.uint32
        sigs = sketches.signatures.astype(dtype)
        for i in range(n):
            if not sketches.valid[i]:
                continue
            doc = int(doc_numbers[i])
            ek = sketches.exact[i].tobytes()
            earlier_exact = self.exact.setdefault(ek, doc)
            if sketches.n_shingles[i] == 0:
                if earlier_exact != doc:
                    reason[i], dup[i] = EXACT, earlier_exact
                continue
            first_band, earliest = -1, -1
            for j, ((start, end), table) in enumerate(zip(self.lsh.hashranges, self.lsh.hashtables)):
                cands = table.get(self.lsh._H(sigs[i, start:end]))
                if cands:
                    m = min(cands)
                    if first_band < 0:
                        first_band = j
                    earliest = m if earliest < 0 else min(earliest, m)
            if earlier_exact != doc and first_band >= 0:
                reason[i], dup[i] = EXACT, earlier_exact
            elif first_band >= 0:
                reason[i], band[i], dup[i] = NEAR, first_band, earliest
            mh = LeanMinHash(seed=self._seed, hashvalues=sigs[i], scheme=self._ds_scheme)
            self.lsh.insert(doc, mh, check_duplication=False)
        return Verdicts(reason, band, dup)

    def nbytes(self) -> dict[str, int]:
        # Lower bound: the stored band hashes (r values each) plus a key per table entry;
        # Python object overhead (several times more) is measured by the benchmark's RSS.
        n = len(self.exact)
        return {"bands": n * self.plan.bands * (self.plan.rows * 4 + 8), "exact": n * 24}

    def predicted_fp(self) -> float:
        return 0.0

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        pass


class PybloomIndex:
    """Baseline: the same LSHBloom logic with pybloom-live filters (pure Python, keys
    hashed through ``str()``), sized like ours. Slow; for benchmarks and cross-checks."""

    name = "pybloom"

    def __init__(self, plan: IndexPlan, exact_fp: float = 1e-6):
        from pybloom_live import BloomFilter as PyBloom

        self.plan = plan
        self.filters = [PyBloom(capacity=plan.capacity, error_rate=plan.band_fp) for _ in range(plan.bands)]
        self.exact_filter = PyBloom(capacity=plan.capacity, error_rate=exact_fp)

    def process(self, sketches: Sketches, doc_numbers: np.ndarray) -> Verdicts:
        n = len(sketches)
        seen = np.zeros((n, self.plan.bands), dtype=np.bool_)
        exact_seen = np.zeros(n, dtype=np.bool_)
        keys = sketches.band_keys.tolist()
        ekeys = sketches.exact[:, 0].tolist()
        for i in range(n):
            if not sketches.valid[i]:
                continue
            exact_seen[i] = self.exact_filter.add(ekeys[i])
            if sketches.n_shingles[i] > 0:
                row = keys[i]
                for j, f in enumerate(self.filters):
                    seen[i, j] = f.add(row[j])
        return combine(sketches.valid, sketches.n_shingles > 0, seen, exact_seen)

    def nbytes(self) -> dict[str, int]:
        return {
            "bands": sum(f.num_bits // 8 for f in self.filters),
            "exact": self.exact_filter.num_bits // 8,
        }

    def predicted_fp(self) -> float:
        return self.plan.predicted_fp(self.plan.capacity)

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        pass


def make_index(backend: str, plan: IndexPlan, *, scheme: str, num_perm: int, seed: int, exact_fp: float, threads: int = 1):
    """Build the named backend (``lshbloom``, ``lsh`` or ``pybloom``)."""
    if backend == "lshbloom":
        return LSHBloomIndex(plan, exact_fp=exact_fp, threads=threads)
    if backend == "lsh":
        return DatasketchLSHIndex(plan, scheme=scheme, num_perm=num_perm, seed=seed)
    if backend == "pybloom":
        return PybloomIndex(plan, exact_fp=exact_fp)
    raise ValueError(f"unknown index backend {backend!r}; choose lshbloom, lsh or pybloom")
