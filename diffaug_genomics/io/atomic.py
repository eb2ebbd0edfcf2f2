"""Atomic outputs: write to a temporary file beside the target, rename on success.

A failed or interrupted run never leaves a half-written output, and an existing file is only
replaced when the caller allows it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from diffaug_genomics.errors import InputError


def check_output(path: str | Path, force: bool = False) -> Path:
    """Validate an output path before any work starts; returns it as a :class:`Path`.

    Raises :class:`InputError` if it exists (without ``force``), is a directory, or its parent
    directory is missing or not writable.
    """
    out = Path(path)
    if out.is_dir():
        raise InputError("output path is a directory", path=out)
    if out.exists() and not force:
        raise InputError("output exists (use --force to overwrite)", path=out)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError("output directory does not exist", path=parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError("output directory is not writable", path=parent)
    return out


def default_mode() -> int:
    """Permissions a plainly created file would get under the current umask (e.g. 0644)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_output(path: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    out = check_output(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, default_mode())  # mkstemp makes 0600; outputs get the usual umask
    try:
        yield tmp_path
        os.replace(tmp_path, out)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
