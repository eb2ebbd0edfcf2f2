"""The schedule of a run: its stages, the units they are made of, and each unit's seed.

A run is warm-up, then rounds of (generator -> bank refresh -> encoder); baselines run one encoder
stage with the same number of encoder epochs. Every unit (an encoder epoch, a block of generator
steps, one bank refresh) draws its randomness from generators seeded by
:func:`unit_seed` ``(seed, stage, unit)``, independent of everything before it: that is what
makes a resumed run replay the exact same computation.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from diffaug_genomics.config import Config


@dataclass(frozen=True)
class Stage:
    """One block of the schedule: ``kind`` in warmup | encoder | generator | bank."""

    kind: str
    round: int
    units: int


def plan(cfg: Config) -> list[Stage]:
    """The schedule of a run as a list of stages (units are epochs, step blocks or refreshes)."""
    s = cfg.schedule
    if cfg.augment != "diffaug":
        epochs = s.warmup_epochs + s.rounds * s.epochs_per_round
        return [Stage("encoder", 0, epochs)] if epochs > 0 else []
    stages = [Stage("warmup", 0, s.warmup_epochs)]
    gen_units = math.ceil(cfg.generator.steps / cfg.generator.steps_per_checkpoint)
    for r in range(1, s.rounds + 1):
        stages += [Stage("generator", r, gen_units), Stage("bank", r, 1),
                   Stage("encoder", r, s.epochs_per_round)]
    return [stage for stage in stages if stage.units > 0]


def unit_seed(seed: int, stage: int, unit: int) -> int:
    """A 63-bit seed for one unit of one stage, independent of everything before it."""
    digest = hashlib.sha256(f"{seed}/{stage}/{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class StopRequested(Exception):  # noqa: N818 - control flow, not an error
    """Raised inside a unit after a checkpoint was written because a stop was requested."""
