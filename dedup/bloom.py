"""A Bloom filter over 64-bit keys, persisted as a memory-mappable file.

File layout (the only definition of it; little-endian). Every new filter is version 3 (probes by the
``INDEPENDENT`` rule of :mod:`dedup._kernels.bloom`); versions 1 (one part) and 2 (several), saved by earlier
memdedup versions, use the ``DOUBLE`` rule and are read, extended and saved again as they are:

====== ======= ==============================================================
offset type    field
====== ======= ==============================================================
0      8 bytes magic ``b"MDBLOOM\\x00"``
8      uint32  format version (3; earlier: 1, one part; 2, ``parts`` > 1)
12     uint32  header size in bytes (64); the bit array starts here
16     uint64  m, number of bits (a multiple of 64 x parts)
24     uint32  k, number of probes
28     uint32  parts, the number of cache partitions (version 1: reserved, 0)
32     uint64  seed mixed into every key
40     uint64  count, number of insertions made
48     16      reserved (0)
64     m/8     the bits, as uint64 words; bit x is word x >> 6, bit x & 63
====== ======= ==============================================================

Probe derivation and cache partitions: :mod:`dedup._kernels.bloom`. Sizing maths and the
number of parts (:func:`dedup.params.bloom_parts`): :mod:`dedup.params`.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np

from . import kernels as _k
from ._kernels import BLOOM_DOUBLE, BLOOM_INDEPENDENT
from .io import write_bytes_atomic
from .params import MAX_PARTS, bloom_fp, bloom_parts, bloom_size

MAGIC = b"MDBLOOM\x00"
VERSION = 3  #: the version of every filter this memdedup makes: independent probes
#: Probe rule of each format version.
RULES = {1: BLOOM_DOUBLE, 2: BLOOM_DOUBLE, VERSION: BLOOM_INDEPENDENT}
HEADER_SIZE = 64
_HEADER = struct.Struct("<8sIIQIIQQ16x")
#: Keys per kernel call (their partition sort indexes with int32); calls in turn keep the order.
_MAX_CALL = 1 << 30
assert _HEADER.size == HEADER_SIZE


def _keys(keys: np.ndarray) -> np.ndarray:
    """``keys`` as a contiguous uint64 array; a ValueError unless one-dimensional (the kernels read one key a row)."""
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    if keys.ndim != 1:
        raise ValueError(f"keys must be one-dimensional, one uint64 key each; got shape {keys.shape}")
    return keys


class BloomFilter:
    """m-bit Bloom filter (rounded up to a multiple of 64 x parts) with k >= 1 probes derived from one 64-bit
    key mixed with ``seed``. ``bits``: an existing uint64 word array (e.g. a memory map) to use in place, with
    ``count`` insertions made. ``parts``: cache partitions (:mod:`dedup._kernels.bloom`; default
    :func:`dedup.params.bloom_parts`); the false-positive rate is the parts' average, to second order a
    relative (k^2 - 2k)(ln 2)^2 / 2 / (keys per part) above one filter of m bits (the parts' binomial loads): ~86 /
    (keys per part) at k = 20, 1.2e-3 at the smallest parts a default filter has.
    ``version``: the file format, which names the probe rule (:data:`RULES`).

    >>> import numpy as np
    >>> f = BloomFilter.for_capacity(1000, 0.01, seed=7)
    >>> f.add(np.array([1, 2, 3, 2], dtype=np.uint64)).tolist()  # seen before?
    [False, False, False, True]
    >>> f.contains(np.array([3, 4], dtype=np.uint64)).tolist()
    [True, False]
    >>> f
    BloomFilter(m=9600, k=7, seed=7, count=4)
    """

    def __init__(self, m_bits: int, k: int, seed: int = 0, *, bits: np.ndarray | None = None, count: int = 0,
                 parts: int | None = None, version: int = VERSION):
        if m_bits < 64 or k < 1:
            raise ValueError(f"need m_bits >= 64 and k >= 1, got m={m_bits}, k={k}")
        self.parts = bloom_parts(m_bits) if parts is None else int(parts)
        if not 1 <= self.parts <= min(int(m_bits) // 64, MAX_PARTS):
            raise ValueError(f"need 1 <= parts <= m_bits / 64, got parts={self.parts}, m={m_bits}")
        known = type(version) is int and version in RULES  # True, 3.0: equal keys of RULES, not versions
        if not known or version < VERSION and (version == 1) != (self.parts == 1):
            raise ValueError(f"no Bloom format version {version} of {self.parts} part(s): versions 1 (one part), "
                             f"2 (several) and {VERSION}")
        self.version = version
        self.part_bits = -(-int(m_bits) // (64 * self.parts)) * 64
        self.m = self.part_bits * self.parts
        self.k = int(k)
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        if bits is None:
            bits = np.zeros(self.m // 64, dtype=np.uint64)
        elif bits.dtype != np.uint64 or bits.shape != (self.m // 64,):
            raise ValueError(f"bits must be uint64 of shape ({self.m // 64},), got {bits.dtype} {bits.shape}")
        self.bits = bits
        self.count = int(count)

    @classmethod
    def for_capacity(cls, capacity: int, fp: float, seed: int = 0) -> "BloomFilter":
        """Optimal filter for ``capacity`` keys at false-positive rate ``fp``."""
        return cls(*bloom_size(capacity, fp), seed)

    # -- operations ---------------------------------------------------------------------
    def add(self, keys: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Insert keys in order; per key, whether it was present before (keys masked False: skipped, False)."""
        keys = _keys(keys)
        mask = np.ones(keys.shape[0], dtype=np.bool_) if mask is None else np.ascontiguousarray(mask, dtype=np.bool_)
        if mask.shape != keys.shape:  # the kernel would read past its end
            raise ValueError(f"mask has shape {mask.shape}, the keys {keys.shape}: one bool per key")
        seen = np.empty(keys.shape[0], dtype=np.bool_)
        for a in range(0, keys.shape[0], _MAX_CALL):  # the kernels' sort indexes with int32
            b = a + _MAX_CALL
            self.count += _k.test_and_set_many(np.asarray(self.bits), np.uint64(self.part_bits), self.parts, self.k,
                                               np.uint64(self.seed), RULES[self.version], keys[a:b], mask[a:b],
                                               seen[a:b])
        return seen

    def part_of(self, keys: np.ndarray) -> np.ndarray:
        """The cache partition (int32, 0 .. parts-1) that holds each key."""
        keys = _keys(keys)
        out = np.zeros(keys.shape[0], dtype=np.int32)
        if self.parts > 1:
            _k.parts_of_many(keys, np.uint64(self.seed), self.parts, out)
        return out

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Membership of each key (bool array); no insertion."""
        keys = _keys(keys)
        out = np.empty(keys.shape[0], dtype=np.bool_)
        for a in range(0, keys.shape[0], _MAX_CALL):
            _k.contains_many(np.asarray(self.bits), np.uint64(self.part_bits), self.parts, self.k,
                             np.uint64(self.seed), RULES[self.version], keys[a:a + _MAX_CALL], out[a:a + _MAX_CALL])
        return out

    def union_inplace(self, other: "BloomFilter") -> "BloomFilter":
        """OR ``other`` into this filter (same m, k, seed, parts and probe rule required)."""
        mine, theirs = ((f.m, f.k, f.seed, f.parts, RULES[f.version]) for f in (self, other))
        if mine != theirs:
            raise ValueError(f"cannot merge Bloom filters with different (m, k, seed, parts, rule): {mine} vs {theirs}")
        np.bitwise_or(self.bits, other.bits, out=self.bits)
        self.count += other.count
        return self

    # -- statistics ---------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes of the bit array."""
        return self.m // 8

    def set_bits(self) -> int:
        """Number of bits set."""
        return int(_k.popcount(np.asarray(self.bits)))

    def fill_ratio(self) -> float:
        """Fraction of bits set."""
        return self.set_bits() / self.m

    def _floor(self, n: int) -> float:
        """The rate's floor under the DOUBLE probe rule (versions 1, 2): a fresh key shares its probe pair with
        one of the n keys: n_p / m_p^2 in its part, n / (m m_p) on average. 0 for independent probes."""
        return n / (self.m * self.part_bits) if RULES[self.version] == BLOOM_DOUBLE else 0.0

    def estimated_fp(self) -> float:
        """False-positive rate implied by the current fill: ``fill^k`` (plus the floor of versions 1-2)."""
        return min(1.0, self.fill_ratio() ** self.k + self._floor(self.count))

    def predicted_fp(self, n: int | None = None) -> float:
        """Predicted rate ``(1 - e^{-kn/m})^k`` after n insertions (default: count; plus versions 1-2's floor)."""
        n = self.count if n is None else n
        return min(1.0, bloom_fp(n, self.m, self.k) + self._floor(n))

    def estimated_cardinality(self) -> float:
        """Distinct keys implied by the fill (Swamidass & Baldi 2007): ``-m/k ln(1 - fill)``."""
        fill = self.fill_ratio()
        return math.inf if fill >= 1.0 else -self.m / self.k * math.log1p(-fill)

    # -- persistence --------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temporary file in the same directory, then rename)."""
        path = Path(path)
        parts = 0 if self.version == 1 else self.parts
        header = _HEADER.pack(MAGIC, self.version, HEADER_SIZE, self.m, self.k, parts, self.seed, self.count)
        write_bytes_atomic(path, header, np.ascontiguousarray(self.bits, dtype="<u8").tobytes())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = True, writable: bool = False) -> "BloomFilter":
        """Open a saved filter; with ``mmap`` the bits are a memory map (copy-on-write unless ``writable``)."""
        path = Path(path)
        try:
            with open(path, "rb") as f:
                head = f.read(HEADER_SIZE)
        except OSError as e:
            raise ValueError(f"{path}: cannot read Bloom filter: {e.strerror}") from e
        if len(head) < HEADER_SIZE or head[:8] != MAGIC:
            raise ValueError(f"{path}: not a memdedup Bloom filter (bad magic)")
        magic, version, hsize, m, k, parts, seed, count = _HEADER.unpack(head)
        if version not in RULES:
            raise ValueError(f"{path}: Bloom filter format version {version}, this memdedup reads "
                             f"{', '.join(map(str, RULES))}")
        if (version == 1) != (parts == 0) or version == 2 and parts < 2 or k < 1 or m < 64 or m % (64 * max(parts, 1)):
            raise ValueError(f"{path}: damaged Bloom filter header (version {version}, m={m}, k={k}, parts={parts})")
        if (size := path.stat().st_size) != (expected := hsize + m // 8):
            raise ValueError(f"{path}: truncated or oversized Bloom filter ({size} bytes, expected {expected})")
        bits = (np.memmap(path, dtype="<u8", mode="r+" if writable else "c", offset=hsize, shape=(m // 64,)) if mmap
                else np.fromfile(path, dtype="<u8", offset=hsize, count=m // 64))
        return cls(m, k, seed, bits=bits.view(np.uint64), count=count, parts=max(parts, 1), version=version)

    def __repr__(self) -> str:
        parts = f", parts={self.parts}" if self.parts > 1 else ""
        version = f", version={self.version}" if self.version != VERSION else ""
        return f"BloomFilter(m={self.m}, k={self.k}, seed={self.seed}, count={self.count}{parts}{version})"
