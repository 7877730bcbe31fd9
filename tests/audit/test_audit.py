"""End-to-end audit on a tiny model trained (in the test session) on planted canaries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit import stats
from audit.config import AuditConfig
from audit.lm import ModelError, load_causal_lm
from audit.run import run_audit
from dedup import DedupConfig, dedup_files
from dedup.shards import InputError

ROOT = Path(__file__).resolve().parents[2]


def quiet(_m: str) -> None:
    pass


@pytest.fixture(scope="module")
def audited(canary_lm, tmp_path_factory):
    """The whole canary corpus audited (every document sampled), with generation, against
    its dedup output; members = every document (the model saw them all)."""
    d = tmp_path_factory.mktemp("audit")
    dedup_files([canary_lm.corpus_dir], d / "dedup", DedupConfig(), threads=1)
    n = canary_lm.corpus.num_rows
    cfg = AuditConfig(n_sequences=n, generate=True, n_boot=50)
    summary = run_audit(canary_lm.model_dir, [canary_lm.corpus_dir], d / "out", cfg, dedup_dir=d / "dedup", log=quiet)
    table = pq.read_table(d / "out" / "per_sequence.parquet")
    return summary, table, d


def test_teacher_forced_verdicts_equal_generation_for_every_sequence(audited):
    summary, table, _ = audited
    t = table.to_pydict()
    assert len(t["seq_id"]) == summary["sequences"]["n"] > 800
    for ex, lead, gen, truth, score in zip(t["extractable"], t["leading_matched"], t["generated"], t["truth"],
                                           t["pythia_score"]):
        assert ex == (gen == truth)
        # the leading match count from the forward pass equals greedy decoding's own
        first_miss = next((i for i, (a, b) in enumerate(zip(gen, truth)) if a != b), len(truth))
        assert lead == first_miss
        assert score == pytest.approx(np.mean(np.array(gen) == np.array(truth)))
    assert sum(t["extractable"]) > 0  # memorized sequences are among them


def test_duplicate_counts_equal_planted_counts(audited, canary_lm):
    _, table, _ = audited
    planted = dict(zip(canary_lm.corpus.column("id").to_pylist(), canary_lm.corpus.column("repeats").to_pylist()))
    t = table.to_pydict()
    assert all(c == planted[i] for i, c in zip(t["doc_id"], t["duplicate_count"]))
    assert all(b == stats.duplicate_bucket(c) for b, c in zip(t["duplicate_bucket"], t["occurrences"]))
    assert t["near_dup_docs"] == t["duplicate_count"]


def _trend_p(n: list[int], k: list[int]) -> float:
    """One-sided p-value of the Cochran-Armitage test for a rising trend in the proportions
    k_i / n_i over groups scored 0, 1, 2, ... (Armitage 1955; normal approximation):
    T = sum t_i (k_i - n_i p), Var T = p (1 - p) (sum n_i t_i^2 - (sum n_i t_i)^2 / N)."""
    import math

    t = np.arange(len(n), dtype=float)
    n_, k_ = np.asarray(n, float), np.asarray(k, float)
    p = k_.sum() / n_.sum()
    var = p * (1 - p) * ((n_ * t**2).sum() - (n_ * t).sum() ** 2 / n_.sum())
    return 0.5 * math.erfc((t * (k_ - n_ * p)).sum() / math.sqrt(var) / math.sqrt(2))


def test_extractable_rate_rises_with_duplicate_bucket(audited):
    """Extraction rises with copies (Kandpal et al. 2022; Carlini et al. 2023): singletons are not
    extractable, 64x canaries are, and over the planted canary buckets (2-3x to 64-127x, 4
    canaries each) the rise is a trend at one-sided p < 0.01 (Cochran-Armitage). Pairwise
    monotonicity was asserted before: with 4 canaries a bucket its rate moves in steps of 0.25,
    and one 32x canary fewer on a fresh install (other package versions) broke it, the trend intact."""
    summary, _, _ = audited
    rows = summary["extractable_by_duplicates"]
    rates = [r["rate"] for r in rows]
    assert [r["group"] for r in rows] == sorted((r["group"] for r in rows), key=stats.bucket_order)
    assert rates[0] < 0.05 and rates[-1] > 0.9, rates  # singletons are not extractable, 64x canaries are
    canaries = rows[1:]
    assert _trend_p([r["n"] for r in canaries], [r["k"] for r in canaries]) < 0.01, rows


def test_dedup_status_join(audited, canary_lm):
    summary, table, d = audited
    removed = pq.read_table(d / "dedup" / "removed.parquet").to_pydict()
    removed_keys = set(zip(removed["shard"], removed["row"]))
    t = table.to_pydict()
    for shard, row, status, count in zip(t["shard"], t["row"], t["dedup_status"], t["duplicate_count"]):
        if (shard, row) in removed_keys:
            assert status == "removed"
        else:  # every planted copy after the first is removed, so kept == "has duplicates"
            assert status == ("kept" if count > 1 else "unique")
    by_status = {r["group"]: r for r in summary["extractable_by_dedup_status"]}
    assert set(by_status) == {"unique", "kept", "removed"}
    assert summary["retention"]["documents_kept"] == canary_lm.corpus.num_rows - len(removed_keys)


def test_membership_metrics_match_the_per_sequence_table(canary_lm, tmp_path):
    """Members: half the background documents (by id), the other half non-members; the summary's
    AUCs are recomputed from the per-sequence scores."""
    ids = [i for i, k in zip(canary_lm.corpus.column("id").to_pylist(), canary_lm.corpus.column("kind").to_pylist())
           if k == "background"]
    members = tmp_path / "members.txt"
    members.write_text("\n".join(ids[: len(ids) // 2]) + "\n")
    summary = run_audit(canary_lm.model_dir, [canary_lm.corpus_dir], tmp_path / "out",
                        AuditConfig(n_sequences=300, seed=3, n_boot=100), members=members, log=quiet)
    t = pq.read_table(tmp_path / "out" / "per_sequence.parquet").to_pydict()
    y = np.array(t["member"], dtype=bool)
    for name, m in summary["membership"]["scores"].items():
        s = np.array(t[f"score_{name}"])
        assert m["roc_auc"] == pytest.approx(stats.roc_auc(s, y))
        assert m["roc_auc_boot"]["lower"] <= m["roc_auc"] <= m["roc_auc_boot"]["upper"]
    assert np.allclose(np.array(t["score_loss"]), -np.array(t["loss"]))


def test_members_of_a_corpus_without_ids_are_named_shard_row_as_memdedup_train_names_them(canary_lm, tmp_path):
    """A corpus without an id column: memdedup train names its documents 'shard:row' in
    order.parquet (audit.train.corpus_documents), so that is what a members list taken from a
    run holds. The audit matched members by the (null) corpus id: every sequence a non-member,
    no membership section, only a note on stderr."""
    from audit.train import corpus_documents
    from dedup.runs import discover

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for p in sorted(canary_lm.corpus_dir.glob("*.parquet")):
        pq.write_table(pq.read_table(p).drop_columns(["id"]), corpus / p.name)
    names = [name for name, *_ in corpus_documents(discover([corpus]), "text", None)]
    kinds = pa.concat_tables([pq.read_table(p) for p in sorted(corpus.glob("*.parquet"))]).column("kind").to_pylist()
    members = set(n for n, k in zip(names, kinds) if k == "background")
    (tmp_path / "members.txt").write_text("\n".join(sorted(members)) + "\n")
    summary = run_audit(canary_lm.model_dir, [corpus], tmp_path / "out", AuditConfig(n_sequences=200, seed=3, n_boot=0),
                        members=tmp_path / "members.txt", log=quiet)
    t = pq.read_table(tmp_path / "out" / "per_sequence.parquet").to_pydict()
    expected = [kinds[names.index(f"{s}:{r}")] == "background" for s, r in zip(t["shard"], t["row"])]
    assert t["member"] == expected and 0 < sum(expected) < len(expected)
    assert summary["membership_labels"]["members"] == sum(expected)


def test_short_documents_are_skipped_and_counted(canary_lm, tmp_path):
    summary = run_audit(canary_lm.model_dir, [canary_lm.corpus_dir], tmp_path / "out",
                        AuditConfig(n_sequences=2000, prompt_len=64, cont_len=64, n_boot=0), log=quiet)
    s = summary["sequences"]
    assert s["skipped_short"] > 0 and s["considered"] == s["n"] + s["skipped_short"] == canary_lm.corpus.num_rows


def test_sequence_longer_than_the_context_is_refused(canary_lm, tmp_path):
    with pytest.raises(ModelError, match="exceeds the model's context of 128"):
        run_audit(canary_lm.model_dir, [canary_lm.corpus_dir], tmp_path / "o",
                  AuditConfig(prompt_len=100, cont_len=100), log=quiet)


def test_explicit_sequences_file(canary_lm, tmp_path):
    seqs = tmp_path / "seqs.parquet"
    pq.write_table(pa.table({"tokens": [list(range(1, 70)), list(range(5, 20))]}), seqs)
    summary = run_audit(canary_lm.model_dir, [canary_lm.corpus_dir], tmp_path / "out",
                        AuditConfig(n_boot=0), sequences=seqs, log=quiet)
    assert summary["sequences"] == {"n": 1, "considered": 2, "skipped_short": 1, "skipped_missing": 0,
                                    "per_bucket": None, "file": str(seqs.resolve())}


def test_explicit_ids_and_offsets(canary_lm, tmp_path):
    """Sequences named by document id and token offset are cut from the corpus documents."""

    corpus = canary_lm.corpus.to_pydict()
    canary = next(i for i, k in enumerate(corpus["kind"]) if k == "canary")
    ids = [corpus["id"][canary], corpus["id"][0], "no-such-id"]
    seqs = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"id": ids, "token_offset": [3, 0, 0]}), seqs)
    summary = run_audit(canary_lm.model_dir, [canary_lm.corpus_dir], tmp_path / "out", AuditConfig(n_boot=0),
                        sequences=seqs, log=quiet)
    # an id the corpus does not hold is counted as such, not as a short document (it was, before)
    assert summary["sequences"] | {"file": None} == {"n": 2, "considered": 3, "skipped_short": 0,
                                                     "skipped_missing": 1, "per_bucket": None, "file": None}
    pq.write_table(pa.table({"id": ["no-such-id", "nor-this"], "token_offset": [0, 0]}), seqs)
    with pytest.raises(InputError, match=r"no sequence of at least 64 tokens \(0 shorter ones skipped; 2 ids not "
                                         r"in the corpus\)"):
        run_audit(canary_lm.model_dir, [canary_lm.corpus_dir], tmp_path / "out2", AuditConfig(n_boot=0),
                  sequences=seqs, log=quiet)
    t = pq.read_table(tmp_path / "out" / "per_sequence.parquet").to_pydict()
    lm = load_causal_lm(canary_lm.model_dir)
    want = lm.encode([corpus["text"][canary]])[0][3:67]
    assert t["doc_id"][0] == ids[0] and t["prompt"][0] + t["truth"][0] == want
    assert t["duplicate_count"][0] == corpus["repeats"][canary]


def test_a_model_that_is_not_causal_is_refused_in_a_short_line(tmp_path):
    """A T5 directory was refused with transformers' whole message: two lines and 3.4 KB, most
    of it the ~200 configuration classes AutoModelForCausalLM knows."""
    from transformers import T5Config

    T5Config(d_model=16, num_layers=1, num_heads=2, d_ff=32, vocab_size=100).save_pretrained(tmp_path / "t5")
    with pytest.raises(ModelError) as e:
        load_causal_lm(tmp_path / "t5")
    said = str(e.value)
    assert "\n" not in said and len(said) < 300 and "not a causal language model" in said and "T5Config" in said, said


def test_a_config_json_at_odds_with_the_weights_names_what_differs(tmp_path):
    """config.json's vocab_size above the weights' gave transformers' 'For details look at the
    above report!' (a report the audit silences); a value of the wrong type gave 'Validation
    error for field 'n_positions':' with the reason cut off at the line break."""
    from transformers import GPT2Config, GPT2LMHeadModel

    model = tmp_path / "m"
    GPT2LMHeadModel(GPT2Config(vocab_size=300, n_embd=16, n_layer=1, n_head=2, n_positions=32)).save_pretrained(model)
    config = json.loads((model / "config.json").read_text())
    for edit, needle in (({"vocab_size": 320}, "transformer.wte.weight: [300, 16] in the weights files, [320, 16]"),
                         ({"n_positions": "32"}, "expected int, got str")):
        (model / "config.json").write_text(json.dumps({**config, **edit}))
        with pytest.raises(ModelError) as e:
            load_causal_lm(model)
        assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_bad_model_directories(canary_lm, tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        run_audit(tmp_path / "nope", [canary_lm.corpus_dir], tmp_path / "o", log=quiet)
    (tmp_path / "weights.bin").write_bytes(b"x")  # said "model directory does not exist" (the audit probe)
    with pytest.raises(ModelError, match="weights.bin: not a directory: a model is a directory"):
        run_audit(tmp_path / "weights.bin", [canary_lm.corpus_dir], tmp_path / "o", log=quiet)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        run_audit(tmp_path / "empty", [canary_lm.corpus_dir], tmp_path / "o", log=quiet)
    (tmp_path / "weird").mkdir()
    (tmp_path / "weird" / "config.json").write_text(json.dumps({"model_type": "not-a-model"}))
    with pytest.raises(ModelError, match="not a causal language model"):
        run_audit(tmp_path / "weird", [canary_lm.corpus_dir], tmp_path / "o", log=quiet)


def test_reference_model_with_another_tokenizer_is_refused(canary_lm, train_tiny_lm, tmp_path):
    other = train_tiny_lm(["completely different words " * 20, "another text entirely " * 20] * 10,
                          tmp_path / "other", vocab_size=300, epochs=1, n_layer=1, n_embd=32, n_head=2, seq_len=32)
    with pytest.raises(ModelError, match="tokenizer differs"):
        run_audit(canary_lm.model_dir, [canary_lm.corpus_dir], tmp_path / "o", reference=other, log=quiet)


def test_reference_model_whose_tokenizer_only_adds_a_token(canary_lm, tmp_path):
    """A fine-tuned model's tokenizer often gains a pad token (appended at the end of the
    vocabulary); the base model is then a fair reference: every token id of the audited
    sequences means the same token to both. Refused before (the vocabularies' fingerprints
    differ); a sequence holding the added token is still refused, naming it."""
    import shutil

    from transformers import AutoModelForCausalLM, AutoTokenizer

    padded = tmp_path / "padded"
    shutil.copytree(canary_lm.model_dir, padded)
    tok = AutoTokenizer.from_pretrained(padded)
    tok.add_special_tokens({"pad_token": "[PAD]"})
    tok.save_pretrained(padded)
    model = AutoModelForCausalLM.from_pretrained(padded)
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(padded)
    pad = tok.convert_tokens_to_ids("[PAD]")
    summary = run_audit(padded, [canary_lm.corpus_dir], tmp_path / "out", AuditConfig(n_sequences=40, n_boot=0),
                        reference=canary_lm.model_dir, log=quiet)
    assert summary["reference_model"] == str(Path(canary_lm.model_dir).resolve())
    summary = run_audit(canary_lm.model_dir, [canary_lm.corpus_dir], tmp_path / "out2",
                        AuditConfig(n_sequences=40, n_boot=0), reference=padded, log=quiet)
    t = pq.read_table(tmp_path / "out2" / "per_sequence.parquet").to_pydict()
    # the same weights but for one more output: each log-probability differs by log(1 + p([PAD])) only
    assert np.allclose(t["score_reference"], 0.0, atol=1e-3)

    seqs = tmp_path / "seqs.parquet"
    pq.write_table(pa.table({"tokens": [[pad] + list(range(1, 64))]}), seqs)
    with pytest.raises(ModelError, match=r"token '\[PAD\]' \(id %d\).* not in .*'s vocabulary" % pad):
        run_audit(padded, [canary_lm.corpus_dir], tmp_path / "out3", AuditConfig(n_sequences=40, n_boot=0),
                  reference=canary_lm.model_dir, sequences=seqs, log=quiet)
    assert not (tmp_path / "out3").exists()
    # an embedding row no token names (a vocabulary padded to a multiple): the message said "token None"
    model.resize_token_embeddings(len(tok) + 8)
    model.save_pretrained(padded)
    pq.write_table(pa.table({"tokens": [[len(tok) + 3] + list(range(1, 64))]}), seqs)
    with pytest.raises(ModelError, match=r"id %d, which no token of .*'s tokenizer names, .* not in .*'s "
                                         r"vocabulary" % (len(tok) + 3)):
        run_audit(padded, [canary_lm.corpus_dir], tmp_path / "out3", AuditConfig(n_sequences=40, n_boot=0),
                  reference=canary_lm.model_dir, sequences=seqs, log=quiet)


def test_reference_model_score(canary_lm, tmp_path, monkeypatch):
    """The reference model is recorded as an absolute path, as the model is (it was recorded
    as given: a relative path named nothing once read from another directory)."""
    monkeypatch.chdir(Path(canary_lm.model_dir).parent)
    reference = Path(canary_lm.model_dir).name
    summary = run_audit(canary_lm.model_dir, [canary_lm.corpus_dir], tmp_path / "out",
                        AuditConfig(n_sequences=40, n_boot=0), reference=reference, log=quiet)
    t = pq.read_table(tmp_path / "out" / "per_sequence.parquet").to_pydict()
    assert np.allclose(t["score_reference"], 0.0, atol=1e-9)  # the model against itself
    assert summary["reference_model"] == summary["model"]["path"] == str(Path(canary_lm.model_dir).resolve())


def test_cli_audit(canary_lm, tmp_path):
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "audit", "--model", str(canary_lm.model_dir),
                        "--corpus", str(canary_lm.corpus_dir), "--out", str(tmp_path / "out"), "-n", "30",
                        "--n-boot", "0"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "extractable" in r.stdout
    for f in ("per_sequence.parquet", "summary.json", "manifest.json"):
        assert (tmp_path / "out" / f).exists()
    bad = subprocess.run([sys.executable, "-m", "pipelines.cli", "audit", "--model", str(tmp_path / "missing"),
                          "--corpus", str(canary_lm.corpus_dir), "--out", str(tmp_path / "o2")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "missing" in bad.stderr and "Traceback" not in bad.stderr


def test_verdict_only_pass_equals_full_scoring_and_generation(audited, canary_lm):
    """CausalLM.greedy_matches (LM head at the continuation positions only) gives the same
    per-token matches as the full teacher-forced pass, hence the same verdicts as greedy
    generation, for every sequence."""
    from audit.lm import load_causal_lm

    _, table, _ = audited
    t = table.to_pydict()
    ids = np.array([p + c for p, c in zip(t["prompt"], t["truth"])], dtype=np.int64)
    P = len(t["prompt"][0])
    lm = load_causal_lm(canary_lm.model_dir)
    fast = lm.greedy_matches(ids, P, batch_size=64)
    np.testing.assert_array_equal(fast, lm.score(ids, 64).greedy_match[:, P - 1:])
    assert fast.all(axis=1).tolist() == t["extractable"]
    assert fast.all(axis=1).sum() > 0
    with pytest.raises(ValueError, match="prompt_len"):
        lm.greedy_matches(ids, ids.shape[1])


def test_batch_size_auto_fits_the_free_memory(canary_lm, tmp_path, monkeypatch):
    """Issue #12 s5: ``batch_size="auto"`` picks the largest power of two whose logits and
    activations fit in half the free memory (audit.batching), records the rule and its numbers
    in the manifest and the resolved size in the summary's config, and scores as a fixed size
    does, to the byte."""
    import audit.batching as batching
    from audit.batching import bytes_per_sequence, model_shape, resolve_batch_size
    from audit.config import AuditConfig
    from audit.lm import load_causal_lm
    from audit.run import run_audit

    lm = load_causal_lm(canary_lm.model_dir)
    shape = model_shape(lm.model)
    assert shape["vocab"] == lm.model.config.vocab_size and shape["layers"] == lm.model.config.n_layer
    per = bytes_per_sequence(64, **shape)
    assert per >= batching.LOGIT_COPIES * 64 * shape["vocab"] * 4
    assert resolve_batch_size(16, lm, 64) == (16, None)
    n, info = resolve_batch_size("auto", lm, 64, free=10 * per)  # room for 5 sequences: 4
    assert n == 4 and info["bytes_per_sequence"] == per and info["free_bytes"] == 10 * per
    assert resolve_batch_size("auto", lm, 64, free=per)[0] == 1
    assert resolve_batch_size("auto", lm, 64, free=1 << 50)[0] == batching.MAX_BATCH_CPU

    monkeypatch.setattr(batching, "available_memory", lambda: 20 * per)
    cfg = AuditConfig(n_sequences=40, n_boot=0, batch_size="auto")
    s = run_audit(canary_lm.model_dir, [canary_lm.corpus_dir], tmp_path / "a", cfg, log=lambda m: None)
    assert s["config"]["batch_size"] == 8
    man = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert man["batch_size_auto"]["batch_size"] == 8 and "power of two" in man["batch_size_auto"]["rule"]
    fixed = run_audit(canary_lm.model_dir, [canary_lm.corpus_dir], tmp_path / "b",
                      AuditConfig(n_sequences=40, n_boot=0, batch_size=32), log=lambda m: None)
    # the same bytes at any batch size (each batch scored on one thread)
    table = "per_sequence.parquet"
    assert (tmp_path / "a" / table).read_bytes() == (tmp_path / "b" / table).read_bytes()
    assert fixed["extractable"] == s["extractable"]


@pytest.mark.parametrize("columns, needle", [
    ({"tokens": pa.array([[1.5] * 20], pa.list_(pa.float64()))}, "integer token ids"),
    ({"tokens": pa.array(["abc"])}, "integer token ids"),
    ({"tokens": pa.array([[1] * 20, [None] * 20], pa.list_(pa.int64()))}, "null"),
    ({"tokens": pa.array([[1] * 20]), "row": pa.array(["x"])}, "'row'"),
    ({"tokens": pa.array([[1] * 20, [2] * 20]), "token_offset": pa.array([0, None])}, "'token_offset'"),
    ({"id": pa.array(["a", "b"]), "token_offset": pa.array([0, None])}, "'token_offset'"),
    ({"tokens": pa.array([[2**63 + 5] * 20], pa.list_(pa.uint64()))}, "'tokens'.*int64"),
    ({"tokens": pa.array([[1] * 20]), "row": pa.array([2**64 - 1], pa.uint64())}, "'row'.*int64"),
    ({"tokens": pa.array([[1] * 20]), "token_offset": pa.array([-3])}, "'token_offset' holds -3, below 0"),
    ({"id": pa.array(["a"]), "token_offset": pa.array([-1])}, "'token_offset' holds -1, below 0"),
    ({"tokens": pa.array([[1] * 20, [-2] * 20])}, "'tokens' holds -2, below 0"),
    ({"tokens": pa.array([[1] * 20]), "row": pa.array([-2])}, "'row' holds -2, below -1"),
    ({"tokens": pa.array([[1] * 20]), "shard": pa.array([3])}, "'shard' must hold strings"),
])
def test_a_sequences_file_of_the_wrong_types_is_an_input_error(tmp_path, columns, needle):
    """--sequences: token ids that are not integers, null ids, or row/token_offset columns that are
    not integers or hold nulls are an InputError naming the file. Before: float ids were silently
    truncated to integers, a string column was 'too short', and the others died with TypeError or
    ValueError from int() (a traceback, or one line naming no file); uint64 values above int64's
    range died with OverflowError (a traceback on the command line); a negative token offset was
    silently 'too short' (by id) or recorded as given (with tokens), and a negative token id was
    blamed on the model ('outside the model's embeddings') instead of on the file."""
    from audit.sampling import sequences_from_file
    from dedup.shards import InputError

    path = tmp_path / "seqs.parquet"
    pq.write_table(pa.table(columns), path)
    with pytest.raises(InputError, match=needle) as e:
        sequences_from_file(path, 8, 8, [], lambda texts: [[1] * 20 for _ in texts])
    assert str(path) in str(e.value)


def test_token_lists_of_a_fixed_length_are_read(tmp_path):
    """--sequences: token windows of one length, as Hugging Face datasets stores a Sequence(length=N) feature
    (Arrow's fixed_size_list; uint16 ids, as Pythia's pre-tokenized data), were refused: "column 'tokens' must hold
    lists of integer token ids, not fixed_size_list<element: uint16>[20]", which they are."""
    from audit.sampling import sequences_from_file

    path = tmp_path / "seqs.parquet"
    ids = [list(range(i, i + 20)) for i in (1, 40000)]
    pq.write_table(pa.table({"tokens": pa.array(ids, pa.list_(pa.uint16(), 20))}), path)
    np.testing.assert_array_equal(sequences_from_file(path, 8, 8).tokens, np.array(ids)[:, :16])


def test_an_audit_rerun_that_dies_midway_leaves_no_manifest_over_mixed_outputs(canary_lm, tmp_path, monkeypatch):
    """A completed audit rerun into its --out with another config, killed after writing
    per_sequence.parquet: the directory must not look complete (manifest.json last: complete iff
    it exists), or report and forecast read the new table beside the old summary. Before: the
    old run's manifest stayed."""
    from dedup import io

    out = tmp_path / "out"
    run_audit(canary_lm.model_dir, [canary_lm.corpus_dir], out, AuditConfig(n_sequences=8, n_boot=0), log=quiet)
    real = io.write_json_atomic

    def dies_at_the_summary(path, obj):
        if Path(path).name == "summary.json":
            raise KeyboardInterrupt
        real(path, obj)

    monkeypatch.setattr(io, "write_json_atomic", dies_at_the_summary)
    with pytest.raises(KeyboardInterrupt):
        run_audit(canary_lm.model_dir, [canary_lm.corpus_dir], out, AuditConfig(n_sequences=8, n_boot=0, seed=1),
                  log=quiet)
    assert (out / "per_sequence.parquet").exists() and not (out / "manifest.json").exists()
    assert not (out / "summary.json").exists()  # the old run's: a report would pair it with the new table


def _word_corpus(d: Path, n: int = 6) -> Path:
    """n documents of 40 words of tiny_random_lm's vocabulary, one Parquet shard."""
    from dedup.synthetic import write_shards

    rng = np.random.default_rng(0)
    texts = [" ".join(f"t{i}" for i in rng.integers(1, 48, size=40)) for _ in range(n)]
    write_shards(pa.table({"id": [f"d{i}" for i in range(n)], "text": texts}), d, 1)
    return d


@pytest.mark.parametrize("where", ["model", "train_run", "dedup"])
def test_an_audit_into_an_input_or_another_stages_output_is_refused(tiny_random_lm, tmp_path, where):
    """--out equal to (or inside) the model, reference or dedup directory, or a directory holding
    another stage's output (a train run: its manifest.json), is refused before anything is
    written. Before: the audit replaced the training run's manifest.json with its own (the run
    then refused to resume, and profile read an audit manifest as the run's), and wrote
    per_sequence.parquet, summary.json and manifest.json into the model and dedup directories."""
    corpus = _word_corpus(tmp_path / "corpus")
    model = tiny_random_lm("gpt2")
    dedup = tmp_path / "dedup"
    dedup_files([corpus], dedup, DedupConfig(), threads=1)
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"stage": "train", "config": {}}))
    out = {"model": model, "train_run": run, "dedup": dedup}[where]
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match="--out") as e:
        run_audit(model, [corpus], out, AuditConfig(n_sequences=4, prompt_len=8, cont_len=8, n_boot=0),
                  dedup_dir=dedup, log=quiet)
    assert str(out) in str(e.value)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_run_audit_takes_one_corpus_path_as_well_as_a_list(tiny_random_lm, tmp_path):
    """``corpus`` given as one str or Path audits that directory, as dedup.runs.discover takes
    one path. Before: run_audit called list() on it first, so a str became one-character paths
    ('t: no such file or directory') and a Path was 'not iterable'. The same bytes each time, the
    run's record (manifest.json) aside: summary.json held the run's timings, so no two were equal."""
    corpus = _word_corpus(tmp_path / "corpus")
    model = tiny_random_lm("gpt2")
    cfg = AuditConfig(n_sequences=4, prompt_len=8, cont_len=8, n_boot=0)
    run_audit(model, [corpus], tmp_path / "list", cfg, log=quiet)
    for one in (str, Path):
        run_audit(model, one(corpus), tmp_path / one.__name__, cfg, log=quiet)
        for name in ("per_sequence.parquet", "summary.json"):  # summary.json held the run's timings
            assert (tmp_path / one.__name__ / name).read_bytes() == (tmp_path / "list" / name).read_bytes()


