"""Mixed precision: the compute dtype of a run's forward passes, and the autocast around them.

``precision`` (config key, ``diffaug fit --precision``) is one of:

- ``fp32``: float32 everywhere, with PyTorch's own defaults on CUDA (matrix products in full
  float32; cuDNN convolutions may use TF32, as PyTorch allows by default).
- ``bf16``: the forward passes of the encoder, its projection head and the denoiser run under
  ``torch.autocast(dtype=torch.bfloat16)``. Weights, gradients and optimiser state stay
  float32 (master weights); every model output is cast back to float32 before the contrastive
  loss, the diffusion loss and the sampler's update, which run in float32 with the noise
  schedule's float32 constants. On CUDA, the remaining float32 matrix products (the contrastive
  logits, the kNN search) use TF32.
- ``auto`` (default): ``bf16`` where the device computes bfloat16 natively (CUDA devices of
  compute capability 8.0 and newer; CPUs with AVX512-BF16 or AMX), ``fp32`` elsewhere, where
  bfloat16 is emulated and slower. Measured on this project's CPU (AVX512-BF16 + AMX, one
  thread): an encoder step 1.2x faster, a generator step 1.8x and the bank sampler 1.4x
  (``make bench-fit``).

A run is bit-exact on resume within one precision. Embeddings written by ``diffaug embed`` are
always computed in float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from diffaug_genomics.config_schema import PRECISIONS


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (not emulated)."""
    if device.type == "cuda":  # Ampere and newer; older GPUs emulate bfloat16
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``: what ``precision`` (``auto`` | ``fp32`` | ``bf16``) means on
    ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS} (got {precision!r})")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def run_precision(precision: str, records: dict[str, Any], device: torch.device) -> str:
    """``fp32`` or ``bf16``: what a trained run computes in on ``device`` (``generate``'s
    sampler). As configured; for ``auto``, what the run decided when it trained
    (``resolved_precision`` in its ``config.yaml`` ``records``: measured, not the rule) if it
    trained on this kind of device, else :func:`resolve_precision`'s rule."""
    decision = records.get("precision_decision")
    if (precision == "auto" and records.get("resolved_precision") in ("fp32", "bf16")
            and isinstance(decision, dict) and decision.get("device") == device.type
            and (records["resolved_precision"] == "fp32" or native_bf16(device))):
        return str(records["resolved_precision"])
    return resolve_precision(precision, device)


def configure_matmul(device: torch.device, precision: str) -> None:
    """TF32 float32 matrix products on CUDA when ``precision`` (resolved, see
    :func:`resolve_precision`) is ``bf16``; PyTorch's defaults are left alone otherwise."""
    if device.type == "cuda" and precision == "bf16":
        torch.set_float32_matmul_precision("high")


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """``torch.autocast`` to bfloat16 on ``device`` when ``precision`` (resolved) is ``bf16``;
    a no-op for ``fp32``."""
    if precision != "bf16":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        yield


class ModuleWrapper(nn.Module):
    """A module that only changes how ``self.module`` is called. Its ``training`` flag *is* the
    wrapped module's (code that saves ``model.training``, calls ``eval()`` and restores it, as
    the sampler does, then leaves the wrapped module as it found it)."""

    @property
    def training(self) -> bool:  # type: ignore[override]
        module = self.__dict__.get("_modules", {}).get("module")
        return module.training if module is not None else self.__dict__.get("_training", True)

    @training.setter
    def training(self, mode: bool) -> None:
        self.__dict__["_training"] = mode


class Autocast(ModuleWrapper):
    """``module`` whose forward runs under :func:`autocast` and returns float32 tensors.

    Hand it to code that only calls the model (the diffusion's loss and sampler): the wrapped
    module keeps its own parameters and ``state_dict`` keys; ``train()`` / ``eval()`` reach it.
    """

    def __init__(self, module: nn.Module, device: torch.device, precision: str) -> None:
        super().__init__()
        self.module, self.device, self.precision = module, device, precision

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with autocast(self.device, self.precision):
            out = self.module(*args, **kwargs)
        return out.float()


def wrap(module: nn.Module, device: torch.device, precision: str) -> nn.Module:
    """``module`` itself for ``fp32`` (nothing changes, bit for bit), else :class:`Autocast`."""
    return module if precision == "fp32" else Autocast(module, device, precision)
