"""Tests of dedup.shards: discovery, canonical order, names, formats and input errors."""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dedup.runs import discover
from dedup.shards import InputError, Shard, ShardReader, count_rows

ROWS = [
    {"id": "r0", "text": "the quick brown fox jumps over the lazy dog"},
    {"id": "r1", "text": None},
    {"id": "r2", "text": "zürich café ﬁne"},
]


def _jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def write(path: Path, rows: list[dict] = ROWS) -> Path:
    """Write ``rows`` in the format named by ``path``'s suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif name.endswith(".gz"):
        path.write_bytes(gzip.compress(_jsonl_bytes(rows)))
    elif name.endswith(".zst"):
        with pa.CompressedOutputStream(str(path), "zstd") as f:
            f.write(_jsonl_bytes(rows))
    else:
        path.write_bytes(_jsonl_bytes(rows))
    return path


@contextmanager
def raises_naming(path: Path, match: str | None = None):
    """``pytest.raises(InputError, match=match)`` whose message also names ``path``."""
    with pytest.raises(InputError, match=match) as e:
        yield e
    assert str(path.resolve()) in str(e.value)


def reader(shard: Shard, text: str = "text", id_column: str | None = "id", id_required: bool = False) -> ShardReader:
    return ShardReader(shard, text, id_column, id_required, batch_rows=2)


def read_all(r: ShardReader) -> pa.Table:
    return pa.Table.from_batches(list(r.batches()), schema=r.schema)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    write(d / "b.parquet")
    write(d / "a.jsonl")
    write(d / "sub" / "c.jsonl.gz")
    write(d / "sub" / "d.jsonl.zst")
    write(d / "sub" / "deeper" / "e.pq")
    write(d / ".hidden.parquet")  # hidden: skipped when walking a directory
    (d / "notes.txt").write_text("not data")
    (d / "README").write_text("not data")
    return d


# ------------------------------------------------------------------------- discovery


def test_directory_is_searched_recursively_in_canonical_order(tree: Path):
    shards = discover([tree])
    assert [s.name for s in shards] == [
        "a.jsonl",
        "b.parquet",
        "sub/c.jsonl.gz",
        "sub/d.jsonl.zst",
        "sub/deeper/e.pq",
    ]
    assert [s.path for s in shards] == sorted((s.path for s in shards), key=str)
    assert all(s.path.is_absolute() and s.path.is_file() for s in shards)
    assert [(s.fmt, s.compression) for s in shards] == [
        ("jsonl", None),
        ("parquet", None),
        ("jsonl", "gzip"),
        ("jsonl", "zstd"),
        ("parquet", None),
    ]
    assert [s.stem for s in shards] == ["a", "b", "sub/c", "sub/d", "sub/deeper/e"]


def test_order_does_not_depend_on_argument_order_and_duplicates_collapse(tree: Path):
    a, b = tree / "a.jsonl", tree / "b.parquet"
    assert discover([b, a]) == discover([a, b])
    # a file named both directly and through its directory is one shard
    assert discover([tree, a, str(b)]) == discover([tree])
    # relative paths resolve to the same shards as absolute ones
    import os

    old = os.getcwd()
    os.chdir(tree)
    try:
        assert discover(["b.parquet", "a.jsonl"]) == discover([a, b])
    finally:
        os.chdir(old)


def test_explicit_files_and_globs(tree: Path):
    one = discover([tree / "sub" / "c.jsonl.gz"])
    assert [(s.name, s.stem, s.fmt, s.compression) for s in one] == [("c.jsonl.gz", "c", "jsonl", "gzip")]
    assert one[0].path == (tree / "sub" / "c.jsonl.gz").resolve()

    flat = discover([str(tree / "*.parquet")])
    assert [s.name for s in flat] == ["b.parquet"]  # the hidden file does not match '*'

    deep = discover([str(tree / "**" / "*.jsonl*")])
    assert [s.name for s in deep] == ["a.jsonl", "sub/c.jsonl.gz", "sub/d.jsonl.zst"]

    # a glob that also matches non-data files and directories keeps only the data files
    mixed = discover([str(tree / "*")])
    assert [s.name for s in mixed] == ["a.jsonl", "b.parquet"]


def test_names_are_relative_to_the_common_parent(tmp_path: Path):
    x = write(tmp_path / "corpus" / "x" / "part.parquet")
    y = write(tmp_path / "corpus" / "y" / "part.jsonl.gz")
    shards = discover([x, y])
    assert [s.name for s in shards] == ["x/part.parquet", "y/part.jsonl.gz"]
    assert [s.stem for s in shards] == ["x/part", "y/part"]
    # only the common parent's part is dropped, however deep the files are
    z = write(tmp_path / "corpus" / "x" / "deep" / "z.jsonl")
    assert [s.name for s in discover([z, x])] == ["deep/z.jsonl", "part.parquet"]


@pytest.mark.parametrize(
    "name, fmt, compression, stem",
    [
        ("p.parquet", "parquet", None, "p"),
        ("p.pq", "parquet", None, "p"),
        ("p.jsonl", "jsonl", None, "p"),
        ("p.ndjson", "jsonl", None, "p"),
        ("p.json", "jsonl", None, "p"),
        ("p.jsonl.gz", "jsonl", "gzip", "p"),
        ("p.json.gz", "jsonl", "gzip", "p"),
        ("p.jsonl.zst", "jsonl", "zstd", "p"),
        ("p.ndjson.zst", "jsonl", "zstd", "p"),
        ("P.JSONL.GZ", "jsonl", "gzip", "P"),
        ("part-00001.v2.parquet", "parquet", None, "part-00001.v2"),
    ],
)
def test_formats_and_compressions_are_detected_and_read(tmp_path: Path, name, fmt, compression, stem):
    path = write(tmp_path / name)
    (shard,) = discover([path])
    assert (shard.fmt, shard.compression, shard.stem) == (fmt, compression, stem)
    r = reader(shard)
    assert r.num_rows == 3
    t = read_all(r)
    assert t.column("id").to_pylist() == ["r0", "r1", "r2"]
    assert t.column("text").to_pylist() == [row["text"] for row in ROWS]
    assert count_rows([shard]) == 3


# ---------------------------------------------------------------------- discovery errors


def test_missing_path_is_an_error_naming_it(tmp_path: Path):
    missing = tmp_path / "nope.parquet"
    with pytest.raises(InputError, match="no such file") as e:
        discover([missing])
    assert e.value.path == str(missing)
    assert str(missing) in str(e.value)


def test_glob_matching_nothing_is_an_error_naming_the_pattern(tree: Path):
    pattern = str(tree / "*.nothing")
    with pytest.raises(InputError, match="glob matches no") as e:
        discover([pattern])
    assert pattern in str(e.value)
    # matching only files that are not data is the same error
    with pytest.raises(InputError, match="glob matches no"):
        discover([str(tree / "*.txt")])


def test_directory_without_data_files_is_an_error(tmp_path: Path):
    d = tmp_path / "empty"
    d.mkdir()
    (d / "x.csv").write_text("a,b\n")
    with pytest.raises(InputError, match="no .parquet") as e:
        discover([d])
    assert str(d) in str(e.value)


def test_explicit_file_of_unknown_format_is_an_error(tree: Path):
    with pytest.raises(InputError, match="unknown input format") as e:
        discover([tree / "notes.txt"])
    assert str(tree / "notes.txt") in str(e.value)


def test_no_inputs_is_an_error():
    with pytest.raises(InputError, match="no input files"):
        discover([])


@pytest.mark.parametrize("how", ["directory", "glob"])
def test_a_broken_link_to_a_data_file_is_an_error_in_walks_and_globs_too(tree: Path, how: str):
    """A data file that is a broken symbolic link (a Hugging Face hub snapshot whose blob was
    never downloaded, a link into a store that moved) was refused when named, but directory
    walks and globs left it out without a word: the run went on with fewer rows than the corpus
    has. Now it is refused naming the link, however it is reached."""
    link = tree / "sub" / "gone.parquet"
    link.symlink_to(tree / "nowhere" / "gone.parquet")
    with pytest.raises(InputError, match="broken symbolic link") as e:
        discover([tree if how == "directory" else str(tree / "**" / "*.parquet")])
    assert e.value.path == str(link), e.value


@pytest.mark.parametrize("how", ["directory", "glob"])
def test_a_link_whose_target_cannot_be_read_is_named_so_and_links_inside_out_are_left_out(tree: Path, how: str):
    """A link loop was called a link to a missing file; and a broken link under an --out that lies
    inside the input directory failed the walk, which leaves everything under --out out."""
    (tree / "sub" / "a.parquet").symlink_to(tree / "sub" / "b.parquet")
    (tree / "sub" / "b.parquet").symlink_to(tree / "sub" / "a.parquet")
    given = tree if how == "directory" else str(tree / "**" / "*.parquet")
    with pytest.raises(InputError, match="cannot be read .*(levels of symbolic links|loop)") as e:
        discover([given])
    assert e.value.path == str(tree / "sub" / "a.parquet"), e.value
    for name in ("a.parquet", "b.parquet"):
        (tree / "sub" / name).unlink()
    before = [s.name for s in discover([given])]
    (tree / "out" / "kept").mkdir(parents=True)
    (tree / "out" / "kept" / "gone.parquet").symlink_to(tree / "nowhere.parquet")
    assert [s.name for s in discover([given], exclude=tree / "out")] == before


def test_a_glob_names_its_first_broken_link_before_a_folder_it_cannot_enter(tmp_path: Path, unprivileged):
    """A glob over several folders refuses its first unreadable link, as before any match is looked
    at; a shrink had it stat a later match first, so a folder it may not enter (mode 0444) turned
    the message into that file's "Permission denied"."""
    (tmp_path / "d1").mkdir()
    (tmp_path / "d1" / "x.parquet").symlink_to(tmp_path / "nowhere.parquet")
    write(tmp_path / "d2" / "y.parquet")
    (tmp_path / "d2").chmod(0o444)
    try:
        run = unprivileged("from dedup.runs import discover\nfrom dedup.shards import InputError\n"
                           f"try: discover([{str(tmp_path / '*' / '*.parquet')!r}])\nexcept InputError as e: print(e)\n")
        assert run.stdout.startswith(f"{tmp_path / 'd1' / 'x.parquet'}: a broken symbolic link"), run.stderr[-2000:]
    finally:
        (tmp_path / "d2").chmod(0o755)


def test_one_bad_input_fails_the_whole_discovery(tree: Path):
    with pytest.raises(InputError, match="missing.jsonl"):
        discover([tree, tree / "missing.jsonl"])


# ------------------------------------------------------------------ reading and errors


def test_missing_text_column_names_the_file(tmp_path: Path):
    for name in ("a.parquet", "a.jsonl"):
        path = write(tmp_path / name, [{"id": "1", "body": "x"}])
        with raises_naming(path, "no text column 'text'") as e:
            reader(discover([path])[0])
        assert e.value.path == str(path.resolve())


def test_non_string_text_column_names_the_file(tmp_path: Path):
    path = write(tmp_path / "a.parquet", [{"id": "1", "text": 5}])
    with raises_naming(path, "type int64, expected a string"):
        reader(discover([path])[0])
    # JSONL: a non-string value on one line names the line
    path = write(tmp_path / "b.jsonl", [{"text": "fine"}, {"text": "also fine"}, {"text": [1, 2]}])
    with raises_naming(path, "line 3: text column 'text' holds a JSON array") as e:
        reader(discover([path])[0])
    assert e.value.line == 3
    # ... also when no line holds a string (the whole column read as another type named no line)
    for name, rows, needle in [("c.jsonl", [{"text": {"x": 1}}, {"text": {"x": 2}}], "line 1: text column 'text' holds "
                                "a JSON object"), ("d.jsonl", [{"text": None}, {"text": 5}], "line 2: text column "
                                "'text' holds a JSON number")]:
        path = write(tmp_path / name, rows)
        with raises_naming(path, needle):
            reader(discover([path])[0])


def test_other_text_column_and_string_types(tmp_path: Path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"body": pa.array(["x y z", None], pa.large_string())}), path)
    r = reader(discover([path])[0], text="body")
    assert r.text(next(r.batches())).to_pylist() == ["x y z", None]
    # an all-null JSON column is read as null type and becomes null strings
    path = write(tmp_path / "b.jsonl", [{"text": None}, {"text": None}])
    r = reader(discover([path])[0])
    t = r.text(next(r.batches()))
    assert t.type == pa.string() and t.null_count == 2


