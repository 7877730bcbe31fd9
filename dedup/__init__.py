"""memdedup.dedup: near-duplicate removal at scale (MinHash + LSHBloom) and exact dedup.

Public API (see each module for the maths and the paper it comes from):

- :func:`minhash_signatures`, :func:`estimate_jaccard` — MinHash schemes (:mod:`dedup.minhash`)
- :func:`shingles`, :func:`canonical_text` — the normalisation/shingling definition
- :func:`optimal_param`, :func:`plan_index`, :class:`IndexPlan` — banding and Bloom sizing
- :class:`BloomFilter` — persisted, memory-mappable Bloom filter
- :class:`LSHBloomIndex` — the duplicate index; :class:`DatasketchLSHIndex`, :class:`PybloomIndex` —
  baselines for benchmarks (:mod:`dedup.baselines`; their packages are the ``baselines`` extra)
- :class:`DedupConfig`, :func:`dedup_files` — the single-process engine
- :class:`Deduplicator` — streaming dedup of tables in memory, keep masks out, with the
  index saved and loaded as an ``--index-dir`` directory (:mod:`dedup.streaming`)
- :class:`InputError` — raised for bad inputs, naming the file (and row/line)

Nothing here imports torch, transformers, dask or the command line.
"""

from .baselines import DatasketchLSHIndex, PybloomIndex
from .bloom import BloomFilter
from .config import DedupConfig
from .engine import dedup_files
from .index import LSHBloomIndex
from .minhash import SCHEMES, estimate_jaccard, minhash_signatures
from .normalize import canonical_text, shingles
from .params import IndexPlan, optimal_param, plan_index
from .runs import OutputExistsError
from .shards import InputError

__all__ = [
    "SCHEMES", "BloomFilter", "DatasketchLSHIndex", "DedupConfig", "Deduplicator", "IndexPlan", "InputError",
    "LSHBloomIndex", "OutputExistsError", "PybloomIndex", "canonical_text", "dedup_files", "estimate_jaccard",
    "minhash_signatures", "optimal_param", "plan_index", "shingles",
]


def __getattr__(name: str):
    """:class:`Deduplicator` on first use: its module (and the staged engine's, whose layout
    it shares) stays out of every command's start-up."""
    if name == "Deduplicator":
        from .streaming import Deduplicator

        return Deduplicator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "Deduplicator"})
