"""End-to-end tests of ``memdedup dedup`` (and ``params``): the real CLI in a subprocess.

The corpus is built by hand with planted duplicates whose sources are known:

* ``b*``: unrelated 300-word documents (random words over a large vocabulary);
* ``x*``: exact duplicates (same canonical text: case, punctuation and whitespace differ);
* ``n*``: near duplicates (one word of a 300-word document changed, Jaccard ~0.97);
* ``z*``: null text (always kept); ``e*``: texts without words (``""``, whitespace,
  punctuation), whose canonical texts are all equal, so every one after the first is exact.

Canonical order is the input files sorted by path, rows in file order.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import string
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq
import pytest

from .conftest import assert_one_error_line

ROOT = Path(__file__).resolve().parents[2]
REMOVED_COLUMNS = ["id", "shard", "row", "reason", "band", "duplicate_of", "duplicate_of_shard", "duplicate_of_row"]


# ------------------------------------------------------------------------------ helpers


def cli(*args: str | os.PathLike, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m pipelines.cli ARGS`` (the installed ``memdedup`` entry point's target)."""
    full_env = {k: v for k, v in os.environ.items() if k != "MEMDEDUP_PROGRESS_DELAY"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *map(str, args)],
        capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=300,
    )


def dedup(inputs, out: Path, *opts: str, env: dict | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    r = cli("dedup", *inputs, "--out", out, *opts, env=env)
    if ok:
        assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Write rows as Parquet or JSON Lines (plain, .gz, .zst) after ``path``'s suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        schema = pa.schema([(k, pa.string()) for k in rows[0]]) if rows else pa.schema([("id", pa.string()), ("text", pa.string())])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
        return path
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    elif path.name.endswith(".zst"):
        with pa.CompressedOutputStream(str(path), "zstd") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def read_input(path: Path) -> pa.Table:
    if path.suffix == ".parquet":
        return pq.read_table(path)
    comp = "gzip" if path.name.endswith(".gz") else "zstd" if path.name.endswith(".zst") else None
    with pa.input_stream(str(path), compression=comp) as f:
        return pj.read_json(f)


def removed_of(out: Path) -> pa.Table:
    return pq.read_table(out / "removed.parquet")


def manifest_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def decisions(out: Path) -> list[tuple]:
    """(id, row, reason) of every removed row, in canonical order."""
    t = removed_of(out)
    return list(zip(t.column("id").to_pylist(), t.column("row").to_pylist(), t.column("reason").to_pylist()))


def removed_ids(out: Path) -> dict[str, str]:
    t = removed_of(out)
    return dict(zip(t.column("id").to_pylist(), t.column("reason").to_pylist()))


def files_under(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) if out.exists() else []


def assert_nothing_left(out: Path) -> None:
    """A failed run leaves no manifest, no kept shards, no temporary files."""
    assert files_under(out) == [], files_under(out)


# ------------------------------------------------------------------------------ corpus


def _corpus() -> tuple[list[dict], dict[str, str], dict[str, set[str]]]:
    """(rows in canonical order, expected reason per removed id, acceptable earlier ids)."""
    rng = random.Random(20240611)
    vocab = sorted({"".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 10))) for _ in range(20000)})
    base = [[rng.choice(vocab) for _ in range(300)] for _ in range(24)]

    def text(words: list[str]) -> str:
        return " ".join(words)

    def variant(words: list[str], how: int) -> str:
        """Same canonical text, different raw text."""
        if how == 0:
            return "  ".join(w.upper() if i % 3 == 0 else w for i, w in enumerate(words)) + " !!"
        if how == 1:
            return "\n".join(", ".join(words[i : i + 7]) + "." for i in range(0, len(words), 7))
        return "\t" + text(words).title() + " ...  "

    def one_word_changed(words: list[str], pos: int) -> str:
        w = list(words)
        w[pos] = "zzzchanged"
        return text(w)

    b = {f"b{i:02d}": base[i] for i in range(24)}
    rows: list[dict] = []
    expect: dict[str, str] = {}
    sources: dict[str, set[str]] = {}

    def add(id_: str, t: str | None, reason: str | None = None, src: set[str] | None = None) -> None:
        rows.append({"id": id_, "text": t})
        if reason:
            expect[id_] = reason
            sources[id_] = src or set()

    # file 0 (rows 0-11)
    for i in range(4):
        add(f"b{i:02d}", text(b[f"b{i:02d}"]))
    add("x01", variant(b["b01"], 0), "exact", {"b01"})
    add("b04", text(b["b04"]))
    add("n02", one_word_changed(b["b02"], 150), "near", {"b02"})
    add("b05", text(b["b05"]))
    add("z00", None)
    for i in (6, 7, 8):
        add(f"b{i:02d}", text(b[f"b{i:02d}"]))
    # file 1 (rows 12-23)
    add("b09", text(b["b09"]))
    add("x00", variant(b["b00"], 1), "exact", {"b00"})
    add("b10", text(b["b10"]))
    add("b11", text(b["b11"]))
    add("e00", "")
    add("b12", text(b["b12"]))
    add("n09", one_word_changed(b["b09"], 7), "near", {"b09"})
    add("b13", text(b["b13"]))
    add("x05", text(b["b05"]), "exact", {"b05"})  # byte-identical
    add("b14", text(b["b14"]))
    add("b15", text(b["b15"]))
    add("z01", None)
    # file 2 (rows 24-35)
    add("b16", text(b["b16"]))
    add("b17", text(b["b17"]))
    add("x12", variant(b["b12"], 2), "exact", {"b12"})
    add("b18", text(b["b18"]))
    add("n04", one_word_changed(b["b04"], 299), "near", {"b04"})
    add("b19", text(b["b19"]))
    add("xx0", variant(b["b00"], 0), "exact", {"b00", "x00"})  # exact duplicate of an exact duplicate
    add("e01", "  \t ", "exact", {"e00"})
    add("b20", text(b["b20"]))
    add("e02", "?!", "exact", {"e00", "e01"})
    add("b21", text(b["b21"]))
    add("z02", None)
    assert len(rows) == 36
    return rows, expect, sources


