"""The compiled document kernel equals the slow reference (dedup.normalize) exactly."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup.config import DedupConfig
from dedup.minhash import minhash_signatures
from dedup.normalize import canonical_text, exact_key, shingles
from dedup.sketch import Sketcher, string_buffers

# Text drawn from pieces that exercise every branch: ASCII words, separators, accents
# (precomposed and combining), full-width forms (NFKC), Devanagari marks, CJK, Thai, Lao,
# Khmer and Myanmar, emoji, ligatures, and 2-, 3- and 4-byte UTF-8.
pieces = st.sampled_from(
    ["the", "Quick", "fox", "ÉTÉ", "e\u0301t\u00e9", "ﬁne", "１２３", "नमस्ते", "दुनिया", "漢字", "😀",
     " ", "  ", ", ", "!", "\n", "\t", "--", "_", "'", "ǅ", "ß", "İ", "Σ", "x²", "\u200b",
     "中文", "ひらがな", "か\u3099", "カタカナ", "ｶﾀｶﾅ", "ﾊﾟ", "㍿", "々", "〇", "\U00020000", "한국어",
     # Thai, Lao, Khmer, Myanmar: letters, stacked marks, marks NFKC reorders (tone before vowel
     # below), code points NFKC splits in two (ำ, ຳ, ໜ), a composition after a solo starter
     # (ဥ + ီ = ဦ), digits, Khmer's zero-width space, signs and symbols, Myanmar Extended-A and -B
     "ภาษาไทย", "ที่", "น้ำ", "ก\u0e48\u0e38", "๑๒", "\u0e31", "ພາສາ", "ກຳ", "ໜ", "မြန်မာ", "ဥ\u102e", "ဦ",
     "ꩠꧠ", "ភាសា\u200bខ្មែរ", "\u17d2", "៛᧠៕"]
)
texts = st.lists(pieces, max_size=40).map("".join) | st.text(max_size=60)

TRICKY = ["", " ", "!!!", "one", "a b c d", "a b c d e", "Hello, World! Café naïve", None, "中文abc文本", "か\u3099き",
          "\u3099か", "x か\u3099\u3099 y", "㍿㍿ ﾊﾟﾊﾟ", "漢" * 200, "ภาษาไทย ที่นี่ น้ำ", "a\u0e31b\u0e48\u0e38",
          "ဥ\u102e ဥ ဦ", "ໜ ກຳ", "ភាសា\u200bខ្មែរ៕", "ก" * 200,
          "Ｆｕｌｌ width １２３", "\u0928\u092e\u0938\u094d\u0924\u0947 दुनिया", "x" * 300]


def _check(docs, unit, ngram, scheme, nfkc=True):
    cfg = DedupConfig(unit=unit, ngram=ngram, scheme=scheme, nfkc=nfkc, num_perm=32)
    sk = Sketcher(cfg, 4, 8)(pa.array(docs, pa.string()))
    for i, doc in enumerate(docs):
        if doc is None:
            assert not sk.valid[i] and sk.n_shingles[i] == 0
            continue
        ref = shingles(doc, ngram, unit, nfkc)
        assert sk.n_shingles[i] == len(ref), (doc, ref)
        want = minhash_signatures([ref], num_perm=32, seed=1, scheme=scheme)[0].astype(np.uint32)
        np.testing.assert_array_equal(sk.signatures[i], want, err_msg=repr(doc))
        assert tuple(sk.exact[i].tolist()) == exact_key(doc, nfkc)


@pytest.mark.parametrize("scheme", ["fast", "fss", "datasketch-affine32", "datasketch-legacy"])
@pytest.mark.parametrize("unit,ngram", [("word", 5), ("word", 1), ("word", 3), ("char", 1), ("char", 4)])
def test_tricky_documents(scheme, unit, ngram):
    _check(TRICKY, unit, ngram, scheme)


@settings(deadline=None, max_examples=150)
@given(docs=st.lists(texts, min_size=1, max_size=8), unit=st.sampled_from(["word", "char"]),
       ngram=st.integers(1, 6), nfkc=st.booleans(),
       scheme=st.sampled_from(["fast", "fss", "datasketch-affine32", "datasketch-legacy"]))
def test_kernel_equals_reference(docs, unit, ngram, nfkc, scheme):
    _check(docs, unit, ngram, scheme, nfkc)


def test_definition_examples():
    assert canonical_text("  Hello,   WORLD!! ") == "hello world"
    assert canonical_text("Ｆｕｌｌ１２３") == "full123"  # NFKC folds full-width forms
    assert canonical_text("e\u0301") == "é"  # NFKC composes; marks are word characters
    assert canonical_text("snake_case") == "snake case"  # underscore separates
    assert shingles("a b c", 5) == [b"a b c"]  # fewer than n words: one shingle
    assert shingles("...", 5) == []  # no words: no shingles
    # Han and kana are written without spaces: each of their code points is a word by itself
    assert canonical_text("Python（派森）语言是一种") == "python 派 森 语 言 是 一 种"
    assert canonical_text("カタカナとｶﾀｶﾅ, か\u3099") == "カ タ カ ナ と カ タ カ ナ が"  # NFKC first
    assert canonical_text("한국어 텍스트") == "한국어 텍스트"  # Hangul is written with spaces
    assert canonical_text("ｶﾀｶﾅ𚿰", nfkc=False) == "ｶ ﾀ ｶ ﾅ 𚿰"  # half-width kana and Kana Extended-B too
    # so are Thai, Lao, Khmer and Myanmar: each of their code points is a word by itself, their
    # vowel signs, tone marks and viramas too (word shingles are windows of 5 code points there)
    assert canonical_text("ภาษาไทย ที่นี่") == "ภ า ษ า ไ ท ย ท ี ่ น ี ่"
    assert canonical_text("น้ำ") == "น ้ ํ า" and canonical_text("น้ำ", nfkc=False) == "น ้ ำ"  # NFKC: ำ = ํ + า
    assert canonical_text("ພາສາລາວ") == "ພ າ ສ າ ລ າ ວ"
    assert canonical_text("ភាសា\u200bខ្មែរ") == "ភ ា ស ា ខ ្ ម ែ រ"  # the zero-width space separates too
    assert canonical_text("မြန်မာ ဥ\u102e") == "မ ြ န ် မ ာ ဦ"  # NFKC composes ဥ + ီ
    assert canonical_text("๑๒ 12 a\u0e31") == "๑ ๒ 12 a ั"  # their digits, and a mark after a Latin letter
    assert canonical_text("a\u3099") == "a\u3099"  # (kana's voicing marks are not: NFKC composes them)
    assert shingles("a b c d e f", 5) == [b"a b c d e", b"b c d e f"]
    assert shingles("ab c", 3, unit="char") == [b"ab ", b"b c"]


def test_sliced_and_large_string_arrays():
    docs = ["zero doc here", "one two three four five six", None, "seven eight"]
    cfg = DedupConfig(num_perm=16)
    whole = Sketcher(cfg, 2, 8)(pa.array(docs))
    sliced = Sketcher(cfg, 2, 8)(pa.array(docs).slice(1))
    large = Sketcher(cfg, 2, 8)(pa.array(docs, pa.large_string()))
    np.testing.assert_array_equal(whole.signatures[1:], sliced.signatures)
    np.testing.assert_array_equal(whole.signatures, large.signatures)
    data, offsets, valid = string_buffers(pa.array(docs).slice(1))
    assert valid.tolist() == [True, False, True] and offsets.shape == (4,)


def test_string_view_texts_that_need_context_sensitive_nfkc():
    """Texts NFKC must reorder (two combining marks) go through Arrow's utf8proc after a take,
    which has no string_view kernel: a string_view column (polars' Arrow IPC, a Deduplicator)
    crashed with ArrowNotImplementedError instead of giving the strings' sketches."""
    docs = ["zero", "x\u0323\u0307 au lait is nice", None, "x\u0307\u0323 au lait is nice", "other text"]
    cfg = DedupConfig(num_perm=16)
    want = Sketcher(cfg, 2, 8)(pa.array(docs))
    for typ in (pa.string_view(), pa.large_string()):
        got = Sketcher(cfg, 2, 8)(pa.array(docs, typ).slice(1))
        np.testing.assert_array_equal(want.signatures[1:], got.signatures)
        np.testing.assert_array_equal(want.exact[1:], got.exact)
    assert (want.exact[1] == want.exact[3]).all()


@pytest.mark.parametrize("start,stop", [(0, 11), (1, 11), (3, 9), (9, 11), (2, 2)])
def test_validity_from_the_bitmap_of_sliced_arrays(start, stop):
    docs = ["a", None, "b", None, "c", "d", "e", "f", "g", None, "h"]
    for typ in (pa.string(), pa.large_string(), pa.string_view()):
        arr = pa.array(docs, typ).slice(start, stop - start)
        _, _, valid = string_buffers(arr)
        assert valid.tolist() == [d is not None for d in docs[start:stop]], typ
    assert string_buffers(pa.nulls(3, pa.string()))[2].tolist() == [False] * 3


def _within_scratch_space(docs, unit, nfkc):
    """Each document canonicalised in the room :func:`dedup._kernels.text._room` gives it: the
    kernel sees the first room + 17 bytes of a larger buffer, and nothing may land past them."""
    from dedup._kernels import text as T
    from dedup.normalize import char_table, replacements

    table = char_table()
    bits, cf_bit, m = replacements(nfkc)
    for doc in docs:
        data = np.frombuffer(doc.encode(), np.uint8)
        room = int(T._room(len(data)))
        canon = np.full(room + 17 + 4096, 0xAB, np.uint8)
        starts = np.full(room + 1 + 4096, -7, np.int64)
        ends = np.full(room + 1 + 4096, -7, np.int64)
        if unit == "word":
            n, _ = T.canonicalize_words(data, 0, len(data), table, bits, cf_bit, m.cps, m.off, m.blob,
                                        canon[:room + 17], starts[:room // 2 + 2], ends[:room // 2 + 2])
            assert (starts[room // 2 + 2:] == -7).all() and (ends[room // 2 + 2:] == -7).all(), doc[:4]
        else:
            n, _ = T.canonicalize_chars(data, 0, len(data), table, bits, cf_bit, m.cps, m.off, m.blob,
                                        canon[:room + 17], starts[:room + 1])
            assert (starts[room + 1:] == -7).all(), doc[:4]
        assert (canon[room + 17:] == 0xAB).all(), (doc[:4], n, room)
        assert bytes(canon[:n]) == canonical_text(doc, nfkc).encode()


@pytest.mark.parametrize("unit", ["word", "char"])
@pytest.mark.parametrize("nfkc", [True, False])
def test_scratch_space_covers_han_and_kana_between_short_words(unit, nfkc):
    # "a漢" (4 bytes) canonicalises to "a 漢 " (6): a Han or kana code point next to a one-byte
    # word gets a space on each side, half again the input, not the third _room allowed.
    _within_scratch_space(["a漢" * 300, "漢a" * 300, "é\U00020000" * 300, "1か" * 300 + "!"], unit, nfkc)
    _check(["a漢" * 3000, "漢a" * 3000 + "ﬁ", "a㍿" * 2000, "ｶa" * 3000, "a\U00020000" * 2000], unit, 3, "fast", nfkc)


@pytest.mark.parametrize("unit", ["word", "char"])
@pytest.mark.parametrize("nfkc", [True, False])
def test_scratch_space_covers_thai_lao_khmer_and_myanmar_between_short_words(unit, nfkc):
    # Their code points are words by themselves too, letters and marks alike, all 3 bytes in
    # UTF-8 like most Han: "aก" (4 bytes) -> "a ก " (6), "a" + a mark likewise, so the worst
    # case is still half again the input. Growing replacements (ำ -> "ํ า ", 8 bytes from 3)
    # and compositions after a solo starter (ဥ + ီ -> "ဦ ") go through the sketcher's regrowth.
    _within_scratch_space(["aก" * 300, "กa" * 300, "a\u0e31" * 300, "1\u102d" * 300 + "!", "ж\u17d2" * 300,
                           "ꩠaꧠ" * 300, "\u0e48a" * 300], unit, nfkc)
    _check(["aก" * 3000, "a\u0e33" * 2000, "aໜ" * 2000, "ဥ\u102ea" * 2000, "ខ\u17d2a" * 2000], unit, 3, "fast", nfkc)
