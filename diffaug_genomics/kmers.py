"""k-mer spectra of one-hot DNA: the one home for k-mer counting.

Used by the ``kmer`` neighbour space of kNN-mixup and by the evaluation baselines
(:func:`kmer_counts`, vectorised numpy over chunks of sequences; no Python loop runs over bases),
and inside the ``spectrum`` encoder (:func:`kmer_frequencies`, the same counts on a model-layout
tensor, on its device).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from diffaug_genomics.alphabet import ALPHABET

_CHUNK_ROWS = 2048
"""Most sequences per chunk (keeps the ``(n, L)`` int64 temporaries in cache)."""
_CHUNK_CELLS = 1 << 21
"""Most cells of one chunk's ``(n, 4**k)`` count block (16 MB of int64)."""


def kmer_names(k: int) -> list[str]:
    """The ``4**k`` k-mers in the column order of :func:`kmer_counts` (lexicographic over ACGT)."""
    _check_k(k)
    return ["".join(p) for p in itertools.product(ALPHABET, repeat=k)]


def kmer_counts(onehot: np.ndarray, k: int, normalize: bool = True) -> np.ndarray:
    """Count every k-mer of each sequence.

    Args:
        onehot: ``(N, L, 4)`` one-hot sequences (``uint8`` on disk; any numeric or bool dtype
            works). All-zero rows (N, other ambiguity codes, padding) are not bases: every
            k-mer window that touches one is skipped.
        k: k-mer length, ``>= 1``. Column ``j`` is the k-mer whose bases ``b_0 .. b_{k-1}``
            (A=0, C=1, G=2, T=3) give ``j = sum_i b_i * 4**(k-1-i)``; see :func:`kmer_names`.
        normalize: divide each row by its number of counted k-mers, so rows sum to 1 (rows
            with no counted k-mer stay all zero).

    Returns:
        ``(N, 4**k) float32`` counts, or frequencies when ``normalize``.
    """
    _check_k(k)
    arr = np.asarray(onehot)
    if arr.ndim != 3 or arr.shape[-1] != 4:
        raise ValueError(f"onehot must have shape (N, L, 4), got {arr.shape}")
    n, length, _ = arr.shape
    n_kmers = 4**k
    out = np.zeros((n, n_kmers), dtype=np.float32)
    if n == 0 or length < k:
        return out
    step = max(1, min(_CHUNK_ROWS, _CHUNK_CELLS // n_kmers))
    for start in range(0, n, step):
        out[start:start + step] = _count_chunk(arr[start:start + step], k)
    if normalize:
        totals = out.sum(axis=1, keepdims=True)
        np.divide(out, totals, out=out, where=totals > 0)
    return out


def kmer_frequencies(x: torch.Tensor, k: int) -> torch.Tensor:
    """``x (N, 4, L)`` model-layout one-hot (or continuous) -> k-mer frequencies ``(N, 4**k)``.

    The tensor twin of :func:`kmer_counts` with ``normalize=True`` (same columns, equal on
    one-hot input), computed on ``x``'s device without a gradient. A continuous input (a
    generated positive) is read at its argmax base; a position whose channels sum to less than
    0.5 (``N`` / padding) starts and ends no k-mer. Rows with none are all zeros.
    """
    _check_k(k)
    if x.ndim != 3 or x.shape[1] != 4:
        raise ValueError(f"x must have shape (N, 4, L), got {tuple(x.shape)}")
    n, _, length = x.shape
    out = torch.zeros(n, 4**k, device=x.device)
    n_windows = length - k + 1
    if n == 0 or n_windows <= 0:
        return out
    with torch.no_grad():
        base = x.argmax(dim=1)  # (N, L)
        called = x.sum(dim=1) >= 0.5
        codes = torch.zeros(n, n_windows, dtype=torch.long, device=x.device)
        valid = torch.ones(n, n_windows, dtype=torch.bool, device=x.device)
        for i in range(k):
            codes = codes * 4 + base[:, i:i + n_windows]
            valid &= called[:, i:i + n_windows]
        out.scatter_add_(1, codes, valid.to(out.dtype))
    return out / out.sum(dim=1, keepdim=True).clamp_min(1.0)


def _count_chunk(chunk: np.ndarray, k: int) -> np.ndarray:
    n, length, _ = chunk.shape
    base = chunk.argmax(axis=-1).astype(np.int64)  # (n, L), 0 where the row is all zero
    invalid = ~chunk.any(axis=-1)  # (n, L)
    n_windows = length - k + 1
    codes = np.zeros((n, n_windows), dtype=np.int64)
    for i in range(k):  # k is small: loop over offsets, not bases
        codes = codes * 4 + base[:, i:i + n_windows]
    # a window is valid when none of its k rows is invalid: difference of cumulative sums
    bad = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(invalid, axis=1)], axis=1)
    valid = (bad[:, k:] - bad[:, :n_windows]) == 0
    rows = np.broadcast_to(np.arange(n, dtype=np.int64)[:, None], codes.shape)
    flat = rows[valid] * 4**k + codes[valid]
    counts = np.bincount(flat, minlength=n * 4**k)
    return counts.reshape(n, 4**k).astype(np.float32)


def _check_k(k: int) -> None:
    if not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > 12:
        raise ValueError(f"k = {k} gives 4**k = {4**k} columns per sequence; use k <= 12")
