"""The canary corpus of memorisation audits (audit.canaries)."""

from collections import Counter

from audit.canaries import CANARY_SCHEMA, generate_canary_corpus


def test_generate_canary_corpus_layout():
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
