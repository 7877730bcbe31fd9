# Two models with the same seed and budget: on the raw corpus and on the deduplicated one;
# both audited on the raw corpus's sequences; the raw one profiled over its checkpoints.

rule train:
    conda: "../envs/memdedup.yaml"
    input:
        corpus=CORPUS_READY,
        data=lambda w: f"{OUT}/dedup/manifest.json" if w.model == "dedup" else CORPUS_READY,
        cfg=STAGE_CONFIG["train"],
    output: f"{OUT}/train/{{model}}/manifest.json"
    wildcard_constraints: model="raw|dedup"
    log: f"{OUT}/logs/train-{{model}}.log"
    threads: STAGES["train"].threads  # the cores training runs on: config (train.threads), as the weights depend on it
    # --replace: Snakemake reruns this rule after an edit to the train section or the corpus, into
    # the same run directory; a killed job (same config and corpus) still resumes.
    params: data=train_data, run=lambda w, output: os.path.dirname(output[0])
    shell:
        "OMP_NUM_THREADS={threads} memdedup train {params.data:q} --out {params.run:q} --config {input.cfg:q} "
        "--replace > {log:q} 2>&1"

rule audit:
    conda: "../envs/memdedup.yaml"
    input:
        corpus=CORPUS_READY,
        run=f"{OUT}/train/{{model}}/manifest.json",
        dedup=f"{OUT}/dedup/manifest.json",
        cfg=STAGE_CONFIG["audit"],
    output: f"{OUT}/audit/{{model}}/manifest.json"
    wildcard_constraints: model="raw|dedup"
    log: f"{OUT}/logs/audit-{{model}}.log"
    params:
        corpus=corpus_arg,
        run=lambda w, input: os.path.dirname(input.run),
        out=lambda w, output: os.path.dirname(output[0]),
        dedup=lambda w, input: os.path.dirname(input.dedup),
    shell:
        "memdedup audit --model {params.run:q}/model --corpus {params.corpus:q} --out {params.out:q} "
        "--dedup-dir {params.dedup:q} --members {params.run:q}/order.parquet --config {input.cfg:q} > {log:q} 2>&1"

rule profile:
    conda: "../envs/memdedup.yaml"
    input: run=f"{OUT}/train/raw/manifest.json", cfg=STAGE_CONFIG["profile"]
    output: f"{OUT}/profile/raw/manifest.json"
    log: f"{OUT}/logs/profile-raw.log"
    params: run=lambda w, input: os.path.dirname(input.run), out=lambda w, output: os.path.dirname(output[0])
    shell: "memdedup profile --run {params.run:q} --out {params.out:q} --config {input.cfg:q} > {log:q} 2>&1"
