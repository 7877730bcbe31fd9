"""Session fixtures for the audit tests: a tiny GPT-2 trained (by the package's own
deterministic trainer, :func:`audit.train.train_causal_lm`) on a corpus with planted canaries."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import pyarrow as pa
import pytest


class CanaryLM(NamedTuple):
    model_dir: Path
    corpus: pa.Table
    corpus_dir: Path


@pytest.fixture
def corpus_reads(monkeypatch) -> SimpleNamespace:
    """Counts of corpus reads, by shard name: ``opens`` (ShardReader made: a JSONL shard is parsed whole to open it)
    and ``passes`` (ShardReader.batches started: a read of its rows). An operation count, not a timing."""
    from dedup.shards import ShardReader

    counts = SimpleNamespace(opens=Counter(), passes=Counter())
    init, batches = ShardReader.__init__, ShardReader.batches

    def counted_init(self, shard, *args, **kwargs):
        counts.opens[shard.name] += 1
        init(self, shard, *args, **kwargs)

    def counted_batches(self, *args, **kwargs):
        counts.passes[self.shard.name] += 1
        return batches(self, *args, **kwargs)

    monkeypatch.setattr(ShardReader, "__init__", counted_init)
    monkeypatch.setattr(ShardReader, "batches", counted_batches)
    return counts


@pytest.fixture(scope="session")
def train_tiny_lm():
    """``train(texts, out_dir, **TrainConfig fields) -> model dir``: a corpus written to
    Parquet, then the package trainer with no held-out documents."""
    pytest.importorskip("torch")
    from audit.config import TrainConfig
    from audit.train import train_causal_lm
    from dedup.runs import discover
    from dedup.synthetic import write_shards

    def train(texts: list[str], out_dir: Path, **kw) -> Path:
        out_dir = Path(out_dir)
        write_shards(pa.table({"id": [f"t{i}" for i in range(len(texts))], "text": texts}), out_dir / "corpus", 1)
        train_causal_lm(discover([out_dir / "corpus"]), out_dir / "run", TrainConfig(holdout=0.0, **kw), log=lambda m: None)
        return out_dir / "run" / "model"

    return train


@pytest.fixture(scope="session")
def canary_lm(tmp_path_factory, train_tiny_lm) -> CanaryLM:
    """``generate_canary_corpus()`` (defaults, seed 0: 400 background documents and 4
    canaries at each of 1, 2, 4, ..., 64 copies; 908 rows), written as 4 Parquet shards, and
    a GPT-2 (2 layers, 128 wide, 64-token instances, 3 epochs, seed 0) trained on all of it.
    Deterministic; about 35 s on two CPU cores, once per session."""
    from audit.canaries import generate_canary_corpus
    from dedup.synthetic import write_shards

    root = tmp_path_factory.mktemp("canary_lm")
    corpus = generate_canary_corpus()
    corpus_dir = root / "corpus"
    write_shards(corpus, corpus_dir, 4, fmt="parquet")
    model_dir = train_tiny_lm(corpus.column("text").to_pylist(), root / "model", seed=0, checkpoint_every=10_000,
                              log_checkpoints=1)
    return CanaryLM(model_dir=Path(model_dir), corpus=corpus, corpus_dir=corpus_dir)


def word_tokenizer(vocab_size: int, bos: str | None = None):
    """A word-level tokenizer over the words ``t0 .. t{vocab_size-1}`` (id i = ``t{i}``,
    whitespace-split), as ``PreTrainedTokenizerFast``; ``bos`` names a token that the
    tokenizer prepends by default (as Llama's does), None for none (as GPT-2's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, vocab[bos])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", bos_token=bos)


def save_random_lm(d: Path, config, bos: str | None = None) -> Path:
    """A causal LM random-initialised (seed 0) from the transformers ``config``, saved in ``d``
    with :func:`word_tokenizer` over its vocabulary (``bos`` as there); returns ``d``."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    tf.AutoModelForCausalLM.from_config(config).save_pretrained(d)
    word_tokenizer(config.vocab_size, bos).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_random_lm(tmp_path_factory):
    """``make(arch, generation=None, eos=None, bos=None, name=None) -> model dir``: a tiny
    random-initialised causal LM (seed 0; vocabulary of 48 words ``t0..t47``) of one of the
    architectures ``gpt2, gpt_neox, llama, qwen2, olmo`` (or ``bert``, an encoder that
    AutoModelForCausalLM loads with bidirectional attention, and ``bert_decoder``, causal), built from a config in the test
    (no download), saved with :func:`word_tokenizer` and, if given, a
    ``generation_config.json`` holding ``generation`` (a dict)."""
    pytest.importorskip("torch")
    import torch
    import transformers as tf

    V = 48
    common = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=128)
    configs = {
        "gpt2": lambda: tf.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                      bos_token_id=None, eos_token_id=None),
        "gpt_neox": lambda: tf.GPTNeoXConfig(**common),
        "llama": lambda: tf.LlamaConfig(**common, num_key_value_heads=2),
        "qwen2": lambda: tf.Qwen2Config(**common, num_key_value_heads=2),
        "olmo": lambda: tf.OlmoConfig(**common),
        # AutoModelForCausalLM maps BERT to BertLMHeadModel, bidirectional unless is_decoder
        "bert": lambda: tf.BertConfig(**common),
        "bert_decoder": lambda: tf.BertConfig(**common, is_decoder=True),
    }
    root = tmp_path_factory.mktemp("tiny_random_lm")

    def make(arch: str, generation: dict | None = None, eos: int | None = None, bos: int | None = None,
             name: str | None = None) -> Path:
        cfg = configs[arch]()
        cfg.bos_token_id = bos
        cfg.eos_token_id = eos
        cfg.pad_token_id = None
        torch.manual_seed(0)
        model = tf.AutoModelForCausalLM.from_config(cfg)
        with torch.no_grad():  # a sharper distribution than the default init: fewer argmax near-ties
            model.get_output_embeddings().weight.mul_(4.0)
        d = root / (name or arch)
        model.save_pretrained(d)
        word_tokenizer(V, None if bos is None else f"t{bos}").save_pretrained(d)
        gen = d / "generation_config.json"
        if gen.exists():
            gen.unlink()
        if generation is not None:
            tf.GenerationConfig(**generation).save_pretrained(d)
        return d

    return make
