"""One audit of one model (or checkpoint): sample, score, join with dedup, aggregate, write ``OUT/``
(:mod:`audit.layout`): ``per_sequence.parquet``, ``summary.json`` (:func:`audit.aggregate.summarise`,
:func:`audit.aggregate.dedup_retention`) and ``manifest.json``, last."""

from __future__ import annotations

import codecs
import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Container, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dedup import io
from dedup import layout as dedup_layout
from dedup.config import DedupConfig
from dedup.runs import discover
from dedup.shards import InputError, ShardReader, count_rows, format_of, id_strings, is_plain_json

from . import aggregate, batching, metrics
from .config import AuditConfig
from .duplicates import ShardRows, dedup_status, duplicate_counts
from .occurrences import corpus_documents, count_occurrences
from .layout import (PER_SEQUENCE, SUMMARY, holding_out, per_sequence_schema, refuse_out, training_run,
                     training_run_digest)
from .sampling import (corpus_batches, document_name, per_bucket_selection, sample_sequences,
                       sequences_from_file)
from .stats import duplicate_bucket


def _dedup_context(dedup_dir: Path, shards) -> tuple[DedupConfig, ShardRows, dict]:
    """Dedup's config, removed rows and manifest. InputError unless every corpus shard is an input of the
    dedup run (same name, rows and size): removed rows are matched to sampled documents by (shard name, row)."""
    manifest = io.completed_manifest(dedup_dir, "dedup")
    removed = dedup_layout.read_removed_table(dedup_dir, ["shard", "row"])
    config = DedupConfig(**{k: v for k, v in manifest["config"].items() if k in DedupConfig.field_names()})
    rows = dedup_layout.input_rows(manifest, dedup_dir)
    for shard in shards:
        if rows and rows.get(shard.name) != (n := count_rows([shard])):
            raise InputError(dedup_dir, f"not the dedup output of this corpus: none of its {len(rows)} inputs is "
                                        f"{shard.name!r} of {n} rows ({shard.path}; shards are named by their path "
                                        "below the inputs' common directory: give the corpus as the dedup run had it)")
        if why := dedup_layout.other_bytes(manifest, shard.name, shard.path.stat().st_size, str(shard.path)):
            raise InputError(dedup_dir, f"not the dedup output of this corpus: {why}")
    return config, ShardRows(removed), manifest


def _members(path: Path) -> set[str]:
    """Training-set document ids: a text file (one id per line) or Parquet (``.parquet``, ``.pq``) with ``id``
    or ``document_id``; InputError: other table formats (JSON Lines, JSON, Arrow, CSV, TSV)."""
    if not path.exists():
        raise InputError(path, "members file does not exist")
    fmt = (format_of(path) or (path.suffix.lower()[1:],))[0]
    give = "give a text file of one id per line, or Parquet with an 'id' or 'document_id' column"
    if fmt in ("jsonl", "arrow", "csv", "tsv"):  # else read as text, each line an id: no document would match
        raise InputError(path, f"a {'JSON' if is_plain_json(path) else fmt.upper()} members file: {give}")
    if fmt == "parquet":
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as e:
            raise InputError(path, f"unreadable members file: {e}") from e
        if (col := next((c for c in ("id", "document_id") if c in table.column_names), None)) is None:
            raise InputError(path, f"no 'id' or 'document_id' column; columns are {table.column_names}")
        ids = {x for x in id_strings(table.column(col), path, col).to_pylist() if x is not None}
    else:
        try:
            raw = path.read_bytes()
            bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0  # Notepad, PowerShell
            ids = {line.strip() for line in raw[bom:].decode("utf-8").splitlines() if line.strip()}
        except UnicodeDecodeError as e:
            raise InputError(path, f"not valid UTF-8 ({e.reason} at byte {bom + e.start}): {give}") from e
    if not ids:  # every sequence would be a non-member
        raise InputError(path, "members file holds no ids")
    return ids


MEMBERSHIP_RULE = ("content: a sequence is a member iff its document or any exact duplicate (dedup's canonical "
                   "key) or near duplicate (a shared LSH band, dedup's shingling and parameters) of it has an id "
                   "in --members; non-members: none of them was trained on")
MEMBERSHIP_RULE_ID = "document id: the sequence's document id is in --members (its document text is unknown)"


