"""The causal language model: loading, one-pass scoring, greedy generation, and the small
deterministic trainer (``memdedup train``).

Training lives here too because this is, by design, the only module of ``audit/`` that
imports torch and transformers (inside the functions, so ``import audit`` stays light; an
architecture test checks it). Everything it returns is numpy or files.

Models load from local directories only (``local_files_only=True``; no hub, no network),
on the GPU when one is present, else on the CPU in float32, with deterministic algorithms.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class ModelError(ValueError):
    """A model directory that is missing, unreadable, or not a causal LM."""


@dataclass
class TokenStats:
    """Per-position results of one teacher-forced forward pass over sequences (B, L).

    Position t (0..L-2) describes the prediction of token t+1 from tokens 0..t.

    Attributes:
        logprob: float64 (B, L-1), log p(x_{t+1} | x_{<=t}) of the true next token (nats).
        greedy_match: bool (B, L-1), the arg-max prediction equals the true next token.
        argmax: int64 (B, L-1), the arg-max prediction.
        mu: float64 (B, L-1), E_{v~p}[log p(v)] under the predicted distribution.
        sigma: float64 (B, L-1), the standard deviation of log p(v) under it (Min-K%++).
    """

    logprob: np.ndarray
    greedy_match: np.ndarray
    argmax: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray


class CausalLM:
    """A loaded model and its tokenizer (see :func:`load_causal_lm`)."""

    def __init__(self, model, tokenizer, device: str, path: Path):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.path = path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def max_positions(self) -> int | None:
        """The model's context length in tokens, if its config states one."""
        cfg = self.model.config
        for attr in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
            v = getattr(cfg, attr, None)
            if isinstance(v, int) and v > 0:
                return v
        return None

    def vocab_fingerprint(self) -> str:
        """SHA-256 of the tokenizer's vocabulary (token -> id), to compare tokenizers."""
        vocab = self.tokenizer.get_vocab()
        h = hashlib.sha256()
        for tok, idx in sorted(vocab.items(), key=lambda kv: kv[1]):
            h.update(f"{idx}\t{tok}\n".encode("utf-8", "surrogatepass"))
        return h.hexdigest()

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens."""
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def score(self, ids: np.ndarray, batch_size: int = 32) -> TokenStats:
        """One teacher-forced forward pass per batch over full-length sequences (B, L).

        An explicit all-ones attention mask is passed: with fixed-length rows that may
        contain the pad id, transformers would otherwise treat real tokens as padding.
        """
        import torch

        ids = np.asarray(ids, dtype=np.int64)
        outs = []
        with torch.inference_mode():
            for s in range(0, ids.shape[0], batch_size):
                x = torch.from_numpy(ids[s : s + batch_size]).to(self.device)
                logits = self.model(input_ids=x, attention_mask=torch.ones_like(x)).logits[:, :-1].float()
                logp = torch.log_softmax(logits, dim=-1)
                target = x[:, 1:]
                tlp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
                am = logits.argmax(dim=-1)
                p = logp.exp()
                mu = (p * logp).sum(-1)
                var = (p * logp.square()).sum(-1) - mu.square()
                outs.append((tlp.double().cpu().numpy(), (am == target).cpu().numpy(), am.cpu().numpy(),
                             mu.double().cpu().numpy(), var.clamp_min(0).sqrt().double().cpu().numpy()))
        return TokenStats(*(np.concatenate([o[i] for o in outs]) for i in range(5)))

    def greedy_matches(self, ids: np.ndarray, prompt_len: int, batch_size: int = 32) -> np.ndarray:
        """bool (B, L - P): the arg-max prediction equals continuation token t, for
        t = P..L-1 of sequences ``ids`` (B, L), from one teacher-forced pass.

        Equals ``score(ids).greedy_match[:, P - 1:]`` at a fraction of the cost when only
        the extraction verdicts are wanted (no membership scores): the last token is not
        fed, and the LM head (vocabulary-wide logits) runs only at the L - P positions
        that predict the continuation (``logits_to_keep``), not at all L - 1.
        """
        import torch

        ids = np.asarray(ids, dtype=np.int64)
        P = int(prompt_len)
        if not 1 <= P < ids.shape[1]:
            raise ValueError(f"prompt_len must be in [1, {ids.shape[1] - 1}], got {prompt_len}")
        C = ids.shape[1] - P
        outs = []
        with torch.inference_mode():
            for s in range(0, ids.shape[0], batch_size):
                x = torch.from_numpy(ids[s : s + batch_size, :-1]).to(self.device)
                logits = self.model(input_ids=x, attention_mask=torch.ones_like(x), logits_to_keep=C).logits
                truth = torch.from_numpy(ids[s : s + batch_size, P:]).to(self.device)
                outs.append((logits.argmax(dim=-1) == truth).cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, C), dtype=bool)

    def generate_greedy(self, prompts: np.ndarray, n_new: int, batch_size: int = 32) -> np.ndarray:
        """Greedy continuations (B, n_new) of equal-length prompts (B, P).

        ``do_sample=False``, exactly ``n_new`` tokens (``min_new_tokens`` forbids stopping at
        EOS), an explicit attention mask, no padding (prompts share one length).
        """
        import torch

        prompts = np.asarray(prompts, dtype=np.int64)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        outs = []
        with torch.inference_mode():
            for s in range(0, prompts.shape[0], batch_size):
                x = torch.from_numpy(prompts[s : s + batch_size]).to(self.device)
                y = self.model.generate(
                    input_ids=x, attention_mask=torch.ones_like(x), do_sample=False, num_beams=1,
                    max_new_tokens=n_new, min_new_tokens=n_new, pad_token_id=pad,
                )
                outs.append(y[:, x.shape[1]:].cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, n_new), dtype=np.int64)


def load_causal_lm(path: str | os.PathLike, device: str | None = None) -> CausalLM:
    """Load a causal LM and its tokenizer from a local Hugging Face directory.

    Raises:
        ModelError: the directory does not exist, has no config, or holds no causal LM.
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: model directory does not exist")
    if not (path / "config.json").exists():
        raise ModelError(f"{path}: no config.json: not a Hugging Face model directory")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    except (ValueError, OSError, KeyError) as e:
        raise ModelError(f"{path}: not a causal language model transformers can load: {e}") from e
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (ValueError, OSError) as e:
        raise ModelError(f"{path}: no usable tokenizer: {e}") from e
    model.to(device)
    model.eval()
    return CausalLM(model, tokenizer, device, path)


