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
# The stage sections, as the file each memdedup command reads with --config.
RUN_CONFIG = f"{OUT}/run_config.yaml"
_sections = {k: config.get(k) or {} for k in ("dedup", "train", "audit", "profile")}
Path(OUT).mkdir(parents=True, exist_ok=True)
if not Path(RUN_CONFIG).exists() or yaml.safe_load(Path(RUN_CONFIG).read_text()) != _sections:
    Path(RUN_CONFIG).write_text(yaml.safe_dump(_sections, sort_keys=True))

include: "pipelines/rules/common.smk"
include: "pipelines/rules/corpus.smk"
include: "pipelines/rules/dedup.smk"
include: "pipelines/rules/models.smk"
include: "pipelines/rules/report.smk"

rule all:
    input:
        f"{OUT}/report/comparison.html",
        f"{OUT}/checks.json",
