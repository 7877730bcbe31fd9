"""What a JSON Lines file is, byte by byte: lines, rows, and why a line is refused.

Arrow parses JSON Lines fast but leniently (``{..} {..}`` on one line is two rows, a ``null`` line a row of nulls)
and reports errors by row within its buffer. These rules, which :mod:`dedup.shards` applies around Arrow (turning a
problem into an :class:`dedup.shards.InputError` naming the file and line), make counting rows, reading them and
naming a bad line agree:

* A line is *blank*, and skipped, when it holds nothing but JSON whitespace (space, tab, carriage return: RFC 8259,
  section 2). Every other line is one row and must hold one JSON object: other whitespace (form feed, U+00A0,
  U+2028, ...), ``null``, arrays, strings, numbers and a second value on a line are refused.
* A UTF-8 byte order mark is allowed at the start of the file only.
* An object may not hold the same key twice (at any depth), as Arrow requires.
* ``NaN``, ``Infinity`` and ``-Infinity`` are read as floats (not JSON, but Python writes them and Arrow reads them).
* A top-level field whose JSON type changes between lines is read as text (:func:`values_as_text`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .kernels import line_depths

#: JSON's whitespace outside strings (RFC 8259 section 2), without the line feed that ends a line.
JSON_SPACE = b" \t\r"
BOM = b"\xef\xbb\xbf"
_OPEN = ord("{")
_CONTENT = re.compile(rb"[^ \t\r\n]")
#: Nesting levels Parquet readers accept (Arrow's 100 schema levels, root included): a value is one level, an
#: object one more, a list two more. Said of a column, or a line, nested deeper.
PARQUET_MAX_DEPTH = 99
TOO_DEEP = f"Parquet, the kept shards' format, reads at most {PARQUET_MAX_DEPTH}"
#: JSON nesting (the line's object is level 1) beyond which :func:`scan` refuses a line before Arrow reads it: pyarrow
#: 26's JSON reader overflows its stack (SIGSEGV) on a line nested 20,000 levels deep (10,000 are read). Only a line
#: of this many opening brackets, so of twice as many bytes, can be that deep: only those are measured.
MAX_DEPTH = 5_000


def _body(line: bytes, first_of_file: bool) -> bytes:
    """A line without its JSON whitespace, and without a byte order mark on the file's first line."""
    return (line[len(BOM):] if first_of_file and line.startswith(BOM) else line).strip(JSON_SPACE)


def has_content(data: bytes) -> bool:
    """Whether ``data`` holds anything but blank lines (without copying it, as strip would)."""
    return _CONTENT.search(data) is not None


@dataclass(frozen=True)
class Lines:
    """The ``count`` lines of a piece (whole lines, each ending in a line feed): 0-based indices of the ``blank``
    ones and of the ``suspect`` ones, each refused by :func:`line_problem`: not blank but not starting (after JSON
    whitespace, and a byte order mark on the file's first line) with ``{``, or nested too deep to decode."""

    count: int
    blank: tuple[int, ...]
    suspect: tuple[int, ...]

    @property
    def rows(self) -> int:
        """Rows the piece holds: its lines that are not blank."""
        return self.count - len(self.blank)

    def line_of_row(self, row: int) -> int:
        """0-based line index of the piece's 0-based ``row`` (error path only)."""
        blank = set(self.blank)
        return [i for i in range(self.count) if i not in blank][row]


def scan(piece: bytes, at_file_start: bool) -> Lines:
    """Find the blank and suspect lines of ``piece`` (whole lines, ending in a line feed): one numpy pass, Python
    only for lines that do not start with ``{``, and a kernel for lines of :data:`MAX_DEPTH` brackets or more.

    Example:
        >>> s = scan(b'{"a": 1}\\n\\n  {"a": 2}\\nnull\\n', at_file_start=True)
        >>> s.count, s.rows, s.blank, s.suspect
        (4, 3, (1,), (3,))
    """
    raw = np.frombuffer(piece, dtype=np.uint8)
    ends = np.flatnonzero(raw == 0x0A)
    starts = np.concatenate(([0], ends[:-1] + 1)) if ends.size else ends
    odd = np.flatnonzero(raw[starts] != _OPEN)
    blank, suspect = [], []
    for i in odd.tolist():
        body = _body(piece[starts[i]:ends[i]], at_file_start and i == 0)
        if not body:
            blank.append(i)
        elif body[0] != _OPEN:
            suspect.append(i)
    long = np.flatnonzero(np.diff(ends, prepend=-1) > 2 * MAX_DEPTH)
    crowded = [i for i in long.tolist() if np.count_nonzero((raw[starts[i]:ends[i]] | 0x20) == _OPEN) >= MAX_DEPTH]
    if crowded:  # (the count: { and [, as 0x5B | 0x20 is 0x7B)
        deep = np.asarray(crowded)[line_depths(raw, starts[crowded], ends[crowded]) > MAX_DEPTH]
        suspect += [i for i in deep.tolist() if i not in suspect]
    return Lines(int(ends.size), tuple(blank), tuple(sorted(suspect)))


