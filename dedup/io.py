"""Writing outputs safely, for every stage (dedup, audit, train, profile, report).

Every file is written to a temporary sibling (:func:`tmp_path`) and renamed into place when complete; a
stage's ``manifest.json`` (:func:`write_stage_manifest`) is written last: its output directory is complete
iff it exists; a JSON file read back (:func:`read_json`) that lacks a key or is not JSON raises
:class:`StateError` naming the file; a stage writes its output directory only while it holds it
(:func:`claim`): a second run into it at the same time is refused, not interleaved.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from itertools import takewhile
from pathlib import Path

MANIFEST_FILE = "manifest.json"
#: Empty file marking an output directory a stage is writing, or was killed writing (manifest not yet written).
RUNNING_FILE = ".memdedup-running"


class StateError(ValueError):
    """A file memdedup wrote earlier (a manifest, an index's metadata, a run record) is damaged or from an
    incompatible version; the message names the file."""


class NotAStageOutput(StateError):
    """A directory whose manifest.json names no stage (a generated corpus's, say)."""


class InUseError(RuntimeError):
    """Another run holds the output directory (:func:`claim`)."""


@contextmanager
def claim(out: Path) -> Iterator[None]:
    """Hold the output directory ``out`` for one run: an exclusive ``flock`` on the directory itself, released
    when the block ends or the process dies. ``out`` is made if missing, and removed again (with the parents
    this call made) if the run leaves it empty; one removed between its opening and its lock is made and
    opened again. Without ``flock`` for directories the run goes on unlocked; an ``out`` that is a file is
    left to the caller to refuse. :class:`InUseError` when another process holds ``out``."""
    out = Path(out)
    if out.is_symlink() and not out.exists():  # mkdir would say only "File exists"
        raise FileExistsError(errno.EEXIST, f"a symbolic link to {os.readlink(out)}, which does not exist; create "
                                            "that directory or choose another output", str(out))
    while True:  # again when ``out`` was removed meanwhile (by a run that made it, ending now)
        created = list(takewhile(lambda d: not d.exists(), (out, *out.parents)))
        if created:
            out.mkdir(parents=True, exist_ok=True)  # another run may make it at the same time
        if not out.is_dir():
            if out.exists():
                fd = None  # a file
                break
            continue
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):  # what this call made is the other run's now
                os.close(fd)
                raise InUseError(f"{out} is in use by another memdedup run (it holds the directory now); "
                                 "wait for it to end, or choose another --out") from None
        with suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(fd), os.stat(out)):
                break
        os.close(fd)
    try:
        yield
    finally:
        for d in created:  # innermost first, while ``out`` is held: no other run holds what goes
            try:
                d.rmdir()
            except OSError:  # not empty: the run wrote there
                break
        if fd is not None:
            os.close(fd)  # releases the lock


def tmp_path(final: Path) -> Path:
    """Temporary sibling of ``final``, unique per call (two writers of one file never share one)."""
    final = Path(final)
    suffix = f".tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    name = f".{final.name}{suffix}"
    if len(os.fsencode(name)) > NAME_MAX:  # a long final name (file systems take 255 bytes): its digest instead
        name = f".{hashlib.sha256(os.fsencode(final.name)).hexdigest()[:32]}{suffix}"
    return final.with_name(name)


#: The longest file name that common file systems accept, in bytes (ext4, XFS, btrfs, APFS: 255).
NAME_MAX = 255


def temporary_of(name: str) -> str | None:
    """The final file name (or the digest standing for a long one) whose :func:`tmp_path` ``name`` is (or was: before
    a59cc3f, ``.<name>.tmp-<pid>``), else None.

    >>> temporary_of(".part-00000.parquet.tmp-4242-0123456789ab"), temporary_of("part-00000.parquet")
    ('part-00000.parquet', None)
    """
    m = re.fullmatch(r"\.(.+)\.tmp-\d+(?:-[0-9a-f]{12})?", name)
    return m[1] if m else None


def out_removed(out: Path) -> FileNotFoundError:
    """The one-line error of a run whose output directory ``out`` was removed while it wrote there."""
    return FileNotFoundError(errno.ENOENT, "removed while this run wrote it; run the command again", str(out))


