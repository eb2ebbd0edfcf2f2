"""The label-free diagnostics a run logs (what they mean: :mod:`diffaug_genomics.diagnostics`).

After every encoder epoch the effective rank of the embedding (and of the pooled features) on a
fixed diagnostic sample, which also recalibrates batch norm; after every generator block the EMA
denoiser's condition gain; after every bank refresh the modality's statistics of the positives.

Reads: the encoder, the EMA denoiser and the diffusion, ``progress.cond``, ``progress.bank``,
the fixed diagnostic rows (``setup.diag_idx``). Writes: the encoder's batch-norm statistics
(the recalibration), ``progress.last_diagnostics`` / ``reference`` / ``calibrated_at`` /
``collapse_warned``, ``metrics.csv`` rows.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from diffaug_genomics.diagnostics import (
    COLLAPSE_FRACTION,
    condition_gain,
    diagnostic_sample,
    effective_rank,
)
from diffaug_genomics.progress import LOG
from diffaug_genomics.train.schedule import Stage
from diffaug_genomics.train.state import Models, Progress, Setup

COND_GAIN_ROWS = 128
"""Most rows of the fixed held batch :func:`~diffaug_genomics.diagnostics.condition_gain` uses
(at most one generator batch)."""
POSITIVE_STATS_ROWS = 512
"""Generated positives per bank refresh whose statistics are computed."""
REFERENCE_ROWS = 65_536
"""Most training rows the positives are compared with (``pos_identity_nearest``: the nearest
*other* row): every row up to this many, else a fixed seeded sample of this many whose first
rows are the positives' sources (at least :data:`POSITIVE_STATS_ROWS`), so the diagnostic's
cost does not grow with N."""


def sample_embeddings(setup: Setup, models: Models, progress: Progress, batch_size: int = 512
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Embeddings ``(n, D)`` of the diagnostic sample, and the encoder's pooled features
    (the input of its final ``fc`` layer, when it has one) or None.

    With ``encoder.recalibrate_bn`` this pass also recomputes every batch-norm layer's
    running statistics from these clean rows (reset, then a cumulative average over the
    pass, training mode, no gradients), so the encoder in evaluation mode normalises with the
    data's statistics; every rank runs it (synchronised batch norm is a collective).
    Otherwise it runs in evaluation mode and changes nothing."""
    enc = models.encoder
    progress.calibrated_at = progress.enc_step
    norms = [m for m in enc.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    recalibrate = setup.cfg.encoder.recalibrate_bn and bool(norms)
    pooled: list[torch.Tensor] = []
    fc = getattr(enc, "fc", None)
    hook = None
    if isinstance(fc, nn.Linear):
        hook = fc.register_forward_pre_hook(lambda _m, args: pooled.append(args[0].detach()))
    momenta = [m.momentum for m in norms]
    if recalibrate:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the pass
    enc.train(recalibrate)
    out = []
    try:
        with torch.no_grad():
            # equal-sized batches (within one row): the cumulative average of their
            # statistics is then the statistics of the whole sample
            for part in np.array_split(setup.diag_idx, -(-len(setup.diag_idx) // batch_size)):
                out.append(enc(setup.x(part)))
    finally:
        if hook is not None:
            hook.remove()
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        enc.eval()
    z = torch.cat(out)
    if not pooled:
        return z, None
    # a reverse-complement encoder runs both strands as one batch and averages them after
    # fc, which is linear: its pooled features are the mean of the two halves of each batch
    feats = [p if len(p) == len(o) else 0.5 * (p[:len(o)] + p[len(o):])
             for p, o in zip(pooled, out, strict=True)]
    return z, torch.cat(feats)


def recalibrate(setup: Setup, models: Models, progress: Progress) -> None:
    """Batch-norm statistics of the current weights, unless the last pass of
    :func:`sample_embeddings` already computed them for these weights (it is deterministic,
    so skipping it changes nothing)."""
    if progress.calibrated_at != progress.enc_step:
        sample_embeddings(setup, models, progress)


def reference_neighbours(setup: Setup, models: Models, progress: Progress
                         ) -> dict[str, torch.Tensor]:
    """The diagnostic rows' neighbours in the input spaces the agreement criteria compare
    with (:func:`~diffaug_genomics.train.export.reference_features`). Computed once."""
    if progress.reference is None:
        from diffaug_genomics.train.export import reference_features

        progress.reference = reference_features(setup.modality, setup.cfg,
                                                setup.rows[setup.diag_idx],
                                                progress.symmetry.group, models.encoder,
                                                setup.device)
    return progress.reference


def encoder_diagnostics(setup: Setup, models: Models, progress: Progress, phase: str, rnd: int,
                        epoch: int, candidate: bool = True) -> float:
    """Log the effective rank of the embedding (and of the pooled features) on the
    diagnostic sample, and, for a ``candidate`` state (the start, a stage's last epoch),
    the criteria of the exported state (:mod:`~diffaug_genomics.train.export`; kept in
    ``progress.last_diagnostics``); warn once when the rank fell below
    :data:`COLLAPSE_FRACTION` of its size. Returns the embedding's effective rank."""
    z, pooled = sample_embeddings(setup, models, progress)
    rank_pooled = effective_rank(pooled) if pooled is not None else None
    if candidate:
        from diffaug_genomics.train.export import criteria

        values = criteria(z, reference_neighbours(setup, models, progress))
        progress.last_diagnostics = values
    else:
        values = {"eff_rank": effective_rank(z)}
    rank = values["eff_rank"]
    setup.metrics.log(phase, rnd, epoch, progress.enc_step, None, eff_rank_pooled=rank_pooled,
                      **values)
    dim = z.shape[1]
    if rank < COLLAPSE_FRACTION * dim and not progress.collapse_warned and setup.ctx.is_main:
        LOG.warning("the embedding collapsed: effective rank %.1f of %d dimensions (< %d %%) "
                    "after %s epoch %d of round %d", rank, dim, round(100 * COLLAPSE_FRACTION),
                    phase, epoch + 1, rnd)
        progress.collapse_warned = True
    return rank


def generator_diagnostics(setup: Setup, models: Models, progress: Progress,
                          stage: Stage) -> float:
    """Log ``cond_gain`` of the EMA denoiser (the one sampled from) on a fixed held batch."""
    gain = float("nan")
    if setup.ctx.is_main:
        idx = setup.diag_idx[:min(COND_GAIN_ROWS, setup.cfg.generator.batch_size)]
        x0 = setup.modality.to_diffusion(setup.x(idx))
        gain = condition_gain(models.diffusion, models.ema, x0,
                              progress.cond[torch.from_numpy(idx).to(setup.device)],
                              setup.cfg.seed)
    setup.metrics.log("generator", stage.round, progress.unit_idx, progress.gen_step, None,
                      cond_gain=gain)
    return gain


def bank_diagnostics(setup: Setup, progress: Progress) -> dict[str, float]:
    """Statistics of the first generated positive of up to :data:`POSITIVE_STATS_ROWS`
    sample rows (the modality's ``positive_stats``; empty when it has none)."""
    if setup.modality.positive_stats is None or not setup.ctx.is_main:
        return {}
    idx = setup.diag_idx[:POSITIVE_STATS_ROWS]
    bank = progress.bank[torch.from_numpy(idx).to(progress.bank.device), 0].cpu()
    rows, at = setup.rows, idx
    size = max(REFERENCE_ROWS, len(idx))
    if setup.n > size:  # the sample's first rows are idx (diag_idx is a prefix of it)
        reference = np.sort(diagnostic_sample(setup.n, setup.cfg.seed, size))
        rows, at = setup.rows[reference], np.searchsorted(reference, idx)
    return setup.modality.positive_stats(rows, at, bank)


def stage_summary(stage: Stage, values: list[float], embed_dim: int) -> str:
    """One log line per stage: how its diagnostic moved over the stage's units."""
    ends = values[:1] if len(values) == 1 else [values[0], values[-1]]
    digits = 3 if stage.kind == "generator" else 1
    trail = " -> ".join(f"{v + 0.0:.{digits}f}".lstrip("-") if round(v, digits) == 0
                        else f"{v:.{digits}f}" for v in ends)  # never "-0.000"
    if stage.kind == "generator":
        return f"generator r{stage.round}: cond_gain {trail} (0 = the condition is ignored)"
    return f"{stage.kind} r{stage.round}: eff_rank {trail} of {embed_dim}"
