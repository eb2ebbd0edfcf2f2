"""``diffaug generate``: synthetic positives of every record, as FASTA."""

from __future__ import annotations

from pathlib import Path

import typer
from diffaug_genomics_cli.options import start, threads_option


def generate(
    run_dir: Path = typer.Argument(..., help="Run directory written by `diffaug fit --augment diffaug`."),
    source: str = typer.Argument(..., metavar="INPUT", help="FASTA ('-' for stdin) or HDF5 from `diffaug encode`; images or a table for image / tabular runs."),
    output: str = typer.Option(..., "-o", "--output", metavar="PATH", help="Where to write; its name picks the format (see above; '-' for standard output)."),
    per_sequence: int = typer.Option(1, "--per-sequence", "-k", min=1, help="Positives per input record (K)."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Sampler steps (default: the run's bank.steps)."),
    strength: float | None = typer.Option(None, "--strength", min=0.0, max=1.0, help="1 = from pure noise; < 1 = SDEdit from the noised source (default: the run's)."),
    guidance: float | None = typer.Option(None, "--guidance", help="Classifier-free guidance scale (default: the run's)."),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Samples per denoiser pass."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
    shard: str | None = typer.Option(None, "--shard", metavar="i/N", help="Process only shard i of N (0-based) into OUTPUT.shard-0000i-of-0000N; default from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT in a job array. Join with `diffaug merge`."),
    label_column: str | None = typer.Option(None, "--label-column", help="CSV/TSV: column of labels (not a feature)."),
    obs_key: str | None = typer.Option(None, "--obs-key", help=".h5ad: obs column of labels."),
    backbone: str | None = typer.Option(None, "--backbone", help="package.module:factory of the run's third-party modality."),
    threads: int | None = threads_option(),
) -> None:
    """Generate K positives of every input record with a trained run, in input order.

    The output's name picks the format. DNA: FASTA (.fa, .fasta, .fna; + .gz or .bgz; '-'
    for standard output), headers >ID|posK source=ID:START-END steps=S strength=X, each
    positive as long as the part of its record it covers; or one-hot HDF5 (.h5). Images and
    tables: .npy (N*K samples) or .h5 (/samples, /source_ids).
    """
    from diffaug_genomics.generate import generate as run_generate
    from diffaug_genomics.progress import LOG
    from diffaug_genomics.shards import Shard

    part = Shard.parse(shard) if shard is not None else Shard.from_env()
    start(threads)
    LOG.info("%s", run_generate(run_dir, source, output, per_sequence=per_sequence, steps=steps,
                                strength=strength, guidance_scale=guidance, seed=seed,
                                batch_size=batch_size, device=device, force=force,
                                shard=part, label_column=label_column, obs_key=obs_key,
                                backbone=backbone).line())