# ------------------------------------------------------------------------------ training
EOS = "<|endoftext|>"
ORDER_FILE = "order.parquet"
HELDOUT_FILE = "heldout.parquet"
CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "trainer_state.pt"


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on ``texts`` (deterministic for the same texts in
    the same order), as ``PreTrainedTokenizerFast`` with bos = eos = pad = unk = <|endoftext|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS,
                                   unk_token=EOS, model_max_length=1 << 30)


def _read_corpus(shards, text_column: str, id_column):
    from dedup.shards import ShardReader

    docs = []
    for shard in shards:
        reader = ShardReader(shard, text_column, id_column, False, 65536)
        row = 0
        for batch in reader.batches():
            for r, (doc_id, text) in enumerate(zip(reader.ids(batch).to_pylist(), reader.text(batch).to_pylist())):
                docs.append((doc_id if doc_id is not None else f"{shard.name}:{row + r}", shard.name, row + r, text or ""))
            row += batch.num_rows
    return docs


def _instances(token_lists: list[list[int]], seq_len: int):
    """(doc index, token offset, length) of each instance: documents cut from their start;
    a last piece of at least 2 tokens is kept (padded when batched)."""
    out = []
    for d, ids in enumerate(token_lists):
        for s in range(0, len(ids), seq_len):
            n = min(seq_len, len(ids) - s)
            if n >= 2:
                out.append((d, s, n))
    return out


