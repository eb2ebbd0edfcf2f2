"""The ``image`` modality: PNG/JPEG folders, ``.npy`` and HDF5 image arrays.

Rows are ``(N, C, H, W) float32`` in [-1, 1]. Preprocessing (stored in the run directory): the
image size and channels, and the value range mapped to [-1, 1] (``lo``, ``hi``): the full range
of an unsigned integer dtype (0-255 for 8-bit images), else the training data's own range (0-1
when it lies inside it). Backbones: ``resnet`` encoder (CIFAR-style), ``unet2d`` denoiser,
``pca`` neighbour space, SimCLR-style hand-designed views.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from diffaug_genomics.errors import InputError
from diffaug_genomics.io.images import read_images
from diffaug_genomics.io.samples import Samples
from diffaug_genomics.modalities.arrays import (
    SampleIO,
    check_no_dna_options,
    pca_knn_features,
    rows_to_model,
)
from diffaug_genomics.modalities.base import Augment, Modality, unet_denoiser
from diffaug_genomics.models.unet2d import UNet2D

if TYPE_CHECKING:
    from diffaug_genomics.config import Config


def fit_image_preprocessing(samples: Samples, cfg: Config) -> dict[str, Any]:
    """Size, channels and value range of the training images (see the module docstring)."""
    v = samples.values
    if np.issubdtype(v.dtype, np.unsignedinteger):
        lo, hi = 0.0, float(np.iinfo(v.dtype).max)
    elif v.dtype == bool:
        lo, hi = 0.0, 1.0
    else:
        vmin, vmax = float(v.min()), float(v.max())
        lo, hi = (0.0, 1.0) if vmin >= 0.0 and vmax <= 1.0 else (vmin, vmax)
        if hi <= lo:
            hi = lo + 1.0
    return {"height": int(v.shape[1]), "width": int(v.shape[2]), "channels": int(v.shape[3]),
            "lo": lo, "hi": hi, "dtype": str(v.dtype)}


def transform_images(samples: Samples, state: dict[str, Any], source: str) -> np.ndarray:
    """``(N, H, W, C)`` values -> ``(N, C, H, W) float32`` rows in [-1, 1]."""
    v = samples.values
    h, w, c = state["height"], state["width"], state["channels"]
    if v.shape[1:3] != (h, w):
        raise InputError(f"image '{samples.ids[0]}' is {v.shape[1]}x{v.shape[2]} (height x width)"
                         f" but the run was trained on {h}x{w} images", path=source)
    x = v.astype(np.float32)
    if x.shape[3] != c:
        if x.shape[3] == 1 and c == 3:
            x = np.repeat(x, 3, axis=3)
        elif x.shape[3] == 3 and c == 1:
            x = (x * np.array([0.299, 0.587, 0.114], np.float32)).sum(axis=3, keepdims=True)
        else:
            raise InputError(f"images have {x.shape[3]} channels, the run was trained on {c}",
                             path=source)
    lo, hi = state["lo"], state["hi"]
    x = ((x - lo) / (hi - lo) * 2.0 - 1.0).clip(-1.0, 1.0)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


def inverse_images(rows: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    """``(N, C, H, W)`` rows in [-1, 1] -> ``(N, H, W, C)`` in the input's range and dtype
    (8-bit input gives uint8)."""
    lo, hi = state["lo"], state["hi"]
    x = (np.clip(rows, -1.0, 1.0) + 1.0) / 2.0 * (hi - lo) + lo
    x = x.transpose(0, 2, 3, 1)
    dtype = np.dtype(state.get("dtype", "float32"))
    if np.issubdtype(dtype, np.integer):
        return np.round(x).astype(dtype)
    return x.astype(np.float32)


def _encoder(cfg: Config, sample_shape: tuple[int, ...]) -> nn.Module:
    from diffaug_genomics.models.resnet import ResNetEncoder

    e = cfg.encoder
    return ResNetEncoder(in_channels=sample_shape[0], width=e.width, n_blocks=e.n_blocks,
                         embed_dim=e.embed_dim, image_size=(sample_shape[1], sample_shape[2]))


def _handcrafted(cfg: Config) -> Augment:
    from diffaug_genomics.positives.image_views import SimCLRViews

    i = cfg.image
    return SimCLRViews(crop_scale=tuple(i.crop_scale), crop_ratio=tuple(i.crop_ratio),
                       flip_prob=i.flip_prob, jitter_prob=i.jitter_prob,
                       brightness=i.brightness, contrast=i.contrast, saturation=i.saturation,
                       grayscale_prob=i.grayscale_prob, blur_prob=i.blur_prob,
                       blur_sigma=tuple(i.blur_sigma))


IMAGE = Modality(
    name="image",
    to_model=rows_to_model,
    build_encoder=_encoder,
    build_denoiser=unet_denoiser(UNet2D),
    build_handcrafted=_handcrafted,
    knn_features=pca_knn_features,
    to_diffusion=lambda x: x,
    from_diffusion=lambda x: x.clamp(-1.0, 1.0),
    io=SampleIO(read=read_images, fit=fit_image_preprocessing, transform=transform_images,
                inverse=inverse_images),
    encoder_backbones=("resnet",),
    denoiser_backbones=("unet2d",),
    knn_spaces=("pca",),
    presets="image",
    clip_x0=True,
    check_config=check_no_dna_options,
)
