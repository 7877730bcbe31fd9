"""A real-text corpus from files shipped on this machine, and exact Jaccard ground truth.

Real text has shingle statistics synthetic corpora (:mod:`dedup.synthetic`) lack (function words, boilerplate,
licences repeated across packages with small changes) that a sketch must survive. Sources (:func:`source_texts`), in
path order: every ``METADATA``, ``LICENSE*`` and ``COPYING*`` file under ``site-packages`` (licences with other
copyright lines, package descriptions, vendored copies) and, optionally, the docstrings (:func:`ast.get_docstring`) of
the ``.py`` files under ``site-packages`` and the standard library, one source per directory (vendored packages,
re-exported APIs). Each is cut into documents of about ``target_bytes`` at paragraph boundaries (:func:`chunk_text`);
documents without a word character (no shingles) are dropped.

Ground truth (:func:`exact_near_duplicates`): row ``j`` is a near duplicate iff some earlier row ``i < j`` has exact
word-n-gram Jaccard ``|A_i ∩ A_j| / |A_i ∪ A_j| >= T`` over :func:`dedup.normalize.shingles`. It is an exact
all-pairs similarity join (Bayardo, Ma & Srikant, "Scaling up all pairs similarity search", WWW 2007; Chaudhuri,
Ganti & Kaushik, ICDE 2006): a pair with ``J >= T`` shares a shingle among the ``|A| - ceil(T |A|) + 1`` rarest of
each set (prefix filter) and has ``T max(|A|, |B|) <= min(|A|, |B|)`` (size filter); every pair passing both is
verified by exact set intersection. Shingles are identified by their 128-bit XXH3 digest, checked distinct (a clash
has probability below 2^-80 at 10^8 shingles); no MinHash is involved.
"""

from __future__ import annotations

import ast
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import normalize
from .io import replacing

#: File names taken from site-packages as licence/metadata text.
LICENCE_PREFIXES = ("LICENSE", "LICENCE", "COPYING")


def site_packages() -> Path:
    """The site-packages directory of the running interpreter (its venv's, if any)."""
    import sysconfig

    return Path(sysconfig.get_paths()["purelib"])


def default_roots() -> list[tuple[str, Path]]:
    """The sources' default roots: this interpreter's site-packages and its standard library."""
    import sysconfig

    return [("site-packages", site_packages()), ("stdlib", Path(sysconfig.get_paths()["stdlib"]))]


def _walk_sorted(root: Path, skip_dirs: tuple[str, ...] = ()) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs and d != "__pycache__")
        for f in sorted(filenames):
            yield Path(dirpath) / f


def licence_files(root: Path) -> list[Path]:
    """``METADATA``, ``LICENSE*``, ``LICENCE*`` and ``COPYING*`` files under ``root``, sorted."""
    return [p for p in _walk_sorted(root)
            if (p.name == "METADATA" or p.name.upper().startswith(LICENCE_PREFIXES)) and p.is_file()
            and not p.name.endswith((".py", ".pyc"))]


def docstrings(path: Path) -> str:
    """The docstrings of a Python file (module, classes, functions), blank-line separated; "" if it does not parse.
    Surrogates written as escapes are paired into their character where they pair, else read as U+FFFD."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in old sources
            tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError, RecursionError):
        return ""
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    text = "\n\n".join(d for node in ast.walk(tree) if isinstance(node, kinds) and (d := ast.get_docstring(node)))
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def source_texts(roots: Sequence[tuple[str, Path]] | None = None, with_docstrings: bool = True) -> Iterator[tuple[str, str]]:
    """``(name, text)`` of every source (module docstring), by name ``label/relative path``; ``roots``: ``(label,
    directory)`` pairs (default :func:`default_roots`), licence files from those labelled ``site-packages``."""
    items: list[tuple[str, list[Path], str]] = []
    for label, root in default_roots() if roots is None else roots:
        root = Path(root)
        if label == "site-packages":
            items += [(f"{label}/{p.relative_to(root).as_posix()}", [p], "text") for p in licence_files(root)]
        if with_docstrings:
            skip = ("site-packages", "test", "tests", "idlelib") if label == "stdlib" else ()
            by_dir: dict[Path, list[Path]] = {}
            for p in _walk_sorted(root, skip):
                if p.suffix == ".py" and p.is_file():
                    by_dir.setdefault(p.parent, []).append(p)
            items += [(f"{label}/{d.relative_to(root).as_posix()}/", files, "py") for d, files in by_dir.items()]
    for name, paths, kind in sorted(items):
        if kind == "py":
            text = "\n\n".join(t for t in map(docstrings, paths) if t)
        else:
            try:
                text = paths[0].read_bytes().decode("utf-8", errors="replace")
            except OSError:
                continue
        if text.strip():
            yield name, text


def chunk_text(text: str, target_bytes: int) -> list[str]:
    """Cut ``text`` into documents of about ``target_bytes`` UTF-8 bytes: paragraphs (cut at line ends first when
    longer than twice the target) packed in order, joined by blank lines, each document closed once it holds
    ``target_bytes``.

    Example:
        >>> chunk_text("a b\\n\\nc d\\n\\ne f", 8)
        ['a b\\n\\nc d', 'e f']
    """
    paragraphs: list[str] = []
    for para in text.replace("\r\n", "\n").split("\n\n"):
        para = para.strip("\n")
        if not para.strip():
            continue
        if len(para.encode()) <= 2 * target_bytes:
            paragraphs.append(para)
        else:
            paragraphs.extend(_pack(para.split("\n"), "\n", target_bytes))
    return _pack(paragraphs, "\n\n", target_bytes)


def _pack(parts: list[str], sep: str, target_bytes: int) -> list[str]:
    """``parts`` joined with ``sep`` into pieces closed once they hold ``target_bytes`` bytes (each part counted with
    one separator); the last piece may be shorter."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for part in parts:
        current.append(part)
        size += len(part.encode()) + len(sep)
        if size >= target_bytes:
            out.append(sep.join(current))
            current, size = [], 0
    if current:
        out.append(sep.join(current))
    return out