@pytest.mark.parametrize("kind", [pa.binary(), pa.large_binary()])
def test_binary_text_is_read_as_utf8_and_a_value_that_is_not_is_refused_naming_its_row(tmp_path: Path, kind):
    """Parquet written without the UTF8 annotation (as some writers do) holds its text as binary,
    as ``datasets`` does a ``Value("binary")`` column: such a file was refused ('text column
    'text' has type binary, expected a string type'). Bytes are read as their UTF-8 text, as ids
    are; a value that is not UTF-8 is refused naming its row. Both engines decide as on the same
    texts stored as strings and write the same bytes; kept shards keep the binary type."""
    from dedup.config import DedupConfig
    from dedup.engine import dedup_files
    from dedup.stages import dedup_staged
    from dedup.synthetic import generate_corpus

    texts = generate_corpus(300, mean_bytes=200, seed=4).column("text").to_pylist() + [None, "zürich café ﬁne"]
    (tmp_path / "b").mkdir()
    pq.write_table(pa.table({"text": pa.array([t and t.encode() for t in texts], kind)}), tmp_path / "b" / "c.parquet")
    write(tmp_path / "s" / "c.parquet", [{"text": t} for t in texts])
    r = reader(discover([tmp_path / "b"])[0])
    assert pa.concat_arrays([r.text(b) for b in r.batches()]).to_pylist() == texts
    config = DedupConfig(batch_rows=16)
    by_string = dedup_files([tmp_path / "s"], tmp_path / "os", config, threads=1)
    assert dedup_files([tmp_path / "b"], tmp_path / "ob", config, threads=1)["totals"] == by_string["totals"]
    assert by_string["totals"]["removed"]["near"] > 0
    dedup_staged([tmp_path / "b"], tmp_path / "st", config)
    for name in ("removed.parquet", "kept/c.parquet"):
        assert (tmp_path / "ob" / name).read_bytes() == (tmp_path / "st" / name).read_bytes(), name
    assert (tmp_path / "ob" / "removed.parquet").read_bytes() == (tmp_path / "os" / "removed.parquet").read_bytes()
    assert pq.read_schema(tmp_path / "ob" / "kept" / "c.parquet").field("text").type == kind
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"text": pa.array([b"fine text", b"more", b"caf\xe9 au lait"], kind)}), bad)
    with raises_naming(bad, "row 2: text column 'text' is not valid UTF-8") as e:
        r = reader(discover([bad])[0])
        [r.text(b) for b in r.batches()]
    assert e.value.row == 2


def test_ids(tmp_path: Path):
    # no id column and not required: null ids
    path = write(tmp_path / "a.parquet", [{"text": "x"}, {"text": "y"}])
    r = reader(discover([path])[0])
    assert r.id_column is None
    assert r.ids(next(r.batches())).to_pylist() == [None, None]
    # required id column missing: an error naming the file
    with raises_naming(path, "no id column 'doc_id'"):
        reader(discover([path])[0], id_column="doc_id", id_required=True)
    # numeric ids are read as strings
    path = write(tmp_path / "b.jsonl", [{"id": 7, "text": "x"}, {"id": 8, "text": "y"}])
    r = reader(discover([path])[0])
    assert r.ids(next(r.batches())).to_pylist() == ["7", "8"]
    # nested ids cannot be strings: an error naming the file when the id column was named
    path = write(tmp_path / "c.jsonl", [{"id": {"a": 1}, "text": "x"}])
    with raises_naming(path, "id column 'id' has type struct<a: int64>, which cannot be read as strings"):
        reader(discover([path])[0], id_required=True)


def test_jsonl_keeps_date_like_strings_as_strings(tmp_path: Path):
    rows = [{"id": "2020-01-01", "text": "2021-02-03", "n": 1}, {"id": "2020-01-02", "text": "2021-02-04", "n": 2}]
    path = write(tmp_path / "a.jsonl", rows)
    r = reader(discover([path])[0])
    assert r.schema.names == ["id", "text", "n"]
    assert r.schema.field("text").type == pa.string()
    t = read_all(r)
    assert t.to_pylist() == rows


def test_jsonl_blank_lines_and_empty_files(tmp_path: Path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "one"}\n\n   \n{"text": "two"}\n')
    (shard,) = discover([path])
    assert reader(shard).num_rows == 2
    assert count_rows([shard]) == 2
    for name, data in (("e.jsonl", b""), ("f.jsonl", b"\n\n"), ("g.jsonl.gz", gzip.compress(b""))):
        p = tmp_path / name
        p.write_bytes(data)
        r = reader(discover([p])[0])
        assert r.num_rows == 0
        assert "text" in r.schema.names
        assert read_all(r).num_rows == 0


def test_invalid_jsonl_names_file_and_line(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"text": "ok too"}\n{"text": oops}\n{"text": "fine"}\n')
    with pytest.raises(InputError, match="invalid JSON") as e:
        reader(discover([path])[0])
    assert e.value.line == 3
    assert f"{path.resolve()}: line 3:" in str(e.value)
    # a line that is JSON but not an object
    path = tmp_path / "arr.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "ok"}\n[1, 2]\n'))
    with raises_naming(path, "line 2: expected a JSON object"):
        reader(discover([path])[0])


@pytest.mark.parametrize("escape", [r"\ud800", r"\udc00 x", r"x \ud83d"])
def test_an_unpaired_surrogate_escape_names_its_line(tmp_path: Path, escape):
    """Arrow refuses "\ud800" (not Unicode); Python's json accepts it, so the error named only
    "the piece from line 1" and Arrow's "row 1" within it."""
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "ok"}\n\n{"text": "fine", "meta": {"k": "' + escape + '"}}\n')
    with raises_naming(path, "line 3: .*surrogate"):
        reader(discover([path])[0])


