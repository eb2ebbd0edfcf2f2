"""Backbones for tables and single-cell matrices: an MLP encoder and a residual-MLP denoiser.

The encoder follows the paper's bio-feature code: ``D -> 500 -> 500 -> 500 -> 50`` with
BatchNorm and LeakyReLU after every hidden layer (here ``width`` units, ``n_blocks`` hidden
layers). The denoiser is a residual MLP with the same conditioning as the U-Nets.

Examples:
    >>> enc = MLPEncoder(in_features=765, width=500, n_blocks=3, embed_dim=50)
    >>> enc(torch.zeros(8, 765)).shape
    torch.Size([8, 50])
    >>> net = ResMLPDenoiser(765, widths=(512, 512), cond_dim=50, time_dim=128)
    >>> net(torch.zeros(8, 765), torch.zeros(8, dtype=torch.long), torch.zeros(8, 50)).shape
    torch.Size([8, 765])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffaug_genomics.models.conditioning import Conditioning
from diffaug_genomics.models.pca import principal_directions

__all__ = ["MLPEncoder", "ResMLPDenoiser"]


class MLPEncoder(nn.Module):
    """``(N, in_features)`` -> ``(N, embed_dim)``: ``n_blocks`` x (Linear, BatchNorm1d,
    LeakyReLU) of ``width`` units, then a linear layer to ``embed_dim``.

    With ``pca_init`` a linear path is added, ``z = P (x - mean) + net(x)``: :meth:`fit_init`
    (called by the training loop before the first step, on training rows) sets ``mean`` and
    starts ``P`` at the rows' top ``embed_dim`` principal directions, and the network's last
    layer starts at zero, so the untrained encoder *is* PCA of its input and training moves it
    from there. A state dict saved without the path (an older run) loads as the plain MLP.
    """

    def __init__(self, in_features: int, width: int = 500, n_blocks: int = 3,
                 embed_dim: int = 50, negative_slope: float = 0.01,
                 pca_init: bool = False) -> None:
        super().__init__()
        self.in_features = in_features
        self.embed_dim = embed_dim
        layers: list[nn.Module] = []
        prev = in_features
        for _ in range(n_blocks):
            layers += [nn.Linear(prev, width), nn.BatchNorm1d(width), nn.LeakyReLU(negative_slope)]
            prev = width
        layers.append(nn.Linear(prev, embed_dim))
        self.net = nn.Sequential(*layers)
        self.proj: nn.Linear | None = None
        if pca_init:
            self.proj = nn.Linear(in_features, embed_dim, bias=False)
            self.register_buffer("mean", torch.zeros(in_features))
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)
            self._register_load_state_dict_pre_hook(self._plain_if_saved_plain)

    def _plain_if_saved_plain(self, state: dict, prefix: str, *args: object) -> None:
        if prefix + "proj.weight" not in state:  # saved before the linear path existed
            self.proj = None
            del self.mean

    @torch.no_grad()
    def fit_init(self, x: Tensor) -> None:
        """``x (n, in_features)`` training rows: ``mean`` and ``P`` from their principal
        directions (signs fixed so the largest loading is positive; directions beyond their
        rank keep the random initialisation). Nothing without ``pca_init``."""
        if self.proj is None:
            return
        mean = x.mean(dim=0)
        self.mean.copy_(mean)
        comps = principal_directions(x - mean, self.embed_dim)
        self.proj.weight[:len(comps)] = comps.to(self.proj.weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """``x (N, in_features)`` float -> ``z (N, embed_dim)``."""
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected (N, {self.in_features}), got {tuple(x.shape)}")
        if self.proj is None:
            return self.net(x)
        return self.proj(x - self.mean) + self.net(x)


class _ResMLPBlock(nn.Module):
    """LayerNorm-SiLU-Linear, LayerNorm + FiLM, SiLU-dropout-Linear, plus (projected) skip."""

    def __init__(self, in_dim: int, out_dim: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(in_dim)
        self.fc1 = nn.Linear(in_dim, out_dim)
        self.film = nn.Linear(emb_dim, 2 * out_dim)
        self.norm2 = nn.LayerNorm(out_dim)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(out_dim, out_dim)
        self.skip = nn.Linear(in_dim, out_dim) if in_dim != out_dim else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.fc1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb).chunk(2, dim=1)
        h = self.norm2(h) * (1.0 + scale) + shift
        h = self.fc2(self.dropout(F.silu(h)))
        return h + self.skip(x)


class ResMLPDenoiser(nn.Module):
    """Conditional residual MLP: ``(x_t (N, D), t (N,), cond (N, cond_dim))`` -> ``(N, D)``.

    An input projection (plus the condition embedding), one residual block per entry of
    ``widths`` (FiLM from the joint time/condition embedding in each), then
    LayerNorm-SiLU-Linear back to D. Same forward signature as the U-Nets, classifier-free
    guidance through ``drop_cond`` / ``cond=None``.
    """

    def __init__(self, in_features: int, widths: Sequence[int] = (512, 512, 512),
                 cond_dim: int = 50, time_dim: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths:
            raise ValueError("widths must name at least one block")
        self.in_features = in_features
        self.conditioning = Conditioning(cond_dim, time_dim)
        self.input_proj = nn.Linear(in_features, widths[0])
        self.input_cond = nn.Linear(time_dim, widths[0])
        self.blocks = nn.ModuleList()
        prev = widths[0]
        for w in widths:
            self.blocks.append(_ResMLPBlock(prev, w, time_dim, dropout))
            prev = w
        self.out_norm = nn.LayerNorm(prev)
        self.out = nn.Linear(prev, in_features)

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor | None,
                drop_cond: Tensor | None = None) -> Tensor:
        """Predict the diffusion target for ``x_t (N, D)`` at timesteps ``t (N,)``."""
        if x_t.ndim != 2 or x_t.shape[1] != self.in_features:
            raise ValueError(f"expected (N, {self.in_features}), got {tuple(x_t.shape)}")
        emb, c_emb = self.conditioning(t, cond, drop_cond, x_t.shape[0], x_t.dtype)
        h = self.input_proj(x_t) + self.input_cond(F.silu(c_emb))
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(self.out_norm(h)))
