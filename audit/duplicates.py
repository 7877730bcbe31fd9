"""How many corpus documents are near duplicates of each sampled document, and whether any of
them was trained on (membership by content, issue #12 section 1).

"Duplicate" is dedup's own notion (same normalisation, shingling and parameters): two documents
share their canonical exact key or at least one LSH band key (a document counts itself: a unique
one has count 1): :func:`shared_key_pairs`. The corpus is streamed once through the same sketcher, each batch's
keys joined with the sampled documents', so memory follows the sample, not the corpus.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Container
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dedup.arrow import string_array
from dedup.config import DedupConfig
from dedup.shards import InputError, Shard
from dedup.sketch import Sketcher, Sketches

from .sampling import corpus_batches, document_name
from .stats import concatenated_ranges


class ShardRows:
    """A set of (shard name, row): one sorted int64 array of rows per shard name, 8 bytes a row (a set of tuples
    takes ~290), so that memory does not grow so with the rows held (dedup's removed rows, the profile's documents).
    ``(name, row) in rows``; :meth:`between`."""

    def __init__(self, table: pa.Table | None = None):
        """``table``: ``shard`` (names) and ``row`` columns, e.g. removed.parquet's (None: no row)."""
        self._rows: dict[str, np.ndarray] = {}
        if table is None or table.num_rows == 0:
            return
        shard = pc.dictionary_encode(table.column("shard")).combine_chunks()
        codes, rows = shard.indices.to_numpy(), table.column("row").to_numpy().astype(np.int64)
        order = np.lexsort((rows, codes))
        codes, rows = codes[order], rows[order]
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        names = shard.dictionary.to_pylist()
        for c, part in zip(codes[starts].tolist(), np.split(rows, starts[1:])):
            self._rows[names[c]] = part

    @classmethod
    def of(cls, keys) -> ShardRows:
        """Of (shard name, row) pairs."""
        keys = list(keys)
        return cls(pa.table({"shard": pa.array([k[0] for k in keys], pa.string()),
                             "row": pa.array([k[1] for k in keys], pa.int64())}))

    def between(self, name: str, start: int, stop: int) -> np.ndarray:
        """int64, sorted: the rows of shard ``name`` held in [start, stop)."""
        rows = self._rows.get(name, np.empty(0, dtype=np.int64))
        return rows[slice(*np.searchsorted(rows, [start, stop]))]

    def names(self) -> set[str]:
        """The shard names of the rows held."""
        return set(self._rows)

    def __contains__(self, key) -> bool:
        rows = self._rows.get(key[0])
        if rows is None:
            return False
        i = int(np.searchsorted(rows, key[1]))
        return i < rows.size and int(rows[i]) == key[1]

    def __len__(self) -> int:
        return sum(r.size for r in self._rows.values())


@dataclass
class DuplicateInfo:
    """Per sampled document.

    Attributes:
        count: int64 (n,), corpus documents that are its exact or near duplicates (itself included).
        removed_duplicate: bool (n,), one of those (not its own row) is among dedup's removed rows.
        member_duplicate: bool (n,), one of those (its own row included) has an id in the members
            list (all False without one).
        matches: the (shard name, row) of each of those documents (its own row included).
    """

    count: np.ndarray
    removed_duplicate: np.ndarray
    member_duplicate: np.ndarray
    matches: list[set[tuple[str, int]]]


@dataclass
class Keys:
    """The keys by which dedup finds duplicates, of n documents (:func:`shared_key_pairs`)."""

    band: np.ndarray  # uint64 (n, bands), LSH band keys: compared where shingled
    exact: np.ndarray  # uint64 (n, 2), canonical exact keys: compared where valid
    shingled: np.ndarray  # bool (n,)
    valid: np.ndarray  # bool (n,)

    @classmethod
    def of(cls, sk: Sketches) -> Keys:
        return cls(sk.band_keys, sk.exact, sk.n_shingles > 0, sk.valid)


def key_columns(k: Keys) -> list[tuple[np.ndarray, np.ndarray]]:
    """The keys two documents are duplicates by if they share one, each as (key (n,), bool (n,): where it counts):
    each LSH band's (where shingled), then the canonical exact key as one 16-byte value (where valid)."""
    exact = np.ascontiguousarray(k.exact).view("V16")[:, 0]
    return [*((k.band[:, j], k.shingled) for j in range(k.band.shape[1])), (exact, k.valid)]


