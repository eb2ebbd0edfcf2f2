"""The run directory: the name of every file ``fit`` writes, which of them later commands read,
the lock beside it, and the format of the bank of generated positives. Every other module asks
this one (standard library only, so the lowest layers and the lock, which runs before torch is
imported, can too; reading a run's encoder is :mod:`diffaug_genomics.runs`).

Layout of ``runs/exp1`` (``fit -o runs/exp1``)::

    config.yaml        resolved configuration + record (seed, versions, input, decisions)
    data.h5            the encoded input (only when fit was given FASTA)
    preprocess.json    images and tables: the fitted preprocessing (scaling, size, features)
    checkpoints/       latest.pt (the resume point), start.pt, warmup.pt, round{r}.pt
    cache/             neighbours-{space}.npz (kNN-mixup), bank.pt or bank.npy (the bank)
    metrics.csv        one row per logged step or diagnostic
    log.txt            the log
    encoder.pt         final encoder + projection head   (written last: marks a finished run)
    generator.pt       final EMA denoiser (diffaug only)
    runs/.exp1.lock    beside the directory: the one writer's lock (:mod:`..run_lock`)

The bank of generated positives, ``(N, per_sequence, *sample_shape)`` float16, is stored as
``cache/bank.pt``, a checkpoint-format dict :data:`BANK_FORMAT` ``{"format", "round",
"bank"}`` (a bank written before ``bank.per_sequence`` existed holds ``(N, *sample_shape)``:
:func:`bank_from_record` adds the axis), or, above 1 GiB, as ``cache/bank.npy``, a plain
float16 C-order NumPy file written block by block (:func:`write_bank_header`,
:func:`bank_data_offset`; :mod:`diffaug_genomics.train.bank_store` reads it by rows).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from diffaug_genomics.errors import InputError

CONFIG = "config.yaml"
DATA = "data.h5"
PREPROCESS = "preprocess.json"
LOG_FILE = "log.txt"
METRICS = "metrics.csv"
ENCODER = "encoder.pt"
GENERATOR = "generator.pt"
CHECKPOINTS = "checkpoints"
CACHE = "cache"
LATEST = "latest.pt"
BANK_FORMAT = "diffaug-genomics/bank/1"

INPUT_FILES = (ENCODER, GENERATOR, CONFIG, PREPROCESS, DATA, METRICS, LOG_FILE)
"""Files of a run directory (an input of ``embed`` / ``generate``) that no output may replace;
everything under :data:`INPUT_FOLDERS` too. Outputs beside them (``report.html``,
``embeddings.h5``) are allowed."""
INPUT_FOLDERS = (CHECKPOINTS, CACHE)
MARKERS = (CONFIG, ENCODER, CHECKPOINTS, LOG_FILE, METRICS)
"""Any of these makes a folder a run directory (finished or not) to the input classifier."""


@dataclass(frozen=True)
class RunPaths:
    """The files of the run directory ``root``."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def data(self) -> Path:
        """The encoded input of a run fitted on FASTA."""
        return self.root / DATA

    @property
    def preprocess(self) -> Path:
        return self.root / PREPROCESS

    @property
    def log(self) -> Path:
        return self.root / LOG_FILE

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def encoder(self) -> Path:
        return self.root / ENCODER

    @property
    def generator(self) -> Path:
        return self.root / GENERATOR

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def cache(self) -> Path:
        return self.root / CACHE

    @property
    def latest(self) -> Path:
        """The checkpoint a resumed run continues from."""
        return self.checkpoints / LATEST

    @property
    def start(self) -> Path:
        """The encoder at its start (a candidate for export), before any step."""
        return self.checkpoints / "start.pt"

    def stage_end(self, kind: str, round_: int) -> Path:
        """The copy of ``latest.pt`` kept at the end of a warm-up / encoder stage."""
        return self.checkpoints / ("warmup.pt" if kind == "warmup" else f"round{round_}.pt")

    def neighbours(self, tag: str) -> Path:
        """The kNN-mixup neighbours of the space ``tag`` (``kmer``, ``embedding-r2``...)."""
        return self.cache / f"neighbours-{tag}.npz"

    @property
    def bank(self) -> Path:
        """The bank of generated positives kept in memory (:data:`BANK_FORMAT`)."""
        return self.cache / "bank.pt"

    @property
    def bank_file(self) -> Path:
        """The bank when it is too large for host memory (read by rows)."""
        return self.cache / "bank.npy"

    @property
    def folders(self) -> tuple[Path, ...]:
        """The directory and its sub-folders, as ``fit`` creates them."""
        return (self.root, self.checkpoints, self.cache)

    @property
    def final_files(self) -> tuple[Path, ...]:
        """What a finished run exports."""
        return (self.encoder, self.generator)

    def holds_run(self) -> bool:
        """Whether a run was started here (a final encoder or a checkpoint exists)."""
        return self.encoder.exists() or self.latest.exists()


