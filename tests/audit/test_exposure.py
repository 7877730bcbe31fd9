"""audit.exposure: Carlini et al. 2019 exposure (issue #13, section 5). Synthetic scores only,
plus one check of the sampled estimate against the exact one on an enumerable space, and canaries
filling a tiny real model's context."""

from __future__ import annotations

import json
import math
import numpy as np
import pytest

from audit.exposure import (exposure_by_copies, exposure_exact, exposure_from_rank, exposure_sampled,
                            random_space_log2)
from audit.lm import CausalLM


def test_exposure_from_rank_and_exact():
    assert exposure_from_rank(1, 10.0) == 10.0 and exposure_from_rank(512, 10.0) == 1.0
    space = np.arange(1024, dtype=float)  # scores 0..1023; lower = more likely
    assert exposure_exact(-1.0, space) == pytest.approx(math.log2(1025))  # best of 1025
    assert exposure_exact(0.0, space) == pytest.approx(10.0)  # the canary is candidate 0: rank 1
    assert exposure_exact(511.0, space) == pytest.approx(1.0)  # rank 512 of 1024


def test_sampled_estimate_matches_exact_on_an_enumerable_space():
    rng = np.random.default_rng(0)
    space = rng.normal(100.0, 5.0, 2**16)
    sample = rng.choice(space, 4000, replace=False)
    for q in (0.5, 0.1, 0.01):  # canaries inside the sampled range: empirical
        c = float(np.quantile(space, q))
        est = exposure_sampled(c, sample, math.log2(space.size))
        assert est["method"] == "empirical"
        # empirical tail ~ Binomial(n, q): log2 error within ~4 binomial sd
        tol = 4 * math.sqrt((1 - q) / (q * sample.size)) / math.log(2)
        assert est["exposure"] == pytest.approx(exposure_exact(c, space), abs=tol + 0.02)
    deep = float(np.sort(space)[2])  # rank 3 of 65536: far below the sample, extrapolated
    est = exposure_sampled(deep, sample, math.log2(space.size))
    assert est["method"] == "skew-normal fit" and abs(est["exposure"] - exposure_exact(deep, space)) < 2.0


def test_sampled_exposure_follows_the_reference_code():
    """tensorflow_privacy's secret_sharer/exposures.py: compute_exposure_interpolation (rank = 1 + the
    sampled references more likely, exposure = log2 n - log2 rank) and compute_exposure_extrapolation
    (skewnorm.fit of the references, exposure = -log2 skewnorm.cdf), transcribed."""
    from scipy.stats import skewnorm

    for a in (4.0, 0.0, -4.0):  # right-skewed, symmetric, left-skewed log-perplexities
        sample = skewnorm.rvs(a, loc=100.0, scale=5.0, size=300, random_state=np.random.default_rng(7))
        for c in np.quantile(sample, [0.5, 0.1]).tolist():
            m = int(np.sum(sample < c))
            est = exposure_sampled(c, sample, 640.0)
            assert est["method"] == "empirical" and est["exposure"] == pytest.approx(math.log2(300) - math.log2(m + 1))
        fit = skewnorm.fit(sample)
        for c in (85.0, 70.0):
            est = exposure_sampled(c, sample, 5000.0)
            assert est["method"] == "skew-normal fit"
            assert est["exposure"] == pytest.approx(float(-np.log2(skewnorm.cdf(c, *fit))), rel=1e-9)


