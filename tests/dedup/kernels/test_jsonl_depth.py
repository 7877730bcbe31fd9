"""The JSON nesting kernel (:func:`dedup.kernels.line_depths`) against the depth of what :mod:`json` decodes."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup.kernels import line_depths

# strings full of what a naive count would take for structure: brackets, quotes, backslashes
TEXT = st.text(alphabet='{}[]"\\ax\u00e9', max_size=8)
VALUES = st.recursive(st.none() | st.integers() | TEXT,
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                      max_leaves=20)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(st.lists(VALUES, min_size=1, max_size=5))
def test_the_kernel_counts_the_nesting_json_decodes_whatever_the_strings_hold(values):
    lines = [json.dumps(v, ensure_ascii=False).encode() for v in values]
    raw = np.frombuffer(b"\n".join(lines) + b"\n", np.uint8)
    ends = np.flatnonzero(raw == 0x0A)
    starts = np.concatenate(([0], ends[:-1] + 1))
    assert line_depths(raw, starts, ends).tolist() == [_depth(v) for v in values]
    # a subset of the lines, out of their neighbours' reach
    assert line_depths(raw, starts[1:], ends[1:]).tolist() == [_depth(v) for v in values[1:]]