class _DuplicateKey(ValueError):
    """A key (``args[0]``) twice in one object."""


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        keys = [k for k, _ in pairs]
        raise _DuplicateKey(next(k for i, k in enumerate(keys) if k in keys[:i]))
    return obj


def _finite(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"number {literal} is too large for a double")
    return value


_KIND = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}


def json_kind(value: object) -> str:
    """The JSON name of a decoded value's type (``null``, ``array``, ...)."""
    return _KIND.get(type(value), type(value).__name__)


class _KindChange(ValueError):
    """A value of another JSON kind than those before it at the same place."""


def _shape(value: object, before: object) -> object:
    """The JSON shape of the values at one place (``before``) with ``value`` added: None (nulls only), a kind
    (:func:`json_kind`), ``[items' shape]`` or ``{key: shape}``; :class:`_KindChange` where the kinds differ."""
    if value is None:
        return before
    if isinstance(value, (dict, list)):
        shape = before if before is not None else {} if isinstance(value, dict) else [None]
        if type(shape) is not type(value):
            raise _KindChange
        for key, item in value.items() if isinstance(value, dict) else ((0, v) for v in value):
            shape[key] = _shape(item, shape.get(key) if isinstance(shape, dict) else shape[0])
        return shape
    if before is not None and before != json_kind(value):
        raise _KindChange
    return json_kind(value)


def kind_changes(piece: bytes) -> set[str]:
    """Top-level keys whose values in the lines of ``piece`` are of two JSON kinds (:func:`json_kind`; null goes with
    any), at the top or deep inside (an object's field, a list's items): the columns whose type Arrow cannot read as
    one. Lines that are not JSON objects are passed over."""
    shapes: dict[str, object] = {}
    changed: set[str] = set()
    for line in piece.split(b"\n"):
        try:
            obj = json.loads(line) if line.strip(JSON_SPACE) else None
        except (ValueError, RecursionError):
            continue
        for key, value in obj.items() if isinstance(obj, dict) else ():
            try:
                if key not in changed:
                    shapes[key] = _shape(value, shapes.get(key))
            except _KindChange:
                changed.add(key)
            except RecursionError:  # nested too deep for Parquet: refused as such once read
                continue
    return changed


#: Said of a file whose first line opens a JSON array (:func:`line_problem`).
ARRAY_FILE = "(a file that is one JSON array is not JSON Lines, one object per line)"


