"""Neighbour search at any number of rows: exact up to :data:`EXACT_MAX_ROWS`, approximate above.

:func:`~diffaug_genomics.positives.knn.knn_indices` is exact: every row against every row,
``O(N^2 F)`` time, hours on a CPU at 10^6 rows. Above :data:`EXACT_MAX_ROWS` rows
:func:`find_neighbours` uses :func:`approximate_knn`, whose time grows as ``N log N``: a forest
of :data:`TREES` randomised principal-direction trees, searched exactly inside every leaf.

- **A tree** splits its rows in two at the median of their projections onto a direction, again
  and again until every leaf holds at most :data:`LEAF_ROWS` rows: ``log2(N / LEAF_ROWS)``
  levels of ``O(N F)`` each. The direction of a node is a random combination of the
  :data:`TOP_DIRECTIONS` leading principal directions of a sample of its rows (randomised
  PCA trees, Silpa-Anan & Hartley 2008): close to the direction the rows spread most along, so
  near rows tend to stay together, and different in every tree, so the trees err differently.
- **The leaves** are searched exactly (``N * LEAF_ROWS * F`` products per tree); each row keeps
  the ``k`` best distinct candidates of all its leaves.

Every split is at a median, so no leaf is larger than :data:`LEAF_ROWS` whatever the data
(duplicates included), and the result is a function of ``seed``. Memory: the features (float16
is enough; unit-length float16 rows are used without a copy), three ``(N, k)`` arrays and
one leaf's scores. What it costs in quality, against the
exact search: ``benchmarks/results/scale.md`` (recall of the true 10 nearest neighbours and
their mean similarity, measured by ``benchmarks/bench_scale.py --recall``).

The neighbours found are cached in the run directory (:func:`save_neighbours`,
:func:`load_neighbours`: ``cache/neighbours-{space}.npz``, refused when what they depend on
changed).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffaug_genomics.io.atomic import atomic_output
from diffaug_genomics.positives.knn import _block_topk, _merge, knn_indices

EXACT_MAX_ROWS = 50_000
"""Rows up to which :func:`find_neighbours` searches exactly, as every run did before (about
16 s for 50,000 rows of 256 features on one CPU thread)."""
LEAF_ROWS = 2048
"""Most rows of a leaf (searched exactly)."""
TREES = 4
"""Trees of the forest."""
TOP_DIRECTIONS = 4
"""Leading principal directions a split direction combines."""
SAMPLE_ROWS = 2048
"""Rows of a node whose principal directions are computed."""
_BLOCK_ROWS = 65_536
"""Rows per block when projecting or normalising (bounds the float32 temporaries)."""


def search_method(n: int) -> str:
    """``"exact"`` for ``n`` rows, or the approximate method's name with its parameters (kept
    with cached neighbours, so a cache made another way is not reused)."""
    if n <= EXACT_MAX_ROWS:
        return "exact"
    return f"pca-forest-{TREES}x{LEAF_ROWS}"


def find_neighbours(features: np.ndarray, k: int, *, seed: int = 0,
                    device: str = "cpu") -> np.ndarray:
    """Cosine ``k`` nearest neighbours of every row of ``features (N, F)``: exact
    (:func:`~diffaug_genomics.positives.knn.knn_indices`) up to :data:`EXACT_MAX_ROWS` rows,
    :func:`approximate_knn` above. Returns ``(N, k) int64``, nearest first."""
    if search_method(len(features)) == "exact":
        return knn_indices(features, k, metric="cosine", device=device)
    return approximate_knn(features, k, seed=seed, device=device)


def approximate_knn(features: np.ndarray, k: int, *, seed: int = 0, device: str = "cpu",
                    leaf_rows: int = LEAF_ROWS, trees: int = TREES) -> np.ndarray:
    """Approximate cosine ``k`` nearest neighbours (see the module docstring).

    Args:
        features: ``(N, F)`` float16 or float32 (products are computed in float32).
        k: neighbours per row, ``1 <= k <= N - 1``.
        seed: seed of the trees.
        device: torch device of the products.
        leaf_rows: most rows per leaf (raised to ``4 (k + 1)`` when smaller).
        trees: trees of the forest, >= 1.

    Returns:
        ``(N, k) int64``: row ``i`` lists neighbours nearest first (ties towards the lower
        index), never ``i`` itself.
    """
    n = len(features)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, F), got {features.shape}")
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be in [1, N - 1] = [1, {n - 1}], got {k}")
    if trees < 1:
        raise ValueError(f"trees must be >= 1, got {trees}")
    dev = torch.device(device)
    leaf_rows = max(leaf_rows, 4 * (k + 1))
    with torch.inference_mode():
        x = _unit_rows(features, dev)
        best_s = torch.empty((n, k), device=dev)
        best_i = torch.empty((n, k), dtype=torch.int64, device=dev)
        for tree in range(trees):
            rng = np.random.default_rng([seed, 0x5EA, tree])
            cand_s = torch.empty((n, k), device=dev)
            cand_i = torch.empty((n, k), dtype=torch.int64, device=dev)
            for members in _leaves(x, leaf_rows, rng):
                leaf = members.sort().values  # column order = index order: ties to the lower
                q = x[leaf].float()
                s = q @ q.T
                s.fill_diagonal_(-torch.inf)
                s, pos = _block_topk(s, k)
                cand_s[leaf], cand_i[leaf] = s, leaf[pos]
            for lo in range(0, n, _BLOCK_ROWS):  # merged block by block: bounded temporaries
                rows = slice(lo, lo + _BLOCK_ROWS)
                scores, idx = cand_s[rows], cand_i[rows]
                if tree > 0:
                    scores = torch.cat([best_s[rows], scores], 1)
                    idx = torch.cat([best_i[rows], idx], 1)
                best_s[rows], best_i[rows] = _merge_distinct(scores, idx, k)
        return best_i.cpu().numpy()


def _unit_rows(features: np.ndarray, dev: torch.device) -> torch.Tensor:
    """The rows at unit length (all-zero rows stay zero) in the features' dtype (float16 or
    float32) on ``dev``: float16 rows already at unit length (as ``neighbour_features(...,
    compact=True)`` makes them) are used as they are, without a copy; others are scaled into
    a copy, block by block."""
    if features.dtype == np.float16 and dev.type == "cpu" and _unit_length(features):
        return torch.from_numpy(features)
    dtype = torch.float16 if features.dtype == np.float16 else torch.float32
    out = torch.empty(features.shape, dtype=dtype, device=dev)
    for lo in range(0, len(features), _BLOCK_ROWS):
        block = torch.from_numpy(np.asarray(features[lo:lo + _BLOCK_ROWS], np.float32)).to(dev)
        out[lo:lo + len(block)] = torch.nn.functional.normalize(block, dim=1).to(dtype)
    return out


def _unit_length(features: np.ndarray) -> bool:
    """Whether every row has length 1 or 0 (within float16 rounding)."""
    for lo in range(0, len(features), _BLOCK_ROWS):
        norms = np.linalg.norm(features[lo:lo + _BLOCK_ROWS].astype(np.float32), axis=1)
        if not np.all((np.abs(norms - 1) < 1e-2) | (norms == 0)):
            return False
    return True


def _leaves(x: torch.Tensor, leaf_rows: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """One tree's leaves: index tensors partitioning the rows of ``x``, each of at most
    ``leaf_rows`` rows (depth first, the lower half first)."""
    stack = [torch.arange(len(x), device=x.device)]
    leaves: list[torch.Tensor] = []
    while stack:
        idx = stack.pop()
        if len(idx) <= leaf_rows:
            leaves.append(idx)
            continue
        direction = _split_direction(x, idx, rng)
        proj = torch.cat([x[idx[lo:lo + _BLOCK_ROWS]].float() @ direction
                          for lo in range(0, len(idx), _BLOCK_ROWS)])
        order = torch.sort(proj, stable=True).indices  # equal projections split by position
        half = len(idx) // 2
        stack += [idx[order[half:]], idx[order[:half]]]
    return leaves


def _split_direction(x: torch.Tensor, idx: torch.Tensor, rng: np.random.Generator
                     ) -> torch.Tensor:
    """A random combination of the :data:`TOP_DIRECTIONS` leading principal directions of up
    to :data:`SAMPLE_ROWS` of the rows ``idx`` (subspace iteration from a random start)."""
    take = np.sort(rng.choice(len(idx), size=min(len(idx), SAMPLE_ROWS), replace=False))
    sample = x[idx[torch.from_numpy(take).to(x.device)]].float()
    sample = sample - sample.mean(dim=0)
    m = min(TOP_DIRECTIONS, x.shape[1])
    basis = torch.from_numpy(rng.standard_normal((x.shape[1], m)).astype(np.float32))
    basis = basis.to(x.device)
    for _ in range(6):
        basis = torch.linalg.qr(sample.T @ (sample @ basis)).Q
    weights = torch.from_numpy(rng.standard_normal(m).astype(np.float32)).to(x.device)
    return basis @ weights


def _merge_distinct(scores: torch.Tensor, idx: torch.Tensor, k: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best distinct indices of each row (a candidate found twice counts once), by
    score descending then index ascending."""
    order = torch.argsort(idx, dim=1, stable=True)
    idx, scores = idx.gather(1, order), scores.gather(1, order)
    repeat = torch.zeros_like(idx, dtype=torch.bool)
    repeat[:, 1:] = idx[:, 1:] == idx[:, :-1]
    return _merge(scores.masked_fill(repeat, -torch.inf), idx, k)


