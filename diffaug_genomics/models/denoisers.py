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

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from diffaug_genomics.models.conditioning import Conditioned, sinusoidal_embedding
from diffaug_genomics.models.unet import UNetLevels

__all__ = ["UNet1D", "sinusoidal_embedding"]


class UNet1D(UNetLevels, Conditioned):
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
        self.build_conditioning(cond_dim, time_dim)
        self.input_proj = nn.Conv1d(in_channels, channels[0], 7, padding=3)
        self.input_cond = nn.Linear(time_dim, channels[0])
        self.build_levels(channels, time_dim, groups, dropout, dims=1)

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
        emb, c_emb = self.condition(t, cond, drop_cond, n, x_t.dtype)
        h = self.input_proj(self.pad_input(x_t)) + self.input_cond(F.silu(c_emb))[:, :, None]
        return self.run_levels(h, emb, (length,))
