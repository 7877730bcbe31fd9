"""What each input file costs: many small JSON Lines files through ``memdedup dedup``, both engines.

Corpora of many small files (one per crawl segment, per day, per user) pay a cost per file on top of
the cost per byte: discovering and fingerprinting it, opening a reader, writing a kept shard and, on the
staged engine, a sketch and a write task with their completion records (fsynced) and a read of every
sketch per band. This bench writes ``--files`` JSONL files of ``--rows`` rows (~400 bytes each, a
vocabulary of 5,000 words, one row in 10 an exact copy of an earlier one), runs the command line of
``--checkout`` (default: this one) on them, fused and staged (a local Dask cluster of ``--workers``), and
prints wall and CPU seconds (user + system of the command and its children) and milliseconds per file. Kept
and removed rows of the two engines are checked byte-identical.

    python bench/small_files_bench.py [--files 2000] [--rows 5] [--workers 2] [--checkout DIR]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def write_files(root: Path, files: int, rows: int) -> None:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]
    texts: list[str] = []
    for f in range(files):
        with open(root / f"part-{f:06d}.jsonl", "w", encoding="utf-8") as fh:
            for r in range(rows):  # every 10th row an exact copy of an earlier one
                texts.append(rng.choice(texts) if texts and rng.random() < 0.1 else " ".join(rng.choices(words, k=70)))
                fh.write(json.dumps({"id": f"{f}-{r}", "text": texts[-1]}) + "\n")


def run(checkout: Path, inputs: Path, out: Path, *extra: str) -> tuple[float, float]:
    """(wall s, CPU s) of one ``memdedup dedup`` run, CPU over the command and everything it started."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipelines.cli", "dedup", str(inputs), "--out", str(out), "--quiet", *extra],
                   check=True, cwd=checkout, env={**os.environ, "PYTHONPATH": str(checkout)})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--checkout", type=Path, default=HERE)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        write_files(root / "in", args.files, args.rows)
        print(f"{args.files:,} JSONL files of {args.rows} rows; checkout {args.checkout}; load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
        print("| engine | wall s | CPU s | wall ms/file | CPU ms/file |\n|---|---:|---:|---:|---:|")
        for engine, extra in (("fused", ()), ("staged", ("--engine", "staged", "--workers", str(args.workers)))):
            wall, cpu = run(args.checkout, root / "in", root / engine, *extra)
            per_file = f"{1e3 * wall / args.files:.1f} | {1e3 * cpu / args.files:.1f}"
            print(f"| {engine} | {wall:.1f} | {cpu:.1f} | {per_file} |")
        kept = [sorted(p.relative_to(root / e / "kept") for p in (root / e / "kept").rglob("*.parquet"))
                for e in ("fused", "staged")]
        same = filecmp.cmp(root / "fused" / "removed.parquet", root / "staged" / "removed.parquet", shallow=False) and \
            kept[0] == kept[1] and all(filecmp.cmp(root / "fused" / "kept" / p, root / "staged" / "kept" / p,
                                                   shallow=False) for p in kept[0])
        print(f"\nkept and removed rows byte-identical between the engines: {same}")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
