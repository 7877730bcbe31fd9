# memdedup workflow: demo corpus -> dedup -> train raw and cleaned models -> audit both
# -> profile the raw model over its checkpoints -> reports.
#   snakemake --cores 2                       the embedded demo (configs/default.yaml)
#   snakemake --cores 16 --configfile my.yaml your corpus (configs/template.yaml)
#   snakemake --profile configs/slurm ...     on Slurm
# Every rule runs one `memdedup` command (so anything here can be run by hand) and declares
# the stage's manifest.json, written last by the stage, as its output; but stage_config
# (pipelines/rules/config.smk), which writes the file of a stage's config section.
import json
import os
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

configfile: os.path.join(workflow.basedir, "configs", "default.yaml")  # wherever Snakemake runs
validate(config, "configs/schema.yaml")
# JSON Schema's integer takes 1000.0 (YAML 1.0e3), which the commands refuse (generate --docs 1000.0)
if floats := [(f"{s}.{k}", v) for s in ("corpus", "dask") for k, v in (config.get(s) or {}).items()
              if type(v) is float]:
    raise WorkflowError(f"config: {floats[0][0]} must be an integer, got {floats[0][1]!r}")
if (config.get("dask") or {}).get("scheduler") and (config.get("dask") or {}).get("workers"):  # as the CLI refuses
    raise WorkflowError("config: dask.scheduler and dask.workers: give one (workers sizes a local cluster; with a "
                        "scheduler the workers are that scheduler's)")

# ~ as in a shell (Snakemake expands none: out: ~/x made a folder "~"); "run/", "./run" as "run" (Snakemake warns
# of each path "run//x", "./run/x")
config["corpus"]["shards"] = [os.path.expanduser(s) for s in config["corpus"].get("shards") or []]
OUT = os.path.normpath(os.path.expanduser(config["out"]))
from dedup.runs import OutputExistsError, refuse_unusable_out

try:  # a file there ended Snakemake's DAG inventory in a traceback
    refuse_unusable_out(Path(OUT))
except (ValueError, OutputExistsError) as e:
    raise WorkflowError(f"config: out: {str(e).removeprefix('--out ')}") from None  # the key, not the CLI's flag
# The stage sections checked as their commands check them, before any job starts or file is
# written: an unknown key or bad value is named here, not only in the stage's log.
from pipelines.cli import SECTIONS
from pipelines.config import ConfigError, check_section, load_yaml

try:
    for f in workflow.configfiles:  # a key written twice is refused, as the commands do (Snakemake keeps the last)
        try:
            json.loads(Path(f).read_text(encoding="utf-8"))  # JSON, which Snakemake reads first (tabs allowed)
        except ValueError:
            load_yaml(f)
    STAGES = {stage: check_section(cls, stage, config.get(stage) or {}, "config") for stage, cls in SECTIONS.items()}
except ConfigError as e:
    raise WorkflowError(str(e)) from None
if STAGES["dedup"].emit != "all":  # the dedup model trains on the kept shards
    raise WorkflowError(f"config: dedup.emit must be all in the workflow (its kept shards are trained on), "
                        f"got {STAGES['dedup'].emit!r}")
if STAGES["train"].holdout == 0:  # the profile's control group: never-trained (held-out) instances
    raise WorkflowError("config: train.holdout must be > 0 in the workflow (the profile compares trained "
                        "instances with held-out ones), got 0")
texts = {s: STAGES[s].text_column for s in ("dedup", "train", "audit")}
if len(set(texts.values())) > 1:
    raise WorkflowError("config: text_column must be the same in dedup, train and audit (each reads the corpus), "
                        "got " + ", ".join(f"{s}.text_column={c!r}" for s, c in texts.items()))

include: "pipelines/rules/common.smk"
include: "pipelines/rules/config.smk"
include: "pipelines/rules/corpus.smk"
include: "pipelines/rules/dedup.smk"
include: "pipelines/rules/models.smk"
include: "pipelines/rules/report.smk"

rule all:
    input:
        f"{OUT}/report/comparison.html",
        f"{OUT}/checks.json",
        # every stage's manifest: one deleted after a run (Snakemake redoes no missing file that only
        # a finished job reads) reruns its stage and what reads it
        [f"{OUT}/{s}/manifest.json" for s in ("corpus",) * GENERATED + ("dedup", "train/raw", "train/dedup",
                                                                         "audit/raw", "audit/dedup", "profile/raw")],
        # a section's file missing (after an edit) reruns its stage, even without Snakemake's records
        STAGE_CONFIG.values(),
