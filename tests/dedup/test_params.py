"""Banding and Bloom sizing maths."""

import json
import math

import pytest
from datasketch.lsh import _optimal_param as datasketch_optimal_param

from dedup.params import bloom_fp, bloom_size, candidate_probability, optimal_param, per_band_fp, plan_index


@pytest.mark.parametrize("num_perm", [16, 32, 64, 128, 200, 256])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
def test_optimal_param_identical_to_datasketch(threshold, num_perm, tmp_path, monkeypatch):
    monkeypatch.setenv("MEMDEDUP_CACHE_DIR", str(tmp_path))  # compute, do not read a cache
    optimal_param.cache_clear()
    ours = optimal_param(threshold, num_perm)
    assert ours == datasketch_optimal_param(threshold, num_perm, 0.5, 0.5)
    optimal_param.cache_clear()
    assert optimal_param(threshold, num_perm) == ours  # now served from the disk cache


def test_known_values():
    assert optimal_param(0.8, 128) == (9, 13)
    assert optimal_param(0.8, 256) == (17, 15)


def test_weights_and_bad_inputs():
    assert optimal_param(0.8, 128, 0.9, 0.1) == datasketch_optimal_param(0.8, 128, 0.9, 0.1)
    # weights that make every error non-finite: datasketch's loop keeps its start, (0, 0); so does ours (a
    # shrink to min() had returned the first grid point instead)
    for w in ((0.5, float("inf")), (float("nan"), 0.5)):
        assert optimal_param(0.8, 8, *w) == datasketch_optimal_param(0.8, 8, *w) == (0, 0)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError):
            optimal_param(bad, 128)
    with pytest.raises(ValueError):
        plan_index(0.8, 128, 100, bands=20, rows=10)
    for capacity in (0, -5, 2.5, True):  # were planned silently for 1 or 2 documents (2.5: k from 2.5, m from 2)
        with pytest.raises(ValueError, match="capacity"):
            plan_index(0.8, 128, capacity)


def test_candidate_curve():
    assert candidate_probability(1.0, 9, 13) == 1.0
    assert candidate_probability(0.0, 9, 13) == 0.0
    s = 0.8
    assert math.isclose(candidate_probability(s, 9, 13), 1 - (1 - s**13) ** 9)


def test_bloom_sizing_formulas():
    n, p = 1_000_000, 1e-6
    m, k = bloom_size(n, p)
    assert m % 64 == 0
    assert m == pytest.approx(-n * math.log(p) / math.log(2) ** 2, abs=64)
    assert k == round(m / n * math.log(2))
    assert bloom_fp(n, m, k) == pytest.approx(p, rel=0.05)


def test_per_band_fp_composes_to_total():
    for b in (1, 9, 20):
        pb = per_band_fp(1e-5, b)
        assert 1 - (1 - pb) ** b == pytest.approx(1e-5, rel=1e-9)


def test_index_plan_default_is_about_32_bytes_per_doc():
    """T=0.8, K=128, p=1e-5: 9 filters of 28.5 bits per document = 32.1 bytes (<= 33)."""
    plan = plan_index(0.8, 128, 10_000_000, 1e-5)
    assert (plan.bands, plan.rows) == (9, 13)
    assert plan.bytes_per_doc <= 33
    assert plan.predicted_fp(plan.capacity) == pytest.approx(1e-5, rel=0.05)
    d = plan.to_dict()
    assert set(d["candidate_probability"]) == {f"{s / 10:.1f}" for s in range(1, 11)}


@pytest.mark.parametrize("bands, rows", [(3, 0), (0, 5), (0, 0), (-1, 4), (4, -1)])
def test_explicit_banding_below_one_is_refused(bands, rows):
    """Before the fix DedupConfig accepted these: rows=0 made every band key the hash of no
    values, so every document after the first was removed as a near duplicate of it; bands=0
    was taken as 'not given' and the optimal banding was used instead, silently."""
    from dedup.config import DedupConfig

    with pytest.raises(ValueError, match=r"invalid dedup config: bands and rows must be >= 1"):
        DedupConfig(bands=bands, rows=rows)


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_seed_outside_32_bits_is_refused_by_name(seed):
    """The permutations are drawn by numpy's RandomState(seed) (datasketch's): 0 <= seed < 2^32.
    Before, the config took any seed; `params` then planned a run, and `dedup` died on numpy's
    'Seed must be between 0 and 2**32 - 1', which names no option."""
    from dedup.config import DedupConfig

    with pytest.raises(ValueError, match=rf"invalid dedup config: seed must be in \[0, 2\^32\), got {seed}"):
        DedupConfig(seed=seed)


