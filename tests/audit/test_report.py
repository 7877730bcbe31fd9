"""HTML reports (audit.report and ``memdedup report``) on hand-made audit, profile and dedup
directories: structure and numbers only (no browser, no model)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit import stats
from audit.report.comparison import comparison_report
from audit.report.model import model_report
from dedup.io import write_stage_manifest

P, C = 4, 4


def _write_audit(d: Path, extractable: list[bool], *, buckets: list[str], members: list[bool] | None = None,
                 pythia: bool = True, doc_ids: list[str] | None = None) -> Path:
    """An audit directory as ``memdedup audit`` writes it: sequence i comes from shard
    ``a.parquet`` row i, prompt [i, i, i, i], truth [100 + i, ...]."""
    n = len(extractable)
    ex = np.array(extractable)
    lead = np.where(ex, C, np.arange(n) % C)
    truth = [[100 + i] * C for i in range(n)]
    gen = [t[:l] + [7] * (C - l) for t, l in zip(truth, lead)]
    status = ["unique" if b == "1" else ("removed" if i % 2 else "kept") for i, b in enumerate(buckets)]
    cols = {
        "seq_id": np.arange(n), "doc_id": doc_ids or [f"d{i}" for i in range(n)], "shard": ["a.parquet"] * n,
        "row": np.arange(n), "token_offset": np.zeros(n, dtype=np.int64),
        "prompt": pa.array([[i] * P for i in range(n)], pa.list_(pa.int64())),
        "truth": pa.array(truth, pa.list_(pa.int64())), "extractable": ex, "leading_matched": lead,
        "pythia_score": pa.array((lead / C).tolist() if pythia else [None] * n, pa.float64()),
        "generated": pa.array(gen if pythia else [None] * n, pa.list_(pa.int64())),
        "loss": np.linspace(0.1, 3.0, n),
        "score_loss": -np.linspace(0.1, 3.0, n), "score_zlib": np.linspace(1.0, 0.0, n),
        "duplicate_count": np.array([int(b.split("-")[0]) for b in buckets]),
        "duplicate_bucket": buckets, "dedup_status": status,
        "member": pa.array(members if members is not None else [None] * n, pa.bool_()),
    }
    d.mkdir(parents=True)
    pq.write_table(pa.table(cols), d / "per_sequence.parquet")
    k = int(ex.sum())
    lo, hi = stats.wilson_interval(k, n)
    summary = {"model": {"path": f"/models/{d.name}", "name": d.name}, "config": {"prompt_len": P, "cont_len": C},
               "sequences": {"n": n, "considered": n, "skipped_short": 0},
               "extractable": {"n": n, "k": k, "rate": k / n, "lower": lo, "upper": hi},
               "mean_leading_matched": float(lead.mean())}
    (d / "summary.json").write_text(json.dumps(summary))
    write_stage_manifest(d, "audit", {}, versions=False)  # last, as the audit writes it
    return d


@pytest.fixture()
def dirs(tmp_path):
    """raw: 10 sequences, buckets 1 x5 and 2-3 x5, extractable rows 0-3, 5, 6 (4/5 and 2/5);
    dedup: 11 sequences, extractable rows 0 and 5 (1/5, 1/5) and one bucket 4-7 sequence.
    Dedup removed a.parquet rows 1, 3 (exact), 5 (near) and b.parquet row 2 (not sampled)."""
    buckets = ["1"] * 5 + ["2-3"] * 5
    raw_ex = [i in (0, 1, 2, 3, 5, 6) for i in range(10)]
    members = [i < 7 for i in range(10)]
    raw = _write_audit(tmp_path / "raw", raw_ex, buckets=buckets, members=members,
                       doc_ids=["<script>alert(1)</script>"] + [f"d{i}" for i in range(1, 10)])
    ded = _write_audit(tmp_path / "dedup", [i in (0, 5) for i in range(11)], buckets=buckets + ["4-7"], pythia=False)
    dd = tmp_path / "dd"
    dd.mkdir()
    (dd / "manifest.json").write_text(json.dumps({"stage": "dedup", "totals": {"rows": 20, "kept": 16, "removed": {"exact": 3, "near": 1}},
                                                  "config": {}}))
    pq.write_table(pa.table({"id": ["x1", "x3", "x5", "y2"], "shard": ["a.parquet", "a.parquet", "a.parquet", "b.parquet"],
                             "row": pa.array([1, 3, 5, 2], pa.int64()), "reason": ["exact", "exact", "near", "exact"]}),
                   dd / "removed.parquet")
    prof = tmp_path / "prof"
    prof.mkdir()
    cells = [(g, c) for g in (2, 4) for c in (1, 2, 4, 8) if c >= g]
    pd.DataFrame({"treatment_step": [g for g, _ in cells], "step": [c for _, c in cells],
                  "effect": [0.5, 0.3, 0.2, 0.4, 0.1], "se": 0.05, "lower": [0.4, 0.2, -0.1, 0.3, -0.05],
                  "upper": [0.6, 0.4, 0.5, 0.5, 0.25], "placebo": False}).to_parquet(prof / "profile.parquet")
    pd.DataFrame({"treatment_step": [2, 2, 4], "step": [2, 8, 4], "n": 5, "recognition": [0.9, 0.7, 0.8],
                  "exact_recall": [0.4, 0.1, 0.3], "token_recall": [0.6, 0.4, 0.5]}).to_parquet(prof / "retention.parquet")
    (prof / "summary.json").write_text(json.dumps({
        "memorisation": {"instantaneous": {"effect": 0.45, "lower": 0.35, "upper": 0.55, "n_cells": 2}},
        "placebo_cells_covering_zero": 0.93,
        "forecast": {"precision": 0.8, "recall": 0.5, "n": 40, "early_step": 4, "final_step": 8}}))
    write_stage_manifest(prof, "profile", {}, versions=False)
    return {"raw": raw, "dedup": ded, "dedup_dir": dd, "profile": prof}


def _assert_self_contained(page: str) -> list[str]:
    """No external resources, no script; every image an inline PNG. Returns the image URIs."""
    assert "<script" not in page.lower()
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<link\b", page, re.I)
    assert not re.search(r"href\s*=", page, re.I)
    assert "url(" not in page  # no CSS-loaded resources
    srcs = re.findall(r'\bsrc\s*=\s*"([^"]*)"', page)
    for s in srcs:
        assert s.startswith("data:image/png;base64,"), s[:60]
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    return srcs


def test_model_report_is_self_contained_with_all_sections(dirs, tmp_path):
    out = model_report(dirs["raw"], tmp_path / "out" / "raw.html", profile_dir=dirs["profile"], title="Raw <model> & co")
    page = out.read_text(encoding="utf-8")
    imgs = _assert_self_contained(page)
    # duplicates, score histogram, ROC, dedup status, profile heatmap, retention curves
    assert len(imgs) == 6
    for heading in ("Extractable rate by occurrences", "Memorization score", "Membership inference",
                    "Extractable rate by dedup status", "Memorization over training", "Most memorized sequences"):
        assert f"<h2>{heading}</h2>" in page, heading
    assert "<title>Raw &lt;model&gt; &amp; co</title>" in page
    assert "60.0%" in page  # 6 of 10 extractable
    lo, hi = stats.wilson_interval(6, 10)
    assert f"{100 * lo:.1f}% – {100 * hi:.1f}%" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "100 100 100 100" in page  # token ids shown when no decoder is given
    roc = stats.roc_auc(-np.linspace(0.1, 3.0, 10), np.arange(10) < 7)
    assert f"{roc:.3f}" in page
    assert "93.0%" in page  # placebo cells covering 0
    # the audit's summary.json is next to the page (with the sections the page derived: this one lacks some)
    own = json.loads((dirs["raw"] / "summary.json").read_text())
    beside = json.loads((tmp_path / "out" / "raw.summary.json").read_text())
    assert {k: beside[k] for k in own} == own


def test_model_report_without_pythia_members_or_profile(dirs, tmp_path):
    page = model_report(dirs["dedup"], tmp_path / "d.html").read_text(encoding="utf-8")
    imgs = _assert_self_contained(page)
    assert "<h2>Leading tokens matched</h2>" in page and "Memorization score</h2>" not in page
    assert "Membership inference" not in page and "Memorization over training" not in page
    assert len(imgs) == 3  # duplicates, leading-matched histogram, dedup status
    assert "greedy generation</th>" not in page  # no generation column without generations


def test_model_report_says_what_sequences_were_skipped_and_why(dirs, tmp_path):
    """Given sequences whose document the corpus does not hold are counted apart from short ones
    (summary.json's skipped_missing): the page names both."""
    summary = json.loads((dirs["dedup"] / "summary.json").read_text())
    summary["sequences"].update(skipped_short=3, skipped_missing=2, file="/given.parquet")
    (dirs["dedup"] / "summary.json").write_text(json.dumps(summary))
    page = model_report(dirs["dedup"], tmp_path / "d.html").read_text(encoding="utf-8")
    assert "3 documents shorter than prompt + continuation" in page
    assert "2 given ids not in the corpus" in page


def test_model_report_decodes_and_escapes_text(dirs, tmp_path):
    def decode(ids):
        return "".join(f"<t{i}>&" for i in ids)

    page = model_report(dirs["raw"], tmp_path / "r.html", decode=decode).read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert "&lt;t100&gt;&amp;" in page and "<t100>" not in page
    assert "100 100 100 100" not in page


def test_top_table_lists_distinct_sequences_most_memorized_first(tmp_path):
    # 3 copies of one sequence (rows 0-2 share prompt and truth) count once
    d = _write_audit(tmp_path / "a", [True, True, True, False], buckets=["2-3"] * 4)
    t = pq.read_table(d / "per_sequence.parquet").to_pandas()
    t["prompt"] = [[1] * P, [1] * P, [1] * P, [9] * P]
    t["truth"] = [[5] * C, [5] * C, [5] * C, [6] * C]
    pq.write_table(pa.Table.from_pandas(t, preserve_index=False), d / "per_sequence.parquet")
    page = model_report(d, tmp_path / "a.html").read_text(encoding="utf-8")
    top = page.split("<h2>Most memorized sequences</h2>", 1)[1]
    assert top.count('<div class="text">1 1 1 1</div>') == 1
    assert "×3 in the sample" in top
    assert top.index("1 1 1 1") < top.index("9 9 9 9")


def test_comparison_numbers(dirs, tmp_path):
    out = comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "c" / "comparison.html",
                            dedup_dir=dirs["dedup_dir"])
    page = out.read_text(encoding="utf-8")
    imgs = _assert_self_contained(page)
    assert len(imgs) == 1  # all models in one plot
    data = json.loads((tmp_path / "c" / "comparison.json").read_text())
    assert data["labels"] == ["raw", "dedup"]
    assert [m["extractable"]["k"] for m in data["models"]] == [6, 2]
    assert [m["sequences"] for m in data["models"]] == [10, 11]
    by = {r["bucket"]: r for r in data["by_duplicates"]}
    assert list(by) == ["1", "2-3", "4-7"]
    assert by["1"]["models"]["raw"]["rate"] == pytest.approx(0.8)
    assert by["1"]["models"]["dedup"]["rate"] == pytest.approx(0.2)
    assert by["1"]["ratio_to_first"]["dedup"] == pytest.approx(0.25)
    assert by["2-3"]["ratio_to_first"]["dedup"] == pytest.approx(0.5)
    assert by["4-7"]["models"]["raw"]["n"] == 0 and by["4-7"]["ratio_to_first"]["dedup"] is None
    dd = data["dedup"]
    assert (dd["documents_total"], dd["documents_kept"], dd["documents_removed"]) == (20, 16, 4)
    assert dd["documents_kept_fraction"] == pytest.approx(0.8)
    assert dd["removed_by_reason"] == {"exact": 3, "near": 1}
    fm = dd["first_model"]
    # raw's extractable rows 0, 1, 2, 3, 5, 6; removed (a.parquet) rows 1, 3 (exact), 5 (near); b.parquet row 2 is
    # another file's row 2 and must not match
    assert fm["label"] == "raw" and fm["extractable"] == 6
    assert fm["sequences_from_removed_documents"] == 3
    assert fm["extractable_from_removed_documents"] == 3
    assert fm["extractable_from_removed_by_reason"] == {"exact": 2, "near": 1}
    assert fm["extractable_from_removed_fraction"] == pytest.approx(0.5)
    for text in ("<h2>Headline numbers</h2>", "<h2>Extractable rate by occurrences</h2>",
                 "<h2>What deduplication removed</h2>", "×0.25", "80.0%", "20.0%"):
        assert text in page, text


