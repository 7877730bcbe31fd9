"""The audit side's output directories: the one definition of their file names and of the
per-sequence schema (as :mod:`dedup.layout` for the dedup output).

::

    AUDIT/ (memdedup audit, audit.run)
      per_sequence.parquet   one row per audited sequence (PER_SEQUENCE_SCHEMA)
      summary.json           every rate and summary, computed once (audit.aggregate)
      manifest.json          written last (dedup.io.write_stage_manifest): complete iff it exists

    RUN/ (memdedup train, audit.train; read by memdedup profile)
      train_config.json      the config and corpus digest of an unfinished run (resume refuses others)
      tokenizer/             the byte-level BPE tokenizer
      order.parquet          one row per training exposure (instance, document, step, first_step)
      heldout.parquet        instances of the held-out documents, never trained on
      checkpoints/step-NNNNNNN/   Hugging Face model + tokenizer (+ trainer_state.pt to resume)
      model/                 the final checkpoint, without the trainer state
      manifest.json          written last

    PROFILE/ (memdedup profile, audit.checkpoints)
      profile.parquet (cells with band, lead cells, cohort sizes), event_time.parquet,
      instances.parquet (the sampled instances), retention.parquet, forecast.json,
      profile_heatmap.png, event_time.png, retention_curves.png, summary.json, manifest.json (last)

    REPORT/ (memdedup report, audit.report)
      <name>.html            one model's page; <name>.summary.json: the audit's summary.json
      comparison.html        the side-by-side page; comparison.json: the numbers it shows

Every file is written whole to a temporary sibling and renamed into place (:mod:`dedup.io`) by a
stage that holds its output directory (:func:`holding_out`). A JSON file read back (a summary, a
manifest) is checked against the shape its stage writes (:func:`refuse_damaged`).

>>> checkpoint_name(40)
'step-0000040'
>>> report_json(Path("out/raw.html")).name, report_json(Path("out/comparison.html"), comparison=True).name
('raw.summary.json', 'comparison.json')
>>> per_sequence_schema(reference=False).names[-4:]
['duplicate_count', 'duplicate_bucket', 'dedup_status', 'member']
>>> "score_reference" in per_sequence_schema(reference=True).names
True
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dedup import io
from dedup.runs import refuse_other_stage, refuse_out_in_inputs, refuse_unusable_out
from dedup.shards import InputError

PER_SEQUENCE = "per_sequence.parquet"
SUMMARY = "summary.json"

#: Membership scores, in the order of their ``score_<name>`` columns (higher = more likely a
#: member; audit.metrics). ``reference`` exists only when a reference model was given.
SCORES = ("loss", "zlib", "min_k", "min_k_plus_plus", "reference")

#: What dedup did with a sequence's source document (the ``dedup_status`` column), in report order.
STATUS_ORDER = ("unique", "kept", "removed")

#: Columns of per_sequence.parquet, in file order. Null where unknown: ``doc_id`` (no id column),
#: ``pythia_score``/``generated`` (no generation), ``dedup_status`` (no dedup output), ``member``
#: (no members file). ``loss``: nats per token; ``score_*`` follow SCORES. ``occurrences``: exact
#: occurrences of the P+C token window in the tokenized corpus, any document and offset (Carlini
#: 2022, Kandpal 2022; audit.occurrences); ``duplicate_bucket``: its power-of-two bucket ("0": a
#: given sequence absent from the corpus). ``near_dup_docs``: corpus documents that are exact or
#: near duplicates of the sequence's, itself included (audit.duplicates; -1 for explicit token
#: sequences); ``duplicate_count``: the same, kept for older readers.
_INT, _TOKENS = pa.int64(), pa.list_(pa.int64())
PER_SEQUENCE_SCHEMA = pa.schema([
    ("seq_id", _INT), ("doc_id", pa.string()), ("shard", pa.string()), ("row", _INT), ("token_offset", _INT),
    ("prompt", _TOKENS), ("truth", _TOKENS), ("extractable", pa.bool_()), ("leading_matched", _INT),
    ("pythia_score", pa.float64()), ("generated", _TOKENS), ("loss", pa.float64()),
    *((f"score_{name}", pa.float64()) for name in SCORES),
    ("occurrences", _INT), ("near_dup_docs", _INT), ("duplicate_count", _INT), ("duplicate_bucket", pa.string()),
    ("dedup_status", pa.string()), ("member", pa.bool_())])


def per_sequence_schema(reference: bool) -> pa.Schema:
    """:data:`PER_SEQUENCE_SCHEMA`, without ``score_reference`` when no reference model was given."""
    s = PER_SEQUENCE_SCHEMA
    return s if reference else s.remove(s.get_field_index("score_reference"))


TRAIN_CONFIG = "train_config.json"
TOKENIZER_DIR = "tokenizer"
ORDER_FILE = "order.parquet"
HELDOUT_FILE = "heldout.parquet"
CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "trainer_state.pt"
MODEL_DIR = "model"
#: Everything a training run writes besides manifest.json: what ``memdedup train --replace`` removes,
#: in this order: the record of its config last, so that a removal killed midway leaves files their
#: record still claims (refused as another config's run, or removed again), never files without
#: one, which the next run would take for its own.
RUN_ENTRIES = (TOKENIZER_DIR, ORDER_FILE, HELDOUT_FILE, CHECKPOINT_DIR, MODEL_DIR, TRAIN_CONFIG)


def checkpoint_name(step: int) -> str:
    """The directory name of the checkpoint at ``step`` (sorts by step)."""
    return f"step-{step:07d}"


def checkpoint_step(path: Path) -> int:
    """The step of a checkpoint directory ``step-<digits>``; ValueError for any other name."""
    name = Path(path).name
    digits = name[len("step-"):]
    if not (name.startswith("step-") and digits.isascii() and digits.isdigit()):
        raise ValueError(f"{path}: not a checkpoint directory name (step-NNNNNNN)")
    return int(digits)


def training_run(model: str | os.PathLike) -> Path | None:
    """The ``memdedup train`` run directory (holding :data:`ORDER_FILE`) whose checkpoint
    (``RUN/checkpoints/step-N``) or final model (``RUN/model``) ``model`` is, else None."""
    model = Path(model)
    run = (model.parent.parent if model.parent.name == CHECKPOINT_DIR
           else model.parent if model.name == MODEL_DIR else None)
    return run if run is not None and (run / ORDER_FILE).exists() else None


def training_run_digest(run: str | os.PathLike) -> str | None:
    """sha256 (hex) of a run's :data:`TRAIN_CONFIG` (config and ``corpus_sha256``) as canonical JSON;
    None without one. The trainer is deterministic: runs of one digest hold the same weights at every step."""
    record = io.json_or_empty(Path(run) / TRAIN_CONFIG)
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode("utf-8")).hexdigest() if record else None


PROFILE_FILE = "profile.parquet"
RETENTION_FILE = "retention.parquet"
FORECAST_FILE = "forecast.json"
HEATMAP_PNG = "profile_heatmap.png"
RETENTION_PNG = "retention_curves.png"
EVENT_TIME_FILE = "event_time.parquet"
EVENT_TIME_PNG = "event_time.png"
INSTANCES_FILE = "instances.parquet"
#: a retention run's forgetting curve (:func:`audit.checkpoints.run_retention`)
RETENTION_RUN_FILE = "retention_run.parquet"
RETENTION_RUN_CURVE = "retention_run_curve.parquet"
PROFILE_OUTPUTS = (PROFILE_FILE, EVENT_TIME_FILE, INSTANCES_FILE, RETENTION_FILE, FORECAST_FILE, HEATMAP_PNG,
                   EVENT_TIME_PNG, RETENTION_PNG, SUMMARY)

COMPARISON_PAGE = "comparison.html"
#: The pages a report is moving in, listed before the first and removed after its manifest: what a
#: report killed in between left, for the next one to remove.
REPORT_PENDING = ".pages-pending.json"


def report_json(page: Path, comparison: bool = False) -> Path:
    """The JSON beside a report page: ``<stem>.summary.json`` (a model page: the audit's summary.json) or
    ``<stem>.json`` (a comparison page: its numbers)."""
    page = Path(page)
    return page.with_suffix(".json") if comparison else page.with_name(page.stem + ".summary.json")


def refuse_out(out: Path, inputs: list, stage: str) -> None:
    """ValueError, before anything is written, when ``out`` is or lies inside one of the ``inputs``
    (:func:`dedup.runs.refuse_out_in_inputs`) or holds another stage's output."""
    refuse_out_in_inputs(out, [Path(d) for d in inputs if d])  # None or "": no such input
    refuse_other_stage(out, stage)


def refuse_unfinished(d: str | os.PathLike, stage: str) -> None:
    """ValueError when ``d`` holds the marker of a killed or running ``stage`` (:data:`dedup.io.RUNNING_FILE`,
    :func:`holding_out`) and no manifest.json: some of its outputs are new, others gone or not yet written."""
    if (Path(d) / io.RUNNING_FILE).exists() and not io.manifest_path(Path(d)).exists():
        raise ValueError(f"{d}: an unfinished memdedup {stage} (killed or still running: {io.RUNNING_FILE} and no "
                         f"manifest.json); rerun it")


def refuse_other_bos(dirs: Sequence[str | os.PathLike], labels: Sequence[str] | None = None) -> None:
    """InputError naming the last audit recording a ``--bos`` policy (summary.json's config) unless they agree."""
    configs = [io.json_or_empty(Path(d) / SUMMARY).get("config") or {} for d in dirs]
    if bad := next((d for d, c in zip(dirs, configs) if not isinstance(c, dict)), None):
        raise InputError(Path(bad) / SUMMARY, "damaged: its 'config' is not an object")
    bos = [c.get("bos") for c in configs]  # None: an audit from before --bos
    if len(set(bos) - {None}) > 1:  # with and without a BOS before each window: other contexts, other rates
        raise InputError([d for d, b in zip(dirs, bos) if b][-1], "a comparison needs audits of one BOS policy (--bos: "
                         "a BOS before each window or not gives other rates): "
                         + ", ".join(f"{lab}: {b or 'not recorded'}" for lab, b in zip(labels or dirs, bos)))


def as_paths(x) -> list[Path]:
    """One path (str or os.PathLike) or an iterable of them, as a list of Paths; none: ``[]``."""
    return [] if x is None else [Path(x)] if isinstance(x, (str, os.PathLike)) else [Path(p) for p in x]


def holding_out(param: str, inputs: tuple[str, ...] = (), own: tuple[str, ...] | None = None
                ) -> Callable[[Callable], Callable]:
    """Decorate a stage to run while it holds its output directory, the argument ``param``
    (:func:`dedup.io.claim`; None: nothing to hold): a concurrent run into it raises :class:`dedup.io.InUseError`.
    ``inputs`` name the arguments holding input directories (a path or an iterable, reaching the stage as a list): an
    ``out`` inside one, a file or not UTF-8, is refused before the claim could touch it. Once held, the temporaries a
    killed run left in ``out`` are removed (only those of the files ``own`` names, for an ``out`` shared with other
    stages). While the stage runs ``out`` holds :data:`dedup.io.RUNNING_FILE`, gone when it returns or fails but kept
    if it is killed, or stopped leaving files there (walks skip the folder: :func:`dedup.runs.earlier_output`).
    TypeError: a name not a parameter."""

    def decorate(stage: Callable) -> Callable:
        signature = inspect.signature(stage)
        if unknown := [name for name in (param, *inputs) if name not in signature.parameters]:
            raise TypeError(f"holding_out: {stage.__qualname__} has no parameter {', '.join(map(repr, unknown))}")

        @functools.wraps(stage)
        def run(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            given, dirs = bound.arguments, []
            for name in inputs:
                x = given.get(name)
                if x is not None and not isinstance(x, (str, os.PathLike)):
                    given[name] = x = list(x)  # read once: the stage gets what an iterator would no longer give
                dirs += [d for d in ([x] if isinstance(x, (str, os.PathLike)) else x or []) if d]  # "": none
            out = given.get(param)
            if out is None:
                return stage(*bound.args, **bound.kwargs)
            refuse_out_in_inputs(Path(out), as_paths(dirs))
            refuse_unusable_out(Path(out))  # (a file: the line named the marker '<out>/.memdedup-running')
            with io.claim(out):
                io.remove_temporaries(out, own)  # held: no live writer's temporaries can be among them
                running = Path(out) / io.RUNNING_FILE  # lets a walk tell a killed stage's outputs from data
                killed = running.exists()  # a killed run's mark stays until a run completes
                running.touch()
                try:
                    result = stage(*bound.args, **bound.kwargs)
                except BaseException as e:  # the stage removed what it wrote (or it is a refusal); but stopped
                    # (Ctrl-C, SIGTERM) with its outputs left for the rerun (train, profile): marked, as if killed
                    left = isinstance(e, KeyboardInterrupt) and any(p != running for p in Path(out).iterdir())
                    if not killed and not left:
                        running.unlink(missing_ok=True)
                    raise
                running.unlink(missing_ok=True)
                return result

        return run

    return decorate


def _kind(v: object) -> str:
    kinds = ((bool, "a boolean"), ((int, float), "a number"), (dict, "an object"), (list, "a list"), (str, "a string"))
    return next((name for t, name in kinds if isinstance(v, t)), type(v).__name__)


def shape_problem(got: object, want: object, where: str) -> str | None:
    """Where ``got`` (from summary.json) differs in type from ``want`` (what the audit writes), null allowed
    anywhere; None when nowhere."""
    if got is None or want is None:
        return None
    if _kind(got) != _kind(want):
        return f"{where!r} is {str(repr(got))[:60]}, expected {_kind(want)}"
    if isinstance(want, dict):
        return next(filter(None, (shape_problem(got[k], want[k], f"{where}.{k}") for k in want.keys() & got.keys())),
                    None)
    if isinstance(want, list) and want:
        return next(filter(None, (shape_problem(g, want[0], f"{where}[{i}]") for i, g in enumerate(got))), None)
    return None


def refuse_damaged(path: Path, obj: dict, shape: dict) -> None:
    """InputError naming ``path`` (the file ``obj`` was read from) where a key of ``shape`` holds another type in
    ``obj`` (:func:`shape_problem`; absent or null: fine)."""
    for key, want in shape.items():
        if problem := shape_problem(obj.get(key), want, key):
            raise InputError(path, f"damaged: {problem}")


def finished_audit(audit_dir: str | os.PathLike) -> dict:
    """The manifest of the finished audit in ``audit_dir``. InputError naming the directory where it holds no
    :data:`PER_SEQUENCE` (not an audit); :class:`dedup.io.StateError` naming it where it holds no manifest.json
    (:func:`dedup.io.completed_manifest`: the audit writes it last; one stopped before it finished left none)."""
    if not (Path(audit_dir) / PER_SEQUENCE).exists():
        raise InputError(audit_dir, f"not an audit output (no {PER_SEQUENCE})")
    return io.completed_manifest(Path(audit_dir), "audit")


def read_per_sequence(audit_dir: Path, columns: tuple[str, ...], nulls: bool = True) -> pa.Table:
    """A finished audit's :data:`PER_SEQUENCE` table with ``columns`` present. Refused as :func:`finished_audit`
    refuses (no such file, no manifest.json), else InputError naming the file where a column is absent or, for a
    boolean or integer column of :data:`PER_SEQUENCE_SCHEMA`, holds another type (integers pass for booleans, 0/1 as
    older audits wrote them; a column of nulls passes) or, unless ``nulls``, a missing value. Read value by value as
    Python truth, a string column would count ``'false'`` as extractable."""
    finished_audit(audit_dir)
    path = Path(audit_dir) / PER_SEQUENCE
    table = pq.read_table(path)
    if missing := [c for c in columns if c not in table.column_names]:
        raise InputError(path, f"no column {missing[0]!r} (columns: {table.column_names})")
    for c in columns:
        want, got = PER_SEQUENCE_SCHEMA.field(c).type, table.schema.field(c).type
        if pa.types.is_boolean(want) or pa.types.is_integer(want):
            kinds = "booleans or integers (0/1)" if pa.types.is_boolean(want) else "integers"
            if not (pa.types.is_integer(got) or got == want or pa.types.is_null(got)):
                raise InputError(path, f"column {c!r} holds {got}, not {kinds}")
        if not nulls and table[c].null_count:
            raise InputError(path, f"column {c!r} holds missing values")
    return table


def read_instances(path: Path, columns: tuple[str, ...]) -> pa.Table:
    """A run's :data:`ORDER_FILE` or :data:`HELDOUT_FILE`, with ``columns`` present and non-null, ``shard`` strings
    and the others integers; InputError naming the file (and the first null row) otherwise."""
    table = pq.read_table(path)
    if missing := [c for c in columns if c not in table.column_names]:
        raise InputError(path, f"no column {', '.join(map(repr, missing))} (columns: {table.column_names})")
    if path.name == ORDER_FILE and table.num_rows == 0:
        raise InputError(path, "no rows: the run recorded no training exposure")
    if table.num_rows == 0:  # no held-out instance (older runs wrote such a file's columns untyped): the caller says
        return table
    for c in columns:
        col = table[c]
        if col.null_count:
            raise InputError(path, f"column {c!r} is null", row=pc.index(col.is_null(), True).as_py())
        want = (pa.types.is_string, pa.types.is_large_string) if c == "shard" else (pa.types.is_integer,)
        if not any(ok(col.type) for ok in want):
            raise InputError(path, f"column {c!r} holds {col.type}, not {'strings' if c == 'shard' else 'integers'}")
    return table
