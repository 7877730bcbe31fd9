"""Arrow IPC inputs (``*.arrow``: what a Hugging Face ``datasets`` cache or ``save_to_disk``
holds, in the IPC *stream* format; the IPC *file* format too): discovered, read and
deduplicated like Parquet by both engines, kept shards written as Parquet."""

from __future__ import annotations

import functools
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dedup import DedupConfig, dedup_files
from dedup.runs import discover
from dedup.shards import InputError, ShardReader, count_rows, format_of
from dedup.stages import dedup_staged
from dedup.synthetic import generate_corpus, write_shards


def write_arrow(path: Path, table: pa.Table, *, stream: bool = True, batch: int = 1000) -> Path:
    """``table`` as an Arrow IPC stream (as ``datasets`` writes it: batches of 1000 rows) or file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink:
        new = pa.ipc.new_stream if stream else pa.ipc.new_file
        with new(sink, table.schema) as w:
            for b in table.to_batches(max_chunksize=batch):
                w.write_batch(b)
    return path


def outputs(out: Path) -> dict[str, pa.Table]:
    files = [out / "removed.parquet", *sorted((out / "kept").rglob("*.parquet"))]
    return {p.relative_to(out).as_posix(): pq.read_table(p) for p in files}


@pytest.fixture(scope="module")
def corpus() -> pa.Table:
    return generate_corpus(1200, mean_bytes=300, exact_frac=0.08, near_frac=0.15, seed=5)


def test_format_of_arrow():
    assert format_of(Path("data-00000-of-00001.arrow")) == ("arrow", None)
    assert format_of(Path("X.ARROW")) == ("arrow", None)


@pytest.mark.parametrize("stream", [True, False], ids=["ipc-stream", "ipc-file"])
def test_arrow_reader_reads_every_row_in_batches_of_batch_rows(tmp_path, corpus, stream):
    path = write_arrow(tmp_path / "a.arrow", corpus, stream=stream, batch=333)
    shard = discover([path])[0]
    assert (shard.fmt, shard.stem) == ("arrow", "a")
    r = ShardReader(shard, "text", "id", False, batch_rows=500)
    assert r.num_rows == count_rows([shard]) == corpus.num_rows
    batches = list(r.batches())
    # regrouped into batch_rows, whatever the file's own batches (datasets writes 1000 rows):
    # each batch becomes a row group of the kept Parquet shard
    assert [b.num_rows for b in batches] == [500, 500, 200]
    assert pa.Table.from_batches(batches).equals(corpus)
    assert r.ids(batches[0]).to_pylist() == corpus.column("id").to_pylist()[:500]


def test_a_file_of_many_small_batches_is_read_in_work_linear_in_its_batches(tmp_path, monkeypatch):
    """Rebatching joined each file batch to all the rows pending before it, so a window of batch_rows
    rows cost work quadratic in its batches: 50,000 one-row batches (a writer called per record) took
    46 s fused and 129 s staged (found by the streaming probe). Each batch is now joined once: the rows
    handed to Arrow's joins (``concat_tables``, ``Table.from_batches``) are counted (about n * batch_rows / 2
    before), not timed."""
    import types

    import dedup.shards

    n, batch_rows = 3_000, 1_024
    path = write_arrow(tmp_path / "a.arrow", pa.table({"text": [f"doc {i}" for i in range(n)]}), batch=1)
    r = ShardReader(discover([path])[0], "text", "id", False, batch_rows=batch_rows)
    batches = list(r.batches())
    assert [b.num_rows for b in batches] == [1024, 1024, 952] and batches[-1].column(0)[-1].as_py() == f"doc {n - 1}"

    joined: list[int] = []

    def counted(join):
        return lambda parts, *a, **k: joined.append(sum(p.num_rows for p in parts)) or join(parts, *a, **k)
    # the module's pa, with its joins counted (pa.Table's own attributes cannot be replaced)
    counting = types.SimpleNamespace(**{k: getattr(pa, k) for k in dir(pa) if not k.startswith("__")})
    counting.concat_tables, counting.Table = counted(pa.concat_tables), types.SimpleNamespace(
        from_batches=counted(pa.Table.from_batches))
    monkeypatch.setattr(dedup.shards, "pa", counting)
    ones = pa.table({"text": [f"doc {i}" for i in range(n)]}).to_batches(max_chunksize=1)
    assert sum(b.num_rows for b in dedup.shards._rebatched(iter(ones), ones[0].schema, batch_rows)) == n
    assert sum(joined) <= 2 * n, sum(joined)


def test_arrow_input_gives_the_same_decisions_as_parquet_in_both_engines(tmp_path, corpus):
    write_shards(corpus, tmp_path / "pq", 3)
    for i, p in enumerate(sorted((tmp_path / "pq").glob("*.parquet"))):
        write_arrow(tmp_path / "arrow" / p.with_suffix(".arrow").name, pq.read_table(p), stream=i != 1)
    config = DedupConfig(batch_rows=256)
    want = dedup_files([tmp_path / "pq"], tmp_path / "out-pq", config, threads=1)
    fused = dedup_files([tmp_path / "arrow"], tmp_path / "out-fused", config, threads=1)
    staged = dedup_staged([tmp_path / "arrow"], tmp_path / "out-staged", config)
    assert want["totals"]["removed"]["near"] > 0 and want["totals"]["removed"]["exact"] > 0
    for m in (fused, staged):
        assert m["totals"] == want["totals"]
        assert [i["format"] for i in m["inputs"]] == ["arrow"] * 3
    expected = outputs(tmp_path / "out-pq")
    for out in ("out-fused", "out-staged"):
        got = outputs(tmp_path / out)
        assert list(got) == list(expected)  # kept/part-0000N.parquet: kept shards are Parquet
        assert got["removed.parquet"].to_pydict() == {
            **expected["removed.parquet"].to_pydict(),
            "shard": [s.replace(".parquet", ".arrow") for s in expected["removed.parquet"].column("shard").to_pylist()],
        }
        for name in got:
            if name != "removed.parquet":
                assert got[name].equals(expected[name]), name


def test_kept_shards_keep_the_arrow_schema_and_its_metadata(tmp_path):
    schema = pa.schema([("id", pa.int64()), ("text", pa.large_string()), ("tags", pa.list_(pa.string()))],
                       metadata={b"huggingface": b'{"info": {"features": {}}}'})
    table = pa.table({"id": [1, 2, 3], "text": ["a b c d e f", "A b, c d e f!", "x y z"],
                      "tags": [["a"], [], None]}, schema=schema)
    write_arrow(tmp_path / "in" / "data.arrow", table)
    m = dedup_files([tmp_path / "in"], tmp_path / "out", threads=1)
    assert m["totals"]["removed"] == {"exact": 1, "near": 0}
    kept = pq.read_table(tmp_path / "out" / "kept" / "data.parquet")
    assert kept.schema.metadata == schema.metadata  # datasets' features travel with the rows
    # the same types (Parquet names a list's child "element" where Arrow says "item")
    assert kept.cast(schema).equals(table.take([0, 2]))


def test_dictionary_text_across_batches_with_different_dictionaries(tmp_path):
    b1 = pa.record_batch([pa.array(["a b c d e f", "x y z"]).dictionary_encode()], names=["text"])
    b2 = pa.record_batch([pa.array(["q r s", "A b c d e f"]).dictionary_encode()], names=["text"])
    path = tmp_path / "d.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, b1.schema) as w:
        w.write_batch(b1)
        w.write_batch(b2)
    m = dedup_files([path], tmp_path / "out", DedupConfig(batch_rows=3), threads=1)
    assert m["totals"]["removed"] == {"exact": 1, "near": 0}
    assert pq.read_table(tmp_path / "out" / "removed.parquet").column("row").to_pylist() == [3]


@pytest.mark.parametrize("values", [pa.string_view(), pa.binary_view()])
def test_dictionary_of_view_strings_is_text(tmp_path, values):
    """A dictionary of string_view (or binary_view) values is a text column as documented, but Arrow
    decodes no dictionary of views (no take kernel for them): the run crashed with ArrowNotImplementedError.
    (emit=removed: Arrow's Parquet writer cannot write such a column into a kept shard at all.)"""
    words = pa.array(["a b c d e f", "x y z", "A b c d e f"]).cast(values)
    text = pa.DictionaryArray.from_arrays(pa.array([0, 1, None, 2, 1], pa.int8()), words)
    path = write_arrow(tmp_path / "v.arrow", pa.table({"text": text}))
    m = dedup_files([path], tmp_path / "out", DedupConfig(emit="removed"), threads=1)
    assert m["totals"]["removed"] == {"exact": 2, "near": 0} and m["totals"]["null_text"] == 1
    assert pq.read_table(tmp_path / "out" / "removed.parquet").column("row").to_pylist() == [3, 4]


def test_directory_walk_skips_the_cache_files_datasets_writes_beside_a_dataset(tmp_path, corpus):
    """``ds.filter``/``ds.map`` on a dataset loaded from disk write ``cache-<fingerprint>.arrow``
    (an index mapping, or derived rows) into the dataset's directory: not input rows."""
    d = tmp_path / "saved"
    write_arrow(d / "data-00000-of-00001.arrow", corpus)
    write_arrow(d / "cache-53f056d2ad2c28cf.arrow", pa.table({"indices": pa.array([0, 2], pa.uint64())}))
    write_arrow(d / "cache-0123abcd_00000_of_00002.arrow", corpus.slice(0, 10))
    (d / "state.json").write_text("{}")
    (d / "dataset_info.json").write_text("{}")
    said: list[str] = []
    assert [s.name for s in discover([d], log=said.append)] == ["data-00000-of-00001.arrow"]
    assert any("2 " in m and "cache-" in m for m in said), said
    # named explicitly, or by a glob whose name starts with cache-, a cache file is read
    assert [s.name for s in discover([d / "cache-0123abcd_00000_of_00002.arrow"])] == ["cache-0123abcd_00000_of_00002.arrow"]
    assert len(discover([str(d / "cache-*.arrow")])) == 2
    # a glob of the dataset's files skips them as a walk does, saying so: `saved/*.arrow` read them, and the
    # dataset's own rows were removed as exact duplicates of the map's output (found by the streaming probe)
    said.clear()
    assert [s.name for s in discover([str(d / "*.arrow")], log=said.append)] == ["data-00000-of-00001.arrow"]
    assert any("2 " in m and "cache-" in m for m in said), said
    with pytest.raises(InputError, match="glob matches no .*skipped 1 Hugging Face datasets cache"):
        discover([str(d / "*_of_0000[0-9].arrow")])


def test_arrow_and_parquet_of_one_name_collide(tmp_path):
    write_arrow(tmp_path / "a.arrow", pa.table({"text": ["x"]}))
    pq.write_table(pa.table({"text": ["y"]}), tmp_path / "a.parquet")
    with pytest.raises(InputError, match="collides"):
        discover([tmp_path])


def test_arrow_errors_name_the_file(tmp_path, corpus):
    bad = tmp_path / "bad.arrow"
    bad.write_bytes(b"not arrow at all")
    with pytest.raises(InputError, match="bad.arrow"):
        dedup_files([bad], tmp_path / "o1", threads=1)
    assert not (tmp_path / "o1" / "kept").exists()

    cut = write_arrow(tmp_path / "cut.arrow", corpus, batch=100)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    with pytest.raises(InputError, match="cut.arrow"):
        dedup_files([cut], tmp_path / "o2", threads=1)

    no_text = write_arrow(tmp_path / "notext.arrow", pa.table({"body": ["x"]}))
    with pytest.raises(InputError, match="no text column 'text'"):
        dedup_files([no_text], tmp_path / "o3", threads=1)

    invalid = tmp_path / "utf8.arrow"
    texts = pa.Array.from_buffers(pa.string(), 2, [None, pa.py_buffer(bytes([0, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0])),
                                                   pa.py_buffer(b"a\xff\xfe")])
    write_arrow(invalid, pa.table({"text": texts}))
    with pytest.raises(InputError, match=r"utf8.arrow: row 1: .*not valid UTF-8"):
        dedup_files([invalid], tmp_path / "o4", threads=1)


@pytest.mark.parametrize("fmt", ["arrow", "parquet"])
def test_a_128_bit_integer_column_is_refused_as_one_not_as_corrupt(tmp_path, fmt):
    """polars writes its Int128 as a 128-bit integer, to Arrow IPC and to Parquet alike, a type pyarrow 26 has not: it
    opens no such file, not even its schema ('Integers with more than 64 bits not implemented'). The file was refused
    as 'not an Arrow IPC stream or file, or corrupt' ('unreadable or corrupt Parquet file'), which sends one looking
    for damage. It is refused saying what it holds and what to do (pyarrow names no column: neither can we)."""
    pl = pytest.importorskip("polars")
    df = pl.DataFrame({"text": ["a b", "c d"], "big": pl.Series([1, -2**100], dtype=pl.Int128)})
    path = tmp_path / f"p.{fmt}"
    df.write_ipc(path) if fmt == "arrow" else df.write_parquet(path)
    (shard,) = discover([path])
    for read in (lambda: count_rows([shard]), lambda: dedup_files([path], tmp_path / "out", threads=1)):
        with pytest.raises(InputError, match=rf"p\.{fmt}: .*128-bit integers \(polars' Int128\).*cast it") as e:
            read()
        assert "corrupt" not in str(e.value) and "\n" not in str(e.value)


def test_empty_arrow_stream(tmp_path):
    path = write_arrow(tmp_path / "empty.arrow", pa.table({"text": pa.array([], pa.string())}))
    m = dedup_files([path], tmp_path / "out", threads=1)
    assert m["totals"]["rows"] == 0
    assert pq.read_table(tmp_path / "out" / "kept" / "empty.parquet").num_rows == 0


@pytest.mark.parametrize("engine", ["fused", "staged"])
def test_a_dictionary_holding_a_null_value_is_kept_with_its_values(tmp_path, engine):
    """Arrow lets a dictionary's values hold a null (a row pointing to it is null). Such a column, beside the text or
    the text itself, was refused in one line: pyarrow's Parquet writer cannot write it ('Writing DictionaryArray with
    null encoded in dictionary type not yet supported'). Now it is encoded again without the null before it is
    written: kept rows read back with their values and types, nulls null; kept + removed = input. A dictionary of
    other values than strings (int64 here) was refused even so ('Unsupported cast from int64 to dictionary')."""
    run = functools.partial(dedup_files, threads=1) if engine == "fused" else dedup_staged  # staged: serially
    cat = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0, None], pa.int8()), pa.array(["x", None]))
    text = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0, 2], pa.int8()), pa.array(["a b c d", None, "e f g"]))
    num = pa.DictionaryArray.from_arrays(pa.array([1, 0, None, 2], pa.int32()), pa.array([None, 7, 5], pa.int64()))
    table = pa.table({"id": [1, 2, 3, 4], "text": text, "cat": cat, "num": num,
                      "in_struct": pa.StructArray.from_arrays([cat, num], ["c", "n"]),
                      "in_list": pa.ListArray.from_arrays(pa.array([0, 1, 2, 3, 4], pa.int32()), cat),
                      "nums_in_list": pa.ListArray.from_arrays(pa.array([0, 1, 2, 3, 4], pa.int32()), num)})
    path = write_arrow(tmp_path / "n.arrow", table, batch=3)
    m = run([path], tmp_path / "out", DedupConfig(batch_rows=2))
    assert (m["totals"]["rows"], m["totals"]["kept"], m["totals"]["removed"]) == (4, 3, {"exact": 1, "near": 0})
    assert pq.read_table(tmp_path / "out" / "removed.parquet").column("row").to_pylist() == [2]
    kept = pq.read_table(tmp_path / "out" / "kept" / "n.parquet")
    assert kept.to_pylist() == table.take([0, 1, 3]).to_pylist()
    assert kept.schema.field("cat").type == cat.type and kept.schema.field("text").type == text.type
    assert kept.schema.field("num").type == num.type.value_type  # (other values than strings: read back as values)


