"""Text kernels over UTF-8 bytes: code point decoding, canonical text (with step 1 of the normalisation).

The canonical text and step 1 (NFKC, lowercase) are defined in :mod:`dedup.normalize`. Step 1
happens here for every code point that can be rewritten alone: ASCII letters through the ASCII
map, flagged context-free code points through their replacement (``map_*``), combining marks
(``MARK``) kept in place or composed with the starter before them (:func:`_mark`). A document
holding any other flagged code point, or marks out of canonical order, or a composition this
does not cover (after another mark, say) is given up on: the canonicalisers return -1 and the
caller runs Arrow's utf8proc on it and canonicalises the result with ``bits = 0``
(:class:`dedup.sketch.Sketcher`).

Arguments shared by the canonicalisers: ``table``, :func:`dedup.normalize.char_table` (layout:
:mod:`dedup._kernels`); ``bits`` (0: replace nothing), ``cf_bit`` and the
:class:`dedup.normalize.CharMap` arrays ``map_cps``, ``map_off``, ``map_blob`` (with NFKC, the
composition pairs too): :func:`dedup.normalize.replacements`.
"""

import numba
import numpy as np

from . import ASCII_MAP, MARK, NFKC_UNSTABLE, PAIR_SHIFT, SECOND, SOLO, TCCC

_ASCII_MAP_U = np.uint64(ASCII_MAP)
_CP_MASK = (1 << PAIR_SHIFT) - 1  # a code point fits in PAIR_SHIFT bits
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_SPACE_U8 = np.uint8(32)


@numba.njit(cache=True, nogil=True, inline="always")
def _room(rest):
    """Canonical bytes that ``rest`` input bytes may write, the final store included: the bytes
    themselves, and a space on each side of a code point that is a word by itself (``SOLO``:
    Han, kana, Thai, Lao, Khmer, Myanmar; 3 or 4 bytes) between one-byte words ("a漢a漢" or
    "aกaก": 4 bytes -> "a 漢 a 漢 ", 6), so half again; uint64."""
    r = np.uint64(rest)
    return r + r // np.uint64(2) + np.uint64(2)


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


@numba.njit(cache=True, nogil=True, inline="always")
def _put_word_char(src, p, ln, cp, table, canon, word_starts, n, n_words, prev):
    """Append code point ``cp`` (bytes ``src[p:p+ln]``) to a canonical text under
    construction; returns the new (n, n_words, prev). ASCII goes through the ASCII map."""
    if cp < 0x80:
        low = table[ASCII_MAP + cp]
        w = np.uint64(low != 0)
        canon[n] = low if w else _SPACE_U8
        word_starts[n_words] = n
        return n + (w | prev), n_words + (w & (_U1 - prev)), w
    f = table[cp]
    w = np.uint64(f & 1)
    if w:
        solo = f & SOLO
        if solo and prev:  # a SOLO code point (Han, kana, Thai...) ends the word before it...
            canon[n] = _SPACE_U8
            n += _U1
            prev = _U0
        if not prev:
            word_starts[n_words] = n
            n_words += _U1
        for j in range(ln):
            canon[n + np.uint64(j)] = src[p + j]
        n += np.uint64(ln)
        if solo:  # ... and is a word by itself: the space after it is written at once
            canon[n] = _SPACE_U8
            return n + _U1, n_words, _U0
    elif prev:
        canon[n] = _SPACE_U8
        n += _U1
    return n, n_words, w


