# The corpus: generated (the demo) or the user's shards (config corpus.shards).
if GENERATED:

    rule corpus:
        conda: "../envs/memdedup.yaml"
        output: CORPUS_READY
        log: f"{OUT}/logs/corpus.log"
        params: c=config["corpus"], dir=lambda w, output: os.path.dirname(output[0])
        shell:
            "memdedup generate --out {params.dir:q} --canaries --docs {params.c[docs]} "
            "--doc-bytes {params.c[doc_bytes]} --canaries-per-repeat {params.c[canaries_per_repeat]} "
            "--shards {params.c[n_shards]} --seed {params.c[seed]} > {log:q} 2>&1"
