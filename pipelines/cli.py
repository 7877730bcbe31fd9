"""The ``memdedup`` command line.

Subcommands:
  dedup     deduplicate Parquet/JSONL shards (exact + near duplicates)
  params    show the banding, Bloom sizes and S-curve a dedup run would use
  generate  write a synthetic corpus with planted duplicates (no network needed)
  audit     measure what a causal LM memorized (extraction, membership, duplicates)
  train     train a small GPT-2 deterministically, with checkpoints and the data order
  profile   memorisation profiles, retention and forecasting over a run's checkpoints
  forecast  does one audit's memorized set predict another's? (precision and recall)
  report    self-contained HTML reports of audits, and a side-by-side comparison
  check     check the demo's claims from a workflow output directory
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dedup.config import COMPRESSIONS, EMITS, INDEX_BACKENDS, DedupConfig
from dedup.minhash import SCHEMES

from .config import ConfigError, build, load_yaml, section


def _add_dedup_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("dedup options (override --config; defaults in parentheses)")
    g.add_argument("--threshold", type=float, help="Jaccard threshold T (0.8)")
    g.add_argument("--num-perm", type=int, help="MinHash signature length K (128)")
    g.add_argument("--ngram", type=int, help="shingle length n (5)")
    g.add_argument("--unit", choices=("word", "char"), help="shingle unit (word)")
    g.add_argument("--no-nfkc", dest="nfkc", action="store_const", const=False, help="skip Unicode NFKC")
    g.add_argument("--fp", type=float, help="whole-index false-positive target of the band filters (1e-5)")
    g.add_argument("--exact-fp", type=float, help="false-positive rate of the exact-key filter (1e-6)")
    g.add_argument("--scheme", choices=tuple(SCHEMES), help="MinHash scheme (fss)")
    g.add_argument("--seed", type=int, help="MinHash permutation seed (1)")
    g.add_argument("--index", choices=INDEX_BACKENDS, help="index backend (lshbloom)")
    g.add_argument("--bands", type=int, help="number of bands b (default: optimal for T, K)")
    g.add_argument("--rows", type=int, help="rows per band r (with --bands)")
    g.add_argument("--band-key", choices=("hash", "sum"), help="band key: hash (default) or the reference's sum")
    g.add_argument("--text-column", help="text column (text)")
    g.add_argument("--id-column", help="id column (id; null ids if absent)")
    g.add_argument("--batch-rows", type=int, help="rows per batch (32768)")
    g.add_argument("--capacity", type=int, help="documents to size filters for (default: input rows)")
    g.add_argument("--compression", choices=COMPRESSIONS, help="Parquet compression of outputs (zstd)")
    g.add_argument("--emit", choices=EMITS, help="outputs: all, or removed (removed.parquet + manifest, no kept shards)")


_OPTION_FIELDS = (
    "threshold", "num_perm", "ngram", "unit", "nfkc", "fp", "exact_fp", "scheme", "seed", "index",
    "bands", "rows", "band_key", "text_column", "id_column", "batch_rows", "capacity", "compression", "emit",
)


def dedup_config_from_args(args: argparse.Namespace) -> DedupConfig:
    """CLI flags > ``--config`` YAML ``dedup:`` section > defaults."""
    file_values: dict = {}
    source = "<command line>"
    if getattr(args, "config", None):
        source = str(args.config)
        file_values = section(load_yaml(args.config), "dedup", source)
    overrides = {k: getattr(args, k, None) for k in _OPTION_FIELDS}
    if overrides.get("id_column") is not None:
        overrides["id_column_required"] = True
    return build(DedupConfig, "dedup", file_values, overrides, source)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="memdedup", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("dedup", help="deduplicate Parquet/JSONL shards")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="Parquet/JSONL files, directories or globs")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--config", type=Path, help="YAML file with a 'dedup:' section")
    p.add_argument("--threads", type=int, help="fused engine: threads for sketching and bands (default: all cores)")
    p.add_argument("--force", action="store_true", help="redo a completed run in --out (same config: no-op without it)")
    g = p.add_argument_group("execution (see README: Running on a cluster)")
    g.add_argument("--engine", choices=("auto", "fused", "staged"), default="auto",
                   help="fused: one process; staged: three Dask stages; auto (default): staged when "
                        "--workers/--scheduler/--index-dir is given or the inputs exceed 1 GB")
    g.add_argument("--workers", type=int, help="staged: worker processes of the local cluster (default: cores)")
    g.add_argument("--threads-per-worker", type=int, default=1, help="staged: tasks per worker at once (1)")
    g.add_argument("--scheduler", help="staged: an existing Dask scheduler (tcp://host:port or a scheduler JSON file)")
    g.add_argument("--index-dir", type=Path, help="staged: load the index kept by earlier runs, and keep this run's")
    p.add_argument("--quiet", action="store_true", help="no progress line or summary")
    _add_dedup_options(p)

    p = sub.add_parser("audit", help="measure what a causal LM memorized")
    p.add_argument("--model", required=True, type=Path, help="local Hugging Face model directory")
    p.add_argument("--corpus", required=True, nargs="+", help="corpus shards (files, directories or globs)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--config", type=Path, help="YAML file with an 'audit:' section")
    p.add_argument("--dedup-dir", type=Path, help="dedup output of this corpus (removed rows, config)")
    p.add_argument("--members", type=Path, help="ids of documents the model was trained on (text or Parquet)")
    p.add_argument("--reference", type=Path, help="reference model directory (same tokenizer)")
    p.add_argument("--sequences", type=Path, help="Parquet with a 'tokens' column: audit these instead of sampling")
    g = p.add_argument_group("audit options (override --config; defaults in parentheses)")
    g.add_argument("-n", "--n-sequences", dest="n_sequences", type=int, help="sequences to sample (1000)")
    g.add_argument("--prompt-len", type=int, help="prompt tokens P (32)")
    g.add_argument("--cont-len", type=int, help="continuation tokens C (32)")
    g.add_argument("--offset", choices=("start", "random"), help="where sequences start (start)")
    g.add_argument("--seed", type=int, help="sampling seed (0)")
    g.add_argument("--generate", action="store_const", const=True, help="also run greedy generation (Pythia score)")
    g.add_argument("--k", type=float, help="Min-K%% fraction (0.2)")
    g.add_argument("--batch-size", type=int, help="sequences per forward pass (32)")
    g.add_argument("--n-boot", type=int, help="bootstrap resamples for AUC intervals (1000)")
    g.add_argument("--count-tokens", action="store_const", const=True, help="tokenize the corpus for token retention")

    p = sub.add_parser("train", help="train a small GPT-2 with checkpoints and the data order")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="corpus shards (files, directories or globs)")
    p.add_argument("--out", required=True, type=Path, help="run directory (rerun to resume)")
    p.add_argument("--config", type=Path, help="YAML file with a 'train:' section")
    g = p.add_argument_group("train options (override --config)")
    for flag, typ, hlp in (("--vocab-size", int, "BPE vocabulary (1024)"), ("--n-layer", int, "layers (2)"),
                           ("--n-embd", int, "width (128)"), ("--n-head", int, "heads (4)"),
                           ("--seq-len", int, "tokens per instance (64)"), ("--epochs", int, "epochs (3)"),
                           ("--batch-size", int, "instances per step (16)"), ("--lr", float, "AdamW rate (3e-3)"),
                           ("--seed", int, "seed (0)"), ("--holdout", float, "held-out document fraction (0.1)"),
                           ("--log-checkpoints", int, "log-spaced checkpoints up to this step (64)"),
                           ("--checkpoint-every", int, "then every this many steps (100)")):
        g.add_argument(flag, type=typ, help=hlp)

    p = sub.add_parser("profile", help="memorisation profiles over a run's checkpoints")
    p.add_argument("--run", required=True, type=Path, help="a 'memdedup train' directory (or the same layout)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--corpus", nargs="+", help="corpus shards (default: the one the run recorded)")
    p.add_argument("--config", type=Path, help="YAML file with a 'profile:' section")
    g = p.add_argument_group("profile options (override --config)")
    g.add_argument("--n-treated", type=int, help="trained instances audited (400)")
    g.add_argument("--n-control", type=int, help="held-out instances: control + placebo (200)")
    g.add_argument("--outcome", choices=("surprisal", "accuracy"), help="per-instance outcome (surprisal)")
    g.add_argument("--n-boot", type=int, help="bootstrap resamples (200)")
    g.add_argument("--seed", type=int, help="sampling seed (0)")
    g.add_argument("--early-checkpoint", type=int, help="step of the early audit for forecasting (middle)")

    p = sub.add_parser("forecast", help="precision/recall of one audit's memorized set for another's")
    p.add_argument("first", type=Path, help="audit output of the earlier checkpoint or smaller model (the predictor)")
    p.add_argument("second", type=Path, help="audit output of the final model (the truth)")
    p.add_argument("--out", type=Path, help="write the result as JSON here")

    p = sub.add_parser("report", help="self-contained HTML reports of audits and a side-by-side comparison")
    p.add_argument("audits", nargs="+", type=Path, metavar="AUDIT_DIR", help="'memdedup audit' output directories")
    p.add_argument("--out", required=True, type=Path, help="output directory: <label>.html per audit, comparison.html")
    p.add_argument("--labels", nargs="+", help="one label per audit (default: the directory names)")
    p.add_argument("--dedup-dir", type=Path, help="dedup output of the corpus: retention and removed-document accounting")
    p.add_argument("--profile-dir", nargs="+", type=Path, default=[], metavar="PROFILE_DIR",
                   help="'memdedup profile' outputs, paired with the audits in order (may be fewer)")
    p.add_argument("--model-dir", nargs="+", type=Path, default=[], metavar="MODEL_DIR",
                   help="local Hugging Face tokenizer/model directory to decode token ids: one for all audits, "
                        "or one per audit")
    p.add_argument("--title", help="title of the comparison page")

    p = sub.add_parser("params", help="show banding, filter sizes and the S-curve")
    p.add_argument("--docs", type=int, default=1_000_000, help="number of documents (1e6)")
    p.add_argument("--config", type=Path, help="YAML file with a 'dedup:' section")
    _add_dedup_options(p)

    p = sub.add_parser("generate", help="write a synthetic corpus with planted duplicates")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--docs", type=int, default=20_000)
    p.add_argument("--doc-bytes", type=int, default=1000, help="mean document size in bytes")
    p.add_argument("--exact-frac", type=float, default=0.05)
    p.add_argument("--near-frac", type=float, default=0.10)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--format", default="parquet", choices=("parquet", "jsonl", "jsonl.gz", "jsonl.zst"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--canaries", action="store_true",
                   help="also plant random canaries repeated 1, 2, 4, ..., 64 times (the demo corpus)")
    p.add_argument("--canaries-per-repeat", type=int, default=4)

    p = sub.add_parser("check", help="check the demo's claims from a workflow output directory")
    p.add_argument("out", type=Path, help="the workflow's output directory (config 'out')")
    p.add_argument("--strict", action="store_true", help="exit 1 when a claim does not hold")
    return ap


AUTO_STAGED_BYTES = 1 << 30


def choose_engine(args: argparse.Namespace) -> str:
    """``auto``: staged if any cluster option is given or the inputs exceed 1 GB."""
    if args.engine != "auto":
        return args.engine
    if args.workers or args.scheduler or args.index_dir:
        return "staged"
    from dedup.runs import discover

    total = sum(s.path.stat().st_size for s in discover(args.inputs, exclude=args.out))
    return "staged" if total >= AUTO_STAGED_BYTES else "fused"


def _cmd_dedup(args: argparse.Namespace) -> int:
    from dedup.engine import dedup_files

    from .progress import ProgressLine

    config = dedup_config_from_args(args)
    engine = choose_engine(args)
    if engine == "fused" and args.index_dir:
        raise ConfigError("--index-dir needs the staged engine (--engine staged)")
    if engine == "staged":
        from .staged import run_staged

        log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
        manifest = run_staged(args.inputs, args.out, config, workers=args.workers,
                              threads_per_worker=args.threads_per_worker, scheduler=args.scheduler,
                              index_dir=args.index_dir, force=args.force, log=log)
        if not args.quiet:
            _print_summary(manifest, args.out)
        return 0
    bar = None if args.quiet else ProgressLine("dedup")
    last: dict = {}

    def progress(state: dict) -> None:
        last.update(state)
        if bar is not None:
            bar(state)

    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    manifest = dedup_files(args.inputs, args.out, config, threads=args.threads, force=args.force, progress=progress,
                           log=log)
    if bar is not None:
        bar.close(last or None)
    if not args.quiet:
        _print_summary(manifest, args.out)
    return 0


def _print_summary(m: dict, out: Path) -> None:
    t = m["totals"]
    rows = t["rows"]
    rem = t["removed"]
    timing = m["timing"]
    idx = m["index"]
    print(
        f"{rows:,} rows in {t['shards']} shard(s): kept {t['kept']:,}, removed {rem['exact']:,} exact + "
        f"{rem['near']:,} near ({100 * (rem['exact'] + rem['near']) / max(rows, 1):.2f}%); "
        f"null text {t['null_text']:,}, empty {t['empty_text']:,}"
    )
    print(
        f"{timing['wall_s']:.2f} s, {timing['docs_per_s'] or 0:,.0f} docs/s, {timing['mb_per_s'] or 0:.1f} MB/s; "
        f"index {idx['backend']} b={idx['plan']['bands']} r={idx['plan']['rows']}, "
        f"{idx['bytes_per_doc']['bands']:.1f} B/doc bands + {idx['bytes_per_doc']['exact']:.1f} B/doc exact, "
        f"predicted false-positive rate {idx['predicted_fp']:.2e}"
    )
    print(f"outputs: {out}/kept/, {out}/removed.parquet, {out}/manifest.json")


_AUDIT_FIELDS = ("n_sequences", "prompt_len", "cont_len", "offset", "seed", "generate", "k", "batch_size", "n_boot",
                 "count_tokens")


def _cmd_audit(args: argparse.Namespace) -> int:
    from audit.config import AuditConfig
    from audit.run import run_audit

    file_values, source = {}, "<command line>"
    if args.config:
        source = str(args.config)
        file_values = section(load_yaml(args.config), "audit", source)
    config = build(AuditConfig, "audit", file_values, {k: getattr(args, k) for k in _AUDIT_FIELDS}, source)
    summary = run_audit(args.model, args.corpus, args.out, config, dedup_dir=args.dedup_dir, members=args.members,
                        reference=args.reference, sequences=args.sequences,
                        log=lambda m: print(m, file=sys.stderr, flush=True))
    ex = summary["extractable"]
    print(f"{summary['sequences']['n']} sequences: {ex['k']} extractable ({100 * ex['rate']:.1f}%, "
          f"95% CI {100 * ex['lower']:.1f}-{100 * ex['upper']:.1f}%)")
    for row in summary.get("extractable_by_duplicates", []):
        print(f"  duplicates {row['group']:>7}: {row['k']}/{row['n']} extractable ({100 * row['rate']:.1f}%)")
    if "membership" in summary:
        aucs = ", ".join(f"{k} {v['roc_auc']:.3f}" for k, v in summary["membership"]["scores"].items())
        print(f"  membership ROC-AUC: {aucs}")
    print(f"outputs: {args.out}/per_sequence.parquet, {args.out}/summary.json, {args.out}/manifest.json")
    return 0


def _from_args(cls, name: str, args: argparse.Namespace, fields: tuple[str, ...]):
    file_values, source = {}, "<command line>"
    if getattr(args, "config", None):
        source = str(args.config)
        file_values = section(load_yaml(args.config), name, source)
    return build(cls, name, file_values, {k: getattr(args, k, None) for k in fields}, source)


def _cmd_train(args: argparse.Namespace) -> int:
    from audit.config import TrainConfig
    from audit.lm import train_causal_lm
    from dedup.runs import discover

    fields = ("vocab_size", "n_layer", "n_embd", "n_head", "seq_len", "epochs", "batch_size", "lr", "seed", "holdout",
              "log_checkpoints", "checkpoint_every")
    config = _from_args(TrainConfig, "train", args, fields)
    m = train_causal_lm(discover(args.inputs, exclude=args.out), args.out, config,
                        log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(f"trained {m['steps']} steps on {m['trained_instances']:,} instances of {m['documents']:,} documents "
          f"({m['held_out_documents']:,} held out); final loss {m['final_loss']:.3f}; "
          f"{len(m['checkpoints'])} checkpoints in {args.out}/checkpoints, final model in {args.out}/model")
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from audit.checkpoints import ProfileConfig, run_profile

    config = _from_args(ProfileConfig, "profile", args,
                        ("n_treated", "n_control", "outcome", "n_boot", "seed", "early_checkpoint"))
    s = run_profile(args.run, args.out, config, corpus=args.corpus, log=lambda m: print(m, file=sys.stderr, flush=True))
    mem = s["memorisation"]
    for kind in ("instantaneous", "persistent", "residual"):
        part = mem.get(kind) or {}
        if part.get("effect") is not None and part["effect"] == part["effect"]:  # not NaN
            print(f"{kind:>13} memorisation: {part['effect']:.3f} nats (95% CI {part['lower']:.3f} to {part['upper']:.3f})")
    print(f"placebo cells whose interval covers 0: {100 * (s['placebo_cells_covering_zero'] or 0):.0f}%")
    print(f"outputs in {args.out}: profile.parquet, retention.parquet, forecast.json, PNG plots, summary.json")
    return 0


def _cmd_forecast(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    from audit.forecast import forecast
    from dedup.io import write_json_atomic
    from dedup.shards import InputError

    tables = []
    for d in (args.first, args.second):
        f = d / "per_sequence.parquet"
        if not f.exists():
            raise InputError(d, "not an audit output (no per_sequence.parquet)")
        t = pq.read_table(f).to_pandas()
        t["seen"] = t["member"].fillna(True).astype(bool) if "member" in t.columns else True
        tables.append(t)
    fc = forecast(tables[0], tables[1], key=["doc_id", "token_offset"], flag="extractable",
                  seen_first="seen", seen_second="seen")
    if args.out:
        write_json_atomic(args.out, fc)
    print(f"{fc['n']} sequences seen by both: precision {fc['precision']}, recall {fc['recall']} "
          f"(TP {fc['tp']}, FP {fc['fp']}, FN {fc['fn']}, TN {fc['tn']})")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    import re

    from audit.report import comparison_report, model_report

    audits = list(args.audits)
    labels = list(args.labels) if args.labels else [a.resolve().name or "audit" for a in audits]
    if len(labels) != len(audits):
        raise ConfigError(f"--labels: {len(labels)} labels for {len(audits)} audit directories")
    if not args.labels:  # make default labels distinct: raw/audit, dedup/audit -> audit-1, audit-2
        labels = [f"{lab}-{i + 1}" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"--labels must be distinct, got {labels}")
    files = [re.sub(r"[^A-Za-z0-9._-]+", "_", lab).strip("._") or f"audit-{i + 1}" for i, lab in enumerate(labels)]
    if len(set(files)) != len(files) or "comparison" in files:
        files = [f"{i + 1}-{f}" for i, f in enumerate(files)]
    if len(args.profile_dir) > len(audits):
        raise ConfigError(f"--profile-dir: {len(args.profile_dir)} profiles for {len(audits)} audits")
    if len(args.model_dir) not in (0, 1, len(audits)):
        raise ConfigError(f"--model-dir: give one directory for all audits or one per audit, got {len(args.model_dir)}")
    decoders = [None] * len(audits)
    if args.model_dir:
        from types import SimpleNamespace

        from transformers import AutoTokenizer  # only here: the audit package never loads transformers for reports

        from audit.lm import CausalLM

        def load(m):
            try:
                tok = AutoTokenizer.from_pretrained(str(m), local_files_only=True)
            except (OSError, ValueError):
                return None, None
            # the audit's own fingerprint (summary.json: model.tokenizer_sha256)
            return tok, CausalLM.vocab_fingerprint(SimpleNamespace(tokenizer=tok))

        toks = {}
        for m in args.model_dir:
            toks[m] = load(m)
            if toks[m][0] is None:
                raise ConfigError(f"--model-dir {m}: no usable tokenizer")
        dirs = args.model_dir * len(audits) if len(args.model_dir) == 1 else args.model_dir
        for i, (a, m) in enumerate(zip(audits, dirs)):
            tok, fp = toks[m]
            summary = json.loads((a / "summary.json").read_text(encoding="utf-8")) if (a / "summary.json").exists() else {}
            want = (summary.get("model") or {}).get("tokenizer_sha256")
            if want and fp != want:  # e.g. one --model-dir for models with their own tokenizers
                own = (summary.get("model") or {}).get("path")
                tok, fp = load(own) if own and Path(own).is_dir() else (None, None)
                if tok is not None and fp == want:
                    print(f"note: {a}: the tokenizer of {m} is not the audited model's; decoding with {own}",
                          file=sys.stderr)
                else:
                    print(f"warning: {a}: the tokenizer of {m} is not the audited model's; showing token ids "
                          "(give one --model-dir per audit)", file=sys.stderr)
                    continue
            decoders[i] = lambda ids, t=tok: t.decode(list(ids), skip_special_tokens=False)
    args.out.mkdir(parents=True, exist_ok=True)
    for i, (a, lab, f) in enumerate(zip(audits, labels, files)):
        prof = args.profile_dir[i] if i < len(args.profile_dir) else None
        page = model_report(a, args.out / f"{f}.html", profile_dir=prof, title=f"Memorization audit: {lab}",
                            decode=decoders[i])
        print(f"{lab}: {page} (numbers: {page.with_name(page.stem + '.summary.json')})")
    if len(audits) >= 2:
        page = comparison_report(audits, labels, args.out / "comparison.html", dedup_dir=args.dedup_dir,
                                 title=args.title)
        print(f"comparison: {page} (numbers: {page.with_suffix('.json')})")
    elif args.dedup_dir is not None:
        print("note: --dedup-dir is used by the comparison page, which needs at least two audits", file=sys.stderr)
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    from dedup.params import plan_index

    c = dedup_config_from_args(args)
    plan = plan_index(c.threshold, c.num_perm, args.docs, c.fp, c.bands, c.rows)
    print(json.dumps(plan.to_dict(), indent=2))
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from collections import Counter

    from dedup.io import write_json_atomic
    from dedup.synthetic import generate_corpus, generate_demo_corpus, write_shards

    if args.canaries:
        table = generate_demo_corpus(args.docs, exact_frac=args.exact_frac, near_frac=args.near_frac,
                                     canaries_per_repeat=args.canaries_per_repeat, mean_bytes=args.doc_bytes,
                                     seed=args.seed)
    else:
        table = generate_corpus(args.docs, mean_bytes=args.doc_bytes, exact_frac=args.exact_frac,
                                near_frac=args.near_frac, seed=args.seed)
    paths = write_shards(table, args.out, args.shards, fmt=args.format)
    kinds = Counter(table.column("kind").to_pylist())
    planted = {"documents": table.num_rows, "kinds": dict(kinds), "seed": args.seed,
               "shards": [p.name for p in paths]}
    if args.canaries:
        reps = Counter(r for r, k in zip(table.column("repeats").to_pylist(), table.column("kind").to_pylist())
                       if k == "canary")
        planted["canary_rows_by_repeats"] = {str(r): n for r, n in sorted(reps.items())}
        planted["exact_ids"] = [i for i, k in zip(table.column("id").to_pylist(), table.column("kind").to_pylist())
                                if k == "exact"]
    write_json_atomic(args.out / "manifest.json", planted)
    print(f"wrote {table.num_rows:,} documents in {len(paths)} shard(s) to {args.out} "
          f"({', '.join(f'{v:,} {k}' for k, v in sorted(kinds.items()))})")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from .demo_checks import run_checks

    result = run_checks(args.out)
    for c in result["checks"]:
        print(f"[{'ok' if c['passed'] else 'FAILED'}] {c['name']}: "
              + ", ".join(f"{k}={v}" for k, v in c.items() if k not in ("name", "passed", "missed")))
    print(f"checks written to {args.out}/checks.json")
    return 0 if result["passed"] or not args.strict else 1


def _fail(command: str, message: str) -> int:
    """One line on stderr, exit status 2 (bad input, damaged state, full disk)."""
    print(f"memdedup {command}: error: {' '.join(message.splitlines())}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    from dedup.runs import OutputExistsError
    from dedup.shards import InputError

    import warnings

    warnings.formatwarning = lambda message, category, *rest, **kw: f"memdedup: warning: {message}\n"
    args = _parser().parse_args(argv)
    handlers = {"dedup": _cmd_dedup, "audit": _cmd_audit, "train": _cmd_train, "profile": _cmd_profile,
                "forecast": _cmd_forecast, "params": _cmd_params, "generate": _cmd_generate, "check": _cmd_check,
                "report": _cmd_report}
    try:
        return handlers[args.command](args)
    except (InputError, ConfigError, OutputExistsError, ValueError) as e:
        return _fail(args.command, str(e))
    except OSError as e:  # disk full, permissions: the file and the reason, not a traceback
        where = f"{e.filename}: " if e.filename else ""
        return _fail(args.command, f"{where}{e.strerror or e}")
    except KeyboardInterrupt:
        print(f"memdedup {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
