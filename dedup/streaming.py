"""Streaming dedup for pipelines that are not file based: rows in, keep masks out.

:class:`Deduplicator` holds the LSHBloom index of :mod:`dedup.index` (a :class:`dedup.scalable.FilterStack`
per band and one for the exact key) and decides each row against every row given before, by the command
line's semantics. The rows of successive :meth:`Deduplicator.add` calls form one stream: fed a corpus in
canonical order (files sorted by path, rows in file order), in batches of any sizes, it gives the command
line's decisions (the same rows removed, with the same reason and band).

**Capacity.** Decisions on true collisions never depend on filter sizes; those on the rare false positives
(at most ``fp`` of the documents) do. So:

* ``DedupConfig(capacity=N)`` (``grow`` then defaults to False): one generation per band sized for N
  documents at ``fp``: the decisions of ``memdedup dedup`` on the same rows when its capacity is N too (a
  run over exactly N rows, or ``--capacity N``). Beyond N documents the rate rises above ``fp``:
  :meth:`Deduplicator.predicted_fp` says by how much, and a ``RuntimeWarning`` once.
* No capacity (``grow`` defaults to True): the index grows as ``--index-dir`` does (:mod:`dedup.scalable`)
  from a first generation of :data:`DEFAULT_CAPACITY` documents (``config.capacity`` with ``grow=True``): the
  decisions of ``memdedup dedup --index-dir D`` runs over the same rows, in one run or many, whose first run
  had that ``--capacity``.

**Persistence.** :meth:`Deduplicator.save` writes an ``--index-dir`` directory (:mod:`dedup.index_dir`) and
:meth:`Deduplicator.load` reads one, so a pipeline and the command line can take turns on one index. Rows
from memory are not fingerprinted as files are: given the same rows twice, the second copies are removed.

**The keep mask** is a numpy bool array, True = keep: for ``table.filter(keep)``, ``texts[keep]``,
``np.flatnonzero(keep)`` (``datasets.Dataset.select``) and ``ds.filter``; combine masks with ``&``.

>>> import pyarrow as pa
>>> from dedup import DedupConfig, Deduplicator
>>> d = Deduplicator(DedupConfig())
>>> d.add(pa.table({"text": ["The cat sat on the mat.", "Dogs bark at night."]})).tolist()
[True, True]
>>> d.add(pa.table({"text": ["the CAT sat on the mat", None, "Cats purr."]})).tolist()
[False, True, True]
>>> d.stats()
{'rows': 5, 'kept': 4, 'exact': 1, 'near': 0, 'null_text': 1, 'empty_text': 0}
"""

from __future__ import annotations

import os
import threading
import uuid
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa

from .config import DedupConfig, dedup_config
from .index import KEEP, Verdicts, decide
from .index_dir import CONFIG_PARAMS, IndexDir, index_params
from .io import StateError
from .params import optimal_param, per_band_fp, whole_index_fp
from .scalable import FilterStack
from .shards import first_invalid_utf8, text_column_problem, text_strings, text_type_problem
from .sketch import Sketcher, Sketches
from .stages import EXACT_BAND, band_name

#: Documents the first generation of a growing index holds without a capacity (~37 MB of filters at the
#: default parameters; later generations double it).
DEFAULT_CAPACITY = 1 << 20

#: ``source`` of the batches a Deduplicator records in an index directory.
SOURCE = "Deduplicator"


