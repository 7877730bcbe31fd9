"""Greedy means greedy (issue #12, section 3): generation ignores the model directory's
generation_config.json, EOS is an ordinary token in generation and in the teacher-forced
pass alike, ``extractable == (pythia_score == 1)``; BOS policy ``auto|never``."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit import metrics

P, C, N = 8, 16, 24
PENALTIES = {"repetition_penalty": 1.3, "no_repeat_ngram_size": 2}


def plain_greedy(model_dir, prompts: np.ndarray, n_new: int, prefix=()) -> np.ndarray:
    """Greedy decoding by hand: n_new full forward passes, arg-max of the last position, no
    cache, no logits processor, no stopping; ``prefix`` (a BOS) is prepended and not returned."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    x = torch.as_tensor(np.concatenate([np.tile(np.asarray(prefix, dtype=np.int64), (len(prompts), 1)), prompts], 1))
    with torch.inference_mode():
        for _ in range(n_new):
            nxt = model(input_ids=x, attention_mask=torch.ones_like(x)).logits[:, -1].argmax(-1, keepdim=True)
            x = torch.cat([x, nxt], 1)
    return x[:, -n_new:].numpy()


@pytest.fixture(scope="module")
def penalised(tiny_random_lm):
    """A tiny GPT-2 whose generation_config.json sets repetition_penalty 1.3 and
    no_repeat_ngram_size 2, whose EOS id is the token found in most of its own greedy
    continuations of 200 random prompts, and N of those sequences (prompt + truth), up to half
    with EOS in the greedy continuation: the first half with the true plain-greedy
    continuation (extractable), the second half with one token changed."""
    probe = tiny_random_lm("gpt2", name="probe")
    rng = np.random.default_rng(0)
    cand = rng.integers(0, 48, size=(200, P))
    cand_chains = plain_greedy(probe, cand, C)
    rows_with = np.array([(cand_chains == v).any(axis=1).sum() for v in range(48)])
    eos = int(rows_with.argmax())
    has = (cand_chains == eos).any(axis=1)
    pick = np.concatenate([np.flatnonzero(has)[: N // 2], np.flatnonzero(~has)[: N - min(has.sum(), N // 2)]])
    prompts, chains = cand[pick], cand_chains[pick]
    model_dir = tiny_random_lm("gpt2", generation=PENALTIES, eos=eos, name="penalised")
    assert (plain_greedy(model_dir, prompts, C) == chains).all()  # the weights do not depend on the EOS id
    truth = chains.copy()
    half = N // 2
    pos = rng.integers(0, C, size=N - half)
    truth[np.arange(half, N), pos] = (truth[np.arange(half, N), pos] + 1 + rng.integers(0, 46, size=N - half)) % 48
    return model_dir, prompts, truth, chains, eos


def test_generation_ignores_generation_config_and_eos(penalised):
    from audit.lm import load_causal_lm

    model_dir, prompts, truth, chains, eos = penalised
    assert (chains == eos).any(axis=1).sum() >= 4  # the case: truths containing EOS
    lm = load_causal_lm(model_dir)
    gen = lm.generate_greedy(prompts, C, batch_size=7)
    assert (gen == chains).all(), "generation must be plain greedy: no repetition penalty, no n-gram ban, EOS allowed"


@pytest.mark.parametrize("saved", ['{"num_return_sequences": 4}', '{"max_new_tokens": 0}', "{damaged"])
def test_a_generation_config_the_audit_never_uses_cannot_refuse_the_model(penalised, saved):
    """The directory's generation_config.json is replaced for every call, so one that transformers
    would reject (invalid for greedy, or not JSON) must not refuse the model."""
    from audit.lm import load_causal_lm

    model_dir, prompts, truth, chains, eos = penalised
    odd = model_dir.parent / "odd_generation"
    odd.mkdir(exist_ok=True)
    for f in model_dir.iterdir():
        (odd / f.name).write_bytes(f.read_bytes())
    (odd / "generation_config.json").write_text(saved)
    assert (load_causal_lm(odd).generate_greedy(prompts, C, batch_size=7) == chains).all()


def test_extractable_iff_pythia_score_one(penalised):
    from audit.lm import load_causal_lm

    model_dir, prompts, truth, chains, eos = penalised
    lm = load_causal_lm(model_dir)
    ids = np.concatenate([prompts, truth], 1)
    exact, _ = metrics.extraction(lm.score(ids, 5).greedy_match, P, C)
    pythia = metrics.pythia_score(lm.generate_greedy(prompts, C, 5), truth)
    assert exact[: N // 2].all() and (exact & (truth == eos).any(axis=1)).any()
    assert (exact == (pythia == 1.0)).all()


def _corpus(tmp_path, n=6):
    from dedup.synthetic import write_shards

    rng = np.random.default_rng(1)
    texts = [" ".join(f"t{i}" for i in rng.integers(1, 48, size=40)) for _ in range(n)]
    write_shards(pa.table({"id": [f"d{i}" for i in range(n)], "text": texts}), tmp_path / "corpus", 1)
    return tmp_path / "corpus", texts


def test_audit_run_records_the_policies_and_keeps_the_invariant(penalised, tmp_path):
    from audit.config import AuditConfig
    from audit.run import run_audit

    model_dir, prompts, truth, chains, eos = penalised
    corpus, _ = _corpus(tmp_path)
    seqs = tmp_path / "seqs.parquet"
    pq.write_table(pa.table({"tokens": np.concatenate([prompts, truth], 1).tolist()}), seqs)
    run_audit(model_dir, [corpus], tmp_path / "out", AuditConfig(prompt_len=P, cont_len=C, generate=True, n_boot=0),
              sequences=seqs, log=lambda m: None)
    t = pq.read_table(tmp_path / "out" / "per_sequence.parquet").to_pydict()
    ex, py = np.array(t["extractable"]), np.array(t["pythia_score"])
    assert ex.sum() >= N // 2 and (ex == (py == 1.0)).all()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    rec = json.dumps(manifest)
    assert manifest["decoding"]["eos_policy"] == "ordinary"
    assert manifest["decoding"]["bos"] == {"policy": "auto", "prefix": []}
    assert manifest["decoding"]["generation_config"]["repetition_penalty"] == 1.0, rec


@pytest.mark.parametrize("policy", ["auto", "never"])
def test_bos_policy(tiny_random_lm, tmp_path, policy):
    """A Llama-style tokenizer that prepends BOS: ``auto`` scores (and prompts) with it, as
    MIMIR does, so the window's first token is scored too; ``never`` without it."""
    import torch
    from transformers import AutoModelForCausalLM

    from audit.config import AuditConfig
    from audit.run import run_audit

    bos = 1
    model_dir = tiny_random_lm("llama", bos=bos, eos=2, name="llama_bos")
    corpus, texts = _corpus(tmp_path)
    cfg = AuditConfig(prompt_len=P, cont_len=C, n_sequences=6, generate=True, n_boot=0, bos=policy)
    run_audit(model_dir, [corpus], tmp_path / "out", cfg, log=lambda m: None)
    t = pq.read_table(tmp_path / "out" / "per_sequence.parquet").to_pydict()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    prefix = [bos] if policy == "auto" else []
    assert manifest["decoding"]["bos"] == {"policy": policy, "prefix": prefix}
    ids = torch.tensor([[*prefix, *p, *c] for p, c in zip(t["prompt"], t["truth"])])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, :-1], -1)
    nll = -logp.gather(-1, ids[:, 1:, None])[..., 0].double().mean(1).numpy()
    np.testing.assert_allclose(t["loss"], nll, rtol=1e-5)  # float32 logits: relative 1e-5 is ~100 ulp
    gen = plain_greedy(model_dir, np.array(t["prompt"]), C, prefix)
    assert (np.array(t["generated"]) == gen).all()
    ex = (gen == np.array(t["truth"])).all(1)
    assert (np.array(t["extractable"]) == ex).all()


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox", "llama", "qwen2", "olmo"])
def test_any_causal_lm(tiny_random_lm, arch):
    """Issue #12, section 5: a tiny random-initialised model of each architecture users audit,
    built from a config in the test: it loads, scores, and its teacher-forced verdicts equal
    plain greedy generation (hand-written, no cache) and the batched generation."""
    from audit.lm import load_causal_lm

    model_dir = tiny_random_lm(arch, eos=2, name=f"arch_{arch}")
    lm = load_causal_lm(model_dir, bos="auto")
    rng = np.random.default_rng(3)
    prompts = rng.integers(0, 48, size=(10, P))
    gen = plain_greedy(model_dir, prompts, C)
    assert (lm.generate_greedy(prompts, C, 4) == gen).all()
    truth = gen.copy()
    truth[5:, -1] = (truth[5:, -1] + 1) % 48  # the last token wrong: only the full pass can tell
    stats = lm.score(np.concatenate([prompts, truth], 1), 4)
    assert stats.logprob.shape == (10, P + C - 1) and np.isfinite(stats.logprob).all()
    exact, leading = metrics.extraction(stats.greedy_match, P, C)
    assert exact.tolist() == [True] * 5 + [False] * 5 and leading[5:].tolist() == [C - 1] * 5
    assert (lm.greedy_matches(np.concatenate([prompts, truth], 1), P, 4).all(1) == exact).all()


def test_a_damaged_model_directory_is_a_model_error(tiny_random_lm, tmp_path):
    """A truncated model.safetensors, a directory without tokenizer files and a tokenizer whose
    ids do not fit the model's embeddings are audit ModelErrors naming the directory (the CLI's one line,
    exit 2). Before: a SafetensorError traceback (exit 1); transformers' empty GPT2Tokenizer,
    which encodes every text to no tokens, so the audit blamed the corpus ('no sequence of at
    least P + C tokens'); an IndexError traceback from the embedding in the first forward pass."""
    import shutil

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from audit.config import AuditConfig
    from audit.lm import ModelError
    from audit.run import run_audit

    src = tiny_random_lm("gpt2")
    cut, bare, wide = (shutil.copytree(src, tmp_path / n) for n in ("cut", "bare", "wide"))
    (cut / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes()[:1000])
    for f in bare.glob("*.json"):
        if f.name != "config.json":
            f.unlink()
    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(100)}, unk_token="t0"))  # ids up to 99
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0").save_pretrained(wide)  # the model has 48
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": [" ".join(f"t{i}" for i in range(40, 100))]}), corpus / "c.parquet")
    for d, why in ((cut, "not a causal language model"), (bare, "no usable tokenizer"), (wide, "outside the model's")):
        with pytest.raises(ModelError, match=why) as e:
            run_audit(d, [corpus], tmp_path / f"out-{d.name}", AuditConfig(n_sequences=1, prompt_len=P, cont_len=C,
                                                                           n_boot=0), log=lambda m: None)
        assert str(d) in str(e.value) and not (tmp_path / f"out-{d.name}").exists()


