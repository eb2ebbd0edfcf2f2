"""``diffaug inspect``: summarise a diffaug HDF5 file (one-hot or embeddings)."""

from __future__ import annotations

from pathlib import Path

import typer


def inspect(
    file: Path = typer.Argument(..., metavar="PATH", help="A file or run directory diffaug "
                                "wrote (or one it reads).", show_default=False),
) -> None:
    """Describe a file diffaug wrote: what it is and what it holds.

    One-hot HDF5: N, L, labels, lengths, GC content and N fraction; embeddings (HDF5 or
    .h5ad): N x D and provenance; run directories, positives (FASTA or HDF5), checkpoints,
    evaluate reports, tables and arrays: their kind and key facts."""
    from diffaug_genomics.inspect import format_summary, summarize

    typer.echo(format_summary(summarize(file)))