def build_corpus(target_bytes: int = 6000, with_docstrings: bool = True,
                 roots: Sequence[tuple[str, Path]] | None = None) -> pa.Table:
    """The real-text corpus: string columns ``id`` (``<source>#<chunk>``), ``text``, ``source``; rows in source-name,
    then text order.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "LICENSE").write_text("Permission is hereby granted, free of charge.\\n\\n---\\n")
        >>> build_corpus(20, with_docstrings=False, roots=[("site-packages", d)]).to_pylist()  # "---" has no word
        [{'id': 'site-packages/LICENSE#0', 'text': 'Permission is hereby granted, free of charge.', 'source': 'site-packages/LICENSE'}]
    """
    words = normalize.word_regex().search
    rows = [(f"{name}#{k}", doc, name) for name, text in source_texts(roots, with_docstrings)
            for k, doc in enumerate(chunk_text(text, target_bytes)) if words(doc.lower())]
    return pa.table({c: pa.array([r[i] for r in rows], pa.string()) for i, c in enumerate(("id", "text", "source"))})


def shingle_sets(texts: pa.Array | Sequence[str], ngram: int = 5, unit: str = "word",
                 nfkc: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """Each document's shingle set as ids, one per distinct shingle (checked: no two digests share their first 64
    bits without being equal): ``(offsets, ids, n_distinct)``, document ``d``'s set ``ids[offsets[d]:offsets[d+1]]``
    (sorted, no repeats)."""
    import xxhash

    normalize.check_shingling(ngram, unit)
    digest = xxhash.xxh3_128_digest
    words = normalize.canonical_words_batch(texts, nfkc)
    chunks: list[bytes] = []
    counts = np.zeros(len(words), dtype=np.int64)
    for d, w in enumerate(words):
        sh = normalize.word_shingles(w, ngram, unit)
        chunks.append(b"".join(digest(s.encode()) for s in sh))
        counts[d] = len(sh)
    raw = np.frombuffer(b"".join(chunks), dtype=np.uint64).reshape(-1, 2)
    distinct, token = np.unique(raw[:, 0], return_inverse=True)  # a shingle's id: the rank of its first 64 bits
    rest = np.zeros(distinct.shape[0], dtype=np.uint64)
    rest[token] = raw[:, 1]
    if (rest[token] != raw[:, 1]).any():  # pragma: no cover - a 64-bit clash of two different shingles
        raise RuntimeError("two shingles share 64 bits of their digest; ids would not be exact")
    n_distinct = distinct.shape[0]
    doc = np.repeat(np.arange(len(words), dtype=np.int64), counts)
    key = np.unique(doc * n_distinct + token)  # per-document sets, sorted by (doc, id)
    set_doc = key // max(n_distinct, 1)
    ids = key - set_doc * n_distinct
    return np.searchsorted(set_doc, np.arange(len(words) + 1)), ids, n_distinct


def candidate_pairs(offsets: np.ndarray, ids: np.ndarray, n_distinct: int, threshold: float) -> np.ndarray:
    """(i, j), i < j, of every pair passing the module docstring's prefix and size filters (every one with J >= T)."""
    n = offsets.shape[0] - 1
    size = np.diff(offsets)
    doc = np.repeat(np.arange(n, dtype=np.int64), size)
    freq = np.bincount(ids, minlength=n_distinct)
    rank_of = np.empty(n_distinct, dtype=np.int64)
    rank_of[np.lexsort((np.arange(n_distinct), freq))] = np.arange(n_distinct)
    rank = rank_of[ids]
    order = np.lexsort((rank, doc))  # within each document, rarest first
    pos = np.arange(ids.shape[0]) - np.repeat(offsets[:-1], size)
    # ceil(T * size) shared shingles at least, less one where float error could have pushed it up (still exact)
    min_overlap = np.maximum(np.ceil(threshold * size - 1e-9).astype(np.int64), 1)
    prefix_len = size - min_overlap + 1
    in_prefix = pos < np.repeat(prefix_len, size)
    p_rank, p_doc = rank[order][in_prefix], doc[order][in_prefix]
    o = np.lexsort((p_doc, p_rank))
    p_rank, p_doc = p_rank[o], p_doc[o]
    _, starts, counts = np.unique(p_rank, return_index=True, return_counts=True)
    ends = starts + counts
    multi = np.flatnonzero(ends - starts >= 2)
    pairs: list[np.ndarray] = []
    for g in multi.tolist():
        members = p_doc[starts[g]:ends[g]]  # ascending doc order
        a, b = np.triu_indices(members.shape[0], 1)
        i, j = members[a], members[b]
        si, sj = size[i], size[j]
        ok = np.minimum(si, sj) >= threshold * np.maximum(si, sj) - 1e-9
        pairs.append(i[ok] * n + j[ok])
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    key = np.unique(np.concatenate(pairs))
    return np.stack([key // n, key % n], axis=1)


def exact_near_duplicates(texts: pa.Array | Sequence[str], threshold: float = 0.8, ngram: int = 5,
                          unit: str = "word", nfkc: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The module docstring's ground truth as ``(duplicate, best)``, Jaccard compared as a float ``|A∩B| / |A∪B|``
    (as :func:`dedup.synthetic.true_duplicates`): ``best[j]`` is the largest such Jaccard where ``duplicate[j]``, else
    some value below T (0: no earlier row passed the filters). Rows without shingles are never duplicates.

    Example:
        >>> dup, best = exact_near_duplicates(["a b c d e f g", "A b c d e f g!", "a b c d e f x", "z"], 0.5)
        >>> dup.tolist(), [round(float(b), 3) for b in best]  # J = 1, then 2/4 with the first
        ([False, True, True, False], [0.0, 1.0, 0.5, 0.0])
    """
    offsets, ids, n_distinct = shingle_sets(texts, ngram, unit, nfkc)
    n = offsets.shape[0] - 1
    best = np.zeros(n, dtype=np.float64)
    pairs = candidate_pairs(offsets, ids, n_distinct, threshold)
    sets = [ids[offsets[d]:offsets[d + 1]] for d in range(n)]
    for i, j in pairs.tolist():
        a, b = sets[i], sets[j]
        inter = np.intersect1d(a, b, assume_unique=True).shape[0]
        best[j] = max(best[j], inter / (a.shape[0] + b.shape[0] - inter))
    return best >= threshold, best


#: Bump when the corpus or its truth would come out differently from the same files.
CORPUS_VERSION = 1


def fingerprint(roots: Sequence[tuple[str, Path]] | None = None, with_docstrings: bool = True) -> str:
    """A short hash of what :func:`build_corpus` reads (paths, sizes, mtimes) and :data:`CORPUS_VERSION`: a cached
    corpus is reused only while it is the same."""
    import hashlib

    h = hashlib.sha256(f"v{CORPUS_VERSION}|{with_docstrings}".encode())
    for label, root in default_roots() if roots is None else roots:
        for p in _walk_sorted(Path(root)):
            if p.name == "METADATA" or p.name.upper().startswith(LICENCE_PREFIXES) or (with_docstrings and p.suffix == ".py"):
                try:
                    st = p.stat()
                except OSError:
                    continue
                h.update(f"{label}|{p.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def cached_corpus(cache_dir: str | os.PathLike, target_bytes: int = 6000, threshold: float = 0.8,
                  with_docstrings: bool = True, log=print) -> pa.Table:
    """:func:`build_corpus` with the truth columns ``near_duplicate`` (bool) and ``best_earlier_jaccard``
    (:func:`exact_near_duplicates`), built once (minutes) into
    ``cache_dir/realtext-<fingerprint>-<target>-<T>.parquet``."""
    import pyarrow.parquet as pq

    cache = Path(cache_dir)
    path = cache / f"realtext-{fingerprint(None, with_docstrings)}-{target_bytes}-{threshold}.parquet"
    if path.exists():
        return pq.read_table(path)
    log(f"building the real-text corpus into {path} (once; parses every .py file) ...")
    table = build_corpus(target_bytes, with_docstrings)
    dup, best = exact_near_duplicates(table.column("text"), threshold)
    table = table.append_column("near_duplicate", pa.array(dup)).append_column(
        "best_earlier_jaccard", pa.array(best))
    cache.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        pq.write_table(table, tmp)
    return table


__all__ = ["cached_corpus", "fingerprint", "build_corpus", "candidate_pairs", "chunk_text", "docstrings",
           "exact_near_duplicates", "licence_files", "shingle_sets", "site_packages", "source_texts", "default_roots"]

if __name__ == "__main__":  # python -m dedup.realtext CACHE_DIR: build (or find) the corpus with its truth
    t = cached_corpus(sys.argv[1])
    print(f"{t.num_rows} documents, {sum(t.column('near_duplicate').to_pylist())} near duplicates")
