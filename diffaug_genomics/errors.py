"""Errors the command line turns into one clean line on stderr.

:class:`InputError` (bad input or usage) exits with code 2; :class:`DiffaugError` with 1;
:class:`Busy` (another process is writing the same run directory or output) with 75.
Messages name the file, the record or line, and the reason, in that order.
"""

from __future__ import annotations

from pathlib import Path


class DiffaugError(Exception):
    """A failure the user should see as one line, without a traceback (exit code 1)."""

    exit_code = 1


class InputError(DiffaugError):
    """Bad input or usage: a file, record, line or option the user can fix (exit code 2)."""

    exit_code = 2

    def __init__(
        self,
        reason: str,
        *,
        path: str | Path | None = None,
        record: str | None = None,
        line: int | None = None,
    ) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        self.record = record
        self.line = line
        parts = []
        if self.path is not None:
            parts.append(self.path)
        if line is not None:
            parts.append(f"line {line}")
        if record is not None:
            parts.append(f"record '{record}'")
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {reason}" if prefix else reason)


class ConfigError(InputError):
    """An invalid configuration key or value (exit code 2)."""


class Busy(DiffaugError):
    """Another process is writing the same run directory or output right now (exit code 75,
    ``EX_TEMPFAIL``: the same command succeeds once that process has finished or its lock has
    expired; see :mod:`diffaug_genomics.run_lock`)."""

    exit_code = 75


class Terminated(BaseException):  # noqa: N818 - a state, like KeyboardInterrupt
    """SIGTERM or SIGHUP arrived while an output was being written (see
    :mod:`diffaug_genomics.io.atomic`); the command line exits with 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = int(signum)
        super().__init__(f"terminated by {signal.Signals(self.signum).name}")
