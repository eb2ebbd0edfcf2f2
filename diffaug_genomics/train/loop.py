"""The DiffAug training loop: warm-up, then rounds of (generator -> bank refresh -> encoder).

The schedule is a list of :class:`Stage` s, each made of *units* (an encoder epoch, a block of
generator steps, one bank refresh). Every unit draws its randomness from generators seeded by
``(seed, stage, unit)``. A checkpoint is written at the end of a unit once ``checkpoint_every_s``
seconds have passed since the last one (0: after every unit), at the end of every stage, and
mid-unit when a stop is requested; it holds both models, optimisers, EMA, the unit's generator
state and the step within it. Resuming therefore replays the exact same computation: a run
killed at any moment and resumed ends with the same weights as an uninterrupted one (bit for bit
on CPU, within one ``precision``).

Distributed (``ctx.world_size = W > 1``, process group initialised by the caller): every rank
holds the same models, optimisers and unit generators. An encoder step takes the next ``W * B``
rows of the epoch's permutation (``B = optim.batch_size`` per rank); every rank builds the
positives of that global batch from the shared generator and keeps its own ``B`` rows, so the
ranks together compute what one process computes on the global batch (the loss gathers the
other ranks' candidates, batch norm is synchronised, gradients are averaged in one all-reduce).
Generator steps draw their indices and noise for the global batch the same way. The bank refresh
and the embeddings of every row are split into ``W`` contiguous shares and all-gathered; kNN
neighbours are found on rank 0 and broadcast. Only rank 0 writes files. The stop request is
agreed on by all ranks after every step, so all stop at the same step and rank 0's checkpoint
describes every rank.

Baselines (``augment = knn-mixup | handcrafted``) run one encoder stage with the same number of
encoder epochs, so every method gets the same encoder budget.

This module holds :class:`Trainer`: its state, checkpoints, resume and the loop over the
schedule. Each phase it runs is a part of it in its own module: :mod:`.schedule` (stages, unit
seeds), :mod:`.encoder_phase` (neighbours, positives, loss, an epoch), :mod:`.generator_phase`
(denoiser steps, EMA), :mod:`.bank` (the bank refresh), :mod:`.run_diagnostics` and
:mod:`.metrics_file`; :mod:`.paths` names the run directory's files.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from diffaug_genomics.config import Config
from diffaug_genomics.diagnostics import diagnostic_sample
from diffaug_genomics.io.atomic import atomic_temp
from diffaug_genomics.modalities.base import Modality, build_head
from diffaug_genomics.progress import LOG, progress
from diffaug_genomics.train import checkpoint as ckpt
from diffaug_genomics.train import distributed as dist
from diffaug_genomics.train.bank import BankPhase
from diffaug_genomics.train.compiled import maybe_compile
from diffaug_genomics.train.distributed import SINGLE, DistContext
from diffaug_genomics.train.encoder_phase import EncoderPhase
from diffaug_genomics.train.export import ExportChoice
from diffaug_genomics.train.generator_phase import GeneratorPhase, _ema_update, ema_decay_at
from diffaug_genomics.train.metrics_file import MetricsFile
from diffaug_genomics.train.paths import RunPaths
from diffaug_genomics.train.precision import configure_matmul, resolve_precision, wrap
from diffaug_genomics.train.run_diagnostics import RunDiagnostics
from diffaug_genomics.train.schedule import Stage, StopRequested, plan, unit_seed

__all__ = ["RunPaths", "Stage", "StopRequested", "Trainer", "_ema_update", "ema_decay_at", "plan",
           "unit_seed"]


FIT_INIT_ROWS = 16384
"""Most training rows an encoder's data-dependent initialisation (``fit_init``) reads (a PCA
start from 10,000 DHS rows probes 1.4 points above one from 4,096: selection.md)."""


class Trainer(EncoderPhase, GeneratorPhase, BankPhase, RunDiagnostics, MetricsFile):
    """Runs (or resumes) the schedule of :func:`plan` on in-memory data.

    ``rows`` are the stored samples (DNA: ``(N, L, 4) uint8``); the modality turns a block of
    rows into model tensors. ``should_stop`` is polled after every step: when it returns True the
    trainer writes a checkpoint and raises :class:`StopRequested`. With ``ctx.world_size > 1``
    the caller has initialised the process group (see the module docstring). ``precision``
    (``fp32`` | ``bf16``) overrides what ``cfg.precision`` resolves to.
    """

    def __init__(self, cfg: Config, modality: Modality, rows: np.ndarray, run_dir: Path,
                 device: torch.device, ctx: DistContext = SINGLE,
                 should_stop: Callable[[], bool] | None = None,
                 precision: str | None = None) -> None:
        self.cfg, self.modality, self.rows = cfg, modality, rows
        self.paths = RunPaths(Path(run_dir))
        self.device, self.ctx = device, ctx
        self.should_stop = should_stop or (lambda: False)
        # fit decides ``precision: auto`` by measurement (train/autotune); alone, the rule
        self.precision = precision or resolve_precision(cfg.precision, device)
        configure_matmul(device, self.precision)
        LOG.log(self._info, "precision: %s (%s on %s)%s", self.precision, cfg.precision,
                device.type, "; compiling the models (torch.compile)" if cfg.compile else "")
        self.n = len(rows)
        self.sample_shape = tuple(modality.to_model(rows[:1]).shape[1:])
        self.stages = plan(cfg)
        torch.manual_seed(cfg.seed)
        self.encoder = modality.build_encoder(cfg, self.sample_shape).to(device)
        self._discover_symmetry()
        self._fit_init()
        self.export = ExportChoice(cfg.export.choose, cfg.export.criterion)
        self.head = build_head(cfg, cfg.encoder.embed_dim).to(device)
        if ctx.distributed:
            self._sync_batchnorm()
        self.enc_params = list(self.encoder.parameters()) + list(self.head.parameters())
        self.enc_opt = torch.optim.AdamW(self.enc_params, lr=cfg.optim.lr,
                                         weight_decay=cfg.optim.weight_decay)
        self.denoiser: nn.Module | None = None
        self.ema: nn.Module | None = None
        self.gen_opt: torch.optim.Optimizer | None = None
        if cfg.augment == "diffaug":
            from diffaug_genomics.diffusion import Diffusion

            self.diffusion = Diffusion.from_config(cfg.generator).to(device)
            self.denoiser = modality.build_denoiser(cfg, self.sample_shape,
                                                    cfg.encoder.embed_dim).to(device)
            self.ema = copy.deepcopy(self.denoiser).requires_grad_(False)
            self.gen_opt = torch.optim.AdamW(self.denoiser.parameters(), lr=cfg.generator.lr, weight_decay=0.0)
        self.handcrafted = modality.build_handcrafted(cfg) if cfg.augment == "handcrafted" else None
        # the forward passes of training and sampling: compiled if asked, autocast if bf16
        self._encode = maybe_compile(self.encoder, cfg.compile, "encoder")
        self._denoise = self._sample_with = None
        if self.denoiser is not None:
            self._denoise = wrap(maybe_compile(self.denoiser, cfg.compile, "denoiser"), device,
                                 self.precision)
            self._sample_with = wrap(maybe_compile(self.ema, cfg.compile, "EMA denoiser"),
                                     device, self.precision)
        if ctx.distributed:
            self._broadcast_weights()
        self.batch = min(cfg.optim.batch_size, self.n // ctx.world_size)  # per rank
        self.global_batch = self.batch * ctx.world_size
        self.steps_per_epoch = max(1, self.n // self.global_batch)
        total_epochs = sum(s.units for s in self.stages if s.kind in ("warmup", "encoder"))
        self.total_enc_steps = max(1, total_epochs * self.steps_per_epoch)
        # progress through the schedule
        self.stage_idx, self.unit_idx, self.step_in_unit = 0, 0, 0
        self.enc_step, self.gen_step, self.metric_rows = 0, 0, 0
        self.unit_gen_state: torch.Tensor | None = None
        self.neighbours: np.ndarray | None = None
        self.bank: torch.Tensor | None = None
        self.cond: torch.Tensor | None = None
        self.diag_idx = diagnostic_sample(self.n, cfg.seed)
        self._last_diagnostics: dict[str, float] = {}
        self._reference: dict[str, torch.Tensor] | None = None  # for the agreement criteria
        self.collapse_warned = False
        self._calibrated_at: int | None = None  # enc_step of the last recalibration pass
        self.t0 = time.perf_counter()
        self._saved_at = self.t0  # when the last checkpoint was written

    def _discover_symmetry(self) -> None:
        """Measure which of the modality's candidate transforms the training rows obey
        (:func:`~diffaug_genomics.symmetry.discover`; deterministic, so a resumed run finds the
        same) and give the accepted group to an encoder that averages over one
        (``set_symmetry``)."""
        from diffaug_genomics.symmetry import discover

        self.symmetry = discover(self.modality.symmetries, self.rows, self.cfg.symmetry,
                                 self.cfg.seed)
        LOG.log(self._info, "%s", self.symmetry.summary())
        set_symmetry = getattr(self.encoder, "set_symmetry", None)
        if callable(set_symmetry) and len(self.symmetry.group) > 1:
            set_symmetry(self.symmetry.group)

    def _fit_init(self) -> None:
        """Data-dependent initialisation of an encoder that has one (``fit_init(x)``, e.g. the
        spectrum encoder's feature statistics and PCA directions), from a fixed, seeded sample of
        up to :data:`FIT_INIT_ROWS` training rows. Deterministic, so a resumed run recomputes
        the same values before its checkpoint replaces them."""
        fit_init = getattr(self.encoder, "fit_init", None)
        if callable(fit_init):
            fit_init(self._x(np.sort(diagnostic_sample(self.n, self.cfg.seed, FIT_INIT_ROWS))))
            record = getattr(self.encoder, "start_record", None)
            if record:
                LOG.log(self._info, "start: %s", ", ".join(f"{k} {v}" for k, v in record.items()))

    def _offer_export(self, state: str) -> None:
        """The encoder as it is now (its last diagnostics) as a candidate for export."""
        self.export.offer(state, self._last_diagnostics, self.encoder.state_dict(),
                          self.head.state_dict())

    def _sync_batchnorm(self) -> None:
        """Batch norm over the global batch in the encoder and head (before the optimiser)."""
        from diffaug_genomics.train.sync_bn import convert_sync_batchnorm

        if self.n < self.ctx.world_size:
            from diffaug_genomics.errors import InputError

            raise InputError(f"{self.n} samples cannot be split over {self.ctx.world_size} ranks")
        convert_sync_batchnorm(self.encoder, self.device)
        convert_sync_batchnorm(self.head, self.device)

    def _broadcast_weights(self) -> None:
        """Rank 0's initial weights on every rank (they are equal already when every rank
        seeded the same; this makes sure)."""
        for module in (self.encoder, self.head, self.denoiser, self.ema):
            if module is not None:
                dist.broadcast_parameters(module)

    def _local(self, batch: Any) -> Any:
        """This rank's rows of a global batch (tensor or array); the batch itself when single."""
        if not self.ctx.distributed:
            return batch
        rows = len(batch) // self.ctx.world_size
        return batch[self.ctx.rank * rows:(self.ctx.rank + 1) * rows]

    def _poll_stop(self) -> bool:
        """``should_stop()``, agreed on by all ranks: True everywhere if any rank asks."""
        return dist.any_rank(self.should_stop())

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "format": ckpt.CHECKPOINT_FORMAT,
            "config_hash": self.cfg.hash(),
            "progress": {"stage": self.stage_idx, "unit": self.unit_idx,
                         "step_in_unit": self.step_in_unit, "enc_step": self.enc_step,
                         "gen_step": self.gen_step, "metric_rows": self.metric_rows},
            "unit_generator": self.unit_gen_state,
            "encoder": self.encoder.state_dict(), "head": self.head.state_dict(),
            "enc_opt": self.enc_opt.state_dict(), "rng": ckpt.rng_state(),
            "export": self.export.state_dict(), "symmetry_group": self.symmetry.group,
        }
        if self.denoiser is not None:
            state.update(denoiser=self.denoiser.state_dict(), ema=self.ema.state_dict(),
                         gen_opt=self.gen_opt.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("config_hash") != self.cfg.hash():
            from diffaug_genomics.errors import InputError

            raise InputError("the checkpoint was written with a different configuration; "
                             "resume with the run's own config.yaml or start a new run",
                             path=self.paths.latest)
        p = state["progress"]
        self.stage_idx, self.unit_idx, self.step_in_unit = p["stage"], p["unit"], p["step_in_unit"]
        self.enc_step, self.gen_step, self.metric_rows = p["enc_step"], p["gen_step"], p["metric_rows"]
        self.unit_gen_state = state["unit_generator"]
        self.encoder.load_state_dict(state["encoder"])
        self.head.load_state_dict(state["head"])
        self.enc_opt.load_state_dict(state["enc_opt"])
        if "export" in state:  # a checkpoint from before the export choice: final state only
            self.export.load_state_dict(state["export"])
        group = [int(g) for g in state.get("symmetry_group", [0])]
        if group != self.symmetry.group:  # a run started before the discovery: it keeps none
            LOG.warning("%s was written before symmetries were learned from the data: the run "
                        "continues without one", self.paths.latest)
            self.symmetry.group = group
            self.symmetry.accepted = []
            self.symmetry.reason = "none: the run was started by a version without the discovery"
        if self.denoiser is not None:
            self.denoiser.load_state_dict(state["denoiser"])
            self.ema.load_state_dict(state["ema"])
            self.gen_opt.load_state_dict(state["gen_opt"])
        ckpt.set_rng_state(state["rng"])

    def save_checkpoint(self) -> None:
        if self.ctx.is_main:
            ckpt.save_atomic(self.state_dict(), self.paths.latest)
        self._saved_at = time.perf_counter()

    def _checkpoint_due(self) -> bool:
        """Whether ``checkpoint_every_s`` seconds have passed since the last checkpoint (rank
        0's clock decides; only rank 0 writes)."""
        due = time.perf_counter() - self._saved_at >= self.cfg.checkpoint_every_s
        return dist.any_rank(due and self.ctx.is_main)

    def _check_ranks_agree(self, what: str, value: str) -> None:
        """Raise on every rank if the ranks see different ``value`` s (e.g. no shared disk)."""
        values = dist.same_on_all_ranks(value)
        if len(set(values)) > 1:
            from diffaug_genomics.errors import DiffaugError

            raise DiffaugError(f"ranks disagree on {what}: {values} (the run directory and the "
                               "data must be on a filesystem shared by every node)")

    def resume(self) -> bool:
        """Load ``checkpoints/latest.pt`` if it exists; returns whether it did."""
        found = self.paths.latest.exists()
        if self.ctx.distributed:
            self._check_ranks_agree("whether a checkpoint exists", str(found))
        if not found:
            return False
        self.load_state_dict(ckpt.load(self.paths.latest, ckpt.CHECKPOINT_FORMAT))
        self._truncate_metrics(self.metric_rows)
        self._check_ranks_agree("resumed at", f"{self.stage_idx}/{self.unit_idx}/"
                                f"{self.step_in_unit}")
        LOG.info("resuming at stage %d/%d (%s), unit %d, step %d", min(self.stage_idx + 1, len(self.stages)),
                 len(self.stages), self.stages[min(self.stage_idx, len(self.stages) - 1)].kind,
                 self.unit_idx, self.step_in_unit)
        return True

    def _x(self, idx: np.ndarray) -> torch.Tensor:
        """Model-layout tensor of the rows ``idx`` on the device (on CUDA through pinned host
        memory, copied without blocking the host)."""
        x = self.modality.to_model(self.rows[idx])
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device)

    def _embed_all(self, model: nn.Module, batch_size: int = 1024) -> torch.Tensor:
        """Encoder embeddings of every row, ``(N, D)`` float32 on the device (eval mode).

        Distributed: each rank embeds its share of the rows, then all ranks gather them."""
        model.eval()
        lo, hi = self.ctx.shard(self.n)
        local = torch.empty((hi - lo, self.cfg.encoder.embed_dim), device=self.device)
        with torch.no_grad():  # filled in place: no second copy of the (N, D) result
            for start in range(lo, hi, batch_size):
                stop = min(start + batch_size, hi)
                local[start - lo:stop - lo] = model(self._x(np.arange(start, stop)))
        if not self.ctx.distributed:
            return local
        return dist.all_gather_rows(local, self.ctx, self.n)

    def _unit_generator(self, seed: int) -> torch.Generator:
        gen = torch.Generator().manual_seed(seed)
        if self.step_in_unit > 0 and self.unit_gen_state is not None:
            gen.set_state(self.unit_gen_state)
        return gen

    def _checkpoint_mid_unit(self, gen: torch.Generator) -> None:
        self.unit_gen_state = gen.get_state()
        self.save_checkpoint()
        dist.barrier()  # no rank exits (and no launcher kills the job) before rank 0 wrote it
        raise StopRequested

    def _prepare_stage(self, stage_idx: int) -> None:
        """Per-stage inputs that are a pure function of the state at the stage start."""
        stage = self.stages[stage_idx]
        if stage.kind in ("warmup", "encoder"):
            self._ensure_neighbours(stage_idx)
        if stage.kind in ("generator", "bank"):
            if self.cond is None or getattr(self, "_cond_round", None) != stage.round:
                self._recalibrate()  # batch-norm statistics of the frozen encoder
                self.cond = self._embed_all(self.encoder)  # encoder is frozen until the next stage
                self._cond_round = stage.round
        if stage.kind == "encoder" and self.cfg.augment == "diffaug" and self.bank is None:
            self.bank = self._place_bank(self._load_bank())

    def run(self) -> None:
        """Run every remaining unit of the schedule, checkpointing after each."""
        total_units = sum(s.units for s in self.stages)
        done_units = sum(s.units for s in self.stages[: self.stage_idx]) + self.unit_idx
        with progress("fit", total=total_units, unit="unit", enabled=self.ctx.is_main) as bar:
            bar.advance(done_units)
            if self.metric_rows == 0 and self.stage_idx == 0 and self.unit_idx == 0 \
                    and self.step_in_unit == 0:  # a fresh run: the untrained encoder's rank
                self._truncate_metrics(0)  # rows a run killed before its first checkpoint left
                rank = self._encoder_diagnostics("init", 0, -1)
                LOG.log(self._info, "init: eff_rank %.1f of %d", rank, self.cfg.encoder.embed_dim)
                self._offer_export("start")
                if self.ctx.is_main:  # the start, beside warmup.pt and round{r}.pt
                    ckpt.save_atomic(self.state_dict(), self.paths.checkpoints / "start.pt")
            while self.stage_idx < len(self.stages):
                stage_idx = self.stage_idx
                stage = self.stages[stage_idx]
                self._prepare_stage(stage_idx)
                seen: list[float] = []  # this stage's diagnostic, unit by unit
                while self.stage_idx == stage_idx:
                    seed = unit_seed(self.cfg.seed, stage_idx, self.unit_idx)
                    what = f"{stage.kind} r{stage.round} {self.unit_idx + 1}/{stage.units}"
                    if stage.kind in ("warmup", "encoder"):
                        what += f": loss {self._encoder_epoch(stage, seed):.4f}"
                        seen.append(self._encoder_diagnostics(
                            stage.kind, stage.round, self.unit_idx,
                            candidate=self.unit_idx + 1 == stage.units))
                    elif stage.kind == "generator":
                        what += f": loss {self._generator_block(stage, seed):.4f}"
                        seen.append(self._generator_diagnostics(stage))
                    else:
                        what += f": {self._refresh_bank(stage, seed):.1f} s"
                    LOG.log(self._info, "%s", what)
                    self.unit_idx, self.step_in_unit, self.unit_gen_state = self.unit_idx + 1, 0, None
                    if self.unit_idx == stage.units:
                        self.stage_idx, self.unit_idx = self.stage_idx + 1, 0
                    finished = self.stage_idx != stage_idx
                    if finished and stage.kind in ("warmup", "encoder"):
                        self._offer_export(_state_label(stage, self.cfg.augment))
                    stop = self._poll_stop() and self.stage_idx < len(self.stages)
                    if finished or stop or self._checkpoint_due():
                        self.save_checkpoint()
                    if finished and seen:
                        self._log_stage_diagnostics(stage, seen)
                    if finished and stage.kind in ("warmup", "encoder") and self.ctx.is_main:
                        name = "warmup.pt" if stage.kind == "warmup" else f"round{stage.round}.pt"
                        with atomic_temp(self.paths.checkpoints / name) as tmp:  # never half-copied
                            shutil.copyfile(self.paths.latest, tmp)
                    bar.advance(1, postfix=what)
                    if stop:
                        dist.barrier()
                        raise StopRequested
        self._write_final()

    @property
    def _info(self) -> int:
        """Log level of progress lines: INFO on rank 0, DEBUG on the others."""
        return logging.INFO if self.ctx.is_main else logging.DEBUG

    def _write_final(self) -> None:
        if self.paths.encoder.exists() and (self.ema is None or self.paths.generator.exists()):
            return  # a finished run resumed: written once, embed may be reading them
        self._recalibrate()  # batch-norm statistics of the final weights (every rank)
        chosen = self.export.chosen
        if self.cfg.export.choose == "best" and chosen is not None:
            # the chosen state's batch-norm statistics were recomputed by its diagnostic pass
            self.encoder.load_state_dict(chosen["encoder"])
            self.head.load_state_dict(chosen["head"])
        if not self.ctx.is_main:
            return
        LOG.info("%s", self.export.summary())
        common = {"config": self.cfg.to_dict(), "modality": self.modality.name,
                  "sample_shape": list(self.sample_shape), "config_hash": self.cfg.hash()}
        if self.ema is not None:  # before encoder.pt, whose presence marks a finished run
            ckpt.save_atomic({"format": ckpt.GENERATOR_FORMAT, **common,
                              "denoiser": self.ema.state_dict()}, self.paths.generator)
        ckpt.save_atomic({"format": ckpt.ENCODER_FORMAT, **common,
                          "encoder": self.encoder.state_dict(), "head": self.head.state_dict(),
                          "exported": self.export.record(),
                          "symmetry": self.symmetry.to_record()},
                         self.paths.encoder)


def _state_label(stage: Stage, augment: str) -> str:
    """The name of the encoder state at the end of ``stage``: ``warmup``, ``round R``, or
    ``trained`` (a baseline's one encoder stage)."""
    if stage.kind == "warmup":
        return "warmup"
    return f"round {stage.round}" if augment == "diffaug" else "trained"
