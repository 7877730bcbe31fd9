# The corpus: generated (the demo) or the user's shards (config corpus.shards).
if GENERATED:

    rule corpus:
        conda: "../envs/memdedup.yaml"
        output: CORPUS_READY
        log: f"{OUT}/logs/corpus.log"
        # c: Snakemake reruns the rule when this param changes: its keys in configs/default.yaml's order
        # whatever the config's, and shards, unread here, as [] (as earlier versions recorded the demo's)
        params:
            c={**load_yaml(os.path.join(workflow.basedir, "configs", "default.yaml"))["corpus"], **config["corpus"],
               "shards": []},
            dir=lambda w, output: os.path.dirname(output[0]),
        shell:
            "memdedup generate --out {params.dir:q} --canaries --docs {params.c[docs]} "
            "--doc-bytes {params.c[doc_bytes]} --canaries-per-repeat {params.c[canaries_per_repeat]} "
            "--shards {params.c[n_shards]} --seed {params.c[seed]} > {log:q} 2>&1"
