"""A progress line on stderr for long runs (rows/s, MB/s, ETA).

Silent for the first ``delay`` seconds, so short runs print nothing (default: the
environment variable ``MEMDEDUP_PROGRESS_DELAY`` in seconds, else 2; 0 shows it at once).
On a terminal the line is redrawn in place; otherwise (logs, CI) a full line is printed
every ``every`` s.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO


def _si(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}"


DELAY_ENV = "MEMDEDUP_PROGRESS_DELAY"
DEFAULT_DELAY = 2.0


def default_delay() -> float:
    """``$MEMDEDUP_PROGRESS_DELAY`` (seconds) if set to a number >= 0, else 2."""
    raw = os.environ.get(DELAY_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_DELAY
    except ValueError:
        return DEFAULT_DELAY
    return value if value >= 0 else DEFAULT_DELAY


class ProgressLine:
    def __init__(self, label: str, stream: TextIO | None = None, delay: float | None = None, every: float | None = None):
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.delay = default_delay() if delay is None else delay
        self.every = every if every is not None else (0.25 if self.tty else 10.0)
        self.t0 = time.monotonic()
        self._last = float("-inf")
        self._shown = False

    def __call__(self, state: dict) -> None:
        now = time.monotonic()
        if now - self.t0 < self.delay or now - self._last < self.every:
            return
        self._last = now
        self._shown = True
        self._emit(state, final=False)

    def _emit(self, state: dict, final: bool) -> None:
        el = max(state.get("elapsed", time.monotonic() - self.t0), 1e-9)
        rows, total = state["rows"], state.get("total_rows") or 0
        pct = f" ({100 * rows / total:.1f}%)" if total else ""
        eta = ""
        if total and rows and not final:
            eta = f" ETA {max(total - rows, 0) * el / rows:.0f}s"
        line = (
            f"{self.label}: {rows:,}/{total:,} rows{pct}, shard {state.get('shard', '?')}/{state.get('shards', '?')}, "
            f"{_si(rows / el)} rows/s, {state.get('bytes', 0) / 1e6 / el:.1f} MB/s, "
            f"removed {state.get('removed_exact', 0):,} exact + {state.get('removed_near', 0):,} near{eta}"
        )
        if self.tty:
            self.stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self, state: dict | None = None) -> None:
        """Print the final line if anything was shown (so the last figures are visible)."""
        if self._shown and state is not None:
            self._emit(state, final=True)
        elif self._shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()
