"""How many CPU threads a command computes with: ``--threads N``, ``DIFFAUG_THREADS``, or the
CPUs this process may use that no other process is busy on.

PyTorch sizes its thread pool to every core of the machine. On a shared machine or a SLURM
node that is wrong twice: the job may use only some cores (its affinity mask,
``SLURM_CPUS_PER_TASK``, a container's CPU quota), and cores other processes keep busy make
every parallel operation wait for its slowest thread (a two-thread fit next to one busy
process ran 18x slower than with one thread). So, in order:

1. ``--threads N`` (or the ``threads`` argument);
2. the ``DIFFAUG_THREADS`` environment variable;
3. ``OMP_NUM_THREADS`` when it is set (torchrun sets it to 1 for several local ranks);
4. otherwise the CPUs this process may use (:func:`usable_cpus`: affinity mask, cgroup quota,
   ``SLURM_CPUS_PER_TASK``, divided among ``LOCAL_WORLD_SIZE`` ranks) less those another
   process kept busy during a 0.1 s look at ``/proc/stat`` (:func:`busy_cpus`; this process's
   own threads do not count), at least 1.

When the threads asked for (1-3) exceed the CPUs free, or the automatic choice had to leave
busy CPUs out, one warning line says so (:func:`apply_threads`). The choice applies to
PyTorch's intra-op pool and to the BLAS / OpenMP pools numpy and scikit-learn use.
"""

from __future__ import annotations

import math
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "DIFFAUG_THREADS"
"""Environment variable read when ``--threads`` is not given."""
LOOK_S = 0.1
"""Seconds :func:`busy_cpus` watches ``/proc/stat``."""


@dataclass(frozen=True)
class ThreadChoice:
    """The threads chosen and why: ``source`` is ``--threads``, ``DIFFAUG_THREADS``,
    ``OMP_NUM_THREADS`` or ``auto``; ``usable`` the CPUs this process may use; ``busy`` how
    many of them another process kept busy (None: not measured)."""

    threads: int
    source: str
    usable: int
    busy: float | None

    def warning(self) -> str | None:
        """One line when the machine is oversubscribed, else None."""
        if self.busy is None:
            return None
        free = max(self.usable - round(self.busy), 0)
        if self.source == "auto":
            if self.threads >= self.usable:
                return None
            return (f"other processes keep {self.busy:.1f} of the {self.usable} CPUs this process "
                    f"may use busy: computing with {self.threads} thread"
                    f"{'s' if self.threads != 1 else ''} (--threads N or {ENV_VAR} to choose)")
        if self.threads <= max(free, 1):
            return None
        return (f"{self.source} asks for {self.threads} threads but only {free} of the "
                f"{self.usable} CPUs this process may use are free (others keep "
                f"{self.busy:.1f} busy): expect it to run much slower than with {max(free, 1)}")


def _int_env(name: str) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text.split("(")[0].split(",")[0])  # SLURM writes e.g. "4(x2)"
    except ValueError:
        return None
    return value if value > 0 else None


def _cgroup_quota() -> int | None:
    """CPUs a cgroup v2 (``cpu.max``) or v1 (``cfs_quota_us``) quota allows, rounded up."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return max(1, math.ceil(quota_us / period_us)) if quota_us > 0 and period_us > 0 else None


def allowed_cpu_ids() -> list[int]:
    """The CPU ids of this process's affinity mask (all CPUs where there is no mask)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota and
    ``SLURM_CPUS_PER_TASK``, shared among ``LOCAL_WORLD_SIZE`` ranks on the node; at least 1.
    Never simply the machine's count."""
    n = len(allowed_cpu_ids())
    for cap in (_cgroup_quota(), _int_env("SLURM_CPUS_PER_TASK")):
        if cap is not None:
            n = min(n, cap)
    local = _int_env("LOCAL_WORLD_SIZE")
    if local is not None and local > 1:
        n //= local
    return max(1, n)


