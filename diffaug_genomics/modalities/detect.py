"""What kind of data an input is: the built-in modality of a path, by content where it can.

=============================================  =========
FASTA (plain or gzip), ``-`` (stdin)           ``dna``
HDF5 with ``schema = diffaug-genomics/onehot/1``  ``dna``
a folder of PNG / JPEG images                  ``image``
``.npy`` of shape ``(N, H, W)`` or ``(N, H, W, C)`` with C in 1, 3, 4   ``image``
HDF5 with an ``/images`` dataset               ``image``
CSV / TSV (``.csv``, ``.tsv``, ``.tab``, optionally ``.gz``)   ``tabular``
``.npy`` of shape ``(N, D)``                   ``tabular``
``.h5ad`` (AnnData)                            ``tabular``
=============================================  =========
"""

from __future__ import annotations

from pathlib import Path

import h5py

from diffaug_genomics.errors import InputError
from diffaug_genomics.io.h5 import ONEHOT_SCHEMA, is_hdf5
from diffaug_genomics.io.samples import (
    list_images,
    load_npy,
    npy_kind,
    table_suffix,
)

FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".ffn", ".seq")
"""File suffixes read as FASTA when the first bytes do not say."""


def _hdf5_kind(path: Path) -> str | None:
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("schema") == ONEHOT_SCHEMA:
                return "dna"
            if "images" in f:
                return "image"
            if "X" in f and "obs" in f:
                return "tabular"
    except OSError as exc:
        raise InputError(f"not a readable HDF5 file ({exc.__class__.__name__})", path=path) from None
    return None


def _npy_shape(path: Path) -> tuple[int, ...]:
    return tuple(load_npy(path, mmap_mode="r").shape)


def detect_modality(source: str | Path) -> str:
    """The built-in modality an input belongs to (table in the module docstring).

    Raises:
        InputError: naming the input when it does not exist, is an empty folder, or has no
            recognisable form (the message suggests ``--modality``).
    """
    if str(source) == "-":
        return "dna"
    path = Path(source)
    if not path.exists():
        raise InputError("no such file or folder", path=path)
    if path.is_dir():
        if not list_images(path):
            raise InputError("folder holds no PNG or JPEG images", path=path)
        return "image"
    suffix = path.suffix.lower()
    if suffix == ".npy":
        shape = _npy_shape(path)
        kind = npy_kind(shape)
        if kind is None:
            raise InputError(f"array of shape {shape}: expected (N, D) for a table or "
                             "(N, H, W[, C]) for images", path=path)
        return kind
    if suffix == ".h5ad":
        return "tabular"
    if table_suffix(path):
        return "tabular"
    if is_hdf5(path):
        kind = _hdf5_kind(path)
        if kind is None:
            raise InputError("HDF5 file is neither a diffaug one-hot file, an image file (with "
                             "/images) nor AnnData (with /X and /obs)", path=path)
        return kind
    with open(path, "rb") as fh:
        head = fh.read(2)
    name = path.name.lower().removesuffix(".gz").removesuffix(".bgz")
    if head[:1] == b">" or head == b"\x1f\x8b" or Path(name).suffix in FASTA_SUFFIXES:
        return "dna"
    raise InputError("cannot tell what this input is (expected FASTA, one-hot HDF5, an image "
                     "folder, .npy, CSV/TSV or .h5ad); name it with --modality", path=path)
