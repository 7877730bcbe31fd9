"""Session fixtures for the audit tests: a tiny GPT-2 trained (by the package's own
deterministic trainer, :func:`audit.train.train_causal_lm`) on a corpus with planted canaries."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pytest


class CanaryLM(NamedTuple):
    model_dir: Path
    corpus: pa.Table
    corpus_dir: Path


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
