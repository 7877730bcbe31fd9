# Reports: one page per model and the raw-vs-dedup comparison; then the demo's checks,
# computed from the run's own outputs.
rule report:
    input:
        f"{OUT}/audit/raw/manifest.json",
        f"{OUT}/audit/dedup/manifest.json",
        f"{OUT}/profile/raw/manifest.json",
    output: f"{OUT}/report/comparison.html"
    log: f"{OUT}/logs/report.log"
    params: o=OUT
    shell:
        "memdedup report {params.o}/audit/raw {params.o}/audit/dedup --labels raw dedup --dedup-dir {params.o}/dedup "
        "--profile-dir {params.o}/profile/raw --model-dir {params.o}/train/raw/model --out {params.o}/report > {log} 2>&1"

rule checks:
    input:
        f"{OUT}/audit/raw/manifest.json",
        f"{OUT}/audit/dedup/manifest.json",
        f"{OUT}/dedup/manifest.json",
    output: f"{OUT}/checks.json"
    log: f"{OUT}/logs/checks.log"
    params: o=OUT
    shell: "memdedup check {params.o} > {log} 2>&1"
