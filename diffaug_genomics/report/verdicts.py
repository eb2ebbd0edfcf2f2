"""One plain sentence per diagnostic, from the numbers in ``metrics.csv``."""

from __future__ import annotations

import math

import numpy as np

from diffaug_genomics.diagnostics import COLLAPSE_FRACTION
from diffaug_genomics.report.state import Metrics

IGNORED_GAIN = 0.01
"""A generator whose denoising loss rises by less than 1 % without its condition ignores it."""


def _last(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values[-1]) if len(values) else math.nan


def eff_rank_verdict(m: Metrics, embed_dim: int) -> str:
    if not m.diagnostics:
        return ("effective rank: not recorded (this run's metrics.csv predates the "
                "diagnostics columns)")
    d = m.diagnostic_rows("warmup", "encoder")
    r = _last(d["eff_rank"])
    init = _last(m.diagnostic_rows("init")["eff_rank"])
    if math.isnan(r):
        if not math.isnan(init):
            return (f"effective rank: the untrained encoder has {init:.0f} of {embed_dim} "
                    "effective dimensions; no encoder epoch has finished yet")
        return "effective rank: no encoder epoch has finished yet"
    text = f"the embedding kept {r:.0f} of {embed_dim} effective dimensions"
    if not math.isnan(init):
        text += f" (untrained encoder: {init:.0f})"
    if r < COLLAPSE_FRACTION * embed_dim:
        text += (f": it has collapsed (fewer than {COLLAPSE_FRACTION:.0%} of its size); the "
                 "embedding carries little information")
    elif r < 0.3 * embed_dim:
        text += ": a low-dimensional embedding, close to collapse"
    return text


def cond_gain_verdict(m: Metrics, has_generator: bool) -> str:
    if not has_generator:
        return "condition use: no generator in this run"
    if not m.diagnostics:
        return "condition use: not recorded (metrics.csv predates the diagnostics columns)"
    g = _last(m.diagnostic_rows("generator")["cond_gain"])
    if math.isnan(g):
        return "condition use: no generator unit has finished yet"
    if g < IGNORED_GAIN:
        return (f"the generator ignores its condition: swapping it for another row's changes "
                f"the denoising loss by {100 * g:.2f} % (positives do not depend on their "
                "source's embedding)")
    return (f"the generator uses its condition: another row's condition raises the denoising "
            f"loss by {100 * g:.0f} %")


def positives_verdict(m: Metrics, has_generator: bool) -> str:
    if not has_generator:
        return "positives: no generated positives in this run"
    if not m.diagnostics:
        return "positives: not recorded (metrics.csv predates the diagnostics columns)"
    b = m.rows(m.phase == "bank")
    src = _last(b["pos_identity_source"])
    if math.isnan(src):
        if len(b["pos_identity_source"]):  # refreshed, but not measured (not DNA)
            return (f"positives: the bank was refreshed {len(b['pos_identity_source'])} "
                    "time(s) (section 5 shows the last); identity to the source is measured "
                    "for DNA runs only")
        return "positives: no bank refresh has been measured yet"
    near = _last(b["pos_identity_nearest"])
    l1 = _last(b["pos_kmer3_l1"])
    text = f"positives keep {100 * src:.0f} % of their source's bases"
    if not math.isnan(near):
        text += f" and {100 * near:.0f} % of the nearest other training row's"
    if not math.isnan(l1):
        text += f"; 3-mer distance to the source {l1:.2f} (0 = same spectrum, 2 = disjoint)"
    if not math.isnan(near) and src <= near + 0.02:
        text += ": they are no closer to their own source than to another row"
    elif src > 0.98:
        text += ": they are nearly copies of their source"
    return text


def symmetry_verdict(record: dict | None) -> str:
    """What the symmetry discovery found (``config.yaml`` ``discovered_symmetry``)."""
    if not record:
        return "symmetry: not measured (a run of a version without the discovery)"
    if record.get("mode") == "none" or not record.get("scores"):
        return f"symmetry: none accepted ({record.get('reason', 'not measured')})"
    scores = record["scores"]
    floor = record.get("floor") or math.nan  # nan: a zero floor (identical rows) has no ratio
    accepted = record.get("accepted") or []
    if accepted:
        found = ", ".join(f"'{a}' (score {scores[a]:.4f}, {scores[a] / floor:.1f} x the noise "
                          "floor)" for a in accepted)
        return (f"symmetry: the {record['rows']} training rows are unchanged by {found}; the "
                "spectrum encoder averages its features over it, and generated positives are "
                "mapped by it at random")
    rest = sorted((v, k) for k, v in scores.items() if k != "identity")
    nearest = f"; the nearest, '{rest[0][1]}', scores {rest[0][0] / floor:.1f} x the noise " \
              "floor" if rest else ""
    return f"symmetry: none accepted ({record.get('reason', '')}){nearest}"


def export_verdict(record: dict | None) -> str:
    """Which encoder state ``encoder.pt`` holds and whether training beat its start."""
    if not record:
        return "exported state: the final one (a run of a version without the export choice)"
    text = (f"exported state: {record['state']} ({record['choose']}; {record['criterion']} "
            f"{record['value']:.4f}")
    if record.get("start_value") is not None:
        text += f", the start's {record['start_value']:.4f}"
    text += ")"
    if record.get("improved_on_start") is False:
        text += (": training did not improve on the start by this label-free criterion"
                 + (", so the start is what embed and generate use" if record["state"] ==
                    "start" else ""))
    return text
