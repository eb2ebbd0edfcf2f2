"""Hand-designed image augmentations in the style of SimCLR: a baseline, not part of DiffAug.

Written with torch operations only (torchvision does not run beside the CPU torch build used
here), vectorised over the batch, every draw from the given generator. Inputs and outputs are
model-layout images ``(B, C, H, W)`` scaled to [-1, 1].

Per image, in this order (SimCLR: Chen et al. 2020, appendix A):

1. random resized crop: an area fraction ``s ~ U(crop_scale)`` and an aspect ratio
   ``r ~ logU(crop_ratio)`` give a box (clipped to the image) at a uniform position, resampled
   bilinearly to the full size;
2. horizontal flip with probability ``flip_prob``;
3. colour jitter with probability ``jitter_prob``: brightness ``x * b``, contrast
   ``mean + c * (x - mean)``, saturation ``gray + s * (x - gray)`` (colour only), factors drawn
   from ``U(1 - strength, 1 + strength)``, in that fixed order (SimCLR shuffles the order and
   also jitters hue, which is left out);
4. grayscale with probability ``grayscale_prob`` (colour only);
5. Gaussian blur with probability ``blur_prob``, ``sigma ~ U(blur_sigma)`` pixels, a kernel of
   about a tenth of the image side (at least 3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_GRAY = (0.299, 0.587, 0.114)


class SimCLRViews:
    """Callable ``(x (B, C, H, W) in [-1, 1], generator) -> (B, C, H, W)``; see the module."""

    def __init__(self, crop_scale: tuple[float, float] = (0.5, 1.0),
                 crop_ratio: tuple[float, float] = (0.75, 4 / 3), flip_prob: float = 0.5,
                 jitter_prob: float = 0.8, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.4, grayscale_prob: float = 0.2, blur_prob: float = 0.5,
                 blur_sigma: tuple[float, float] = (0.1, 2.0)) -> None:
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {crop_scale}")
        self.crop_scale = (float(crop_scale[0]), float(crop_scale[1]))
        self.crop_ratio = (float(crop_ratio[0]), float(crop_ratio[1]))
        self.flip_prob = flip_prob
        self.jitter_prob = jitter_prob
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.grayscale_prob = grayscale_prob
        self.blur_prob = blur_prob
        self.blur_sigma = (float(blur_sigma[0]), float(blur_sigma[1]))

    def __repr__(self) -> str:
        return (f"SimCLRViews(crop_scale={self.crop_scale}, crop_ratio={self.crop_ratio}, "
                f"flip_prob={self.flip_prob}, jitter_prob={self.jitter_prob}, "
                f"blur_prob={self.blur_prob}, blur_sigma={self.blur_sigma})")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"x must be (B, C, H, W), got {tuple(x.shape)}")
        b, c, h, w = x.shape
        if b == 0:
            return x.clone()

        def rand(*shape: int) -> torch.Tensor:
            dev = generator.device if generator is not None else torch.device("cpu")
            return torch.rand(shape, generator=generator, device=dev).to(x.device)

        x = self._crop_flip(x, rand)
        img = (x + 1) / 2  # [0, 1]
        img = self._jitter(img, rand, c)
        if c == 3 and self.grayscale_prob > 0:
            gray = self._gray(img).expand_as(img)
            img = torch.where((rand(b) < self.grayscale_prob)[:, None, None, None], gray, img)
        if self.blur_prob > 0:
            img = self._blur(img, rand)
        return img.clamp(0, 1) * 2 - 1

    def _crop_flip(self, x: torch.Tensor, rand) -> torch.Tensor:  # noqa: ANN001
        b = x.shape[0]
        lo, hi = self.crop_scale
        area = lo + (hi - lo) * rand(b)
        log_r = math.log(self.crop_ratio[0]) + (math.log(self.crop_ratio[1])
                                                - math.log(self.crop_ratio[0])) * rand(b)
        ratio = torch.exp(log_r)
        cw = torch.sqrt(area * ratio).clamp(max=1.0)  # fraction of the width
        ch = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (1 - cw) * (2 * rand(b) - 1)  # centre in [-1 + cw, 1 - cw] (normalised coords)
        cy = (1 - ch) * (2 * rand(b) - 1)
        flip = torch.where(rand(b) < self.flip_prob, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = cw * flip
        theta[:, 0, 2] = cx
        theta[:, 1, 1] = ch
        theta[:, 1, 2] = cy
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    @staticmethod
    def _gray(img: torch.Tensor) -> torch.Tensor:
        if img.shape[1] != 3:
            return img.mean(dim=1, keepdim=True)
        wts = torch.tensor(_GRAY, device=img.device, dtype=img.dtype).view(1, 3, 1, 1)
        return (img * wts).sum(dim=1, keepdim=True)

    def _jitter(self, img: torch.Tensor, rand, c: int) -> torch.Tensor:  # noqa: ANN001
        b = img.shape[0]
        on = (rand(b) < self.jitter_prob)[:, None, None, None]

        def factor(strength: float) -> torch.Tensor:
            return (1 - strength + 2 * strength * rand(b)).view(b, 1, 1, 1)

        out = (img * factor(self.brightness)).clamp(0, 1)
        mean = self._gray(out).mean(dim=(2, 3), keepdim=True)
        out = (mean + factor(self.contrast) * (out - mean)).clamp(0, 1)
        if c == 3:
            gray = self._gray(out)
            out = (gray + factor(self.saturation) * (out - gray)).clamp(0, 1)
        return torch.where(on, out, img)

    def _blur(self, img: torch.Tensor, rand) -> torch.Tensor:  # noqa: ANN001
        b, c, h, w = img.shape
        k = max(3, int(round(0.1 * min(h, w))) // 2 * 2 + 1)
        lo, hi = self.blur_sigma
        sigma = lo + (hi - lo) * rand(b)
        offs = torch.arange(k, device=img.device, dtype=img.dtype) - k // 2
        kern = torch.exp(-(offs[None, :] ** 2) / (2 * sigma[:, None] ** 2))
        kern = kern / kern.sum(dim=1, keepdim=True)  # (B, k)
        weight = kern.repeat_interleave(c, dim=0)  # (B * C, k)
        flat = img.reshape(1, b * c, h, w)
        pad = k // 2
        out = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="replicate"),
                       weight[:, None, :, None], groups=b * c)
        out = F.conv2d(F.pad(out, (pad, pad, 0, 0), mode="replicate"),
                       weight[:, None, None, :], groups=b * c)
        out = out.reshape(b, c, h, w)
        return torch.where((rand(b) < self.blur_prob)[:, None, None, None], out, img)