@numba.njit(cache=True, nogil=True)
def _mark_word_char(data, start, pos, ln, cp, stop, table, map_cps, map_off, map_blob, canon, word_starts, n, n_words,
                    prev, comp_end, comp_cp):
    """:func:`canonicalize_words`'s step for a ``MARK`` code point (see :func:`_mark`):
    returns the new (n, n_words, prev, comp_end, comp_cp), n = -1 or -2 to give up."""
    act, q, q_end = _mark(data, start, pos, cp, table, map_cps, map_off, map_blob, comp_end, comp_cp)
    if act < 0:
        return -1, n_words, prev, comp_end, comp_cp
    if act == 0:
        n, n_words, prev = _put_word_char(data, np.int64(pos), ln, cp, table, canon, word_starts, n, n_words, prev)
        return np.int64(n), n_words, prev, comp_end, comp_cp
    comp_cp, back, q = _composite(map_blob, q, q_end)
    if table[comp_cp] & 1:  # the output ends with lower(starter): it becomes lower(composite)
        n -= np.uint64(back)
        if table[comp_cp] & SOLO:  # and the space after it (a SOLO starter: kana, ဥ; its composite is SOLO too)
            n -= _U1
            n_words -= _U1
            prev = _U0
        if n + _room(np.uint64(q_end - q) + stop - pos - np.uint64(ln)) > np.uint64(canon.shape[0] - 17):
            return -2, n_words, prev, comp_end, comp_cp
        c2, l2 = utf8_char(map_blob, q, q_end)
        n, n_words, prev = _put_word_char(map_blob, q, l2, c2, table, canon, word_starts, n, n_words, prev)
    return np.int64(n), n_words, prev, np.int64(pos) + ln, comp_cp


@numba.njit(cache=True, nogil=True)
def canonicalize_words(data, start, end, table, bits, cf_bit, map_cps, map_off, map_blob, canon, word_starts, word_ends):
    """Canonical text of ``data[start:end]`` into ``canon``, with word boundaries.

    Returns (canonical byte length n, number of words w); (-1, 0) when the document needs
    utf8proc (module docstring), (-2, 0) when replacements would outgrow ``canon`` (call again
    with more room). Word k spans ``canon[word_starts[k]:word_ends[k + 1]]`` (``word_ends`` is
    shifted by one). Sizes: ``canon`` = room + 17 bytes with room >= ``_room(end - start)`` (the +16 for
    the fast scheme's hash), ``word_starts`` and ``word_ends`` >= room // 2 + 2. ``word_ends[0]``
    is scratch (the state of :func:`_mark` while the document is read).

    ASCII bytes take a branch-free path with two stores per byte: every byte writes its lowercased
    character, or a space, at ``canon[n]``, and ``n`` advances on word characters and on the first
    separator after a word (so separator runs collapse to one space and leading ones vanish); a
    trailing space is dropped at the end. Word starts are stored unconditionally into the next
    free slot; ends follow from the next word's start."""
    # Unsigned indices: Numba adds a negative-index wraparound select to every signed
    # index, which costs ~40% of this loop (see hashing._read64le).
    n = _U0
    n_words = _U0
    prev = _U0
    word_ends[0] = -1  # no composition yet
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
        f = table[cp]
        if f & bits:
            if cf_bit != 0 and not f & cf_bit:
                if not f & MARK:
                    return -1, 0
                # The composition state (see _mark) lives in word_ends[0], which no word
                # span uses: as two more loop variables it slowed the ASCII loop by ~15%.
                comp = word_ends[0]  # (comp_end << PAIR_SHIFT) | comp_cp; -1 before any
                n2, n_words, prev, comp_end, comp_cp = _mark_word_char(
                    data, start, pos, ln, cp, stop, table, map_cps, map_off, map_blob, canon, word_starts, n, n_words,
                    prev, comp >> PAIR_SHIFT, comp & _CP_MASK)
                word_ends[0] = (comp_end << PAIR_SHIFT) | comp_cp
                if n2 < 0:
                    return n2, 0
                n = np.uint64(n2)
                pos += np.uint64(ln)
                continue
            q, q_end = _replacement(map_cps, map_off, cp)
            # Room needed: what the replacement and the rest of the input (no longer than it
            # is, but for replacements and spaces) may write, the last store included (_room).
            if n + _room(np.uint64(q_end - q) + stop - pos - np.uint64(ln)) > np.uint64(canon.shape[0] - 17):
                return -2, 0
            while q < q_end:
                c2, l2 = utf8_char(map_blob, q, q_end)
                n, n_words, prev = _put_word_char(map_blob, q, l2, c2, table, canon, word_starts, n, n_words, prev)
                q += l2
        else:
            n, n_words, prev = _put_word_char(data, np.int64(pos), ln, cp, table, canon, word_starts, n, n_words, prev)
        pos += np.uint64(ln)
    if n_words > 0 and not prev:
        n -= _U1  # the space written after the last word
    for k in range(1, np.int64(n_words)):
        word_ends[k] = word_starts[k] - 1
    word_ends[n_words] = n
    return np.int64(n), np.int64(n_words)


