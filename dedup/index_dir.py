"""The persistent index directory (``--index-dir``): LSHBloom filters kept across runs.

Layout (the only definition of it)::

    INDEX/index.json         format, params, documents, current version, per-band summary and the
                             batches it holds (below); replaced atomically
    INDEX/v-NNNNNN/<name>/   the current version: a :class:`dedup.scalable.FilterStack` per band (band-00.., exact)
    INDEX/.lock              held (flock) while a version is installed, and while a Deduplicator loads one
    INDEX/.turn              held (flock) by a datatrove rank from its load to its save (:meth:`IndexDir.turn`)
    INDEX/.save-*/           a Deduplicator's stacks while it saves, held (flock); a killed save's: removed by the next

``batches`` lists every run that added documents: its run id (:func:`dedup.runs.run_id`), the version it created, and
per input file its name, path, size, content fingerprint (XXH3-128 of the file's bytes), first documents
(:func:`first_documents`) and row count. A :class:`dedup.streaming.Deduplicator`'s batch has no files (saved to a new
directory, the loaded index's batches come first), a random run id and ``"source": "Deduplicator"``; a datatrove rank's
(:class:`pipelines.datatrove_step.LSHBloomDedup`) also records its ``first_documents``.
An input the index already holds is refused before anything is written, naming the run that indexed it (its rows would
all be removed as duplicates of themselves: a retried job, a lost output directory): same fingerprint, same first
documents as a rank's (and the reverse), or a file at a path the index took a file from that grew since (its bytes then,
followed by more); a file replaced by other content is a new file, and a file the index holds with no rows is not
refused, grown or not (it has none to lose; every empty file has one fingerprint).

Versions: a run pins the version current when it starts (in its run record); every band task loads
exactly that version. Installing the next version succeeds only while the pinned one is current, else a
rerun redoes the band stage against the new one. A run killed between its install and its manifest finds
its own batch in the index and does not install (or count its documents) twice.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import IO

from . import io
from .config import DedupConfig
from .normalize import WORDS, word_changes_since
from .scalable import FilterStack
from .shards import InputError, Shard, head_texts

INDEX_FILE = "index.json"
LOCK_FILE = ".lock"
TURN_FILE = ".turn"
SAVE_PREFIX = ".save-"
_TURNS: dict[Path, IO] = {}  # index directories whose turn (IndexDir.turn) this process holds, by the file holding it
FORMAT = 2
_REQUIRED = ("format", "params", "documents", "current", "stacks")
_BATCH_REQUIRED = ("run_id", "version", "created_unix", "documents", "files")  # a batch's fields; "source" optional
VERSION = re.compile(r"v-\d{6}")  # a version's directory name; other names in INDEX/ are the user's


#: The config fields an index is bound to, besides its banding.
CONFIG_PARAMS = ("threshold", "num_perm", "ngram", "unit", "nfkc", "scheme", "seed", "fp", "exact_fp", "band_key")


def _meta_problem(meta: dict) -> str | None:
    """What in index.json (read as ``meta``) has the wrong type or shape, or None."""
    def shown(v: object) -> str:
        return "null" if v is None else repr(v)
    params, batches = meta["params"], meta["batches"]
    if not isinstance(params, dict):
        return f"'params' is {shown(params)}, expected an object"
    if missing := [k for k in (*CONFIG_PARAMS, "bands", "rows") if k not in params]:
        return f"'params' lacks {missing[0]!r}"
    if isinstance(meta["documents"], bool) or not isinstance(meta["documents"], int) or meta["documents"] < 0:
        return f"'documents' is {shown(meta['documents'])}, expected a count"
    if not isinstance(meta["current"], str) or not VERSION.fullmatch(meta["current"]):
        return f"'current' is {shown(meta['current'])}, expected a version name (v-NNNNNN)"
    if not isinstance(batches, list):
        return f"'batches' is {shown(batches)}, expected a list of batches"
    for i, b in enumerate(batches):
        if not isinstance(b, dict):
            return f"batch {i} is {shown(b)}, expected an object"
        if missing := [k for k in _BATCH_REQUIRED if k not in b]:
            return f"batch {i} lacks {missing[0]!r}"
        if not isinstance(b["files"], list) or not all(isinstance(f, dict) and {"fingerprint", "path"} <= f.keys()
                                                        for f in b["files"]):
            return f"batch {i}'s 'files' is not a list of file records (fingerprint, path)"
    return None


def saved_on(batch: dict) -> str:
    """When a batch of ``index.json`` was saved, in words (``2025-01-31 12:00 UTC``)."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(batch["created_unix"]))


