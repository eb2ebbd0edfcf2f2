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

**Stale locks** are cleared by the next writer, without manual cleanup, under a second lock
(``.NAME.lock.break``); who holds a lock and when it is stale: :mod:`diffaug_genomics.lock_holder`.

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
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from diffaug_genomics.errors import Busy, DiffaugError, InputError
from diffaug_genomics.io.atomic import DiskFull, guard_commits, is_disk_full
from diffaug_genomics.lock_holder import (
    Holder,
    current_writer,
    lease_from_env,
    read_holder,
    read_record,
    running,
    utc,
)
from diffaug_genomics.progress import LOG
from diffaug_genomics.run_files import lock_break_path, lock_path

BEATS_PER_LEASE = 10
"""The heartbeat renews the record ``BEATS_PER_LEASE`` times per lease (every 30 s by default)."""
BREAK_LEASE_S = 30.0
"""A ``.NAME.lock.break`` older than this was left by a writer killed while clearing a lock."""
LOST_EXIT_CODE = 1

_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}
_ATTEMPTS = 20


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
            holder = read_record(self.path)
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
                holder = read_record(self.path)
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
        expires = utc(holder.renewed + holder.lease_s, "%H:%M:%S UTC")
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
        return not running(guard.pid, guard.pid_start)
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
