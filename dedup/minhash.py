"""MinHash schemes and the public :func:`minhash_signatures`.

A MinHash signature (Broder 1997) of a token set A is ``sig_k(A) = min_{t in A} pi_k(h(t))`` for K permutations
``pi_k``; ``P(sig_k(A) = sig_k(B)) ~= J(A, B)``, so the fraction of equal entries estimates the Jaccard similarity
with standard error ``sqrt(J (1 - J) / K)``.

Schemes (``scheme=``):

``"fast"`` (default)
    Token hash :func:`fast_hash32`: a polynomial (Karp-Rabin) combination of the XXH64 hashes of the token's
    space-separated parts, finished with the MurmurHash3 64-bit finaliser; then, as datasketch's affine32, the 32-bit
    finaliser and permutations ``a_k x + b_k mod 2^32`` with datasketch's parameters. Bit-identical to
    ``datasketch.MinHash(num_perm, seed, scheme="affine32", hashfunc=fast_hash32)``; the token hash is ~20x cheaper
    than SHA-1, and for word n-grams each word is hashed once and the n-gram hashes roll.
``"datasketch-affine32"``
    Bit-identical to ``datasketch.MinHash(num_perm, seed, scheme="affine32")`` (SHA-1; datasketch >= 2.0's default).
``"datasketch-legacy"``
    Bit-identical to ``datasketch.MinHash(num_perm, seed, scheme="legacy")`` (``(a h + b) mod (2^61 - 1)``).
``"fss"``
    Fast Similarity Sketching (Dahlgaard, Houen, Langhede & Thorup, FOCS 2017): one hash per token per round and
    ``~max(1, K ln K / n)`` rounds for n tokens, O(n + K log K), not O(n K). Token key ``x``: the fast scheme's 64-bit
    polynomial folded to 32 bits (:func:`fss_key`: word n-gram keys roll). Round i < K throws each token into one of K
    bins, the top bits of ``h = fmix32(x ^ s_i)``, with value ``i 2^v + (h mod 2^v)`` (v = 24 bits at K = 128:
    :func:`dedup._kernels.minhash.fss_value_bits`); each bin keeps its least value; rounds stop once no bin is empty
    (later rounds, with larger values, could change nothing). A bin b still empty after K rounds takes the least of
    ``fmix32(x ^ s_{K+b})`` over all tokens, in round K + b.

    With x -> fmix32(x ^ s_i) as fully random hashes (and up to 32-bit key clashes, probability 2^-32 per token pair,
    as for "fast"; 32-bit lanes, so a round vectorises):

    * Unbiased: ``P(sig_k(A) = sig_k(B)) = J(A, B)`` for every k (trajectories are i.i.d., so bin k's winner over
      A u B is uniform; up to equal values, probability 2^-v).
    * ``Var[J^] <= J (1 - J) / K``: bins filled in different rounds are uncorrelated, in the same round negatively
      correlated. When the first round fills every bin (n >> K ln K, ~620 at K = 128; ``K e^(-n/K)`` bins stay
      empty), ``Var[J^] = J (1 - J) / K * (|A u B| - K) / (|A u B| - 1)`` (hypergeometric). The paper proves Chernoff
      bounds for ``K J^`` like those of K independent MinHashes.
    * ``sig(A u B) = min(sig(A), sig(B))`` elementwise, exactly; order and repeats of tokens do not matter.
    * LSH banding: r bins of one band agree with probability ``prod_{j<r} (|A n B| - j) / (|A u B| - j) <= J^r``
      when the first round fills every bin (2% less at |A u B| = 1000, J = 0.8, r = 13), tending to J^r as sets
      grow; the banding is chosen as for the other schemes (:func:`dedup.params.optimal_param`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import kernels
from ._kernels import SCHEME_AFFINE32, SCHEME_FAST, SCHEME_FSS, SCHEME_LEGACY

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
    """The fast scheme's 64-bit hash of one space-free part (reference, pure Python). Up to 16 bytes:
    ``fmix64((lo * K1) ^ rotl64(hi * K2, 31) ^ len)``, lo and hi the little-endian integers of bytes 0-7 and 8-15
    (zero-padded), K1 = 0x87C37B91114253D5, K2 = 0x4CF5AD432745937F; longer parts: ``xxh64(part, seed=0)``."""
    import xxhash

    if len(part) > 16:
        return xxhash.xxh64_intdigest(part, 0)
    padded = bytes(part) + bytes(16 - len(part))
    lo = int.from_bytes(padded[:8], "little")
    hi = (int.from_bytes(padded[8:], "little") * _K2) & _MASK64
    hi = ((hi << 31) | (hi >> 33)) & _MASK64
    return _fmix64(((lo * _K1) & _MASK64) ^ hi ^ len(part))


def fast_hash32(token: bytes) -> int:
    """The fast scheme's 32-bit token hash (reference, pure Python): ``low32(fmix64(fast_poly64(token)))``; the
    split on spaces lets the kernel hash each word once and roll the n-gram hashes (Karp & Rabin 1987)."""
    return _fmix64(fast_poly64(token)) & 0xFFFFFFFF


def fast_poly64(token: bytes) -> int:
    """The fast scheme's polynomial before its finalisers (reference): ``sum_i part_hash(p_i) * M^(k-1-i) mod 2^64``,
    ``p_0..p_{k-1}`` being ``token.split(b" ")`` and ``M = 0x9E3779B97F4A7C15``."""
    acc = 0
    for part in bytes(token).split(b" "):
        acc = (acc * _M64 + part_hash(part)) & _MASK64
    return acc


def _fmix32(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & 0xFFFFFFFF
    return x ^ (x >> 16)


def fss_key(token: bytes) -> int:
    """The fss scheme's 32-bit token key (reference): ``low32(p ^ (p >> 32))`` of :func:`fast_poly64`."""
    p = fast_poly64(token)
    return (p ^ (p >> 32)) & 0xFFFFFFFF


