"""The per-machine record of measured seconds per step (``tuning.json`` in the user cache,
``$DIFFAUG_TUNING_CACHE``; empty: none), keyed by everything they depend on, so that the runs
of one machine decide ``precision: auto`` alike (:mod:`.autotune`) and only the first pays the
measurement."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from diffaug_genomics.progress import LOG

if TYPE_CHECKING:
    from diffaug_genomics.config import Config
    from diffaug_genomics.modalities.base import Modality

TUNING_FILE = "tuning.json"
"""The per-machine record of measured seconds per step, in the user cache."""


def cache_path() -> Path | None:
    env = os.environ.get("DIFFAUG_TUNING_CACHE")
    if env is not None:
        return Path(env) if env else None  # empty: no cache
    from diffaug_genomics.datasets import default_cache_dir

    return default_cache_dir() / TUNING_FILE


def cache_key(cfg: Config, modality: Modality, rows: np.ndarray, device: torch.device) -> str:
    """What the seconds per step depend on."""
    if device.type == "cuda":
        name = f"{torch.cuda.get_device_name(device)} sm{torch.cuda.get_device_capability(device)}"
    else:
        name = _cpu_name()
    what = {"device": name, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "modality": modality.name, "sample_shape": list(modality.to_model(rows[:1]).shape),
            "rows": min(len(rows), max(2 * cfg.optim.batch_size, cfg.generator.batch_size)),
            "encoder": dataclasses.asdict(cfg.encoder), "generator": dataclasses.asdict(
                cfg.generator), "loss": cfg.loss.name, "augment": cfg.augment,
            "optim_batch": cfg.optim.batch_size, "bank": [cfg.bank.batch_size,
                                                          cfg.bank.per_sequence,
                                                          cfg.bank.guidance_scale != 1.0]}
    return json.dumps(what, sort_keys=True)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cached(key: str) -> dict[str, dict[str, float]] | None:
    path = cache_path()
    if path is None or not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None  # unreadable: measured again and rewritten
    valid = (isinstance(entry, dict) and set(entry) == {"fp32", "bf16"}
             and all(isinstance(v, dict) and all(isinstance(s, float) and s > 0
                                                 for s in v.values()) for v in entry.values()))
    return entry if valid else None


def store(key: str, per_step: dict[str, dict[str, float]]) -> None:
    """Add ``key`` to the cache file (written atomically; a cache that cannot be written is
    skipped: the next run measures again)."""
    path = cache_path()
    if path is None:
        return
    from diffaug_genomics.io.atomic import atomic_temp

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            table = json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:
            table = {}
        if not isinstance(table, dict):
            table = {}
        table[key] = per_step
        with atomic_temp(path) as tmp:
            tmp.write_text(json.dumps(table, indent=0))
    except OSError as exc:
        LOG.debug("tuning cache %s not written (%s)", path, exc)
