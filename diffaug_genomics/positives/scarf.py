"""SCARF-style corruption for tables: a hand-designed baseline, not part of DiffAug.

SCARF (Bahri et al., ICLR 2022) makes a view of a row by replacing a random subset of its
features with values drawn from those features' empirical marginal distributions. Here the
marginal is the batch's (each replaced cell takes the same feature's value from a uniformly
drawn row of the batch), then Gaussian noise is added to every feature. Inputs are scaled rows
``(B, D)``.
"""

from __future__ import annotations

import torch


class ScarfCorruption:
    """Callable ``(x (B, D), generator) -> (B, D)``.

    Args:
        corruption_rate: probability that a feature is replaced, independently per cell (SCARF
            uses 0.6).
        noise_std: standard deviation of the Gaussian noise added everywhere, in scaled units.
    """

    def __init__(self, corruption_rate: float = 0.6, noise_std: float = 0.1) -> None:
        if not 0.0 <= corruption_rate <= 1.0:
            raise ValueError(f"corruption_rate must be in [0, 1], got {corruption_rate}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.corruption_rate = float(corruption_rate)
        self.noise_std = float(noise_std)

    def __repr__(self) -> str:
        return f"ScarfCorruption(corruption_rate={self.corruption_rate}, noise_std={self.noise_std})"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.ndim != 2:
            raise ValueError(f"x must be (B, D), got {tuple(x.shape)}")
        b, d = x.shape
        if b == 0:
            return x.clone()
        dev = generator.device if generator is not None else torch.device("cpu")
        mask = (torch.rand((b, d), generator=generator, device=dev) < self.corruption_rate)
        rows = torch.randint(b, (b, d), generator=generator, device=dev)
        mask, rows = mask.to(x.device), rows.to(x.device)
        out = torch.where(mask, x.gather(0, rows), x)
        if self.noise_std > 0:
            noise = torch.randn((b, d), generator=generator, device=dev, dtype=x.dtype)
            out = out + self.noise_std * noise.to(x.device)
        return out
