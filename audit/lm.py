"""The causal language model: loading, one-pass scoring and greedy generation (numpy out).

With :mod:`audit.train`, the only module of ``audit/`` that imports torch and transformers,
inside the functions. Models load from local directories only (``local_files_only=True``,
``trust_remote_code=False``: a directory's own Python files never run), in float32 whatever
dtype the weights were saved in, on the GPU when one is present, else on the CPU, with deterministic
algorithms.

Decoding policy (issue #12, section 3; README "Greedy means greedy"; recorded by
:meth:`CausalLM.decoding`): plain arg-max at every step, from a fresh
:class:`transformers.GenerationConfig` (the directory's ``generation_config.json`` is never
read); EOS is an ordinary token (``eos_policy = "ordinary"``: never stops generation, never
banned, exactly C tokens emitted); ``bos = "auto"`` prepends the tokens the tokenizer adds in
front of a text (:func:`default_prefix`) as context only, ``"never"`` feeds the window alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .batching import config_int, text_config

#: Held by :meth:`CausalLM._map_batches`: torch's thread count is one per process.
_THREAD_COUNT = threading.Lock()


class ModelError(ValueError):
    """A model directory that is missing, unreadable, or not a causal LM."""


@dataclass
class TokenStats:
    """Per-position results of one teacher-forced forward pass over sequences (B, L); position t
    (0..L-2) is the prediction of token t+1 from tokens 0..t.

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

    def __init__(self, model, tokenizer, device: str, path: Path, bos: str = "never"):
        self.model, self.tokenizer, self.device, self.path, self.bos = model, tokenizer, device, path, bos
        #: token ids fed before every sequence (``bos="auto"``: what the tokenizer prepends)
        self.prefix: list[int] = default_prefix(tokenizer) if bos == "auto" else []

    @property
    def n_prefix(self) -> int:
        """Tokens fed before each sequence (0 or 1 in practice; see :meth:`score`)."""
        return len(self.prefix)

    def _with_prefix(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if self.prefix:  # the prefix is checked too: a tokenizer's BOS the embeddings were not resized for
            ids = np.concatenate([np.tile(np.asarray(self.prefix, dtype=np.int64), (ids.shape[0], 1)), ids], axis=1)
        n_embed = self.model.get_input_embeddings().num_embeddings
        if ids.size and not 0 <= ids.min() <= ids.max() < n_embed:  # else an IndexError deep in torch
            raise ModelError(f"{self.path}: token id {ids.max() if ids.max() >= n_embed else ids.min()} is outside "
                             f"the model's {n_embed} embeddings (a tokenizer or sequences of another model?)")
        return ids

    def generation_config(self, n_new: int):
        """The fresh generation config of :meth:`generate_greedy`: plain greedy, EOS ordinary, exactly
        ``n_new`` tokens, no logits processor."""
        from transformers import GenerationConfig

        pad = next((t for t in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id) if t is not None), 0)
        return GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=int(n_new), min_new_tokens=0,
                                eos_token_id=None, bos_token_id=None, pad_token_id=int(pad), repetition_penalty=1.0,
                                no_repeat_ngram_size=0, encoder_no_repeat_ngram_size=0, bad_words_ids=None,
                                forced_bos_token_id=None, forced_eos_token_id=None, suppress_tokens=None,
                                begin_suppress_tokens=None, sequence_bias=None, length_penalty=1.0, temperature=1.0,
                                top_k=None, top_p=None, renormalize_logits=False)

    def decoding(self, n_new: int) -> dict:
        """The decoding policy, for the manifest: EOS policy, BOS policy and prefix, and the
        generation config used (every field that differs from transformers' defaults)."""
        return {"eos_policy": "ordinary", "bos": {"policy": self.bos, "prefix": list(self.prefix)},
                "model_eos_token_id": self.tokenizer.eos_token_id,
                "generation_config": {**self.generation_config(n_new).to_diff_dict(), "repetition_penalty": 1.0,
                                      "no_repeat_ngram_size": 0, "do_sample": False, "num_beams": 1}}

    def check_causal(self) -> None:
        """ModelError unless changing the last of 8 tokens (fewer in a shorter context) leaves every
        earlier position's logits unchanged (to 1e-4 of their scale): AutoModelForCausalLM also loads
        bidirectional encoders such as BERT, whose audit would measure copying. Also ModelError: a
        context or vocabulary under 2, a failing forward pass, logits that are not finite."""
        import torch

        n, vocab = min(8, self.max_positions or 8), self.model.get_input_embeddings().num_embeddings
        if n < 2 or vocab < 2:  # no earlier position, or no other token: nothing an audit could measure
            raise ModelError(f"{self.path}: a context of {n} positions and a vocabulary of {vocab} tokens leave "
                             "nothing to audit")
        ids = torch.arange(n, device=self.device).remainder(vocab)[None].repeat(2, 1)
        ids[1, -1] = (ids[1, -1] + 1) % vocab
        try:
            with torch.no_grad():
                logits = self.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, :-1].float()
        except Exception as e:  # a damaged or exotic model: its first forward pass would fail the same way
            raise ModelError(f"{self.path}: a forward pass over {n} tokens failed: {type(e).__name__}: {e}") from e
        if not bool(torch.isfinite(logits).all()):
            raise ModelError(f"{self.path}: its logits over {n} tokens are not finite (NaN or infinity): damaged "
                             "weights?")
        if (logits[0] - logits[1]).abs().max() > 1e-4 * (1 + logits.abs().max()):
            raise ModelError(f"{self.path}: not causal: its predictions at earlier positions change when a later "
                             "token changes (an encoder such as BERT, loaded with a language-model head?); "
                             "memorisation audits need a causal LM")

    def check_tokenizer(self) -> None:
        """ModelError when the tokenizer encodes text to no tokens: transformers' empty fallback (a GPT2Tokenizer
        without vocabulary) for a directory without tokenizer files, such as a Trainer's checkpoint-N/."""
        if not self.encode(["a b"])[0]:
            raise ModelError(f"{self.path}: no usable tokenizer: it encodes text to no tokens (tokenizer files "
                             "missing?)")

    @property
    def max_positions(self) -> int | None:
        """The model's context length in tokens, if its config states one (a multimodal model's: its
        text model's, :func:`audit.batching.text_config`)."""
        return config_int(text_config(self.model.config), "n_positions", "max_position_embeddings", "n_ctx",
                          "seq_length", "max_seq_len", default=None)  # max_seq_len: MPT's

    def beyond_context(self, seq_len: int) -> str | None:
        """Why sequences of ``seq_len`` tokens overflow the model's context, else None: scoring or generating them
        feeds the prefix, then every token but the last, only predicted (:meth:`score`, :meth:`generate_greedy`)."""
        fed, n = self.n_prefix + int(seq_len) - 1, self.max_positions
        if n is not None and fed > n:  # else torch's IndexError (learned positions), or silently past RoPE's
            return (f"{seq_len} tokens feed {fed} positions ({'the BOS, then ' * bool(self.n_prefix)}all but the "
                    f"last token, which is only predicted), which exceeds the model's context of {n} tokens")

    def free_memory(self) -> int | None:
        """Bytes free on this model's GPU now (``torch.cuda.mem_get_info``), for
        ``--batch-size auto`` (:mod:`audit.batching`); None on a CPU."""
        if not str(self.device).startswith("cuda"):
            return None
        import torch

        return int(torch.cuda.mem_get_info(torch.device(self.device))[0])

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens (none for no texts: transformers fails on [])."""
        if not texts:
            return []
        try:
            return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        except Exception as e:  # the tokenizers library's plain Exception (a WordLevel vocabulary without unk)
            raise ModelError(f"{self.path}: its tokenizer cannot encode the text: {error_reason(e)}") from e

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def _map_batches(self, n: int, batch_size: int, run: Callable[[slice], tuple],
                     progress: Callable[[int, int], None] | None = None) -> list:
        """``run(rows)`` under ``torch.inference_mode`` for slices of the ``n`` rows, results in row
        order; ``progress(done, total)`` after each batch, in rows.

        On the CPU each batch is cut into as many slices as torch has threads, each run on ONE torch
        thread side by side: BLAS rounds by how it splits sums over threads, so results would depend on the thread
        count and the rows; on one thread they depend on neither. A model transformers marks ``_is_stateful``
        (Mamba, RecurrentGemma: state kept on its modules, a scan that rounds by the rows it holds) runs one row
        at a time, one after the other. On a GPU, one slice a batch. Calls from several Python threads take turns.
        """
        import torch
        from concurrent.futures import ThreadPoolExecutor

        def one(rows: slice):
            with torch.inference_mode():  # per thread
                return run(rows)

        results = []
        with _THREAD_COUNT:  # one call at a time: the thread count set and restored here is the process's
            threads = torch.get_num_threads()
            cpu = torch.device(self.device).type == "cpu"
            at_once = threads if cpu else 1
            stateful = getattr(getattr(self, "model", None), "_is_stateful", False)
            step = 1 if stateful and cpu else max(1, -(-batch_size // at_once))
            slices = [slice(s, min(s + step, b + batch_size, n)) for b in range(0, n, batch_size)
                      for s in range(b, min(b + batch_size, n), step)]
            try:
                if at_once > 1:
                    torch.set_num_threads(1)
                with ThreadPoolExecutor(1 if stateful else at_once) as pool:
                    for rows, r in zip(slices, pool.map(one, slices)):
                        results.append(r)
                        if progress is not None and (rows.stop % batch_size == 0 or rows.stop == n):  # a batch done
                            progress(rows.stop, n)
            finally:
                torch.set_num_threads(threads)
        return results

    def score(self, ids: np.ndarray, batch_size: int = 32,
              progress: Callable[[int, int], None] | None = None) -> TokenStats:
        """Teacher-forced forward passes over full-length sequences (B, L), ``batch_size`` at a time.

        The prefix (:attr:`n_prefix` tokens) is fed first: the arrays have ``L - 1 + n_prefix``
        columns, column t predicting token t+1 of prefix + ids. The attention mask is all ones
        (rows may contain the pad id). ``progress(done, total)`` as sequences are done.
        """
        import torch

        ids = self._with_prefix(ids)

        def run(rows: slice) -> tuple:
            x = torch.from_numpy(ids[rows]).to(self.device)
            # the last token is only predicted: left out where the context has no room for it (Pythia's 2049 tokens)
            fed = x if self.max_positions is None or x.shape[1] <= self.max_positions else x[:, :-1]
            logits = self.model(input_ids=fed, attention_mask=torch.ones_like(fed)).logits[:, : x.shape[1] - 1].float()
            am = logits.argmax(dim=-1)
            logits = logits - logits.amax(-1, keepdim=True)  # <= 0; all 0 where the prediction is uniform
            logp = torch.log_softmax(logits, dim=-1)
            target = x[:, 1:]
            tlp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            p = logp.exp()
            mu = (p * logp).sum(-1)
            # sigma of log p = that of the shifted logits, in two passes (E[lp^2] - mu^2 cancels): exactly 0
            # for a uniform prediction, where log p's deviations from mu are rounding
            m = (p * logits).sum(-1, keepdim=True)
            var = (p * (logits - m).square()).sum(-1)
            return (tlp.double().cpu().numpy(), (am == target).cpu().numpy(), am.cpu().numpy(),
                    mu.double().cpu().numpy(), var.clamp_min(0).sqrt().double().cpu().numpy())

        outs = self._map_batches(ids.shape[0], batch_size, run, progress)
        return TokenStats(*(np.concatenate([o[i] for o in outs]) for i in range(5)))

    def greedy_matches(self, ids: np.ndarray, prompt_len: int, batch_size: int = 32) -> np.ndarray:
        """bool (B, L - P): the arg-max prediction equals continuation token t, for t = P..L-1 of
        sequences ``ids`` (B, L): ``score(ids).greedy_match[:, P - 1:]`` at a fraction of the cost
        (the LM head runs only at the L - P positions predicting the continuation)."""
        import torch

        ids = np.asarray(ids, dtype=np.int64)
        P = int(prompt_len)
        if not 1 <= P < ids.shape[1]:
            raise ValueError(f"prompt_len must be in [1, {ids.shape[1] - 1}], got {prompt_len}")
        C = ids.shape[1] - P
        ids, P = self._with_prefix(ids), P + self.n_prefix

        def run(rows: slice) -> np.ndarray:
            x = torch.from_numpy(ids[rows, :-1]).to(self.device)
            logits = self.model(input_ids=x, attention_mask=torch.ones_like(x), logits_to_keep=C).logits
            return (logits.argmax(dim=-1) == torch.from_numpy(ids[rows, P:]).to(self.device)).cpu().numpy()

        outs = self._map_batches(ids.shape[0], batch_size, run)
        return np.concatenate(outs) if outs else np.zeros((0, C), dtype=bool)

    def generate_greedy(self, prompts: np.ndarray, n_new: int, batch_size: int = 32,
                        progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Greedy continuations (B, n_new) of equal-length prompts (B, P), after the prefix, by
        :meth:`generation_config` (all-ones attention mask); ``progress`` as for :meth:`score`."""
        import torch

        prompts = self._with_prefix(prompts)
        cfg = self.generation_config(n_new)
        saved = self.model.generation_config

        def run(rows: slice) -> np.ndarray:
            x = torch.from_numpy(prompts[rows]).to(self.device)
            y = self.model.generate(input_ids=x, attention_mask=torch.ones_like(x), generation_config=cfg)
            return y[:, x.shape[1]:].cpu().numpy()

        try:
            # generate() fills the config's unset fields from the model's generation_config: swap in the fresh one
            self.model.generation_config = cfg
            outs = self._map_batches(prompts.shape[0], batch_size, run, progress)
        finally:
            self.model.generation_config = saved
        return np.concatenate(outs) if outs else np.zeros((0, n_new), dtype=np.int64)

    def greedy_continuations(self, ids: np.ndarray, prompt_len: int, batch_size: int = 32,
                             greedy_match: np.ndarray | None = None,
                             progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """:meth:`generate_greedy` of the continuations (B, L - P) of ``ids`` (B, L) from their first ``prompt_len``
        tokens, checked to reproduce the leading continuation tokens that the teacher-forced pass (``greedy_match``,
        bool (B, L - 1 + n_prefix) of :meth:`score`, else :meth:`greedy_matches`) says greedy decoding does;
        ModelError where not: its generate() is not greedy decoding of its forward pass (transformers' RWKV mixes
        up the recurrent states of a batch's rows)."""
        ids, P = np.asarray(ids), int(prompt_len)
        C, at = ids.shape[1] - P, P + self.n_prefix - 1  # the column of greedy_match predicting token P
        generated = self.generate_greedy(ids[:, :P], C, batch_size, progress)
        said = greedy_match[:, at:at + C] if greedy_match is not None else self.greedy_matches(ids, P, batch_size)
        leading = [np.cumprod(m, axis=1).sum(axis=1) for m in (said, generated == ids[:, P:])]
        if (odd := np.count_nonzero(leading[0] != leading[1])):
            raise ModelError(f"{self.path}: its greedy generation disagrees with the teacher-forced pass on {odd} of "
                             f"{len(ids)} sequences (leading tokens reproduced); its generate() is not greedy "
                             "decoding of its forward pass")
        return generated


def default_prefix(tokenizer) -> list[int]:
    """The token ids a tokenizer puts in front of a text by default (``add_special_tokens``):
    ``[bos]`` for Llama-family tokenizers, ``[]`` for GPT-2's."""
    bare, full = (list(tokenizer("a", add_special_tokens=special)["input_ids"]) for special in (False, True))
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start]
    return []


