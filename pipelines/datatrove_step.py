"""Near-duplicate removal as one datatrove pipeline step: LSHBloom, one pass.

datatrove's MinHash dedup is four stages, each its own executor run with signature,
bucket and cluster files between them (``MinhashDedupSignature``, ``MinhashDedupBuckets``,
``MinhashDedupCluster``, ``MinhashDedupFilter``). :class:`LSHBloomDedup` is one step that
sits between a reader and a writer and drops near (and exact) duplicates as the documents
stream through, deciding each against every document before it with one Bloom filter per
band (:class:`dedup.streaming.Deduplicator`)::

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter
    from pipelines.datatrove_step import LSHBloomDedup

    LocalPipelineExecutor([ParquetReader("data/"), LSHBloomDedup(), ParquetWriter("clean/")],
                          tasks=1, logging_dir="logs/").run()

Install with ``pip install 'memdedup[datatrove]'``.

**Decisions** are those of ``memdedup dedup`` on the same documents in the same order
(:mod:`dedup.streaming` says which run exactly: a plain run when ``config.capacity`` is
given, an ``--index-dir`` run otherwise): with one task, datatrove's readers give the
documents of their files sorted by path, rows in file order, the command line's canonical
order. Readers drop documents whose text is empty or missing before any step sees them; the
command line keeps the first empty text and removes later texts with no letters or digits
as its exact duplicates, so on such documents only the two can differ. Removed documents go
to ``exclusion_writer`` (when given) with ``metadata["filter_reason"]`` = ``exact`` or
``near``; the step's stats count ``dropped_exact`` and ``dropped_near``.

**Ranks.** A single-pass global dedup must see every document through one index, and one
task's index lives in that task's memory. So:

* ``tasks=1`` (the default use): one index for the whole input.
* ``tasks>1`` needs ``index_dir`` (a local directory, the ``--index-dir`` format): each
  rank loads the index at its start and saves it, grown by its documents, at its end, so
  the ranks must run one at a time (``LocalPipelineExecutor(..., workers=1)``, which runs
  them in rank order: rank r reads files r, r + tasks, ...; the decisions are those of
  ``--index-dir`` runs over the ranks' files in that order). Ranks that overlap anyway are
  not merged silently: the second to save is refused (:class:`dedup.io.StateError`), its
  task fails, and a rerun of it decides against the index the first one saved. Without
  ``index_dir``, ``tasks>1`` is refused: each rank would only dedup within its own files.
* ``index_dir`` with ``tasks=1`` keeps the index across pipeline runs (incremental dedup,
  as ``--index-dir`` does; ``memdedup dedup --index-dir`` can continue it, and the reverse).
  A rank is saved after its last document: a task killed after its save and before
  datatrove records it complete would, rerun, find its own documents in the index and
  drop them all; delete that save (the last version in ``index.json``) before rerunning.

Example:
    >>> from datatrove.data import Document
    >>> texts = ["The cat sat on the mat.", "the CAT sat on the mat", "Dogs bark at night."]
    >>> step = LSHBloomDedup()
    >>> [doc.id for doc in step.run(Document(text=t, id=str(i)) for i, t in enumerate(texts))]
    ['0', '2']
    >>> step.stats["dropped_exact"].total
    1
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from dedup.config import DedupConfig
from dedup.index import KEEP, REASON_LABELS
from dedup.index_dir import INDEX_FILE
from dedup.streaming import Deduplicator

__all__ = ["LSHBloomDedup"]


class LSHBloomDedup(BaseFilter):
    """Drops documents that are exact or near duplicates of an earlier one (one pass).

    Args:
        config: dedup parameters (:class:`dedup.config.DedupConfig`; ``text_column`` and
            ``id_column`` do not apply: the documents' ``text`` is read).
        index_dir: a local ``--index-dir`` directory to start from (if it holds an index)
            and to save to at the end of each rank; needed for ``tasks > 1``.
        grow: as :class:`dedup.streaming.Deduplicator` (default: grow unless
            ``config.capacity`` is given; always with ``index_dir``).
        batch_size: documents decided at a time.
        exclusion_writer: a datatrove writer for the removed documents.
        threads: sketching threads of the Deduplicator (1: serial).

    Raises:
        ValueError: ``grow=False`` with ``index_dir`` (an index directory must grow).
    """

    name = "🌸 memdedup LSHBloom"
    type = "🫂 - DEDUP"

    def __init__(self, config: DedupConfig | None = None, *, index_dir: str | os.PathLike | None = None,
                 grow: bool | None = None, batch_size: int = 4096, exclusion_writer: DiskWriter | None = None,
                 threads: int | None = 1):
        super().__init__(exclusion_writer=exclusion_writer, batch_size=batch_size)
        if index_dir is not None and grow is False:
            raise ValueError("an index directory's filters must grow: leave grow unset with index_dir")
        self.config = config or DedupConfig()
        self.index_dir = Path(index_dir) if index_dir is not None else None
        self.grow = True if index_dir is not None else grow
        self.threads = threads
        self._dedup: Deduplicator | None = None

    def _open(self) -> Deduplicator:
        if self.index_dir is not None and (self.index_dir / INDEX_FILE).exists():
            return Deduplicator.load(self.index_dir, self.config, threads=self.threads)
        return Deduplicator(self.config, grow=self.grow, threads=self.threads)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size > 1 and self.index_dir is None:
            raise ValueError(
                f"{self.name}: a one-pass dedup over {world_size} tasks needs one index they share: run with tasks=1, "
                "or give index_dir and run the tasks one at a time (LocalPipelineExecutor(..., workers=1))")
        self._dedup = self._open()
        yield from super().run(data, rank, world_size)
        if self.index_dir is not None:
            self._dedup.save(self.index_dir)

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        assert self._dedup is not None, "run() opens the index"
        reasons = self._dedup.add_verdicts(pa.array([doc.text for doc in batch], type=pa.large_string())).reason
        return [True if r == KEEP else (False, REASON_LABELS[r]) for r in reasons.tolist()]

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return self.filter_batch([doc])[0]
