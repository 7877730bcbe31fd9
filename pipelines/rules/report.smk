# The demo's checks, computed from the run's own outputs (with each model's canary exposure by
# planted copies); then the reports: one page per model and the raw-vs-dedup comparison, which
# shows that exposure. Over a corpus without canaries (the user's own), the claims on canaries are
# reported not applicable, not failed (pipelines/demo.py).
rule report:
    conda: "../envs/memdedup.yaml"
    input:
        raw=f"{OUT}/audit/raw/manifest.json",
        dedup=f"{OUT}/audit/dedup/manifest.json",
        profile=f"{OUT}/profile/raw/manifest.json",
        cleaned=f"{OUT}/dedup/manifest.json",
        raw_model=f"{OUT}/train/raw/manifest.json",
        dedup_model=f"{OUT}/train/dedup/manifest.json",
        checks=f"{OUT}/checks.json",
    output: f"{OUT}/report/comparison.html"
    log: f"{OUT}/logs/report.log"
    params:
        d=lambda w, input: {k: os.path.dirname(v) for k, v in input.items() if k != "checks"},
        out=lambda w, output: os.path.dirname(output[0]),
    shell:
        "memdedup report {params.d[raw]:q} {params.d[dedup]:q} --labels raw dedup --dedup-dir {params.d[cleaned]:q} "
        "--profile-dir {params.d[profile]:q} --model-dir {params.d[raw_model]:q}/model {params.d[dedup_model]:q}/model "
        "--checks {input.checks:q} --out {params.out:q} > {log:q} 2>&1"

rule checks:
    conda: "../envs/memdedup.yaml"
    input:
        f"{OUT}/audit/raw/manifest.json",
        f"{OUT}/audit/dedup/manifest.json",
        f"{OUT}/dedup/manifest.json",
        f"{OUT}/train/raw/manifest.json",
        f"{OUT}/train/dedup/manifest.json",
    output: f"{OUT}/checks.json"
    log: f"{OUT}/logs/checks.log"
    params: out=lambda w, output: os.path.dirname(output[0])
    shell: "memdedup check {params.out:q} > {log:q} 2>&1"