def _offline() -> None:
    """No hub, no network for the Hugging Face libraries (unless the environment says otherwise)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def error_reason(e: BaseException, limit: int = 300) -> str:
    """Why a library raised ``e``, in one line of at most ``limit`` characters: its message's first
    line, with the second when the first ends in ":"; else its type."""
    lines = [" ".join(line.split()) for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
    said = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]
    return said if len(said) <= limit else said[:limit] + "..."


def damaged_tokenizer_json(path: Path) -> str | None:
    """``'<file>: not valid JSON (<why>)'`` for the first of the JSON files of ``path`` that AutoTokenizer
    reads that is not valid JSON (a truncated copy), else None: transformers' own error names no file."""
    for f in (path / n for n in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                 "added_tokens.json")):
        if f.is_file():
            try:
                json.loads(f.read_bytes())
            except (ValueError, OSError) as e:
                return f"{f}: not valid JSON ({error_reason(e)})"
    return None


def damaged_weights(path: Path) -> str | None:
    """``'<file>: cut short or damaged (<why>)'`` for the first weights file of ``path`` that is (an interrupted
    download): a safetensors file whose header does not open, a ``.bin`` zip archive without its end (torch's own
    error names no file, and says only 'Invalid argument'); else None."""
    from safetensors import safe_open

    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        try:
            if f.suffix == ".bin":  # torch.save's zip format (a legacy pickle is not checked)
                with open(f, "rb") as h:
                    if h.read(4) == b"PK\x03\x04" and not zipfile.is_zipfile(f):
                        raise ValueError("a zip archive without its end")
            else:
                with safe_open(str(f), "pt"):
                    pass
        except Exception as e:  # also safetensors' SafetensorError
            return f"{f}: cut short or damaged ({error_reason(e)})"
    return None


