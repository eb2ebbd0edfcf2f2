"""Label-based evaluation of embeddings: linear probe, kNN, RBF-SVC and KMeans clustering.

Labels are used here and nowhere else in the project, and only to score: no protocol selects a
model or a hyper-parameter with them (every setting below is fixed).

Protocols (all on the embeddings as given, ``(N, D) float32``):

``linear``
    StandardScaler then multinomial LogisticRegression (C = 1.0, lbfgs, max_iter = 5000).
``knn``
    k-nearest-neighbour vote, k = 10 (fewer if the training set is smaller), cosine distance.
``svc``
    StandardScaler then SVC with an RBF kernel (C = 1.0, gamma = "scale"), the published code's
    metric.
``kmeans``
    KMeans with k = number of classes (n_init = 10) fitted on the evaluated set (the test set in
    fixed-split mode, every sample otherwise), scored by Hungarian-matched accuracy
    (:func:`scipy.optimize.linear_sum_assignment`), NMI and ARI.

Splits: with a test set, the classifiers train on the first set and score the second (a fixed
split, e.g. by chromosome). Without one, stratified k-fold cross-validation (shuffled with
``seed``) reports the mean and sample standard deviation over folds.

Same-size references (``pca_dim``): the features are first reduced with PCA fitted on the
training rows only (never on the test set, never with labels: in cross-validation mode on each
fold's training part, and for KMeans, which sees no labels, on the rows it clusters) and the same
projection is applied to the scored rows (:func:`pca_reduce`). PCA of raw features reduced to an embedding's own size is the honest
reference for a learned embedding: a linear, label-free map of the same dimension.

Report (JSON-ready ``dict``, schema ``diffaug-genomics/evaluation/1``)::

    schema        "diffaug-genomics/evaluation/1"
    tool_version  package version;  created: ISO 8601 UTC time
    mode          "cross-validation" | "fixed-split"
    folds         number of folds (null in fixed-split mode)
    seed          seed of the fold shuffling and of KMeans / LogisticRegression / SVC
    n             samples in the (training) set;  n_test: samples in the test set, or null
    dim           embedding dimension D (after PCA when pca_dim is set)
    input_dim     dimension of the features as given (before PCA)
    pca_dim       PCA components fitted on the training rows, or null
    pca_explained_variance  fraction of the training rows' variance they keep (mean over
                  folds), or null
    classes       sorted class names (union of train and test)
    class_counts  {"train": {class: count}, "test": {class: count} | null}
    chance        fraction of the most frequent class in the scored set (test set, or all)
    protocols     {name: {"params": {...}, "seconds": float,
                          "metrics": {metric: {"mean": float, "sd": float | null,
                                               "values": [float per fold or split]}}}}
                  metrics: accuracy and macro_f1 for linear / knn / svc; accuracy, nmi and ari
                  for kmeans (which also has "fitted_on": "all" | "test"). sd is the sample
                  standard deviation (ddof = 1) over folds, null when there is one value.
    warnings      list of strings (e.g. non-converged solver, test classes unseen in training)

The command line adds ``inputs`` (paths and the embedding files' attributes).

Examples:
    >>> import numpy as np
    >>> from diffaug_genomics.evaluate import evaluate_embeddings
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(["a", "b"], 20)
    >>> x = rng.normal(size=(40, 3)) + (y == "a")[:, None] * 10
    >>> report = evaluate_embeddings(x, y, protocols=("linear",), folds=5)
    >>> report["protocols"]["linear"]["metrics"]["accuracy"]["mean"]
    1.0
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from diffaug_genomics._version import __version__
from diffaug_genomics.errors import InputError

SCHEMA = "diffaug-genomics/evaluation/1"
PROTOCOLS: tuple[str, ...] = ("linear", "knn", "svc", "kmeans")
KNN_K = 10
LOGREG_C = 1.0
LOGREG_MAX_ITER = 5000
SVC_C = 1.0
KMEANS_N_INIT = 10

Metrics = dict[str, float]


# --------------------------------------------------------------------------------------------
# protocols: each takes (train_x, train_y, test_x, test_y) and returns {metric: value}


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> Metrics:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0))}


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 test_y: np.ndarray, seed: int = 0) -> Metrics:
    """Logistic regression on standardised features (C = 1.0): accuracy and macro-F1 on test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(),
                          LogisticRegression(C=LOGREG_C, max_iter=LOGREG_MAX_ITER,
                                             random_state=seed))
    model.fit(train_x, train_y)
    return _scores(test_y, model.predict(test_x))


def knn_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
              test_y: np.ndarray, k: int = KNN_K) -> Metrics:
    """k-nearest-neighbour vote with cosine distance (k capped at the training-set size)."""
    from sklearn.neighbors import KNeighborsClassifier

    model = KNeighborsClassifier(n_neighbors=min(k, len(train_y)), metric="cosine",
                                 algorithm="brute")
    model.fit(train_x, train_y)
    return _scores(test_y, model.predict(test_x))


