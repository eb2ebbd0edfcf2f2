"""Atomic outputs: write to a temporary file beside the target, rename on success.

A failed or interrupted run never leaves a half-written output, and an existing file is only
replaced when the caller allows it. Every command writes through :func:`atomic_output` (and
checkpoints through :func:`atomic_temp`), so these guarantees live here, once:

- **the input is never the output**: :func:`check_output` refuses an output that is one of
  the command's inputs (the same file, also through a symlink, a hard link or another path),
  with or without ``force``;
- **signals**: SIGTERM and SIGHUP (``scancel``, a SLURM time limit, a closed terminal) raise
  :class:`~diffaug_genomics.errors.Terminated` while a temporary file is open, so it is removed
  exactly as on SIGINT (a caller's own handler, e.g. ``fit``'s checkpoint-and-stop, is kept;
  :mod:`diffaug_genomics.io.signals`);
- **a full disk** is one :class:`DiskFull` error (exit 1), ``no space left on device writing
  FILE``, with the temporary file removed. HDF5 files are created with :func:`create_hdf5`,
  which keeps the HDF5 library away from failed writes (it segfaults or aborts in malloc when
  a write fails under it);
- :func:`remove_stale_temps` removes the temporary files a ``kill -9`` left behind;
- **two writers of one output**: each writes its own temporary file, so the output is always
  one whole file. Without ``force`` the temporary file is hard-linked onto the output, which
  fails if the output appeared meanwhile (another command wrote it while this one ran): the
  second writer is refused with exit 2 and the first one's file is kept. With ``force`` the
  last rename wins;
- **writers that lost their lock** (:mod:`diffaug_genomics.run_lock`) never rename a file into
  the directory they no longer own: :func:`guard_commits` checks them first.
"""

from __future__ import annotations

import errno
import io
import itertools
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from diffaug_genomics.errors import DiffaugError, InputError
from diffaug_genomics.io.signals import signals_raise
from diffaug_genomics.run_files import is_run_input

T = TypeVar("T")

_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "errno = 28")


class DiskFull(DiffaugError):
    """The disk (or quota) filled up while writing an output (exit code 1)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(f"no space left on device writing {path}")
        self.path = str(path)


def is_disk_full(exc: BaseException | None) -> bool:
    """True when ``exc`` (or an exception it was raised from) says the disk is full."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        if any(text in str(exc) for text in _FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


FOLDER_INPUT_SUFFIXES = (".png", ".jpg", ".jpeg")
"""The images of an image folder (an input of ``embed`` / ``generate``), which no output may
replace; nor a run directory's own files (:func:`~diffaug_genomics.run_files.is_run_input`)."""


def _part_of_folder_input(relative: Path) -> bool:
    return is_run_input(relative) or relative.suffix.lower() in FOLDER_INPUT_SUFFIXES


def refuse_inputs(out: Path, inputs: Iterable[str | Path | None]) -> None:
    """Raise :class:`InputError` when ``out`` is one of ``inputs`` (the same file by any path;
    for an input folder, one of a run directory's own files or an image folder's images)."""
    for given in inputs:
        if given is None or str(given) == "-":
            continue
        inp = Path(given)
        if out.exists() and _same_file(out, inp):
            raise InputError(f"the output is the input {inp} (refusing to overwrite an input, "
                             "with or without --force): choose another -o", path=out)
        if inp.is_dir() and out.exists() and not out.is_dir():
            try:
                inside = out.resolve().relative_to(inp.resolve())
            except (OSError, ValueError):
                inside = None
            if inside is not None and _part_of_folder_input(inside):
                raise InputError(f"the output is a file of the input folder {inp} (refusing "
                                 "to overwrite it, with or without --force): choose another -o",
                                 path=out)


