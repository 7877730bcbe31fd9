# The file of each stage's config section (STAGE_CONFIG, common.smk), written here by Snakemake
# itself (a local rule, also on Slurm), never as the Snakefile is read.
localrules: stage_config

rule stage_config:
    output: f"{OUT}/config/{{stage}}-{{digest}}.yaml"
    wildcard_constraints: stage="|".join(SECTIONS), digest="[0-9a-f]{12}"
    log: f"{OUT}/logs/config-{{stage}}-{{digest}}.log"
    run: write_stage_config(output[0], wildcards.stage, log[0])
