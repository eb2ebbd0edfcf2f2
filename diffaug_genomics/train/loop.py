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

This module holds :class:`Trainer`: the sequencing of the phases, checkpoints and resume. The
state it passes to every phase is three dataclasses (:mod:`.state`: the fixed ``Setup``, the
``Models`` and optimisers, the ``Progress``), built by :mod:`.build`; each phase is a function
of them in its own module: :mod:`.encoder_phase` (neighbours, positives, loss, an epoch),
:mod:`.generator_phase` (denoiser steps, EMA), :mod:`.bank` (the bank refresh),
:mod:`.run_diagnostics` (the label-free diagnostics); :mod:`.schedule` plans the stages and
seeds the units, :mod:`.export` chooses the exported state, :mod:`.metrics_file` writes
``metrics.csv`` and :mod:`diffaug_genomics.run_files` names the run directory's files.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffaug_genomics.config import Config
from diffaug_genomics.io.atomic import atomic_temp
from diffaug_genomics.modalities.base import Modality
from diffaug_genomics.progress import LOG, progress
from diffaug_genomics.train import checkpoint as ckpt
from diffaug_genomics.train import distributed as dist
from diffaug_genomics.train.bank import load_bank, place_bank, refresh_bank
from diffaug_genomics.train.build import build_models, make_setup
from diffaug_genomics.train.distributed import SINGLE, DistContext
from diffaug_genomics.train.encoder_phase import encoder_epoch, find_neighbours, neighbours_tag
from diffaug_genomics.train.export import ExportChoice
from diffaug_genomics.train.generator_phase import _ema_update, ema_decay_at, generator_block
from diffaug_genomics.train.precision import configure_matmul, resolve_precision
from diffaug_genomics.train.run_diagnostics import (
    encoder_diagnostics,
    generator_diagnostics,
    recalibrate,
    stage_summary,
)
from diffaug_genomics.train.schedule import Stage, StopRequested, plan, unit_seed
from diffaug_genomics.train.state import Progress, UnitEnd

__all__ = ["Stage", "StopRequested", "Trainer", "_ema_update", "ema_decay_at", "plan",
           "unit_seed"]