def fss_reference(tokens: Sequence[bytes], num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """The fss scheme's signature of a token set (reference, pure Python, slow): all K rounds of the first phase
    (the kernel stops early), then round K + b for each bin b still empty.

    Example:
        >>> sig = fss_reference([b"a", b"b c"], num_perm=8)
        >>> bool((sig == minhash_signatures([[b"b c", b"a", b"a"]], num_perm=8, scheme="fss")[0]).all())
        True
    """
    K = num_perm
    seeds = [int(x) & 0xFFFFFFFF for x in permutations("fss", K, seed).a64]
    xs = sorted({fss_key(t) for t in tokens})
    if not xs:
        return np.full(K, 0xFFFFFFFF, dtype=np.uint32)
    v = 32 - (2 * K - 1).bit_length()
    vmask = (1 << v) - 1
    sig: list[int | None] = [None] * K
    for r in range(K):
        for x in xs:
            h = _fmix32(x ^ seeds[r])
            b = (h * K) >> 32
            key = (r << v) | (h & vmask)
            if sig[b] is None or key < sig[b]:
                sig[b] = key
    for b in range(K):
        if sig[b] is None:
            sig[b] = ((K + b) << v) | min(_fmix32(x ^ seeds[K + b]) & vmask for x in xs)
    return np.array(sig, dtype=np.uint32)


@dataclass(frozen=True)
class Scheme:
    """A named MinHash scheme: its kernel code and the datasketch scheme it matches ("" if none)."""

    name: str
    code: int
    datasketch_scheme: str
    result_dtype: type


SCHEMES: dict[str, Scheme] = {
    "fast": Scheme("fast", SCHEME_FAST, "affine32", np.uint32),
    "datasketch-affine32": Scheme("datasketch-affine32", SCHEME_AFFINE32, "affine32", np.uint32),
    "datasketch-legacy": Scheme("datasketch-legacy", SCHEME_LEGACY, "legacy", np.uint64),
    "fss": Scheme("fss", SCHEME_FSS, "", np.uint32),
}


def get_scheme(name: str) -> Scheme:
    """Look up a scheme by name, with a helpful error."""
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(f"unknown MinHash scheme {name!r}; choose one of {', '.join(SCHEMES)}") from None


@dataclass(frozen=True)
class Permutations:
    """Permutation parameters in the dtypes the kernels take (unused ones empty; fss's 2K round seeds in ``a64``)."""

    a32: np.ndarray
    b32: np.ndarray
    a64: np.ndarray
    b64: np.ndarray

    def args(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.a32, self.b32, self.a64, self.b64


@functools.lru_cache(maxsize=32)
def permutations(scheme: str, num_perm: int, seed: int) -> Permutations:
    """datasketch's permutation parameters for (scheme, num_perm, seed), drawn the same way
    (``np.random.RandomState(seed)``) so signatures match bit for bit; for fss, 2 * num_perm uint64 round seeds."""
    s = get_scheme(scheme)
    if num_perm < 1:
        raise ValueError(f"num_perm must be >= 1, got {num_perm}")
    gen = np.random.RandomState(seed)
    empty32, empty64 = np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.uint64)
    if s.code == SCHEME_FSS:
        return Permutations(empty32, empty32, gen.randint(0, 1 << 64, 2 * num_perm, dtype=np.uint64), empty64)
    if s.datasketch_scheme == "legacy":
        ab = np.array([(gen.randint(1, _MERSENNE, dtype=np.uint64), gen.randint(0, _MERSENNE, dtype=np.uint64))
                       for _ in range(num_perm)], dtype=np.uint64).T
        return Permutations(empty32, empty32, np.ascontiguousarray(ab[0]), np.ascontiguousarray(ab[1]))
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return Permutations(a, b, empty64, empty64)


def minhash_signatures(token_sets: Sequence[Sequence[bytes]], num_perm: int = 128, seed: int = 1,
                       scheme: str = "fast") -> np.ndarray:
    """MinHash signatures of n ``token_sets`` (sequences of ``bytes``), K = ``num_perm`` long, ``seed`` as
    datasketch's: an (n, K) array, uint64 for "datasketch-legacy", else uint32 (datasketch's own dtypes). An empty
    set gives 2^32 - 1 everywhere.

    Example:
        >>> sig = minhash_signatures([[b"a", b"b"], [b"b", b"a", b"a"]], num_perm=16)
        >>> bool((sig[0] == sig[1]).all())
        True
    """
    s = get_scheme(scheme)
    perms = permutations(scheme, num_perm, seed)
    token_sets = [list(ts) for ts in token_sets]  # read once: a generator has no second pass
    lengths = [len(ts) for ts in token_sets]
    flat = [t for ts in token_sets for t in ts]
    for t in flat:
        if not isinstance(t, (bytes, bytearray, memoryview)):
            raise TypeError(f"tokens must be bytes, got {type(t).__name__}")
    offsets = np.concatenate(([0], np.cumsum([len(t) for t in flat], dtype=np.int64)))
    # 16 zero bytes of padding: the fast scheme's part hash reads 16 bytes at a time.
    data = np.frombuffer(b"".join(flat) + bytes(16), dtype=np.uint8)
    set_offsets = np.concatenate(([0], np.cumsum(lengths, dtype=np.int64)))
    out = np.empty((len(lengths), num_perm), dtype=np.uint32)
    kernels.token_set_signatures(data, offsets, set_offsets, s.code, *perms.args(), out)
    return out.astype(s.result_dtype, copy=False)


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Fraction of equal signature entries (any array-likes of one non-empty shape): the MinHash estimate of
    J(A, B)."""
    sig_a, sig_b = np.asarray(sig_a), np.asarray(sig_b)
    if sig_a.shape != sig_b.shape or sig_a.size == 0:
        raise ValueError(f"signatures must have one non-empty shape: {sig_a.shape} vs {sig_b.shape}")
    return float(np.mean(sig_a == sig_b))
