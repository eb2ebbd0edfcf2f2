"""Modalities: the one registry of what the DiffAug loop needs to know about a kind of data.

A :class:`Modality` bundles how stored rows become model tensors, the encoder and denoiser
backbones, the space kNN-mixup searches in, and the hand-designed baseline augmentation. The
training loop only talks to this interface, so images and tables plug into the same loop.

Built-in modalities: ``dna`` (defined here), ``image`` and ``tabular``
(:mod:`diffaug_genomics.modalities`, imported on first use). Third parties add theirs without
editing the library, in one of two ways:

- a Python entry point in the group :data:`ENTRY_POINT_GROUP` (``diffaug_genomics.backbones``)
  whose name is the modality's name and whose object is a zero-argument factory returning a
  :class:`Modality`; it is loaded the first time that name is asked for;
- ``--backbone package.module:factory`` on the command line (:func:`load_backbone`): the user
  names code to import, the library imports it and calls the factory.

Configuration files only *name* a registered modality and its backbones; nothing in a config
is ever imported or executed.

Examples:
    >>> import dataclasses
    >>> from diffaug_genomics.models.registry import get_modality
    >>> def factory():  # a tabular variant with its own encoder
    ...     base = get_modality("tabular")
    ...     return dataclasses.replace(base, name="my-tab", encoder_backbones=("linear",),
    ...                                build_encoder=my_build_encoder)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from diffaug_genomics.errors import ConfigError, InputError

if TYPE_CHECKING:
    from diffaug_genomics.config import Config
    from diffaug_genomics.samples import SampleIO

ENTRY_POINT_GROUP = "diffaug_genomics.backbones"
"""Entry-point group of third-party modalities (each a zero-argument factory of a Modality)."""

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
    io: SampleIO | None = None
    """How inputs are read and preprocessed into rows (None: DNA's FASTA / one-hot HDF5 path)."""
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
    if e.backbone == "spectrum":
        from diffaug_genomics.models.spectrum import SpectrumEncoder

        return SpectrumEncoder(length=sample_shape[1], kmer_k=e.kmer_k, width=e.width,
                               n_blocks=e.n_blocks, embed_dim=e.embed_dim,
                               position_weight=e.position_weight, pca_init=e.pca_init,
                               rc=e.rc)
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


def _dna_to_discrete(x: torch.Tensor) -> torch.Tensor:
    """``(n, 4, L)`` continuous -> one-hot of the argmax base at each position, same dtype."""
    return torch.nn.functional.one_hot(x.argmax(dim=1), 4).permute(0, 2, 1).to(x.dtype)


def _dna_positive_stats(rows: np.ndarray, idx: np.ndarray,
                        positives: torch.Tensor) -> dict[str, float]:
    from diffaug_genomics.diagnostics import dna_positive_stats

    pos = positives.float().permute(0, 2, 1).cpu().numpy()  # (n, 4, L) -> (n, L, 4)
    return dna_positive_stats(rows[idx], pos, idx, rows)


DNA = Modality(
    name="dna",
    to_model=_dna_to_model,
    build_encoder=_dna_encoder,
    build_denoiser=_dna_denoiser,
    build_handcrafted=_dna_handcrafted,
    knn_features=_dna_knn_features,
    to_diffusion=lambda x: x * 2.0 - 1.0,
    from_diffusion=lambda x: (x.clamp(-1.0, 1.0) + 1.0) / 2.0,
    to_discrete=_dna_to_discrete,
    positive_stats=_dna_positive_stats,
    encoder_backbones=("conv1d", "spectrum"),
)

_REGISTRY: dict[str, Modality] = {"dna": DNA}
_BUILTIN_LAZY: dict[str, str] = {"image": "diffaug_genomics.modalities.image:IMAGE",
                                 "tabular": "diffaug_genomics.modalities.tabular:TABULAR"}


def register(modality: Modality) -> None:
    """Add (or replace) a modality in the registry."""
    if not isinstance(modality, Modality):
        raise TypeError(f"expected a Modality, got {type(modality).__name__}")
    _REGISTRY[modality.name] = modality


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_modalities() -> list[str]:
    """Names of every modality that :func:`get_modality` can return (plugins not yet loaded)."""
    return sorted(set(_REGISTRY) | set(_BUILTIN_LAZY) | set(_entry_points()))


def _from_factory(factory: Callable[[], Any], what: str) -> Modality:
    try:
        modality = factory()
    except Exception as exc:  # third-party code: report, do not crash with a traceback
        raise InputError(f"{what}: the factory failed ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(modality, Modality):
        raise InputError(f"{what}: the factory returned {type(modality).__name__}, not a "
                         "diffaug_genomics Modality")
    return modality


def get_modality(name: str) -> Modality:
    """Look a modality up by name: built-ins, registered ones, then entry points.

    An unknown name is an :class:`InputError` listing the known ones.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTIN_LAZY:
        module, attr = _BUILTIN_LAZY[name].split(":")
        register(getattr(importlib.import_module(module), attr))
        return _REGISTRY[name]
    ep = _entry_points().get(name)
    if ep is None:
        raise InputError(f"unknown modality '{name}' (known: {', '.join(available_modalities())};"
                         f" plugins register under the entry-point group '{ENTRY_POINT_GROUP}' "
                         "or load with --backbone package.module:factory)")
    try:
        factory = ep.load()
    except Exception as exc:
        raise InputError(f"entry point '{name}' ({ep.value}): cannot load "
                         f"({exc.__class__.__name__}: {exc})") from None
    modality = _from_factory(factory, f"entry point '{name}' ({ep.value})")
    if modality.name != name:
        raise InputError(f"entry point '{name}' ({ep.value}) returned a modality named "
                         f"'{modality.name}'; the names must match")
    register(modality)
    return modality


def load_backbone(spec: str) -> Modality:
    """Import ``package.module:factory``, call the factory and register the modality it returns.

    This runs the user's code on the user's request (a command-line option); configuration
    files can only name modalities that are already registered.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise InputError(f"--backbone '{spec}': expected package.module:factory")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise InputError(f"--backbone '{spec}': cannot import {module_name} "
                         f"({exc.__class__.__name__}: {exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError(f"--backbone '{spec}': {module_name} has no callable '{attr}'")
    modality = _from_factory(factory, f"--backbone '{spec}'")
    register(modality)
    return modality


def validate_config(modality: Modality, cfg: Config) -> None:
    """Check that the configuration names backbones and a neighbour space the modality has.

    Raises :class:`ConfigError` naming the key and the values the modality offers.
    """
    checks = (("encoder.backbone", cfg.encoder.backbone, modality.encoder_backbones),
              ("generator.backbone", cfg.generator.backbone, modality.denoiser_backbones),
              ("knn.space", cfg.knn.space, (*modality.knn_spaces, "embedding")))
    for key, value, allowed in checks:
        if value not in allowed:
            raise ConfigError(f"config key '{key}': {value!r} is not available for modality "
                              f"'{modality.name}' (choose from {', '.join(allowed)})")
    if cfg.bank.discrete and modality.to_discrete is None:
        raise ConfigError(f"config key 'bank.discrete': modality '{modality.name}' has continuous "
                          "data; set it to false")
    if modality.check_config is not None:
        modality.check_config(cfg)
