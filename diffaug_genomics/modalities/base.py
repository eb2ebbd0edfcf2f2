"""The modality interface: what the DiffAug loop, ``embed``, ``generate`` and ``evaluate`` need to
know about a kind of data.

A :class:`Modality` bundles how stored rows become model tensors, the encoder and denoiser
backbones, the space kNN-mixup searches in, and the hand-designed baseline augmentation. Its
:attr:`Modality.io` (a :class:`~diffaug_genomics.modalities.interface.ModalityIO`, the
interface's input / output half, which every modality sets) reads inputs into rows in chunks
with ids and labels, writes embeddings and generated positives, and gives raw features to
``evaluate``: sequences (:mod:`diffaug_genomics.modalities.sequences`: FASTA / one-hot HDF5 in,
FASTA out; ``io=SEQUENCE_IO``) or arrays with a fitted preprocessing
(:mod:`diffaug_genomics.modalities.arrays`: images, tables). The interface imports none of its
implementations. The training loop only talks to this interface, so every modality plugs into the same
loop, and ``embed`` / ``generate`` exist once.

The registry of modalities (built-ins, entry points, ``--backbone``) is
:mod:`diffaug_genomics.modalities.registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from diffaug_genomics.symmetry import SymmetryCandidates

if TYPE_CHECKING:
    from diffaug_genomics.config import Config
    from diffaug_genomics.modalities.interface import ModalityIO

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
    io: ModalityIO
    """How inputs are read and preprocessed into rows, and outputs written: a
    :class:`~diffaug_genomics.modalities.arrays.SampleIO` for images and tables,
    :data:`~diffaug_genomics.modalities.sequences.SEQUENCE_IO` for DNA (and plugins of
    sequences: FASTA / one-hot HDF5 in, FASTA out)."""
    encoder_backbones: tuple[str, ...] = ("conv1d",)
    """Values of ``encoder.backbone`` that :attr:`build_encoder` understands."""
    denoiser_backbones: tuple[str, ...] = ("unet1d",)
    """Values of ``generator.backbone`` that :attr:`build_denoiser` understands."""
    knn_spaces: tuple[str, ...] = ("onehot-pca", "kmer")
    """Values of ``knn.space`` that :attr:`knn_features` understands (``embedding`` is always
    available: the loop computes it from the encoder)."""
    presets: str = "dna"
    """Preset family: ``dna`` reads ``resources/presets/NAME.yaml``; any other family ``F``
    reads ``resources/presets/F/base.yaml`` then ``resources/presets/F/NAME.yaml``."""
    clip_x0: bool | float = True
    """Clip the sampler's x0 predictions to [-1, 1] (True), to [-c, c] for a number c (for
    unbounded data such as z-scores), or not at all (False: unstable when sampling from pure
    noise)."""
    check_config: Callable[[Config], None] | None = None
    """Extra validation of a configuration; raises :class:`ConfigError` naming the key."""
    to_discrete: Callable[[torch.Tensor], torch.Tensor] | None = None
    """Snap generated model-layout samples to the data's discrete values (``bank.discrete``;
    DNA: argmax one-hot). None: the data is continuous and ``bank.discrete`` is an error."""
    positive_stats: Callable[[np.ndarray, np.ndarray, torch.Tensor], dict[str, float]] | None = None
    """(stored rows, indices of the sources, their generated positives in model layout) ->
    label-free statistics of the positives, named as ``metrics.csv`` 's ``pos_*`` columns
    (DNA: :func:`~diffaug_genomics.diagnostics.dna_positive_stats`). None: not recorded."""
    symmetries: SymmetryCandidates | None = None
    """Candidate transforms whose invariance :func:`~diffaug_genomics.symmetry.discover`
    measures on the training rows (DNA: the 48 alphabet maps). None: no discovery."""


def build_head(cfg: Config, embed_dim: int) -> nn.Module:
    """The projection head g: z -> y used only by the loss (shared by every modality)."""
    from diffaug_genomics.models.encoders import ProjectionHead

    return ProjectionHead(embed_dim, cfg.encoder.proj_hidden, cfg.encoder.proj_dim)


def unet_denoiser(network: Callable[..., nn.Module]
                  ) -> Callable[[Config, tuple[int, ...], int], nn.Module]:
    """A :attr:`Modality.build_denoiser` for a U-Net class (``UNet1D``, ``UNet2D``): the
    sample's channels in and out, ``generator.channels`` per level, ``generator.time_dim``."""

    def build(cfg: Config, sample_shape: tuple[int, ...], cond_dim: int) -> nn.Module:
        g = cfg.generator
        return network(in_channels=sample_shape[0], channels=tuple(g.channels),
                       cond_dim=cond_dim, time_dim=g.time_dim)

    return build