class IndexMismatchError(ValueError):
    """An index directory built with other parameters."""


class StaleIndexError(io.StateError):
    """An install refused: another run installed a version since this one's pinned one. Its sketches are sound
    (``keeps_work``: :func:`dedup.runs.execute` keeps ``_work/``): a rerun redoes only the band and write stages."""

    keeps_work = True


def index_params(config: DedupConfig, bands: int, rows: int) -> dict:
    """The parameters an index directory is bound to (its keys or sizes), and :data:`dedup.normalize.WORDS`."""
    return {**{k: getattr(config, k) for k in CONFIG_PARAMS}, "bands": bands, "rows": rows, "words": WORDS}


def _prefix_digest(path: Path, size: int) -> str:
    """XXH3-128 (hex) of the first ``size`` bytes of ``path`` (a file's fingerprint: its whole size)."""
    import xxhash

    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while size > 0 and (block := f.read(min(size, 8 << 20))):
            h.update(block)
            size -= len(block)
    return h.hexdigest()


#: How many first documents a ``first_documents`` record digests (a datatrove rank's, an input file's).
HEAD = 64


def first_documents(texts: Iterable[str | None]) -> dict | None:
    """``{"count", "xxh3"}`` of the first :data:`HEAD` of ``texts`` not null or empty (as datatrove's readers
    skip them): XXH3-128 (hex) of each one's UTF-8 bytes after their length (8 bytes, little-endian); None for
    none. Equal records: the same rows, in order."""
    import xxhash

    h, n = xxhash.xxh3_128(), 0
    for text in islice((t for t in texts if t), HEAD):
        raw = text.encode("utf-8")
        h.update(len(raw).to_bytes(8, "little") + raw)
        n += 1
    return {"count": n, "xxh3": h.hexdigest()} if n else None


def file_entry(shard: Shard, text_column: str = "text") -> dict:
    """The module docstring's record of an input file (``rows`` added by the run): the fingerprint (hex)
    identifies it whatever its name or place, ``first_documents`` its first rows whatever their format."""
    size = shard.path.stat().st_size
    return {"shard": shard.name, "path": str(shard.path), "bytes": size,
            "fingerprint": _prefix_digest(shard.path, size),
            "first_documents": first_documents(head_texts(shard, text_column, HEAD))}


def holds_batch(index: str | os.PathLike, run_id: str) -> bool:
    """Whether the index directory ``index`` (need not exist; any parameters) holds run ``run_id``'s batch;
    False where that cannot be told (index.json damaged or unreadable)."""
    try:
        batches = io.read_json(Path(index) / INDEX_FILE, _REQUIRED).get("batches")
    except io.StateError:  # missing or unreadable too
        return False
    return isinstance(batches, list) and any(isinstance(b, dict) and b.get("run_id") == run_id for b in batches)


