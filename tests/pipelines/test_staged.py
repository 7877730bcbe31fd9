"""Staged dedup on real ``distributed`` clusters (worker processes): same decisions as the
fused engine whatever the number of workers or shards, resume after SIGKILL, a worker
killed mid-task, completed runs as no-ops, and the incremental index."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dedup import DedupConfig, dedup_files
from dedup.runs import OutputExistsError
from dedup.scalable import FilterStack
from dedup.synthetic import generate_corpus, write_shards
from pipelines.staged import IndexMismatchError, run_staged

ROOT = Path(__file__).resolve().parents[2]
N_DOCS = 1500


def quiet(_msg: str) -> None:
    pass


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[pa.Table, Path]:
    d = tmp_path_factory.mktemp("staged")
    table = generate_corpus(N_DOCS, mean_bytes=400, exact_frac=0.08, near_frac=0.15, seed=11)
    write_shards(table, d / "in6", 6)
    write_shards(table, d / "in2", 2)
    return table, d


@pytest.fixture(scope="module")
def fused(corpus) -> Path:
    _, d = corpus
    dedup_files([d / "in6"], d / "fused", DedupConfig(), threads=1)
    return d / "fused"


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        yield c


def outputs(out: Path) -> dict[str, bytes]:
    """Every output file's bytes (removed.parquet and kept shards)."""
    files = [out / "removed.parquet", *sorted((out / "kept").glob("*.parquet"))]
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


def same_tables(a: Path, b: Path) -> None:
    assert pq.read_table(a / "removed.parquet").equals(pq.read_table(b / "removed.parquet"))
    ka, kb = sorted((a / "kept").glob("*.parquet")), sorted((b / "kept").glob("*.parquet"))
    assert [p.name for p in ka] == [p.name for p in kb]
    for x, y in zip(ka, kb):
        assert pq.read_table(x).equals(pq.read_table(y))


def test_staged_equals_fused_for_1_2_and_4_workers(corpus, fused):
    _, d = corpus
    runs = {}
    for workers in (1, 2, 4):
        out = d / f"staged-w{workers}"
        m = run_staged([d / "in6"], out, DedupConfig(), workers=workers, log=quiet)
        assert m["engine"] == "staged" and m["totals"]["rows"] == N_DOCS
        runs[workers] = outputs(out)
        same_tables(out, fused)
    assert runs[1] == runs[2] == runs[4]  # byte-identical
    removed = pq.read_table(fused / "removed.parquet")
    assert set(removed.column("reason").to_pylist()) == {"exact", "near"}


def test_same_rows_in_fewer_files_same_decisions(corpus, client, fused):
    _, d = corpus
    m = run_staged([d / "in2"], d / "staged-2files", DedupConfig(), client=client, log=quiet)
    a = pq.read_table(d / "staged-2files" / "removed.parquet").select(["id", "reason", "band"])
    b = pq.read_table(fused / "removed.parquet").select(["id", "reason", "band"])
    assert a.equals(b)
    assert m["totals"]["shards"] == 2


def test_completed_run_is_a_noop_and_other_config_is_an_error(corpus, client):
    _, d = corpus
    out = d / "noop"
    first = run_staged([d / "in6"], out, DedupConfig(), client=client, log=quiet)
    before = outputs(out)
    messages: list[str] = []
    again = run_staged([d / "in6"], out, DedupConfig(), client=client, log=messages.append)
    assert again == first and outputs(out) == before
    assert any("already complete" in m for m in messages)
    with pytest.raises(OutputExistsError, match="threshold"):
        run_staged([d / "in6"], out, DedupConfig(threshold=0.7), client=client, log=quiet)
    redone = run_staged([d / "in6"], out, DedupConfig(threshold=0.7), client=client, force=True, log=quiet)
    assert redone["config"]["threshold"] == 0.7


def _cli(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "dedup", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})}, start_new_session=True,
    )


