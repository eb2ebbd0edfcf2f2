"""``torch.compile`` as an option (``compile: true``, ``diffaug fit --compile``), with a fallback.

:func:`maybe_compile` returns a module whose forward is the compiled graph of ``module``; the
first call compiles it. When compiling fails (no C++ compiler on a CPU node, an operator the
compiler does not support, an old GPU), one warning line is logged and that module runs eagerly
from then on: a run never fails because of ``--compile``. The wrapped module keeps its own
parameters and ``state_dict`` keys, so checkpoints are the same with and without compiling.

``$DIFFAUG_COMPILE_MODE`` names ``torch.compile``'s ``mode`` (e.g. ``reduce-overhead``: CUDA
graphs, which remove the kernel-launch cost of small steps on a GPU); unset, PyTorch's default.
Not measured on a GPU yet (``benchmarks/gpu_fit.py --compile-mode`` measures it), so nothing
sets it by default.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from diffaug_genomics.progress import LOG
from diffaug_genomics.train.precision import ModuleWrapper


def _compile_backward_with_forward() -> None:
    """Lower the backward graph when the forward is compiled (not at the first
    ``backward()``), so a compiler failure surfaces in the guarded forward call."""
    try:
        import torch._functorch.config as functorch_config
    except ImportError:  # pragma: no cover - an older torch
        return
    if hasattr(functorch_config, "force_non_lazy_backward_lowering"):
        functorch_config.force_non_lazy_backward_lowering = True


class Compiled(ModuleWrapper):
    """``module`` run through ``torch.compile`` (see the module docstring)."""

    def __init__(self, module: nn.Module, name: str) -> None:
        super().__init__()
        self.module, self.name = module, name
        _compile_backward_with_forward()
        # kept out of the submodules: its parameters are ``module``'s
        mode = os.environ.get("DIFFAUG_COMPILE_MODE") or None
        self.__dict__["_compiled"] = torch.compile(module, mode=mode)
        self.failed = False

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            try:
                return self.__dict__["_compiled"](*args, **kwargs)
            except torch.OutOfMemoryError:
                raise  # not a compiler failure: eager would run out of memory too
            except Exception as exc:  # the compiler's failures have no common base class
                self.failed = True
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                LOG.warning("--compile: compiling the %s failed (%s: %s); it runs without "
                            "compiling", self.name, type(exc).__name__, first)
        return self.module(*args, **kwargs)


def maybe_compile(module: nn.Module, enabled: bool, name: str) -> nn.Module:
    """``module`` itself when ``enabled`` is False, else :class:`Compiled` ``(module)``."""
    return Compiled(module, name) if enabled else module