def test_a_negative_seed_is_refused_by_the_config_naming_it():
    """--seed -1 reached numpy's generator: 'error: expected non-negative integer', naming no option."""
    from audit.config import ProfileConfig

    for cls in (AuditConfig, ProfileConfig):
        with pytest.raises(ValueError, match=r"config: seed must be >= 0, got -1"):
            cls(seed=-1)


def test_a_sequences_file_whose_ids_are_all_absent_from_the_corpus_is_an_input_error(tiny_random_lm, tmp_path):
    """--sequences by id and token_offset where no id is a corpus id (ids of another form, e.g.
    integers for 'd0'): the tokenizer was called on no text (IndexError from transformers, a
    traceback) instead of the one line saying no sequence was found."""
    from dedup.shards import InputError

    corpus = _word_corpus(tmp_path / "corpus")
    seqs = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"id": [0, 1], "token_offset": [0, 0]}), seqs)
    with pytest.raises(InputError, match="no sequence of at least 16 tokens") as e:
        run_audit(tiny_random_lm("gpt2"), [corpus], tmp_path / "out",
                  AuditConfig(prompt_len=8, cont_len=8, n_boot=0), sequences=seqs, log=quiet)
    assert str(seqs) in str(e.value) and not (tmp_path / "out").exists()


def test_a_dedup_output_of_another_corpus_is_refused(tiny_random_lm, tmp_path, monkeypatch):
    """--dedup-dir must be the dedup output of the audited corpus: its rows are matched by shard
    name and row. Before: a dedup output of another corpus was taken as is, every sequence 'unique'
    (or statuses of other documents where shard names coincide) and summary.json's retention the
    other corpus's document counts, exit 0. The manifest records the output's absolute path (the
    comparison report tells audits of other dedup outputs by it): it recorded a relative one as given,
    the same for other outputs audited from other folders."""
    from dedup.shards import InputError

    corpus, other = _word_corpus(tmp_path / "corpus"), _word_corpus(tmp_path / "other", n=9)
    dedup = tmp_path / "dedup"
    dedup_files([other], dedup, DedupConfig(), threads=1)
    with pytest.raises(InputError, match="not the dedup output of this corpus") as e:
        run_audit(tiny_random_lm("gpt2"), [corpus], tmp_path / "out",
                  AuditConfig(n_sequences=4, prompt_len=8, cont_len=8, n_boot=0), dedup_dir=dedup, log=quiet)
    assert str(dedup) in str(e.value) and not (tmp_path / "out").exists()
    dedup_files([corpus], tmp_path / "own", DedupConfig(), threads=1)  # its own dedup output, or one of its shards
    monkeypatch.chdir(tmp_path)
    run_audit(tiny_random_lm("gpt2"), sorted(corpus.glob("*.parquet"))[:1], tmp_path / "out",
              AuditConfig(n_sequences=4, prompt_len=8, cont_len=8, n_boot=0), dedup_dir="own", log=quiet)
    shard = sorted(corpus.glob("*.parquet"))[0]  # the sizes the report checks its --dedup-dir against
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["corpus_bytes"] == {shard.name: shard.stat().st_size}
    assert manifest["dedup_dir"] == str((tmp_path / "own").resolve())


