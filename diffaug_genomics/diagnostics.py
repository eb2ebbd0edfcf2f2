"""Label-free training diagnostics: what a user without labels can look at to see *why* a run
learns or not. Written to ``metrics.csv`` by the training loop (see :mod:`diffaug_genomics.train.loop`).

- :func:`effective_rank` of an embedding (collapse): ``exp`` of the entropy of the normalised
  singular values of the column-centred ``(N, D)`` matrix, between 1 (all rows on one line) and
  ``min(N, D)`` (every direction used equally). Roy & Vetterli (2007); RankMe (Garrido et al.,
  2023) uses it on embeddings.
- :func:`condition_gain` of a conditional denoiser: the relative increase of its denoising loss
  when each row's condition is replaced by another row's, on a fixed batch with fixed noise and
  timesteps. 0 means the generator ignores the encoder's embedding; a positives bank drawn from
  it then cannot carry what the encoder knows.
- :func:`uniformity` of an embedding (Wang & Isola, 2020): how evenly the normalised rows
  spread over the sphere, ``-log mean exp(-2 |z_i - z_j|^2)``, 0 (one point) to 4.
- :func:`neighbour_agreement` of an embedding with the input: the share of each row's nearest
  neighbours in the embedding that are also among its nearest neighbours in a reference feature
  space of the input (DNA: the k-mer spectrum), 0 to 1.
- :func:`dna_positive_stats` of generated DNA positives: identity to their own source, identity
  to the most similar *other* training row (copying), and the 3-mer spectrum L1 distance to the
  source (composition kept or not).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

MAX_DIAGNOSTIC_ROWS = 2048
"""Most training rows in the fixed, seeded sample the diagnostics are computed on."""
COLLAPSE_FRACTION = 0.10
"""An embedding whose effective rank is below this fraction of its size has collapsed (``fit``
warns once; ``diffaug report`` says so)."""


def diagnostic_sample(n: int, seed: int, size: int = MAX_DIAGNOSTIC_ROWS) -> np.ndarray:
    """Indices of a fixed sample of ``min(n, size)`` of ``n`` rows, in a seeded random order
    (independent of every training draw), so that any prefix is a random sample too."""
    rng = np.random.default_rng([seed, 0xD1A6])
    return rng.permutation(n)[:size]


def effective_rank(x: Tensor | np.ndarray) -> float:
    """Effective rank of ``x (N, D)`` (column-centred): ``exp(H(s / sum(s)))`` of its singular
    values ``s``, in ``[1, min(N, D)]``; 0.0 when every row is the same."""
    m = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach()
    m = m.double().cpu()
    if m.ndim != 2 or m.shape[0] < 2:
        raise ValueError(f"expected an (N >= 2, D) matrix, got {tuple(m.shape)}")
    m = m - m.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(m)
    total = s.sum()
    if total <= 1e-12 * max(1.0, float(m.abs().max())):
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def uniformity(z: Tensor | np.ndarray, t: float = 2.0) -> float:
    """``-log mean_{i != j} exp(-t |u_i - u_j|^2)`` of the L2-normalised rows ``u`` of ``z (N,
    D)``: 0 when every row points the same way, up to ``2 t`` (evenly spread). Larger is more
    uniform (the negated uniformity loss of Wang & Isola, 2020)."""
    u = torch.as_tensor(np.asarray(z) if not isinstance(z, Tensor) else z).detach()
    u = torch.nn.functional.normalize(u.float().cpu(), dim=1)
    n = len(u)
    if n < 2:
        raise ValueError(f"expected at least 2 rows, got {n}")
    sq = (2.0 - 2.0 * (u @ u.T)).clamp_min(0.0)  # |u_i - u_j|^2 in [0, 4]: exp cannot overflow
    total = torch.exp(-t * sq).sum(dtype=torch.float64) - n  # the diagonal adds exp(0) = 1 each
    return float(-torch.log(total.clamp_min(1e-300) / (n * (n - 1))))


def nearest_neighbours(x: Tensor | np.ndarray, k: int) -> Tensor:
    """``(N, k)`` indices of each row's ``k`` nearest other rows of ``x (N, F)`` by cosine
    similarity of the column-centred rows (the row itself excluded)."""
    m = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach()
    m = m.double().cpu()
    if len(m) <= k:
        raise ValueError(f"need more than k = {k} rows, got {len(m)}")
    m = torch.nn.functional.normalize(m - m.mean(dim=0), dim=1)
    sim = m @ m.T
    sim.fill_diagonal_(-float("inf"))
    return sim.topk(k, dim=1).indices


def neighbour_agreement(z: Tensor | np.ndarray, reference: Tensor | np.ndarray,
                        k: int = 10) -> float:
    """Mean share of each row's ``k`` nearest neighbours in ``z (N, D)`` that are also among its
    ``k`` nearest in ``reference`` (:func:`nearest_neighbours`), 0 to 1 (``k / N`` by chance).
    ``reference`` is a feature matrix ``(N, F)``, or its neighbours ``(N, k)`` (an integer
    tensor from :func:`nearest_neighbours`, to compare several embeddings with one reference)."""
    ref = reference if isinstance(reference, Tensor) and not reference.is_floating_point() \
        else nearest_neighbours(reference, k)
    if len(z) != len(ref) or ref.shape[1] != k:
        raise ValueError(f"need the same rows and k: {len(z)} rows and k = {k}, reference "
                         f"{tuple(ref.shape)}")
    mine = nearest_neighbours(z, k)
    n = len(mine)
    hits = torch.zeros(n, n, dtype=torch.bool)
    hits[torch.arange(n).unsqueeze(1), ref] = True
    return float(hits.gather(1, mine).double().mean())


def condition_gain(diffusion: nn.Module, denoiser: nn.Module, x0: Tensor, cond: Tensor,
                   seed: int) -> float:
    """Relative increase of ``denoiser`` 's loss on ``x0 (B, ...)`` when the conditions
    ``cond (B, D)`` are rolled by one row (each row gets another row's condition), with the same
    noise and timesteps (drawn from ``seed``; timesteps evenly spread over the schedule).

    Returns ``(L_other - L_own) / L_own``: about 0 for a denoiser that ignores its condition,
    > 0 for one that uses it. Evaluation mode, no gradients; ``denoiser`` 's mode is restored.
    """
    if len(x0) < 2:
        return float("nan")
    gen = torch.Generator().manual_seed(seed)
    n_t = diffusion.num_train_timesteps
    t = ((torch.arange(len(x0)) + 0.5) * n_t / len(x0)).long().clamp(max=n_t - 1)
    t = t[torch.randperm(len(x0), generator=gen)].to(x0.device)
    noise = torch.randn(x0.shape, generator=gen).to(x0.device, x0.dtype)
    x_t = diffusion.add_noise(x0, noise, t)
    target = diffusion.target(x0, noise, t).float()
    was_training = denoiser.training
    denoiser.eval()
    with torch.no_grad():
        own = torch.mean((denoiser(x_t, t, cond).float() - target) ** 2)
        other = torch.mean((denoiser(x_t, t, cond.roll(1, dims=0)).float() - target) ** 2)
    denoiser.train(was_training)
    return float((other - own) / own.clamp_min(1e-12))


def identity_to_source(sources: np.ndarray, positive_bases: np.ndarray) -> np.ndarray:
    """Fraction of each source's called positions (N and padding excluded) where its positive
    has the source's base.

    Args:
        sources: ``(n, L, 4)`` one-hot sources.
        positive_bases: ``(n, ..., L)`` base indices (0..3) of one or more positives per source.

    Returns:
        ``(n, ...)`` identities in ``[0, 1]``.
    """
    src = np.asarray(sources)
    pos = np.asarray(positive_bases)
    lead = (src.shape[0],) + (1,) * (pos.ndim - 2) + (src.shape[1],)
    called = (src.max(axis=-1) > 0).reshape(lead)
    same = (pos == src.argmax(axis=-1).reshape(lead)) & called
    return same.sum(axis=-1) / np.maximum(called.sum(axis=-1), 1)


def dna_positive_stats(sources: np.ndarray, positives: np.ndarray, source_index: np.ndarray,
                       rows: np.ndarray, block: int = 4096) -> dict[str, float]:
    """Generated DNA positives against their sources and the training set.

    Args:
        sources: ``(n, L, 4)`` one-hot sources (uint8).
        positives: ``(n, L, 4)`` generated positives, one-hot or continuous (argmax is taken).
        source_index: ``(n,)`` row of each source in ``rows`` (excluded from "other").
        rows: ``(N, L, 4)`` every training row.

    Returns:
        ``pos_identity_source``: mean :func:`identity_to_source`; ``pos_identity_nearest``:
        mean of the highest identity, over the same positions, to any *other* training row
        (about the real rows' own nearest-other identity: no copying); ``pos_kmer3_l1``: mean
        L1 distance between a positive's and its source's 3-mer frequencies (0 to 2).
    """
    from diffaug_genomics.kmers import kmer_counts

    bases = np.asarray(positives).argmax(axis=-1)
    called = np.asarray(sources).max(axis=-1) > 0  # N / padding positions are not compared
    pos_oh = np.eye(4, dtype=np.float32)[bases] * called[..., None]
    n_called = torch.from_numpy(np.maximum(called.sum(axis=1), 1).astype(np.float32))
    flat = torch.from_numpy(pos_oh.reshape(len(pos_oh), -1))
    best = torch.full((len(pos_oh),), -1.0)
    own = torch.from_numpy(np.asarray(source_index, dtype=np.int64))
    for start in range(0, len(rows), block):
        chunk = torch.from_numpy(np.asarray(rows[start:start + block], dtype=np.float32))
        same = flat @ chunk.reshape(len(chunk), -1).T / n_called[:, None]  # (n, block)
        inside = (own >= start) & (own < start + len(chunk))
        same[inside.nonzero().squeeze(1), (own[inside] - start)] = -1.0
        best = torch.maximum(best, same.max(dim=1).values)
    spectrum_src = kmer_counts(sources, 3)
    spectrum_pos = kmer_counts(pos_oh.astype(np.uint8), 3)
    return {"pos_identity_source": float(identity_to_source(sources, bases).mean()),
            "pos_identity_nearest": float(best.mean()),
            "pos_kmer3_l1": float(np.abs(spectrum_pos - spectrum_src).sum(axis=1).mean())}
