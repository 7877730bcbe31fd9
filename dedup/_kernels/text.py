"""Text kernels over UTF-8 bytes: code point decoding, canonical text, pre-pass scan.

The canonical text of a document (definition: :mod:`dedup.normalize`) is its word
characters with every run of separators replaced by one ASCII space, no leading or
trailing space, ASCII letters lowercased here (all other case mapping and NFKC happen in
the Arrow pre-pass, :func:`dedup.normalize.prepass`).

``table`` is :func:`dedup.normalize.char_table`: one flag byte per code point (bit 0 = word
character) followed by a 128-entry ASCII map (``table[0x110000 + b]`` = lowercased byte b
for ASCII word characters, 0 for ASCII separators).
"""

import numba
import numpy as np

_ASCII_MAP = 0x110000
_ASCII_MAP_U = np.uint64(_ASCII_MAP)
_U1 = np.uint64(1)
_SPACE_U8 = np.uint8(32)
_HIGH_BITS = np.uint64(0x8080808080808080)


@numba.njit(cache=True, nogil=True, inline="always")
def utf8_char(data, pos, end):
    """(code point, byte length) at data[pos]; malformed bytes decode as U+FFFD, length 1."""
    b0 = np.int64(data[pos])
    if b0 < 0x80:
        return b0, 1
    if b0 >= 0xC2 and b0 < 0xE0 and pos + 1 < end:
        return ((b0 & 0x1F) << 6) | (np.int64(data[pos + 1]) & 0x3F), 2
    if b0 >= 0xE0 and b0 < 0xF0 and pos + 2 < end:
        return ((b0 & 0x0F) << 12) | ((np.int64(data[pos + 1]) & 0x3F) << 6) | (np.int64(data[pos + 2]) & 0x3F), 3
    if b0 >= 0xF0 and b0 < 0xF5 and pos + 3 < end:
        cp = (
            ((b0 & 0x07) << 18)
            | ((np.int64(data[pos + 1]) & 0x3F) << 12)
            | ((np.int64(data[pos + 2]) & 0x3F) << 6)
            | (np.int64(data[pos + 3]) & 0x3F)
        )
        if cp < 0x110000:
            return cp, 4
    return np.int64(0xFFFD), 1


@numba.njit(cache=True, nogil=True)
def canonicalize_words(data, start, end, table, canon, word_starts, word_ends):
    """Canonical text of ``data[start:end]`` into ``canon``, with word boundaries.

    Returns (canonical byte length n, number of words w). Word k spans
    ``canon[word_starts[k]:word_ends[k + 1]]`` (``word_ends`` is shifted by one). Sizes:
    ``canon`` >= end - start + 1 (+16 for the fast scheme's hash), ``word_starts`` and
    ``word_ends`` >= (end - start) // 2 + 2.

    ASCII bytes take a branch-free path with two stores per byte: every byte writes its
    lowercased character, or a space, at ``canon[n]``, and ``n`` advances on word
    characters and on the first separator after a word (so separator runs collapse to one
    space and leading ones vanish); a trailing space is dropped at the end. Word starts are
    stored unconditionally into the next free slot; ends follow from the next word's start.
    """
    # Unsigned indices: Numba adds a negative-index wraparound select to every signed
    # index, which costs ~40% of this loop (see hashing._read64le).
    n = _U1 - _U1
    n_words = _U1 - _U1
    prev = _U1 - _U1
    pos = np.uint64(start)
    stop = np.uint64(end)
    while pos < stop:
        b0 = data[pos]
        if b0 < 0x80:
            low = table[_ASCII_MAP_U + np.uint64(b0)]
            w = np.uint64(low != 0)
            canon[n] = low if w else _SPACE_U8
            word_starts[n_words] = n
            n_words += w & (_U1 - prev)
            n += w | prev
            prev = w
            pos += _U1
            continue
        cp, ln = utf8_char(data, np.int64(pos), end)
        w = np.uint64(table[cp] & 1)
        if w:
            if not prev:
                word_starts[n_words] = n
                n_words += _U1
            for j in range(ln):
                canon[n + np.uint64(j)] = data[pos + np.uint64(j)]
            n += np.uint64(ln)
        elif prev:
            canon[n] = _SPACE_U8
            n += _U1
        prev = w
        pos += np.uint64(ln)
    if n_words > 0 and not prev:
        n -= _U1  # the space written after the last word
    for k in range(1, np.int64(n_words)):
        word_ends[k] = word_starts[k] - 1
    word_ends[n_words] = n
    return np.int64(n), np.int64(n_words)


@numba.njit(cache=True, nogil=True)
def canonicalize_chars(data, start, end, table, canon, char_starts):
    """Canonical text of ``data[start:end]`` into ``canon``, with code point offsets.

    Returns (canonical byte length n, number of code points c); code point i of the
    canonical text starts at ``char_starts[i]`` and ``char_starts[c] == n``. Sizes:
    ``canon`` >= end - start + 1, ``char_starts`` >= end - start + 1.
    """
    n = 0
    n_chars = 0
    in_word = False
    pos = start
    while pos < end:
        b0 = data[pos]
        if b0 < 0x80:
            low = table[_ASCII_MAP + b0]
            cp = np.int64(b0)
            ln = 1
            is_word = low != 0
        else:
            cp, ln = utf8_char(data, pos, end)
            low = 0
            is_word = (table[cp] & 1) != 0
        if is_word:
            if not in_word and n > 0:
                char_starts[n_chars] = n
                n_chars += 1
                canon[n] = 32
                n += 1
            in_word = True
            char_starts[n_chars] = n
            n_chars += 1
            if ln == 1:
                canon[n] = low
            else:
                for j in range(ln):
                    canon[n + j] = data[pos + j]
            n += ln
        else:
            in_word = False
        pos += ln
    char_starts[n_chars] = n
    return n, n_chars


