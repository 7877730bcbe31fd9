"""Sequences to audit: sampled from corpus documents on token ids, or given explicitly.

Sampling (seeded): documents are drawn uniformly without replacement from all corpus rows
(canonical order: files sorted by path, rows in file order), tokenized, and kept if they hold
at least P + C tokens (shorter ones skipped and counted). A sequence is the document's first
P + C tokens (``offset="start"``) or P + C tokens at a uniform offset (``offset="random"``).
Scoring happens on these token ids, never on re-tokenized text.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dedup.shards import InputError, Shard, ShardReader, id_strings

Encode = Callable[[list[str]], list[list[int]]]


@dataclass
class Sequences:
    """n sequences of P + C token ids and where they come from.

    Attributes:
        tokens: int64 (n, P + C).
        doc_id: document id per sequence (None where the corpus has no id column).
        shard, row: the source document (shard name, 0-based row), None/-1 if unknown.
        token_offset: int64 (n,), where the sequence starts in the document's tokens.
        doc_text: the source document's text (for duplicate counts), None if unknown.
        skipped_short: documents (or given sequences) shorter than P + C, skipped.
        skipped_missing: given sequences whose document id the corpus does not hold, skipped.
        considered: documents (or given sequences) looked at.
    """

    tokens: np.ndarray
    doc_id: list
    shard: list
    row: np.ndarray
    token_offset: np.ndarray
    doc_text: list = field(default_factory=list)
    skipped_short: int = 0
    considered: int = 0
    skipped_missing: int = 0

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def subset(self, keep: np.ndarray) -> "Sequences":
        """The sequences at indices ``keep`` (same counters)."""
        keep = np.asarray(keep, dtype=np.int64)
        return Sequences(self.tokens[keep], [self.doc_id[i] for i in keep], [self.shard[i] for i in keep],
                         self.row[keep], self.token_offset[keep],
                         [self.doc_text[i] for i in keep] if self.doc_text else [], self.skipped_short,
                         self.considered, self.skipped_missing)


def per_bucket_selection(tokens: np.ndarray, occurrences: np.ndarray, n: int) -> np.ndarray:
    """Indices of at most ``n`` DISTINCT sequences (token windows) per occurrence bucket, in
    sample order (Carlini et al. 2022 sample a fixed number of distinct sequences per duplicate
    bucket); sequences with 0 occurrences form bucket "0".

    >>> per_bucket_selection(np.array([[1], [1], [2], [3], [4]]), np.array([2, 2, 1, 1, 1]), 1).tolist()
    [0, 2]
    """
    from .stats import duplicate_bucket

    seen: set = set()
    per: dict[str, int] = {}
    keep = []
    for i, (row, occ) in enumerate(zip(np.asarray(tokens).tolist(), np.asarray(occurrences).tolist())):
        if (key := tuple(row)) not in seen:
            seen.add(key)
            b = duplicate_bucket(int(occ)) if occ >= 1 else "0"
            if per.get(b, 0) < n:
                per[b] = per.get(b, 0) + 1
                keep.append(i)
    return np.array(keep, dtype=np.int64)


def corpus_batches(shards: list[Shard], text_column: str, id_column: str | None, id_required: bool = False,
                   batch_rows: int = 65536):
    """Yield (shard, its first row, reader, batch) of every batch of corpus rows, in canonical
    order (``reader.text(batch)``, ``reader.ids(batch)``: the batch's columns)."""
    for shard in shards:
        reader = ShardReader(shard, text_column, id_column, id_required, batch_rows)
        row = 0
        for batch in reader.batches():
            yield shard, row, reader, batch
            row += batch.num_rows


def document_name(doc_id, shard_name: str | None, row: int) -> str | None:
    """A document's name in training orders (``order.parquet``) and members lists: its corpus id,
    else ``shard:row`` (a corpus without an id column); None for a document not located (row -1).

    >>> document_name("d7", "a.parquet", 3), document_name(None, "a.parquet", 3), document_name(None, None, -1)
    ('d7', 'a.parquet:3', None)
    """
    if doc_id is not None:
        return str(doc_id)
    return f"{shard_name}:{row}" if shard_name is not None and row >= 0 else None


def corpus_rows(shards: list[Shard], text_column: str, id_column: str | None, id_required: bool = False):
    """Yield (shard, row, id, text) of every corpus row, in canonical order."""
    for shard, row, reader, batch in corpus_batches(shards, text_column, id_column, id_required):
        for r, (doc_id, text) in enumerate(zip(reader.ids(batch).to_pylist(), reader.text(batch).to_pylist())):
            yield shard, row + r, doc_id, text


def rows_of(shards: list[Shard], text_column: str, id_column: str | None,
            keys: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int, str | None, str | None]]:
    """Yield (shard index, row, id, text) for the rows ``keys`` ((shard index, row) pairs) of ``shards``."""
    wanted: dict[int, set[int]] = {}
    for si, r in keys:
        wanted.setdefault(si, set()).add(int(r))
    for si, rows in sorted(wanted.items()):
        rows = sorted(rows)
        for _, start, reader, batch in corpus_batches([shards[si]], text_column, id_column):
            lo, hi = bisect_left(rows, start), bisect_left(rows, start + batch.num_rows)
            if lo < hi:  # (only the wanted rows made Python strings)
                at = pa.array(np.array(rows[lo:hi], dtype=np.int64) - start)
                texts, ids = reader.text(batch).take(at).to_pylist(), reader.ids(batch).take(at).to_pylist()
                yield from ((si, r, i, t) for r, i, t in zip(rows[lo:hi], ids, texts))


