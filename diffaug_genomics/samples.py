"""Non-DNA inputs: what the data is (modality detection), how it is read, and how a run's
preprocessing is fitted, stored and re-applied.

A modality with an ``io`` (:class:`SampleIO`) reads its input into :class:`Samples` (values in
the data's own units, ids, labels when the input carries them), fits a preprocessing on the
training samples (``fit``), and turns samples into model-layout rows (``transform``). ``fit``
stores the fitted state as JSON in the run directory (:data:`PREPROCESS_FILE`), so ``embed``
and ``generate`` apply exactly the same transform, and ``generate`` maps generated rows back
to the data's units (``inverse``).

Detection (:func:`detect_modality`), by content where it can:

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

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from diffaug_genomics.errors import InputError

if TYPE_CHECKING:
    from diffaug_genomics.config import Config
    from diffaug_genomics.models.registry import Modality

PREPROCESS_FILE = "preprocess.json"
PREPROCESS_FORMAT = "diffaug-genomics/preprocess/1"
TABLE_SUFFIXES = (".csv", ".tsv", ".tab")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".ffn", ".seq")


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


@dataclass(frozen=True)
class SampleIO:
    """A modality's input handling (see the module docstring)."""

    read: Callable[[Path, ReadOptions], Samples]
    """Read an input path into :class:`Samples`; bad input raises :class:`InputError`."""
    fit: Callable[[Samples, Config], dict[str, Any]]
    """Fit the preprocessing on training samples: a JSON-serialisable state."""
    transform: Callable[[Samples, dict[str, Any], str], np.ndarray]
    """(samples, state, source name for errors) -> rows ``(N, *sample_shape)`` float32."""
    inverse: Callable[[np.ndarray, dict[str, Any]], np.ndarray]
    """Model-layout rows (e.g. generated) -> values in the data's units, like ``Samples.values``."""


# --------------------------------------------------------------------------------- detection

def _is_hdf5(path: Path) -> bool:
    from diffaug_genomics.io.h5 import is_hdf5

    return is_hdf5(path)


def _hdf5_kind(path: Path) -> str | None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            from diffaug_genomics.io.h5 import ONEHOT_SCHEMA

            if f.attrs.get("schema") == ONEHOT_SCHEMA:
                return "dna"
            if "images" in f:
                return "image"
            if "X" in f and "obs" in f:
                return "tabular"
    except OSError as exc:
        raise InputError(f"not a readable HDF5 file ({exc.__class__.__name__})", path=path) from None
    return None


def load_npy(path: Path, mmap_mode: str | None = None) -> np.ndarray:
    """A ``.npy`` array (never a pickle); an empty, truncated or foreign file is an
    :class:`InputError` naming it."""
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        lines = str(exc).strip().splitlines() or [exc.__class__.__name__]
        raise InputError(f"not a readable .npy array ({lines[0]})", path=path) from None


def _npy_shape(path: Path) -> tuple[int, ...]:
    return tuple(load_npy(path, mmap_mode="r").shape)


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


