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

**Symmetries.** :meth:`SpectrumEncoder.set_symmetry` gives the encoder a group of alphabet maps
(:mod:`diffaug_genomics.alphabet_maps`) that the training data was measured to obey
(:mod:`diffaug_genomics.symmetry`); both feature blocks are then averaged over the group (the
spectrum by permuting its columns, the profile by mapping the input), so the encoder, trained or
not, gives every mapped copy of a sequence the same embedding. The group is a buffer of the
state dict (``symmetry``, one flag per map), so ``embed`` uses the run's group; encoders saved
before it existed load as the identity alone.

**The start.** With ``pca_init`` the projection's rows start at principal directions of each
block: the position profile gets as many as it has directions whose variance exceeds that of the
same rows with their positions shuffled within each row (what composition alone explains:
parallel analysis, Horn 1965, with a composition-keeping null), the spectrum the rest
(``position_dims`` fixes the number instead). On data whose signal is composition (DHS) the
start is then PCA of the spectrum; on data whose signal is position (splice sites) the profile
gets its share.

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
from diffaug_genomics.alphabet_maps import MAPS
from diffaug_genomics.kmers import kmer_frequencies
from diffaug_genomics.models.pca import principal_directions

__all__ = ["POSITION_BIAS_MIN", "SpectrumEncoder"]