def test_a_model_that_attends_to_later_tokens_is_refused(tiny_random_lm, tmp_path):
    """AutoModelForCausalLM loads a BERT checkpoint as BertLMHeadModel, which (without
    ``is_decoder``) attends to every position: its prediction of token t sees token t, so
    extraction and losses would measure copying, not memorisation. The load probes causality (a
    change to the last token must not move any earlier position's logits) and refuses such a
    model, naming the directory; the same architecture built as a decoder loads. Before: the
    audit ran and reported a bidirectional model's numbers as memorisation."""
    from audit.lm import ModelError, load_causal_lm

    encoder = tiny_random_lm("bert")
    with pytest.raises(ModelError, match="not causal: its predictions at earlier positions change") as e:
        load_causal_lm(encoder)
    assert str(encoder) in str(e.value)
    assert load_causal_lm(tiny_random_lm("bert_decoder")).path == tiny_random_lm("bert_decoder")


def test_the_causality_probe_fits_a_short_context(tmp_path):
    """The probe feeds 8 tokens, or the whole context when it is shorter: a causal GPT-2 of 4
    positions loads (a probe of 8 failed in the embedding). A forward pass that fails, NaN logits
    (which passed any tolerance) and a context of 1 (an empty comparison, a RuntimeError) are
    ModelErrors naming the directory, not tracebacks or a pass."""
    import torch
    import transformers as tf

    from audit.lm import ModelError, load_causal_lm

    from .conftest import word_tokenizer

    torch.manual_seed(0)
    d = tmp_path / "short"
    tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=48, n_embd=32, n_layer=1, n_head=4, n_positions=4,
                                     bos_token_id=None, eos_token_id=None)).save_pretrained(d)
    word_tokenizer(48).save_pretrained(d)
    lm = load_causal_lm(d)
    assert lm.max_positions == 4
    for broken, why in ((lambda **kw: 1 / 0, "forward pass over 4 tokens failed: ZeroDivisionError"),
                        (lambda input_ids, **kw: type("Out", (), {"logits": torch.full((2, 4, 48), float("nan"))}),
                         "not finite")):
        lm.model.forward = broken
        with pytest.raises(ModelError, match=why) as e:
            lm.check_causal()
        assert str(d) in str(e.value)
    lm.model.config.n_positions = 1
    with pytest.raises(ModelError, match="context of 1 positions .* nothing to audit") as e:
        lm.check_causal()
    assert str(d) in str(e.value)


