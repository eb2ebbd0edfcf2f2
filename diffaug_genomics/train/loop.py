"""The DiffAug training loop: warm-up, then rounds of (generator -> bank refresh -> encoder).

The schedule is a list of :class:`Stage` s, each made of *units* (an encoder epoch, a block of
generator steps, one bank refresh). Every unit draws its randomness from generators seeded by
``(seed, stage, unit)``, and a checkpoint is written after every unit (and mid-unit when a stop
is requested), holding both models, optimisers, EMA, the unit's generator state and the step
within it. Resuming therefore replays the exact same computation: a run killed at any moment and
resumed ends with the same weights as an uninterrupted one (bit for bit on CPU).

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
"""

from __future__ import annotations

import copy
import csv
import hashlib
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from diffaug_genomics.config import Config
from diffaug_genomics.diagnostics import condition_gain, diagnostic_sample, effective_rank
from diffaug_genomics.metrics import DIAGNOSTIC_FIELDS, METRIC_FIELDS
from diffaug_genomics.models.registry import Modality, build_head
from diffaug_genomics.positives.generated import generated_positives
from diffaug_genomics.progress import LOG, progress
from diffaug_genomics.shards import shard_seed
from diffaug_genomics.train import checkpoint as ckpt
from diffaug_genomics.train import distributed as dist
from diffaug_genomics.train.distributed import SINGLE, DistContext
from diffaug_genomics.train.guards import check_finite_loss

COLLAPSE_FRACTION = 0.10
"""``fit`` warns once when the embedding's effective rank falls below this fraction of its size."""
COND_GAIN_ROWS = 128
"""Most rows of the fixed held batch :func:`~diffaug_genomics.diagnostics.condition_gain` uses
(at most one generator batch)."""
POSITIVE_STATS_ROWS = 512
"""Generated positives per bank refresh whose statistics are computed."""
FIT_INIT_ROWS = 4096
"""Most training rows an encoder's data-dependent initialisation (``fit_init``) reads."""


@dataclass(frozen=True)
class Stage:
    """One block of the schedule: ``kind`` in warmup | encoder | generator | bank."""

    kind: str
    round: int
    units: int


def plan(cfg: Config) -> list[Stage]:
    """The schedule of a run as a list of stages (units are epochs, step blocks or refreshes)."""
    s = cfg.schedule
    if cfg.augment != "diffaug":
        epochs = s.warmup_epochs + s.rounds * s.epochs_per_round
        return [Stage("encoder", 0, epochs)] if epochs > 0 else []
    stages = [Stage("warmup", 0, s.warmup_epochs)]
    gen_units = math.ceil(cfg.generator.steps / cfg.generator.steps_per_checkpoint)
    for r in range(1, s.rounds + 1):
        stages += [Stage("generator", r, gen_units), Stage("bank", r, 1),
                   Stage("encoder", r, s.epochs_per_round)]
    return [stage for stage in stages if stage.units > 0]


