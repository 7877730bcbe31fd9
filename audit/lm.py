"""The causal language model: loading, one-pass scoring and greedy generation.

With :mod:`audit.train` (the tokenizer and the deterministic trainer), one of the two modules
of ``audit/`` that import torch and transformers, inside the functions, so ``import audit``
stays light (an architecture test checks both). Everything it returns is numpy.

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
        """SHA-256 of the tokenizer's vocabulary (:func:`tokenizer_fingerprint`)."""
        return tokenizer_fingerprint(self.tokenizer)

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


def tokenizer_fingerprint(tokenizer) -> str:
    """SHA-256 of a tokenizer's vocabulary (token -> id), to compare tokenizers; an audit
    records its model's as ``summary.json``'s ``model.tokenizer_sha256``."""
    vocab = tokenizer.get_vocab()
    h = hashlib.sha256()
    for tok, idx in sorted(vocab.items(), key=lambda kv: kv[1]):
        h.update(f"{idx}\t{tok}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def load_tokenizer(path: str | os.PathLike):
    """``(tokenizer, fingerprint)`` of a local Hugging Face directory (a model or a tokenizer
    alone; :func:`tokenizer_fingerprint`), or ``(None, None)`` when it holds no usable
    tokenizer. Loads transformers, not torch."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError):
        return None, None
    return tok, tokenizer_fingerprint(tok)
