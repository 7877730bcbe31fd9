"""The staged dedup: three stages that each parallelise naturally, and their layout.

1. **sketch** (per shard): read the text, compute exact keys and band keys, write them to
   ``WORK/sketch/<stem>.arrow``. Also yields the shard's exact row count, so filters are
   sized on the true corpus size.
2. **band** (per band, and once for the exact key): stream that band's keys over all shards
   in canonical order through one Bloom filter (:class:`dedup.scalable.FilterStack`),
   writing one "seen before" bit per document to ``WORK/bands/<band>.seen``. Bands are
   independent because every document is inserted (see :mod:`dedup.index`), so they run
   in any order, anywhere. At extreme scale a band can be split further by the high bits
   of its key: keys of different high bits never collide, so each part is an independent
   filter and the parts' bit arrays OR together (``split_bits``).
3. **write** (per shard): OR the bands' bits with :func:`dedup.index.combine` and write
   ``OUT/kept/<stem>.parquet`` and ``WORK/removed/<stem>.parquet``.

Each task writes its files under temporary names, renames them into place, then writes a
completion record ``<file>.done`` (JSON: what it made and from what). A task whose
record exists and matches is skipped when a run is resumed. Nothing here knows about Dask:
the orchestrator (:mod:`pipelines.staged`) only decides which shard or band a task gets.

Work directory layout (the only definition of it)::

    WORK/run.json                    config, shards, plan of the run that owns WORK
    WORK/sketch/<stem>.arrow         Arrow IPC file, one row per input row:
                                       valid (bool), n_shingles (int32),
                                       exact_0, exact_1 (uint64), band_00..band_{b-1} (uint64)
    WORK/bands/<name>.seen           packed bits (little-endian bit order) over all rows
                                       in canonical order; name = band-00.. or exact
    WORK/index/<name>/               the band's filter generations after this run
    WORK/removed/<stem>.parquet      removed rows of one shard (layout.REMOVED_SCHEMA)
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import io, layout
from .arrow import bool_array, filter_rows, numeric_array
from .config import DedupConfig
from .index import EXACT, NEAR, combine
from .shards import Shard, ShardReader
from .sketch import Sketcher

WORK_DIR = "_work"
EXACT_BAND = "exact"


def work_dir(out: Path) -> Path:
    return Path(out) / WORK_DIR


def band_name(band: int | str) -> str:
    return band if isinstance(band, str) else f"band-{band:02d}"


def sketch_path(work: Path, shard: Shard) -> Path:
    return work / "sketch" / f"{shard.stem}.arrow"


def seen_path(work: Path, band: int | str) -> Path:
    return work / "bands" / f"{band_name(band)}.seen"


def removed_part_path(work: Path, shard: Shard) -> Path:
    return work / "removed" / f"{shard.stem}.parquet"


def done_path(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def read_done(path: Path) -> dict | None:
    """The completion record of ``path``, or None if the task did not finish."""
    try:
        with open(done_path(path), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def mark_done(path: Path, record: dict) -> None:
    io.write_json_atomic(done_path(path), record)


def sketch_schema(bands: int) -> pa.Schema:
    fields = [
        pa.field("valid", pa.bool_()),
        pa.field("n_shingles", pa.int32()),
        pa.field("exact_0", pa.uint64()),
        pa.field("exact_1", pa.uint64()),
    ]
    fields += [pa.field(f"band_{j:02d}", pa.uint64()) for j in range(bands)]
    return pa.schema(fields)


@dataclass
class ShardSketch:
    """What stage 1 learned about one shard (its completion record)."""

    shard: str
    rows: int
    text_bytes: int
    null_text: int
    empty_text: int
    seconds: float


def sketch_shard(shard: Shard, config: DedupConfig, bands: int, rows: int, work: Path, threads: int | None = 1) -> ShardSketch:
    """Stage 1 for one shard. Raises :class:`dedup.shards.InputError` on bad input."""
    t0 = time.perf_counter()
    final = sketch_path(work, shard)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = io.tmp_path(final)
    reader = ShardReader(shard, config.text_column, config.id_column, config.id_column_required, config.batch_rows)
    sketcher = Sketcher(config, bands, rows, threads)
    schema = sketch_schema(bands)
    n = text_bytes = nulls = empties = 0
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for batch in reader.batches():
                sk = sketcher(reader.text(batch))
                cols = [
                    bool_array(sk.valid),
                    numeric_array(sk.n_shingles.astype(np.int32)),
                    numeric_array(sk.exact[:, 0]),
                    numeric_array(sk.exact[:, 1]),
                ]
                cols += [numeric_array(sk.band_keys[:, j]) for j in range(bands)]
                writer.write_batch(pa.record_batch(cols, schema=schema))
                n += len(sk)
                text_bytes += sk.text_bytes
                nulls += int((~sk.valid).sum())
                empties += int((sk.valid & (sk.n_shingles == 0)).sum())
        if n != reader.num_rows:
            raise RuntimeError(f"internal error: {shard.path}: read {n} rows, file has {reader.num_rows}")
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    info = ShardSketch(shard.name, n, text_bytes, nulls, empties, time.perf_counter() - t0)
    mark_done(final, asdict(info))
    return info


def _read_column(path: Path, column: str) -> np.ndarray:
    with pa.memory_map(str(path), "r") as src:
        table = pa.ipc.open_file(src).read_all().select([column])
    return table.column(0).combine_chunks().to_numpy(zero_copy_only=False)


def band_pass(
    band: int | str, shards: list[Shard], work: Path, stack, total_rows: int
) -> dict:
    """Stage 2 for one band (an int) or the exact key (``EXACT_BAND``).

    Streams the band's keys over ``shards`` in canonical order through ``stack`` (a
    :class:`dedup.scalable.FilterStack`, fresh or loaded from an index directory), writes
    the seen bits and returns the completion record. Documents without shingles (and
    null texts) are not inserted into band filters; null texts are not inserted into the
    exact filter.
    """
    t0 = time.perf_counter()
    final = seen_path(work, band)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = io.tmp_path(final)
    pos = 0
    column = "exact_0" if band == EXACT_BAND else f"band_{band:02d}"
    pending = np.zeros(0, dtype=np.bool_)  # bits not yet packed into a whole byte
    try:
        with open(tmp, "wb") as f:
            for shard in shards:  # memory: the filter plus one shard's keys
                sp = sketch_path(work, shard)
                keys = _read_column(sp, column)
                valid = _read_column(sp, "valid")
                mask = valid if band == EXACT_BAND else valid & (_read_column(sp, "n_shingles") > 0)
                bits = np.concatenate([pending, stack.add(np.ascontiguousarray(keys, dtype=np.uint64), mask)])
                whole = bits.shape[0] // 8 * 8
                f.write(np.packbits(bits[:whole], bitorder="little").tobytes())
                pending = bits[whole:]
                pos += keys.shape[0]
            f.write(np.packbits(pending, bitorder="little").tobytes())
        if pos != total_rows:
            raise RuntimeError(f"internal error: band {band}: {pos} rows in sketches, expected {total_rows}")
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    record = {"band": band_name(band), "rows": total_rows, "seconds": time.perf_counter() - t0, **stack.describe()}
    mark_done(final, record)
    return record


def _seen_slice(work: Path, band: int | str, start: int, count: int) -> np.ndarray:
    """Bits [start, start+count) of a band's seen file, as bools."""
    first = start // 8
    last = (start + count + 7) // 8
    raw = np.fromfile(seen_path(work, band), dtype=np.uint8, count=last - first, offset=first)
    bits = np.unpackbits(raw, bitorder="little")
    return bits[start - first * 8 : start - first * 8 + count].astype(np.bool_)


