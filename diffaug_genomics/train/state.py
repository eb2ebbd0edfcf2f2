"""The training loop's state, in three parts that every phase receives as arguments.

- :class:`Setup`: what a run trains on and with, fixed once it is built: the configuration,
  the modality and its rows, the device and ranks, the run's files, the schedule and batch
  sizes, the diagnostic rows, the ``metrics.csv`` writer and the stop request. Its methods
  move rows to the device (:meth:`Setup.x`) and embed every row (:meth:`Setup.embed_all`).
- :class:`Models`: the encoder and its projection head, the denoiser, its EMA copy and the
  diffusion, their optimisers, and the forward passes as training calls them (compiled,
  autocast).
- :class:`Progress`: everything a run has computed so far that is not a weight: the counters a
  checkpoint records (stage, unit, step, encoder and generator steps), the unit's random state
  when it was interrupted, the kNN neighbours, the conditions (embeddings of every row), the
  bank of generated positives, the symmetry found on the rows, the export choice, and the
  diagnostics' own memory.

The phases (:mod:`.encoder_phase`, :mod:`.generator_phase`, :mod:`.bank`,
:mod:`.run_diagnostics`) are functions of these; :class:`~.loop.Trainer` sequences them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from diffaug_genomics.train import distributed as dist

if TYPE_CHECKING:
    from diffaug_genomics.config import Config
    from diffaug_genomics.diffusion import Diffusion
    from diffaug_genomics.modalities.base import Modality
    from diffaug_genomics.run_files import RunPaths
    from diffaug_genomics.symmetry import SymmetryReport
    from diffaug_genomics.train.bank_store import DiskBank
    from diffaug_genomics.train.distributed import DistContext
    from diffaug_genomics.train.export import ExportChoice
    from diffaug_genomics.train.metrics_file import MetricsFile
    from diffaug_genomics.train.schedule import Stage


@dataclass
class Setup:
    """What a run trains on and with (see the module docstring); fixed after the trainer is
    built. ``batch`` is per rank, ``global_batch`` over all ranks; ``diag_idx`` the fixed
    diagnostic rows."""

    cfg: Config
    modality: Modality
    rows: np.ndarray
    paths: RunPaths
    device: torch.device
    ctx: DistContext
    precision: str
    sample_shape: tuple[int, ...]
    stages: list[Stage]
    batch: int
    global_batch: int
    steps_per_epoch: int
    total_enc_steps: int
    diag_idx: np.ndarray
    metrics: MetricsFile
    should_stop: Callable[[], bool] = field(default=lambda: False)

    @property
    def n(self) -> int:
        """Training rows."""
        return len(self.rows)

    @property
    def info(self) -> int:
        """Log level of progress lines: INFO on rank 0, DEBUG on the others."""
        return logging.INFO if self.ctx.is_main else logging.DEBUG

    def x(self, idx: np.ndarray) -> torch.Tensor:
        """Model-layout tensor of the rows ``idx`` on the device (on CUDA through pinned host
        memory, copied without blocking the host)."""
        x = self.modality.to_model(self.rows[idx])
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device)

    def local(self, batch: Any) -> Any:
        """This rank's rows of a global batch (tensor or array); the batch itself when single."""
        if not self.ctx.distributed:
            return batch
        rows = len(batch) // self.ctx.world_size
        return batch[self.ctx.rank * rows:(self.ctx.rank + 1) * rows]

    def poll_stop(self) -> bool:
        """``should_stop()``, agreed on by all ranks: True everywhere if any rank asks."""
        return dist.any_rank(self.should_stop())

    def embed_all(self, model: nn.Module, batch_size: int = 1024) -> torch.Tensor:
        """Encoder embeddings of every row, ``(N, D)`` float32 on the device (eval mode).

        Distributed: each rank embeds its share of the rows, then all ranks gather them."""
        model.eval()
        lo, hi = self.ctx.shard(self.n)
        local = torch.empty((hi - lo, self.cfg.encoder.embed_dim), device=self.device)
        with torch.no_grad():  # filled in place: no second copy of the (N, D) result
            for start in range(lo, hi, batch_size):
                stop = min(start + batch_size, hi)
                local[start - lo:stop - lo] = model(self.x(np.arange(start, stop)))
        if not self.ctx.distributed:
            return local
        return dist.all_gather_rows(local, self.ctx, self.n)