class Deduplicator:
    """Decides, row by row, whether each row duplicates an earlier one; keeps the index.

    ``config``: the decision parameters, ``text_column``, ``batch_rows`` (rows sketched at a time) and
    ``capacity``; ``lshbloom`` only. ``grow``: whether the filters grow (module docstring). ``threads``: 1 is
    serial, None or more Numba's parallel kernels (:func:`dedup.kernels.use_threads`). ValueError for another
    index backend, or ``grow=False`` without a capacity."""

    def __init__(self, config: DedupConfig = DedupConfig(), *, grow: bool | None = None, threads: int | None = 1):
        if grow is not None and not isinstance(grow, bool):
            raise TypeError(f"grow must be True, False or None, got {grow!r}")
        self.grow = dedup_config(config).capacity is None if grow is None else grow
        if not self.grow and config.capacity is None:
            raise ValueError("grow=False sizes the filters once: give DedupConfig(capacity=...)")
        self._setup(config, threads)
        capacity = config.capacity or DEFAULT_CAPACITY
        band_fp = per_band_fp(config.fp, self.bands)
        self._stacks = [FilterStack(band_fp, capacity, scalable=self.grow) for _ in range(self.bands)]
        self._exact = FilterStack(config.exact_fp, capacity, scalable=self.grow)
        self._index_path = self._version = None  # the directory loaded from or last saved to, its version then
        self._saved_documents = self.documents = 0  # documents it held then, and now
        self._held: dict | None = None  # index.json of the index loaded or last saved: what a new directory takes over

    def _setup(self, config: DedupConfig, threads: int | None) -> None:
        if dedup_config(config).index != "lshbloom":
            raise ValueError(f"a Deduplicator keeps an LSHBloom index; index={config.index!r} needs dedup_files")
        self.config = config
        self.bands, self.rows = config.banding()
        self._sketcher = Sketcher(config, self.bands, self.rows, threads)
        self._stats = Counter(rows=0, kept=0, exact=0, near=0, null_text=0, empty_text=0)
        self._stopped: tuple[int, int] | None = None  # an add that stopped part way: (rows it had decided, rows)
        self._warned_full = False  # _warn_if_full warned
        self._turn = threading.Lock()  # adds and saves from several threads take turns (the kernels release the GIL)

    # ------------------------------------------------------------------------ deciding
    def add(self, data: pa.Table | pa.RecordBatch | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Decide and insert, in order, the rows of ``data`` (a table or record batch holding
        ``config.text_column``: string, large_string, string_view, binary holding UTF-8, any of these
        dictionary-encoded, or all null; or that column itself). Returns the keep mask: False = a duplicate of
        an earlier row (of any call, or held by a loaded index).

        Raises:
            ValueError: no text column, one of another type, or a text not valid UTF-8 (naming its row);
                nothing is inserted then.
            dedup.io.StateError: an earlier call stopped part way, leaving some of its rows in the index; so
                do :meth:`save` and every later call.
        """
        with self._turn:  # (not through add_verdicts: a capacity warning names the caller's line either way)
            return self._add_verdicts(data).reason == KEEP

    def add_verdicts(self, data: pa.Table | pa.RecordBatch | pa.Array | pa.ChunkedArray) -> Verdicts:
        """:meth:`add`, returning the verdicts: ``reason`` (0 keep, 1 exact, 2 near:
        :data:`dedup.index.REASON_LABELS`) and ``band`` (first colliding band of a near duplicate, else -1).
        Calls from several threads take turns, each deciding its rows as one piece of the stream."""
        with self._turn:
            return self._add_verdicts(data)

    def _add_verdicts(self, data: pa.Table | pa.RecordBatch | pa.Array | pa.ChunkedArray) -> Verdicts:
        self._check_whole()
        texts = self._texts(data)
        step, parts = self.config.batch_rows, []
        for start in range(0, len(texts), step):
            sketches = self._sketcher(texts.slice(start, step))  # nothing inserted yet: an interrupt here in
            self._stopped = (start, len(texts))  # the first slice changes nothing; after, rows of this call are in
            parts.append(self._decide(sketches))
        self._stopped = (len(texts), len(texts))
        self._warn_if_full()  # raised as an error (warnings "error"), this add stopped after inserting its rows
        self._stopped = None
        if not parts:
            return Verdicts(np.zeros(0, np.int8), np.zeros(0, np.int16), np.zeros(0, np.int64))
        return Verdicts(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("reason", "band", "duplicate_of")))

    def _warn_if_full(self) -> None:
        """Warn once when a fixed-size index holds more documents than its capacity."""
        if self.grow or self._warned_full or self.documents <= (self.config.capacity or 0):
            return
        self._warned_full = True
        warnings.warn(f"Deduplicator: {self.documents:,} documents in filters sized for capacity="
                      f"{self.config.capacity:,}: predicted false-positive rate {self.predicted_fp():.3g} (target "
                      f"{self.config.fp:g}), climbing with every document, so unrelated rows are removed as "
                      "duplicates; give a larger DedupConfig(capacity=...), or grow=True", RuntimeWarning, stacklevel=4)

    def _check_whole(self) -> None:
        """A StateError if an earlier :meth:`add` stopped part way: some of its rows are in the index."""
        if self._stopped is not None:
            done, n = self._stopped
            raise StateError(f"an add() stopped part way (an interrupt or an error) after inserting {done} or more of "
                             f"its {n} rows: given again, they would be removed as duplicates of themselves; load the "
                             "last saved index (Deduplicator.load) or start a new Deduplicator, and give the rows "
                             "since again")

    def _texts(self, data) -> pa.Array | pa.ChunkedArray:
        name = self.config.text_column
        table = isinstance(data, (pa.Table, pa.RecordBatch))
        if not table and not isinstance(data, (pa.Array, pa.ChunkedArray)):
            raise TypeError(f"expected a pyarrow Table, RecordBatch or string Array, got {type(data).__name__}")
        if problem := text_column_problem(data.schema, name) if table else text_type_problem(data.type, name):
            raise ValueError(problem)
        col = text_strings(data.column(name) if table else data)
        if (bad := first_invalid_utf8(col)) is not None:
            raise ValueError(f"text column {name!r}: row {-1 if bad[0] is None else bad[0]} is not valid UTF-8")
        return col

    def _decide(self, sk: Sketches) -> Verdicts:
        verdicts = decide(sk, self._stacks, self._exact)
        self._stats.update(rows=len(sk), **verdicts.counts(), **sk.counts())
        self.documents += len(sk)
        return verdicts

    # ------------------------------------------------------------------------ reporting
    def stats(self) -> dict:
        """Rows given to this object (not a loaded index's): ``rows``, ``kept``, ``exact``, ``near``, ``null_text``,
        ``empty_text``."""
        return dict(self._stats)

    def predicted_fp(self) -> float:
        """Probability that the next unrelated document is flagged, from the band filters' fill."""
        return whole_index_fp([p for s in self._stacks for p in s.generation_fps()])

    def nbytes(self) -> dict[str, int]:
        """Memory of the filters: ``bands`` and ``exact``."""
        return {"bands": sum(s.nbytes for s in self._stacks), "exact": self._exact.nbytes}

    def __reduce_ex__(self, protocol: object) -> tuple:
        """Refused: a copy (pickled, or by ``copy``) would decide apart from this index, and ``datasets`` (which
        fingerprints a transform by pickling it) would reuse a cached result instead of giving it the rows."""
        raise TypeError("a Deduplicator cannot be copied: its index lives in this process and takes the rows of this "
                        "process only (datasets' num_proc, multiprocessing or a copy would decide apart from it); "
                        "decide in one process, and move an index to another with save() and load()")

    def __repr__(self) -> str:
        return (f"Deduplicator(documents={self.documents}, bands={self.bands}, rows={self.rows}, grow={self.grow}, "
                f"generations={len(self._exact.generations)})")

    # ------------------------------------------------------------------------ persistence
    @property
    def version(self) -> str | None:
        """The index directory's version (``v-NNNNNN``) this Deduplicator loaded or last saved; None: neither."""
        return self._version

    def save(self, path: str | os.PathLike, *, record: dict | None = None) -> dict:
        """Write the index to ``path`` as an ``--index-dir`` directory; return its ``index.json``. ``record``: more
        fields of this save's batch there. ``path`` must hold no index yet, or be this Deduplicator's own (last
        saved to, else loaded from); each save adds a version (the rows since, one batch with ``"source":
        "Deduplicator"``).

        Raises:
            ValueError: ``grow=False`` (an ``--index-dir`` index must grow), ``path`` holds another index, or
                ``record`` names a field the batch has already.
            TypeError: ``record`` holds a value JSON cannot (nothing is written).
            dedup.index_dir.IndexMismatchError: ``path`` holds an index of other parameters.
            dedup.io.StateError: another run or Deduplicator updated ``path`` since this one loaded or saved
                it (nothing is written), or an :meth:`add` stopped part way.
        """
        with self._turn:  # not amid another thread's add
            self._check_whole()
            if not self.grow:
                raise ValueError("this Deduplicator's filters are sized once for config.capacity (grow=False); an "
                                 "index directory's filters must grow: use grow=True to save it")
            idx = IndexDir(path, index_params(self.config, self.bands, self.rows))
            ours = self._index_path is not None and idx.path == self._index_path
            if idx.current is not None and not ours:
                home = f"; this Deduplicator last saved to {self._index_path}" if self._index_path else ""
                raise ValueError(f"{idx.path} holds another index ({idx.documents} documents){home}; save to a new "
                                 "directory, or load that index and add to it")
            if ours and idx.current != self._version:
                raise StateError(f"{idx.path}: the index changed (now {idx.current or 'empty'}) since this "
                                 f"Deduplicator loaded or saved its version {self._version}; load it again and add "
                                 "the rows again")
            if ours and self.documents == self._saved_documents and idx.meta is not None:
                return idx.meta
            pinned = self._version if ours else None
            added = self.documents - self._saved_documents
            idx.checked_record(record)  # refused before saving() makes the directory
            with idx.saving() as tmp:
                for name, stack in zip(_names(self.bands), [*self._stacks, self._exact]):
                    stack.save(tmp / name)
                # a new directory takes over the batches held (files and ranks it holds rows of, refused there)
                meta = idx.install(tmp, _names(self.bands), pinned, uuid.uuid4().hex[:16], [], added, SOURCE,
                                   record, held=None if ours else self._held)
            self._index_path, self._version, self._saved_documents = idx.path, meta["current"], self.documents
            self._held = meta
            return meta

    @classmethod
    def load(cls, path: str | os.PathLike, config: DedupConfig | None = None, *,
             threads: int | None = 1) -> "Deduplicator":
        """The index in ``path`` (an ``--index-dir`` directory), ready to add rows to. ``config``'s decision
        parameters must be the index's (``capacity`` is ignored); default: the index's, other fields default.

        Raises:
            FileNotFoundError: no index in ``path``.
            dedup.index_dir.IndexMismatchError: ``config`` has other parameters.
            dedup.io.StateError: the index is damaged.
        """
        if config is None:
            if (meta := IndexDir(path, {}).meta) is None:
                raise FileNotFoundError(f"{Path(path).resolve()}: no index (no index.json)")
            params = meta["params"]  # explicit banding only where it is not the optimal one
            fields = {k: params[k] for k in CONFIG_PARAMS}
            if (params["bands"], params["rows"]) != optimal_param(params["threshold"], params["num_perm"]):
                fields.update(bands=params["bands"], rows=params["rows"])
            config = DedupConfig(**fields)
        new = cls.__new__(cls)
        new._setup(config, threads)
        idx = IndexDir(path, index_params(config, new.bands, new.rows))
        new._version, stacks = idx.load_current(_names(new.bands))
        if new._version is None:
            raise FileNotFoundError(f"{idx.path}: no index (no index.json)")
        new._stacks, new._exact = stacks[:-1], stacks[-1]
        new.grow, new._index_path = new._exact.scalable, idx.path
        new._saved_documents = new.documents = idx.documents
        new._held = idx.meta
        return new


def _names(bands: int) -> list[str]:
    return [band_name(j) for j in range(bands)] + [EXACT_BAND]