@pytest.mark.parametrize("name", ["x.jsonl.gz", "x.jsonl.zst"])
def test_corrupt_compressed_jsonl_names_the_file(tmp_path: Path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not compressed data at all")
    (shard,) = discover([path])
    with raises_naming(path):
        reader(shard)
    with raises_naming(path):
        count_rows([shard])


@pytest.mark.parametrize("pieces", [64, None])
def test_a_gzip_stream_padded_with_zero_bytes_is_read_as_zcat_reads_it(tmp_path: Path, monkeypatch, pieces):
    """A .jsonl.gz whose gzip stream is followed by zero bytes (padding some archivers and writers
    leave; zcat and Python's gzip ignore them) was refused: Arrow's decoder took them for a next
    member ('unreadable: zlib inflate failed: unknown compression method'). It reads as the same
    rows, in pieces after the first too; other bytes after the stream, or a damaged one, stay refused."""
    import dedup.shards
    from dedup.shards import head_texts

    if pieces:
        monkeypatch.setattr(dedup.shards, "JSONL_CHUNK_BYTES", pieces)
    body = _jsonl_bytes(ROWS * 4)
    want = read_all(reader(discover([write(tmp_path / "plain.jsonl", ROWS * 4)])[0])).to_pylist()
    for name, data in (("a.jsonl.gz", gzip.compress(body) + b"\0" * 512),
                       ("two.jsonl.gz", gzip.compress(body[:100]) + gzip.compress(body[100:]) + b"\0" * 7)):
        (tmp_path / name).write_bytes(data)
        (shard,) = discover([tmp_path / name])
        assert count_rows([shard]) == 12
        assert read_all(reader(shard)).to_pylist() == want
        assert head_texts(shard, "text", 64) == [r["text"] for r in ROWS * 4 if r["text"]]
    good = gzip.compress(body)
    for name, data in (("junk.jsonl.gz", good + b"\0\0junk"), ("flip.jsonl.gz", good[:30] + b"\xff" + good[31:]),
                       ("cut.jsonl.gz", good[:-9])):
        (tmp_path / name).write_bytes(data)
        (shard,) = discover([tmp_path / name])
        with raises_naming(tmp_path / name, "unreadable"):
            count_rows([shard])


def _gzip_member(data: bytes, header: bytes = b"\x1f\x8b\x08\x00\0\0\0\0\x00\xff") -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return header + c.compress(data) + c.flush() + struct.pack("<II", zlib.crc32(data), len(data))


def _compressed_variants(body: bytes) -> dict[str, bytes]:
    """The shapes of .gz and .zst files real tools write, each decompressing to ``body``."""
    import zstandard

    half, zc = len(body) // 2, zstandard.ZstdCompressor()
    named = b"\x1f\x8b\x08\x1c\0\0\0\0\x00\x03" + b"\x04\x00AB\x00\x00" + b"a.jsonl\0" + b"note\0"  # EXTRA NAME COMMENT
    hcrc = b"\x1f\x8b\x08\x02\0\0\0\0\x00\x03"
    bgzf_eof = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
    skip = struct.pack("<II", 0x184D2A50, 4) + b"meta"  # a zstd skippable frame (pzstd, seekable zstd)
    return {
        "cat.jsonl.gz": gzip.compress(body[:half]) + gzip.compress(body[half:]),  # cat a.gz b.gz
        "headers.jsonl.gz": _gzip_member(body[:half], named) + _gzip_member(body[half:], hcrc + struct.pack(
            "<H", zlib.crc32(hcrc) & 0xFFFF)),
        "bgzf.jsonl.gz": b"".join(_gzip_member(body[i:i + 50], b"\x1f\x8b\x08\x04\0\0\0\0\x00\xff\x06\x00BC\x02\x00"
                                               b"\x00\x00") for i in range(0, len(body), 50)) + bgzf_eof,
        "empty-members.jsonl.gz": gzip.compress(b"") + gzip.compress(body) + gzip.compress(b"") + b"\0" * 9,
        "zlib.jsonl.gz": zlib.compress(body),  # a zlib stream: Arrow's gzip decoder reads it too
        "frames.jsonl.zst": skip + zc.compress(body[:half]) + skip + zc.compress(body[half:]) + skip,
        "no-size.jsonl.zst": zstandard.ZstdCompressor(write_content_size=False).compress(body),
    }


def test_compressed_files_real_tools_write_read_as_their_plain_jsonl(tmp_path: Path):
    """Concatenated gzip members (cat, bgzip), header fields, empty members and padding, zstd frames with skippable
    frames between and around: the rows of the plain file, and head_texts (an index's record of a file's first
    documents) their first texts. A .jsonl.gz holding a zlib stream was read by the reader (Arrow's decoder takes
    zlib as well as gzip) while head_texts (Python's gzip) gave [], so --index-dir recorded no first documents."""
    from dedup.shards import head_texts

    rows = [{"id": str(k), "text": f"text {k}" if k % 3 else None} for k in range(40)]
    want = read_all(reader(discover([write(tmp_path / "plain.jsonl", rows)])[0])).to_pylist()
    for name, data in _compressed_variants(_jsonl_bytes(rows)).items():
        (tmp_path / name).write_bytes(data)
        (shard,) = discover([tmp_path / name])
        assert count_rows([shard]) == 40, name
        assert read_all(reader(shard)).to_pylist() == want, name
        assert head_texts(shard, "text", 64) == [r["text"] for r in rows if r["text"]], name


def test_a_zstd_window_beyond_the_decoders_limit_is_refused_saying_so(tmp_path: Path):
    """A .jsonl.zst written with ``zstd --long=28`` or more (a window beyond zstd's default
    decoding limit of 128 MiB, which ``zstd -d`` refuses too without ``--long``) was refused as
    'unreadable: ZSTD decompress failed: Frame requires too much memory for decoding': true, but
    it did not say what the file is or what to do. It stays refused (a decoder per task holding a
    2 GiB window is not what a worker's memory is planned for), naming the cause and the fix."""
    import zstandard

    data = _jsonl_bytes(ROWS * 50)
    for log, ok in ((27, True), (28, False)):
        params = zstandard.ZstdCompressionParameters.from_level(3, window_log=log, write_content_size=False)
        obj = zstandard.ZstdCompressor(compression_params=params).compressobj()
        path = tmp_path / f"w{log}.jsonl.zst"
        path.write_bytes(obj.compress(data) + obj.flush())
        (shard,) = discover([path])
        if ok:
            assert count_rows([shard]) == 150
            continue
        with raises_naming(path, r"compressed with a zstd window beyond 128 MiB \(zstd --long=28 or more\).*"
                                 r"recompress it: zstd -dc --long=31 .* \| zstd"):
            count_rows([shard])


def test_corrupt_parquet_names_the_file(tmp_path: Path):
    good = write(tmp_path / "good.parquet")
    data = good.read_bytes()
    for name, raw in (("garbage.parquet", b"PAR1 not really" * 10), ("truncated.parquet", data[: len(data) // 2])):
        path = tmp_path / name
        path.write_bytes(raw)
        (shard,) = discover([path])
        with raises_naming(path, "corrupt"):
            reader(shard)
        with raises_naming(path):
            count_rows([shard])


def test_corrupt_parquet_pages_fail_while_reading_naming_the_file(tmp_path: Path):
    path = tmp_path / "pages.parquet"
    texts = [f"document number {i} with a few more words" for i in range(5000)]
    pq.write_table(pa.table({"text": texts}), path, compression="snappy")
    raw = bytearray(path.read_bytes())
    raw[100:2000] = b"\xab" * 1900  # data pages broken, footer intact
    path.write_bytes(bytes(raw))
    r = reader(discover([path])[0])
    with raises_naming(path):
        read_all(r)


def test_batches_cover_every_row_in_order(tmp_path: Path):
    rows = [{"id": str(i), "text": f"t {i}"} for i in range(7)]
    for name in ("a.parquet", "a.jsonl.zst"):
        path = write(tmp_path / name, rows)
        r = ShardReader(discover([path])[0], "text", "id", False, batch_rows=3)
        sizes = [b.num_rows for b in r.batches()]
        assert max(sizes) <= 3 and sum(sizes) == 7
        assert read_all(r).column("id").to_pylist() == [str(i) for i in range(7)]


# --------------------------------------------------------------- output-name collisions


def test_output_name_collision_is_an_error_before_anything_is_written(tmp_path: Path):
    from dedup.engine import dedup_files

    d = tmp_path / "in"
    write(d / "a.parquet")
    write(d / "a.jsonl")
    out = tmp_path / "out"
    with pytest.raises(InputError, match="collides") as e:
        dedup_files([d], out)
    msg = str(e.value)
    assert str((d / "a.parquet").resolve()) in msg and str((d / "a.jsonl").resolve()) in msg
    assert "kept/a.parquet" in msg
    assert not out.exists() or not any(out.rglob("*"))
    # train, audit and profile read a corpus as dedup does and refuse it alike: the line says whose output name
    # it is (train writes no kept/: 'its output name' sent the train probe looking for one)
    assert "memdedup dedup" in msg and "every stage" in msg, msg


def test_output_names_that_differ_only_in_case_collide(tmp_path: Path):
    """kept/A.parquet and kept/a.parquet are one file on macOS and Windows: the second shard's
    kept rows would replace the first's. os.path.normcase lowercases on Windows only."""
    write(tmp_path / "in" / "A.parquet")
    write(tmp_path / "in" / "a.jsonl")
    with pytest.raises(InputError, match="collides"):
        discover([tmp_path / "in"])


def test_same_stem_in_different_directories_does_not_collide(tmp_path: Path):
    a = write(tmp_path / "in" / "x" / "a.parquet")
    b = write(tmp_path / "in" / "y" / "a.jsonl")
    assert [s.stem for s in discover([a, b])] == ["x/a", "y/a"]


# ------------------------------------------------------------------------ invalid UTF-8


def test_invalid_utf8_text_names_the_row_or_line(tmp_path: Path):
    import numpy as np

    # Parquet: a string column holding invalid UTF-8 (Arrow does not check on write)
    data = b"okfine\xff\xfe bad"
    offsets = np.array([0, 2, 6, 12], dtype=np.int32)
    texts = pa.Array.from_buffers(pa.string(), 3, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"text": texts}), path)
    r = ShardReader(discover([path])[0], "text", "id", False, batch_rows=2)
    batches = r.batches()
    assert r.text(next(batches)).to_pylist() == ["ok", "fine"]
    with pytest.raises(InputError, match="not valid UTF-8") as e:
        r.text(next(batches))
    assert e.value.row == 2
    assert f"{path.resolve()}: row 2:" in str(e.value)

    # JSONL: the line (1-based, blank lines counted) of the bad text
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"text": "ok"}\n\n{"text": "fine"}\n{"text": "bad \xff\xfe"}\n')
    r = ShardReader(discover([path])[0], "text", "id", False, batch_rows=2)
    with pytest.raises(InputError, match="not valid UTF-8") as e:
        for batch in r.batches():
            r.text(batch)
    assert e.value.line == 4
    assert f"{path.resolve()}: line 4:" in str(e.value)


@pytest.fixture
def tiny_pieces(monkeypatch):
    """JSONL read in pieces of 64 bytes: about one line each."""
    import dedup.shards

    monkeypatch.setattr(dedup.shards, "JSONL_CHUNK_BYTES", 64)


def _read_all(path: Path, **kw) -> pa.Table:
    r = reader(discover([path])[0], **kw)
    batches = list(r.batches())
    assert all(b.schema == r.schema for b in batches)
    return pa.Table.from_batches(batches, schema=r.schema)


def test_jsonl_pieces_are_whole_lines_of_bounded_size(tmp_path: Path, monkeypatch):
    import dedup.shards
    from dedup.shards import _jsonl_pieces

    rows = [{"id": f"r{i}", "text": "word " * (i % 7)} for i in range(200)]
    path = write(tmp_path / "a.jsonl.gz", rows)
    longest = max(len(json.dumps(r)) + 1 for r in rows)
    monkeypatch.setattr(dedup.shards, "JSONL_CHUNK_BYTES", 100)
    pieces = [(line, piece) for line, piece, _ in _jsonl_pieces(discover([path])[0])]
    assert b"".join(p for _, p in pieces) == _jsonl_bytes(rows)
    assert all(p.endswith(b"\n") and len(p) < 100 + longest for _, p in pieces)
    lines = [line for line, _ in pieces]
    assert lines[0] == 1 and lines == [1 + sum(p.count(b"\n") for _, p in pieces[:i]) for i in range(len(pieces))]


def test_jsonl_read_in_pieces_equals_whole_file(tmp_path: Path, tiny_pieces):
    """Types that drift between pieces are unified over the file: a column null at first,
    ints then floats, date-like strings (kept as strings wherever they first appear), a
    column that appears late; every row, in order."""
    rows = [
        {"id": 1, "text": "first document here", "meta": None, "n": 1},
        {"id": 2, "text": None, "meta": None, "n": 2},
        {"id": 3, "text": "third one", "meta": "x", "n": 2.5, "when": "2024-01-01"},
        {"id": 4, "text": "fourth", "meta": None, "n": 4, "when": "not a date", "late": [1, 2]},
        {"id": 5, "text": "fifth document", "meta": "y", "n": None},
    ]
    path = write(tmp_path / "drift.jsonl", rows)
    t = _read_all(path)
    assert t.schema.field("meta").type == pa.string() and t.schema.field("n").type == pa.float64()
    assert t.schema.field("when").type == pa.string()
    assert t.column("text").to_pylist() == [r["text"] for r in rows]
    assert t.column("n").to_pylist() == [1.0, 2.0, 2.5, 4.0, None]
    assert t.column("when").to_pylist() == [None, None, "2024-01-01", "not a date", None]
    assert t.column("late").to_pylist() == [None, None, None, [1, 2], None]
    assert reader(discover([path])[0]).num_rows == 5


def test_jsonl_type_conflict_between_pieces_reads_the_column_as_text(tmp_path: Path, tiny_pieces):
    """A number on one line and a string on another, in two pieces: the column is read as text (it was refused)."""
    long = "words " * 20  # one line per piece
    path = write(tmp_path / "mixed.jsonl", [{"text": long, "n": 1}, {"text": long, "n": "one"}, {"text": long}])
    with pytest.warns(UserWarning, match=r"mixed\.jsonl: column 'n' holds values of different JSON types"):
        t = _read_all(path)
    assert t.schema.field("n").type == pa.string() and t.column("n").to_pylist() == ["1", "one", None]


#: Real corpora whose metadata changes JSON type between lines: RedPajama's book ``publication_date`` (a year, or
#: "unknown"), ids that are numbers then strings, a ``meta`` that is an object or a string, a list of numbers and
#: objects. Each column that changes is read as text: a string as its characters, anything else as its JSON text as
#: written (whitespace, escapes and digits kept), null as null; the other columns keep their types.
MIXED_ROWS = [
    {"id": 7, "text": "alpha beta gamma delta", "meta": {"title": "T", "publication_date": 1999}, "tags": [1, 2.5],
     "n": 1, "when": "2024-01-01"},
    {"id": "x-8", "text": "epsilon zeta eta theta", "meta": {"title": "Ü", "publication_date": "unknown"},
     "tags": [1, {"a": None}], "n": 2, "when": 5},
    {"id": None, "text": "iota kappa lambda mu", "meta": "legacy \"quoted\" é", "tags": None, "n": 3},
    {"id": 1000.0, "text": "nu xi omicron pi", "meta": None, "tags": True, "n": 4, "when": None},
]


@pytest.mark.parametrize("pieces", ["whole", "tiny"])
def test_jsonl_columns_that_change_type_are_read_as_their_json_text(tmp_path: Path, monkeypatch, pieces):
    import dedup.shards

    if pieces == "tiny":
        monkeypatch.setattr(dedup.shards, "JSONL_CHUNK_BYTES", 64)
    path = tmp_path / "rp.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in MIXED_ROWS]
    lines[0] = lines[0].replace('"publication_date": 1999', '"publication_date" :  1999 ')  # as written
    lines[3] = lines[3].replace('"id": 1000.0', '"id": 1e3')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.warns(UserWarning) as caught:
        r = reader(discover([path])[0])
    said = [str(w.message) for w in caught if "different JSON types" in str(w.message)]
    assert said == [f"{path.resolve()}: column {c!r} holds values of different JSON types; read as text (a string as "
                    "itself, any other value as its JSON text)" for c in ("id", "meta", "tags", "when")]
    t = read_all(r)
    assert t.column("id").to_pylist() == ["7", "x-8", None, "1e3"]
    assert r.ids(t.combine_chunks().to_batches()[0]).to_pylist() == ["7", "x-8", None, "1e3"]
    assert t.column("meta").to_pylist() == ['{"title": "T", "publication_date" :  1999 }',
                                            '{"title": "Ü", "publication_date": "unknown"}',
                                            'legacy "quoted" é', None]
    assert t.column("tags").to_pylist() == ["[1, 2.5]", '[1, {"a": null}]', None, "true"]
    assert t.column("when").to_pylist() == ["2024-01-01", "5", None, None]
    assert t.schema.field("n").type == pa.int64() and t.column("text").to_pylist() == [r["text"] for r in MIXED_ROWS]
    assert t.schema.names == ["id", "text", "meta", "tags", "n", "when"]  # the file's order


def test_columns_that_change_type_within_a_piece_are_found_in_one_more_pass(tmp_path: Path, monkeypatch):
    """Arrow names one column whose type changes within a piece, and the schema was settled again (a pass over the
    whole file) for each: 100 such columns took 100 passes, 205 s for a 7 MB file. Columns whose JSON type changes
    within the piece, at the top or deep inside (30 objects whose field changes: 28 s for 3 MB, a pass each), are now
    all found in the pass where Arrow names the first."""
    from dedup.shards import _JsonlFile

    passes = []
    settle = _JsonlFile._settle_schema
    monkeypatch.setattr(_JsonlFile, "_settle_schema", lambda self: passes.append(1) or settle(self))
    rows = [{"text": f"t{i}", **{f"k{k}": i if i % 2 else str(i) for k in range(6)}, "o": [i] if i else {"a": i},
             **{f"n{k}": {"x": i if i % 2 else str(i), "y": None} for k in range(4)}, "l": [[i], []] if i else [["a"]],
             "same": {"x": [i, 0.5, None], "y": {}} if i else {"y": {"z": True}, "x": []}}
            for i in range(4)]
    path = write(tmp_path / "m.jsonl", rows)
    with pytest.warns(UserWarning, match="different JSON types"):
        t = read_all(reader(discover([path])[0]))
    assert len(passes) == 2
    assert t.column("k0").to_pylist() == ["0", "1", "2", "3"] and t.column("o").to_pylist() == ['{"a": 0}', "[1]",
                                                                                                "[2]", "[3]"]
    assert t.column("n3").to_pylist()[:2] == ['{"x": "0", "y": null}', '{"x": 1, "y": null}']
    assert t.column("l").to_pylist()[:2] == ['[["a"]]', "[[1], []]"]
    assert t.column("same").type != pa.string() and t.column("same").to_pylist()[1] == {"x": [1, 0.5, None],
                                                                                         "y": {"z": None}}


def test_a_file_of_thousands_of_sparse_keys_is_read_in_time_linear_in_its_columns(tmp_path: Path, monkeypatch):
    """A key of its own on each line (a flattened dict keyed by URL): 4,000 lines, 4,000 columns. Conforming each
    piece to the file's schema listed the piece's column names again for each column (time squared in columns: 17 s
    here, 0.8 s now). Counted, not timed: the piece's names are listed a few times, not once per column."""
    import dedup.shards

    class Counted:  # a piece's table, counting how often its column names are listed
        listed = 0

        def __init__(self, table: pa.Table):
            self.table = table

        @property
        def column_names(self) -> list[str]:
            Counted.listed += 1
            return self.table.column_names

        def __getattr__(self, name: str):
            return getattr(self.table, name)

    parsed = dedup.shards._JsonlFile._parsed
    monkeypatch.setattr(dedup.shards._JsonlFile, "_parsed", lambda self: ((line, piece, Counted(t)) for line, piece, t
                                                                           in parsed(self)))
    path = write(tmp_path / "wide.jsonl", [{"text": f"t{i}", f"key_{i}": i} for i in range(4000)])
    t = read_all(ShardReader(discover([path])[0], "text", "id", False, batch_rows=4096))
    assert t.num_columns == 4001 and t.column("key_3999").to_pylist()[-2:] == [None, 3999]
    assert 1 <= Counted.listed <= 4, Counted.listed


@pytest.mark.parametrize("engine", ["fused", "staged"])
@pytest.mark.parametrize("first, later", [({"a": 1}, 5), ([1, 2], 5), (5, True)])
def test_jsonl_type_change_between_arrow_blocks_keeps_both_values(tmp_path: Path, engine, first, later):
    """A column that is ``first`` on line 1 and ``later`` on the last line, ~3 MB further: in one
    32 MiB piece, but in another of the 1 MiB blocks Arrow parses in parallel. Arrow met the change
    between blocks: an object then a number came out as {"a": None} in the kept shard (the value lost,
    exit 0), a list then a number or a number then a bool crashed the process (SIGSEGV, pyarrow 26).
    The column is now read as text, both values kept. Run in a child process, as the crash killed it."""
    import subprocess
    import sys

    rows = [{"text": "first document", "n": first}, *({"text": f"doc {i} some words"} for i in range(60000)),
            {"text": "late document", "n": later}]
    path = write(tmp_path / "mixed.jsonl", rows)
    p = subprocess.run([sys.executable, "-m", "pipelines.cli", "dedup", str(path), "--out", str(tmp_path / "out"),
                        "--engine", engine, *(["--workers", "1"] if engine == "staged" else []), "--quiet"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stderr.strip().splitlines() == [
        f"memdedup: warning: {path}: column 'n' holds values of different JSON types; read as text (a string as "
        "itself, any other value as its JSON text)"]
    n = pq.read_table(tmp_path / "out" / "kept" / "mixed.parquet", columns=["n"]).column("n").to_pylist()
    assert len(n) == 60002 and (n[0], n[-1]) == (json.dumps(first), json.dumps(later)) and set(n[1:-1]) == {None}


def test_jsonl_bad_line_in_a_late_piece_names_its_line(tmp_path: Path, tiny_pieces):
    path = tmp_path / "late.jsonl"
    good = _jsonl_bytes([{"id": f"r{i}", "text": f"doc {i} words here"} for i in range(20)])
    path.write_bytes(good + b'{"id": "r20", "text": oops}\n' + good)
    with pytest.raises(InputError, match=r"late\.jsonl.*line 21"):
        list(reader(discover([path])[0]).batches())


def test_dedup_of_jsonl_in_pieces_equals_parquet(tmp_path: Path, tiny_pieces):
    from dedup.config import DedupConfig
    from dedup.engine import dedup_files
    from dedup.synthetic import generate_corpus

    table = generate_corpus(300, mean_bytes=200, seed=4).select(["id", "text"])
    write(tmp_path / "in" / "c.parquet", table.to_pylist())
    write(tmp_path / "jin" / "c.jsonl.zst", table.to_pylist())
    a = dedup_files([tmp_path / "in"], tmp_path / "a", DedupConfig(), threads=1)
    b = dedup_files([tmp_path / "jin"], tmp_path / "b", DedupConfig(), threads=1)
    assert a["totals"] == b["totals"] and a["totals"]["removed"]["near"] > 0
    ra, rb = (pq.read_table(p / "removed.parquet").drop(["shard"]) for p in (tmp_path / "a", tmp_path / "b"))
    assert ra.equals(rb)
    assert pq.read_table(tmp_path / "a" / "kept" / "c.parquet").equals(pq.read_table(tmp_path / "b" / "kept" / "c.parquet"))


# ------------------------------------------------------------- duplicate column names (F9)


def _parquet_with_names(path: Path, names: list[str]) -> Path:
    cols = [pa.array([f"{n} {i} words of some document" for i in range(3)]) for n in names]
    pq.write_table(pa.Table.from_arrays(cols, names=names), path)
    return path


def test_duplicated_text_column_is_refused_naming_file_and_column(tmp_path: Path):
    path = _parquet_with_names(tmp_path / "dup.parquet", ["text", "text"])
    with raises_naming(path, "column 'text' appears 2 times") as e:
        reader(discover([path])[0])
    assert e.value.path == str(path.resolve())


def test_duplicated_id_column_is_refused_when_named_and_ignored_otherwise(tmp_path: Path):
    named = _parquet_with_names(tmp_path / "named.parquet", ["doc", "text", "doc"])
    with raises_naming(named, "id column 'doc' appears 2 times"):
        reader(discover([named])[0], id_column="doc", id_required=True)
    path = _parquet_with_names(tmp_path / "dup.parquet", ["id", "text", "id"])
    with pytest.warns(UserWarning, match=r"dup\.parquet.*id column 'id' appears 2 times.*ignored"):
        r = reader(discover([path])[0])
    assert r.id_column is None and r.id_ignored is not None
    assert r.ids(next(r.batches())).to_pylist() == [None, None]


def test_other_duplicated_columns_are_copied_as_they_are(tmp_path: Path):
    path = _parquet_with_names(tmp_path / "dup.parquet", ["meta", "text", "meta"])
    r = reader(discover([path])[0])
    t = read_all(r)
    assert t.column_names == ["meta", "text", "meta"] and t.num_rows == 3
    assert r.text(next(r.batches())).to_pylist() == ["text 0 words of some document", "text 1 words of some document"]


# ----------------------------------------------- an unreadable default id column (F15)


@pytest.mark.parametrize("name", ["s.jsonl", "s.parquet"])
def test_unreadable_default_id_column_is_ignored_with_a_warning(tmp_path: Path, name):
    """The default id column ("id") was not asked for: when it cannot be read as strings
    (a struct here) the file is read without ids, with a warning naming file, column and
    type, instead of being refused."""
    rows = [{"id": {"a": 1, "b": "x"}, "text": "first document words"}, {"id": {"a": 2, "b": "y"}, "text": "second"}]
    path = write(tmp_path / name, rows)
    with pytest.warns(UserWarning, match=r"s\.(jsonl|parquet): id column 'id' has type struct<.*ignored") as w:
        r = reader(discover([path])[0])
    assert str(path.resolve()) in str(w[0].message)
    assert r.id_column is None and "struct" in r.id_ignored
    t = read_all(r)
    assert t.column("id").to_pylist() == [row["id"] for row in rows]  # the column itself is kept
    assert r.ids(next(r.batches())).to_pylist() == [None, None]


def test_unreadable_default_id_column_does_not_stop_a_run(tmp_path: Path):
    from dedup.engine import dedup_files

    rows = [{"id": {"a": i}, "text": "the same words in every row"} for i in range(3)]
    path = write(tmp_path / "in" / "s.parquet", rows)
    with pytest.warns(UserWarning, match="id column 'id'"):
        m = dedup_files([path], tmp_path / "out")
    assert m["totals"]["removed"]["exact"] == 2
    assert pq.read_table(tmp_path / "out" / "removed.parquet").column("id").to_pylist() == [None, None]
    assert pq.read_table(tmp_path / "out" / "kept" / "s.parquet").column("id").to_pylist() == [{"a": 0}]


# ---------------------------------------------------------------- long JSONL lines (F8)


def test_jsonl_line_of_3_mb_is_read(tmp_path: Path):
    """Arrow's default block (1 MiB) refused any line over about 2 MiB."""
    big = "abcdefg " * 393_216  # 3 MiB of text
    rows = [{"id": "a", "text": "short"}, {"id": "b", "text": big}, {"id": "c", "text": "short too"}]
    path = write(tmp_path / "long.jsonl", rows)
    assert path.stat().st_size > 3_000_000
    r = reader(discover([path])[0])
    assert r.num_rows == 3 and count_rows([r.shard]) == 3
    assert read_all(r).column("text").to_pylist() == [row["text"] for row in rows]


def test_jsonl_lines_longer_than_a_piece_are_read(tmp_path: Path, monkeypatch):
    import dedup.shards

    monkeypatch.setattr(dedup.shards, "JSONL_CHUNK_BYTES", 1 << 20)
    rows = [{"id": str(i), "text": ("word%d " % i) * (n // 6)} for i, n in enumerate([10, 3_000_000, 20, 2_500_000, 30])]
    path = write(tmp_path / "long.jsonl.zst", rows)
    r = reader(discover([path])[0])
    assert r.num_rows == 5 and count_rows([r.shard]) == 5
    assert read_all(r).to_pylist() == rows


# ------------------------------------------- one JSON object per line (F7, F12 JSONL part)

OBJ = b'{"text": "a document"}'


def _jsonl_file(tmp_path: Path, lines: list[bytes], name: str = "x.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("pieces", [None, 64])
def test_two_objects_on_one_line_are_refused_naming_the_line(tmp_path: Path, monkeypatch, pieces):
    """Arrow read two rows from such a line while the line counter counted one: the
    engines sized their filters differently and later line numbers were off by one."""
    import dedup.shards

    if pieces:
        monkeypatch.setattr(dedup.shards, "JSONL_CHUNK_BYTES", pieces)
    path = _jsonl_file(tmp_path, [OBJ, OBJ, OBJ + b" " + OBJ, OBJ, OBJ])
    with raises_naming(path, "line 3: more than one JSON value on the line") as e:
        list(reader(discover([path])[0]).batches())
    assert e.value.line == 3


def test_a_comma_after_an_object_is_said_as_such(tmp_path: Path):
    """Objects copied out of a pretty-printed JSON array keep their commas: '{..},' was refused as 'more than one
    JSON value on the line', which sent users looking for a second object (found by the input-types probe)."""
    path = _jsonl_file(tmp_path, [OBJ + b",", OBJ])
    with raises_naming(path, "line 1: a comma after the object"):
        list(reader(discover([path])[0]).batches())


def test_a_null_line_is_refused_like_an_array(tmp_path: Path):
    for bad, kind in ((b"null", "null"), (b"[1, 2, 3]", "array"), (b'"text"', "string"), (b"7", "number")):
        path = _jsonl_file(tmp_path, [OBJ, OBJ, bad, OBJ], name=f"{kind}.jsonl")
        with raises_naming(path, f"line 3: expected a JSON object, got {kind}") as e:
            reader(discover([path])[0])
        assert e.value.line == 3


@pytest.mark.parametrize("pieces", [None, 64])
def test_duplicate_key_names_the_line(tmp_path: Path, monkeypatch, pieces):
    import dedup.shards

    if pieces:
        monkeypatch.setattr(dedup.shards, "JSONL_CHUNK_BYTES", pieces)
    lines = [OBJ] * 6 + [b'{"text": "x", "meta": {"a": 1, "a": 2}}', OBJ]
    path = _jsonl_file(tmp_path, lines)
    with raises_naming(path, "line 7: key 'a' appears twice in one object") as e:
        reader(discover([path])[0])
    assert e.value.line == 7


@pytest.mark.parametrize("space", [b" ", b"\t", b"\r", b" \t\r "])
def test_lines_of_json_whitespace_are_blank(tmp_path: Path, space):
    path = _jsonl_file(tmp_path, [OBJ, space, OBJ, b"", space])
    (shard,) = discover([path])
    r = reader(shard)
    assert r.num_rows == count_rows([shard]) == read_all(r).num_rows == 2


@pytest.mark.parametrize("space", ["\f", "\v", "\x1c", "\x85", "\u00a0", "\u2028", "\u3000", " \f "])
def test_lines_of_other_whitespace_are_refused_naming_the_line(tmp_path: Path, space):
    """Whitespace that Python's str.strip removes but JSON does not allow: the line is not
    blank and not JSON (Arrow refused a form feed with its piece-relative "row 5")."""
    assert space.strip() == ""
    path = _jsonl_file(tmp_path, [OBJ] * 6 + [space.encode("utf-8"), OBJ])
    with raises_naming(path, "line 7: only whitespace that JSON does not allow") as e:
        list(reader(discover([path])[0]).batches())
    assert e.value.line == 7
    # the same at the end of a file without a final newline
    path.write_bytes(OBJ + b"\n" + space.encode("utf-8"))
    with raises_naming(path, "line 2: "):
        list(reader(discover([path])[0]).batches())


def test_byte_order_mark_only_at_the_start_of_the_file(tmp_path: Path):
    bom = b"\xef\xbb\xbf"
    path = _jsonl_file(tmp_path, [bom + OBJ, OBJ])
    (shard,) = discover([path])
    assert reader(shard).num_rows == count_rows([shard]) == 2
    path = _jsonl_file(tmp_path, [OBJ, bom + OBJ, OBJ], name="mid.jsonl")
    with raises_naming(path, "line 2: ") as e:
        list(reader(discover([path])[0]).batches())
    assert e.value.line == 2


def test_line_numbers_after_blank_lines_are_right(tmp_path: Path):
    """F7's example: with two objects on line 2 the invalid UTF-8 on line 5 was reported
    as line 6; now line 2 is refused, and without it line 5 is named."""
    bad_utf8 = b'{"text": "bad \xff\xfe"}'
    path = _jsonl_file(tmp_path, [OBJ, OBJ + OBJ, OBJ, b" \t", bad_utf8])
    with raises_naming(path, "line 2: "):
        list(reader(discover([path])[0]).batches())
    path = _jsonl_file(tmp_path, [OBJ, OBJ, OBJ, b" \t", bad_utf8], name="y.jsonl")
    r = reader(discover([path])[0])
    with raises_naming(path, "line 5: text column 'text' is not valid UTF-8"):
        for batch in r.batches():
            r.text(batch)


_KINDS = {  # line -> is it a row (True), blank (False) or refused (None)
    OBJ: True,
    b'  {"text": "indented", "n": 1}\t': True,
    b'{"text": null}': True,
    b"{}": True,
    b"": False,
    b"  ": False,
    b"\t\r": False,
    b"null": None,
    b"[1, 2]": None,
    b"3": None,
    OBJ + b" " + OBJ: None,
    OBJ + OBJ: None,
    b"\x0c": None,
    b"\x0b ": None,
    b"\xc2\xa0": None,
    b'{"text": "a", "text": "b"}': None,
    b'{"text": "unterminated': None,
    b"\xef\xbb\xbf" + OBJ: None,  # a byte order mark: refused after the first line
}


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(st.sampled_from(sorted(_KINDS)), max_size=12),
    crlf=st.lists(st.booleans(), min_size=12, max_size=12),
    final_newline=st.booleans(),
    pieces=st.sampled_from([16, 64, 1 << 20]),
)
def test_count_rows_agrees_with_the_reader_or_the_line_is_named(lines, crlf, final_newline, pieces):
    """Whatever the lines, either the reader yields exactly the rows count_rows counts (the
    lines that are not blank), or it refuses the file naming its first bad line."""
    import tempfile

    import dedup.shards

    ends = [b"\r\n" if c else b"\n" for c in crlf]
    data = b"".join(line + ends[i] for i, line in enumerate(lines))
    if lines and not final_newline:
        data = data[: -len(ends[len(lines) - 1])]
    kinds = [True if i == 0 and line.startswith(b"\xef\xbb\xbf") else _KINDS[line] for i, line in enumerate(lines)]
    first_bad = next((i + 1 for i, kind in enumerate(kinds) if kind is None), None)
    with tempfile.TemporaryDirectory() as d, pytest.MonkeyPatch.context() as mp:
        mp.setattr(dedup.shards, "JSONL_CHUNK_BYTES", pieces)
        path = Path(d) / "x.jsonl"
        path.write_bytes(data)
        (shard,) = discover([path])
        try:
            r = reader(shard)
            rows = sum(b.num_rows for b in r.batches())
        except InputError as e:
            assert e.line == first_bad, (e, lines)
            return
        assert first_bad is None, lines
        assert rows == r.num_rows == count_rows([shard]) == sum(1 for kind in kinds if kind)


@pytest.mark.parametrize("first", [b"null", b"[1]", b"5", b'"s"'])
def test_a_piece_starting_with_a_value_that_is_not_an_object_is_refused_not_a_crash(tmp_path: Path, first):
    """pyarrow 26 dies with SIGSEGV reading JSON whose first value is ``null``; the reader
    must refuse such a line before Arrow sees it (run in a child: a crash fails the test)."""
    import subprocess
    import sys

    path = _jsonl_file(tmp_path, [first, OBJ])
    code = (
        "from dedup.runs import discover\nfrom dedup.shards import InputError, ShardReader\n"
        "try:\n"
        f"    ShardReader(discover([r'{path}'])[0], 'text', 'id', False, 2)\n"
        "except InputError as e:\n"
        "    print(e.line, e.message)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("1 expected a JSON object, got "), done.stdout


# ------------------------------------------------------------ numbers never rounded (F6)

BIG = 18446744073709551000  # a uint64 hash id: beyond int64, and float64 holds it only approximately
EXACT_53 = 9007199254740993  # 2^53 + 1: an int64, but not a float64


def _numbers_file(tmp_path: Path, values: list, name: str = "n.jsonl", other: str = "x") -> Path:
    lines = [f'{{"id": {v}, "text": "document {i} {other}"}}'.encode() for i, v in enumerate(values)]
    return _jsonl_file(tmp_path, lines, name)


def test_uint64_ids_are_read_exactly(tmp_path: Path):
    """F6's example: one id above int64 turned the whole column into float64."""
    values = [BIG, BIG + 1, BIG + 2, BIG + 3, EXACT_53, "null", 0]
    r = reader(discover([_numbers_file(tmp_path, values)])[0])
    assert r.schema.field("id").type == pa.uint64()
    assert read_all(r).column("id").to_pylist() == [BIG, BIG + 1, BIG + 2, BIG + 3, EXACT_53, None, 0]
    assert r.ids(next(r.batches())).to_pylist() == [str(BIG), str(BIG + 1)]


@pytest.mark.parametrize("pieces", [None, 64])
def test_integers_beyond_uint64_or_negative_with_big_ones_become_their_text(tmp_path: Path, monkeypatch, pieces):
    import dedup.shards

    if pieces:
        monkeypatch.setattr(dedup.shards, "JSONL_CHUNK_BYTES", pieces)
    cases = {
        "neg.jsonl": ([-1, BIG, 7], ["-1", str(BIG), "7"]),
        "huge.jsonl": ([2**64, 5], [str(2**64), "5"]),
        "frac.jsonl": ([BIG, 2.5, "1e3", "null"], [str(BIG), "2.5", "1e3", None]),
        "mixed53.jsonl": ([EXACT_53, 2.5], [str(EXACT_53), "2.5"]),  # int64 and fractions: float64 would round
    }
    for name, (values, texts) in cases.items():
        r = reader(discover([_numbers_file(tmp_path, values, name)])[0])
        assert r.schema.field("id").type == pa.string(), name
        assert read_all(r).column("id").to_pylist() == texts, name


@pytest.mark.parametrize("pieces", [None, 64])
def test_numbers_that_need_no_help_keep_arrows_types(tmp_path: Path, monkeypatch, pieces):
    import dedup.shards

    if pieces:
        monkeypatch.setattr(dedup.shards, "JSONL_CHUNK_BYTES", pieces)
    cases = {
        "int.jsonl": ([EXACT_53, -3, "null"], pa.int64(), [EXACT_53, -3, None]),
        "float.jsonl": ([1, 2.5, "1e20", -4], pa.float64(), [1.0, 2.5, 1e20, -4.0]),
    }
    for name, (values, typ, expected) in cases.items():
        r = reader(discover([_numbers_file(tmp_path, values, name)])[0])
        assert r.schema.field("id").type == typ, name
        assert read_all(r).column("id").to_pylist() == expected, name


def test_uint64_decided_over_the_whole_file(tmp_path: Path, tiny_pieces):
    """Small ids in early pieces (Arrow: int64), big ones later (Arrow: float64): uint64
    throughout; with a negative id anywhere: strings throughout."""
    r = reader(discover([_numbers_file(tmp_path, [1, 2, 3, BIG, 4])])[0])
    assert r.schema.field("id").type == pa.uint64()
    assert read_all(r).column("id").to_pylist() == [1, 2, 3, BIG, 4]
    r = reader(discover([_numbers_file(tmp_path, [BIG, 2, -3, 4], name="m.jsonl")])[0])
    assert read_all(r).column("id").to_pylist() == [str(BIG), "2", "-3", "4"]


def test_a_big_integer_inside_a_list_is_refused_naming_the_line(tmp_path: Path):
    lines = [b'{"text": "a", "h": [1, 2]}', b'{"text": "b", "h": [3, %d]}' % BIG]
    path = _jsonl_file(tmp_path, lines)
    with raises_naming(path, f"line 2: column 'h' holds the integer {BIG} inside a list or object"):
        reader(discover([path])[0])


def test_dedup_keeps_uint64_ids_exact_in_kept_and_removed(tmp_path: Path):
    from dedup.engine import dedup_files

    (tmp_path / "in").mkdir()
    lines = [b'{"id": %d, "text": "alpha beta gamma delta epsilon zeta"}' % (BIG + i) for i in range(2)]
    lines += [b'{"id": %d, "text": "one two three"}' % (BIG + i) for i in (2, 3)]
    lines += [b'{"id": %d, "text": "q r s"}' % EXACT_53]
    _jsonl_file(tmp_path / "in", lines, "a.jsonl")
    dedup_files([tmp_path / "in"], tmp_path / "out")
    removed = pq.read_table(tmp_path / "out" / "removed.parquet")
    assert removed.column("id").to_pylist() == [str(BIG + 1), str(BIG + 3)]
    kept = pq.read_table(tmp_path / "out" / "kept" / "a.parquet")
    assert kept.schema.field("id").type == pa.uint64()
    assert kept.column("id").to_pylist() == [BIG, BIG + 2, EXACT_53]


@pytest.mark.parametrize("pieces", [None, 64])
def test_jsonl_keeps_date_like_strings_inside_objects_and_lists_as_strings(tmp_path: Path, monkeypatch, pieces):
    """Only top-level date-like strings were kept as strings: inside an object or a list Arrow
    made them timestamps (the kept shard lost '2021-02-03T04:05:06Z' to a naive 04:05:06), and
    a nested field that held a date in one piece and other text in a later one was refused."""
    import dedup.shards

    if pieces:
        monkeypatch.setattr(dedup.shards, "JSONL_CHUNK_BYTES", pieces)
    rows = [{"text": "a b", "meta": {"date": "2020-01-01", "n": 1}, "tags": ["2021-02-03T04:05:06Z"],
             "items": [{"when": "2020-01-01 10:00:00"}]},
            {"text": "c d", "meta": {"date": "2020-01-02", "at": "2022-01-01"}, "tags": []},
            {"text": "e f", "meta": {"date": "unknown", "n": 2}, "tags": ["not a date"],
             "items": [{"when": "later", "k": 1}]}]
    t = _read_all(write(tmp_path / "a.jsonl", rows))
    assert t.schema.field("meta").type.field("date").type == pa.string()
    assert t.schema.field("tags").type.value_type == pa.string()
    assert t.column("meta").to_pylist() == [{"date": "2020-01-01", "n": 1, "at": None},
                                            {"date": "2020-01-02", "n": None, "at": "2022-01-01"},
                                            {"date": "unknown", "n": 2, "at": None}]
    assert t.column("tags").to_pylist() == [r["tags"] for r in rows]
    assert t.column("items").to_pylist() == [[{"when": "2020-01-01 10:00:00", "k": None}], None,
                                             [{"when": "later", "k": 1}]]


def test_jsonl_columns_keep_their_order_when_a_date_is_read_as_a_string(tmp_path: Path):
    """Columns read with an explicit type (date-like strings) moved to the front of the file's
    schema, in name order: {"id", "text", "d"} was read, and kept, as [d, id, text]."""
    rows = [{"id": 1, "text": "a b", "d": "2020-01-01T00:00:00", "b": True}, {"id": 2, "text": "c d", "d": "2021-01-01 10:00:00", "b": False}]
    assert _read_all(write(tmp_path / "a.jsonl", rows)).column_names == ["id", "text", "d", "b"]


# ------------------------------------------------- UUID ids (DuckDB, Spark, Iceberg exports)


def test_uuid_ids_are_read_as_their_canonical_strings(tmp_path: Path):
    """A Parquet UUID column (pyarrow reads it as the ``arrow.uuid`` extension type) holds 16
    raw bytes per id: Arrow's cast to strings failed on them ("Invalid UTF8 payload"), so a
    file whose default ``id`` column is a UUID, as DuckDB and Spark write them, was refused."""
    import uuid

    from dedup.engine import dedup_files

    ids = [uuid.UUID(int=(i + 1) * 0x9E3779B97F4A7C15F39CC0605CEDC835 % 2**128) for i in range(3)]
    table = pa.table({"id": pa.array([u.bytes for u in ids] + [None], pa.uuid()),
                      "text": ["the same words in every row"] * 3 + ["other"]})
    path = tmp_path / "in" / "u.parquet"
    path.parent.mkdir()
    pq.write_table(table, path, store_schema=False)  # the UUID logical type alone, as DuckDB writes it
    r = reader(discover([path])[0])
    assert [i for b in r.batches() for i in r.ids(b).to_pylist()] == [str(u) for u in ids] + [None]
    m = dedup_files([path], tmp_path / "out")
    assert m["totals"]["removed"]["exact"] == 2
    assert pq.read_table(tmp_path / "out" / "removed.parquet").column("id").to_pylist() == [str(u) for u in ids[1:]]
    assert pq.read_schema(tmp_path / "out" / "kept" / "u.parquet").field("id").type == pa.uuid()


@pytest.mark.parametrize("batch_rows", [2, 1024])
def test_byte_ids_that_are_not_utf8_are_refused_naming_their_row(tmp_path: Path, batch_rows: int):
    """Ids stored as raw bytes (fixed_size_binary(16) digests, without Parquet's UUID type) that
    are not UTF-8 were refused as "cannot be read as strings" with no row, so the user could not
    tell one bad id from a whole column of them. Now the row is named, counted from the file's
    start whatever the batching, with what to do; byte ids that are UTF-8 read as their text."""
    good, bad = b"doc-0000000000-1", bytes(range(200, 216))
    path = tmp_path / "b.parquet"
    pq.write_table(pa.table({"id": pa.array([good, good, good, bad], pa.binary(16)), "text": ["a", "b", "c", "d"]}),
                   path)
    r = ShardReader(discover([path])[0], "text", "id", False, batch_rows)
    with pytest.raises(InputError) as e:
        [r.ids(b) for b in r.batches()]
    assert e.value.row == 3 and str(e.value).startswith(f"{path}: row 3: id column 'id' holds bytes that are not "
                                                        "UTF-8"), e.value
    pq.write_table(pa.table({"id": pa.array([good], pa.binary(16)), "text": ["a"]}), path)
    r = ShardReader(discover([path])[0], "text", "id", False, batch_rows)
    assert [i for b in r.batches() for i in r.ids(b).to_pylist()] == [good.decode()]


@pytest.mark.parametrize("kind", ["string", "large_string", "string_view", "dictionary"])
def test_string_ids_that_are_not_utf8_are_refused_naming_their_row(tmp_path: Path, kind: str):
    """A string id column holding bytes that are not UTF-8 (Arrow does not check on write) was
    returned as it was: its ids went into removed.parquet, a file the tool writes, as strings
    that are not UTF-8, which its readers (``to_pylist``, the audit's id joins) fail on. Now such
    an id is refused naming its row, as byte ids that are not UTF-8 are."""
    import numpy as np

    ids = [b"a", b"b", b"c\xff\xfe"]
    offsets = np.cumsum([0] + [len(i) for i in ids]).astype(np.int32)
    col = pa.Array.from_buffers(pa.string(), 3, [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(ids))])
    col = col.dictionary_encode() if kind == "dictionary" else col if kind == "string" else col.cast(getattr(pa, kind)())
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"id": col, "text": ["x", "y", "z"]}), path)
    r = ShardReader(discover([path])[0], "text", "id", False, batch_rows=2)
    assert pa.types.is_dictionary(r.schema.field("id").type) == (kind == "dictionary")  # read back as written
    with pytest.raises(InputError) as e:
        [r.ids(b) for b in r.batches()]
    assert e.value.row == 2 and str(e.value).startswith(f"{path}: row 2: id column 'id' holds "), e.value


def test_dictionary_ids_of_view_strings_are_decoded_and_checked(tmp_path: Path):
    """A dictionary of string_view ids (which Arrow does not decode: no take kernel for views) was
    refused as 'cannot be read as strings'; it is read by way of its large type, as such texts are,
    and its values are checked to be UTF-8 like any string ids."""
    from dedup.shards import id_strings

    views = pa.array(["a", "b"], pa.string_view())
    col = pa.DictionaryArray.from_arrays(pa.array([1, 0, 1], pa.int32()), views)
    assert id_strings(col, tmp_path / "s.arrow", "id").to_pylist() == ["b", "a", "b"]


def test_jsonl_values_that_are_not_utf8_are_refused_naming_the_line(tmp_path: Path):
    """JSON text is UTF-8 (RFC 8259). A key that is not UTF-8 was refused naming its line, but a
    value that is not UTF-8 in a column other than the text was read as it was: the kept shard's
    string column then held bytes that are not UTF-8 (its readers fail on it), and an id such as
    ``"\xff"`` went into removed.parquet the same way. Now the line is refused, whatever the column."""
    for name, bad in [("other.jsonl", b'{"text": "c", "x": "bad \xff\xfe"}'),
                      ("nested.jsonl", b'{"text": "c", "x": {"y": ["bad \xff"]}}'),
                      ("id.jsonl", b'{"text": "c", "id": "\xff"}')]:
        path = _jsonl_file(tmp_path, [b'{"text": "a", "id": "1"}', b"", b'{"text": "b", "x": null}', bad], name=name)
        with raises_naming(path, "line 4: .*UTF-8") as e:
            r = reader(discover([path])[0])
            for batch in r.batches():
                r.text(batch), r.ids(batch)
        assert e.value.line == 4


def test_jsonl_nan_and_infinity_are_read_as_python_writes_them(tmp_path: Path):
    """A decision, pinned: ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259) but
    are what Python's ``json.dumps`` writes for such floats, so JSON Lines made by Python
    scripts hold them; Arrow and Python read them as floats, and so does memdedup (a NaN id is
    the id ``'nan'``, as every float id is read). A number where the text belongs is refused."""
    import math

    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"id": float("nan"), "text": "a", "score": float("inf")}) + "\n"
                    + json.dumps({"id": 2, "text": "b", "score": -float("inf")}) + "\n")
    assert "NaN" in path.read_text() and "Infinity" in path.read_text()
    r = reader(discover([path])[0])
    (batch,) = r.batches()
    assert r.ids(batch).to_pylist() == ["nan", "2"] and batch.column("score").to_pylist() == [math.inf, -math.inf]
    path.write_text('{"id": 1, "text": NaN}\n')
    with pytest.raises(InputError, match=r"line 1: text column 'text' holds a JSON number, expected a string"):
        list(reader(discover([path])[0]).batches())


