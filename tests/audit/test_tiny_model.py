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
