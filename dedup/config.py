"""The dedup stage's configuration: one frozen dataclass, validated on construction.

Every field is declared once with :func:`option` (default, meaning, unit, command-line form): ``memdedup``'s
parser, ``--help`` and README's configuration reference are generated from them (``pipelines/config.py``).
"""

from __future__ import annotations

import dataclasses
import numbers
import re
import typing
from dataclasses import asdict, dataclass, fields
from typing import Any, NoReturn

from .minhash import SCHEMES


def option(default: Any, help: str, *, unit: str | None = None, none: str | None = None,
           choices: tuple | None = None, flag: str | None = None, short: str | None = None, cli: bool = True,
           flag_sets: dict | None = None) -> Any:
    """A config field with its documentation: ``dataclasses.field(default, metadata=...)``. ``help``: one line;
    ``unit``: shown after the default (``"rows"``); ``none``: what a ``None`` default means; ``choices``: the
    allowed values; ``flag``: the flag, if not ``--`` + the name with dashes; ``short``: an alias (``"-n"``);
    ``cli``: False for fields without a flag; ``flag_sets``: other fields set when this flag is given."""
    meta = {"help": help, "unit": unit, "none": none, "choices": choices, "flag": flag, "short": short,
            "cli": cli, "flag_sets": dict(flag_sets or {})}
    return dataclasses.field(default=default, metadata=meta)


class StageConfig:
    """What the stages' frozen config dataclasses share: :meth:`to_dict`, and :meth:`_bad`, the error of an invalid
    value (``invalid <section> config: ...``, the section being the class name less ``Config``)."""

    def to_dict(self) -> dict:
        return asdict(self)

    def _bad(self, msg: str) -> NoReturn:
        raise ValueError(f"invalid {type(self).__name__.removesuffix('Config').lower()} config: {msg}")

    def _check_fields(self) -> None:
        """:meth:`_bad` for a field not of its declared type (bool only for bool, an int also for a float, None
        only if optional; numpy numbers are stored as Python's) or not one of its choices."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value, allowed = getattr(self, f.name), typing.get_args(hints[f.name]) or (hints[f.name],)
            if not isinstance(value, (bool, int, float)) and isinstance(value, numbers.Real):  # numpy's
                convert = int if int in allowed and isinstance(value, numbers.Integral) else float
                object.__setattr__(self, f.name, value := convert(value) if convert in allowed else value)
            if not (type(value) in allowed if isinstance(value, bool) or value is None else
                    any(isinstance(value, t) for t in allowed if t is not bool)
                    or float in allowed and isinstance(value, int)):
                hint = ""
                if isinstance(value, str) and float in allowed and (
                        m := re.fullmatch(r"([-+]?\d+)(?:\.(\d*))?[eE]([-+]?)(\d+)", value)):
                    hint = (" (YAML reads a number with an exponent as a float only with a dot and a signed exponent: "
                            f"write {m[1]}.{m[2] or '0'}e{m[3] or '+'}{m[4]})")
                self._bad(f"{f.name} must be {' or '.join(t.__name__.replace('NoneType', 'null') for t in allowed)}, "
                          f"got {value!r}{hint}")
            if f.metadata.get("choices") and value not in f.metadata["choices"]:
                self._bad(f"{f.name} must be one of {', '.join(map(str, f.metadata['choices']))}, got {value!r}")


def differing(old: dict, new: dict) -> list[str]:
    """The keys whose values differ between two configs' ``to_dict()`` (absent from one counts), sorted."""
    absent = object()
    return sorted(k for k in old.keys() | new.keys() if old.get(k, absent) != new.get(k, absent))


#: Most permutations a config takes: sqrt(J (1 - J) / K) <= 0.5 / sqrt(8192) < 0.006.
MAX_NUM_PERM = 8192


