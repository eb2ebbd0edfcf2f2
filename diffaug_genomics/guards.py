"""Guards against non-finite numbers: a training loss that diverged, an export holding NaN.

A loss that becomes NaN or infinite stops ``fit`` with exit 1 and one line naming the phase and
step (:func:`check_finite_loss`); nothing is written with NaN or infinity in it
(:func:`require_finite`, called by every writer of embeddings and generated samples), so a
broken run can never export garbage with exit code 0.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from diffaug_genomics.errors import DiffaugError


class NonFiniteError(DiffaugError):
    """A loss or an output holds NaN or infinity (exit code 1)."""


def check_finite_loss(loss: Any, phase: str, step: int) -> None:
    """Raise :class:`NonFiniteError` when ``loss`` (a float or a 0-d tensor) is NaN or infinite."""
    value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
    if not math.isfinite(value):
        raise NonFiniteError(f"{phase} loss became {value} at step {step}: training diverged "
                             "(lower the learning rate, raise loss.temperature, or check the "
                             "input for extreme values); the last checkpoint is intact")


def require_finite(values: Any, what: str) -> None:
    """Raise :class:`NonFiniteError` when an array (or tensor) about to be written holds NaN or
    infinity, naming ``what`` (the output is not written)."""
    arr = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    if arr.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(arr)
    if bad.any():
        raise NonFiniteError(f"{what}: {int(bad.sum())} of {arr.size} values are NaN or "
                             "infinite (the run's weights are broken); nothing was written")
