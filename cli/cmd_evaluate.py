"""``diffaug evaluate``: score embeddings against labels (linear, kNN, SVC, KMeans)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from diffaug_genomics_cli.options import start, threads_option


def evaluate(
    embeddings: Path = typer.Argument(..., help="Embeddings HDF5 or .h5ad written by `diffaug "
                                      "embed`; an image or tabular input scores its raw "
                                      "features.", show_default=False),
    labels: Path | None = typer.Option(
        None, "--labels", help="TSV with columns `id` and `label` (header line); overrides the "
        "files' /labels. Covers the --test ids too."),
    test: Path | None = typer.Option(
        None, "--test", help="Embeddings of a held-out set: train on EMBEDDINGS, score TEST "
        "(a fixed split); without it, stratified k-fold cross-validation."),
    protocol: str = typer.Option("linear,knn,svc,kmeans", "--protocol",
                                 help="Comma-separated protocols: linear, knn, svc, kmeans."),
    folds: int = typer.Option(5, "--folds", help="Folds of the cross-validation."),
    seed: int = typer.Option(0, "--seed", help="Seed of the folds, KMeans and the classifiers."),
    output: Path | None = typer.Option(None, "-o", "--output",
                                       help="Write the JSON report here ('-' for stdout, the "
                                       "table then goes to stderr)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --output."),
    label_column: str | None = typer.Option(None, "--label-column",
                                            help="CSV/TSV input: the column of labels."),
    obs_key: str | None = typer.Option(None, "--obs-key", help=".h5ad input: the obs column of "
                                       "labels (default: the one embed stored)."),
    features: str | None = typer.Option(
        None, "--features", help="Score DNA sequences (FASTA or `diffaug encode` HDF5) instead "
        "of embeddings, as a training-free reference: kmer:K (k-mer frequencies, K = 1..6), "
        "ckmer:K (canonical: the mean of a sequence's and its reverse complement's), gc or "
        "onehot (flattened). Applies to --test too."),
    pca: int | None = typer.Option(
        None, "--pca", min=1, help="Reduce the features to D principal components first: PCA "
        "fitted on EMBEDDINGS only (never on --test, never with labels), the same projection "
        "applied to --test. With --features, the same-size reference for an embedding of D "
        "dimensions."),
    threads: int | None = threads_option(),
) -> None:
    """Score embeddings with labels (linear probe, kNN, RBF-SVC, KMeans).

    The probes: linear probe, kNN (k=10, cosine), RBF-SVC and KMeans (Hungarian accuracy,
    NMI, ARI). Prints a table; -o writes the JSON report.

    Labels are used only here, only to score (no model selection). With --features kmer:6 the
    same probes score the sequences' 6-mer spectrum; add --pca D for the reference of the same
    size as a D-dimensional embedding: the baseline to beat.
    """
    from diffaug_genomics.evaluate_files import (
        evaluate_files,
        parse_protocols,
        report_json,
        report_table,
    )
    from diffaug_genomics.io.atomic import atomic_output, check_output
    from diffaug_genomics.io.samples import ReadOptions
    from diffaug_genomics.output_formats import JSON, output_format

    start(threads)
    inputs = (embeddings, labels, test)
    to_stdout = output is not None and str(output) == "-"
    if output is not None:
        output_format(output, (JSON,), "evaluate", {"json": "the JSON report"}, inputs)
    if output is not None and not to_stdout:
        check_output(output, force, inputs=inputs)
    report = evaluate_files(embeddings, labels=labels, test=test,
                            protocols=parse_protocols(protocol), folds=folds, seed=seed,
                            pca=pca, features=features, options=ReadOptions(label_column, obs_key))

    from rich.console import Console

    console = Console(stderr=to_stdout)
    console.print(report_table(report))
    for w in report["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")
    if to_stdout:
        sys.stdout.write(report_json(report))
    elif output is not None:
        with atomic_output(output, force, inputs=inputs) as tmp:
            tmp.write_text(report_json(report), encoding="utf-8")
