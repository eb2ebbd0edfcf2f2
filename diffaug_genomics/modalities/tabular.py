"""The ``tabular`` modality: CSV / TSV, ``.npy`` matrices and AnnData ``.h5ad`` (single cell).

Rows are ``(N, D) float32``: features scaled per ``tabular.scaling`` with statistics of the
training data, stored in the run directory (``center``, ``scale``: ``rows = (x - center) /
scale``): ``standard`` z-scores (a constant feature keeps scale 1), ``minmax`` maps each
feature's training range to [-1, 1], ``none`` keeps the values. Backbones: ``mlp`` encoder
(the paper's bio-feature MLP), ``resmlp`` denoiser, ``pca`` neighbour space, SCARF-style
hand-designed corruption. The sampler clips its x0 predictions at :data:`CLIP_X0` scaled units
(z-scores are not bounded like pixels, but sampling from pure noise needs some bound), so use
``standard`` or ``minmax`` scaling, or features already on a unit scale, with ``diffaug``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from diffaug_genomics.errors import InputError
from diffaug_genomics.io.samples import Samples
from diffaug_genomics.io.tables import read_tabular
from diffaug_genomics.modalities.arrays import (
    SampleIO,
    check_no_dna_options,
    pca_knn_features,
    rows_to_model,
)
from diffaug_genomics.modalities.base import Augment, Modality

if TYPE_CHECKING:
    from diffaug_genomics.config import Config

CLIP_X0 = 10.0
"""Bound of the sampler's x0 predictions, in scaled units (10 standard deviations)."""


def fit_scaling(samples: Samples, cfg: Config) -> dict[str, Any]:
    """Per-feature ``center`` and ``scale`` (float64 lists) for ``cfg.tabular.scaling``."""
    x = samples.values.astype(np.float64)
    kind = cfg.tabular.scaling
    if kind == "standard":
        center, scale = x.mean(axis=0), x.std(axis=0)
    elif kind == "minmax":
        lo, hi = x.min(axis=0), x.max(axis=0)
        center, scale = (hi + lo) / 2.0, (hi - lo) / 2.0
    else:
        center, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
    scale = np.where(scale > 1e-12, scale, 1.0)
    return {"scaling": kind, "n_features": int(x.shape[1]), "center": center.tolist(),
            "scale": scale.tolist(), "feature_names": samples.feature_names}


def transform_table(samples: Samples, state: dict[str, Any], source: str) -> np.ndarray:
    """``(N, D)`` values -> ``(N, D) float32`` scaled rows; the features must match the run's."""
    x = samples.values
    d = state["n_features"]
    if x.shape[1] != d:
        raise InputError(f"{x.shape[1]} features but the run was trained on {d}", path=source)
    trained, given = state.get("feature_names"), samples.feature_names
    if trained and given and list(trained) != list(given):
        i = next(i for i, (a, b) in enumerate(zip(trained, given, strict=True)) if a != b)
        raise InputError(f"feature {i + 1} is '{given[i]}' but the run was trained with "
                         f"'{trained[i]}' there (same features in the same order needed)",
                         path=source)
    center = np.asarray(state["center"], dtype=np.float64)
    scale = np.asarray(state["scale"], dtype=np.float64)
    return ((x.astype(np.float64) - center) / scale).astype(np.float32)


def inverse_table(rows: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    """Scaled rows ``(N, D)`` -> values in the input's units, ``(N, D) float32``."""
    center = np.asarray(state["center"], dtype=np.float64)
    scale = np.asarray(state["scale"], dtype=np.float64)
    return (np.asarray(rows, dtype=np.float64) * scale + center).astype(np.float32)


def _encoder(cfg: Config, sample_shape: tuple[int, ...]) -> nn.Module:
    from diffaug_genomics.models.mlp import MLPEncoder

    e = cfg.encoder
    return MLPEncoder(sample_shape[0], width=e.width, n_blocks=e.n_blocks, embed_dim=e.embed_dim,
                      pca_init=e.pca_init)


def _denoiser(cfg: Config, sample_shape: tuple[int, ...], cond_dim: int) -> nn.Module:
    from diffaug_genomics.models.mlp import ResMLPDenoiser

    g = cfg.generator
    return ResMLPDenoiser(sample_shape[0], widths=tuple(g.channels), cond_dim=cond_dim,
                          time_dim=g.time_dim)


def _handcrafted(cfg: Config) -> Augment:
    from diffaug_genomics.positives.scarf import ScarfCorruption

    return ScarfCorruption(cfg.tabular.corruption_rate, cfg.tabular.noise_std)


TABULAR = Modality(
    name="tabular",
    to_model=rows_to_model,
    build_encoder=_encoder,
    build_denoiser=_denoiser,
    build_handcrafted=_handcrafted,
    knn_features=pca_knn_features,
    to_diffusion=lambda x: x,
    from_diffusion=lambda x: x,
    io=SampleIO(read=read_tabular, fit=fit_scaling, transform=transform_table,
                inverse=inverse_table),
    encoder_backbones=("mlp",),
    denoiser_backbones=("resmlp",),
    knn_spaces=("pca",),
    presets="tabular",
    clip_x0=CLIP_X0,
    check_config=check_no_dna_options,
)
