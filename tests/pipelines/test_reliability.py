"""One test per finding of the reliability probe (../shared/notes/reliability-findings.md,
F1-F15), through the real CLI in a subprocess, both engines where both apply.

Each finding's test failed on the code before its fix (commit bc63947), except where its
docstring says it pins a decision. Corpora are small (a few hundred rows a shard) so each
run takes about a second (fused) or a few (staged, a real local Dask cluster).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dedup.synthetic import generate_corpus, write_shards

ROOT = Path(__file__).resolve().parents[2]
STAGED = ("--engine", "staged", "--workers", "1")


def cli(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=300, start_new_session=True)


def dedup(inputs, out, *opts, env=None, ok=True) -> subprocess.CompletedProcess:
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    r = cli("dedup", *inputs, "--out", out, "--quiet", *opts, env=env)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def one_error_line(r: subprocess.CompletedProcess, *needles: str) -> str:
    assert r.returncode == 2, f"exit {r.returncode}: {r.stderr}"
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def counts(out: Path) -> list[tuple]:
    m = json.loads((out / "manifest.json").read_text())
    return [(i["shard"], i["rows"], i["kept"], i["removed"]["exact"] + i["removed"]["near"]) for i in m["inputs"]]


def files_under(d: Path) -> list[str]:
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()) if d.exists() else []


def snapshot(d: Path) -> dict[str, bytes]:
    return {f: (d / f).read_bytes() for f in files_under(d)}


@pytest.fixture(scope="module")
def gen(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("gen")
    write_shards(generate_corpus(1200, mean_bytes=300, exact_frac=0.08, near_frac=0.12, seed=1), d, 3)
    return d


def batch(tmp_path: Path, gen: Path, name: str, *parts: int) -> Path:
    d = tmp_path / name
    d.mkdir()
    for p in parts:
        shutil.copy(gen / f"part-{p:05d}.parquet", d)
    return d


def index_documents(index: Path) -> int:
    return json.loads((index / "index.json").read_text())["documents"]


# ------------------------------------------------------------------ F1: the index knows what it holds
def test_f1_feeding_a_batch_the_index_holds_is_refused_not_deleted(tmp_path, gen):
    b1, b2 = batch(tmp_path, gen, "b1", 0), batch(tmp_path, gen, "b2", 1)
    idx = tmp_path / "I"
    dedup(b1, tmp_path / "o1", "--index-dir", idx)
    dedup(b2, tmp_path / "o2", "--index-dir", idx)
    docs = index_documents(idx)
    assert docs == 800
    # the same batch again into a new OUT (a retried job, a lost OUT)
    err = one_error_line(dedup(b2, tmp_path / "o2b", "--index-dir", idx, ok=False), "part-00001.parquet",
                         "already holds")
    assert "o2b" not in os.listdir(tmp_path) or not files_under(tmp_path / "o2b"), err
    # and with --force into the same OUT: refused before the earlier outputs are touched
    before = snapshot(tmp_path / "o2")
    one_error_line(dedup(b2, tmp_path / "o2", "--index-dir", idx, "--force", ok=False), "already holds")
    assert snapshot(tmp_path / "o2") == before
    assert index_documents(idx) == docs


def test_f1_a_directory_that_grew_is_refused_naming_the_file_already_held(tmp_path, gen):
    crawl, idx = batch(tmp_path, gen, "crawl", 0), tmp_path / "I"
    dedup(crawl, tmp_path / "day1", "--index-dir", idx)
    shutil.copy(gen / "part-00001.parquet", crawl)
    one_error_line(dedup(crawl, tmp_path / "day2", "--index-dir", idx, ok=False), "part-00000.parquet", "already holds")
    assert index_documents(idx) == 400


def test_a_file_that_grew_since_the_index_took_it_is_refused(tmp_path):
    """A JSONL file the index holds, grown by appended rows (a log): its earlier rows were all
    removed as duplicates of the index's copies, exit 0 and no word (found by a probe), though a
    retried job or a directory that grew is refused. A file at a path the index took a file from
    that begins with that file's bytes is refused; one replaced by other content (a daily export
    under a fixed name) is a new file."""
    crawl, idx = tmp_path / "crawl", tmp_path / "I"
    crawl.mkdir()
    log = crawl / "log.jsonl"
    log.write_text("".join(json.dumps({"id": i, "text": f"document number {i} of the log"}) + "\n" for i in range(20)))
    dedup(crawl, tmp_path / "day1", "--index-dir", idx)
    with log.open("a") as f:
        f.write(json.dumps({"id": 20, "text": "a new document"}) + "\n")
    err = one_error_line(dedup(crawl, tmp_path / "day2", "--index-dir", idx, ok=False), str(log), "grew since")
    assert "20 rows" in err and not files_under(tmp_path / "day2") and index_documents(idx) == 20
    log.write_text("".join(json.dumps({"id": i, "text": f"another export, row {i}"}) + "\n" for i in range(5)))
    dedup(crawl, tmp_path / "day2", "--index-dir", idx)
    assert index_documents(idx) == 25


# ------------------------------------------------------------------ F2: a resume pins its index version
def _band_files(index: Path) -> dict[str, bytes]:
    cur = index / json.loads((index / "index.json").read_text())["current"]
    return {f: (cur / f).read_bytes() for f in files_under(cur)}


def test_f2_resume_after_another_run_updated_the_index_keeps_every_key(tmp_path, gen):
    b1, b2, b3 = (batch(tmp_path, gen, f"b{i + 1}", i) for i in range(3))
    idx, ref = tmp_path / "I", tmp_path / "R"
    dedup(b1, tmp_path / "o1", "--index-dir", idx, *STAGED)
    shutil.copytree(idx, ref)  # the reference's first batch: the same run's index (a second run made the same bytes)
    killed = dedup(b2, tmp_path / "o2", "--index-dir", idx, *STAGED, env={"MEMDEDUP_KILL_AT": "band:4"}, ok=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    dedup(b3, tmp_path / "o3", "--index-dir", idx, *STAGED)
    dedup(b2, tmp_path / "o2", "--index-dir", idx, *STAGED)  # the resume
    # the same index built in the order the runs completed: b1 (copied above), b3, b2
    for b, o in ((b3, "r3"), (b2, "r2")):
        dedup(b, tmp_path / o, "--index-dir", ref, *STAGED)
    assert _band_files(idx) == _band_files(ref)
    assert snapshot(tmp_path / "o2" / "kept") == snapshot(tmp_path / "r2" / "kept")
    assert index_documents(idx) == 1200


# ------------------------------------------------------------------ F3: leftovers never mix with a new run
def test_f3_fused_after_a_killed_fused_run_with_other_inputs(tmp_path, gen):
    in1, in2 = batch(tmp_path, gen, "in1", 0, 1), batch(tmp_path, gen, "in2", 2)
    out = tmp_path / "OUT"
    code = ("import os, signal, sys\nfrom dedup import dedup_files\n"
            "def p(s):\n    if s['shard'] == 2: os.kill(os.getpid(), signal.SIGKILL)\n"
            f"dedup_files([{str(in1)!r}], {str(out)!r}, progress=p)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL and (out / "kept" / "part-00000.parquet").exists()
    dedup(in2, out, "--engine", "fused")
    assert files_under(out / "kept") == ["part-00002.parquet"]


def test_f3_fused_after_a_killed_staged_run_with_other_inputs(tmp_path, gen):
    in1, in2 = batch(tmp_path, gen, "in1", 0, 1), batch(tmp_path, gen, "in2", 2)
    out = tmp_path / "OUT"
    r = dedup(in1, out, *STAGED, env={"MEMDEDUP_KILL_AT": "write:1"}, ok=False)
    # its kept shards: in its own work directory until all tasks are done (dedup.stages)
    assert r.returncode == -signal.SIGKILL and [f for f in files_under(out / "_work") if "/kept/" in f]
    dedup(in2, out, "--engine", "fused")
    assert files_under(out / "kept") == ["part-00002.parquet"]
    assert files_under(out) == ["kept/part-00002.parquet", "manifest.json", "removed.parquet"]


def test_f3_outputs_of_no_run_are_refused_not_deleted(tmp_path, gen):
    """Decision: files under OUT/kept with neither a manifest nor a run record are not
    ours to delete; the run is refused unless --force."""
    out = tmp_path / "OUT"
    (out / "kept").mkdir(parents=True)
    (out / "kept" / "mine.parquet").write_bytes(b"user data")
    one_error_line(dedup(gen, out, ok=False), "from no memdedup run")
    assert (out / "kept" / "mine.parquet").read_bytes() == b"user data"


# ------------------------------------------------------------------ F4: inputs inside --out
@pytest.mark.parametrize("engine", [("--engine", "fused"), STAGED])
def test_f4_an_input_inside_out_is_refused_and_never_deleted(tmp_path, gen, engine):
    x = tmp_path / "X" / "kept" / "x.parquet"
    x.parent.mkdir(parents=True)
    shutil.copy(gen / "part-00000.parquet", x)
    before = x.read_bytes()
    one_error_line(dedup(x, tmp_path / "X", *engine, ok=False), "inside --out")
    assert x.read_bytes() == before
    c = tmp_path / "C"
    dedup(gen, c, *engine)
    done = snapshot(c)
    one_error_line(dedup([c / "kept" / "part-00000.parquet", c / "kept" / "part-00001.parquet"], c, "--force",
                         "--threshold", "0.7", *engine, ok=False), "inside --out")
    assert snapshot(c) == done  # --force deleted nothing, read nothing


def test_f12_out_equal_to_the_input_directory_says_why(tmp_path, gen):
    d = tmp_path / "d"
    shutil.copytree(gen, d)
    one_error_line(dedup(d, d, ok=False), "inside --out")


# ------------------------------------------------------------------ F5: symlinks
def test_f5_symlinked_directories_are_followed(tmp_path, gen):
    data, more = tmp_path / "data", tmp_path / "elsewhere" / "more"
    data.mkdir()
    more.mkdir(parents=True)
    shutil.copy(gen / "part-00000.parquet", data)
    for p in (1, 2):
        shutil.copy(gen / f"part-{p:05d}.parquet", more)
    (data / "more").symlink_to(more)
    dedup(data, tmp_path / "od")
    assert [c[0] for c in counts(tmp_path / "od")] == ["more/part-00001.parquet", "more/part-00002.parquet",
                                                       "part-00000.parquet"]
    dedup(str(data / "**" / "*.parquet"), tmp_path / "og")
    assert [c[:2] for c in counts(tmp_path / "og")] == [c[:2] for c in counts(tmp_path / "od")]


@pytest.mark.parametrize("engine", [("--engine", "fused"), STAGED])
def test_f5_links_and_copies_give_the_same_decisions_and_names(tmp_path, engine):
    store, links, copies = tmp_path / "store", tmp_path / "links", tmp_path / "copies"
    for d in (store, links, copies):
        d.mkdir()
    text = "the same document text here again and again"
    pq.write_table(pa.table({"id": ["z1"], "text": [text]}), store / "zzz.parquet")
    pq.write_table(pa.table({"id": ["a1"], "text": [text]}), store / "aaa.parquet")
    (links / "000-first.parquet").symlink_to(store / "zzz.parquet")
    (links / "001-second.parquet").symlink_to(store / "aaa.parquet")
    for p in links.iterdir():
        shutil.copy(p, copies / p.name)
    dedup(links, tmp_path / "ol", *engine)
    dedup(copies, tmp_path / "oc", *engine)
    assert files_under(tmp_path / "ol" / "kept") == ["000-first.parquet", "001-second.parquet"]
    assert (tmp_path / "ol" / "removed.parquet").read_bytes() == (tmp_path / "oc" / "removed.parquet").read_bytes()
    assert pq.read_table(tmp_path / "ol" / "removed.parquet").column("id").to_pylist() == ["a1"]


# ------------------------------------------------------------------ F9, F12: damaged state, one line
@pytest.mark.parametrize("damage", ["empty", "not-json", "no-params", "stack-keys", "truncated-bloom"])
def test_f9_f12_a_damaged_index_is_named_in_one_line(tmp_path, gen, damage):
    b1, b2 = batch(tmp_path, gen, "b1", 0), batch(tmp_path, gen, "b2", 1)
    idx = tmp_path / "I"
    dedup(b1, tmp_path / "o1", "--index-dir", idx)
    meta = json.loads((idx / "index.json").read_text())
    band = idx / meta["current"] / "band-00"
    target = {"empty": idx / "index.json", "not-json": idx / "index.json", "no-params": idx / "index.json",
              "stack-keys": band / "stack.json", "truncated-bloom": band / "gen-000.bloom"}[damage]
    content = {"empty": b"", "not-json": b"{nope", "no-params": b'{"format": 1}', "stack-keys": b'{"version": 1}'}
    if damage == "truncated-bloom":
        target.write_bytes(target.read_bytes()[:100])
    else:
        target.write_bytes(content[damage])
    one_error_line(dedup(b2, tmp_path / "o2", "--index-dir", idx, ok=False), str(target.name))
    assert not files_under(tmp_path / "o2")


def test_f12_a_file_name_that_is_not_utf8_is_named(tmp_path, gen):
    d = tmp_path / "d"
    d.mkdir()
    bad = os.path.join(os.fsencode(d), b"bad\xff.parquet")
    shutil.copy(gen / "part-00000.parquet", bad)
    one_error_line(dedup(d, tmp_path / "o", ok=False), "bad\\xff.parquet", "UTF-8")


# ------------------------------------------------------------------ F9: disk full
@contextlib.contextmanager
def small_disk(path: Path, size: str):
    """``path``, a tmpfs of ``size`` (as root; else the test is skipped), unmounted afterwards."""
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and tmpfs to make a small disk")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.mark.parametrize("engine", [("--engine", "fused"), STAGED])
def test_f9_disk_full_is_one_line_and_leaves_nothing(tmp_path, engine):
    with small_disk(tmp_path / "small", "3m") as small:
        src = tmp_path / "in"
        write_shards(generate_corpus(12000, mean_bytes=1000, seed=3), src, 2)
        err = one_error_line(dedup(src, small / "out", *engine, ok=False), "No space left on device")
        assert not files_under(small / "out"), err


def test_disk_full_while_installing_an_index_version_leaves_the_index_as_it_was(tmp_path, gen):
    with small_disk(tmp_path / "small", "8m") as small:
        idx = small / "I"
        dedup(batch(tmp_path, gen, "b1", 0), tmp_path / "o1", "--index-dir", idx, *STAGED)
        before = snapshot(idx)
        free = os.statvfs(small).f_bavail * os.statvfs(small).f_frsize
        subprocess.run(["fallocate", "-l", str(free - 16384), str(small / "filler")], check=True)
        out = tmp_path / "o2"
        err = one_error_line(dedup(batch(tmp_path, gen, "b2", 1), out, "--index-dir", idx, *STAGED, ok=False),
                             "No space left on device", str(idx))
        assert "[(" not in err and not files_under(out), err
        assert snapshot(idx) == before


# ------------------------------------------------------------------ F10, F11: staged errors
def _bad_jsonl_tree(tmp_path: Path, gen: Path) -> Path:
    sb = batch(tmp_path, gen, "sb", 0, 1)
    (sb / "z.jsonl").write_text('{"text": "ok"}\n{"text": "abc')
    return sb


def test_f10_f11_staged_bad_input_is_one_line_leaves_nothing_and_the_fixed_rerun_works(tmp_path, gen):
    sb = _bad_jsonl_tree(tmp_path, gen)
    out = tmp_path / "osb"
    one_error_line(dedup(sb, out, *STAGED, ok=False), "z.jsonl", "line 2")
    assert not files_under(out)
    (sb / "z.jsonl").write_text('{"text": "ok"}\n')
    dedup(sb, out, *STAGED)
    assert [c[1] for c in counts(out)] == [400, 400, 1]


def test_f11_staged_bad_input_found_while_writing_leaves_no_kept_shards(tmp_path, gen):
    """A binary id that is not UTF-8 is only read in the write stage, for a removed row."""
    sb = batch(tmp_path, gen, "sb", 0)
    dup = pq.read_table(sb / "part-00000.parquet").column("text")[0].as_py()
    pq.write_table(pa.table({"id": pa.array([b"\xff\xfe"], pa.binary()), "text": [dup]}), sb / "z.parquet")
    out = tmp_path / "o"
    r = dedup(sb, out, *STAGED, ok=False)
    one_error_line(r, "z.parquet")
    assert not files_under(out)


# ------------------------------------------------------------------ F13, F15: engines agree on every byte
def test_f13_removed_parquet_is_byte_identical_between_engines_with_many_batches(tmp_path, gen):
    dedup(gen, tmp_path / "f", "--engine", "fused", "--batch-rows", "100")
    dedup(gen, tmp_path / "s", *STAGED, "--batch-rows", "100")
    assert snapshot(tmp_path / "f" / "kept") == snapshot(tmp_path / "s" / "kept")
    assert (tmp_path / "f" / "removed.parquet").read_bytes() == (tmp_path / "s" / "removed.parquet").read_bytes()
    mf, ms = (json.loads((tmp_path / o / "manifest.json").read_text()) for o in ("f", "s"))
    assert mf["index"]["predicted_fp"] == ms["index"]["predicted_fp"]  # F15: one formula
    assert not (tmp_path / "s" / "_work").exists()  # F15: no work directory left after success


def test_f15_hidden_files_are_skipped_and_said(tmp_path, gen):
    """Decision: directory walks skip hidden files and directories (names starting with
    '.'), and the run says how many it skipped; named explicitly, they are read."""
    d = batch(tmp_path, gen, "d", 0)
    shutil.copy(gen / "part-00001.parquet", d / ".part-1.parquet")
    r = cli("dedup", d, "--out", tmp_path / "o")
    assert r.returncode == 0 and "skipped 1 hidden file" in r.stderr, r.stderr
    assert [c[0] for c in counts(tmp_path / "o")] == ["part-00000.parquet"]
    dedup([d / "part-00000.parquet", d / ".part-1.parquet"], tmp_path / "o2")
    assert len(counts(tmp_path / "o2")) == 2


# ------------------------------------------------------------------ F14: killed between install and manifest
def test_f14_a_kill_after_the_index_install_does_not_count_documents_twice(tmp_path, gen):
    b1, b2 = batch(tmp_path, gen, "b1", 0), batch(tmp_path, gen, "b2", 1)
    idx = tmp_path / "I"
    dedup(b1, tmp_path / "o1", "--index-dir", idx, *STAGED)
    r = dedup(b2, tmp_path / "o2", "--index-dir", idx, *STAGED, env={"MEMDEDUP_KILL_AT": "installed:0"}, ok=False)
    assert r.returncode == -signal.SIGKILL, r.stderr
    # --force would start over against an index that already holds b2: refused, not deleted
    one_error_line(dedup(b2, tmp_path / "o2", "--index-dir", idx, *STAGED, "--force", ok=False), "already holds")
    dedup(b2, tmp_path / "o2", "--index-dir", idx, *STAGED)  # the resume finishes without installing twice
    assert index_documents(idx) == 800
    assert sum(c[3] for c in counts(tmp_path / "o2")) < 400  # its own rows were not removed as held


@pytest.mark.parametrize("rerun", [("other", "--index-dir", STAGED), ("other", "no index", ("--engine", "fused")),
                                   ("same", "--index-dir", (*STAGED, "--force"))])
def test_an_installed_batch_s_unfinished_outputs_are_never_cleared(tmp_path, gen, rerun):
    """A run killed after its batch entered the index, before its manifest: its outputs hold the only kept and
    removed rows of that batch (the index now refuses its files), so a rerun of another command into its OUT must
    not clear them; the run's own command, rerun, finishes it."""
    which, index, opts = rerun
    b1, b2, b3 = (batch(tmp_path, gen, f"b{i}", i - 1) for i in (1, 2, 3))
    idx, out = tmp_path / "I", tmp_path / "o2"
    dedup(b1, tmp_path / "o1", "--index-dir", idx, *STAGED)
    killed = dedup(b2, out, "--index-dir", idx, *STAGED, env={"MEMDEDUP_KILL_AT": "installed:0"}, ok=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = snapshot(out)
    again = (b3 if which == "other" else b2, out, *(("--index-dir", idx) if index == "--index-dir" else ()), *opts)
    one_error_line(dedup(*again, ok=False), str(out), "already holds", "rerun")
    assert snapshot(out) == before
    dedup(b2, out, "--index-dir", idx, *STAGED)  # the killed run's own command finishes it
    assert [c[1] for c in counts(out)] == [400] and index_documents(idx) == 800


def test_an_unreadable_index_of_an_unfinished_run_does_not_block_a_forced_rerun(tmp_path, gen):
    """Whether the index holds an unfinished run's batch cannot be told when its index.json is
    damaged: a --force rerun that does not use that index goes on, as it did before the check."""
    b2, idx, out = batch(tmp_path, gen, "b2", 1), tmp_path / "I", tmp_path / "o2"
    killed = dedup(b2, out, "--index-dir", idx, *STAGED, env={"MEMDEDUP_KILL_AT": "installed:0"}, ok=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (idx / "index.json").write_text("{")
    dedup(b2, out, "--engine", "fused", "--force")
    assert [c[1] for c in counts(out)] == [400]


# ------------------------------------------------------------------ collisions: both engines refuse alike
@pytest.mark.parametrize("engine", [("--engine", "fused"), STAGED])
def test_colliding_output_names_are_refused_by_both_engines(tmp_path, gen, engine):
    d = batch(tmp_path, gen, "d", 0)
    t = pq.read_table(d / "part-00000.parquet")
    (d / "part-00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in t.to_pylist()))
    one_error_line(dedup(d, tmp_path / "o", *engine, ok=False), "collides")
    assert not files_under(tmp_path / "o")


# ------------------------------------------------------------------ faults: SIGKILL at every stage, then rerun
def _reference(tmp_path: Path, inputs, *opts) -> dict[str, bytes]:
    ref = tmp_path / "reference"
    dedup(inputs, ref, *opts)
    return snapshot(ref)


def _without_manifest(snap: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in snap.items() if k != "manifest.json"}


@pytest.mark.parametrize("kill_at", ["sketch:1", "band:3", "write:1", "finalize:0"])
@pytest.mark.parametrize("rerun", ["other-inputs", "force"])
def test_staged_sigkill_then_rerun_with_other_inputs_or_force(tmp_path, gen, kill_at, rerun):
    in1, in2 = batch(tmp_path, gen, "in1", 0, 1), batch(tmp_path, gen, "in2", 2)
    out = tmp_path / "OUT"
    killed = dedup(in1, out, *STAGED, env={"MEMDEDUP_KILL_AT": kill_at}, ok=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    again = in2 if rerun == "other-inputs" else in1
    dedup(again, out, *STAGED, *(("--force",) if rerun == "force" else ()))
    assert _without_manifest(snapshot(out)) == _without_manifest(_reference(tmp_path, again, *STAGED))


@pytest.mark.parametrize("rerun", ["same", "other-inputs", "force"])
def test_fused_sigkill_then_rerun(tmp_path, gen, rerun):
    in1, in2 = batch(tmp_path, gen, "in1", 0, 1), batch(tmp_path, gen, "in2", 2)
    out = tmp_path / "OUT"
    code = ("import os, signal\nfrom dedup import dedup_files\n"
            "def p(s):\n    if s['shard'] == 2: os.kill(os.getpid(), signal.SIGKILL)\n"
            f"dedup_files([{str(in1)!r}], {str(out)!r}, progress=p)\n")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == -signal.SIGKILL
    again = in2 if rerun == "other-inputs" else in1
    dedup(again, out, "--engine", "fused", *(("--force",) if rerun == "force" else ()))
    assert _without_manifest(snapshot(out)) == _without_manifest(_reference(tmp_path, again, "--engine", "fused"))


@pytest.mark.parametrize("kill_at", ["sketch:1", "band:3", "write:1", "finalize:0", "installed:0"])
def test_index_dir_sigkill_at_each_stage_then_rerun(tmp_path, gen, kill_at):
    b1, b2 = batch(tmp_path, gen, "b1", 0), batch(tmp_path, gen, "b2", 1, 2)
    idx, ref = tmp_path / "I", tmp_path / "R"
    dedup(b1, tmp_path / "first", "--index-dir", idx, *STAGED)
    shutil.copytree(idx, ref)  # the reference starts from the same index (a second run of b1 made the same bytes)
    killed = dedup(b2, tmp_path / "o2", "--index-dir", idx, *STAGED, env={"MEMDEDUP_KILL_AT": kill_at}, ok=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    dedup(b2, tmp_path / "o2", "--index-dir", idx, *STAGED)
    dedup(b2, tmp_path / "r2", "--index-dir", ref, *STAGED)
    assert _without_manifest(snapshot(tmp_path / "o2")) == _without_manifest(snapshot(tmp_path / "r2"))
    assert _band_files(idx) == _band_files(ref) and index_documents(idx) == index_documents(ref) == 1200


# ------------------------------------------------------------------ JSON that Parquet cannot hold
@pytest.mark.parametrize("engine", [("--engine", "fused"), STAGED])
def test_a_jsonl_field_that_is_always_an_empty_object_is_one_line_and_leaves_nothing(tmp_path, engine):
    """`"meta": {}` on every line is an Arrow struct without fields, which Parquet cannot write:
    a traceback (exit 1) before, and the staged engine left `_work/` and `kept/` behind."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.jsonl").write_text("".join(json.dumps({"id": i, "text": f"doc {i % 2} here", "meta": {}}) + "\n"
                                       for i in range(4)))
    out = tmp_path / "o"
    one_error_line(dedup(d, out, *engine, ok=False), "a.jsonl", "'meta'")
    assert not files_under(out)
    dedup(d, out, *engine, "--emit", "removed")  # no kept shard to write: nothing to refuse
    assert counts(out) == [("a.jsonl", 4, 2, 2)]


@pytest.mark.parametrize("depth", [60, 3000])
def test_jsonl_nested_deeper_than_parquet_reads_is_one_line_not_an_unreadable_kept_shard(tmp_path, depth):
    """A line nested 60 lists deep gave a kept shard pyarrow cannot open ("Parquet schema too
    deeply nested"); 3,000 deep, a RecursionError traceback."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.jsonl").write_text('{"text": "alpha beta"}\n'
                               '{"text": "gamma delta", "x": ' + "[" * depth + "]" * depth + "}\n")
    one_error_line(dedup(d, tmp_path / "o", "--engine", "fused", ok=False), "a.jsonl", "'x'", "nested")
    assert not files_under(tmp_path / "o")
    (d / "a.jsonl").write_text('{"text": "alpha beta", "x": ' + "[" * 40 + "]" * 40 + "}\n")  # deep but readable
    dedup(d, tmp_path / "o", "--engine", "fused")
    assert pq.read_table(tmp_path / "o" / "kept" / "a.parquet").num_rows == 1


@pytest.mark.parametrize("engine", [("--engine", "fused"), STAGED])
@pytest.mark.parametrize("bracket", ["[]", '{}'])
def test_jsonl_nested_too_deep_for_arrows_parser_is_one_line_naming_it_and_leaves_nothing(tmp_path, engine, bracket):
    """A line nested 30,000 levels deep crashed pyarrow's JSON reader (SIGSEGV: the fused engine exited 139
    with no message and left `_work/run.json` behind)."""
    d = tmp_path / "in"
    d.mkdir()
    depth = 30_000
    value = "[" * depth + "]" * depth if bracket == "[]" else '{"k": ' * depth + "1" + "}" * depth
    (d / "a.jsonl").write_text('{"text": "alpha beta"}\n{"text": "gamma delta", "x": ' + value + "}\n")
    one_error_line(dedup(d, tmp_path / "o", *engine, ok=False), "a.jsonl", "line 2", "nested")
    assert not files_under(tmp_path / "o")


def test_a_gzip_stream_padded_with_zero_bytes_is_read_alike_by_both_engines(tmp_path):
    """Zero bytes after a .jsonl.gz's gzip stream (zcat ignores them) made both engines refuse it
    ('unreadable: zlib inflate failed: unknown compression method'); a damaged stream stays one line."""
    d = tmp_path / "in"
    d.mkdir()
    good = gzip.compress(b'{"id":1,"text":"a b c"}\n{"id":2,"text":"a b c"}\n')
    (d / "a.jsonl.gz").write_bytes(good + b"\0" * 512)
    dedup(d, tmp_path / "f", "--engine", "fused")
    dedup(d, tmp_path / "s", *STAGED)
    assert _without_manifest(snapshot(tmp_path / "f")) == _without_manifest(snapshot(tmp_path / "s"))
    assert pq.read_table(tmp_path / "f" / "kept" / "a.parquet").to_pylist() == [{"id": 1, "text": "a b c"}]
    (d / "a.jsonl.gz").write_bytes(good[:30] + b"\xff" + good[31:])
    for out, engine in (("f2", ("--engine", "fused")), ("s2", STAGED)):
        one_error_line(dedup(d, tmp_path / out, *engine, ok=False), "a.jsonl.gz", "unreadable")
        assert not files_under(tmp_path / out)


# ------------------------------------------------------------------ Dask cluster options
@pytest.mark.parametrize("opts", [("--workers", "0"), ("--workers", "-1"), ("--engine", "staged", "--workers", "0"),
                                  ("--workers", "1", "--threads-per-worker", "0"),
                                  ("--workers", "1", "--threads-per-worker", "-1")])
def test_a_cluster_size_below_one_is_one_line_and_writes_nothing(tmp_path, gen, opts):
    """`--workers 0` silently ran the fused engine (or a cluster of one worker per core with
    `--engine staged`), `--workers -1` hung, `--threads-per-worker 0` ran, and
    `--threads-per-worker -1` was an 88-line traceback (exit 1)."""
    out = tmp_path / "o"
    one_error_line(dedup(gen, out, *opts, ok=False), opts[-2], ">= 1")
    assert not files_under(out)


@pytest.mark.parametrize("content", [None, "{not json", '{"type": "Scheduler"}'])
def test_a_scheduler_file_that_is_missing_or_not_one_is_one_line_and_leaves_nothing(tmp_path, gen, content):
    """A --scheduler file that does not exist made the run wait forever (distributed polls for
    it; now it waits as long as Dask's connect timeout, 1 s here); one that is not JSON or has
    no address was an AssertionError traceback (exit 1) that left `_work/run.json` behind."""
    sched = tmp_path / "scheduler.json"
    if content is not None:
        sched.write_text(content)
    out = tmp_path / "o"
    r = cli("dedup", gen, "--out", out, "--quiet", "--scheduler", sched,
            env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"})
    one_error_line(r, str(sched))
    assert not files_under(out)


def test_a_task_that_kills_every_worker_it_runs_on_is_one_line_and_the_rerun_resumes(tmp_path, gen):
    """Dask gives up on a task after it killed 4 workers (out of memory, a crashing library):
    that was distributed's KilledWorker traceback (33 lines, exit 1), after the INFO lines of
    the workers the nannies restarted."""
    import threading

    marker, out = tmp_path / "kill-marker", tmp_path / "OUT"
    stop = threading.Event()

    def rearm() -> None:  # every attempt of every task finds no marker, creates it and dies
        while not stop.is_set():
            marker.unlink(missing_ok=True)
            stop.wait(0.05)

    t = threading.Thread(target=rearm)
    t.start()
    try:
        r = dedup(gen, out, "--engine", "staged", "--workers", "2", env={"MEMDEDUP_KILL_WORKER_ONCE": str(marker)},
                  ok=False)
    finally:
        stop.set()
        t.join()
    # The error is one line, and the last: closing the cluster while a nanny restarts a worker
    # can make that process print distributed's own "ConnectionPool is closed" traceback first.
    assert r.returncode == 2 and r.stderr.splitlines()[-1].startswith("memdedup dedup: error: "), r.stderr
    assert "KilledWorker" not in r.stderr and " INFO " not in r.stderr, r.stderr
    assert "dying" in r.stderr and "rerun to resume" in r.stderr
    assert (out / "_work" / "run.json").exists() and not (out / "manifest.json").exists()
    dedup(gen, out, *STAGED)  # resumes
    assert _without_manifest(snapshot(out)) == _without_manifest(_reference(tmp_path, gen, "--engine", "fused"))


# ------------------------------------------------------------------ Ctrl-C and SIGTERM
_STOPPED = {signal.SIGINT: (130, "memdedup dedup: interrupted"), signal.SIGTERM: (143, "memdedup dedup: terminated")}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_fused_ctrl_c_or_sigterm_mid_run_is_one_line_leaves_nothing_and_the_rerun_is_the_same(tmp_path, gen, sig):
    """SIGTERM (kill, scancel, Slurm's time limit, Snakemake stopping its jobs) killed a fused run outright
    before: exit -15, no message, `_work/run.json` and temporaries left in OUT. Now it stops as Ctrl-C does:
    one line, exit 143 (130), OUT cleared; the rerun writes the same bytes."""
    inp, out = batch(tmp_path, gen, "in", 0, 1), tmp_path / "OUT"
    code = ("import os, sys\nimport dedup.layout as layout\nfrom pipelines.cli import main\n"
            "write = layout.write_verdicts\n"
            f"def stop(*a, **k):\n    write(*a, **k)\n    os.kill(os.getpid(), {int(sig)})\n"  # after a batch's rows
            "layout.write_verdicts = stop\n"
            f"sys.exit(main(['dedup', {str(inp)!r}, '--out', {str(out)!r}, '--quiet', '--batch-rows', '100']))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert (r.returncode, r.stderr.strip()) == _STOPPED[sig], r.stderr
    assert files_under(out) == []
    dedup(inp, out, "--engine", "fused")
    assert _without_manifest(snapshot(out)) == _without_manifest(_reference(tmp_path, inp, "--engine", "fused"))


@pytest.mark.parametrize("sig, to_group", [(signal.SIGINT, True), (signal.SIGTERM, False), (signal.SIGTERM, True)])
def test_staged_ctrl_c_or_sigterm_is_one_line_stops_the_workers_and_the_rerun_resumes(tmp_path, gen, sig, to_group):
    """Ctrl-C reaches the terminal's whole process group: each Dask worker printed its KeyboardInterrupt
    tracebacks (dozens of lines). SIGTERM to memdedup alone killed it outright (exit -15, no line), its
    workers running on as orphans. Now: one line, exit 130 (143), no process of the run left, the
    finished tasks kept; the rerun resumes and writes what a clean run writes."""
    inp, out, hold = batch(tmp_path, gen, "in", 0, 1, 2), tmp_path / "OUT", tmp_path / "held"
    p = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "dedup", str(inp), "--out", str(out), "--quiet",
                          "--engine", "staged", "--workers", "2"], cwd=ROOT, start_new_session=True, text=True,
                         env={**os.environ, "MEMDEDUP_HOLD_TASK_ONCE": str(hold)}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (hold.exists() and hold.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hold.exists(), "no task was held"
        time.sleep(0.5)  # the other worker's tasks run on
        (os.killpg if to_group else os.kill)(p.pid, sig)
        _, err = p.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
    assert (p.returncode, err.strip()) == _STOPPED[sig], err
    deadline = time.monotonic() + 15  # a worker still exiting (shown as '[python]', its memory already released)
    while True:  # leaves within moments on a loaded machine; an orphaned worker stays
        ps = subprocess.run(["ps", "-s", str(p.pid), "-o", "stat=,pid=,args="], capture_output=True, text=True).stdout
        left = [line for line in ps.splitlines() if not line.lstrip().startswith("Z")]  # zombies: exited, not reaped
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left == [], f"processes of the run left: {left}"
    assert (out / "_work" / "run.json").exists() and not (out / "manifest.json").exists()
    dedup(inp, out, *STAGED)
    assert _without_manifest(snapshot(out)) == _without_manifest(_reference(tmp_path, inp, "--engine", "fused"))


def test_staged_sigterm_while_the_local_cluster_starts_is_one_line(tmp_path, gen):
    """A SIGTERM while Dask started the local cluster interrupted Dask's own start: exit 143, but after 28 lines of
    its tracebacks ('AssertionError: Status.init', at exit too). Now it is held until the cluster is up. The
    signal comes from another process, as kill and scancel send it (any thread of ours may receive it)."""
    inp, out = batch(tmp_path, gen, "in", 0), tmp_path / "OUT"
    code = ("import os, subprocess, sys\nimport distributed\nfrom pipelines.cli import main\n"
            "start = distributed.LocalCluster\n"
            "def starting(*a, **k):\n"
            "    subprocess.Popen(['sh', '-c', f'sleep 0.3; kill -TERM {os.getpid()}'])\n    return start(*a, **k)\n"
            "distributed.LocalCluster = starting\n"
            f"sys.exit(main(['dedup', {str(inp)!r}, '--out', {str(out)!r}, '--quiet', *{STAGED!r}]))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       start_new_session=True)
    assert (r.returncode, r.stderr.strip()) == _STOPPED[signal.SIGTERM], r.stderr
    dedup(inp, out, *STAGED)
    assert _without_manifest(snapshot(out)) == _without_manifest(_reference(tmp_path, inp, "--engine", "fused"))


# ------------------------------------------------------------------ an input written while it is read
@pytest.mark.parametrize("engine", ["fused", "staged"])
def test_an_input_that_grows_while_it_is_read_is_one_line_and_leaves_nothing(tmp_path, engine):
    """A JSONL file appended to during the run (a writer still at work in the input folder): a traceback, exit 1,
    'RuntimeError: internal error: ...a.jsonl: read 12 rows, file has 10' (staged: '12 rows now, 10 when
    sketched (input changed?)'). Now exit 2, one line naming the file and saying it changed. (A file of one
    piece is parsed once: what it held then is what the run reads.)"""
    inp, out = tmp_path / "in", tmp_path / "OUT"
    inp.mkdir()
    (inp / "a.jsonl").write_text("".join(json.dumps({"text": f"document {i} of the corpus here"}) + "\n"
                                         for i in range(10)))
    grow = f"open({str(inp / 'a.jsonl')!r}, 'a').write('{{\"text\": \"late\"}}\\n' * 2)"
    if engine == "fused":  # after the first pass (rows counted), before the second (rows read); pieces of 64 bytes:
        hook = ("import dedup.shards as s\ns.JSONL_CHUNK_BYTES = 64\nbatches = s.ShardReader.batches\n"  # 2 passes
                f"def late(self, *a, **k):\n    {grow}\n    return batches(self, *a, **k)\n"
                "s.ShardReader.batches = late\n")
    else:  # after the sketch stage, before the write stage
        hook = ("import pipelines.staged as st\nkill_point = st._kill_point\n"
                f"def late(label, done):\n    if (label, done) == ('sketch', 1):\n        {grow}\n"
                "st._kill_point = late\n")
    _refused_as_changed(inp, out, hook, engine)
    assert counts(out) == [("a.jsonl", 12, 11, 1)]


def _refused_as_changed(inp: Path, out: Path, hook: str, engine: str) -> None:
    """A run of ``engine`` with ``hook`` (Python code changing ``inp/a.jsonl`` mid-run) is one line saying the file
    changed and leaves nothing; the rerun completes."""
    workers = ", '--workers', '1'" if engine == "staged" else ""  # refused with the fused engine
    code = (f"import sys\nfrom pipelines.cli import main\n{hook}"
            f"sys.exit(main(['dedup', {str(inp)!r}, '--out', {str(out)!r}, '--quiet', '--engine', {engine!r}"
            f"{workers}]))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       start_new_session=True)
    one_error_line(r, str(inp / "a.jsonl"), "changed while")
    assert files_under(out) == []
    dedup(inp, out, "--engine", engine, *(["--workers", "1"] if engine == "staged" else []))


def test_a_staged_input_rewritten_between_its_stages_with_as_many_rows_is_named(tmp_path):
    """The staged engine reads a file twice, in the sketch and in the write stage: a file rewritten in between with
    as many rows (a writer replacing it) had the verdicts of the rows it held at the sketch applied to the rows it
    held at the write, exit 0 (rows kept or removed as duplicates of nothing). Now the write stage checks that the
    file is the one sketched (size, modification time, inode): exit 2, one line naming it, nothing left."""
    inp, out = tmp_path / "in", tmp_path / "OUT"
    inp.mkdir()
    lines = ["document {i} of the corpus here", "document {i} of the corpus HERE"]  # the same size: not the check
    (inp / "a.jsonl").write_text("".join(json.dumps({"text": lines[0].format(i=i % 5)}) + "\n" for i in range(10)))
    rewrite = (f"open({str(inp / 'a.jsonl')!r}, 'w').write(''.join(json.dumps({{'text': {lines[1]!r}.format(i=i)}}) "
               "+ '\\n' for i in range(10)))")
    hook = ("import json, pipelines.staged as st\n"
            f"def late(label, done):\n    if (label, done) == ('sketch', 1):\n        {rewrite}\n"
            "st._kill_point = late\n")
    _refused_as_changed(inp, out, hook, "staged")
    assert counts(out) == [("a.jsonl", 10, 10, 0)]


@pytest.mark.parametrize("closed, opts", [(2, ()), (1, ("--json",)), (2, STAGED)])
def test_a_run_with_stdout_or_stderr_closed_completes(tmp_path, gen, closed, opts):
    """Started with stderr closed (`2>&-`, as some job runners do), the run stopped at its first progress line: exit
    1, no message (none could be shown), nothing written; with `--json >&-`, a traceback ('NoneType' object has no
    attribute 'flush'). What it would print now goes nowhere, and the run completes. (Staged passed before.)"""
    inp, out = batch(tmp_path, gen, "in", 0), tmp_path / "OUT"
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "dedup", str(inp), "--out", str(out), *opts],
                       cwd=ROOT, capture_output=closed == 1, timeout=300, preexec_fn=lambda: os.close(closed),
                       env={**os.environ, "MEMDEDUP_PROGRESS_DELAY": "0"})
    assert r.returncode == 0
    assert _without_manifest(snapshot(out)) == _without_manifest(_reference(tmp_path, inp, "--engine", "fused"))
