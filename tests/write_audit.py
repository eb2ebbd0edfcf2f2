"""Which process wrote under a directory: a ``sitecustomize`` that records file writes per rank.

:func:`install` writes a ``sitecustomize.py`` into a folder; a Python process started with that
folder on ``PYTHONPATH`` and ``WRITE_AUDIT_ROOT`` / ``WRITE_AUDIT_OUT`` set records, through
Python's audit hooks (PEP 578), every open for writing, mkdir, rename, replace, unlink and copy
of a path under the root, and at exit writes them to ``OUT/rank{RANK}-{pid}.json``. HDF5 files
are opened by the C library, but ours are created through ``atomic_output`` (``mkstemp`` +
``os.replace``), which is recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

SITECUSTOMIZE = r'''
import atexit, json, os, sys

_root = os.path.realpath(os.environ["WRITE_AUDIT_ROOT"])
_out = os.environ["WRITE_AUDIT_OUT"]
_events = []
_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _under(path):
    if isinstance(path, bytes):
        path = path.decode(errors="replace")
    if not isinstance(path, str):
        return False
    full = os.path.realpath(os.path.join(os.getcwd(), path))
    return full == _root or full.startswith(_root + os.sep)


def _hook(event, args):
    try:
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE)
            if writing and _under(path):
                _events.append([event, str(path)])
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "os.truncate"):
            if _under(args[0]):
                _events.append([event, str(args[0])])
        elif event in ("os.rename", "os.replace", "shutil.copyfile", "shutil.move"):
            if _under(args[1]):
                _events.append([event, str(args[1])])
    except Exception:
        pass


def _dump():
    rank = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))
    os.makedirs(_out, exist_ok=True)
    with open(os.path.join(_out, f"rank{rank}-{os.getpid()}.json"), "w") as fh:
        json.dump({"rank": int(rank), "argv": sys.argv, "events": _events}, fh)


sys.addaudithook(_hook)
atexit.register(_dump)
'''


def install(folder: Path) -> Path:
    """Write ``sitecustomize.py`` into ``folder`` (created); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return folder


def env(folder: Path, root: Path, out: Path) -> dict[str, str]:
    """Variables that switch the audit on for processes started with them."""
    return {"PYTHONPATH": str(folder), "WRITE_AUDIT_ROOT": str(root), "WRITE_AUDIT_OUT": str(out)}


def writes_by_rank(out: Path) -> dict[int, list[list[str]]]:
    """``{rank: [[event, path], ...]}`` summed over the processes of each rank that reported.

    Only processes that ran the diffaug CLI (``.../main.py``) count, not a launcher."""
    result: dict[int, list[list[str]]] = {}
    for f in sorted(out.glob("rank*.json")):
        record = json.loads(f.read_text())
        if not record["argv"] or not record["argv"][0].endswith("main.py"):
            continue
        result.setdefault(record["rank"], []).extend(record["events"])
    return result
