"""Text normalisation and shingling: the one definition, and its slow reference.

The definition (every scheme, every backend, every code path uses it):

1. Unicode NFKC (optional, on by default), then per-code-point lowercase, as Arrow's ``utf8_normalize(..., "NFKC")``
   and ``utf8_lower`` (utf8proc) define them (:func:`prenormalize`; the kernels reach the same faster:
   :func:`replacements`).
2. A *word character* is a code point whose Unicode general category (Python's :mod:`unicodedata`) is a letter
   (``L*``), a mark (``M*``: Devanagari vowel signs or combining accents do not split words) or a number (``N*``);
   every maximal run of other code points is a separator. A word is a maximal run of word characters, except in
   scripts written without spaces (:data:`SOLO_RANGES`): each Han ideograph and kana is a word by itself (as BERT's
   basic tokenizer splits CJK), and so is each word character of Thai, Lao, Khmer and Myanmar, marks included (word
   shingles are windows of n code points there). A combining mark from elsewhere after such a code point that NFKC
   does not compose (a variation selector after a Han ideograph) is then a word of its own. The *canonical text* is
   the words joined by single ASCII spaces.
3. Word shingles (default, n=5): every run of n consecutive words, as the UTF-8 bytes of those words joined by single
   spaces. A document with 1..n-1 words has one shingle, its whole canonical text; one with no words has none.
4. Character shingles (``unit="char"``): every window of n consecutive code points of the canonical text (spaces
   included), as UTF-8 bytes; a shorter canonical text is one shingle; an empty one has none.
5. The exact-duplicate key of a document is a 128-bit hash of its canonical text: ``xxh64(canonical, seed=0)`` and
   ``xxh64(canonical, seed=1)`` (two 64-bit words).

The compiled kernels in :mod:`dedup._kernels.text` implement this over Arrow buffers; the functions here are the slow,
obviously-correct reference they are tested against, and what the datasketch baseline in ``bench/`` feeds to
``MinHash.update_batch``.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ._kernels import (ASCII_MAP, CONTEXT_FREE, LOWER_CHANGES, MARK, NFKC_UNSTABLE, PAIR_SHIFT, SECOND, SOLO,
                       TABLE_SIZE, TCCC, WORD)
from .arrow import string_array

#: Code points whose properties are looked up; all others (planes 4-13 unassigned, 15-16 private use) are separators
#: NFKC and lowercasing leave alone, except the variation selectors supplement (marks) in plane 14.
_TABLE_RANGES = ((0, 0x40000), (0xE0000, 0xE1000))

#: Code points >= 0x80 that step 1 may change (:func:`replacements`; without NFKC, LOWER_CHANGES).
REPLACE_NFKC = NFKC_UNSTABLE | LOWER_CHANGES

#: The blocks of Thai, Lao, Myanmar (and Myanmar Extended-A, -B and -C, the last new in Unicode 16: no word
#: characters under older Pythons) and Khmer (and Khmer Symbols): each word character, marks included, is a word.
SOLO_SCRIPTS = ((0x0E00, 0x0E7F), (0x0E80, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x19E0, 0x19FF),
                (0xA9E0, 0xA9FF), (0xAA60, 0xAA7F), (0x116D0, 0x116FF))
#: Code point ranges whose letters and numbers are words by themselves (step 2): Han (unified ideographs and
#: extensions A-H, compatibility ideographs, iteration and number marks), Hiragana, Katakana (half-width too), the
#: kana supplements, and :data:`SOLO_SCRIPTS`, whose marks are words too (kana's voicing marks compose under NFKC).
SOLO_RANGES = tuple(sorted(SOLO_SCRIPTS + (
    (0x3005, 0x3007), (0x3021, 0x3029), (0x3038, 0x303C), (0x3041, 0x30FF), (0x31F0, 0x31FF), (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xFF66, 0xFF9F), (0x1AFF0, 0x1B16F), (0x20000, 0x323AF))))
#: The version of the word definition, recorded in index directories (:mod:`dedup.index_dir`) and run identities
#: (:mod:`dedup.runs`).
WORDS = 3
#: What each version of the word definition changed (in 1, a word was any run of word characters).
WORD_CHANGES = {
    2: "Han and kana code points became words by themselves",
    3: "Thai, Lao, Khmer and Myanmar code points became words by themselves",
}


def word_changes_since(version) -> str:
    """What the word definition changed after ``version`` (as recorded; None: version 1), for the messages that
    refuse an index or a run of an earlier one.

    Example:
        >>> word_changes_since(2)
        'words=3: Thai, Lao, Khmer and Myanmar code points became words by themselves'
    """
    since = version if isinstance(version, int) else 1
    return "; ".join(f"words={v}: {what}" for v, what in sorted(WORD_CHANGES.items()) if v > since)


@dataclass(frozen=True)
class CharMap:
    """Per-code-point replacements: ``cps`` sorted (int64), code point ``cps[j]`` becomes ``blob[off[j]:off[j+1]]``
    (UTF-8).

    The NFKC map also holds the canonical composition pairs (first, second) -> composite the kernels apply, under keys
    ``(first + 1) << PAIR_SHIFT | second`` (above every code point: they sort last). Their entry is one byte, the
    UTF-8 length of lower(first) (0: the document goes to utf8proc), then the composite's UTF-8, then its lowercase's.
    """

    cps: np.ndarray
    off: np.ndarray
    blob: np.ndarray


@functools.lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, CharMap, CharMap]:
    """(char_table, lower-of-NFKC map, lowercase map), from the start-up cache or built."""
    from . import cache

    name = f"chartables-v7-unicode-{unicodedata.unidata_version}-arrow-{pa.__version__}.npz"
    keys = ("table", "nfkc_cps", "nfkc_off", "nfkc_blob", "lower_cps", "lower_off", "lower_blob")
    arrays = [(cache.load_npz(name) or {}).get(k) for k in keys]
    if any(a is None for a in arrays) or arrays[0].shape != (TABLE_SIZE,):
        table, nfkc_map, lower_map = _build_tables()
        arrays = [table, *vars(nfkc_map).values(), *vars(lower_map).values()]
        cache.save_npz(name, dict(zip(keys, arrays)))
    return arrays[0], CharMap(*arrays[1:4]), CharMap(*arrays[4:])


def _charmap(items: list[tuple[int, bytes]]) -> CharMap:
    items.sort()
    off = np.concatenate(([0], np.cumsum([len(b) for _, b in items], dtype=np.int64)))
    blob = np.frombuffer(b"".join(b for _, b in items) + b"\0", dtype=np.uint8).copy()
    return CharMap(np.array([c for c, _ in items], dtype=np.int64), off, blob)


def _build_tables() -> tuple[np.ndarray, CharMap, CharMap]:
    """Build :func:`char_table` and the replacement maps (about a second).

    ``NFKC_UNSTABLE`` is a superset of the NFKC quick-check "No" and "Maybe" values (UAX #15): code points NFKC maps
    elsewhere alone (by Arrow's utf8proc, the engine's normaliser), combining marks (ccc != 0: may reorder or
    compose), second elements of canonical pairs and Hangul vowel/trailing jamo (may compose with what precedes), and
    code points unassigned in Python's Unicode database (maybe assigned in utf8proc's). A text with none is NFKC.

    ``CONTEXT_FREE`` marks flagged code points that are none of those context-sensitive kinds and whose NFKC form
    holds none either: lower(NFKC(text)) replaces each by lower(NFKC(c)) (Arrow's lowercase is per code point).

    ``MARK`` marks the context-sensitive code points the kernels handle themselves: assigned, not Hangul jamo,
    without a decomposition, unchanged by NFKC and by lowercasing alone. NFKC moves such a mark only when the marks
    around it are out of canonical order (the kernels compare the ``TCCC`` section's combining classes, and give up if
    so) and replaces it only when it composes with the starter before it (``SECOND`` marks, looked up in the NFKC
    map's composition pairs: Python's canonical two-part decompositions that Arrow's NFKC composes, so composition
    exclusions and version differences are Arrow's).
    """
    import pyarrow.compute as pc  # building the tables only (cached)

    table = np.zeros(TABLE_SIZE, dtype=np.uint8)
    cps = np.concatenate([np.arange(lo, hi) for lo, hi in _TABLE_RANGES])
    cps = cps[(cps < 0xD800) | (cps > 0xDFFF)]  # surrogates are not UTF-8 encodable
    chars = [chr(c) for c in cps.tolist()]
    arr = string_array(chars)
    nfkc = pc.utf8_normalize(arr, "NFKC")
    nfkc_lower = pc.utf8_lower(nfkc).to_pylist()
    lowered = pc.utf8_lower(arr)
    nfkc_changes = pc.not_equal(nfkc, arr).to_numpy(zero_copy_only=False)
    lower_changes = pc.not_equal(lowered, arr).to_numpy(zero_copy_only=False)
    nfkc, lowered = nfkc.to_pylist(), lowered.to_pylist()
    decomposed = ((ch, unicodedata.decomposition(ch).split()) for ch in chars)  # canonical pairs: no "<compat>" tag
    pairs = {(int(d[0], 16), int(d[1], 16)): ord(ch) for ch, d in decomposed if len(d) == 2 and d[0][0] != "<"}
    composes_second = {m for _, m in pairs}

    def sensitive(ch: str) -> bool:
        cp = ord(ch)
        return bool(unicodedata.combining(ch) or cp in composes_second or 0x1161 <= cp <= 0x1175
                    or 0x11A8 <= cp <= 0x11C2 or (cp >= 0x80 and unicodedata.category(ch) == "Cn"))

    nfkc_items: list[tuple[int, bytes]] = []
    lower_items: list[tuple[int, bytes]] = []
    for i, (cp, ch) in enumerate(zip(cps.tolist(), chars)):
        flags = 0
        if unicodedata.category(ch)[0] in "LMN":
            flags |= WORD
            if any(lo <= cp <= hi for lo, hi in SOLO_RANGES) and (
                    unicodedata.category(ch)[0] != "M" or any(lo <= cp <= hi for lo, hi in SOLO_SCRIPTS)):
                flags |= SOLO
        if nfkc_changes[i] or sensitive(ch):
            flags |= NFKC_UNSTABLE
        if lower_changes[i] and cp >= 0x80:
            flags |= LOWER_CHANGES
            lower_items.append((cp, lowered[i].encode("utf-8")))
        if cp >= 0x80 and flags & REPLACE_NFKC and not sensitive(ch) and not any(sensitive(o) for o in nfkc[i]):
            flags |= CONTEXT_FREE
            nfkc_items.append((cp, nfkc_lower[i].encode("utf-8")))
        if (sensitive(ch) and unicodedata.category(ch) != "Cn" and not 0x1161 <= cp <= 0x11C2
                and not unicodedata.decomposition(ch) and not nfkc_changes[i] and not lower_changes[i]):
            flags |= MARK | (SECOND if cp in composes_second else 0)
        table[cp] = flags
        nfkd = unicodedata.normalize("NFKD", ch)
        table[TCCC + cp] = unicodedata.combining(nfkd[-1]) if nfkd else 0
    for b in range(128):
        if table[b] & WORD:
            table[ASCII_MAP + b] = ord(chr(b).lower())
    nfkc_items.extend(_composition_entries(pairs, table))
    return table, _charmap(nfkc_items), _charmap(lower_items)


def _composition_entries(pairs: dict[tuple[int, int], int], table: np.ndarray) -> list[tuple[int, bytes]]:
    """Map entries of the canonical pairs (first, second MARK) that Arrow's NFKC composes (:class:`CharMap`)."""
    import pyarrow.compute as pc  # building the tables only (cached)

    cand = [(f, m, c) for (f, m), c in sorted(pairs.items()) if table[m] & SECOND]
    composed = pc.utf8_normalize(string_array([chr(f) + chr(m) for f, m, _ in cand]), "NFKC").to_pylist()
    firsts = pc.utf8_lower(string_array([chr(f) for f, _, _ in cand])).to_pylist()
    lowers = pc.utf8_lower(string_array([chr(c) for _, _, c in cand])).to_pylist()
    entries = []
    for (f, m, c), got, lf, lc in zip(cand, composed, firsts, lowers):
        if got != chr(c):
            continue  # a composition exclusion (for utf8proc): NFKC keeps the pair apart
        simple = len(lf) == 1 and len(lc) == 1 and table[f] & (WORD | SOLO) == table[c] & (WORD | SOLO)
        head = bytes([len(lf.encode("utf-8")) if simple else 0])
        entries.append((((f + 1) << PAIR_SHIFT) | m, head + chr(c).encode("utf-8") + lc.encode("utf-8")))
    return entries


def char_table() -> np.ndarray:
    """uint8 flags per code point (:data:`WORD`, :data:`NFKC_UNSTABLE`, :data:`LOWER_CHANGES`, :data:`CONTEXT_FREE`,
    :data:`MARK`, :data:`SECOND`: :func:`_build_tables`), then two sections (offsets in :mod:`dedup._kernels`): the
    128-entry ASCII map at ``ASCII_MAP`` (the lowercased byte of an ASCII word character, 0 for a separator) and, at
    ``TCCC``, each code point's trailing canonical combining class (of the last code point of its NFKD). Kept in
    memory and in the start-up cache (:mod:`dedup.cache`), keyed by the Unicode and Arrow versions.
    """
    return _tables()[0]


@functools.lru_cache(maxsize=1)
def word_regex() -> re.Pattern[str]:
    """A regex matching the words of step 2 (one code point of :data:`SOLO_RANGES` that is a word by itself, or a
    maximal run of other word characters), from the same table. The astral ranges sit behind a one-range lookahead,
    so a separator costs one test, not a scan of ~350 ranges (5x faster)."""
    flags = char_table()[:0x110000]

    def cls(mask: np.ndarray, lo_cp: int = 0, hi_cp: int = 0x10FFFF) -> str:
        d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
        runs = zip(np.flatnonzero(d == 1).tolist(), (np.flatnonzero(d == -1) - 1).tolist())
        pairs = [(max(lo, lo_cp), min(hi, hi_cp)) for lo, hi in runs if lo <= hi_cp and hi >= lo_cp]
        return "[" + "".join(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in pairs) + "]"

    run = (flags & (WORD | SOLO)) == WORD
    solo = f"(?=[\\U{SOLO_RANGES[0][0]:08x}-\\U{SOLO_RANGES[-1][1]:08x}]){cls((flags & SOLO) != 0)}"
    return re.compile(f"{solo}|(?:{cls(run, hi_cp=0xFFFF)}+|(?=[\\U00010000-\\U0010ffff]){cls(run, 0x10000)}+)+")


def canonical_words_batch(texts, nfkc: bool = True, chunk: int = 20_000) -> list[list[str]]:
    """The canonical words of many documents (nulls: none), as the reference gives them but ~20x faster (step 1 by
    Arrow over whole chunks, step 2 by :func:`word_regex`): for ground truth and the datasketch baseline."""
    if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
        texts = string_array(list(texts))
    findall = word_regex().findall
    return [findall(s) if s is not None else [] for start in range(0, len(texts), chunk)
            for s in prenormalize(texts.slice(start, chunk), nfkc).to_pylist()]


def prenormalize(texts: pa.Array, nfkc: bool = True) -> pa.Array:
    """Step 1 of the definition over a whole Arrow string array (nulls stay null)."""
    from .arrow import _compute  # not pyarrow.compute: ~30 ms per process, and most batches come here

    compute = _compute()
    if nfkc:
        texts = compute.call_function("utf8_normalize", [texts], compute.Utf8NormalizeOptions("NFKC"))
    return compute.call_function("utf8_lower", [texts])


def replacements(nfkc: bool = True) -> tuple[int, int, CharMap]:
    """What the kernels rewrite alone in step 1: ``(bits, cf_bit, map)``. A code point >= 0x80 with a flag in
    ``bits`` changes: with ``cf_bit`` too (or ``cf_bit`` 0), to its lower(NFKC(c)) (``lower(c)`` without NFKC) from
    ``map``; otherwise its document goes to Arrow's utf8proc (:func:`prenormalize`, ~50 MB/s on non-ASCII text). Code
    points without those flags are NFKC and lowercase already, except ASCII letters (:func:`char_table`'s ASCII map).
    """
    _, nfkc_map, lower_map = _tables()
    return (REPLACE_NFKC, CONTEXT_FREE, nfkc_map) if nfkc else (LOWER_CHANGES, 0, lower_map)


def canonical_text(text: str, nfkc: bool = True) -> str:
    """Reference: the canonical text of one document (steps 1 and 2).

    Example:
        >>> canonical_text("The QUICK brown fox -- jumps!")
        'the quick brown fox jumps'
        >>> canonical_text("Ｆｕｌｌ ﬁne café")
        'full fine café'
        >>> shingles("a b c d e f", ngram=5)
        [b'a b c d e', b'b c d e f']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    lowered = prenormalize(string_array([text]), nfkc)[0].as_py()
    table = char_table()
    solo = itertools.count(2)  # a new key for each code point that is a word by itself (SOLO)
    runs = itertools.groupby(lowered, key=lambda ch: next(solo) if table[ord(ch)] & SOLO else table[ord(ch)] & WORD)
    return " ".join("".join(chars) for word, chars in runs if word)


def check_shingling(ngram: int, unit: str) -> None:
    """ValueError unless ``ngram`` >= 1 and ``unit`` is ``word`` or ``char``."""
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}")
    if unit not in ("word", "char"):
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")


def word_shingles(words: list[str], ngram: int = 5, unit: str = "word") -> list[str]:
    """Steps 3 and 4 (n = ``ngram`` >= 1) on a document's canonical words, in document order (may repeat)."""
    check_shingling(ngram, unit)
    canon = " ".join(words)
    units = words if unit == "word" else canon
    if not words or len(units) < ngram:
        return [canon] if words else []
    sep = " " if unit == "word" else ""
    return [sep.join(units[i : i + ngram]) for i in range(len(units) - ngram + 1)]


def shingles(text: str, ngram: int = 5, unit: str = "word", nfkc: bool = True) -> list[bytes]:
    """Reference: the shingles of one document as UTF-8 bytes (:func:`word_shingles` of its canonical text)."""
    canon = canonical_text(text, nfkc)
    return [s.encode("utf-8") for s in word_shingles(canon.split(" ") if canon else [], ngram, unit)]


def exact_key(text: str, nfkc: bool = True) -> tuple[int, int]:
    """Reference: the 128-bit exact-duplicate key of one document, as two uint64 ints."""
    import xxhash

    canon = canonical_text(text, nfkc).encode("utf-8")
    return xxhash.xxh64_intdigest(canon, 0), xxhash.xxh64_intdigest(canon, 1)