# ------------------------------------------- files a directory walk skips are said, not only hidden ones


def test_directory_walks_say_which_json_and_compressed_files_they_skip(tmp_path: Path):
    """A directory walk skipped ``train.json`` (what ``Dataset.to_json`` and many exporters
    name JSON Lines) and ``.jsonl.bz2`` / ``.jsonl.xz`` files without a word: their rows were
    silently left out of the run. The datasets library's own metadata files are not mentioned."""
    d = tmp_path / "d"
    write(d / "a.jsonl")
    for name in ("train.json", "b.jsonl.bz2", "c.jsonl.xz", "state.json", "dataset_info.json", "notes.txt"):
        (d / name).write_bytes(b"")
    said: list[str] = []
    assert [s.name for s in discover([d], log=said.append)] == ["a.jsonl"]
    assert any("1 .json file" in m and "train.json" in m for m in said), said
    assert any("2 compressed file" in m and "b.jsonl.bz2" in m for m in said), said
    assert not any("state.json" in m or "dataset_info.json" in m or "notes.txt" in m for m in said), said


def test_compressed_json_files_are_json_lines_to_walks_and_globs(tmp_path: Path):
    """Dolma and RedPajama-v2 ship their documents as ``*.json.gz`` JSON Lines (Spark's
    ``write.json(compression="gzip")`` too): a directory walk skipped them as '.json files (often
    manifests and configs)', and the glob its note suggested, ``'*.json.gz'``, matched nothing
    (refused). Compressed .json files are read as JSON Lines by walks and globs alike; only plain
    .json files (manifests, configs: memdedup's own are plain) are left to be named."""
    d = tmp_path / "documents"
    for name in ("cc-0000.json.gz", "cc-0001.json.zst", "wiki-0000.jsonl.gz"):
        write(d / name)
    (d / "manifest.json").write_text('{"text": "not a shard"}\n')
    said: list[str] = []
    every = ["cc-0000.json.gz", "cc-0001.json.zst", "wiki-0000.jsonl.gz"]
    assert [s.name for s in discover([d], log=said.append)] == every
    assert said and all("manifest.json" in m and "cc-0000" not in m for m in said), said
    assert [s.name for s in discover([str(d / "*.json.gz")])] == ["cc-0000.json.gz"]
    assert [s.name for s in discover([str(d / "*")])] == every
    assert [(s.fmt, s.compression) for s in discover([d])][:2] == [("jsonl", "gzip"), ("jsonl", "zstd")]


