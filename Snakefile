# memdedup workflow: demo corpus -> dedup -> train raw and cleaned models -> audit both
# -> profile the raw model over its checkpoints -> reports.
#   snakemake --cores 2                       the embedded demo (configs/default.yaml)
#   snakemake --cores 16 --configfile my.yaml your corpus (configs/template.yaml)
#   snakemake --profile configs/slurm ...     on Slurm
# Every rule runs one `memdedup` command (so anything here can be run by hand) and declares
# the stage's manifest.json, written last by the stage, as its output.
import yaml
from pathlib import Path
from snakemake.utils import validate

configfile: "configs/default.yaml"
validate(config, "configs/schema.yaml")

OUT = config["out"]
# The stage sections checked as their commands check them, before any job starts or file is
# written: an unknown key or bad value is named here, not only in the stage's log.
from pipelines.cli import SECTIONS
from pipelines.config import ConfigError, check_section
from snakemake.exceptions import WorkflowError

for _stage, _cls in SECTIONS.items():
    try:
        check_section(_cls, _stage, config.get(_stage) or {}, "config")
    except ConfigError as e:
        raise WorkflowError(str(e)) from None
# Each stage section as its own file, the one its memdedup command reads with --config, rewritten
# only when that section changes: an edit reruns that stage and what depends on it, no other.
STAGE_CONFIG = {k: f"{OUT}/config/{k}.yaml" for k in ("dedup", "train", "audit", "profile")}
Path(OUT, "config").mkdir(parents=True, exist_ok=True)
for _stage, _path in STAGE_CONFIG.items():
    _section = {_stage: config.get(_stage) or {}}
    if not Path(_path).exists() or yaml.safe_load(Path(_path).read_text()) != _section:
        Path(f"{_path}.tmp").write_text(yaml.safe_dump(_section, sort_keys=True))
        Path(f"{_path}.tmp").replace(_path)

include: "pipelines/rules/common.smk"
include: "pipelines/rules/corpus.smk"
include: "pipelines/rules/dedup.smk"
include: "pipelines/rules/models.smk"
include: "pipelines/rules/report.smk"

rule all:
    input:
        f"{OUT}/report/comparison.html",
        f"{OUT}/checks.json",
