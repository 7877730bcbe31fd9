"""Parameter maths for LSH banding and Bloom filters: pure functions, no I/O.

* Banding (Leskovec, Rajaraman & Ullman, *Mining of Massive Datasets*, ch. 3.4): with
  ``b`` bands of ``r`` rows, two documents of Jaccard similarity ``s`` share at least one
  band with probability ``P(s) = 1 - (1 - s^r)^b``.
* :func:`optimal_param` is datasketch's ``_optimal_param`` (same grid, ``scipy.integrate.quad`` integrals
  and tie-breaking): identical ``(b, r)`` for identical inputs.
* Bloom filters (Bloom 1970; Kirsch & Mitzenmacher 2006): ``n`` keys in ``m`` bits with
  ``k`` probes give a false-positive rate ``p = (1 - exp(-k n / m))^k``; the optimum is
  ``m = -n ln(p) / (ln 2)^2`` bits and ``k = (m / n) ln 2``.
* LSHBloom (Khan et al. 2024): one Bloom filter per band. A new document is flagged by
  chance if any of the ``b`` filters answers yes: ``p_total = 1 - (1 - p_band)^b``, so each
  band gets ``p_band = 1 - (1 - p_total)^(1/b)``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, fields


def candidate_probability(s: float, bands: int, rows: int) -> float:
    """P(two documents of Jaccard ``s`` collide in at least one of ``bands`` bands)."""
    return 1.0 - (1.0 - s ** float(rows)) ** float(bands)


@functools.lru_cache(maxsize=256)
def optimal_param(threshold: float, num_perm: int, false_positive_weight: float = 0.5,
                  false_negative_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) minimising ``w_fp * integral_0^T P(s) ds + w_fn * integral_T^1 (1 - P(s)) ds``
    over all ``b * r <= num_perm`` (T=0.8, 128 perms gives (9, 13); 256 perms gives (17, 15)).

    The search costs ~0.3 s (scipy import, ~1,300 integrals at K=128): results are memoised in the start-up
    cache (:mod:`dedup.cache`) keyed by the exact float inputs. ValueError: threshold outside (0, 1) or
    num_perm < 2.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if num_perm < 2:
        raise ValueError(f"num_perm must be >= 2, got {num_perm}")
    from . import cache

    key = f"{threshold!r}|{num_perm}|{false_positive_weight!r}|{false_negative_weight!r}"
    memo = cache.load_json("optimal_param.json")
    if key in memo:
        b, r = memo[key]
        return int(b), int(r)
    from scipy.integrate import quad  # datasketch's grid search

    def error(br: tuple[int, int]) -> float:
        fp = quad(lambda s: candidate_probability(s, *br), 0.0, threshold)[0]
        fn = quad(lambda s: 1 - candidate_probability(s, *br), threshold, 1.0)[0]
        return fp * false_positive_weight + fn * false_negative_weight

    opt, best = (0, 0), float("inf")  # datasketch's loop: the first of equal minima; (0, 0) if no error is finite
    for br in ((b, r) for b in range(1, num_perm + 1) for r in range(1, int(num_perm / b) + 1)):
        if (e := error(br)) < best:
            opt, best = br, e
    memo[key] = list(opt)
    cache.save_json("optimal_param.json", memo)
    return opt


def per_band_fp(total_fp: float, bands: int) -> float:
    """Per-filter false-positive rate so that ``bands`` filters together give ``total_fp``."""
    if not 0.0 < total_fp < 1.0:
        raise ValueError(f"false-positive rate must be in (0, 1), got {total_fp}")
    # 1 - (1 - p)^(1/b), written with log1p/expm1 to stay exact for p ~ 1e-12.
    return -math.expm1(math.log1p(-total_fp) / bands)


def whole_index_fp(band_fps: list[float]) -> float:
    """False-positive rate of a band index whose filters have rates ``band_fps``: a new unrelated document
    collides if any band does, ``1 - prod_b (1 - p_b)`` (log1p/expm1 keep it exact for tiny rates).

    >>> round(whole_index_fp([1e-6] * 9), 12)  # 1 - (1 - 1e-6)^9, just under 9e-6
    8.999964e-06
    """
    if any(p >= 1.0 for p in band_fps):  # a saturated filter (far over its capacity) answers every key
        return 1.0
    return 0.0 - math.expm1(sum(math.log1p(-p) for p in band_fps)) if band_fps else 0.0  # 0.0 -: never -0.0


def bloom_size(n: int, fp: float) -> tuple[int, int]:
    """Optimal ``(m_bits, k)`` for ``n`` keys (at least 1) at false-positive rate ``fp``: ``m`` rounded up to a
    multiple of 64 (uint64 words), ``k = round((m / n) ln 2)`` (at least 1)."""
    if not 0.0 < fp < 1.0:
        raise ValueError(f"false-positive rate must be in (0, 1), got {fp}")
    n = max(int(n), 1)
    m = max(64, (math.ceil(-n * math.log(fp) / (math.log(2) ** 2)) + 63) // 64 * 64)
    return m, max(1, round(m / n * math.log(2)))


#: A filter up to this size is one part: it fits a server's shared L3 cache whole, where one part is faster
#: than partitions; above, parts win (bench/results/band_bench.md: 58 vs 247 ns per key at 10^7 documents).
ONE_PART_MAX_BYTES = 8 << 20
#: Size of a cache partition of a larger filter (fits a core's L2 cache).
PART_BYTES = 256 << 10
#: The most cache partitions a filter can have (the kernels index them with int32): up to 512 TiB.
MAX_PARTS = 2**31 - 1


def refuse_unholdable(capacity: int, m_bits: int, what: str) -> None:
    """ValueError naming ``capacity`` (documents) when a filter of ``m_bits`` bits needs more than
    :data:`MAX_PARTS` cache partitions; ``what`` formats its size (``"an exact-key filter of {}"``)."""
    if bloom_parts(m_bits) > MAX_PARTS:
        raise ValueError(f"capacity {int(capacity):,} documents needs {what.format(f'{m_bits / 8 / 2**40:,.0f} TiB')}; "
                         f"the largest filter is {MAX_PARTS * PART_BYTES / 2**40:.0f} TiB")


def bloom_parts(m_bits: int) -> int:
    """Cache partitions of an ``m_bits`` filter (:mod:`dedup._kernels.bloom`): 1 up to
    :data:`ONE_PART_MAX_BYTES`, else ``ceil(bytes / PART_BYTES)``.

    >>> bloom_parts(8 * (8 << 20)), bloom_parts(8 * (34 << 20))
    (1, 136)
    """
    nbytes = -(-int(m_bits) // 8)
    return 1 if nbytes <= ONE_PART_MAX_BYTES else -(-nbytes // PART_BYTES)


def bloom_fp(n: int, m_bits: int, k: int) -> float:
    """Predicted false-positive rate ``(1 - exp(-k n / m))^k`` after ``n`` insertions."""
    return 0.0 if n <= 0 else (-math.expm1(-k * n / m_bits)) ** k


@dataclass(frozen=True)
class IndexPlan:
    """Everything decided before a dedup run: Jaccard threshold T, signature length K, banding (b, r) with
    b * r <= K, ``capacity`` (documents the filters are sized for), ``total_fp`` (target probability that a new
    unrelated document is flagged) and ``band_fp`` (:func:`per_band_fp`), each band filter's ``band_bits`` and
    probes ``band_k``, and ``curve``: ``{s: P(candidate | s)}`` for s = 0.1 .. 1.0 (the S-curve at (b, r))."""

    threshold: float
    num_perm: int
    bands: int
    rows: int
    capacity: int
    total_fp: float
    band_fp: float
    band_bits: int
    band_k: int
    curve: dict[str, float] = field(default_factory=dict)

    @property
    def index_bytes(self) -> int:
        """Bytes of all band filters together."""
        return self.bands * self.band_bits // 8

    @property
    def bytes_per_doc(self) -> float:
        """Band-filter bytes per document at capacity."""
        return self.index_bytes / max(self.capacity, 1)

    def predicted_fp(self, n_inserted: int) -> float:
        """Whole-index false-positive rate after ``n_inserted`` documents."""
        p_band = bloom_fp(n_inserted, self.band_bits, self.band_k)
        return -math.expm1(self.bands * math.log1p(-p_band)) if p_band < 1.0 else 1.0

    def to_dict(self, growing: bool = False) -> dict:
        """JSON-ready summary for manifests and ``memdedup params``; ``growing``: the filters grow by generations
        (an ``--index-dir`` run: :mod:`dedup.scalable`), so the fields that size a fixed filter are None."""
        plan = {**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "curve"},
                "index_bytes": self.index_bytes, "bytes_per_doc": self.bytes_per_doc,
                "predicted_fp_at_capacity": self.predicted_fp(self.capacity), "candidate_probability": self.curve}
        sizing = ("capacity", "band_bits", "band_k", "index_bytes", "bytes_per_doc", "predicted_fp_at_capacity")
        return plan | dict.fromkeys(sizing if growing else (), None)


def plan_index(threshold: float, num_perm: int, capacity: int, total_fp: float = 1e-5, bands: int | None = None,
               rows: int | None = None) -> IndexPlan:
    """Choose (b, r) (datasketch's optimisation unless both are given, ``bands * rows <= num_perm``)
    and size the filters: the :class:`IndexPlan` of these arguments (``threshold``: T in (0, 1);
    ``capacity``: every document is inserted).

    >>> plan = plan_index(0.8, 128, capacity=1_000_000, total_fp=1e-5)
    >>> plan.bands, plan.rows, round(plan.bytes_per_doc, 1)
    (9, 13, 32.1)
    >>> [round(candidate_probability(s, plan.bands, plan.rows), 3) for s in (0.5, 0.8, 0.9)]  # the S-curve
    [0.001, 0.399, 0.929]
    """
    if (bands is None) != (rows is None):
        raise ValueError("give both bands and rows, or neither")
    if isinstance(capacity, bool) or capacity != int(capacity) or capacity < 1:
        raise ValueError(f"capacity must be a whole number >= 1, got {capacity!r}")
    if bands is None:
        bands, rows = optimal_param(threshold, num_perm)
    assert rows is not None
    if bands < 1 or rows < 1 or bands * rows > num_perm:
        raise ValueError(f"bands * rows must be <= num_perm ({bands} * {rows} > {num_perm})")
    band_fp = per_band_fp(total_fp, bands)
    m, k = bloom_size(capacity, band_fp)
    refuse_unholdable(capacity, m, "band filters of {} each")
    curve = {f"{s / 10:.1f}": candidate_probability(s / 10, bands, rows) for s in range(1, 11)}
    return IndexPlan(threshold, num_perm, bands, rows, int(capacity), total_fp, band_fp, m, k, curve)