@pytest.mark.parametrize("bos, prompt_len", [("auto", 64), ("never", 65)])
def test_a_window_whose_last_token_is_one_past_the_context_is_audited(tiny_random_lm, tmp_path, bos, prompt_len):
    """Scoring and generating P + C tokens after the prefix feeds prefix + P + C - 1 positions (the last token
    is only predicted, never fed back), so prefix + P + C may be the context + 1: a GPT-2 of 128 learned
    positions audits 64 + 64 tokens after a BOS, or 65 + 64 without, through teacher forcing and generation,
    with generation's verdicts those of the teacher-forced pass. Before: refused as exceeding the context."""
    from audit.config import AuditConfig
    from audit.run import run_audit

    model_dir = tiny_random_lm("gpt2", bos=1, eos=2, name="gpt2_bos")  # n_positions = 128
    prefix = [1] if bos == "auto" else []
    prompts = np.random.default_rng(0).integers(3, 48, size=(4, prompt_len))
    chains = plain_greedy(model_dir, prompts, 64, prefix)  # the true greedy continuations (feeds up to 128)
    truth = chains.copy()
    truth[2:, 5] = (truth[2:, 5] + 1) % 48  # the last two: not extractable
    corpus, _ = _corpus(tmp_path)
    seqs = tmp_path / "seqs.parquet"
    pq.write_table(pa.table({"tokens": np.concatenate([prompts, truth], 1).tolist()}), seqs)
    cfg = AuditConfig(prompt_len=prompt_len, cont_len=64, n_boot=0, generate=True, bos=bos)
    run_audit(model_dir, [corpus], tmp_path / "out", cfg, sequences=seqs, log=lambda m: None)
    t = pq.read_table(tmp_path / "out" / "per_sequence.parquet").to_pydict()
    assert t["extractable"] == [True, True, False, False] and (np.array(t["generated"]) == chains).all()


