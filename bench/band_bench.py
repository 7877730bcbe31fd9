"""One band task's filter work from 10^6 to 10^9 documents: CPU ns per key, one core.

A band task streams every document's band key through one Bloom filter sized for the
corpus (:class:`dedup.scalable.FilterStack` at the per-band false-positive rate of the
defaults: T=0.8, K=128, 9 x 13, whole-index 1e-5). This script does exactly that with
random 64-bit keys (band keys are 64-bit hashes) fed in the chunks a band task uses
(:meth:`FilterStack.batch_keys`), so the band cost of ``bench/scale_bench.py``'s projection
can be measured at 10^8 and 10^9 documents instead of extrapolated from 10^7. It also runs
the same filter as one part (the layout before cache partitions) where that is quick.
Keys are generated per chunk outside the timed call; memory is the filter plus one chunk.

    .venv/bin/python bench/band_bench.py                      # 1e6 1e7 1e8
    .venv/bin/python bench/band_bench.py --sizes 1e6 1e9      # 1e9: a 3.6 GB filter, ~5 min

Writes ``OUT/band_bench.json`` and ``OUT/band_bench.md`` (default OUT: bench/results).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from dedup.bloom import BloomFilter  # noqa: E402
from dedup.params import plan_index  # noqa: E402
from dedup.scalable import FilterStack  # noqa: E402

#: Above this many keys the one-part comparison is skipped (DRAM-bound: minutes).
ONE_PART_MAX_KEYS = 10**8


def measure(n: int, one_part: bool, seed: int = 0) -> dict:
    plan = plan_index(threshold=0.8, num_perm=128, capacity=n, total_fp=1e-5)
    stack = FilterStack(plan.band_fp, n)
    if one_part:
        gen = stack.generations[0]
        stack.generations[0] = BloomFilter(gen.m, gen.k, gen.seed, parts=1)
    chunk = stack.batch_keys()
    rng = np.random.default_rng(seed)
    mask = np.ones(chunk, dtype=np.bool_)
    cpu, seen = 0.0, 0
    for start in range(0, n, chunk):
        keys = rng.integers(0, 2**63, min(chunk, n - start), dtype=np.int64).view(np.uint64) * np.uint64(2)
        t = time.process_time()
        seen += int(stack.add(keys, mask[:keys.shape[0]]).sum())
        cpu += time.process_time() - t
    f = stack.generations[0]
    return {"docs": n, "layout": "one part" if f.parts == 1 else f"{f.parts} parts", "filter_mb": f.nbytes / 1e6,
            "k": f.k, "chunk_keys": chunk, "cpu_s": cpu, "ns_per_key": cpu / n * 1e9,
            "keys_per_cpu_s": n / cpu, "false_seen": seen, "expected_false_seen": _expected(f, n)}


def _expected(f: BloomFilter, n: int) -> float:
    """Sum over insertions of the filter's predicted false-positive rate at that fill."""
    steps = np.linspace(0, n, 201)
    rates = np.array([f.predicted_fp(int(i)) for i in steps])
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # trapezoid: numpy >= 2.0; pyproject allows 1.26
    return float(trapezoid(rates, steps))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7, 1e8])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    rows = []
    for n in (int(s) for s in args.sizes):
        for one_part in (False, True):
            if one_part and n > ONE_PART_MAX_KEYS:
                continue
            r = measure(n, one_part)
            rows.append(r)
            print(f"{r['docs']:>14,} {r['layout']:>12} {r['filter_mb']:>9.1f} MB  {r['ns_per_key']:6.1f} ns/key  "
                  f"{r['keys_per_cpu_s'] / 1e6:5.2f} M keys/CPU-s  false seen {r['false_seen']} "
                  f"(expected {r['expected_false_seen']:.1f})", flush=True)
            if rows[-1]["layout"] == "one part" and not one_part:
                break  # a filter of one part anyway: nothing to compare
    lines = [
        "One band task's filter work (random 64-bit keys, chunks as a band task feeds them; CPU time of "
        "`FilterStack.add`, one core; T=0.8, K=128, 9 x 13, whole-index FP 1e-5 so p_band = 1.1e-6):", "",
        "| documents | layout | filter MB | k | chunk keys | CPU s | ns/key | M keys/CPU-s | false seen | expected |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['docs']:,} | {r['layout']} | {r['filter_mb']:,.1f} | {r['k']} | {r['chunk_keys']:,} | "
                     f"{r['cpu_s']:.2f} | {r['ns_per_key']:.1f} | {r['keys_per_cpu_s'] / 1e6:.2f} | "
                     f"{r['false_seen']} | {r['expected_false_seen']:.1f} |")
    os.makedirs(args.out, exist_ok=True)
    Path(args.out, "band_bench.json").write_text(json.dumps(rows, indent=1) + "\n")
    Path(args.out, "band_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
