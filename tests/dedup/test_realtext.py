"""The real-text corpus and its exact Jaccard truth (dedup.realtext)."""

import numpy as np
import pytest

from dedup import normalize, realtext
from dedup.synthetic import generate_corpus, true_duplicates


@pytest.fixture(scope="module")
def licences():
    """Licence and METADATA files of this interpreter's site-packages (what `make test`
    installs), as documents of ~6 KB; skipped if there are too few."""
    table = realtext.build_corpus(6000, with_docstrings=False)
    if table.num_rows < 200:
        pytest.skip(f"only {table.num_rows} licence documents in {realtext.site_packages()}")
    return table


def brute_force_near_duplicates(texts, threshold, ngram=5):
    """The truth by comparing every pair with Python sets of shingle bytes (the oracle)."""
    sets = [set(normalize.shingles(t, ngram)) for t in texts]
    out = np.zeros(len(sets), dtype=bool)
    for j, b in enumerate(sets):
        for a in sets[:j]:
            inter = len(a & b)
            if a and b and inter / (len(a) + len(b) - inter) >= threshold:
                out[j] = True
                break
    return out


def test_brute_force_oracle():
    assert brute_force_near_duplicates(["a b c d e f g", "A b c d e f g!", "z"], 0.5).tolist() == [False, True, False]


@pytest.mark.parametrize("threshold", [0.5, 0.8])
def test_exact_truth_equals_all_pairs_by_brute_force(licences, threshold):
    """The prefix-filtered join finds exactly what comparing every pair with Python sets of
    shingle bytes finds, on real licence texts (hundreds of near duplicates)."""
    texts = licences.column("text").slice(0, 300)
    dup, best = realtext.exact_near_duplicates(texts, threshold)
    brute = brute_force_near_duplicates(texts.to_pylist(), threshold)
    assert brute.sum() >= 30  # the test has something to find
    np.testing.assert_array_equal(dup, brute)
    assert (best[dup] >= threshold).all() and (best[~dup] < threshold).all()


def test_exact_truth_equals_the_synthetic_ground_truth():
    """On a generated corpus the join agrees with dedup.synthetic's cluster-based truth
    (computed another way: only rows of one cluster are compared)."""
    table = generate_corpus(3000, mean_bytes=600, exact_frac=0.05, near_frac=0.15, seed=5)
    dup, _ = realtext.exact_near_duplicates(table.column("text"), 0.8)
    np.testing.assert_array_equal(dup, true_duplicates(table, 0.8))


def test_shingle_sets_are_the_reference_shingles(licences):
    texts = licences.column("text").slice(0, 50).to_pylist() + ["", "one two", "Ａ ｂ c d e f"]
    offsets, ids, _ = realtext.shingle_sets(texts)
    for d, t in enumerate(texts):
        assert offsets[d + 1] - offsets[d] == len(set(normalize.shingles(t)))
    for d in range(len(texts)):  # sorted, no repeats
        s = ids[offsets[d]:offsets[d + 1]]
        assert (np.diff(s) > 0).all()


def test_chunks_keep_the_words_in_order(licences):
    text = "\n\n".join(licences.column("text").slice(0, 20).to_pylist())
    chunks = realtext.chunk_text(text, 3000)
    assert len(chunks) > 1
    assert " ".join(normalize.canonical_text(c) for c in chunks) == normalize.canonical_text(text)


def test_corpus_is_deterministic_with_unique_ids(licences):
    again = realtext.build_corpus(6000, with_docstrings=False)
    assert again.equals(licences)
    ids = licences.column("id").to_pylist()
    assert len(set(ids)) == len(ids)


def test_no_roots_means_no_sources(tmp_path):
    """An explicit empty list of roots reads nothing (a shrink had made it read the defaults:
    every licence file and docstring of the interpreter); None means the defaults."""
    assert list(realtext.source_texts([])) == []
    assert realtext.build_corpus(6000, roots=[]).num_rows == 0


def test_a_docstring_with_a_lone_surrogate_escape_is_read(tmp_path):
    """A source file may spell a lone surrogate as an escape in its docstring (this test's own folder does); the
    corpus reads it as U+FFFD, as undecodable bytes are read, and an escaped pair as the character it encodes."""
    (tmp_path / "m.py").write_text('"""Lone \\ud800 here, a pair \\ud83d\\ude00 there, words after."""\n')
    table = realtext.build_corpus(100, roots=[("stdlib", tmp_path)])
    assert table.column("text").to_pylist() == ["Lone \ufffd here, a pair \U0001f600 there, words after."]
