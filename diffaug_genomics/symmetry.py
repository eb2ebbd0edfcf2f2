"""Symmetries learned from the training data: which candidate transforms leave it unchanged.

A modality offers a finite set of candidate transforms (:class:`SymmetryCandidates`; DNA: the
48 maps of :mod:`diffaug_genomics.alphabet_maps`) and a per-row statistic whose action under each
transform is known (DNA: 4-mer counts, permuted by the map). :func:`discover` scores every
candidate ``g`` by the L1 distance between the training rows' pooled statistic ``p`` and that of
the transformed rows ``g(p)``, and measures a noise floor on the same rows: the median L1
distance between the pooled statistics of two random halves. A transform the data really obeys
scores near ``floor / sqrt(2)`` (the transformed rows are like a second sample of the same
size); one it does not obey scores far above the floor once there are enough rows.

A candidate is accepted when

1. its score is at most ``accept_ratio`` x the floor, and
2. every rejected candidate scores at least ``gap_ratio`` x the largest accepted score (it is
   clearly apart from the rest), and
3. the accepted candidates with the identity form a group (every composition is accepted too).

If 2 or 3 fails nothing is accepted (the decision says why). No label is read; the rows are the
training rows only. The accepted group is used by the encoder (features averaged over it, so the
untrained start is invariant) and by the training loop (generated positives composed with a
random element).

Examples:
    >>> from diffaug_genomics.modalities.dna import DNA
    >>> report = discover(DNA.symmetries, rows, SymmetryConfig(), seed=0)  # doctest: +SKIP
    >>> report.accepted  # doctest: +SKIP
    ['reversed, ACGT->TGCA']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from diffaug_genomics.config_schema import SymmetryConfig

__all__ = ["SymmetryCandidates", "SymmetryReport", "discover", "apply_random_elements"]

HALF_SPLITS = 16
"""Random half splits whose median L1 distance is the noise floor."""
MIN_ROWS = 8
"""Fewer training rows than this measure no floor: nothing is accepted."""


@dataclass(frozen=True)
class SymmetryCandidates:
    """What a modality offers :func:`discover`: candidate transforms, index 0 the identity.

    Attributes:
        names: readable name of each candidate (recorded in config.yaml and the report).
        statistic: stored rows ``(n, ...)`` and the config -> non-negative per-row counts
            ``(n, S)`` (DNA: k-mer counts).
        transform_statistic: pooled statistic ``(S,)`` and a candidate index -> the pooled
            statistic of the transformed rows.
        apply: model-layout tensor ``(n, ...)`` and a candidate index -> transformed tensor.
        apply_rows: stored rows ``(n, ...)`` and a candidate index -> transformed rows.
        compose: indices ``(i, j)`` -> index of ``candidate_i o candidate_j``.
    """

    names: tuple[str, ...]
    statistic: Callable[[np.ndarray, SymmetryConfig], np.ndarray]
    transform_statistic: Callable[[np.ndarray, int, SymmetryConfig], np.ndarray]
    apply: Callable[[torch.Tensor, int], torch.Tensor]
    apply_rows: Callable[[np.ndarray, int], np.ndarray]
    compose: Callable[[int, int], int]


@dataclass
class SymmetryReport:
    """The outcome of :func:`discover`: every score, the floor, the decision and its reason."""

    mode: str
    rows: int
    floor: float
    accept_ratio: float
    gap_ratio: float
    scores: dict[str, float] = field(default_factory=dict)
    accepted: list[str] = field(default_factory=list)
    group: list[int] = field(default_factory=lambda: [0])
    """Candidate indices of the accepted group, the identity first (``[0]``: none)."""
    reason: str = ""

    def to_record(self) -> dict[str, Any]:
        """Plain dict for config.yaml (scores rounded to 5 digits, lowest first)."""
        out = asdict(self)
        out["scores"] = {k: round(v, 5) for k, v in sorted(self.scores.items(),
                                                           key=lambda kv: kv[1])}
        out["floor"] = round(self.floor, 5)
        return out

    def summary(self) -> str:
        """One log line: what was accepted (or not) and why."""
        rest = sorted((v, k) for k, v in self.scores.items() if k not in self.accepted
                      and k != "identity")
        nearest = f"; nearest other {rest[0][1]!r} {rest[0][0]:.4f}" if rest else ""
        found = ", ".join(f"{a!r} {self.scores[a]:.4f}" for a in self.accepted)
        head = f"accepted {found}" if self.accepted else "accepted none"
        return (f"symmetry ({self.mode}, {self.rows} rows): {head} (noise floor "
                f"{self.floor:.4f}){nearest}: {self.reason}")


def _pooled(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts.sum(axis=0) / total if total > 0 else np.zeros(counts.shape[1])


def discover(cands: SymmetryCandidates | None, rows: np.ndarray, cfg: SymmetryConfig,
             seed: int) -> SymmetryReport:
    """Score every candidate on (a seeded sample of at most ``cfg.max_rows`` of) the training
    ``rows`` and decide which to accept (module docstring). ``cfg.mode == "none"`` or a modality
    without candidates accepts nothing without measuring."""
    report = SymmetryReport(cfg.mode, 0, float("nan"), cfg.accept_ratio, cfg.gap_ratio)
    if cfg.mode == "none":
        report.reason = "turned off (symmetry.mode: none)"
        return report
    if cands is None:
        report.reason = "this modality offers no candidate transforms"
        return report
    rng = np.random.default_rng([seed, 0x5E7])
    n = len(rows)
    idx = np.sort(rng.permutation(n)[:cfg.max_rows]) if n > cfg.max_rows else np.arange(n)
    counts = np.asarray(cands.statistic(rows[idx], cfg), dtype=np.float64)
    report.rows = len(idx)
    if len(idx) < MIN_ROWS or counts.sum() == 0:
        report.reason = f"too few rows or nothing to count ({len(idx)} rows): nothing accepted"
        return report
    p = _pooled(counts)
    report.scores = {name: float(np.abs(p - cands.transform_statistic(p, i, cfg)).sum())
                     for i, name in enumerate(cands.names)}
    floors = []
    for _ in range(HALF_SPLITS):
        order = rng.permutation(len(counts))
        half = len(counts) // 2
        floors.append(np.abs(_pooled(counts[order[:half]]) - _pooled(counts[order[half:]])).sum())
    report.floor = float(np.median(floors))
    _decide(report, cands)
    return report


def _decide(report: SymmetryReport, cands: SymmetryCandidates) -> None:
    scores = [report.scores[name] for name in cands.names]
    threshold = report.accept_ratio * report.floor
    within = [i for i in range(1, len(scores)) if scores[i] <= threshold]
    if not within:
        best = min(range(1, len(scores)), key=scores.__getitem__)
        times = f"{scores[best] / report.floor:.1f} x" if report.floor > 0 else "above a zero floor"
        report.reason = (f"every candidate scores above {report.accept_ratio:g} x the floor "
                         f"(the closest, {cands.names[best]!r}, at {times})")
        return
    rest = [scores[i] for i in range(1, len(scores)) if i not in within]
    worst = max(scores[i] for i in within)
    if rest and min(rest) < report.gap_ratio * worst:
        report.reason = (f"{len(within)} candidate(s) score within {report.accept_ratio:g} x "
                         f"the floor but the others are not clearly apart (nearest "
                         f"{min(rest):.4f} < {report.gap_ratio:g} x {worst:.4f}): nothing "
                         "accepted")
        return
    group = {0, *within}
    while True:
        grown = group | {cands.compose(a, b) for a in group for b in group}
        if grown == group:
            break
        group = grown
    if not group <= {0, *within}:
        extra = sorted(group - {0, *within})
        report.reason = (f"the accepted candidates do not form a group (their compositions "
                         f"{[cands.names[i] for i in extra]} are not accepted): nothing accepted")
        return
    report.group = sorted(group)
    report.accepted = [cands.names[i] for i in report.group if i != 0]
    report.reason = (f"within {report.accept_ratio:g} x the floor and at least "
                     f"{report.gap_ratio:g} x apart from every other candidate")


def apply_random_elements(cands: SymmetryCandidates, group: list[int], x: torch.Tensor,
                          gen: torch.Generator) -> torch.Tensor:
    """Each row of ``x (n, ...)`` mapped by an element of ``group`` drawn uniformly from
    ``gen`` (one draw per row; the identity included). ``x`` itself when the group is trivial,
    without drawing."""
    if len(group) < 2:
        return x
    pick = torch.randint(len(group), (len(x),), generator=gen)
    out = x.clone()
    for j, element in enumerate(group):
        if element == 0:
            continue
        rows = (pick == j).nonzero().squeeze(1).to(x.device)
        if len(rows):
            out[rows] = cands.apply(x[rows], element)
    return out
