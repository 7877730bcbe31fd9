"""MinHash schemes and the public :func:`minhash_signatures`.

A MinHash signature (Broder 1997) of a token set A is ``sig_k(A) = min_{t in A} pi_k(h(t))``
for K permutations ``pi_k``; ``P(sig_k(A) = sig_k(B)) ~= J(A, B)``, so the fraction of equal
entries estimates the Jaccard similarity with standard error ``sqrt(J (1 - J) / K)``.

Schemes (``scheme=``):

``"fast"`` (default)
    Token hash :func:`fast_hash32`: a polynomial (Karp-Rabin) combination of the XXH64
    hashes of the token's space-separated parts, finished with the MurmurHash3 64-bit
    finaliser; then, as datasketch's affine32, the 32-bit finaliser and permutations
    ``a_k x + b_k mod 2^32`` with datasketch's parameters. Bit-identical to
    ``datasketch.MinHash(num_perm, seed, scheme="affine32", hashfunc=fast_hash32)``. Only
    the token hash differs from datasketch's default: it is ~20x cheaper than SHA-1, and
    for word n-grams each word is hashed once and the n-gram hashes roll.
``"datasketch-affine32"``
    Bit-identical to ``datasketch.MinHash(num_perm, seed, scheme="affine32")`` (SHA-1
    token hash), the datasketch >= 2.0 default.
``"datasketch-legacy"``
    Bit-identical to ``datasketch.MinHash(num_perm, seed, scheme="legacy")`` (the
    pre-2.0 ``(a h + b) mod (2^61 - 1)`` scheme).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import kernels
from ._kernels import SCHEME_AFFINE32, SCHEME_FAST, SCHEME_LEGACY

_MERSENNE = (1 << 61) - 1
_M64 = 0x9E3779B97F4A7C15
_K1 = 0x87C37B91114253D5
_K2 = 0x4CF5AD432745937F
_MASK64 = (1 << 64) - 1


def _fmix64(x: int) -> int:
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _MASK64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _MASK64
    return x ^ (x >> 33)


def part_hash(part: bytes) -> int:
    """The fast scheme's 64-bit hash of one space-free part (reference, pure Python).

    Up to 16 bytes: ``fmix64((lo * K1) ^ rotl64(hi * K2, 31) ^ len)`` with lo, hi the
    little-endian integers of bytes 0-7 and 8-15 (zero-padded), K1 = 0x87C37B91114253D5,
    K2 = 0x4CF5AD432745937F; longer parts: ``xxh64(part, seed=0)``.
    """
    import xxhash

    if len(part) > 16:
        return xxhash.xxh64_intdigest(part, 0)
    padded = bytes(part) + bytes(16 - len(part))
    lo = int.from_bytes(padded[:8], "little")
    hi = (int.from_bytes(padded[8:], "little") * _K2) & _MASK64
    hi = ((hi << 31) | (hi >> 33)) & _MASK64
    return _fmix64(((lo * _K1) & _MASK64) ^ hi ^ len(part))


def fast_hash32(token: bytes) -> int:
    """The fast scheme's 32-bit token hash (reference implementation, pure Python).

    ``low32(fmix64(sum_i part_hash(p_i) * M^(k-1-i) mod 2^64))`` where ``p_0..p_{k-1}``
    are ``token.split(b" ")`` and ``M = 0x9E3779B97F4A7C15``. Splitting on spaces lets the
    kernel hash each word of a document once and roll the n-gram hashes (Karp & Rabin 1987).
    """
    acc = 0
    for part in bytes(token).split(b" "):
        acc = (acc * _M64 + part_hash(part)) & _MASK64
    return _fmix64(acc) & 0xFFFFFFFF


@dataclass(frozen=True)
class Scheme:
    """A named MinHash scheme: its kernel code and the datasketch scheme it matches."""

    name: str
    code: int
    datasketch_scheme: str
    result_dtype: type


SCHEMES: dict[str, Scheme] = {
    "fast": Scheme("fast", SCHEME_FAST, "affine32", np.uint32),
    "datasketch-affine32": Scheme("datasketch-affine32", SCHEME_AFFINE32, "affine32", np.uint32),
    "datasketch-legacy": Scheme("datasketch-legacy", SCHEME_LEGACY, "legacy", np.uint64),
}


def get_scheme(name: str) -> Scheme:
    """Look up a scheme by name, with a helpful error."""
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(f"unknown MinHash scheme {name!r}; choose one of {', '.join(SCHEMES)}") from None


@dataclass(frozen=True)
class Permutations:
    """Permutation parameters in the dtypes the kernels take (unused ones are empty)."""

    a32: np.ndarray
    b32: np.ndarray
    a64: np.ndarray
    b64: np.ndarray

    def args(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.a32, self.b32, self.a64, self.b64


@functools.lru_cache(maxsize=32)
def permutations(scheme: str, num_perm: int, seed: int) -> Permutations:
    """datasketch's permutation parameters for (scheme, num_perm, seed), drawn the same way
    (``np.random.RandomState(seed)``), so signatures match datasketch's bit for bit."""
    s = get_scheme(scheme)
    if num_perm < 1:
        raise ValueError(f"num_perm must be >= 1, got {num_perm}")
    gen = np.random.RandomState(seed)
    empty32 = np.zeros(0, dtype=np.uint32)
    empty64 = np.zeros(0, dtype=np.uint64)
    if s.datasketch_scheme == "legacy":
        ab = np.array(
            [
                (gen.randint(1, _MERSENNE, dtype=np.uint64), gen.randint(0, _MERSENNE, dtype=np.uint64))
                for _ in range(num_perm)
            ],
            dtype=np.uint64,
        ).T
        return Permutations(empty32, empty32, np.ascontiguousarray(ab[0]), np.ascontiguousarray(ab[1]))
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return Permutations(a, b, empty64, empty64)


