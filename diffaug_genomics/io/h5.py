"""The project's HDF5 schemas: the one home for dataset names, dtypes and attributes.

``diffaug-genomics/onehot/1`` (written by ``diffaug encode``)::

    /onehot   (N, L, 4) uint8, channels A, C, G, T; chunked along N, compressed
    /ids      (N,) UTF-8 strings: record ids (``id:start-end`` for windows)
    /lengths  (N,) int32: positions holding the record's own sequence (padding excluded)
    /labels   (N,) UTF-8 strings, only when labels were given
    attrs: schema, alphabet, length, policy, source, source_sha256, tool_version, created

``diffaug-genomics/embeddings/1`` (written by ``diffaug embed``)::

    /embeddings (N, D) float32
    /ids        (N,) UTF-8 strings
    /labels     (N,) UTF-8 strings, when the input had them
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
from diffaug_genomics.alphabet import ALPHABET
from diffaug_genomics.errors import InputError

ONEHOT_SCHEMA = "diffaug-genomics/onehot/1"
EMBEDDINGS_SCHEMA = "diffaug-genomics/embeddings/1"
STR_DTYPE = h5py.string_dtype("utf-8")

# Chosen by measurement (benchmarks/bench_encode.py): gzip level 1 with byte shuffle packs
# one-hot (N, L, 4) uint8 about 20x smaller at close to lz4-like speed; 256 rows per chunk keeps
# random access for a DataLoader cheap (one chunk of 200 bp is 200 KiB before compression).
CHUNK_ROWS = 256
COMPRESSION: dict[str, Any] = {"compression": "gzip", "compression_opts": 1, "shuffle": True}


def now_iso() -> str:
    """Current UTC time as ISO 8601 (seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class OneHotWriter:
    """Append ``(n, L, 4) uint8`` blocks to a new ``onehot/1`` file without holding them all.

    Use as a context manager on a (temporary) path; call :meth:`append` per chunk and
    :meth:`set_labels` once at the end if labels exist.
    """

    def __init__(self, path: str | Path, length: int, attrs: Mapping[str, Any]) -> None:
        self.length = int(length)
        self.n = 0
        self.file = h5py.File(path, "w")
        chunk_rows = max(1, min(CHUNK_ROWS, (1 << 20) // max(1, self.length * 4)))
        self.onehot = self.file.create_dataset(
            "onehot", shape=(0, self.length, 4), maxshape=(None, self.length, 4), dtype=np.uint8,
            chunks=(chunk_rows, self.length, 4), **COMPRESSION)
        self.ids = self.file.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=STR_DTYPE,
                                            chunks=(4096,))
        self.lengths = self.file.create_dataset("lengths", shape=(0,), maxshape=(None,),
                                                dtype=np.int32, chunks=(4096,))
        self.file.attrs.update({"schema": ONEHOT_SCHEMA, "alphabet": ALPHABET,
                                "length": self.length, "tool_version": __version__,
                                "created": now_iso()})
        self.file.attrs.update({k: v for k, v in attrs.items() if v is not None})

    def append(self, onehot: np.ndarray, ids: Sequence[str], lengths: np.ndarray) -> None:
        """Append ``onehot (n, L, 4) uint8``, ``ids`` (n strings) and ``lengths (n,) int``."""
        n = len(ids)
        if n == 0:
            return
        start, stop = self.n, self.n + n
        for ds in (self.onehot, self.ids, self.lengths):
            ds.resize(stop, axis=0)
        self.onehot[start:stop] = onehot
        self.ids[start:stop] = np.asarray(ids, dtype=object)
        self.lengths[start:stop] = np.asarray(lengths, dtype=np.int32)
        self.n = stop

    def set_labels(self, labels: Sequence[str]) -> None:
        """Write ``/labels`` (one string per row written so far)."""
        self.file.create_dataset("labels", data=np.asarray(labels, dtype=object), dtype=STR_DTYPE)

    def set_attrs(self, **attrs: Any) -> None:
        """Add or replace file attributes."""
        self.file.attrs.update({k: v for k, v in attrs.items() if v is not None})

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> OneHotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
        for name in ("ids", "lengths", "labels"):
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


def read_strings(ds: h5py.Dataset) -> list[str]:
    """Read a UTF-8 string dataset as a list of :class:`str`."""
    return [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in ds[()]]


def write_embeddings(path: str | Path, embeddings: np.ndarray, ids: Sequence[str],
                     labels: Sequence[str] | None = None,
                     attrs: Mapping[str, Any] | None = None) -> None:
    """Write an ``embeddings/1`` file at ``path`` (callers wrap this in ``atomic_output``).

    ``embeddings`` is ``(N, D) float32``; ``ids`` and ``labels`` have N entries.
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(ids):
        raise ValueError(f"embeddings {emb.shape} do not match {len(ids)} ids")
    with h5py.File(path, "w") as f:
        f.create_dataset("embeddings", data=emb, chunks=(min(len(ids), 4096) or 1, emb.shape[1]))
        f.create_dataset("ids", data=np.asarray(list(ids), dtype=object), dtype=STR_DTYPE)
        if labels is not None:
            f.create_dataset("labels", data=np.asarray(list(labels), dtype=object),
                             dtype=STR_DTYPE)
        f.attrs.update({"schema": EMBEDDINGS_SCHEMA, "tool_version": __version__,
                        "created": now_iso()})
        f.attrs.update({k: v for k, v in (attrs or {}).items() if v is not None})


def read_embeddings(path: str | Path) -> tuple[np.ndarray, list[str], list[str] | None,
                                               dict[str, Any]]:
    """Read an ``embeddings/1`` file: ``(embeddings (N, D) float32, ids, labels or None, attrs)``."""
    with _open(path) as f:
        if f.attrs.get("schema") != EMBEDDINGS_SCHEMA:
            raise InputError(f"not a diffaug embeddings file (schema {f.attrs.get('schema')!r})",
                             path=path)
        if "embeddings" not in f or "ids" not in f:
            raise InputError("corrupt: /embeddings or /ids is missing", path=path)
        emb = np.asarray(f["embeddings"][()], dtype=np.float32)
        ids = read_strings(f["ids"])
        labels = read_strings(f["labels"]) if "labels" in f else None
        attrs = dict(f.attrs)
    return emb, ids, labels, attrs
