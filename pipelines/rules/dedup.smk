# Dedup: fused in one process, or staged on Dask when a scheduler or workers are configured.
rule dedup:
    conda: "../envs/memdedup.yaml"
    input: corpus=CORPUS_READY, cfg=RUN_CONFIG
    output: f"{OUT}/dedup/manifest.json"
    log: f"{OUT}/logs/dedup.log"
    threads: total_cores()
    params: corpus=corpus_arg, out=lambda w, output: os.path.dirname(output[0]), dask=DASK_ARGS
    shell:
        "memdedup dedup {params.corpus} --out {params.out} --config {input.cfg} {params.dask}--threads {threads} "
        "--force > {log} 2>&1"
