"""FASTA or BED regions to one-hot HDF5 (``diffaug-genomics/onehot/1``, see :mod:`.io.h5`).

The encoding rules (A/C/G/T one channel each, U as T, N and other IUPAC codes all-zero, and
the ``pad`` / ``crop`` / ``center`` / ``window`` policies that make every record rows of exactly
``length`` positions) are :mod:`diffaug_genomics.io.onehot`'s, which documents them; the
alphabet is :mod:`diffaug_genomics.alphabet`. ``/lengths`` holds how many positions of a row are
the record's own sequence (N counts, padding does not).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from diffaug_genomics.errors import InputError
from diffaug_genomics.io.atomic import atomic_output, check_output
from diffaug_genomics.io.bed import open_genome, region_sequences
from diffaug_genomics.io.fasta import ReadStats, read_fasta
from diffaug_genomics.io.onehot import (
    EncodedChunk,
    check_length,
    check_policy,
    encode_records,
)
from diffaug_genomics.io.signals import cleanup_on_signals
from diffaug_genomics.output_formats import HDF5, output_format
from diffaug_genomics.progress import progress
from diffaug_genomics.record_changes import RecordChanges, read_parts


@dataclass
class EncodeSummary(RecordChanges):
    """What an encode run did (the counts of :class:`RecordChanges`, plus the output, the
    bytes read and the time); :meth:`line` is the one-line report the CLI prints."""

    output: str = ""
    input_bytes: int = 0
    seconds: float = 0.0

    @property
    def n_fraction(self) -> float:
        """Fraction of written sequence positions that are N or another ambiguity code."""
        return self.n_ambiguous / self.n_bases if self.n_bases else 0.0

    def line(self) -> str:
        """``encoded 500 records -> 500 rows (L=200, pad): ...`` with counts, time and rate,
        and what reading changed (U read as T, soft-masking, empty records skipped)."""
        secs = max(self.seconds, 1e-9)
        changed = "".join(f"; {part}" for part in read_parts(self.stats))
        return (f"encoded {self.records} records -> {self.rows} rows (L={self.length}, "
                f"{self.policy}): {self.padded} padded, {self.cropped} cropped, "
                f"{self.windows} windows, N fraction {self.n_fraction:.4f}{changed}; "
                f"{self.seconds:.2f} s, {self.records / secs:,.0f} records/s, "
                f"{self.input_bytes / secs / 1e6:.1f} MB/s -> {self.output}")



def _check_input(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError("no such file", path=p)
    if p.is_dir():
        raise InputError(f"is a directory, not a {what}", path=p)
    if not os.access(p, os.R_OK):
        raise InputError("not readable (permission denied)", path=p)
    return p


def _write(chunks: Iterable[EncodedChunk], tmp: Path, summary: EncodeSummary,
           attrs: Mapping[str, object], labels: Mapping[str, str] | None,
           labels_path: str | Path | None, on_chunk: Callable[[], None],
           final_attrs: Callable[[], Mapping[str, object]]) -> None:
    """Append every chunk (and its labels) to a new ``onehot/1`` file at ``tmp``."""
    from diffaug_genomics.io.onehot_writer import OneHotWriter

    with OneHotWriter(tmp, summary.length, attrs) as writer:
        for chunk in chunks:
            row_labels = None
            if labels is not None:
                row_labels = []
                for rec in chunk.record_ids:  # window rows take their record's label
                    label = labels.get(rec)
                    if label is None:
                        raise InputError(f"no label for record '{rec}'", path=labels_path,
                                         record=rec)
                    row_labels.append(label)
            writer.append(chunk.onehot, chunk.ids, chunk.lengths, labels=row_labels,
                          starts=chunk.starts)
            summary.add(chunk)
            on_chunk()
        if writer.n == 0:
            raise InputError("no records to write", path=summary.source)
        writer.set_attrs(**final_attrs())


def _spool_stdin(directory: Path) -> Path:
    """Copy standard input to a temporary file in ``directory`` (bytes as given, gzip kept);
    removed again if the copy fails."""
    fd, name = tempfile.mkstemp(prefix=".diffaug-stdin.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1 << 22)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


@cleanup_on_signals  # SIGTERM / SIGHUP also remove the spool of standard input
def encode_fasta(input: str | Path, output: str | Path, *, length: int | None = None,
                 policy: str = "pad", stride: int | None = None,
                 labels: str | Path | None = None, force: bool = False,
                 show_progress: bool = True) -> EncodeSummary:
    """Encode a FASTA file (plain, gzip or bgzip; ``"-"`` for stdin) to ``onehot/1`` HDF5.

    Args:
        input: FASTA path or ``"-"``.
        output: the ``.h5`` file, written atomically (temporary name, then rename).
        length: L; default the longest record (found by a first pass; standard input is spooled
            to a temporary file beside the output for that). Required for ``window``.
        policy: ``pad`` | ``crop`` | ``center`` | ``window`` (see the module docstring).
        stride: window step (``window`` only; default L).
        labels: TSV with columns ``id``, ``label``; every record id must be present (windows
            take their record's label). Written to ``/labels``.
        force: replace an existing output.
        show_progress: progress bar on a terminal / log lines otherwise.

    Returns:
        :class:`EncodeSummary`.

    Raises:
        InputError: bad options, input or labels; nothing is left at ``output``.
    """
    start = time.perf_counter()
    if length is not None:
        length = check_length(length)
    check_policy(policy, stride)
    if policy == "window" and length is None:
        raise InputError("--policy window needs --length")
    inputs = (input, labels)
    output_format(output, (HDF5,), "encode", {"hdf5": "one-hot HDF5"}, inputs)
    out = check_output(output, force, inputs)
    from_stdin = str(input) == "-"
    name = "<stdin>" if from_stdin else str(input)
    if not from_stdin:
        _check_input(input, "FASTA file")
    label_map = None
    if labels is not None:
        from diffaug_genomics.io.labels import read_labels

        label_map = read_labels(labels)

    spool: Path | None = None
    source: str | Path = input
    try:
        if from_stdin and length is None:
            spool = _spool_stdin(out.parent)
            source = spool
        size = None if from_stdin and spool is None else Path(source).stat().st_size / 1e6
        passes = 2 if length is None else 1
        with progress(f"encoding {Path(name).name}", total=None if size is None else
                      size * passes, unit="MB", enabled=show_progress) as bar:
            if length is None:  # first pass: the longest record
                scan = ReadStats()
                length = 0
                for _, seq in read_fasta(source, stats=scan, name=name, skip_empty=True):
                    length = max(length, len(seq))
                bar.advance(scan.bytes_read / 1e6)
                if length == 0:
                    raise InputError(f"no records to write (every one of the "
                                     f"{len(scan.empty_records)} records is empty)", path=name)
            stats = ReadStats()
            summary = EncodeSummary(output=str(out), source=name, length=length, policy=policy,
                                    stats=stats)
            attrs = {"policy": policy, "source": name if from_stdin else Path(input).name,
                     "stride": (stride or length) if policy == "window" else None}
            records = read_fasta(source, stats=stats, name=name, skip_empty=True)
            chunks = encode_records(records, length, policy, stride)
            done = [0]

            def advance() -> None:
                bar.advance((stats.bytes_read - done[0]) / 1e6)
                done[0] = stats.bytes_read

            with atomic_output(out, force, inputs) as tmp:
                _write(chunks, tmp, summary, attrs, label_map, labels, advance,
                       lambda: {"source_sha256": stats.sha256})
    finally:
        if spool is not None:
            spool.unlink(missing_ok=True)
    summary.input_bytes = stats.bytes_read
    summary.seconds = time.perf_counter() - start
    return summary


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def encode_bed(bed: str | Path, genome: str | Path, output: str | Path, *, length: int,
               strand_aware: bool = False, pad_out_of_bounds: bool = False,
               labels: str | Path | None = None, force: bool = False,
               show_progress: bool = True) -> EncodeSummary:
    """Extract BED regions from an indexed genome (pyfaidx) and encode them like a FASTA.

    Regions are 0-based half-open (BED). The id is the name column, else ``chrom:start-end``.
    Regions longer or shorter than ``length`` go through the ``center`` policy (crop or N-pad
    symmetrically around the region's middle; the genome flanks are not read). ``-`` strand
    regions are reverse-complemented only with ``strand_aware``. A region past the chromosome
    end is an error naming the BED line, or padded with N when ``pad_out_of_bounds``.
    The genome's ``.fai`` is built beside it when missing.

    Raises:
        InputError: naming the BED line for end < start, an unknown chromosome, a region off
            the end, a duplicate name; or the genome when it cannot be indexed.
    """
    start = time.perf_counter()
    length = check_length(length)
    inputs = (bed, genome, labels, f"{genome}.fai")
    output_format(output, (HDF5,), "encode", {"hdf5": "one-hot HDF5"}, inputs)
    out = check_output(output, force, inputs)
    bed_path = _check_input(bed, "BED file")
    genome_path = _check_input(genome, "genome FASTA")
    label_map = None
    if labels is not None:
        from diffaug_genomics.io.labels import read_labels

        label_map = read_labels(labels)
    fasta = open_genome(genome_path)
    counts = {"out_of_bounds": 0, "reverse_complemented": 0}
    summary = EncodeSummary(output=str(out), source=str(bed_path), length=length,
                            policy="center")
    try:
        records = region_sequences(bed_path, fasta, strand_aware=strand_aware,
                               pad_out_of_bounds=pad_out_of_bounds, counts=counts)
        chunks = encode_records(records, length, "center")
        attrs = {"policy": "center", "source": bed_path.name, "genome": genome_path.name,
                 "strand_aware": bool(strand_aware),
                 "pad_out_of_bounds": bool(pad_out_of_bounds)}
        with progress(f"encoding {bed_path.name}", unit="regions",
                      enabled=show_progress) as bar, atomic_output(out, force, inputs) as tmp:
            _write(chunks, tmp, summary, attrs, label_map, labels,
                   lambda: bar.advance(summary.records - bar.done),
                   lambda: {"source_sha256": _sha256_file(bed_path), **counts})
    finally:
        fasta.close()
    summary.input_bytes = summary.n_bases
    summary.seconds = time.perf_counter() - start
    return summary