@pytest.mark.parametrize("kill_at", ["sketch:2", "band:4", "write:3", "finalize:0"])
def test_resume_after_sigkill_gives_identical_outputs(corpus, kill_at, tmp_path):
    _, d = corpus
    reference = d / "staged-w2"
    if not (reference / "manifest.json").exists():
        run_staged([d / "in6"], reference, DedupConfig(), workers=2, log=quiet)
    out = tmp_path / "out"
    args = [str(d / "in6"), "--out", str(out), "--engine", "staged", "--workers", "2", "--quiet"]
    killed = _cli(args, {"MEMDEDUP_KILL_AT": kill_at})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (out / "manifest.json").exists()
    resumed = _cli(args)
    assert resumed.returncode == 0, resumed.stderr
    assert outputs(out) == outputs(reference)
    assert not list(out.rglob(".*.tmp-*"))


def test_worker_killed_during_a_task(corpus, tmp_path, fused):
    _, d = corpus
    marker = tmp_path / "killed-once"
    out = tmp_path / "out"
    r = _cli([str(d / "in6"), "--out", str(out), "--engine", "staged", "--workers", "2", "--quiet"],
             {"MEMDEDUP_KILL_WORKER_ONCE": str(marker)})
    assert r.returncode == 0, r.stderr
    assert marker.exists()  # a worker process really died inside a task
    same_tables(out, fused)


def test_a_second_run_into_an_out_in_use_is_refused_and_the_first_resumes(corpus, tmp_path, fused):
    """Two runs into one --out at once (a rerun started while the first still runs, a requeued
    job): the second found the first's run record, cleared "the outputs of an unfinished run"
    under the running one and wrote its own beside them. It is refused in one line, exit 2,
    touching nothing; the first, killed later, resumes."""
    _, d = corpus
    out, hold = tmp_path / "out", tmp_path / "held"
    args = [str(d / "in6"), "--out", str(out), "--quiet"]
    staged = ["--engine", "staged", "--workers", "1"]
    first = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "dedup", *args, *staged], cwd=ROOT,
                             env={**os.environ, "MEMDEDUP_HOLD_TASK_ONCE": str(hold)}, start_new_session=True,
                             stderr=subprocess.DEVNULL)
    try:
        _wait_for(hold)  # the first run holds its first task
        files = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
        for engine in ([], staged, ["--force"]):
            second = _cli([*args, *engine])
            assert second.returncode == 2 and len(second.stderr.strip().splitlines()) == 1, second.stderr
            assert f"{out} is in use by another memdedup run" in second.stderr, second.stderr
            assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == files
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    resumed = _cli([*args, *staged])
    assert resumed.returncode == 0, resumed.stderr
    assert outputs(out) == outputs(fused)


def test_incremental_index_matches_one_combined_run(tmp_path, client):
    table = generate_corpus(1200, mean_bytes=400, exact_frac=0.08, near_frac=0.15, seed=21)
    write_shards(table.slice(0, 600), tmp_path / "batch1", 2)
    write_shards(table.slice(600), tmp_path / "batch2", 2)
    write_shards(table, tmp_path / "all", 4)
    index = tmp_path / "index"
    m1 = run_staged([tmp_path / "batch1"], tmp_path / "o1", DedupConfig(), client=client, index_dir=index, log=quiet)
    m2 = run_staged([tmp_path / "batch2"], tmp_path / "o2", DedupConfig(), client=client, index_dir=index, log=quiet)
    run_staged([tmp_path / "all"], tmp_path / "oall", DedupConfig(), client=client, log=quiet)
    both = pq.read_table(tmp_path / "oall" / "removed.parquet").to_pydict()
    batch2_ids = set(table.slice(600).column("id").to_pylist())
    want = {(i, r) for i, r in zip(both["id"], both["reason"]) if i in batch2_ids}
    got2 = pq.read_table(tmp_path / "o2" / "removed.parquet").to_pydict()
    assert {(i, r) for i, r in zip(got2["id"], got2["reason"])} == want
    assert want  # batch 2 holds duplicates of batch 1 rows, found through the index
    assert m2["index"]["index_dir"]["documents"] == 1200
    assert m1["index"]["index_dir"]["documents"] == 600
    assert m2["index"]["predicted_fp"] <= 1e-5
    with pytest.raises(IndexMismatchError, match="threshold"):
        run_staged([tmp_path / "batch2"], tmp_path / "o3", DedupConfig(threshold=0.7), client=client,
                   index_dir=index, log=quiet)


