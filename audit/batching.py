"""The audit's batch size when ``--batch-size auto``: the largest that fits the memory left.

The audit's forward passes (:meth:`audit.lm.CausalLM.score`, ``generate_greedy``) hold, per
sequence of L tokens (prompt + continuation + prefix) in a batch:

* :data:`LOGIT_COPIES` = 6 float32 arrays of L x V (V = vocabulary size; logits, their float32 copy, log-softmax,
  its exp, Min-K%++'s products (Zhang et al. 2024)): the dominant term, ~77 MB at GPT-2's
  V = 50,257 and L = 64;
* per-layer activations (freed layer by layer): attention probabilities (heads x L x L) and
  MLP hidden states (4 x L x width), twice over;
* greedy generation's KV cache: 2 x layers x L x width.

The rule (:func:`auto_batch_size`): the largest power of two <= ``SAFETY x free /
per_sequence``, in [1, :data:`MAX_BATCH`] (CPU: :data:`MAX_BATCH_CPU`, compute-bound well
before). ``free``: ``MemAvailable`` of ``/proc/meminfo`` (else free physical pages) on a CPU,
``torch.cuda.mem_get_info`` on a GPU (:meth:`audit.lm.CausalLM.free_memory`), after the model
is loaded; ``SAFETY`` = 0.5 leaves room for the allocator and the rest of the process.
"""

from __future__ import annotations

import os

#: float32 L x V arrays a scoring batch holds at its peak, per sequence.
LOGIT_COPIES = 6
#: Fraction of the free memory a batch may use.
SAFETY = 0.5
#: Upper bounds of the automatic batch size (sequences): any device, and a CPU.
MAX_BATCH = 1024
MAX_BATCH_CPU = 64


def bytes_per_sequence(seq_len: int, vocab: int, width: int, layers: int, heads: int) -> int:
    """Peak bytes (float32) one sequence of ``seq_len`` tokens adds to a batch (module docstring)."""
    L = int(seq_len)
    logits = LOGIT_COPIES * L * int(vocab) * 4
    activations = 2 * (int(heads) * L * L + 4 * L * int(width)) * 4
    kv_cache = 2 * int(layers) * L * int(width) * 4
    return logits + activations + kv_cache


def available_memory() -> int:
    """Bytes free for batches on the CPU now, after the model is loaded (module docstring)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def auto_batch_size(per_sequence: int, free: int, device: str = "cpu") -> int:
    """The batch size of the module docstring's rule.

    >>> auto_batch_size(per_sequence=100 * 2**20, free=16 * 2**30)       # 8 GiB usable / 100 MiB
    64
    >>> auto_batch_size(per_sequence=100 * 2**20, free=16 * 2**30, device="cuda")
    64
    >>> auto_batch_size(per_sequence=10 * 2**20, free=80 * 2**30, device="cuda")  # capped
    1024
    >>> auto_batch_size(per_sequence=2**30, free=2**30)                  # never below 1
    1
    """
    fit = int(SAFETY * max(int(free), 0) // max(int(per_sequence), 1))
    cap = MAX_BATCH_CPU if str(device) == "cpu" else MAX_BATCH
    n = max(1, min(fit, cap))
    return 1 << (n.bit_length() - 1)


def config_int(cfg, *names: str, default: int | None = 0) -> int | None:
    """The first of the attributes ``names`` that a model config sets to a positive int, else ``default``."""
    for n in names:
        v = getattr(cfg, n, None)
        if isinstance(v, int) and v > 0:
            return v
    return default


def text_config(cfg):
    """The config holding a model's text numbers: a multimodal checkpoint's ``text_config`` (Gemma 3's,
    which AutoModelForCausalLM loads as Gemma3ForConditionalGeneration), else the config itself."""
    get = getattr(cfg, "get_text_config", None)
    return get() if callable(get) else cfg


def model_shape(model) -> dict:
    """Vocabulary size, width, layers and heads of a transformers causal LM, read from its
    config under the names the common architectures use (GPT-2: n_embd, n_layer, n_head;
    Llama, GPT-NeoX, Qwen2, OLMo: hidden_size, num_hidden_layers, num_attention_heads)."""
    cfg = text_config(model.config)
    vocab = config_int(cfg, "vocab_size")
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if out is not None and getattr(out, "weight", None) is not None:
        vocab = max(vocab, int(out.weight.shape[0]))
    return {"vocab": vocab, "width": config_int(cfg, "hidden_size", "n_embd", "d_model"),
            "layers": config_int(cfg, "num_hidden_layers", "n_layer", "num_layers"),
            "heads": config_int(cfg, "num_attention_heads", "n_head", default=1)}


def resolve_batch_size(batch_size: int | str, lm, seq_len: int, free: int | None = None) -> tuple[int, dict | None]:
    """``batch_size`` itself, or for ``"auto"`` the batch size of :func:`auto_batch_size` for
    ``lm`` (an :class:`audit.lm.CausalLM`) and sequences of ``seq_len`` tokens (its prefix
    added); with the numbers behind it (for the manifest), else None."""
    if batch_size != "auto":
        return int(batch_size), None
    shape = model_shape(lm.model)
    L = int(seq_len) + lm.n_prefix
    per = bytes_per_sequence(L, **shape)
    if free is None:
        free = lm.free_memory()  # None on a CPU
    free = int(available_memory() if free is None else free)
    n = auto_batch_size(per, free, lm.device)
    return n, {"rule": f"largest power of two <= {SAFETY} x free memory / bytes per sequence, in [1, "
                       f"{MAX_BATCH_CPU if lm.device == 'cpu' else MAX_BATCH}]", "batch_size": n,
               "device": str(lm.device), "free_bytes": free, "bytes_per_sequence": per, "seq_len": L, **shape}


__all__ = ["auto_batch_size", "available_memory", "bytes_per_sequence", "model_shape", "resolve_batch_size",
           "text_config"]