POSITION_BIAS_MIN = 0.02
"""Least excess of :meth:`SpectrumEncoder.position_bias` over that of the same rows with shuffled
positions for the position profile to get starting directions (measured: DHS 0.00-0.006, splice
sites 0.08-0.17, at 500 to 10,000 rows; selection.md)."""


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
            default: it is domain knowledge (the discovered symmetry is the data's own).
        position_dims: starting directions of the projection that read the profile (None:
            measured, see the module docstring).

    With L = 200, k = 5, width 128, two hidden layers, embed_dim 128: 0.46 M parameters.
    """

    def __init__(self, length: int, kmer_k: int = 5, width: int = 128, n_blocks: int = 2,
                 embed_dim: int = 128, position_weight: float = 0.7,
                 pca_init: bool = True, rc: bool = False,
                 position_dims: int | None = None) -> None:
        super().__init__()
        self.in_channels = 4
        self.length, self.kmer_k = length, kmer_k
        self.embed_dim = embed_dim
        self.position_weight = position_weight
        self.pca_init = pca_init
        self.rc = rc
        self.position_dims = position_dims
        self.start_record: dict[str, object] = {}
        """How :meth:`fit_init` chose the start (profile directions and why): for the log."""
        self.n_kmer = 4**kmer_k
        self.in_features = self.n_kmer + 4 * length
        # centring and per-block scale of the features, from the training rows (fit_init)
        self.register_buffer("mean", torch.zeros(self.in_features))
        self.register_buffer("scale", torch.ones(self.in_features))
        # the group of alphabet maps the features are averaged over (identity alone by default)
        self.register_buffer("symmetry", _identity_mask())
        self._register_load_state_dict_pre_hook(_identity_if_missing)
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

    def set_symmetry(self, group: list[int]) -> None:
        """Average the features over the alphabet maps ``group`` (indices into
        :data:`~diffaug_genomics.alphabet_maps.MAPS`; a group holding the identity). Call it
        before :meth:`fit_init`."""
        mask = torch.zeros_like(self.symmetry)
        mask[list(group)] = True
        if not bool(mask[0]):
            raise ValueError("a symmetry group must hold the identity (map 0)")
        self.symmetry.copy_(mask)

    @property
    def group(self) -> list[int]:
        """Indices of the alphabet maps the features are averaged over."""
        return self.symmetry.nonzero().flatten().tolist()

    def features(self, x: Tensor) -> Tensor:
        """``x (N, 4, L')`` -> the unscaled features ``(N, 4**k + 4 L)``: spectrum, profile,
        each averaged over the encoder's symmetry group.

        Any length ``L'`` works, as with the convolutional encoder (augmentations with
        insertions return longer sequences): the spectrum counts the whole input, the profile
        reads its central ``L`` positions (zero-padded on both sides when ``L' < L``)."""
        if x.ndim != 3 or x.shape[1] != 4:
            raise ValueError(f"expected (N, 4, L), got {tuple(x.shape)}")
        spectrum = kmer_frequencies(x, self.kmer_k)
        group = self.group
        if len(group) == 1:
            return torch.cat([spectrum, self._profile(x)], dim=1)
        spec = sum(spectrum[:, torch.as_tensor(MAPS[g].kmer_columns(self.kmer_k).copy(),
                                               device=x.device)] for g in group) / len(group)
        prof = sum(self._profile(MAPS[g].apply(x)) for g in group) / len(group)
        return torch.cat([spec, prof], dim=1)

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
        ``position_weight``); the projection's first rows become the top principal directions
        of the scaled spectrum, its last :meth:`profile_dims` rows those of the scaled profile
        (signs fixed so the largest loading is positive; directions beyond a block's rank keep
        their random initialisation).
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
        centred = ((f - mean) * scale).double()
        d_profile = self.profile_dims(x) if self.position_weight > 0 else 0
        d_spectrum = self.embed_dim - d_profile
        for lo, hi, rows in ((0, self.n_kmer, range(0, d_spectrum)),
                             (self.n_kmer, self.in_features, range(d_spectrum, self.embed_dim))):
            comps = principal_directions(centred[:, lo:hi], len(rows))
            weight = self.proj.weight[rows.start:rows.start + len(comps)]
            weight.zero_()
            weight[:, lo:hi] = comps.to(weight.dtype)

    def profile_dims(self, x: Tensor, draws: int = 3) -> int:
        """How many starting directions read the position profile: ``position_dims`` when
        set; else 0 when the rows ``x (n, 4, L)`` have no position frame (:meth:`position_bias`
        below :data:`POSITION_BIAS_MIN`); else the number of leading principal components of
        the (scaled, centred, symmetrised) profile whose variance exceeds, rank by rank, the
        largest of ``draws`` nulls (the same rows with their positions shuffled within each
        row), at most ``embed_dim``. The figures are kept in :attr:`start_record`."""
        if self.position_dims is not None:
            self.start_record = {"profile_dims": min(self.position_dims, self.embed_dim),
                                 "reason": "encoder.position_dims"}
            return self.start_record["profile_dims"]
        gen = torch.Generator().manual_seed(0)
        bias, null_bias = self.position_bias(x), self.position_bias(_shuffle_positions(x, gen))
        record = {"position_bias": round(bias, 5), "shuffled_bias": round(null_bias, 5)}
        if bias - null_bias < POSITION_BIAS_MIN:
            self.start_record = {**record, "profile_dims": 0,
                                 "reason": "no position frame: per-position base frequencies "
                                           "differ from the pooled ones no more than "
                                           f"{POSITION_BIAS_MIN} beyond shuffled positions"}
            return 0
        lo = self.n_kmer

        def variances(rows: Tensor) -> Tensor:
            prof = self.features(rows)[:, lo:] * self.scale[lo:]
            prof = (prof - prof.mean(dim=0)).double()
            return torch.linalg.svdvals(prof) ** 2

        observed = variances(x)
        null = torch.stack([variances(_shuffle_positions(x, gen)) for _ in range(draws)])
        above = (observed > null.max(dim=0).values).tolist() + [False]
        dims = min(above.index(False), self.embed_dim)
        self.start_record = {**record, "profile_dims": dims,
                             "reason": "profile directions above shuffled positions' "
                                       "(parallel analysis)"}
        return dims

    def position_bias(self, x: Tensor) -> float:
        """How far the per-position base frequencies of ``x (n, 4, L)`` (symmetrised over the
        encoder's group) are from the pooled ones: the mean over positions, weighted by their
        called bases, of the L1 distance, 0 to 2. Padding and ``N`` (all-zero positions) count
        for nothing, so records of different lengths do not make a frame. Sequences aligned on a
        landmark (a splice junction) score high; sequences whose signal is composition score
        as low as their shuffled selves."""
        group = self.group
        x = sum(MAPS[g].apply(x) for g in group) / len(group)
        counts = x.double().sum(dim=0)  # (4, L)
        called = counts.sum(dim=0)  # bases called at each position
        if float(called.sum()) == 0:
            return 0.0
        per_position = counts / called.clamp_min(1e-12)
        pooled = counts.sum(dim=1, keepdim=True) / called.sum()
        distance = (per_position - pooled).abs().sum(dim=0)
        return float((distance * called).sum() / called.sum())

    def _embed(self, x: Tensor) -> Tensor:
        f = (self.features(x) - self.mean) * self.scale
        return self.proj(f) + self.mlp(f)

    def forward(self, x: Tensor) -> Tensor:
        """``x (N, 4, L)`` float -> ``z (N, embed_dim)``."""
        if not self.rc:
            return self._embed(x)
        return 0.5 * (self._embed(x) + self._embed(reverse_complement_tensor(x)))


def _identity_mask() -> Tensor:
    mask = torch.zeros(len(MAPS), dtype=torch.bool)
    mask[0] = True
    return mask


def _identity_if_missing(state: dict, prefix: str, *args: object) -> None:
    """A state dict saved before the ``symmetry`` buffer existed: the identity alone."""
    state.setdefault(prefix + "symmetry", _identity_mask())


def _shuffle_positions(x: Tensor, gen: torch.Generator) -> Tensor:
    """``x (n, 4, L)`` with the positions of each row in a random order (``gen``)."""
    order = torch.rand(x.shape[0], x.shape[2], generator=gen).argsort(dim=1).to(x.device)
    return x.gather(2, order.unsqueeze(1).expand(-1, x.shape[1], -1))
