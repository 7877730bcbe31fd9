"""Tests of dedup.synthetic: planted duplicates, exact ground truth, shards."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dedup import normalize, synthetic


@pytest.fixture(scope="module")
def corpus() -> pa.Table:
    return synthetic.generate_corpus(1000, mean_bytes=800, seed=7)


def _rows(table: pa.Table, kind: str) -> np.ndarray:
    return np.flatnonzero(np.asarray(table.column("kind").to_pylist()) == kind)


def test_determinism():
    a = synthetic.generate_corpus(300, seed=3)
    b = synthetic.generate_corpus(300, seed=3)
    c = synthetic.generate_corpus(300, seed=4)
    assert a.equals(b)
    assert not a.column("text").equals(c.column("text"))
    assert not a.column("cluster").equals(c.column("cluster"))


def test_schema_counts_ids(corpus):
    assert corpus.schema.equals(synthetic.SCHEMA)
    assert corpus.num_rows == 1000
    kinds = corpus.column("kind").to_pylist()
    assert kinds.count("exact") == 50
    assert kinds.count("near") == 100
    assert kinds.count("original") == 850
    ids = corpus.column("id").to_pylist()
    assert ids[0] == "doc-0000000" and ids[-1] == "doc-0000999"
    assert len(set(ids)) == len(ids)
    sj = corpus.column("source_jaccard")
    assert sj.null_count == 850
    orig = _rows(corpus, "original")
    assert all(v is None for v in sj.take(pa.array(orig)).to_pylist())
    assert set(sj.take(pa.array(_rows(corpus, "exact"))).to_pylist()) == {1.0}


def test_zero_and_validation():
    assert synthetic.generate_corpus(0).num_rows == 0
    assert synthetic.generate_corpus(1).column("kind").to_pylist() == ["original"]
    with pytest.raises(ValueError):
        synthetic.generate_corpus(10, exact_frac=0.5, near_frac=0.5)
    with pytest.raises(ValueError):
        synthetic.generate_corpus(10, near_jaccard=(0.9, 0.5))


def test_text_looks_like_text(corpus):
    texts = corpus.column("text").to_pylist()
    lengths = np.array([len(t.encode("utf-8")) for t in texts])
    assert 0.85 * 800 < lengths.mean() < 1.15 * 800
    assert lengths.std() > 0.1 * 800  # lengths vary
    orig = [texts[i] for i in _rows(corpus, "original")]
    assert all(t[0].isupper() or not t[0].isascii() or t[0].isdigit() for t in orig[:50])
    assert all(t.rstrip()[-1] in ".?!" for t in orig)
    joined = "".join(orig)
    assert "," in joined and "—" in joined and "“" in joined
    assert sum(not t.isascii() for t in orig) > len(orig) // 4  # non-ASCII words occur
    # Some documents contain characters that NFKC changes.
    assert any(pc.utf8_normalize(pa.array([t]), "NFKC")[0].as_py() != t for t in orig)


def test_duplicates_follow_their_source(corpus):
    cluster = corpus.column("cluster").to_numpy()
    kinds = np.asarray(corpus.column("kind").to_pylist())
    rows = np.arange(corpus.num_rows)
    orig = kinds == "original"
    assert (cluster[orig] == rows[orig]).all()
    assert (cluster[~orig] < rows[~orig]).all()
    assert (kinds[cluster[~orig]] == "original").all()
    # Spread over the corpus, not clustered at the end.
    dup_rows = rows[~orig]
    assert (dup_rows < 250).sum() > 15 and (dup_rows >= 750).sum() > 15
    # Some source has several duplicates.
    assert np.bincount(cluster[~orig]).max() >= 2


def test_exact_duplicates_same_canonical_text(corpus):
    texts = corpus.column("text").to_pylist()
    cluster = corpus.column("cluster").to_numpy()
    identical = 0
    for r in _rows(corpus, "exact"):
        src = texts[cluster[r]]
        assert normalize.canonical_text(texts[r]) == normalize.canonical_text(src)
        assert normalize.exact_key(texts[r]) == normalize.exact_key(src)
        identical += texts[r] == src
    assert 0 < identical < 40  # some byte-identical, most differ in raw bytes


def test_near_duplicates_jaccard(corpus):
    texts = corpus.column("text").to_pylist()
    cluster = corpus.column("cluster").to_numpy()
    stored = corpus.column("source_jaccard").to_pylist()
    near = _rows(corpus, "near")
    js = []
    for r in near:
        j = synthetic.jaccard(texts[cluster[r]], texts[r])
        assert j == pytest.approx(stored[r], abs=1e-12)
        assert normalize.canonical_text(texts[r]) != normalize.canonical_text(texts[cluster[r]])
        js.append(j)
    js = np.array(js)
    assert (js >= 0.5).all() and (js < 1.0).all()
    assert (js < 0.6).sum() >= 5 and (js < 0.8).sum() >= 20 and (js > 0.8).sum() >= 20
    assert (js > 0.9).sum() >= 5


def test_near_jaccard_range_is_respected():
    t = synthetic.generate_corpus(
        400, exact_frac=0.0, near_frac=0.3, near_jaccard=(0.7, 0.8), seed=1
    )
    js = np.array([v for v in t.column("source_jaccard").to_pylist() if v is not None])
    assert len(js) == 120
    assert (js >= 0.7).all() and (js <= 0.8).all()


def test_cross_cluster_jaccard_is_zero(corpus):
    texts = corpus.column("text").to_pylist()
    orig = _rows(corpus, "original")
    rng = np.random.default_rng(0)
    shingle_sets = {}
    worst = 0.0
    for _ in range(200):
        i, j = rng.choice(orig, size=2, replace=False)
        for k in (i, j):
            if k not in shingle_sets:
                shingle_sets[k] = set(normalize.shingles(texts[k]))
        a, b = shingle_sets[i], shingle_sets[j]
        worst = max(worst, len(a & b) / len(a | b))
    assert worst < 0.05


def test_true_duplicates_matches_brute_force():
    t = synthetic.generate_corpus(300, mean_bytes=500, exact_frac=0.1, near_frac=0.2, seed=11)
    texts = t.column("text").to_pylist()
    sets = [set(normalize.shingles(x)) for x in texts]
    n = len(sets)
    jac = np.zeros((n, n))
    for j in range(n):
        for i in range(j):
            inter = len(sets[i] & sets[j])
            jac[i, j] = inter / (len(sets[i]) + len(sets[j]) - inter)
    cluster = t.column("cluster").to_numpy()
    # The documented assumption: different clusters have (essentially) zero Jaccard.
    diff = cluster[:, None] != cluster[None, :]
    assert jac[np.triu(diff, 1)].max() < 0.05
    for threshold in (0.5, 0.7, 0.8, 0.9, 1.0):
        brute = np.array([(jac[:j, j] >= threshold).any() for j in range(n)])
        got = synthetic.true_duplicates(t, threshold)
        assert got.dtype == bool and got.shape == (n,)
        np.testing.assert_array_equal(got, brute)
    got = synthetic.true_duplicates(t, 0.5)
    kinds = np.asarray(t.column("kind").to_pylist())
    assert got[kinds == "exact"].all() and not got[kinds == "original"].any()


def test_true_duplicates_char_shingles():
    t = synthetic.generate_corpus(120, mean_bytes=300, exact_frac=0.1, near_frac=0.2, seed=5)
    texts = t.column("text").to_pylist()
    cluster = t.column("cluster").to_numpy()
    got = synthetic.true_duplicates(t, 0.8, ngram=7, unit="char")
    for j in range(len(texts)):
        expect = any(
            cluster[i] == cluster[j] and synthetic.jaccard(texts[i], texts[j], 7, "char") >= 0.8
            for i in range(j)
        )
        assert got[j] == expect


def test_fast_canonical_path_matches_reference(corpus):
    rng = np.random.default_rng(0)
    texts = corpus.column("text").take(pa.array(rng.choice(corpus.num_rows, 60, replace=False)))
    texts = texts.to_pylist()
    # Random strings over scripts, marks, digits, punctuation, spaces, odd code points.
    alphabet = list("aZ 09,.-\t\n_'’“”—") + [
        "\u0301", "\u0915", "\u093f", "ß", "İ", "ﬁ", "１", "Ａ", "Ⅻ", "½", "\u00a0", "\u200b",
        "\U0001F600", "\U00020000", "\U000E0100", "中", "ς", "Σ", "\u0345", "ǅ",
    ]
    texts += ["", "  ", "a\U00020000b c", "\U0001F600x\U00020000 \U000E0100y", "ｔｏｋｙｏ １２３"]
    for _ in range(200):
        k = int(rng.integers(0, 40))
        texts.append("".join(alphabet[i] for i in rng.integers(0, len(alphabet), size=k)))
    fast = normalize.canonical_words_batch(texts)
    for text, words in zip(texts, fast):
        assert " ".join(words) == normalize.canonical_text(text)
        canon = " ".join(words)
        for ngram, unit in ((5, "word"), (2, "word"), (1, "word"), (4, "char")):
            # the rule written out independently of dedup.normalize (which shingles() also uses)
            units = words if unit == "word" else canon
            sep = " " if unit == "word" else ""
            ref = ({sep.join(units[i:i + ngram]) for i in range(len(units) - ngram + 1)} if len(units) >= ngram
                   else ({canon} if words else set()))
            assert set(normalize.word_shingles(words, ngram, unit)) == ref
            assert {s.decode("utf-8") for s in normalize.shingles(text, ngram, unit)} == ref


def test_vocabulary_tokens_are_single_words():
    vocab = synthetic._vocab()
    assert 20_000 <= len(vocab.words) <= 50_000
    assert len(set(vocab.words)) == len(vocab.words)
    rng = np.random.default_rng(0)
    exotic = [i for i, w in enumerate(vocab.words) if not w.isascii()]
    assert len(exotic) >= 20
    sample = sorted(set(exotic) | set(rng.choice(len(vocab.words), 300, replace=False).tolist()))
    for i in sample:
        for piece in vocab.pieces[2 * i : 2 * i + 2]:
            canon = normalize.canonical_text(piece)
            assert canon and " " not in canon
        assert normalize.canonical_text(vocab.pieces[2 * i]) == normalize.canonical_text(
            vocab.pieces[2 * i + 1]
        )


def _read_back(path, fmt) -> pa.Table:
    if fmt == "parquet":
        return pq.read_table(path)
    if fmt == "jsonl":
        data = path.read_bytes()
    elif fmt == "jsonl.gz":
        data = gzip.decompress(path.read_bytes())
    else:
        import zstandard

        with zstandard.open(path, "rb") as f:
            data = f.read()
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    return pa.Table.from_pylist(rows, schema=synthetic.SCHEMA)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "jsonl.gz", "jsonl.zst"])
def test_write_shards_round_trip(tmp_path, fmt):
    t = synthetic.generate_corpus(250, mean_bytes=300, seed=2)
    out = tmp_path / "nested" / "shards"
    paths = synthetic.write_shards(t, out, 3, fmt=fmt)
    assert len(paths) == 3
    assert paths == sorted(paths) == sorted(out.iterdir())
    assert all(re.fullmatch(r"part-\d{5}\." + re.escape(fmt), p.name) for p in paths)
    parts = [_read_back(p, fmt) for p in paths]
    assert [p.num_rows for p in parts] == [83, 84, 83]
    back = pa.concat_tables(parts).combine_chunks()
    assert back.schema.equals(synthetic.SCHEMA)
    assert back.equals(t.combine_chunks())
    if fmt != "parquet":
        assert "doc-0000000" in _first_line(paths[0], fmt)


def _first_line(path, fmt) -> str:
    t = _read_back(path, fmt)
    return json.dumps(t.slice(0, 1).to_pylist()[0], ensure_ascii=False)


def test_write_shards_more_shards_than_rows(tmp_path):
    t = synthetic.generate_corpus(3, mean_bytes=100, seed=0)
    paths = synthetic.write_shards(t, tmp_path, 5)
    assert len(paths) == 5
    back = pa.concat_tables([pq.read_table(p) for p in paths])
    assert back.equals(t)
    with pytest.raises(ValueError):
        synthetic.write_shards(t, tmp_path, 0)
    with pytest.raises(ValueError):
        synthetic.write_shards(t, tmp_path, 1, fmt="csv")


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "jsonl.gz", "jsonl.zst"])
def test_write_shards_same_bytes_from_any_process(tmp_path, fmt):
    """The same table gives the same file bytes whichever process writes it (a gzip header
    once named the writer's temporary file, whose name holds the process id)."""
    import subprocess
    import sys

    script = ("import sys; from dedup import synthetic; "
              "synthetic.write_shards(synthetic.generate_corpus(40, mean_bytes=200, seed=3), sys.argv[1], 2, fmt=sys.argv[2])")
    for d in ("a", "b"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / d), fmt], check=True)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir()) and len(names) == 2
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