def check_output(path: str | Path, force: bool = False,
                 inputs: Iterable[str | Path | None] = ()) -> Path:
    """Validate an output path before any work starts; returns it as a :class:`Path`.

    Raises :class:`InputError` if it is ``-`` (callers that can stream handle ``-`` first), one
    of ``inputs`` (the same file by any path, with or
    without ``force``; for an input folder: a run directory's own files, an image folder's
    images), exists
    (without ``force``), is a directory, or its parent directory is missing or not writable.
    """
    if str(path) == "-":
        raise InputError("this output is a file (HDF5, .npy, JSON...), it cannot stream to "
                         "standard output: give -o FILE")
    out = Path(path)
    refuse_inputs(out, inputs)
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


# ------------------------------------------------------------------------------ temporary files
_write_errors: dict[str, OSError] = {}
"""Temporary path -> the OSError a guarded HDF5 file met (see :func:`create_hdf5`)."""

_commit_guards: dict[int, tuple[Path, Callable[[], None]]] = {}
_guard_ids = itertools.count()
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS,
                  errno.EXDEV}


def guard_commits(root: str | Path, check: Callable[[], None]) -> Callable[[], None]:
    """Call ``check()`` before any temporary file is renamed onto a path inside ``root`` (a
    lock holder's check that it still holds its lock: it raises if not, and the temporary
    file is removed instead). Returns the function that removes the guard."""
    key = next(_guard_ids)
    _commit_guards[key] = (Path(root).resolve(), check)

    def remove() -> None:
        _commit_guards.pop(key, None)

    return remove


def _check_guards(out: Path) -> None:
    if not _commit_guards:
        return
    folder = out.parent.resolve()
    for root, check in list(_commit_guards.values()):
        if folder == root or root in folder.parents:
            check()


def _commit(tmp: Path, out: Path, replace: bool) -> None:
    """Put the finished temporary file at ``out``: a rename (``replace``), else a hard link that
    fails if ``out`` exists by now, so a file another command wrote meanwhile is never
    replaced (where the file system has no hard links: a check, then the rename)."""
    _check_guards(out)
    if replace:
        os.replace(tmp, out)
        return
    try:
        os.link(tmp, out)
    except FileExistsError:
        raise InputError("output exists: another command wrote it while this one ran (use "
                         "--force to overwrite)", path=out) from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        if out.exists():
            raise InputError("output exists: another command wrote it while this one ran (use "
                             "--force to overwrite)", path=out) from None
        os.replace(tmp, out)
        return
    tmp.unlink()


@contextmanager
def atomic_temp(out: Path, *, fsync: bool = False, replace: bool = True) -> Iterator[Path]:
    """A temporary path beside ``out``, put at ``out`` on success and removed on any failure,
    SIGTERM / SIGHUP included; a full disk becomes :class:`DiskFull` naming ``out``. Without
    ``replace`` an ``out`` that exists by then (another command wrote it) is kept and
    :class:`InputError` raised."""
    with signals_raise():
        parent = out.parent if str(out.parent) else Path(".")
        tmp_path = parent / f".{out.name}.unnamed.tmp"  # replaced as soon as mkstemp returns
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent)
            tmp_path = Path(tmp)
            os.close(fd)
            os.chmod(tmp_path, default_mode())  # mkstemp makes 0600; outputs get the umask
            yield tmp_path
            failed = _write_errors.pop(str(tmp_path), None)
            if failed is not None:
                raise failed
            if fsync:
                with open(tmp_path, "rb") as fh:
                    os.fsync(fh.fileno())
            _commit(tmp_path, out, replace)
        except BaseException as exc:
            _write_errors.pop(str(tmp_path), None)
            tmp_path.unlink(missing_ok=True)
            if isinstance(exc, Exception) and not isinstance(exc, DiffaugError) \
                    and is_disk_full(exc):
                raise DiskFull(out) from None
            raise