@pytest.mark.parametrize("rows", [0, 2], ids=["no-rows", "rows"])
@pytest.mark.parametrize("nested", [False, True], ids=["column", "in-a-list"])
@pytest.mark.parametrize("values", [pa.string_view(), pa.binary_view()])
def test_a_dictionary_of_views_outside_the_text_is_refused_in_one_line(tmp_path, values, nested, rows):
    """Parquet, the kept shards' format, cannot hold a dictionary of string_view (binary_view) values (Arrow's writer
    casts none). Such a column beside the text ended the run in an ArrowNotImplementedError traceback ('Unsupported
    cast from dictionary<values=string_view ...'), or, in a file without rows, was written as dictionary<string>."""
    col = pa.DictionaryArray.from_arrays(pa.array([0, None], pa.int32()), pa.array(["a"]).cast(values))
    col = pa.ListArray.from_arrays(pa.array([0, 1, 2], pa.int32()), col) if nested else col
    path = write_arrow(tmp_path / "v.arrow", pa.table({"text": ["a b", "c d"], "tag": col}).slice(0, rows))
    with pytest.raises(InputError, match=r"v.arrow: column 'tag' .* cannot be written as Parquet") as e:
        dedup_files([path], tmp_path / "out", threads=1)
    assert "\n" not in str(e.value) and not (tmp_path / "out" / "kept").exists()
    m = dedup_files([path], tmp_path / "out", DedupConfig(emit="removed"), threads=1)  # no kept shards: read
    assert m["totals"]["rows"] == rows


