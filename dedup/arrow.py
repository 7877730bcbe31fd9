"""Arrow arrays built straight from numpy buffers.

``pyarrow.array(...)`` imports pandas on first use when it is installed (about 0.2 s of
start-up); building arrays from buffers avoids that, and copies nothing for numbers.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_NUMERIC = {
    np.dtype(np.int8): pa.int8(),
    np.dtype(np.int16): pa.int16(),
    np.dtype(np.int32): pa.int32(),
    np.dtype(np.int64): pa.int64(),
    np.dtype(np.uint32): pa.uint32(),
    np.dtype(np.uint64): pa.uint64(),
    np.dtype(np.float64): pa.float64(),
}


def _bitmap(mask: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(np.ascontiguousarray(mask, dtype=np.bool_), bitorder="little"))


def bool_array(values: np.ndarray) -> pa.Array:
    """Boolean Arrow array (no nulls) from a numpy bool array."""
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, _bitmap(values)])


def numeric_array(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """Numeric Arrow array from a numpy array; ``valid`` (bool) marks non-null entries."""
    values = np.ascontiguousarray(values)
    typ = _NUMERIC[values.dtype]
    validity = None if valid is None or valid.all() else _bitmap(valid)
    return pa.Array.from_buffers(typ, len(values), [validity, pa.py_buffer(values)])


def string_array(values: list[str]) -> pa.Array:
    """String Arrow array (no nulls) from Python strings."""
    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def repeat_string(value: str, n: int) -> pa.Array:
    """String array holding ``value`` n times."""
    raw = value.encode("utf-8")
    offsets = (np.arange(n + 1, dtype=np.int64) * len(raw)).astype(np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)])


def take_strings(labels: list[str], codes: np.ndarray) -> pa.Array:
    """String array ``labels[codes[i]]`` (codes: small non-negative ints)."""
    return string_array(labels).take(numeric_array(np.ascontiguousarray(codes, dtype=np.int32)))
