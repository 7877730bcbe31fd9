# Shared values and helpers of the rule files.
import os

from snakemake.exceptions import WorkflowError

from dedup.runs import RUN_FILE, discover, work_dir
from dedup.shards import InputError

GENERATED = bool(config["corpus"]["generate"])


def user_shards() -> list[str]:
    """The files of corpus.shards (files, directories, globs) as dedup finds them: inputs of the
    rules that read the corpus, so that a file added, removed or rewritten reruns them. A path
    that does not exist or holds no shards stops the workflow before any job, naming it."""
    try:
        return [str(s.path) for s in discover(config["corpus"].get("shards") or [], exclude=OUT)]
    except InputError as e:
        raise WorkflowError(f"corpus.shards: {e}") from None


# What the rules that read the raw corpus wait for: the generated corpus's manifest, or the user's shards.
CORPUS_READY = f"{OUT}/corpus/manifest.json" if GENERATED else user_shards()
_dask = config.get("dask") or {}
DASK_ARGS = (f"--scheduler {_dask['scheduler']} " if _dask.get("scheduler") else "") + (
    f"--workers {_dask['workers']} " if _dask.get("workers") else "")


def total_cores() -> int:
    """--cores, or 1 where none is given (a dry run or lint: Snakemake 9.15 leaves the total
    unset there, and reading `workflow.cores` then raises)."""
    try:
        return workflow.cores
    except WorkflowError:
        return 1


def corpus_arg(wildcards, input):
    """The corpus as a command-line argument: the generated directory, or the user's shards."""
    if GENERATED:
        return os.path.dirname(input.corpus)
    return " ".join(f"'{s}'" for s in config["corpus"]["shards"])


def train_data(wildcards, input):
    """What a model trains on: the raw corpus, or the dedup output's kept shards."""
    if wildcards.model == "raw":
        return corpus_arg(wildcards, input)
    return os.path.join(os.path.dirname(input.data), "kept")
