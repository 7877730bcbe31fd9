"""Train a tiny GPT-2 and its byte-level BPE tokenizer from scratch, offline, on the CPU.

Test helper for the audit tests (nothing can be downloaded here, so tests train their own
models). Loaded by ``tests/audit/conftest.py`` with importlib (the tests are plain
directories run with ``--import-mode=importlib``) and exposed as the ``train_tiny_lm``
fixture.

Training instances are each document's tokens cut into windows of ``seq_len`` tokens
starting at the document start, so the first ``seq_len`` tokens of a document are one
whole training instance every time the document occurs (the Pythia convention: a
32-token prompt and 32-token continuation of such an instance is what extraction probes).
The last window of a document may be shorter: it is right-padded with the end-of-text id,
masked out of attention and of the loss (a window of one token has no target and is
dropped). No end-of-text token is added to documents.
"""

from __future__ import annotations

import os
from pathlib import Path

EOS = "<|endoftext|>"


def train_tokenizer(texts: list[str], vocab_size: int = 1024):
    """A byte-level BPE tokenizer trained on ``texts`` (deterministic), as a
    ``transformers.PreTrainedTokenizerFast`` with bos = eos = pad = unk = ``<|endoftext|>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS, unk_token=EOS,
        model_max_length=1 << 30,
    )


def make_windows(docs: list[list[int]], seq_len: int, pad_id: int):
    """(input_ids, attention_mask, labels) int64 tensors (N, seq_len): each document cut
    into windows starting at its first token; short last windows right-padded and masked."""
    import torch

    rows, masks = [], []
    for ids in docs:
        for s in range(0, len(ids), seq_len):
            w = ids[s : s + seq_len]
            if len(w) < 2:
                continue
            rows.append(w + [pad_id] * (seq_len - len(w)))
            masks.append([1] * len(w) + [0] * (seq_len - len(w)))
    if not rows:
        raise ValueError("no training window: the texts tokenize to fewer than 2 tokens each")
    x = torch.tensor(rows, dtype=torch.long)
    m = torch.tensor(masks, dtype=torch.long)
    labels = x.masked_fill(m == 0, -100)
    return x, m, labels


def train_tiny_lm(
    texts: list[str],
    out_dir,
    vocab_size: int = 1024,
    n_layer: int = 2,
    n_embd: int = 128,
    n_head: int = 4,
    seq_len: int = 64,
    epochs: int = 3,
    lr: float = 3e-3,
    batch_size: int = 16,
    seed: int = 0,
) -> Path:
    """Train a byte-level BPE tokenizer and a small GPT-2 on ``texts``; save both to
    ``out_dir`` (``save_pretrained``, safetensors) and return it as a Path.

    Deterministic for a seed on one machine: the tokenizer trainer is deterministic,
    ``torch.manual_seed(seed)`` fixes the initialisation, a ``torch.Generator`` seeded with
    ``seed`` shuffles the windows each epoch, and deterministic algorithms are enforced
    during training (the previous setting is restored afterwards). CPU, float32, AdamW
    (weight decay 0.01) with ``lr`` constant after a short linear warm-up, dropout 0,
    gradient norm clipped to 1.

    Load the result with :func:`audit.lm.load_causal_lm`.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, vocab_size)
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    docs = [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    x, m, labels = make_windows(docs, seq_len, eos_id)

    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=max(128, seq_len),
            n_layer=n_layer,
            n_embd=n_embd,
            n_head=n_head,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=eos_id,
            eos_token_id=eos_id,
            pad_token_id=eos_id,
        )
        model = GPT2LMHeadModel(config).to(dtype=torch.float32)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        n = x.shape[0]
        steps_per_epoch = (n + batch_size - 1) // batch_size
        warmup = max(1, min(50, steps_per_epoch * epochs // 10))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
        gen = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            for s in range(0, n, batch_size):
                idx = order[s : s + batch_size]
                loss = model(input_ids=x[idx], attention_mask=m[idx], labels=labels[idx]).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
        model.eval()
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
    return out


__all__ = ["train_tiny_lm", "train_tokenizer", "make_windows", "EOS"]

if __name__ == "__main__":  # pragma: no cover - manual timing
    import sys
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from dedup.synthetic import generate_canary_corpus

    t = generate_canary_corpus()
    t0 = time.perf_counter()
    train_tiny_lm(t.column("text").to_pylist(), os.environ.get("OUT", "/tmp/tiny_lm"))
    print(f"trained in {time.perf_counter() - t0:.1f} s")