def test_cache_partitioned_filters_on_a_cluster_and_in_an_index_directory(corpus, client, tmp_path):
    """Filters sized for 3,000,000 documents (~11 MB a band: over dedup.params.ONE_PART_MAX_BYTES,
    so cache-partitioned) on real workers: staged (also with each band split into 4 tasks) =
    fused byte for byte and = the run with small one-part filters; an index directory saves them
    as partitioned files, loads them in the next run and finds that batch's duplicates of the
    first batch, as one combined run does."""
    from dedup.bloom import BloomFilter

    table, d = corpus
    big = DedupConfig(capacity=3_000_000)
    assert BloomFilter(*bloom_size_of(big)).parts > 1
    dedup_files([d / "in6"], tmp_path / "fused", big, threads=1)
    run_staged([d / "in6"], tmp_path / "staged", big, client=client, log=quiet)
    m = run_staged([d / "in6"], tmp_path / "split", big, client=client, log=quiet, band_splits=4)
    dedup_files([d / "in6"], tmp_path / "small", DedupConfig(), threads=1)
    assert outputs(tmp_path / "staged") == outputs(tmp_path / "fused") == outputs(tmp_path / "small")
    assert outputs(tmp_path / "split") == outputs(tmp_path / "staged")  # 4 tasks per band on the workers
    assert all(r["splits"] == 4 for r in m["index"]["bands"].values())
    write_shards(table.slice(0, 700), tmp_path / "batch1", 2)
    write_shards(table.slice(700), tmp_path / "batch2", 2)
    index = tmp_path / "index"
    run_staged([tmp_path / "batch1"], tmp_path / "o1", big, client=client, index_dir=index, log=quiet)
    files = sorted(index.rglob("gen-000.bloom"))
    assert files and all(BloomFilter.load(f).parts > 1 for f in files)
    run_staged([tmp_path / "batch2"], tmp_path / "o2", big, client=client, index_dir=index, log=quiet)
    combined = pq.read_table(tmp_path / "small" / "removed.parquet").to_pydict()
    batch2_ids = set(table.slice(700).column("id").to_pylist())
    want = {(i, r) for i, r in zip(combined["id"], combined["reason"]) if i in batch2_ids}
    got = pq.read_table(tmp_path / "o2" / "removed.parquet").to_pydict()
    assert want and {(i, r) for i, r in zip(got["id"], got["reason"])} == want


def bloom_size_of(config: DedupConfig) -> tuple[int, int]:
    """(m, k) of one band filter of ``config``'s plan."""
    from dedup.params import plan_index

    plan = plan_index(config.threshold, config.num_perm, config.capacity, config.fp)
    return plan.band_bits, plan.band_k


def test_existing_scheduler_by_address(corpus, client, fused, tmp_path):
    _, d = corpus
    run_staged([d / "in6"], tmp_path / "out", DedupConfig(), scheduler=client.scheduler.address, log=quiet)
    same_tables(tmp_path / "out", fused)


