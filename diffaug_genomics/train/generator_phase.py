"""The generator phase: denoiser steps on (sequence, frozen embedding) pairs, and its EMA."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from diffaug_genomics.guards import check_finite_loss
from diffaug_genomics.train import distributed as dist
from diffaug_genomics.train.schedule import Stage


class GeneratorPhase:
    """Part of :class:`~diffaug_genomics.train.loop.Trainer`: the generator phase (uses its
    denoiser, EMA, diffusion, conditions and unit helpers)."""

    def _generator_block(self, stage: Stage, seed: int) -> float:
        g = self.cfg.generator
        gen = self._unit_generator(seed)
        first = self.unit_idx * g.steps_per_checkpoint
        n_steps = min(g.steps_per_checkpoint, g.steps - first)
        self.denoiser.train()
        losses, t = [], time.perf_counter()
        batch = min(g.batch_size, self.n)  # per rank
        draws = {} if not self.ctx.distributed else {
            "draw_rows": batch * self.ctx.world_size, "offset": batch * self.ctx.rank}
        for step in range(self.step_in_unit, n_steps):
            idx = torch.randint(self.n, (batch * self.ctx.world_size,), generator=gen).numpy()
            idx = self._local(idx)
            x0 = self.modality.to_diffusion(self._x(idx))
            loss = self.diffusion.loss(self._denoise, x0, self.cond[torch.from_numpy(idx).to(self.device)],
                                       p_uncond=g.cond_dropout, generator=gen, **draws)
            check_finite_loss(loss, "generator", self.gen_step + 1)
            self.gen_opt.zero_grad(set_to_none=True)
            loss.backward()
            dist.average_gradients(list(self.denoiser.parameters()))
            self.gen_opt.step()
            decay = ema_decay_at(first + step, g.ema_decay) if g.ema_warmup else g.ema_decay
            _ema_update(self.ema, self.denoiser, decay)
            self.gen_step += 1
            self.step_in_unit = step + 1
            losses.append(dist.mean_over_ranks(loss))
            if self.gen_step % self.cfg.log_every == 0:
                rate = len(losses) * len(idx) * self.ctx.world_size / (time.perf_counter() - t)
                self._log_metric("generator", stage.round, self.unit_idx, self.gen_step,
                                 losses[-1], g.lr, rate)
            if self._poll_stop() and self.step_in_unit < n_steps:
                self._checkpoint_mid_unit(gen)
        return float(np.mean(losses)) if losses else float("nan")


def ema_decay_at(n: int, decay: float) -> float:
    """EMA decay for the ``n``-th update (0-based) of a generator stage: 0 for the first (the
    EMA restarts as a copy of the denoiser), then ``min(decay, (1 + n) / (10 + n))``.

    The weight the average gives to the denoiser of step ``k`` falls off like ``(k / n) ** 9``
    while ``n`` is small, so the weights sampled from are those of the stage's own later steps
    at any budget, and nothing from an earlier round or the random initialisation survives."""
    return 0.0 if n <= 0 else min(decay, (1.0 + n) / (10.0 + n))


def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=True):
            e.lerp_(p, 1.0 - decay)
        for e, b in zip(ema.buffers(), model.buffers(), strict=True):
            e.copy_(b)
