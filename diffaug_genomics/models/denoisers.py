"""Conditional 1D U-Net denoiser for the diffusion generator.

Input ``x_t (N, C, L)`` is the noised continuous relaxation of one-hot DNA (``2 * onehot - 1``
plus noise), ``t (N,)`` integer timesteps, ``cond (N, cond_dim)`` the frozen encoder embedding z.
Output ``(N, C, L)``: the prediction target of :class:`diffaug_genomics.diffusion.Diffusion`
(noise or v). Any ``L >= 1`` works: the input is padded to a multiple of ``2 ** (levels - 1)``
and the output cropped back.

Conditioning is made hard to ignore, since a calibration run found a plain additive condition
nearly unused:

* the condition is layer-normalised (so the scale of the encoder's embedding, which drifts
  between rounds, does not matter), then mapped by its own MLP;
* time and condition embeddings (each from its own MLP) are concatenated and mixed by a joint
  layer, so how strongly the condition modulates a block can depend on the noise level; every
  residual block (down, middle and up path) gets FiLM ``h * (1 + scale) + shift`` from it;
* the condition embedding is also added, per channel, to the input projection, so it reaches the
  first features before any skip connection can bypass it;
* classifier-free guidance: a learned null vector replaces the (normalised) condition where
  ``drop_cond`` is True, or everywhere when ``cond`` is None.

Examples:
    >>> net = UNet1D(channels=(48, 96, 96), cond_dim=128)
    >>> out = net(x_t, t, z)                              # (N, 4, L)
    >>> out_null = net(x_t, t, z, drop_cond=torch.ones(N, dtype=torch.bool))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["UNet1D", "sinusoidal_embedding"]


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer-style embedding of timesteps ``t (N,)`` (int or float) -> ``(N, dim)`` float32.

    ``[cos(t * f_k), sin(t * f_k)]`` with ``f_k = max_period ** (-k / (dim // 2))``; an odd
    ``dim`` gets a trailing zero column.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, GroupNorm + FiLM from the embedding, SiLU-dropout-conv, plus skip."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv1d(in_ch, out_ch, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None].chunk(2, dim=1)
        h = self.norm2(h) * (1.0 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return h + self.skip(x)


def select_condition(null_cond: Tensor, cond_norm: nn.Module, cond: Tensor | None,
                     drop_cond: Tensor | None, n: int) -> Tensor:
    """The normalised condition ``(n, cond_dim)``, with the learned null vector ``null_cond``
    where ``drop_cond`` is True, or everywhere when ``cond`` is None (classifier-free guidance).
    Shared by every denoiser."""
    null = null_cond.expand(n, -1)
    if cond is None:
        return null
    if cond.shape != (n, null_cond.shape[0]):
        raise ValueError(f"cond must be ({n}, {null_cond.shape[0]}), got {tuple(cond.shape)}")
    c = cond_norm(cond.to(null.dtype))
    if drop_cond is not None:
        c = torch.where(drop_cond.to(device=c.device, dtype=torch.bool)[:, None], null, c)
    return c


class UNet1D(nn.Module):
    """Conditional 1D U-Net: ``(x_t (N, C, L), t (N,), cond (N, cond_dim))`` -> ``(N, C, L)``.

    Levels: one per entry of ``channels`` (lengths L, L/2, L/4, ... for the default three).
    Down path: a residual block per level, then a stride-2 convolution between levels; middle:
    two residual blocks at the coarsest level; up path: per level, concatenate the skip and run
    a residual block, then nearest upsampling + convolution. Output: GroupNorm-SiLU-conv
    (not zero-initialised, so the condition and every weight get a gradient from step one).

    Args:
        in_channels: channels of x (4 for DNA); the output has the same.
        channels: channels per level, finest first.
        cond_dim: size of the condition (the encoder's ``embed_dim``).
        time_dim: size of the time embedding and of the condition embedding.
        groups: GroupNorm groups; must divide every entry of ``channels``.
        dropout: dropout inside the residual blocks.

    With the defaults (48, 96, 96), cond_dim = time_dim = 128: 816k parameters.
    """

    def __init__(
        self,
        in_channels: int = 4,
        channels: Sequence[int] = (48, 96, 96),
        cond_dim: int = 128,
        time_dim: int = 128,
        groups: int = 8,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if not channels:
            raise ValueError("channels must name at least one level")
        bad = [c for c in channels if c % groups]
        if bad:
            raise ValueError(f"groups={groups} must divide every entry of channels, not {bad}")
        self.in_channels = in_channels
        self.channels = channels
        self.cond_dim = cond_dim
        self.time_dim = time_dim
        self.levels = len(channels)
        emb_dim = time_dim

        self.time_mlp = nn.Sequential(
            nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
        )
        self.cond_norm = nn.LayerNorm(cond_dim)
        self.null_cond = nn.Parameter(torch.randn(cond_dim) * 0.02)
        self.cond_mlp = nn.Sequential(
            nn.Linear(cond_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
        )
        # Time and condition meet in a joint layer, so how much the condition modulates a
        # block can depend on the noise level.
        self.joint_mlp = nn.Sequential(nn.SiLU(), nn.Linear(2 * time_dim, emb_dim), nn.SiLU())
        self.input_proj = nn.Conv1d(in_channels, channels[0], 7, padding=3)
        self.input_cond = nn.Linear(time_dim, channels[0])

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = channels[0]
        for i, ch in enumerate(channels):
            self.down.append(_ResBlock(prev, ch, emb_dim, groups, dropout))
            prev = ch
            if i < self.levels - 1:
                self.downsample.append(nn.Conv1d(ch, ch, 3, stride=2, padding=1))

        self.mid = nn.ModuleList(
            [_ResBlock(prev, prev, emb_dim, groups, dropout) for _ in range(2)]
        )

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(self.levels)):
            ch = channels[i]
            self.up.append(_ResBlock(prev + ch, ch, emb_dim, groups, dropout))
            prev = ch
            if i > 0:
                self.upsample.append(nn.Conv1d(ch, channels[i - 1], 3, padding=1))
                prev = channels[i - 1]

        self.out_norm = nn.GroupNorm(groups, channels[0])
        self.out_conv = nn.Conv1d(channels[0], in_channels, 3, padding=1)

    def embed_condition(self, cond: Tensor | None, drop_cond: Tensor | None, n: int) -> Tensor:
        """Condition embedding ``(n, time_dim)``: the null vector where dropped or absent."""
        return self.cond_mlp(select_condition(self.null_cond, self.cond_norm, cond, drop_cond, n))

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        cond: Tensor | None,
        drop_cond: Tensor | None = None,
    ) -> Tensor:
        """Predict the diffusion target.

        Args:
            x_t: ``(N, in_channels, L)`` noised sample.
            t: ``(N,)`` integer timesteps in ``[0, T)`` (a scalar is broadcast).
            cond: ``(N, cond_dim)`` condition, or None for the unconditional (null) model.
            drop_cond: ``(N,)`` bool, True where the null condition replaces ``cond``.

        Returns:
            ``(N, in_channels, L)``.
        """
        if x_t.ndim != 3 or x_t.shape[1] != self.in_channels:
            raise ValueError(f"expected (N, {self.in_channels}, L), got {tuple(x_t.shape)}")
        n, _, length = x_t.shape
        if t.ndim == 0:
            t = t.expand(n)
        t_emb = self.time_mlp(sinusoidal_embedding(t, self.time_dim).to(x_t.dtype))
        c_emb = self.embed_condition(cond, drop_cond, n)
        emb = self.joint_mlp(torch.cat([t_emb, c_emb], dim=1))

        multiple = 2 ** (self.levels - 1)
        pad = (-length) % multiple
        h = F.pad(x_t, (0, pad)) if pad else x_t
        h = self.input_proj(h) + self.input_cond(F.silu(c_emb))[:, :, None]

        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < self.levels - 1:
                h = self.downsample[i](h)
        for block in self.mid:
            h = block(h, emb)
        for j, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if j < self.levels - 1:
                h = self.upsample[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.out_conv(F.silu(self.out_norm(h)))
        return out[..., :length] if pad else out