def is_run_input(relative: Path) -> bool:
    """Whether ``relative`` (a path inside a run directory) is one of the run's own files."""
    return (relative.as_posix() in INPUT_FILES
            or (len(relative.parts) > 0 and relative.parts[0] in INPUT_FOLDERS))


def lock_path(target: str | Path) -> Path:
    """``runs/exp1`` -> ``/abs/runs/.exp1.lock`` (symbolic links resolved: one lock per path,
    however it is spelled)."""
    resolved = Path(target).resolve()
    if not resolved.name:
        raise InputError("cannot lock the root of the file system", path=target)
    return resolved.with_name(f".{resolved.name}.lock")


def lock_break_path(lock: Path) -> Path:
    """The second lock held while a stale ``lock`` is removed: ``.NAME.lock.break``."""
    return lock.with_name(lock.name + ".break")


# ------------------------------------------------------------------------ the bank's format
def bank_record(round_: int, bank: Any) -> dict[str, Any]:
    """What ``cache/bank.pt`` holds: the refresh ``round_`` and the bank (a float16 tensor)."""
    return {"format": BANK_FORMAT, "round": round_, "bank": bank}


def bank_from_record(record: dict[str, Any], sample_shape: tuple[int, ...] | None) -> Any:
    """The bank of a loaded ``cache/bank.pt`` as ``(N, per_sequence, *sample_shape)``: a bank
    written before ``bank.per_sequence`` existed, ``(N, *sample_shape)``, gains the draw axis."""
    bank = record["bank"]
    if sample_shape is not None and bank.dim() == len(sample_shape) + 1:
        return bank.unsqueeze(1)
    return bank


def write_bank_header(fh: BinaryIO, shape: tuple[int, ...]) -> None:
    """Start a ``cache/bank.npy`` of ``shape`` in ``fh``; the float16 rows follow in order."""
    import numpy as np

    np.lib.format.write_array_header_2_0(
        fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)),
             "fortran_order": False, "shape": tuple(shape)})


def bank_data_offset(path: Path, fd: int, shape: tuple[int, ...] | None) -> tuple[int, tuple]:
    """``(offset of the rows, stored shape)`` of the ``cache/bank.npy`` open as ``fd``, checked
    to be float16, C order, of ``shape`` (any shape when None) and complete; otherwise an
    :class:`InputError` naming the file."""
    import numpy as np

    with os.fdopen(os.dup(fd), "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            stored, fortran, dtype = read(fh)
        except (ValueError, OSError, SyntaxError) as exc:
            raise InputError(f"not a bank of generated positives ({exc})", path=path) from None
        offset = fh.tell()
    stored = tuple(stored)
    if (shape is not None and stored != tuple(shape)) or fortran or dtype != np.float16:
        raise InputError(f"bank file holds {dtype} {stored}, expected float16 {tuple(shape or ())}"
                         ": not this run's bank; delete it to regenerate the bank", path=path)
    if os.fstat(fd).st_size != offset + 2 * math.prod(stored):
        raise InputError("bank file has the wrong size (truncated?); delete it to regenerate "
                         "the bank", path=path)
    return offset, stored