def test_a_dedup_output_of_a_corpus_of_the_same_layout_is_refused(tiny_random_lm, tmp_path):
    """Another corpus with the same shard names and row counts (another seed of a generator, say):
    its dedup output passed, and the audit took its removed rows for this corpus's, giving wrong
    dedup statuses and retention with exit 0 (found by a probe). The inputs' sizes, which the dedup
    manifest records, must match too."""
    from dedup.shards import InputError
    from dedup.synthetic import write_shards

    corpus, other = _word_corpus(tmp_path / "corpus"), tmp_path / "other"
    texts = pq.read_table(corpus / "part-00000.parquet").column("text").to_pylist()
    write_shards(pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": [t + " t1" for t in texts]}), other, 1)
    dedup_files([other], tmp_path / "dedup", DedupConfig(), threads=1)
    with pytest.raises(InputError, match="not the dedup output of this corpus") as e:
        run_audit(tiny_random_lm("gpt2"), [corpus], tmp_path / "out",
                  AuditConfig(n_sequences=4, prompt_len=8, cont_len=8, n_boot=0), dedup_dir=tmp_path / "dedup",
                  log=quiet)
    assert "bytes" in str(e.value) and not (tmp_path / "out").exists()


def test_a_reference_vocabulary_at_odds_on_the_empty_token_is_refused():
    """shared_token_ids took the first token the two vocabularies give two ids for with a walrus
    test of its truth: the empty token, first in a byte-level vocabulary, passed as agreement."""
    from types import SimpleNamespace

    from audit.lm import shared_token_ids

    def lm(vocab: dict, name: str):
        return SimpleNamespace(tokenizer=SimpleNamespace(get_vocab=lambda: vocab), path=name)

    with pytest.raises(ModelError, match=r"token '' is id 1 there, 0 here"):
        shared_token_ids(lm({"": 0, "a": 1}, "m"), lm({"": 1, "a": 0}, "r"))
    assert shared_token_ids(lm({"": 0, "a": 1, "b": 2}, "m"), lm({"": 0, "a": 1}, "r")).tolist() == [0, 1]


def test_a_sequences_file_token_outside_the_model_is_named_by_file_and_row(tiny_random_lm, tmp_path):
    """A --sequences row holding a token id the model has no embedding for: the error named the
    model and neither the file nor the row (found by a probe); bad input names the file and row."""
    from dedup.shards import InputError

    corpus = _word_corpus(tmp_path / "corpus")
    seqs = tmp_path / "seqs.parquet"
    pq.write_table(pa.table({"tokens": [list(range(1, 17)), list(range(1, 16)) + [5000]]}), seqs)
    with pytest.raises(InputError, match="row 1: token id 5000") as e:
        run_audit(tiny_random_lm("gpt2"), [corpus], tmp_path / "out",
                  AuditConfig(prompt_len=8, cont_len=8, n_boot=0), sequences=seqs, log=quiet)
    assert str(seqs) in str(e.value) and "48 embeddings" in str(e.value) and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["audit", "train"])
