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
import os
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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

# Chosen by measurement (python benchmarks/bench_encode.py --codecs; 20 MB slice of the seeded
# benchmark FASTA, 31,257 records of 200-1000 bp padded to L=1000 -> 126.5 MB of one-hot;
# 2 shared cores, load ~1; columns: encode s, file MB, read-all s, random 64-row batch ms):
#   none                      0.38 s  126.5 MB  0.02 s   14 ms
#   gzip 1 (threaded, below)  0.58 s   15.9 MB  0.24 s   40 ms   <- chosen
#   gzip 1 + shuffle          0.88 s   15.9 MB  0.24 s   40 ms   (h5py pipeline, unthreaded)
#   gzip 4 (threaded)         0.92 s   11.6 MB  0.28 s   45 ms
#   lzf                       0.69 s   33.4 MB  0.34 s   54 ms
#   gzip 1, 1 MiB chunks      0.57 s   15.9 MB  0.23 s  102 ms
# Deflate level 1 packs one-hot 8x here (2 bits of entropy per 4-byte base; real genomes pack
# more), is readable by every HDF5 tool (lzf is h5py-only) and, compressed in OneHotWriter's
# threads, costs ~50% over no compression. Byte shuffle is left out: on a 1-byte dtype it is the
# identity (same size). Chunks hold at most CHUNK_ROWS rows and CHUNK_BYTES bytes (256 rows of
# 200 bp, 65 rows of 1000 bp): 256 KiB chunks make random batches 2.5x cheaper than 1 MiB ones.
CHUNK_ROWS = 256
CHUNK_BYTES = 1 << 18
COMPRESSION: dict[str, Any] = {"compression": "gzip", "compression_opts": 1}
WRITER_THREADS = min(4, os.cpu_count() or 1)
"""Threads compressing ``/onehot`` chunks in :class:`OneHotWriter` (gzip only)."""


