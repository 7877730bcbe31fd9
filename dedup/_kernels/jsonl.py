"""JSON Lines kernels over UTF-8 bytes (:mod:`dedup.jsonl`)."""

import numba


@numba.njit(cache=True, nogil=True)
def line_depths(raw, starts, ends, out):
    """``out[i]``: how deep the JSON of line ``raw[starts[i]:ends[i]]`` nests, an object or array one level,
    brackets inside strings (after an unescaped quote) not counted. One pass over the lines' bytes."""
    for i in range(starts.size):
        depth = deepest = 0
        in_string = escaped = False
        for j in range(starts[i], ends[i]):
            c = raw[j]
            if in_string:
                if escaped:
                    escaped = False
                elif c == 92:  # backslash
                    escaped = True
                elif c == 34:  # quote
                    in_string = False
            elif c == 34:
                in_string = True
            elif c == 123 or c == 91:  # { [
                depth += 1
                deepest = max(deepest, depth)
            elif c == 125 or c == 93:  # } ]
                depth -= 1
        out[i] = deepest
