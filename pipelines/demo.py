"""The offline demo (``make demo``, the Snakefile's default config): its corpus, the manifest of what
was planted in it, and its claims checked from the run's own outputs (never from the config).

The corpus (:func:`generate_demo_corpus`): :mod:`dedup.synthetic`'s text with planted exact and near
duplicates, plus :mod:`audit.canaries`' random canaries planted 1, 2, 4, ..., 64 times; ``memdedup
generate`` writes it with ``manifest.json`` (:func:`planted_manifest`).

The claims (:func:`run_checks`, ``memdedup check``; ``OUT/checks.json``):

1. dedup removed every planted exact duplicate (ids listed by the corpus generator);
2. the raw model's extractable rate on canaries planted >= 32 times is high (>= 50%; distinct
   sequences, as every rate of the audit);
3. the dedup model's rate on the same canaries is at least 10x lower.

Over a corpus without such canaries (the user's own shards, or a generated corpus of ``canaries_per_repeat``
0) claims 2 and 3 cannot apply: they are not applicable (``passed`` null, the reason in ``not_applicable``),
not failed; claim 1 is checked only on a generated corpus, and applies where it planted exact duplicates.
``passed`` is that of the claims that apply (null where none does, which ``memdedup check --strict`` fails):
the workflow's checks over any corpus say what they could check, and fail only a claim that applies.

``checks.json`` also reports each model's exposure of the canaries by planted copies (Carlini et al. 2019,
:mod:`audit.exposure`): far more sensitive than extraction, it shows memorisation where nothing is extracted yet.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audit.aggregate import distinct_rows
from audit.canaries import generate_canary_corpus
from audit.layout import HELDOUT_FILE, TRAIN_CONFIG, holding_out, read_per_sequence, refuse_damaged, training_run
from dedup import io
from dedup import layout as dedup_layout
from dedup.shards import InputError
from dedup.synthetic import SHARD_FILE, generate_corpus

CORPUS_MANIFEST = "manifest.json"
CHECKS_FILE = "checks.json"
MIN_COPIES = 32  # claim 2: canaries planted at least this many times
EXPOSURE_SAMPLES = 300  # candidates sampled from the canaries' random space per model

__all__ = ["generate_demo_corpus", "DEMO_SCHEMA", "planted_manifest", "prepare_corpus_dir", "run_checks"]


#: Schema of :func:`generate_demo_corpus`. kind: original | exact | near | canary; cluster: generate_corpus's
#: (row of its original), -1 for canaries; source_jaccard: a near duplicate's Jaccard with its original;
#: canary: the canary's index, else -1; repeats: planted copies of a canary's text, else 1.
DEMO_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("kind", pa.string()), ("cluster", pa.int64()),
                         ("source_jaccard", pa.float64()), ("canary", pa.int64()), ("repeats", pa.int64())])


def generate_demo_corpus(n_docs: int = 2000, exact_frac: float = 0.05, near_frac: float = 0.10,
                         repeats: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64), canaries_per_repeat: int = 4,
                         mean_bytes: int = 600, seed: int = 0) -> pa.Table:
    """The module docstring's corpus: ``n_docs`` rows of :func:`dedup.synthetic.generate_corpus` plus
    :func:`audit.canaries.generate_canary_corpus`'s canaries (``canaries_per_repeat`` planted ``r`` times for each r in
    ``repeats``) at seeded positions. Deterministic for a seed; ids are unique (``doc-*``, ``canary-*``)."""
    base = generate_corpus(n_docs, mean_bytes=mean_bytes, exact_frac=exact_frac, near_frac=near_frac, seed=seed)
    can = generate_canary_corpus(n_background=0, repeats=repeats, canaries_per_repeat=canaries_per_repeat,
                                 mean_bytes=mean_bytes, seed=seed + 1)
    n_b, n_c = base.num_rows, can.num_rows
    rows = {"id": base.column("id").to_pylist() + [f"canary-{i:06d}" for i in range(n_c)],
            "text": base.column("text").to_pylist() + can.column("text").to_pylist(),
            "kind": base.column("kind").to_pylist() + ["canary"] * n_c,
            "cluster": base.column("cluster").to_pylist() + [-1] * n_c,
            "source_jaccard": base.column("source_jaccard").to_pylist() + [None] * n_c,
            "canary": [-1] * n_b + can.column("canary").to_pylist(),
            "repeats": [1] * n_b + can.column("repeats").to_pylist()}
    is_canary = np.zeros(n_b + n_c, dtype=bool)
    is_canary[np.random.default_rng(seed + 2).choice(n_b + n_c, size=n_c, replace=False)] = True
    # each position's rank in a stable sort of is_canary: base rows keep their order (duplicates follow originals)
    order = np.argsort(np.argsort(is_canary, kind="stable"))
    return pa.table(rows, schema=DEMO_SCHEMA).take(pa.array(order))


def planted_manifest(table: pa.Table, seed: int, shards: list[Path], canaries: bool) -> dict:
    """What a generated corpus holds (``manifest.json`` beside the shards): documents, rows per kind, the
    seed and shard names; with ``canaries``, also canary rows per repeat level and the ids of planted exact
    duplicates (which :func:`run_checks` expects dedup to remove)."""
    kinds = table.column("kind").to_pylist()
    planted = {"documents": table.num_rows, "kinds": dict(Counter(kinds)), "seed": seed,
               "shards": [p.name for p in shards]}
    if canaries:
        reps = Counter(r for r, k in zip(table.column("repeats").to_pylist(), kinds) if k == "canary")
        planted["canary_rows_by_repeats"] = {str(r): n for r, n in sorted(reps.items())}
        planted["exact_ids"] = [i for i, k in zip(table.column("id").to_pylist(), kinds) if k == "exact"]
    return planted


def _corpus_manifest(path: Path) -> dict:
    """A generated corpus's manifest.json (:func:`planted_manifest`); InputError naming it when a field that is read
    holds another type."""
    corpus = io.read_json(path)
    refuse_damaged(path, corpus, {"documents": 0, "shards": [""], "exact_ids": [""], "canary_rows_by_repeats": {}})
    return corpus


def prepare_corpus_dir(out: Path) -> None:
    """Make ``out`` ready for ``memdedup generate``: an earlier generate run's files are removed (its
    manifest and the shards it lists, or without a manifest, as Snakemake leaves it, files named as
    :func:`dedup.synthetic.write_shards` names them; with either, their temporaries a killed run left).
    ValueError for a file or a directory holding anything else."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a directory")
    if (out / CORPUS_MANIFEST).exists():
        earlier = _corpus_manifest(out / CORPUS_MANIFEST)
        shards = (Path(name).name for name in earlier.get("shards", []))
        listed = {CORPUS_MANIFEST, *shards} if "kinds" in earlier else set()
    else:
        listed = {p.name for p in out.iterdir() if SHARD_FILE.fullmatch(p.name) and p.is_file()}
    if listed or not (out / CORPUS_MANIFEST).exists():  # not where another tool's manifest.json is
        listed |= {p.name for p in out.iterdir() if p.is_file() and (final := io.temporary_of(p.name))
                   and (final == CORPUS_MANIFEST or SHARD_FILE.fullmatch(final))}
    if others := sorted(p.name for p in out.iterdir() if p.name not in listed):
        raise ValueError(f"--out {out} holds files no earlier generate run wrote ({', '.join(others[:3])}"
                         f"{', ...' if len(others) > 3 else ''}); choose a new or empty directory")
    for name in listed:
        (out / name).unlink(missing_ok=True)


