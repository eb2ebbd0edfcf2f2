"""``diffaug evaluate``: score embeddings against labels (linear, kNN, SVC, KMeans)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from diffaug_genomics_cli.options import start, threads_option

if TYPE_CHECKING:
    from diffaug_genomics.io.samples import ReadOptions


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
    from diffaug_genomics.errors import InputError
    from diffaug_genomics.io.atomic import atomic_output, check_output
    from diffaug_genomics.output_formats import JSON, output_format

    start(threads)
    to_stdout = output is not None and str(output) == "-"
    if output is not None:
        output_format(output, (JSON,), "evaluate", {"json": "the JSON report"},
                      (embeddings, labels, test))
    if output is not None and not to_stdout:
        check_output(output, force, inputs=(embeddings, labels, test))
    protocols = tuple(p.strip() for p in protocol.split(",") if p.strip())

    from diffaug_genomics.evaluate import PROTOCOLS, evaluate_embeddings

    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise InputError(f"--protocol: unknown protocol(s) {', '.join(bad) or '(none)'}; "
                         f"choose from {', '.join(PROTOCOLS)}")

    mapping = None
    if labels is not None:
        from diffaug_genomics.io.labels import read_labels

        mapping = read_labels(labels)
    from diffaug_genomics.io.samples import ReadOptions

    options = ReadOptions(label_column, obs_key)
    if features is not None:
        from diffaug_genomics.evaluate_inputs import parse_features

        parse_features(features)  # a bad spec fails before any file is read
    train_x, train_y, train_attrs = _load(embeddings, mapping, labels, options, features)
    test_x = test_y = None
    test_attrs: dict[str, Any] | None = None
    if test is not None:
        test_x, test_y, test_attrs = _load(test, mapping, labels, options, features)
        if test_x.shape[1] != train_x.shape[1]:
            raise InputError(f"embedding dimension D = {test_x.shape[1]} does not match "
                             f"D = {train_x.shape[1]} of {embeddings}", path=test)
    try:
        report = evaluate_embeddings(train_x, train_y, test_x, test_y, protocols=protocols,
                                     folds=folds, seed=seed, pca_dim=pca)
    except InputError as exc:
        if exc.path is None:  # name the file the offending labels came from
            raise InputError(exc.reason, path=labels or embeddings) from None
        raise
    report["inputs"] = {
        "embeddings": str(embeddings), "test": None if test is None else str(test),
        "labels": None if labels is None else str(labels),
        "embeddings_attrs": train_attrs, "test_attrs": test_attrs, "features": features,
    }

    from rich.console import Console

    console = Console(stderr=to_stdout)
    console.print(_table(report))
    for w in report["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    if to_stdout:
        sys.stdout.write(text)
    elif output is not None:
        with atomic_output(output, force, inputs=(embeddings, labels, test)) as tmp:
            tmp.write_text(text, encoding="utf-8")


def _load(path: Path, mapping: dict[str, str] | None, labels_path: Path | None,  # noqa: ANN202
          options: ReadOptions, features: str | None = None):
    """Embeddings (or raw features), labels aligned by id, and JSON-safe attributes of one
    file; rows without a label in ``--labels`` are left out with one warning line."""
    from diffaug_genomics.evaluate_inputs import (
        no_labels_error,
        read_for_evaluation,
        select_labelled,
    )
    from diffaug_genomics.progress import LOG

    emb, ids, file_labels, attrs = read_for_evaluation(path, options, features)
    if mapping is not None:
        emb, y, note = select_labelled(emb, ids, mapping, labels_path, path)
        if note:
            LOG.warning("%s", note)
    elif file_labels is not None:
        y = file_labels
    else:
        raise no_labels_error(path)
    return emb, y, _json_safe(attrs)


def _json_safe(attrs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if hasattr(value, "tolist"):
            value = value.tolist()
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            value = str(value)
        out[str(key)] = value
    return out


def _table(report: dict[str, Any]):  # noqa: ANN202 - rich imported lazily
    from rich.table import Table

    if report["mode"] == "fixed-split":
        split = f"fixed split, train {report['n']} / test {report['n_test']}"
    else:
        split = f"{report['folds']}-fold CV, N = {report['n']}"
    dim = f"D = {report['dim']}"
    if report.get("pca_dim") is not None:
        dim = (f"PCA {report['input_dim']} -> {report['dim']} (fitted on the training input, "
               f"{100 * report['pca_explained_variance']:.1f} % of its variance)")
    table = Table(title=f"{split}, {dim}, {len(report['classes'])} classes, "
                        f"chance {report['chance']:.3f}")
    metrics = ["accuracy", "macro_f1", "nmi", "ari"]
    table.add_column("protocol")
    for m in metrics:
        table.add_column(m, justify="right")
    table.add_column("seconds", justify="right")
    for name, entry in report["protocols"].items():
        cells = []
        for m in metrics:
            s = entry["metrics"].get(m)
            if s is None:
                cells.append("-")
            elif s["sd"] is None:
                cells.append(f"{s['mean']:.3f}")
            else:
                cells.append(f"{s['mean']:.3f} ± {s['sd']:.3f}")
        table.add_row(name, *cells, f"{entry['seconds']:.1f}")
    return table