def membership_labels(doc_ids: list, member_ids: set[str] | None, dup) -> tuple[list, dict | None]:
    """Membership labels by content (issue #12, section 1), and how they were determined.

    A sequence is a member iff its document, or an exact or near duplicate of it (``dup``,
    :func:`audit.duplicates.duplicate_counts`: dedup's definitions), is in the members list by name (``doc_ids``:
    :func:`audit.sampling.document_name`); without document texts (explicit token sequences) the id alone decides.
    Returns (labels, None where unknown; ``summary.json``'s ``membership_labels``), or ([None...], None) without a
    members list.
    """
    if member_ids is None:
        return [None] * len(doc_ids), None
    by_id = np.array([d is not None and str(d) in member_ids for d in doc_ids], dtype=bool)
    member = by_id if dup is None else by_id | dup.member_duplicate
    out = [None if (dup is None and d is None) else bool(m) for d, m in zip(doc_ids, member)]
    known = np.array([m is not None for m in out], dtype=bool)
    return out, {"rule": MEMBERSHIP_RULE_ID if dup is None else MEMBERSHIP_RULE, "members": int(member[known].sum()),
                 "non_members": int((~member[known]).sum()), "members_by_id": int(by_id[known].sum()),
                 "members_by_duplicate": int((member & ~by_id)[known].sum())}