def test_comparison_validates_labels(dirs, tmp_path):
    with pytest.raises(ValueError, match="one label per audit"):
        comparison_report([dirs["raw"], dirs["dedup"]], ["raw"], tmp_path / "c.html")
    with pytest.raises(ValueError, match="distinct"):
        comparison_report([dirs["raw"], dirs["dedup"]], ["x", "x"], tmp_path / "c.html")
    with pytest.raises(ValueError, match="not an audit output"):
        comparison_report([tmp_path], ["x"], tmp_path / "c.html")


@pytest.mark.parametrize("labels", [["", "b"], ["a", " "]])
def test_a_blank_label_is_refused_before_anything_is_written(tmp_path, labels):
    """``--labels ''`` made a page titled with nothing and a comparison column without a name."""
    from audit.report.run import write_report

    with pytest.raises(ValueError, match="--labels: a label may not be blank"):
        write_report([tmp_path / "a", tmp_path / "b"], tmp_path / "out", labels=labels)
    assert not (tmp_path / "out").exists()


def test_a_comparison_of_audits_with_other_prompt_or_continuation_lengths_is_refused(dirs, tmp_path):
    """Extractable at 16 + 16 tokens and at 32 + 32 are different measures (Carlini et al. 2022:
    memorisation grows with the prompt's length), so their ratio is no effect of dedup. The page
    showed 'x2.00' between them without a word."""
    summary = json.loads((dirs["dedup"] / "summary.json").read_text())
    summary["config"] = {"prompt_len": P // 2, "cont_len": C}
    (dirs["dedup"] / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError, match=rf"same prompt and continuation lengths.*raw: {P} \+ {C}.*dedup: {P // 2} \+ {C}"):
        comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "c.html")
    assert not (tmp_path / "c.html").exists()


def test_a_comparison_of_audits_under_other_bos_policies_is_refused(dirs, tmp_path):
    """``--bos auto`` feeds a Llama-family model its BOS before each window, ``--bos never`` does not:
    other contexts, other extraction rates of one model, as other prompt lengths are. The comparison
    page set them side by side with a ratio and did not show the policy. An audit recorded before the
    option (no ``bos`` in its config) is compared as before."""
    for d, bos in ((dirs["raw"], "auto"), (dirs["dedup"], "never")):
        summary = json.loads((d / "summary.json").read_text())
        summary["config"]["bos"] = bos
        (d / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError, match=r"BOS policy.*raw: auto.*dedup: never"):
        comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "c.html")
    assert not (tmp_path / "c.html").exists()
    summary = json.loads((dirs["dedup"] / "summary.json").read_text())
    del summary["config"]["bos"]
    (dirs["dedup"] / "summary.json").write_text(json.dumps(summary))
    assert comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "c.html").exists()


def test_a_comparison_of_audits_of_other_corpora_or_score_settings_says_so_at_the_top(dirs, tmp_path, capsys):
    """Audits of other corpora, other --k (Min-K% and Min-K%++ over another fraction of tokens), other
    --offset or --per-bucket were compared without a word: the page only said 'comparable as rates'.
    Their rates are still rates (a raw and a dedup model audited on one corpus is the main use), so
    the comparison is made, and says each difference visibly above the headline numbers, in
    comparison.json's and the manifest's (--json) ``differences`` and on stderr; settings that agree,
    or are not recorded, say nothing."""
    from pipelines.cli import main

    def audited(d, corpus_bytes, **config):
        summary = json.loads((d / "summary.json").read_text())
        summary["config"].update(config)
        (d / "summary.json").write_text(json.dumps(summary))
        (d / "manifest.json").write_text(json.dumps({"stage": "audit", "corpus_bytes": corpus_bytes}))

    audited(dirs["raw"], {"a.parquet": 4321, "b.parquet": 10}, k=0.2, offset="start", per_bucket=None)
    audited(dirs["dedup"], {"a.parquet": 4321, "b.parquet": 10}, k=0.2, offset="start", per_bucket=None)
    comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "same" / "c.html")
    assert json.loads((tmp_path / "same" / "c.json").read_text())["differences"] == []
    assert "Settings differ" not in (tmp_path / "same" / "c.html").read_text(encoding="utf-8")

    audited(dirs["dedup"], {"a.parquet": 999}, k=0.5, offset="random", per_bucket=8)
    out = tmp_path / "rep"
    assert main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    diffs = json.loads((out / "comparison.json").read_text())["differences"]
    assert [d["setting"] for d in diffs] == ["corpus", "offset", "per_bucket", "k"]
    assert diffs[0]["values"] == {"raw": "2 files, 4,331 bytes, text column 'text'",
                                  "dedup": "1 file, 999 bytes, text column 'text'"}
    assert diffs[3]["values"] == {"raw": 0.2, "dedup": 0.5} and "Min-K%" in diffs[3]["meaning"]
    assert json.loads(captured.out)["comparison"]["differences"] == diffs
    assert len([line for line in captured.err.splitlines() if line.startswith("note: ")]) == 4, captured.err
    page = (out / "comparison.html").read_text(encoding="utf-8")
    top = page[:page.index("<h2>Headline numbers</h2>")]
    for text in ("Settings differ", "corpus", "4,331 bytes", "999 bytes", "Min-K%", "0.5", "random", "per-bucket"):
        assert text in top, text


def test_a_comparison_of_audits_with_other_dedup_outputs_says_so(dirs, tmp_path):
    """Audits made with other --dedup-dir outputs (another threshold, say), or one with and one without,
    split their sequences into unique, kept and removed by other dedup runs (or not at all): their rates by
    dedup status sit side by side as if of one split. The audit records its --dedup-dir in manifest.json,
    but the comparison did not say it differs. Now it is a stated difference like the others; one dedup
    output, or audits that do not record it, say nothing."""
    def made_with(d, dedup_dir):
        (d / "manifest.json").write_text(json.dumps({"stage": "audit", "dedup_dir": dedup_dir}))

    made_with(dirs["raw"], "/data/dd")
    made_with(dirs["dedup"], "/data/dd")
    comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "same" / "c.html")
    assert json.loads((tmp_path / "same" / "c.json").read_text())["differences"] == []
    for i, other in enumerate(["/data/dd-0.9", None]):
        made_with(dirs["dedup"], other)
        page = comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / f"o{i}" / "c.html")
        diffs = json.loads((tmp_path / f"o{i}" / "c.json").read_text())["differences"]
        assert [d["setting"] for d in diffs] == ["dedup_dir"], diffs
        assert diffs[0]["values"] == {"raw": "/data/dd", "dedup": other} and "dedup status" in diffs[0]["meaning"]
        text = page.read_text(encoding="utf-8")
        assert "Settings differ between these audits: dedup_dir" in text and f"dedup: {other or 'none'}" in text


