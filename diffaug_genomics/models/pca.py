"""Principal directions for the PCA starts of feature-vector encoders (spectrum, MLP)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["principal_directions"]


def principal_directions(centred: Tensor, count: int) -> Tensor:
    """Up to ``count`` top right singular vectors ``(c, F)`` float64 of the column-centred
    ``centred (n, F)`` (only those within its numerical rank, ``s > 1e-6 s_max``), each signed
    so that its largest loading is positive (a deterministic sign)."""
    centred = centred.double()
    if count <= 0 or centred.shape[1] == 0 or centred.shape[0] == 0:
        return centred.new_zeros((0, centred.shape[1]))
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    rank = int((s > s[0] * 1e-6).sum()) if s[0] > 0 else 0
    comps = vh[:min(rank, count)]
    signs = torch.sign(comps.gather(1, comps.abs().argmax(dim=1, keepdim=True)))
    return comps * signs