ROWS, EXPECT, SOURCES = _corpus()
SPLIT = [ROWS[0:12], ROWS[12:24], ROWS[24:36]]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def three(work: Path) -> Path:
    """The corpus as three Parquet files (part-00000..part-00002) in a directory."""
    d = work / "three"
    for k, part in enumerate(SPLIT):
        write_rows(d / f"part-{k:05d}.parquet", part)
    return d


@pytest.fixture(scope="module")
def main_run(work: Path, three: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """The reference run: lshbloom, 2 threads, progress shown at once."""
    out = work / "out-main"
    r = dedup(three, out, "--threads", "2", env={"MEMDEDUP_PROGRESS_DELAY": "0"})
    return out, r


# ------------------------------------------------------------------ the reference run


def test_output_layout_and_schemas(main_run, three: Path):
    out, _ = main_run
    assert files_under(out) == [
        "kept/part-00000.parquet",
        "kept/part-00001.parquet",
        "kept/part-00002.parquet",
        "manifest.json",
        "removed.parquet",
    ]
    rem = removed_of(out)
    assert rem.column_names == REMOVED_COLUMNS
    types = dict(zip(rem.schema.names, rem.schema.types))
    assert types["row"] == pa.int64() and types["duplicate_of_row"] == pa.int64()
    assert pa.types.is_integer(types["band"])
    for c in ("id", "shard", "reason", "duplicate_of", "duplicate_of_shard"):
        assert types[c] == pa.string(), c
    for k in range(3):
        src = pq.read_table(three / f"part-{k:05d}.parquet")
        kept = pq.read_table(out / "kept" / f"part-{k:05d}.parquet")
        assert kept.schema.equals(src.schema, check_metadata=False)


def test_kept_equals_input_minus_removed_in_order(main_run, three: Path):
    out, _ = main_run
    rem = removed_of(out)
    seen_pairs = set()
    for k in range(3):
        name = f"part-{k:05d}.parquet"
        src = pq.read_table(three / name)
        mine = rem.filter(pc.equal(rem.column("shard"), name))
        rows = mine.column("row").to_pylist()
        assert rows == sorted(rows) and len(set(rows)) == len(rows)
        assert all(0 <= r < src.num_rows for r in rows)
        # the removed row's id is the input's id at (shard, row)
        assert mine.column("id").to_pylist() == [src.column("id")[r].as_py() for r in rows]
        keep_mask = pa.array([i not in set(rows) for i in range(src.num_rows)])
        kept = pq.read_table(out / "kept" / name)
        assert kept.equals(src.filter(keep_mask))
        assert kept.num_rows + len(rows) == src.num_rows
        seen_pairs.update((name, r) for r in rows)
    assert len(seen_pairs) == rem.num_rows  # every removed row points at a real, distinct (shard, row)
    assert set(rem.column("shard").to_pylist()) <= {f"part-{k:05d}.parquet" for k in range(3)}


def test_reasons_and_bands_are_consistent(main_run):
    out, _ = main_run
    rem = removed_of(out).to_pylist()
    bands = manifest_of(out)["index"]["plan"]["bands"]
    assert rem, "nothing removed"
    for r in rem:
        assert r["reason"] in ("exact", "near")
        if r["reason"] == "exact":
            assert r["band"] is None, r
        else:
            assert r["band"] is not None and 0 <= r["band"] < bands, r
        # Bloom-filter indexes cannot name the earlier row
        assert r["duplicate_of"] is None and r["duplicate_of_shard"] is None and r["duplicate_of_row"] is None


def test_planted_duplicates_are_found(main_run):
    out, _ = main_run
    got = removed_ids(out)
    assert got == EXPECT
    assert {i for i, why in got.items() if why == "near"} == {"n02", "n09", "n04"}
    # unrelated documents and null texts are all kept
    kept = set()
    for p in sorted((out / "kept").glob("*.parquet")):
        kept.update(pq.read_table(p).column("id").to_pylist())
    assert kept == {r["id"] for r in ROWS} - set(EXPECT)
    assert {"z00", "z01", "z02", "e00"} <= kept and all(f"b{i:02d}" in kept for i in range(22))


def test_manifest(main_run, three: Path):
    out, _ = main_run
    m = manifest_of(out)
    cfg = m["config"]
    assert (cfg["threshold"], cfg["num_perm"], cfg["ngram"], cfg["fp"], cfg["index"]) == (0.8, 128, 5, 1e-5, "lshbloom")
    assert (cfg["text_column"], cfg["id_column"]) == ("text", "id")
    assert m["index"]["plan"]["bands"] == 9 and m["index"]["plan"]["rows"] == 13
    inputs = m["inputs"]
    assert [i["shard"] for i in inputs] == [f"part-{k:05d}.parquet" for k in range(3)]
    assert [i["rows"] for i in inputs] == [12, 12, 12]
    assert [i["null_text"] for i in inputs] == [1, 1, 1]
    rem = removed_of(out)
    for i in inputs:
        # the invariant: kept + removed = input rows, per file
        assert i["kept"] + i["removed"]["exact"] + i["removed"]["near"] == i["rows"]
        assert i["rows"] == pq.ParquetFile(three / i["shard"]).metadata.num_rows
        assert i["kept"] == pq.read_table(out / "kept" / i["shard"]).num_rows
        mine = rem.filter(pc.equal(rem.column("shard"), i["shard"])).column("reason").to_pylist()
        assert (mine.count("exact"), mine.count("near")) == (i["removed"]["exact"], i["removed"]["near"])
    t = m["totals"]
    assert t["shards"] == 3
    assert t["rows"] == sum(i["rows"] for i in inputs) == len(ROWS)
    assert t["kept"] == sum(i["kept"] for i in inputs) == len(ROWS) - len(EXPECT)
    for why in ("exact", "near"):
        assert t["removed"][why] == sum(i["removed"][why] for i in inputs) == list(EXPECT.values()).count(why)
    assert t["null_text"] == sum(i["null_text"] for i in inputs) == 3
    assert t["kept"] + t["removed"]["exact"] + t["removed"]["near"] == t["rows"]
    idx = m["index"]
    assert idx["backend"] == "lshbloom"
    assert idx["bytes"]["bands"] > 0 and idx["bytes"]["exact"] > 0
    assert 0 <= idx["predicted_fp"] < 1e-3
    tm = m["timing"]
    assert tm["wall_s"] > 0 and tm["docs_per_s"] > 0
    assert set(tm["phases"]) >= {"read", "sketch", "index", "write"}
    for ph in tm["phases"].values():
        assert ph["s"] >= 0 and "docs_per_s" in ph
    for lib in ("python", "numpy", "numba", "pyarrow"):
        assert m["versions"][lib]


def test_progress_line_and_summary(main_run):
    _, r = main_run
    assert "rows/s" in r.stderr and "MB/s" in r.stderr
    assert "36 rows in 3 shard(s)" in r.stdout


def test_success_leaves_no_temporary_files(main_run):
    out, _ = main_run
    assert not [p for p in out.rglob(".*")]


# ------------------------------------------------------- same decisions, other layouts


def test_formats_give_identical_decisions(main_run, work: Path):
    out_main, _ = main_run
    ref = None
    for fmt in ("parquet", "jsonl", "jsonl.gz", "jsonl.zst"):
        src = write_rows(work / f"fmt-{fmt.replace('.', '-')}" / f"all.{fmt}", ROWS)
        out = work / f"out-fmt-{fmt}"
        dedup(src, out)
        got = decisions(out)
        assert {i: why for i, _, why in got} == EXPECT, fmt
        ref = ref or got
        assert got == ref, fmt
        assert removed_of(out).column("shard").to_pylist() == [src.name] * len(got)
        # kept: the input's schema and rows, in order, minus the removed ones
        table = read_input(src)
        gone = {row for _, row, _ in got}
        kept = pq.read_table(out / "kept" / "all.parquet")
        assert kept.schema.equals(table.schema, check_metadata=False), fmt
        assert kept.equals(table.filter(pa.array([i not in gone for i in range(table.num_rows)]))), fmt
        assert manifest_of(out)["inputs"][0]["format"] == ("parquet" if fmt == "parquet" else "jsonl")
    # one file and three files in the same canonical order: same ids removed, same reasons
    assert removed_ids(out_main) == {i: why for i, _, why in ref}


def test_threads_do_not_change_the_result(main_run, work: Path, three: Path):
    out_main, _ = main_run
    out = work / "out-threads-1"
    r = dedup(three, out, "--threads", "1")
    assert (out / "removed.parquet").read_bytes() == (out_main / "removed.parquet").read_bytes()
    for k in range(3):
        name = f"kept/part-{k:05d}.parquet"
        assert pq.read_table(out / name).equals(pq.read_table(out_main / name))
    # a run shorter than the default delay (2 s) prints no progress line
    assert "rows/s" not in r.stderr


def test_lsh_names_the_earlier_duplicate_and_backends_agree(main_run, work: Path, three: Path):
    out_main, _ = main_run
    out = work / "out-lsh"
    dedup(three, out, "--index", "lsh")
    m = manifest_of(out)
    assert m["index"]["backend"] == "lsh"
    order = [(f"part-{k:05d}.parquet", i) for k in range(3) for i in range(12)]
    pos = {p: n for n, p in enumerate(order)}
    by_id = {r["id"]: r for r in ROWS}
    rem = removed_of(out).to_pylist()
    assert {r["id"]: r["reason"] for r in rem} == EXPECT
    for r in rem:
        assert r["duplicate_of"] is not None, r
        assert r["duplicate_of"] in SOURCES[r["id"]], r
        earlier = (r["duplicate_of_shard"], r["duplicate_of_row"])
        assert pos[earlier] < pos[(r["shard"], r["row"])]
        k, i = pos[earlier] // 12, pos[earlier] % 12
        assert SPLIT[k][i]["id"] == r["duplicate_of"]
        if r["reason"] == "exact":
            from dedup.normalize import canonical_text

            assert canonical_text(by_id[r["id"]]["text"]) == canonical_text(by_id[r["duplicate_of"]]["text"])
    out_pb = work / "out-pybloom"
    dedup(three, out_pb, "--index", "pybloom")
    assert manifest_of(out_pb)["index"]["backend"] == "pybloom"
    assert removed_ids(out_pb) == removed_ids(out) == removed_ids(out_main)


# ------------------------------------------------------------------ ids and null text


def test_file_without_id_column_gives_null_ids(work: Path):
    rows = [{"text": r["text"]} for r in ROWS[:12]]
    src = work / "noid" / "data.jsonl"
    write_rows(src, rows)
    out = work / "out-noid"
    dedup(src, out, "--index", "lsh")
    rem = removed_of(out).to_pylist()
    assert [(r["row"], r["reason"]) for r in rem] == [(4, "exact"), (6, "near")]
    assert all(r["id"] is None and r["duplicate_of"] is None for r in rem)
    # the lsh backend still names the earlier row by position
    assert [(r["duplicate_of_shard"], r["duplicate_of_row"]) for r in rem] == [("data.jsonl", 1), ("data.jsonl", 2)]
    m = manifest_of(out)
    assert m["totals"]["null_text"] == 1 and m["totals"]["kept"] == 10
    kept = pq.read_table(out / "kept" / "data.parquet")
    assert kept.column_names == ["text"]
    assert kept.column("text").null_count == 1


def test_explicit_missing_id_column_is_an_error(work: Path, three: Path):
    out = work / "out-idcol"
    r = dedup(three, out, "--id-column", "missing", ok=False)
    assert_one_error_line(r, "memdedup dedup", str(three / "part-00000.parquet"), "'missing'")
    assert_nothing_left(out)


# --------------------------------------------------------------------------- bad input


def _bad_inputs(d: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (CLI inputs, strings the message must contain)."""
    good = write_rows(d / "good" / "a.parquet", SPLIT[0])
    cases: dict[str, tuple[list[str], list[str]]] = {}

    p = write_rows(d / "notext" / "b.parquet", [{"id": "1", "body": "hello world"}])
    cases["missing text column"] = ([good, p], [str(p), "text"])

    p = d / "inttext" / "b.parquet"
    p.parent.mkdir(parents=True)
    pq.write_table(pa.table({"id": ["1", "2"], "text": [1, 2]}), p)
    cases["non-string text column"] = ([good, p], [str(p), "int64"])

    p = d / "garbage" / "b.parquet"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"PAR1" + b"\x00garbage" * 100)
    cases["garbage parquet"] = ([good, p], [str(p), "corrupt"])

    p = d / "truncated" / "b.parquet"
    p.parent.mkdir(parents=True)
    raw = good.read_bytes()
    p.write_bytes(raw[: len(raw) * 2 // 3])
    cases["truncated parquet"] = ([good, p], [str(p), "corrupt"])

    # invalid JSON on line 4 of the SECOND file: the first is fully processed first
    first = write_rows(d / "badline" / "part-0.jsonl", SPLIT[0])
    second = d / "badline" / "part-1.jsonl"
    lines = [json.dumps(r) for r in SPLIT[1]]
    lines[3] = '{"id": "broken", "text": "no closing quote}'
    second.write_text("\n".join(lines) + "\n")
    cases["invalid JSONL line in the second file"] = ([d / "badline"], [str(second), "line 4"])

    p = d / "badutf8" / "part-1.jsonl"
    p.parent.mkdir(parents=True)
    p.write_bytes(b'{"id": "1", "text": "fine"}\n\n{"id": "2", "text": "bad \xff\xfe bytes"}\n')
    cases["invalid UTF-8 in JSONL text"] = ([first, p], [str(p), "line 3", "UTF-8"])

    p = d / "badgz" / "b.jsonl.gz"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"not gzip")
    cases["corrupt .jsonl.gz"] = ([good, p], [str(p)])

    p = d / "mixed" / "b.jsonl"
    p.parent.mkdir(parents=True)
    p.write_text('{"text": "words"}\n{"text": 5}\n')
    cases["JSONL text that is not a string"] = ([first, p], [str(p), "line 2"])

    missing = d / "does-not-exist.parquet"
    cases["nonexistent path"] = ([good, missing], [str(missing), "no such file"])

    pattern = str(d / "good" / "*.jsonl.zst")
    cases["glob matching nothing"] = ([good, pattern], [pattern])

    p = d / "collide"
    write_rows(p / "a.parquet", SPLIT[0])
    write_rows(p / "a.jsonl", SPLIT[1])
    cases["output name collision"] = ([p], [str(p / "a.parquet"), str(p / "a.jsonl"), "collides"])
    return cases


def test_bad_inputs_exit_2_with_one_message_and_leave_nothing(work: Path):
    d = work / "bad"
    failures = []
    for n, (name, (inputs, needles)) in enumerate(_bad_inputs(d).items()):
        out = work / f"out-bad-{n}"
        r = dedup(inputs, out, ok=False)
        try:
            assert_one_error_line(r, "memdedup dedup", *needles)
            assert_nothing_left(out)
        except AssertionError as e:
            failures.append(f"{name}: {e}")
    assert not failures, "\n".join(failures)


def test_null_text_is_kept_not_dropped(main_run):
    out, _ = main_run
    nulls = 0
    for p in (out / "kept").glob("*.parquet"):
        nulls += pq.read_table(p).column("text").null_count
    assert nulls == 3 == manifest_of(out)["totals"]["null_text"]
    assert not {"z00", "z01", "z02"} & set(removed_ids(out))


# ------------------------------------------------------------------------------ --force


def test_rerun_needs_force(work: Path):
    d = work / "force-in"
    a = write_rows(d / "a.parquet", SPLIT[0])
    b = write_rows(d / "b.parquet", SPLIT[1])
    out = work / "out-force"
    dedup([a, b], out)
    before = (out / "manifest.json").read_bytes()
    assert files_under(out) == ["kept/a.parquet", "kept/b.parquet", "manifest.json", "removed.parquet"]

    # the same command again: a no-op that says so
    r = dedup([a, b], out)
    assert "already complete" in r.stdout + r.stderr
    assert (out / "manifest.json").read_bytes() == before

    # another config into the completed OUT: an error naming what differs
    r = dedup([a, b], out, "--threshold", "0.7", ok=False)
    assert_one_error_line(r, "memdedup dedup", str(out), "threshold", "--force")
    assert (out / "manifest.json").read_bytes() == before

    # --force whose inputs fail their checks leaves the completed run as it was
    write_rows(d / "a.jsonl", SPLIT[2])  # kept/a.parquet would collide
    r = dedup([d], out, "--force", ok=False)
    assert_one_error_line(r, "memdedup dedup", "collides")
    assert (out / "manifest.json").read_bytes() == before
    assert files_under(out) == ["kept/a.parquet", "kept/b.parquet", "manifest.json", "removed.parquet"]

    # --force replaces the run: outputs of inputs no longer given disappear
    dedup([a], out, "--force")
    assert files_under(out) == ["kept/a.parquet", "manifest.json", "removed.parquet"]
    m = manifest_of(out)
    assert (out / "manifest.json").read_bytes() != before
    assert [i["shard"] for i in m["inputs"]] == ["a.parquet"] and m["totals"]["rows"] == 12
    assert set(removed_of(out).column("shard").to_pylist()) == {"a.parquet"}


def test_out_that_is_a_file_is_refused_with_one_line(work: Path):
    a = write_rows(work / "file-out-in" / "a.parquet", SPLIT[0])
    target = work / "not-a-dir"
    target.write_text("keep me")
    r = dedup([a], target, ok=False)
    assert_one_error_line(r, "memdedup dedup", str(target), "not a directory")
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("engine", ["fused", "staged"])
@pytest.mark.parametrize("force", [[], ["--force"]])
def test_out_holding_another_stages_output_is_refused_even_with_force(work: Path, engine, force):
    """--out of an audit (or train, report) output said it 'holds a completed dedup run with a different config
    (band_key, bands, ... differ); use --force', and --force then replaced the audit's manifest.json with the
    dedup's, beside the audit's per_sequence.parquet (found by the CLI probe). The other stages refuse so: one
    line naming the stage, nothing touched."""
    a = write_rows(work / f"stage-in-{engine}{force}" / "a.parquet", SPLIT[0])
    out = work / f"an-audit-{engine}{force}"
    out.mkdir()
    (out / "manifest.json").write_text('{"stage": "audit"}')
    (out / "summary.json").write_text("{}")
    r = dedup([a], out, "--engine", engine, *(["--workers", "1"] if engine == "staged" else []), *force, ok=False)
    assert_one_error_line(r, "memdedup dedup", f"--out {out} holds an audit output")
    assert files_under(out) == ["manifest.json", "summary.json"]
    assert (out / "manifest.json").read_text() == '{"stage": "audit"}'


def test_cluster_flags_with_the_fused_engine_are_refused(tmp_path):
    """`--engine fused --workers 2` (or `--scheduler ...`) ran fused and said nothing, the cluster flag
    silently dropped, while `--engine fused --index-dir` and `--band-splits` were refused: now one line
    and exit 2 for each, before anything is written."""
    src = write_rows(tmp_path / "in" / "a.parquet", [{"id": "1", "text": "one two three four five six"}])
    for flag, value in (("--workers", "2"), ("--scheduler", "tcp://127.0.0.1:8786")):
        r = dedup([src], tmp_path / "out", "--engine", "fused", flag, value, ok=False)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and f"{flag} needs the staged engine" in lines[0], r.stderr
        assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- params


def test_band_splits_flag_is_checked_in_one_line(tmp_path):
    src = write_rows(tmp_path / "in" / "a.parquet", [{"id": "1", "text": "one two three four five six"}])
    for opts, message in ((["--band-splits", "0"], "--band-splits must be >= 1, got 0"),
                          (["--band-splits", "2", "--engine", "fused"], "--band-splits needs the staged engine"),
                          (["--band-splits", "2", "--index-dir", str(tmp_path / "idx")],
                           "--band-splits needs a run without --index-dir")):
        r = dedup([src], tmp_path / "out", *opts, ok=False)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], r.stderr
        assert not (tmp_path / "out").exists() and not (tmp_path / "idx").exists()


def test_params_prints_the_plan_for_people_and_as_json_with_json():
    r = cli("params", "--threshold", "0.8", "--num-perm", "128", "--docs", "10000000", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["bands"] == 9 and plan["rows"] == 13 and plan["band_parts"] > 1
    assert plan["threshold"] == 0.8 and plan["num_perm"] == 128 and plan["capacity"] == 10_000_000
    human = cli("params", "--threshold", "0.8", "--num-perm", "128", "--docs", "10000000")
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert lines[0] == "memdedup params for 10,000,000 documents"
    assert any(line.split()[:2] == ["banding", "9"] and "13 rows" in line for line in lines)
    mib = plan["band_bits"] / 8 / 2**20
    assert any(line.startswith("  band filters") and f"9 x {mib:.1f} MiB" in line
               and f"{plan['band_parts']:,} cache parts" in line for line in lines)
    assert any(line.strip().startswith("P(candidate)") for line in lines)
    from dedup.scalable import CHUNK_BYTES_PER_KEY, TASK_BASE_BYTES, chunk_keys

    from dedup.params import bloom_parts

    bits = max(plan["band_bits"], plan["exact_bits"])  # the exact key's task is a band-stage task too
    chunk = min(chunk_keys(bloom_parts(bits)), plan["capacity"])
    assert plan["band_task_bytes"] == bits // 8 + chunk * CHUNK_BYTES_PER_KEY + TASK_BASE_BYTES
    assert any(line.startswith("  band task memory") for line in lines)
    for bad in ("0", "-5"):
        r = cli("params", "--docs", bad)
        assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"memdedup params: error: --docs must be >= 1, got {bad}"]


def test_params_band_task_memory_covers_the_exact_key_task():
    """The exact key is one of the band stage's tasks, with a filter of its own rate (--exact-fp), yet
    "band task memory" counted the band filter only: 4.2 GiB at 10^9 documents with --exact-fp 1e-12,
    whose exact-key task holds a 6.7 GiB filter (found by the params probe). The larger of the two now."""
    r = cli("params", "--docs", "1000000000", "--exact-fp", "1e-12", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["exact_bits"] > plan["band_bits"] and plan["band_task_bytes"] > plan["exact_bits"] // 8


def test_params_with_capacity_gives_bytes_per_document_of_the_docs_for_bands_and_exact_key_alike():
    """With --capacity, both filters' "bytes/document" are per document of --docs, as dedup's
    summary and manifest give them per input row (the band filters' figure was per capacity
    document, the exact-key filter's per --docs document)."""
    r = cli("params", "--docs", "1000000000", "--capacity", "100000000", "--json")
    plan = json.loads(r.stdout)
    lines = cli("params", "--docs", "1000000000", "--capacity", "100000000").stdout.splitlines()
    band = next(line for line in lines if line.startswith("  band filters"))
    exact = next(line for line in lines if line.startswith("  exact-key filter"))
    assert f"({plan['index_bytes'] / 1e9:.1f} bytes/document)" in band, band
    assert f"({plan['exact_bits'] / 8 / 1e9:.1f} bytes/document)" in exact, exact


def test_params_with_capacity_says_at_how_many_documents_each_false_positive_rate_holds():
    """With --capacity, the per-band rate is the filters' target at their capacity and the
    whole-index rate the prediction at --docs: the line says so for both (it gave the first
    bare, beside the second "at 1,000,000,000 documents")."""
    lines = cli("params", "--docs", "1000000000", "--capacity", "100000000").stdout.splitlines()
    fp = next(line for line in lines if line.startswith("  false positives"))
    assert "whole index at 1,000,000,000 documents (targets 1.11e-06 and 1e-05 at 100,000,000 documents, " \
           "--capacity)" in fp, fp
    plain = cli("params", "--docs", "1000000000").stdout.splitlines()
    assert "  false positives   1.11e-06 per band, 1e-05 whole index at 1,000,000,000 documents (targets 1.11e-06 " \
           "and 1e-05)" in plain, plain


def test_params_gives_the_per_band_rate_it_predicts_beside_the_whole_index_rate():
    """At one document the filters are a word each (64 bits, far below their target): the line gave the per-band
    target, 1.11e-06, beside a whole-index prediction of 3.98e-13, which 9 bands of 1.11e-06 cannot give."""
    fp = next(line for line in cli("params", "--docs", "1").stdout.splitlines() if line.startswith("  false"))
    band, whole = (float(x) for x in re.findall(r"([0-9.e+-]+) (?:per band|whole index)", fp))
    assert band < whole < 9 * band * 1.01, fp
    assert fp.endswith("whole index at 1 document (targets 1.11e-06 and 1e-05)"), fp


def test_emit_flag_and_config_key(tmp_path):
    """``--emit removed`` on the command line, or ``emit: removed`` in the YAML ``dedup:``
    section: no kept shards; a bad value is one line and exit 2."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.cli import main

    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["a b c d e f", "A b c d e f!", "x y z"]}),
                   tmp_path / "in.parquet")
    assert main(["dedup", str(tmp_path / "in.parquet"), "--out", str(tmp_path / "o1"), "--threads", "1", "--quiet",
                 "--emit", "removed"]) == 0
    assert not (tmp_path / "o1" / "kept").exists() and (tmp_path / "o1" / "removed.parquet").exists()
    (tmp_path / "c.yaml").write_text("dedup:\n  emit: removed\n")
    assert main(["dedup", str(tmp_path / "in.parquet"), "--out", str(tmp_path / "o2"), "--threads", "1", "--quiet",
                 "--config", str(tmp_path / "c.yaml"), "--engine", "staged", "--workers", "1"]) == 0
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == ["manifest.json", "removed.parquet"]
    (tmp_path / "bad.yaml").write_text("dedup:\n  emit: kept\n")
    assert main(["dedup", str(tmp_path / "in.parquet"), "--out", str(tmp_path / "o3"), "--quiet",
                 "--config", str(tmp_path / "bad.yaml")]) == 2


def test_emit_removed_summary_names_only_what_was_written(tmp_path, capsys):
    """The summary's ``outputs:`` line names the files the run wrote: with ``--emit removed``
    there is no ``kept/`` directory, so it is not named."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.cli import main

    pq.write_table(pa.table({"id": ["a", "b"], "text": ["a b c d e f", "A b c d e f!"]}), tmp_path / "in.parquet")
    for emit, out in (("removed", tmp_path / "o1"), ("all", tmp_path / "o2")):
        assert main(["dedup", str(tmp_path / "in.parquet"), "--out", str(out), "--threads", "1", "--emit", emit]) == 0
        line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("outputs: ")]
        named = [s.strip() for s in line[0][len("outputs: "):].split(",")]
        assert named == ([f"{out}/kept/"] if emit == "all" else []) + [f"{out}/removed.parquet", f"{out}/manifest.json"]
        assert all(Path(n).exists() for n in named)


# ------------------------------------- an earlier run's output inside the inputs is not read as input


def test_an_earlier_runs_output_inside_the_input_folder_is_skipped_and_said(tmp_path: Path):
    """`memdedup dedup data --out data/run1`, then `--out data/run2`: the second walk read run1's
    kept shards and removed.parquet as inputs and failed (exit 2: removed.parquet has no text
    column). A folder holding a stage's manifest, or the run record of a killed run, is an
    earlier memdedup output: walks and globs skip it and say so; named explicitly, it is read."""
    data = tmp_path / "data"
    rows = [{"id": str(i), "text": f"document {i % 7} about the weather in town number {i % 7}"} for i in range(20)]
    write_rows(data / "a.parquet", rows)
    dedup(data, data / "run1")
    (data / "killed" / "_work").mkdir(parents=True)  # a killed run: its run record, a kept shard
    (data / "killed" / "_work" / "run.json").write_text("{}")
    write_rows(data / "killed" / "kept" / "a.parquet", rows[:3])
    r = dedup(data, data / "run2", "--json")
    assert (data / "run2" / "kept" / "a.parquet").read_bytes() == (data / "run1" / "kept" / "a.parquet").read_bytes()
    assert manifest_of(data / "run2")["totals"]["rows"] == 20
    assert "skipped 2 folder(s) written by an earlier memdedup run" in r.stderr and "killed, run1" in r.stderr, r.stderr
    r = dedup(str(data / "**" / "*.parquet"), data / "run3", "--json")  # what a ** reaches, as a walk
    assert manifest_of(data / "run3")["totals"]["rows"] == 20, r.stderr
    assert "skipped 3 folder(s) written by an earlier memdedup run" in r.stderr, r.stderr
    dedup(data / "run1" / "kept", tmp_path / "again")  # named: read
    assert manifest_of(tmp_path / "again")["totals"]["rows"] == manifest_of(data / "run1")["totals"]["kept"] == 7
    dedup(str(data / "run[12]" / "kept" / "*.parquet"), tmp_path / "both")  # named by the pattern: read
    assert manifest_of(tmp_path / "both")["totals"]["rows"] == 14
    r = dedup(str(data / "**" / "kept" / "*.parquet"), tmp_path / "none", ok=False)  # all skipped: says why
    assert_one_error_line(r, "memdedup dedup", "glob matches no", "skipped 4 folder(s) written by an earlier", "run1")


def test_a_killed_audit_stages_output_inside_the_input_folder_is_skipped_and_said(tmp_path: Path):
    """An audit stage (audit, train, profile, report) killed before its manifest left its outputs in
    a folder no walk could tell from data: `--out data/audit1`, killed, then `memdedup dedup data`
    read data/audit1/per_sequence.parquet as an input (exit 2, no text column). A stage marks its
    --out while it runs; walks skip a marked folder and say so. A stage that fails before writing
    anything leaves no folder behind; a failed rerun keeps a killed run's mark, a completed one
    (manifest written) removes it."""
    data = tmp_path / "data"
    rows = [{"id": str(i), "text": f"document {i % 7} about the weather in town number {i % 7}"} for i in range(20)]
    write_rows(data / "a.parquet", rows)
    script = """if True:
        import os, signal, sys
        from pathlib import Path
        import pyarrow as pa, pyarrow.parquet as pq
        from audit.layout import holding_out
        from dedup.io import write_stage_manifest

        @holding_out("out")
        def stage(out, how):
            if how == "done":
                return write_stage_manifest(Path(out), "audit", {})
            if how == "fail":
                raise ValueError("bad input")
            pq.write_table(pa.table({"doc_id": ["x"], "extractable": [True]}), f"{out}/per_sequence.parquet")
            os.kill(os.getpid(), signal.SIGKILL)

        stage(sys.argv[1], sys.argv[2])
    """
    killed = subprocess.run([sys.executable, "-c", script, str(data / "audit1"), "kill"], cwd=ROOT)
    assert killed.returncode == -9 and (data / "audit1" / "per_sequence.parquet").exists()
    failed = subprocess.run([sys.executable, "-c", script, str(data / "audit2"), "fail"],
                            cwd=ROOT, capture_output=True)
    assert failed.returncode == 1 and not (data / "audit2").exists()
    r = dedup(data, tmp_path / "run", "--json")
    assert manifest_of(tmp_path / "run")["totals"]["rows"] == 20
    assert "skipped 1 folder(s) written by an earlier memdedup run" in r.stderr and "audit1" in r.stderr, r.stderr
    assert ".memdedup-running" in r.stderr, r.stderr  # the note names what marked it (it named only two others)
    mark = data / "audit1" / ".memdedup-running"
    again = subprocess.run([sys.executable, "-c", script, str(data / "audit1"), "fail"], cwd=ROOT, capture_output=True)
    assert again.returncode == 1 and mark.exists()  # a refused rerun: the killed run's files are still unfinished
    done = subprocess.run([sys.executable, "-c", script, str(data / "audit1"), "done"], cwd=ROOT, capture_output=True)
    assert done.returncode == 0 and not mark.exists() and (data / "audit1" / "manifest.json").exists(), done.stderr
