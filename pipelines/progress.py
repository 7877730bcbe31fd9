"""Progress lines on stderr for long runs: :class:`ProgressLine` for dedup (rows/s, MB/s, ETA),
:class:`CountLine` for the phases of audit, train and profile (sequences/s, steps/s, ETA), and
:func:`phase_progress`, one callback for all phases of a library function.

Silent for the first ``MEMDEDUP_PROGRESS_DELAY`` seconds (a number >= 0; else 2), so short runs print
nothing. On a terminal the line is redrawn in place every 0.25 s; otherwise a full line every 10 s.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable


def _si(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}"


class ProgressLine:
    """dedup's line, ``label: rows/total rows (pct), shard i/n, rows/s, MB/s, removed exact + near, ETA``, from
    the states :func:`dedup.engine.dedup_files` reports (``rows``, ``total_rows``, ``bytes``, ...)."""

    def __init__(self, label: str):
        self.label = label
        self.stream = sys.stderr
        self.tty = self.stream.isatty()
        try:
            self.delay = float(os.environ.get("MEMDEDUP_PROGRESS_DELAY", "").strip() or 2.0)
        except ValueError:
            self.delay = 2.0
        self.delay = self.delay if self.delay >= 0 else 2.0
        self.every = 0.25 if self.tty else 10.0
        self.t0 = time.monotonic()
        self._last = float("-inf")
        self._shown = False
        self.last: dict | None = None  #: the latest state, which close() prints

    def __call__(self, state: dict) -> None:
        self.last = state
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
        eta = f", ETA {max(total - rows, 0) * el / rows:.0f}s" if total and rows and not final else ""
        self._write(f"{self.label}: {rows:,}{f'/{total:,}' if total else ''} rows{pct}, "
                    f"shard {state.get('shard', '?')}/{state.get('shards', '?')}, "
                    f"{_si(rows / el)} rows/s, {state.get('bytes', 0) / 1e6 / el:.1f} MB/s, "
                    f"removed {state.get('removed_exact', 0):,} exact + {state.get('removed_near', 0):,} near{eta}",
                    final)

    def _write(self, line: str, final: bool) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Print the final line, with the latest figures, if any was shown."""
        if self._shown:
            self._emit(self.last, final=True)


class CountLine(ProgressLine):
    """``label: done/total unit (pct), rate unit/s, extra, ETA`` (total 0 or missing: no percentage or
    ETA), paced as ProgressLine. States: ``{"done": int, "total": int | None, "extra": str (optional)}``."""

    def __init__(self, label: str, unit: str):
        super().__init__(label)
        self.unit = unit

    def _emit(self, state: dict, final: bool) -> None:
        el = max(time.monotonic() - self.t0, 1e-9)
        done, total = state["done"], state.get("total") or 0
        pct = f" ({100 * done / total:.1f}%)" if total else ""
        rate = done / el
        rate_s = f"{rate:.2f}" if rate < 10 else _si(rate)
        extra = f", {state['extra']}" if state.get("extra") else ""
        eta = f", ETA {max(total - done, 0) / rate:.0f}s" if total and done and not final else ""
        total_s = f"/{total:,}" if total else ""
        self._write(f"{self.label}: {done:,}{total_s} {self.unit}{pct}, {rate_s} {self.unit}/s{extra}{eta}"
                    + (f" in {el:.1f}s" if final else ""), final)


def phase_progress(command: str, quiet: bool) -> Callable[[dict], None]:
    """One callback for a library function's phases: called with ``{"phase": name, "unit": unit, "done": n,
    "total": N}`` (and optionally ``"extra"``), each phase gets a :class:`CountLine` ``command phase`` (``command``
    alone for its namesake), closed when the next phase starts or at ``{"phase": None}``. ``quiet``: prints nothing."""
    if quiet:
        return lambda state: None
    current: dict = {}

    def report(state: dict) -> None:
        phase = state.get("phase")
        if current and current["phase"] != phase:
            current.pop("line").close()
            current.clear()
        if phase is None:
            return
        if not current:
            label = command if phase == command else f"{command} {phase}"  # "train", not "train train"
            current.update(phase=phase, line=CountLine(label, state.get("unit", "items")))
        current["line"](state)

    return report