class IndexDir:
    """An index directory (need not exist yet) bound to one run's :func:`index_params`; IndexMismatchError when
    built with other parameters, :class:`dedup.io.StateError` when ``index.json`` is damaged.

    >>> import tempfile, pathlib
    >>> idx = IndexDir(pathlib.Path(tempfile.mkdtemp()) / "index", index_params(DedupConfig(), 9, 13))
    >>> idx.current is None, idx.documents
    (True, 0)
    """

    def __init__(self, path: str | os.PathLike, params: dict):
        self.path = Path(io.given_path(path, "index directory")).resolve()
        if self.path.exists() and not self.path.is_dir():
            raise io.StateError(f"{self.path}: not a directory (an index directory is one)")
        self.params, self.meta = params, self._read()
        if self.meta is not None:
            built = self.meta["params"]
            if differ := [k for k, v in params.items() if built.get(k) != v]:  # all of them: one refusal
                changes = word_changes_since(built.get("words")) if "words" in differ else ""
                raise IndexMismatchError(
                    f"{self.path / INDEX_FILE}: index built with {', '.join(f'{k}={built.get(k)!r}' for k in differ)}, "
                    f"this run has {', '.join(f'{k}={params[k]!r}' for k in differ)}; use the same parameters or "
                    "another --index-dir" + (f" ({changes}, so the keys of that text changed)" if changes else ""))

    def _read(self) -> dict | None:
        p = self.path / INDEX_FILE
        if not p.exists():
            if self.path.is_dir() and any(VERSION.fullmatch(v.name) for v in self.path.iterdir()):
                raise io.StateError(f"{p}: missing, but {self.path} holds index versions: an interrupted first "
                                    "save (remove the directory) or a lost index.json (restore it); or use another "
                                    "--index-dir")
            return None
        meta = io.read_json(p, _REQUIRED)
        if meta["format"] not in (1, FORMAT):
            raise io.StateError(f"{p}: unknown index format {meta['format']!r}")
        meta.setdefault("batches", [])  # format 1 did not record what it holds
        if problem := _meta_problem(meta):
            raise io.StateError(f"{p}: damaged: {problem}; restore it from a copy, or use another --index-dir")
        if not (self.path / meta["current"]).is_dir():
            raise io.StateError(f"{p}: names version {meta['current']!r}, which is missing from {self.path}")
        return meta

    @property
    def current(self) -> str | None:
        """Name of the current version, or None for an empty index."""
        return self.meta["current"] if self.meta else None

    @property
    def documents(self) -> int:
        return self.meta["documents"] if self.meta else 0

    def holds_run(self, run_id: str) -> bool:
        return any(b["run_id"] == run_id for b in (self.meta or {}).get("batches", []))

    def check_not_held(self, shards: list[Shard], text_column: str = "text") -> list[dict]:
        """The inputs' :func:`file_entry`; an :class:`InputError` names the first the index holds (module
        docstring) and the run or rank that indexed it."""
        batches = (self.meta or {}).get("batches", [])
        # a file held with no rows has none to lose (and every empty file has one fingerprint): not refused
        indexed = [(b, f) for b in batches for f in b["files"] if f.get("rows") != 0]
        held, at = {f["fingerprint"]: (b, f) for b, f in indexed}, {f["path"]: (b, f) for b, f in indexed}
        files = [file_entry(s, text_column) for s in shards]
        for s, entry in zip(shards, files):
            if entry["first_documents"] and (rank := next(
                    (b for b in batches if b.get("first_documents") == entry["first_documents"]), None)):
                raise InputError(s.path, f"its first {entry['first_documents']['count']} documents are those a "
                                         f"datatrove rank saved in the index {self.path} on {saved_on(rank)} (batch "
                                         f"{rank['run_id']}); fed again, every row would be removed as a duplicate "
                                         "of itself. Leave it out, or use another --index-dir")
            if entry["fingerprint"] in held:
                batch, f = held[entry["fingerprint"]]
                raise InputError(s.path, f"the index {self.path} already holds this file (indexed as {f['path']} by "
                                         f"run {batch['run_id']} on {saved_on(batch)}); feeding it again would remove "
                                         "every row as a duplicate of itself. Leave it out, or use another --index-dir")
            batch, f = at.get(entry["path"], (None, {}))
            grew = f.get("bytes") and entry["bytes"] > f["bytes"]
            if grew and _prefix_digest(s.path, f["bytes"]) == f["fingerprint"]:
                raise InputError(s.path, f"grew since the index {self.path} took its first {f.get('rows', '?')} rows "
                                         f"({f['bytes']} bytes, run {batch['run_id']} on {saved_on(batch)}); fed "
                                         "again, they would be removed as duplicates of themselves. Give new rows in a "
                                         "new file, or use another --index-dir")
        return files

    @contextmanager
    def _locked(self, name: str = LOCK_FILE, waiting: Callable[[], None] = lambda: None) -> Iterator[IO | None]:
        """Hold the flock of the file ``name`` in the index directory (``waiting()`` first when another holds it);
        yields that file, or None for a read-only index without it (copied without it: none to hold)."""
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            f = open(self.path / name, "a+")
        except OSError as e:  # an index this process may only read: flock takes a file opened for reading
            if not isinstance(e, PermissionError) and e.errno != errno.EROFS:
                raise
            try:
                f = open(self.path / name)
            except FileNotFoundError:  # no one who could write there has locked it (each makes it first)
                f = None
        if f is None:
            yield None
            return
        with f:  # closing it releases the lock
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                waiting()
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield f
            finally:  # unlocked, not only closed: a process forked meanwhile holds the file too
                if not f.closed:
                    fcntl.flock(f, fcntl.LOCK_UN)

    @contextmanager
    def turn(self, waiting: Callable[[], None] = lambda: None) -> Iterator[None]:
        """Hold the index for a whole load, add and save (the ranks of :class:`pipelines.datatrove_step.LSHBloomDedup`
        take turns so): waits while another process holds it, calling ``waiting`` first. In one process the latest turn
        takes the index over from an earlier one, which can only be a holder that never finished (a failed pipeline's
        step kept alive by its traceback); a save from a load that is no longer current is refused all the same."""
        stale = _TURNS.pop(self.path, None)
        if stale is not None and not stale.closed:
            fcntl.flock(stale, fcntl.LOCK_UN)
            stale.close()
        with self._locked(TURN_FILE, waiting) as f:
            if f is not None:
                _TURNS[self.path] = f
            try:
                yield
            finally:
                if f is not None and _TURNS.get(self.path) is f:
                    del _TURNS[self.path]

    @contextmanager
    def saving(self) -> Iterator[Path]:
        """A new ``INDEX/.save-*`` directory for a version's stacks before :meth:`install`, held (flock) until
        the block ends, then removed; those killed saves left (held by no process) are removed first."""
        with self._locked():  # no save's directory is seen between its making and its lock
            for left in self.path.glob(f"{SAVE_PREFIX}*"):
                try:
                    fd = os.open(left, os.O_RDONLY | os.O_DIRECTORY)
                except OSError:  # not a directory: not a save's
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a save in progress
                finally:
                    os.close(fd)
                shutil.rmtree(left, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=SAVE_PREFIX, dir=self.path))
            fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            os.close(fd)

    def load_current(self, names: list[str]) -> tuple[str | None, list[FilterStack]]:
        """The current version's name and its stacks ``names`` (none for an empty index), read under the lock
        (an install cannot remove them meanwhile); :class:`dedup.io.StateError` for a damaged or missing one."""
        if not self.path.is_dir():
            return None, []
        with self._locked():
            self.meta = self._read()
            if self.current is None:
                return None, []
            return self.current, [FilterStack.load(self.path / self.current / n) for n in names]

    def checked_record(self, extra: dict | None) -> dict:
        """``extra`` as ``index.json`` will hold it (NaN as None, keys as strings); ValueError or TypeError where
        :meth:`install` could not record it: a field the batch has, or a value JSON cannot hold. Called before
        anything is written (a first save would leave a version without index.json)."""
        if clash := [k for k in (extra or {}) if k in (*_BATCH_REQUIRED, "source")]:
            raise ValueError(f"record field {clash[0]!r} is one of the batch's own in {self.path / INDEX_FILE} "
                             f"({', '.join((*_BATCH_REQUIRED, 'source'))}); name it otherwise")
        try:
            return json.loads(io.json_text(extra or {}))
        except (TypeError, ValueError) as e:
            raise type(e)(f"record for {self.path / INDEX_FILE}: {e}") from None

    def install(self, built: Path, names: list[str], pinned: str | None, run_id: str, files: list[dict],
                documents: int, source: str | None = None, extra: dict | None = None, held: dict | None = None) -> dict:
        """Make the stacks ``built/<name>`` the next version after ``pinned`` (None: the empty index),
        recording this batch (``files``: :func:`file_entry` with ``rows``; ``source``: what added rows from no
        file, e.g. a Deduplicator; ``extra``: more fields, e.g. a datatrove rank's ``first_documents``).
        ``held``: the ``index.json`` of an index the stacks hold besides this batch, whose batches and documents
        a first version takes over (a Deduplicator that loaded it, saving to a new directory).
        Copies the stacks into ``v-NNNNNN``, replaces ``index.json`` atomically, then removes older versions: a
        crash leaves ``index.json`` naming a complete version. Idempotent for a run already installed.

        Raises:
            StaleIndexError: another run installed a version since ``pinned``.
            ValueError, TypeError: ``extra`` holds a field the batch has, or a value JSON cannot (nothing
                is installed).
        """
        extra = self.checked_record(extra)  # what index.json holds is what install returns
        with self._locked():
            self.meta = self._read()
            if self.holds_run(run_id):
                return self.meta  # type: ignore[return-value]
            if self.current != pinned:
                redo = ("load it again and add the rows again" if source else
                        "rerun the same command (it redoes the band stage against the new version)")
                raise StaleIndexError(f"{self.path / INDEX_FILE}: another run installed version {self.current} while "
                                      f"this {source or 'run'} was working from {pinned or 'an empty index'}; {redo}")
            number = int(pinned.split("-")[1]) + 1 if pinned else 1
            version = self.path / f"v-{number:06d}"
            shutil.rmtree(version, ignore_errors=True)
            try:
                for name in names:  # a stack is a flat directory; its first failed copy is the error
                    (version / name).mkdir(parents=True)
                    for f in sorted((built / name).iterdir()):
                        shutil.copy2(f, version / name / f.name)
                stacks = {n: FilterStack.load(version / n).describe() for n in names}
                base = self.meta or held or {}
                batches = base.get("batches", []) + [
                    {"run_id": run_id, "version": version.name, "created_unix": time.time(), "documents": documents,
                     "files": files, **({"source": source} if source else {}), **(extra or {})}]
                meta = {"format": FORMAT, "params": self.params, "documents": base.get("documents", 0) + documents,
                        "current": version.name, "stacks": stacks, "batches": batches}
                io.write_json_atomic(self.path / INDEX_FILE, meta)  # its rename is its last step: then installed
            except OSError as e:  # disk full, permissions: no half-written version stays
                shutil.rmtree(version, ignore_errors=True)
                where = f" ({e.filename})" if e.filename else ""
                raise OSError(e.errno, f"{e.strerror or e}{where} while installing its next version; the index is "
                                       "unchanged", str(self.path)) from None
            for stale in self.path.iterdir():
                if VERSION.fullmatch(stale.name) and stale.name != version.name:
                    shutil.rmtree(stale, ignore_errors=True)
            self.meta = meta
            return meta

    def summary(self) -> dict:
        """What a manifest records of the index after a run's install (the number of batches, not their list)."""
        return {k: v for k, v in self.meta.items() if k != "batches"} | {"batches": len(self.meta["batches"])}