def test_sampled_exposure_monotone_and_capped():
    rng = np.random.default_rng(1)
    sample = rng.normal(0.0, 1.0, 2000)
    es = [exposure_sampled(c, sample, 50.0)["exposure"] for c in (1.0, 0.0, -2.0, -4.0, -8.0, -30.0)]
    assert all(a < b for a, b in zip(es, es[1:-1])) and es[-1] == 50.0
    assert exposure_sampled(0.0, sample, 50.0)["exposure"] == pytest.approx(1.0, abs=0.1)  # median: ~1 bit
    assert 700 < exposure_sampled(-30.0, sample, 1e9)["exposure"] < 1e9  # logcdf: finite where cdf is ~1e-216
    assert [exposure_sampled(c, [2.0] * 50, 30.0)["exposure"] for c in (1.0, 2.0, 3.0)] == [30.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        exposure_sampled(0.0, [1.0], 5.0)


def test_random_space_and_by_copies():
    assert random_space_log2(64, 2**15) == 64 * 15
    rows = exposure_by_copies([1, 1, 4, 4, 16], [1.0, 3.0, 5.0, 7.0, 40.0])
    assert rows == [{"copies": 1, "canaries": 2, "mean_exposure": 2.0, "min_exposure": 1.0, "max_exposure": 3.0},
                    {"copies": 4, "canaries": 2, "mean_exposure": 6.0, "min_exposure": 5.0, "max_exposure": 7.0},
                    {"copies": 16, "canaries": 1, "mean_exposure": 40.0, "min_exposure": 40.0, "max_exposure": 40.0}]


class _FakeTokenizer:
    eos_token_id = 0


class _FakeLM:
    """Word-level 'model': every word has log-prob -10 nats except the memorised ones (-0.1); its context rule is
    CausalLM's, for a context of ``max_positions`` (None: unknown)."""

    n_prefix, max_positions = 0, None
    beyond_context = CausalLM.beyond_context

    def __init__(self, vocab, memorised):
        self.tokenizer = _FakeTokenizer()
        self.index = {w: i + 1 for i, w in enumerate(vocab)}
        self.memorised = {self.index[w] for w in memorised}

    def encode(self, texts):
        return [[self.index[w] for w in t.split(" ")] for t in texts]

    def score(self, ids, batch_size=32):
        from types import SimpleNamespace

        nxt = np.asarray(ids)[:, 1:]
        lp = np.where(np.isin(nxt, list(self.memorised)), -0.1, -10.0)
        lp = lp + 0.5 * np.random.default_rng(int(nxt.sum()) % 2**32).normal(size=lp.shape)  # noise per candidate
        return SimpleNamespace(logprob=lp)


def test_canary_exposure_ranks_a_memorised_canary_high():
    from audit.exposure import canary_exposure

    vocab = [f"w{i}" for i in range(1000)]
    rng = np.random.default_rng(3)
    canary = " ".join(vocab[i] for i in rng.integers(0, 1000, 8))
    other = " ".join(vocab[i] for i in rng.integers(0, 1000, 8))
    lm = _FakeLM(vocab, memorised=canary.split(" "))
    res = canary_exposure(lm, [canary, other], 8, n_samples=300, seed=0, vocabulary=vocab)
    assert res[0]["log2_space"] == pytest.approx(8 * math.log2(1000))
    assert res[0]["exposure"] > 20 and res[0]["method"] == "skew-normal fit"
    assert res[1]["exposure"] < 5 and res[1]["method"] == "empirical"


def test_canary_exposure_fits_the_models_context():
    """The demo's 64-word canaries exceed a 128-position model (IndexError in the workflow):
    the space becomes that of the longest word prefix that fits."""
    from audit.exposure import canary_exposure

    vocab = [f"w{i}" for i in range(1000)]
    canary = " ".join(vocab[i] for i in range(64))
    lm = _FakeLM(vocab, memorised=canary.split(" "))
    lm.max_positions = 21  # the end-of-text token + 21 words: 21 positions fed, the last word only predicted
    res = canary_exposure(lm, [canary], 64, n_samples=100, seed=0, vocabulary=vocab)
    assert res[0]["words"] == 21 and res[0]["log2_space"] == pytest.approx(21 * math.log2(1000))
    # a training length of 10 tokens holds the end-of-text token and 9 words (it was 10 words: the token not counted)
    assert canary_exposure(lm, [canary], 64, n_samples=100, seed=0, vocabulary=vocab, context=10)[0]["words"] == 9


def test_canaries_fill_the_context_of_a_real_model(tiny_random_lm):
    """A text of T tokens is scored after an end-of-text token, feeding T positions (the last token is only
    predicted): a GPT-2 of 128 learned positions scores 128 one-token words of a 200-word canary, through
    CausalLM.score (no IndexError). Before: 127, one word fewer than fits."""
    from audit.exposure import canary_exposure
    from audit.lm import load_causal_lm

    lm = load_causal_lm(tiny_random_lm("gpt2"))  # n_positions = 128, one token a word
    vocab = [f"t{i}" for i in range(3, 48)]
    canary = " ".join(vocab[i % len(vocab)] for i in range(200))
    res = canary_exposure(lm, [canary], 200, n_samples=20, seed=0, vocabulary=vocab)
    assert res[0]["words"] == 128 and res[0]["log2_space"] == pytest.approx(128 * math.log2(len(vocab)))


def test_canary_log_perplexity_under_a_bos_policy(tiny_random_lm):
    """With --bos auto (a Llama-style tokenizer that prepends BOS) the BOS is context only: the canary's
    log-perplexity is -log2 Pr of its tokens after BOS + the end-of-text token, recomputed here from the logits.
    Before: a broadcast ValueError (the mask had one column fewer than the scores)."""
    import torch
    from audit.exposure import canary_exposure
    from audit.lm import load_causal_lm

    d = tiny_random_lm("llama", bos=1, name="llama_bos_exposure")
    vocab = [f"t{i}" for i in range(3, 48)]
    canary = "t5 t9 t30 t7"
    for policy, prefix in (("never", []), ("auto", [1])):
        lm = load_causal_lm(d, bos=policy)
        assert lm.prefix == prefix
        res = canary_exposure(lm, [canary], 4, n_samples=30, seed=0, vocabulary=vocab)
        ids = torch.tensor([prefix + [lm.tokenizer.eos_token_id or 0, 5, 9, 30, 7]])
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(input_ids=ids).logits[0, :-1].double(), dim=-1)
        start = len(prefix) + 1  # the canary's first token, predicted from the end-of-text token
        want = -sum(float(logp[t - 1, ids[0, t]]) for t in range(start, ids.shape[1])) / math.log(2)
        assert res[0]["words"] == 4 and res[0]["log_perplexity"] == pytest.approx(want, rel=1e-5)


