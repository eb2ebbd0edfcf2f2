"""``diffaug report``: one self-contained HTML page (and PNG figures) describing a run."""

from __future__ import annotations

from pathlib import Path

import typer
from diffaug_genomics_cli.options import start, threads_option


def report(
    run_dir: Path = typer.Argument(..., help="Run directory written by `diffaug fit` (finished, in progress or stopped)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="HTML file to write (default RUN_DIR/report.html); the figures go to the folder of the same name (report/*.png)."),
    embeddings: Path | None = typer.Option(None, "--embeddings", help="Embeddings HDF5 written by `diffaug embed` with this run (default: computed here from the run's data)."),
    labels: Path | None = typer.Option(None, "--labels", help="TSV with columns `id` and `label`: colours the map and scores the embedding (default: the data's /labels)."),
    input_path: Path | None = typer.Option(None, "--input", help="The data (FASTA, one-hot HDF5, images, table) when the run's data.h5 / recorded input is not at hand."),
    max_points: int = typer.Option(5000, "--max-points", help="Rows (a fixed random sample) for the embedding map, positives and scores."),
    tsne: bool = typer.Option(False, "--tsne", help="Embedding map by t-SNE (scikit-learn) instead of PCA."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing report."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample of rows, k-means, t-SNE and the folds."),
    obs_key: str | None = typer.Option(None, "--obs-key", help=".h5ad runs: the obs column that colours the map and scores the embedding (default: the run's)."),
    label_column: str | None = typer.Option(None, "--label-column", help="CSV/TSV runs: the column of labels (default: the run's)."),
    threads: int | None = threads_option(),
) -> None:
    """Write a report of a run: one HTML page plus its figures as PNG.

    Learning curves, diagnostics, embedding map, generated positives and scores of a run
    (finished, in progress or stopped), as one HTML file with inline images (no network, no
    JavaScript) plus the PNG figures."""
    from diffaug_genomics.report.build import build_report, require_matplotlib

    require_matplotlib()  # exit 2 with the install line before anything else
    from diffaug_genomics.progress import LOG

    start(threads)
    summary = build_report(run_dir, output, embeddings=embeddings, labels=labels,
                           input_path=input_path, max_points=max_points, force=force,
                           tsne=tsne, seed=seed, label_key=obs_key or label_column)
    LOG.info("%s", summary.line())