@contextmanager
def atomic_output(path: str | Path, force: bool = False,
                  inputs: Iterable[str | Path | None] = ()) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``path`` on success.

    ``path`` is checked with :func:`check_output` first (``inputs``: the command's inputs,
    which the output must not be). On any exception, SIGTERM and SIGHUP included, the
    temporary file is removed and ``path`` is left as it was. Without ``force``, a ``path``
    that another command wrote while this one ran is kept (:class:`InputError`).
    """
    out = check_output(path, force, inputs)
    with atomic_temp(out, replace=force) as tmp:
        yield tmp


def remove_stale_temps(directory: str | Path, names: Iterable[str] | None = None) -> list[Path]:
    """Remove the temporary files (``.NAME.*.tmp``) that a killed writer left in
    ``directory``, only those of the files ``names`` when given; returns what was removed.
    Call it only for files no other process writes (``fit`` holds its run directory's lock,
    but ``embed`` or ``report`` may be writing an output of their own into it)."""
    folder = Path(directory)
    wanted = None if names is None else tuple(f".{name}." for name in names)
    removed = []
    if folder.is_dir():
        for p in folder.glob(".*.tmp"):
            if p.is_file() and (wanted is None or p.name.startswith(wanted)):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


# ----------------------------------------------------------------------------------- HDF5 files
class _GuardedFile(io.RawIOBase):
    """A file the HDF5 library writes through (h5py's ``fileobj`` driver) that never reports a
    failed write to it: the first OSError (a full disk) is recorded, for :func:`atomic_temp`
    to raise, and from then on writes are kept in memory (reads see them), so the library
    goes on, closes cleanly and nothing crashes. Writers stop early with
    :func:`raise_if_write_failed`; the temporary file is removed either way."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.fh = open(path, "w+b", buffering=0)  # noqa: SIM115 - closed in close()
        self.error: OSError | None = None
        self.overlay: list[tuple[int, bytes]] = []  # (offset, data) written after the error
        self.end = 0  # logical end of file, overlay included

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 2:
            return self.fh.seek(max(self.end, os.fstat(self.fh.fileno()).st_size) + offset)
        return self.fh.seek(offset, whence)

    def tell(self) -> int:
        return self.fh.tell()

    def readinto(self, buffer: Any) -> int:
        pos = self.fh.tell()
        n = self.fh.readinto(buffer) or 0
        if not self.overlay:
            return n
        view = memoryview(buffer).cast("B")
        view[n:] = bytes(len(view) - n)
        filled = n
        for off, data in self.overlay:  # later writes win
            lo, hi = max(off, pos), min(off + len(data), pos + len(view))
            if lo < hi:
                view[lo - pos:hi - pos] = data[lo - off:hi - off]
                filled = max(filled, hi - pos)
        self.fh.seek(pos + filled)
        return filled

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        pos = self.fh.tell()
        if self.error is None:
            try:
                written = 0
                while written < size:
                    written += self.fh.write(view[written:])
                self.end = max(self.end, pos + size)
                return size
            except OSError as exc:
                self.error = exc
                _write_errors[str(self.path)] = exc
        self.overlay.append((pos, bytes(view)))
        self.end = max(self.end, pos + size)
        self.fh.seek(pos + size)
        return size

    def truncate(self, size: int | None = None) -> int:
        size = self.fh.tell() if size is None else size
        if self.error is None:
            try:
                self.fh.truncate(size)
            except OSError as exc:
                self.error = exc
                _write_errors[str(self.path)] = exc
        self.end = size
        return size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.fh.close()
            self.overlay = []
        super().close()


def create_hdf5(path: str | Path) -> Any:
    """A new ``h5py.File`` at ``path`` (a temporary path of :func:`atomic_output`) whose failed
    writes (a full disk) do not crash the HDF5 library: the error is raised as
    :class:`DiskFull` when the atomic output closes. Long writers call :func:`raise_if_write_failed`."""
    import h5py

    class GuardedFile(h5py.File):
        def close(self) -> None:
            try:
                super().close()
            finally:
                guard.close()

    guard = _GuardedFile(Path(path))
    try:
        return GuardedFile(guard, "w")
    except BaseException:
        guard.close()
        raise


def raise_if_write_failed(path: str | Path) -> None:
    """Raise the OSError a file of :func:`create_hdf5` at ``path`` met (long writers call this
    between blocks, so that a full disk stops the work at once)."""
    failed = _write_errors.get(str(path))
    if failed is not None:
        raise OSError(failed.errno, failed.strerror or str(failed))