def _cpu_times(ids: list[int]) -> dict[int, tuple[int, int]] | None:
    """``{cpu id: (busy jiffies, total jiffies)}`` from ``/proc/stat`` (None: unreadable)."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    wanted, out = set(ids), {}
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        try:
            cpu, values = int(name[3:]), [int(v) for v in fields[:8]]
        except ValueError:
            continue
        if cpu in wanted:
            idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
            out[cpu] = (sum(values) - idle, sum(values))
    return out or None


def busy_cpus(look_s: float = LOOK_S, ids: list[int] | None = None) -> float | None:
    """How many of the CPUs ``ids`` (default: this process's) other processes keep busy,
    from ``/proc/stat`` over ``look_s`` seconds while this process sleeps; None where
    ``/proc/stat`` cannot be read (not Linux)."""
    ids = allowed_cpu_ids() if ids is None else ids
    own0, start = _own_cpu_s(), time.monotonic()
    before = _cpu_times(ids)
    if before is None:
        return None
    time.sleep(look_s)
    after = _cpu_times(ids) or {}
    own = (_own_cpu_s() - own0) / max(time.monotonic() - start, 1e-9)
    busy = 0.0
    for cpu, (b0, t0) in before.items():
        b1, t1 = after.get(cpu, (b0, t0))
        if t1 > t0:
            busy += (b1 - b0) / (t1 - t0)
    # this process's own threads (a BLAS / OpenMP pool still spinning after an import) are
    # not another process: without this, `evaluate` saw 0.6 busy CPUs on an idle machine
    return max(0.0, busy - own)


def _own_cpu_s() -> float:
    """CPU seconds this process (all its threads) has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def choose_threads(threads: int | None = None, *, measure: bool = True) -> ThreadChoice:
    """The threads to compute with (module docstring); ``measure=False`` skips the look at
    ``/proc/stat`` (then nothing is left out for busy CPUs)."""
    from diffaug_genomics.errors import InputError

    usable = usable_cpus()
    if threads is not None:
        if isinstance(threads, bool) or int(threads) != threads or threads < 1:
            raise InputError(f"--threads must be a positive integer (got {threads})")
        asked: tuple[int, str] | None = (int(threads), "--threads")
    else:
        asked = None
        for name in (ENV_VAR, "OMP_NUM_THREADS"):
            raw = os.environ.get(name, "").strip()
            if not raw:
                continue
            value = _int_env(name)
            if value is None:
                raise InputError(f"{name}={raw!r}: expected a positive number of threads")
            asked = (value, name)
            break
    busy = busy_cpus() if measure else None
    if asked is not None:
        return ThreadChoice(asked[0], asked[1], usable, busy)
    free = usable if busy is None else usable - round(busy)
    return ThreadChoice(max(1, min(usable, free)), "auto", usable, busy)


_APPLIED: list[ThreadChoice] = []


def apply_threads(threads: int | None = None, *, measure: bool = True) -> ThreadChoice:
    """Choose the threads (:func:`choose_threads`), set PyTorch's and the BLAS / OpenMP pools
    to them, log the choice (a warning when the machine is oversubscribed) and return it."""
    from diffaug_genomics.progress import LOG

    choice = choose_threads(threads, measure=measure)
    set_threads(choice.threads)
    _APPLIED[:] = [choice]
    line = choice.warning()
    if line:
        LOG.warning("%s", line)
    else:
        LOG.debug("computing with %d threads (%s; %d usable CPUs)", choice.threads,
                  choice.source, choice.usable)
    return choice


def set_threads(n: int) -> None:
    """Use ``n`` threads in PyTorch (intra-op) and in numpy's / scikit-learn's native pools."""
    import torch

    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # pragma: no cover - scikit-learn brings threadpoolctl
        pass


def applied() -> ThreadChoice | None:
    """The last choice :func:`apply_threads` made in this process (None: never called)."""
    return _APPLIED[0] if _APPLIED else None
