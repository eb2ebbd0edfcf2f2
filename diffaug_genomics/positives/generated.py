"""Generated positives: samples of the conditional diffusion model, conditioned on embeddings.

One function draws them for the training loop's bank refresh and for ``diffaug generate``, so
both use the same sampler settings (``bank``: sampler, eta, SDEdit strength from the noised
source, classifier-free guidance, x0 clipping of the modality).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from diffaug_genomics.config import BankConfig

if TYPE_CHECKING:
    from diffaug_genomics.diffusion import Diffusion

__all__ = ["generated_positives"]


def generated_positives(diffusion: Diffusion, denoiser: nn.Module, bank: BankConfig,
                        x0: Tensor, cond: Tensor, per_sequence: int, *, steps: int,
                        strength: float, guidance_scale: float, generator: torch.Generator,
                        clip_x0: bool | float) -> Tensor:
    """``per_sequence`` positives of each sample of a batch ``x0`` ``(n, ...)`` in the
    diffusion's space (the modality's ``to_diffusion`` of its model layout), conditioned on
    its embedding ``cond`` ``(n, D)``; ``clip_x0`` is the modality's.

    Returns ``(n * per_sequence, ...)`` in the diffusion's space, the samples of one source
    consecutive (one sampler call for the whole block; with ``per_sequence = 1`` the same draws
    as sampling ``x0`` alone).
    """
    xk = x0.repeat_interleave(per_sequence, dim=0)
    ck = cond.repeat_interleave(per_sequence, dim=0)
    return diffusion.sample(denoiser, ck, tuple(xk.shape), steps=steps, sampler=bank.sampler,
                            eta=bank.eta, strength=strength, x_init=xk,
                            guidance_scale=guidance_scale, generator=generator, clip_x0=clip_x0)
