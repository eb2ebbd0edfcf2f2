"""Sequence inputs for fit, embed and generate: a diffaug one-hot HDF5 file or FASTA.

FASTA is encoded on the fly with the same code as ``diffaug encode`` (streaming, chunked), so
the three commands accept either form.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffaug_genomics.io.h5 import is_hdf5, open_onehot, read_strings

READ_ROWS = 4096


@dataclass
class Chunk:
    """A block of input rows: ``onehot (n, L, 4) uint8``, ids, ``lengths (n,)``, labels, and
    the policy that placed each record in its row (``center`` rows start at ``(L - length)//2``)."""

    onehot: np.ndarray
    ids: list[str]
    lengths: np.ndarray
    labels: list[str] | None
    policy: str = "pad"


def iter_chunks(source: str | Path, length: int | None = None, policy: str = "center",
                stride: int | None = None, rows: int = READ_ROWS) -> Iterator[Chunk]:
    """Stream ``source`` (HDF5 from ``diffaug encode``, FASTA path, or ``-`` for stdin) in chunks.

    FASTA is encoded to ``length`` bp with ``policy``; HDF5 rows are returned as stored.
    """
    if str(source) != "-" and is_hdf5(source):
        with open_onehot(source) as f:
            n = f["onehot"].shape[0]
            has_labels = "labels" in f
            stored_policy = str(f.attrs.get("policy", "pad"))
            for start in range(0, n, rows):
                stop = min(start + rows, n)
                labels = None
                if has_labels:
                    labels = [s.decode() if isinstance(s, bytes) else str(s)
                              for s in f["labels"][start:stop]]
                yield Chunk(f["onehot"][start:stop], read_strings_slice(f["ids"], start, stop),
                            f["lengths"][start:stop], labels, stored_policy)
        return
    from diffaug_genomics.encode import encode_records
    from diffaug_genomics.io.fasta import read_fasta

    if length is None:
        from diffaug_genomics.errors import InputError

        raise InputError("FASTA input needs a sequence length (the run's data.length)", path=source)
    for enc in encode_records(read_fasta(source), length, policy, stride, chunk_records=rows):
        yield Chunk(enc.onehot, list(enc.ids), np.asarray(enc.lengths), None, policy)


def read_strings_slice(ds, start: int, stop: int) -> list[str]:  # noqa: ANN001 - h5py dataset
    """UTF-8 strings ``ds[start:stop]`` as :class:`str`."""
    return [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in ds[start:stop]]


def load_rows(source: str | Path) -> tuple[np.ndarray, list[str], list[str] | None, dict]:
    """Load a whole one-hot HDF5 file into memory: ``(onehot (N, L, 4) uint8, ids, labels, attrs)``."""
    with open_onehot(source) as f:
        onehot = f["onehot"][()]
        ids = read_strings(f["ids"])
        labels = read_strings(f["labels"]) if "labels" in f else None
        attrs = dict(f.attrs)
    return onehot, ids, labels, attrs