def shared_key_pairs(a: Keys, b: Keys) -> tuple[np.ndarray, np.ndarray]:
    """``(i, j)``, int64: each pair of rows (row i of ``a``, row j of ``b``) that are duplicates, i.e. share a key of
    :func:`key_columns`; once each, ordered by i then j. A sort-join per key."""
    found = []
    for (ka, ok_a), (kb, ok_b) in zip(key_columns(a), key_columns(b)):
        ia, ib = np.flatnonzero(ok_a), np.flatnonzero(ok_b)
        ia, ib = ia[np.argsort(ka[ia])], ib[np.argsort(kb[ib])]  # both sorted: b's keys searched in a's, in order
        lo, hi = np.searchsorted(ka[ia], kb[ib], "left"), np.searchsorted(ka[ia], kb[ib], "right")
        found.append(ia[concatenated_ranges(lo, hi - lo)] * len(b.valid) + np.repeat(ib, hi - lo))
    pairs = np.sort(np.concatenate(found))  # i * len(b) + j, each once (np.unique: slower, it hashes)
    return np.divmod(pairs[np.diff(pairs, prepend=-1) != 0], len(b.valid))


def duplicate_counts(
    doc_texts: list[str],
    own: list[tuple[str, int]],
    shards: list[Shard],
    config: DedupConfig,
    removed: Container[tuple[str, int]] | None = None,
    members: set[str] | None = None,
) -> DuplicateInfo:
    """Count each sampled document's near duplicates in the corpus (``shards``, in canonical
    order) with dedup's ``config``. ``own``: (shard name, row) of each sampled document, so its
    own row is recognised; ``removed``: (shard name, row) of the rows dedup removed, and
    ``members``: names of trained documents (:func:`audit.sampling.document_name`), when known. InputError: a
    members id names two corpus rows of other texts (exact keys), as :func:`audit.train.corpus_documents`."""
    sketcher = Sketcher(config, *config.banding())
    sample = Keys.of(sketcher(string_array([t or "" for t in doc_texts])))
    n = len(doc_texts)
    matches: list[set[tuple[str, int]]] = [set() for _ in range(n)]
    member_dup = np.zeros(n, dtype=bool)
    if members:  # each member id's first (shard, row, exact key), at its place in the sorted ids: 36 bytes a member
        ids_sorted, shard_at = sorted(members), {s.name: k for k, s in enumerate(shards)}
        first_shard, first_row = np.zeros(len(members), np.int32), np.full(len(members), -1, np.int64)
        first_key = np.zeros((len(members), 2), np.uint64)
    for shard, start, reader, batch in corpus_batches(shards, config.text_column, config.id_column,
                                                     batch_rows=config.batch_rows):
        csk = sketcher(reader.text(batch))
        ids = reader.ids(batch).to_pylist() if members else None
        # an id of a trained document on two other texts: which one was trained? (a set lookup per row: is_in would
        # hash the whole members list again for every batch)
        for r in [r for r, name in enumerate(ids) if name in members] if members else ():
            if first_row[m := bisect_left(ids_sorted, ids[r])] < 0:
                first_shard[m], first_row[m], first_key[m] = shard_at[shard.name], start + r, csk.exact[r]
            elif (first_key[m] != csk.exact[r]).any():
                raise InputError(shard.path, f"id {ids[r]!r} also names row {first_row[m]} of "
                                             f"{shards[first_shard[m]].name}, another text; "
                                             "--members names documents by id: make ids unique, or use --id-column "
                                             "'' (no ids: documents named shard:row)", row=start + r)
        i, r = shared_key_pairs(sample, Keys.of(csk))
        for a, b in zip(i.tolist(), r.tolist()):
            matches[a].add((shard.name, start + b))
        if members and r.size:  # (names of the rows with a match only)
            hit = np.unique(r)
            of_members = hit[np.array([document_name(ids[k], shard.name, start + k) in members for k in hit.tolist()])]
            member_dup[i[np.isin(r, of_members)]] = True
    removed = set() if removed is None else removed
    count = np.array([len(m) for m in matches], dtype=np.int64)
    removed_dup = np.array([any(x in removed for x in m if x != own[i]) for i, m in enumerate(matches)], dtype=bool)
    return DuplicateInfo(count, removed_dup, member_dup, matches)


def dedup_status(own: list[tuple[str, int]], info: DuplicateInfo, removed: Container[tuple[str, int]]) -> list[str]:
    """``removed`` (dedup removed this document), ``kept`` (dedup kept it and removed some of
    its near duplicates) or ``unique`` (kept, and none of its duplicates was removed)."""
    return ["removed" if key in removed else "kept" if info.removed_duplicate[i] else "unique"
            for i, key in enumerate(own)]


__all__ = ["DuplicateInfo", "Keys", "ShardRows", "key_columns", "shared_key_pairs", "duplicate_counts",
           "dedup_status"]