def svc_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
              test_y: np.ndarray, seed: int = 0) -> Metrics:
    """RBF-kernel SVC (C = 1.0, gamma = "scale") on standardised features."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    model = make_pipeline(StandardScaler(), SVC(kernel="rbf", C=SVC_C, gamma="scale",
                                                random_state=seed))
    model.fit(train_x, train_y)
    return _scores(test_y, model.predict(test_x))


def hungarian_accuracy(y_true: np.ndarray, clusters: np.ndarray) -> float:
    """Accuracy after the best one-to-one matching of clusters to classes (Hungarian method).

    Unmatched clusters (more clusters than classes) count as errors.
    """
    from scipy.optimize import linear_sum_assignment

    classes, t = np.unique(y_true, return_inverse=True)
    cluster_ids, c = np.unique(clusters, return_inverse=True)
    table = np.zeros((len(cluster_ids), len(classes)), dtype=np.int64)
    np.add.at(table, (c, t), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / len(y_true))


def kmeans_clustering(x: np.ndarray, y: np.ndarray, seed: int = 0,
                      n_init: int = KMEANS_N_INIT) -> Metrics:
    """KMeans with k = number of classes in ``y``: Hungarian accuracy, NMI and ARI."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    k = len(np.unique(y))
    clusters = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(x)
    return {"accuracy": hungarian_accuracy(y, clusters),
            "nmi": float(normalized_mutual_info_score(y, clusters)),
            "ari": float(adjusted_rand_score(y, clusters))}


PROTOCOL_PARAMS: dict[str, dict[str, Any]] = {
    "linear": {"model": "StandardScaler + LogisticRegression", "C": LOGREG_C,
               "max_iter": LOGREG_MAX_ITER},
    "knn": {"model": "KNeighborsClassifier", "k": KNN_K, "metric": "cosine"},
    "svc": {"model": "StandardScaler + SVC", "kernel": "rbf", "C": SVC_C, "gamma": "scale"},
    "kmeans": {"model": "KMeans", "k": "number of classes", "n_init": KMEANS_N_INIT,
               "accuracy": "Hungarian-matched"},
}


# --------------------------------------------------------------------------------------------
# the driver


