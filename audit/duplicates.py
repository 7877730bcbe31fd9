"""How many corpus documents are near duplicates of each sampled document, and whether any of
them was trained on (membership by content, issue #12 section 1).

"Duplicate" is dedup's own notion (same normalisation, shingling and parameters): two documents
share their canonical exact key or at least one LSH band key (a document counts itself: a unique
one has count 1). The sampled documents' keys go into a small index; the corpus is streamed
once through the same sketcher, so memory follows the sample, not the corpus.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dedup.arrow import string_array
from dedup.config import DedupConfig
from dedup.shards import InputError, Shard
from dedup.sketch import Sketcher

from .sampling import corpus_batches, document_name


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


def duplicate_counts(
    doc_texts: list[str],
    own: list[tuple[str, int]],
    shards: list[Shard],
    config: DedupConfig,
    removed: set[tuple[str, int]] | None = None,
    members: set[str] | None = None,
) -> DuplicateInfo:
    """Count each sampled document's near duplicates in the corpus (``shards``, in canonical
    order) with dedup's ``config``. ``own``: (shard name, row) of each sampled document, so its
    own row is recognised; ``removed``: (shard name, row) of the rows dedup removed, and
    ``members``: names of trained documents (:func:`audit.sampling.document_name`), when known. InputError: a
    members id names two corpus rows of other texts (exact keys), as :func:`audit.train.corpus_documents`."""
    bands, rows = config.banding()
    sketcher = Sketcher(config, bands, rows)
    sk = sketcher(string_array([t or "" for t in doc_texts]))
    n = len(doc_texts)
    usable = sk.n_shingles > 0
    index: list[dict[int, list[int]]] = [{} for _ in range(bands)]
    for i in np.flatnonzero(usable):
        for j in range(bands):
            index[j].setdefault(int(sk.band_keys[i, j]), []).append(int(i))
    sorted_keys = [np.array(sorted(index[j]), dtype=np.uint64) for j in range(bands)]
    exact_index: dict[tuple[int, int], list[int]] = {}
    for i in np.flatnonzero(sk.valid):
        exact_index.setdefault((int(sk.exact[i, 0]), int(sk.exact[i, 1])), []).append(int(i))
    matches: list[set[tuple[str, int]]] = [set() for _ in range(n)]
    member_dup = np.zeros(n, dtype=bool)
    named: dict[str, tuple[str, int, tuple[int, int]]] = {}  # member id -> its first (shard name, row, exact key)
    for shard, start, reader, batch in corpus_batches(shards, config.text_column, config.id_column,
                                                     batch_rows=config.batch_rows):
        csk = sketcher(reader.text(batch))
        has = csk.n_shingles > 0
        hits: dict[int, set[int]] = {}
        for j in range(bands):
            hit = np.flatnonzero(has & np.isin(csk.band_keys[:, j], sorted_keys[j]))
            for r in hit.tolist():
                hits.setdefault(r, set()).update(index[j][int(csk.band_keys[r, j])])
        for r in np.flatnonzero(csk.valid).tolist():
            if same := exact_index.get((int(csk.exact[r, 0]), int(csk.exact[r, 1]))):
                hits.setdefault(r, set()).update(same)
        ids = reader.ids(batch).to_pylist() if members else None
        # an id of a trained document on two other texts: which one was trained? (a set lookup per row: is_in would
        # hash the whole members list again for every batch)
        for r in [r for r, name in enumerate(ids) if name in members] if members else ():
            name, key = ids[r], (int(csk.exact[r, 0]), int(csk.exact[r, 1]))
            if (first := named.setdefault(name, (shard.name, start + r, key)))[2] != key:
                raise InputError(shard.path, f"id {name!r} also names row {first[1]} of {first[0]}, another text; "
                                             "--members names documents by id: make ids unique, or use --id-column "
                                             "'' (no ids: documents named shard:row)", row=start + r)
        for r, found in hits.items():
            is_member = ids is not None and document_name(ids[r], shard.name, start + r) in members
            for i in found:
                matches[i].add((shard.name, start + r))
                member_dup[i] |= is_member
    removed = removed or set()
    count = np.array([len(m) for m in matches], dtype=np.int64)
    removed_dup = np.array([any(x in removed for x in m if x != own[i]) for i, m in enumerate(matches)], dtype=bool)
    return DuplicateInfo(count, removed_dup, member_dup, matches)


def dedup_status(own: list[tuple[str, int]], info: DuplicateInfo, removed: set[tuple[str, int]]) -> list[str]:
    """``removed`` (dedup removed this document), ``kept`` (dedup kept it and removed some of
    its near duplicates) or ``unique`` (kept, and none of its duplicates was removed)."""
    return ["removed" if key in removed else "kept" if info.removed_duplicate[i] else "unique"
            for i, key in enumerate(own)]


__all__ = ["DuplicateInfo", "duplicate_counts", "dedup_status"]
