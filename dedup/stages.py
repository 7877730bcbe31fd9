"""The staged dedup: three stages that each parallelise naturally, and their layout.

1. **sketch** (per shard): exact and band keys to ``WORK/sketch/<stem>.arrow``, and the shard's exact row
   count, so filters are sized on the true corpus size.
2. **band** (per band, and once for the exact key): that band's keys over all shards in canonical order
   through one :class:`dedup.scalable.FilterStack`, one "seen before" bit per document to
   ``WORK/bands/<band>.seen``. Every document is inserted (:mod:`dedup.index`), so bands are independent
   and run in any order, anywhere. A cache-partitioned filter (:mod:`dedup._kernels.bloom`) is fed chunks
   of keys across shards (:meth:`dedup.scalable.FilterStack.batch_keys`). With ``band_splits`` n > 1 a band
   is n tasks, each inserting only the keys of its share of the partitions (:func:`split_parts`): parts
   never share a bit, so the splits' bits OR to the band's, each task holding 1/n of the filter.
3. **write** (per shard): OR the bands' bits with :func:`dedup.index.combine`; write
   ``WORK/kept/<stem>.parquet`` and ``WORK/removed/<stem>.parquet``.

A task writes its files under temporary names, renames them into place, then writes a completion record ``<file>.done``
(JSON); a resumed run skips tasks with one. Tasks write only under ``WORK``, never creating it
(:attr:`dedup.runs.RunPlan.work`); kept shards move to ``OUT/kept/`` when all stages are done. :func:`run_stages` takes
a ``map_tasks`` that runs one stage's tasks: :func:`serial_map` here, Dask in :mod:`pipelines.staged`.

Work directory layout (the only definition of it)::

    OUT/_work/run.json               the run record (dedup.runs: identity, engine, pinned index)
    WORK = OUT/_work/<run id>[-<index version>]
    WORK/sketch/<stem>.arrow         Arrow IPC file, one row per input row: valid (bool), n_shingles (int32),
                                       exact_0, exact_1 (uint64), band_00..band_{b-1} (uint64)
    WORK/bands/<name>.seen           packed bits (little-endian bit order) over all rows in canonical order;
                                       name = band-00.. or exact
    WORK/bands/<name>.<i>-of-<n>.seen  the same for split i of n, from 1 (band_splits n > 1); OR'd: the band's
    WORK/index/<name>/               the band's filter generations after this run (--index-dir)
    WORK/removed/<stem>.parquet      removed rows of one shard (layout.REMOVED_SCHEMA)
    WORK/kept/<stem>.parquet         kept rows of one shard, moved to OUT/kept/ at the end

(sketch/ and removed/: a digest of the stem where the name would be too long.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import numbers
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from itertools import accumulate
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import io, layout
from .arrow import bool_array, numeric_array
from .config import DedupConfig, dedup_config
from .index import combine
from .index_dir import INDEX_FILE, IndexDir, StaleIndexError, file_entry, index_params
from .params import bloom_parts, bloom_size, per_band_fp, plan_index, whole_index_fp
from .runs import RUN_FILE, RunPlan, execute, finish, work_dir
from .scalable import FilterStack
from .shards import Shard, ShardReader, changed_while_read
from .sketch import Sketcher

EXACT_BAND = "exact"


def band_name(band: int | str) -> str:
    return band if isinstance(band, str) else f"band-{band:02d}"


def _shard_file(work: Path, kind: str, shard: Shard, suffix: str) -> Path:
    """``WORK/<kind>/<stem><suffix>``, or a digest of the stem where it or its ``.done`` is too long a name."""
    path = work / kind / f"{shard.stem}{suffix}"
    if len(os.fsencode(done_path(path).name)) > io.NAME_MAX:
        path = path.with_name(hashlib.sha256(os.fsencode(shard.stem)).hexdigest()[:32] + suffix)
    return path


def sketch_path(work: Path, shard: Shard) -> Path:
    return _shard_file(work, "sketch", shard, ".arrow")


def seen_path(work: Path, band: int | str, split: tuple[int, int] = (0, 1)) -> Path:
    """The seen bits of a band task, of split s of n (:func:`split_parts`)."""
    s, n = split
    return work / "bands" / f"{band_name(band)}{'' if n == 1 else f'.{s + 1}-of-{n}'}.seen"


def split_parts(parts: int, split: tuple[int, int]) -> tuple[int, int]:
    """The cache partitions [lo, hi) of split s of n of a filter of ``parts`` parts."""
    s, n = split
    return s * parts // n, (s + 1) * parts // n


def removed_part_path(work: Path, shard: Shard) -> Path:
    return _shard_file(work, "removed", shard, ".parquet")


def done_path(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def read_done(path: Path) -> dict | None:
    """The completion record of ``path``, or None (none, or damaged by a kill): the task is redone."""
    try:
        return io.read_json(done_path(path))
    except io.StateError:
        return None


def task_file(work: Path, path: Path) -> Path:
    """``path``, its directories made below ``work`` but never ``work`` itself (:func:`dedup.io.make_below`)."""
    io.make_below(work, path.parent)
    return path


def sketch_shard(shard: Shard, config: DedupConfig, bands: int, rows: int, work: Path, threads: int | None = 1) -> dict:
    """Stage 1 for one shard; returns its completion record. :class:`dedup.shards.InputError` on bad input."""
    t0 = time.perf_counter()
    final = task_file(work, sketch_path(work, shard))
    state = _file_state(shard)  # before the first read: the write stage reads the file in this state, or refuses
    reader = ShardReader(shard, config.text_column, config.id_column, config.id_column_required, config.batch_rows)
    sketcher = Sketcher(config, bands, rows, threads)
    schema = pa.schema([("valid", pa.bool_()), ("n_shingles", pa.int32()), ("exact_0", pa.uint64()),
                        ("exact_1", pa.uint64()), *((f"band_{j:02d}", pa.uint64()) for j in range(bands))])
    counts = Counter(rows=0, text_bytes=0, null_text=0, empty_text=0)
    with io.replacing(final) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for batch in reader.batches():
            sk = sketcher(reader.text(batch))
            writer.write_batch(pa.record_batch([bool_array(sk.valid), numeric_array(sk.n_shingles.astype(np.int32)),
                                                *map(numeric_array, (*sk.exact.T, *sk.band_keys.T))], schema=schema))
            counts.update(rows=len(sk), text_bytes=sk.text_bytes, **sk.counts())
        _check_state(shard, state, "rewritten while sketched")
    record = {"shard": shard.name, **counts, "file": state, "seconds": time.perf_counter() - t0}
    io.write_json_atomic(done_path(final), record)
    return record


def _file_state(shard: Shard) -> list[int]:
    """Size, modification time (ns) and inode of the input file: another after a read, it was rewritten."""
    st = shard.path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _check_state(shard: Shard, state: list[int] | None, how: str) -> None:
    """:func:`dedup.shards.changed_while_read` unless the input is in ``state`` (None: a record from before states)."""
    if state is not None and _file_state(shard) != state:
        raise changed_while_read(shard, how)


def _read_columns(path: Path, *columns: str) -> list[np.ndarray]:
    with pa.memory_map(str(path), "r") as src:
        table = pa.ipc.open_file(src).read_all()
    return [table.column(c).combine_chunks().to_numpy(zero_copy_only=False) for c in columns]


def band_pass(band: int | str, shards: list[Shard], work: Path, stack, total_rows: int, save_to: Path | None = None,
              split: tuple[int, int] = (0, 1)) -> dict:
    """Stage 2 for one band (an int) or the exact key (``EXACT_BAND``) through ``stack``: writes the seen bits,
    saves ``stack`` under ``save_to`` when given, and only then writes and returns the completion record (a
    task killed at any point is redone). ``split`` (s, n), n > 1: only the keys of the cache partitions
    :func:`split_parts` (s, n) are inserted; needs a one-generation stack (not ``--index-dir``)."""
    t0 = time.perf_counter()
    final = task_file(work, seen_path(work, band, split))
    first = stack.generations[0]
    lo, hi = split_parts(first.parts, split)
    pos = 0
    column = "exact_0" if band == EXACT_BAND else f"band_{band:02d}"
    pending = np.zeros(0, dtype=np.bool_)  # bits not yet packed into a whole byte
    chunk: list[tuple[np.ndarray, np.ndarray]] = []  # shards' keys and masks not yet added

    def add_chunk(f) -> None:
        nonlocal pending
        keys = np.concatenate([c[0] for c in chunk]).astype(np.uint64, copy=False)
        bits = np.concatenate([pending, stack.add(keys, np.concatenate([c[1] for c in chunk]))])
        whole = bits.shape[0] // 8 * 8
        f.write(np.packbits(bits[:whole], bitorder="little").tobytes())
        pending = bits[whole:]
        chunk.clear()

    with io.replacing(final) as tmp, open(tmp, "wb") as f:
        # Memory: the filter plus up to stack.batch_keys() keys (or one shard's); whole chunks let a partitioned
        # filter probe one cache-sized part at a time.
        for shard in shards:
            keys, valid, n_shingles = _read_columns(sketch_path(work, shard), column, "valid", "n_shingles")
            mask = valid if band == EXACT_BAND else valid & (n_shingles > 0)
            if split[1] > 1:
                part = first.part_of(keys)
                mask &= (part >= lo) & (part < hi)
            chunk.append((keys, mask))
            pos += keys.shape[0]
            if sum(c[0].shape[0] for c in chunk) >= stack.batch_keys():
                add_chunk(f)
        if chunk:
            add_chunk(f)
        f.write(np.packbits(pending, bitorder="little").tobytes())
        if pos != total_rows:
            raise RuntimeError(f"internal error: band {band}: {pos} rows in sketches, expected {total_rows}")
    if save_to is not None:
        shutil.rmtree(save_to, ignore_errors=True)  # a killed attempt's partial save
        stack.save(task_file(work, save_to))
    record = {"band": band_name(band), "rows": total_rows, "seconds": time.perf_counter() - t0}
    if split[1] > 1:  # a split's own fill says nothing of the band's: merge_split_records adds the set bits
        record.update(split=list(split), count=stack.count, bytes=stack.nbytes, set_bits=first.set_bits(),
                      m=first.m, k=first.k)
    else:
        record.update(stack.describe())
    io.write_json_atomic(done_path(final), record)
    return record


def merge_split_records(records: list[dict]) -> dict:
    """One band's completion record from its splits': counts add up; the fp rate is the whole filter's."""
    if len(records) == 1:
        return records[0]
    first = records[0]
    fp = (sum(r["set_bits"] for r in records) / first["m"]) ** first["k"]
    return {"band": first["band"], "rows": first["rows"], "seconds": sum(r["seconds"] for r in records),
            "splits": len(records), "generations": 1, "count": sum(r["count"] for r in records),
            "bytes": first["bytes"], "predicted_fp": fp, "generation_fps": [fp]}