def now_iso() -> str:
    """Current UTC time as ISO 8601 (seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class OneHotWriter:
    """Append ``(n, L, 4) uint8`` blocks to a new ``onehot/1`` file without holding them all.

    Use as a context manager on a (temporary) path; call :meth:`append` per chunk (with
    ``labels`` each time, or :meth:`set_labels` once at the end if labels exist).

    With gzip :data:`COMPRESSION`, rows are gathered into whole HDF5 chunks that worker threads
    deflate (zlib releases the GIL) while the caller parses the next block; the main thread stores
    them with ``write_direct_chunk``. The file is the same as with h5py's own filter pipeline.
    Memory: one staging chunk plus ``2 * threads`` chunks in flight.
    """

    def __init__(self, path: str | Path, length: int, attrs: Mapping[str, Any],
                 threads: int | None = None) -> None:
        self.length = int(length)
        self.n = 0
        self.labels: h5py.Dataset | None = None
        self.starts: h5py.Dataset | None = None
        from diffaug_genomics.io.atomic import create_hdf5

        self.path = path
        self.file = create_hdf5(path)
        self.chunk_rows = max(1, min(CHUNK_ROWS, CHUNK_BYTES // max(1, self.length * 4)))
        self.onehot = self.file.create_dataset(
            "onehot", shape=(0, self.length, 4), maxshape=(None, self.length, 4), dtype=np.uint8,
            chunks=(self.chunk_rows, self.length, 4), **COMPRESSION)
        self.ids = self.file.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=STR_DTYPE,
                                            chunks=(4096,))
        self.lengths = self.file.create_dataset("lengths", shape=(0,), maxshape=(None,),
                                                dtype=np.int32, chunks=(4096,))
        self.file.attrs.update({"schema": ONEHOT_SCHEMA, "alphabet": ALPHABET,
                                "length": self.length, "tool_version": __version__,
                                "created": now_iso()})
        self.file.attrs.update({k: v for k, v in attrs.items() if v is not None})
        direct = (COMPRESSION.get("compression") == "gzip" and len(COMPRESSION) <= 2
                  and hasattr(self.onehot.id, "write_direct_chunk"))
        self._level = int(COMPRESSION.get("compression_opts", 4))
        self._threads = max(1, threads or WRITER_THREADS)
        self._pool = ThreadPoolExecutor(self._threads) if direct else None
        self._inflight: deque[tuple[int, Future[bytes]]] = deque()
        self._stage = np.zeros((self.chunk_rows, self.length, 4), dtype=np.uint8)
        self._staged = 0  # rows in _stage; they start at row self.n - self._staged

    def append(self, onehot: np.ndarray, ids: Sequence[str], lengths: np.ndarray,
               labels: Sequence[str] | None = None, starts: np.ndarray | None = None) -> None:
        """Append ``onehot (n, L, 4) uint8``, ``ids`` (n strings) and ``lengths (n,) int``
        (``starts (n,)``: where each row begins in its record, given every time or never).

        ``labels`` (n strings) streams ``/labels`` chunk by chunk: give them with every append
        or never (then :meth:`set_labels` can still write them all at the end).
        """
        n = len(ids)
        if n == 0:
            return
        from diffaug_genomics.io.atomic import raise_if_write_failed

        raise_if_write_failed(self.path)  # a full disk: stop now, not at the end
        onehot = np.asarray(onehot, dtype=np.uint8)
        if onehot.shape != (n, self.length, 4):
            raise ValueError(f"onehot {onehot.shape} does not match {n} ids and L={self.length}")
        start, stop = self.n, self.n + n
        if labels is not None and self.labels is None:
            if start:
                raise ValueError("labels must be given with every append, from the first")
            self.labels = self.file.create_dataset("labels", shape=(0,), maxshape=(None,),
                                                   dtype=STR_DTYPE, chunks=(4096,))
        if (labels is None) != (self.labels is None):
            raise ValueError("labels must be given with every append or never")
        if starts is not None and self.starts is None and not start:
            self.starts = self.file.create_dataset("starts", shape=(0,), maxshape=(None,),
                                                   dtype=np.int64, chunks=(4096,))
        if (starts is None) != (self.starts is None):
            raise ValueError("starts must be given with every append or never")
        datasets = [self.onehot, self.ids, self.lengths]
        datasets += [ds for ds in (self.labels, self.starts) if ds is not None]
        for ds in datasets:
            ds.resize(stop, axis=0)
        if self._pool is None:
            self.onehot[start:stop] = onehot
        else:
            self._stage_rows(onehot)
        self.ids[start:stop] = np.asarray(ids, dtype=object)
        self.lengths[start:stop] = np.asarray(lengths, dtype=np.int32)
        if self.labels is not None:
            self.labels[start:stop] = np.asarray(labels, dtype=object)
        if self.starts is not None:
            self.starts[start:stop] = np.asarray(starts, dtype=np.int64)
        self.n = stop

    def _stage_rows(self, onehot: np.ndarray) -> None:
        """Copy rows into whole chunks and hand each full chunk to the compression threads."""
        rows, i = self.chunk_rows, 0
        first_row = self.n - self._staged
        while i < len(onehot):
            take = min(rows - self._staged, len(onehot) - i)
            self._stage[self._staged:self._staged + take] = onehot[i:i + take]
            self._staged += take
            i += take
            if self._staged == rows:
                self._submit(first_row)
                first_row += rows

    def _submit(self, first_row: int) -> None:
        block, self._stage = self._stage, np.zeros_like(self._stage)
        if self._staged < self.chunk_rows:
            block[self._staged:] = 0
        self._staged = 0
        assert self._pool is not None
        self._inflight.append((first_row, self._pool.submit(zlib.compress, block, self._level)))
        while len(self._inflight) > 2 * self._threads:
            self._store_one()

    def _store_one(self) -> None:
        first_row, future = self._inflight.popleft()
        self.onehot.id.write_direct_chunk((first_row, 0, 0), future.result())

    def _finish(self) -> None:
        if self._pool is None:
            return
        if self._staged:
            self._submit(self.n - self._staged)
        while self._inflight:
            self._store_one()

    def set_labels(self, labels: Sequence[str]) -> None:
        """Write ``/labels`` (one string per row written so far)."""
        if self.labels is not None:
            raise ValueError("labels were already streamed with append()")
        self.file.create_dataset("labels", data=np.asarray(labels, dtype=object), dtype=STR_DTYPE)

    def set_attrs(self, **attrs: Any) -> None:
        """Add or replace file attributes."""
        self.file.attrs.update({k: v for k, v in attrs.items() if v is not None})

    def close(self, flush: bool = True) -> None:
        """Store pending chunks (unless ``flush`` is False, after an error) and close the file."""
        try:
            if flush:
                self._finish()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
            self._inflight.clear()
            self.file.close()

    def __enter__(self) -> OneHotWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(flush=exc_type is None)


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
