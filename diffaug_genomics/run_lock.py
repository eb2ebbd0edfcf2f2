"""One writer per path: the lock ``fit`` holds on its run directory (and ``embed`` /
``generate`` on a shard, ``report`` on its page), made to hold on cluster file systems.

**Where.** The lock of PATH is the file ``.NAME.lock`` beside it: ``runs/.exp1.lock`` for the
run directory ``runs/exp1``. Beside, not inside: taking it never creates the run directory, and
a copy of a run directory never carries a lock. It holds one JSON record of its holder (what,
host, pid and the pid's start time, boot id, pid namespace, start time, command line, SLURM job,
lease, a random token). While the lock is held a background thread renews the lease every
``lease / 10`` seconds by touching the record: its modification time is the heartbeat.

**The primitive: link(2).** The holder writes its whole record to a file of its own beside the
lock and hard-links that file to the lock's name. ``link`` is atomic on local file systems, on
NFS (v2 to v4: the server makes the link) and on Lustre (the metadata server), and fails with
EEXIST when the name exists: exactly one of several writers gets the lock, and nobody ever
reads half a record. When the reply to a ``link`` is lost (an NFS retransmission answered
EEXIST), the link count of our own file says whether it was made, as open(2) advises.
``flock`` / ``fcntl`` locks are not used: on NFS they depend on a lock manager that may be
missing or lose its state, Lustre grants them only when mounted with ``-o flock``, and a lost
node's lock stays invisible to everyone else. Where hard links are refused (some FUSE or SMB
mounts), ``O_CREAT | O_EXCL`` on the lock's name (atomic on local file systems and NFSv3+) is
used instead.

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

**A lost lock.** A holder frozen for longer than its lease (a suspended job, a node cut off
from the file system) may find its lock taken over when it wakes. Its heartbeat compares the
record's token with its own at every beat, and every file the atomic writer renames into a
locked directory is checked first (:func:`~diffaug_genomics.io.atomic.guard_commits`): a
holder that lost its lock writes nothing more and stops (:class:`LockLost`, exit 1).

``python -m diffaug_genomics.run_lock PATH`` prints the live holder of PATH's lock and exits 75
(nothing and 0 when PATH is free or its lock stale); the sbatch scripts of ``diffaug slurm``
ask it before starting ``fit``, and compare the holder's SLURM job with their own.
"""

from __future__ import annotations

import errno
import functools
import inspect
import json
import os
import secrets
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from diffaug_genomics.errors import Busy, DiffaugError, InputError
from diffaug_genomics.io.atomic import DiskFull, guard_commits, is_disk_full
from diffaug_genomics.io.signals import signals_raise
from diffaug_genomics.progress import LOG
from diffaug_genomics.run_files import lock_break_path, lock_path

if TYPE_CHECKING:
    from diffaug_genomics.train.distributed import DistContext

LOCK_SCHEMA = "diffaug-genomics/lock/1"
DEFAULT_LEASE_S = 300.0
"""A holder on another machine counts as gone when its record was not renewed for this long."""
BEATS_PER_LEASE = 10
"""The heartbeat renews the record ``BEATS_PER_LEASE`` times per lease (every 30 s by default)."""
BREAK_LEASE_S = 30.0
"""A ``.NAME.lock.break`` older than this was left by a writer killed while clearing a lock."""
LOST_EXIT_CODE = 1

_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}
_ATTEMPTS = 20

F = TypeVar("F", bound=Callable[..., Any])


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


def _running(pid: int, start: str) -> bool:
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
            if _running(self.pid, self.pid_start):
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
        text = f"{self.what}, pid {self.pid} on {self.host} since {_utc(self.started)}"
        if self.slurm_job:
            text += f", SLURM job {self.slurm_job}"
        if self.command:
            command = self.command if len(self.command) <= 120 else self.command[:117] + "..."
            text += f" ({command})"
        if now is not None:
            text += f", lock renewed {max(0.0, now - self.renewed):.0f} s ago"
        return text


