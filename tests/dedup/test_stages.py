"""The staged engine's stages run serially, without Dask: same bytes as the fused engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dedup import DedupConfig, dedup_files
from dedup.stages import dedup_staged, serial_map
from dedup.synthetic import generate_corpus, write_shards


def _bytes(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def _work(out: Path) -> Path:
    """The run's own work directory, OUT/_work/<run id> (dedup.runs.RunPlan.work)."""
    return next(p for p in (out / "_work").iterdir() if p.is_dir())


def _planted(tmp_path: Path) -> None:
    """900 documents with planted exact and near duplicates in 3 shards under ``tmp_path/in``."""
    write_shards(generate_corpus(900, mean_bytes=300, exact_frac=0.1, near_frac=0.15, seed=4), tmp_path / "in", 3)


def _small_parts(monkeypatch, part_bytes: int) -> None:
    """Cache partitions at test size: filters over 1 KiB split into parts of ``part_bytes``."""
    import dedup.params

    monkeypatch.setattr(dedup.params, "ONE_PART_MAX_BYTES", 1024)
    monkeypatch.setattr(dedup.params, "PART_BYTES", part_bytes)


@pytest.mark.parametrize("batch_rows", [64, 32768])
def test_serial_stages_write_the_fused_engines_bytes(tmp_path, batch_rows):
    _planted(tmp_path)
    config = DedupConfig(batch_rows=batch_rows)
    calls: list[tuple[str, int]] = []

    def recording_map(label, fn, items):
        calls.append((label, len(items)))
        return serial_map(label, fn, items)

    staged = dedup_staged([tmp_path / "in"], tmp_path / "s", config, map_tasks=recording_map)
    fused = dedup_files([tmp_path / "in"], tmp_path / "f", config, threads=1)
    assert _bytes(tmp_path / "s") == _bytes(tmp_path / "f")
    assert staged["totals"] == fused["totals"] and staged["totals"]["removed"]["near"] > 0
    bands = staged["index"]["plan"]["bands"]
    assert calls == [("sketch", 3), ("band", bands + 1), ("write", 3)]
    assert not (tmp_path / "s" / "_work").exists()


def test_partitioned_filters_fed_in_chunks_across_shards_decide_as_one_filter(tmp_path, monkeypatch):
    """Filters over dedup.params.ONE_PART_MAX_BYTES are cache-partitioned and the band task
    feeds them chunks of stack.batch_keys() keys across shard boundaries. Made to happen at
    test size (parts of 512 bytes, chunks of at least 500 keys over shards of 300 rows, so
    chunks span shards and end inside none): staged and fused still write the same bytes,
    and the same as with one part (no false positive at this size either way)."""
    from dedup.scalable import FilterStack

    _planted(tmp_path)
    config = DedupConfig()
    dedup_files([tmp_path / "in"], tmp_path / "one", config, threads=1)
    _small_parts(monkeypatch, 512)
    monkeypatch.setattr(FilterStack, "batch_keys", lambda self: 500)
    sizes: list[int] = []
    add = FilterStack.add
    monkeypatch.setattr(FilterStack, "add", lambda self, keys, mask: sizes.append(len(keys)) or add(self, keys, mask))
    staged = dedup_staged([tmp_path / "in"], tmp_path / "s", config)
    assert sorted(set(sizes)) == [300, 600]  # two shards per chunk, then the last shard alone
    fused = dedup_files([tmp_path / "in"], tmp_path / "f", config, threads=1)
    assert _bytes(tmp_path / "s") == _bytes(tmp_path / "f") == _bytes(tmp_path / "one")
    assert staged["totals"]["removed"]["near"] > 0
    band = FilterStack(config.fp, 900)
    assert band.generations[0].parts > 1  # the monkeypatched sizes did partition the filters


