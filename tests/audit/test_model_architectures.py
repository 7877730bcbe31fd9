"""Audit defects found on architectures other than GPT-2 (modelprobe): tiny random models, no download."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def test_an_mpt_context_is_seen_and_a_longer_window_refused(tmp_path):
    """MPT states its context as ``max_seq_len`` (its ALiBi table: a longer input fails inside
    the attention). The audit must refuse prompt + continuation beyond it up front, as for GPT-2
    or Llama, with a ModelError naming the context, not torch's RuntimeError from the first
    forward pass (a traceback and exit 1 on the command line)."""
    torch = pytest.importorskip("torch")
    import transformers as tf

    from audit.config import AuditConfig
    from audit.lm import ModelError, load_causal_lm
    from audit.run import run_audit

    from .conftest import save_random_lm

    d = save_random_lm(tmp_path / "mpt", tf.MptConfig(vocab_size=48, d_model=32, n_layers=2, n_heads=4,
                                                      max_seq_len=16))
    assert load_causal_lm(d).max_positions == 16
    corpus = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": [" ".join(f"t{i % 48}" for i in range(40))] * 2}), corpus)
    with pytest.raises(ModelError, match="exceeds the model's context of 16"):
        run_audit(d, [corpus], tmp_path / "out", AuditConfig(prompt_len=10, cont_len=10, n_boot=0), log=lambda m: None)


def test_min_k_plus_plus_of_an_exactly_uniform_prediction_is_zero(tmp_path):
    """A Llama whose pad_token_id is its BOS id has an all-zero BOS embedding (padding_idx), so
    with ``--bos auto`` the first prediction has all logits exactly 0: a uniform distribution,
    sigma = 0, and z = 0 by score_min_k_plus_plus's rule. Before: sigma was float32 rounding
    (~1e-7) and z = rounding / rounding = -1, which entered the lowest-k mean."""
    torch = pytest.importorskip("torch")
    import transformers as tf

    from audit import metrics
    from audit.lm import load_causal_lm

    from .conftest import save_random_lm

    cfg = tf.LlamaConfig(vocab_size=48, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=128, num_key_value_heads=2, bos_token_id=1,
                         eos_token_id=2, pad_token_id=1)
    d = save_random_lm(tmp_path / "llama", cfg, bos="t1")
    lm = load_causal_lm(d, bos="auto")
    assert lm.prefix == [1]
    st = lm.score(np.random.default_rng(0).integers(3, 48, size=(4, 20)))
    sigma = st.sigma.copy()
    sigma[:, 0] = 0.0  # the exact sigma of the uniform first prediction
    want = metrics.score_min_k_plus_plus(st.logprob, st.mu, sigma, 0.2)
    got = metrics.score_min_k_plus_plus(st.logprob, st.mu, st.sigma, 0.2)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_a_hub_cache_folder_is_refused_naming_its_snapshot(tiny_random_lm, tmp_path):
    """A Hugging Face hub cache (models--org--name/snapshots/<hash>/, files symlinked into blobs/): the
    snapshot loads as its files would; the cache folder itself, or a memdedup train run given for its
    model, was 'no config.json: not a Hugging Face model directory', naming none of the model
    directories below it."""
    pytest.importorskip("torch")
    import hashlib

    from audit.lm import ModelError, load_causal_lm

    src = tiny_random_lm("gpt_neox")
    root = tmp_path / "models--org--tiny"
    snap = root / "snapshots" / ("a" * 40)
    (root / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    for f in src.iterdir():
        blob = root / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        blob.write_bytes(f.read_bytes())
        (snap / f.name).symlink_to(f"../../blobs/{blob.name}")
    ids = np.random.default_rng(0).integers(0, 48, size=(2, 12))
    np.testing.assert_array_equal(load_causal_lm(snap).score(ids).logprob, load_causal_lm(src).score(ids).logprob)
    with pytest.raises(ModelError, match=f"no config.json.*below it.*{snap}"):
        load_causal_lm(root)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)  # a memdedup train run: its final model, checkpoints
    for d in ("model", "checkpoints/step-0000001"):
        (tmp_path / "run" / d).symlink_to(snap)
    with pytest.raises(ModelError, match="below it are: .*run/model, .*run/checkpoints/step-0000001$"):
        load_causal_lm(tmp_path / "run")


def test_a_generation_that_is_not_greedy_decoding_of_the_forward_pass_is_refused(tmp_path, monkeypatch):
    """transformers' RWKV decodes a batch of several rows from a recurrent state that mixes them up: its
    cached generation is not greedy decoding of its own forward pass. Sequences whose continuation is the
    model's plain greedy one (full passes, no cache) are extractable by the teacher-forced pass, yet their
    Pythia score was below 1 (README: extractable == (pythia_score == 1)), exit 0. Now --generate checks
    that the leading tokens generation reproduces are those of the teacher-forced pass, else ModelError.
    RWKV says it is stateful, so it now decodes one row at a time and agrees; one that says nothing is refused."""
    pytest.importorskip("torch")
    import transformers as tf

    from audit.config import AuditConfig
    from audit.lm import ModelError
    from audit.run import run_audit

    from .conftest import save_random_lm
    from .test_greedy import plain_greedy

    d = save_random_lm(tmp_path / "rwkv", tf.RwkvConfig(vocab_size=48, hidden_size=32, num_hidden_layers=2,
                                                        attention_hidden_size=32, intermediate_size=64,
                                                        context_length=64))
    prompts = np.random.default_rng(0).integers(3, 48, size=(4, 8))
    tokens = np.concatenate([prompts, np.concatenate([plain_greedy(d, p[None], 8) for p in prompts])], axis=1)
    pq.write_table(pa.table({"tokens": tokens.tolist()}), tmp_path / "seqs.parquet")
    corpus = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"id": ["a"], "text": [" ".join(f"t{i}" for i in range(40))]}), corpus)
    cfg = AuditConfig(prompt_len=8, cont_len=8, n_boot=0, bos="never")
    s = run_audit(d, [corpus], tmp_path / "plain", cfg, sequences=tmp_path / "seqs.parquet", log=lambda m: None)
    assert s["extractable"]["k"] == 4  # the teacher-forced verdicts
    generated = run_audit(d, [corpus], tmp_path / "gen", dataclasses.replace(cfg, generate=True),
                          sequences=tmp_path / "seqs.parquet", log=lambda m: None)
    assert generated["extractable"]["k"] == 4  # one row at a time: its generation is greedy decoding
    monkeypatch.setattr(tf.RwkvForCausalLM, "_is_stateful", False)  # a model mixing rows that says nothing
    with pytest.raises(ModelError, match="generation disagrees with the teacher-forced pass on [1-4] of 4"):
        run_audit(d, [corpus], tmp_path / "gen2", dataclasses.replace(cfg, generate=True),
                  sequences=tmp_path / "seqs.parquet", log=lambda m: None)
    assert not (tmp_path / "gen2" / "per_sequence.parquet").exists()


def test_a_peft_adapter_directory_is_refused_naming_the_fix(tmp_path):
    """A LoRA fine-tune saved by peft holds adapter_config.json and adapter weights, no config.json:
    it was 'no config.json: not a Hugging Face model directory', which does not say what to do."""
    pytest.importorskip("torch")
    from audit.lm import ModelError, load_causal_lm

    d = tmp_path / "lora"
    d.mkdir()
    (d / "adapter_config.json").write_text('{"base_model_name_or_path": "org/base", "peft_type": "LORA"}')
    (d / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="adapter.*org/base.*merge_and_unload"):
        load_causal_lm(d)


def test_greedy_continuations_reads_the_teacher_forced_columns_after_a_bos(tmp_path):
    """With a BOS before each window (n_prefix 1) the teacher-forced pass has one more column: the check of
    greedy_continuations must read the columns predicting the continuation (P + n_prefix - 1 on). Sequences whose
    continuation is the model's own greedy one are reproduced in full by both; a check one column off says they
    disagree (a review found no test would notice: random models match almost nothing)."""
    pytest.importorskip("torch")
    import transformers as tf

    from audit.lm import load_causal_lm

    from .conftest import save_random_lm

    cfg = tf.LlamaConfig(vocab_size=48, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=128, num_key_value_heads=2, bos_token_id=1,
                         eos_token_id=2)
    lm = load_causal_lm(save_random_lm(tmp_path / "llama", cfg, bos="t1"), bos="auto")
    assert lm.n_prefix == 1
    prompts = np.random.default_rng(1).integers(3, 48, size=(6, 8))
    ids = np.concatenate([prompts, lm.generate_greedy(prompts, 8)], axis=1)
    for given in (lm.score(ids).greedy_match, None):
        np.testing.assert_array_equal(lm.greedy_continuations(ids, 8, greedy_match=given), ids[:, 8:])


@pytest.mark.parametrize("saved", ["sharded", "bin"])
def test_a_weights_file_cut_short_is_named(tiny_random_lm, tmp_path, saved):
    """An interrupted download: one shard of a sharded float16 model.safetensors (a Llama's), or the only
    pytorch_model.bin (GPT-2's), cut short. The audit said '<dir>: not a causal language model transformers can
    load: [Errno 22] Invalid argument' for the .bin, and safetensors' header error for the shard, naming no file:
    which of the shards to fetch again? Now the file is named, cut short."""
    torch = pytest.importorskip("torch")
    import shutil

    import transformers as tf

    from audit.lm import ModelError, load_causal_lm

    d = shutil.copytree(tiny_random_lm("llama"), tmp_path / saved)
    model = tf.AutoModelForCausalLM.from_pretrained(d)
    (d / "model.safetensors").unlink()
    if saved == "sharded":
        model.to(torch.float16).save_pretrained(d, max_shard_size="20KB")
        cut = sorted(d.glob("model-*.safetensors"))[1]
    else:
        cut = d / "pytorch_model.bin"
        torch.save(model.state_dict(), cut)
    load_causal_lm(d)  # whole, it loads
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    with pytest.raises(ModelError, match=f"{d}: .*{cut}: cut short or damaged"):
        load_causal_lm(d)


@pytest.mark.parametrize("arch", ["pythia", "qwen2", "olmo"])
def test_half_precision_checkpoints_saved_as_the_hub_has_them_load_in_float32(tmp_path, arch):
    """Checkpoints as the hub holds them: Pythia's GPT-NeoX (rotary_pct 0.25, parallel residual, BOS = EOS = 0, an
    untied head) in float16, sharded safetensors; a Qwen2 with tied embeddings in bfloat16, sharded; an OLMo in float16
    as pytorch_model.bin alone. Each loads in float32 with every weight its saved value, exactly (none random: the
    checks of missing keys pass), and scores finite, whatever dtype config.json records."""
    torch = pytest.importorskip("torch")
    import transformers as tf
    from safetensors.torch import load_file

    from audit.lm import load_causal_lm

    from .conftest import word_tokenizer

    common = dict(vocab_size=48, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    cfg, dtype = {
        "pythia": (lambda: tf.GPTNeoXConfig(**common, rotary_pct=0.25, use_parallel_residual=True, bos_token_id=0,
                                            eos_token_id=0, tie_word_embeddings=False), torch.float16),
        "qwen2": (lambda: tf.Qwen2Config(**common, num_key_value_heads=2, tie_word_embeddings=True), torch.bfloat16),
        "olmo": (lambda: tf.OlmoConfig(**common, pad_token_id=1, tie_word_embeddings=False), torch.float16),
    }[arch]
    torch.manual_seed(0)
    d = tmp_path / arch
    model = tf.AutoModelForCausalLM.from_config(cfg()).to(dtype)
    if arch == "olmo":
        model.save_pretrained(d)
        (d / "model.safetensors").unlink()
        torch.save(model.state_dict(), d / "pytorch_model.bin")
        saved = torch.load(d / "pytorch_model.bin", weights_only=True)
    else:
        model.save_pretrained(d, max_shard_size="20KB")
        assert (d / "model.safetensors.index.json").exists()
        saved = {k: v for f in d.glob("model-*.safetensors") for k, v in load_file(f).items()}
    word_tokenizer(48).save_pretrained(d)
    lm = load_causal_lm(d, bos="auto")
    weights = lm.model.state_dict()
    renamed = {"embed_out.weight": "lm_head.weight"}  # transformers 5 renames GPT-NeoX's head as it loads it
    assert {p.dtype for p in lm.model.parameters()} == {torch.float32}
    assert saved and all(torch.equal(weights[renamed.get(k, k)], v.float()) for k, v in saved.items()
                         if v.is_floating_point())
    stats = lm.score(np.random.default_rng(0).integers(0, 48, size=(2, 16)))
    assert all(np.isfinite(getattr(stats, f)).all() for f in ("logprob", "mu", "sigma"))


def test_a_bos_outside_the_models_embeddings_is_refused_at_load(tmp_path):
    """A tokenizer that prepends a BOS its model has no embedding for (a special token added to the tokenizer,
    the embeddings not resized): with ``--bos auto`` a ModelError naming the id at load, before any sampling.
    Before: the BOS was fed unchecked and the first forward pass raised torch's IndexError (a traceback, exit 1)."""
    pytest.importorskip("torch")
    import torch
    import transformers as tf

    from audit.lm import ModelError, load_causal_lm

    from .conftest import word_tokenizer

    cfg = tf.LlamaConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=128, num_key_value_heads=2)
    torch.manual_seed(0)
    tf.AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path / "m")
    word_tokenizer(48, bos="t47").save_pretrained(tmp_path / "m")
    with pytest.raises(ModelError, match="token id 47 .*outside the model's 40 embeddings"):
        load_causal_lm(tmp_path / "m", bos="auto")
    assert load_causal_lm(tmp_path / "m", bos="never").n_prefix == 0


