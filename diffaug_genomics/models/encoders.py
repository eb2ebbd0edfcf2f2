"""Semantic encoders f: x -> z, and the projection head g: z -> y used only by the loss.

Inputs are model-layout tensors ``(N, C, L)`` (for DNA, one-hot ``(N, 4, L)`` float, or the
continuous generated positives); any ``L >= 1`` works, pooling stops before the length drops
below :data:`MIN_POOLED_LENGTH`. The modules only assume a channel axis, so image or tabular
backbones can follow the same pattern.

Examples:
    >>> enc = ConvEncoder(width=128, embed_dim=128)
    >>> z = enc(torch.zeros(8, 4, 200))          # (8, 128)
    >>> y = ProjectionHead(enc.embed_dim)(z)      # (8, 64)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffaug_genomics.alphabet import reverse_complement_tensor

__all__ = ["MIN_POOLED_LENGTH", "ConvEncoder", "ProjectionHead", "make_norm"]

MIN_POOLED_LENGTH = 4
"""A max-pool by 2 is skipped when it would leave fewer positions than this."""


def make_norm(kind: str, channels: int) -> nn.Module:
    """Normalisation over ``channels`` of a ``(N, C, L)`` tensor.

    ``"batch"``: :class:`torch.nn.BatchNorm1d` (convertible with
    ``SyncBatchNorm.convert_sync_batchnorm``); ``"group"``: GroupNorm with up to 8 groups
    (batch-independent, for tiny or per-sample batches); ``"none"``: identity.
    """
    if kind == "batch":
        return nn.BatchNorm1d(channels)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'group' or 'none', got {kind!r}")


def _pool(x: Tensor) -> Tensor:
    """Max-pool by 2 along the length, unless that would leave < MIN_POOLED_LENGTH positions."""
    if x.shape[-1] // 2 < MIN_POOLED_LENGTH:
        return x
    return F.max_pool1d(x, 2)


class _ResBlock(nn.Module):
    """conv-norm-ReLU-conv-norm plus identity, then ReLU; length preserved."""

    def __init__(self, channels: int, kernel: int, norm: str) -> None:
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv1d(channels, channels, kernel, padding=pad)
        self.norm1 = make_norm(norm, channels)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=pad)
        self.norm2 = make_norm(norm, channels)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.relu(x + h)


class ConvEncoder(nn.Module):
    """1D residual CNN: ``(N, in_channels, L)`` -> ``(N, embed_dim)`` embedding z.

    Conv stem (``stem_kernel``) + norm + ReLU + max-pool 2, ``n_blocks`` residual blocks (two
    convs of ``block_kernel`` with norm) each followed by max-pool 2, then global mean and max
    pooling concatenated ``(N, 2 * width)`` and a linear layer to ``embed_dim``. A pool is
    skipped when it would leave fewer than :data:`MIN_POOLED_LENGTH` positions, so short inputs
    work. Odd kernels keep the length ("same" padding).

    Args:
        in_channels: input channels (4 for one-hot DNA).
        width: channels of every convolution.
        n_blocks: residual blocks.
        stem_kernel: kernel of the first convolution, in positions (bp for DNA).
        block_kernel: kernel of the residual convolutions.
        embed_dim: size of z.
        rc: reverse-complement-invariant embedding, ``(f(x) + f(rc(x))) / 2`` (DNA only,
            ``in_channels == 4``). Both strands run as one batch, so batch-norm statistics
            cover both and the invariance is exact in training mode too. Off by default: it is
            domain knowledge.
        norm: ``"batch"`` (default), ``"group"`` or ``"none"`` (see :func:`make_norm`).

    With width 128, three blocks and kernels 15/5 on 4 channels: 535k parameters.
    """

    def __init__(
        self,
        in_channels: int = 4,
        width: int = 128,
        n_blocks: int = 3,
        stem_kernel: int = 15,
        block_kernel: int = 5,
        embed_dim: int = 128,
        rc: bool = False,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if rc and in_channels != 4:
            raise ValueError(f"rc=True needs 4 one-hot channels (A, C, G, T), got {in_channels}")
        if stem_kernel % 2 == 0 or block_kernel % 2 == 0:
            raise ValueError("stem_kernel and block_kernel must be odd (length-preserving)")
        self.in_channels = in_channels
        self.width = width
        self.embed_dim = embed_dim
        self.rc = rc
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, width, stem_kernel, padding=stem_kernel // 2),
            make_norm(norm, width),
            nn.ReLU(),
        )
        self.blocks = nn.ModuleList(_ResBlock(width, block_kernel, norm) for _ in range(n_blocks))
        self.fc = nn.Linear(2 * width, embed_dim)

    def _embed(self, x: Tensor) -> Tensor:
        h = _pool(self.stem(x))
        for block in self.blocks:
            h = _pool(block(h))
        pooled = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)
        return self.fc(pooled)

    def forward(self, x: Tensor) -> Tensor:
        """``x (N, in_channels, L)`` float -> ``z (N, embed_dim)``."""
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (N, {self.in_channels}, L), got {tuple(x.shape)}")
        if not self.rc:
            return self._embed(x)
        n = x.shape[0]
        z = self._embed(torch.cat([x, reverse_complement_tensor(x)], dim=0))
        return 0.5 * (z[:n] + z[n:])


class ProjectionHead(nn.Module):
    """Linear-BN-ReLU-Linear: ``(N, in_dim)`` -> ``(N, out_dim)``, used only for the loss."""

    def __init__(self, in_dim: int, hidden_dim: int = 256, out_dim: int = 64) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, z: Tensor) -> Tensor:
        """``z (N, in_dim)`` -> ``y (N, out_dim)``."""
        return self.net(z)
