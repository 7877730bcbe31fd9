"""memdedup: near-duplicate removal at scale, and audits of what causal LMs memorize (the command line).

Stage options come from the config dataclasses (dedup.config.DedupConfig, audit.config's
AuditConfig, TrainConfig and ProfileConfig): flags > the --config file's section > defaults.
With --json, a command prints its manifest or summary as JSON on stdout and nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

from audit.config import AuditConfig, ProfileConfig, TrainConfig
from dedup.config import DedupConfig
from dedup.io import dist_version

from .config import ConfigError, add_options, from_args, given_path, path_arg

# Each stage's YAML section (and options group); params reads dedup's.
SECTIONS = {"dedup": DedupConfig, "audit": AuditConfig, "train": TrainConfig, "profile": ProfileConfig}


def _add_output(p: argparse.ArgumentParser, what: str, quiet: str = "no notes or summary",
                section: str | None = None) -> None:
    """Every command's last options: ``--quiet`` (help ``quiet``), ``--json`` and a stage's config options."""
    p.add_argument("--quiet", action="store_true", help=quiet)
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout instead of the human-readable "
                   "lines (progress and notes stay on stderr)")
    if section:
        add_options(p, SECTIONS[section], section)


class _Parser(argparse.ArgumentParser):
    """Flag errors are one line on stderr and exit status 2, as every other error: no usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="memdedup", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"memdedup {dist_version('memdedup')}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("dedup", help="deduplicate Parquet/JSONL/Arrow shards (exact + near duplicates)")
    p.add_argument("inputs", nargs="+", type=given_path, metavar="INPUT",
                   help="Parquet/JSONL/Arrow files, directories or globs")
    p.add_argument("--out", required=True, type=path_arg, help="output directory")
    p.add_argument("--threads", type=int, help="cores for this run: fused, threads for sketching and bands (default: "
                                               "all cores for sketching, one for the bands); staged, a local cluster "
                                               "of THREADS / --threads-per-worker workers, unless --workers is given")
    p.add_argument("--force", action="store_true", help="redo a completed run in --out (same config: no-op without it)")
    g = p.add_argument_group("execution (see README: Running on a cluster)")
    g.add_argument("--engine", choices=("auto", "fused", "staged"), default="auto",
                   help="fused: one process; staged: three Dask stages; auto (default): staged when "
                        "--workers/--scheduler/--index-dir/--band-splits is given or the inputs exceed 1 GiB")
    g.add_argument("--workers", type=int, help="staged: worker processes of the local cluster (default: from "
                                               "--threads, else the cores this process may use)")
    g.add_argument("--threads-per-worker", type=int, default=1,
                   help="staged: tasks per worker at once (default: %(default)s)")
    g.add_argument("--scheduler", help="staged: an existing Dask scheduler (tcp://host:port or a scheduler JSON file)")
    g.add_argument("--index-dir", type=path_arg,
                   help="staged: load the index kept by earlier runs, and keep this run's")
    g.add_argument("--band-splits", type=int, default=1,
                   help="staged: split each band's task into this many by its filter's cache partitions (each holds "
                        "and probes 1/N of the filter; same decisions; not with --index-dir) (default: %(default)s)")
    _add_output(p, "the run's manifest (manifest.json)", "no progress line, notes or summary", "dedup")

    p = sub.add_parser("audit", help="measure what a causal LM memorized (extraction, membership, duplicates)")
    p.add_argument("--model", required=True, type=path_arg, help="local Hugging Face model directory")
    p.add_argument("--corpus", required=True, nargs="+", type=given_path,
                   help="corpus shards (files, directories or globs)")
    p.add_argument("--out", required=True, type=path_arg, help="output directory")
    p.add_argument("--dedup-dir", type=path_arg, help="dedup output of this corpus (removed rows, config)")
    p.add_argument("--members", type=path_arg, help="ids of documents the model was trained on (a text file of one "
                   "id per line, or Parquet with id or document_id; shard:row without corpus ids)")
    p.add_argument("--reference", type=path_arg,
                   help="reference model directory (its vocabulary must give the audited tokens the same ids)")
    p.add_argument("--sequences", type=path_arg, help="Parquet with a 'tokens' column: audit these instead of sampling")
    _add_output(p, "the audit's summary (summary.json)", "no progress lines (sequences/s, ETA), notes or summary",
                "audit")

    p = sub.add_parser("train", help="train a small GPT-2 deterministically, with checkpoints and the data order")
    p.add_argument("inputs", nargs="+", type=given_path, metavar="INPUT",
                   help="corpus shards (files, directories or globs)")
    p.add_argument("--out", required=True, type=path_arg, help="run directory (rerun to resume)")
    p.add_argument("--replace", action="store_true",
                   help="when --out holds a run of another config or corpus, remove that run's files (others stay) and "
                        "start over (without: refused); a run of the same config and corpus still resumes")
    _add_output(p, "the run's manifest (manifest.json)", "no progress lines (steps/s, ETA), notes or summary", "train")

    p = sub.add_parser("profile", help="memorisation profiles, retention and forecasting over a run's checkpoints")
    p.add_argument("--run", required=True, type=path_arg, help="a 'memdedup train' directory (or the same layout)")
    p.add_argument("--out", required=True, type=path_arg, help="output directory")
    p.add_argument("--corpus", nargs="+", type=given_path, help="corpus shards (default: the one the run recorded)")
    _add_output(p, "the profile's summary (summary.json)",
                "no progress lines (checkpoints/s, ETA), notes or summary", "profile")

    p = sub.add_parser("forecast", help="does one audit's memorized set predict another's? (precision and recall)")
    p.add_argument("first", type=path_arg,
                   help="audit output of the earlier checkpoint or smaller model (the predictor)")
    p.add_argument("second", type=path_arg, help="audit output of the final model (the truth)")
    p.add_argument("--out", type=path_arg, help="write the result as JSON here")
    _add_output(p, "the result")

    p = sub.add_parser("report", help="self-contained HTML reports of audits, and a side-by-side comparison")
    p.add_argument("audits", nargs="+", type=path_arg, metavar="AUDIT_DIR", help="'memdedup audit' output directories")
    p.add_argument("--out", required=True, type=path_arg,
                   help="output directory: <label>.html per audit, comparison.html")
    p.add_argument("--labels", nargs="+", help="one label per audit (default: the directory names)")
    p.add_argument("--dedup-dir", type=path_arg,
                   help="dedup output of the corpus: retention and removed-document accounting")
    p.add_argument("--profile-dir", nargs="+", type=path_arg, default=[], metavar="PROFILE_DIR",
                   help="'memdedup profile' outputs, paired with the audits in order (may be fewer)")
    p.add_argument("--model-dir", nargs="+", type=path_arg, default=[], metavar="MODEL_DIR", help="local Hugging "
                   "Face tokenizer/model directory to decode token ids: one for all audits, or one per audit")
    p.add_argument("--title", help="title of the comparison page")
    p.add_argument("--checks", type=path_arg, metavar="CHECKS_JSON", help="'memdedup check' output (checks.json): the "
                   "comparison page shows its canary exposure by planted copies (Carlini et al. 2019), when present")
    _add_output(p, "the report's manifest (manifest.json)")

    p = sub.add_parser("params", help="show the banding, Bloom sizes and S-curve a dedup run would use",
                       description="The banding, Bloom filter sizes, memory and S-curve a dedup run with these "
                                   "options would use. It takes every dedup option (and a dedup --config file); "
                                   "only threshold, num-perm, bands, rows, fp, exact-fp and capacity change the "
                                   "plan, and index must be lshbloom.")
    p.add_argument("--docs", type=int, default=1_000_000, help="number of documents (default: %(default)s)")
    _add_output(p, "the plan", section="dedup")

    p = sub.add_parser("generate", help="write a synthetic corpus with planted duplicates (no network needed)")
    p.add_argument("--out", required=True, type=path_arg, help="output directory: new, empty, or an earlier generate "
                   "run's (replaced); one holding anything else is refused")
    p.add_argument("--docs", type=int, default=20_000,
                   help="documents, planted duplicates included (not the canaries) (default: %(default)s)")
    p.add_argument("--doc-bytes", type=int, default=1000, help="mean document size in bytes (whole sentences, so "
                   "below ~150 the mean is larger) (default: %(default)s)")
    for kind, default in (("exact", 0.05), ("near", 0.10)):
        p.add_argument(f"--{kind}-frac", type=float, default=default,
                       help=f"fraction of the documents that are {kind} duplicates (default: %(default)s)")
    p.add_argument("--shards", type=int, default=4, help="number of shard files (default: %(default)s)")
    p.add_argument("--format", default="parquet", choices=("parquet", "jsonl", "jsonl.gz", "jsonl.zst"),
                   help="shard format (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the whole corpus (default: %(default)s)")
    p.add_argument("--canaries", action="store_true",
                   help="also plant random canaries repeated 1, 2, 4, ..., 64 times (the demo corpus)")
    p.add_argument("--canaries-per-repeat", type=int,
                   help="with --canaries: canaries planted for each repeat count (default: 4)")
    _add_output(p, "the planted corpus's manifest (manifest.json)")

    p = sub.add_parser("check", help="check the demo's claims from a workflow output directory")
    p.add_argument("out", type=path_arg, help="the workflow's output directory (config 'out')")
    p.add_argument("--strict", action="store_true", help="exit 1 when a claim does not hold")
    _add_output(p, "the checks (checks.json)")
    return ap


