"""From an Arrow text column to per-document sketches: signatures, exact keys, band keys.

Per batch, one Numba pass over the Arrow value buffer decodes UTF-8, normalises (:func:`dedup.normalize.replacements`),
shingles and updates the K minima, with no Python object per document; the few documents that need
context-sensitive NFKC (combining marks) go through Arrow's utf8proc and a second kernel call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import kernels
from .arrow import cast, take
from .config import DedupConfig
from .minhash import get_scheme, permutations
from .normalize import char_table, prenormalize, replacements


@dataclass
class Sketches:
    """Per-document results for one batch of n documents."""

    valid: np.ndarray  # bool (n,), False where the text is null
    n_shingles: np.ndarray  # int64 (n,), shingles per document (0 for null or empty)
    signatures: np.ndarray  # uint32 (n, K)
    exact: np.ndarray  # uint64 (n, 2), the 128-bit exact key (0 for null)
    band_keys: np.ndarray  # uint64 (n, b)
    text_bytes: int  # total UTF-8 bytes of the batch's raw text

    def __len__(self) -> int:
        return self.valid.shape[0]

    def counts(self) -> dict[str, int]:
        """Null texts, and texts without shingles (``null_text``, ``empty_text``)."""
        return {"null_text": int((~self.valid).sum()), "empty_text": int((self.valid & (self.n_shingles == 0)).sum())}


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data uint8, offsets int64 (n+1,), valid bool (n,)) of a ``string``, ``large_string`` or ``string_view``
    (cast) array, sliced or not."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_string_view(arr.type):
        arr = cast(arr, pa.large_string())
    n = len(arr)
    _validity, off_buf, data_buf = arr.buffers()[:3]
    off_dtype = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(off_buf, dtype=off_dtype, count=n + 1 + arr.offset)[arr.offset :].astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, dtype=np.uint8)
    if arr.null_count and _validity is not None:  # from the bitmap: to_numpy() would import pandas
        bits = np.unpackbits(np.frombuffer(_validity, dtype=np.uint8), bitorder="little", count=arr.offset + n)
        return data, offsets, bits[arr.offset :].astype(np.bool_)
    # no bitmap: no nulls, or a null-typed or all-null array
    return data, offsets, np.full(n, not arr.null_count, dtype=np.bool_)


class Sketcher:
    """Computes :class:`Sketches` for batches of text under one :class:`DedupConfig`.

    Example:
        >>> sk = Sketcher(DedupConfig(), bands=9, rows=13)(pa.array(["a b c d e f", "A b, c d e f!", None]))
        >>> sk.valid.tolist(), sk.n_shingles.tolist(), sk.band_keys.shape
        ([True, True, False], [2, 2, 0], (3, 9))
        >>> bool((sk.band_keys[0] == sk.band_keys[1]).all())  # the same canonical text
        True
    """

    def __init__(self, config: DedupConfig, bands: int, rows: int, threads: int | None = 1):
        self.config, self.bands, self.rows = config, bands, rows
        self.threads = kernels.use_threads(threads)  # 1: serial (AOT build if present); None or >1: JIT prange
        self.scheme = get_scheme(config.scheme)
        self.perms = permutations(config.scheme, config.num_perm, config.seed)
        self.table = char_table()
        self.bits, self.cf_bit, self.map = replacements(config.nfkc)

    def _kernel(self, data, offsets, valid, bits, cf_bit, sigs, exact, n_sh) -> None:
        kernels.sketch_documents(data, offsets, valid, self.table, bits, cf_bit, self.map.cps, self.map.off,
                                 self.map.blob, self.config.ngram, self.config.unit == "char", self.scheme.code,
                                 *self.perms.args(), sigs, exact, n_sh, threads=self.threads)

    def __call__(self, texts: pa.Array) -> Sketches:
        """Sketch one batch (an Arrow string array; nulls allowed)."""
        if isinstance(texts, pa.ChunkedArray):  # joined as large_string: string's offsets end at 2 GiB
            texts = (cast(texts, pa.large_string()) if texts.type == pa.string() else texts).combine_chunks()
        if pa.types.is_string_view(texts.type):  # once, for the buffers and the take below (no view kernel)
            texts = cast(texts, pa.large_string())
        data, offsets, valid = string_buffers(texts)
        text_bytes = int(offsets[-1] - offsets[0]) if len(offsets) else 0
        n = len(valid)
        sigs = np.empty((n, self.config.num_perm), dtype=np.uint32)
        exact = np.empty((n, 2), dtype=np.uint64)
        n_sh = np.empty(n, dtype=np.int64)
        self._kernel(data, offsets, valid, self.bits, self.cf_bit, sigs, exact, n_sh)
        redo = np.flatnonzero(n_sh < 0)
        if redo.size:  # context-sensitive NFKC: Arrow's utf8proc, then the kernel without replacements
            fixed = prenormalize(take(texts, redo), self.config.nfkc)
            part = sigs[redo], exact[redo], n_sh[redo]
            self._kernel(*string_buffers(fixed), 0, 0, *part)
            sigs[redo], exact[redo], n_sh[redo] = part
        keys = np.empty((n, self.bands), dtype=np.uint64)
        kernels.band_keys(sigs, self.bands, self.rows, self.config.band_key == "sum", keys)
        return Sketches(valid, n_sh, sigs, exact, keys, text_bytes)
