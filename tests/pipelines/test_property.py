"""Property: whatever the layout of the inputs, every engine makes the same decisions and
writes the same bytes, or every engine refuses with the same message; nothing is lost.

Hypothesis builds input trees: nested folders, equal file names in different folders,
output names that collide (``a.parquet`` + ``a.jsonl``), Parquet and JSON Lines (plain,
gzip, zstd), zero-row and empty files, null and empty texts, exact and near duplicates
within and across files, symlinked files and directories. Each tree is deduplicated by
the fused engine, the staged engine run serially (no Dask), and the staged engine on real
Dask clusters of 1 and 2 worker processes; then the same rows, in canonical order, as one
Parquet file. Derandomised, so the examples are the same on every run.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dedup import DedupConfig, InputError, dedup_files
from dedup.runs import discover
from dedup.shards import ShardReader
from dedup.stages import dedup_staged
from pipelines.staged import run_staged

WORDS = [f"w{i}" for i in range(40)]
BASES = [" ".join(WORDS[(7 * b + 3 * j) % 40] for j in range(14)) for b in range(5)]
CONFIG = DedupConfig(batch_rows=3)  # several batches per file


def _variant(kind: int, base: int) -> str | None:
    text = BASES[base]
    if kind == 0:
        return text
    if kind == 1:
        return text.upper().replace(" ", ",  ") + "!"  # exact duplicate after normalisation
    if kind == 2:
        words = text.split()
        words[base % len(words)] = "changed"
        return " ".join(words)  # near duplicate (Jaccard of 5-grams ~0.5-0.7) or not
    return [None, "", "!!!", f"unique document number {base} with its own words here"][kind - 3]


texts = st.builds(_variant, st.integers(0, 6), st.integers(0, 4))
files = st.lists(
    st.tuples(st.sampled_from(["", "d1", "d2", "d1/sub"]), st.sampled_from(["a", "b", "part"]),
              st.sampled_from(["parquet", "jsonl", "jsonl.gz", "jsonl.zst"]), st.lists(texts, max_size=7)),
    min_size=1, max_size=5,
)
links = st.sampled_from([None, "file", "dir"])


def _write(path: Path, fmt: str, rows: list[str | None], tag: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = [f"{tag}-{i}" for i in range(len(rows))]
    if fmt == "parquet":
        pq.write_table(pa.table({"id": pa.array(ids, pa.string()), "text": pa.array(rows, pa.string())}), path)
        return
    data = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, rows)).encode()
    if fmt == "jsonl.gz":
        data = gzip.compress(data, mtime=0)
    elif fmt == "jsonl.zst":
        sink = pa.BufferOutputStream()
        with pa.CompressedOutputStream(sink, "zstd") as f:
            f.write(data)
        data = sink.getvalue().to_pybytes()
    path.write_bytes(data)


def _tree(root: Path, spec, link) -> None:
    for n, (folder, name, fmt, rows) in enumerate(spec):
        _write(root / folder / f"{name}.{fmt}", fmt, rows, f"f{n}")
    first = root / spec[0][0] / f"{spec[0][1]}.{spec[0][2]}"
    if link == "file":
        (root / "links").mkdir(exist_ok=True)
        (root / "links" / f"lnk.{spec[0][2]}").symlink_to(first)
    elif link == "dir" and (root / "d1").is_dir():
        (root / "d3").symlink_to(root / "d1", target_is_directory=True)


def _outputs(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def _global_removals(out: Path, manifest: dict) -> list[tuple]:
    start, pos = {}, 0
    for i in manifest["inputs"]:
        start[i["shard"]] = pos
        pos += i["rows"]
    t = pq.read_table(out / "removed.parquet").to_pydict()
    return [(start[s] + r, reason) for s, r, reason in zip(t["shard"], t["row"], t["reason"])]


@pytest.fixture(scope="module")
def clients():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as c1, \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c2, \
            Client(c1) as one, Client(c2) as two:
        yield one, two


@settings(max_examples=14, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=files, link=links)
def test_every_engine_same_bytes_or_same_refusal(tmp_path_factory, clients, spec, link):
    base = tmp_path_factory.mktemp("tree")
    root = base / "in"
    _tree(root, spec, link)
    one, two = clients
    runs = {
        "fused": lambda out: dedup_files([root], out, CONFIG, threads=1),
        "serial": lambda out: dedup_staged([root], out, CONFIG),
        "dask-1": lambda out: run_staged([root], out, CONFIG, client=one, log=lambda m: None),
        "dask-2": lambda out: run_staged([root], out, CONFIG, client=two, log=lambda m: None),
    }
    results, errors = {}, {}
    for name, run in runs.items():
        try:
            results[name] = run(base / name)
        except InputError as e:
            errors[name] = str(e)
            assert not [p for p in (base / name).rglob("*") if p.is_file()] if (base / name).exists() else True
    if errors:
        assert set(errors) == set(runs) and len(set(errors.values())) == 1, errors
        return
    outs = {name: _outputs(base / name) for name in runs}
    assert outs["fused"] == outs["serial"] == outs["dask-1"] == outs["dask-2"]
    m = results["fused"]
    shards = discover([root])
    stem = {s.name: s.stem for s in shards}
    removed = pq.read_table(base / "fused" / "removed.parquet").column("shard").to_pylist()
    for entry in m["inputs"]:  # nothing lost: kept + removed = rows, for every file, on disk too
        assert pq.read_metadata(base / "fused" / "kept" / f"{stem[entry['shard']]}.parquet").num_rows == entry["kept"]
        assert removed.count(entry["shard"]) == entry["removed"]["exact"] + entry["removed"]["near"]
        assert entry["kept"] + entry["removed"]["exact"] + entry["removed"]["near"] == entry["rows"]
    # the same rows, in canonical order, as one file: the same decisions per row
    tables = []
    for s in shards:
        r = ShardReader(s, "text", "id", False, 1000)
        for b in r.batches():
            tables.append(pa.table({"id": r.ids(b), "text": r.text(b)}))
    one_file = base / "one" / "all.parquet"
    one_file.parent.mkdir()
    pq.write_table(pa.concat_tables(tables) if tables else pa.table({"id": pa.array([], pa.string()),
                                                                     "text": pa.array([], pa.string())}), one_file)
    single = dedup_files([one_file], base / "one-out", CONFIG, threads=1)
    assert _global_removals(base / "one-out", single) == _global_removals(base / "fused", m)
    assert sum(i["rows"] for i in m["inputs"]) == single["totals"]["rows"]
    shutil.rmtree(base, ignore_errors=True)
