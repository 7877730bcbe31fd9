"""Fixtures shared by the workflow tests (test_workflow.py) and the Slurm tests
(test_slurm.py): the ``snakemake`` command of this environment, and one local run of the
reduced config, made once per session (the Slurm run is compared with it); and the check of
the command line's one-line errors that the CLI tests share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def assert_one_error_line(r: subprocess.CompletedProcess, prefix: str, *needles: str) -> None:
    """Exit status 2, nothing on stdout, and one line on stderr, no traceback, starting
    ``<prefix>: error: `` (``"memdedup dedup"``; ``"memdedup"`` for the top-level parser's)
    and holding each of ``needles``."""
    assert r.returncode == 2, f"exit {r.returncode}\nstderr:\n{r.stderr}"
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"{prefix}: error: "), err
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"
    assert r.stdout == "", r.stdout


def _env() -> dict[str, str]:
    """This environment's executables first, and this checkout's packages first, for
    Snakemake and everything it starts (local jobs, and Slurm jobs, which inherit it)."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


@pytest.fixture(scope="session")
def snakemake() -> Callable[..., subprocess.CompletedProcess]:
    """``snakemake(*args, cwd=ROOT, timeout=900, kill_after=None)``: run Snakemake in the
    repository. ``kill_after`` runs it under ``timeout -s KILL`` (a Snakemake waiting on
    a cluster does not stop on SIGTERM); then the result's returncode is -9 or 137."""

    def run(*args: str, cwd: Path = ROOT, timeout: int = 900, kill_after: int | None = None) -> subprocess.CompletedProcess:
        cmd = [str(BIN / "snakemake"), *args]
        if kill_after is not None:
            cmd = ["timeout", "-s", "KILL", str(kill_after), *cmd]
            timeout = kill_after + 60
        return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)

    return run


class ReducedWorkflow(NamedTuple):
    write_config: Callable[[Path, Path], Path]  # (out dir, config path) -> config path
    local_out: Path                             # the local run's OUT
    local_config: Path
    local_result: subprocess.CompletedProcess


def reduced_config(out: Path) -> dict:
    """The default config made small: every rule runs, in a couple of minutes on 2 cores."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg.update(out=str(out))
    cfg["corpus"].update(docs=200, canaries_per_repeat=1, n_shards=2)
    cfg["train"].update(epochs=1, n_layer=1, n_embd=32, holdout=0.2)
    cfg["train"]["n_head"] = 2
    cfg["audit"].update(n_sequences=80, generate=False, n_boot=40)
    cfg["profile"].update(n_treated=40, n_control=20, n_boot=40)
    return cfg


@pytest.fixture(scope="session")
def reduced_workflow(tmp_path_factory, snakemake) -> ReducedWorkflow:
    """The reduced config run once locally (``snakemake --cores 2``)."""

    def write_config(out: Path, path: Path) -> Path:
        path.write_text(yaml.safe_dump(reduced_config(out)))
        return path

    d = tmp_path_factory.mktemp("workflow")
    config = write_config(d / "local", d / "small.yaml")
    result = snakemake("--cores", "2", "--configfile", str(config))
    return ReducedWorkflow(write_config, d / "local", config, result)