def test_filter_stack_grows_and_keeps_its_false_positive_budget():
    """Generations double in capacity and halve in rate: the sum stays under the target.
    Measured rate over Q fresh keys within 3 sigma of its binomial bound."""
    stack = FilterStack(fp=1e-2, capacity=500, scalable=True, seed=5)
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 2**63, 20_000, dtype=np.uint64) * np.uint64(2)
    seen = stack.add(keys, np.ones(keys.shape[0], bool))  # distinct keys: any "seen" is a false positive
    assert seen.mean() <= 1e-2 + 3 * np.sqrt(1e-2 / keys.shape[0])
    assert len(stack.generations) >= 5
    assert stack.add(keys, np.ones(keys.shape[0], bool)).all()  # no false negatives
    assert stack.predicted_fp() <= 1e-2
    fresh = rng.integers(0, 2**63, 200_000, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    rate = np.mean(stack.add(fresh, np.zeros(fresh.shape[0], bool)) | _contains(stack, fresh))
    assert rate <= 1e-2 + 3 * np.sqrt(1e-2 / 200_000)


def _contains(stack: FilterStack, keys: np.ndarray) -> np.ndarray:
    hit = np.zeros(keys.shape[0], bool)
    for g in stack.generations:
        hit |= g.contains(keys)
    return hit


def test_filter_stack_roundtrip(tmp_path):
    stack = FilterStack(fp=1e-3, capacity=100, scalable=True)
    keys = np.arange(1000, dtype=np.uint64)
    stack.add(keys, np.ones(1000, bool))
    stack.save(tmp_path / "s")
    back = FilterStack.load(tmp_path / "s")
    assert len(back.generations) == len(stack.generations) and back.count == stack.count
    assert back.add(keys, np.ones(1000, bool)).all()


def test_staged_refuses_baseline_backends(corpus, client):
    _, d = corpus
    with pytest.raises(ValueError, match="--engine fused"):
        run_staged([d / "in6"], d / "nope", DedupConfig(index="lsh"), client=client, log=quiet)


def test_existing_scheduler_by_scheduler_file(corpus, client, fused, tmp_path):
    _, d = corpus
    sched = tmp_path / "scheduler.json"  # the format `dask scheduler --scheduler-file` writes
    sched.write_text(json.dumps({"type": "Scheduler", "address": client.scheduler.address}))
    run_staged([d / "in6"], tmp_path / "out", DedupConfig(), scheduler=str(sched), log=quiet)
    same_tables(tmp_path / "out", fused)


def test_a_task_run_twice_at_once_in_one_process_writes_the_same_bytes(corpus, tmp_path, monkeypatch):
    """Dask may run one task twice at once: on a worker presumed dead that is still running,
    or a killed client's task still running on a worker of the scheduler the resumed run uses
    (threads of one process there). Temporary names were per process, so both attempts wrote
    one file and the second's rename failed (FileNotFoundError: an OSError, so the run failed
    and cleared its outputs)."""
    import threading

    from dedup.stages import sketch_path, sketch_shard
    from dedup.runs import discover

    shard = discover([corpus[1] / "in6"])[0]
    config = DedupConfig()
    bands, rows = config.banding()
    final = sketch_path(tmp_path / "work", shard)
    for work in ("work", "serial"):  # the run's directory, which tasks never create (dedup.stages)
        (tmp_path / work).mkdir()
    both_written = threading.Barrier(2, timeout=30)
    replace = os.replace

    def replace_when_both_wrote(src, dst):  # the attempts overlap: each renames once both have written
        if Path(dst) == final:
            both_written.wait()
        replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_when_both_wrote)
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            sketch_shard(shard, config, bands, rows, tmp_path / "work")
        except BaseException as e:  # noqa: BLE001 - asserted below
            errors.append(e)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    monkeypatch.undo()
    sketch_shard(shard, config, bands, rows, tmp_path / "serial")
    assert final.read_bytes() == sketch_path(tmp_path / "serial", shard).read_bytes()
    assert not list((tmp_path / "work").rglob(".*.tmp-*"))


