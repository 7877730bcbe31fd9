"""Memory of one ``--band-splits`` task: does a split band task hold only its share of the filter?

Builds the band filter a run of ``--docs`` documents uses (T=0.8, K=128, whole-index FP
1e-5), feeds it ``--keys`` random keys of which only those in split 1 of ``--splits``
(:func:`dedup.stages.split_parts`) are inserted, as a split band task does, and reports the
growth of peak RSS against the filter's size. Each case runs in its own process (peak RSS
only grows), unsplit first for comparison.

    .venv/bin/python bench/split_memory.py                    # 10^8 documents, splits 1 and 8
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one(docs: int, splits: int, keys: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from dedup.params import plan_index
    from dedup.scalable import FilterStack
    from dedup.stages import split_parts

    plan = plan_index(0.8, 128, docs, 1e-5)
    stack = FilterStack(plan.band_fp, docs)
    f = stack.generations[0]
    lo, hi = split_parts(f.parts, (0, splits))
    chunk = stack.batch_keys()
    rng = np.random.default_rng(0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for start in range(0, keys, chunk):
        k = rng.integers(0, 2**63, min(chunk, keys - start), dtype=np.int64).view(np.uint64)
        part = f.part_of(k)
        stack.add(k, (part >= lo) & (part < hi))
    stack.describe()  # reads every word, as a band task's record does
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return {"docs": docs, "splits": splits, "filter_mib": f.nbytes / 2**20, "parts": f.parts, "keys": keys,
            "chunk_keys": chunk, "rss_growth_mib": grown}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=10**8)
    ap.add_argument("--keys", type=int, default=10**7)
    ap.add_argument("--splits", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.docs, args.one, args.keys)))
        return
    print("| documents | splits | filter MiB | parts | keys fed | chunk keys | peak RSS growth MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for s in args.splits:
        out = subprocess.run([sys.executable, __file__, "--docs", str(args.docs), "--keys", str(args.keys),
                              "--one", str(s)], capture_output=True, text=True, check=True).stdout
        r = json.loads(out)
        print(f"| {r['docs']:,} | {s} | {r['filter_mib']:.0f} | {r['parts']:,} | {r['keys']:,} | {r['chunk_keys']:,} | "
              f"{r['rss_growth_mib']:.0f} |")


if __name__ == "__main__":
    main()