def _table_suffix(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes and suffixes[-1] in TABLE_SUFFIXES else None


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
    if _table_suffix(path):
        return "tabular"
    if _is_hdf5(path):
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


def choose_modality(source: str | Path, modality: str | None, backbone: str | None
                    ) -> tuple[str | None, Callable[[str], str], Callable[[], str]]:
    """What ``fit`` passes to :func:`~diffaug_genomics.config.resolve_config`: the explicit
    modality (from ``--backbone package.module:factory``, which registers it, or
    ``--modality``), the registry's preset family of a name, and a deferred detector."""
    from diffaug_genomics.models.registry import get_modality, load_backbone

    if backbone is not None:
        plugin = load_backbone(backbone)
        if modality is not None and modality != plugin.name:
            raise InputError(f"--modality {modality} conflicts with --backbone {backbone}, "
                             f"which provides modality '{plugin.name}'")
        modality = plugin.name
    elif modality is not None:
        get_modality(modality)
    return modality, lambda name: get_modality(name).presets, lambda: detect_modality(source)


# ------------------------------------------------------------------------------- preprocessing

def read_samples(modality: Modality, source: str | Path, options: ReadOptions) -> Samples:
    """Read ``source`` with the modality's reader; checks it exists and holds samples."""
    if modality.io is None:
        raise InputError(f"modality '{modality.name}' reads FASTA / one-hot HDF5, not this way")
    if str(source) == "-":
        raise InputError(f"modality '{modality.name}' cannot read standard input; give a path")
    path = Path(source)
    if not path.exists():
        raise InputError("no such file or folder", path=path)
    try:
        kind = detect_modality(path)
    except InputError:
        kind = None  # the modality's own reader says what is wrong
    if kind == "dna":
        raise InputError(f"is DNA (FASTA or one-hot HDF5), but this is a '{modality.name}' run "
                         "or input: give it the kind of data it was trained on", path=path)
    samples = modality.io.read(path, options)
    if len(samples.ids) != len(samples.values):
        raise InputError(f"reader returned {len(samples.ids)} ids for {len(samples.values)} "
                         "samples", path=path)
    return samples


def save_preprocess(run_dir: Path, modality: str, samples: Samples, state: dict[str, Any]) -> None:
    """Write :data:`PREPROCESS_FILE` into the run directory (atomically)."""
    from diffaug_genomics.io.atomic import atomic_output

    record = {"format": PREPROCESS_FORMAT, "modality": modality,
              "source_format": samples.source_format, "label_key": samples.label_key,
              "state": state}
    with atomic_output(run_dir / PREPROCESS_FILE, force=True) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def load_preprocess(run_dir: Path) -> dict[str, Any]:
    """The run's preprocessing record (see :func:`save_preprocess`)."""
    path = Path(run_dir) / PREPROCESS_FILE
    if not path.is_file():
        raise InputError(f"{PREPROCESS_FILE} is missing: the run has no stored preprocessing",
                         path=run_dir)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable ({exc.__class__.__name__})", path=path) from None
    if record.get("format") != PREPROCESS_FORMAT:
        raise InputError(f"not a {PREPROCESS_FORMAT} file", path=path)
    return record


def prepare_rows(source: str | Path, run_dir: Path, cfg: Config, modality: Modality,
                 options: ReadOptions, reuse: bool = False) -> np.ndarray:
    """Training rows for ``fit``: read ``source``, fit the preprocessing (or, with ``reuse``:
    a resumed run, the run's stored one), store it, and return ``(N, *sample_shape)`` float32
    rows. A new run never reuses the ``preprocess.json`` a failed run left."""
    samples = read_samples(modality, source, options)
    path = Path(run_dir) / PREPROCESS_FILE
    if reuse and path.is_file():
        record = load_preprocess(run_dir)
    else:
        record = {"state": modality.io.fit(samples, cfg), "modality": modality.name}
        save_preprocess(Path(run_dir), modality.name, samples, record["state"])
    return transform_samples(modality, samples, record, source, path)


def transform_samples(modality: Modality, samples: Samples, record: dict[str, Any],
                      source: str | Path, record_path: str | Path) -> np.ndarray:
    """The run's stored preprocessing (``record`` from ``record_path``) applied to
    ``samples``: a record that does not fit them (another modality, a damaged or foreign
    ``preprocess.json``) is an :class:`InputError` naming ``record_path``."""
    if record.get("modality") not in (None, modality.name):
        raise InputError(f"is for modality '{record.get('modality')}', not "
                         f"'{modality.name}'", path=record_path)
    try:
        return modality.io.transform(samples, record["state"], str(source))
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise InputError(f"damaged or foreign preprocessing, does not apply to {source} "
                         f"({exc.__class__.__name__}: {str(exc)[:200]})", path=record_path) from None


def read_run_input(run: Any, source: str | Path, options: ReadOptions
                   ) -> tuple[Samples, np.ndarray, dict[str, Any]]:
    """``embed`` / ``generate`` of an image / tabular run: ``(samples, preprocessed rows, the
    run's preprocess record)``. The label column a table run was trained with is used when
    neither ``--label-column`` nor ``--obs-key`` is given, so it is never read as a feature."""
    record = load_preprocess(run.run_dir)
    stored = record.get("label_key")
    if stored and options.label_column is None and options.obs_key is None:
        fmt = record.get("source_format")
        if fmt in ("csv", "tsv") and _table_suffix(Path(source)):
            options = ReadOptions(label_column=stored, label_optional=True)
    samples = read_samples(run.modality, source, options)
    rows = transform_samples(run.modality, samples, record, source,
                             Path(run.run_dir) / PREPROCESS_FILE)
    return samples, rows, record


def open_text(path: Path) -> Any:
    """Open a text file, gunzipping ``.gz`` (UTF-8, universal newlines)."""
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")
