"""How a run computes on its device, decided before it trains: the precision and the batch scale.

**``precision: auto``** is never the slower choice. Where the device has no native bfloat16
it is ``fp32`` (emulated bfloat16 is slower: a rule, nothing to measure). Elsewhere both
candidates are *measured* on the run's own models (built from its configuration, with
throwaway optimisers), batches and rows: a warm-up then one to :data:`REPEATS` timed steps of each
phase the schedule has (encoder step, generator step, one sampler evaluation of the bank
refresh), in turns, more only while the measurement stays under 1 % of the fit it estimates. Each candidate's fit time is estimated as the sum over phases of its steps
in the schedule times its seconds per step, and the smaller wins (``fp32`` on a tie). Why
measure: the answer depends on the device *and* the sizes. On this project's CPU (AMX) bf16
made every phase 1.4-1.8x faster (``benchmarks/results/gpu.md``); on an H200 the same
``default`` models at batch 128-256 were launch-bound, and bf16's extra casts made them
slower (fit 1.23x longer; issue #23).

The seconds per step are kept per machine in ``tuning.json`` in the user cache
(:mod:`.tuning_cache`: ``$DIFFAUG_TUNING_CACHE``, else ``$DIFFAUG_CACHE`` or
``~/.cache/diffaug-genomics``), keyed by
everything they depend on (device, threads, torch version, models, batches, sample shape), so
that the runs of one machine decide alike and only the first one pays the measurement (a few
seconds). The decision, its figures and its reason are logged and written to ``config.yaml``
(``resolved_precision``, ``precision_decision``); a resumed run reuses the precision its
``config.yaml`` records.

**``batch_scaling: auto``** multiplies the encoder, generator and bank batches by ``m``, a
power of two, with both learning rates multiplied by ``sqrt(m)`` (the square-root rule for
Adam: Malladi et al., "On the SDEs and scaling rules for adaptive gradient algorithms",
NeurIPS 2022). On a CPU ``m = 1``: a CPU step is compute-bound, a larger batch is no faster per
sample, and results stay what they were. On a GPU ``m`` is the largest power of two up to
:data:`MAX_BATCH_MULTIPLIER` such that ``m`` times the measured peak memory of a step at the
configured batch fits in :data:`BATCH_MEMORY_SHARE` of the device's free memory, and the
encoder still takes at least :data:`MIN_STEPS_PER_EPOCH` steps per epoch (so small datasets
keep their batch). ``m`` and the batches it gives are written to ``config.yaml``
(``resolved_batch_scaling``) and reused on resume. ``batch_scaling: fixed`` keeps the configured batches.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from diffaug_genomics.progress import LOG
from diffaug_genomics.train.precision import native_bf16, wrap
from diffaug_genomics.train.tuning_cache import cache_key, cached, store

if TYPE_CHECKING:
    from diffaug_genomics.config import Config
    from diffaug_genomics.modalities.base import Modality
    from diffaug_genomics.train.distributed import DistContext

REPEATS = 3
"""Most timed steps of each phase and candidate (after one warm-up step each)."""
MEASURE_SHARE = 0.01
"""Share of the estimated fit time past which no further timed steps are taken (after the
first of each)."""
MAX_BATCH_MULTIPLIER = 32
"""Largest batch multiplier of ``batch_scaling: auto``."""
BATCH_MEMORY_SHARE = 0.5
"""Share of the GPU's free memory the scaled steps may take (the rest: the bank, the
conditions, the allocator's slack)."""
MIN_STEPS_PER_EPOCH = 200
"""Fewest encoder steps per epoch a scaled batch must leave."""


@dataclass
class Tuning:
    """What :func:`tune` decided: the configuration the run trains with (batches and learning
    rates scaled), its precision, and what to write into ``config.yaml``."""

    config: Config
    precision: str
    record: dict[str, Any] = field(default_factory=dict)


