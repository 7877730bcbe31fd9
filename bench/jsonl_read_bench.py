"""What reading JSON Lines costs, and what parsing each piece as one Arrow block adds.

memdedup parses each piece of a JSONL shard (<= 32 MiB of whole lines, :mod:`dedup.shards`)
as ONE Arrow JSON block: pyarrow 26 infers each block's types alone and, where a field's type
changes between two of its default 1 MiB blocks, crashes (SIGSEGV) or drops the value
(tests/dedup/test_shards.py::test_jsonl_type_change_between_arrow_blocks_names_its_line).
One block parses on one thread. This bench times, on the same bytes (a synthetic corpus,
:func:`dedup.synthetic.generate_corpus`, with an id and a nested metadata object per row):

- ``arrow, 1 MiB blocks``: ``pyarrow.json.read_json`` with its default blocks (threads), one pass;
- ``arrow, one block``: the same as one block, one pass;
- ``memdedup ShardReader``: the whole read, both passes (schema, then rows), as the engines read.

It prints best-of-``--repeat`` seconds and MB/s of the file's bytes. Then the nesting guard
(:func:`dedup.jsonl.scan`: lines of 5,000+ brackets measured by a kernel, as pyarrow crashes on a line
nested 20,000 deep): ``scan`` and Arrow's one-block parse of ``--piece-mib`` of each kind of line. Then
metadata shapes that once cost a pass over the file per column, read by ShardReader (``--shape-lines`` lines):
100 columns whose type changes at the top, 30 whose type changes inside an object, one new key per line.

    python bench/jsonl_read_bench.py [--docs 30000] [--doc-bytes 1000] [--repeat 5] [--piece-mib 32]
                                     [--shape-lines 5000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's dedup


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=30_000)
    ap.add_argument("--doc-bytes", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--piece-mib", type=int, default=32)
    ap.add_argument("--shape-lines", type=int, default=5000)
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.json as pj

    from dedup.runs import discover
    from dedup.shards import ShardReader
    from dedup.synthetic import generate_corpus

    table = generate_corpus(args.docs, mean_bytes=args.doc_bytes, seed=0)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "corpus.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for i, (doc_id, text) in enumerate(zip(table.column("id").to_pylist(), table.column("text").to_pylist())):
                f.write(json.dumps({"id": doc_id, "text": text, "meta": {"source": f"s{i % 7}", "n": i}}) + "\n")
        data = path.read_bytes()
        shard = discover([path])[0]

        def reader() -> None:
            r = ShardReader(shard, "text", "id", False, 32768)
            assert sum(b.num_rows for b in r.batches()) == args.docs

        rows = [
            ("arrow, 1 MiB blocks", best(lambda: pj.read_json(pa.BufferReader(data)), args.repeat)),
            ("arrow, one block", best(lambda: pj.read_json(
                pa.BufferReader(data), read_options=pj.ReadOptions(block_size=len(data) + 1)), args.repeat)),
            ("memdedup ShardReader", best(reader, args.repeat)),
        ]
    mb = len(data) / 1e6
    print(f"JSONL read: {args.docs:,} rows, {mb:.1f} MB, pyarrow {pa.__version__}, best of {args.repeat}")
    width = max(len(name) for name, _ in rows)
    print(f"  {'':<{width}}  {'seconds':>8}  {'MB/s':>7}")
    for name, s in rows:
        print(f"  {name:<{width}}  {s:>8.3f}  {mb / s:>7.0f}")
    depth_guard(args.piece_mib, args.repeat)
    shapes(args.shape_lines, args.repeat)


def shapes(n: int, repeat: int) -> None:
    """Seconds of ShardReader's whole read of ``n`` lines of each metadata shape."""
    import warnings

    from dedup.runs import discover
    from dedup.shards import ShardReader

    kinds = {"100 columns change type": lambda i: {f"k{k}": i if i % 2 else str(i) for k in range(100)},
             "30 change inside an object": lambda i: {f"m{k}": {"x": i if i % 2 else str(i)} for k in range(30)},
             "a new key per line": lambda i: {f"key_{i}": i}}
    print(f"JSONL metadata shapes: {n:,} lines, best of {repeat}")
    print(f"  {'shape':<26}  {'MB':>5}  {'seconds':>8}")
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 'holds values of different JSON types; read as text'
        for name, meta in kinds.items():
            path = Path(d) / f"{len(name)}.jsonl"
            path.write_text("".join(json.dumps({"text": f"doc {i}", **meta(i)}) + "\n" for i in range(n)))
            shard = discover([path])[0]
            s = best(lambda: sum(b.num_rows for b in ShardReader(shard, "text", None, False, 32768).batches()), repeat)
            print(f"  {name:<26}  {path.stat().st_size / 1e6:>5.1f}  {s:>8.3f}")


def depth_guard(piece_mib: int, repeat: int) -> None:
    """Seconds of :func:`dedup.jsonl.scan` and of Arrow's parse, per piece of each kind of line."""
    import pyarrow as pa
    import pyarrow.json as pj

    from dedup import jsonl

    words = " ".join(f"w{i % 97}" for i in range(6000))
    kinds = {"text, 1 KB lines": {"text": words[:1000]}, "text, 50 KB lines": {"text": words * 2},
             "6,000 spans a line": {"text": words[:20000], "spans": [[i, i + 5] for i in range(6000)]},
             "LaTeX, 6,000 braces a line": {"text": "\\frac{a}{b} " * 3000}}
    print(f"JSONL nesting guard: pieces of {piece_mib} MiB, best of {repeat}")
    print(f"  {'lines':<26}  {'scan s':>7}  {'arrow s':>7}  {'scan/arrow':>10}")
    for name, obj in kinds.items():
        line = (json.dumps(obj) + "\n").encode()
        piece = line * max(1, (piece_mib << 20) // len(line))
        scan = best(lambda: jsonl.scan(piece, True), repeat)
        arrow = best(lambda: pj.read_json(pa.BufferReader(piece), read_options=pj.ReadOptions(
            block_size=len(piece) + 1, use_threads=False)), repeat)
        print(f"  {name:<26}  {scan:>7.3f}  {arrow:>7.3f}  {scan / arrow:>10.2f}")


if __name__ == "__main__":
    main()
