"""Golden vectors: the exact bits a saved index holds.

These pins exist because saved indexes depend on them: an ``--index-dir`` directory holds
Bloom filters built by earlier runs, and a later run must probe the same bit positions for
the same documents, or every earlier document is silently forgotten (no error, just missed
duplicates). The values below were computed from the code at the time they were written.
Changing any of them (the probe derivation, the seed mixing, the file layout, the
normalisation, shingling, MinHash, or the band key) is a format change: bump
``dedup.bloom.VERSION`` (and the index directory's format) so that old directories are
refused instead of misread, or read by their own rule, and only then add pins for it. The
pins of earlier versions stay: files saved by them are still read (format versions 1 and 2,
enhanced double hashing, pinned when they were current).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dedup._kernels import bloom as jit_bloom
from dedup.bloom import HEADER_SIZE, RULES, VERSION, BloomFilter
from dedup.config import DedupConfig
from dedup.index import EXACT, KEEP, LSHBloomIndex
from dedup.params import plan_index
from dedup.sketch import Sketcher

M, K, SEED = 1024, 5, 0x9E3779B97F4A7C15
KEYS = np.array([0, 1, 42, 2**63, 2**64 - 1, 12345678901234567890], dtype=np.uint64)
#: (format version, parts) -> (bit positions of KEYS in a filter of M bits, SHA-256 of its file).
PINS = {
    (VERSION, 1): ([
        4, 27, 29, 49, 78, 98, 140, 167, 198, 232, 293, 306, 332, 349, 398,
        487, 641, 732, 743, 796, 798, 799, 806, 834, 837, 869, 918, 985, 1005, 1018,
    ], "643540b5fe94469ecd2c77d8def32557adbdca0e8c03371a5e54bb6184d88f48"),
    (VERSION, 4): ([
        6, 49, 99, 121, 229, 257, 268, 280, 297, 339, 416, 455, 473, 502, 510,
        519, 531, 547, 570, 585, 588, 599, 695, 697, 711, 713, 720, 721, 763,
    ], "c77b65ed425cf595b35105a5eb6bf9ad54b89153acf0ca2968b019b4d1f3f838"),
    (1, 1): ([
        18, 88, 108, 140, 241, 250, 274, 284, 288, 328, 353, 409, 442, 492, 522,
        576, 613, 618, 716, 746, 884, 888, 891, 913, 924, 961, 967, 997, 1000, 1023,
    ], "56732aa16642429a4f5e062edf94301230c29197f668e26c20e2c40cf2ddb9a5"),
    (2, 4): ([
        28, 116, 140, 234, 255, 274, 320, 328, 376, 409, 412, 449, 488, 492, 506,
        522, 530, 544, 600, 609, 613, 618, 620, 635, 657, 698, 711, 716, 741, 753,
    ], "bf4d4e950ffddb0b9540160caa19daaeee6757b15b56cd3d923eabb294c3b745"),
}


def _positions(words: np.ndarray) -> list[int]:
    return np.flatnonzero(np.unpackbits(words.astype("<u8").view(np.uint8), bitorder="little")).tolist()


@pytest.mark.parametrize(("version", "parts"), list(PINS))
def test_bloom_bit_positions_and_file_bytes_are_pinned(tmp_path: Path, version, parts):
    """Through the filter (which may run the AOT build), its file, a reload, and the JIT kernel."""
    positions, sha256 = PINS[version, parts]
    f = BloomFilter(M, K, SEED, parts=parts, version=version)
    assert not f.add(KEYS).any()
    assert _positions(f.bits) == positions
    data = f.save(tmp_path / "f.bloom").read_bytes()
    assert len(data) == HEADER_SIZE + M // 8
    assert hashlib.sha256(data).hexdigest() == sha256
    loaded = BloomFilter.load(tmp_path / "f.bloom")
    assert (loaded.parts, loaded.version) == (parts, version)
    assert loaded.contains(KEYS).all() and _positions(np.asarray(loaded.bits)) == positions
    words = np.zeros(M // 64, dtype=np.uint64)
    jit_bloom.test_and_set_many(words, np.uint64(M // parts), parts, K, np.uint64(SEED), RULES[version], KEYS,
                                np.ones(len(KEYS), np.bool_), np.empty(len(KEYS), np.bool_))
    assert _positions(words) == positions


DOCS = [
    "The quick brown fox jumps over the lazy dog",
    "the QUICK brown fox -- jumps over the lazy dog!",  # the same canonical text: exact
    "Zürich café: ﬁne Ｆｕｌｌ width, nothing else alike",  # NFKC and non-ASCII letters
]
EXACT_KEYS = [
    (0xED714233C5A9A792, 0x5544A91C33313D7B),
    (0xED714233C5A9A792, 0x5544A91C33313D7B),
    (0x54AF0DDCCF54DEF4, 0x3CAAEA46AAEC5DB4),
]
BAND_KEYS = [
    [0x0CA7ED9BACBF25DD, 0xB356B4D188EB8453, 0xAA5D019572DA6286, 0x17CA9DF9EF584055, 0x595437ECF6A6819B,
     0x35AA32984766DF1B, 0x74DEE529D6D52A35, 0x82B5BBBA17D0FC09, 0x663181769AA9FBE6],
    [0x0CA7ED9BACBF25DD, 0xB356B4D188EB8453, 0xAA5D019572DA6286, 0x17CA9DF9EF584055, 0x595437ECF6A6819B,
     0x35AA32984766DF1B, 0x74DEE529D6D52A35, 0x82B5BBBA17D0FC09, 0x663181769AA9FBE6],
    [0xB43A6AFC2B610EAB, 0xA94E1F6AA71DC75C, 0x7CB89D8807E0B3C0, 0x0B2D980F801A66DF, 0x584F591274E1CFE6,
     0x9D3AA60010F08BB2, 0xA8B1AF143A2F727D, 0xCA09687BC7CCCF5A, 0x268E1B36C041C854],
]
FILTERS_SHA256 = "67b283eab4ef3c7ec6017360fb02c08da780e9ea4c4cccbad9e0c39fba50bced"  # format version 3


@pytest.mark.parametrize("threads", [1, 2])
def test_sketch_band_keys_and_index_filters_are_pinned(tmp_path: Path, threads):
    """Text -> canonical text -> shingles -> MinHash -> band keys -> band filters, with the
    fast scheme (the default until fss), seed 1, 5-word shingles, T=0.8, K=128: 9 bands of 13
    rows, and filters sized for 1000 documents."""
    cfg = DedupConfig(scheme="fast")
    plan = plan_index(cfg.threshold, cfg.num_perm, 1000, cfg.fp)
    assert (plan.bands, plan.rows, plan.band_bits, plan.band_k) == (9, 13, 28544, 20)
    sk = Sketcher(cfg, plan.bands, plan.rows, threads=threads)(pa.array(DOCS, pa.string()))
    assert sk.n_shingles.tolist() == [5, 5, 4]
    assert [tuple(int(x) for x in row) for row in sk.exact] == EXACT_KEYS
    assert [[int(x) for x in row] for row in sk.band_keys] == BAND_KEYS

    index = LSHBloomIndex(plan, exact_fp=cfg.exact_fp, seed=0)
    verdicts = index.process(sk, np.arange(3))
    assert verdicts.reason.tolist() == [KEEP, EXACT, KEEP]
    digest = hashlib.sha256()
    for i, f in enumerate([*index.filters, index.exact_filter]):
        digest.update(f.save(tmp_path / f"{i}.bloom").read_bytes())
    assert digest.hexdigest() == FILTERS_SHA256


FSS_BAND_KEYS = [
    [0x43312F115984B655, 0x4174C35D1B8C1CC9, 0x080A2E858A48F5F8, 0xEE9F326D8DF79780, 0x1D21D097AE2CEC86,
     0xFA0B21631C1BC1E2, 0x5174E204FF1EF917, 0x5D141BE6A8E0A6E6, 0x9ECC87A3E57D5530],
    [0x43312F115984B655, 0x4174C35D1B8C1CC9, 0x080A2E858A48F5F8, 0xEE9F326D8DF79780, 0x1D21D097AE2CEC86,
     0xFA0B21631C1BC1E2, 0x5174E204FF1EF917, 0x5D141BE6A8E0A6E6, 0x9ECC87A3E57D5530],
    [0xA0F8A87C6C9C53C8, 0x966FF3F3CCAE2D87, 0x5249E7473632E6FA, 0x897905CED72D02E6, 0x5632AD51426B0074,
     0x0E2DA18180EFD0D6, 0x979B595D66D32403, 0x109C511C075B329C, 0x0B52968DE7FCF202],
]


@pytest.mark.parametrize("threads", [1, 2])
def test_fss_band_keys_of_the_default_config_are_pinned(threads):
    """The default scheme (fss) pinned the same way, and the pins recomputed from the slow
    references: dedup.normalize.shingles, dedup.minhash.fss_reference, and the band key
    (XXH64 of the band's 13 values, little-endian uint32, seeded with the band index)."""
    import xxhash

    from dedup.minhash import fss_reference
    from dedup.normalize import shingles

    cfg = DedupConfig()
    assert cfg.scheme == "fss"
    sk = Sketcher(cfg, 9, 13, threads=threads)(pa.array(DOCS, pa.string()))
    assert [[int(x) for x in row] for row in sk.band_keys] == FSS_BAND_KEYS
    for doc, keys in zip(DOCS, FSS_BAND_KEYS):
        sig = fss_reference(shingles(doc), 128, 1).astype("<u4")
        assert [xxhash.xxh64_intdigest(sig[j * 13:(j + 1) * 13].tobytes(), j) for j in range(9)] == keys