@numba.njit(cache=True, nogil=True, inline="always")
def _put_char(src, p, ln, cp, table, canon, char_starts, n, n_chars, in_word):
    """Append code point ``cp`` (bytes ``src[p:p+ln]``) to a canonical text with code
    point offsets; returns the new (n, n_chars, in_word)."""
    solo = False
    if cp < 0x80:
        low = table[ASCII_MAP + cp]
        is_word = low != 0
    else:
        low = 0
        is_word = (table[cp] & 1) != 0
        solo = (table[cp] & SOLO) != 0  # a word by itself: spaces before and after it
    if not is_word:
        return n, n_chars, False
    if (not in_word or solo) and n > 0:
        char_starts[n_chars] = n
        n_chars += 1
        canon[n] = 32
        n += 1
    char_starts[n_chars] = n
    n_chars += 1
    if cp < 0x80:
        canon[n] = low
    else:
        for j in range(ln):
            canon[n + j] = src[p + j]
    return n + ln, n_chars, not solo


@numba.njit(cache=True, nogil=True)
def canonicalize_chars(data, start, end, table, bits, cf_bit, map_cps, map_off, map_blob, canon, char_starts):
    """Canonical text of ``data[start:end]`` into ``canon``, with code point offsets.

    Returns (canonical byte length n, number of code points c), or (-1, 0) and (-2, 0) as
    :func:`canonicalize_words`; code point i of the canonical text starts at ``char_starts[i]``
    and ``char_starts[c] == n``. Sizes: ``canon`` = room + 17 bytes with room >= ``_room(end - start)``,
    ``char_starts`` >= room + 1 (without replacements, the canonical text is never longer than
    that)."""
    n = 0
    n_chars = 0
    in_word = False
    comp_end = np.int64(-1)  # see _mark
    comp_cp = np.int64(0)
    pos = start
    while pos < end:
        cp, ln = utf8_char(data, pos, end)
        f = table[cp] if cp >= 0x80 else 0
        if f & bits:
            if cf_bit != 0 and not f & cf_bit:
                if not f & MARK:
                    return -1, 0
                act, q, q_end = _mark(data, start, pos, cp, table, map_cps, map_off, map_blob, comp_end, comp_cp)
                if act < 0:
                    return -1, 0
                if act == 0:
                    n, n_chars, in_word = _put_char(data, pos, ln, cp, table, canon, char_starts, n, n_chars, in_word)
                else:  # the output ends with lower(starter), one code point: now lower(composite)
                    comp_cp, back, q = _composite(map_blob, q, q_end)
                    if table[comp_cp] & 1:
                        n -= back
                        n_chars -= 1
                        if table[comp_cp] & SOLO and n > 0:  # and the space before it (SOLO, see above)
                            n -= 1
                            n_chars -= 1
                        if n + np.int64(_room(q_end - q + end - pos - ln)) > canon.shape[0] - 17:
                            return -2, 0
                        c2, l2 = utf8_char(map_blob, q, q_end)
                        n, n_chars, in_word = _put_char(map_blob, q, l2, c2, table, canon, char_starts, n, n_chars,
                                                        in_word)
                    comp_end = pos + ln
                pos += ln
                continue
            q, q_end = _replacement(map_cps, map_off, cp)
            if n + np.int64(_room(q_end - q + end - pos - ln)) > canon.shape[0] - 17:
                return -2, 0
            while q < q_end:
                c2, l2 = utf8_char(map_blob, q, q_end)
                n, n_chars, in_word = _put_char(map_blob, q, l2, c2, table, canon, char_starts, n, n_chars, in_word)
                q += l2
        else:
            n, n_chars, in_word = _put_char(data, pos, ln, cp, table, canon, char_starts, n, n_chars, in_word)
        pos += ln
    char_starts[n_chars] = n
    return n, n_chars


