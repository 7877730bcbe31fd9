"""Bad flag values stop a command with one line on stderr naming what the user typed, and exit
status 2, as every other error of the command line (README: "The command line"); config errors
say the value they refuse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit.config import ProfileConfig, TrainConfig
from dedup.config import DedupConfig

from .conftest import assert_one_error_line

ROOT = Path(__file__).resolve().parents[2]


def cli(*args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MEMDEDUP_PROGRESS_DELAY"}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


@pytest.mark.parametrize("args, prefix, needles", [
    (["dedup", "in/", "--out", "o", "--threshold", "abc"], "memdedup dedup", ["--threshold", "'abc'"]),
    (["dedup", "in/", "--out", "o", "--num-perm", "1.5"], "memdedup dedup", ["--num-perm", "'1.5'"]),
    (["dedup", "in/", "--out", "o", "--unit", "foo"], "memdedup dedup", ["--unit", "'foo'"]),
    (["dedup", "in/", "--out", "o", "--treshold", "0.7"], "memdedup dedup", ["--treshold"]),
    (["dedup", "in/"], "memdedup dedup", ["--out"]),
    (["params", "--docs", "many"], "memdedup params", ["--docs", "'many'"]),
    (["generate", "--out", "o", "--format", "csv"], "memdedup generate", ["--format", "'csv'"]),
    (["audit", "--model", "m", "--corpus", "c", "--out", "o", "-n", "x"], "memdedup audit", ["-n", "'x'"]),
    (["dedupe"], "memdedup", ["'dedupe'"]),
    # an option of the command given before it: named by the top-level parser, where it was refused (before:
    # 'memdedup dedup: error: unrecognized arguments: --quiet', whose --help lists --quiet)
    (["--quiet", "dedup", "in/", "--out", "o"], "memdedup", ["--quiet", "after the command"]),
    ([], "memdedup", ["COMMAND"]),
])
def test_a_flag_the_parser_refuses_is_one_line_and_exit_2(args, prefix, needles):
    """argparse printed its multi-line usage before the error (failed before): now one line,
    pointing at --help."""
    r = cli(*args)
    assert_one_error_line(r, prefix, *needles, "--help")


@pytest.mark.parametrize("flags, needles", [
    (["--docs", "-5"], ["--docs", "-5"]),
    (["--shards", "0"], ["--shards", "0"]),
    (["--doc-bytes", "0"], ["--doc-bytes", "0"]),
    (["--exact-frac", "2"], ["--exact-frac", "2"]),
    (["--near-frac", "-1"], ["--near-frac", "-1"]),
    (["--exact-frac", "0.6", "--near-frac", "0.6"], ["--exact-frac", "--near-frac"]),
    (["--canaries", "--canaries-per-repeat", "-1"], ["--canaries-per-repeat", "-1"]),
    (["--seed", "-1"], ["--seed", "-1"]),
])
def test_generate_errors_name_the_flags(tmp_path, flags, needles):
    """The errors named the library's parameters (n_docs, mean_bytes, n_shards: failed before),
    not the flags given; nothing is written."""
    r = cli("generate", "--out", tmp_path / "g", *flags)
    assert_one_error_line(r, "memdedup generate", *needles)
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize("cls, values, needles", [
    (TrainConfig, {"seq_len": 4}, ["seq_len", "4"]),
    (TrainConfig, {"n_layer": 0}, ["n_layer", "0"]),
    (TrainConfig, {"holdout": 1.5}, ["holdout", "1.5"]),
    (TrainConfig, {"epochs": 0}, ["epochs", "0"]),
    (TrainConfig, {"batch_size": -2}, ["batch_size", "-2"]),
    (ProfileConfig, {"n_treated": 0}, ["n_treated", "0"]),
    (ProfileConfig, {"n_control": 2}, ["n_control", "2"]),
    (ProfileConfig, {"min_cohort_size": 0}, ["min_cohort_size", "0"]),
    (ProfileConfig, {"n_per_cohort": -3}, ["n_per_cohort", "-3"]),
    # a rate whose per-band share underflows to 0 was refused later as 'false-positive rate ... got 0.0'
    (DedupConfig, {"fp": 5e-324}, ["fp must be in [1e-300, 1)", "5e-324"]),
    (DedupConfig, {"exact_fp": 1e-310}, ["exact_fp must be in [1e-300, 1)", "1e-310"]),
])
def test_config_errors_say_the_value_they_refuse(cls, values, needles):
    """Some checks named the rule but not the value given (failed before): the others say it."""
    with pytest.raises(ValueError) as e:
        cls(**values)
    message = str(e.value)
    assert "got" in message, message
    for n in needles:
        assert n in message, message



def test_dedup_progress_line_separates_its_eta_as_the_other_progress_lines_do(monkeypatch):
    """dedup's line ran "... removed 5 exact + 7 near ETA 19s" (failed before) where train's and
    audit's read "..., ETA 19s"."""
    import io

    from pipelines.progress import ProgressLine

    monkeypatch.setenv("MEMDEDUP_PROGRESS_DELAY", "0")
    line = ProgressLine("dedup")
    line.stream, line.tty = io.StringIO(), False
    line({"rows": 100, "total_rows": 2000, "shard": 1, "shards": 2, "bytes": 10**5, "elapsed": 1.0,
          "removed_exact": 5, "removed_near": 7})
    assert line.stream.getvalue() == ("dedup: 100/2,000 rows (5.0%), shard 1/2, 100 rows/s, 0.1 MB/s, "
                                      "removed 5 exact + 7 near, ETA 19s\n")