@pytest.mark.parametrize("splits", [2, 5])
def test_band_tasks_split_by_cache_partitions_write_the_same_bytes(tmp_path, monkeypatch, splits):
    """--band-splits n: each band's task becomes n tasks, each inserting only the keys of its
    share of the filter's cache partitions (forced at test size: parts of 256 bytes). Same
    bytes as the unsplit and fused runs; the manifest's index figures are the whole filters'
    (merged from the splits' set bits); a split task touches only its parts of the filter."""
    import json

    import numpy as np

    from dedup import stages as st

    _planted(tmp_path)
    _small_parts(monkeypatch, 256)
    config = DedupConfig()
    calls: list[tuple[str, int]] = []
    touched: list[float] = []
    band_pass = st.band_pass

    def recording_map(label, fn, items):
        calls.append((label, len(items)))
        return serial_map(label, fn, items)

    def recording_pass(band, shards, work, stack, total, save_to=None, split=(0, 1), **kw):
        record = band_pass(band, shards, work, stack, total, save_to, split, **kw)
        f = stack.generations[0]
        words = np.asarray(f.bits).reshape(f.parts, -1)
        lo, hi = st.split_parts(f.parts, split)
        touched.append(float(np.concatenate([words[:lo], words[hi:]]).any()))  # bits set outside its parts
        return record

    monkeypatch.setattr(st, "band_pass", recording_pass)
    whole = dedup_staged([tmp_path / "in"], tmp_path / "whole", config)
    split = dedup_staged([tmp_path / "in"], tmp_path / "split", config, map_tasks=recording_map, band_splits=splits)
    fused = dedup_files([tmp_path / "in"], tmp_path / "f", config, threads=1)
    assert _bytes(tmp_path / "split") == _bytes(tmp_path / "whole") == _bytes(tmp_path / "f")
    bands = split["index"]["plan"]["bands"]
    assert calls[1] == ("band", (bands + 1) * splits)  # every filter here has more parts than splits
    assert not any(touched[bands + 1:])  # the split tasks' bits stay inside their parts
    assert split["index"]["predicted_fp"] == pytest.approx(whole["index"]["predicted_fp"], rel=1e-12)
    for name, rec in split["index"]["bands"].items():
        assert rec["splits"] == splits and rec["count"] == whole["index"]["bands"][name]["count"]
    assert split["totals"] == whole["totals"] == fused["totals"]
    assert json.loads((tmp_path / "split" / "manifest.json").read_text())["totals"] == split["totals"]


def test_a_run_killed_among_split_band_tasks_resumes_with_other_splits(tmp_path, monkeypatch):
    """Killed after some split band tasks finished, then resumed with another --band-splits
    (and with none): the old splits' files are not mixed in, and the outputs are the fused
    engine's bytes."""
    from dedup import stages as st

    _planted(tmp_path)
    _small_parts(monkeypatch, 256)
    config = DedupConfig()
    fused = dedup_files([tmp_path / "in"], tmp_path / "f", config, threads=1)
    band_pass, done = st.band_pass, []

    class Killed(BaseException):
        pass

    def dying_pass(*args, **kwargs):
        if len(done) == 7:
            raise Killed
        done.append(band_pass(*args, **kwargs))
        return done[-1]

    for first, then in ((3, 2), (4, 1)):
        out = tmp_path / f"s{first}-{then}"
        done.clear()
        monkeypatch.setattr(st, "band_pass", dying_pass)
        with pytest.raises(Killed):
            dedup_staged([tmp_path / "in"], out, config, band_splits=first)
        assert sorted((_work(out) / "bands").glob(f"*-of-{first}.seen.done"))  # some splits finished
        monkeypatch.setattr(st, "band_pass", band_pass)
        resumed = dedup_staged([tmp_path / "in"], out, config, band_splits=then)
        assert _bytes(out) == _bytes(tmp_path / "f") and resumed["totals"] == fused["totals"]


def test_band_splits_are_refused_with_an_index_directory(tmp_path):
    write_shards(generate_corpus(50, mean_bytes=200, seed=1), tmp_path / "in", 1)
    with pytest.raises(ValueError, match="--band-splits needs a run without --index-dir"):
        dedup_staged([tmp_path / "in"], tmp_path / "o", DedupConfig(), index_dir=tmp_path / "idx", band_splits=2)
    with pytest.raises(ValueError, match="--band-splits must be >= 1"):
        dedup_staged([tmp_path / "in"], tmp_path / "o", DedupConfig(), band_splits=0)
    assert not (tmp_path / "o").exists() and not (tmp_path / "idx").exists()


