"""The streaming API (dedup.streaming.Deduplicator): the command line's decisions on the same
rows in the same order, whatever the batches; its index saved and loaded as an
``--index-dir`` directory that the command line continues, and the reverse.

Several tests run at a high false-positive rate (``fp=0.05``): then many decisions are false
positives of the Bloom filters, which depend on the filters' exact sizes and growth, so
equal decisions show equal filters (at 1e-5 any sizes would agree on a small corpus)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dedup import DedupConfig, Deduplicator, InputError
from dedup.index import REASON_LABELS
from dedup.index_dir import IndexMismatchError
from dedup.io import StateError
from dedup.stages import dedup_staged
from dedup.synthetic import generate_corpus, write_shards
from pipelines.cli import main

N = 1600
SHARDS = 4
HIGH_FP = {"fp": 0.05, "exact_fp": 0.05}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[pa.Table, Path]:
    d = tmp_path_factory.mktemp("streaming")
    table = generate_corpus(N, mean_bytes=300, exact_frac=0.08, near_frac=0.15, seed=23).select(["id", "text"])
    write_shards(table, d / "all", SHARDS)
    parts = sorted((d / "all").glob("*.parquet"))
    for k, group in enumerate([parts[:2], parts[2:3], parts[3:]]):  # three batches of files
        (d / f"b{k + 1}").mkdir()
        for p in group:
            shutil.copy(p, d / f"b{k + 1}" / p.name)
    return table, d


def verdicts_of(out: Path, d: Path) -> tuple[np.ndarray, np.ndarray]:
    """(reason code, band) per row of the whole corpus from a run's removed.parquet (rows
    of files the run did not read are left 'keep')."""
    offsets, start = {}, 0
    for p in sorted((d / "all").glob("*.parquet")):
        offsets[p.name] = start
        start += pq.ParquetFile(p).metadata.num_rows
    reason = np.zeros(start, dtype=np.int8)
    band = np.full(start, -1, dtype=np.int16)
    removed = pq.read_table(out / "removed.parquet").to_pydict()
    for shard, row, r, b in zip(removed["shard"], removed["row"], removed["reason"], removed["band"]):
        reason[offsets[Path(shard).name] + row] = REASON_LABELS.index(r)
        band[offsets[Path(shard).name] + row] = -1 if b is None else b
    return reason, band


def feed(dedup: Deduplicator, table: pa.Table, sizes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Give ``table``'s rows in order, in batches of the sizes drawn from ``sizes`` (as
    tables, record batches and bare text arrays in turn); (keep, reason, band)."""
    keeps, reasons, bands = [], [], []
    start, k = 0, 0
    while start < table.num_rows:
        n = sizes[k % len(sizes)]
        part = table.slice(start, n)
        data = [part, part.combine_chunks().to_batches()[0] if part.num_rows else part, part.column("text")][k % 3]
        if k % 2:
            v = dedup.add_verdicts(data)
            keeps.append(v.reason == 0)
            reasons.append(v.reason)
            bands.append(v.band)
        else:
            keep = dedup.add(data)
            assert keep.dtype == np.bool_ and keep.shape == (part.num_rows,)
            keeps.append(keep)
            reasons.append(None)
            bands.append(None)
        start += n
        k += 1
    return np.concatenate(keeps), reasons, bands


SIZES = [1, 7, 0, 300, 64, 1000, 2, 129]


@pytest.mark.parametrize("params", [{}, HIGH_FP], ids=["default-fp", "fp-0.05"])
def test_masks_equal_the_cli_in_batches_of_varying_sizes(corpus, tmp_path, params):
    table, d = corpus
    assert main(["dedup", str(d / "all"), "--out", str(tmp_path / "cli"), "--engine", "fused", "--threads", "1",
                 "--quiet", *(f"--{k.replace('_', '-')}={v}" for k, v in params.items())]) == 0
    want_reason, want_band = verdicts_of(tmp_path / "cli", d)
    assert (want_reason == 1).any() and (want_reason == 2).any()

    dedup = Deduplicator(DedupConfig(capacity=N, batch_rows=100, **params))  # a plain run sizes for its rows
    assert dedup.grow is False
    keep, reasons, bands = feed(dedup, table, SIZES)
    np.testing.assert_array_equal(keep, want_reason == 0)
    start = 0
    for k, r in enumerate(reasons):  # reasons and bands too, where add_verdicts gave them
        n = len(r) if r is not None else SIZES[k % len(SIZES)]
        n = min(n, N - start)
        if r is not None:
            np.testing.assert_array_equal(r, want_reason[start:start + n])
            np.testing.assert_array_equal(bands[k], want_band[start:start + n])
        start += n
    assert dedup.stats() == {"rows": N, "kept": int(keep.sum()), "exact": int((want_reason == 1).sum()),
                             "near": int((want_reason == 2).sum()), "null_text": 0, "empty_text": 0}
    kept_rows = pa.concat_tables(pq.read_table(p) for p in sorted((tmp_path / "cli" / "kept").glob("*.parquet")))
    assert table.filter(keep).equals(kept_rows)


