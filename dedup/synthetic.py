"""Deterministic synthetic corpora with planted duplicates and exact ground truth, for the tests, the benchmarks and
the offline demo: no network, no downloaded data (the audits' canary corpora, :mod:`audit.canaries`, share the text
model; the demo corpus is :mod:`pipelines.demo`'s).

Text model
    English-like prose: a few hundred common English words (by frequency), ~40k pronounceable pseudo-words built from
    syllables and a handful of non-ASCII words (``café``, full-width ``１２３`` that NFKC folds to ``123``, the ``ﬁ``
    ligature, a decomposed accent, ...), drawn i.i.d. with Zipf-Mandelbrot frequencies ``p(r) ∝ 1 / (r + 2.7)``.
    Sentences have 5-25 words, a capitalised first word and end in ``.``, ``?`` or ``!``; a word is occasionally
    followed by a comma, a semicolon or an em dash, or wrapped in curly quotes. Every token renders to exactly one
    canonical word (punctuation and quotes are separators), so Jaccard is measured from token ids; the tests check
    it against :func:`dedup.normalize.shingles`. Two unrelated documents share a word 5-gram with probability
    ~ ``m² (Σ p²)⁵`` ≈ 1e-5 for 1 KB documents, so different clusters have Jaccard 0 in practice
    (:func:`true_duplicates` assumes it).

Rows
    * ``original``: fresh text.
    * ``exact``: a copy of an earlier original with the same canonical text (:func:`dedup.normalize.canonical_text`):
      about a quarter byte-identical, the rest with ASCII case, whitespace, punctuation and/or NFKC-equivalent
      Unicode changes (full-width letters, decomposed accents).
    * ``near``: an earlier original with word edits (substitutions 60%, insertions 20%, deletions 20%). With each
      word edited with probability ``e``, a word 5-gram survives with probability ``q = (1 - e)^5``; with ``m``
      shingles a side, ``|A ∩ B| ≈ q m`` and ``|A ∪ B| ≈ 2m - q m``, so ``J ≈ q / (2 - q)``, i.e. ``q = 2J / (1 + J)``
      and ``e = 1 - q^(1/5)`` (an insertion or deletion breaks about 5 shingles too). A target ``J`` is drawn
      uniformly from ``near_jaccard``, the number of edits as Binomial(m, e) (at least one) for an ``m``-word source,
      and the true Jaccard measured exactly; a draw outside ``near_jaccard`` is redrawn with fewer or more edits (up
      to 16 draws, then the closest is kept: only when the range is unreachable, e.g. above ``(m-5)/(m+5)``, one edit).

Duplicate rows are placed uniformly at random, each after its source, drawn uniformly from the originals before it
(so a source may have several duplicates).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import math
import pathlib
import re
import string

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dedup import normalize
from dedup.io import replacing

__all__ = ["generate_corpus", "true_duplicates", "jaccard", "write_shards", "sample_documents", "vocabulary", "SCHEMA"]

#: Schema of the tables returned by :func:`generate_corpus`.
SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("cluster", pa.int64()), ("kind", pa.string()),
                    ("source_jaccard", pa.float64())])

# Roughly in decreasing frequency (the rank order sets the Zipf weights).
_COMMON_WORDS = """
the of and to a in is that for it as was with be by on not he this are or his from at which but have an they you
were her she there one been all their has would will more if no when so can said who what up out them we into time
its about only other some could these two may first then do any like my now over such our man me even most made
after also did many before must through back years where much your way well down should because each just those
people how too little state good very make world still own see men work long get here between both life being under
never day same another know while last might us great old year off come since against go came right used take three
states himself few house use during without again place around however home small found thought went say part once
general high upon school every does got united left number course war until always away something fact though water
less public put think almost hand enough far took head yet government system better set told nothing night end why
called didn't eyes find going look asked later knew point next city business give group toward young days let room
president side social given present several order national possible rather second face per among form important
often things looked early white john case become large big need four within felt along children saw best church ever
least power development light thing seemed family interest want members mind country area others done turned
although open god service certain kind problem began different door thus help sense means whole matter perhaps
itself york times law human line above name example action company hands local show whether five history gave today
either act feet across taken past quite anything having seen death experience body word half really field car words
already themselves information tell together college shall money period held keep sure probably free real seems
behind cannot political air question office brought whose special heard major problems ago became federal moment
study available known result street economic boy position reason change south board individual job areas society
west close turn love community true court force full seem am wife future age voice center woman control common
necessary policy front sometimes six girl clear further land run students provide feel party able mother music
education university child effect level stood military town short morning total outside rate figure class art
century washington north usually leave therefore evidence plan
"""

# Non-ASCII words, each one canonical word; several need NFKC to reach it (full-width, the fi ligature, an accent).
_EXOTIC_WORDS = ["café", "naïve", "Zürich", "résumé", "façade", "jalapeño", "São", "Ångström", "crème", "brûlée",
                 "déjà", "über", "señor", "Łódź", "Kraków", "smörgåsbord", "１２３", "２０２４", "ｔｏｋｙｏ", "ﬁnance",
                 "coöperate", "cafe\u0301", "Ελλάδα", "Москва", "naïveté", "Malmö", "piñata", "Düsseldorf"]
_ONSETS = ["", "b", "br", "c", "ch", "cl", "d", "dr", "f", "fl", "fr", "g", "gl", "gr", "h", "j", "k", "l", "m", "n",
           "p", "pl", "pr", "qu", "r", "s", "sh", "sl", "sp", "st", "t", "th", "tr", "v", "w", "z"]
_NUCLEI = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "oo", "ou", "io", "y"]
_CODAS = ["", "", "", "n", "r", "s", "l", "t", "m", "nd", "st", "ck", "ng", "x"]

_N_PSEUDO = 40_000
_ZIPF_SHIFT = 2.7
_ZIPF_EXPONENT = 1.0

# Token styles: style = cap + 2 * quote + 4 * punct.
_PUNCT = ["", ",", ".", "?", "!", ";", " —"]
_P_COMMA, _P_SEMI, _P_DASH, _P_QUOTE = 0.07, 0.006, 0.01, 0.012
_END_PUNCT_P = np.array([0.9, 0.05, 0.05])  # '.', '?', '!'
_STYLE_BITS = 5  # token = word_id << 5 | style
_SENT_MIN, _SENT_MAX = 5, 25
_MEAN_SENT = (_SENT_MIN + _SENT_MAX) / 2
_NEAR_TRIES = 16


class _Vocab:
    """The fixed vocabulary: word strings, Zipf CDF, canonical ids and rendering tables."""

    def __init__(self) -> None:
        common = list(dict.fromkeys(w for w in _COMMON_WORDS.split() if "'" not in w))
        rng = np.random.default_rng(0x5EED)
        seen = set(common) | {w.lower() for w in _EXOTIC_WORDS}
        pseudo: list[str] = []
        while len(pseudo) < _N_PSEUDO:
            m = 4 * _N_PSEUDO
            n_syl = rng.choice(np.array([1, 2, 3, 4]), size=m, p=[0.15, 0.55, 0.26, 0.04])
            ons, nuc, cod = (rng.integers(0, len(part), size=(m, 4)) for part in (_ONSETS, _NUCLEI, _CODAS))
            for i in range(m):
                w = "".join(_ONSETS[ons[i, k]] + _NUCLEI[nuc[i, k]] + _CODAS[cod[i, k]] for k in range(n_syl[i]))
                if len(w) >= 2 and w not in seen:
                    seen.add(w)
                    pseudo.append(w)
                    if len(pseudo) == _N_PSEUDO:
                        break
        words = common + pseudo
        # Spread the exotic words over ranks ~150..3000 (occasional, not vanishing).
        for r, w in sorted(zip(np.linspace(150, 3000, len(_EXOTIC_WORDS)).astype(int), _EXOTIC_WORDS)):
            words.insert(int(r), w)
        self.words = words
        weights = 1.0 / (np.arange(len(words)) + 1 + _ZIPF_SHIFT) ** _ZIPF_EXPONENT
        self.p = weights / weights.sum()
        self.cdf = np.cumsum(self.p)
        self.cdf[-1] = 1.0
        # Word pieces, indexed word_id * 2 + cap.
        self.pieces = pieces = [p for w in words for p in (w, w[:1].upper() + w[1:])]
        self.pieces_arr = pa.array(pieces, type=pa.string())
        # Canonical word id of each piece (every piece must be exactly one canonical word).
        canon = normalize.canonical_words_batch(self.pieces_arr)
        for piece, ws in zip(pieces, canon):
            if len(ws) != 1:  # pragma: no cover - guarded by the vocabulary test
                raise AssertionError(f"vocabulary piece {piece!r} is not one word: {ws}")
        ids: dict[str, int] = {}
        self.canon_id = np.array([ids.setdefault(ws[0], len(ids)) for ws in canon], dtype=np.int64)
        # Affixes: the prefix by quote, the suffix by quote * len(_PUNCT) + punct.
        self.prefix_arr = pa.array(["", "“"], type=pa.string())
        self.suffix_arr = pa.array([q + p for q in ("", "”") for p in _PUNCT], type=pa.string())
        piece_bytes = np.array([len(s.encode("utf-8")) for s in pieces[::2]], dtype=np.float64)
        # Expected UTF-8 bytes per token (word, affixes, separating space), to size docs.
        affix = _P_COMMA * 1 + _P_SEMI * 1 + _P_DASH * 4 + _P_QUOTE * 6 + 1.0 / _MEAN_SENT
        self.bytes_per_token = float(self.p @ piece_bytes) + affix + 1.0

        # Guide table for inverse-CDF sampling: bucket b of [0, 1) maps to searchsorted(cdf, b / K); a draw in a
        # bucket whose ends map to the same word (~96%) needs no search. Same result as searchsorted(cdf, u, "right").
        k = 1 << 20
        guide = np.minimum(np.searchsorted(self.cdf, np.arange(k + 1) / k, side="right"), len(words) - 1)
        guide = guide.astype(np.int32)
        self.guide_k, self.guide_lo, self.guide_hi = k, guide[:-1].copy(), guide[1:].copy()

    def sample(self, rng: np.random.Generator, size: int, chunk: int = 1 << 20) -> np.ndarray:
        """``size`` word ids with the Zipf probabilities (inverse CDF of uniforms)."""
        out = np.empty(size, dtype=np.int64)
        last = len(self.words) - 1
        for start in range(0, size, chunk):
            u = rng.random(min(chunk, size - start))
            b = (u * self.guide_k).astype(np.int32)
            ids = self.guide_lo[b]
            amb = np.flatnonzero(ids != self.guide_hi[b])
            ids[amb] = np.minimum(np.searchsorted(self.cdf, u[amb], side="right"), last)
            out[start : start + len(u)] = ids
        return out


@functools.lru_cache(maxsize=1)
def _vocab() -> _Vocab:
    return _Vocab()


def _set_jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def jaccard(a: str, b: str, ngram: int = 5, unit: str = "word") -> float:
    """Exact Jaccard ``|A ∩ B| / |A ∪ B|`` of two documents' :func:`dedup.normalize.shingles` sets (two without
    shingles: 1.0; one: 0.0).

    Example:
        >>> jaccard("a b c d e f", "A b c d e g")  # {abcde, bcdef} vs {abcde, bcdeg}
        0.3333333333333333
    """
    return _set_jaccard(set(normalize.shingles(a, ngram, unit)), set(normalize.shingles(b, ngram, unit)))


def _token_grams(tokens: np.ndarray, canon_id: np.ndarray, n: int = 5) -> set:
    """Word n-gram set of a token sequence as tuples of canonical word ids, in bijection with the rendered text's
    shingle set (one canonical word per token)."""
    c = canon_id[(tokens >> _STYLE_BITS) * 2 + (tokens & 1)].tolist()
    if len(c) < n:
        return {tuple(c)} if c else set()
    return set(zip(*(c[k:] for k in range(n))))


def _sample_originals(rng: np.random.Generator, vocab: _Vocab, n: int,
                      mean_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Token stream and document offsets (length n + 1) for n fresh documents."""
    sigma = 0.35
    doc_bytes = rng.lognormal(math.log(mean_bytes) - sigma**2 / 2, sigma, size=n)
    doc_bytes = np.clip(doc_bytes, 0.25 * mean_bytes, 4.0 * mean_bytes)
    targets = np.cumsum(doc_bytes / vocab.bytes_per_token)
    need = targets[-1] if n else 0.0
    lens = rng.integers(_SENT_MIN, _SENT_MAX + 1, size=int(need / _MEAN_SENT * 1.1) + n + 16)
    ends = np.cumsum(lens)
    while ends[-1] < need + n * _SENT_MAX:  # rare: extend the sentence stream
        lens = np.concatenate([lens, rng.integers(_SENT_MIN, _SENT_MAX + 1, size=len(lens))])
        ends = np.cumsum(lens)
    # Doc d ends at the first sentence end >= its cumulative target, at least one sentence per doc.
    s = np.searchsorted(ends, targets, side="left")
    ar = np.arange(n)
    s = np.maximum.accumulate(s - ar) + ar
    n_sent = int(s[-1]) + 1 if n else 0
    lens, ends = lens[:n_sent], ends[:n_sent]
    total = int(ends[-1]) if n_sent else 0
    offsets = np.concatenate([[0], ends[s]]).astype(np.int64)

    words = vocab.sample(rng, total)
    # Styles: interior punctuation, quotes; then sentence starts and ends.
    u = rng.random(total)
    punct = np.zeros(total, dtype=np.int64)
    punct[u < _P_COMMA + _P_SEMI + _P_DASH] = 6
    punct[u < _P_COMMA + _P_SEMI] = 5
    punct[u < _P_COMMA] = 1
    quote = (rng.random(total) < _P_QUOTE).astype(np.int64)
    cap = np.zeros(total, dtype=np.int64)
    cap[ends - lens] = 1  # sentence starts
    punct[ends - 1] = rng.choice(np.array([2, 3, 4]), size=n_sent, p=_END_PUNCT_P)
    tokens = (words << _STYLE_BITS) | cap | (quote << 1) | (punct << 2)
    return tokens, offsets


