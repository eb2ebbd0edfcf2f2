"""The denoisers' conditioning, shared by :class:`~diffaug_genomics.models.denoisers.UNet1D`,
:class:`~diffaug_genomics.models.unet2d.UNet2D` and
:class:`~diffaug_genomics.models.mlp.ResMLPDenoiser`.

The scheme (see the :mod:`~diffaug_genomics.models.denoisers` module docstring for why): the
condition (the frozen encoder's embedding z) is layer-normalised and mapped by its own MLP; a
learned null vector replaces it where ``drop_cond`` is True or everywhere when ``cond`` is None
(classifier-free guidance); time and condition embeddings meet in a joint layer whose output
drives FiLM in every block; the condition embedding is also returned on its own so that it can
be added to the input projection.

:class:`Conditioned` holds the layers as attributes of the denoiser itself (``UNet1D``'s state
dict: ``time_mlp.*``, ``cond_norm.*``, ``null_cond``, ``cond_mlp.*``, ``joint_mlp.*``);
:class:`Conditioning` is the same as a sub-module (``conditioning.*`` in the others).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Conditioned", "Conditioning", "sinusoidal_embedding"]


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


class Conditioned(nn.Module):
    """Base of a module that owns the conditioning layers (module docstring)."""

    def build_conditioning(self, cond_dim: int, time_dim: int) -> None:
        """Create the layers, in the order the random initialisation draws them."""
        self.cond_dim = cond_dim
        self.time_dim = time_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.cond_norm = nn.LayerNorm(cond_dim)
        self.null_cond = nn.Parameter(torch.randn(cond_dim) * 0.02)
        self.cond_mlp = nn.Sequential(
            nn.Linear(cond_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        # Time and condition meet in a joint layer, so how much the condition modulates a
        # block can depend on the noise level.
        self.joint_mlp = nn.Sequential(nn.SiLU(), nn.Linear(2 * time_dim, time_dim), nn.SiLU())

    def embed_condition(self, cond: Tensor | None, drop_cond: Tensor | None, n: int) -> Tensor:
        """Condition embedding ``(n, time_dim)`` of the normalised condition, with the learned
        null vector where ``drop_cond`` is True, or everywhere when ``cond`` is None
        (classifier-free guidance)."""
        null = self.null_cond.expand(n, -1)
        if cond is None:
            return self.cond_mlp(null)
        if cond.shape != (n, self.cond_dim):
            raise ValueError(f"cond must be ({n}, {self.cond_dim}), got {tuple(cond.shape)}")
        c = self.cond_norm(cond.to(null.dtype))
        if drop_cond is not None:
            c = torch.where(drop_cond.to(device=c.device, dtype=torch.bool)[:, None], null, c)
        return self.cond_mlp(c)

    def condition(self, t: Tensor, cond: Tensor | None, drop_cond: Tensor | None, n: int,
                  dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``(t (N,) or a scalar, cond (N, cond_dim) | None, drop_cond (N,) | None)`` ->
        ``(emb (N, time_dim), c_emb (N, time_dim))``: the joint FiLM embedding and the
        condition's."""
        if t.ndim == 0:
            t = t.expand(n)
        t_emb = self.time_mlp(sinusoidal_embedding(t, self.time_dim).to(dtype))
        c_emb = self.embed_condition(cond, drop_cond, n)
        return self.joint_mlp(torch.cat([t_emb, c_emb], dim=1)), c_emb


class Conditioning(Conditioned):
    """The conditioning layers as a sub-module: ``(t, cond, drop_cond, n, dtype)`` ->
    ``(emb (N, time_dim), c_emb (N, time_dim))`` (see :meth:`Conditioned.condition`)."""

    def __init__(self, cond_dim: int, time_dim: int) -> None:
        super().__init__()
        self.build_conditioning(cond_dim, time_dim)

    def forward(self, t: Tensor, cond: Tensor | None, drop_cond: Tensor | None, n: int,
                dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        return self.condition(t, cond, drop_cond, n, dtype)
