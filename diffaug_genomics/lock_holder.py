"""Who holds a lock, and whether that holder is gone: the record in a lock file
(:class:`Holder`), the process it names, and the read-only questions readers ask
(:func:`current_writer`, :func:`lock_state`). Taking and renewing a lock:
:mod:`diffaug_genomics.run_lock`.

**Stale locks** are cleared by the next writer, without manual cleanup:

- on the same machine (host name, boot id and pid namespace equal) as soon as the holder's pid
  is gone (or belongs to another process now: its start time differs);
- anywhere else when the record was not renewed for its lease (``DIFFAUG_LOCK_LEASE_S``,
  default 300 s, stored in the record). Ages are measured on the file system's clock (the
  modification time of a file the writer has just written), so the nodes' clocks need not
  agree.

A stale lock is removed under a second lock, ``.NAME.lock.break`` (the same primitive): the
writer reads the record again and removes it only if it is still the one it judged stale, so
two writers clearing one stale lock never remove a fresh one. Releasing removes the record
only if it is still this process's own (and writes nothing: a full disk keeps no lock).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import socket
import sys
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

from diffaug_genomics.errors import InputError
from diffaug_genomics.run_files import lock_path

LOCK_SCHEMA = "diffaug-genomics/lock/1"
DEFAULT_LEASE_S = 300.0
"""A holder on another machine counts as gone when its record was not renewed for this long."""


def lease_from_env() -> float:
    """``DIFFAUG_LOCK_LEASE_S`` seconds (default 300); :class:`InputError` if not a positive number."""
    text = os.environ.get("DIFFAUG_LOCK_LEASE_S", "")
    if not text:
        return DEFAULT_LEASE_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e7:
        raise InputError(f"DIFFAUG_LOCK_LEASE_S must be a number of seconds > 0 (got {text!r})")
    return value


def still_training(run_dir: str | Path, writer: Holder) -> str:
    """The message of a reader refused (exit 75) because ``writer`` is training ``run_dir``."""
    return (f"{run_dir}: no finished run here yet: the run is in progress, being written by "
            f"{writer.describe()}; run this again when it has finished")


# ------------------------------------------------------------------------------- this machine
def _first_line(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.readline().strip()
    except OSError:
        return ""


def _boot_id() -> str:
    return _first_line("/proc/sys/kernel/random/boot_id")


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _process_start(pid: int) -> tuple[str, str]:
    """(state, start time in clock ticks after boot) of ``pid`` from ``/proc/PID/stat``;
    ``("", "")`` when there is no such process (or no ``/proc``)."""
    text = _first_line(f"/proc/{pid}/stat")
    parts = text.rsplit(")", 1)[-1].split() if text else []
    return (parts[0], parts[19]) if len(parts) > 19 else ("", "")


def running(pid: int, start: str) -> bool:
    """Whether ``pid`` runs on this machine and is the process that started at ``start``
    (a zombie counts as gone)."""
    if pid <= 0:
        return False
    if os.path.isdir("/proc/self"):
        state, now = _process_start(pid)
        return bool(now) and state not in ("Z", "X") and (not start or now == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _command() -> str:
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    if argv[0] in ("main.py", "__main__.py"):
        argv[0] = "diffaug"
    text = shlex.join(argv)
    return text if len(text) <= 300 else text[:297] + "..."


# -------------------------------------------------------------------------------- the record
@dataclass
class Holder:
    """The record of a lock's holder; ``renewed`` (its last heartbeat, seconds since the epoch
    on the file system's clock) is the record's modification time, not stored in it."""

    what: str = "an unknown writer"
    host: str = "?"
    pid: int = 0
    pid_start: str = ""
    boot_id: str = ""
    pid_ns: str = ""
    started: float = 0.0
    command: str = ""
    slurm_job: str = ""
    lease_s: float = DEFAULT_LEASE_S
    token: str = ""
    renewed: float = 0.0

    @classmethod
    def this_process(cls, what: str, lease_s: float) -> Holder:
        return cls(what=what, host=socket.gethostname(), pid=os.getpid(),
                   pid_start=_process_start(os.getpid())[1], boot_id=_boot_id(),
                   pid_ns=_pid_namespace(), started=time.time(), command=_command(),
                   slurm_job=os.environ.get("SLURM_JOB_ID", ""), lease_s=lease_s,
                   token=secrets.token_hex(16))

    def to_json(self) -> str:
        record = {k: v for k, v in asdict(self).items() if k != "renewed"}
        return json.dumps({"schema": LOCK_SCHEMA, **record}, indent=1) + "\n"

    @classmethod
    def parse(cls, raw: bytes, renewed: float) -> Holder:
        """The record in ``raw``; an unreadable one (damaged, foreign, still being written by
        the ``O_EXCL`` fallback) gives a holder known only by its age."""
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or data.get("schema") != LOCK_SCHEMA:
                raise ValueError("not a lock record")
            kinds = {f.name: type(getattr(cls(), f.name)) for f in fields(cls)}
            values = {k: kinds[k](data[k]) for k in kinds if k in data and k != "renewed"}
            holder = cls(**values)
            if holder.lease_s <= 0:
                raise ValueError("lease")
        except (ValueError, TypeError, UnicodeDecodeError):
            holder = cls()
        holder.renewed = renewed
        return holder

    def same_machine(self) -> bool:
        """Recorded on this machine, in this boot and pid namespace (its pid can be checked)."""
        return (self.host == socket.gethostname() and self.boot_id == _boot_id()
                and self.pid_ns == _pid_namespace())

    def stale_reason(self, now: float) -> str | None:
        """Why this holder is gone (None while it holds the lock); ``now`` on the file system's
        clock."""
        if self.token and self.same_machine():
            if running(self.pid, self.pid_start):
                return None
            return f"its process (pid {self.pid} on {self.host}) has ended"
        age = now - self.renewed
        if age > self.lease_s:
            return f"it was not renewed for {age:.0f} s (lease {self.lease_s:.0f} s)"
        return None

    def describe(self, now: float | None = None) -> str:
        """``diffaug fit, pid 4242 on node07 since 2025-06-01 12:00:03 UTC, SLURM job 81
        (diffaug fit reads.fa -o runs/exp1), renewed 4 s ago``."""
        if not self.token:
            return f"{self.what} (an unreadable lock record)"
        text = f"{self.what}, pid {self.pid} on {self.host} since {utc(self.started)}"
        if self.slurm_job:
            text += f", SLURM job {self.slurm_job}"
        if self.command:
            command = self.command if len(self.command) <= 120 else self.command[:117] + "..."
            text += f" ({command})"
        if now is not None:
            text += f", lock renewed {max(0.0, now - self.renewed):.0f} s ago"
        return text


def utc(seconds: float, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    try:
        return datetime.fromtimestamp(seconds, timezone.utc).strftime(fmt)
    except (OverflowError, OSError, ValueError):
        return "?"


def read_record(lock: Path) -> Holder | None:
    """The record at ``lock`` (None when there is none; OSError when it cannot be read). Read
    through ``open`` + ``fstat``: on NFS opening a file revalidates its cached attributes, so
    ``renewed`` is current."""
    try:
        with open(lock, "rb") as fh:
            raw = fh.read(1 << 16)
            renewed = os.fstat(fh.fileno()).st_mtime
    except FileNotFoundError:
        return None
    return Holder.parse(raw, renewed)


def read_holder(lock: Path) -> Holder | None:
    """The record at ``lock`` (None when there is none); one that cannot be read (another
    user's, a file system error) counts as held."""
    try:
        return read_record(lock)
    except OSError as exc:
        holder = Holder(what=f"a writer whose lock cannot be read ({exc.strerror or exc})")
        holder.renewed = time.time()
        return holder


def lock_state(target: str | Path) -> tuple[Holder | None, str | None]:
    """(holder, why it is stale or None) of ``target``'s lock; ``(None, None)`` when free.
    For readers: measured on this machine's clock, and nothing is cleared."""
    holder = read_holder(lock_path(target))
    if holder is None:
        return None, None
    return holder, holder.stale_reason(time.time())


def current_writer(target: str | Path) -> Holder | None:
    """The live holder of ``target``'s lock: the process writing it right now, else None."""
    holder, stale = lock_state(target)
    return holder if stale is None else None
