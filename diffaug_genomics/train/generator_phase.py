"""The generator phase: denoiser steps on (sequence, frozen embedding) pairs, and its EMA.

Reads: the rows, ``progress.cond`` (the frozen encoder's embeddings of every row), the
denoiser, its optimiser and the diffusion. Writes: the denoiser's and EMA's weights, the
optimiser, ``progress.gen_step`` / ``step_in_unit``, ``metrics.csv`` rows.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from diffaug_genomics.guards import check_finite_loss
from diffaug_genomics.train import distributed as dist
from diffaug_genomics.train.schedule import Stage
from diffaug_genomics.train.state import Models, Progress, Setup, UnitEnd
from diffaug_genomics.transfer import to_device


def generator_block(setup: Setup, models: Models, progress: Progress, stage: Stage,
                    seed: int) -> UnitEnd:
    """One block of ``generator.steps_per_checkpoint`` denoiser steps (the unit ``unit_idx`` of
    the stage), from ``progress.step_in_unit`` on, each followed by the EMA update; batches and
    noise drawn from a generator seeded by ``seed``. Stops early, with the unit's state in
    ``progress``, when a stop is requested."""
    g, n, ctx = setup.cfg.generator, setup.n, setup.ctx
    gen = progress.unit_generator(seed)
    first = progress.unit_idx * g.steps_per_checkpoint
    n_steps = min(g.steps_per_checkpoint, g.steps - first)
    models.denoiser.train()
    losses, t = [], time.perf_counter()
    batch = min(g.batch_size, n)  # per rank
    draws = {} if not ctx.distributed else {
        "draw_rows": batch * ctx.world_size, "offset": batch * ctx.rank}
    # the losses stay on the device until a metrics row, a stop or the block's end needs
    # them (one host sync there, none per step); a non-finite one is reported with its step
    pending: list[torch.Tensor] = []
    for step in range(progress.step_in_unit, n_steps):
        idx = torch.randint(n, (batch * ctx.world_size,), generator=gen).numpy()
        idx = setup.local(idx)
        x0 = setup.modality.to_diffusion(setup.x(idx))
        loss = models.diffusion.loss(models.denoise, x0,
                                     progress.cond[to_device(torch.from_numpy(idx), setup.device)],
                                     p_uncond=g.cond_dropout, generator=gen, **draws)
        models.gen_opt.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_gradients(list(models.denoiser.parameters()))
        models.gen_opt.step()
        decay = ema_decay_at(first + step, g.ema_decay) if g.ema_warmup else g.ema_decay
        _ema_update(models.ema, models.denoiser, decay)
        progress.gen_step += 1
        progress.step_in_unit = step + 1
        pending.append(loss.detach())
        if progress.gen_step % setup.cfg.log_every == 0:
            losses += _checked(pending, progress.gen_step)
            rate = len(losses) * len(idx) * ctx.world_size / (time.perf_counter() - t)
            setup.metrics.log("generator", stage.round, progress.unit_idx, progress.gen_step,
                              losses[-1], g.lr, rate)
        if setup.poll_stop() and progress.step_in_unit < n_steps:
            losses += _checked(pending, progress.gen_step)
            progress.unit_gen_state = gen.get_state()
            return UnitEnd(float("nan"), interrupted=True)
    losses += _checked(pending, progress.gen_step)
    return UnitEnd(float(np.mean(losses)) if losses else float("nan"))


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
