"""Dedup benchmark: memdedup, its earlier self and its peers in ONE run, on the same files.

    .venv/bin/python bench/dedup_bench.py            # every section (~30 min on 2 loaded cores)
    .venv/bin/python bench/dedup_bench.py --quick    # small smoke run
    .venv/bin/python bench/dedup_bench.py --sections realtext,schemes

Every tool runs as its own process pinned to one core (``--core``), start-up, reading
Parquet and writing kept shards included, and is timed by GNU time: wall seconds and CPU
seconds (user + system, all threads). On a shared machine the wall clock also counts the
time other processes held the core, so throughput and speed-ups are given on CPU time
(wall time alongside). Medians of ``--reps`` runs.

Sections:

``realtext``
    The real-text corpus (:mod:`dedup.realtext`: licence/METADATA files and docstrings
    shipped on this machine, ~6 KB documents, exact word-5-gram Jaccard truth) as 10
    Parquet shards. Tools: memdedup at ``--baseline`` (today's, built from git with its own
    AOT kernels), memdedup now (default scheme, ``--scheme fast``, ``--emit removed``),
    rensa and gaoya at 9 x 13 (:mod:`bench.peer_baselines`), datasketch MinHashLSH
    (:mod:`bench.datasketch_baseline`). Precision, recall and F1 against the truth. Then
    memdedup's phase split (CPU seconds from its manifest) against each phase's floor:
    start-up against importing numpy + pyarrow.parquet, read against Parquet decoding of
    the same files, sketch against one memory pass over the text, write against encoding the
    kept rows alone with the same writer (zstd).
``schemes``
    Every MinHash scheme of memdedup on the real-text corpus: F1 and CPU time.
``synthetic``
    Generated corpora (100k x ~1 KB, 20k x ~6 KB; planted near duplicates) against
    datasketch MinHashLSH (+ MinHashLSHBloom, memdedup over pybloom-live).
``memory``
    Peak RSS over growing prefixes (5, 20, 60 shards) of a corpus of 5,000-document shards.

Writes ``OUT/dedup_bench.json`` and ``OUT/dedup_bench.md`` (default OUT: bench/results).
The real-text corpus, its shards and the baseline build are kept in ``--data``
(default ``~/.cache/memdedup-bench``) and reused.
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

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dedup.runs import discover  # noqa: E402
from dedup.synthetic import generate_corpus, true_duplicates, write_shards  # noqa: E402

BASELINE_REV = "3459a2e"  # main when issue #14 was filed: "today's memdedup"
CORE = 0


def run_measured(cmd: list[str], env: dict, cwd: Path = ROOT) -> dict:
    """Run ``cmd`` pinned to one core; wall seconds, CPU seconds (user + sys, from GNU
    time: the exec'd command alone), peak RSS bytes and stdout."""

    def pin() -> None:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {CORE})

    gnu_time = shutil.which("time") or "/usr/bin/time"
    wrapped = [gnu_time, "-f", "MEASURED=%M %U %S", *cmd]
    with tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        t0 = time.perf_counter()
        p = subprocess.Popen(wrapped, env=env, stdout=fout, stderr=ferr, preexec_fn=pin, cwd=cwd)
        p.wait()
        wall = time.perf_counter() - t0
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read().decode(), ferr.read().decode()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{err[-3000:]}")
    line = [x for x in err.splitlines() if x.startswith("MEASURED=")][-1]
    rss_kb, user, system = line.split("=", 1)[1].split()
    return {"wall": wall, "cpu": float(user) + float(system), "rss": int(rss_kb) * 1024, "stdout": out}


