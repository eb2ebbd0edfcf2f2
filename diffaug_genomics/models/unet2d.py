"""Conditional 2D U-Net denoiser for images: the 2D twin of
:class:`~diffaug_genomics.models.denoisers.UNet1D`, with the same conditioning and signature.

``x_t (N, C, H, W)`` (images scaled to [-1, 1], noised), ``t (N,)`` integer timesteps, ``cond
(N, cond_dim)`` the frozen encoder's embedding -> ``(N, C, H, W)`` (noise or v). Any size
works: the input is padded to a multiple of ``2 ** (levels - 1)`` and the output cropped.

Examples:
    >>> net = UNet2D(in_channels=1, channels=(32, 64), cond_dim=64, time_dim=64)
    >>> net(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), torch.zeros(4, 64)).shape
    torch.Size([4, 1, 8, 8])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from diffaug_genomics.models.conditioning import Conditioning
from diffaug_genomics.models.unet import UNetLevels

__all__ = ["UNet2D"]


class UNet2D(UNetLevels):
    """Conditional 2D U-Net: ``(x_t (N, C, H, W), t (N,), cond (N, cond_dim))`` -> like ``x_t``.

    One level per entry of ``channels`` (resolutions H, H/2, ...): a residual block per level
    on the way down with a stride-2 convolution between levels, two in the middle, a residual
    block per level on the way up (skip concatenated) with nearest upsampling + convolution.
    Every block gets FiLM from the joint time/condition embedding; the condition embedding is
    also added to the input projection.

    Args:
        in_channels: image channels; the output has the same.
        channels: channels per level, finest first.
        cond_dim: size of the condition (the encoder's ``embed_dim``).
        time_dim: size of the time and condition embeddings.
        groups: GroupNorm groups; must divide every entry of ``channels``.
        dropout: dropout inside the residual blocks.
    """

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (32, 64),
                 cond_dim: int = 128, time_dim: int = 128, groups: int = 8,
                 dropout: float = 0.0) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if not channels:
            raise ValueError("channels must name at least one level")
        groups = next(g for g in (groups, 4, 2, 1) if all(c % g == 0 for c in channels))
        self.in_channels = in_channels
        self.channels = channels
        self.cond_dim = cond_dim
        self.conditioning = Conditioning(cond_dim, time_dim)
        self.input_proj = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.input_cond = nn.Linear(time_dim, channels[0])
        self.build_levels(channels, time_dim, groups, dropout, dims=2)

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor | None,
                drop_cond: Tensor | None = None) -> Tensor:
        """Predict the diffusion target for ``x_t (N, C, H, W)`` at timesteps ``t (N,)``."""
        if x_t.ndim != 4 or x_t.shape[1] != self.in_channels:
            raise ValueError(f"expected (N, {self.in_channels}, H, W), got {tuple(x_t.shape)}")
        n, _, height, width = x_t.shape
        emb, c_emb = self.conditioning(t, cond, drop_cond, n, x_t.dtype)
        h = self.input_proj(self.pad_input(x_t)) + self.input_cond(F.silu(c_emb))[:, :, None, None]
        return self.run_levels(h, emb, (height, width))
