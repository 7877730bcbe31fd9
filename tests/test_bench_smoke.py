"""Smoke test of the benchmark scripts in bench/: each one's ``--help``, and each run that takes a
few seconds at its smallest size, into a temporary directory (never bench/results).

Not a measurement: it checks the scripts still run against the library as it is now (function
names, config fields, CLI flags, manifest fields), that they import this checkout's dedup, and
that the numbers they write are finite and positive. Longer runs are left out: audit_bench
(builds or trains GPT-2 models: ~10 s at its smallest, a minute with the trained one),
scale_bench (~12 s: it generates a 50,000-document shard; its projection is run on the committed
results instead, and its size check), dedup_bench's realtext, schemes and synthetic sections
(the real-text corpus takes minutes to build). Scripts whose optional peers (datasketch,
pybloomfiltermmap3, rensa, gaoya) are not installed are skipped, naming the package.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py"))
#: Modules a script imports at start-up, so that even its --help needs them.
NEEDS_AT_IMPORT = {"datasketch_baseline.py": ("datasketch", "psutil")}


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _skip_unless(*modules: str) -> None:
    missing = _missing(*modules)
    if missing:
        pytest.skip(f"optional benchmark peer(s) not installed: {', '.join(missing)}")


def run(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python bench/<script> args`` from the repository root, this checkout's packages first."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, f"{script} {' '.join(args)} exited {p.returncode}:\n{p.stderr[-3000:]}"
    return p


def _finite_positive(*values: float) -> None:
    for v in values:
        assert math.isfinite(v) and v > 0, values


def test_every_script_is_covered():
    assert SCRIPTS == ["audit_bench.py", "band_bench.py", "datasketch_baseline.py", "dedup_bench.py",
                       "jsonl_read_bench.py", "occurrences_bench.py", "peer_baselines.py", "scale_bench.py",
                       "small_files_bench.py", "split_memory.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script):
    _skip_unless(*NEEDS_AT_IMPORT.get(script, ()))
    out = run(script, "--help", timeout=30).stdout
    assert out.startswith("usage:"), out


#: Run as ``python bench/<script>``, whatever the installed memdedup and PYTHONPATH: only sys.path[0]
#: (bench/) is set up, the working directory is elsewhere, and the probe names the dedup it imported.
PROBE = """
import runpy, sys
script, *args = sys.argv[1:]
sys.argv, sys.path[0] = [script, *args], script.rsplit("/", 1)[0]
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit:
    pass
print("DEDUP=" + sys.modules["dedup"].__file__)
"""


@pytest.mark.parametrize("script, args", [("band_bench.py", ["--help"]), ("datasketch_baseline.py", ["--help"]),
                                          ("dedup_bench.py", ["--help"]), ("peer_baselines.py", ["--help"]),
                                          ("jsonl_read_bench.py",
                                           ["--docs", "10", "--repeat", "1", "--piece-mib", "1", "--shape-lines",
                                            "20"])])
def test_scripts_benchmark_this_checkout(tmp_path, script, args):
    """Not another checkout's memdedup (an editable install of a different worktree) nor none."""
    _skip_unless(*NEEDS_AT_IMPORT.get(script, ()))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-c", PROBE, str(BENCH / script), *args], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-3000:]
    imported = Path(p.stdout.strip().splitlines()[-1].removeprefix("DEDUP="))
    assert imported == ROOT / "dedup" / "__init__.py"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, int]:
    """Two Parquet shards of 300 generated ~1 KB documents with planted duplicates."""
    from dedup.synthetic import generate_corpus, write_shards

    path = tmp_path_factory.mktemp("corpus")
    write_shards(generate_corpus(600, mean_bytes=1000, exact_frac=0.05, near_frac=0.10, seed=1), path, 2)
    return path, 600


def test_band_bench(tmp_path):
    run("band_bench.py", "--sizes", "1e5", "--out", str(tmp_path))
    rows = json.loads((tmp_path / "band_bench.json").read_text())
    assert rows and rows[0]["docs"] == 100_000
    _finite_positive(*(r[k] for r in rows for k in ("ns_per_key", "keys_per_cpu_s", "filter_mb")))
    assert "| 100,000 |" in (tmp_path / "band_bench.md").read_text()


