"""Arrow arrays built straight from numpy buffers, and the few compute functions the dedup path needs, called
without importing :mod:`pyarrow.compute`.

``pyarrow.array(...)`` imports pandas when installed (~0.2 s of start-up); buffers avoid that and copy no numbers.
``filter``, ``take`` and ``cast`` import :mod:`pyarrow.compute` (~30 ms generating wrappers on every run); the same
C++ functions are reached through ``pyarrow._compute.call_function``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa

#: The large type of each view type (some Arrow kernels take no views).
UNVIEWED = {pa.string_view(): pa.large_string(), pa.binary_view(): pa.large_binary()}


def _bitmap(mask: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(np.ascontiguousarray(mask, dtype=np.bool_), bitorder="little"))


def bool_array(values: np.ndarray) -> pa.Array:
    """Boolean Arrow array (no nulls) from a numpy bool array."""
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, _bitmap(values)])


def numeric_array(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """Numeric Arrow array from a numpy integer or float array; ``valid`` (bool) marks non-null entries."""
    values = np.ascontiguousarray(values)
    validity = None if valid is None or valid.all() else _bitmap(valid)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [validity, pa.py_buffer(values)])


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
    return take(string_array(labels), np.ascontiguousarray(codes, dtype=np.int32))


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
#: Where the 32 hex digits of a UUID go in its 36-character form (8-4-4-4-12, hyphens between).
_UUID_DIGITS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def uuid_strings(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A UUID array (``pa.uuid()``: 16 raw bytes each) as its canonical strings, nulls kept.

    Example:
        >>> import uuid
        >>> uuid_strings(pa.array([uuid.UUID(int=1).bytes, None], pa.uuid())).to_pylist()
        ['00000000-0000-0000-0000-000000000001', None]
    """
    if isinstance(values, pa.ChunkedArray):
        return pa.chunked_array([uuid_strings(c) for c in values.chunks], pa.string())
    raw, n = values.storage, len(values)
    octets = np.frombuffer(raw.buffers()[1] or b"", dtype=np.uint8)  # (an empty array may have no data buffer)
    octets = octets[raw.offset * 16:(raw.offset + n) * 16].reshape(n, 16)
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    text[:, _UUID_DIGITS[0::2]], text[:, _UUID_DIGITS[1::2]] = _HEX[octets >> 4], _HEX[octets & 15]
    valid = _compute().call_function("is_valid", [raw]).to_numpy(zero_copy_only=False)
    offsets = (np.arange(n + 1, dtype=np.int64) * 36).astype(np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None if valid.all() else _bitmap(valid), pa.py_buffer(offsets),
                                                  pa.py_buffer(text.tobytes())])


def _compute():
    try:
        import pyarrow._compute as compute  # the C++ bindings alone
    except ImportError:  # a pyarrow that moved them: the public module has the same calls
        import pyarrow.compute as compute
    return compute


def filter_rows(batch: pa.RecordBatch, keep: np.ndarray) -> pa.RecordBatch:
    """The rows of ``batch`` where ``keep`` (numpy bool, one per row) is True. Columns some Arrow versions cannot
    filter (view types, also nested) are filtered as their large counterparts (:func:`_without_views`) and cast
    back, so the schema is the input's; a sliced one copied first (pyarrow 26 casts a slice of a struct holding a
    struct<null> or list<null> to an invalid array, and the filter then aborts the process)."""
    mask = bool_array(keep)
    try:
        return _compute().call_function("filter", [batch, mask])
    except pa.ArrowNotImplementedError:
        cols = []
        for col in batch.columns:
            try:
                cols.append(_compute().call_function("filter", [col, mask]))
            except pa.ArrowNotImplementedError:
                wide = _without_views(col.type)
                col = pa.concat_arrays([col]) if col.offset else col  # pyarrow 26 casts a sliced struct<null> wrong
                cols.append(cast(_compute().call_function("filter", [cast(col, wide), mask]), col.type))
        return pa.RecordBatch.from_arrays(cols, schema=batch.schema)


def _without_views(t: pa.DataType) -> pa.DataType:
    """``t`` with every string_view / binary_view in it, however nested, made large_string / large_binary (an
    extension type stored as one, ``pa.json_(pa.string_view())``: its storage so made).

    Example:
        >>> _without_views(pa.struct([("a", pa.list_(pa.string_view())), ("b", pa.int8())]))
        StructType(struct<a: list<item: large_string>, b: int8>)
    """
    if t in UNVIEWED:
        return UNVIEWED[t]
    if isinstance(t, pa.BaseExtensionType):
        return t if (wide := _without_views(t.storage_type)) == t.storage_type else wide
    if pa.types.is_map(t):
        return pa.map_(t.key_field.with_type(_without_views(t.key_type)),
                       t.item_field.with_type(_without_views(t.item_type)), t.keys_sorted)
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_without_views(f.type)) for f in t])
    if pa.types.is_fixed_size_list(t):
        return pa.list_(t.value_field.with_type(_without_views(t.value_type)), t.list_size)
    if pa.types.is_large_list(t) or pa.types.is_list(t):
        make = pa.large_list if pa.types.is_large_list(t) else pa.list_
        return make(t.value_field.with_type(_without_views(t.value_type)))
    return t


