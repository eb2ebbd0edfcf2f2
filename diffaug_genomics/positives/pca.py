"""The paper's neighbour space for images and tables: PCA of the (scaled) input."""

from __future__ import annotations

import numpy as np

PCA_FIT_ROWS = 20_000
"""Most rows used to fit the PCA (a seeded uniform subsample); every row is projected."""


def pca_features(rows: np.ndarray, pca_dim: int = 50, seed: int = 0) -> np.ndarray:
    """``rows (N, ...)`` flattened to ``(N, F)``, centred and projected on at most ``pca_dim``
    principal components (capped by N and F): ``(N, min(pca_dim, N, F)) float32``."""
    from sklearn.decomposition import PCA

    flat = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    n, f = flat.shape
    fit = flat
    if n > PCA_FIT_ROWS:
        fit = flat[np.sort(np.random.default_rng(seed).choice(n, PCA_FIT_ROWS, replace=False))]
    dim = min(pca_dim, fit.shape[0], f)
    pca = PCA(n_components=dim, svd_solver="randomized" if dim < min(fit.shape) else "full",
              random_state=seed)
    pca.fit(fit)
    return pca.transform(flat).astype(np.float32)
