"""The datatrove step (pipelines/datatrove_step.py) in real ``LocalPipelineExecutor`` runs:
reader -> LSHBloomDedup -> writer, the command line's decisions on the same documents.

At ``fp=0.05`` many decisions are Bloom false positives, which depend on the filters'
exact sizes: equal decisions show the step builds the command line's filters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dedup import DedupConfig
from dedup.scalable import FilterStack
from dedup.stages import dedup_staged
from dedup.synthetic import generate_corpus, write_shards
from pipelines.cli import main

pytest.importorskip("datatrove")  # the datatrove extra (part of dev)

from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.readers import ParquetReader  # noqa: E402
from datatrove.pipeline.writers import ParquetWriter  # noqa: E402

from pipelines.datatrove_step import LSHBloomDedup  # noqa: E402

N = 1200
HIGH_FP = {"fp": 0.05, "exact_fp": 0.05}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("datatrove")
    table = generate_corpus(N, mean_bytes=300, exact_frac=0.08, near_frac=0.15, seed=31).select(["id", "text"])
    write_shards(table, d / "all", 4)
    return d


def ids_of(folder: Path, pattern: str = "*.parquet") -> list[str]:
    return [i for p in sorted(folder.glob(pattern)) for i in pq.read_table(p).column("id").to_pylist()]


def run(pipeline, logs: Path, tasks: int = 1):
    return LocalPipelineExecutor(pipeline, tasks=tasks, workers=1, logging_dir=str(logs)).run()


def test_one_task_pipeline_equals_the_cli(corpus, tmp_path):
    cli = tmp_path / "cli"
    assert main(["dedup", str(corpus / "all"), "--out", str(cli), "--engine", "fused", "--threads", "1", "--quiet",
                 "--fp", "0.05", "--exact-fp", "0.05"]) == 0
    manifest = json.loads((cli / "manifest.json").read_text())
    assert manifest["totals"]["empty_text"] == manifest["totals"]["null_text"] == 0  # readers would skip those
    removed = pq.read_table(cli / "removed.parquet").to_pydict()
    assert set(removed["reason"]) == {"exact", "near"}

    step = LSHBloomDedup(DedupConfig(capacity=N, **HIGH_FP), batch_size=100,
                         exclusion_writer=ParquetWriter(str(tmp_path / "removed")))
    stats = run([ParquetReader(str(corpus / "all")), step, ParquetWriter(str(tmp_path / "out"))], tmp_path / "logs")

    assert ids_of(tmp_path / "out") == ids_of(cli / "kept")
    dropped = pq.read_table(tmp_path / "removed" / "000_00000.parquet").to_pylist()
    assert [(d["id"], d["metadata"]["filter_reason"]) for d in dropped] == list(zip(removed["id"], removed["reason"]))
    counts = {s.name: s for s in stats.stats}[str(step)].stats
    assert counts["dropped_near"].total == removed["reason"].count("near")
    assert counts["dropped_exact"].total == removed["reason"].count("exact")
    assert counts["forwarded"].total == manifest["totals"]["kept"]


def test_tasks_share_an_index_directory_one_after_another(corpus, tmp_path):
    """Two tasks, run one at a time, each continuing the index: the decisions (and the very
    filter bits) of two --index-dir runs over the tasks' files (rank r: files r, r + 2)."""
    config = DedupConfig(capacity=250, **HIGH_FP)
    files = sorted((corpus / "all").glob("*.parquet"))
    for rank in (0, 1):
        dedup_staged(files[rank::2], tmp_path / f"cli-{rank}", config, index_dir=tmp_path / "cli-index")

    step = LSHBloomDedup(config, index_dir=tmp_path / "index")
    run([ParquetReader(str(corpus / "all")), step, ParquetWriter(str(tmp_path / "out"))], tmp_path / "logs", tasks=2)
    for rank in (0, 1):
        assert ids_of(tmp_path / "out", f"*_{rank:05d}.parquet") == ids_of(tmp_path / f"cli-{rank}" / "kept")

    ours = json.loads((tmp_path / "index" / "index.json").read_text())
    theirs = json.loads((tmp_path / "cli-index" / "index.json").read_text())
    assert ours["documents"] == theirs["documents"] == N and ours["params"] == theirs["params"]
    for name in ours["stacks"]:
        a = FilterStack.load(tmp_path / "index" / ours["current"] / name)
        b = FilterStack.load(tmp_path / "cli-index" / theirs["current"] / name)
        assert len(a.generations) == len(b.generations) > 1
        assert all((x.bits == y.bits).all() for x, y in zip(a.generations, b.generations)), name