def line_problem(line: bytes, first_of_file: bool, text_column: str | None = None) -> str | None:
    """Why ``line`` (without its line feed) is not blank and not one JSON object whose ``text_column`` holds a
    string or null, or None when it is fine.

    Example:
        >>> line_problem(b'{"text": "a"} {"text": "b"}', first_of_file=False)
        'more than one JSON value on the line (JSON Lines holds one object per line)'
        >>> line_problem(b"null", first_of_file=False), line_problem(b" \\t", first_of_file=False)
        ('expected a JSON object, got null', None)
    """
    line = _body(line, first_of_file)
    if not line:
        return None
    if len(line) > 2 * MAX_DEPTH and (depth := line_depths(np.frombuffer(line, np.uint8), [0], [len(line)])[0]):
        if depth > MAX_DEPTH:
            return f"nested {depth:,} levels deep ({TOO_DEEP})"
    try:
        s = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"invalid JSON: not UTF-8: {e}"
    if not s.strip():
        return "only whitespace that JSON does not allow (a blank line may hold spaces, tabs and carriage returns only)"
    if s.startswith("\ufeff"):
        return "a byte order mark (U+FEFF) is allowed only at the start of the file"
    if first_of_file and s.startswith("[") and not s.endswith("]"):  # a JSON array over many lines
        return f"expected a JSON object, got the start of an array {ARRAY_FILE}"
    try:
        obj = json.loads(s, object_pairs_hook=_no_duplicates, parse_float=_finite)
    except _DuplicateKey as e:
        return f"key {e.args[0]!r} appears twice in one object"
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and s[e.pos:].strip(" \t\r") == ",":  # copied out of a pretty-printed array
            return "a comma after the object (JSON Lines holds one object per line, no commas)"
        if e.msg == "Extra data":
            return "more than one JSON value on the line (JSON Lines holds one object per line)"
        return f"invalid JSON at column {e.colno}: {e.msg}"
    except RecursionError:
        return f"nested too deep for Python's JSON decoder ({TOO_DEEP} levels)"
    except ValueError as e:
        return f"invalid JSON: {e}"
    if not isinstance(obj, dict):
        array = f" {ARRAY_FILE}" if first_of_file and isinstance(obj, list) else ""
        return f"expected a JSON object, got {json_kind(obj)}{array}"
    try:  # Python's json accepts "\ud800"; Arrow (and UTF-8) do not
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return "invalid JSON: a string holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff), which is not Unicode"
    if text_column is not None and obj.get(text_column) is not None and not isinstance(obj[text_column], str):
        return f"text column {text_column!r} holds a JSON {json_kind(obj[text_column])}, expected a string"
    return None


def first_problem(piece: bytes, first_line: int, text_column: str | None = None) -> tuple[int, str] | None:
    """(1-based line, reason) of the first line of ``piece`` (starting at the file's line ``first_line``) that
    :func:`line_problem` refuses, or None."""
    lines = enumerate(piece.split(b"\n")[:-1], first_line)
    problems = ((n, line_problem(line, n == 1, text_column)) for n, line in lines)
    return next(((n, p) for n, p in problems if p is not None), None)


#: float64 holds every integer of at most this magnitude exactly, and not all above it.
EXACT_IN_DOUBLE = 2**53
_INT64 = (-(2**63), 2**63 - 1)


class _IntText(str):
    """An integer literal, as written."""


class _FloatText(str):
    """A number literal with a fraction or an exponent, as written."""


@dataclass
class Numbers:
    """What the numbers of one column say about the type that holds them exactly: whether one is seen of each kind."""

    beyond_int64: bool = False  # an integer outside int64 (Arrow reads the column as float64)
    big: bool = False  # an integer of magnitude above 2^53 (float64 would round it)
    fraction: bool = False  # written with a fraction or an exponent (``2.5``, ``1e3``)
    negative: bool = False  # a negative integer
    beyond_uint64: bool = False  # an integer of 2^64 or more

    def add_int(self, value: int) -> None:
        """Note one integer."""
        self.big |= abs(value) > EXACT_IN_DOUBLE
        self.beyond_int64 |= not _INT64[0] <= value <= _INT64[1]
        self.negative |= value < 0
        self.beyond_uint64 |= value >= 2**64

    def merge(self, other: "Numbers") -> None:
        """Note everything ``other`` noted."""
        for k, v in vars(other).items():
            setattr(self, k, getattr(self, k) or v)

    def exact_type(self) -> str | None:
        """``"uint64"`` or ``"string"`` when Arrow's own type (int64 or float64) would round a number of the column
        (:mod:`dedup.shards`), else None.

        Example:
            >>> n = Numbers(); n.add_int(18446744073709551000); n.exact_type()
            'uint64'
            >>> n.add_int(-1); n.exact_type()
            'string'
        """
        if self.beyond_int64:
            return "string" if self.fraction or self.negative or self.beyond_uint64 else "uint64"
        return "string" if self.big and self.fraction else None


#: Where a value sits inside a column: object keys, and None for "an item of a list".
Path = tuple[str | None, ...]


