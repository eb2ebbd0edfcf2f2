"""Which encoder state ``fit`` exports: the start, or the end of an encoder stage, by a
label-free criterion.

The candidates are the encoder right after its data-dependent initialisation (``start``: for the
spectrum encoder, PCA of its features) and at the end of every warm-up / encoder stage
(``warmup``, ``round 1``, ...; a baseline's one stage is ``trained``). Each is scored on the
fixed diagnostic rows by the diagnostics of :mod:`diffaug_genomics.diagnostics`
(``export.criterion``, chosen by measurement: ``benchmarks/results/selection.md``). With
``export.choose: best`` the highest-scoring state is exported (the earliest on a tie), with
``final`` the last. The choice, every candidate's value and whether training improved on the
start are recorded in ``config.yaml`` (``exported``), ``encoder.pt`` and the log.

Examples:
    >>> choice = ExportChoice("best", "eff_rank")
    >>> choice.offer("start", {"eff_rank": 120.0}, {"w": 1}, {})
    >>> choice.offer("round 1", {"eff_rank": 110.0}, {"w": 2}, {})
    >>> choice.chosen["state"], choice.record()["improved_on_start"]
    ('start', False)
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from diffaug_genomics.config_schema import EXPORT_CRITERIA
from diffaug_genomics.diagnostics import (
    effective_rank,
    nearest_neighbours,
    neighbour_agreement,
    uniformity,
)

if TYPE_CHECKING:
    from diffaug_genomics.config import Config
    from diffaug_genomics.modalities.base import Modality

__all__ = ["CRITERIA", "ExportChoice", "criteria", "reference_features"]

AGREEMENT_K = 10
"""Neighbours compared by the agreement criteria (fewer when the sample is smaller)."""

CRITERIA = EXPORT_CRITERIA
"""The label-free criteria an encoder state is scored by (all logged in ``metrics.csv``; the
list of ``export.criterion``, :mod:`diffaug_genomics.config_schema`)."""


def reference_features(modality: Modality, cfg: Config, rows: np.ndarray, group: list[int],
                       encoder: torch.nn.Module, device: torch.device | None = None
                       ) -> dict[str, torch.Tensor]:
    """The nearest neighbours, ``{criterion: (n, k) indices}``, of the diagnostic ``rows`` in the
    input feature spaces the agreement criteria compare an embedding with:

    - ``nbr_agreement``: the modality's kNN space (``knn.space``; its last space when that is
      ``embedding``), averaged over the symmetry ``group``;
    - ``feature_agreement``: what the encoder itself reads, when it exposes it (the spectrum
      encoder's scaled, symmetrised features: ``features``, ``mean``, ``scale``), else the
      same as ``nbr_agreement``.
    """
    space = cfg.knn.space if cfg.knn.space != "embedding" else modality.knn_spaces[-1]
    knn_cfg = dataclasses.replace(cfg, knn=dataclasses.replace(cfg.knn, space=space))
    cands = modality.symmetries
    maps = [rows] if cands is None or len(group) < 2 else [cands.apply_rows(rows, g)
                                                           for g in group]
    knn = sum(np.asarray(modality.knn_features(m, knn_cfg, cfg.seed), dtype=np.float64)
              for m in maps) / len(maps)
    k = min(AGREEMENT_K, len(rows) - 2)
    out = {"nbr_agreement": nearest_neighbours(knn, k)}
    out["feature_agreement"] = out["nbr_agreement"]
    features = getattr(encoder, "features", None)
    if callable(features) and hasattr(encoder, "mean") and hasattr(encoder, "scale"):
        with torch.no_grad():
            x = modality.to_model(rows)
            parts = [((features(x[i:i + 512].to(device or "cpu")) - encoder.mean) * encoder.scale)
                     .double().cpu() for i in range(0, len(x), 512)]
        out["feature_agreement"] = nearest_neighbours(torch.cat(parts), k)
    return out


def criteria(z: torch.Tensor, references: dict[str, torch.Tensor]) -> dict[str, float]:
    """Every criterion of :data:`CRITERIA` for the embeddings ``z (n, D)`` of the diagnostic
    rows (``references`` from :func:`reference_features`)."""
    return {"eff_rank": effective_rank(z), "uniformity": uniformity(z),
            **{name: neighbour_agreement(z, ref, k=ref.shape[1])
               for name, ref in references.items()}}


class ExportChoice:
    """The candidates offered so far and the state to export (``export.choose`` /
    ``export.criterion``)."""

    def __init__(self, choose: str, criterion: str) -> None:
        self.choose, self.criterion = choose, criterion
        self.candidates: list[dict[str, Any]] = []
        self.chosen: dict[str, Any] | None = None
        """``{"state", "value", "encoder", "head"}`` of the state to export so far."""

    def offer(self, state: str, values: dict[str, float], encoder: dict[str, torch.Tensor],
              head: dict[str, torch.Tensor]) -> None:
        """A candidate state (its label, its diagnostics, the encoder's and head's state dicts,
        copied here)."""
        value = float(values[self.criterion])
        self.candidates.append({"state": state, **{k: float(v) for k, v in values.items()}})
        better = self.chosen is None or value > self.chosen["value"]
        if self.choose == "final" or better:
            self.chosen = {"state": state, "value": value,
                           "encoder": copy.deepcopy(encoder), "head": copy.deepcopy(head)}

    def record(self) -> dict[str, Any]:
        """What config.yaml and ``encoder.pt`` say about the export."""
        if self.chosen is None:
            return {}
        start = next((c for c in self.candidates if c["state"] == "start"), None)
        best = max(self.candidates, key=lambda c: c[self.criterion])
        return {"choose": self.choose, "criterion": self.criterion,
                "state": self.chosen["state"], "value": round(self.chosen["value"], 5),
                "start_value": None if start is None else round(start[self.criterion], 5),
                "improved_on_start": best["state"] != "start" if start else None,
                "candidates": [{k: (round(v, 5) if isinstance(v, float) else v)
                                for k, v in c.items()} for c in self.candidates]}

    def summary(self) -> str:
        """One log line: the exported state, its value beside the start's, and whether
        training improved on the start."""
        r = self.record()
        if not r:
            return "exported: the final state (no candidate was scored)"
        line = (f"exported: {r['state']} ({self.choose}; {self.criterion} {r['value']:.4f}"
                + ("" if r["start_value"] is None else f", start {r['start_value']:.4f}") + ")")
        if r["improved_on_start"] is False:
            line += ("; training did not improve on the start by this criterion"
                     + (", so the start is exported" if r["state"] == "start" else ""))
        return line

    def state_dict(self) -> dict[str, Any]:
        return {"choose": self.choose, "criterion": self.criterion,
                "candidates": self.candidates, "chosen": self.chosen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.candidates = list(state["candidates"])
        self.chosen = state["chosen"]
