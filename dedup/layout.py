"""The dedup output directory: the one definition of its layout, and atomic writes.

::

    OUT/
      kept/<shard stem>.parquet   kept rows of each input, input schema, original order
                                  (absent with ``emit: removed``)
      removed.parquet             one row per removed input row (REMOVED_SCHEMA)
      manifest.json               written last (dedup.io.write_stage_manifest): complete iff it exists

``<shard stem>`` is the input's path relative to the inputs' common directory, without
its format suffix (``part-0.jsonl.gz`` -> ``kept/part-0.parquet``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import io

KEPT_DIR = "kept"
REMOVED_FILE = "removed.parquet"

#: Columns of removed.parquet. ``band`` is null for exact duplicates; ``duplicate_of*`` are null where the index
#: cannot name the earlier row (Bloom-filter indexes cannot; the ``lsh`` backend can).
REMOVED_SCHEMA = pa.schema([
    pa.field("id", pa.string()),
    pa.field("shard", pa.string(), nullable=False),
    pa.field("row", pa.int64(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("band", pa.int16()),
    pa.field("duplicate_of", pa.string()),
    pa.field("duplicate_of_shard", pa.string()),
    pa.field("duplicate_of_row", pa.int64()),
])


def write_verdicts(kept, write_removed: Callable[[pa.RecordBatch], None], batch: pa.RecordBatch, start_row: int,
                   shard_name: str, ids: pa.Array, reason: np.ndarray, band: np.ndarray,
                   earlier: Callable[[np.ndarray], tuple | None] | None = None) -> None:
    """One batch's outputs, for both engines: kept rows to ``kept`` (a :class:`KeptShard`, or None) and
    removed rows to ``write_removed`` (``batch`` starts at ``start_row`` of ``shard_name``; ``reason``, ``band``:
    per row; ``earlier(gone)``: (id, shard, row) of the earlier duplicate of each removed row, when known)."""
    from .arrow import filter_rows, numeric_array, repeat_string, take, take_strings
    from .index import KEEP, REASON_LABELS

    keep = reason == KEEP
    if kept is not None:
        kept.write(filter_rows(batch, keep), start_row, start_row + batch.num_rows - 1)
    gone = np.flatnonzero(~keep)
    if not gone.size:
        return
    n, b = gone.size, band[gone]
    found = (earlier(gone) if earlier else None) or (pa.nulls(n, pa.string()), pa.nulls(n, pa.string()),
                                                     pa.nulls(n, pa.int64()))
    write_removed(pa.record_batch([take(ids, gone), repeat_string(shard_name, n),
                                   numeric_array((gone + start_row).astype(np.int64)),
                                   take_strings(REASON_LABELS, reason[gone]), numeric_array(b, valid=b >= 0), *found],
                                  schema=REMOVED_SCHEMA))


def input_entry(shard, counts: dict) -> dict:
    """One input file's entry in a dedup manifest's ``inputs``, from its ``counts``: rows, kept, exact, near,
    null_text, empty_text, text_bytes (every row kept or removed)."""
    c = counts
    if c["kept"] + c["exact"] + c["near"] != c["rows"]:
        raise RuntimeError(f"internal error: {shard.path}: kept {c['kept']} + removed {c['exact'] + c['near']} "
                           f"!= {c['rows']} rows")
    return {"shard": shard.name, "path": str(shard.path), "format": shard.fmt, "file_bytes": shard.path.stat().st_size,
            "rows": c["rows"], "kept": c["kept"], "removed": {"exact": c["exact"], "near": c["near"]},
            **{k: c[k] for k in ("null_text", "empty_text", "text_bytes")}}


def input_rows(manifest: dict, out: Path) -> dict[str, int]:
    """Rows per input shard name of the dedup manifest of ``out`` (what ``removed.parquet``'s (shard, row) pairs
    index); :class:`dedup.io.StateError` naming its manifest.json where ``inputs`` is not such a list."""
    inputs = manifest.get("inputs", [])
    if not isinstance(inputs, list) or not all(isinstance(i, dict) and isinstance(i.get("shard"), str)
                                               and type(i.get("rows")) is int for i in inputs):
        raise io.StateError(f"{io.manifest_path(out)}: damaged: 'inputs' is not a list of objects with a shard name "
                            "and a row count")
    return {i["shard"]: i["rows"] for i in inputs}


def other_bytes(manifest: dict, name: str, size: int, where: str) -> str | None:
    """Why the corpus file ``name`` of ``size`` bytes (``where``: how a message names it) is not the input of
    that name of the dedup run of ``manifest`` (another size); None when the sizes agree or nothing is known."""
    was = {i["shard"]: i.get("file_bytes") for i in manifest.get("inputs") or []}.get(name)
    if was is None or was == size:
        return None
    return f"its input {name!r} had {was} bytes, {where} has {size} (another corpus of the same layout?)"


def dedup_manifest(engine: str, config, inputs: list[dict], index: dict, phases: dict[str, float], wall: float,
                   phases_cpu: dict[str, float] | None = None, **extra) -> dict:
    """The body of the dedup manifest of both engines: totals and throughput derived from ``inputs``
    (:func:`input_entry` dicts) and ``phases`` (seconds; ``phases_cpu``: CPU seconds, as ``cpu_s``), so they
    cannot disagree. ``index`` holds at least ``bytes`` ({part: bytes}); ``bytes_per_doc`` is added here."""
    sums = {k: sum(i[k] for i in inputs) for k in ("rows", "kept", "null_text", "empty_text", "text_bytes")}
    rows, text_bytes = sums["rows"], sums["text_bytes"]
    index = {**index, "bytes_per_doc": {k: v / max(rows, 1) for k, v in index["bytes"].items()}}
    totals = {"shards": len(inputs), "rows": rows, "kept": sums["kept"],
              "removed": {r: sum(i["removed"][r] for i in inputs) for r in ("exact", "near")},
              **{k: sums[k] for k in ("null_text", "empty_text", "text_bytes")}}
    return {"engine": engine, "config": config.to_dict(), **extra, "inputs": inputs, "totals": totals, "index": index,
            "timing": {"wall_s": wall, "docs_per_s": rows / wall if wall > 0 else None,
                       "mb_per_s": text_bytes / 1e6 / wall if wall > 0 else None,
                       "phases": {k: {"s": v, "docs_per_s": rows / v if v > 0 else None,
                                      **({"cpu_s": phases_cpu[k]} if phases_cpu and k in phases_cpu else {})}
                                  for k, v in phases.items()}}}


def kept_writer(path: Path, schema: pa.Schema, text_column: str, compression: str):
    """Parquet writer of a kept shard: the input schema, ``compression``. The text column has no dictionary
    (documents are almost all distinct: Arrow would build one and fall back, ~25% of the write time) and no
    min/max statistics (they help no reader); other columns keep Arrow's defaults. A schema with a view directly in a
    struct is written a whole batch at a time: pyarrow 26's writer cuts its input every 1,024 values and 20,000 rows
    (pages), and cannot cut such a struct ('Slicing not implemented for StringView')."""
    import pyarrow.parquet as pq

    from .arrow import UNVIEWED, holds_type

    others = [f.name for f in schema if f.name != text_column]
    whole = any(holds_type(f.type, lambda t: pa.types.is_struct(t) and any(c.type in UNVIEWED for c in t))
                for f in schema)
    return pq.ParquetWriter(str(path), schema, compression=compression, use_dictionary=others, write_statistics=others,
                            **({"write_batch_size": 1 << 30, "max_rows_per_page": 1 << 30} if whole else {}))


@contextmanager
def kept_shard(out: Path, shard, schema: pa.Schema, config) -> Iterator:
    """The :func:`kept_writer` of ``shard`` to a temporary name renamed to :func:`kept_path` when the block
    completes; None with ``emit: removed``. InputError where Parquet cannot hold the schema (JSON Lines: a
    field that is ``{}`` on every line; :func:`_beyond_parquet`)."""
    from .shards import InputError

    if config.emit != "all":
        yield None
        return
    for f in schema:
        if why := _beyond_parquet(f.type):
            raise InputError(shard.path, f"column {f.name!r} ({f.type}) cannot be written as Parquet (the kept "
                             f"shards' format), which holds no {why}, or use --emit removed (no kept shards)")
    final = kept_path(out, shard.stem)
    io.make_below(out, final.parent)
    with io.replacing(final) as tmp:
        try:
            writer = kept_writer(tmp, schema, config.text_column, config.compression)
        except pa.ArrowNotImplementedError as e:
            raise InputError(shard.path, "its columns cannot be written as Parquet (the kept shards' format): "
                                         f"{e}") from e
        with writer as w:
            yield KeptShard(w, shard.path)


class KeptShard:
    """A kept shard's writer (:func:`kept_shard`) that refuses, in one line naming the file and the batch's input
    rows, a value Parquet would not hold as it is: a timestamp[s] beyond the milliseconds' int64 range (Parquet has
    no seconds: Arrow's writer fails with 'Integer overflow'), a date64 that is not a whole day (Parquet dates are
    days: Arrow's writer would drop its time of day without a word). A dictionary whose values hold a null, which
    Arrow's writer refuses, is written encoded again without it (:func:`dedup.arrow.without_null_dictionary_values`)."""

    def __init__(self, writer, path: Path):
        self._writer, self.path = writer, path

    def write(self, batch: pa.RecordBatch, first: int, last: int) -> None:
        """Write ``batch``, kept rows of the input's rows ``first`` to ``last`` (0-based, both included)."""
        from .arrow import holds_type, leaf_arrays, without_null_dictionary_values
        from .shards import InputError

        rows = f"row {first}" if first == last else f"rows {first}-{last}"
        for f, col in zip(batch.schema, batch.columns):
            if holds_type(f.type, pa.types.is_date64) and any(map(_partial_days, leaf_arrays(col, pa.types.is_date64))):
                raise InputError(self.path, f"{rows}: column {f.name!r} holds a date64 value that is not a whole day, "
                                 "which Parquet (the kept shards' format, days) would cut to its day")
        try:
            cols = [without_null_dictionary_values(c) for c in batch.columns]  # (Parquet's writer refuses them)
            self._writer.write_batch(pa.RecordBatch.from_arrays(cols, schema=batch.schema))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise InputError(self.path, f"{rows} cannot be written as Parquet (the kept shards' format): "
                                        f"{' '.join(str(e).split())}") from e


