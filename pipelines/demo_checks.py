"""The demo's claims, checked from the run's own outputs (never from the config).

1. dedup removed every planted exact duplicate (ids listed by the corpus generator);
2. the raw model's extractable rate on canaries planted >= 32 times is high (>= 50%);
3. the dedup model's rate on the same canaries is at least 10x lower.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from dedup import io, layout

MIN_COPIES = 32


def _canary_rate(audit_dir: Path) -> dict:
    t = pq.read_table(audit_dir / "per_sequence.parquet", columns=["doc_id", "duplicate_count", "extractable"]).to_pydict()
    rows = [e for d, c, e in zip(t["doc_id"], t["duplicate_count"], t["extractable"])
            if d is not None and str(d).startswith("canary-") and c >= MIN_COPIES]
    return {"sequences": len(rows), "extractable": sum(rows), "rate": sum(rows) / len(rows) if rows else None}


def run_checks(out: str | Path) -> dict:
    """Evaluate the claims for a workflow output directory; write ``OUT/checks.json``."""
    out = Path(out)
    checks = []
    corpus_manifest = out / "corpus" / "manifest.json"
    if corpus_manifest.exists():
        planted = set(json.loads(corpus_manifest.read_text()).get("exact_ids", []))
        removed = pq.read_table(layout.removed_path(out / "dedup"), columns=["id", "reason"]).to_pydict()
        removed_ids = set(removed["id"])
        missed = sorted(planted - removed_ids)
        checks.append({"name": "every planted exact duplicate removed", "passed": not missed and bool(planted),
                       "planted": len(planted), "removed": len(planted & removed_ids), "missed": missed[:20]})
    raw, dedup = _canary_rate(out / "audit" / "raw"), _canary_rate(out / "audit" / "dedup")
    checks.append({"name": f"raw model extracts canaries planted >= {MIN_COPIES} times (rate >= 0.5)",
                   "passed": raw["rate"] is not None and raw["rate"] >= 0.5, **{f"raw_{k}": v for k, v in raw.items()}})
    ratio_ok = raw["rate"] is not None and dedup["rate"] is not None and dedup["rate"] * 10 <= raw["rate"]
    checks.append({"name": "dedup model's rate on those canaries is at least 10x lower", "passed": ratio_ok,
                   "raw_rate": raw["rate"], "dedup_rate": dedup["rate"], "dedup_sequences": dedup["sequences"]})
    result = {"passed": all(c["passed"] for c in checks), "checks": checks}
    io.write_json_atomic(out / "checks.json", result)
    return result