@holding_out("out", inputs=("model_dir", "reference", "dedup_dir"))
def run_audit(model_dir: str | os.PathLike, corpus: str | os.PathLike | Sequence[str | os.PathLike],
              out: str | os.PathLike, config: AuditConfig = AuditConfig(), *,
              dedup_dir: str | os.PathLike | None = None, members: str | os.PathLike | None = None,
              reference: str | os.PathLike | None = None, sequences: str | os.PathLike | None = None,
              log: Callable[[str], None] = print,
              progress: Callable[[dict], None] = lambda state: None) -> dict:
    """Audit one model; return the summary (also written to ``out``). ``progress`` gets ``{"phase", "unit",
    "done", "total"}`` as ``score``, ``generate`` (sequences) and ``occurrences`` (corpus documents) advance, then
    ``{"phase": None}``. ValueError (nothing written): ``out`` is or lies inside the model, reference or dedup
    directory, or holds another stage's output."""
    from .lm import ModelError, load_causal_lm, shared_token_ids, tokenizer_fingerprint

    t_start = time.perf_counter()
    out = Path(out)
    refuse_out(out, [model_dir, reference, dedup_dir], "audit")
    if config.count_tokens and dedup_dir is None:
        warnings.warn("count_tokens needs a dedup output (--dedup-dir): it counts the corpus tokens dedup kept; "
                      "none are counted")
    shards = discover(corpus, exclude=out)  # one path, or a sequence of them
    if config.id_column_required and sequences is not None:  # a column named by --id-column must exist, as in
        for s in shards:  # dedup (sampled sequences check it as they count the rows)
            ShardReader(s, config.text_column, config.id_column, True, 1)
    dedup_cfg, removed, dedup_manifest = (_dedup_context(Path(dedup_dir), shards) if dedup_dir
                                          else (DedupConfig(), ShardRows(), None))
    member_ids = _members(Path(members)) if members else None
    run = training_run(model_dir)  # the memdedup train run the model is of: its record as the model is loaded
    trained_by = {"path": str(run.resolve()), "sha256": training_run_digest(run)} if run is not None else None
    lm = load_causal_lm(model_dir, bos=config.bos)
    lm.check_tokenizer()
    ref = None
    if reference is not None:
        ref = load_causal_lm(reference, bos=config.bos)
        shared = shared_token_ids(lm, ref)
        if ref.prefix != lm.prefix:  # (--bos auto) the two would score different tokens
            raise ModelError(f"{reference}: its tokenizer prepends {ref.prefix} by default and {model_dir}'s prepends "
                             f"{lm.prefix}; a reference model must share the tokenizer (or pass --bos never)")
    # --batch-size auto: resolved once, after the models are loaded (audit.batching)
    batch_size, batch_auto = batching.resolve_batch_size(config.batch_size, lm, config.seq_len)
    config = dataclasses.replace(config, batch_size=batch_size)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    P, C = config.prompt_len, config.cont_len
    for m in (lm, ref):  # the BOS (--bos auto) is fed too
        if m is not None and (why := m.beyond_context(P + C)):
            raise ModelError(f"{m.path}: prompt + continuation = {why}")
    if sequences is not None:
        seqs = sequences_from_file(sequences, P, C, shards, lm.encode, config.text_column, config.id_column,
                                   lm.model.get_input_embeddings().num_embeddings)
    else:
        seqs = sample_sequences(shards, lm.encode, config.n_sequences, P, C, config.seed, config.offset,
                                config.text_column, config.id_column, config.id_column_required)
    missing = f"; {seqs.skipped_missing} ids not in the corpus" if seqs.skipped_missing else ""
    if len(seqs) == 0:
        raise InputError(sequences or shards[0].path,
                         f"no sequence of at least {P + C} tokens ({seqs.skipped_short} shorter ones skipped{missing})")
    def batches(phase: str):
        return lambda done, total: progress({"phase": phase, "unit": "sequences", "done": done, "total": total})

    def corpus():
        """The tokenized corpus, one document at a time, counted for the progress line."""
        total = count_rows(shards)
        for i, doc in enumerate(corpus_documents(shards, lm.encode, config.text_column, config.id_column), start=1):
            yield doc
            progress({"phase": "occurrences", "unit": "documents", "done": i, "total": total})

    occurrences = None
    if config.per_bucket is not None:
        occurrences = count_occurrences(seqs.tokens, corpus())
        keep = per_bucket_selection(seqs.tokens, occurrences, config.per_bucket)
        seqs, occurrences = seqs.subset(keep), occurrences[keep]
    if ref is not None and len(odd := np.setdiff1d(seqs.tokens, shared)):
        token = lm.tokenizer.convert_ids_to_tokens(int(odd[0]))  # None: an embedding row no token names
        what = f"id {odd[0]}, which no token of {model_dir}'s tokenizer names," if token is None else \
            f"token {token!r} (id {odd[0]})"
        raise ModelError(f"{reference}: {what} of the audited sequences is not in {reference}'s vocabulary: it would "
                         "score another token")
    timings["sample"] = time.perf_counter() - t0
    log(f"audit: {len(seqs)} sequences of {P}+{C} tokens ({seqs.skipped_short} documents too short, skipped{missing})")

    t0 = time.perf_counter()
    stats = lm.score(seqs.tokens, config.batch_size, progress=batches("score"))
    exact, leading = metrics.extraction(stats.greedy_match, P + lm.n_prefix, C)
    timings["score"] = time.perf_counter() - t0
    generated = pythia = None
    if config.generate:
        t0 = time.perf_counter()
        try:
            generated = lm.greedy_continuations(seqs.tokens, P, config.batch_size, stats.greedy_match,
                                                progress=batches("generate"))
        except ModelError as e:
            raise ModelError(f"{e}: audit without --generate") from None
        pythia = metrics.pythia_score(generated, seqs.tokens[:, P:])
        timings["generate"] = time.perf_counter() - t0
    texts = [lm.decode(t).encode("utf-8") for t in seqs.tokens]
    scores = {"loss": metrics.score_loss(stats.logprob), "zlib": metrics.score_zlib(stats.logprob, texts),
              "min_k": metrics.score_min_k(stats.logprob, config.k),
              "min_k_plus_plus": metrics.score_min_k_plus_plus(stats.logprob, stats.mu, stats.sigma, config.k)}
    if ref is not None:
        scores["reference"] = metrics.score_reference(stats.logprob, ref.score(seqs.tokens, config.batch_size,
                                                                                progress=batches("reference")).logprob)

    t0 = time.perf_counter()
    own, nulls = list(zip(seqs.shard, seqs.row.tolist())), [None] * len(seqs)
    if all(t is not None for t in seqs.doc_text):
        dup = duplicate_counts(seqs.doc_text, own, shards, dedup_cfg, removed, member_ids)
        counts, status = dup.count, dedup_status(own, dup, removed) if dedup_dir else nulls
    else:  # explicit token sequences without their documents
        dup, counts, status = None, np.full(len(seqs), -1), nulls
    timings["duplicates"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if occurrences is None:
        occurrences = count_occurrences(seqs.tokens, corpus())
    timings["occurrences"] = time.perf_counter() - t0
    # buckets by exact occurrences (Carlini, Kandpal); an explicit sequence absent from the corpus: bucket "0"
    buckets = [duplicate_bucket(int(c)) if c >= 1 else "0" for c in occurrences]
    names = [document_name(d, s, r) for d, s, r in zip(seqs.doc_id, seqs.shard, seqs.row.tolist())]
    member, labels = membership_labels(names, member_ids, dup)
    if labels is not None and labels["members"] == 0:  # most likely ids of another form: every score is n/a
        log(f"audit: note: no sampled sequence's document (or a duplicate of it) is in --members; its ids look like "
            f"{min(member_ids)!r}, the corpus's like {next((d for d in names if d is not None), None)!r}")

    cols = {"seq_id": np.arange(len(seqs), dtype=np.int64),
            "doc_id": [None if d is None else str(d) for d in seqs.doc_id], "shard": seqs.shard, "row": seqs.row,
            "token_offset": seqs.token_offset, "prompt": seqs.tokens[:, :P].tolist(),
            "truth": seqs.tokens[:, P:].tolist(), "extractable": exact, "leading_matched": leading,
            "pythia_score": nulls if pythia is None else pythia,
            "generated": nulls if generated is None else generated.tolist(), "loss": -scores["loss"],
            **{f"score_{k}": v for k, v in scores.items()}, "occurrences": np.asarray(occurrences, dtype=np.int64),
            "near_dup_docs": counts, "duplicate_count": counts, "duplicate_bucket": buckets, "dedup_status": status,
            "member": member}
    schema = per_sequence_schema(reference="reference" in scores)  # per_sequence.parquet (audit.layout)
    table = pa.table([pa.array(cols[f.name], f.type) for f in schema], schema=schema)
    tokens = None
    if config.count_tokens and dedup_manifest is not None:
        t0 = time.perf_counter()
        tokens = token_retention(shards, lm.encode, removed, config.text_column, config.id_column)
        timings["count_tokens"] = time.perf_counter() - t0
    progress({"phase": None})
    summary = {
        "model": {"path": str(Path(model_dir).resolve()), "name": lm.path.name,
                  "tokenizer_sha256": tokenizer_fingerprint(lm.tokenizer), "device": lm.device},
        "reference_model": str(Path(ref.path).resolve()) if ref is not None else None,
        "config": config.to_dict(),
        "sequences": {"n": len(seqs), "considered": seqs.considered, "skipped_short": seqs.skipped_short,
                      "skipped_missing": seqs.skipped_missing, "per_bucket": config.per_bucket,
                      "file": None if sequences is None else str(Path(sequences).resolve())},
        **aggregate.summarise(table, n_boot=config.n_boot or None, seed=config.seed),
    }
    if labels is not None:
        summary["membership_labels"] = labels
    if dedup_manifest is not None:
        summary["retention"] = aggregate.dedup_retention(dedup_manifest, tokens)
    timings.update(wall_s=time.perf_counter() - t_start,
                   sequences_per_s_scoring=len(seqs) / timings["score"] if timings.get("score") else None)
    out.mkdir(parents=True, exist_ok=True)
    for old in (io.manifest_path(out), out / SUMMARY):  # a previous run's: incomplete until the new one is written,
        old.unlink(missing_ok=True)  # and a report never pairs the new table with the old summary
    io.write_atomic(out / PER_SEQUENCE, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    io.write_json_atomic(out / SUMMARY, summary)
    io.write_stage_manifest(out, "audit", {
        "config": config.to_dict(),
        "model": str(Path(model_dir).resolve()), "reference": str(reference) if reference else None,
        "training_run": trained_by,  # the forecast checks it is the run still there
        "corpus": [str(s.path) for s in shards], "corpus_bytes": {s.name: s.path.stat().st_size for s in shards},
        "dedup_dir": str(Path(dedup_dir).resolve()) if dedup_dir else None,
        "decoding": lm.decoding(C), "batch_size_auto": batch_auto,
        "outputs": [PER_SEQUENCE, SUMMARY], "versions": io.library_versions(("torch", "transformers", "tokenizers")),
        "timing": timings,  # here, not in summary.json: the outputs are deterministic
    })
    return summary


def token_retention(shards, encode, removed: Container[tuple[str, int]], text_column: str, id_column) -> dict:
    """Tokens in the corpus and in the rows dedup kept (one tokenizing pass over the corpus)."""
    total = kept = 0
    for shard, row, reader, batch in corpus_batches(shards, text_column, id_column, batch_rows=8192):
        for i, toks in enumerate(encode([t or "" for t in reader.text(batch).to_pylist()])):
            total += len(toks)
            if (shard.name, row + i) not in removed:
                kept += len(toks)
    return {"tokens_total": total, "tokens_kept": kept, "tokens_kept_fraction": kept / max(total, 1)}


__all__ = ["run_audit", "token_retention"]