def _partial_days(arr: pa.Array) -> bool:
    """Whether a date64 array holds a value (not null) that is not a whole day of milliseconds."""
    if not len(arr):
        return False
    ms = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + len(arr)]
    partial = ms % 86_400_000 != 0
    if arr.null_count:
        partial &= np.asarray(arr.is_valid())
    return bool(partial.any())


def _beyond_parquet(t: pa.DataType) -> str | None:
    """What in a column of type ``t`` (at any depth) Arrow's Parquet writer cannot write so that it reads back, and
    what to do, or None. A dictionary of string_view or binary_view values: it casts none (with rows it fails, without
    them writes dictionary<string>), so the schema is refused, whatever the rows. A fixed_size_list of size 0: a list
    in it reads back as a list of one value, or fails to read ('Expected all lists to be of size=0')."""
    t = t.storage_type if isinstance(t, pa.BaseExtensionType) else t
    if pa.types.is_dictionary(t) and t.value_type in (pa.string_view(), pa.binary_view()):
        return "dictionary of views: cast it to a dictionary of strings (bytes) first"
    if pa.types.is_fixed_size_list(t) and t.list_size == 0:
        return "fixed-size list of size 0: drop the column first"
    return next(filter(None, (_beyond_parquet(t.field(i).type) for i in range(t.num_fields))), None)


