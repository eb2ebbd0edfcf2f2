"""Process-group set-up from torchrun or SLURM variables, and rank-aware helpers.

Single-process runs need none of this: :func:`init_distributed` then returns rank 0 of 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that writes files (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = DistContext()


def resolve_device(name: str, ctx: DistContext = SINGLE) -> torch.device:
    """``auto`` -> cuda (this process's local GPU) if available, else mps, else cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            from diffaug_genomics.errors import InputError

            raise InputError("--device cuda requested but no CUDA device is available")
        return torch.device("cuda", ctx.local_rank % max(1, torch.cuda.device_count()))
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        from diffaug_genomics.errors import InputError

        raise InputError("--device mps requested but MPS is not available")
    return torch.device(name)


def env_context() -> DistContext:
    """Rank information from torchrun (RANK/LOCAL_RANK/WORLD_SIZE) or SLURM, else single."""
    env = os.environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return DistContext(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return DistContext(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]),
                           int(env.get("SLURM_LOCALID", 0)))
    return SINGLE