def test_the_bos_counts_against_the_context(tiny_random_lm, tmp_path):
    """``--bos auto`` feeds prefix + P + C - 1 positions (the last token is only predicted): 65 + 64 tokens
    fill a context of 128 without the BOS and are one position too many with it, so refused. Before: only
    P + C was checked, and a GPT-2 (learned positions) with a BOS-adding tokenizer failed with torch's IndexError
    in the first forward pass (a RoPE model silently ran past its context). (This test then refused 64 + 64
    tokens with a BOS, one token stricter than needed: see the test above.)"""
    from audit.config import AuditConfig
    from audit.lm import ModelError
    from audit.run import run_audit

    model_dir = tiny_random_lm("gpt2", bos=1, eos=2, name="gpt2_bos")  # n_positions = 128
    corpus, _ = _corpus(tmp_path)
    seqs = tmp_path / "seqs.parquet"
    pq.write_table(pa.table({"tokens": np.random.default_rng(0).integers(3, 48, size=(4, 129)).tolist()}), seqs)
    with pytest.raises(ModelError, match=r"prompt \+ continuation = 129 tokens feed 129 positions \(the BOS, then "
                                         r"all but the last token.*exceeds the model's context of 128 tokens"):
        run_audit(model_dir, [corpus], tmp_path / "out", AuditConfig(prompt_len=65, cont_len=64, n_boot=0),
                  sequences=seqs, log=lambda m: None)
    cfg = AuditConfig(prompt_len=65, cont_len=64, n_boot=0, bos="never")  # without the BOS it fits
    run_audit(model_dir, [corpus], tmp_path / "out", cfg, sequences=seqs, log=lambda m: None)