def _seen_slice(work: Path, band: int | str, start: int, count: int, splits: int = 1) -> np.ndarray:
    """Bits [start, start+count) of a band's seen file (OR of its ``splits`` files), as bools."""
    first, last = start // 8, (start + count + 7) // 8
    raw = np.zeros(last - first, dtype=np.uint8)
    for s in range(splits):
        raw |= np.fromfile(seen_path(work, band, (s, splits)), dtype=np.uint8, count=last - first, offset=first)
    return np.unpackbits(raw, bitorder="little")[start % 8 : start % 8 + count].astype(np.bool_)


def write_shard(shard: Shard, config: DedupConfig, bands: int, start: int, work: Path,
                splits: dict[int | str, int] | None = None) -> dict:
    """Stage 3 for one shard: verdicts from the bands' bits; kept rows (``WORK/kept/``) and removed rows.

    ``start`` is the shard's first row in canonical order; ``splits``: band (or ``EXACT_BAND``)
    -> its number of split tasks (default 1). With ``config.emit == "removed"`` no kept shard
    is written and only the id column is read (Parquet).
    """
    t0 = time.perf_counter()
    valid, n_shingles = _read_columns(sketch_path(work, shard), "valid", "n_shingles")
    n, splits = valid.shape[0], splits or {}
    band_seen = np.stack([_seen_slice(work, j, start, n, splits.get(j, 1)) for j in range(bands)], axis=1)
    verdicts = combine(valid, n_shingles > 0, band_seen, _seen_slice(work, EXACT_BAND, start, n,
                                                                     splits.get(EXACT_BAND, 1)))
    reader = ShardReader(shard, config.text_column, config.id_column, config.id_column_required, config.batch_rows)
    sketched = read_done(sketch_path(work, shard)) or {}
    if reader.num_rows != n:
        raise changed_while_read(shard, f"{n:,} rows when sketched, {reader.num_rows:,} now")
    _check_state(shard, sketched.get("file"), "rewritten since it was sketched")
    removed_final = task_file(work, removed_part_path(work, shard))
    row = 0
    with (layout.kept_shard(work, shard, reader.schema, config) as kw,
          layout.removed_writer(removed_final, config.compression) as write_removed):
        for batch in reader.batches(None if kw is not None else reader.needed_columns(text=False)):
            sl = slice(row, row + batch.num_rows)
            layout.write_verdicts(kw, write_removed, batch, row, shard.name, reader.ids(batch), verdicts.reason[sl],
                                  verdicts.band[sl])
            row += batch.num_rows
        _check_state(shard, sketched.get("file"), "rewritten while its verdicts were written")
    record = {"shard": shard.name, "rows": n, **verdicts.counts(), "seconds": time.perf_counter() - t0}
    io.write_json_atomic(done_path(removed_final), record)
    return record


