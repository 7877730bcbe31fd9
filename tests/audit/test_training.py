"""The trainer (deterministic, resumable, order recorded) and profiles over its checkpoints."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from audit.config import TrainConfig
from audit.canaries import generate_canary_corpus
from dedup.runs import discover
from dedup.synthetic import write_shards

ROOT = Path(__file__).resolve().parents[2]
SMALL = TrainConfig(vocab_size=300, n_layer=1, n_embd=32, n_head=2, seq_len=32, epochs=2, batch_size=8,
                    log_checkpoints=4, checkpoint_every=10, holdout=0.2)


def _argv(config: TrainConfig, skip: tuple[str, ...] = ()) -> list[str]:
    """The command-line flags that give ``config`` (its fields that have a flag and a value)."""
    return [f"--{f.name.replace('_', '-')}={getattr(config, f.name)}" for f in dataclasses.fields(config)
            if getattr(config, f.name) is not None and f.metadata.get("cli", True) and f.name not in skip]


def quiet(_m: str) -> None:
    pass


def _weights(model_dir: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(model_dir / "model.safetensors"))


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("train")
    write_shards(generate_canary_corpus(n_background=60, repeats=(1, 4), canaries_per_repeat=2, seed=1), d / "c", 2)
    return d / "c"


def test_same_seed_same_weights_and_order(small_corpus, tmp_path):
    from audit.train import train_causal_lm

    a = train_causal_lm(discover([small_corpus]), tmp_path / "a", SMALL, log=quiet)
    b = train_causal_lm(discover([small_corpus]), tmp_path / "b", SMALL, log=quiet)
    wa, wb = _weights(tmp_path / "a" / "model"), _weights(tmp_path / "b" / "model")
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)
    assert pq.read_table(tmp_path / "a" / "order.parquet").equals(pq.read_table(tmp_path / "b" / "order.parquet"))
    assert a["checkpoints"] == b["checkpoints"] and a["checkpoints"][:3] == ["step-0000001", "step-0000002", "step-0000004"]
    order = pq.read_table(tmp_path / "a" / "order.parquet").to_pandas()
    assert set(order.columns) >= {"instance_id", "document_id", "token_offset", "step", "epoch", "first_step"}
    assert (order.groupby("instance_id")["epoch"].nunique() == SMALL.epochs).all()  # every instance, every epoch
    first = order[order["epoch"] == 0].set_index("instance_id")["step"]
    assert (order.set_index("instance_id")["first_step"].groupby(level=0).first() == first.sort_index()).all()
    held = pq.read_table(tmp_path / "a" / "heldout.parquet").to_pandas()
    assert len(held) and not set(held["document_id"]) & set(order["document_id"])


def test_resume_from_last_checkpoint_ends_identical(small_corpus, tmp_path):
    from audit.train import train_causal_lm

    full = train_causal_lm(discover([small_corpus]), tmp_path / "full", SMALL, log=quiet)
    part = tmp_path / "part"
    shutil.copytree(tmp_path / "full", part)
    # Simulate an interruption after the checkpoint at step 10: later checkpoints, the final
    # model and the manifest never got written.
    for p in (part / "checkpoints").glob("step-*"):
        if int(p.name.split("-")[1]) > 10:
            shutil.rmtree(p)
    shutil.rmtree(part / "model")
    (part / "manifest.json").unlink()
    messages: list[str] = []
    resumed = train_causal_lm(discover([small_corpus]), part, SMALL, log=messages.append)
    assert any("resuming from step-0000010" in m for m in messages)
    assert resumed["steps"] == full["steps"]
    wf, wr = _weights(tmp_path / "full" / "model"), _weights(part / "model")
    assert all((wf[k] == wr[k]).all() for k in wf)
    # naming what differs, and the way to replace it (it said neither)
    with pytest.raises(ValueError, match=r"another config \(seed differs\); choose another --out, or --replace"):
        train_causal_lm(discover([small_corpus]), part, TrainConfig(seed=5, **{k: v for k, v in SMALL.to_dict().items()
                                                                                if k != "seed"}), log=quiet)


def test_a_run_directory_refuses_another_corpus(small_corpus, tmp_path):
    """The tokenizer, order.parquet and the checkpoints come from one corpus. Rerun on another
    corpus, a finished run said 'training already complete', and an unfinished one resumed
    with the old tokenizer and checkpoints under a rewritten order.parquet."""
    from audit.train import train_causal_lm

    run = tmp_path / "run"
    train_causal_lm(discover([small_corpus]), run, SMALL, log=quiet)
    other = discover([small_corpus / "part-00000.parquet"])
    # the way out is named, as for another config (it said only 'choose another --out', though --replace works)
    with pytest.raises(ValueError, match=r"another corpus .*; choose another --out, or --replace to remove it"):
        train_causal_lm(other, run, SMALL, log=quiet)
    (run / "manifest.json").unlink()  # now an unfinished run
    before = _files(run)
    with pytest.raises(ValueError, match="another corpus"):
        train_causal_lm(other, run, SMALL, log=quiet)
    assert _files(run) == before


def test_replace_clears_only_the_runs_own_files_and_trains_as_fresh(small_corpus, tmp_path):
    """replace=True (what the workflow's train rule passes) removed every entry of the run
    directory, a user's notes beside the run too. It removes the run's own files only, and the
    run it trains is the one a fresh directory gets."""
    from audit.train import train_causal_lm

    run, fresh = tmp_path / "run", tmp_path / "fresh"
    train_causal_lm(discover([small_corpus]), run, SMALL, log=quiet)
    (run / "notes.txt").write_text("mine")
    other = discover([small_corpus / "part-00000.parquet"])
    with pytest.raises(ValueError, match="another corpus"):
        train_causal_lm(other, run, SMALL, log=quiet)
    train_causal_lm(other, run, SMALL, log=quiet, replace=True)
    train_causal_lm(other, fresh, SMALL, log=quiet)
    assert (run / "notes.txt").read_text() == "mine"
    assert {k: v for k, v in _files(run).items() if k != "notes.txt"} == _files(fresh)


def test_a_replace_killed_while_removing_the_old_run_leaves_it_refused_not_adopted(small_corpus, small_run, tmp_path,
                                                                                   monkeypatch):
    """replace=True removes the old run's files before training afresh. Killed while removing
    them, it removed train_config.json first: the next run into the directory, of another
    config, found no record, took the old run's tokenizer (another vocabulary) and resumed from
    its checkpoints. The record now goes last: until all is gone the rest is refused as a run of
    another config, and replace=True finishes the removal and trains as a fresh directory."""
    from dataclasses import replace

    from audit.train import train_causal_lm

    class Killed(BaseException):
        pass

    def killed(*a, **k):
        raise Killed

    run, other = tmp_path / "run", replace(SMALL, vocab_size=280, epochs=1)
    shutil.copytree(small_run, run)
    monkeypatch.setattr(shutil, "rmtree", killed)  # the first directory removed: the kill
    with pytest.raises(Killed):
        train_causal_lm(discover([small_corpus]), run, other, log=quiet, replace=True)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="another config"):
        train_causal_lm(discover([small_corpus]), run, other, log=quiet)
    train_causal_lm(discover([small_corpus]), run, other, log=quiet, replace=True)
    train_causal_lm(discover([small_corpus]), tmp_path / "fresh", other, log=quiet)
    assert _files(run) == _files(tmp_path / "fresh")


def _files(run: Path) -> dict:
    """Every file of a run directory (hidden ones too) and its bytes, the manifest aside (timing)."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


def test_a_killed_run_resumes_to_the_same_bytes_and_final_loss(small_corpus, tmp_path):
    """A run killed after its checkpoint at step 10 (with a half-written checkpoint left in a
    temporary directory) resumes to the same bytes in every file (checkpoints' tokenizer
    config and trainer state included) and the same final loss, with no temporary left; one
    killed after its last checkpoint, before the final model and manifest, finishes through the
    CLI (exit 0) with the same final loss. Before: the tokenizer config gained is_local and
    local_files_only keys, trainer_state.pt's pickle differed, the temporary stayed, the final
    loss was the mean of the steps run after resuming only, and None (a TypeError traceback in
    the CLI) when the kill came after the last checkpoint."""
    from audit.train import train_causal_lm

    full = train_causal_lm(discover([small_corpus]), tmp_path / "full", SMALL, log=quiet)
    part, last = tmp_path / "part", tmp_path / "last"
    shutil.copytree(tmp_path / "full", part)
    for p in (part / "checkpoints").glob("step-*"):
        if int(p.name.split("-")[1]) > 10:
            shutil.rmtree(p)
    shutil.copytree(part / "checkpoints" / "step-0000010", part / "checkpoints" / ".step-0000016.tmp-999999")
    shutil.rmtree(part / "model")
    (part / "manifest.json").unlink()
    resumed = train_causal_lm(discover([small_corpus]), part, SMALL, log=quiet)
    assert _files(part) == _files(tmp_path / "full")
    assert resumed["final_loss"] == full["final_loss"]

    shutil.copytree(tmp_path / "full", last)
    shutil.rmtree(last / "model")
    (last / "manifest.json").unlink()
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "train", str(small_corpus), "--out", str(last), "--json",
                        *_argv(SMALL)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["final_loss"] == full["final_loss"]


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    """A tiny model trained with checkpoints on a canary corpus (20% of documents held out),
    then the real ``memdedup profile`` over all its checkpoints. One epoch: the profile's panel
    ends at the end of epoch 1, and a second epoch (trained before) left every number the tests
    read unchanged (instantaneous effect 0.187, placebo -0.010 to 0.016) at twice the training;
    a multi-epoch run's profile is test_profile_cells_end_before_any_second_exposure's. 100
    treated (of 200 before): instantaneous effect 0.161 (95% CI 0.140 to 0.184), placebo
    unchanged (its 120 controls kept)."""
    from audit.train import train_causal_lm

    d = tmp_path_factory.mktemp("profile")
    write_shards(generate_canary_corpus(n_background=300, seed=2), d / "corpus", 3)
    train_causal_lm(discover([d / "corpus"]), d / "run",
                    TrainConfig(holdout=0.2, epochs=1, log_checkpoints=16, checkpoint_every=80), log=quiet)
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "profile", "--run", str(d / "run"), "--out", str(d / "out"),
                        "--n-treated", "100", "--n-control", "120", "--n-boot", "100"],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "instantaneous memorisation" in r.stdout
    return json.loads((d / "out" / "summary.json").read_text()), d