def _make_near(rng: np.random.Generator, vocab: _Vocab, src: np.ndarray, lo: float,
               hi: float) -> tuple[np.ndarray, float]:
    """Edit ``src`` (tokens) so that its 5-gram Jaccard with ``src`` lies in [lo, hi]."""
    target = rng.uniform(lo, hi)
    q = 2 * target / (1 + target)
    e = 1 - q ** (1 / 5)
    m = len(src)
    src_grams = _token_grams(src, vocab.canon_id)
    best = (math.inf, src, 0.0)  # (distance from [lo, hi], tokens, Jaccard)
    k = int(rng.binomial(m, e))
    for _ in range(_NEAR_TRIES):
        k = min(max(1, k), m)
        pos = rng.choice(m, size=k, replace=False)
        u = rng.random(k)
        op = (u >= 0.6).astype(np.int8) + (u >= 0.8)  # 0 sub 60%, 1 insert 20%, 2 delete
        out = src.copy()
        # (Each step below is a no-op on an empty set of positions, and draws nothing from rng.)
        sub, ins, dele = pos[op == 0], pos[op == 1], pos[op == 2]
        old = out[sub] >> _STYLE_BITS
        new = vocab.sample(rng, len(sub))
        same = new == old
        new[same] = (new[same] + 1) % len(vocab.words)
        out[sub] = (new << _STYLE_BITS) | (out[sub] & ((1 << _STYLE_BITS) - 1))
        keep = np.ones(m, dtype=bool)
        keep[dele] = False
        # Cosmetics (canonical words unchanged): a deleted sentence start passes its capital to the next kept word,
        # a deleted sentence end its final mark to the previous kept word.
        for d in dele.tolist():
            t = int(out[d])
            if t & 1 and d + 1 < m and keep[d + 1]:
                out[d + 1] |= 1
            if (t >> 2) & 7 in (2, 3, 4) and d > 0 and keep[d - 1]:
                out[d - 1] = (int(out[d - 1]) & ~(7 << 2)) | (t & (7 << 2))
        new_tok = vocab.sample(rng, len(ins)) << _STYLE_BITS
        at = np.sort(ins) + 1  # new words go after the chosen ones, in position order, and are kept
        out = np.insert(out, at, new_tok)[np.insert(keep, at, True)]
        j = _set_jaccard(src_grams, _token_grams(out, vocab.canon_id))
        if lo <= j <= hi:
            return out, j
        dist = lo - j if j < lo else j - hi
        if dist < best[0]:
            best = (dist, out, j)
        # Missed: fewer edits if too dissimilar, more if too similar, and redraw.
        step = max(1, k // 8)
        k = k - step if j < lo else k + step
    return best[1], best[2]


_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_FULLWIDTH = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in string.ascii_letters})
_WS_SEPS = ["  ", "\n", "\t", " \n ", "   ", "\r\n"]


