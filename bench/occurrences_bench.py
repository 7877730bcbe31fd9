"""Throughput of the occurrence count at scale (issue #12 section 2: a 1e9-token corpus must be
feasible on one machine).

``occurrences`` (Carlini et al. 2022; Kandpal et al. 2022; Lee et al. 2021's suffix-array
``count-occurrences``) is the exact number of times an audited P + C token window occurs in the
tokenized corpus. The audit computes it in one streaming pass (:mod:`audit.occurrences`):
tokenize the corpus in batches with the fast (Rust) tokenizer, hash every window, look the
hashes up among the sampled windows' and verify every hit. This bench times the two halves
separately, on one machine and without any download:

1. corpus: real text (the METADATA and LICENSE files of the installed packages,
   :func:`dedup.realtext.build_corpus`, ~6 KB documents; ``--docstrings`` adds the standard
   library's and packages' docstrings, ~100 s to collect) repeated until ``--tokens`` is reached
   (so every window occurs at least once per repetition: many verified hits, the boilerplate
   case), or ``--source synthetic`` (:func:`dedup.synthetic.generate_corpus`, ``--synthetic-docs``
   documents of ~2 KB of made-up words with planted duplicates, repeated likewise);
2. tokenizer: a byte-level BPE of ``--vocab`` tokens trained here on the first documents
   (:func:`audit.train.train_tokenizer`, the trainer's), called as the audit calls its model's
   tokenizer (``tokenizer(texts, add_special_tokens=False)``, ``--batch-docs`` documents per
   call): "tokenize" is that call plus the conversion to int32 arrays;
3. count: :func:`audit.occurrences.count_occurrences` of ``--sample`` windows of ``--window``
   tokens drawn at random offsets of random documents, over all documents.

It prints an aligned table: tokens, seconds for tokenization and for counting, tokens/s of
each and of both, peak resident memory (ru_maxrss: the whole process, including the tokenized
corpus this bench keeps in memory to time the count alone; the audit streams it), and the
projected hours for 1e9 tokens (linear in the corpus; tokenization can use more cores through
the tokenizer's own thread pool, counting is one core).

    python bench/occurrences_bench.py [--tokens 5000000] [--sample 1000] [--window 64]
        [--source realtext|synthetic] [--vocab 8192] [--batch-docs 1024] [--check]

``--check`` also counts with the unbatched per-document reference
(:func:`audit.occurrences.count_occurrences_reference`) and asserts identical counts.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit.occurrences import count_occurrences, count_occurrences_reference  # noqa: E402


def corpus_texts(source: str, n_docs_synthetic: int, seed: int, docstrings: bool = False) -> list[str]:
    """The base documents (before repetition)."""
    if source == "realtext":
        from dedup.realtext import build_corpus

        return [t for t in build_corpus(with_docstrings=docstrings).column("text").to_pylist() if t]
    from dedup.synthetic import generate_corpus

    return generate_corpus(n_docs_synthetic, mean_bytes=2000, seed=seed).column("text").to_pylist()


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=5_000_000, help="corpus size to reach, in tokens")
    ap.add_argument("--sample", type=int, default=1000, help="sampled windows")
    ap.add_argument("--window", type=int, default=64, help="window length P + C, tokens")
    ap.add_argument("--source", choices=("realtext", "synthetic"), default="realtext")
    ap.add_argument("--docstrings", action="store_true", help="realtext: add docstrings (slow to collect)")
    ap.add_argument("--synthetic-docs", type=int, default=20_000)
    ap.add_argument("--vocab", type=int, default=8192, help="BPE vocabulary size")
    ap.add_argument("--train-docs", type=int, default=2000, help="documents the tokenizer is trained on")
    ap.add_argument("--batch-docs", type=int, default=1024, help="documents per tokenizer call")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="also run the per-document reference and compare")
    a = ap.parse_args(argv)

    from audit.train import train_tokenizer

    base = corpus_texts(a.source, a.synthetic_docs, a.seed, a.docstrings)
    t0 = time.perf_counter()
    tok = train_tokenizer(base[: a.train_docs], a.vocab)
    t_train = time.perf_counter() - t0

    # Tokenize (timed): batches of documents through the fast tokenizer, until --tokens.
    docs: list[np.ndarray] = []
    n_tokens = 0
    t_tok = 0.0
    rep = 0
    while n_tokens < a.tokens:
        for s in range(0, len(base), a.batch_docs):
            t0 = time.perf_counter()
            ids = tok(base[s : s + a.batch_docs], add_special_tokens=False)["input_ids"]
            arrs = [np.array(x, dtype=np.int32) for x in ids]
            t_tok += time.perf_counter() - t0
            docs += arrs
            n_tokens += sum(x.size for x in arrs)
            if n_tokens >= a.tokens:
                break
        rep += 1

    # The sample: windows at random offsets of random documents long enough.
    rng = np.random.default_rng(a.seed)
    long_enough = np.flatnonzero(np.array([d.size >= a.window for d in docs]))
    pick = rng.choice(long_enough, size=min(a.sample, long_enough.size), replace=False)
    windows = np.stack([docs[i][o : o + a.window] for i, o in
                        ((i, int(rng.integers(0, docs[i].size - a.window + 1))) for i in pick)])

    t0 = time.perf_counter()
    counts = count_occurrences(windows, iter(docs))
    t_count = time.perf_counter() - t0
    assert (counts >= 1).all(), "a sampled window must occur at least once"
    t_ref = None
    if a.check:
        t0 = time.perf_counter()
        ref = count_occurrences_reference(windows, iter(docs))
        t_ref = time.perf_counter() - t0
        assert np.array_equal(ref, counts), "batched and reference counts differ"

    both = t_tok + t_count
    res = {"source": a.source, "documents": len(docs), "repetitions": rep, "tokens": n_tokens, "window": a.window,
           "sampled_windows": len(windows), "tokenize_s": t_tok, "count_s": t_count,
           "tokenize_tok_per_s": n_tokens / t_tok, "count_tok_per_s": n_tokens / t_count,
           "both_tok_per_s": n_tokens / both, "peak_rss_mib": peak_rss_mib(),
           "projected_1e9_h": 1e9 / (n_tokens / both) / 3600, "tokenizer_train_s": t_train,
           "reference_count_s": t_ref, "median_occurrences": float(np.median(counts)),
           "max_occurrences": int(counts.max()), "cpu_threads": os.cpu_count(),
           "rayon_threads": os.environ.get("RAYON_NUM_THREADS", "default")}
    head = ["corpus", "tokens", "docs", "tokenize s", "count s", "tokenize tok/s", "count tok/s", "both tok/s", "peak RSS MiB",
            "1e9 tokens (h)"]
    row = [a.source, f"{n_tokens:,}", f"{len(docs):,}", f"{t_tok:.1f}", f"{t_count:.1f}", f"{n_tokens / t_tok:,.0f}",
           f"{n_tokens / t_count:,.0f}", f"{n_tokens / both:,.0f}", f"{res['peak_rss_mib']:,.0f}",
           f"{res['projected_1e9_h']:.2f}"]
    w = [max(len(h), len(r)) for h, r in zip(head, row)]
    print("| " + " | ".join(h.ljust(k) if j == 0 else h.rjust(k) for j, (h, k) in enumerate(zip(head, w))) + " |")
    print("|" + "|".join("-" * (k + 2) if j == 0 else "-" * (k + 1) + ":" for j, k in enumerate(w)) + "|")
    print("| " + " | ".join(r.ljust(k) if j == 0 else r.rjust(k) for j, (r, k) in enumerate(zip(row, w))) + " |")
    print(f"\n{a.source} corpus x{rep} ({len(base):,} base documents), BPE vocab {a.vocab} trained in {t_train:.1f} s "
          f"on {min(a.train_docs, len(base))} documents; {len(windows)} windows of {a.window} tokens, occurrences "
          f"median {res['median_occurrences']:.0f}, max {res['max_occurrences']}"
          + (f"; per-document reference count {t_ref:.1f} s ({n_tokens / t_ref:,.0f} tok/s), identical"
             if t_ref is not None else ""))
    return res


if __name__ == "__main__":
    main()
