"""``diffaug merge``: join the shard files of a sharded ``embed`` or ``generate``."""

from __future__ import annotations

from pathlib import Path

import typer


def merge(
    shards: list[Path] | None = typer.Argument(None, metavar="SHARD", help="Shard files (default: every OUTPUT.shard-*-of-* beside OUTPUT).", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="The merged file (the -o given to embed/generate).", show_default=False),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
) -> None:
    """Join shards in input order; a missing or duplicated shard is an error naming it.

    Embeddings (HDF5) must come from the same run and input; FASTA shards are concatenated.
    """
    from diffaug_genomics.merge import merge as run_merge
    from diffaug_genomics.progress import LOG, configure_logging

    configure_logging()
    LOG.info("%s", run_merge(output, list(shards or []), force=force).line())
