"""The tokenizer and the small deterministic trainer of ``memdedup train``.

A byte-level BPE tokenizer and a GPT-2-style model trained with AdamW, deterministically
(seeded order, initialisation and held-out split; deterministic torch algorithms), with
checkpoints and the data order recorded for memorisation profiles (layout: :mod:`audit.layout`).
torch, tokenizers and transformers are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dedup import io
from dedup.config import differing
from dedup.shards import InputError

from .config import TrainConfig, retention_checkpoints
from .layout import (CHECKPOINT_DIR, HELDOUT_FILE, MODEL_DIR, ORDER_FILE, RUN_ENTRIES, STATE_FILE, TOKENIZER_DIR,
                     TRAIN_CONFIG, checkpoint_name, holding_out, refuse_out)
from .lm import error_reason
from .sampling import corpus_rows, document_name

EOS = "<|endoftext|>"


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on ``texts`` (deterministic for the same texts in
    the same order), as ``PreTrainedTokenizerFast`` with bos = eos = pad = unk = <|endoftext|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return _fast_tokenizer(tok)


def _fast_tokenizer(tok):
    """``tok`` (a ``tokenizers.Tokenizer``) as ``PreTrainedTokenizerFast``, built alike when trained and
    when resumed, so the checkpoints' tokenizer files are the same bytes (not ``from_pretrained``)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS,
                                   unk_token=EOS, model_max_length=1 << 30)


def choose_heldout(texts: list[str], fraction: float, seed: int, dedup_config=None) -> np.ndarray:
    """bool (n,): the held-out documents, about ``fraction`` of them, chosen by WHOLE duplicate
    clusters in a seeded random order, each taken if it still fits under round(fraction * n): a
    held-out document has no exact or near duplicate that is trained on, so held-out means unseen
    (issue #12, section 1). Two texts are in one cluster when a chain of duplicates links them, a
    duplicate being dedup's as in :mod:`audit.duplicates` (a shared canonical exact key or LSH band
    key, with ``dedup_config``, default :class:`DedupConfig`)."""
    from dedup.arrow import string_array
    from dedup.config import DedupConfig
    from dedup.sketch import Sketcher

    target = int(round(fraction * len(texts)))
    if target == 0:  # also no texts
        return np.zeros(len(texts), dtype=bool)
    cfg = dedup_config or DedupConfig()
    sketcher = Sketcher(cfg, *cfg.banding())
    n = len(texts)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    first: dict[tuple, int] = {}
    step = 65536
    for s0 in range(0, n, step):
        sk = sketcher(string_array(texts[s0 : s0 + step]))
        for r in range(len(sk)):
            i = s0 + r
            keys = [("x", int(sk.exact[r, 0]), int(sk.exact[r, 1]))]
            if sk.n_shingles[r] > 0:
                keys += [("b", j, int(k)) for j, k in enumerate(sk.band_keys[r].tolist())]
            for key in keys:
                j = first.setdefault(key, i)
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    labels = np.array([find(i) for i in range(n)], dtype=np.int64)  # a cluster's smallest index
    uniq, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    taken, chosen = 0, np.zeros(uniq.size, dtype=bool)
    for c in np.random.default_rng(seed).permutation(uniq.size).tolist():
        if taken + sizes[c] <= target:
            chosen[c] = True
            taken += int(sizes[c])
            if taken == target:
                break
    return chosen[inverse]


def _instances(token_lists: list[list[int]], seq_len: int):
    """(doc index, token offset, length) of each instance: documents cut from their start;
    a last piece of at least 2 tokens is kept (padded when batched)."""
    return [(d, s, n) for d, ids in enumerate(token_lists) for s in range(0, len(ids), seq_len)
            if (n := min(seq_len, len(ids) - s)) >= 2]