def _perturb_exact(rng: np.random.Generator, text: str) -> str:
    """A raw variant of ``text`` with the same canonical text (may be byte-identical)."""
    if rng.random() < 0.25:
        return text
    ops = rng.random(4) < 0.45
    if not ops.any():
        ops[rng.integers(4)] = True
    if ops[0]:  # ASCII case changes (non-ASCII untouched, so lowercase round-trips)
        mode = rng.integers(3)
        if mode < 2:
            text = text.translate((_ASCII_UPPER, _ASCII_LOWER)[mode])
        else:
            ws = text.split(" ")
            for i in np.flatnonzero(rng.random(len(ws)) < 0.2).tolist():
                ws[i] = ws[i].translate(_ASCII_UPPER if ws[i][:1].islower() else _ASCII_LOWER)
            text = " ".join(ws)
    if ops[1]:  # punctuation: changed, dropped or added between words
        mode = rng.integers(3)
        if mode == 0:
            text = text.replace(",", "").replace(";", ",")
        elif mode == 1:
            text = text.replace(". ", "! ").replace(" —", " --").replace("“", '"').replace("”", '"')
        else:
            ws = text.split(" ")
            marks = rng.choice(np.array([",", " -", ":", "...", " (", ")"]), size=len(ws))
            add = rng.random(len(ws)) < 0.05
            text = " ".join(w + str(mk) if a else w for w, mk, a in zip(ws, marks, add))
    if ops[2]:  # Unicode that NFKC folds: full-width letters, decomposed accents
        ws = text.split(" ")
        for i in np.flatnonzero(rng.random(len(ws)) < 0.05).tolist():
            ws[i] = ws[i].translate(_FULLWIDTH)
        text = " ".join(ws).replace("é", "e\u0301").replace("ü", "u\u0308")
    if ops[3]:  # whitespace
        ws = text.split(" ")
        seps = rng.choice(len(_WS_SEPS), size=max(len(ws) - 1, 0))
        use = rng.random(len(seps)) < 0.1
        text = ws[0] + "".join((_WS_SEPS[s] if a else " ") + w for w, s, a in zip(ws[1:], seps.tolist(), use.tolist()))
        if rng.random() < 0.5:
            text = "\n  " + text + " \n"
    return text


