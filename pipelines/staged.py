"""Staged dedup on Dask: fan the stages of :mod:`dedup.stages` out over shards and bands.

Tasks take file paths (shards, the work directory), never data. Each stage waits for the
previous one; within a stage, tasks whose completion record exists are skipped, so
rerunning an interrupted command resumes it. A worker that dies mid-task has its task
rescheduled by the Dask scheduler; every task writes under temporary names and renames,
so a half-done task leaves nothing that a retry or a resume could mistake for output.

The run is identified by its decision config, its input files (names, sizes, mtimes) and
its index directory; ``WORK/run.json`` records that identity. Resuming needs the same
identity; a different one is an error unless ``force``.

Fault injection, for tests of exactly these claims (never set in normal use):
``MEMDEDUP_KILL_AT=STAGE:N`` SIGKILLs the whole process group of the run once N tasks of
STAGE (sketch, band, write) have completed, or ``finalize:0`` just before the removed-rows
table and manifest are written; ``MEMDEDUP_KILL_WORKER_ONCE=PATH`` makes the first task
that creates PATH SIGKILL its own worker process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq

from dedup import io, layout
from dedup import stages as st
from dedup.config import DedupConfig
from dedup.engine import OutputExistsError, validate_shards
from dedup.params import optimal_param, per_band_fp, plan_index
from dedup.scalable import FilterStack
from dedup.shards import Shard, discover

Log = Callable[[str], None]

INDEX_FILE = "index.json"


class IndexMismatchError(ValueError):
    """An index directory built with other parameters."""


@contextmanager
def dask_client(workers: int | None = None, threads_per_worker: int = 1, scheduler: str | None = None, log: Log = print):
    """A ``distributed.Client``: to ``scheduler`` (an address like ``tcp://host:8786`` or
    a scheduler JSON file) if given, else to a new ``LocalCluster`` of worker processes."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler_file=scheduler) if scheduler.endswith(".json") else Client(scheduler)
        cluster = None
    else:
        n = workers or max(1, (os.cpu_count() or 1) // max(threads_per_worker, 1))
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=":0",
            silence_logs=40,
            # Numba threads inside a task: the tasks are serial; Dask runs them side by side.
            env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        )
        client = Client(cluster)
    try:
        log(f"dask: {len(client.scheduler_info()['workers'])} worker(s), dashboard {client.dashboard_link}")
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _kill_point(label: str, done: int) -> None:
    """Fault injection: SIGKILL this run's process group at ``MEMDEDUP_KILL_AT``."""
    if os.environ.get("MEMDEDUP_KILL_AT") == f"{label}:{done}":
        os.killpg(os.getpgid(0), signal.SIGKILL)


def _task(fn, *args):
    """What a worker runs: the stage function (after the worker-kill fault injection)."""
    marker = os.environ.get("MEMDEDUP_KILL_WORKER_ONCE")
    if marker:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            os.kill(os.getpid(), signal.SIGKILL)
        except FileExistsError:
            pass
    return fn(*args)


def _run_stage(client, label: str, fn, items: list, log: Log) -> list:
    """Map ``fn`` over ``items`` on the cluster; log progress; results in item order.

    A task that raises is retried twice; one whose worker dies is rescheduled by the
    scheduler (up to ``distributed.scheduler.allowed-failures`` times).
    """
    from distributed import as_completed

    if not items:
        return []
    t0 = last = time.perf_counter()
    futures = [client.submit(_task, fn, *args, key=f"{label}-{i}-{time.time_ns()}", pure=False, retries=2)
               for i, args in enumerate(items)]
    done = 0
    for fut in as_completed(futures):
        fut.result()  # raise a task's error here, naming its input
        done += 1
        _kill_point(label, done)
        now = time.perf_counter()
        if done == len(futures) or now - last > 2:
            last = now
            log(f"{label}: {done}/{len(futures)} tasks ({now - t0:.1f} s)")
    return client.gather(futures)


# ------------------------------------------------------------------------ index dirs
def _index_params(config: DedupConfig, bands: int, rows: int) -> dict:
    keys = ("threshold", "num_perm", "ngram", "unit", "nfkc", "scheme", "seed", "fp", "exact_fp", "band_key")
    return {**{k: getattr(config, k) for k in keys}, "bands": bands, "rows": rows}


