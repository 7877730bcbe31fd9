"""The dedup stage's configuration: one frozen dataclass, validated on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .minhash import SCHEMES

INDEX_BACKENDS = ("lshbloom", "lsh", "pybloom")
COMPRESSIONS = ("zstd", "snappy", "lz4", "gzip", "none")
EMITS = ("all", "removed")


@dataclass(frozen=True)
class DedupConfig:
    """Everything that decides which rows a dedup run removes (and how it reads them).

    Attributes:
        threshold: Jaccard similarity T above which documents are near duplicates.
        num_perm: MinHash signature length K.
        ngram: shingle length n (words, or code points with ``unit="char"``).
        unit: ``"word"`` or ``"char"`` shingles.
        nfkc: apply Unicode NFKC before lowercasing.
        scheme: MinHash scheme (``fast``, ``fss``, ``datasketch-affine32``, ``datasketch-legacy``;
            :mod:`dedup.minhash`).
        seed: MinHash permutation seed.
        fp: target whole-index false-positive rate of the band filters.
        exact_fp: false-positive rate of the exact-key filter (only decides the *label*
            exact vs near of a document whose every band already collided).
        index: ``lshbloom`` (default), ``lsh`` (datasketch MinHashLSH) or ``pybloom``.
        bands, rows: explicit banding; default: datasketch's optimal_param(T, K).
        band_key: ``hash`` (XXH64 of the band's values) or ``sum`` (the reference
            LSHBloom's weak sum key, for cross-checks only).
        text_column: name of the text column (string or large_string).
        id_column: name of the id column; None or absent from a file gives null ids.
        id_column_required: the user named id_column explicitly: absence is an error.
        batch_rows: rows per processing batch (bounds memory with the index size).
        capacity: documents to size the filters for; default: the input's row count.
        compression: Parquet compression of the outputs (zstd: smaller than snappy and,
            at its default level 1, faster to write).
        emit: ``all`` (kept shards, removed.parquet, manifest) or ``removed`` (removed.parquet
            and the manifest only, for a later step that filters by id: no kept shard is
            written and only the text and id columns are read).

    Example:
        >>> DedupConfig(threshold=0.7).decision_dict()["threshold"]
        0.7
        >>> DedupConfig(threshold=1.5)
        Traceback (most recent call last):
        ...
        ValueError: invalid dedup config: threshold must be in (0, 1), got 1.5
    """

    threshold: float = 0.8
    num_perm: int = 128
    ngram: int = 5
    unit: str = "word"
    nfkc: bool = True
    scheme: str = "fss"
    seed: int = 1
    fp: float = 1e-5
    exact_fp: float = 1e-6
    index: str = "lshbloom"
    bands: int | None = None
    rows: int | None = None
    band_key: str = "hash"
    text_column: str = "text"
    id_column: str | None = "id"
    id_column_required: bool = False
    batch_rows: int = 32768
    capacity: int | None = None
    compression: str = "zstd"
    emit: str = "all"

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ValueError(f"invalid dedup config: {msg}")

        if not 0.0 < self.threshold < 1.0:
            bad(f"threshold must be in (0, 1), got {self.threshold}")
        if self.num_perm < 2:
            bad(f"num_perm must be >= 2, got {self.num_perm}")
        if self.ngram < 1:
            bad(f"ngram must be >= 1, got {self.ngram}")
        if self.unit not in ("word", "char"):
            bad(f"unit must be 'word' or 'char', got {self.unit!r}")
        if self.scheme not in SCHEMES:
            bad(f"scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        for name in ("fp", "exact_fp"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                bad(f"{name} must be in (0, 1), got {v}")
        if self.index not in INDEX_BACKENDS:
            bad(f"index must be one of {', '.join(INDEX_BACKENDS)}, got {self.index!r}")
        if (self.bands is None) != (self.rows is None):
            bad("give both bands and rows, or neither")
        if self.bands is not None and self.rows is not None and self.bands * self.rows > self.num_perm:
            bad(f"bands * rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        if self.band_key not in ("hash", "sum"):
            bad(f"band_key must be 'hash' or 'sum', got {self.band_key!r}")
        if self.batch_rows < 1:
            bad(f"batch_rows must be >= 1, got {self.batch_rows}")
        if self.compression not in COMPRESSIONS:
            bad(f"compression must be one of {', '.join(COMPRESSIONS)}, got {self.compression!r}")
        if self.capacity is not None and self.capacity < 1:
            bad(f"capacity must be >= 1, got {self.capacity}")
        if self.emit not in EMITS:
            bad(f"emit must be one of {', '.join(EMITS)}, got {self.emit!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def decision_dict(self) -> dict:
        """The fields that change which rows are removed or which outputs are written (not
        how inputs are read): a run's identity (:func:`dedup.runs.run_identity`)."""
        d = self.to_dict()
        for k in ("batch_rows", "compression"):
            d.pop(k)
        return d
