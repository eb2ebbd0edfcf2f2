"""Checkpoints: atomic writes, ``weights_only`` loads, and every random-number-generator state.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(path, weights_only=True)``: nothing in it can execute code.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from diffaug_genomics.errors import InputError
from diffaug_genomics.io.atomic import atomic_temp

CHECKPOINT_FORMAT = "diffaug-genomics/checkpoint/1"
ENCODER_FORMAT = "diffaug-genomics/encoder/1"
GENERATOR_FORMAT = "diffaug-genomics/generator/1"


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same directory, fsync, then rename onto
    ``path`` (:func:`~diffaug_genomics.io.atomic.atomic_temp`: removed on failure, SIGTERM /
    SIGHUP included; a full disk is one line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_temp(path, fsync=True) as tmp:
        with open(tmp, "wb") as fh:  # a file object: a full disk surfaces as OSError ENOSPC
            torch.save(obj, fh)


def load(path: str | Path, expect_format: str | None = None) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) onto the CPU; check its format tag.

    Every unreadable file (missing, empty, truncated, foreign, an unsafe pickle, another
    format) is an :class:`InputError` (exit 2) naming it, in one line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path=path)
    if path.stat().st_size == 0:
        raise InputError("checkpoint is empty (0 bytes: a write was interrupted?); remove it "
                         "or restore it from a copy", path=path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, foreign or unsafe pickles
        raise InputError(f"cannot load checkpoint: {describe(exc)}", path=path) from None
    if expect_format is not None and (not isinstance(obj, dict) or obj.get("format") != expect_format):
        raise InputError(f"not a {expect_format} file", path=path)
    return obj


def describe(exc: BaseException) -> str:
    """``ExcType: first line of its message`` (whole, one line) for an error message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else "no details"
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{exc.__class__.__name__}: {text}"


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch CPU, CUDA when present, Python) as checkpoint-safe values."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    py = random.getstate()
    state["python"] = [py[0], list(py[1]), py[2]]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
