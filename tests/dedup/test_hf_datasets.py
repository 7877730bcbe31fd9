"""Hugging Face ``datasets`` (the real package, offline): a ``save_to_disk`` directory and a
``load_dataset`` cache are deduplicated like Parquet, and the keep mask from
``removed.parquet`` filters the dataset to exactly the kept shards' rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dedup import DedupConfig, dedup_files
from dedup.stages import dedup_staged
from dedup.synthetic import generate_corpus, write_shards
from pipelines.cli import main

datasets = pytest.importorskip("datasets")  # the dev extra installs it


@pytest.fixture(scope="module", autouse=True)
def offline():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("HF_HUB_OFFLINE", "1")
        datasets.disable_progress_bars()
        yield


@pytest.fixture(scope="module")
def corpus() -> pa.Table:
    return generate_corpus(1500, mean_bytes=300, exact_frac=0.08, near_frac=0.15, seed=17).select(["id", "text"])


@pytest.fixture(scope="module")
def want(corpus, tmp_path_factory) -> pa.Table:
    """removed.parquet of the same rows as one Parquet file."""
    d = tmp_path_factory.mktemp("want")
    write_shards(corpus, d / "in", 1)
    dedup_files([d / "in"], d / "out", threads=1)
    return pq.read_table(d / "out" / "removed.parquet")


def keep_mask(out: Path, files: list[str]) -> np.ndarray:
    """Keep mask over the rows of ``files`` (the dataset's files, in its row order) from
    ``out/removed.parquet``, whose ``shard`` is each file's name relative to their common directory."""
    removed = pq.read_table(out / "removed.parquet").to_pydict()
    sizes = [datasets.Dataset.from_file(f).num_rows for f in files]
    starts = dict(zip((Path(f).name for f in files), np.cumsum([0, *sizes[:-1]])))
    keep = np.ones(sum(sizes), dtype=bool)
    keep[[starts[Path(s).name] + r for s, r in zip(removed["shard"], removed["row"])]] = False
    return keep


def test_save_to_disk_directory_both_engines_and_ds_filter(tmp_path, corpus, want):
    ds = datasets.Dataset(corpus)
    ds.save_to_disk(str(tmp_path / "saved"), num_shards=3)
    files = sorted(str(p) for p in (tmp_path / "saved").glob("*.arrow"))
    assert len(files) == 3 and (tmp_path / "saved" / "state.json").exists()

    assert main(["dedup", str(tmp_path / "saved"), "--out", str(tmp_path / "fused"), "--engine", "fused",
                 "--threads", "1", "--quiet"]) == 0
    dedup_staged([tmp_path / "saved"], tmp_path / "staged", DedupConfig())
    for out in ("fused", "staged"):
        removed = pq.read_table(tmp_path / out / "removed.parquet")
        assert removed.select(["id", "reason", "band"]).equals(want.select(["id", "reason", "band"])), out
        assert sorted(p.name for p in (tmp_path / out / "kept").iterdir()) == \
            [Path(f).with_suffix(".parquet").name for f in files]

    loaded = datasets.load_from_disk(str(tmp_path / "saved"))
    assert [c["filename"] for c in loaded.cache_files] == files  # the dataset's rows: its files in order
    keep = keep_mask(tmp_path / "fused", files)
    assert (~keep).sum() == want.num_rows
    cleaned = loaded.filter(lambda batch, idx: keep[idx], with_indices=True, batched=True)
    kept = pa.concat_tables(pq.read_table(p) for p in sorted((tmp_path / "fused" / "kept").glob("*.parquet")))
    assert cleaned["id"] == kept.column("id").to_pylist()
    assert cleaned["text"] == kept.column("text").to_pylist()
    # kept shards are Parquet with the dataset's features: datasets reads them back as they were
    again = datasets.load_dataset("parquet", data_files=sorted(str(p) for p in (tmp_path / "fused" / "kept").glob("*")),
                                  split="train", cache_dir=str(tmp_path / "hf-cache-2"))
    assert again.features == loaded.features and again["id"] == cleaned["id"]

    # ds.filter left cache-*.arrow beside the dataset: a directory walk skips it, same run
    assert list((tmp_path / "saved").glob("cache-*.arrow"))
    assert main(["dedup", str(tmp_path / "saved"), "--out", str(tmp_path / "again"), "--engine", "fused",
                 "--threads", "1", "--quiet"]) == 0
    assert pq.read_table(tmp_path / "again" / "removed.parquet").equals(pq.read_table(tmp_path / "fused" / "removed.parquet"))


def test_load_dataset_cache_files(tmp_path, corpus, want):
    """The Arrow files of a ``load_dataset`` cache (``ds.cache_files``) as inputs."""
    write_shards(corpus, tmp_path / "src", 2)
    ds = datasets.load_dataset("parquet", data_files=sorted(str(p) for p in (tmp_path / "src").glob("*.parquet")),
                               split="train", cache_dir=str(tmp_path / "hf-cache"))
    files = [c["filename"] for c in ds.cache_files]
    assert files and all(f.endswith(".arrow") and f.startswith(str(tmp_path / "hf-cache")) for f in files)
    m = dedup_files(files, tmp_path / "out", threads=1)
    assert [i["format"] for i in m["inputs"]] == ["arrow"] * len(files)
    removed = pq.read_table(tmp_path / "out" / "removed.parquet")
    assert removed.select(["id", "reason", "band"]).equals(want.select(["id", "reason", "band"]))
    # the whole cache directory (lock files, dataset_info.json beside the Arrow file) reads the same rows
    m2 = dedup_files([tmp_path / "hf-cache"], tmp_path / "out2", threads=1)
    assert m2["totals"] == m["totals"]
