"""dedup.io.claim: one run at a time per output directory, also when a run that made the
directory removes it as it ends while another starts."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from dedup import io


def _refused(out: Path) -> bool:
    try:
        with io.claim(out):
            return False
    except io.InUseError:
        return True


def test_a_run_removes_the_out_it_made_before_letting_go_of_it(tmp_path, monkeypatch):
    """A run that made OUT and left it empty (a failed run) let go of OUT, then removed it: a
    run starting in between held a directory that was then removed, and the OUT it went on to
    write (made anew) was held by nobody, so a third run was let in beside it."""
    out, second = tmp_path / "new" / "out", []
    real_close = os.close

    def close(fd: int) -> None:
        real_close(fd)
        if not second:  # the first run lets go of OUT: the second starts at that moment
            second.append(io.claim(out))
            second[0].__enter__()

    monkeypatch.setattr(io.os, "close", close)
    with io.claim(out):
        pass  # the first run fails, leaving OUT as empty as it found it (missing)
    monkeypatch.undo()
    try:
        assert out.is_dir() and _refused(out)  # the second run holds OUT
    finally:
        second[0].__exit__(None, None, None)


def test_a_run_never_holds_an_out_removed_while_it_was_opening_it(tmp_path, monkeypatch):
    """OUT removed between a run's opening it and its lock (the run that made it ending then):
    the run held the removed directory and wrote to an OUT made anew, held by nobody."""
    out = tmp_path / "out"
    out.mkdir()
    real_flock, removed = fcntl.flock, []

    def flock(fd, op):
        if not removed:  # the run that made OUT removes it (empty) as it ends
            removed.append(out.rmdir())
        return real_flock(fd, op)

    monkeypatch.setattr(io.fcntl, "flock", flock)
    with io.claim(out):
        monkeypatch.undo()
        assert out.is_dir() and _refused(out)


def test_two_runs_making_the_same_out_at_once_refuse_the_second_without_removing_it(tmp_path, monkeypatch):
    """Two runs into a missing OUT at once: the second, finding it made since it looked, failed
    with FileExistsError instead of InUseError."""
    out, held = tmp_path / "a" / "out", []
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self == out and not held:  # the first run makes OUT and holds it, just before the second does
            held.append(-1)
            real_mkdir(out, parents=True)
            held[0] = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
            fcntl.flock(held[0], fcntl.LOCK_EX)
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    try:
        with pytest.raises(io.InUseError):
            with io.claim(out):
                pass
        assert out.is_dir()  # the first run's OUT stays
    finally:
        os.close(held[0])