def test_a_directory_of_skipped_files_only_says_what_it_skipped(tmp_path: Path):
    """A directory holding only ``train.json`` (and a ``.jsonl.bz2``) was refused as one with
    'no .parquet, .arrow or .jsonl[.gz|.zst] files', before the walk said what it had skipped
    and how to read it: the one line the user sees did not name the files or the fix."""
    d = tmp_path / "d"
    d.mkdir()
    for name in ("train.json", "b.jsonl.bz2"):
        (d / name).write_bytes(b"")
    with pytest.raises(InputError, match=r"no \.parquet.*skipped 1 \.json file.*as JSON Lines: train\.json.*"
                                         r"skipped 1 compressed file.*b\.jsonl\.bz2"):
        discover([d])


def test_a_directory_given_twice_has_its_skipped_files_said_once(tmp_path: Path):
    """`memdedup dedup d d` said 'skipped 2 .json files: manifest.json, manifest.json' for one
    file (found by the CLI probe): the rows are read once, and so are the skipped files counted."""
    d = tmp_path / "d"
    write(d / "a.jsonl")
    (d / "train.json").write_text("")
    said: list[str] = []
    assert [s.name for s in discover([d, d, str(d) + "/"], log=said.append)] == ["a.jsonl"]
    assert any("skipped 1 .json file" in m and m.count("train.json") == 1 for m in said), said


