"""What the 1-D and 2-D U-Nets share: the conditioned residual block and the level structure.

:class:`~diffaug_genomics.models.denoisers.UNet1D` (DNA, ``(N, C, L)``) and
:class:`~diffaug_genomics.models.unet2d.UNet2D` (images, ``(N, C, H, W)``) differ in the number
of spatial dimensions ``dims``, their input projection, where their conditioning layers live
(on the module itself for ``UNet1D``, a ``conditioning`` sub-module for ``UNet2D``: the
parameter names of their checkpoints) and how a ``groups`` that does not divide the channels is
handled (``UNet1D`` refuses it, ``UNet2D`` falls back to 4, 2, 1); the rest is built here:

- :class:`ResBlock`: GroupNorm-SiLU-conv, GroupNorm + FiLM ``h * (1 + scale) + shift`` from the
  joint time/condition embedding, SiLU-dropout-conv, plus a (1x1 conv) skip;
- :class:`UNetLevels`: a residual block per level on the way down with a stride-2 convolution
  between levels, two in the middle, a residual block per level on the way up (skip
  concatenated) with nearest upsampling + convolution, then GroupNorm-SiLU-conv out. The input
  is padded to a multiple of ``2 ** (levels - 1)`` along every spatial dimension and the output
  cropped back.

Parameter names (``down.0.conv1.weight``, ``upsample.1.bias``, ...) are those of the U-Nets'
state dicts, and the layers are created in the order the random initialisation draws them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CONV = {1: nn.Conv1d, 2: nn.Conv2d}
"""The convolution of each number of spatial dimensions."""


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, GroupNorm + FiLM from the embedding, SiLU-dropout-conv, plus skip.

    ``(x (N, in_ch, *spatial), emb (N, emb_dim))`` -> ``(N, out_ch, *spatial)``; ``dims`` is
    the number of spatial dimensions (1 or 2).
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float,
                 dims: int = 1) -> None:
        super().__init__()
        conv = CONV[dims]
        self.dims = dims
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = conv(in_ch, out_ch, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv(out_ch, out_ch, 3, padding=1)
        self.skip = conv(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        film = self.film(emb)[(slice(None), slice(None), *(None,) * self.dims)]
        scale, shift = film.chunk(2, dim=1)
        h = self.norm2(h) * (1.0 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return h + self.skip(x)


class UNetLevels(nn.Module):
    """Base of the U-Nets: builds and runs the levels (module docstring); a subclass creates its
    conditioning and ``input_proj`` / ``input_cond`` first, then calls :meth:`build_levels`."""

    def build_levels(self, channels: Sequence[int], emb_dim: int, groups: int, dropout: float,
                     dims: int) -> None:
        """Down path, middle, up path and output layers for ``channels`` (finest first)."""
        conv = CONV[dims]
        self.levels = len(channels)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = channels[0]
        for i, ch in enumerate(channels):
            self.down.append(ResBlock(prev, ch, emb_dim, groups, dropout, dims))
            prev = ch
            if i < self.levels - 1:
                self.downsample.append(conv(ch, ch, 3, stride=2, padding=1))
        self.mid = nn.ModuleList([ResBlock(prev, prev, emb_dim, groups, dropout, dims)
                                  for _ in range(2)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(self.levels)):
            ch = channels[i]
            self.up.append(ResBlock(prev + ch, ch, emb_dim, groups, dropout, dims))
            prev = ch
            if i > 0:
                self.upsample.append(conv(ch, channels[i - 1], 3, padding=1))
                prev = channels[i - 1]
        self.out_norm = nn.GroupNorm(groups, channels[0])
        self.out_conv = conv(channels[0], self.in_channels, 3, padding=1)

    def pad_input(self, x_t: Tensor) -> Tensor:
        """``x_t`` zero-padded at the end of each spatial dimension to a multiple of
        ``2 ** (levels - 1)`` (itself when no padding is needed)."""
        multiple = 2 ** (self.levels - 1)
        pads = [(-size) % multiple for size in x_t.shape[2:]]
        if not any(pads):
            return x_t
        return F.pad(x_t, [p for pad in reversed(pads) for p in (0, pad)])

    def run_levels(self, h: Tensor, emb: Tensor, spatial: Sequence[int]) -> Tensor:
        """The levels applied to the projected input ``h`` with the embedding ``emb``; the
        output cropped to the input's ``spatial`` size."""
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
            h = block(torch.cat([_crop(h, skip.shape[2:]), skip], dim=1), emb)
            if j < self.levels - 1:
                h = self.upsample[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return _crop(self.out_conv(F.silu(self.out_norm(h))), spatial)


def _crop(x: Tensor, spatial: Sequence[int]) -> Tensor:
    """``x`` cut to ``spatial`` along its trailing dimensions (itself when it fits already)."""
    if tuple(x.shape[2:]) == tuple(spatial):
        return x
    return x[(..., *(slice(0, s) for s in spatial))]
