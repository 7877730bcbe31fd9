"""A small on-disk cache for pure start-up computations (never for results of a run), in ``$MEMDEDUP_CACHE_DIR``,
else ``$XDG_CACHE_HOME/memdedup``, else ``~/.cache/memdedup``; it may be deleted at any time, and an unwritable one
means recomputing.

Example:
    >>> import os, tempfile
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"MEMDEDUP_CACHE_DIR": tempfile.mkdtemp()}):
    ...     save_json("example.json", {"a": 1})
    ...     print(load_json("example.json"), load_json("missing.json"))
    {'a': 1} {}
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np

from .io import write_bytes_atomic


def cache_dir() -> Path:
    if env := os.environ.get("MEMDEDUP_CACHE_DIR"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "memdedup"


def _atomic_write(path: Path, data: bytes) -> None:
    with contextlib.suppress(OSError):  # an unwritable cache: recomputed next time
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)


def load_npz(name: str) -> dict[str, np.ndarray] | None:
    try:
        with np.load(cache_dir() / name, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return None


def save_npz(name: str, arrays: dict[str, np.ndarray]) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _atomic_write(cache_dir() / name, buf.getvalue())


def load_json(name: str) -> dict:
    try:
        data = json.loads((cache_dir() / name).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save_json(name: str, data: dict) -> None:
    _atomic_write(cache_dir() / name, json.dumps(data, sort_keys=True).encode("utf-8"))
