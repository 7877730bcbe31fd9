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
import re
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrow import string_array

#: Code points whose properties are looked up; everything above (planes 4-13 are
#: unassigned, 15-16 are private use) is a separator that NFKC and lowercasing leave
#: alone, except the variation selectors supplement (marks) in plane 14.
_TABLE_RANGES = ((0, 0x40000), (0xE0000, 0xE1000))

#: Bit flags of :func:`char_table`.
WORD = 1  #: general category L*, M* or N*
NFKC_UNSTABLE = 2  #: NFKC may change a text containing it (quick-check No or Maybe)
LOWER_CHANGES = 4  #: non-ASCII, and Arrow's utf8_lower maps it to something else
#: Code points >= 0x80 whose presence sends a document through Arrow's pre-pass.
PREPASS_NFKC = NFKC_UNSTABLE | LOWER_CHANGES
PREPASS_LOWER = LOWER_CHANGES
#: Length of :func:`char_table`: one entry per code point, then the 128-byte ASCII map.
TABLE_SIZE = 0x110000 + 128


@functools.lru_cache(maxsize=1)
def char_table() -> np.ndarray:
    """uint8 flags per code point: :data:`WORD`, :data:`NFKC_UNSTABLE`, :data:`LOWER_CHANGES`.

    Length ``0x110000 + 128``: the last 128 entries are the kernel's ASCII map, entry b
    holding the lowercased byte b for ASCII word characters and 0 for ASCII separators.

    ``NFKC_UNSTABLE`` is a superset of the Unicode NFKC quick-check "No" and "Maybe" values
    (UAX #15): code points that NFKC maps elsewhere on their own (computed with Arrow's
    utf8proc, the normaliser the engine uses), combining marks (ccc != 0, which may reorder
    or compose), second elements of canonical pairs and Hangul vowel/trailing jamo (which
    may compose with what precedes them). A text with none of them is already NFKC.
    ``LOWER_CHANGES`` is computed with Arrow's ``utf8_lower``.

    Built in well under a second, then kept in memory and in the start-up cache
    (:mod:`dedup.cache`), keyed by the Unicode and Arrow versions.
    """
    from . import cache

    name = f"chartable-v2-unicode-{unicodedata.unidata_version}-arrow-{pa.__version__}.npy"
    cached = cache.load_array(name)
    if cached is not None and cached.shape == (TABLE_SIZE,) and cached.dtype == np.uint8:
        return cached
    table = np.zeros(TABLE_SIZE, dtype=np.uint8)
    cps = np.concatenate([np.arange(lo, hi) for lo, hi in _TABLE_RANGES])
    cps = cps[(cps < 0xD800) | (cps > 0xDFFF)]  # surrogates are not UTF-8 encodable
    chars = [chr(c) for c in cps.tolist()]
    arr = string_array(chars)
    nfkc_changes = pc.not_equal(pc.utf8_normalize(arr, "NFKC"), arr).to_numpy(zero_copy_only=False)
    lower_changes = pc.not_equal(pc.utf8_lower(arr), arr).to_numpy(zero_copy_only=False)
    composes_second: set[int] = set()
    for ch in chars:
        d = unicodedata.decomposition(ch)
        if d and not d.startswith("<"):
            parts = d.split()
            if len(parts) == 2:
                composes_second.add(int(parts[1], 16))
    for i, (cp, ch) in enumerate(zip(cps.tolist(), chars)):
        flags = 0
        if unicodedata.category(ch)[0] in "LMN":
            flags |= WORD
        if (
            nfkc_changes[i]
            or unicodedata.combining(ch)
            or cp in composes_second
            or 0x1161 <= cp <= 0x1175
            or 0x11A8 <= cp <= 0x11C2
        ):
            flags |= NFKC_UNSTABLE
        if lower_changes[i] and cp >= 0x80:
            flags |= LOWER_CHANGES
        table[cp] = flags
    for b in range(128):
        if table[b] & WORD:
            table[0x110000 + b] = ord(chr(b).lower())
    cache.save_array(name, table)
    return table


@functools.lru_cache(maxsize=1)
def word_char_table() -> np.ndarray:
    """uint8 array of length 0x110000: 1 where the code point is a word character."""
    return (char_table()[:0x110000] & WORD).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def word_regex() -> re.Pattern[str]:
    """A regex matching maximal runs of word characters, built from the same table.

    The astral ranges sit behind a one-range lookahead so that a separator costs one
    big-charset test instead of a scan of the ~350 astral ranges (5x faster).
    """
    table = word_char_table()
    d = np.diff(np.concatenate(([0], table.astype(np.int8), [0])))
    runs = list(zip(np.flatnonzero(d == 1).tolist(), (np.flatnonzero(d == -1) - 1).tolist()))
    bmp = [(lo, min(hi, 0xFFFF)) for lo, hi in runs if lo <= 0xFFFF]
    astral = [(max(lo, 0x10000), hi) for lo, hi in runs if hi > 0xFFFF]

    def cls(pairs: list[tuple[int, int]]) -> str:
        return "[" + "".join(
            f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in pairs
        ) + "]"

    return re.compile(f"(?:{cls(bmp)}+|(?=[\\U00010000-\\U0010ffff]){cls(astral)}+)+")


def canonical_words_batch(texts, nfkc: bool = True, chunk: int = 20_000) -> list[list[str]]:
    """The canonical words of many documents (same as the reference, ~20x faster).

    Used where Python needs the words themselves (ground truth, the datasketch baseline);
    the dedup engine never calls it.

    Step 1 of the definition is done by Arrow over whole chunks, step 2 by a regex whose
    character class is built from :func:`dedup.normalize.word_char_table`. Nulls give
    no words.
    """
    if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
        texts = string_array(list(texts))
    findall = word_regex().findall
    out: list[list[str]] = []
    for start in range(0, len(texts), chunk):
        lowered = prenormalize(texts.slice(start, chunk), nfkc).to_pylist()
        out.extend(findall(s) if s is not None else [] for s in lowered)
    return out


def prenormalize(texts: pa.Array, nfkc: bool = True) -> pa.Array:
    """Step 1 of the definition over a whole Arrow string array (nulls stay null)."""
    if nfkc:
        texts = pc.utf8_normalize(texts, "NFKC")
    return pc.utf8_lower(texts)


def prepass(texts: pa.Array, nfkc: bool = True) -> pa.Array:
    """Step 1 where it can change something; elsewhere the text is returned unchanged.

    Documents containing a code point flagged :data:`PREPASS_NFKC` (or
    :data:`PREPASS_LOWER` without NFKC) go through :func:`prenormalize`; the others are
    already NFKC and change under lowercasing only in their ASCII letters, which the
    kernel lowercases itself. So ``ascii_lower(prepass(x)) == prenormalize(x)`` for every
    document, and most documents skip the (slow, ~75 MB/s on non-ASCII text) utf8proc pass.
    """
    from .kernels import needs_prepass
    from .sketch import string_buffers

    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    data, offsets, valid = string_buffers(texts)
    flags = np.zeros(len(texts), dtype=np.bool_)
    needs_prepass(data, offsets, valid, char_table(), PREPASS_NFKC if nfkc else PREPASS_LOWER, flags)
    if not flags.any():
        return texts
    from .arrow import bool_array

    mask = bool_array(flags)
    fixed = prenormalize(texts.filter(mask), nfkc)
    return pc.replace_with_mask(texts, mask, fixed)


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
