"""The dedup output directory: the one definition of its layout, and atomic writes.

::

    OUT/
      kept/<shard stem>.parquet   kept rows of each input, input schema, original order
      removed.parquet             one row per removed input row (REMOVED_SCHEMA)
      manifest.json               written last, atomically: the run is complete iff it exists

``<shard stem>`` is the input's path relative to the inputs' common directory, without
its format suffix (``part-0.jsonl.gz`` -> ``kept/part-0.parquet``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

KEPT_DIR = "kept"
REMOVED_FILE = "removed.parquet"
MANIFEST_FILE = "manifest.json"

#: Columns of removed.parquet. ``band`` is null for exact duplicates; the three
#: ``duplicate_of*`` columns are null where the index cannot name the earlier row
#: (Bloom-filter indexes cannot; the ``lsh`` backend can).
REMOVED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("shard", pa.string(), nullable=False),
        pa.field("row", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("band", pa.int16()),
        pa.field("duplicate_of", pa.string()),
        pa.field("duplicate_of_shard", pa.string()),
        pa.field("duplicate_of_row", pa.int64()),
    ]
)


def removed_batch(
    gone: np.ndarray,
    start_row: int,
    shard_name: str,
    ids: pa.Array,
    reason: np.ndarray,
    band: np.ndarray,
    earlier: tuple[pa.Array, pa.Array, pa.Array] | None = None,
) -> pa.RecordBatch:
    """Rows of removed.parquet for the removed rows ``gone`` (indices into a batch that
    starts at ``start_row`` of ``shard_name``); ``reason``/``band`` are per batch row;
    ``earlier`` is (id, shard, row) of the earlier duplicate per removed row, if known."""
    from .arrow import numeric_array, repeat_string, take, take_strings
    from .index import REASON_LABELS

    n = gone.size
    b = band[gone]
    if earlier is None:
        earlier = (pa.nulls(n, pa.string()), pa.nulls(n, pa.string()), pa.nulls(n, pa.int64()))
    return pa.record_batch(
        [
            take(ids, gone),
            repeat_string(shard_name, n),
            numeric_array((gone + start_row).astype(np.int64)),
            take_strings(REASON_LABELS, reason[gone]),
            numeric_array(b, valid=b >= 0),
            *earlier,
        ],
        schema=REMOVED_SCHEMA,
    )


def run_identity(decision_config: dict, shards: list, index_dir: Path | None = None) -> dict:
    """What makes two runs the same run: decision config, input files (path, size, mtime)
    and index directory. Stored in the manifest (and the staged work directory)."""
    return {
        "config": decision_config,
        "inputs": [{"shard": s.name, "path": str(s.path), "bytes": s.path.stat().st_size,
                    "mtime_ns": s.path.stat().st_mtime_ns} for s in shards],
        "index_dir": str(index_dir) if index_dir else None,
    }


def check_completed(out: Path, identity: dict, force: bool) -> dict | None:
    """The manifest of a completed run of the same identity in ``out`` (skip the work), or
    None (go ahead). A completed run of another identity is an error unless ``force``, and
    so is an ``out`` that is not a directory."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory; choose another output directory")
    previous = read_manifest(out)
    if previous is None or force:
        return None
    if previous.get("identity") == identity:
        return previous
    old = previous.get("identity", {}).get("config", {})
    diff = sorted(k for k in identity["config"] if old.get(k) != identity["config"][k])
    what = f"config ({', '.join(diff)} differ)" if diff else "inputs or index directory"
    raise FileExistsError(f"{out} holds a completed dedup run with a different {what}; use --force to replace it")


def input_entry(shard, rows: int, kept: int, exact: int, near: int, null_text: int, empty_text: int,
                text_bytes: int) -> dict:
    """One input file's entry in a dedup manifest's ``inputs``."""
    return {
        "shard": shard.name,
        "path": str(shard.path),
        "format": shard.fmt,
        "file_bytes": shard.path.stat().st_size,
        "rows": rows,
        "kept": kept,
        "removed": {"exact": exact, "near": near},
        "null_text": null_text,
        "empty_text": empty_text,
        "text_bytes": text_bytes,
    }