def _utc(seconds: float, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    try:
        return datetime.fromtimestamp(seconds, timezone.utc).strftime(fmt)
    except (OverflowError, OSError, ValueError):
        return "?"


def _read_record(lock: Path) -> Holder | None:
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
        return _read_record(lock)
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


# ---------------------------------------------------------------------------------- the lock
class LockLost(DiffaugError):
    """This process held a lock and another one took it over (exit code 1)."""


class Lock:
    """The exclusive lock on ``target`` (a run directory or an output file); see the module
    docstring. ``with Lock(path, "diffaug report"):`` holds it for the block (waiting up to
    ``wait_s`` seconds for another holder first).

    ``on_lost`` is called (from the heartbeat thread) when another process has taken the lock
    over; by default it logs the error and ends this process at once (exit 1), so that it
    writes nothing more.
    """

    def __init__(self, target: str | Path, what: str, *, lease_s: float | None = None,
                 wait_s: float = 0.0, on_lost: Callable[[LockLost], None] | None = None) -> None:
        self.target = Path(target)
        self.path = lock_path(target)
        self.lease_s = lease_from_env() if lease_s is None else float(lease_s)
        self.me = Holder.this_process(what, self.lease_s)
        self.wait_s = wait_s
        self.on_lost = on_lost or _stop_process
        self.held = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._unguard: Callable[[], None] | None = None
        self._checking = threading.Lock()

    # ------------------------------------------------------------------------ take, give back
    def acquire(self) -> None:
        """Take the lock, clearing a stale one (one warning naming its old holder); raise
        :class:`~diffaug_genomics.errors.Busy` (exit 75) naming the holder if it is held."""
        folder = self.path.parent
        if not folder.is_dir():
            raise InputError("folder does not exist", path=folder)
        with self._own_record() as (mine, now):
            for attempt in range(_ATTEMPTS):
                if _place(mine, self.path):
                    self.held = True  # from here on release() removes it, whatever happens
                    break
                holder = read_holder(self.path)
                if holder is None:  # released meanwhile
                    continue
                reason = holder.stale_reason(now)
                if reason is None:
                    raise Busy(self._busy_line(holder, now))
                if self._remove_if(holder, mine, now):
                    LOG.warning("%s: cleared the lock of %s: %s", self.target,
                                holder.describe(), reason)
                else:
                    time.sleep(0.02 * (attempt + 1))  # another writer is clearing it
            else:
                raise Busy(f"{self.target}: could not take {self.path.name}: other processes "
                           "keep taking and clearing it; try again")
        self._unguard = guard_commits(self.target, self.check)
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name=f"lock {self.path.name}",
                                      daemon=True)
        self._beat.start()

    def release(self) -> None:
        """Give the lock back (only a record that is still ours is removed)."""
        self._stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join(timeout=5)
        self._beat = None
        if self._unguard is not None:
            self._unguard()
            self._unguard = None
        if not self.held:
            return
        self.held = False
        try:  # writes nothing (a full disk, too, must not keep the lock)
            holder = _read_record(self.path)
            if holder is not None and holder.token == self.me.token:
                self.path.unlink(missing_ok=True)
        except OSError as exc:  # the file system went away: the record goes stale by itself
            LOG.warning("%s: could not remove %s (%s)", self.target, self.path, exc)

    def __enter__(self) -> Lock:
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                self.acquire()
                return self
            except Busy:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)
            except BaseException:  # e.g. SIGTERM (Terminated) just after the record was placed
                self.release()
                raise

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ------------------------------------------------------------------------------ heartbeat
    def check(self) -> None:
        """Raise :class:`LockLost` unless the record on disk is still ours (a record removed by
        hand is put back). Called by the heartbeat and before every commit into the target."""
        with self._checking:
            try:
                holder = _read_record(self.path)
            except OSError:  # cannot tell (a file system hiccup): the next check will
                return
            if holder is not None and holder.token == self.me.token:
                return
            if holder is None:
                with self._own_record() as (mine, _):
                    if _place(mine, self.path):
                        LOG.warning("%s: its lock %s had been removed: put it back",
                                    self.target, self.path)
                        return
                holder = read_holder(self.path)
        taker = holder.describe() if holder is not None else "nobody"
        raise LockLost(f"{self.target}: this process lost its lock to {taker} (it was not "
                       f"renewed for longer than its lease, {self.lease_s:.0f} s: was the "
                       "process suspended or cut off from the file system?); stopping without "
                       "writing anything more")

    def renew(self) -> None:
        """One heartbeat: check the record is ours, then touch it (the file system's time)."""
        self.check()
        os.utime(self.path)

    def _heartbeat(self) -> None:
        interval = self.lease_s / BEATS_PER_LEASE
        warned = False
        while not self._stop.wait(interval):
            try:
                self.renew()
            except LockLost as exc:
                if not self._stop.is_set():
                    self.held = False
                    self.on_lost(exc)
                return
            except OSError as exc:  # a file system hiccup: try again at the next beat
                if not warned:
                    LOG.warning("%s: could not renew %s (%s); retrying", self.target,
                                self.path, exc)
                    warned = True

    # -------------------------------------------------------------------------------- helpers
    @contextmanager
    def _own_record(self) -> Iterator[tuple[Path, float]]:
        """This process's record in a file of its own beside the lock, and the file system's
        time now (that file's modification time); removed afterwards."""
        mine = self.path.with_name(f"{self.path.name}.{self.me.token[:12]}.{os.getpid()}.tmp")
        try:
            with open(mine, "w", encoding="utf-8") as fh:
                fh.write(self.me.to_json())
                fh.flush()
                now = os.fstat(fh.fileno()).st_mtime
        except OSError as exc:
            mine.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise DiskFull(self.path) from None
            raise InputError(f"cannot write the lock ({exc.strerror or exc})",
                             path=self.path) from None
        try:
            yield mine, now
        finally:
            mine.unlink(missing_ok=True)

    def _remove_if(self, seen: Holder, mine: Path, now: float) -> bool:
        """Remove the lock record if it is still ``seen`` and still stale, under
        ``.NAME.lock.break``; False when another process is clearing it or it changed."""
        guard = lock_break_path(self.path)
        if not _place(mine, guard):
            other = read_holder(guard)
            if other is None or not _left_behind(other, now):
                return False
            guard.unlink(missing_ok=True)  # left by a writer killed while clearing
            if not _place(mine, guard):
                return False
        try:
            current = read_holder(self.path)
            if current is None:
                return True
            if (current.token != seen.token or current.renewed != seen.renewed
                    or current.stale_reason(now) is None):
                return False
            self.path.unlink(missing_ok=True)
            return True
        finally:
            guard.unlink(missing_ok=True)

    def _busy_line(self, holder: Holder, now: float) -> str:
        expires = _utc(holder.renewed + holder.lease_s, "%H:%M:%S UTC")
        if not holder.token:
            way_out = (f"it counts as stale {holder.lease_s:.0f} s after it was last written "
                       f"(at {expires}); remove it before if you are sure nothing writes here")
        elif holder.same_machine():
            way_out = (f"wait for it to finish or stop it (kill {holder.pid}): its lock is "
                       "cleared as soon as it has ended")
        else:
            way_out = (f"wait for it to finish or stop it (on {holder.host}); if it is gone "
                       f"for good, its lock expires {holder.lease_s:.0f} s after its last "
                       f"renewal (at {expires} unless renewed) and the next run takes over")
        return f"{self.target}: being written by {holder.describe(now)}; {way_out} ({self.path})"


