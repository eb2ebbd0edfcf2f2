"""A ``fit`` that fails leaves nothing behind that it created.

:func:`remove_new_run_dir` wraps the part of ``fit`` that creates and fills the run
directory: when that fails before the run's first checkpoint (bad input found while reading
it, a diverged loss, Ctrl-C...) and the directory did not exist before this ``fit``, it is
removed again, so the next attempt starts from nothing. A directory that already existed is
left as it was (it may hold the user's files), and so is any run with a checkpoint to resume
from. What an earlier failure left (a killed process cannot clean up) is reported as such by
:mod:`diffaug_genomics.input_kinds` when the directory is given again.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from diffaug_genomics.progress import LOG
from diffaug_genomics.run_files import RunPaths


@contextmanager
def remove_new_run_dir(run_dir: str | Path, is_main: bool = True) -> Iterator[None]:
    """Remove ``run_dir`` when the block fails, it was created by the block and holds no
    checkpoint (module docstring); only on the process that writes (``is_main``)."""
    run_dir = Path(run_dir)
    existed = run_dir.exists()
    try:
        yield
    except BaseException:  # a stop by signal checkpoints first: holds_run keeps that run
        if is_main and not existed and run_dir.is_dir() and not RunPaths(run_dir).holds_run():
            shutil.rmtree(run_dir, ignore_errors=True)
            if not run_dir.exists():
                LOG.info("removed %s: the fit failed before its first checkpoint", run_dir)
        raise