#: Rows per row group of removed.parquet: fixed, so the file's bytes depend on its rows only, not on batching.
REMOVED_ROW_GROUP = 65536


@contextmanager
def removed_writer(final: Path, compression: str) -> Iterator[Callable[[pa.RecordBatch | pa.Table], None]]:
    """A ``write(rows)`` of ``removed.parquet`` (:data:`REMOVED_SCHEMA`) to a temporary name renamed to ``final``
    when the block completes, in row groups of exactly :data:`REMOVED_ROW_GROUP` rows (the last shorter)."""
    import pyarrow.parquet as pq

    pending: list[pa.Table] = []  # joined once they hold a row group: each write once, not once a write
    count = 0
    with io.replacing(final) as tmp, pq.ParquetWriter(str(tmp), REMOVED_SCHEMA, compression=compression) as w:
        def write(data: pa.RecordBatch | pa.Table) -> None:
            nonlocal pending, count
            pending.append(data if isinstance(data, pa.Table) else pa.Table.from_batches([data]))
            if (count := count + data.num_rows) < REMOVED_ROW_GROUP:
                return
            rows = pa.concat_tables(pending)
            whole = count // REMOVED_ROW_GROUP * REMOVED_ROW_GROUP
            w.write_table(rows.slice(0, whole), row_group_size=REMOVED_ROW_GROUP)
            pending, count = [rows.slice(whole)], count - whole

        yield write
        if count:
            w.write_table(pa.concat_tables(pending), row_group_size=REMOVED_ROW_GROUP)


def kept_path(out: Path, shard_stem: str) -> Path:
    """Where a shard's kept rows go.

    >>> kept_path(Path("out"), "a/part-0").as_posix()
    'out/kept/a/part-0.parquet'
    """
    return out / KEPT_DIR / f"{shard_stem}.parquet"


def removed_path(out: Path) -> Path:
    return out / REMOVED_FILE


def read_removed(out: Path, columns: list[str]) -> dict[str, list]:
    """``columns`` of the dedup output ``out``'s removed.parquet as lists (:func:`read_removed_table`)."""
    return read_removed_table(out, columns).to_pydict()


def read_removed_table(out: Path, columns: list[str]) -> pa.Table:
    """``columns`` of the dedup output ``out``'s removed.parquet; :class:`dedup.io.StateError` naming the file where
    one is absent."""
    import pyarrow.parquet as pq

    path = removed_path(Path(out))
    if missing := [c for c in columns if c not in pq.read_schema(path).names]:
        raise io.StateError(f"{path}: no column {missing[0]!r}: damaged, or not a memdedup dedup output")
    return pq.read_table(path, columns=columns)