def retention_design(epoch_orders: list[np.ndarray], inst: list[tuple[int, int, int]], doc_copies: np.ndarray,
                     config: TrainConfig) -> tuple[list[np.ndarray], dict]:
    """The epoch orders of a retention run and its design (Orhan 2024: items trained once, then
    training continues on other data only, re-probed at log-spaced steps).

    ``config.retention_items`` instances are drawn (seeded by ``[seed, 2**20]``) among the
    trained full-length instances whose document text is unique (``doc_copies == 1``). In
    epoch 1 they fill ``ceil(N / batch_size)`` consecutive steps right after the warm-up (step
    ``warmup_steps + 1``, earlier when epoch 1 is too short); the other instances keep their
    seeded order and the items are never trained again. The exposure step is the window's last.

    Returns the new orders and ``{"items", "instance_ids", "window": [first, last step],
    "exposure_step", "rule"}``; the trainer adds ``checkpoints`` and records it in the manifest
    (``retention``) and ``order.parquet`` (column ``retention_item``).
    """
    n, bs = int(config.retention_items), config.batch_size
    order0 = epoch_orders[0]
    eligible = np.array([i for i in np.sort(order0) if inst[i][2] == config.seq_len and doc_copies[inst[i][0]] == 1],
                        dtype=np.int64)
    if eligible.size < n:
        raise ValueError(f"retention_items={n}, but only {eligible.size} trained instances are full-length "
                         f"({config.seq_len} tokens) with unique text")
    items = np.sort(np.random.default_rng([config.seed, 1 << 20]).choice(eligible, size=n, replace=False))
    rest = order0[~np.isin(order0, items)]
    window = -(-n // bs)
    first = min(config.warmup_steps, rest.size // bs) + 1  # the window's first step (1-based)
    cut = (first - 1) * bs
    orders = [np.concatenate([rest[:cut], items, rest[cut:]])]
    orders += [o[~np.isin(o, items)] for o in epoch_orders[1:]]
    return orders, {"items": n, "instance_ids": [int(i) for i in items], "window": [first, first + window - 1],
                    "exposure_step": first + window - 1,
                    "rule": "trained once in epoch 1 right after warm-up, never again; lag measured from the "
                            "window's last step"}


def corpus_documents(shards, text_column: str, id_column: str | None,
                     id_required: bool = False) -> list[tuple[str, str, int, str]]:
    """(document id, shard name, row, text) of every corpus row; the id is ``shard:row`` without one
    (``id_required``: a file without ``id_column`` is refused).

    Raises InputError where an id names two rows: orders and members lists name documents by it."""
    return list(named_documents(corpus_rows(shards, text_column, id_column, id_required)))


def named_documents(rows) -> Iterator[tuple[str, str, int, str]]:
    """:func:`corpus_documents` of :func:`audit.sampling.corpus_rows`' ``rows``, one at a time (memory: the names
    seen, for the InputError of an id naming two rows, not the texts)."""
    seen = {}
    for shard, row, doc_id, text in rows:
        name = document_name(doc_id, shard.name, row)
        if name in seen:
            raise InputError(shard.path, f"id {name!r} also names row {seen[name][1]} of {seen[name][0]}; documents "
                             "are named by id in training orders: make ids unique, or train with --id-column '' "
                             "(no ids: documents named shard:row)", row=row)
        seen[name] = (shard.name, row)
        yield name, shard.name, row, text or ""


def corpus_digest(docs) -> str:
    """A run's ``corpus_sha256``: of the :func:`corpus_documents` ids, shards, rows and texts."""
    h = hashlib.sha256()
    for doc_id, shard_name, row, text in docs:
        h.update(f"{doc_id!r}\0{shard_name}\0{row}\0{len(text)}\0{text}".encode())
    return h.hexdigest()


def _remove_run(out: Path) -> None:
    """Remove a training run's own files from ``out`` (a user's stay): its manifest first (what is
    left is an unfinished run), then :data:`audit.layout.RUN_ENTRIES` in order, its config record last."""
    io.manifest_path(out).unlink(missing_ok=True)
    for entry in (out / name for name in RUN_ENTRIES):
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink(missing_ok=True)


def _out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is running out of memory (torch's CPU allocator raises a RuntimeError)."""
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and "allocate" in str(e))


def _write_checkpoint(path: Path, save: Callable[[Path], None]) -> None:
    """:func:`dedup.io.write_atomic` of one checkpoint; a full disk is an OSError naming ``path``
    (exit 2), not torch's RuntimeError or safetensors' SafetensorError."""
    from safetensors import SafetensorError

    try:
        io.write_atomic(path, save)
    except (RuntimeError, SafetensorError) as e:
        if _out_of_memory(e):
            raise  # the trainer's own message
        raise OSError(None, f"cannot write the checkpoint ({error_reason(e)}): is the disk full? Rerun to "
                            "resume from the checkpoint before it", str(path)) from None


@holding_out("out_dir")
def train_causal_lm(shards, out_dir: str | os.PathLike, config=None, log=print,
                    progress: Callable[[dict], None] = lambda state: None, replace: bool = False) -> dict:
    """Train a GPT-2-style LM on corpus shards, deterministically, with checkpoints.

    Writes ``out_dir`` as :mod:`audit.layout`'s RUN/: ``order.parquet``, one row per training exposure (instance_id,
    document_id, shard, row, token_offset, n_tokens, doc_copies (documents of the corpus with this exact text), epoch,
    step, first_step); ``heldout.parquet``, the instances of the held-out documents (:func:`choose_heldout`).
    A rerun with the same config and corpus (``corpus_sha256``: ids, shards, rows and texts) resumes from the last
    checkpoint and ends with the same bytes as an uninterrupted run, on any number of cores (``config.threads`` torch
    threads: README, "Threads and determinism"); another config or corpus is refused, or with ``replace`` its run's
    files are removed and training starts over.

    ``progress`` is called after every optimizer step with ``{"phase": "train", "unit":
    "steps", "done", "total", "extra": "loss L"}`` (L: mean of the last 50 steps' losses, in
    nats per token), and with ``{"phase": None}`` when training ends.
    """
    import torch
    from tokenizers import Tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    config = config or TrainConfig()
    # the config as its record and manifest hold it, what a rerun must match: all but id_column_required
    recorded = {k: v for k, v in config.to_dict().items() if k != "id_column_required"}
    out = Path(out_dir)
    t_start = time.perf_counter()
    refuse_out(out, [], "train")
    manifest_path, cfg_file = io.manifest_path(out), out / TRAIN_CONFIG
    # the finished run's manifest, else the unfinished run's record (an older one: the config alone)
    held = io.read_json(manifest_path) if manifest_path.exists() else io.read_json(cfg_file) if cfg_file.exists() else None
    which = "a finished" if manifest_path.exists() else "an unfinished"
    if held is not None and not isinstance(held.get("config", held), dict):
        raise io.StateError(f"{manifest_path if which == 'a finished' else cfg_file}: damaged (its 'config' is not an "
                            "object)")
    differs = differing(held.get("config", held), recorded) if held is not None else []
    stale = bool(differs)
    if stale and not replace:
        raise ValueError(f"{out} holds {which} training run with another config ({', '.join(differs)} "
                         f"differ{'s' if len(differs) == 1 else ''}); choose another --out, or --replace to remove it")
    # Nothing is written until the corpus and the config have passed every check below: a
    # refused config leaves no run state, and the corrected command runs in the same --out.

    docs = corpus_documents(shards, config.text_column, config.id_column, config.id_column_required)
    if not docs:
        raise ValueError("the corpus has no documents")
    digest = corpus_digest(docs)
    if held is not None and not stale and held.get("corpus_sha256", digest) != digest:
        if not replace:
            raise ValueError(f"{out} holds {which} training run on another corpus (documents, shards or rows "
                             "differ); choose another --out, or --replace to remove it")
        stale = True  # another corpus: replaced as another config is
    if stale:  # only with replace
        log(f"train: {out} held {which} training run with another config or corpus: starting over")
        _remove_run(out)
        held = None
    if which == "a finished" and held is not None:
        log(f"{out}: training already complete")
        return held
    fresh = held is None  # no run state before this call: running out of memory below removes what it wrote
    held = choose_heldout([d[3] for d in docs], config.holdout, config.seed)
    if config.holdout > 0 and not held.any():  # round(holdout * n) = 0, or every duplicate cluster too large
        log(f"train: note: --holdout {config.holdout:g} holds out none of the {len(docs)} documents (whole duplicate "
            "clusters, up to round(holdout * documents)); profile needs held-out documents: raise it")
    copies = Counter(d[3] for d in docs)
    doc_copies = np.array([copies[d[3]] for d in docs], dtype=np.int64)
    tok_dir = out / TOKENIZER_DIR
    tokenizer_saved = (tok_dir / "tokenizer.json").exists()
    if tokenizer_saved:
        try:
            tokenizer = _fast_tokenizer(Tokenizer.from_file(str(tok_dir / "tokenizer.json")))
        except Exception as e:  # tokenizers raises Exception itself
            raise io.StateError(f"{tok_dir / 'tokenizer.json'}: damaged ({error_reason(e)}); remove {tok_dir} and "
                                "rerun: the tokenizer is trained again, the same") from None
    else:
        tokenizer = train_tokenizer([d[3] for d, h in zip(docs, held) if not h], config.vocab_size)
    eos = tokenizer.convert_tokens_to_ids(EOS)
    token_lists = [list(t) for t in tokenizer([d[3] for d in docs], add_special_tokens=False)["input_ids"]]
    inst = _instances(token_lists, config.seq_len)
    train_ids = np.array([i for i, (d, _, _) in enumerate(inst) if not held[d]], dtype=np.int64)
    if train_ids.size == 0:
        raise ValueError("no training instance: documents too short or all held out")
    epoch_orders = [train_ids[np.random.default_rng([config.seed, e]).permutation(train_ids.size)]
                    for e in range(config.epochs)]
    retention = None
    if config.retention_items:
        epoch_orders, retention = retention_design(epoch_orders, inst, doc_copies, config)
    epoch_steps = [-(-o.size // config.batch_size) for o in epoch_orders]
    epoch_ends = np.cumsum(epoch_steps).tolist()
    total_steps = int(epoch_ends[-1])
    # batches[s] = the instances of step s + 1 (an epoch's last batch may be short)
    batches = [o[b * config.batch_size : (b + 1) * config.batch_size] for o, k in zip(epoch_orders, epoch_steps)
               for b in range(k)]
    if retention is not None:
        retention["checkpoints"] = retention_checkpoints(retention["window"][0], retention["exposure_step"], total_steps)

    out.mkdir(parents=True, exist_ok=True)
    io.write_json_atomic(cfg_file, {"config": recorded, "corpus_sha256": digest})
    if not tokenizer_saved:
        io.write_atomic(tok_dir, lambda tmp: tokenizer.save_pretrained(str(tmp)))

    # order.parquet and heldout.parquet: a pure function of config and corpus.
    def instance_columns(ids: list[int]) -> dict[str, list]:
        d = [inst[i][0] for i in ids]
        return {"instance_id": ids, "document_id": [str(docs[j][0]) for j in d], "shard": [docs[j][1] for j in d],
                "row": [docs[j][2] for j in d], "token_offset": [inst[i][1] for i in ids],
                "n_tokens": [inst[i][2] for i in ids]}

    # one (instance, epoch, step) per exposure; epoch_ends[e] - epoch_steps[e] = steps before epoch e
    exposed = [(i, e, epoch_ends[e] - epoch_steps[e] + pos // config.batch_size + 1)
               for e, order in enumerate(epoch_orders) for pos, i in enumerate(order.tolist())]
    ids = [i for i, _, _ in exposed]
    rows = {**instance_columns(ids), "doc_copies": [int(doc_copies[inst[i][0]]) for i in ids],
            "epoch": [e for _, e, _ in exposed], "step": [st for _, _, st in exposed]}
    first = dict(zip(reversed(ids), reversed(rows["step"])))  # steps ascend: each instance's first exposure wins
    rows["first_step"] = pa.array([first[i] for i in ids], pa.int64())
    if retention is not None:  # the design, in the order too: which rows are the retention items
        items = set(retention["instance_ids"])
        rows["retention_item"] = pa.array([i in items for i in ids], pa.bool_())
    order_table = pa.table(rows)
    io.write_atomic(out / ORDER_FILE, lambda tmp: pq.write_table(order_table, tmp))
    held_cols = instance_columns([i for i in range(len(inst)) if held[inst[i][0]]])  # typed as the order's, even empty
    held_table = pa.table(held_cols, schema=order_table.select(list(held_cols)).schema)
    io.write_atomic(out / HELDOUT_FILE, lambda tmp: pq.write_table(held_table, tmp))

    was_deterministic, was_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    step = 0
    try:
        torch.manual_seed(config.seed)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(config.threads)  # the weights depend on it (TrainConfig.threads)
        model_cfg = GPT2Config(vocab_size=len(tokenizer), n_positions=max(128, config.seq_len), n_layer=config.n_layer,
                               n_embd=config.n_embd, n_head=config.n_head, bos_token_id=eos, eos_token_id=eos,
                               pad_token_id=eos, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        model = GPT2LMHeadModel(model_cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        # with each epoch's last step, and a retention run's probes
        ckpt_steps = config.checkpoint_steps(total_steps, epoch_ends=epoch_ends,
                                             retention=retention["checkpoints"] if retention else None)
        ckpt_root = out / CHECKPOINT_DIR
        losses: list[float] = []
        existing = sorted(p for p in ckpt_root.glob("step-*") if (p / STATE_FILE).exists())  # no checkpoints/ yet: none
        if existing:
            last = existing[-1]
            try:
                state = torch.load(last / STATE_FILE, weights_only=False)
                model = GPT2LMHeadModel.from_pretrained(str(last), local_files_only=True)
                opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
                opt.load_state_dict(state["optimizer"])
                step = state.get("global_step", state.get("step"))
                if not isinstance(step, int) or checkpoint_name(step) != last.name:
                    raise ValueError(f"its {STATE_FILE} says step {step!r}")
            except Exception as e:  # a truncated copy: torch's, pickle's or safetensors' error
                raise io.StateError(f"{last}: damaged checkpoint, the run cannot resume from it ({error_reason(e)}); "
                                    "remove it and rerun to resume from the checkpoint before it") from None
            losses = list(state.get("losses", []))  # the last 50 steps': the progress line's and final_loss's
            log(f"train: resuming from {last.name}")
        model.train()

        def save_checkpoint(tmp: Path) -> None:
            tmp.mkdir(parents=True)
            model.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            # not the key "step": pickle would refer back to the optimizer state's "step" key when it
            # is the same string object, which it is in a fresh run and not in a resumed one
            torch.save({"optimizer": opt.state_dict(), "global_step": step, "losses": losses[-50:]}, tmp / STATE_FILE)

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
        while step < total_steps:
            x, m, y = batch_tensors(batches[step])
            for group in opt.param_groups:
                group["lr"] = config.lr * min(1.0, (step + 1) / max(config.warmup_steps, 1))
            loss = model(input_ids=x, attention_mask=m, labels=y).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            losses.append(loss.item())
            if not np.isfinite(losses[-1]) and np.isfinite(losses[-2] if len(losses) > 1 else 0.0):
                log(f"train: the training loss is not finite from step {step} ({losses[-1]}): training diverged, and "
                    "the checkpoints from then on hold no usable weights; lower --lr")
            progress({"phase": "train", "unit": "steps", "done": step, "total": total_steps,
                      "extra": f"loss {np.mean(losses[-50:]):.3f}"})
            if step in ckpt_steps:  # Hugging Face files + optimizer state, written to a temporary directory and renamed
                _write_checkpoint(ckpt_root / checkpoint_name(step), save_checkpoint)
                log(f"train: step {step}/{total_steps}, loss {np.mean(losses[-50:]):.3f}")
    except (MemoryError, RuntimeError) as e:
        if not _out_of_memory(e):
            raise
        # every step has the same shapes: the corrected command must start afresh in this --out
        if fresh and not any((out / CHECKPOINT_DIR).glob("step-*")):
            _remove_run(out)
        raise ValueError(f"out of memory at training step {step + 1}: each step holds --batch-size "
                         f"{config.batch_size} instances padded to --seq-len {config.seq_len} tokens through a "
                         f"{config.n_layer}-layer model of width {config.n_embd}; lower them") from None
    finally:  # however training ends: the progress phase closed, torch's settings as the caller had them
        progress({"phase": None})
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(was_threads)

    final = ckpt_root / checkpoint_name(total_steps)
    io.write_atomic(out / MODEL_DIR, lambda tmp: shutil.copytree(final, tmp, ignore=shutil.ignore_patterns(STATE_FILE)))
    body = {
        "config": recorded, "documents": len(docs), "held_out_documents": int(held.sum()),
        "instances": len(inst), "trained_instances": int(train_ids.size), "steps": total_steps,
        "steps_per_epoch": epoch_steps[0], "epoch_end_steps": [int(x) for x in epoch_ends],
        "checkpoints": [checkpoint_name(s) for s in ckpt_steps],
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "timing": {"wall_s": time.perf_counter() - t_start, "train_s": time.perf_counter() - t_train},
        "corpus": [str(s.path) for s in shards], "corpus_sha256": digest,
    }
    if retention is not None:
        body["retention"] = retention
    return io.write_stage_manifest(out, "train", body)
