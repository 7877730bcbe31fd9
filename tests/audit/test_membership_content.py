"""Membership by content (issue #12, section 1): a sequence is a member iff its document or any
exact or near duplicate of it (dedup's definitions) was trained on; the trainer holds out whole
duplicate clusters."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest


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


def test_members_that_match_no_sampled_document_are_noted(tiny_random_lm, tmp_path):
    """Ids of another form (0, 1, ... against 'doc-...') label every sequence a non-member: every
    membership number is then n/a, and the audit said nothing of why."""
    from audit.config import AuditConfig
    from audit.run import run_audit
    from dedup.synthetic import write_shards

    rng = np.random.default_rng(0)
    write_shards(pa.table({"id": [f"doc-{i}" for i in range(4)], "text": [_words(rng) for _ in range(4)]}),
                 tmp_path / "corpus", 1)
    (tmp_path / "members.txt").write_text("0\n1\n")
    said: list[str] = []
    cfg = AuditConfig(prompt_len=8, cont_len=8, n_sequences=4, n_boot=0)
    run_audit(tiny_random_lm("gpt2"), [tmp_path / "corpus"], tmp_path / "out", cfg, members=tmp_path / "members.txt",
              log=said.append)
    note = [m for m in said if "--members" in m]
    assert len(note) == 1 and "like '0'" in note[0] and "like 'doc-" in note[0], said


def test_a_member_id_on_two_documents_is_refused_naming_both_rows(tiny_random_lm, tmp_path):
    """Shards whose ids restart at 0 (a row index per file) name two documents by one id. With --members
    listing shard a's ids, every document of shard b was labelled a member too (members 8 of 8, exit 0).
    Now an InputError (exit 2) naming the file, the row and the other row, as memdedup train refuses such
    ids; an id on two copies of one text (a duplicated row) labels both rightly and is accepted."""
    from audit.config import AuditConfig
    from audit.run import run_audit
    from dedup.shards import InputError

    rng = np.random.default_rng(0)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    texts = {s: [_words(rng) for _ in range(4)] for s in "ab"}
    for s in "ab":
        pq.write_table(pa.table({"id": [0, 1, 2, 3], "text": texts[s]}), corpus / f"{s}.parquet")
    (tmp_path / "members.txt").write_text("0\n1\n2\n3\n")
    cfg = AuditConfig(prompt_len=8, cont_len=8, n_sequences=8, n_boot=0)
    with pytest.raises(InputError, match=r"b\.parquet: row 0: id '0' .*row 0 of a\.parquet"):
        run_audit(tiny_random_lm("gpt2"), [corpus], tmp_path / "out", cfg, members=tmp_path / "members.txt",
                  log=lambda m: None)
    assert not (tmp_path / "out" / "summary.json").exists()
    pq.write_table(pa.table({"id": [0, 1, 2, 3], "text": texts["a"]}), corpus / "b.parquet")  # the same rows again
    s = run_audit(tiny_random_lm("gpt2"), [corpus], tmp_path / "out", cfg, members=tmp_path / "members.txt",
                  log=lambda m: None)
    assert s["membership_labels"]["members"] == 8


def test_the_member_ids_met_in_the_corpus_are_checked_in_a_few_tens_of_bytes_each(tmp_path):
    """To refuse a --members id on two corpus rows of other texts, duplicate_counts kept a dict of member id ->
    (shard name, row, exact key) tuples for every member met in the corpus: ~300 bytes a member (10^7 members: ~3
    GB on top of the members set). Now arrays by the member's place in the sorted ids: 44 bytes a member (a
    structure size check: the peak with members less the peak without, not an RSS threshold). Failed before:
    ~300 bytes a member."""
    import tracemalloc

    from audit.duplicates import duplicate_counts
    from dedup.config import DedupConfig
    from dedup.runs import discover
    from dedup.synthetic import write_shards

    n = 30_000
    write_shards(pa.table({"id": [f"doc-{i:06d}" for i in range(n)], "text": [f"text number {i}" for i in range(n)]}),
                 tmp_path / "corpus", 2)
    shards, members = discover(tmp_path / "corpus"), {f"doc-{i:06d}" for i in range(n)}
    count = lambda given: duplicate_counts(["text number 7"], [(shards[0].name, 7)], shards,  # noqa: E731
                                           DedupConfig(batch_rows=1024), None, given)
    count(None)  # (what a first call allocates once)
    peaks = []
    for given in (None, members):
        tracemalloc.start()
        try:
            info = count(given)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert info.count.tolist() == [1] and info.member_duplicate.tolist() == [True]
    assert (peaks[1] - peaks[0]) / n < 100, f"{(peaks[1] - peaks[0]) / n:.0f} bytes a member"


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


def test_profile_instances_are_chosen_by_content(tiny_random_lm, tmp_path):
    """Issue #12 s1: the profile's eligible instances are chosen by duplicate cluster (canonical
    key + LSH bands), not raw-text equality. A run laid out by hand (as a user's own checkpoint
    suite, or an older run whose held-out set was chosen by raw text): held-out documents 30 and
    31 are a case twin and a punctuation twin of trained documents 0 and 1 (seen content: never a
    control or placebo instance); trained documents 2 and 3 are case twins of each other (raw
    texts differ, doc_copies = 1: neither is first trained at its own first exposure, so neither
    is treated)."""
    import shutil

    import pandas as pd

    from audit.checkpoints import run_profile
    from audit.config import ProfileConfig
    from dedup.synthetic import write_shards

    rng = np.random.default_rng(3)
    texts = [_words(rng) for _ in range(40)]
    texts[3] = texts[2].upper()
    texts[30] = texts[0].upper()
    texts[31] = texts[1].replace(" ", ", ", 5) + "."
    write_shards(pa.table({"id": [f"d{i}" for i in range(40)], "text": texts}), tmp_path / "corpus", 1)
    shard = sorted(p.name for p in (tmp_path / "corpus").iterdir())
    assert len(shard) == 1
    model = tiny_random_lm("gpt2")
    run = tmp_path / "run"
    for step in (1, 2, 3, 4):
        shutil.copytree(model, run / "checkpoints" / f"step-{step:07d}")
    n = 16
    trained = list(range(30))
    steps = [2 + i % 3 for i in trained]  # first exposures at steps 2, 3, 4: cohorts with a base period
    pd.DataFrame({"instance_id": trained, "document_id": [f"d{i}" for i in trained], "shard": shard[0],
                  "row": trained, "token_offset": 0, "n_tokens": n, "doc_copies": 1, "epoch": 0, "step": steps,
                  "first_step": steps}).to_parquet(run / "order.parquet")
    held = list(range(30, 40))
    pd.DataFrame({"instance_id": held, "document_id": [f"d{i}" for i in held], "shard": shard[0], "row": held,
                  "token_offset": 0, "n_tokens": n}).to_parquet(run / "heldout.parquet")
    s = run_profile(run, tmp_path / "prof", ProfileConfig(n_treated=100, n_control=100, n_boot=40, min_cohort_size=2),
                    corpus=[str(tmp_path / "corpus")], log=lambda m: None)
    inst = pq.read_table(tmp_path / "prof" / "instances.parquet").to_pandas()
    groups = dict(zip(inst["instance_id"], inst["group"]))
    assert 30 not in groups and 31 not in groups, groups
    assert 2 not in groups and 3 not in groups, groups
    assert {i for i, g in groups.items() if g != "treated"} == set(range(32, 40))
    # 0 and 1 stay eligible: their twins were never trained
    assert {i for i, g in groups.items() if g == "treated"} == set(range(30)) - {2, 3}
    el = s["instances"]["eligibility"]
    assert el["treated_dropped_duplicated"] == 2 and el["controls_dropped_trained_duplicate"] == 2
    assert "canonical exact key" in el["rule"]


@pytest.mark.parametrize("name, body", [("members.jsonl", '{"id": "a"}\n'), ("members.json", '["a", "c"]'),
                                        ("members.csv", "id,split\na,train\n"), ("members.jsonl.gz", None)])
def test_a_members_file_of_a_table_format_other_than_parquet_is_refused(tmp_path, name, body):
    """A members list as JSON Lines, JSON or CSV was read as text, one id per line: '{"id": "a"}' was an id,
    no document matched, and every sequence was labelled a non-member (exit 0, a note at most). Now an
    InputError naming the file and the formats read."""
    import gzip

    from audit.run import _members
    from dedup.shards import InputError

    path = tmp_path / name
    path.write_bytes(gzip.compress(b'{"id": "a"}\n') if body is None else body.encode())
    with pytest.raises(InputError, match="one id per line.*Parquet"):
        _members(path)


@pytest.mark.parametrize("name", ["members.pq", "MEMBERS.PARQUET"])
def test_a_members_file_with_another_parquet_suffix_is_read_as_parquet(tmp_path, name):
    """The corpus reader takes .pq and any case as Parquet; the members reader took only '.parquet' (else
    'not valid UTF-8')."""
    from audit.run import _members

    pq.write_table(pa.table({"id": ["a", "c"]}), tmp_path / name)
    assert _members(tmp_path / name) == {"a", "c"}


def test_a_members_file_with_a_byte_order_mark(tmp_path):
    """A members list saved with a UTF-8 byte order mark (Notepad, PowerShell, Excel's CSV) has
    the same ids as without it. Before: the first id kept the BOM ('\\ufeffa'), so its document
    was silently labelled a non-member."""
    from audit.run import _members

    path = tmp_path / "members.txt"
    path.write_text("a\nc\n", encoding="utf-8-sig")
    assert _members(path) == {"a", "c"}


def test_a_members_file_error_after_a_byte_order_mark_names_the_right_byte(tmp_path):
    """An invalid byte in a members file with a BOM was reported 3 bytes too early (the
    offset counted from after the BOM)."""
    from audit.run import _members
    from dedup.shards import InputError

    path = tmp_path / "members.txt"
    path.write_bytes(b"\xef\xbb\xbfa\n\xff\n")
    with pytest.raises(InputError, match="at byte 5"):
        _members(path)


def test_members_parquet_ids_are_read_as_the_corpus_ids_are(tmp_path):
    """A Parquet members list whose ids became float64 (pandas turns an integer column with a
    missing value into floats) holds the ids the corpus's integer ids read as: the corpus's id
    column is cast to strings by Arrow (2 -> '2'), and so now is the members column, a float column
    of whole numbers within 2^53 through int64 (2.0 and 10000000007.0 -> '2', '10000000007': Arrow
    alone writes '1.0000000007e+10'). Before: Python's str gave '2.0', so no member matched and every sequence was labelled
    a non-member."""
    from audit.run import _members
    from dedup.shards import Shard, ShardReader

    path = tmp_path / "members.parquet"
    pq.write_table(pa.table({"id": pa.array([2.0, 3.0, None, 10000000007.0, 2.0 ** 53])}), path)
    corpus = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": pa.array([2, 3, 10000000007, 2 ** 53]), "text": ["a", "b", "c", "d"]}), corpus)
    reader = ShardReader(Shard(corpus, "c.parquet", "parquet"), "text", "id", True, batch_rows=16)
    corpus_ids = [i for b in reader.batches() for i in reader.ids(b).to_pylist()]
    assert corpus_ids == ["2", "3", "10000000007", str(2 ** 53)]
    assert _members(path) == set(corpus_ids)  # timestamp- and snowflake-sized ids too
    pq.write_table(pa.table({"id": pa.array([2.0, 0.5, 1e20])}), path)  # not all whole numbers within 2^53:
    assert _members(path) == {"2", "0.5", "1e+20"}  # Arrow's text of each float


def test_sequences_named_by_float_ids_find_their_documents(tmp_path):
    """--sequences by ``id`` and ``token_offset``: ids that became float64 (2.0) name the corpus's
    document 2, as the corpus reads its ids. Before: str(2.0) = '2.0' matched no document: no
    sequence was found."""
    from audit.sampling import sequences_from_file
    from dedup.runs import discover

    corpus = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": pa.array([1, 2, 3]), "text": ["abcdefgh", "ijklmnop", "qrstuvwx"]}), corpus)
    given = tmp_path / "seqs.parquet"
    pq.write_table(pa.table({"id": pa.array([2.0, 3.0]), "token_offset": [1, 0]}), given)
    seqs = sequences_from_file(given, 2, 2, discover([corpus]), lambda texts: [[ord(c) for c in t] for t in texts])
    assert seqs.doc_id == ["2", "3"] and seqs.tokens.tolist() == [[106, 107, 108, 109], [113, 114, 115, 116]]
    pq.write_table(pa.table({"id": pa.array([2.0]), "tokens": [[1, 2, 3, 4]]}), given)  # given tokens: the same ids
    assert sequences_from_file(given, 2, 2).doc_id == ["2"]


def test_sequences_named_by_an_id_on_two_documents_are_refused(tmp_path):
    """--sequences by ``id``: shards whose ids restart at 0 hold two documents of id 2; the first
    was taken, silently (the audit of a.parquet's text where b.parquet's may have been meant). Now an
    InputError naming both rows; an id on two copies of one text is no ambiguity and is accepted."""
    from audit.sampling import sequences_from_file
    from dedup.runs import discover
    from dedup.shards import InputError

    for name, texts in (("a", ["abcdefgh", "ijklmnop", "qrstuvwx"]), ("b", ["zyxwvuts", "ijklmnop", "rqponmlk"])):
        pq.write_table(pa.table({"id": [1, 2, 3], "text": texts}), tmp_path / f"{name}.parquet")
    given = tmp_path / "seqs.parquet"
    pq.write_table(pa.table({"id": [2, 3], "token_offset": [0, 0]}), given)
    encode = lambda texts: [[ord(c) for c in t] for t in texts]  # noqa: E731
    with pytest.raises(InputError, match=r"b\.parquet: row 2: id '3' also names row 2 of a\.parquet"):
        sequences_from_file(given, 2, 2, discover([tmp_path / "a.parquet", tmp_path / "b.parquet"]), encode)
    pq.write_table(pa.table({"id": [2], "token_offset": [0]}), given)  # id 2: the same text in both
    assert sequences_from_file(given, 2, 2, discover([tmp_path / "a.parquet", tmp_path / "b.parquet"]),
                               encode).doc_id == ["2"]


def test_an_ids_string_does_not_depend_on_the_ids_read_with_it(tmp_path):
    """Whole-number float ids are written as integers value by value: one NaN (or fraction) among
    them switched every id of its batch to Arrow's exponent form, so the same id read in batches
    of 2 or of 4 gave '10000000009' or '1.0000000009e+10' (a members file with one NaN matched no
    corpus id). A float16 column died in Arrow's floor (no half-float kernel)."""
    from audit.run import _members
    from dedup.shards import Shard, ShardReader

    path = tmp_path / "c.parquet"
    ids = pa.array([10000000007.0, 10000000008.0, 10000000009.0, float("nan")])
    pq.write_table(pa.table({"id": ids, "text": ["a", "b", "c", "d"]}), path)
    want = ["10000000007", "10000000008", "10000000009", "nan"]
    for batch_rows in (1, 2, 4):
        reader = ShardReader(Shard(path, "c.parquet", "parquet"), "text", "id", True, batch_rows=batch_rows)
        assert [i for b in reader.batches() for i in reader.ids(b).to_pylist()] == want
    assert _members(path) == set(want)
    pq.write_table(pa.table({"id": pa.array([1.0, 2.5, None], pa.float16()), "text": ["a", "b", "c"]}), path)
    reader = ShardReader(Shard(path, "c.parquet", "parquet"), "text", "id", True, batch_rows=8)
    assert [i for b in reader.batches() for i in reader.ids(b).to_pylist()] == ["1", "2.5", None]


@pytest.mark.parametrize("name", ["members.feather", "members.csv.gz"])
def test_a_binary_members_file_names_the_formats_read(tmp_path, name):
    """A members list as Feather (Arrow IPC) or compressed CSV was refused as 'not valid UTF-8 (invalid start
    byte at byte 0)', which does not say what to give instead (found by review)."""
    import gzip

    import pyarrow.feather as feather

    from audit.run import _members
    from dedup.shards import InputError

    path = tmp_path / name
    if name.endswith(".feather"):
        feather.write_feather(pa.table({"id": ["a", "c"]}), path)
    else:
        path.write_bytes(gzip.compress(b"id\na\nc\n"))
    with pytest.raises(InputError, match="not valid UTF-8.*one id per line.*Parquet"):
        _members(path)
