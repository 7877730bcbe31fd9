"""Input shards: formats, validation and batched reading.

Inputs are Parquet files and JSON Lines files (``.jsonl``, ``.jsonl.gz``, ``.jsonl.zst``;
``.json``/``.ndjson`` are accepted as JSON Lines too). Which files a run reads, and their
canonical order, is decided by :func:`dedup.runs.discover`.

Every problem with an input raises :class:`InputError`, whose message names the file and,
where it applies, the line (JSONL, 1-based) or row (Parquet, 0-based).
"""

from __future__ import annotations

import glob
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .arrow import cast

PARQUET_SUFFIXES = (".parquet", ".pq")
JSONL_SUFFIXES = {
    ".jsonl": None,
    ".ndjson": None,
    ".json": None,
    ".jsonl.gz": "gzip",
    ".ndjson.gz": "gzip",
    ".json.gz": "gzip",
    ".jsonl.zst": "zstd",
    ".ndjson.zst": "zstd",
    ".json.zst": "zstd",
}


class InputError(ValueError):
    """A problem with one input file (and row or line)."""

    def __init__(self, path: str | os.PathLike, message: str, *, row: int | None = None, line: int | None = None):
        self.path = str(path)
        self.message = message
        self.row = row
        self.line = line
        where = f"line {line}: " if line is not None else f"row {row}: " if row is not None else ""
        super().__init__(f"{self.path}: {where}{message}")

    def __reduce__(self):  # survives pickling (errors raised on Dask workers)
        return _rebuild_input_error, (self.path, self.message, self.row, self.line)


def _rebuild_input_error(path, message, row, line) -> "InputError":
    return InputError(path, message, row=row, line=line)


@dataclass(frozen=True)
class Shard:
    """One input file.

    Attributes:
        path: absolute path.
        name: its name in outputs: the path relative to the inputs' common directory.
        fmt: ``"parquet"`` or ``"jsonl"``.
        compression: None, ``"gzip"`` or ``"zstd"`` (JSONL only).
    """

    path: Path
    name: str
    fmt: str
    compression: str | None = None

    @property
    def stem(self) -> str:
        """``name`` without its format suffix (e.g. ``a/part-0`` for ``a/part-0.jsonl.gz``)."""
        lower = self.name.lower()
        for suf in sorted((*PARQUET_SUFFIXES, *JSONL_SUFFIXES), key=len, reverse=True):
            if lower.endswith(suf):
                return self.name[: -len(suf)]
        return self.name


def format_of(path: Path) -> tuple[str, str | None] | None:
    lower = path.name.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet", None
    for suf in sorted(JSONL_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suf):
            return "jsonl", JSONL_SUFFIXES[suf]
    return None


def is_plain_json(path: Path) -> bool:
    return path.name.lower().endswith((".json", ".json.gz", ".json.zst"))


def _check_columns(shard: Shard, schema: pa.Schema, text_column: str, id_column: str | None, id_required: bool) -> None:
    names = schema.names
    if text_column not in names:
        raise InputError(shard.path, f"no text column {text_column!r}; columns are {names}")
    t = schema.field(text_column).type
    if pa.types.is_dictionary(t):
        t = t.value_type  # read through the dictionary (see ShardReader.text)
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t) or pa.types.is_null(t)):
        raise InputError(shard.path, f"text column {text_column!r} has type {t}, expected a string type")
    if id_required and id_column and id_column not in names:
        raise InputError(shard.path, f"no id column {id_column!r}; columns are {names}")
    if id_column and id_column in names and pa.types.is_nested(schema.field(id_column).type):
        raise InputError(
            shard.path, f"id column {id_column!r} has type {schema.field(id_column).type}, which cannot be read as strings"
        )


def _iter_lines(shard: Shard) -> Iterator[bytes]:
    """Raw lines of a (possibly compressed) JSONL file."""
    with pa.input_stream(str(shard.path), compression=shard.compression) as raw:
        yield from io.BufferedReader(raw, buffer_size=1 << 20)


