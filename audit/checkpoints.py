"""Memorisation over training: profiles, retention and forecasting from a trainer's checkpoints.

Input: a ``memdedup train`` directory (or any run laid out the same way: HF checkpoints
under ``checkpoints/step-NNNNNNN/``, ``order.parquet`` and ``heldout.parquet``, see
:mod:`audit.layout` and :func:`audit.train.train_causal_lm`). Users with their own checkpoint suites (e.g. Pythia's)
write those two Parquet files for their data order (README: "Bring your own checkpoints").

Per checkpoint, every audited instance gets its outcome (mean token surprisal, or
teacher-forced accuracy) from one forward pass, and greedy recall of its second half from
its first half. From the panel:

* ``profile.parquet``: difference-in-differences memorisation per (treatment cohort,
  checkpoint) (:func:`audit.profile.did`), plus a placebo cohort of held-out instances
  given a pretend treatment step (its intervals should cover 0);
* ``retention.parquet``: recognition (seen vs foil) and recall per cohort and checkpoint;
* ``forecast.json``: does memorized-at-an-early-checkpoint predict memorized-at-the-end?
* ``profile_heatmap.png``, ``retention_curves.png``, ``summary.json``, ``manifest.json``
  (written last; names in :mod:`audit.layout`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dedup import io
from dedup.runs import discover

from .config import ProfileConfig
from .layout import (CHECKPOINT_DIR, FORECAST_FILE, HEATMAP_PNG, HELDOUT_FILE, ORDER_FILE, PROFILE_FILE,
                     PROFILE_OUTPUTS, RETENTION_FILE, RETENTION_PNG, SUMMARY, checkpoint_step, write_atomic)


def _checkpoints(run: Path) -> list[tuple[int, Path]]:
    ckpts = sorted((checkpoint_step(p), p) for p in (run / CHECKPOINT_DIR).glob("step-*") if p.is_dir())
    if not ckpts:
        raise ValueError(f"{run}: no {CHECKPOINT_DIR}/step-*/ directories")
    return ckpts


def _instance_tokens(run: Path, table: pd.DataFrame, corpus: list[str], tokenizer, text_column: str) -> np.ndarray:
    """Token ids (n, seq_len) of instances, re-tokenized from their documents with the run's
    tokenizer (deterministic, so the ids are those trained on)."""
    shards = discover(corpus)
    by_name = {s.name: s for s in shards}
    from dedup.shards import ShardReader

    need = {}
    for shard, row in zip(table["shard"], table["row"]):
        need.setdefault(shard, set()).add(int(row))
    texts = {}
    for name, rows in need.items():
        if name not in by_name:
            raise ValueError(f"{run}: order names shard {name!r}, not in the corpus {corpus}")
        reader = ShardReader(by_name[name], text_column, None, False, 65536)
        start = 0
        for batch in reader.batches():
            col = reader.text(batch)
            for r in [r for r in rows if start <= r < start + batch.num_rows]:
                texts[(name, r)] = col[r - start].as_py() or ""
            start += batch.num_rows
    keys = list(zip(table["shard"], table["row"].astype(int)))
    ids = tokenizer([texts[k] for k in keys], add_special_tokens=False)["input_ids"]
    n = int(table["n_tokens"].iloc[0])
    return np.array([t[o : o + n] for t, o in zip(ids, table["token_offset"].astype(int))], dtype=np.int64)


def run_profile(run_dir, out, config: ProfileConfig = ProfileConfig(), corpus: list[str] | None = None, log=print) -> dict:
    """Profile a training run's checkpoints; return the summary (also written to ``out``)."""
    from . import plots, profile, retention
    from .forecast import forecast
    from .lm import load_causal_lm

    t_start = time.perf_counter()
    run, out = Path(run_dir), Path(out)
    train_manifest = json.loads(io.manifest_path(run).read_text()) if io.manifest_path(run).exists() else {}
    corpus = corpus or train_manifest.get("corpus")
    if not corpus:
        raise ValueError(f"{run}: no corpus recorded; pass --corpus")
    order = pq.read_table(run / ORDER_FILE).to_pandas()
    held = pq.read_table(run / HELDOUT_FILE).to_pandas()
    ckpts = _checkpoints(run)
    steps = [s for s, _ in ckpts]
    seq_len = int(order["n_tokens"].max())
    rng = np.random.default_rng(config.seed)
    first = order.groupby("instance_id", as_index=False).first()
    first = first[first["n_tokens"] == seq_len]
    if "doc_copies" in first.columns:
        # Only texts trained through this one document: for a duplicated text the first
        # exposure of this copy is not when the content was first trained.
        first = first[first["doc_copies"] == 1]
    first = first[first["first_step"] > steps[0]]  # cohorts need a checkpoint before treatment
    treated = first.iloc[np.sort(rng.permutation(len(first))[: config.n_treated])].copy()
    held = held[held["n_tokens"] == seq_len]
    if len(held) < 4:
        raise ValueError(f"{run}: fewer than 4 full-length held-out instances: train with a holdout fraction")
    controls = held.iloc[np.sort(rng.permutation(len(held))[: config.n_control])].copy()
    placebo_mask = rng.permutation(len(controls)) < len(controls) // 2
    middle = steps[len(steps) // 2]
    rows = pd.concat([
        treated.assign(group="treated", treatment_step=treated["first_step"].astype(float)),
        controls[~placebo_mask].assign(group="control", treatment_step=np.nan),
        controls[placebo_mask].assign(group="placebo", treatment_step=float(middle)),
    ], ignore_index=True)
    lm0 = load_causal_lm(ckpts[-1][1])
    text_column = train_manifest.get("config", {}).get("text_column", "text")
    tokens = _instance_tokens(run, rows, corpus, lm0.tokenizer, text_column)
    half = seq_len // 2
    log(f"profile: {len(treated)} trained, {int((~placebo_mask).sum())} control and {int(placebo_mask.sum())} "
        f"placebo instances over {len(ckpts)} checkpoints")

    panel = []
    for step, path in ckpts:
        lm = load_causal_lm(path)
        stats = lm.score(tokens, config.batch_size)
        outcome = -stats.logprob.mean(axis=1) if config.outcome == "surprisal" else -stats.greedy_match.mean(axis=1)
        gen = lm.generate_greedy(tokens[:, :half], seq_len - half, config.batch_size)
        exact = (gen == tokens[:, half:]).all(axis=1)
        token_recall = (gen == tokens[:, half:]).mean(axis=1)
        panel.append(pd.DataFrame({"instance_id": rows.index, "step": step, "outcome": outcome,
                                   "exact_recall": exact, "token_recall": token_recall,
                                   "loss": -stats.logprob.mean(axis=1)}))
        log(f"profile: checkpoint {step} done")
    panel = pd.concat(panel, ignore_index=True)

    # Difference-in-differences (real cohorts, then the placebo cohort against the controls).
    real = rows["group"] != "placebo"
    prof = profile.did(panel[panel["instance_id"].isin(rows.index[real])][["instance_id", "step", "outcome"]],
                       pd.DataFrame({"instance_id": rows.index[real], "treatment_step": rows["treatment_step"][real]}),
                       n_boot=config.n_boot, seed=config.seed)
    plac = rows["group"] != "treated"
    placebo = profile.did(panel[panel["instance_id"].isin(rows.index[plac])][["instance_id", "step", "outcome"]],
                          pd.DataFrame({"instance_id": rows.index[plac], "treatment_step": rows["treatment_step"][plac]}),
                          n_boot=config.n_boot, seed=config.seed)
    prof["placebo"] = False
    placebo["placebo"] = True
    both = pd.concat([prof, placebo], ignore_index=True)

    # Retention per (cohort, checkpoint): recognition against paired foils, recall.
    treated_idx = rows.index[rows["group"] == "treated"].to_numpy()
    foils = rng.choice(rows.index[rows["group"] != "treated"].to_numpy(), size=treated_idx.size, replace=True)
    t_step = rows.loc[treated_idx, "treatment_step"].to_numpy()
    g_of = np.array([min([s for s in steps if s >= t], default=steps[-1]) for t in t_step])
    wide = {k: panel.pivot(index="instance_id", columns="step", values=k) for k in ("loss", "exact_recall", "token_recall")}
    ret_rows = []
    for g in sorted(set(g_of.tolist())):
        members = treated_idx[g_of == g]
        mfoils = foils[g_of == g]
        for c in steps:
            if c < g:
                continue
            rec = retention.recognition(wide["loss"].loc[members, c].to_numpy(), wide["loss"].loc[mfoils, c].to_numpy())
            ret_rows.append({"treatment_step": g, "step": c, "n": int(members.size),
                             "recognition": rec["accuracy"],
                             "exact_recall": float(wide["exact_recall"].loc[members, c].mean()),
                             "token_recall": float(wide["token_recall"].loc[members, c].mean())})
    ret = pd.DataFrame(ret_rows)
    curve = retention.retention_curve(ret)

    # Forecasting: memorized (exact recall) at an early checkpoint vs the final one,
    # restricted to instances trained on before the early checkpoint.
    early = config.early_checkpoint or min(steps, key=lambda s: abs(s - steps[-1] / 2))
    seen = rows["treatment_step"] <= early
    fc = forecast(
        pd.DataFrame({"seq_key": rows.index, "extractable": wide["exact_recall"][early].loc[rows.index].to_numpy(),
                      "seen": seen.to_numpy()}),
        pd.DataFrame({"seq_key": rows.index, "extractable": wide["exact_recall"][steps[-1]].loc[rows.index].to_numpy(),
                      "seen": (rows["group"] == "treated").to_numpy()}),
        seen_first="seen", seen_second="seen",
    )
    fc["early_step"], fc["final_step"] = early, steps[-1]

    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / PROFILE_FILE, both.to_parquet)
    write_atomic(out / RETENTION_FILE, ret.to_parquet)
    io.write_json_atomic(out / FORECAST_FILE, fc)
    io.write_bytes_atomic(out / HEATMAP_PNG, plots.profile_heatmap(prof, title=f"Memorisation profile: {run.name}"))
    io.write_bytes_atomic(out / RETENTION_PNG, plots.retention_curves(curve, title=f"Retention: {run.name}"))
    summary = {
        "run": str(run.resolve()), "config": config.to_dict(), "checkpoints": steps,
        "instances": {"treated": int(len(treated)), "control": int((~placebo_mask).sum()),
                      "placebo": int(placebo_mask.sum())},
        "memorisation": profile.summarise(prof, final_step=steps[-1]),
        "placebo": profile.summarise(placebo, final_step=steps[-1]),
        "placebo_cells_covering_zero": float((~profile.significant(placebo)).mean()) if len(placebo) else None,
        "forecast": fc,
        "timing_s": time.perf_counter() - t_start,
    }
    io.write_json_atomic(out / SUMMARY, summary)
    io.write_stage_manifest(out, "profile", {"run": str(run.resolve()), "config": config.to_dict(),
                                             "outputs": list(PROFILE_OUTPUTS)})
    return summary
