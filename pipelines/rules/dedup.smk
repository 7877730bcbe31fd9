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
    # dask: the engine, which does not change the outputs (fused and staged write the same bytes): a
    # function of the output, as Snakemake records no such param, so that a changed engine reruns nothing;
    # fused: the one param Snakemake records, '', what earlier versions recorded for a fused run's dask
    # (so that their runs are not redone)
    params: corpus=corpus_arg, out=lambda w, output: os.path.dirname(output[0]), dask=lambda w, output: DASK_ARGS,
            record=lambda w, output: work_dir(os.path.dirname(output[0])) / RUN_FILE, fused=""
    shell:
        "memdedup dedup {params.corpus:q} --out {params.out:q} --config {input.cfg:q} {params.dask}--threads {threads} "
        "$([ -e {params.record:q} ] || echo --force) > {log:q} 2>&1"