def load_index_meta(index_dir: Path, config: DedupConfig, bands: int, rows: int) -> dict | None:
    """The index directory's metadata, checked against this run's parameters."""
    path = Path(index_dir) / INDEX_FILE
    if not path.exists():
        return None
    meta = json.loads(path.read_text(encoding="utf-8"))
    want = _index_params(config, bands, rows)
    for k, v in want.items():
        if meta["params"].get(k) != v:
            raise IndexMismatchError(
                f"{path}: index built with {k}={meta['params'].get(k)!r}, this run has {k}={v!r}; "
                "use the same parameters or another --index-dir"
            )
    return meta


def current_index_version(index_dir: Path) -> Path | None:
    """The directory of the index's current version (``index.json``'s ``current``)."""
    path = Path(index_dir) / INDEX_FILE
    if not path.exists():
        return None
    return Path(index_dir) / json.loads(path.read_text(encoding="utf-8"))["current"]


def _band_task(band, shards, work: Path, fp: float, capacity: int, scalable: bool, index_dir: str | None):
    """Stage 2 task: a fresh or loaded filter stack, the band pass, the stack saved."""
    name = st.band_name(band)
    version = current_index_version(Path(index_dir)) if index_dir else None
    if version is not None:
        stack = FilterStack.load(version / name)
    else:
        stack = FilterStack(fp, capacity, scalable=scalable)
    total = sum(json.loads(st.done_path(st.sketch_path(work, s)).read_text())["rows"] for s in shards)
    record = st.band_pass(band, shards, work, stack, total)
    if index_dir:
        stack.save(work / "index" / name)
    return record


def _install_index(work: Path, index_dir: Path, names: list[str], params: dict, documents: int) -> dict:
    """Copy this run's filter stacks into a new version directory of ``index_dir``, then
    point ``index.json`` at it (atomically) and remove older versions. A crash at any
    point leaves ``index.json`` naming a complete version.

    Layout: ``INDEX/index.json`` (params, documents, current version, per-band summary)
    and ``INDEX/v-NNNNNN/<band-XX|exact>/`` (:class:`dedup.scalable.FilterStack` dirs).
    """
    index_dir.mkdir(parents=True, exist_ok=True)
    old = current_index_version(index_dir)
    number = int(old.name.split("-")[1]) + 1 if old is not None else 1
    version = index_dir / f"v-{number:06d}"
    shutil.rmtree(version, ignore_errors=True)
    for name in names:
        shutil.copytree(work / "index" / name, version / name)
    stacks = {n: FilterStack.load(version / n).describe() for n in names}
    meta = {"format": 1, "params": params, "documents": documents, "current": version.name, "stacks": stacks}
    io.write_json_atomic(index_dir / INDEX_FILE, meta)
    for stale in index_dir.glob("v-*"):
        if stale.name != version.name:
            shutil.rmtree(stale, ignore_errors=True)
    return meta