def test_several_tasks_without_a_shared_index_are_refused(corpus, tmp_path):
    with pytest.raises(ValueError, match="tasks=1, or give index_dir"):
        run([ParquetReader(str(corpus / "all")), LSHBloomDedup(), ParquetWriter(str(tmp_path / "out"))],
            tmp_path / "logs", tasks=2)
    with pytest.raises(ValueError, match="must grow"):
        LSHBloomDedup(index_dir=tmp_path / "i", grow=False)


def test_index_dir_persists_across_pipeline_runs(corpus, tmp_path):
    """Incremental: a second pipeline run over new files continues the first one's index
    (its documents duplicating earlier ones are dropped), as --index-dir does."""
    files = sorted((corpus / "all").glob("*.parquet"))
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    for k, f in enumerate(files):
        (tmp_path / ("first" if k < 2 else "second") / f.name).write_bytes(f.read_bytes())
    config = DedupConfig(capacity=300, **HIGH_FP)
    for k, part in enumerate(("first", "second")):
        run([ParquetReader(str(tmp_path / part)), LSHBloomDedup(config, index_dir=tmp_path / "index"),
             ParquetWriter(str(tmp_path / f"out-{part}"))], tmp_path / f"logs-{part}")
    dedup_staged([corpus / "all"], tmp_path / "cli", config, index_dir=tmp_path / "cli-index")
    assert ids_of(tmp_path / "out-first") + ids_of(tmp_path / "out-second") == ids_of(tmp_path / "cli" / "kept")
    assert json.loads((tmp_path / "index" / "index.json").read_text())["documents"] == N
    assert pa.concat_tables(pq.read_table(p) for p in files).num_rows == N


def test_datatrove_is_an_extra_that_dev_includes_and_only_pipelines_use_it():
    import tomllib

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    assert not any(r.startswith("datatrove") for r in project["dependencies"])
    assert any(r.startswith("datatrove") for r in extras["datatrove"])
    dev = {e.strip() for r in extras["dev"] if r.startswith("memdedup[") for e in r[len("memdedup["):-1].split(",")}
    assert "datatrove" in dev and any(r.startswith("datasets") for r in extras["dev"])
    users = sorted(p.relative_to(root).as_posix() for d in ("dedup", "audit", "pipelines") for p in (root / d).rglob("*.py")
                   if any(line.strip().startswith(("import datatrove", "from datatrove"))
                          for line in p.read_text(encoding="utf-8").splitlines()))
    assert users == ["pipelines/datatrove_step.py"], users  # the libraries never need it; the CLI does not load it


def test_bad_settings_and_bad_text_are_one_clear_error():
    """grow=False without a capacity was accepted and failed only once run() started (the
    Deduplicator refuses it at construction); a document holding an unpaired surrogate died
    in pa.array with a UnicodeEncodeError naming no document."""
    from datatrove.data import Document

    with pytest.raises(ValueError, match="capacity"):
        LSHBloomDedup(grow=False)
    step = LSHBloomDedup()
    run = step.run(iter([Document(text="fine text here", id="ok"), Document(text="x\ud800y", id="doc-7")]))
    with pytest.raises(ValueError, match=r"document 'doc-7'.*surrogate"):
        list(run)


