"""Membership by content (issue #12, section 1): a sequence is a member iff its document or any
exact or near duplicate of it (dedup's definitions) was trained on; the trainer holds out whole
duplicate clusters."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def _words(rng, n=40):
    return " ".join(f"t{i}" for i in rng.integers(1, 48, size=n))


def test_member_by_content(tiny_random_lm, tmp_path):
    from audit.config import AuditConfig
    from audit.run import run_audit
    from dedup.synthetic import write_shards

    rng = np.random.default_rng(0)
    a, b, c = _words(rng), _words(rng), _words(rng)
    near = a.rsplit(" ", 1)[0] + " t47"  # last word changed: 35 of 37 5-word shingles shared
    texts = {"a": a, "a_copy": a, "a_case": a.upper(), "a_near": near, "b": b, "c": c}
    write_shards(pa.table({"id": list(texts), "text": list(texts.values())}), tmp_path / "corpus", 1)
    (tmp_path / "members.txt").write_text("a\nc\n")
    model = tiny_random_lm("gpt2")
    cfg = AuditConfig(prompt_len=8, cont_len=8, n_sequences=len(texts), n_boot=0)
    summary = run_audit(model, [tmp_path / "corpus"], tmp_path / "out", cfg, members=tmp_path / "members.txt",
                        log=lambda m: None)
    t = pq.read_table(tmp_path / "out" / "per_sequence.parquet").to_pydict()
    member = dict(zip(t["doc_id"], t["member"]))
    assert member == {"a": True, "a_copy": True, "a_case": True, "a_near": True, "b": False, "c": True}
    labels = json.loads((tmp_path / "out" / "summary.json").read_text())["membership_labels"]
    assert labels["members"] == 5 and labels["non_members"] == 1
    assert labels["members_by_id"] == 2 and labels["members_by_duplicate"] == 3
    assert "near duplicate" in labels["rule"]
    assert summary["membership_labels"] == labels


def test_heldout_is_chosen_by_whole_duplicate_clusters():
    from audit.train import choose_heldout
    from dedup.config import DedupConfig

    rng = np.random.default_rng(1)
    bases = [_words(rng) for _ in range(10)]
    # every text has a twin that differs in raw bytes: upper case, or a near duplicate
    texts = [t for i, b in enumerate(bases) for t in (b, b.upper() if i % 2 else b.rsplit(" ", 1)[0] + " t47")]
    cluster = np.repeat(np.arange(10), 2)
    for seed in range(5):
        held = choose_heldout(texts, 0.3, seed, DedupConfig())
        assert held.sum() >= 5
        for k in range(10):
            assert len(set(held[cluster == k].tolist())) == 1, f"seed {seed}: cluster {k} split"