def test_a_band_task_that_dies_while_saving_its_filters_is_redone(tmp_path, monkeypatch):
    """With --index-dir a band task saves its filter stack for the install. A task killed
    while saving must not be marked done: a resumed run would skip it and install a band
    without filters (CI: SIGKILL at band:3, the fourth task was mid-save; the rerun failed
    reading v-000002/band-03/stack.json)."""
    from dedup import index_dir, stages
    from dedup.scalable import FilterStack

    write_shards(generate_corpus(300, mean_bytes=200, near_frac=0.2, seed=2), tmp_path / "in", 2)
    config = DedupConfig()
    real_save = FilterStack.save

    def dying_save(self, directory):
        if Path(directory).name == "band-01":
            (Path(directory)).mkdir(parents=True, exist_ok=True)
            raise KeyboardInterrupt  # the process dies here
        real_save(self, directory)

    monkeypatch.setattr(FilterStack, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        dedup_staged([tmp_path / "in"], tmp_path / "o", config, index_dir=tmp_path / "I")
    work = _work(tmp_path / "o")
    assert stages.read_done(stages.seen_path(work, 1)) is None
    monkeypatch.setattr(FilterStack, "save", real_save)
    resumed = dedup_staged([tmp_path / "in"], tmp_path / "o", config, index_dir=tmp_path / "I")
    clean = dedup_staged([tmp_path / "in"], tmp_path / "r", config, index_dir=tmp_path / "R")
    assert _bytes(tmp_path / "o") == _bytes(tmp_path / "r")
    assert resumed["index"]["index_dir"]["stacks"] == clean["index"]["index_dir"]["stacks"]
    for name in resumed["index"]["index_dir"]["stacks"]:
        assert FilterStack.load(tmp_path / "I" / "v-000001" / name).describe() == \
            FilterStack.load(tmp_path / "R" / "v-000001" / name).describe()
    assert index_dir.IndexDir(tmp_path / "I", resumed["index"]["index_dir"]["params"]).documents == 300


def test_a_resumed_run_is_refused_when_the_index_it_repins_to_holds_its_inputs(tmp_path):
    """A run killed mid-way (its --index-dir at version 1); meanwhile another run fed the same
    files into the index (a retried job into another --out). The resume re-pinned to the new
    version without the check a starting run makes, so every row was removed as a duplicate of
    itself and the index counted the files twice. It is refused, naming the file, as a new run is."""
    import shutil

    from dedup.shards import InputError

    class Killed(BaseException):
        pass

    def killed_after_sketch(label, fn, items):
        if label == "band":
            raise Killed
        return serial_map(label, fn, items)

    write_shards(generate_corpus(300, mean_bytes=200, seed=1), tmp_path / "b1", 1)
    write_shards(generate_corpus(300, mean_bytes=200, seed=2), tmp_path / "b2", 2)
    config, idx = DedupConfig(), tmp_path / "I"
    dedup_staged([tmp_path / "b1"], tmp_path / "o1", config, index_dir=idx)
    with pytest.raises(Killed):
        dedup_staged([tmp_path / "b2"], tmp_path / "o2", config, index_dir=idx, map_tasks=killed_after_sketch)
    shutil.copytree(tmp_path / "b2", tmp_path / "copy")
    dedup_staged([tmp_path / "copy"], tmp_path / "again", config, index_dir=idx)  # the same files, another --out
    with pytest.raises(InputError, match="already holds this file"):
        dedup_staged([tmp_path / "b2"], tmp_path / "o2", config, index_dir=idx)
    # The very files, not a copy, into another --out: the same identity, so the index held a batch
    # of this run's id and the resume took it for its own install; it failed reading filters it
    # never saved ('band-00/stack.json: cannot read') and cleared its outputs.
    write_shards(generate_corpus(300, mean_bytes=200, seed=3), tmp_path / "b3", 2)
    with pytest.raises(Killed):
        dedup_staged([tmp_path / "b3"], tmp_path / "o4", config, index_dir=idx, map_tasks=killed_after_sketch)
    dedup_staged([tmp_path / "b3"], tmp_path / "o5", config, index_dir=idx)  # the same identity as o4's run
    with pytest.raises(InputError, match="already holds this file"):
        dedup_staged([tmp_path / "b3"], tmp_path / "o4", config, index_dir=idx)


def test_emit_removed_writes_removed_and_manifest_only_in_both_engines(tmp_path):
    """``emit: removed``: removed.parquet (the same bytes as with kept shards) and the manifest
    (the same per-file counts, kept + removed = rows of each file), no kept shard, in the
    fused engine and the serial stages; a Parquet file with an extra column and a JSONL file
    (read whole) among the inputs. A completed run is not taken for one that wrote kept
    shards."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dedup.runs import OutputExistsError

    table = generate_corpus(900, mean_bytes=300, exact_frac=0.1, near_frac=0.15, seed=4)
    write_shards(table, tmp_path / "in", 3)
    pq.write_table(pa.table({"text": ["a b c d e f", "x y"], "extra": [1.5, 2.5]}), tmp_path / "in" / "z.parquet")
    (tmp_path / "in" / "y.jsonl").write_text('{"id": "j", "text": "a b c d e f"}\n')
    full = dedup_files([tmp_path / "in"], tmp_path / "all", DedupConfig(), threads=1)
    for engine in ("fused", "staged"):
        out = tmp_path / engine
        config = DedupConfig(emit="removed", batch_rows=200)
        if engine == "fused":
            m = dedup_files([tmp_path / "in"], out, config, threads=1)
        else:
            m = dedup_staged([tmp_path / "in"], out, config)
        assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "removed.parquet"]
        assert (out / "removed.parquet").read_bytes() == (tmp_path / "all" / "removed.parquet").read_bytes()
        counts = [(i["shard"], i["rows"], i["kept"], i["removed"]) for i in m["inputs"]]
        assert counts == [(i["shard"], i["rows"], i["kept"], i["removed"]) for i in full["inputs"]]
        for i in m["inputs"]:
            assert i["kept"] + i["removed"]["exact"] + i["removed"]["near"] == i["rows"]
        assert m["totals"] == full["totals"] and m["config"]["emit"] == "removed"
        with pytest.raises(OutputExistsError, match="emit"):
            dedup_files([tmp_path / "in"], out, DedupConfig(), threads=1)


def test_finalize_checks_each_shards_counts_against_its_sketched_rows(tmp_path):
    """The manifest's inputs are checked against the rows the sketch stage read: a write
    record whose own counts agree with each other but not with the sketched rows (a stale or
    foreign record) stops the run instead of reaching the manifest."""
    import json

    write_shards(generate_corpus(300, mean_bytes=300, seed=4), tmp_path / "in", 2)

    def tamper(point: str) -> None:
        if point == "finalize":
            record = next((_work(tmp_path / "out") / "removed").glob("*.parquet.done"))
            r = json.loads(record.read_text())
            r["rows"], r["kept"] = r["rows"] - 1, r["kept"] - 1
            record.write_text(json.dumps(r))

    with pytest.raises(RuntimeError, match="internal error"):
        dedup_staged([tmp_path / "in"], tmp_path / "out", DedupConfig(), checkpoint=tamper)


def test_a_damaged_band_record_is_a_state_error_naming_it(tmp_path):
    """Every stage's completion records are read back strictly (dedup.io rule 3): a band record
    damaged after its stage stops the run with the file named, as a sketch or write record does,
    not with a TypeError from deep inside the manifest."""
    from dedup.io import StateError

    write_shards(generate_corpus(200, mean_bytes=300, seed=4), tmp_path / "in", 2)

    def damaging_map(label, fn, items):
        done = serial_map(label, fn, items)
        if label == "band":
            (_work(tmp_path / "out") / "bands" / "band-00.seen.done").write_text("{trunc")
        return done

    with pytest.raises(StateError, match=r"band-00\.seen\.done: damaged"):
        dedup_staged([tmp_path / "in"], tmp_path / "out", DedupConfig(), map_tasks=damaging_map)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_json_or_empty_names_a_damaged_file(tmp_path):
    from dedup.io import StateError, json_or_empty

    assert json_or_empty(tmp_path / "absent.json") == {}
    (tmp_path / "bad.json").write_text("{trunc")
    with pytest.raises(StateError, match=r"bad\.json: damaged"):
        json_or_empty(tmp_path / "bad.json")


def test_a_late_task_of_a_killed_run_never_writes_where_the_next_run_reads(tmp_path):
    """On an external scheduler a killed client's tasks keep running and may finish while the
    next run (other inputs, same OUT) is under way. A late sketch task of run X landed in the
    next run Y's _work/ after Y had sketched that shard, and Y read X's sketch: Y's outputs
    were not those of a clean run of Y. Each run's tasks write under a directory of their own
    (its run id), which the next run's start removes, so a late task fails instead."""
    class Killed(BaseException):
        pass

    late = []

    def killed_after_sketch(label, fn, items):
        if label == "band":
            raise Killed
        late.extend((fn, args) for args in items)  # X's sketch tasks, still running somewhere
        return serial_map(label, fn, items)

    def late_tasks_land_after_sketch(label, fn, items):
        if label == "band":
            for task, args in late:
                try:
                    task(*args)
                except OSError:  # its directory is gone: the late task fails, as it should
                    pass
        return serial_map(label, fn, items)

    write_shards(generate_corpus(600, mean_bytes=300, exact_frac=0.1, near_frac=0.15, seed=5), tmp_path / "x", 2)
    write_shards(generate_corpus(500, mean_bytes=300, exact_frac=0.1, near_frac=0.15, seed=6), tmp_path / "y", 2)
    out, config = tmp_path / "out", DedupConfig()
    with pytest.raises(Killed):  # run X: its client killed once its sketches were done
        dedup_staged([tmp_path / "x"], out, config, map_tasks=killed_after_sketch)
    y = dedup_staged([tmp_path / "y"], out, config, map_tasks=late_tasks_land_after_sketch)
    clean = dedup_staged([tmp_path / "y"], tmp_path / "clean", config)
    assert y["totals"] == clean["totals"] and _bytes(out) == _bytes(tmp_path / "clean")


def test_serial_stages_write_the_fused_engines_bytes_on_chinese_japanese_and_korean_text(tmp_path):
    """Han and kana code points are words by themselves (since dedup.normalize.WORDS 2). On real
    text, the CJK test files that ship with Python (test/cjkencodings: Chinese, Japanese and
    Korean, with Latin words between), cut into lines and whole files in Parquet and JSON Lines
    shards, with planted copies (case and spacing changed) and Chinese and Japanese documents
    with one or two characters edited: the serial stages write the fused engine's bytes, every
    row is kept or listed as removed, the copies are exact and the edited documents near
    duplicates."""
    import json
    import random
    import sysconfig

    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted((Path(sysconfig.get_paths()["stdlib"]) / "test" / "cjkencodings").glob("*-utf8.txt"))
    texts = {f.name.removesuffix("-utf8.txt"): f.read_text(encoding="utf-8") for f in files}
    assert {"gb2312", "gbk", "euc_jp", "euc_kr"} <= set(texts)
    docs = [(f"{name}#{k}", line) for name, t in texts.items() for k, line in enumerate(t.splitlines()) if line.strip()]
    docs += [(name, t) for name, t in texts.items()]
    rng = random.Random(0)
    rng.shuffle(docs)

    def edited(text: str, k: int) -> str:
        chars = list(text)
        for i in rng.sample([i for i, ch in enumerate(chars) if "\u4e00" <= ch <= "\u9fff"], k):
            chars[i] = "一" if chars[i] != "一" else "二"
        return "".join(chars)

    planted = {"zh~1": edited(texts["gb2312"] + texts["gbk"], 1), "ja~2": edited(texts["euc_jp"], 2),
               "ko~copy": "  " + texts["euc_kr"].upper().replace("\n", " \t "), "zh~copy": texts["gb18030"] + "!"}
    docs.insert(len(docs) // 2, ("gb2312+gbk", texts["gb2312"] + texts["gbk"]))
    docs += list(planted.items())
    (tmp_path / "in").mkdir()
    third = len(docs) // 3
    for k, part in enumerate((docs[:third], docs[third:2 * third], docs[2 * third:])):
        ids, rows = [d[0] for d in part], [d[1] for d in part]
        if k == 1:
            (tmp_path / "in" / "b.jsonl").write_text(
                "".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in zip(ids, rows)),
                encoding="utf-8")
        else:
            pq.write_table(pa.table({"id": ids, "text": rows}), tmp_path / "in" / f"{'ac'[k // 2]}.parquet")
    config = DedupConfig(batch_rows=16)
    staged = dedup_staged([tmp_path / "in"], tmp_path / "s", config)
    fused = dedup_files([tmp_path / "in"], tmp_path / "f", config, threads=1)
    assert _bytes(tmp_path / "s") == _bytes(tmp_path / "f")
    assert staged["totals"] == fused["totals"] and staged["totals"]["rows"] == len(docs)
    removed = pq.read_table(tmp_path / "f" / "removed.parquet").to_pylist()
    kept = [i for p in sorted((tmp_path / "f" / "kept").iterdir()) for i in pq.read_table(p).column("id").to_pylist()]
    assert sorted(kept + [r["id"] for r in removed]) == sorted(d[0] for d in docs)
    reasons = {r["id"]: r["reason"] for r in removed}
    assert {i: reasons.get(i) for i in planted} == {"zh~1": "near", "ja~2": "near", "ko~copy": "exact",
                                                    "zh~copy": "exact"}


def test_float_ids_read_alike_in_every_engine_and_batch_size(tmp_path):
    """Float ids (pandas' integer ids with a missing value) read as dedup.shards.id_strings
    says, value by value: the serial stages write the fused engine's bytes, and removed.parquet
    lists the same ids whatever the batch size (one NaN in a batch once switched the batch's
    whole-number ids to Arrow's exponent form)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "in").mkdir()
    text = "the same words in the same order make an exact duplicate"
    parts = [([2.5, 10000000009.0, 10000000007.0, float("nan")], [text, "unique one", text, "another unique text"]),
             ([None, 3.0, 1e20], [text, "yet another document", text])]
    for k, (ids, texts) in enumerate(parts):
        pq.write_table(pa.table({"id": pa.array(ids, pa.float64()), "text": texts}), tmp_path / "in" / f"p{k}.parquet")
    removed = {}
    for batch_rows in (1, 2, 32768):
        config = DedupConfig(batch_rows=batch_rows)
        dedup_staged([tmp_path / "in"], tmp_path / f"s{batch_rows}", config, map_tasks=serial_map)
        dedup_files([tmp_path / "in"], tmp_path / f"f{batch_rows}", config, threads=1)
        assert _bytes(tmp_path / f"s{batch_rows}") == _bytes(tmp_path / f"f{batch_rows}")
        removed[batch_rows] = pq.read_table(tmp_path / f"f{batch_rows}" / "removed.parquet").column("id").to_pylist()
    assert removed[1] == removed[2] == removed[32768] == ["10000000007", None, "1e+20"]


def test_duration_bool8_and_decimal_ids_read_as_their_values_in_every_engine(tmp_path):
    """Ids are the text of their value: a duration id was written as its bare count (5 seconds and
    5 milliseconds both '5', the unit lost), an Arrow bool8 id as its int8 storage ('1', '0', any
    other byte too) where a bool id is 'true'/'false'. Durations now carry their unit ('5s',
    '5000ms'), bool8 reads as bool; a decimal stays as Arrow writes it in its scale (1.0 in
    decimal(5, 1) is '1.0'). Both engines write the same bytes."""
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "in").mkdir()
    text = "the same words in the same order make an exact duplicate"
    bool8 = pa.ExtensionArray.from_storage(pa.bool8(), pa.array([0, 1, 2, None, 0], pa.int8()))
    decimals = pa.array([decimal.Decimal(v) for v in "0.5 1.0 2.0 -3.5 1.5".split()], pa.decimal128(5, 1))
    columns = {"s": pa.array([1, 7, 5, 9, None], pa.duration("s")), "b8": bool8, "dec": decimals,
               "ms": pa.array([1, 7, 5000, 9, 3], pa.duration("ms"))}
    for name, ids in columns.items():
        texts = [f"{name} unique document", f"{name} {text}", f"{name} {text}", f"{name} another one", f"{name} {text}"]
        pq.write_table(pa.table({"id": ids, "text": texts}), tmp_path / "in" / f"{name}.parquet")
    dedup_staged([tmp_path / "in"], tmp_path / "s", DedupConfig(), map_tasks=serial_map)
    dedup_files([tmp_path / "in"], tmp_path / "f", DedupConfig(), threads=1)
    assert _bytes(tmp_path / "s") == _bytes(tmp_path / "f")
    removed = pq.read_table(tmp_path / "f" / "removed.parquet").to_pylist()
    assert [(r["shard"], r["id"]) for r in removed] == [
        ("b8.parquet", "true"), ("b8.parquet", "false"), ("dec.parquet", "2.0"), ("dec.parquet", "1.5"),
        ("ms.parquet", "5000ms"), ("ms.parquet", "3ms"), ("s.parquet", "5s"), ("s.parquet", None)]


@pytest.mark.parametrize("long_name", ["ß" * 110 + ".parquet", "ß" * 123 + "x.parquet"])  # 228 and 255 bytes
def test_a_long_input_file_name_is_read_by_both_engines(tmp_path, long_name):
    """File names may be 255 bytes long. Every output was first written to a temporary sibling
    named '.<name>.tmp-<pid>-<12 hex>', 26 or more bytes longer than the file's own name, so an
    input named in 220-odd bytes (a title in 75 CJK characters) whose kept shard's name fits failed
    in both engines with 'File name too long', naming a temporary the user never made. Now a
    temporary whose name would be too long is named by a digest of the final name instead. The
    staged engine's work files ('<stem>.arrow.done') were 11 bytes longer than the input's stem:
    names of 245 bytes and more failed there; those too are now named by a digest."""
    _planted(tmp_path)
    (tmp_path / "in" / "part-00001.parquet").rename(tmp_path / "in" / long_name)
    dedup_staged([tmp_path / "in"], tmp_path / "s", DedupConfig(), map_tasks=serial_map)
    dedup_files([tmp_path / "in"], tmp_path / "f", DedupConfig(), threads=1)
    assert _bytes(tmp_path / "s") == _bytes(tmp_path / "f")
    assert (tmp_path / "f" / "kept" / long_name).is_file()


class Killed(BaseException):
    """A kill of the client (not an Exception: nothing catches it)."""


def killed_in_write(label, fn, items):
    """A ``map_tasks`` that runs two write tasks, then is killed."""
    if label == "write":
        serial_map(label, fn, items[:2])
        raise Killed
    return serial_map(label, fn, items)


@pytest.mark.parametrize("changed", [{"compression": "snappy"}, {"batch_rows": 100}])
def test_a_run_killed_in_the_write_stage_rerun_with_other_output_settings_is_not_mixed(tmp_path, changed):
    """Killed after some write tasks, then rerun with another --compression (or --batch-rows): the
    rerun resumed (neither is in the run's identity) and kept the finished tasks' kept shards, written
    the old way: kept/ held zstd and snappy files (or row groups of two sizes) under a manifest
    saying snappy, bytes no clean run gives."""
    _planted(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(Killed):
        dedup_staged([tmp_path / "in"], out, DedupConfig(), map_tasks=killed_in_write)
    assert len(list((_work(out) / "removed").glob("*.done"))) == 2
    config = DedupConfig(**changed)
    resumed = dedup_staged([tmp_path / "in"], out, config)
    dedup_files([tmp_path / "in"], tmp_path / "clean", config, threads=1)
    assert _bytes(out) == _bytes(tmp_path / "clean")
    assert resumed["config"] == config.to_dict()


def test_a_run_record_from_before_output_settings_resumes_as_before(tmp_path):
    """Run records written before they held the output settings (compression, batch_rows) were all
    taken for records of other settings: a killed run of an earlier version started over, and one
    killed after its index install was refused for good (its rerun, the advice, refused again;
    found by review). Such a record is read as one of these settings, as before: it resumes."""
    import json

    _planted(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(Killed):
        dedup_staged([tmp_path / "in"], out, DedupConfig(), map_tasks=killed_in_write, index_dir=tmp_path / "idx")
    record = json.loads((out / "_work" / "run.json").read_text())
    del record["settings"]  # as an earlier version wrote it
    (out / "_work" / "run.json").write_text(json.dumps(record))
    said: list[str] = []
    dedup_staged([tmp_path / "in"], out, DedupConfig(), index_dir=tmp_path / "idx", log=said.append)
    assert any("resuming the unfinished run" in m for m in said), said
    dedup_files([tmp_path / "in"], tmp_path / "clean", DedupConfig(), threads=1)
    assert _bytes(out) == _bytes(tmp_path / "clean")


def test_a_run_whose_index_install_is_refused_as_stale_keeps_its_sketches_and_resumes(tmp_path):
    """Two batches into one --index-dir at once: the later install is refused (another run installed a
    version meanwhile), saying "rerun the same command (it redoes the band stage against the new
    version)"; but the refusal cleared the run's outputs, _work too, so the rerun sketched every shard
    again (at scale the longest stage). Its work is kept: the rerun re-pins, keeps the sketches, and
    gives the decisions of the batches run one after the other."""
    from dedup.io import StateError

    for name, seed in (("b1", 1), ("b2", 2), ("b3", 3)):
        write_shards(generate_corpus(300, mean_bytes=200, exact_frac=0.1, near_frac=0.15, seed=seed),
                     tmp_path / name, 2)
    config, idx = DedupConfig(), tmp_path / "I"
    dedup_staged([tmp_path / "b1"], tmp_path / "o1", config, index_dir=idx)

    def other_run_installs_meanwhile(label, fn, items):
        if label == "write":  # b3's run starts and ends while this one works from version 1
            dedup_staged([tmp_path / "b3"], tmp_path / "o3", config, index_dir=idx)
        return serial_map(label, fn, items)

    with pytest.raises(StateError, match="another run installed version"):
        dedup_staged([tmp_path / "b2"], tmp_path / "o2", config, index_dir=idx, map_tasks=other_run_installs_meanwhile)
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == ["_work"]  # no kept shards of the stale decisions
    ran: list[str] = []

    def recording_map(label, fn, items):
        ran.extend(label for _ in items)
        return serial_map(label, fn, items)

    dedup_staged([tmp_path / "b2"], tmp_path / "o2", config, index_dir=idx, map_tasks=recording_map)
    assert "sketch" not in ran and "band" in ran
    # the same batches one after the other (b1, b3, then b2) into a fresh index
    for name in ("b1", "b3", "b2"):
        dedup_staged([tmp_path / name], tmp_path / f"seq-{name}", config, index_dir=tmp_path / "J")
    assert _bytes(tmp_path / "o2") == _bytes(tmp_path / "seq-b2")


@pytest.mark.parametrize("where", ["kept/idx", "kept/runs/b"])
def test_force_clears_a_runs_outputs_but_not_an_index_or_run_below_its_kept_folder(tmp_path, where):
    """``--force`` clears ``OUT/kept/``, which is memdedup's; an index directory or another run's output
    directory placed below it (``--index-dir A/kept/idx``, ``--out A/kept/runs/b``) is not this run's output:
    deleting it lost every batch the index held, or a completed run."""
    _planted(tmp_path)
    a = tmp_path / "a"
    dedup_files([tmp_path / "in"], a, threads=1)
    if where == "kept/idx":
        dedup_staged([tmp_path / "in"], tmp_path / "b", index_dir=a / where)
    else:
        dedup_files([tmp_path / "in"], a / where, threads=1)
    before = {p: p.read_bytes() for p in (a / where).rglob("*") if p.is_file()}
    dedup_files([tmp_path / "in" / "part-00000.parquet"], a, threads=1, force=True)
    assert {p: p.read_bytes() for p in (a / where).rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in (a / "kept").glob("*.parquet")) == ["part-00000.parquet"]


@pytest.mark.parametrize("where", ["kept", "_work", "_work/idx"])
def test_an_index_directory_where_the_run_clears_its_outputs_is_refused(tmp_path, where):
    """``--index-dir OUT/_work/idx``: the run completed, then removed ``_work/`` and the index with it, so
    the next batch began a fresh index and was not deduplicated against this one, silently. ``--index-dir
    OUT/kept``: the next ``--force`` run into OUT deleted the index's files, then failed on its missing
    stack.json (found by the dedup probe). Both are refused before anything is written."""
    _planted(tmp_path)
    with pytest.raises(ValueError, match=f"--index-dir .*{where}: inside the output directory's"):
        dedup_staged([tmp_path / "in"], tmp_path / "a", index_dir=tmp_path / "a" / where)
    assert not (tmp_path / "a" / where / "index.json").exists()


@pytest.mark.parametrize("empty", ["none.jsonl", "none.parquet"])
def test_an_empty_file_of_the_same_bytes_as_one_the_index_holds_is_not_refused(tmp_path, empty):
    """Batches that each hold an empty shard (a partition with no rows that day): the second run was refused,
    "the index already holds this file ... feeding it again would remove every row as a duplicate of itself",
    as every empty file (and every zero-row Parquet file of one schema) has one fingerprint; it has no rows
    to remove (found by the dedup probe)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _planted(tmp_path)
    for day, part in (("d1", "part-00000.parquet"), ("d2", "part-00001.parquet")):
        (tmp_path / day).mkdir()
        (tmp_path / "in" / part).rename(tmp_path / day / part)
        if empty.endswith(".jsonl"):
            (tmp_path / day / empty).write_bytes(b"")
        else:
            pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}),
                           tmp_path / day / empty)
        m = dedup_staged([tmp_path / day], tmp_path / f"o-{day}", index_dir=tmp_path / "I")
        assert m["totals"]["rows"] == 300
    # a file with rows is still refused when held
    with pytest.raises(ValueError, match="already holds this file"):
        dedup_staged([tmp_path / "d2"], tmp_path / "o-again", index_dir=tmp_path / "I")