def test_jsonl_read_bench():
    out = run("jsonl_read_bench.py", "--docs", "500", "--repeat", "1", "--piece-mib", "1", "--shape-lines", "200").stdout
    assert "MB/s" in out and "memdedup ShardReader" in out and "6,000 spans a line" in out, out
    assert "30 change inside an object" in out and "a new key per line" in out, out


def test_small_files_bench():
    out = run("small_files_bench.py", "--files", "20", "--rows", "2", "--workers", "1", timeout=120).stdout
    assert "| fused |" in out and "| staged |" in out and "byte-identical between the engines: True" in out, out


def test_split_memory():
    out = run("split_memory.py", "--docs", "1000000", "--keys", "100000", "--splits", "1", "2").stdout
    assert out.count("| 1,000,000 |") == 2, out


def test_occurrences_bench():
    out = run("occurrences_bench.py", "--source", "synthetic", "--synthetic-docs", "100", "--tokens", "20000",
              "--sample", "20", "--vocab", "500", "--train-docs", "100", "--check").stdout
    assert "| synthetic |" in out and "identical" in out, out


@pytest.mark.parametrize("index, needs", [("lsh", ("datasketch", "psutil")),
                                          ("lshbloom", ("datasketch", "psutil", "pybloomfilter"))])
def test_datasketch_baseline(corpus, tmp_path, index, needs):
    _skip_unless(*needs)
    path, n = corpus
    info = json.loads(run("datasketch_baseline.py", index, str(path), str(tmp_path)).stdout.strip().splitlines()[-1])
    assert info["docs"] == n and 0 < info["removed"] < n
    _finite_positive(info["seconds"], info["index_bytes"])
    assert np.load(tmp_path / "removed_rows.npy").shape == (info["removed"],)
    assert len(list((tmp_path / "kept").glob("*.parquet"))) == 2


@pytest.mark.parametrize("tool", ["rensa", "gaoya"])
def test_peer_baselines(corpus, tmp_path, tool):
    _skip_unless(tool)
    path, n = corpus
    info = json.loads(run("peer_baselines.py", tool, str(path), str(tmp_path)).stdout.strip().splitlines()[-1])
    assert info["docs"] == n and 0 < info["removed"] < n
    _finite_positive(info["seconds"])
    assert np.load(tmp_path / "removed_rows.npy").shape == (info["removed"],)


def test_dedup_bench_memory_section(tmp_path):
    """The one section of seconds: a memdedup run per prefix of 5,000-document shards (CLI flags
    and manifest fields as they are now). --quick must not override an explicit size."""
    run("dedup_bench.py", "--quick", "--sections", "memory", "--memory-shards", "1", "--data", str(tmp_path / "data"),
        "--out", str(tmp_path / "out"))
    res = json.loads((tmp_path / "out" / "dedup_bench.json").read_text())
    assert [m["shards"] for m in res["memory_vs_shards"]] == [1]
    m = res["memory_vs_shards"][0]
    assert m["docs"] == 5_000
    _finite_positive(m["peak_rss_mb"], m["index_mb"])
    assert (tmp_path / "out" / "dedup_bench.md").exists()


def test_scale_bench_projection(tmp_path):
    """--project on the committed results (copied: it reads OUT), the projection's code alone."""
    for name in ("scale_bench.json", "band_bench.json"):
        shutil.copy(BENCH / "results" / name, tmp_path / name)
    out = run("scale_bench.py", "--project", "--out", str(tmp_path)).stdout
    assert "| 10^10 | 512 |" in out and "nan" not in out.lower(), out


def test_scale_bench_refuses_a_size_it_would_mislabel(tmp_path):
    """Sizes are whole shards of 50,000 documents: 1,000 would run 50,000 and divide by 1,000."""
    p = subprocess.run([sys.executable, str(BENCH / "scale_bench.py"), "--sizes", "1000", "--data", str(tmp_path / "d"),
                        "--out", str(tmp_path / "out")], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "50,000" in p.stderr, p.stderr
    assert not (tmp_path / "d").exists() and not (tmp_path / "out").exists()
