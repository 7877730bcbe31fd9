"""Memorisation over training: profiles, retention and forecasting from a trainer's checkpoints.

Input: a ``memdedup train`` directory, or any run laid out the same way (HF checkpoints under
``checkpoints/step-NNNNNNN/``, ``order.parquet`` and ``heldout.parquet``: :mod:`audit.layout`,
README "Bring your own checkpoints"). Per checkpoint, every audited instance gets its outcome
(mean token surprisal, or teacher-forced accuracy) and greedy recall of its second half from
its first half. Profile and retention use the checkpoints up to the end of epoch 1
(:func:`panel_end_step`); the forecast also scores the final checkpoint. Outputs: :mod:`audit.layout`'s
PROFILE/, where ``profile.parquet`` (:func:`audit.profile.did`) also holds a placebo cohort of held-out
instances given a pretend treatment step (its band should cover 0) and ``retention.parquet`` recognition
against held-out, scrambled and substituted foils, and recall, per cohort and checkpoint; on a retention
run (Orhan 2024) also :func:`run_retention`'s forgetting curve (``retention_run.parquet``,
``retention_run_curve.parquet``).
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dedup import io
from dedup.runs import discover
from dedup.shards import InputError

from . import profile, retention
from .config import ProfileConfig
from .layout import (CHECKPOINT_DIR, EVENT_TIME_FILE, EVENT_TIME_PNG, FORECAST_FILE, HEATMAP_PNG, HELDOUT_FILE,
                     INSTANCES_FILE, ORDER_FILE, PROFILE_FILE, PROFILE_OUTPUTS, RETENTION_FILE, RETENTION_PNG,
                     RETENTION_RUN_CURVE, RETENTION_RUN_FILE, SUMMARY, TRAIN_CONFIG, checkpoint_name, checkpoint_step,
                     holding_out, read_instances, refuse_out)
from .duplicates import Keys, ShardRows, key_columns
from .sampling import corpus_batches, rows_of


def _checkpoints(run: Path) -> list[tuple[int, Path]]:
    """(step, directory) of every ``checkpoints/step-NNNNNNN/``, by step; InputError naming a
    ``step-*`` directory with another name (a copy such as ``step-0000010-old``) or a Hugging Face Trainer
    ``checkpoint-N`` directory (in the run or in ``checkpoints/``), with the name it needs."""
    for p in sorted([*run.glob("checkpoint-*"), *(run / CHECKPOINT_DIR).glob("checkpoint-*")]):
        if p.is_dir() and p.name.removeprefix("checkpoint-").isdecimal():  # else silently left out, or "no step-*"
            want = run / CHECKPOINT_DIR / checkpoint_name(int(p.name.removeprefix("checkpoint-")))
            raise InputError(p, f"a Hugging Face Trainer checkpoint: memdedup reads {CHECKPOINT_DIR}/step-NNNNNNN/ "
                                f"(the step zero-padded to 7 digits): move or link it to {want}")
    ckpts = []
    for p in (run / CHECKPOINT_DIR).glob("step-*"):
        if p.is_dir():
            try:
                ckpts.append((checkpoint_step(p), p))
            except ValueError:
                raise InputError(p, "not a checkpoint directory name (step-NNNNNNN): rename or remove it") from None
    ckpts.sort()
    for (a, pa_), (b, pb) in zip(ckpts, ckpts[1:]):
        if a == b:
            raise InputError(pb, f"the same step {a} as {pa_.name}: keep one checkpoint per step")
    if not ckpts:
        raise ValueError(f"{run}: no {CHECKPOINT_DIR}/step-*/ directories")
    return ckpts


#: The columns run_profile reads from order.parquet and heldout.parquet.
INSTANCE_COLUMNS = ("instance_id", "shard", "row", "token_offset", "n_tokens")


def _not_the_runs_corpus(corpus: list[str], run: Path, why: str) -> ValueError:
    return ValueError(f"{' '.join(map(str, corpus))}: not the corpus {run} was trained on ({why})")


def _document_texts(run: Path, keys, corpus: list[str], text_column: str) -> dict[tuple[str, int], str]:
    """The text of each (shard name, row) in ``keys``, read from the corpus in one pass (of the shards holding one)."""
    shards = discover(corpus)
    index = _shard_index(run, corpus, shards, (name for name, _ in keys))
    wanted = [(index[name], row) for name, row in keys]
    texts = {(shards[i].name, r): text or "" for i, r, _, text in rows_of(shards, text_column, None, wanted)}
    _refuse_absent(run, corpus, keys, texts)
    return texts


def _shard_index(run: Path, corpus: list[str], shards, names) -> dict[str, int]:
    """Each shard's index by name; ValueError naming a shard of ``names`` not in the corpus."""
    index = {s.name: i for i, s in enumerate(shards)}
    for name in names:
        if name not in index:
            raise ValueError(f"{run}: order names shard {name!r}, not in the corpus {corpus}")
    return index


