"""The three floors: imports point down only, and the dedup path never loads torch."""

import ast
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


KERNEL_INFRA = {"__init__.py", "aot.py", "sources.py"}  # cache invalidation and the AOT build script


def test_kernels_import_only_numpy_numba_math_and_siblings():
    for path in (ROOT / "dedup" / "_kernels").glob("*.py"):
        allowed = {"numpy", "numba", "math"}
        if path.name in KERNEL_INFRA:
            allowed |= {"hashlib", "pathlib", "sys", "time", "__future__"}
        bad = {n for n in _imports(path) if n not in allowed and not n.startswith(".")}
        assert not bad, f"{path.name} imports {bad}"


def test_library_never_imports_orchestration():
    for pkg in ("dedup", "audit"):
        for path in (ROOT / pkg).rglob("*.py"):
            bad = _imports(path) & {"pipelines", "dask", "distributed", "snakemake"}
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_serial_dedup_with_the_aot_build_never_imports_numba(tmp_path, loads_none):
    """With the compiled kernels present, a one-thread run needs no Numba at all."""
    from dedup import kernels

    if kernels.aot() is None:
        import pytest

        pytest.skip("AOT kernels not built (run `python -m dedup._kernels.aot`)")
    code = (
        "import pyarrow as pa, pyarrow.parquet as pq\n"
        f"pq.write_table(pa.table({{'text': ['a b c d e f', 'A b c d e f!']}}), r'{tmp_path}/in.parquet')\n"
        "from pipelines.cli import main\n"
        f"assert main(['dedup', r'{tmp_path}/in.parquet', '--out', r'{tmp_path}/out', '--threads', '1', '--quiet']) == 0"
    )
    loads_none(code, ("numba",))


def test_dedup_path_loads_no_torch_or_transformers(loads_none):
    loads_none("import dedup, dedup.engine, dedup.index, pipelines.cli", ("torch", "transformers", "dask", "distributed"))


def test_dedup_path_loads_no_baseline_packages(loads_none):
    """datasketch and pybloom-live are an optional extra (dedup/baselines.py), imported only
    when --index lsh / pybloom asks for them."""
    loads_none("import dedup, dedup.engine, dedup.index, dedup.baselines, pipelines.cli", ("datasketch", "pybloom_live"))


def test_only_the_model_modules_of_audit_touch_torch_and_transformers():
    """lm.py (load, score, generate) and train.py (tokenizer, trainer): nothing else in audit/."""
    users = sorted(str(p.relative_to(ROOT / "audit")) for p in (ROOT / "audit").rglob("*.py")
                   if _imports(p) & {"torch", "transformers", "tokenizers"})
    assert users == ["lm.py", "train.py"], users


def test_importing_audit_loads_no_torch(loads_none):
    loads_none("import audit.run, audit.metrics, audit.stats, audit.aggregate, audit.layout, audit.lm, audit.train, audit.canaries, "
               "audit.checkpoints, audit.forecast, audit.report.model, audit.report.comparison",
               ("torch", "transformers", "tokenizers"))


def test_dedup_run_never_imports_pandas(tmp_path, loads_none):
    """``pyarrow.array`` on a numpy array imports pandas when it is installed (~0.2 s of
    start-up, more than a tenth of a 100k-document run); the dedup path must avoid it, also
    on its rare routes (utf8proc for marks out of canonical order, removed rows, a JSONL
    shard)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = ["a b c d e f", "A b c d e f!", "cafe\u0301\u0323 au lait x y", "cafe\u0301\u0323 au lait x y", None, ""]
    pq.write_table(pa.table({"id": [str(i) for i in range(len(docs))], "text": docs}), tmp_path / "in.parquet")
    (tmp_path / "more.jsonl").write_text('{"id": "j", "text": "a b c d e f"}\n')
    code = (
        "from pipelines.cli import main\n"
        f"assert main(['dedup', r'{tmp_path}/in.parquet', r'{tmp_path}/more.jsonl', '--out', r'{tmp_path}/out', "
        "'--threads', '1', '--quiet']) == 0"
    )
    loads_none(code, ("pandas",))


def test_parquet_dedup_run_never_imports_pyarrow_compute(tmp_path, loads_none):
    """Importing pyarrow.compute costs ~30 ms per run (it generates Python wrappers for
    ~290 functions); a Parquet run reaches the C++ functions it needs (filter, take, cast)
    without it: integer ids (cast to strings), removed rows, nulls, composed marks, and marks
    out of canonical order (utf8proc's route: its normalise and lowercase functions are called
    the same way)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = ["a b c d e f", "A b c d e f!", "cafe\u0301 au lait x y z", "café au lait x y z", None, "",
            "cafe\u0301\u0323 au lait x y"]
    pq.write_table(pa.table({"id": list(range(len(docs))), "text": docs}), tmp_path / "in.parquet")
    code = (
        "from pipelines.cli import main\n"
        f"assert main(['dedup', r'{tmp_path}/in.parquet', '--out', r'{tmp_path}/out', '--threads', '1', '--quiet']) == 0\n"
        f"import json; m = json.load(open(r'{tmp_path}/out/manifest.json'))\n"
        "assert m['totals']['removed'] == {'exact': 2, 'near': 0}, m"
    )
    loads_none(code, ("pyarrow.compute",))


def test_the_workflow_spells_no_internal_run_layout():
    """The run record's place (OUT/_work/run.json) is defined once, in dedup.runs; the dedup
    rule spelled it again, and would have gone on testing a file no longer written had it moved."""
    from dedup.runs import RUN_FILE, WORK_DIR

    rules = [ROOT / "Snakefile", *sorted((ROOT / "pipelines" / "rules").glob("*.smk"))]
    spelled = [f"{p.name}:{i}" for p in rules for i, line in enumerate(p.read_text().splitlines(), 1)
               if not line.lstrip().startswith("#") and (WORK_DIR in line or RUN_FILE in line)]
    assert not spelled, spelled


def test_the_units_of_a_parallel_run_name_test_modules_that_exist():
    """tests/conftest.py joins test modules into units of work by their names: a module renamed
    would run alone again (its minute-long session fixture made on both workers, or the two 8 GiB
    tests side by side), and a unit renamed would no longer be handed out first."""
    import runpy

    ns = runpy.run_path(str(ROOT / "tests" / "conftest.py"))
    modules = {p.relative_to(ROOT / "tests").as_posix() for p in (ROOT / "tests").rglob("test_*.py")}
    assert {m for joined in ns["JOINED"].values() for m in joined} <= modules
    units = {ns["unit_of"](f"tests/{m}::test") for m in modules}
    assert set(ns["FIRST"]) <= units and units >= set(ns["JOINED"])
