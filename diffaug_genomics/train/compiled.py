"""``torch.compile`` as an option (``compile: true``, ``diffaug fit --compile``), with a fallback.

:func:`maybe_compile` returns a module whose forward is the compiled graph of ``module``; the
first call compiles it. When compiling fails (no C++ compiler on a CPU node, an operator the
compiler does not support, an old GPU), one warning line is logged and that module runs eagerly
from then on: a run never fails because of ``--compile``. The wrapped module keeps its own
parameters and ``state_dict`` keys, so checkpoints are the same with and without compiling.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from diffaug_genomics.progress import LOG


class Compiled(nn.Module):
    """``module`` run through ``torch.compile`` (see the module docstring)."""

    def __init__(self, module: nn.Module, name: str) -> None:
        super().__init__()
        self.module, self.name = module, name
        # kept out of the submodules: its parameters are ``module``'s
        self.__dict__["_compiled"] = torch.compile(module)
        self.failed = False

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            try:
                return self.__dict__["_compiled"](*args, **kwargs)
            except Exception as exc:  # the compiler's failures have no common base class
                self.failed = True
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                LOG.warning("--compile: compiling the %s failed (%s: %s); it runs without "
                            "compiling", self.name, type(exc).__name__, first)
        return self.module(*args, **kwargs)


def maybe_compile(module: nn.Module, enabled: bool, name: str) -> nn.Module:
    """``module`` itself when ``enabled`` is False, else :class:`Compiled` ``(module)``."""
    return Compiled(module, name) if enabled else module
