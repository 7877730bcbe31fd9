"""Audit benchmark: exact extraction from ONE teacher-forced pass vs batched greedy generation.

    .venv/bin/python bench/audit_bench.py                 # tiny + 6x384 models, ~2 minutes on 2 CPU cores
    .venv/bin/python bench/audit_bench.py --models gpt2-124m --sequences 32 --batch-size auto
    .venv/bin/python bench/audit_bench.py --device cuda --models tiny small gpt2-124m --sequences 4096 \
        --batch-size auto                                 # the GPU measurement, one command

On the same sequences and models, measures sequences/s of
``CausalLM.score`` + ``metrics.extraction`` (one forward pass over prompt + truth) against
``CausalLM.generate_greedy`` (C sequential decoding steps with a KV cache, explicit attention
mask), and ``CausalLM.greedy_matches`` (the same pass for the verdicts alone: LM head only at
the C continuation positions, as ``generate`` computes it), and checks the exact-extraction
verdicts are identical for every sequence. Models (``--models``, any of):

* ``tiny``: the tiny GPT-2 (2 x 128) the tests train on planted canaries with ``memdedup
  train``'s trainer, so memorized sequences exist;
* ``small``: a randomly initialised GPT-2 6 x 384 with the same tokenizer (11M parameters);
* ``gpt2-124m``: a randomly initialised GPT-2 with GPT-2 small's shape (12 layers, width 768,
  12 heads, vocabulary 50,257: 124M parameters), built from a config (no download); the
  canary tokenizer's ids are valid ids of its vocabulary, and its LM head has GPT-2's full
  vocabulary width, so the logits cost what a real GPT-2's do.

Sequences are P + C = 32 + 32 tokens sampled from the canary corpus. ``--batch-size auto``
uses the audit's own rule (:mod:`audit.batching`: the largest power of two whose logits and
activations fit in half the free memory, at most 64 on a CPU, 1024 on a GPU), per model.

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

    warm = tokens[: min(batch, 4)]  # warm-up on a few sequences (kernels, allocator), not timed
    lm.score(warm, batch)
    t0 = time.perf_counter()
    stats = lm.score(tokens, batch)
    exact_tf, _ = metrics.extraction(stats.greedy_match, P, C)
    t_tf = time.perf_counter() - t0
    lm.generate_greedy(warm[:, :P], C, batch)
    t0 = time.perf_counter()
    gen = lm.generate_greedy(tokens[:, :P], C, batch)
    exact_gen = (gen == tokens[:, P:]).all(axis=1)
    t_gen = time.perf_counter() - t0
    lm.greedy_matches(warm, P, batch)
    t0 = time.perf_counter()
    exact_v = lm.greedy_matches(tokens, P, batch).all(axis=1)
    t_v = time.perf_counter() - t0
    n = tokens.shape[0]
    return {
        "sequences": n,
        "batch_size": batch,
        "teacher_forced_seq_per_s": n / t_tf,
        "verdict_only_seq_per_s": n / t_v,
        "generate_seq_per_s": n / t_gen,
        "speedup": t_gen / t_tf,
        "speedup_verdict_only": t_gen / t_v,
        "verdicts_identical": bool((exact_tf == exact_gen).all() and (exact_v == exact_gen).all()),
        "extractable": int(exact_tf.sum()),
        "parameters": int(sum(p.numel() for p in lm.model.parameters())),
    }


MODELS = ("tiny", "small", "gpt2-124m")
NAMES = {"tiny": "tiny GPT-2 (2x128), trained on canaries", "small": "GPT-2 6x384, random init",
         "gpt2-124m": "GPT-2 12x768 (GPT-2 small shape, vocab 50,257), random init"}


def _random_gpt2(path: Path, tokenizer, eos: int, **shape) -> None:
    """A random-initialised GPT-2 of the given shape saved with ``tokenizer`` (seed 0)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_positions=128, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, **shape)
    GPT2LMHeadModel(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequences", type=int, default=512)
    ap.add_argument("--batch-size", default="32", help="sequences per forward pass, or auto (audit.batching)")
    ap.add_argument("--models", nargs="+", choices=MODELS, default=["tiny", "small"])
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present, as the audit)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    import torch

    from audit.batching import resolve_batch_size
    from audit.canaries import generate_canary_corpus
    from audit.config import TrainConfig
    from audit.lm import load_causal_lm
    from audit.sampling import sample_sequences
    from audit.train import EOS, train_causal_lm, train_tokenizer
    from dedup.runs import discover
    from dedup.synthetic import write_shards

    batch_arg = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    P = C = 32
    tmp = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    rows = []
    try:
        corpus = generate_canary_corpus(seed=0)
        write_shards(corpus, tmp / "corpus", 4)
        paths = {}
        if "tiny" in args.models:
            print("training the tiny canary model ...", flush=True)
            train_causal_lm(discover([tmp / "corpus"]), tmp / "run", TrainConfig(holdout=0.0), log=lambda m: None)
            paths["tiny"] = tmp / "run" / "model"
            tokenizer = load_causal_lm(paths["tiny"], device="cpu").tokenizer
        else:  # the trainer's tokenizer alone (what train_causal_lm would train first)
            tokenizer = train_tokenizer(corpus.column("text").to_pylist(), TrainConfig().vocab_size)
        eos = tokenizer.convert_tokens_to_ids(EOS)
        if "small" in args.models:
            _random_gpt2(tmp / "small", tokenizer, eos, vocab_size=len(tokenizer), n_layer=6, n_embd=384, n_head=6)
            paths["small"] = tmp / "small"
        if "gpt2-124m" in args.models:
            _random_gpt2(tmp / "gpt2-124m", tokenizer, eos, vocab_size=50257, n_layer=12, n_embd=768, n_head=12)
            paths["gpt2-124m"] = tmp / "gpt2-124m"
        seqs = sample_sequences(discover([tmp / "corpus"]),
                                lambda t: [list(x) for x in tokenizer(t, add_special_tokens=False)["input_ids"]],
                                args.sequences, P, C, seed=0)
        for key in [m for m in MODELS if m in args.models]:
            lm = load_causal_lm(paths[key], device=args.device)
            batch, _info = resolve_batch_size(batch_arg, lm, P + C)
            r = _bench(lm, seqs.tokens, P, C, batch)
            r["model"] = NAMES[key]
            r["device"] = lm.device
            rows.append(r)
            print(f"  {NAMES[key]}: batch {batch}, teacher-forced {r['teacher_forced_seq_per_s']:,.1f} seq/s "
                  f"(verdicts only {r['verdict_only_seq_per_s']:,.1f}), generate "
                  f"{r['generate_seq_per_s']:,.1f} seq/s, {r['speedup']:.1f}x, identical={r['verdicts_identical']}",
                  flush=True)
            del lm
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    device = rows[0]["device"] if rows else "cpu"
    hw = (f"CUDA {torch.cuda.get_device_name(0)}" if str(device).startswith("cuda")
          else f"CPU with {torch.get_num_threads()} threads")
    lines = [
        f"{len(seqs)} sequences of 32 + 32 tokens, batch {args.batch_size}, fp32, torch {torch.__version__}, {hw}.",
        "",
        "| model | parameters | batch | teacher-forced seq/s (all scores) | verdicts only seq/s | generate seq/s | "
        "speed-up (all scores) | speed-up (verdicts only) | verdicts identical | extractable |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        fmt = (lambda x: f"{x:,.0f}") if min(r["teacher_forced_seq_per_s"], r["generate_seq_per_s"]) >= 100 \
            else (lambda x: f"{x:,.1f}")
        lines.append(f"| {r['model']} | {r['parameters']:,} | {r['batch_size']} | {fmt(r['teacher_forced_seq_per_s'])} | "
                     f"{fmt(r['verdict_only_seq_per_s'])} | {fmt(r['generate_seq_per_s'])} | {r['speedup']:.1f}x | "
                     f"{r['speedup_verdict_only']:.1f}x | {r['verdicts_identical']} | "
                     f"{r['extractable']}/{r['sequences']} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "audit_bench.json").write_text(json.dumps(rows, indent=2))
    (args.out / "audit_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["verdicts_identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