def _place(mine: Path, name: Path) -> bool:
    """Put the complete record ``mine`` at ``name`` if nothing is there: True if done."""
    try:
        os.link(mine, name)
        return True
    except OSError as exc:
        try:
            if os.stat(mine).st_nlink >= 2:  # made, but the reply was lost (NFS)
                return True
        except OSError:
            pass
        if exc.errno == errno.EEXIST:
            return False
        if exc.errno not in _NO_HARD_LINKS:
            raise InputError(f"cannot create the lock ({exc.strerror or exc})",
                             path=name) from None
    try:  # no hard links here: exclusive create, then the record
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(mine.read_bytes())
    return True


def _left_behind(guard: Holder, now: float) -> bool:
    """Whether a ``.NAME.lock.break`` was left by a writer killed while clearing a lock."""
    if guard.token and guard.same_machine():
        return not _running(guard.pid, guard.pid_start)
    return now - guard.renewed > BREAK_LEASE_S


def _stop_process(exc: LockLost) -> None:
    """Default :attr:`Lock.on_lost`: one error line, then exit at once (from any thread)."""
    LOG.error("%s", exc)
    for handler in LOG.handlers:
        handler.flush()
    os._exit(LOST_EXIT_CODE)


@contextmanager
def output_lock(path: str | Path, what: str, enabled: bool = True) -> Iterator[None]:
    """Hold the lock of the output ``path`` for the block (nothing unless ``enabled``): for
    outputs made of more than one file, and shards a retried array task may write twice."""
    if not enabled:
        yield
        return
    with Lock(path, what):
        yield


