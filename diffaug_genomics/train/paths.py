"""The files of a run directory (``config.yaml``, ``checkpoints/``, ``metrics.csv``, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunPaths:
    """Files of a run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def latest(self) -> Path:
        return self.checkpoints / "latest.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def encoder(self) -> Path:
        return self.root / "encoder.pt"

    @property
    def generator(self) -> Path:
        return self.root / "generator.pt"

    def neighbours(self, tag: str) -> Path:
        return self.root / "cache" / f"neighbours-{tag}.npz"

    @property
    def bank(self) -> Path:
        return self.root / "cache" / "bank.pt"

    @property
    def bank_file(self) -> Path:
        """The bank when it is too large for host memory (:mod:`.bank_store`)."""
        return self.root / "cache" / "bank.npy"