def test_a_reference_whose_tokenizer_prepends_another_bos_is_refused(tiny_random_lm, tmp_path):
    """Same vocabulary, but only the target's tokenizer prepends a BOS: the two models would score
    different tokens (the reference loss has one position fewer), so the reference is refused
    before any scoring, naming both prefixes. Before: both were scored, then score_reference
    failed on 'logprob and ref_logprob must have the same shape'."""
    from audit.config import AuditConfig
    from audit.lm import ModelError
    from audit.run import run_audit

    target = tiny_random_lm("llama", bos=1, eos=2, name="llama_bos_target")
    reference = tiny_random_lm("llama", eos=2, name="llama_nobos_reference")
    corpus, _ = _corpus(tmp_path)
    with pytest.raises(ModelError, match=r"prepends \[\] .* prepends \[1\]"):
        run_audit(target, [corpus], tmp_path / "out", AuditConfig(prompt_len=P, cont_len=C, n_sequences=4, n_boot=0),
                  reference=reference, log=lambda m: None)


def test_a_page_of_an_audit_of_given_sequences_names_the_file_not_the_sampling(tiny_random_lm, tmp_path):
    """An audit of --sequences records the file it read (summary.json ``sequences.file``), and
    its page's 'About this audit' says so instead of listing the sampler's settings (n_sequences,
    offset, seed), which did not choose anything. Before: 'n_sequences=1000' for 4 given sequences."""
    from audit.config import AuditConfig
    from audit.report.model import model_report
    from audit.run import run_audit

    corpus, _ = _corpus(tmp_path)
    seqs = tmp_path / "given.parquet"
    pq.write_table(pa.table({"tokens": np.random.default_rng(0).integers(3, 48, size=(4, 2 * P)).tolist()}), seqs)
    run_audit(tiny_random_lm("gpt2"), [corpus], tmp_path / "out", AuditConfig(prompt_len=P, cont_len=P, n_boot=0),
              sequences=seqs, log=lambda m: None)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["sequences"]["file"] == str(seqs.resolve())
    about = model_report(tmp_path / "out", tmp_path / "page.html").read_text(encoding="utf-8")
    about = about.split("About this audit", 1)[1]
    assert "n_sequences" not in about and "seed=" not in about and "offset=" not in about
    assert f"4 given in <code>{seqs.resolve()}</code>" in about

    run_audit(tiny_random_lm("gpt2"), [corpus], tmp_path / "sampled", AuditConfig(prompt_len=P, cont_len=P, n_boot=0,
              n_sequences=3), log=lambda m: None)
    assert json.loads((tmp_path / "sampled" / "summary.json").read_text())["sequences"]["file"] is None
    about = model_report(tmp_path / "sampled", tmp_path / "s.html").read_text(encoding="utf-8")
    assert "n_sequences=3" in about.split("About this audit", 1)[1]