@numba.njit(cache=True, nogil=True, inline="always")
def _search(cps, key):
    """Index of the first entry of the sorted array ``cps`` that is >= ``key`` (0 if empty)."""
    lo = 0
    hi = cps.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cps[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True, inline="always")
def _replacement(cps, off, cp):
    """(start, end) in the map's blob of the replacement of ``cp``, which must be in the
    sorted array ``cps``."""
    lo = _search(cps, cp)
    return off[lo], off[lo + 1]


@numba.njit(cache=True, nogil=True, inline="always")
def _lookup(cps, off, key):
    """(start, end) in the map's blob of ``key``'s entry, or (-1, -1) if it has none."""
    lo = _search(cps, key)
    if lo >= cps.shape[0] or cps[lo] != key:
        return -1, -1
    return off[lo], off[lo + 1]


@numba.njit(cache=True, nogil=True, inline="always")
def _composite(map_blob, q, q_end):
    """Of the composition pair entry ``map_blob[q:q_end]``: (composite code point, bytes of
    lower(starter) to take back from the output, where lower(composite)'s bytes start)."""
    cp, ln = utf8_char(map_blob, q + 1, q_end)
    return cp, map_blob[q], q + 1 + ln


@numba.njit(cache=True, nogil=True, inline="always")
def _mark(data, start, pos, cp, table, map_cps, map_off, map_blob, comp_end, comp_cp):
    """NFKC of the ``MARK`` code point ``cp`` read at ``data[pos]``, from what precedes it.

    Returns (action, q, q_end): 0, keep it where it is; 1, it composes with the starter
    just before it into the composite whose map entry is ``map_blob[q:q_end]`` (see
    :class:`dedup.normalize.CharMap`); -1, give the document to utf8proc. ``comp_end`` and
    ``comp_cp``: input position just after the last composed mark and the composite it
    made (-1 before any), standing for the starter the output now ends with.

    NFKC (UAX #15) reorders a mark only behind one of a higher combining class, so a mark
    is kept when the previous code point's trailing class (of its NFKD) is not above its
    own. It composes only with the last starter when nothing between blocks it; here a
    composition is applied only with a starter right before it (ASCII, NFKC-stable, or a
    composite just made), and a ``SECOND`` mark after another mark gives up (unless it is a
    starter itself, which cannot compose across a mark).
    """
    ccc = table[TCCC + cp]
    if np.int64(pos) == comp_end:
        before = comp_cp
    elif np.int64(pos) == np.int64(start):
        return 0, 0, 0  # at the start of the document nothing can reorder or compose
    else:
        j = np.int64(pos) - 1
        while j > np.int64(start) and (data[j] & 0xC0) == 0x80 and np.int64(pos) - j < 4:
            j -= 1
        before, bl = utf8_char(data, j, np.int64(pos))
        if j + bl != np.int64(pos):
            return -1, 0, 0  # malformed UTF-8 before the mark
    tb = table[TCCC + before]
    if ccc != 0 and tb > ccc:
        return -1, 0, 0  # canonical reordering
    if not table[cp] & SECOND:
        return 0, 0, 0
    if before >= 0x80 and np.int64(pos) != comp_end:
        fb = table[before]
        if fb & MARK and tb != 0:  # a mark between the starter and this one
            if ccc == 0:
                return 0, 0, 0  # a starter does not compose across a mark
            return -1, 0, 0
        if fb & NFKC_UNSTABLE and not fb & MARK:
            return -1, 0, 0  # the starter is itself rewritten by NFKC
    q, q_end = _lookup(map_cps, map_off, ((before + 1) << PAIR_SHIFT) | cp)
    if q < 0:
        return 0, 0, 0
    if map_blob[q] == 0:
        return -1, 0, 0
    return 1, q, q_end