def _canary_rate(audit_dir: Path) -> dict:
    """Extractable rate of the distinct sequences sampled from canaries planted >= MIN_COPIES times that the model
    trained on: a ``member`` False (a canary held out with its copies) is left out, as it would lower the raw
    model's rate and the cleaned model's alike."""
    io.completed_manifest(audit_dir, "audit")
    table = read_per_sequence(audit_dir, ("doc_id", "duplicate_count", "extractable"), nulls=False)
    t = table.select(["doc_id", "duplicate_count"]).to_pydict()
    member = table.column("member").to_pylist() if "member" in table.column_names else [None] * table.num_rows
    table = table.filter(pa.array([d is not None and str(d).startswith("canary-") and c >= MIN_COPIES and m is not False
                                   for d, c, m in zip(t["doc_id"], t["duplicate_count"], member)], pa.bool_()))
    rows = [e for e, first in zip(table.column("extractable").to_pylist(), distinct_rows(table)) if first]
    return {"sequences": len(rows), "extractable": sum(rows), "rate": sum(rows) / len(rows) if rows else None}


def _canary_exposure(corpus: Path, model_dir: Path):
    """Exposure (Carlini et al. 2019) of the corpus's distinct canaries under a model, by planted copies
    (candidates from :mod:`audit.canaries`' random space): ``{"samples", "log2_space", "words",
    "by_copies": [...]}``, or None when the corpus shards or the model are absent."""
    shards = sorted(corpus.glob("*.parquet")) if corpus.is_dir() else []
    if not shards or not (model_dir / "config.json").exists():
        return None
    from audit.exposure import canary_exposure, exposure_by_copies
    from audit.lm import load_causal_lm
    from audit.sampling import document_name

    # a model memdedup train made saw each canary from its start, in instances of seq_len tokens: scored so; the
    # canaries it held out (with all their copies: audit.train.choose_heldout) it never saw: left out
    run = training_run(model_dir)
    record = io.json_or_empty(run / TRAIN_CONFIG) if run else {}
    seq_len = record.get("config", record).get("seq_len")  # (older runs: the config at the top level)
    held = set(pq.read_table(run / HELDOUT_FILE, columns=["document_id"]).column(0).to_pylist()
               ) if run and (run / HELDOUT_FILE).exists() else set()  # by id: the cleaned model's run read kept/
    texts: dict[str, int] = {}
    left_out: set[str] = set()  # texts of which a copy was held out, as all its copies were
    for shard in shards:
        t = pq.read_table(shard)
        if not {"kind", "text", "repeats"} <= set(t.column_names):
            return None
        ids = t.column("id").to_pylist() if "id" in t.column_names else [None] * t.num_rows
        for row, (kind, text, reps) in enumerate(zip(*(t.column(c).to_pylist() for c in ("kind", "text", "repeats")))):
            if kind == "canary" and document_name(ids[row], shard.name, row) in held:
                left_out.add(text)
            elif kind == "canary":
                texts[text] = int(reps)
    if not (texts := {t: r for t, r in texts.items() if t not in left_out}):
        return None
    by_words: dict[int, list[str]] = {}
    for text in texts:
        by_words.setdefault(len(text.split(" ")), []).append(text)
    lm = load_causal_lm(model_dir)
    copies, exposures, meta = [], [], {"held_out_canaries": len(left_out)}
    for words, group in sorted(by_words.items()):
        res = canary_exposure(lm, group, words, n_samples=EXPOSURE_SAMPLES, separator=run is None, context=seq_len)
        copies += [texts[t] for t in group]
        exposures += [r["exposure"] for r in res]
        meta |= {"samples": EXPOSURE_SAMPLES, "log2_space": res[0]["log2_space"], "words": res[0]["words"]}
    return {**meta, "by_copies": exposure_by_copies(copies, exposures)}