def dedup_manifest(engine: str, config, inputs: list[dict], index: dict, phases: dict[str, float], wall: float,
                   **extra) -> dict:
    """The dedup manifest (both engines): totals and throughput are derived from ``inputs``
    (:func:`input_entry` dicts) and the phase timings (seconds), so they cannot disagree.

    ``index`` holds at least ``bytes`` ({part: bytes}); ``bytes_per_doc`` is added here.
    """
    rows = sum(i["rows"] for i in inputs)
    text_bytes = sum(i["text_bytes"] for i in inputs)
    index = {**index, "bytes_per_doc": {k: v / max(rows, 1) for k, v in index["bytes"].items()}}
    return {
        "stage": "dedup",
        "engine": engine,
        "created_unix": time.time(),
        "config": config.to_dict(),
        **extra,
        "inputs": inputs,
        "totals": {
            "shards": len(inputs),
            "rows": rows,
            "kept": sum(i["kept"] for i in inputs),
            "removed": {r: sum(i["removed"][r] for i in inputs) for r in ("exact", "near")},
            "null_text": sum(i["null_text"] for i in inputs),
            "empty_text": sum(i["empty_text"] for i in inputs),
            "text_bytes": text_bytes,
        },
        "index": index,
        "timing": {
            "wall_s": wall,
            "docs_per_s": rows / wall if wall > 0 else None,
            "mb_per_s": text_bytes / 1e6 / wall if wall > 0 else None,
            "phases": {k: {"s": v, "docs_per_s": rows / v if v > 0 else None} for k, v in phases.items()},
        },
        "versions": library_versions(),
    }


def kept_writer(path: Path, schema: pa.Schema, text_column: str, compression: str):
    """Parquet writer of a kept shard: the input schema, ``compression``.

    The text column is written without dictionary encoding and without min/max
    statistics: documents are almost all distinct (Arrow would build a dictionary page,
    find it useless and fall back, ~25% of the write time) and a min/max of documents
    helps no reader. Other columns keep Arrow's defaults (ids, labels compress well as
    dictionaries).
    """
    import pyarrow.parquet as pq

    others = [f.name for f in schema if f.name != text_column]
    return pq.ParquetWriter(str(path), schema, compression=compression, use_dictionary=others, write_statistics=others)


def removed_writer(path: Path, compression: str):
    """Parquet writer of ``removed.parquet`` (or a part of it): :data:`REMOVED_SCHEMA`."""
    import pyarrow.parquet as pq

    return pq.ParquetWriter(str(path), REMOVED_SCHEMA, compression=compression)


def kept_path(out: Path, shard_stem: str) -> Path:
    return out / KEPT_DIR / f"{shard_stem}.parquet"


def removed_path(out: Path) -> Path:
    return out / REMOVED_FILE


def manifest_path(out: Path) -> Path:
    return out / MANIFEST_FILE


def tmp_path(final: Path) -> Path:
    """Temporary sibling of ``final``: written first, renamed into place when complete."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write JSON to a temporary sibling, fsync, then rename over ``path``."""
    tmp = tmp_path(path)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_manifest(out: Path) -> dict | None:
    p = manifest_path(out)
    if not p.exists():
        return None
    with open(p, encoding="utf-8") as f:
        return json.load(f)


def remove_stale_temporaries(out: Path) -> None:
    """Delete temporaries (``.NAME.tmp-PID``) left in ``out`` by a killed run."""
    for d in (out, out / KEPT_DIR):
        if d.is_dir():
            for p in d.rglob(".*.tmp-*"):
                if p.is_file():
                    p.unlink(missing_ok=True)


def clear_outputs(out: Path) -> None:
    """Remove everything this layout defines under ``out`` (used by ``--force``)."""
    manifest_path(out).unlink(missing_ok=True)
    removed_path(out).unlink(missing_ok=True)
    shutil.rmtree(out / KEPT_DIR, ignore_errors=True)


def _dist_version(name: str) -> str:
    """Version of an installed distribution, from the name of its ``.dist-info``
    directory on ``sys.path`` (what :mod:`importlib.metadata` reads, without the ~10 ms
    its import adds to every run); falls back to :mod:`importlib.metadata`."""
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


def library_versions() -> dict[str, str]:
    """Versions of what decides the output (and which kernel build ran)."""
    import unicodedata

    import numpy
    import pyarrow
    import xxhash

    from . import kernels

    out = {
        "python": ".".join(map(str, sys.version_info[:3])),
        "numpy": numpy.__version__,
        "pyarrow": pyarrow.__version__,
        "xxhash": xxhash.VERSION,
        "unicode": unicodedata.unidata_version,
        "kernels": kernels.backend(),
    }
    for dist in ("memdedup", "numba", "datasketch"):
        out[dist] = _dist_version(dist)
    return out
