"""Throughput of the occurrence count (audit.occurrences): tokens per second of the streaming
pass (rolling hashes of every 64-token window, looked up among the sampled windows' hashes,
hits verified), on synthetic token ids, excluding tokenization.

    python bench/occurrence_bench.py [--tokens 20000000] [--doc-len 1000] [--sample 1000]

At 1e9 tokens the pass takes 1e9 / (tokens/s) seconds plus tokenization (the fast tokenizer,
batched); memory is one batch of documents plus the sample's hashes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from audit.occurrences import count_occurrences


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=20_000_000)
    ap.add_argument("--doc-len", type=int, default=1000)
    ap.add_argument("--sample", type=int, default=1000)
    ap.add_argument("--window", type=int, default=64)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    n_docs = a.tokens // a.doc_len
    docs = rng.integers(0, 50_000, size=(n_docs, a.doc_len))
    pick = rng.choice(n_docs, size=min(a.sample, n_docs), replace=False)
    windows = docs[pick, : a.window]
    t0 = time.perf_counter()
    counts = count_occurrences(windows, iter(docs))
    dt = time.perf_counter() - t0
    assert (counts >= 1).all()
    print(f"| tokens | window | sampled windows | seconds | tokens/s | 1e9 tokens (h) |")
    print(f"|---|---|---|---|---|---|")
    print(f"| {n_docs * a.doc_len:,} | {a.window} | {len(windows)} | {dt:.1f} | {n_docs * a.doc_len / dt:,.0f} | "
          f"{1e9 / (n_docs * a.doc_len / dt) / 3600:.2f} |")


if __name__ == "__main__":
    main()