def _cmd_dedup(args: argparse.Namespace) -> int:
    from dedup.bloom import VERSION as BLOOM_VERSION
    from dedup.engine import dedup_files
    from dedup.runs import discover

    from .progress import ProgressLine

    config = from_args(args)
    for flag, n in (("--workers", args.workers), ("--threads-per-worker", args.threads_per_worker),
                    ("--threads", args.threads)):
        if n is not None and n < 1:
            raise ConfigError(f"{flag} must be >= 1, got {n}")
    if args.workers and args.scheduler:
        raise ConfigError("--workers sizes a local cluster; with --scheduler the workers are that scheduler's")
    engine = args.engine
    if engine == "auto":  # staged for any cluster option, or inputs of 1 GiB (2^30 bytes) or more
        cluster = args.workers or args.scheduler or args.index_dir or args.band_splits > 1
        staged = cluster or sum(s.path.stat().st_size for s in discover(args.inputs, exclude=args.out)) >= 1 << 30
        engine = "staged" if staged else "fused"
    if engine == "staged" and args.threads and not (args.workers or args.scheduler) \
            and args.threads_per_worker > args.threads:
        raise ConfigError(f"--threads-per-worker {args.threads_per_worker} exceeds --threads {args.threads}, the "
                          "cores of the staged engine's local cluster")
    if args.band_splits < 1:
        raise ConfigError(f"--band-splits must be >= 1, got {args.band_splits}")
    for flag, given in (("--workers", args.workers), ("--scheduler", args.scheduler), ("--index-dir", args.index_dir),
                        ("--band-splits", args.band_splits > 1)):
        if engine == "fused" and given:
            raise ConfigError(f"{flag} needs the staged engine (--engine staged)")
    if engine == "staged":
        from .staged import run_staged

        workers = args.workers or (args.threads and max(1, args.threads // args.threads_per_worker))
        manifest = run_staged(args.inputs, args.out, config, workers=workers,
                              threads_per_worker=args.threads_per_worker, scheduler=args.scheduler,
                              index_dir=args.index_dir, force=args.force, log=_log(args), band_splits=args.band_splits)
    else:
        bar = None if args.quiet else ProgressLine("dedup")
        manifest = dedup_files(args.inputs, args.out, config, threads=args.threads, force=args.force, progress=bar,
                               log=_log(args))
        if bar is not None:
            bar.close()
    rows, index = manifest["totals"]["rows"], manifest["index"]
    if args.index_dir:  # a growing index holds its rate (by chance a little over), but for earlier filters' floor
        cause = any(v < BLOOM_VERSION for r in index["bands"].values() for v in r.get("bloom_versions", ()))
    else:  # full filters: unrelated documents collide
        cause = config.capacity and rows > config.capacity
    if index["predicted_fp"] > index["plan"]["total_fp"] and cause:
        rate = f"predicted false-positive rate {index['predicted_fp']:.3g} (target {index['plan']['total_fp']:g})"
        warnings.warn(f"the index's {rate}: it holds filters built before Bloom format version 3, whose rate has a "
                      "floor (README: Incremental dedup); rebuild the index to be rid of it" if args.index_dir else
                      f"{rows:,} documents in an index sized for --capacity {config.capacity:,}: {rate}, so "
                      "unrelated documents are removed as near duplicates; raise --capacity, or leave it unset")
    _emit(args, manifest, lambda: _print_summary(manifest, args.out))
    return 0


def _print_summary(m: dict, out: Path) -> None:
    t, timing, idx = m["totals"], m["timing"], m["index"]
    rows, rem = t["rows"], t["removed"]
    print(f"{rows:,} rows in {t['shards']} shard(s): kept {t['kept']:,}, removed {rem['exact']:,} exact + "
          f"{rem['near']:,} near ({100 * (rem['exact'] + rem['near']) / max(rows, 1):.2f}%); "
          f"null text {t['null_text']:,}, empty {t['empty_text']:,}")
    print(f"{timing['wall_s']:.2f} s, {timing['docs_per_s'] or 0:,.0f} docs/s, {timing['mb_per_s'] or 0:.1f} MB/s; "
          f"index {idx['backend']} b={idx['plan']['bands']} r={idx['plan']['rows']}, "
          f"{idx['bytes_per_doc']['bands']:.1f} B/doc bands + {idx['bytes_per_doc']['exact']:.1f} B/doc exact, "
          f"predicted false-positive rate {idx['predicted_fp']:.2e}")
    kept = "" if m["config"].get("emit") == "removed" else f"{out}/kept/, "  # --emit removed writes no kept/
    print(f"outputs: {kept}{out}/removed.parquet, {out}/manifest.json")


def _cmd_audit(args: argparse.Namespace) -> int:
    from audit.run import run_audit

    from .progress import phase_progress

    summary = run_audit(args.model, args.corpus, args.out, from_args(args), dedup_dir=args.dedup_dir,
                        members=args.members, reference=args.reference, sequences=args.sequences, log=_log(args),
                        progress=phase_progress("audit", args.quiet))
    _emit(args, summary, lambda: _print_audit(summary, args.out))
    return 0


def _print_audit(summary: dict, out: Path) -> None:
    n, ex = summary["sequences"]["n"], summary["extractable"]  # rates count distinct sequences
    of = (f", {ex['n']} distinct", " of the distinct") if ex["n"] != n else ("", "")
    print(f"{n} sequences{of[0]}: {ex['k']} extractable ({100 * ex['rate']:.1f}%{of[1]}, "
          f"95% CI {100 * ex['lower']:.1f}-{100 * ex['upper']:.1f}%)")
    for row in summary.get("extractable_by_duplicates", []):
        print(f"  duplicates {row['group']:>7}: {row['k']}/{row['n']} extractable ({100 * row['rate']:.1f}%)")
    if "membership" in summary:
        aucs = ", ".join(f"{k} {v['roc_auc']:.3f}" for k, v in summary["membership"]["scores"].items())
        print(f"  membership ROC-AUC: {aucs}")
    print(f"outputs: {out}/per_sequence.parquet, {out}/summary.json, {out}/manifest.json")


def _cmd_train(args: argparse.Namespace) -> int:
    from audit.train import train_causal_lm
    from dedup.runs import discover

    from .progress import phase_progress

    config = from_args(args)
    m = train_causal_lm(discover(args.inputs, exclude=args.out), args.out, config, log=_log(args),
                        progress=phase_progress("train", args.quiet), replace=args.replace)
    loss = "n/a" if m["final_loss"] is None else f"{m['final_loss']:.3f}"  # None: a run resumed from an older state
    _emit(args, m, lambda: print(
        f"trained {m['steps']} steps on {m['trained_instances']:,} instances of {m['documents']:,} documents "
        f"({m['held_out_documents']:,} held out); final loss {loss}; "
        f"{len(m['checkpoints'])} checkpoints in {args.out}/checkpoints, final model in {args.out}/model"))
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from audit.checkpoints import run_profile

    s = run_profile(args.run, args.out, from_args(args), corpus=args.corpus, log=_log(args))
    _emit(args, s, lambda: _print_profile(s, args.out))
    return 0


def _print_profile(s: dict, out: Path) -> None:
    def number(x) -> bool:  # neither None nor NaN (--n-boot 0: no intervals, no band)
        return x is not None and x == x

    for kind in ("instantaneous", "persistent", "residual"):
        part = s["memorisation"].get(kind) or {}
        if number(part.get("effect")):
            ci = f" (95% CI {part['lower']:.3f} to {part['upper']:.3f})" if number(part.get("lower")) else ""
            print(f"{kind:>13} memorisation: {part['effect']:.3f} nats{ci}")
    if (band := s.get("band")) and not number(band.get("critical_value")):
        why = "no bootstrap draws: --n-boot 0" if (s.get("config") or {}).get("n_boot") == 0 else "no cell to test"
        print(f"simultaneous 95% band: none ({why})")
    elif band:
        print(f"simultaneous 95% band (critical value {band['critical_value']:.2f}): {band['significant_cells']} of "
              f"{band['cells']} cells significant; lead cells significant: {band['significant_lead_cells']} of "
              f"{band['lead_cells']} (0 expected)")
    plac = s["placebo_cells_covering_zero"]
    print(f"placebo cells whose band covers 0: {'n/a (no band)' if plac is None else f'{100 * plac:.0f}%'}")
    print(f"outputs in {out}: profile.parquet, retention.parquet, forecast.json, PNG plots, summary.json")


def _cmd_forecast(args: argparse.Namespace) -> int:
    from audit.forecast import forecast_audits
    from audit.layout import training_run
    from dedup.io import read_manifest, write_json_atomic
    from dedup.runs import refuse_out_in_inputs

    if args.out:
        refuse_out_in_inputs(args.out, [args.first, args.second])
        if args.out.is_dir():
            raise ConfigError(f"--out {args.out} is a directory; give the path of the JSON file to write")
    fc = forecast_audits(args.first, args.second)
    if args.out:  # nor inside the training run whose order.parquet it read (checked above: a finished audit's)
        models = [read_manifest(d).get("model") for d in (args.first, args.second)]
        refuse_out_in_inputs(args.out, [r for m in models if m and (r := training_run(m)) is not None])
        write_json_atomic(args.out, fc)
    rate = {k: "n/a" if fc[k] is None else f"{fc[k]:.3f}" for k in ("precision", "recall")}  # None: nothing to divide
    _emit(args, fc, lambda: print(f"{fc['n']} sequences seen by both: precision {rate['precision']}, "
                                  f"recall {rate['recall']} (TP {fc['tp']}, FP {fc['fp']}, FN {fc['fn']}, "
                                  f"TN {fc['tn']})\nseen: {fc['seen']}"))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from audit.report.run import write_report

    manifest = write_report(args.audits, args.out, labels=args.labels, dedup_dir=args.dedup_dir,
                            profile_dirs=args.profile_dir, model_dirs=args.model_dir, title=args.title,
                            checks=args.checks, log=_log(args))

    def human() -> None:
        for p in [*manifest["pages"], *filter(None, [manifest["comparison"]])]:
            print(f"{p.get('label', 'comparison')}: {args.out / p['page']} (numbers: {args.out / p['numbers']})")

    _emit(args, manifest, human)
    return 0


def _documents(n: int) -> str:
    """``1 document``, ``2,000 documents``."""
    return f"{n:,} document{'s' * (n != 1)}"


def _bytes(n: float) -> str:
    """Binary units, as the README's memory tables."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} bytes"


def _cmd_params(args: argparse.Namespace) -> int:
    from dedup.params import PART_BYTES, bloom_fp, bloom_parts, bloom_size, plan_index
    from dedup.scalable import CHUNK_BYTES_PER_KEY, TASK_BASE_BYTES, chunk_keys

    c = from_args(args)
    if args.docs < 1:
        raise ConfigError(f"--docs must be >= 1, got {args.docs}")
    if c.index != "lshbloom":
        raise ConfigError(f"params plans LSHBloom indexes (Bloom filters per band); --index {c.index} keeps bucket "
                          "tables instead")
    # as dedup sizes them: for --capacity when given, else for the documents
    plan = plan_index(c.threshold, c.num_perm, c.capacity or args.docs, c.fp, c.bands, c.rows)
    exact_bits, exact_k = bloom_size(plan.capacity, c.exact_fp)
    parts = bloom_parts(plan.band_bits)
    task_bits = max(plan.band_bits, exact_bits)  # the exact key's task is one of the band stage's too
    chunk = min(chunk_keys(bloom_parts(task_bits)), args.docs)  # a chunk never holds more keys than the corpus
    band_task = task_bits // 8 + chunk * CHUNK_BYTES_PER_KEY + TASK_BASE_BYTES
    payload = {**plan.to_dict(), "docs": args.docs, "predicted_fp_at_docs": plan.predicted_fp(args.docs),
               "band_parts": parts, "exact_fp": c.exact_fp, "exact_bits": exact_bits, "exact_k": exact_k,
               "band_task_bytes": band_task}

    def human() -> None:
        at_capacity = f" at {plan.capacity:,} documents, --capacity" if plan.capacity != args.docs else ""
        docs = _documents(args.docs)
        layout = "one part" if parts == 1 else f"{parts:,} cache parts of ~{_bytes(PART_BYTES)} each"
        rows = [("banding", f"{plan.bands} bands x {plan.rows} rows ({plan.bands * plan.rows} of {plan.num_perm} "
                            f"permutations), T = {plan.threshold}"),
                ("band filters", f"{plan.bands} x {_bytes(plan.band_bits / 8)} = {_bytes(plan.index_bytes)} "
                                 f"({plan.index_bytes / args.docs:.1f} bytes/document), k = {plan.band_k}, {layout}"),
                ("exact-key filter", f"{_bytes(exact_bits / 8)} ({exact_bits / 8 / args.docs:.1f} bytes/document), "
                                     f"k = {exact_k}, FP {c.exact_fp:g} (labels; decides documents without words)"),
                ("band task memory", f"~{_bytes(band_task)} (staged engine: one filter, chunks of {chunk:,} keys at "
                                     f"~{CHUNK_BYTES_PER_KEY} bytes, ~{_bytes(TASK_BASE_BYTES)} of Python and Arrow; "
                                     "plus one shard's keys; --band-splits N: the filter's share / N)"),
                ("false positives", f"{bloom_fp(args.docs, plan.band_bits, plan.band_k):.3g} per band, "
                                    f"{plan.predicted_fp(args.docs):.3g} whole index at {docs} (targets "
                                    f"{plan.band_fp:.3g} and {plan.total_fp:g}{at_capacity})")]
        width = max(len(k) for k, _ in rows)
        sized = f" (filters sized for --capacity {plan.capacity:,})" if plan.capacity != args.docs else ""
        print(f"memdedup params for {docs}{sized}")
        for k, v in rows:
            print(f"  {k:<{width}}  {v}")
        print(f"  {'S-curve':<{width}}  {'Jaccard':<12}" + "".join(f"{s:>9}" for s in plan.curve))
        print(f"  {'':<{width}}  {'P(candidate)':<12}" + "".join(f"{p:>9.2g}" for p in plan.curve.values()))

    _emit(args, payload, human)
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from dedup.io import write_json_atomic
    from dedup.runs import refuse_unusable_out
    from dedup.synthetic import generate_corpus, write_shards

    from .demo import CORPUS_MANIFEST, generate_demo_corpus, planted_manifest, prepare_corpus_dir

    for flag, value, least in (("--docs", args.docs, 0), ("--doc-bytes", args.doc_bytes, 1),
                               ("--shards", args.shards, 1), ("--exact-frac", args.exact_frac, 0),
                               ("--near-frac", args.near_frac, 0),
                               ("--canaries-per-repeat", args.canaries_per_repeat or 0, 0), ("--seed", args.seed, 0)):
        if not value >= least:  # NaN too
            raise ConfigError(f"{flag} must be >= {least}, got {value:g}")
    if not args.exact_frac + args.near_frac < 1:
        raise ConfigError(f"--exact-frac + --near-frac must be < 1 (the rest are originals), got "
                          f"{args.exact_frac:g} + {args.near_frac:g}")
    if args.canaries_per_repeat is not None and not args.canaries:
        raise ConfigError("--canaries-per-repeat plants canaries only with --canaries")
    refuse_unusable_out(args.out)
    prepare_corpus_dir(args.out)
    if args.canaries:  # (generate_demo_corpus's own default unless given)
        given = {} if args.canaries_per_repeat is None else {"canaries_per_repeat": args.canaries_per_repeat}
        table = generate_demo_corpus(args.docs, exact_frac=args.exact_frac, near_frac=args.near_frac,
                                     mean_bytes=args.doc_bytes, seed=args.seed, **given)
    else:
        table = generate_corpus(args.docs, mean_bytes=args.doc_bytes, exact_frac=args.exact_frac,
                                near_frac=args.near_frac, seed=args.seed)
    made = not args.out.exists()
    try:
        paths = write_shards(table, args.out, args.shards, fmt=args.format)
        planted = planted_manifest(table, args.seed, paths, canaries=args.canaries)
        write_json_atomic(args.out / CORPUS_MANIFEST, planted)
    except BaseException:  # Ctrl-C, a full disk: no shards without a manifest, which dedup would read as a corpus
        prepare_corpus_dir(args.out)
        if made and args.out.is_dir():
            args.out.rmdir()
        raise
    kinds = ", ".join(f"{v:,} {k}" for k, v in sorted(planted["kinds"].items()))
    _emit(args, planted, lambda: print(f"wrote {_documents(table.num_rows)} in {len(paths)} shard(s) to {args.out}"
                                       + (f" ({kinds})" if kinds else "")))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from dedup.io import undecodable
    from dedup.runs import refuse_unusable_out

    from .demo import run_checks

    # check reads OUT: a file is "not a directory", not refuse_unusable_out's "choose another output directory"
    if not args.out.is_dir() and not undecodable(args.out):  # (before run_checks holds it, which would make it)
        raise ConfigError(f"{args.out}: not a directory (give the workflow's output directory, config 'out')")
    refuse_unusable_out(args.out)  # a name not UTF-8
    result = run_checks(args.out)

    def human() -> None:
        for c in result["checks"]:
            if c["passed"] is None:
                print(f"[n/a] {c['name']}: {c['not_applicable']}")
                continue
            print(f"[{'ok' if c['passed'] else 'FAILED'}] {c['name']}: "
                  + ", ".join(f"{k}={v}" for k, v in c.items() if k not in ("name", "passed", "missed")))
        for model, e in (result.get("exposure_by_copies") or {}).items():
            if "by_copies" not in e:
                print(f"exposure of the canaries ({model} model): not computed ({e.get('error')})")
                continue
            print(f"exposure of the canaries ({model} model; log2|R| = {e['log2_space']:.0f} bits): "
                  + ", ".join(f"{r['copies']}x {r['mean_exposure']:.1f}" for r in e["by_copies"]))
        print(f"checks written to {args.out}/checks.json")

    _emit(args, result, human)
    return 0 if result["passed"] or not args.strict else 1


def _fail(command: str, message: str) -> int:
    """One line on stderr, exit status 2 (bad input, damaged state, full disk)."""
    print(f"memdedup {command}: error: {' '.join(message.splitlines())}", file=sys.stderr)
    return 2


def _log(args: argparse.Namespace) -> Callable[[str], None]:
    """Notes on stderr, or nothing under ``--quiet``."""
    return (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))


def _emit(args: argparse.Namespace, payload: dict, human: Callable[[], object]) -> None:
    """``payload`` as JSON under ``--json`` (:func:`main` writes it to stdout at the end), else ``human()``
    unless ``--quiet``."""
    if args.json:
        from dedup.io import json_text

        args.json_out.write(json_text(payload))
    elif not args.quiet:
        human()


@contextlib.contextmanager
def _stdout_to_stderr():
    """Stdout meanwhile goes to stderr, also at the file descriptor (C libraries, Dask workers): under
    ``--json`` stdout carries the JSON alone."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        fd, err = sys.stdout.fileno(), sys.stderr.fileno()
        saved = os.dup(fd)
        os.dup2(err, fd)
    except (AttributeError, ValueError, io.UnsupportedOperation):  # a replaced stream (tests)
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, fd)
            os.close(saved)


@contextlib.contextmanager
def _each_warning_once():
    """Each warning shown once (a run reads an input's schema more than once, and Python's registry lets
    repeats through whenever any code changes the warning filters)."""
    shown, seen = warnings.showwarning, set()

    def show(message, category, filename, lineno, file=None, line=None):
        if (category, str(message)) not in seen:
            seen.add((category, str(message)))
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


class _Terminated(KeyboardInterrupt):
    """SIGTERM (kill, Slurm's scancel and time limit, Snakemake stopping its jobs) stops a command as Ctrl-C
    does: its cleanup runs (dedup: the fused engine clears OUT, the staged one keeps its finished tasks)."""


def _terminate(signum, frame):
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    from dedup.io import InUseError
    from dedup.runs import OutputExistsError

    from .staged import ClusterError

    for name in ("stdout", "stderr"):  # closed at start (2>&-): None in Python; what goes there now goes nowhere
        if getattr(sys, name) is None:  # (and the descriptor is taken, so no file opened later becomes it)
            setattr(sys, name, open(os.devnull, "w"))
    warnings.formatwarning = lambda message, category, *rest, **kw: f"memdedup: warning: {message}\n"
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the command's parser, as its other flag errors are; those before the command, by ours
        given = sys.argv[1:] if argv is None else list(argv)
        if early := [a for a in unknown if a in given[:given.index(args.command)]]:
            parser.error(f"unrecognized arguments: {' '.join(early)} (options go after the command: "
                         f"memdedup {args.command} ... {' '.join(early)})")
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    handlers = {"dedup": _cmd_dedup, "audit": _cmd_audit, "train": _cmd_train, "profile": _cmd_profile,
                "forecast": _cmd_forecast, "params": _cmd_params, "generate": _cmd_generate, "check": _cmd_check,
                "report": _cmd_report}
    args.json_out = io.StringIO()
    # the handler before ours (None: not ours to set, off the main thread; or one set from C, not restorable)
    on_term = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        with _stdout_to_stderr() if args.json else contextlib.nullcontext(), _each_warning_once():
            if args.command in ("audit", "train", "profile", "check"):  # check: the canary exposure loads both models
                from transformers.utils import logging as hf_logging  # our progress lines replace its bars

                hf_logging.set_verbosity_error()
                hf_logging.disable_progress_bar()
            return handlers[args.command](args)
    except (ValueError, OutputExistsError, InUseError, ClusterError) as e:  # InputError, ConfigError: ValueErrors
        return _fail(args.command, str(e))
    except MemoryError as e:  # numpy's says how much it could not allocate
        return _fail(args.command, f"out of memory: {e}; lower what sizes it (dedup: --capacity, --batch-rows, "
                                   "--threads; audit, train, profile: --batch-size and the model; generate: --docs, "
                                   "--doc-bytes)")
    except BrokenPipeError:  # the reader of stdout stopped (| head): no error of ours, and nothing more to say
        _quiet_stdout()
        return 141  # 128 + SIGPIPE, as a shell reports a writer the pipe stopped
    except OSError as e:  # disk full, permissions: the file and the reason, not a traceback
        where = f"{e.filename}: " if e.filename else ""
        if e.strerror is None and isinstance(e, FileNotFoundError):  # pyarrow's: the path alone, no reason
            return _fail(args.command, f"{where}{e}: No such file or directory")
        return _fail(args.command, f"{where}{e.strerror or e}")
    except KeyboardInterrupt as e:
        # 130 also after the manifest is written: the user did interrupt, and a rerun redoes nothing
        term = isinstance(e, _Terminated)
        print(f"memdedup {args.command}: {'terminated' if term else 'interrupted'}", file=sys.stderr)
        return 143 if term else 130  # 128 + the signal, as a shell reports it
    finally:
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)
        if args.json_out.tell():
            try:
                sys.stdout.write(args.json_out.getvalue())
                sys.stdout.flush()
            except BrokenPipeError:
                _quiet_stdout()


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: its reader is gone, and Python's flush at exit would complain."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