def load_causal_lm(path: str | os.PathLike, device: str | None = None, bos: str = "never") -> CausalLM:
    """Load a causal LM and its tokenizer from a local Hugging Face directory; ``bos``: the BOS
    policy (module docstring). ModelError: no directory, no config, no causal LM, or weights
    missing or misshapen (transformers would initialise them at random)."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: not a directory: a model is a directory holding config.json and the weights"
                         if path.exists() else f"{path}: model directory does not exist")
    if (path / "adapter_config.json").exists() and not (path / "config.json").exists():  # a peft (LoRA) adapter
        try:
            base = dict(json.loads((path / "adapter_config.json").read_bytes())).get("base_model_name_or_path")
        except (ValueError, TypeError, OSError):  # damaged: the message needs no base name
            base = None
        raise ModelError(f"{path}: a peft adapter (adapter_config.json), not a whole model: merge it into its base "
                         f"model{f' ({base})' if base else ''} with peft's merge_and_unload() and save_pretrained(), "
                         "then audit that")
    if not (path / "config.json").exists():  # a hub cache's models--org--name/, a train run, a Trainer's output?
        inside = sorted({p.parent for pattern in ("*/config.json", "*/*/config.json") for p in path.glob(pattern)},
                        key=lambda p: (len(p.parts), p))  # a run's model/ before its checkpoints/step-N/
        raise ModelError(f"{path}: no config.json: not a Hugging Face model directory" + (
            f"; these below it are: {', '.join(map(str, inside[:3]))}{', ...' if len(inside) > 3 else ''}"
            if inside else ""))
    _offline()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
        # not the attention its training recorded (FlashAttention has no float32): transformers' default
        config._attn_implementation = None
        # mismatched sizes are named below; generation_config.json is never read, so a bad one cannot refuse the model
        model, info = AutoModelForCausalLM.from_pretrained(str(path), config=config, local_files_only=True,
                                                           dtype=torch.float32, output_loading_info=True,
                                                           ignore_mismatched_sizes=True, trust_remote_code=False,
                                                           generation_config=GenerationConfig())
    except Exception as e:  # also safetensors' SafetensorError (a truncated file), torch's unpickling errors
        raise ModelError(f"{path}: not a causal language model transformers can load: "
                         f"{damaged_weights(path) or error_reason(e)}") from e
    if missing := sorted(info.get("missing_keys") or ()):  # transformers initialises them at random (a log line)
        raise ModelError(f"{path}: {len(missing)} of the model's weights are missing from its weights files "
                         f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): they would be random")
    if odd := sorted(info.get("mismatched_keys") or ()):  # (name, shape in the files, shape by config.json)
        shown = "; ".join(f"{k}: {list(a)} in the weights files, {list(b)} by config.json" for k, a, b in odd[:2])
        raise ModelError(f"{path}: {len(odd)} weights do not have the shapes config.json gives ({shown}"
                         f"{'; ...' if len(odd) > 2 else ''}): they would be random")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except Exception as e:  # also the tokenizers library's plain Exception (a tokenizer.json it cannot build)
        raise ModelError(f"{path}: no usable tokenizer: {damaged_tokenizer_json(path) or e}") from e
    model.to(device).eval()
    if bos not in ("auto", "never"):
        raise ValueError(f"bos must be 'auto' or 'never', got {bos!r}")
    try:
        lm = CausalLM(model, tokenizer, device, path, bos)
    except Exception as e:  # default_prefix encodes 'a': the tokenizers library's plain Exception, as in encode
        raise ModelError(f"{path}: its tokenizer cannot encode 'a' (to find its BOS): {error_reason(e)}") from e
    lm._with_prefix(np.zeros((1, 0)))  # ModelError now, not after sampling: a BOS (bos="auto") without embedding
    lm.check_causal()
    return lm


def tokenizer_fingerprint(tokenizer) -> str:
    """SHA-256 of a tokenizer's vocabulary (token -> id), to compare tokenizers; an audit
    records its model's as ``summary.json``'s ``model.tokenizer_sha256``."""
    h = hashlib.sha256()
    for tok, idx in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
        h.update(f"{idx}\t{tok}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def shared_token_ids(model: CausalLM, reference: CausalLM) -> np.ndarray:
    """The token ids (sorted int64) whose token both tokenizers' vocabularies hold, at the same id
    (a tokenizer that only gained tokens shares every other id). ModelError when a token both
    hold has two ids: another tokenizer."""
    ours, theirs = model.tokenizer.get_vocab(), reference.tokenizer.get_vocab()
    both = sorted(ours.keys() & theirs.keys(), key=ours.__getitem__)
    if (odd := next((t for t in both if ours[t] != theirs[t]), None)) is not None:
        raise ModelError(f"{reference.path}: its tokenizer differs from {model.path}'s (token {odd!r} is id "
                         f"{theirs[odd]} there, {ours[odd]} here); a reference model must share the tokenizer")
    return np.array([ours[t] for t in both], dtype=np.int64)


def load_tokenizer(path: str | os.PathLike):
    """``(tokenizer, fingerprint)`` of a local Hugging Face directory (a model or a tokenizer
    alone; :func:`tokenizer_fingerprint`), or ``(None, None)`` when it holds no usable
    tokenizer. Loads transformers, not torch."""
    _offline()
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except Exception:  # as load_causal_lm's
        return None, None
    return tok, tokenizer_fingerprint(tok)