def test_positive_instantaneous_memorisation_and_none_for_held_out(profiled):
    summary, _ = profiled
    inst = summary["memorisation"]["instantaneous"]
    assert inst["effect"] > 0 and inst["lower"] > 0, inst
    plac = summary["placebo"]["instantaneous"]
    assert plac["lower"] <= 0 <= plac["upper"], plac
    # Cell by cell, held-out data shows no memorisation: nearly every placebo interval covers 0
    # (each does with probability ~0.95; correlated cells, so a loose floor).
    assert summary["placebo_cells_covering_zero"] >= 0.8


def test_profile_outputs(profiled):
    summary, d = profiled
    out = d / "out"
    for f in ("profile.parquet", "retention.parquet", "forecast.json", "profile_heatmap.png",
              "retention_curves.png", "summary.json", "manifest.json"):
        assert (out / f).exists() and (out / f).stat().st_size > 0, f
    prof = pq.read_table(out / "profile.parquet").to_pandas()
    assert {"treatment_step", "step", "effect", "se", "lower", "upper", "placebo", "event_time", "band_lower",
            "band_upper", "significant", "cohort_size"} <= set(prof.columns)
    assert ((prof["step"] >= prof["treatment_step"]) == (prof["event_time"] >= 0)).all()
    assert (prof["event_time"] < 0).any()  # lead cells
    for f in ("event_time.parquet", "event_time.png", "instances.parquet"):
        assert (out / f).exists(), f
    ret = pq.read_table(out / "retention.parquet").to_pandas()
    assert ret["recognition"].between(0, 1).all() and ret["exact_recall"].between(0, 1).all()
    fc = json.loads((out / "forecast.json").read_text())
    assert fc["early_step"] < fc["final_step"]
    assert (out / "profile_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoints_load_in_the_audit(profiled):
    from audit.lm import load_causal_lm

    _, d = profiled
    ckpts = sorted((d / "run" / "checkpoints").glob("step-*"))
    assert len(ckpts) >= 6
    lm = load_causal_lm(ckpts[2])
    assert lm.max_positions >= 64 and lm.encode(["hello world"])[0]


def test_forecast_from_two_audits(tmp_path):
    import pyarrow as pa

    from dedup.io import write_stage_manifest

    first = pa.table({"doc_id": ["a", "b", "c", "d"], "token_offset": [0] * 4, "extractable": [True, True, False, False],
                      "member": [True] * 4})
    second = pa.table({"doc_id": ["a", "b", "c", "d"], "token_offset": [0] * 4, "extractable": [True, False, True, False],
                       "member": [True] * 4})
    for name, t in (("first", first), ("second", second)):
        (tmp_path / name).mkdir()
        pq.write_table(t, tmp_path / name / "per_sequence.parquet")
        write_stage_manifest(tmp_path / name, "audit", {}, versions=False)
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "forecast", str(tmp_path / "first"), str(tmp_path / "second"),
                        "--out", str(tmp_path / "f.json")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    fc = json.loads((tmp_path / "f.json").read_text())
    assert (fc["tp"], fc["fp"], fc["fn"], fc["tn"]) == (1, 1, 1, 1) and fc["precision"] == 0.5 and fc["recall"] == 0.5


def test_the_thread_count_of_the_environment_changes_no_byte(small_corpus, tmp_path):
    """README, "Threads and determinism": torch's CPU LayerNorm backward sums per thread, so the
    weights depended on OMP_NUM_THREADS (every checkpoint differed at 1 and 2). The trainer runs on
    its config's ``threads`` (default 1), whatever the environment says."""
    import os

    for n in ("1", "2"):
        r = subprocess.run([sys.executable, "-m", "pipelines.cli", "train", str(small_corpus), "--out", str(tmp_path / n),
                            "--quiet", *_argv(SMALL, skip=("epochs",)), "--epochs=1"],
                           cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": n})
        assert r.returncode == 0, r.stderr
    for name in ("tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json", "order.parquet", "heldout.parquet",
                 "train_config.json", "model/model.safetensors",
                 *(p.relative_to(tmp_path / "1").as_posix() for p in (tmp_path / "1").glob("checkpoints/*/*"))):
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "2" / name).read_bytes(), name


@pytest.mark.parametrize("writer", ["torch.save", "save_pretrained"])
def test_a_checkpoint_that_cannot_be_written_is_one_line_and_the_rerun_resumes(small_corpus, small_run, tmp_path,
                                                                              capsys, monkeypatch, writer):
    """A full disk while a checkpoint is written: torch.save raises RuntimeError ('unexpected pos
    4480 vs 4372') and safetensors its own SafetensorError, neither an OSError. Now exit 2, one
    line naming the checkpoint, no temporary left, and the rerun resumes to the bytes of an
    uninterrupted run. Before: a 30-line traceback, exit 1 (found on a 3 MB tmpfs)."""
    import torch
    from safetensors import SafetensorError
    from transformers import GPT2LMHeadModel

    from pipelines.cli import main

    calls = {"n": 0}
    def failing(real):
        def write(*a, **k):
            calls["n"] += 1
            if calls["n"] == 4:  # the 4th checkpoint (step 10)
                raise (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4480 vs 4372")
                       if writer == "torch.save" else
                       SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"))
            return real(*a, **k)
        return write
    if writer == "torch.save":
        monkeypatch.setattr(torch, "save", failing(torch.save))
    else:
        monkeypatch.setattr(GPT2LMHeadModel, "save_pretrained", failing(GPT2LMHeadModel.save_pretrained))
    run = tmp_path / "run"
    assert main(["train", str(small_corpus), "--out", str(run), "--quiet", *_argv(SMALL)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    ckpt = run / "checkpoints" / "step-0000010"
    assert len(err) == 1 and err[0].startswith(f"memdedup train: error: {ckpt}: cannot write"), err
    assert not ckpt.exists() and not list((run / "checkpoints").glob(".*"))
    monkeypatch.undo()
    assert main(["train", str(small_corpus), "--out", str(run), "--quiet", *_argv(SMALL)]) == 0
    full = {k: v for k, v in _files(small_run).items() if not k.startswith("checkpoints/")}
    assert {k: v for k, v in _files(run).items() if not k.startswith("checkpoints/")} == full


def test_cli_train(small_corpus, tmp_path):
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "train", str(small_corpus), "--out", str(tmp_path / "run"),
                        "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--seq-len", "32", "--epochs", "1",
                        "--vocab-size", "300"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "checkpoints" in r.stdout and (tmp_path / "run" / "model" / "config.json").exists()


def test_profile_cells_end_before_any_second_exposure(small_corpus, tmp_path):
    """Issue #13, section 1: a 3-epoch run; every cell and retention row of an instance lies
    before its second exposure (the panel ends at the end of epoch 1, which is checkpointed)."""
    import numpy as np
    import pandas as pd

    from audit.checkpoints import run_profile
    from audit.config import ProfileConfig
    from audit.train import train_causal_lm

    cfg = TrainConfig(vocab_size=300, n_layer=1, n_embd=32, n_head=2, seq_len=32, epochs=3, batch_size=8,
                      log_checkpoints=4, checkpoint_every=20, holdout=0.2)
    man = train_causal_lm(discover([small_corpus]), tmp_path / "run", cfg, log=quiet)
    per_epoch = man["steps_per_epoch"]
    assert f"step-{per_epoch:07d}" in man["checkpoints"]  # the end of epoch 1 is a checkpoint
    lines = []
    s = run_profile(tmp_path / "run", tmp_path / "prof", ProfileConfig(n_treated=60, n_control=20, n_boot=40,
                                                                       min_cohort_size=2), log=lines.append)
    # progress on long runs (issue #15): rate and ETA per checkpoint
    ticks = [m for m in lines if "checkpoints/s" in m]
    assert ticks and all("ETA" in m for m in ticks) and "ETA 0s" in ticks[-1]
    assert s["panel"]["ends"] == "end of epoch 1" and s["panel"]["end_step"] == per_epoch
    assert s["memorisation"]["residual"]["cells"] and all(c == per_epoch for _, c in s["memorisation"]["residual"]["cells"])
    manifest = json.loads((tmp_path / "prof" / "manifest.json").read_text())
    assert manifest["panel"]["ends"] == "end of epoch 1"
    order = pq.read_table(tmp_path / "run" / "order.parquet").to_pandas()
    second = order.sort_values("step").groupby("instance_id")["step"].nth(1)
    second = pd.Series(second.to_numpy(), index=order.sort_values("step").groupby("instance_id").nth(1)["instance_id"])
    inst = pq.read_table(tmp_path / "prof" / "instances.parquet").to_pandas()
    treated = inst[inst["group"] == "treated"]
    assert len(treated) > 5
    prof = pq.read_table(tmp_path / "prof" / "profile.parquet").to_pandas()
    prof = prof[~prof["placebo"]]
    ret = pq.read_table(tmp_path / "prof" / "retention.parquet").to_pandas()
    cps = s["panel"]["checkpoints"]
    for _, r in treated.iterrows():
        g = min(c for c in cps if c >= r["treatment_step"])  # its own cohort's checkpoint
        # its (possibly merged) cohort: the profile cohort whose members include g
        label = next(c["treatment_step"] for c in s["cohorts"] if g in c["member_cohorts"])
        last_cell = prof.loc[prof["treatment_step"] == label, "step"].max()
        assert last_cell < second[r["instance_id"]], (r.to_dict(), last_cell)
        assert ret.loc[ret["treatment_step"] == g, "step"].max() < second[r["instance_id"]]
    assert np.isin(prof["step"], cps).all() and prof["step"].max() == per_epoch
    # hard foils (issue #13, section 4): recognition against scrambled and substituted items too
    for col in ("recognition_scrambled", "recognition_substituted"):
        assert ret[col].between(0, 1).all(), col
    # a user-given checkpoint grid (issue #13, section 3): only those checkpoints are profiled
    grid = [cps[0], cps[len(cps) // 2], per_epoch]
    s2 = run_profile(tmp_path / "run", tmp_path / "prof2",
                     ProfileConfig(n_treated=30, n_control=20, n_boot=40, min_cohort_size=2,
                                   checkpoints=",".join(map(str, grid))), log=quiet)
    assert s2["panel"]["checkpoints"] == grid
    prof2 = pq.read_table(tmp_path / "prof2" / "profile.parquet").to_pandas()
    assert set(prof2["step"]) <= set(grid) and "lag_steps" in prof2.columns
    with pytest.raises(ValueError, match="not in the run"):
        run_profile(tmp_path / "run", tmp_path / "prof3", ProfileConfig(checkpoints=f"{cps[0]},{per_epoch + 1}"),
                    log=quiet)
    with pytest.raises(ValueError, match="comma-separated"):
        ProfileConfig(checkpoints="1,x")


def test_a_holdout_fraction_that_holds_out_no_document_says_so(small_corpus, tmp_path):
    """--holdout 0.001 of 70 documents rounds to none held out: train said nothing, and the
    profile later refused the run for want of a held-out set 'train with a holdout fraction',
    though one was given."""
    from dataclasses import replace

    from audit.train import train_causal_lm

    said: list[str] = []
    m = train_causal_lm(discover([small_corpus]), tmp_path / "run", replace(SMALL, holdout=0.001, epochs=1),
                        log=said.append)
    assert m["held_out_documents"] == 0
    assert any("--holdout 0.001 holds out none of the 70 documents" in x for x in said), said
    # The empty heldout.parquet keeps its columns' types: written untyped (null columns), the profile
    # called it damaged ("column 'instance_id' holds null, not integers") instead of saying what is wrong.
    held = pq.read_table(tmp_path / "run" / "heldout.parquet")
    assert held.num_rows == 0 and str(held.schema.field("instance_id").type) == "int64", held.schema
    from audit.checkpoints import run_profile
    from audit.config import ProfileConfig

    with pytest.raises(ValueError, match="held-out instances: train with a holdout fraction"):
        run_profile(tmp_path / "run", tmp_path / "prof", ProfileConfig(n_boot=0), log=quiet)
    pq.write_table(held.from_pydict({c: [] for c in held.column_names}), tmp_path / "run" / "heldout.parquet")
    with pytest.raises(ValueError, match="held-out instances: train with a holdout fraction"):  # as older runs wrote it
        run_profile(tmp_path / "run", tmp_path / "prof", ProfileConfig(n_boot=0), log=quiet)


def test_a_loss_that_stops_being_finite_is_said(small_corpus, tmp_path):
    """--lr 1e30: the loss became NaN and train exited 0 with final_loss null and NaN weights in every later
    checkpoint, saying nothing (found by the train probe). It now says from which step the loss is not finite."""
    from dataclasses import replace

    from audit.train import train_causal_lm

    said: list[str] = []
    m = train_causal_lm(discover([small_corpus]), tmp_path / "run", replace(SMALL, lr=1e30, epochs=1),
                        log=said.append)
    assert m["final_loss"] is None or m["final_loss"] != m["final_loss"]  # null (NaN) in the manifest
    assert [x for x in said if "the training loss is not finite from step" in x and "--lr" in x], said
    said.clear()
    train_causal_lm(discover([small_corpus]), tmp_path / "ok", replace(SMALL, epochs=1), log=said.append)
    assert not [x for x in said if "not finite" in x], said


def test_a_vocabulary_smaller_than_the_byte_alphabet_is_refused():
    """Byte-level BPE starts from 256 bytes and <|endoftext|>: --vocab-size 100 trained a
    257-token vocabulary while the manifest recorded 100."""
    with pytest.raises(ValueError, match=r"vocab_size must be >= 257"):
        TrainConfig(vocab_size=100)


def test_a_config_refused_before_training_leaves_nothing_and_the_fixed_command_runs(small_corpus, tmp_path):
    """A config that fails once the corpus is read (too many --retention-items) exits 2 with one
    line and leaves no run state behind: the corrected command then runs in the same --out (it
    used to be refused as 'an unfinished training run with another config')."""
    out = tmp_path / "run"
    base = ["train", str(small_corpus), "--out", str(out), "--n-layer", "1", "--n-embd", "32", "--n-head", "2",
            "--seq-len", "32", "--epochs", "1", "--vocab-size", "300", "--quiet"]
    bad = subprocess.run([sys.executable, "-m", "pipelines.cli", *base, "--retention-items", "100000"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "retention_items" in bad.stderr
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())
    good = subprocess.run([sys.executable, "-m", "pipelines.cli", *base, "--retention-items", "4"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert good.returncode == 0, good.stderr
    assert (out / "manifest.json").exists()


def test_a_config_too_large_for_memory_exits_2_leaving_nothing_and_the_fixed_command_runs(small_corpus, tmp_path):
    """--seq-len 3,000,000 pads every instance to 3M tokens: the first step's attention cannot
    be allocated. That was a traceback (exit 1) after the run state was written, so the
    corrected command was refused in the same --out ('another config')."""
    out = tmp_path / "run"
    base = ["train", str(small_corpus), "--out", str(out), "--n-layer", "1", "--n-embd", "8", "--n-head", "1",
            "--epochs", "1", "--vocab-size", "300", "--batch-size", "1", "--quiet"]
    bad = subprocess.run([sys.executable, "-m", "pipelines.cli", *base, "--seq-len", "3000000"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "out of memory" in bad.stderr and "--seq-len" in bad.stderr, bad.stderr
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())
    good = subprocess.run([sys.executable, "-m", "pipelines.cli", *base, "--seq-len", "32"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert good.returncode == 0, good.stderr


def test_a_second_training_into_a_run_in_progress_is_refused(small_corpus, tmp_path):
    """Two trainings into one directory at once (a job requeued while the first still runs): the
    second resumed the first's unfinished run under it, and both wrote checkpoints, order and
    manifest. The second is refused; the first ends as a clean run does."""
    from audit.train import train_causal_lm
    from dedup.io import InUseError

    run, second = tmp_path / "run", []

    def start_another(state: dict) -> None:
        if state["phase"] and not second:
            try:
                second.append(train_causal_lm(discover([small_corpus]), run, SMALL, log=quiet))
            except Exception as e:  # noqa: BLE001 - what the second run raised is the point
                second.append(e)

    m = train_causal_lm(discover([small_corpus]), run, SMALL, log=quiet, progress=start_another)
    assert isinstance(second[0], InUseError) and f"{run} is in use by another memdedup run" in str(second[0])
    clean = train_causal_lm(discover([small_corpus]), tmp_path / "clean", SMALL, log=quiet)
    assert m["checkpoints"] == clean["checkpoints"]
    wa, wb = _weights(run / "model"), _weights(tmp_path / "clean" / "model")
    assert all((wa[k] == wb[k]).all() for k in wa)


def test_running_out_of_memory_in_python_leaves_torch_as_it_was(small_corpus, tmp_path):
    """train_causal_lm turns on torch's deterministic algorithms for the run; when the run
    stopped for lack of memory, a Python caller was left with them on (and the progress phase
    open)."""
    import torch

    from audit.train import train_causal_lm

    phases = []
    before = torch.are_deterministic_algorithms_enabled()
    config = TrainConfig(n_layer=1, n_embd=8, n_head=1, epochs=1, vocab_size=300, batch_size=1, seq_len=3_000_000)
    with pytest.raises(ValueError, match="out of memory"):
        train_causal_lm(discover([small_corpus]), tmp_path / "run", config, log=quiet,
                        progress=lambda s: phases.append(s["phase"]))
    assert torch.are_deterministic_algorithms_enabled() == before and phases[-1:] == [None]


# ------------------------------------------------------------------ profile: bad runs, corpora, options

TINY_PROFILE = ["--n-treated", "20", "--n-control", "10", "--n-boot", "40", "--min-cohort-size", "2", "--quiet"]


@pytest.fixture(scope="module")
def small_run(small_corpus, tmp_path_factory) -> Path:
    """SMALL trained on small_corpus, checkpoints kept at steps 10, 92 (end of epoch 1) and the last."""
    from audit.train import train_causal_lm

    run = tmp_path_factory.mktemp("small_run") / "run"
    m = train_causal_lm(discover([small_corpus]), run, SMALL, log=quiet)
    keep = {"step-0000010", f"step-{m['steps_per_epoch']:07d}", m["checkpoints"][-1]}
    for p in (run / "checkpoints").glob("step-*"):
        if p.name not in keep:
            shutil.rmtree(p)
    return run


def _profile_fails(capsys, *argv) -> str:
    """``memdedup profile ARGV``: exit 2 and one line on stderr, which is returned."""
    from pipelines.cli import main

    assert main(["profile", *map(str, argv)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0] and err[0].startswith("memdedup profile: error: "), err
    return err[0]


def _edit_parquet(path: Path, edit) -> None:
    pq.write_table(edit(pq.read_table(path)), path)


@pytest.mark.parametrize("name, edit", [
    ("order.parquet", lambda t: t.drop(["n_tokens"])),
    ("order.parquet", lambda t: t.slice(0, 0)),
    ("heldout.parquet", lambda t: t.drop(["shard"])),
])
def test_profile_names_an_order_or_heldout_file_without_its_columns_or_rows(small_run, tmp_path, capsys, name, edit):
    """Before: a missing column was a KeyError traceback (exit 1) and an empty order.parquet
    'cannot convert float NaN to integer', naming no file."""
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    _edit_parquet(run / name, edit)
    err = _profile_fails(capsys, "--run", run, "--out", tmp_path / "out", *TINY_PROFILE)
    assert str(run / name) in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["checkpoints/step-0000010/trainer_state.pt",
                                  "checkpoints/step-0000010/model.safetensors", "tokenizer/tokenizer.json",
                                  "checkpoints/step-0000010/trainer_state.pt#no step"])
def test_resuming_from_a_damaged_file_names_it_in_one_line(small_corpus, small_run, tmp_path, capsys, name):
    """An unfinished run whose last checkpoint or tokenizer is damaged (a truncated copy: the
    trainer writes every file whole): exit 2, one line naming it and how to go on, the run left
    as it was. Before: a traceback (exit 1) from torch, safetensors or tokenizers; from a state
    file without its step (found by the train probe), a TypeError (None < total steps)."""
    from pipelines.cli import main

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    (run / "manifest.json").unlink()
    shutil.rmtree(run / "model")
    for p in (run / "checkpoints").glob("step-*"):
        if p.name != "step-0000010":
            shutil.rmtree(p)
    damaged = run / name.split("#")[0]
    if name.endswith("#no step"):
        import torch

        state = torch.load(damaged, weights_only=False)
        torch.save({k: v for k, v in state.items() if k not in ("global_step", "step")}, damaged)
    else:
        damaged.write_bytes(damaged.read_bytes()[:1000])
    before = _files(run)
    argv = _argv(SMALL)
    assert main(["train", str(small_corpus), "--out", str(run), "--quiet", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("memdedup train: error: ") and str(damaged.parent) in err[0], err
    assert "damaged" in err[0] and "remove" in err[0], err
    assert _files(run) == before


@pytest.mark.parametrize("name", ["train_config.json", "manifest.json"])
def test_a_run_record_whose_config_is_not_an_object_is_named_in_one_line(small_corpus, small_run, tmp_path, capsys,
                                                                        name):
    """A run record (train_config.json of an unfinished run, manifest.json of a finished one) whose
    'config' is not a JSON object: exit 2, one line naming the file, the run left as it was.
    Before: AttributeError ('int' object has no attribute 'keys') from dedup.config.differing, exit 1."""
    import json

    from pipelines.cli import main

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    if name == "train_config.json":
        (run / "manifest.json").unlink()
    record = json.loads((run / name).read_text())
    (run / name).write_text(json.dumps({**record, "config": 5}))
    before = _files(run)
    assert main(["train", str(small_corpus), "--out", str(run), "--quiet", *_argv(SMALL)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"memdedup train: error: {run / name}: damaged"), err
    assert _files(run) == before


@pytest.mark.parametrize("docs, shards, own_checkpoints", [(60, 2, False), (30, 3, False), (30, 3, True)])
def test_profile_refuses_a_corpus_that_is_not_the_runs(small_run, tmp_path, capsys, docs, shards, own_checkpoints):
    """--corpus naming another corpus than the one the run was trained on (its manifest's
    corpus_sha256) is exit 2 naming it, before any checkpoint is scored; without a manifest (a
    user's own checkpoints), rows the order names but the corpus lacks too. Before: the same
    shard names with other texts died in NumPy ('inhomogeneous shape', exit 2, naming nothing)
    and would have profiled the wrong texts had they been long enough; fewer rows were a
    KeyError traceback (exit 1)."""
    other = tmp_path / "other"
    write_shards(generate_canary_corpus(n_background=docs, repeats=(1, 4), canaries_per_repeat=2, seed=7), other, shards)
    run = small_run
    if own_checkpoints:
        run = tmp_path / "run"
        shutil.copytree(small_run, run)
        (run / "manifest.json").unlink()
        (run / "train_config.json").unlink()  # a user's own layout: no unfinished memdedup train run either
    err = _profile_fails(capsys, "--run", run, "--out", tmp_path / "out", "--corpus", other, *TINY_PROFILE)
    assert "not the corpus" in err and str(other) in err, err
    assert not (tmp_path / "out").exists()


def test_profile_of_a_run_whose_corpus_moved_asks_for_corpus(small_run, tmp_path, capsys):
    """A run whose corpus is no longer where its manifest.json records it (moved or copied to another machine):
    profile said only '<old path>/part-00000.parquet: no such file or directory', not that the path was the run's
    record nor that --corpus overrides it (found by the audit-side CLI probe)."""
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["corpus"] = [str(tmp_path / "moved" / Path(p).name) for p in manifest["corpus"]]
    (run / "manifest.json").write_text(json.dumps(manifest))
    err = _profile_fails(capsys, "--run", run, "--out", tmp_path / "out", *TINY_PROFILE)
    assert f"{run}: its corpus is not where" in err and "pass --corpus" in err, err
    assert not (tmp_path / "out").exists()


def test_profile_of_a_run_whose_recorded_corpus_changed_is_refused(small_corpus, small_run, tmp_path, capsys):
    """A run's recorded corpus rewritten since training (same paths, other texts) is exit 2 naming the run, as
    --corpus naming those same files is. Before: without --corpus its corpus_sha256 was not checked, and the
    profile scored the new texts as the trained instances (exit 0)."""
    import pyarrow as pa

    corpus, run = tmp_path / "c", tmp_path / "run"
    shutil.copytree(small_corpus, corpus)
    shutil.copytree(small_run, run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["corpus"] = [str(corpus / Path(p).relative_to(small_corpus)) for p in manifest["corpus"]]
    (run / "manifest.json").write_text(json.dumps(manifest))
    shard = sorted(corpus.glob("*.parquet"))[0]
    table = pq.read_table(shard)
    texts = pa.array([t[::-1] for t in table["text"].to_pylist()])  # same lengths, other texts
    pq.write_table(table.set_column(table.column_names.index("text"), "text", texts), shard)
    err = _profile_fails(capsys, "--run", run, "--out", tmp_path / "out", *TINY_PROFILE)
    assert f"{run}: its corpus" in err and "corpus_sha256" in err and "--corpus" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("corpus", [False, True])
def test_profile_refuses_an_unfinished_training_run(small_corpus, small_run, tmp_path, capsys, corpus):
    """A training run killed before its end (train_config.json, no manifest.json) is exit 2 naming
    it as unfinished, with or without --corpus, and nothing is written. Before: without --corpus
    'no corpus recorded; pass --corpus'; with it, exit 0 and a profile of the checkpoints written so
    far, its 'final' checkpoint the last one before the kill and, killed within epoch 1, its panel
    labelled 'end of epoch 1' at an earlier step (found by a kill probe)."""
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    (run / "manifest.json").unlink()
    shutil.rmtree(run / "model")
    shutil.rmtree(sorted((run / "checkpoints").glob("step-*"))[-1])
    err = _profile_fails(capsys, "--run", run, "--out", tmp_path / "out", *TINY_PROFILE,
                         *(["--corpus", small_corpus] if corpus else []))
    assert f"{run}: an unfinished 'memdedup train' run" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, needle", [
    (["--batch-size", "0"], "invalid profile config: batch_size must be >= 1, got 0"),
    (["--batch-size", "-1"], "invalid profile config: batch_size must be >= 1, got -1"),
    (["--n-boot", "-3"], "invalid profile config: n_boot must be 0 (no interval) or >= 40"),
    (["--early-checkpoint", "0"], "early_checkpoint 0 is not a checkpoint step"),
    (["--min-cohort-size", "1000"], "no trained instance to profile"),
])
def test_profile_option_edges_are_one_line_before_scoring(small_run, tmp_path, capsys, flags, needle):
    """Before: batch size 0 was 'range() arg 3 must not be zero', -1 and a cohort size no cohort
    reaches 'need at least one array to concatenate' (no treated instance left), a negative
    n_boot was refused only after every checkpoint was scored, and --early-checkpoint 0 was
    taken for 'not given' (the middle checkpoint was used instead of step 0)."""
    err = _profile_fails(capsys, "--run", small_run, "--out", tmp_path / "out", *TINY_PROFILE, *flags)
    assert needle in err, err
    assert not (tmp_path / "out").exists()


def test_profile_refuses_the_final_checkpoint_as_the_early_one(small_run, tmp_path, capsys):
    """--early-checkpoint naming the run's last checkpoint is exit 2 before scoring, as memdedup forecast refuses
    two audits of one step. Before: exit 0 and a forecast.json of the final checkpoint against itself
    (early_step == final_step)."""
    last = int(sorted((small_run / "checkpoints").glob("step-*"))[-1].name[len("step-"):])
    err = _profile_fails(capsys, "--run", small_run, "--out", tmp_path / "out", *TINY_PROFILE,
                         "--early-checkpoint", last)
    assert f"early_checkpoint {last}" in err and "final" in err, err
    assert not (tmp_path / "out").exists()


def test_a_profile_into_its_run_or_another_stages_output_is_refused(small_run, tmp_path):
    """--out equal to the run directory (or inside it), or a directory holding another stage's
    output, is refused before anything is written. Before: the profile removed the training
    run's manifest.json, wrote its own (stage 'profile') and its files among the run's: the run
    then refused to resume ('another config') and forecast took no step from it."""
    from audit.checkpoints import run_profile
    from audit.config import ProfileConfig

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    audit = tmp_path / "audit"
    audit.mkdir()
    (audit / "manifest.json").write_text(json.dumps({"stage": "audit"}))
    cfg = ProfileConfig(n_treated=20, n_control=10, n_boot=0, min_cohort_size=2)
    for out in (run, run / "profile", audit):
        before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        manifests = {d: (d / "manifest.json").read_bytes() for d in (run, audit)}
        with pytest.raises(ValueError, match="--out"):
            run_profile(run, out, cfg, log=quiet)
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
        assert {d: (d / "manifest.json").read_bytes() for d in (run, audit)} == manifests


@pytest.mark.parametrize("where", ["corpus", "parent"])
def test_a_profile_into_its_corpus_directory_is_refused(small_corpus, small_run, tmp_path, capsys, where):
    """--out that is, or holds, the --corpus directory is exit 2 naming it, before anything is written, as
    train and audit refuse it. Before: exit 0, the profile's Parquet files written among the corpus shards,
    and the next profile of that corpus died on them ('event_time.parquet: no text column 'text'')."""
    corpus = tmp_path / "c"
    shutil.copytree(small_corpus, corpus)
    out = corpus if where == "corpus" else tmp_path
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    err = _profile_fails(capsys, "--run", small_run, "--out", out, "--corpus", corpus, *TINY_PROFILE)
    assert str(corpus) in err and "--out" in err, err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_profile_rerun_that_dies_midway_leaves_no_manifest_over_mixed_outputs(small_run, tmp_path, monkeypatch):
    """A completed profile rerun into its --out with another config and killed after its first
    outputs: the directory must not look complete (manifest.json is written last: complete iff
    it exists). Before: the old run's manifest stayed beside the new run's profile.parquet; the
    rerun, completed, gives the bytes of an uninterrupted run, every file but manifest.json
    (summary.json too: it held the run's wall seconds)."""
    from audit import plots
    from audit.checkpoints import run_profile
    from audit.config import ProfileConfig

    out, fresh = tmp_path / "out", tmp_path / "fresh"
    first = ProfileConfig(n_treated=20, n_control=10, n_boot=40, min_cohort_size=2)
    other = ProfileConfig(n_treated=20, n_control=10, n_boot=40, min_cohort_size=2, seed=1)
    run_profile(small_run, out, first, log=quiet)
    with monkeypatch.context() as m:
        m.setattr(plots, "retention_curves", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            run_profile(small_run, out, other, log=quiet)
    assert (out / "profile.parquet").exists() and not (out / "manifest.json").exists()
    run_profile(small_run, out, other, log=quiet)
    run_profile(small_run, fresh, other, log=quiet)
    def outputs(d: Path) -> dict[str, bytes]:  # every file but the run's record (its timings and time)
        return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.name != "manifest.json"}

    assert outputs(out) == outputs(fresh) and "summary.json" in outputs(out)  # summary.json held timing_s
    assert json.loads((out / "manifest.json").read_text())["config"]["seed"] == 1


def test_a_profile_rerun_that_dies_midway_leaves_none_of_the_earlier_runs_outputs(small_run, tmp_path, monkeypatch):
    """A profile rerun into a completed --out with another seed, killed after its first outputs:
    every file left there is the new run's, none the earlier run's. Before: the earlier run's
    summary.json and PNGs stayed beside the new profile.parquet, and ``memdedup report
    --profile-dir`` (which reads a hand-made profile without a manifest) showed the earlier
    run's heatmap and numbers with the new run's tables, exit 0 (found by a kill probe)."""
    from audit import plots
    from audit.checkpoints import run_profile
    from audit.config import ProfileConfig

    out, fresh = tmp_path / "out", tmp_path / "fresh"
    first = ProfileConfig(n_treated=20, n_control=10, n_boot=40, min_cohort_size=2)
    other = dataclasses.replace(first, seed=1)
    run_profile(small_run, out, first, log=quiet)
    run_profile(small_run, fresh, other, log=quiet)
    with monkeypatch.context() as m:
        m.setattr(plots, "event_time_curve", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            run_profile(small_run, out, other, log=quiet)
    left = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "profile.parquet" in left and "manifest.json" not in left
    assert left.pop(".memdedup-running") == b""  # stopped, its outputs left for the rerun: marked as unfinished
    stale = [name for name, data in left.items() if data != (fresh / name).read_bytes()]
    assert not stale, f"the earlier run's {stale} left beside the new run's outputs"


def test_a_profile_stopped_after_its_first_outputs_keeps_its_running_mark(small_corpus, small_run, tmp_path,
                                                                          monkeypatch):
    """A profile stopped (Ctrl-C, SIGTERM) after writing some outputs keeps its .memdedup-running mark, as a killed
    one does, so that walks skip those outputs. Before: the mark was removed and 'memdedup dedup' of the folder
    above died on the left profile.parquet ('no text column 'text'')."""
    from audit import plots
    from audit.checkpoints import run_profile
    from audit.config import ProfileConfig
    from dedup import io

    data = tmp_path / "data"
    shutil.copytree(small_corpus, data)
    with monkeypatch.context() as m:
        m.setattr(plots, "event_time_curve", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            run_profile(small_run, data / "prof", ProfileConfig(n_treated=20, n_control=10, n_boot=0,
                                                                 min_cohort_size=2), log=quiet)
    assert (data / "prof" / "profile.parquet").exists() and (data / "prof" / io.RUNNING_FILE).exists()
    assert [s.name for s in discover([data])] == [s.name for s in discover([small_corpus])]


@pytest.mark.parametrize("own_checkpoints", [False, True])
def test_a_profile_reads_its_corpus_once_and_its_sampled_rows_once_more(small_corpus, small_run, tmp_path, corpus_reads,
                                                                         own_checkpoints):
    """A profile reads every shard once (the corpus_sha256 check and every document's sketch for the duplicate-based
    eligibility, in one pass) and once more only the shards holding its sampled instances (which are known only after
    that pass: eligibility depends on every trained document). Before: 4 reads of each shard with a corpus_sha256 (the
    digest, the eligible documents' texts, the duplicate scan, the sampled texts), 3 without (a user's own
    checkpoints), each a full read, 8 parses of each JSONL shard."""
    from audit.checkpoints import run_profile
    from audit.config import ProfileConfig

    run = small_run
    if own_checkpoints:
        run = tmp_path / "run"
        shutil.copytree(small_run, run)
        (run / "manifest.json").unlink()
        (run / "train_config.json").unlink()
    run_profile(run, tmp_path / "p", ProfileConfig(n_treated=20, n_control=10, n_boot=0, min_cohort_size=2),
                corpus=[small_corpus] if own_checkpoints else None, log=quiet)
    shards = {s.name for s in discover([small_corpus])}
    for counts in (corpus_reads.opens, corpus_reads.passes):
        assert set(counts) == shards and max(counts.values()) <= 2, counts


def test_a_profile_without_bootstrap_has_no_band_to_cover_zero(small_run, tmp_path, capsys):
    """--n-boot 0 computes no simultaneous band (NaN bounds): the placebo check read 100% of
    cells 'covering 0' instead of n/a, and summary.json held NaN, which strict JSON parsers refuse."""
    from audit.checkpoints import run_profile
    from audit.config import ProfileConfig

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    s = run_profile(small_run, tmp_path / "p", ProfileConfig(n_treated=20, n_control=10, n_boot=0, min_cohort_size=2),
                    log=quiet)
    assert s["placebo_cells_covering_zero"] is None
    written = json.loads((tmp_path / "p" / "summary.json").read_text(), parse_constant=refuse)
    assert written["placebo_cells_covering_zero"] is None
    from pipelines.cli import _print_profile

    capsys.readouterr()
    _print_profile(s, tmp_path / "p")  # the summary line said 0%
    assert "placebo cells whose band covers 0: n/a (no band)" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [dict(n_head=0), dict(n_embd=0, n_head=1), dict(checkpoint_every=0),
                                 dict(lr=-1.0), dict(lr=float("nan")), dict(weight_decay=float("nan")),
                                 dict(warmup_steps=-1), dict(log_checkpoints=-1), dict(seed=-1),
                                 dict(seed=2**64), dict(lr=1e39), dict(lr=1e30, weight_decay=1e10)])
def test_a_model_or_schedule_option_out_of_range_is_refused_by_the_config(bad):
    """Each was a traceback (n_head 0: ZeroDivisionError, exit 1), or an error from torch or
    numpy after the run state was written (so the corrected command was refused as 'another
    config'), or silently accepted (negative warm-up and log checkpoints). A seed of 2^64 or more
    was torch's "Overflow when unpacking long long" from manual_seed, after order.parquet,
    heldout.parquet, the tokenizer and train_config.json were written. An lr (or lr x weight_decay) beyond
    float32's 3.4e38 was torch's "value cannot be converted to type float without overflow", a traceback."""
    with pytest.raises(ValueError, match=f"invalid train config: .*{next(iter(bad))}"):
        TrainConfig(**bad)


def test_profile_forecast_counts_no_held_out_instance_as_seen(small_run, tmp_path):
    """forecast.json's ``seen`` at the early checkpoint is "trained at or before it": held-out
    instances never are. Before: the placebo cohort's pretend treatment step (the middle
    panel checkpoint) made every placebo instance count as seen by an early checkpoint at or
    after it (n_seen_first 10 more than the treated instances, n_unmatched_first 10)."""
    import pandas as pd

    from audit.checkpoints import run_profile
    from audit.config import ProfileConfig

    s = run_profile(small_run, tmp_path / "p", ProfileConfig(n_treated=20, n_control=20, n_boot=0, min_cohort_size=2),
                    log=quiet)
    fc, inst = s["forecast"], pd.read_parquet(tmp_path / "p" / "instances.parquet")
    treated = inst[inst["group"] == "treated"]
    assert (inst["group"] == "placebo").any() and inst.loc[inst["group"] == "placebo", "treatment_step"].le(
        fc["early_step"]).all()  # the case: the placebo's pretend step is at or before the early checkpoint
    assert fc["n_seen_first"] == int((treated["treatment_step"] <= fc["early_step"]).sum())
    assert fc["n_seen_second"] == len(treated) and fc["n_unmatched_first"] == 0


@pytest.mark.parametrize("name, column, value, needle", [
    ("order.parquet", "step", None, "row 0: column 'step' is null"),
    ("order.parquet", "step", "7", "column 'step' holds string, not integers"),
    ("order.parquet", "shard", None, "row 0: column 'shard' is null"),
    ("heldout.parquet", "row", None, "row 0: column 'row' is null"),
    ("heldout.parquet", "n_tokens", 1.5, "column 'n_tokens' holds double, not integers"),
])
def test_profile_names_the_file_and_row_of_a_null_or_mistyped_order_value(small_run, tmp_path, capsys, name, column,
                                                                         value, needle):
    """A null or non-integer step, row, offset or length (or a null shard) in order.parquet or
    heldout.parquet is exit 2 with one line naming the file and row. Before: a null step was
    profiled silently (exit 0), string steps a TypeError traceback, a null held-out row
    'cannot convert float NaN to integer' and a null shard 'order names shard nan', naming no file."""
    import pyarrow as pa

    run = tmp_path / "run"
    shutil.copytree(small_run, run)

    def edit(t):
        values = t[column].to_pylist()
        values[0] = value
        if isinstance(value, (str, float)):
            values = [type(value)(v) if v is not None else v for v in values]
        return t.set_column(t.column_names.index(column), column, pa.array(values))

    _edit_parquet(run / name, edit)
    err = _profile_fails(capsys, "--run", run, "--out", tmp_path / "out", *TINY_PROFILE)
    assert str(run / name) in err and needle in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["step-abc", "step-0000010-old", "step-0000010.bak", "step-10"])
def test_profile_names_a_checkpoint_directory_that_is_not_step_n(small_run, tmp_path, capsys, name):
    """A directory under checkpoints/ named step-* but not step-<digits> (a user's backup copy),
    or a second one of the same step, is exit 2 naming it, before any scoring. Before: 'invalid
    literal for int() with base 10', naming nothing, or, for step-0000010-old and step-10, a
    second checkpoint 10 scored and then refused as 'duplicate (instance_id, step) rows'."""
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    shutil.copytree(run / "checkpoints" / "step-0000010", run / "checkpoints" / name)
    err = _profile_fails(capsys, "--run", run, "--out", tmp_path / "out", *TINY_PROFILE)
    assert str(run / "checkpoints" / name) in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("inside", [True, False])
def test_profile_names_hugging_face_trainer_checkpoints_and_their_step_name(small_run, tmp_path, capsys, inside):
    """Hugging Face's Trainer writes OUTPUT_DIR/checkpoint-500/. Given as they are, beside the run's
    own step-N checkpoints or as the run's only ones, they are exit 2 naming the directory and the
    name it needs (checkpoints/step-0000010). Before: a checkpoint-N beside step-N directories was
    silently left out of the profile, and a run of checkpoint-N directories only was 'no
    checkpoints/step-*/ directories', naming neither what was found nor the fix."""
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    ckpts = sorted((run / "checkpoints").glob("step-*"))
    if inside:  # one of them renamed: the others stay
        hf = run / "checkpoints" / "checkpoint-10"
        (run / "checkpoints" / "step-0000010").rename(hf)
    else:  # the Trainer's layout: checkpoint-N directly in the run directory
        for p in ckpts:
            p.rename(run / f"checkpoint-{int(p.name[5:])}")
        (run / "checkpoints").rmdir()
        hf = run / "checkpoint-10"
    err = _profile_fails(capsys, "--run", run, "--out", tmp_path / "out", *TINY_PROFILE)
    assert str(hf) in err and str(run / "checkpoints" / "step-0000010") in err, err
    assert not (tmp_path / "out").exists()


def test_profile_names_a_checkpoint_without_tokenizer_files(small_run, tmp_path, capsys):
    """Hugging Face's Trainer saves no tokenizer into checkpoint-N/ unless it was given one. Such a
    checkpoint loaded with transformers' empty fallback tokenizer, which encodes every text to no
    tokens, and the profile said 'not the corpus RUN was trained on (a document is shorter than its
    instance in the order)'. Now exit 2 naming the checkpoint and its missing tokenizer."""
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    last = sorted((run / "checkpoints").glob("step-*"))[-1]
    for f in last.glob("*"):
        if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
            f.unlink()
    err = _profile_fails(capsys, "--run", run, "--out", tmp_path / "out", *TINY_PROFILE)
    assert str(last) in err and "no usable tokenizer" in err, err


def test_a_profile_without_bootstrap_prints_no_nan(small_run, tmp_path, capsys):
    """`memdedup profile --n-boot 0` (README: 0 = no bootstrap) printed '(95% CI nan to nan)' after each
    figure and 'critical value nan', where summary.json holds null: now the figures without an interval,
    and the band as not computed."""
    from pipelines.cli import main

    argv = ["--run", small_run, "--out", tmp_path / "out", *TINY_PROFILE[:4], "--n-boot", "0", "--min-cohort-size", "2"]
    assert main(["profile", *map(str, argv)]) == 0
    out = capsys.readouterr().out
    assert "memorisation:" in out and "band" in out and "nan" not in out.lower(), out


@pytest.mark.parametrize("n_positions", [31, 16])
def test_profile_of_checkpoints_whose_context_is_shorter_than_the_instances(small_run, tmp_path, capsys, n_positions):
    """Own checkpoints (README "Bring your own checkpoints") with a context shorter than the order's 32-token
    instances: a GPT-2 (learned positions) died in the first forward pass with torch's IndexError, a traceback and
    exit 1. One position short is enough (Pythia: instances of 2049 tokens, a context of 2048): the last token is
    only predicted, never fed. Shorter: exit 2 naming the checkpoint and its context."""
    import torch
    import transformers as tf

    from pipelines.cli import main

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    for p in (run / "checkpoints").glob("step-*"):  # the same weights, positions cut to n_positions
        m = tf.AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32)
        m.transformer.wpe = torch.nn.Embedding.from_pretrained(m.transformer.wpe.weight[:n_positions].detach())
        m.config.n_positions = n_positions
        m.save_pretrained(p)
    argv = ["--run", run, "--out", tmp_path / "out", *TINY_PROFILE]
    if n_positions == 31:
        assert main(["profile", *map(str, argv)]) == 0
    else:
        err = _profile_fails(capsys, *argv)
        assert "32 tokens" in err and "context of 16" in err and str(sorted(run.glob("checkpoints/step-*"))[-1]) in err


def test_a_corpus_id_naming_two_documents_is_refused_naming_both_rows(tmp_path):
    """Training orders and members lists name documents by corpus id: an id on two rows made
    both one name, so a document held out and its namesake trained on were both 'member' and
    'non-member' to the audit. It was accepted; now exit 2, one line naming the file and both rows,
    before anything is written."""
    import pyarrow as pa

    corpus = tmp_path / "c"
    corpus.mkdir()
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["one two three", "four five six", "seven eight"]}),
                   corpus / "x.parquet")
    pq.write_table(pa.table({"id": ["d", "b"], "text": ["nine ten", "eleven twelve"]}), corpus / "y.parquet")
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "train", str(corpus), "--out", str(out), "--n-layer",
                        "1", "--n-embd", "32", "--n-head", "2", "--seq-len", "32", "--epochs", "1", "--vocab-size",
                        "300", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"{corpus / 'y.parquet'}: row 1: id 'b' also names row 1 of x.parquet" in r.stderr, r.stderr
    assert not out.exists() or not any(out.iterdir())


def test_checkpoint_every_help_names_every_checkpoint_it_adds():
    """``--checkpoint-every``'s help (and so README's generated table) names the epoch-end
    checkpoints TrainConfig.checkpoint_steps adds; it said "and at the final step" only."""
    import dataclasses

    from audit.config import TrainConfig

    help_text = next(f for f in dataclasses.fields(TrainConfig) if f.name == "checkpoint_every").metadata["help"]
    assert "every epoch" in help_text, help_text
    assert 130 in TrainConfig(checkpoint_every=100, log_checkpoints=1).checkpoint_steps(260, epoch_ends=[130, 260])


def test_a_run_recorded_before_train_threads_is_another_config(small_corpus, small_run, tmp_path):
    """README ("Threads and determinism"): a run whose recorded config holds no ``threads`` (made
    before the option, on whatever thread count the environment gave) is another config: refused,
    naming ``threads``, and nothing of it is changed."""
    from audit.train import train_causal_lm

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["config"]["threads"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"another config \(threads differs\); choose another --out, or --replace"):
        train_causal_lm(discover([small_corpus]), run, SMALL, log=quiet)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_an_audit_of_a_runs_checkpoint_records_the_run(small_run, small_corpus, tmp_path):
    """The audit's manifest names the training run its model is of and that run's digest, which
    the forecast checks (an audit of a run trained again since at the same path is refused); a
    model outside any run records none."""
    from audit.config import AuditConfig
    from audit.layout import training_run_digest
    from audit.run import run_audit

    cfg = AuditConfig(n_sequences=4, prompt_len=8, cont_len=8, n_boot=0)
    run_audit(small_run / "checkpoints" / "step-0000010", [small_corpus], tmp_path / "a", cfg, log=quiet)
    recorded = json.loads((tmp_path / "a" / "manifest.json").read_text())["training_run"]
    assert recorded == {"path": str(small_run.resolve()), "sha256": training_run_digest(small_run)}
    assert len(recorded["sha256"]) == 64
    shutil.copytree(small_run / "model", tmp_path / "alone")
    run_audit(tmp_path / "alone", [small_corpus], tmp_path / "b", cfg, log=quiet)
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["training_run"] is None


def test_a_bug_while_writing_a_checkpoint_is_not_called_a_full_disk(small_corpus, tmp_path, monkeypatch):
    """Any exception of a checkpoint's writers became 'cannot write the checkpoint ...: is the disk
    full?' (exit 2), a programming error too (found by review): only the writers' I/O errors
    (RuntimeError, SafetensorError) are; others propagate as they are."""
    import torch

    from audit.train import train_causal_lm

    def broken(*a, **k):
        raise TypeError("a bug")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(TypeError, match="a bug"):
        train_causal_lm(discover([small_corpus]), tmp_path / "run", SMALL, log=quiet)


def test_a_profile_does_not_depend_on_the_row_order_of_order_and_heldout(small_run, tmp_path):
    """order.parquet and heldout.parquet are sets of rows (README: one row per exposure, the held-out instances): a
    run whose files hold the same rows in another order (one's own, written sorted otherwise) is the same run. Before:
    the control and placebo instances were drawn by position in heldout.parquet, so reversing its rows gave other
    instances, other effects and another summary.json (same seed, same exposures)."""
    from audit.checkpoints import run_profile
    from audit.config import ProfileConfig

    shuffled = tmp_path / "run"
    shutil.copytree(small_run, shuffled)
    for name in ("order.parquet", "heldout.parquet"):
        _edit_parquet(shuffled / name, lambda t: t.take(list(range(t.num_rows))[::-1]))
    cfg = ProfileConfig(n_treated=20, n_control=10, n_boot=40, min_cohort_size=2)
    run_profile(small_run, tmp_path / "a", cfg, log=quiet)
    run_profile(shuffled, tmp_path / "b", cfg, log=quiet)
    for name in ("instances.parquet", "profile.parquet", "event_time.parquet", "retention.parquet"):
        assert pq.read_table(tmp_path / "a" / name).equals(pq.read_table(tmp_path / "b" / name)), name
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in "ab")
    assert {k: v for k, v in a.items() if k != "run"} == {k: v for k, v in b.items() if k != "run"}