def test_a_comparison_whose_dedup_dir_is_not_the_audits_says_so(dirs, tmp_path):
    """report --dedup-dir of another dedup run (T = 0.5) than the one both audits were made with (T = 0.8) gave no
    word: the accounting on the page was of one dedup run, the rates by dedup status of another (found by the CLI
    probe). It is now a stated difference; the audits' own dedup output, or audits without one, say nothing."""
    for d in (dirs["raw"], dirs["dedup"]):
        (d / "manifest.json").write_text(json.dumps({"stage": "audit", "dedup_dir": str(tmp_path / "dd-0.8")}))
    comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "o" / "c.html",
                      dedup_dir=dirs["dedup_dir"])
    diffs = json.loads((tmp_path / "o" / "c.json").read_text())["differences"]
    assert [d["setting"] for d in diffs] == ["report --dedup-dir"], diffs
    assert diffs[0]["values"] == {"this report": str(dirs["dedup_dir"].resolve()), "raw": str(tmp_path / "dd-0.8"),
                                  "dedup": str(tmp_path / "dd-0.8")}, diffs
    for recorded in (str(dirs["dedup_dir"]), None):
        for d in (dirs["raw"], dirs["dedup"]):
            (d / "manifest.json").write_text(json.dumps({"stage": "audit", "dedup_dir": recorded}))
        comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "s" / "c.html",
                          dedup_dir=dirs["dedup_dir"])
        assert json.loads((tmp_path / "s" / "c.json").read_text())["differences"] == [], recorded


@pytest.mark.parametrize("which", ["raw", "profile"])
def test_a_killed_audit_or_profile_is_refused_until_rerun(dirs, tmp_path, which):
    """A profile or audit killed while writing (SIGTERM from Slurm) leaves its marker and some of its new
    files, its earlier summary.json and manifest.json removed. The report made pages of that partial output
    (exit 0; a profile's heatmap without its summary), as if complete. Now a ValueError naming the
    directory; once it holds a manifest.json (a completed run, or the earlier one a kill left) it is read."""
    from audit.report.run import write_report
    from dedup import io

    d = dirs[which]
    for f in ("summary.json", "manifest.json"):
        (d / f).unlink(missing_ok=True)
    (d / io.RUNNING_FILE).write_text("")
    with pytest.raises(ValueError, match=rf"{d}.*unfinished"):
        write_report([dirs["raw"]], tmp_path / "rep", profile_dirs=[dirs["profile"]])
    assert not (tmp_path / "rep").exists()
    (d / "manifest.json").write_text(json.dumps({"stage": "audit" if which == "raw" else "profile"}))
    write_report([dirs["raw"]], tmp_path / "rep", profile_dirs=[dirs["profile"]])


