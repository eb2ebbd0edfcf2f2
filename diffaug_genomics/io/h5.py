"""The project's HDF5 schemas: the one home for dataset names, dtypes and attributes.

``diffaug-genomics/onehot/1`` (written by ``diffaug encode``)::

    /onehot   (N, L, 4) uint8, channels A, C, G, T; chunked along N, compressed
    /ids      (N,) UTF-8 strings: record ids (``id:start-end`` for windows)
    /lengths  (N,) int32: positions holding the record's own sequence (padding excluded)
    /labels   (N,) UTF-8 strings, only when labels were given
    /starts   (N,) int64: 0-based position in its record of each row's first base (the row
              covers ``record[start:start + length]``); files before 0.x lack it
    attrs: schema, alphabet, length, policy, source, source_sha256, tool_version, created

``diffaug-genomics/embeddings/1`` (written by ``diffaug embed``)::

    /embeddings (N, D) float32
    /ids        (N,) UTF-8 strings
    /labels     (N,) UTF-8 strings, when the input had them
    /regions    (N,) UTF-8 strings, DNA: the part of its record each row covers,
                ``id:start-end`` (0-based, half-open), when known
    attrs: schema, tool_version, created, and what produced them (run directory, config hash...)
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from diffaug_genomics._version import __version__
from diffaug_genomics.errors import InputError

ONEHOT_SCHEMA = "diffaug-genomics/onehot/1"
EMBEDDINGS_SCHEMA = "diffaug-genomics/embeddings/1"
STR_DTYPE = h5py.string_dtype("utf-8")

def now_iso() -> str:
    """Current UTC time as ISO 8601 (seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _open(path: str | Path) -> h5py.File:
    p = Path(path)
    if not p.exists():
        raise InputError("no such file", path=p)
    if p.is_dir():
        raise InputError("is a directory, not an HDF5 file", path=p)
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise InputError(f"not a readable HDF5 file ({exc.__class__.__name__})", path=p) from None


def schema_of(path: str | Path) -> str | None:
    """The ``schema`` attribute of an HDF5 file, or None (raises :class:`InputError` if unreadable)."""
    with _open(path) as f:
        value = f.attrs.get("schema")
    return None if value is None else str(value)


def is_hdf5(path: str | Path) -> bool:
    """True if ``path`` starts with the HDF5 signature."""
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def open_onehot(path: str | Path) -> h5py.File:
    """Open and validate an ``onehot/1`` file for reading; the caller closes it.

    Raises :class:`InputError` naming the file if it is not a diffaug one-hot file or is corrupt.
    """
    f = _open(path)
    try:
        schema = f.attrs.get("schema")
        if schema != ONEHOT_SCHEMA:
            raise InputError(f"not a diffaug one-hot file (schema {schema!r}, expected "
                             f"{ONEHOT_SCHEMA!r})", path=path)
        for name in ("onehot", "ids", "lengths"):
            if name not in f:
                raise InputError(f"corrupt: dataset /{name} is missing", path=path)
        oh = f["onehot"]
        if oh.ndim != 3 or oh.shape[2] != 4 or oh.dtype != np.uint8:
            raise InputError(f"corrupt: /onehot has shape {oh.shape} {oh.dtype}, expected "
                             "(N, L, 4) uint8", path=path)
        n = oh.shape[0]
        for name in ("ids", "lengths", "labels", "starts"):
            if name in f and f[name].shape != (n,):
                raise InputError(f"corrupt: /{name} has shape {f[name].shape}, expected ({n},)",
                                 path=path)
    except InputError:
        f.close()
        raise
    except Exception as exc:  # h5py raises many kinds on damaged files
        f.close()
        raise InputError(f"corrupt HDF5 file ({exc})", path=path) from None
    return f


READ_BLOCK_ROWS = 65_536
"""Rows of ``/onehot`` read at a time by :func:`read_onehot`."""


def read_onehot(f: h5py.File, path: str | Path, start: int = 0,
                stop: int | None = None) -> np.ndarray:
    """Rows ``start:stop`` (default: all) of an open ``onehot/1`` file's ``/onehot``,
    ``(n, L, 4) uint8``, read :data:`READ_BLOCK_ROWS` rows at a time into one array (no
    second copy). A block the HDF5 library cannot read (a damaged compressed chunk) is an
    :class:`InputError` naming ``path`` and the rows."""
    ds = f["onehot"]
    stop = ds.shape[0] if stop is None else stop
    out = np.empty((stop - start, *ds.shape[1:]), dtype=np.uint8)
    for lo in range(start, stop, READ_BLOCK_ROWS):
        hi = min(lo + READ_BLOCK_ROWS, stop)
        try:
            ds.read_direct(out, np.s_[lo:hi], np.s_[lo - start:hi - start])
        except (OSError, ValueError, RuntimeError):
            _raise_unreadable(ds, path, lo, hi, (start, stop))
    return out


def _raise_unreadable(ds: h5py.Dataset, path: str | Path, lo: int, hi: int,
                      bounds: tuple[int, int]) -> None:
    """Find the first unreadable HDF5 chunk among rows ``lo:hi`` and raise
    :class:`InputError` naming its rows (within the rows asked for, ``bounds``)."""
    step = ds.chunks[0] if ds.chunks else hi - lo
    for first in range(lo - lo % step, hi, step):
        rows = np.s_[max(first, bounds[0]):min(first + step, bounds[1])]
        try:
            ds[rows]
        except (OSError, ValueError, RuntimeError) as exc:
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(f"corrupt: /onehot rows {rows.start}-{rows.stop - 1} cannot be "
                             f"read ({why})", path=path) from None
    raise InputError(f"corrupt: /onehot rows {lo}-{hi - 1} cannot be read", path=path)


def read_strings(ds: h5py.Dataset, start: int = 0, stop: int | None = None) -> list[str]:
    """UTF-8 strings ``ds[start:stop]`` (default: all) as :class:`str`."""
    return [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in ds[start:stop]]


def load_rows(source: str | Path) -> tuple[np.ndarray, list[str], list[str] | None, dict]:
    """Load a whole one-hot HDF5 file into memory: ``(onehot (N, L, 4) uint8, ids, labels, attrs)``."""
    with open_onehot(source) as f:
        onehot = f["onehot"][()]
        ids = read_strings(f["ids"])
        labels = read_strings(f["labels"]) if "labels" in f else None
        attrs = dict(f.attrs)
    return onehot, ids, labels, attrs


def write_embeddings(path: str | Path, embeddings: np.ndarray, ids: Sequence[str],
                     labels: Sequence[str] | None = None,
                     attrs: Mapping[str, Any] | None = None,
                     regions: Sequence[str] | None = None) -> None:
    """Write an ``embeddings/1`` file at ``path`` (callers wrap this in ``atomic_output``).

    ``embeddings`` is ``(N, D) float32``; ``ids``, ``labels`` and ``regions`` have N entries.
    """
    from diffaug_genomics.guards import require_finite
    from diffaug_genomics.io.atomic import create_hdf5

    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(ids):
        raise ValueError(f"embeddings {emb.shape} do not match {len(ids)} ids")
    require_finite(emb, "embeddings")
    with create_hdf5(path) as f:
        f.create_dataset("embeddings", data=emb, chunks=(min(len(ids), 4096) or 1, emb.shape[1]))
        f.create_dataset("ids", data=np.asarray(list(ids), dtype=object), dtype=STR_DTYPE)
        if labels is not None:
            f.create_dataset("labels", data=np.asarray(list(labels), dtype=object),
                             dtype=STR_DTYPE)
        if regions is not None:
            f.create_dataset("regions", data=np.asarray(list(regions), dtype=object),
                             dtype=STR_DTYPE)
        f.attrs.update({"schema": EMBEDDINGS_SCHEMA, "tool_version": __version__,
                        "created": now_iso()})
        f.attrs.update({k: v for k, v in (attrs or {}).items() if v is not None})


def embeddings_matrix(node: Any, path: str | Path, where: str) -> np.ndarray:
    """An ``(N, D)`` dataset of real numbers as float32 (anything else: :class:`InputError`
    naming ``path`` and ``where``, the dataset)."""
    if not isinstance(node, h5py.Dataset) or node.ndim != 2:
        raise InputError(f"corrupt: {where} has shape {getattr(node, 'shape', None)}, expected "
                         "(N, D)", path=path)
    if (node.dtype.names is not None or not np.issubdtype(node.dtype, np.number)
            or np.issubdtype(node.dtype, np.complexfloating)):
        raise InputError(f"corrupt: {where} has dtype {node.dtype}, expected real numbers",
                         path=path)
    with np.errstate(over="ignore", invalid="ignore"):
        emb = np.asarray(node[()], dtype=np.float32)
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        raise InputError(f"corrupt: {where} row {int(np.flatnonzero(bad)[0])} holds NaN, "
                         "infinity or a value beyond float32", path=path)
    return emb


def read_embeddings(path: str | Path) -> tuple[np.ndarray, list[str], list[str] | None,
                                               dict[str, Any]]:
    """Read an ``embeddings/1`` file: ``(embeddings (N, D) float32, ids, labels or None, attrs)``."""
    with _open(path) as f:
        if f.attrs.get("schema") != EMBEDDINGS_SCHEMA:
            raise InputError(f"not a diffaug embeddings file (schema {f.attrs.get('schema')!r})",
                             path=path)
        if "embeddings" not in f or "ids" not in f:
            raise InputError("corrupt: /embeddings or /ids is missing", path=path)
        emb = embeddings_matrix(f["embeddings"], path, "/embeddings")
        try:
            ids = read_strings(f["ids"])
            labels = read_strings(f["labels"]) if "labels" in f else None
        except (UnicodeDecodeError, TypeError, ValueError) as exc:
            raise InputError(f"corrupt: /ids or /labels are not strings ({exc.__class__.__name__})",
                             path=path) from None
        attrs = dict(f.attrs)
    if len(ids) != len(emb):
        raise InputError(f"corrupt: {len(ids)} ids for {len(emb)} embeddings", path=path)
    if labels is not None and len(labels) != len(emb):
        raise InputError(f"corrupt: {len(labels)} labels for {len(emb)} embeddings", path=path)
    return emb, ids, labels, attrs