def test_a_checkpoint_missing_weights_is_refused(tiny_random_lm, tmp_path):
    """transformers loads a checkpoint that lacks some of the model's weights (an untied
    ``lm_head.weight`` left out; every key under ``_orig_mod.``, as a ``torch.compile``d model's
    state dict is saved) by initialising the missing ones at random, with a log message that the
    audit silences: every score would describe random weights. The load refuses such a directory,
    naming it and a missing weight (the CLI's one line, exit 2). Before: the audit ran and
    reported the random weights' numbers."""
    from safetensors.torch import load_file, save_file

    from audit.config import AuditConfig
    from audit.lm import ModelError, load_causal_lm
    from audit.run import run_audit

    import shutil

    src = tiny_random_lm("llama", name="llama_untied")  # LlamaConfig: tie_word_embeddings=False
    weights = load_file(src / "model.safetensors")
    assert "lm_head.weight" in weights
    no_head, compiled = (shutil.copytree(src, tmp_path / n) for n in ("no_head", "compiled"))
    save_file({k: v for k, v in weights.items() if k != "lm_head.weight"}, no_head / "model.safetensors",
              metadata={"format": "pt"})
    save_file({f"_orig_mod.{k}": v for k, v in weights.items()}, compiled / "model.safetensors", metadata={"format": "pt"})
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": [" ".join(f"t{i % 48}" for i in range(40))]}), corpus / "c.parquet")
    for d in (no_head, compiled):
        with pytest.raises(ModelError, match="missing from its weights .*lm_head.weight") as e:
            run_audit(d, [corpus], tmp_path / f"out-{d.name}", AuditConfig(n_sequences=1, prompt_len=P, cont_len=C,
                                                                           n_boot=0), log=lambda m: None)
        assert str(d) in str(e.value) and not (tmp_path / f"out-{d.name}").exists()
    assert load_causal_lm(src).path == src  # the whole checkpoint loads


def test_a_model_with_custom_code_is_refused_without_a_prompt(tiny_random_lm, tmp_path, monkeypatch):
    """A directory whose config.json names custom code (``auto_map``, a ``model_type`` transformers
    does not know: MPT, early Phi, ChatGLM checkpoints) is refused at once, naming the directory
    (the CLI's one line, exit 2), and its tokenizer still loads for the report, without running
    any of the directory's code. Before: transformers asked on stdin "Do you wish to run the
    custom code? [y/N]" (stdout, 15 s), where a 'y' ran the directory's Python files."""
    import builtins
    import shutil

    from audit.lm import ModelError, load_causal_lm, load_tokenizer

    d = shutil.copytree(tiny_random_lm("gpt2"), tmp_path / "custom")
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(model_type="mycustom", auto_map={"AutoConfig": "configuration_my.MyConfig",
                                                 "AutoModelForCausalLM": "modeling_my.MyModel"})
    (d / "config.json").write_text(json.dumps(cfg))
    prompts = []
    monkeypatch.setattr(builtins, "input", lambda *a: prompts.append(a) or "n")
    with pytest.raises(ModelError, match="custom code") as e:
        load_causal_lm(d)
    assert str(d) in str(e.value)
    assert load_tokenizer(d)[0] is not None
    assert prompts == []


def test_a_config_that_records_flash_attention_loads_with_the_default_attention(tiny_random_lm, tmp_path):
    """A config.json that records the attention its training used (``"_attn_implementation":
    "flash_attention_2"``, as configs saved from such runs hold) loads with transformers' default
    attention (sdpa, else eager), and scores the same numbers as the directory without the key:
    the audit runs in float32, where FlashAttention does not, and on machines without it. Before:
    ModelError 'FlashAttention2 has been toggled on, but ... not installed' (exit 2)."""
    import shutil

    from audit.lm import load_causal_lm

    src = tiny_random_lm("llama", bos=1, eos=2, name="llama_fa")
    fa = shutil.copytree(src, tmp_path / "fa")
    cfg = json.loads((fa / "config.json").read_text())
    (fa / "config.json").write_text(json.dumps({**cfg, "_attn_implementation": "flash_attention_2"}))
    ids = np.random.default_rng(0).integers(3, 48, size=(4, P + C))
    want, got = load_causal_lm(src).score(ids), load_causal_lm(fa).score(ids)
    assert np.array_equal(want.logprob, got.logprob) and np.array_equal(want.argmax, got.argmax)


