"""``diffaug inspect``: summarise a diffaug HDF5 file (one-hot or embeddings)."""

from __future__ import annotations

from pathlib import Path

import typer


def inspect(
    file: Path = typer.Argument(..., metavar="FILE.h5", help="A file written by diffaug.",
                                show_default=False),
) -> None:
    """Print schema, N, L, label counts, sequence lengths, GC content and N fraction."""
    from diffaug_genomics.inspect import format_summary, summarize

    typer.echo(format_summary(summarize(file)))
