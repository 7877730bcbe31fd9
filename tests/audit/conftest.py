"""Fixtures for the audit tests: a tiny GPT-2 trained here, offline, on a canary corpus.

The tests are plain directories run with ``--import-mode=importlib``, so the trainer in
``tiny_model.py`` (next to this file) is loaded by path with importlib rather than imported
by name, and exposed through fixtures.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pytest

_MODULE_NAME = "_memdedup_tests_audit_tiny_model"


def _load_tiny_model():
    mod = sys.modules.get(_MODULE_NAME)
    if mod is None:
        spec = importlib.util.spec_from_file_location(_MODULE_NAME, Path(__file__).with_name("tiny_model.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[_MODULE_NAME] = mod
        spec.loader.exec_module(mod)
    return mod


tiny_model = _load_tiny_model()


class CanaryLM(NamedTuple):
    """A tiny LM trained on a canary corpus (see :func:`canary_lm`)."""

    model_dir: Path  #: the trained model and tokenizer (load with audit.lm.load_causal_lm)
    corpus: pa.Table  #: dedup.synthetic.generate_canary_corpus() with default arguments
    corpus_dir: Path  #: the corpus as 4 Parquet shards (dedup.synthetic.write_shards)


@pytest.fixture(scope="session")
def train_tiny_lm():
    """The trainer function ``train_tiny_lm(texts, out_dir, ...) -> Path`` of tiny_model.py."""
    for mod in ("torch", "transformers", "tokenizers"):
        pytest.importorskip(mod)
    return tiny_model.train_tiny_lm


@pytest.fixture(scope="session")
def canary_lm(tmp_path_factory, train_tiny_lm) -> CanaryLM:
    """``generate_canary_corpus()`` (defaults, seed 0: 400 background documents and 4
    canaries at each of 1, 2, 4, ..., 64 copies; 908 rows), written as 4 Parquet shards, and
    a GPT-2 (2 layers, 128 wide, 64-token windows, 3 epochs, seed 0) trained on all its
    rows in order. Deterministic; about 35 s on two CPU cores, once per session."""
    from dedup.synthetic import generate_canary_corpus, write_shards

    root = tmp_path_factory.mktemp("canary_lm")
    corpus = generate_canary_corpus()
    corpus_dir = root / "corpus"
    write_shards(corpus, corpus_dir, 4, fmt="parquet")
    model_dir = train_tiny_lm(corpus.column("text").to_pylist(), root / "model", seed=0)
    return CanaryLM(model_dir=Path(model_dir), corpus=corpus, corpus_dir=corpus_dir)
