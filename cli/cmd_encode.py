"""``diffaug encode``: FASTA (path or ``-``) or BED regions to one-hot HDF5 (``onehot/1``)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from diffaug_genomics_cli.options import start, threads_option


class Policy(str, Enum):
    pad = "pad"
    crop = "crop"
    center = "center"
    window = "window"


def encode(
    input: str | None = typer.Argument(
        None, metavar="INPUT", show_default=False,
        help="FASTA file (plain, gzip or bgzip; detected by content), or '-' for stdin."),
    output: Path = typer.Option(..., "-o", "--output", help="Output HDF5 file (.h5).",
                                show_default=False),
    length: int | None = typer.Option(
        None, "--length", help="Positions per row (L). Default: the longest record.",
        show_default=False),
    policy: Policy = typer.Option(
        Policy.pad, "--policy", help="pad|crop: keep the first L bases, pad on the right; "
        "center: crop/pad symmetrically; window: tile records (see --stride)."),
    stride: int | None = typer.Option(None, "--stride", help="Window step (default L).",
                                      show_default=False),
    labels: Path | None = typer.Option(None, "--labels", help="TSV with columns id, label.",
                                       show_default=False),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
    bed: Path | None = typer.Option(None, "--bed", help="BED regions to extract (with --genome).",
                                    show_default=False),
    genome: Path | None = typer.Option(None, "--genome", help="Genome FASTA for --bed "
                                       "(indexed with pyfaidx; .fai built if missing).",
                                       show_default=False),
    strand_aware: bool = typer.Option(False, "--strand-aware",
                                      help="Reverse-complement '-' strand BED regions."),
    pad_out_of_bounds: bool = typer.Option(
        False, "--pad-out-of-bounds", help="Pad BED regions past a chromosome end with N "
        "instead of failing."),
    threads: int | None = threads_option(),
) -> None:
    """Encode FASTA or BED regions to one-hot HDF5 (N, L, 4) uint8, channels A, C, G, T.

    BED regions longer or shorter than --length are centre-cropped or centre-padded.
    """
    from diffaug_genomics.errors import InputError

    if length is not None and length <= 0:
        raise InputError(f"--length must be a positive integer (got {length})")
    if stride is not None and stride <= 0:
        raise InputError(f"--stride must be a positive integer (got {stride})")
    if bed is not None:
        if input is not None:
            raise InputError("give either INPUT.fa or --bed/--genome, not both")
        if genome is None:
            raise InputError("--bed needs --genome")
        if length is None:
            raise InputError("--bed needs --length")
        if policy is not Policy.pad or stride is not None:
            raise InputError("--policy/--stride do not apply to --bed (regions are centred)")
    else:
        if input is None:
            raise InputError("missing input: INPUT.fa[.gz], '-' for stdin, or --bed/--genome")
        if genome is not None or strand_aware:
            raise InputError("--genome and --strand-aware only apply with --bed")
        if pad_out_of_bounds:
            raise InputError("--pad-out-of-bounds only applies with --bed")
    start(threads)
    if bed is not None:
        from diffaug_genomics.encode import encode_bed

        summary = encode_bed(bed, genome, output, length=length, strand_aware=strand_aware,
                             pad_out_of_bounds=pad_out_of_bounds, labels=labels, force=force)
    else:
        from diffaug_genomics.encode import encode_fasta

        summary = encode_fasta(input, output, length=length, policy=policy.value, stride=stride,
                               labels=labels, force=force)
    typer.echo(summary.line(), err=True)
