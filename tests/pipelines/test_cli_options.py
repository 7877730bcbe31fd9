"""The command line generated from the config dataclasses: one flag per exposed field, help
showing the dataclass's own default, flags > YAML > defaults, unknown keys, ``--json``, and
README's configuration reference equal to what the code declares."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import typing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from audit.config import AuditConfig, ProfileConfig, TrainConfig
from dedup.config import DedupConfig
from dedup.io import write_stage_manifest
from pipelines.cli import SECTIONS, _parser
from pipelines.config import from_args, reference

from .conftest import assert_one_error_line

ROOT = Path(__file__).resolve().parents[2]
# 3 shards of 4 rows: one exact duplicate (case and punctuation), one null text
ROWS = [{"id": f"r{i}", "text": t} for i, t in enumerate(
    ["the cat sat on the mat today", "dogs bark at night in the town", "The CAT sat on the mat, today!",
     "a quick brown fox jumps over it", None, "rain falls on the plain in spain", "one two three four five six",
     "lorem ipsum dolor sit amet consectetur", "seven eight nine ten eleven twelve", "all is well that ends well",
     "to be or not to be that is", "the end of the corpus is here"])]
SPLIT = [ROWS[0:4], ROWS[4:8], ROWS[8:12]]


def cli(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m pipelines.cli ARGS`` (the ``memdedup`` entry point's target)."""
    full_env = {k: v for k, v in os.environ.items() if k != "MEMDEDUP_PROGRESS_DELAY"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=full_env, timeout=300)


def write_shards(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    for k, part in enumerate(SPLIT):
        pq.write_table(pa.Table.from_pylist(part, schema=schema), d / f"part-{k}.parquet")
    return d


def manifest_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def files_under(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) if out.exists() else []


# command -> its config class; params takes dedup's options
COMMANDS = {"dedup": DedupConfig, "params": DedupConfig, "audit": AuditConfig, "train": TrainConfig,
            "profile": ProfileConfig}
# the smallest valid command line of each (before the options under test)
MINIMAL = {"dedup": ["dedup", "in/", "--out", "o"], "params": ["params"],
           "audit": ["audit", "--model", "m", "--corpus", "c", "--out", "o"], "train": ["train", "in/", "--out", "o"],
           "profile": ["profile", "--run", "r", "--out", "o"]}


def subparser(command: str) -> argparse.ArgumentParser:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def is_bool(cls: type, f: dataclasses.Field) -> bool:
    return typing.get_type_hints(cls)[f.name] is bool


# ------------------------------------------------------------------ one flag per field


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_exposed_field_has_exactly_one_flag_whose_help_shows_the_dataclass_default(command):
    cls = COMMANDS[command]
    actions = subparser(command)._actions
    for f in dataclasses.fields(cls):
        mine = [a for a in actions if a.dest == f.name]
        if not f.metadata.get("cli", True):
            assert mine == [], f"{command}: {f.name} is not exposed but has {mine[0].option_strings}"
            continue
        assert len(mine) == 1, f"{command}: {f.name} has {len(mine)} flags"
        a = mine[0]
        long = "--" + f.name.replace("_", "-")
        assert long in a.option_strings, (f.name, a.option_strings)  # today's flag names keep working
        if is_bool(cls, f):
            assert a.option_strings[-2:] == [long, "--no-" + long[2:]], a.option_strings
        assert a.default is None  # so an absent flag never overrides the YAML file
        assert f.metadata.get("help"), f"{f.name}: no help text"
        m = re.search(r"\(default: (.+)\)$", a.help.replace("%%", "%"))
        assert m, f"{command} {long}: help does not show the default: {a.help!r}"
        shown = m.group(1)
        if f.default is None:
            assert shown == f.metadata["none"], (f.name, shown)
        elif isinstance(f.default, bool):
            assert shown == str(f.default).lower(), (f.name, shown)
        elif isinstance(f.default, (int, float)):
            assert float(shown.split()[0]) == f.default, (f.name, shown)
        else:
            assert shown == f.default, (f.name, shown)
        if f.metadata.get("choices"):
            assert tuple(a.choices) == tuple(f.metadata["choices"])


def test_existing_flag_spellings_still_parse():
    p = _parser()
    a = p.parse_args(["dedup", "x", "--out", "o", "--no-nfkc", "--num-perm", "64", "--id-column", "url"])
    assert (a.nfkc, a.num_perm, a.id_column) == (False, 64, "url")
    a = p.parse_args(MINIMAL["audit"] + ["-n", "5", "--generate", "--count-tokens", "--k", "0.1"])
    assert (a.n_sequences, a.generate, a.count_tokens, a.k) == (5, True, True, 0.1)
    a = p.parse_args(MINIMAL["audit"] + ["--n-sequences", "7"])
    assert a.n_sequences == 7


def test_audit_batch_size_takes_an_integer_or_auto(tmp_path):
    """Issue #12 s5: ``--batch-size auto`` (flag and YAML) besides an integer; anything else is
    one error line."""
    p = _parser()
    assert from_args(p.parse_args(MINIMAL["audit"] + ["--batch-size", "auto"])).batch_size == "auto"
    assert from_args(p.parse_args(MINIMAL["audit"] + ["--batch-size", "8"])).batch_size == 8
    cfg = tmp_path / "a.yaml"
    cfg.write_text("audit:\n  batch_size: auto\n")
    assert from_args(p.parse_args(MINIMAL["audit"] + ["--config", str(cfg)])).batch_size == "auto"
    for bad in ("many", "0"):
        with pytest.raises(ValueError, match="batch_size"):
            from_args(p.parse_args(MINIMAL["audit"] + ["--batch-size", bad]))


def test_version_names_the_installed_distribution():
    from importlib.metadata import version

    r = cli("--version")
    assert (r.returncode, r.stdout.strip()) == (0, f"memdedup {version('memdedup')}"), r.stderr


def test_top_level_help_lists_each_command_once():
    """``memdedup --help`` names each subcommand on one line of its own, once (the module
    docstring, used as the description, once listed them all a second time)."""
    r = cli("--help")
    assert r.returncode == 0, r.stderr
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in sub.choices:
        listed = [line for line in r.stdout.splitlines() if line.split()[:1] == [command]]
        assert len(listed) == 1, (command, listed)


def test_no_help_shows_docstring_markup():
    """Help is read in a terminal: no reStructuredText roles or double backquotes (the top-level description,
    the module docstring, began "The ``memdedup`` command line.")."""
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in [("memdedup", _parser()), *sub.choices.items()]:
        assert not re.search(r"``|:(func|mod|class|data|meth|attr):", parser.format_help()), name


def test_generate_help_explains_every_option_and_shows_its_default():
    """``memdedup generate --help``: each option has a help line, and each one with a default
    shows it (they were bare names: --docs DOCS, --exact-frac EXACT_FRAC ...)."""
    for a in subparser("generate")._actions:
        if a.option_strings and a.dest != "help":
            assert a.help, a.option_strings
            if a.default not in (None, False):
                assert "(default: %(default)s)" in a.help, a.option_strings


@pytest.mark.parametrize("command", ["dedup", "audit", "train", "profile"])
def test_quiet_help_says_what_it_silences_as_the_readme_does(command):
    """README: --quiet prints no progress, notes or summary; every command's --quiet help says
    the same (dedup's and profile's left out the notes, which --quiet silences there too)."""
    (quiet,) = [a for a in subparser(command)._actions if "--quiet" in a.option_strings]
    assert all(word in quiet.help for word in ("progress", "notes", "summary")), quiet.help


def test_every_command_takes_quiet_and_quiet_prints_nothing(tmp_path):
    """generate, params, forecast, report and check had no --quiet (an unrecognized argument, exit 2), though
    scripts silence every command the same way; under it they print nothing, as the stages do."""
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in sub.choices:
        (quiet,) = [a for a in subparser(command)._actions if "--quiet" in a.option_strings]
        assert "summary" in quiet.help, (command, quiet.help)
    said = {}
    for args in (["generate", "--out", tmp_path / "c", "--docs", "1", "--shards", "1"], ["params", "--docs", "1"]):
        loud, quiet = cli(*args), cli(*args, "--quiet")
        assert loud.returncode == quiet.returncode == 0, quiet.stderr
        assert loud.stdout and (quiet.stdout, quiet.stderr) == ("", ""), quiet
        said[args[0]] = loud.stdout
    assert said["generate"].startswith("wrote 1 document in 1 shard(s) to"), said["generate"]  # not "1 documents"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_lists_each_option_once(command):
    r = cli(command, "--help")
    assert r.returncode == 0, r.stderr
    listed = []
    for line in r.stdout.splitlines():
        if line.startswith("  -"):  # an option's line: "  -n N, --n-sequences N   help..."
            invocation = re.split(r"\s{2,}", line.strip())[0]
            listed += [part.split()[0] for part in invocation.split(", ")]
    assert len(listed) == len(set(listed)), sorted(x for x in listed if listed.count(x) > 1)
    for f in dataclasses.fields(COMMANDS[command]):
        if f.metadata.get("cli", True):
            assert "--" + f.name.replace("_", "-") in listed, f.name
    assert listed.count("--config") == 1


# ------------------------------------------------------------------ flags > YAML > defaults


# command -> (field set by file and flag, its file value, its flag value, field set by the file only, its value)
OVERRIDES = {"dedup": ("threshold", 0.7, 0.9, "num_perm", 64), "params": ("num_perm", 64, 256, "fp", 1e-3),
             "audit": ("n_sequences", 50, 7, "k", 0.5), "train": ("epochs", 2, 1, "lr", 0.01),
             "profile": ("n_boot", 40, 50, "outcome", "accuracy")}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_flag_overrides_the_yaml_file_which_overrides_the_defaults(command, tmp_path):
    cls = COMMANDS[command]
    section = "dedup" if command == "params" else command
    both, in_file, in_flag, only_file, file_value = OVERRIDES[command]
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"{section}:\n  {both}: {in_file}\n  {only_file}: {file_value}\n")
    args = _parser().parse_args(MINIMAL[command] + ["--config", str(cfg), "--" + both.replace("_", "-"), str(in_flag)])
    got = from_args(args)
    assert isinstance(got, cls)
    assert getattr(got, both) == in_flag  # flag > file
    assert getattr(got, only_file) == file_value  # file > default
    others = {f.name for f in dataclasses.fields(cls)} - {both, only_file}
    assert {k: getattr(got, k) for k in others} == {k: getattr(cls(), k) for k in others}  # the defaults


