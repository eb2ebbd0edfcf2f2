"""Checkpoints: atomic writes, ``weights_only`` loads, and every random-number-generator state.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(path, weights_only=True)``: nothing in it can execute code.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import torch

from diffaug_genomics.errors import DiffaugError, InputError
from diffaug_genomics.io.atomic import default_mode

CHECKPOINT_FORMAT = "diffaug-genomics/checkpoint/1"
ENCODER_FORMAT = "diffaug-genomics/encoder/1"
GENERATOR_FORMAT = "diffaug-genomics/generator/1"


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same directory, fsync, then rename onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, default_mode())
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | Path, expect_format: str | None = None) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) onto the CPU; check its format tag."""
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path=path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, foreign or unsafe pickles
        raise DiffaugError(f"{path}: cannot load checkpoint ({exc.__class__.__name__}: "
                           f"{str(exc).splitlines()[0][:200]})") from None
    if expect_format is not None and (not isinstance(obj, dict) or obj.get("format") != expect_format):
        raise InputError(f"not a {expect_format} file", path=path)
    return obj


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
