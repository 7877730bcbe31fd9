"""The real Snakemake workflow: lint and dry run of the default config, a reduced config end
to end, and config validation naming the bad key."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml

from audit.config import AuditConfig

ROOT = Path(__file__).resolve().parents[2]


def test_lint_and_dry_run_of_the_default_config(tmp_path, snakemake):
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["out"] = str(tmp_path / "demo")  # keep the dry run's small files out of results/
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    lint = snakemake("--lint", "--configfile", str(tmp_path / "c.yaml"))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    dry = snakemake("-n", "--configfile", str(tmp_path / "c.yaml"))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    for rule in ("corpus", "dedup", "train", "audit", "profile", "report", "checks", "all"):
        assert rule in dry.stdout


def test_a_dry_run_writes_nothing_and_still_shows_what_a_config_edit_reruns(tmp_path, snakemake):
    """The Snakefile wrote OUT/config/<section>.yaml as it was read, so ``snakemake -n`` (and
    ``--lint``) made OUT and rewrote a stage's file after an edit. Neither writes anything now;
    the dry run after an edit still lists the stage's rerun, also after an edit undone."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    out = tmp_path / "run"
    cfg["out"] = str(out)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    args = ("-s", str(ROOT / "Snakefile"), "--configfile", str(tmp_path / "c.yaml"))
    for mode in (("-n",), ("--lint",)):
        r = snakemake(*args, *mode, cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert not out.exists(), (mode, sorted(str(p.relative_to(out)) for p in out.rglob("*")))
    _as_finished(snakemake, (*args, "--cores", "1"), out, tmp_path)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted((out / "config").iterdir())}
    assert before, "no stage config written by the run"
    cfg["audit"]["n_boot"] = 50
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    dry = snakemake(*args, "-n", cwd=tmp_path)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted((out / "config").iterdir())} == before
    rerun = {"stage_config": 1, "audit": 2, "checks": 1, "report": 1, "all": 1}
    assert _jobs(dry.stdout + dry.stderr) == rerun, dry.stdout + dry.stderr
    # the edit's file written (the earlier one removed), the edit undone: the earlier file is missing again
    assert snakemake(*args, "--cores", "1", "--until", "stage_config", cwd=tmp_path).returncode == 0
    audit = [p for p in (out / "config").iterdir() if p.name.startswith("audit")]
    # the section with every key, defaults filled in
    assert len(audit) == 1 and yaml.safe_load(audit[0].read_text()) == {"audit": AuditConfig(**cfg["audit"]).to_dict()}
    cfg["audit"]["n_boot"] -= 50
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    dry = snakemake(*args, "-n", cwd=tmp_path)
    assert _jobs(dry.stdout + dry.stderr) == rerun, dry.stdout + dry.stderr


def test_unknown_config_key_is_named(tmp_path, snakemake):
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["out"] = str(tmp_path / "x")
    cfg["corpus"]["shardz"] = 3
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "--configfile", str(tmp_path / "bad.yaml"))
    assert r.returncode != 0 and "shardz" in r.stdout + r.stderr


def test_a_bad_stage_section_stops_the_workflow_before_any_job_naming_the_key(tmp_path, snakemake):
    """An unknown key or a bad value in a stage section (dedup, train, audit, profile) passed the
    schema, started the jobs, and failed that stage's rule with the reason only in its log
    (Snakemake said 'Error in rule dedup'); the stage config files stayed behind. Now the
    workflow stops at once with the key in Snakemake's own output, and writes nothing. So does
    train.holdout 0, valid for `memdedup train` but not in the workflow, whose profile needs held-out
    controls: it trained and audited both models, then failed in profile-raw.log (found by the tools
    probe; failed before)."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    for section, edit, needle in (("dedup", {"thresold": 0.8}, "unknown key dedup.thresold"),
                                  ("audit", {"n_boot": 5}, "n_boot"), ("train", {"holdout": 0.0}, "train.holdout")):
        bad = {**cfg, "out": str(tmp_path / section), section: {**(cfg.get(section) or {}), **edit}}
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
        r = snakemake("-n", "--configfile", str(tmp_path / "bad.yaml"))
        assert r.returncode != 0 and needle in r.stdout + r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
        assert "Error in rule" not in r.stdout + r.stderr and not (tmp_path / section).exists()


def test_the_config_schema_validates_without_a_version_warning(tmp_path, snakemake):
    """configs/schema.yaml declared JSON Schema draft-07, which Snakemake 9.15 does not have
    a validator for: every call printed "No validator found for JSON Schema version identifier"
    and validated with 2020-12 anyway. The schema declares 2020-12; it still rejects an
    unknown top-level key and a value of the wrong type, naming them."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["out"] = str(tmp_path / "x")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    ok = snakemake("-n", "--configfile", str(tmp_path / "c.yaml"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "No validator found" not in ok.stdout + ok.stderr and "may not be validated" not in ok.stdout + ok.stderr
    for name, edit in {"outz": lambda c: c.update(outz=1), "many": lambda c: c["corpus"].update(docs="many")}.items():
        bad = yaml.safe_load((tmp_path / "c.yaml").read_text())
        edit(bad)
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
        r = snakemake("-n", "--configfile", str(tmp_path / "bad.yaml"))
        assert r.returncode != 0 and name in r.stdout + r.stderr, r.stdout + r.stderr


