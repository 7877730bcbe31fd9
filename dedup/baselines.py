"""Baseline duplicate indexes, for benchmarks and cross-checks: datasketch's ``MinHashLSH`` and LSHBloom over
pybloom-live filters, with the interface and semantics of :class:`dedup.index.DuplicateIndex`.

Their packages are an optional extra (``pip install 'memdedup[baselines]'``); a baseline whose package is
missing is a ``ValueError`` (one line from the CLI, exit 2), not an ImportError.

Example:
    >>> from dedup.params import plan_index
    >>> index = DatasketchLSHIndex(plan_index(0.8, 128, 100, 1e-5), scheme="fast", num_perm=128, seed=1)
    >>> index.name, index.predicted_fp()
    ('lsh', 0.0)
"""

from __future__ import annotations

import importlib
import math
from types import ModuleType

import numpy as np

from .index import EXACT, NEAR, Verdicts, combine
from .minhash import get_scheme
from .params import IndexPlan, whole_index_fp
from .sketch import Sketches


#: backend -> (module, package) it needs.
NEEDS = {"lsh": ("datasketch", "datasketch"), "pybloom": ("pybloom_live", "pybloom-live")}


def require(backend: str) -> ModuleType | None:
    """The module ``backend`` needs (None for none), or the one-line ValueError naming the missing package."""
    if backend not in NEEDS:
        return None
    module, package = NEEDS[backend]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ValueError(
            f"index backend {backend!r} needs the {package} package, which is not installed "
            "(pip install 'memdedup[baselines]')"
        ) from e


class _Baseline:
    """What the engine asks of every index and a baseline has nothing for: statistics, resources."""

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        pass


class DatasketchLSHIndex(_Baseline):
    """Baseline: datasketch ``MinHashLSH`` bucket tables (exact band matches, no false positives) and a dict of
    exact keys; fills ``duplicate_of`` (the earliest colliding document). Memory grows with every signature."""

    name = "lsh"

    def __init__(self, plan: IndexPlan, scheme: str, num_perm: int, seed: int):
        datasketch = require("lsh")
        self._lean_minhash = datasketch.LeanMinHash
        self.plan = plan
        # fss matches no datasketch scheme; its uint32 values travel as affine32's do.
        self._ds_scheme = get_scheme(scheme).datasketch_scheme or "affine32"
        self._seed = seed
        self.lsh = datasketch.MinHashLSH(num_perm=num_perm, params=(plan.bands, plan.rows))
        self.exact: dict[bytes, int] = {}

    def process(self, sketches: Sketches, doc_numbers: np.ndarray) -> Verdicts:
        n = len(sketches)
        reason = np.zeros(n, dtype=np.int8)
        band = np.full(n, -1, dtype=np.int16)
        dup = np.full(n, -1, dtype=np.int64)
        dtype = np.uint64 if self._ds_scheme == "legacy" else np.uint32
        sigs = sketches.signatures.astype(dtype)
        tables = list(enumerate(zip(self.lsh.hashranges, self.lsh.hashtables)))
        for i in range(n):
            if not sketches.valid[i]:
                continue
            doc = int(doc_numbers[i])
            earlier_exact = self.exact.setdefault(sketches.exact[i].tobytes(), doc)
            if sketches.n_shingles[i] == 0:
                if earlier_exact != doc:
                    reason[i], dup[i] = EXACT, earlier_exact
                continue
            hits = [(j, min(cands)) for j, ((start, end), table) in tables  # (band, its earliest document)
                    if (cands := table.get(self.lsh._H(sigs[i, start:end])))]
            if hits and earlier_exact != doc:
                reason[i], dup[i] = EXACT, earlier_exact
            elif hits:
                reason[i], band[i], dup[i] = NEAR, hits[0][0], min(m for _, m in hits)
            mh = self._lean_minhash(seed=self._seed, hashvalues=sigs[i], scheme=self._ds_scheme)
            self.lsh.insert(doc, mh, check_duplication=False)
        return Verdicts(reason, band, dup)

    def nbytes(self) -> dict[str, int]:
        # Lower bound: the stored band hashes (r values each) plus a key per table entry (not Python's overhead).
        n = len(self.exact)
        return {"bands": n * self.plan.bands * (self.plan.rows * 4 + 8), "exact": n * 24}

    def predicted_fp(self) -> float:
        return 0.0


class PybloomIndex(_Baseline):
    """Baseline: the same LSHBloom logic with pybloom-live filters (pure Python, keys hashed through ``str()``),
    sized like ours."""

    name = "pybloom"

    def __init__(self, plan: IndexPlan, exact_fp: float = 1e-6):
        PyBloom = require("pybloom").BloomFilter
        self.plan = plan
        self.filters = [PyBloom(capacity=plan.capacity, error_rate=plan.band_fp) for _ in range(plan.bands)]
        self.exact_filter = PyBloom(capacity=plan.capacity, error_rate=exact_fp)

    def process(self, sketches: Sketches, doc_numbers: np.ndarray) -> Verdicts:
        n = len(sketches)
        seen = np.zeros((n, self.plan.bands), dtype=np.bool_)
        exact_seen = np.zeros(n, dtype=np.bool_)
        keys = sketches.band_keys.tolist()
        ekeys = sketches.exact[:, 0].tolist()
        try:
            for i in np.flatnonzero(sketches.valid).tolist():
                exact_seen[i] = self.exact_filter.add(ekeys[i])
                if sketches.n_shingles[i] > 0:
                    row = keys[i]
                    for j, f in enumerate(self.filters):
                        seen[i, j] = f.add(row[j])
        except IndexError:  # pybloom-live's "BloomFilter is at capacity": it refuses keys past it
            raise ValueError(f"index 'pybloom': pybloom-live's filters hold at most --capacity "
                             f"{self.plan.capacity:,} documents; give a larger --capacity") from None
        return combine(sketches.valid, sketches.n_shingles > 0, seen, exact_seen)

    def nbytes(self) -> dict[str, int]:
        return {"bands": sum(f.num_bits // 8 for f in self.filters), "exact": self.exact_filter.num_bits // 8}

    def predicted_fp(self) -> float:
        """Probability that the next unrelated document is flagged, from the filters' fill: a pybloom-live
        filter has ``num_slices`` slices of ``bits_per_slice`` bits and one probe per slice, so a fresh key is a
        false positive with probability prod_s fill_s (Bloom 1970; Almeida et al. 2007, the sliced layout); b
        filters: ``1 - prod_b (1 - p_b)``. 0 for an empty index."""
        return whole_index_fp([_sliced_fill_fp(f) for f in self.filters])


def _sliced_fill_fp(f: object) -> float:
    """False-positive probability of pybloom-live filter ``f`` at its fill: prod over slices of the bits set."""
    m = f.bits_per_slice
    return math.prod(f.bitarray.count(1, s * m, (s + 1) * m) / m for s in range(f.num_slices))