@pytest.mark.parametrize("nested", [False, True], ids=["column", "in-a-struct"])
def test_fixed_size_lists_of_size_zero_are_refused_in_one_line(tmp_path, nested):
    """What pyarrow writes to Parquet for a fixed_size_list of size 0 holding a list reads back as lists of one value
    or not at all ('Expected all lists to be of size=0 but index 1 had size=1'): the run completed and left a kept
    shard no reader could read."""
    col = pa.array([[], None, []], pa.list_(pa.int8(), 0))
    col = pa.StructArray.from_arrays([col], ["v"]) if nested else col
    path = write_arrow(tmp_path / "z.arrow", pa.table({"text": ["a b", "c d", "e f"], "zero": col}))
    with pytest.raises(InputError, match=r"z.arrow: column 'zero' .* cannot be written as Parquet .* size 0") as e:
        dedup_files([path], tmp_path / "out", threads=1)
    assert "\n" not in str(e.value) and not (tmp_path / "out" / "kept").exists()
    assert dedup_files([path], tmp_path / "out", DedupConfig(emit="removed"), threads=1)["totals"]["rows"] == 3


@pytest.mark.parametrize("engine", ["fused", "staged"])
def test_values_parquet_cannot_hold_are_refused_in_one_line_naming_the_rows(tmp_path, engine):
    """Parquet has no seconds: a timestamp[s] is written in milliseconds, and one beyond the milliseconds' int64
    range (2^62 s) ended the run in an ArrowInvalid traceback naming neither the file nor the rows ('Integer
    overflow when casting timestamp value ...'). Parquet dates are days: a date64 that is not a whole day (the Arrow
    format says it must be; 1 ms past midnight) was written as its day, its time of day lost without a word."""
    from dedup.stages import dedup_staged

    run = functools.partial(dedup_files, threads=1) if engine == "fused" else dedup_staged  # staged: serially
    seconds = pa.array([0, 2**62, None], pa.timestamp("s", "UTC"))
    days = pa.array([86_400_000, None, 86_400_001], pa.date64())
    for name, col, said in (("s", seconds, "rows 0-1 .*Integer overflow"),
                            ("d", pa.ListArray.from_arrays([0, 1, 2, 3], days), "row 2: .*date64 .* not a whole day")):
        path = write_arrow(tmp_path / f"{name}.arrow", pa.table({"text": ["a b", "c d", "e f"], name: col}))
        with pytest.raises(InputError, match=rf"{name}.arrow: .*{said}") as e:
            run([path], tmp_path / "out", DedupConfig(batch_rows=2))
        assert "\n" not in str(e.value) and not [f for f in (tmp_path / "out").rglob("*") if f.is_file()]
    whole = write_arrow(tmp_path / "whole.arrow", pa.table({"text": ["a b", "c d"], "d": days.slice(0, 2)}))
    run([whole], tmp_path / "out")
    assert pq.read_table(tmp_path / "out" / "kept" / "whole.parquet").column("d").to_pylist() == days.to_pylist()[:2]


