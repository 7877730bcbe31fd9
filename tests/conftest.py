"""Fixtures shared by every test directory."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def loads_none():
    """``check(code, modules)``: run ``code`` in a fresh interpreter (repository root as the
    working directory, ``sys`` imported) and fail naming any of ``modules`` it imported."""

    def check(code: str, modules: tuple[str, ...]) -> None:
        probe = f"import sys\n{code}\nbad = [m for m in {tuple(modules)!r} if m in sys.modules]\nassert not bad, f'imported: {{bad}}'\n"
        subprocess.run([sys.executable, "-c", probe], check=True, cwd=ROOT)

    return check


@pytest.fixture
def unprivileged():
    """``run(script)``: run ``python -c script`` (this checkout importable) as a user file modes bind: as root,
    without its capabilities (setpriv; the test is skipped without it). Returns the CompletedProcess (text)."""
    import os
    import shutil

    drop = []
    if os.geteuid() == 0:  # root reads, writes and enters anything
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv")
        drop = ["setpriv", "--bounding-set=-all"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return lambda script: subprocess.run([*drop, sys.executable, "-c", script], capture_output=True, text=True, env=env)


@pytest.fixture
def free_memory():
    """``need(nbytes)``: skip the test unless the machine has that much memory available now (Linux's
    MemAvailable; skipped where it cannot be read)."""

    def need(nbytes: int) -> None:
        try:
            with open("/proc/meminfo") as f:
                have = next(int(line.split()[1]) << 10 for line in f if line.startswith("MemAvailable:"))
        except (OSError, StopIteration):
            have = 0
        if have < nbytes:
            pytest.skip(f"needs {nbytes / 2**30:.0f} GiB of memory available, {have / 2**30:.1f} GiB are")

    return need