def test_a_tokenizer_json_the_tokenizers_library_cannot_read_is_a_model_error(tiny_random_lm, tmp_path):
    """A tokenizer.json that is JSON but not one this ``tokenizers`` can build (as one written
    by a newer ``tokenizers`` reads in an older one: "data did not match any variant of untagged
    enum ...") is a ModelError naming the directory (the CLI's one line, exit 2), and the report's
    tokenizer loader finds no tokenizer. Before: the ``tokenizers`` Exception escaped as a
    traceback (exit 1) from both."""
    import shutil

    from audit.lm import ModelError, load_causal_lm, load_tokenizer

    d = shutil.copytree(tiny_random_lm("gpt2"), tmp_path / "newer_tokenizer")
    tok = json.loads((d / "tokenizer.json").read_text())
    tok["model"]["type"] = "SomeFutureModel"
    (d / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(ModelError, match="no usable tokenizer") as e:
        load_causal_lm(d)
    assert str(d) in str(e.value)
    assert load_tokenizer(d) == (None, None)


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"])
def test_a_tokenizer_file_that_is_not_json_is_named(tiny_random_lm, tmp_path, name):
    """A truncated tokenizer file (tokenizer.json, tokenizer_config.json or special_tokens_map.json):
    the ModelError names that file. Before: 'm: no usable tokenizer: Expecting property name
    enclosed in double quotes: line 1 column 2 (char 1)', naming the directory only, so which of
    its JSON files was damaged was left to guess (found by a probe)."""
    import shutil

    from audit.lm import ModelError, load_causal_lm

    d = shutil.copytree(tiny_random_lm("gpt2"), tmp_path / "m")
    (d / name).write_text('{"truncated')
    with pytest.raises(ModelError, match="no usable tokenizer") as e:
        load_causal_lm(d)
    assert f"{d / name}: not valid JSON" in str(e.value), str(e.value)
    from audit.report.run import write_report  # the report's --model-dir too

    (audit := tmp_path / "audit").mkdir()
    with pytest.raises(ValueError, match="no usable tokenizer") as e:
        write_report([audit], tmp_path / "report", model_dirs=[d])
    assert f"{d / name}: not valid JSON" in str(e.value), str(e.value)


def test_a_multimodal_checkpoint_keeps_its_text_models_context_and_shape(tmp_path):
    """AutoModelForCausalLM loads a multimodal checkpoint (Gemma 3's: Gemma3ForConditionalGeneration)
    whose config keeps the text model's numbers in ``text_config``: its context (128 here) bounds
    prompt + continuation as any model's does (ModelError naming the directory), and
    ``--batch-size auto`` sizes batches by the text model's width and layers. Before: the
    context was None, so a window longer than the context was audited without a word, and the
    manifest recorded width 0 and 0 layers."""
    import torch
    import transformers as tf

    from audit.batching import model_shape
    from audit.config import AuditConfig
    from audit.lm import ModelError, load_causal_lm
    from audit.run import run_audit

    from .conftest import word_tokenizer

    text = tf.Gemma3TextConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=1, head_dim=8, intermediate_size=64, max_position_embeddings=128)
    vision = tf.SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                   image_size=28, patch_size=14)
    torch.manual_seed(0)
    d = tmp_path / "gemma3"
    tf.Gemma3ForConditionalGeneration(tf.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                                                      image_token_index=60, boi_token_index=61,
                                                      eoi_token_index=62)).save_pretrained(d)
    word_tokenizer(48).save_pretrained(d)
    lm = load_causal_lm(d)
    assert lm.max_positions == 128
    assert model_shape(lm.model) == {"vocab": 64, "width": 32, "layers": 2, "heads": 4}
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": [" ".join(f"t{i % 48}" for i in range(200))]}), corpus / "c.parquet")
    with pytest.raises(ModelError, match="= 160 tokens feed 159 positions .* exceeds the model's context of 128") as e:
        run_audit(d, [corpus], tmp_path / "out", AuditConfig(n_sequences=1, prompt_len=80, cont_len=80, n_boot=0),
                  log=lambda m: None)
    assert str(d) in str(e.value) and not (tmp_path / "out").exists()


