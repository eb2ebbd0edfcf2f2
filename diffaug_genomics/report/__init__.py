"""``diffaug report``: a self-contained HTML page (and PNG figures) describing one run.

Modules: :mod:`.state` (the run directory and ``metrics.csv``), :mod:`.data` (rows,
embeddings, labels, the bank of positives, the scores and the same-size PCA reference),
:mod:`.figures` (matplotlib, Agg), :mod:`.verdicts` (one sentence per diagnostic),
:mod:`.html` (assembly) and :mod:`.build` (the command's driver and atomic writing).
"""

from diffaug_genomics.report.build import ReportSummary, build_report

__all__ = ["ReportSummary", "build_report"]
