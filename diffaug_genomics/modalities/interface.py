"""The input and output half of the modality interface: :class:`ModalityIO` (what ``fit``,
``embed``, ``generate`` and ``evaluate`` ask of a modality) and the values passing through it,
among them :class:`TrainedRun`, what it is told of a trained run.

Implementations: :class:`~diffaug_genomics.modalities.sequences.SequenceIO` (DNA: FASTA /
one-hot HDF5 in, FASTA out) and :class:`~diffaug_genomics.modalities.arrays.SampleIO` (images,
tables and array plugins: a reader plus a fitted preprocessing). This module knows neither the
:class:`~diffaug_genomics.modalities.base.Modality` that holds an IO nor how a run is loaded:
the interface is below both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from diffaug_genomics.io.samples import ReadOptions
from diffaug_genomics.output_formats import Format, OutputFormat

if TYPE_CHECKING:
    from diffaug_genomics.config import Config


@dataclass(frozen=True)
class TrainedRun:
    """What a modality's input and output are told of a trained run (``embed``, ``generate``):
    its directory, configuration, modality's name, the model-layout shape of one sample, and
    the map from the diffusion's space back to model layout (the modality's
    ``from_diffusion``). Built by :attr:`diffaug_genomics.runs.FinishedRun.trained`."""

    run_dir: Path
    config: Config
    modality: str
    sample_shape: tuple[int, ...]
    from_diffusion: Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Chunk:
    """A block of input rows in the run's stored layout: ``rows (n, ...)`` (sequences: one-hot
    ``(n, L, 4) uint8``; images / tables: preprocessed ``float32`` rows), ids, labels (or None).

    Sequences also carry each record's own length (``lengths (n,)``), the policy that
    placed it in its row (``center`` rows start at ``(L - length)//2``) and, where known,
    where each row begins in its record (``starts (n,)``) and that record's id.
    """

    rows: np.ndarray
    ids: list[str]
    labels: list[str] | None
    lengths: np.ndarray | None = None
    policy: str = "pad"
    starts: np.ndarray | None = None
    record_ids: list[str] | None = None

    @property
    def onehot(self) -> np.ndarray:
        """Sequence chunks: the one-hot rows ``(n, L, 4) uint8`` (same as :attr:`rows`)."""
        return self.rows

    def slice(self, lo: int, hi: int) -> Chunk:
        """Rows ``[lo, hi)`` of this chunk."""
        def part(values: Any) -> Any:
            return None if values is None else values[lo:hi]

        return Chunk(self.rows[lo:hi], self.ids[lo:hi], part(self.labels), part(self.lengths),
                     self.policy, part(self.starts), part(self.record_ids))


@dataclass
class RunInput:
    """An input opened for a finished run: its chunks (read lazily where the modality streams),
    the number of rows when known up front (progress), and what writing outputs needs to know
    of it (the ``Samples`` read and the run's preprocessing record, for arrays)."""

    chunks: Iterable[Chunk]
    total: int | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingData:
    """What ``fit`` trains on: ``rows (N, ...)`` in the stored layout, the file they are read
    from (FASTA input: the ``data.h5`` encoded from it), and a phrase for the log
    (``"500 sequences of 200 bp"``)."""

    rows: np.ndarray
    path: str | Path
    what: str


@dataclass(frozen=True)
class Sampling:
    """Sampler settings of ``generate``: positives per source, DDIM steps, SDEdit strength,
    guidance scale, seed."""

    per_sequence: int
    steps: int
    strength: float
    guidance_scale: float
    seed: int


class PositivesWriter(AbstractContextManager):
    """Receives generated positives batch by batch and writes them (``with`` block: the file is
    complete, or absent, when it ends)."""

    def check(self, chunk: Chunk) -> None:  # noqa: B027 - optional hook
        """Refuse a chunk the run cannot generate from (raises :class:`InputError`)."""

    @abstractmethod
    def add(self, chunk: Chunk, lo: int, hi: int, sources: torch.Tensor,
            samples: torch.Tensor) -> None:
        """Positives of rows ``[lo, hi)`` of ``chunk``: ``sources (n*K, ...)`` (each source
        repeated K times, model layout) and ``samples (n*K, ...)`` in the diffusion's space."""

    @abstractmethod
    def summary(self, seconds: float) -> Any:
        """What was written, with a ``line()`` for the log."""


class ModalityIO(ABC):
    """A modality's input and output handling (see the module docstring)."""

    noun = "samples"
    """What one input row is called in summaries (``sequences``, ``samples``)."""
    rate_unit = "samples"
    """Unit of the embedding rate in ``embed`` 's summary (``seq/s``, ``samples/s``)."""
    progress_unit: tuple[str | None, str] = (None, "sample")
    """Progress-bar units of ``embed`` and ``generate`` (None: no bar)."""
    shardable = False
    """Whether ``embed`` / ``generate`` accept ``--shard`` (which needs :meth:`count_rows`)."""

    @abstractmethod
    def training_data(self, modality: str, source: str | Path, run_dir: Path, cfg: Config,
                      options: ReadOptions, reuse: bool) -> TrainingData:
        """``fit`` 's rows of ``source`` for the modality named ``modality``, prepared in
        ``run_dir`` (DNA: FASTA encoded into ``data.h5``; arrays: the preprocessing fitted and
        stored; where: :mod:`diffaug_genomics.run_files`). ``reuse``: what the run directory
        holds is this input's (a resumed run, or a rank reading what rank 0 wrote)."""

    @abstractmethod
    def open_input(self, run: TrainedRun, source: str | Path, options: ReadOptions) -> RunInput:
        """Open ``source`` as rows of ``run`` (its length or preprocessing); bad input raises
        :class:`InputError`."""

    def count_rows(self, run: TrainedRun, source: str | Path) -> int:
        """How many rows :meth:`open_input` yields, without keeping them (for ``--shard``)."""
        raise NotImplementedError

    def embedding_attrs(self, run: TrainedRun) -> dict[str, Any]:
        """Attributes of the embeddings file beyond the run, config hash, checkpoint, source."""
        return {}

    positives_formats: tuple[Format, ...] = ()
    """The formats ``generate`` writes for this modality; the output's name picks one
    (:func:`~diffaug_genomics.output_formats.output_format`)."""

    @abstractmethod
    def positives_writer(self, run: TrainedRun, inp: RunInput, source: str | Path,
                         output: str | Path, fmt: OutputFormat, sampling: Sampling, force: bool,
                         inputs: tuple) -> PositivesWriter:
        """The writer of ``generate`` 's positives to ``output`` in ``fmt`` (one of
        :attr:`positives_formats`; ``-``: standard output where the format allows it)."""

    @abstractmethod
    def raw_features(self, modality: str, path: Path, options: ReadOptions
                     ) -> tuple[np.ndarray, list[str], list[str] | None, dict[str, Any]]:
        """``evaluate`` of an input that is not an embeddings file, for the modality named
        ``modality``: ``(features (N, F) float32, ids, labels or None, attributes)``, or an
        :class:`InputError` saying why not."""