def tune(cfg: Config, modality: Modality, rows: np.ndarray, device: torch.device,
         ctx: DistContext, saved: dict[str, Any] | None = None) -> Tuning:
    """The batch scale and the precision of a run (see the module docstring); ``saved`` is a
    resumed run's ``config.yaml``, whose decisions are kept. Distributed: rank 0 decides,
    every rank gets its decision."""
    from diffaug_genomics.train import distributed as dist

    decided = ""
    if ctx.is_main:
        decided = json.dumps(_decide(cfg, modality, rows, device, ctx, saved or {}))
    decided = dist.same_on_all_ranks(decided)[0]
    record = json.loads(decided)
    scaled = scale_batches(cfg, record["resolved_batch_scaling"]["multiplier"])
    return Tuning(scaled, record["resolved_precision"], record)


def _decide(cfg: Config, modality: Modality, rows: np.ndarray, device: torch.device,
            ctx: DistContext, saved: dict[str, Any]) -> dict[str, Any]:
    if "resolved_batch_scaling" in saved:
        multiplier = int(saved["resolved_batch_scaling"]["multiplier"])
        why = "kept from the run's config.yaml (resumed)"
    elif "resolved_precision" in saved:
        multiplier, why = 1, "a run started before batch scaling (resumed)"
    else:
        multiplier, why = _batch_multiplier(cfg, modality, rows, device, ctx)
    scaled = scale_batches(cfg, multiplier)
    batching = {"multiplier": multiplier, "reason": why,
                "optim.batch_size": scaled.optim.batch_size, "optim.lr": scaled.optim.lr,
                "generator.batch_size": scaled.generator.batch_size,
                "generator.lr": scaled.generator.lr, "bank.batch_size": scaled.bank.batch_size}
    if multiplier != 1:
        LOG.info("batch scaling: x%d (%s): encoder batch %d, lr %.3g; generator batch %d, "
                 "lr %.3g; bank batch %d", multiplier, why, scaled.optim.batch_size,
                 scaled.optim.lr, scaled.generator.batch_size, scaled.generator.lr,
                 scaled.bank.batch_size)
    if cfg.precision != "auto":
        precision, decision = cfg.precision, {"reason": "set in the configuration"}
    elif "resolved_precision" in saved:
        precision = str(saved["resolved_precision"])
        decision = {**saved.get("precision_decision", {}),
                    "reason": "kept from the run's config.yaml (resumed)"}
    else:
        precision, decision = choose_precision(scaled, modality, rows, device, ctx.world_size)
    decision = {**decision, "device": device.type}
    LOG.info("precision: %s (%s on %s: %s)", precision, cfg.precision, device.type,
             decision["reason"])
    return {"resolved_precision": precision, "precision_decision": decision,
            "resolved_batch_scaling": batching}


# ---------------------------------------------------------------------------------- batches

def scale_batches(cfg: Config, multiplier: int) -> Config:
    """``cfg`` with the encoder, generator and bank batches times ``multiplier`` and both
    learning rates times ``sqrt(multiplier)``; ``cfg`` itself for 1."""
    if multiplier == 1:
        return cfg
    root = math.sqrt(multiplier)
    return dataclasses.replace(
        cfg,
        optim=dataclasses.replace(cfg.optim, batch_size=cfg.optim.batch_size * multiplier,
                                  lr=cfg.optim.lr * root),
        generator=dataclasses.replace(cfg.generator,
                                      batch_size=cfg.generator.batch_size * multiplier,
                                      lr=cfg.generator.lr * root),
        bank=dataclasses.replace(cfg.bank, batch_size=cfg.bank.batch_size * multiplier))