def test_reduced_config_end_to_end(reduced_workflow, snakemake):
    """The reduced config (conftest.reduced_config) run locally; test_slurm.py runs the same
    config on Slurm and compares the outputs with this run's."""
    r, out = reduced_workflow.local_result, reduced_workflow.local_out
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    for f in ("corpus/manifest.json", "dedup/manifest.json", "train/raw/manifest.json", "train/dedup/manifest.json",
              "audit/raw/manifest.json", "audit/dedup/manifest.json", "profile/raw/manifest.json",
              "report/comparison.html", "checks.json"):
        assert (out / f).exists(), f
    for log in ("dedup", "train-raw", "audit-dedup", "report"):
        assert (out / "logs" / f"{log}.log").exists()
    for log in (out / "logs").glob("*.log"):  # transformers' own bars stay out of the logs
        assert "Loading weights" not in log.read_text() and "Writing model shards" not in log.read_text(), log.name
    checks = json.loads((out / "checks.json").read_text())
    exact = next(c for c in checks["checks"] if "exact" in c["name"])
    assert exact["passed"] and exact["planted"] == 10  # 5% of 200 planted exact duplicates, all removed
    # issue #13: canary exposure by planted copies, for both models
    exposure = checks["exposure_by_copies"]
    assert set(exposure) == {"raw", "dedup"}, exposure
    planted = [1, 2, 4, 8, 16, 32, 64]  # one canary each; those the model's run held out are left out, counted
    for e in exposure.values():
        assert {r["copies"] for r in e["by_copies"]} <= set(planted), e
        assert sum(r["canaries"] for r in e["by_copies"]) + e["held_out_canaries"] == len(planted), e
        assert all(0 <= r["mean_exposure"] <= e["log2_space"] for r in e["by_copies"])
    # issue #13: the profile page shows the band, the lead cells, the event-time curve and cohort sizes
    page = (out / "report" / "raw.html").read_text(encoding="utf-8")
    for text in ("simultaneous 95% band", "Lead cells", "Event-time curve", "merged checkpoint cohorts",
                 'alt="event-time curve"', "end of epoch 1"):
        assert text in page, text
    # issue #13 §5: the comparison page shows that exposure (the report rule reads checks.json)
    comparison = (out / "report" / "comparison.html").read_text(encoding="utf-8")
    assert "<h2>Canary exposure by planted copies</h2>" in comparison
    # Nothing to redo: a second run is a no-op.
    again = snakemake("--cores", "2", "--configfile", str(reduced_workflow.local_config), "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_a_users_own_shards_replace_the_demo_corpus(tmp_path, snakemake):
    """--configfile with corpus.generate false: no corpus rule, and every stage reads the
    user's shards (shown by the dry run's printed commands)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = tmp_path / "mydata"
    shards.mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": ["hello world"]}), shards / "part-0.parquet")
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["out"] = str(tmp_path / "run")
    cfg["corpus"].update(generate=False, shards=[str(shards / "*.parquet")])
    (tmp_path / "user.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "-p", "--configfile", str(tmp_path / "user.yaml"))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "rule corpus" not in out and "memdedup generate" not in out
    assert f"memdedup dedup '{shards}/*.parquet'" in out
    assert f"memdedup train '{shards}/*.parquet'" in out and f"--corpus '{shards}/*.parquet'" in out


def test_the_workflow_over_a_users_corpus_completes_with_the_canary_claims_not_applicable(tmp_path, snakemake):
    """The workflow over the user's own shards (JSONL here, no canaries) wrote checks.json with the
    demo's canary claims FAILED and passed false; now every stage runs, and checks.json says those
    claims do not apply (passed null, with the reason), failing none.

    The same run starts where killed audit and profile jobs left the temporaries of the files they were
    writing (.per_sequence.parquet.tmp-PID-XXXX; SIGKILL of Snakemake's process group, seen by the
    interruption probe): Snakemake's rerun completed those stages but the temporaries stayed among their
    outputs for good. Both stages now remove a killed run's temporaries before they write, as train,
    dedup and report do."""
    from dedup.io import tmp_path as temporary
    from dedup.synthetic import generate_corpus, write_shards

    from .conftest import reduced_config

    write_shards(generate_corpus(200, mean_bytes=400, seed=1), tmp_path / "mydata", 2, fmt="jsonl")
    out = tmp_path / "run"
    cfg = reduced_config(out)
    cfg["corpus"].update(generate=False, shards=[str(tmp_path / "mydata")])
    cfg["audit"].update(n_sequences=40, n_boot=0)  # smaller still: only the checks are read
    cfg["profile"].update(n_treated=20, n_control=10, n_boot=0)
    (tmp_path / "user.yaml").write_text(yaml.safe_dump(cfg))
    left = [temporary(out / "audit" / "raw" / "per_sequence.parquet"), temporary(out / "profile" / "raw" / "profile.parquet")]
    for t in left:  # what the killed jobs left
        t.parent.mkdir(parents=True)
        t.write_bytes(b"PAR1 half")
    r = snakemake("-s", str(ROOT / "Snakefile"), "--cores", "2", "--configfile", str(tmp_path / "user.yaml"),
                  cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (out / "report" / "comparison.html").exists()
    checks = json.loads((out / "checks.json").read_text())
    assert checks["passed"] is None and len(checks["checks"]) == 2, checks
    assert all(c["passed"] is None and "no canaries" in c["not_applicable"] for c in checks["checks"]), checks
    assert "FAILED" not in (out / "logs" / "checks.log").read_text()
    for d in ("audit/raw", "profile/raw"):
        assert (out / d / "manifest.json").exists()
        assert not [p.name for p in (out / d).iterdir() if ".tmp-" in p.name], d


def test_the_template_runs_on_one_machine_as_its_header_says(tmp_path, snakemake):
    """configs/template.yaml, copied with only out and corpus.shards edited, ran as its header
    says for one machine (snakemake --cores N --configfile my.yaml) handed dedup
    `--scheduler /shared/dask/scheduler.json`: a scheduler file that is not there. It asks for
    no cluster now, and passes the schema and the stage sections' checks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = tmp_path / "mydata"
    shards.mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": ["hello world"]}), shards / "part-0.parquet")
    cfg = yaml.safe_load((ROOT / "configs" / "template.yaml").read_text())
    cfg["out"] = str(tmp_path / "run")
    cfg["corpus"]["shards"] = [str(shards / "*.parquet")]
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "-p", "--configfile", str(tmp_path / "my.yaml"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert f"memdedup dedup '{shards}/*.parquet'" in r.stdout + r.stderr
    assert "--scheduler" not in r.stdout + r.stderr and "--workers" not in r.stdout + r.stderr


def test_dask_scheduler_in_the_config_reaches_the_dedup_command(tmp_path, snakemake):
    """README "Running on a cluster": `dask.scheduler` set to a scheduler file (of Dask
    workers running as Slurm jobs, test_slurm.py) makes the dedup rule run
    `memdedup dedup ... --scheduler FILE`, the command tested there."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["out"] = str(tmp_path / "run")
    cfg["dask"]["scheduler"] = "/shared/scheduler.json"
    (tmp_path / "dask.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "-p", "--configfile", str(tmp_path / "dask.yaml"))
    assert r.returncode == 0, r.stdout + r.stderr
    dedup = next(line for line in (r.stdout + r.stderr).splitlines() if "memdedup dedup" in line)
    assert "--scheduler /shared/scheduler.json " in dedup


def test_a_killed_staged_dedup_job_resumes_when_snakemake_reruns_it(tmp_path, snakemake, monkeypatch):
    """A dedup job killed mid-run (a lost node, a Slurm time limit) is rerun by Snakemake; the
    staged engine resumes it, keeping its finished tasks, rather than starting over (the rule
    passes --force only when OUT holds no unfinished run to resume: --force starts over)."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["out"] = str(tmp_path / "run")
    cfg["corpus"].update(docs=300, n_shards=2)
    cfg["dask"]["workers"] = 1
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    # in tmp_path: the killed Snakemake's lock and incomplete markers stay out of the repository's .snakemake/
    args = (str(tmp_path / "run" / "dedup" / "manifest.json"), "-s", str(ROOT / "Snakefile"), "--cores", "2",
            "--configfile", str(tmp_path / "c.yaml"))
    monkeypatch.setenv("MEMDEDUP_KILL_AT", "band:3")  # SIGKILLs the run's process group: Snakemake too
    killed = snakemake(*args, cwd=tmp_path, kill_after=600)
    assert killed.returncode in (-9, 137) and (tmp_path / "run" / "dedup" / "_work" / "run.json").exists()
    monkeypatch.delenv("MEMDEDUP_KILL_AT")
    assert snakemake(*args, "--unlock", cwd=tmp_path).returncode == 0  # what Snakemake asks for after a kill
    again = snakemake(*args, "--rerun-incomplete", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    log = (tmp_path / "run" / "logs" / "dedup.log").read_text()
    assert "resuming the unfinished run" in log and "clearing" not in log, log


def _jobs(dry_run_output: str) -> dict[str, int]:
    """The "Job stats" table of a dry run: rule -> jobs to run."""
    jobs, table = {}, False
    for line in dry_run_output.splitlines():
        if line.startswith("job ") and "count" in line:
            table = True
        elif table and line.split() and line.split()[0] == "total":
            break
        elif table and len(line.split()) == 2 and line.split()[1].isdigit():
            jobs[line.split()[0]] = int(line.split()[1])
    return jobs


STAGE_OUTPUTS = ("corpus/manifest.json", "dedup/manifest.json", "train/raw/manifest.json", "train/dedup/manifest.json",
                 "audit/raw/manifest.json", "audit/dedup/manifest.json", "profile/raw/manifest.json", "checks.json",
                 "report/comparison.html")


def _as_finished(snakemake, args: tuple[str, ...], out: Path, cwd: Path, outputs: tuple[str, ...] = STAGE_OUTPUTS):
    """Make ``out`` a finished run's, as far as Snakemake (``args``) can tell: each stage's output
    a stand-in, the stage sections' files written by their jobs, then --touch ordering the times.
    The stage_config jobs (one spawned Snakemake each, ~2 s) run side by side: --cores 4 after
    the caller's --cores (the last one counts); one at a time they took ~9 s of each test."""
    for f in outputs:
        (out / f).parent.mkdir(parents=True, exist_ok=True)
        (out / f).write_text("{}")
    for step in (("--until", "stage_config", "--cores", "4"), ("--touch",)):
        r = snakemake(*args, *step, cwd=cwd)
        assert r.returncode == 0, r.stdout + r.stderr
    again = snakemake(*args, "-n", cwd=cwd)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout + again.stderr


def test_a_run_with_the_stage_config_files_of_earlier_versions_is_not_redone(tmp_path, snakemake):
    """Earlier versions wrote OUT/config/<section>.yaml; a finished run of theirs is up to date
    while a section holds what its file does, and an edit of that section reruns its stage."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    out = tmp_path / "run"
    cfg["out"] = str(out)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    (out / "config").mkdir(parents=True)
    for stage in ("dedup", "train", "audit", "profile"):  # as those versions wrote them
        (out / "config" / f"{stage}.yaml").write_text(yaml.safe_dump({stage: cfg[stage]}, sort_keys=True))
    args = ("-s", str(ROOT / "Snakefile"), "--configfile", str(tmp_path / "c.yaml"), "--cores", "1")
    _as_finished(snakemake, args, out, tmp_path)  # "Nothing to be done"
    cfg["audit"]["n_boot"] = 50
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    dry = snakemake(*args, "-n", cwd=tmp_path)
    assert _jobs(dry.stdout + dry.stderr) == {"stage_config": 1, "audit": 2, "checks": 1, "report": 1, "all": 1}, \
        dry.stdout + dry.stderr
    assert snakemake(*args, "--until", "stage_config", cwd=tmp_path).returncode == 0
    names = sorted(p.name for p in (out / "config").iterdir())
    assert len([n for n in names if re.fullmatch(r"audit-[0-9a-f]{12}\.yaml", n)]) == 1, names  # audit.yaml gone
    assert "audit.yaml" not in names and "dedup.yaml" in names, names


def test_a_config_change_reruns_only_the_stages_it_affects(tmp_path, snakemake):
    """Every stage read one run_config.yaml holding all four stage sections, so an edit to
    one section (audit.n_boot) made Snakemake redo dedup and both trainings too. Each rule
    now reads its own section's file: an edit reruns that stage and what depends on it."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    out = tmp_path / "run"
    cfg["out"] = str(out)
    base = tmp_path / "c.yaml"
    base.write_text(yaml.safe_dump(cfg))
    args = ("-s", str(ROOT / "Snakefile"), "--cores", "1")
    _as_finished(snakemake, (*args, "--configfile", str(base)), out, tmp_path)
    edits = {("audit", "n_boot", 50): {"audit": 2, "checks": 1, "report": 1, "all": 1},
             ("profile", "n_boot", 50): {"profile": 1, "report": 1, "all": 1},
             ("train", "epochs", 2): {"train": 2, "audit": 2, "profile": 1, "checks": 1, "report": 1, "all": 1},
             ("dedup", "threshold", 0.7): {"dedup": 1, "train": 1, "audit": 2, "checks": 1, "report": 1, "all": 1}}
    for (section, key, value), expected in edits.items():
        edited = yaml.safe_load(base.read_text())
        edited[section][key] = value
        (tmp_path / "edited.yaml").write_text(yaml.safe_dump(edited))
        dry = snakemake(*args, "-n", "--configfile", str(tmp_path / "edited.yaml"), cwd=tmp_path)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert _jobs(dry.stdout + dry.stderr) == {"stage_config": 1, **expected}, (section, key, dry.stdout + dry.stderr)


def test_a_config_edit_that_cannot_change_a_stages_outputs_reruns_nothing(tmp_path, snakemake):
    """After a finished run, `-n` listed reruns for edits that change no stage's output: corpus.shards,
    unread with a generated corpus, or the corpus keys in another order (the corpus rule's params, so
    every stage); the dedup engine (dask.workers, dask.scheduler: fused and staged write the same bytes;
    dedup and all after it); a default written out (dedup.ngram: 5, profile.seed: 0, train.n_head: 4: the
    section's file was named by the digest of its text as written). Each is "Nothing to be done" now, also
    after the edit's stage_config run; an edit that does change outputs still reruns its stage."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    out = tmp_path / "run"
    cfg["out"] = str(out)
    base = tmp_path / "c.yaml"
    base.write_text(yaml.safe_dump(cfg, sort_keys=False))
    args = ("-s", str(ROOT / "Snakefile"), "--cores", "1")
    _as_finished(snakemake, (*args, "--configfile", str(base)), out, tmp_path)
    # the corpus job's record too (Snakemake's params of a job are in the records of the jobs that ran)
    assert snakemake(*args, "--configfile", str(base), "--touch", "--forcerun", "corpus", cwd=tmp_path).returncode == 0
    edits = {"corpus.shards": lambda c: c["corpus"].update(shards=[str(tmp_path)]),
             "corpus reordered": lambda c: c.update(corpus=dict(reversed(c["corpus"].items()))),
             "dask.workers": lambda c: c["dask"].update(workers=2),
             "dask.scheduler": lambda c: c["dask"].update(scheduler="/shared/scheduler.json"),
             "defaults": lambda c: (c["dedup"].update(ngram=5), c["profile"].update(seed=0),
                                    c["train"].update(n_head=4))}
    for name, edit in edits.items():
        edited = yaml.safe_load(base.read_text())
        edit(edited)
        (tmp_path / "edited.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
        for step in ("--until", "stage_config"), ("-n",):
            r = snakemake(*args, *step, "--configfile", str(tmp_path / "edited.yaml"), cwd=tmp_path)
            assert r.returncode == 0, r.stdout + r.stderr
        assert "Nothing to be done" in r.stdout + r.stderr, (name, r.stdout + r.stderr)
    edited = yaml.safe_load(base.read_text())
    edited["dedup"]["ngram"] = 4
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(edited))
    dry = snakemake(*args, "-n", "--configfile", str(tmp_path / "edited.yaml"), cwd=tmp_path)
    assert _jobs(dry.stdout + dry.stderr) == {"stage_config": 1, "dedup": 1, "train": 1, "audit": 2, "checks": 1,
                                              "report": 1, "all": 1}, dry.stdout + dry.stderr


def test_a_shard_added_to_the_corpus_reruns_the_stages_that_read_it(tmp_path, snakemake):
    """corpus.shards (directories, globs) was only text in the commands, so a file added to
    the corpus after a run left dedup, training and audits "up to date". The shards dedup
    would read are now the rules' inputs: adding one reruns every stage that reads the corpus."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = tmp_path / "mydata"
    shards.mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": ["hello world"]}), shards / "part-0.parquet")
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    out = tmp_path / "run"
    cfg["out"] = str(out)
    cfg["corpus"].update(generate=False, shards=[str(shards)])
    (tmp_path / "user.yaml").write_text(yaml.safe_dump(cfg))
    args = ("-s", str(ROOT / "Snakefile"), "--cores", "1", "--configfile", str(tmp_path / "user.yaml"))
    _as_finished(snakemake, args, out, tmp_path, STAGE_OUTPUTS[1:])  # no corpus rule
    pq.write_table(pa.table({"id": ["b"], "text": ["hello again"]}), shards / "part-1.parquet")
    dry = snakemake(*args, "-n", cwd=tmp_path)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert _jobs(dry.stdout + dry.stderr) == {"dedup": 1, "train": 2, "audit": 2, "profile": 1, "checks": 1,
                                              "report": 1, "all": 1}, dry.stdout + dry.stderr


def test_a_train_option_edited_after_a_run_retrains(tmp_path, snakemake):
    """Snakemake reruns the train rule after an edit to the train section, into the same run
    directory, where `memdedup train` refused the earlier run's other config ("choose another
    --out"): the workflow failed until the user deleted it. The rule now passes --replace."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["out"] = str(tmp_path / "run")
    cfg["corpus"].update(docs=200, canaries_per_repeat=1, n_shards=2)
    cfg["train"].update(epochs=1, n_layer=1, n_embd=32, n_head=2)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    target = str(tmp_path / "run" / "train" / "raw" / "manifest.json")
    args = (target, "-s", str(ROOT / "Snakefile"), "--cores", "2")
    first = snakemake(*args, "--configfile", str(tmp_path / "c.yaml"), cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    cfg["train"]["epochs"] = 2
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    again = snakemake(*args, "--configfile", str(tmp_path / "c.yaml"), cwd=tmp_path)
    log = (tmp_path / "run" / "logs" / "train-raw.log").read_text()
    assert again.returncode == 0, log
    assert json.loads(Path(target).read_text())["config"]["epochs"] == 2


def test_a_corpus_job_killed_mid_write_is_redone_by_a_rerun(tmp_path, snakemake):
    """A corpus job killed while it wrote a shard (SIGKILL of Snakemake's process group, seen by
    the interruption probe) leaves the shards written so far and the writer's temporary
    (.part-00001.parquet.tmp-PID-XXXX), no manifest. The rerun refused the directory ("holds
    files no earlier generate run wrote") until the user deleted the temporary; a killed
    writer's temporaries of generate's own files are now removed with them."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["out"] = str(tmp_path / "run")
    cfg["corpus"].update(docs=200, canaries_per_repeat=1, n_shards=2)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    corpus = tmp_path / "run" / "corpus"
    corpus.mkdir(parents=True)  # what the kill left
    (corpus / "part-00000.parquet").write_bytes(b"PAR1 half of an earlier run")
    from dedup.io import tmp_path as temporary

    temporary(corpus / "part-00001.parquet").write_bytes(b"PAR1 half")  # .part-00001.parquet.tmp-PID-XXXX
    args = (str(corpus / "manifest.json"), "-s", str(ROOT / "Snakefile"), "--cores", "1",
            "--configfile", str(tmp_path / "c.yaml"))
    r = snakemake(*args, cwd=tmp_path)
    assert r.returncode == 0, (tmp_path / "run" / "logs" / "corpus.log").read_text()
    assert sorted(p.name for p in corpus.iterdir()) == ["manifest.json", "part-00000.parquet", "part-00001.parquet"]


def test_every_shell_command_quotes_its_paths(tmp_path, snakemake):
    """An OUT, a scheduler file or a shard whose path holds a space or a quote went into the
    rules' shell commands as it was: `--out /data/my run/x` is two arguments (found by the staged
    engine's probe with a scheduler file at such a path). Every path is now quoted: each command,
    split as the shell splits it, gives the paths whole."""
    import shlex

    d = tmp_path / "it's a dir"
    shards = [d / "corpus one" / f"part '{i}'.parquet" for i in range(2)]
    for s in shards:
        s.parent.mkdir(parents=True, exist_ok=True)
        s.write_bytes(b"")
    out, sched = d / "out dir", d / "sched file.json"
    cfg = {"out": str(out), "corpus": {"generate": False, "shards": [str(s) for s in shards]},
           "dask": {"scheduler": str(sched)}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    dry = snakemake("-n", "-p", "--configfile", str(tmp_path / "c.yaml"))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    commands = [shlex.split(line.split("Shell command: ", 1)[1]) for line in dry.stdout.splitlines()
                if line.startswith("Shell command: ") and line != "Shell command: None"]
    assert {c[c.index("memdedup") + 1] for c in commands if "memdedup" in c} >= {"dedup", "train", "audit", "report"}
    for c in commands:
        for flag in ("--out", "--config", "--dedup-dir", "--profile-dir", "--run", "--checks"):
            if flag in c:
                assert c[c.index(flag) + 1].startswith(str(out)), (flag, c)
        assert c[c.index(">") + 1].startswith(str(out / "logs")), c
        if "dedup" in c and "--scheduler" in c:
            assert c[c.index("--scheduler") + 1] == str(sched) and c[2:4] == [str(s) for s in shards], c


def test_a_stage_manifest_deleted_after_a_run_reruns_that_stage(tmp_path, snakemake):
    """README: "a stage is done exactly when its manifest exists". rule all asked only for the
    report and checks.json, so after a finished run a deleted stage manifest (profile/raw,
    dedup: the stage's outputs gone, or to be redone) left Snakemake with "Nothing to be done".
    Every stage's manifest is a target now: the deleted one reruns its stage and what reads it."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    out = tmp_path / "run"
    cfg["out"] = str(out)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    args = ("-s", str(ROOT / "Snakefile"), "--configfile", str(tmp_path / "c.yaml"), "--cores", "1")
    _as_finished(snakemake, args, out, tmp_path)
    for stage, rerun in (("profile/raw", {"profile": 1, "report": 1, "all": 1}),
                         ("dedup", {"dedup": 1, "train": 1, "audit": 2, "checks": 1, "report": 1, "all": 1})):
        manifest = out / stage / "manifest.json"
        kept = manifest.read_bytes()
        manifest.unlink()
        dry = snakemake(*args, "-n", cwd=tmp_path)
        assert _jobs(dry.stdout + dry.stderr) == rerun, (stage, dry.stdout + dry.stderr)
        manifest.write_bytes(kept)
        assert snakemake(*args, "--touch", cwd=tmp_path).returncode == 0


def test_out_is_refused_when_empty_and_used_as_its_plain_path(tmp_path, snakemake):
    """`out: ""` (an unset variable in a generated config) passed the schema and made every
    output a path at the root of the filesystem (/corpus/manifest.json, /logs/...); it is refused
    now, naming out. `out: run/` and `out: ./run` made every rule's path `run//x` or `./run/x`, and
    Snakemake printed a warning ("can lead to inconsistent results") per path, 133 lines per dry
    run; they are used as `run`."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["out"] = ""
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "-s", str(ROOT / "Snakefile"), "--configfile", str(tmp_path / "c.yaml"), cwd=tmp_path)
    assert r.returncode != 0 and "'out'" in r.stdout + r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
    for out in ("run/", "./run"):
        cfg["out"] = out
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        r = snakemake("-n", "-s", str(ROOT / "Snakefile"), "--configfile", str(tmp_path / "c.yaml"), cwd=tmp_path)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert "output: run/corpus/manifest.json" in r.stdout, r.stdout[-2000:]
        assert "double '/'" not in r.stdout + r.stderr and "starts with './'" not in r.stdout + r.stderr, out


def test_a_whole_number_written_as_a_float_is_refused_before_any_job(tmp_path, snakemake):
    """JSON Schema's integer takes 1000.0 (`docs: 1.0e+3`), so the schema passed it, and the corpus
    rule ran `memdedup generate --docs 1000.0`, refused in corpus.log after the run had started
    (dask.workers: 2.0 likewise in dedup.log). It is refused before any job, naming the key, as a
    stage section's `n_boot: 40.0` is."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["out"] = str(tmp_path / "run")
    for section, key, value in (("corpus", "docs", 1000.0), ("dask", "workers", 2.0)):
        bad = {**cfg, section: {**cfg[section], key: value}}
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
        r = snakemake("-n", "--configfile", str(tmp_path / "bad.yaml"))
        assert r.returncode != 0 and f"{section}.{key}" in r.stdout + r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
        assert not (tmp_path / "run").exists()


def test_the_default_config_is_loaded_wherever_snakemake_runs(tmp_path, snakemake):
    """`configfile: "configs/default.yaml"` is read from the working directory: `snakemake -s
    memdedup/Snakefile` from a project folder failed without --configfile ("configfile ... not
    present") and, with a config giving only the keys it changes, failed the schema ("'corpus'
    is a required property"), which from the repository filled in the rest from default.yaml.
    The default config is the Snakefile's own now, and a partial config extends it anywhere."""
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({"out": str(tmp_path / "run"), "dedup": {"threshold": 0.7}}))
    for extra in ((), ("--configfile", str(tmp_path / "mine.yaml"))):
        r = snakemake("-n", "-p", "-s", str(ROOT / "Snakefile"), *extra, cwd=tmp_path)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert "memdedup generate" in r.stdout and "--docs 800 " in r.stdout, r.stdout[-2000:]
    assert not (tmp_path / "results").exists() and not (tmp_path / "run").exists()


def test_a_key_written_twice_in_the_config_is_refused(tmp_path, snakemake):
    """Snakemake's YAML loader keeps a duplicated key's last copy: `threshold: 0.7` then
    `threshold: 0.9` in the dedup section ran at 0.9, saying nothing, while `memdedup dedup
    --config` on the same file refuses it. The workflow refuses it too, naming the file and line."""
    cfg = tmp_path / "dup.yaml"
    cfg.write_text(f"out: {tmp_path / 'run'}\ndedup:\n  threshold: 0.7\n  num_perm: 128\n  threshold: 0.9\n")
    r = snakemake("-n", "--configfile", str(cfg))
    assert r.returncode != 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert f"{cfg}" in r.stdout + r.stderr and "'threshold' appears twice" in r.stdout + r.stderr, r.stdout + r.stderr
    # a JSON config, which Snakemake reads as JSON first, may be indented with tabs (YAML refuses them)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"out": str(tmp_path / "run"), "dedup": {"threshold": 0.7}}, indent="\t"))
    r = snakemake("-n", "--configfile", str(cfg))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def test_dedup_emit_removed_is_refused_before_any_job(tmp_path, snakemake):
    """`dedup: {emit: removed}` (no kept shards) is a valid dedup config, so the workflow started,
    and the dedup model's training failed after dedup ("OUT/dedup/kept: no such file or
    directory", in train-dedup.log). The workflow trains on the kept shards: it refuses that
    value before any job, naming it."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["out"] = str(tmp_path / "run")
    cfg["dedup"]["emit"] = "removed"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "--configfile", str(tmp_path / "c.yaml"))
    assert r.returncode != 0 and "dedup.emit" in r.stdout + r.stderr, r.stdout[-2000:] + r.stderr[-2000:]


def test_a_text_column_set_in_one_stage_only_is_refused_before_any_job(tmp_path, snakemake):
    """configs/template.yaml sets text_column in its dedup section only; a corpus whose text is
    in `content`, with dedup.text_column edited, ran dedup and then failed the raw model's
    training ("no text column 'text'", in train-raw.log). Every stage reads the same corpus
    columns: a text_column that differs between dedup, train and audit is refused at once."""
    cfg = yaml.safe_load((ROOT / "configs" / "template.yaml").read_text())
    shards = tmp_path / "mydata"
    shards.mkdir()
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["a"], "content": ["hello world"]}), shards / "part-0.parquet")
    cfg["out"] = str(tmp_path / "run")
    cfg["corpus"]["shards"] = [str(shards)]
    cfg["dedup"]["text_column"] = "content"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "--configfile", str(tmp_path / "c.yaml"))
    assert r.returncode != 0 and "text_column" in r.stdout + r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
    for section in ("train", "audit"):
        cfg[section]["text_column"] = "content"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "--configfile", str(tmp_path / "c.yaml"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def test_a_generated_corpus_of_no_shards_or_empty_documents_is_refused_before_any_job(tmp_path, snakemake):
    """The schema takes corpus.n_shards and doc_bytes of 0 (the template's "unused" values, for a
    corpus of the user's shards), also with generate: true, and the corpus job then failed on
    `generate --shards 0` (or --doc-bytes 0), in corpus.log. The schema refuses them there; so
    corpus.seed -1, which the schema took and `generate --seed -1` refused in the corpus job (found
    by the tools probe; failed before)."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["out"] = str(tmp_path / "run")
    for key, value in (("n_shards", 0), ("doc_bytes", 0), ("seed", -1)):
        bad = {**cfg, "corpus": {**cfg["corpus"], key: value}}
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
        r = snakemake("-n", "--configfile", str(tmp_path / "bad.yaml"))
        assert r.returncode != 0 and key in r.stdout + r.stderr, r.stdout[-2000:] + r.stderr[-2000:]


def test_braces_in_a_shard_path_or_in_out(tmp_path, snakemake):
    """Snakemake reads `{x}` in a file name as a wildcard: a shard under `d{1}/` stopped the
    workflow with "WildcardError in rule dedup ... '1'", and `out: run{x}` with one in rule all.
    Snakemake has no escape for a brace in a file name: the shard is named, and out with a
    brace is refused by the schema, naming out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = tmp_path / "d{1}"
    shards.mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": ["hello world"]}), shards / "p{a}.parquet")
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["out"] = str(tmp_path / "run")
    cfg["corpus"].update(generate=False, shards=[str(shards)])
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "--configfile", str(tmp_path / "c.yaml"))
    assert r.returncode != 0 and f"corpus.shards: {shards}/p{{a}}.parquet: a path holding {{" in r.stdout + r.stderr, \
        r.stdout[-2000:] + r.stderr[-2000:]
    cfg["out"] = str(tmp_path / "run{x}")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "--configfile", str(tmp_path / "c.yaml"))
    assert r.returncode != 0 and "['out']" in r.stdout + r.stderr, r.stdout[-2000:] + r.stderr[-2000:]


def test_a_tilde_in_out_or_a_shard_path_is_the_home_directory(tmp_path, snakemake, monkeypatch):
    """`out: ~/runs/x` made a folder named `~` in the working directory (Snakemake expands no `~`),
    and `shards: [~/data]` stopped the workflow ("~/data: no such file or directory"). Both are
    the user's home directory now, as in a shell."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "data").mkdir(parents=True)
    pq.write_table(pa.table({"id": ["a"], "text": ["hello world"]}), tmp_path / "home" / "data" / "p.parquet")
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["out"] = "~/runs/x"
    cfg["corpus"].update(generate=False, shards=["~/data"])
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "-p", "-s", str(ROOT / "Snakefile"), "--configfile", str(tmp_path / "c.yaml"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    home = tmp_path / "home"
    assert f"memdedup dedup {home}/data --out {home}/runs/x/dedup " in r.stdout, r.stdout[-3000:]


def test_an_out_that_is_a_file_or_an_empty_shard_path_is_named_before_any_job(tmp_path, snakemake):
    """`out:` naming an existing file ended the dry run in a 40-line Snakemake traceback
    (NotADirectoryError from its DAG inventory), naming no key; `shards: [""]` was a ValueError
    naming 'inputs', not corpus.shards (found by the tools probe; failed before). Each is now one
    WorkflowError naming its key."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    (tmp_path / "afile").write_text("x")
    users = {"generate": False, "shards": [""]}
    for key, bad in (("out: ", {"out": str(tmp_path / "afile")}),
                     ("corpus.shards: ", {"out": str(tmp_path / "run"), "corpus": users})):
        (tmp_path / "c.yaml").write_text(yaml.safe_dump({**cfg, **bad}))
        r = snakemake("-n", "--configfile", str(tmp_path / "c.yaml"))
        text = r.stdout + r.stderr
        assert r.returncode != 0 and "WorkflowError" in text and key in text and "Traceback" not in text, text[-3000:]
    assert (tmp_path / "afile").read_text() == "x"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))  # a name not UTF-8: said as the config's key, not --out
    r = snakemake("-n", "--configfile", str(tmp_path / "c.yaml"), "--config", "out=" + os.fsdecode(b"o\xffx"))
    said = [line for line in (r.stdout + r.stderr).splitlines() if "not valid UTF-8" in line]
    assert r.returncode != 0 and said and "config: out: " in said[0] and "--out" not in said[0], r.stderr[-3000:]


def test_dask_scheduler_and_workers_together_are_refused_before_any_job(tmp_path, snakemake):
    """`dask: {scheduler: ..., workers: N}` passed the schema, ran the corpus and stage_config jobs,
    then failed in the dedup job ('--workers sizes a local cluster; with --scheduler the workers are
    that scheduler's'). It is refused before any job, naming both keys, as the stage sections are."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg.update(out=str(tmp_path / "run"), dask={"scheduler": "tcp://127.0.0.1:8786", "workers": 2})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "--configfile", str(tmp_path / "c.yaml"))
    text = r.stdout + r.stderr
    assert r.returncode != 0 and "WorkflowError" in text and "dask.scheduler" in text and "dask.workers" in text, \
        text[-3000:]
    assert "Traceback" not in text and not (tmp_path / "run").exists(), text[-3000:]
