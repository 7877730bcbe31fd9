"""From an Arrow text column to per-document sketches: signatures, exact keys, band keys.

This is where Arrow buffers meet the compiled kernels. Per batch it runs Arrow's
vectorised NFKC + lowercase on the documents that need it (:func:`dedup.normalize.prepass`),
then one parallel Numba pass that decodes UTF-8, builds the canonical text, shingles it and
updates the K minima; no Python object is created per document.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import kernels
from .config import DedupConfig
from .minhash import get_scheme, permutations
from .normalize import char_table, prepass


@dataclass
class Sketches:
    """Per-document results for one batch of n documents.

    Attributes:
        valid: bool (n,), False where the text is null.
        n_shingles: int64 (n,), shingles per document (0 for null or empty).
        signatures: uint32 (n, K).
        exact: uint64 (n, 2), the 128-bit exact key (0 for null).
        band_keys: uint64 (n, b).
        text_bytes: total UTF-8 bytes of the batch's raw text.
    """

    valid: np.ndarray
    n_shingles: np.ndarray
    signatures: np.ndarray
    exact: np.ndarray
    band_keys: np.ndarray
    text_bytes: int

    def __len__(self) -> int:
        return self.valid.shape[0]


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data uint8, offsets int64 (n+1,), valid bool (n,)) views of a string array.

    Works for ``string``, ``large_string`` and ``string_view`` (cast), sliced or not.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.large_string())
    n = len(arr)
    _validity, off_buf, data_buf = arr.buffers()[:3]
    off_dtype = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(off_buf, dtype=off_dtype, count=n + 1 + arr.offset)[arr.offset :].astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, dtype=np.uint8)
    valid = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else np.ones(n, dtype=np.bool_)
    return data, offsets, valid


class Sketcher:
    """Computes :class:`Sketches` for batches of text under one :class:`DedupConfig`."""

    def __init__(self, config: DedupConfig, bands: int, rows: int, threads: int | None = 1):
        self.config = config
        self.threads = threads  # 1: serial (AOT build if present); None or >1: JIT prange
        self.bands = bands
        self.rows = rows
        self.scheme = get_scheme(config.scheme)
        self.perms = permutations(config.scheme, config.num_perm, config.seed)
        self.table = char_table()

    def __call__(self, texts: pa.Array) -> Sketches:
        """Sketch one batch (an Arrow string array; nulls allowed)."""
        raw_data, raw_off, _ = string_buffers(texts)
        text_bytes = int(raw_off[-1] - raw_off[0]) if len(raw_off) else 0
        data, offsets, valid = prepass(texts, self.config.nfkc)
        n = len(valid)
        sigs = np.empty((n, self.config.num_perm), dtype=np.uint32)
        exact = np.empty((n, 2), dtype=np.uint64)
        n_sh = np.empty(n, dtype=np.int64)
        kernels.sketch_documents(
            data,
            offsets,
            valid,
            self.table,
            self.config.ngram,
            self.config.unit == "char",
            self.scheme.code,
            *self.perms.args(),
            sigs,
            exact,
            n_sh,
            threads=self.threads,
        )
        keys = np.empty((n, self.bands), dtype=np.uint64)
        kernels.band_keys(sigs, self.bands, self.rows, self.config.band_key == "sum", keys)
        return Sketches(valid, n_sh, sigs, exact, keys, text_bytes)
