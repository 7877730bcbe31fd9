"""Engine behaviours best tested in-process: output compression, determinism across
threads and batch sizes, OUT inside the input directory, stale temporaries, every Arrow
string layout of the text column."""

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dedup import DedupConfig, dedup_files
from dedup.synthetic import generate_corpus, write_shards


def _corpus(tmp_path, n=600, shards=3):
    table = generate_corpus(n, mean_bytes=400, seed=3)
    write_shards(table, tmp_path / "in", shards)
    return tmp_path / "in"


def test_zstd_by_default_and_configurable(tmp_path):
    src = _corpus(tmp_path)
    dedup_files([src], tmp_path / "a")
    meta = pq.ParquetFile(tmp_path / "a" / "kept" / "part-00000.parquet").metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    dedup_files([src], tmp_path / "b", DedupConfig(compression="snappy"))
    meta = pq.ParquetFile(tmp_path / "b" / "kept" / "part-00000.parquet").metadata
    assert meta.row_group(0).column(0).compression == "SNAPPY"


def test_decisions_independent_of_threads_and_batch_size(tmp_path):
    src = _corpus(tmp_path)
    outs = []
    for i, (threads, batch) in enumerate([(1, 32768), (2, 32768), (2, 7), (1, 1)]):
        out = tmp_path / f"o{i}"
        m = dedup_files([src], out, DedupConfig(batch_rows=batch), threads=threads)
        assert m["totals"]["removed"]["exact"] > 0 and m["totals"]["removed"]["near"] > 0
        outs.append(pq.read_table(out / "removed.parquet"))
    for t in outs[1:]:
        assert t.equals(outs[0])


def test_output_inside_input_directory_is_not_read_back(tmp_path):
    src = _corpus(tmp_path)
    out = src / "dedup-out"
    first = dedup_files([src], out)
    again = dedup_files([src], out, force=True)
    assert again["totals"]["rows"] == first["totals"]["rows"] == 600


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path):
    src = _corpus(tmp_path)
    out = tmp_path / "out"
    (out / "kept").mkdir(parents=True)
    stale = [out / ".removed.parquet.tmp-999999", out / "kept" / ".part-00000.parquet.tmp-999999"]
    for p in stale:
        pq.write_table(pa.table({"x": [1]}), p)
    dedup_files([src], out)
    assert not any(p.exists() for p in stale)


@pytest.mark.parametrize("layout", ["large_string", "string_view", "dictionary"])
def test_every_string_layout_of_the_text_column_gives_the_same_run(tmp_path, layout):
    """Text stored as large_string, string_view or dictionary<string> (how pandas
    categoricals arrive) is deduplicated exactly as plain strings, and the kept shards keep
    the input's schema (Arrow cannot filter view columns directly in some versions)."""
    table = generate_corpus(300, mean_bytes=300, seed=5).select(["id", "text"])
    text = table.column("text")
    if layout == "dictionary":
        other = text.dictionary_encode()
    else:
        other = text.cast(getattr(pa, layout)())
    variant = table.set_column(1, "text", other)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pq.write_table(table, tmp_path / "a" / "x.parquet")
    pq.write_table(variant, tmp_path / "b" / "x.parquet")
    ma = dedup_files([tmp_path / "a"], tmp_path / "oa")
    mb = dedup_files([tmp_path / "b"], tmp_path / "ob")
    assert ma["totals"]["removed"] == mb["totals"]["removed"] and sum(ma["totals"]["removed"].values()) > 0
    assert pq.read_table(tmp_path / "oa" / "removed.parquet").equals(pq.read_table(tmp_path / "ob" / "removed.parquet"))
    kept = pq.read_table(tmp_path / "ob" / "kept" / "x.parquet")
    assert kept.schema.field("text").type == pq.read_schema(tmp_path / "b" / "x.parquet").field("text").type
    assert kept.column("text").cast(pa.string()).to_pylist() == pq.read_table(tmp_path / "oa" / "kept" / "x.parquet").column("text").to_pylist()