def sample_sequences(shards: list[Shard], encode: Encode, n: int, prompt_len: int, cont_len: int, seed: int = 0,
                     offset: str = "start", text_column: str = "text", id_column: str | None = "id",
                     id_required: bool = False) -> Sequences:
    """Draw up to ``n`` sequences from documents of at least P + C tokens, in a seeded random order
    of the rows: fewer only if the corpus has fewer long documents, or, above 20M rows, if fewer
    than ``n`` of ``50 n`` rows drawn (without replacement) are long enough (``id_required``: a
    file without ``id_column`` is refused)."""
    need = prompt_len + cont_len
    counts = [ShardReader(s, text_column, id_column, id_required, 65536).num_rows for s in shards]
    bounds = np.cumsum([0, *counts])
    total = int(bounds[-1])
    rng = np.random.default_rng(seed)
    order = rng.permutation(total) if total <= 20_000_000 else rng.choice(total, size=min(total, 50 * n), replace=False)
    picked: list[tuple] = []
    considered = pos = 0
    while len(picked) < n and pos < order.shape[0]:
        chunk = order[pos : pos + max(2 * (n - len(picked)), 256)]
        pos += chunk.shape[0]
        shard_of = np.searchsorted(bounds, chunk, side="right") - 1
        keys = [(int(si), int(g - bounds[si])) for si, g in zip(shard_of, chunk)]
        docs = {(si, r): (i, t) for si, r, i, t in rows_of(shards, text_column, id_column, keys)}
        texts = [docs[k][1] or "" for k in keys]
        token_lists = encode(texts)
        for key, text, toks in zip(keys, texts, token_lists):
            if len(picked) >= n:
                break
            considered += 1
            if len(toks) < need:
                continue
            off = 0 if offset == "start" else int(rng.integers(0, len(toks) - need + 1))
            picked.append((toks[off : off + need], docs[key][0], shards[key[0]].name, key[1], off, text))
    return _sequences(picked, need, considered)


def _sequences(picked: list[tuple], need: int, considered: int, missing: int = 0) -> Sequences:
    """Sequences of (tokens, doc id, shard name, row, token offset, doc text) tuples, out of
    ``considered`` documents or given sequences (``missing`` of them not in the corpus, the
    others skipped as too short)."""
    tokens, doc_id, shard, row, token_offset, doc_text = list(zip(*picked)) or [()] * 6
    return Sequences(np.array(tokens, dtype=np.int64).reshape(len(picked), need), list(doc_id), list(shard),
                     np.array(row, dtype=np.int64), np.array(token_offset, dtype=np.int64), list(doc_text),
                     considered - missing - len(picked), considered, missing)


