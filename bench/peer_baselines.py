"""The fastest peers, run as their own process like memdedup: rensa and gaoya.

Same inputs as ``memdedup dedup`` (Parquet shards in canonical order), same semantics
(a document is removed if it shares an LSH band with any earlier document, which is
inserted whatever the verdict), same banding (9 bands x 13 rows: 117 permutations), kept
rows written as Parquet with zstd like memdedup's kept shards, removed row numbers
(global, canonical order) to ``removed_rows.npy``.

* ``rensa``: full-set R-MinHash (``RMinHash.from_token_sets``, rensa's batch path for
  full-set sketches) with Python shingling identical to memdedup's (Arrow NFKC + lowercase,
  the word-character regex of :func:`dedup.normalize.canonical_words_batch`, word 5-grams
  joined by spaces), ``RMinHashLSH(threshold, 117, 9)``: ``query`` then ``insert`` per
  document.
* ``gaoya``: ``MinHashStringIndex`` with its own Rust word analyzer (lowercase, word
  5-grams), 32-bit hashes, 9 bands of 13; ``query`` (which keeps candidates whose
  signature similarity reaches the threshold) then ``insert_document`` per document.

Usage: python bench/peer_baselines.py rensa|gaoya CORPUS_DIR OUT_DIR
Prints one JSON line: {"docs", "seconds", "removed"}.
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
import pyarrow.parquet as pq  # noqa: E402

from dedup.arrow import bool_array  # noqa: E402
from dedup.runs import discover  # noqa: E402

BANDS, ROWS = 9, 13


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("tool", choices=("rensa", "gaoya"))
    ap.add_argument("corpus")
    ap.add_argument("out")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--ngram", type=int, default=5)
    args = ap.parse_args()
    num_perm = BANDS * ROWS
    shards = discover([args.corpus])
    os.makedirs(os.path.join(args.out, "kept"), exist_ok=True)
    removed: list[int] = []
    doc = 0
    n = args.ngram
    if args.tool == "rensa":
        from rensa import RMinHash, RMinHashLSH

        from dedup.normalize import canonical_words_batch

        lsh = RMinHashLSH(args.threshold, num_perm, BANDS)
    else:
        from gaoya.minhash import MinHashStringIndex

        index = MinHashStringIndex(32, args.threshold, BANDS, ROWS, None, "word", True, (n, n))
    for shard in shards:
        table = pq.read_table(str(shard.path))
        keep = np.ones(table.num_rows, dtype=bool)
        texts = table.column("text")
        if args.tool == "rensa":
            sets = []
            for words in canonical_words_batch(texts):
                if len(words) >= n:
                    sets.append([" ".join(words[j:j + n]) for j in range(len(words) - n + 1)])
                else:
                    sets.append([" ".join(words)] if words else [])
            for i, m in enumerate(RMinHash.from_token_sets(sets, num_perm, 42)):
                if sets[i]:
                    if lsh.query(m):
                        keep[i] = False
                        removed.append(doc + i)
                    lsh.insert(doc + i, m)
        else:
            for i, text in enumerate(texts.to_pylist()):
                if text is None:
                    continue
                if index.query(text):
                    keep[i] = False
                    removed.append(doc + i)
                index.insert_document(doc + i, text)
        doc += table.num_rows
        pq.write_table(table.filter(bool_array(keep)), os.path.join(args.out, "kept", shard.stem + ".parquet"),
                       compression="zstd")
    np.save(os.path.join(args.out, "removed_rows.npy"), np.array(removed, dtype=np.int64))
    print(json.dumps({"docs": doc, "seconds": time.perf_counter() - T0, "removed": len(removed)}))


if __name__ == "__main__":
    sys.exit(main())
