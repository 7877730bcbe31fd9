"""Scale benchmark of the staged dedup: throughput and memory per stage as the corpus grows.

    .venv/bin/python bench/scale_bench.py                 # 1e5, 3e5 and 1e6 documents of ~1 KB
    .venv/bin/python bench/scale_bench.py --sizes 20000   # a quick run

Corpora are generated with shards of a fixed size (50,000 documents), so a larger corpus
has more shards, not larger ones. Each stage runs in its own process (tasks one after
another, one core, as one Dask worker would run them) under GNU time, which reports its
peak RSS; the claim to check is that throughput stays flat and that peak memory is one
shard plus, for the band stage, one band's filter (index bytes / (bands + 1)), not a
function of the corpus size. A last run per size is the real CLI on a 2-worker
LocalCluster (wall time, all stages, start-up included).

Writes ``OUT/scale_bench.json`` and ``OUT/scale_bench.md`` (default OUT: bench/results).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARD_DOCS = 50_000


def run_stage(stage: str, corpus: Path, out: Path) -> None:
    """In this process: run one stage over the whole corpus, task after task."""
    import json as _json

    from dedup import stages as st
    from dedup.config import DedupConfig
    from dedup.params import optimal_param, per_band_fp
    from dedup.scalable import FilterStack
    from dedup.runs import discover

    config = DedupConfig()
    shards = discover([corpus])
    bands, rows = optimal_param(config.threshold, config.num_perm)
    work = st.work_dir(out)
    t0 = time.perf_counter()
    if stage == "sketch":
        for s in shards:
            st.sketch_shard(s, config, bands, rows, work)
    else:
        infos = [_json.loads(st.done_path(st.sketch_path(work, s)).read_text()) for s in shards]
        total = sum(i["rows"] for i in infos)
        if stage == "band":
            for b in [*range(bands), st.EXACT_BAND]:
                fp = config.exact_fp if b == st.EXACT_BAND else per_band_fp(config.fp, bands)
                st.band_pass(b, shards, work, FilterStack(fp, total), total)
        else:
            start = 0
            for s, i in zip(shards, infos):
                st.write_shard(s, config, bands, start, work, out)
                start += i["rows"]
    print(json.dumps({"seconds": time.perf_counter() - t0}))


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall s, peak RSS MB, stdout) of a command, peak RSS from GNU time."""
    gnu_time = shutil.which("time") or "/usr/bin/time"
    t0 = time.perf_counter()
    p = subprocess.run([gnu_time, "-f", "MAXRSS_KB=%M", *cmd], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{p.stderr[-3000:]}")
    rss = [int(x.split("=")[1]) for x in p.stderr.splitlines() if x.startswith("MAXRSS_KB=")]
    return wall, (rss[-1] / 1024 if rss else float("nan")), p.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        run_stage(args.stage, args.corpus, args.work)
        return 0

    from dedup.synthetic import generate_corpus, write_shards

    tmp = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    rows = []
    try:
        for n in args.sizes:
            corpus = tmp / f"c{n}"
            print(f"generating {n:,} documents ...", flush=True)
            for i, start in enumerate(range(0, n, SHARD_DOCS)):
                part = generate_corpus(min(SHARD_DOCS, n - start), mean_bytes=1000, seed=1000 + i)
                write_shards(part, corpus / f"s{i:05d}", 1)
            text_mb = sum(p.stat().st_size for p in corpus.rglob("*.parquet")) / 2**20
            work = tmp / f"o{n}"
            for stage in ("sketch", "band", "write"):
                wall, rss, out = timed([sys.executable, "bench/scale_bench.py", "--stage", stage,
                                        "--corpus", str(corpus), "--work", str(work)])
                secs = json.loads(out.strip().splitlines()[-1])["seconds"]
                rows.append({"docs": n, "stage": stage, "seconds": secs, "docs_per_s": n / secs, "peak_rss_mb": rss})
                print(f"  {n:>9,} {stage:<7} {secs:7.2f} s {n / secs:>10,.0f} docs/s  peak RSS {rss:7.1f} MB", flush=True)
            cli_out = tmp / f"cli{n}"
            wall, rss, _ = timed([sys.executable, "-m", "pipelines.cli", "dedup", str(corpus), "--out", str(cli_out),
                                  "--engine", "staged", "--workers", "2", "--quiet"])
            m = json.loads((cli_out / "manifest.json").read_text())
            rows.append({"docs": n, "stage": "CLI, 2 workers", "seconds": wall, "docs_per_s": n / wall,
                         "peak_rss_mb": rss, "removed": m["totals"]["removed"],
                         "index_mb": (m["index"]["bytes"]["bands"] + m["index"]["bytes"]["exact"]) / 2**20,
                         "corpus_mb": text_mb})
            print(f"  {n:>9,} CLI     {wall:7.2f} s {n / wall:>10,.0f} docs/s  (client process RSS {rss:.0f} MB; "
                  f"index {rows[-1]['index_mb']:.1f} MB)", flush=True)
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(cli_out, ignore_errors=True)
            shutil.rmtree(corpus, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [
        "Shards of 50,000 documents (~1 KB each); each stage in its own process, one core, tasks in turn.",
        "",
        "| documents | stage | seconds | docs/s | peak RSS MB |",
        "|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['docs']:,} | {r['stage']} | {r['seconds']:.2f} | {r['docs_per_s']:,.0f} | {r['peak_rss_mb']:.0f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale_bench.json").write_text(json.dumps(rows, indent=2))
    (args.out / "scale_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