def test_scores_and_greedy_tokens_do_not_depend_on_torch_threads_or_batch_size(tmp_path):
    """The audit's per-sequence bytes must not depend on the thread count or --batch-size. On the
    CPU a matrix product's sums round by how BLAS splits it over threads, which depends on the
    thread count and on the batch's rows: a 384-wide GPT-2's MLP gave other losses and Min-K%++
    at 2 torch threads than at 1 (and, at 2, at batch sizes 1-3 than at 4 and more). Each batch
    now runs as one slice per torch thread, each slice on one thread."""
    torch = pytest.importorskip("torch")
    import transformers as tf

    from audit.lm import load_causal_lm

    from .conftest import save_random_lm

    lm = load_causal_lm(save_random_lm(tmp_path / "wide", tf.GPT2Config(vocab_size=1024, n_embd=384, n_layer=2,
                                                                          n_head=6, n_positions=64)))
    ids = np.random.default_rng(0).integers(0, 1024, size=(12, 40))
    before = torch.get_num_threads()
    runs = []
    try:
        for threads, batch in ((1, 1), (2, 1), (2, 5), (2, 12)):
            torch.set_num_threads(threads)
            st = lm.score(ids, batch)
            runs.append((threads, batch, st, lm.generate_greedy(ids[:, :8], 6, batch),
                         lm.greedy_matches(ids, 20, batch)))
            assert torch.get_num_threads() == threads  # as it was
    finally:
        torch.set_num_threads(before)
    _, _, first, gen, matches = runs[0]
    for threads, batch, st, g, m in runs[1:]:
        for field in ("logprob", "greedy_match", "argmax", "mu", "sigma"):
            assert np.array_equal(getattr(st, field), getattr(first, field)), (threads, batch, field)
        assert np.array_equal(g, gen) and np.array_equal(m, matches), (threads, batch)


def test_a_batch_is_cut_into_one_slice_per_torch_thread():
    """On the CPU a batch of B rows runs as slices of ceil(B / threads) rows, one per thread at once:
    the memory of one batch, every core busy however few the sequences; torch's thread count is
    restored after. Progress came after each slice, so the progress lines changed with the thread
    count (a CLI test's expected '4/12' at batch 4 failed at 2 threads): now after each batch."""
    torch = pytest.importorskip("torch")
    from audit.lm import CausalLM

    lm = CausalLM.__new__(CausalLM)
    lm.device = "cpu"
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        done: list[int] = []
        inside = lm._map_batches(11, 5, lambda rows: (rows.start, rows.stop, torch.get_num_threads()),
                                 lambda d, total: done.append(d))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert inside == [(0, 3, 1), (3, 5, 1), (5, 8, 1), (8, 10, 1), (10, 11, 1)]  # each batch cut in two
    assert done == [5, 10, 11]  # progress after each batch, as at one thread (not after each slice)


def test_two_threads_mapping_batches_at_once_leave_torchs_thread_count_as_it_was():
    """torch's thread count is one number per process: a second call from another Python thread,
    started while the first ran its slices on one thread each, read 1 as the count to restore and
    restored it after the first had restored 2, leaving the process on one thread. Calls now take
    turns (a lock): the second sees 2 and runs its batches as slices too."""
    import threading
    import time

    torch = pytest.importorskip("torch")
    from audit.lm import CausalLM

    lm = CausalLM.__new__(CausalLM)
    lm.device = "cpu"
    before = torch.get_num_threads()
    seen: dict[str, list[int]] = {"a": [], "b": []}

    def call(name: str, pause: float, delay: float) -> None:
        time.sleep(delay)
        lm._map_batches(2, 2, lambda rows: seen[name].append(torch.get_num_threads()) or time.sleep(pause))

    try:
        torch.set_num_threads(2)
        threads = [threading.Thread(target=call, args=("a", 0.3, 0)), threading.Thread(target=call, args=("b", 0.3, 0.1))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == {"a": [1, 1], "b": [1, 1]}  # each batch of two rows as two one-thread slices
