"""Host-to-device copies that do not stall the host.

``tensor.to("cuda")`` from ordinary (pageable) host memory makes PyTorch wait for the copy, and
so for every kernel queued before it: a training step that copies a few small tensors (batch
indices, noise, timesteps) waits for the GPU several times, and the GPU then waits for the
host to queue the next kernels. :func:`to_device` copies through pinned memory without waiting
(PyTorch keeps the pinned buffer until the copy is done). The values are the same; on a CPU it
is ``tensor.to(device)``, the very same tensor.
"""

from __future__ import annotations

import torch


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` (on the host) on ``device``: on CUDA through pinned memory without blocking
    the host, elsewhere ``tensor.to(device)``."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
