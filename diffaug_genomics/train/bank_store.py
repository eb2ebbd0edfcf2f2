"""Where the bank of generated positives lives: host memory, the GPU, or a file, by its size.

The bank holds ``(N, per_sequence, *sample_shape)`` float16 values: 1,600 bytes per 200 bp
sequence, twice the one-hot rows. Up to :data:`BANK_HOST_MAX_BYTES` it is a tensor in host
memory (or on the GPU, see :func:`~diffaug_genomics.train.bank.place_bank`), saved
as ``cache/bank.pt``, as it always was. A larger bank (about 670,000 sequences of 200 bp and
up) is written to ``cache/bank.npy`` block by block as the refresh generates it, and read back
a batch of rows at a time (:class:`DiskBank`): host memory then holds one block, whatever N.
On a GPU with room for it the file is loaded onto the device instead.

``bank.npy`` is a plain NumPy ``.npy`` file (float16, C order; its format:
:mod:`diffaug_genomics.run_files`), checked against the run's shape before use. Both forms hold the same values, so a run is the same with either (tested).
With several ranks the bank is gathered in host memory (the file form is single-process).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from diffaug_genomics.errors import InputError
from diffaug_genomics.io.atomic import atomic_temp
from diffaug_genomics.run_files import bank_data_offset, write_bank_header

BANK_HOST_MAX_BYTES = 1 << 30
"""Largest bank kept in host memory (1 GiB); a larger one lives in ``cache/bank.npy``."""
BLOCK_ROWS = 16_384
"""Rows per read when a bank file is compared or loaded whole."""


def bank_bytes(n: int, per_sequence: int, sample_shape: tuple[int, ...]) -> int:
    """Bytes of a float16 bank of ``n`` samples."""
    return 2 * n * per_sequence * math.prod(sample_shape)


def bank_on_disk(n: int, per_sequence: int, sample_shape: tuple[int, ...],
                 distributed: bool) -> bool:
    """Whether a run's bank lives in a file (:class:`DiskBank`): single-process runs whose
    bank exceeds :data:`BANK_HOST_MAX_BYTES`."""
    return not distributed and bank_bytes(n, per_sequence, sample_shape) > BANK_HOST_MAX_BYTES


class DiskBank:
    """A bank in a ``.npy`` file, ``(N, per_sequence, *sample_shape)`` float16, read by rows.

    ``bank[idx]`` (``idx`` a 1-d tensor or array of row indices) is the ``(len(idx),
    per_sequence, *sample_shape)`` float16 CPU tensor of those rows, read with one ``pread``
    per row (the file's pages stay in the page cache, not in the process's memory);
    ``bank[idx, j]`` the ``j``-th positive of each. Raises :class:`InputError` naming the file
    when it is not such a bank of ``shape`` (None: of the shape it says it has).
    """

    device = torch.device("cpu")
    dtype = torch.float16

    def __init__(self, path: Path, shape: tuple[int, ...] | None) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        try:
            self._offset, self.shape = bank_data_offset(self.path, self._fd, shape)
        except BaseException:
            self.close()
            raise
        self._row_shape = self.shape[1:]
        self._row_bytes = 2 * math.prod(self._row_shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> torch.Tensor:
        if isinstance(index, tuple):
            rows, draw = index
            return self[rows][:, draw]
        idx = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index,
                         dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"bank rows out of range 0..{len(self) - 1}")
        out = np.empty((len(idx), *self._row_shape), np.float16)
        flat = out.reshape(len(idx), -1).view(np.uint8)
        for r, i in enumerate(idx):
            flat[r] = np.frombuffer(self._read(int(i) * self._row_bytes, self._row_bytes),
                                    np.uint8)
        return torch.from_numpy(out)

    def rows(self, lo: int, hi: int) -> torch.Tensor:
        """Rows ``lo:hi`` (one read)."""
        raw = self._read(lo * self._row_bytes, (hi - lo) * self._row_bytes)
        return torch.from_numpy(np.frombuffer(bytearray(raw), np.float16).reshape(
            hi - lo, *self._row_shape))

    def to(self, device: torch.device) -> torch.Tensor:
        """The whole bank as a tensor on ``device``, read :data:`BLOCK_ROWS` rows at a time."""
        out = torch.empty(self.shape, dtype=torch.float16, device=device)
        for lo in range(0, len(self), BLOCK_ROWS):
            hi = min(lo + BLOCK_ROWS, len(self))
            out[lo:hi] = self.rows(lo, hi).to(device)
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()

    def _read(self, at: int, size: int) -> bytes:
        raw = os.pread(self._fd, size, self._offset + at)
        if len(raw) != size:
            raise InputError("bank file ends early (truncated?); delete it to regenerate the "
                             "bank", path=self.path)
        return raw


class DiskBankWriter:
    """Rows of a new bank written in order (``writer[lo:hi] = block``) into an open file, each
    block compared with the same rows of the ``previous`` bank (``changed``: the fraction of
    values that differ, NaN without one)."""

    def __init__(self, fh: BinaryIO, shape: tuple[int, ...], previous: DiskBank | None) -> None:
        self.fh, self.shape, self.previous = fh, shape, previous
        write_bank_header(fh, shape)
        self.written = 0
        self._differ = 0

    def __setitem__(self, rows: slice, block: torch.Tensor) -> None:
        lo, hi = rows.start or 0, rows.stop
        if lo != self.written or hi - lo != len(block) or tuple(block.shape[1:]) != self.shape[1:]:
            raise ValueError(f"bank rows must be written in order (row {self.written} next, "
                             f"got {lo}:{hi} of shape {tuple(block.shape)})")
        values = block.to(torch.float16).contiguous()
        if self.previous is not None:
            self._differ += int((self.previous.rows(lo, hi) != values).sum())
        self.fh.write(values.numpy().tobytes())
        self.written = hi

    @property
    def changed(self) -> float:
        if self.previous is None or self.written == 0:
            return float("nan")
        return self._differ / (self.written * math.prod(self.shape[1:]))


@contextmanager
def bank_output(on_disk: bool, path: Path, shape: tuple[int, ...],
                previous: DiskBank | None) -> Iterator[torch.Tensor | DiskBankWriter]:
    """Where a refresh writes the rows ``0..shape[0]`` of its new bank, in order: a float16
    tensor in memory, or (``on_disk``) a :class:`DiskBankWriter` on a temporary file renamed
    onto ``path`` once every row is written (an interrupted refresh leaves the old file)."""
    if not on_disk:
        yield torch.empty(shape, dtype=torch.float16)
        return
    with atomic_temp(path, fsync=True) as tmp, open(tmp, "wb") as fh:
        writer = DiskBankWriter(fh, shape, previous)
        yield writer
        if writer.written != shape[0]:
            raise RuntimeError(f"bank refresh wrote {writer.written} of {shape[0]} rows")
