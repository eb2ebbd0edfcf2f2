"""k-mer spectra of one-hot DNA: the one home for k-mer counting.

Used by the ``kmer`` neighbour space of kNN-mixup and by the evaluation baselines
(:func:`kmer_counts`: numpy rows in, numpy counts out, in chunks of sequences), and inside the
``spectrum`` encoder (:func:`kmer_frequencies`: a model-layout tensor, on its device). Both count
with :func:`_window_counts`, vectorised over windows; no Python loop runs over bases.
:func:`baseline_features` gives the classical training-free references (k-mer, canonical
k-mer, GC, flattened one-hot) that ``evaluate``, ``report`` and the benchmarks score.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from diffaug_genomics.alphabet import ALPHABET

_CHUNK_ROWS = 2048
"""Most sequences per chunk (keeps the ``(n, L)`` int64 temporaries in cache)."""
_CHUNK_CELLS = 1 << 21
"""Most cells of one chunk's ``(n, 4**k)`` count block (8 MB of float32)."""


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

    The tensor twin of :func:`kmer_counts` with ``normalize=True`` (same columns and the same
    counting, :func:`_window_counts`; equal on one-hot input), on ``x``'s device without a
    gradient. A continuous input (a generated positive) is read at its argmax base; a position
    whose channels sum to less than 0.5 (``N`` / padding) starts and ends no k-mer. Rows with
    none are all zeros.
    """
    _check_k(k)
    if x.ndim != 3 or x.shape[1] != 4:
        raise ValueError(f"x must have shape (N, 4, L), got {tuple(x.shape)}")
    with torch.no_grad():
        counts = _window_counts(x.argmax(dim=1), x.sum(dim=1) >= 0.5, k)
    return counts / counts.sum(dim=1, keepdim=True).clamp_min(1.0)


def _count_chunk(chunk: np.ndarray, k: int) -> np.ndarray:
    base = torch.from_numpy(chunk.argmax(axis=-1).astype(np.int64))  # (n, L)
    called = torch.from_numpy(chunk.any(axis=-1))  # all-zero rows are not bases
    return _window_counts(base, called, k).numpy()


def _window_counts(base: torch.Tensor, called: torch.Tensor, k: int) -> torch.Tensor:
    """Counts ``(n, 4**k)`` float32 of the k-mers of base indices ``base (n, L)`` (0..3) over
    the windows whose ``k`` positions are all ``called (n, L)``: the one k-mer counter."""
    n, length = base.shape
    out = torch.zeros(n, 4**k, device=base.device)
    n_windows = length - k + 1
    if n == 0 or n_windows <= 0:
        return out
    codes = torch.zeros(n, n_windows, dtype=torch.long, device=base.device)
    valid = torch.ones(n, n_windows, dtype=torch.bool, device=base.device)
    for i in range(k):  # k is small: loop over offsets, not bases
        codes = codes * 4 + base[:, i:i + n_windows]
        valid &= called[:, i:i + n_windows]
    return out.scatter_add_(1, codes, valid.to(out.dtype))


def _check_k(k: int) -> None:
    if not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > 12:
        raise ValueError(f"k = {k} gives 4**k = {4**k} columns per sequence; use k <= 12")


def baseline_features(onehot: np.ndarray, kind: str = "kmer", k: int = 6) -> np.ndarray:
    """Training-free features of one-hot DNA for the classical reference baselines.

    Args:
        onehot: ``(N, L, 4) uint8`` one-hot sequences (A, C, G, T; all-zero rows for N).
        kind: ``"kmer"``: k-mer spectrum, frequencies summing to 1 per sequence, ``(N, 4**k)``;
            ``"ckmer"``: the canonical (strand-symmetrised) spectrum, the mean of the spectra of
            the sequence and of its reverse complement, ``(N, 4**k)``; ``"gc"``: GC fraction over called bases, ``(N, 1)``; ``"onehot"``: the flattened
            one-hot, ``(N, 4 * L)``.
        k: k-mer length for ``"kmer"`` (the references use 3 to 6); ignored otherwise.

    Returns:
        ``(N, F) float32`` features, to be scored like embeddings.
    """
    arr = np.asarray(onehot)
    if arr.ndim != 3 or arr.shape[-1] != 4:
        raise ValueError(f"onehot must have shape (N, L, 4), got {arr.shape}")
    if kind == "kmer":
        return np.asarray(kmer_counts(arr, k, normalize=True), dtype=np.float32)
    if kind == "ckmer":
        from diffaug_genomics.alphabet import reverse_complement

        both = kmer_counts(arr, k, normalize=True) + kmer_counts(reverse_complement(arr), k,
                                                                 normalize=True)
        return np.asarray(0.5 * both, dtype=np.float32)
    if kind == "gc":
        from diffaug_genomics.alphabet import gc_content

        return gc_content(arr).astype(np.float32)[:, None]
    if kind == "onehot":
        return arr.reshape(arr.shape[0], -1).astype(np.float32)
    raise ValueError(f"unknown baseline kind {kind!r}; choose kmer, ckmer, gc or onehot")