def test_overlapping_ranks_on_an_empty_index_directory_fail_as_documented(tmp_path):
    """Two ranks that overlap on an index directory that is empty when both open it (ranks take
    turns across processes; in one process the later takes the turn over): the second save was
    refused with advice for Deduplicator users ('save to a new directory, or load that index and
    add to it'); it is a StateError, whose rerun then decides against the first rank's index."""
    from datatrove.data import Document

    from dedup.io import StateError

    steps = [LSHBloomDedup(index_dir=tmp_path / "idx") for _ in range(2)]
    runs = [s.run(iter([Document(text=f"rank {r} text number one two three", id=str(r))]), rank=r, world_size=2)
            for r, s in enumerate(steps)]
    for run in runs:
        next(run)  # both ranks open the (empty) directory before either saves
    list(runs[0])
    with pytest.raises(StateError, match="another rank"):
        list(runs[1])


def test_a_step_that_cannot_run_is_refused_when_it_is_built(tmp_path):
    """index="lsh", or an index_dir that is a file, was refused only when the pipeline ran: with
    an index_dir file, after every document had gone through to the writer (found by the API
    probe). The step now checks both when it is built; a damaged index.json too, and an index of
    other parameters."""
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="LSHBloom"):
        LSHBloomDedup(DedupConfig(index="lsh"))
    with pytest.raises(ValueError, match="afile: not a directory"):
        LSHBloomDedup(index_dir=tmp_path / "afile")
    with pytest.raises(ValueError, match="index directory: an empty path"):  # not the working directory
        LSHBloomDedup(index_dir="")
    for config in ({"threshold": 0.7}, {}):  # AttributeError; and {} was taken for the defaults
        with pytest.raises(TypeError, match="config must be a DedupConfig"):
            LSHBloomDedup(config)
    # an index of other parameters: refused when the first rank ran (found by the API probe)
    from dedup.index_dir import IndexMismatchError
    from dedup.streaming import Deduplicator

    Deduplicator().save(tmp_path / "idx")
    with pytest.raises(IndexMismatchError, match="threshold=0.8, .*this run has threshold=0.7"):
        LSHBloomDedup(DedupConfig(threshold=0.7), index_dir=tmp_path / "idx")


@pytest.mark.parametrize("shared", [False, True])
def test_a_step_with_no_reader_before_it_is_one_clear_error(tmp_path, shared):
    """A pipeline that starts with the step (no reader before it) gives it data=None: without
    index_dir that died in datatrove's batching with "TypeError: 'NoneType' object is not
    iterable"; with one, the rank went through silently and saved an index of nothing. Both are
    one ValueError saying to put a reader first, and the index directory is left as it was."""
    step = LSHBloomDedup(index_dir=tmp_path / "idx" if shared else None)
    with pytest.raises(ValueError, match="no documents came in: .*put a reader"):
        list(step.run(None))
    assert not (tmp_path / "idx").exists()


def test_texts_that_are_bytes_or_not_text_at_all():
    """datatrove's ParquetReader gives a binary text column's values as bytes: those holding UTF-8
    are decided as that text (as the command line and the Deduplicator read binary columns); other
    bytes died in pa.array with "Could not convert b'ok \\xff' ...: was not a utf8 string" and an int
    text with "Expected bytes, got a 'int' object", neither naming the document; a None text was
    kept and datatrove's stats then failed on len(None) (found by the API probe). Each is now one
    error naming the document."""
    from datatrove.data import Document

    docs = [Document(text="a b c d e f", id="s"), Document(text=b"A b, c d e f!", id="b"),
            Document(text=b"x y z", id="c")]
    assert [d.id for d in LSHBloomDedup().run(iter(docs))] == ["s", "c"]
    for text, error, needle in [(b"ok \xff", ValueError, r"document 'bad': text is not valid UTF-8 \(.*byte 0xff"),
                                (123, TypeError, "document 'bad': text is int, expected str"),
                                (None, TypeError, "document 'bad': text is None, expected str")]:
        with pytest.raises(error, match=needle):
            list(LSHBloomDedup().run(iter([Document(text="fine text", id="ok"), Document(text=text, id="bad")])))