def _as_matrix(x: Any, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{what} must be a non-empty (N, D) matrix, got shape {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise InputError(f"{what} has {int(bad.sum())} row(s) with NaN or infinite values "
                         f"(first: row {int(np.flatnonzero(bad)[0])})")
    return arr


def _as_labels(y: Any, n: int, what: str) -> np.ndarray:
    arr = np.asarray([str(v) for v in y], dtype=object)
    if arr.shape != (n,):
        raise InputError(f"{what}: {arr.shape[0]} labels for {n} embeddings")
    empty = np.flatnonzero(arr == "")
    if empty.size:
        raise InputError(f"{what}: empty label at row {int(empty[0])}")
    return arr.astype(str)


def _summary(values: list[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()),
            "sd": float(arr.std(ddof=1)) if arr.size > 1 else None,
            "values": [float(v) for v in arr]}


def pca_reduce(train_x: np.ndarray, test_x: np.ndarray | None, dim: int, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Project ``train_x (N, F)`` and ``test_x (M, F)`` on the first ``dim`` principal axes of
    ``train_x`` alone (scikit-learn PCA, no labels; centred, not whitened).

    Returns ``(train (N, dim) float32, test (M, dim) float32 or None, explained)`` where
    ``explained`` is the fraction of the training set's variance the axes keep.

    Raises:
        InputError: ``dim`` < 1 or more than ``min(N, F)``.
    """
    from sklearn.decomposition import PCA

    x = _as_matrix(train_x, "embeddings")
    if not 1 <= dim <= min(x.shape):
        raise InputError(f"--pca {dim}: must be between 1 and min(rows, features) = "
                         f"{min(x.shape)} of the training input")
    pca = PCA(n_components=dim, random_state=seed).fit(x)
    test = None if test_x is None else pca.transform(_as_matrix(test_x, "test embeddings"))
    return (pca.transform(x).astype(np.float32),
            None if test is None else test.astype(np.float32),
            float(pca.explained_variance_ratio_.sum()))


def evaluate_embeddings(train_emb: np.ndarray, train_labels: Sequence[str],
                        test_emb: np.ndarray | None = None,
                        test_labels: Sequence[str] | None = None,
                        protocols: Sequence[str] = PROTOCOLS, folds: int = 5,
                        seed: int = 0, pca_dim: int | None = None) -> dict[str, Any]:
    """Score embeddings with the label-based protocols; return the JSON-ready report.

    Args:
        train_emb: ``(N, D)`` embeddings (the only set in cross-validation mode).
        train_labels: N class labels (strings).
        test_emb: optional ``(M, D)`` embeddings of a held-out set (fixed-split mode).
        test_labels: M labels, required with ``test_emb``.
        protocols: any of ``linear``, ``knn``, ``svc``, ``kmeans`` (run in that order); a
            comma-separated string is accepted too.
        folds: folds of the stratified cross-validation (ignored with a test set).
        seed: seed of the fold shuffling, KMeans, LogisticRegression and SVC (and PCA).
        pca_dim: reduce the features to this many principal components of the training rows
            first (:func:`pca_reduce`: of ``train_emb`` with a test set, of each fold's training
            part in cross-validation; the scored rows get the same projection). None: as given.

    Returns:
        The report described in the module docstring.

    Raises:
        InputError: fewer than two classes, a class with fewer samples than folds, mismatched
            dimensions, non-finite values, an unknown protocol.
    """
    if isinstance(protocols, str):
        protocols = [p.strip() for p in protocols.split(",") if p.strip()]
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise InputError(f"unknown protocol(s) {', '.join(unknown) or '(none)'}; choose from "
                         f"{', '.join(PROTOCOLS)}")
    order = [p for p in PROTOCOLS if p in protocols]
    x = _as_matrix(train_emb, "embeddings")
    input_dim = int(x.shape[1])
    y = _as_labels(train_labels, x.shape[0], "labels")
    counts = Counter(y.tolist())
    if len(counts) < 2:
        raise InputError(f"a single class ({next(iter(counts))!r}) among the labels; "
                         "evaluation needs at least two")
    fixed = test_emb is not None
    explained: float | None = None
    report_warnings: list[str] = []
    if fixed:
        if test_labels is None:
            raise InputError("test embeddings given without test labels")
        tx = _as_matrix(test_emb, "test embeddings")
        if tx.shape[1] != x.shape[1]:
            raise InputError(f"test embeddings have D = {tx.shape[1]}, the training "
                             f"embeddings D = {x.shape[1]}")
        ty = _as_labels(test_labels, tx.shape[0], "test labels")
        test_counts = Counter(ty.tolist())
        unseen = sorted(set(test_counts) - set(counts))
        if unseen:
            report_warnings.append(f"test classes absent from training: {', '.join(unseen)}")
        splits = [(x, y, tx, ty)]
        scored = ty
    else:
        if folds < 2:
            raise InputError(f"folds must be at least 2, got {folds}")
        small = sorted((n, c) for c, n in counts.items() if n < folds)
        if small:
            n, c = small[0]
            raise InputError(f"class {c!r} has {n} sample(s), fewer than the {folds} folds "
                             "(each fold needs one of every class; lower --folds)")
        from sklearn.model_selection import StratifiedKFold

        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        splits = [(x[a], y[a], x[b], y[b]) for a, b in cv.split(x, y)]
        test_counts, scored = None, y
    cluster_x = splits[0][2] if fixed else x  # what KMeans clusters (it sees no labels)
    if pca_dim is not None:  # fitted on each split's training rows, applied to its scored rows
        reduced = [pca_reduce(a, b, pca_dim, seed) for a, _, b, _ in splits]
        explained = float(np.mean([r[2] for r in reduced]))
        splits = [(r[0], a[1], r[1], a[3]) for r, a in zip(reduced, splits, strict=True)]
        cluster_x = splits[0][2] if fixed else pca_reduce(x, None, pca_dim, seed)[0]

    protocol_reports: dict[str, Any] = {}
    for name in order:
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if name == "kmeans":
                per_split = [kmeans_clustering(cluster_x, scored, seed=seed)]
            else:
                runner = {"linear": lambda a, b, c, d: linear_probe(a, b, c, d, seed=seed),
                          "knn": knn_probe,
                          "svc": lambda a, b, c, d: svc_probe(a, b, c, d, seed=seed)}[name]
                per_split = [runner(*split) for split in splits]
        for w in caught:
            if issubclass(w.category, (UserWarning, RuntimeWarning)) or \
                    w.category.__name__ == "ConvergenceWarning":
                msg = f"{name}: {w.category.__name__}: {str(w.message).splitlines()[0]}"
                if msg not in report_warnings:
                    report_warnings.append(msg)
        entry: dict[str, Any] = {
            "params": dict(PROTOCOL_PARAMS[name]),
            "seconds": round(time.perf_counter() - start, 3),
            "metrics": {m: _summary([s[m] for s in per_split]) for m in per_split[0]},
        }
        if name == "kmeans":
            entry["fitted_on"] = "test" if fixed else "all"
        protocol_reports[name] = entry

    classes = sorted(set(counts) | set(test_counts or {}))
    scored_counts = Counter(scored.tolist())
    return {
        "schema": SCHEMA,
        "tool_version": __version__,
        "created": _now(),
        "mode": "fixed-split" if fixed else "cross-validation",
        "folds": None if fixed else folds,
        "seed": seed,
        "n": int(x.shape[0]),
        "n_test": int(splits[0][2].shape[0]) if fixed else None,
        "dim": int(splits[0][0].shape[1]),
        "input_dim": input_dim,
        "pca_dim": pca_dim,
        "pca_explained_variance": explained,
        "classes": classes,
        "class_counts": {"train": {c: counts.get(c, 0) for c in classes},
                         "test": ({c: test_counts.get(c, 0) for c in classes}
                                  if test_counts is not None else None)},
        "chance": max(scored_counts.values()) / len(scored),
        "protocols": protocol_reports,
        "warnings": report_warnings,
    }


def _now() -> str:
    from diffaug_genomics.io.h5 import now_iso

    return now_iso()
