"""A band's Bloom filter as a stack of generations that grows with the corpus.

A run that knows its corpus size uses one generation sized for it (the fused engine's filter: identical
decisions). An index kept across runs (``--index-dir``) grows like a scalable Bloom filter (Almeida, Baquero,
Preguica & Hutchison 2007): when the newest generation has taken its capacity, a new one opens with
``growth`` times the capacity and ``tightening`` times the false-positive rate; with generation 0 at
``p (1 - tightening)`` the rates sum to at most ``p``. A key is "seen" if any generation holds it; new keys
go into the newest generation.

Directory layout of a saved stack: ``stack.json`` (parameters and generations) and
``gen-000.bloom``, ``gen-001.bloom``, ... (:mod:`dedup.bloom` files).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import io
from .bloom import BloomFilter
from .params import bloom_size, whole_index_fp

STACK_FILE = "stack.json"
#: The constructor's parameters, as ``stack.json`` records them.
_PARAMS = ("fp", "base_capacity", "scalable", "seed", "growth", "tightening")
#: Bytes a band task holds per key of a chunk (keys, masks, sort arrays, seen bits), and the interpreter, Arrow
#: and numpy around it: for memory estimates.
CHUNK_BYTES_PER_KEY = 36
TASK_BASE_BYTES = 300 << 20


def chunk_keys(parts: int) -> int:
    """Keys a band task passes to one add on a filter of ``parts`` cache partitions: 4096 per part (~4096 k
    probes per part while it is in cache), at least 2^21 and at most 2^24 (75-600 MB)."""
    return min(max(4096 * parts, 1 << 21), 1 << 24)


class FilterStack:
    """Generations of Bloom filters for one band (or the exact key): ``fp`` for the whole stack, generation 0
    sized for ``capacity`` documents; ``scalable``: grow (False: one generation).

    >>> import numpy as np
    >>> stack = FilterStack(fp=1e-3, capacity=100)
    >>> keys = np.arange(5, dtype=np.uint64)
    >>> stack.add(keys, np.ones(5, dtype=bool)).tolist(), stack.add(keys[:2], np.ones(2, dtype=bool)).tolist()
    ([False, False, False, False, False], [True, True])
    """

    def __init__(self, fp: float, capacity: int, scalable: bool = False, seed: int = 0,
                 growth: float = 2.0, tightening: float = 0.5):
        self.fp, self.base_capacity, self.scalable = fp, max(int(capacity), 1), scalable
        self.seed, self.growth, self.tightening = seed, growth, tightening
        self.generations: list[BloomFilter] = []
        self.capacities: list[int] = []
        self.fps: list[float] = []
        self._open_generation()

    def _open_generation(self) -> None:
        g = len(self.generations)
        cap = math.ceil(self.base_capacity * self.growth**g)
        fp = self.fp * (1 - self.tightening) * self.tightening**g if self.scalable else self.fp
        self.generations.append(BloomFilter(*bloom_size(cap, fp), self.seed))
        self.capacities.append(cap)
        self.fps.append(fp)

    def add(self, keys: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Insert keys in order; per key, whether it was present before (False if masked)."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        mask = np.ascontiguousarray(mask, dtype=np.bool_)
        if not self.scalable:
            return self.generations[-1].add(keys, mask)
        seen = np.zeros(keys.shape[0], dtype=np.bool_)
        start = 0
        while start < keys.shape[0]:
            newest = self.generations[-1]
            room = self.capacities[-1] - newest.count
            if room <= 0:
                self._open_generation()
                continue
            # Take keys until `room` insertions have been made into the newest generation.
            idx = np.flatnonzero(mask[start:])
            stop = keys.shape[0] if idx.shape[0] <= room else start + int(idx[room - 1]) + 1
            k, m = keys[start:stop], mask[start:stop]
            old = np.zeros(k.shape[0], dtype=np.bool_)
            for gen in self.generations[:-1]:
                old |= gen.contains(k)
            fresh = newest.add(k, m & ~old)
            seen[start:stop] = (old | fresh) & m
            start = stop
        return seen

    def batch_keys(self) -> int:
        """Keys worth passing to one :meth:`add`: :func:`chunk_keys` of the newest generation."""
        return chunk_keys(self.generations[-1].parts)

    def generation_fps(self) -> list[float]:
        """Each generation's false-positive rate implied by its fill (:meth:`dedup.bloom.BloomFilter.estimated_fp`)."""
        return [gen.estimated_fp() for gen in self.generations]

    def predicted_fp(self) -> float:
        """Probability that a new unrelated key is reported seen: ``1 - prod_g (1 - p_g)``, p_g of
        :meth:`generation_fps`."""
        return whole_index_fp(self.generation_fps())

    @property
    def count(self) -> int:
        return sum(g.count for g in self.generations)

    @property
    def nbytes(self) -> int:
        return sum(g.nbytes for g in self.generations)

    def describe(self) -> dict:
        return {"generations": len(self.generations), "count": self.count, "bytes": self.nbytes,
                "predicted_fp": self.predicted_fp(), "generation_fps": self.generation_fps(),
                "bloom_versions": [gen.version for gen in self.generations]}  # 1, 2: a floor on the rate

    # -- persistence ---------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write the generations, then ``stack.json`` last (atomically), into ``directory``, made if missing but
        never its parents (FileNotFoundError: a band task whose OUT was removed meanwhile fails, not making it)."""
        directory = Path(directory)
        directory.mkdir(exist_ok=True)
        gens = []
        for i, (gen, cap, fp) in enumerate(zip(self.generations, self.capacities, self.fps)):
            name = f"gen-{i:03d}.bloom"
            gen.save(directory / name)
            gens.append({"file": name, "capacity": cap, "fp": fp, "m": gen.m, "k": gen.k, "count": gen.count,
                         "bloom_version": gen.version})
        io.write_json_atomic(directory / STACK_FILE, {"version": 1, **{k: getattr(self, k) for k in _PARAMS},
                                                      "generations": gens})

    @classmethod
    def load(cls, directory: Path) -> "FilterStack":
        """A saved stack; :class:`dedup.io.StateError` naming a damaged file."""
        directory = Path(directory)
        meta = io.read_json(directory / STACK_FILE, (*_PARAMS, "generations"))
        stack = cls.__new__(cls)
        for k in _PARAMS:
            setattr(stack, k, meta[k])
        stack.generations, stack.capacities, stack.fps = [], [], []
        for g in meta["generations"]:
            path = directory / g["file"]
            try:
                bf = BloomFilter.load(path, mmap=False)
            except (OSError, ValueError) as e:
                raise io.StateError(str(e)) from None
            versions = [g["bloom_version"]] if "bloom_version" in g else [1, 2]  # saved before it was recorded
            if (bf.m, bf.k) != (g["m"], g["k"]) or bf.version not in versions:
                raise io.StateError(f"{path}: does not match {directory / STACK_FILE}")
            stack.generations.append(bf)
            stack.capacities.append(g["capacity"])
            stack.fps.append(g["fp"])
        return stack
