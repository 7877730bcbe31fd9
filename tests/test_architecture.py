"""The three floors: imports point down only, and the dedup path never loads torch."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif node.level == 1 and node.module:  # from .x import y (sibling module)
                names.add("." + node.module.split(".")[0])
    return names


def test_kernels_import_only_numpy_numba_math_and_siblings():
    for path in (ROOT / "dedup" / "_kernels").glob("*.py"):
        bad = {n for n in _imports(path) if n not in {"numpy", "numba", "math"} and not n.startswith(".")}
        assert not bad, f"{path.name} imports {bad}"


def test_library_never_imports_orchestration():
    for pkg in ("dedup", "audit"):
        for path in (ROOT / pkg).rglob("*.py"):
            bad = _imports(path) & {"pipelines", "dask", "distributed", "snakemake"}
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_dedup_path_loads_no_torch_or_transformers():
    code = (
        "import sys, dedup, dedup.engine, dedup.index, pipelines.cli\n"
        "bad = [m for m in ('torch', 'transformers', 'dask', 'distributed') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