# ------------------------------------------------------------------------------ the cache
def save_neighbours(path: str | Path, indices: np.ndarray, meta: dict[str, Any]) -> None:
    """Write ``indices (N, k)`` and ``meta`` (JSON-serialisable) to ``path`` (npz), atomically.

    ``meta`` should identify what the indices depend on: space, k, metric, N, and a fingerprint
    of the data (sha256 or size and mtime), so that :func:`load_neighbours` can refuse a stale
    cache.
    """
    meta_json = json.dumps(meta, sort_keys=True)
    with atomic_output(path, force=True) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, indices=np.asarray(indices, dtype=np.int64), meta=np.array(meta_json))


def load_neighbours(path: str | Path, expect_meta: dict[str, Any]) -> np.ndarray | None:
    """Cached indices from :func:`save_neighbours`, or ``None`` to recompute.

    ``None`` when the file is missing or unreadable, or when its meta differs from
    ``expect_meta`` in any key or value (compared after a JSON round trip, so tuples equal
    lists).
    """
    p = Path(path)
    if not p.is_file():
        return None
    try:
        with np.load(p, allow_pickle=False) as data:
            stored = json.loads(str(data["meta"]))
            indices = data["indices"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
        return None
    if stored != json.loads(json.dumps(expect_meta, sort_keys=True)):
        return None
    if indices.ndim != 2 or indices.dtype.kind not in "iu":
        return None
    if indices.size and (indices.min() < 0 or indices.max() >= len(indices)):
        return None  # a damaged or foreign cache: indices must point at the N rows
    return indices
