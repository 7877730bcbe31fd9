"""Input shards: formats, validation and batched reading.

Inputs are Parquet, JSON Lines (``.jsonl``, ``.ndjson``, ``.json``, each also ``.gz`` or ``.zst``) and Arrow IPC
files (``.arrow``: the IPC *stream* format Hugging Face ``datasets`` writes, or the IPC *file* format, told apart by
the first bytes); :func:`dedup.runs.discover` decides which files a run reads, in which order. Every problem raises
:class:`InputError`, naming the file and, where it applies, the line (JSONL, 1-based) or row (Parquet, 0-based).

Columns:

* The text column must exist, once (two would leave the text a guess), and hold strings, UTF-8 bytes, or only nulls.
* The id column is read as strings (:func:`id_strings`). Named explicitly (``id_column_required``), it must exist, once,
  and be convertible, or the file is refused. The default ``"id"`` is optional: absent, the ids are null; not readable
  as one string per row (a struct, two columns of that name), it is ignored (null ids, :attr:`ShardReader.id_ignored`
  says why, an :class:`InputWarning` names the file), though still copied to the kept shard.
* Other columns are copied to the kept shard as they are, duplicated names included.

JSON Lines: every line that is not blank is one row holding one JSON object (:mod:`dedup.jsonl`'s rules, so the rows
read are the lines :func:`count_rows` counts), of any length up to Arrow's 2 GiB block. A top-level field whose JSON
type changes over the file (an object on one line, a string on another, also deep inside it; null goes with any,
integers and fractions are numbers) is read as text (:func:`dedup.jsonl.values_as_text`: a string as itself, any other
value as its JSON text as written) and an :class:`InputWarning` names it; the text column, whose values are strings or
null, is refused naming the first line that holds anything else.

JSON numbers are never rounded (float64 holds integers exactly only up to 2^53). A top-level column holding an
integer beyond int64 (a uint64 hash id, say) is read as uint64 when every number
in it, over the whole file, is an integer in [0, 2^64), else as strings: each number's JSON text as written (``"-1"``,
``"2.5"``); so is an int64 column whose integers beyond 2^53 fractions elsewhere in it would round (float64). Other
columns keep Arrow's types. An integer beyond 2^53 inside a list or object is refused with its line, unless its
column is read as text (its type changes over the file).
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
import shlex
import warnings
import zlib
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import jsonl
from .arrow import UNVIEWED, cast, holds_type, inner_types, leaf_arrays, min_max, uuid_strings

#: Input file suffix (lowercase; none is a suffix of another) -> (format, compression).
SUFFIXES = {".parquet": ("parquet", None), ".pq": ("parquet", None), ".arrow": ("arrow", None)} | {
    base + ext: ("jsonl", comp) for base in (".jsonl", ".ndjson", ".json")
    for ext, comp in (("", None), (".gz", "gzip"), (".zst", "zstd"))}


class InputError(ValueError):
    """A problem with one input file (and row or line)."""

    def __init__(self, path: str | os.PathLike, message: str, *, row: int | None = None, line: int | None = None):
        self.path, self.message, self.row, self.line = str(path), message, row, line
        where = f"line {line}: " if line is not None else f"row {row}: " if row is not None else ""
        super().__init__(f"{self.path}: {where}{message}")

    def __reduce__(self):  # survives pickling (errors raised on Dask workers)
        return functools.partial(InputError, row=self.row, line=self.line), (self.path, self.message)


@dataclass(frozen=True)
class Shard:
    """One input file: absolute ``path``; ``name`` in outputs (relative to the inputs' common directory);
    ``fmt`` ``"parquet"``, ``"jsonl"`` or ``"arrow"``; ``compression`` None, ``"gzip"`` or ``"zstd"`` (JSONL only)."""

    path: Path
    name: str
    fmt: str
    compression: str | None = None

    @property
    def stem(self) -> str:
        """``name`` without its format suffix (e.g. ``a/part-0`` for ``a/part-0.jsonl.gz``)."""
        suf = next((suf for suf in SUFFIXES if self.name.lower().endswith(suf)), "")
        return self.name[: len(self.name) - len(suf)]


def format_of(path: Path) -> tuple[str, str | None] | None:
    """(format, compression) named by the file's suffix, or None for other files.

    Example:
        >>> format_of(Path("data-00000-of-00001.arrow")), format_of(Path("a.jsonl.gz")), format_of(Path("x.csv"))
        (('arrow', None), ('jsonl', 'gzip'), None)
    """
    return next((f for suf, f in SUFFIXES.items() if path.name.lower().endswith(suf)), None)


def is_plain_json(path: Path) -> bool:
    """Whether ``path`` is an uncompressed ``.json`` file, often a manifest or a config, which directory walks skip
    (:func:`dedup.runs.discover`); ``.json.gz`` and ``.json.zst`` (Dolma, RedPajama-v2, Spark) are JSON Lines data."""
    return path.name.lower().endswith(".json")


#: How a Git LFS pointer file starts (git-lfs docs/spec.md); a pointer is smaller than 1024 bytes.
_LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"


def is_lfs_pointer(path: Path) -> bool:
    """Whether ``path`` is a Git LFS pointer file (what a clone without Git LFS holds for each data file)."""
    try:
        if path.stat().st_size >= 1024:
            return False
        with open(path, "rb") as f:
            return f.read(len(_LFS_POINTER)) == _LFS_POINTER
    except OSError:
        return False


class InputWarning(UserWarning):
    """Something in an input file was skipped rather than refused (the message says what)."""


def _duplicated(names: list[str], name: str) -> str | None:
    n = names.count(name)
    return f"column {name!r} appears {n} times; columns are {names}" if n > 1 else None


def _check_columns(shard: Shard, schema: pa.Schema, text_column: str, id_column: str | None, id_required: bool) -> str | None:
    """Check the text and id columns (module docstring); return why the id column is ignored (None: read, or absent)."""
    names = schema.names
    if problem := text_column_problem(schema, text_column):
        bad = _text_line_problem(shard, text_column) if shard.fmt == "jsonl" and text_column in names else None
        raise InputError(shard.path, bad[1], line=bad[0]) if bad else InputError(shard.path, problem)
    if not id_column or id_column not in names:
        if id_required and id_column:
            raise InputError(shard.path, f"no id column {id_column!r}; columns are {names}")
        return None
    problem = _duplicated(names, id_column)
    if problem is None and not _castable_to_string(schema.field(id_column).type):
        problem = f"column {id_column!r} has type {schema.field(id_column).type}, which cannot be read as strings"
    if problem is not None and id_required:
        raise InputError(shard.path, f"id {problem}")
    return problem


def text_column_problem(schema: pa.Schema, text_column: str) -> str | None:
    """Why ``schema`` has no text column to read (missing, twice, or not strings), or None."""
    names = schema.names
    if text_column not in names:
        return f"no text column {text_column!r}; columns are {names}"
    if dup := _duplicated(names, text_column):
        return f"text {dup}; column names must be unique"
    return text_type_problem(schema.field(text_column).type, text_column)


#: The string type that reads each binary type's bytes as text.
_AS_TEXT = {pa.binary(): pa.string(), pa.large_binary(): pa.large_string(), pa.binary_view(): pa.string_view()}
_STRINGS = {pa.string(), pa.large_string(), pa.string_view()}


def text_type_problem(t: pa.DataType, text_column: str) -> str | None:
    """Why a column of type ``t`` cannot be the text column (strings, bytes read as UTF-8 text,
    either dictionary-encoded, or all null), or None."""
    t = t.value_type if pa.types.is_dictionary(t) else t
    if t in _STRINGS or t in _AS_TEXT or pa.types.is_null(t):
        return None
    return f"text column {text_column!r} has type {t}, expected a string type (or binary holding UTF-8)"


def _decoded(col: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A dictionary-encoded column decoded (one of views by way of its large type: Arrow has no take kernel for
    views); any other column as it is."""
    if pa.types.is_dictionary(col.type) and col.type.value_type in UNVIEWED:
        col = cast(col, pa.dictionary(col.type.index_type, UNVIEWED[col.type.value_type]))
    return cast(col, col.type.value_type) if pa.types.is_dictionary(col.type) else col


def text_strings(col: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A text column as strings: dictionary-encoded strings decoded, all-null as string nulls,
    bytes as strings not yet checked to be UTF-8 (:func:`first_invalid_utf8` checks them)."""
    col = _decoded(col)
    if col.type in _AS_TEXT:
        col = cast(col, _AS_TEXT[col.type], check_utf8=False)
    return pa.nulls(len(col), pa.string()) if pa.types.is_null(col.type) else col


def first_invalid_utf8(texts: pa.Array | pa.ChunkedArray) -> tuple[int | None, Exception] | None:
    """None if ``texts`` is valid, UTF-8 included (the kernels assume it); else (index, error) of the first text that
    is not UTF-8, or (None, Arrow's error) if none is."""
    try:
        texts.validate(full=True)  # several GB/s
        return None
    except pa.ArrowInvalid as exc:
        return _first_undecodable(texts) or (None, exc)


def _first_undecodable(values: pa.Array | pa.ChunkedArray) -> tuple[int, UnicodeDecodeError] | None:
    for i, raw in enumerate(cast(values, pa.large_binary()).to_pylist()):
        try:
            if raw is not None:
                raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return i, e
    return None


def _castable_to_string(t: pa.DataType) -> bool:  # (nested and interval types are not)
    try:
        cast(pa.nulls(0, t), pa.string())
        return True
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return False


#: Bytes of JSON text parsed at a time: a JSONL shard is read in pieces of whole lines of about this size
#: (a longer line is one piece), so memory follows this, not the file.
JSONL_CHUNK_BYTES = 32 << 20
#: Why zstd's decoder refuses a frame as needing "too much memory": its window (its own limit, 2^27).
_ZSTD_WINDOW = ("compressed with a zstd window beyond 128 MiB (zstd --long=28 or more), which zstd does not decode "
                "by default; recompress it: zstd -dc --long=31 FILE | zstd -o NEW")


#: Why pyarrow opens no file holding a 128-bit integer column, a type it has not ('Integers with more than 64 bits
#: not implemented'): not damage, and (pyarrow naming none) no column named.
_INT128 = ("holds a column of 128-bit integers (polars' Int128), a type pyarrow has not, so it opens no part of the "
           "file; cast it where the file is written (to Int64, Decimal(38, 0) or String)")


def _unopened(e: Exception, what: str) -> str:
    """Why a Parquet or Arrow IPC file could not be opened (``what``: what is said of it otherwise)."""
    return _INT128 if "more than 64 bits" in str(e) else f"{what}: {e}"


def _text_line_problem(shard: Shard, text_column: str) -> tuple[int, str] | None:
    """(line, reason) of the first line of the JSON Lines ``shard`` whose ``text_column`` is neither a string nor
    null (or that is no JSON object), or None."""
    problems = (jsonl.first_problem(piece, line, text_column) for line, piece, _ in _jsonl_pieces(shard))
    return next(filter(None, problems), None)


def _decompressed(shard: Shard, block_bytes: int | None = None) -> Iterator[bytes]:
    """The bytes of ``shard`` decompressed, in blocks of ``block_bytes`` (None: :data:`JSONL_CHUNK_BYTES`): the one
    decoding of JSON Lines files (the reader's and :func:`head_texts`'). Where Arrow's gzip decoder (which reads a
    zlib stream too) fails, as on zero
    bytes after the stream (padding some archivers and writers leave), Python's gzip decompresses the file again
    and goes on from there: it skips zero bytes (between members too) and refuses anything else (other bytes after
    the stream, a damaged one)."""
    done, block_bytes = 0, block_bytes or JSONL_CHUNK_BYTES
    try:
        with pa.input_stream(str(shard.path), compression=shard.compression) as raw:
            while block := raw.read(block_bytes):
                done += len(block)
                yield block
    except OSError:
        if shard.compression != "gzip":
            raise
        with gzip.open(shard.path) as f:
            f.seek(done)
            while block := f.read(block_bytes):
                yield block


def _lines(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """The lines in the bytes ``blocks`` (without their line feeds; a last one without its own too), in time linear
    in their length however long a line is."""
    head: list[bytes] = []  # the start of a line, from the blocks before
    for block in blocks:
        *whole, tail = block.split(b"\n")
        if whole:
            yield b"".join([*head, whole[0]])
            yield from whole[1:]
            head = []
        head.append(tail)
    if last := b"".join(head):
        yield last


def _jsonl_pieces(shard: Shard) -> Iterator[tuple[int, bytes, jsonl.Lines]]:
    """(first line number, bytes, :func:`dedup.jsonl.scan` of them) of consecutive pieces of the decompressed file,
    each whole lines ending in a line feed, blank pieces skipped; InputError if it cannot be read or decompressed."""
    line, rest = 1, b""
    try:
        blocks = _decompressed(shard)
        # (at the end, a last line without its line feed is given one)
        while block := next(blocks, b"") or (rest and b"\n"):
            buf = rest + block
            cut = buf.rfind(b"\n") + 1
            piece, rest = buf[:cut], buf[cut:]
            if jsonl.has_content(piece):
                yield line, piece, jsonl.scan(piece, line == 1)
            line += piece.count(b"\n")
    except (OSError, EOFError, zlib.error, pa.ArrowException) as e:
        why = _ZSTD_WINDOW if shard.compression == "zstd" and "too much memory" in str(e) else e
        raise InputError(shard.path, f"unreadable: {why}") from e


def _jsonl_line_of_row(shard: Shard, row: int) -> int | None:
    seen = 0
    for line, _, lines in _jsonl_pieces(shard):
        if row < seen + lines.rows:
            return line + lines.line_of_row(row - seen)
        seen += lines.rows
    return None


_MAX_BLOCK = (1 << 31) - 1  # the largest JSON block Arrow accepts (an int32)
#: Arrow's report of a field whose JSON type changes within a block (its row counts from 0).
_TYPE_CHANGE = re.compile(r"Column\((.*)\) changed from (\w+) to (\w+) in row (\d+)")
_EXACT_TYPES = {"uint64": pa.uint64(), "string": pa.string()}


def _magnitude(values: pa.Array | pa.ChunkedArray) -> float:
    lo, hi = min_max(values)
    return max(abs(lo or 0.0), abs(hi or 0.0))


def _stamps_as_strings(t: pa.DataType) -> pa.DataType | None:
    """The type that reads the timestamps inside a column of type ``t`` (as Arrow inferred it from JSON) as the
    strings they were, leaving out the rest, or None: ``struct<a: timestamp, b: int64>`` -> ``struct<a: string>``."""
    if pa.types.is_timestamp(t):
        return pa.string()
    if pa.types.is_struct(t):
        fields = [pa.field(f.name, s) for f in t if (s := _stamps_as_strings(f.type)) is not None]
        return pa.struct(fields) if fields else None
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and (s := _stamps_as_strings(t.value_type)) is not None:
        return pa.list_(s)
    return None



def _depth(t: pa.DataType) -> int:  # (without recursion)
    deepest, todo = 0, [(t, 1)]
    while todo:
        t, depth = todo.pop()
        deepest = max(deepest, depth)
        todo += [(t.field(i).type, depth + (1 if pa.types.is_struct(t) else 2)) for i in range(t.num_fields)]
    return deepest


def _floating_at(t: pa.DataType, path: jsonl.Path) -> bool:
    """Whether the value at ``path`` inside a column of type ``t`` is a float (or unknown)."""
    for key in path:
        if key is None and (pa.types.is_list(t) or pa.types.is_large_list(t)):
            t = t.value_type
        elif key is not None and pa.types.is_struct(t) and t.get_field_index(key) >= 0:
            t = t.field(key).type
        else:
            return True
    return pa.types.is_floating(t)


def _valid(col: pa.ChunkedArray) -> bool:
    try:
        col.validate(full=True)
        return True
    except pa.ArrowInvalid:
        return False


def _nulls_rebuilt(arr: pa.Array) -> pa.Array:
    """``arr`` (offset 0) with each array of nulls inside (a list<null>'s items, an object's field of type null)
    rebuilt to its length: pyarrow 26's JSON reader, and its casts of such arrays, make them shorter than the list's
    offsets or the object's length say (``[null, null]``; ``{"a": [null, {"b": null}]}`` cast to reorder fields),
    failing validation. An object without fields (``{}``) is kept as it is: rebuilt from no children, it would have no
    rows."""
    t, mask = arr.type, arr.is_null() if arr.null_count else None
    if pa.types.is_struct(t) and t.num_fields:
        return pa.StructArray.from_arrays([pa.nulls(len(arr)) if pa.types.is_null(f.type) else _nulls_rebuilt(
            arr.field(i)) for i, f in enumerate(t)], fields=list(t), mask=mask)
    if pa.types.is_list(t):
        nulls = pa.types.is_null(t.value_type)
        values = pa.nulls(arr.offsets[-1].as_py()) if nulls else _nulls_rebuilt(arr.values)
        return pa.ListArray.from_arrays(arr.offsets, values, type=t, mask=mask)
    return arr


def _column_of(field: str, line: bytes) -> str:
    """The top-level key of ``line`` (the JSON object where Arrow saw the change) that Arrow's ``field`` lies in:
    Arrow joins the keys with ``/`` (``[]`` for a list's items) without escaping them, so ``/a/b`` is ``{"a/b": ..}``
    or ``{"a": {"b": ..}}``; the key whose value holds the rest of the path."""
    def holds(value: object, rest: str) -> bool:
        if not rest:
            return True
        if isinstance(value, list):
            return rest.startswith("/[]") and any(holds(v, rest[3:]) for v in value)
        return isinstance(value, dict) and any(holds(v, rest[len(k) + 1:]) for k, v in value.items()
                                               if rest == f"/{k}" or rest.startswith(f"/{k}/"))

    obj = json.loads(line.decode("utf-8").lstrip("\ufeff"))
    return next((k for k, v in obj.items() if holds({k: v}, field)), field.split("/")[1])


#: How a JSON array file of each suffix is read for ``jq`` (:meth:`_JsonlFile._bad_line`).
_ARRAY_CATS = ((".json", ""), (".json.gz", "zcat"), (".json.zst", "zstdcat"))


class _TypeChange(Exception):
    """Columns (``args``) whose JSON type changes within the file: to be read as text."""


class _JsonlFile:
    """A JSON Lines shard read in pieces (:data:`JSONL_CHUNK_BYTES`), with one schema for the whole file.

    The first pass parses every piece with Arrow, notes the fields Arrow would make timestamps (read as the strings
    they are) and the columns whose numbers it would round, and unifies the pieces' schemas (permissive: null -> any,
    int -> double, new columns); a column whose type changes within a piece or between pieces joins :attr:`mixed`
    and the pass starts again. :meth:`batches` parses the pieces again (a file of one piece: only where the schema
    names exact types) and conforms each to the schema: memory of one piece. Numbers cost one Python parse of a piece
    only where Arrow produced a float of magnitude 2^53 or more (or, inside a list or object, an int64 that the
    file's schema makes a float64).
    """

    def __init__(self, shard: Shard, empty_columns: tuple[str, ...]):
        self.shard, self.empty_columns = shard, empty_columns
        self.mixed: frozenset[str] = frozenset()  # columns read as text (their JSON type changes)
        while True:
            try:
                return self._settle_schema()
            except _TypeChange as e:
                self.mixed |= set(e.args)

    def _settle_schema(self) -> None:
        self.as_strings = pa.schema([])  # explicit types reading date-like strings (Arrow: timestamps) as strings
        self.exact: dict[str, pa.DataType] = {}  # columns read exactly (uint64 or string), not as Arrow's own type
        numbers: dict[str, jsonl.Numbers] = defaultdict(jsonl.Numbers)
        schemas = []
        self.order: list[str] | None = None  # the first piece's columns as Arrow read them alone (explicit ones first)
        self.num_rows = 0
        refused = None  # (line, why) of the first integer a float64 would round inside a list or object
        big_inside: dict[str, list[int]] = defaultdict(list)  # column -> first lines of pieces with such an int64
        self._only = None  # a file of one piece whose parse needs no types this pass settles: kept for batches()
        for line, piece, table in self._parsed():
            bad = self._note_numbers(numbers, line, piece, table, big_inside)
            refused = refused or bad
            schemas.append(table.schema)
            self.num_rows += table.num_rows
            self._only = (line, piece, table) if not schemas[1:] else None
        if self.num_rows == 0:
            self.schema = pa.schema([(c, pa.string()) for c in self.empty_columns])
            return
        try:
            self.schema = pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            mixed = []
            for name in dict.fromkeys(n for s in schemas for n in s.names):
                try:
                    pa.unify_schemas([pa.schema([s.field(name)]) for s in schemas if name in s.names],
                                     promote_options="permissive")
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    mixed += [] if name in self.mixed else [name]
            if self.empty_columns[0] in mixed:  # the text column: refused naming its line, as within one piece
                if (bad := _text_line_problem(self.shard, self.empty_columns[0])) is not None:
                    raise InputError(self.shard.path, bad[1], line=bad[0])
            if mixed:
                raise _TypeChange(*mixed) from None
            raise InputError(self.shard.path, f"a column changes type within the file: {e}") from e
        if refused is not None:  # (only now: a column whose type changes in a later piece is read as text instead)
            raise InputError(self.shard.path, refused[1], line=refused[0])
        self.exact = {c: _EXACT_TYPES[t] for c, n in numbers.items() if (t := n.exact_type())}
        names = list(dict.fromkeys(self.order + self.schema.names))
        self.schema = pa.schema([pa.field(n, self.exact[n]) if n in self.exact else self.schema.field(n) for n in names],
                                metadata=self.schema.metadata)
        self._refuse_rounded_inside(big_inside)
        self._only = None if self.exact else self._only

    def _refuse_rounded_inside(self, big_inside: dict[str, list[int]]) -> None:
        """Refuse, naming its line, an integer beyond 2^53 inside a list or object that a piece read as an int64
        but the file's schema holds as a float64 (a fraction there in another piece): the cast would round it."""
        rounding = {c for c in big_inside if holds_type(self.schema.field(c).type, pa.types.is_floating)}
        pieces = sorted({line for c in rounding for line in big_inside[c]})
        for line, piece, _ in _jsonl_pieces(self.shard) if pieces else ():
            if line in pieces:
                bad = jsonl.number_texts(piece, line, set(), rounding,
                                         lambda c, path: _floating_at(self.schema.field(c).type, path))[2]
                if bad is not None:
                    raise InputError(self.shard.path, bad[1], line=bad[0])

    def _note_numbers(self, numbers: dict[str, jsonl.Numbers], line: int, piece: bytes, table: pa.Table,
                      big_inside: dict[str, list[int]]) -> tuple[int, str] | None:
        """Add what ``table`` (the piece as Arrow reads it) says about its numbers to ``numbers``, and ``line`` to
        ``big_inside`` of each column with an int64 beyond 2^53 inside a list or object; look at the JSON text only
        where Arrow may have rounded. Return the (line, why) of an integer inside a list or object that Arrow read as
        a float64 and rounded, or None."""
        top, nested = set(), set()
        for f in table.schema:
            col = table.column(f.name)
            if pa.types.is_integer(f.type):
                for v in min_max(col):
                    if v is not None:
                        numbers[f.name].add_int(v)
            elif pa.types.is_floating(f.type):
                if _magnitude(col) >= jsonl.EXACT_IN_DOUBLE:
                    top.add(f.name)
                else:  # float64 without an integer beyond int64: a fraction or an exponent is there
                    numbers[f.name].fraction = True
            elif pa.types.is_nested(f.type):
                if any(_magnitude(v) >= jsonl.EXACT_IN_DOUBLE for v in leaf_arrays(col, pa.types.is_floating)):
                    nested.add(f.name)
                if any(_magnitude(v) > jsonl.EXACT_IN_DOUBLE for v in leaf_arrays(col, pa.types.is_integer)):
                    big_inside[f.name].append(line)
        if top or nested:
            _, found, bad = jsonl.number_texts(piece, line, top, nested,
                                               lambda c, path: _floating_at(table.schema.field(c).type, path))
            for c, n in found.items():
                numbers[c].merge(n)
            return bad
        return None

    def _parse(self, piece: bytes, types: dict[str, pa.DataType] | None = None) -> pa.Table:
        """``piece`` as Arrow reads it, as one block, with the file's explicit types and ``types``."""
        import pyarrow.json as pj
        explicit = {**dict(zip(self.as_strings.names, self.as_strings.types)), **(types or {})}
        explicit.update({c: t for c, t in self.exact.items() if t == pa.uint64()})  # Arrow parses these exactly
        explicit.update(dict.fromkeys(self.mixed, pa.string()))
        piece, keys = jsonl.values_as_text(piece, self.mixed) if self.mixed else (piece, None)
        schema = pa.schema(sorted(explicit.items()))
        opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer") if explicit else None
        # The piece as one block: Arrow (26) infers each block's types alone and, where a field's type changes
        # between blocks, crashes or loses the value; within a block it reports the change and its row. One block is
        # parsed by one thread: Arrow's pool only adds a hand-off (1.5x the time of a 32 MiB piece, 10x of a small one).
        read = pj.ReadOptions(block_size=min(len(piece) + 1, _MAX_BLOCK), use_threads=False)
        table = pj.read_json(pa.BufferReader(piece), parse_options=opts, read_options=read)
        return table.select([k for k in keys if k in table.column_names]) if keys else table

    def _parsed(self) -> Iterator[tuple[int, bytes, pa.Table]]:
        """(first line, bytes, table) of each piece, checked to hold one JSON object per line that is not blank
        (:mod:`dedup.jsonl`): Arrow's rows are the lines."""
        for line, piece, lines in _jsonl_pieces(self.shard):
            if lines.suspect:  # before Arrow: pyarrow 26 crashes (SIGSEGV) on a piece that starts with null
                # and on a line nested 20,000 levels deep (:data:`dedup.jsonl.MAX_DEPTH`)
                raise self._bad_line(piece, line, lines, "a line that is not a JSON object")
            try:
                table = self._parse(piece)
                self.order = self.order or table.column_names
                max_depth = jsonl.PARQUET_MAX_DEPTH
                if deep := next(((f.name, n) for f in table.schema if (n := _depth(f.type)) > max_depth), None):
                    raise InputError(self.shard.path, f"column {deep[0]!r} is nested {deep[1]} levels deep (in the "
                                     f"piece from line {line}); {jsonl.TOO_DEEP}")
                stamped = [pa.field(f.name, s) for f in table.schema if (s := _stamps_as_strings(f.type)) is not None]
                if stamped:
                    self.as_strings = pa.unify_schemas([self.as_strings, pa.schema(stamped)])
                    table = self._parse(piece)
                # Arrow does not check that strings are UTF-8 (the text column's own check names it), and pyarrow 26
                # drops nulls before a list's first value ([null, 1]: invalid) unless told the list's type
                broken = {f.name: f.type for f in table.schema if f.name != self.empty_columns[0]
                          and not _valid(table.column(f.name))}
                if broken:
                    table = self._parse(piece, broken).select(table.column_names)
                for name in broken:
                    if not _valid(col := table.column(name)):  # arrays of nulls (list<null>), short even so
                        col = pa.chunked_array([_nulls_rebuilt(c) for c in col.chunks])
                        col.validate(full=True)
                        table = table.set_column(table.column_names.index(name), name, col)
            except (pa.ArrowInvalid, UnicodeDecodeError) as e:
                raise self._bad_line(piece, line, lines, str(e)) from e
            if table.num_rows != lines.rows:
                raise self._bad_line(piece, line, lines, f"Arrow read {table.num_rows} rows from {lines.rows} lines")
            yield line, piece, table

    def _bad_line(self, piece: bytes, first_line: int, lines: jsonl.Lines, arrow_said: str) -> Exception:
        """The error for a piece Arrow cannot read: its first line that is not one JSON object, else the column whose
        type changes (:class:`_TypeChange`; the line, should it be read as text already), else what Arrow said."""
        bad = jsonl.first_problem(piece, first_line, self.empty_columns[0])
        name = self.shard.path.name
        cat = next((c for suffix, c in _ARRAY_CATS if name.lower().endswith(suffix)), None)
        if bad is not None and bad[1].endswith(jsonl.ARRAY_FILE) and cat is not None:
            stem = shlex.quote(name[:name.lower().rindex(".json")] + ".jsonl")
            convert = f"jq -c '.[]' {shlex.quote(name)}" if not cat else f"{cat} {shlex.quote(name)} | jq -c '.[]'"
            return InputError(self.shard.path, f"{bad[1]}; convert it with {convert} > {stem}", line=1)
        if bad is not None:
            return InputError(self.shard.path, bad[1], line=bad[0])
        change = _TYPE_CHANGE.search(arrow_said)
        if change is not None:
            field, was, now, row = change.groups()
            at = lines.line_of_row(int(row))
            if (column := _column_of(field, piece.split(b"\n")[at])) not in self.mixed:
                # (with the others whose JSON type changes in the piece: one more pass in all, not one for each)
                return _TypeChange(column, *(jsonl.kind_changes(piece) - self.mixed - {self.empty_columns[0]}))
            return InputError(self.shard.path, f"JSON field {field} changes type within the file (from {was} to {now}); "
                              "a column must keep one type", line=first_line + at)
        return InputError(self.shard.path, f"cannot read JSON Lines (in the piece from line {first_line}): {arrow_said}")

    def batches(self, batch_rows: int) -> Iterator[pa.RecordBatch]:
        as_text = {c for c, t in self.exact.items() if t == pa.string()}
        for line, piece, table in [self._only] if self._only else self._parsed():
            present = {c for c in as_text if c in table.column_names and table.column(c).null_count < table.num_rows}
            texts = jsonl.number_texts(piece, line, present, set())[0] if present else {}
            cols, names = [], set(table.column_names)  # (a list made anew at each call: time squared in columns)
            for f in self.schema:
                if f.name in texts:
                    cols.append(pa.array(texts[f.name], pa.string()))
                elif f.name not in names:
                    cols.append(pa.nulls(table.num_rows, f.type))
                elif (col := table.column(f.name)).type == f.type:
                    cols.append(col)
                else:
                    try:
                        col = col.cast(f.type)
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
                        raise InputError(self.shard.path, f"column {f.name!r} is {col.type} from this line on, but "
                                         f"{f.type} elsewhere in the file: {e}", line=line) from e
                    # pyarrow 26's casts of arrays holding nulls make them short (:func:`_nulls_rebuilt`)
                    if holds_type(f.type, pa.types.is_null) and not _valid(col):
                        col = pa.chunked_array([_nulls_rebuilt(c) for c in col.chunks], f.type)
                    cols.append(col)
            yield from pa.Table.from_arrays(cols, schema=self.schema).to_batches(max_chunksize=batch_rows)


_ARROW_FILE_MAGIC = b"ARROW1"  # how the IPC *file* format starts (a stream starts with a message)


class _ArrowFile:
    """An Arrow IPC shard (stream or file format), memory-mapped."""

    def __init__(self, shard: Shard):
        self.shard = shard
        with self._open() as (schema, batches):
            self.schema, self.num_rows = schema, sum(batch.num_rows for batch in batches)

    @contextmanager
    def _open(self):
        try:
            source = pa.memory_map(str(self.shard.path), "r")
        except (pa.ArrowException, OSError) as e:
            raise InputError(self.shard.path, f"unreadable Arrow IPC file: {e}") from e
        with source:
            try:
                is_file = source.read(len(_ARROW_FILE_MAGIC)) == _ARROW_FILE_MAGIC
                source.seek(0)
                if is_file:
                    reader = pa.ipc.open_file(source)
                    batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
                else:
                    reader = pa.ipc.open_stream(source)
                    batches = iter(reader)
            except (pa.ArrowException, OSError) as e:
                raise InputError(self.shard.path, _unopened(e, "not an Arrow IPC stream or file, or corrupt")) from e
            yield reader.schema, _guarded(batches, self.shard.path, "corrupt or truncated Arrow IPC data")

    def batches(self, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """The file's rows, :func:`_rebatched` as Parquet's are read (the kept shard's row groups follow them)."""
        with self._open() as (schema, batches):
            yield from _rebatched(batches, schema, batch_rows)


def _rebatched(batches: Iterator[pa.RecordBatch], schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The rows of ``batches`` (of ``schema``) in batches of ``batch_rows`` rows (the last one shorter), whatever their
    own sizes, or in more (Arrow splits a batch whose strings pass 2 GiB; the given batches stay apart where their
    dictionaries joined need more values than their index type holds: two int8 ones of 100 values); dictionaries of
    batches joined are unified."""
    def joined(rows: pa.Table) -> list[pa.RecordBatch]:
        try:  # combine_chunks copies only a batch that spans the given batches
            return rows.combine_chunks().to_batches()
        except pa.ArrowInvalid:  # ('The unified dictionary requires a larger index type')
            return rows.to_batches()

    pending: list[pa.RecordBatch] = []  # joined once there are batch_rows rows: each batch once, not once a batch
    count = 0
    for batch in batches:
        pending.append(batch)
        if (count := count + batch.num_rows) < batch_rows:
            continue
        rows = pa.Table.from_batches(pending, schema)
        while rows.num_rows >= batch_rows:
            yield from joined(rows.slice(0, batch_rows))
            rows = rows.slice(batch_rows)
        pending, count = rows.to_batches(), rows.num_rows
    if count:
        yield from joined(pa.Table.from_batches(pending, schema))


def _parquet_batches(file: pq.ParquetFile, batch_rows: int, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
    """``columns`` (None: all) of ``file`` in batches of ``batch_rows`` rows. A file with a dictionary inside a list,
    struct or map is read a row group at a time and rebatched: pyarrow reads no batch of such a column that spans row
    groups ('Nested data conversions not implemented for chunked array outputs')."""
    schema = file.schema_arrow if columns is None else pa.schema([file.schema_arrow.field(c) for c in columns])
    if not any(holds_type(t, pa.types.is_dictionary) for f in schema for t in inner_types(f.type)):
        return file.iter_batches(batch_size=batch_rows, columns=columns)
    groups = (b for g in range(file.num_row_groups)
              for b in file.iter_batches(batch_size=batch_rows, row_groups=[g], columns=columns))
    return _rebatched(groups, schema, batch_rows)


class ShardReader:
    """Reads one shard in batches of at most ``batch_rows`` rows, after validating its columns (``text_column``,
    ``id_column``, ``id_required``: :class:`dedup.config.DedupConfig`).

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.jsonl"
        >>> _ = path.write_text('{"id": 18446744073709551000, "text": "one"}\\n\\n{"id": 7, "text": null}\\n')
        >>> shard = Shard(path, "a.jsonl", "jsonl")
        >>> reader = ShardReader(shard, "text", "id", False, batch_rows=1024)
        >>> reader.schema.field("id").type, reader.num_rows, count_rows([shard])
        (DataType(uint64), 2, 2)
        >>> batch = next(reader.batches())
        >>> reader.ids(batch).to_pylist(), reader.text(batch).to_pylist()
        (['18446744073709551000', '7'], ['one', None])
    """

    def __init__(self, shard: Shard, text_column: str, id_column: str | None, id_required: bool, batch_rows: int):
        self.shard, self.text_column, self.batch_rows, self._batch_start = shard, text_column, batch_rows, 0
        if shard.fmt == "parquet":
            self._file = _parquet_file(shard.path)
            self.schema, self.num_rows = self._file.schema_arrow, self._file.metadata.num_rows
        else:
            self._file = _ArrowFile(shard) if shard.fmt == "arrow" else _JsonlFile(
                shard, (text_column, id_column) if id_required and id_column else (text_column,))
            self.schema, self.num_rows = self._file.schema, self._file.num_rows
        #: Why the (default, not required) id column is not read, or None.
        self.id_ignored = _check_columns(shard, self.schema, text_column, id_column, id_required)
        self.id_column = id_column if id_column and id_column in self.schema.names and not self.id_ignored else None
        if self.id_ignored:
            warnings.warn(InputWarning(f"{shard.path}: id {self.id_ignored}: ignored, ids are left null "
                                       "(name the id column explicitly to make this an error)"))
        for column in sorted(getattr(self._file, "mixed", ())):
            warnings.warn(InputWarning(f"{shard.path}: column {column!r} holds values of different JSON types; read as "
                                       "text (a string as itself, any other value as its JSON text)"))

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Record batches in file order: all columns, or (Parquet) only ``columns`` of :attr:`schema` (all the same
        for JSONL, Arrow IPC, or a name with a dot, which Parquet would read as a nested path)."""
        if self.shard.fmt == "parquet":
            columns = None if columns is not None and any("." in c for c in columns) else columns
            source = _guarded(_parquet_batches(self._file, self.batch_rows, columns), self.shard.path, "corrupt data")
        else:
            source = self._file.batches(self.batch_rows)
        self._batch_start = 0
        for batch in source:
            yield batch
            self._batch_start += batch.num_rows
        if self._batch_start != self.num_rows:  # JSONL appended to between its passes
            raise changed_while_read(self.shard, f"{self.num_rows:,} rows when opened, {self._batch_start:,} read")

    def text(self, batch: pa.RecordBatch) -> pa.Array:
        """The batch's text column as strings (:func:`text_strings`), valid UTF-8; InputError naming the row or line
        of a text that is not (``batch`` must be the latest from :meth:`batches`)."""
        col = text_strings(batch.column(self.text_column))
        if (bad := first_invalid_utf8(col)) is None:
            return col
        if bad[0] is None:
            raise InputError(self.shard.path, f"cannot process text column {self.text_column!r}: {bad[1]}",
                             row=self._batch_start) from bad[1]
        row = self._batch_start + bad[0]
        line = _jsonl_line_of_row(self.shard, row) if self.shard.fmt == "jsonl" else None
        raise InputError(self.shard.path, f"text column {self.text_column!r} is not valid UTF-8: {bad[1]}",
                         row=None if line else row, line=line) from bad[1]

    def needed_columns(self, text: bool = True) -> list[str]:
        """The columns :meth:`text` (if ``text``) and :meth:`ids` read, for :meth:`batches`."""
        return [c for c in (self.text_column if text else None, self.id_column) if c is not None]

    def ids(self, batch: pa.RecordBatch) -> pa.Array:
        """The batch's ids as strings (nulls without an id column)."""
        if self.id_column is None:
            return pa.nulls(batch.num_rows, pa.string())
        return id_strings(batch.column(self.id_column), self.shard.path, self.id_column, self._batch_start)


def changed_while_read(shard: Shard, how: str) -> InputError:
    """The error for an input that a writer changed while memdedup read it (``how``: what showed it)."""
    return InputError(shard.path, f"changed while it was read ({how}); rerun once nothing writes it")


def id_strings(col: pa.Array | pa.ChunkedArray, path: Path, column: str, first_row: int = 0
               ) -> pa.Array | pa.ChunkedArray:
    """Document ids as strings, the one way every id is read: Arrow's cast (``2`` -> ``'2'``), except that a float
    that is a whole number within 2^53 is written as that integer, value by value (pandas makes integer ids with a
    missing value floats: ``10000000007.0`` -> ``'10000000007'``, not ``'1.0000000007e+10'``); other floats as Arrow
    writes them in their own type (``0.5``, ``nan``; float32 ``0.1``); UUIDs in canonical form
    (:func:`dedup.arrow.uuid_strings`); bytes as UTF-8 text; durations as the count and its unit (``5s``,
    ``5000ms``); Arrow's bool8 as bool (``true``); decimals in their scale (``1.0`` in ``decimal(5, 1)``).
    InputError naming ``path``: a type without a string form, or text that is not UTF-8 (naming the row, counted
    from ``first_row``, the file row of ``col[0]``)."""
    col = _decoded(col)
    if col.type in _STRINGS and (bad := first_invalid_utf8(col)) is not None:  # Arrow's casts do not check UTF-8
        raise InputError(path, f"id column {column!r} holds text that is not UTF-8 ({bad[1]})",
                         row=None if bad[0] is None else first_row + bad[0])
    if pa.types.is_string(col.type):
        return col
    if isinstance(col.type, pa.UuidType):
        return uuid_strings(col)
    if isinstance(col.type, pa.Bool8Type):  # its int8 storage would cast to '1', '2'
        col = cast(col, pa.bool_())
    try:
        if not pa.types.is_floating(col.type) and not pa.types.is_duration(col.type):
            return cast(col, pa.string())
        import pyarrow.compute as pc
        if pa.types.is_duration(col.type):  # the count alone would lose its unit
            return pc.binary_join_element_wise(cast(col, pa.string()), col.type.unit, "")
        x = cast(col, pa.float64())  # float16 and float32 too
        # whole and exact: NaN fails the equality, infinities and values beyond 2^53 the bound
        whole = pc.and_(pc.equal(pc.floor(x), x), pc.less_equal(pc.abs(x), 2.0 ** 53))
        as_int = cast(cast(pc.if_else(whole, x, 0.0), pa.int64()), pa.string())
        # (the others in their own type: float32 0.1 is '0.1', its float64 '0.10000000149011612')
        return pc.if_else(whole, as_int, cast(col, pa.string()))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        bad = _first_undecodable(col) if col.type in _AS_TEXT or pa.types.is_fixed_size_binary(col.type) else None
        if bad is not None:
            raise InputError(path, f"id column {column!r} holds bytes that are not UTF-8 ({bad[1]}); ids are read as "
                             "text: write raw-byte ids (digests) as hex strings, or pass --id-column '' (no ids)",
                             row=first_row + bad[0]) from e
        raise InputError(path, f"id column {column!r} of type {col.type} cannot be read as strings: {e}") from e


def head_texts(shard: Shard, text_column: str, n: int) -> list[str]:
    """Up to the first ``n`` texts of ``shard`` that are not null or empty, read cheaply (JSON Lines line by line,
    Parquet's and Arrow's first batches); [] where they cannot be read so or are not all UTF-8 (the reader, later,
    names the problem)."""
    texts: list[str] = []
    try:
        if shard.fmt == "jsonl":
            for line in _lines(_decompressed(shard, 1 << 16)) if n > 0 else ():  # (the reader's decoding)
                if line.strip() and (t := json.loads(line).get(text_column)):
                    texts.append(t)
                    if len(texts) == n:  # no line after the n-th text is read
                        break
        else:
            batches = (_parquet_file(shard.path).iter_batches(batch_size=n, columns=[text_column])
                       if shard.fmt == "parquet" else _ArrowFile(shard).batches(n))
            for batch in batches:
                texts += [t for t in text_strings(batch.column(text_column)).to_pylist() if t]
                if len(texts) >= n:
                    break
        for t in texts[:n]:
            t.encode("utf-8")  # str, and no lone surrogate (JSON's "\ud800")
    except Exception:  # noqa: BLE001 - a digest for a check, not the read: the reader names the problem
        return []
    return texts[:n]


def _parquet_file(path: Path) -> pq.ParquetFile:
    """INT96 timestamps (Spark, Hive) in microseconds, Spark's precision: in nanoseconds, pyarrow's default, a date
    outside 1677-2262 (a 9999-12-31 placeholder) wraps silently."""
    try:
        return pq.ParquetFile(str(path), coerce_int96_timestamp_unit="us")
    except (pa.ArrowException, OSError) as e:
        raise InputError(path, _unopened(e, "unreadable or corrupt Parquet file")) from e


def _guarded(batches: Iterator[pa.RecordBatch], path: Path, what: str) -> Iterator[pa.RecordBatch]:
    """``batches``; an Arrow or OS error while decoding becomes an :class:`InputError` naming ``path`` and the row
    after which ``what`` was found."""
    row = 0
    try:
        for batch in batches:
            yield batch  # (the consumer's own errors are raised in the consumer, not here)
            row += batch.num_rows
    except (pa.ArrowException, OSError) as e:
        raise InputError(path, f"{what} after this row: {e}", row=row) from e


def count_rows(shards: list[Shard]) -> int:
    """Total rows over shards (Parquet: metadata; Arrow: batch headers; JSONL: :func:`dedup.jsonl.scan`'s rows), the
    rows :class:`ShardReader` yields (it refuses a file where the two would differ)."""
    rows = {"parquet": lambda s: _parquet_file(s.path).metadata.num_rows, "arrow": lambda s: _ArrowFile(s).num_rows,
            "jsonl": lambda s: sum(lines.rows for _, _, lines in _jsonl_pieces(s))}
    return sum(rows[s.fmt](s) for s in shards)
