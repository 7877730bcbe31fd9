"""The report stage (``memdedup report``): a page per audit, a comparison page for two or more, and the stage
manifest, in one output directory.

Files in ``out``: per audit ``<label>.html`` and ``<label>.summary.json`` (characters other than ``A-Za-z0-9._-``
become ``_``; names over 100 characters are cut to end with 8 hex digits of the label's SHA-256; all get an
``<i>-`` prefix when two collide, or one is ``comparison``, ignoring case); ``comparison.html`` and
``comparison.json`` with two or more audits; ``manifest.json`` (:func:`dedup.io.write_stage_manifest`, last)
listing them, with the comparison's ``differences`` (settings that differ between the audits, also logged as notes).

Pages are written aside and moved in once all are; only then go the earlier report's files (its manifest's, and
those :data:`audit.layout.REPORT_PENDING` lists): a report refused or failing part-way leaves ``out`` as it was;
other files are never touched. Tokenizers of ``model_dirs`` (one, or one per audit) decode token ids; one whose
fingerprint is not the audited model's (``model.tokenizer_sha256``) gives way to that model's own if still there,
else the page shows ids.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from dedup.io import (completed_manifest, json_or_empty, read_json, read_manifest, tmp_path, undecodable,
                      write_json_atomic, write_stage_manifest)
from dedup.shards import InputError

from ..layout import (COMPARISON_PAGE, REPORT_PENDING, SUMMARY, as_paths, finished_audit, holding_out, refuse_out,
                      refuse_unfinished, report_json, shape_problem, training_run)
from . import comparison as comparison_page
from . import model as model_page

__all__ = ["write_report"]

#: A model's entry of checks.json's exposure_by_copies (pipelines.demo), as the comparison page reads it.
EXPOSURE_SHAPE = {"samples": 0, "log2_space": 0.0, "words": 0, "error": "", "by_copies": [
    {"copies": 0, "canaries": 0, "mean_exposure": 0.0, "min_exposure": 0.0, "max_exposure": 0.0}]}


def _labels(audits: Sequence[Path], labels: Sequence[str] | None) -> list[str]:
    """The given labels, or the audits' directory names made distinct (audit-1, audit-2). ValueError: not one per
    audit, blank, or not distinct."""
    out = list(labels) if labels else [a.resolve().name or "audit" for a in audits]
    if len(out) != len(audits):
        raise ValueError(f"--labels: {len(out)} labels for {len(audits)} audit directories")
    if not labels:
        out = [f"{lab}-{i + 1}" if out.count(lab) > 1 else lab for i, lab in enumerate(out)]
    elif not all(lab.strip() for lab in out):
        raise ValueError(f"--labels: a label may not be blank, got {out}")
    if len(set(out)) != len(out):
        raise ValueError(f"--labels must be distinct, got {out}")
    return out


def _file_stems(labels: list[str]) -> list[str]:
    """A file name stem per label (module docstring)."""
    stems = [re.sub(r"[^A-Za-z0-9._-]+", "_", lab).strip("._") or f"audit-{i + 1}" for i, lab in enumerate(labels)]
    stems = [f if len(f) <= 100 else f"{f[:91]}-{hashlib.sha256(lab.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
             for f, lab in zip(stems, labels)]  # a long label made a name too long (ENAMETOOLONG)
    folded = [f.casefold() for f in stems]  # a case-insensitive file system (macOS, Windows): Raw.html is raw.html
    if len(set(folded)) != len(folded) or COMPARISON_PAGE.removesuffix(".html") in folded:
        stems = [f"{i + 1}-{f}" for i, f in enumerate(stems)]
    return stems


def _decoders(audits: Sequence[Path], model_dirs: Sequence[Path], log: Callable[[str], None]) -> list:
    """Per audit, token ids -> text (module docstring), or None. ValueError: a directory without a usable
    tokenizer."""
    decoders: list = [None] * len(audits)
    if not model_dirs:
        return decoders
    from ..lm import damaged_tokenizer_json, load_tokenizer

    toks = {}
    for m in model_dirs:
        toks[m] = load_tokenizer(m)
        if toks[m][0] is None:
            why = damaged_tokenizer_json(Path(m))
            raise ValueError(f"--model-dir {m}: no usable tokenizer{f': {why}' if why else ''}")
    dirs = list(model_dirs) * len(audits) if len(model_dirs) == 1 else model_dirs
    for i, (a, m) in enumerate(zip(audits, dirs)):
        tok, fp = toks[m]
        model = json_or_empty(a / SUMMARY).get("model") or {}
        want = model.get("tokenizer_sha256")
        if want and fp != want:  # e.g. one --model-dir for models with their own tokenizers
            own = model.get("path")
            tok, fp = load_tokenizer(own) if own and Path(own).is_dir() else (None, None)
            if tok is None or fp != want:
                warnings.warn(f"{a}: the tokenizer of {m} is not the audited model's; showing token ids (give one "
                              "--model-dir per audit)", UserWarning, stacklevel=2)
                continue
            log(f"note: {a}: the tokenizer of {m} is not the audited model's; decoding with {own}")
        decoders[i] = lambda ids, t=tok: _decode(t, ids)
    return decoders


def _decode(tokenizer, ids) -> str:
    """``ids`` as text; ValueError (the page shows the ids) for an id no token names, such as a padded embedding
    row, which ``decode`` would silently leave out."""
    if None in tokenizer.convert_ids_to_tokens(list(ids)):
        raise ValueError("an id no token names")
    return tokenizer.decode(list(ids), skip_special_tokens=False)


@holding_out("out", inputs=("audits", "profile_dirs", "model_dirs", "dedup_dir"))
def write_report(audits: Sequence[Path] | Path, out: Path, *, labels: Sequence[str] | str | None = None,
                 dedup_dir: Path | None = None, profile_dirs: Sequence[Path] | Path = (),
                 model_dirs: Sequence[Path] | Path = (), title: str | None = None, checks: Path | None = None,
                 log: Callable[[str], None] = lambda msg: None) -> dict:
    """Write the report of ``audits`` (``memdedup audit`` directories, or one) into ``out``; return its
    manifest. ``profile_dirs`` pair with the audits in order (may be fewer); ``dedup_dir`` and ``checks`` (a ``memdedup
    check`` output) feed the comparison page. ValueError (nothing written): an audit or profile not finished (no
    manifest.json: :func:`audit.layout.finished_audit`), labels, profiles or model directories that do not fit the
    audits, ``out`` inside an input or holding another stage's output, an unreadable ``checks``."""
    audits, profile_dirs, model_dirs = (as_paths(x) for x in (audits, profile_dirs, model_dirs))
    out = Path(out)
    if not audits:
        raise ValueError("no audit directory given")
    if dedup_dir is not None and not Path(dedup_dir).is_dir():
        raise ValueError(f"--dedup-dir {dedup_dir}: not a directory")
    labels = _labels(audits, [labels] if isinstance(labels, str) else labels)
    for what, text in [*(("--labels: label", lab) for lab in labels),
                       *(("path", str(p)) for p in [out, *audits, *profile_dirs, *model_dirs, dedup_dir, checks] if p)]:
        if shown := undecodable(text):  # the pages and their JSON, which name labels and paths, are UTF-8
            raise ValueError(f"{what} {shown} is not valid UTF-8 (the report names it in its pages); rename it")
    stems = _file_stems(labels)
    if len(profile_dirs) > len(audits):
        raise ValueError(f"--profile-dir: {len(profile_dirs)} profiles for {len(audits)} audits")
    if len(model_dirs) not in (0, 1, len(audits)):
        raise ValueError(f"--model-dir: give one directory for all audits or one per audit, got {len(model_dirs)}")
    for d, stage in [*((a, "audit") for a in audits), *((p, "profile") for p in profile_dirs)]:
        refuse_unfinished(d, stage)
    for a, p in zip(audits, profile_dirs):  # where both runs are known, they must be one
        model, profiled = json_or_empty(a / SUMMARY).get("model"), json_or_empty(p / SUMMARY).get("run")
        run = training_run(model["path"]) if isinstance(model, dict) and isinstance(model.get("path"), str) else None
        if run is not None and isinstance(profiled, str) and Path(profiled).resolve() != run.resolve():
            raise InputError(p, f"profiles the training run {profiled}, not {run}, whose model {a} audited "
                                "(--profile-dir pairs with the audits in order)")
    decoders = _decoders(audits, model_dirs, log)
    refuse_out(out, [*audits, *profile_dirs, *model_dirs, dedup_dir], "report")
    for a in audits:  # finished (manifest.json, written last), refused before out is written to
        finished_audit(a)
    for p in profile_dirs:
        completed_manifest(p, "profile")
    prior = read_manifest(out) if out.is_dir() else None  # an earlier report's
    # read before anything is written: a missing or damaged file is exit 2, one line, no pages
    record = read_json(checks) if checks is not None else {"checks": []}
    if not isinstance(record.get("checks"), list):
        raise InputError(checks, "not a memdedup check output (it holds no 'checks' list)")
    exposure = record.get("exposure_by_copies")
    if exposure is not None and (problem := shape_problem(exposure, dict.fromkeys(
            exposure if isinstance(exposure, dict) else (), EXPOSURE_SHAPE), "exposure_by_copies")):
        raise InputError(checks, f"damaged: {problem}")
    out.mkdir(parents=True, exist_ok=True)
    aside, pending = tmp_path(out / "pages"), out / REPORT_PENDING
    aside.mkdir()
    try:
        pages = []
        for i, (a, lab, stem) in enumerate(zip(audits, labels, stems)):
            profile = profile_dirs[i] if i < len(profile_dirs) else None
            page = model_page.model_report(a, aside / f"{stem}.html", profile_dir=profile,
                                           title=f"Memorization audit: {lab}", decode=decoders[i])
            pages.append({"label": lab, "audit": str(a), "page": page.name, "numbers": report_json(page).name})
        comparison = None
        if len(audits) >= 2:
            page = comparison_page.comparison_report(audits, labels, aside / COMPARISON_PAGE, dedup_dir=dedup_dir,
                                                     title=title, exposure=exposure)
            numbers = report_json(page, comparison=True)
            comparison = {"page": page.name, "numbers": numbers.name,
                          "differences": read_json(numbers)["differences"]}  # the page says them too
            for d in comparison["differences"]:
                log(f"note: {d['setting']} differs between the audits ("
                    + "; ".join(f"{lab}: {v}" for lab, v in d["values"].items()) + f"): {d['meaning']}")
        elif dedup_dir is not None:
            log("note: --dedup-dir is used by the comparison page, which needs at least two audits")
        # the earlier report's files go (this one may not rewrite them all), its manifest first, and
        # those a report killed while moving them in left (REPORT_PENDING lists them)
        entries = [*(prior or {}).get("pages", []), (prior or {}).get("comparison") or {}]
        stale = [e.get(k) for e in entries for k in ("page", "numbers")] + json_or_empty(pending).get("files", [])
        for name in ["manifest.json", *filter(None, stale)]:
            (out / Path(name).name).unlink(missing_ok=True)
        write_json_atomic(pending, {"files": sorted(f.name for f in aside.iterdir())})
        for f in sorted(aside.iterdir()):
            os.replace(f, out / f.name)
        manifest = write_stage_manifest(out, "report", {
            "pages": pages, "comparison": comparison, "dedup_dir": str(dedup_dir) if dedup_dir else None,
            "profile_dirs": [str(p) for p in profile_dirs], "checks": str(checks) if checks else None},
            versions=False)
        pending.unlink()
        return manifest
    finally:  # and holding_out removes the out it made, if nothing else is in it
        shutil.rmtree(aside, ignore_errors=True)