def test_a_file_of_no_rows_the_index_holds_that_grew_is_not_refused(tmp_path):
    """A JSON Lines file of blank lines only (no rows) indexed, then rows appended to it: refused as grown ("fed
    again, they would be removed as duplicates of themselves"), though the index holds none of its rows."""
    (tmp_path / "in").mkdir()
    log = tmp_path / "in" / "log.jsonl"
    log.write_bytes(b"\n\n")
    assert dedup_staged([log], tmp_path / "o1", index_dir=tmp_path / "I")["totals"]["rows"] == 0
    with log.open("a") as f:
        f.write('{"id": "a", "text": "one two three four five six"}\n')
    assert dedup_staged([log], tmp_path / "o2", index_dir=tmp_path / "I")["totals"]["kept"] == 1


@pytest.mark.parametrize("during", ["sketch", "write"])
def test_an_input_rewritten_while_a_stage_reads_it_is_refused(tmp_path, monkeypatch, during):
    """The write stage applies the sketch stage's verdicts to the rows it reads, so both must read the same file.
    Its state (size, mtime, inode) was taken after the sketch had read it and before the write read it: a file
    rewritten (same size, other text) while the sketch read it, or while the write read it, had the verdicts of
    other rows applied, silently. Now each stage compares the state before and after its read."""
    import dedup.layout
    import dedup.stages
    from dedup.shards import InputError

    path = tmp_path / "in" / "a.jsonl"
    path.parent.mkdir()
    lines = ["document {i} of the corpus here", "document {i} of the corpus HERE"]  # same size when rewritten
    write = lambda k: path.write_text("".join(json.dumps({"text": lines[k].format(i=i % 5)}) + "\n" for i in range(10)))
    write(0)
    hooked = getattr(dedup.stages.Sketcher, "__call__") if during == "sketch" else dedup.layout.write_verdicts

    def rewriting(*args, **kwargs):
        write(1)
        return hooked(*args, **kwargs)

    if during == "sketch":
        monkeypatch.setattr(dedup.stages.Sketcher, "__call__", rewriting)
    else:
        monkeypatch.setattr(dedup.layout, "write_verdicts", rewriting)
    with pytest.raises(InputError, match="changed while it was read"):
        dedup_staged([path.parent], tmp_path / "out", DedupConfig(batch_rows=4))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.parquet"))


