"""Principal directions for the PCA starts of feature-vector encoders (spectrum, MLP)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["principal_directions"]

EXACT_MAX_FEATURES = 1024
"""Up to this many features the directions are exact (an SVD or eigendecomposition); above it
a seeded randomised SVD (Halko, Martinsson & Tropp 2011) finds them far faster (a 6-mer
spectrum has 4,096 features)."""
OVERSAMPLE = 64
POWER_ITERATIONS = 4


def principal_directions(centred: Tensor, count: int) -> Tensor:
    """Up to ``count`` top right singular vectors ``(c, F)`` float64 of the column-centred
    ``centred (n, F)`` (only those within its numerical rank, ``s > 1e-6 s_max``), each signed
    so that its largest loading is positive (a deterministic sign).

    Up to :data:`EXACT_MAX_FEATURES` features: exact, the SVD of ``centred`` when it has fewer
    rows than columns, else the eigenvectors of ``centred^T centred`` (accumulated in blocks of
    rows). Above: a randomised SVD with ``count +`` :data:`OVERSAMPLE` probes and
    :data:`POWER_ITERATIONS` power iterations, seeded (the same directions on every call)."""
    n, f = centred.shape
    if count <= 0 or f == 0 or n == 0:
        return torch.zeros((0, f), dtype=torch.float64, device=centred.device)
    if f > EXACT_MAX_FEATURES and min(n, f) > count + OVERSAMPLE:
        _, s, vh = _randomised_svd(centred.float(), count + OVERSAMPLE)
        s, vh = s.double(), vh.double()
        variances = s**2
    elif n < f:
        _, s, vh = torch.linalg.svd(centred.double(), full_matrices=False)
        variances = s**2
    else:
        gram = torch.zeros((f, f), dtype=torch.float64, device=centred.device)
        for lo in range(0, n, 4096):
            block = centred[lo:lo + 4096].double()
            gram += block.T @ block
        variances, vectors = torch.linalg.eigh(gram)
        variances, vh = variances.flip(0).clamp_min(0), vectors.flip(1).T
    rank = int((variances > variances[0] * 1e-12).sum()) if variances[0] > 0 else 0
    comps = vh[:min(rank, count)]
    signs = torch.sign(comps.gather(1, comps.abs().argmax(dim=1, keepdim=True)))
    return comps * signs


def _randomised_svd(a: Tensor, q: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(U, S, Vh)`` of the top ``q`` singular triplets of ``a (n, F)``: a Gaussian sketch of
    its row space (seeded), refined by power iterations with re-orthonormalisation (in ``a`` 's
    precision), then an exact float64 SVD of the small ``(q, F)`` projection."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    probe = torch.randn(a.shape[1], q, generator=gen, dtype=a.dtype).to(a.device)
    basis, _ = torch.linalg.qr(a @ probe)
    for _ in range(POWER_ITERATIONS):
        basis, _ = torch.linalg.qr(a.T @ basis)
        basis, _ = torch.linalg.qr(a @ basis)
    u_small, s, vh = torch.linalg.svd((basis.T @ a).double(), full_matrices=False)
    return basis.double() @ u_small, s, vh