def _refuse_absent(run: Path, corpus: list[str], keys, found) -> None:
    """ValueError (not the run's corpus) where a (shard name, row) of ``keys`` is not in ``found``."""
    if absent := [k for k in keys if k not in found]:
        raise _not_the_runs_corpus(corpus, run, f"its order names {len(absent)} rows it lacks, e.g. {absent[0][0]} "
                                                f"row {absent[0][1]}")


def _hard_foils(items: np.ndarray, tokenizer, fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Orhan 2024's foils needing no model: the items scrambled, and substituted (no special token)."""
    special = [i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None]
    return {"scrambled": retention.scramble_foils(items, seed=seed),
            "substituted": retention.substitute_foils(items, len(tokenizer), fraction, seed=seed, exclude=special)}


def _load_fitting(path: Path, seq_len: int):
    """:func:`audit.lm.load_causal_lm` of a checkpoint; ModelError when instances of ``seq_len`` tokens overflow it."""
    from .lm import ModelError, load_causal_lm

    lm = load_causal_lm(path)
    if why := lm.beyond_context(seq_len):
        raise ModelError(f"{path}: the run's instances of {why}")
    return lm


def _loss(lm, tokens: np.ndarray, batch_size: int) -> np.ndarray:
    """Mean token surprisal (nats) of each row, from one teacher-forced pass."""
    return -lm.score(tokens, batch_size).logprob.mean(axis=1)


def _instance_tokens(run: Path, table: pd.DataFrame, corpus: list[str], tokenizer, text_column: str,
                     texts: dict[tuple[str, int], str] | None = None) -> np.ndarray:
    """Token ids (n, seq_len) of instances, re-tokenized from their documents with the run's
    tokenizer (deterministic, so the ids are those trained on); ``texts``: the documents' texts
    by (shard name, row) when read already (:func:`_document_texts`), else read here."""
    keys = _keys(table)
    texts = texts if texts is not None else _document_texts(run, keys, corpus, text_column)
    ids = tokenizer([texts[k] for k in keys], add_special_tokens=False)["input_ids"]
    n = int(table["n_tokens"].iloc[0])
    windows = [t[o : o + n] for t, o in zip(ids, table["token_offset"].astype(int))]
    if any(len(w) != n for w in windows):
        raise _not_the_runs_corpus(corpus, run, "a document is shorter than its instance in the order")
    return np.array(windows, dtype=np.int64)


#: How run_profile chooses its instances by content (summary.json's ``instances.eligibility``).
ELIGIBILITY_RULE = ("duplicates are dedup's (same canonical exact key or a shared LSH band, default DedupConfig "
                    "parameters, audit.duplicates): a treated instance's document has no other trained document "
                    "among its duplicates (its content is first trained at its own first exposure); a control's "
                    "document has no trained document among its duplicates (held-out means unseen)")


def _keys(table: pd.DataFrame) -> list[tuple[str, int]]:
    """The (shard name, row) of each row of an order.parquet or heldout.parquet table."""
    return [(str(s), int(r)) for s, r in zip(table["shard"], table["row"])]


def _sketch_corpus(run: Path, corpus: list[str], keys: set[tuple[str, int]], text_column: str,
                   id_column: str | None, digest: bool = False) -> tuple[str | None, list, Keys | None, np.ndarray]:
    """One pass over the corpus: ``(corpus_sha256, names, sketches, null)``: the digest (:func:`audit.train.
    corpus_digest`, with :func:`audit.train.corpus_documents`' InputError for an id naming two rows) only with
    ``digest``; the (shard name, row) of the rows of ``keys`` the corpus holds (canonical order), their dedup
    :class:`audit.duplicates.Keys` (None: none held) and bool (n,) whether their text is null (sketched as "").
    ValueError naming a shard of ``keys`` not in the corpus.

    Memory: one batch of rows and its sketch, and (bands + 2) 8-byte keys per row of ``keys`` (the rows of
    order.parquet and heldout.parquet: never the texts), plus with ``digest`` every document's name (the id check)."""
    from dedup.config import DedupConfig
    from dedup.sketch import Sketcher

    from .train import corpus_digest, named_documents

    config = DedupConfig(text_column=text_column)
    sketcher = Sketcher(config, *config.banding())
    shards = discover(corpus)
    wanted = ShardRows.of(keys)
    _shard_index(run, corpus, shards, sorted(wanted.names()))
    parts = []

    def rows():
        for shard, start, reader, batch in corpus_batches(shards, text_column, id_column):
            texts, got = reader.text(batch), wanted.between(shard.name, start, start + batch.num_rows)
            if got.size:
                text = texts.take(pa.array(got - start))
                parts.append(([(shard.name, int(r)) for r in got], Keys.of(sketcher(pc.fill_null(text, ""))),
                              text.is_null().to_numpy(zero_copy_only=False)))
            if digest:
                for r, (doc_id, t) in enumerate(zip(reader.ids(batch).to_pylist(), texts.to_pylist())):
                    yield shard, start + r, doc_id, t

    sha = corpus_digest(named_documents(rows())) if digest else None
    if not digest:
        deque(rows(), maxlen=0)  # the pass, for the sketches alone
    if not parts:
        return sha, [], None, np.zeros(0, dtype=bool)
    sketches = Keys(*(np.concatenate([getattr(p[1], f.name) for p in parts]) for f in dataclasses.fields(Keys)))
    return sha, [k for p in parts for k in p[0]], sketches, np.concatenate([p[2] for p in parts])


def trained_duplicates(run: Path, corpus: list[str], names: list, sketches: Keys | None, null: np.ndarray,
                       keys: list[tuple[str, int]], trained: set[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    """For each (shard name, row) in ``keys``, bool (n,) twice: whether a TRAINED document (``trained``, from
    order.parquet) other than itself is an exact or near duplicate of it, and whether any is (itself included):
    one sharing a key of :func:`audit.duplicates.key_columns` (dedup's keys, the trainer's default DedupConfig) in
    :func:`_sketch_corpus`' ``names``, ``sketches`` and ``null`` of ``keys`` and ``trained``, a null text read as
    "", a trained row's matching nothing. Counted per key, so memory is linear in the rows, whatever the duplicate
    clusters' sizes. ValueError: a row of ``keys`` that the corpus lacks."""
    _refuse_absent(run, corpus, keys, set(names))
    other, any_ = np.zeros(len(keys), dtype=bool), np.zeros(len(keys), dtype=bool)
    if sketches is None:
        return other, any_
    pos = {k: i for i, k in enumerate(names)}
    c = np.array([pos[k] for k in keys], dtype=np.int64)
    tr = np.array([k in trained for k in names], dtype=bool) & ~null  # a null trained text: no key counts
    for key, ok in key_columns(sketches):
        values, counts = np.unique(key[ok & tr], return_counts=True)  # trained rows per key value
        if values.size:
            at = np.minimum(np.searchsorted(values, key[c]), values.size - 1)
            n = np.where(ok[c] & (values[at] == key[c]), counts[at], 0)
            any_ |= n > 0
            other |= n > (ok & tr)[c]  # (itself, counted where it is trained)
    return other, any_


def exposures(order: pd.DataFrame) -> pd.DataFrame:
    """One row per instance of ``order.parquet`` (its first exposure's row) with ``first_step``
    and ``second_step`` (the step of its second exposure; NaN if trained once)."""
    o = order.sort_values(["instance_id", "step"], kind="stable")
    first = o.groupby("instance_id", as_index=False).first()
    first["first_step"] = first["step"]
    second = o[o.duplicated("instance_id")].groupby("instance_id")["step"].min()
    first["second_step"] = first["instance_id"].map(second).astype("float64")
    return first


def panel_end_step(order: pd.DataFrame, steps: list[int]) -> tuple[int, str]:
    """The last step of the profile's panel and the rule that set it: one treatment per instance
    (Lesci et al. 2024 keep epoch 1 only), so the last checkpoint at or before the end of epoch 1
    (``order.parquet``'s last step with ``epoch == 0``), else (no ``epoch`` column) the last
    checkpoint. run_profile also leaves out instances trained again by then."""
    if "epoch" in order.columns and (order["epoch"] == 0).any():
        end1 = int(order.loc[order["epoch"] == order["epoch"].min(), "step"].max())
        if inside := [s for s in steps if s <= end1]:
            return inside[-1], "end of epoch 1"
    return steps[-1], "last checkpoint (no epochs recorded)"


@holding_out("out", inputs=("run_dir",))
def run_profile(run_dir, out, config: ProfileConfig = ProfileConfig(), corpus: list[str] | None = None, log=print) -> dict:
    """Profile a training run's checkpoints; return the summary (also written to ``out``).
    ValueError (nothing written): ``out`` is or lies inside the run directory, or holds another
    stage's output.

    Reads the corpus twice, whatever the number of checkpoints: once whole (its corpus_sha256 and the dedup sketches
    of order.parquet's and heldout.parquet's documents, for eligibility: :func:`_sketch_corpus`), then the shards
    holding a sampled instance (or a retention run's item or foil) for those texts, which are known only once
    eligibility has seen every trained document. Memory: one batch of text, (bands + 2) 8-byte keys per document
    of order.parquet and heldout.parquet, the corpus's document names (its id check) and the sampled texts."""
    from . import plots
    from .forecast import forecast

    t_start = time.perf_counter()
    run, out = Path(run_dir), Path(out)
    if not (run / ORDER_FILE).is_file():
        raise ValueError(f"{run}: not a 'memdedup train' run directory (no {ORDER_FILE})")
    refuse_out(out, [run], "profile")
    if (run / TRAIN_CONFIG).exists() and not io.manifest_path(run).exists():  # killed, or still training
        raise ValueError(f"{run}: an unfinished 'memdedup train' run ({TRAIN_CONFIG}, no manifest.json): its "
                         "checkpoints stop short of its order; rerun memdedup train to finish it, then profile")
    train_manifest = io.json_or_empty(io.manifest_path(run))  # {}: a user's own checkpoints
    train_cfg = train_manifest.get("config", {})
    text_column = train_cfg.get("text_column", "text")
    if not corpus and (gone := [p for p in train_manifest.get("corpus") or [] if not Path(p).exists()]):
        raise ValueError(f"{run}: its corpus is not where its manifest.json records it ({gone[0]} does not exist: "
                         "moved?); pass --corpus")
    given, corpus = corpus, corpus or train_manifest.get("corpus")
    if not corpus:
        raise ValueError(f"{run}: no corpus recorded; pass --corpus")
    discover(corpus, exclude=out)  # an --out that is or holds the corpus: refused, as train and audit refuse it
    order = read_instances(run / ORDER_FILE, INSTANCE_COLUMNS + ("step",)).to_pandas()
    # a set of rows: controls are drawn by position, so in instance order whatever order the file holds them in
    held = read_instances(run / HELDOUT_FILE, INSTANCE_COLUMNS).to_pandas().sort_values("instance_id", kind="stable")
    ckpts = _checkpoints(run)
    if (grid := config.checkpoint_grid()) is not None:  # the user's own checkpoint grid
        if missing := sorted(set(grid) - {s for s, _ in ckpts}):
            raise ValueError(f"{run}: checkpoints {missing} are not in the run (it has {[s for s, _ in ckpts]})")
        ckpts = [(s, p) for s, p in ckpts if s in set(grid)]
    steps = [s for s, _ in ckpts]
    panel_end, panel_rule = panel_end_step(order, steps)
    pchk = [s for s in steps if s <= panel_end]  # the profile's checkpoints: through the end of epoch 1
    if len(pchk) < 2:
        raise ValueError(f"{run}: fewer than 2 checkpoints up to the end of epoch 1 (step {panel_end}): {steps}")
    seq_len = int(order["n_tokens"].max())
    rng = np.random.default_rng(config.seed)
    first = exposures(order)
    # One treatment per instance: full length, treated within the panel, and not trained again inside it.
    first = first[(first["n_tokens"] == seq_len) & (first["first_step"] > pchk[0]) & (first["first_step"] <= pchk[-1])
                  & ~(first["second_step"] <= pchk[-1])]
    held = held[held["n_tokens"] == seq_len]
    # The corpus's one full read: its corpus_sha256 (another corpus than the run's, or its own rewritten: the wrong
    # texts) and the sketches of the trained and candidate documents for eligibility by content, not raw text
    # (ELIGIBILITY_RULE; issue #12 section 1). Its memory: _sketch_corpus's, never the texts.
    candidates, trained = sorted(set(_keys(first) + _keys(held))), set(_keys(order))
    sha, *sketched = _sketch_corpus(run, corpus, set(candidates) | trained, text_column,
                                    train_cfg.get("id_column", "id"), digest=bool(train_manifest.get("corpus_sha256")))
    if sha is not None and sha != train_manifest["corpus_sha256"]:
        why = "its documents, shards or rows differ from the run's corpus_sha256"
        if not given:
            raise ValueError(f"{run}: its corpus changed since training ({why}); restore it or pass --corpus")
        raise _not_the_runs_corpus(corpus, run, why)
    other, any_ = trained_duplicates(run, corpus, *sketched, candidates, trained)
    at = {d: i for i, d in enumerate(candidates)}
    ok_t = ~other[[at[d] for d in _keys(first)]]
    ok_c = ~any_[[at[d] for d in _keys(held)]]
    eligibility = {"rule": ELIGIBILITY_RULE, "treated_dropped_duplicated": int((~ok_t).sum()),
                   "controls_dropped_trained_duplicate": int((~ok_c).sum())}
    first, held = first[ok_t], held[ok_c]
    ts_all = first.set_index("instance_id")["first_step"].astype(float)
    n_cohorts = max(1, len(profile.merge_cohorts(
        pd.Series(np.searchsorted(pchk, ts_all.to_numpy(), side="left")).value_counts().to_dict(),
        config.min_cohort_size)))
    per_cohort = config.n_per_cohort or -(-config.n_treated // n_cohorts)
    keep = profile.sample_per_cohort(ts_all, pchk, per_cohort, config.min_cohort_size, seed=config.seed)
    treated = first[first["instance_id"].isin(keep)]
    if treated.empty:
        raise ValueError(f"{run}: no trained instance to profile: none is full length, first trained after step "
                         f"{pchk[0]} and not again by step {pchk[-1]}, without a trained duplicate, in a cohort of at "
                         f"least min_cohort_size {config.min_cohort_size}")
    if len(held) < 4:
        raise ValueError(f"{run}: fewer than 4 full-length held-out instances: train with a holdout fraction")
    controls = held.iloc[np.sort(rng.permutation(len(held))[: config.n_control])]
    placebo_mask = rng.permutation(len(controls)) < len(controls) // 2
    rows = pd.concat([
        treated.assign(group="treated", treatment_step=treated["first_step"].astype(float)),
        controls[~placebo_mask].assign(group="control", treatment_step=np.nan),
        controls[placebo_mask].assign(group="placebo", treatment_step=float(pchk[len(pchk) // 2])),
    ], ignore_index=True)
    lm0 = _load_fitting(ckpts[-1][1], seq_len)
    lm0.check_tokenizer()  # else every document reads as shorter than its instances
    # The second and last read: the texts of the sampled instances (and of a retention run's items and foils), known
    # only now (eligibility depends on every trained document); only the shards holding one, memory: those texts.
    design = train_manifest.get("retention")
    ret_keys = _keys(_retention_rows(run, design, config.seed)) if design else []
    texts = _document_texts(run, _keys(rows) + ret_keys, corpus, text_column)
    tokens = _instance_tokens(run, rows, corpus, lm0.tokenizer, text_column, texts)
    hard = _hard_foils(tokens[(rows["group"] == "treated").to_numpy()], lm0.tokenizer, 0.25, config.seed)
    hard_loss = {}  # step -> foil kind -> loss of each treated instance's foil
    half = seq_len // 2
    early = config.early_checkpoint
    if early is None:  # not `or`: step 0 is a checkpoint (Pythia's step0)
        early = min(steps, key=lambda s: abs(s - steps[-1] / 2))
    if early not in steps:
        raise ValueError(f"{run}: early_checkpoint {early} is not a checkpoint step: {steps}")
    if early == steps[-1]:  # a forecast of the final checkpoint from itself, as memdedup forecast refuses
        raise ValueError(f"{run}: early_checkpoint {early} is the final checkpoint: choose an earlier one of {steps}")
    scored = [(s, p) for s, p in ckpts if s in set(pchk) | {early, steps[-1]}]
    log(f"profile: {len(treated)} trained, {int((~placebo_mask).sum())} control and {int(placebo_mask.sum())} "
        f"placebo instances over {len(pchk)} checkpoints up to step {panel_end} ({panel_rule})"
        + (f", plus {len(scored) - len(pchk)} for forecasting" if len(scored) > len(pchk) else ""))

    panel = []
    t_loop = time.perf_counter()
    for i_ck, (step, path) in enumerate(scored, 1):
        lm = _load_fitting(path, seq_len)
        stats = lm.score(tokens, config.batch_size)
        if step in pchk:
            hard_loss[step] = {k: _loss(lm, foil, config.batch_size) for k, foil in hard.items()}
        loss = -stats.logprob.mean(axis=1)
        outcome = loss if config.outcome == "surprisal" else -stats.greedy_match.mean(axis=1)
        r = retention.recall(lm.greedy_continuations(tokens, half, config.batch_size, stats.greedy_match),
                             tokens[:, half:])
        panel.append(pd.DataFrame({"instance_id": rows.index, "step": step, "outcome": outcome,
                                   "exact_recall": r["exact"], "token_recall": r["token_fraction"], "loss": loss}))
        el = time.perf_counter() - t_loop
        log(f"profile: checkpoint {step} done ({i_ck}/{len(scored)}, {i_ck / el:.2f} checkpoints/s, "
            f"{i_ck * len(rows) / el:.0f} instances/s, ETA {(len(scored) - i_ck) * el / i_ck:.0f}s)")
    panel = pd.concat(panel, ignore_index=True)
    dpanel = panel[panel["step"].isin(pchk)]  # the profile and retention: through the end of epoch 1

    # Difference-in-differences (real cohorts, then the placebo cohort against the controls).
    def did_of(leave_out: str, min_cohort_size: int) -> pd.DataFrame:
        m = rows["group"] != leave_out
        return profile.did(dpanel[dpanel["instance_id"].isin(rows.index[m])][["instance_id", "step", "outcome"]],
                           pd.DataFrame({"instance_id": rows.index[m], "treatment_step": rows["treatment_step"][m]}),
                           n_boot=config.n_boot, seed=config.seed, min_cohort_size=min_cohort_size)

    prof = did_of("placebo", config.min_cohort_size)
    curve_et = profile.event_time_curve(prof) if len(prof) else pd.DataFrame()
    placebo = did_of("treated", 1)
    both = pd.concat([prof.assign(placebo=False), placebo.assign(placebo=True)], ignore_index=True)

    # Retention per (cohort, checkpoint): recognition against paired foils, recall.
    treated_idx = rows.index[rows["group"] == "treated"].to_numpy()
    foils = rng.choice(rows.index[rows["group"] != "treated"].to_numpy(), size=treated_idx.size, replace=True)
    t_step = rows.loc[treated_idx, "treatment_step"].to_numpy()
    g_of = np.array([min([s for s in pchk if s >= t], default=pchk[-1]) for t in t_step])
    wide = {k: panel.pivot(index="instance_id", columns="step", values=k) for k in ("loss", "exact_recall", "token_recall")}
    ret_rows = []
    for g in sorted(set(g_of.tolist())):
        members, mfoils = treated_idx[g_of == g], foils[g_of == g]
        pos = np.searchsorted(treated_idx, members)  # treated_idx is sorted: row of each member's hard foils
        for c in [c for c in pchk if c >= g]:  # only while not trained again: the panel ends before a second exposure
            seen, held_out = wide["loss"].loc[members, c].to_numpy(), wide["loss"].loc[mfoils, c].to_numpy()
            ret_rows.append({"treatment_step": g, "step": c, "n": int(members.size),
                             "recognition": retention.recognition(seen, held_out)["accuracy"],
                             **{f"recognition_{k}": retention.recognition(seen, hard_loss[c][k][pos])["accuracy"]
                                for k in hard},
                             "exact_recall": float(wide["exact_recall"].loc[members, c].mean()),
                             "token_recall": float(wide["token_recall"].loc[members, c].mean())})
    ret = pd.DataFrame(ret_rows)
    curve = retention.retention_curve(ret)

    # Forecasting: memorized (exact recall) at an early checkpoint vs the final one, restricted
    # to instances trained on at or before the early checkpoint (never the placebo's pretend step).
    def recalled_at(step: int, seen: pd.Series) -> pd.DataFrame:
        recalled = wide["exact_recall"][step].loc[rows.index].to_numpy()
        return pd.DataFrame({"seq_key": rows.index, "extractable": recalled, "seen": seen.to_numpy()})

    fc = forecast(recalled_at(early, (rows["group"] == "treated") & (rows["treatment_step"] <= early)),
                  recalled_at(steps[-1], rows["group"] == "treated"), seen_first="seen", seen_second="seen")
    fc["early_step"], fc["final_step"] = early, steps[-1]

    ret_run = None  # a retention run: its items' forgetting curve to the end of training, before anything is written
    if train_manifest.get("retention"):  # not holding_out's wrapper: this call holds out already
        ret_run = run_retention.__wrapped__(run, None, corpus, seed=config.seed, batch_size=config.batch_size, log=log,
                                            texts=texts)
    ret_files = (RETENTION_RUN_FILE, RETENTION_RUN_CURVE) if ret_run is not None else ()

    out.mkdir(parents=True, exist_ok=True)
    io.manifest_path(out).unlink(missing_ok=True)  # a previous run's: out is incomplete until the new one is written
    for name in (*PROFILE_OUTPUTS, RETENTION_RUN_FILE, RETENTION_RUN_CURVE):  # and none of its outputs is left beside
        (out / name).unlink(missing_ok=True)  # this run's, should it die midway (a report reads them without one)
    io.write_atomic(out / PROFILE_FILE, both.to_parquet)
    io.write_atomic(out / RETENTION_FILE, ret.to_parquet)
    io.write_json_atomic(out / FORECAST_FILE, fc)
    io.write_atomic(out / EVENT_TIME_FILE, curve_et.to_parquet)
    io.write_atomic(out / INSTANCES_FILE, rows.assign(instance_row=rows.index)[
        ["instance_row", "instance_id", "group", "treatment_step", "first_step", "second_step"]].to_parquet)
    io.write_bytes_atomic(out / HEATMAP_PNG, plots.profile_heatmap(prof, title=f"Memorisation profile: {run.name}")
                          if len(prof) else plots.event_time_curve(None))  # no cohort: a figure that says so
    io.write_bytes_atomic(out / EVENT_TIME_PNG, plots.event_time_curve(curve_et, title=f"Event-time curve: {run.name}"))
    io.write_bytes_atomic(out / RETENTION_PNG, plots.retention_curves(curve, title=f"Retention: {run.name}"))
    for name, table in zip(ret_files, ret_run or ()):
        io.write_atomic(out / name, table.to_parquet)
    panel_info = {"ends": panel_rule, "end_step": int(pchk[-1]), "checkpoints": pchk, "residual_step": int(pchk[-1])}
    banded = placebo[placebo["band_lower"].notna()]
    summary = {
        "run": str(run.resolve()), "config": config.to_dict(), "checkpoints": steps,
        "instances": {"treated": int(len(treated)), "control": int((~placebo_mask).sum()),
                      "placebo": int(placebo_mask.sum()), "eligibility": eligibility},
        "panel": panel_info,
        "cohorts": [{"treatment_step": int(g), "base_step": int(prof.attrs["base_steps"][g]),
                     "member_cohorts": prof.attrs["cohorts"][g],
                     "cohort_size": int(prof.loc[prof["treatment_step"] == g, "cohort_size"].iloc[0])}
                    for g in sorted(prof.attrs["base_steps"])],
        "band": {"critical_value": prof.attrs["critical_value"], "confidence": prof.attrs["confidence"],
                 "cells": int(len(prof)), "significant_cells": int(prof["significant"].sum()),
                 "lead_cells": int((prof["event_time"] < 0).sum()),
                 "significant_lead_cells": int((prof["significant"] & (prof["event_time"] < 0)).sum())},
        "memorisation": profile.summarise(prof, final_step=pchk[-1]),
        "event_time_curve": curve_et.to_dict("records"),
        "placebo": profile.summarise(placebo, final_step=pchk[-1]),
        # over the cells with a band (none without the bootstrap: n/a, not 100%)
        "placebo_cells_covering_zero": float((~profile.significant(banded)).mean()) if len(banded) else None,
        "forecast": fc,
    }
    if ret_run is not None:
        summary["retention_run"] = {"design": train_manifest["retention"], "curve": ret_run[1].to_dict("records")}
    io.write_json_atomic(out / SUMMARY, summary)
    io.write_stage_manifest(out, "profile", {"run": str(run.resolve()), "config": config.to_dict(), "panel": panel_info,
                                             "outputs": [*PROFILE_OUTPUTS, *ret_files],
                                             # timing here, not in summary.json: the outputs are deterministic
                                             "timing": {"wall_s": time.perf_counter() - t_start}})
    return summary


def _retention_rows(run: Path, design: dict, seed: int) -> pd.DataFrame:
    """A retention run's items (``design``: :func:`audit.train.retention_design`) by instance id, then the held-out
    instance each is recognised against (drawn seeded, with replacement when too few)."""
    e = int(design["exposure_step"])
    order = pq.read_table(run / ORDER_FILE).to_pandas()
    items = order[order["instance_id"].isin(design["instance_ids"])].sort_values("instance_id")
    if len(items) != len(design["instance_ids"]) or not items["instance_id"].is_unique or (items["step"] > e).any():
        raise ValueError(f"{run}: the retention items are not trained exactly once, at or before step {e}")
    held = pq.read_table(run / HELDOUT_FILE).to_pandas().sort_values("instance_id", kind="stable")  # by instance
    held = held[held["n_tokens"] == int(items["n_tokens"].iloc[0])]
    if len(held) == 0:
        raise ValueError(f"{run}: no full-length held-out instance to use as a foil")
    foils = held.iloc[np.random.default_rng(seed).choice(len(held), size=len(items), replace=len(held) < len(items))]
    return pd.concat([items, foils], ignore_index=True)


@holding_out("out", inputs=("run_dir",))
def run_retention(run_dir, out=None, corpus: list[str] | None = None, *, seed: int = 0, batch_size: int = 64,
                  substitute_fraction: float = 0.25, log=print,
                  texts: dict[tuple[str, int], str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The forgetting curve of a retention run (``memdedup train --retention-items N``, Orhan 2024).

    The manifest's ``retention`` (:func:`audit.train.retention_design`) names the items, their
    exposure step ``e`` (each trained exactly once, at or before ``e``: checked against
    ``order.parquet``) and the probe checkpoints. At each probe checkpoint at or after ``e``
    every item is scored by :mod:`audit.retention`: ``recognition`` against a held-out
    instance (drawn seeded, with replacement when too few), ``recognition_scrambled`` /
    ``recognition_substituted`` against its hard foils (``substitute_fraction`` of the tokens),
    and ``exact_recall`` / ``token_recall`` of its second half from its first half.

    Returns ``(rows, curve)``: one row per probe checkpoint (``treatment_step`` = ``e``,
    ``step``, ``n`` items, the five metrics as fractions) and its
    :func:`audit.retention.retention_curve` (by ``steps_since``, Wilson intervals over the
    items); written to ``out`` (``retention_run.parquet``, ``retention_run_curve.parquet``) when
    given. ValueError: no retention design, or an ``out`` that :func:`run_profile` refuses. ``texts``: the
    items' and foils' document texts by (shard name, row) when read already (:func:`run_profile`'s one read of its
    sampled rows), else read from ``corpus``.
    """
    run = Path(run_dir)
    if out is not None:
        refuse_out(Path(out), [run], "profile")
    manifest = io.json_or_empty(io.manifest_path(run))
    if not (design := manifest.get("retention")):
        raise ValueError(f"{run}: not a retention run (train it with memdedup train --retention-items N)")
    corpus = corpus or manifest.get("corpus")
    if not corpus:
        raise ValueError(f"{run}: no corpus recorded; pass corpus")
    e = int(design["exposure_step"])
    rows = _retention_rows(run, design, seed)
    n = len(design["instance_ids"])
    seq_len = int(rows["n_tokens"].iloc[0])
    ckpts = dict(_checkpoints(run))
    if not (probes := [s for s in design["checkpoints"] if s >= e and s in ckpts]):
        raise ValueError(f"{run}: none of the retention probe checkpoints at or after the exposure step {e} "
                         f"({[s for s in design['checkpoints'] if s >= e]}) is in {CHECKPOINT_DIR}/")
    lm0 = _load_fitting(ckpts[probes[-1]], seq_len)
    lm0.check_tokenizer()  # else every document reads as shorter than its instances
    tokens = _instance_tokens(run, rows, corpus, lm0.tokenizer, manifest.get("config", {}).get("text_column", "text"),
                              texts)
    it = tokens[:n]
    hard = _hard_foils(it, lm0.tokenizer, substitute_fraction, seed)
    half = seq_len // 2
    out_rows = []
    for step in probes:
        lm = _load_fitting(ckpts[step], seq_len)
        loss = _loss(lm, tokens, batch_size)
        rec = {"recognition": retention.recognition(loss[:n], loss[n:])["accuracy"]}
        for k, foil in hard.items():
            rec[f"recognition_{k}"] = retention.recognition(loss[:n], _loss(lm, foil, batch_size))["accuracy"]
        r = retention.recall(lm.greedy_continuations(it, half, batch_size), it[:, half:])
        out_rows.append({"treatment_step": e, "step": int(step), "n": n, **rec,
                         "exact_recall": r["exact_recall"], "token_recall": r["token_recall"]})
        log(f"retention: checkpoint {step} ({step - e} steps after exposure): recognition {rec['recognition']:.2f}, "
            f"exact recall {r['exact_recall']:.2f}")
    ret = pd.DataFrame(out_rows)
    curve = retention.retention_curve(ret)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        for name, table in ((RETENTION_RUN_FILE, ret), (RETENTION_RUN_CURVE, curve)):
            io.write_atomic(Path(out) / name, table.to_parquet)
    return ret, curve