@pytest.mark.parametrize("kind", ["list", "fixed_size_list"])
@pytest.mark.parametrize("engine", ["fused", "staged"])
def test_a_null_list_of_extension_values_beside_a_date64_is_kept(tmp_path, engine, kind):
    """The date64 check flattened lists to see their values, and pyarrow 26 cannot flatten lists that are all null
    when their values hold an extension type (a UUID in a struct beside the date64; the empty result has no
    builder): an ArrowNotImplementedError traceback and exit 1 ('MakeBuilder: cannot construct builder for type
    extension<arrow.uuid>') for a batch of such rows. They are kept, and the values behind a null list (here a
    date64 that is not a whole day), which are no row's, are not checked; the same value in a list is refused."""
    import uuid

    run = functools.partial(dedup_files, threads=1) if engine == "fused" else dedup_staged  # staged: serially
    ids = pa.ExtensionArray.from_storage(pa.uuid(), pa.array([uuid.UUID(int=7).bytes] * 2, pa.binary(16)))

    def lists(days: list[int]) -> pa.Array:  # row 0 null, hiding the first value; row 1 holding the second
        values = pa.StructArray.from_arrays([ids, pa.array(days, pa.date64())], names=["u", "d"])
        mask = pa.array([True, False])
        if kind == "list":
            return pa.ListArray.from_arrays(pa.array([0, 1, 2], pa.int32()), values, mask=mask)
        return pa.FixedSizeListArray.from_arrays(values, 1, mask=mask)

    table = pa.table({"text": ["a b c", "d e f"], "c": lists([86_400_001, 86_400_000])})
    m = run([write_arrow(tmp_path / "n.arrow", table)], tmp_path / "out", DedupConfig(batch_rows=1))
    assert m["totals"]["kept"] == 2
    assert pq.read_table(tmp_path / "out" / "kept" / "n.parquet").to_pylist() == table.to_pylist()
    bad = table.set_column(1, "c", lists([86_400_000, 86_400_001]))
    with pytest.raises(InputError, match=r"b.arrow: row 1: .*date64 .* not a whole day"):
        run([write_arrow(tmp_path / "b.arrow", bad)], tmp_path / "out2", DedupConfig(batch_rows=1))


