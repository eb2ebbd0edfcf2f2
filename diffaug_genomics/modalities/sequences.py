"""DNA's input and output: sequences read in chunks from a diffaug one-hot HDF5 file or FASTA,
embeddings written as ``embeddings/1`` HDF5, generated positives written as FASTA.

FASTA is encoded on the fly with the same code as ``diffaug encode`` (streaming, chunked), so
``fit``, ``embed`` and ``generate`` accept either form. Generated positives are argmax-decoded;
each positive has its source's own length, and its header names the source and the sampler
settings: ``>{id}|pos{k} source={id} steps={S} strength={s}``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import torch

from diffaug_genomics.alphabet import decode
from diffaug_genomics.errors import InputError
from diffaug_genomics.io.atomic import atomic_output
from diffaug_genomics.io.fasta import read_fasta
from diffaug_genomics.io.h5 import (
    is_hdf5,
    open_onehot,
    read_embeddings,
    read_onehot,
    read_strings,
)
from diffaug_genomics.io.onehot import encode_records
from diffaug_genomics.io.onehot_writer import OneHotWriter
from diffaug_genomics.io.samples import ReadOptions
from diffaug_genomics.modalities.interface import (
    Chunk,
    ModalityIO,
    PositivesWriter,
    RunInput,
    Sampling,
    TrainedRun,
    TrainingData,
)
from diffaug_genomics.output_formats import FASTA, HDF5, OutputFormat, open_text_output
from diffaug_genomics.progress import LOG
from diffaug_genomics.record_changes import RecordChanges, row_region
from diffaug_genomics.run_files import RunPaths

if TYPE_CHECKING:
    from diffaug_genomics.config import Config

READ_ROWS = 4096


def iter_chunks(source: str | Path, length: int | None = None, policy: str = "center",
                stride: int | None = None, rows: int = READ_ROWS,
                changes: RecordChanges | None = None) -> Iterator[Chunk]:
    """Stream ``source`` (HDF5 from ``diffaug encode``, FASTA path, or ``-`` for stdin) in chunks.

    FASTA is encoded to ``length`` bp with ``policy`` (empty records skipped); what that
    changed is counted in ``changes``. HDF5 rows are returned as stored.
    """
    if str(source) != "-" and is_hdf5(source):
        with open_onehot(source) as f:
            n = f["onehot"].shape[0]
            has_labels = "labels" in f
            stored_policy = str(f.attrs.get("policy", "pad"))
            for start in range(0, n, rows):
                stop = min(start + rows, n)
                labels = read_strings(f["labels"], start, stop) if has_labels else None
                starts = f["starts"][start:stop] if "starts" in f else None
                yield Chunk(read_onehot(f, source, start, stop),
                            read_strings(f["ids"], start, stop),
                            labels, f["lengths"][start:stop], stored_policy, starts)
        return
    if length is None:
        raise InputError("FASTA input needs a sequence length (the run's data.length)", path=source)
    stats = changes.stats if changes is not None else None
    records = read_fasta(source, stats=stats, skip_empty=True)
    for enc in encode_records(records, length, policy, stride, chunk_records=rows):
        if changes is not None:
            changes.add(enc)
        yield Chunk(enc.onehot, list(enc.ids), None, np.asarray(enc.lengths), policy,
                    enc.starts, list(enc.record_ids))


def chunk_regions(chunk: Chunk) -> list[str]:
    """The part of its record each row of a sequence chunk covers (``id:start-end``,
    0-based half-open; the row id where that cannot be known: :func:`row_region`)."""
    out = []
    length = chunk.rows.shape[1]
    for i, row_id in enumerate(chunk.ids):
        own = int(chunk.lengths[i])
        if chunk.starts is not None:
            start: int | None = int(chunk.starts[i])
        elif chunk.policy in ("pad", "crop") or own < length:
            start = 0  # these keep the record's first bases, or all of it
        else:
            start = None
        record = chunk.record_ids[i] if chunk.record_ids is not None else None
        if chunk.policy == "window" and record is None and chunk.starts is not None:
            record = row_id.rsplit(":", 1)[0]
        out.append(row_region(row_id, record, start, own, chunk.policy) or row_id)
    return out


def count_rows(source: str | Path, length: int | None, policy: str, stride: int | None) -> int:
    """How many rows ``source`` yields (HDF5: stored rows; FASTA: rows after encoding)."""
    if str(source) == "-":
        raise InputError("--shard needs an input file (every shard reads it), not stdin")
    if is_hdf5(source):
        with open_onehot(source) as f:
            return int(f["onehot"].shape[0])
    return sum(len(chunk.ids) for chunk in iter_chunks(source, length, policy, stride))


def row_offset(policy: str, length: int, own: int) -> int:
    """Where a record's own bases start in a stored row of ``length`` bp (``own`` of them)."""
    return (length - own) // 2 if policy == "center" and own < length else 0