def _render(vocab: _Vocab, tokens: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """Render token sequences (doc i = tokens[offsets[i]:offsets[i+1]]) to strings."""
    word_piece = vocab.pieces_arr.take(pa.array((tokens >> _STYLE_BITS) * 2 + (tokens & 1)))
    quote = (tokens >> 1) & 1
    punct = (tokens >> 2) & 7
    prefix = vocab.prefix_arr.take(pa.array(quote))
    suffix = vocab.suffix_arr.take(pa.array(quote * len(_PUNCT) + punct))
    tok_str = pc.binary_join_element_wise(prefix, word_piece, suffix, "")
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), tok_str), " ")


def sample_documents(rng: np.random.Generator, n: int, mean_bytes: int) -> list[str]:
    """``n`` fresh documents of the text model (the ``original`` rows of :func:`generate_corpus`: whole sentences,
    lognormal lengths of mean ``mean_bytes`` UTF-8 bytes), drawn from ``rng``.

    >>> docs = sample_documents(np.random.default_rng(0), 2, 200)
    >>> len(docs), docs[0][0].isupper(), docs[0][-1] in ".?!"
    (2, True, True)
    """
    vocab = _vocab()
    return _render(vocab, *_sample_originals(rng, vocab, n, mean_bytes)).to_pylist()


