# Two models with the same seed and budget: on the raw corpus and on the deduplicated one;
# both audited on the raw corpus's sequences; the raw one profiled over its checkpoints.
TRAIN_DATA = {"raw": CORPUS, "dedup": f"{OUT}/dedup/kept"}

rule train:
    input:
        lambda w: CORPUS_READY if w.model == "raw" else f"{OUT}/dedup/manifest.json",
        cfg=RUN_CONFIG,
    output: f"{OUT}/train/{{model}}/manifest.json"
    wildcard_constraints: model="raw|dedup"
    log: f"{OUT}/logs/train-{{model}}.log"
    threads: 1  # torch threads: the two models train side by side
    params: data=lambda w: TRAIN_DATA[w.model], run=lambda w: f"{OUT}/train/{w.model}"
    shell: "OMP_NUM_THREADS={threads} memdedup train {params.data} --out {params.run} --config {input.cfg} > {log} 2>&1"

rule audit:
    input:
        f"{OUT}/train/{{model}}/manifest.json",
        f"{OUT}/dedup/manifest.json",
        cfg=RUN_CONFIG,
    output: f"{OUT}/audit/{{model}}/manifest.json"
    wildcard_constraints: model="raw|dedup"
    log: f"{OUT}/logs/audit-{{model}}.log"
    params:
        corpus=CORPUS,
        run=lambda w: f"{OUT}/train/{w.model}",
        out=lambda w: f"{OUT}/audit/{w.model}",
        dedup=f"{OUT}/dedup",
    shell:
        "memdedup audit --model {params.run}/model --corpus {params.corpus} --out {params.out} "
        "--dedup-dir {params.dedup} --members {params.run}/order.parquet --config {input.cfg} > {log} 2>&1"

rule profile:
    input: f"{OUT}/train/raw/manifest.json", cfg=RUN_CONFIG
    output: f"{OUT}/profile/raw/manifest.json"
    log: f"{OUT}/logs/profile-raw.log"
    params: run=f"{OUT}/train/raw", out=f"{OUT}/profile/raw"
    shell: "memdedup profile --run {params.run} --out {params.out} --config {input.cfg} > {log} 2>&1"
