"""Fixtures shared by every test directory, and the units of work of a parallel run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A parallel run (`make test`: pytest -n 2 --dist loadscope --no-loadscope-reorder, pytest-xdist)
# runs each unit of work whole on one worker, so that a module's fixtures are made once. A unit
# is a test module, or modules joined below: those sharing a session fixture that takes a
# minute to make, and the two that each need 8 GiB of memory (never at the same time).
JOINED = {
    "canary_lm": ("audit/test_audit.py", "audit/test_report.py", "audit/test_tiny_model.py"),
    "workflow": ("pipelines/test_workflow.py", "pipelines/test_slurm.py"),
    "8GiB": ("dedup/test_streaming.py", "dedup/test_arrow_inputs.py"),
}
# Units handed out first, longest first (395, 279, 130, 119, 78 and 69 s in a serial run on
# 2026-12-01; the other units take 30 s or less): a long unit started last would leave the other
# worker idle at the end. This sets the order only; a unit named here may be absent.
FIRST = ("workflow", "pipelines/test_reliability.py", "canary_lm", "audit/test_training.py",
         "pipelines/test_cli_options.py", "pipelines/test_staged.py")


def unit_of(nodeid: str) -> str:
    """The unit of work of the test ``nodeid`` (``tests/<module>.py::<name>``)."""
    module = nodeid.split("::", 1)[0].removeprefix("tests/")
    return next((name for name, modules in JOINED.items() if module in modules), module)


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before pytest-xdist's own; a hook of xdist's only
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """--dist loadscope with the units above as its scopes (xdist's loadgroup marks would do, but
    pytest 9.2 ignores the node ids xdist 3.8 rewrites for them)."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return UnitScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if "PYTEST_XDIST_WORKER" in os.environ:  # every worker orders its collection the same way
        rank = {unit: i for i, unit in enumerate(FIRST)}
        items.sort(key=lambda item: rank.get(unit_of(item.nodeid), len(FIRST)))  # stable: the rest keep their order


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
