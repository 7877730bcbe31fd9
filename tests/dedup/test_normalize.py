"""Step 1 of the definition in the kernels (per-code-point replacements, utf8proc for the
rest) equals Arrow's NFKC + lowercase on every document."""

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup._kernels.text import canonicalize_words
from dedup.config import DedupConfig
from dedup.normalize import CONTEXT_FREE, NFKC_UNSTABLE, char_table, exact_key, prenormalize, replacements
from dedup.sketch import Sketcher, string_buffers

# Context-free replacements (full-width, ligatures, NBSP, ellipsis, capitals, Greek
# final sigma, Kelvin sign, a code point that becomes 18), context-sensitive ones
# (combining marks, Hangul jamo), and plain text around them.
PIECES = ["abc", "ABC", " ", "Ｆｕｌｌ", "ﬁ", "\u00a0", "…", "É", "ÄÖÜ", "Σ", "ς", "K", "e\u0301",
          "\u0308", "\u1100\u1161", "가", "x²", "İ", "ẞ", "Ǆ", "ﷺ", "😀", "漢"]
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
    room = room or len(data) + 1
    canon = np.zeros(room + 17, np.uint8)
    ws, we = np.zeros(room // 2 + 2, np.int64), np.zeros(room // 2 + 2, np.int64)
    n, w = canonicalize_words(data, offsets[0], offsets[1], char_table(), bits, cf_bit, cmap.cps, cmap.off,
                              cmap.blob, canon, ws, we)
    return n, bytes(canon[:max(n, 0)]).decode()


def test_three_routes():
    assert _canonical("Plain ASCII, text.", True) == (16, "plain ascii text")
    assert _canonical("Ｆｕｌｌ ﬁx É", True) == (len("full fix é".encode()), "full fix é")  # rewritten alone
    assert _canonical("cafe\u0301", True)[0] == -1  # NFKC composes: utf8proc
    assert _canonical("cafe\u0301", False) == (len("cafe\u0301".encode()), "cafe\u0301")  # no NFKC: kept
    table = char_table()
    assert table[0x0301] & NFKC_UNSTABLE and not table[0x0301] & CONTEXT_FREE
    assert table[0xFF26] & CONTEXT_FREE  # full-width F
    assert prenormalize(pa.array(["cafe\u0301"])).to_pylist() == ["café"]


def test_replacement_longer_than_the_room_is_reported():
    """U+FDFA becomes 18 code points (33 bytes from 3): with room for the input only, the
    canonicaliser stops with -2 instead of writing past the scratch space; the sketcher
    then grows it and gets the reference answer."""
    assert _canonical("\ufdfa", True)[0] == -2
    want = prenormalize(pa.array(["\ufdfa"])).to_pylist()[0]
    assert _canonical("\ufdfa", True, room=64)[1] == " ".join(want.split())
    sk = Sketcher(DedupConfig(num_perm=16), 4, 4)(pa.array(["a", "\ufdfa x " * 5, "b"]))
    assert tuple(sk.exact[1].tolist()) == exact_key("\ufdfa x " * 5)