def test_growing_index_equals_index_dir_runs_and_differs_from_fixed_sizes(corpus, tmp_path):
    """No capacity: the filters grow as --index-dir's do. Here the first generation holds 200
    documents, so 1600 rows fill four generations; --index-dir runs (library, serial)
    with --capacity 200 give the same decisions, in one run or three."""
    table, d = corpus
    config = DedupConfig(capacity=200, **HIGH_FP)
    dedup = Deduplicator(config, grow=True)
    keep, _, _ = feed(dedup, table, [333, 17, 250])
    assert len(dedup._exact.generations) == 4

    dedup_staged([d / "all"], tmp_path / "one", config, index_dir=tmp_path / "idx-one")
    np.testing.assert_array_equal(keep, verdicts_of(tmp_path / "one", d)[0] == 0)
    reasons = np.zeros(N, dtype=np.int8)
    for k in (1, 2, 3):
        dedup_staged([d / f"b{k}"], tmp_path / f"o{k}", config, index_dir=tmp_path / "idx-three")
        reasons = np.maximum(reasons, verdicts_of(tmp_path / f"o{k}", d)[0])
    np.testing.assert_array_equal(keep, reasons == 0)

    fixed = Deduplicator(DedupConfig(capacity=N, **HIGH_FP))
    assert not np.array_equal(fixed.add(table), keep)  # the test can tell filter sizes apart


def test_saved_index_is_continued_by_the_cli_and_the_cli_index_by_load(corpus, tmp_path):
    """Deduplicator (batch 1) -> save -> ``memdedup dedup --index-dir`` (batch 2) -> load ->
    Deduplicator (batch 3) -> save -> load: the decisions of one growing Deduplicator over
    all rows, and of one --index-dir run over all files."""
    table, d = corpus
    config = DedupConfig(capacity=300, **HIGH_FP)
    whole = Deduplicator(config, grow=True).add(table)
    n1 = sum(pq.ParquetFile(p).metadata.num_rows for p in (d / "b1").glob("*.parquet"))
    n2 = sum(pq.ParquetFile(p).metadata.num_rows for p in (d / "b2").glob("*.parquet"))

    first = Deduplicator(config, grow=True)
    keep1 = first.add(table.slice(0, n1))
    meta = first.save(tmp_path / "index")
    assert meta["documents"] == n1 and meta["batches"][0]["source"] == "Deduplicator"
    assert meta["batches"][0]["files"] == []

    assert main(["dedup", str(d / "b2"), "--out", str(tmp_path / "o2"), "--index-dir", str(tmp_path / "index"),
                 "--workers", "1", "--quiet", "--fp", "0.05", "--exact-fp", "0.05"]) == 0
    manifest = json.loads((tmp_path / "o2" / "manifest.json").read_text())
    assert manifest["engine"] == "staged" and manifest["index"]["index_dir"]["documents"] == n1 + n2
    keep2 = verdicts_of(tmp_path / "o2", d)[0][n1:n1 + n2] == 0

    again = Deduplicator.load(tmp_path / "index")  # parameters from the index
    assert again.config.decision_dict() == DedupConfig(**HIGH_FP).decision_dict()
    assert again.documents == n1 + n2 and again.grow
    keep3 = again.add(table.slice(n1 + n2))
    again.save(tmp_path / "index")
    np.testing.assert_array_equal(np.concatenate([keep1, keep2, keep3]), whole)

    index = json.loads((tmp_path / "index" / "index.json").read_text())
    assert index["documents"] == N
    assert [b.get("source") for b in index["batches"]] == ["Deduplicator", None, "Deduplicator"]
    assert [b["documents"] for b in index["batches"]] == [n1, n2, N - n1 - n2]
    # everything is held now: any other row that duplicates one is removed
    assert not Deduplicator.load(tmp_path / "index").add(table.slice(0, 50)).any()


def test_load_continues_a_cli_index_as_the_next_run_would(corpus, tmp_path):
    """An index built by a run without --capacity (its first generation sized for that
    run's rows): rows added after load() get the next --index-dir run's decisions."""
    _, d = corpus
    assert main(["dedup", str(d / "b1"), "--out", str(tmp_path / "o1"), "--index-dir", str(tmp_path / "index"),
                 "--workers", "1", "--quiet", "--fp", "0.05", "--exact-fp", "0.05"]) == 0
    shutil.copytree(tmp_path / "index", tmp_path / "copy")
    config = DedupConfig(**HIGH_FP)
    dedup_staged([d / "b2", d / "b3"], tmp_path / "o23", config, index_dir=tmp_path / "copy")
    want = verdicts_of(tmp_path / "o23", d)[0]
    loaded = Deduplicator.load(tmp_path / "index", config)
    rest = pa.concat_tables(pq.read_table(p) for p in sorted([*(d / "b2").glob("*"), *(d / "b3").glob("*")]))
    n1 = N - rest.num_rows
    np.testing.assert_array_equal(loaded.add(rest.slice(0, 77)), want[n1:n1 + 77] == 0)
    np.testing.assert_array_equal(loaded.add(rest.slice(77)), want[n1 + 77:] == 0)


