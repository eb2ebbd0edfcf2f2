"""``metrics.csv``: one row per logged step or diagnostic, truncated on resume to what the
checkpoint had logged."""

from __future__ import annotations

import csv
import time

from diffaug_genomics.io.atomic import atomic_temp
from diffaug_genomics.metrics import DIAGNOSTIC_FIELDS, METRIC_FIELDS


class MetricsFile:
    """Part of :class:`~diffaug_genomics.train.loop.Trainer`: its ``metrics.csv`` (uses
    ``paths``, ``ctx``, ``metric_rows`` and ``t0``)."""

    def _truncate_metrics(self, rows: int) -> None:
        """Keep the first ``rows`` rows (what the checkpoint had logged); a file written before
        the diagnostic columns existed gains them (empty in its old rows)."""
        if not self.ctx.is_main or not self.paths.metrics.exists():
            return
        with open(self.paths.metrics, newline="") as fh:
            lines = list(csv.reader(fh))
        body = [line + [""] * (len(METRIC_FIELDS) - len(line)) for line in lines[1: rows + 1]]
        with atomic_temp(self.paths.metrics) as tmp:  # a reader never sees it emptied
            with open(tmp, "w", newline="") as fh:
                csv.writer(fh).writerows([METRIC_FIELDS, *body])

    def _log_metric(self, phase: str, rnd: int, epoch: int, step: int, loss: float | None,
                    lr: float | None = None, rate: float | None = None,
                    **diagnostics: float | None) -> None:
        """Append one row to ``metrics.csv`` (None: an empty cell); ``diagnostics`` are the
        :data:`DIAGNOSTIC_FIELDS` this row fills."""
        self.metric_rows += 1
        if not self.ctx.is_main:
            return
        unknown = set(diagnostics) - set(DIAGNOSTIC_FIELDS)
        if unknown:
            raise ValueError(f"unknown metrics column(s) {sorted(unknown)}")

        def cell(value: float | None, fmt: str) -> str:  # None, NaN (not measured): empty
            return "" if value is None or value != value else format(value, fmt)

        new = not self.paths.metrics.exists()
        with open(self.paths.metrics, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(METRIC_FIELDS)
            writer.writerow([f"{time.perf_counter() - self.t0:.2f}", phase, rnd, epoch, step,
                             cell(loss, ".6f"), cell(lr, ".3g"), cell(rate, ".1f"),
                             *(cell(diagnostics.get(name), ".4f") for name in DIAGNOSTIC_FIELDS)])