def without_null_dictionary_values(col: pa.Array) -> pa.Array:
    """``col`` with every dictionary in it whose values hold a null, which Arrow allows but its Parquet writer
    refuses, encoded again without it: the same type, the same values (a row pointing to it null). At the top level,
    in structs and in lists and list views (a dictionary elsewhere, in a map or a fixed-size list, is left as it is).

    Example:
        >>> d = pa.DictionaryArray.from_arrays(pa.array([0, 1], pa.int8()), pa.array(["x", None]))
        >>> e = without_null_dictionary_values(d)
        >>> e.type == d.type, e.dictionary.to_pylist(), e.to_pylist()
        (True, ['x'], ['x', None])
    """
    if not holds_type(col.type, pa.types.is_dictionary) or \
            not any(d.dictionary.null_count for d in leaf_arrays(col, pa.types.is_dictionary)):
        return col
    return _null_values_dropped(col)


def _null_values_dropped(col: pa.Array) -> pa.Array:
    """:func:`without_null_dictionary_values`, rebuilding every dictionary, struct and list on the way."""
    col = pa.concat_arrays([col]) if col.offset else col  # (a null bitmap with sliced offsets: not supported)
    t, mask = col.type, col.is_null() if col.null_count else None
    if pa.types.is_dictionary(t):
        valid = col.dictionary.is_valid().to_numpy(zero_copy_only=False)
        index = pa.array(np.cumsum(valid) - 1, mask=~valid).cast(t.index_type)  # old index -> new, null: null
        return pa.DictionaryArray.from_arrays(index.take(col.indices), col.dictionary.filter(valid), ordered=t.ordered)
    if pa.types.is_struct(t):
        fields = [_null_values_dropped(col.field(i)) for i in range(t.num_fields)]
        return pa.StructArray.from_arrays(fields, fields=list(t), mask=mask)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return type(col).from_arrays(col.offsets, _null_values_dropped(col.values), type=t, mask=mask)
    if pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return type(col).from_arrays(col.offsets, col.sizes, _null_values_dropped(col.values), type=t, mask=mask)
    return col


def take(values: pa.Array, indices: np.ndarray) -> pa.Array:
    """``values[indices]`` (numpy integer indices, bounds-checked)."""
    return _compute().call_function("take", [values, numeric_array(indices)])


def cast(values: pa.Array, to: pa.DataType, check_utf8: bool = True) -> pa.Array:
    """``values.cast(to)``, safe (ArrowInvalid on a lossy cast); ``check_utf8=False``: bytes to strings unchecked."""
    compute = _compute()
    options = compute.CastOptions.safe(to)
    options.allow_invalid_utf8 = not check_utf8
    return compute.call_function("cast", [values], options)


def min_max(values: pa.Array | pa.ChunkedArray) -> tuple[object, object]:
    """(smallest, largest) value of a numeric array, nulls skipped ((None, None) if none).

    Example:
        >>> min_max(pa.chunked_array([[3, None, -2], [7]]))
        (-2, 7)
    """
    result = _compute().call_function("min_max", [values]).as_py()
    return result["min"], result["max"]


def inner_types(t: pa.DataType) -> list[pa.DataType]:
    """The types directly inside ``t``: an extension's storage, a dictionary's values, list items, struct fields, a
    map's entries."""
    if isinstance(t, pa.BaseExtensionType):
        return [t.storage_type]
    if pa.types.is_dictionary(t):
        return [t.value_type]
    return [t.field(i).type for i in range(t.num_fields)]


def holds_type(t: pa.DataType, found: Callable[[pa.DataType], bool]) -> bool:
    """Whether ``t`` or a type at any depth inside it (:func:`inner_types`) is one ``found`` says.

    >>> holds_type(pa.list_(pa.struct([("d", pa.date64())])), pa.types.is_date64)
    True
    """
    return found(t) or any(holds_type(inner, found) for inner in inner_types(t))


def leaf_arrays(values: pa.Array | pa.ChunkedArray,
                found: Callable[[pa.DataType], bool]) -> Iterator[pa.Array]:
    """The arrays of a type ``found`` says inside ``values`` (itself included), at any depth: the rows lists and
    structs hold (``flatten``: a null parent's children are null), a map's keys and items, a dictionary's values, an
    extension's storage."""
    for arr in values.chunks if isinstance(values, pa.ChunkedArray) else [values]:
        t = arr.type
        if found(t):
            yield arr
        elif isinstance(t, pa.BaseExtensionType):
            yield from leaf_arrays(arr.storage, found)
        elif pa.types.is_dictionary(t):
            yield from leaf_arrays(arr.dictionary, found)
        elif pa.types.is_map(t):
            yield from leaf_arrays(arr.keys, found)
            yield from leaf_arrays(arr.items, found)
        elif pa.types.is_struct(t):
            for child in arr.flatten():
                yield from leaf_arrays(child, found)
        elif t.num_fields == 1 and hasattr(arr, "flatten"):  # the list types
            try:
                flat = arr.flatten()
            except pa.ArrowNotImplementedError:  # 'MakeBuilder: cannot construct builder for type extension<...>'
                flat = None  # only where none is left: every list null or empty
            if flat is None or not len(flat):  # (list views flatten to a new empty array, without its dictionaries)
                flat = arr.values.slice(0, 0)
            yield from leaf_arrays(flat, found)