def test_a_profile_without_its_manifest_is_refused(dirs, tmp_path):
    """A profile writes manifest.json last, so a directory without one was stopped before it finished (its
    marker lost with the node's scratch) or is not a profile: the report read its tables as complete (exit 0)."""
    from audit.report.run import write_report

    (dirs["profile"] / "manifest.json").unlink()
    with pytest.raises(ValueError, match=rf"{dirs['profile']}: not a completed profile output \(no manifest.json\)"):
        write_report([dirs["raw"]], tmp_path / "rep", profile_dirs=[dirs["profile"]])
    # a mistyped path is said to be missing, not unfinished (as it was before manifests were required)
    with pytest.raises(ValueError, match=rf"{tmp_path / 'nope'}: not a completed profile output \(no such directory\)"):
        write_report([dirs["raw"]], tmp_path / "rep", profile_dirs=[tmp_path / "nope"])
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("command", ["forecast", "report"])
def test_an_audit_without_its_manifest_is_refused(dirs, tmp_path, capsys, command):
    """An audit writes its manifest.json last: a directory without one is an audit stopped before it finished (or not
    an audit). forecast read it as complete (its "seen" fell back to the member labels and the step order of two
    checkpoints went unchecked), and report drew its pages, both exit 0. Now exit 2, one line naming the directory,
    nothing written and the inputs as they were."""
    from pipelines.cli import main

    argv, out = [command, str(dirs["raw"]), str(dirs["dedup"]), "--out"], tmp_path / f"{command}-out"
    assert main([*argv, str(tmp_path / "finished")]) == 0  # both finished
    (dirs["dedup"] / "manifest.json").unlink()
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main([*argv, str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"memdedup {command}: error: {dirs['dedup']}: not a completed audit output (no manifest.json); "
                   "rerun memdedup audit with the same --out to finish it"], err
    assert not out.exists() and {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_comparison_escapes_labels(dirs, tmp_path):
    out = comparison_report([dirs["raw"], dirs["dedup"]], ["raw <b>", "dedup & co"], tmp_path / "c.html")
    page = out.read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert "raw &lt;b&gt;" in page and "raw <b>" not in page and "dedup &amp; co" in page
    assert json.loads((tmp_path / "c.json").read_text())["dedup"] is None


def test_cli_report_end_to_end(dirs, tmp_path, capsys):
    from pipelines.cli import main

    out = tmp_path / "reports"
    rc = main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--out", str(out), "--labels", "raw", "dedup",
               "--dedup-dir", str(dirs["dedup_dir"]), "--profile-dir", str(dirs["profile"])])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["comparison.html", "comparison.json", "dedup.html",
                                                      "dedup.summary.json", "manifest.json", "raw.html",
                                                      "raw.summary.json"]
    manifest = json.loads((out / "manifest.json").read_text())  # the one stage-manifest writer, written last
    assert manifest["stage"] == "report" and [p["page"] for p in manifest["pages"]] == ["raw.html", "dedup.html"]
    assert manifest["comparison"] == {"page": "comparison.html", "numbers": "comparison.json", "differences": []}
    assert "Memorization over training" in (out / "raw.html").read_text(encoding="utf-8")
    assert "Memorization over training" not in (out / "dedup.html").read_text(encoding="utf-8")
    data = json.loads((out / "comparison.json").read_text())
    assert data["dedup"]["first_model"]["extractable_from_removed_documents"] == 3
    assert "comparison.html" in capsys.readouterr().out

    # one audit: no comparison page; default label = directory name
    rc = main(["report", str(dirs["dedup"]), "--out", str(tmp_path / "one")])
    assert rc == 0 and sorted(p.name for p in (tmp_path / "one").iterdir()) == ["dedup.html", "dedup.summary.json",
                                                                                 "manifest.json"]

    # errors are one line and exit code 2
    assert main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--out", str(out), "--labels", "a"]) == 2
    assert main(["report", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "not an audit output" in capsys.readouterr().err


def _save_word_tokenizer(d: Path) -> Path:
    """A word-level tokenizer of 200 tokens, id i = ``w{i}`` (0: ``[UNK]``), saved in ``d``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{f"w{i}": i for i in range(1, 200)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(d)
    return d


def test_cli_report_decodes_with_a_local_tokenizer(dirs, tmp_path, capsys):
    pytest.importorskip("transformers")
    from pipelines.cli import main

    _save_word_tokenizer(tmp_path / "tok")
    # the dedup audit records another tokenizer (and a model path that does not exist): token ids, a warning
    summary = json.loads((dirs["dedup"] / "summary.json").read_text())
    summary["model"]["tokenizer_sha256"] = "0" * 64
    (dirs["dedup"] / "summary.json").write_text(json.dumps(summary))
    for quiet in ([], ["--quiet"]):  # a warning, which --quiet does not silence (it went through the notes' log)
        with pytest.warns(UserWarning, match=f"{dirs['dedup']}: the tokenizer of .* is not the audited model's"):
            assert main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--out", str(tmp_path / "r"),
                         "--model-dir", str(tmp_path / "tok"), *quiet]) == 0
    page = (tmp_path / "r" / "raw.html").read_text(encoding="utf-8")
    assert "w100 w100 w100 w100" in page and "decoded with the model" in page
    page = (tmp_path / "r" / "dedup.html").read_text(encoding="utf-8")
    assert "100 100 100 100" in page and "w100" not in page


def test_a_generated_id_no_token_names_is_shown_not_dropped(dirs, tmp_path):
    """Embeddings are often larger than the tokenizer (Pythia: 50,304 rows, 50,277 tokens; Qwen2 and OLMo too), and a
    young checkpoint's greedy generation picks such rows. The tokenizer decodes them to nothing: the page showed a
    generation of [250, 7, 7, 7] as 'w7 w7 w7', as if the model had not generated the first token. Now as token ids."""
    pytest.importorskip("transformers")
    from pipelines.cli import main

    t = pq.read_table(dirs["raw"] / "per_sequence.parquet").to_pydict()
    assert t["generated"][4] == [7, 7, 7, 7]  # row 4: nothing matched
    t["generated"][4] = [250, 7, 7, 7]
    pq.write_table(pa.table(t), dirs["raw"] / "per_sequence.parquet")
    assert main(["report", str(dirs["raw"]), "--out", str(tmp_path / "r"),
                 "--model-dir", str(_save_word_tokenizer(tmp_path / "tok"))]) == 0
    page = (tmp_path / "r" / "raw.html").read_text(encoding="utf-8")
    assert "w104 w104 w104 w104" in page and "250 7 7 7" in page, page  # row 4's truth decoded, its generation as ids


def test_pages_read_the_numbers_the_audit_wrote(dirs, tmp_path):
    """The pages show summary.json's numbers, not numbers recomputed from the per-sequence table:
    a summary that disagrees with the table wins, on the page and in comparison.json."""
    s = json.loads((dirs["raw"] / "summary.json").read_text())
    s["extractable"] = {"n": 10, "k": 3, "rate": 0.3, "lower": 0.11, "upper": 0.61}
    s["extractable_by_duplicates"] = [{"group": "1", "n": 5, "k": 1, "rate": 0.2, "lower": 0.0, "upper": 0.7}]
    (dirs["raw"] / "summary.json").write_text(json.dumps(s))
    page = model_report(dirs["raw"], tmp_path / "raw.html").read_text(encoding="utf-8")
    assert "3 of 10; 95% CI 11.0% – 61.0%" in page and "6 of 10" not in page  # the table has 6 of 10
    comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "comparison.html")
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert data["models"][0]["extractable"] == s["extractable"]
    assert data["by_duplicates"][0]["models"]["raw"]["rate"] == 0.2
    assert data["by_duplicates"][1]["bucket"] == "2-3" and data["by_duplicates"][1]["models"]["raw"]["n"] == 0


def test_report_numbers_equal_the_audits_summary(canary_lm, tmp_path):
    """A real audit (generation, dedup output, members): every number of the model page's JSON,
    of comparison.json and on the pages is summary.json's."""
    from audit.config import AuditConfig
    from audit.run import run_audit
    from dedup import DedupConfig, dedup_files

    ids = [i for i, k in zip(canary_lm.corpus.column("id").to_pylist(), canary_lm.corpus.column("kind").to_pylist())
           if k == "background"]
    (tmp_path / "members.txt").write_text("\n".join(ids[::2]) + "\n")
    dedup_files([canary_lm.corpus_dir], tmp_path / "dedup", DedupConfig(), threads=1)
    audits = []
    for name, seed in (("a", 1), ("b", 2)):
        run_audit(canary_lm.model_dir, [canary_lm.corpus_dir], tmp_path / name,
                  AuditConfig(n_sequences=120, seed=seed, generate=True, n_boot=40), dedup_dir=tmp_path / "dedup",
                  members=tmp_path / "members.txt", log=lambda m: None)
        audits.append(json.loads((tmp_path / name / "summary.json").read_text()))
    page = model_report(tmp_path / "a", tmp_path / "r" / "a.html").read_text(encoding="utf-8")
    assert json.loads((tmp_path / "r" / "a.summary.json").read_text()) == audits[0]
    comparison_report([tmp_path / "a", tmp_path / "b"], ["a", "b"], tmp_path / "r" / "comparison.html",
                      dedup_dir=tmp_path / "dedup")
    data = json.loads((tmp_path / "r" / "comparison.json").read_text())
    for label, s, m in zip(("a", "b"), audits, data["models"]):
        assert m["extractable"] == s["extractable"] and m["sequences"] == s["sequences"]["n"]
        assert m["mean_leading_matched"] == s["mean_leading_matched"]
        assert m["pythia_score_mean"] == s["pythia_score"]["mean"]
        assert m["pythia_memorized"] == s["pythia_score"]["memorized"]
        assert m["membership_roc_auc"] == {k: v["roc_auc"] for k, v in s["membership"]["scores"].items()}
        for key, section in (("by_duplicates", "extractable_by_duplicates"),
                             ("by_dedup_status", "extractable_by_dedup_status")):
            rows = {r["bucket" if key == "by_duplicates" else "status"]: r["models"][label] for r in data[key]}
            for r in s[section]:
                if r["n"]:
                    assert rows[r["group"]] == {k: r[k] for k in ("n", "k", "rate", "lower", "upper")}
    s = audits[0]
    ex = s["extractable"]
    assert f"{100 * ex['rate']:.1f}%" in page and f"{ex['k']:,} of {ex['n']:,}" in page
    for name, m in s["membership"]["scores"].items():
        boot = m["roc_auc_boot"]
        assert f"<td class=\"num\">{m['roc_auc']:.3f}</td><td class=\"num\">{boot['lower']:.3f} – {boot['upper']:.3f}" \
               f"</td><td class=\"num\">{m['pr_auc']:.3f}</td>" in page, name
    for r in s["extractable_by_duplicates"]:
        assert f"<td>{r['group']}</td><td class=\"num\">{r['n']:,}</td><td class=\"num\">{r['k']:,}</td>" in page


@pytest.mark.parametrize("key, value, needle", [
    ("sequences", 5, "'sequences' is 5, expected an object"),
    ("retention", "x", "'retention' is 'x', expected an object"),
])
def test_a_damaged_audit_summary_section_the_page_reads_is_named(dirs, tmp_path, capsys, key, value, needle):
    """An audit's summary.json is checked against the sections the audit derives from its table, but 'sequences'
    and 'retention', which the page also reads, were not: 5 or 'x' there gave an AttributeError traceback, exit 1
    (found by the CLI probe). Now exit 2 naming the file and key."""
    from pipelines.cli import main

    audit = tmp_path / "damaged-audit"
    shutil.copytree(dirs["raw"], audit)
    s = json.loads((audit / "summary.json").read_text())
    s[key] = value
    (audit / "summary.json").write_text(json.dumps(s))
    assert main(["report", str(audit), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{audit / 'summary.json'}: damaged: {needle}" in err[0], err
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("value", [None, {}, {"n": None, "rate": None}])
def test_an_audit_summary_section_null_or_empty_is_read_from_the_table(dirs, tmp_path, value):
    """'extractable': null, {} or with null numbers in an audit's summary.json gave a TypeError or KeyError traceback
    (found by the CLI probe). What a summary lacks is derived from per_sequence.parquet, as the audit computes it;
    a null, at any depth, is now read the same way: the page shows the table's rate."""
    from audit.report.audit_dir import load_audit
    from pipelines.cli import main

    audit = tmp_path / "damaged-audit"
    shutil.copytree(dirs["raw"], audit)
    s = json.loads((audit / "summary.json").read_text())
    want, s["extractable"] = s["extractable"], value
    (audit / "summary.json").write_text(json.dumps(s))
    got = load_audit(audit).summary["extractable"]
    assert {k: got[k] for k in ("n", "k", "rate")} == {k: want[k] for k in ("n", "k", "rate")}, got
    assert main(["report", str(audit), "--out", str(tmp_path / "rep")]) == 0


def test_a_profile_of_another_training_run_than_the_audited_models_is_refused(dirs, tmp_path, capsys):
    """Profiles pair with the audits in order: `report dedup-audit raw-audit --profile-dir raw-profile` put the raw
    run's profile on the dedup model's page without a word (found by the CLI probe). Where both are known (the
    audited model is a checkpoint or the final model of a `memdedup train` run; the profile names its run), another
    run is refused, nothing written."""
    from pipelines.cli import main

    runs = {name: tmp_path / f"run-{name}" for name in ("raw", "dedup")}
    for run in runs.values():
        (run / "model").mkdir(parents=True)
        pq.write_table(pa.table({"step": [0]}), run / "order.parquet")
    s = json.loads((dirs["raw"] / "summary.json").read_text())
    s["model"]["path"] = str(runs["raw"] / "model")
    (dirs["raw"] / "summary.json").write_text(json.dumps(s))
    p = json.loads((dirs["profile"] / "summary.json").read_text())
    for run, status in ((runs["dedup"], 2), (runs["raw"], 0)):
        p["run"] = str(run)
        (dirs["profile"] / "summary.json").write_text(json.dumps(p))
        assert main(["report", str(dirs["raw"]), "--profile-dir", str(dirs["profile"]),
                     "--out", str(tmp_path / f"rep{status}")]) == status
        if status:
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "profiles the training run" in err[0] and str(runs["dedup"]) in err[0], err
            assert not (tmp_path / "rep2").exists()


@pytest.mark.parametrize("key, value, needle", [
    ("panel", 5, "'panel' is 5, expected an object"),
    ("cohorts", [1], "'cohorts[0]' is 1, expected an object"),
    ("event_time_curve", "x", "'event_time_curve' is 'x', expected a list"),
    ("memorisation", {"persistent": {"event_times": 3}}, "'memorisation.persistent.event_times' is 3, expected a list"),
    ("forecast", [1], "'forecast' is [1], expected an object"),
])
def test_a_damaged_profile_summary_is_named(dirs, tmp_path, capsys, key, value, needle):
    """A profile's summary.json whose sections are of another type (hand-edited, or another tool's) gave an
    AttributeError or TypeError traceback, exit 1 (found by the CLI probe: 'panel': 5, 'cohorts': [1], ...). The
    audit's summary.json is checked against its shape; the profile's now is too: exit 2 naming the file."""
    from pipelines.cli import main

    prof = tmp_path / "damaged-profile"
    shutil.copytree(dirs["profile"], prof)
    s = json.loads((prof / "summary.json").read_text())
    s[key] = value
    (prof / "summary.json").write_text(json.dumps(s))
    assert main(["report", str(dirs["raw"]), "--out", str(tmp_path / "rep"), "--profile-dir", str(prof)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{prof / 'summary.json'}: damaged: {needle}" in err[0], err
    assert not (tmp_path / "rep").exists()


def test_profile_page_shows_band_leads_event_time_curve_and_cohort_sizes(dirs, tmp_path):
    """Issue #13 acceptance: the profile section shows the band, lead cells, the event-time
    curve and the cohort sizes (read from summary.json, as memdedup profile writes it)."""
    from audit import plots

    prof = tmp_path / "prof13"
    shutil.copytree(dirs["profile"], prof)
    s = json.loads((prof / "summary.json").read_text())
    s.update(panel={"ends": "end of epoch 1", "end_step": 93, "checkpoints": [1, 2, 4, 93], "residual_step": 93},
             cohorts=[{"treatment_step": 4, "base_step": 1, "member_cohorts": [2, 4], "cohort_size": 37}],
             band={"critical_value": 2.71, "confidence": 0.95, "cells": 12, "significant_cells": 5, "lead_cells": 3,
                   "significant_lead_cells": 0},
             event_time_curve=[{"event_time": -2, "lag_steps": -2.5, "effect": 0.01, "band_lower": -0.1,
                                "band_upper": 0.12, "significant": False, "n_cohorts": 1},
                               {"event_time": 0, "lag_steps": 1.5, "effect": 0.61, "band_lower": 0.4,
                                "band_upper": 0.82, "significant": True, "n_cohorts": 1}])
    (prof / "summary.json").write_text(json.dumps(s))
    curve = pd.DataFrame(s["event_time_curve"])
    (prof / "event_time.png").write_bytes(plots.event_time_curve(curve))
    page = model_report(dirs["raw"], tmp_path / "p.html", profile_dir=prof).read_text(encoding="utf-8")
    assert "simultaneous 95% band" in page and "2.71" in page
    # the band comes from the instance bootstrap's draws (README, audit.profile), not a multiplier bootstrap
    assert "multiplier-bootstrap" not in page and "instance bootstrap" in page
    assert "Lead cells" in page and "0 of 3" in page
    assert "Event-time curve" in page and "0.610" in page and "0.400 – 0.820" in page
    assert "<td>37</td>" in page or ">37<" in page  # cohort size
    assert "end of epoch 1" in page
    assert 'alt="event-time curve"' in page


def test_profile_page_says_how_the_summaries_are_weighted(dirs, tmp_path):
    """Issue #13 §3: the summaries are cohort-size weighted event-time aggregates (Lesci et al.
    2024); the page says so and names the lags that persistent memorisation averages."""
    prof = tmp_path / "prof13w"
    shutil.copytree(dirs["profile"], prof)
    s = json.loads((prof / "summary.json").read_text())
    part = {"effect": 0.3, "lower": 0.2, "upper": 0.4, "n_cells": 6, "method": "joint bootstrap"}
    s["memorisation"] = {"instantaneous": {**part, "effect": 0.45}, "persistent": {**part, "event_times": [1, 2, 3]},
                         "residual": {**part, "effect": 0.05}}
    (prof / "summary.json").write_text(json.dumps(s))
    page = model_report(dirs["raw"], tmp_path / "w.html", profile_dir=prof).read_text(encoding="utf-8")
    assert "weighted by cohort size" in page
    assert "event times 1–3" in page
    assert "Lesci et al. 2024" in page and "aggregate('event')" in page


EXPOSURE = {"raw": {"samples": 2000, "log2_space": 212.6, "words": 32,
                    "by_copies": [{"copies": 1, "canaries": 4, "mean_exposure": 1.25, "min_exposure": 0.5,
                                   "max_exposure": 2.0},
                                  {"copies": 16, "canaries": 4, "mean_exposure": 37.5, "min_exposure": 30.1,
                                   "max_exposure": 41.0}]},
            "dedup": {"samples": 2000, "log2_space": 212.6, "words": 32,
                      "by_copies": [{"copies": 1, "canaries": 4, "mean_exposure": 1.1, "min_exposure": 0.4,
                                     "max_exposure": 1.9},
                                    {"copies": 16, "canaries": 4, "mean_exposure": 2.25, "min_exposure": 1.0,
                                     "max_exposure": 3.5}]}}


def test_comparison_page_shows_canary_exposure_by_copies(dirs, tmp_path):
    """Issue #13 §5: the demo's checks.json holds each model's canary exposure by planted copies
    (Carlini et al. 2019); the comparison page shows it (copies -> mean exposure per model, with
    log2|R|), and its JSON keeps it. Without exposure the section is absent."""
    out = comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "c" / "comparison.html",
                            exposure=EXPOSURE)
    page = out.read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert "<h2>Canary exposure by planted copies</h2>" in page
    assert "Carlini et al. 2019" in page and "Secret Sharer" in page
    assert "212.6" in page  # log2 |R|
    sec = page[page.index("Canary exposure by planted copies"):]
    rows = re.findall(r"<tr>(.*?)</tr>", sec, re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r, re.S) for r in rows]
    cells = [c for c in cells if c]
    assert cells[0][0] == "1" and "1.25" in cells[0][1] and "1.10" in cells[0][2]
    assert cells[1][0] == "16" and "37.50" in cells[1][1] and "2.25" in cells[1][2]
    data = json.loads((tmp_path / "c" / "comparison.json").read_text())
    assert data["exposure_by_copies"] == EXPOSURE
    plain = comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "p.html").read_text()
    assert "Canary exposure" not in plain


def test_cli_report_reads_exposure_from_checks_json(dirs, tmp_path):
    from pipelines.cli import main

    (tmp_path / "checks.json").write_text(json.dumps({"passed": True, "checks": [], "exposure_by_copies": EXPOSURE}))
    rc = main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--labels", "raw", "dedup", "--out",
               str(tmp_path / "rep"), "--checks", str(tmp_path / "checks.json")])
    assert rc == 0
    page = (tmp_path / "rep" / "comparison.html").read_text(encoding="utf-8")
    assert "<h2>Canary exposure by planted copies</h2>" in page and "37.50" in page


def test_membership_auc_per_occurrence_bucket_on_both_pages(dirs, tmp_path):
    """Issue #12 s2 (Kandpal et al. 2022): membership ROC-AUC per occurrence bucket beside the
    pooled one, on the comparison page and in comparison.json, and on the model page; n/a where
    a bucket holds one class only (raw's bucket 1: 5 members, 0 non-members), where a model has no
    sequence in the bucket (raw, 4-7) or no membership labels at all (dedup)."""
    out = comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "c" / "comparison.html")
    page = out.read_text(encoding="utf-8")
    data = json.loads((tmp_path / "c" / "comparison.json").read_text())
    rows = {r["bucket"]: r for r in data["membership_by_duplicates"]}
    assert list(rows) == ["all", "1", "2-3", "4-7"]
    pooled = rows["all"]["models"]["raw"]
    assert (pooled["n_members"], pooled["n_non_members"]) == (7, 3)
    assert pooled["roc_auc"]["loss"] == pytest.approx(stats.roc_auc(-np.linspace(0.1, 3.0, 10), np.arange(10) < 7))
    assert pooled["roc_auc"] == data["models"][0]["membership_roc_auc"]
    one = rows["1"]["models"]["raw"]
    assert (one["n_members"], one["n_non_members"]) == (5, 0) and one["roc_auc"] == {"loss": None, "zlib": None}
    two = rows["2-3"]["models"]["raw"]
    assert (two["n_members"], two["n_non_members"]) == (2, 3) and two["roc_auc"] == {"loss": 1.0, "zlib": 1.0}
    assert rows["4-7"]["models"]["raw"] is None
    assert all(r["models"]["dedup"] is None for r in rows.values())
    assert "<h2>Membership inference by occurrences</h2>" in page
    section = page.split("<h2>Membership inference by occurrences</h2>", 1)[1].split("<h2>", 1)[0]
    assert "all (pooled)" in section and f"{pooled['roc_auc']['loss']:.3f}" in section
    assert "1.000" in section and "n/a" in section

    mpage = model_report(dirs["raw"], tmp_path / "raw.html").read_text(encoding="utf-8")
    msec = mpage.split("<h2>Membership inference</h2>", 1)[1].split("<h2>", 1)[0]
    assert "ROC-AUC per occurrence bucket" in msec
    # bucket 1 (members only) is listed with n/a, bucket 2-3 with its AUC
    assert re.search(r"<td>1</td><td class=\"num\">5</td><td class=\"num\">0</td><td class=\"num\">n/a</td>", msec)
    assert re.search(r"<td>2-3</td><td class=\"num\">2</td><td class=\"num\">3</td><td class=\"num\">1.000</td>", msec)