@dataclass
class GenerateSummary:
    n_sources: int
    n_generated: int
    identity: float
    gc_generated: float
    gc_source: float
    seconds: float
    skipped: Path | None = None

    def line(self) -> str:
        if self.skipped is not None:
            return f"{self.skipped} is complete already: skipped"
        per_k = 1000 * self.seconds / max(self.n_generated, 1)
        return (f"generated {self.n_generated} positives of {self.n_sources} sequences: mean "
                f"identity to source {self.identity:.3f}, GC {self.gc_generated:.3f} (source "
                f"{self.gc_source:.3f}), {per_k:.1f} s per 1000 sequences")


class SequencePositives(PositivesWriter):
    """Generated positives, K per source in input order, each cut to its source's own bases:
    FASTA (``-``: standard output; ``.gz`` / ``.bgz`` compressed) or one-hot HDF5
    (``onehot/1``, ids ``{id}|pos{k}``, each row placed as its source's). Every record names
    the part of its source record it covers (``source=ID:START-END``). Keeps the mean
    identity to the source and GC contents."""

    def __init__(self, run: TrainedRun, source: str | Path, output: str | Path,
                 fmt: OutputFormat, sampling: Sampling, force: bool, inputs: tuple) -> None:
        self.length, self.source, self.sampling = run.sample_shape[-1], source, sampling
        self._stack = ExitStack()
        self.out: TextIO | None = None
        self.h5: OneHotWriter | None = None
        if fmt.stdout:
            self.out = sys.stdout
        else:
            tmp = self._stack.enter_context(atomic_output(output, force, inputs))
            if fmt.name == "hdf5":
                self.h5 = self._stack.enter_context(OneHotWriter(tmp, self.length, {
                    "policy": run.config.data.policy, "source": str(source),
                    "generated_by": str(Path(run.run_dir).resolve()), "steps": sampling.steps,
                    "strength": sampling.strength, "per_sequence": sampling.per_sequence}))
            else:
                self.out = self._stack.enter_context(open_text_output(tmp, fmt.compression))
        self.n_sources = self.n_generated = 0
        self.identity = self.gc_generated = self.gc_source = 0.0

    def __exit__(self, *exc: object) -> bool | None:
        if exc[0] is None and self.out is not None:
            self.out.flush()
        return self._stack.__exit__(*exc)

    def check(self, chunk: Chunk) -> None:
        if chunk.rows.shape[1] != self.length:
            raise InputError(f"rows are {chunk.rows.shape[1]} bp but the run was trained "
                             f"on {self.length} bp", path=self.source)

    def add(self, chunk: Chunk, lo: int, hi: int, sources: torch.Tensor,
            samples: torch.Tensor) -> None:
        k, s = self.sampling.per_sequence, self.sampling
        scores = samples.permute(0, 2, 1).cpu().numpy()  # (n*K, L, 4)
        seqs = decode(scores)
        sources_text = decode(chunk.rows[lo:hi])
        regions = chunk_regions(chunk.slice(lo, hi))
        for i in range(hi - lo):
            sid, own = chunk.ids[lo + i], int(chunk.lengths[lo + i])
            off = row_offset(chunk.policy, self.length, own)
            src = sources_text[i][off:off + own]
            gc_src = _gc(src)
            for j in range(k):
                seq = seqs[i * k + j][off:off + own]
                if self.out is not None:
                    self.out.write(f">{sid}|pos{j} source={regions[i]} steps={s.steps} "
                                   f"strength={s.strength:g}\n{seq}\n")
                self.identity += _identity(seq, src)
                self.gc_generated += _gc(seq)
                self.gc_source += gc_src
                self.n_generated += 1
        if self.h5 is not None:
            self._add_rows(chunk, lo, hi, scores, regions)
        self.n_sources += hi - lo

    def _add_rows(self, chunk: Chunk, lo: int, hi: int, scores: np.ndarray,
                  regions: list[str]) -> None:
        """One-hot rows of the positives, zero where their source row is padding."""
        k = self.sampling.per_sequence
        rows = np.zeros(scores.shape, np.uint8)
        np.put_along_axis(rows, scores.argmax(axis=2)[..., None], 1, axis=2)
        lengths = np.repeat(np.asarray(chunk.lengths[lo:hi], np.int32), k)
        for r, own in enumerate(lengths):
            off = row_offset(chunk.policy, self.length, int(own))
            rows[r, :off] = 0
            rows[r, off + int(own):] = 0
        ids = [f"{chunk.ids[lo + i]}|pos{j}" for i in range(hi - lo) for j in range(k)]
        starts = np.zeros(len(ids), np.int64)  # each positive is a record of its own
        self.h5.append(rows, ids, lengths, starts=starts)  # type: ignore[union-attr]
        del regions

    def summary(self, seconds: float) -> GenerateSummary:
        n = max(self.n_generated, 1)
        return GenerateSummary(self.n_sources, self.n_generated, self.identity / n,
                               self.gc_generated / n, self.gc_source / n, seconds)


