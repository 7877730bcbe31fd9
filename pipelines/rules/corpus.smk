# The corpus: generated (the demo) or the user's shards.
if config["corpus"]["generate"]:
    CORPUS = f"{OUT}/corpus"
    CORPUS_READY = f"{OUT}/corpus/manifest.json"

    rule corpus:
        output: CORPUS_READY
        log: f"{OUT}/logs/corpus.log"
        params: c=config["corpus"], dir=CORPUS
        shell:
            "memdedup generate --out {params.dir} --canaries --docs {params.c[docs]} --doc-bytes {params.c[doc_bytes]} "
            "--canaries-per-repeat {params.c[canaries_per_repeat]} --shards {params.c[n_shards]} "
            "--seed {params.c[seed]} > {log} 2>&1"
else:
    CORPUS = " ".join(f"'{s}'" for s in config["corpus"]["shards"])
    CORPUS_READY = []