def write_shard(shard: Shard, config: DedupConfig, bands: int, start: int, work: Path, out: Path) -> dict:
    """Stage 3 for one shard: verdicts from the bands' bits; kept rows and removed rows.

    ``start`` is the shard's first row in canonical order.
    """
    t0 = time.perf_counter()
    sp = sketch_path(work, shard)
    valid = _read_column(sp, "valid")
    has_sh = _read_column(sp, "n_shingles") > 0
    n = valid.shape[0]
    band_seen = np.stack([_seen_slice(work, j, start, n) for j in range(bands)], axis=1) if n else np.zeros((0, bands), bool)
    exact_seen = _seen_slice(work, EXACT_BAND, start, n)
    verdicts = combine(valid, has_sh, band_seen, exact_seen)

    reader = ShardReader(shard, config.text_column, config.id_column, config.id_column_required, config.batch_rows)
    kept_final = layout.kept_path(out, shard.stem)
    removed_final = removed_part_path(work, shard)
    for p in (kept_final, removed_final):
        p.parent.mkdir(parents=True, exist_ok=True)
    kept_tmp, removed_tmp = io.tmp_path(kept_final), io.tmp_path(removed_final)
    row = 0
    try:
        with layout.kept_writer(kept_tmp, reader.schema, config.text_column, config.compression) as kw, \
                layout.removed_writer(removed_tmp, config.compression) as rw:
            for batch in reader.batches():
                sl = slice(row, row + batch.num_rows)
                keep = verdicts.reason[sl] == 0
                kw.write_batch(filter_rows(batch, keep))
                gone = np.flatnonzero(~keep)
                if gone.size:
                    rw.write_batch(layout.removed_batch(gone, row, shard.name, reader.ids(batch),
                                                        verdicts.reason[sl], verdicts.band[sl]))
                row += batch.num_rows
        if row != n:
            raise RuntimeError(f"internal error: {shard.path}: {row} rows now, {n} when sketched (input changed?)")
        os.replace(removed_tmp, removed_final)
        os.replace(kept_tmp, kept_final)
    except BaseException:
        kept_tmp.unlink(missing_ok=True)
        removed_tmp.unlink(missing_ok=True)
        raise
    record = {
        "shard": shard.name,
        "rows": n,
        "kept": int((verdicts.reason == 0).sum()),
        "exact": int((verdicts.reason == EXACT).sum()),
        "near": int((verdicts.reason == NEAR).sum()),
        "seconds": time.perf_counter() - t0,
    }
    mark_done(removed_final, record)
    return record
