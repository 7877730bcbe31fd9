"""Self-contained HTML reports of memorization audits: :func:`audit.report.model.model_report` (one audit) and
:func:`audit.report.comparison.comparison_report` (several side by side, e.g. models trained on the raw and on the
deduplicated corpus); :mod:`~audit.report.run` is the ``memdedup report`` stage.

Each page is one HTML file (inline CSS, PNG figures from :mod:`audit.plots` as base64 data URIs, no external asset,
no JavaScript, any screen width, printable) beside a JSON of its numbers (:func:`audit.layout.report_json`). Token
ids show as numbers unless a ``decode`` callable (ids -> text) is passed; only the stage loads tokenizers, never a
model.
"""