# --------------------------------------------------------------------------------- for fit
_refused: dict[Path, Busy] = {}
"""Rank 0's refusal, kept for :func:`ranks_agree` (distributed runs), by resolved run dir."""


def _rank() -> tuple[int, int]:
    """(rank, world size) as ``fit`` will see them, without importing torch when no launcher
    variable is set (a refused fit then exits before torch is even imported)."""
    if not {"RANK", "WORLD_SIZE", "SLURM_PROCID"} & os.environ.keys():
        return 0, 1
    from diffaug_genomics.train.distributed import env_context

    ctx = env_context()
    return ctx.rank, ctx.world_size


def one_writer(fit: F) -> F:
    """Decorator of ``fit(source, run_dir, ...)``: rank 0 holds the run directory's lock from
    before ``fit`` looks at the directory until it returns or fails (a failed fit leaves no
    lock; SIGTERM / SIGHUP end it with :class:`~diffaug_genomics.errors.Terminated` so the lock
    is released too). A refusal is raised at once by a single process; under torchrun or srun,
    rank 0 keeps it for :func:`ranks_agree`, so that every rank fails together."""
    signature = inspect.signature(fit)

    @functools.wraps(fit)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        run_dir = Path(signature.bind(*args, **kwargs).arguments["run_dir"])
        rank, world = _rank()
        if rank != 0:
            return fit(*args, **kwargs)
        parent = run_dir.resolve().parent
        if not parent.is_dir():
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"cannot create the folder of the run directory "
                                 f"({exc.strerror})", path=parent) from None
        lock = Lock(run_dir, "diffaug fit")
        key = run_dir.resolve()
        with signals_raise():
            try:
                try:
                    lock.acquire()
                except Busy as exc:
                    if world == 1:
                        raise
                    _refused[key] = exc
                return fit(*args, **kwargs)
            finally:
                _refused.pop(key, None)
                lock.release()

    return wrapper  # type: ignore[return-value]


def ranks_agree(run_dir: str | Path, ctx: DistContext) -> None:
    """Inside ``fit``'s process group, on every rank, before anything is written: raise
    :class:`~diffaug_genomics.errors.Busy` on every rank if rank 0 could not take the run
    directory's lock (one all-reduce; nothing when single)."""
    if not ctx.distributed:
        return
    from diffaug_genomics.train.distributed import any_rank

    refused = _refused.get(Path(run_dir).resolve()) if ctx.is_main else None
    if not any_rank(refused is not None):
        return
    if refused is not None:
        raise refused
    holder = current_writer(run_dir)
    held_by = f": {holder.describe()} holds it" if holder is not None else ""
    raise Busy(f"{run_dir}: rank {ctx.rank} of {ctx.world_size}: rank 0 could not take the "
               f"run directory's lock{held_by}")


# ------------------------------------------------------------------------ sbatch pre-flight
def main(argv: list[str] | None = None) -> int:
    """``python -m diffaug_genomics.run_lock PATH``: the live holder of PATH's lock.

    Exit 0, nothing printed: PATH is free (or its lock stale: the next writer clears it).
    Exit 75: a live process holds it; its SLURM job id (empty if none) on standard output,
    the holder in one line on standard error."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m diffaug_genomics.run_lock PATH", file=sys.stderr)
        return 2
    holder = current_writer(args[0])
    if holder is None:
        return 0
    print(holder.slurm_job)
    print(f"{args[0]}: held by {holder.describe(time.time())}", file=sys.stderr)
    return Busy.exit_code


if __name__ == "__main__":
    sys.exit(main())
