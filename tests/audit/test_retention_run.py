"""A retention run (issue #13 §4, Orhan 2024): ``memdedup train --retention-items N`` trains N
items once, in one early window, then continues on other data only, with checkpoints at
log-spaced steps after their exposure; :func:`audit.checkpoints.run_retention` measures the
forgetting curve from it, with Wilson intervals over the items."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from audit.canaries import generate_canary_corpus
from audit.config import TrainConfig
from dedup.runs import discover
from dedup.synthetic import write_shards

RET = TrainConfig(vocab_size=300, n_layer=1, n_embd=32, n_head=2, seq_len=32, epochs=2, batch_size=8,
                  log_checkpoints=4, checkpoint_every=50, holdout=0.2, warmup_steps=5, retention_items=6)


def quiet(_m: str) -> None:
    pass


@pytest.fixture(scope="module")
def retention_run(tmp_path_factory):
    from audit.train import train_causal_lm

    d = tmp_path_factory.mktemp("retention")
    write_shards(generate_canary_corpus(n_background=60, repeats=(1, 4), canaries_per_repeat=2, seed=1), d / "c", 2)
    man = train_causal_lm(discover([d / "c"]), d / "run", RET, log=quiet)
    return d / "run", man


def test_items_trained_once_in_one_window_and_never_again(retention_run):
    run, man = retention_run
    design = man["retention"]
    order = pq.read_table(run / "order.parquet").to_pandas()
    items = design["instance_ids"]
    assert len(items) == 6 and len(set(items)) == 6
    rows = order[order["instance_id"].isin(items)]
    assert len(rows) == 6 and rows["instance_id"].is_unique  # exactly once each
    first, end = design["window"]
    assert first == RET.warmup_steps + 1 and end == design["exposure_step"] == first  # 6 items fit one batch
    assert rows["step"].between(first, end).all()
    assert not (order.loc[~order["instance_id"].isin(items), "instance_id"].isin(items)).any()
    assert (order["retention_item"] == order["instance_id"].isin(items)).all()
    # full-length items of unique text, so their exposure is the content's first
    assert (rows["n_tokens"] == RET.seq_len).all() and (rows["doc_copies"] == 1).all()
    # the other instances are trained in every epoch
    others = order[~order["instance_id"].isin(items)]
    assert (others.groupby("instance_id")["epoch"].nunique() == RET.epochs).all()
    assert order["step"].max() == man["steps"] and man["epoch_end_steps"][-1] == man["steps"]


def test_checkpoints_log_spaced_after_exposure(retention_run):
    run, man = retention_run
    e, total = man["retention"]["exposure_step"], man["steps"]
    want = sorted({e + 2**k for k in range(12) if e + 2**k <= total} | {e, e - 1 if e > 1 else e})
    assert man["retention"]["checkpoints"] == want
    assert {f"step-{s:07d}" for s in want} <= set(man["checkpoints"])
    assert all((run / "checkpoints" / f"step-{s:07d}").is_dir() for s in want)
    cfg = json.loads((run / "manifest.json").read_text())["config"]
    assert cfg["retention_items"] == 6


def test_forgetting_curve_has_intervals(retention_run, tmp_path):
    from audit.checkpoints import run_retention

    run, man = retention_run
    rows, curve = run_retention(run, tmp_path / "ret", seed=0, batch_size=32, log=quiet)
    e = man["retention"]["exposure_step"]
    lags = [s - e for s in man["retention"]["checkpoints"] if s >= e]
    assert curve["steps_since"].tolist() == lags
    for m in ("recognition", "recognition_scrambled", "recognition_substituted", "exact_recall", "token_recall"):
        assert curve[f"{m}_lower"].notna().all() and curve[f"{m}_upper"].notna().all(), m
        assert (curve[f"{m}_lower"] <= curve[m]).all() and (curve[m] <= curve[f"{m}_upper"]).all()
        assert (curve[f"{m}_n"] == 6).all()
    assert (rows["n"] == 6).all() and (rows["treatment_step"] == e).all()
    assert (tmp_path / "ret" / "retention_run.parquet").exists()
    assert (tmp_path / "ret" / "retention_run_curve.parquet").exists()
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(ValueError, match="lies inside the input directory"):  # it wrote among the run's files
        run_retention(run, run, seed=0, batch_size=32, log=quiet)
    assert sorted(p.name for p in run.iterdir()) == before


def test_no_retention_design_without_the_option(tmp_path):
    from audit.checkpoints import run_retention

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text(json.dumps({"stage": "train", "config": {}}))
    with pytest.raises(ValueError, match="retention-items"):
        run_retention(tmp_path / "run", tmp_path / "out", log=quiet)


def test_memdedup_profile_measures_the_retention_run(retention_run, tmp_path):
    """run_profile (memdedup profile) on a retention run adds the items' forgetting curve."""
    from audit.checkpoints import run_profile
    from audit.config import ProfileConfig

    run, man = retention_run
    s = run_profile(run, tmp_path / "prof", ProfileConfig(n_treated=30, n_control=20, n_boot=40, min_cohort_size=2),
                    log=quiet)
    rr = s["retention_run"]
    assert rr["design"]["instance_ids"] == man["retention"]["instance_ids"]
    assert [r["steps_since"] for r in rr["curve"]] == [c - man["retention"]["exposure_step"]
                                                      for c in man["retention"]["checkpoints"]
                                                      if c >= man["retention"]["exposure_step"]]
    assert all(r["recognition_lower"] <= r["recognition"] <= r["recognition_upper"] for r in rr["curve"])
    assert (tmp_path / "prof" / "retention_run_curve.parquet").exists()
    outputs = json.loads((tmp_path / "prof" / "manifest.json").read_text())["outputs"]  # it listed neither file
    assert {"retention_run.parquet", "retention_run_curve.parquet"} <= set(outputs)
    assert sorted(p.name for p in (tmp_path / "prof").iterdir() if p.name != "manifest.json") == sorted(outputs)
    json.dumps(s)  # the summary stays JSON
    # the model page's profile section shows the forgetting curve (with the items' count)
    from audit.report.model import _profile_section

    html = _profile_section(tmp_path / "prof")
    assert f"{man['retention']['items']} items trained once" in html and 'alt="retention run forgetting curve"' in html


