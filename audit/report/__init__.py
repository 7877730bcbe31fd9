"""Self-contained HTML reports of memorization audits: :func:`audit.report.model.model_report` (one
audit) and :func:`audit.report.comparison.comparison_report` (several side by side, e.g. a model
trained on the raw corpus and one trained on the deduplicated corpus).

Every page is a single HTML file: inline CSS, plots embedded as base64 PNG data URIs, no
external assets and no JavaScript, readable on screens of any width and printable. Next to each
page a JSON file (:func:`audit.layout.report_json`) holds the numbers it shows, so nothing needs
to be parsed out of HTML.

Modules: :mod:`~audit.report.page` (HTML pieces), :mod:`~audit.report.audit_dir` (an audit
directory as the pages read it), :mod:`~audit.report.model`, :mod:`~audit.report.comparison`,
and :mod:`~audit.report.run` (the ``memdedup report`` stage: every page, file names, the stage
manifest). Token ids are shown as numbers unless a ``decode`` callable (token ids -> text, e.g. a
Hugging Face tokenizer's ``decode``) is passed; only the stage loads tokenizers (never a model).
Figures come from :mod:`audit.plots`.
"""