def test_view_types_nested_in_other_columns_are_kept(tmp_path):
    """polars writes Arrow IPC with string_view inside lists and structs (``tags:
    large_list<string_view>``): Arrow cannot filter those columns, and the fallback cast
    only top-level views, so writing the kept shard crashed with a traceback."""
    t = pa.table({"id": [1, 2, 3], "text": ["same words in a row here", "same words in a row here", "other"],
                  "tags": pa.array([["a"], None, ["b", "c"]], pa.large_list(pa.string_view())),
                  "meta": pa.array([{"k": "x", "v": b"1"}, {"k": "y", "v": b"2"}, None],
                                   pa.struct([("k", pa.string_view()), ("v", pa.binary_view())])),
                  "map": pa.array([[("k", "v")], [], None], pa.map_(pa.string_view(), pa.string_view()))})
    (tmp_path / "in").mkdir()
    with pa.OSFile(str(tmp_path / "in" / "x.arrow"), "wb") as f, pa.ipc.new_file(f, t.schema) as w:
        w.write_table(t)
    m = dedup_files([tmp_path / "in"], tmp_path / "out")
    assert m["totals"]["removed"]["exact"] == 1
    kept = pq.read_table(tmp_path / "out" / "kept" / "x.parquet")
    assert kept.schema == t.schema and kept.to_pylist() == [t.to_pylist()[0], t.to_pylist()[2]]


def test_views_beside_a_null_field_in_a_struct_are_kept_from_a_sliced_batch(tmp_path):
    """A struct holding a view and a field of no values (struct<d: null>, list<null>: a JSON field null on every row,
    as polars writes it to Arrow IPC), from an Arrow file batch cut at --batch-rows: pyarrow 26 casts such a
    sliced struct to an invalid array, so the fallback filter aborted the process (SIGABRT, Arrow's 'Check failed:
    (off) <= (length)', no line naming the file; staged: 'the workers running it kept dying'). Run in a child
    process, which the abort would end."""
    import subprocess
    import sys

    none = pa.struct([("d", pa.null())])
    meta = pa.array([{"u": str(i), "n": {"d": None}, "l": [None]} for i in range(4)],
                    pa.struct([("u", pa.string_view()), ("n", none), ("l", pa.list_(pa.null()))]))
    t = pa.table({"text": ["same words in a row here"] * 2 + ["one two three four", "five six seven"], "meta": meta})
    path = tmp_path / "x.arrow"
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, t.schema) as w:
        w.write_table(t)
    code = ("import sys; from dedup import DedupConfig, dedup_files; from dedup.stages import dedup_staged; "
            "dedup_files([sys.argv[1]], sys.argv[2] + '/f', DedupConfig(batch_rows=1), threads=1); "
            "dedup_staged([sys.argv[1]], sys.argv[2] + '/s', DedupConfig(batch_rows=1))")
    r = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-500:]
    kept = pq.read_table(tmp_path / "f" / "kept" / "x.parquet")
    assert kept.schema == t.schema and kept.to_pylist() == [t.to_pylist()[i] for i in (0, 2, 3)]
    assert (tmp_path / "f/kept/x.parquet").read_bytes() == (tmp_path / "s/kept/x.parquet").read_bytes()  # both engines


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_an_extension_type_stored_as_views_is_kept(tmp_path, fmt):
    """arrow.json stored as string_view (pa.json_(pa.string_view())), at the top and in a struct: Arrow filters no
    view, and the fallback cast views only where no extension type wraps them, so a file where a row was removed
    crashed with a traceback (exit 1: 'array_filter' has no kernel matching input types (string_view, bool))."""
    j = pa.ExtensionArray.from_storage(pa.json_(pa.string_view()), pa.array(['{"a": 1}', "[]", None], pa.string_view()))
    t = pa.table({"text": ["same words in a row here", "same words in a row here", "other"], "j": j,
                  "s": pa.StructArray.from_arrays([j], ["j"])})
    path = tmp_path / "in" / f"x.{fmt}"
    path.parent.mkdir()
    if fmt == "parquet":
        pq.write_table(t, path)
    else:
        with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, t.schema) as w:
            w.write_table(t)
    m = dedup_files([path], tmp_path / "out")
    assert m["totals"]["removed"]["exact"] == 1
    kept = pq.read_table(tmp_path / "out" / "kept" / "x.parquet")
    assert kept.schema == t.schema and kept.to_pylist() == [t.to_pylist()[0], t.to_pylist()[2]]