def _batch_multiplier(cfg: Config, modality: Modality, rows: np.ndarray, device: torch.device,
                      ctx: DistContext) -> tuple[int, str]:
    """The batch multiplier of a new run, and why."""
    if cfg.batch_scaling == "fixed":
        return 1, "batch_scaling: fixed"
    if device.type != "cuda":
        return 1, f"{device.type}: compute-bound, a larger batch is not faster per sample"
    per_rank = len(rows) // ctx.world_size
    by_rows = per_rank // (cfg.optim.batch_size * MIN_STEPS_PER_EPOCH)
    if by_rows < 2:
        return 1, (f"{len(rows)} rows: a larger batch would leave fewer than "
                   f"{MIN_STEPS_PER_EPOCH} encoder steps per epoch")
    step_bytes = _step_memory(cfg, modality, rows, device)
    free = torch.cuda.mem_get_info(device)[0]
    by_memory = int(BATCH_MEMORY_SHARE * free // max(step_bytes, 1))
    m = 1
    while 2 * m <= min(MAX_BATCH_MULTIPLIER, by_rows, by_memory):
        m *= 2
    return m, (f"{free / 2**30:.1f} GiB free on {device}, {step_bytes / 2**20:.0f} MiB per "
               f"step at the configured batches, {len(rows)} rows")


def _step_memory(cfg: Config, modality: Modality, rows: np.ndarray,
                 device: torch.device) -> int:
    """Peak bytes the allocator takes for one step of each phase at the configured batches
    (fp32, the larger), beyond what it held before."""
    models = _Models(cfg, modality, rows, device)
    peak = 0
    for step in models.steps("fp32").values():
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        peak = max(peak, torch.cuda.max_memory_allocated(device) - before)
    del models
    torch.cuda.empty_cache()
    return peak


# -------------------------------------------------------------------------------- precision

def choose_precision(cfg: Config, modality: Modality, rows: np.ndarray, device: torch.device,
                     world_size: int = 1) -> tuple[str, dict[str, Any]]:
    """``fp32`` or ``bf16`` for ``precision: auto`` and why (see the module docstring):
    ``(precision, {"reason", "seconds_per_step", "estimate_s"})``."""
    if not native_bf16(device):
        return "fp32", {"reason": f"bfloat16 is not native on this {device.type} (emulated: "
                                  "slower)"}
    counts = _phase_counts(cfg, len(rows), world_size)
    key = cache_key(cfg, modality, rows, device)
    per_step = cached(key)
    source = "measured earlier on this machine"
    if per_step is None or set(per_step["fp32"]) != set(counts):
        t = time.perf_counter()
        per_step = _measure(cfg, modality, rows, device, counts)
        store(key, per_step)
        source = f"measured in {time.perf_counter() - t:.1f} s"
    estimate = {p: sum(counts[k] * per_step[p][k] for k in counts) for p in ("fp32", "bf16")}
    precision = "bf16" if estimate["bf16"] < estimate["fp32"] else "fp32"
    figures = "; ".join(f"{k} {1000 * per_step['fp32'][k]:.1f} / {1000 * per_step['bf16'][k]:.1f}"
                        " ms" for k in counts)
    reason = (f"{source}, fp32 / bf16 per step: {figures}; estimated fit {estimate['fp32']:.0f} "
              f"s in fp32, {estimate['bf16']:.0f} s in bf16")
    return precision, {"reason": reason, "seconds_per_step": per_step,
                       "estimate_s": {k: round(v, 1) for k, v in estimate.items()}}


def _phase_counts(cfg: Config, n: int, world_size: int) -> dict[str, float]:
    """Steps of each measured phase in the whole schedule."""
    from diffaug_genomics.train.schedule import plan

    stages = plan(cfg)
    batch = min(cfg.optim.batch_size, n // world_size) * world_size
    epochs = sum(s.units for s in stages if s.kind in ("warmup", "encoder"))
    counts = {"encoder": float(epochs * max(1, n // max(batch, 1)))}
    if cfg.augment == "diffaug":
        from diffaug_genomics.diffusion import Diffusion

        rounds = sum(1 for s in stages if s.kind == "bank")
        b = cfg.bank
        evaluations = len(Diffusion.from_config(cfg.generator).set_timesteps(
            cfg.generator.num_train_timesteps if b.sampler == "ddpm" else b.steps, b.strength))
        counts["generator"] = float(rounds * cfg.generator.steps)
        counts["bank"] = float(rounds * math.ceil(n / b.batch_size) * evaluations)
    return counts


class _Models:
    """Copies of a run's models with throwaway optimisers, and one step of each phase at the
    run's batches on its first rows."""

    def __init__(self, cfg: Config, modality: Modality, rows: np.ndarray,
                 device: torch.device) -> None:
        from diffaug_genomics.diffusion import Diffusion
        from diffaug_genomics.modalities.base import build_head

        self.cfg, self.device, self.modality = cfg, device, modality
        n = len(rows)
        self.enc_batch = max(1, min(cfg.optim.batch_size, n // 2))
        x = modality.to_model(rows[:max(2 * self.enc_batch, min(n, cfg.generator.batch_size))])
        shape = tuple(x.shape[1:])
        self.x = x.to(device)
        self.encoder = modality.build_encoder(cfg, shape).to(device)
        if callable(getattr(self.encoder, "fit_init", None)):
            self.encoder.fit_init(x)
        self.head = build_head(cfg, cfg.encoder.embed_dim).to(device)
        self.enc_opt = torch.optim.AdamW([*self.encoder.parameters(), *self.head.parameters()],
                                         lr=cfg.optim.lr)
        self.denoiser = None
        if cfg.augment == "diffaug":
            self.diffusion = Diffusion.from_config(cfg.generator).to(device)
            self.denoiser = modality.build_denoiser(cfg, shape, cfg.encoder.embed_dim).to(device)
            self.gen_opt = torch.optim.AdamW(self.denoiser.parameters(), lr=cfg.generator.lr)

    def steps(self, precision: str) -> dict[str, Callable[[], None]]:
        """One training step of the encoder and of the denoiser, and one evaluation of the
        bank's sampler (its batch, guidance and positives per sequence), in ``precision``."""
        from diffaug_genomics.losses import info_nce_loss
        from diffaug_genomics.train.precision import autocast

        cfg, dev, b = self.cfg, self.device, self.enc_batch
        gen = torch.Generator().manual_seed(0)

        def encoder() -> None:
            with autocast(dev, precision):
                y = self.head(self.encoder(self.x[:2 * b]))
            loss = info_nce_loss(y[:b].float(), y[b:2 * b].float(), temperature=0.2)
            self.enc_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.enc_opt.step()

        out = {"encoder": encoder}
        if self.denoiser is None:
            return out
        model = wrap(self.denoiser, dev, precision)
        rows = min(cfg.generator.batch_size, len(self.x))
        x0 = self.modality.to_diffusion(self.x[:rows])
        cond = torch.randn(rows, cfg.encoder.embed_dim, generator=gen).to(dev)

        def generator() -> None:
            loss = self.diffusion.loss(model, x0, cond, p_uncond=cfg.generator.cond_dropout,
                                       generator=gen)
            self.gen_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.gen_opt.step()

        sampled = cfg.bank.batch_size * cfg.bank.per_sequence
        sampled *= 1 if cfg.bank.guidance_scale == 1.0 else 2
        reps = -(-sampled // rows)
        xs = x0.repeat(reps, *([1] * (x0.dim() - 1)))[:sampled]
        cs = cond.repeat(reps, 1)[:sampled]
        ts = torch.full((sampled,), self.diffusion.num_train_timesteps // 2, device=dev)

        def bank() -> None:
            with torch.no_grad():
                model.eval()
                model(xs, ts, cs, drop_cond=None)
                model.train()

        return {**out, "generator": generator, "bank": bank}


def _measure(cfg: Config, modality: Modality, rows: np.ndarray, device: torch.device,
             counts: dict[str, float]) -> dict[str, dict[str, float]]:
    """Seconds per step of the phases of ``counts`` (steps in the schedule) in fp32 and bf16:
    a warm-up step of each, then timed steps in turns (a busy machine slows both alike), the
    fastest kept: one each, and up to :data:`REPEATS` while the measurement has taken less
    than :data:`MEASURE_SHARE` of the fit it estimates. The global random state is left as it
    was."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        models = _Models(cfg, modality, rows, device)
        steps = {p: models.steps(p) for p in ("fp32", "bf16")}
        best = {p: {k: math.inf for k in counts} for p in steps}
        for rep in range(REPEATS + 1):
            if rep > 1:
                estimate = min(sum(counts[k] * v[k] for k in counts) for v in best.values())
                if time.perf_counter() - t0 > MEASURE_SHARE * estimate:
                    break
            for phase in counts:
                for precision in steps:
                    sync()
                    t = time.perf_counter()
                    steps[precision][phase]()
                    sync()
                    if rep > 0:  # the first is the warm-up
                        best[precision][phase] = min(best[precision][phase],
                                                     time.perf_counter() - t)
    return best
