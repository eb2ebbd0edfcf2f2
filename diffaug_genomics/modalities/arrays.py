"""Input and output of array modalities (images, tables, array plugins): a reader into
:class:`~diffaug_genomics.io.samples.Samples`, a preprocessing fitted on the training samples
and stored in the run directory, and generated positives written as arrays.

A modality with an ``io`` (:class:`SampleIO`) reads its input into samples (values in the
data's own units, ids, labels when the input carries them), fits a preprocessing on the
training samples (``fit``), and turns samples into model-layout rows (``transform``). ``fit``
stores the fitted state as JSON in the run directory (:data:`PREPROCESS`), so ``embed``
and ``generate`` apply exactly the same transform, and ``generate`` maps generated rows back
to the data's units (``inverse``).

``embed`` writes what the output's name asks for (:mod:`diffaug_genomics.embeddings_out`).

``generate`` maps positives back to the input's units with the run's stored preprocessing
(pixel values in the input's range and dtype, unscaled features) and writes them, K per source
in input order:

- ``.npy``: ``(N * K, ...)``, each sample shaped like an input sample (``(H, W, C)`` images,
  ``(D,)`` rows);
- ``.h5`` / ``.hdf5``: ``/samples`` as above, ``/source_ids`` and ``/source_index`` (which
  input sample each positive comes from), attributes naming the run and sampler settings.

The image and tabular modalities share :func:`rows_to_model`, :func:`pca_knn_features` and
:func:`check_no_dna_options` from here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from diffaug_genomics.errors import ConfigError, InputError
from diffaug_genomics.guards import require_finite
from diffaug_genomics.io.atomic import atomic_output, create_hdf5
from diffaug_genomics.io.h5 import STR_DTYPE
from diffaug_genomics.io.samples import ReadOptions, Samples, table_suffix
from diffaug_genomics.modalities.detect import detect_modality
from diffaug_genomics.modalities.interface import (
    Chunk,
    ModalityIO,
    PositivesWriter,
    RunInput,
    Sampling,
    TrainedRun,
    TrainingData,
)
from diffaug_genomics.output_formats import HDF5, NPY, OutputFormat
from diffaug_genomics.run_files import PREPROCESS, RunPaths

if TYPE_CHECKING:
    from diffaug_genomics.config import Config

PREPROCESS_FORMAT = "diffaug-genomics/preprocess/1"


def read_samples(io: SampleIO, modality: str, source: str | Path, options: ReadOptions
                 ) -> Samples:
    """Read ``source`` with the reader of ``io`` (the IO of the modality named ``modality``);
    checks it exists and holds samples."""
    if str(source) == "-":
        raise InputError(f"modality '{modality}' cannot read standard input; give a path")
    path = Path(source)
    if not path.exists():
        raise InputError("no such file or folder", path=path)
    try:
        kind = detect_modality(path)
    except InputError:
        kind = None  # the modality's own reader says what is wrong
    if kind == "dna":
        raise InputError(f"is DNA (FASTA or one-hot HDF5), but this is a '{modality}' run "
                         "or input: give it the kind of data it was trained on", path=path)
    samples = io.read(path, options)
    if len(samples.ids) != len(samples.values):
        raise InputError(f"reader returned {len(samples.ids)} ids for {len(samples.values)} "
                         "samples", path=path)
    return samples


def save_preprocess(run_dir: Path, modality: str, samples: Samples, state: dict[str, Any]) -> None:
    """Write :data:`PREPROCESS` into the run directory (atomically)."""
    record = {"format": PREPROCESS_FORMAT, "modality": modality,
              "source_format": samples.source_format, "label_key": samples.label_key,
              "state": state}
    with atomic_output(RunPaths(run_dir).preprocess, force=True) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def load_preprocess(run_dir: Path) -> dict[str, Any]:
    """The run's preprocessing record (see :func:`save_preprocess`)."""
    path = RunPaths(run_dir).preprocess
    if not path.is_file():
        raise InputError(f"{PREPROCESS} is missing: the run has no stored preprocessing",
                         path=run_dir)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable ({exc.__class__.__name__})", path=path) from None
    if record.get("format") != PREPROCESS_FORMAT:
        raise InputError(f"not a {PREPROCESS_FORMAT} file", path=path)
    return record


