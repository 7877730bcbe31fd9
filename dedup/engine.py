"""The fused, single-process dedup engine: shards in, kept shards + removed table out.

One streaming pass in canonical order (files sorted by path, rows in file order); memory is one batch plus
the index. Output layout: :mod:`dedup.layout`. Decisions: :mod:`dedup.index`.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import pyarrow as pa

from . import kernels, layout, runs
from .config import DedupConfig, dedup_config
from .arrow import bool_array, numeric_array, take_strings
from .index import make_index
from .params import plan_index
from .shards import ShardReader, count_rows
from .sketch import Sketcher

ProgressFn = Callable[[dict], None]


class _Timer:
    """Wall and CPU seconds (this process's, all threads) per phase, each since the last :meth:`mark` or :meth:`add`."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(("read", "sketch", "index", "write"), 0.0)
        self.cpu = dict(self.seconds)
        self.mark()

    def mark(self) -> None:
        self._t, self._c = time.perf_counter(), time.process_time()

    def add(self, phase: str) -> None:
        t, c = time.perf_counter(), time.process_time()
        self.seconds[phase] += t - self._t
        self.cpu[phase] += c - self._c
        self._t, self._c = t, c


class _Locator:
    """Global document number -> (shard, row, id), for backends that name the earlier duplicate (memory grows
    with the corpus, as theirs does)."""

    def __init__(self, shard_names: list[str]) -> None:
        self.shard_names = shard_names
        self.shard_idx, self.rows, self.ids = [], [], []  # per batch: int32 shard numbers, int64 rows, ids
        self._cat: tuple[np.ndarray, np.ndarray, pa.Array] | None = None

    def add(self, shard_idx: int, start_row: int, ids: pa.Array) -> None:
        n = len(ids)
        self.shard_idx.append(np.full(n, shard_idx, dtype=np.int32))
        self.rows.append(np.arange(start_row, start_row + n, dtype=np.int64))
        self.ids.append(ids)
        self._cat = None

    def earlier(self, duplicate_of: np.ndarray, gone: np.ndarray) -> tuple[pa.Array, pa.Array, pa.Array] | None:
        """(id, shard, row) of the earlier duplicate of each removed row ``gone`` of a batch (``duplicate_of``: the
        batch's; null where -1, unknown), or None when none is known."""
        numbers = duplicate_of[gone]
        known = numbers >= 0
        if not known.any():
            return None
        import pyarrow.compute as pc  # the datasketch (lsh) backend only

        if self._cat is None:
            self._cat = (np.concatenate(self.shard_idx), np.concatenate(self.rows),
                         pa.concat_arrays([a.cast(pa.string()) for a in self.ids]))
        sidx, rows, ids = self._cat
        safe = np.where(known, numbers, 0)
        unknown = bool_array(~known)
        nulls = pa.nulls(len(numbers), pa.string())
        return (pc.if_else(unknown, nulls, ids.take(numeric_array(safe))),
                pc.if_else(unknown, nulls, take_strings(self.shard_names, sidx[safe])),
                numeric_array(np.where(known, rows[safe], 0), valid=known))


def dedup_files(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, config: DedupConfig = DedupConfig(), *,
                threads: int | None = None, force: bool = False, progress: ProgressFn | None = None,
                log: Callable[[str], None] = lambda message: None) -> dict:
    """Deduplicate input files, directories or globs into ``out`` (:mod:`dedup.layout`) under the run protocol
    of :mod:`dedup.runs`; return the manifest. ``threads``: Numba threads for sketching and threads probing the
    bands' filters (capped at ``NUMBA_NUM_THREADS``: :func:`dedup.kernels.use_threads`; default: the calling
    thread's Numba count for sketching, all cores unless set, and one for the bands); ``progress``: called after
    every batch with a dict of counters (``rows`` so far of ``total_rows``, None when unknown: JSONL with a
    ``capacity``); ``log``: told what the protocol decided.

    Raises:
        InputError: bad input (names the file, and row or line); nothing is left behind.
        OutputExistsError: see :mod:`dedup.runs` (steps 3 and 4, ``force``).
        InUseError: another run is writing ``out`` now (:func:`dedup.io.claim`).

    >>> import pyarrow as pa, pyarrow.parquet as pq, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> pq.write_table(pa.table({"text": ["a b c d e f", "A b, c d e f!", "x y z"]}), d / "in.parquet")
    >>> m = dedup_files([d / "in.parquet"], d / "out")
    >>> m["totals"]["kept"], m["totals"]["removed"]
    (2, {'exact': 1, 'near': 0})
    """
    t_start = time.perf_counter()
    if dedup_config(config).index != "lshbloom":
        from .baselines import require

        require(config.index)  # before prepare() may clear an earlier run (--force)
    # any failure clears the outputs: the fused engine never resumes, a rerun starts afresh
    return runs.execute(inputs, out, config, lambda plan: _run(plan, config, threads, progress, t_start),
                        clear_on=BaseException, engine="fused", force=force, log=log)


def _run(plan: runs.RunPlan, config: DedupConfig, threads: int | None, progress: ProgressFn | None,
         t_start: float) -> dict:
    out, shards = plan.out, plan.shards
    # the progress total: from metadata for Parquet and Arrow; JSONL's costs a pass, made only to size the filters
    rows = count_rows(shards) if config.capacity is None or all(s.fmt in ("parquet", "arrow") for s in shards) else None
    capacity = config.capacity or max(rows, 1)
    plan_ = plan_index(config.threshold, config.num_perm, capacity, config.fp, config.bands, config.rows)
    threads = kernels.use_threads(threads)
    sketcher = Sketcher(config, plan_.bands, plan_.rows, threads)
    index = make_index(config.index, plan_, scheme=config.scheme, num_perm=config.num_perm, seed=config.seed,
                       exact_fp=config.exact_fp, threads=threads or 1)
    locator = _Locator([s.name for s in shards]) if config.index == "lsh" else None

    timer = _Timer()
    inputs = []  # the manifest's entries of the shards so far
    total = Counter()  # over the shards so far
    try:
        with layout.removed_writer(layout.removed_path(out), config.compression) as write_removed:
            for si, shard in enumerate(shards):
                timer.mark()
                reader = ShardReader(shard, config.text_column, config.id_column, config.id_column_required,
                                     config.batch_rows)
                st = Counter(rows=0, kept=0, exact=0, near=0, null_text=0, empty_text=0, text_bytes=0)
                timer.add("read")
                with layout.kept_shard(out, shard, reader.schema, config) as kept:
                    # --emit removed: no kept shard, and only the text and id columns are read
                    for batch in reader.batches(None if kept is not None else reader.needed_columns()):
                        timer.add("read")
                        sk = sketcher(reader.text(batch))
                        timer.add("sketch")
                        numbers = np.arange(total["rows"], total["rows"] + batch.num_rows, dtype=np.int64)
                        verdicts = index.process(sk, numbers)
                        ids = reader.ids(batch)
                        if locator is not None:
                            locator.add(si, st["rows"], ids)
                        timer.add("index")
                        earlier = None if locator is None else partial(locator.earlier, verdicts.duplicate_of)
                        layout.write_verdicts(kept, write_removed, batch, st["rows"], shard.name, ids,
                                              verdicts.reason, verdicts.band, earlier)
                        for c in (st, total):
                            c.update(rows=batch.num_rows, **verdicts.counts(), **sk.counts(), text_bytes=sk.text_bytes)
                        timer.add("write")
                        if progress is not None:
                            progress({"rows": total["rows"], "total_rows": rows, "bytes": total["text_bytes"],
                                      "elapsed": time.perf_counter() - t_start, "removed_exact": total["exact"],
                                      "removed_near": total["near"], "shard": si + 1, "shards": len(shards)})
                inputs.append(layout.input_entry(shard, st))
        idx = {"backend": index.name, "plan": plan_.to_dict(), "bytes": index.nbytes(),
               "predicted_fp": index.predicted_fp(), **index.stats()}
        return runs.finish(plan, layout.dedup_manifest("fused", config, inputs, idx, timer.seconds,
                                                       time.perf_counter() - t_start, phases_cpu=timer.cpu,
                                                       threads=threads))
    finally:
        index.close()