EMPTY_PATH = "an empty path (an unset variable?); give '.' for the working directory"


def given_path(path: str | bytes | os.PathLike, what: str) -> str:
    """``path`` as a str (bytes decoded as :func:`os.fsdecode` does); ValueError naming ``what`` when it is "": the
    working directory to pathlib, but more often an unset variable's value (``os.environ.get("OUT", "")``) than a
    wish, and refused by the command line too."""
    if (text := os.fsdecode(path)) == "":
        raise ValueError(f"{what}: {EMPTY_PATH}")
    return text


def make_below(out: Path, directory: Path) -> None:
    """Make ``directory`` and its missing parents inside ``out``, one by one, never ``out`` itself: an output
    directory removed while a run wrote there is never made again half filled (:func:`out_removed`)."""
    out = Path(out)
    if not out.is_dir():
        raise out_removed(out)
    d = out
    for part in Path(directory).relative_to(out).parts:
        d = d / part
        try:
            d.mkdir(exist_ok=True)
        except FileNotFoundError:  # its parent is gone: out was removed
            raise out_removed(out) from None


def remove_temporaries(root: Path, names: tuple[str, ...] | None = None) -> None:
    """Delete the temporaries (:func:`tmp_path`: files or directories) killed writers left anywhere under
    ``root``; with ``names``, only those of the files so named directly in ``root``."""
    root = Path(root)
    if not root.is_dir():
        return
    found = (p for p in (root.rglob(".*.tmp-*") if names is None else root.iterdir())  # others' names: left alone
             if (final := temporary_of(p.name)) is not None and (names is None or final in names))
    for p in sorted(found, reverse=True):
        remove(p)


def remove(path: Path) -> None:
    """Delete a file, a link or a directory tree (a link to a directory: the link), if there, ignoring errors (a
    clean-up that must not hide the error it cleans up after)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def replacing(final: Path) -> Iterator[Path]:
    """The :func:`tmp_path` of ``final``, to write (a file, or a directory that replaces the one at ``final``):
    renamed over ``final`` when the block completes (a directory at ``final`` is removed first: between the two,
    there is none), else deleted; an OSError naming no file names ``final`` (:func:`naming`)."""
    final = Path(final)
    tmp = tmp_path(final)  # unique to this call: no earlier writer's to clear
    try:
        yield tmp
        if tmp.is_dir() and final.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException as e:
        remove(tmp)
        if isinstance(e, OSError) and (named := naming(e, final, tmp)) is not e:  # a full disk: named (Arrow's and
            raise named from e  # Python's write errors name no file)
        raise


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` in :func:`replacing` ``path``."""
    with replacing(path) as tmp:
        write(tmp)


def naming(e: OSError, path: Path, tmp: Path) -> OSError:
    """``e``, raised writing ``path`` through ``tmp``, naming ``path`` where it named no file (a full disk) or
    ``tmp``: the command line's one line shows the file the user knows.

    >>> naming(OSError(28, "No space left on device"), Path("d/s.json"), Path("d/.s.json.tmp-1-0")).filename
    'd/s.json'
    """
    if e.filename not in (None, str(tmp)):
        return e
    kind = type(e) if type(e).__module__ == "builtins" else OSError  # a library's subclass may take other arguments
    return kind(e.errno, e.strerror or str(e), str(path))


def write_bytes_atomic(path: Path, *data: bytes) -> None:
    """Write ``data`` (byte strings, in order) in :func:`replacing` ``path``, fsynced before the rename."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.writelines(data)
        f.flush()
        os.fsync(f.fileno())


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def json_text(obj: dict) -> str:
    """The JSON text of every file memdedup writes and of ``--json`` (indented, NumPy scalars and paths
    converted, NaN and infinities as null: strict JSON)."""
    return json.dumps(_finite(obj), indent=2, default=lambda o: _finite(_json_default(o)), allow_nan=False) + "\n"


def _finite(o):
    """``o`` with every non-finite float (NaN, +-inf) inside dicts and lists replaced by None."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    return [_finite(v) for v in o] if isinstance(o, (list, tuple)) else o


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write :func:`json_text` atomically."""
    write_text_atomic(path, json_text(obj))


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path, required: tuple[str, ...] = ()) -> dict:
    """A JSON object memdedup wrote, with ``required`` top-level keys present; :class:`StateError` when the file
    is unreadable, not a JSON object, or lacks a required key."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise StateError(f"{path}: cannot read: {e}") from None
    except ValueError as e:
        raise StateError(f"{path}: damaged (not valid JSON: {e})") from None
    if not isinstance(obj, dict):
        raise StateError(f"{path}: damaged (expected a JSON object)")
    if missing := [k for k in required if k not in obj]:
        raise StateError(f"{path}: damaged or from another version (missing {', '.join(missing)})")
    return obj


