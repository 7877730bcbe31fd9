"""The staged engine's stages run serially, without Dask: same bytes as the fused engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from dedup import DedupConfig, dedup_files
from dedup.stages import dedup_staged, serial_map
from dedup.synthetic import generate_corpus, write_shards


def _bytes(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name != "manifest.json"}


@pytest.mark.parametrize("batch_rows", [64, 32768])
def test_serial_stages_write_the_fused_engines_bytes(tmp_path, batch_rows):
    write_shards(generate_corpus(900, mean_bytes=300, exact_frac=0.1, near_frac=0.15, seed=4), tmp_path / "in", 3)
    config = DedupConfig(batch_rows=batch_rows)
    calls: list[tuple[str, int]] = []

    def recording_map(label, fn, items):
        calls.append((label, len(items)))
        return serial_map(label, fn, items)

    staged = dedup_staged([tmp_path / "in"], tmp_path / "s", config, map_tasks=recording_map)
    fused = dedup_files([tmp_path / "in"], tmp_path / "f", config, threads=1)
    assert _bytes(tmp_path / "s") == _bytes(tmp_path / "f")
    assert staged["totals"] == fused["totals"] and staged["totals"]["removed"]["near"] > 0
    bands = staged["index"]["plan"]["bands"]
    assert calls == [("sketch", 3), ("band", bands + 1), ("write", 3)]
    assert not (tmp_path / "s" / "_work").exists()