def vocabulary() -> list[str]:
    """The text model's words, most frequent first, each exactly one canonical word."""
    return _vocab().words


def generate_corpus(n_docs: int, mean_bytes: int = 1000, exact_frac: float = 0.05, near_frac: float = 0.10,
                    near_jaccard: tuple[float, float] = (0.5, 1.0), seed: int = 0) -> pa.Table:
    """A deterministic corpus of ``n_docs`` rows with planted exact and near duplicates (module docstring); the same
    arguments give the same table. ``mean_bytes``: mean UTF-8 length (lognormal, sigma 0.35, clipped to 0.25x-4x;
    whole sentences, so below ~150 bytes the mean is larger); ``round(exact_frac * n_docs)`` exact and
    ``round(near_frac * n_docs)`` near duplicates.

    Columns (:data:`SCHEMA`): ``id`` (``doc-0000000``, the zero-padded row index), ``text``, ``cluster`` (the row of
    the original it derives from), ``kind`` (``original`` / ``exact`` / ``near``) and ``source_jaccard`` (the exact
    Jaccard of :func:`dedup.normalize.shingles` sets with that original; 1.0 for exact duplicates, null for originals).
    """
    if n_docs < 0:
        raise ValueError(f"n_docs must be >= 0, got {n_docs}")
    if mean_bytes < 1:
        raise ValueError(f"mean_bytes must be >= 1, got {mean_bytes}")
    if not (exact_frac >= 0 and near_frac >= 0 and exact_frac + near_frac < 1):  # NaN fails too
        raise ValueError(f"need exact_frac >= 0, near_frac >= 0, exact_frac + near_frac < 1, got {exact_frac:g} and "
                         f"{near_frac:g}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    lo, hi = float(near_jaccard[0]), float(near_jaccard[1])
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"near_jaccard must satisfy 0 < lo <= hi <= 1, got {near_jaccard}")
    if n_docs == 0:
        return SCHEMA.empty_table()

    vocab = _vocab()
    rng = np.random.default_rng(seed)
    n_exact = min(int(round(exact_frac * n_docs)), n_docs - 1)
    n_near = min(int(round(near_frac * n_docs)), n_docs - 1 - n_exact)
    n_orig = n_docs - n_exact - n_near

    # Row layout (module docstring); a duplicate is never row 0.
    dup_rows = np.sort(rng.choice(np.arange(1, n_docs), size=n_exact + n_near, replace=False))
    dup_kind = np.full(len(dup_rows), 2, dtype=np.int8)  # 1 exact, 2 near
    dup_kind[rng.permutation(len(dup_rows))[:n_exact]] = 1
    kind_code = np.zeros(n_docs, dtype=np.int8)
    kind_code[dup_rows] = dup_kind
    orig_rows = np.flatnonzero(kind_code == 0)
    n_before = np.searchsorted(orig_rows, dup_rows)  # >= 1 since row 0 is original
    cluster = np.arange(n_docs, dtype=np.int64)
    cluster[dup_rows] = orig_rows[(rng.random(len(dup_rows)) * n_before).astype(np.int64)]
    orig_index = np.full(n_docs, -1, dtype=np.int64)  # row -> index among originals
    orig_index[orig_rows] = np.arange(n_orig)

    tokens, offsets = _sample_originals(rng, vocab, n_orig, mean_bytes)

    # Near duplicates: edited token sequences, Jaccard measured from canonical word ids.
    source_j = np.full(n_docs, np.nan)
    near_rows = dup_rows[dup_kind == 2]
    near_tokens: list[np.ndarray] = []
    for r in near_rows.tolist():
        o = orig_index[cluster[r]]
        out, source_j[r] = _make_near(rng, vocab, tokens[offsets[o] : offsets[o + 1]], lo, hi)
        near_tokens.append(out)
    exact_rows = dup_rows[dup_kind == 1]
    source_j[exact_rows] = 1.0
    near_offsets = np.concatenate(([0], np.cumsum([len(t) for t in near_tokens], dtype=np.int64)))

    # Render originals then near duplicates, in that order (chunks bound memory).
    pieces: list[pa.Array] = []
    chunk = 20_000
    for toks, offs in ((tokens, offsets), (np.concatenate([tokens[:0], *near_tokens]), near_offsets)):
        for s in range(0, len(offs) - 1, chunk):
            e = min(len(offs) - 1, s + chunk)
            pieces.append(_render(vocab, toks[offs[s] : offs[e]], offs[s : e + 1] - offs[s]))

    # Exact duplicates: raw-text variants of their source's text.
    src_text = pa.chunked_array(pieces[: (n_orig + chunk - 1) // chunk], type=pa.string())
    exact_src = src_text.take(pa.array(orig_index[cluster[exact_rows]])).to_pylist()
    pieces.append(pa.array([_perturb_exact(rng, t) for t in exact_src], type=pa.string()))

    pos = np.empty(n_docs, dtype=np.int64)  # each row's position in concat(originals, near, exact)
    pos[np.concatenate([orig_rows, near_rows, exact_rows])] = np.arange(n_docs)
    text = pa.chunked_array(pieces, type=pa.string()).take(pa.array(pos)).combine_chunks()

    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(n_docs)), pa.string()), max(7, len(str(n_docs - 1))), "0")
    ids = pc.binary_join_element_wise("doc-", digits, "")
    kinds = pa.array(np.array(["original", "exact", "near"])[kind_code].tolist(), type=pa.string())
    sj = pa.array(source_j, type=pa.float64(), from_pandas=True)  # NaN -> null
    return pa.Table.from_arrays([ids, text, pa.array(cluster, type=pa.int64()), kinds, sj], schema=SCHEMA)


