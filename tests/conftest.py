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
