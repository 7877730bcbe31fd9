"""The run protocol of both dedup engines: inputs, output names, identity, resume, force.

Every dedup run, fused or staged, is an :func:`execute`: :func:`prepare`, the engine's work, :func:`finish`.

1. **Inputs** (:func:`discover`): files, directories (walked following symlinked directories) and globs.
   Walks skip, saying which, hidden names, plain ``.json`` files, files compressed in a way not read
   (``.jsonl.bz2``), Hugging Face ``datasets``' ``cache-*.arrow`` files and folders an earlier run wrote
   (:func:`earlier_output`; globs below a ``**`` too); a glob takes ``.json`` files only if it ends in
   ``.json``, cache files only if its name starts with ``cache-``. *Canonical order*: sorted by absolute path
   as given (links not resolved: rows reached through links or as copies give the same decisions and output
   names); a file reached twice is read once.
2. **Outputs**: ``kept/<stem>.parquet`` per input (:mod:`dedup.layout`); colliding output names
   (``a.parquet`` + ``a.jsonl``) are refused. An input inside ``--out`` is refused when named and skipped by
   walks and globs: ``--out`` is ours to write and clear.
3. **Identity** (:func:`run_identity`): decision config, word definition (:data:`dedup.normalize.WORDS`),
   inputs (name, path, bytes, mtime), index directory. ``OUT/manifest.json`` exists iff a run completed and
   records it: the same identity again is a no-op, another an error unless ``force``.
4. **Run record**: before any output, ``OUT/_work/run.json`` records the identity, engine,
   :func:`output_settings` and index version started from. A record without a manifest is resumed (staged
   engine, same identity and settings) or its outputs are all cleared. Outputs with neither a manifest nor a
   record are not ours to delete: the run is refused unless ``force``.
5. **Failure**: bad input (``InputError``), a damaged state file (``StateError``) or a full disk (``OSError``)
   clears every output, the record too (:func:`clear_outputs`); exit 2 with one line. Only a killed staged
   run, or one whose install was refused as stale (:class:`dedup.index_dir.StaleIndexError`), keeps ``_work/``.
6. **Completion** (:func:`finish`): dead tasks' temporaries go, the manifest is written last, ``_work/`` goes.

``--force`` clears ``kept/``, ``removed.parquet``, ``manifest.json`` and ``_work/`` only; in ``kept/`` it leaves
index directories and earlier runs' outputs (``--index-dir OUT/kept/idx``; ``OUT/kept`` itself, or a path in
``_work/``, is refused as an index directory). Both engines hold
``OUT`` throughout (:func:`dedup.io.claim`): a concurrent run into it is refused before step 1.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from . import io, layout
from .config import DedupConfig, differing
from .index_dir import INDEX_FILE, holds_batch
from .normalize import WORDS, word_changes_since
from .shards import InputError, Shard, ShardReader, format_of, is_lfs_pointer, is_plain_json

WORK_DIR = "_work"
RUN_FILE = "run.json"

Log = Callable[[str], None]


class OutputExistsError(RuntimeError):
    """OUT already holds a completed run of another identity, or files of no run."""


# ------------------------------------------------------------------------------ inputs
def inside(path: Path, directory: Path | None) -> bool:
    """Whether ``path`` (resolved) lies inside ``directory`` (resolved), or is it.

    >>> inside(Path("/a/b/c"), Path("/a/b")), inside(Path("/a/b"), Path("/a/b")), inside(Path("/a/bc"), Path("/a/b"))
    (True, True, False)
    """
    return directory is not None and path.resolve().is_relative_to(directory.resolve())


def refuse_out_in_inputs(out: Path, inputs: list[Path]) -> None:
    """ValueError when ``out`` lies inside, or is, one of the ``inputs`` directories (its files could replace
    theirs)."""
    for d in inputs:
        if inside(out, d):
            raise ValueError(f"--out {out} lies inside the input directory {d}; choose another path")


def refuse_unusable_out(out: Path) -> None:
    """ValueError when the output directory ``out`` is not named in UTF-8 (Arrow and tokenizers write only there);
    OutputExistsError when it exists and is not a directory."""
    if shown := io.undecodable(out):
        raise ValueError(f"--out {shown}: the path is not valid UTF-8 (output paths must be); rename it")
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a directory; choose another output directory")


def refuse_other_stage(out: Path, stage: str) -> None:
    """ValueError when ``out`` holds the manifest of a stage other than ``stage``, or of none (a generated corpus)."""
    try:
        prior = io.read_manifest(out) if Path(out).is_dir() else None  # damaged: StateError
    except io.NotAStageOutput:
        raise ValueError(f"--out {out} holds a manifest.json of no stage (a generated corpus?); choose another "
                         "path") from None
    if prior is not None and prior["stage"] != stage:
        article = "an" if str(prior["stage"])[:1] in "aeiou" else "a"
        raise ValueError(f"--out {out} holds {article} {prior['stage']} output (manifest.json); choose another path")


def is_datasets_cache_file(name: str) -> bool:
    """Whether a file name is a Hugging Face ``datasets`` cache of ``map``, ``filter``... results
    (``cache-<fingerprint>[_<rank>_of_<n>].arrow``, beside the dataset): derived rows, not the dataset's.

    >>> is_datasets_cache_file("cache-53f056d2ad2c28cf.arrow"), is_datasets_cache_file("data-00000-of-00001.arrow")
    (True, False)
    """
    return name.startswith("cache-") and name.lower().endswith(".arrow")


#: Compression suffixes memdedup does not read (JSON Lines is read plain, ``.gz`` or ``.zst``).
_OTHER_COMPRESSION = (".bz2", ".xz", ".lzma", ".lz4", ".br", ".zip", ".zstd", ".snappy", ".gz", ".zst")
#: The metadata files Hugging Face ``datasets`` writes beside a dataset's Arrow files.
_DATASETS_JSON = ("state.json", "dataset_info.json", "dataset_dict.json")


def _in_out(p: Path, out: Path | None) -> bool:
    """Whether a file a walk or glob found is --out's (``out`` resolved): by its place (a link's directory) or what it
    links to."""
    return out is not None and (p.parent.resolve().is_relative_to(out) or p.resolve().is_relative_to(out))


def _refuse_unreadable_links(paths: list[Path]) -> None:
    """InputError naming the first of ``paths`` (data files a walk or glob found) that is a symbolic link which
    cannot be read: refused, not left out. Called before any other is looked at."""
    for p in paths:
        if p.is_symlink():
            try:
                os.stat(p)
            except FileNotFoundError:
                raise InputError(p, "a broken symbolic link: the file it points to is missing") from None
            except OSError as e:  # a loop, a directory it may not enter
                raise InputError(p, f"a symbolic link whose target cannot be read ({e.strerror})") from None

#: What :func:`discover` says about each kind of file directory walks skip.
_SKIPPED = {
    "hidden": "hidden file(s) (names starting with '.'); name them explicitly to include them",
    "cache": "Hugging Face datasets cache file(s) (cache-*.arrow: results of map/filter, not the dataset's rows); "
             "name them explicitly to include them",
    "json": ".json file(s) (often manifests and configs); name them, or a '*.json' glob, to read them as JSON Lines",
    "compressed": "compressed file(s) in a compression memdedup does not read (JSON Lines: plain, .gz or .zst); "
                  "recompress them",
    "outputs": "folder(s) written by an earlier memdedup run (a stage's manifest.json, a killed run's "
               f"{WORK_DIR}/{RUN_FILE}, or a running or killed audit stage's {io.RUNNING_FILE}); name one to read it",
}


def earlier_output(d: Path) -> bool:
    """Whether directory ``d`` holds a stage manifest (:func:`dedup.io.read_manifest`), a killed dedup run's
    ``_work/run.json`` or a running or killed audit stage's :data:`dedup.io.RUNNING_FILE`: walks, and globs below a
    ``**``, skip it (step 1)."""
    if (d / WORK_DIR / RUN_FILE).is_file() or (d / io.RUNNING_FILE).is_file():
        return True
    try:
        return io.read_manifest(d) is not None
    except (io.StateError, OSError):
        return False


def _walk(root: Path) -> tuple[list[Path], dict[str, list[Path]]]:
    """(input files under ``root``, skipped files by kind of :data:`_SKIPPED` but ``datasets``' ``.json``);
    symlinked directories are followed, each real one once (link cycles end)."""
    found: list[Path] = []
    skipped: dict[str, list[Path]] = {k: [] for k in _SKIPPED}
    seen_dirs: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        outputs = {d for d in dirnames if not d.startswith(".") and earlier_output(Path(dirpath) / d)}
        skipped["outputs"] += [Path(dirpath) / d for d in sorted(outputs)]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in outputs)
        for f in sorted(filenames):
            p = Path(dirpath) / f
            base, dot, ext = f.rpartition(".")
            broken = p.is_symlink() and not p.exists()
            if format_of(p) is None or not (p.is_file() or broken):
                if (dot and not f.startswith(".") and f".{ext.lower()}" in _OTHER_COMPRESSION
                        and format_of(Path(base)) is not None and p.is_file()):
                    skipped["compressed"].append(p)
                continue
            if f.startswith("."):
                skipped["hidden"].append(p)
            elif is_plain_json(p):
                if f.lower() not in _DATASETS_JSON:
                    skipped["json"].append(p)
            elif is_datasets_cache_file(f):
                skipped["cache"].append(p)
            else:  # a broken link too: refused by discover unless inside --out
                found.append(p)
    return found, skipped


def _skip_notes(skipped: dict[str, list[Path]]) -> list[str]:
    """A line per kind of skipped file, with the first names."""
    return [f"skipped {len(paths)} {_SKIPPED[kind]}: {', '.join(p.name for p in paths[:3])}"
            f"{', ...' if len(paths) > 3 else ''}" for kind, paths in skipped.items() if paths]


def discover(inputs: Sequence[str | os.PathLike], exclude: str | os.PathLike | None = None,
             log: Log = lambda m: None) -> list[Shard]:
    """Expand files, directories and globs (or one of them) into shards in canonical order (step 1; ``exclude``:
    the run's ``--out``, step 2). ``log`` is told what walks and globs skipped, by kind, with the first names.

    Raises:
        InputError: a missing path, a glob matching nothing, a file named explicitly of an unknown format or
            inside ``exclude``, a file name not UTF-8, a Git LFS pointer, a data file that is an unreadable
            link, two inputs with one output name, or no input files at all.

    Example:
        >>> import tempfile, pathlib, pyarrow as pa, pyarrow.parquet as pq
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> (d / "b").mkdir()
        >>> for name in ("b/x.parquet", "a.parquet", ".hidden.parquet"):
        ...     pq.write_table(pa.table({"text": ["t"]}), d / name)
        >>> [s.name for s in discover([d])]
        ['a.parquet', 'b/x.parquet']
    """
    if isinstance(inputs, (str, bytes, os.PathLike)):
        inputs = [inputs]  # one path, not a sequence of one-character paths ("/" first)
    out = Path(exclude) if exclude is not None else None
    out_real = out.resolve() if out is not None else None
    files: dict[Path, Path] = {}  # path as given (absolute, normalised, links not resolved) -> real file
    skipped: dict[str, list[Path]] = {k: [] for k in _SKIPPED}
    said: set[Path] = set()  # the skipped files' real paths
    for item in inputs:
        s = io.given_path(item, "inputs")
        p = Path(s)
        if p.is_dir():
            found, skips = _walk(p)
            for k, v in skips.items():  # a directory given twice: its files said once
                skipped[k] += [q for q in v if not inside(q, out) and q.resolve() not in said]
                said.update(q.resolve() for q in v)
            new = [q for q in found if not _in_out(q, out_real)]
            _refuse_unreadable_links(new)
            if not new:
                if found:
                    raise InputError(p, f"every input file under it lies inside --out {out}; "
                                        "choose an output directory outside the inputs")
                why = "; ".join(_skip_notes(skips))
                raise InputError(p, "directory contains no .parquet, .arrow or .jsonl[.gz|.zst] files"
                                    + (f" ({why})" if why else ""))
        elif p.is_file():
            if format_of(p) is None:
                raise InputError(p, "unknown input format (expected .parquet, .arrow, .jsonl, .jsonl.gz or .jsonl.zst)")
            if inside(p, out):
                raise InputError(p, f"input lies inside --out {out}; memdedup writes and clears that "
                                    "directory: choose another --out")
            new = [p]
        elif glob.has_magic(s):
            matches = [m for m in sorted(map(Path, glob.glob(s, recursive=True)))  # .json files: when named
                       if format_of(m) and not _in_out(m, out_real)
                       and (is_plain_json(Path(s)) or not is_plain_json(m))]
            # ds/*.arrow: the dataset's files, not a map's output beside them (cache-*.arrow names those)
            caches = [] if p.name.startswith("cache-") else [m for m in matches if is_datasets_cache_file(m.name)]
            if caches:
                skipped["cache"] += [m for m in caches if m.resolve() not in said]
                said.update(m.resolve() for m in caches)
                matches = [m for m in matches if not is_datasets_cache_file(m.name)]
            # folders a ``**`` reaches are found, as a walk's are; those the pattern names (run*/kept) are not
            deep = next((i for i, part in enumerate(p.parts) if part == "**"), None)
            above = {m: next((d for d in m.parents if len(d.parts) > deep and earlier_output(d)), None)
                     for m in matches} if deep is not None else {}
            outs = sorted({d for d in above.values() if d})
            skipped["outputs"] += [d for d in outs if d.resolve() not in said]
            said.update(d.resolve() for d in outs)
            matches = [m for m in matches if above.get(m) is None]
            _refuse_unreadable_links(matches)
            new = [m for m in matches if m.is_file()]
            if not new:
                why = "; ".join(_skip_notes({"outputs": outs, "cache": caches}))
                raise InputError(s, "glob matches no .parquet, .arrow or .jsonl files (outside --out)"
                                    + (f" ({why})" if why else ""))
        elif os.path.lexists(p):
            raise InputError(p, "a broken symbolic link or not a regular file")
        else:
            raise InputError(s, "no such file or directory")
        for q in new:
            files.setdefault(Path(os.path.abspath(q)), q.resolve())
    if not files:
        raise InputError("<inputs>", "no input files given")
    for note in _skip_notes(skipped):
        log(note)
    first: dict[Path, Path] = {}  # real file -> its first path as given: a file reached twice is read once
    for given in sorted(files, key=str):
        first.setdefault(files[given], given)
    ordered = list(first.values())
    for q in ordered:
        if shown := io.undecodable(q):
            raise InputError(shown, "file name is not valid UTF-8 (output names must be); rename it")
        if is_lfs_pointer(q):
            raise InputError(q, "a Git LFS pointer, not the data: fetch it (git lfs pull in its clone, or download it)")
    root = Path(os.path.commonpath([str(q.parent) for q in ordered]))
    shards = [Shard(q, q.relative_to(root).as_posix(), *format_of(q)) for q in ordered]  # type: ignore[misc]
    seen: dict[str, Shard] = {}
    for s in shards:  # casefold: one file on case-insensitive file systems (macOS, Windows)
        if (other := seen.setdefault(s.stem.casefold(), s)) is not s:
            raise InputError(s.path, f"its output name in memdedup dedup, kept/{s.stem}.parquet, collides with that "
                                     f"of {other.path} (every stage reads a corpus as dedup does); rename one")
    return shards


# ------------------------------------------------------------------------------ identity
def run_identity(decision_config: dict, shards: list[Shard], index_dir: Path | None = None) -> dict:
    """The run's identity (step 3), stored in the manifest and the run record."""
    inputs = [{"shard": s.name, "path": str(s.path), "bytes": (st := s.path.stat()).st_size,
               "mtime_ns": st.st_mtime_ns} for s in shards]
    return {"config": decision_config, "words": WORDS, "inputs": inputs,
            "index_dir": str(index_dir) if index_dir else None}


def output_settings(config: DedupConfig) -> dict:
    """The settings outside a run's identity that shape its files' bytes (``compression``, ``batch_rows``): a run
    resumes only a record of the same ones, so no output mixes files written two ways."""
    return {k: v for k, v in config.to_dict().items() if k not in config.decision_dict()}


def run_id(identity: dict, out: Path, settings: dict | None = None) -> str:
    """A run's stable name: SHA-256 (16 hex digits) of the canonical JSON of its identity, resolved output
    directory and :func:`output_settings` (one identity into two ``OUT`` is two runs for an index directory)."""
    run = {**identity, "out": str(Path(out).resolve()), **({"settings": settings} if settings else {})}
    return hashlib.sha256(json.dumps(run, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _difference(old: dict, new: dict) -> str:
    """What sets the identity ``new`` apart from ``old`` (:func:`run_identity`), as the refusal of a rerun says it."""
    if diff := differing(old.get("config", {}), new["config"]):
        return f"a different config ({', '.join(diff)} differ)"
    if old.get("words") != new["words"]:
        return f"a different word definition ({word_changes_since(old.get('words')) or 'dedup.normalize.WORDS'})"
    if old.get("index_dir") != new["index_dir"]:
        return f"a different index directory ({old.get('index_dir') or 'none'} before)"
    before, now = ({i["path"]: i for i in identity.get("inputs") or []} for identity in (old, new))

    def change(was: dict | None, i: dict) -> str:  # (an output name follows the other inputs: see layout)
        if was is None:
            return f"{i['shard']} added"
        renamed = {**was, "shard": i["shard"]} == i
        return f"{was['shard']} now named {i['shard']}" if renamed else f"{i['shard']} changed"

    changes = [change(before.get(p), i) for p, i in now.items() if before.get(p) != i]
    changes += [f"{i['shard']} gone" for p, i in before.items() if p not in now]
    more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
    return f"different inputs ({', '.join(changes[:3])}{more})" if changes else "a different identity"


# ------------------------------------------------------------------------------ the plan
def work_dir(out: Path) -> Path:
    return Path(out) / WORK_DIR


@dataclass(frozen=True)
class RunPlan:
    """What :func:`prepare` decided.

    Attributes:
        out: the output directory.
        shards: inputs in canonical order.
        identity: see :func:`run_identity`.
        previous: the manifest of a completed run of this identity (nothing to do), or None.
        resume: the staged engine may reuse ``_work/`` of an interrupted run of this identity.
        record: the run record (written unless ``previous``).
        checked: what ``check`` returned (None when it was not called: no check, or a resume).
    """

    out: Path
    shards: list[Shard]
    identity: dict
    previous: dict | None
    resume: bool
    record: dict | None
    checked: object = None

    @property
    def work(self) -> Path:
        """Where this run's tasks write: ``_work/<run id>`` (``-<version>``, e.g. ``-v-000002``, when it started from
        that version of an index directory). A late task of another run (its client killed, the task still running on an
        external cluster) never writes where this run reads: its own directory is gone, so it fails. (A late task of
        this same run, resumed, writes the bytes the resumed run's own task writes.) An absolute path, as the inputs'
        are: tasks may run in another working directory (the workers of an external cluster)."""
        v = self.record.get("index_version")
        return work_dir(Path(os.path.abspath(self.out))) / (self.record["run_id"] + ("" if v is None else f"-{v}"))


def prepare(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, config: DedupConfig, *, engine: str,
            index_dir: Path | None = None, force: bool = False, log: Log = lambda m: None,
            check: Callable[[list[Shard]], object] | None = None,
            extra_record: Callable[[], dict] | None = None) -> RunPlan:
    """Steps 1-4; on return ``OUT`` holds a completed run of this identity (``previous``), or this run's record
    and what it may resume. ``check(shards)`` runs before anything under ``OUT`` is cleared or written;
    ``extra_record()`` adds fields to a new run record (the staged engine: the pinned index version)."""
    out = Path(out)
    refuse_unusable_out(out)
    refuse_other_stage(out, "dedup")  # --force or not: never another stage's files
    kept = out / layout.KEPT_DIR
    if index_dir is not None and (inside(index_dir, work_dir(out)) or Path(index_dir).resolve() == kept.resolve()):
        name = WORK_DIR if inside(index_dir, work_dir(out)) else layout.KEPT_DIR
        raise ValueError(f"--index-dir {index_dir}: inside the output directory's {name}/, which runs clear (and "
                         f"the index with it); choose another path, such as a folder below {kept}/")
    shards = discover(inputs, exclude=out, log=log)
    for s in shards:  # Parquet schemas are checked before any output is written (JSONL ones when read)
        if s.fmt == "parquet":
            ShardReader(s, config.text_column, config.id_column, config.id_column_required, config.batch_rows)
    identity = run_identity(config.decision_dict(), shards, index_dir)
    previous = io.read_manifest(out)
    settings = output_settings(config)
    if previous is not None and not force:
        if previous.get("identity") != identity:
            raise OutputExistsError(f"{out} holds a completed dedup run with "
                                    f"{_difference(previous.get('identity', {}), identity)}; use --force to replace it")
        if other := differing({k: previous.get("config", {}).get(k, v) for k, v in settings.items()}, settings):
            raise OutputExistsError(f"{out} holds a completed dedup run written with other {', '.join(other)}; use "
                                    "--force to rewrite it")
        log(f"{out}: already complete for these inputs and config (use --force to redo)")
        return RunPlan(out, shards, identity, previous, False, None)
    record_path = work_dir(out) / RUN_FILE
    record = io.read_json(record_path, ("identity", "engine")) if record_path.exists() else None
    same_settings = record is not None and record.get("settings", settings) == settings  # an older record: these
    resumable = not force and previous is None and same_settings and record["identity"] == identity
    resume = resumable and record["engine"] == engine == "staged"
    if record is not None and previous is None and not resume and (index := record["identity"].get("index_dir")) \
            and holds_batch(index, record.get("run_id")):
        raise OutputExistsError(
            f"{out} holds the unfinished run {record['run_id']}, whose batch the index {index} already holds (it "
            "stopped after installing it, before its manifest): clearing its outputs would lose that batch's rows, "
            "which the index now refuses; rerun that run's command (same inputs and --out"
            + ("" if same_settings else "".join(f", --{k.replace('_', '-')} {v}"
                                                for k, v in record["settings"].items()))
            + ", without --force) to finish it, or choose another --out")
    checked = check(shards) if check is not None and not resumable else None  # a resume was checked when it started
    if previous is None and record is None and not force:
        strays = [f"{layout.KEPT_DIR}/"] if kept.is_dir() and any(
            not p.name.startswith(".") for p in kept.rglob("*") if p.is_file()) else []
        strays += [layout.REMOVED_FILE] if layout.removed_path(out).exists() else []
        if strays:
            raise OutputExistsError(f"{out} holds {strays[0]} from no memdedup run (no manifest.json or "
                                    f"{WORK_DIR}/{RUN_FILE}); remove it, choose another --out, or use --force")
    if resume:
        log(f"{out}: resuming the unfinished run of these inputs and config (its finished tasks are kept)")
        io.remove_temporaries(out)  # of the killed tasks; their completed work is kept
        return RunPlan(out, shards, identity, None, True, record)
    if record is not None and previous is None:
        why = f"with a different {_difference(record['identity'], identity)}" if record["identity"] != identity \
            else "of the same run" if same_settings else \
            f"written with other {', '.join(differing(record['settings'], settings))}"
        log(f"{out}: clearing the outputs of an unfinished run {why}")
    clear_outputs(out)
    record = {"identity": identity, "engine": engine, "settings": settings, "run_id": run_id(identity, out, settings),
              **(extra_record() if extra_record else {})}
    work_dir(out).mkdir(parents=True, exist_ok=True)
    io.write_json_atomic(record_path, record)
    return RunPlan(out, shards, identity, None, False, record, checked)


def execute(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, config: DedupConfig,
            run: Callable[[RunPlan], dict], *, clear_on: type[BaseException] | tuple[type[BaseException], ...],
            **prepare_args) -> dict:
    """A whole run holding ``out`` (:func:`dedup.io.claim`): :func:`prepare` (with ``prepare_args``), then
    ``run(plan)`` (ending with :func:`finish`) unless already complete; returns the manifest. A failure of a
    type in ``clear_on`` first clears the run's outputs (step 5)."""
    out = io.given_path(out, "out")
    with io.claim(Path(out)):
        plan = prepare(inputs, out, config, **prepare_args)
        if plan.previous is not None:
            return plan.previous
        try:
            return run(plan)
        except clear_on as e:
            # a stale index install keeps _work (its rerun resumes it), not outputs decided against that index
            clear_outputs(plan.out, keep_work=getattr(e, "keeps_work", False))
            if isinstance(e, OSError) and not plan.out.is_dir():  # a file of an ``out`` removed meanwhile
                raise io.out_removed(plan.out) from None  # (by hand, by a tool): name ``out``, not a temporary
            raise


def clear_outputs(out: Path, keep_work: bool = False) -> None:
    """Remove what ``--force`` clears (``_work/`` not when ``keep_work``) and temporaries under ``out``."""
    out = Path(out)
    io.manifest_path(out).unlink(missing_ok=True)
    layout.removed_path(out).unlink(missing_ok=True)
    _clear_kept(out / layout.KEPT_DIR)
    if not keep_work:
        shutil.rmtree(work_dir(out), ignore_errors=True)
    io.remove_temporaries(out)


def _clear_kept(directory: Path) -> None:
    """Empty ``directory`` (``OUT/kept/``, then the folders below it) but for the folders below it that are not
    this run's: an index directory, or an earlier run's outputs (:func:`earlier_output`: ``--out OUT/kept/b``)."""
    with suppress(OSError):  # as rmtree(ignore_errors=True): a clean-up must not hide the error it cleans up after
        for p in directory.iterdir() if not directory.is_symlink() else ():
            if not p.is_dir() or p.is_symlink():
                io.remove(p)
            elif not (earlier_output(p) or (p / INDEX_FILE).is_file()):
                _clear_kept(p)
        directory.rmdir()  # unless it holds what is left


def finish(plan: RunPlan, manifest_body: dict) -> dict:
    """Step 6: remove temporaries of dead task attempts, write the manifest (last, atomically), remove ``_work/``."""
    io.remove_temporaries(plan.out)
    manifest = io.write_stage_manifest(plan.out, "dedup", {**manifest_body, "identity": plan.identity})
    shutil.rmtree(work_dir(plan.out), ignore_errors=True)
    return manifest


__all__ = ["OutputExistsError", "RunPlan", "clear_outputs", "discover", "execute", "finish", "inside",
           "is_datasets_cache_file", "prepare", "run_id", "run_identity"]
