"""``fit``'s hold on its run directory: rank 0 takes the lock of
:mod:`diffaug_genomics.run_lock` before ``fit`` looks at the directory and keeps it to the end,
and every rank of a distributed fit fails together when it could not."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from diffaug_genomics.errors import Busy, InputError
from diffaug_genomics.io.signals import signals_raise
from diffaug_genomics.lock_holder import current_writer
from diffaug_genomics.run_lock import Lock

if TYPE_CHECKING:
    from diffaug_genomics.train.distributed import DistContext

F = TypeVar("F", bound=Callable[..., Any])

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