def test_cli_refuses_zero_rows_per_band_with_one_line(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.cli import main

    pq.write_table(pa.table({"text": ["the cat sat on the mat", "dogs bark at night"]}), tmp_path / "a.parquet")
    assert main(["dedup", str(tmp_path / "a.parquet"), "--out", str(tmp_path / "out"), "--bands", "3",
                 "--rows", "0", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["memdedup dedup: error: <command line>: section dedup: invalid dedup config: bands and rows must be "
                   ">= 1, got bands=3, rows=0"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("cls, kwargs, field", [
    ("DedupConfig", {"nfkc": "no"}, "nfkc"),  # a truthy string silently kept NFKC on
    ("DedupConfig", {"batch_rows": 1e4}, "batch_rows"),  # a TypeError deep in Deduplicator.add
    ("DedupConfig", {"num_perm": 128.0}, "num_perm"),
    ("DedupConfig", {"threshold": "0.8"}, "threshold"),  # TypeError: '<' not supported
    ("DedupConfig", {"bands": 9.0, "rows": 13.0}, "bands"),
    ("TrainConfig", {"epochs": "3"}, "epochs"),
    ("AuditConfig", {"generate": 1}, "generate"),
    ("ProfileConfig", {"n_boot": 2.5}, "n_boot"),
])
def test_a_config_from_python_is_type_checked_as_the_command_lines_flags_are(cls, kwargs, field):
    """The frozen config dataclasses refuse a value that is not of the field's type, naming the
    field (bool only for bool; an int is a float; None only where optional), as the command line
    does for YAML values; numpy integers are taken as ints."""
    import numpy as np

    import audit.config
    import dedup.config

    config = getattr(dedup.config, cls, None) or getattr(audit.config, cls)
    with pytest.raises(ValueError, match=rf"config: {field} must be "):
        config(**kwargs)
    c = dedup.config.DedupConfig(num_perm=np.int64(64), threshold=np.float32(0.75), batch_rows=np.uint32(100))
    assert type(c.num_perm) is int and type(c.batch_rows) is int and c.num_perm == 64
    assert type(c.threshold) is float and c.threshold == 0.75  # numpy floats too (np.float32 was refused)
    json.dumps(c.to_dict())  # the manifest holds the config


def test_a_saturated_filter_gives_a_whole_index_rate_of_one_and_the_run_completes(tmp_path):
    """--capacity far below the rows (10 for 236) saturates the band filters (fill rate 1):
    whole_index_fp took log1p(-1) (1 - 1e-300 is 1.0 in floating point) and the run ended, after
    all its work, with 'math domain error' naming nothing (found by the CLI probe). A full filter
    answers every key: the rate is 1, and the run completes and says so in its manifest."""
    import pyarrow as pa

    from dedup.config import DedupConfig
    from dedup.engine import dedup_files
    from dedup.params import whole_index_fp
    from dedup.synthetic import generate_corpus, write_shards

    assert whole_index_fp([1.0, 0.5]) == 1.0 and whole_index_fp([0.5, 0.5]) == pytest.approx(0.75)
    write_shards(generate_corpus(236, seed=3), tmp_path / "c", 1)
    m = dedup_files([tmp_path / "c"], tmp_path / "out", DedupConfig(capacity=10), threads=1)
    assert m["totals"]["rows"] == 236 and m["index"]["predicted_fp"] == 1.0


def test_an_empty_index_predicts_a_rate_of_plus_zero():
    """Empty filters (fill 0) gave -expm1(0.0) = -0.0: predicted_fp() of a new Deduplicator and a
    manifest's predicted_fp for a run of null or empty texts read -0.0 (the summary "-0.00e+00")."""
    import pyarrow as pa

    from dedup import Deduplicator
    from dedup.params import whole_index_fp

    assert math.copysign(1.0, whole_index_fp([0.0] * 9)) == 1.0
    assert math.copysign(1.0, Deduplicator().predicted_fp()) == 1.0
    d = Deduplicator()
    d.add(pa.array(["", None]))
    assert json.dumps(d.predicted_fp()) == "0.0"


def test_a_run_over_its_capacity_warns(tmp_path):
    """Over --capacity the filters fill and unrelated documents collide: the summary line showed
    the rate, and nothing more, while most rows went to removed.parquet as near duplicates."""
    import subprocess
    import sys

    from dedup.synthetic import generate_corpus, write_shards

    write_shards(generate_corpus(236, seed=3), tmp_path / "c", 1)
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "dedup", str(tmp_path / "c"), "--out",
                        str(tmp_path / "out"), "--capacity", "10", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "warning: 236 documents in an index sized for --capacity 10" in r.stderr, r.stderr
    assert "predicted false-positive rate 1 (target 1e-05)" in r.stderr, r.stderr


def test_an_index_dir_run_over_its_capacity_does_not_warn(tmp_path):
    """An --index-dir's filters grow past --capacity (they hold their rate), yet the run warned
    that unrelated documents were removed, quoting a rate under the target (found by a probe).
    The warning is for a rate over the target."""
    import subprocess
    import sys

    from dedup.synthetic import generate_corpus, write_shards

    write_shards(generate_corpus(236, seed=3), tmp_path / "c", 1)
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "dedup", str(tmp_path / "c"), "--out",
                        str(tmp_path / "out"), "--capacity", "100", "--index-dir", str(tmp_path / "idx"), "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr


def test_an_index_over_its_rate_through_filters_of_an_earlier_version_warns(tmp_path, monkeypatch):
    """An index started before Bloom format version 3 holds filters whose rate has a floor of
    about n/m^2: 64 first documents put it far over --fp for good. The manifest now says so (the
    rate counts the floor); the run warns, naming the cause and the remedy."""
    import subprocess
    import sys

    from dedup.bloom import BloomFilter
    from dedup.config import DedupConfig
    from dedup.streaming import Deduplicator
    from dedup.synthetic import generate_corpus, write_shards

    monkeypatch.setitem(BloomFilter.__init__.__kwdefaults__, "version", 1)  # as an earlier memdedup built them
    first = Deduplicator(DedupConfig(capacity=64), grow=True)
    first.add(generate_corpus(64, seed=4).column("text"))
    first.save(tmp_path / "idx")
    monkeypatch.undo()
    write_shards(generate_corpus(236, seed=3), tmp_path / "c", 1)
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "dedup", str(tmp_path / "c"), "--out",
                        str(tmp_path / "out"), "--index-dir", str(tmp_path / "idx"), "--quiet", "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    index = json.loads(r.stdout)["index"]
    assert index["predicted_fp"] > index["plan"]["total_fp"]
    assert "warning: the index's predicted false-positive rate" in r.stderr, r.stderr
    assert "before Bloom format version 3" in r.stderr and "rebuild" in r.stderr, r.stderr


def test_a_new_index_over_its_rate_by_chance_does_not_warn_of_earlier_filters(tmp_path):
    """A new index's filters are all version 3, yet its rate from the fill can be over --fp by
    chance: a generation at its capacity is at its target, and a tiny one (--capacity 1: 64 bits)
    varies widely. The run warned that the index held filters built before version 3 and to
    rebuild it (no use: it is new). 63 distinct documents at --capacity 1 fill generations 0-5."""
    import subprocess
    import sys

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(16)
    (tmp_path / "c").mkdir()
    pq.write_table(pa.table({"text": [" ".join(f"w{x}" for x in rng.integers(0, 10**6, 40)) for _ in range(63)]}),
                   tmp_path / "c" / "a.parquet")
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "dedup", str(tmp_path / "c"), "--out",
                        str(tmp_path / "out"), "--index-dir", str(tmp_path / "idx"), "--capacity", "1", "--quiet",
                        "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    index = json.loads(r.stdout)["index"]
    assert index["predicted_fp"] > index["plan"]["total_fp"]  # over by chance
    assert "warning" not in r.stderr, r.stderr


@pytest.mark.parametrize("field, value, needle", [
    ("batch_rows", 2**63, "batch_rows must be >= 1 and <= 2147483647"),
    ("num_perm", 1_000_000, "num_perm must be <= 8192"),
    ("ngram", 2**63, "ngram must be >= 1 and <= 9223372036854775807"),
])
def test_values_no_run_can_use_are_refused_by_the_config(field, value, needle):
    """--batch-rows 2^63 ended in an OverflowError traceback (exit 1) inside the Parquet reader,
    and --num-perm 1000000 ran the banding search for minutes with no word (found by the CLI
    probe). A batch is one Arrow array (2^31 - 1 rows at most); 8192 permutations put the
    Jaccard estimate's standard error under 0.006 and the search at seconds. --ngram 2^63 ended in
    an OverflowError traceback (exit 1) in the sketch kernel, whose n is an int64 (found by the
    dedup probe)."""
    from dedup.config import DedupConfig

    with pytest.raises(ValueError, match=needle):
        DedupConfig(**{field: value})
