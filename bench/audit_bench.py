"""Audit benchmark: exact extraction from ONE teacher-forced pass vs batched greedy generation.

    .venv/bin/python bench/audit_bench.py           # ~2 minutes on 2 CPU cores

On the same sequences and models, measures sequences/s of
``CausalLM.score`` + ``metrics.extraction`` (one forward pass over prompt + truth) against
``CausalLM.generate_greedy`` (C sequential decoding steps with a KV cache, explicit attention
mask), and ``CausalLM.greedy_matches`` (the same pass for the verdicts alone: LM head only at
the C continuation positions, as ``generate`` computes it), and checks the exact-extraction verdicts are identical for every sequence. Models: the
tiny GPT-2 the tests train on planted canaries with ``memdedup train``'s trainer (so
memorized sequences exist) and a larger randomly initialised GPT-2 with
the same tokenizer (speed at a more realistic size; its verdicts must agree too).

Writes ``OUT/audit_bench.json`` and ``OUT/audit_bench.md`` (default OUT: bench/results).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _bench(lm, tokens: np.ndarray, P: int, C: int, batch: int) -> dict:
    from audit import metrics

    lm.score(tokens[:batch], batch)  # warm-up
    t0 = time.perf_counter()
    stats = lm.score(tokens, batch)
    exact_tf, _ = metrics.extraction(stats.greedy_match, P, C)
    t_tf = time.perf_counter() - t0
    lm.generate_greedy(tokens[:batch, :P], C, batch)
    t0 = time.perf_counter()
    gen = lm.generate_greedy(tokens[:, :P], C, batch)
    exact_gen = (gen == tokens[:, P:]).all(axis=1)
    t_gen = time.perf_counter() - t0
    lm.greedy_matches(tokens[:batch], P, batch)
    t0 = time.perf_counter()
    exact_v = lm.greedy_matches(tokens, P, batch).all(axis=1)
    t_v = time.perf_counter() - t0
    n = tokens.shape[0]
    return {
        "sequences": n,
        "teacher_forced_seq_per_s": n / t_tf,
        "verdict_only_seq_per_s": n / t_v,
        "generate_seq_per_s": n / t_gen,
        "speedup": t_gen / t_tf,
        "speedup_verdict_only": t_gen / t_v,
        "verdicts_identical": bool((exact_tf == exact_gen).all() and (exact_v == exact_gen).all()),
        "extractable": int(exact_tf.sum()),
        "parameters": int(sum(p.numel() for p in lm.model.parameters())),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequences", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from audit.lm import load_causal_lm
    from audit.sampling import sample_sequences
    from audit.canaries import generate_canary_corpus
    from dedup.runs import discover
    from dedup.synthetic import write_shards

    P = C = 32
    tmp = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    rows = []
    try:
        corpus = generate_canary_corpus(seed=0)
        write_shards(corpus, tmp / "corpus", 4)
        print("training the tiny canary model ...", flush=True)
        from audit.config import TrainConfig
        from audit.train import train_causal_lm

        train_causal_lm(discover([tmp / "corpus"]), tmp / "run", TrainConfig(holdout=0.0), log=lambda m: None)
        tiny = tmp / "run" / "model"
        lm = load_causal_lm(tiny)
        seqs = sample_sequences(discover([tmp / "corpus"]), lm.encode, args.sequences, P, C, seed=0)
        torch.manual_seed(0)
        big_cfg = GPT2Config(vocab_size=lm.model.config.vocab_size, n_positions=128, n_layer=6, n_embd=384, n_head=6,
                             bos_token_id=lm.model.config.eos_token_id, eos_token_id=lm.model.config.eos_token_id,
                             pad_token_id=lm.model.config.eos_token_id)
        GPT2LMHeadModel(big_cfg).save_pretrained(tmp / "big")
        lm.tokenizer.save_pretrained(tmp / "big")
        for name, path in (("tiny GPT-2 (2x128), trained on canaries", tiny),
                           ("GPT-2 6x384, random init", tmp / "big")):
            r = _bench(load_causal_lm(path), seqs.tokens, P, C, args.batch_size)
            r["model"] = name
            rows.append(r)
            print(f"  {name}: teacher-forced {r['teacher_forced_seq_per_s']:,.0f} seq/s "
                  f"(verdicts only {r['verdict_only_seq_per_s']:,.0f}), generate "
                  f"{r['generate_seq_per_s']:,.0f} seq/s, {r['speedup']:.1f}x, identical={r['verdicts_identical']}",
                  flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [
        f"{args.sequences} sequences of 32 + 32 tokens, batch {args.batch_size}, CPU fp32, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads.",
        "",
        "| model | parameters | teacher-forced seq/s (all scores) | verdicts only seq/s | generate seq/s | "
        "speed-up (all scores) | speed-up (verdicts only) | verdicts identical | extractable |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['parameters']:,} | {r['teacher_forced_seq_per_s']:,.0f} | "
                     f"{r['verdict_only_seq_per_s']:,.0f} | {r['generate_seq_per_s']:,.0f} | {r['speedup']:.1f}x | "
                     f"{r['speedup_verdict_only']:.1f}x | {r['verdicts_identical']} | "
                     f"{r['extractable']}/{r['sequences']} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "audit_bench.json").write_text(json.dumps(rows, indent=2))
    (args.out / "audit_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["verdicts_identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