@pytest.mark.parametrize("arch", ["recurrent_gemma", "mamba"])
def test_a_model_keeping_its_recurrent_state_in_its_modules_is_scored_one_row_at_a_time(tmp_path, arch):
    """RecurrentGemma keeps its recurrent state on its modules (``rg_lru.recurrent_states``), not in a cache per
    call: the CPU slices of a batch, run side by side on one model, overwrote each other's state. Before: a batch
    of 3 rows at 2 torch threads (slices of 2 and 1 rows) raised torch's RuntimeError (a traceback, exit 1). And
    Mamba's scan (transformers' PyTorch path) rounds by the rows it holds: scores changed with --batch-size (3e-8 in
    a loss), not the same bytes. Models that say they are stateful (``_is_stateful``) now run one row at a time,
    one after the other: the same bytes at any batch size and thread count."""
    torch = pytest.importorskip("torch")
    import transformers as tf

    from audit.lm import load_causal_lm

    from .conftest import save_random_lm

    cfg = tf.RecurrentGemmaConfig(vocab_size=48, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                  intermediate_size=64, lru_width=32, attention_window_size=16) \
        if arch == "recurrent_gemma" else tf.MambaConfig(vocab_size=48, hidden_size=32, num_hidden_layers=2,
                                                         state_size=8, expand=2, conv_kernel=4)
    lm = load_causal_lm(save_random_lm(tmp_path / arch, cfg))
    ids = np.random.default_rng(0).integers(0, 48, size=(5, 20))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        batched, gen = lm.score(ids, 5), lm.generate_greedy(ids[:, :8], 6, 5)
        torch.set_num_threads(1)
        one = [lm.score(ids[i:i + 1], 1) for i in range(5)]
        gen_one = np.concatenate([lm.generate_greedy(ids[i:i + 1, :8], 6, 1) for i in range(5)])
        one_thread = lm.score(ids, 5)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(batched.logprob, np.concatenate([s.logprob for s in one]))
    np.testing.assert_array_equal(one_thread.logprob, batched.logprob)
    np.testing.assert_array_equal(gen, gen_one)


def test_a_tokenizer_that_cannot_encode_a_text_is_a_model_error(tmp_path):
    """The tokenizers library raises a plain Exception for a word a WordLevel vocabulary without an unknown token
    lacks: while finding the BOS (``--bos auto`` encodes 'a') and while tokenizing the corpus. Before: that
    Exception escaped (a traceback, exit 1); now a ModelError naming the model directory."""
    pytest.importorskip("torch")
    import torch
    import transformers as tf
    from tokenizers import Tokenizer, models, pre_tokenizers

    from audit.lm import ModelError, load_causal_lm

    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(48)}))  # no unk_token
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    cfg = tf.LlamaConfig(vocab_size=48, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=128, num_key_value_heads=2)
    torch.manual_seed(0)
    tf.AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path / "m")
    tf.PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(tmp_path / "m")
    with pytest.raises(ModelError, match="m: .*tokenizer cannot encode"):
        load_causal_lm(tmp_path / "m", bos="auto")
    lm = load_causal_lm(tmp_path / "m", bos="never")
    assert lm.encode(["t1 t2"]) == [[1, 2]]
    with pytest.raises(ModelError, match="m: .*tokenizer cannot encode"):
        lm.encode(["t1 word"])