@dataclass
class Models:
    """The models and optimisers of a run. ``encode``, ``denoise`` and ``sample_with`` are the
    encoder, denoiser and EMA denoiser as training and sampling call them (compiled if asked,
    under autocast in bf16); the denoiser's parts are None for the baselines, ``handcrafted``
    the baseline's augmentation (None otherwise)."""

    encoder: nn.Module
    head: nn.Module
    enc_opt: torch.optim.Optimizer
    enc_params: list[nn.Parameter]
    encode: Callable[[torch.Tensor], torch.Tensor]
    diffusion: Diffusion | None = None
    denoiser: nn.Module | None = None
    ema: nn.Module | None = None
    gen_opt: torch.optim.Optimizer | None = None
    denoise: Callable[..., torch.Tensor] | None = None
    sample_with: Callable[..., torch.Tensor] | None = None
    handcrafted: Callable[..., torch.Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        """The weights and optimiser states a checkpoint holds (in the checkpoint's order)."""
        state = {"encoder": self.encoder.state_dict(), "head": self.head.state_dict(),
                 "enc_opt": self.enc_opt.state_dict()}
        if self.denoiser is not None:
            state.update(denoiser=self.denoiser.state_dict(), ema=self.ema.state_dict(),
                         gen_opt=self.gen_opt.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.head.load_state_dict(state["head"])
        self.enc_opt.load_state_dict(state["enc_opt"])
        if self.denoiser is not None:
            self.denoiser.load_state_dict(state["denoiser"])
            self.ema.load_state_dict(state["ema"])
            self.gen_opt.load_state_dict(state["gen_opt"])


@dataclass
class Progress:
    """What a run has computed so far besides its weights (see the module docstring).

    The counters say where the run is: stage ``stage_idx``, its unit ``unit_idx``, the step
    ``step_in_unit`` within it, and the encoder / generator steps taken in all
    (``enc_step``, ``gen_step``); ``unit_gen_state`` is the unit's random state when a stop
    interrupted it. ``neighbours (N, k)`` are those of the space ``neighbours_tag``;
    ``cond (N, D)`` the embeddings the generator is conditioned on in round ``cond_round``;
    ``bank (N, per_sequence, *sample_shape)`` float16 the generated positives."""

    symmetry: SymmetryReport
    export: ExportChoice
    stage_idx: int = 0
    unit_idx: int = 0
    step_in_unit: int = 0
    enc_step: int = 0
    gen_step: int = 0
    unit_gen_state: torch.Tensor | None = None
    neighbours: np.ndarray | None = None
    neighbours_tag: str | None = None
    cond: torch.Tensor | None = None
    cond_round: int | None = None
    bank: torch.Tensor | DiskBank | None = None
    last_diagnostics: dict[str, float] = field(default_factory=dict)
    """The export criteria of the last candidate state scored."""
    reference: dict[str, torch.Tensor] | None = None
    """The diagnostic rows' neighbours in the input spaces (computed once)."""
    collapse_warned: bool = False
    calibrated_at: int | None = None
    """``enc_step`` of the last batch-norm recalibration pass."""

    def unit_generator(self, seed: int) -> torch.Generator:
        """The unit's random generator: seeded by ``seed``, or where an interrupted unit left
        it."""
        gen = torch.Generator().manual_seed(seed)
        if self.step_in_unit > 0 and self.unit_gen_state is not None:
            gen.set_state(self.unit_gen_state)
        return gen

    def counters(self) -> dict[str, int]:
        """The counters as a checkpoint's ``progress`` names them."""
        return {"stage": self.stage_idx, "unit": self.unit_idx,
                "step_in_unit": self.step_in_unit, "enc_step": self.enc_step,
                "gen_step": self.gen_step}

    def set_counters(self, saved: dict[str, int]) -> None:
        self.stage_idx, self.unit_idx = saved["stage"], saved["unit"]
        self.step_in_unit, self.enc_step = saved["step_in_unit"], saved["enc_step"]
        self.gen_step = saved["gen_step"]

    def next_unit(self, stage: Stage) -> bool:
        """Move past the unit just finished; returns whether that ended its stage."""
        stage_idx = self.stage_idx
        self.unit_idx, self.step_in_unit, self.unit_gen_state = self.unit_idx + 1, 0, None
        if self.unit_idx == stage.units:
            self.stage_idx, self.unit_idx = self.stage_idx + 1, 0
        return self.stage_idx != stage_idx


@dataclass
class UnitEnd:
    """What a unit of training returns: its ``loss`` (mean over its steps) and whether a stop
    request ``interrupted`` it (then :attr:`Progress.unit_gen_state` holds where)."""

    loss: float
    interrupted: bool = False