def test_a_git_lfs_pointer_is_refused_as_one_before_anything_is_read(tmp_path: Path):
    """A Hugging Face dataset cloned without Git LFS holds pointer files under the data names
    (``data/train-00000-of-00002.parquet``: 130 bytes of 'version https://git-lfs...'): each was
    refused as 'corrupt Parquet' ('magic bytes not found in footer'), a .jsonl.gz as 'zlib inflate
    failed', a .jsonl as invalid JSON at line 1. Now the first such file is refused as a Git LFS
    pointer, with the fix, whether walked, named or globbed."""
    pointer = ("version https://git-lfs.github.com/spec/v1\n"
               "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n")
    d = tmp_path / "repo"
    write(d / "data" / "train-00000-of-00002.parquet")
    for name in ("data/train-00001-of-00002.parquet", "data/x.jsonl.gz", "data/y.jsonl", "data/z.arrow"):
        (d / name).write_text(pointer)
    walked = d / "data" / "train-00001-of-00002.parquet"  # the first in canonical order
    cases = ((d, walked), (d / "data" / "z.arrow", d / "data" / "z.arrow"),
             (str(d / "data" / "*.jsonl*"), d / "data" / "x.jsonl.gz"))
    for given, named in cases:
        with raises_naming(named, "a Git LFS pointer, not the data: fetch it.*git lfs pull"):
            discover([given])


def test_a_file_name_that_is_not_utf8_is_refused_naming_it_escaped(tmp_path: Path):
    """Output names (kept/<name>, removed.parquet's shard column) are UTF-8 text: a file whose
    name holds a byte that is not is refused, its name shown with that byte as \\xff
    (dedup.io.undecodable, as the report shows labels and paths)."""
    import os

    d = tmp_path / "d"
    d.mkdir()
    (d / os.fsdecode(b"a\xffb.jsonl")).write_bytes(b'{"text": "one two three"}\n')
    with pytest.raises(InputError, match=r"a\\xffb\.jsonl: file name is not valid UTF-8"):
        discover([d])


def test_head_texts_are_the_first_texts_with_text_whatever_the_format(tmp_path: Path):
    """What an index records of an input file's first documents (dedup.index_dir.first_documents:
    a datatrove rank reading the same rows is refused by it): the first n texts that are not null
    or empty, the same in Parquet, JSON Lines (plain or compressed, blank lines too) and Arrow IPC."""
    import pyarrow.feather as feather

    from dedup.index_dir import first_documents
    from dedup.shards import head_texts

    rows = [{"id": str(k), "text": None if k % 5 == 0 else "" if k % 7 == 0 else f"text {k} é"} for k in range(300)]
    want = [r["text"] for r in rows if r["text"]][:64]
    paths = [write(tmp_path / name, rows) for name in ("a.parquet", "b.jsonl", "c.jsonl.gz", "d.jsonl.zst")]
    (tmp_path / "b.jsonl").write_bytes(b"\n \n" + (tmp_path / "b.jsonl").read_bytes())
    feather.write_feather(pa.Table.from_pylist(rows), tmp_path / "e.arrow", compression="uncompressed")
    shards = discover([*paths, tmp_path / "e.arrow"])
    assert [s.fmt for s in shards] == ["parquet", "jsonl", "jsonl", "jsonl", "arrow"]
    for s in shards:
        assert head_texts(s, "text", 64) == want, s.name
    assert first_documents(want) == first_documents([None, "", *want, "more"]) == first_documents(want + want)
    assert first_documents(want)["count"] == 64 and first_documents(["", None]) is None
    assert head_texts(shards[0], "no such column", 64) == []  # the reader names that problem, not the digest


def test_head_texts_of_a_text_that_is_not_utf8_is_none_not_an_error(tmp_path: Path):
    """A JSON Lines text holding an escaped lone surrogate ("\\ud800") parses in Python but is not
    UTF-8: with --index-dir its digest failed first, in one line naming no file (found by review);
    now there is no head, and the reader refuses the file naming its line."""
    from dedup.shards import head_texts

    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "ok"}\n{"text": "bad \\ud800 text"}\n')
    assert head_texts(discover([path])[0], "text", 64) == []
    long = tmp_path / "long.jsonl"  # a line longer than a read block, and no newline at the end
    long.write_text('{"text": "' + "x" * 200_000 + '"}\n\n{"text": "second"}')
    assert [len(t) for t in head_texts(discover([long])[0], "text", 64)] == [200_000, 6]


def test_head_texts_stop_at_the_nth_text_and_read_no_line_after_it(tmp_path: Path):
    """head_texts reads a JSON Lines file only up to its n-th text: a shrink read one more line
    first (a 2 GiB line after the first 64 texts was read whole, for every input of an
    --index-dir run), and a file cut short after that line lost its head."""
    import gzip as gz
    import random

    from dedup.shards import head_texts

    noise = "".join(random.Random(0).choices("abcdefghij", k=200_000))  # compresses to about 80 KB
    body = "".join(json.dumps({"text": f"t {k}"}) + "\n" for k in range(3)) + '{"text": "' + noise + '"}\n'
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gz.compress(body.encode())[:-2000])  # the stream is cut inside the long fourth line
    assert head_texts(discover([path])[0], "text", 3) == ["t 0", "t 1", "t 2"]
    assert head_texts(discover([path])[0], "text", 0) == []


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=8)
                     | st.floats(allow_nan=False, allow_infinity=False, width=32),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                     max_leaves=6)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(_JSON, min_size=2, max_size=6), spaced=st.booleans(), ascii_only=st.booleans())
def test_a_mixed_column_reads_each_value_as_written(tmp_path_factory, values, spaced, ascii_only):
    """Whatever JSON values a column holds, read as text each is: null, a string itself, anything else its text as
    written (separators and escapes as in the file); the other columns are untouched."""
    seps = (", ", ": ") if spaced else (",", ":")
    texts = [json.dumps(v, separators=seps, ensure_ascii=ascii_only) for v in values]
    path = tmp_path_factory.mktemp("mixed") / "m.jsonl"
    path.write_text("".join(f'{{"text": "doc {i}",{" " * spaced}"m":{t}, "k": {i}}}\n' for i, t in enumerate(texts)),
                    encoding="utf-8")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = _read_all(path)
    kinds = {jsonl_kind(v) for v in values} - {"null"}
    if len(kinds) > 1:  # a number here, a string or an object there: text
        assert t.schema.field("m").type == pa.string()
    if t.schema.field("m").type == pa.string() and kinds - {"string"}:  # read as text (also for a change inside)
        assert t.column("m").to_pylist() == [None if v is None else v if isinstance(v, str) else s
                                             for v, s in zip(values, texts)]
    assert t.column("k").to_pylist() == list(range(len(values)))
    assert t.column("text").to_pylist() == [f"doc {i}" for i in range(len(values))]


def jsonl_kind(v: object) -> str:
    from dedup.jsonl import json_kind

    return json_kind(v)


@pytest.mark.parametrize("indent", [None, 4])
def test_a_json_array_file_is_named_as_such_with_the_way_to_convert_it(tmp_path: Path, indent):
    """Instruction datasets ship as one JSON array of objects (Alpaca's alpaca_data.json); read as JSON Lines it was
    'line 1: invalid JSON at column 2: Expecting value' (indented) or 'expected a JSON object, got array'."""
    path = tmp_path / "alpaca_data.json"
    path.write_text(json.dumps([{"instruction": "a", "output": "b c d"}] * 3, indent=indent))
    got = "array" if indent is None else "the start of an array"
    with raises_naming(path, rf"line 1: expected a JSON object, got {got} \(a file that is one JSON array is not JSON "
                             r"Lines, one object per line\); convert it with jq -c '\.\[\]' alpaca_data\.json > "
                             r"alpaca_data\.jsonl$"):
        reader(discover([path])[0], text="output")


def test_the_jq_command_for_a_json_array_file_quotes_its_name(tmp_path: Path):
    """A name holding a space (``my data.json``): the command said ``jq -c '.[]' my data.json > my data.jsonl``,
    which the shell runs on the files ``my`` and ``data.json`` and writes to ``my``."""
    path = tmp_path / "my data.json"
    path.write_text(json.dumps([{"text": "a b"}], indent=2))
    with raises_naming(path, r"convert it with jq -c '\.\[\]' 'my data\.json' > 'my data\.jsonl'$"):
        reader(discover([path])[0])