def test_ranks_running_at_once_take_turns_on_the_index(tmp_path):
    """Ranks of one index_dir run together (LocalPipelineExecutor's default workers=tasks) both
    loaded the index, and the second save was refused; datatrove then terminated its pool, killing
    ranks that had saved but were not yet recorded complete, whose rerun removed every one of their
    documents as a duplicate of itself (the probe's index held 532 documents of 446, one rank's
    output was empty). A rank now holds the index from its load to its save: another waits, then
    decides against it. Rank 1 runs in another process, started while rank 0 holds the index."""
    from datatrove.data import Document

    root = Path(__file__).resolve().parents[2]
    step = LSHBloomDedup(index_dir=tmp_path / "idx")
    rank0 = step.run(iter([Document(text=f"first rank text {k} and more words here", id=f"a{k}") for k in range(3)]),
                     rank=0, world_size=2)
    assert next(rank0).id == "a0"  # rank 0 holds the index now
    script = (
        "import json; from pathlib import Path; from datatrove.data import Document\n"
        "from pipelines.datatrove_step import LSHBloomDedup\n"
        f"docs = [Document(text=f'first rank text {{k}} and more words here', id=f'b{{k}}') for k in (1, 5)]\n"
        f"kept = [d.id for d in LSHBloomDedup(index_dir=Path({str(tmp_path / 'idx')!r})).run(iter(docs), 1, 2)]\n"
        "print('KEPT', json.dumps(kept))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    other = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=env, cwd=root)
    seen = []
    for line in other.stdout:  # until rank 1 says it waits (before: it ran through and saved first)
        seen.append(line)
        if "waits" in line:
            break
    assert [d.id for d in rank0] == ["a1", "a2"]  # rank 0 saves: nothing refused
    out, _ = other.communicate(timeout=120)
    assert other.returncode == 0, "".join(seen) + out
    assert 'KEPT ["b5"]' in out  # b1 duplicates a1 of rank 0, b5 is new
    index = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert index["documents"] == 5 and [b["documents"] for b in index["batches"]] == [3, 2]


def test_a_rerun_in_one_process_takes_the_turn_of_a_step_that_never_finished(tmp_path):
    """A pipeline that failed downstream of the step keeps the step's generator, and its turn on the
    index, alive as long as the traceback is (a notebook keeps it); a process forked meanwhile
    (LocalPipelineExecutor starts a Manager process each run) holds the turn's file too. The rerun
    in that process takes the turn over instead of waiting forever (found by the probe: a rerun
    after a failed run hung)."""
    import multiprocessing
    import time

    from datatrove.data import Document

    from dedup.index_dir import IndexDir

    stale = LSHBloomDedup(index_dir=tmp_path / "idx").run(iter([Document(text="one two three four five six", id="a"),
                                                                Document(text="seven eight nine", id="b")]))
    assert next(stale).id == "a"  # holds the turn, and never finishes
    child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
    child.start()
    try:
        with IndexDir(tmp_path / "idx", {}).turn(waiting=lambda: pytest.fail("the rerun waited for a stale turn")):
            pass
        out = LSHBloomDedup(index_dir=tmp_path / "idx").run(iter([Document(text="One two three four five six!",
                                                                           id="c")]))
        assert [d.id for d in out] == ["c"]  # the stale step saved nothing
        assert json.loads((tmp_path / "idx" / "index.json").read_text())["documents"] == 1
    finally:
        child.kill()
        child.join()


def test_a_rank_given_documents_the_index_holds_is_refused_before_deciding_any(tmp_path):
    """A rank killed after its save and before datatrove recorded it complete (its writer failing
    at close, a pool stopped by another rank's failure, a preempted job) is rerun against the index
    that holds its documents: it dropped every one as a duplicate of itself, silently, overwrote
    its output with nothing and saved them again. A rank whose first documents (up to 64, in
    order, as many) are a saved rank's first ones is now refused before it decides any, as the
    command line refuses files the index holds; other documents go on (incremental runs), also a
    rank that merely starts with the documents of a smaller saved rank (that was refused as held:
    a duplicate document refused, not removed)."""
    from datatrove.data import Document

    from dedup.io import StateError

    def docs(start: int, n: int):
        return iter([Document(text=f"document number {k} says a few words", id=str(k)) for k in range(start, n)])

    assert len(list(LSHBloomDedup(index_dir=tmp_path / "idx", batch_size=4).run(docs(0, 10), 0, 2))) == 10
    assert len(list(LSHBloomDedup(index_dir=tmp_path / "idx").run(docs(10, 80), 1, 2))) == 70
    for start, end, batch_size in ((0, 10, 1), (10, 80, 7)):  # a rerun of either rank, whatever its batch size
        rerun = LSHBloomDedup(index_dir=tmp_path / "idx", batch_size=batch_size).run(docs(start, end), 1, 2)
        with pytest.raises(StateError, match=rf"rank 1's first {min(end - start, 64)} documents are those .*"
                                             r"held already .*Nothing was decided"):
            next(rerun)
    index = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert index["documents"] == 80 and len(index["batches"]) == 2
    assert [d.id for d in LSHBloomDedup(index_dir=tmp_path / "idx").run(docs(5, 12), 0, 1)] == []  # held ones drop
    assert [d.id for d in LSHBloomDedup(index_dir=tmp_path / "idx").run(docs(0, 12), 0, 1)] == []
    assert [d.id for d in LSHBloomDedup(index_dir=tmp_path / "idx").run(docs(80, 83), 0, 1)] == ["80", "81", "82"]


def test_a_step_that_ran_is_picklable_again(tmp_path):
    """An executor with several workers pickles its steps; a Deduplicator refuses to be copied, so a step
    keeps none once its run ended (one used by an in-process run, then by a LocalPipelineExecutor with
    workers=2, failed to pickle)."""
    import pickle

    from datatrove.data import Document

    for step in (LSHBloomDedup(), LSHBloomDedup(index_dir=tmp_path / "idx")):
        assert [d.id for d in step.run(iter([Document(text="a b c d e f", id="a")]))] == ["a"]
        assert pickle.loads(pickle.dumps(step)).index_dir == step.index_dir


def test_a_rank_whose_save_loses_to_another_writer_is_told_to_rerun_its_task(tmp_path):
    """Ranks take turns on index_dir, but a command-line run or a Deduplicator may install a version
    while a rank holds its turn. On an index that existed when the rank started, the rank's save was
    refused with a Deduplicator's advice ('load it again and add the rows again'), which a datatrove
    task cannot follow; it is told, as on an index that was empty, to rerun the task."""
    from datatrove.data import Document

    from dedup.io import StateError
    from dedup.streaming import Deduplicator

    Deduplicator().save(tmp_path / "idx")
    rank = LSHBloomDedup(index_dir=tmp_path / "idx").run(
        iter([Document(text="rank text number one two three", id="r")]), rank=0, world_size=2)
    assert next(rank).id == "r"  # the rank holds its turn, from the index's first version
    other = Deduplicator.load(tmp_path / "idx")
    other.add(pa.array(["another writer's text, four five six"]))
    other.save(tmp_path / "idx")  # a Deduplicator (or a command-line run) takes no turn
    with pytest.raises(StateError, match="rerun this task") as refused:
        list(rank)
    assert "load it again" not in str(refused.value)
    assert Deduplicator.load(tmp_path / "idx").documents == 1  # the other writer's row; the rank's is not in


def test_a_version_installed_while_a_rank_opens_the_index_is_the_one_it_decides_against(tmp_path, monkeypatch):
    """A version installed between the rank reading which version is current and loading the index: the rank
    loaded the newer one and decided against it, yet its save was refused ('another rank ... saved', rerun this
    task) because it compared with the version read before the load (found by the streaming probe)."""
    from datatrove.data import Document

    from dedup.streaming import Deduplicator

    Deduplicator().save(tmp_path / "idx")
    opened = LSHBloomDedup._open

    def install_then_open(self):  # another writer's install lands just before the rank's load
        other = Deduplicator.load(tmp_path / "idx")
        other.add(pa.array(["another writer's text, four five six"]))
        other.save(tmp_path / "idx")
        return opened(self)

    monkeypatch.setattr(LSHBloomDedup, "_open", install_then_open)
    kept = list(LSHBloomDedup(index_dir=tmp_path / "idx").run(
        iter([Document(text="rank text number one two three", id="r")]), rank=0, world_size=2))
    assert [d.id for d in kept] == ["r"] and Deduplicator.load(tmp_path / "idx").documents == 2


@pytest.mark.parametrize("first", ["cli", "datatrove"])
def test_a_file_one_user_indexed_is_refused_when_the_other_user_brings_it(first, tmp_path, capsys):
    """The command line refused a file the index held, and a datatrove rank a rank's first
    documents, but neither looked at the other's records: a file indexed by the command line
    then read by a datatrove pipeline lost every row, and the reverse (exit 0, all 750 removed as
    exact duplicates; found by the index-directory probe). The command line records each file's
    first documents as a rank does (up to 64 with text, in order); each user refuses the other's."""
    from dedup.io import StateError

    rows = [{"id": str(k), "text": f"document number {k} says a few words of its own"} for k in range(100)]
    rows.insert(3, {"id": "empty", "text": ""})  # readers skip documents without text
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), data / "p1.parquet")
    index = tmp_path / "idx"
    cli = ["dedup", str(data), "--out", str(tmp_path / "out"), "--index-dir", str(index), "--quiet"]
    step = LSHBloomDedup(index_dir=index)
    if first == "cli":
        assert main(cli) == 0
        with pytest.raises(StateError, match=r"rank 0's first 64 documents are those of .*p1\.parquet"):
            next(step.run(ParquetReader(str(data))(), 0, 1))
    else:
        assert len(list(step.run(ParquetReader(str(data))(), 0, 1))) == 100
        capsys.readouterr()
        assert main(cli) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "p1.parquet" in err and "datatrove rank" in err, err
        assert not (tmp_path / "out" / "manifest.json").exists()
    # nothing decided twice (the command line counts the row without text among its documents)
    assert json.loads((index / "index.json").read_text())["documents"] == (101 if first == "cli" else 100)