def test_a_pandas_range_index_reads_back_renumbered_and_an_index_column_is_kept(tmp_path):
    """A decision (README, 'What goes in'): a pandas RangeIndex is only a range in the file's metadata, so kept shards
    read back numbered 0..n-1; an index that pandas stores as a column is kept, labels and name."""
    pd = pytest.importorskip("pandas")
    texts = ["same words in a row here", "same words in a row here", "other words"]
    for name, index in (("range", pd.RangeIndex(100, 106, 2)), ("labels", pd.Index([5, 7, 9], name="k"))):
        (tmp_path / name).mkdir()
        pd.DataFrame({"text": texts}, index=index).to_parquet(tmp_path / name / "p.parquet")
        dedup_files([tmp_path / name / "p.parquet"], tmp_path / name / "out")
        kept = pd.read_parquet(tmp_path / name / "out" / "kept" / "p.parquet")
        assert kept["text"].tolist() == [texts[0], texts[2]]
        assert kept.index.tolist() == ([0, 1] if name == "range" else [5, 9]) and kept.index.name == index.name


def test_ids_of_any_castable_type_are_reported_as_strings(tmp_path):
    """Integer, float and UTF-8 binary id columns come out of removed.parquet as strings."""
    docs = ["the quick brown fox jumps over", "The quick brown fox jumps over!", "something else entirely here"]
    for name, ids in (("int", pa.array([7, 8, 9])), ("float", pa.array([7.5, 8.5, 9.5])),
                      ("binary", pa.array([b"a7", b"a8", b"a9"]))):
        pq.write_table(pa.table({"id": ids, "text": docs}), tmp_path / f"{name}.parquet")
        dedup_files([tmp_path / f"{name}.parquet"], tmp_path / f"out-{name}")
        removed = pq.read_table(tmp_path / f"out-{name}" / "removed.parquet")
        assert removed.column("id").type == pa.string()
        assert removed.column("id").to_pylist() == [ids.cast(pa.string())[1].as_py()], name


def test_manifest_versions_match_the_installed_distributions():
    """The versions read from dist-info directory names equal importlib.metadata's."""
    from importlib.metadata import version

    from dedup.io import library_versions

    got = library_versions(("datasketch",))
    for dist in ("memdedup", "numba", "datasketch"):
        assert got[dist] == version(dist), dist


def test_json_outputs_are_strict_json_without_nan():
    """json.dumps writes NaN and Infinity, which strict parsers (jq, JavaScript's JSON.parse,
    most JSON libraries) refuse: a profile with --n-boot 0 wrote NaN into summary.json. Every
    JSON file memdedup writes goes through json_text: non-finite numbers are null there."""
    import json

    import numpy as np

    from dedup.io import json_text

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    text = json_text({"a": float("nan"), "b": [1.0, float("inf"), np.float64("-inf")], "c": {"d": np.nan}, "e": 0.5})
    assert json.loads(text, parse_constant=refuse) == {"a": None, "b": [1.0, None, None], "c": {"d": None}, "e": 0.5}


def test_one_path_not_in_a_list_is_one_input(tmp_path, monkeypatch):
    """A str is a sequence of one-character paths: dedup_files("/data/c", ...) walked the
    whole file system from "/"; a single path (str or Path) is the one input."""
    _corpus(tmp_path, n=50, shards=1)
    monkeypatch.chdir(tmp_path)  # relative: the old behaviour reads "i", "n", not "/"
    for k, given in enumerate(["in", tmp_path / "in"]):
        assert dedup_files(given, f"out{k}", threads=1)["totals"]["rows"] == 50


def test_progress_counts_against_the_input_rows_not_the_capacity(tmp_path):
    """With --capacity (filters sized for a corpus that will grow) the progress total was the
    capacity: a 3-row run reported 3 of 1,000,000,000 rows, so the CLI showed 0% and an ETA of
    hours. Parquet's row count is in its metadata; JSONL's would cost a pass, so with a
    capacity a JSONL run reports no total (and the CLI no percentage) rather than a wrong one.
    A capacity of 10**6, not 10**9: any capacity other than the row count tells the two totals
    apart, and filters sized for 10**9 documents took ~5 s a run to allocate."""
    from pipelines.progress import ProgressLine

    pq.write_table(pa.table({"text": ["a b c", "d e f", "g h i"]}), tmp_path / "a.parquet")
    (tmp_path / "b.jsonl").write_text('{"text": "x y z"}\n')
    for inputs, want in (([tmp_path / "a.parquet"], 3), ([tmp_path / "a.parquet", tmp_path / "b.jsonl"], None)):
        seen = []
        dedup_files(inputs, tmp_path / f"o{len(inputs)}", DedupConfig(capacity=10**6), progress=seen.append)
        assert {s["total_rows"] for s in seen} == {want}, seen
    line = ProgressLine("dedup")
    line.stream, line.tty = io.StringIO(), False
    line._emit({"rows": 4, "total_rows": None, "elapsed": 1.0}, final=True)
    assert line.stream.getvalue().startswith("dedup: 4 rows, "), line.stream.getvalue()