@pytest.mark.parametrize("args, needles", [
    (["dedup", "{inp}", "--out", ""], ["--out"]),
    (["dedup", "", "--out", "{out}"], ["INPUT"]),
    (["dedup", "{inp}", "--out", "{out}", "--engine", "staged", "--workers", "1", "--index-dir", ""], ["--index-dir"]),
    (["dedup", "{inp}", "--out", "{out}", "--config", ""], ["--config"]),
])
def test_an_empty_path_is_refused_not_read_as_the_working_directory(tmp_path, args, needles):
    """`--out "$OUT"` with OUT unset wrote the run into the working directory, `--index-dir ""` put index.json
    and v-000001/ there, and an input "" deduplicated every shard under it (Path("") is "."): failed before."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cwd = tmp_path / "cwd"
    for d in (tmp_path / "in", cwd):
        d.mkdir()
        pq.write_table(pa.table({"text": ["a b c d e f", "a b c d e f", "x y z"]}), d / "a.parquet")
    args = [a.format(inp=tmp_path / "in", out=tmp_path / "out") for a in args]
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, cwd=cwd,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert_one_error_line(r, f"memdedup {args[0]}", *needles, "empty path")
    assert sorted(p.name for p in cwd.iterdir()) == ["a.parquet"] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("engine", ["fused", "staged"])
def test_an_out_that_is_a_dangling_link_names_where_it_points(tmp_path, engine):
    """`--out d` where d is a symbolic link to a directory that does not exist (a removed scratch volume) said only
    'd: File exists', as if d held something. Now the line says it is a link and names its missing target."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"text": ["a b c d e f", "x y z"]}), tmp_path / "in" / "a.parquet")
    (tmp_path / "d").symlink_to(tmp_path / "gone")
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "dedup", str(tmp_path / "in"), "--out",
                        str(tmp_path / "d"), "--engine", engine, *(["--workers", "1"] if engine == "staged" else [])],
                       capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert_one_error_line(r, "memdedup dedup", str(tmp_path / "d"), "symbolic link", str(tmp_path / "gone"))
    assert not (tmp_path / "gone").exists()


@pytest.mark.parametrize("command", ["audit", "train", "profile", "report", "check"])
def test_an_out_that_is_a_file_says_so(tmp_path, capsys, command):
    """An output directory that is a file was refused naming '<out>/.memdedup-running: Not a directory', a
    marker file the user never made (found by the CLI probe); now the line says what dedup's does, and the
    file is left as it was."""
    from pipelines.cli import main

    out = tmp_path / "out"
    out.write_text("mine")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "a b c d e f"}\n')
    assert main(_argv_into(command, out, corpus)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    why = (": not a directory (give the workflow's output directory, config 'out')" if command == "check" else
           " exists and is not a directory; choose another output directory")  # check reads it: nothing to choose
    assert len(err) == 1 and err[0] == f"memdedup {command}: error: {out}{why}", err
    assert out.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "out"]


def _argv_into(command: str, out: Path, corpus: Path) -> list[str]:
    """``command``'s arguments writing into ``out`` (its inputs beside ``corpus``, which need not exist)."""
    d = corpus.parent
    return {"dedup": ["dedup", str(corpus), "--out", str(out)],
            "generate": ["generate", "--out", str(out), "--docs", "5"],
            "audit": ["audit", "--model", str(d / "m"), "--corpus", str(corpus), "--out", str(out)],
            "train": ["train", str(corpus), "--out", str(out)],
            "profile": ["profile", "--run", str(d / "run"), "--out", str(out)],
            "report": ["report", str(d / "a"), "--out", str(out)],
            "check": ["check", str(out)]}[command]


@pytest.mark.parametrize("command", ["dedup", "generate", "audit", "train", "profile", "report", "check"])
def test_an_out_that_is_not_utf8_is_named(tmp_path, capsys, command):
    """An output directory whose name is not UTF-8 (b'o\\xffx') failed where Arrow or the tokenizer first wrote
    there, in a line naming no path ("'utf-8' codec can't encode character '\\udcff' in position 1: surrogates not
    allowed"), and train left it behind holding train_config.json (found by the CLI probe). Now refused before
    anything is written, naming it."""
    from pipelines.cli import main

    out = tmp_path / os.fsdecode(b"o\xffx")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "a b c d e f"}\n')
    assert main(_argv_into(command, out, corpus)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "o\\xffx" in err[0] and "not valid UTF-8" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]