def train_causal_lm(shards, out_dir: str | os.PathLike, config=None, log=print) -> dict:
    """Train a GPT-2-style LM on corpus shards, deterministically, with checkpoints.

    Writes (``out_dir``): ``tokenizer`` files, ``order.parquet`` (one row per training
    exposure: instance_id, document_id, shard, row, token_offset, n_tokens, doc_copies (how
    many documents of the corpus have this document's exact text), epoch, step, first_step),
    ``heldout.parquet`` (instances of the held-out documents, never trained on, drawn among
    documents whose text is unique in the corpus), ``checkpoints/step-NNNNNNN/`` (Hugging Face model + tokenizer, loadable by
    ``memdedup audit``; with ``trainer_state.pt`` for resuming), ``model/`` (the final
    checkpoint) and ``manifest.json`` last. Rerunning with the same config resumes from the
    last checkpoint and ends with the same weights as an uninterrupted run.
    """
    import json as _json
    import time

    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from dedup import io

    from .config import TrainConfig

    config = config or TrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    manifest_path = io.manifest_path(out)
    if manifest_path.exists():
        done = _json.loads(manifest_path.read_text())
        if done.get("config") == config.to_dict():
            log(f"{out}: training already complete")
            return done
        raise ValueError(f"{out} holds a finished training run with another config; choose another --out")
    cfg_file = out / "train_config.json"
    if cfg_file.exists() and _json.loads(cfg_file.read_text()) != config.to_dict():
        raise ValueError(f"{out} holds an unfinished training run with another config; choose another --out")
    io.write_json_atomic(cfg_file, config.to_dict())

    docs = _read_corpus(shards, config.text_column, config.id_column)
    if not docs:
        raise ValueError("the corpus has no documents")
    rng = np.random.default_rng(config.seed)
    # Held-out documents must be truly unseen: only documents whose text occurs once in the
    # corpus are eligible (a held-out copy of a trained text would be "seen" all the same).
    copies: dict[str, int] = {}
    for d in docs:
        copies[d[3]] = copies.get(d[3], 0) + 1
    doc_copies = np.array([copies[d[3]] for d in docs], dtype=np.int64)
    eligible = np.flatnonzero(doc_copies == 1)
    held = np.zeros(len(docs), dtype=bool)
    held[eligible[rng.permutation(eligible.size)[: int(round(config.holdout * len(docs)))]]] = True
    tok_dir = out / "tokenizer"
    if (tok_dir / "tokenizer.json").exists():
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tok_dir), local_files_only=True)
    else:
        tokenizer = train_tokenizer([d[3] for d, h in zip(docs, held) if not h], config.vocab_size)
        tokenizer.save_pretrained(str(tok_dir))
    eos = tokenizer.convert_tokens_to_ids(EOS)
    token_lists = [list(t) for t in tokenizer([d[3] for d in docs], add_special_tokens=False)["input_ids"]]
    inst = _instances(token_lists, config.seq_len)
    train_ids = np.array([i for i, (d, _, _) in enumerate(inst) if not held[d]], dtype=np.int64)
    if train_ids.size == 0:
        raise ValueError("no training instance: documents too short or all held out")
    per_epoch = -(-train_ids.size // config.batch_size)
    total_steps = per_epoch * config.epochs
    epoch_orders = [train_ids[np.random.default_rng([config.seed, e]).permutation(train_ids.size)]
                    for e in range(config.epochs)]

    # order.parquet and heldout.parquet: a pure function of config and corpus.
    rows = {"instance_id": [], "document_id": [], "shard": [], "row": [], "token_offset": [], "n_tokens": [],
            "doc_copies": [], "epoch": [], "step": []}
    for e, order in enumerate(epoch_orders):
        for pos, i in enumerate(order.tolist()):
            d, s, n = inst[i]
            for k, v in (("instance_id", i), ("document_id", str(docs[d][0])), ("shard", docs[d][1]),
                         ("row", docs[d][2]), ("token_offset", s), ("n_tokens", n), ("doc_copies", int(doc_copies[d])),
                         ("epoch", e), ("step", e * per_epoch + pos // config.batch_size + 1)):
                rows[k].append(v)
    order_table = pa.table(rows)
    first = {}
    for i, st in zip(rows["instance_id"], rows["step"]):
        first[i] = min(first.get(i, st), st)
    order_table = order_table.append_column("first_step", pa.array([first[i] for i in rows["instance_id"]], pa.int64()))
    pq.write_table(order_table, out / ORDER_FILE)
    held_rows = [(i, inst[i]) for i in range(len(inst)) if held[inst[i][0]]]
    pq.write_table(pa.table({
        "instance_id": [i for i, _ in held_rows], "document_id": [str(docs[d][0]) for _, (d, _, _) in held_rows],
        "shard": [docs[d][1] for _, (d, _, _) in held_rows], "row": [docs[d][2] for _, (d, _, _) in held_rows],
        "token_offset": [s for _, (_, s, _) in held_rows], "n_tokens": [n for _, (_, _, n) in held_rows],
    }), out / HELDOUT_FILE)

    torch.manual_seed(config.seed)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    model_cfg = GPT2Config(vocab_size=len(tokenizer), n_positions=max(128, config.seq_len), n_layer=config.n_layer,
                           n_embd=config.n_embd, n_head=config.n_head, bos_token_id=eos, eos_token_id=eos,
                           pad_token_id=eos, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(model_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ckpt_steps = config.checkpoint_steps(total_steps)
    ckpt_root = out / CHECKPOINT_DIR
    step = 0
    existing = sorted(p for p in ckpt_root.glob("step-*") if (p / STATE_FILE).exists()) if ckpt_root.exists() else []
    if existing:
        last = existing[-1]
        state = torch.load(last / STATE_FILE, weights_only=False)
        model = GPT2LMHeadModel.from_pretrained(str(last), local_files_only=True)
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        log(f"train: resuming from {last.name}")
    model.train()

    def batch_tensors(ids: np.ndarray):
        x = np.full((ids.size, config.seq_len), eos, dtype=np.int64)
        m = np.zeros((ids.size, config.seq_len), dtype=np.int64)
        for r, i in enumerate(ids.tolist()):
            d, s, n = inst[i]
            x[r, :n] = token_lists[d][s : s + n]
            m[r, :n] = 1
        xt, mt = torch.from_numpy(x), torch.from_numpy(m)
        return xt, mt, xt.masked_fill(mt == 0, -100)

    t_train = time.perf_counter()
    losses = []
    while step < total_steps:
        e, b = divmod(step, per_epoch)
        ids = epoch_orders[e][b * config.batch_size : (b + 1) * config.batch_size]
        x, m, y = batch_tensors(ids)
        for group in opt.param_groups:
            group["lr"] = config.lr * min(1.0, (step + 1) / max(config.warmup_steps, 1))
        loss = model(input_ids=x, attention_mask=m, labels=y).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        losses.append(loss.item())
        if step in ckpt_steps:
            _save_checkpoint(model, tokenizer, opt, step, ckpt_root)
            log(f"train: step {step}/{total_steps}, loss {np.mean(losses[-50:]):.3f}")
    torch.use_deterministic_algorithms(was_deterministic)

    final = ckpt_root / f"step-{total_steps:07d}"
    model_dir = out / "model"
    if model_dir.exists():
        import shutil

        shutil.rmtree(model_dir)
    import shutil

    shutil.copytree(final, model_dir, ignore=shutil.ignore_patterns(STATE_FILE))
    body = {
        "config": config.to_dict(), "documents": len(docs), "held_out_documents": int(held.sum()),
        "instances": len(inst), "trained_instances": int(train_ids.size), "steps": total_steps,
        "steps_per_epoch": per_epoch, "checkpoints": [f"step-{s:07d}" for s in ckpt_steps],
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "timing": {"wall_s": time.perf_counter() - t_start, "train_s": time.perf_counter() - t_train},
        "corpus": [str(s.path) for s in shards],
    }
    return io.write_stage_manifest(out, "train", body)


def _save_checkpoint(model, tokenizer, opt, step: int, root: Path) -> None:
    """Hugging Face files + optimizer state, written to a temporary directory and renamed."""
    import shutil

    import torch

    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    torch.save({"optimizer": opt.state_dict(), "step": step}, tmp / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