@pytest.mark.parametrize("content", [None, "[1, 2]", "{not json", '{"exposure_by_copies": "x"}',
                                     '{"documents": 3, "shards": ["a.parquet"]}',  # a corpus manifest: was taken
                                     '{"exposure_by_copies": {"raw": {"by_copies": [{"copies": "many"}]}}}'])
@pytest.mark.parametrize("audits", [1, 2])
def test_cli_report_refuses_a_missing_or_damaged_checks_json_in_one_line(dirs, tmp_path, content, audits, capsys):
    """--checks that is missing, not a JSON object, not JSON, not a `memdedup check` output (any
    other JSON object was taken, found by the CLI probe), or whose exposure_by_copies has
    the wrong shape: exit 2 and one line naming the file (a JSON list used to end in an
    AttributeError traceback; a string exposure_by_copies in 'dictionary update sequence
    element #0' naming nothing, and with one audit it was accepted); no report written."""
    from pipelines.cli import main

    checks = tmp_path / "checks.json"
    if content is not None:
        checks.write_text(content)
    rc = main(["report", str(dirs["raw"]), *[str(dirs["dedup"])][:audits - 1], "--out", str(tmp_path / "rep"),
               "--checks", str(checks)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(checks) in err[0], err
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("where", ["raw", "profile", "dedup_dir"])
def test_cli_report_refuses_an_out_that_is_an_input_directory(dirs, tmp_path, capsys, where):
    """--out equal to an input directory would write the report's manifest.json over the
    input's own: exit 2, one line, nothing written. Before: `--out audit/raw` replaced the
    audit's manifest.json (stage 'audit') by the report's, and forecast then took another
    rule for 'seen'."""
    from pipelines.cli import main

    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    rc = main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--out", str(dirs[where]), "--dedup-dir",
               str(dirs["dedup_dir"]), "--profile-dir", str(dirs["profile"])])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--out" in err[0] and str(dirs[where]) in err[0], err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_comparison_plot_shows_every_label_as_given(dirs, tmp_path):
    """Labels are the user's text in the plot's legend too. matplotlib dropped the legend entry
    of a label starting with '_' (labels _raw _dedup gave a plot with no legend) and parsed
    '$...$' as mathtext (an unparsable one ended the report in a ParseSyntaxException)."""
    from audit import plots

    rows = [{"group": "1", "n": 4, "k": 1, "rate": 0.25, "lower": 0.05, "upper": 0.7}]

    def png(a, b):
        return plots.rate_points([(a, rows), (b, rows)], "x", ["1"])

    assert png("_raw", "_dedup") != png("_raw2", "_dedup2")  # the legend is drawn
    assert png("a$x$", "b") != png("a$y$", "b")
    page = comparison_report([dirs["raw"], dirs["dedup"]], ["_raw", "cost $\\frac$"], tmp_path / "c.html")
    assert "cost $\\frac$" in page.read_text(encoding="utf-8")