def test_an_id_column_named_on_the_command_line_must_exist(canary_lm, tmp_path, command):
    """As for dedup, a column named by --id-column must exist: before, audit and train ignored a
    misspelt one silently and named every document shard:row (an audit's --members list, given by
    id, then matched nothing: every document a non-member, the membership scores meaningless)."""
    args = {"audit": ["audit", "--model", str(canary_lm.model_dir), "--corpus", str(canary_lm.corpus_dir), "-n", "8",
                      "--n-boot", "0"],
            "train": ["train", str(canary_lm.corpus_dir), "--epochs", "1"]}[command]
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", *args, "--out", str(tmp_path / "out"),
                        "--id-column", "doc"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "no id column 'doc'" in r.stderr and ".parquet" in r.stderr
    assert not any((tmp_path / "out").glob("*.parquet")) and not (tmp_path / "out" / "manifest.json").exists()


def test_count_tokens_without_a_dedup_output_says_it_counts_nothing(canary_lm, tmp_path):
    """--count-tokens counts the corpus tokens dedup kept, which needs --dedup-dir; without one it was
    ignored without a word (summary.json simply had no retention). Found by the audit probe."""
    with pytest.warns(UserWarning, match="count_tokens needs a dedup output"):
        summary = run_audit(canary_lm.model_dir, [canary_lm.corpus_dir], tmp_path / "o",
                            AuditConfig(n_sequences=4, n_boot=0, count_tokens=True), log=quiet)
    assert "retention" not in summary


