"""Near-duplicate removal as one datatrove pipeline step: LSHBloom, one pass.

:class:`LSHBloomDedup` sits between a reader and a writer (datatrove's MinHash dedup takes four
executor runs with files between them) and drops near and exact duplicates as the documents stream
through, each decided against every document before it (:class:`dedup.streaming.Deduplicator`). Usage,
and how its decisions compare with ``memdedup dedup``'s: README, "datatrove". With one task, datatrove's
readers give the documents in the command line's order. The stats count ``dropped_exact`` and
``dropped_near``.

**Ranks.** One index lives in one task's memory: ``tasks=1``, or ``index_dir``, on which the ranks take
turns (:meth:`dedup.index_dir.IndexDir.turn`). A rank saves after its last document, recording a digest
of its first documents (:func:`dedup.index_dir.first_documents`); a rank whose first documents are
those of a saved rank, or of a file a command-line run indexed, is refused before it decides any:
deciding them again would drop every one as a duplicate of itself.

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
from itertools import chain, islice
from pathlib import Path

import pyarrow as pa
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter
from loguru import logger

from dedup.config import DedupConfig, dedup_config
from dedup.index import KEEP, REASON_LABELS
from dedup.io import StateError, given_path
from dedup.index_dir import HEAD, INDEX_FILE, IndexDir, first_documents, index_params, saved_on
from dedup.kernels import use_threads
from dedup.streaming import Deduplicator

__all__ = ["LSHBloomDedup"]

class LSHBloomDedup(BaseFilter):
    """Drops documents that are exact or near duplicates of an earlier one (one pass).

    Args:
        config: dedup parameters (``text_column`` and ``id_column`` do not apply: ``Document.text`` is read).
        index_dir: a local ``--index-dir`` to start from (if it holds an index) and to save to at the end
            of each rank; needed for ``tasks > 1``.
        grow: as :class:`dedup.streaming.Deduplicator` (always with ``index_dir``).
        batch_size: documents decided at a time.
        exclusion_writer: a datatrove writer for the removed documents.
        threads: sketching threads of the Deduplicator (1: serial).

    Raises:
        ValueError: ``grow=False`` with ``index_dir`` (an index directory must grow) or without
            ``config.capacity``; ``batch_size`` or ``threads`` not a positive integer; in ``run``, no documents
            (``data`` None: no reader before the step).
        dedup.index_dir.IndexMismatchError: ``index_dir`` holds an index of other parameters.
        dedup.io.StateError: ``index_dir`` is a file, or its index is damaged.
    """

    name = "🌸 memdedup LSHBloom"
    type = "🫂 - DEDUP"

    def __init__(self, config: DedupConfig | None = None, *, index_dir: str | os.PathLike | None = None,
                 grow: bool | None = None, batch_size: int = 4096, exclusion_writer: DiskWriter | None = None,
                 threads: int | None = 1):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        use_threads(threads)  # checked now, not once a rank holds the index
        super().__init__(exclusion_writer=exclusion_writer, batch_size=batch_size)
        self.config = DedupConfig() if config is None else dedup_config(config)
        if grow is False and (index_dir is not None or self.config.capacity is None):
            raise ValueError("grow=False sizes the filters once, for DedupConfig(capacity=...), and not with index_dir "
                             "(an index directory's filters must grow)")
        if self.config.index != "lshbloom":
            raise ValueError(f"LSHBloomDedup keeps an LSHBloom index; index={self.config.index!r} needs dedup_files")
        self.index_dir = Path(given_path(index_dir, "index directory")) if index_dir is not None else None
        if self.index_dir is not None:
            # refused now, not after the documents went through: a file, a damaged index, other parameters
            IndexDir(self.index_dir, index_params(self.config, *self.config.banding()))
        self.grow = True if index_dir is not None else grow
        self.threads = threads
        self._dedup: Deduplicator | None = None

    def _open(self) -> Deduplicator:
        if self.index_dir is not None and (self.index_dir / INDEX_FILE).exists():
            return Deduplicator.load(self.index_dir, self.config, threads=self.threads)
        return Deduplicator(self.config, grow=self.grow, threads=self.threads)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data is None:  # datatrove's executors give the first step None
            raise ValueError(f"{self.name}: no documents came in: put a reader (ParquetReader, JsonlReader, ...) "
                             "before it in the pipeline")
        if world_size > 1 and self.index_dir is None:
            raise ValueError(
                f"{self.name}: a one-pass dedup over {world_size} tasks needs one index they share: run with tasks=1, "
                "or give index_dir (the tasks take turns on it)")
        try:
            yield from self._run(data, rank, world_size)
        finally:
            self._dedup = None  # executors pickle their steps, and a Deduplicator is never copied

    def _run(self, data: DocumentsPipeline, rank: int, world_size: int) -> DocumentsPipeline:
        if self.index_dir is None:
            self._dedup = self._open()
            yield from super().run(data, rank, world_size)
            return

        with IndexDir(self.index_dir, {}).turn(lambda: logger.info(
                f"{self.name}: rank {rank} waits for {self.index_dir}, which another rank holds (ranks take turns "
                "on an index)")):
            # a command-line run or a Deduplicator may install a version meanwhile: refused below, with advice a
            # task can follow (one installed before the load is the one loaded: decided against, not refused)
            self._dedup = self._open()
            loaded = self._dedup.version
            data = iter(data)
            head = list(islice(data, HEAD))
            first = self._check_not_held(head, rank)
            yield from super().run(chain(head, data), rank, world_size)
            if IndexDir(self.index_dir, {}).current != loaded:
                raise StateError(f"{self.index_dir}: another rank, run or Deduplicator saved an index there while this "
                                 "rank ran; rerun this task to decide against it")
            self._dedup.save(self.index_dir, record={"first_documents": first} if first else None)

    def _check_not_held(self, head: list[Document], rank: int) -> dict | None:
        """The ``first_documents`` record of a rank whose first documents are ``head`` (None for none);
        StateError if a saved rank's or an indexed file's first documents are these: the index holds them."""
        first = first_documents(_texts(head).to_pylist())
        if first is None:
            return None
        for batch in (IndexDir(self.index_dir, {}).meta or {}).get("batches", []):
            # as many, the same: only a smaller rank's would be a guess; a command-line run's: per input file
            file = next((f for f in batch.get("files", []) if f.get("first_documents") == first), None)
            if batch.get("first_documents") == first or file is not None:
                whose = f"of {file['path']}, which run" if file else "of a rank"
                raise StateError(
                    f"{self.index_dir}: rank {rank}'s first {first['count']} documents are those {whose} saved on "
                    f"{saved_on(batch)} (batch {batch['run_id']}, {batch['documents']} documents): they are held "
                    "already (the same input given again, or a task killed after its save and before datatrove "
                    "recorded it complete), and deciding them again would drop every one as a duplicate of itself. "
                    "Nothing was decided. Leave them out; or, if that task's outputs are complete, mark it complete "
                    f"(LOGGING_DIR/completions/{rank:05d}); or rebuild the index in a new index_dir")
        return first

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        assert self._dedup is not None, "run() opens the index"
        reasons = self._dedup.add_verdicts(_texts(batch)).reason
        return [True if r == KEEP else (False, REASON_LABELS[r]) for r in reasons.tolist()]

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return self.filter_batch([doc])[0]


def _texts(batch: list[Document]) -> pa.Array:
    """The documents' texts as one Arrow string array: ``str``, or ``bytes`` holding UTF-8 (datatrove's
    ParquetReader gives a binary column's values as bytes). TypeError for a text that is neither (None
    included), ValueError for bytes that are not UTF-8 or a str with an unpaired surrogate; each names the
    first such document."""
    refused: Exception | None = None
    try:
        texts = pa.array([doc.text for doc in batch], type=pa.large_string())
        if not texts.null_count:
            return texts
    except (UnicodeEncodeError, pa.ArrowInvalid, pa.ArrowTypeError) as e:
        refused = e
    for doc in batch:
        text = doc.text
        if not isinstance(text, (str, bytes)):
            raise TypeError(f"document {doc.id!r}: text is {'None' if text is None else type(text).__name__}, "
                            "expected str (or bytes holding UTF-8)")
        try:
            text.decode("utf-8") if isinstance(text, bytes) else text.encode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"document {doc.id!r}: text is not valid UTF-8 ({e})") from None
        except UnicodeEncodeError as e:
            problem = f"text holds an unpaired surrogate ({e.reason}), not Unicode text"
            raise ValueError(f"document {doc.id!r}: {problem}") from None
    raise refused or AssertionError("a null text that no document holds")
