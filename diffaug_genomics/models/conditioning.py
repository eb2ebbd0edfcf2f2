"""The denoisers' conditioning, shared by :class:`UNet2D` and :class:`ResMLPDenoiser`.

The same scheme as :class:`~diffaug_genomics.models.denoisers.UNet1D` (see its module
docstring): the condition (the frozen encoder's embedding z) is layer-normalised and mapped by
its own MLP; a learned null vector replaces it where ``drop_cond`` is True or everywhere when
``cond`` is None (classifier-free guidance); time and condition embeddings meet in a joint layer
whose output drives FiLM in every block; the condition embedding is also returned on its own so
that it can be added to the input projection.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from diffaug_genomics.models.denoisers import select_condition, sinusoidal_embedding


class Conditioning(nn.Module):
    """``(t (N,), cond (N, cond_dim) | None, drop_cond (N,) | None)`` ->
    ``(emb (N, time_dim), c_emb (N, time_dim))``: the joint FiLM embedding and the condition's.
    """

    def __init__(self, cond_dim: int, time_dim: int) -> None:
        super().__init__()
        self.cond_dim = cond_dim
        self.time_dim = time_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.cond_norm = nn.LayerNorm(cond_dim)
        self.null_cond = nn.Parameter(torch.randn(cond_dim) * 0.02)
        self.cond_mlp = nn.Sequential(
            nn.Linear(cond_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.joint_mlp = nn.Sequential(nn.SiLU(), nn.Linear(2 * time_dim, time_dim), nn.SiLU())

    def forward(self, t: Tensor, cond: Tensor | None, drop_cond: Tensor | None, n: int,
                dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        if t.ndim == 0:
            t = t.expand(n)
        t_emb = self.time_mlp(sinusoidal_embedding(t, self.time_dim).to(dtype))
        c = select_condition(self.null_cond, self.cond_norm, cond, drop_cond, n)
        c_emb = self.cond_mlp(c)
        return self.joint_mlp(torch.cat([t_emb, c_emb], dim=1)), c_emb