def test_lists_starting_with_nulls_are_read(tmp_path: Path):
    """pyarrow 26's JSON reader drops the nulls before a list's first value, leaving the list's child shorter than its
    offsets (``[null, false]``, ``[null, null]``, also inside an object or a list): the file was refused with 'Offset
    invariant failure' (found by the mixed-column property test). Such a column is parsed again with its type given
    (Arrow then keeps them), a list of nulls only rebuilt from its offsets."""
    rows = [{"text": "a b", "m": None, "s": {"x": [None]}, "b": [None, False], "o": [None, {"a": 1}]},
            {"text": "c d", "m": [None, None], "s": {"x": [None, None]}, "b": None, "o": []},
            {"text": "e f", "m": [], "s": None, "b": [None, None, True], "o": [{"a": None}, None]},
            {"text": "g h", "m": [None], "s": {"x": None}, "b": [True], "o": None}]
    t = _read_all(write(tmp_path / "nulls.jsonl", rows))
    for c in ("m", "s", "b", "o"):
        assert t.column(c).to_pylist() == [r[c] for r in rows], c
    assert t.schema.names == ["text", "m", "s", "b", "o"]


def test_int96_timestamps_beyond_the_nanosecond_range_keep_their_dates(tmp_path: Path):
    """Spark and Hive write timestamps as Parquet INT96; pyarrow reads them as nanoseconds by default, whose range
    (1677-2262) wraps a placeholder date such as 9999-12-31 to 1816-03-29 silently, and the kept shard held the
    wrapped date. INT96 is now read in microseconds (Spark's own precision)."""
    import datetime

    dates = [datetime.datetime(9999, 12, 31), datetime.datetime(2020, 1, 1, 12, 0, 0, 123456), None]
    table = pa.table({"text": ["a b c d", "e f g h", "i j k l"], "ts": pa.array(dates, pa.timestamp("us"))})
    pq.write_table(table, tmp_path / "spark.parquet", use_deprecated_int96_timestamps=True)
    t = _read_all(tmp_path / "spark.parquet")
    assert t.column("ts").to_pylist() == dates


def test_lists_of_nulls_beside_an_empty_object_are_read(tmp_path: Path):
    """``{"m": {"a": {}, "b": [null, null]}}``: rebuilding the list of nulls rebuilt the empty object ``a`` from no
    children, with no rows, and the file was refused: 'Mismatching child array lengths' (found by the JSON Lines
    property test)."""
    rows = [{"text": "a b", "m": {"a": {}, "b": [None, None]}}, {"text": "e f", "m": {"a": {}, "b": [None]}}]
    t = _read_all(write(tmp_path / "empty.jsonl", rows))
    assert t.column("m").to_pylist() == [r["m"] for r in rows]


def test_lists_of_nulls_in_an_object_that_gains_keys_in_another_piece_are_read(tmp_path: Path, tiny_pieces):
    """``{"m": {"a": 1}}`` in one piece, ``{"m": {"b": [null, null]}}`` in the next: pyarrow 26's cast to the file's
    ``struct<a, b: list<null>>`` leaves the list's child short, and the read failed with an ArrowInvalid traceback,
    not an InputError (found by the JSON Lines property test). Such a cast column is rebuilt from its offsets."""
    long = "words " * 12  # one line per piece
    rows = [{"text": long, "m": {"a": 1}}, {"text": long, "m": {"b": [None, None]}},
            {"text": long, "n": [{"c": 1}]}, {"text": long, "n": [{"d": [None, None]}]}]
    t = _read_all(write(tmp_path / "gains.jsonl", rows))
    assert t.column("m").to_pylist() == [{"a": 1, "b": None}, {"a": None, "b": [None, None]}, None, None]
    assert t.column("n").to_pylist() == [None, None, [{"c": 1, "d": None}], [{"c": None, "d": [None, None]}]]


def test_a_key_holding_a_slash_whose_type_changes_is_read_as_text(tmp_path: Path):
    """``{"a/b": 1}`` then ``{"a/b": "x"}`` in one piece: Arrow names the field ``/a/b``, which was taken for the
    column ``a``, and the file was refused ('JSON field /a/b changes type within the file'; found by the JSON Lines
    property test). The column is the line's key that the field starts with; a ``/`` inside it is read as well."""
    rows = [{"text": "a b", "a/b": 1, "a": {"b/c": [1]}}, {"text": "c d", "a/b": "x", "a": {"b/c": ["y"]}}]
    with pytest.warns(UserWarning) as caught:
        t = _read_all(write(tmp_path / "slash.jsonl", rows))
    assert sorted(str(w.message).split(": column ")[1].split(" holds")[0] for w in caught) == ["'a'", "'a/b'"]
    assert t.column("a/b").to_pylist() == ["1", "x"]
    assert t.column("a").to_pylist() == ['{"b/c": [1]}', '{"b/c": ["y"]}']


@pytest.mark.parametrize("pieces", [None, 16])
def test_a_big_integer_inside_a_list_of_a_column_read_as_text_is_kept_whatever_the_pieces(tmp_path: Path,
                                                                                          monkeypatch, pieces):
    """``[2^63]`` on line 1, a number on line 2: the column changes type, so it is read as text and nothing is
    rounded. In one piece it was; in pieces of a line the first was refused ('holds the integer 9223372036854775808
    inside a list or object') before the second showed the change (found by the JSON Lines property test)."""
    import dedup.shards

    if pieces:
        monkeypatch.setattr(dedup.shards, "JSONL_CHUNK_BYTES", pieces)
    path = _jsonl_file(tmp_path, [b'{"text": "a", "m": [9223372036854775808]}',
                                  b'{"text": "b", "m": 9007199254740993}'])
    with pytest.warns(UserWarning, match="column 'm' holds values of different JSON types"):
        t = _read_all(path)
    assert t.column("m").to_pylist() == ["[9223372036854775808]", "9007199254740993"]


def test_a_big_integer_inside_a_list_with_a_fraction_in_another_piece_is_refused_naming_its_line(tmp_path: Path,
                                                                                                monkeypatch):
    """``[2^53 + 1]`` on line 2 and ``[0.5]`` on line 4, in pieces of two lines: the first piece read it as an int64,
    the file's schema holds float64 there, and the read failed later with Arrow's cast error naming line 1, the
    piece's first ('column 'm' is list<item: int64> from this line on, ...'; found by the JSON Lines property test).
    It is refused as one in a single piece is, naming its line, before any row is read."""
    import dedup.shards

    monkeypatch.setattr(dedup.shards, "JSONL_CHUNK_BYTES", 70)
    path = _jsonl_file(tmp_path, [b'{"text": "a", "m": [1]}', b'{"text": "b", "m": [9007199254740993]}',
                                  b'{"text": "c", "m": [2]}', b'{"text": "d", "m": [0.5]}'])
    with raises_naming(path, r"line 2: column 'm' holds the integer 9007199254740993 inside a list or object"):
        reader(discover([path])[0])


_CHANGED = [b'{"text": "a", "m": 1}', b'{"text": "b", "m": "x"}']  # m changes type within the first two lines


@pytest.mark.parametrize("pieces", [None, 16, len(b"\n".join(_CHANGED)) + 1])
@pytest.mark.parametrize("value, why", [(rb'{"a": 1, "a": 2}', "key 'a' appears twice in one object"),
                                        (rb'{"a": "\ud800"}', "unpaired UTF-16 surrogate escape"),
                                        (rb'[1e999]', "number 1e999 is too large for a double")])
def test_a_line_json_lines_refuses_is_refused_in_a_column_read_as_text_whatever_the_pieces(tmp_path: Path,
                                                                                            monkeypatch, pieces,
                                                                                            value, why):
    """``m`` changes type on lines 1-2 and line 3 holds, in ``m``, what :mod:`dedup.jsonl` refuses. Read as text,
    it was hidden from Arrow inside a string and kept, but only when the change was seen in a piece before line 3's
    (pieces of lines 1-2, then 3); whole, or a line a piece, it was refused: the outcome depended on the pieces."""
    import dedup.shards

    if pieces:
        monkeypatch.setattr(dedup.shards, "JSONL_CHUNK_BYTES", pieces)
    path = _jsonl_file(tmp_path, [*_CHANGED, b'{"text": "c", "m": ' + value + b"}"])
    with raises_naming(path, f"line 3: .*{why}"):
        _read_all(path)


@pytest.mark.parametrize("pieces", [None, 16, len(b"\n".join(_CHANGED)) + 1])
def test_a_line_nested_beyond_pythons_recursion_limit_beside_a_column_read_as_text_is_refused(tmp_path: Path,
                                                                                               monkeypatch, pieces):
    """Line 3's ``d`` is a list 1500 deep, in a file whose ``m`` is read as text: picking out ``m``'s values
    decoded ``d`` in Python, and its RecursionError ended the read in a traceback, not an InputError."""
    import dedup.shards

    if pieces:
        monkeypatch.setattr(dedup.shards, "JSONL_CHUNK_BYTES", pieces)
    path = _jsonl_file(tmp_path, [*_CHANGED, b'{"text": "c", "d": ' + b"[" * 1500 + b"]" * 1500 + b"}"])
    with raises_naming(path, "line 3|nested 1500 levels deep"):
        _read_all(path)


@pytest.mark.parametrize("pieces", [None, 16])
def test_a_text_column_that_changes_type_between_pieces_is_refused_naming_its_line(tmp_path: Path, monkeypatch,
                                                                                    pieces):
    """The text column a number on line 1 and a string on line 2: in one piece refused naming line 1; in pieces of a
    line it was read as text, the number 1 deduplicated as the document "1" (a column read as text)."""
    import dedup.shards

    if pieces:
        monkeypatch.setattr(dedup.shards, "JSONL_CHUNK_BYTES", pieces)
    path = _jsonl_file(tmp_path, [b'{"text": 1, "m": 1}', b'{"text": "b", "m": 2}'])
    with raises_naming(path, "line 1: text column 'text' holds a JSON number, expected a string"):
        _read_all(path)


# ------------------------------------------------------------ JSON Lines as corpora write it, against json.loads

_BIG_INTS = [2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, -(2**53) - 1, 10**30]
_DATES = ["2024-01-01", "2024-01-01T12:30:00", "2024-01-01 12:30:00", "2024-01-01T12:30:00Z", "1999-12-31T23:59:59.5",
          "2024-01-01T12:30:00+02:00", "1999", "12:30:00", "2024-13-45"]
_ODD = ['"', "\\", "\n\t\r", "\u2028", "é", "😀", "\x00", "\x7f", "/", "</script>", ""]
_STRINGS = st.text(max_size=6) | st.sampled_from(_DATES + _ODD)
_KEYS = ["a", "b", "ké", "", "a.b", "x/y", 'q"k', "Ü", "n"]
_LEAVES = {"bool": st.booleans(), "int": st.integers(-2**53, 2**53) | st.sampled_from([0, -1, 2**31, 2**53]),
           "float": st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([0.5, -0.0, 1e300, 5e-324]),
           "str": _STRINGS, "date": st.sampled_from(_DATES), "big": st.sampled_from(_BIG_INTS)}
_LEAVES["num"] = _LEAVES["int"] | _LEAVES["float"]
_LEAVES["bignum"] = _LEAVES["big"] | _LEAVES["num"]
_LEAVES["any"] = _JSON
#: A column's shape: a leaf kind, or ("list", shape), or ("struct", {key: shape}); "big" (integers beyond 2^53) and
#: "any" (any JSON: the column is likely read as text) may sit anywhere.
_SHAPES = st.recursive(st.sampled_from(sorted(_LEAVES)),
                       lambda inner: st.tuples(st.just("list"), inner)
                       | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=3).map(lambda d: ("struct", d)),
                       max_leaves=4)


def _values(shape) -> st.SearchStrategy:
    """Values of ``shape``, null anywhere, objects with varying keys in varying order, lists with nulls anywhere."""
    if isinstance(shape, str):
        base = _LEAVES[shape]
    elif shape[0] == "list":
        base = st.lists(st.none() | _values(shape[1]), max_size=4)
    else:
        base = st.fixed_dictionaries({}, optional={k: _values(s) for k, s in shape[1].items()}).flatmap(
            lambda d: st.permutations(list(d.items())).map(dict))
    return st.none() | base | base | base


class _Conflict(Exception):
    pass


def _jtype(v):
    """The type Arrow reads a JSON value as, in a model: None (null), a leaf kind, ("list", t) or ("struct", {k: t})."""
    if v is None:
        return None
    if isinstance(v, (bool, str)):
        return type(v).__name__
    if isinstance(v, (int, float)):
        return type(v).__name__
    if isinstance(v, list):
        t = None
        for x in v:
            t = _unify(t, _jtype(x))
        return ("list", t)
    return ("struct", {k: _jtype(x) for k, x in v.items()})


def _unify(a, b):
    """The documented unification: null goes with any type, ints and floats are floats, objects take every key."""
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, str) and isinstance(b, str) and {a, b} <= {"int", "float"}:
        return "float" if "float" in (a, b) else "int"
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0] == "list":
        return ("list", _unify(a[1], b[1]))
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0] == "struct":
        return ("struct", {k: _unify(a[1].get(k), b[1].get(k)) for k in {**a[1], **b[1]}})
    if a == b:
        return a
    raise _Conflict


def _conform(v, t):
    """``v`` as a column of unified type ``t`` holds it: ints as floats in a float column, missing keys null."""
    if v is None:
        return None
    if t == "float":
        return float(v)
    if isinstance(t, tuple) and t[0] == "list":
        return [_conform(x, t[1]) for x in v]
    if isinstance(t, tuple):
        return {k: _conform(v.get(k), s) for k, s in t[1].items()}
    return v


