"""Progress reporting: a rich progress bar on a terminal, plain log lines otherwise (SLURM logs).

Everything goes to standard error so that standard output stays clean for data (``-o -``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

LOG = logging.getLogger("diffaug_genomics")


def configure_logging(level: int = logging.INFO) -> None:
    """Send the library's log records to stderr as ``time level message`` lines (idempotent)."""
    if any(getattr(h, "_diffaug", False) for h in LOG.handlers):
        LOG.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler._diffaug = True  # type: ignore[attr-defined]
    LOG.addHandler(handler)
    LOG.setLevel(level)
    LOG.propagate = False


def interactive() -> bool:
    """True when stderr is a terminal and progress bars are not disabled (``DIFFAUG_NO_BAR``)."""
    return sys.stderr.isatty() and not os.environ.get("DIFFAUG_NO_BAR")


class Progress:
    """Advance-only progress handle returned by :func:`progress`."""

    def __init__(self, description: str, total: float | None, unit: str, every_s: float,
                 enabled: bool) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.every_s, self.enabled = every_s, enabled
        self.done = 0.0
        self.start = time.perf_counter()
        self._last_log = self.start
        self._bar = None
        self._task = None
        self.postfix = ""

    def advance(self, n: float = 1, postfix: str | None = None) -> None:
        """Record ``n`` more units of work done; ``postfix`` (e.g. a loss) is shown beside it."""
        self.done += n
        if postfix is not None:
            self.postfix = postfix
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, advance=n, postfix=self.postfix)
            return
        now = time.perf_counter()
        if now - self._last_log >= self.every_s:
            self._last_log = now
            LOG.info("%s", self._line(now))

    def _line(self, now: float) -> str:
        rate = self.done / max(now - self.start, 1e-9)
        total = f"/{self.total:g}" if self.total else ""
        extra = f" {self.postfix}" if self.postfix else ""
        return f"{self.description}: {self.done:g}{total} {self.unit} ({rate:.1f} {self.unit}/s){extra}"


@contextmanager
def progress(description: str, total: float | None = None, unit: str = "it",
             every_s: float = 30.0, enabled: bool = True) -> Iterator[Progress]:
    """Context manager yielding a :class:`Progress`.

    On a terminal it draws a rich bar on stderr; otherwise it logs a plain line at most every
    ``every_s`` seconds and once at the end. ``enabled=False`` silences it (non-zero ranks).
    """
    handle = Progress(description, total, unit, every_s, enabled)
    if enabled and interactive():
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        bar = RichProgress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[postfix]}"),
            console=Console(stderr=True), transient=False,
        )
        with bar:
            handle._bar = bar
            handle._task = bar.add_task(description, total=total, postfix="")
            yield handle
        return
    yield handle
    if enabled:
        LOG.info("%s done", handle._line(time.perf_counter()))
