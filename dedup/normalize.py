"""Text normalisation and shingling: the one definition, and its slow reference.

The definition (every scheme, every backend, every code path uses it):

1. Unicode NFKC (optional, on by default), then per-code-point lowercase. Both are done
   by Arrow's vectorised kernels (``pyarrow.compute.utf8_normalize(..., "NFKC")`` and
   ``utf8_lower``, i.e. utf8proc's mappings), once per batch, with no Python object per
   document.
2. A *word character* is a code point whose Unicode general category is a letter
   (``L*``), a mark (``M*``, so that Devanagari vowel signs or combining accents do not
   split words) or a number (``N*``), as reported by Python's :mod:`unicodedata`.
   Every maximal run of other code points is a separator. The *canonical text* is the
   words joined by single ASCII spaces, with no leading or trailing space.
3. Word shingles (default, n=5): every run of n consecutive words, as the UTF-8 bytes of
   those words joined by single spaces. A document with 1..n-1 words has exactly one
   shingle: its whole canonical text. A document with no words has no shingles.
4. Character shingles (``unit="char"``): every window of n consecutive code points of the
   canonical text (spaces included), as UTF-8 bytes; a canonical text shorter than n code
   points is one shingle; an empty one has none.
5. The exact-duplicate key of a document is a 128-bit hash of its canonical text:
   ``xxh64(canonical, seed=0)`` and ``xxh64(canonical, seed=1)`` (two 64-bit words).

The compiled kernels in :mod:`dedup._kernels.text` implement this over Arrow buffers;
the functions here are the slow, obviously-correct reference they are tested against,
and what the datasketch baseline in ``bench/`` feeds to ``MinHash.update_batch``.
"""

from __future__ import annotations

import functools
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrow import string_array

#: Code points whose category is looked up; everything above (planes 4-13 are
#: unassigned, 15-16 are private use) is a separator, except the variation
#: selectors supplement (marks) in plane 14.
_TABLE_RANGES = ((0, 0x40000), (0xE0000, 0xE1000))


@functools.lru_cache(maxsize=1)
def word_char_table() -> np.ndarray:
    """uint8 array of length 0x110000: 1 where the code point is a word character.

    Built from :mod:`unicodedata` (Unicode version ``unicodedata.unidata_version``) in
    about 0.2 s, then kept in memory and in the start-up cache (:mod:`dedup.cache`).
    """
    from . import cache

    name = f"wordchars-unicode-{unicodedata.unidata_version}.npy"
    cached = cache.load_array(name)
    if cached is not None and cached.shape == (0x110000,) and cached.dtype == np.uint8:
        return cached
    table = np.zeros(0x110000, dtype=np.uint8)
    for lo, hi in _TABLE_RANGES:
        for cp in range(lo, hi):
            if unicodedata.category(chr(cp))[0] in "LMN":
                table[cp] = 1
    cache.save_array(name, table)
    return table


def prenormalize(texts: pa.Array, nfkc: bool = True) -> pa.Array:
    """Step 1 of the definition over a whole Arrow string array (nulls stay null)."""
    if nfkc:
        texts = pc.utf8_normalize(texts, "NFKC")
    return pc.utf8_lower(texts)


def canonical_text(text: str, nfkc: bool = True) -> str:
    """Reference: the canonical text of one document (steps 1 and 2)."""
    lowered = prenormalize(string_array([text]), nfkc)[0].as_py()
    table = word_char_table()
    words: list[str] = []
    current: list[str] = []
    for ch in lowered:
        if table[ord(ch)]:
            current.append(ch)
        elif current:
            words.append("".join(current))
            current = []
    if current:
        words.append("".join(current))
    return " ".join(words)


def shingles(text: str, ngram: int = 5, unit: str = "word", nfkc: bool = True) -> list[bytes]:
    """Reference: the shingles of one document, in document order (may repeat).

    Args:
        text: the raw document.
        ngram: n, the shingle length in words (``unit="word"``) or code points
            (``unit="char"``); must be >= 1.
        unit: ``"word"`` or ``"char"``.
        nfkc: apply NFKC before lowercasing.

    Returns:
        The shingles as UTF-8 bytes (steps 3 and 4 of the module definition).
    """
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}")
    canon = canonical_text(text, nfkc)
    if not canon:
        return []
    if unit == "word":
        units = canon.split(" ")
    elif unit == "char":
        units = list(canon)
    else:
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
    if len(units) < ngram:
        return [canon.encode("utf-8")]
    sep = " " if unit == "word" else ""
    return [sep.join(units[i : i + ngram]).encode("utf-8") for i in range(len(units) - ngram + 1)]


def exact_key(text: str, nfkc: bool = True) -> tuple[int, int]:
    """Reference: the 128-bit exact-duplicate key of one document, as two uint64 ints."""
    import xxhash

    canon = canonical_text(text, nfkc).encode("utf-8")
    return xxhash.xxh64_intdigest(canon, 0), xxhash.xxh64_intdigest(canon, 1)