def test_a_no_flag_overrides_a_true_in_the_file_and_id_column_flag_requires_it(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("audit:\n  generate: true\n  count_tokens: true\ndedup:\n  nfkc: false\n  id_column: url\n")
    got = from_args(_parser().parse_args(MINIMAL["audit"] + ["--config", str(cfg), "--no-generate"]))
    assert (got.generate, got.count_tokens) == (False, True)
    got = from_args(_parser().parse_args(MINIMAL["dedup"] + ["--config", str(cfg), "--nfkc"]))
    assert got.nfkc is True and got.id_column == "url" and not got.id_column_required  # as before: file keys as given
    got = from_args(_parser().parse_args(MINIMAL["dedup"] + ["--config", str(cfg), "--id-column", "doc"]))
    assert got.id_column == "doc" and got.id_column_required  # named on the command line: absence is an error


def test_params_reads_yaml_and_flags(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("dedup:\n  threshold: 0.7\n  num_perm: 64\n")
    r = cli("params", "--config", cfg, "--threshold", "0.9", "--docs", "1000", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert (plan["threshold"], plan["num_perm"], plan["capacity"]) == (0.9, 64, 1000)


@pytest.mark.parametrize("command", ["dedup", "audit", "train", "profile"])
def test_an_unknown_yaml_key_is_one_line_and_exit_2(command, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"{command}:\n  threshhold: 0.7\n")
    out = tmp_path / "out"
    args = {"dedup": ["dedup", tmp_path / "in", "--out", out], "audit": ["audit", "--model", tmp_path / "m",
            "--corpus", tmp_path / "in", "--out", out], "train": ["train", tmp_path / "in", "--out", out],
            "profile": ["profile", "--run", tmp_path / "run", "--out", out]}[command]
    r = cli(*args, "--config", cfg)
    assert_one_error_line(r, f"memdedup {command}", f"{command}.threshhold", str(cfg))
    assert r.stdout == ""
    assert files_under(out) == []


@pytest.mark.parametrize("text, needles", [
    ("threshold: 0.5\n", ["unknown section 'threshold'", "under 'dedup:'"]),  # the keys written without their section
    ("dedupe:\n  threshold: 0.5\n", ["unknown section 'dedupe'", "dedup"]),     # a misspelt section
])
def test_a_key_outside_any_known_section_is_one_line_and_exit_2(tmp_path, text, needles):
    """Both files ran at the default threshold 0.8, saying nothing: a key outside the command's section was never
    read. The top level holds the stages' sections and the workflow's own keys (a workflow config may be given
    whole); anything else is refused, naming it."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    out = tmp_path / "out"
    for command in (["dedup", write_shards(tmp_path / "in"), "--out", out], ["params"]):
        assert_one_error_line(cli(*command, "--config", cfg), f"memdedup {command[0]}", str(cfg), *needles)
    assert files_under(out) == []
    whole = tmp_path / "workflow.yaml"  # the workflow's config, as its schema allows it
    schema = yaml.safe_load((ROOT / "configs" / "schema.yaml").read_text())
    from pipelines.config import TOP_LEVEL  # written in two places (the library cannot read configs/): kept equal
    assert sorted(schema["properties"]) == sorted(TOP_LEVEL)
    whole.write_text(yaml.safe_dump({k: {} for k in schema["properties"]} | {"dedup": {"threshold": 0.5}}))
    r = cli("params", "--config", whole, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["threshold"] == 0.5, r.stderr


def test_an_invalid_value_in_the_file_names_the_file(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("dedup:\n  unit: sentence\n")
    r = cli("dedup", write_shards(tmp_path / "in"), "--out", tmp_path / "out", "--config", cfg)
    assert_one_error_line(r, "memdedup dedup", str(cfg), "unit must be one of word, char")


# ------------------------------------------------------------------------------ --json


def test_dedup_json_is_the_manifest_and_stdout_holds_nothing_else(tmp_path):
    src = write_shards(tmp_path / "in")
    out = tmp_path / "out"
    r = cli("dedup", src, "--out", out, "--json", "--threads", "1", env={"MEMDEDUP_PROGRESS_DELAY": "0"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == manifest_of(out)  # the whole of stdout parses: nothing else there
    assert r.stdout == (out / "manifest.json").read_text(encoding="utf-8")  # same serialiser, same text
    assert "rows/s" in r.stderr  # progress stays on stderr
    assert manifest_of(out)["totals"]["rows"] == len(ROWS) and manifest_of(out)["totals"]["removed"]["exact"] == 1
    # a completed run: the note goes to stderr, the manifest to stdout
    again = cli("dedup", src, "--out", out, "--json")
    assert again.returncode == 0 and "already complete" in again.stderr
    assert json.loads(again.stdout) == manifest_of(out)
    # the human summary stays the default
    human = cli("dedup", src, "--out", out)
    assert f"{len(ROWS)} rows in 3 shard(s)" in human.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(human.stdout)


def test_staged_dedup_json_is_the_manifest(tmp_path):
    src = write_shards(tmp_path / "in")
    out = tmp_path / "out"
    r = cli("dedup", src, "--out", out, "--json", "--engine", "staged", "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == manifest_of(out)


def test_forecast_and_generate_json(tmp_path):
    for name, flags in (("first", [True, True, False, False]), ("second", [True, False, True, False])):
        d = tmp_path / name
        d.mkdir()
        pq.write_table(pa.table({"doc_id": ["a", "b", "c", "d"], "token_offset": [0, 0, 0, 0],
                                 "extractable": flags}), d / "per_sequence.parquet")
        write_stage_manifest(d, "audit", {}, versions=False)
    r = cli("forecast", tmp_path / "first", tmp_path / "second", "--out", tmp_path / "fc.json", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == json.loads((tmp_path / "fc.json").read_text())
    assert (json.loads(r.stdout)["tp"], json.loads(r.stdout)["fp"]) == (1, 1)
    human = cli("forecast", tmp_path / "first", tmp_path / "second")
    assert "precision 0.500, recall 0.500 (TP 1, FP 1, FN 1, TN 1)" in human.stdout, human.stdout
    # which rule decided "seen" (member labels here: no training run) was in the JSON only (found by the CLI probe:
    # a training run moved away switches it silently from the order's steps to the labels)
    assert "seen: member label (no common training run" in human.stdout, human.stdout
    # an early audit that memorised nothing: no precision, said as n/a (it printed 'precision None')
    pq.write_table(pa.table({"doc_id": ["a", "b"], "token_offset": [0, 0], "extractable": [False, False]}),
                   tmp_path / "first" / "per_sequence.parquet")
    human = cli("forecast", tmp_path / "first", tmp_path / "second")
    assert "precision n/a, recall 0.000" in human.stdout, human.stdout

    r = cli("generate", "--out", tmp_path / "corpus", "--docs", "40", "--shards", "2", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == json.loads((tmp_path / "corpus" / "manifest.json").read_text())


def test_train_audit_and_profile_show_progress_print_their_files_under_json_and_are_silent_under_quiet(tmp_path):
    """Issue #15: long train, audit and profile runs show progress (steps/s or sequences/s,
    ETA) on stderr, as dedup does, while --json keeps stdout to the file the stage wrote
    (transformers' progress bars and warnings stay off it); --quiet prints nothing at all."""
    pytest.importorskip("torch")
    corpus, run = tmp_path / "corpus", tmp_path / "run"
    assert cli("generate", "--out", corpus, "--docs", "150", "--doc-bytes", "300", "--shards", "2").returncode == 0
    now = {"MEMDEDUP_PROGRESS_DELAY": "0"}
    train = ["train", corpus, "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--seq-len", "32", "--epochs", "1",
             "--vocab-size", "300", "--log-checkpoints", "4", "--checkpoint-every", "20", "--holdout", "0.2"]
    audit = ["audit", "--model", run / "model", "--corpus", corpus, "-n", "12", "--n-boot", "40", "--batch-size", "4",
             "--members", run / "order.parquet"]
    profile = ["profile", "--run", run, "--n-treated", "12", "--n-control", "8", "--n-boot", "40"]

    def json_run(args: list, written: Path) -> str:
        r = cli(*args, "--json", env=now)
        assert r.returncode == 0, f"{args[0]}: {r.stderr[-3000:]}"
        assert r.stdout == written.read_text(encoding="utf-8"), args[0]
        json.loads(r.stdout)
        return r.stderr

    err = json_run([*train, "--out", run], run / "manifest.json")
    steps = json.loads((run / "manifest.json").read_text())["steps"]
    assert re.search(rf"(?m)^train: 1/{steps} steps \(\d+\.\d%\), [\d.]+k? steps/s, loss \d+\.\d+, ETA \d+s", err), err
    assert re.search(rf"(?m)^train: {steps}/{steps} steps \(100\.0%\), .* in [\d.]+s", err), err
    err = json_run([*audit, "--out", tmp_path / "a1"], tmp_path / "a1" / "summary.json")
    assert re.search(r"audit score: 4/12 sequences \(33\.3%\), [\d.]+k? sequences/s, ETA \d+s", err), err
    assert re.search(r"audit occurrences: 150/150 documents \(100\.0%\), .* in [\d.]+s", err), err
    err = json_run([*profile, "--out", tmp_path / "p1"], tmp_path / "p1" / "summary.json")
    assert "instances/s" in err and "ETA" in err, err[-3000:]
    with ThreadPoolExecutor(3) as pool:  # side by side: the three start-ups (torch) overlap
        quiet = list(pool.map(lambda args: cli(*args, "--quiet", env=now), [
            (*train, "--out", tmp_path / "run2"), (*audit, "--out", tmp_path / "a2"),
            (*profile, "--out", tmp_path / "p2")]))
    for q in quiet:
        assert q.returncode == 0, q.stderr[-3000:]
        assert (q.stdout, q.stderr) == ("", ""), q.args


# ------------------------------------------------------------------------------ README


def test_readme_configuration_reference_is_generated_from_the_dataclasses():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for section, cls in SECTIONS.items():
        m = re.search(rf"<!-- generated: reference\({cls.__name__}\) -->\n(.*?)<!-- end generated -->", text, re.S)
        assert m, f"README has no generated reference of {cls.__name__} ({section}:)"
        assert m.group(1) == reference(cls), (
            f"README's {section}: table is stale; replace it with:\n{reference(cls)}")


def test_readme_prose_defaults_match_the_dataclasses():
    """Defaults the README's prose states, outside the generated tables."""
    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    d, a, t = DedupConfig(), AuditConfig(), TrainConfig()
    claims = {
        "Unicode NFKC (on by default; `--no-nfkc`)": d.nfkc is True,
        "`fss` (default) is Fast Similarity Sketching": d.scheme == "fss",
        "word 5-grams of the canonical text (`--ngram`": (d.unit, d.ngram) == ("word", 5),
        "the exact-key filter (`--exact-fp`, 1e-6)": d.exact_fp == 1e-6,
        "(`--k`, default 20%)": a.k == 0.2,
        "checkpoints at steps 1, 2, 4, ..., 64, then every 100": (t.log_checkpoints,
                                                                     t.checkpoint_every) == (64, 100),
    }
    for claim, holds in claims.items():
        assert claim in text, f"README no longer says {claim!r}: update this test"
        assert holds, f"README says {claim!r}, the dataclass default differs"


@pytest.mark.parametrize("command, damaged", [
    ("train", "out/manifest.json"),
    ("train", "out/train_config.json"),
    ("check", "out/corpus/manifest.json"),
])
def test_a_damaged_state_file_is_named_in_the_one_line_error(tmp_path, capsys, command, damaged):
    """Before the fix these three were read with json.loads: exit 2, but the line was only Python's
    'Expecting value: line 1 column 1 (char 0)', naming no file."""
    from pipelines.cli import main

    bad = tmp_path / damaged
    bad.parent.mkdir(parents=True)
    bad.write_text("{broken")
    (tmp_path / "t.jsonl").write_text('{"text": "a b c d e f"}\n')
    argv = ["train", str(tmp_path / "t.jsonl"), "--out", str(tmp_path / "out"), "--quiet"] if command == "train" \
        else ["check", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"memdedup {command}: error: {bad}: damaged (not valid JSON"), err
    assert bad.read_text() == "{broken"  # not replaced or removed


@pytest.mark.parametrize("name, content, needle", [
    ("members.txt", b"doc-1\n\xff\xfe\n", "not valid UTF-8"),
    ("members.parquet", b"not parquet", "unreadable"),
    ("members.txt", b"\n  \n", "no ids"),
    ("manifest.json", b'{"ids": ["doc-1"]}', "a JSON members file"),  # was called JSONL
])
def test_a_bad_members_file_is_named_in_the_one_line_error(tmp_path, capsys, name, content, needle):
    """--members that cannot be read is exit 2 with one line naming the file, before any model is
    loaded; an empty one (no ids) too: every sequence would be labelled a non-member. Before the fix
    bad UTF-8 gave Python's bare 'utf-8 codec can't decode' line, naming no file, and an empty file
    was accepted (every ROC-AUC n/a, no note)."""
    from pipelines.cli import main

    members = tmp_path / name
    members.write_bytes(content)
    write_shards(tmp_path / "corpus")
    argv = ["audit", "--model", str(tmp_path / "no-model"), "--corpus", str(tmp_path / "corpus"),
            "--out", str(tmp_path / "out"), "--members", str(members), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"memdedup audit: error: {members}: ") and needle in err[0], err
    assert not (tmp_path / "out").exists() and members.read_bytes() == content


def test_check_on_a_foreign_directory_says_what_is_missing(tmp_path, capsys):
    """`memdedup check` on a directory that is not a workflow output: exit 2, one line naming the
    missing stage and why, nothing written there. Before: the line was the bare path (pyarrow's
    FileNotFoundError carries no strerror), saying nothing about what was wrong."""
    from pipelines.cli import main

    write_shards(tmp_path / "corpus")
    before = files_under(tmp_path)
    assert main(["check", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path / 'audit' / 'raw'}: not a completed audit output (no such directory)" in err[0]
    assert files_under(tmp_path) == before
    # a path that is no directory at all: named as such, not as a missing audit below it; a file, too (was "exists
    # and is not a directory; choose another output directory", the words of a stage writing there)
    for missing in (tmp_path / "nope", tmp_path / "corpus" / "part-0.parquet"):
        assert main(["check", str(missing)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"memdedup check: error: {missing}: not a directory (give the workflow's output directory, "
                       "config 'out')"], err
    assert not (tmp_path / "nope").exists()  # (holding it made it)


def test_a_generated_corpus_given_as_a_stage_output_is_not_called_damaged(tmp_path, capsys):
    """A `memdedup generate` corpus given where a stage's output belongs (report --dedup-dir, say) was called
    '<corpus>/manifest.json: damaged or from another version (missing stage)': its manifest names no stage, by
    design (dedup's walks skip folders holding a stage manifest, and a corpus must be read). It is now said so
    (found by the CLI probe)."""
    from pipelines.cli import main

    assert main(["generate", "--out", str(tmp_path / "corpus"), "--docs", "20"]) == 0
    (tmp_path / "a").mkdir()
    pq.write_table(pa.table({"extractable": [True], "leading_matched": [3]}), tmp_path / "a" / "per_sequence.parquet")
    (tmp_path / "a" / "manifest.json").write_text('{"stage": "audit"}')
    capsys.readouterr()
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "a"), "--dedup-dir", str(tmp_path / "corpus"),
                 "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "names no stage: a generated corpus's" in err[0] and "damaged" not in err[0], err


@pytest.mark.parametrize("command", ["dedup", "audit"])
def test_a_generated_corpus_given_as_out_is_refused_as_out(tmp_path, capsys, command):
    """--out pointed at a generated corpus said '<corpus>: not a stage's output (its manifest.json names no
    stage: ...)', naming neither --out nor what to do (found by the audit probe)."""
    from pipelines.cli import main

    assert main(["generate", "--out", str(tmp_path / "corpus"), "--docs", "20"]) == 0
    assert main(["generate", "--out", str(tmp_path / "other"), "--docs", "20"]) == 0
    capsys.readouterr()
    args = {"dedup": ["dedup", str(tmp_path / "other")],
            "audit": ["audit", "--model", str(tmp_path / "m"), "--corpus", str(tmp_path / "other")]}[command]
    assert main([*args, "--out", str(tmp_path / "corpus")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--out {tmp_path / 'corpus'} holds a manifest.json of no stage" in err[0], err
    assert "choose another path" in err[0], err


@pytest.mark.parametrize("command, text, needles", [
    ("profile", "profile:\n  seed: 1.5\n", ["section profile", "seed must be int, got 1.5"]),
    ("profile", "profile:\n  batch_size: '8'\n", ["batch_size must be int, got '8'"]),
    ("profile", "profile:\n  n_treated: 20.7\n", ["n_treated must be int, got 20.7"]),
    ("profile", "profile:\n  n_boot: '10'\n", ["n_boot must be int"]),
    ("profile", "profile:\n  n_control: [10]\n", ["n_control must be int, got [10]"]),
    ("train", "train:\n  epochs: true\n", ["section train", "epochs must be int, got True"]),
    ("train", "train:\n  n_layer: null\n", ["n_layer must be int, got None"]),
    ("audit", "audit:\n  k: '0.5'\n", ["section audit", "k must be float, got '0.5'"]),
])
def test_a_yaml_value_of_the_wrong_type_is_one_line_naming_the_file_and_key(tmp_path, capsys, command, text, needles):
    """Values in a --config file are checked against their fields' types, as flags are by the
    parser. Before: a float seed died in NumPy with a TypeError traceback (exit 1), a string
    batch size likewise, a float n_treated ran (rc 0) and a string n_boot failed after every
    checkpoint was scored, in a line naming neither file nor key; a bool or null passed as an int."""
    from pipelines.cli import main

    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    argv = {"profile": ["profile", "--run", str(tmp_path / "run")], "train": ["train", str(tmp_path / "in")],
            "audit": ["audit", "--model", str(tmp_path / "m"), "--corpus", str(tmp_path / "in")]}[command]
    assert main([*argv, "--out", str(tmp_path / "out"), "--config", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"memdedup {command}: error: {cfg}: "), err
    assert all(n in err[0] for n in needles), err
    assert not (tmp_path / "out").exists()


def test_an_invalid_flag_is_not_blamed_on_the_config_file(tmp_path, capsys):
    """A bad value given as a flag names the command line, not the --config file (which is
    valid). Before: 'bad.yaml: section profile: ... checkpoints must name at least 2 steps'."""
    from pipelines.cli import main

    cfg = tmp_path / "ok.yaml"
    cfg.write_text("profile:\n  n_boot: 40\n")
    assert main(["profile", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--config", str(cfg),
                 "--checkpoints", "10,10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "<command line>" in err[0] and str(cfg) not in err[0], err
    assert "checkpoints must name at least 2 steps" in err[0]


def test_a_config_file_that_is_not_utf8_is_named(tmp_path, capsys):
    """Before: the line was Python's bare "'utf-8' codec can't decode byte 0xff", naming no file."""
    from pipelines.cli import main

    cfg = tmp_path / "bad.yaml"
    cfg.write_bytes(b"profile:\n  n_boot: 5 \xff\xfe\n")
    assert main(["profile", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"memdedup profile: error: {cfg}: ") and "UTF-8" in err[0], err


@pytest.mark.parametrize("inside", ["summary.json", "per_sequence.parquet", "forecast.json"])
def test_forecast_refuses_an_out_inside_an_input_audit(tmp_path, capsys, inside):
    """forecast --out inside one of the audit directories it reads could replace the audit's own
    files: exit 2, one line, the inputs untouched. Before: `--out first/summary.json` replaced
    the audit's summary.json with the forecast (exit 0)."""
    from pipelines.cli import main

    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        pq.write_table(pa.table({"doc_id": ["a", "b"], "token_offset": [0, 0], "extractable": [True, False]}),
                       tmp_path / name / "per_sequence.parquet")
        (tmp_path / name / "summary.json").write_text("{}")
        write_stage_manifest(tmp_path / name, "audit", {}, versions=False)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main(["forecast", str(tmp_path / "first"), str(tmp_path / "second"),
                 "--out", str(tmp_path / "first" / inside)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and str(tmp_path / "first") in err[0], err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_forecast_refuses_audits_of_other_token_windows(tmp_path, capsys):
    """Audits whose sequences share documents and offsets but not tokens (other --prompt-len /
    --cont-len, or another tokenizer) measure different windows: exit 2 naming both. Before:
    an 8 + 8 audit was compared with a 16 + 16 one as if the sequences were the same (exit 0)."""
    from pipelines.cli import main

    for name, n in (("first", 8), ("second", 16)):
        (tmp_path / name).mkdir()
        pq.write_table(pa.table({"doc_id": ["a", "b"], "token_offset": [0, 0], "extractable": [True, False],
                                 "prompt": [list(range(n))] * 2, "truth": [list(range(n, 2 * n))] * 2}),
                       tmp_path / name / "per_sequence.parquet")
        write_stage_manifest(tmp_path / name, "audit", {}, versions=False)
    assert main(["forecast", str(tmp_path / "first"), str(tmp_path / "second")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "first") in err[0] and str(tmp_path / "second") in err[0], err
    assert "tokens" in err[0]


def test_forecast_reads_integer_doc_ids_as_the_corpus_ids_they_are(tmp_path, capsys):
    """A per_sequence.parquet of the audit layout made by hand, with integer doc ids, against an audit's
    string ids: the line was pandas' 'You are trying to merge on str and int64 columns for key 'doc_id'. If you
    wish to proceed you should use pd.concat', naming no file (found by the CLI probe). Ids are now read as
    every id is (dedup.shards.id_strings: 7 -> '7'), as forecast reads a hand-made order.parquet's."""
    from pipelines.cli import main

    for name, ids in (("first", [1, 2]), ("second", ["1", "2"])):
        (tmp_path / name).mkdir()
        pq.write_table(pa.table({"doc_id": ids, "token_offset": [0, 0], "extractable": [True, False]}),
                       tmp_path / name / "per_sequence.parquet")
        write_stage_manifest(tmp_path / name, "audit", {}, versions=False)
    assert main(["forecast", str(tmp_path / "first"), str(tmp_path / "second"), "--json"]) == 0
    fc = json.loads(capsys.readouterr().out)
    assert (fc["n"], fc["tp"], fc["tn"]) == (2, 1, 1), fc


@pytest.mark.parametrize("record, needle", [
    ({"model": 5}, "'model' is 5, expected a string"),
    ({"model": "{run}/model", "training_run": "x"}, "'training_run' is 'x', expected an object"),
])
def test_forecast_names_a_damaged_audit_manifest(tmp_path, capsys, record, needle):
    """forecast reads an audit's manifest.json for the model it audited: a model that was not a path, or a
    training_run record that was not an object, gave a TypeError or AttributeError traceback, exit 1 (found by the
    CLI probe). Now exit 2 naming the file and key."""
    from pipelines.cli import main

    (tmp_path / "run").mkdir()
    pq.write_table(pa.table({"document_id": ["a"], "first_step": [1], "step": [1]}), tmp_path / "run" / "order.parquet")
    record = {k: v.format(run=tmp_path / "run") if isinstance(v, str) else v for k, v in record.items()}
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        pq.write_table(pa.table({"doc_id": ["a"], "token_offset": [0], "extractable": [True]}),
                       tmp_path / name / "per_sequence.parquet")
        (tmp_path / name / "manifest.json").write_text(json.dumps({"stage": "audit", **record}))
    assert main(["forecast", str(tmp_path / "first"), str(tmp_path / "second")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path / 'first' / 'manifest.json'}: damaged: {needle}" in err[0], err


@pytest.mark.parametrize("order, needle", [
    ({"document_id": ["a"], "first_step": [1]}, "no column 'step'"),
    ({"document_id": ["a"], "first_step": [1], "step": pa.array([None], pa.int64())}, "column 'step' is null"),
])
def test_forecast_names_a_damaged_order_of_the_audited_run(tmp_path, capsys, order, needle):
    """Audits of a checkpoint and the final model of one run read the run's order.parquet; one without a
    step column, or a null step, gave pyarrow's 'No match for FieldRef.Name(step) in document_id: ...' or
    'cannot convert float NaN to integer', naming no file (found by the CLI probe). Now the line names it."""
    from pipelines.cli import main

    run = tmp_path / "run"
    run.mkdir()
    pq.write_table(pa.table(order), run / "order.parquet")
    for name, model in (("first", run / "checkpoints" / "step-0000001"), ("second", run / "model")):
        (tmp_path / name).mkdir()
        pq.write_table(pa.table({"doc_id": ["a"], "token_offset": [0], "extractable": [True]}),
                       tmp_path / name / "per_sequence.parquet")
        (tmp_path / name / "manifest.json").write_text(json.dumps({"stage": "audit", "model": str(model)}))
    assert main(["forecast", str(tmp_path / "first"), str(tmp_path / "second")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{run / 'order.parquet'}" in err[0] and needle in err[0], err


def test_profile_of_a_directory_that_is_not_a_run_says_so(tmp_path, capsys):
    """`memdedup profile --run DIR` on a missing or foreign directory said 'no corpus recorded;
    pass --corpus', sending the user after the wrong option."""
    from pipelines.cli import main

    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("not a run")
    for run in (tmp_path / "missing", tmp_path / "foreign"):  # (an --out inside it: refused first, as inside an input)
        assert main(["profile", "--run", str(run), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{run}: not a 'memdedup train' run directory (no order.parquet)" in err[0], err
        assert not (tmp_path / "out").exists()


def test_workers_with_an_external_scheduler_is_refused(tmp_path, capsys):
    """--workers sizes the local cluster, so with --scheduler (the scheduler's cluster) it was
    silently ignored. Refused before connecting, nothing written."""
    from pipelines.cli import main

    write_shards(tmp_path / "in")
    argv = ["dedup", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9",
            "--workers", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--workers" in err[0] and "--scheduler" in err[0], err
    assert not (tmp_path / "out").exists()


def test_threads_per_worker_above_threads_is_refused_for_a_local_cluster(tmp_path, capsys):
    """--threads 2 --threads-per-worker 4 made a local cluster of one 4-thread worker: twice the
    cores --threads gives the run. Refused before anything is written (failed before: it ran).
    With --scheduler (as the workflow passes --threads beside it) or --workers, --threads sizes
    nothing, so the two do not meet."""
    from pipelines.cli import main

    write_shards(tmp_path / "in")
    argv = ["dedup", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--engine", "staged", "--quiet",
            "--threads", "2", "--threads-per-worker", "4"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threads-per-worker 4" in err[0] and "--threads 2" in err[0], err
    assert not (tmp_path / "out").exists()


def test_the_canary_claims_count_distinct_sequences(tmp_path):
    """Claims 2 and 3 count distinct sequences, as the audit's rates do (audit.aggregate.RATES_COUNT):
    a canary planted 64 times can be sampled several times. Before: rows were counted, so one
    extracted canary sampled three times beside two unextracted ones made a 'rate' of 3/5 = 0.6 and
    claim 2 passed; over distinct canaries it is 1/3."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.demo import run_checks

    def audit(name: str, extractable: list[bool], docs: list[int]) -> None:
        d = tmp_path / "audit" / name
        d.mkdir(parents=True)
        pq.write_table(pa.table({"doc_id": [f"canary-{i}" for i in docs], "duplicate_count": [64] * len(docs),
                                 "extractable": extractable, "prompt": [[i] * 4 for i in docs],
                                 "truth": [[i + 100] * 4 for i in docs]}), d / "per_sequence.parquet")
        (d / "manifest.json").write_text('{"stage": "audit"}')

    audit("raw", [True, True, True, False, False], [1, 1, 1, 2, 3])
    audit("dedup", [False, False, True], [1, 1, 4])
    checks = {c["name"].split(" ")[0]: c for c in run_checks(tmp_path)["checks"]}
    raw = checks["raw"]
    assert (raw["raw_sequences"], raw["raw_extractable"], raw["raw_rate"]) == (3, 1, pytest.approx(1 / 3))
    assert not raw["passed"]
    assert checks["dedup"]["dedup_sequences"] == 2 and checks["dedup"]["dedup_rate"] == pytest.approx(0.5)


def test_the_canary_claims_leave_out_canaries_the_model_never_trained_on(tmp_path):
    """A canary held out of training (member False: memdedup train holds out a canary with all its copies) was
    counted in claims 2 and 3 as a canary not extracted, lowering the raw model's rate and the cleaned model's
    alike (the cleaned model's toward the claim's 10x; found by the review). Unlabelled rows (no --members) count."""
    from pipelines.demo import run_checks

    def audit(name: str, extractable: list[bool], member: list[bool | None]) -> None:
        d = tmp_path / "audit" / name
        d.mkdir(parents=True)
        n = len(extractable)
        pq.write_table(pa.table({"doc_id": [f"canary-{i}" for i in range(n)], "duplicate_count": [64] * n,
                                 "extractable": extractable, "member": pa.array(member, pa.bool_()),
                                 "prompt": [[i] * 4 for i in range(n)], "truth": [[i + 100] * 4 for i in range(n)]}),
                       d / "per_sequence.parquet")
        (d / "manifest.json").write_text('{"stage": "audit"}')

    audit("raw", [True, False, False, False], [True, None, False, False])
    audit("dedup", [False, False, False], [True, False, False])
    checks = {c["name"].split(" ")[0]: c for c in run_checks(tmp_path)["checks"]}
    assert (checks["raw"]["raw_sequences"], checks["raw"]["raw_rate"]) == (2, 0.5) and checks["raw"]["passed"]
    assert checks["dedup"]["dedup_sequences"] == 1


def test_forecast_out_that_is_a_directory_and_train_into_another_stage_say_so(tmp_path, capsys):
    """forecast --out names a file: a directory there was 'exit 2' with a line naming a temporary
    file ('.../.x.tmp-...: Is a directory'); now the line names --out. train --out holding
    another stage's output (an audit's manifest.json) said it held 'a finished training run with
    another config'; now it names the stage."""
    from pipelines.cli import main

    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        pq.write_table(pa.table({"doc_id": ["a", "b"], "token_offset": [0, 0], "extractable": [True, False]}),
                       tmp_path / name / "per_sequence.parquet")
    (tmp_path / "fc").mkdir()
    assert main(["forecast", str(tmp_path / "first"), str(tmp_path / "second"), "--out", str(tmp_path / "fc")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--out {tmp_path / 'fc'} is a directory" in err[0], err

    write_shards(tmp_path / "corpus")
    audit = tmp_path / "audit"
    audit.mkdir()
    (audit / "manifest.json").write_text('{"stage": "audit"}')
    assert main(["train", str(tmp_path / "corpus"), "--out", str(audit), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--out {audit} holds an audit output" in err[0], err


def test_the_claims_of_an_audit_without_sequences(tmp_path):
    """An audit with no sequence gives rate None (claim 2 then does not apply: no canaries), not Arrow's
    'Filter argument must be boolean type' from filtering zero rows with an empty Python list; an empty --dedup-dir
    string is no input for the --out check (it became '.', refusing every relative --out)."""
    from audit.layout import refuse_out
    from pipelines.demo import run_checks

    _audits_without_sequences(tmp_path)
    checks = run_checks(tmp_path)["checks"]
    assert checks[0]["raw_rate"] is None and not checks[0]["passed"]
    refuse_out(Path("relative-out"), ["", None], "audit")


def test_the_ratio_claim_fails_where_the_raw_model_extracts_no_canary(tmp_path):
    """A raw model that extracted no canary (rate 0) passed claim 3, 'the dedup model's rate is at least 10x
    lower', as 0 * 10 <= 0, beside a failed claim 2: there is no lower rate to show (found by the CLI probe)."""
    from pipelines.demo import run_checks

    for name in ("raw", "dedup"):
        d = tmp_path / "audit" / name
        d.mkdir(parents=True)
        pq.write_table(pa.table({"doc_id": ["canary-1", "canary-2"], "duplicate_count": [64, 32],
                                 "extractable": [False, False]}), d / "per_sequence.parquet")
        (d / "manifest.json").write_text('{"stage": "audit"}')
    checks = run_checks(tmp_path)["checks"]
    assert [c["passed"] for c in checks] == [False, False] and checks[1]["raw_rate"] == 0.0, checks


def _audits_without_sequences(out: Path) -> None:
    """OUT/audit/raw and OUT/audit/dedup: completed audits of no sequence, what `memdedup check` reads."""
    for name in ("raw", "dedup"):
        d = out / "audit" / name
        d.mkdir(parents=True)
        pq.write_table(pa.table({"doc_id": pa.array([], pa.string()), "duplicate_count": pa.array([], pa.int64()),
                                 "extractable": pa.array([], pa.bool_())}), d / "per_sequence.parquet")
        (d / "manifest.json").write_text('{"stage": "audit"}')


def test_a_check_killed_mid_write_leaves_no_temporary_after_the_rerun(tmp_path, capsys):
    """`memdedup check` killed while it wrote checks.json (SIGKILL: no cleanup) leaves its
    temporary (.checks.json.tmp-PID-XXXX) in OUT; the rerun wrote checks.json and left that for
    good. The rerun removes it now; another stage's temporary below OUT (of a dedup writing
    there now, which holds OUT/dedup, not OUT) is not the check's to remove."""
    from dedup.io import tmp_path as temporary
    from pipelines.cli import main

    _audits_without_sequences(tmp_path)
    killed = temporary(tmp_path / "checks.json")
    killed.write_text('{"passed": fal')  # what the kill left
    live = temporary(tmp_path / "dedup" / "removed.parquet")
    live.parent.mkdir()
    live.write_bytes(b"PAR1 being written")
    assert main(["check", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / "checks.json").read_text()) == result and not result["passed"], result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit", "checks.json", "dedup"]
    assert live.exists()


@pytest.mark.parametrize("command", ["audit", "profile"])
@pytest.mark.parametrize("n_boot", [1, 39])
def test_too_few_bootstrap_resamples_for_a_95_percent_interval_are_refused(command, n_boot, tmp_path, capsys):
    """--n-boot 1 gave a '95% interval' of zero width (the one resample's value at both ends):
    each tail of a 95% percentile interval needs 1 / 0.025 = 40 resamples to hold one, so 1 to 39
    are refused in one line; 0 (no interval) and 40 are accepted by the config."""
    from pipelines.cli import main

    cls = AuditConfig if command == "audit" else ProfileConfig
    assert cls(n_boot=0).n_boot == 0 and cls(n_boot=40).n_boot == 40
    where = ["--model", str(tmp_path), "--corpus", str(tmp_path)] if command == "audit" else ["--run", str(tmp_path)]
    assert main([command, "--n-boot", str(n_boot), *where, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n_boot must be 0 (no interval) or >= 40" in err[0], err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("broken, needle", [
    ("audit/raw/manifest.json", "audit/raw: not a completed audit output (no manifest.json)"),
    ("dedup/manifest.json", "dedup: not a completed dedup output (no manifest.json)"),
    ("dedup of another corpus", "dedup: not the dedup output of the corpus in"),
    ("no duplicate_count", "audit/raw/per_sequence.parquet: no column 'duplicate_count'"),
    ("duplicate_count as text", "audit/raw/per_sequence.parquet: column 'duplicate_count' holds string"),
    ("extractable missing", "audit/raw/per_sequence.parquet: column 'extractable' holds missing values"),
    ("duplicate_count missing", "audit/raw/per_sequence.parquet: column 'duplicate_count' holds missing values"),
    ("exact_ids not a list", "corpus/manifest.json: damaged: 'exact_ids' is 5, expected a list"),
    ("shards not a list", "corpus/manifest.json: damaged: 'shards' is 'a.parquet', expected a list"),
    ("canaries not an object", "corpus/manifest.json: damaged: 'canary_rows_by_repeats' is [64], expected an object"),
    ("inputs not a list", "dedup/manifest.json: damaged: 'inputs' is not a list of objects with"),
    ("rows as text", "dedup/manifest.json: damaged: 'inputs' is not a list of objects with"),
    ("inputs an empty object", "dedup/manifest.json: damaged: 'inputs' is not a list of objects with"),  # was taken
    ("removed without id", "dedup/removed.parquet: no column 'id'"),
])
def test_check_reads_only_completed_stages_of_this_corpus(tmp_path, capsys, broken, needle):
    """`memdedup check` computed its claims from stages without a manifest (unfinished: the README
    says a stage is done exactly when its manifest exists), from a dedup output of another corpus
    (claim 1 then 'failed' with removed=0), and gave a KeyError traceback for an audit without
    duplicate_count (found by the API probe); a TypeError traceback (exit 1) for columns of another
    type or with missing values, and for a corpus manifest.json whose exact_ids or shards are not
    lists or whose canary_rows_by_repeats is not an object (found by the CLI probe); a TypeError or KeyError traceback
    for a dedup manifest.json whose inputs are not a list of {shard, rows}, and pyarrow's 'No match for
    FieldRef.Name(id) in shard: string ...', naming no file, for a removed.parquet without id (found by the tools
    probe). Each is now exit 2 naming the directory or file."""
    from pipelines.cli import main

    (tmp_path / "corpus").mkdir()
    corpus = {"documents": 3, "shards": ["a.parquet"], "kinds": {"original": 2, "exact": 1}, "exact_ids": ["d2"]}
    corpus.update({"exact_ids not a list": {"exact_ids": 5}, "shards not a list": {"shards": "a.parquet"},
                   "canaries not an object": {"canary_rows_by_repeats": [64]}}.get(broken, {}))
    (tmp_path / "corpus" / "manifest.json").write_text(json.dumps(corpus))
    (tmp_path / "dedup").mkdir()
    removed = {"reason": ["exact"]} if broken == "removed without id" else {"id": ["d2"], "reason": ["exact"]}
    pq.write_table(pa.table(removed), tmp_path / "dedup" / "removed.parquet")
    inputs = [{"shard": "b.parquet" if broken == "dedup of another corpus" else "a.parquet", "rows": 3}]
    inputs = {"inputs not a list": 5, "rows as text": [{"shard": "a.parquet", "rows": "3"}],
              "inputs an empty object": {}}.get(broken, inputs)
    (tmp_path / "dedup" / "manifest.json").write_text(json.dumps({"stage": "dedup", "inputs": inputs}))
    for name in ("raw", "dedup"):
        d = tmp_path / "audit" / name
        d.mkdir(parents=True)
        cols = {"doc_id": ["canary-1"], "duplicate_count": [64], "extractable": [name == "raw"]}
        if broken == "no duplicate_count":
            del cols["duplicate_count"]
        if name == "raw" and broken in ("duplicate_count as text", "duplicate_count missing", "extractable missing"):
            column = broken.split()[0]
            typ = pa.int64() if column == "duplicate_count" else pa.bool_()
            cols[column] = ["64"] if broken.endswith("text") else pa.nulls(1, typ)
        pq.write_table(pa.table(cols), d / "per_sequence.parquet")
        (d / "manifest.json").write_text('{"stage": "audit"}')
    if broken.endswith("manifest.json"):
        (tmp_path / broken).unlink()
    assert main(["check", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path}/{needle}" in err[0], err
    assert not (tmp_path / "checks.json").exists()


def test_generate_replaces_its_own_corpus_and_refuses_other_directories(tmp_path, capsys):
    """generate wrote into any directory: over a dedup output (replacing its manifest.json, so the
    dedup rerun then failed), and a rerun with fewer shards or another format left the earlier
    shards beside the new ones, which dedup then read (found by the CLI probe). A rerun now
    replaces the files its earlier manifest lists; a directory holding anything else is refused."""
    from pipelines.cli import main

    c = tmp_path / "c"
    assert main(["generate", "--out", str(c), "--docs", "40", "--shards", "4"]) == 0
    assert main(["generate", "--out", str(c), "--docs", "20", "--shards", "2", "--format", "jsonl"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in c.iterdir()) == ["manifest.json", "part-00000.jsonl", "part-00001.jsonl"]
    (c / "manifest.json").unlink()  # as Snakemake does before it reruns the corpus job
    assert main(["generate", "--out", str(c), "--docs", "20", "--shards", "1"]) == 0
    assert sorted(p.name for p in c.iterdir()) == ["manifest.json", "part-00000.parquet"]
    d = tmp_path / "d"
    assert main(["dedup", str(c), "--out", str(d), "--quiet"]) == 0
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    assert main(["generate", "--out", str(d), "--docs", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--out {d} holds" in err[0], err
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("manifest, needle", [
    ({"kinds": {}, "shards": 5}, "'shards' is 5, expected a list"),
    ({"kinds": {}, "shards": [5]}, "'shards[0]' is 5, expected a string"),
])
def test_generate_over_a_corpus_with_a_damaged_manifest_names_it(tmp_path, capsys, manifest, needle):
    """A rerun of generate reads the earlier corpus's manifest.json to know its shards; shards that were not a
    list of names gave a TypeError traceback (exit 1; found by the CLI probe). Now exit 2 naming the file, as
    `memdedup check` does for the same file, and nothing removed."""
    from pipelines.cli import main

    c = tmp_path / "c"
    assert main(["generate", "--out", str(c), "--docs", "20", "--shards", "2"]) == 0
    (c / "manifest.json").write_text(json.dumps(manifest))
    before = {p: p.read_bytes() for p in c.iterdir()}
    capsys.readouterr()
    assert main(["generate", "--out", str(c), "--docs", "20"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{c / 'manifest.json'}: damaged: {needle}" in err[0], err
    assert {p: p.read_bytes() for p in c.iterdir()} == before


@pytest.mark.parametrize("stop, status", [(KeyboardInterrupt, 130), (OSError(28, "No space left on device"), 2)])
def test_a_generate_stopped_after_some_shards_leaves_no_corpus(tmp_path, monkeypatch, capsys, stop, status):
    """generate stopped between its shards and its manifest (Ctrl-C, SIGTERM, a full disk: here after the last
    shard) left the shards written so far and no manifest, a corpus that `memdedup dedup` reads as if whole
    (found by the CLI probe: 2 of 30 shards after Ctrl-C). Now what it wrote is removed, as the fused dedup clears
    its output."""
    from pipelines.cli import main

    def stopped(*args, **kwargs):
        raise stop

    assert main(["generate", "--out", str(tmp_path / "old"), "--docs", "20", "--shards", "2"]) == 0
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr("pipelines.demo.planted_manifest", stopped)
    for out in ("new", "empty", "old"):  # a directory made, one empty, one of an earlier corpus (replaced)
        assert main(["generate", "--out", str(tmp_path / out), "--docs", "20", "--shards", "3"]) == status
    assert not (tmp_path / "new").exists()
    assert list((tmp_path / "empty").iterdir()) == [] and list((tmp_path / "old").iterdir()) == []
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("memdedup generate: ") for line in err), err


@pytest.mark.parametrize("text, needle", [
    ("dedup:\n  threshold: 0.7\ndedup:\n  num_perm: 64\n", "line 3: key 'dedup' appears twice"),
    ("dedup:\n  threshold: 0.7\n  threshold: 0.9\n", "line 3: key 'threshold' appears twice"),
    ("dedup: false\n", "section 'dedup' must be a mapping"),
    ("dedup: []\n", "section 'dedup' must be a mapping"),
    ("dedup: ''\n", "section 'dedup' must be a mapping"),
])
def test_a_config_that_would_be_read_other_than_written_is_refused(tmp_path, capsys, text, needle):
    """A section or key written twice was read as its last copy (a whole dedup: section dropped
    without a word), and a section that is false, [] or '' as no section (found by the CLI
    probe): exit 2, one line naming the file (and line)."""
    from pipelines.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert main(["params", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(cfg) in err[0] and needle in err[0], err


def test_params_plans_what_a_dedup_run_with_the_same_flags_uses(tmp_path, capsys):
    """params ignored --capacity (filters sized for --docs, where dedup sizes them for the
    capacity) and --index lsh (it printed Bloom sizes a bucket-table run does not have). Found
    by the CLI probe. Now the plan is for the capacity, its rate predicted at --docs, and
    --index lsh is refused."""
    from pipelines.cli import main

    def plan(*flags: str) -> dict:
        assert main(["params", *flags, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    sized, at_docs = plan("--docs", "60", "--capacity", "100000"), plan("--docs", "100000")
    assert sized["capacity"] == 100000 and sized["index_bytes"] == at_docs["index_bytes"]
    assert sized["predicted_fp_at_docs"] < at_docs["predicted_fp_at_docs"]
    write_shards(tmp_path / "in")
    assert main(["dedup", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--capacity", "100000", "--quiet"]) == 0
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["index"]["bytes"]["bands"] == sized["index_bytes"]
    assert main(["params", "--index", "lsh"]) == 2
    assert "--index lsh" in capsys.readouterr().err


@pytest.mark.parametrize("flags, needle", [
    (["--near-frac", "nan"], "--near-frac must be >= 0, got nan"),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--canaries-per-repeat", "8"], "--canaries-per-repeat plants canaries only with --canaries"),  # was ignored
])
def test_generate_names_the_option_of_a_bad_value(tmp_path, capsys, flags, needle):
    """--near-frac nan failed with 'cannot convert float NaN to integer' and --seed -1 with
    numpy's 'expected non-negative integer', naming no option (found by the CLI probe)."""
    from pipelines.cli import main

    assert main(["generate", "--out", str(tmp_path / "c"), "--docs", "10", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "c").exists()


def test_a_yaml_float_read_as_a_string_says_how_to_write_it(tmp_path, capsys):
    """YAML 1.1 reads 1e-5 (no dot) as a string: 'fp must be float, got '1e-5'' left the user to
    guess why, the README's flags being written --fp 1e-5 (found by the CLI probe)."""
    from pipelines.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("dedup:\n  fp: 1e-5\n")
    assert main(["params", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "write 1.0e-5" in err[0], err


def test_output_piped_into_a_reader_that_stops_early_ends_quietly(tmp_path):
    """`memdedup params | head -1` printed 'memdedup params: error: Broken pipe' and exit 2, as
    if the input were bad (found by the CLI probe): a reader that stops is no error of ours."""
    p = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "params"], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdout.close()  # the reader is gone before the command writes (it takes ~0.5 s to start)
    err = p.stderr.read()
    assert p.wait(timeout=120) == 141 and err == "", err  # 128 + SIGPIPE, as a shell reports it


def test_a_bad_file_value_and_a_bad_flag_each_are_named_as_theirs(tmp_path, capsys):
    """With ngram: 0 in the file and --threshold 2 on the command line, the error named the file
    and gave the flag's problem ('c.yaml: ... threshold must be in (0, 1), got 2.0'); found by
    the CLI probe. The file's own problem is reported as the file's."""
    from pipelines.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("dedup:\n  ngram: 0\n")
    assert main(["params", "--config", str(cfg), "--threshold", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{cfg}: section dedup" in err[0] and "ngram must be >= 1" in err[0], err


def test_a_capacity_beyond_memory_is_one_line_and_exit_2(tmp_path, capsys):
    """--capacity 10^13 asks for filters of ~32 TiB: numpy's MemoryError ended in a traceback,
    exit 1 (found by the CLI probe). Running out of memory is one line naming what to lower."""
    from pipelines.cli import main

    write_shards(tmp_path / "in")
    assert main(["dedup", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--capacity", str(10**13),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out of memory" in err[0] and "--capacity" in err[0], err
    assert not (tmp_path / "out").exists()


def test_generate_out_of_memory_names_its_own_options(tmp_path, monkeypatch, capsys):
    """generate --docs 3 --doc-bytes 100000000000 (22.5 GiB for the word indices): the line named what to lower
    in dedup, audit, train and profile, none of which generate has (found by the CLI probe)."""
    from pipelines.cli import main

    def too_big(*args, **kwargs):
        raise MemoryError("Unable to allocate 22.5 GiB for an array with shape (3017898769,) and data type int64")

    monkeypatch.setattr("dedup.synthetic.generate_corpus", too_big)
    assert main(["generate", "--out", str(tmp_path / "c"), "--docs", "3", "--doc-bytes", str(10**11)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out of memory" in err[0] and "generate: --docs, --doc-bytes" in err[0], err
    assert not (tmp_path / "c").exists()


def test_a_capacity_no_filter_can_hold_is_refused_by_dedup_and_params(tmp_path, capsys):
    """--capacity 10^16 ended dedup with 'need 1 <= parts <= m_bits / 64, got parts=...' (the
    filter's cache partitions overflow int32) and params printed a plan for it. Both now refuse
    it in one line that names the capacity and the largest filter."""
    from pipelines.cli import main

    write_shards(tmp_path / "in")
    for argv in (["dedup", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--quiet"], ["params"]):
        assert main([*argv, "--capacity", str(10**16)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "capacity" in err[0] and "512 TiB" in err[0] and "parts" not in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_capacity_whose_exact_key_filter_no_filter_can_hold_is_refused(tmp_path, capsys):
    """The check above covered the band filters only: --capacity 10^14 --exact-fp 1e-12 (band
    filters that fit, an exact-key filter of 654 TiB that does not) printed a plan from params
    and would end dedup with the kernels' 'need 1 <= parts' (failed before)."""
    from pipelines.cli import main

    assert main(["params", "--capacity", str(10**14), "--exact-fp", "1e-12"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exact-key filter" in err[0] and "512 TiB" in err[0], err
    assert main(["params", "--capacity", str(10**14)]) == 0  # the default exact_fp's filter fits


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_the_staged_engine_uses_the_cores_it_is_given(tmp_path):
    """--threads was ignored by the staged engine (the Snakemake rule passes the job's cores),
    and its local cluster had a worker per core of the machine, not of the CPUs the process
    may run on (a Slurm allocation, taskset): 4 allocated cores of a 64-core node, 64 workers.
    --threads N now makes N / --threads-per-worker workers (unless --workers is given), and
    the default counts the cores this process may use."""
    write_shards(tmp_path / "in")
    taskset = ["taskset", "-c", str(min(os.sched_getaffinity(0)))] if len(os.sched_getaffinity(0)) > 1 else []
    if not taskset:
        pytest.skip("one core only: nothing to restrict")
    for n, (pre, extra) in enumerate([([], ["--threads", "1"]), (taskset, [])]):
        r = subprocess.run([*pre, sys.executable, "-m", "pipelines.cli", "dedup", str(tmp_path / "in"), "--out",
                            str(tmp_path / f"out{n}"), "--engine", "staged", *extra], capture_output=True, text=True,
                           cwd=ROOT, timeout=300)
        assert r.returncode == 0 and "dask: 1 worker(s)" in r.stderr, (extra, r.stderr[-2000:])


def test_generate_of_no_documents_says_so(tmp_path, capsys):
    """--docs 0 ended its summary with an empty '()'."""
    from pipelines.cli import main

    assert main(["generate", "--docs", "0", "--out", str(tmp_path / "c")]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 0 documents in 4 shard(s) to {tmp_path / 'c'}"


def test_profile_checkpoints_take_a_yaml_list_and_name_a_negative_step():
    """checkpoints: [0, 1000] in a config file (YAML's own list) was refused as 'must be str or
    null', and checkpoints: '-1' was told it 'must name at least 2 steps' (found by the CLI probe)."""
    assert ProfileConfig(checkpoints=[0, 1000]).checkpoint_grid() == [0, 1000]
    with pytest.raises(ValueError, match=r"checkpoint steps must be >= 0, got -1"):
        ProfileConfig(checkpoints="-1,5")


@pytest.mark.parametrize("corpus", ["user's own", "generated without canaries", "demo's, no canary sampled",
                                    "generated with nothing planted"])
def test_the_canary_claims_of_a_corpus_without_canaries_are_not_applicable(tmp_path, capsys, corpus):
    """The workflow over a corpus without canaries (the user's own shards, or a generated corpus of
    canaries_per_repeat 0) wrote checks.json with the canary claims FAILED (rate None) and passed false,
    and `check --strict` exited 1, for claims that cannot apply there. They are not applicable now (passed
    null, the reason given), and passed is that of the claims that apply (null where none does); a corpus
    that has canaries none of whose sequences the audit sampled still fails them. A generated corpus with no exact
    duplicate planted (docs: 10 plants none) failed the first claim, 0 of 0 removed: not applicable either."""
    from pipelines.cli import main

    if corpus != "user's own":  # a generated corpus: its manifest, and the dedup output of it
        canaries = {"64": 4} if corpus.startswith("demo") else {}
        exact = [] if "nothing planted" in corpus else ["d2"]
        (tmp_path / "corpus").mkdir()
        (tmp_path / "corpus" / "manifest.json").write_text(json.dumps(
            {"documents": 3, "shards": ["a.parquet"], "kinds": {"original": 3 - len(exact), "exact": len(exact)},
             "exact_ids": exact, "canary_rows_by_repeats": canaries}))
        (tmp_path / "dedup").mkdir()
        pq.write_table(pa.table({"id": exact, "reason": ["exact"] * len(exact)}, schema=pa.schema(
            [("id", pa.string()), ("reason", pa.string())])), tmp_path / "dedup" / "removed.parquet")
        (tmp_path / "dedup" / "manifest.json").write_text(json.dumps(
            {"stage": "dedup", "inputs": [{"shard": "a.parquet", "rows": 3}]}))
    for name in ("raw", "dedup"):  # audits of documents duplicated 40 times, no canary among them
        d = tmp_path / "audit" / name
        d.mkdir(parents=True)
        pq.write_table(pa.table({"doc_id": ["u-1", "u-2"], "duplicate_count": [40, 1], "extractable": [True, False]}),
                       d / "per_sequence.parquet")
        (d / "manifest.json").write_text('{"stage": "audit"}')
    status = main(["check", str(tmp_path), "--strict"])
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "checks.json").read_text())
    canary_claims = [c for c in result["checks"] if "canaries" in c["name"]]
    assert len(canary_claims) == 2, result
    if corpus.startswith("demo"):
        assert status == 1 and result["passed"] is False and all(c["passed"] is False for c in canary_claims), result
        return
    assert all(c["passed"] is None and "no canaries" in c["not_applicable"] for c in canary_claims), result
    if "nothing planted" in corpus:
        assert result["checks"][0]["not_applicable"] == "no exact duplicates planted in the corpus", result
        assert result["passed"] is None and status == 1 and "FAILED" not in out and out.count("[n/a]") == 3, out
        return
    assert "FAILED" not in out and out.count("[n/a]") == 2, out
    if corpus == "user's own":
        assert result["passed"] is None and status == 1, result  # nothing checked: --strict fails
    else:
        assert result["checks"][0]["passed"] is True and result["passed"] is True and status == 0, result


def test_a_profile_band_not_computed_says_why(capsys):
    """A profile whose band has no critical value blamed '--n-boot 0' whatever the reason: with 200 draws and no
    cell to test (no cohort) it said 'no bootstrap draws: --n-boot 0' (found by the review)."""
    from pipelines.cli import _print_profile

    for n_boot, why in ((0, "no bootstrap draws: --n-boot 0"), (200, "no cell to test")):
        _print_profile({"memorisation": {}, "band": {"critical_value": float("nan")}, "config": {"n_boot": n_boot},
                        "placebo_cells_covering_zero": None}, Path("out"))
        assert f"simultaneous 95% band: none ({why})" in capsys.readouterr().out
