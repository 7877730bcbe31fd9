"""Scale benchmark: throughput and memory per stage from 10^5 to 10^7 documents, and the
road to 10^10.

    .venv/bin/python bench/scale_bench.py                          # 1e5, 1e6, 1e7 documents of ~1 KB
    .venv/bin/python bench/scale_bench.py --sizes 100000 1000000   # what a shorter run allows
    .venv/bin/python bench/scale_bench.py --project                # only the projection, from the last results

The corpus is generated once into ``--data`` (default ``~/.cache/memdedup-bench/scale``) as
shards of 50,000 ~1 KB documents (:func:`dedup.synthetic.generate_corpus`, seed 1000 + i for
shard i) and reused: a size of N documents is the first N / 50,000 shards (hard links in a
directory of their own), so a larger corpus has more shards, not larger ones. Per size:

* ``stages``: each stage of the staged engine in its own process, its tasks one after the
  other on one core, as one Dask worker runs them: sketch (per shard), band (per band and
  the exact key), write (per shard). GNU time gives wall and CPU seconds and peak RSS; the
  claims to check are that docs per CPU-second stay flat as the corpus grows 100x, and that
  peak RSS is the interpreter plus one shard (sketch, write) or one band's filter plus one
  shard's keys (band), not a function of the corpus size.
* ``fused``: ``memdedup dedup --engine fused --threads 1`` on one core: peak RSS = the
  interpreter + one batch + every band filter.
* ``staged``: ``memdedup dedup --engine staged --workers 2`` (a 2-worker LocalCluster; wall
  time, start-up included; peak RSS of the largest process, client or worker).

Outputs of each run are deleted once measured (disk: the 10^7 corpus takes ~6 GB, a run's
outputs as much again). ``--project`` turns the measured per-document CPU costs of the
largest size into the README's projection for 10^8, 10^9 and 10^10 documents.

Writes ``OUT/scale_bench.json`` and ``OUT/scale_bench.md`` (default OUT: bench/results).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARD_DOCS = 50_000
CORE = 0


def run_stage(stage: str, corpus: Path, out: Path) -> None:
    """In this process: run one stage over the whole corpus, task after task."""
    from dedup import stages as st
    from dedup.config import DedupConfig
    from dedup.params import optimal_param, per_band_fp
    from dedup.runs import discover, work_dir
    from dedup.scalable import FilterStack

    config = DedupConfig()
    shards = discover([corpus])
    bands, rows = optimal_param(config.threshold, config.num_perm)
    work = work_dir(out) / "bench"  # the run's own directory (dedup.runs.RunPlan.work)
    work.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    tasks = []
    if stage == "sketch":
        for s in shards:
            c = time.process_time()
            st.sketch_shard(s, config, bands, rows, work)
            tasks.append(time.process_time() - c)
    else:
        infos = [json.loads(st.done_path(st.sketch_path(work, s)).read_text()) for s in shards]
        total = sum(i["rows"] for i in infos)
        if stage == "band":
            for b in [*range(bands), st.EXACT_BAND]:
                fp = config.exact_fp if b == st.EXACT_BAND else per_band_fp(config.fp, bands)
                c = time.process_time()
                st.band_pass(b, shards, work, FilterStack(fp, total), total)
                tasks.append(time.process_time() - c)
        else:
            start = 0
            for s, i in zip(shards, infos):
                c = time.process_time()
                st.write_shard(s, config, bands, start, work)
                tasks.append(time.process_time() - c)
                start += i["rows"]
    print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "tasks": tasks}))


def measured(cmd: list[str], pin: bool = True) -> dict:
    """Wall and CPU seconds (user + sys of the command and its waited-for children) and the
    peak RSS of its largest process, from GNU time; stdout."""
    gnu_time = shutil.which("time") or "/usr/bin/time"

    def pin_core() -> None:
        if pin and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {CORE})

    t0 = time.perf_counter()
    p = subprocess.run([gnu_time, "-f", "MEASURED=%M %U %S", *cmd], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_NUM_THREADS": "1"}, preexec_fn=pin_core)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{p.stderr[-3000:]}")
    rss_kb, user, system = [x for x in p.stderr.splitlines() if x.startswith("MEASURED=")][-1].split("=")[1].split()
    return {"wall": wall, "cpu": float(user) + float(system), "rss_mb": int(rss_kb) / 1024, "stdout": p.stdout}


def ensure_corpus(data: Path, n_docs: int) -> list[Path]:
    """Shards s00000.parquet ... covering ``n_docs`` documents, generated once (each shard
    written under a temporary name, then renamed: an interrupted run resumes)."""
    from dedup.synthetic import generate_corpus, write_shards

    data.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(math.ceil(n_docs / SHARD_DOCS)):
        p = data / f"s{i:05d}.parquet"
        if not p.exists():
            t0 = time.perf_counter()
            tmp = data / f".gen-{os.getpid()}-{i}"
            write_shards(generate_corpus(SHARD_DOCS, mean_bytes=1000, seed=1000 + i), tmp, 1)
            os.replace(tmp / "part-00000.parquet", p)
            shutil.rmtree(tmp, ignore_errors=True)
            print(f"  generated {p.name} ({time.perf_counter() - t0:.1f} s)", flush=True)
        paths.append(p)
    return paths


def view(data: Path, shards: list[Path], n_docs: int) -> Path:
    """A directory holding (hard links to) the first shards, ``n_docs`` documents in all."""
    d = data / f"view-{n_docs}"
    want = shards[: math.ceil(n_docs / SHARD_DOCS)]
    if not d.exists() or len(list(d.glob("*.parquet"))) != len(want):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        for s in want:
            os.link(s, d / s.name)
    return d


def bench_size(n: int, corpus: Path, tmp: Path, modes: set[str], workers: int) -> list[dict]:
    rows = []
    text_mb = sum(p.stat().st_size for p in corpus.glob("*.parquet")) / 2**20

    def row(what, m, extra=None):
        r = {"docs": n, "what": what, "wall_s": m["wall"], "cpu_s": m["cpu"], "docs_per_cpu_s": n / m["cpu"],
             "docs_per_wall_s": n / m["wall"], "peak_rss_mb": m["rss_mb"], "corpus_file_mb": text_mb, **(extra or {})}
        rows.append(r)
        print(f"  {n:>11,} {what:<16} wall {m['wall']:8.1f} s cpu {m['cpu']:8.1f} s {n / m['cpu']:>9,.0f} docs/cpu-s "
              f"{n / m['wall']:>9,.0f} docs/s  peak RSS {m['rss_mb']:7.0f} MB", flush=True)

    if "stages" in modes:
        work = tmp / f"stages-{n}"
        for stage in ("sketch", "band", "write"):
            m = measured([sys.executable, "bench/scale_bench.py", "--stage", stage, "--corpus", str(corpus),
                          "--work", str(work)])
            info = json.loads(m["stdout"].strip().splitlines()[-1])
            tasks = info["tasks"]
            row(f"stage {stage}", m, {"tasks": len(tasks), "task_cpu_s_median": statistics.median(tasks),
                                      "task_cpu_s_max": max(tasks), "tasks_cpu_s": sum(tasks)})
        shutil.rmtree(work, ignore_errors=True)
    if "fused" in modes:
        out = tmp / f"fused-{n}"
        m = measured([sys.executable, "-m", "pipelines.cli", "dedup", str(corpus), "--out", str(out), "--engine", "fused",
                      "--threads", "1", "--quiet"])
        man = json.loads((out / "manifest.json").read_text())
        ib = man["index"]["bytes"]
        row("fused engine", m, {"index_mb": (ib["bands"] + ib["exact"]) / 2**20, "removed": man["totals"]["removed"],
                                "phases_cpu_s": {k: v.get("cpu_s") for k, v in man["timing"]["phases"].items()}})
        shutil.rmtree(out, ignore_errors=True)
    if "staged" in modes:
        out = tmp / f"staged-{n}"
        m = measured([sys.executable, "-m", "pipelines.cli", "dedup", str(corpus), "--out", str(out), "--engine", "staged",
                      "--workers", str(workers), "--quiet"], pin=False)
        man = json.loads((out / "manifest.json").read_text())
        ib = man["index"]["bytes"]
        row(f"staged, {workers} workers", m, {"index_mb": (ib["bands"] + ib["exact"]) / 2**20,
                                              "removed": man["totals"]["removed"], "stage_wall_s": man["timing"]["phases"]})
        shutil.rmtree(out, ignore_errors=True)
    return rows


def markdown(rows: list[dict]) -> list[str]:
    lines = [
        "Shards of 50,000 documents (~1 KB each). Stages: each in its own process, one core, tasks in turn (as one Dask "
        "worker runs them); fused: one process, one core; staged: the CLI on a 2-worker LocalCluster (wall time, "
        "start-up included; CPU = all its processes). docs/CPU-s is the throughput a core gives (the machine is shared: "
        "wall time also counts other processes).",
        "",
        "| documents | what | wall s | CPU s | docs/CPU-s | docs/s (wall) | peak RSS MB | index MB | median task CPU s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        idx = f"{r['index_mb']:.1f}" if "index_mb" in r else ""
        task = f"{r['task_cpu_s_median']:.2f} ({r['tasks']} tasks)" if "tasks" in r else ""
        lines.append(f"| {r['docs']:,} | {r['what']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['docs_per_cpu_s']:,.0f} | "
                     f"{r['docs_per_wall_s']:,.0f} | {r['peak_rss_mb']:.0f} | {idx} | {task} |")
    return lines


def band_filter_ns(out: Path) -> dict[int, float]:
    """ns per key of the default filter layout by corpus size, from bench/band_bench.py's
    results in ``out`` (empty if it has not been run)."""
    path = out / "band_bench.json"
    if not path.exists():
        return {}
    ns: dict[int, float] = {}
    for r in json.loads(path.read_text()):
        ns.setdefault(r["docs"], r["ns_per_key"])  # the first row of a size is the default layout
    return ns


def projection(rows: list[dict], filter_ns: dict[int, float] | None = None) -> list[str]:
    """Wall time, workers and memory for 10^8..10^10 documents from the largest measured size.

    ``filter_ns`` (:func:`band_filter_ns`): a band task's cost at N is the measured task cost
    per document plus how much more the filter itself costs per key at the largest size
    <= N that band_bench measured than at the measured size (a filter that outgrows the
    caches costs more per key)."""
    from dedup.config import DedupConfig
    from dedup.params import plan_index

    cfg = DedupConfig()
    n0 = max(r["docs"] for r in rows if r["what"].startswith("stage"))
    by = {r["what"]: r for r in rows if r["docs"] == n0}
    # CPU seconds per document inside the tasks (the stage processes' start-up excluded: a
    # worker pays it once, not per task).
    c_sketch = by["stage sketch"]["tasks_cpu_s"] / n0
    c_write = by["stage write"]["tasks_cpu_s"] / n0
    plan0 = plan_index(cfg.threshold, cfg.num_perm, n0, cfg.fp)
    c_band = by["stage band"]["tasks_cpu_s"] / n0 / (plan0.bands + 1)  # per document per band task
    shard_rss = max(by["stage sketch"]["peak_rss_mb"], by["stage write"]["peak_rss_mb"])
    filter_ns = filter_ns or {}

    def band_cost(n: int) -> float:
        sizes = [d for d in filter_ns if d <= n]
        if n0 not in filter_ns or not sizes:
            return c_band
        return c_band + max(0.0, filter_ns[max(sizes)] - filter_ns[n0]) * 1e-9
    lines = [
        f"Projection from the {n0:,}-document run: per document, sketch {c_sketch * 1e6:.1f} us, write "
        f"{c_write * 1e6:.1f} us (CPU, one core; both per shard task, any number in parallel), and {c_band * 1e9:.0f} "
        f"ns per band task (the {plan0.bands} bands and the exact key are {plan0.bands + 1} independent tasks, each "
        "streaming every document's key through one filter). Shards of 50,000 documents; W workers of one core; no "
        "shuffle: sketch files are read by band tasks in shard order, seen-bit files by write tasks by offset. "
        "Wall time = sketch N c_s / W + band N c_b (the 10 band tasks side by side) + write N c_w / W; storage "
        "= the sketch files (~97 bytes per document) + 10 bit files (N/8 bytes each)."
        + (" Band cost at N: that per-document task cost plus the filter's extra ns per key at N over "
           f"{n0:,} from bench/band_bench.py ({', '.join(f'10^{round(math.log10(d))}: {v:.0f} ns' for d, v in sorted(filter_ns.items()))}; "
           "10^10 uses the 10^9 figure, a lower bound)." if filter_ns and n0 in filter_ns else
           " Band cost at N: the measured one, as if flat beyond it (run bench/band_bench.py to measure how the "
           "filter's cost per key grows)."),
        "",
        "| documents | workers W | sketch | band | write | total wall | band task memory (one filter) | shard task memory "
        "| all band filters | sketch files | whole-index FP at capacity | expected false removals |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def fmt_t(s):
        return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"

    for n in (10**8, 10**9, 10**10):
        plan = plan_index(cfg.threshold, cfg.num_perm, n, cfg.fp)
        filt_gb = plan.band_bits / 8 / 2**30
        # Expected false removals: sum over the documents of the whole-index rate when each
        # arrives (the filters fill as the run goes), by the midpoint rule over 1,000 steps.
        steps = 1000
        expected = sum(plan.predicted_fp(int((i + 0.5) * n / steps)) for i in range(steps)) * n / steps
        for w in (64, 512):
            t_s, t_b, t_w = n * c_sketch / w, n * band_cost(n), n * c_write / w
            lines.append(
                f"| 10^{round(math.log10(n))} | {w} | {fmt_t(t_s)} | {fmt_t(t_b)} | {fmt_t(t_w)} | {fmt_t(t_s + t_b + t_w)} | "
                f"{filt_gb:.1f} GB | {shard_rss:.0f} MB | {plan.index_bytes / 2**30:.0f} GB | "
                f"{n * 97 / 2**40:.2f} TB | {plan.predicted_fp(n):.1e} | {expected:,.0f} |")
    return lines


def main() -> int:
    global CORE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000],
                    help=f"documents, multiples of {SHARD_DOCS:,} (one shard)")
    ap.add_argument("--modes", default="stages,fused,staged")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--data", type=Path, default=Path.home() / ".cache" / "memdedup-bench" / "scale")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--project", action="store_true", help="only print the projection from OUT/scale_bench.json")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    # A size is a prefix of whole shards (view()): any other would run more documents than it divides by.
    bad = [n for n in args.sizes if n <= 0 or n % SHARD_DOCS]
    if bad and not (args.stage or args.project):
        ap.error(f"--sizes: whole shards of {SHARD_DOCS:,} documents (50000, 100000, ...), not {bad}")
    CORE = args.core
    if args.stage:
        run_stage(args.stage, args.corpus, args.work)
        return 0
    if args.project:
        print("\n".join(projection(json.loads((args.out / "scale_bench.json").read_text()), band_filter_ns(args.out))))
        return 0
    modes = set(args.modes.split(","))
    print(f"corpus: {max(args.sizes):,} documents in {args.data} (generated once) ...", flush=True)
    shards = ensure_corpus(args.data, max(args.sizes))
    rows: list[dict] = []
    tmp = Path(tempfile.mkdtemp(prefix="scale-bench-", dir=args.data))
    try:
        for n in sorted(args.sizes):
            rows += bench_size(n, view(args.data, shards, n), tmp, modes, args.workers)
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "scale_bench.json").write_text(json.dumps(rows, indent=2))  # after each size
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = markdown(rows)
    if "stages" in modes:
        lines += [""] + projection(rows, band_filter_ns(args.out))
    (args.out / "scale_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
