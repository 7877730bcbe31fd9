"""Examples in the README and in docstrings actually run."""

import doctest
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.mark.parametrize("module", ["dedup.minhash", "dedup.engine", "audit.metrics", "audit.aggregate", "audit.layout",
                                    "audit.forecast", "audit.retention", "audit.profile", "audit.canaries",
                                    "audit.report.page"])
def test_docstring_examples(module):
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