def test_canary_scored_as_memdedup_train_saw_it(tiny_random_lm):
    """``memdedup train`` cuts instances from a document's start, with no end-of-text token before it, and
    trains on ``seq_len`` tokens: scored after such a token (as a hub GPT-2 trained on joined documents saw its
    documents) and over positions never trained, the demo's raw model, extracting its 8x canaries verbatim,
    showed them ~8 bits of exposure (as little as 4x; found by the numbers probe). ``separator=False`` scores
    the canary from its start (its first token context only, unless a BOS precedes it) and ``context`` fits
    it to the training length; recomputed here from the logits."""
    import torch
    from audit.exposure import canary_exposure
    from audit.lm import load_causal_lm

    canary = "t5 t9 t30 t7 t40 t41"
    vocab = canary.split(" ")  # one token each, in both tokenizers
    for name, policy, prefix in (("gpt2", "auto", []), ("llama", "auto", [1])):
        d = tiny_random_lm(name, **({"bos": 1, "name": "llama_bos_exposure"} if name == "llama" else {}))
        lm = load_causal_lm(d, bos=policy)
        assert lm.prefix == prefix
        ids = lm.encode([canary])[0]
        assert len(ids) == 6
        res = canary_exposure(lm, [canary], 6, n_samples=30, seed=0, vocabulary=vocab, separator=False,
                              context=len(ids) - 1)
        assert res[0]["words"] == 5  # the sixth word's tokens pass the context
        x = torch.tensor([prefix + lm.encode(["t5 t9 t30 t7 t40"])[0]])
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(input_ids=x).logits[0, :-1].double(), dim=-1)
        start = max(len(prefix), 1)  # the first token predicted: after the BOS, else the canary's second
        want = -sum(float(logp[t - 1, x[0, t]]) for t in range(start, x.shape[1])) / math.log(2)
        assert res[0]["log_perplexity"] == pytest.approx(want, rel=1e-5)


def test_the_demo_scores_canaries_as_its_trainer_fed_them(tmp_path, monkeypatch):
    """`memdedup check` (pipelines.demo) scores a model of a `memdedup train` run from the canary's start and
    within the run's seq_len (separator=False, context=seq_len), leaving out the canaries the run held out (by
    id: all copies of a canary are held out together; found by the review: a held-out 64x canary, never
    trained, scored 0.1 bits beside its trained twins' ~100 and pulled the 64x mean down); any other model
    after an end-of-text token, every canary, as before. An older run's train_config.json (the config at its
    top level) gives its seq_len too. Before: every model after an end-of-text token over its whole context,
    held-out canaries included."""
    import audit.exposure
    import audit.lm
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pipelines import demo

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pq.write_table(pa.table({"id": ["c0", "c1", "c2", "c3", "f0"], "kind": ["canary"] * 4 + ["filler"],
                             "text": ["a b c", "d e f", "d e f", "g h i", "j k l"], "repeats": [1, 2, 2, 1, 1]}),
                   corpus / "part-0.parquet")
    calls = []
    monkeypatch.setattr(audit.lm, "load_causal_lm", lambda d: "lm")
    monkeypatch.setattr(audit.exposure, "canary_exposure", lambda lm, group, words, **k: calls.append(
        (sorted(group), k)) or [{"exposure": 1.0, "log2_space": 3.0, "words": words} for _ in group])
    run, old = tmp_path / "run", tmp_path / "old-run"
    for r, record in ((run, {"config": {"seq_len": 48}}), (old, {"seq_len": 32})):
        (r / "model").mkdir(parents=True)
        (r / "model" / "config.json").write_text("{}")
        pq.write_table(pa.table({"step": [1]}), r / "order.parquet")
        pq.write_table(pa.table({"document_id": ["c2", "f0"]}), r / "heldout.parquet")  # one copy of "d e f"
        (r / "train_config.json").write_text(json.dumps(record))
    other = tmp_path / "hub-model"
    other.mkdir()
    (other / "config.json").write_text("{}")
    got = demo._canary_exposure(corpus, run / "model")
    assert got["held_out_canaries"] == 1 and [r["copies"] for r in got["by_copies"]] == [1]
    assert demo._canary_exposure(corpus, old / "model")["held_out_canaries"] == 1
    assert [r["copies"] for r in demo._canary_exposure(corpus, other)["by_copies"]] == [1, 2]
    assert [(g, c["separator"], c["context"]) for g, c in calls] == [
        (["a b c", "g h i"], False, 48), (["a b c", "g h i"], False, 32), (["a b c", "d e f", "g h i"], True, None)]