@pytest.mark.parametrize("values", [pa.string_view(), pa.binary_view()])
def test_views_in_a_struct_in_a_list_beside_an_empty_list_are_refused_in_one_line(tmp_path, values):
    """pyarrow 26's Parquet writer cannot write a string_view (binary_view) in a struct in a list where a list in the
    batch is empty or null (as polars writes list<struct<string_view>>): 'Slicing not implemented for StringView'.
    The run ended in an ArrowNotImplementedError traceback; it is refused naming the file and rows (README)."""
    t = pa.list_(pa.struct([("k", values)]))
    tags = pa.array([[{"k": b"a"}], [], None], pa.list_(pa.struct([("k", pa.binary())]))).cast(t)
    path = write_arrow(tmp_path / "p.arrow", pa.table({"text": ["a b", "c d", "e f"], "tags": tags}))
    with pytest.raises(InputError, match=r"p.arrow: rows 0-2 cannot be written as Parquet .*Slicing not implemented"):
        dedup_files([path], tmp_path / "out", threads=1)
    assert dedup_files([path], tmp_path / "out", DedupConfig(emit="removed"), threads=1)["totals"]["rows"] == 3


@pytest.mark.parametrize("values", [pa.string_view(), pa.binary_view()])
def test_views_in_a_struct_are_kept_past_1024_rows(tmp_path, values):
    """pyarrow 26's Parquet writer cuts what it writes every 1,024 values and 20,000 rows (pages) and cannot cut a
    struct holding a view ('Slicing not implemented for StringView'): a polars write_ipc file with a struct of strings
    (meta: {url}) was refused once a batch kept more than 1,024 rows, whatever the README says of views in structs."""
    n = 20_100
    meta = pa.array([{"u": f"http://x/{i}".encode()} for i in range(n)], pa.struct([("u", pa.binary())]))
    meta = meta.cast(pa.struct([("u", values)]))
    text = [" ".join(f"{w}{i}" for w in "abcdefgh") for i in range(n)]
    text[5] = text[4]
    t = pa.table({"text": pa.array(text, pa.string_view()), "meta": meta})
    path = write_arrow(tmp_path / "p.arrow", t, stream=False, batch=n)
    for engine, run in (("f", functools.partial(dedup_files, threads=1)), ("s", dedup_staged)):
        run([path], tmp_path / engine)
        kept = pq.read_table(tmp_path / engine / "kept" / "p.parquet")
        assert kept.schema == t.schema and kept.to_pylist() == t.to_pylist()[:5] + t.to_pylist()[6:]
    assert (tmp_path / "f/kept/p.parquet").read_bytes() == (tmp_path / "s/kept/p.parquet").read_bytes()


def test_batches_holding_over_2_gib_of_text_together_are_read_whole(tmp_path, free_memory):
    """An Arrow file whose batches (one book each here) hold more than 2 GiB of text within
    batch_rows rows: the joined batch no longer fits string's 32-bit offsets, Arrow splits it in
    two, and only the first part was read; the run was refused as 'changed while it was read
    (2 rows when opened, 1 read)'. Now such a batch is read as the parts it must be."""
    free_memory(8 << 30)
    book = pa.array(["." * ((1 << 30) + 1)])
    path = tmp_path / "books.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(
            sink, pa.schema([("text", pa.string())]), options=pa.ipc.IpcWriteOptions(compression="zstd")) as w:
        for _ in range(2):
            w.write_batch(pa.record_batch([book], names=["text"]))
    del book
    reader = ShardReader(discover([path])[0], "text", "id", False, batch_rows=1000)
    assert [b.num_rows for b in reader.batches()] == [1, 1]