def test_save_and_load_refusals(corpus, tmp_path):
    table, _ = corpus
    with pytest.raises(ValueError, match="grow=True"):
        Deduplicator(DedupConfig(capacity=100)).save(tmp_path / "fixed")
    with pytest.raises(ValueError, match="capacity"):
        Deduplicator(DedupConfig(), grow=False)
    for grow in ("no", 0, 1):  # "no" was truthy: a growing index
        with pytest.raises(TypeError, match="grow"):
            Deduplicator(DedupConfig(capacity=100), grow=grow)
    with pytest.raises(ValueError, match="LSHBloom"):
        Deduplicator(DedupConfig(index="lsh"))
    for config in ({"threshold": 0.7}, None):  # AttributeError: 'dict' object has no attribute 'capacity'
        with pytest.raises(TypeError, match="config must be a DedupConfig"):
            Deduplicator(config)
    with pytest.raises(TypeError, match="config must be a DedupConfig"):
        Deduplicator.load(tmp_path / "nothing", {"threshold": 0.7})
    with pytest.raises(FileNotFoundError, match="no index"):
        Deduplicator.load(tmp_path / "nothing")
    # "": not the working directory (an unset variable; the save went there, and load read it back)
    with pytest.raises(ValueError, match="index directory: an empty path"):
        Deduplicator().save("")
    with pytest.raises(ValueError, match="index directory: an empty path"):
        Deduplicator.load("")

    a = Deduplicator(DedupConfig(capacity=500), grow=True)
    a.add(table.slice(0, 100))
    a.save(tmp_path / "index")
    with pytest.raises(ValueError, match="holds another index"):
        Deduplicator(DedupConfig(capacity=500), grow=True).save(tmp_path / "index")
    with pytest.raises(IndexMismatchError, match="threshold"):
        Deduplicator.load(tmp_path / "index", DedupConfig(threshold=0.7))
    with pytest.raises(IndexMismatchError, match="threshold"):
        Deduplicator(DedupConfig(threshold=0.7)).save(tmp_path / "index")

    # two loads of one version: the first save wins, the second is refused (nothing lost silently)
    x, y = Deduplicator.load(tmp_path / "index"), Deduplicator.load(tmp_path / "index")
    x.add(table.slice(100, 10))
    y.add(table.slice(200, 10))
    x.save(tmp_path / "index")
    with pytest.raises(StateError, match="changed"):
        y.save(tmp_path / "index")
    # the saver itself goes on saving; saving with nothing new adds no version
    before = json.loads((tmp_path / "index" / "index.json").read_text())
    assert x.save(tmp_path / "index")["current"] == before["current"]
    x.add(table.slice(300, 10))
    assert x.save(tmp_path / "index")["documents"] == 120
    assert not list((tmp_path / "index").glob(".save-*"))


def test_saving_into_a_file_or_back_to_a_directory_left_behind_says_why(tmp_path):
    """save() into a path that is a file raised a bare FileExistsError from mkdir; save() back
    to the directory a Deduplicator was loaded from, after it had saved elsewhere, said only
    'holds another index' (found by the API probe): its directory is now where it last saved."""
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StateError, match="afile: not a directory"):
        Deduplicator().save(tmp_path / "afile")
    Deduplicator().save(tmp_path / "a")
    x = Deduplicator.load(tmp_path / "a")
    x.save(tmp_path / "b")
    x.add(pa.array(["a b c d e f"]))
    with pytest.raises(ValueError, match=r"holds another index .* this Deduplicator last saved to .*b"):
        x.save(tmp_path / "a")


def test_a_loaded_index_saved_elsewhere_still_refuses_the_files_it_holds(corpus, tmp_path):
    """load(D).save(E): E holds D's rows, so a run must refuse D's files on E too, or it
    removes every row of them as a duplicate of itself."""
    _, d = corpus
    dedup_staged([d / "b1"], tmp_path / "o1", DedupConfig(), index_dir=tmp_path / "index")
    Deduplicator.load(tmp_path / "index").save(tmp_path / "copy")
    with pytest.raises(InputError, match="already holds this file"):
        dedup_staged([d / "b1"], tmp_path / "o2", DedupConfig(), index_dir=tmp_path / "copy")