def prepare_rows(source: str | Path, run_dir: Path, cfg: Config, io: SampleIO, modality: str,
                 options: ReadOptions, reuse: bool = False) -> np.ndarray:
    """Training rows for ``fit``: read ``source``, fit the preprocessing (or, with ``reuse``:
    a resumed run, the run's stored one), store it, and return ``(N, *sample_shape)`` float32
    rows. A new run never reuses the ``preprocess.json`` a failed run left."""
    samples = read_samples(io, modality, source, options)
    path = RunPaths(run_dir).preprocess
    if reuse and path.is_file():
        record = load_preprocess(run_dir)
    else:
        record = {"state": io.fit(samples, cfg), "modality": modality}
        save_preprocess(Path(run_dir), modality, samples, record["state"])
    return transform_samples(io, modality, samples, record, source, path)


def transform_samples(io: SampleIO, modality: str, samples: Samples, record: dict[str, Any],
                      source: str | Path, record_path: str | Path) -> np.ndarray:
    """The run's stored preprocessing (``record`` from ``record_path``) applied to
    ``samples``: a record that does not fit them (another modality, a damaged or foreign
    ``preprocess.json``) is an :class:`InputError` naming ``record_path``."""
    if record.get("modality") not in (None, modality):
        raise InputError(f"is for modality '{record.get('modality')}', not "
                         f"'{modality}'", path=record_path)
    try:
        return io.transform(samples, record["state"], str(source))
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise InputError(f"damaged or foreign preprocessing, does not apply to {source} "
                         f"({exc.__class__.__name__}: {str(exc)[:200]})", path=record_path) from None


def read_run_input(io: SampleIO, run: TrainedRun, source: str | Path, options: ReadOptions
                   ) -> tuple[Samples, np.ndarray, dict[str, Any]]:
    """``embed`` / ``generate`` of an image / tabular run: ``(samples, preprocessed rows, the
    run's preprocess record)``. The label column a table run was trained with is used when
    neither ``--label-column`` nor ``--obs-key`` is given, so it is never read as a feature."""
    record = load_preprocess(run.run_dir)
    stored = record.get("label_key")
    if stored and options.label_column is None and options.obs_key is None:
        fmt = record.get("source_format")
        if fmt in ("csv", "tsv") and table_suffix(Path(source)):
            options = ReadOptions(label_column=stored, label_optional=True)
    samples = read_samples(io, run.modality, source, options)
    rows = transform_samples(io, run.modality, samples, record, source,
                             RunPaths(run.run_dir).preprocess)
    return samples, rows, record




# ---------------------------------------------------------------------------------- outputs
@dataclass
class SampleGenerateSummary:
    n_sources: int
    n_generated: int
    rms_to_source: float
    seconds: float

    def line(self) -> str:
        per_k = 1000 * self.seconds / max(self.n_generated, 1)
        return (f"generated {self.n_generated} positives of {self.n_sources} samples: RMS "
                f"difference to the source {self.rms_to_source:.3f} (model units), "
                f"{per_k:.1f} s per 1000 samples")


class ArrayPositives(PositivesWriter):
    """Generated positives kept in memory, mapped back to the input's units and written as one
    ``.npy`` or HDF5 array when the ``with`` block ends (module docstring)."""

    def __init__(self, io: SampleIO, run: TrainedRun, inp: RunInput, source: str | Path,
                 output: str | Path, fmt: OutputFormat, sampling: Sampling, force: bool,
                 inputs: tuple) -> None:
        self.io, self.run, self.inp, self.source, self.output = io, run, inp, source, output
        self.fmt = fmt
        self.sampling, self.force, self.inputs = sampling, force, inputs
        self.parts: list[np.ndarray] = []
        self.sq_sum, self.count, self.n_written = 0.0, 0, 0

    def add(self, chunk: Chunk, lo: int, hi: int, sources: torch.Tensor,
            samples: torch.Tensor) -> None:
        sample = self.run.from_diffusion(samples)
        self.sq_sum += float(((sample - sources) ** 2).mean(
            dim=tuple(range(1, sources.dim()))).sqrt().sum())
        self.count += len(sources)
        self.parts.append(sample.cpu().numpy())

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self._write()

    def _write(self) -> None:
        run, s, output = self.run, self.sampling, self.output
        rows, record, samples = (self.inp.info[k] for k in ("rows", "record", "samples"))
        gen_rows = (np.concatenate(self.parts) if self.parts
                    else np.zeros((0, *rows.shape[1:]), np.float32))
        values = self.io.inverse(gen_rows, record["state"])
        require_finite(values, f"generated samples for {output}")
        self.n_written = len(values)
        source_index = np.repeat(np.arange(len(rows)), s.per_sequence)
        with atomic_output(output, self.force, self.inputs) as tmp:
            if self.fmt.name == "npy":
                with open(tmp, "wb") as fh:
                    np.save(fh, values)
            else:
                with create_hdf5(tmp) as f:
                    f.create_dataset("samples", data=values)
                    f.create_dataset("source_index", data=source_index.astype(np.int64))
                    f.create_dataset("source_ids", dtype=STR_DTYPE, data=np.asarray(
                        [samples.ids[i] for i in source_index], dtype=object))
                    f.attrs.update({"schema": "diffaug-genomics/generated/1",
                                    "run_dir": str(Path(run.run_dir).resolve()),
                                    "modality": run.modality, "steps": s.steps,
                                    "strength": s.strength, "guidance_scale": s.guidance_scale,
                                    "seed": s.seed, "per_sample": s.per_sequence})

    def summary(self, seconds: float) -> SampleGenerateSummary:
        return SampleGenerateSummary(self.inp.total, self.n_written,
                                     self.sq_sum / max(self.count, 1), seconds)


