"""PyTorch access to ``onehot/1`` files: a lazily opened Dataset and an in-memory loader.

On disk rows are ``(L, 4) uint8``; models take ``(4, L) float32`` (channels A, C, G, T first).

Reading one row at a time from compressed HDF5 decompresses a whole chunk (up to 256 rows) per
row, so a per-item ``DataLoader`` is slow. Prefer, in this order:

1. :func:`load_onehot` when the data fits in memory (40,000 x 200 bp is 32 MB);
2. :meth:`OneHotH5Dataset.get_batch` (or a ``DataLoader`` over this Dataset, which uses its
   ``__getitems__`` to fetch each batch with one HDF5 read);
3. ``__getitem__`` for occasional rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from diffaug_genomics.io.h5 import open_onehot, read_strings


def load_onehot(path: str | Path) -> np.ndarray:
    """Read the whole ``/onehot`` of an ``onehot/1`` file: ``(N, L, 4) uint8``.

    Raises:
        InputError: not a diffaug one-hot file, or corrupt.
    """
    with open_onehot(path) as f:
        return f["onehot"][()]


def to_model_layout(onehot: np.ndarray) -> torch.Tensor:
    """``(..., L, 4) uint8`` one-hot to a ``(..., 4, L) float32`` tensor (a copy)."""
    return torch.from_numpy(np.ascontiguousarray(np.swapaxes(onehot, -1, -2))).float()


class OneHotH5Dataset(Dataset):
    """Rows of an ``onehot/1`` file as ``torch.float32`` tensors of shape ``(4, L)``.

    The file is opened lazily: ``__init__`` only reads N and L with a short-lived handle (to
    fail early on a bad file) and keeps no handle, so the Dataset pickles into ``DataLoader``
    workers; each process opens its own handle on first access (a handle inherited across
    ``fork`` is detected by pid and reopened).

    Args:
        path: the ``.h5`` file written by ``diffaug encode``.
        indices: optional subset of row numbers (e.g. a train split); item ``i`` is file row
            ``indices[i]``.

    Examples:
        >>> ds = OneHotH5Dataset("example.h5")                          # doctest: +SKIP
        >>> x = ds.get_batch([0, 5, 7])   # (3, 4, L) float32, one HDF5 read   # doctest: +SKIP
        >>> loader = DataLoader(ds, batch_size=256, shuffle=True, num_workers=2)  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, indices: Sequence[int] | np.ndarray | None = None
                 ) -> None:
        self.path = str(path)
        with open_onehot(self.path) as f:
            self.n_rows, self.length = int(f["onehot"].shape[0]), int(f["onehot"].shape[1])
            self.has_labels = "labels" in f
        if indices is None:
            self.indices: np.ndarray | None = None
        else:
            idx = np.asarray(indices, dtype=np.int64).reshape(-1)
            if idx.size and (idx.min() < -self.n_rows or idx.max() >= self.n_rows):
                raise IndexError(f"indices out of range for {self.n_rows} rows")
            self.indices = np.where(idx < 0, idx + self.n_rows, idx)
        self._file: Any = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self.n_rows if self.indices is None else len(self.indices)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"], state["_pid"] = None, None
        return state

    def _onehot(self) -> Any:
        if self._file is None or self._pid != os.getpid():
            self._file = open_onehot(self.path)
            self._pid = os.getpid()
        return self._file["onehot"]

    def close(self) -> None:
        """Close this process's handle (it reopens on next access)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pid = None, None

    def _rows(self, items: np.ndarray) -> np.ndarray:
        n = len(self)
        if items.size and (items.min() < -n or items.max() >= n):
            raise IndexError(f"index out of range for {n} items")
        items = np.where(items < 0, items + n, items)
        return items if self.indices is None else self.indices[items]

    def __getitem__(self, i: int) -> torch.Tensor:
        """Row ``i`` as ``(4, L) float32``."""
        row = int(self._rows(np.asarray([i], dtype=np.int64))[0])
        return to_model_layout(self._onehot()[row])

    def read_rows(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Items ``indices`` (in that order) as ``(B, L, 4) uint8``, with one HDF5 read.

        Sorted unique rows are read as one slice when they are dense (span at most 4x the
        batch), else as one point selection; then put back in the requested order.
        """
        rows = self._rows(np.asarray(indices, dtype=np.int64).reshape(-1))
        if rows.size == 0:
            return np.zeros((0, self.length, 4), dtype=np.uint8)
        uniq, inverse = np.unique(rows, return_inverse=True)
        ds = self._onehot()
        lo, hi = int(uniq[0]), int(uniq[-1]) + 1
        if hi - lo <= 4 * len(uniq):
            block = ds[lo:hi][uniq - lo]
        else:
            block = ds[uniq]
        return block[inverse]

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Items ``indices`` as a ``(B, 4, L) float32`` tensor (see :meth:`read_rows`)."""
        return to_model_layout(self.read_rows(indices))

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        """Batched fetch used by ``DataLoader`` (torch >= 2.0): one read per batch."""
        return list(self.get_batch(indices).unbind(0))

    @property
    def ids(self) -> list[str]:
        """Row ids of the items (in item order)."""
        return self._strings("ids")

    @property
    def labels(self) -> list[str] | None:
        """Labels of the items, or None when the file has none."""
        return self._strings("labels") if self.has_labels else None

    def _strings(self, name: str) -> list[str]:
        with open_onehot(self.path) as f:
            values = read_strings(f[name])
        if self.indices is None:
            return values
        return [values[i] for i in self.indices.tolist()]
