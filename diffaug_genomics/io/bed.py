"""BED regions and their sequences from an indexed genome (pyfaidx).

Coordinates are BED's: 0-based, half-open. The byte-level complement used for ``-`` strand
regions follows the channel order of :data:`diffaug_genomics.alphabet.ALPHABET` (A<->T, C<->G;
U -> A; ambiguity codes are kept, they encode as all-zero rows either way).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from diffaug_genomics.alphabet import ALPHABET
from diffaug_genomics.errors import InputError
from diffaug_genomics.io.fasta import VALID_BYTES

COMPLEMENT = bytes.maketrans((ALPHABET + ALPHABET.lower() + "Uu").encode(),
                             (ALPHABET[::-1] + ALPHABET[::-1].lower() + "Aa").encode())
"""``bytes.translate`` table complementing bases (reverse the bytes as well for a reverse
complement)."""


@dataclass
class BedRegion:
    """One BED line: 0-based half-open ``[start, end)`` on ``chrom``; ``line`` is 1-based."""

    line: int
    chrom: str
    start: int
    end: int
    name: str
    strand: str


def read_bed(path: str | Path) -> Iterator[BedRegion]:
    """BED regions (``chrom start end [name score strand]``, tab- or space-separated).

    Blank, ``#``, ``track`` and ``browser`` lines are skipped. The name is column 4 unless
    missing or ``.``, then ``chrom:start-end``; the strand is column 6 (``.`` when absent).

    Raises:
        InputError: naming the file and line for fewer than 3 columns, non-integer
            coordinates, a negative start, end < start, an empty region or a bad strand.
    """
    path = Path(path)
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.split("\t")
            if len(fields) < 3:
                fields = line.split()
            if len(fields) < 3:
                raise InputError("a BED line needs at least 3 columns: chrom, start, end",
                                 path=path, line=number)
            chrom = fields[0]
            try:
                start, end = int(fields[1]), int(fields[2])
            except ValueError:
                raise InputError(f"start and end must be integers (got '{fields[1]}', "
                                 f"'{fields[2]}')", path=path, line=number) from None
            if start < 0:
                raise InputError(f"negative start {start}", path=path, line=number)
            if end < start:
                raise InputError(f"end {end} is before start {start}", path=path, line=number)
            if end == start:
                raise InputError("empty region (end == start)", path=path, line=number)
            name = fields[3] if len(fields) > 3 and fields[3] not in ("", ".") else \
                f"{chrom}:{start}-{end}"
            strand = fields[5] if len(fields) > 5 else "."
            if strand not in ("+", "-", "."):
                raise InputError(f"strand must be '+', '-' or '.' (got '{strand}')", path=path,
                                 line=number)
            yield BedRegion(number, chrom, start, end, name, strand)


def open_genome(genome: str | Path):  # noqa: ANN201 - pyfaidx.Fasta, imported lazily
    """Open an indexed genome FASTA with pyfaidx (raw strings, original case).

    The ``.fai`` index is built beside the genome when missing; if that directory is not
    writable the error says so. bgzip genomes need their ``.gzi`` (pyfaidx); plain gzip is not
    supported by pyfaidx and is reported as an indexing error.
    """
    import pyfaidx

    genome = Path(genome)
    fai = Path(str(genome) + ".fai")
    if not fai.exists() and not os.access(genome.parent, os.W_OK):
        raise InputError(f"no index {fai.name} and the genome's directory is not writable to "
                         "build it; run `samtools faidx` on a writable copy or add the .fai",
                         path=genome)
    try:
        return pyfaidx.Fasta(str(genome), as_raw=True, sequence_always_upper=False,
                             read_long_names=False, rebuild=False)
    except Exception as exc:  # pyfaidx raises many kinds on malformed or plain-gzip genomes
        raise InputError(f"cannot index the genome ({exc.__class__.__name__}: {exc})",
                         path=genome) from None


def region_sequences(bed: str | Path, fasta, *, strand_aware: bool = False,  # noqa: ANN001
                     pad_out_of_bounds: bool = False,
                     counts: dict[str, int] | None = None) -> Iterator[tuple[str, bytes]]:
    """``(id, sequence bytes)`` for each BED region of ``fasta`` (from :func:`open_genome`).

    ``-`` strand regions are reverse-complemented when ``strand_aware``; a region past the
    chromosome end is an error, or filled with N when ``pad_out_of_bounds``. ``counts`` (if
    given) receives ``out_of_bounds`` and ``reverse_complemented`` tallies.

    Raises:
        InputError: naming the BED file and line for an unknown chromosome, a region off the
            end, a byte that is not a nucleotide in the genome, or a duplicate region name.
    """
    bed = Path(bed)
    counts = counts if counts is not None else {}
    counts.setdefault("out_of_bounds", 0)
    counts.setdefault("reverse_complemented", 0)
    seen: dict[str, int] = {}
    for region in read_bed(bed):
        if region.chrom not in fasta:
            raise InputError(f"unknown chromosome '{region.chrom}' (not in the genome)",
                             path=bed, line=region.line, record=region.name)
        size = len(fasta[region.chrom])
        end = region.end
        if end > size:
            if not pad_out_of_bounds:
                raise InputError(f"region {region.chrom}:{region.start}-{region.end} runs off "
                                 f"the chromosome end ({size} bp); use --pad-out-of-bounds to "
                                 "pad with N", path=bed, line=region.line, record=region.name)
            end = size
            counts["out_of_bounds"] += 1
        seq = fasta[region.chrom][region.start:end].encode("ascii") if end > region.start else b""
        seq += b"N" * (region.end - region.start - len(seq))
        if seq.translate(None, VALID_BYTES):
            bad = seq.translate(None, VALID_BYTES)[:1].decode("latin-1")
            raise InputError(f"invalid character '{bad}' in the genome sequence of this region",
                             path=bed, line=region.line, record=region.name)
        if strand_aware and region.strand == "-":
            seq = seq[::-1].translate(COMPLEMENT)
            counts["reverse_complemented"] += 1
        if region.name in seen:
            raise InputError(f"duplicate region name '{region.name}' (first on line "
                             f"{seen[region.name]})", path=bed, line=region.line,
                             record=region.name)
        seen[region.name] = region.line
        yield region.name, seq
