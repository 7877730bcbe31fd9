"""The datasketch / pybloom-live baselines are an optional extra: the library works without
them, and asking for one that is not installed is a one-line error (exit 2), not an
ImportError traceback."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_without(modules: tuple[str, ...], code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where importing any of ``modules`` fails, as if
    the package were not installed."""
    hide = "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    return subprocess.run([sys.executable, "-c", f"import sys\n{hide}{code}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("backend, module, package", [("lsh", "datasketch", "datasketch"),
                                                      ("pybloom", "pybloom_live", "pybloom-live")])
def test_a_baseline_that_is_not_installed_is_a_one_line_error(tmp_path: Path, backend, module, package):
    code = (
        "import pyarrow as pa, pyarrow.parquet as pq\n"
        f"pq.write_table(pa.table({{'text': ['a b c d e f', 'a b c d e f']}}), r'{tmp_path}/in.parquet')\n"
        "from pipelines.cli import main\n"
        f"sys.exit(main(['dedup', r'{tmp_path}/in.parquet', '--out', r'{tmp_path}/out', '--index', '{backend}', "
        "'--engine', 'fused', '--quiet']))\n"
    )
    done = _run_without((module,), code)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"index backend {backend!r} needs the {package} package" in lines[0]
    assert "memdedup[baselines]" in lines[0]


def test_the_library_runs_without_the_baseline_packages(tmp_path: Path):
    code = (
        "import pyarrow as pa, pyarrow.parquet as pq\n"
        f"pq.write_table(pa.table({{'text': ['a b c d e f', 'A b c d e f!']}}), r'{tmp_path}/in.parquet')\n"
        "import dedup, dedup.index, dedup.baselines\n"
        "from dedup.engine import dedup_files\n"
        f"m = dedup_files([r'{tmp_path}/in.parquet'], r'{tmp_path}/out')\n"
        "assert m['totals']['removed'] == {'exact': 1, 'near': 0}, m\n"
    )
    done = _run_without(("datasketch", "pybloom_live"), code)
    assert done.returncode == 0, done.stderr[-3000:]


def test_baselines_are_an_extra_that_dev_includes():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = lambda reqs: {r.split("[")[0].split(">")[0].split("=")[0].strip().lower() for r in reqs}  # noqa: E731
    assert not names(project["dependencies"]) & {"datasketch", "pybloom-live"}
    assert {"datasketch", "pybloom-live"} <= names(project["optional-dependencies"]["baselines"])
    extras = {e.strip() for r in project["optional-dependencies"]["dev"] if r.startswith("memdedup[")
              for e in r[len("memdedup["):-1].split(",")}
    assert "baselines" in extras


def test_baseline_classes_live_in_baselines_and_make_index_finds_them():
    from dedup import DatasketchLSHIndex, PybloomIndex, baselines
    from dedup.index import make_index
    from dedup.params import plan_index

    assert DatasketchLSHIndex is baselines.DatasketchLSHIndex and PybloomIndex is baselines.PybloomIndex
    plan = plan_index(0.8, 128, 100, 1e-5)
    assert isinstance(make_index("lsh", plan, scheme="fast", num_perm=128, seed=1, exact_fp=1e-6),
                      baselines.DatasketchLSHIndex)
    assert isinstance(make_index("pybloom", plan, scheme="fast", num_perm=128, seed=1, exact_fp=1e-6),
                      baselines.PybloomIndex)
    with pytest.raises(ValueError, match="unknown index backend"):
        make_index("nope", plan, scheme="fast", num_perm=128, seed=1, exact_fp=1e-6)


def test_pybloom_past_its_capacity_is_a_one_line_error(tmp_path: Path, capsys):
    """pybloom-live's filters refuse keys past their capacity (IndexError: 'BloomFilter is at
    capacity'), where ours climb in false positives: --index pybloom with --capacity below the
    row count died with a traceback."""
    from dedup.synthetic import generate_corpus, write_shards
    from pipelines.cli import main

    write_shards(generate_corpus(50), tmp_path / "in", 1)
    argv = ["dedup", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--index", "pybloom", "--capacity", "10",
            "--engine", "fused", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--capacity" in err[0] and "pybloom" in err[0], err
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*"))


def test_pybloom_predicts_the_rate_of_its_fill_not_of_its_capacity():
    """``predicted_fp`` is the probability that the next unrelated document is flagged
    (:class:`dedup.index.DuplicateIndex`); LSHBloom reports it from its filters' fill. The pybloom
    baseline reported the rate at --capacity whatever it held: 1e-5 for an empty index, and for
    12,000 real documents in filters sized for 10^6 (a manifest's ``--json``), where LSHBloom said
    1e-41. pybloom-live's filter has k slices of M bits, one probe per slice: after n distinct keys
    a fresh key is a false positive with probability prod_s fill_s ~ (1 - e^{-n/M})^k (Bloom 1970;
    Almeida et al. 2007 for the sliced layout); the index is b such filters: 1 - (1 - p)^b."""
    pytest.importorskip("pybloom_live")
    import math

    import numpy as np

    from dedup.baselines import PybloomIndex
    from dedup.params import plan_index
    from dedup.sketch import Sketches

    plan = plan_index(0.8, 128, capacity=1_000_000, total_fp=1e-5)
    index = PybloomIndex(plan)
    assert index.predicted_fp() == 0.0  # nothing inserted: nothing to collide with
    n, rng = 2000, np.random.default_rng(11)
    keys = rng.integers(0, 2**63, size=(n, plan.bands), dtype=np.uint64)  # distinct band keys: unrelated documents
    sk = Sketches(np.ones(n, bool), np.full(n, 50, np.int64), np.zeros((n, 128), np.uint32),
                  rng.integers(0, 2**63, size=(n, 2), dtype=np.uint64), keys, 0)
    index.process(sk, np.arange(n))
    f = index.filters[0]
    k, M = f.num_slices, f.bits_per_slice
    fill = -math.expm1(-n / M)  # expected fill of each slice after n keys
    p_band = fill ** k
    expected = -math.expm1(plan.bands * math.log1p(-p_band))
    # each slice's set bits: sd sqrt(M e^{-n/M} (1 - e^{-n/M})) (occupancy); p_band = prod of k fills, so its
    # relative sd is at most k x a fill's: 4 sigma of that
    rel = k * math.sqrt(M * (1 - fill) * fill) / (M * fill)
    assert abs(index.predicted_fp() / expected - 1) <= 4 * rel, (index.predicted_fp(), expected)
    assert index.predicted_fp() < 1e-30 < plan.predicted_fp(plan.capacity)