def sequences_from_file(path: str | Path, prompt_len: int, cont_len: int, shards: list[Shard] | None = None,
                        encode: Encode | None = None, text_column: str = "text", id_column: str | None = "id",
                        n_embeddings: int | None = None) -> Sequences:
    """An explicit list, as a Parquet file, either

    * with a ``tokens`` column (lists of token ids) and optional ``id``, ``shard``,
      ``row``, ``token_offset`` columns; or
    * with ``id`` and ``token_offset`` columns: the documents of those ids are found in the
      corpus (``shards``), tokenized, and cut at the offsets.

    Rows shorter than P + C, and ids not in the corpus, are skipped and counted; longer
    token lists are cut to their first P + C tokens. A token id of at least ``n_embeddings``
    (the model's; None: unchecked) is refused, naming its row."""
    path, need = Path(path), prompt_len + cont_len
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise InputError(path, f"unreadable sequences file: {e}") from e
    for name in ("tokens", "row", "token_offset"):  # else int() fails deep inside, or floats are truncated
        if name not in table.column_names:
            continue
        col, t = table.column(name), table.schema.field(name).type
        if name == "tokens":
            # fixed size: how Hugging Face datasets stores a Sequence(length=N) feature
            lists = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)
            if not any(is_list(t) for is_list in lists) or not pa.types.is_integer(t.value_type):
                raise InputError(path, f"column 'tokens' must hold lists of integer token ids, not {t}")
            col = pc.list_flatten(col)
        elif not pa.types.is_integer(t):
            raise InputError(path, f"column {name!r} must hold integers, not {t}")
        if col.null_count:
            raise InputError(path, f"column {name!r} holds {col.null_count} null(s)")
        low, top = pc.min_max(col).as_py().values()  # None, None when empty
        if top is not None and top > np.iinfo(np.int64).max:  # uint64: else OverflowError deep inside
            raise InputError(path, f"column {name!r} holds {top}, beyond int64 (token ids, rows and offsets are int64)")
        if low is not None and low < (-1 if name == "row" else 0):  # row -1: no row known
            raise InputError(path, f"column {name!r} holds {low}, below {-1 if name == 'row' else 0}")
    shard_type = table.schema.field("shard").type if "shard" in table.column_names else pa.string()
    if not (pa.types.is_string(shard_type) or pa.types.is_large_string(shard_type)):  # else ArrowTypeError at the end
        raise InputError(path, f"column 'shard' must hold strings (shard file names), not {shard_type}")
    if "tokens" not in table.column_names:
        if {"id", "token_offset"} <= set(table.column_names) and shards is not None and encode is not None:
            return _sequences_by_id(table, path, need, shards, encode, text_column, id_column)
        raise InputError(path, f"needs a 'tokens' column, or 'id' and 'token_offset'; columns are {table.column_names}")
    data = table.to_pydict()
    if "id" in data:
        data["id"] = id_strings(table.column("id"), path, "id").to_pylist()
    keep = [i for i, t in enumerate(data["tokens"]) if t is not None and len(t) >= need]
    if n_embeddings is not None and (bad := next((i for i in keep if max(data["tokens"][i][:need]) >= n_embeddings),
                                                 None)) is not None:
        raise InputError(path, f"row {bad}: token id {max(data['tokens'][bad][:need])} is outside the model's "
                               f"{n_embeddings} embeddings (sequences of another model's tokenizer?)")

    def col(name, default):
        return [data[name][i] for i in keep] if name in data else [default] * len(keep)

    picked = zip([data["tokens"][i][:need] for i in keep], col("id", None), col("shard", None), col("row", -1),
                 col("token_offset", 0), [None] * len(keep))
    return _sequences(list(picked), need, table.num_rows)


def _sequences_by_id(table: pa.Table, path: Path, need: int, shards: list[Shard], encode: Encode, text_column: str,
                     id_column: str | None) -> Sequences:
    given = id_strings(table.column("id"), path, "id").to_pylist()  # as the corpus's ids read
    wanted = [(i, int(o)) for i, o in zip(given, table.column("token_offset").to_pylist())]
    ids = set(given)
    found: dict[str, tuple[str, int, str]] = {}
    for shard, row, doc_id, text in corpus_rows(shards, text_column, id_column, id_required=True):
        if doc_id in ids and (first := found.setdefault(doc_id, (shard.name, row, text or "")))[2] != (text or ""):
            raise InputError(shard.path, f"id {doc_id!r} also names row {first[1]} of {first[0]}, another text; "
                                         "--sequences names documents by id: make ids unique", row=row)
    present = [(i, o) for i, o in wanted if i in found]
    token_lists = encode([found[i][2] for i, _ in present])
    picked = [(toks[o : o + need], i, found[i][0], found[i][1], o, found[i][2])
              for (i, o), toks in zip(present, token_lists) if len(toks) >= o + need >= need]
    return _sequences(picked, need, len(wanted), len(wanted) - len(present))
