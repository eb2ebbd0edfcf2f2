"""The label-free diagnostics a run logs (what they mean: :mod:`diffaug_genomics.diagnostics`).

After every encoder epoch the effective rank of the embedding (and of the pooled features) on a
fixed diagnostic sample, which also recalibrates batch norm; after every generator block the EMA
denoiser's condition gain; after every bank refresh the modality's statistics of the positives.
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


class RunDiagnostics:
    """Part of :class:`~diffaug_genomics.train.loop.Trainer`: its diagnostics (uses the
    encoder, EMA denoiser, diffusion, conditions, bank, ``diag_idx`` and ``_log_metric``)."""

    def _sample_embeddings(self, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embeddings ``(n, D)`` of the diagnostic sample, and the encoder's pooled features
        (the input of its final ``fc`` layer, when it has one) or None.

        With ``encoder.recalibrate_bn`` this pass also recomputes every batch-norm layer's
        running statistics from these clean rows (reset, then a cumulative average over the
        pass, training mode, no gradients), so the encoder in evaluation mode normalises with the
        data's statistics; every rank runs it (synchronised batch norm is a collective).
        Otherwise it runs in evaluation mode and changes nothing."""
        enc = self.encoder
        self._calibrated_at = self.enc_step
        norms = [m for m in enc.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        recalibrate = self.cfg.encoder.recalibrate_bn and bool(norms)
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
                for part in np.array_split(self.diag_idx, -(-len(self.diag_idx) // batch_size)):
                    out.append(enc(self._x(part)))
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

    def _recalibrate(self) -> None:
        """Batch-norm statistics of the current weights, unless the last pass of
        :meth:`_sample_embeddings` already computed them for these weights (it is deterministic,
        so skipping it changes nothing)."""
        if self._calibrated_at != self.enc_step:
            self._sample_embeddings()

    def _reference_features(self) -> dict[str, torch.Tensor]:
        """The diagnostic rows' neighbours in the input spaces the agreement criteria compare
        with (:func:`~diffaug_genomics.train.export.reference_features`). Computed once."""
        if self._reference is None:
            from diffaug_genomics.train.export import reference_features

            self._reference = reference_features(self.modality, self.cfg,
                                                 self.rows[self.diag_idx], self.symmetry.group,
                                                 self.encoder, self.device)
        return self._reference

    def _encoder_diagnostics(self, phase: str, rnd: int, epoch: int,
                             candidate: bool = True) -> float:
        """Log the effective rank of the embedding (and of the pooled features) on the
        diagnostic sample, and, for a ``candidate`` state (the start, a stage's last epoch),
        the criteria of the exported state (:mod:`~diffaug_genomics.train.export`); warn once
        when the rank fell below :data:`COLLAPSE_FRACTION` of its size. Returns the
        embedding's effective rank."""
        z, pooled = self._sample_embeddings()
        rank_pooled = effective_rank(pooled) if pooled is not None else None
        if candidate:
            from diffaug_genomics.train.export import criteria

            values = criteria(z, self._reference_features())
            self._last_diagnostics = values
        else:
            values = {"eff_rank": effective_rank(z)}
        rank = values["eff_rank"]
        self._log_metric(phase, rnd, epoch, self.enc_step, None, eff_rank_pooled=rank_pooled,
                         **values)
        dim = z.shape[1]
        if rank < COLLAPSE_FRACTION * dim and not self.collapse_warned and self.ctx.is_main:
            LOG.warning("the embedding collapsed: effective rank %.1f of %d dimensions (< %d %%) "
                        "after %s epoch %d of round %d", rank, dim, round(100 * COLLAPSE_FRACTION),
                        phase, epoch + 1, rnd)
            self.collapse_warned = True
        return rank

    def _generator_diagnostics(self, stage: Stage) -> float:
        """Log ``cond_gain`` of the EMA denoiser (the one sampled from) on a fixed held batch."""
        gain = float("nan")
        if self.ctx.is_main:
            idx = self.diag_idx[:min(COND_GAIN_ROWS, self.cfg.generator.batch_size)]
            x0 = self.modality.to_diffusion(self._x(idx))
            gain = condition_gain(self.diffusion, self.ema, x0,
                                  self.cond[torch.from_numpy(idx).to(self.device)], self.cfg.seed)
        self._log_metric("generator", stage.round, self.unit_idx, self.gen_step, None,
                         cond_gain=gain)
        return gain

    def _bank_diagnostics(self) -> dict[str, float]:
        """Statistics of the first generated positive of up to :data:`POSITIVE_STATS_ROWS`
        sample rows (the modality's ``positive_stats``; empty when it has none)."""
        if self.modality.positive_stats is None or not self.ctx.is_main:
            return {}
        idx = self.diag_idx[:POSITIVE_STATS_ROWS]
        bank = self.bank[torch.from_numpy(idx).to(self.bank.device), 0].cpu()
        rows, at = self.rows, idx
        size = max(REFERENCE_ROWS, len(idx))
        if self.n > size:  # the sample's first rows are idx (diag_idx is a prefix of it)
            reference = np.sort(diagnostic_sample(self.n, self.cfg.seed, size))
            rows, at = self.rows[reference], np.searchsorted(reference, idx)
        return self.modality.positive_stats(rows, at, bank)

    def _log_stage_diagnostics(self, stage: Stage, values: list[float]) -> None:
        """One log line per stage: how its diagnostic moved over the stage's units."""
        ends = values[:1] if len(values) == 1 else [values[0], values[-1]]
        digits = 3 if stage.kind == "generator" else 1
        trail = " -> ".join(f"{v + 0.0:.{digits}f}".lstrip("-") if round(v, digits) == 0
                            else f"{v:.{digits}f}" for v in ends)  # never "-0.000"
        if stage.kind == "generator":
            LOG.log(self._info, "generator r%d: cond_gain %s (0 = the condition is ignored)",
                    stage.round, trail)
        else:
            LOG.log(self._info, "%s r%d: eff_rank %s of %d", stage.kind, stage.round, trail,
                    self.cfg.encoder.embed_dim)