def number_texts(piece: bytes, first_line: int, columns: set[str], nested: set[str],
                 rounds: Callable[[str, Path], bool] = lambda column, path: True,
                 ) -> tuple[dict[str, list[str | None]], dict[str, Numbers], tuple[int, str] | None]:
    """Parse the rows of ``piece`` (whose lines :func:`scan` passed) with Python's exact integers (slow: only for
    pieces where Arrow produced a float64 of magnitude 2^53 or more): for each column in ``columns``, each row's
    top-level number as written (None for null or missing) and its :class:`Numbers`; for those in ``nested``, the
    (1-based line, reason) of the first integer above 2^53 inside a list or object where ``rounds(column, path)``
    (the reader holds float64 there): such a file is refused.
    """
    texts: dict[str, list[str | None]] = {c: [] for c in columns}
    numbers = {c: Numbers() for c in columns}
    for n, line in enumerate(piece.split(b"\n")[:-1], first_line):
        line = _body(line, n == 1)
        if not line:
            continue
        obj = json.loads(line, parse_int=_IntText, parse_float=_FloatText)
        for c in columns:
            v = obj.get(c)
            if isinstance(v, _IntText):
                numbers[c].add_int(int(v))
            elif isinstance(v, _FloatText):
                numbers[c].fraction = True
            texts[c].append(None if v is None else str(v))
        for c in nested:
            for path, big in _big_ints_inside(obj.get(c), ()):
                if rounds(c, path):
                    return texts, numbers, (
                        n, f"column {c!r} holds the integer {big} inside a list or object, where it "
                        "would be read as a float64 and rounded; only top-level columns of such integers are read "
                        "exactly (as uint64 or as text)")
    return texts, numbers, None


def _big_ints_inside(value: object, path: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(value, _IntText):
        if abs(int(value)) > EXACT_IN_DOUBLE:
            yield path, str(value)
    elif isinstance(value, dict):
        for k, child in value.items():
            yield from _big_ints_inside(child, (*path, k))
    elif isinstance(value, list):
        for child in value:
            yield from _big_ints_inside(child, (*path, None))


_DECODER = json.JSONDecoder()
#: Decodes a value as :func:`line_problem` does: a key twice in an object or a number beyond a double is a ValueError.
_STRICT = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_float=_finite)
_SPACE = re.compile(r"[ \t\r]*")


def values_as_text(piece: bytes, columns: frozenset[str]) -> tuple[bytes, list[str]]:
    """``piece`` with each top-level value of ``columns`` that is not a string or null replaced by a JSON string of
    its text as written, so that Arrow reads the column as strings (``{"m": {"a": 1}}`` -> ``{"m": "{\\"a\\": 1}"}``),
    and the top-level keys in the order they first appear (Arrow's order without an explicit schema). A line that
    is not one JSON object, or whose value of ``columns`` :func:`line_problem` refuses (a key twice, a number beyond
    a double, an unpaired surrogate escape: hidden in a string, Arrow would read it), is left as it is, for the
    reader to refuse. Python per line: only files with such a column pay for it.

    Example:
        >>> values_as_text(b'{"m": [1, 2.50], "t": "x"}\\n{"u": 1, "m": "s"}\\n', frozenset({"m"}))
        (b'{"m": "[1, 2.50]", "t": "x"}\\n{"u": 1, "m": "s"}\\n', ['m', 't', 'u'])
    """
    out, keys = [], {}
    for line in piece.decode("utf-8").split("\n"):
        spans, i = [], line.find("{") + 1
        try:
            i = _SPACE.match(line, i).end() if i else len(line)
            while i < len(line) and line[i] == '"':
                key, i = json.decoder.scanstring(line, i + 1)
                keys[key] = None
                i = _SPACE.match(line, _SPACE.match(line, i).end() + 1).end()  # past the colon
                value, end = (_STRICT if key in columns else _DECODER).raw_decode(line, i)
                if key in columns and line[i] not in '"n':  # not a string, not null
                    if "\\u" in line[i:end]:  # an unpaired surrogate escape: UnicodeEncodeError, a ValueError
                        json.dumps(value, ensure_ascii=False).encode("utf-8")
                    spans.append((i, end))
                i = _SPACE.match(line, end).end()
                i = _SPACE.match(line, i + 1).end() if line[i:i + 1] == "," else i
        except (ValueError, IndexError, RecursionError):  # see above: the reader names the line
            spans = []
        for start, end in reversed(spans):
            line = line[:start] + json.dumps(line[start:end], ensure_ascii=False) + line[end:]
        out.append(line)
    return "\n".join(out).encode("utf-8"), list(keys)