@holding_out("out", own=(CHECKS_FILE,))
def run_checks(out: str | Path) -> dict:
    """Evaluate the claims for a workflow output directory; write ``OUT/checks.json`` while holding OUT
    (:func:`audit.layout.holding_out`)."""
    out = Path(out)
    checks = []
    corpus_manifest = out / "corpus" / CORPUS_MANIFEST
    corpus = _corpus_manifest(corpus_manifest) if corpus_manifest.exists() else None
    if corpus is not None:
        planted = set(corpus.get("exact_ids", []))
        rows = dedup_layout.input_rows(io.completed_manifest(out / "dedup", "dedup"), out / "dedup")
        if set(rows) != set(corpus.get("shards", [])) or sum(rows.values()) != corpus.get("documents"):
            raise InputError(out / "dedup", f"not the dedup output of the corpus in {out / 'corpus'} ({len(rows)} "
                                            f"inputs of {sum(rows.values())} rows; the corpus has "
                                            f"{len(corpus.get('shards', []))} shards of {corpus.get('documents')})")
        removed_ids = set(dedup_layout.read_removed(out / "dedup", ["id", "reason"])["id"])
        missed = sorted(planted - removed_ids)
        checks.append({"name": "every planted exact duplicate removed", "passed": not missed,
                       "planted": len(planted), "removed": len(planted & removed_ids), "missed": missed[:20]})
        if not planted:
            checks[-1].update(passed=None, not_applicable="no exact duplicates planted in the corpus")
    raw, dedup = _canary_rate(out / "audit" / "raw"), _canary_rate(out / "audit" / "dedup")
    checks.append({"name": f"raw model extracts canaries planted >= {MIN_COPIES} times (rate >= 0.5)",
                   "passed": raw["rate"] is not None and raw["rate"] >= 0.5, **{f"raw_{k}": v for k, v in raw.items()}})
    ratio_ok = bool(raw["rate"]) and dedup["rate"] is not None and dedup["rate"] * 10 <= raw["rate"]  # raw 0: none
    checks.append({"name": "dedup model's rate on those canaries is at least 10x lower", "passed": ratio_ok,
                   "raw_rate": raw["rate"], "dedup_rate": dedup["rate"], "dedup_sequences": dedup["sequences"]})
    # claims 2 and 3 need canaries planted >= MIN_COPIES times: as the corpus manifest lists them, or without one
    # (the user's own corpus), among the raw audit's sequences
    canaries = (any(int(r) >= MIN_COPIES and n for r, n in corpus.get("canary_rows_by_repeats", {}).items())
                if corpus is not None else raw["sequences"] > 0)
    if not canaries:
        for c in checks[-2:]:
            c.update(passed=None, not_applicable=f"no canaries planted >= {MIN_COPIES} times in the corpus")
    applicable = [c["passed"] for c in checks if c["passed"] is not None]
    result = {"passed": all(applicable) if applicable else None, "checks": checks}
    exposure = {}
    for m in ("raw", "dedup"):
        try:
            exposure[m] = _canary_exposure(out / "corpus", out / "train" / m / "model")
        except Exception as e:  # informational: never fails the claims, but says why it is missing
            exposure[m] = {"error": f"{type(e).__name__}: {e}"}
    if any(exposure.values()):
        result["exposure_by_copies"] = {m: v for m, v in exposure.items() if v}
    io.write_json_atomic(out / CHECKS_FILE, result)
    return result