def unit_seed(seed: int, stage: int, unit: int) -> int:
    """A 63-bit seed for one unit of one stage, independent of everything before it."""
    digest = hashlib.sha256(f"{seed}/{stage}/{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class StopRequested(Exception):  # noqa: N818 - control flow, not an error
    """Raised inside a unit after a checkpoint was written because a stop was requested."""


@dataclass
class RunPaths:
    """Files of a run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def latest(self) -> Path:
        return self.checkpoints / "latest.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def encoder(self) -> Path:
        return self.root / "encoder.pt"

    @property
    def generator(self) -> Path:
        return self.root / "generator.pt"

    def neighbours(self, tag: str) -> Path:
        return self.root / "cache" / f"neighbours-{tag}.npz"

    @property
    def bank(self) -> Path:
        return self.root / "cache" / "bank.pt"


class Trainer:
    """Runs (or resumes) the schedule of :func:`plan` on in-memory data.

    ``rows`` are the stored samples (DNA: ``(N, L, 4) uint8``); the modality turns a block of
    rows into model tensors. ``should_stop`` is polled after every step: when it returns True the
    trainer writes a checkpoint and raises :class:`StopRequested`. With ``ctx.world_size > 1``
    the caller has initialised the process group (see the module docstring).
    """

    def __init__(self, cfg: Config, modality: Modality, rows: np.ndarray, run_dir: Path,
                 device: torch.device, ctx: DistContext = SINGLE,
                 should_stop: Callable[[], bool] | None = None) -> None:
        self.cfg, self.modality, self.rows = cfg, modality, rows
        self.paths = RunPaths(Path(run_dir))
        self.device, self.ctx = device, ctx
        self.should_stop = should_stop or (lambda: False)
        self.n = len(rows)
        self.sample_shape = tuple(modality.to_model(rows[:1]).shape[1:])
        self.stages = plan(cfg)
        torch.manual_seed(cfg.seed)
        self.encoder = modality.build_encoder(cfg, self.sample_shape).to(device)
        self._fit_init()
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
        self.collapse_warned = False
        self._calibrated_at: int | None = None  # enc_step of the last recalibration pass
        self.t0 = time.perf_counter()

    def _fit_init(self) -> None:
        """Data-dependent initialisation of an encoder that has one (``fit_init(x)``, e.g. the
        spectrum encoder's feature statistics and PCA directions), from a fixed, seeded sample of
        up to :data:`FIT_INIT_ROWS` training rows. Deterministic, so a resumed run recomputes
        the same values before its checkpoint replaces them."""
        fit_init = getattr(self.encoder, "fit_init", None)
        if callable(fit_init):
            fit_init(self._x(np.sort(diagnostic_sample(self.n, self.cfg.seed, FIT_INIT_ROWS))))

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

    # ------------------------------------------------------------------ state and checkpoints
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
        if self.denoiser is not None:
            self.denoiser.load_state_dict(state["denoiser"])
            self.ema.load_state_dict(state["ema"])
            self.gen_opt.load_state_dict(state["gen_opt"])
        ckpt.set_rng_state(state["rng"])

    def save_checkpoint(self) -> None:
        if self.ctx.is_main:
            ckpt.save_atomic(self.state_dict(), self.paths.latest)

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

    # ------------------------------------------------------------------------------- metrics
    def _truncate_metrics(self, rows: int) -> None:
        """Keep the first ``rows`` rows (what the checkpoint had logged); a file written before
        the diagnostic columns existed gains them (empty in its old rows)."""
        if not self.ctx.is_main or not self.paths.metrics.exists():
            return
        with open(self.paths.metrics, newline="") as fh:
            lines = list(csv.reader(fh))
        body = [line + [""] * (len(METRIC_FIELDS) - len(line)) for line in lines[1: rows + 1]]
        with open(self.paths.metrics, "w", newline="") as fh:
            csv.writer(fh).writerows([METRIC_FIELDS, *body])

    def _log_metric(self, phase: str, rnd: int, epoch: int, step: int, loss: float | None,
                    lr: float | None = None, rate: float | None = None,
                    **diagnostics: float | None) -> None:
        """Append one row to ``metrics.csv`` (None: an empty cell); ``diagnostics`` are the
        :data:`DIAGNOSTIC_FIELDS` this row fills."""
        self.metric_rows += 1
        if not self.ctx.is_main:
            return
        unknown = set(diagnostics) - set(DIAGNOSTIC_FIELDS)
        if unknown:
            raise ValueError(f"unknown metrics column(s) {sorted(unknown)}")

        def cell(value: float | None, fmt: str) -> str:
            return "" if value is None else format(value, fmt)

        new = not self.paths.metrics.exists()
        with open(self.paths.metrics, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(METRIC_FIELDS)
            writer.writerow([f"{time.perf_counter() - self.t0:.2f}", phase, rnd, epoch, step,
                             cell(loss, ".6f"), cell(lr, ".3g"), cell(rate, ".1f"),
                             *(cell(diagnostics.get(name), ".4f") for name in DIAGNOSTIC_FIELDS)])

    # --------------------------------------------------------------------------------- data
    def _x(self, idx: np.ndarray) -> torch.Tensor:
        """Model-layout tensor of the rows ``idx`` on the device."""
        return self.modality.to_model(self.rows[idx]).to(self.device)

    def _embed_all(self, model: nn.Module, batch_size: int = 1024) -> torch.Tensor:
        """Encoder embeddings of every row, ``(N, D)`` float32 on the device (eval mode).

        Distributed: each rank embeds its share of the rows, then all ranks gather them."""
        model.eval()
        lo, hi = self.ctx.shard(self.n)
        out = []
        with torch.no_grad():
            for start in range(lo, hi, batch_size):
                out.append(model(self._x(np.arange(start, min(start + batch_size, hi)))))
        if not self.ctx.distributed:
            return torch.cat(out)
        local = torch.cat(out) if out else torch.empty((0, self.cfg.encoder.embed_dim),
                                                       device=self.device)
        return dist.all_gather_rows(local, self.ctx, self.n)

    # -------------------------------------------------------------------------- diagnostics
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

    def _encoder_diagnostics(self, phase: str, rnd: int, epoch: int) -> float:
        """Log the effective rank of the embedding (and of the pooled features) on the
        diagnostic sample; warn once when it fell below :data:`COLLAPSE_FRACTION` of its size.
        Returns the embedding's effective rank."""
        z, pooled = self._sample_embeddings()
        rank = effective_rank(z)
        rank_pooled = effective_rank(pooled) if pooled is not None else None
        self._log_metric(phase, rnd, epoch, self.enc_step, None, eff_rank=rank,
                         eff_rank_pooled=rank_pooled)
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
        return self.modality.positive_stats(self.rows, idx, self.bank[torch.from_numpy(idx), 0])

    def _ensure_neighbours(self, stage_idx: int) -> None:
        """kNN indices for kNN-mixup, cached in the run directory (recomputed per round for
        ``knn.space = embedding``)."""
        if self.cfg.augment == "handcrafted":
            return
        space = self.cfg.knn.space
        stage = self.stages[stage_idx]
        tag = f"{space}-r{stage.round}" if space == "embedding" else space
        if getattr(self, "_neigh_tag", None) == tag:
            return
        from diffaug_genomics.positives.knn import knn_indices, load_neighbours, save_neighbours

        meta = {"space": space, "k": self.cfg.knn.k, "n": self.n, "kmer_k": self.cfg.knn.kmer_k,
                "pca_dim": self.cfg.knn.pca_dim, "seed": self.cfg.seed,
                "data": _rows_digest(self.rows)}
        path = self.paths.neighbours(tag)
        # rank 0 decides (cache or search) and broadcasts; the embeddings are a collective
        cached = load_neighbours(path, meta) if self.ctx.is_main and path.exists() else None
        need = dist.any_rank(cached is None)
        if need:
            t = time.perf_counter()
            feats = None
            if space == "embedding":
                feats = self._embed_all(self.encoder).cpu().numpy()
                feats /= np.linalg.norm(feats, axis=1, keepdims=True) + 1e-12
            if self.ctx.is_main:
                if feats is None:
                    feats = self.modality.knn_features(self.rows, self.cfg, self.cfg.seed)
                cached = knn_indices(feats, min(self.cfg.knn.k, self.n - 1), metric="cosine",
                                     device=str(self.device))
                save_neighbours(path, cached, meta)
                LOG.info("neighbours (%s, k=%d) for %d samples in %.1f s", space,
                         self.cfg.knn.k, self.n, time.perf_counter() - t)
        if self.ctx.distributed:
            cached = dist.broadcast_array(cached if self.ctx.is_main else None)
        self.neighbours, self._neigh_tag = cached, tag

    # ---------------------------------------------------------------------------- positives
    def _positives(self, stage: Stage, idx: np.ndarray, x: torch.Tensor,
                   gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(anchor view, positive view) for a batch, by augmentation and stage."""
        if self.handcrafted is not None:  # both views augmented, as in SimCLR / EvoAug
            return self.handcrafted(x, gen), self.handcrafted(x, gen)
        from diffaug_genomics.positives.knn import knn_mixup

        k = self.neighbours.shape[1]
        pick = torch.randint(k, (len(idx),), generator=gen).numpy()
        partner = self._x(self.neighbours[idx, pick])
        lo, hi = self.cfg.knn.alpha_min, self.cfg.knn.alpha_max
        pos = knn_mixup(x, partner, gen, (lo, hi))
        anchor = x
        if stage.kind == "encoder" and self.bank is not None and self.cfg.augment == "diffaug":
            b = self.cfg.bank
            use_bank = torch.rand(len(idx), generator=gen) < b.fraction
            if use_bank.any():
                bank = self.bank[torch.from_numpy(idx)]  # (B, per_sequence, ...)
                rows = torch.arange(len(idx))
                first = torch.zeros(len(idx), dtype=torch.long)
                if b.per_sequence > 1:  # one of the sample's generated positives, at random
                    first = torch.randint(b.per_sequence, (len(idx),), generator=gen)
                mask = use_bank.to(self.device).view(-1, *([1] * (x.dim() - 1)))
                pos = torch.where(mask, bank[rows, first].to(self.device, torch.float32), pos)
                if b.both_views:  # a second, different draw replaces the source as anchor
                    shift = 1 + torch.randint(b.per_sequence - 1, (len(idx),), generator=gen)
                    other = bank[rows, (first + shift) % b.per_sequence]
                    anchor = torch.where(mask, other.to(self.device, torch.float32), x)
        return anchor, pos

    def _loss(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        from diffaug_genomics.losses import info_nce_loss, soft_contrastive_loss

        z = self.encoder(torch.cat([a, b]))
        y = self.head(z)
        n = len(a)
        if self.cfg.loss.name == "soft":
            return soft_contrastive_loss(z[:n], y[:n], y[n:], nu_z=self.cfg.loss.nu_z,
                                         nu_y=self.cfg.loss.nu_y, gather=self.ctx.distributed)
        return info_nce_loss(y[:n], y[n:], temperature=self.cfg.loss.temperature,
                             gather=self.ctx.distributed)

    def _enc_lr(self) -> float:
        o = self.cfg.optim
        if o.lr_schedule == "constant":
            return o.lr
        frac = min(1.0, self.enc_step / self.total_enc_steps)
        return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))

    # --------------------------------------------------------------------------------- units
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

    def _encoder_epoch(self, stage: Stage, seed: int) -> float:
        gen = self._unit_generator(seed)
        perm = np.random.default_rng(seed).permutation(self.n)
        self.encoder.train()
        self.head.train()
        losses, t, done = [], time.perf_counter(), 0
        for step in range(self.step_in_unit, self.steps_per_epoch):
            idx = perm[step * self.global_batch:(step + 1) * self.global_batch]
            x = self._x(idx)
            a, b = self._positives(stage, idx, x, gen)
            a, b = self._local(a), self._local(b)
            lr = self._enc_lr()
            for group in self.enc_opt.param_groups:
                group["lr"] = lr
            loss = self._loss(a, b)
            check_finite_loss(loss, stage.kind, self.enc_step + 1)
            self.enc_opt.zero_grad(set_to_none=True)
            loss.backward()
            dist.average_gradients(self.enc_params)
            self.enc_opt.step()
            self.enc_step += 1
            self.step_in_unit = step + 1
            losses.append(dist.mean_over_ranks(loss))
            done += len(idx)
            if self.enc_step % self.cfg.log_every == 0:
                self._log_metric(stage.kind, stage.round, self.unit_idx, self.enc_step,
                                 losses[-1], lr, done / (time.perf_counter() - t))
            if self._poll_stop() and self.step_in_unit < self.steps_per_epoch:
                self._checkpoint_mid_unit(gen)
        return float(np.mean(losses)) if losses else float("nan")

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
            loss = self.diffusion.loss(self.denoiser, x0, self.cond[torch.from_numpy(idx).to(self.device)],
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

    def _refresh_bank(self, stage: Stage, seed: int) -> float:
        """Generate one positive per training sample with the EMA denoiser (no resume inside:
        a refresh is one unit, redone whole if interrupted).

        Distributed: rank ``r`` generates rows ``ctx.shard(N)`` with a generator seeded by
        :func:`shard_seed` ``(seed, r, W)``, then every rank gathers the whole bank. The bank is
        then the same on every rank and for every run with that world size, but not the same
        draws as a single process makes."""
        b = self.cfg.bank
        gen_seed = seed if not self.ctx.distributed else shard_seed(seed, self.ctx.rank,
                                                                    self.ctx.world_size)
        gen = torch.Generator().manual_seed(gen_seed)
        self.ema.eval()
        lo, hi = self.ctx.shard(self.n)
        out = torch.empty((hi - lo, b.per_sequence, *self.sample_shape), dtype=torch.float16)
        t = time.perf_counter()
        with progress(f"bank refresh (round {stage.round})", total=hi - lo, unit="seq",
                      enabled=self.ctx.is_main) as bar:
            for start in range(lo, hi, b.batch_size):
                idx = np.arange(start, min(start + b.batch_size, hi))
                x = self._x(idx)
                sample = generated_positives(
                    self.diffusion, self.ema, self.modality, b, x,
                    self.cond[start:start + len(idx)], b.per_sequence, steps=b.steps,
                    strength=b.strength, guidance_scale=b.guidance_scale, generator=gen)
                sample = self.modality.from_diffusion(sample)
                if b.discrete:
                    sample = self.modality.to_discrete(sample)
                out[start - lo:start - lo + len(idx)] = sample.view(
                    len(idx), b.per_sequence, *self.sample_shape).cpu().half()
                bar.advance(len(idx))
        out = dist.all_gather_rows(out, self.ctx, self.n)
        previous = self.bank
        if previous is None and stage.round > 1 and self.paths.bank.exists():  # resumed run
            previous = self._load_bank()
        self.bank = out
        if self.ctx.is_main:
            ckpt.save_atomic({"format": "diffaug-genomics/bank/1", "round": stage.round,
                              "bank": out}, self.paths.bank)
        seconds = time.perf_counter() - t
        changed = float("nan") if previous is None else float((previous != out).float().mean())
        stats = self._bank_diagnostics()
        LOG.info("bank refreshed: %d positives in %.1f s (%.2f s per 1000); changed vs previous "
                 "round: %s%s", self.n, seconds, 1000 * seconds / self.n,
                 "n/a" if math.isnan(changed) else f"{changed:.3f}",
                 "".join(f"; {k} {v:.3f}" for k, v in stats.items()))
        self._log_metric("bank", stage.round, 0, self.gen_step, changed, 0.0, self.n / seconds,
                         **stats)
        return seconds

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
            self.bank = self._load_bank()

    def _load_bank(self) -> torch.Tensor:
        """The saved bank, ``(N, per_sequence, *sample_shape)`` float16 (a bank written
        before ``bank.per_sequence`` existed, ``(N, *sample_shape)``, gains the draw axis)."""
        bank = ckpt.load(self.paths.bank, "diffaug-genomics/bank/1")["bank"]
        return bank.unsqueeze(1) if bank.dim() == len(self.sample_shape) + 1 else bank

    # ----------------------------------------------------------------------------------- run
    def run(self) -> None:
        """Run every remaining unit of the schedule, checkpointing after each."""
        total_units = sum(s.units for s in self.stages)
        done_units = sum(s.units for s in self.stages[: self.stage_idx]) + self.unit_idx
        with progress("fit", total=total_units, unit="unit", enabled=self.ctx.is_main) as bar:
            bar.advance(done_units)
            if self.metric_rows == 0 and self.stage_idx == 0 and self.unit_idx == 0 \
                    and self.step_in_unit == 0:  # a fresh run: the untrained encoder's rank
                rank = self._encoder_diagnostics("init", 0, -1)
                LOG.log(self._info, "init: eff_rank %.1f of %d", rank, self.cfg.encoder.embed_dim)
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
                        seen.append(self._encoder_diagnostics(stage.kind, stage.round,
                                                              self.unit_idx))
                    elif stage.kind == "generator":
                        what += f": loss {self._generator_block(stage, seed):.4f}"
                        seen.append(self._generator_diagnostics(stage))
                    else:
                        what += f": {self._refresh_bank(stage, seed):.1f} s"
                    LOG.log(self._info, "%s", what)
                    self.unit_idx, self.step_in_unit, self.unit_gen_state = self.unit_idx + 1, 0, None
                    if self.unit_idx == stage.units:
                        self.stage_idx, self.unit_idx = self.stage_idx + 1, 0
                    self.save_checkpoint()
                    finished = self.stage_idx != stage_idx
                    if finished and seen:
                        self._log_stage_diagnostics(stage, seen)
                    if finished and stage.kind in ("warmup", "encoder") and self.ctx.is_main:
                        name = "warmup.pt" if stage.kind == "warmup" else f"round{stage.round}.pt"
                        shutil.copyfile(self.paths.latest, self.paths.checkpoints / name)
                    bar.advance(1, postfix=what)
                    if self._poll_stop() and self.stage_idx < len(self.stages):
                        dist.barrier()
                        raise StopRequested
        self._write_final()

    @property
    def _info(self) -> int:
        """Log level of progress lines: INFO on rank 0, DEBUG on the others."""
        return logging.INFO if self.ctx.is_main else logging.DEBUG

    def _log_stage_diagnostics(self, stage: Stage, values: list[float]) -> None:
        """One log line per stage: how its diagnostic moved over the stage's units."""
        ends = values[:1] if len(values) == 1 else [values[0], values[-1]]
        digits = 3 if stage.kind == "generator" else 1
        trail = " -> ".join(f"{v:.{digits}f}" for v in ends)
        if stage.kind == "generator":
            LOG.log(self._info, "generator r%d: cond_gain %s (0 = the condition is ignored)",
                    stage.round, trail)
        else:
            LOG.log(self._info, "%s r%d: eff_rank %s of %d", stage.kind, stage.round, trail,
                    self.cfg.encoder.embed_dim)

    def _write_final(self) -> None:
        self._recalibrate()  # batch-norm statistics of the final weights (every rank)
        if not self.ctx.is_main:
            return
        common = {"config": self.cfg.to_dict(), "modality": self.modality.name,
                  "sample_shape": list(self.sample_shape), "config_hash": self.cfg.hash()}
        ckpt.save_atomic({"format": ckpt.ENCODER_FORMAT, **common,
                          "encoder": self.encoder.state_dict(), "head": self.head.state_dict()},
                         self.paths.encoder)
        if self.ema is not None:
            ckpt.save_atomic({"format": ckpt.GENERATOR_FORMAT, **common,
                              "denoiser": self.ema.state_dict()}, self.paths.generator)


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


def _rows_digest(rows: np.ndarray) -> str:
    """Cheap identity of a dataset for caches: shape plus a hash of a strided sample of rows."""
    h = hashlib.sha256(str(rows.shape).encode())
    step = max(1, len(rows) // 256)
    h.update(np.ascontiguousarray(rows[::step]).tobytes())
    return h.hexdigest()[:16]