# ------------------------------------------------------------------------ the run
def run_staged(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    config: DedupConfig = DedupConfig(),
    *,
    client=None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    scheduler: str | None = None,
    index_dir: str | os.PathLike | None = None,
    force: bool = False,
    log: Log = print,
) -> dict:
    """Deduplicate ``inputs`` into ``out`` in three Dask stages; return the manifest.

    Same outputs and decisions as :func:`dedup.engine.dedup_files` (without an index
    directory). Rerunning a completed run with the same identity is a no-op; an
    interrupted one resumes.
    """
    t_start = time.perf_counter()
    if config.index != "lshbloom":
        raise ValueError(f"the staged engine uses LSHBloom filters; --index {config.index} needs --engine fused")
    out = Path(out)
    index_dir = Path(index_dir).resolve() if index_dir else None
    shards = discover(list(inputs), exclude=out)
    validate_shards(shards, config)
    bands, rows = (config.bands, config.rows) if config.bands else optimal_param(config.threshold, config.num_perm)
    if index_dir:
        load_index_meta(index_dir, config, bands, rows)
    identity = layout.run_identity(config.decision_dict(), shards, index_dir)
    work = st.work_dir(out)
    try:
        previous = layout.check_completed(out, identity, force)
    except FileExistsError as e:
        raise OutputExistsError(str(e)) from None
    if previous is not None:
        log(f"{out}: already complete for these inputs and config (use --force to redo)")
        return previous
    run_file = work / "run.json"
    if run_file.exists() and not force:
        recorded = json.loads(run_file.read_text(encoding="utf-8"))
        if recorded != identity:
            diff = sorted(k for k in identity["config"] if recorded.get("config", {}).get(k) != identity["config"][k])
            what = f"config keys {', '.join(diff)}" if diff else "inputs or index directory"
            raise OutputExistsError(f"{out} holds an unfinished run with different {what}; use --force to start over")
    if force:
        layout.clear_outputs(out)
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    layout.remove_stale_temporaries(out)
    io.write_json_atomic(run_file, identity)

    timings = {}
    ctx = dask_client(workers, threads_per_worker, scheduler, log) if client is None else _nullcontext(client)
    with ctx as c:
        # Stage 1: sketches (and the exact row count).
        t0 = time.perf_counter()
        todo = [s for s in shards if st.read_done(st.sketch_path(work, s)) is None]
        _run_stage(c, "sketch", st.sketch_shard, [(s, config, bands, rows, work) for s in todo], log)
        infos = [st.read_done(st.sketch_path(work, s)) for s in shards]
        total = sum(i["rows"] for i in infos)
        timings["sketch"] = time.perf_counter() - t0

        # Stage 2: one task per band, plus the exact key.
        t0 = time.perf_counter()
        prior = load_index_meta(index_dir, config, bands, rows) if index_dir else None
        scalable = index_dir is not None
        band_fp = per_band_fp(config.fp, bands)
        names = list(range(bands)) + [st.EXACT_BAND]
        todo_b = [b for b in names if st.read_done(st.seen_path(work, b)) is None]
        _run_stage(
            c, "band", _band_task,
            [(b, shards, work, config.exact_fp if b == st.EXACT_BAND else band_fp, config.capacity or max(total, 1), scalable,
              str(index_dir) if index_dir else None) for b in todo_b],
            log,
        )
        band_records = {st.band_name(b): st.read_done(st.seen_path(work, b)) for b in names}
        timings["band"] = time.perf_counter() - t0

        # Stage 3: kept shards and removed rows per shard.
        t0 = time.perf_counter()
        starts, pos = [], 0
        for i in infos:
            starts.append(pos)
            pos += i["rows"]
        todo_w = [(s, config, bands, start, work, out) for s, start in zip(shards, starts)
                  if st.read_done(st.removed_part_path(work, s)) is None]
        _run_stage(c, "write", st.write_shard, todo_w, log)
        timings["write"] = time.perf_counter() - t0

    _kill_point("finalize", 0)
    written = [st.read_done(st.removed_part_path(work, s)) for s in shards]
    for s, info, rec in zip(shards, infos, written):
        if rec["kept"] + rec["exact"] + rec["near"] != info["rows"]:
            raise RuntimeError(f"internal error: {s.path}: kept + removed != {info['rows']} rows")
    _concat_removed(work, shards, out, config)
    index_meta = None
    if index_dir:
        index_meta = _install_index(work, index_dir, [st.band_name(b) for b in names],
                                    _index_params(config, bands, rows),
                                    (prior or {}).get("documents", 0) + total)
    plan = plan_index(config.threshold, config.num_perm, max(total, 1), config.fp, bands, rows)
    manifest = _manifest(config, plan, shards, infos, written, band_records, timings,
                         time.perf_counter() - t_start, identity, index_meta)
    return io.write_stage_manifest(out, "dedup", manifest)


@contextmanager
def _nullcontext(value):
    yield value


def _concat_removed(work: Path, shards: list[Shard], out: Path, config: DedupConfig) -> None:
    final = layout.removed_path(out)
    tmp = io.tmp_path(final)
    with layout.removed_writer(tmp, config.compression) as w:
        for s in shards:
            part = pq.read_table(st.removed_part_path(work, s))
            if part.num_rows:
                w.write_table(part)
    os.replace(tmp, final)


def _manifest(config, plan, shards, infos, written, band_records, timings, wall, identity, index_meta) -> dict:
    inputs = [
        layout.input_entry(s, i["rows"], w["kept"], w["exact"], w["near"], i["null_text"], i["empty_text"],
                           i["text_bytes"])
        for s, i, w in zip(shards, infos, written)
    ]
    miss = 1.0
    for n, r in band_records.items():
        if n != st.EXACT_BAND:
            miss *= 1 - r["predicted_fp"]
    index = {
        "backend": "lshbloom",
        "plan": plan.to_dict(),
        "bytes": {"bands": sum(r["bytes"] for n, r in band_records.items() if n != st.EXACT_BAND),
                  "exact": band_records[st.EXACT_BAND]["bytes"]},
        "predicted_fp": 1 - miss,
        "bands": band_records,
        "index_dir": index_meta,
    }
    return layout.dedup_manifest("staged", config, inputs, index, timings, wall, identity=identity)
