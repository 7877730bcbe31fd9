# Dedup: fused in one process, or staged on Dask when a scheduler or workers are configured.
_dask = config.get("dask") or {}
DASK_ARGS = (f"--scheduler {_dask['scheduler']} " if _dask.get("scheduler") else "") + (
    f"--workers {_dask['workers']} " if _dask.get("workers") else "")

rule dedup:
    input: CORPUS_READY, cfg=RUN_CONFIG
    output: f"{OUT}/dedup/manifest.json"
    log: f"{OUT}/logs/dedup.log"
    threads: workflow.cores
    params: corpus=CORPUS, out=f"{OUT}/dedup", dask=DASK_ARGS
    shell:
        "memdedup dedup {params.corpus} --out {params.out} --config {input.cfg} {params.dask}--threads {threads} "
        "--force > {log} 2>&1"
