"""The k-mer-spectrum encoder: composition and position of a sequence, read by a small network.

The published DiffAug code feeds its genome data to an MLP as PCA of k-mer profiles; this
module is that recipe inside the model, so it works on the one-hot rows (and on generated
positives) like any other encoder. For a ``(N, 4, L)`` input it computes two fixed feature
blocks,

- the k-mer spectrum: the frequency of each of the ``4**k`` k-mers over the positions where
  every base is called (an ``N`` position, all zeros, starts no k-mer), and
- the position profile: the flattened input ``(N, 4 * L)``,

centres them and scales each block to unit total variance (times ``position_weight`` for the
profile), then maps them to ``z`` with a linear projection plus a residual MLP. The statistics
and, with ``pca_init``, the projection's starting directions (the principal components of the
scaled features) come from the training rows through :meth:`SpectrumEncoder.fit_init`, which
the training loop calls once before the first step; the MLP's last layer starts at zero, so the
untrained encoder *is* PCA of the features and training moves it from there. Nothing in it is
domain knowledge beyond "a sequence is a string": no motifs, no reverse complement.

Generated positives are continuous: the spectrum counts the k-mers of their most likely base
at each position (the argmax, :func:`~diffaug_genomics.kmers.kmer_frequencies`), and the
profile reads them as they are. The counting has no gradient with respect to the input, which
the loop never needs.

Examples:
    >>> enc = SpectrumEncoder(length=200, kmer_k=5, width=128, n_blocks=2, embed_dim=128)
    >>> enc.fit_init(torch.nn.functional.one_hot(torch.randint(0, 4, (64, 200)), 4)
    ...              .permute(0, 2, 1).float())
    >>> enc(torch.zeros(8, 4, 200)).shape
    torch.Size([8, 128])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffaug_genomics.alphabet import reverse_complement_tensor
from diffaug_genomics.kmers import kmer_frequencies

__all__ = ["SpectrumEncoder"]


class SpectrumEncoder(nn.Module):
    """``(N, 4, L)`` -> ``(N, embed_dim)``: k-mer spectrum + position profile, projection + MLP.

    ``z = P f + g(f)`` for the scaled features ``f (N, 4**k + 4 L)``: ``P`` a linear map (the
    features' principal directions after :meth:`fit_init` when ``pca_init``), ``g`` an MLP of
    ``n_blocks`` hidden layers of ``width`` units with ReLU, its output layer initialised to
    zero.

    Args:
        length: sequence length L in bp (the position profile has ``4 * L`` features; other
            lengths are centre-cropped or padded to it).
        kmer_k: k of the spectrum (``4**k`` features).
        width: units of each hidden layer of ``g``.
        n_blocks: hidden layers of ``g``.
        embed_dim: size of z.
        position_weight: total standard deviation of the position block relative to the
            spectrum's (0: composition only).
        pca_init: start ``P`` at the principal directions of the training features.
        rc: reverse-complement-invariant embedding, ``(f(x) + f(rc(x))) / 2``. Off by
            default: it is domain knowledge.

    With L = 200, k = 5, width 128, two hidden layers, embed_dim 128: 0.46 M parameters.
    """

    def __init__(self, length: int, kmer_k: int = 5, width: int = 128, n_blocks: int = 2,
                 embed_dim: int = 128, position_weight: float = 0.7,
                 pca_init: bool = True, rc: bool = False) -> None:
        super().__init__()
        self.in_channels = 4
        self.length, self.kmer_k = length, kmer_k
        self.embed_dim = embed_dim
        self.position_weight = position_weight
        self.pca_init = pca_init
        self.rc = rc
        self.n_kmer = 4**kmer_k
        self.in_features = self.n_kmer + 4 * length
        # centring and per-block scale of the features, from the training rows (fit_init)
        self.register_buffer("mean", torch.zeros(self.in_features))
        self.register_buffer("scale", torch.ones(self.in_features))
        self.proj = nn.Linear(self.in_features, embed_dim, bias=False)
        layers: list[nn.Module] = []
        prev = self.in_features
        for _ in range(n_blocks):
            layers += [nn.Linear(prev, width), nn.ReLU()]
            prev = width
        out = nn.Linear(prev, embed_dim)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.mlp = nn.Sequential(*layers, out)

    def features(self, x: Tensor) -> Tensor:
        """``x (N, 4, L')`` -> the unscaled features ``(N, 4**k + 4 L)``: spectrum, profile.

        Any length ``L'`` works, as with the convolutional encoder (augmentations with
        insertions return longer sequences): the spectrum counts the whole input, the profile
        reads its central ``L`` positions (zero-padded on both sides when ``L' < L``)."""
        if x.ndim != 3 or x.shape[1] != 4:
            raise ValueError(f"expected (N, 4, L), got {tuple(x.shape)}")
        return torch.cat([kmer_frequencies(x, self.kmer_k), self._profile(x)], dim=1)

    def _profile(self, x: Tensor) -> Tensor:
        extra = x.shape[2] - self.length
        if extra > 0:
            x = x[:, :, extra // 2:extra // 2 + self.length]
        elif extra < 0:
            x = F.pad(x, (-extra // 2, -extra - (-extra // 2)))
        return x.flatten(1).float()

    @torch.no_grad()
    def fit_init(self, x: Tensor) -> None:
        """Set the feature statistics (and with ``pca_init`` the projection) from training rows.

        ``x (n, 4, L)``: a sample of the training rows (the loop passes up to 4,096). The
        spectrum and the profile are each scaled to unit total variance (the profile to
        ``position_weight``); the projection's rows become the top ``embed_dim`` principal
        directions of the scaled features (signs fixed so the largest loading is positive;
        directions beyond the sample's rank keep their random initialisation).
        """
        f = self.features(x)
        mean = f.mean(dim=0)
        scale = torch.ones(self.in_features, device=f.device)
        blocks = ((0, self.n_kmer, 1.0), (self.n_kmer, self.in_features, self.position_weight))
        for lo, hi, weight in blocks:
            total = (f[:, lo:hi] - mean[lo:hi]).pow(2).sum(dim=1).mean().sqrt()
            scale[lo:hi] = weight / total.clamp_min(1e-8)
        self.mean.copy_(mean)
        self.scale.copy_(scale)
        if not self.pca_init:
            return
        centred = (f - mean) * scale
        _, s, vh = torch.linalg.svd(centred.double(), full_matrices=False)
        rank = int((s > s[0] * 1e-6).sum()) if len(s) else 0
        keep = min(rank, self.embed_dim)
        comps = vh[:keep]
        signs = torch.sign(comps.gather(1, comps.abs().argmax(dim=1, keepdim=True)))
        self.proj.weight[:keep] = (comps * signs).to(self.proj.weight.dtype)

    def _embed(self, x: Tensor) -> Tensor:
        f = (self.features(x) - self.mean) * self.scale
        return self.proj(f) + self.mlp(f)

    def forward(self, x: Tensor) -> Tensor:
        """``x (N, 4, L)`` float -> ``z (N, embed_dim)``."""
        if not self.rc:
            return self._embed(x)
        return 0.5 * (self._embed(x) + self._embed(reverse_complement_tensor(x)))
