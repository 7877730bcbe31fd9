"""Step 1 of the definition in the kernels (per-code-point replacements, utf8proc for the
rest) equals Arrow's NFKC + lowercase on every document."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup._kernels import PAIR_SHIFT, TCCC
from dedup._kernels.text import canonicalize_words
from dedup.config import DedupConfig
from dedup.normalize import (
    CONTEXT_FREE,
    MARK,
    NFKC_UNSTABLE,
    SECOND,
    char_table,
    exact_key,
    prenormalize,
    replacements,
)
from dedup.sketch import Sketcher, string_buffers

# Context-free replacements (full-width, ligatures, NBSP, ellipsis, capitals, Greek
# final sigma, Kelvin sign, a code point that becomes 18), context-sensitive ones
# (combining marks of several classes that compose, reorder or stay; Indic nukta, virama
# and two-part vowels; Thai tone marks; kana voicing; Hangul jamo; a long s that NFKC
# rewrites before composing; Thai and Lao vowels NFKC splits, a Myanmar composition, Khmer
# and Myanmar viramas), and plain text around them.
PIECES = ["abc", "ABC", " ", "Ｆｕｌｌ", "ﬁ", "\u00a0", "…", "É", "ÄÖÜ", "Σ", "ς", "K", "e\u0301",
          "\u0308", "\u1100\u1161", "가", "x²", "İ", "ẞ", "Ǆ", "ﷺ", "😀", "漢",
          "\u0301", "\u0323", "\u0316", "\u0345", "\u0338", "=", "ǘ", "u", "Ü", "ſ", "\u0307", "Ｅ",
          "न", "क", "\u093c", "\u094d", "ा", "\u0b47", "\u0b3e", "\u0b57", "ท", "\u0e48", "\u0e38",
          "か", "\u3099", "\u0344", "\u0f73", "\ufffd", "ำ", "\u0e4d", "\u0eb3", "ໜ", "ဥ", "\u102e", "ဦ", "\u17d2",
          "ខ", "\u1039", "ꩻ"]
texts = st.lists(st.lists(st.sampled_from(PIECES), max_size=12).map("".join) | st.text(max_size=30), max_size=10)


@settings(deadline=None, max_examples=300)
@given(docs=texts, nfkc=st.booleans(), nulls=st.lists(st.booleans(), max_size=10))
def test_kernel_canonical_text_equals_arrow(docs, nfkc, nulls):
    """The exact key is a 128-bit hash of the canonical text, so equal keys mean equal
    canonical texts: the kernels' step 1 equals Arrow's, for words and characters."""
    docs = [None if i < len(nulls) and nulls[i] else d for i, d in enumerate(docs)]
    arr = pa.array(docs, pa.string())
    for unit in ("word", "char"):
        sk = Sketcher(DedupConfig(nfkc=nfkc, unit=unit, ngram=3, num_perm=16), 4, 4)(arr)
        for i, d in enumerate(docs):
            assert sk.valid[i] == (d is not None)
            assert sk.n_shingles[i] >= 0
            if d is not None:
                assert tuple(sk.exact[i].tolist()) == exact_key(d, nfkc), (d, unit)


def _canonical(text: str, nfkc: bool, room: int | None = None):
    data, offsets, _ = string_buffers(pa.array([text]))
    bits, cf_bit, cmap = replacements(nfkc)
    room = room or len(data) + len(data) // 2 + 2  # text._room: Han and kana get spaces beside them
    canon = np.zeros(room + 17, np.uint8)
    ws, we = np.zeros(room // 2 + 2, np.int64), np.zeros(room // 2 + 2, np.int64)
    n, w = canonicalize_words(data, offsets[0], offsets[1], char_table(), bits, cf_bit, cmap.cps, cmap.off,
                              cmap.blob, canon, ws, we)
    return n, bytes(canon[:max(n, 0)]).decode()


def test_three_routes():
    assert _canonical("Plain ASCII, text.", True) == (16, "plain ascii text")
    assert _canonical("Ｆｕｌｌ ﬁx É", True) == (len("full fix é".encode()), "full fix é")  # rewritten alone
    assert _canonical("cafe\u0301", True) == (5, "café")  # NFKC composes: in the kernel
    assert _canonical("e\u0301\u0323", True)[0] == -1  # NFKC reorders the marks: utf8proc
    assert _canonical("cafe\u0301", False) == (len("cafe\u0301".encode()), "cafe\u0301")  # no NFKC: kept
    table = char_table()
    assert table[0x0301] & NFKC_UNSTABLE and not table[0x0301] & CONTEXT_FREE and table[0x0301] & MARK
    assert table[0xFF26] & CONTEXT_FREE  # full-width F
    assert prenormalize(pa.array(["cafe\u0301"])).to_pylist() == ["café"]


def test_replacement_longer_than_the_room_is_reported():
    """U+FDFA becomes 18 code points (33 bytes from 3): with room for the input only (and the
    spaces of Han and kana), the
    canonicaliser stops with -2 instead of writing past the scratch space; the sketcher
    then grows it and gets the reference answer."""
    assert _canonical("\ufdfa", True)[0] == -2
    want = prenormalize(pa.array(["\ufdfa"])).to_pylist()[0]
    assert _canonical("\ufdfa", True, room=64)[1] == " ".join(want.split())
    sk = Sketcher(DedupConfig(num_perm=16), 4, 4)(pa.array(["a", "\ufdfa x " * 5, "b"]))
    assert tuple(sk.exact[1].tolist()) == exact_key("\ufdfa x " * 5)


def test_every_mark_after_every_kind_of_starter_equals_arrow():
    """Exhaustive over the marks the kernels handle: each MARK code point after a plain
    letter, an upper-case one, each first element of a composition pair it belongs to
    (and that element's upper and lower case), a composite with a trailing mark, another
    mark of each combining class, and a separator; twice in a row too. Documents the
    kernel gives up on (-1) go through Arrow, so what is checked is that no document the
    kernel does finish differs from Arrow, and that a mark right after a starter NFKC
    keeps (no reordering) is always finished."""
    table = char_table()
    marks = np.flatnonzero(table[:0x110000] & MARK).tolist()
    _, _, cmap = replacements(True)
    pair_keys = cmap.cps[cmap.cps >= 0x110000]
    firsts: dict[int, set[int]] = {}
    for key in pair_keys.tolist():
        firsts.setdefault(key & ((1 << PAIR_SHIFT) - 1), set()).add((key >> PAIR_SHIFT) - 1)
    by_class: dict[int, int] = {}
    for m in marks:
        by_class.setdefault(int(table[TCCC + m]), m)
    docs = []
    must_finish = []  # a mark right after a starter NFKC keeps: kept or composed in the kernel
    for m in marks:
        starters = {"a", "A", "ǘ", "=", " "} | {chr(f) for f in firsts.get(m, ())}
        starters |= {s.upper() for s in starters} | {s.lower() for s in starters}
        for s in sorted(s for s in starters if len(s) == 1):
            if not table[ord(s)] & NFKC_UNSTABLE and table[TCCC + ord(s)] <= table[TCCC + m]:
                must_finish.append(len(docs))
            docs += [f"x {s}{chr(m)} y", f"{s}{chr(m)}{chr(m)}"]
        docs += [f"a{chr(o)}{chr(m)}" for o in by_class.values()] + [f"a{chr(m)}{chr(o)}" for o in by_class.values()]
    arr = pa.array(docs)
    for unit in ("word", "char"):
        sk = Sketcher(DedupConfig(unit=unit, ngram=3, num_perm=16), 4, 4)
        got, want = [], []
        # the kernel's own step 1; Arrow's step 1, then the kernel without replacements
        for text, bits, cf_bit in ((arr, sk.bits, sk.cf_bit), (prenormalize(arr), 0, 0)):
            data, offsets, valid = string_buffers(text)
            sigs, exact = np.empty((len(docs), 16), np.uint32), np.empty((len(docs), 2), np.uint64)
            n_sh = np.empty(len(docs), np.int64)
            sk._kernel(data, offsets, valid, bits, cf_bit, sigs, exact, n_sh)
            (got if bits else want).append((exact, n_sh))
        (exact, n_sh), (want_exact, want_n) = got[0], want[0]
        assert (want_n >= 0).all()
        done = np.flatnonzero(n_sh >= 0)
        bad = done[(exact[done] != want_exact[done]).any(axis=1)]
        assert bad.size == 0, [docs[i] for i in bad[:5]]
        gave_up = [docs[i] for i in must_finish if n_sh[i] < 0]
        assert not gave_up, gave_up[:5]
    assert len(pair_keys) > 900 and all(table[m] & SECOND for m in firsts)


def test_a_one_character_edit_of_real_chinese_or_japanese_text_stays_a_near_duplicate():
    """Chinese and Japanese are written without spaces. When a "word" was a maximal run of
    word characters, each clause between two punctuation marks was one word, and one edited
    character changed up to five of a paragraph's ~15 word 5-grams: Jaccard 0.44 on the GB2312
    paragraph, missed at the default threshold 0.8. Each Han or kana code point is now a word:
    an edit changes at most 5 of the paragraph's S shingles, J >= (S - 5) / (S + 5). Real text:
    the CJK test files that ship with this Python (test/cjkencodings)."""
    import random
    import sysconfig
    from pathlib import Path

    from dedup.normalize import shingles

    files = sorted((Path(sysconfig.get_paths()["stdlib"]) / "test" / "cjkencodings").glob("*-utf8.txt"))
    texts = {f.name: f.read_text(encoding="utf-8") for f in files}
    texts = {k: t for k, t in texts.items() if sum("\u3040" <= c <= "\u30ff" or "\u4e00" <= c <= "\u9fff" for c in t) > 100}
    assert len(texts) >= 8, sorted(texts)  # GB2312, GBK, GB18030, Big5, EUC-JP, Shift-JIS, ... (not Korean's)
    rng = random.Random(0)
    for name, text in texts.items():
        i = rng.choice([i for i, ch in enumerate(text) if "\u4e00" <= ch <= "\u9fff"])
        edited = text[:i] + ("一" if text[i] != "一" else "二") + text[i + 1:]
        a, b = set(shingles(text)), set(shingles(edited))
        jaccard = len(a & b) / len(a | b)
        assert len(a) > 100 and jaccard >= (len(a) - 5) / (len(a) + 5) >= 0.9, (name, len(a), jaccard)


# Thai, Lao, Myanmar (with Extended-A and -B) and Khmer (with Khmer Symbols): the blocks of the
# scripts written without spaces whose every code point is a word by itself, by language code.
SCRIPT_BLOCKS = {"th": ((0x0E00, 0x0E7F),), "lo": ((0x0E80, 0x0EFF),),
                 "my": ((0x1000, 0x109F), (0xA9E0, 0xA9FF), (0xAA60, 0xAA7F)),
                 "km": ((0x1780, 0x17FF), (0x19E0, 0x19FF))}
LOCALE_DIR = "/usr/share/locale"


def _in_blocks(ch: str, blocks) -> bool:
    return any(lo <= ord(ch) <= hi for lo, hi in blocks)


def _catalog_paragraphs(lang: str, size: int = 400) -> dict[str, str]:
    """Real text: for each gettext catalog of ``lang`` on this machine, its translated strings
    that are mostly in the language's script, in msgid order, whitespace collapsed, joined by
    spaces into a paragraph of at least ``size`` code points (catalogs with less are left out)."""
    import gettext
    from pathlib import Path

    files = sorted((Path(LOCALE_DIR) / lang / "LC_MESSAGES").glob("*.mo"))
    if not files:
        pytest.skip(f"no gettext catalog {LOCALE_DIR}/{lang}/LC_MESSAGES/*.mo on this machine")
    paragraphs = {}
    for f in files:
        with open(f, "rb") as fh:
            catalog = gettext.GNUTranslations(fh)._catalog
        strings = []
        for msgid in sorted(k for k in catalog if isinstance(k, str) and k):
            s = catalog[msgid]
            if isinstance(s, str) and 2 * sum(_in_blocks(ch, SCRIPT_BLOCKS[lang]) for ch in s) > len(s):
                strings.append(" ".join(s.split()))
                if sum(map(len, strings)) + len(strings) > size:
                    paragraphs[f.name] = " ".join(strings)
                    break
    return paragraphs


@pytest.mark.parametrize("lang", ["th", "lo", "km", "my"])
def test_a_one_character_edit_of_real_thai_lao_khmer_or_myanmar_text_stays_a_near_duplicate(lang):
    """Thai, Lao, Khmer and Myanmar are written without spaces between words too. When a word
    was a maximal run of word characters, a clause of theirs was one word, and one edited letter
    changed up to five of a paragraph's few word 5-grams: a near duplicate missed at the default
    threshold 0.8. Each of their code points is now a word by itself, as in Chinese: an edit
    changes at most 5 of the paragraph's S shingles, J >= (S - 5) / (S + 5). Real text: each
    gettext catalog of the language that ships on this machine (/usr/share/locale)."""
    import random
    import unicodedata

    from dedup.normalize import shingles

    paragraphs = _catalog_paragraphs(lang)
    assert paragraphs, f"no catalog of {LOCALE_DIR}/{lang} holds 400 code points of its script"
    blocks = SCRIPT_BLOCKS[lang]
    first = chr(blocks[0][0] + 1)  # the script's first consonant (ก, ກ, က, ក): composes with nothing
    rng = random.Random(0)
    missed = []
    for name, text in paragraphs.items():
        # a letter of the script that NFKC neither rewrites nor composes with what follows it
        i = rng.choice([i for i, ch in enumerate(text) if _in_blocks(ch, blocks) and unicodedata.category(ch) == "Lo"
                        and unicodedata.normalize("NFKC", text[i:i + 2]) == text[i:i + 2]])
        edited = text[:i] + (first if text[i] != first else chr(ord(first) + 1)) + text[i + 1:]
        a, b = set(shingles(text)), set(shingles(edited))
        jaccard = len(a & b) / len(a | b)
        if not (len(a) > 100 and jaccard >= (len(a) - 5) / (len(a) + 5) >= 0.9):
            missed.append((name, len(a), round(jaccard, 3)))
    assert not missed, missed


def test_every_code_point_of_thai_lao_khmer_and_myanmar_is_a_word_by_itself():
    """Each word character of these blocks (letters, vowel signs, tone marks, viramas, digits)
    is a word by itself, next to ASCII letters and to itself, with NFKC and without. NFKC keeps
    the rule: it maps no code point from outside into the blocks, and the few of the blocks it
    rewrites (ำ, ຳ, ໜ, ໝ) become code points of the same block, each a word then. Every code
    point of the blocks, separators and unassigned ones too, in a few contexts: the kernels (word
    and char units) and the word regex equal the reference."""
    import unicodedata

    from dedup.normalize import canonical_text, canonical_words_batch, shingles

    blocks = [r for rs in SCRIPT_BLOCKS.values() for r in rs]
    into = [hex(c) for c in range(0x110000) if unicodedata.decomposition(chr(c)) and not _in_blocks(chr(c), blocks)
            and any(_in_blocks(x, blocks) for x in unicodedata.normalize("NFKD", chr(c)))]
    assert not into, into
    chars = [chr(c) for lo, hi in blocks for c in range(lo, hi + 1)]
    word_chars = [ch for ch in chars if unicodedata.category(ch)[0] in "LMN"]
    assert len(word_chars) > 400
    for nfkc in (True, False):
        wrong = []
        for ch in word_chars:
            parts = list(unicodedata.normalize("NFKC", ch)) if nfkc else [ch]
            assert all(_in_blocks(p, blocks) for p in parts), hex(ord(ch))
            if canonical_text(f"a{ch}{ch}b", nfkc) != " ".join(["a", *parts, *parts, "b"]):
                wrong.append(f"{ord(ch):04X}")
        assert not wrong, (nfkc, len(wrong), wrong[:10])
    docs = [f"a{ch}{ch}b {ch}ก{ch}" for ch in chars] + chars + ["ဥ\u102e", "ก\u0e48\u0e38", "\u0e31"]
    for nfkc in (True, False):
        assert canonical_words_batch(docs, nfkc) == [canonical_text(d, nfkc).split() for d in docs]
        arr = pa.array(docs)
        for unit, ngram in (("word", 3), ("char", 4)):
            sk = Sketcher(DedupConfig(nfkc=nfkc, unit=unit, ngram=ngram, num_perm=16), 4, 4)(arr)
            got = [(tuple(sk.exact[i].tolist()), int(sk.n_shingles[i])) for i in range(len(docs))]
            assert got == [(exact_key(d, nfkc), len(shingles(d, ngram, unit, nfkc))) for d in docs], (unit, nfkc)


def test_what_the_canonical_text_does_not_equate_as_the_readme_decides():
    """README, Normalisation: lowercase, not case folding (Greek final sigma, Turkish dotless i,
    sharp s); invisible format characters split words; operators are separators; without NFKC, another Unicode
    normal form (NFC, NFD) is another text."""
    from dedup.normalize import canonical_text

    assert canonical_text("ΟΔΟΣ") == "οδοσ" != canonical_text("οδος")
    assert canonical_text("KIZ") == "kiz" != canonical_text("kız")
    assert canonical_text("STRASSE") != canonical_text("straße")
    for invisible in ("\u00ad", "\u200b", "\u200d", "\u2060"):
        assert canonical_text(f"inter{invisible}national") == "inter national"
    assert canonical_text("x = a + b") == canonical_text("x = a - b") == "x a b"
    # another normal form: one text with NFKC (the default), two without it, in the kernel as in the reference
    import unicodedata

    nfc, nfd = (unicodedata.normalize(form, "le café à paris") for form in ("NFC", "NFD"))
    assert nfc != nfd and canonical_text(nfc) == canonical_text(nfd)
    assert canonical_text(nfc, nfkc=False) != canonical_text(nfd, nfkc=False)
    for nfkc in (True, False):
        sk = Sketcher(DedupConfig(nfkc=nfkc, num_perm=16), 4, 4)(pa.array([nfc, nfd]))
        assert (sk.exact[0] == sk.exact[1]).all() == nfkc


@pytest.mark.parametrize("text", [None, b"a b c", 3], ids=["None", "bytes", "int"])
def test_the_reference_functions_take_text_and_say_so(text):
    """canonical_text, shingles and exact_key of None or bytes raised AttributeError: 'NoneType' object has no
    attribute 'encode', from an Arrow helper."""
    from dedup import canonical_text, shingles

    for fn in (canonical_text, shingles, exact_key):
        with pytest.raises(TypeError, match=f"text must be str, got {type(text).__name__}"):
            fn(text)
