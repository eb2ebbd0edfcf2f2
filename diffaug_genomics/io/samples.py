"""Samples read from an image or tabular input, before preprocessing, and the helpers every
such reader shares (``.npy`` loading, text opening, image listing, ``.npy`` shape kinds).

A leaf of :mod:`diffaug_genomics.io`: the readers (:mod:`.images`, :mod:`.tables`,
:mod:`.h5ad`) return :class:`Samples`; a modality (:mod:`diffaug_genomics.modalities`)
preprocesses them into model rows.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffaug_genomics.errors import InputError

TABLE_SUFFIXES = (".csv", ".tsv", ".tab")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class ReadOptions:
    """How to find labels (and keep them out of the features) in an input."""

    label_column: str | None = None
    """CSV/TSV: the column holding labels; it is never a feature."""
    obs_key: str | None = None
    """``.h5ad``: the ``obs`` column holding labels."""
    label_optional: bool = False
    """The label column / key came from the run (not the user): an input without it is read
    without labels instead of refused."""


@dataclass
class Samples:
    """Samples read from one input, before preprocessing.

    ``values``: ``(N, ...)`` in the data's own units: images ``(N, H, W, C)`` (uint8, or float),
    tables ``(N, D)`` float32. ``ids``: N strings (file names, row numbers, cell names).
    ``labels``: N strings or None. ``source_format``: ``csv``, ``tsv``, ``npy``, ``h5ad``,
    ``image-folder``, ``image-npy``, ``image-h5``... ``feature_names``: D column names, when the
    input has them. ``label_key``: the column or ``obs`` key the labels came from.
    """

    values: np.ndarray
    ids: list[str]
    labels: list[str] | None
    source_format: str
    feature_names: list[str] | None = None
    label_key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)



def load_npy(path: Path, mmap_mode: str | None = None) -> np.ndarray:
    """A ``.npy`` array (never a pickle); an empty, truncated or foreign file is an
    :class:`InputError` naming it."""
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        lines = str(exc).strip().splitlines() or [exc.__class__.__name__]
        raise InputError(f"not a readable .npy array ({lines[0]})", path=path) from None


def npy_kind(shape: tuple[int, ...]) -> str | None:
    """``image`` for ``(N, H, W)`` / ``(N, H, W, C)`` with C in 1, 3, 4; ``tabular`` for
    ``(N, D)``; None otherwise."""
    if len(shape) == 2:
        return "tabular"
    if len(shape) == 3 or (len(shape) == 4 and shape[3] in (1, 3, 4)):
        return "image"
    return None


def list_images(folder: Path) -> list[Path]:
    """PNG / JPEG files under ``folder`` (any depth), sorted by relative path."""
    return sorted((p for p in folder.rglob("*") if p.is_file()
                   and p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: p.relative_to(folder).as_posix())


def table_suffix(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes and suffixes[-1] in TABLE_SUFFIXES else None



def open_text(path: Path) -> Any:
    """Open a text file, gunzipping ``.gz`` (UTF-8, universal newlines)."""
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")
