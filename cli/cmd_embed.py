"""``diffaug embed``: embeddings of every record with a trained run."""

from __future__ import annotations

from pathlib import Path

import typer
from diffaug_genomics_cli.options import start, threads_option


def embed(
    run_dir: Path = typer.Argument(..., help="Run directory written by `diffaug fit`."),
    source: str = typer.Argument(..., metavar="INPUT", help="FASTA ('-' for stdin) or HDF5 from `diffaug encode`; images or a table for image / tabular runs."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write: .h5 (embeddings HDF5) or .h5ad (AnnData)."),
    batch_size: int = typer.Option(512, "--batch-size", min=1, help="Sequences per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
    shard: str | None = typer.Option(None, "--shard", metavar="i/N", help="Process only shard i of N (0-based) into OUTPUT.shard-0000i-of-0000N; default from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT in a job array. Join with `diffaug merge`."),
    label_column: str | None = typer.Option(None, "--label-column", help="CSV/TSV: column of labels, stored as /labels."),
    obs_key: str | None = typer.Option(None, "--obs-key", help=".h5ad: obs column of labels, kept in the output's obs."),
    backbone: str | None = typer.Option(None, "--backbone", help="package.module:factory of the run's third-party modality."),
    threads: int | None = threads_option(),
) -> None:
    """Embed every input record with a trained run.

    The output's name picks the format: .h5 writes /embeddings (N, D) float32, /ids, /labels
    (when known) and, for DNA, /regions; .h5ad writes AnnData with obsm['X_diffaug'] (an
    .h5ad input comes back whole, with obsm['X_diffaug'] added).
    """
    from diffaug_genomics.embed import embed as run_embed
    from diffaug_genomics.progress import LOG
    from diffaug_genomics.shards import Shard

    part = Shard.parse(shard) if shard is not None else Shard.from_env()
    start(threads)
    LOG.info("%s", run_embed(run_dir, source, output, batch_size=batch_size, device=device,
                             force=force, shard=part, label_column=label_column,
                             obs_key=obs_key, backbone=backbone).line())