def median_run(runs: list[dict]) -> dict:
    """The run of median CPU time, with the ranges of CPU and wall over all runs."""
    runs = sorted(runs, key=lambda r: r["cpu"])
    med = dict(runs[len(runs) // 2])
    med["cpu_range"] = (runs[0]["cpu"], runs[-1]["cpu"])
    walls = sorted(r["wall"] for r in runs)
    med["wall"] = walls[len(walls) // 2]
    med["wall_range"] = (walls[0], walls[-1])
    med["n"] = len(runs)
    return med


def prf(removed: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    tp = int((removed & truth).sum())
    p = tp / max(int(removed.sum()), 1)
    r = tp / max(int(truth.sum()), 1)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def removed_mask_memdedup(out: Path, corpus: Path, n: int) -> np.ndarray:
    offsets, acc = {}, 0
    for s in discover([corpus]):
        offsets[s.name] = acc
        acc += pq.ParquetFile(str(s.path)).metadata.num_rows
    rem = pq.read_table(out / "removed.parquet", columns=["shard", "row"]).to_pydict()
    mask = np.zeros(n, dtype=bool)
    for sh, row in zip(rem["shard"], rem["row"]):
        mask[offsets[sh] + row] = True
    return mask


def removed_mask_rows(path: Path, n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[np.load(path)] = True
    return mask


# --------------------------------------------------------------------------- inputs
def realtext_shards(data: Path, quick: bool) -> tuple[Path, np.ndarray, int]:
    """The real-text corpus as 10 Parquet shards (pyarrow's defaults: snappy), its truth
    and its text bytes; built once into ``data``."""
    from dedup import realtext

    table = realtext.cached_corpus(data)
    if quick:
        table = table.slice(0, 2000)
        from dedup.realtext import exact_near_duplicates

        truth = exact_near_duplicates(table.column("text"))[0]
    else:
        truth = np.asarray(table.column("near_duplicate").to_numpy(zero_copy_only=False), dtype=bool)
    corpus = data / f"realtext-shards-{realtext.fingerprint()}-{table.num_rows}"
    if not corpus.exists():
        tmp = data / f".{corpus.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        write_shards(table.select(["id", "text", "source"]), tmp, 10)
        os.replace(tmp, corpus)
    text_bytes = int(sum(len(t.encode()) for t in table.column("text").to_pylist()))
    return corpus, truth, text_bytes


def baseline_build(data: Path, rev: str, env: dict) -> Path | None:
    """memdedup at git revision ``rev`` with its own AOT kernels, built once into ``data``."""
    try:
        full = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        print(f"  baseline {rev}: not a commit of this repository, skipped", flush=True)
        return None
    dest = data / f"baseline-{full[:12]}"
    if (dest / ".built").exists():
        return dest
    print(f"  building memdedup at {full[:12]} with its AOT kernels into {dest} (once) ...", flush=True)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", full], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "dedup._kernels.aot"], cwd=dest, check=True,
                   env={**env, "PYTHONPATH": str(dest)})
    subprocess.run([sys.executable, "-m", "compileall", "-q", "dedup", "pipelines"], cwd=dest, check=True)
    (dest / ".built").write_text(full + "\n")
    return dest


# --------------------------------------------------------------------------- real text
def bench_realtext(corpus: Path, truth: np.ndarray, text_bytes: int, work: Path, env: dict, args) -> dict:
    n = truth.shape[0]
    py = sys.executable
    rows: list[dict] = []
    manifests: dict[str, dict] = {}

    def record(tool, med, removed, note=""):
        p, r, f1 = prf(removed, truth)
        row = {"tool": tool, "docs": n, "cpu_s": med["cpu"], "wall_s": med["wall"], "cpu_range": med["cpu_range"],
               "wall_range": med["wall_range"], "runs": med["n"], "docs_per_cpu_s": n / med["cpu"],
               "mb_per_cpu_s": text_bytes / 1e6 / med["cpu"], "docs_per_wall_s": n / med["wall"],
               "peak_rss_mb": med["rss"] / 2**20, "precision": p, "recall": r, "f1": f1, "note": note}
        rows.append(row)
        print(f"  {tool:<34} cpu {med['cpu']:6.2f} s ({med['cpu_range'][0]:.2f}-{med['cpu_range'][1]:.2f}) "
              f"wall {med['wall']:6.2f} s {n / med['cpu']:9,.0f} docs/cpu-s  P={p:.4f} R={r:.4f} F1={f1:.4f} {note}",
              flush=True)

    def memdedup(tool, extra, reps, home=None):
        out = work / f"rt-{len(rows)}"
        cmd = [py, "-m", "pipelines.cli", "dedup", str(corpus), "--out", str(out), "--threads", "1", "--quiet", "--force",
               *extra]
        e = dict(env)
        if home is not None:
            e["PYTHONPATH"] = str(home)
        runs = []
        for _ in range(reps):
            runs.append(run_measured(cmd, e, cwd=home or ROOT))
            manifest = json.loads((out / "manifest.json").read_text())
            runs[-1]["manifest"] = manifest
        med = median_run(runs)
        manifests[tool] = med["manifest"]
        record(tool, med, removed_mask_memdedup(out, corpus, n), med["manifest"]["config"]["scheme"])
        return out

    def peer(tool, script, kind, reps):
        out = work / f"rt-{len(rows)}"
        runs = [run_measured([py, script, kind, str(corpus), str(out)], env) for _ in range(reps)]
        record(tool, median_run(runs), removed_mask_rows(out / "removed_rows.npy", n))

    home = baseline_build(args.data, args.baseline, env) if args.baseline else None
    if home is not None:
        memdedup(f"memdedup @{args.baseline} (today's)", [], args.reps, home)
    kept_out = memdedup("memdedup", [], args.reps)
    memdedup("memdedup --scheme fast", ["--scheme", "fast"], args.reps)
    memdedup("memdedup --emit removed", ["--emit", "removed"], args.reps)
    peer("gaoya (9x13, Rust analyzer)", "bench/peer_baselines.py", "gaoya", args.peer_reps)
    peer("rensa R-MinHash (9x13)", "bench/peer_baselines.py", "rensa", args.peer_reps)
    if not args.no_datasketch:
        peer("datasketch MinHashLSH (9x13)", "bench/datasketch_baseline.py", "lsh", 1)
    base = rows[0]["cpu_s"] if home is not None else None
    by = {r["tool"]: r for r in rows}
    for r in rows:
        r["x_today"] = base / r["cpu_s"] if base else None
    floors = json.loads(run_measured([py, "bench/dedup_bench.py", "--floors", str(corpus), str(kept_out), "--core",
                                      str(CORE)], env)["stdout"]
                        .strip().splitlines()[-1])
    return {"corpus": {"docs": n, "text_mb": text_bytes / 1e6, "near_duplicates": int(truth.sum()),
                       "mean_bytes": text_bytes / n},
            "runs": rows, "floors": floors,
            "phases": {t: {k: v.get("cpu_s") for k, v in m["timing"]["phases"].items()} for t, m in manifests.items()},
            "ratios": {
                "memdedup_vs_gaoya": by["gaoya (9x13, Rust analyzer)"]["cpu_s"] / by["memdedup"]["cpu_s"],
                "memdedup_vs_rensa": by["rensa R-MinHash (9x13)"]["cpu_s"] / by["memdedup"]["cpu_s"],
            }}


def floors_main(corpus: Path, kept: Path) -> None:
    """In this (pinned) process: the CPU-time floors of each phase, best of 5."""
    from dedup import layout

    files = [s.path for s in discover([corpus])]

    def best(fn, n=5):
        b = float("inf")
        for _ in range(n):
            c0 = time.process_time()
            fn()
            b = min(b, time.process_time() - c0)
        return b

    def startup(code):
        return min(run_measured([sys.executable, "-c", code], {**os.environ, "PYTHONPATH": str(ROOT)})["cpu"]
                   for _ in range(5))

    kept_tables = [pq.read_table(p) for p in sorted(kept.glob("kept/**/*.parquet"))]
    scratch = Path(tempfile.mkdtemp(prefix="floors-"))

    def encode():
        for i, t in enumerate(kept_tables):
            with layout.kept_writer(scratch / f"{i}.parquet", t.schema, "text", "zstd") as w:
                w.write_table(t)

    buffers = [np.frombuffer(pq.read_table(p, columns=["text"]).column(0).combine_chunks().buffers()[2], np.uint8)
               for p in files]
    out = {
        "startup_libraries": startup("import numpy, pyarrow, pyarrow.parquet"),
        "startup_memdedup": startup("import pipelines.cli, dedup.engine, dedup.kernels as k; k.aot()"),
        "decode_all_columns": best(lambda: [pq.read_table(p) for p in files]),
        "decode_text_id": best(lambda: [pq.read_table(p, columns=["id", "text"]) for p in files]),
        "memory_pass": best(lambda: [b.copy() for b in buffers]),
        "zstd_encode_kept": best(encode),
    }
    shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(out))


def realtext_markdown(res: dict) -> list[str]:
    c = res["corpus"]
    lines = [
        f"Real text: {c['docs']:,} documents, {c['text_mb']:.1f} MB ({c['mean_bytes']:,.0f} bytes each on average), "
        f"{c['near_duplicates']} with an earlier document of exact word-5-gram Jaccard >= 0.8. Each tool pinned to one "
        "core, end to end from the same 10 Parquet files, kept rows written as zstd Parquet (but with --emit removed); "
        "CPU = user + system seconds (GNU time), median of the runs; x today's = CPU time of today's memdedup / CPU "
        "time of the tool.",
        "",
        "| tool | CPU s | wall s | docs/CPU-s | MB/CPU-s | x today's | precision | recall | F1 | peak RSS MB | runs, CPU range |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["runs"]:
        x = "" if r["x_today"] is None else f"{r['x_today']:.2f}"
        lines.append(
            f"| {r['tool']} | {r['cpu_s']:.2f} | {r['wall_s']:.2f} | {r['docs_per_cpu_s']:,.0f} | {r['mb_per_cpu_s']:.1f} | "
            f"{x} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['peak_rss_mb']:.0f} | "
            f"{r['runs']}, {r['cpu_range'][0]:.2f}-{r['cpu_range'][1]:.2f} |")
    rt = res["ratios"]
    lines += ["", f"memdedup is {rt['memdedup_vs_gaoya']:.1f}x gaoya and {rt['memdedup_vs_rensa']:.1f}x rensa "
                  "(CPU time, same run).", ""]
    f = res["floors"]
    ph = res["phases"]
    lines += ["Phase split (CPU seconds; from each run's manifest; start-up + run protocol = the rest of the "
              "process's CPU time) and each phase's floor on the same files:", "",
              "| phase | " + " | ".join(ph) + " | floor | floor CPU s |", "|---|" + "---:|" * len(ph) + "---|---:|"]
    totals = {r["tool"]: r["cpu_s"] for r in res["runs"]}
    floor = {"read": ("Parquet decode, all columns (text + id only: "
                      f"{f['decode_text_id']:.3f})", f["decode_all_columns"]),
             "sketch": ("one memory pass over the text", f["memory_pass"]),
             "index": ("-", None),
             "write": ("zstd encode of the kept rows (same writer)", f["zstd_encode_kept"])}
    def cell(v):
        return "-" if v is None else f"{v:.3f}"

    known = {t: all(v is not None for v in ph[t].values()) for t in ph}  # today's manifest has no CPU split
    for phase in ("read", "sketch", "index", "write"):
        vals = " | ".join(cell(ph[t].get(phase)) for t in ph)
        fl, fs = floor[phase]
        lines.append(f"| {phase} | {vals} | {fl} | {'' if fs is None else f'{fs:.3f}'} |")
    rest = " | ".join(cell(totals[t] - sum(ph[t].values())) if known[t] else "-" for t in ph)
    lines.append(f"| start-up + run protocol | {rest} | importing numpy + pyarrow.parquet (memdedup's imports: "
                 f"{f['startup_memdedup']:.3f}) | {f['startup_libraries']:.3f} |")
    lines.append(f"| total | {' | '.join(f'{totals[t]:.3f}' for t in ph)} | sum of the floors | "
                 f"{f['startup_libraries'] + f['decode_all_columns'] + f['memory_pass'] + f['zstd_encode_kept']:.3f} |")
    return lines


# --------------------------------------------------------------------------- schemes
def bench_schemes(corpus: Path, truth: np.ndarray, text_bytes: int, work: Path, env: dict, reps: int) -> list[dict]:
    from dedup.minhash import SCHEMES

    n = truth.shape[0]
    out = []
    for scheme in SCHEMES:
        o = work / f"scheme-{scheme}"
        cmd = [sys.executable, "-m", "pipelines.cli", "dedup", str(corpus), "--out", str(o), "--threads", "1", "--quiet",
               "--force", "--scheme", scheme]
        med = median_run([run_measured(cmd, env) for _ in range(reps if scheme in ("fast", "fss") else 1)])
        m = json.loads((o / "manifest.json").read_text())
        p, r, f1 = prf(removed_mask_memdedup(o, corpus, n), truth)
        out.append({"scheme": scheme, "cpu_s": med["cpu"], "sketch_cpu_s": m["timing"]["phases"]["sketch"].get("cpu_s"),
                    "precision": p, "recall": r, "f1": f1, "runs": med["n"]})
        print(f"  {scheme:<22} cpu {med['cpu']:6.2f} s sketch {out[-1]['sketch_cpu_s']:.3f} s  P={p:.4f} R={r:.4f} "
              f"F1={f1:.4f}", flush=True)
    return out


def schemes_markdown(res: list[dict]) -> list[str]:
    lines = ["MinHash schemes on the real-text corpus (memdedup, K=128, 9 x 13, one core; CPU seconds, median of the "
             "runs):", "", "| scheme | CPU s | sketch CPU s | precision | recall | F1 |", "|---|---:|---:|---:|---:|---:|"]
    for r in res:
        lines.append(f"| {r['scheme']} | {r['cpu_s']:.2f} | {r['sketch_cpu_s']:.3f} | {r['precision']:.4f} | "
                     f"{r['recall']:.4f} | {r['f1']:.4f} |")
    return lines


# --------------------------------------------------------------------------- synthetic
def make_corpus(path: Path, n: int, mean_bytes: int, shards: int, seed: int) -> tuple[np.ndarray, int]:
    table = generate_corpus(n, mean_bytes=mean_bytes, exact_frac=0.05, near_frac=0.10, seed=seed)
    write_shards(table, path, shards)
    text_bytes = int(sum(len(t.encode()) for t in table.column("text").to_pylist()))
    return true_duplicates(table, 0.8), text_bytes


def bench_synthetic(name, corpus, truth, text_bytes, work, env, with_lshbloom, with_pybloom, reps) -> list[dict]:
    n = truth.shape[0]
    rows = []
    py = sys.executable
    memdedup = [py, "-m", "pipelines.cli", "dedup", str(corpus), "--threads", "1", "--quiet", "--force"]

    def record(tool, med, index_bytes, removed, note="", exact_bytes=None):
        p, r, f1 = prf(removed, truth)
        rows.append({
            "corpus": name, "tool": tool, "docs": n, "cpu_s": med["cpu"], "wall_s": med["wall"],
            "docs_per_cpu_s": n / med["cpu"], "mb_per_cpu_s": text_bytes / 1e6 / med["cpu"],
            "index_bytes_per_doc": index_bytes / n if index_bytes is not None else None,
            "exact_bytes_per_doc": exact_bytes / n if exact_bytes is not None else None,
            "peak_rss_mb": med["rss"] / 2**20, "precision": p, "recall": r, "f1": f1, "note": note,
        })
        print(f"  {tool:<32} cpu {med['cpu']:7.2f} s wall {med['wall']:7.2f} s {n / med['cpu']:10,.0f} docs/cpu-s  "
              f"rss {med['rss'] / 2**20:7.1f} MB  P={p:.4f} R={r:.4f} {note}", flush=True)

    def datasketch(kind: str, tool: str, note: str) -> None:
        out = work / f"{name}-ds-{kind}"
        med = median_run([run_measured([py, "bench/datasketch_baseline.py", kind, str(corpus), str(out)], env)])
        info = json.loads(med["stdout"].strip().splitlines()[-1])
        record(tool, med, info["index_bytes"], removed_mask_rows(out / "removed_rows.npy", n), note)

    datasketch("lsh", "datasketch MinHashLSH", "index bytes = RSS growth")
    if with_lshbloom:
        try:
            import pybloomfilter  # noqa: F401
        except ImportError:
            print("  datasketch MinHashLSHBloom: pybloomfiltermmap3 not installed, skipped")
        else:
            datasketch("lshbloom", "datasketch MinHashLSHBloom", "sum band key")
    for label, extra, mode in (
        ("memdedup", [], "warm"),
        ("memdedup --scheme fast", ["--scheme", "fast"], "warm"),
        ("memdedup (empty start-up cache)", [], "cold"),
        ("memdedup (JIT, no AOT build)", [], "jit"),
        ("memdedup --index pybloom", ["--index", "pybloom"], "warm"),
    ):
        if "pybloom" in label and not with_pybloom:
            continue
        e = dict(env)
        if mode == "cold":
            e["MEMDEDUP_CACHE_DIR"] = tempfile.mkdtemp(prefix="memdedup-cold-")
        if mode == "jit":
            e["MEMDEDUP_JIT"] = "1"
        out = work / f"{name}-memdedup"
        k = reps if label in ("memdedup", "memdedup --scheme fast") else 1
        med = median_run([run_measured([*memdedup, "--out", str(out), *extra], e) for _ in range(k)])
        note = f"median of {med['n']} runs" if med["n"] > 1 else ""
        ib = json.loads((out / "manifest.json").read_text())["index"]["bytes"]
        record(label, med, ib["bands"], removed_mask_memdedup(out, corpus, n), note, exact_bytes=ib["exact"])
    base = rows[0]["cpu_s"]
    for r in rows:
        r["speedup_vs_datasketch"] = base / r["cpu_s"]
    return rows


def synthetic_markdown(runs: list[dict]) -> list[str]:
    lines = [
        "Generated corpora (planted exact and near duplicates, exact-Jaccard truth). T=0.8, K=128, p=1e-5; CPU seconds "
        "(median of the runs for the default configuration). LSH index = the band index (memdedup: one Bloom filter "
        "per band; datasketch MinHashLSH: its bucket tables, measured as RSS growth; MinHashLSHBloom: its filters).",
        "",
        "| corpus | tool | docs | CPU s | wall s | docs/CPU-s | MB/CPU-s | x datasketch | LSH index B/doc | exact-key B/doc "
        "| peak RSS MB | precision | recall | F1 | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        ib = "" if r["index_bytes_per_doc"] is None else f"{r['index_bytes_per_doc']:.1f}"
        eb = "" if r.get("exact_bytes_per_doc") is None else f"{r['exact_bytes_per_doc']:.1f}"
        lines.append(
            f"| {r['corpus']} | {r['tool']} | {r['docs']:,} | {r['cpu_s']:.2f} | {r['wall_s']:.2f} | "
            f"{r['docs_per_cpu_s']:,.0f} | {r['mb_per_cpu_s']:.1f} | {r['speedup_vs_datasketch']:.1f} | {ib} | {eb} | "
            f"{r['peak_rss_mb']:.0f} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['note']} |")
    return lines


def memory_vs_shards(corpus: Path, work: Path, env: dict, counts: list[int]) -> list[dict]:
    shards = sorted(corpus.glob("part-*.parquet"))
    out = []
    for c in counts:
        sub = work / f"prefix-{c}"
        sub.mkdir(parents=True, exist_ok=True)
        for s in shards[:c]:
            dst = sub / s.name
            if not dst.exists():
                os.link(s, dst)
        o = work / f"prefix-{c}-out"
        # Peak RSS of identical runs varies by ~20 MB (the allocator's caches): median of 3.
        peaks = sorted(
            run_measured([sys.executable, "-m", "pipelines.cli", "dedup", str(sub), "--out", str(o), "--threads", "1",
                          "--quiet", "--force"], env)["rss"] / 2**20
            for _ in range(3)
        )
        m = json.loads((o / "manifest.json").read_text())
        ib = m["index"]["bytes"]
        index_mb = (ib["bands"] + ib["exact"]) / 2**20
        out.append({"shards": c, "docs": m["totals"]["rows"], "peak_rss_mb": peaks[1], "peak_rss_range": [peaks[0], peaks[-1]],
                    "index_mb": index_mb})
        print(f"  {c:3d} shards {m['totals']['rows']:9,d} docs  peak RSS {peaks[1]:7.1f} MB ({peaks[0]:.0f}-{peaks[-1]:.0f})  "
              f"index {index_mb:6.2f} MB", flush=True)
    return out


def memory_markdown(res: list[dict]) -> list[str]:
    lines = ["Peak memory vs shards processed (shards of 5,000 ~1 KB documents; median of 3 runs, range in brackets;",
             "the index is sized for each run's documents):", "",
             "| shards | docs | peak RSS MB | index MB |", "|---:|---:|---:|---:|"]
    for m in res:
        lo, hi = m["peak_rss_range"]
        lines.append(f"| {m['shards']} | {m['docs']:,} | {m['peak_rss_mb']:.0f} ({lo:.0f}-{hi:.0f}) | {m['index_mb']:.2f} |")
    return lines


def to_markdown(results: dict) -> str:
    lines = [f"Machine: {results['machine']}; load average at the start {results['load']}. Kernels: {results['kernels']}.", ""]
    if "realtext" in results:
        lines += realtext_markdown(results["realtext"]) + [""]
    if "schemes" in results:
        lines += schemes_markdown(results["schemes"]) + [""]
    if "synthetic" in results:
        lines += synthetic_markdown(results["synthetic"]) + [""]
    if "memory_vs_shards" in results:
        lines += memory_markdown(results["memory_vs_shards"]) + [""]
    return "\n".join(lines)


def main() -> int:
    global CORE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default="realtext,schemes,synthetic,memory")
    ap.add_argument("--docs", type=int, help="synthetic: documents of ~1 KB (100,000; --quick 5,000)")
    ap.add_argument("--big-docs", type=int, help="synthetic: documents of ~6 KB (20,000; --quick 1,000)")
    ap.add_argument("--memory-shards", type=int,
                    help="shards of 5,000 documents for the memory section (60; --quick 6)")
    ap.add_argument("--reps", type=int, help="runs of each memdedup configuration, median reported (5; --quick 1)")
    ap.add_argument("--peer-reps", type=int, help="runs of rensa and gaoya (3; --quick 1)")
    ap.add_argument("--baseline", default=BASELINE_REV, help="git revision of today's memdedup ('' to skip)")
    ap.add_argument("--no-datasketch", action="store_true", help="real text: skip datasketch (minutes)")
    ap.add_argument("--core", type=int, default=0, help="the core every measured process is pinned to")
    ap.add_argument("--quick", action="store_true", help="small corpora, one run each: a smoke run")
    ap.add_argument("--data", type=Path, default=Path.home() / ".cache" / "memdedup-bench")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--floors", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    CORE = args.core
    if args.floors:
        floors_main(*args.floors)
        return 0
    # --quick changes the defaults only: a size given explicitly stands.
    sizes = ({"docs": 5_000, "big_docs": 1_000, "memory_shards": 6, "reps": 1, "peer_reps": 1} if args.quick else
             {"docs": 100_000, "big_docs": 20_000, "memory_shards": 60, "reps": 5, "peer_reps": 3})
    for name, default in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    sections = set(args.sections.split(","))
    work = Path(tempfile.mkdtemp(prefix="dedup-bench-"))
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    try:
        import platform

        from dedup import kernels

        results: dict = {
            "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
            "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "kernels": "ahead-of-time build" if kernels.aot() is not None else "JIT only (AOT build missing)",
        }
        if sections & {"realtext", "schemes"}:
            corpus, truth, text_bytes = realtext_shards(args.data, args.quick)
            print(f"real-text corpus: {truth.shape[0]:,} docs, {text_bytes / 1e6:.1f} MB, {int(truth.sum())} near "
                  f"duplicates", flush=True)
            if "realtext" in sections:
                results["realtext"] = bench_realtext(corpus, truth, text_bytes, work, env, args)
            if "schemes" in sections:
                results["schemes"] = bench_schemes(corpus, truth, text_bytes, work, env, args.reps)
        if "synthetic" in sections:
            a_truth, a_bytes = make_corpus(work / "a", args.docs, 1000, 20, seed=1)
            b_truth, b_bytes = make_corpus(work / "b", args.big_docs, 6000, 10, seed=2)
            print(f"corpus 1KB: {args.docs:,} docs, {a_bytes / 1e6:.0f} MB of text", flush=True)
            results["synthetic"] = bench_synthetic("1KB", work / "a", a_truth, a_bytes, work, env, True, True, args.reps)
            print(f"corpus 6KB: {args.big_docs:,} docs, {b_bytes / 1e6:.0f} MB of text", flush=True)
            results["synthetic"] += bench_synthetic("6KB", work / "b", b_truth, b_bytes, work, env, False, False, args.reps)
        if "memory" in sections:
            print("peak memory vs shards processed:", flush=True)
            make_corpus(work / "m", args.memory_shards * 5_000, 1000, args.memory_shards, seed=3)
            counts = sorted({min(5, args.memory_shards), max(1, args.memory_shards // 3), args.memory_shards})
            results["memory_vs_shards"] = memory_vs_shards(work / "m", work, env, counts)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "dedup_bench.json").write_text(json.dumps(results, indent=2))
        md = to_markdown(results)
        (args.out / "dedup_bench.md").write_text(md)
        print()
        print(md)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