class Trainer:
    """Runs (or resumes) the schedule of :func:`plan` on in-memory data.

    ``rows`` are the stored samples (DNA: ``(N, L, 4) uint8``); the modality turns a block of
    rows into model tensors. ``should_stop`` is polled after every step: when it returns True the
    trainer writes a checkpoint and raises :class:`StopRequested`. With ``ctx.world_size > 1``
    the caller has initialised the process group (see the module docstring). ``precision``
    (``fp32`` | ``bf16``) overrides what ``cfg.precision`` resolves to.

    Its state is :attr:`setup` (fixed), :attr:`models` and :attr:`progress`
    (:mod:`.state`).
    """

    def __init__(self, cfg: Config, modality: Modality, rows: np.ndarray, run_dir: Path,
                 device: torch.device, ctx: DistContext = SINGLE,
                 should_stop: Callable[[], bool] | None = None,
                 precision: str | None = None) -> None:
        # fit decides ``precision: auto`` by measurement (train/autotune); alone, the rule
        precision = precision or resolve_precision(cfg.precision, device)
        configure_matmul(device, precision)
        self.setup = make_setup(cfg, modality, rows, run_dir, device, ctx, precision,
                                should_stop or (lambda: False))
        LOG.log(self.setup.info, "precision: %s (%s on %s)%s", precision, cfg.precision,
                device.type, "; compiling the models (torch.compile)" if cfg.compile else "")
        self.models, symmetry = build_models(self.setup)
        self.progress = Progress(symmetry=symmetry,
                                 export=ExportChoice(cfg.export.choose, cfg.export.criterion))
        # the run's clock (metrics.csv's time_s) starts once it is built, as before the
        # restructuring: a resumed run's first row then holds its training time only
        self.setup.metrics.t0 = self._saved_at = time.perf_counter()  # and the last checkpoint

    # ----------------------------------------------------------------------------- sequencing
    def run(self) -> None:
        """Run every remaining unit of the schedule, checkpointing as it goes, then export."""
        setup, p = self.setup, self.progress
        total_units = sum(s.units for s in setup.stages)
        done_units = sum(s.units for s in setup.stages[: p.stage_idx]) + p.unit_idx
        with progress("fit", total=total_units, unit="unit", enabled=setup.ctx.is_main) as bar:
            bar.advance(done_units)
            if setup.metrics.rows == 0 and p.stage_idx == 0 and p.unit_idx == 0 \
                    and p.step_in_unit == 0:  # a fresh run: the untrained encoder's rank
                self._score_start()
            while p.stage_idx < len(setup.stages):
                self._run_stage(bar)
        self._write_final()

    def _score_start(self) -> None:
        """The untrained encoder's diagnostics, offered for export, kept as ``start.pt``."""
        setup = self.setup
        setup.metrics.truncate(0)  # rows a run killed before its first checkpoint left
        rank = encoder_diagnostics(setup, self.models, self.progress, "init", 0, -1)
        LOG.log(setup.info, "init: eff_rank %.1f of %d", rank, setup.cfg.encoder.embed_dim)
        self._offer_export("start")
        if setup.ctx.is_main:  # the start, beside warmup.pt and round{r}.pt
            ckpt.save_atomic(self.state_dict(), setup.paths.start)

    def _run_stage(self, bar: Any) -> None:
        """The remaining units of the current stage, each followed by its checkpoint when
        due; at the stage's end the export candidate, the stage's log line and its copy of
        the checkpoint."""
        setup, p = self.setup, self.progress
        stage_idx = p.stage_idx
        stage = setup.stages[stage_idx]
        self._prepare_stage(stage_idx)
        seen: list[float] = []  # this stage's diagnostic, unit by unit
        while p.stage_idx == stage_idx:
            seed = unit_seed(setup.cfg.seed, stage_idx, p.unit_idx)
            what = f"{stage.kind} r{stage.round} {p.unit_idx + 1}/{stage.units}"
            result, diagnostic = self._run_unit(stage, seed)
            what += result
            if diagnostic is not None:
                seen.append(diagnostic)
            LOG.log(setup.info, "%s", what)
            finished = p.next_unit(stage)
            encoder_end = finished and stage.kind in ("warmup", "encoder")
            if encoder_end:
                self._offer_export(_state_label(stage, setup.cfg.augment))
            stop = setup.poll_stop() and p.stage_idx < len(setup.stages)
            if finished or stop or self._checkpoint_due():
                self.save_checkpoint()
            if finished and seen:
                LOG.log(setup.info, "%s", stage_summary(stage, seen, setup.cfg.encoder.embed_dim))
            if encoder_end and setup.ctx.is_main:
                with atomic_temp(setup.paths.stage_end(stage.kind, stage.round)) as tmp:
                    shutil.copyfile(setup.paths.latest, tmp)  # never half-copied
            bar.advance(1, postfix=what)
            if stop:
                dist.barrier()
                raise StopRequested

    def _run_unit(self, stage: Stage, seed: int) -> tuple[str, float | None]:
        """One unit of ``stage``: an encoder epoch and its diagnostics, a generator block and
        its diagnostic, or the bank refresh. Returns (what to log, the diagnostic or None)."""
        setup, models, p = self.setup, self.models, self.progress
        if stage.kind in ("warmup", "encoder"):
            loss = self._unless_stopped(encoder_epoch(setup, models, p, stage, seed))
            rank = encoder_diagnostics(setup, models, p, stage.kind, stage.round, p.unit_idx,
                                       candidate=p.unit_idx + 1 == stage.units)
            return f": loss {loss:.4f}", rank
        if stage.kind == "generator":
            loss = self._unless_stopped(generator_block(setup, models, p, stage, seed))
            return f": loss {loss:.4f}", generator_diagnostics(setup, models, p, stage)
        return f": {refresh_bank(setup, models, p, stage, seed):.1f} s", None

    def _unless_stopped(self, end: UnitEnd) -> float:
        """The unit's loss; a unit a stop request interrupted is checkpointed where it
        stopped, then :class:`StopRequested` is raised."""
        if end.interrupted:
            self.save_checkpoint()
            dist.barrier()  # no rank exits (and no launcher kills the job) before rank 0 wrote it
            raise StopRequested
        return end.loss

    def _prepare_stage(self, stage_idx: int) -> None:
        """Per-stage inputs that are a pure function of the state at the stage start: the
        kNN neighbours of an encoder stage, the conditions of a generator stage (the frozen
        encoder's embeddings, after recalibrating its batch norm), the bank of an encoder
        stage of a resumed run."""
        setup, models, p = self.setup, self.models, self.progress
        stage = setup.stages[stage_idx]
        if stage.kind in ("warmup", "encoder"):
            tag = neighbours_tag(setup, stage)
            if tag is not None and tag != p.neighbours_tag:
                p.neighbours, p.neighbours_tag = find_neighbours(setup, models.encoder, tag), tag
        if stage.kind in ("generator", "bank") and (p.cond is None or p.cond_round != stage.round):
            recalibrate(setup, models, p)  # batch-norm statistics of the frozen encoder
            p.cond = setup.embed_all(models.encoder)  # frozen until the next stage
            p.cond_round = stage.round
        if stage.kind == "encoder" and setup.cfg.augment == "diffaug" and p.bank is None:
            p.bank = place_bank(setup, load_bank(setup))

    def _offer_export(self, state: str) -> None:
        """The encoder as it is now (its last diagnostics) as a candidate for export."""
        self.progress.export.offer(state, self.progress.last_diagnostics,
                                   self.models.encoder.state_dict(),
                                   self.models.head.state_dict())

    # ------------------------------------------------------------------ checkpoints and resume
    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: format, config hash, counters, the unit's random state, weights and
        optimisers, the global random states, the export choice."""
        p = self.progress
        weights = self.models.state_dict()
        return {"format": ckpt.CHECKPOINT_FORMAT, "config_hash": self.setup.cfg.hash(),
                "progress": {**p.counters(), "metric_rows": self.setup.metrics.rows},
                "unit_generator": p.unit_gen_state,
                **{k: weights.pop(k) for k in ("encoder", "head", "enc_opt")},
                "rng": ckpt.rng_state(), "export": p.export.state_dict(),
                "symmetry_group": p.symmetry.group, **weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("config_hash") != self.setup.cfg.hash():
            from diffaug_genomics.errors import InputError

            raise InputError("the checkpoint was written with a different configuration; "
                             "resume with the run's own config.yaml or start a new run",
                             path=self.setup.paths.latest)
        p = self.progress
        p.set_counters(state["progress"])
        self.setup.metrics.rows = state["progress"]["metric_rows"]
        p.unit_gen_state = state["unit_generator"]
        self.models.load_state_dict(state)
        if "export" in state:  # a checkpoint from before the export choice: final state only
            p.export.load_state_dict(state["export"])
        group = [int(g) for g in state.get("symmetry_group", [0])]
        if group != p.symmetry.group:  # a run started before the discovery: it keeps none
            LOG.warning("%s was written before symmetries were learned from the data: the run "
                        "continues without one", self.setup.paths.latest)
            p.symmetry.group = group
            p.symmetry.accepted = []
            p.symmetry.reason = "none: the run was started by a version without the discovery"
        ckpt.set_rng_state(state["rng"])

    def save_checkpoint(self) -> None:
        """``checkpoints/latest.pt`` (rank 0 writes it)."""
        if self.setup.ctx.is_main:
            ckpt.save_atomic(self.state_dict(), self.setup.paths.latest)
        self._saved_at = time.perf_counter()

    def _checkpoint_due(self) -> bool:
        """Whether ``checkpoint_every_s`` seconds have passed since the last checkpoint (rank
        0's clock decides; only rank 0 writes)."""
        due = time.perf_counter() - self._saved_at >= self.setup.cfg.checkpoint_every_s
        return dist.any_rank(due and self.setup.ctx.is_main)

    def _check_ranks_agree(self, what: str, value: str) -> None:
        """Raise on every rank if the ranks see different ``value`` s (e.g. no shared disk)."""
        values = dist.same_on_all_ranks(value)
        if len(set(values)) > 1:
            from diffaug_genomics.errors import DiffaugError

            raise DiffaugError(f"ranks disagree on {what}: {values} (the run directory and the "
                               "data must be on a filesystem shared by every node)")

    def resume(self) -> bool:
        """Load ``checkpoints/latest.pt`` if it exists; returns whether it did."""
        setup, p = self.setup, self.progress
        found = setup.paths.latest.exists()
        if setup.ctx.distributed:
            self._check_ranks_agree("whether a checkpoint exists", str(found))
        if not found:
            return False
        self.load_state_dict(ckpt.load(setup.paths.latest, ckpt.CHECKPOINT_FORMAT))
        setup.metrics.truncate(setup.metrics.rows)
        self._check_ranks_agree("resumed at", f"{p.stage_idx}/{p.unit_idx}/{p.step_in_unit}")
        stages = setup.stages
        LOG.info("resuming at stage %d/%d (%s), unit %d, step %d",
                 min(p.stage_idx + 1, len(stages)), len(stages),
                 stages[min(p.stage_idx, len(stages) - 1)].kind, p.unit_idx, p.step_in_unit)
        return True

    def _write_final(self) -> None:
        """``generator.pt`` then ``encoder.pt`` (the exported state), once."""
        setup, models, p = self.setup, self.models, self.progress
        paths, cfg = setup.paths, setup.cfg
        if paths.encoder.exists() and (models.ema is None or paths.generator.exists()):
            return  # a finished run resumed: written once, embed may be reading them
        recalibrate(setup, models, p)  # batch-norm statistics of the final weights (every rank)
        chosen = p.export.chosen
        if cfg.export.choose == "best" and chosen is not None:
            # the chosen state's batch-norm statistics were recomputed by its diagnostic pass
            models.encoder.load_state_dict(chosen["encoder"])
            models.head.load_state_dict(chosen["head"])
        if not setup.ctx.is_main:
            return
        LOG.info("%s", p.export.summary())
        common = {"config": cfg.to_dict(), "modality": setup.modality.name,
                  "sample_shape": list(setup.sample_shape), "config_hash": cfg.hash()}
        if models.ema is not None:  # before encoder.pt, whose presence marks a finished run
            ckpt.save_atomic({"format": ckpt.GENERATOR_FORMAT, **common,
                              "denoiser": models.ema.state_dict()}, paths.generator)
        ckpt.save_atomic({"format": ckpt.ENCODER_FORMAT, **common,
                          "encoder": models.encoder.state_dict(),
                          "head": models.head.state_dict(), "exported": p.export.record(),
                          "symmetry": p.symmetry.to_record()}, paths.encoder)


def _state_label(stage: Stage, augment: str) -> str:
    """The name of the encoder state at the end of ``stage``: ``warmup``, ``round R``, or
    ``trained`` (a baseline's one encoder stage)."""
    if stage.kind == "warmup":
        return "warmup"
    return f"round {stage.round}" if augment == "diffaug" else "trained"
