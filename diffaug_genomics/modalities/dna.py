"""The ``dna`` modality: one-hot sequences ``(N, L, 4) uint8`` stored, ``(N, 4, L)`` in the model.

Backbones: ``conv1d`` (a residual CNN) and ``spectrum`` (k-mer spectrum + position profile)
encoders, the ``unet1d`` denoiser; ``onehot-pca`` and ``kmer`` neighbour spaces;
hand-designed mutations, reverse complement, shifts and indels as the baseline; the 48
alphabet maps as candidate symmetries (:mod:`diffaug_genomics.symmetry`). Inputs are
read and positives written by :mod:`diffaug_genomics.modalities.sequences` (FASTA / one-hot
HDF5 in, FASTA out). The diffusion works on one-hot scaled to [-1, 1]; generated positives
can be snapped to one-hot (``bank.discrete``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from diffaug_genomics.alphabet_maps import MAPS
from diffaug_genomics.modalities.base import Augment, Modality, unet_denoiser
from diffaug_genomics.modalities.sequences import SEQUENCE_IO
from diffaug_genomics.models.denoisers import UNet1D
from diffaug_genomics.symmetry import SymmetryCandidates

if TYPE_CHECKING:
    from diffaug_genomics.config import Config
    from diffaug_genomics.config_schema import SymmetryConfig


def _dna_to_model(rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rows)).permute(0, 2, 1).float()


def _dna_encoder(cfg: Config, sample_shape: tuple[int, ...]) -> nn.Module:
    from diffaug_genomics.models.encoders import ConvEncoder

    e = cfg.encoder
    if e.backbone == "spectrum":
        from diffaug_genomics.models.spectrum import SpectrumEncoder

        return SpectrumEncoder(length=sample_shape[1], kmer_k=e.kmer_k, width=e.width,
                               n_blocks=e.n_blocks, embed_dim=e.embed_dim,
                               position_weight=e.position_weight, pca_init=e.pca_init,
                               rc=e.rc, position_dims=e.position_dims)
    return ConvEncoder(in_channels=sample_shape[0], width=e.width, n_blocks=e.n_blocks,
                       stem_kernel=e.stem_kernel, block_kernel=e.block_kernel,
                       embed_dim=e.embed_dim, rc=e.rc)


def _dna_handcrafted(cfg: Config) -> Augment:
    from diffaug_genomics.positives.handcrafted import HandcraftedDNA

    h = cfg.handcrafted
    return HandcraftedDNA(mutation_rate=tuple(h.mutation_rate), rc_prob=h.rc_prob,
                          max_shift=h.max_shift, indel_prob=h.indel_prob,
                          indel_size=tuple(h.indel_size))


def _dna_knn_features(rows: Any, cfg: Config, seed: int) -> np.ndarray:
    from diffaug_genomics.positives.knn import neighbour_features
    from diffaug_genomics.positives.neighbour_search import search_method

    return neighbour_features(rows, cfg.knn.space, kmer_k=cfg.knn.kmer_k,
                              pca_dim=cfg.knn.pca_dim, seed=seed,
                              compact=search_method(len(rows)) != "exact")


def _dna_to_discrete(x: torch.Tensor) -> torch.Tensor:
    """``(n, 4, L)`` continuous -> one-hot of the argmax base at each position, same dtype."""
    return torch.nn.functional.one_hot(x.argmax(dim=1), 4).permute(0, 2, 1).to(x.dtype)


def _dna_positive_stats(rows: np.ndarray, idx: np.ndarray,
                        positives: torch.Tensor) -> dict[str, float]:
    from diffaug_genomics.diagnostics import dna_positive_stats

    pos = positives.float().permute(0, 2, 1).cpu().numpy()  # (n, 4, L) -> (n, L, 4)
    return dna_positive_stats(rows[idx], pos, idx, rows)


def _kmer_statistic(rows: np.ndarray, cfg: SymmetryConfig) -> np.ndarray:
    from diffaug_genomics.kmers import kmer_counts

    return kmer_counts(rows, cfg.kmer_k, normalize=False)


DNA_SYMMETRIES = SymmetryCandidates(
    names=tuple(m.name for m in MAPS),
    statistic=_kmer_statistic,
    transform_statistic=lambda p, i, cfg: p[MAPS[i].kmer_columns(cfg.kmer_k)],
    apply=lambda x, i: MAPS[i].apply(x),
    apply_rows=lambda rows, i: MAPS[i].apply_rows(rows),
    compose=lambda i, j: MAPS[i].compose(MAPS[j]).index,
)
"""The 48 alphabet maps (:mod:`diffaug_genomics.alphabet_maps`), scored by their k-mer
distribution (``symmetry.kmer_k``)."""


DNA = Modality(
    name="dna",
    to_model=_dna_to_model,
    build_encoder=_dna_encoder,
    build_denoiser=unet_denoiser(UNet1D),
    build_handcrafted=_dna_handcrafted,
    knn_features=_dna_knn_features,
    to_diffusion=lambda x: x * 2.0 - 1.0,
    from_diffusion=lambda x: (x.clamp(-1.0, 1.0) + 1.0) / 2.0,
    io=SEQUENCE_IO,
    to_discrete=_dna_to_discrete,
    positive_stats=_dna_positive_stats,
    encoder_backbones=("conv1d", "spectrum"),
    symmetries=DNA_SYMMETRIES,
)
