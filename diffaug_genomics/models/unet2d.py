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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffaug_genomics.models.conditioning import Conditioning

__all__ = ["UNet2D"]


class _ResBlock2D(nn.Module):
    """GroupNorm-SiLU-conv, GroupNorm + FiLM from the embedding, SiLU-dropout-conv, plus skip."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1.0 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return h + self.skip(x)


class UNet2D(nn.Module):
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
        self.levels = len(channels)
        self.conditioning = Conditioning(cond_dim, time_dim)
        self.input_proj = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.input_cond = nn.Linear(time_dim, channels[0])
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = channels[0]
        for i, ch in enumerate(channels):
            self.down.append(_ResBlock2D(prev, ch, time_dim, groups, dropout))
            prev = ch
            if i < self.levels - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid = nn.ModuleList([_ResBlock2D(prev, prev, time_dim, groups, dropout)
                                  for _ in range(2)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(self.levels)):
            ch = channels[i]
            self.up.append(_ResBlock2D(prev + ch, ch, time_dim, groups, dropout))
            prev = ch
            if i > 0:
                self.upsample.append(nn.Conv2d(ch, channels[i - 1], 3, padding=1))
                prev = channels[i - 1]
        self.out_norm = nn.GroupNorm(groups, channels[0])
        self.out_conv = nn.Conv2d(channels[0], in_channels, 3, padding=1)

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor | None,
                drop_cond: Tensor | None = None) -> Tensor:
        """Predict the diffusion target for ``x_t (N, C, H, W)`` at timesteps ``t (N,)``."""
        if x_t.ndim != 4 or x_t.shape[1] != self.in_channels:
            raise ValueError(f"expected (N, {self.in_channels}, H, W), got {tuple(x_t.shape)}")
        n, _, height, width = x_t.shape
        emb, c_emb = self.conditioning(t, cond, drop_cond, n, x_t.dtype)
        multiple = 2 ** (self.levels - 1)
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        h = F.pad(x_t, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x_t
        h = self.input_proj(h) + self.input_cond(F.silu(c_emb))[:, :, None, None]
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < self.levels - 1:
                h = self.downsample[i](h)
        for block in self.mid:
            h = block(h, emb)
        for j, block in enumerate(self.up):
            skip = skips.pop()
            h = block(torch.cat([h[..., :skip.shape[2], :skip.shape[3]], skip], dim=1), emb)
            if j < self.levels - 1:
                h = self.upsample[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.out_conv(F.silu(self.out_norm(h)))
        return out[..., :height, :width]