def test_a_profile_of_a_retention_run_reads_the_items_with_its_sampled_rows(retention_run, tmp_path, corpus_reads):
    """The retention items' texts and their foils' are read in the profile's one read of its sampled rows: every
    shard read at most twice, as any profile (test_training.py). Before: 5 reads of each shard (the retention run's
    items and foils in a pass of their own)."""
    from audit.checkpoints import run_profile
    from audit.config import ProfileConfig

    run, man = retention_run
    run_profile(run, tmp_path / "prof", ProfileConfig(n_treated=30, n_control=20, n_boot=0, min_cohort_size=2),
                log=quiet)
    shards = {s.name for s in discover(man["corpus"])}
    for counts in (corpus_reads.opens, corpus_reads.passes):
        assert set(counts) == shards and max(counts.values()) <= 2, counts


def test_a_retention_run_without_its_probe_checkpoints_is_one_line_and_writes_nothing(retention_run, tmp_path, capsys):
    """Every probe checkpoint at or after the exposure step deleted after training: memdedup
    profile exits 2 with one line naming the run, before writing any output. Before: an
    IndexError traceback (exit 1) after the profile's outputs were written (no manifest)."""
    import shutil

    from pipelines.cli import main

    src, man = retention_run
    run = tmp_path / "run"
    shutil.copytree(src, run)
    e = man["retention"]["exposure_step"]
    for s in man["retention"]["checkpoints"]:
        if s >= e:
            shutil.rmtree(run / "checkpoints" / f"step-{s:07d}", ignore_errors=True)
    capsys.readouterr()
    assert main(["profile", "--run", str(run), "--out", str(tmp_path / "out"), "--n-treated", "30", "--n-control", "20",
                 "--n-boot", "0", "--min-cohort-size", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(run) in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_profile_rerun_of_another_run_leaves_no_forgetting_curve_of_the_retention_run(retention_run, tmp_path):
    """A profile of a retention run, then one of a run without a retention design into the same
    --out: the directory holds the same files as a fresh profile of the second run. Before:
    retention_run.parquet and retention_run_curve.parquet stayed, and the model report drew the
    first run's forgetting curve beside the second run's profile."""
    import shutil

    from audit.checkpoints import run_profile
    from audit.config import ProfileConfig

    src, man = retention_run
    own = tmp_path / "own"  # the same checkpoints laid out by hand: no manifest, no retention design
    shutil.copytree(src, own)
    (own / "manifest.json").unlink()
    (own / "train_config.json").unlink()  # nor the record of an unfinished memdedup train run
    cfg = ProfileConfig(n_treated=30, n_control=20, n_boot=0, min_cohort_size=2)
    run_profile(src, tmp_path / "out", cfg, log=quiet)
    assert (tmp_path / "out" / "retention_run_curve.parquet").exists()
    run_profile(own, tmp_path / "out", cfg, corpus=man["corpus"], log=quiet)
    run_profile(own, tmp_path / "fresh", cfg, corpus=man["corpus"], log=quiet)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in (tmp_path / "fresh").iterdir())


@pytest.mark.parametrize("stage", ["profile", "retention"])
def test_recall_from_a_generation_that_is_not_greedy_decoding_is_refused(retention_run, tmp_path, monkeypatch,
                                                                         stage):
    """Recall over checkpoints came from generate() unchecked (the audit's --generate was checked): a model whose
    generate() is not greedy decoding of its forward pass (transformers' RWKV mixes up a batch's recurrent states)
    gave wrong recall curves, exit 0. Both the profile's and the retention run's recall are now checked against the
    teacher-forced pass (a generation made to differ at its first token stands for such a model)."""
    from audit.checkpoints import run_profile, run_retention
    from audit.config import ProfileConfig
    from audit.lm import CausalLM, ModelError

    real = CausalLM.generate_greedy

    def other_first_token(self, prompts, n_new, *a, **kw):
        out = real(self, prompts, n_new, *a, **kw)
        out[:, 0] = (out[:, 0] + 1) % len(self.tokenizer)
        return out

    monkeypatch.setattr(CausalLM, "generate_greedy", other_first_token)
    run, _ = retention_run
    with pytest.raises(ModelError, match="generation disagrees with the teacher-forced pass"):
        if stage == "profile":
            run_profile(run, tmp_path / "p", ProfileConfig(n_treated=30, n_control=20, n_boot=0, min_cohort_size=2),
                        log=quiet)
        else:
            run_retention(run, tmp_path / "r", seed=0, batch_size=32, log=quiet)


def test_retention_foils_do_not_depend_on_the_row_order_of_heldout(retention_run, tmp_path):
    """heldout.parquet is a set of rows: the same held-out instances written in another order are the same run.
    Before: each item's foil was drawn by position in the file, so reversing its rows gave other foils and other
    recognition results (as the profile's controls did)."""
    import shutil

    import pyarrow.parquet as pq

    from audit.checkpoints import run_retention

    run, _ = retention_run
    shuffled = tmp_path / "run"
    shutil.copytree(run, shuffled)
    t = pq.read_table(shuffled / "heldout.parquet")
    pq.write_table(t.take(list(range(t.num_rows))[::-1]), shuffled / "heldout.parquet")
    a, _ = run_retention(run, tmp_path / "a", seed=0, batch_size=32, log=quiet)
    b, _ = run_retention(shuffled, tmp_path / "b", seed=0, batch_size=32, log=quiet)
    assert a.equals(b)
