"""Modalities: the one registry of what the DiffAug loop needs to know about a kind of data.

A :class:`Modality` bundles how stored rows become model tensors, the encoder and denoiser
backbones, the space kNN-mixup searches in, and the hand-designed baseline augmentation. The
training loop only talks to this interface, so images and tables plug into the same loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from diffaug_genomics.errors import InputError

if TYPE_CHECKING:
    from diffaug_genomics.config import Config

Augment = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


@dataclass(frozen=True)
class Modality:
    """What the loop needs for one kind of data.

    ``sample_shape`` below is the model-layout shape of one sample, e.g. ``(4, L)`` for DNA.
    """

    name: str
    to_model: Callable[[np.ndarray], torch.Tensor]
    """Stored rows (e.g. ``(n, L, 4) uint8``) -> model-layout float tensor (e.g. ``(n, 4, L)``)."""
    build_encoder: Callable[[Config, tuple[int, ...]], nn.Module]
    build_denoiser: Callable[[Config, tuple[int, ...], int], nn.Module]
    build_handcrafted: Callable[[Config], Augment]
    knn_features: Callable[[Any, Config, int], np.ndarray]
    """(stored rows or a zero-arg callable yielding row blocks, config, seed) -> (N, F) float32."""
    to_diffusion: Callable[[torch.Tensor], torch.Tensor]
    """Model-layout tensor -> the diffusion's space (DNA: one-hot in [0, 1] -> [-1, 1])."""
    from_diffusion: Callable[[torch.Tensor], torch.Tensor]
    """Inverse of :attr:`to_diffusion`, applied to generated samples before the encoder."""


def build_head(cfg: Config, embed_dim: int) -> nn.Module:
    """The projection head g: z -> y used only by the loss (shared by every modality)."""
    from diffaug_genomics.models.encoders import ProjectionHead

    return ProjectionHead(embed_dim, cfg.encoder.proj_hidden, cfg.encoder.proj_dim)


# ----------------------------------------------------------------------------------------- DNA
def _dna_to_model(rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rows)).permute(0, 2, 1).float()


def _dna_encoder(cfg: Config, sample_shape: tuple[int, ...]) -> nn.Module:
    from diffaug_genomics.models.encoders import ConvEncoder

    e = cfg.encoder
    return ConvEncoder(in_channels=sample_shape[0], width=e.width, n_blocks=e.n_blocks,
                       stem_kernel=e.stem_kernel, block_kernel=e.block_kernel,
                       embed_dim=e.embed_dim, rc=e.rc)


def _dna_denoiser(cfg: Config, sample_shape: tuple[int, ...], cond_dim: int) -> nn.Module:
    from diffaug_genomics.models.denoisers import UNet1D

    g = cfg.generator
    return UNet1D(in_channels=sample_shape[0], channels=tuple(g.channels), cond_dim=cond_dim,
                  time_dim=g.time_dim)


def _dna_handcrafted(cfg: Config) -> Augment:
    from diffaug_genomics.positives.handcrafted import HandcraftedDNA

    h = cfg.handcrafted
    return HandcraftedDNA(mutation_rate=tuple(h.mutation_rate), rc_prob=h.rc_prob,
                          max_shift=h.max_shift, indel_prob=h.indel_prob,
                          indel_size=tuple(h.indel_size))


def _dna_knn_features(rows: Any, cfg: Config, seed: int) -> np.ndarray:
    from diffaug_genomics.positives.knn import neighbour_features

    return neighbour_features(rows, cfg.knn.space, kmer_k=cfg.knn.kmer_k,
                              pca_dim=cfg.knn.pca_dim, seed=seed)


DNA = Modality(
    name="dna",
    to_model=_dna_to_model,
    build_encoder=_dna_encoder,
    build_denoiser=_dna_denoiser,
    build_handcrafted=_dna_handcrafted,
    knn_features=_dna_knn_features,
    to_diffusion=lambda x: x * 2.0 - 1.0,
    from_diffusion=lambda x: (x.clamp(-1.0, 1.0) + 1.0) / 2.0,
)

_REGISTRY: dict[str, Modality] = {"dna": DNA}


def register(modality: Modality) -> None:
    """Add (or replace) a modality in the registry."""
    _REGISTRY[modality.name] = modality


def get_modality(name: str) -> Modality:
    """Look a modality up by name; an unknown name is an :class:`InputError`."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown modality '{name}' (known: {', '.join(sorted(_REGISTRY))})") from None