def test_text_inputs(tmp_path):
    texts = ["a b c d e f", "A b, c d e f!", None, "x y z", "", "!!!", "x y z w"]
    want = Deduplicator(DedupConfig(capacity=10)).add_verdicts(pa.table({"text": texts}))
    assert want.reason.tolist() == [0, 1, 0, 0, 0, 1, 0]
    arr = pa.array(texts)
    for data in (pa.table({"id": range(7), "body": texts}),
                 pa.chunked_array([arr.slice(0, 3), arr.slice(3)]),
                 arr.cast(pa.large_string()), arr.cast(pa.string_view()), arr.dictionary_encode()):
        d = Deduplicator(DedupConfig(capacity=10, text_column="body", batch_rows=2))
        assert d.add_verdicts(data).reason.tolist() == want.reason.tolist()
    assert Deduplicator(DedupConfig(capacity=10)).add(pa.nulls(3)).tolist() == [True] * 3
    assert Deduplicator(DedupConfig(capacity=10)).add(pa.table({"text": pa.array([], pa.string())})).shape == (0,)

    d = Deduplicator(DedupConfig(capacity=10))
    with pytest.raises(ValueError, match=r"no text column 'text'; columns are \['body'\]"):
        d.add(pa.table({"body": texts}))
    with pytest.raises(ValueError, match="has type int64"):
        d.add(pa.table({"text": [1, 2]}))
    with pytest.raises(TypeError, match="list"):
        d.add(texts)
    bad = pa.Array.from_buffers(pa.string(), 3, [None, pa.py_buffer(np.array([0, 1, 2, 4], np.int32).tobytes()),
                                                 pa.py_buffer(b"ab\xff\xfe")])
    with pytest.raises(ValueError, match="row 2 is not valid UTF-8"):
        d.add(pa.table({"text": bad}))
    assert d.documents == 0 and d.stats()["rows"] == 0  # nothing was inserted
    assert d.add(pa.array(["a"])).tolist() == [True]


def test_dictionaries_of_view_strings_sliced_and_chunked():
    """dictionary<string_view> (and <binary_view>) is a documented text type, but Arrow decodes no
    dictionary of views: add() crashed with ArrowNotImplementedError."""
    texts = ["a b c d e f", "A b, c d e f!", None, "x y z", "", "!!!", "x y z w"]
    want = Deduplicator(DedupConfig(capacity=10)).add(pa.array(texts)).tolist()
    for values in (pa.string_view(), pa.binary_view()):
        words = pa.array(["pad", *texts]).cast(values).dictionary_encode()
        assert pa.types.is_dictionary(words.type) and words.type.value_type == values
        for data in (words.slice(1), pa.chunked_array([words.slice(1, 3), words.slice(4)]),
                     pa.table({"text": pa.chunked_array([words.slice(1, 5), words.slice(6)])})):
            assert Deduplicator(DedupConfig(capacity=10, batch_rows=3)).add(data).tolist() == want


def test_an_index_directory_with_versions_and_no_index_json_names_both_causes(tmp_path):
    """A first save killed after its version was copied and before index.json was written
    leaves v-000001/ alone. The error told the user to 'restore' an index.json that never
    existed; it now names both causes and what to do for each."""
    from dedup.io import StateError

    (tmp_path / "idx" / "v-000001" / "band-00").mkdir(parents=True)
    with pytest.raises(StateError, match=r"interrupted first save .*remove .*lost index.json.*restore it"):
        Deduplicator().save(tmp_path / "idx")


@pytest.mark.parametrize("field,value,needle", [
    ("batches", None, "'batches' is null, expected a list of batches"),
    ("documents", "many", "'documents' is 'many', expected a count"),
    ("current", 5, "'current' is 5, expected a version name"),
    ("params", {}, "'params' lacks 'threshold'"),
    ("params", "x", "'params' is 'x', expected an object"),
    ("batches", [{"run_id": "r", "version": "v-000001", "created_unix": 1.0, "documents": 3}],
     "batch 0 lacks 'files'"),
])
def test_a_damaged_index_json_is_named_field_by_field(tmp_path, field, value, needle):
    """index.json with a field of the wrong type or shape (hand-edited, or written by another
    tool) gave TypeError/KeyError tracebacks from wherever it was first used, after the staged
    run had written its work directory; "params": "x" was called an unknown format. Now a
    StateError names the file and the field when the index is opened, by load and by the CLI."""
    d = Deduplicator()
    d.add(pa.array(["a b c d e f", "x y z"]))
    d.save(tmp_path / "idx")
    meta_path = tmp_path / "idx" / "index.json"
    meta = json.loads(meta_path.read_text())
    meta[field] = value
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StateError, match=f"{meta_path}: damaged: {needle}"):
        Deduplicator.load(tmp_path / "idx")
    write_shards(pa.table({"id": ["1"], "text": ["p q r s t u"]}), tmp_path / "in", 1)
    assert main(["dedup", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--index-dir",
                 str(tmp_path / "idx"), "--quiet"]) == 2
    assert not (tmp_path / "out").exists() and sorted(p.name for p in (tmp_path / "idx").iterdir()) == [
        ".lock", "index.json", "v-000001"]


def test_a_folder_of_the_users_named_v_something_in_an_index_directory_is_left_alone(tmp_path):
    """Only v-NNNNNN directories are index versions: a save into a directory holding a user's
    v-notes/ was refused as "an interrupted first save (remove the directory)", and a save that
    installed a version deleted v-notes/ as a stale version."""
    (tmp_path / "idx" / "v-notes").mkdir(parents=True)
    (tmp_path / "idx" / "v-notes" / "keep.txt").write_text("mine")
    d = Deduplicator()
    d.add(pa.array(["a b c d e f"]))
    d.save(tmp_path / "idx")
    d.add(pa.array(["x y z w v u"]))
    d.save(tmp_path / "idx")
    assert (tmp_path / "idx" / "v-notes" / "keep.txt").read_text() == "mine"
    assert Deduplicator.load(tmp_path / "idx").documents == 2