@dataclass(frozen=True)
class DedupConfig(StageConfig):
    """Everything that decides which rows a dedup run removes (and how it reads them): the :func:`option` fields below.

    >>> DedupConfig(threshold=0.7).decision_dict()["threshold"]
    0.7
    >>> DedupConfig(threshold=1.5)
    Traceback (most recent call last):
    ...
    ValueError: invalid dedup config: threshold must be in (0, 1), got 1.5
    """

    threshold: float = option(0.8, "Jaccard similarity threshold T in (0, 1) that the banding is chosen for: a pair "
                                   "of similarity s is found with probability 1 - (1 - s^r)^b (0.4 at s = 0.8 at the "
                                   "defaults; memdedup params shows the S-curve)")
    num_perm: int = option(128, "MinHash signature length K", unit="permutations")
    ngram: int = option(5, "shingle length n: words, or code points with unit char")
    unit: str = option("word", "shingle unit", choices=("word", "char"))
    nfkc: bool = option(True, "apply Unicode NFKC before lowercasing")
    # fss: its F1 on the real-text corpus beat fast's (bench/dedup_bench.py).
    scheme: str = option("fss", "MinHash scheme: fss (Fast Similarity Sketching), fast (K multiply-adds per "
                                "shingle), or the datasketch ones, bit-identical to datasketch's",
                         choices=tuple(SCHEMES))
    seed: int = option(1, "MinHash permutation seed, 0 <= seed < 2^32")
    fp: float = option(1e-5, "whole-index false-positive target of the band filters, a probability")
    # Decides exact vs near for a document whose every band collided, and alone for one without shingles.
    exact_fp: float = option(1e-6, "false-positive rate of the exact-key filter; decides labels, and documents "
                                   "without words")
    index: str = option("lshbloom", "index backend: LSHBloom, or the baselines datasketch MinHashLSH or pybloom-live "
                                    "(extra 'baselines')", choices=("lshbloom", "lsh", "pybloom"))
    bands: int | None = option(None, "number of bands b; give rows too", unit="bands",
                               none="optimal for threshold and num_perm")
    rows: int | None = option(None, "rows per band r; give bands too", unit="rows",
                              none="optimal for threshold and num_perm")
    # sum: the reference LSHBloom's weak key, for cross-checks only.
    band_key: str = option("hash", "band key: XXH64 of the band's values, or the reference's sum",
                           choices=("hash", "sum"))
    text_column: str = option("text", "text column: string, large_string, string_view or dictionary-encoded")
    id_column: str | None = option("id", "id column, cast to strings (whole-number floats as integers: 2.0 is "
                                         "'2'); a file without the default column gets null ids, a column named "
                                         "by --id-column must exist; '' for no ids",
                                   none="no ids", flag_sets={"id_column_required": True})
    id_column_required: bool = option(False, "a file without id_column is an error; set by --id-column", cli=False)
    batch_rows: int = option(32768, "rows per processing batch; memory is one batch plus the index", unit="rows")
    capacity: int | None = option(None, "documents the filters are sized for", unit="documents",
                                  none="the input's row count")
    # zstd: smaller than snappy and, at its default level 1, faster to write.
    compression: str = option("zstd", "Parquet compression of the outputs",
                              choices=("zstd", "snappy", "lz4", "gzip", "none"))
    # removed: for pipelines that filter by id later (datatrove, NeMo Curator); reads only the text and id columns.
    emit: str = option("all", "outputs: all (kept shards, removed.parquet, manifest), or removed "
                              "(removed.parquet and the manifest, no kept shards)", choices=("all", "removed"))

    def __post_init__(self) -> None:
        self._check_fields()
        if not 0.0 < self.threshold < 1.0:
            self._bad(f"threshold must be in (0, 1), got {self.threshold}")
        if self.num_perm < 2:
            self._bad(f"num_perm must be >= 2, got {self.num_perm}")
        if self.num_perm > MAX_NUM_PERM:
            self._bad(f"num_perm must be <= {MAX_NUM_PERM} (the Jaccard estimate's standard error is under 0.006 "
                      f"there; the banding search grows as K log K), got {self.num_perm}")
        if not 1 <= self.ngram <= 2**63 - 1:  # the sketch kernel's n is an int64
            self._bad(f"ngram must be >= 1 and <= {2**63 - 1}, got {self.ngram}")
        if not 0 <= self.seed < 2**32:  # numpy's RandomState(seed) draws the permutations, as datasketch's
            self._bad(f"seed must be in [0, 2^32), got {self.seed}")
        for name in ("fp", "exact_fp"):  # (below 1e-300, a band's share of fp may underflow to 0)
            if not 1e-300 <= (v := getattr(self, name)) < 1.0:
                self._bad(f"{name} must be in [1e-300, 1), got {v}")
        if (self.bands is None) != (self.rows is None):
            self._bad("give both bands and rows, or neither")
        if self.bands is not None and min(self.bands, self.rows) < 1:
            self._bad(f"bands and rows must be >= 1, got bands={self.bands}, rows={self.rows}")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            self._bad(f"bands * rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        if not 1 <= self.batch_rows <= 2**31 - 1:  # one Arrow array per column
            self._bad(f"batch_rows must be >= 1 and <= {2**31 - 1}, got {self.batch_rows}")
        if self.capacity is not None:  # every index sizes the exact-key filter from it (plan_index checks it)
            from .params import bloom_size, plan_index, refuse_unholdable

            try:
                plan_index(self.threshold, self.num_perm, self.capacity, self.fp, self.bands, self.rows)
                refuse_unholdable(self.capacity, bloom_size(self.capacity, self.exact_fp)[0],
                                  "an exact-key filter of {}")
            except ValueError as e:
                self._bad(str(e))

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def banding(self) -> tuple[int, int]:
        """(bands, rows): ``bands``/``rows`` when given, else :func:`dedup.params.optimal_param` (T, K)."""
        from .params import optimal_param

        return (self.bands, self.rows) if self.bands else optimal_param(self.threshold, self.num_perm)

    def decision_dict(self) -> dict:
        """The fields that change which rows are removed or which outputs are written: a run's identity
        (:func:`dedup.runs.run_identity`)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("batch_rows", "compression")}


def dedup_config(config: object) -> DedupConfig:
    """``config``, a :class:`DedupConfig`; else TypeError (a dict's fields would be read nowhere)."""
    if not isinstance(config, DedupConfig):
        raise TypeError(f"config must be a DedupConfig (DedupConfig(**fields) for a dict), got {type(config).__name__}")
    return config
