"""Canary corpora for memorisation audits: natural-looking text with planted, repeated random
canaries, to train a language model on and check which canaries it regenerates as a function
of how many times each was planted (Carlini et al. 2019, 2022). No network, no downloaded data.

>>> t = generate_canary_corpus(n_background=3, repeats=(1, 2), canaries_per_repeat=1, canary_words=8, seed=0)
>>> t.num_rows, sorted(t.column("kind").to_pylist())
(6, ['background', 'background', 'background', 'canary', 'canary', 'canary'])
>>> sorted(zip(t.column("canary").to_pylist(), t.column("repeats").to_pylist()))[-3:]
[(0, 1), (1, 2), (1, 2)]
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dedup import synthetic

#: Schema of the tables returned by :func:`generate_canary_corpus`.
CANARY_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("kind", pa.string()), ("canary", pa.int64()),
                           ("repeats", pa.int64())])


def generate_canary_corpus(n_background: int = 400, repeats: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64),
                           canaries_per_repeat: int = 4, canary_words: int = 64, mean_bytes: int = 600,
                           seed: int = 0) -> pa.Table:
    """A small training corpus of natural-looking text with planted, repeated canaries.

    * Background: ``n_background`` distinct documents of :func:`dedup.synthetic.generate_corpus`'s
      English-like text model (lognormal lengths with mean ``mean_bytes`` bytes).
    * Canaries: for each repeat level ``r`` in ``repeats``, ``canaries_per_repeat`` canaries of
      ``canary_words`` words drawn i.i.d. UNIFORMLY from the whole vocabulary, joined with single
      spaces (unpredictable, so regenerating one can only be memorisation), each planted as ``r``
      byte-identical documents.
    * All rows are shuffled into uniformly random positions.

    Canaries ``k * canaries_per_repeat`` .. ``(k + 1) * canaries_per_repeat - 1`` have repeat
    level ``repeats[k]`` (each >= 1). Same arguments give an identical table of ``n_background +
    canaries_per_repeat * sum(repeats)`` rows, columns ``id`` (``doc-0000000``, zero-padded row
    index), ``text``, ``kind`` (``background`` / ``canary``), ``canary`` (int64: canary index, -1
    for background) and ``repeats`` (int64: copies of this exact text in the corpus).
    """
    for name, value, low in (("n_background", n_background, 0), ("canaries_per_repeat", canaries_per_repeat, 0),
                             ("canary_words", canary_words, 1), ("mean_bytes", mean_bytes, 1)):
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    reps = [int(r) for r in repeats]
    if any(r < 1 for r in reps):
        raise ValueError(f"repeats must all be >= 1, got {tuple(repeats)}")

    rng = np.random.default_rng(seed)
    seen: set[str] = set()

    def distinct(n: int, draw) -> list[str]:
        """``n`` texts of ``draw(k)`` (k: how many are still wanted), redrawing any text already seen."""
        out: list[str] = []
        while len(out) < n:
            for t in draw(n - len(out)):
                if t not in seen:
                    seen.add(t)
                    out.append(t)
        return out

    # Background: originals of the generate_corpus text model; canaries: uniform word draws, distinct from both.
    background = distinct(n_background, lambda k: synthetic.sample_documents(rng, k, mean_bytes))
    n_canary = canaries_per_repeat * len(reps)
    words = synthetic.vocabulary()
    canaries = distinct(n_canary, lambda k: [" ".join(words[i] for i in rng.integers(0, len(words), canary_words))])
    canary_rep = np.repeat(np.array(reps, dtype=np.int64), canaries_per_repeat)

    # Rows before shuffling: background, then each canary's copies.
    text = background + [canaries[c] for c in range(n_canary) for _ in range(canary_rep[c])]
    canary_col = np.concatenate([np.full(n_background, -1, dtype=np.int64), np.repeat(np.arange(n_canary), canary_rep)])
    rep_col = np.concatenate([np.ones(n_background, dtype=np.int64), np.repeat(canary_rep, canary_rep)])
    n = len(text)
    perm = rng.permutation(n)
    width = max(7, len(str(n - 1)))
    return pa.Table.from_arrays([
        pa.array([f"doc-{i:0{width}d}" for i in range(n)], type=pa.string()),
        pa.array([text[i] for i in perm.tolist()], type=pa.string()),
        pa.array(np.where(canary_col[perm] < 0, "background", "canary").tolist(), type=pa.string()),
        pa.array(canary_col[perm], type=pa.int64()), pa.array(rep_col[perm], type=pa.int64()),
    ], schema=CANARY_SCHEMA)


__all__ = ["generate_canary_corpus", "CANARY_SCHEMA"]