def test_an_out_removed_mid_run_is_one_line_and_not_made_again(corpus, tmp_path, monkeypatch, capsys):
    """OUT removed (by hand, by another tool) while a run with --index-dir saved a band's
    filters: FilterStack.save made every missing directory above the stack's, OUT too, and the
    run failed on a file there (its line named a temporary under _work/), leaving that OUT
    behind. The task fails where OUT is gone now, OUT stays gone and the one line names it."""
    import shutil

    from distributed import Client

    import pipelines.staged as staged
    from pipelines.cli import main

    out, real_save = tmp_path / "out", FilterStack.save
    out.mkdir()  # as Snakemake makes it before the job: not the run's to remove when it ends

    def save_once_out_is_removed(self, directory):
        shutil.rmtree(out, ignore_errors=True)  # rm -r OUT, just now
        real_save(self, directory)

    monkeypatch.setattr(FilterStack, "save", save_once_out_is_removed)
    monkeypatch.setattr(staged, "dask_client", lambda *a, **kw: Client(  # tasks in this process: they see the patch
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0"))
    argv = ["dedup", str(corpus[1] / "in2"), "--out", str(out), "--index-dir", str(tmp_path / "idx"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{out}: removed while this run wrote it" in err[0], err
    assert not out.exists()


def test_a_worker_killed_while_writing_leaves_no_temporary_in_the_output(corpus, tmp_path, fused):
    """A worker SIGKILLed inside a write task leaves its half-written kept shard under its
    temporary name, and the retry elsewhere writes under its own: the completed run kept
    `kept/.part-00002.parquet.tmp-15855-...` beside the kept shards (kill -9 of a `dask
    worker` process during a run on an external scheduler). Here the dead attempt's file is
    put there as the write stage starts."""
    from dedup.stages import dedup_staged, serial_map

    out = tmp_path / "out"

    def map_tasks(label, fn, items):
        if label == "write":
            (out / "kept").mkdir(parents=True, exist_ok=True)
            (out / "kept" / ".part-00002.parquet.tmp-999999-0123456789ab").write_bytes(b"PAR1 half a shard")
        return serial_map(label, fn, items)

    dedup_staged([corpus[1] / "in6"], out, DedupConfig(), map_tasks=map_tasks)
    assert not list(out.rglob(".*.tmp-*"))
    assert outputs(out) == outputs(fused)


def _start(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.Popen:
    """A `dask` command (scheduler or worker) importing this checkout, on the loopback."""
    return subprocess.Popen([str(Path(sys.executable).parent / "dask"), *args, "--dashboard-address", ":0"],
                            cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _wait_for(path: Path, seconds: float = 60) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not (path.exists() and path.stat().st_size):
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.1)


def test_scheduler_lost_mid_run_is_one_line_and_the_rerun_resumes(corpus, tmp_path, fused):
    """An external scheduler killed while a task runs: distributed's FutureCancelledError
    traceback (33 lines, exit 1) before."""
    _, d = corpus
    out, procs = tmp_path / "out", []
    try:
        sched, hold = tmp_path / "sched.json", tmp_path / "held"
        procs.append(_start("scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(sched)))
        _wait_for(sched)
        procs.append(_start("worker", "--scheduler-file", str(sched), "--nthreads", "1", "--no-nanny",
                            "--host", "127.0.0.1", env={"MEMDEDUP_HOLD_TASK_ONCE": str(hold)}))
        args = [str(d / "in6"), "--out", str(out), "--scheduler", str(sched), "--quiet"]
        run = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "dedup", *args], cwd=ROOT, text=True,
                               stderr=subprocess.PIPE, start_new_session=True)
        _wait_for(hold)  # a task is running
        procs[0].kill()
        _, err = run.communicate(timeout=120)
        assert run.returncode == 2 and len(err.strip().splitlines()) == 1, err
        assert "scheduler" in err and "rerun to resume" in err, err
        for p in procs:
            p.kill()
        sched.unlink()
        procs.append(_start("scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(sched)))
        _wait_for(sched)
        procs.append(_start("worker", "--scheduler-file", str(sched), "--nthreads", "1", "--host", "127.0.0.1"))
        again = _cli(args)
        assert again.returncode == 0, again.stderr
        assert outputs(out) == outputs(fused)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_a_relative_out_with_workers_started_from_another_directory(corpus, tmp_path, fused):
    """The client given relative paths (as the workflow's default ``out: results/demo`` is), the
    workers of an external scheduler started from another directory: the tasks were handed the
    run's work directory relative to the client's cwd and looked for it under their own, so every
    run failed (exit 2, "...: removed while this run wrote it; run the command again", which a
    rerun repeated)."""
    _, d = corpus
    client_cwd, worker_cwd = tmp_path / "client", tmp_path / "worker"
    client_cwd.mkdir()
    worker_cwd.mkdir()
    procs, sched = [], tmp_path / "sched.json"
    try:
        procs.append(_start("scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(sched),
                            cwd=worker_cwd))
        _wait_for(sched)
        procs.append(_start("worker", "--scheduler-file", str(sched), "--nthreads", "2", "--host", "127.0.0.1",
                            cwd=worker_cwd))
        r = subprocess.run([sys.executable, "-m", "pipelines.cli", "dedup", os.path.relpath(d / "in6", client_cwd),
                            "--out", "out", "--scheduler", str(sched), "--quiet"], cwd=client_cwd, text=True,
                           capture_output=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert r.returncode == 0, r.stderr
        assert outputs(client_cwd / "out") == outputs(fused)
        assert not (worker_cwd / "out").exists()
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.mark.parametrize("changed", ["dedup/sketch.py", "pipelines/staged.py"])
def test_workers_running_other_memdedup_code_are_refused_in_one_line(corpus, tmp_path, changed):
    """Workers started from another checkout (another version on PYTHONPATH) ran the tasks
    with their own code, silently: the outputs mixed two versions' decisions and nothing
    (manifest, run identity) recorded it. The version compared covered dedup/ only: a worker
    whose pipelines/staged.py was older (results without the warnings field) failed the client
    with a traceback (AttributeError), exit 1; it is compared too."""
    import shutil

    _, d = corpus
    other = tmp_path / "other-checkout"
    for pkg in ("dedup", "pipelines"):
        shutil.copytree(ROOT / pkg, other / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    if changed == "dedup/sketch.py":
        with open(other / changed, "a") as f:
            f.write("\n# a later (or earlier) version\n")
    else:  # as staged.py was before its tasks returned their warnings: the bare result
        code = (other / changed).read_text()
        assert "return _Done(fn(*args), caught, version)" in code
        (other / changed).write_text(code.replace("return _Done(fn(*args), caught, version)", "return fn(*args)"))
    r = _run_on_a_worker_of(other, d / "in6", tmp_path)
    assert str(other / "dedup") in r.stderr, r.stderr


def _run_on_a_worker_of(checkout: Path, inputs: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """Dedup ``inputs`` on a cluster (scheduler + one worker) whose worker runs ``checkout``'s code:
    refused in one line (exit 2) saying it is other memdedup code, nothing left in OUT."""
    out, procs, sched = tmp_path / "out", [], tmp_path / "sched.json"
    try:
        procs.append(_start("scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(sched)))
        _wait_for(sched)
        procs.append(_start("worker", "--scheduler-file", str(sched), "--nthreads", "1", "--no-nanny",
                            "--host", "127.0.0.1", env={"PYTHONPATH": str(checkout)}))
        r = _cli([str(inputs), "--out", str(out), "--scheduler", str(sched), "--quiet"])
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "other memdedup code" in r.stderr, r.stderr
        assert not [p for p in out.rglob("*") if p.is_file()]
        return r
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_workers_of_memdedup_from_before_the_code_check_are_refused_in_one_line(corpus, tmp_path):
    """A worker running memdedup from before tasks checked their code (its ``_task(fn, *args)``, as in
    0812435~1) called the client's version string as the stage function: TypeError traceback on the
    client, exit 1, and OUT/_work left behind."""
    import re

    _, d = corpus
    other = tmp_path / "older-checkout"
    for pkg in ("dedup", "pipelines"):
        shutil.copytree(ROOT / pkg, other / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    code = (other / "pipelines" / "staged.py").read_text()
    old_task = ("def _task(fn, *args):\n    try:\n        return fn(*args)\n"
                "    except Exception as e:  # noqa: BLE001\n        return _Failed(e, [])\n\n\n")
    code, n = re.subn(r"def _task\(.*?(?=\n# A worker's task states)", lambda m: old_task, code, flags=re.S)
    assert n == 1
    (other / "pipelines" / "staged.py").write_text(code)
    _run_on_a_worker_of(other, d / "in6", tmp_path)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare (mount namespace)")
@pytest.mark.parametrize("hidden", ["inputs", "out"])
def test_a_worker_that_cannot_see_the_inputs_or_out_is_named_in_one_line(corpus, tmp_path, hidden):
    """A worker whose file system lacks a path the client sees (its own mount namespace here: an
    empty tmpfs over the inputs or over --out's parent): "<work dir>: removed while this run wrote
    it; run the command again" (for --out; a rerun failed the same way) or "unreadable or corrupt
    Parquet file ... No such file or directory" (inputs) before, neither saying that the client
    sees the file and the worker does not."""
    _, d = corpus
    inputs = tmp_path / "inputs"
    shutil.copytree(d / "in6", inputs)
    parent = tmp_path / "shared"
    parent.mkdir()
    masked = inputs if hidden == "inputs" else parent
    out, procs, sched = parent / "out", [], tmp_path / "sched.json"
    try:
        procs.append(_start("scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(sched)))
        _wait_for(sched)
        dask = Path(sys.executable).parent / "dask"
        procs.append(subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", 'mount -t tmpfs none "$0" && exec "$@"',
             str(masked), str(dask), "worker", "--scheduler-file", str(sched), "--nthreads", "1", "--no-nanny",
             "--host", "127.0.0.1", "--dashboard-address", ":0"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True))
        r = _cli([str(inputs), "--out", str(out), "--scheduler", str(sched), "--quiet"])
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "not found on the Dask worker" in r.stderr and "every worker sees" in r.stderr, r.stderr
        assert str(masked) in r.stderr, r.stderr
        assert not [p for p in out.rglob("*") if p.is_file()]
    finally:
        for p in procs:
            p.kill()
            p.wait()

def _fail_now_or_write_late(i: int, marker: str) -> int:
    import time

    started = Path(marker + ".started")
    if i == 0:
        for _ in range(200):  # task 1 is running by the time task 0 fails
            if started.exists():
                break
            time.sleep(0.01)
        raise ValueError("bad input in task 0")
    started.touch()
    time.sleep(1.5)  # still writing when task 0 fails
    Path(marker).write_text("written")
    return i


def test_a_failed_task_returns_only_once_the_tasks_already_running_have_ended(tmp_path):
    """When one task of a stage fails, the run clears its outputs: a sibling task still running
    kept writing into them meanwhile, so OUT/_work came back half filled (found by a probe: a band
    file left without its data, 3 runs in 6). The stage's error is raised once the tasks the
    workers had started are over (those not started are cancelled)."""
    from distributed import Client

    from pipelines.staged import dask_map

    marker = tmp_path / "late"
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as client:
        with pytest.raises(ValueError, match="bad input in task 0"):
            dask_map(client, lambda m: None)("sketch", _fail_now_or_write_late, [(0, str(marker)), (1, str(marker))])
        assert marker.read_text() == "written"


def test_a_task_result_that_fails_to_arrive_also_waits_for_the_running_tasks(tmp_path, monkeypatch):
    """The same wait when fetching a result fails on the client with another error than Dask's
    KilledWorker or CancelledError (here a CommClosedError, as while a cluster degrades): that
    error was raised at once, with the sibling task still writing into the outputs."""
    from distributed import Client, Future
    from distributed.comm.core import CommClosedError

    from pipelines.staged import dask_map

    fetch = Future.result

    def result(self, *args, **kwargs):
        fetch(self, *args, **kwargs)
        raise CommClosedError("injected: the result did not arrive")

    marker = tmp_path / "late"
    monkeypatch.setattr(Future, "result", result)
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as client:
        with pytest.raises(CommClosedError, match="injected"):
            dask_map(client, lambda m: None)("sketch", _fail_now_or_write_late, [(0, str(marker)), (1, str(marker))])
        assert marker.read_text() == "written"


def _sleep(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def test_the_wait_for_running_tasks_ends_at_once_when_the_scheduler_is_gone():
    """The wait after a failed fetch asks the workers, through the scheduler, what still runs. With
    the scheduler gone, that question blocked for the client's reconnection timeout (~30 s) before
    the error was raised; a client that is not connected has no one to ask. The tasks sleep 3 s
    (5 s before): still running when _stop is called (~0.5 s after they start), and the cluster's
    close waits for them to end."""
    import time

    import dask
    from distributed import Client, LocalCluster

    from pipelines.staged import _stop

    with LocalCluster(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        futures = [client.submit(_sleep, 3, key=f"sketch-t-{i}", pure=False) for i in range(2)]
        time.sleep(0.5)
        cluster.sync(cluster.scheduler.close)
        deadline = time.monotonic() + 10
        while client.status == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        _stop(client, futures, "sketch-t-", False, lambda m: None)
        assert time.monotonic() - t0 < 10  # before: ~30 s
        client.close()
        # closing a cluster whose scheduler is gone waits for a connection to it: the default 30 s
        with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
            cluster.close()


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_task_warning_reaches_the_user_once_as_the_fused_engine_gives_it(fmt, tmp_path):
    """A warning of a task (an id column that is ignored) is shown by the client, once, in the
    command line's one-line form, whichever worker processes raised it (and however often: the
    sketch and write tasks of each shard read its ids); before, each worker printed it raw
    (Python's form with the source line), twice with two workers, and a JSONL one reached the
    user only from the workers (on a remote cluster: their logs)."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"id": {"a": i}, "text": f"document number {i} about {'cats' if i % 2 else 'dogs'} and more"}
            for i in range(40)]
    rows += rows[:5]  # some removals, so that the write tasks read ids
    for k in range(4):
        part = rows[k::4]
        if fmt == "jsonl":
            (data / f"p{k}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
        else:
            pq.write_table(pa.Table.from_pylist(part), data / f"p{k}.parquet")
    outs = {}
    for engine in ("fused", "staged"):
        out = tmp_path / engine
        workers = ["--workers", "2"] if engine == "staged" else []  # refused with the fused engine
        r = _cli([str(data), "--out", str(out), "--engine", engine, *workers, "--quiet"])
        assert r.returncode == 0, r.stderr
        outs[engine] = r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        warned = [ln for ln in lines if "ids are left null" in ln]
        assert len(warned) == 4, (engine, r.stderr)  # one per file
        assert all(ln.startswith("memdedup: warning: ") for ln in warned), r.stderr
        assert "Warning" not in r.stderr and "warnings.warn" not in r.stderr, r.stderr
    assert sorted(outs["fused"].splitlines()) == sorted(outs["staged"].splitlines())


def test_cluster_start_leaves_a_sigterm_handler_set_in_c_alone(monkeypatch):
    """A handler installed from C reads as None and cannot be set again from Python: the start-up hold replaced
    it, then gave it back with signal.signal(SIGTERM, None), a TypeError (found by review, as in the CLI's own
    restore). Such a handler is now left as it is (SIGTERM not held)."""
    from pipelines import staged

    real_get, real_set, set_now = signal.getsignal, signal.signal, []
    monkeypatch.setattr(signal, "getsignal", lambda s: None if s == signal.SIGTERM else real_get(s))
    monkeypatch.setattr(signal, "signal", lambda s, h: set_now.append(s) or real_set(s, h))
    with staged._signals_held():
        pass
    assert signal.SIGTERM not in set_now and set_now == [signal.SIGINT, signal.SIGINT]
