"""A Bloom filter over 64-bit keys, persisted as a memory-mappable file.

File layout (version 1; the only definition of it; little-endian):

====== ======= ==============================================================
offset type    field
====== ======= ==============================================================
0      8 bytes magic ``b"MDBLOOM\\x00"``
8      uint32  format version (1)
12     uint32  header size in bytes (64); the bit array starts here
16     uint64  m, number of bits (a multiple of 64)
24     uint32  k, number of probes
28     uint32  reserved (0)
32     uint64  seed mixed into every key
40     uint64  count, number of insertions made
48     16      reserved (0)
64     m/8     the bits, as uint64 words; bit x is word x >> 6, bit x & 63
====== ======= ==============================================================

Probe derivation: :mod:`dedup._kernels.bloom`. Sizing maths: :mod:`dedup.params`.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np

from . import kernels as _k
from .params import bloom_fp, bloom_size

MAGIC = b"MDBLOOM\x00"
VERSION = 1
HEADER_SIZE = 64
_HEADER = struct.Struct("<8sIIQIIQQ16x")
assert _HEADER.size == HEADER_SIZE


class BloomFilter:
    """m-bit Bloom filter with k probes derived from one 64-bit key.

    Args:
        m_bits: number of bits (rounded up to a multiple of 64).
        k: number of probes (>= 1).
        seed: mixed into every key; filters merge only if m, k and seed agree.
        bits: optional existing uint64 word array (e.g. a memory map) to use in place.
        count: insertions already made into ``bits``.

    Example:
        >>> import numpy as np
        >>> f = BloomFilter.for_capacity(1000, 0.01, seed=7)
        >>> f.add(np.array([1, 2, 3, 2], dtype=np.uint64)).tolist()  # seen before?
        [False, False, False, True]
        >>> f.contains(np.array([3, 4], dtype=np.uint64)).tolist()
        [True, False]
        >>> f
        BloomFilter(m=9600, k=7, seed=7, count=4)
    """

    def __init__(self, m_bits: int, k: int, seed: int = 0, *, bits: np.ndarray | None = None, count: int = 0):
        if m_bits < 64 or k < 1:
            raise ValueError(f"need m_bits >= 64 and k >= 1, got m={m_bits}, k={k}")
        self.m = (int(m_bits) + 63) // 64 * 64
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
        m, k = bloom_size(capacity, fp)
        return cls(m, k, seed)

    # -- operations ---------------------------------------------------------------------
    def add(self, keys: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Insert keys in order; return, per key, whether it was present before (bool).

        Keys where ``mask`` is False are skipped (and reported False).
        """
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        if mask is None:
            mask = np.ones(keys.shape[0], dtype=np.bool_)
        seen = np.empty(keys.shape[0], dtype=np.bool_)
        self.count += _k.test_and_set_many(
            np.asarray(self.bits), np.uint64(self.m), self.k, np.uint64(self.seed), keys, np.ascontiguousarray(mask, dtype=np.bool_), seen
        )
        return seen

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Membership of each key (bool array); no insertion."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        out = np.empty(keys.shape[0], dtype=np.bool_)
        _k.contains_many(np.asarray(self.bits), np.uint64(self.m), self.k, np.uint64(self.seed), keys, out)
        return out

    def union_inplace(self, other: "BloomFilter") -> "BloomFilter":
        """OR ``other`` into this filter (same m, k and seed required)."""
        if (self.m, self.k, self.seed) != (other.m, other.k, other.seed):
            raise ValueError(
                f"cannot merge Bloom filters with different (m, k, seed): "
                f"{(self.m, self.k, self.seed)} vs {(other.m, other.k, other.seed)}"
            )
        np.bitwise_or(self.bits, other.bits, out=self.bits)
        self.count += other.count
        return self

    # -- statistics ---------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes of the bit array."""
        return self.m // 8

    def fill_ratio(self) -> float:
        """Fraction of bits set."""
        return _k.popcount(np.asarray(self.bits)) / self.m

    def estimated_fp(self) -> float:
        """False-positive rate implied by the current fill: ``fill^k``."""
        return self.fill_ratio() ** self.k

    def predicted_fp(self, n: int | None = None) -> float:
        """Predicted rate ``(1 - e^{-kn/m})^k`` after n insertions (default: count)."""
        return bloom_fp(self.count if n is None else n, self.m, self.k)

    def estimated_cardinality(self) -> float:
        """Distinct keys implied by the fill (Swamidass & Baldi 2007): ``-m/k ln(1 - fill)``."""
        fill = self.fill_ratio()
        return math.inf if fill >= 1.0 else -self.m / self.k * math.log1p(-fill)

    # -- persistence --------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temporary file in the same directory, then rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write(_HEADER.pack(MAGIC, VERSION, HEADER_SIZE, self.m, self.k, 0, self.seed, self.count))
            f.write(np.ascontiguousarray(self.bits, dtype="<u8").tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = True, writable: bool = False) -> "BloomFilter":
        """Open a saved filter; with ``mmap`` the bits are a memory map (copy-on-write
        unless ``writable``, in which case changes go to the file)."""
        path = Path(path)
        try:
            with open(path, "rb") as f:
                head = f.read(HEADER_SIZE)
        except OSError as e:
            raise ValueError(f"{path}: cannot read Bloom filter: {e.strerror}") from e
        if len(head) < HEADER_SIZE or head[:8] != MAGIC:
            raise ValueError(f"{path}: not a memdedup Bloom filter (bad magic)")
        magic, version, hsize, m, k, _r, seed, count = _HEADER.unpack(head)
        if version != VERSION:
            raise ValueError(f"{path}: Bloom filter format version {version}, this memdedup reads {VERSION}")
        expected = hsize + m // 8
        if path.stat().st_size != expected:
            raise ValueError(f"{path}: truncated or oversized Bloom filter ({path.stat().st_size} bytes, expected {expected})")
        if mmap:
            bits = np.memmap(path, dtype="<u8", mode="r+" if writable else "c", offset=hsize, shape=(m // 64,))
        else:
            bits = np.fromfile(path, dtype="<u8", offset=hsize, count=m // 64)
        return cls(m, k, seed, bits=bits.view(np.uint64), count=count)

    def __repr__(self) -> str:
        return f"BloomFilter(m={self.m}, k={self.k}, seed={self.seed}, count={self.count})"