@numba.njit(cache=True, nogil=True, inline="always")
def _next_non_ascii(data, pos, end):
    """First position >= pos holding a byte >= 0x80 (or end); 8 bytes at a time."""
    while pos + 8 <= end:
        word = (
            np.uint64(data[pos]) | (np.uint64(data[pos + 1]) << np.uint64(8))
            | (np.uint64(data[pos + 2]) << np.uint64(16)) | (np.uint64(data[pos + 3]) << np.uint64(24))
            | (np.uint64(data[pos + 4]) << np.uint64(32)) | (np.uint64(data[pos + 5]) << np.uint64(40))
            | (np.uint64(data[pos + 6]) << np.uint64(48)) | (np.uint64(data[pos + 7]) << np.uint64(56))
        )
        if word & _HIGH_BITS != 0:
            break
        pos += 8
    while pos < end and data[pos] < 0x80:
        pos += 1
    return pos


@numba.njit(cache=True, nogil=True)
def prepass_status(data, offsets, valid, table, bits, cf_bit, status):
    """Per document: 0 = nothing to do, 1 = every code point flagged in ``bits`` is
    context-free (``cf_bit`` set in its flags, or ``cf_bit == 0``), 2 = needs utf8proc."""
    for i in range(status.shape[0]):
        status[i] = 0
        if not valid[i]:
            continue
        end = offsets[i + 1]
        pos = _next_non_ascii(data, offsets[i], end)
        while pos < end:
            cp, ln = utf8_char(data, pos, end)
            f = table[cp]
            if f & bits:
                if cf_bit == 0 or f & cf_bit:
                    status[i] = 1
                else:
                    status[i] = 2
                    break
            pos = _next_non_ascii(data, pos + ln, end)


@numba.njit(cache=True, nogil=True, inline="always")
def _find(cps, cp):
    """Index of ``cp`` in the sorted array ``cps`` (it must be there)."""
    lo = 0
    hi = cps.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cps[mid] < cp:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True, inline="always")
def _rewrite(data, s, e, table, bits, map_cps, map_off, map_blob, out, o, write):
    """The per-character pre-pass rewrite of ``data[s:e]``: code points flagged in ``bits``
    become their mapped bytes, everything else is copied. Returns the rewritten length and,
    with ``write``, stores it at ``out[o:]`` (the one definition both passes use)."""
    n = 0
    pos = s
    while pos < e:
        nxt = _next_non_ascii(data, pos, e)
        if write:
            out[o + n:o + n + nxt - pos] = data[pos:nxt]
        n += nxt - pos
        pos = nxt
        if pos >= e:
            break
        cp, ln = utf8_char(data, pos, e)
        if table[cp] & bits:
            j = _find(map_cps, cp)
            m = map_off[j + 1] - map_off[j]
            if write:
                out[o + n:o + n + m] = map_blob[map_off[j]:map_off[j + 1]]
            n += m
        else:
            if write:
                out[o + n:o + n + ln] = data[pos:pos + ln]
            n += ln
        pos += ln
    return n


@numba.njit(cache=True, nogil=True)
def prepass_lengths(data, offsets, valid, status, table, bits, map_cps, map_off, arrow_offsets, out_offsets):
    """Byte length of each document after the pre-pass, as offsets (out_offsets[0] = 0).

    Status-2 documents take their length from ``arrow_offsets`` (the utf8proc results of
    the status-2 documents, in order); status-1 documents are rewritten code point by
    code point through the map (:func:`_rewrite`, counting only)."""
    k = 0
    out_offsets[0] = 0
    empty = np.zeros(0, dtype=np.uint8)
    for i in range(status.shape[0]):
        s = offsets[i]
        e = offsets[i + 1]
        if not valid[i]:
            length = 0
        elif status[i] == 0:
            length = e - s
        elif status[i] == 2:
            length = arrow_offsets[k + 1] - arrow_offsets[k]
            k += 1
        else:
            length = _rewrite(data, s, e, table, bits, map_cps, map_off, empty, empty, 0, False)
        out_offsets[i + 1] = out_offsets[i] + length


@numba.njit(cache=True, nogil=True)
def prepass_fill(data, offsets, valid, status, table, bits, map_cps, map_off, map_blob, arrow_data, arrow_offsets, out_offsets, out):
    """Write every document's pre-pass bytes at ``out[out_offsets[i]:out_offsets[i+1]]``."""
    k = 0
    for i in range(status.shape[0]):
        if not valid[i]:
            continue
        s = offsets[i]
        e = offsets[i + 1]
        o = out_offsets[i]
        if status[i] == 0:
            out[o:o + e - s] = data[s:e]
        elif status[i] == 2:
            a = arrow_offsets[k]
            b = arrow_offsets[k + 1]
            out[o:o + b - a] = arrow_data[a:b]
            k += 1
        else:
            _rewrite(data, s, e, table, bits, map_cps, map_off, map_blob, out, o, True)
