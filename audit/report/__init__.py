"""Self-contained HTML reports of memorization audits.

- :func:`audit.report.model.model_report`: one page for one audit (``memdedup audit`` output),
  optionally with the memorization profile of its training run (``memdedup profile`` output).
- :func:`audit.report.comparison.comparison_report`: one page putting several audits side by
  side (e.g. a model trained on the raw corpus and one trained on the deduplicated corpus),
  optionally with dedup's retention accounting (``memdedup dedup`` output).

Every page is a single HTML file: inline CSS, plots embedded as base64 PNG data URIs, no
external assets and no JavaScript, readable on screens of any width and printable. Next to each
page a JSON file holds the numbers it shows, so nothing needs to be parsed out of HTML
(:func:`audit.layout.report_json`):

- ``model_report(audit, "out/raw.html")`` also writes ``out/raw.summary.json``, a copy of the
  audit's ``summary.json``, where every number of the page comes from;
- ``comparison_report(..., "out/comparison.html")`` also writes ``out/comparison.json``
  (per-model headline numbers, the extractable rate per duplicate bucket with the ratio to the
  first model, and the dedup accounting).

Modules: :mod:`~audit.report.page` (HTML pieces), :mod:`~audit.report.audit_dir` (an audit
directory as the pages read it), :mod:`~audit.report.model`, :mod:`~audit.report.comparison`.
Token ids are shown as numbers unless a ``decode`` callable (token ids -> text, e.g. a Hugging
Face tokenizer's ``decode``) is passed; this package never loads a tokenizer or a model itself.
Figures come from :mod:`audit.plots`.
"""