# ------------------------------------------------------------------------------ SampleIO
@dataclass(frozen=True)
class SampleIO(ModalityIO):
    """A modality's input handling from four functions (see the module docstring); the rest
    of :class:`~diffaug_genomics.modalities.interface.ModalityIO` follows from them."""

    read: Callable[[Path, ReadOptions], Samples]
    """Read an input path into :class:`Samples`; bad input raises :class:`InputError`."""
    fit: Callable[[Samples, Config], dict[str, Any]]
    """Fit the preprocessing on training samples: a JSON-serialisable state."""
    transform: Callable[[Samples, dict[str, Any], str], np.ndarray]
    """(samples, state, source name for errors) -> rows ``(N, *sample_shape)`` float32."""
    inverse: Callable[[np.ndarray, dict[str, Any]], np.ndarray]
    """Model-layout rows (e.g. generated) -> values in the data's units, like ``Samples.values``."""

    def training_data(self, modality: str, source: str | Path, run_dir: Path, cfg: Config,
                      options: ReadOptions, reuse: bool) -> TrainingData:
        rows = prepare_rows(source, run_dir, cfg, self, modality, options, reuse=reuse)
        return TrainingData(rows, source, f"{len(rows)} samples of shape {tuple(rows.shape[1:])}")

    def open_input(self, run: TrainedRun, source: str | Path, options: ReadOptions) -> RunInput:
        samples, rows, record = read_run_input(self, run, source, options)
        return RunInput([Chunk(rows, samples.ids, samples.labels)], total=len(rows),
                        info={"samples": samples, "rows": rows, "record": record})

    def embedding_attrs(self, run: TrainedRun) -> dict[str, Any]:
        return {"modality": run.modality}

    positives_formats = (NPY, HDF5)

    def positives_writer(self, run: TrainedRun, inp: RunInput, source: str | Path,
                         output: str | Path, fmt: OutputFormat, sampling: Sampling, force: bool,
                         inputs: tuple) -> PositivesWriter:
        return ArrayPositives(self, run, inp, source, output, fmt, sampling, force, inputs)

    def raw_features(self, modality: str, path: Path, options: ReadOptions
                     ) -> tuple[np.ndarray, list[str], list[str] | None, dict[str, Any]]:
        """The raw values, flattened per sample: the "raw features" reference."""
        samples = read_samples(self, modality, path, options)
        x = np.asarray(samples.values, dtype=np.float32).reshape(len(samples.values), -1)
        return x, samples.ids, samples.labels, {"raw_features": True, "modality": modality,
                                               "source_format": samples.source_format}


# ------------------------------------------------------- shared by the image and tabular modalities
def rows_to_model(rows: np.ndarray) -> torch.Tensor:
    """Preprocessed float rows -> a contiguous float32 tensor of the same shape (no copy when
    they are already float32 and contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))


def pca_knn_features(rows: Any, cfg: Config, seed: int) -> np.ndarray:
    """kNN-mixup's ``pca`` space: rows flattened and reduced to ``knn.pca_dim`` components."""
    from diffaug_genomics.positives.pca import pca_features

    return pca_features(np.asarray(rows), cfg.knn.pca_dim, seed)


def check_no_dna_options(cfg: Config) -> None:
    """Options that only DNA understands must be off."""
    if cfg.encoder.rc:
        raise ConfigError(f"config key 'encoder.rc': reverse-complement invariance is for DNA, "
                          f"not modality '{cfg.modality}'")