def earlier_jaccards(table: pa.Table, ngram: int = 5, unit: str = "word") -> list[list[float]]:
    """Per row, the exact Jaccard of its :func:`dedup.normalize.shingles` set with each EARLIER row of its cluster
    (empty for a cluster's first row), by the batched path (:func:`dedup.normalize.canonical_words_batch`). Rows of
    different clusters are taken to have Jaccard 0 (module docstring), so only clusters of two rows or more are
    shingled."""
    normalize.check_shingling(ngram, unit)
    result: list[list[float]] = [[] for _ in range(table.num_rows)]
    cluster = np.asarray(table.column("cluster").to_numpy(zero_copy_only=False), dtype=np.int64)
    order = np.argsort(cluster, kind="stable")  # rows grouped by cluster, in row order
    _, starts, counts = np.unique(cluster[order], return_index=True, return_counts=True)
    ends = starts + counts
    multi = counts >= 2
    if not multi.any():
        return result
    rows_in = np.concatenate([order[s:e] for s, e in zip(starts[multi], ends[multi])])
    words = normalize.canonical_words_batch(table.column("text").take(pa.array(rows_in)))
    sets = {int(r): set(normalize.word_shingles(w, ngram, unit)) for r, w in zip(rows_in.tolist(), words)}
    for s, e in zip(starts[multi].tolist(), ends[multi].tolist()):
        members = order[s:e].tolist()  # ascending row order (stable sort)
        for jj, row in enumerate(members[1:], 1):
            result[row] = [_set_jaccard(sets[earlier], sets[row]) for earlier in members[:jj]]
    return result