# ------------------------------------------------------------------------ the sequence
#: ``map_tasks(label, fn, items) -> results``: ``fn(*args)`` for each ``args`` in ``items`` (a stage's
#: independent tasks), results in item order.
MapTasks = Callable[[str, Callable, list[tuple]], list]


def serial_map(label: str, fn: Callable, items: list[tuple]) -> list:
    """Run a stage's tasks one after another in this process."""
    return [fn(*args) for args in items]


def band_task(band: int | str, shards: list[Shard], work: Path, total: int, fp: float, capacity: int, indexed: bool,
              load_from: str | None, split: tuple[int, int] = (0, 1)) -> dict:
    """Stage 2 task: a fresh stack (growing when ``indexed``) or the pinned version's (``load_from``), its
    :func:`band_pass`, and when ``indexed`` the stack saved under ``WORK/index/<name>``."""
    stack = FilterStack.load(Path(load_from)) if load_from else FilterStack(fp, capacity, scalable=indexed)
    save_to = work / "index" / band_name(band) if indexed else None
    return band_pass(band, shards, work, stack, total, save_to=save_to, split=split)


def run_stages(plan: RunPlan, config: DedupConfig, *, map_tasks: MapTasks = serial_map,
               index: IndexDir | None = None, checkpoint: Callable[[str], None] = lambda point: None,
               log: Callable[[str], None] = lambda m: None, band_splits_requested: int = 1) -> dict:
    """Run (or resume) the three stages of ``plan`` (from :func:`dedup.runs.prepare`, not complete) and finish it;
    return the manifest. ``index``: the ``--index-dir``, its version pinned in the run record (``plan.checked``: the
    inputs' :meth:`IndexDir.check_not_held`, None on a resume; a resume that finds another run's newer version re-pins
    to it, checked again); ``checkpoint``: called with ``"finalize"`` once stages 1-3 are done and with ``"installed"``
    after the index install (fault injection in tests); ``band_splits_requested``: split tasks per band, >= 1
    (``--band-splits``, checked by its callers; not with ``index``).
    """
    t_start = time.perf_counter()
    shards, out = plan.shards, plan.out
    bands, rows = config.banding()
    pinned = plan.record.get("index_version")
    if index is not None and plan.resume and index.current != pinned and not index.holds_run(plan.record["run_id"]):
        # as a starting run does: the new version may hold these inputs
        checked = index.check_not_held(shards, config.text_column)
        log(f"{index.path}: another run installed version {index.current} since this run started from "
            f"{pinned or 'an empty index'}; redoing the band and write stages against it")
        old, pinned = plan.work, index.current
        plan = dataclasses.replace(plan, record={**plan.record, "index_version": pinned}, checked=checked)  # a new WORK
        io.write_json_atomic(work_dir(out) / RUN_FILE, plan.record)
        plan.work.mkdir(exist_ok=True)
        if (old / "sketch").is_dir() and not (plan.work / "sketch").exists():  # sketches do not depend on the index
            os.replace(old / "sketch", plan.work / "sketch")
        for d in (old, out / layout.KEPT_DIR):
            shutil.rmtree(d, ignore_errors=True)
    work = plan.work
    work.mkdir(exist_ok=True)
    timings = {}

    # Stage 1: sketches (and each shard's exact row count).
    t0 = time.perf_counter()
    map_tasks("sketch", sketch_shard, [(s, config, bands, rows, work) for s in shards
                                       if read_done(sketch_path(work, s)) is None])
    infos = [io.read_json(done_path(sketch_path(work, s)), ("rows",)) for s in shards]
    total = sum(i["rows"] for i in infos)
    timings["sketch"] = time.perf_counter() - t0

    # Stage 2: one task per band, plus the exact key.
    t0 = time.perf_counter()
    names = list(range(bands)) + [EXACT_BAND]
    capacity = config.capacity or max(total, 1)
    fps = {b: config.exact_fp if b == EXACT_BAND else per_band_fp(config.fp, bands) for b in names}
    # a band's tasks: as requested (>= 1), at most its filter's cache partitions
    n_splits = {b: 1 if index is not None else min(int(band_splits_requested),
                                                   bloom_parts(bloom_size(capacity, fps[b])[0])) for b in names}
    todo_b = [(b, (s, n_splits[b])) for b in names for s in range(n_splits[b])
              if read_done(seen_path(work, b, (s, n_splits[b]))) is None]
    try:
        map_tasks("band", band_task, [(b, shards, work, total, fps[b], capacity, index is not None,
                                       str(index.path / pinned / band_name(b)) if index is not None and pinned
                                       else None, split) for b, split in todo_b])
    except io.StateError as e:  # the pinned version, loaded outside the index's lock, gone: say why, not "cannot read"
        if index is None or pinned is None or str(index.path / pinned) not in str(e) \
                or (now := index.load_current([])[0]) in (pinned, None):
            raise
        raise StaleIndexError(f"{index.path / INDEX_FILE}: another run or Deduplicator installed version {now} while "
                              f"this run worked from {pinned}; rerun the same command (it keeps its sketches and "
                              "decides against the new version)") from None
    band_records = {band_name(b): merge_split_records([io.read_json(done_path(seen_path(work, b, (s, n_splits[b]))),
                                                                    ("rows", "bytes"))
                                                       for s in range(n_splits[b])]) for b in names}
    timings["band"] = time.perf_counter() - t0

    # Stage 3: kept shards and removed rows per shard.
    t0 = time.perf_counter()
    starts = accumulate((i["rows"] for i in infos), initial=0)
    map_tasks("write", write_shard, [(s, config, bands, start, work, n_splits) for s, start in zip(shards, starts)
                                     if read_done(removed_part_path(work, s)) is None])
    timings["write"] = time.perf_counter() - t0

    checkpoint("finalize")
    for s in shards:  # now that every task is done (when resumed here, some may have moved already)
        kept, final = layout.kept_path(work, s.stem), layout.kept_path(out, s.stem)
        if kept.exists():
            io.make_below(out, final.parent)
            os.replace(kept, final)
    written = [io.read_json(done_path(removed_part_path(work, s)), ("kept", "exact", "near")) for s in shards]
    inputs = [layout.input_entry(s, {**w, **i}) for s, i, w in zip(shards, infos, written)]  # rows: as sketched
    with layout.removed_writer(layout.removed_path(out), config.compression) as write_removed:
        for s in shards:
            write_removed(pq.read_table(removed_part_path(work, s)))
    index_meta = None
    if index is not None:
        entries = plan.checked or [file_entry(s, config.text_column) for s in shards]
        files = [{**f, "rows": i["rows"]} for f, i in zip(entries, infos)]
        index.install(work / "index", [band_name(b) for b in names], pinned, plan.record["run_id"], files, total)
        index_meta = index.summary()
        checkpoint("installed")
    bands_only = {n: r for n, r in band_records.items() if n != EXACT_BAND}
    index_body = {"backend": "lshbloom", "plan": plan_index(config.threshold, config.num_perm, capacity, config.fp,
                                                            bands, rows).to_dict(growing=index is not None),
                  "bytes": {"bands": sum(r["bytes"] for r in bands_only.values()),
                            "exact": band_records[EXACT_BAND]["bytes"]},
                  "predicted_fp": whole_index_fp([p for r in bands_only.values() for p in r["generation_fps"]]),
                  "bands": band_records, "index_dir": index_meta}
    return finish(plan, layout.dedup_manifest("staged", config, inputs, index_body, timings,
                                              time.perf_counter() - t_start))