def _ints_at(v, path=()):
    """(path, int) of each integer inside lists and objects (path: keys, None for a list item)."""
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _ints_at(x, (*path, k))
    elif isinstance(v, list):
        for x in v:
            yield from _ints_at(x, (*path, None))
    elif isinstance(v, int) and not isinstance(v, bool) and path:
        yield path, v


def _same(a, b) -> bool:
    """Equal, and of the same Python types all the way down (1 is not 1.0, True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@st.composite
def _corpora(draw):
    """(file bytes, the rows' values and JSON texts as written, each row's 1-based line) of a JSON Lines file."""
    columns = draw(st.lists(st.sampled_from(["meta", "score", "tags", "ké", "a.b", "x/y", "", "url"]), unique=True,
                            min_size=1, max_size=4))
    shapes = {c: draw(_SHAPES | st.sampled_from(["big", "bignum", "any"])) for c in columns}
    others = {c: draw(st.none() | st.none() | _SHAPES) for c in columns}  # another shape on some lines: text
    seps = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,\t", " :  ")]))
    ascii_only, bom, final_newline = draw(st.booleans()), draw(st.booleans()), draw(st.booleans())
    rows, written, row_lines, lines = [], [], [], []
    for _ in range(draw(st.integers(2, 8))):
        lines += draw(st.lists(st.sampled_from(["", " ", "\t", "\r", " \t "]), max_size=1))  # blank lines
        row = {"text": draw(st.none() | _STRINGS | _STRINGS)}
        row |= {c: draw(_values(others[c] if others[c] and draw(st.booleans()) else shapes[c]))
                for c in columns if draw(st.integers(0, 3))}  # keys missing, late
        row = dict(draw(st.permutations(list(row.items()))))
        texts = {k: json.dumps(v, separators=seps, ensure_ascii=ascii_only) for k, v in row.items()}
        pad = draw(st.sampled_from(["", " ", "\t"]))
        members = seps[0].join(json.dumps(k, ensure_ascii=ascii_only) + seps[1] + t for k, t in texts.items())
        lines.append(draw(st.sampled_from(["", " "])) + "{" + pad + members + pad + "}")
        rows.append(row), written.append(texts), row_lines.append(len(lines))
    ends = draw(st.lists(st.sampled_from(["\n", "\r\n"]), min_size=len(lines), max_size=len(lines)))
    data = "".join(line + end for line, end in zip(lines, ends))
    if not final_newline:
        data = data[: -len(ends[-1])]
    return (b"\xef\xbb\xbf" if bom else b"") + data.encode("utf-8"), rows, written, row_lines


_NULL_LISTS = ('{"text":null,"meta":{"b":null}}', '{"text":null,"meta":{"a":null,"b":[null,{"a":null}]}}')


@settings(max_examples=300, deadline=None)
@given(corpus=_corpora(), pieces=st.sampled_from([16, 64, 256, 32 << 20]))
@example(corpus=("\n".join(_NULL_LISTS).encode(), [json.loads(x) for x in _NULL_LISTS],  # found by hypothesis
                 [{k: json.dumps(v, separators=(",", ":")) for k, v in json.loads(x).items()} for x in _NULL_LISTS],
                 [1, 2]), pieces=16)  # an object inside a list inside an object, all null in one piece: Arrow refused
def test_jsonl_reads_every_value_as_json_loads_does_under_the_documented_rules(tmp_path_factory, corpus, pieces):
    """A differential test of the JSON Lines reader against Python's json on files shaped like real corpora's (a text
    column and metadata: nested objects with varying keys, lists with nulls anywhere, ints and floats, integers beyond
    2^53 and int64, unicode and escapes, date-like strings; blank lines, CRLF, a byte order mark, several pieces), then
    through Parquet, as kept shards are written. The rules: a column whose JSON type changes (deep inside too) is text,
    a string itself and any other value its JSON text as written; ints in a column with floats are floats; a missing
    key is null; date-like strings stay strings; a top-level column of integers beyond int64 is uint64, or the numbers'
    text when some are negative, fractional or beyond uint64 (also integers beyond 2^53 with fractions); an integer
    beyond 2^53 inside a list or object where float64 would hold it is refused naming a line that holds one."""
    import warnings

    import dedup.shards

    data, rows, written, row_lines = corpus
    path = tmp_path_factory.mktemp("corpus") / "c.jsonl"
    path.write_bytes(data)
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    assert [json.loads(line) for line in body.split(b"\n") if line.strip(b" \t\r")] == rows  # the file is as meant

    names = list(dict.fromkeys(k for r in rows for k in r))
    types, expected, refusing = {}, {}, set()
    for c in names:
        values = [r.get(c) for r in rows]
        try:
            t = None
            for v in values:
                t = _unify(t, _jtype(v))
        except _Conflict:  # read as text
            expected[c] = [None if v is None else v if isinstance(v, str) else w.get(c)
                           for v, w in zip(values, written)]
            continue
        types[c] = t
        ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
        outside = [v for v in ints if not -(2**63) <= v < 2**63]
        if t in ("int", "float") and (outside or t == "float" and any(abs(v) > 2**53 for v in ints)):
            exact_uint64 = t == "int" and all(0 <= v < 2**64 for v in ints)
            expected[c] = values if exact_uint64 else [None if v is None else w[c] for v, w in zip(values, written)]
        else:
            expected[c] = [_conform(v, t) for v in values]
        at = defaultdict(list)  # path -> [(line, int)]
        for line, v in zip(row_lines, values):
            for p, i in _ints_at(v):
                at[p].append((line, i))
        for p, found in at.items():
            leaf = t
            for key in p:
                leaf = leaf[1] if key is None else leaf[1][key]
            if leaf == "float" or any(not -(2**63) <= i < 2**63 for _, i in found):  # float64 holds them
                refusing |= {line for line, i in found if abs(i) > 2**53}

    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mp.setattr(dedup.shards, "JSONL_CHUNK_BYTES", pieces)
        try:
            table = _read_all(path, id_column=None)
        except InputError as e:
            assert refusing and "inside a list or object" in e.message and e.line in refusing, (e, refusing)
            return
    assert not refusing, refusing
    said = {str(w.message).split(": column ")[1].split(" holds")[0] for w in caught
            if "different JSON" in str(w.message)}
    assert said == {repr(c) for c in names if c not in types}
    assert sorted(table.column_names) == sorted(names) and table.num_rows == len(rows) == count_rows(discover([path]))
    for c in names:
        got = table.column(c).to_pylist()
        assert all(_same(g, e) for g, e in zip(got, expected[c])), (c, types.get(c), got, expected[c])

    def fieldless(t: pa.DataType) -> bool:  # Parquet cannot write an object without fields (documented)
        return (pa.types.is_struct(t) and t.num_fields == 0) or any(fieldless(t.field(i).type)
                                                                    for i in range(t.num_fields))

    if not any(fieldless(f.type) for f in table.schema):
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        back = pq.read_table(pa.BufferReader(sink.getvalue()))
        assert back.schema.remove_metadata() == table.schema.remove_metadata()
        assert all(_same(a, b) for a, b in zip(back.to_pylist(), table.to_pylist()))


@pytest.mark.parametrize("nest", ["list", "struct", "map"])
def test_a_dictionary_inside_a_nested_parquet_column_is_read_across_row_groups(tmp_path, nest):
    """pyarrow reads no batch spanning row groups of a Parquet column holding a dictionary inside a list, struct or
    map ('Nested data conversions not implemented for chunked array outputs'): such a file, as pyarrow writes it,
    was refused as 'corrupt data after this row' (row 0)."""
    from dedup import DedupConfig, dedup_files

    words = pa.array(["a", "b", "a", None]).dictionary_encode()
    offsets = pa.array([0, 1, 2, 3, 4], pa.int32())
    tags = {"list": lambda: pa.ListArray.from_arrays(offsets, words),
            "struct": lambda: pa.StructArray.from_arrays([words], ["w"]),
            "map": lambda: pa.MapArray.from_arrays(offsets, pa.array(["k"] * 4), words)}[nest]()
    table = pa.table({"text": ["a b", "c d", "e f", "a b"], "tags": tags})
    path = tmp_path / "n.parquet"
    pq.write_table(table, path, row_group_size=1)
    reader = ShardReader(discover([path])[0], "text", "id", False, batch_rows=3)
    assert [b.num_rows for b in reader.batches()] == [3, 1]
    m = dedup_files([path], tmp_path / "out", DedupConfig(batch_rows=3), threads=1)
    assert m["totals"]["removed"]["exact"] == 1
    kept = pq.read_table(tmp_path / "out" / "kept" / "n.parquet")
    assert kept.schema == pq.read_schema(path) and kept.column("tags").to_pylist() == tags.to_pylist()[:3]


def test_float32_and_float16_ids_that_are_not_whole_are_written_as_arrow_writes_their_type():
    """A float32 id 0.1 was written '0.10000000149011612', and 9.0072e+15 '9.007200328482816e+15': the float64 it
    was widened to, not the float32 (Arrow writes float32 values by their own shortest form: '0.1')."""
    from dedup.shards import id_strings

    ids = pa.array([0.1, 9.0072e15, 2.0, -0.0, float("nan"), None, 2.5], pa.float32())
    assert id_strings(ids, Path("f.parquet"), "id").to_pylist() == [
        "0.1", "9.0072e+15", "2", "0", "nan", None, "2.5"]
    assert id_strings(ids.cast(pa.float16(), safe=False), Path("f.parquet"), "id").to_pylist()[2:] == [
        "2", "0", "nan", None, "2.5"]


@pytest.mark.parametrize("suffix, command", [(".json.gz", "zcat"), (".json.zst", "zstdcat")])
def test_a_compressed_json_array_file_gets_the_command_that_converts_it(tmp_path: Path, suffix, command):
    """``data.json.gz`` holding one JSON array got the array message but no way out (found by review)."""
    path = write(tmp_path / f"data{suffix}", [])
    path.write_bytes(gzip.compress(b'[{"text": "a b"}]\n') if suffix.endswith("gz") else path.read_bytes())
    if suffix.endswith("zst"):
        with pa.CompressedOutputStream(str(path), "zstd") as f:
            f.write(b'[{"text": "a b"}]\n')
    with raises_naming(path, rf"convert it with {command} data\{suffix} \| jq -c '\.\[\]' > data\.jsonl$"):
        reader(discover([path])[0])


def test_a_file_with_columns_read_as_text_gives_both_engines_the_same_bytes(tmp_path: Path, monkeypatch):
    """Mixed-type metadata (columns read as text), planted duplicates, pieces of about one line: the fused engine
    and the staged one (serially) write the same kept and removed bytes, and every row is kept or removed."""
    import dedup.shards
    from dedup.engine import dedup_files
    from dedup.stages import dedup_staged

    monkeypatch.setattr(dedup.shards, "JSONL_CHUNK_BYTES", 64)
    rows = MIXED_ROWS * 3  # each text three times
    path = write(tmp_path / "in" / "rp.jsonl", rows)
    with pytest.warns(UserWarning, match="different JSON types"):
        a = dedup_files([path], tmp_path / "a", threads=1)
    with pytest.warns(UserWarning, match="different JSON types"):
        b = dedup_staged([path], tmp_path / "b")
    assert a["totals"]["rows"] == 12 and a["totals"]["kept"] + sum(a["totals"]["removed"].values()) == 12
    assert a["totals"]["removed"]["exact"] == 8  # the second and third copy of each of 4 texts
    for name in ("kept/rp.parquet", "removed.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


@pytest.mark.parametrize("fmt", ["parquet", "stream"])
def test_int8_dictionaries_whose_union_passes_127_values_are_read_across_row_groups_and_batches(tmp_path, fmt):
    """Two row groups (Arrow batches) of a dictionary<int8> column with 100 values each, in a list (Parquet: read a
    row group at a time and rebatched) or at the top (Arrow IPC stream, where each batch may replace the
    dictionary): joining them into one batch needs 200 dictionary values, more than int8 indexes. pq.read_table
    reads such a Parquet file; memdedup refused it as 'corrupt data after this row' (row 0), and the Arrow stream
    with 'These dictionaries cannot be combined', naming no file."""
    from dedup import DedupConfig, dedup_files

    def tags(lo: int) -> pa.Array:
        values = pa.array([f"t{lo + i}" for i in range(100)])
        return pa.DictionaryArray.from_arrays(pa.array(range(100), pa.int8()), values)

    texts = [f"doc {i} a b c" for i in range(100)]
    groups = [pa.table({"text": texts, "tag": pa.ListArray.from_arrays(pa.array(range(101), pa.int32()), tags(lo))
                        if fmt == "parquet" else tags(lo)}) for lo in (0, 100)]
    path = tmp_path / ("n.parquet" if fmt == "parquet" else "n.arrow")
    with (pq.ParquetWriter(path, groups[0].schema) if fmt == "parquet" else pa.ipc.new_stream(path, groups[0].schema)
          ) as w:
        for g in groups:
            w.write_table(g)
    given = pa.concat_tables(groups)
    m = dedup_files([path], tmp_path / "out", DedupConfig(batch_rows=150), threads=1)
    assert m["totals"]["removed"]["exact"] == 100  # the second group's texts are the first's
    kept = pq.read_table(tmp_path / "out" / "kept" / "n.parquet")
    assert kept.schema.field("tag").type == given.schema.field("tag").type
    assert kept.column("tag").to_pylist() == given.column("tag").to_pylist()[:100]