def json_or_empty(path: Path) -> dict:
    """:func:`read_json` of ``path``, or {} without the file."""
    return read_json(path) if Path(path).exists() else {}


def manifest_path(out: Path) -> Path:
    return Path(out) / MANIFEST_FILE


def read_manifest(out: Path) -> dict | None:
    """The stage manifest of ``out``, or None if the stage never completed there."""
    p = manifest_path(out)
    if not p.exists():
        return None
    if "stage" not in (manifest := read_json(p)):  # memdedup generate's corpus manifest, say
        raise NotAStageOutput(f"{out}: not a stage's output (its manifest.json names no stage: a generated corpus's?)")
    return manifest


def undecodable(text: str | os.PathLike) -> str | None:
    """``text`` (a path or name) with its bytes that are not UTF-8 shown as ``\\xNN``; None when it is valid UTF-8.

    >>> undecodable("ok"), undecodable(os.fsdecode(b"a\\xffb"))
    (None, 'a\\\\xffb')
    """
    try:
        os.fspath(text).encode("utf-8")
        return None
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


def completed_manifest(out: Path, stage: str) -> dict:
    """The manifest of the completed ``stage`` in ``out``; StateError naming ``out`` otherwise (no manifest.json:
    a stage writes it last, so one killed there before it finished left none)."""
    if not Path(out).is_dir():
        raise StateError(f"{out}: not a completed {stage} output (no such directory)")
    manifest = read_manifest(Path(out))
    if manifest is None:
        raise StateError(f"{out}: not a completed {stage} output (no manifest.json); rerun memdedup {stage} with the "
                         "same --out to finish it")
    if manifest["stage"] != stage:
        raise StateError(f"{out}: not a completed {stage} output (its manifest.json is the {manifest['stage']} "
                         "stage's)")
    return manifest


def write_stage_manifest(out: Path, stage: str, body: dict, *, versions: bool = True) -> dict:
    """Write ``out/manifest.json`` last and atomically, every stage's one manifest format, adding ``stage``,
    ``created_unix`` (seconds since the epoch) and unless ``versions`` is False the library versions that decide
    outputs; returns the dict.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> m = write_stage_manifest(d, "demo", {"rows": 3}, versions=False)
    >>> read_manifest(d)["rows"], m["stage"]
    (3, 'demo')
    >>> _ = (d / "bad.json").write_text("{nope")
    >>> try:
    ...     read_json(d / "bad.json")
    ... except StateError as e:
    ...     print(str(e).split(": ", 1)[1][:31])
    damaged (not valid JSON: Expect
    """
    manifest = {"stage": stage, "created_unix": time.time(), **body}
    if versions and "versions" not in manifest:
        manifest["versions"] = library_versions()
    write_json_atomic(manifest_path(out), manifest)
    return manifest


def dist_version(name: str) -> str:
    """Version of an installed distribution, from its ``.dist-info`` directory's name on ``sys.path`` (sparing
    the ~10 ms :mod:`importlib.metadata`'s import adds to a run, which is the fallback)."""
    for entry in sys.path:
        try:
            for p in Path(entry or ".").glob(f"{name}-*.dist-info"):
                return p.name[len(name) + 1 : -len(".dist-info")]
        except OSError:
            continue
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of what decides the output (and which kernel build ran), plus the distributions in ``extra``."""
    import unicodedata

    import numpy
    import pyarrow
    import xxhash

    from . import kernels

    return {"python": ".".join(map(str, sys.version_info[:3])), "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__, "xxhash": xxhash.VERSION, "unicode": unicodedata.unidata_version,
            "kernels": kernels.backend()} | {dist: dist_version(dist) for dist in ("memdedup", "numba", *extra)}