@pytest.mark.parametrize("earlier,changes", [(2, "words=3: Thai, Lao, Khmer and Myanmar"),
                                             (None, "words=2: Han and kana.*words=3: Thai, Lao, Khmer and Myanmar")])
def test_an_index_of_an_earlier_word_definition_is_refused(tmp_path, earlier, changes):
    """Index directories record the word definition they were built with (dedup.normalize.WORDS):
    one saved before Thai, Lao, Khmer and Myanmar code points became words by themselves
    (words=2), or before Han and kana did (no words recorded), holds other keys for that text,
    and is refused, naming what changed since, rather than silently missing its duplicates."""
    d = Deduplicator()
    d.add_verdicts(pa.array(["中文文本的例子", "ภาษาไทย", "a b c d e f"]))
    d.save(tmp_path / "idx")
    meta_path = tmp_path / "idx" / "index.json"
    meta = json.loads(meta_path.read_text())
    assert meta["params"]["words"] == 3
    meta["params"]["words"] = earlier
    if earlier is None:
        del meta["params"]["words"]  # as an index of the first definition has it
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(IndexMismatchError, match=f"words={earlier}, this run has words=3.*{changes}"):
        Deduplicator.load(tmp_path / "idx")


def test_threads_are_checked_and_used_by_each_call_only(monkeypatch):
    """``Deduplicator(threads=N)`` sketches on N Numba threads (capped at NUMBA_NUM_THREADS),
    set for each parallel kernel call and restored after it, on whatever thread calls ``add``;
    0, negative and non-integer counts are a ValueError. Before: N was not given to Numba
    (threads=0 or -3 were accepted silently); then it was set once, for the constructing thread,
    where it stayed for every later Deduplicator and the caller's own Numba code."""
    import threading

    import numba

    from dedup import kernels
    from dedup._kernels import PARALLEL_MIN_BYTES

    seen = []
    real = kernels._jit("minhash").sketch_documents

    class Spy:
        def sketch_documents(self, *args):
            seen.append(numba.get_num_threads())
            real(*args)

    monkeypatch.setattr(kernels, "_jit", lambda name: Spy() if name == "minhash" else real)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        d = Deduplicator(DedupConfig(), threads=2)
        assert numba.get_num_threads() == 1  # building sets nothing
        big = PARALLEL_MIN_BYTES // 5  # batches with the work for the parallel kernel (a small one runs serially)
        worker = threading.Thread(target=d.add, args=(pa.table({"text": [f"{i} a b c d e f " * (big // 14) for i in range(10)]}),))
        worker.start()
        worker.join()
        d.add(pa.table({"text": [f"{i} g h i j k l " * (big // 14) for i in range(10)]}))
        Deduplicator(DedupConfig(), threads=10_000).add(pa.table({"text": [f"{i} m n o " * (big // 8) for i in range(10)]}))
        cap = numba.config.NUMBA_NUM_THREADS
        assert seen == [min(2, cap), min(2, cap), cap] and numba.get_num_threads() == 1
        for bad in (0, -3, 2.5, "2", True):
            with pytest.raises(ValueError, match="threads must be None or a positive integer"):
                Deduplicator(DedupConfig(), threads=bad)
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("loaded", [False, True], ids=["new-directory", "loaded-index"])
def test_a_save_that_loses_a_race_says_what_a_deduplicator_does_next(tmp_path, monkeypatch, loaded):
    """Two processes saving Deduplicators to one directory at once: the save whose install comes
    second is refused, nothing is lost, but it was told the command line's advice ('rerun the
    same command (it redoes the band stage ...)'), which a Deduplicator cannot follow (found by
    the API probe: two processes saving together). It now says what a Deduplicator does."""
    from dedup.index_dir import IndexDir

    if loaded:
        Deduplicator().save(tmp_path / "idx")
    a, b = [Deduplicator.load(tmp_path / "idx") if loaded else Deduplicator() for _ in range(2)]
    a.add(pa.array(["a b c d e f"]))
    b.add(pa.array(["u v w x y z"]))
    real = IndexDir.install

    def a_saves_first(self, *args, **kwargs):  # a installs between b's checks and b's install
        monkeypatch.setattr(IndexDir, "install", real)
        a.save(tmp_path / "idx")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(IndexDir, "install", a_saves_first)
    with pytest.raises(StateError, match="installed version v-00000[12] while this Deduplicator .*; load it again "
                                         "and add the rows again") as refused:
        b.save(tmp_path / "idx")
    assert "band stage" not in str(refused.value)
    assert Deduplicator.load(tmp_path / "idx").documents == 1  # a's row, once


def test_a_deduplicator_is_never_copied_into_another_process_or_a_cache(tmp_path):
    """A Deduplicator used in a datasets filter: with num_proc=2 each worker decided against its own
    copy (the probe kept 276 rows where one stream keeps 235, and the caller's index got none); run
    again over a dataset from disk, datasets served its cached result, so the new Deduplicator saw
    no row and would have saved an empty index. Pickling (copying) one is now refused, naming why:
    datasets then recomputes instead of caching, and num_proc stops with that error."""
    import copy
    import pickle

    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    for copier in (pickle.dumps, copy.deepcopy):
        with pytest.raises(TypeError, match="a Deduplicator cannot be copied: its index lives in this process"):
            copier(Deduplicator())
    texts = ["a b c d e f", "A b, c d e f!", "x y z", "p q r s", "x y z"]
    datasets.Dataset.from_dict({"text": texts}).save_to_disk(tmp_path / "ds")
    ds = datasets.load_from_disk(tmp_path / "ds").with_format("arrow")
    for _ in range(2):  # the second run is not served from the first one's cache
        dedup = Deduplicator(DedupConfig(capacity=len(texts)))
        assert ds.filter(lambda batch: dedup.add(batch), batched=True).num_rows == 3
        assert dedup.stats()["rows"] == len(texts)
    with pytest.raises(TypeError, match="a Deduplicator cannot be copied"):
        ds.filter(lambda batch: dedup.add(batch), batched=True, num_proc=2)


def test_an_add_stopped_part_way_refuses_more_rather_than_removing_its_rows_again(monkeypatch, tmp_path):
    """An add() stopped after some of its slices (batch_rows) were inserted (Ctrl-C in a notebook,
    MemoryError) left those rows in the index; the natural retry, the same add, removed them as
    duplicates of themselves, silently (found by the API probe: [False, False, True] for three
    distinct texts). Such a Deduplicator now refuses every later add and save, saying why."""
    dedup = Deduplicator(DedupConfig(capacity=100, batch_rows=2))
    table = pa.table({"text": ["a b c d e f", "g h i j k l", "m n o p q r"]})
    decide = dedup._decide

    def stopped_at_the_second_slice(texts):
        if dedup.documents:
            raise KeyboardInterrupt
        return decide(texts)

    monkeypatch.setattr(dedup, "_decide", stopped_at_the_second_slice)
    with pytest.raises(KeyboardInterrupt):
        dedup.add(table)
    monkeypatch.undo()
    for retry in (lambda: dedup.add(table), lambda: Deduplicator.save(dedup, tmp_path / "idx")):
        with pytest.raises(StateError, match=r"an add\(\) stopped part way .* 2 or more of its 3 rows.*load"):
            retry()
    assert not (tmp_path / "idx").exists()


def test_an_add_stopped_before_inserting_anything_can_be_given_again():
    """Ctrl-C while the first slice was being sketched (most of an add's time) inserted nothing,
    yet the Deduplicator refused every later add and save as if rows of it were in the index.
    Only an add stopped after its first insertion begins is refused now."""
    dedup = Deduplicator(DedupConfig(capacity=100, batch_rows=2))
    table = pa.table({"text": ["a b c d e f", "g h i j k l", "a b c d e f"]})
    sketcher = dedup._sketcher

    def interrupted(texts):
        dedup._sketcher = sketcher
        raise KeyboardInterrupt

    dedup._sketcher = interrupted
    with pytest.raises(KeyboardInterrupt):
        dedup.add(table)
    assert dedup.add(table).tolist() == [True, True, False] and dedup.documents == 3


def test_a_capacity_warning_raised_as_an_error_refuses_more_rather_than_removing_its_rows_again():
    """Under ``warnings.simplefilter("error")`` (pytest's ``-W error``), the capacity warning of the add
    that first passed the capacity was raised after every row of that add was inserted: the caller got no
    mask and the Deduplicator took more adds, so the natural retry removed all five rows as duplicates of
    themselves (found by the streaming probe: [False] * 5). That add stopped part way like any other."""
    import warnings

    dedup = Deduplicator(DedupConfig(capacity=3))
    table = pa.table({"text": [f"document number {i} with some words here" for i in range(5)]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeWarning, match="capacity=3"):
            dedup.add(table)
    with pytest.raises(StateError, match=r"an add\(\) stopped part way .* after inserting 5 or more of its 5 rows"):
        dedup.add(table)  # (said '0 or more': where its last slice started)


def test_a_save_removes_what_killed_saves_left_and_nothing_another_save_holds(tmp_path):
    """A save killed while it wrote its stacks (SIGKILL, a preempted job: the largest write of a
    pipeline) left INDEX/.save-*/, a whole copy of the filters, for good: "garbage, never read"
    but never removed either, one more with every killed save. The next save removes those whose
    process is gone; one that a save in progress holds stays."""
    import fcntl
    import os

    first = Deduplicator()
    first.add(pa.array(["a b c d e f"]))
    first.save(tmp_path / "idx")
    for name in (".save-killed", ".save-running"):
        (tmp_path / "idx" / name / "band-00").mkdir(parents=True)
        (tmp_path / "idx" / name / "band-00" / "gen-000.bloom").write_bytes(b"\0" * 1000)
    (tmp_path / "idx" / ".save-notes.txt").write_text("a user's file, not a save's directory")
    running = os.open(tmp_path / "idx" / ".save-running", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(running, fcntl.LOCK_EX)  # as a save in progress holds its directory
        first.add(pa.array(["g h i j k l"]))
        first.save(tmp_path / "idx")
        assert sorted(p.name for p in (tmp_path / "idx").glob(".save-*")) == [".save-notes.txt", ".save-running"]
    finally:
        os.close(running)
    assert Deduplicator.load(tmp_path / "idx").documents == 2


@pytest.mark.parametrize("lock_file", [True, False], ids=["with-lock-file", "copied-without-it"])
def test_an_index_this_process_may_only_read_is_loaded(tmp_path, lock_file, unprivileged):
    """A shared index the user may read but not write (another team's, a published one) could not
    be loaded to decide new rows against it: load opened INDEX/.lock for appending, a
    PermissionError (found by the API probe). The lock is taken on the file opened for reading;
    an index copied without it (cp idx/* skips dotfiles), which no one who could write there has
    locked, is read without it (it was a FileNotFoundError traceback naming INDEX/.lock)."""
    d = Deduplicator()
    d.add(pa.array(["a b c d e f"]))
    d.save(tmp_path / "idx")
    if not lock_file:
        (tmp_path / "idx" / ".lock").unlink()
    for p in [tmp_path / "idx", *(tmp_path / "idx").rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)
    try:
        run = unprivileged("import pyarrow as pa; from dedup import Deduplicator\n"
                           f"d = Deduplicator.load({str(tmp_path / 'idx')!r})\n"
                           "print(d.add(pa.array(['A b c d e f', 'p q r s t u'])).tolist())\n")
        assert run.returncode == 0 and run.stdout.strip() == "[False, True]", run.stderr[-2000:]
    finally:
        for p in [tmp_path / "idx", *(tmp_path / "idx").rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)


def test_a_save_record_cannot_replace_the_fields_of_its_batch(tmp_path):
    """save(record=) adds fields to the save's batch in index.json; a field the batch has already
    (run_id, version, documents, files...) replaced it, so a record could make the index claim
    another version or count, or break the refusal of held files. Such a record is refused, and
    nothing is written."""
    d = Deduplicator()
    d.add(pa.array(["a b c d e f"]))
    for field in ("run_id", "version", "documents", "files", "source", "created_unix"):
        with pytest.raises(ValueError, match=f"record field {field!r}"):
            d.save(tmp_path / "idx", record={field: "x", "note": "kept"})
    assert not (tmp_path / "idx").exists()  # before: the directory, holding the save's lock file
    assert d.save(tmp_path / "idx", record={"note": "kept"})["batches"][-1]["note"] == "kept"


def test_a_save_record_that_is_not_json_leaves_nothing_behind(tmp_path):
    """A record JSON cannot hold failed only when index.json was written, after the version's
    filters were copied: a first save left v-000001 without index.json, and every later save or
    run into that directory was refused as "an interrupted first save"."""
    d = Deduplicator()
    d.add(pa.array(["a b c d e f"]))
    with pytest.raises(TypeError, match="record.*not JSON serialisable: object"):
        d.save(tmp_path / "idx", record={"note": object()})
    assert not (tmp_path / "idx").exists()
    assert d.save(tmp_path / "idx", record={"note": "kept"})["documents"] == 1


def test_save_returns_the_record_as_index_json_holds_it(tmp_path):
    """save() returns its index.json; a record holding NaN or a non-string key was written as JSON
    holds it (null, "1") but returned as given (nan, 1), so the returned dict and the file disagreed."""
    d = Deduplicator()
    d.add(pa.array(["a b c d e f"]))
    meta = d.save(tmp_path / "idx", record={"score": float("nan"), 1: "one", "note": "kept"})
    assert meta == json.loads((tmp_path / "idx" / "index.json").read_text())
    assert {k: meta["batches"][-1][k] for k in ("score", "1", "note")} == {"score": None, "1": "one", "note": "kept"}


def test_adds_from_two_threads_take_turns():
    """Two threads sharing one Deduplicator (a thread pool over a dataset's batches): the sketch and
    Bloom kernels release the GIL, and ``add`` kept its "stopped part way" marker on the object, so
    the second thread was refused with a StateError claiming an add had been interrupted (found by
    the index-dir probe), and concurrent inserts could both find a key unseen. Calls now take turns:
    each text given by both threads is kept exactly once, as by one thread giving everything."""
    import random
    import threading

    texts = [" ".join(f"w{random.Random(i).randrange(10**6)}" for _ in range(40)) for i in range(1500)]
    serial = Deduplicator(DedupConfig()).add(pa.array(texts)).tolist()
    dedup = Deduplicator(DedupConfig(batch_rows=16))
    keeps: list[list[bool]] = [[], []]
    errors: list[BaseException] = []

    def give(who: int) -> None:
        try:
            for s in range(0, len(texts), 50):
                keeps[who] += dedup.add(pa.array(texts[s:s + 50])).tolist()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=give, args=(w,)) for w in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert [a + b for a, b in zip(*keeps)] == [int(k) for k in serial]
    assert dedup.stats()["rows"] == dedup.documents == 2 * len(texts)


def test_rows_past_a_fixed_capacity_are_warned_of_once():
    """``DedupConfig(capacity=N)`` fixes the filters' size; past N documents the false-positive rate
    climbs until unrelated rows are removed wholesale (found by the capacity probe: 20,000 unrelated
    rows in filters for 500 kept 1,512, 15,805 of them "exact", and neither the Deduplicator nor the
    datatrove step said a word, where ``memdedup dedup --capacity`` warns). One warning now, when
    the documents first exceed the capacity, with the rate it predicts; a growing index has none."""
    import random
    import warnings

    texts = [" ".join(f"w{random.Random(i).randrange(10**6)}" for _ in range(40)) for i in range(300)]
    dedup = Deduplicator(DedupConfig(capacity=100))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dedup.add(pa.array(texts[:100]))
        grown = Deduplicator(DedupConfig(capacity=100), grow=True)
        grown.add(pa.array(texts))
    with pytest.warns(RuntimeWarning, match=r"300 documents in filters sized for capacity=100: predicted "
                                            r"false-positive rate .* \(target 1e-05\).*grow=True") as caught:
        dedup.add(pa.array(texts[100:]))
    assert len(caught) == 1 and caught[0].filename == __file__  # the caller's line, not streaming.py's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dedup.add(pa.array(texts[:1]))  # once per Deduplicator
    other = Deduplicator(DedupConfig(capacity=100))
    with pytest.warns(RuntimeWarning, match="capacity=100") as caught:
        other.add_verdicts(pa.array(texts))
    assert caught[0].filename == __file__


def test_an_index_of_other_parameters_is_refused_naming_every_difference(tmp_path):
    """Loading an index with several parameters changed named only the first (threshold), so a user
    fixed it and was refused again for the next (found by the index-dir probe). One line now names
    them all, each with the index's value and this run's."""
    Deduplicator(DedupConfig()).save(tmp_path / "index")
    with pytest.raises(IndexMismatchError) as e:
        Deduplicator.load(tmp_path / "index", DedupConfig(threshold=0.7, ngram=3, scheme="fast"))
    assert "\n" not in str(e.value)
    assert "index built with threshold=0.8, ngram=5, scheme='fss', bands=9, rows=13, this run has threshold=0.7, " \
           "ngram=3, scheme='fast', bands=14, rows=9; use the same parameters or another --index-dir" in str(e.value)


def test_a_run_whose_pinned_version_another_writer_replaced_says_to_rerun(corpus, tmp_path):
    """A staged run's band tasks load the index version pinned when it started, outside the index's
    lock; a Deduplicator (or run, or datatrove rank) that saved meanwhile removed that version, and
    the run failed with "v-000001/band-00/stack.json: cannot read: No such file or directory", which
    reads as a damaged index (found by the index-dir probe). It now says what happened and that a
    rerun decides against the new version; the rerun does."""
    from dedup.stages import serial_map

    table, d = corpus
    index = tmp_path / "index"
    dedup_staged([d / "b1"], tmp_path / "o1", index_dir=index)

    def another_writer_first(stage, fn, args):
        if stage == "band":
            other = Deduplicator.load(index)
            other.add(pa.array(["a document from memory, saved while the run works"]))
            other.save(index)
        return serial_map(stage, fn, args)

    with pytest.raises(StateError, match=r"index\.json: another run or Deduplicator installed version v-000002 while "
                                         r"this run worked from v-000001; rerun the same command"):
        dedup_staged([d / "b2"], tmp_path / "o2", index_dir=index, map_tasks=another_writer_first)
    sketched = sorted((tmp_path / "o2" / "_work").rglob("*.done"))
    assert sketched and not (tmp_path / "o2" / "kept").exists()  # its sketches kept for the rerun, no outputs
    said: list[str] = []
    assert dedup_staged([d / "b2"], tmp_path / "o2", index_dir=index, log=said.append)["index"]["index_dir"][
        "current"] == "v-000003"
    assert any("redoing the band and write stages" in m for m in said), said


def test_chunks_of_text_over_2_gib_together_are_sketched(free_memory):
    """A table's text column in chunks holding more than 2 GiB together within one batch_rows
    slice (a books corpus read with pq.read_table): the slice was joined as string, whose 32-bit
    offsets overflow, and add() raised ArrowInvalid 'offset overflow while concatenating arrays'.
    Documents of dots: no words, so the kernel passes them quickly; the second is the first again."""
    free_memory(8 << 30)
    chunk = pa.array(["." * ((1 << 30) + 1)])
    keep = Deduplicator().add(pa.table({"text": pa.chunked_array([chunk, chunk])}))
    assert keep.tolist() == [True, False]


def test_dir_of_dedup_lists_the_deduplicator():
    """Deduplicator is imported on first use (the package's __getattr__), so dir(dedup), and a notebook's
    completion of 'dedup.', never listed it."""
    import dedup

    assert set(dedup.__all__) <= set(dir(dedup))
