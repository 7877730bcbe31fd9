# Shared values and helpers of the rule files.
import hashlib
import os
import shlex
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError

from dedup.io import write_text_atomic
from dedup.runs import RUN_FILE, discover, work_dir

GENERATED = bool(config["corpus"]["generate"])


def stage_config_text(stage: str) -> str:
    """The file of the config's ``stage`` section, which its command reads with --config: every key of
    the stage, defaults filled in (``{stage: STAGES[stage].to_dict()}``), so that a section written
    another way that runs the stage the same (a default written out, keys in another order) is the same
    text."""
    return yaml.safe_dump({stage: STAGES[stage].to_dict()}, sort_keys=True)


def runs_as_configured(path: Path, stage: str) -> bool:
    """Whether the file ``path`` of a stage's section runs ``stage`` as the config's section does."""
    try:
        return check_section(SECTIONS[stage], stage, load_yaml(path).get(stage) or {}, str(path)) == STAGES[stage]
    except (ConfigError, TypeError):  # not a section a run of this stage could have read
        return False


def stage_config_path(stage: str) -> str:
    """The file of the config's ``stage`` section: OUT/config/<stage>-<digest of its text>.yaml, or
    a file of the section already there (written by an earlier run, or the OUT/config/<stage>.yaml
    of earlier versions of this workflow) that runs the stage the same, so that their runs are not
    redone."""
    text = stage_config_text(stage)
    folder = Path(f"{OUT}/config")
    for earlier in [folder / f"{stage}.yaml", *sorted(folder.glob(f"{stage}-*.yaml"))]:
        if earlier.is_file() and runs_as_configured(earlier, stage):
            return str(earlier)
    return f"{OUT}/config/{stage}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"


# Each stage section as its own file, written by the stage_config job (rule all asks for them),
# never as the Snakefile is read (a dry run or --lint writes nothing): an edit names a new file,
# missing, so that stage and what depends on it rerun, no other, and `-n` shows so.
STAGE_CONFIG = {stage: stage_config_path(stage) for stage in SECTIONS}


def write_stage_config(path: str, stage: str, log: str) -> None:
    """The stage_config job: write ``path``, the current file of the config's ``stage`` section
    (STAGE_CONFIG), once the stage's earlier files and their logs are removed (of other digests,
    or the <stage>.yaml of earlier versions), so that a section edited back to what an earlier
    run used names a missing file again, and reruns the stage; say so in ``log``."""
    if path != STAGE_CONFIG[stage]:
        raise WorkflowError(f"{path}: not the file of the config's {stage} section ({STAGE_CONFIG[stage]} is)")
    folder, logs = Path(path).parent, Path(log).parent
    earlier = [*folder.glob(f"{stage}-*.yaml"), *folder.glob(f"{stage}.yaml"), *logs.glob(f"config-{stage}-*.log")]
    for p in earlier:
        p.unlink(missing_ok=True)
    write_text_atomic(Path(path), stage_config_text(stage))
    removed = ", ".join(p.name for p in earlier if p.suffix == ".yaml")
    Path(log).write_text(f"{path}: the config's {stage} section{f' (removed {removed})' if removed else ''}\n")


def user_shards() -> list[str]:
    """The files of corpus.shards (files, directories, globs) as dedup finds them: inputs of the
    rules that read the corpus, so that a file added, removed or rewritten reruns them. A path
    that does not exist or holds no shards stops the workflow before any job, naming it."""
    try:
        paths = [str(s.path) for s in discover(config["corpus"].get("shards") or [], exclude=OUT)]
    except ValueError as e:  # InputError, or an empty path
        raise WorkflowError(f"corpus.shards: {e}") from None
    if braced := [p for p in paths if "{" in p or "}" in p]:  # Snakemake has no escape for them in a file name
        raise WorkflowError(f"corpus.shards: {braced[0]}: a path holding {{ or }}, which Snakemake reads as a "
                            "wildcard; rename it, or run `memdedup dedup` by hand")
    return paths


# What the rules that read the raw corpus wait for: the generated corpus's manifest, or the user's shards.
CORPUS_READY = f"{OUT}/corpus/manifest.json" if GENERATED else user_shards()
_dask = config.get("dask") or {}
DASK_ARGS = (f"--scheduler {shlex.quote(_dask['scheduler'])} " if _dask.get("scheduler") else "") + (
    f"--workers {_dask['workers']} " if _dask.get("workers") else "")


def total_cores() -> int:
    """--cores, or 1 where none is given (a dry run or lint: Snakemake 9.15 leaves the total
    unset there, and reading `workflow.cores` then raises)."""
    try:
        return workflow.cores
    except WorkflowError:
        return 1


def corpus_arg(wildcards, input):
    """The corpus as command-line arguments (quoted by the rules' ``:q``): the generated directory, or
    the user's shards."""
    if GENERATED:
        return os.path.dirname(input.corpus)
    return list(config["corpus"]["shards"])


def train_data(wildcards, input):
    """What a model trains on: the raw corpus, or the dedup output's kept shards."""
    if wildcards.model == "raw":
        return corpus_arg(wildcards, input)
    return os.path.join(os.path.dirname(input.data), "kept")
