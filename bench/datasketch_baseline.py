"""The datasketch baseline, run as its own process so start-up counts as it does for ours.

Same inputs, same normalisation and shingles as ``memdedup dedup`` (Arrow NFKC + lowercase,
then the word-character regex of :func:`dedup.normalize.canonical_words_batch`), then
``datasketch.MinHash(num_perm, seed).update_batch(shingles)`` and either
``MinHashLSH`` (query, then insert every document, like ours) or ``MinHashLSHBloom``
(the reference LSHBloom: query, insert only kept documents, sum band key). Exact
duplicates are found with a dict of canonical texts. Kept rows are written as Parquet,
like ours, and the removed row numbers (global, canonical order) to a .npy file.

Usage: python bench/datasketch_baseline.py lsh|lshbloom CORPUS_DIR OUT_DIR [--fp P]
Prints one JSON line: {"docs", "seconds", "index_bytes", ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

T0 = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's dedup

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from datasketch import MinHash  # noqa: E402

from dedup.arrow import bool_array  # noqa: E402
from dedup.normalize import canonical_words_batch  # noqa: E402
from dedup.params import optimal_param, per_band_fp  # noqa: E402
from dedup.runs import discover  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("index", choices=("lsh", "lshbloom"))
    ap.add_argument("corpus")
    ap.add_argument("out")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--ngram", type=int, default=5)
    ap.add_argument("--fp", type=float, default=1e-5, help="whole-index false-positive target")
    args = ap.parse_args()

    shards = discover([args.corpus])
    os.makedirs(args.out, exist_ok=True)
    total = sum(pq.ParquetFile(str(s.path)).metadata.num_rows for s in shards)
    b, r = optimal_param(args.threshold, args.num_perm)
    rss0 = psutil.Process().memory_info().rss
    if args.index == "lsh":
        from datasketch import MinHashLSH

        lsh = MinHashLSH(num_perm=args.num_perm, params=(b, r))
        index_bytes = None
    else:
        import tempfile

        from datasketch import MinHashLSHBloom

        save_dir = tempfile.mkdtemp(prefix="lshbloom-", dir=args.out)
        lsh = MinHashLSHBloom(num_perm=args.num_perm, params=(b, r), n=total, fp=per_band_fp(args.fp, b), save_dir=save_dir)
    exact: set[str] = set()
    removed: list[int] = []
    n = args.ngram
    doc = 0
    os.makedirs(os.path.join(args.out, "kept"), exist_ok=True)
    for shard in shards:
        table = pq.read_table(str(shard.path))
        keep = np.ones(table.num_rows, dtype=bool)
        for i, words in enumerate(canonical_words_batch(table.column("text"))):
            canon = " ".join(words)
            if words and canon in exact:
                keep[i] = False
                removed.append(doc)
                doc += 1
                continue
            exact.add(canon)
            if len(words) >= n:
                sh = [" ".join(words[j : j + n]).encode() for j in range(len(words) - n + 1)]
            else:
                sh = [canon.encode()] if words else []
            if sh:
                m = MinHash(num_perm=args.num_perm, seed=1)
                m.update_batch(sh)
                if args.index == "lsh":
                    if lsh.query(m):
                        keep[i] = False
                        removed.append(doc)
                    lsh.insert(doc, m, check_duplication=False)
                else:
                    if lsh.query(m):
                        keep[i] = False
                        removed.append(doc)
                    else:
                        lsh.insert(m)
            doc += 1
        pq.write_table(table.filter(bool_array(keep)), os.path.join(args.out, "kept", shard.stem + ".parquet"))
    seconds = time.perf_counter() - T0
    if args.index == "lsh":
        index_bytes = psutil.Process().memory_info().rss - rss0
    else:
        index_bytes = sum(t.bloom_filter.num_bits // 8 for t in lsh.hashtables)
    np.save(os.path.join(args.out, "removed_rows.npy"), np.array(removed, dtype=np.int64))
    print(json.dumps({"docs": doc, "seconds": seconds, "index_bytes": index_bytes, "removed": len(removed)}))


if __name__ == "__main__":
    sys.exit(main())