def _identity(a: str, b: str) -> float:
    if not a:
        return 1.0
    x, y = np.frombuffer(a.encode(), np.uint8), np.frombuffer(b.encode(), np.uint8)
    return float((x == y).mean())


def _gc(s: str) -> float:
    called = sum(s.count(c) for c in "ACGT")
    return (s.count("G") + s.count("C")) / called if called else 0.0


def _known_rows(source: str | Path) -> int | None:
    """Rows of an HDF5 input (known without reading it; FASTA: None)."""
    if str(source) != "-" and is_hdf5(source):
        with open_onehot(source) as f:
            return int(f["onehot"].shape[0])
    return None


def prepare_data(source: str | Path, run_dir: Path, cfg: Config, reuse: bool = False) -> Path:
    """The HDF5 file to train on: ``source`` itself, or FASTA encoded into ``run_dir/data.h5``
    (an existing ``data.h5`` is reused only with ``reuse``: a resumed run, whose input was
    checked to be the same; a new run re-encodes what a failed run may have left)."""
    if str(source) != "-":
        path = Path(source)
        if not path.exists():
            raise InputError("no such file", path=path)
        if path.is_dir():
            raise InputError("is a directory, expected FASTA or a diffaug HDF5 file", path=path)
        if is_hdf5(path):
            return path
    data = RunPaths(run_dir).data
    if data.exists() and reuse:
        return data
    from diffaug_genomics.encode import encode_fasta

    summary = encode_fasta(source, data, length=cfg.data.length, policy=cfg.data.policy,
                           stride=cfg.data.stride, force=True)
    LOG.info("encoded %s -> %s: %s", source, data, summary.line())
    return data


class SequenceIO(ModalityIO):
    """FASTA / one-hot HDF5 in (streamed, shardable), ``embeddings/1`` HDF5 and FASTA out."""

    noun = "sequences"
    rate_unit = "seq"
    progress_unit = ("seq", "seq")
    shardable = True

    def training_data(self, modality: str, source: str | Path, run_dir: Path, cfg: Config,
                      options: ReadOptions, reuse: bool) -> TrainingData:
        path = prepare_data(source, run_dir, cfg, reuse=reuse)
        with open_onehot(path) as f:  # the rows only: fit needs no ids or labels
            rows = read_onehot(f, path)
        return TrainingData(rows, path, f"{len(rows)} sequences of {rows.shape[1]} bp")

    positives_formats = (FASTA, HDF5)

    def open_input(self, run: TrainedRun, source: str | Path, options: ReadOptions) -> RunInput:
        data, length = run.config.data, run.sample_shape[-1]
        name = "<stdin>" if str(source) == "-" else str(source)
        changes = RecordChanges(name, length, data.policy)
        return RunInput(iter_chunks(source, length, data.policy, data.stride, changes=changes),
                        total=_known_rows(source), info={"changes": changes})

    def count_rows(self, run: TrainedRun, source: str | Path) -> int:
        data = run.config.data
        return count_rows(source, run.sample_shape[-1], data.policy, data.stride)

    def positives_writer(self, run: TrainedRun, inp: RunInput, source: str | Path,
                         output: str | Path, fmt: OutputFormat, sampling: Sampling, force: bool,
                         inputs: tuple) -> PositivesWriter:
        return SequencePositives(run, source, output, fmt, sampling, force, inputs)

    def raw_features(self, modality: str, path: Path, options: ReadOptions
                     ) -> tuple[np.ndarray, list[str], list[str] | None, dict[str, Any]]:
        # sequences are not features (--features kmer:K scores them): let the embeddings
        # reader say what the file is not
        return read_embeddings(path)


SEQUENCE_IO = SequenceIO()
"""The input and output of DNA (and of plugin modalities of sequences: ``io=SEQUENCE_IO``)."""