def dedup_staged(inputs, out, config: DedupConfig = DedupConfig(), *, map_tasks: MapTasks = serial_map,
                 index_dir=None, force: bool = False, log: Callable[[str], None] = lambda m: None,
                 checkpoint: Callable[[str], None] = lambda point: None, band_splits: int = 1) -> dict:
    """The staged engine: :func:`run_stages` under the run protocol (:func:`dedup.runs.execute`); returns the
    manifest. Without an index directory, the same outputs, byte for byte, as the fused engine, whatever
    ``band_splits``. ``map_tasks``: :func:`serial_map`, or Dask's (:func:`pipelines.staged.run_staged`).

    Example:
        >>> import pyarrow as pa, pyarrow.parquet as pq, tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> pq.write_table(pa.table({"text": ["a b c d e f", "A b, c d e f!", "x y z"]}), d / "in.parquet")
        >>> m = dedup_staged([d / "in.parquet"], d / "out")
        >>> m["engine"], m["totals"]["kept"], m["totals"]["removed"]
        ('staged', 2, {'exact': 1, 'near': 0})
    """
    if dedup_config(config).index != "lshbloom":
        raise ValueError(f"the staged engine uses LSHBloom filters; --index {config.index} needs --engine fused")
    if isinstance(band_splits, bool) or not isinstance(band_splits, numbers.Integral):
        raise ValueError(f"--band-splits must be an integer >= 1, got {band_splits!r}")
    if band_splits < 1 or (band_splits > 1 and index_dir):
        raise ValueError(f"--band-splits must be >= 1, got {band_splits}" if band_splits < 1 else
                         "--band-splits needs a run without --index-dir (its filters grow by generations)")
    index = IndexDir(index_dir, index_params(config, *config.banding())) if index_dir is not None else None
    run = partial(run_stages, config=config, map_tasks=map_tasks, index=index, checkpoint=checkpoint, log=log,
                  band_splits_requested=band_splits)
    # bad input, damaged state, full disk: nothing is left behind; a kill or a lost cluster leaves _work/ to resume
    return execute(inputs, out, config, run, clear_on=(ValueError, OSError), engine="staged",
                   index_dir=index.path if index else None, force=force, log=log,
                   check=partial(index.check_not_held, text_column=config.text_column) if index else None,
                   extra_record=lambda: {"index_version": index.current if index else None})