def true_duplicates(table: pa.Table, threshold: float, ngram: int = 5, unit: str = "word") -> np.ndarray:
    """Ground truth: row j is True iff some earlier row of its cluster has exact shingle-set Jaccard >=
    ``threshold`` with it (:func:`earlier_jaccards`)."""
    return np.array([any(j >= threshold for j in js) for js in earlier_jaccards(table, ngram, unit)], dtype=bool)


#: The names write_shards gives its files (part-00000.parquet, ...), and no other file's.
SHARD_FILE = re.compile(r"part-\d{5,}\.(parquet|jsonl|jsonl\.gz|jsonl\.zst)")


def write_shards(table: pa.Table, out_dir, n_shards: int, fmt: str = "parquet") -> list[pathlib.Path]:
    """Split ``table`` in row order into ``n_shards`` contiguous files ``out_dir/part-00000.<fmt>`` (``parquet``,
    ``jsonl``, ``jsonl.gz`` or ``jsonl.zst``) whose sorted paths, returned, give the row order; sizes differ by at most
    one row (trailing shards may be empty). Parquet row groups hold 10,000 rows; a JSON line holds one row with every
    column (``ensure_ascii=False``). Each file is written whole, then renamed into place (:func:`dedup.io.replacing`).
    """
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    if fmt not in ("parquet", "jsonl", "jsonl.gz", "jsonl.zst"):
        raise ValueError(f"fmt must be parquet, jsonl, jsonl.gz or jsonl.zst, got {fmt!r}")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(n_shards - 1)))
    bounds = np.linspace(0, table.num_rows, n_shards + 1).round().astype(np.int64)
    paths: list[pathlib.Path] = []
    for k in range(n_shards):
        part = table.slice(int(bounds[k]), int(bounds[k + 1] - bounds[k]))
        path = out / f"part-{k:0{width}d}.{fmt}"
        with replacing(path) as tmp:
            if fmt == "parquet":
                import pyarrow.parquet as pq
                pq.write_table(part, tmp, row_group_size=10_000)
            else:
                _write_jsonl(part, tmp, fmt)
        paths.append(path)
    return paths


def _write_jsonl(part: pa.Table, tmp: pathlib.Path, fmt: str) -> None:
    with open(tmp, "wb") as raw:
        if fmt == "jsonl.gz":  # no file name or time in the header: the same bytes from any process
            sink = gzip.GzipFile("", "wb", fileobj=raw, mtime=0)
        elif fmt == "jsonl.zst":  # Arrow's zstd stream codec writes standard zstd frames
            sink = pa.CompressedOutputStream(raw, "zstd")
        else:
            sink = contextlib.nullcontext(raw)
        with sink as f:
            for batch in part.to_batches(max_chunksize=10_000):
                f.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in batch.to_pylist()).encode())