@pytest.mark.parametrize("summary", ["partial", "none"])
def test_page_json_holds_the_sections_derived_for_the_page(dirs, tmp_path, summary):
    """An audit whose summary.json lacks sections (an older or hand-made one) or has none: the page
    shows them derived from per_sequence.parquet, and the JSON beside the page must hold them too.
    Before, it was the partial summary.json copied as is, or the headline alone, while the page
    showed by-bucket rates and membership AUCs found in no JSON."""
    if summary == "none":
        (dirs["raw"] / "summary.json").unlink()
    page = model_report(dirs["raw"], tmp_path / "raw.html").read_text(encoding="utf-8")
    data = json.loads((tmp_path / "raw.summary.json").read_text())
    auc = data["membership"]["scores"]["loss"]["roc_auc"]
    assert f'<td>loss</td><td class="num">{auc:.3f}</td>' in page
    for r in data["extractable_by_duplicates"]:
        assert f"<td>{r['group']}</td><td class=\"num\">{r['n']:,}</td><td class=\"num\">{r['k']:,}</td>" in page
    ex = data["extractable"]
    assert f"{ex['k']:,} of {ex['n']:,}" in page


@pytest.mark.parametrize("stage", ["audit", "dedup"])
def test_cli_report_refuses_an_out_holding_another_stages_output(dirs, tmp_path, capsys, stage):
    """--out naming an audit or dedup output that is not an input of this report replaced its
    manifest.json by the report's (the audit's model path gone: forecast then took another rule
    for 'seen'): exit 2, one line, nothing written. A report directory is reused."""
    from pipelines.cli import main

    other = dirs["dedup_dir"] if stage == "dedup" else _write_audit(tmp_path / "other", [True, False], buckets=["1"] * 2)
    if stage == "audit":
        (other / "manifest.json").write_text(json.dumps({"stage": "audit", "model": "/models/other"}))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    rc = main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--out", str(other)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--out" in err[0] and str(other) in err[0], err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    for _ in range(2):  # an earlier report's directory: rerun in place
        assert main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--out", str(tmp_path / "rep")]) == 0


def test_pages_are_byte_identical_whenever_made_and_control_characters_are_replaced(tmp_path, monkeypatch):
    """The footer said when the page was made ('Generated by memdedup on 2026-11-29 12:05'), so
    the same audit gave different HTML a minute later; the manifest records when
    (created_unix). Control characters from documents or ids (NUL, ESC) went into the HTML
    as they were (a parse error; NUL is dropped by browsers); they show as U+FFFD."""
    import time

    from audit.report import page

    pages = []
    for t in (0, 10**9):
        monkeypatch.setattr(time, "time", lambda t=t: float(t))
        monkeypatch.setattr(time, "localtime", lambda *a, t=t: time.gmtime(t))
        page.write_page(tmp_path / f"p{t}.html", "T", ["sub"], "<p>body</p>")
        pages.append((tmp_path / f"p{t}.html").read_bytes())
    assert pages[0] == pages[1]
    assert page.esc("a\x00b\x1bc\td\x7f<") == "a\ufffdb\ufffdc\td\ufffd&lt;"


def test_a_report_rerun_in_its_directory_removes_the_pages_it_no_longer_writes(dirs, tmp_path):
    """report A B --labels A B, then report A --labels C into the same --out left A.html,
    B.html and comparison.html beside C.html, listed by no manifest: a reader took the stale
    comparison for the current one. The earlier report's own files (its manifest lists them)
    go; anything else in the directory stays."""
    from pipelines.cli import main

    out = tmp_path / "rep"
    assert main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--labels", "A", "B", "--out", str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    assert main(["report", str(dirs["raw"]), "--labels", "C", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["C.html", "C.summary.json", "manifest.json", "notes.txt"]


def test_a_report_killed_before_its_manifest_has_its_pages_removed_by_the_rerun(dirs, tmp_path, monkeypatch):
    """Killed after moving its pages in, before writing its manifest, a report left pages that no
    manifest lists: a rerun with other labels left A.html, B.html and comparison.html beside
    C.html (found by the audit-side probe). The pages being moved in are recorded first; a rerun
    removes what that record lists, and a finished report removes the record."""
    import audit.report.run
    from pipelines.cli import main

    out = tmp_path / "rep"

    def killed(*a, **k):
        raise KeyboardInterrupt  # as a SIGKILL between the moves and the manifest would leave it

    with monkeypatch.context() as m:
        m.setattr(audit.report.run, "write_stage_manifest", killed)
        assert main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--labels", "A", "B", "--out", str(out)]) == 130
    assert "A.html" in {p.name for p in out.iterdir()}
    assert main(["report", str(dirs["raw"]), "--labels", "C", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["C.html", "C.summary.json", "manifest.json"]


def test_sequences_of_unknown_documents_are_not_counted_as_kept_ones():
    """An audit of --sequences given by tokens has no shard and row: the comparison page said
    '0 ... from documents dedup removed, 0.0% of them', as if every such sequence came from a
    kept document. Unknown is n/a (None); sequences whose document is known are counted."""
    from audit.aggregate import removed_accounting

    manifest = {"totals": {"rows": 10, "kept": 8, "removed": {"exact": 2}}}
    none = removed_accounting(manifest, {("a", 1): "exact"}, [None] * 3, [None] * 3, np.array([1, 1, 0], bool), "A")
    fm = none["first_model"]
    assert fm["extractable"] == 2 and fm["sequences_located"] == 0
    assert fm["sequences_from_removed_documents"] is None and fm["extractable_from_removed_documents"] is None
    assert fm["extractable_from_removed_fraction"] is None
    some = removed_accounting(manifest, {("a", 1): "exact"}, ["a", None, "a"], [1, None, 2], np.array([1, 1, 0], bool),
                              "A")["first_model"]
    assert (some["sequences_located"], some["sequences_from_removed_documents"], some["extractable_from_removed_documents"]) == (2, 1, 1)


def test_what_dedup_removed_counts_distinct_sequences_as_the_headline_does(dirs, tmp_path):
    """The headline's extractable count is over distinct sequences (aggregate.RATES_COUNT);
    'What deduplication removed' counted rows, so a sequence sampled twice was two memorized
    sequences there and one in the headline of the same page. Now both count distinct sequences;
    a sequence counts as from removed documents when every located row of it is: a copy sampled
    from a kept document is still in the deduplicated corpus."""
    from audit import aggregate

    f = dirs["raw"] / "per_sequence.parquet"
    t = pq.read_table(f).to_pandas()
    for c in ("prompt", "truth"):  # rows 0 (kept document) and 1 (removed, exact): one sequence, sampled twice
        t.at[1, c] = t.at[0, c]
    table = pa.Table.from_pandas(t, preserve_index=False)
    pq.write_table(table, f)
    (dirs["raw"] / "summary.json").write_text(json.dumps(aggregate.summarise(table, n_boot=None, seed=0)))
    comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "comparison.html",
                      dedup_dir=dirs["dedup_dir"])
    data = json.loads((tmp_path / "comparison.json").read_text())
    head, fm = data["models"][0]["extractable"], data["dedup"]["first_model"]
    assert (head["k"], head["n"]) == (5, 9)
    assert (fm["extractable"], fm["sequences"], fm["sequences_located"]) == (5, 9, 9)
    # rows 3 (exact) and 5 (near); not the shared sequence: its row 0 is of a kept document
    assert fm["sequences_from_removed_documents"] == fm["extractable_from_removed_documents"] == 2
    assert fm["extractable_from_removed_by_reason"] == {"exact": 1, "near": 1}
    assert fm["extractable_from_removed_fraction"] == pytest.approx(2 / 5)
    t.at[0, "row"] = 3  # both rows of the shared sequence now of removed documents (exact): it counts once
    table = pa.Table.from_pandas(t, preserve_index=False)
    pq.write_table(table, f)
    (dirs["raw"] / "summary.json").write_text(json.dumps(aggregate.summarise(table, n_boot=None, seed=0)))
    comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "comparison.html",
                      dedup_dir=dirs["dedup_dir"])
    fm = json.loads((tmp_path / "comparison.json").read_text())["dedup"]["first_model"]
    assert fm["extractable_from_removed_by_reason"] == {"exact": 2, "near": 1}


@pytest.mark.parametrize("fails", ["second_page", "comparison"])
def test_a_report_that_fails_part_way_removes_the_pages_it_wrote(dirs, tmp_path, monkeypatch, capsys, fails):
    """A later page raising left the pages already written in --out, listed by no manifest
    (a half-written report). The files this run wrote go; anything else in --out stays."""
    import audit.report.comparison
    import audit.report.model
    from pipelines.cli import main

    def boom(*a, **k):
        raise ValueError("boom")

    if fails == "comparison":
        monkeypatch.setattr(audit.report.comparison, "comparison_report", boom)
    else:
        real, calls = audit.report.model.model_report, []

        def second_fails(audit_dir, out, **k):
            calls.append(out)
            if len(calls) % 2 == 0:
                real(audit_dir, out, **k)  # the page and its JSON are written, then it fails
                raise ValueError("boom")
            return real(audit_dir, out, **k)

        monkeypatch.setattr(audit.report.model, "model_report", second_fails)
    out = tmp_path / "rep"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    rc = main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--labels", "raw", "dedup", "--out", str(out)])
    assert rc == 2 and "boom" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    rc = main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--labels", "raw", "dedup", "--out", str(tmp_path / "new")])
    assert rc == 2 and not (tmp_path / "new").exists()


