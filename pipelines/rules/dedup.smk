# Dedup: fused in one process, or staged on Dask when a scheduler or workers are configured.
# --force replaces the outputs of an earlier run (Snakemake deletes manifest.json before a rerun,
# so the run would otherwise be refused as "files of no run"), but not when OUT holds an
# unfinished run's record (params.record, where dedup.runs writes it): a killed staged job then resumes.
rule dedup:
    conda: "../envs/memdedup.yaml"
    input: corpus=CORPUS_READY, cfg=STAGE_CONFIG["dedup"]
    output: f"{OUT}/dedup/manifest.json"
    log: f"{OUT}/logs/dedup.log"
    threads: total_cores()
    params: corpus=corpus_arg, out=lambda w, output: os.path.dirname(output[0]), dask=DASK_ARGS,
            record=lambda w, output: work_dir(os.path.dirname(output[0])) / RUN_FILE
    shell:
        "memdedup dedup {params.corpus:q} --out {params.out:q} --config {input.cfg:q} {params.dask}--threads {threads} "
        "$([ -e {params.record:q} ] || echo --force) > {log:q} 2>&1"