def test_the_removed_rows_of_a_dedup_output_are_held_in_a_few_bytes_each(tmp_path):
    """An audit with --dedup-dir held dedup's removed rows as a set of (shard name, row) tuples: ~220 bytes a
    removed row, so its memory grew with the corpus (a 10^8-row corpus with 30% duplicates: ~6.6 GB), where the
    audit's memory is to follow the sample. Now one sorted int64 array of rows per shard: 8 bytes a row (a structure
    size check, not an RSS threshold). Failed before: ~220 bytes a row."""
    import tracemalloc

    from audit.run import _dedup_context
    from dedup.runs import discover
    from dedup.synthetic import write_shards

    n = 20_000
    write_shards(pa.table({"id": [f"d{i}" for i in range(n)], "text": [f"same text {i % 3}" for i in range(n)]}),
                 tmp_path / "corpus", 2)
    dedup_files([tmp_path / "corpus"], tmp_path / "dedup", DedupConfig(), threads=1)
    shards = discover(tmp_path / "corpus")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _, removed, _ = _dedup_context(tmp_path / "dedup", shards)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(removed) == n - 3
    assert held / len(removed) < 24, f"{held / len(removed):.0f} bytes a removed row"
    first = pq.read_table(shards[0].path, columns=["text"]).column("text").to_pylist()
    kept = {first.index(f"same text {k}") for k in range(3)}  # the first copy of each text is kept
    assert all(((shards[0].name, r) in removed) == (r not in kept) for r in range(len(first)))
    assert (shards[0].name, len(first) + 5) not in removed and ("other.parquet", 4) not in removed