def _jsonl_bad_line(shard: Shard, text_column: str | None = None) -> tuple[int, str] | None:
    """(1-based line, reason) of the first line that is not a JSON object (or whose
    ``text_column`` holds something other than a string or null), or None."""
    for lineno, line in enumerate(_iter_lines(shard), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return lineno, f"invalid JSON: {e}"
        if not isinstance(obj, dict):
            return lineno, f"expected a JSON object, got {type(obj).__name__}"
        if text_column is not None and obj.get(text_column) is not None and not isinstance(obj[text_column], str):
            kind = {bool: "boolean", int: "number", float: "number", dict: "object", list: "array"}.get(type(obj[text_column]), "value")
            return lineno, f"text column {text_column!r} holds a JSON {kind}, expected a string"
    return None


def _jsonl_line_of_row(shard: Shard, row: int) -> int | None:
    """1-based line of the 0-based row ``row`` (rows are the lines that are not blank)."""
    seen = -1
    for lineno, line in enumerate(_iter_lines(shard), start=1):
        if line.strip():
            seen += 1
            if seen == row:
                return lineno
    return None


#: Bytes of JSON text parsed at a time: a JSONL shard is read in pieces of whole lines of
#: about this size, so memory follows this, not the file (a line longer than it is one piece).
JSONL_CHUNK_BYTES = 32 << 20


def _jsonl_pieces(shard: Shard, chunk_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(first line number, bytes) of consecutive pieces of the decompressed file, each
    made of whole lines; pieces holding only blank lines are skipped."""
    line = 1
    with pa.input_stream(str(shard.path), compression=shard.compression) as raw:
        rest = b""
        while True:
            block = raw.read(chunk_bytes)
            if not block:
                break
            buf = rest + block
            cut = buf.rfind(b"\n") + 1
            if cut == 0:
                rest = buf
                continue
            piece, rest = buf[:cut], buf[cut:]
            if piece.strip():
                yield line, piece
            line += piece.count(b"\n")
        if rest.strip():
            yield line, rest + b"\n"


class _JsonlFile:
    """A JSON Lines shard read in pieces (:data:`JSONL_CHUNK_BYTES`), with one schema for
    the whole file.

    The first pass parses every piece with Arrow, notes the columns Arrow would turn into
    timestamps (they are read as the strings they are) and unifies the pieces' schemas
    with permissive promotion (null -> any type, int -> double, new columns); the second
    pass (:meth:`tables`) parses them again and conforms each to that schema. Two parses,
    memory of one piece.
    """

    def __init__(self, shard: Shard, empty_columns: tuple[str, ...], chunk_bytes: int | None = None):
        self.shard = shard
        self.empty_columns = empty_columns
        self.chunk_bytes = chunk_bytes or JSONL_CHUNK_BYTES
        self.as_strings: set[str] = set()
        schemas = []
        self.num_rows = 0
        for _, table in self._parsed():
            schemas.append(table.schema)
            self.num_rows += table.num_rows
        if self.num_rows == 0:
            self.schema = pa.schema([(c, pa.string()) for c in empty_columns])
            return
        try:
            self.schema = pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise InputError(shard.path, f"a column changes type within the file: {e}") from e

    def _parse(self, piece: bytes) -> pa.Table:
        import pyarrow.json as pj

        strings = pa.schema([(c, pa.string()) for c in sorted(self.as_strings)])
        opts = pj.ParseOptions(explicit_schema=strings, unexpected_field_behavior="infer") if len(strings) else None
        return pj.read_json(pa.BufferReader(piece), parse_options=opts)

    def _parsed(self) -> Iterator[tuple[int, pa.Table]]:
        line = 1
        try:
            for line, piece in _jsonl_pieces(self.shard, self.chunk_bytes):
                table = self._parse(piece)
                stamped = {f.name for f in table.schema if pa.types.is_timestamp(f.type)}
                if stamped - self.as_strings:
                    self.as_strings |= stamped
                    table = self._parse(piece)
                yield line, table
        except (pa.ArrowInvalid, UnicodeDecodeError, OSError) as e:
            try:
                bad = _jsonl_bad_line(self.shard, self.empty_columns[0] if self.empty_columns else None)
            except (OSError, UnicodeDecodeError) as e2:
                raise InputError(self.shard.path, f"unreadable: {e2}") from e
            if bad is not None:
                raise InputError(self.shard.path, bad[1], line=bad[0]) from e
            # Arrow's own message counts rows from the start of the piece
            raise InputError(self.shard.path, f"cannot read JSON Lines (in the piece from line {line}): {e}") from e

    def tables(self) -> Iterator[pa.Table]:
        """The file's rows in order, a piece at a time, each with :attr:`schema`."""
        for line, table in self._parsed():
            cols = []
            for f in self.schema:
                if f.name not in table.column_names:
                    cols.append(pa.nulls(table.num_rows, f.type))
                    continue
                col = table.column(f.name)
                try:
                    cols.append(col if col.type == f.type else col.cast(f.type))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
                    raise InputError(self.shard.path, f"column {f.name!r} is {col.type} from this line on, but "
                                     f"{f.type} elsewhere in the file: {e}", line=line) from e
            yield pa.Table.from_arrays(cols, schema=self.schema)


class ShardReader:
    """Reads one shard in batches of whole rows, after validating its columns.

    Args:
        shard: the file.
        text_column, id_column, id_required: see :class:`dedup.config.DedupConfig`.
        batch_rows: maximum rows per batch.
    """

    def __init__(self, shard: Shard, text_column: str, id_column: str | None, id_required: bool, batch_rows: int):
        self.shard = shard
        self.text_column = text_column
        self.batch_rows = batch_rows
        self._jsonl: _JsonlFile | None = None
        self._batch_start = 0
        self._pf: pq.ParquetFile | None = None
        if shard.fmt == "parquet":
            try:
                self._pf = pq.ParquetFile(str(shard.path))
            except (pa.ArrowException, OSError) as e:
                raise InputError(shard.path, f"unreadable or corrupt Parquet file: {e}") from e
            self.schema = self._pf.schema_arrow
            self.num_rows = self._pf.metadata.num_rows
        else:
            self._jsonl = _JsonlFile(shard, (text_column, id_column) if id_required and id_column else (text_column,))
            self.schema = self._jsonl.schema
            self.num_rows = self._jsonl.num_rows
        _check_columns(shard, self.schema, text_column, id_column, id_required)
        self.id_column = id_column if id_column and id_column in self.schema.names else None

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Record batches in file order, all columns."""
        self._batch_start = 0
        if self._jsonl is not None:
            for table in self._jsonl.tables():
                for batch in table.to_batches(max_chunksize=self.batch_rows):
                    yield batch
                    self._batch_start += batch.num_rows
            return
        assert self._pf is not None
        row = 0
        it = self._pf.iter_batches(batch_size=self.batch_rows)
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except (pa.ArrowException, OSError) as e:
                raise InputError(self.shard.path, f"corrupt data after this row: {e}", row=row) from e
            self._batch_start = row
            row += batch.num_rows
            yield batch

    def text(self, batch: pa.RecordBatch) -> pa.Array:
        """The batch's text column as a string array (an all-null column becomes nulls).

        Raises:
            InputError: a text that is not valid UTF-8 (naming its row, or JSONL line);
                ``batch`` must be the latest batch from :meth:`batches`.
        """
        col = batch.column(self.text_column)
        if pa.types.is_dictionary(col.type):  # dictionary-encoded strings: the values they stand for
            col = cast(col, col.type.value_type)
        if pa.types.is_null(col.type):
            return pa.nulls(len(col), pa.string())
        try:
            col.validate(full=True)  # UTF-8 check, several GB/s; the kernels assume valid UTF-8
        except pa.ArrowInvalid as e:
            raise self.text_error(col, self._batch_start, e) from e
        return col

    def ids(self, batch: pa.RecordBatch) -> pa.Array:
        """The batch's ids as strings (nulls where there is no id column)."""
        if self.id_column is None:
            return pa.nulls(batch.num_rows, pa.string())
        col = batch.column(self.id_column)
        if pa.types.is_string(col.type):
            return col
        try:
            return cast(col, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise InputError(self.shard.path, f"id column {self.id_column!r} of type {col.type} cannot be read as strings: {e}") from e

    def text_error(self, texts: pa.Array, start_row: int, exc: Exception) -> InputError:
        """The error for a batch whose text failed validation (invalid UTF-8), naming the
        first bad row (Parquet, 0-based) or line (JSONL, 1-based). Error path only."""
        for i, raw in enumerate(texts.cast(pa.binary()).to_pylist()):
            if raw is None:
                continue
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                msg = f"text column {self.text_column!r} is not valid UTF-8: {e}"
                line = _jsonl_line_of_row(self.shard, start_row + i) if self.shard.fmt == "jsonl" else None
                if line is not None:
                    return InputError(self.shard.path, msg, line=line)
                return InputError(self.shard.path, msg, row=start_row + i)
        return InputError(self.shard.path, f"cannot process text column {self.text_column!r}: {exc}", row=start_row)


def count_rows(shards: list[Shard]) -> int:
    """Total rows over shards (Parquet: from metadata; JSONL: lines that are not blank)."""
    total = 0
    for s in shards:
        if s.fmt == "parquet":
            try:
                total += pq.ParquetFile(str(s.path)).metadata.num_rows
            except (pa.ArrowException, OSError) as e:
                raise InputError(s.path, f"unreadable or corrupt Parquet file: {e}") from e
        else:
            try:
                total += sum(1 for line in _iter_lines(s) if line.strip())
            except OSError as e:
                raise InputError(s.path, f"unreadable: {e}") from e
    return total