def minhash_signatures(
    token_sets: Sequence[Sequence[bytes]], num_perm: int = 128, seed: int = 1, scheme: str = "fast"
) -> np.ndarray:
    """MinHash signatures of token sets.

    Args:
        token_sets: n sets (any sequences) of tokens, each token ``bytes``.
        num_perm: K, the signature length.
        seed: permutation seed (datasketch's ``seed``).
        scheme: see the module docstring.

    Returns:
        (n, K) array: uint32 for "fast" and "datasketch-affine32", uint64 for
        "datasketch-legacy" (datasketch's own dtypes). An empty set gives 2^32 - 1 everywhere.

    Example:
        >>> sig = minhash_signatures([[b"a", b"b"], [b"b", b"a", b"a"]], num_perm=16)
        >>> bool((sig[0] == sig[1]).all())
        True
    """
    s = get_scheme(scheme)
    perms = permutations(scheme, num_perm, seed)
    lengths = [len(ts) for ts in token_sets]
    flat = [t for ts in token_sets for t in ts]
    for t in flat:
        if not isinstance(t, (bytes, bytearray, memoryview)):
            raise TypeError(f"tokens must be bytes, got {type(t).__name__}")
    tok_len = np.fromiter((len(t) for t in flat), dtype=np.int64, count=len(flat))
    offsets = np.zeros(len(flat) + 1, dtype=np.int64)
    np.cumsum(tok_len, out=offsets[1:])
    # 16 zero bytes of padding: the fast scheme's part hash reads 16 bytes at a time.
    data = np.frombuffer(b"".join(flat) + bytes(16), dtype=np.uint8)
    set_offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.asarray(lengths, dtype=np.int64), out=set_offsets[1:])
    out = np.empty((len(lengths), num_perm), dtype=np.uint32)
    kernels.token_set_signatures(data, offsets, set_offsets, s.code, *perms.args(), out)
    return out.astype(s.result_dtype, copy=False)


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Fraction of equal signature entries: the MinHash estimate of J(A, B)."""
    if sig_a.shape != sig_b.shape:
        raise ValueError(f"signature shapes differ: {sig_a.shape} vs {sig_b.shape}")
    return float(np.mean(sig_a == sig_b))
