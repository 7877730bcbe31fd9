"""Examples in the README and in docstrings actually run.

Every public module of ``dedup``, ``audit`` and ``pipelines`` (found with pkgutil; modules
and packages whose name has a part starting with "_" are private and skipped) has its
docstring examples run; a module whose import needs an optional package that is not
installed is skipped, naming the package. Every public ``dedup`` module that defines public
functions or classes must have at least one example.
"""

import doctest
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dedup", "audit", "pipelines")

def _public_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        path = importlib.import_module(package).__path__
        for info in pkgutil.walk_packages(path, prefix=f"{package}."):
            if not any(part.startswith("_") for part in info.name.split(".")):
                names.append(info.name)
    return sorted(names)


MODULES = _public_modules()


def _import(name: str):
    """The module, or a skip naming the optional package its import needs."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        missing = (e.name or "").split(".")[0]
        if missing and missing not in PACKAGES:
            pytest.skip(f"{name} needs {e.name}, which is not installed")
        raise


def _examples(module) -> list[doctest.DocTest]:
    return [t for t in doctest.DocTestFinder().find(module) if t.examples]


def test_readme_python_blocks_run(capsys):
    """Every ```python block runs (```py marks examples that need a real cluster)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "9 13 32.1 bytes/doc" in out
    assert "2 {'exact': 1, 'near': 0}" in out
    assert "[True, False, True] 2\n[False, True]\n" in out and "5 [False, True]" in out  # Deduplicator
    assert out.count("['a', 'c', 'd']") == 2  # datasets: ds.filter with the keep mask, both ways
    assert "['a', 'c']\n" in out  # datatrove
    assert "occurring 1 times: 0 of 22 extractable" in out  # audit: a fresh model memorizes no unique text
    assert "occurring 32-63 times: 2 of 2 extractable" in out  # ... and both canaries planted 32 times
    assert "['tiny.html']" in out


def test_every_package_is_walked():
    assert {"dedup.shards", "dedup.jsonl", "audit.metrics", "pipelines.cli"} <= set(MODULES)
    assert not any(part.startswith("_") for name in MODULES for part in name.split("."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = _import(name)
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in _examples(module):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_every_public_dedup_module_has_an_example():
    missing = set()
    for name in (n for n in MODULES if n.split(".")[0] == "dedup"):
        module = _import(name)
        public = [
            obj for attr, obj in vars(module).items()
            if not attr.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
            and obj.__module__ == name
        ]
        if public and not _examples(module):
            missing.add(name)
    assert not missing, f"public dedup modules without an example: {sorted(missing)}"
