"""``metrics.csv``: one row per logged step or diagnostic, truncated on resume to what the
checkpoint had logged (its columns: :mod:`diffaug_genomics.metrics`)."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from diffaug_genomics.io.atomic import atomic_temp
from diffaug_genomics.metrics import DIAGNOSTIC_FIELDS, METRIC_FIELDS


class MetricsFile:
    """The ``metrics.csv`` at ``path``, written by rank 0 (``is_main``); ``rows`` counts the
    rows logged (on every rank: a checkpoint records it), ``t0`` is when the run started
    (``time.perf_counter``; the ``time_s`` column)."""

    def __init__(self, path: Path, is_main: bool = True, t0: float | None = None) -> None:
        self.path, self.is_main = Path(path), is_main
        self.t0 = time.perf_counter() if t0 is None else t0
        self.rows = 0

    def truncate(self, rows: int) -> None:
        """Keep the first ``rows`` rows (what the checkpoint had logged); a file written before
        the diagnostic columns existed gains them (empty in its old rows)."""
        self.rows = rows
        if not self.is_main or not self.path.exists():
            return
        with open(self.path, newline="") as fh:
            lines = list(csv.reader(fh))
        body = [line + [""] * (len(METRIC_FIELDS) - len(line)) for line in lines[1: rows + 1]]
        with atomic_temp(self.path) as tmp:  # a reader never sees it emptied
            with open(tmp, "w", newline="") as fh:
                csv.writer(fh).writerows([METRIC_FIELDS, *body])

    def log(self, phase: str, rnd: int, epoch: int, step: int, loss: float | None,
            lr: float | None = None, rate: float | None = None,
            **diagnostics: float | None) -> None:
        """Append one row (None: an empty cell); ``diagnostics`` are the
        :data:`DIAGNOSTIC_FIELDS` this row fills."""
        self.rows += 1
        if not self.is_main:
            return
        unknown = set(diagnostics) - set(DIAGNOSTIC_FIELDS)
        if unknown:
            raise ValueError(f"unknown metrics column(s) {sorted(unknown)}")

        def cell(value: float | None, fmt: str) -> str:  # None, NaN (not measured): empty
            return "" if value is None or value != value else format(value, fmt)

        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(METRIC_FIELDS)
            writer.writerow([f"{time.perf_counter() - self.t0:.2f}", phase, rnd, epoch, step,
                             cell(loss, ".6f"), cell(lr, ".3g"), cell(rate, ".1f"),
                             *(cell(diagnostics.get(name), ".4f") for name in DIAGNOSTIC_FIELDS)])
