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


_LIVE: list = []
"""The console of the progress bar on screen (at most one): log lines print above it."""


class _ConsoleHandler(logging.Handler):
    """Log lines to stderr; while a progress bar is drawn, through the bar's console, so each
    line prints above the bar instead of over it."""

    _diffaug = True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if _LIVE:
                _LIVE[-1].print(text, markup=False, highlight=False, emoji=False,
                                soft_wrap=True)
            else:
                sys.stderr.write(text + "\n")
                sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def configure_logging(level: int = logging.INFO) -> None:
    """Send the library's log records to stderr as ``time level message`` lines (idempotent)."""
    if any(getattr(h, "_diffaug", False) for h in LOG.handlers):
        LOG.setLevel(level)
        return
    handler = _ConsoleHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
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

        if total:  # done / total, a bar and the time left
            columns = [BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TimeRemainingColumn()]
        else:  # no total known: the count so far, never "n/?"
            columns = [TextColumn(f"{{task.completed:,.0f}} {unit}"), TimeElapsedColumn()]
        console = Console(stderr=True)
        bar = RichProgress(TextColumn("[bold]{task.description}"), *columns,
                           TextColumn("{task.fields[postfix]}"), console=console,
                           transient=False)
        with bar:
            handle._bar = bar
            handle._task = bar.add_task(description, total=total, postfix="")
            _LIVE.append(console)
            try:
                yield handle
            finally:
                _LIVE.remove(console)
        return
    yield handle
    if enabled:
        LOG.info("%s done", handle._line(time.perf_counter()))
