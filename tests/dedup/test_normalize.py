"""The pre-pass shortcut equals Arrow's NFKC + lowercase on every document."""

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup.normalize import CONTEXT_FREE, NFKC_UNSTABLE, char_table, prenormalize, prepass

# Context-free replacements (full-width, ligatures, NBSP, ellipsis, capitals, Greek
# final sigma, Kelvin sign), context-sensitive ones (combining marks, Hangul jamo), and
# plain text around them.
PIECES = ["abc", "ABC", " ", "Ｆｕｌｌ", "ﬁ", "\u00a0", "…", "É", "ÄÖÜ", "Σ", "ς", "K", "e\u0301",
          "\u0308", "\u1100\u1161", "가", "x²", "İ", "ẞ", "Ǆ", "ﷺ", "😀", "漢"]
texts = st.lists(st.lists(st.sampled_from(PIECES), max_size=12).map("".join) | st.text(max_size=30), max_size=10)


def _ascii_lower(b: bytes) -> bytes:
    return bytes(c + 32 if 65 <= c <= 90 else c for c in b)


@settings(deadline=None, max_examples=300)
@given(docs=texts, nfkc=st.booleans(), nulls=st.lists(st.booleans(), max_size=10))
def test_prepass_equals_prenormalize(docs, nfkc, nulls):
    docs = [None if i < len(nulls) and nulls[i] else d for i, d in enumerate(docs)]
    arr = pa.array(docs, pa.string())
    data, offsets, valid = prepass(arr, nfkc)
    want = prenormalize(arr, nfkc).to_pylist()
    for i, w in enumerate(want):
        assert valid[i] == (w is not None)
        if w is not None:
            got = _ascii_lower(bytes(data[offsets[i]:offsets[i + 1]]))
            assert got == w.encode("utf-8"), (docs[i], got, w)


def test_all_three_routes_are_exercised():
    from dedup._kernels.text import prepass_status
    from dedup.normalize import PREPASS_NFKC
    from dedup.sketch import string_buffers

    arr = pa.array(["plain ascii", "Ｆｕｌｌ ﬁ É", "cafe\u0301"])
    data, offsets, valid = string_buffers(arr)
    status = np.zeros(3, np.int8)
    prepass_status(data, offsets, valid, char_table(), PREPASS_NFKC, CONTEXT_FREE, status)
    assert status.tolist() == [0, 1, 2]
    table = char_table()
    assert table[0x0301] & NFKC_UNSTABLE and not table[0x0301] & CONTEXT_FREE
    assert table[0xFF26] & CONTEXT_FREE  # full-width F