def test_long_labels_give_capped_distinct_file_names(dirs, tmp_path):
    """A label of 250+ characters made a file name too long (ENAMETOOLONG, a partial report).
    Names from labels are capped at 100 characters, a hash of the full label appended when
    cut; the pages still show the label in full."""
    from pipelines.cli import main

    labels = ["m" * 300 + "-raw", "m" * 300 + "-dedup"]
    out = tmp_path / "rep"
    assert main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--labels", *labels, "--out", str(out)]) == 0
    pages = [p["page"] for p in json.loads((out / "manifest.json").read_text())["pages"]]
    assert len(set(pages)) == 2 and all(len(p.removesuffix(".html")) <= 100 for p in pages), pages
    for page, label in zip(pages, labels):
        assert label in (out / page).read_text(encoding="utf-8")
    shutil.rmtree(out)
    assert main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--labels", *labels, "--out", str(out)]) == 0
    assert [p["page"] for p in json.loads((out / "manifest.json").read_text())["pages"]] == pages  # deterministic


def test_table_cells_wrap_long_unbroken_text():
    """A 5000-character doc id in the top-sequences table ran out of its column: table cells
    may break anywhere (no browser here: the stylesheet is checked)."""
    from audit.report import page

    assert re.search(r"(^|\n)td\s*\{[^}]*overflow-wrap:\s*anywhere", page.CSS)


def test_bidi_controls_in_user_text_cannot_reverse_the_page(dirs, tmp_path):
    """An unclosed U+202E (right-to-left override) in a label or doc id reversed the rest of
    its line. Bidi embedding, override and isolate controls show as U+FFFD, as control
    characters do; right-to-left letters themselves stay."""
    from audit.report import page

    bidi = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    assert page.esc(f"a{bidi}b \u05d0") == "a" + "\ufffd" * len(bidi) + "b \u05d0"
    raw = _write_audit(tmp_path / "bidi", [True, False], buckets=["1"] * 2, doc_ids=["evil\u202eid", "d1"])
    html_text = model_report(raw, tmp_path / "o" / "p.html", title="label \u202e reversed").read_text(encoding="utf-8")
    assert not re.search("[\u202a-\u202e\u2066-\u2069]", html_text)


def test_write_report_takes_one_path_or_label_as_well_as_a_list(dirs, tmp_path):
    """The Python API given one audit as a str or Path (and one profile, model directory or
    label): the report of a one-element list. Before: a str was iterated character by character
    ('--out ... lies inside the input directory /', '--model-dir: ... got 25', '3 labels for 1
    audit directories') and a Path was 'not iterable'."""
    from audit.report.run import write_report

    want = write_report([dirs["raw"]], tmp_path / "list", labels=["raw"], profile_dirs=[dirs["profile"]])
    for one in (str, Path):
        out = tmp_path / one.__name__
        got = write_report(one(dirs["raw"]), out, labels="raw", profile_dirs=one(dirs["profile"]))
        assert got["pages"] == want["pages"] and got["profile_dirs"] == want["profile_dirs"]
        assert (out / "raw.html").read_bytes() == (tmp_path / "list" / "raw.html").read_bytes()


def test_write_report_takes_its_directories_from_a_generator(dirs, tmp_path):
    """Audits and profiles given as generators (iterables read once): the same report as from
    lists. The check of --out against the inputs (before the claim) iterated them first, so the
    report found 'no audit directory given' (failed before)."""
    from audit.report.run import write_report

    want = write_report([dirs["raw"]], tmp_path / "list", labels=["raw"], profile_dirs=[dirs["profile"]])
    got = write_report((d for d in [dirs["raw"]]), tmp_path / "gen", labels=["raw"],
                       profile_dirs=(d for d in [dirs["profile"]]))
    assert got["pages"] == want["pages"] and got["profile_dirs"] == want["profile_dirs"]
    with pytest.raises(ValueError, match="inside the input directory"):
        write_report((d for d in [dirs["raw"]]), dirs["raw"] / "x")


def test_holding_out_refuses_an_inputs_name_that_is_not_a_parameter():
    """``holding_out(inputs=...)`` names arguments; a name the stage does not have (a typo, a
    renamed parameter) left its directories unchecked without a word (failed before)."""
    from audit.layout import holding_out

    with pytest.raises(TypeError, match="run_dir"):
        holding_out("out", inputs=("run_dir",))(lambda run, out: None)
    with pytest.raises(TypeError, match="'outdir'"):
        holding_out("outdir")(lambda run, out: None)


def test_a_row_of_minus_one_is_not_a_located_row():
    """Row -1 means no row is known (a --sequences file with a shard but no row): it counted as a
    row of a kept document, so a sequence whose other row was removed was not counted as removed."""
    from audit.aggregate import removed_accounting

    m = {"totals": {"rows": 10, "kept": 9, "removed": {"exact": 1}}}
    k = ((1,), (2,))
    fm = removed_accounting(m, {("a", 1): "exact"}, ["a", "a"], [1, -1], np.array([1, 1], bool), "A",
                            keys=[k, k])["first_model"]
    assert (fm["sequences"], fm["sequences_located"], fm["sequences_from_removed_documents"]) == (1, 1, 1)
    fm = removed_accounting(m, {}, np.array(["a"]), np.array([-1]), np.array([1], bool), "A")["first_model"]
    assert fm["sequences_located"] == 0 and fm["sequences_from_removed_documents"] is None


def test_a_dedup_output_of_another_corpus_is_refused_by_the_comparison(dirs, tmp_path):
    """--dedup-dir of another corpus (its inputs have no such shard, or fewer rows): the
    comparison joined nothing and reported 0 sequences from removed documents beside the other
    corpus's document counts, exit 0."""
    dd = dirs["dedup_dir"]
    manifest = json.loads((dd / "manifest.json").read_text())
    for inputs in ([{"shard": "other.parquet", "rows": 20}], [{"shard": "a.parquet", "rows": 5}]):
        (dd / "manifest.json").write_text(json.dumps({**manifest, "inputs": inputs}))
        with pytest.raises(ValueError, match="not the dedup output of") as e:
            comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "c.html", dedup_dir=dd)
        assert str(dd) in str(e.value)
    (dd / "manifest.json").write_text(json.dumps({**manifest, "inputs": [{"shard": "a.parquet", "rows": 10}]}))
    comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "c.html", dedup_dir=dd)


def test_a_dedup_output_of_a_corpus_of_the_same_layout_is_refused_by_the_comparison(dirs, tmp_path):
    """A dedup output whose inputs have the first audit's shard names and enough rows, but not its
    corpus's files (another seed of a generator, say): the comparison counted the other corpus's
    removed rows as this one's, exit 0 (found by a probe). The sizes its manifest records must be
    those of the corpus files when the audit read them (not now: the corpus may be regenerated since)."""
    size = 4321
    (dirs["raw"] / "manifest.json").write_text(json.dumps({"stage": "audit", "corpus_bytes": {"a.parquet": size}}))
    dd = dirs["dedup_dir"]
    manifest = json.loads((dd / "manifest.json").read_text())
    for b in (size + 7, size):
        (dd / "manifest.json").write_text(json.dumps({**manifest, "inputs": [
            {"shard": "a.parquet", "rows": 10, "file_bytes": b}, {"shard": "b.parquet", "rows": 10, "file_bytes": 1}]}))
        if b == size:
            comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "c.html", dedup_dir=dd)
            continue
        with pytest.raises(ValueError, match="not the dedup output of") as e:
            comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "c.html", dedup_dir=dd)
        assert f"{size + 7} bytes" in str(e.value)