@pytest.mark.parametrize("setting", [{"batch_size": 0}, {"batch_size": -1}, {"batch_size": 2.5},
                                     {"batch_size": True}, {"threads": 0}])
def test_a_bad_batch_size_or_thread_count_is_refused_when_the_step_is_built(setting, tmp_path):
    """batch_size=0 or -1 was accepted and failed only when documents arrived, with datatrove's
    "n must be at least one" naming no setting (2.5: islice's "Stop argument ..."), after a rank had
    taken its turn on index_dir and loaded it; threads=0 also failed only then (found by the
    streaming probe). Both are refused when the step is built, naming the setting."""
    name = next(iter(setting))
    with pytest.raises(ValueError, match=name):
        LSHBloomDedup(index_dir=tmp_path / "idx", **setting)


def test_a_loaded_index_saved_elsewhere_still_refuses_a_ranks_documents(tmp_path):
    """Deduplicator.load(A).save(B) carried A's input files over to B but not its datatrove ranks'
    first documents: the same rank run again on B went through and dropped all 100 of its documents
    as duplicates of themselves (found by the streaming probe; on A it is refused)."""
    from datatrove.data import Document

    from dedup.io import StateError
    from dedup.streaming import Deduplicator

    def docs():
        return iter([Document(text=f"document number {k} says a few words of its own", id=str(k)) for k in range(100)])

    assert len(list(LSHBloomDedup(index_dir=tmp_path / "A").run(docs(), 0, 1))) == 100
    Deduplicator.load(tmp_path / "A").save(tmp_path / "B")
    with pytest.raises(StateError, match="rank 0's first 64 documents are those of a rank"):
        next(LSHBloomDedup(index_dir=tmp_path / "B").run(docs(), 0, 1))
    assert json.loads((tmp_path / "B" / "index.json").read_text())["documents"] == 100
