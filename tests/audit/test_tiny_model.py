"""The tiny-LM test fixture: trains offline, memorises heavily repeated canaries, not
singletons, and is deterministic for a seed."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from audit.lm import load_causal_lm  # noqa: E402

PROMPT, CONT = 32, 32


def _canary_sequences(lm, corpus, level: int) -> np.ndarray:
    """First PROMPT + CONT token ids (n, 64) of each canary planted ``level`` times."""
    canary = corpus.column("canary").to_pylist()
    reps = corpus.column("repeats").to_pylist()
    texts = corpus.column("text").to_pylist()
    first: dict[int, str] = {}
    for c, r, t in zip(canary, reps, texts):
        if c >= 0 and r == level:
            first.setdefault(c, t)
    assert len(first) == 4
    ids = lm.encode([first[c] for c in sorted(first)])
    assert all(len(x) >= PROMPT + CONT for x in ids)
    return np.array([x[: PROMPT + CONT] for x in ids], dtype=np.int64)


def _extracted(lm, seqs: np.ndarray) -> np.ndarray:
    gen = lm.generate_greedy(seqs[:, :PROMPT], CONT)
    assert gen.shape == (len(seqs), CONT)
    return (gen == seqs[:, PROMPT:]).all(axis=1)


def test_canary_lm_fixture_layout(canary_lm):
    import pyarrow.parquet as pq

    shards = sorted(canary_lm.corpus_dir.glob("part-*.parquet"))
    assert len(shards) == 4
    assert pq.ParquetDataset(shards).read().equals(canary_lm.corpus)
    assert (canary_lm.model_dir / "model.safetensors").exists()
    assert (canary_lm.model_dir / "tokenizer.json").exists()


def test_greedy_extraction_separates_64x_from_1x_canaries(canary_lm):
    lm = load_causal_lm(canary_lm.model_dir, device="cpu")
    tok = lm.tokenizer
    assert tok.eos_token_id == tok.bos_token_id == tok.pad_token_id == lm.model.config.eos_token_id
    assert lm.model.config.vocab_size == len(tok) <= 1024
    hi = _extracted(lm, _canary_sequences(lm, canary_lm.corpus, 64))
    lo = _extracted(lm, _canary_sequences(lm, canary_lm.corpus, 1))
    assert hi.mean() >= 0.75, hi
    assert lo.mean() <= 0.25, lo


def test_one_forward_pass_agrees_with_greedy_generation(canary_lm):
    """Greedy reproduces the continuation iff the teacher-forced arg-max matches throughout."""
    lm = load_causal_lm(canary_lm.model_dir, device="cpu")
    seqs = np.concatenate([_canary_sequences(lm, canary_lm.corpus, r) for r in (1, 8, 16, 64)])
    stats = lm.score(seqs)
    tf = stats.greedy_match[:, PROMPT - 1 :].all(axis=1)
    np.testing.assert_array_equal(tf, _extracted(lm, seqs))


def test_training_is_deterministic_for_a_seed(tmp_path, train_tiny_lm):
    from safetensors.numpy import load_file

    from dedup.synthetic import generate_canary_corpus

    texts = generate_canary_corpus(n_background=24, repeats=(2,), canaries_per_repeat=2, seed=3)
    texts = texts.column("text").to_pylist()
    kw = dict(vocab_size=300, n_layer=1, n_embd=32, n_head=2, seq_len=32, epochs=1, batch_size=8, seed=7)
    a = train_tiny_lm(texts, tmp_path / "a", **kw)
    b = train_tiny_lm(texts, tmp_path / "b", **kw)
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and wa
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    c = train_tiny_lm(texts, tmp_path / "c", **{**kw, "seed": 8})
    wc = load_file(str(c / "model.safetensors"))
    assert any(not np.array_equal(wa[k], wc[k]) for k in wa)


def test_generate_canary_corpus_layout():
    from collections import Counter

    from dedup.synthetic import CANARY_SCHEMA, generate_canary_corpus

    t = generate_canary_corpus()
    assert t.schema == CANARY_SCHEMA
    assert t.equals(generate_canary_corpus()) and not t.equals(generate_canary_corpus(seed=1))
    assert t.num_rows == 400 + 4 * (1 + 2 + 4 + 8 + 16 + 32 + 64)
    ids, text, kind, canary, reps = (t.column(c).to_pylist() for c in t.column_names)
    assert len(set(ids)) == t.num_rows
    copies = Counter(text)
    assert all(copies[x] == r for x, r in zip(text, reps))
    assert Counter(k for k in kind) == {"background": 400, "canary": 508}
    assert all((k == "canary") == (c >= 0) for k, c in zip(kind, canary))
    # Canary c has repeat level repeats[c // 4] and 64 words; rows of one canary agree.
    by_canary = {c: (x, r) for x, c, r in zip(text, canary, reps) if c >= 0}
    assert sorted(by_canary) == list(range(28))
    for c, (x, r) in by_canary.items():
        assert r == (1, 2, 4, 8, 16, 32, 64)[c // 4] and len(x.split(" ")) == 64
    # Copies are scattered, not adjacent blocks.
    rows64 = [i for i, c in enumerate(canary) if c == 27]
    assert max(rows64) - min(rows64) > t.num_rows // 2