@pytest.mark.parametrize("bad", ["not_an_audit", "missing_profile", "other_lengths"])
def test_a_refused_rerun_leaves_the_earlier_report_as_it_was(dirs, tmp_path, capsys, bad):
    """A rerun into a report's --out removed the earlier report's files first, then found its
    input bad (a directory that is not an audit, a missing --profile-dir, audits of other token
    windows) and exited 2: the good report was gone (found by the API probe). The new pages are
    made aside and replace the earlier ones only once all are written."""
    from pipelines.cli import main

    out = tmp_path / "rep"
    assert main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    short = _write_audit(tmp_path / "short", [True] * 4, buckets=["1"] * 4)
    summary = json.loads((short / "summary.json").read_text())
    (short / "summary.json").write_text(json.dumps({**summary, "config": {"prompt_len": P // 2, "cont_len": C}}))
    args = {"not_an_audit": [str(dirs["raw"]), str(dirs["dedup_dir"])],
            "missing_profile": [str(dirs["raw"]), "--profile-dir", str(tmp_path / "nope")],
            "other_lengths": [str(dirs["raw"]), str(short)]}[bad]
    assert main(["report", *args, "--out", str(out)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_an_out_that_is_a_model_dir_is_refused(dirs, tmp_path, capsys):
    """--out equal to (or inside) a --model-dir wrote the report into the model's directory."""
    from pipelines.cli import main

    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    model = tmp_path / "model"
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "w1": 1}, unk_token="[UNK]"))
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(model)
    before = sorted(p.name for p in model.iterdir())
    assert main(["report", str(dirs["raw"]), "--model-dir", str(model), "--out", str(model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and str(model) in err[0], err
    assert sorted(p.name for p in model.iterdir()) == before


def test_a_refused_out_inside_an_input_leaves_that_input_untouched(dirs, tmp_path, capsys):
    """--out raw/x/report (inside an input audit) was refused only after the run had claimed it:
    raw/x was made and removed again, which changed raw's modification time (what make and
    Snakemake read to decide what is out of date)."""
    from pipelines.cli import main

    raw = dirs["raw"]
    before = (sorted(p.name for p in raw.iterdir()), raw.stat().st_mtime_ns)
    assert main(["report", str(raw), "--out", str(raw / "x" / "report")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "inside the input directory" in err[0], err
    assert (sorted(p.name for p in raw.iterdir()), raw.stat().st_mtime_ns) == before


@pytest.mark.parametrize("edit, needle", [
    ({"extractable": "lots"}, "'extractable' is 'lots', expected an object"),
    ({"extractable": {"n": 10, "k": 6, "rate": "high", "lower": 0.1, "upper": 0.9}}, "'extractable.rate' is 'high'"),
    ({"extractable_by_duplicates": [{"group": "1", "n": "five"}]}, "'extractable_by_duplicates[0].n' is 'five'"),
    ({"model": "gpt"}, "'model' is 'gpt', expected an object"),
])
def test_a_summary_json_of_the_wrong_shape_is_named_in_one_line(dirs, tmp_path, capsys, edit, needle):
    """A summary.json whose sections have the wrong type (hand-edited, another tool) gave a
    TypeError traceback, exit 1 (found by the API probe). Each section the pages read is checked
    against the shape the audit writes: exit 2, one line naming the file and the key."""
    from pipelines.cli import main

    summary = json.loads((dirs["raw"] / "summary.json").read_text())
    (dirs["raw"] / "summary.json").write_text(json.dumps({**summary, **edit}))
    assert main(["report", str(dirs["raw"]), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{dirs['raw'].resolve() / 'summary.json'}: damaged: {needle}" in err[0], err
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("column, values, needle", [
    ("extractable", ["false"] * 10, "'extractable' holds string"),
    ("leading_matched", [0.5] * 10, "'leading_matched' holds double"),
])
def test_a_per_sequence_column_of_the_wrong_type_is_named_in_one_line(dirs, tmp_path, capsys, column, values,
                                                                      needle):
    """An extractable column of strings ('false', 'true': a table written by another tool) was read
    value by value as Python truth, so 'false' counted as extractable: a page of 100% extractable
    and exit 0 (found by the probe of audit/). The per-sequence columns every rate is counted
    from must hold booleans (or 0/1 integers) and integers: exit 2, one line naming the file."""
    from pipelines.cli import main

    f = dirs["raw"] / "per_sequence.parquet"
    t = pq.read_table(f)
    pq.write_table(t.set_column(t.schema.get_field_index(column), column, pa.array(values)), f)
    (dirs["raw"] / "summary.json").unlink()  # the page derives its numbers from the table
    assert main(["report", str(dirs["raw"]), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{f.resolve()}: column {needle}" in err[0], err
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("drop", ["member", "score_zlib"])
def test_a_table_without_the_columns_its_summarys_membership_reads_is_named_in_one_line(dirs, tmp_path, capsys,
                                                                                         drop):
    """summary.json with a membership section beside a per_sequence.parquet without its member or
    a score column (the table of another run, or hand-made) gave a KeyError traceback, exit 1
    (found by the probe of audit/): the page draws the ROC curves from those columns. Exit 2,
    one line naming the table and the column."""
    from audit import aggregate
    from pipelines.cli import main

    f = dirs["raw"] / "per_sequence.parquet"
    t = pq.read_table(f)
    summary = json.loads((dirs["raw"] / "summary.json").read_text())
    summary.update(aggregate.summarise(t, n_boot=None, seed=0, sections=("membership",)))
    assert set(summary["membership"]["scores"]) == {"loss", "zlib"}
    (dirs["raw"] / "summary.json").write_text(json.dumps(summary))
    pq.write_table(t.drop([drop]), f)
    assert main(["report", str(dirs["raw"]), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{f.resolve()}: no column {drop!r}" in err[0], err
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("where", ["label", "audit path", "out"])
def test_a_label_or_path_that_is_not_utf8_is_named_in_one_line(dirs, tmp_path, capsys, where):
    """A label or a directory name with a byte that is not UTF-8 ('ab\\xffcd' from the command
    line) failed after the pages were begun with "'utf-8' codec can't encode character '\\udcff'
    in position 161", naming nothing (found by the API probe). The report writes labels and
    paths into its pages and JSON, which are UTF-8: refused up front, naming which."""
    import os

    from pipelines.cli import main

    odd = os.fsdecode(b"ab\xffcd")
    audit, out, labels = dirs["raw"], tmp_path / "rep", []
    if where == "audit path":
        audit = tmp_path / odd
        shutil.copytree(dirs["raw"], audit)
    elif where == "out":
        out = tmp_path / odd
    else:
        labels = ["--labels", odd]
    assert main(["report", str(audit), *labels, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ab\\xffcd" in err[0] and "not valid UTF-8" in err[0], err
    assert not out.exists()


def test_a_profile_dir_that_is_no_profile_output_is_refused(dirs, tmp_path, capsys):
    """--profile-dir naming an audit directory (a slip between two similar arguments) made a
    page saying 'No profile outputs found in this directory.' and exit 0 (found by the API probe)."""
    from pipelines.cli import main

    assert main(["report", str(dirs["raw"]), "--profile-dir", str(dirs["dedup"]), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{dirs['dedup']}: not a completed profile output (its manifest.json is the audit " \
                             "stage's)" in err[0], err
    assert not (tmp_path / "rep").exists()


def test_the_python_api_refuses_what_the_command_line_refuses(dirs, tmp_path):
    """write_report([]) wrote a manifest of no pages, and a dedup_dir that does not exist was
    accepted with one audit (a note; the bad path recorded in the manifest) though refused with
    two (found by the API probe)."""
    from audit.report.run import write_report

    with pytest.raises(ValueError, match="no audit directory"):
        write_report([], tmp_path / "rep")
    with pytest.raises(ValueError, match=r"--dedup-dir .*nope: not a directory"):
        write_report([dirs["raw"]], tmp_path / "rep", dedup_dir=tmp_path / "nope")
    assert not (tmp_path / "rep").exists()


def test_a_dedup_dir_holding_another_stages_output_is_refused(dirs, tmp_path, capsys):
    """--dedup-dir naming an audit directory (its manifest.json is the audit stage's) was read as
    a dedup output; only a directory without any manifest was refused. The one check of a
    completed stage (dedup.io.completed_manifest) serves report, audit and check."""
    from pipelines.cli import main

    (dirs["dedup"] / "manifest.json").write_text('{"stage": "audit"}')
    assert main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--dedup-dir", str(dirs["dedup"]),
                 "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{dirs['dedup']}: not a completed dedup output (its manifest.json is the audit stage's)" \
        in err[0], err
    assert not (tmp_path / "rep").exists()


def test_a_rerun_failing_in_its_last_page_leaves_the_earlier_report_and_no_temporaries(dirs, tmp_path, monkeypatch,
                                                                                         capsys):
    """The refusals above fail before any page; this rerun fails after its pages were written,
    in the comparison page: the earlier report is still whole, and nothing of the rerun stays."""
    import audit.report.comparison
    from pipelines.cli import main

    out = tmp_path / "rep"
    assert main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*a, **k):
        raise ValueError("boom")

    monkeypatch.setattr(audit.report.comparison, "comparison_report", boom)
    assert main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--labels", "x", "y", "--out", str(out)]) == 2
    assert "boom" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_an_audit_of_no_sequences_gives_a_page_and_no_warning(tmp_path, capsys):
    """An audit whose corpus had no document long enough (0 rows): the report printed matplotlib's
    'Data has no positive values, and therefore cannot be log-scaled' as a memdedup warning."""
    from pipelines.cli import main

    d = _write_audit(tmp_path / "none", [True], buckets=["1"])
    pq.write_table(pq.read_table(d / "per_sequence.parquet").slice(0, 0), d / "per_sequence.parquet")
    summary = json.loads((d / "summary.json").read_text())
    summary.update(sequences={"n": 0, "considered": 0, "skipped_short": 3},
                   extractable={"n": 0, "k": 0, "rate": None, "lower": None, "upper": None}, mean_leading_matched=None)
    (d / "summary.json").write_text(json.dumps(summary))
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert main(["report", str(d), "--out", str(tmp_path / "r")]) == 0
    assert [str(w.message) for w in shown if issubclass(w.category, UserWarning)] == []
    assert capsys.readouterr().err == ""
    assert (tmp_path / "r" / "none.html").exists()


@pytest.mark.parametrize("labels", [["Raw", "raw"], ["raw", "Comparison"]])
def test_labels_equal_but_for_case_give_pages_of_other_names(dirs, tmp_path, labels):
    """Labels that differ only in case made pages whose names differ only in case (Raw.html, raw.html; Comparison.html
    beside comparison.html): on a case-insensitive file system (macOS, Windows) one page overwrote the other, and the
    manifest listed both. Page names are now distinct ignoring case too."""
    from pipelines.cli import main

    out = tmp_path / "rep"
    assert main(["report", str(dirs["raw"]), str(dirs["dedup"]), "--labels", *labels, "--out", str(out)]) == 0
    names = [p.name.casefold() for p in out.iterdir()]
    assert len(set(names)) == len(names), sorted(names)


def test_exposure_space_names_the_scored_words_not_the_canary_length(dirs, tmp_path):
    """checks.json's ``words`` is how many leading words of each canary were scored (the demo's 64-word canaries:
    the 24 that fit a 128-position model), not the canaries' length: the page said "24-word canaries" of
    64-word ones."""
    page = comparison_report([dirs["raw"], dirs["dedup"]], ["raw", "dedup"], tmp_path / "c" / "comparison.html",
                             exposure=EXPOSURE).read_text(encoding="utf-8")
    assert "32-word canaries" not in page
    assert "the first 32 words of each canary" in page
