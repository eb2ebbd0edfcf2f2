"""The generator phase: denoiser steps on (sequence, frozen embedding) pairs, and its EMA."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from diffaug_genomics.guards import check_finite_loss
from diffaug_genomics.train import distributed as dist
from diffaug_genomics.train.schedule import Stage
from diffaug_genomics.transfer import to_device


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
        # the losses stay on the device until a metrics row, a stop or the block's end needs
        # them (one host sync there, none per step); a non-finite one is reported with its step
        pending: list[torch.Tensor] = []
        for step in range(self.step_in_unit, n_steps):
            idx = torch.randint(self.n, (batch * self.ctx.world_size,), generator=gen).numpy()
            idx = self._local(idx)
            x0 = self.modality.to_diffusion(self._x(idx))
            loss = self.diffusion.loss(self._denoise, x0,
                                       self.cond[to_device(torch.from_numpy(idx), self.device)],
                                       p_uncond=g.cond_dropout, generator=gen, **draws)
            self.gen_opt.zero_grad(set_to_none=True)
            loss.backward()
            dist.average_gradients(list(self.denoiser.parameters()))
            self.gen_opt.step()
            decay = ema_decay_at(first + step, g.ema_decay) if g.ema_warmup else g.ema_decay
            _ema_update(self.ema, self.denoiser, decay)
            self.gen_step += 1
            self.step_in_unit = step + 1
            pending.append(loss.detach())
            if self.gen_step % self.cfg.log_every == 0:
                losses += _checked(pending, self.gen_step)
                rate = len(losses) * len(idx) * self.ctx.world_size / (time.perf_counter() - t)
                self._log_metric("generator", stage.round, self.unit_idx, self.gen_step,
                                 losses[-1], g.lr, rate)
            if self._poll_stop() and self.step_in_unit < n_steps:
                losses += _checked(pending, self.gen_step)
                self._checkpoint_mid_unit(gen)
        losses += _checked(pending, self.gen_step)
        return float(np.mean(losses)) if losses else float("nan")


def _checked(pending: list[torch.Tensor], last_step: int) -> list[float]:
    """The losses of the steps up to ``last_step`` (mean over ranks) as floats, emptying
    ``pending``; :class:`~diffaug_genomics.guards.NonFiniteError` naming the first step whose
    loss is NaN or infinite (nothing has been written since it: checkpoints and metrics rows
    come after this check)."""
    if not pending:
        return []
    values = dist.mean_over_ranks_all(torch.stack(pending))
    first = last_step - len(pending) + 1
    pending.clear()
    for i, value in enumerate(values):
        check_finite_loss(value, "generator", first + i)
    return values


def ema_decay_at(n: int, decay: float) -> float:
    """EMA decay for the ``n``-th update (0-based) of a generator stage: 0 for the first (the
    EMA restarts as a copy of the denoiser), then ``min(decay, (1 + n) / (10 + n))``.

    The weight the average gives to the denoiser of step ``k`` falls off like ``(k / n) ** 9``
    while ``n`` is small, so the weights sampled from are those of the stage's own later steps
    at any budget, and nothing from an earlier round or the random initialisation survives."""
    return 0.0 if n <= 0 else min(decay, (1.0 + n) / (10.0 + n))


def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema += (1 - decay) (model - ema)`` for every parameter, buffers copied: one fused
    multi-tensor kernel each on a GPU instead of one per tensor (the same arithmetic as
    ``lerp_`` tensor by tensor, bit for bit on a CPU)."""
    with torch.no_grad():
        ema_params, params = list(ema.parameters()), list(model.parameters())
        if len(ema_params) != len(params):
            raise ValueError("the EMA and the model have different parameters")
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        ema_buffers, buffers = list(ema.buffers()), list(model.buffers())
        if len(ema_buffers) != len(buffers):
            raise ValueError("the EMA and the model have different buffers")
        if buffers:
            torch._foreach_copy_(ema_buffers, buffers)
