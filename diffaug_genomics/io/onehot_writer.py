"""Writing ``diffaug-genomics/onehot/1`` files (the schema: :mod:`diffaug_genomics.io.h5`) in
blocks, compressed in worker threads, without holding every row."""

from __future__ import annotations

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
from diffaug_genomics.io.h5 import ONEHOT_SCHEMA, STR_DTYPE, now_iso

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