def test_a_run_completed_under_the_earlier_word_definition_is_not_taken_as_done(tmp_path):
    """The run identity records the word definition (dedup.normalize.WORDS): a run completed
    before Thai, Lao, Khmer and Myanmar code points became words by themselves (words=2)
    decided text in those scripts otherwise, so rerunning it is refused as another identity,
    naming what changed (--force redoes it), not reported 'already complete'; a killed staged
    run of it is not resumed with the new words."""
    import json

    from dedup.runs import OutputExistsError

    pq.write_table(pa.table({"text": ["中文文本的例子", "ภาษาไทย", "a b c"]}), tmp_path / "a.parquet")
    dedup_files([tmp_path / "a.parquet"], tmp_path / "o")
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["identity"]["words"] == 3
    manifest["identity"]["words"] = 2  # as a run of the earlier definition recorded it
    (tmp_path / "o" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(OutputExistsError, match="different word definition .*words=3: Thai, Lao, Khmer and Myanmar"):
        dedup_files([tmp_path / "a.parquet"], tmp_path / "o")
    assert dedup_files([tmp_path / "a.parquet"], tmp_path / "o", force=True)["identity"]["words"] == 3


def test_a_glob_takes_json_files_only_when_its_pattern_names_them(tmp_path):
    """`memdedup dedup 'corpus/*'` read the corpus's manifest.json (from `memdedup generate`) as
    a JSON-lines shard and stopped with exit 2: a glob took plain .json files, which directory
    walks skip. Now a glob takes them only when its pattern ends in .json."""
    from dedup.runs import discover

    pq.write_table(pa.table({"text": ["a b c"]}), tmp_path / "a.parquet")
    (tmp_path / "manifest.json").write_text('{"text": "not a shard"}\n')
    assert [s.name for s in discover([str(tmp_path / "*")])] == ["a.parquet"]
    assert [s.name for s in discover([str(tmp_path / "*.json")])] == ["manifest.json"]


def test_an_out_removed_mid_run_is_not_made_again_half_filled(tmp_path, monkeypatch):
    """OUT removed (by hand, by another tool) between two shards of a fused run: the next kept
    shard made OUT/kept again with every missing parent, OUT too, and the run ended 'complete'
    in a new OUT whose manifest counted the kept rows of shards no longer there. Now it fails,
    naming OUT, and OUT stays gone."""
    import shutil

    from dedup import layout

    inp = _corpus(tmp_path, n=300, shards=3)
    out, real = tmp_path / "out", layout.kept_path
    calls = []

    def kept_path_once_out_is_removed(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            shutil.rmtree(out)  # rm -r OUT, between the first shard and the second
        return real(*args, **kwargs)

    monkeypatch.setattr(layout, "kept_path", kept_path_once_out_is_removed)
    with pytest.raises(FileNotFoundError) as e:
        dedup_files([inp], out, threads=1)
    assert e.value.filename == str(out) and "removed while this run wrote it" in str(e.value)
    assert not out.exists()


def test_an_out_removed_just_before_a_directory_is_made_below_it_is_not_made_again(tmp_path, monkeypatch):
    """io.make_below checked that OUT exists, then made the directory with every missing parent: an
    OUT removed between the two (by hand, by another tool) was made again, half filled, as the
    check was meant to prevent. It now makes only the directories below OUT, one at a time."""
    import shutil
    from pathlib import Path

    from dedup import io

    out = tmp_path / "out"
    out.mkdir()
    real, calls = Path.mkdir, []

    def out_removed_first(self, *args, **kwargs):
        if not calls:
            shutil.rmtree(out)  # rm -r OUT, right after the check
        calls.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", out_removed_first)
    with pytest.raises(FileNotFoundError) as e:
        io.make_below(out, out / "kept" / "sub")
    assert e.value.filename == str(out) and "removed while this run wrote it" in str(e.value)
    assert not out.exists()


@pytest.mark.parametrize("engine", ["fused", "staged"])
def test_a_completed_run_asked_for_other_output_settings_is_refused_naming_them(tmp_path, engine):
    """A completed run rerun with another --compression (or --batch-rows) said 'already complete for these inputs
    and config' and left the zstd files, though snappy was asked for. It is now refused naming the setting, as a
    run of another config is; --force rewrites the outputs with it. Both engines (the staged one serially)."""
    import json

    from dedup.runs import OutputExistsError
    from dedup.stages import dedup_staged

    run = dedup_files if engine == "fused" else dedup_staged
    pq.write_table(pa.table({"text": ["a b c d e f", "a b c d e f", "g h i j k"]}), tmp_path / "a.parquet")
    run([tmp_path / "a.parquet"], tmp_path / "o")
    again = DedupConfig(compression="snappy", batch_rows=2)
    with pytest.raises(OutputExistsError, match=r"o holds a completed dedup run written with other batch_rows, "
                                                r"compression; use --force to rewrite it"):
        run([tmp_path / "a.parquet"], tmp_path / "o", again)
    assert pq.ParquetFile(tmp_path / "o" / "kept" / "a.parquet").metadata.row_group(0).column(0).compression == "ZSTD"
    m = run([tmp_path / "a.parquet"], tmp_path / "o", again, force=True)
    assert m["config"]["compression"] == "snappy" and json.loads((tmp_path / "o" / "manifest.json").read_text()) == m
    assert pq.ParquetFile(tmp_path / "o" / "kept" / "a.parquet").metadata.row_group(0).column(0).compression == "SNAPPY"
    assert run([tmp_path / "a.parquet"], tmp_path / "o", again) == m  # the same settings: already complete


def test_a_completed_run_asked_for_other_inputs_names_the_files_that_differ(tmp_path):
    """The refusal said 'a different inputs or index directory', leaving the user to find which of many files."""
    from dedup.runs import OutputExistsError

    for name in ("a", "b", "c"):
        pq.write_table(pa.table({"text": [f"{name} b c d e f"]}), tmp_path / f"{name}.parquet")
    dedup_files([tmp_path / "a.parquet", tmp_path / "b.parquet"], tmp_path / "o")
    pq.write_table(pa.table({"text": ["b b c d e f", "more"]}), tmp_path / "b.parquet")
    with pytest.raises(OutputExistsError, match=r"o holds a completed dedup run with different inputs \(b.parquet "
                                                r"changed, c.parquet added, a.parquet gone\); use --force"):
        dedup_files([tmp_path / "b.parquet", tmp_path / "c.parquet"], tmp_path / "o")
    # b.parquet unchanged but named by its folder beside a file of another: not 'changed' (found by the review)
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        for name in ("a", "b"):
            pq.write_table(pa.table({"text": [f"{d} {name} c d e f"]}), tmp_path / d / f"{name}.parquet")
    dedup_files([tmp_path / "x"], tmp_path / "o3")
    with pytest.raises(OutputExistsError, match=r"different inputs \(b.parquet now named x/b.parquet, y/a.parquet "
                                                r"added, a.parquet gone\)"):
        dedup_files([tmp_path / "x" / "b.parquet", tmp_path / "y" / "a.parquet"], tmp_path / "o3")

    from dedup.stages import dedup_staged

    dedup_files([tmp_path / "a.parquet"], tmp_path / "o2")
    with pytest.raises(OutputExistsError, match=r"o2 holds a completed dedup run with a different index directory "
                                                r"\(none before\)"):
        dedup_staged([tmp_path / "a.parquet"], tmp_path / "o2", index_dir=tmp_path / "i")


def test_an_empty_path_is_refused_not_read_as_the_working_directory(tmp_path, monkeypatch):
    """"" (an unset variable: os.environ.get("OUT", "")) is the working directory to pathlib: dedup_files
    wrote kept/, removed.parquet and manifest.json there, an input "" read it, and dedup_staged's
    index_dir="" was taken for no index at all (no error; rows the index holds were kept). The command
    line refuses empty paths; so does the library now, naming the argument, leaving nothing behind."""
    from dedup.stages import dedup_staged

    src = _corpus(tmp_path, n=60, shards=1)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    for run in (dedup_files, dedup_staged):
        with pytest.raises(ValueError, match="out: an empty path"):
            run([src], "")
        with pytest.raises(ValueError, match="inputs: an empty path"):
            run([src, ""], tmp_path / "o")
    with pytest.raises(ValueError, match="index directory: an empty path"):
        dedup_staged([src], tmp_path / "o", index_dir="")
    assert not list(work.iterdir()) and not (tmp_path / "o").exists()


def test_paths_given_as_bytes_are_read_as_the_file_system_names_them(tmp_path):
    """Paths as bytes (what os.listdir(b"...") gives): one input path was iterated as a sequence of ints
    ("expected str, bytes or os.PathLike object, not int"), and in a list, as out or as index_dir, pathlib
    raised a TypeError naming no argument. They are decoded as os.fsdecode does."""
    import os

    from dedup.stages import dedup_staged
    from dedup.streaming import Deduplicator

    src = _corpus(tmp_path, n=60, shards=1)
    want = dedup_files([src], tmp_path / "a")["totals"]
    assert dedup_files(os.fsencode(src), os.fsencode(tmp_path / "b"))["totals"] == want
    index = os.fsencode(tmp_path / "index")
    assert dedup_staged([os.fsencode(src)], tmp_path / "c", index_dir=index)["totals"] == want
    assert Deduplicator.load(index).documents == want["rows"]


@pytest.mark.parametrize("config", [{"threshold": 0.7}, None, 0.7], ids=["dict", "None", "float"])
def test_a_config_that_is_not_a_dedup_config_is_a_type_error_naming_it(tmp_path, config):
    """dedup_files(files, out, {"threshold": 0.7}) raised AttributeError: 'dict' object has no attribute
    'index', from inside the engine."""
    from dedup.stages import dedup_staged

    src = _corpus(tmp_path, n=60, shards=1)
    for run in (dedup_files, dedup_staged):
        with pytest.raises(TypeError, match=f"config must be a DedupConfig.*got {type(config).__name__}"):
            run([src], tmp_path / "o", config)
    assert not (tmp_path / "o").exists()


def test_files_of_others_in_out_are_left_alone_even_with_temporary_like_names(tmp_path):
    """A run deleted every '.*.tmp-*' anywhere under out (its sweep of killed writers' temporaries), so a user's
    out/.notes.tmp-backup or out/drafts/.a.tmp-old went with a successful run. Only names of the form its writers
    give temporaries (.<name>.tmp-<pid>-<12 hex digits>, earlier .<name>.tmp-<pid>) are swept now; a killed
    writer's still is."""
    from dedup.stages import dedup_staged

    src = _corpus(tmp_path, n=60, shards=1)
    for run in (dedup_files, dedup_staged):
        out = tmp_path / run.__name__
        (out / "drafts").mkdir(parents=True)
        mine = [out / ".notes.tmp-backup", out / "drafts" / ".a.tmp-old"]
        for p in mine:
            p.write_text("mine")
        (out / ".removed.parquet.tmp-42-0123456789ab").write_text("a killed writer's")
        run([src], out)
        assert all(p.read_text() == "mine" for p in mine)
        assert not (out / ".removed.parquet.tmp-42-0123456789ab").exists()


def test_removed_rows_given_a_few_at_a_time_are_written_in_work_linear_in_the_writes(tmp_path, monkeypatch):
    """removed.parquet's writer joined each write to every row pending before it, so writes of a
    row or a few (one per batch holding removals: thousands of small shards) cost work quadratic in
    their number: 20,000 one-row writes took 98 s (found by the streaming probe). Each write is now
    joined once: the rows handed to Arrow's join are counted (about n * group / 2 before), not timed;
    the same rows, in row groups of exactly REMOVED_ROW_GROUP rows (here made 1,000), the last shorter."""
    import dedup.layout
    from dedup.layout import REMOVED_SCHEMA, removed_writer

    joined, real = [], pa.concat_tables
    monkeypatch.setattr(pa, "concat_tables", lambda parts, *a, **k: joined.append(sum(p.num_rows for p in parts))
                        or real(parts, *a, **k))
    monkeypatch.setattr(dedup.layout, "REMOVED_ROW_GROUP", 1_000)
    n = 3_500
    rows = pa.Table.from_pylist([{"shard": "a.parquet", "row": i, "reason": "exact"} for i in range(n)],
                                REMOVED_SCHEMA)
    with removed_writer(tmp_path / "removed.parquet", "zstd") as write:
        for i in range(n):
            write(rows.slice(i, 1))
    written = pq.ParquetFile(tmp_path / "removed.parquet")
    assert written.read().equals(rows)
    assert [written.metadata.row_group(g).num_rows for g in range(written.num_row_groups)] == [1000] * 3 + [500]
    assert sum(joined) <= 2 * n, sum(joined)
