"""How often the audited sequence occurs (issue #12, section 2): ``occurrences`` = exact count
of the P+C token window in the tokenized corpus (every document, every offset)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def brute_count(window, docs):
    W = len(window)
    return sum(1 for d in docs for i in range(len(d) - W + 1) if d[i : i + W] == window)


def test_window_hashes_match_direct_hash():
    from audit.occurrences import window_hashes

    rng = np.random.default_rng(0)
    x = rng.integers(0, 50_000, size=500)
    h = window_hashes(x, 16)
    assert h.shape == (485,)
    for i in (0, 7, 484):
        assert h[i] == window_hashes(x[i : i + 16], 16)[0]
    assert np.unique(h).size == 485


def test_occurrences_count_shared_headers_and_repeats(tiny_random_lm, tmp_path):
    from audit.config import AuditConfig
    from audit.run import run_audit
    from dedup.synthetic import write_shards

    rng = np.random.default_rng(0)
    header = [f"t{i}" for i in rng.integers(1, 48, size=20)]
    texts = [" ".join(header + [f"t{i}" for i in rng.integers(1, 48, size=60)]) for _ in range(40)]
    rep = [f"t{i}" for i in rng.integers(1, 48, size=16)]
    texts += [" ".join(rep * 3 + ["t1"])] * 2  # a window repeated inside a document, in two copies
    write_shards(pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts}), tmp_path / "corpus", 2)
    cfg = AuditConfig(prompt_len=8, cont_len=8, n_sequences=len(texts), n_boot=0, offset="start")
    run_audit(tiny_random_lm("gpt2"), [tmp_path / "corpus"], tmp_path / "out", cfg, log=lambda m: None)
    t = pq.read_table(tmp_path / "out" / "per_sequence.parquet").to_pydict()
    docs = [[int(w[1:]) for w in x.split()] for x in texts]
    for p, c, occ, near, bucket in zip(t["prompt"], t["truth"], t["occurrences"], t["near_dup_docs"],
                                       t["duplicate_bucket"]):
        assert occ == brute_count(p + c, docs)
        assert near >= 1
        from audit.stats import duplicate_bucket

        assert bucket == duplicate_bucket(occ)
    header_rows = [o for o, n in zip(t["occurrences"], t["near_dup_docs"]) if o == 40]
    assert len(header_rows) == 40  # the header window occurs 40 times; its documents are not near twins
    assert min(n for o, n in zip(t["occurrences"], t["near_dup_docs"]) if o == 40) == 1
    assert sorted(set(o for o in t["occurrences"] if o != 40)) == [6]  # 3 times in each of 2 copies


def test_per_bucket_sampling_keeps_n_distinct_sequences_per_occurrence_bucket(tiny_random_lm, tmp_path):
    """Carlini et al. 2022's sampling: N distinct sequences per occurrence bucket."""
    from audit.config import AuditConfig
    from audit.run import run_audit
    from dedup.synthetic import write_shards

    rng = np.random.default_rng(0)
    texts = []
    for copies in (1, 1, 1, 1, 2, 2, 2, 8, 8, 8):  # buckets 1 (4 distinct), 2-3 (3), 8-15 (3)
        text = " ".join(f"t{i}" for i in rng.integers(1, 48, size=20))
        texts += [text] * copies
    write_shards(pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts}), tmp_path / "corpus", 1)
    cfg = AuditConfig(prompt_len=8, cont_len=8, n_sequences=len(texts), n_boot=0, per_bucket=2)
    summary = run_audit(tiny_random_lm("gpt2"), [tmp_path / "corpus"], tmp_path / "out", cfg, log=lambda m: None)
    t = pq.read_table(tmp_path / "out" / "per_sequence.parquet").to_pydict()
    keys = [tuple(p + c) for p, c in zip(t["prompt"], t["truth"])]
    assert len(set(keys)) == len(keys) == 6
    assert sorted(t["duplicate_bucket"]) == ["1", "1", "2-3", "2-3", "8-15", "8-15"]
    assert summary["sequences"]["per_bucket"] == 2


def _random_case(rng):
    V, W = int(rng.integers(2, 5)), int(rng.integers(1, 6))
    docs = [rng.integers(0, V, size=int(rng.integers(0, 40))).tolist() for _ in range(int(rng.integers(1, 25)))]
    wins = [d[o : o + W] for d in docs if len(d) >= W for o in [int(rng.integers(0, len(d) - W + 1))]]
    wins += [rng.integers(0, V, size=W).tolist() for _ in range(3)]  # some absent from the corpus
    return np.array(wins, dtype=np.int64).reshape(-1, W), docs


def test_batched_count_equals_reference_and_brute_force():
    """The batched count (documents concatenated, straddling windows masked) is the plain
    definition, whatever the batch size (1 token: one document per batch)."""
    from audit.occurrences import count_occurrences, count_occurrences_reference

    rng = np.random.default_rng(0)
    for _ in range(40):
        wins, docs = _random_case(rng)
        truth = np.array([brute_count(w.tolist(), docs) for w in wins])
        assert np.array_equal(count_occurrences_reference(wins, iter(docs)), truth)
        for batch_tokens in (1, 9, 64, 1 << 20):
            assert np.array_equal(count_occurrences(wins, iter(docs), batch_tokens=batch_tokens), truth)
    # a window present only across a document boundary of the concatenation does not occur
    docs = [[5, 1, 2], [3, 4, 6], [1, 2, 3, 4]]
    assert count_occurrences(np.array([[1, 2, 3, 4], [2, 3, 4, 6]]), iter(docs)).tolist() == [1, 0]
    assert count_occurrences(np.array([[2, 3]]), iter(docs)).tolist() == [1]


def test_batched_count_survives_hash_collisions(monkeypatch):
    """A 4-valued hash (every window collides): hits are verified token by token, so counts stay
    exact, for distinct sampled windows sharing a hash too."""
    import audit.occurrences as occ

    real = occ.window_hashes
    monkeypatch.setattr(occ, "window_hashes", lambda tokens, W: real(tokens, W) % np.uint64(4))
    monkeypatch.setattr(occ, "VERIFY_CHUNK", 5)
    rng = np.random.default_rng(1)
    for _ in range(20):
        wins, docs = _random_case(rng)
        truth = np.array([brute_count(w.tolist(), docs) for w in wins])
        assert np.array_equal(occ.count_occurrences(wins, iter(docs), batch_tokens=16), truth)
