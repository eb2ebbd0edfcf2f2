"""``diffaug evaluate`` on files: read the embeddings (or a training-free reference's features)
and their labels, check the held-out set fits, score with the probes of
:mod:`diffaug_genomics.evaluate`, and give the report as JSON and as a table.

What an input is and how its labels are found: :mod:`diffaug_genomics.evaluate_inputs`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from diffaug_genomics.errors import InputError
from diffaug_genomics.progress import LOG

if TYPE_CHECKING:
    from rich.table import Table

    from diffaug_genomics.io.samples import ReadOptions


def parse_protocols(text: str) -> tuple[str, ...]:
    """``"linear,knn"`` -> ``("linear", "knn")``; an unknown or empty list is an
    :class:`InputError` listing the protocols."""
    from diffaug_genomics.evaluate import PROTOCOLS

    protocols = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise InputError(f"--protocol: unknown protocol(s) {', '.join(bad) or '(none)'}; "
                         f"choose from {', '.join(PROTOCOLS)}")
    return protocols


def evaluate_files(embeddings: Path, *, labels: Path | None = None, test: Path | None = None,
                   protocols: tuple[str, ...], folds: int = 5, seed: int = 0,
                   pca: int | None = None, features: str | None = None,
                   options: ReadOptions | None = None) -> dict[str, Any]:
    """The report of ``diffaug evaluate``: the probes' scores of ``embeddings`` (cross-validated,
    or trained on it and scored on ``test``), with ``inputs`` saying what was read.

    Labels come from ``labels`` (a TSV; rows without one are left out with a warning line),
    else from each file. ``features`` scores the sequences' training-free features instead
    (``kmer:K``, ...); ``pca`` reduces to that many components first. Bad input (no labels, a
    dimension that differs between the two files, ...) is an :class:`InputError` naming the
    file."""
    from diffaug_genomics.evaluate import evaluate_embeddings
    from diffaug_genomics.io.samples import ReadOptions

    options = options or ReadOptions()
    mapping = None
    if labels is not None:
        from diffaug_genomics.io.labels import read_labels

        mapping = read_labels(labels)
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
    return report


def report_json(report: dict[str, Any]) -> str:
    """The report as the JSON ``-o`` writes (strict: no NaN)."""
    return json.dumps(report, indent=2, allow_nan=False) + "\n"


def _load(path: Path, mapping: dict[str, str] | None, labels_path: Path | None,
          options: ReadOptions, features: str | None = None
          ) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Embeddings (or raw features), labels aligned by id, and JSON-safe attributes of one
    file; rows without a label in ``--labels`` are left out with one warning line."""
    from diffaug_genomics.evaluate_inputs import (
        no_labels_error,
        read_for_evaluation,
        select_labelled,
    )

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


def report_table(report: dict[str, Any]) -> Table:
    """The report as a table: one row per protocol, mean ± sd of each score."""
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