@pytest.mark.parametrize("splits", ["2", 2.5, True])
def test_band_splits_must_be_a_whole_number_of_tasks(tmp_path, splits):
    """band_splits="2" raised TypeError: '<' not supported between instances of 'str' and 'int', and 2.5 ran as 2."""
    write_shards(generate_corpus(50, seed=1), tmp_path / "in", 1)
    with pytest.raises(ValueError, match=f"band-splits must be an integer >= 1, got {splits!r}"):
        dedup_staged([tmp_path / "in"], tmp_path / "out", band_splits=splits)
    assert not (tmp_path / "out").exists()


def test_the_plan_of_an_index_directory_run_sizes_no_fixed_filter(tmp_path):
    """With --index-dir the filters grow by generations from the index's first run, so a plan of filters sized
    for this batch (capacity, bits, bytes, rate at capacity) described filters no run used: the second batch's
    manifest said capacity 300 while the index held 600 documents in generations sized at its creation."""
    write_shards(generate_corpus(300, mean_bytes=200, seed=1), tmp_path / "b1", 1)
    write_shards(generate_corpus(300, mean_bytes=200, seed=2), tmp_path / "b2", 1)
    dedup_staged([tmp_path / "b1"], tmp_path / "o1", DedupConfig(), index_dir=tmp_path / "I")
    index = dedup_staged([tmp_path / "b2"], tmp_path / "o2", DedupConfig(), index_dir=tmp_path / "I")["index"]
    sizing = ("capacity", "band_bits", "band_k", "index_bytes", "bytes_per_doc", "predicted_fp_at_capacity")
    assert all(index["plan"][k] is None for k in sizing), index["plan"]
    assert (index["plan"]["bands"], index["plan"]["rows"], index["plan"]["total_fp"]) == (*DedupConfig().banding(), 1e-5)
    assert index["index_dir"]["documents"] == 600 and 0 < index["predicted_fp"] < 1e-5
    fixed = dedup_staged([tmp_path / "b2"], tmp_path / "o3", DedupConfig())["index"]["plan"]
    assert fixed["capacity"] == 300 and fixed["predicted_fp_at_capacity"] > 0
